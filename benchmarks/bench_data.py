"""Event-file decoding and framing: spikeflow vs Tonic (and SpikingJelly's integration).

Two parts, in one process, single-threaded numpy everywhere (``torch.set_num_threads(1)``):

1. **N-MNIST, 1,100 files** (``../shared/data/nmnist-small``), processed one file at a
   time as a Dataset does (each result is dropped before the next file is read):

   - *decode*: spikeflow ``read_atis_bin`` vs Tonic ``tonic.io.read_mnist_file`` (with
     the int64 fields ``tonic.datasets.NMNIST`` asks for) and SpikingJelly's
     ``load_ATIS_bin``;
   - *decode + T = 10 frames by event count*: spikeflow
     ``to_frames(read_atis_bin(f), 10, "number")`` vs Tonic
     ``ToFrame(sensor_size=(34, 34, 2), n_event_bins=10)`` on its decode, and SpikingJelly
     ``integrate_events_by_fixed_frames_number(load_ATIS_bin(f), "number", 10, 34, 34)``.

2. **Large single files** (``../shared/data/event-files``): each spikeflow reader vs the
   code a Tonic user runs for that format: Tonic's own AEDAT 2.0 / 3.1 readers
   (``tonic.io``), ``tonic.io.read_aedat4`` (which calls the Rust ``aedat`` package),
   and, for Prophesee EVT 2.0 / 3.0 / ``.dat``, for which Tonic 1.7 ships no reader,
   ``expelliarmus`` (a C decoder that Tonic lists as a dependency). No real AEDAT 3.1
   file is available, so a DVS128-Gesture-like one (2 M events in polarity packets of 512
   to 8,192 events) is written to a temporary file. Tonic 1.7.0's ``read_dvs_ibm``
   raises (it unpacks two of the three values ``read_aedat_header_from_file`` returns),
   so its body is run as written; Tonic's DAVIS reader is run with the DAVIS240 sizes
   and a filter that drops the APS/IMU words it would otherwise return as events.

spikeflow runs with its default decoder setting (``"auto"``: the compiled C decoders of
``spikeflow/data/io/_decoders.c`` when a C compiler is available); the same readers with
``set_decoder("numpy")`` are timed alongside (column ``numpy-decoder ms``).

Every timing is the best of ``--repeats`` rounds after one warm-up, spikeflow and its
peers timed in turn within each round (in an order rotated every round) so that load
from other processes hits them alike; each timed call follows an untimed call of the
same reader, so it runs in the memory state of its own steady loop rather than the one
the previous reader left (``--schedule interleaved`` drops that untimed call; see
``best_interleaved``). Files stay in the page cache: this measures decoding, not the
disk. Each spikeflow/peer pair
is checked once to decode the same events and, for frames, the same frames; convention
differences (Tonic drops the ``N mod T`` left-over events, Tonic flips DAVIS ``y``) are
stated and the mapping between the two outputs is verified file by file. Run::

    python benchmarks/bench_data.py              # ~40 s on 2 cores
    python benchmarks/bench_data.py --repeats 15 --json data.json
"""

from __future__ import annotations

import argparse
import gc
import importlib
import importlib.util
import json
import os
import struct
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import _version, describe_machine, fmt_ratio, print_table

from spikeflow.data.frames import to_frames
from spikeflow.data.io import (
    get_decoder,
    read_aedat2,
    read_aedat4,
    read_aedat31,
    read_atis_bin,
    read_bs1,
    read_dat,
    read_evt2,
    read_evt3,
    use_decoder,
)
from spikeflow.data.io._native import compiled

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
T = 10
#: The event dtype ``tonic.datasets.NMNIST`` passes to ``read_mnist_file``.
TONIC_DTYPE = np.dtype([("x", int), ("y", int), ("t", int), ("p", int)])


SCHEDULES = ("steady", "interleaved")
#: How ``best_interleaved`` orders the calls; set from ``--schedule``.
SCHEDULE = "steady"


