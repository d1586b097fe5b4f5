#!/usr/bin/env bash
# The test command: installs what the build needs, then runs the whole suite optimised
# (numeric Swift in a debug build is 10-50x slower; -enable-testing keeps @testable imports working)
# with the project's speed flags (scripts/build-flags.sh) but never -Ounchecked: bounds checks and
# preconditions stay on, so an invariant the tests break traps.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
source scripts/build-flags.sh
swift test -c release -Xswiftc -enable-testing "${build_flags[@]}" "$@"
