"""Multi-threshold neurons (Huang, Fang et al., ICML 2025; methods.md 7.4).

One membrane ``v``, starting at 0, integrates ``v <- v + x`` every step and has ``k``
thresholds ``θ_j = θ/2^j`` (``j = 0..k-1``). Each step it fires at most one spike, of the
largest level it has charge for: the first ``j`` with ``v >= 0.75·θ_j`` (firing at 3/4
of a level rounds to the nearest power of two), and the spike carries ``θ_j``; the reset
is soft, ``v <- v - θ_j``. A neuron that fires ``θ/2^j`` resolves ``θ/2^(k-1)`` in one step
where an IF neuron needs ``2^(k-1)`` steps, so the rate code is precise at small T.

With ``signed=True`` it may also fire a negative spike ``-θ_j`` (the first ``j`` with
``v <= -0.75·θ_j``), but only while its output so far is at least ``θ_j``, so that the
summed output never goes below 0: this corrects an overshoot, as the authors'
``MTH_with_neg``.

These follow the authors' code (h-z-h-cell/ANN-to-SNN-DCGS, ``MTH`` and
``MTH_with_neg``); the tests check them against a loop written from the rule above.
"""

from __future__ import annotations

import torch
from torch import Tensor

from spikeflow.base import MemoryModule, StepMode
from spikeflow.conversion._checks import (
    check_positive_int,
    current_sequence,
    store_threshold,
    threshold_repr,
)

__all__ = ["MultiThresholdNeuron", "largest_level", "threshold_levels"]


def threshold_levels(theta: Tensor, thresholds: int, like: Tensor) -> Tensor:
    """The levels ``θ/2^j``, ``[k, 1, ..., 1]`` (or ``[k, *θ.shape]``) to broadcast against a
    step ``like``, in its dtype."""
    powers = 2.0 ** torch.arange(thresholds, dtype=like.dtype, device=like.device)
    return theta.to(like.dtype) / powers.view((thresholds,) + (1,) * like.dim())


def largest_level(charge: Tensor, levels: Tensor, allowed: Tensor | None = None) -> Tensor:
    """``θ_j`` of the first ``j`` with ``charge >= 0.75·θ_j`` (and ``allowed[j]``), else 0.

    ``levels`` is ``[k, ...]`` (broadcast against ``charge``), largest first."""
    reached = charge.unsqueeze(0) >= 0.75 * levels
    if allowed is not None:
        reached = reached & allowed
    # reached is monotone in j (the levels fall), so the first true index is the count
    # of false ones; k false ones means no spike.
    first = (~reached).sum(0, keepdim=True)
    padded = torch.cat(
        [levels.expand(reached.shape), torch.zeros_like(reached[:1], dtype=levels.dtype)]
    )
    return padded.gather(0, first).squeeze(0)


class MultiThresholdNeuron(MemoryModule):
    """A neuron with thresholds ``θ, θ/2, ..., θ/2^(k-1)`` that fires at most one spike of
    the largest level it has charge for each step (inference only; see the module
    docstring).

    Args:
        v_threshold: θ of the neuron it replaces (float, or a tensor broadcastable to one
            step, e.g. ``[C, 1, 1]``).
        thresholds: k, the number of levels (default 8, as the authors').
        signed: also fire negative spikes to undo an overshoot (``MTH_with_neg``).
        step_mode: ``'m'`` (``[T, B, ...]``, default) or ``'s'`` (``[B, ...]``, streaming).
    """

    def __init__(
        self,
        v_threshold: float | Tensor = 1.0,
        thresholds: int = 8,
        signed: bool = False,
        step_mode: StepMode = "m",
    ) -> None:
        super().__init__(step_mode)
        self.thresholds = check_positive_int(thresholds, "thresholds (k)")
        store_threshold(self, v_threshold, "MultiThresholdNeuron")
        self.signed = bool(signed)

    def forward(self, x: Tensor) -> Tensor:
        """The spikes' values: ``[T, B, ...]`` in multi-step mode, ``[B, ...]`` in single-step."""
        x_seq = current_sequence(x, "MultiThresholdNeuron", self.step_mode)
        theta = torch.as_tensor(self.v_threshold, dtype=x_seq.dtype, device=x_seq.device)
        levels = threshold_levels(theta, self.thresholds, x_seq[0])
        state = self._carried_state(x_seq.shape[1:])
        if state is None:
            v, total = torch.zeros_like(x_seq[0]), torch.zeros_like(x_seq[0])
        else:
            v, total = state["v"], state["total"]
        out = []
        for x_t in x_seq.unbind(0):
            v = v + x_t
            spike = largest_level(v, levels)
            if self.signed:
                allowed = total.unsqueeze(0) >= levels
                spike = spike - largest_level(-v, levels, allowed)
            v = v - spike
            total = total + spike
            out.append(spike)
        self._keep_state({"v": v, "total": total})
        spikes = torch.stack(out)
        return spikes if self.step_mode == "m" else spikes[0]

    def extra_repr(self) -> str:
        return (
            f"v_threshold={threshold_repr(self.v_threshold)}, thresholds={self.thresholds}, "
            f"signed={self.signed}, step_mode={self.step_mode!r}"
        )
