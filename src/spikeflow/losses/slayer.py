"""Lava-DL's SLAYER losses (``lava.lib.dl.slayer.loss``) in spikeflow's time-major layout.

- :func:`spike_rate_loss` / :class:`SpikeRate`: squared error of the output rates against
  ``true_rate`` for the label class and ``false_rate`` for the others, over the whole
  sequence or (``moving_window=W``) over the last ``W`` steps at every step;
- :func:`spike_max_loss` / :class:`SpikeMax`: the negative log-likelihood of the label
  class, its probability read from the rates (Shrestha et al., "Spikemax", IJCNN 2022);
- :func:`spike_time_loss` / :class:`SpikeTime`: the squared distance of the output and a
  desired spike train after both pass an exponential FIR filter (van Rossum-like).

Layout: Lava-DL's tensors are time-last ``[N, C, T]``, spikeflow's time-major
``[T, B, K]``: ``out_seq[t, b, k]`` is Lava-DL's ``input[b, k, t]``, and per-step labels
``[T, B]`` are Lava-DL's ``[N, T]`` transposed. As in Lava-DL, further dimensions
``[T, B, C, H, W]`` are flattened into the classes ``K = C * H * W`` (SpikeRate,
SpikeMax). The values equal Lava-DL's, reductions included: ``reduction="sum"`` (Lava-DL's
default) sums over every sample, class and step; ``"mean"`` divides by their number, so
unlike spikeflow's other losses these are not batch means by default. Where Lava-DL's
code and docstrings differ, the code is followed (no ``1/2`` in SpikeRate). A float16 or
bfloat16 output is computed on in float32 (the loss is float32; the gradient reaches
the output in its dtype): these sums grow with ``T·B·K``, past float16's 65504 and
bfloat16's three digits.

``get_loss("spike_rate", true_rate=..., false_rate=...)`` and ``get_loss("spike_max")``
give the first two with integer labels ``[B]`` (readout ``rate``, Lava-DL's
``Rate.predict``); SpikeTime's target is a spike train, not a label, so it is not in
the registry.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikeflow._checks import check_int, check_real
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.losses.readout import (
    _causal_filter,
    _check_mode,
    _check_sequence,
    _check_window,
    _confidence,
    _moving_average,
)

__all__ = [
    "REDUCTIONS",
    "SpikeMax",
    "SpikeRate",
    "SpikeTime",
    "exponential_kernel",
    "spike_max_loss",
    "spike_rate_loss",
    "spike_time_loss",
]

#: Lava-DL's reductions: ``sum`` over all terms (its default) or their ``mean``.
REDUCTIONS = ("sum", "mean")

#: Lava-DL's ``eps`` of the ``probability`` confidence (``Rate.confidence``).
_EPS = 1e-6

_INTEGER_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)


def spike_rate_loss(
    out_seq: Tensor,
    target: Tensor,
    true_rate: float,
    false_rate: float,
    moving_window: int | None = None,
    reduction: str = "sum",
) -> Tensor:
    """Lava-DL's ``SpikeRate``: ``Σ (r − r̂)²`` (``reduction="sum"``) or its mean.

    Without a window ``r[b, k] = mean_t O[t, b, k]`` and the sum runs over ``B·K`` terms;
    with ``moving_window=W``, ``r[t, b, k] = (1/W) Σ_{j<W} O[t − j, b, k]`` (zero before
    step 0, :func:`moving_window_rate`) and it runs over ``T·B·K`` terms. The target rate
    ``r̂`` is ``true_rate`` for the label class (at that step) and ``false_rate`` for the
    others. Lava-DL's docstring writes a factor ``1/2``; its code (followed here) has none.

    Args:
        out_seq: the output spikes ``[T, B, K]`` (``[T, B, ...]``: trailing dims flattened).
        target: integer labels ``[B]``; with ``moving_window`` also per-step labels
            ``[T, B]`` (Lava-DL's ``[N, T]``). Lava-DL's moving window fails on labels
            ``[N]`` (its ``replicate`` gets a 1-D tensor); here they hold at every step.
        true_rate: the label class's wanted rate, in ``[0, 1]``.
        false_rate: the other classes' wanted rate, in ``[0, 1]``.
        moving_window: ``W``, an integer in ``[1, T]``, or None (the whole sequence).
        reduction: ``"sum"`` or ``"mean"``.
    """
    true_rate, false_rate, moving_window, reduction = _spike_rate_arguments(
        true_rate, false_rate, moving_window, reduction
    )
    rates, labels = _rates(out_seq, target, "spike_rate_loss", moving_window)
    one_hot = F.one_hot(labels, rates.shape[-1]).to(rates.dtype)
    wanted = false_rate + (true_rate - false_rate) * one_hot
    return F.mse_loss(rates, wanted, reduction=reduction)


def spike_max_loss(
    out_seq: Tensor,
    target: Tensor,
    moving_window: int | None = None,
    mode: str = "probability",
    reduction: str = "sum",
) -> Tensor:
    """Lava-DL's ``SpikeMax``: ``−Σ log p[y]`` (``reduction="sum"``) or its mean.

    ``p`` is read from the rates ``r`` (as :func:`spike_rate_loss`'s, over the whole
    sequence: one term per sample; or with ``moving_window``: one per sample and step).
    ``mode="probability"``: ``p = r / (Σ_k r + 1e-6)``, so a silent label class gives an
    infinite loss, as in Lava-DL; ``"softmax"`` and ``"logsoftmax"`` (the same here, as in
    Lava-DL, which takes every mode but ``"probability"`` as log-softmax): ``log p =
    log_softmax_k(r)``.

    Args:
        out_seq: the output spikes ``[T, B, K]`` (``[T, B, ...]``: trailing dims flattened).
        target: integer labels ``[B]``; with ``moving_window`` also per-step labels
            ``[T, B]`` (Lava-DL's ``[N, T]``).
        moving_window: ``W``, an integer in ``[1, T]``, or None (the whole sequence).
        mode: ``"probability"``, ``"softmax"`` or ``"logsoftmax"``.
        reduction: ``"sum"`` or ``"mean"`` (over the samples, or samples and steps).
    """
    moving_window, mode, reduction = _spike_max_arguments(moving_window, mode, reduction)
    rates, labels = _rates(out_seq, target, "spike_max_loss", moving_window)
    if mode == "probability":
        log_p = _confidence(rates, mode, _EPS).log()
    else:
        log_p = _confidence(rates, "logsoftmax", _EPS)
    return F.nll_loss(log_p.reshape(-1, rates.shape[-1]), labels.reshape(-1), reduction=reduction)


def spike_time_loss(
    out_seq: Tensor,
    target: Tensor,
    time_constant: float = 5.0,
    length: int = 100,
    filter_order: int = 1,
    reduction: str = "sum",
) -> Tensor:
    """Lava-DL's ``SpikeTime``: ``Σ (ε * O − ε * S)²`` (``reduction="sum"``) or its mean,
    over every step and element.

    ``ε * x`` is the causal filter ``(ε * x)[t] = Σ_{j<L} ε[j] x[t − j]`` (zero before step
    0) with the taps :func:`exponential_kernel` ``(time_constant, length, filter_order)``:
    ``ε[j] = exp(−j / τ)``, not normalised (``ε[0] = 1``), self-convolved for higher
    orders. Like a van Rossum distance, without its ``1/τ`` and in discrete time.

    Args:
        out_seq: the output spikes ``[T, B, ...]``.
        target: the desired spike train ``S``, of ``out_seq``'s shape (a bool or integer
            spike train is taken in ``out_seq``'s dtype, float32 for float16/bfloat16).
        time_constant: ``τ`` in steps, ``> 0``.
        length: the number of taps ``L``, an integer ``>= 1`` (taps past ``T`` do not
            matter).
        filter_order: how many times the exponential is applied, an integer ``>= 1``.
        reduction: ``"sum"`` or ``"mean"``.
    """
    time_constant, length, filter_order, reduction = _spike_time_arguments(
        time_constant, length, filter_order, reduction
    )
    _check_spike_trains(out_seq, target)
    taps = _kernel(time_constant, min(length, out_seq.shape[0]), filter_order)
    return _filtered_distance(out_seq, target, taps, reduction)


def _check_spike_trains(out_seq: Tensor, target: Tensor) -> None:
    """:func:`spike_time_loss`'s checks of its tensors."""
    owner = "spike_time_loss"
    if not isinstance(out_seq, Tensor) or out_seq.dim() < 2:
        shape = tuple(out_seq.shape) if isinstance(out_seq, Tensor) else type(out_seq).__name__
        raise ShapeError(f"{owner}: out_seq must be a [T, B, ...] tensor, got {shape}")
    if not out_seq.is_floating_point():
        raise DTypeError(f"{owner}: out_seq must be floating point, got {out_seq.dtype}")
    if out_seq.numel() == 0:
        raise ShapeError(f"{owner}: out_seq is empty ({tuple(out_seq.shape)})")
    if not isinstance(target, Tensor) or target.is_complex():
        raise DTypeError(f"{owner}: target must be a real spike-train tensor")
    if target.shape != out_seq.shape:
        raise ShapeError(
            f"{owner}: target must have out_seq's shape {tuple(out_seq.shape)}, "
            f"got {tuple(target.shape)}"
        )


def _filtered_distance(out_seq: Tensor, target: Tensor, taps: Tensor, reduction: str) -> Tensor:
    """:func:`spike_time_loss` with the taps given (no checks)."""
    out = _upcast(out_seq)
    desired = target.to(dtype=out.dtype, device=out.device)
    return F.mse_loss(_causal_filter(out, taps), _causal_filter(desired, taps), reduction=reduction)


def exponential_kernel(
    time_constant: float = 5.0, length: int = 100, filter_order: int = 1
) -> Tensor:
    """The taps ``ε`` ``[length]`` (float64) of :func:`spike_time_loss`'s filter.

    ``ε₁[j] = exp(−j / time_constant)`` (Lava-DL's ``FIR(time_constant, length)``); each
    further order convolves the taps with ``ε₁`` once more and keeps the first ``length``
    (Lava-DL's ``filter_order`` loop), so ``ε_n[j] = C(j + n − 1, n − 1) exp(−j / τ)``.
    """
    return _kernel(*_spike_time_arguments(time_constant, length, filter_order, "sum")[:3])


class SpikeRate(nn.Module):
    """Lava-DL's ``slayer.loss.SpikeRate``: :func:`spike_rate_loss` with its arguments
    bound; called as ``loss(out_seq, target)``."""

    def __init__(
        self,
        true_rate: float,
        false_rate: float,
        moving_window: int | None = None,
        reduction: str = "sum",
    ) -> None:
        super().__init__()
        self.true_rate, self.false_rate, self.moving_window, self.reduction = _spike_rate_arguments(
            true_rate, false_rate, moving_window, reduction
        )

    def extra_repr(self) -> str:
        return (
            f"true_rate={self.true_rate:g}, false_rate={self.false_rate:g}, "
            f"moving_window={self.moving_window}, reduction={self.reduction!r}"
        )

    def forward(self, out_seq: Tensor, target: Tensor) -> Tensor:
        """:func:`spike_rate_loss` of ``out_seq`` ``[T, B, K]`` and labels ``target``."""
        return spike_rate_loss(
            out_seq, target, self.true_rate, self.false_rate, self.moving_window, self.reduction
        )


class SpikeMax(nn.Module):
    """Lava-DL's ``slayer.loss.SpikeMax``: :func:`spike_max_loss` with its arguments
    bound; called as ``loss(out_seq, target)``."""

    def __init__(
        self, moving_window: int | None = None, mode: str = "probability", reduction: str = "sum"
    ) -> None:
        super().__init__()
        self.moving_window, self.mode, self.reduction = _spike_max_arguments(
            moving_window, mode, reduction
        )

    def extra_repr(self) -> str:
        return (
            f"moving_window={self.moving_window}, mode={self.mode!r}, reduction={self.reduction!r}"
        )

    def forward(self, out_seq: Tensor, target: Tensor) -> Tensor:
        """:func:`spike_max_loss` of ``out_seq`` ``[T, B, K]`` and labels ``target``."""
        return spike_max_loss(out_seq, target, self.moving_window, self.mode, self.reduction)


class SpikeTime(nn.Module):
    """Lava-DL's ``slayer.loss.SpikeTime``: :func:`spike_time_loss` with its arguments
    bound; called as ``loss(out_seq, desired)``. It filters with the buffer ``kernel``
    (Lava-DL's ``filter.filter``; float64, :func:`exponential_kernel` of the arguments):
    taps written into it, or loaded with a ``state_dict``, are the ones used."""

    kernel: Tensor

    def __init__(
        self,
        time_constant: float = 5.0,
        length: int = 100,
        filter_order: int = 1,
        reduction: str = "sum",
    ) -> None:
        super().__init__()
        self.time_constant, self.length, self.filter_order, self.reduction = _spike_time_arguments(
            time_constant, length, filter_order, reduction
        )
        self.register_buffer("kernel", _kernel(self.time_constant, self.length, self.filter_order))

    def extra_repr(self) -> str:
        return (
            f"time_constant={self.time_constant:g}, length={self.length}, "
            f"filter_order={self.filter_order}, reduction={self.reduction!r}"
        )

    def forward(self, out_seq: Tensor, desired: Tensor) -> Tensor:
        """:func:`spike_time_loss` of ``out_seq`` ``[T, B, ...]`` and the spike train
        ``desired`` of its shape, filtered with :attr:`kernel`."""
        _check_spike_trains(out_seq, desired)
        return _filtered_distance(out_seq, desired, self.kernel, self.reduction)


def _kernel(time_constant: float, length: int, filter_order: int) -> Tensor:
    base = torch.exp(-torch.arange(length, dtype=torch.float64) / time_constant)
    taps = base
    for _ in range(filter_order - 1):  # Lava-DL: the taps filtered by the first-order FIR
        taps = _causal_filter(taps, base)
    return taps


def _upcast(out: Tensor) -> Tensor:
    """A float16 or bfloat16 ``out`` as float32 (module docstring); others as they are."""
    return out.float() if out.dtype in (torch.float16, torch.bfloat16) else out


def _check(
    out_seq: Tensor, target: Tensor, owner: str, moving_window: int | None
) -> tuple[Tensor, Tensor]:
    """``out_seq`` flattened to ``[T, B, K]`` and the labels as int64 ``[B]`` or
    ``[T, B]`` (per-step, with a window only) on its device; errors name ``owner``."""
    _check_sequence(out_seq, owner)
    out = out_seq.flatten(2)
    steps, batch, classes = out.shape
    _window_fits(owner, moving_window, steps, "out_seq")
    if not isinstance(target, Tensor) or target.dtype not in _INTEGER_DTYPES:
        found = target.dtype if isinstance(target, Tensor) else type(target).__name__
        raise DTypeError(f"{owner}: target must be integer class labels, got {found}")
    shapes = [(batch,)] if moving_window is None else [(batch,), (steps, batch)]
    if tuple(target.shape) not in shapes:
        wanted = "[B]" if moving_window is None else "[B] or per-step [T, B]"
        raise ShapeError(
            f"{owner}: target must be labels {wanted} for out_seq {tuple(out_seq.shape)}, "
            f"got {tuple(target.shape)}"
        )
    if int(target.min()) < 0 or int(target.max()) >= classes:
        raise ConfigurationError(
            f"{owner}: target labels must lie in [0, {classes - 1}], "
            f"got range [{int(target.min())}, {int(target.max())}]"
        )
    return out, target.to(device=out.device, dtype=torch.int64)


def _rates(
    out_seq: Tensor, target: Tensor, owner: str, moving_window: int | None
) -> tuple[Tensor, Tensor]:
    """The checked (:func:`_check`) output's rates and their labels: the mean over the
    sequence ``[B, K]`` with labels ``[B]``, or with ``moving_window`` the causal moving
    average ``[T, B, K]`` with per-step labels ``[T, B]`` (labels ``[B]`` repeated)."""
    out, labels = _check(out_seq, target, owner, moving_window)
    out = _upcast(out)
    if moving_window is None:
        return out.mean(0), labels
    return _moving_average(out, moving_window), labels.expand(out.shape[:2])


def _reduction(owner: str, reduction: object) -> str:
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:
        raise ConfigurationError(
            f"{owner}: reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}"
        )
    return reduction


def _window(owner: str, moving_window: object) -> int | None:
    return None if moving_window is None else check_int(f"{owner}: moving_window", moving_window, 1)


def _spike_rate_arguments(
    true_rate: object, false_rate: object, moving_window: object, reduction: object
) -> tuple[float, float, int | None, str]:
    owner = "spike_rate_loss"
    return (
        check_real(f"{owner}: true_rate", true_rate, 0.0, 1.0),
        check_real(f"{owner}: false_rate", false_rate, 0.0, 1.0),
        _window(owner, moving_window),
        _reduction(owner, reduction),
    )


def _spike_max_arguments(
    moving_window: object, mode: object, reduction: object
) -> tuple[int | None, str, str]:
    owner = "spike_max_loss"
    return _window(owner, moving_window), _check_mode(owner, mode), _reduction(owner, reduction)


def _window_fits(owner: str, moving_window: int | None, steps: int, of: str) -> None:
    if moving_window is not None:
        _check_window(owner, "moving_window", moving_window, steps, of)


def _spike_rate_fits(
    steps: int,
    of: str,
    true_rate: object,
    false_rate: object,
    moving_window: object,
    reduction: object,
) -> None:
    """What :func:`spike_rate_loss` would refuse at its first call on ``steps`` steps (of
    ``of``): a ``moving_window`` longer than ``T``."""
    window = _spike_rate_arguments(true_rate, false_rate, moving_window, reduction)[2]
    _window_fits("spike_rate_loss", window, steps, of)


def _spike_max_fits(
    steps: int, of: str, moving_window: object, mode: object, reduction: object
) -> None:
    """What :func:`spike_max_loss` would refuse at its first call on ``steps`` steps (of
    ``of``): a ``moving_window`` longer than ``T``."""
    window = _spike_max_arguments(moving_window, mode, reduction)[0]
    _window_fits("spike_max_loss", window, steps, of)


def _infinite_loss_cause(mode: object = "probability", moving_window: object = None) -> str:
    """Why :func:`spike_max_loss` in ``mode`` is infinite, for a message about a run
    whose loss became ``inf``; empty for the modes whose loss stays finite.

    In ``"probability"`` mode (Lava-DL's default) ``p = r / (Σ_k r + 1e-6)`` with rates
    ``r >= 0``, so the loss is ``+inf`` exactly when some sample's label neuron has rate
    0 (over the sequence, or over a window with ``moving_window``): silent output
    neurons, as at the start of training. It is the loss's value (Lava-DL's too), not a
    divergence, so a lower learning rate does not help.
    """
    if mode != "probability":
        return ""
    where = "the sequence" if moving_window is None else f"a window of {moving_window} steps"
    return (
        f"spike_max in its probability mode (Lava-DL's default) reads p = r / (sum of "
        f"rates + 1e-6): a sample whose label neuron is silent over {where} has p = 0 "
        "and an infinite loss (as in Lava-DL), which silent output neurons give, e.g. "
        "at the start of training; the learning rate is not the cause. Use "
        "--loss-kwargs mode=softmax (the log-softmax of the rates, finite), or a network "
        "whose output neurons fire from the start"
    )


def _spike_time_arguments(
    time_constant: object, length: object, filter_order: object, reduction: object
) -> tuple[float, int, int, str]:
    owner = "spike_time_loss"
    return (
        check_real(f"{owner}: time_constant", time_constant, 0.0, low_open=True),
        check_int(f"{owner}: length", length, 1),
        check_int(f"{owner}: filter_order", filter_order, 1),
        _reduction(owner, reduction),
    )
