"""Warping events by a flow field and splatting them into images (differentiable).

An event at pixel ``(x, y)`` and time ``tau`` (in window units: window ``k`` spans
``[k, k + 1]``) moves with the flow ``u = (u_x, u_y)`` of its own window at its pixel,
in pixels per window, to the reference time ``t_ref``::

    x' = x + (t_ref - tau) u_x,     y' = y + (t_ref - tau) u_y

and is spread over the four pixels around ``(x', y')`` with bilinear weights
``max(0, 1 - |x' - i|) max(0, 1 - |y' - j|)``; corners off the sensor are dropped.
The images of warped events (IWE) sum these weights per pixel and polarity; images of
warped timestamps sum ``weight * tau``. Gradients reach the flow through ``x', y'``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.flow.windows import EventWindows

__all__ = ["event_flow", "event_times", "image_of_warped_events", "splat", "warp_positions"]


def _check_flow(flow: Tensor, windows: EventWindows) -> None:
    expected = (windows.num_windows, windows.batch_size, 2, windows.height, windows.width)
    if not isinstance(flow, Tensor) or flow.dim() != 5 or tuple(flow.shape) != expected:
        shape = tuple(flow.shape) if isinstance(flow, Tensor) else type(flow).__name__
        raise ShapeError(
            f"flow must be [T, B, 2, H, W] = {list(expected)} for these windows, got {shape}"
        )
    if not flow.is_floating_point():
        raise DTypeError(f"flow must be floating-point, got {flow.dtype}")


def event_flow(flow: Tensor, windows: EventWindows) -> Tensor:
    """The flow of each event's window at its pixel: ``[T, B, N, 2]`` (x, y components;
    padding events get their window's flow at pixel (0, 0), weighted out later)."""
    _check_flow(flow, windows)
    T, B, _, H, W = flow.shape
    flat = flow.reshape(T, B, 2, H * W)
    index = (windows.y * W + windows.x).unsqueeze(2).expand(T, B, 2, -1)
    return flat.gather(3, index).permute(0, 1, 3, 2)


def event_times(windows: EventWindows, dtype: torch.dtype) -> Tensor:
    """``tau = k + t``: each event's time in window units over the ``T`` windows."""
    k = torch.arange(windows.num_windows, dtype=dtype, device=windows.t.device)
    return windows.t.to(dtype) + k.view(-1, 1, 1)


def warp_positions(
    windows: EventWindows, flow_e: Tensor, tau: Tensor, t_ref: float
) -> tuple[Tensor, Tensor]:
    """``(x', y')``, each ``[T, B, N]``: the events moved by their flow to ``t_ref``."""
    dt = t_ref - tau
    return windows.x.to(tau.dtype) + dt * flow_e[..., 0], windows.y.to(tau.dtype) + dt * flow_e[
        ..., 1
    ]


def splat(
    xw: Tensor,
    yw: Tensor,
    values: Tensor,
    channel: Tensor,
    valid: Tensor,
    num_channels: int,
    height: int,
    width: int,
) -> Tensor:
    """Bilinear splatting of per-event ``values`` into ``[B, num_channels, H, W]``.

    ``xw, yw, values, channel, valid`` are ``[B, M]`` (``values`` may have a trailing
    dim ``V``: the result is then ``[V, B, num_channels, H, W]``, one splat per value
    with the same weights). Corners outside the sensor and invalid events add nothing.
    """
    B = xw.shape[0]
    x0 = torch.floor(xw.detach())
    y0 = torch.floor(yw.detach())
    vals = values if values.dim() == 3 else values.unsqueeze(-1)
    V = vals.shape[-1]
    out = xw.new_zeros(V, B * num_channels * height * width)
    base = (torch.arange(B, device=xw.device).view(B, 1) * num_channels + channel) * height
    for dx in (0.0, 1.0):
        for dy in (0.0, 1.0):
            cx, cy = x0 + dx, y0 + dy
            weight = torch.clamp(1 - (xw - cx).abs(), min=0) * torch.clamp(
                1 - (yw - cy).abs(), min=0
            )
            inside = valid & (cx >= 0) & (cx <= width - 1) & (cy >= 0) & (cy <= height - 1)
            index = ((base + cy.long()) * width + cx.long())[inside]
            contrib = (weight[inside].unsqueeze(-1) * vals[inside]).T
            out.index_add_(1, index, contrib)
    out = out.view(V, B, num_channels, height, width)
    return out if values.dim() == 3 else out[0]


def check_interpolation(interpolation: str) -> None:
    """Raise a ConfigurationError unless ``interpolation`` is ``'bilinear'`` or ``'nearest'``."""
    if interpolation not in ("bilinear", "nearest"):
        raise ConfigurationError(
            f"interpolation must be 'bilinear' or 'nearest', got {interpolation!r}"
        )


def warped(
    windows: EventWindows, flow: Tensor, t_ref: float, interpolation: str
) -> tuple[Tensor, Tensor, Tensor]:
    """``(x', y', tau)`` of the events warped to ``t_ref``; ``'nearest'`` rounds the
    positions (no gradient), ``'bilinear'`` keeps them for splatting."""
    check_interpolation(interpolation)
    tau = event_times(windows, flow.dtype)
    xw, yw = warp_positions(windows, event_flow(flow, windows), tau, t_ref)
    if interpolation == "nearest":  # a splat at a whole pixel puts all the weight there
        xw, yw = torch.round(xw.detach()), torch.round(yw.detach())
    return xw, yw, tau


def image_of_warped_events(
    flow: Tensor,
    windows: EventWindows,
    t_ref: float | None = None,
    *,
    polarity: bool = True,
    interpolation: str = "bilinear",
) -> Tensor:
    """The image of warped events (IWE): the events of the ``T`` windows moved by their
    flow to ``t_ref`` (default ``T``, the end of the last window) and splatted
    bilinearly (or rounded to the nearest pixel, ``interpolation='nearest'``).
    ``[B, 2, H, W]`` (ON, OFF) with ``polarity``, else ``[B, 1, H, W]``. A zero flow
    gives the plain event counts."""
    _check_flow(flow, windows)
    T, B = windows.num_windows, windows.batch_size
    t_ref = float(T) if t_ref is None else float(t_ref)
    xw, yw, _ = warped(windows, flow, t_ref, interpolation)
    channel = (~windows.p).long() if polarity else torch.zeros_like(windows.x)

    def flat(v: Tensor) -> Tensor:  # [T, B, N] -> [B, T*N]
        return v.transpose(0, 1).reshape(B, -1)

    ones = torch.ones_like(xw)
    return splat(
        flat(xw), flat(yw), flat(ones), flat(channel), flat(windows.valid),
        2 if polarity else 1, windows.height, windows.width,
    )  # fmt: skip
