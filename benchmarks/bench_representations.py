"""Event representations beyond frames: spikeflow vs Tonic 1.7, side by side.

Count image (``to_image`` vs ``tonic.transforms.ToImage``), Bina-Rep (``to_bina_rep``
vs Tonic's recipe ``ToFrame(n_time_bins=T·N)`` then ``ToBinaRep(n_frames=T, n_bits=N)``),
sparse frames (``to_sparse_frames`` vs ``ToSparseTensor(n_event_bins=T)``) and HATS
(``to_averaged_time_surfaces`` vs ``ToAveragedTimesurface``), in one process,
single-threaded (``torch.set_num_threads(1)``), on events already decoded (decoding is
``bench_data.py``'s subject):

1. **N-MNIST** (``../shared/data/nmnist-small``): every file one at a time, as a Dataset
   does (HATS: the first ``--hats-files`` files, Tonic's HATS takes ~0.2 s a file).
2. **One synthetic recording of 1,000,000 events** (1 s, uniform over a 34x34 sensor,
   2 polarities; and over a 346x260 one, the DAVIS346 size). Tonic's HATS is quadratic
   in the events of a cell (every event scans its cell's whole past with a Python loop
   around it): it runs on the first ``--hats-prefix`` events only, and spikeflow is timed
   on that prefix too (the ratio's row) and on all events.

Before timing, each pair is checked on the same input: image and Bina-Rep packing equal
to the bit; sparse frames 0..T-2 equal and frame T-1 = Tonic's + the ``N mod T`` events
Tonic drops; Bina-Rep frames 0..T-2 equal, frame T-1 differs at most by its lowest bit
where Tonic's time bins dropped the last events; HATS equal within float32 rounding
(largest absolute difference printed). Timing as ``bench_data.py``: best of
``--repeats`` rounds after a warm-up, runners in turn, rotated, each timed call after an
untimed call of the same runner. Run::

    python benchmarks/bench_representations.py               # ~3 min on 2 busy cores
    python benchmarks/bench_representations.py --repeats 3 --json reps.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import _version, describe_machine, fmt_ratio, print_table
from bench_data import best_interleaved

from spikeflow.data import (
    EventRecording,
    bina_rep,
    make_events,
    to_averaged_time_surfaces,
    to_bina_rep,
    to_frames,
    to_image,
    to_sparse_frames,
)
from spikeflow.data.io import read_atis_bin

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TONIC_DTYPE = np.dtype([("x", int), ("y", int), ("t", int), ("p", int)])
T_BINA, N_BITS, T_SPARSE = 3, 8, 10
HATS = {"cell_size": 10, "surface_size": 5, "time_window": 1000.0, "tau": 100.0}


def as_tonic(r: EventRecording) -> np.ndarray:
    out = np.zeros(len(r), dtype=TONIC_DTYPE)
    for k in "txyp":
        out[k] = r.events[k]
    return out


def synthetic(n: int, sensor: tuple[int, int, int], seed: int = 0) -> EventRecording:
    rng = np.random.default_rng(seed)
    W, H, P = sensor
    t = np.sort(rng.integers(0, 1_000_000, n))
    return EventRecording(
        make_events(t, rng.integers(0, W, n), rng.integers(0, H, n), rng.integers(0, P, n)),
        sensor,
    )


# -- the pairs: (name, ours, tonic's, check) ---------------------------------------------


def pairs(tt, sensor: tuple[int, int, int]) -> list[tuple[str, Callable, Callable, Callable]]:
    image = tt.ToImage(sensor_size=sensor)
    frame = tt.ToFrame(sensor_size=sensor, n_time_bins=T_BINA * N_BITS)
    bina = tt.ToBinaRep(n_frames=T_BINA, n_bits=N_BITS)
    sparse = tt.ToSparseTensor(sensor_size=sensor, n_event_bins=T_SPARSE)

    def check_image(r, ev):
        return np.array_equal(to_image(r), image(ev.copy()))

    def check_bina(r, ev):
        ours, theirs = to_bina_rep(r, T_BINA, N_BITS), bina(frame(ev.copy()))
        packed = to_frames(r, T_BINA * N_BITS, "time")
        same_packing = np.array_equal(bina_rep(packed, N_BITS), bina(packed))
        diff = ours[-1].astype(np.float64) - theirs[-1]
        lsb = 1 / (2**N_BITS - 1)
        last_ok = np.all(np.isclose(diff, 0) | np.isclose(diff, lsb, rtol=1e-6))
        return bool(same_packing and np.array_equal(ours[:-1], theirs[:-1]) and last_ok)

    def check_sparse(r, ev):
        ours = to_sparse_frames(r, T_SPARSE, dtype=torch.int64).to_dense()
        theirs = sparse(ev.copy()).to_dense().long()
        tail = r.events[T_SPARSE * (len(r) // T_SPARSE) :]
        extra = np.zeros(ours.shape[1:], dtype=np.int64)
        np.add.at(extra, ((tail["p"] != 0).astype(int), tail["y"], tail["x"]), 1)
        return torch.equal(ours[:-1], theirs[:-1]) and torch.equal(
            ours[-1], theirs[-1] + torch.from_numpy(extra)
        )

    return [
        ("count image", to_image, lambda ev: image(ev.copy()), check_image),
        (f"Bina-Rep T={T_BINA} N={N_BITS} (time)", lambda r: to_bina_rep(r, T_BINA, N_BITS),
         lambda ev: bina(frame(ev.copy())), check_bina),
        (f"sparse frames T={T_SPARSE} (number)", lambda r: to_sparse_frames(r, T_SPARSE),
         lambda ev: sparse(ev.copy()), check_sparse),
    ]  # fmt: skip


def hats_pair(tt, sensor):
    hats = tt.ToAveragedTimesurface(sensor_size=sensor, **HATS)

    def ours(r):
        return to_averaged_time_surfaces(r, **HATS)

    def check(r, ev) -> float:
        return float(np.abs(ours(r) - hats(ev.copy())).max())

    return ours, (lambda ev: hats(ev.copy())), check


def each(items: list, fn: Callable) -> Callable[[], None]:
    def run() -> None:
        for item in items:
            fn(item)

    return run


def nmnist(tt, files: list[Path], hats_files: int, repeats: int) -> list[dict]:
    recs = [read_atis_bin(f) for f in files]
    evs = [as_tonic(r) for r in recs]
    n = sum(len(r) for r in recs)
    rows = []
    for name, ours, theirs, check in pairs(tt, (34, 34, 2)):
        ok = all(check(r, e) for r, e in zip(recs, evs))
        t_ours, t_peer = best_interleaved([each(recs, ours), each(evs, theirs)], repeats)
        rows.append({"what": f"N-MNIST {len(recs)} files: {name}", "events": n,
                     "spikeflow_s": t_ours, "tonic_s": t_peer, "check": ok})  # fmt: skip
    sub_r, sub_e = recs[:hats_files], evs[:hats_files]
    ours, theirs, check = hats_pair(tt, (34, 34, 2))
    worst = max(check(r, e) for r, e in zip(sub_r, sub_e))
    t_ours, t_peer = best_interleaved([each(sub_r, ours), each(sub_e, theirs)], 1)
    rows.append({"what": f"N-MNIST {len(sub_r)} files: HATS (Tonic defaults)",
                 "events": sum(len(r) for r in sub_r), "spikeflow_s": t_ours,
                 "tonic_s": t_peer, "check": f"max |diff| {worst:.2e}"})  # fmt: skip
    return rows


def one_recording(tt, n: int, sensor, prefix: int, repeats: int) -> list[dict]:
    r = synthetic(n, sensor)
    ev = as_tonic(r)
    label = f"{n:,} events {sensor[0]}x{sensor[1]}"
    rows = []
    for name, ours, theirs, check in pairs(tt, sensor):
        ok = check(r, ev)
        t_ours, t_peer = best_interleaved([each([r], ours), each([ev], theirs)], repeats)
        rows.append({"what": f"{label}: {name}", "events": n, "spikeflow_s": t_ours,
                     "tonic_s": t_peer, "check": ok})  # fmt: skip
    ours, theirs, check = hats_pair(tt, sensor)
    head = EventRecording(r.events[:prefix], sensor)
    worst = check(head, ev[:prefix])
    t_ours, t_peer = best_interleaved([lambda: ours(head), lambda: theirs(ev[:prefix])], 1)
    rows.append({"what": f"{label}: HATS, first {prefix:,} events", "events": prefix,
                 "spikeflow_s": t_ours, "tonic_s": t_peer,
                 "check": f"max |diff| {worst:.2e}"})  # fmt: skip
    (t_all,) = best_interleaved([lambda: ours(r)], 1)
    rows.append({"what": f"{label}: HATS, all events", "events": n, "spikeflow_s": t_all,
                 "tonic_s": None, "check": "Tonic not run (quadratic)"})  # fmt: skip
    return rows


def report(rows: list[dict]) -> None:
    table = []
    for r in rows:
        peer = r["tonic_s"]
        table.append([
            r["what"], f"{r['events']:,}", f"{r['spikeflow_s'] * 1e3:.2f}",
            f"{peer * 1e3:.2f}" if peer else "-", fmt_ratio(peer, r["spikeflow_s"]),
            "equal" if r["check"] is True else ("DIFFERENT" if r["check"] is False
                                                 else r["check"]),
        ])  # fmt: skip
    print_table(["what", "events", "spikeflow ms", "tonic ms", "speed-up", "check"], table)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5, help="timed runs after one warm-up")
    ap.add_argument("--data", type=Path, default=DATA, help="the shared data folder")
    ap.add_argument("--hats-files", type=int, default=50, help="N-MNIST files for HATS")
    ap.add_argument("--hats-prefix", type=int, default=20_000, help="events for Tonic's HATS")
    ap.add_argument("--events", type=int, default=1_000_000, help="synthetic recording size")
    ap.add_argument("--json", type=Path, help="also write the measured rows here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    for line in describe_machine(torch.device("cpu")):
        print(line)
    print(f"peers: tonic {_version('tonic')}; numpy {np.__version__}")
    print(f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}\n")
    try:
        import tonic.transforms as tt
    except Exception as exc:
        sys.exit(f"tonic unavailable ({type(exc).__name__}: {exc}): nothing to compare with")
    rows = []
    files = sorted((args.data / "nmnist-small").glob("*/*/*.bin"))
    if files:
        rows += nmnist(tt, files, args.hats_files, args.repeats)
    else:
        print(f"{args.data / 'nmnist-small'} absent: N-MNIST part skipped")
    for sensor in ((34, 34, 2), (346, 260, 2)):
        rows += one_recording(tt, args.events, sensor, args.hats_prefix, args.repeats)
    print()
    report(rows)
    if hasattr(os, "getloadavg"):
        print("load average (1, 5, 15 min) at the end: "
              + ", ".join(f"{v:.2f}" for v in os.getloadavg()))  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2, default=str))


if __name__ == "__main__":
    main()
