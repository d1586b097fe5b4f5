#!/usr/bin/env bash
# Fuzzes the model reader with libFuzzer for SECONDS in all (default 90): two thirds on model files
# (mutated .h5 -> KerasH5File.read -> config parse -> weight binding), one third on architecture
# JSON (ModelConfigParser.parse). Coverage-guided on the Swift code (libhdf5 itself is Debian's
# uninstrumented build), AddressSanitizer on, and every input must finish within -timeout seconds,
# allocate at most -malloc_limit_mb in one go and keep the process under -rss_limit_mb.
#
#   scripts/fuzz.sh [SECONDS]
#
# Prints "fuzz: N iterations, C crashes (K libhdf5 crashes, hangs or huge mallocs contained)" and
# exits non-zero on any crash, hang or memory finding of ours; its input is kept in
# fixtures/fuzz/crashes/ (replay it with `.build-fuzz/debug/FuzzH5 h5 --replay FILE`, or run the
# binary on it for the sanitizer report). Faults inside libhdf5 that distillctl's isolated read
# turns into one error line are counted apart: see fixtures/fuzz/README.md.
# Builds in .build-fuzz (never touches .build). The growing corpus lives in .build-fuzz/corpus/.
set -euo pipefail
cd "$(dirname "$0")/.."
total=${1:-90}
(( total >= 3 )) || { echo "fuzz: SECONDS must be at least 3" >&2; exit 2; }
json_time=$(( total / 3 ))
h5_time=$(( total - json_time ))

