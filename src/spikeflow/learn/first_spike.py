"""Convolutional STDP with one spike per neuron: Kheradpisheh et al. (2018) and the
reward-modulated decision layer of Mozafari et al. (2019), in SpykeTorch's form.

Tensors are cumulative spike waves, time-major ``[T, B, C, H, W]``: a neuron that
fired at step ``t`` is 1 from ``t`` on (:func:`~spikeflow.encoding.intensity_to_latency`
makes them from images), so a convolution without bias and with non-negative weights
turns them into non-decreasing potentials in one call, and max pooling of a wave is
pooling by the first spike.

- :func:`fire_once`: threshold the potentials; each neuron fires once, at the first
  step above its threshold (``None``: an infinite threshold, all "fire" at the last
  step with their final potential, the decision layer's readout).
- :func:`pointwise_inhibition`: at each position only the map that fired first (the
  larger potential on a tie) keeps its spike.
- :func:`k_winners`: the ``k`` neurons that fired first (ties: larger potential), at
  most one per map, and none within ``inhibition_radius`` of an earlier winner.
- :func:`first_spike_stdp`: the simplified STDP of Kheradpisheh et al. on the winners:
  ``Δw = a+ · w(1−w)`` where the input fired no later than the winner, else
  ``a− · w(1−w)`` (``a− < 0``); :func:`reward_stdp` is Mozafari et al.'s R-STDP (STDP
  on reward, anti-STDP with its own rates on punishment).
- :func:`kheradpisheh_rates` and :func:`adaptive_rstdp_rates`: the papers' rate schedules.
- :func:`decide`: the class of the first neuron to fire (−1: none fired).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from spikeflow._checks import check_int, check_real
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError

__all__ = [
    "adaptive_rstdp_rates",
    "decide",
    "fire_once",
    "first_spike_stdp",
    "k_winners",
    "kheradpisheh_rates",
    "pointwise_inhibition",
    "reward_stdp",
]


def _check_wave(name: str, x: Tensor) -> None:
    if not isinstance(x, Tensor) or x.dim() != 5 or 0 in x.shape:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ShapeError(f"{name}: expects a non-empty [T, B, C, H, W] tensor, got {shape}")
    if not x.is_floating_point():
        raise DTypeError(f"{name}: expects floating point, got {x.dtype}")


def fire_once(potentials: Tensor, threshold: float | None) -> tuple[Tensor, Tensor]:
    """Spikes and thresholded potentials of ``potentials [T, B, C, H, W]``.

    A neuron fires at the first step its potential exceeds ``threshold`` (strictly)
    and its spike wave is 1 from then on; the thresholded potentials are the
    potentials where the wave is 1, else 0. ``threshold=None``: an infinite threshold,
    only the last step counts (a neuron "fires" there if its potential is positive),
    SpykeTorch's ``fire(potentials)``. For non-decreasing potentials (cumulative input
    waves, non-negative weights) this is SpykeTorch's ``fire(potentials, threshold,
    True)``.
    """
    _check_wave("fire_once", potentials)
    if bool(potentials.isnan().any()):  # NaN never crosses a threshold: silent neurons
        raise ConfigurationError("fire_once: potentials hold NaN")
    if threshold is None:
        last = potentials[-1:]
        kept = torch.cat(
            [torch.zeros_like(potentials[:-1]), torch.where(last > 0, last, torch.zeros_like(last))]
        )
        return (kept > 0).to(potentials.dtype), kept
    th = check_real("fire_once: threshold", threshold)
    spikes = (torch.cummax((potentials > th).to(torch.uint8), dim=0).values).to(potentials.dtype)
    return spikes, potentials * spikes


def _first_step(spikes: Tensor) -> Tensor:
    """The step of each neuron's first spike, ``T`` where it never fires."""
    fired = spikes > 0
    steps = spikes.shape[0]
    first = torch.where(fired.any(0), fired.to(torch.uint8).argmax(0), steps)
    return first


