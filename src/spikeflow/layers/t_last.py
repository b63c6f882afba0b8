"""Containers for time-last sequences ``[B, ..., T]`` (SpikingJelly's ``TLast*``).

Some data keep time as the last dim (audio features ``[B, C, T]``, a 1-d convolution
over time). :class:`TLastMultiStepContainer` and :class:`TLastSeqToANNContainer` are
:class:`~spikeflow.layers.MultiStepContainer` and
:class:`~spikeflow.layers.SeqToANNContainer` for that layout: the input ``[B, ..., T]``
is viewed as ``[T, B, ...]``, run through the container, and the output gets its time
dim back in last place. The function forms are
:func:`spikeflow.functional.t_last_multi_step_forward` and
:func:`~spikeflow.functional.t_last_seq_to_ann_forward`.
"""

from __future__ import annotations

from torch import Tensor

from spikeflow.functional import _time_back, _time_last
from spikeflow.layers.containers import MultiStepContainer, SeqToANNContainer

__all__ = ["TLastMultiStepContainer", "TLastSeqToANNContainer"]


class TLastMultiStepContainer(MultiStepContainer):
    """Run per-step modules step by step over a time-last sequence ``[B, ..., T]``.

    For every ``t`` the modules run in order on ``x[..., t]``; the outputs are stacked
    along the last dim. State as in :class:`~spikeflow.layers.MultiStepContainer`:
    each call starts from the initial state unless the modules are streaming.

    Args:
        *modules: per-step modules (torch layers, or spikeflow modules with
            ``step_mode='s'``).

    Raises:
        ShapeError: the input has fewer than 2 dims, or no time steps (``T = 0``).
        ConfigurationError: a spikeflow module inside is in multi-step mode.

    Example::

        >>> lif = TLastMultiStepContainer(LIFNode(step_mode="s"))
        >>> lif(torch.rand(4, 100, 8)).shape            # [B, N, T]
        torch.Size([4, 100, 8])
    """

    def forward(self, x: Tensor) -> Tensor:
        """``[B, ..., T]`` → ``[B, ..., T]``, the modules called once per step."""
        return _time_back(super().forward(_time_last(x, type(self).__name__, per_step=True)))


class TLastSeqToANNContainer(SeqToANNContainer):
    """Apply stateless modules to a time-last sequence ``[B, ..., T]``, time folded
    into the batch (one call on ``[T*B, ...]``).

    Equal to applying the modules to every ``x[..., t]``, except batch norm in training
    mode, which normalises over all ``T*B`` samples. A tuple output (e.g. a max pool's
    values and indices) gets the time dim back on each tensor.

    Args:
        *modules: per-step stateless modules.

    Raises:
        ShapeError: the input has fewer than 2 dims.
        ConfigurationError: a module carries state or is in multi-step mode.

    Example::

        >>> conv = TLastSeqToANNContainer(nn.Conv1d(2, 8, 3, padding=1))
        >>> conv(torch.rand(4, 2, 50, 8)).shape         # [B, C, L, T]
        torch.Size([4, 8, 50, 8])
    """

    def forward(self, x: Tensor) -> Tensor:
        """``[B, ..., T]`` → ``[B, ..., T]``, the modules run once on ``[T*B, ...]``."""
        return _time_back(super().forward(_time_last(x, type(self).__name__)))
