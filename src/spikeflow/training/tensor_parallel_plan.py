"""Which layers of a model :func:`~spikeflow.training.tensor_parallel.parallelize_channels`
splits: the column/row *pairs* (:func:`channel_plan`), found by looking at the model
alone (no process group, nothing changed). A pair is a ``Conv1d``/``Conv2d``/``Linear``
computing its plain op (the column layer), the channel-wise modules after it (batch
norm, spiking neurons, activations, spikeflow's dropout, ``Flatten(1, -1)``, pooling
over the column layer's spatial dims) and the next such layer (the row layer), with
channels that split evenly over the processes; why each module may run on a slice of
the channels is in :mod:`~spikeflow.training.tensor_parallel`'s docstring.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from spikeflow.layers import Flatten
from spikeflow.layers.dropout import _SequenceDropout
from spikeflow.neurons.base import BaseNode

__all__ = ["ChannelPair", "channel_plan"]

#: Modules that act on each element alone and hold nothing per channel.
_ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Identity)

#: Pooling layers by the number of spatial dims they pool over: channel-wise only on a
#: layout with that many spatial dims after the channels (a MaxPool2d on a Conv1d's
#: ``[B, C, L]``, or an AvgPool1d on a Linear's ``[B, F]``, pools across channels).
_POOLS = {
    1: (nn.MaxPool1d, nn.AvgPool1d, nn.AdaptiveAvgPool1d, nn.AdaptiveMaxPool1d),
    2: (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d),
    3: (nn.MaxPool3d, nn.AvgPool3d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool3d),
}
_ANY_POOL = tuple(pool for pools in _POOLS.values() for pool in pools)


@dataclass(frozen=True)
class ChannelPair:
    """One column/row pair, by module names in the model: ``column`` (output channels
    split), ``between`` (the channel-wise modules that run on the split channels, in
    order) and ``row`` (input channels split)."""

    column: str
    between: tuple[str, ...]
    row: str


def _own_computation(module: nn.Module) -> str | None:
    """Why a ``Conv1d``/``Conv2d``/``Linear`` (a subclass) computes more than its plain
    op, which the split layers would compute instead, else None: a class with a
    ``forward`` of its own (``WSConv2d``'s standardised weight, an event-driven layer's
    neuron), or a parametrized weight (``weight_norm``'s). spikeflow's sequence wrappers
    only fold time around the op."""
    from torch.nn.utils import parametrize

    from spikeflow.layers.sequence import SequenceLayerMixin

    if parametrize.is_parametrized(module):
        return "its weight is parametrized"
    for klass in type(module).__mro__:
        if klass in (nn.Linear, nn.Conv1d, nn.Conv2d):
            return None
        own = [vars(klass).get(n) for n in ("forward", "_conv_forward")]
        if any(f is not None and f is not SequenceLayerMixin.forward for f in own):
            return f"{klass.__name__} has a forward of its own"
    return None


def _weighted(module: nn.Module) -> str | None:
    """``"conv"``/``"linear"`` for a layer that can be split, else None."""
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear)) and _own_computation(module):
        return None
    if isinstance(module, (nn.Conv1d, nn.Conv2d)) and not isinstance(
        module, nn.modules.conv._ConvTransposeNd
    ):
        return "conv" if module.groups == 1 and module.padding_mode == "zeros" else None
    return "linear" if isinstance(module, nn.Linear) else None


def _flattens_channels(module: nn.Module) -> bool:
    return isinstance(module, Flatten) and module.start_dim == 1 and module.end_dim == -1


def _spatial_dims(column: nn.Module) -> int:
    """How many spatial dims follow the channels in ``column``'s output (Linear: 0)."""
    return column.weight.dim() - 2 if _weighted(column) == "conv" else 0


def _nested_per_channel(module: nn.Module) -> tuple[str, tuple[int, ...]] | None:
    """A neuron's parameter or buffer held by a submodule (``DHLIFNode``'s
    ``dendrites.tau_n``, ``[N, K]``) with more than one element: its name and shape,
    else None. Such a neuron reads more than the channels (DH-LIF: K branch currents per
    neuron, after them), so a slice of the channels is not a slice of its input; a
    learnable surrogate's scalar is shared by every channel and fine."""
    for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
        if "." in name and tensor.numel() > 1:
            return name, tuple(tensor.shape)
    return None


def _channel_wise(module: nn.Module, spatial: int) -> bool:
    """Whether ``module`` may run on a slice of the channels (see the module doc) of a
    layout with ``spatial`` dims after the channels."""
    if isinstance(module, BaseNode) and _nested_per_channel(module) is not None:
        return False
    if isinstance(module, nn.Dropout):
        return module.p == 0.0
    if isinstance(module, _ANY_POOL):
        return isinstance(module, _POOLS.get(spatial, ()))
    return isinstance(
        module, (*_ELEMENTWISE, nn.modules.batchnorm._BatchNorm, BaseNode, _SequenceDropout)
    ) or _flattens_channels(module)


def _channel_wise_run(column: nn.Module, between: list[nn.Module]) -> int:
    """How many of ``between`` (in order after ``column``) run on a slice of its
    channels: a ``Flatten`` leaves no spatial dims for the pooling after it."""
    spatial = _spatial_dims(column)
    for count, module in enumerate(between):
        if not _channel_wise(module, spatial):
            return count
        if _flattens_channels(module):
            spatial = 0
    return len(between)


def _width(layer: nn.Module, side: str) -> int:
    return int(layer.weight.shape[0 if side == "out" else 1])


def _pairs_up(column: nn.Module, between: list[nn.Module], row: nn.Module, world: int) -> bool:
    """Whether ``row`` can take ``column``'s split output through ``between``."""
    if _weighted(row) is None:
        return False
    out, into = _width(column, "out"), _width(row, "in")
    if out % world:
        return False
    if any(_flattens_channels(m) for m in between):
        return _weighted(row) == "linear" and _weighted(column) == "conv" and into % out == 0
    # (a Linear row after a conv column without Flatten would read the spatial dim)
    return into == out and _weighted(column) == _weighted(row)


def _chain_pairs(
    prefix: str, children: list[tuple[str, nn.Module]], world: int
) -> list[ChannelPair]:
    """The pairs in one run of modules that execute in order (a ``Sequential``'s
    children): each splittable layer, the channel-wise modules after it and the next
    weighted layer when they fit together; a used row layer starts no pair."""
    pairs, i = [], 0
    while i < len(children):
        _, column = children[i]
        if _weighted(column) is None:
            i += 1
            continue
        j = i + 1 + _channel_wise_run(column, [m for _, m in children[i + 1 :]])
        between = [m for _, m in children[i + 1 : j]]
        if j < len(children) and _pairs_up(column, between, children[j][1], world):
            names = [f"{prefix}{n}" for n, _ in children[i : j + 1]]
            pairs.append(ChannelPair(names[0], tuple(names[1:-1]), names[-1]))
            i = j + 1
        else:
            i = max(j, i + 1)
    return pairs


def _runs_in_order(module: nn.Module) -> bool:
    """A ``Sequential`` whose forward runs its children one after the other (torch's,
    or spikeflow's time-folding containers), not a subclass with its own forward."""
    from spikeflow.layers.containers import MultiStepContainer, SeqToANNContainer

    if isinstance(module, (SeqToANNContainer, MultiStepContainer)):
        return True
    return isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward


def channel_plan(model: nn.Module, world_size: int) -> list[ChannelPair]:
    """The column/row pairs :func:`parallelize_channels` finds in ``model`` for
    ``world_size`` processes: within each ``nn.Sequential`` (children run in order), and
    in the residual branches of the spiking/SEW ResNets (``conv1``-``bn1``-``sn1``-
    ``conv2``). Layers whose channels do not split evenly are left whole."""
    from spikeflow.models.resnet import ResidualBranch

    pairs: list[ChannelPair] = []
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        if _runs_in_order(module):
            # every child in run order: named_children() drops a module's second use
            children = [(n, m) for n, m in module._modules.items() if m is not None]
            pairs += _chain_pairs(prefix, children, world_size)
        elif isinstance(module, ResidualBranch) and hasattr(module, "sn1"):
            chain = [(n, getattr(module, n)) for n in ("conv1", "bn1", "sn1", "conv2")]
            pairs += _chain_pairs(prefix, chain, world_size)
    return pairs
