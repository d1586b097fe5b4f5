"""Side-by-side speed of distillctl and its peers on one machine, in one run.

Runtimes are alternated in rounds (never timed in long blocks one after another), each in its own
process; the median images/s over the rounds is reported with distillctl's ratio to each peer.
    python bench/compare.py [--model M.h5] [--rounds 2] [--iterations 20] [--threads 2]
"""
import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PEERS = ["tensorflow", "onnxruntime", "openvino", "tflite"]


def distillctl(model, batch, iterations, threads):
    out = subprocess.run([os.path.join(ROOT, ".build/release/distillctl"), "bench", model, "--batch-size", str(batch),
                          "--iterations", str(iterations), "--threads", str(threads)],
                         check=True, capture_output=True, text=True).stdout
    img_s = float(re.search(r"([\d.]+) img/s", out).group(1))
    p50, p90 = map(float, re.search(r"median ([\d.]+) ms, p90 ([\d.]+) ms", out).groups())
    peak = float(re.search(r"peak memory ([\d.]+) MiB", out).group(1))
    return {"runtime": "distillctl", "batch": batch, "img_s": img_s, "p50_ms": p50, "p90_ms": p90, "peak_mb": peak}


def peer(name, model, workdir, batch, iterations, threads):
    out = subprocess.run([sys.executable, os.path.join(HERE, "peers.py"), "run", name, model, workdir, str(batch),
                          str(iterations), str(threads)], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            return re.search(r"model name\s*:\s*(.*)", f.read()).group(1)
    except (OSError, AttributeError):
        return platform.processor()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(ROOT, "fixtures/cases/k2_seed_effnetb0/model.h5"))
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", default="1,8")
    args = ap.parse_args()
    workdir = os.path.expanduser("~/.cache/distillctl/bench-models")
    stamp = os.path.join(workdir, "source")
    if not os.path.exists(stamp) or open(stamp).read() != os.path.abspath(args.model):
        subprocess.run([sys.executable, os.path.join(HERE, "peers.py"), "prepare", args.model, workdir], check=True)
        with open(stamp, "w") as f:
            f.write(os.path.abspath(args.model))
    results = {}
    for batch in map(int, args.batches.split(",")):
        for r in range(args.rounds):
            order = ["distillctl"] + PEERS if r % 2 == 0 else PEERS[::-1] + ["distillctl"]
            for name in order:
                res = (distillctl(args.model, batch, args.iterations, args.threads) if name == "distillctl"
                       else peer(name, args.model, workdir, batch, args.iterations, args.threads))
                results.setdefault((name, batch), []).append(res)
                print(f"  round {r + 1} batch {batch} {name:12s} {res['img_s']:7.1f} img/s  peak {res['peak_mb']:.0f} MiB",
                      file=sys.stderr)
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, {args.threads} threads; model {os.path.relpath(args.model, ROOT)}")
    print(f"median of {args.rounds} rounds x {args.iterations} iterations\n")
    print("| runtime | batch | img/s | latency p50 ms | peak MiB | distillctl / runtime |")
    print("|---|---|---|---|---|---|")
    for batch in map(int, args.batches.split(",")):
        ours = statistics.median(x["img_s"] for x in results[("distillctl", batch)])
        for name in ["distillctl"] + PEERS:
            rs = results[(name, batch)]
            img_s = statistics.median(x["img_s"] for x in rs)
            p50 = statistics.median(x["p50_ms"] for x in rs)
            peak = max(x["peak_mb"] for x in rs)
            print(f"| {name} | {batch} | {img_s:.1f} | {p50:.1f} | {peak:.0f} | {ours / img_s:.2f}x |")


if __name__ == "__main__":
    main()
