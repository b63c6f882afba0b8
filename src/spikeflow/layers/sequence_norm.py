"""Sequence versions of the torch normalisation layers (see :mod:`spikeflow.layers.sequence`).

In multi-step mode the input ``[T, B, ...]`` is folded to ``[T*B, ...]``, so in training
mode the batch norms here normalise each channel with statistics over all time steps,
samples and spatial positions (``T*B*H*W`` values for ``BatchNorm2d``), and update the
running statistics once per call. In eval mode (running statistics) and for the
per-sample norms (``GroupNorm``, ``LayerNorm``) the output equals applying the torch
layer to each step separately.
"""

from __future__ import annotations

from torch import nn

from spikeflow.layers._time import STEP_2D, STEP_3D
from spikeflow.layers.sequence import SequenceLayerMixin

__all__ = ["BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "GroupNorm", "LayerNorm"]


class BatchNorm1d(SequenceLayerMixin, nn.BatchNorm1d):
    """:class:`torch.nn.BatchNorm1d` over a sequence; one step is ``[B, C]`` or ``[B, C, L]``."""

    step_layout, step_ndim = "[B, C] or [B, C, L]", (2, 3)


class BatchNorm2d(SequenceLayerMixin, nn.BatchNorm2d):
    """:class:`torch.nn.BatchNorm2d` over a sequence; one step is ``[B, C, H, W]``."""

    step_layout, step_ndim = STEP_2D


class BatchNorm3d(SequenceLayerMixin, nn.BatchNorm3d):
    """:class:`torch.nn.BatchNorm3d` over a sequence; one step is ``[B, C, D, H, W]``."""

    step_layout, step_ndim = STEP_3D


class GroupNorm(SequenceLayerMixin, nn.GroupNorm):
    """:class:`torch.nn.GroupNorm` over a sequence; one step is ``[B, C, ...]``.

    Group norm is per sample, so the output equals applying it to each step.
    """

    step_layout, step_ndim = "[B, C, ...]", (2, None)


class LayerNorm(SequenceLayerMixin, nn.LayerNorm):
    """:class:`torch.nn.LayerNorm` over a sequence; one step is ``[B, ..., *normalized_shape]``.

    Layer norm is per sample, so the output equals applying it to each step.
    """

    def _step_dims(self) -> tuple[str, tuple[int, int | None]]:
        shape = ", ".join(str(n) for n in self.normalized_shape)
        return f"[B, ..., {shape}]", (1 + len(self.normalized_shape), None)
