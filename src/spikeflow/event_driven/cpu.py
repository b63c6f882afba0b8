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
    current: Tensor, spikes: Tensor, rise: Tensor, slope: Tensor,
    decays: tuple[float, float, float], scale: float, threshold: float, exponential: bool,
) -> None:  # fmt: skip
    """Fill ``spikes``, ``rise`` and ``slope`` (see :func:`spike_forward`; contiguous
    ``[T, ...]``, not empty) from ``current``."""
    steps = current.shape[0]
    getattr(_library(), f"ed_forward_{_SUFFIX[current.dtype]}")(
        steps, current.numel() // steps, kernel_threads(current.numel()), current.data_ptr(),
        spikes.data_ptr(), rise.data_ptr(), slope.data_ptr() if exponential else None,
        *decays, scale, threshold, int(exponential),
    )  # fmt: skip


def c_backward(
    grad_time: Tensor, spikes: Tensor, rise: Tensor, slope: Tensor, kernel: Tensor,
    slope_kernel: Tensor, for_input: Tensor, for_weight: Tensor, max_dt_du: float,
    max_dt_du_input: float,
) -> None:  # fmt: skip
    """Fill ``for_input`` and ``for_weight`` (see :func:`spike_backward`)."""
    steps = spikes.shape[0]
    getattr(_library(), f"ed_backward_{_SUFFIX[spikes.dtype]}")(
        steps, spikes.numel() // steps, kernel_threads(spikes.numel()), grad_time.data_ptr(),
        spikes.data_ptr(), rise.data_ptr(), slope.data_ptr(), kernel.data_ptr(),
        slope_kernel.data_ptr(), for_input.data_ptr(), for_weight.data_ptr(), max_dt_du,
        max_dt_du_input,
    )  # fmt: skip
