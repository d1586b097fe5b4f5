"""distillctl's float32 against its bf16 products on one model: `bench` alternating between the
two precisions in rounds (never in blocks), each run its own process; prints the medians.
    python bench/precision.py [--distillctl BIN] [--model M.h5] [--rounds 5] [--batches 1,8] [--threads 2,1]
"""
import argparse
import os
import re
import statistics
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def bench(binary, model, precision, batch, threads, iterations):
    out = subprocess.run([binary, "bench", model, "--precision", precision, "--batch-size", str(batch),
                          "--threads", str(threads), "--iterations", str(iterations)],
                         check=True, capture_output=True, text=True).stdout
    return float(re.search(r"([\d.]+) img/s", out).group(1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--distillctl", default=os.path.join(ROOT, ".build-bench/release/distillctl"))
    ap.add_argument("--model", default=os.path.join(ROOT, "fixtures/cases/k2_seed_effnetb0/model.h5"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--threads", default="2,1")
    ap.add_argument("--iterations", type=int, default=20)
    args = ap.parse_args()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"median of {args.rounds} alternating rounds\n")
    print("| batch | threads | f32 img/s | bf16 img/s | bf16 / f32 |")
    print("|---|---|---|---|---|")
    for threads in map(int, args.threads.split(",")):
        for batch in map(int, args.batches.split(",")):
            got = {"f32": [], "bf16": []}
            for r in range(args.rounds):
                for p in (["f32", "bf16"] if r % 2 == 0 else ["bf16", "f32"]):
                    got[p].append(bench(args.distillctl, args.model, p, batch, threads,
                                        max(5, args.iterations // batch)))
            f, b = statistics.median(got["f32"]), statistics.median(got["bf16"])
            print(f"| {batch} | {threads} | {f:.1f} | {b:.1f} | {b / f:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