def pointwise_inhibition(thresholded: Tensor) -> Tensor:
    """Keep, at each position of ``thresholded [T, B, C, H, W]``, only the map that
    fired first (on a tie the larger thresholded potential at that step, then the
    lower map index); a position where no map fired is all zero. SpykeTorch's
    ``pointwise_inhibition``."""
    _check_wave("pointwise_inhibition", thresholded)
    steps = thresholded.shape[0]
    first = _first_step(thresholded).amin(dim=1)  # [B, H, W] earliest step per position
    at = thresholded.gather(
        0, first.clamp(max=steps - 1)[None, :, None].expand(1, -1, thresholded.shape[2], -1, -1)
    )[0]
    winner = at.argmax(dim=1, keepdim=True)  # first maximum: the lower index
    keep = torch.zeros_like(at).scatter_(1, winner, 1.0) * (first < steps)[:, None]
    return thresholded * keep[None]


def k_winners(
    potentials: Tensor, spikes: Tensor, k: int = 1, inhibition_radius: int = 0
) -> tuple[Tensor, Tensor]:
    """The ``k`` first-firing neurons of each sample (SpykeTorch's ``get_k_winners``).

    Neurons are ranked by their first spike (earlier first), then by their potential
    at that step (larger first), then by their index ``(c, h, w)`` in memory order. A
    winner removes its map from the competition and, with ``inhibition_radius = r``,
    every map within ``r`` of its position (Chebyshev). Returns ``winners [B, k, 3]``
    (long: map, row, column) and ``valid [B, k]`` (False once no neuron is left that
    fired; its row is 0).
    """
    _check_wave("k_winners", potentials)
    if spikes.shape != potentials.shape:
        raise ShapeError(
            f"k_winners: spikes {tuple(spikes.shape)} and potentials "
            f"{tuple(potentials.shape)} differ"
        )
    bad = potentials.isnan().flatten(2).any(0).any(-1) | spikes.isnan().flatten(2).any(0).any(-1)
    if bool(bad.any()):  # a NaN key would make the whole sample look silent
        raise ConfigurationError(
            f"k_winners: potentials or spikes hold NaN (samples {bad.nonzero()[:, 0].tolist()})"
        )
    k = check_int("k_winners: k", k, 1)
    r = check_int("k_winners: inhibition_radius", inhibition_radius, 0)
    steps, batch, channels, height, width = potentials.shape
    first = _first_step(spikes)  # [B, C, H, W]
    value = potentials.gather(0, first.clamp(max=steps - 1)[None])[0].double()
    scale = 2 * value.abs().amax(dim=(1, 2, 3), keepdim=True) + 1
    key = ((steps - first).double() * scale + value).masked_fill(first == steps, -torch.inf)
    key = key.reshape(batch, -1)
    winners = torch.zeros(batch, k, 3, dtype=torch.long, device=potentials.device)
    valid = torch.zeros(batch, k, dtype=torch.bool, device=potentials.device)
    rows = torch.arange(height, device=potentials.device)
    cols = torch.arange(width, device=potentials.device)
    for i in range(k):
        best, index = key.max(dim=1)
        ok = best > -torch.inf
        c, h, w = index // (height * width), index // width % height, index % width
        winners[:, i] = torch.stack([c, h, w], 1) * ok[:, None]
        valid[:, i] = ok
        grid = key.view(batch, channels, height, width)
        grid[torch.arange(batch), c] = torch.where(
            ok[:, None, None], -torch.inf, grid[torch.arange(batch), c]
        )
        if r:
            near = (
                ((rows[None, :, None] - h[:, None, None]).abs() <= r)
                & ((cols[None, None, :] - w[:, None, None]).abs() <= r)
                & ok[:, None, None]
            )
            grid.masked_fill_(near[:, None], -torch.inf)
    return winners, valid


