#!/usr/bin/env bash
# Installs the Debian packages distillctl builds against, and (with --python) the Python virtual
# environment with real Keras used by the Keras checks. Safe to run repeatedly.
set -euo pipefail
# openmpi-bin: mpirun and libmpi.so.40 for data-parallel distillation; distillctl loads libmpi only
# when mpirun starts it, so a plain run needs none of it. zlib1g-dev: ZIPFoundation (.keras archives).
# chromium: scripts/check_report.sh renders `distillctl report`'s page headless and checks the screenshot.
packages=(libhdf5-dev zlib1g-dev libopenblas-dev libjpeg62-turbo-dev libpng-dev pkg-config hdf5-tools dataset-fashion-mnist openmpi-bin chromium)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "installing Debian packages: ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ "${1:-}" = "--python" ]; then
    venv="${DISTILLCTL_VENV:-$HOME/.cache/distillctl/venv}"
    if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import tensorflow, tf_keras, keras, h5py, PIL" 2>/dev/null; then
        echo "creating the Keras virtual environment in $venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q --upgrade pip
        "$venv/bin/pip" install -q tensorflow-cpu==2.21.0 tf-keras==2.21.0 h5py pillow
    fi
    # fixtures/probe_datasets.py reads CSVs with pandas.read_csv, as Keras users do.
    "$venv/bin/python" -c "import pandas" 2>/dev/null || "$venv/bin/pip" install -q pandas
fi
