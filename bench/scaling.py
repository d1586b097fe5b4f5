#!/usr/bin/env python3
"""Expected data-parallel scaling of a distillation step, from a measured step time and the size
of the gradient (the README's table).

    python3 bench/scaling.py --step-seconds 0.28 --trainable 3400000 --batch-per-rank 8

Model (ring allreduce, as Open MPI and Horovod use for large buffers): each rank computes its own
batch in `step_seconds` (measured with `distillctl bench MODEL --train --batch-size B`), then the
gradient (4 bytes per trainable parameter, one fused buffer) is summed over N ranks, which moves
2 (N - 1) / N of its bytes through every link and takes 2 (N - 1) latency-bound stages. Training is
not overlapped with communication (distillctl sums after the backward pass), so

    step(N) = step_seconds + 2 (N - 1) / N * bytes / bandwidth + 2 (N - 1) * latency

and images per second = N * batch_per_rank / step(N). Efficiency is that over N times one rank's.
"""
import argparse


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--step-seconds", type=float, required=True)
    p.add_argument("--trainable", type=int, required=True, help="trainable parameters (floats in the gradient)")
    p.add_argument("--batch-per-rank", type=int, default=8)
    p.add_argument("--latency-us", type=float, default=30.0, help="per-stage latency over TCP (microseconds)")
    p.add_argument("--ranks", default="1,2,4,8,16,32,64")
    a = p.parse_args()
    size = 4 * a.trainable
    print(f"step {a.step_seconds:.3f} s per rank at batch {a.batch_per_rank}; gradient {size / 1e6:.2f} MB; "
          f"latency {a.latency_us:.0f} us per stage")
    print()
    print("| ranks | 10 Gbit/s: step s | img/s | efficiency | 100 Gbit/s: step s | img/s | efficiency |")
    print("|---|---|---|---|---|---|---|")
    base = a.batch_per_rank / a.step_seconds
    for n in [int(x) for x in a.ranks.split(",")]:
        cells = [str(n)]
        for gbit in (10, 100):
            bandwidth = gbit * 1e9 / 8
            comm = 0.0 if n == 1 else 2 * (n - 1) / n * size / bandwidth + 2 * (n - 1) * a.latency_us * 1e-6
            step = a.step_seconds + comm
            ips = n * a.batch_per_rank / step
            cells += [f"{step:.3f}", f"{ips:.0f}", f"{ips / (n * base):.0%}"]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
