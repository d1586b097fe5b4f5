"""Would int8 (AVX-512 VNNI) pay on EfficientNetB0? A measurement before building anything: the
benchmark's model (bench/compare.py's ONNX export of the seed EfficientNetB0) quantized by ONNX
Runtime's static post-training quantization (QDQ, int8 weights per channel, uint8 activations,
calibrated on photos), run by ONNX Runtime and by OpenVINO (which executes QDQ models in int8),
beside the same runtimes in float32, OpenVINO's bf16 and distillctl's float32 and bf16. Alternating
rounds, each runtime in its own process, medians; and the int8 model's largest output difference
to float32 and its top-1 agreement on the photos (the benchmark's EfficientNetB0 has Keras's random
initial weights, so the agreement says how far int8 moves the outputs, not what it costs a trained
model in accuracy).

    python bench/int8_probe.py [--distillctl BIN] [--photos DIR] [--rounds 3] [--iterations 20]

Needs bench/run.sh's environment (onnxruntime, openvino) and a first bench/run.sh (the ONNX export
in ~/.cache/distillctl/bench-models); DIR holds JPEGs (default: bench/whole_job.sh's photos).
"""
import argparse
import glob
import json
import os
import statistics
import subprocess
import sys

import numpy as np

from precision import bench

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MODELS = os.path.expanduser("~/.cache/distillctl/bench-models")
INT8 = "model_int8.onnx"


def photos(folder, count, size):
    """Keras's load_img (nearest resize) of the first `count` JPEGs, as float32 0-255."""
    from PIL import Image
    files = sorted(glob.glob(os.path.join(folder, "*.jpg")))[:count]
    if len(files) < count:
        raise SystemExit(f"int8_probe: {folder} has {len(files)} JPEGs, {count} needed (run bench/whole_job.sh once)")
    return np.stack([np.asarray(Image.open(f).convert("RGB").resize((size, size), Image.NEAREST), dtype=np.float32)
                     for f in files])


def quantize(images):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"input": images[i:i + 1]} for i in range(len(images))])

        def get_next(self):
            return next(self.items, None)

    pre = os.path.join(MODELS, "model_pre.onnx")
    out = os.path.join(MODELS, INT8)
    quant_pre_process(os.path.join(MODELS, "model.onnx"), pre, skip_symbolic_shape=True)
    quantize_static(pre, out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return out


def peer_speed(runtime, onnx, batch, iterations, threads):
    """img/s of bench/peers.py's runner for `runtime` on WORKDIR's `onnx`, in a process of its own."""
    out = subprocess.run([sys.executable, os.path.join(HERE, "peers.py"), "run", runtime, "-", MODELS, str(batch),
                          str(iterations), str(threads), onnx], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["img_s"]


def distillctl_speed(binary, precision, batch, iterations, threads):
    return bench(binary, os.path.join(ROOT, "fixtures/cases/k2_seed_effnetb0/model.h5"), precision, batch, threads,
                 iterations)


def agreement(int8_file, images):
    import onnxruntime as ort
    f32 = ort.InferenceSession(os.path.join(MODELS, "model.onnx"), providers=["CPUExecutionProvider"])
    q = ort.InferenceSession(int8_file, providers=["CPUExecutionProvider"])
    a = np.concatenate([f32.run(None, {"input": images[i:i + 8]})[0] for i in range(0, len(images), 8)])
    b = np.concatenate([q.run(None, {"input": images[i:i + 8]})[0] for i in range(0, len(images), 8)])
    return float(np.abs(a - b).max()), int((a.argmax(1) == b.argmax(1)).sum()), float(np.abs(a).max())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--distillctl", default=os.path.join(ROOT, ".build-bench/release/distillctl"))
    ap.add_argument("--photos", default=os.path.expanduser("~/.cache/distillctl/whole-job-320/images"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if not os.path.exists(os.path.join(MODELS, "model.onnx")):
        raise SystemExit("int8_probe: no ONNX export yet; run bench/run.sh once")
    calibration = photos(args.photos, 64, 228)
    int8 = quantize(calibration)    # the file WORKDIR/INT8
    check = photos(args.photos, 256, 228)
    diff, same, span = agreement(int8, check)
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"int8 (ONNX Runtime QDQ, calibrated on 64 photos) against float32 on {len(check)} photos: largest output "
          f"difference {diff:.4f} (outputs up to {span:.4f}), same top-1 {same}/{len(check)}\n")
    rows = {
        "distillctl f32": lambda b, n: distillctl_speed(args.distillctl, "f32", b, n, args.threads),
        "distillctl bf16": lambda b, n: distillctl_speed(args.distillctl, "bf16", b, n, args.threads),
        "onnxruntime f32": lambda b, n: peer_speed("onnxruntime", "model.onnx", b, n, args.threads),
        "onnxruntime int8": lambda b, n: peer_speed("onnxruntime", INT8, b, n, args.threads),
        "openvino f32": lambda b, n: peer_speed("openvino", "model.onnx", b, n, args.threads),
        "openvino as it comes (bf16)": lambda b, n: peer_speed("openvino-default", "model.onnx", b, n, args.threads),
        "openvino int8": lambda b, n: peer_speed("openvino-default", INT8, b, n, args.threads),
    }
    print(f"median img/s of {args.rounds} alternating rounds, {args.threads} threads")
    print("| runtime | batch 1 | batch 8 |")
    print("|---|---|---|")
    results = {name: {1: [], 8: []} for name in rows}
    for r in range(args.rounds):
        order = list(rows) if r % 2 == 0 else list(reversed(rows))
        for batch in (1, 8):
            for name in order:
                results[name][batch].append(rows[name](batch, max(5, args.iterations // batch)))
    for name in rows:
        print(f"| {name} | {statistics.median(results[name][1]):.1f} | {statistics.median(results[name][8]):.1f} |")
    print(json.dumps({k: {str(b): v for b, v in d.items()} for k, d in results.items()}))


if __name__ == "__main__":
    main()
