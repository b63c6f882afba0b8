"""The event-driven neuron's fused CPU kernels (``_neuron.c``, compiled once with OpenMP
through the same builder as spikeflow's other CPU kernels)."""

from __future__ import annotations

import ctypes
import functools
from importlib import resources
from typing import Any

import torch
from torch import Tensor

from spikeflow.kernels.cpu import kernel_threads, load_openmp_library

__all__ = ["c_backward", "c_forward"]

_P, _I, _D = ctypes.c_void_p, ctypes.c_int64, ctypes.c_double
_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}


@functools.cache
def _library() -> Any:
    source = resources.files("spikeflow.event_driven").joinpath("_neuron.c").read_text()
    lib = load_openmp_library(source, "event_driven")
    for suffix in _SUFFIX.values():
        forward = getattr(lib, f"ed_forward_{suffix}")
        forward.argtypes = [_I, _I, ctypes.c_int, _P, _P, _P, _P, _D, _D, _D, _D, _D,
                            ctypes.c_int]  # fmt: skip
        forward.restype = None
        backward = getattr(lib, f"ed_backward_{suffix}")
        backward.argtypes = [_I, _I, ctypes.c_int, _P, _P, _P, _P, _P, _P, _P, _P, _D, _D]
        backward.restype = None
    return lib


def supports(x: Tensor) -> bool:
    """Whether the C kernels take ``x``: a CPU float32/float64 tensor."""
    return x.device.type == "cpu" and x.dtype in _SUFFIX


def c_forward(
    current: Tensor, decays: tuple[float, float, float], scale: float, threshold: float,
    exponential: bool,
) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
    """Spikes, rise and slope (see :func:`spike_forward`) of ``current`` ``[T, ...]``."""
    current = current.contiguous()
    spikes, rise = torch.empty_like(current), torch.empty_like(current)
    slope = torch.empty_like(current) if exponential else rise
    steps = current.shape[0]
    n = current[0].numel() if steps else 0
    if steps and n:
        getattr(_library(), f"ed_forward_{_SUFFIX[current.dtype]}")(
            steps, n, kernel_threads(), current.data_ptr(), spikes.data_ptr(),
            rise.data_ptr(), slope.data_ptr() if exponential else None, *decays, scale,
            threshold, int(exponential),
        )  # fmt: skip
    return spikes, rise, slope


def c_backward(
    grad_time: Tensor, spikes: Tensor, rise: Tensor, slope: Tensor, kernel: Tensor,
    slope_kernel: Tensor, max_dt_du: float, max_dt_du_input: float,
) -> tuple[Tensor, Tensor]:  # fmt: skip
    """The two gradient tensors of :func:`spike_backward` (tables already built)."""
    grad_time, spikes, rise, slope = (t.contiguous() for t in (grad_time, spikes, rise, slope))
    for_input, for_weight = torch.empty_like(spikes), torch.empty_like(spikes)
    steps = spikes.shape[0]
    n = spikes[0].numel() if steps else 0
    if steps and n:
        getattr(_library(), f"ed_backward_{_SUFFIX[spikes.dtype]}")(
            steps, n, kernel_threads(), grad_time.data_ptr(), spikes.data_ptr(),
            rise.data_ptr(), slope.data_ptr(), kernel.data_ptr(), slope_kernel.data_ptr(),
            for_input.data_ptr(), for_weight.data_ptr(), max_dt_du, max_dt_du_input,
        )  # fmt: skip
    return for_input, for_weight
