"""Layers trained by event-driven backpropagation (Zhu et al., NeurIPS 2022; methods.md 10).

Each layer is a synapse (linear or 2-d convolution, weights standardised per output
channel with a learnable gain and shift) followed by the event-driven neuron of
:mod:`spikeflow.event_driven.kernel`; it maps input spikes ``[T, B, ...]`` to output
spikes ``[T, B, ...]`` over the whole sequence (multi-step only, no state between calls).

Gradients follow spikes, not steps. A layer receives and returns the gradient w.r.t.
spikes, as every spikeflow layer does, and reads it as minus the gradient w.r.t. that
spike's *time* (an earlier spike counts like more spike: the authors' reversed loss
sign). Only steps with an output spike carry gradient; an input gets gradient only at its
own spikes (the gradient is multiplied by the input), scaled by ``input_grad_scale``
(the authors' 0.9 per layer).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikeflow._checks import check_labels, check_real
from spikeflow._compile_marks import eager_under_compile
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.event_driven.kernel import EventDrivenNeuron, spike_backward, spike_forward
from spikeflow.layers.weight_standardization import standardize_weight

__all__ = ["EventDrivenConv2d", "EventDrivenLayer", "EventDrivenLinear"]


class _SpikeLayerFunction(torch.autograd.Function):
    """Synapse + event-driven neuron with the time-based backward."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: Tensor, weight: Tensor, layer: EventDrivenLayer, target: Tensor | None
    ) -> Tensor:
        current = layer._current(x, weight)
        spikes, rise, slope = spike_forward(current, layer.neuron)
        if target is not None:
            _teacher_spike(spikes, rise, target)
        ctx.layer = layer
        ctx.save_for_backward(x, weight, spikes, rise, slope)
        return spikes

    @staticmethod
    def backward(ctx: Any, grad_spikes: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
        x, weight, spikes, rise, slope = ctx.saved_tensors
        layer: EventDrivenLayer = ctx.layer
        grad_time = -grad_spikes * spikes
        for_input, for_weight = spike_backward(grad_time, spikes, rise, slope, layer.neuron)
        grad_x = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_x = layer._input_grad(for_input, weight, x.shape) * x
            grad_x = grad_x * -layer.input_grad_scale
        if ctx.needs_input_grad[1]:
            grad_weight = layer._weight_grad(x, for_weight, weight.shape)
        return grad_x, grad_weight, None, None


def _teacher_spike(spikes: Tensor, rise: Tensor, target: Tensor) -> None:
    """Give each sample's label neuron a spike at the last step its membrane rose by more
    than 0.05, so the label class has a spike to carry gradient (the authors'
    output-layer supervision). If it never rose by that much, the spike goes to step 0
    when the membrane changed there at all (the authors' ``Δu != 0``: a membrane that
    fell gets the spike too, and with ``∂t/∂u`` clamped to 0 it carries no gradient)."""
    batch = torch.arange(spikes.shape[1], device=spikes.device)
    label_rise = rise[:, batch, target]  # [T, B]
    steps = torch.arange(1, spikes.shape[0] + 1, device=spikes.device).unsqueeze(1)
    last = ((label_rise > 0.05) * steps).argmax(dim=0)
    spikes[last, batch, target] = (label_rise[last, batch] != 0).to(spikes.dtype)


class EventDrivenLayer(nn.Module):
    """What the event-driven linear and convolution layers share: the neuron, the
    weight standardisation and the forward. Subclasses give the synapse's three maps."""

    #: whole sequences only: ``spikeflow.functional.streaming`` refuses it by name.
    streamable = False

    weight: Tensor
    neuron: EventDrivenNeuron
    input_grad_scale: float
    weight_clip: float | None

    def _init_event_driven(
        self,
        out_channels: int,
        neuron: EventDrivenNeuron | None,
        input_grad_scale: float,
        weight_clip: float | None,
    ) -> None:
        owner = type(self).__name__
        if neuron is None:
            neuron = EventDrivenNeuron()
        if not isinstance(neuron, EventDrivenNeuron):
            raise ConfigurationError(
                f"{owner}: neuron must be an EventDrivenNeuron, got {type(neuron).__name__}"
            )
        self.neuron = neuron
        self.input_grad_scale = check_real(f"{owner}: input_grad_scale", input_grad_scale, 0.0)
        if weight_clip is not None:
            weight_clip = check_real(f"{owner}: weight_clip", weight_clip, 0.0, low_open=True)
        self.weight_clip = weight_clip
        if self.weight[0].numel() < 2:
            raise ConfigurationError(
                f"{owner}: the weights are standardised over each output channel's fan-in, "
                f"which must be >= 2, got {self.weight[0].numel()}"
            )
        #: standardised weight = (w - mean) / std * gain + shift, per output channel.
        self.gain = nn.Parameter(torch.ones(out_channels, dtype=self.weight.dtype))
        self.shift = nn.Parameter(torch.zeros(out_channels, dtype=self.weight.dtype))

    def standardized_weight(self) -> Tensor:
        """The weight the synapse uses: per output channel, zero mean and unit (sample)
        standard deviation over the fan-in, times ``gain`` plus ``shift``."""
        view = (-1,) + (1,) * (self.weight.dim() - 1)
        weight = standardize_weight(self.weight, 1e-5)
        return weight * self.gain.view(view) + self.shift.view(view)

    # Eager under torch.compile: the C kernels are called through ctypes, which Dynamo
    # must not trace (the rest of a compiled model still compiles around the layer).
    @eager_under_compile
    def forward(self, x: Tensor, target: Tensor | None = None) -> Tensor:
        """Output spikes ``[T, B, ...]`` for input spikes (or currents) ``[T, B, ...]``.

        ``target`` (class labels ``[B]``, output layers) adds the teacher spike in
        training mode: each sample's label neuron fires at the last step its membrane
        rose (by more than 0.05), so that a silent label class still gets gradient; the
        output then holds that spike (the authors' code counts it in the loss). In eval
        mode the target is checked and not used (as ``EventDrivenNet`` does): the output
        is the network's own, so evaluation does not see the labels."""
        x = self._check_input(x)
        if x.shape[0] == 0:
            raise ShapeError(
                f"{type(self).__name__}: the input has no time steps (T = 0), shape {list(x.shape)}"
            )
        if target is not None:
            target = self._check_target(target, x)
            if not self.training:  # the teacher spike is for training only
                target = None
        if self.training and self.weight_clip is not None:
            # on .data: an in-place change of the parameter itself would invalidate the
            # graph of an earlier forward not yet backpropagated (two forwards, one loss)
            self.weight.data.clamp_(-self.weight_clip, self.weight_clip)
        weight = self.standardized_weight()
        dtype = torch.promote_types(torch.promote_types(x.dtype, weight.dtype), torch.float32)
        with torch.autocast(x.device.type, enabled=False):
            return _SpikeLayerFunction.apply(x.to(dtype), weight.to(dtype), self, target)

    def _check_target(self, target: Tensor, x: Tensor) -> Tensor:
        owner = type(self).__name__
        if not isinstance(self, EventDrivenLinear):
            raise ConfigurationError(f"{owner}: only an output (linear) layer takes a target")
        if target.dtype.is_floating_point or target.dtype == torch.bool:
            raise ConfigurationError(
                f"{owner}: target must be integer class labels, got {target.dtype}"
            )
        check_labels(owner, target, x.shape[1], self.out_features)
        return target.long()

    def _check_input(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def _current(self, x: Tensor, weight: Tensor) -> Tensor:
        raise NotImplementedError

    def _input_grad(self, grad: Tensor, weight: Tensor, x_shape: torch.Size) -> Tensor:
        raise NotImplementedError

    def _weight_grad(self, x: Tensor, grad: Tensor, weight_shape: torch.Size) -> Tensor:
        raise NotImplementedError

    def _event_repr(self) -> str:
        n = self.neuron
        return (
            f"tau_m={n.tau_m}, tau_s={n.tau_s}, tau_grad={n.tau_grad}, "
            f"threshold={n.threshold}, gradient={n.gradient!r}"
        )


class EventDrivenLinear(EventDrivenLayer, nn.Linear):
    """Fully connected event-driven layer: input ``[T, B, in_features]`` (or ``[T, B, ...]``
    whose trailing dims multiply to ``in_features``, flattened), output ``[T, B, out_features]``.

    Args:
        in_features, out_features: as :class:`torch.nn.Linear` (no bias: the shift of the
            weight standardisation takes its place, as in the paper).
        neuron: the neuron's settings (:class:`EventDrivenNeuron`; default: the paper's
            CIFAR-10 values).
        input_grad_scale: factor on the gradient sent to the inputs (the authors' 0.9).
        weight_clip: raw weights are clamped to ``[-clip, clip]`` before each training
            forward (the authors' 4); None disables it.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        neuron: EventDrivenNeuron | None = None,
        input_grad_scale: float = 0.9,
        weight_clip: float | None = 4.0,
        device: Any = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        nn.Linear.__init__(self, in_features, out_features, bias=False, device=device, dtype=dtype)
        self._init_event_driven(out_features, neuron, input_grad_scale, weight_clip)

    def _check_input(self, x: Tensor) -> Tensor:
        if x.dim() < 3 or x.shape[2:].numel() != self.in_features:
            raise ShapeError(
                f"EventDrivenLinear: expected input [T, B, {self.in_features}] (or trailing "
                f"dims multiplying to {self.in_features}), got {list(x.shape)}"
            )
        return x.reshape(*x.shape[:2], self.in_features)

    def _current(self, x: Tensor, weight: Tensor) -> Tensor:
        return x @ weight.t()

    def _input_grad(self, grad: Tensor, weight: Tensor, x_shape: torch.Size) -> Tensor:
        return grad @ weight

    def _weight_grad(self, x: Tensor, grad: Tensor, weight_shape: torch.Size) -> Tensor:
        return grad.reshape(-1, weight_shape[0]).t() @ x.reshape(-1, weight_shape[1])

    def extra_repr(self) -> str:
        return f"{nn.Linear.extra_repr(self)}, {self._event_repr()}"


class EventDrivenConv2d(EventDrivenLayer, nn.Conv2d):
    """2-d convolutional event-driven layer: input ``[T, B, C, H, W]``, output
    ``[T, B, out_channels, H', W']``.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups: as
            :class:`torch.nn.Conv2d` (zero padding, no bias: the standardisation's shift
            takes its place).
        neuron, input_grad_scale, weight_clip: as :class:`EventDrivenLinear`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        neuron: EventDrivenNeuron | None = None,
        input_grad_scale: float = 0.9,
        weight_clip: float | None = 4.0,
        device: Any = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if isinstance(padding, str):
            raise ConfigurationError(
                f"EventDrivenConv2d: padding must be integers, got {padding!r}"
            )
        nn.Conv2d.__init__(
            self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
            bias=False, device=device, dtype=dtype,
        )  # fmt: skip
        self._init_event_driven(out_channels, neuron, input_grad_scale, weight_clip)

    def _check_input(self, x: Tensor) -> Tensor:
        if x.dim() != 5 or x.shape[2] != self.in_channels:
            raise ShapeError(
                f"EventDrivenConv2d: expected input [T, B, {self.in_channels}, H, W], "
                f"got {list(x.shape)}"
            )
        return x

    def _conv_args(self) -> tuple[Any, ...]:
        return self.stride, self.padding, self.dilation, self.groups

    def _current(self, x: Tensor, weight: Tensor) -> Tensor:
        steps, batch = x.shape[:2]
        out = F.conv2d(x.flatten(0, 1), weight, None, *self._conv_args())
        return out.reshape(steps, batch, *out.shape[1:])

    def _input_grad(self, grad: Tensor, weight: Tensor, x_shape: torch.Size) -> Tensor:
        folded = (x_shape[0] * x_shape[1], *x_shape[2:])
        out = torch.nn.grad.conv2d_input(folded, weight, grad.flatten(0, 1), *self._conv_args())
        return out.reshape(x_shape)

    def _weight_grad(self, x: Tensor, grad: Tensor, weight_shape: torch.Size) -> Tensor:
        return torch.nn.grad.conv2d_weight(
            x.flatten(0, 1), weight_shape, grad.flatten(0, 1), *self._conv_args()
        )

    def extra_repr(self) -> str:
        return f"{nn.Conv2d.extra_repr(self)}, {self._event_repr()}"
