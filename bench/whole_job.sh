#!/usr/bin/env bash
# The seed's whole job, timed for the whole process: one epoch of distillation on 320 photos of
# Cassava's size (800x600 JPEGs made by bench/make_jpegs.py), the seed's augmentation, batch 8,
# the EfficientNetB0 teacher fixture as teacher and as student with --trainable-head, 2 threads.
# Alternates the binaries given for ROUNDS rounds and prints every time and each binary's median.
#     bench/whole_job.sh [--rounds N] [BINARY...]     (default: the benchmarked build, bench/run.sh's)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=3
if [[ "${1:-}" == --rounds ]]; then rounds=$2; shift 2; fi
source scripts/build-flags.sh
binaries=("$@")
if [[ ${#binaries[@]} -eq 0 ]]; then
    swift build -c release --scratch-path "$bench_scratch" "${bench_flags[@]}" --product distillctl
    binaries=("$bench_scratch/release/distillctl")
fi
venv="${DISTILLCTL_VENV:-$HOME/.cache/distillctl/venv}"
data="${DISTILLCTL_WHOLE_JOB_DATA:-$HOME/.cache/distillctl/whole-job-320}"
if [[ ! -f "$data/train.csv" ]]; then "$venv/bin/python" bench/make_jpegs.py "$data" 320; fi
model=fixtures/cases/k2_seed_effnetb0/model.h5
work=$(mktemp -d "${TMPDIR:-/tmp}/distillctl-whole-job.XXXXXX")
trap 'rm -rf "$work"' EXIT
declare -A times
for ((r = 0; r < rounds; r++)); do
    order=("${binaries[@]}")
    if (( r % 2 == 1 )); then order=(); for ((i = ${#binaries[@]} - 1; i >= 0; i--)); do order+=("${binaries[i]}"); done; fi
    for b in "${order[@]}"; do
        extra=()
        if "$b" distill --help 2>/dev/null | grep -q -- "--profile"; then extra=(--profile); fi
        start=$(date +%s.%N)
        "$b" distill --teacher "$model" --student "$model" --train "$data/train.csv" --images "$data/images" \
            --output "$work/student.h5" --epochs 1 --batch-size 8 --augment seed --trainable-head --threads 2 \
            --seed 1 "${extra[@]}" > "$work/log" 2>&1 || { cat "$work/log"; exit 1; }
        t=$(echo "$(date +%s.%N) - $start" | bc)
        times[$b]="${times[$b]:-} $t"
        printf 'round %d  %-60s %6.2f s  %s\n' "$((r + 1))" "$b" "$t" "$(grep '^images:' "$work/log" || true)"
    done
done
for b in "${binaries[@]}"; do
    printf 'median %-60s %6.2f s over%s\n' "$b" "$(tr ' ' '\n' <<< "${times[$b]}" | grep . | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}')" "${times[$b]}"
done
