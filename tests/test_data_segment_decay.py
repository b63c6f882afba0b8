"""Segment sampling and exponential-decay frames (Lava-DL's action-recognition loader).

References, transcribed from Lava-DL's code (``slayer.action_recognition``; Lava-DL and
Prophesee's metavision packages are not installable here):
``SpikingNTUDataset.__getitem__``'s frame loop over ``EventDatReader.load_delta_t``
windows with ``histo_quantized`` counts (4 bits per polarity), and
``VideoFrameDataset._get_start_indices`` / ``_get``. The frames are checked on a real
Prophesee ``.dat`` recording (N-CARS), the reference fed from the independent decode
``dat_sample.npy`` of the same file.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import require_shared_data
from spikeflow.data import (
    EVENT_DTYPE,
    DatasetNotFoundError,
    EventRecording,
    SpikingNTU,
    make_events,
)
from spikeflow.data.decay_frames import ToDecayFrames, decay_frame_count, to_decay_frames
from spikeflow.data.io import read_dat
from spikeflow.data.segment_sampling import SegmentSample, segment_indices
from spikeflow.errors import ConfigurationError, DataFormatError

DT = 10**6 / 150  # Lava-DL's frame period (float), tau = 5 dt
NCARS = ("event-files", "prophesee-dat", "NCARS_obj_004397_td.dat")


def lava_decay_frames(ev: np.ndarray, height: int, width: int) -> np.ndarray:
    """SpikingNTUDataset's loop, transcribed: windows of int(dt) us from t = 0 while
    current_time < duration, counts clipped at 15 per polarity, img += neg - pos, a
    frame appended, img *= exp(-dt/tau); the list starts with a zero frame."""
    dt, tau = DT, DT * 5
    t = ev["t"]
    t_last = int(t[-1])
    duration_s = t_last * 1e-6
    current, pos = 0, 0
    img = np.zeros((height, width))
    imgs = [img.copy()]
    while current / 10**6 < duration_s:
        expected = current + int(dt)  # load_delta_t truncates delta_t
        end = pos
        while end < len(t) and t[end] < expected:
            end += 1
        volume = np.zeros((2, height, width), dtype=np.uint8)
        for i in range(pos, end):  # histo_quantized: clamp 2**4 - 1 per polarity
            p, y, x = int(ev["p"][i]), int(ev["y"][i]), int(ev["x"][i])
            if volume[p, y, x] + 1 <= 15:
                volume[p, y, x] += 1
        pos = end
        current = expected if t_last >= expected else t_last + 1
        img += volume[0].astype(np.int32) - volume[1].astype(np.int32)
        imgs.append(img.copy())
        img *= np.exp(-(dt / tau))
    return np.stack(imgs)


def lava_indices(n: int, K: int, F: int, test_mode: bool, randint=None) -> list[int]:
    """_get_start_indices then _get's frames_per_segment loop, transcribed."""
    need = K * F
    if n < need:
        return [0] * (need - n) + list(range(n))
    if test_mode:
        d = (n - F + 1) / float(K)
        starts = np.array([int(d / 2.0 + d * x) for x in range(K)])
    else:
        m = (n - F + 1) // K
        starts = np.multiply(list(range(K)), m) + randint(m, size=K)
    out = []
    for s in starts:
        i = int(s)
        for _ in range(F):
            out.append(i)
            if i < n - 1:
                i += 1
    return out


def test_decay_frames_real_dat_match_lava_formula():
    path = require_shared_data(*NCARS)
    rec = read_dat(path)
    ref_events = np.load(path.parent / "dat_sample.npy")
    width, height, _ = rec.sensor_size
    ref = lava_decay_frames(ref_events, height, width)
    got = to_decay_frames(rec, int(DT), tau=5 * int(DT), t_start=0, dtype=np.float64)
    assert got.shape == (len(ref), 1, height, width) == (16, 1, 61, 54)
    assert decay_frame_count(rec, int(DT), t_start=0) == len(ref)
    np.testing.assert_allclose(got[:, 0], ref, rtol=1e-12, atol=1e-12)
    assert np.abs(ref).max() > 1 and not np.array_equal(ref[1:], np.round(ref[1:]))
    rep = ToDecayFrames(int(DT), tau=5 * int(DT), t_start=0)
    assert rep(rec).dtype == np.float32
    np.testing.assert_allclose(rep(rec)[:, 0], ref, rtol=1e-6, atol=1e-5)


