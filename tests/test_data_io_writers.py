"""Event writers and the dense-spikes converter (spikeflow.data.io.spike_files): byte
equality with the real N-MNIST .bin and N-TIDIGITS .bs1 files re-encoded from their
decoded events, with Lava-DL's slayer.io encoders (transcribed below from
lava-nc/lava-dl src/lava/lib/dl/slayer/io.py, commit 118826f: Lava-DL is not on PyPI),
round trips through spikeflow's readers, atomic writes and the errors."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
import torch

from conftest import require_shared_data
from spikeflow.data import EventRecording, make_events, to_frames
from spikeflow.data.io import (
    encode_atis_bin,
    encode_bs1,
    read_atis_bin,
    read_bs1,
    read_np_spikes,
    spikes_to_events,
    write_atis_bin,
    write_bs1,
    write_np_spikes,
)
from spikeflow.errors import ConfigurationError, DataFormatError, ShapeError


# -- Lava-DL's slayer.io, transcribed (arrays instead of its Event object) -----------------
def lava_read_40bit(raw: bytes, dim: int) -> tuple:
    """read_2d_spikes / read_1d_spikes: (x, y, c, t in ms), ``c`` the polarity bit as
    read (the Event these functions return then shifts it by its minimum, see below)."""
    b = np.frombuffer(raw, np.uint8).astype(np.int64)
    x = b[0::5] if dim == 2 else (b[0::5] << 8) | b[1::5]
    y = b[1::5] if dim == 2 else None
    c = b[2::5] >> 7
    t = ((b[2::5] << 16) | (b[3::5] << 8) | b[4::5]) & 0x7FFFFF
    return x, y, c, t / 1000


def lava_encode_40bit(x, y, c, t_ms) -> bytes:
    """encode_2d_spikes (y given) / encode_1d_spikes (y None), bit for bit; the 1-D one
    writes ``(x >> 8) & 0xFF00`` as its first byte (0 below 65536: the high byte is lost)."""
    x, c = np.round(x).astype(int), np.round(c).astype(int)
    t = np.round(t_ms * 1000).astype(int)
    out = bytearray(len(t) * 5)
    if y is None:
        out[0::5] = np.uint8((x >> 8) & 0xFF00).tobytes()
        out[1::5] = np.uint8(x & 0xFF).tobytes()
    else:
        out[0::5] = np.uint8(x).tobytes()
        out[1::5] = np.uint8(np.round(y).astype(int)).tobytes()
    out[2::5] = np.uint8(((t >> 16) & 0x7F) | (c << 7)).tobytes()
    out[3::5] = np.uint8((t >> 8) & 0xFF).tobytes()
    out[4::5] = np.uint8(t & 0xFF).tobytes()
    return bytes(out)


def lava_encode_np(x, y, c, t_ms) -> bytes:
    """encode_np_spikes(fmt='xypt'): float64 [N, 4] (x, y, c, t) or [N, 3] (x, c, t)."""
    table = np.zeros((len(x), 3 if y is None else 4))
    cols = [x, c, t_ms] if y is None else [x, y, c, t_ms]
    for k, col in enumerate(cols):
        table[:, k] = col
    buffer = io.BytesIO()
    np.save(buffer, table)
    return buffer.getvalue()


def lava_tensor_to_event(spikes: np.ndarray, sampling_time: float) -> tuple:
    """tensor_to_event for binary spikes: argwhere order (c, y, x, t), t in its unit."""
    idx = np.argwhere(spikes != 0)
    if spikes.ndim == 3:
        return idx[:, 1], None, idx[:, 0], idx[:, 2] * sampling_time
    return idx[:, 2], idx[:, 1], idx[:, 0], idx[:, 3] * sampling_time


def _nmnist_files():
    root = require_shared_data("nmnist-small")
    files = sorted(root.glob("*/*/*.bin"))
    sample = root.parent / "event-files" / "nmnist-bin" / "sample_nmnist.bin"
    return [*files, *([sample] if sample.exists() else [])]


def test_every_real_nmnist_file_reencodes_byte_for_byte(tmp_path):
    files = _nmnist_files()
    assert len(files) >= 1100
    for f in files:
        raw = f.read_bytes()
        rec = read_atis_bin(f)
        assert encode_atis_bin(rec) == raw, f
    out = write_atis_bin(tmp_path / "copy.bin", read_atis_bin(files[0]))
    assert out.read_bytes() == files[0].read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == ["copy.bin"]  # no temporary left


def test_equal_to_lava_dl_encoders_on_real_files(tmp_path):
    for f in _nmnist_files()[::50]:
        raw = f.read_bytes()
        x, y, c, t = lava_read_40bit(raw, 2)
        theirs = lava_encode_40bit(x, y, c, t)
        assert theirs == raw == encode_atis_bin(read_atis_bin(f))
        write_np_spikes(tmp_path / "s.npy", read_atis_bin(f))
        assert (tmp_path / "s.npy").read_bytes() == lava_encode_np(x, y, c, t)
        back = read_np_spikes(tmp_path / "s.npy", sensor_size=(34, 34))
        np.testing.assert_array_equal(back.events, read_atis_bin(f).events)
    bs1 = require_shared_data("event-files", "slayer-bs1", "NTIDIGITS_1.bs1")
    raw = bs1.read_bytes()
    rec = read_bs1(bs1)
    x, _, c, t = lava_read_40bit(raw, 1)
    assert encode_bs1(rec) == raw == lava_encode_40bit(x, None, c, t)
    assert (c == 1).all()  # Lava-DL's Event() does c -= c.min(): its copy reads as OFF events
    shifted = np.frombuffer(lava_encode_40bit(x, None, c - c.min(), t), np.uint8)
    assert (shifted[2::5] >> 7 == 0).all() and (read_bs1(bs1).events["p"] == 1).all()
    write_np_spikes(tmp_path / "a.npy", rec, dim=1)
    assert (tmp_path / "a.npy").read_bytes() == lava_encode_np(x, None, c, t)
    np.testing.assert_array_equal(read_np_spikes(tmp_path / "a.npy").events, rec.events)


def test_round_trips_through_the_readers(tmp_path):
    rng = np.random.default_rng(0)
    n = 5000
    t = np.sort(rng.integers(0, 2**23, n))
    wide = EventRecording(
        make_events(t, rng.integers(0, 65536, n), None, rng.integers(0, 2, n)), (65536, 1, 2)
    )
    write_bs1(tmp_path / "w.bs1", wide)
    np.testing.assert_array_equal(read_bs1(tmp_path / "w.bs1", channels=None).events, wide.events)
    # Lava-DL's 1-D encoder loses the channel's high byte: its reader sees x mod 256
    x, _, _, _ = lava_read_40bit(lava_encode_40bit(wide.events["x"], None, wide.events["p"],
                                                   wide.events["t"] / 1000), 1)  # fmt: skip
    np.testing.assert_array_equal(x, wide.events["x"] % 256)
    atis = EventRecording(make_events(t, rng.integers(0, 240, n), rng.integers(0, 180, n),
                                      rng.integers(0, 2, n)), (240, 180, 2))  # fmt: skip
    write_atis_bin(tmp_path / "c.bin", atis)
    np.testing.assert_array_equal(read_atis_bin(tmp_path / "c.bin", None).events, atis.events)
    for unit in (1e-6, 1e-3, 1.0 / 30):
        write_np_spikes(tmp_path / "u.npy", atis, time_unit=unit)
        back = read_np_spikes(tmp_path / "u.npy", time_unit=unit)
        np.testing.assert_array_equal(back.events, atis.events)
        assert back.sensor_size == (int(atis.events["x"].max()) + 1,
                                    int(atis.events["y"].max()) + 1, 2)  # fmt: skip
    shuffled = np.load(tmp_path / "u.npy")[::-1]
    np.save(tmp_path / "r.npy", shuffled)
    assert (np.diff(read_np_spikes(tmp_path / "r.npy", time_unit=unit).events["t"]) >= 0).all()


def test_spikes_to_events_against_lava_and_as_the_inverse_of_frames():
    rec = read_atis_bin(_nmnist_files()[0])
    e = rec.events
    step = e["t"] // 1000
    dense = np.zeros((2, 34, 34, int(step.max()) + 1), dtype=np.float32)  # [C, H, W, T]
    np.add.at(dense, (e["p"], e["y"], e["x"], step), 1)
    binary = spikes_to_events(torch.from_numpy(dense), sampling_time=1000)
    x, y, c, t = lava_tensor_to_event(dense, 1.0)  # ms
    order = np.argsort(t, kind="stable")
    for ours, theirs in ((binary.events["x"], x), (binary.events["y"], y),
                         (binary.events["p"], c), (binary.events["t"], t * 1000)):  # fmt: skip
        np.testing.assert_array_equal(ours, theirs[order])
    assert binary.sensor_size == (34, 34, 2)
    counted = spikes_to_events(dense, sampling_time=1000, counts=True)
    assert len(counted) == len(e) and (np.diff(counted.events["t"]) >= 0).all()
    key = np.lexsort((e["p"], e["x"], e["y"], step))
    ckey = np.lexsort((counted.events["p"], counted.events["x"], counted.events["y"],
                       counted.events["t"]))  # fmt: skip
    for name in "xyp":
        np.testing.assert_array_equal(counted.events[name][ckey], e[name][key])
    np.testing.assert_array_equal(counted.events["t"][ckey], step[key] * 1000)
    frames = to_frames(rec, 10)  # spikeflow's [T, C, H, W] counts
    again = spikes_to_events(frames, sampling_time=7, time_last=False, counts=True)
    rebuilt = np.zeros_like(frames)
    np.add.at(rebuilt, (again.events["t"] // 7, again.events["p"], again.events["y"],
                        again.events["x"]), 1)  # fmt: skip
    np.testing.assert_array_equal(rebuilt, frames)
    one_d = spikes_to_events(np.array([[[0, 1, 0], [2, 0, 1]]]), sampling_time=5, counts=True)
    assert one_d.sensor_size == (2, 1, 1)
    assert one_d.events["t"].tolist() == [0, 0, 5, 10]
    assert one_d.events["x"].tolist() == [1, 1, 0, 1]


def test_out_of_range_values_name_the_field_and_index(tmp_path):
    base = make_events(np.arange(6), np.arange(6), None, np.zeros(6, int))
    cases = [("x", 256, encode_atis_bin), ("y", 240, encode_atis_bin), ("p", 2, encode_atis_bin),
             ("t", 2**23, encode_atis_bin), ("y", 1, encode_bs1), ("p", -1, encode_bs1),
             ("t", -5, encode_bs1)]  # fmt: skip
    for name, value, encode in cases:
        bad = base.astype([(n, "<i8") for n in base.dtype.names])
        bad[name][[3, 5]] = value
        with pytest.raises(ConfigurationError, match=rf"event 3 has {name} = {value}\b"):
            encode(bad)
    with pytest.raises(ConfigurationError, match="event 3 has x = 65536"):
        wide = [("t", "<i8"), ("x", "<i8"), ("y", "<u2"), ("p", "i1")]
        encode_bs1(np.array([(0, x, 0, 0) for x in (0, 1, 2, 65536)], wide))
    too_late = base.astype([(n, "<i8") for n in base.dtype.names])
    too_late["t"][2] = 2**23
    with pytest.raises(ConfigurationError, match="event 2 has t"):
        write_atis_bin(tmp_path / "x.bin", too_late)
    assert not list(tmp_path.iterdir())  # nothing written
    with pytest.raises(ConfigurationError, match="structured array"):
        encode_atis_bin(np.zeros((3, 4)))
    with pytest.raises(ShapeError, match="got shape"):
        spikes_to_events(np.zeros((2, 3)))
    with pytest.raises(ConfigurationError, match=r"entry \(1, 0, 2\) is 0.5"):
        spikes_to_events(np.array([[[0, 0, 0]], [[0, 0, 0.5]]]), counts=True, time_last=False)
    with pytest.raises(ConfigurationError, match="sampling_time"):
        spikes_to_events(np.zeros((1, 2, 3)), sampling_time=0.5)
    last = spikes_to_events(np.ones((1, 1, 3)), sampling_time=2**62 - 1).events["t"]
    assert last.tolist() == [0, 2**62 - 1, 2**63 - 2]  # the last step that fits int64
    with pytest.raises(ConfigurationError, match="3 steps of 4611686018427387904 µs end past"):
        spikes_to_events(np.ones((1, 1, 3)), sampling_time=2**62)  # (wrapped negative)
    np.save(tmp_path / "bad.npy", np.array([[1, 2, 0, 3.0], [1.5, 2, 0, 4.0]]))
    with pytest.raises(DataFormatError, match="row 1"):
        read_np_spikes(tmp_path / "bad.npy")
    np.save(tmp_path / "bad.npy", np.zeros((3, 5)))
    with pytest.raises(DataFormatError, match=r"\[N, 3\] or \[N, 4\]"):
        read_np_spikes(tmp_path / "bad.npy")


def test_writes_are_atomic(tmp_path, monkeypatch):
    rec = EventRecording(make_events(np.arange(4), np.arange(4), np.arange(4), np.ones(4, int)),
                         (4, 4, 2))  # fmt: skip
    target = tmp_path / "r.bin"
    target.write_bytes(b"old")

    def refuse(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", refuse)
    for write in (write_atis_bin, write_np_spikes):
        with pytest.raises(OSError, match="disk full"):
            write(target, rec)
        assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["r.bin"]
    monkeypatch.undo()
    write_atis_bin(target, rec)
    assert target.read_bytes() == encode_atis_bin(rec)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_bs1(tmp_path / "missing" / "a.bs1", make_events([0], [1], None, [1]))


def test_writers_refuse_what_their_own_readers_refuse_or_read_otherwise(tmp_path):
    """Every file a writer makes reads back equal: a time going backwards and an empty
    recording (which read_atis_bin / read_bs1 refuse), and values read_np_spikes refuses
    or float64 cannot carry, are refused before any file is made."""
    t = np.array([0, 7, 7, 3, 9])  # event 3 goes back in time
    unsorted = make_events(t, np.arange(5), None, np.zeros(5, int))
    for encode, write in ((encode_atis_bin, write_atis_bin), (encode_bs1, write_bs1)):
        with pytest.raises(ConfigurationError, match=r"event 3 has t = 3 µs, before event 2"):
            encode(unsorted)
        with pytest.raises(ConfigurationError, match="no events"):
            write(tmp_path / "empty", unsorted[:0])
    ordered = np.sort(unsorted)  # sorted by t, the readers' order
    for back in (read_atis_bin(write_atis_bin(tmp_path / "ok", ordered), sensor_size=None),
                 read_bs1(write_bs1(tmp_path / "ok", ordered))):  # fmt: skip
        np.testing.assert_array_equal(back.events, ordered)
    wide = [("t", "<i8"), ("x", "<i8"), ("y", "<i8"), ("p", "<i8")]
    good = np.array([(1, 2, 3, 1), (5, 4, 3, 0), (9, 1, 1, 1)], wide)
    for name, value in (("t", -4), ("x", 65536), ("y", -1), ("p", 128), ("p", -1)):
        bad = good.copy()
        bad[name][1] = value
        with pytest.raises(ConfigurationError, match=rf"write_np_spikes: event 1 has {name} ="):
            write_np_spikes(tmp_path / "bad.npy", bad)
    huge = good.copy()
    huge["t"] = [1, 2**55 + 1, 2**55 + 3]  # float64 ms cannot hold these µs
    with pytest.raises(ConfigurationError, match=r"event 1 has t = 36028797018963969 µs"):
        write_np_spikes(tmp_path / "bad.npy", huge)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok"]  # nothing else written
    huge["t"] = [1, 2**55, 2**55 + 8]  # multiples of 8 survive / 1000 and * 1000
    back = read_np_spikes(write_np_spikes(tmp_path / "big.npy", huge)).events
    np.testing.assert_array_equal(back["t"], huge["t"])


def test_times_past_the_23_bit_field_are_written_with_overflow_markers(tmp_path):
    """A real N-MNIST recording stretched to ~30 s (past 2**23 µs, 8.4 s): refused
    without markers, naming the first event and the option; with them, read back equal
    by both of spikeflow's decoders and by Tonic's read_mnist_file (each y = 240 event
    adds 2**13 µs to every later time); a file that needs none is unchanged."""
    from spikeflow._cbuild import CompilerNotFoundError
    from spikeflow.data.io import use_decoder

    real = read_atis_bin(_nmnist_files()[0])
    events = real.events.copy()
    events["t"] = events["t"] * 97 + 5  # 300 ms -> ~30 s, still sorted
    late = int(np.argmax(events["t"] > 2**23 - 1))
    with pytest.raises(ConfigurationError, match=rf"event {late} has t = .*overflow_markers"):
        encode_atis_bin(events)
    path = write_atis_bin(tmp_path / "long.bin", events, overflow_markers=True)
    raw = path.read_bytes()
    marks = np.frombuffer(raw, np.uint8).reshape(-1, 5)[:, 1] == 240
    assert marks.sum() == -(-(int(events["t"][-1]) - (2**23 - 1)) // 2**13)
    decoders = ["numpy"]
    try:
        with use_decoder("c"):
            decoders.append("c")
    except CompilerNotFoundError:  # (no C compiler: the numpy decoder only)
        pass
    for decoder in decoders:
        with use_decoder(decoder):
            np.testing.assert_array_equal(read_atis_bin(path).events, events)
    tonic_io = pytest.importorskip("tonic.io", reason="Tonic's reader is the reference")
    dtype = np.dtype([("x", "<i8"), ("y", "<i8"), ("t", "<i8"), ("p", "<i8")])
    theirs = tonic_io.read_mnist_file(str(path), dtype=dtype)
    for name in "txyp":
        np.testing.assert_array_equal(theirs[name], events[name])
    assert encode_atis_bin(real, overflow_markers=True) == _nmnist_files()[0].read_bytes()
    with pytest.raises(ConfigurationError, match="at most 67108864 markers"):
        encode_atis_bin(make_events([0, 2**40], [1, 1], [1, 1], [0, 0]), overflow_markers=True)
