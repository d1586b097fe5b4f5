#!/usr/bin/env bash
# Proves another package can depend on H5Model, Graph and Runtime by version: clones this
# repository's committed HEAD into a temporary folder, tags it 0.0.1, points .ci/consumer's
# manifest at it (`.package(url: "file://...", from: "0.0.1")`), builds the consumer with SwiftPM's
# plain release settings (none of scripts/build-flags.sh: what a dependent package gets) and runs a
# prediction on a fixture against the outputs real Keras wrote, with the AVX-512 kernels and without
# them (the Swift kernels at baseline x86-64), then one epoch of the example's distillation through
# the library's training job. SwiftPM refuses a versioned dependency whose manifest
# has unsafe flags, so the build itself is half the check. Uncommitted edits are not part of it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=$(mktemp -d "${TMPDIR:-/tmp}/distillctl-consumer.XXXXXX")
trap 'rm -rf "$work"' EXIT
commit=$(git rev-parse HEAD)
git clone -q --no-checkout "$root" "$work/distillctl"
git -C "$work/distillctl" tag 0.0.1 "$commit"
cp -R .ci/consumer "$work/consumer"
sed -i.orig "s|DISTILLCTL_URL|file://$work/distillctl|" "$work/consumer/Package.swift"
echo "check_consumer: building a package that depends on distillctl 0.0.1 (${commit:0:10}) from $work/distillctl"
if ! (cd "$work/consumer" && swift build -c release > "$work/build.log" 2>&1); then
    tail -n 40 "$work/build.log"
    echo "check_consumer: the consumer package did not build" >&2
    exit 1
fi
binary="$work/consumer/.build/release/consumer"
fixture="$root/fixtures/cases/k2_seed_effnetb0"
"$binary" "$fixture/model.h5" "$fixture/io.h5"
DISTILLCTL_NO_AVX512=1 "$binary" "$fixture/model.h5" "$fixture/io.h5"
# The training job as a library call: one epoch of the bundled example's distillation.
"$binary" distill "$root/example/student.h5" "$root/example/teacher.h5" "$root/example/data/train.csv" \
    "$root/example/data/test.csv" "$root/example/data/images" "$work/student.h5"
echo "check_consumer: ok"