def test_decay_frames_clip_subset_and_channels():
    # Dense bursts on a few pixels so the clip at 15 matters; t_start=None starts at t[0].
    rng = np.random.default_rng(0)
    n = 3000
    t = np.sort(rng.integers(1000, 61000, n))
    x, y, p = rng.integers(0, 3, n), rng.integers(0, 2, n), rng.integers(0, 2, n)
    rec = EventRecording(make_events(t, x, y, p), (3, 2, 2))
    full = to_decay_frames(rec, 5000, 12_000.0, dtype=np.float64)
    shifted = make_events(t - t[0], x, y, p)
    ref = _loop(shifted, 5000, math.exp(-5000 / 12_000.0), 15, (2, 3))
    np.testing.assert_allclose(full[:, 0], ref, rtol=1e-12, atol=1e-12)
    assert ref.shape[0] == (t[-1] - t[0]) // 5000 + 2
    unclipped = to_decay_frames(rec, 5000, 12_000.0, max_count=None, dtype=np.float64)
    assert not np.allclose(unclipped, full)  # the clip is active here
    np.testing.assert_allclose(
        unclipped[:, 0], _loop(shifted, 5000, math.exp(-5000 / 12_000.0), None, (2, 3)),
        rtol=1e-12, atol=1e-12,
    )  # fmt: skip
    from_zero = to_decay_frames(rec, 5000, 12_000.0, t_start=0, dtype=np.float64)
    ref_zero = _loop(rec.events, 5000, math.exp(-5000 / 12_000.0), 15, (2, 3))
    np.testing.assert_allclose(from_zero[:, 0], ref_zero, rtol=1e-12, atol=1e-12)
    assert len(from_zero) != len(full) or not np.allclose(from_zero, full)
    idx = [9, 0, 3, 3, 12, 5]
    some = to_decay_frames(rec, 5000, 12_000.0, frame_indices=idx, dtype=np.float64)
    np.testing.assert_allclose(some, full[idx], rtol=1e-12, atol=1e-12)
    two = to_decay_frames(rec, 5000, 12_000.0, signed=False, dtype=np.float64)
    assert two.shape == (len(full), 2, 2, 3)
    np.testing.assert_allclose(two[:, 0] - two[:, 1], full[:, 0], rtol=1e-12, atol=1e-12)


def _loop(ev, duration, decay, clip, hw):
    """A plain per-window loop (independent of the implementation's block sums)."""
    h, w = hw
    n_win = int(ev["t"][-1]) // duration + 1
    img, frames = np.zeros((h, w)), [np.zeros((h, w))]
    for k in range(n_win):
        sel = ev[(ev["t"] >= k * duration) & (ev["t"] < (k + 1) * duration)]
        counts = np.zeros((2, h, w))
        np.add.at(counts, (sel["p"].astype(int), sel["y"].astype(int), sel["x"].astype(int)), 1)
        if clip is not None:
            counts = np.minimum(counts, clip)
        img = img + counts[0] - counts[1]
        frames.append(img.copy())
        img = img * decay
    return np.stack(frames)


def test_decay_frames_errors():
    rec = EventRecording(make_events(np.array([5, 9]), np.array([0, 1]), None, np.array([0, 1])),
                         (2, 1, 2))  # fmt: skip
    with pytest.raises(ConfigurationError, match="t_start=10"):
        to_decay_frames(rec, 4, 8.0, t_start=10)
    with pytest.raises(ConfigurationError, match=r"frame_indices must lie in \[0, 3\)"):
        to_decay_frames(rec, 4, 8.0, frame_indices=[3])
    with pytest.raises(ConfigurationError, match="tau"):
        to_decay_frames(rec, 4, 0.0)
    with pytest.raises(ConfigurationError, match="duration"):
        ToDecayFrames(0, 1.0)
    mono = EventRecording(rec.events, (2, 1, 1))
    with pytest.raises(ConfigurationError, match="2 polarities"):
        to_decay_frames(mono, 4, 8.0)


@pytest.mark.parametrize(
    ("n", "K", "F"), [(16, 4, 1), (16, 5, 1), (157, 30, 1), (100, 8, 3), (31, 10, 3), (9, 4, 2)]
)
def test_segment_indices_match_lava_test_mode(n, K, F):
    assert segment_indices(n, K, F, test_mode=True).tolist() == lava_indices(n, K, F, True)


