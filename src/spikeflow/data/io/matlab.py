"""MATLAB ``.mat`` event files: ST-MNIST (tactile) and ASL-DVS, through scipy (extra).

* **ST-MNIST** (See et al. 2020): a variable ``spiketrain`` of shape ``(101, N)``: rows
  0-99 are the 10x10 taxels, holding +1 (ON), -1 (OFF) or 0, and row 100 the time of
  each column in seconds. Every nonzero entry is an event at taxel ``k``:
  ``x = k % 10``, ``y = k // 10`` (the mapping Tonic uses, from the paper), ``p = 1``
  for +1 and 0 for -1, ``t`` in µs rounded to the nearest. Sensor ``(10, 10, 2)``.
* **ASL-DVS** (Bi et al. 2019, DAVIS240c): variables ``x``, ``y``, ``ts`` (µs) and
  ``pol`` (0/1), one column vector each. Sensor ``(240, 180, 2)``; ``y`` is kept as
  stored (Tonic flips it to ``179 - y``).

MAT v5 files are read with :func:`scipy.io.loadmat`; v7.3 files (HDF5 inside) with
h5py. Both are optional (extra ``data``). scipy's parser trusts the file (a bad data
type code makes it read out of bounds and crash the process), so the MAT v5 container
is checked first by :func:`~spikeflow.data.io._matv5.checked_mat5_stream` (header,
element tags, sizes, compressed elements, the requested variables' structure) and
errors there name the byte offset; errors about the values name the variable and
element. A file that is not a MAT-file is reported at byte offset 0.
"""

from __future__ import annotations

import io
from os import PathLike

import numpy as np

from spikeflow.data.events import EventRecording, format_error, make_events
from spikeflow.data.io._common import (
    as_int64,
    import_optional,
    infer_size,
    read_bytes,
    read_head,
    seconds_to_us,
    sensor_size_arg,
    sort_by_time,
    unknown_size_error,
)
from spikeflow.data.io._matv5 import checked_mat5_stream

__all__ = ["load_mat_variables", "read_asl_dvs", "read_stmnist"]


def load_mat_variables(path: str | PathLike, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Load the numeric variables ``names`` from a MAT v5 or v7.3 file.

    Raises:
        DataFormatError: an empty file, no MAT-file text header, a malformed MAT v5
            container (see :mod:`spikeflow.data.io._matv5`), a file the MAT reader
            rejects, or a missing or non-numeric variable.
        MissingExtraError: scipy (v5) or h5py (v7.3) is not installed.
    """
    head = read_head(path, 128)
    if not head.startswith(b"MATLAB"):
        raise format_error(
            path, 0, f"not a MAT-file: expected the 'MATLAB' text header, found {head[:16]!r}"
        )
    if b"7.3" in head[:20]:
        h5py = import_optional("h5py", "MAT v7.3 files", "h5py")
        try:
            with h5py.File(path, "r") as f:
                out = {n: np.asarray(f[n]).T for n in names if n in f}
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise format_error(path, None, f"cannot read the MAT v7.3 (HDF5) file: {exc}") from None
    else:
        sio = import_optional("scipy.io", "MAT files", "scipy")
        stream = checked_mat5_stream(read_bytes(path), names, path)
        try:
            mat = sio.loadmat(io.BytesIO(stream), variable_names=list(names))
        except Exception as exc:  # scipy raises many types on corrupt files
            raise format_error(
                path, None, f"scipy cannot parse the MAT-file: {type(exc).__name__}: {exc}"
            ) from None
        out = {n: mat[n] for n in names if n in mat}
    for n in names:
        if n not in out:
            raise format_error(path, None, f"missing variable {n!r} (found {sorted(out)})")
        if not (np.issubdtype(out[n].dtype, np.number) or out[n].dtype == bool):
            raise format_error(path, None, f"variable {n!r} has non-numeric dtype {out[n].dtype}")
    return out


def read_stmnist(path: str | PathLike) -> EventRecording:
    """Read an ST-MNIST sample (``spiketrain``, see the module docstring).

    Raises:
        DataFormatError: a missing ``spiketrain``, a shape other than ``(101, N)``, a
            taxel value other than -1, 0, 1, or a time that is not a finite
            non-negative number.
    """
    spikes = load_mat_variables(path, ("spiketrain",))["spiketrain"]
    if spikes.ndim != 2 or spikes.shape[0] != 101:
        raise format_error(path, None, f"spiketrain has shape {spikes.shape}, expected (101, N)")
    taxels = spikes[:100]
    bad = np.argwhere((taxels != 0) & (taxels != 1) & (taxels != -1))
    if bad.size:
        r, c = (int(v) for v in bad[0])
        raise format_error(
            path, None, f"spiketrain[{r}, {c}] = {taxels[r, c]!r}, expected -1, 0 or 1"
        )
    times = seconds_to_us(spikes[100], path, "spiketrain[100] (times)")
    col, taxel = np.nonzero(taxels.T)  # ordered by column, i.e. by time
    p = (taxels[taxel, col] > 0).astype(np.int8)
    events = make_events(times[col], taxel % 10, taxel // 10, p)
    return EventRecording(sort_by_time(events), (10, 10, 2), str(path))


def read_asl_dvs(
    path: str | PathLike, sensor_size: tuple[int, int] | None = (240, 180)
) -> EventRecording:
    """Read an ASL-DVS sample (variables ``x``, ``y``, ``ts``, ``pol``).

    ``sensor_size``: ``(width, height)`` (the DAVIS240c's by default), or ``None`` to
    take the largest coordinates plus one, as the other readers do without a size (a
    lower bound, which differs between samples: pass the size to batch frames).

    Raises:
        DataFormatError: a missing variable, variables of different lengths,
            non-integer or negative values, a polarity other than 0/1, coordinates
            outside ``sensor_size``, or no events and no ``sensor_size``.
    """
    size = sensor_size_arg(sensor_size, "read_asl_dvs")
    v = load_mat_variables(path, ("x", "y", "ts", "pol"))
    x, y, t, p = (as_int64(v[k], k, path, non_negative=True) for k in ("x", "y", "ts", "pol"))
    if not x.size == y.size == t.size == p.size:
        raise format_error(
            path,
            None,
            f"x, y, ts, pol have different lengths ({x.size}, {y.size}, {t.size}, {p.size})",
        )
    if size is None and x.size == 0:
        raise unknown_size_error(path)
    width, height = infer_size(x, y) if size is None else size
    bad = np.flatnonzero((x >= width) | (y >= height) | (p > 1))
    if bad.size:
        i = int(bad[0])
        raise format_error(
            path, None, f"event {i} (x={x[i]}, y={y[i]}, pol={p[i]}) is outside the "
            f"{width}x{height} sensor or has a polarity other than 0/1"
        )  # fmt: skip
    events = sort_by_time(make_events(t, x, y, p.astype(np.int8)))
    return EventRecording(events, (width, height, 2), str(path))
