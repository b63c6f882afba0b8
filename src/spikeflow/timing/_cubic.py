"""Single-spike SRM layers with a finite-support cubic PSP (SpikingJelly 2.0's
``timing_based.functional.cubic_srm`` / ``cubic_conv2d``, ``neuron.CubicSRM`` /
``CubicConv2d``), solved with :func:`~spikeflow.timing.first_spike_time`.

Each input event at ``t_i`` adds ``w h(t - t_i)`` to the membrane, with the unit-peak
cubic kernel::

    h(u) = 27/4 · z (1 - z)²,   z = u / support,   for 0 < z < 1;   0 elsewhere

(it rises from 0 with slope ``27 / (4 support)``, peaks at 1 a third of the way in and
returns to 0 smoothly at ``support``). Every output fires at most once, at the first
upward crossing of ``v_threshold`` in ``[0, duration]``; there is no reset, no output
kernel, no leak beyond the kernel's own support. Between the knots (the window's ends,
each event and each event's end ``t_i + support``) the membrane is a cubic polynomial,
so the stationary points are the roots of a quadratic: with them the window splits into
monotone pieces and the crossing is found exactly (no time grid).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from spikeflow._checks import check_int, check_real
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.timing._events import (
    check_dense_events,
    check_events,
    check_features,
    initial_weight,
    pad_events,
)
from spikeflow.timing.solver import first_spike_time

__all__ = ["CubicConv2d", "CubicSRM", "cubic_conv2d", "cubic_srm"]

_PEAK = 27.0 / 4.0  # h's normaliser: 27/4 · z (1 - z)² peaks at 1 (z = 1/3)


def _check_params(owner: str, duration: float, support: float, v_threshold: float) -> tuple:
    return (
        check_real(f"{owner}: duration", duration, 0.0, low_open=True),
        check_real(f"{owner}: support", support, 0.0, low_open=True),
        check_real(f"{owner}: v_threshold", v_threshold, 0.0, low_open=True),
    )


def _residual(time: Tensor, piece: Tensor, coef: Tensor, origin: Tensor) -> tuple[Tensor, Tensor]:
    """``V - 1`` and ``dV/dt`` at ``time [B, O, Q]`` from the cubic of each query's
    interval (``piece // 3``: each interval is split into three monotone pieces)."""
    interval = piece // 3
    c = coef.gather(2, interval.unsqueeze(-1).expand(*interval.shape, 4))
    s = time - origin.expand(*coef.shape[:3]).gather(2, interval)
    c0, c1, c2, c3 = c.unbind(-1)
    value = ((c3 * s + c2) * s + c1) * s + c0 - 1
    slope = (3 * c3 * s + 2 * c2) * s + c1
    return value, slope


def cubic_srm(
    spike_times: Tensor,
    input_indices: Tensor,
    batch_offsets: Tensor,
    weight: Tensor,
    duration: float,
    support: float = 2.0,
    v_threshold: float = 1.0,
) -> tuple[Tensor, Tensor, Tensor]:
    """Run a single-spike cubic-PSP SRM layer on a compact event batch (module
    docstring; SpikingJelly 2.0's ``functional.cubic_srm``).

    Computed in float64 whatever the input dtype. The membrane of each interval is a
    cubic fitted exactly from the events active on it (``O(B · N · M)`` work and memory
    for ``N`` events per trial and ``M = 2N + 1`` intervals); the stationary points split
    it into monotone pieces and :func:`~spikeflow.timing.first_spike_time` bisects the
    first piece that crosses. A membrane that only touches the threshold (within
    rounding) at a local maximum does not fire; a crossing at ``duration`` counts.

    Args:
        spike_times, input_indices, batch_offsets: the input event batch ``[E]``,
            ``[E]``, ``[B+1]`` (see :func:`~spikeflow.timing.tempotron`); times in
            ``[0, duration]`` (SpikingJelly drops events outside it; spikeflow refuses
            them). An input may carry any number of events.
        weight: ``[O, I]``, each input's PSP amplitude (peak voltage); same dtype and
            device as the times.
        duration: end of the window ``[0, duration]``.
        support: the PSP's length (default 2, SpikingJelly's), in the times' unit.
        v_threshold: the threshold ``θ > 0`` (default 1).

    Returns:
        The output event batch ``(times [S], indices [S], offsets [B+1])``, at most one
        spike per output and trial, ordered by trial then output; silent outputs emit
        nothing. The times are differentiable w.r.t. ``weight`` and the input times
        (implicit function theorem at the crossing; one-sided where a spike appears or
        vanishes or changes piece).

    Raises:
        DTypeError, ShapeError, ConfigurationError: bad events (see
            :func:`~spikeflow.timing.check_events`), weights or hyperparameters.
    """
    owner = "cubic_srm"
    dur, sup, theta = _check_params(owner, duration, support, v_threshold)
    check_dense_events(owner, spike_times, input_indices, batch_offsets, weight, dur)
    bsz, out = batch_offsets.numel() - 1, weight.shape[0]
    if spike_times.numel() == 0:
        empty = spike_times.new_empty(0) + 0 * weight.sum()
        return empty, input_indices.new_empty(0), batch_offsets.new_zeros(bsz + 1)
    ev = pad_events(spike_times, input_indices, batch_offsets, dur)
    times = torch.where(ev.valid, spike_times.double()[ev.source.clamp_min(0)], ev.times)
    w = (weight.double()[:, ev.index] * ev.valid / theta).permute(1, 0, 2)  # [B, O, N]
    with torch.no_grad():
        start = ev.times
        end = start + sup  # the same floats as the knots, so activity compares exactly
        knots = (
            torch.cat(
                (
                    start.new_zeros(bsz, 1),
                    start.new_full((bsz, 1), dur),
                    torch.where(ev.valid, start, dur),
                    torch.where(ev.valid & (end < dur), end, dur),
                ),
                1,
            )
            .sort(1)
            .values
        )  # [B, M+1]
        mid = (knots[:, :-1] + knots[:, 1:]) / 2  # [B, M]
        active = (
            ev.valid[:, None, :]
            & (start[:, None, :] < mid[:, :, None])
            & (mid[:, :, None] < end[:, None, :])
        )  # [B, M, N]: the events whose PSP covers interval m
    # The cubic of each interval in s = t - knot: h's Taylor terms at z0 = (knot - t_i)/S.
    z0 = torch.where(active, (knots[:, :-1, None] - times[:, None, :]) / sup, 0.0)
    basis = (
        _PEAK
        * torch.stack(
            (
                z0 * (1 - z0) ** 2,
                (1 - 4 * z0 + 3 * z0**2) / sup,
                (3 * z0 - 2) / sup**2,
                torch.full_like(z0, 1.0 / sup**3),
            ),
            -1,
        )
        * active.unsqueeze(-1)
    )
    coef = torch.einsum("bon,bmnk->bomk", w, basis)  # [B, O, M, 4]
    with torch.no_grad():
        boundaries, extrema = _monotone_pieces(coef.detach(), knots)
    roots = first_spike_time(_residual, boundaries, (coef, knots[:, None, :-1]), extrema)
    firing = torch.isfinite(roots)
    index = torch.arange(out, device=roots.device).expand_as(roots)
    totals = firing.sum(1)
    offsets = torch.cat((totals.new_zeros(1), totals.cumsum(0)))
    return roots[firing].to(spike_times.dtype), index[firing], offsets


def _monotone_pieces(coef: Tensor, knots: Tensor) -> tuple[Tensor, Tensor]:
    """Split each interval ``[k_m, k_m+1]`` at its cubic's stationary points: boundaries
    ``[B, O, 3M+1]`` (absent points sit at the interval's right end: empty pieces) and
    the extremum flags ``[B, O, 3M, 2]`` of each piece's ends."""
    c0, c1, c2, c3 = coef.unbind(-1)
    left = knots[:, None, :-1].expand_as(c0)
    right = knots[:, None, 1:].expand_as(c0)
    width = right - left
    # dV/ds = 3 c3 s² + 2 c2 s + c1: roots by the cancellation-free quadratic formula.
    a, b = 3 * c3, 2 * c2
    disc = b * b - 4 * a * c1
    quadratic = (a != 0) & (disc >= 0)
    linear = (a == 0) & (b != 0)
    radical = torch.sqrt(torch.where(quadratic, disc, 0.0))
    q = -0.5 * (b + torch.where(b >= 0, radical, -radical))
    r1 = torch.where(
        quadratic, q / torch.where(quadratic, a, 1.0), -c1 / torch.where(linear, b, 1.0)
    )
    r2 = c1 / torch.where(quadratic & (q != 0), q, 1.0)
    has1, has2 = quadratic | linear, quadratic & (q != 0)
    # A simple root changes the slope's sign (an extremum); a double root does not.
    simple = linear | (quadratic & (disc > 0))
    inside1 = has1 & (r1 > 0) & (r1 < width)
    inside2 = has2 & (r2 > 0) & (r2 < width)
    p1 = torch.where(inside1, (left + r1).clamp(min=left, max=right), right)
    p2 = torch.where(inside2, (left + r2).clamp(min=left, max=right), right)
    # Knot flags: the slope changes sign (or vanishes) across the knot; the window's
    # start is flagged (V = 0 there), its end is not (a crossing at it counts).
    end_slope = (3 * c3 * width + 2 * c2) * width + c1
    knot_flag = end_slope[..., :-1] * c1[..., 1:] <= 0
    first = torch.ones_like(knot_flag[..., :1])
    last = torch.zeros_like(knot_flag[..., :1])
    at_left = torch.cat((first, knot_flag), -1)  # [B, O, M]
    at_right = torch.cat((knot_flag, last), -1)
    f1 = torch.where(inside1, simple, at_right)
    f2 = torch.where(inside2, simple, at_right)
    low, high = torch.minimum(p1, p2), torch.maximum(p1, p2)
    swap = p1 > p2
    flag_low, flag_high = torch.where(swap, f2, f1), torch.where(swap, f1, f2)
    boundaries = torch.cat((left[..., :1], torch.stack((low, high, right), -1).flatten(-2)), -1)
    lefts = torch.stack((at_left, flag_low, flag_high), -1)
    rights = torch.stack((flag_low, flag_high, at_right), -1)
    extrema = torch.stack((lefts, rights), -1).flatten(-3, -2)
    return boundaries, extrema


def _conv_geometry(
    owner: str, weight: Tensor, input_size: Sequence[int], stride: int, padding: int
) -> tuple[int, int, int, int, int]:
    if not isinstance(weight, Tensor) or weight.ndim != 4 or min(weight.shape) < 1:
        got = tuple(weight.shape) if isinstance(weight, Tensor) else type(weight).__name__
        raise ShapeError(f"{owner}: weight must have shape [C_out, C_in, k, k], got {got}")
    if weight.shape[-1] != weight.shape[-2]:
        raise ShapeError(
            f"{owner}: the kernel must be square (SpikingJelly's), got {tuple(weight.shape[-2:])}"
        )
    if not isinstance(input_size, Sequence) or len(input_size) != 2:
        raise ConfigurationError(f"{owner}: input_size must be (H, W), got {input_size!r}")
    h = check_int(f"{owner}: input_size[0]", input_size[0], 1)
    w = check_int(f"{owner}: input_size[1]", input_size[1], 1)
    stride = check_int(f"{owner}: stride", stride, 1)
    padding = check_int(f"{owner}: padding", padding, 0)
    k = weight.shape[-1]
    h_out, w_out = (h + 2 * padding - k) // stride + 1, (w + 2 * padding - k) // stride + 1
    if h_out < 1 or w_out < 1:
        raise ConfigurationError(
            f"{owner}: a {k}x{k} kernel with padding {padding} does not fit the input "
            f"{h}x{w}: no output position"
        )
    return h, w, h_out, w_out, k


def cubic_conv2d(
    spike_times: Tensor,
    input_indices: Tensor,
    batch_offsets: Tensor,
    weight: Tensor,
    input_size: Sequence[int],
    duration: float,
    support: float = 2.0,
    v_threshold: float = 1.0,
    stride: int = 1,
    padding: int = 0,
) -> tuple[Tensor, Tensor, Tensor]:
    """A convolution of single-spike cubic-PSP neurons (SpikingJelly 2.0's
    ``functional.cubic_conv2d``): each receptive field is a :func:`cubic_srm` trial
    with the shared weights, PyTorch's ``Conv2d`` cross-correlation indexing (padding
    adds no events), no bias, groups or dilation.

    Args:
        spike_times, input_indices, batch_offsets: the input event batch; an event's
            index is ``c · H · W + y · W + x`` (several events per position allowed).
        weight: ``[C_out, C_in, k, k]``, same dtype and device as the times.
        input_size: ``(H, W)`` (sparse indices do not tell it).
        duration, support, v_threshold: as :func:`cubic_srm`.
        stride, padding: the same on both axes.

    Returns:
        ``(times [S], indices [S], offsets [B+1])`` with output indices
        ``c_out · H' · W' + y' · W' + x'`` (``H' = (H + 2 padding - k) // stride + 1``),
        ordered by trial then index; at most one spike per output position.

    Raises:
        DTypeError, ShapeError, ConfigurationError: bad events, weights, geometry or
            hyperparameters.
    """
    owner = "cubic_conv2d"
    dur, sup, theta = _check_params(owner, duration, support, v_threshold)
    h, w, h_out, w_out, k = _conv_geometry(owner, weight, input_size, stride, padding)
    c_in = weight.shape[1]
    check_events(owner, spike_times, input_indices, batch_offsets, c_in * h * w, dur)
    bsz, places = batch_offsets.numel() - 1, h_out * w_out
    device = spike_times.device
    trial = torch.repeat_interleave(
        torch.arange(bsz, device=device), batch_offsets.diff(), output_size=spike_times.numel()
    )
    channel = input_indices // (h * w)
    y = input_indices // w % h + padding
    x = input_indices % w + padding
    offs = torch.arange(k, device=device)
    rows, cols = y[:, None] - offs, x[:, None] - offs  # [E, k]: row · stride = y - ky
    ok_r = (rows >= 0) & (rows % stride == 0) & (rows // stride < h_out)
    ok_c = (cols >= 0) & (cols % stride == 0) & (cols // stride < w_out)
    valid = ok_r[:, :, None] & ok_c[:, None, :]  # [E, ky, kx]
    patch = (trial[:, None, None] * places + (rows // stride)[:, :, None] * w_out
             + (cols // stride)[:, None, :])[valid]  # fmt: skip
    local = channel[:, None, None] * k * k + offs[None, :, None] * k + offs[None, None, :]
    local = local.expand_as(valid)[valid]
    source = torch.arange(spike_times.numel(), device=device)[:, None, None].expand_as(valid)
    source = source[valid]
    order = torch.argsort(patch, stable=True)
    counts = torch.bincount(patch, minlength=bsz * places)
    times, index, offsets = cubic_srm(
        spike_times[source[order]],
        local[order],
        torch.cat((counts.new_zeros(1), counts.cumsum(0))),
        weight.flatten(1),
        dur,
        sup,
        theta,
    )
    field = torch.repeat_interleave(
        torch.arange(bsz * places, device=device), offsets.diff(), output_size=times.numel()
    )
    index = index * places + field % places
    batch = field // places
    order = torch.argsort(batch * (weight.shape[0] * places) + index, stable=True)
    totals = torch.bincount(batch, minlength=bsz)
    return times[order], index[order], torch.cat((totals.new_zeros(1), totals.cumsum(0)))


class CubicSRM(nn.Module):
    """A single-spike cubic-PSP SRM layer with trainable weights ``[O, I]``
    (SpikingJelly 2.0's ``timing_based.neuron.CubicSRM``); see :func:`cubic_srm`.
    Weights start N(0, 0.001²), as SJ's. Stateless: every call is a new set of trials.

    Args:
        in_features, out_features: ``I, O >= 1``.
        duration: end of the window ``[0, duration]``.
        support: the PSP's length (default 2).
        v_threshold: the threshold (default 1).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        duration: float,
        support: float = 2.0,
        v_threshold: float = 1.0,
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = check_features("CubicSRM", in_features, out_features)
        self.duration, self.support, self.v_threshold = _check_params(
            "CubicSRM", duration, support, v_threshold
        )
        self.weight = initial_weight(self.out_features, self.in_features)

    def forward(
        self, spike_times: Tensor, input_indices: Tensor, batch_offsets: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The output event batch ``(times, indices, offsets)`` (see :func:`cubic_srm`)."""
        return cubic_srm(
            spike_times,
            input_indices,
            batch_offsets,
            self.weight,
            self.duration,
            self.support,
            self.v_threshold,
        )

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"duration={self.duration:g}, support={self.support:g}, "
            f"v_threshold={self.v_threshold:g}"
        )


class CubicConv2d(nn.Module):
    """A convolution of single-spike cubic-PSP neurons with trainable weights
    ``[C_out, C_in, k, k]`` (SpikingJelly 2.0's ``timing_based.neuron.CubicConv2d``);
    see :func:`cubic_conv2d`. Weights start N(0, 0.001²), as SJ's.

    Args:
        in_channels, out_channels, kernel_size: ``C_in``, ``C_out``, ``k >= 1``.
        duration: end of the window ``[0, duration]``.
        support: the PSP's length (default 2).
        v_threshold: the threshold (default 1).
        stride, padding: the same on both axes (default 1, 0).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        duration: float,
        support: float = 2.0,
        v_threshold: float = 1.0,
        stride: int = 1,
        padding: int = 0,
    ) -> None:
        super().__init__()
        self.in_channels = check_int("CubicConv2d: in_channels", in_channels, 1)
        self.out_channels = check_int("CubicConv2d: out_channels", out_channels, 1)
        self.kernel_size = check_int("CubicConv2d: kernel_size", kernel_size, 1)
        self.stride = check_int("CubicConv2d: stride", stride, 1)
        self.padding = check_int("CubicConv2d: padding", padding, 0)
        self.duration, self.support, self.v_threshold = _check_params(
            "CubicConv2d", duration, support, v_threshold
        )
        k = self.kernel_size
        self.weight = initial_weight(self.out_channels, self.in_channels, k, k)

    def forward(
        self,
        spike_times: Tensor,
        input_indices: Tensor,
        batch_offsets: Tensor,
        input_size: Sequence[int],
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The output event batch for inputs of spatial size ``input_size = (H, W)``
        (see :func:`cubic_conv2d`)."""
        return cubic_conv2d(
            spike_times,
            input_indices,
            batch_offsets,
            self.weight,
            input_size,
            self.duration,
            self.support,
            self.v_threshold,
            self.stride,
            self.padding,
        )

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"duration={self.duration:g}, support={self.support:g}, "
            f"v_threshold={self.v_threshold:g}, stride={self.stride}, padding={self.padding}"
        )
