"""Batch norms designed for spiking networks: tdBN, BNTT and TEBN.

All three normalise per channel; they differ in how they treat the time dimension of
``[T, B, C, ...]``:

* :class:`ThresholdDependentBatchNorm2d` (tdBN, Zheng et al., AAAI 2021): one set of
  statistics over time, batch and space, and an output scaled to the firing threshold.
* :class:`BatchNormThroughTime2d` (BNTT, Kim & Panda, 2021): separate statistics and
  affine parameters for every time step.
* :class:`TemporalEffectiveBatchNorm2d` (TEBN, Duan et al., NeurIPS 2022): one set of
  statistics over time, batch and space, then a learnable scale per time step.

Each also has a ``1d`` variant (one step ``[B, C]`` or ``[B, C, L]``) and a ``3d``
variant (one step ``[B, C, D, H, W]``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from spikeflow._checks import check_flag
from spikeflow.base import MemoryModule, StepMode
from spikeflow.errors import ShapeError
from spikeflow.layers._checks import check_int, check_real
from spikeflow.layers._time import check_step_dims, fold_time
from spikeflow.layers.sequence_norm import BatchNorm1d, BatchNorm2d, BatchNorm3d

__all__ = [
    "BatchNormThroughTime1d",
    "BatchNormThroughTime2d",
    "BatchNormThroughTime3d",
    "TemporalEffectiveBatchNorm1d",
    "TemporalEffectiveBatchNorm2d",
    "TemporalEffectiveBatchNorm3d",
    "ThresholdDependentBatchNorm1d",
    "ThresholdDependentBatchNorm2d",
    "ThresholdDependentBatchNorm3d",
]

# One step of each variant: the torch batch norm that normalises it (BNTT and TEBN), its
# layout and its (min, max) dims, those of the sequence batch norm of the same dimension.
_BN1D = (nn.BatchNorm1d, BatchNorm1d.step_layout, BatchNorm1d.step_ndim)
_BN2D = (nn.BatchNorm2d, BatchNorm2d.step_layout, BatchNorm2d.step_ndim)
_BN3D = (nn.BatchNorm3d, BatchNorm3d.step_layout, BatchNorm3d.step_ndim)


# -- tdBN --------------------------------------------------------------------------------


class _ThresholdDependentMixin:
    """tdBN on top of a sequence batch norm (see ThresholdDependentBatchNorm2d)."""

    def __init__(
        self,
        num_features: int,
        alpha: float = 1.0,
        v_threshold: float = 1.0,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        step_mode: StepMode = "m",
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        alpha = check_real("alpha", alpha, 0.0, low_open=True)
        v_threshold = check_real("v_threshold", v_threshold, 0.0, low_open=True)
        super().__init__(  # type: ignore[call-arg]
            num_features,
            eps=eps,
            momentum=momentum,
            affine=affine,
            track_running_stats=track_running_stats,
            step_mode=step_mode,
            device=device,
            dtype=dtype,
        )
        self.alpha = alpha
        self.v_threshold = v_threshold
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Reset the running statistics, β to 0 and the weight to ``alpha * v_threshold``."""
        super().reset_parameters()  # type: ignore[misc]
        if self.affine and hasattr(self, "alpha"):  # type: ignore[attr-defined]
            nn.init.constant_(self.weight, self.alpha * self.v_threshold)  # type: ignore

    def forward(self, x: Tensor) -> Tensor:
        """Normalise ``x`` (``[T, B, C, ...]`` or, single-step, ``[B, C, ...]``)."""
        y = super().forward(x)  # type: ignore[misc]
        if not self.affine:  # type: ignore[attr-defined]
            y = y * (self.alpha * self.v_threshold)
        return y

    def extra_repr(self) -> str:
        base = super().extra_repr()  # type: ignore[misc]
        return f"{base}, alpha={self.alpha}, v_threshold={self.v_threshold}"


