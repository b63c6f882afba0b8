"""Group neurons (Lv, Fang, Yuan, Tian, ICASSP 2024; methods.md 7.3).

A group of ``m`` members shares one membrane ``v``, which starts at
``initial_membrane · θ/m`` (0.5·θ/m in the paper) and integrates ``v ← v + x`` every
step. Member ``i`` (``i = 1..m``) fires when ``v ≥ i·θ/m``; the count ``c = Σ_i s_i`` is
in ``{0..m}``, the reset is soft, ``v ← v - c·θ/m``, and the output is ``c·θ/m``. The
group is an IF neuron of threshold ``θ/m`` that may fire up to ``m`` spikes per step: in
``T`` steps it resolves ``T·m`` levels instead of ``T`` (with constant input its mean
output is QCFS with ``L = T·m``), which is what helps at ``T = 2..4``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from spikeflow.base import MemoryModule, StepMode
from spikeflow.conversion._checks import (
    check_initial_membrane,
    check_positive_int,
    current_sequence,
    store_threshold,
    threshold_repr,
)

__all__ = ["GroupNeuron"]


class GroupNeuron(MemoryModule):
    """``m`` IF members with thresholds ``i·θ/m`` on one shared membrane (inference only).

    Args:
        v_threshold: θ of the neuron it replaces (float, or a tensor broadcastable to one
            step, e.g. ``[C, 1, 1]``).
        members: m, the group size (default 4, as the authors' CLI).
        initial_membrane: ``V[0]`` in units of ``θ/m`` (default 0.5, as the paper).
        step_mode: ``'m'`` (``[T, B, ...]``, default) or ``'s'`` (``[B, ...]``, streaming).
    """

    def __init__(
        self,
        v_threshold: float | Tensor = 1.0,
        members: int = 4,
        initial_membrane: float = 0.5,
        step_mode: StepMode = "m",
    ) -> None:
        super().__init__(step_mode)
        members = check_positive_int(members, "members (m)")
        store_threshold(self, v_threshold, "GroupNeuron")
        self.members = members
        self.initial_membrane = check_initial_membrane(initial_membrane)

    @property
    def unit(self) -> Tensor | float:
        """``θ/m``: the lowest member threshold and the value of one spike."""
        return self.v_threshold / self.members

    def forward(self, x: Tensor) -> Tensor:
        """Output ``c·θ/m``: ``[T, B, ...]`` in multi-step mode, ``[B, ...]`` in single-step."""
        x_seq = current_sequence(x, "GroupNeuron", self.step_mode)
        # θ/m in the input's dtype, as the other neurons: a float32 θ would promote a
        # float16 membrane and output (a 0-d θ does not; a per-channel one did).
        unit = torch.as_tensor(self.unit, dtype=x_seq.dtype, device=x_seq.device)
        state = self._carried_state(x_seq.shape[1:])
        if state is None:
            v = torch.zeros_like(x_seq[0]) + self.initial_membrane * unit
        else:
            v = state["v"]
        counts = []
        for x_t in x_seq.unbind(0):
            v = v + x_t
            count = torch.zeros_like(v)
            for i in range(1, self.members + 1):
                count = count + (v >= i * unit).to(v.dtype)
            v = v - count * unit
            counts.append(count)
        self._keep_state({"v": v})
        out = torch.stack(counts) * unit
        return out if self.step_mode == "m" else out[0]

    def extra_repr(self) -> str:
        return (
            f"v_threshold={threshold_repr(self.v_threshold)}, members={self.members}, "
            f"initial_membrane={self.initial_membrane:g}, step_mode={self.step_mode!r}"
        )
