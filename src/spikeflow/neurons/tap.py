"""A pass-through layer for spikes that a network computes in its own loop.

Tools that watch a network's spiking layers (:class:`~spikeflow.training.SpikeMonitor`:
firing rates and spikes per sample; :func:`spikeflow.plot.record` and the training
raster; :class:`~spikeflow.losses.LayerSpikes`) hook the forward calls of spikeflow's
neuron layers (:data:`~spikeflow.training.monitors.SPIKING_LAYER_TYPES`). A network
whose neurons are equations of its own loop, not such layers (Bellec et al.'s
:class:`~spikeflow.learn.EPropRSNN`), passes its spikes through a :class:`SpikeTap`,
one of those types, so that the same hooks see them. A network stepped one call at a time
passes each step's spikes with :meth:`SpikeTap.pass_step`, which tells the hooks that
count sequences (:meth:`SpikeTap.continues_sequence`) whether the step starts one.
"""

from __future__ import annotations

from math import prod
from typing import ClassVar

from torch import Tensor, nn

from spikeflow._checks import check_int
from spikeflow.errors import ShapeError

__all__ = ["SpikeTap"]


class SpikeTap(nn.Module):
    """The identity on the spikes ``[T, B, ...]`` of ``neurons`` neurons (per sample and
    step) that its owner computed: it returns the same tensor (gradient included), so
    that hooks on it see the spikes (module docstring). No parameters, no state.

    Args:
        neurons: the number of neurons whose spikes pass (checked at each call).

    Raises:
        ShapeError: a call with anything but a ``[T, B, ...]`` tensor of ``neurons``
            values per sample and step.
    """

    #: It returns spikes (what the monitors count).
    output_is_spikes: ClassVar[bool] = True

    def __init__(self, neurons: int) -> None:
        super().__init__()
        self.neurons = check_int("SpikeTap: neurons", neurons, 1)
        self._continues = False

    def continues_sequence(self) -> bool:
        """Whether the call in progress continues a sequence its owner passed earlier (a
        later step of :meth:`pass_step`) rather than starting one: what the forward
        pre-hooks that count sequences ask (:class:`~spikeflow.training.SpikeMonitor`
        counts a sequence's samples once, :class:`~spikeflow.losses.LayerSpikes` keeps
        a sequence's steps together). A plain call starts one."""
        return self._continues

    def pass_step(self, spikes: Tensor, continues: bool) -> Tensor:
        """Pass the spikes ``[1, B, ...]`` of one step, as a call does, telling the hooks
        whether the step continues the sequence of the previous call (``continues``) or
        starts one (:meth:`continues_sequence`)."""
        self._continues = bool(continues)
        try:
            return self(spikes)
        finally:
            self._continues = False

    def forward(self, spikes: Tensor) -> Tensor:
        """``spikes`` ``[T, B, ...]`` (``neurons`` values per step of a sample), as given."""
        if (
            not isinstance(spikes, Tensor)
            or spikes.dim() < 3
            or prod(spikes.shape[2:]) != self.neurons
        ):
            shape = tuple(spikes.shape) if isinstance(spikes, Tensor) else type(spikes).__name__
            raise ShapeError(
                f"SpikeTap: expected the spikes [T, B, ...] of {self.neurons} neurons, got {shape}"
            )
        return spikes

    def extra_repr(self) -> str:
        return f"neurons={self.neurons}"
