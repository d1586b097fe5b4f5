#!/usr/bin/env python3
"""Distillation settings side by side on the bundled example, each over several seeds, with one
recipe (example/compare.py's: 10 epochs, batch 32, alpha 0.9, T 3, Adam 1e-3, the same images):

  distillctl: kd, dkd, dist (logit losses); kd + a feature pair with an adaptor (FitNets-style hint:
  teacher block2_relu 14x14x64 <- student block2_relu 14x14x32, mse, weight 1); kd + attention
  transfer on the three blocks' outputs (the paper's beta/2 = 500 per pair); kd from two teachers
  (teacher.h5 and teacher2.h5, made by make_second_teacher.py: the same recipe from another seed);
  kd + mse between the logits layers (weight 0.1 = Keras's 1 * (1 - alpha), Keras's features row
  below); and the student trained alone.
  Keras 3.15's keras.distillation.Distiller (keras3_distiller.py, run with the venv's Python):
  logits (LogitsDistillation, KLDivergence, T 3, student_loss_weight 0.9), and logits + features
  (FeatureDistillation mse between the "logits" layers, weight 1: the example's only teacher/student
  layer pair of equal shape, Keras having no adaptor).

    swift build -c release --product distillctl
    python3 example/compare_losses.py [--seeds 1,2,3,4,5] [--only kd,keras] [--results runs.jsonl]
    python3 example/compare_losses.py --table runs.jsonl      # the table from recorded runs

Test accuracy: what `distill --test` prints for the written student (example/check_distill.py checks
in CI that Keras measures the same), or Keras's own prediction for its student. Seconds per epoch,
two measures: the training steps alone (distillctl: `--profile`'s step time and wait for images, from
`--timing` runs, the best of them; Keras: fit()'s wall time / epochs, its in-memory arrays already
loaded), and
distillctl's whole process wall time / epochs (loading, image decoding, test evaluation included).
Prints a Markdown table: mean (standard deviation) over the seeds.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DATA = os.path.join(HERE, "data")
BLOCKS = ["block1_relu", "block2_relu", "block3_relu"]


def settings(a):
    teacher = ["--teacher", os.path.join(HERE, "teacher.h5")]
    kd = teacher + ["--alpha", str(a.alpha), "--temperature", str(a.temperature)]
    at = [x for b in BLOCKS for x in ("--feature", f"{b}:{b}:at:500")]
    return [
        ("kd", "kd", ["distill"] + kd),
        ("dkd", "dkd (alpha 1, beta 8)", ["distill"] + kd + ["--loss", "dkd"]),
        ("dist", "dist (beta 1, gamma 1)", ["distill"] + kd + ["--loss", "dist"]),
        ("feature", "kd + feature block2 (mse, 1x1 adaptor 32->64)", ["distill"] + kd + ["--feature", "block2_relu:block2_relu"]),
        ("at", "kd + attention transfer (3 blocks, weight 500)", ["distill"] + kd + at),
        ("two", "kd, two teachers (equal weights)", ["distill"] + kd + ["--teacher", os.path.join(HERE, "teacher2.h5")]),
        ("logitmse", "kd + mse(logits) weight 0.1", ["distill"] + kd + ["--feature", "logits:logits:mse:0.1"]),
        ("alone", "training alone", ["train"]),
        ("keras", "Keras 3 Distiller: logits", ["keras"]),
        ("kerasfeat", "Keras 3 Distiller: logits + mse(logits) weight 1", ["keras", "--features"]),
    ]


def run_one(a, key, command, seed, work):
    if command[0] == "keras":
        args = [a.python, os.path.join(HERE, "keras3_distiller.py"), "--seed", seed, "--epochs", str(a.epochs),
                "--alpha", str(a.alpha), "--temperature", str(a.temperature)] + command[1:]
        out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        return r["test_accuracy"], r["seconds_per_epoch"]
    args = [a.distillctl] + command + [
        "--student", os.path.join(HERE, "student.h5"), "--train", os.path.join(DATA, "train.csv"),
        "--test", os.path.join(DATA, "test.csv"), "--images", os.path.join(DATA, "images"),
        "--epochs", str(a.epochs), "--batch-size", "32", "--learning-rate", "0.001", "--seed", seed,
        "--output", os.path.join(work, f"{key}-{seed}.h5")]
    if a.timing:
        args.append("--profile")
    start = time.time()
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    seconds = (time.time() - start) / a.epochs
    accuracy = float(re.search(r"student test accuracy ([0-9.]+)", out).group(1))
    if a.timing:
        # --profile's line: the steps' milliseconds per training image and their wait for images;
        # the steps of an epoch are what Keras's fit() times.
        m = re.search(r"steps ([0-9.]+) ms per image; the steps waited ([0-9.]+) s", out)
        images = sum(1 for _ in open(os.path.join(DATA, "train.csv"))) - 1
        seconds = (float(m.group(1)) * images / 1000 * a.epochs + float(m.group(2))) / a.epochs
    return accuracy, seconds


def table(a, runs):
    print(f"\n| setting (alpha {a.alpha}, T {a.temperature}, {a.epochs} epochs, batch 32, Adam 1e-3) "
          "| test accuracy | s per epoch: training steps (Keras: fit) | s per epoch: whole run | seeds |\n|---|---|---|---|---|")
    for key, name, _ in settings(a):
        mine = [r for r in runs if r["key"] == key]
        if not mine:
            continue
        accuracy_runs = [r for r in mine if not r.get("timing")]
        acc = [r["accuracy"] for r in accuracy_runs]
        wall = [r["seconds"] for r in accuracy_runs if not r["key"].startswith("keras")]
        # The --timing runs' when there are some (taken side by side): the best of them, the
        # least disturbed by other work on the machine.
        timed = [r["seconds"] for r in mine if r.get("timing")]
        steps = [min(timed)] if timed else [r["seconds"] for r in accuracy_runs if r["key"].startswith("keras")]
        sd = statistics.stdev(acc) if len(acc) > 1 else 0.0
        def f(v):
            return f"{statistics.mean(v):.2f}" if v else "-"
        accuracy = f"{100 * statistics.mean(acc):.1f}% ({100 * sd:.1f})" if acc else "-"
        print(f"| {name} | {accuracy} | {f(steps)} | {f(wall)} | {len(acc)} |")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--distillctl", default=os.path.join(REPO, ".build", "release", "distillctl"))
    p.add_argument("--python", default="/root/.cache/distillctl/venv/bin/python", help="Python with Keras 3")
    p.add_argument("--seeds", default="1,2,3,4,5")
    p.add_argument("--alpha", type=float, default=0.9)
    p.add_argument("--temperature", type=float, default=3.0)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--only", help="comma-separated setting keys, run in that order (kd, dkd, dist, feature, at, two, "
                                   "logitmse, alone, keras, kerasfeat)")
    p.add_argument("--results", help="append each run as a JSON line to this file")
    p.add_argument("--table", metavar="RESULTS", help="only print the table of the runs recorded in RESULTS")
    p.add_argument("--timing", action="store_true",
                   help="time the training steps only: distillctl's steps (--profile) against Keras's fit(), "
                        "without loading, decoding and evaluation; use with one seed")
    a = p.parse_args()
    if a.table:
        with open(a.table) as f:
            table(a, [json.loads(line) for line in f if line.strip()])
        return
    chosen = settings(a)
    if a.only:
        # In the order given, so the settings wanted first run first.
        by_key = {s[0]: s for s in chosen}
        chosen = [by_key[k] for k in a.only.split(",")]
    work = tempfile.mkdtemp(prefix="compare-losses-")
    runs = []
    for key, name, command in chosen:
        for seed in a.seeds.split(","):
            accuracy, seconds = run_one(a, key, command, seed, work)
            run = {"key": key, "seed": int(seed), "accuracy": accuracy, "seconds": seconds, "timing": a.timing}
            runs.append(run)
            if a.results:
                with open(a.results, "a") as f:
                    f.write(json.dumps(run) + "\n")
            print(f"{name} seed {seed}: {accuracy:.4f}, {seconds:.2f} s per epoch", flush=True)
    table(a, runs)


if __name__ == "__main__":
    main()
