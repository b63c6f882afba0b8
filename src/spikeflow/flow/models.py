"""Spiking recurrent networks for event-based optical flow (Hagenaars, Paredes-Vallés and
de Croon, NeurIPS 2021), built from spikeflow's neurons and layers.

* :class:`SpikingFireNet`: the paper's LIF-FireNet, a full-resolution FireNet (Scheerlinck
  et al., WACV 2020) of spiking convolutions, two of them recurrent.
* :class:`SpikingEVFlowNet`: the paper's spiking recurrent EV-FlowNet, an encoder-decoder
  of spiking (recurrent) convolutions with skip connections.

Both take the windows' count images ``[T, B, 2, H, W]`` (:meth:`EventWindows.counts`) and
return one flow per window ``[T, B, 2, H, W]`` in pixels per window:
``max_flow * tanh(prediction)``. The neurons follow the official code's ``ConvLIF``:
per-channel learned leak (:class:`FlowNeuron`, a
:class:`~spikeflow.neurons.ParametricLIFNode` with one time constant per channel, the
leak's logit drawn from N(-4, 0.1)), per-channel learned threshold 0.8 clamped at 0.01,
a spike when the membrane exceeds it, hard reset to 0 with the reset detached, and the
arctangent surrogate ``1 / (1 + 10 x^2)`` (:class:`ArctanSpike`). A multi-step call
starts from rest; in :func:`spikeflow.functional.streaming` the state carries from
one call (chunk of windows) to the next, as the paper streams a recording.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikeflow import layers
from spikeflow._checks import check_flag, check_int, check_real
from spikeflow.errors import ShapeError
from spikeflow.layers.recurrent import _RecurrentContainer
from spikeflow.neurons import ParametricLIFNode
from spikeflow.surrogate import ArctanSpike  # here before it joined the registry

__all__ = [
    "ArctanSpike",
    "ConvRecurrent",
    "FlowNeuron",
    "SpikingEVFlowNet",
    "SpikingFireNet",
    "flow_neuron",
]

#: The official code's leak logit: N(-4, 0.1) per channel (``leak = sigmoid(logit)``).
_LEAK_LOGIT = (-4.0, 0.1)
#: The official code clamps a learned threshold at this value before firing.
_MIN_THRESHOLD = 0.01


class FlowNeuron(ParametricLIFNode):
    """:class:`~spikeflow.neurons.ParametricLIFNode` whose learned threshold is clamped at
    0.01 when it fires, as the official ``ConvLIF`` does (a threshold trained to 0 or
    below would make the neuron fire at every step)."""

    def firing_threshold(self, step_shape: torch.Size) -> float | Tensor:
        theta = super().firing_threshold(step_shape)
        return theta.clamp_min(_MIN_THRESHOLD) if isinstance(theta, Tensor) else theta


def flow_neuron(channels: int, step_mode: str = "m", threshold: float = 0.8) -> FlowNeuron:
    """The paper's spiking neuron for ``channels`` channels: PLIF with one learned time
    constant per channel (leak ``sigmoid(l)``, ``l ~ N(-4, 0.1)``, i.e. ``tau = 1 +
    exp(l)``), a learned per-channel threshold (clamped at 0.01), a spike when the
    membrane exceeds it (``v > threshold``), hard reset to 0 (detached),
    :class:`ArctanSpike` surrogate of width 10."""
    c = check_int("channels", channels, 1)
    logit = torch.randn(c, 1, 1, dtype=torch.float64) * _LEAK_LOGIT[1] + _LEAK_LOGIT[0]
    return FlowNeuron(
        init_tau=(1.0 + torch.exp(logit)).float(),
        shape=(c, 1, 1),
        v_threshold=torch.full((c, 1, 1), float(threshold)),
        learnable_threshold=True,
        detach_reset=True,
        strict_firing=True,
        surrogate_function=ArctanSpike(10.0),
        step_mode=step_mode,  # type: ignore[arg-type]
    )


def _init_conv(conv: nn.Conv2d, scale: float | None = None) -> nn.Conv2d:
    """The paper's initialisation: uniform in ``+-sqrt(1 / in_channels)`` (or ``+-scale``)."""
    bound = math.sqrt(1.0 / conv.in_channels) if scale is None else scale
    nn.init.uniform_(conv.weight, -bound, bound)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


