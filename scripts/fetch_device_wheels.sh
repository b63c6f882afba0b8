#!/usr/bin/env bash
# Download, on a machine with internet, the pure-Python peers that the GPU machine
# lacks into .whl/ (git-ignored through .git/info/exclude), for scripts/device_check.sh.
# The GPU image runs Python 3.12 with torch, triton, numpy, h5py, matplotlib and scipy.
# norse 1.1.0 ships only a source archive (a C++ extension): it is not fetched.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx "/.whl/" .git/info/exclude 2>/dev/null || echo "/.whl/" >> .git/info/exclude
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d .whl \
  "spikingjelly==2.0.0" "loguru>=0.7,<1" "snntorch==1.0.0"
ls -l .whl