def best_interleaved(fns: list[Callable[[], object]], repeats: int) -> list[float]:
    """Best time of each function over ``repeats`` rounds (after one warm-up call each).

    Within a round every function runs in turn, so a load change on the shared machine
    hits all of them alike, and the order is rotated by one position every round (each
    function is first, second, ... equally often). With ``SCHEDULE == "steady"`` (the
    default) each timed call directly follows an untimed call of the same function:
    it then finds the process's memory as a loop over that reader leaves it (what a
    Dataset loop sees), not as the previous runner left it. Without that, whichever
    reader runs right after one that frees large blocks (glibc then returns them to the
    kernel) pays for page faults on fresh memory, which its own loop never does
    (``"interleaved"``, the older schedule, shows the effect).
    """
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    # One collection first, then none: a gc.collect() between calls walks every object of
    # the process (torch, the peers) and leaves the CPU caches cold for the next call.
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        for r in range(repeats):
            for i in range(len(fns)):
                k = (r + i) % len(fns)
                if SCHEDULE == "steady":
                    fns[k]()
                start = time.perf_counter()
                fns[k]()
                times[k].append(time.perf_counter() - start)
    finally:
        if enabled:
            gc.enable()
    return [min(ts) for ts in times]


# -- the peers ------------------------------------------------------------------------


def load_tonic():
    try:
        import tonic.io
        import tonic.transforms

        return tonic
    except Exception as exc:  # report and go on without the peer
        print(f"tonic: unavailable: {type(exc).__name__}: {exc}")
        return None


def load_spikingjelly():
    """SpikingJelly's ``datasets.utils`` (``load_ATIS_bin``, the frame integration).

    ``spikingjelly.datasets`` imports every dataset module, and those import torchvision
    and torchaudio, which are not installed here (they must match the installed torch).
    The two functions used need neither, so ``datasets/utils.py`` is imported under an
    empty parent package, with an empty ``torchvision.transforms`` module when
    torchvision is missing (utils.py imports it at the top and never uses it on this path).
    """
    try:
        import spikingjelly

        if "spikingjelly.datasets" not in sys.modules:
            pkg = types.ModuleType("spikingjelly.datasets")
            pkg.__path__ = [str(Path(spikingjelly.__file__).parent / "datasets")]
            sys.modules["spikingjelly.datasets"] = pkg
        if importlib.util.find_spec("torchvision") is None:
            tv = types.ModuleType("torchvision")
            tv.__path__ = []
            tv.transforms = types.ModuleType("torchvision.transforms")
            sys.modules.setdefault("torchvision", tv)
            sys.modules.setdefault("torchvision.transforms", tv.transforms)
        return importlib.import_module("spikingjelly.datasets.utils")
    except Exception as exc:
        print(f"spikingjelly: unavailable: {type(exc).__name__}: {exc}")
        return None


# -- part 1: N-MNIST ------------------------------------------------------------------


def each(files: list[Path], fn: Callable[[Path], object]) -> Callable[[], None]:
    """Process the files one at a time, dropping each result (what a Dataset does)."""

    def run() -> None:
        for f in files:
            fn(f)

    return run