class ConvRecurrent(_RecurrentContainer):
    """``y[t] = sub_module(x[t] + conv(y[t-1]))``, ``y[-1] = 0``: recurrent convolutional
    connections within a layer (the paper's ``ConvLIFRecurrent``), ``x`` the layer's
    feed-forward current.

    Args:
        sub_module: a per-step module keeping the shape ``[B, channels, H, W]`` (a neuron
            with ``step_mode='s'``).
        channels: the number of channels.
        kernel_size: of the recurrent convolution (odd; padding keeps the size).
        step_mode: ``'m'`` (``[T, B, C, H, W]``, default) or ``'s'``.
    """

    def __init__(
        self, sub_module: nn.Module, channels: int, kernel_size: int = 3, step_mode: str = "m"
    ) -> None:
        super().__init__(sub_module, step_mode)  # type: ignore[arg-type]
        self.channels = check_int("channels", channels, 1)
        k = check_int("kernel_size", kernel_size, 1)
        self.recurrent = _init_conv(
            nn.Conv2d(self.channels, self.channels, k, padding=k // 2, bias=False)
        )

    def _drive(self, x_seq: Tensor) -> Tensor:
        if x_seq.dim() != 5 or x_seq.shape[2] != self.channels:
            raise ShapeError(
                f"ConvRecurrent(channels={self.channels}) expects [T, B, {self.channels}, H, W], "
                f"got {tuple(x_seq.shape)}"
            )
        return x_seq

    def _step(self, drive: Tensor, y: Tensor) -> Tensor:
        return drive + self.recurrent(y)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, step_mode={self.step_mode}"


def _conv(cin: int, cout: int, k: int, stride: int = 1) -> layers.Conv2d:
    return _init_conv(layers.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False))


def _spiking(cin: int, cout: int, k: int, threshold: float, stride: int = 1) -> nn.Sequential:
    """A spiking convolution: conv then a multi-step neuron layer."""
    return nn.Sequential(_conv(cin, cout, k, stride), flow_neuron(cout, threshold=threshold))


def _recurrent(cin: int, cout: int, k: int, threshold: float) -> nn.Sequential:
    """A recurrent spiking convolution: feed-forward conv, then the neuron with
    recurrent convolutional feedback of its spikes."""
    neuron = flow_neuron(cout, "s", threshold)
    return nn.Sequential(_conv(cin, cout, k), ConvRecurrent(neuron, cout, k))


def _check_counts(owner: str, x: Tensor, in_channels: int) -> None:
    if not isinstance(x, Tensor) or x.dim() != 5 or x.shape[2] != in_channels:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ShapeError(f"{owner} expects count images [T, B, {in_channels}, H, W], got {shape}")


class _FlowHead(nn.Module):
    """1x1 convolution to two channels, ``max_flow * tanh``: flow in pixels per window."""

    def __init__(self, channels: int, max_flow: float | None) -> None:
        super().__init__()
        self.pred = _init_conv(layers.Conv2d(channels, 2, 1, bias=True), scale=0.01)
        self.max_flow = max_flow

    def unit(self, x: Tensor) -> Tensor:
        """``tanh(prediction)``: the flow in units of ``max_flow`` (what the official
        EV-FlowNet feeds to the next decoder)."""
        return torch.tanh(self.pred(x))

    def scale(self, height: int, width: int) -> float:
        """Pixels per window of a saturated prediction."""
        return float(max(height, width)) if self.max_flow is None else self.max_flow

    def forward(self, x: Tensor, height: int, width: int) -> Tensor:
        return self.scale(height, width) * self.unit(x)


class SpikingFireNet(nn.Module):
    """LIF-FireNet: ``head -> G1 (recurrent) -> R1a -> R1b -> G2 (recurrent) -> R2a ->
    R2b -> 1x1 prediction``, all 3x3 spiking convolutions at full resolution.

    Args:
        in_channels: input channels (2: ON and OFF counts).
        channels: channels of every hidden layer (the paper: 32).
        kernel_size: 3 in the paper.
        max_flow: flow for a saturated prediction, in pixels per window; None (default)
            uses the larger sensor side, as the paper's ``flow_scaling``.
        threshold: the neurons' initial threshold (the paper: 0.8). Deep layers fall
            silent at the start with few events per window; a lower one keeps them
            spiking in short trainings.
    """

    def __init__(
        self,
        in_channels: int = 2,
        channels: int = 32,
        kernel_size: int = 3,
        max_flow: float | None = None,
        threshold: float = 0.8,
    ) -> None:
        super().__init__()
        self.in_channels = check_int("in_channels", in_channels, 1)
        c = check_int("channels", channels, 1)
        k = check_int("kernel_size", kernel_size, 1)
        th = check_real("threshold", threshold, low=0.0, low_open=True)
        self.head = _spiking(self.in_channels, c, k, th)
        self.G1 = _recurrent(c, c, k, th)
        self.R1a = _spiking(c, c, k, th)
        self.R1b = _spiking(c, c, k, th)
        self.G2 = _recurrent(c, c, k, th)
        self.R2a = _spiking(c, c, k, th)
        self.R2b = _spiking(c, c, k, th)
        self.flow_head = _FlowHead(c, max_flow)

    def forward(self, counts: Tensor) -> Tensor:
        """``[T, B, in_channels, H, W]`` -> flow ``[T, B, 2, H, W]``."""
        _check_counts(type(self).__name__, counts, self.in_channels)
        x = counts
        for block in (self.head, self.G1, self.R1a, self.R1b, self.G2, self.R2a, self.R2b):
            x = block(x)
        return self.flow_head(x, counts.shape[3], counts.shape[4])


