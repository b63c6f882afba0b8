"""What every plot shares: the matplotlib check, array conversion and validation, the
choice of one sample and of neurons, and atomic file writes."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from spikeflow._checks import check_int
from spikeflow._files import give_mode
from spikeflow.errors import ConfigurationError, DTypeError, MissingExtraError, ShapeError

__all__ = [
    "NeuronSelection",
    "atomic_output",
    "check_finite",
    "integer_ticks",
    "new_axes",
    "per_sample",
    "pyplot",
    "require_matplotlib",
    "select_neurons",
    "to_numpy",
]

#: What a neuron selection may be: all, one flat index, a slice, or flat indices.
NeuronSelection = int | slice | Sequence[int] | np.ndarray | Tensor | None


def require_matplotlib(feature: str) -> None:
    """Raise :class:`MissingExtraError` (naming ``pip install 'spikeflow[plot]'``) unless
    matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise MissingExtraError(feature, "matplotlib", "plot") from exc


def pyplot(feature: str = "spikeflow.plot") -> Any:
    """``matplotlib.pyplot``, with whatever backend the user has (Agg without a display)."""
    require_matplotlib(feature)
    import matplotlib.pyplot as plt

    return plt


def new_axes(ax: Any, figsize: tuple[float, float]) -> Any:
    """``ax`` if given, else the one Axes of a new pyplot figure."""
    if ax is not None:
        if not hasattr(ax, "figure") or not hasattr(ax, "scatter"):
            raise ConfigurationError(f"ax must be a matplotlib Axes, got {type(ax).__name__}")
        return ax
    _, ax = pyplot().subplots(figsize=figsize, layout="constrained")
    return ax


def integer_ticks(axis: Any) -> None:
    """Ticks at whole numbers only (epochs, time steps, neuron indices)."""
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def to_numpy(x: Any, name: str) -> np.ndarray:
    """``x`` (a tensor on any device, or a numpy array) as a numpy array of booleans,
    integers or reals; a :class:`DTypeError` naming ``name`` otherwise."""
    if isinstance(x, Tensor):
        x = x.detach()
        if x.layout != torch.strided:
            x = x.to_dense()
        if x.dtype in (torch.bfloat16, torch.float16):
            x = x.float()  # numpy has no bfloat16; float16 images lose nothing as float32
        if x.is_complex():
            raise DTypeError(f"{name} must hold real numbers or booleans, got dtype {x.dtype}")
        x = x.cpu().numpy()
    elif not isinstance(x, np.ndarray):
        raise DTypeError(f"{name} must be a torch.Tensor or a numpy array, got {type(x).__name__}")
    if x.dtype.kind not in "biuf":
        raise DTypeError(f"{name} must hold real numbers or booleans, got dtype {x.dtype}")
    return x


def check_finite(x: np.ndarray, name: str) -> None:
    """A :class:`ConfigurationError` naming ``name`` and the first non-finite element."""
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        where = np.unravel_index(int(np.flatnonzero(~np.isfinite(x))[0]), x.shape)
        raise ConfigurationError(
            f"{name} must be finite; {name}[{', '.join(map(str, where))}] = {x[where]}"
        )


def per_sample(x: np.ndarray, name: str, sample: int) -> tuple[np.ndarray, tuple[int, ...]]:
    """``x`` as ``[T, N]`` plus the per-sample neuron shape.

    ``[T]`` is one neuron, ``[T, N]`` is N neurons, and ``[T, B, ...]`` (3 or more
    dimensions) is a time-major batch: sample ``sample`` is taken and its neurons are
    flattened row-major (so neuron ``k`` is ``np.unravel_index(k, shape[2:])``).
    """
    if x.ndim == 0:
        raise ShapeError(f"{name} must be [T], [T, N] or [T, B, ...]; got a 0-dim value")
    if x.shape[0] == 0:
        raise ShapeError(f"{name} has no time step (shape {tuple(x.shape)}); T must be >= 1")
    if x.ndim == 1:
        return x[:, None], (1,)
    if x.ndim == 2:
        return x, (x.shape[1],)
    return pick_sample(x, sample, name, "[T, B, ...]").reshape(x.shape[0], -1), tuple(x.shape[2:])


def pick_sample(x: np.ndarray, sample: int, name: str, layout: str) -> np.ndarray:
    """``x[:, sample]`` of a ``[T, B, ...]`` array, or a ConfigurationError naming the
    batch size (``layout`` spells ``x``'s dims for the message)."""
    batch = x.shape[1]
    sample = check_int("sample", sample, 0)
    if sample >= batch:
        raise ConfigurationError(
            f"sample={sample} is outside the batch of {name} (shape {tuple(x.shape)}: "
            f"{layout} with B = {batch})"
        )
    return x[:, sample]


def select_neurons(neurons: NeuronSelection, count: int, name: str) -> np.ndarray:
    """The flat neuron indices a selection names (all of them for ``None``), checked to
    lie in ``[0, count)``; ``name`` is the array the neurons belong to (for messages)."""
    everything = np.arange(count)
    if neurons is None:
        return everything
    if isinstance(neurons, slice):
        chosen = everything[neurons]
    else:
        if isinstance(neurons, (bool, np.bool_)):
            raise ConfigurationError(f"neurons must be ints, not booleans; got {neurons!r}")
        if isinstance(neurons, (Tensor, np.ndarray)):
            chosen = np.atleast_1d(to_numpy(neurons, "neurons"))
        else:
            chosen = np.atleast_1d(np.asarray(neurons))
        if chosen.ndim != 1 or (chosen.size and chosen.dtype.kind not in "iu"):
            raise ConfigurationError(
                "neurons must be an int, a slice or a 1-D sequence of ints (flat indices "
                f"into one sample's neurons), got {neurons!r}"
            )
        chosen = chosen.astype(np.int64)
        bad = chosen[(chosen < 0) | (chosen >= count)]
        if bad.size:
            raise ConfigurationError(
                f"neurons {bad.tolist()[:5]} are outside [0, {count}): {name} has {count} "
                "neurons per sample"
            )
    if chosen.size == 0:
        raise ConfigurationError(f"neurons={neurons!r} selects no neuron of {name}")
    return chosen


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix, so writers that choose the
    format by the file name see the right one) and, when the block succeeds, give it
    ``path``'s mode, ``fsync`` it and rename it over ``path``. On any error the temporary
    file is removed and ``path`` is left as it was: a failed write leaves no truncated
    image or video, and no temporary file."""
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot write {path}: the folder {path.parent} does not exist")
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}",
                                dir=path.parent)  # fmt: skip
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        give_mode(tmp, path)  # not mkstemp's 0o600
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