_TDBN_DOC = """Threshold-dependent batch norm (tdBN, Zheng et al., AAAI 2021), one step {layout}.

    Each channel is normalised with statistics over time, batch and space (in
    multi-step mode: batch norm over the time-folded batch ``[T*B, ...]``)::

        y = λ·α·θ·(x − μ) / sqrt(σ² + ε) + β

    with α (``alpha``) and θ (``v_threshold``) fixed, λ and β learnable. It is
    implemented as batch norm whose weight ``w = λ·α·θ`` is initialised to ``α·θ``: the
    same function, with ``w`` learnable instead of λ (with the defaults α = θ = 1 the
    two parameterisations are identical; otherwise an SGD step on ``w`` moves the output
    scale ``1/(α·θ)²`` times as far as a step on λ moves ``λ·α·θ``). With
    ``affine=False`` the output is ``α·θ·(x − μ)/sqrt(σ² + ε)``. In single-step mode
    (``[B, ...]``) it is plain batch norm over the step with that weight.

    Args:
        num_features: C, the number of channels.
        alpha: α > 0 (the paper uses 1, or 1/sqrt(2) before a residual addition).
        v_threshold: θ > 0, the firing threshold of the neurons that follow.
        eps, momentum, affine, track_running_stats, device, dtype: as in torch's
            batch norm.
        step_mode: ``'m'`` (default) or ``'s'``.
    """


class ThresholdDependentBatchNorm1d(_ThresholdDependentMixin, BatchNorm1d):
    __doc__ = _TDBN_DOC.format(layout=BatchNorm1d.step_layout)


class ThresholdDependentBatchNorm2d(_ThresholdDependentMixin, BatchNorm2d):
    __doc__ = _TDBN_DOC.format(layout=BatchNorm2d.step_layout)


class ThresholdDependentBatchNorm3d(_ThresholdDependentMixin, BatchNorm3d):
    __doc__ = _TDBN_DOC.format(layout=BatchNorm3d.step_layout)


# -- per-time-step norms ------------------------------------------------------------------