def _rates(name: str, rate: float | Tensor, batch: int, channels: int, like: Tensor) -> Tensor:
    """A rate as ``[B, C]`` (from a number, ``[C]`` per map or ``[B, C]``)."""
    rate = torch.as_tensor(rate, dtype=like.dtype, device=like.device)
    if rate.dim() == 1 and rate.shape[0] == channels:
        rate = rate[None]
    if rate.dim() > 2 or not (rate.dim() < 1 or rate.shape[-1] in (1, channels)):
        raise ShapeError(
            f"{name}: expects a number, [C] or [B, C] with C = {channels}, got {tuple(rate.shape)}"
        )
    if not bool(torch.isfinite(rate).all()):  # would turn every weight it touches to NaN
        raise ConfigurationError(f"{name}: must be finite, got {rate.tolist()}")
    return rate.expand(batch, channels)


def first_spike_stdp(
    weight: Tensor,
    pre_spikes: Tensor,
    post_spikes: Tensor,
    winners: Tensor,
    valid: Tensor,
    a_plus: float | Tensor = 0.004,
    a_minus: float | Tensor = -0.003,
    stabilizer: bool = True,
    bounds: tuple[float, float] = (0.0, 1.0),
) -> Tensor:
    """Kheradpisheh et al.'s simplified STDP on the winners: the new weights.

    ``weight [C_out, C_in, kh, kw]`` of a stride-1 convolution without padding (pad
    the input yourself) whose input wave is ``pre_spikes [T, B, C_in, H, W]`` and
    output wave ``post_spikes [T, B, C_out, H', W']``; ``winners``, ``valid`` from
    :func:`k_winners`. For each valid winner ``(c, h, w)`` of a sample, the weights of
    map ``c`` change by ``a+`` where the input of its receptive field at ``(h, w)``
    fired no later than the winner, else by ``a−`` (also where it never fired), times
    ``(w − lo)(hi − w)`` with ``stabilizer``. The changes of the samples (computed from
    the same weights) add up, then the weights are clipped to ``bounds``; with one
    sample per call it is SpykeTorch's ``STDP`` (whose stabilizer is ``w(1 − w)``
    whatever the bounds: the same for bounds ``(0, 1)``). ``a_plus``, ``a_minus``: numbers,
    per map ``[C_out]`` or per sample and map ``[B, C_out]``.
    """
    if weight.dim() != 4:
        raise ShapeError(
            f"first_spike_stdp: expects weight [C_out, C_in, kh, kw], got {tuple(weight.shape)}"
        )
    _check_wave("first_spike_stdp: pre_spikes", pre_spikes)
    _check_wave("first_spike_stdp: post_spikes", post_spikes)
    c_out, c_in, kh, kw = weight.shape
    steps, batch, _, height, width = pre_spikes.shape
    expected = (steps, batch, c_out, height - kh + 1, width - kw + 1)
    if pre_spikes.shape[2] != c_in or tuple(post_spikes.shape) != expected:
        raise ShapeError(
            f"first_spike_stdp: pre_spikes {tuple(pre_spikes.shape)} with weight "
            f"{tuple(weight.shape)} (stride 1, no padding) give post_spikes {expected}, "
            f"got {tuple(post_spikes.shape)}"
        )
    if (
        winners.shape[:1] != (batch,)
        or winners.dim() != 3
        or winners.shape[-1] != 3
        or (valid.shape != winners.shape[:2])
    ):
        raise ShapeError(
            f"first_spike_stdp: expects winners [B, k, 3] and valid [B, k] "
            f"with B = {batch}, got {tuple(winners.shape)}, {tuple(valid.shape)}"
        )
    if winners.dtype not in (torch.int32, torch.int64) or valid.dtype != torch.bool:
        raise DTypeError(
            f"first_spike_stdp: expects winners int64 and valid bool (from k_winners), "
            f"got {winners.dtype}, {valid.dtype}"
        )
    limits = torch.tensor([c_out, height - kh + 1, width - kw + 1], device=winners.device)
    outside = valid[..., None] & ((winners < 0) | (winners >= limits))
    if bool(outside.any()):
        b, i = outside.any(-1).nonzero()[0].tolist()
        raise ShapeError(
            f"first_spike_stdp: winners[{b}, {i}] = {winners[b, i].tolist()} lies outside "
            f"the output maps [C_out, H', W'] = {limits.tolist()}"
        )
    winners = winners.long() * valid[..., None]  # invalid rows: any content, read as 0
    for name, wave in (("pre_spikes", pre_spikes), ("post_spikes", post_spikes)):
        if bool((wave[1:] < wave[:-1]).any()):
            raise ConfigurationError(
                f"first_spike_stdp: {name} must be a cumulative spike wave (1 from the "
                f"first spike on, non-decreasing in time), got one that falls; a "
                f"one-spike train, or the sign of potentials that fall after firing "
                f"(negative weights), becomes one with torch.cummax((x > 0).to(x.dtype), 0)"
                f".values"
            )
    lo, hi = (
        check_real("first_spike_stdp: bounds[0]", bounds[0]),
        check_real("first_spike_stdp: bounds[1]", bounds[1]),
    )
    if lo >= hi:
        raise ConfigurationError(f"first_spike_stdp: bounds must increase, got {bounds}")
    ap = _rates("first_spike_stdp: a_plus", a_plus, batch, c_out, weight)
    an = _rates("first_spike_stdp: a_minus", a_minus, batch, c_out, weight)
    pre_lat = pre_spikes.sum(0).to(weight.dtype)  # steps since the first spike (0: none)
    post_lat = post_spikes.sum(0).to(weight.dtype)
    patches = F.unfold(pre_lat, (kh, kw)).view(batch, c_in, kh, kw, -1)  # [B, Cin, kh, kw, L]
    lr = torch.zeros(batch, c_out, c_in, kh, kw, dtype=weight.dtype, device=weight.device)
    b_idx = torch.arange(batch, device=weight.device)
    for i in range(winners.shape[1]):
        c, h, w = winners[:, i].unbind(1)
        field = patches[b_idx, :, :, :, h * (width - kw + 1) + w]  # [B, Cin, kh, kw]
        earlier = field >= post_lat[b_idx, c, h, w][:, None, None, None]
        rate = torch.where(
            earlier, ap[b_idx, c][:, None, None, None], an[b_idx, c][:, None, None, None]
        )
        rate = rate * valid[:, i, None, None, None].to(weight.dtype)
        lr[b_idx, c] = torch.where(valid[:, i, None, None, None], rate, lr[b_idx, c])
    factor = (weight - lo) * (hi - weight) if stabilizer else torch.ones_like(weight)
    return (weight + lr.sum(0) * factor).clamp(lo, hi)