@pytest.mark.parametrize("n", [1, 7, 29])
def test_segment_indices_short_recording_repeat_first(n):
    assert segment_indices(n, 30, test_mode=True).tolist() == lava_indices(n, 30, 1, True)
    assert segment_indices(n, 30).tolist() == lava_indices(n, 30, 1, False)


@pytest.mark.parametrize(("n", "K", "F"), [(157, 30, 1), (100, 8, 3), (16, 5, 2)])
def test_segment_indices_seeded_train_mode_match_lava(n, K, F):
    # Lava-DL draws np.random.randint(m, size=K) from numpy's global stream; here the
    # same draw comes from a torch generator seeded alike for both.
    for seed in range(20):
        g_ref = torch.Generator().manual_seed(seed)

        def randint(m, size, g=g_ref):
            return torch.randint(0, m, (size,), generator=g).numpy()

        got = segment_indices(n, K, F, generator=torch.Generator().manual_seed(seed))
        assert got.tolist() == lava_indices(n, K, F, False, randint)
    g_ref = torch.Generator().manual_seed(0)
    # Offsets cover every position of a segment and stay inside it.
    m = (n - F + 1) // K
    starts = np.stack([segment_indices(n, K, F, generator=g_ref)[::F] for _ in range(400)])
    offsets = starts - np.arange(K) * m
    assert offsets.min() == 0 and offsets.max() == m - 1


def test_segment_sample_transform():
    frames = torch.arange(40.0).view(20, 2)
    test = SegmentSample(4, test_mode=True)
    assert not test.random
    np.testing.assert_array_equal(test(frames)[:, 0].numpy() / 2, [2, 7, 12, 17])
    np.testing.assert_array_equal(test(frames.numpy()), test(frames).numpy())
    a, b = SegmentSample(4, 2, generator=3), SegmentSample(4, 2, generator=3)
    assert a.random
    got = a(frames)
    assert got.shape == (8, 2) and torch.equal(got, b(frames))
    pairs = got[:, 0].view(4, 2) / 2
    assert torch.all(pairs[:, 1] == pairs[:, 0] + 1)
    with pytest.raises(ConfigurationError, match="num_segments"):
        SegmentSample(0)
    with pytest.raises(ConfigurationError, match="test_mode"):
        segment_indices(10, 2, test_mode="yes")


def _ntu_layout(tmp_path, lines):
    """Lava-DL's layout built around the real recordings: '<path> <label>' lines."""
    folder = require_shared_data(*NCARS).parent
    (tmp_path / "rec").mkdir()
    for name in ("NCARS_obj_004397_td.dat", "sample_ncars.dat"):
        (tmp_path / "rec" / name).write_bytes((folder / name).read_bytes())
    annotation = tmp_path / "train.txt"
    annotation.write_text("".join(f"{a} {b}\n" for a, b in lines))
    return annotation


def test_spiking_ntu_frames_and_labels_match_lava(tmp_path):
    annotation = _ntu_layout(tmp_path, [("rec/NCARS_obj_004397_td.dat", 5),
                                        (tmp_path / "rec" / "sample_ncars.dat", 120)])  # fmt: skip
    ds = SpikingNTU(annotation, num_segments=6, test_mode=True)
    assert len(ds) == 2 and ds.num_classes == 120
    frames, label = ds[0]
    assert label == 4 and frames.dtype == torch.float32 and frames.shape == (6, 1, 61, 54)
    ref_events = np.load(require_shared_data(*NCARS).parent / "dat_sample.npy")
    ref = lava_decay_frames(ref_events, 61, 54)
    np.testing.assert_allclose(frames[:, 0].numpy(), ref[lava_indices(len(ref), 6, 1, True)],
                               rtol=1e-6, atol=1e-5)  # fmt: skip
    assert ds[1][1] == 119 and ds[1][0].shape == (6, 1, 42, 78)
    subset = SpikingNTU(annotation, num_segments=30, classify_labels=[120])
    assert [subset[i][1] for i in range(2)] == [0, 1] and subset.num_classes == 2
    assert subset[0][0].shape == (30, 1, 61, 54)  # 16 frames: the first one repeated
    # Lava-DL's windows start at t = 0, not at the first event: a copy of the recording
    # 20 ms later (its timestamps moved in the file) gets 3 more frames, leading zeros.
    raw = (tmp_path / "rec" / "NCARS_obj_004397_td.dat").read_bytes()
    body = 0
    while raw[body : body + 1] == b"%":
        body = raw.index(b"\n", body) + 1
    words = np.frombuffer(raw[body + 2 :], dtype="<u4").copy()
    words[0::2] += 20_000
    (tmp_path / "rec" / "late.dat").write_bytes(raw[: body + 2] + words.tobytes())
    annotation.write_text("rec/late.dat 1\n")
    late = SpikingNTU(annotation, num_segments=9, test_mode=True)[0][0]
    moved = ref_events.copy()
    moved["t"] += 20_000
    ref = lava_decay_frames(moved, 61, 54)
    assert len(ref) == 19
    np.testing.assert_allclose(late[:, 0].numpy(), ref[lava_indices(19, 9, 1, True)],
                               rtol=1e-6, atol=1e-5)  # fmt: skip
    annotation.write_text("rec/NCARS_obj_004397_td.dat 5\n")
    a = SpikingNTU(annotation, num_segments=4, generator=5)[0][0]
    assert torch.equal(a, SpikingNTU(annotation, num_segments=4, generator=5)[0][0])


