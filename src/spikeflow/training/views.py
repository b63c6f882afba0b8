"""Two augmented views of a training batch, for STCL (``--loss stcl``; Qiu et al. 2023).

:class:`TwoViews` turns a batch ``[B, ..., H, W]`` (images ``[B, C, H, W]`` or frames
``[B, T, C, H, W]``) into ``[2B, ..., H, W]``: two independent random augmentations of
each sample, the first ``B`` the first view, the next ``B`` the second. Each view of a
sample is shifted by whole pixels (up to ``H // 8`` and ``W // 8``; the uncovered border
filled with zeros, what a random crop of a zero-padded image gives), the same at every
time step of a frame sequence. An axis shorter than 8 is not shifted (a shift of one
row of a 1-row input, a 1-D sensor's ``[.., 1, C]`` frames, left it all zeros), and an
input shorter than 8 on both is refused (its views would be the same). No mirror:
whether one keeps the label depends on the data (not for digits: with a mirror in the
views STCL lost 2 to 6 points on them, docs/models.md), so it is left to the dataset's
own training augmentation, which comes before. The draws come from a generator the
caller seeds (the trainer: from the run's seed and step, so a resumed run draws as an
uninterrupted one).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from spikeflow.errors import ShapeError

__all__ = ["TWO_VIEW_LOSSES", "TwoViews", "check_two_view_batch"]

#: The losses the trainer feeds two augmented views of each batch.
TWO_VIEW_LOSSES = ("stcl",)


def check_two_view_batch(shape: tuple[int, ...]) -> None:
    """Raise the ShapeError :class:`TwoViews` gives a batch of ``shape`` it cannot make
    two views of (the trainer checks the dataset's batch shape with it before training).

    Raises:
        ShapeError: fewer than 4 dims (audio features ``[B, T, F]``, a flat vector), or
            ``H x W`` shorter than 8 on both axes.
    """
    if len(shape) < 4:
        raise ShapeError(
            f"stcl's two views shift images [B, C, H, W] or frames "
            f"[B, T, C, H, W]; got a batch of shape {shape}"
        )
    height, width = shape[-2:]
    if height < 8 and width < 8:
        raise ShapeError(
            f"stcl's two views shift by up to 1/8 of the height and width: an input of "
            f"H x W = {height} x {width} (batch of shape {shape}) cannot be "
            f"shifted, its two views would be the same (at least 8 on one axis)"
        )


def _shifted(x: Tensor, dy: Tensor, dx: Tensor) -> Tensor:
    """``[B, ..., H, W]`` -> ``[2B, ..., H, W]``: sample ``i % B`` moved by ``dy[i]`` rows
    and ``dx[i]`` columns (``|dy| <= H // 8``, ``|dx| <= W // 8``), zeros filling in.

    One gather per view from the zero-padded batch: output pixel ``(r, c)`` of sample
    ``i`` reads padded pixel ``(r + reach_y - dy[i], c + reach_x - dx[i])``.
    """
    batch, (height, width) = len(x), x.shape[-2:]
    reach_y, reach_x = height // 8, width // 8
    flat = x.reshape(batch, -1, height, width)
    padded = F.pad(flat, (reach_x, reach_x, reach_y, reach_y)).flatten(2)  # [B, M, Hp*Wp]
    rows = torch.arange(height, device=x.device) + reach_y - dy.to(x.device)[:, None]
    cols = torch.arange(width, device=x.device) + reach_x - dx.to(x.device)[:, None]
    index = (rows[:, :, None] * (width + 2 * reach_x) + cols[:, None, :]).flatten(1)
    out = x.new_empty((2 * batch, flat.shape[1], height * width))
    for view in range(2):  # into the output's halves: no stack or cat copy after
        part = slice(view * batch, (view + 1) * batch)
        torch.gather(padded, 2, index[part, None].expand(-1, flat.shape[1], -1), out=out[part])
    return out.view(2 * batch, *x.shape[1:])


class TwoViews:
    """Two random views of each sample of a batch (see the module docstring)."""

    def __call__(
        self, x: Tensor, generator: torch.Generator, rank: int = 0, world_size: int = 1
    ) -> Tensor:
        """``[B, ..., H, W]`` (at least 4-d) -> ``[2B, ..., H, W]``.

        In data-parallel training, ``x`` is process ``rank``'s share of a global batch
        of ``world_size·B`` samples, its sample ``j`` the global ``j·world_size + rank``
        (a ``DistributedSampler``'s split): the shifts are drawn for the global batch,
        every process with the same ``generator`` state, and each takes its samples',
        so no two processes shift their samples alike and the views are those of one
        process on the global batch.

        Raises:
            ShapeError: a batch without two spatial dims after the channels (audio
                features ``[B, T, F]``, a flat vector), or shorter than 8 on both.
        """
        check_two_view_batch(tuple(x.shape))
        reach_y, reach_x = x.shape[-2] // 8, x.shape[-1] // 8
        if not 0 <= rank < world_size:
            raise ShapeError(f"TwoViews: rank {rank} is not in [0, world_size = {world_size})")
        dys, dxs, drawn = [], [], (world_size * len(x),)
        for _ in range(2):  # (the draws in this order: view 1's dy then dx, then view 2's)
            dys.append(torch.randint(-reach_y, reach_y + 1, drawn, generator=generator))
            dxs.append(torch.randint(-reach_x, reach_x + 1, drawn, generator=generator))
        share = slice(rank, None, world_size)
        return _shifted(x, torch.cat([d[share] for d in dys]), torch.cat([d[share] for d in dxs]))
