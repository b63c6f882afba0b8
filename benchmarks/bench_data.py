"""Event-file decoding: spikeflow's readers vs Tonic (and the libraries Tonic uses).

Two parts, in one process, single-threaded numpy on both sides:

1. **N-MNIST, 1,100 files** (``../shared/data/nmnist-small``): decode every ``.bin``
   file, then decode and integrate it into ``T = 10`` frames split by event count.
   spikeflow: ``read_atis_bin`` + ``spikeflow.data.frames.to_frames(rec, 10, "number")``
   (a plain ``np.bincount`` when that module is absent); Tonic:
   ``tonic.io.read_mnist_file`` + ``tonic.transforms.ToFrame(n_event_bins=10)``.
2. **Large single files** (``../shared/data/event-files``): each spikeflow reader vs
   the peer Tonic relies on for that format: Tonic's own AEDAT 2/3.1 code
   (``tonic.io``), the ``aedat`` package behind ``tonic.io.read_aedat4``, and
   ``expelliarmus`` (Tonic's dependency for Prophesee EVT 2.0/3.0/.dat). No real AEDAT
   3.1 file is available, so a DVS128-Gesture-like one (2 M events in polarity packets
   of 512 to 8,192 events) is written to a temporary file. Tonic 1.7.0's
   ``read_dvs_ibm`` itself raises (it unpacks two of the three values that
   ``read_aedat_header_from_file`` returns), so its body is run as written.

Throughput is events per second over the median of ``--repeats`` timed runs after one
warm-up run (files stay in the page cache: this measures decoding, not the disk). Every
pair is checked once to decode the same events; known, explained differences are
printed instead of a plain "same". Run::

    python benchmarks/bench_data.py              # ~1 min on 2 cores
    python benchmarks/bench_data.py --repeats 9 --json data.json
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import _version, describe_machine, fmt_ratio, measure, median, print_table

from spikeflow.data.io import (
    read_aedat2,
    read_aedat4,
    read_aedat31,
    read_atis_bin,
    read_dat,
    read_evt2,
    read_evt3,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
T = 10

try:
    from spikeflow.data.frames import to_frames

    FRAMES = "spikeflow.data.frames.to_frames"
except ImportError:  # the frames module may not exist yet: a plain bincount

    def to_frames(rec, frames_number: int, split_by: str = "number") -> np.ndarray:
        ev, (w, h, p) = rec.events, rec.sensor_size
        n = len(ev)
        d = n // frames_number
        seg = (
            np.minimum(np.arange(n) // max(d, 1), frames_number - 1)
            if d
            else np.full(n, frames_number - 1)
        )
        flat = ((seg * p + (ev["p"] != 0)) * h + ev["y"]) * w + ev["x"]
        return np.bincount(flat, minlength=frames_number * p * h * w).reshape(
            frames_number, p, h, w
        )

    FRAMES = "numpy bincount (benchmark-local)"


def tonic_modules():
    try:
        import tonic.io
        import tonic.transforms

        return tonic
    except Exception as exc:  # report and go on without the peer
        print(f"tonic: unavailable: {type(exc).__name__}: {exc}")
        return None


# -- part 1: N-MNIST ------------------------------------------------------------------

TONIC_DTYPE = np.dtype([("x", int), ("y", int), ("t", int), ("p", int)])


def nmnist(files: list[Path], tonic, args) -> list[dict]:
    n_events = sum(len(read_atis_bin(f)) for f in files)
    ours_decode = lambda: [read_atis_bin(f) for f in files]  # noqa: E731
    ours_frames = lambda: [to_frames(read_atis_bin(f), T, "number") for f in files]  # noqa: E731
    runs: list[tuple[str, Callable, Callable | None]] = [
        ("decode", ours_decode, None),
        (f"decode + {T} frames by count", ours_frames, None),
    ]
    if tonic is not None:
        tf = tonic.transforms.ToFrame(sensor_size=(34, 34, 2), n_event_bins=T)
        read = tonic.io.read_mnist_file
        runs = [
            ("decode", ours_decode, lambda: [read(str(f), TONIC_DTYPE) for f in files]),
            (
                f"decode + {T} frames by count",
                ours_frames,
                lambda: [tf(read(str(f), TONIC_DTYPE)) for f in files],
            ),
        ]
        print("check:", check_nmnist(files, tonic, tf))
    rows = []
    for name, ours, peer in runs:
        t_ours = median(measure(ours, torch.device("cpu"), repeats=args.repeats))
        t_peer = median(measure(peer, torch.device("cpu"), repeats=args.repeats)) if peer else None
        rows.append(
            {
                "what": f"N-MNIST {len(files)} files: {name}",
                "events": n_events,
                "spikeflow_s": t_ours,
                "peer": "tonic" if peer else None,
                "peer_s": t_peer,
            }
        )
    return rows


def check_nmnist(files: list[Path], tonic, tf) -> str:
    last_extra = 0
    for f in files:
        ours = read_atis_bin(f).events
        ref = tonic.io.read_mnist_file(str(f), TONIC_DTYPE)
        for k in "txyp":
            if not np.array_equal(ours[k].astype(np.int64), ref[k].astype(np.int64)):
                return f"DIFFERENT events in {f.name} (field {k})"
        a = to_frames(read_atis_bin(f), T, "number").astype(np.int64)
        b = tf(ref).astype(np.int64)
        if not np.array_equal(a[:-1], b[:-1]) or (a[-1] - b[-1]).min() < 0:
            return f"DIFFERENT frames in {f.name}"
        last_extra += int((a[-1] - b[-1]).sum())
        if (a[-1] - b[-1]).sum() != len(ours) % T:
            return f"DIFFERENT last frame in {f.name}"
    return (
        f"same events in all {len(files)} files; frames 0-{T - 2} identical, frame {T - 1} "
        f"holds the N mod {T} left-over events ({last_extra} in all) that Tonic drops "
        "(spikeflow follows methods.md 11.1 / SpikingJelly: the last segment extends to N)"
    )


# -- part 2: large files --------------------------------------------------------------


def synth_aedat31(path: Path, n: int = 2_000_000, seed: int = 0) -> None:
    """A DVS128-Gesture-like AEDAT 3.1 file of polarity packets (no special packets:
    Tonic would read those as polarity events; skipping them is tested in tests/)."""
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.integers(0, 20, n)).astype(np.uint32)
    data = (
        (rng.integers(0, 128, n).astype(np.uint32) << 17)
        | (rng.integers(0, 128, n).astype(np.uint32) << 2)
        | (rng.integers(0, 2, n).astype(np.uint32) << 1)
        | np.uint32(1)
    )
    with open(path, "wb") as fh:
        fh.write(b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n#!END-HEADER\r\n")
        i = 0
        while i < n:
            k = min(int(rng.integers(512, 8193)), n - i)
            fh.write(struct.pack("<hhiiiiii", 1, 1, 8, 4, 0, k, k, k))
            fh.write(np.stack([data[i : i + k], t[i : i + k]], 1).astype("<u4").tobytes())
            i += k


def tonic_aedat2_davis(tonic, path: str, width: int = 240, height: int = 180) -> np.ndarray:
    """Tonic's AEDAT 2 reading, its DAVIS masks (as read_davis_346) and a polarity filter."""
    version, start, _ = tonic.io.read_aedat_header_from_file(path)
    ev = tonic.io.get_aer_events_from_file(path, version, start)
    addr, t = ev["address"], ev["timeStamp"]
    keep = (addr & 0x80000400) == 0
    addr, t = addr[keep], t[keep]
    x = (width - 1) - ((addr & 4190208) >> 12)
    y = (height - 1) - ((addr & 2143289344) >> 22)
    p = (addr & 2048) >> 11
    out = np.empty(len(t), dtype=TONIC_DTYPE)
    out["x"], out["y"], out["t"], out["p"] = x, y, t, p
    return out


