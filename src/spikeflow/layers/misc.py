"""Output voting and synaptic delay."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from spikeflow.base import MemoryModule, StepMode, check_step_mode
from spikeflow.errors import ShapeError
from spikeflow.layers._checks import check_int
from spikeflow.layers._time import check_step_dims

__all__ = ["Delay", "VotingLayer"]


class VotingLayer(nn.Module):
    """Average groups of ``voting_size`` consecutive neurons: ``[..., N*vs]`` → ``[..., N]``.

    A population of ``voting_size`` output neurons votes for each class; the output for
    class ``n`` is the mean of neurons ``n*vs`` to ``n*vs + vs − 1`` of the last dim.
    It is stateless and works on any leading dims (``[T, B, N*vs]`` or ``[B, N*vs]``).

    Args:
        voting_size: neurons per group (``vs``), at least 1.
        step_mode: ``'m'`` or ``'s'``, accepted for SpikingJelly's signature; the layer
            is the same in both.

    Raises:
        ConfigurationError: ``voting_size`` is not a positive integer, or a
            ``step_mode`` other than ``'m'`` and ``'s'``.
        ShapeError: the last dim is not a multiple of ``voting_size``.

    Example::

        >>> VotingLayer(2)(torch.tensor([1.0, 0.0, 1.0, 1.0]))
        tensor([0.5000, 1.0000])
    """

    def __init__(self, voting_size: int = 10, step_mode: StepMode = "m") -> None:
        super().__init__()
        self.voting_size = check_int("voting_size", voting_size, 1)
        check_step_mode(step_mode)

    def forward(self, x: Tensor) -> Tensor:
        """The mean over each group of ``voting_size`` neurons of the last dim."""
        if x.dim() == 0 or x.shape[-1] % self.voting_size != 0:
            raise ShapeError(
                f"VotingLayer(voting_size={self.voting_size}) needs a last dim that is a "
                f"multiple of {self.voting_size}; got shape {tuple(x.shape)}"
            )
        return x.unflatten(-1, (-1, self.voting_size)).mean(dim=-1)

    def extra_repr(self) -> str:
        return f"voting_size={self.voting_size}"


class Delay(MemoryModule):
    """Delay a sequence by ``k`` steps: ``y[t] = x[t − k]``, and ``y[t] = 0`` for ``t < k``.

    ``k = 0`` is the identity. The last ``k`` inputs are carried state (a queue of shape
    ``[k, B, ...]``): while streaming, single-step calls and chunked multi-step calls
    continue the sequence, so they give the same output as one long call. Without
    streaming each multi-step call starts from an empty (all-zero) queue.

    Args:
        delay_steps: ``k``, an integer ``>= 0``.
        step_mode: ``'m'`` (``[T, B, ...]``, default) or ``'s'`` (``[B, ...]``).

    Raises:
        ConfigurationError: ``delay_steps`` is not a non-negative integer.

    Example::

        >>> Delay(2)(torch.tensor([[1.0], [2.0], [3.0], [4.0]]))   # [T=4, B=1]
        tensor([[0.], [0.], [1.], [2.]])
    """

    def __init__(self, delay_steps: int, step_mode: StepMode = "m") -> None:
        super().__init__(step_mode)
        self.delay_steps = check_int("delay_steps", delay_steps, 0)

    @property
    def temporal_only(self) -> str:
        """Why the input reaches the output only through carried state ('' if it does
        not): online training (SLTT) passes no gradient through such a module."""
        return f"outputs its input {self.delay_steps} step(s) later" if self.delay_steps else ""

    def forward(self, x: Tensor) -> Tensor:
        """``x`` delayed by ``delay_steps`` steps (``[T, B, ...]`` or one step ``[B, ...]``)."""
        check_step_dims(x, type(self).__name__, "[B, ...]", (1, None), self.step_mode)
        seq = x if self.step_mode == "m" else x.unsqueeze(0)
        state = self._carried_state(seq.shape[1:])
        k = self.delay_steps
        if k == 0:
            return x
        queue = seq.new_zeros(k, *seq.shape[1:]) if state is None else state["queue"]
        buffer = torch.cat([queue, seq])
        n = seq.shape[0]
        self._keep_state({"queue": buffer[n:]})
        y = buffer[:n]
        return y if self.step_mode == "m" else y[0]

    def extra_repr(self) -> str:
        return f"delay_steps={self.delay_steps}, step_mode={self.step_mode}"