def reward_stdp(
    weight: Tensor,
    pre_spikes: Tensor,
    post_spikes: Tensor,
    winners: Tensor,
    valid: Tensor,
    reward: Tensor,
    stdp_rates: tuple[float, float] = (0.004, -0.003),
    anti_stdp_rates: tuple[float, float] = (-0.004, 0.0005),
    stabilizer: bool = False,
    bounds: tuple[float, float] = (0.2, 0.8),
) -> Tensor:
    """Mozafari et al.'s R-STDP on a decision layer's winners: the new weights.

    ``reward [B]``: +1 (the decision was right: STDP with ``stdp_rates = (a+, a−)``),
    −1 (wrong: anti-STDP, ``anti_stdp_rates = (a+, a−)`` with the signs swapped:
    depression where the input fired no later than the winner, a little potentiation
    elsewhere), 0 (no change, e.g. no neuron fired). The rest is
    :func:`first_spike_stdp` (defaults: Mozafari et al.'s decision layer, no
    stabilizer, weights in [0.2, 0.8]).
    """
    reward = torch.as_tensor(reward, device=weight.device)
    if reward.dim() != 1 or reward.shape[0] != pre_spikes.shape[1]:
        raise ShapeError(
            f"reward_stdp: expects reward [B] with B = {pre_spikes.shape[1]}, "
            f"got {tuple(reward.shape)}"
        )
    if not bool(((reward == 1) | (reward == -1) | (reward == 0)).all()):
        raise ConfigurationError("reward_stdp: reward must hold -1, 0 or 1")
    r = reward.to(weight.dtype)[:, None]
    pos, neg = (r > 0).to(weight.dtype), (r < 0).to(weight.dtype)
    a_plus = pos * stdp_rates[0] + neg * anti_stdp_rates[0]
    a_minus = pos * stdp_rates[1] + neg * anti_stdp_rates[1]
    c_out = weight.shape[0]
    return first_spike_stdp(
        weight,
        pre_spikes,
        post_spikes,
        winners,
        valid & (r != 0),
        a_plus.expand(-1, c_out),
        a_minus.expand(-1, c_out),
        stabilizer,
        bounds,
    )


