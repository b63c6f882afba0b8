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


class _Layout:
    """Where the ``RealSpike``'s channels are on the way to the layer that reads them:
    ``channel`` (a dim counted from the front), ``ndim`` (None while unknown) and
    ``flattened`` (the channel dim now holds each channel's block of features)."""

    def __init__(self, spike: RealSpike) -> None:
        self.channel, self.ndim, self.flattened = spike.dim, spike.input_ndim, False

    def flatten(self, name: str, flatten: nn.Flatten) -> None:
        """Follow the channels through ``flatten`` (refusing where they are lost)."""
        from spikeflow.layers.sequence import SequenceLayerMixin

        start, end = flatten.start_dim, flatten.end_dim
        if isinstance(flatten, SequenceLayerMixin) and flatten.step_mode == "m":
            start, end = (d + 1 if d >= 0 else d for d in (start, end))  # after the T dim
        if self.ndim is None and start >= 0 and end == -1 and self.channel <= start:
            # whatever the input's rank, the result has start + 1 dims, the last merged
            self.flattened = self.flattened or self.channel == start
            self.ndim = start + 1
            return
        if self.ndim is None:
            raise ConfigurationError(
                f"fold_real_spikes: the RealSpike at {name!r} has not run yet, so where "
                f"the {type(flatten).__name__} after it puts its channels is unknown: run "
                "the network once (e.g. on one batch) before folding"
            )
        start, end = (d % self.ndim for d in (start, end))
        if start < self.channel <= end:
            raise ConfigurationError(
                f"fold_real_spikes: the RealSpike at {name!r} scales dim {self.channel} of "
                f"its input, which the {type(flatten).__name__} after it merges behind dim "
                f"{start} (start_dim): each channel's features are then not one block"
            )
        if self.channel == start and end > start:
            self.flattened = True
        elif self.channel > end:
            self.channel -= end - start
        self.ndim -= end - start

    def scale(self, name: str, amplitude: Tensor, consumer: nn.Module) -> Tensor:
        """The factor of each input feature (a Linear) or input channel (a conv)."""
        if amplitude.dim() == 0:
            return amplitude
        channels, kind = amplitude.numel(), type(consumer).__name__
        if isinstance(consumer, nn.Linear):
            if self.ndim is None:
                raise ConfigurationError(
                    f"fold_real_spikes: the RealSpike at {name!r} has not run yet, so "
                    f"whether the Linear after it reads its channels (its last dim) is "
                    "unknown: run the network once (e.g. on one batch) before folding"
                )
            if self.channel != self.ndim - 1:
                raise ConfigurationError(
                    f"fold_real_spikes: the RealSpike at {name!r} scales dim {self.channel} "
                    f"of a {self.ndim}-dim input, but the Linear it feeds reads the last dim "
                    f"({self.ndim - 1}): its amplitudes cannot go into that layer's weights"
                )
            features = consumer.in_features
            if self.flattened and features % channels == 0:
                return amplitude.repeat_interleave(features // channels)  # channel-major
            if not self.flattened and features == channels:
                return amplitude
            raise ConfigurationError(
                f"fold_real_spikes: the RealSpike at {name!r} has {channels} channels, which "
                f"do not divide the {features} input features of the Linear it feeds"
            )
        if consumer.in_channels != channels or self.flattened:
            raise ConfigurationError(
                f"fold_real_spikes: the RealSpike at {name!r} has {channels} channels, the "
                f"{kind} it feeds has in_channels={consumer.in_channels}"
                + (" after a flatten" if self.flattened else "")
            )
        expected = self._conv_channel_dim(consumer)
        if self.channel != expected:
            raise ConfigurationError(
                f"fold_real_spikes: the RealSpike at {name!r} scales dim {self.channel} of "
                f"its input, but the {kind} it feeds reads its channels from dim {expected}"
            )
        return amplitude

    def _conv_channel_dim(self, conv: nn.Module) -> int:
        from spikeflow.layers.sequence import SequenceLayerMixin

        spatial = conv.weight.dim() - 2
        if self.ndim is None:  # the rank the conv takes: [T,] B, C, *spatial
            multi = isinstance(conv, SequenceLayerMixin) and conv.step_mode == "m"
            self.ndim = spatial + (3 if multi else 2)
        return self.ndim - spatial - 1


def _fold_into(name: str, spike: RealSpike, consumer: nn.Module, layout: _Layout) -> None:
    from spikeflow.layers.weight_standardization import _Standardized

    if isinstance(consumer, _Standardized):  # its weight is re-standardised each call
        raise ConfigurationError(
            f"fold_real_spikes: the RealSpike at {name!r} feeds a weight-standardised "
            f"{type(consumer).__name__}, whose weights are normalised at every call: a "
            "scale folded into them would be normalised away"
        )
    amplitude = spike.amplitude.detach().to(consumer.weight.dtype)
    scale = layout.scale(name, amplitude, consumer)
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


def _fold_sequential(prefix: str, seq: nn.Sequential, read: dict[int, str]) -> None:
    children = list(seq._modules.items())  # a module placed twice is listed twice
    for index, (child_name, child) in enumerate(children):
        if not isinstance(child, RealSpike):
            continue
        name = f"{prefix}.{child_name}" if prefix else child_name
        layout = _Layout(child)
        for later_name, later in children[index + 1 :]:
            if isinstance(later, (nn.Linear, *_CONVS)):
                earlier = read.setdefault(id(later), name)
                if earlier != name:  # its weights would be scaled twice, or for both uses
                    raise ConfigurationError(
                        f"fold_real_spikes: the {type(later).__name__} {later_name!r} that "
                        f"the RealSpike at {name!r} feeds also reads the RealSpike at "
                        f"{earlier!r} (a layer used twice): one set of weights cannot "
                        "hold both amplitudes"
                    )
                _fold_into(name, child, later, layout)
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
            if isinstance(later, nn.Flatten) and child.amplitude.dim():
                layout.flatten(name, later)
        else:
            raise ConfigurationError(
                f"fold_real_spikes: the RealSpike at {name!r} is the last layer of its "
                "nn.Sequential: no convolution or linear layer after it to fold into"
            )
        setattr(seq, child_name, nn.Identity())


def fold_real_spikes(model: nn.Module, inplace: bool = False) -> nn.Module:
    """The network with each :class:`~spikeflow.layers.RealSpike` folded away.

    Each ``RealSpike`` must sit in an ``nn.Sequential`` and be followed, in it, by the
    ``Conv1d/2d/3d`` (any ``groups``) or ``Linear`` that reads its spikes, with only
    flatten, dropout, average pooling or max pooling (amplitudes ``>= 0``) between. Its
    amplitudes multiply that layer's weights for each input channel (after a flatten,
    each channel's block of features) and the ``RealSpike`` becomes ``nn.Identity``, so
    the folded network reads binary spikes and gives the output of the trained one
    (to rounding; exactly so in float64 up to the last bits).

    The dim the ``RealSpike`` scales (its ``dim``) must be the one that layer reads: a
    conv's channel dim, a Linear's last dim (after a flatten that starts at it). Where
    the rank of its input matters (a Linear without a flatten ending at the last dim)
    the ``RealSpike`` must have run once, which records it.

    Args:
        model: the trained network.
        inplace: change ``model`` itself (default False: a deep copy); a refusal
            leaves it unchanged either way.

    Returns:
        The folded network.

    Raises:
        ConfigurationError: a ``RealSpike`` outside an ``nn.Sequential``, last in it,
            followed by another kind of layer, whose channels do not match the layer
            it feeds or sit in another dim than the one it reads, or whose layout is
            unknown (never run); a layer fed by two RealSpikes; a ``RealSpike``
            also registered outside its ``nn.Sequential``; a negative amplitude before
            a max-pool.
    """
    if not isinstance(model, nn.Module):
        raise ConfigurationError(
            f"fold_real_spikes: model must be an nn.Module, got {type(model).__name__}"
        )
    if inplace:  # a refusal must leave the model as it was: fold a copy first
        _fold_all(copy.deepcopy(model))
        return _fold_all(model)
    return _fold_all(copy.deepcopy(model))


def _fold_all(folded: nn.Module) -> nn.Module:
    """:func:`fold_real_spikes` on ``folded`` itself."""
    read: dict[int, str] = {}  # conv/linear layer id -> the RealSpike folded into it
    for prefix, module in list(folded.named_modules()):
        if isinstance(module, nn.Sequential):
            _fold_sequential(prefix, module, read)
    every = folded.named_modules(remove_duplicate=False)
    left = [name for name, m in every if isinstance(m, RealSpike)]
    if left:  # never in a Sequential, or also registered (so maybe called) elsewhere
        raise ConfigurationError(
            "fold_real_spikes: RealSpike modules outside an nn.Sequential (or also "
            "registered outside one) cannot be folded (the layer reading their spikes is "
            f"unknown): {', '.join(left)}"
        )
    return folded
