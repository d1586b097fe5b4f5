"""Side-by-side speed of distillctl and its peers on one machine, in one run.

Runtimes are alternated in rounds (never timed in long blocks one after another), each in its own
process; the median images/s over the rounds is reported with distillctl's ratio to each peer.
Then distillation steps of the seed's setup (teacher forward, student forward and backward, Adam),
head only and unfrozen from block5a_expand_conv, distillctl's `bench --train` next to TensorFlow's
`tf.function` step, alternated the same way.
    python bench/compare.py [--model M.h5] [--rounds 3] [--iterations 20] [--threads 2]
                            [--groups float32,bf16,avx2] [--train-batch 8] [--train-iterations 10]
                            [--train-rounds 5]
                            [--no-inference] [--no-train]
Inference rows come in groups, each compared with its own distillctl row: float32 (every
runtime), bf16 (distillctl --precision bf16 and OpenVINO as it comes, which picks bf16 on a CPU
with AVX512_BF16) and AVX2 (the instruction set limited through the environment).
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
# The binary under test; bench/run.sh passes its -Ounchecked build (--distillctl).
DISTILLCTL = os.path.join(ROOT, ".build/release/distillctl")


def environment(extra):
    return dict(os.environ, **extra) if extra else None


def distillctl(model, batch, iterations, threads, precision="f32", env=None):
    out = subprocess.run([DISTILLCTL, "bench", model, "--batch-size", str(batch),
                          "--iterations", str(iterations), "--threads", str(threads), "--precision", precision],
                         check=True, capture_output=True, text=True, env=environment(env)).stdout
    img_s = float(re.search(r"([\d.]+) img/s", out).group(1))
    p50, p90 = map(float, re.search(r"median ([\d.]+) ms, p90 ([\d.]+) ms", out).groups())
    peak = float(re.search(r"peak memory ([\d.]+) MiB", out).group(1))
    return {"runtime": "distillctl", "batch": batch, "img_s": img_s, "p50_ms": p50, "p90_ms": p90, "peak_mb": peak}


def distillctl_train(model, batch, iterations, threads, unfreeze_from):
    setup = ["--unfreeze-from", unfreeze_from] if unfreeze_from else ["--head-only"]
    out = subprocess.run([DISTILLCTL, "bench", model, "--train", "--batch-size",
                          str(batch), "--iterations", str(iterations), "--threads", str(threads)] + setup,
                         check=True, capture_output=True, text=True).stdout
    return {"runtime": "distillctl", "s_step": float(re.search(r"([\d.]+) s per step", out).group(1)),
            "peak_mb": float(re.search(r"peak memory ([\d.]+) MiB", out).group(1)),
            "trainable": int(re.search(r"trainable parameters (\d+)", out).group(1))}


def tensorflow_train(model, batch, iterations, threads, unfreeze_from):
    out = subprocess.run([sys.executable, os.path.join(HERE, "peers.py"), "train", model, str(batch), str(iterations),
                          str(threads)] + ([unfreeze_from] if unfreeze_from else []),
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def peer(name, model, workdir, batch, iterations, threads, env=None):
    out = subprocess.run([sys.executable, os.path.join(HERE, "peers.py"), "run", name, model, workdir, str(batch),
                          str(iterations), str(threads)], check=True, capture_output=True, text=True,
                         env=environment(env)).stdout
    return json.loads(out.strip().splitlines()[-1])


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            return re.search(r"model name\s*:\s*(.*)", f.read()).group(1)
    except (OSError, AttributeError):
        return platform.processor()


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            return set(re.search(r"flags\s*:\s*(.*)", f.read()).group(1).split())
    except (OSError, AttributeError):
        return None


def cpu_features():
    flags = cpu_flags()
    if flags is None:
        return "unknown"
    return ", ".join(name for flag, name in [("avx2", "AVX2"), ("fma", "FMA"), ("avx512f", "AVX-512"),
                                             ("avx512_bf16", "AVX-512 BF16")] if flag in flags)


def versions():
    from importlib.metadata import version, PackageNotFoundError
    out = []
    for package in ["tensorflow-cpu", "tf-keras", "tf2onnx", "onnxruntime", "openvino"]:
        try:
            out.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            pass
    return ", ".join(out)


def main():
    global DISTILLCTL
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(ROOT, "fixtures/cases/k2_seed_effnetb0/model.h5"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--train-batch", type=int, default=8)
    ap.add_argument("--train-iterations", type=int, default=10)
    # TensorFlow's step varies by 10-20% from one process to the next on a shared machine, more
    # than the inference rows do: five rounds for its median.
    ap.add_argument("--train-rounds", type=int, default=5)
    ap.add_argument("--no-inference", dest="inference", action="store_false")
    ap.add_argument("--no-train", dest="train", action="store_false")
    ap.add_argument("--distillctl", default=DISTILLCTL)
    ap.add_argument("--groups", default="float32,bf16,avx2",
                    help="inference rows: float32 (all runtimes), bf16 (distillctl --precision bf16 and OpenVINO's "
                         "default, on a CPU with AVX512_BF16), avx2 (distillctl with DISTILLCTL_NO_AVX512=1, "
                         "TensorFlow and OpenVINO with ONEDNN_MAX_CPU_ISA=AVX2)")
    args = ap.parse_args()
    DISTILLCTL = args.distillctl
    args.workdir = workdir = os.path.expanduser("~/.cache/distillctl/bench-models")
    stamp = os.path.join(workdir, "source")
    if args.inference and (not os.path.exists(stamp) or open(stamp).read() != os.path.abspath(args.model)):
        subprocess.run([sys.executable, os.path.join(HERE, "peers.py"), "prepare", args.model, workdir], check=True)
        with open(stamp, "w") as f:
            f.write(os.path.abspath(args.model))
    print(f"machine: {cpu_name()} ({cpu_features()}), {os.cpu_count()} cores, {args.threads} threads; "
          f"model {os.path.relpath(args.model, ROOT)}")
    print(f"peers: {versions()}")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    if args.inference:
        inference(args)
    if args.train:
        training(args)


def entries(groups):
    """The inference rows: (group, label, run(args, batch) -> result). The first row of a group is
    distillctl's, which the group's ratios divide by. Each row runs in its own process; the AVX2
    rows limit the instruction set through the environment (distillctl: DISTILLCTL_NO_AVX512;
    TensorFlow and OpenVINO, whose convolutions are oneDNN's: ONEDNN_MAX_CPU_ISA; ONNX Runtime and
    TFLite have no such switch and are left out)."""
    def ours(precision="f32", env=None):
        return lambda a, b: distillctl(a.model, b, a.iterations, a.threads, precision, env)

    def theirs(name, env=None):
        return lambda a, b: peer(name, a.model, a.workdir, b, a.iterations, a.threads, env)

    rows = []
    if "float32" in groups:
        rows += [("float32", "distillctl", ours())] + [("float32", name, theirs(name)) for name in PEERS]
    if "bf16" in groups and "avx512_bf16" in (cpu_flags() or set()):
        rows += [("bf16", "distillctl --precision bf16", ours("bf16")),
                 ("bf16", "openvino as it comes", theirs("openvino-default"))]
    if "avx2" in groups:
        avx2 = {"ONEDNN_MAX_CPU_ISA": "AVX2"}
        rows += [("AVX2", "distillctl DISTILLCTL_NO_AVX512=1", ours(env={"DISTILLCTL_NO_AVX512": "1"})),
                 ("AVX2", "tensorflow ONEDNN_MAX_CPU_ISA=AVX2", theirs("tensorflow", avx2)),
                 ("AVX2", "openvino f32 ONEDNN_MAX_CPU_ISA=AVX2", theirs("openvino", avx2))]
    return rows


def inference(args):
    results = {}
    batches = list(map(int, args.batches.split(",")))
    rows = entries(args.groups.split(","))
    for batch in batches:
        for r in range(args.rounds):
            # Alternate: forward in even rounds, backward in odd ones.
            for group, label, run in (rows if r % 2 == 0 else rows[::-1]):
                res = run(args, batch)
                results.setdefault((label, batch), []).append(res)
                print(f"  round {r + 1} batch {batch} {label:40s} {res['img_s']:7.1f} img/s  peak {res['peak_mb']:.0f} MiB",
                      file=sys.stderr)
    print(f"Inference: median of {args.rounds} rounds x {args.iterations} iterations; the ratio is the group's "
          f"distillctl row over each row\n")
    print("| group | runtime | batch | img/s | latency p50 ms | peak MiB | distillctl / runtime | notes |")
    print("|---|---|---|---|---|---|---|---|")
    for batch in batches:
        for group in dict.fromkeys(g for g, _, _ in rows):
            members = [label for g, label, _ in rows if g == group]
            ours = statistics.median(x["img_s"] for x in results[(members[0], batch)])
            for label in members:
                rs = results[(label, batch)]
                img_s = statistics.median(x["img_s"] for x in rs)
                p50 = statistics.median(x["p50_ms"] for x in rs)
                peak = max(x["peak_mb"] for x in rs)
                notes = ", ".join(f"{k} {rs[0][k]}" for k in ("precision", "kernels") if k in rs[0])
                print(f"| {group} | {label} | {batch} | {img_s:.1f} | {p50:.1f} | {peak:.0f} | {ours / img_s:.2f}x | {notes} |")
    print()


def training(args):
    setups = [None, "block5a_expand_conv"]
    results = {}
    for r in range(args.train_rounds):
        for unfreeze in setups:
            order = ["distillctl", "tensorflow"] if r % 2 == 0 else ["tensorflow", "distillctl"]
            for name in order:
                run = distillctl_train if name == "distillctl" else tensorflow_train
                res = run(args.model, args.train_batch, args.train_iterations, args.threads, unfreeze)
                results.setdefault((name, unfreeze), []).append(res)
                print(f"  round {r + 1} train {unfreeze or 'head only'} {name:12s} {res['s_step']:.3f} s/step  "
                      f"peak {res['peak_mb']:.0f} MiB  trainable {res['trainable']}", file=sys.stderr)
    print(f"Distillation step, batch {args.train_batch} (teacher forward, student forward and backward, Adam): "
          f"median of {args.train_rounds} rounds x {args.train_iterations} steps\n")
    print("| runtime | trainable | parameters | s per step | peak MiB | TensorFlow time / distillctl time |")
    print("|---|---|---|---|---|---|")
    for unfreeze in setups:
        tf_step = statistics.median(x["s_step"] for x in results[("tensorflow", unfreeze)])
        for name in ["distillctl", "tensorflow"]:
            rs = results[(name, unfreeze)]
            step = statistics.median(x["s_step"] for x in rs)
            peak = max(x["peak_mb"] for x in rs)
            label = f"from {unfreeze}" if unfreeze else "head only"
            print(f"| {name} | {label} | {rs[0]['trainable']} | {step:.4f} | {peak:.0f} | {tf_step / step:.2f}x |")
    print()

if __name__ == "__main__":
    main()
