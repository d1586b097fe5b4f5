#!/usr/bin/env bash
# The bundled example (README's main command): distils a small Keras-trained Fashion-MNIST teacher
# into a smaller, untrained student on 3000 JPEGs in the blog post's CSV layout, validates every
# epoch, writes the student as a Keras .h5, and prints teacher and student accuracy on 1000
# held-out images. Installs the Debian packages it needs and builds distillctl first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
source scripts/build-flags.sh
swift build -c release "${build_flags[@]}" --product distillctl
out="${1:-example-student.h5}"
.build/release/distillctl distill \
    --teacher example/teacher.h5 --student example/student.h5 \
    --train example/data/train.csv --val example/data/val.csv --test example/data/test.csv \
    --images example/data/images --output "$out" --history "${out%.h5}-history.csv" \
    --epochs 10 --batch-size 32 --alpha 0.9 --temperature 3 --learning-rate 0.001 --seed 1
echo "the student: $out (loads in tf-keras and Keras 3: keras.models.load_model(\"$out\"))"
