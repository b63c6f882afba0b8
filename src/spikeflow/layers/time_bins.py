"""Spike counts as binary events and back (SpikingJelly's ``SpikeCountToBinary`` and
``TemporalBinSum``).

A neuron that emits an integer number of spikes per step (a count ``c`` in
``[0, K]``, e.g. a multi-level or integer LIF neuron) can run on hardware that only
takes binary events if every step is split into ``K`` slots:

* :class:`SpikeCountToBinary` (``K = num_slots``) turns ``[T, B, ...]`` counts into
  ``[T*K, B, ...]`` binary events, slot ``k`` of step ``t`` firing iff ``k < c[t]``;
* a bias-free synapse (linear, convolution) runs on the ``T*K`` binary steps;
* :class:`TemporalBinSum` (same ``K``) sums each run of ``K`` steps back to ``T``.

For a bias-free linear synapse the result equals the synapse applied to the counts,
forward and backward: the expansion's straight-through gradient gives each slot
``1/K`` of the count's gradient, so the count gets the mean of its slots' gradients,
which the sum of ``K`` identical weight products turns back into the synapse's own.
Bias, normalisation and nonlinearities go after :class:`TemporalBinSum`. By default both
layers convert only in eval mode (training runs on the counts directly);
``always_convert=True`` converts in training too.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from spikeflow.base import SequenceOnly, check_time_major
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.layers._checks import check_int

__all__ = ["SpikeCountToBinary", "TemporalBinSum"]


class _Bins(SequenceOnly, nn.Module):
    """``num_slots`` and ``always_convert``, and the input check."""

    sequence_reason = "it changes the number of time steps"

    def __init__(self, num_slots: int, always_convert: bool = False) -> None:
        super().__init__()
        self.num_slots = check_int(f"{type(self).__name__}: num_slots", num_slots, 1)
        if not isinstance(always_convert, bool):
            raise ConfigurationError(
                f"{type(self).__name__}: always_convert must be True or False, "
                f"got {always_convert!r}"
            )
        self.always_convert = always_convert

    def _converts(self, x_seq: Tensor) -> bool:
        """Whether this call converts; checks the input if it does."""
        if not self.always_convert and self.training:
            return False
        name = type(self).__name__
        if not isinstance(x_seq, Tensor) or not x_seq.is_floating_point():
            what = x_seq.dtype if isinstance(x_seq, Tensor) else type(x_seq).__name__
            raise DTypeError(f"{name} expects a floating-point tensor, got {what}")
        check_time_major(x_seq, name, single_step=False)
        if x_seq.shape[0] == 0:
            raise ShapeError(f"{name}: the input has no time steps, shape {tuple(x_seq.shape)}")
        return True

    def extra_repr(self) -> str:
        return f"num_slots={self.num_slots}, always_convert={self.always_convert}"


class SpikeCountToBinary(_Bins):
    """Spike counts ``[T, B, ...]`` → binary events ``[T*K, B, ...]``, ``K = num_slots``.

    Step ``t`` with count ``c`` (an integer in ``[0, K]``) becomes ``K`` steps
    ``t*K + k`` that are 1 for ``k < c`` and 0 after. The gradient is straight-through:
    each slot passes ``1/K`` of its gradient to the count (module docstring). In training
    mode the input is returned as it is unless ``always_convert=True``.

    Args:
        num_slots: ``K``, binary slots per step (>= 1), the largest count.
        always_convert: also convert in training mode (default False).

    Raises:
        ConfigurationError: a bad argument, or (when converting) a count that is not an
            integer in ``[0, num_slots]``.
        DTypeError, ShapeError: (when converting) an input that is not a floating-point
            ``[T, B, ...]`` tensor with ``T >= 1``.

    Example::

        >>> SpikeCountToBinary(3, always_convert=True)(torch.tensor([[2.0], [0.0]]))
        tensor([[1.], [1.], [0.], [0.], [0.], [0.]])
    """

    def forward(self, x_seq: Tensor) -> Tensor:
        """The binary events ``[T*K, B, ...]`` (eval mode or ``always_convert``), else
        ``x_seq``."""
        if not self._converts(x_seq):
            return x_seq
        k = self.num_slots
        bad = (x_seq < 0) | (x_seq > k) | (x_seq != x_seq.round())
        if bool(bad.any()):
            value = x_seq[bad][0].item()
            raise ConfigurationError(
                f"SpikeCountToBinary(num_slots={k}) takes integer spike counts in [0, {k}], "
                f"got {value!r}"
            )
        counts = x_seq.unsqueeze(1)  # [T, 1, B, ...]
        slots = torch.arange(k, device=x_seq.device).view(1, k, *([1] * (x_seq.dim() - 1)))
        events = (slots < counts).to(x_seq.dtype)
        share = counts / k  # the straight-through part: value 0, gradient 1/K per slot
        return (events + (share - share.detach())).flatten(0, 1)


class TemporalBinSum(_Bins):
    """Sum each run of ``K = num_slots`` steps: ``[T, B, ...]`` → ``[ceil(T/K), B, ...]``.

    Output step ``i`` is ``x[i*K] + ... + x[i*K + K − 1]``; an incomplete last run is
    padded with zeros. The inverse of :class:`SpikeCountToBinary` after a bias-free
    synapse (module docstring). In training mode the input is returned as it is unless
    ``always_convert=True``; inside streaming each call must hold whole runs.

    Args:
        num_slots: ``K``, steps per output step (>= 1).
        always_convert: also sum in training mode (default False).

    Raises:
        ConfigurationError: a bad argument.
        DTypeError, ShapeError: (when summing) an input that is not a floating-point
            ``[T, B, ...]`` tensor with ``T >= 1``.

    Example::

        >>> TemporalBinSum(2, always_convert=True)(torch.tensor([[1.0], [2.0], [4.0]]))
        tensor([[3.], [4.]])
    """

    def forward(self, x_seq: Tensor) -> Tensor:
        """The sums ``[ceil(T/K), B, ...]`` (eval mode or ``always_convert``), else
        ``x_seq``."""
        if not self._converts(x_seq):
            return x_seq
        k = self.num_slots
        missing = -x_seq.shape[0] % k
        if missing:
            x_seq = torch.cat([x_seq, x_seq.new_zeros(missing, *x_seq.shape[1:])])
        return x_seq.unflatten(0, (-1, k)).sum(dim=1)
