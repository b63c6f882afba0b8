"""Target spike trains for rate-coded losses (snnTorch's ``spikegen.targets_rate``): one
train per output neuron, the label's neuron at one rate and the others at another, and
the membrane ramps of snnTorch's ``interpolate`` option (:func:`ramp_targets`).

Latency-coded targets need no function of their own: they are
:class:`~spikeflow.encoding.LatencyEncoder` applied to one-hot labels (see
``docs/encoding.md``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from spikeflow._checks import check_int, check_real
from spikeflow.encoding._common import check_generator, check_generator_device
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError

__all__ = ["FIRING_PATTERNS", "ramp_targets", "target_spike_trains"]

#: The firing patterns of :func:`target_spike_trains`.
FIRING_PATTERNS = ("regular", "uniform", "poisson")


def _regular_steps(T: int, t0: int, rate: float) -> Tensor:
    """The steps of the regular train (int64, CPU): ``floor(t0 + k / rate) < T``.

    As snnTorch, the times are a float32 ``torch.arange`` truncated to integers, so the
    steps are the same bits (a float32 time that rounds up to ``T`` is dropped).
    """
    if rate == 0.0:
        return torch.zeros(0, dtype=torch.int64)
    steps = torch.arange(t0, T, 1.0 / rate, dtype=torch.float32).long()
    return steps[steps < T]


def _check_labels(labels: object, num_classes: int, owner: str) -> Tensor:
    if not isinstance(labels, Tensor):
        raise DTypeError(f"{owner}: labels must be a tensor, got {type(labels).__name__}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise DTypeError(f"{owner}: labels must be integer class labels, got {labels.dtype}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ConfigurationError(
            f"{owner}: labels must lie in [0, {num_classes - 1}], "
            f"got range [{int(labels.min())}, {int(labels.max())}]"
        )
    return labels


def _check_dtype(dtype: object, owner: str) -> torch.dtype:
    if dtype is None:
        return torch.get_default_dtype()
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise DTypeError(f"{owner}: dtype must be a floating-point torch.dtype, got {dtype!r}")
    return dtype


def target_spike_trains(
    labels: Tensor,
    num_classes: int,
    T: int,
    correct_rate: float = 1.0,
    incorrect_rate: float = 0.0,
    firing_pattern: str = "regular",
    first_spike_time: int = 0,
    on_target: float = 1.0,
    off_target: float = 0.0,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """Target trains for the output neurons of a classifier (snnTorch's ``targets_rate``).

    The neuron of each label fires at ``correct_rate`` (spikes per step), every other
    neuron at ``incorrect_rate``, from step ``t0 = first_spike_time`` on; the output is
    ``on_target`` at a spike and ``off_target`` elsewhere (0/1 spikes by default; other
    values make membrane targets). A train of rate ``r`` is, by ``firing_pattern``:

    - ``'regular'``: spikes at ``floor(t0 + k / r)``, ``k = 0, 1, ...``, below ``T``
      (computed as snnTorch does, in float32: bit-identical to its ``target_rate_code``);
    - ``'uniform'``: as many draws as the regular train has spikes, each a step drawn
      uniformly from ``[t0, T)``; draws that fall on the same step make one spike;
    - ``'poisson'``: a Bernoulli(``r``) spike at every step from ``t0`` on.

    Rate 0 never fires, in every pattern. The random patterns draw every neuron of every
    sample independently (snnTorch draws one train for the correct neurons and one for
    the others and shares them across the batch: the same distribution per neuron).

    Args:
        labels: integer class labels, any shape (``[B]`` usually), in
            ``[0, num_classes)``.
        num_classes: the number of output neurons (``>= 1``).
        T: the number of steps (``>= 1``).
        correct_rate: the label neuron's rate, in ``[0, 1]`` (default 1: every step).
        incorrect_rate: the other neurons' rate, in ``[0, 1]`` (default 0: silent).
        firing_pattern: ``'regular'`` (default), ``'uniform'`` or ``'poisson'``.
        first_spike_time: ``t0``, the first step that may fire, in ``[0, T - 1]``.
        on_target: the value at a spike (default 1.0).
        off_target: the value elsewhere (default 0.0).
        generator: a :class:`torch.Generator` on the labels' device for the random
            patterns; ``None`` uses torch's global generator.
        dtype: a floating dtype for the result (default: torch's default dtype).

    Returns:
        ``[T, *labels.shape, num_classes]``, time-major, on the labels' device.

    Raises:
        DTypeError: ``labels`` is not an integer tensor, or ``dtype`` is not floating.
        ConfigurationError: a bad argument or a label outside ``[0, num_classes)``.

    Example::

        >>> target_spike_trains(torch.tensor([1]), 3, T=5, correct_rate=0.5,
        ...                     incorrect_rate=0.25)[:, 0]
        tensor([[1., 1., 1.],
                [0., 0., 0.],
                [0., 1., 0.],
                [0., 0., 0.],
                [1., 1., 1.]])
    """
    owner = "target_spike_trains"
    num_classes = check_int(f"{owner}: num_classes", num_classes, 1)
    T = check_int(f"{owner}: T", T, 1)
    labels = _check_labels(labels, num_classes, owner)
    rates = (
        check_real(f"{owner}: correct_rate", correct_rate, 0.0, 1.0),
        check_real(f"{owner}: incorrect_rate", incorrect_rate, 0.0, 1.0),
    )
    if firing_pattern not in FIRING_PATTERNS:
        raise ConfigurationError(
            f"{owner}: firing_pattern must be one of {FIRING_PATTERNS}, got {firing_pattern!r}"
        )
    t0 = check_int(f"{owner}: first_spike_time", first_spike_time, 0)
    if t0 > T - 1:
        raise ConfigurationError(
            f"{owner}: first_spike_time must be at most T - 1 = {T - 1}, got {t0}"
        )
    on = check_real(f"{owner}: on_target", on_target)
    off = check_real(f"{owner}: off_target", off_target)
    generator = check_generator(generator, owner)
    check_generator_device(generator, labels, owner)
    dtype = _check_dtype(dtype, owner)

    device = labels.device
    is_label = F.one_hot(labels.long(), num_classes).to(torch.bool)  # [*, C]
    shape = tuple(is_label.shape)
    regular = [_regular_steps(T, t0, r) for r in rates]
    if firing_pattern == "regular":
        trains = []
        for steps in regular:
            train = torch.zeros(T, dtype=torch.bool)
            train[steps] = True
            trains.append(train.to(device).view(T, *([1] * len(shape))))
        fires = torch.where(is_label, trains[0], trains[1])
    elif firing_pattern == "poisson":
        rate = torch.where(
            is_label,
            torch.tensor(rates[0], dtype=torch.float64, device=device),
            torch.tensor(rates[1], dtype=torch.float64, device=device),
        )
        u = torch.rand((T, *shape), generator=generator, dtype=torch.float64, device=device)
        fires = u < rate
        fires[:t0] = False
    else:  # uniform
        counts = [len(steps) for steps in regular]
        draws = max(counts)
        n = torch.where(is_label, counts[0], counts[1])  # draws kept per neuron
        u = torch.rand((draws, *shape), generator=generator, dtype=torch.float64, device=device)
        steps = (t0 + torch.floor(u * (T - t0))).long().clamp_max(T - 1)
        kept = torch.arange(draws, device=device).view(-1, *([1] * len(shape))) < n
        # dropped draws go to an extra step T, cut off afterwards
        steps = torch.where(kept, steps, T)
        fires = torch.zeros((T + 1, *shape), dtype=torch.bool, device=device)
        fires.scatter_(0, steps, True)
        fires = fires[:T]
    values = torch.tensor([off, on], dtype=dtype, device=device)
    return values[fires.long()]


def ramp_targets(spikes: Tensor, on_target: float = 1.0, off_target: float = 0.0) -> Tensor:
    """Membrane targets that ramp up to each spike (snnTorch's ``interpolate=True``).

    For every element of a train ``spikes [T, *]`` (nonzero: a spike), the target is
    ``on_target`` at a spike; on the steps before it, back to the step after the
    previous spike (or step 0), it rises linearly from ``off_target``::

        target[t] = off + (on - off) (t - p - 1) / (n - p - 1)   for p < t <= n

    with ``n`` the next spike at or after ``t`` and ``p`` the last spike before ``t``
    (``-1`` if none); after the last spike (and for a silent element) it is
    ``off_target``. snnTorch's ``rate_interpolate`` and ``latency_interpolate`` give
    these values (to float rounding): ``ramp_targets(target_spike_trains(...))`` is
    ``targets_rate(..., interpolate=True)``, and ``ramp_targets`` of a latency code its
    ``latency(..., interpolate=True)``.

    Args:
        spikes: a train ``[T, *]`` (time-major, any dtype; nonzero is a spike).
        on_target: the value at a spike (default 1.0).
        off_target: the value the ramps start from (default 0.0).

    Returns:
        ``[T, *]`` in ``spikes``' dtype if it is floating point, else torch's default.

    Raises:
        DTypeError: ``spikes`` is not a tensor.
        ShapeError: ``spikes`` has no time dimension.
        ConfigurationError: a bad ``on_target`` or ``off_target``.

    Example::

        >>> ramp_targets(torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]))
        tensor([1.0000, 0.0000, 0.3333, 0.6667, 1.0000, 0.0000])
    """
    owner = "ramp_targets"
    if not isinstance(spikes, Tensor):
        raise DTypeError(f"{owner}: spikes must be a tensor, got {type(spikes).__name__}")
    if spikes.dim() < 1:
        raise ShapeError(f"{owner}: spikes must be a train [T, ...]; got a 0-dim tensor")
    on = check_real(f"{owner}: on_target", on_target)
    off = check_real(f"{owner}: off_target", off_target)
    dtype = spikes.dtype if spikes.is_floating_point() else torch.get_default_dtype()
    fired = spikes.detach() != 0
    T = fired.shape[0]
    if T == 0:
        return torch.zeros(fired.shape, dtype=dtype, device=spikes.device)
    t = torch.arange(T, device=spikes.device).view(-1, *([1] * (fired.dim() - 1)))
    # the last spike at or before t, then strictly before t
    last = torch.where(fired, t, -1).cummax(0).values
    prev = torch.cat((torch.full_like(last[:1], -1), last[:-1]))
    # the next spike at or after t (T: none)
    nxt = torch.where(fired, t, T).flip(0).cummin(0).values.flip(0)
    span = (nxt - prev - 1).clamp_min(1).to(torch.float64)
    ramp = off + (on - off) * ((t - prev - 1).to(torch.float64) / span)
    out = torch.where(nxt < T, ramp, off)
    return torch.where(fired, on, out).to(dtype)
