"""A continuous-event spike response model (SRM) layer with exact spike times, as
SpikingJelly 2.0's ``timing_based.functional.srm`` / ``neuron.SRM`` define it.

The input kernel is the ramp ``ε(s) = max(s, 0)`` (each input event starts a constant
current ``w``) and each output spike adds ``η = -θ`` (reset by subtraction, the current
kept). No leak, no refractory period; an output may fire many times. Without resets the
membrane would be the piecewise-linear response ``R(t) = Σ_i w_i (t - t_i)_+``; with
them ``V = R - k θ`` after ``k`` spikes, so the ``k``-th spike is the first time ``R``
reaches ``k θ``, solved exactly on the linear piece where it happens::

    t_k = (k θ + Σ_{i before} w_i t_i) / Σ_{i before} w_i

(the sums over the inputs that arrived before the crossing).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from spikeflow._checks import check_int, check_real
from spikeflow.errors import ConfigurationError
from spikeflow.timing._events import check_dense_events, check_features, initial_weight, pad_events

__all__ = ["SRM", "srm"]


def srm(
    spike_times: Tensor,
    input_indices: Tensor,
    batch_offsets: Tensor,
    weight: Tensor,
    duration: float,
    v_threshold: float = 1.0,
    max_spikes: int = 64,
) -> tuple[Tensor, Tensor, Tensor]:
    """Run an SRM layer on a compact event batch (module docstring).

    Args:
        spike_times, input_indices, batch_offsets: the input event batch ``[E]``,
            ``[E]``, ``[B+1]`` (see :func:`~spikeflow.timing.tempotron`); times in
            ``[0, duration]``.
        weight: ``[O, I]``, the current (voltage per time unit) each input event starts;
            same dtype and device as the times.
        duration: end of the window ``[0, duration]``; a crossing right at it counts.
        v_threshold: threshold and reset size ``θ > 0``.
        max_spikes: most spikes one output may fire in one trial; more raise a
            :class:`~spikeflow.errors.ConfigurationError` (nothing is cut silently).

    Returns:
        The output event batch ``(times [S], indices [S], offsets [B+1])``, ordered by
        trial, output neuron, spike order: it can feed the next SRM layer. Output times
        are differentiable w.r.t. ``weight`` and the input times (the formula above;
        where a spike appears, vanishes or changes piece the derivative is one-sided).
    """
    owner = "srm"
    dur = check_real(f"{owner}: duration", duration, 0.0, low_open=True)
    theta = check_real(f"{owner}: v_threshold", v_threshold, 0.0, low_open=True)
    cap = check_int(f"{owner}: max_spikes", max_spikes, 1)
    check_dense_events(owner, spike_times, input_indices, batch_offsets, weight, dur)
    ev = pad_events(spike_times, input_indices, batch_offsets, dur)
    bsz, n = ev.times.shape
    out = weight.shape[0]
    tt = spike_times.double()[ev.source.clamp_min(0)] if spike_times.numel() else ev.times
    tt = torch.where(ev.valid, tt, ev.times)[:, None, :]  # [B, 1, N]
    w = (weight.double()[:, ev.index] * ev.valid).permute(1, 0, 2)  # [B, O, N]
    slope = w.cumsum(-1)  # Σ w over the inputs so far: the current on each piece
    moment = (w * tt).cumsum(-1)  # Σ w t_i, so that R(t) = slope · t - moment
    with torch.no_grad():
        slot = torch.arange(n, device=ev.times.device)
        last = slot[None, :] == (ev.count[:, None] - 1)
        nxt = torch.cat((ev.times[:, 1:], ev.times.new_full((bsz, 1), dur)), 1)
        end = torch.where(last | ~ev.valid, dur, nxt)[:, None, :]
        r_end = torch.where(ev.valid[:, None, :], slope * end - moment, 0.0)
        running = r_end.cummax(-1).values.clamp_min(0)
        count = torch.floor(running[..., -1] / theta).long()  # spikes per [B, O]
    if bool((count > cap).any()):
        raise ConfigurationError(
            f"{owner}: an output fires {int(count.max())} times in one trial, more than "
            f"max_spikes = {cap}; raise max_spikes"
        )
    k = max(int(count.max()), 0) if count.numel() else 0
    if k == 0:
        empty = spike_times.new_empty(0) + 0 * weight.sum()
        return empty, input_indices.new_empty(0), batch_offsets.new_zeros(bsz + 1)
    levels = theta * torch.arange(1, k + 1, dtype=torch.float64, device=ev.times.device)
    levels = levels.expand(bsz, out, k).contiguous()
    piece = torch.searchsorted(running.contiguous(), levels).clamp_max(n - 1)
    active = levels <= (count[..., None] * theta)
    s1 = slope.gather(-1, piece)
    s2 = moment.gather(-1, piece)
    safe = torch.where(active, s1, 1.0)
    times = (levels + s2) / safe
    output_times = times[active].to(spike_times.dtype)
    index = torch.arange(out, device=ev.times.device)[None, :, None].expand_as(active)
    totals = count.sum(1)
    offsets = torch.cat((totals.new_zeros(1), totals.cumsum(0)))
    return output_times, index[active], offsets


class SRM(nn.Module):
    """An SRM layer with trainable weights ``[O, I]`` (SpikingJelly 2.0's
    ``timing_based.neuron.SRM``); see :func:`srm`. Weights start N(0, 0.001²).

    Args:
        in_features, out_features: ``I, O >= 1``.
        duration: end of the window ``[0, duration]``.
        v_threshold: threshold and reset size (default 1).
        max_spikes: most spikes per output and trial (default 64).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        duration: float,
        v_threshold: float = 1.0,
        max_spikes: int = 64,
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = check_features("SRM", in_features, out_features)
        self.duration = check_real("SRM: duration", duration, 0.0, low_open=True)
        self.v_threshold = check_real("SRM: v_threshold", v_threshold, 0.0, low_open=True)
        self.max_spikes = check_int("SRM: max_spikes", max_spikes, 1)
        self.weight = initial_weight(self.out_features, self.in_features)

    def forward(
        self, spike_times: Tensor, input_indices: Tensor, batch_offsets: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The output event batch ``(times, indices, offsets)`` (see :func:`srm`)."""
        return srm(
            spike_times,
            input_indices,
            batch_offsets,
            self.weight,
            self.duration,
            self.v_threshold,
            self.max_spikes,
        )

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"duration={self.duration:g}, v_threshold={self.v_threshold:g}, "
            f"max_spikes={self.max_spikes}"
        )
