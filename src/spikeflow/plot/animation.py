"""Frames to an animated GIF or an MP4 video (Tonic's ``plot_animation``, written to a
file), through matplotlib's ``pillow`` and ``ffmpeg`` movie writers.

Frames ``[T, H, W]`` (or ``[T, 1, H, W]``) are drawn with a colour map; two channels
``[T, 2, H, W]`` (OFF, ON) become red and blue, as in :mod:`spikeflow.plot.events`;
three are drawn as RGB. Every frame shares one colour scale. The file is written
atomically: a failing writer leaves neither a partial file nor a temporary one.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from spikeflow._checks import check_int, check_real
from spikeflow.data.events import EventRecording
from spikeflow.errors import ConfigurationError, ShapeError, SpikeflowError
from spikeflow.plot._common import atomic_output, check_finite, require_matplotlib, to_numpy

__all__ = ["WRITERS", "WriterNotFoundError", "animate"]

#: The file suffixes :func:`animate` writes and matplotlib's writer for each.
WRITERS = {".gif": "pillow", ".mp4": "ffmpeg"}


class WriterNotFoundError(SpikeflowError, RuntimeError):
    """The matplotlib movie writer a file needs is not available (no ffmpeg program)."""


def _writer(path: Path, fps: float) -> tuple[Any, dict[str, str]]:
    """The matplotlib movie writer for ``path``'s suffix and the rcParams it runs
    under (the extra ``video``'s ffmpeg), or a clear error."""
    suffix = path.suffix.lower()
    if suffix not in WRITERS:
        raise ConfigurationError(
            f"path {str(path)!r}: animate writes {', '.join(WRITERS)} files, not "
            f"{suffix or 'a file without a suffix'!r}"
        )
    require_matplotlib("spikeflow.plot.animate")
    import matplotlib
    from matplotlib import animation

    name = WRITERS[suffix]
    if name == "ffmpeg" and not animation.writers.is_available(name):
        bundled = _bundled_ffmpeg()
        if bundled is None:
            found = matplotlib.rcParams["animation.ffmpeg_path"]
            raise WriterNotFoundError(
                f"writing {path.name} needs matplotlib's 'ffmpeg' writer, and the ffmpeg "
                f"program was not found (rcParams['animation.ffmpeg_path'] = {found!r}); "
                "install the extra 'video' (pip install 'spikeflow[video]': imageio-ffmpeg's "
                "ffmpeg binary) or ffmpeg itself (apt-get install ffmpeg, conda install "
                "ffmpeg), or set that path to an ffmpeg binary, or write a .gif (pillow "
                "writer) instead"
            )
        return animation.FFMpegWriter(fps=fps), {"animation.ffmpeg_path": bundled}
    if not animation.writers.is_available(name):
        raise WriterNotFoundError(
            f"writing {path.name} needs matplotlib's {name!r} writer, which is not available"
        )
    return animation.writers[name](fps=fps), {}


def _bundled_ffmpeg() -> str | None:
    """The ffmpeg binary of the extra ``video`` (imageio-ffmpeg), if installed."""
    try:
        import imageio_ffmpeg
    except ImportError:
        return None
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError:  # installed without a binary for this platform
        return None


def _frames(frames: Any, representation: Callable[[EventRecording], Any] | None) -> np.ndarray:
    """The frames as an array, from an array, a tensor, or a recording + representation."""
    if isinstance(frames, EventRecording):
        if representation is None:
            raise ConfigurationError(
                "animate needs representation= to turn an EventRecording into frames, "
                "e.g. spikeflow.data.ToFrame(frames_number=20, split_by='time')"
            )
        if not callable(representation):
            raise ConfigurationError(
                f"representation must be callable (recording -> [T, P, H, W] frames), "
                f"got {type(representation).__name__}"
            )
        return to_numpy(representation(frames), "representation(frames)")
    if representation is not None:
        raise ConfigurationError(
            "representation= applies to an EventRecording; frames were given as an array"
        )
    return to_numpy(frames, "frames")


def _images(
    frames: np.ndarray, vmin: float | None, vmax: float | None
) -> tuple[np.ndarray, bool, float, float]:
    """``[T, H, W]`` values or ``[T, H, W, 3]`` RGB in [0, 1], whether RGB, and the
    colour scale."""
    shape = tuple(frames.shape)
    if frames.ndim == 4 and frames.shape[1] in (1, 2, 3):
        channels = frames.shape[1]
    elif frames.ndim == 3:
        channels = 1
        frames = frames[:, None]
    else:
        raise ShapeError(
            f"frames must be [T, H, W] or [T, P, H, W] with P in 1..3; got shape {shape} "
            "(pick channels first, e.g. frames[:, :2])"
        )
    if frames.shape[0] == 0:
        raise ShapeError(f"frames has no time step (shape {shape}); T must be >= 1")
    values = frames.astype(np.float64)
    check_finite(values, "frames")
    low = float(values.min()) if vmin is None else check_real("vmin", vmin)
    if channels > 1 and vmin is None:
        low = min(low, 0.0)  # counts: black is no event
    high = float(values.max()) if vmax is None else check_real("vmax", vmax)
    if high <= low:
        if vmax is not None:
            raise ConfigurationError(f"vmax={high:g} must be above vmin={low:g}")
        high = low + 1.0  # constant frames
    if channels == 1:
        return values[:, 0], False, low, high
    rgb = np.zeros((*values.shape[0:1], *values.shape[2:], 3))
    scaled = np.clip((values - low) / (high - low), 0.0, 1.0)
    if channels == 2:
        rgb[..., 0], rgb[..., 2] = scaled[:, 0], scaled[:, 1]  # OFF red, ON blue
    else:
        rgb[:] = np.moveaxis(scaled, 1, -1)
    return rgb, True, low, high


def animate(
    frames: Any,
    path: str | os.PathLike,
    fps: float = 10.0,
    *,
    representation: Callable[[EventRecording], Any] | None = None,
    cmap: str = "gray",
    vmin: float | None = None,
    vmax: float | None = None,
    scale: int | None = None,
    dpi: int = 100,
) -> Path:
    """Write frames to ``path`` as a GIF (``.gif``, pillow writer) or an MP4 (``.mp4``,
    ffmpeg writer), one frame per step at ``fps`` frames a second.

    Args:
        frames: ``[T, H, W]`` or ``[T, P, H, W]`` (``P <= 3``), a tensor on any device
            or an array; or an :class:`~spikeflow.data.EventRecording` with
            ``representation``.
        path: the file to write (its folder must exist); replaced atomically.
        fps: frames per second (a GIF stores whole milliseconds: ``int(1000 / fps)``).
        representation: turns a recording into ``[T, P, H, W]`` frames, e.g.
            ``spikeflow.data.ToFrame(20, "time")``.
        cmap: the colour map of one-channel frames.
        vmin, vmax: the colour scale shared by all frames (default: the data's range;
            for 2-3 channels ``vmin`` defaults to ``min(0, data minimum)``).
        scale: screen pixels per frame pixel (default: the frame's longer side becomes
            at least 256 pixels).
        dpi: the dots per inch the figure is rendered at.

    Returns:
        ``path`` (a :class:`~pathlib.Path`).

    Raises:
        WriterNotFoundError: ``.mp4`` without the ffmpeg program.
        ConfigurationError: another suffix, bad ``fps``/``scale``/colour scale.
        ShapeError: frames of another shape.
    """
    path = Path(path)
    fps = check_real("fps", fps, 0.0, low_open=True)
    dpi = check_int("dpi", dpi, 1)
    writer, settings = _writer(path, fps)
    images, rgb, low, high = _images(_frames(frames, representation), vmin, vmax)
    height, width = images.shape[1:3]
    if scale is None:
        scale = max(1, math.ceil(256 / max(height, width)))
    scale = check_int("scale", scale, 1)
    from matplotlib.figure import Figure

    # A figure outside pyplot: no window, nothing left open when it is done.
    fig = Figure(figsize=(width * scale / dpi, height * scale / dpi), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    style: dict[str, Any] = {"interpolation": "nearest", "aspect": "auto"}
    if not rgb:
        style.update(cmap=cmap, vmin=low, vmax=high)
    image = ax.imshow(images[0], **style)
    import matplotlib

    with atomic_output(path) as tmp, matplotlib.rc_context(settings):
        with writer.saving(fig, str(tmp), dpi):
            for frame in images:
                image.set_data(frame)
                writer.grab_frame()
    return path
