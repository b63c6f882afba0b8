"""DSEC's optical-flow ground-truth files (Gehrig et al., RA-L 2021; the DSEC-Flow
benchmark, dsec.ifi.uzh.ch): one 16-bit RGB PNG per flow map, in pixels,

    flow_x = (R - 2**15) / 128,   flow_y = (G - 2**15) / 128,   valid = B != 0

(the same layout as KITTI's flow PNGs, whose scale is 64). Submissions to the benchmark
use the same encoding, which :func:`encode_dsec_flow` writes. Decoding needs no extra:
:mod:`spikeflow.data.io.png` (Pillow would read the file as 8-bit and lose the flow).
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path

import numpy as np

from spikeflow.data.events import format_error
from spikeflow.data.io.png import decode_png, encode_png
from spikeflow.errors import ConfigurationError, ShapeError

__all__ = [
    "DSEC_FLOW_SCALE",
    "decode_dsec_flow",
    "encode_dsec_flow",
    "read_dsec_flow",
    "write_dsec_flow",
]

#: Fixed-point scale of DSEC's flow PNGs: 1/128 pixel per step, offset 2**15.
DSEC_FLOW_SCALE = 128.0
_OFFSET = 2**15


def decode_dsec_flow(
    raw: bytes, name: str = "<bytes>", scale: float = DSEC_FLOW_SCALE
) -> tuple[np.ndarray, np.ndarray]:
    """``(flow, valid)``: float32 ``[2, H, W]`` (x, y in pixels) and bool ``[H, W]`` of a
    DSEC flow PNG (``scale=64`` reads KITTI's). Invalid pixels hold flow 0.

    Raises:
        DataFormatError: not a 16-bit RGB PNG (names the file), or a broken PNG.
    """
    image = decode_png(raw, name)
    if image.dtype != np.uint16 or image.shape[2] != 3:
        depth = 16 if image.dtype == np.uint16 else 8
        raise format_error(
            name,
            None,
            f"a DSEC flow map is a 16-bit RGB PNG; this one is {depth}-bit with "
            f"{image.shape[2]} channels",
        )
    valid = image[..., 2] != 0
    flow = (image[..., :2].astype(np.float32) - _OFFSET) / np.float32(scale)
    flow = np.where(valid[..., None], flow, np.float32(0.0)).transpose(2, 0, 1)
    return np.ascontiguousarray(flow), valid


def read_dsec_flow(
    path: str | PathLike[str], scale: float = DSEC_FLOW_SCALE
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`decode_dsec_flow` of the file at ``path``."""
    return decode_dsec_flow(Path(path).read_bytes(), str(path), scale)


def encode_dsec_flow(
    flow: np.ndarray, valid: np.ndarray | None = None, scale: float = DSEC_FLOW_SCALE
) -> bytes:
    """The DSEC PNG of ``flow`` ``[2, H, W]`` (pixels; rounded to 1/128 pixel), with
    ``valid`` ``[H, W]`` (default: every pixel with finite flow).

    Raises:
        ShapeError: ``flow`` is not ``[2, H, W]`` or ``valid`` not ``[H, W]``.
        ConfigurationError: a valid flow beyond the range the format holds
            (``+-256`` pixels at scale 128).
    """
    flow = np.asarray(flow, dtype=np.float64)
    if flow.ndim != 3 or flow.shape[0] != 2:
        raise ShapeError(f"encode_dsec_flow: flow must be [2, H, W], got {flow.shape}")
    finite = np.isfinite(flow).all(0)
    valid = finite if valid is None else np.asarray(valid, bool)
    if valid.shape != flow.shape[1:]:
        raise ShapeError(
            f"encode_dsec_flow: valid must be [H, W] = {list(flow.shape[1:])}, "
            f"got {list(valid.shape)}"
        )
    if (valid & ~finite).any():
        raise ConfigurationError(
            "encode_dsec_flow: a pixel marked valid has a NaN or infinite flow"
        )
    steps = np.where(valid, np.round(np.where(finite, flow, 0.0) * scale), 0.0) + _OFFSET
    if (steps < 0).any() or (steps > 65535).any():
        raise ConfigurationError(
            f"encode_dsec_flow: flow beyond +-{_OFFSET / scale:g} pixels does not fit the "
            "16-bit format"
        )
    image = np.concatenate([steps.transpose(1, 2, 0), valid[..., None].astype(np.float64)], axis=2)
    return encode_png(image.astype(np.uint16), filter_type=0)


def write_dsec_flow(
    path: str | PathLike[str], flow: np.ndarray, valid: np.ndarray | None = None
) -> None:
    """Write :func:`encode_dsec_flow` to ``path`` (a benchmark submission file)."""
    Path(path).write_bytes(encode_dsec_flow(flow, valid))
