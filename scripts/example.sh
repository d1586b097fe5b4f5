#!/usr/bin/env bash
# The bundled example: the seed's EfficientNetB0 teacher (weights-only file + architecture JSON, as
# the R user saved it) summarised, checked against Keras's own outputs, and run on a few images.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift build -c release --product distillctl
bin=.build/release/distillctl
seed=fixtures/cases/k2_seed_effnetb0
echo "== summary (weights-only file + model.json)"
$bin summary "$seed/weights.h5" --arch "$seed/model.json"
echo "== verify against Keras's outputs"
$bin verify "$seed/weights.h5" --arch "$seed/model.json" --fixture "$seed/io.h5"
echo "== predict on bundled images"
out=$(mktemp -d)
cp fixtures/images/rgb420.jpg fixtures/images/rgb.png fixtures/images/gray.jpg "$out/"
$bin predict "$seed/model.h5" --images "$out" --output "$out/predictions.csv" \
    --class-names CBB,CBSD,CGM,CMD,Healthy
cat "$out/predictions.csv"
echo "== speed"
$bin bench "$seed/model.h5" --batch-size 1 --iterations 10
rm -rf "$out"
