"""``nn.Module`` layers for the adjoint (EventProp) neurons of
:mod:`spikeflow.learn.adjoint_refrac`, :mod:`spikeflow.learn.adjoint_lsnn` and
:mod:`spikeflow.learn.adjoint_coba`, as :class:`~spikeflow.learn.EventPropLIF` is for
:func:`~spikeflow.learn.lif_recurrent_adjoint`: input weights (and optional recurrent
weights) as parameters, the whole sequence ``[T, B, in_features] -> [T, B,
out_features]`` in one call, gradients by the adjoint's backward loop. The input's
gradient is the spike-count derivative ``λJ W_in`` (the current's adjoint times
``W_in``; no ``spike_input`` option: the spike-time derivative that
:class:`~spikeflow.learn.EventPropLIF` can hand back to an EventProp layer before it is
not built for these neurons)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from spikeflow._checks import check_flag, check_int
from spikeflow.learn._adjoint_common import check_sequence, check_weight, layer_weights
from spikeflow.learn.adjoint_coba import (
    COBA_DEFAULTS,
    CobaLIFAdjointParameters,
    _check_coba,
    coba_lif_adjoint,
)
from spikeflow.learn.adjoint_lsnn import (
    LSNN_DEFAULTS,
    LSNNAdjointParameters,
    _check_lsnn,
    lsnn_adjoint,
)
from spikeflow.learn.adjoint_refrac import (
    REFRAC_DEFAULTS,
    LIFRefracAdjointParameters,
    _check_refrac,
    lif_refrac_adjoint,
)
from spikeflow.learn.eventprop_parameters import _check_jumps

__all__ = ["EventPropCobaLIF", "EventPropLSNN", "EventPropRefracLIF"]


class _AdjointLayer(nn.Module):
    """Shared set-up: counts, weights drawn from ``N(0, weight_scale² · 2/fan_in)``."""

    #: ``forward`` always starts from the resting state.
    streamable = False

    def __init__(
        self, in_features: int, out_features: int, recurrent: bool, weight_scale: float
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.in_features = check_int(f"{owner}: in_features", in_features, 1)
        self.out_features = check_int(f"{owner}: out_features", out_features, 1)
        self.recurrent = check_flag(owner, "recurrent", recurrent)
        self.input_weights, self.recurrent_weights = layer_weights(
            owner, in_features, out_features, self.recurrent, weight_scale
        )

    def _run(self, x: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def forward(self, x: Tensor, return_voltage: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """Spikes ``[T, B, out_features]`` of ``x`` ``[T, B, in_features]`` (and ``v``)."""
        spikes, v = self._run(x)
        return (spikes, v) if return_voltage else spikes

    def extra_repr(self) -> str:
        fields = ", ".join(f"{k}={v}" for k, v in self._parameters_repr())
        return f"{self.in_features}, {self.out_features}, recurrent={self.recurrent}, {fields}"

    def _parameters_repr(self) -> list[tuple[str, object]]:
        raise NotImplementedError


class EventPropRefracLIF(_AdjointLayer):
    """A Linear -> refractory current-based LIF layer trained by EventProp: Norse's
    ``LIFRefracCell`` / ``LIFRefracRecurrentCell`` over the whole sequence with
    :func:`~spikeflow.learn.lif_refrac_adjoint`'s gradients.

    Args:
        in_features: inputs per step.
        out_features: neurons.
        recurrent: add recurrent weights ``W_rec`` (``z[t-1]`` reaches ``J[t]``; default False).
        p: the parameters (default Norse's ``LIFRefracParameters()``, ``dt = 1e-3``).
        jumps: ``"eventprop"`` (default) or ``"norse"``.
        weight_scale: weights from ``N(0, weight_scale² · 2/in_features)`` (``W_rec``:
            ``2/out_features``); default 1.

    ``forward(x)`` returns the spikes, ``forward(x, return_voltage=True)`` the spikes and ``v``.

    Raises:
        ConfigurationError: a count below 1, bad parameters or ``jumps``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        recurrent: bool = False,
        p: LIFRefracAdjointParameters = REFRAC_DEFAULTS,
        jumps: str = "eventprop",
        weight_scale: float = 1.0,
    ) -> None:
        super().__init__(in_features, out_features, recurrent, weight_scale)
        self.p = _check_refrac(type(self).__name__, p)
        self.jumps = _check_jumps(type(self).__name__, jumps)

    def _run(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return lif_refrac_adjoint(x, self.p, self.input_weights, self.recurrent_weights, self.jumps)

    def _parameters_repr(self) -> list[tuple[str, object]]:
        return [
            ("jumps", repr(self.jumps)),
            ("rho_reset", self.p.rho_reset),
            *self.p.lif._asdict().items(),
        ]


class EventPropLSNN(_AdjointLayer):
    """A Linear -> LSNN layer (adaptive threshold) trained by EventProp: Norse's
    ``LSNNCell`` / ``LSNNRecurrentCell`` over the whole sequence with
    :func:`~spikeflow.learn.lsnn_adjoint`'s gradients.

    Args:
        in_features: inputs per step.
        out_features: neurons.
        recurrent: add recurrent weights ``W_rec`` (``z[t-1]`` reaches ``i[t]``; default False).
        p: the parameters (default Norse's ``LSNNParameters()``, ``dt = 1e-3``).
        jumps: ``"eventprop"`` (default) or ``"norse"``.
        weight_scale: as :class:`EventPropRefracLIF`.

    ``forward(x)`` returns the spikes, ``forward(x, return_voltage=True)`` the spikes and ``v``.

    Raises:
        ConfigurationError: a count below 1, bad parameters or ``jumps``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        recurrent: bool = False,
        p: LSNNAdjointParameters = LSNN_DEFAULTS,
        jumps: str = "eventprop",
        weight_scale: float = 1.0,
    ) -> None:
        super().__init__(in_features, out_features, recurrent, weight_scale)
        self.p = _check_lsnn(type(self).__name__, p)
        self.jumps = _check_jumps(type(self).__name__, jumps)

    def _run(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return lsnn_adjoint(x, self.p, self.input_weights, self.recurrent_weights, self.jumps)

    def _parameters_repr(self) -> list[tuple[str, object]]:
        return [("jumps", repr(self.jumps)), *self.p._asdict().items()]


class EventPropCobaLIF(_AdjointLayer):
    """A Linear -> conductance-based LIF layer trained by EventProp: Norse's
    ``CobaLIFFeedForward`` drive (``W_in x[t]``: its positive part excitatory, its
    negative part inhibitory) over the whole sequence with
    :func:`~spikeflow.learn.coba_lif_adjoint`'s gradients. Feed-forward only.

    Args:
        in_features: inputs per step.
        out_features: neurons.
        p: the parameters (default Norse's ``CobaLIFParameters()``, ``dt = 1e-3``).
        weight_scale: as :class:`EventPropRefracLIF`.

    ``forward(x)`` returns the spikes, ``forward(x, return_voltage=True)`` the spikes and ``v``.

    Raises:
        ConfigurationError: a count below 1 or bad parameters.

    ``forward`` raises ShapeError / DTypeError for an ``x`` that is not ``[T, B,
    in_features]`` floating-point of the weights' dtype.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        p: CobaLIFAdjointParameters = COBA_DEFAULTS,
        weight_scale: float = 1.0,
    ) -> None:
        super().__init__(in_features, out_features, False, weight_scale)
        self.p = _check_coba(type(self).__name__, p)

    def _run(self, x: Tensor) -> tuple[Tensor, Tensor]:
        owner = type(self).__name__
        x = check_sequence(owner, "x", x, self.in_features)
        shape = (self.out_features, self.in_features)
        check_weight(owner, "input_weights", self.input_weights, shape, x)
        return coba_lif_adjoint(torch.matmul(x, self.input_weights.t()), self.p)

    def _parameters_repr(self) -> list[tuple[str, object]]:
        return list(self.p._asdict().items())
