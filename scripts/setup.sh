#!/usr/bin/env bash
# Install spikeflow with the given extras (default: examples) into the current Python.
# PyTorch: where there is no NVIDIA GPU the CPU build is installed (never the multi-GB
# CUDA stack); an already installed torch >= 2.4 is kept as is.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-examples}"
python=${PYTHON:-python3}

if ! "$python" - <<'PY' 2>/dev/null
import sys
import torch
major, minor = (int(p) for p in torch.__version__.split(".")[:2])
sys.exit(0 if (major, minor) >= (2, 4) else 1)
PY
then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    "$python" -m pip install "torch>=2.4"
  else
    # On this project's machines this resolves to the local CPU wheel of torch 2.13.0.
    "$python" -m pip install "${SPIKEFLOW_CPU_TORCH:-torch==2.13.0}"
  fi
fi
"$python" -m pip install -q -e ".[${extras}]"
# Peers whose pip metadata pulls torchvision (hence a CUDA torch): installed without
# their dependencies for the tests and benchmarks that compare against them.
case ",${extras}," in
  *,test,*|*,bench,*)
    "$python" -m pip install -q --no-deps "spikingjelly==2.0.0" "norse==1.1.0" ;;
esac
