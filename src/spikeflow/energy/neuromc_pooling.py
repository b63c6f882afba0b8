"""Pooling on NeuroMC: spikeflow's convention (the released model has no cost for it).

Neither Li et al.'s released NeuroMC model nor SpikingJelly 2.0's estimate of it prices
pooling (SpikingJelly raises on the pooling's aten operation). spikeflow prices it at
the register level of the engine that holds the layer's outputs, with the model's own
per-operation costs, and no SRAM traffic (the pooled values are read from and written
to the registers between the layer that produced them and the next one). Per output
whose window holds ``w`` real inputs (padding excluded):

* max pooling: ``w − 1`` comparisons; avg pooling (and :class:`VotingLayer`): ``w − 1``
  additions and one multiplication (by the divisor);
* the forward reads the ``w`` inputs (1 bit each for spikes, else 16) and writes the
  output (1 bit for the max of spikes, else 16);
* the backward (when the input needs a gradient) reads each output's 16-bit gradient
  and writes every input's gradient (16 bits): max pooling routes it with one mux per
  output, avg pooling scales it with one multiplication per output.

:class:`~spikeflow.event_driven.AdjustedAvgPool2d` (``k x k`` windows, stride ``k``) is
an average pool forward; its backward divides each output's gradient by the window's
spike count instead of ``k²``: per output one comparison (a window without spikes
passes nothing), one mux (the count's reciprocal from a ``k²``-entry table) and one
multiplication, reading the gradient and the saved mean (16 bits each). A constant
scale (OTTT's ``Scale``, NIR's ``Scale``: ``x · s``) is a window of one: one
multiplication per element forward (reading 1-bit spikes or 16-bit values, writing
16-bit values: the scaled spikes are not spikes for the next layer) and, when its
input needs a gradient, backward (the gradient scaled alike, 16 bits in and out).

A pooling function a module calls in its own ``forward`` (``F.max_pool2d``: the
Spike-driven Transformer's DVS "erode", ``F.avg_pool1d``, ``F.adaptive_avg_pool2d``,
...) is priced as the pooling module with the same arguments
(:func:`functional_pool`), under the calling module's name.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from spikeflow.errors import ConfigurationError
from spikeflow.event_driven.pooling import AdjustedAvgPool2d
from spikeflow.interop.nir_modules import Scale as NIRScale
from spikeflow.layers.misc import VotingLayer
from spikeflow.models.ottt_vgg import Scale as OTTTScale

__all__ = [
    "POOLS",
    "POOL_FUNCTIONS",
    "SCALES",
    "functional_pool",
    "is_max_pool",
    "pool_dims",
    "pool_kind",
    "pool_windows",
]

_MAX = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)
_AVG = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
_ADAPTIVE_MAX = (nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
_ADAPTIVE_AVG = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)


#: The constant scales, priced as windows of one input.
SCALES: tuple[type[nn.Module], ...] = (OTTTScale, NIRScale)
#: The pooling modules (and scales) NeuroMC prices by spikeflow's convention.
POOLS: tuple[type[nn.Module], ...] = (
    *_MAX, *_AVG, *_ADAPTIVE_MAX, *_ADAPTIVE_AVG, VotingLayer, AdjustedAvgPool2d, *SCALES,
)  # fmt: skip


def pool_kind(module: nn.Module) -> str:
    """``"maxpool"``, ``"avgpool"``, ``"adjavgpool"`` (adjusted average) or ``"scale"``."""
    if isinstance(module, SCALES):
        return "scale"
    if isinstance(module, AdjustedAvgPool2d):
        return "adjavgpool"
    return "maxpool" if is_max_pool(module) else "avgpool"


def is_max_pool(module: nn.Module) -> bool:
    """Whether ``module`` takes a maximum (else it averages)."""
    return isinstance(module, (*_MAX, *_ADAPTIVE_MAX))


def pool_dims(module: nn.Module) -> int:
    """How many trailing dims the pooling ``module`` pools (1, 2 or 3; 0 for a scale)."""
    if isinstance(module, SCALES):
        return 0
    if isinstance(module, VotingLayer):
        return 1
    if isinstance(module, AdjustedAvgPool2d):
        return 2
    for dims, kinds in enumerate(zip(_MAX, _AVG, _ADAPTIVE_MAX, _ADAPTIVE_AVG, strict=True), 1):
        if isinstance(module, kinds):
            return dims
    raise ConfigurationError(f"NeuroMC: {type(module).__name__} is not a pooling layer")


def _per_dim(value: object, dims: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (int(value),) * dims  # type: ignore[arg-type]


def _window_sizes(module: nn.Module, dim: int, size_in: int, size_out: int) -> list[int]:
    """The real inputs (padding excluded) of each output's window along one dim."""
    if isinstance(module, (*_ADAPTIVE_MAX, *_ADAPTIVE_AVG)):
        return [
            math.ceil((i + 1) * size_in / size_out) - (i * size_in) // size_out
            for i in range(size_out)
        ]
    if isinstance(module, (VotingLayer, AdjustedAvgPool2d)):
        size = module.voting_size if isinstance(module, VotingLayer) else module.kernel_size
        kernel, stride, padding, dilation = size, size, 0, 1
    else:
        dims = pool_dims(module)
        kernel = _per_dim(module.kernel_size, dims)[dim]
        stride = _per_dim(module.stride or module.kernel_size, dims)[dim]
        padding = _per_dim(module.padding, dims)[dim]
        dilation = _per_dim(getattr(module, "dilation", 1), dims)[dim]
    sizes = []
    for i in range(size_out):
        taps = (i * stride - padding + j * dilation for j in range(kernel))
        sizes.append(sum(1 for t in taps if 0 <= t < size_in))
    return sizes


