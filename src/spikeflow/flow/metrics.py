"""Optical-flow evaluation: errors against ground truth, and the event-alignment metrics
that need none.

* :func:`endpoint_errors`: average endpoint error (AEE) and the percentage of outliers
  (error > 3 px and > 5 % of the ground-truth magnitude, KITTI's definition) over the
  pixels where the ground truth is valid and, optionally, where there were events.
* :func:`flow_warp_loss`: FWL (Stoffregen, Scheerlinck et al., ECCV 2020), the variance of
  the image of warped events over that of the unwarped events: > 1 when the flow
  sharpens the image.
* :func:`rsat`: the ratio of the average-timestamp loss with the flow to that with zero
  flow (Hagenaars et al. 2021): < 1 when the flow aligns the events.

Both alignment metrics round warped events to the nearest pixel, as the official code
(tudelft/event_flow) does.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.flow.loss import average_timestamp_loss
from spikeflow.flow.warp import image_of_warped_events
from spikeflow.flow.windows import EventWindows

__all__ = ["FlowErrors", "endpoint_errors", "flow_warp_loss", "rsat"]


class FlowErrors(NamedTuple):
    """Per-sample errors ``[B]``: ``aee`` (pixels), ``outliers`` (percent of the counted
    pixels), ``pixels`` (how many were counted; NaN errors where it is 0)."""

    aee: Tensor
    outliers: Tensor
    pixels: Tensor


def _mask(name: str, mask: Tensor | None, batch: int, height: int, width: int) -> Tensor | None:
    if mask is None:
        return None
    m = mask.squeeze(1) if mask.dim() == 4 and mask.shape[1] == 1 else mask
    if m.dim() != 3 or tuple(m.shape) != (batch, height, width):
        raise ShapeError(
            f"endpoint_errors: {name} must be [B, H, W] or [B, 1, H, W] = "
            f"{[batch, height, width]}, got {tuple(mask.shape)}"
        )
    return m.bool()


def endpoint_errors(
    flow: Tensor,
    gt: Tensor,
    valid: Tensor | None = None,
    event_mask: Tensor | None = None,
    *,
    outlier_px: float = 3.0,
    outlier_fraction: float = 0.05,
) -> FlowErrors:
    """AEE and outliers of ``flow`` against ``gt``, both ``[B, 2, H, W]`` in pixels over
    the same time span (scale a per-window flow by ``dt_gt / dt_window`` first).

    Args:
        valid: ``[B, H, W]`` (or ``[B, 1, H, W]``) where the ground truth is defined (DSEC's
            valid channel; MVSEC marks it by a non-zero flow: ``gt.abs().sum(1) > 0``).
        event_mask: where there were events (the sparse evaluation of MVSEC and DSEC).
        outlier_px, outlier_fraction: a pixel is an outlier when its error exceeds both
            ``outlier_px`` and ``outlier_fraction`` of the ground-truth magnitude.
    """
    if (
        not isinstance(flow, Tensor)
        or flow.dim() != 4
        or flow.shape[1] != 2
        or not isinstance(gt, Tensor)
        or gt.shape != flow.shape
    ):
        shapes = [tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__ for v in (flow, gt)]
        raise ShapeError(
            f"endpoint_errors: flow and gt must both be [B, 2, H, W], got {shapes[0]} and "
            f"{shapes[1]}"
        )
    B, _, H, W = flow.shape
    keep = torch.ones(B, H, W, dtype=torch.bool, device=flow.device)
    for name, m in (("valid", valid), ("event_mask", event_mask)):
        checked = _mask(name, m, B, H, W)
        if checked is not None:
            keep = keep & checked
    error = (flow - gt).norm(dim=1)
    outlier = (error > outlier_px) & (error > outlier_fraction * gt.norm(dim=1))
    pixels = keep.flatten(1).sum(1)
    n = pixels.to(flow.dtype)
    aee = torch.where(keep, error, torch.zeros_like(error)).flatten(1).sum(1) / n
    share = (outlier & keep).flatten(1).sum(1).to(flow.dtype) / n * 100.0
    return FlowErrors(aee, share, pixels)


def flow_warp_loss(flow: Tensor, windows: EventWindows) -> Tensor:
    """FWL per sample ``[B]``: spatial variance of the image of events warped to the end of
    the ``T`` windows over that of the unwarped events (both polarities together).

    Raises:
        ConfigurationError: a sample whose unwarped image has zero variance (no events).
    """
    iwe = image_of_warped_events(flow, windows, polarity=False, interpolation="nearest")
    plain = image_of_warped_events(
        torch.zeros_like(flow), windows, polarity=False, interpolation="nearest"
    )
    base = plain.flatten(1).var(1)
    if (base == 0).any():
        b = int((base == 0).nonzero()[0])
        raise ConfigurationError(
            f"flow_warp_loss: sample {b} has no events (its image of events has zero variance)"
        )
    return iwe.flatten(1).var(1) / base


def rsat(flow: Tensor, windows: EventWindows) -> Tensor:
    """RSAT per sample ``[B]``: forward average-timestamp loss of ``flow`` over that of
    zero flow, events rounded to the nearest pixel.

    Raises:
        ConfigurationError: a sample without events, or whose zero-flow loss is 0 (every
            event at time 0 of the chunk, e.g. one window of one event): 0/0.
    """
    T = float(windows.num_windows)
    with torch.no_grad():
        warped = average_timestamp_loss(flow, windows, T, interpolation="nearest")
        zero = average_timestamp_loss(torch.zeros_like(flow), windows, T, interpolation="nearest")
    if (zero == 0).any():
        b = int((zero == 0).nonzero()[0])
        raise ConfigurationError(
            f"rsat: sample {b} has a zero-flow loss of 0 (all its events at time 0 of the "
            "chunk), so the ratio is 0/0; use more windows or windows of more events"
        )
    return warped / zero
