"""Fold Real Spike amplitudes into the weights that read them (Guo et al., ECCV 2022).

A :class:`~spikeflow.layers.RealSpike` multiplies binary spikes by an amplitude per
channel (or one per layer) in training. The layer reading them is linear in its input,
so ``W * (a ⊙ s) = (W · a) * s``: :func:`fold_real_spikes` multiplies each input
channel's weights of that layer by its amplitude and removes the ``RealSpike``, giving
a network that runs on binary spikes with the same output. Between the two, layers that
commute with a per-channel scale are allowed: flatten, dropout (identity at
inference), average pooling and (for amplitudes ``>= 0``) max pooling.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from spikeflow.errors import ConfigurationError
from spikeflow.layers.real_spike import RealSpike

__all__ = ["fold_real_spikes"]

#: Layers a per-channel scale passes through unchanged (``max`` pooling: a >= 0 only).
_AVERAGING = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d,
              nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)  # fmt: skip
_MAX_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d,
              nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)  # fmt: skip
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _passes_through(module: nn.Module) -> bool:
    from spikeflow.layers.dropout import _SequenceDropout

    dropout = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, _SequenceDropout)
    return isinstance(module, (nn.Identity, nn.Flatten, *dropout, *_AVERAGING, *_MAX_POOLS))


def _input_scale(name: str, amplitude: Tensor, consumer: nn.Module, flattened: bool) -> Tensor:
    """The factor of each input feature (a Linear) or input channel (a conv)."""
    if amplitude.dim() == 0:
        return amplitude
    channels = amplitude.numel()
    if isinstance(consumer, nn.Linear):
        features = consumer.in_features
        if flattened and features % channels == 0:
            return amplitude.repeat_interleave(features // channels)  # channel-major
        if not flattened and features == channels:
            return amplitude
        raise ConfigurationError(
            f"fold_real_spikes: the RealSpike at {name!r} has {channels} channels, which "
            f"do not divide the {features} input features of the Linear it feeds"
        )
    if consumer.in_channels != channels or flattened:
        raise ConfigurationError(
            f"fold_real_spikes: the RealSpike at {name!r} has {channels} channels, the "
            f"{type(consumer).__name__} it feeds has in_channels={consumer.in_channels}"
            + (" after a flatten" if flattened else "")
        )
    return amplitude


def _fold_into(name: str, spike: RealSpike, consumer: nn.Module, flattened: bool) -> None:
    from spikeflow.layers.weight_standardization import _Standardized

    if isinstance(consumer, _Standardized):  # its weight is re-standardised each call
        raise ConfigurationError(
            f"fold_real_spikes: the RealSpike at {name!r} feeds a weight-standardised "
            f"{type(consumer).__name__}, whose weights are normalised at every call: a "
            "scale folded into them would be normalised away"
        )
    amplitude = spike.amplitude.detach().to(consumer.weight.dtype)
    scale = _input_scale(name, amplitude, consumer, flattened)
    weight = consumer.weight
    with torch.no_grad():
        if scale.dim() == 0:
            weight.mul_(scale)
        elif isinstance(consumer, nn.Linear):
            weight.mul_(scale.reshape(1, -1))
        else:  # [C_out, C_in / groups, k...]: output channel o reads group o // (C_out/g)
            groups = consumer.groups
            per_group = scale.reshape(groups, 1, -1)  # [g, 1, C_in / g]
            full = per_group.expand(groups, weight.shape[0] // groups, per_group.shape[-1])
            weight.mul_(full.reshape(weight.shape[0], -1, *(1,) * (weight.dim() - 2)))


def _fold_sequential(prefix: str, seq: nn.Sequential, done: set[int]) -> None:
    children = list(seq.named_children())
    for index, (child_name, child) in enumerate(children):
        if not isinstance(child, RealSpike):
            continue
        name = f"{prefix}.{child_name}" if prefix else child_name
        flattened = False
        for later_name, later in children[index + 1 :]:
            if isinstance(later, (nn.Linear, *_CONVS)):
                _fold_into(name, child, later, flattened)
                break
            if isinstance(later, _MAX_POOLS) and bool((child.amplitude < 0).any()):
                raise ConfigurationError(
                    f"fold_real_spikes: the RealSpike at {name!r} has a negative amplitude "
                    f"and is followed by a max-pool ({later_name!r}): max(a·s) is not a·max(s)"
                )
            if not _passes_through(later):
                raise ConfigurationError(
                    f"fold_real_spikes: the RealSpike at {name!r} must be followed by a "
                    "convolution or linear layer to fold into (flatten, dropout and pooling "
                    f"may come between); found {type(later).__name__} ({later_name!r})"
                )
            flattened = flattened or isinstance(later, nn.Flatten)
        else:
            raise ConfigurationError(
                f"fold_real_spikes: the RealSpike at {name!r} is the last layer of its "
                "nn.Sequential: no convolution or linear layer after it to fold into"
            )
        setattr(seq, child_name, nn.Identity())
        done.add(id(child))


def fold_real_spikes(model: nn.Module, inplace: bool = False) -> nn.Module:
    """The network with each :class:`~spikeflow.layers.RealSpike` folded away.

    Each ``RealSpike`` must sit in an ``nn.Sequential`` and be followed, in it, by the
    ``Conv1d/2d/3d`` (any ``groups``) or ``Linear`` that reads its spikes, with only
    flatten, dropout, average pooling or max pooling (amplitudes ``>= 0``) between. Its
    amplitudes multiply that layer's weights for each input channel (after a flatten,
    each channel's block of features) and the ``RealSpike`` becomes ``nn.Identity``, so
    the folded network reads binary spikes and gives the output of the trained one
    (to rounding; exactly so in float64 up to the last bits).

    Args:
        model: the trained network.
        inplace: change ``model`` itself (default False: a deep copy).

    Returns:
        The folded network.

    Raises:
        ConfigurationError: a ``RealSpike`` outside an ``nn.Sequential``, last in it,
            followed by another kind of layer, or whose channels do not match the layer
            it feeds; a negative amplitude before a max-pool.
    """
    if not isinstance(model, nn.Module):
        raise ConfigurationError(
            f"fold_real_spikes: model must be an nn.Module, got {type(model).__name__}"
        )
    folded = model if inplace else copy.deepcopy(model)
    done: set[int] = set()
    for prefix, module in list(folded.named_modules()):
        if isinstance(module, nn.Sequential):
            _fold_sequential(prefix, module, done)
    left = [name for name, m in folded.named_modules()
            if isinstance(m, RealSpike) and id(m) not in done]  # fmt: skip
    if left:
        raise ConfigurationError(
            f"fold_real_spikes: RealSpike modules outside an nn.Sequential cannot be "
            f"folded (the layer reading their spikes is unknown): {', '.join(left)}"
        )
    return folded
