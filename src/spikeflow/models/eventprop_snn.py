"""The EventProp network of the zoo (``eventprop_snn``): current-based LIF layers
(:class:`~spikeflow.learn.EventPropLIF`) and a leaky readout; ``spikeflow train
--eventprop`` differentiates it by the adjoint method (:mod:`spikeflow.training.eventprop`),
without it BPTT with a surrogate gradient.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from spikeflow._checks import check_real
from spikeflow.errors import ConfigurationError
from spikeflow.learn.eventprop import EVENTPROP_JUMPS, EventPropLIF, LIFAdjointParameters
from spikeflow.models.common import flat_features, flat_steps
from spikeflow.models.registry import register_model
from spikeflow.neurons import SpikeTap
from spikeflow.neurons.parallel_lif import linear_scan

__all__ = ["EVENTPROP_GRADIENTS", "EventPropClassifier", "eventprop_snn"]


#: How the hidden layers are differentiated: the adjoints, or BPTT with a surrogate.
EVENTPROP_GRADIENTS = (*EVENTPROP_JUMPS, "bptt")


class EventPropClassifier(nn.Module):
    """Hidden layers of current-based LIF neurons (:class:`~spikeflow.learn.EventPropLIF`,
    Norse's ``LIF``) and a leaky readout ``y[t] = κ y[t-1] + W z[t]`` (``κ =
    exp(−1/tau_readout)``, ``W`` without bias), the output ``y`` ``[T, B, K]`` (module
    docstring). The input ``[T, B, ...]`` is flattened per step (the currents of the
    first layer are ``W_in x[t]``); a later layer takes the spikes of the one before it
    (``spike_input=True`` with EventProp's jumps: exact EventProp across layers). Each
    layer's spikes pass through a :class:`~spikeflow.neurons.SpikeTap` (``taps``), which
    the training monitors read.

    Args:
        num_classes: ``K``.
        in_channels, input_size: one step's input ``[C, H, W]`` when ``in_features`` is
            not given (``C·H·W`` values; default the 8x8 digits).
        in_features: inputs per step.
        hidden: neurons per hidden layer (default one layer of 100).
        recurrent: recurrent weights in every hidden layer (default False).
        tau_syn_inv, tau_mem_inv, v_leak, v_th, v_reset, dt: the neurons'
            parameters (:class:`~spikeflow.learn.LIFAdjointParameters`; Norse's defaults).
        tau_readout: the readout's time constant in steps (default 10: ``κ = e^−0.1``).
        weight_scale: as :class:`~spikeflow.learn.EventPropLIF` (default 1).
        surrogate_alpha: BPTT's surrogate, the derivative ``α σ(αx)(1 − σ(αx))`` of
            ``x = h − v_th`` (default 4, spikeflow's ``Sigmoid``).

    ``gradient`` (set by :meth:`set_gradient`; default ``"eventprop"``): ``"eventprop"``
    or ``"norse"`` (the adjoint's jumps) or ``"bptt"``.

    Raises:
        ConfigurationError: no hidden layer, a size below 1, bad neuron parameters, a
            time constant or ``surrogate_alpha`` not above 0.
    """

    #: ``forward`` runs whole sequences from the resting state.
    streamable = False

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        input_size: int | tuple[int, int] | list[int] | None = 8,
        in_features: int | None = None,
        hidden: Sequence[int] = (100,),
        recurrent: bool = False,
        tau_syn_inv: float = 200.0,
        tau_mem_inv: float = 100.0,
        v_leak: float = 0.0,
        v_th: float = 1.0,
        v_reset: float = 0.0,
        dt: float = 1e-3,
        tau_readout: float = 10.0,
        weight_scale: float = 1.0,
        surrogate_alpha: float = 4.0,
    ) -> None:
        super().__init__()
        hidden = list(hidden)
        if not hidden:
            raise ConfigurationError("eventprop_snn: hidden must name at least one layer")
        self.in_features = flat_features("eventprop_snn", in_features, in_channels, input_size)
        p = LIFAdjointParameters(tau_syn_inv, tau_mem_inv, v_leak, v_th, v_reset, dt)
        sizes = [self.in_features, *hidden]
        layers = []
        for index, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
            layer = EventPropLIF(
                n_in, n_out, recurrent=recurrent, p=p, weight_scale=weight_scale,
                spike_input=index > 0,
            )  # fmt: skip
            layers.append(layer)
        self.hidden = nn.ModuleList(layers)
        self.taps = nn.ModuleList(SpikeTap(n) for n in hidden)
        self.readout = nn.Linear(hidden[-1], num_classes, bias=False)
        tau = check_real("eventprop_snn: tau_readout", tau_readout, 0.0, low_open=True)
        self.kappa = math.exp(-1.0 / tau)
        self.surrogate_alpha = check_real(
            "eventprop_snn: surrogate_alpha", surrogate_alpha, 0.0, low_open=True
        )
        self.gradient = "eventprop"

    def set_gradient(self, gradient: str) -> None:
        """Differentiate the hidden layers by ``"eventprop"``, ``"norse"`` (the adjoint's
        jumps; Norse's passes the count derivative between layers) or ``"bptt"``.

        Raises:
            ConfigurationError: another value.
        """
        if gradient not in EVENTPROP_GRADIENTS:
            raise ConfigurationError(
                f"eventprop_snn: gradient must be one of {EVENTPROP_GRADIENTS}, got {gradient!r}"
            )
        self.gradient = gradient
        for index, layer in enumerate(self.hidden):
            if gradient != "bptt":
                layer.jumps = gradient
                layer.spike_input = index > 0 and gradient == "eventprop"

    def spikes(self, x: Tensor) -> list[Tensor]:
        """Every hidden layer's spikes ``[T, B, n]`` for ``x`` ``[T, B, ...]``."""
        z = flat_steps("eventprop_snn", x, self.in_features)
        out = []
        for layer, tap in zip(self.hidden, self.taps):
            z = tap(self._bptt(layer, z) if self.gradient == "bptt" else layer(z))
            out.append(z)
        return out

    def forward(self, x: Tensor) -> Tensor:
        """The readout ``y`` ``[T, B, num_classes]`` of ``x`` ``[T, B, ...]``."""
        # y[t] = κ y[t-1] + u[t] from y[-1] = 0, all steps at once: ceil(log2 T) passes
        return linear_scan(self.readout(self.spikes(x)[-1]), self.kappa)

    def _bptt(self, layer: EventPropLIF, x: Tensor) -> Tensor:
        # The adjoint's forward equations (spikeflow.learn.eventprop) through autograd,
        # the spike's derivative a sigmoid's.
        p, alpha = layer.p, self.surrogate_alpha
        current = torch.matmul(x, layer.input_weights.t())
        v = torch.full_like(current[0], p.v_leak)
        i = torch.zeros_like(current[0])
        z = torch.zeros_like(current[0])
        out = []
        for c in current:
            j = i + c
            if layer.recurrent_weights is not None:
                j = j + z @ layer.recurrent_weights.t()
            h = v + p.dt * p.tau_mem_inv * (p.v_leak - v + j)
            soft = torch.sigmoid(alpha * (h - p.v_th))
            z = (h > p.v_th).to(h.dtype) + (soft - soft.detach())  # exactly 0 or 1
            v = h - z * (h - p.v_reset)
            i = j * (1.0 - p.dt * p.tau_syn_inv)
            out.append(z)
        return torch.stack(out)


@register_model("eventprop_snn")
def eventprop_snn(num_classes: int = 10, **kwargs: Any) -> EventPropClassifier:
    """Current-based LIF layers and a leaky readout (:class:`EventPropClassifier`);
    ``--eventprop`` trains it by EventProp (the adjoint method), without it BPTT with a
    surrogate gradient; ``kwargs`` are its arguments."""
    return EventPropClassifier(num_classes=num_classes, **kwargs)
