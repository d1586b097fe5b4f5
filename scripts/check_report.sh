#!/usr/bin/env bash
# CI check of `distillctl report`: distils the bundled example for two epochs (for a history),
# writes the report, renders it in headless Chromium (Debian's `chromium`) and checks the
# screenshot is a page with content: mostly white, dark text, the teacher's and student's colours
# of the reliability diagrams, and many colours in all (tables, shading, curves).
#
#     scripts/check_report.sh [path/to/distillctl]
#
# Leaves the page and the screenshot in $REPORT_DIR (default: a temporary folder) and prints where.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${1:-$root/.build/release/distillctl}"
venv="${DISTILLCTL_VENV:-$HOME/.cache/distillctl/venv}"
out="${REPORT_DIR:-$(mktemp -d)}"
mkdir -p "$out"
command -v chromium >/dev/null || { echo "check_report: chromium not found (scripts/install-deps.sh installs it)" >&2; exit 1; }
ex="$root/example"
"$bin" distill --teacher "$ex/teacher.h5" --student "$ex/student.h5" --train "$ex/data/train.csv" \
    --val "$ex/data/val.csv" --images "$ex/data/images" --epochs 2 --batch-size 32 --seed 1 \
    --output "$out/student.h5" --history "$out/history.csv" > "$out/distill.log"
"$bin" report --teacher "$ex/teacher.h5" --student "$out/student.h5" --test "$ex/data/test.csv" \
    --images "$ex/data/images" --history "$out/history.csv" --output "$out/report.html" --json "$out/report.json"
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --screenshot="$out/report.png" \
    --window-size=1200,3000 "file://$out/report.html" > "$out/chromium.log" 2>&1
"$venv/bin/python" - "$out/report.png" <<'PY'
import sys
import numpy as np
from PIL import Image
im = np.asarray(Image.open(sys.argv[1]).convert("RGB")).astype(int)
h, w, _ = im.shape
px = im.reshape(-1, 3)
white = float((px == 255).all(1).mean())
dark = float((px.max(1) < 80).mean())
colours = len(np.unique(px[:, 0] * 65536 + px[:, 1] * 256 + px[:, 2]))
def near(c):
    return int((np.abs(px - np.array(c)) < 12).all(1).sum())
teacher, student = near((0x00, 0xBF, 0xC4)), near((0xF8, 0x76, 0x6D))
print(f"screenshot {w}x{h}: {white:.1%} white, {dark:.2%} dark (text), {colours} colours, "
      f"{teacher} teacher-coloured and {student} student-coloured pixels")
problems = []
if white > 0.985: problems.append("the page is (almost) blank")
if dark < 0.002: problems.append("no text to speak of")
if colours < 50: problems.append("too few colours for tables, shading and plots")
if teacher < 2000 or student < 2000: problems.append("the reliability diagrams / curves are missing")
if problems:
    sys.exit("check_report: FAIL: " + "; ".join(problems))
print("check_report: OK")
PY
echo "report, screenshot and JSON in $out"