class SpikingEVFlowNet(nn.Module):
    """Spiking recurrent EV-FlowNet: ``num_encoders`` encoders (a stride-2 spiking
    convolution and a recurrent spiking convolution each, channels doubling from
    ``channels``), two spiking residual blocks, and as many decoders (bilinear x2
    upsampling and a spiking convolution over the previous output concatenated with the
    encoder's skip), then the 1x1 flow prediction at full resolution. Inputs whose sides
    are not multiples of ``2 ** num_encoders`` are zero-padded and the flow cropped back.

    With ``multiscale=True`` every decoder predicts a flow, as the paper's EV-FlowNet
    does, and each coarse prediction (``tanh``, before scaling) is concatenated to the
    next decoder's input, ahead of its skip, as in the official code; the coarser flows
    are upsampled to full resolution (nearest, in pixels of the sensor) and the call
    returns the list, coarsest first, which
    :func:`~spikeflow.flow.contrast_maximization_loss` averages. ``multiscale=False``
    (default) is a lighter variant with the last prediction only. Other arguments as
    :class:`SpikingFireNet`'s.
    """

    def __init__(
        self,
        in_channels: int = 2,
        channels: int = 32,
        num_encoders: int = 4,
        kernel_size: int = 3,
        max_flow: float | None = None,
        threshold: float = 0.8,
        multiscale: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels = check_int("in_channels", in_channels, 1)
        self.multiscale = check_flag(type(self).__name__, "multiscale", multiscale)
        c = check_int("channels", channels, 1)
        self.num_encoders = check_int("num_encoders", num_encoders, 1)
        k = check_int("kernel_size", kernel_size, 1)
        th = check_real("threshold", threshold, low=0.0, low_open=True)
        sizes = [c * 2**i for i in range(self.num_encoders + 1)]  # encoder outputs: sizes[1:]
        cin = self.in_channels
        self.encoders = nn.ModuleList()
        for i in range(self.num_encoders):
            self.encoders.append(
                nn.Sequential(
                    _spiking(cin, sizes[i + 1], k, th, stride=2),
                    *_recurrent(sizes[i + 1], sizes[i + 1], k, th),
                )
            )
            cin = sizes[i + 1]
        self.residual = nn.ModuleList(
            nn.ModuleList([_spiking(cin, cin, k, th), _spiking(cin, cin, k, th)]) for _ in range(2)
        )
        self.decoders = nn.ModuleList()
        for i in reversed(range(self.num_encoders)):
            fed_back = 2 if self.multiscale and i < self.num_encoders - 1 else 0
            self.decoders.append(
                nn.Sequential(
                    layers.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                    _spiking(2 * sizes[i + 1] + fed_back, sizes[i], k, th),
                )
            )
        self.flow_head = _FlowHead(c, max_flow)
        coarse = sizes[1 : self.num_encoders][::-1] if self.multiscale else []
        self.coarse_heads = nn.ModuleList(_FlowHead(n, max_flow) for n in coarse)

    def forward(self, counts: Tensor) -> Tensor | list[Tensor]:
        """``[T, B, in_channels, H, W]`` -> flow ``[T, B, 2, H, W]`` (``multiscale``: a
        list of them, one per decoder, coarsest first)."""
        _check_counts(type(self).__name__, counts, self.in_channels)
        H, W = counts.shape[3], counts.shape[4]
        m = 2**self.num_encoders
        pad_h, pad_w = (-H) % m, (-W) % m
        x = F.pad(counts, (0, pad_w, 0, pad_h)) if pad_h or pad_w else counts
        skips = []
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
        for first, second in self.residual:
            x = second(first(x)) + x
        flows = []
        previous: Tensor | None = None  # the last coarse prediction, fed to the next decoder
        for i, (decoder, skip) in enumerate(zip(self.decoders, reversed(skips), strict=True)):
            parts = [x, skip] if previous is None else [previous, x, skip]
            x = decoder(torch.cat(parts, dim=2))
            if i < len(self.coarse_heads):
                factor = 2 ** (self.num_encoders - 1 - i)
                head = self.coarse_heads[i]
                previous = head.unit(x)
                flow = head.scale(H, W) * previous
                flows.append(flow.repeat_interleave(factor, 3).repeat_interleave(factor, 4))
        flows.append(self.flow_head(x, H, W))
        flows = [f[..., :H, :W] for f in flows]
        return flows if self.multiscale else flows[0]
