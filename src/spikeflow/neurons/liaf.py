"""The leaky integrate-and-analog-fire neuron (LIAF; Wu et al., "LIAF-Net", IEEE TNNLS
2021, arXiv 2011.06176), SpikingJelly 2.0's ``LIAFNode``: a LIF whose output is an
activation of its charged membrane instead of the spike, while the spike still resets
it::

    H[t] = LIF charge of V[t-1], X[t]
    Y[t] = act(H[t] - θ)   (threshold_related)      Y[t] = act(H[t])   (otherwise)
    S[t] = Θ(H[t] - θ),   V[t] = reset(H[t], S[t])   (hard or soft, as any neuron)

The declaration runs on the charged membrane: its state ``v`` is ``H[t]`` (what the
output reads, recorded by the kernels at every step) and ``spike`` is ``S[t]``; the
reset of a step is applied at the start of the next one, inside the charge (as
:class:`~spikeflow.neurons.GatedLIFNode` does), so that ``V[t-1] = reset(H[t-1],
S[t-1])`` and then the LIF charge. The fused C and Triton kernels, forward and backward,
therefore come from the same functions as the reference loop; ``act`` is applied to the
recorded ``H`` outside them (any differentiable function, per step, as SpikingJelly
applies it).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from spikeflow._checks import check_flag
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.neurons.base import (
    BaseNode,
    keep_detached_spike,
    keep_spike,
    membrane_as_charged,
)
from spikeflow.neurons.declaration import NeuronDeclaration, declare
from spikeflow.neurons.lif import _check_tau

__all__ = ["LIAF_ACTIVATIONS", "LIAFNode"]

#: The activations :class:`LIAFNode` takes by name (``act="relu"``: what a configuration
#: file or ``--neuron-kwargs act=relu`` can give, where a callable cannot be written).
LIAF_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": torch.relu,
    "leaky_relu": F.leaky_relu,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "gelu": F.gelu,
    "silu": F.silu,
    "softplus": F.softplus,
}


# -- the declaration: state (H[t-1], S[t-1]), the reset applied by the next charge ---------


def _hard(h: Tensor, spike: Tensor, v_reset: float) -> Tensor:
    """``V = S V_r + (1 - S) H`` (SpikingJelly's order)."""
    return spike * v_reset + (1.0 - spike) * h


def _soft(h: Tensor, spike: Tensor, theta: Tensor | float) -> Tensor:
    """``V = H - S θ``."""
    return h - spike * theta


def _liaf_hard_decay_input(
    x: Tensor, v: Tensor, spike: Tensor, *, tau: float, v_reset: float
) -> Tensor:
    """Hard reset of the last step, then ``H = V + (X - (V - V_r)) / tau``."""
    prev = _hard(v, spike, v_reset)
    return prev + (x - (prev - v_reset)) / tau


def _liaf_hard_no_decay_input(
    x: Tensor, v: Tensor, spike: Tensor, *, tau: float, v_reset: float
) -> Tensor:
    """Hard reset of the last step, then ``H = V - (V - V_r) / tau + X``."""
    prev = _hard(v, spike, v_reset)
    return prev - (prev - v_reset) / tau + x


def _liaf_soft_decay_input(
    x: Tensor, v: Tensor, spike: Tensor, *, tau: float, theta: Tensor | float
) -> Tensor:
    """Soft reset of the last step, then ``H = V + (X - V) / tau`` (the leak towards 0)."""
    prev = _soft(v, spike, theta)
    return prev + (x - (prev - 0.0)) / tau


def _liaf_soft_no_decay_input(
    x: Tensor, v: Tensor, spike: Tensor, *, tau: float, theta: Tensor | float
) -> Tensor:
    """Soft reset of the last step, then ``H = V - V / tau + X``."""
    prev = _soft(v, spike, theta)
    return prev - (prev - 0.0) / tau + x


_CHARGES = {
    (True, True): _liaf_hard_decay_input,
    (True, False): _liaf_hard_no_decay_input,
    (False, True): _liaf_soft_decay_input,
    (False, False): _liaf_soft_no_decay_input,
}


class LIAFNode(BaseNode):
    """Leaky integrate and analog fire (see the module docstring), SpikingJelly 2.0's
    ``LIAFNode`` (the same outputs, membranes and gradients)::

        H[t] = V[t-1] + (X[t] - (V[t-1] - V_r)) / tau    (decay_input=True)
        H[t] = V[t-1] - (V[t-1] - V_r) / tau + X[t]      (decay_input=False)
        Y[t] = act(H[t] - θ) if threshold_related else act(H[t])
        S[t] = Θ(H[t] - θ),   V[t] = H[t] (1 - S[t]) + V_r S[t]   (or H[t] - θ S[t])

    The output ``Y`` is analog, not spikes; its gradient reaches earlier steps through
    the membrane and, through the surrogate, through the reset. With soft reset
    (``v_reset=None``) the leak is towards 0, as ``LIFNode``'s. Its spikes ``S`` are
    what :class:`~spikeflow.training.SpikeMonitor`, the spike rasters, the spike
    regularisers (:class:`~spikeflow.losses.LayerSpikes`) and the operation counts of
    :mod:`spikeflow.energy` read for it (``output_is_spikes`` is False; they turn
    ``store_spike_seq`` on while they watch it), and a layer fed ``Y`` multiplies
    (MACs, not the accumulates of spikes).

    Args:
        act: the activation of the output, a callable on one step ``[B, ...]`` returning
            the same shape (``torch.relu``, ``torch.nn.ReLU()``, ``torch.sigmoid``...),
            or the name of one of :data:`LIAF_ACTIVATIONS` (``"relu"``, ``"sigmoid"``,
            ``"tanh"``, ...; for configuration files and the model zoo's
            ``--neuron-kwargs``). Applied to the steps folded into the batch
            (``[T B, ...]``), as spikeflow's sequence layers apply stateless modules.
        threshold_related: output ``act(H - θ)`` (True) or ``act(H)`` (False).
        tau: membrane time constant, > 1 (default 2).
        decay_input: whether the input is divided by ``tau`` as well (default True).
        store_spike_seq: keep the spikes ``S`` of every step of the last call in
            ``self.spike_seq`` (``[1, B, ...]`` in single-step mode; with their
            surrogate gradient), as ``store_v_seq`` keeps the membrane.
        **kwargs: the arguments of :class:`~spikeflow.neurons.base.BaseNode`
            (threshold 1, hard reset to 0, the Sigmoid(alpha=4) surrogate of the reset).

    State: ``node.v`` is the membrane after reset (as every neuron's); the carried
    ``node.state`` holds the charged membrane ``H`` (``"v"``) and the spike
    (``"spike"``) of the last step. ``store_v_seq`` records the membrane after reset,
    ``store_spike_seq`` the spikes.

    Raises:
        ConfigurationError: ``act`` neither callable nor a name of
            :data:`LIAF_ACTIVATIONS`, ``threshold_related`` or ``store_spike_seq`` not a
            bool, a bad ``tau`` or ``decay_input``.
        ShapeError: an ``act`` that changes the shape of a step.
    """

    output_is_spikes = False
    _graph_attributes = ("v_seq", "spike_seq")  # copies keep the recorded values

    def __init__(
        self,
        act: Callable[[Tensor], Tensor] | str,
        threshold_related: bool,
        tau: float = 2.0,
        decay_input: bool = True,
        store_spike_seq: bool = False,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        owner = type(self).__name__
        self.store_spike_seq = check_flag(owner, "store_spike_seq", store_spike_seq)
        self.spike_seq: Tensor | None = None
        if isinstance(act, str):
            if act not in LIAF_ACTIVATIONS:
                raise ConfigurationError(
                    f"{owner}: act {act!r} is not a known activation; by name it is one of "
                    f"{', '.join(LIAF_ACTIVATIONS)} (or pass a callable)"
                )
            act = LIAF_ACTIVATIONS[act]
        if not callable(act):
            raise ConfigurationError(
                f"{owner}: act must be a callable (torch.relu, torch.nn.ReLU(), ...) or the "
                f"name of one ({', '.join(LIAF_ACTIVATIONS)}), got {type(act).__name__}"
            )
        self.act = act
        self.threshold_related = check_flag(owner, "threshold_related", threshold_related)
        self.tau = _check_tau("tau", tau)
        self.decay_input = check_flag(owner, "decay_input", decay_input)

    def declaration(self) -> NeuronDeclaration:
        hard = self.v_reset is not None
        charge = _CHARGES[(hard, self.decay_input)]
        keep = keep_detached_spike if self.detach_reset else keep_spike
        name = (f"{type(self).__name__}(reset={'hard' if hard else 'soft'}, "
                f"decay_input={self.decay_input}, detach_reset={self.detach_reset})")  # fmt: skip
        return declare(charge, keep, name, reset_membrane=membrane_as_charged)

    def neuron_params(self) -> dict[str, Tensor | float]:
        if self.v_reset is None:
            return {"tau": self.tau, "theta": self.v_threshold}
        return {"tau": self.tau, "v_reset": self.v_reset}

    def initial_values(self) -> dict[str, float]:
        return {**super().initial_values(), "spike": 0.0}

    def _reset_of(self, h: Tensor, spike: Tensor, theta: Tensor | float) -> Tensor:
        """The membrane after reset of charged ``h`` and ``spike``."""
        if self.detach_reset:
            spike = spike.detach()
        return _soft(h, spike, theta) if self.v_reset is None else _hard(h, spike, self.v_reset)

    @property
    def v(self) -> Tensor | None:
        """The membrane after reset carried to the next call (only while streaming)."""
        state = self.state
        if state is None:
            return None
        theta = self.firing_threshold(state["v"].shape)
        return self._reset_of(state["v"], state["spike"], theta)

    def forward(self, x: Tensor) -> Tensor:
        """``Y`` for ``x``: ``[T, B, ...]`` in multi-step mode, ``[B, ...]`` in single-step."""
        x_seq = self._check_input(x)
        spikes, h_seq = self._run_steps(x_seq, True)
        theta = self.firing_threshold(x_seq.shape[1:])
        z = h_seq - theta if self.threshold_related else h_seq
        flat = z.flatten(0, 1)
        y = self.act(flat)
        if not isinstance(y, Tensor) or y.shape != flat.shape:
            got = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
            raise ShapeError(
                f"{type(self).__name__}: act must return a tensor of the shape of its input "
                f"{tuple(flat.shape)} (the steps folded into the batch), got {got}"
            )
        y = y.reshape(z.shape)
        if self.store_v_seq:
            self.v_seq = self._reset_of(h_seq, spikes, theta)
        if self.store_spike_seq:
            self.spike_seq = spikes
        return y if self.step_mode == "m" else y[0]

    def extra_repr(self) -> str:
        act = getattr(self.act, "__name__", None) or type(self.act).__name__
        return (
            f"act={act}, threshold_related={self.threshold_related}, tau={self.tau:g}, "
            f"decay_input={self.decay_input}, " + super().extra_repr()
        )
