"""Dropout whose mask is drawn once per sequence and shared by all its time steps.

Drawing a new mask at every step (``nn.Dropout`` applied per step) would inject noise
into the membrane dynamics at every step; spiking networks instead drop the same
units for a whole sequence (as in SpikingJelly and the SNN literature). Here:

* multi-step (``[T, B, ...]``): one mask of shape ``[1, B, ...]`` (``Dropout2d``:
  ``[1, B, C, 1, 1]``) multiplies every step;
* single-step (``[B, ...]``, streaming): the mask is carried state, so every step of a
  sequence uses the same mask, and a reset draws a new one at the next call.

Kept values are scaled by ``1/(1 − p)`` in training; in eval mode the layers are the
identity.
"""

from __future__ import annotations

import torch
from torch import Tensor

from spikeflow.base import MemoryModule, StepMode
from spikeflow.layers._checks import check_real
from spikeflow.layers._time import STEP_2D, check_step_dims

__all__ = ["Dropout", "Dropout2d"]


class _SequenceDropout(MemoryModule):
    """Shared logic; subclasses give the step layout and the mask shape of one step."""

    step_layout: str
    step_ndim: tuple[int, int | None]

    def __init__(self, p: float, step_mode: StepMode = "m") -> None:
        super().__init__(step_mode)
        self.p = check_real("p", p, 0.0, 1.0, high_open=True)

    def _mask_shape(self, step_shape: torch.Size) -> tuple[int, ...]:
        raise NotImplementedError

    def _draw_mask(self, step: Tensor) -> Tensor:
        """A mask for one step like ``step``: 0 with probability p, else 1/(1 − p)."""
        keep = 1.0 - self.p
        mask = torch.empty(self._mask_shape(step.shape), dtype=step.dtype, device=step.device)
        return mask.bernoulli_(keep).div_(keep)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` times the sequence's mask in training; ``x`` itself in eval mode."""
        check_step_dims(x, type(self).__name__, self.step_layout, self.step_ndim, self.step_mode)
        step_shape = x.shape[1:] if self.step_mode == "m" else x.shape
        state = self._carried_state(step_shape)
        if not self.training or self.p == 0.0:
            return x
        if state is None:
            mask = self._draw_mask(x[0] if self.step_mode == "m" else x)
        else:
            mask = state["mask"]
        self._keep_state({"mask": mask})
        return x * (mask.unsqueeze(0) if self.step_mode == "m" else mask)

    def extra_repr(self) -> str:
        return f"p={self.p}, step_mode={self.step_mode}"


class Dropout(_SequenceDropout):
    """Element-wise dropout with one mask per sequence, shared by all time steps.

    Multi-step input ``[T, B, ...]`` is multiplied by a mask ``[1, B, ...]`` whose
    entries are 0 with probability ``p`` and ``1/(1 − p)`` otherwise; different samples
    get different masks. Single-step input ``[B, ...]`` (streaming) reuses the mask of
    the sequence from the carried state until a reset. Identity in eval mode.

    Args:
        p: drop probability, in ``[0, 1)``.
        step_mode: ``'m'`` (default) or ``'s'``.

    Raises:
        ConfigurationError: ``p`` is not in ``[0, 1)``.
    """

    step_layout, step_ndim = "[B, ...]", (1, None)

    def __init__(self, p: float = 0.5, step_mode: StepMode = "m") -> None:
        super().__init__(p, step_mode)

    def _mask_shape(self, step_shape: torch.Size) -> tuple[int, ...]:
        return tuple(step_shape)


class Dropout2d(_SequenceDropout):
    """Channel dropout with one mask per sequence, shared by all time steps.

    Like :class:`Dropout`, but whole channels are dropped: the mask of multi-step input
    ``[T, B, C, H, W]`` has shape ``[1, B, C, 1, 1]``.

    Args:
        p: probability of dropping a channel, in ``[0, 1)``.
        step_mode: ``'m'`` (input ``[T, B, C, H, W]``, default) or ``'s'``
            (``[B, C, H, W]``).

    Raises:
        ConfigurationError: ``p`` is not in ``[0, 1)``.
    """

    step_layout, step_ndim = STEP_2D

    def __init__(self, p: float = 0.2, step_mode: StepMode = "m") -> None:
        super().__init__(p, step_mode)

    def _mask_shape(self, step_shape: torch.Size) -> tuple[int, ...]:
        return (step_shape[0], step_shape[1]) + (1,) * (len(step_shape) - 2)
