#!/usr/bin/env bash
# GPU validation of the fused Triton kernels, in one run on a machine with an NVIDIA GPU
# (CI has none). Runs the kernel tests on the GPU, then the neuron and layer benchmarks
# against the peers with --device cuda, writing every log under $OUT (default ./gpu-out).
#
#   bash scripts/device_check.sh            # at most 9.25 minutes (stage time limits)
#
# Through the device tool: one `run` with carry [".whl"] and timeout_s 600, command
#   OUT=$OUT bash scripts/device_check.sh
#
# The GPU machine needs torch (CUDA), triton, pytest and numpy; peers it lacks can be
# carried as wheels in .whl/ (scripts/fetch_device_wheels.sh fetches them): they are
# installed into /tmp/site first. spikeflow itself runs from src/ (no install).
# Each stage has its own time limit so that one hang does not cost the others; the stages
# run in order of importance (correctness, then issue 3's neuron target), since a session's
# device time (15 minutes, machine start included) may allow only this one run.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
python=${PYTHON:-python3}
export PYTHONUNBUFFERED=1

if compgen -G ".whl/*.whl" >/dev/null; then
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH="$PWD/src:/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
fi

{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  "$python" - <<'PY'
import platform
import torch
import triton
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda,
      "triton", triton.__version__, "gpu", torch.cuda.get_device_name())
for name in ("spikingjelly", "snntorch", "norse"):
    try:
        mod = __import__(name)
        print(name, getattr(mod, "__version__", "installed"))
    except Exception as exc:  # noqa: BLE001
        print(name, "unavailable:", exc)
PY
} 2>&1 | tee "$OUT/machine.txt"

# 1. Correctness on the GPU: the Triton cases of the kernel tests run on CUDA tensors.
workers=""
if "$python" -c "import xdist" 2>/dev/null; then workers="-n 8"; fi
timeout 60 "$python" -m pytest -q -p no:cacheprovider $workers \
  tests/test_kernels_cuda.py tests/test_kernels_triton_aot.py tests/test_memory.py \
  2>&1 | tee "$OUT/tests.txt"
echo "tests (GPU modules) exit: ${PIPESTATUS[0]}" | tee -a "$OUT/tests.txt"
timeout 180 "$python" -m pytest -q -p no:cacheprovider $workers -k triton \
  tests/test_kernels_fused.py tests/test_kernels_robustness.py tests/test_neurons_zoo.py \
  tests/test_kernels_triton_codegen.py tests/test_kernels_tracing.py tests/test_compile_fused.py \
  tests/test_scalar_precision.py tests/test_captured_values.py \
  tests/test_kernels_initial_values.py tests/test_kernels_launches.py \
  tests/test_kernels_unused_states.py tests/test_event_driven.py tests/test_neurons_clif_raf.py \
  tests/test_rsnn.py tests/test_quant_membrane.py tests/test_neurons_refractory.py \
  tests/test_neurons_adex.py tests/test_neurons_alpha.py tests/test_neurons_coba.py \
  tests/test_neurons_izhikevich2003.py tests/test_neurons_liaf.py \
  2>&1 | tee -a "$OUT/tests.txt"
echo "tests (triton cases) exit: ${PIPESTATUS[0]}" | tee -a "$OUT/tests.txt"

# 2. Neuron-only benchmark (issue 3: at least as fast as SpikingJelly for T in 4, 16, 64).
timeout 230 "$python" benchmarks/bench_neuron.py --device cuda --T 4 16 64 --N 1e5 1e6 1e7 \
  --max-elems 0 --repeats 20 --budget 1.5 --libs spikeflow spikingjelly snntorch \
  --json "$OUT/neuron.json" 2>&1 | tee "$OUT/neuron.txt"
echo "bench_neuron exit: ${PIPESTATUS[0]}" | tee -a "$OUT/neuron.txt"

# 3. The Open Neuromorphic layer benchmark, CPU sizes plus 4096-16384 on the GPU.
timeout 90 "$python" benchmarks/bench_onm_layer.py --device cuda --n 512 2048 4096 16384 \
  --repeats 10 --libs spikeflow spikingjelly snntorch --json "$OUT/layer.json" \
  2>&1 | tee "$OUT/layer.txt"
echo "bench_onm_layer exit: ${PIPESTATUS[0]}" | tee -a "$OUT/layer.txt"

# 4. Where a small call's time goes (host overhead vs kernels), profiled.
timeout 30 "$python" benchmarks/profile_call.py --device cuda --T 16 --N 1e5 \
  --libs spikeflow spikingjelly 2>&1 | tee "$OUT/profile.txt"
echo "profile_call exit: ${PIPESTATUS[0]}" | tee -a "$OUT/profile.txt"

# 5. Launch configuration sweep (neurons per program x warps), next to SpikingJelly.
# (Shortened and last: the last run kept the default.)
timeout 25 "$python" benchmarks/bench_triton_tune.py --T 16 --N 1e7 \
  --json "$OUT/tune.json" 2>&1 | tee "$OUT/tune.txt"
echo "bench_triton_tune exit: ${PIPESTATUS[0]}" | tee -a "$OUT/tune.txt"
