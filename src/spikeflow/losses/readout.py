"""Readouts: the class a ``[T, B, K]`` output sequence predicts.

Besides :func:`predict` and :func:`accuracy`, Lava-DL's classifiers
(``lava.lib.dl.slayer.classifier``) in spikeflow's time-major layout: :class:`Rate`
(the rate over the whole sequence) and :class:`MovingWindow` (the rate over the last
``W`` steps, at every step), with their functions :func:`rate_confidence`,
:func:`moving_window_rate`, :func:`moving_window_confidence` and
:func:`moving_window_predict`. Lava-DL's tensors are time-last ``[N, C, T]``; these take
``[T, B, K]`` (``out_seq[t, b, k]`` is Lava-DL's ``spike[b, k, t]``), and, as Lava-DL
does, flatten any further dimensions ``[T, B, C, H, W]`` into ``K = C * H * W``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikeflow._checks import check_int, check_labels, check_real
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.losses.weighting import check_population, population_sum

__all__ = [
    "CONFIDENCE_MODES",
    "READOUTS",
    "MovingWindow",
    "Rate",
    "accuracy",
    "first_spike_steps",
    "moving_window_confidence",
    "moving_window_predict",
    "moving_window_rate",
    "predict",
    "rate_confidence",
]

#: ``rate``: the largest time-mean output; ``count``: the largest output sum (spike
#: count), ties to the earlier first spike; ``first_spike``: the earliest first spike,
#: ties to the larger sum; ``max``: the largest maximum over time (a membrane readout).
READOUTS = ("rate", "count", "first_spike", "max")


def predict(out_seq: Tensor, readout: str = "rate") -> Tensor:
    """The predicted class of each sample ``[B]`` of ``out_seq`` ``[T, B, K]``.

    ``"count"`` takes the class with the largest output sum ``n_c = Σ_t O[t, c]`` (the
    spike count of a spiking output, as the counting losses define it), ties to the
    class whose first nonzero output came earlier; ``"first_spike"`` the class with the
    earliest first nonzero output, ties to the larger sum; ``"max"`` the class with the
    largest ``max_t O[t, c]`` (for ``ce_max_membrane``). Remaining ties go to the
    lowest class index.
    """
    if readout == "rate":
        return out_seq.float().mean(0).argmax(-1)
    if readout == "max":
        return out_seq.max(dim=0).values.argmax(-1)
    if readout not in READOUTS:
        raise ConfigurationError(f"unknown readout {readout!r}; available: {', '.join(READOUTS)}")
    sums = out_seq.float().sum(dim=0)
    earliness = (out_seq.shape[0] - first_spike_steps(out_seq)).float()
    first, second = (sums, earliness) if readout == "count" else (earliness, sums)
    best = first == first.max(dim=-1, keepdim=True).values
    return torch.where(best, second, float("-inf")).argmax(-1)


def accuracy(
    out_seq: Tensor,
    target: Tensor,
    readout: str = "rate",
    population_code: bool = False,
    num_classes: int | None = None,
) -> float:
    """The share of samples whose :func:`predict` (with ``readout``) is their label.

    ``out_seq`` ``[T, B, K]``, ``target`` integer labels ``[B]``. snnTorch's
    ``accuracy_rate`` (the most spikes) is ``readout="rate"`` (or ``"count"``, which
    breaks ties by the earlier first spike); its ``accuracy_temporal`` (the earliest
    first spike) is ``"first_spike"``, except on ties (snnTorch: the lowest index, and
    a silent neuron ties with one firing at the last step).

    ``population_code=True, num_classes=K``: the ``N = K * G`` outputs are ``K`` groups
    of ``G`` consecutive neurons, summed per step before the readout (snnTorch's
    ``accuracy_rate(..., population_code=True, num_classes=K)``).
    """
    if not isinstance(out_seq, Tensor) or out_seq.dim() != 3:
        shape = tuple(out_seq.shape) if isinstance(out_seq, Tensor) else type(out_seq).__name__
        raise ShapeError(f"accuracy: out_seq must be a [T, B, K] tensor, got {shape}")
    if out_seq.shape[0] == 0 or out_seq.shape[1] == 0:
        raise ShapeError(f"accuracy: out_seq has no steps or no samples ({tuple(out_seq.shape)})")
    classes = check_population("accuracy", population_code, num_classes)
    if classes is not None:
        out_seq = population_sum(out_seq, classes, "accuracy")
    if not isinstance(target, Tensor) or target.is_floating_point() or target.dtype == torch.bool:
        raise DTypeError("accuracy: target must be integer class labels [B]")
    check_labels("accuracy", target, out_seq.shape[1], out_seq.shape[2], out_seq.shape)
    return float((predict(out_seq, readout) == target.to(out_seq.device)).double().mean())


def first_spike_steps(out_seq: Tensor) -> Tensor:
    """The step of each neuron's first nonzero output ``[B, K]`` (int64), ``T`` for a
    neuron that never spiked."""
    steps = out_seq.shape[0]
    fired = out_seq != 0
    first = fired.to(torch.uint8).argmax(dim=0)
    return torch.where(fired.any(dim=0), first, steps)


#: Lava-DL's confidence modes: ``probability`` ``r / (Σ_k r + eps)``, ``softmax`` and
#: ``logsoftmax`` (over the classes ``k``).
CONFIDENCE_MODES = ("probability", "softmax", "logsoftmax")


def rate_confidence(out_seq: Tensor, mode: str = "probability", eps: float = 1e-6) -> Tensor:
    """Lava-DL's ``Rate.confidence``: each class's confidence from the rates
    ``r[b, k] = mean_t O[t, b, k]`` ``[B, K]``.

    ``mode="probability"``: ``r / (Σ_k r + eps)``; ``"softmax"``: ``softmax_k(r)``;
    ``"logsoftmax"``: ``log_softmax_k(r)``.

    Args:
        out_seq: the output ``[T, B, K]`` (``[T, B, ...]``: the trailing dims are flattened).
        mode: one of :data:`CONFIDENCE_MODES`.
        eps: added to the denominator of ``"probability"``, ``>= 0`` (Lava-DL's ``1e-6``).
    """
    _check_sequence(out_seq, "rate_confidence")
    mode = _check_mode("rate_confidence", mode)
    eps = check_real("rate_confidence: eps", eps, 0.0)
    return _confidence(out_seq.flatten(2).mean(0), mode, eps)


def moving_window_rate(out_seq: Tensor, window: int) -> Tensor:
    """Lava-DL's ``MovingWindow.rate``: the mean of the last ``window`` steps at every
    step, ``r[t] = (1/W) Σ_{j=0}^{W-1} O[t - j]`` with ``O[t] = 0`` before the first
    step (so the first ``W - 1`` steps are divided by ``W`` too, as Lava-DL's causal FIR
    filter of taps ``1/W`` does).

    Args:
        out_seq: the output ``[T, B, ...]``; the result has its shape.
        window: ``W``, an integer in ``[1, T]``.
    """
    _check_sequence(out_seq, "moving_window_rate")
    window = _check_window("moving_window_rate", "window", window, out_seq.shape[0])
    return _moving_average(out_seq, window)


def moving_window_confidence(
    out_seq: Tensor, window: int, mode: str = "probability", eps: float = 1e-6
) -> Tensor:
    """Lava-DL's ``MovingWindow.confidence``: :func:`rate_confidence` of the
    moving-window rates, at every step ``[T, B, K]`` (normalised over the classes ``K``
    at each step).

    Args:
        out_seq: the output ``[T, B, K]`` (``[T, B, ...]``: the trailing dims are flattened).
        window: ``W``, an integer in ``[1, T]`` (:func:`moving_window_rate`).
        mode: one of :data:`CONFIDENCE_MODES`.
        eps: added to the denominator of ``"probability"``, ``>= 0``.
    """
    _check_sequence(out_seq, "moving_window_confidence")
    window = _check_window("moving_window_confidence", "window", window, out_seq.shape[0])
    mode = _check_mode("moving_window_confidence", mode)
    eps = check_real("moving_window_confidence: eps", eps, 0.0)
    return _confidence(_moving_average(out_seq.flatten(2), window), mode, eps)


def moving_window_predict(out_seq: Tensor, window: int) -> Tensor:
    """Lava-DL's ``MovingWindow.predict``: the class with the largest moving-window
    rate at every step ``[T, B]`` (int64; ties to the lowest index).

    Args:
        out_seq: the output ``[T, B, K]`` (``[T, B, ...]``: the trailing dims are flattened).
        window: ``W``, an integer in ``[1, T]`` (:func:`moving_window_rate`).
    """
    _check_sequence(out_seq, "moving_window_predict")
    window = _check_window("moving_window_predict", "window", window, out_seq.shape[0])
    return _moving_average(out_seq.flatten(2), window).argmax(-1)


class Rate(nn.Module):
    """Lava-DL's ``slayer.classifier.Rate``: the rate over the whole sequence,
    ``r = mean_t O[t]``, as the confidence score; calling it predicts.

    Its methods are static, as Lava-DL's: ``Rate.predict(out_seq)``.
    """

    def forward(self, out_seq: Tensor) -> Tensor:
        """:meth:`predict`."""
        return Rate.predict(out_seq)

    @staticmethod
    def rate(out_seq: Tensor) -> Tensor:
        """The rate ``mean_t O[t]`` ``[B, ...]`` of ``out_seq`` ``[T, B, ...]``."""
        _check_sequence(out_seq, "Rate.rate")
        return out_seq.mean(0)

    @staticmethod
    def confidence(out_seq: Tensor, mode: str = "probability", eps: float = 1e-6) -> Tensor:
        """:func:`rate_confidence` ``[B, K]``."""
        return rate_confidence(out_seq, mode, eps)

    @staticmethod
    def predict(out_seq: Tensor) -> Tensor:
        """The class with the largest rate ``[B]`` (int64; ties to the lowest index):
        :func:`predict` with ``"rate"``, the trailing dims of ``[T, B, ...]`` flattened."""
        _check_sequence(out_seq, "Rate.predict")
        return out_seq.flatten(2).mean(0).argmax(-1)


class MovingWindow(nn.Module):
    """Lava-DL's ``slayer.classifier.MovingWindow``: the rate over the last
    ``time_window`` steps, at every step; calling it predicts (Lava-DL's ``forward``
    computes the prediction and returns None).

    Args:
        time_window: the window ``W``, an integer ``>= 1`` (at most the ``T`` of the
            sequences it is given).
        mode: the default mode of :meth:`confidence`, one of :data:`CONFIDENCE_MODES`.
        eps: added to the denominator of ``"probability"``, ``>= 0``.
    """

    def __init__(self, time_window: int, mode: str = "probability", eps: float = 1e-6) -> None:
        super().__init__()
        self.time_window = check_int("MovingWindow: time_window", time_window, 1)
        self.mode = _check_mode("MovingWindow", mode)
        self.eps = check_real("MovingWindow: eps", eps, 0.0)

    def extra_repr(self) -> str:
        return f"time_window={self.time_window}, mode={self.mode!r}, eps={self.eps:g}"

    def forward(self, out_seq: Tensor) -> Tensor:
        """:meth:`predict`."""
        return self.predict(out_seq)

    def rate(self, out_seq: Tensor) -> Tensor:
        """:func:`moving_window_rate` ``[T, B, ...]``."""
        return moving_window_rate(out_seq, self.time_window)

    def confidence(self, out_seq: Tensor, mode: str | None = None) -> Tensor:
        """:func:`moving_window_confidence` ``[T, B, K]`` in ``mode`` (None: the
        object's)."""
        return moving_window_confidence(
            out_seq, self.time_window, self.mode if mode is None else mode, self.eps
        )

    def predict(self, out_seq: Tensor) -> Tensor:
        """:func:`moving_window_predict` ``[T, B]``."""
        return moving_window_predict(out_seq, self.time_window)


def _check_sequence(out_seq: Tensor, owner: str) -> None:
    """``out_seq`` is a floating ``[T, B, K, ...]`` tensor with ``T, B >= 1``; else a
    ShapeError or DTypeError naming ``owner``."""
    if not isinstance(out_seq, Tensor) or out_seq.dim() < 3:
        shape = tuple(out_seq.shape) if isinstance(out_seq, Tensor) else type(out_seq).__name__
        raise ShapeError(f"{owner}: out_seq must be a [T, B, K] tensor, got {shape}")
    if not out_seq.is_floating_point():
        raise DTypeError(f"{owner}: out_seq must be floating point, got {out_seq.dtype}")
    if out_seq.shape[0] == 0 or out_seq.shape[1] == 0 or out_seq[0, 0].numel() == 0:
        raise ShapeError(
            f"{owner}: out_seq has no steps, samples or classes ({tuple(out_seq.shape)})"
        )


def _check_mode(owner: str, mode: object) -> str:
    """``mode`` if it is one of :data:`CONFIDENCE_MODES`, else a ConfigurationError."""
    if not isinstance(mode, str) or mode not in CONFIDENCE_MODES:
        raise ConfigurationError(
            f"{owner}: mode must be one of {', '.join(CONFIDENCE_MODES)}, got {mode!r}"
        )
    return mode


def _check_window(owner: str, name: str, window: object, steps: int, of: str = "out_seq") -> int:
    """``window`` as an int if it is an integer in ``[1, steps]``, else a
    ConfigurationError naming ``owner``, ``name``, ``T`` and what has the steps (``of``)."""
    window = check_int(f"{owner}: {name}", window, 1)
    if window > steps:
        raise ConfigurationError(
            f"{owner}: {name} ({window}) is longer than the T = {steps} steps of {of}"
        )
    return window


#: The time blocks of :func:`_causal_filter`: ``L`` steps, but at least this many (long
#: enough for matrix products to pay) ...
_FILTER_BLOCK = 64
#: ... and at most this many (the ``[S, S]`` matrices stay small whatever ``L`` and ``T``).
_FILTER_BLOCK_MAX = 512


def _causal_filter(seq: Tensor, taps: Tensor) -> Tensor:
    """``y[t] = Σ_{j=0}^{L-1} taps[j] · seq[t - j]`` along the first (time) dim of
    ``seq`` ``[T, ...]``, with ``seq`` zero before step 0 (Lava-DL's ``conv`` in time,
    at sampling time 1); ``taps`` ``[L]``, constants (no gradient). No checks.

    Time is cut into blocks of ``S = min(max(L, 64), 512, T)`` steps: a block's output
    is the sum, over the ``⌈(L − 1) / S⌉ + 1`` block offsets ``k`` that hold taps, of one
    ``[S, S]`` Toeplitz matrix (the taps at lags ``k S − S + 1 .. k S + S − 1``) times
    the input ``k`` blocks back, all blocks and signals in one matrix product per
    ``k``: about ``2 T (L + S)`` multiply-adds per signal, and memory linear in ``T``
    (the input, the output and one ``S²`` matrix per ``k``). A window as long as the
    sequence builds no ``[T, T]`` matrix: SpikeRate with ``moving_window = 4999`` on a
    float32 ``[5000, 32, 10]`` (6 MiB), forward and backward, peaked 837 MiB above the
    input with ``S = L`` blocks, 65 MiB with these. At ``L = 100`` this takes two
    products, as fast as Lava-DL-style one-channel ``F.conv1d`` is slow (50 ms against
    about 2 ms for ``[300, 32, 10]`` on one CPU thread)."""
    steps = seq.shape[0]
    taps = taps[:steps].to(dtype=seq.dtype, device=seq.device)  # taps past T never act
    length = taps.numel()
    size = min(max(length, _FILTER_BLOCK), _FILTER_BLOCK_MAX, steps)
    blocks = -(-steps // size)
    flat = seq.reshape(steps, -1)
    signals = flat.shape[1]
    x = F.pad(flat, (0, 0, 0, blocks * size - steps))
    # [S, blocks * signals]: column (b, n) holds block b of signal n, so one 2-D product
    # filters every block (a [S, S] @ [blocks, S, n] product would copy the matrix for
    # each block).
    x = x.view(blocks, size, signals).transpose(0, 1).reshape(size, blocks * signals)
    index = torch.arange(size, device=seq.device)
    lag = index[:, None] - index[None, :]  # output step - input step, within a block
    y = None
    for back in range(min(-(-(length - 1) // size) + 1, blocks)):  # blocks back
        lags = lag + back * size
        valid = (lags >= 0) & (lags < length)
        toeplitz = torch.where(valid, taps[lags.clamp(0, length - 1)], 0.0)
        term = toeplitz @ x[:, : (blocks - back) * signals]
        term = F.pad(term, (back * signals, 0)) if back else term
        y = term if y is None else y + term
    assert y is not None  # back = 0 always runs
    y = y.view(size, blocks, signals).transpose(0, 1).reshape(blocks * size, signals)
    return y[:steps].reshape(seq.shape)


def _moving_average(seq: Tensor, window: int) -> Tensor:
    """:func:`moving_window_rate` without its checks."""
    return _causal_filter(seq, torch.full((window,), 1.0 / window, dtype=torch.float64))


def _confidence(rates: Tensor, mode: str, eps: float) -> Tensor:
    """The confidence of ``rates`` ``[..., K]`` over the last dim (modes as
    :func:`rate_confidence`). No checks."""
    if mode == "probability":
        return rates / (rates.sum(-1, keepdim=True) + eps)
    if mode == "softmax":
        return rates.softmax(-1)
    return rates.log_softmax(-1)
