"""The self-supervised contrast-maximisation loss for event-based optical flow
(Hagenaars, Paredes-Vallés and de Croon, NeurIPS 2021, Sec. 3.2; after Zhu et al.,
CVPR 2019).

The events of ``T`` consecutive windows are warped by their windows' flow to a
reference time and splatted into per-polarity images of warped events ``N_+, N_-`` and
of warped timestamps ``S_+, S_-``. The per-pixel average timestamp is
``A_± = S_± / (N_± + 1e-9) / T``: where the flow is right, events of one edge land on
one pixel and the average of their (spread) times is small. The loss of one reference
time is the sum of ``A_+^2 + A_-^2`` over the pixels divided by the number of pixels
that received any warped event (the paper's normalisation, which removes the reward for
warping events off the sensor or onto few pixels):

* forward: ``t_ref = T`` with the time value ``tau`` (time since the chunk began);
* backward: ``t_ref = 0`` with the value ``T - tau``;

in general the value is ``T - |t_ref - tau|``, the event's closeness to ``t_ref``. The
total is ``mean_b(L_fw + L_bw) + smoothness_weight * L_smooth``, where ``L_smooth`` is
the Charbonnier penalty ``sqrt(d^2 + eps^2)`` of the flow differences between
neighbouring pixels (horizontal, vertical, both diagonals) and between consecutive
windows, averaged.

Differences from the official code (tudelft/event_flow): the batch is averaged, not
summed; the Charbonnier penalty is applied to each flow component's difference
(``rho(du) + rho(dv)``; the code penalises ``rho(du + dv)``); the flow is in pixels per
window (the code scales a tanh output by the sensor size inside the loss).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from spikeflow._checks import check_real
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.flow.warp import _check_flow, splat, warped
from spikeflow.flow.windows import EventWindows

__all__ = [
    "ContrastMaximizationLoss",
    "average_timestamp_loss",
    "charbonnier_smoothness",
    "contrast_maximization_loss",
]

_EPS_COUNT = 1e-9  # the official code's guard against empty pixels


def _check_not_empty(windows: EventWindows) -> None:
    per_sample = windows.valid.sum(dim=(0, 2))
    if (per_sample == 0).any():
        b = int((per_sample == 0).nonzero()[0])
        raise ConfigurationError(
            f"sample {b} of the batch has no events in its {windows.num_windows} windows: the "
            "contrast loss is 0/0 there; drop it or use longer windows"
        )


def average_timestamp_loss(
    flow: Tensor, windows: EventWindows, t_ref: float, interpolation: str = "bilinear"
) -> Tensor:
    """The average-timestamp loss of one reference time, per sample: ``[B]``.

    Args:
        flow: ``[T, B, 2, H, W]``, pixels per window (x, y components).
        windows: the ``T`` windows of events the flow was predicted from.
        t_ref: the reference time in window units, in ``[0, T]``.
        interpolation: ``'bilinear'`` splatting (the loss) or ``'nearest'`` (the RSAT
            metric; no gradient through the positions).
    """
    _check_flow(flow, windows)
    _check_not_empty(windows)
    T, B = windows.num_windows, windows.batch_size
    if not 0.0 <= float(t_ref) <= T:
        raise ConfigurationError(f"t_ref = {t_ref} is outside the {T} windows [0, {T}]")
    xw, yw, tau = warped(windows, flow, float(t_ref), interpolation)
    value = T - (float(t_ref) - tau).abs()

    def flat(v: Tensor) -> Tensor:  # [T, B, N, ...] -> [B, T*N, ...]
        return v.transpose(0, 1).reshape(B, -1, *v.shape[3:])

    both = torch.stack([torch.ones_like(value), value], dim=-1)
    images = splat(
        flat(xw), flat(yw), flat(both), flat((~windows.p).long()), flat(windows.valid),
        2, windows.height, windows.width,
    )  # fmt: skip
    counts, stamps = images[0], images[1]  # [B, 2, H, W]
    average = stamps / (counts + _EPS_COUNT) / T
    hit = (counts.sum(1) > 0).flatten(1).sum(1).to(flow.dtype)  # pixels with any warped event
    return (average**2).flatten(1).sum(1) / hit


def _pairs(flow: Tensor, mask: Tensor | None) -> list[tuple[Tensor, Tensor | None]]:
    """Neighbour differences of ``flow`` ``[T, B, 2, H, W]`` and the masks of both ends."""
    slices = [  # (a, b) index pairs over (T, H, W)
        ((slice(None), slice(None), slice(None, -1)), (slice(None), slice(None), slice(1, None))),
        ((slice(None), slice(None, -1), slice(None)), (slice(None), slice(1, None), slice(None))),
        (
            (slice(None), slice(None, -1), slice(None, -1)),
            (slice(None), slice(1, None), slice(1, None)),
        ),
        (
            (slice(None), slice(1, None), slice(None, -1)),
            (slice(None), slice(None, -1), slice(1, None)),
        ),
    ]
    if flow.shape[0] > 1:
        slices.append(
            (
                (slice(None, -1), slice(None), slice(None)),
                (slice(1, None), slice(None), slice(None)),
            )
        )
    out = []
    for (ta, ya, xa), (tb, yb, xb) in slices:
        diff = flow[ta, :, :, ya, xa] - flow[tb, :, :, yb, xb]
        both = None if mask is None else mask[ta, :, :, ya, xa] * mask[tb, :, :, yb, xb]
        out.append((diff, both))
    return out


def charbonnier_smoothness(flow: Tensor, mask: Tensor | None = None, eps: float = 1e-3) -> Tensor:
    """Charbonnier smoothness of ``flow`` ``[T, B, 2, H, W]``: ``sqrt(d^2 + eps^2)`` of
    each component's difference between neighbours (horizontal, vertical, the two
    diagonals, and consecutive windows when ``T > 1``), summed over the two components,
    averaged over the pairs of each kind, then over the kinds. ``mask`` ``[T, B, 1, H, W]``
    (e.g. :meth:`EventWindows.mask`) keeps only pairs whose two ends are 1 (a kind with
    no such pair is left out of the average; none at all gives 0)."""
    if not isinstance(flow, Tensor) or flow.dim() != 5 or flow.shape[2] != 2:
        shape = tuple(flow.shape) if isinstance(flow, Tensor) else type(flow).__name__
        raise ShapeError(f"charbonnier_smoothness: flow must be [T, B, 2, H, W], got {shape}")
    if mask is not None and (
        mask.dim() != 5
        or mask.shape[2] != 1
        or mask.shape[:2] != flow.shape[:2]
        or mask.shape[3:] != flow.shape[3:]
    ):
        raise ShapeError(
            f"charbonnier_smoothness: mask must be [T, B, 1, H, W] matching flow "
            f"{tuple(flow.shape)}, "
            f"got {tuple(mask.shape)}"
        )
    eps = check_real("eps", eps, low=0.0)
    terms = []
    for diff, both in _pairs(flow, None if mask is None else mask.to(flow.dtype)):
        rho = torch.sqrt(diff**2 + eps**2).sum(2, keepdim=True)
        if both is None:
            terms.append(rho.mean())
        elif both.sum() > 0:  # a kind whose pairs are all masked out is left out
            terms.append((rho * both).sum() / both.sum())
    return torch.stack(terms).mean() if terms else flow.sum() * 0.0


def contrast_maximization_loss(
    flow: Tensor | Sequence[Tensor],
    windows: EventWindows,
    smoothness_weight: float = 0.1,
    *,
    mask: Tensor | None = None,
    eps: float = 1e-3,
) -> Tensor:
    """``mean_b(L(t_ref = T) + L(t_ref = 0)) + smoothness_weight * L_smooth`` (module
    docstring). ``smoothness_weight=0.1`` on a flow in pixels with mean reductions is
    about the paper's 0.001 with its sums over 128x128 pixels of a flow in units of 128
    pixels. A list of flows (one per scale) gives the mean of their losses. Raises
    ShapeError for a flow that does not fit the windows and ConfigurationError for a
    sample without events."""
    smoothness_weight = check_real("smoothness_weight", smoothness_weight, low=0.0)
    if not isinstance(flow, Tensor):  # one flow per scale (multi-scale EV-FlowNet): averaged
        flows = list(flow)
        if not flows:
            raise ConfigurationError("contrast_maximization_loss: an empty list of flows")
        terms = [
            contrast_maximization_loss(f, windows, smoothness_weight, mask=mask, eps=eps)
            for f in flows
        ]
        return torch.stack(terms).mean()
    T = windows.num_windows
    loss = (
        average_timestamp_loss(flow, windows, float(T)) + average_timestamp_loss(flow, windows, 0.0)
    ).mean()
    if smoothness_weight > 0:
        loss = loss + smoothness_weight * charbonnier_smoothness(flow, mask, eps)
    return loss


class ContrastMaximizationLoss(nn.Module):
    """:func:`contrast_maximization_loss` as a module.

    Args:
        smoothness_weight: weight of the Charbonnier smoothness (default 0.1).
        eps: the Charbonnier ``eps`` (default 1e-3).
        mask_smoothness: restrict the smoothness to pixels with events (the official
            configuration's ``mask_output``; default True).
    """

    def __init__(
        self, smoothness_weight: float = 0.1, eps: float = 1e-3, mask_smoothness: bool = True
    ) -> None:
        super().__init__()
        self.smoothness_weight = check_real("smoothness_weight", smoothness_weight, low=0.0)
        self.eps = check_real("eps", eps, low=0.0)
        self.mask_smoothness = bool(mask_smoothness)

    def forward(self, flow: Tensor | Sequence[Tensor], windows: EventWindows) -> Tensor:
        """The loss of ``flow`` ``[T, B, 2, H, W]`` (or a list of them) on ``windows``."""
        dtype = flow.dtype if isinstance(flow, Tensor) else flow[0].dtype
        mask = windows.mask(dtype) if self.mask_smoothness else None
        return contrast_maximization_loss(
            flow, windows, self.smoothness_weight, mask=mask, eps=self.eps
        )

    def extra_repr(self) -> str:
        return (
            f"smoothness_weight={self.smoothness_weight:g}, eps={self.eps:g}, "
            f"mask_smoothness={self.mask_smoothness}"
        )