class _TimeIndexedNorm(MemoryModule):
    """A norm with parameters for each time step ``t`` in ``[0, T)``.

    In multi-step mode a call holds the whole sequence, so its length must be ``T``;
    while streaming, calls continue the sequence (a step counter is carried state) and
    together may cover at most ``T`` steps before a reset.
    """

    step_layout: str
    step_ndim: tuple[int, int | None]
    #: The torch batch norm of one step (``nn.BatchNorm1d``, ...).
    _bn: type[nn.modules.batchnorm._BatchNorm]

    def __init__(self, T: int, step_mode: StepMode) -> None:
        super().__init__(step_mode)
        self.T = check_int("T", T, 1)

    def _steps(self, x: Tensor) -> tuple[Tensor, int]:
        """``x`` as a sequence ``[n, B, ...]`` and the index of its first step."""
        name = type(self).__name__
        check_step_dims(x, name, self.step_layout, self.step_ndim, self.step_mode)
        seq = x if self.step_mode == "m" else x.unsqueeze(0)
        state = self._carried_state(seq.shape[1:])
        t0 = 0 if state is None else int(state["t"])
        n = seq.shape[0]
        if self.step_mode == "m" and not self._carrying and n != self.T:
            raise ShapeError(
                f"{name} was configured for T={self.T} time steps (it has parameters for "
                f"each), but the input has T={n} (shape {tuple(x.shape)})"
            )
        if t0 + n > self.T:
            raise ShapeError(
                f"{name} was configured for T={self.T} time steps, but this call would run "
                f"steps {t0 + 1} to {t0 + n} of the sequence; reset the state "
                "(spikeflow.functional.reset_net(net)) between sequences"
            )
        return seq, t0

    def _normalise(self, seq: Tensor, t0: int) -> Tensor:
        """The steps ``t0, t0 + 1, ...`` of the sequence, ``seq`` ``[n, B, C, ...]``,
        normalised (``[n, B, C, ...]``)."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        """Normalise ``x``: ``[T, B, C, ...]``, or one step ``[B, C, ...]`` (single-step).

        The steps run are counted in the carried state (while streaming), so that the
        next call continues at the next time index.
        """
        seq, t0 = self._steps(x)
        y = self._normalise(seq, t0)
        self._keep_state({"t": torch.tensor(t0 + seq.shape[0])})
        return y if self.step_mode == "m" else y[0]

    def extra_repr(self) -> str:
        return f"T={self.T}, step_mode={self.step_mode}"


class _BatchNormThroughTime(_TimeIndexedNorm):
    def __init__(
        self,
        num_features: int,
        T: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        step_mode: StepMode = "m",
        device: Any = None,
        dtype: Any = None,
        bias: bool = False,
    ) -> None:
        super().__init__(T, step_mode)
        bn_args = dict(
            eps=eps,
            momentum=momentum,
            affine=affine,
            track_running_stats=track_running_stats,
            device=device,
            dtype=dtype,
        )
        self.bn = nn.ModuleList(self._bn(num_features, **bn_args) for _ in range(self.T))
        if affine and not check_flag(type(self).__name__, "bias", bias):
            for bn in self.bn:  # the paper's BNTT scales only (as SpikingJelly, snnTorch)
                bn.bias = None

    def _normalise(self, seq: Tensor, t0: int) -> Tensor:
        """Step ``t`` normalised by ``bn[t]``."""
        return torch.stack([self.bn[t0 + i](seq[i]) for i in range(seq.shape[0])])


_BNTT_DOC = """Batch norm through time (BNTT, Kim & Panda, 2021), one step {layout}.

    Every time step ``t`` has its own batch norm ``bn[t]`` (statistics, running
    statistics and affine parameters), applied to step ``t`` only::

        y[t] = γ[t]·(x[t] − μ[t]) / sqrt(σ²[t] + ε)      (+ β[t] with bias=True)

    with μ[t], σ²[t] over the batch (and space) of step ``t``. As in the paper (and
    SpikingJelly's and snnTorch's BNTT) each step has a learnable scale γ[t] and no shift;
    ``bias=True`` adds one (spikeflow's layer had it before 2026-12-05). A multi-step input must
    have exactly ``T`` steps. While streaming, single-step (or chunked multi-step)
    calls use the next time index each (a step counter in the carried state); a reset
    starts again at ``t = 0``.

    Args:
        num_features: C, the number of channels.
        T: the number of time steps.
        eps, momentum, affine, track_running_stats, device, dtype: as in torch's
            batch norm, for each of the ``T`` norms.
        bias: also learn a shift β[t] per step (with ``affine``).
        step_mode: ``'m'`` (default) or ``'s'``.
    """


class BatchNormThroughTime1d(_BatchNormThroughTime):
    _bn, step_layout, step_ndim = _BN1D
    __doc__ = _BNTT_DOC.format(layout=step_layout)


class BatchNormThroughTime2d(_BatchNormThroughTime):
    _bn, step_layout, step_ndim = _BN2D
    __doc__ = _BNTT_DOC.format(layout=step_layout)


class BatchNormThroughTime3d(_BatchNormThroughTime):
    _bn, step_layout, step_ndim = _BN3D
    __doc__ = _BNTT_DOC.format(layout=step_layout)


class _TemporalEffectiveBatchNorm(_TimeIndexedNorm):
    def __init__(
        self,
        num_features: int,
        T: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        step_mode: StepMode = "m",
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(T, step_mode)
        self.bn = self._bn(
            num_features,
            eps=eps,
            momentum=momentum,
            affine=affine,
            track_running_stats=track_running_stats,
            device=device,
            dtype=dtype,
        )
        self.p = nn.Parameter(torch.ones(self.T, device=device, dtype=dtype))

    def _normalise(self, seq: Tensor, t0: int) -> Tensor:
        """``p[t]·BN(x)[t]``, the statistics over all steps of ``seq``."""
        n = seq.shape[0]
        y = fold_time(self.bn, seq)
        return y * self.p[t0 : t0 + n].view(n, *([1] * (y.dim() - 1)))


_TEBN_DOC = """Temporal effective batch norm (TEBN, Duan et al., NeurIPS 2022), one step {layout}.

    Batch norm with statistics over time, batch and space (over the time-folded batch
    ``[T*B, ...]``), then a learnable scale ``p[t]`` per time step, initialised to 1::

        y[t] = p[t]·(γ·(x[t] − μ) / sqrt(σ² + ε) + β)

    (equivalently, per-step affine parameters γ·p[t] and β·p[t]). A multi-step input
    must have exactly ``T`` steps. In single-step mode (streaming) the statistics are
    those of one step's batch (running statistics in eval mode) and a step counter in
    the carried state picks ``p[t]``; chunked streaming in training mode therefore
    normalises each chunk with its own statistics.

    Args:
        num_features: C, the number of channels.
        T: the number of time steps (the length of ``p``).
        eps, momentum, affine, track_running_stats, device, dtype: as in torch's
            batch norm.
        step_mode: ``'m'`` (default) or ``'s'``.
    """


class TemporalEffectiveBatchNorm1d(_TemporalEffectiveBatchNorm):
    _bn, step_layout, step_ndim = _BN1D
    __doc__ = _TEBN_DOC.format(layout=step_layout)


class TemporalEffectiveBatchNorm2d(_TemporalEffectiveBatchNorm):
    _bn, step_layout, step_ndim = _BN2D
    __doc__ = _TEBN_DOC.format(layout=step_layout)


class TemporalEffectiveBatchNorm3d(_TemporalEffectiveBatchNorm):
    _bn, step_layout, step_ndim = _BN3D
    __doc__ = _TEBN_DOC.format(layout=step_layout)
