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
    spec="${SPIKEFLOW_CPU_TORCH:-torch==2.13.0}"
    # The build pip would pick from the configured sources: a CPU one where they hold it
    # (this project's machines: the local torch 2.13.0+cpu wheel), else PyPI's, which
    # pulls the CUDA libraries on Linux; then PyTorch's CPU index is used instead.
    picked=$("$python" -m pip install -q --dry-run --no-deps --ignore-installed --report - \
      "$spec" 2>/dev/null | "$python" -c \
      'import json, sys; print(json.load(sys.stdin)["install"][0]["metadata"]["version"])' \
      2>/dev/null || true)
    if [[ "$picked" == *+cpu* ]]; then
      "$python" -m pip install "$spec"
    else
      "$python" -m pip install "$spec" --index-url https://download.pytorch.org/whl/cpu \
        --extra-index-url https://pypi.org/simple || {
        # PyPI's build is the CPU one on macOS and Windows; on Linux it is the CUDA one.
        if [[ "$(uname -s)" == Linux && "${SPIKEFLOW_ALLOW_PYPI_TORCH:-0}" != 1 ]]; then
          echo "setup.sh: PyTorch's CPU index could not be used, and the $spec that pip" \
            "finds otherwise pulls the multi-GB CUDA libraries. Install a CPU build of" \
            "torch >= 2.4 first (then run this again), set SPIKEFLOW_CPU_TORCH to a" \
            "requirement that resolves to one, or set SPIKEFLOW_ALLOW_PYPI_TORCH=1 to" \
            "accept PyPI's build." >&2
          exit 1
        fi
        "$python" -m pip install "$spec"
      }
    fi
  fi
fi
"$python" -m pip install -q -e ".[${extras}]"
# Peers whose pip metadata pulls torchvision (hence a CUDA torch): installed without
# their dependencies for the tests and benchmarks that compare against them.
case ",${extras}," in
  *,test,*|*,bench,*)
    "$python" -m pip install -q --no-deps "spikingjelly==2.0.0" "norse==1.1.0" ;;
esac
