"""The fused GPU backend: Triton kernels printed from the same step graph as the C ones.

Needs the ``triton`` package (extra ``spikeflow[triton]``). Runs on CUDA tensors; with
``TRITON_INTERPRET=1`` in the environment (set before triton is imported) Triton's
interpreter runs the same kernels on CPU tensors, which is how CI checks them.
Generated modules are written to ``$SPIKEFLOW_CACHE_DIR/kernels/triton`` (atomically)
and imported from there; Triton caches the compiled binaries itself.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import struct
import tempfile
import threading
from types import ModuleType
from typing import Any

import torch
from torch import Tensor

from spikeflow.errors import ConfigurationError, DTypeError, MissingExtraError
from spikeflow.kernels.codegen_triton import generate_triton
from spikeflow.kernels.cpu import cache_dir
from spikeflow.kernels.fused import Launcher, Steps, promoted_input, run_fused
from spikeflow.kernels.precision import rounded_start
from spikeflow.kernels.reference import FiringRule
from spikeflow.kernels.spec import KernelSpec
from spikeflow.neurons.declaration import NeuronDeclaration

__all__ = [
    "interpreting",
    "launch_config",
    "run_triton",
    "run_with_launcher",
    "scalar_dtype",
    "set_launch_config",
    "triton_available",
]

#: Neurons per Triton program (a power of two) and warps per program.
BLOCK = 256
NUM_WARPS = 4
_LOCK = threading.Lock()
_MODULES: dict[str, ModuleType] = {}
#: How many sets of scalar parameters each Triton kernel pair keeps on the device.
_MAX_SCALAR_SETS = 64
#: dtypes the kernels accept; half types are computed in float32 (state kept in float32).
_SUPPORTED = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
#: No contraction of ``a * b + c`` into one FMA, in both kernels: the forward rounds
#: every operation as the reference loop's separate PyTorch kernels do (identical
#: spikes), and the backward, which recomputes each step from the saved state, must
#: recompute the forward's spikes bit for bit (a contracted ``h`` one ulp across the
#: threshold flips a spike and its reset's gradient: seen on an H200).
FP_FUSION = False


def set_launch_config(block: int = 256, num_warps: int = 4) -> None:
    """Set how the Triton kernels are launched: ``block`` neurons per program (a power of
    two from 32 to 4096) on ``num_warps`` warps (1, 2, 4, 8 or 16). For tuning on a GPU
    (``benchmarks/bench_triton_tune.py``); the results do not depend on it."""
    global BLOCK, NUM_WARPS
    if (
        isinstance(block, bool)
        or not isinstance(block, int)
        or block < 32
        or block > 4096
        or (block & (block - 1))
    ):
        raise ConfigurationError(f"block must be a power of two from 32 to 4096, got {block!r}")
    if num_warps not in (1, 2, 4, 8, 16) or isinstance(num_warps, bool):
        raise ConfigurationError(f"num_warps must be 1, 2, 4, 8 or 16, got {num_warps!r}")
    BLOCK, NUM_WARPS = block, num_warps


def launch_config() -> tuple[int, int]:
    """The current ``(block, num_warps)`` of the Triton kernels."""
    return BLOCK, NUM_WARPS


def triton_available() -> bool:
    """Whether the ``triton`` package can be imported."""
    return importlib.util.find_spec("triton") is not None


def interpreting() -> bool:
    """Whether Triton's CPU interpreter is on (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _module(source: str) -> ModuleType:
    key = hashlib.sha256(source.encode()).hexdigest()[:24]
    module = _MODULES.get(key)
    if module is not None:
        return module
    with _LOCK:
        module = _MODULES.get(key)
        if module is not None:
            return module
        folder = cache_dir() / "triton"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"neuron_{key}.py"
        if not path.exists():
            fd, tmp = tempfile.mkstemp(suffix=".py", dir=folder)
            with os.fdopen(fd, "w") as fh:
                fh.write(source)
            os.replace(tmp, path)
        spec = importlib.util.spec_from_file_location(f"spikeflow_triton_{key}", path)
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        spec.loader.exec_module(module)  # type: ignore[union-attr]
        _MODULES[key] = module
        return module


def step_args(steps: Steps, T: int, record_v: bool) -> tuple[list[int], dict[str, int]]:
    """The backward kernel's step arguments: per gradient read by steps (the spikes',
    then the recorded membrane's when recording), its step and its last row's offset;
    and its ``GELEM``/``GVELEM`` constants (0 for a step of -1: one value for every step
    and neuron, see :class:`_TritonKernels`)."""
    used = steps if record_v else steps[:1]
    args = [v for step in used for v in (max(step, 0), (T - 1) * max(step, 0))]
    return args, {name: int(step >= 0) for name, step in zip(("GELEM", "GVELEM"), used)}


def scalar_dtype(buffers: list[Tensor]) -> torch.dtype:
    """The dtype of the kernels' tensor of scalar parameters: float64, whatever their
    compute type, so that a Python float reaches them unrounded (an expression of
    Python floats alone is computed in double, as Python computes it; see
    :class:`spikeflow.kernels.printing.Typing`). A float kernel rounds each value to
    float32 as it loads it, as ``torch.tensor(value, dtype=torch.float32)`` would."""
    return torch.float64


