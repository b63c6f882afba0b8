"""Differential coding (Huang, Fang et al., ICML 2025; methods.md 7.4).

Rate coding sends a value ``u_t`` at every step and the receiver averages. Differential
coding sends ``e_t = u_t - ū_{t-1}``, the difference from the running mean of what was
sent before (``ū_0 = 0``), so the receiver rebuilds ``u_t = ū_{t-1} + e_t`` and, once the
mean has converged, nothing needs to be sent: ``e_t = t·(ū_t - ū_{t-1})`` is the change
of the rate estimate. A constant image is sent once (``e_1 = x``, then zeros).

Linear layers pass differences unchanged, except for their bias, which would be added
at every step. So a differential network runs ``T + 1`` steps: step 0 sends zeros, and
what reaches each neuron there is the bias ``b`` of the layers before it. A
:class:`DifferentialNeuron` subtracts it from every later step, starts its input
estimate at ``b``, and keeps (in the rebuilt, "decoded" domain) an IF neuron with soft
reset: with ``I_t`` the rebuilt input and ``O_t = ō_{t-1} + s_t`` the rebuilt output
(``ō`` the running mean of the outputs, ``s_t`` the spike it sends),
``v_t = v_0 + Σ I - Σ O``. It fires ``s_t = +θ`` when ``v >= θ`` and ``-θ`` when ``v <= 0``
while its rebuilt output so far is at least θ (so it never goes below 0); with ``k``
thresholds it fires ``±θ/2^j`` as the multi-threshold neuron does
(:mod:`spikeflow.conversion.multi_threshold`). ``v_0`` is θ/2 for one threshold and 0
for several, as in the authors' code (h-z-h-cell/ANN-to-SNN-DCGS: ``IF_diff``,
``MTH_diff``, ``decodeoutput``); the tests check the neuron against a loop written from
this rule and the coding against linear networks, which it must pass exactly.

Max pooling (non-overlapping windows) has its own form, :class:`DifferentialMaxPool`
(the authors' ``maxpool_neuron``): in the rebuilt domain it accumulates its inputs,
outputs each window's maximum of the accumulation and takes that maximum from every
entry of the window; a constant input thus gives the window's maximum at every step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikeflow.conversion._checks import (
    check_bias_step,
    check_positive_int,
    current_sequence,
    store_threshold,
    threshold_repr,
)
from spikeflow.conversion.multi_threshold import largest_level, threshold_levels
from spikeflow.conversion.pooling import MAX_POOLS, pool_dims
from spikeflow.errors import ConfigurationError

__all__ = [
    "DifferentialMaxPool",
    "DifferentialNeuron",
    "differential_decode",
    "differential_encode",
]


def differential_encode(u: Tensor) -> Tensor:
    """``[T, B, ...]`` rate-coded values -> ``[T + 1, B, ...]`` differential signal with
    the zero bias step first (``e_t = u_t - ū_{t-1}``)."""
    out = [torch.zeros_like(u[0])]
    mean = torch.zeros_like(u[0])
    for t, u_t in enumerate(u.unbind(0), start=1):
        out.append(u_t - mean)
        mean = mean + (u_t - mean) / t
    return torch.stack(out)


def differential_decode(y: Tensor) -> Tensor:
    """``[T + 1, B, ...]`` outputs of a differential network (step 0: its bias) -> the
    rebuilt values ``[T, B, ...]`` (``O_t = ō_{t-1} + (y_t - y_0)``, ``ō_0 = y_0``)."""
    check_bias_step(y.shape[0], "differential_decode")
    bias, mean = y[0], y[0]
    out = []
    for t, y_t in enumerate(y[1:].unbind(0), start=1):
        change = y_t - bias
        out.append(mean + change)
        mean = mean + change / t
    return torch.stack(out)


class DifferentialNeuron(nn.Module):
    """A converted ReLU for differential coding (see the module docstring; inference only,
    multi-step input ``[T + 1, B, ...]`` whose step 0 is the bias step; no streaming).

    Args:
        v_threshold: θ (float, or a tensor broadcastable to one step, e.g. ``[C, 1, 1]``).
        thresholds: None for one threshold (``IF_diff``), or k levels ``θ/2^j``
            (``MTH_diff``).
    """

    #: whole sequences only: ``spikeflow.functional.streaming`` refuses it by name.
    streamable = False

    def __init__(self, v_threshold: float | Tensor = 1.0, thresholds: int | None = None) -> None:
        super().__init__()
        store_threshold(self, v_threshold, "DifferentialNeuron")
        self.thresholds = check_positive_int(thresholds, "thresholds (k)", allow_none=True)

    def _spike(self, v: Tensor, total: Tensor, theta: Tensor, levels: Tensor | None) -> Tensor:
        if levels is None:
            up = (v >= theta).to(v.dtype)
            down = ((v <= 0) & (total >= theta)).to(v.dtype)
            return (up - down) * theta
        allowed = total.unsqueeze(0) >= levels
        return largest_level(v, levels) - largest_level(-v, levels, allowed)

    def forward(self, x: Tensor) -> Tensor:
        """The signed spikes ``[T + 1, B, ...]`` (zeros at the bias step)."""
        current_sequence(x, "DifferentialNeuron", None)
        check_bias_step(x.shape[0], "DifferentialNeuron")
        theta = torch.as_tensor(self.v_threshold, dtype=x.dtype, device=x.device)
        levels = None if self.thresholds is None else threshold_levels(
            theta, self.thresholds, x[0]
        )  # fmt: skip
        bias = x[0]
        estimate_in, estimate_out = bias, torch.zeros_like(bias)
        total = torch.zeros_like(bias)
        v = torch.zeros_like(bias) + (0.5 * theta if levels is None else 0.0)
        out = [torch.zeros_like(bias)]
        for t, x_t in enumerate(x[1:].unbind(0), start=1):
            change = x_t - bias
            v = v + change + estimate_in - estimate_out
            total = total + estimate_out
            spike = self._spike(v, total, theta, levels)
            v = v - spike
            total = total + spike
            estimate_in = estimate_in + change / t
            estimate_out = estimate_out + spike / t
            out.append(spike)
        return torch.stack(out)

    def extra_repr(self) -> str:
        return f"v_threshold={threshold_repr(self.v_threshold)}, thresholds={self.thresholds}"


class DifferentialMaxPool(nn.Module):
    """Max pooling for differential coding (see the module docstring; multi-step
    ``[T + 1, B, C, *spatial]`` with the bias step first; inference only).

    Args:
        kernel_size: the window, equal to the stride (non-overlapping windows, no
            padding, no dilation, floor mode: what the authors' version supports).
        spatial_dims: 1, 2 or 3.
    """

    #: whole sequences only: ``spikeflow.functional.streaming`` refuses it by name.
    streamable = False

    def __init__(self, kernel_size: int | tuple[int, ...], spatial_dims: int = 2) -> None:
        super().__init__()
        if spatial_dims not in (1, 2, 3):
            raise ConfigurationError(f"spatial_dims must be 1, 2 or 3, got {spatial_dims}")
        sizes = (kernel_size,) * spatial_dims if isinstance(kernel_size, int) else kernel_size
        self.kernel_size = tuple(check_positive_int(k, "kernel_size") for k in sizes)
        if len(self.kernel_size) != spatial_dims:
            raise ConfigurationError(
                f"kernel_size {kernel_size} does not have {spatial_dims} entries"
            )
        self.spatial_dims = spatial_dims

    @classmethod
    def from_max_pool(cls, pool: nn.Module) -> DifferentialMaxPool:
        """The differential form of a ``torch.nn.MaxPool{1,2,3}d``; ConfigurationError
        unless its windows do not overlap (stride = kernel, no padding or dilation)."""
        dims = pool_dims(pool)

        def each(value: object) -> tuple[int, ...]:
            return tuple(value) if isinstance(value, (tuple, list)) else (value,) * dims

        kernel = each(pool.kernel_size)
        stride = kernel if pool.stride in (None, []) else each(pool.stride)
        if (stride != kernel or any(each(pool.padding)) or set(each(pool.dilation)) != {1}
                or pool.ceil_mode):  # fmt: skip
            raise ConfigurationError(
                f"{type(pool).__name__}(kernel_size={pool.kernel_size}, stride={pool.stride}, "
                f"padding={pool.padding}, dilation={pool.dilation}, "
                f"ceil_mode={pool.ceil_mode}): differential max pooling needs "
                "non-overlapping windows (stride = kernel_size, no padding, no dilation, "
                "floor mode)"
            )
        return cls(kernel, dims)

    def _spread(self, pooled: Tensor, like: Tensor) -> Tensor:
        """Each window's value over its entries; entries no window covers get 0."""
        out = pooled
        for axis, k in enumerate(self.kernel_size, start=pooled.dim() - self.spatial_dims):
            out = out.repeat_interleave(k, dim=axis)
        padding: list[int] = []
        for axis in range(like.dim() - 1, like.dim() - 1 - self.spatial_dims, -1):
            padding += [0, like.shape[axis] - out.shape[axis]]
        return F.pad(out, padding)

    def forward(self, x: Tensor) -> Tensor:
        """The pooled differential signal ``[T + 1, B, C, *spatial']``."""
        current_sequence(x, "DifferentialMaxPool", None, self.spatial_dims + 3)
        check_bias_step(x.shape[0], "DifferentialMaxPool")
        bias = x[0]
        estimate_in = bias
        v = torch.zeros_like(bias)
        estimate_out = torch.zeros_like(MAX_POOLS[self.spatial_dims](bias, self.kernel_size))
        out = [torch.zeros_like(estimate_out)]
        for t, x_t in enumerate(x[1:].unbind(0), start=1):
            change = x_t - bias
            v = v + change + estimate_in
            estimate_in = estimate_in + change / t
            pooled = MAX_POOLS[self.spatial_dims](v, self.kernel_size)
            v = v - self._spread(pooled, v)
            spike = pooled - estimate_out
            estimate_out = estimate_out + spike / t
            out.append(spike)
        return torch.stack(out)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, spatial_dims={self.spatial_dims}"
