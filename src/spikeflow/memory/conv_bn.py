"""Adjacent sequence Conv and BatchNorm run as one (SpikingJelly 2.0's
``functional.conv_bn_fusion.pack_conv_bn_train_modules``, done spikeflow's way).

In a multi-step network each sequence layer folds ``[T, B, ...]`` into ``[T*B, ...]``,
runs, and unfolds (:class:`~spikeflow.layers.SequenceLayerMixin`), checking the input's
dims and dtype on the way. For a ``Conv -> BatchNorm`` pair the fold between the two is
wasted: :func:`pack_conv_bn` makes each plain ``nn.Sequential`` that holds such pairs run
them with one fold, one dims check, and the torch layers' own forwards on the folded
batch. Unlike folding batch norm into the weights (:func:`spikeflow.conversion.
fold_batchnorm`, eval mode only), this is for training: batch statistics, running
statistics and gradients are those of the unpacked network, bit for bit.

Nothing is replaced: the container's class changes (as :func:`recompute_blocks` does) and
its children, their names and the ``state_dict`` stay as they were, so checkpoints load
either way and :func:`unpack_conv_bn` gives the plain container back. A pair runs packed
only while neither layer has forward hooks (a monitor, a pruning mask as a pre-hook);
otherwise it runs as two modules, as before. Packed: ``spikeflow.layers.Conv1d/2d/3d``
followed by ``spikeflow.layers.BatchNorm1d/2d/3d`` of the same dimension (exactly those
classes: tdBN and other subclasses have forwards of their own), over as many channels,
in the same step mode. torch's own ``nn.Conv2d -> nn.BatchNorm2d`` pairs (as in a
:class:`~spikeflow.layers.SeqToANNContainer`) already run on one folded batch and are
left alone.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from spikeflow.errors import ConfigurationError
from spikeflow.layers import sequence, sequence_norm
from spikeflow.layers._time import check_step_dims, fold_time

__all__ = ["has_packed_conv_bn", "pack_conv_bn", "packable_conv_bn", "unpack_conv_bn"]

#: (spikeflow conv, spikeflow batch norm, the conv's torch forward) per dimension.
_PAIRS = {
    sequence.Conv1d: (sequence_norm.BatchNorm1d, nn.Conv1d.forward),
    sequence.Conv2d: (sequence_norm.BatchNorm2d, nn.Conv2d.forward),
    sequence.Conv3d: (sequence_norm.BatchNorm3d, nn.Conv3d.forward),
}


def packable_conv_bn(conv: nn.Module, bn: nn.Module) -> bool:
    """Whether ``conv -> bn`` is a pair :func:`pack_conv_bn` runs as one (module
    docstring): spikeflow's sequence ConvNd then BatchNormNd (exact classes), the batch
    norm over the conv's output channels, both in the same step mode."""
    pair = _PAIRS.get(type(conv))  # type: ignore[call-overload]
    return (
        pair is not None
        and type(bn) is pair[0]
        and bn.num_features == conv.out_channels  # type: ignore[attr-defined]
        and bn.step_mode == conv.step_mode  # type: ignore[attr-defined]
    )


def _has_hooks(module: nn.Module) -> bool:
    return bool(module._forward_hooks or module._forward_pre_hooks)


def _global_hooks() -> bool:
    from torch.nn.modules import module as torch_module

    return bool(torch_module._global_forward_hooks or torch_module._global_forward_pre_hooks)


def _run_pair(conv: nn.Module, bn: nn.Module, x: Tensor) -> Tensor:
    """``bn(conv(x))`` with one fold of time into the batch (multi-step) and the torch
    layers' forwards; through the modules where hooks must see their calls."""
    if _has_hooks(conv) or _has_hooks(bn) or _global_hooks():
        return bn(conv(x))
    layout, dims = conv._step_dims()  # type: ignore[operator]
    check_step_dims(x, type(conv).__name__, layout, dims, conv.step_mode)  # type: ignore[arg-type]
    conv_forward = _PAIRS[type(conv)][1]  # type: ignore[index]

    def both(y: Tensor) -> Tensor:
        return _BatchNorm.forward(bn, conv_forward(conv, y))  # type: ignore[arg-type]

    try:
        return both(x) if conv.step_mode == "s" else fold_time(both, x)
    except RuntimeError as error:
        if isinstance(error, torch.OutOfMemoryError) or not _dtypes_differ(conv, bn, x):
            raise  # out of memory, a device or channel mismatch: as the modules raise it
        return bn(conv(x))  # a dtype mismatch: the modules' own calls name the dtypes


def _dtypes_differ(conv: nn.Module, bn: nn.Module, x: Tensor) -> bool:
    """Whether ``x`` and the pair's floating-point parameters and buffers are not all of
    one dtype (what torch refuses and the modules' own calls explain by name)."""
    tensors = itertools.chain(conv.parameters(), bn.parameters(), bn.buffers())
    return any(t.is_floating_point() and t.dtype != x.dtype for t in tensors)


class _PackedSequential(nn.Sequential):
    """An ``nn.Sequential`` that runs its packable Conv/BatchNorm pairs as one (its class
    after :func:`pack_conv_bn`; children, names and ``state_dict`` unchanged). Pairs are
    found at each call, so a child replaced or appended later is taken as it is."""

    def forward(self, x: Any) -> Any:  # type: ignore[override]
        children = list(self._modules.values())
        i = 0
        while i < len(children):
            module = children[i]
            if (
                i + 1 < len(children)
                and isinstance(x, Tensor)
                and packable_conv_bn(module, children[i + 1])
            ):
                x = _run_pair(module, children[i + 1], x)
                i += 2
            else:
                x = module(x)
                i += 1
        return x


def _plain_sequentials(model: nn.Module) -> list[tuple[str, nn.Sequential]]:
    return [(name, m) for name, m in model.named_modules() if type(m) is nn.Sequential]


def pack_conv_bn(model: nn.Module) -> list[str]:
    """Run every adjacent Conv/BatchNorm pair of ``model``'s plain ``nn.Sequential``
    containers as one (module docstring), in place; ``model`` itself may be such a
    container. Returns the pairs packed, as ``"conv_name+bn_name"``.

    Raises:
        ConfigurationError: ``model`` is not an ``nn.Module``.
    """
    if not isinstance(model, nn.Module):
        raise ConfigurationError(f"pack_conv_bn expects an nn.Module, got {type(model).__name__}")
    packed = []
    for name, container in _plain_sequentials(model):
        children = list(container._modules.items())  # (a repeated module too, as run)
        pairs = [
            (a, b)
            for (a, conv), (b, bn) in itertools.pairwise(children)
            if packable_conv_bn(conv, bn)
        ]
        if pairs:
            container.__class__ = _PackedSequential
            prefix = f"{name}." if name else ""
            packed += [f"{prefix}{a}+{prefix}{b}" for a, b in pairs]
    return packed


def has_packed_conv_bn(model: nn.Module) -> bool:
    """Whether :func:`pack_conv_bn` packed any container of ``model``."""
    return any(type(m) is _PackedSequential for m in model.modules())


def unpack_conv_bn(model: nn.Module) -> int:
    """Undo :func:`pack_conv_bn` in place; returns how many containers were packed."""
    count = 0
    for module in model.modules():
        if type(module) is _PackedSequential:
            module.__class__ = nn.Sequential
            count += 1
    return count