class _TritonKernels:
    #: 0-dim tensor parameters go to the kernels as 1-element device buffers, which the
    #: generated code reads with ``tl.load(P)`` (reading a CUDA scalar on the host would
    #: synchronise every call; an expanded ``[N]`` copy would cost a launch).
    device_scalars = True
    #: A gradient that is one value for every step and neuron (``spikes.sum()``'s, a
    #: broadcast 0-dim tensor) comes as a 1-element buffer with step -1, which the
    #: kernels read for every neuron: no ``[N]`` copy (one launch) before the backward.
    one_value_gradients = True

    def __init__(self, module: ModuleType, record_v: bool = False) -> None:
        self.module = module
        self.record_v = record_v  # the backward takes the recorded membrane's gradient
        # The device copy of each set of Python-float parameters (a fresh
        # torch.tensor(..., device="cuda") per call would synchronise); the last
        # _MAX_SCALAR_SETS created are kept, so a float annealed every step does not
        # grow it.
        self._scal: dict[tuple, Tensor] = {}

    def _scalars(self, buffers: list[Tensor], scalars: list[float]) -> Tensor:
        ref = buffers[0]
        dtype = scalar_dtype(buffers)
        # By bit pattern: 0.0 and -0.0 compare equal (x / 0.0 and x / -0.0 do not), and
        # a NaN never equals itself.
        key = (struct.pack(f"{len(scalars)}d", *scalars), dtype, ref.device)
        scal = self._scal.get(key)
        if scal is None:
            if len(self._scal) >= _MAX_SCALAR_SETS:
                self._scal.pop(next(iter(self._scal)))  # the oldest
            scal = torch.tensor(scalars or [0.0], dtype=dtype, device=ref.device)
            self._scal[key] = scal
        return scal

    def forward(self, T: int, n: int, buffers: list[Tensor], scalars: list[float]) -> None:
        block, warps = BLOCK, NUM_WARPS
        grid = ((n + block - 1) // block,)
        scal = self._scalars(buffers, scalars)
        self.module.spikeflow_forward[grid](
            *buffers, scal, T, n, BLOCK=block, num_warps=warps, enable_fp_fusion=FP_FUSION
        )

    def backward(
        self, T: int, n: int, buffers: list[Tensor | None], scalars: list[float], steps: Steps
    ) -> None:
        block, warps = BLOCK, NUM_WARPS
        grid = ((n + block - 1) // block,)
        # None (an absent final-state gradient) is a compile-time constant to Triton.
        scal = self._scalars(buffers, scalars)  # type: ignore[arg-type]
        last = (T - 1) * n
        args, elems = step_args(steps, T, self.record_v)
        self.module.spikeflow_backward[grid](
            *buffers, scal, T, n, last, *args, **elems,
            BLOCK=block, num_warps=warps, enable_fp_fusion=FP_FUSION,
        )  # fmt: skip


def _launcher(spec: KernelSpec) -> _TritonKernels:
    # Compiled for a GPU: the exact flavour (libdevice); the interpreter has no libdevice.
    return _TritonKernels(_module(generate_triton(spec, exact=not interpreting())), spec.record_v)


def run_triton(
    decl: NeuronDeclaration,
    x_seq: Tensor,
    state: dict[str, Tensor | float],
    params: dict[str, Tensor | float],
    threshold: Tensor | float,
    rule: FiringRule,
    record_v: bool = False,
) -> tuple[Tensor, dict[str, Tensor], Tensor | None]:
    """Fused Triton equivalent of :func:`spikeflow.kernels.reference.run_reference`."""
    if not triton_available():
        raise MissingExtraError("backend 'triton'", "triton", "triton")
    if x_seq.device.type != "cuda" and not interpreting():
        raise ConfigurationError(
            f"backend 'triton' runs on CUDA tensors (got device {x_seq.device}); set "
            "TRITON_INTERPRET=1 before importing triton to run it on the CPU interpreter"
        )
    return run_with_launcher(_launcher, decl, x_seq, state, params, threshold, rule, record_v)


def run_with_launcher(
    launcher: Launcher,
    decl: NeuronDeclaration,
    x_seq: Tensor,
    state: dict[str, Tensor | float],
    params: dict[str, Tensor | float],
    threshold: Tensor | float,
    rule: FiringRule,
    record_v: bool = False,
) -> tuple[Tensor, dict[str, Tensor], Tensor | None]:
    """:func:`run_fused` specialised as the Triton kernels are (compute type, state dtype,
    no checkpointing, parameters on the device), with kernels from ``launcher``: shared
    by :func:`run_triton` and :func:`spikeflow.kernels.triton_aot.compile_for_gpu`, so
    that what is compiled ahead of time is what runs."""
    state = rounded_start(state, x_seq.dtype)  # before a parameter promotes the input
    x_seq = promoted_input(x_seq, params, threshold, state)
    dtype = x_seq.dtype
    if dtype not in _SUPPORTED:
        raise DTypeError(f"backend 'triton' supports {_SUPPORTED}, got {dtype}")
    wide = dtype == torch.float64
    state_dtype = torch.float64 if wide else torch.float32
    args: tuple[Any, ...] = (decl, x_seq, state, params, threshold, rule, record_v)
    # Tensor parameters (0-dim ones too, see _TritonKernels.device_scalars) are read by
    # the kernels from device memory.
    spikes, finals, v_seq = run_fused(
        launcher, "double" if wide else "float", state_dtype, 1, *args
    )
    if dtype in (torch.float16, torch.bfloat16):
        # A half input's state is computed in float32 but handed back in the input's
        # dtype, as the reference loop keeps it: carried into the next call (streaming),
        # a float32 state would promote that call's input and output to float32.
        finals = {name: s.to(dtype) for name, s in finals.items()}
    return spikes, finals, v_seq
