#!/usr/bin/env bash
# The seed's whole job, timed for the whole process: one epoch of distillation on 320 photos of
# Cassava's size (800x600 JPEGs made by bench/make_jpegs.py), the seed's augmentation, batch 8,
# the EfficientNetB0 teacher fixture as teacher and as student with --trainable-head, 2 threads.
# Alternates the binaries given for ROUNDS rounds and prints every time and each binary's median.
#     bench/whole_job.sh [--rounds N] [--keras] [--steps] [BINARY...]     (default: the benchmarked build, bench/run.sh's)
# --keras adds Keras's own loop to every round (bench/keras_whole_job.py: ImageDataGenerator +
# flow_from_dataframe + a tf.function step, in the peers' environment of bench/run.sh) and prints
# each binary's median against it.
# --steps adds, in every round, each binary's `bench --train --head-only` step (batch 8, 2 threads,
# 10 iterations after its warm-up) and prints each binary's median whole process against 40 of its
# own median steps: what the images, the loading and the writing add to the steps.
# A BINARY may carry extra distill flags after a space, as one argument: "path/distillctl --fast-decode".
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=3
keras=0
steps=0
while [[ "${1:-}" == --* ]]; do
    case $1 in
        --rounds) rounds=$2; shift 2 ;;
        --keras) keras=1; shift ;;
        --steps) steps=1; shift ;;
        *) echo "usage: bench/whole_job.sh [--rounds N] [--keras] [--steps] [BINARY...]" >&2; exit 2 ;;
    esac
done
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
declare -A step_times
keras_epochs=()
keras_processes=()
bench_venv="${DISTILLCTL_BENCH_VENV:-$HOME/.cache/distillctl/bench-venv}"
if (( keras )) && ! "$bench_venv/bin/python" -c "import tensorflow, tf_keras, pandas, PIL, scipy" 2>/dev/null; then
    echo "whole_job: --keras needs bench/run.sh's environment ($bench_venv: tensorflow-cpu, tf-keras, pandas, pillow, scipy)" >&2
    exit 1
fi
for ((r = 0; r < rounds; r++)); do
    if (( keras )); then
        line=$("$bench_venv/bin/python" bench/keras_whole_job.py "$model" "$data" 2 | tail -n 1)
        e=$(python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(f\"{d['epoch_s']:.2f} {d['process_s']:.2f}\")" "$line")
        keras_epochs+=("${e% *}")
        keras_processes+=("${e#* }")
        printf 'round %d  %-60s %6.2f s epoch loop, %6.2f s process\n' "$((r + 1))" "keras (ImageDataGenerator + tf.function)" "${e% *}" "${e#* }"
    fi
    order=("${binaries[@]}")
    if (( r % 2 == 1 )); then order=(); for ((i = ${#binaries[@]} - 1; i >= 0; i--)); do order+=("${binaries[i]}"); done; fi
    for b in "${order[@]}"; do
        read -ra parts <<< "$b"
        binary=${parts[0]}
        extra=("${parts[@]:1}")
        if "$binary" distill --help 2>/dev/null | grep -q -- "--profile"; then extra+=(--profile); fi
        load=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo "?")
        start=$(date +%s.%N)
        # The process's CPU time too (user + sys, with the `time` package's /usr/bin/time): on a
        # shared machine the wall time moves with the load, the CPU a job needs much less.
        timer=()
        if [[ -x /usr/bin/time ]]; then timer=(/usr/bin/time -f "%U %S" -o "$work/cpu"); fi
        "${timer[@]}" "$binary" distill --teacher "$model" --student "$model" --train "$data/train.csv" --images "$data/images" \
            --output "$work/student.h5" --epochs 1 --batch-size 8 --augment seed --trainable-head --threads 2 \
            --seed 1 "${extra[@]}" > "$work/log" 2>&1 || { cat "$work/log"; exit 1; }
        t=$(echo "$(date +%s.%N) - $start" | bc)
        cpu="?"
        if [[ -s "$work/cpu" ]]; then cpu=$(awk '{printf "%.2f", $1 + $2}' "$work/cpu"); fi
        times[$b]="${times[$b]:-} $t"
        printf 'round %d  %-60s %6.2f s (CPU %s s, load %s)  %s\n' "$((r + 1))" "$b" "$t" "$cpu" "$load" \
            "$(grep '^images:\|^job:' "$work/log" | tr '\n' ' ' || true)"
        if (( steps )); then
            s=$("$binary" bench "$model" --train --head-only --batch-size 8 --iterations 10 --threads 2 | awk '/ s per step$/ {print $1}')
            step_times[$b]="${step_times[$b]:-} $s"
            printf 'round %d  %-60s %6.3f s per step (bench --train --head-only)\n' "$((r + 1))" "$b" "$s"
        fi
    done
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
if (( keras )); then
    ke=$(median <<< "${keras_epochs[*]}")
    kp=$(median <<< "${keras_processes[*]}")
    printf 'median %-60s %6.2f s epoch loop, %6.2f s process\n' "keras" "$ke" "$kp"
fi
for b in "${binaries[@]}"; do
    m=$(median <<< "${times[$b]}")
    printf 'median %-60s %6.2f s over%s' "$b" "$m" "${times[$b]}"
    if (( keras )); then printf '; Keras epoch loop / this whole process: %.2fx' "$(echo "$ke / $m" | bc -l)"; fi
    if (( steps )); then
        sm=$(median <<< "${step_times[$b]}")
        printf '; step %.3f s over%s, whole process / 40 steps: %.2fx' "$sm" "${step_times[$b]}" "$(echo "$m / (40 * $sm)" | bc -l)"
    fi
    printf '\n'
done