rt=$(dirname "$(command -v swiftc)")/../lib/clang
fuzzer_lib=$(ls "$rt"/*/lib/linux/libclang_rt.fuzzer_no_main-x86_64.a 2>/dev/null | head -n 1)
if [[ -z "$fuzzer_lib" ]]; then
    echo "fuzz: libclang_rt.fuzzer_no_main not found under $rt" >&2
    exit 1
fi

echo "fuzz: building FuzzH5 with libFuzzer and AddressSanitizer (.build-fuzz)"
# Debug configuration on purpose: bounds and overflow checks stay on and nothing is inlined
# away, so a Swift-side bug traps instead of corrupting memory quietly.
# -sanitize=fuzzer goes to the frontend only (coverage instrumentation): the driver's
# -sanitize=fuzzer would link libFuzzer's main(), which SwiftPM's `--defsym main=...` collides with.
build_start=$SECONDS
build_log=$(mktemp)
if ! swift build --scratch-path .build-fuzz --product FuzzH5 \
        -Xswiftc -sanitize=address -Xswiftc -Xfrontend -Xswiftc -sanitize=fuzzer \
        -Xlinker --whole-archive -Xlinker "$fuzzer_lib" -Xlinker --no-whole-archive -Xlinker -lstdc++ \
        > "$build_log" 2>&1; then
    grep -v -e "Cannot export local symbol" "$build_log" | tail -n 40
    rm -f "$build_log"
    echo "fuzz: build failed" >&2
    exit 1
fi
rm -f "$build_log"
binary=.build-fuzz/debug/FuzzH5
echo "fuzz: built in $(( SECONDS - build_start )) s"

export SWIFT_BACKTRACE=enable=no                 # let libFuzzer and ASan report crashes
# allocator_may_return_null: a huge malloc inside libhdf5 fails as glibc's would (HDF5 then reports
# an error) instead of ASan stopping the process; -malloc_limit_mb still catches large ones.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:allocator_may_return_null=1}
# A hang inside libhdf5 ends the reader's isolated child after this many seconds in the replays
# below (the inputs are small: reading one takes milliseconds).
export DISTILLCTL_HDF5_TIMEOUT=1

findings=.build-fuzz/findings
iterations=0
crashes=0
contained_total=0
for mode in h5 json; do
    seconds=$h5_time
    [[ $mode == json ]] && seconds=$json_time
    work=.build-fuzz/corpus/$mode
    mkdir -p "$work"
    rm -rf "$findings/$mode"; mkdir -p "$findings/$mode"
    log=.build-fuzz/fuzz-$mode.log
    # The committed corpus (seeds and minimised finds) is copied into the working one, so an input
    # that turns out to crash libhdf5 can be dropped from there (below) without touching git.
    cp -n fixtures/fuzz/seeds/$mode/* "$work"/
    [[ -d fixtures/fuzz/finds/$mode ]] && cp -n fixtures/fuzz/finds/$mode/* "$work"/
    corpora=("$work")
    # libFuzzer stops at a finding (libhdf5 has crashes and hangs of its own); it is restarted on
    # the grown corpus until the time is up. The reader's isolated child is off here, so every
    # libhdf5 crash shows at full speed; the replays below put it back.
    : > "$log"
    runs=0
    deadline=$(( SECONDS + seconds ))
    while (( deadline - SECONDS >= 1 )); do
        DISTILLCTL_NO_ISOLATION=1 "$binary" "$mode" -max_total_time=$(( deadline - SECONDS )) -timeout=3 \
            -rss_limit_mb=2048 -malloc_limit_mb=512 -dict="fixtures/fuzz/$mode.dict" \
            -artifact_prefix="$findings/$mode/" -print_final_stats=1 -close_fd_mask=1 \
            "${corpora[@]}" > "$log.run" 2>&1 || true
        cat "$log.run" >> "$log"
        # A finding that sits in the working corpus (libhdf5's out-of-bounds reads do not crash
        # every time) would stop every restart while the corpus loads: drop it from there.
        for f in "$findings/$mode"/*; do [[ -e "$f" ]] && rm -f "$work/${f##*-}"; done
        n=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log.run" | tail -n 1)
        runs=$(( runs + ${n:-0} ))
        grep -q -e "^stat::" -e "Test unit written" "$log.run" || break   # did not run at all
    done
    rm -f "$log.run"
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 || true)
    # Each finding is libhdf5's own when the first frame of its report outside the sanitizer,
    # libFuzzer and libc is in libhdf5 (a crash, a hang or a huge malloc there), and when
    # replaying it as distillctl reads a file (isolated child on) gives one clean error line:
    # then the reader contained it. Anything else is a crash of ours.
    found=0
    contained=0
    for f in "$findings/$mode"/*; do
        [[ -e "$f" ]] || continue
        where=$(python3 - "$log" "$f" <<'PY'
import re, sys
# libFuzzer stops at a finding, so each run of the log (from its "Dictionary:" line) has at most
# one: its report is the run's stack (before the unit's line, or after it for a timeout).
log, unit = open(sys.argv[1], errors="replace").read().split("\n"), sys.argv[2]
end = max((i for i, l in enumerate(log) if "Test unit written to " + unit in l), default=0)
start = max((i for i in range(end + 1) if log[i].startswith("Dictionary:")), default=0)
stop = next((i for i in range(end + 1, len(log)) if log[i].startswith("Dictionary:")), len(log))
skip = ("compiler-rt", "fuzzer::", "__sanitizer", "__asan", "libc.so", "LLVMFuzzer", "libclang_rt")
frames = [l for l in log[start:stop] if re.match(r"\s+#\d+ 0x", l) and not any(k in l for k in skip)]
if not any("Test unit written to " + unit in l for l in log):
    frames = []
print("libhdf5" if frames and "libhdf5" in frames[0] else (frames[0].strip() if frames else "no report"))
PY
)
        out=$(timeout 60 "$binary" "$mode" --replay "$f" 2>/dev/null) && status=0 || status=$?
        if [[ $where == libhdf5 ]] && (( status == 0 )) && [[ "$out" == *": error: "* && "$out" != *$'\n'* ]]; then
            contained=$(( contained + 1 ))
        else
            found=$(( found + 1 ))
            mkdir -p fixtures/fuzz/crashes
            cp "$f" "fixtures/fuzz/crashes/$mode-$(basename "$f")"
            echo "    crash: fixtures/fuzz/crashes/$mode-$(basename "$f") (top frame: ${where:0:200}; replay: exit $status: ${out:0:300})"
        fi
    done
    echo "fuzz: $mode: $runs iterations in $seconds s, $cov, $found crashes," \
         "$contained libhdf5 crashes, hangs or huge mallocs contained by the isolated read (inputs in $findings/$mode; log $log)"
    iterations=$(( iterations + runs ))
    crashes=$(( crashes + found ))
    contained_total=$(( contained_total + contained ))
done
echo "fuzz: $iterations iterations, $crashes crashes ($contained_total libhdf5 crashes, hangs or huge mallocs contained)"
(( crashes == 0 ))
