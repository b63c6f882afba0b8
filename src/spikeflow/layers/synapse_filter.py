"""A first-order synaptic filter on spikes (SpikingJelly 2.0's ``layer.SynapseFilter``).

The output current ``I`` decays with time constant ``tau`` while no spike arrives and
jumps by the input where one does. For an input ``x[t]`` (spikes, or graded values)::

    I[t] = I[t-1] - (1 - x[t]) I[t-1] / tau + x[t],        I[-1] = 0

With binary spikes: a spike adds 1 and suspends the decay for that step
(``I[t] = I[t-1] + 1``); no spike decays ``I`` by ``1 - 1/tau``. It is a LIF membrane
that never fires, used as a read-out that counts spikes with a fading memory
(Diehl & Cook 2015; Gu et al. 2019; Lee et al. 2020).

With ``learnable=True`` the rate ``1/tau = sigmoid(w)`` is trained through a scalar
parameter ``w``, initialised to ``-ln(tau - 1)`` so that ``sigmoid(w) = 1/tau``
(SpikingJelly's parametrisation and parameter name: its ``state_dict`` loads).
The update is elementwise and runs as a loop over time in PyTorch.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from spikeflow._checks import check_flag
from spikeflow.base import MemoryModule, StepMode
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.layers._time import as_float_sequence

__all__ = ["SynapseFilter", "synapse_filter", "synapse_filter_step"]


def synapse_filter_step(x: Tensor, current: Tensor | float, inv_tau: Tensor | float) -> Tensor:
    """One step: ``I[t] = I[t-1] - (1 - x[t]) I[t-1] / tau + x[t]``.

    Args:
        x: the input of this step ``[B, ...]``.
        current: ``I[t-1]``.
        inv_tau: ``1/tau`` (a float, or a scalar tensor for a learnable rate).
    """
    return current - (1.0 - x) * current * inv_tau + x


def synapse_filter(
    x_seq: Tensor, inv_tau: Tensor | float, current: Tensor | float = 0.0
) -> tuple[Tensor, Tensor]:
    """Run :func:`synapse_filter_step` over ``x_seq`` (``[T, B, ...]``) from ``current``.

    Returns:
        ``(I_seq, I)``: the currents ``[T, B, ...]`` and the last one ``[B, ...]``.

    Raises:
        ShapeError: ``x_seq`` is 0-dim or has no time steps.
    """
    if x_seq.dim() == 0 or x_seq.shape[0] == 0:
        raise ShapeError(
            f"synapse_filter expects a sequence [T, B, ...] with T >= 1; got shape "
            f"{tuple(x_seq.shape)}"
        )
    out = []
    for x in x_seq.unbind(0):
        current = synapse_filter_step(x, current, inv_tau)
        out.append(current)
    seq = torch.stack(out)
    return seq, seq[-1]


class SynapseFilter(MemoryModule):
    """A synapse that low-pass filters its input (see the module docstring)::

        I[t] = I[t-1] - (1 - x[t]) I[t-1] / tau + x[t]

    The current starts at 0 at every multi-step call; it is carried between calls only
    while streaming (``node.out_i``), so single steps and chunks continue a sequence.

    **SpikingJelly**: ``layer.SynapseFilter(tau, learnable, step_mode)`` is
    ``SynapseFilter(tau, learnable, step_mode)`` in outputs and gradients (its default
    ``step_mode`` is ``'s'``, spikeflow's ``'m'``); the parameter ``w`` of a learnable
    filter has SpikingJelly's name and meaning.

    Args:
        tau: the time constant, in steps, ``> 1`` (default 100, SpikingJelly's). With
            ``learnable=True`` it is the initial value.
        learnable: train ``1/tau = sigmoid(w)`` (one scalar ``w`` for the layer).
        step_mode: ``'m'`` (``[T, B, ...]``, default) or ``'s'`` (``[B, ...]``).

    Raises:
        ConfigurationError: ``tau`` is not a finite number ``> 1``, ``learnable`` is
            not a bool.
        DTypeError: a non-floating-point input.
        ShapeError: a multi-step input without a time dimension, a scalar input.

    Example::

        >>> f = SynapseFilter(tau=2.0)
        >>> f(torch.tensor([[1.0], [0.0], [1.0]]))   # [T=3, B=1]: 1, 0.5, 1.5
    """

    def __init__(self, tau: float = 100.0, learnable: bool = False, step_mode: StepMode = "m"):
        super().__init__(step_mode)
        owner = type(self).__name__
        if (
            isinstance(tau, bool)
            or not isinstance(tau, (int, float))
            or not (math.isfinite(tau) and tau > 1)
        ):
            raise ConfigurationError(f"{owner}: tau must be a finite number > 1, got {tau!r}")
        self.learnable = check_flag(owner, "learnable", learnable)
        if self.learnable:
            # sigmoid(w) = 1 / (1 + e^{-w}) = 1 / tau  <=>  w = -ln(tau - 1)
            self.w = nn.Parameter(torch.as_tensor(-math.log(tau - 1.0)))
        else:
            self._tau = float(tau)

    @property
    def tau(self) -> float:
        """The time constant now (``1/sigmoid(w)`` for a learnable filter)."""
        if self.learnable:
            return float(1.0 / torch.sigmoid(self.w.detach()))
        return self._tau

    def inv_tau(self) -> Tensor | float:
        """``1/tau``: ``sigmoid(w)`` (with its gradient) if learnable, else a float."""
        return torch.sigmoid(self.w) if self.learnable else 1.0 / self._tau

    @property
    def out_i(self) -> Tensor | None:
        """The current carried to the next call (only while streaming)."""
        return None if self.state is None else self.state["out_i"]

    def forward(self, x: Tensor) -> Tensor:
        """The filtered current: ``[T, B, ...]`` in multi-step mode, one step ``[B, ...]``
        in single-step mode (inside streaming)."""
        x_seq = as_float_sequence(x, type(self).__name__, "a floating-point input", self.step_mode)
        state = self._carried_state(x_seq.shape[1:])
        start = 0.0 if state is None else state["out_i"]
        seq, last = synapse_filter(x_seq, self.inv_tau(), start)
        self._keep_state({"out_i": last})
        return seq if self.step_mode == "m" else seq[0]

    def extra_repr(self) -> str:
        return f"tau={self.tau:g}, learnable={self.learnable}, step_mode={self.step_mode!r}"