def tonic_dvs_ibm(tonic, path: str) -> np.ndarray:
    """The body of ``tonic.io.read_dvs_ibm`` (whose header call is broken in 1.7.0)."""
    version, start, _ = tonic.io.read_aedat_header_from_file(path)
    ev = tonic.io.get_aer_events_from_file(path, version, start)
    addr = ev["address"]
    out = np.empty(len(addr), dtype=TONIC_DTYPE)
    out["x"] = (addr >> 17) & 0x00001FFF
    out["y"] = (addr >> 2) & 0x00001FFF
    out["p"] = (addr >> 1) & 0x00000001
    out["t"] = ev["timeStamp"]
    return out


def compare(ours: np.ndarray, ref: np.ndarray, mapping: dict[str, Callable] | None = None) -> str:
    if len(ours) != len(ref):
        return f"DIFFERENT counts ({len(ours)} vs {len(ref)})"
    diffs = []
    for k in "txyp":
        a = ours[k].astype(np.int64)
        key = "on" if k == "p" and "on" in (ref.dtype.names or ()) else k
        b = ref[key].astype(np.int64)
        if mapping and k in mapping:
            b = mapping[k](b)
        if not np.array_equal(a, b):
            diffs.append(k)
    return "same events" if not diffs else f"fields {','.join(diffs)} differ"


