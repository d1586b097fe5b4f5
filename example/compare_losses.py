#!/usr/bin/env python3
"""The logit losses side by side on the bundled example: distillctl's kd, dkd and dist, and the
student trained alone, each over several seeds (the same recipe as example/compare.py: 10 epochs,
batch 32, alpha 0.9, T 3, Adam 1e-3).

    swift build -c release --product distillctl
    python3 example/compare_losses.py [--seeds 1,2,3,4,5] [--alpha 0.9]

Test accuracy is what `distill --test` prints for the written student (example/check_distill.py
checks in CI that Keras measures the same); seconds per epoch are wall time of the run divided by
the epochs (image decoding included). Prints a Markdown table: mean (standard deviation) over the
seeds. distillctl only: Keras 3's Distiller runs are not part of this script.
"""
import argparse
import os
import re
import statistics
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DATA = os.path.join(HERE, "data")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--distillctl", default=os.path.join(REPO, ".build", "release", "distillctl"))
    p.add_argument("--seeds", default="1,2,3,4,5")
    p.add_argument("--alpha", type=float, default=0.9)
    p.add_argument("--temperature", type=float, default=3.0)
    p.add_argument("--epochs", type=int, default=10)
    a = p.parse_args()
    settings = [("kd", ["distill", "--loss", "kd"]), ("dkd (alpha 1, beta 8)", ["distill", "--loss", "dkd"]),
                ("dist (beta 1, gamma 1)", ["distill", "--loss", "dist"]), ("training alone", ["train"])]
    work = tempfile.mkdtemp(prefix="compare-losses-")
    rows = []
    for name, command in settings:
        accuracies, seconds = [], []
        for seed in a.seeds.split(","):
            args = [a.distillctl] + command[:1]
            if command[0] == "distill":
                args += ["--teacher", os.path.join(HERE, "teacher.h5"), "--alpha", str(a.alpha),
                         "--temperature", str(a.temperature)] + command[1:]
            args += ["--student", os.path.join(HERE, "student.h5"), "--train", os.path.join(DATA, "train.csv"),
                     "--test", os.path.join(DATA, "test.csv"), "--images", os.path.join(DATA, "images"),
                     "--epochs", str(a.epochs), "--batch-size", "32", "--learning-rate", "0.001", "--seed", seed,
                     "--output", os.path.join(work, f"{command[-1]}-{seed}.h5")]
            start = time.time()
            out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
            seconds.append((time.time() - start) / a.epochs)
            accuracies.append(float(re.search(r"student test accuracy ([0-9.]+)", out).group(1)))
            print(f"{name} seed {seed}: {accuracies[-1]:.4f}, {seconds[-1]:.2f} s per epoch", flush=True)
        rows.append((name, accuracies, seconds))
    print(f"\n| setting (alpha {a.alpha}, T {a.temperature}) | test accuracy | s per epoch |\n|---|---|---|")
    for name, acc, sec in rows:
        sd = statistics.stdev(acc) if len(acc) > 1 else 0.0
        print(f"| {name} | {100 * statistics.mean(acc):.1f}% ({100 * sd:.1f}) | {statistics.mean(sec):.2f} |")


if __name__ == "__main__":
    main()