def test_spiking_ntu_bad_annotation(tmp_path):
    bad = _ntu_layout(tmp_path, [("rec/sample_ncars.dat", "x")])
    with pytest.raises(DataFormatError, match="line 1"):
        SpikingNTU(bad)
    bad.write_text("rec/sample_ncars.dat 121\n")
    with pytest.raises(DataFormatError, match="121"):
        SpikingNTU(bad)
    with pytest.raises(DatasetNotFoundError, match="annotation file"):
        SpikingNTU(tmp_path / "missing.txt")


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, "U3", "not-a-dtype"])
def test_decay_frames_refuse_non_float_dtype(dtype):
    # Signed frames are negative and decayed ones fractional: an integer dtype would wrap
    # -15 to 241 (uint8) or cut 0.8 to 0, a string dtype would give text.
    events = np.zeros(3, dtype=EVENT_DTYPE)
    events["t"], events["p"] = [0, 5, 12], 1
    with pytest.raises(ConfigurationError, match="dtype"):
        to_decay_frames(events, 10, 50.0, sensor_size=(2, 2, 2), dtype=dtype)
    got = to_decay_frames(events, 10, 50.0, sensor_size=(2, 2, 2), dtype=np.float16)
    assert got.dtype == np.float16 and got[1, 0, 0, 0] == -2


def test_spiking_ntu_refuses_missing_recordings_and_bad_label_lists(tmp_path):
    annotation = _ntu_layout(tmp_path, [("rec/sample_ncars.dat", 3), ("rec/gone.dat", 4)])
    with pytest.raises(DatasetNotFoundError, match=r"train\.txt: line 2: recording .*gone\.dat"):
        SpikingNTU(annotation)
    annotation.write_text("\n  \n")
    with pytest.raises(DataFormatError, match="no recordings"):
        SpikingNTU(annotation)
    annotation.write_text("rec/sample_ncars.dat 3\n")
    for bad in (["3"], [], [3, 3], [True]):
        with pytest.raises(ConfigurationError, match="classify_labels"):
            SpikingNTU(annotation, classify_labels=bad)
    assert SpikingNTU(annotation, classify_labels=[np.int64(3)]).labels == [1]


def test_decay_frames_on_an_epoch_microsecond_clock():
    # t_start=0 with Unix-epoch µs timestamps: window numbers ~1.7e13; window * (2·H·W)
    # overflowed int64 and the frame came out all zeros.
    events = np.zeros(3, dtype=EVENT_DTYPE)
    events["t"] = [1_700_000_000_000_000, 1_700_000_000_000_050, 1_700_000_000_000_130]
    events["x"], events["y"], events["p"] = [5, 6, 5], [3, 3, 3], [0, 1, 0]
    size = (1280, 720, 2)
    count = decay_frame_count(events, 100, 0, sensor_size=size)
    assert count == 17_000_000_000_003
    got = to_decay_frames(events, 100, 500.0, t_start=0, sensor_size=size,
                          frame_indices=[count - 2, count - 1], dtype=np.float64)  # fmt: skip
    decay = math.exp(-100 / 500)
    assert got[0, 0, 3, 5] == 1 and got[0, 0, 3, 6] == -1
    assert got[1, 0, 3, 5] == pytest.approx(decay + 1) and got[1, 0, 3, 6] == -decay
    assert np.count_nonzero(got) == 4
