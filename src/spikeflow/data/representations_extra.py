"""More representations: count images, Bina-Rep frames, HATS histograms, sparse frames.

The representations Tonic 1.7 has beyond frames, voxel grids and time surfaces, with
spikeflow's conventions (``sensor_size=(W, H, P)``, integer µs timestamps, the channel
rule of :mod:`spikeflow.data.frames`: with ``P == 2`` channel 0 is ``p == 0`` and
channel 1 is ``p != 0``; with ``P == 1`` every event is channel 0; any other ``P`` takes
``p`` as the channel index). All are vectorised numpy (no per-event Python loop) and
deterministic; the classes are :class:`~spikeflow.data.representations.Representation`
objects keyed by their parameters, so a dataset can cache their output, except
:class:`ToSparseTensor`, whose torch sparse output the array cache cannot hold.

- :func:`to_image` / :class:`ToImage`: one ``[P, H, W]`` int32 count image of the whole
  recording (Tonic's ``ToImage``).
- :func:`bina_rep`, :func:`to_bina_rep` / :class:`ToBinaRep`: Bina-Rep (Barchid et al.,
  2022): ``T·N`` binary event frames, each group of ``N`` read as the bits of one
  ``N``-bit number per pixel, ``[T, P, H, W]`` float32 in ``[0, 1]``.
- :func:`to_averaged_time_surfaces` / :class:`ToAveragedTimeSurface`: HATS (Sironi et
  al., CVPR 2018), histograms of averaged time surfaces, ``[cells, P, S, S]`` float32.
- :func:`to_sparse_frames` / :class:`ToSparseTensor`: count frames as a torch sparse COO
  tensor ``[T, P, H, W]``, built from the events without a dense intermediate;
  :func:`sparse_collate` batches them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from spikeflow._checks import check_real
from spikeflow.data.events import EventRecording
from spikeflow.data.frames import (
    SPLIT_BY,
    SplitFunction,
    _pixel_index,
    event_channels,
    segment_index,
    unpack_events,
)
from spikeflow.data.representations import (
    Representation,
    _check_count,
    _check_tau,
    callable_key,
)
from spikeflow.errors import ConfigurationError, ShapeError

__all__ = [
    "MAX_BINA_REP_BITS",
    "ToAveragedTimeSurface",
    "ToBinaRep",
    "ToImage",
    "ToSparseTensor",
    "bina_rep",
    "sparse_collate",
    "to_averaged_time_surfaces",
    "to_bina_rep",
    "to_image",
    "to_sparse_frames",
]

#: The most bits :func:`bina_rep` packs: float32 holds every integer up to ``2**24``
#: exactly, so up to 24 bits each pixel's code is exact (and equal to Tonic's).
MAX_BINA_REP_BITS = 24

#: :func:`to_averaged_time_surfaces` enumerates (event, earlier event) pairs in chunks
#: of about this many pairs, which bounds its memory whatever the recording's length.
_PAIR_CHUNK = 1 << 21


# -- ToImage ----------------------------------------------------------------------------


def to_image(
    events: EventRecording | np.ndarray, *, sensor_size: Sequence[int] | None = None
) -> np.ndarray:
    """Every event of the recording counted into one image, ``[P, H, W]`` int32.

    ``image[c, y, x]`` is the number of events at pixel ``(x, y)`` in channel ``c``
    (channel rule in the module docstring). It is ``to_frames(events, 1)[0]``, but the
    events need not be sorted. An empty recording gives zeros.
    """
    arr, (width, height, polarities), source = unpack_events(events, sensor_size, need_sorted=False)
    size = polarities * height * width
    if len(arr) == 0:
        return np.zeros((polarities, height, width), dtype=np.int32)
    counts = np.bincount(_pixel_index(arr, (width, height, polarities), source), minlength=size)
    return counts.astype(np.int32).reshape(polarities, height, width)


class ToImage(Representation):
    """:func:`to_image`: one ``[P, H, W]`` int32 count image of the whole recording."""

    name = "image"

    def __call__(self, events: EventRecording) -> np.ndarray:
        return to_image(events)


# -- Bina-Rep ---------------------------------------------------------------------------


def _check_split(split_by: Any) -> str | SplitFunction:
    if not callable(split_by) and split_by not in SPLIT_BY:
        raise ConfigurationError(
            f"split_by must be 'number', 'time' or a function; got {split_by!r}"
        )
    return split_by


def _check_bits(n_bits: Any) -> int:
    n = _check_count("n_bits", n_bits)
    if n > MAX_BINA_REP_BITS:
        raise ConfigurationError(
            f"n_bits must be at most {MAX_BINA_REP_BITS} (a float32 holds every "
            f"{MAX_BINA_REP_BITS}-bit code exactly, not more); got {n_bits!r}"
        )
    return n


def _pack_bits(mark: np.ndarray, n_bits: int) -> np.ndarray:
    """``mark`` ``[T, N, ...]`` bool -> ``[T, ...]`` float32: ``Σ_k mark_k 2^(N−1−k) /
    (2^N − 1)``: the integer code exactly (shifts and ors), then one float32 division,
    which is what Tonic computes (its float32 sum of powers of two is exact too)."""
    T, rest = mark.shape[0], mark.shape[2:]
    bits = mark.reshape(T, n_bits, -1).view(np.uint8)
    code = np.zeros((T, bits.shape[2]), dtype=np.int32)
    for k in range(n_bits):
        code <<= 1
        code |= bits[:, k]
    out = code.astype(np.float32)
    out /= np.float32(2**n_bits - 1)
    return out.reshape(T, *rest)


def bina_rep(frames: np.ndarray, n_bits: int = 8) -> np.ndarray:
    """Pack event frames into Bina-Rep frames (Barchid et al., 2022).

    ``frames`` is ``[T·N, ...]`` (e.g. ``[T·N, P, H, W]`` counts from
    :func:`~spikeflow.data.to_frames`), ``N = n_bits``. Each frame is made binary
    (``frame > 0``) and each run of ``N`` consecutive frames ``b_0 … b_{N−1}`` becomes
    one frame ``Σ_k b_k 2^(N−1−k) / (2^N − 1)``: the earliest frame is the most
    significant bit, and the value lies in ``[0, 1]``. Returns ``[T, ...]`` float32.
    This is Tonic's ``ToBinaRep(n_frames=T, n_bits=N)`` applied to the same frames, to
    the bit (``T`` follows from the length here).

    Raises:
        ConfigurationError: ``n_bits`` not an int in ``[1, 24]``.
        ShapeError: ``frames`` has no time axis, or its length is not a multiple of
            ``n_bits``.
    """
    n = _check_bits(n_bits)
    arr = np.asarray(frames)
    if arr.ndim < 1 or arr.shape[0] % n:
        raise ShapeError(
            f"bina_rep: frames must be [T*n_bits, ...] with a length that is a multiple of "
            f"n_bits={n}; got shape {arr.shape}"
        )
    marks = (arr > 0).reshape(arr.shape[0] // n, n, *arr.shape[1:])
    return _pack_bits(marks, n)


def to_bina_rep(
    events: EventRecording | np.ndarray,
    frames_number: int,
    n_bits: int = 8,
    split_by: str | SplitFunction = "time",
    *,
    sensor_size: Sequence[int] | None = None,
) -> np.ndarray:
    """Bina-Rep frames ``[T, P, H, W]`` float32 from events (Barchid et al., 2022).

    The stream is split into ``T·N`` segments (``T = frames_number``, ``N = n_bits``) by
    ``split_by`` (the rules of :func:`~spikeflow.data.to_frames`; default ``"time"``,
    the equal-duration split the paper and Tonic's recipe use), and frame ``j`` of the
    result packs segments ``jN … jN + N − 1`` as :func:`bina_rep` does: a pixel's bit
    ``k`` is 1 when it had at least one event in segment ``jN + k``. Equal to
    ``bina_rep(to_frames(events, T * N, split_by), N)`` without the ``T·N`` count frames.
    """
    T = _check_count("frames_number", frames_number)
    n = _check_bits(n_bits)
    _check_split(split_by)
    arr, size, source = unpack_events(events, sensor_size, need_sorted=not callable(split_by))
    width, height, polarities = size
    plane = polarities * height * width
    marks = np.zeros(T * n * plane, dtype=bool)
    if len(arr):
        flat = _pixel_index(arr, size, source)
        flat += segment_index(arr, T * n, split_by) * plane
        marks[flat] = True
    return _pack_bits(marks.reshape(T, n, polarities, height, width), n)


class ToBinaRep(Representation):
    """:func:`to_bina_rep`: ``frames_number`` Bina-Rep frames of ``n_bits`` bits each,
    ``[T, P, H, W]`` float32, the ``T·N`` segments split by ``split_by``."""

    name = "bina_rep"

    def __init__(
        self, frames_number: int, n_bits: int = 8, split_by: str | SplitFunction = "time"
    ) -> None:
        self.split_by = _check_split(split_by)
        self.frames_number = _check_count("frames_number", frames_number)
        self.n_bits = _check_bits(n_bits)

    def params(self) -> dict[str, Any]:
        split = callable_key(self.split_by) if callable(self.split_by) else self.split_by
        return {"frames_number": self.frames_number, "n_bits": self.n_bits, "split_by": split}

    def __call__(self, events: EventRecording) -> np.ndarray:
        return to_bina_rep(events, self.frames_number, self.n_bits, self.split_by)


# -- HATS -------------------------------------------------------------------------------

_DECAYS = ("exp", "lin")


def _check_hats(
    cell_size: Any, surface_size: Any, time_window: Any, decay: Any
) -> tuple[int, int, float]:
    cell = _check_count("cell_size", cell_size)
    surface = _check_count("surface_size", surface_size)
    if surface % 2 == 0 or surface > cell:
        raise ConfigurationError(
            f"surface_size must be odd and at most cell_size={cell}; got {surface_size!r}"
        )
    window = check_real("time_window", time_window, 0.0)
    if decay not in _DECAYS:
        raise ConfigurationError(f"decay must be 'exp' or 'lin'; got {decay!r}")
    return cell, surface, window


def to_averaged_time_surfaces(
    events: EventRecording | np.ndarray,
    cell_size: int = 10,
    surface_size: int = 5,
    time_window: float = 1000.0,
    tau: float = 100.0,
    decay: str = "exp",
    *,
    sensor_size: Sequence[int] | None = None,
) -> np.ndarray:
    """HATS: histograms of averaged time surfaces (Sironi et al., CVPR 2018).

    The sensor is tiled into square cells of ``cell_size`` pixels, ``⌈W/cs⌉`` across and
    ``⌈H/cs⌉`` down, numbered row by row (cell ``(y // cs) · ⌈W/cs⌉ + x // cs``). For
    each cell and channel (channel rule in the module docstring), every event ``i``
    there gets a local time surface of ``S × S`` (``S = surface_size``, odd, ``ρ = S//2``)
    centred on it: 1 at the centre, plus ``k(t_i − t_j)`` at offset ``(x_j − x_i,
    y_j − y_i)`` for every earlier event ``j`` of the same cell and channel (earlier in
    the recording's order, so same-time events before ``i`` count) with
    ``|x_j − x_i| ≤ ρ``, ``|y_j − y_i| ≤ ρ`` and ``t_i − t_j ≤ time_window`` µs. The
    histogram of the cell and channel is the sum of its events' surfaces divided by
    their number (zeros where there is no event). Decay ``k``: ``"exp"``
    ``exp(−Δ/tau)``, or ``"lin"`` ``1 − Δ/(3·tau)`` (Tonic's linear kernel, which is
    negative for ``Δ > 3·tau``: keep ``time_window ≤ 3·tau`` for a non-negative one).

    Defaults are Tonic's (``ToAveragedTimesurface``). Returns ``[cells, P, S, S]``
    float32 (Tonic's layout). Computed in float64 and rounded once; Tonic computes in
    float32 (timestamps included), so its output differs by float32 rounding (a few
    ulps; and more for timestamps past 2**24 µs, which float32 cannot hold).
    The cost is one pass over the (event, earlier event) pairs of each cell and channel
    within ``time_window``, in chunks of bounded memory.

    Raises:
        ConfigurationError: ``cell_size`` or ``surface_size`` not an int >= 1, an even
            ``surface_size`` or one above ``cell_size``, ``time_window`` not a finite
            number >= 0, ``tau`` not a finite number > 0, ``decay`` not ``"exp"`` /
            ``"lin"``.
        DataFormatError: unsorted events or coordinates outside the sensor.
    """
    cell, surface, window = _check_hats(cell_size, surface_size, time_window, decay)
    tau = _check_tau(tau)
    arr, (width, height, polarities), source = unpack_events(events, sensor_size)
    across = -(-width // cell)
    cells = across * -(-height // cell)
    groups = cells * polarities
    rho, plane = surface // 2, surface * surface
    hist = np.zeros(groups * plane, dtype=np.float64)
    n = len(arr)
    if n == 0:
        return hist.astype(np.float32).reshape(cells, polarities, surface, surface)
    x = arr["x"].astype(np.int64)
    y = arr["y"].astype(np.int64)
    t = arr["t"].astype(np.int64)
    group = ((y // cell) * across + x // cell) * polarities
    group += event_channels(arr["p"], polarities, source)
    # The window's first event, per event: ranks of distinct times (t is sorted), the
    # rank of ``t_i − ⌊time_window⌋`` (t is whole µs), then one search in the events
    # ordered by (group, time), keyed ``group · K + rank`` (< groups · (n + 1): no overflow).
    new_time = np.empty(n, dtype=bool)
    new_time[0] = True
    np.not_equal(t[1:], t[:-1], out=new_time[1:])
    distinct = t[new_time]
    rank = np.cumsum(new_time) - 1
    reach = min(math.floor(window), int(t[-1] - t[0]) + 1)
    first_rank = np.searchsorted(distinct, t - reach, side="left")
    order = np.argsort(group, kind="stable")
    g, t = group[order], t[order]
    K = len(distinct) + 1
    key = g * K + rank[order]
    lo = np.searchsorted(key, g * K + first_rank[order], side="left")
    pairs = np.arange(n, dtype=np.int64) - lo  # earlier events of the group in the window
    ends = np.cumsum(pairs)
    # The two events of a pair share a cell: their offset is a function of the difference
    # of their in-cell codes ``v = (y mod cs)·2cs + (x mod cs)``: d = dy·2cs + dx with
    # |dx|, |dy| < cs, and (d + cs) mod 2cs = dx + cs. Two tables over d (~4·cs² entries)
    # give "within ρ" and the surface bin, so a pair costs one gather and one lookup.
    stride = 2 * cell
    small = np.int32 if n < 2**31 else np.int64  # halves the traffic of the pair arrays
    v = ((y % cell) * stride + x % cell)[order].astype(small)
    reach_d = (cell - 1) * (stride + 1)
    d = np.arange(-reach_d, reach_d + 1)
    dx = (d + cell) % stride - cell
    dy = (d - dx) // stride
    near_table = (np.abs(dx) <= rho) & (np.abs(dy) <= rho)
    bin_table = (dy + rho) * surface + (dx + rho)
    start = 0
    while start < n:  # chunks of about _PAIR_CHUNK pairs (at least one event each)
        base = int(ends[start] - pairs[start])
        stop = max(start + 1, int(np.searchsorted(ends, base + _PAIR_CHUNK, side="right")))
        count = pairs[start:stop]
        run_end = ends[start:stop] - base  # where each event's run of pairs ends
        if run_end[-1]:
            # Pair m of the chunk is event i = start + e (run_end[e-1] <= m < run_end[e])
            # with j = lo[i] + (m - run start) = m + shift[e].
            shift = (lo[start:stop] - (run_end - count)).astype(small)
            j = np.arange(run_end[-1], dtype=small)
            j += np.repeat(shift, count)
            code = v[j]
            code -= np.repeat(v[start:stop] - reach_d, count)
            kept = np.flatnonzero(near_table[code])
            e = np.searchsorted(run_end, kept, side="right")
            i, j, code = e + start, kept + shift[e], code[kept]
            age = (t[i] - t[j]).astype(np.float64)
            weight = np.exp(-age / tau) if decay == "exp" else 1.0 - age / (3.0 * tau)
            where = g[i] * plane + bin_table[code]
            hist += np.bincount(where, weight, minlength=groups * plane)
        start = stop
    per_group = np.bincount(group, minlength=groups)
    hist = hist.reshape(groups, plane)
    hist[:, rho * surface + rho] += per_group
    hist /= np.maximum(per_group, 1)[:, None]
    return hist.astype(np.float32).reshape(cells, polarities, surface, surface)


class ToAveragedTimeSurface(Representation):
    """:func:`to_averaged_time_surfaces` (HATS), ``[cells, P, S, S]`` float32."""

    name = "averaged_time_surface"

    def __init__(
        self,
        cell_size: int = 10,
        surface_size: int = 5,
        time_window: float = 1000.0,
        tau: float = 100.0,
        decay: str = "exp",
    ) -> None:
        self.cell_size, self.surface_size, self.time_window = _check_hats(
            cell_size, surface_size, time_window, decay
        )
        self.tau = _check_tau(tau)
        self.decay = str(decay)

    def params(self) -> dict[str, Any]:
        return {"cell_size": self.cell_size, "surface_size": self.surface_size,
                "time_window": self.time_window, "tau": self.tau, "decay": self.decay}  # fmt: skip

    def __call__(self, events: EventRecording) -> np.ndarray:
        return to_averaged_time_surfaces(
            events, self.cell_size, self.surface_size, self.time_window, self.tau, self.decay
        )


# -- sparse frames ----------------------------------------------------------------------


def _check_dtype(dtype: Any) -> torch.dtype:
    if not isinstance(dtype, torch.dtype):
        raise ConfigurationError(f"dtype must be a torch.dtype (torch.float32, ...); got {dtype!r}")
    return dtype


def _frame_mode(frames_number: Any, duration: Any, split_by: Any) -> tuple[int | None, int | None]:
    _check_split(split_by)
    given = [
        n for n, v in (("frames_number", frames_number), ("duration", duration)) if v is not None
    ]
    if len(given) != 1:
        raise ConfigurationError(
            f"give exactly one of frames_number (with split_by) or duration; got {given or 'none'}"
        )
    if frames_number is not None:
        return _check_count("frames_number", frames_number), None
    if not (isinstance(split_by, str) and split_by == "number"):
        raise ConfigurationError("split_by only applies with frames_number, not with duration")
    return None, _check_count("duration", duration, " (microseconds)")


def _nonzero_counts(flat: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The sorted distinct values of ``flat`` and how often each occurs: by a dense
    ``bincount`` when the frames are small next to the events, else by sorting."""
    if size <= max(4 * len(flat), 1 << 16):
        counts = np.bincount(flat, minlength=size)
        where = np.flatnonzero(counts != 0)  # (faster than on the int array)
        return where, counts[where]
    return np.unique(flat, return_counts=True)


def to_sparse_frames(
    events: EventRecording | np.ndarray,
    frames_number: int | None = None,
    split_by: str | SplitFunction = "number",
    *,
    duration: int | None = None,
    dtype: torch.dtype = torch.float32,
    sensor_size: Sequence[int] | None = None,
) -> torch.Tensor:
    """Count frames as a coalesced torch sparse COO tensor ``[T, P, H, W]``.

    ``to_sparse_frames(ev, T, split_by).to_dense()`` equals
    ``torch.from_numpy(to_frames(ev, T, split_by))`` (and with ``duration=d``,
    :func:`~spikeflow.data.to_frames_by_duration`: ``K`` frames, 0 for an empty
    recording), in ``dtype``; give exactly one of ``frames_number`` and ``duration``.
    Only the non-zero counts are built: memory grows with the events, not with the
    sensor, which is the point on large sensors (Tonic's ``ToSparseTensor`` makes the
    dense frames first).

    Raises:
        ConfigurationError: neither or both of ``frames_number`` and ``duration``, a bad
            ``split_by`` or a ``dtype`` that is not a ``torch.dtype``.
        DataFormatError: unsorted events or coordinates outside the sensor.
    """
    T, step = _frame_mode(frames_number, duration, split_by)
    dtype = _check_dtype(dtype)
    arr, size, source = unpack_events(events, sensor_size, need_sorted=not callable(split_by))
    width, height, polarities = size
    plane = polarities * height * width
    n = len(arr)
    if step is not None:
        t = arr["t"].astype(np.int64)
        index = (t - t[0]) // step if n else np.zeros(0, dtype=np.int64)
        T = int(index[-1]) + 1 if n else 0
    else:
        index = segment_index(arr, T, split_by)
    assert T is not None
    shape = (T, polarities, height, width)
    if n == 0:
        no_index = torch.zeros((4, 0), dtype=torch.int64)
        return torch.sparse_coo_tensor(
            no_index, torch.zeros(0, dtype=dtype), shape, is_coalesced=True, check_invariants=False
        )
    flat = _pixel_index(arr, size, source).astype(np.int64)
    flat += index * plane
    where, counts = _nonzero_counts(flat, T * plane)
    indices = np.empty((4, len(where)), dtype=np.int64)  # np.unravel_index, but faster
    rest, indices[3] = np.divmod(where, width)
    rest, indices[2] = np.divmod(rest, height)
    indices[0], indices[1] = np.divmod(rest, polarities)
    values = torch.from_numpy(counts).to(dtype)
    return torch.sparse_coo_tensor(
        torch.from_numpy(indices), values, shape, is_coalesced=True, check_invariants=False
    )


class ToSparseTensor:
    """:func:`to_sparse_frames` as a callable: ``rep(recording)`` -> sparse COO
    ``[T, P, H, W]``, with exactly one of ``frames_number`` (and ``split_by``) and
    ``duration``.

    Not a dataset representation: the frame cache stores numpy arrays and a frame
    dataset yields dense float32 tensors. Use it as the ``transform`` of a
    ``data_type="event"`` dataset and batch with :func:`sparse_collate`. It has
    ``cache_key()`` and ``random = False``, so a :class:`~spikeflow.data.Compose`
    holding it keys and behaves like any other member.
    """

    name = "sparse_frames"
    random = False

    def __init__(
        self,
        frames_number: int | None = None,
        split_by: str | SplitFunction = "number",
        duration: int | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.frames_number, self.duration = _frame_mode(frames_number, duration, split_by)
        self.split_by = split_by
        self.dtype = _check_dtype(dtype)

    def params(self) -> dict[str, Any]:
        """The parameters the output depends on (JSON-able)."""
        split = callable_key(self.split_by) if callable(self.split_by) else self.split_by
        return {"frames_number": self.frames_number, "split_by": split,
                "duration": self.duration, "dtype": str(self.dtype)}  # fmt: skip

    def cache_key(self) -> dict[str, Any]:
        """``{"name": "sparse_frames", **params}``."""
        return {"name": self.name, **self.params()}

    def __call__(self, events: EventRecording) -> torch.Tensor:
        return to_sparse_frames(
            events, self.frames_number, self.split_by, duration=self.duration, dtype=self.dtype
        )

    def __repr__(self) -> str:
        if self.duration is not None:
            return f"ToSparseTensor(duration={self.duration}, dtype={self.dtype})"
        return (
            f"ToSparseTensor(frames_number={self.frames_number}, split_by={self.split_by!r}, "
            f"dtype={self.dtype})"
        )


def sparse_collate(batch: Sequence[Any], time_major: bool = False) -> tuple[torch.Tensor, ...]:
    """Collate sparse COO samples ``[T_i, ...]`` into one sparse batch, like
    :func:`~spikeflow.data.pad_collate` does dense ones.

    Each sample is a sparse tensor or a tuple whose first element is one (the rest go
    through PyTorch's ``default_collate``, which refuses sparse tensors). Returns
    ``(frames, *rest, mask)``: ``frames`` is a coalesced sparse ``[B, T_max, ...]``
    (``[T_max, B, ...]`` with ``time_major=True``); shorter samples are padded with
    empty frames, which costs nothing in a sparse tensor; ``mask`` is a bool
    ``[B, T_max]`` (``[T_max, B]``), True on real frames. Make it dense on the device:
    ``frames.to(device).to_dense()``.
    """
    if len(batch) == 0:
        raise ConfigurationError("sparse_collate got an empty batch")
    is_tuple = isinstance(batch[0], (tuple, list))
    seqs = [s[0] if is_tuple else s for s in batch]
    for i, s in enumerate(seqs):
        if not isinstance(s, torch.Tensor) or s.layout != torch.sparse_coo or s.dim() < 1:
            what = f"a {s.layout} tensor" if isinstance(s, torch.Tensor) else type(s).__name__
            raise ShapeError(
                f"sparse_collate: sample {i} must be a sparse COO tensor [T, ...]; got {what} "
                "(use pad_collate for dense samples)"
            )
    tail = tuple(seqs[0].shape[1:])
    for i, s in enumerate(seqs):
        if tuple(s.shape[1:]) != tail:
            raise ShapeError(
                f"sparse_collate: sample {i} has shape {tuple(s.shape)}; every sample must be "
                f"[T_i, {', '.join(map(str, tail))}]"
            )
    lengths = torch.tensor([s.shape[0] for s in seqs])
    t_max = int(lengths.max())
    parts, values = [], []
    for b, s in enumerate(seqs):
        s = s.coalesce()
        idx = s.indices()
        parts.append(torch.cat([torch.full((1, idx.shape[1]), b, dtype=idx.dtype), idx]))
        values.append(s.values())
    indices, vals = torch.cat(parts, 1), torch.cat(values)
    size: tuple[int, ...] = (len(seqs), t_max, *tail)
    mask = torch.arange(t_max)[None, :] < lengths[:, None]
    if time_major:
        indices = indices[[1, 0, *range(2, indices.shape[0])]]
        size = (t_max, len(seqs), *tail)
        out = torch.sparse_coo_tensor(indices, vals, size, check_invariants=False).coalesce()
        mask = mask.transpose(0, 1)
    else:  # each sample coalesced, in batch order: already sorted and distinct
        out = torch.sparse_coo_tensor(
            indices, vals, size, is_coalesced=True, check_invariants=False
        )
    if not is_tuple:
        return out, mask
    rest = torch.utils.data.default_collate([tuple(s[1:]) for s in batch])
    return (out, *rest, mask)
