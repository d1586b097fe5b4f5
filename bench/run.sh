#!/usr/bin/env bash
# Builds distillctl, creates the peers' virtual environment (TensorFlow, tf-keras, tf2onnx,
# ONNX Runtime, OpenVINO from PyPI) on first use, and prints the side-by-side table.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
venv="${DISTILLCTL_BENCH_VENV:-$HOME/.cache/distillctl/bench-venv}"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import tensorflow, tf_keras, tf2onnx, onnxruntime, openvino, pandas, PIL, scipy" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q tensorflow-cpu==2.21.0 tf-keras==2.21.0 h5py onnxruntime openvino tf2onnx pandas pillow scipy
fi
# The benchmarked binary: the speed flags plus -Ounchecked, in its own scratch path.
source scripts/build-flags.sh
swift build -c release --scratch-path "$bench_scratch" "${bench_flags[@]}" --product distillctl
# Inference rows in groups: float32, bf16 (distillctl --precision bf16 beside OpenVINO as it comes)
# and AVX2 (DISTILLCTL_NO_AVX512 beside oneDNN under ONEDNN_MAX_CPU_ISA=AVX2); --groups to choose.
"$venv/bin/python" bench/compare.py --distillctl "$bench_scratch/release/distillctl" "$@"
# The whole job (320 photos of 800x600, the seed's augmentation, one epoch): distillctl's whole
# process, with and without --fast-decode, beside Keras's ImageDataGenerator + tf.function loop.
# DISTILLCTL_BENCH_WHOLE_JOB=0 leaves it out (it takes a few minutes).
if [[ "${DISTILLCTL_BENCH_WHOLE_JOB:-1}" != 0 ]]; then
    DISTILLCTL_BENCH_VENV="$venv" bench/whole_job.sh --rounds 3 --keras "$bench_scratch/release/distillctl" \
        "$bench_scratch/release/distillctl --fast-decode"
fi