def pool_windows(module: nn.Module, x: Tensor, out: Tensor) -> int:
    """The sum over ``out``'s entries of their windows' real inputs (``Σ w``), for one
    call of the pooling ``module`` on ``x`` (any leading dims; a scale's windows hold one
    input each)."""
    dims = pool_dims(module)
    if dims == 0:
        return out.numel()
    if x.dim() < dims or out.dim() < dims:
        raise ConfigurationError(
            f"NeuroMC: {type(module).__name__} ran on {tuple(x.shape)}, fewer than its "
            f"{dims} pooled dims"
        )
    total = 1
    for d in range(dims):
        size_in, size_out = int(x.shape[x.dim() - dims + d]), int(out.shape[out.dim() - dims + d])
        total *= sum(_window_sizes(module, d, size_in, size_out))
    per_window_set = math.prod(int(s) for s in out.shape[out.dim() - dims :])
    return out.numel() // per_window_set * total if per_window_set else 0


_MAX_ARGS = ("kernel_size", "stride", "padding", "dilation", "ceil_mode")
_AVG_ARGS = ("kernel_size", "stride", "padding", "ceil_mode")
#: Pooling functions, the module each computes as, and the module's arguments in the
#: function's positional order (after the input).
POOL_FUNCTIONS: dict[Any, tuple[type[nn.Module], tuple[str, ...]]] = {
    F.max_pool1d: (nn.MaxPool1d, _MAX_ARGS), F.max_pool2d: (nn.MaxPool2d, _MAX_ARGS),
    F.max_pool3d: (nn.MaxPool3d, _MAX_ARGS), torch.max_pool1d: (nn.MaxPool1d, _MAX_ARGS),
    torch.max_pool2d: (nn.MaxPool2d, _MAX_ARGS), torch.max_pool3d: (nn.MaxPool3d, _MAX_ARGS),
    F.max_pool1d_with_indices: (nn.MaxPool1d, _MAX_ARGS),
    F.max_pool2d_with_indices: (nn.MaxPool2d, _MAX_ARGS),
    F.max_pool3d_with_indices: (nn.MaxPool3d, _MAX_ARGS),
    F.avg_pool1d: (nn.AvgPool1d, _AVG_ARGS), F.avg_pool2d: (nn.AvgPool2d, _AVG_ARGS),
    F.avg_pool3d: (nn.AvgPool3d, _AVG_ARGS),
    F.adaptive_max_pool1d: (nn.AdaptiveMaxPool1d, ("output_size",)),
    F.adaptive_max_pool2d: (nn.AdaptiveMaxPool2d, ("output_size",)),
    F.adaptive_max_pool3d: (nn.AdaptiveMaxPool3d, ("output_size",)),
    F.adaptive_avg_pool1d: (nn.AdaptiveAvgPool1d, ("output_size",)),
    F.adaptive_avg_pool2d: (nn.AdaptiveAvgPool2d, ("output_size",)),
    F.adaptive_avg_pool3d: (nn.AdaptiveAvgPool3d, ("output_size",)),
}  # fmt: skip


def functional_pool(func: Any, args: tuple, kwargs: dict) -> tuple[nn.Module, Tensor]:
    """``(module, input)``: the pooling module a call ``func(*args, **kwargs)`` of one
    of :data:`POOL_FUNCTIONS` computes as (the same windows), and the call's input."""
    kind, names = POOL_FUNCTIONS[func]
    x = args[0] if args else kwargs["input"]
    given = dict(zip(names, args[1:], strict=False))
    given.update((k, v) for k, v in kwargs.items() if k in names)
    for name, value in given.items():  # [k] for every dim, as torch reads it
        if isinstance(value, (list, tuple)) and len(value) == 1:
            given[name] = value[0]
    if given.get("stride") in ((), []):  # torch.max_pool2d's default: the kernel's
        given["stride"] = None
    return kind(**given), x