def check_tonic_nmnist(files: list[Path], tonic, tf) -> str:
    """Same events; frames: Tonic's ``SliceByEventBins`` gives every frame ``⌊N/T⌋``
    events and drops the ``N mod T`` left-over ones, spikeflow (methods.md 11.1) puts
    them in the last frame. Verified: frames 0..T-2 equal, frame T-1 = Tonic's + the
    left-over events."""
    left_over = 0
    for f in files:
        ours = read_atis_bin(f).events
        ref = tonic.io.read_mnist_file(str(f), TONIC_DTYPE)
        for k in "txyp":
            if not np.array_equal(ours[k].astype(np.int64), ref[k]):
                return f"DIFFERENT events in {f.name} (field {k})"
        a = to_frames(read_atis_bin(f), T, "number").astype(np.int64)
        b = tf(ref).astype(np.int64)
        n = len(ours)
        tail = ours[T * (n // T) :]  # the N mod T events Tonic drops
        extra = np.zeros_like(a[-1])
        np.add.at(extra, ((tail["p"] != 0).astype(int), tail["y"], tail["x"]), 1)
        if not (np.array_equal(a[:-1], b[:-1]) and np.array_equal(a[-1], b[-1] + extra)):
            return f"DIFFERENT frames in {f.name}"
        left_over += len(tail)
    return (
        f"same events in all {len(files)} files; frames 0-{T - 2} identical, frame {T - 1} = "
        f"Tonic's + the N mod {T} left-over events Tonic drops ({left_over} in all; "
        "spikeflow follows methods.md 11.1: the last segment extends to N)"
    )


def check_sj_nmnist(files: list[Path], sj) -> str:
    """SpikingJelly's split (``Δ = ⌊N/T⌋``, last segment to ``N``) is spikeflow's: equal."""
    for f in files:
        ours = read_atis_bin(f).events
        ref = sj.load_ATIS_bin(str(f))
        if len(ref["t"]) != len(ours) or any(
            not np.array_equal(ours[k].astype(np.int64), ref[k].astype(np.int64)) for k in "txyp"
        ):
            return f"DIFFERENT events in {f.name}"
        a = to_frames(read_atis_bin(f), T, "number")
        b = sj.integrate_events_by_fixed_frames_number(ref, "number", T, 34, 34)
        if not np.array_equal(a, b):
            return f"DIFFERENT frames in {f.name}"
    return (
        f"same events and identical frames in all {len(files)} files (SpikingJelly's "
        "load_ATIS_bin keeps y = 240 overflow markers; these files have none)"
    )


def with_numpy_decoder(fn: Callable) -> Callable:
    """``fn`` run with the numpy decoders (the rows' "numpy ms" column)."""

    def run(*args):
        with use_decoder("numpy"):
            return fn(*args)

    return run


def nmnist(files: list[Path], tonic, sj, repeats: int) -> list[dict]:
    n_events = sum(len(read_atis_bin(f)) for f in files)
    tasks: list[tuple[str, Callable[[Path], object], dict[str, Callable[[Path], object]]]] = []
    decode_peers: dict[str, Callable[[Path], object]] = {}
    frame_peers: dict[str, Callable[[Path], object]] = {}
    if tonic is not None:
        tf = tonic.transforms.ToFrame(sensor_size=(34, 34, 2), n_event_bins=T)
        read = tonic.io.read_mnist_file
        decode_peers["tonic"] = lambda f: read(str(f), TONIC_DTYPE)
        frame_peers["tonic"] = lambda f: tf(read(str(f), TONIC_DTYPE))
        print("check, N-MNIST vs tonic:", check_tonic_nmnist(files, tonic, tf))
    if sj is not None:
        integrate = sj.integrate_events_by_fixed_frames_number
        decode_peers["spikingjelly"] = lambda f: sj.load_ATIS_bin(str(f))
        frame_peers["spikingjelly"] = lambda f: integrate(
            sj.load_ATIS_bin(str(f)), "number", T, 34, 34
        )
        print("check, N-MNIST vs spikingjelly:", check_sj_nmnist(files, sj))
    tasks.append(("decode", read_atis_bin, decode_peers))
    tasks.append(
        (f"decode + {T} frames by count", lambda f: to_frames(read_atis_bin(f), T, "number"),
         frame_peers)
    )  # fmt: skip
    rows = []
    for name, ours, peers in tasks:
        what = f"N-MNIST {len(files)} files: {name}"
        t_ours, t_np, *t_peers = best_interleaved(
            [each(files, ours), each(files, with_numpy_decoder(ours)),
             *(each(files, fn) for fn in peers.values())], repeats,
        )  # fmt: skip
        if not peers:
            rows.append({"what": what, "events": n_events, "spikeflow_s": t_ours,
                         "numpy_s": t_np, "peer": None, "peer_s": None})  # fmt: skip
        for peer, t_peer in zip(peers, t_peers):
            rows.append({"what": what, "events": n_events, "spikeflow_s": t_ours,
                         "numpy_s": t_np, "peer": peer, "peer_s": t_peer})  # fmt: skip
    return rows


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
    return tonic.io.make_structured_array(x, y, t, p)


def tonic_dvs_ibm(tonic, path: str) -> np.ndarray:
    """The body of ``tonic.io.read_dvs_ibm`` (whose header call is broken in 1.7.0)."""
    version, start, _ = tonic.io.read_aedat_header_from_file(path)
    ev = tonic.io.get_aer_events_from_file(path, version, start)
    addr = ev["address"]
    x = (addr >> 17) & 0x00001FFF
    y = (addr >> 2) & 0x00001FFF
    p = (addr >> 1) & 0x00000001
    return tonic.io.make_structured_array(x, y, ev["timeStamp"], p)


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


def large_cases(tonic, tmp: Path) -> list[tuple]:
    ef = DATA / "event-files"
    try:
        from expelliarmus import Wizard
    except Exception as exc:
        print(f"expelliarmus: unavailable: {type(exc).__name__}: {exc}")
        Wizard = None
    aedat = importlib.util.find_spec("aedat")
    if aedat is None:
        print("aedat: unavailable (tonic.io.read_aedat4 needs it)")

    def wizard(enc: str):
        return (lambda p: Wizard(encoding=enc).read(str(p))) if Wizard else None

    aedat4_peer = (lambda p: tonic.io.read_aedat4(str(p))) if (tonic and aedat) else None
    synth = tmp / "gesture_like.aedat"
    synth_aedat31(synth)
    flip_y = {"y": lambda b: 179 - b}
    evt3_note = (
        "x, y, p equal; t differs: expelliarmus adds 4096 us at every EVT_TIME_LOW wrap "
        "(it counts the wrap twice, once with the new EVT_TIME_HIGH); spikeflow matches a "
        "plain state machine of the spec (tests/test_data_io_real.py)"
    )
    expel = "expelliarmus (C; Tonic 1.7 has no reader)"
    aedat4 = "tonic.io.read_aedat4 (Rust aedat)"
    return [
        ("AEDAT 2.0 DAVIS240 (IMU_translBoxes)", ef / "aedat2" / "IMU_translBoxes.aedat",
         read_aedat2, "tonic.io (AEDAT 2) + DAVIS masks",
         (lambda p: tonic_aedat2_davis(tonic, str(p))) if tonic else None, flip_y,
         "same events once Tonic's y = 179 - y is undone (Tonic flips y to a top-left "
         "origin; spikeflow keeps jAER's bottom-left one)"),
        ("AEDAT 3.1 synthetic Gesture-like", synth, read_aedat31, "tonic.io (read_dvs_ibm body)",
         (lambda p: tonic_dvs_ibm(tonic, str(p))) if tonic else None, None, ""),
        ("AEDAT 4 DVXplorer (sample.aedat4)", ef / "aedat4" / "sample.aedat4", read_aedat4,
         aedat4, aedat4_peer, None, ""),
        ("AEDAT 4 DAVIS346 (davis.aedat4)", ef / "aedat4" / "davis.aedat4", read_aedat4,
         aedat4, aedat4_peer, None, ""),
        ("EVT 2.0 (evt2.raw)", ef / "prophesee-evt2" / "evt2.raw", read_evt2, expel,
         wizard("evt2"), None, ""),
        ("EVT 2.0 (evt2_sample.raw)", ef / "prophesee-evt2" / "evt2_sample.raw", read_evt2,
         expel, wizard("evt2"), None, ""),
        ("EVT 3.0 (evt3_sample.raw)", ef / "prophesee-evt3" / "evt3_sample.raw", read_evt3,
         expel, wizard("evt3"), None, evt3_note),
        (".dat N-CARS (NCARS_obj_004397_td)", ef / "prophesee-dat" / "NCARS_obj_004397_td.dat",
         read_dat, expel, wizard("dat"), None, ""),
        (".bs1 N-TIDIGITS (NTIDIGITS_1)", ef / "slayer-bs1" / "NTIDIGITS_1.bs1", read_bs1,
         None, None, None, "no peer: Tonic 1.7 has no .bs1 reader"),
    ]  # fmt: skip


def large_files(tonic, tmp: Path, repeats: int) -> list[dict]:
    rows = []
    for name, path, ours, peer_name, peer, mapping, note in large_cases(tonic, tmp):
        if not path.exists():
            print(f"{name}: {path} absent, skipped")
            continue
        n = len(ours(path))
        t_peer, check = None, note or "peer unavailable"
        slow = with_numpy_decoder(ours)
        if peer is None:
            t_ours, t_np = best_interleaved(
                [lambda f=ours, p=path: f(p), lambda f=slow, p=path: f(p)], repeats
            )
        else:
            t_ours, t_np, t_peer = best_interleaved(
                [lambda f=ours, p=path: f(p), lambda f=slow, p=path: f(p),
                 lambda f=peer, p=path: f(p)], repeats,
            )  # fmt: skip
            check = compare(ours(path).events, peer(path), mapping)
            if note and check != "same events":
                check = f"{check}: {note}"
            elif note:
                check = note
        rows.append({"what": name, "events": n, "spikeflow_s": t_ours, "numpy_s": t_np,
                     "peer": peer_name if peer else None, "peer_s": t_peer,
                     "check": check})  # fmt: skip
    return rows


# -- report ---------------------------------------------------------------------------


def report(rows: list[dict]) -> None:
    table = []
    for r in rows:
        ours = r["events"] / r["spikeflow_s"] / 1e6
        peer = r["events"] / r["peer_s"] / 1e6 if r["peer_s"] else None
        table.append([
            r["what"], f"{r['events']:,}", f"{r['spikeflow_s'] * 1e3:.2f}", f"{ours:.1f}",
            f"{r['numpy_s'] * 1e3:.2f}", r["peer"] or "-",
            f"{r['peer_s'] * 1e3:.2f}" if r["peer_s"] else "-",
            f"{peer:.1f}" if peer else "-", fmt_ratio(r["peer_s"], r["spikeflow_s"]),
        ])  # fmt: skip
    print_table(
        [
            "what",
            "events",
            "spikeflow ms",
            "Mev/s",
            "numpy-decoder ms",
            "peer",
            "peer ms",
            "Mev/s",
            "speed-up",
        ],
        table,
    )
    for r in rows:
        if r.get("check"):
            print(f"  check, {r['what']}: {r['check']}")
    vs_tonic = [r for r in rows if r["peer_s"] and (r["peer"] or "").startswith("tonic")]
    if vs_tonic:
        worst = min(vs_tonic, key=lambda r: r["peer_s"] / r["spikeflow_s"])
        print(f"\nlowest speed-up vs Tonic: {fmt_ratio(worst['peer_s'], worst['spikeflow_s'])} "
              f"({worst['what']}, vs {worst['peer']})")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=9, help="timed runs after one warm-up")
    ap.add_argument("--data", type=Path, default=DATA, help="the shared data folder")
    ap.add_argument("--json", type=Path, help="also write the measured rows here")
    ap.add_argument(
        "--schedule", choices=SCHEDULES, default="steady",
        help="steady: each timed call follows an untimed call of the same reader (the "
        "state of a Dataset loop); interleaved: readers alternate call by call",
    )  # fmt: skip
    args = ap.parse_args()
    globals()["DATA"] = args.data
    globals()["SCHEDULE"] = args.schedule
    torch.set_num_threads(1)
    for line in describe_machine(torch.device("cpu")):
        print(line)
    print(f"peers: tonic {_version('tonic')}, spikingjelly {_version('spikingjelly')}, "
          f"expelliarmus {_version('expelliarmus')}, aedat {_version('aedat')}; "
          f"numpy {np.__version__}")  # fmt: skip
    active = "compiled C" if compiled() is not None else "numpy"
    print(
        f"spikeflow decoder: {get_decoder()!r} -> {active} (the 'numpy-decoder ms' column: "
        "the same readers with set_decoder('numpy'))"
    )
    print(f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}\n")
    tonic, sj = load_tonic(), load_spikingjelly()
    files = sorted((args.data / "nmnist-small").glob("*/*/*.bin"))
    rows = []
    if files:
        rows += nmnist(files, tonic, sj, args.repeats)
    else:
        print(f"{args.data / 'nmnist-small'} absent: N-MNIST part skipped")
    with tempfile.TemporaryDirectory() as tmp:
        rows += large_files(tonic, Path(tmp), args.repeats)
    print()
    report(rows)
    if hasattr(os, "getloadavg"):
        print("load average (1, 5, 15 min) at the end: "
              + ", ".join(f"{v:.2f}" for v in os.getloadavg()))  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