def kheradpisheh_rates(
    images_seen: int,
    a_plus: float = 0.004,
    ratio: float = -0.75,
    every: int = 500,
    max_a_plus: float = 0.15,
) -> tuple[float, float]:
    """``(a+, a−)`` for the image after ``images_seen - 1`` others (``images_seen`` counts
    the current one): ``a+`` doubles each ``every`` images up to ``max_a_plus``,
    ``a− = ratio · a+`` (Kheradpisheh et al. 2018, as SpykeTorch's ``MozafariDeep``
    schedules its STDP layers: 0.004 / −0.003 at first, at most 0.15)."""
    n = check_int("kheradpisheh_rates: images_seen", images_seen, 1)
    every = check_int("kheradpisheh_rates: every", every, 1)
    ap = min(a_plus * 2.0 ** min(n // every, 1000), max_a_plus)  # no float overflow
    return ap, ratio * ap


def adaptive_rstdp_rates(
    hit: float,
    miss: float,
    stdp_rates: tuple[float, float] = (0.004, -0.003),
    anti_stdp_rates: tuple[float, float] = (-0.004, 0.0005),
) -> tuple[tuple[float, float], tuple[float, float]]:
    """Mozafari et al.'s adaptive R-STDP rates: the reward rates scaled by the fraction
    of wrong decisions ``miss`` and the punishment rates by the fraction of right ones
    ``hit`` (of the last batch), so that learning slows as it succeeds and a frequent
    class is not over-punished."""
    hit = check_real("adaptive_rstdp_rates: hit", hit, 0.0, 1.0)
    miss = check_real("adaptive_rstdp_rates: miss", miss, 0.0, 1.0)
    return (
        (stdp_rates[0] * miss, stdp_rates[1] * miss),
        (anti_stdp_rates[0] * hit, anti_stdp_rates[1] * hit),
    )


def decide(
    potentials: Tensor, decision_map: Sequence[int] | Tensor, threshold: float | None = None
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The decision layer's answer: the class of each sample's first neuron to fire.

    ``potentials [T, B, C, H, W]``, ``decision_map [C]`` the class of each map. Returns
    ``classes [B]`` (−1 where no neuron fired), the spikes of :func:`fire_once`, and
    ``winners``, ``valid`` (:func:`k_winners` with ``k = 1``) for :func:`reward_stdp`.
    """
    _check_wave("decide", potentials)
    raw = torch.as_tensor(decision_map, device=potentials.device)
    if raw.shape != (potentials.shape[2],):
        raise ShapeError(
            f"decide: decision_map must have one class per map ({potentials.shape[2]}), "
            f"got shape {tuple(raw.shape)}"
        )
    dmap = raw.long()
    if raw.is_complex() or bool((dmap != raw).any()) or bool((dmap < 0).any()):
        raise ConfigurationError(  # -1 means silence; 0.5 used to become class 0
            f"decide: decision_map must hold whole classes >= 0, got {raw.tolist()}"
        )
    spikes, kept = fire_once(potentials, threshold)
    winners, valid = k_winners(kept, spikes, 1)
    classes = torch.where(valid[:, 0], dmap[winners[:, 0, 0]], -1)
    return classes, spikes, winners, valid
