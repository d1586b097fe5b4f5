#!/usr/bin/env bash
# The test command: installs what the build needs, then runs the whole suite optimised
# (numeric Swift in a debug build is 10-50x slower; -enable-testing keeps @testable imports working).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift test -c release -Xswiftc -enable-testing "$@"
