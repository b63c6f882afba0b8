"""Leaky integrator (LI): a non-spiking neuron whose output is its membrane potential.

The discrete model is the LIF charge of methods.md 1.2 with no fire and no reset::

    V[t] = V[t-1] + (X[t] - (V[t-1] - v_leak)) / tau      (decay_input=True, default)
    V[t] = V[t-1] - (V[t-1] - v_leak) / tau + X[t]        (decay_input=False)

with ``V[-1] = v_leak``. It is the read-out layer of many spiking networks (the
membrane of the last layer is the logit) and NIR's ``LI`` node
(``tau dV/dt = v_leak - V + r I``, forward Euler with ``dt/tau_NIR = 1/tau``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from spikeflow._checks import check_flag
from spikeflow.base import MemoryModule, StepMode, set_constants
from spikeflow.errors import DTypeError
from spikeflow.neurons.base import as_sequence, check_step_shape, show_float_or_shape
from spikeflow.neurons.current import _check_value
from spikeflow.neurons.lif import learnable_time_constant

__all__ = ["LINode", "LeakyIntegrator"]


class LINode(MemoryModule):
    """Leaky integrator without spikes: returns the membrane ``V[t]`` (module docstring).

    Args:
        tau: membrane time constant in steps, ``>= 1`` (``tau = 1`` has no memory);
            a float or a tensor broadcastable to one step (one value per neuron).
            Default 2.
        decay_input: whether the input is divided by ``tau`` as well (default True).
        v_leak: the resting value the membrane decays to, and its initial value
            (float or tensor, default 0).
        step_mode: ``'m'`` (input ``[T, B, ...]``, default) or ``'s'`` (``[B, ...]``).
        learnable_tau: make ``tau`` a trainable ``nn.Parameter`` under the same name (a
            number becomes a 0-dim one, a tensor keeps its shape), clamped to ``>= 1`` at
            each call, as :class:`~spikeflow.neurons.LIFNode`'s (default False).

    Raises:
        ConfigurationError: ``tau < 1``, a non-finite parameter, a flag not a bool.
        ShapeError: a tensor parameter does not broadcast to one step of the input.

    Example::

        >>> LINode(tau=2.0)(torch.ones(3, 1, 1)).view(-1)
        tensor([0.5000, 0.7500, 0.8750])
    """

    def __init__(
        self,
        tau: float | Tensor = 2.0,
        decay_input: bool = True,
        v_leak: float | Tensor = 0.0,
        step_mode: StepMode = "m",
        *,
        learnable_tau: bool = False,
    ) -> None:
        super().__init__(step_mode)
        owner = type(self).__name__
        learnable = check_flag(owner, "learnable_tau", learnable_tau)
        tau_value = _check_value("tau", tau, 1.0)
        if learnable:
            self.tau = learnable_time_constant(tau_value)
        else:
            set_constants(self, {"tau": tau_value})
        set_constants(self, {"v_leak": _check_value("v_leak", v_leak)})
        self.decay_input = check_flag(owner, "decay_input", decay_input)

    @property
    def v(self) -> Tensor | None:
        """Membrane potential carried to the next call (only while streaming)."""
        return None if self.state is None else self.state["v"]

    def _check_input(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or not x.is_floating_point():
            what = x.dtype if isinstance(x, Tensor) else type(x).__name__
            raise DTypeError(f"LINode expects a floating-point tensor, got {what}")
        x_seq = as_sequence(x, "LINode", self.step_mode)
        step_shape = x_seq.shape[1:]
        for name in ("tau", "v_leak"):
            check_step_shape("LINode", name, getattr(self, name), step_shape)
        return x_seq

    def decay(self) -> float | Tensor:
        """``1 / tau`` for this call (``1 / max(tau, 1)`` for a learned ``tau``)."""
        if "tau" in self._parameters:  # learned (also when torch.func swaps it in)
            return 1.0 / torch.clamp(self.tau, min=1.0)
        return 1.0 / self.tau

    def forward(self, x: Tensor) -> Tensor:
        """Membrane potentials for ``x``: ``[T, B, ...]`` (multi-step) or ``[B, ...]``."""
        x_seq = self._check_input(x)
        state = self._carried_state(x_seq.shape[1:])
        if state is None:
            v = torch.zeros_like(x_seq[0]) + self.v_leak
        else:
            v = state["v"]
        decay = self.decay()
        outputs = []
        for x_t in x_seq.unbind(0):
            if self.decay_input:
                v = v + (x_t - (v - self.v_leak)) * decay
            else:
                v = v - (v - self.v_leak) * decay + x_t
            outputs.append(v)
        self._keep_state({"v": v})
        return torch.stack(outputs) if self.step_mode == "m" else outputs[0]

    def extra_repr(self) -> str:
        show = show_float_or_shape
        learned = ", learnable_tau=True" if "tau" in self._parameters else ""
        return (
            f"tau={show(self.tau)}, decay_input={self.decay_input}, "
            f"v_leak={show(self.v_leak)}, step_mode={self.step_mode!r}{learned}"
        )


#: Long name.
LeakyIntegrator = LINode
