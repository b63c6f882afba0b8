"""Activation statistics for the scale of each converted ReLU (methods.md 7.1).

The scale ``s`` of a ReLU becomes the threshold of the IF neuron that replaces it (and
the value one spike carries), so the neuron's firing rate ``rate·s`` covers the ReLU's
output range ``[0, s]``:

* **max-norm** (Diehl et al. 2015): ``s`` is the largest activation seen on the
  calibration data (the running maximum over all batches, exact); ``fraction=f`` takes
  ``f`` times it (SpikingJelly's ``RateCodingRecipe(mode=f)``);
* **robust norm** (Rueckauer et al. 2017): ``s`` is the p-th percentile (99.9 or 99.99)
  of the *positive* activations, as the authors' SNN toolbox takes it (zeros are the
  silent neurons; counting them would push the percentile down in sparse layers). It is
  computed per batch with linear interpolation (numpy's default) and averaged over the
  batches, each batch with weight 1 (SpikingJelly keeps an EMA with momentum 0.1
  instead; with one calibration batch both are the exact percentile).
  ``include_zeros=True`` counts the zeros too, as SpikingJelly does.
* ``momentum=m`` (max or percentile) replaces the aggregation over batches by
  SpikingJelly's moving average of each batch's statistic: the first batch's value,
  then ``s ← (1 − m)·s + m·s_batch``.

* **Gaussian threshold** (Huang, Fang et al. 2025; :mod:`spikeflow.conversion.gaussian`):
  the mean and variance of the *pre-activations* (negative ones too), summed exactly in
  float64 over the batches, give the θ that minimises the expected error of the
  ``levels``-level clipped ReLU the converted neuron runs, for Gaussian pre-activations.
* **local threshold balancing** (Bu, Li and Yu 2025; SpikingJelly's
  ``LocalThresholdBalancingRecipe``): ``θ`` starts at 0 and each batch moves it up by
  twice the mean overflow, ``θ ← max(ε, θ + 2·mean(relu(a − θ)))``, and the activation
  passes on clipped, ``min(a, θ)``: calibration runs layer by layer on what the clipped
  layers before give, so later thresholds see the clipped network.

Each statistic is taken per layer (one scalar) or per channel (dim 1 of ``[B, C, ...]``;
for ``[B, F]`` every feature is a channel). A channel with no positive activation in the
calibration data never fires there; it gets the largest scale of its layer (or 1 when
the whole layer was silent), and :attr:`ActivationObserver.silent_channels` counts them.
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any, Literal

import torch
from torch import Tensor, nn

from spikeflow._checks import check_int, check_real
from spikeflow.conversion.gaussian import gaussian_threshold
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError, StateError

__all__ = [
    "DEFAULT_PERCENTILE",
    "ActivationObserver",
    "Norm",
    "batch_input",
    "check_include_zeros",
    "check_levels",
    "check_momentum",
    "check_norm",
    "quantile",
]

Norm = Literal["max", "percentile", "gaussian", "ltb"]
#: The floor of a local-threshold-balancing θ (SpikingJelly's ``eps``).
LTB_EPS = 1e-6
#: The robust norm's percentile when none is given (Rueckauer et al. 2017).
DEFAULT_PERCENTILE = 99.9


def check_norm(norm: str, percentile: float | None = None) -> tuple[Norm, float]:
    """Validate the normalisation name and the percentile (a number in (0, 100]).

    ``percentile=None`` means the default, 99.9. A percentile given with ``norm='max'``
    would be ignored, so it is an error (the usual slip is forgetting
    ``norm='percentile'``).
    """
    if norm not in ("max", "percentile", "gaussian", "ltb"):
        raise ConfigurationError(
            "norm must be 'max' (max-norm), 'percentile' (robust norm), 'gaussian' "
            "(threshold for Gaussian pre-activations) or 'ltb' (local threshold "
            f"balancing), got {norm!r}"
        )
    if percentile is None:
        return norm, DEFAULT_PERCENTILE  # type: ignore[return-value]
    if norm != "percentile":
        raise ConfigurationError(
            f"percentile={percentile!r} is only used by the robust norm: pass "
            f"norm='percentile' with it, or leave it out for norm={norm!r}"
        )
    if isinstance(percentile, bool) or not isinstance(percentile, numbers.Real):
        raise ConfigurationError(
            f"percentile must be a number in (0, 100] such as 99.9 or 99.99, got {percentile!r}"
        )
    value = float(percentile)
    if not (math.isfinite(value) and 0.0 < value <= 100.0):
        raise ConfigurationError(
            f"percentile must be in (0, 100] (a percentage: 99.9, not 0.999), got {percentile!r}"
        )
    if value <= 1.0:
        warnings.warn(
            f"percentile={percentile!r} is a percentage: the scale will be the {value:g}th "
            "percentile of the activations (did you mean 99.9, not 0.999?)",
            UserWarning,
            stacklevel=3,
        )
    return norm, value  # type: ignore[return-value]


def batch_input(batch: Any) -> Tensor:
    """The input of a calibration batch: the batch, or the first of an (input, label) pair."""
    x = batch[0] if isinstance(batch, (tuple, list)) else batch
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise DTypeError(
            "calibration data must be floating-point tensors (or (input, label) pairs), got "
            f"{type(x).__name__}"
        )
    return x


def check_levels(norm: str, levels: int | None) -> int | None:
    """``levels`` (an integer >= 1) is what ``norm='gaussian'`` needs, and only it."""
    if norm == "gaussian":
        if levels is None:
            raise ConfigurationError(
                "norm='gaussian' needs levels: the number of output levels of the converted "
                "neuron (T time steps for IF neurons, T·m for groups of m, T·2^k for k "
                "thresholds)"
            )
        return check_int("levels", levels, 1)
    if levels is not None:
        raise ConfigurationError(
            f"levels={levels!r} is only used by norm='gaussian' (got norm={norm!r})"
        )
    return None


def check_include_zeros(norm: str, include_zeros: bool) -> None:
    """``include_zeros=True`` changes only the robust norm: an error with max-norm."""
    if include_zeros and norm != "percentile":
        raise ConfigurationError(
            "include_zeros=True only changes the robust norm's percentile: pass "
            f"norm='percentile' with it (got norm={norm!r})"
        )


def check_fraction(norm: str, fraction: float | None) -> float | None:
    """``fraction`` (a number in (0, 1], SpikingJelly's ``mode=0.5``) scales the max-norm
    and nothing else: an error with another norm or a value outside (0, 1]."""
    if fraction is None:
        return None
    if norm != "max":
        raise ConfigurationError(
            f"fraction={fraction!r} scales the max-norm (s = fraction · max): pass "
            f"norm='max' with it (got norm={norm!r})"
        )
    return check_real("fraction (the share of the largest activation)", fraction, 0.0, 1.0,
                      low_open=True)  # fmt: skip


def check_momentum(norm: str, momentum: float | None) -> float | None:
    """``momentum`` (a number in (0, 1]) makes the max or percentile a moving average
    over batches; an error with another norm or a value outside (0, 1]."""
    if momentum is None:
        return None
    if norm not in ("max", "percentile"):
        raise ConfigurationError(
            f"momentum={momentum!r} averages the max or percentile over batches: pass "
            f"norm='max' or norm='percentile' with it (got norm={norm!r})"
        )
    return check_real("momentum (the weight of each new batch)", momentum, 0.0, 1.0,
                      low_open=True)  # fmt: skip


def set_calibration_options(
    owner: Any,
    norm: str,
    percentile: float | None,
    per_channel: bool,
    include_zeros: bool,
    levels: int | None,
    fraction: float | None,
    momentum: float | None,
) -> None:
    """Check the calibration options (:func:`check_norm` and the checks after it, in
    that order) and set them on ``owner`` as ``norm``, ``percentile``, ``levels``,
    ``fraction``, ``momentum``, ``per_channel`` and ``include_zeros``.

    Raises:
        ConfigurationError: the first option that is wrong, named.
    """
    owner.norm, owner.percentile = check_norm(norm, percentile)
    check_include_zeros(owner.norm, include_zeros)
    owner.levels = check_levels(owner.norm, levels)
    owner.fraction = check_fraction(owner.norm, fraction)
    owner.momentum = check_momentum(owner.norm, momentum)
    owner.per_channel = bool(per_channel)
    owner.include_zeros = bool(include_zeros)


def quantile(values: Tensor, q: float) -> Tensor:
    """The ``q``-quantile of each row of ``values`` (last dim), ignoring NaNs.

    Linear interpolation between order statistics, as ``numpy.quantile``'s default;
    unlike ``torch.quantile`` it has no input-size limit. Rows with no finite entry
    give NaN. The rank ``q·(n - 1)`` and the interpolation are computed in float32 or
    wider (as ``torch.quantile``) and the result rounded to the values' dtype: in
    float16 ``n - 1`` is rounded from 2049 on, and the rank went past the last value.
    """
    if not 0.0 <= q <= 1.0:
        raise ConfigurationError(f"quantile q must be in [0, 1], got {q}")
    ordered, _ = torch.sort(values, dim=-1)  # NaNs sort last
    count = (~torch.isnan(values)).sum(dim=-1, keepdim=True)
    last = (count - 1).clamp_min(0)
    wide = torch.promote_types(values.dtype, torch.float32)
    position = q * last.to(wide)
    # Clamped: beyond 2^24 values float32 rounds n - 1 too, possibly up to n.
    low = position.floor().long().minimum(last)
    high = position.ceil().long().minimum(last)
    frac = position - low.to(wide)
    v_low = ordered.gather(-1, low).to(wide)
    v_high = ordered.gather(-1, high).to(wide)
    result = (v_low + (v_high - v_low) * frac).squeeze(-1).to(values.dtype)
    return torch.where(count.squeeze(-1) > 0, result, torch.full_like(result, math.nan))


class ActivationObserver(nn.Module):
    """Records the statistic of the activations passing through it (identity forward,
    except ``norm='ltb'``, which passes them on clipped at the current θ).

    Args:
        norm: ``'max'`` (max-norm), ``'percentile'`` (robust norm), ``'gaussian'`` or
            ``'ltb'`` (local threshold balancing).
        percentile: p for the robust norm, in (0, 100] (default 99.9); only with
            ``norm='percentile'``.
        per_channel: one scale per channel (dim 1) instead of one per layer.
        include_zeros: take the percentile over all activations, zeros included (as
            SpikingJelly), instead of over the positive ones (as the SNN toolbox).
        levels: the converted neuron's number of output levels; only, and needed, with
            ``norm='gaussian'``.
        fraction: with ``norm='max'``, the scale is this share (in (0, 1]) of the max.
        momentum: with ``norm='max'`` or ``'percentile'``, a moving average of each
            batch's statistic (``s ← (1 − m)·s + m·s_batch`` from the first batch's)
            instead of the running max or the plain mean.
        owner: what errors call the activation observed (``"'act' (nn.ReLU)"``).

    Raises:
        ShapeError: per channel, activations of another channel count or rank than the
            first call's (one module reused on other tensors: its one neuron cannot
            hold a threshold per channel for both).
    """

    def __init__(
        self,
        norm: Norm = "max",
        percentile: float | None = None,
        per_channel: bool = False,
        include_zeros: bool = False,
        levels: int | None = None,
        owner: str | None = None,
        fraction: float | None = None,
        momentum: float | None = None,
    ) -> None:
        super().__init__()
        self.owner = owner
        set_calibration_options(self, norm, percentile, per_channel, include_zeros, levels,
                                fraction, momentum)  # fmt: skip
        self.batches = 0
        self.sample_ndim: int | None = None
        self.silent_channels = 0
        self._max: Tensor | None = None
        self._sum: Tensor | None = None
        self._count: Tensor | None = None
        self._moments: Tensor | None = None  # gaussian: [rows, 3] = count, Σx, Σx² (float64)
        self._theta: Tensor | None = None  # ltb: the balanced threshold, one per row
        self._dtype = torch.float32
        self._first_shape: tuple[int, ...] | None = None  # per channel: of the first call

    def _rows(self, y: Tensor) -> Tensor:
        """``y`` as ``[rows, values]``: one row per channel, or a single row."""
        if not self.per_channel:
            return y.reshape(1, -1)
        if y.dim() < 2:
            raise ShapeError(
                f"per-channel calibration needs activations [B, C, ...], got shape {tuple(y.shape)}"
            )
        self._check_channels(tuple(y.shape))
        return y.transpose(0, 1).reshape(y.shape[1], -1)

    def _check_channels(self, shape: tuple[int, ...]) -> None:
        """Per channel, every call must have the first call's channels (dim 1) and rank:
        the scale is one value per channel, shaped for that rank."""
        first = self._first_shape
        if first is None:
            self._first_shape = shape
            return
        if first[1] == shape[1] and len(first) == len(shape):
            return
        ranks = len(first) != len(shape)

        def described(s: tuple[int, ...]) -> str:
            return f"{s} ({s[1]} channels" + (f", {len(s)} dims)" if ranks else ")")

        owner = f" of {self.owner}" if self.owner else ""
        raise ShapeError(
            f"per-channel calibration{owner}: it ran on {described(first)}, then on "
            f"{described(shape)}. One module reused on tensors of other channel counts "
            "or ranks becomes one neuron, which cannot hold one threshold per channel for "
            "both: give each call its own module, or calibrate per layer (per_channel=False)"
        )

    @torch.no_grad()
    def forward(self, y: Tensor, x: Tensor | None = None) -> Tensor:
        """Update the statistics with ``y`` (the activation's output; for the Gaussian
        threshold ``x``, its input) and return ``y``."""
        if self.sample_ndim is None:
            self.sample_ndim = y.dim()
        if self.norm == "gaussian":
            if x is None:
                raise ConfigurationError(
                    "norm='gaussian' observes the pre-activations: call the observer as "
                    "observer(activation_output, activation_input)"
                )
            rows = self._rows(x.detach()).to(torch.float64)
            batch = torch.stack(
                [torch.full_like(rows[:, 0], rows.shape[1]), rows.sum(1), rows.pow(2).sum(1)], 1
            )
            self._moments = batch if self._moments is None else self._moments + batch
            self._dtype = x.dtype
            self.batches += 1
            return y
        rows = self._rows(y.detach())
        if self.norm == "ltb":
            return self._balance(y, rows)
        if self.norm == "max":
            batch_max = rows.amax(dim=1)
            if self.fraction is not None:  # per batch, as SpikingJelly (the same rounding)
                batch_max = batch_max * self.fraction
            if self._max is None:
                self._max = batch_max
            elif self.momentum is None:
                self._max = torch.maximum(self._max, batch_max)
            else:
                self._max = (1 - self.momentum) * self._max + self.momentum * batch_max
        else:
            if not self.include_zeros:
                rows = torch.where(rows > 0, rows, torch.full_like(rows, math.nan))
            value = quantile(rows, self.percentile / 100.0)
            valid = ~torch.isnan(value)
            value = torch.where(valid, value, torch.zeros_like(value))
            if self.momentum is not None:
                self._moving_average(value, valid)
            elif self._sum is None or self._count is None:
                self._sum, self._count = value, valid.to(value.dtype)
            else:
                self._sum = self._sum + value
                self._count = self._count + valid.to(value.dtype)
        self.batches += 1
        return y

    def _moving_average(self, value: Tensor, valid: Tensor) -> None:
        """The percentile's moving average, per row: a row's first batch with a value
        sets it, each later one moves it by ``momentum`` (a batch in which a row had no
        positive activation leaves it). Kept in ``_sum``, ``_count`` says whether set."""
        assert self.momentum is not None
        if self._sum is None or self._count is None:
            self._sum, self._count = value, valid.to(value.dtype)
            return
        seen = self._count > 0
        moved = (1 - self.momentum) * self._sum + self.momentum * value
        self._sum = torch.where(valid, torch.where(seen, moved, value), self._sum)
        self._count = self._count + valid.to(value.dtype)

    def _balance(self, y: Tensor, rows: Tensor) -> Tensor:
        """One local-threshold-balancing step: θ rises by twice the mean overflow of
        ``rows`` above it (floored at :data:`LTB_EPS`); ``y`` passes on clipped at the new θ.
        Half-precision activations are balanced in float32, as SpikingJelly does (in
        bfloat16 a small overflow rounds away against a large θ, which then stalls)."""
        if rows.dtype in (torch.float16, torch.bfloat16):
            rows = rows.float()
        rows = rows.clamp_min(0.0)
        theta = torch.zeros_like(rows[:, 0]) if self._theta is None else self._theta
        theta = (theta + 2.0 * (rows - theta[:, None]).clamp_min(0.0).mean(dim=1)).clamp_min(
            LTB_EPS
        )
        self._theta = theta
        self._dtype = y.dtype
        self.batches += 1
        shape = [1] * y.dim()
        if self.per_channel:
            shape[1] = theta.numel()
        return torch.minimum(y.clamp_min(0.0), theta.to(y.dtype).reshape(shape))

    def scale(self) -> Tensor:
        """The scale: shape ``[]`` per layer, ``[C, 1, ..., 1]`` per channel."""
        if self.batches == 0 or self.sample_ndim is None:
            raise StateError(
                "no calibration data reached this activation: run calibration batches "
                "through the model before asking for its scale"
            )
        if self.norm == "max":
            assert self._max is not None
            values = self._max
            alive = values > 0
        elif self.norm == "ltb":
            # SpikingJelly's recipe: a channel that never went above 0 keeps θ = ε
            # (its neuron stays all but silent), no fallback to the layer's scale.
            assert self._theta is not None
            values = self._theta.to(self._dtype)
            alive = torch.ones_like(values, dtype=torch.bool)
            self.silent_channels = int((values <= LTB_EPS).sum())
        elif self.norm == "gaussian":
            assert self._moments is not None and self.levels is not None
            count, total, squares = self._moments.unbind(1)
            mean = total / count
            values = gaussian_threshold(mean, squares / count - mean * mean, self.levels)
            alive = torch.isfinite(values)
            values = torch.where(alive, values, 0.0).to(self._dtype)
        else:
            assert self._sum is not None and self._count is not None
            alive = self._count > 0
            if self.momentum is not None:  # _sum holds the moving average itself
                values = self._sum
            else:
                values = torch.where(alive, self._sum / self._count.clamp_min(1), self._sum)
            alive = alive & (values > 0)
        if self.norm != "ltb":
            self.silent_channels = int((~alive).sum())
        fallback = values[alive].max() if bool(alive.any()) else torch.ones((), dtype=values.dtype)
        values = torch.where(alive, values, fallback)
        if not self.per_channel:
            return values.reshape(())
        return values.reshape((-1,) + (1,) * max(self.sample_ndim - 2, 0))

    def extra_repr(self) -> str:
        what = {"max": "max", "ltb": "ltb", "gaussian": f"gaussian, levels={self.levels}"}.get(
            self.norm, f"percentile={self.percentile:g}"
        )
        if self.norm == "percentile" and self.include_zeros:
            what += ", include_zeros=True"
        if self.fraction is not None:
            what += f", fraction={self.fraction:g}"
        if self.momentum is not None:
            what += f", momentum={self.momentum:g}"
        return f"{what}, per_channel={self.per_channel}, batches={self.batches}"