def large_files(tonic, tmp: Path, args) -> list[dict]:
    ef = DATA / "event-files"
    cases: list[tuple[str, Path, Callable, str, Callable | None, dict | None, str]] = []
    try:
        from expelliarmus import Wizard
    except Exception as exc:
        print(f"expelliarmus: unavailable: {type(exc).__name__}: {exc}")
        Wizard = None
    try:
        import aedat
    except Exception as exc:
        print(f"aedat: unavailable: {type(exc).__name__}: {exc}")
        aedat = None

    def wizard(enc: str):
        return (lambda p: Wizard(encoding=enc).read(str(p))) if Wizard else None

    def aedat4_peer(p):
        return tonic.io.read_aedat4(str(p))

    synth = tmp / "gesture_like.aedat"
    synth_aedat31(synth)
    flip_y = {"y": lambda b: 179 - b}
    evt3_note = (
        "x, y, p equal; t differs: expelliarmus adds 4096 us at every EVT_TIME_LOW wrap "
        "(it counts the wrap twice, once with the new EVT_TIME_HIGH); spikeflow matches a "
        "plain state machine of the spec (tests/test_data_io_real.py)"
    )
    cases += [
        ("AEDAT 2.0 DAVIS240 (IMU_translBoxes)", ef / "aedat2" / "IMU_translBoxes.aedat",
         read_aedat2, "tonic.io (AEDAT 2) + DAVIS masks",
         (lambda p: tonic_aedat2_davis(tonic, str(p))) if tonic else None, flip_y,
         "same events (Tonic flips y to a top-left origin; spikeflow keeps jAER's)"),
        ("AEDAT 3.1 synthetic Gesture-like", synth, read_aedat31, "tonic.io (read_dvs_ibm body)",
         (lambda p: tonic_dvs_ibm(tonic, str(p))) if tonic else None, None, ""),
        ("AEDAT 4 DVXplorer (sample.aedat4)", ef / "aedat4" / "sample.aedat4", read_aedat4,
         "tonic.io.read_aedat4 (aedat)", aedat4_peer if (tonic and aedat) else None, None, ""),
        ("AEDAT 4 DAVIS346 (davis.aedat4)", ef / "aedat4" / "davis.aedat4", read_aedat4,
         "tonic.io.read_aedat4 (aedat)", aedat4_peer if (tonic and aedat) else None, None, ""),
        ("EVT 2.0 (evt2.raw)", ef / "prophesee-evt2" / "evt2.raw", read_evt2, "expelliarmus",
         wizard("evt2"), None, ""),
        ("EVT 2.0 (evt2_sample.raw)", ef / "prophesee-evt2" / "evt2_sample.raw", read_evt2,
         "expelliarmus", wizard("evt2"), None, ""),
        ("EVT 3.0 (evt3_sample.raw)", ef / "prophesee-evt3" / "evt3_sample.raw", read_evt3,
         "expelliarmus", wizard("evt3"), None, evt3_note),
        (".dat N-CARS (NCARS_obj_004397_td)", ef / "prophesee-dat" / "NCARS_obj_004397_td.dat",
         read_dat, "expelliarmus", wizard("dat"), None, ""),
    ]  # fmt: skip
    rows = []
    for name, path, ours, peer_name, peer, mapping, note in cases:
        if not path.exists():
            print(f"{name}: {path} absent, skipped")
            continue
        n = len(ours(path))
        cpu = torch.device("cpu")
        t_ours = median(measure(lambda f=ours, p=path: f(p), cpu, repeats=args.repeats))
        t_peer, check = None, "peer unavailable"
        if peer is not None:
            t_peer = median(measure(lambda f=peer, p=path: f(p), cpu, repeats=args.repeats))
            check = compare(ours(path).events, peer(path), mapping)
            if note and check != "same events":
                check = f"{check}: {note}"
            elif note:
                check = note
        rows.append({"what": name, "events": n, "spikeflow_s": t_ours, "peer": peer_name,
                     "peer_s": t_peer, "check": check})  # fmt: skip
    return rows


def report(rows: list[dict]) -> None:
    table = []
    for r in rows:
        ours = r["events"] / r["spikeflow_s"] / 1e6
        peer = r["events"] / r["peer_s"] / 1e6 if r["peer_s"] else None
        table.append([
            r["what"], f"{r['events']:,}", f"{r['spikeflow_s'] * 1e3:.1f}", f"{ours:.1f}",
            r["peer"] or "-", f"{r['peer_s'] * 1e3:.1f}" if r["peer_s"] else "-",
            f"{peer:.1f}" if peer else "-", fmt_ratio(r["peer_s"], r["spikeflow_s"]),
        ])  # fmt: skip
    print_table(
        ["what", "events", "spikeflow ms", "Mev/s", "peer", "peer ms", "Mev/s", "speed-up"], table
    )
    for r in rows:
        if r.get("check"):
            print(f"  check, {r['what']}: {r['check']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5, help="timed runs after one warm-up")
    ap.add_argument("--data", type=Path, default=DATA, help="the shared data folder")
    ap.add_argument("--json", type=Path, help="also write the measured rows here")
    args = ap.parse_args()
    globals()["DATA"] = args.data
    torch.set_num_threads(1)
    for line in describe_machine(torch.device("cpu")):
        print(line)
    print(f"peers: tonic {_version('tonic')}, expelliarmus {_version('expelliarmus')}, "
          f"aedat {_version('aedat')}; numpy {np.__version__}; frames: {FRAMES}")  # fmt: skip
    print(f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}\n")
    tonic = tonic_modules()
    files = sorted((args.data / "nmnist-small").glob("*/*/*.bin"))
    rows = []
    if files:
        rows += nmnist(files, tonic, args)
    else:
        print(f"{args.data / 'nmnist-small'} absent: N-MNIST part skipped")
    with tempfile.TemporaryDirectory() as tmp:
        rows += large_files(tonic, Path(tmp), args)
    print()
    report(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
