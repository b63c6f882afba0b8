"""spikeflow.plot: the drawn data equals the input (scatter offsets, image arrays, line
data), files are written, readable and atomic, and bad input is named."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

matplotlib = pytest.importorskip("matplotlib", reason="plots need matplotlib (the 'plot' extra)")
matplotlib.use("Agg", force=True)
import matplotlib.pyplot as plt  # noqa: E402

from conftest import require_shared_data  # noqa: E402
from spikeflow import functional, layers, neurons, plot  # noqa: E402
from spikeflow.data import EventRecording, ToFrame, make_events, to_frames  # noqa: E402
from spikeflow.errors import (  # noqa: E402
    ConfigurationError,
    DTypeError,
    MissingExtraError,
    ShapeError,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def offsets(collection) -> np.ndarray:
    return np.asarray(collection.get_offsets(), dtype=np.float64).reshape(-1, 2)


# -- raster -------------------------------------------------------------------------------


def test_raster_marks_every_spike_of_the_chosen_sample():
    spikes = (torch.rand(9, 3, 2, 5) < 0.3).float()  # [T, B, C, N]
    ax = plot.raster(spikes, sample=1)
    flat = spikes[:, 1].reshape(9, -1).numpy()
    want = [(t, n) for t in range(9) for n in range(10) if flat[t, n]]  # reference loop
    assert len(ax.collections) == 1
    np.testing.assert_array_equal(offsets(ax.collections[0]), np.array(want, dtype=float))
    assert ax.get_xlim() == (-0.5, 8.5) and ax.get_ylim() == (-0.5, 9.5)


def test_raster_neuron_selection_keeps_the_neuron_indices():
    spikes = np.zeros((4, 12), dtype=np.uint8)
    spikes[0, 3] = spikes[2, 7] = spikes[3, 11] = spikes[1, 5] = 1
    ax = plot.raster(spikes, neurons=[7, 3, 11])
    got = sorted(map(tuple, offsets(ax.collections[0]).tolist()))
    assert got == [(0.0, 3.0), (2.0, 7.0), (3.0, 11.0)]  # neuron 5 not chosen
    assert ax.get_ylim() == (2.5, 11.5)
    ax = plot.raster(spikes, neurons=slice(5, 8))
    assert sorted(map(tuple, offsets(ax.collections[0]).tolist())) == [(1.0, 5.0), (2.0, 7.0)]


def test_raster_takes_graded_spikes_one_neuron_and_any_tensor():
    s = torch.tensor([0.0, 2.0, 0.0, -1.0], requires_grad=True)  # graded, 1-D: one neuron
    ax = plot.raster(s * 1)
    np.testing.assert_array_equal(offsets(ax.collections[0]), [[1, 0], [3, 0]])
    half = torch.eye(3, dtype=torch.bfloat16)
    np.testing.assert_array_equal(
        offsets(plot.raster(half).collections[0]), [[0, 0], [1, 1], [2, 2]]
    )


def test_raster_draws_on_the_given_axes_with_the_given_style():
    _, (a, b) = plt.subplots(1, 2)
    out = plot.raster(np.eye(4), ax=b, c="r", marker="o", title="layer")
    assert out is b and not a.collections and b.get_title() == "layer"
    assert np.allclose(b.collections[0].get_facecolor()[0], matplotlib.colors.to_rgba("r"))


def test_spike_counts_bars_are_the_counts_of_the_chosen_sample():
    spikes = (torch.rand(9, 3, 10) < 0.4).float()
    ax = plot.spike_counts(spikes, sample=2, labels=list("abcdefghij"), highlight=4)
    want = spikes[:, 2].sum(0).numpy()  # reference: counts over all steps
    np.testing.assert_array_equal([bar.get_width() for bar in ax.patches], want)
    assert [tick.get_text() for tick in ax.get_yticklabels()] == list("abcdefghij")
    colours = [bar.get_facecolor() for bar in ax.patches]
    assert colours[4] != colours[0] and len({c for i, c in enumerate(colours) if i != 4}) == 1
    ax = plot.spike_counts(spikes, sample=2, neurons=[7, 1], step=3)
    np.testing.assert_array_equal(
        [bar.get_width() for bar in ax.patches], spikes[:4, 2][:, [7, 1]].sum(0).numpy()
    )
    with pytest.raises(ConfigurationError, match="labels has 2 names for the 10 neurons"):
        plot.spike_counts(spikes, labels=["a", "b"])
    with pytest.raises(ConfigurationError, match=r"step=9 is outside the T = 9 steps"):
        plot.spike_counts(spikes, step=9)
    with pytest.raises(ConfigurationError, match="highlight=3 is not one of the neurons drawn"):
        plot.spike_counts(spikes, neurons=[0, 1], highlight=3)


@pytest.mark.parametrize(
    ("spikes", "kwargs", "error", "match"),
    [
        (torch.tensor(1.0), {}, ShapeError, r"spikes must be \[T\].*0-dim"),
        (torch.zeros(0, 4), {}, ShapeError, r"spikes has no time step \(shape \(0, 4\)\)"),
        (torch.zeros(3, 2, 4), {"sample": 2}, ConfigurationError, r"sample=2 is outside.*B = 2"),
        (
            torch.zeros(3, 4),
            {"neurons": [1, 4]},
            ConfigurationError,
            r"neurons \[4\] are outside \[0, 4\)",
        ),
        (torch.zeros(3, 4), {"neurons": [True]}, ConfigurationError, r"neurons must be an int"),
        (torch.zeros(3, 4), {"neurons": []}, ConfigurationError, r"selects no neuron of spikes"),
        ([[0, 1]], {}, DTypeError, r"spikes must be a torch.Tensor or a numpy array, got list"),
        (np.array([["a"]]), {}, DTypeError, r"spikes must hold real numbers.*<U1"),
        (torch.zeros(2, 2, dtype=torch.complex64), {}, DTypeError, r"complex64"),
        (torch.tensor([[0.0, float("nan")]]), {}, ConfigurationError, r"spikes\[0, 1\] = nan"),
    ],
)
def test_raster_bad_input_is_named(spikes, kwargs, error, match):
    with pytest.raises(error, match=match):
        plot.raster(spikes, **kwargs)


# -- membrane -----------------------------------------------------------------------------


def if_reference(x: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """IF by hand (hard reset to 0): spikes and the membrane after reset."""
    v = torch.zeros_like(x[0])
    spikes, vs = [], []
    for xt in x:
        h = v + xt
        s = (h >= threshold).to(x.dtype)
        v = h * (1 - s)
        spikes.append(s)
        vs.append(v)
    return torch.stack(spikes), torch.stack(vs)


def test_membrane_traces_threshold_and_spike_marks():
    x = torch.rand(12, 2, 5) * 0.8
    s, v = if_reference(x, 0.9)
    ax = plot.membrane(v, s, 0.9, sample=1, neurons=[4, 0], v_reset=0.0)
    lines = ax.get_lines()
    assert len(lines) == 2 + 1 + 1  # two traces, one threshold, one reset
    np.testing.assert_allclose(lines[0].get_ydata(), v[:, 1, 4].numpy())
    np.testing.assert_allclose(lines[1].get_ydata(), v[:, 1, 0].numpy())
    assert lines[0].get_label() == "neuron 4"
    assert list(lines[2].get_ydata()) == [0.9, 0.9] and list(lines[3].get_ydata()) == [0.0, 0.0]
    marks = offsets(ax.collections[0])
    want = [(t, 0.9) for t in range(12) for k in (4, 0) if s[t, 1, k]]
    assert sorted(map(tuple, marks.tolist())) == sorted(want) and len(want) > 0
    # each mark has its trace's colour
    first_colour = matplotlib.colors.to_rgba(lines[0].get_color())
    t4 = [t for t in range(12) if s[t, 1, 4]]
    for (t, _), colour in zip(marks, ax.collections[0].get_facecolors()):
        if t in t4 and not s[int(t), 1, 0]:
            assert np.allclose(colour, first_colour)


def test_membrane_per_channel_threshold_and_marks_on_the_trace():
    v = torch.randn(6, 1, 3, 2, 2)  # [T, B, C, H, W]: neuron k = (c, h, w)
    threshold = torch.tensor([0.5, 1.0, 2.0]).view(3, 1, 1)
    ax = plot.membrane(v, threshold=threshold, neurons=[0, 4, 5, 11])  # channels 0, 1, 1, 2
    assert len(ax.get_lines()) == 4 + 3
    assert [ln.get_ydata()[0] for ln in ax.get_lines()[4:]] == [0.5, 1.0, 2.0]
    spikes = torch.zeros_like(v)
    spikes[2, 0, 1, 0, 1] = 1  # neuron 5
    ax = plot.membrane(v, spikes, neurons=[5])  # no threshold: the mark sits on the trace
    np.testing.assert_allclose(offsets(ax.collections[0]), [[2, float(v[2, 0, 1, 0, 1])]])


def test_membrane_bad_input_is_named():
    v = torch.zeros(5, 2, 20)
    with pytest.raises(ConfigurationError, match=r"v has 20 neurons per sample; choose"):
        plot.membrane(v)
    with pytest.raises(ShapeError, match=r"spikes has shape \(5, 2, 19\) but v has shape"):
        plot.membrane(v, torch.zeros(5, 2, 19), neurons=[0])
    with pytest.raises(ShapeError, match=r"threshold of shape \(3,\) does not broadcast.*\(20,\)"):
        plot.membrane(v, threshold=torch.ones(3), neurons=[0])
    with pytest.raises(ConfigurationError, match="threshold must be finite"):
        plot.membrane(v, threshold=float("inf"), neurons=[0])


# -- heatmap and feature maps -------------------------------------------------------------


def test_heatmap_image_is_the_values_with_a_colour_bar():
    x = torch.randn(7, 3, 10)
    ax = plot.heatmap(x, sample=2, label="v")
    image = ax.get_images()[0]
    np.testing.assert_array_equal(image.get_array(), x[:, 2].numpy().T)
    assert len(ax.figure.axes) == 2 and ax.figure.axes[1].get_ylabel() == "v"
    assert image.get_extent() == [-0.5, 6.5, -0.5, 9.5] and image.origin == "lower"
    ax = plot.heatmap(x, neurons=slice(4, 8), colorbar=False)
    np.testing.assert_array_equal(ax.get_images()[0].get_array(), x[:, 0, 4:8].numpy().T)
    assert ax.get_images()[0].get_extent() == [-0.5, 6.5, 3.5, 7.5] and len(ax.figure.axes) == 1
    ax = plot.heatmap(x, neurons=[9, 2])  # not a range: rows labelled with the indices
    np.testing.assert_array_equal(ax.get_images()[0].get_array(), x[:, 0, [9, 2]].numpy().T)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["9", "2"]


def test_feature_maps_show_the_time_mean_or_one_step():
    spikes = (torch.rand(8, 2, 5, 6, 7) < 0.4).float()  # [T, B, C, H, W]
    fig = plot.feature_maps(spikes, sample=1)
    rates = spikes[:, 1].mean(0).numpy()
    images = [ax for ax in fig.axes if ax.get_images()]
    assert len(images) == 5 and images[3].get_title() == "channel 3"
    for c, ax in enumerate(images):
        np.testing.assert_allclose(ax.get_images()[0].get_array(), rates[c])
        assert ax.get_images()[0].get_clim() == (float(rates.min()), float(rates.max()))
    fig = plot.feature_maps(spikes[:, 0], step=3, channels=[4, 1], ncols=1)
    images = [ax for ax in fig.axes if ax.get_images()]
    assert [ax.get_title() for ax in images] == ["channel 4", "channel 1"]
    np.testing.assert_array_equal(images[0].get_images()[0].get_array(), spikes[3, 0, 4].numpy())
    assert fig._suptitle.get_text() == "feature maps (step 3)"
    fig = plot.feature_maps(rates)
    assert len([ax for ax in fig.axes if ax.get_images()]) == 5


@pytest.mark.parametrize(
    ("x", "kwargs", "error", "match"),
    [
        (torch.zeros(4, 4), {}, ShapeError, r"x must be \[C, H, W\].*got shape \(4, 4\)"),
        (torch.zeros(2, 3, 4), {"step": 0}, ConfigurationError, r"step=0 needs a time axis"),
        (
            torch.zeros(2, 3, 4, 4),
            {"step": 2},
            ConfigurationError,
            r"step=2 is outside the 2 steps",
        ),
        (torch.zeros(2, 1, 3, 4, 4), {"sample": 1}, ConfigurationError, r"sample=1 is outside"),
        (torch.zeros(3, 4, 4), {"channels": [3]}, ConfigurationError, r"neurons \[3\] are outside"),
    ],
)
def test_feature_maps_bad_shapes(x, kwargs, error, match):
    with pytest.raises(error, match=match):
        plot.feature_maps(x, **kwargs)


# -- events -------------------------------------------------------------------------------


def random_recording(n: int = 500, size=(9, 7, 2), seed: int = 0) -> EventRecording:
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, 100_000, n))
    events = make_events(t, rng.integers(0, size[0], n), rng.integers(0, size[1], n),
                         rng.integers(0, size[2], n))  # fmt: skip
    return EventRecording(events, size)


def grid_images(fig, rows: int, bins: int) -> np.ndarray:
    """The grid's image arrays as [rows, bins, H, W]."""
    axes = [ax for ax in fig.axes if ax.get_images()]
    assert len(axes) == rows * bins
    return np.stack([ax.get_images()[0].get_array() for ax in axes]).reshape(
        rows, bins, *axes[0].get_images()[0].get_array().shape
    )


def counts_by_hand(rec: EventRecording, bins: int) -> np.ndarray:
    """[P, bins, H, W] event counts by the "time" rule, one event at a time."""
    width, height, polarities = rec.sensor_size
    t = rec.events["t"].astype(np.int64)
    span = (int(t[-1]) - int(t[0])) // bins
    out = np.zeros((polarities, bins, height, width), dtype=np.int64)
    for e in rec.events:
        j = min((int(e["t"]) - int(t[0])) // span, bins - 1)
        out[int(e["p"] != 0), j, e["y"], e["x"]] += 1
    return out


def test_event_grid_counts_every_event_in_its_bin():
    rec = random_recording()
    fig = plot.event_grid(rec, bins=4)
    images = grid_images(fig, 2, 4)
    np.testing.assert_array_equal(images, counts_by_hand(rec, 4))
    assert images.sum() == len(rec)
    titles = [ax.get_title() for ax in fig.axes[:4]]
    span = (int(rec.events["t"][-1]) - int(rec.events["t"][0])) // 4
    assert titles[1] == f"{span / 1000:.1f}-{2 * span / 1000:.1f} ms"
    assert [ax.get_ylabel() for ax in fig.axes[0:8:4]] == ["OFF (p=0)", "ON (p=1)"]


def test_event_grid_difference_number_bins_and_frames():
    rec = random_recording(seed=1)
    fig = plot.event_grid(rec, bins=3, mode="difference")
    diff = grid_images(fig, 1, 3)[0]
    hand = counts_by_hand(rec, 3)
    np.testing.assert_array_equal(diff, hand[1] - hand[0])
    assert fig.axes[0].get_images()[0].get_clim() == (-np.abs(diff).max(), np.abs(diff).max())
    fig = plot.event_grid(rec, bins=5, split_by="number")
    per_bin = grid_images(fig, 2, 5).sum(axis=(0, 2, 3))
    assert per_bin.tolist() == [100] * 5
    frames = torch.from_numpy(to_frames(rec, 6, "time"))
    fig = plot.event_grid(frames)
    np.testing.assert_array_equal(grid_images(fig, 2, 6), frames.numpy().transpose(1, 0, 2, 3))
    assert fig.axes[5].get_title() == "frame 5"


def test_event_grid_bad_input_is_named():
    rec = random_recording()
    with pytest.raises(ConfigurationError, match=r"mode must be one of \('split', 'difference'\)"):
        plot.event_grid(rec, mode="sum")
    one = EventRecording(rec.events, (9, 7, 1))
    with pytest.raises(ConfigurationError, match=r"needs 2 polarities.*have 1"):
        plot.event_grid(one, mode="difference")
    with pytest.raises(ConfigurationError, match=r"bins=4 is for event recordings.*T = 6"):
        plot.event_grid(np.zeros((6, 2, 3, 3)), bins=4)
    with pytest.raises(ShapeError, match=r"frames \[T, P, H, W\]; got an array of shape \(3, 3\)"):
        plot.event_grid(np.zeros((3, 3)))
    with pytest.raises(ConfigurationError, match="sensor_size"):
        plot.event_grid(rec.events)


def test_event_scatter_projections():
    rec = random_recording(n=60, seed=2)
    e = rec.events
    on, off = e["p"] != 0, e["p"] == 0
    ax = plot.event_scatter(rec)
    off_points, on_points = ax.collections
    np.testing.assert_array_equal(offsets(on_points), np.stack([e["x"][on], e["y"][on]], 1))
    np.testing.assert_array_equal(offsets(off_points), np.stack([e["x"][off], e["y"][off]], 1))
    assert ax.get_ylim() == (6.5, -0.5)  # y down, as in the images
    ax = plot.event_scatter(e, projection="yt", sensor_size=(9, 7, 2))
    t_ms = (e["t"] - e["t"][0]) / 1000
    np.testing.assert_allclose(offsets(ax.collections[1]), np.stack([t_ms[on], e["y"][on]], 1))
    assert ax.get_xlabel() == "time (ms)"
    with pytest.raises(ConfigurationError, match=r"projection must be one of \('xy', 'xt', 'yt'\)"):
        plot.event_scatter(rec, projection="tx")


# -- animate ------------------------------------------------------------------------------


def gif_frames(path: Path) -> tuple[int, list[int]]:
    from PIL import Image

    with Image.open(path) as im:
        durations = []
        for k in range(im.n_frames):
            im.seek(k)
            durations.append(im.info["duration"])
        return im.n_frames, durations


def test_animate_gif_has_one_frame_per_step(tmp_path):
    frames = torch.rand(7, 12, 16)
    path = plot.animate(frames, tmp_path / "v.gif", fps=20, scale=4)
    assert path == tmp_path / "v.gif"
    assert gif_frames(path) == (7, [50] * 7)
    from PIL import Image

    with Image.open(path) as im:
        assert im.size == (64, 48)
    assert os.listdir(tmp_path) == ["v.gif"]


def test_animate_two_channels_are_red_off_and_blue_on(tmp_path):
    frames = np.zeros((3, 2, 4, 4))
    frames[:, 0, 0, 0] = 5  # OFF events top left
    frames[:, 1, 3, 3] = 5  # ON events bottom right
    frames[np.arange(3), 1, 1, np.arange(3)] = 5  # a moving ON pixel: frames differ
    path = plot.animate(frames, tmp_path / "e.gif", scale=8)
    from PIL import Image

    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB")).astype(int)
    assert rgb.shape == (32, 32, 3)
    assert np.abs(rgb[4, 4] - [255, 0, 0]).max() <= 8  # OFF: red
    assert np.abs(rgb[28, 28] - [0, 0, 255]).max() <= 8  # ON: blue
    assert np.abs(rgb[20, 20]).max() <= 8  # no event: black


def test_animate_a_recording_through_a_representation(tmp_path):
    rec = random_recording(n=2000)
    path = plot.animate(rec, tmp_path / "r.gif", representation=ToFrame(5, "time"))
    assert gif_frames(path)[0] == 5
    with pytest.raises(ConfigurationError, match="needs representation="):
        plot.animate(rec, tmp_path / "x.gif")


def test_a_failing_writer_leaves_nothing(tmp_path, monkeypatch):
    from matplotlib.animation import PillowWriter

    calls = []
    grab = PillowWriter.grab_frame

    def broken_grab(self, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full")
        return grab(self, **kwargs)

    target = tmp_path / "a.gif"
    with monkeypatch.context() as m:
        m.setattr(PillowWriter, "grab_frame", broken_grab)
        with pytest.raises(OSError, match="disk full"):
            plot.animate(torch.rand(5, 4, 4), target)
    assert os.listdir(tmp_path) == []

    def broken_finish(self):  # half a file written, then the disk is full
        Path(self.outfile).write_bytes(b"GIF89a-partial")
        raise OSError("disk full at the end")

    target.write_bytes(b"old")  # an earlier file stays as it was
    monkeypatch.setattr(PillowWriter, "finish", broken_finish)
    with pytest.raises(OSError, match="disk full at the end"):
        plot.animate(torch.rand(5, 4, 4), target)
    assert os.listdir(tmp_path) == ["a.gif"] and target.read_bytes() == b"old"


def test_animate_without_ffmpeg_names_the_writer(tmp_path, monkeypatch):
    from matplotlib import animation

    from spikeflow.plot import animation as spikeflow_animation

    monkeypatch.setattr(animation.writers, "is_available", lambda name: name != "ffmpeg")
    monkeypatch.setattr(spikeflow_animation, "_bundled_ffmpeg", lambda: None)
    with pytest.raises(
        plot.WriterNotFoundError, match=r"needs matplotlib's 'ffmpeg' writer.*'video'.*\.gif"
    ):
        plot.animate(torch.rand(3, 4, 4), tmp_path / "v.mp4")
    assert os.listdir(tmp_path) == []


def test_animate_mp4_with_the_video_extra_alone(tmp_path, monkeypatch):
    """No ffmpeg program for matplotlib: the extra 'video' (imageio-ffmpeg) writes it."""
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg", reason="the extra 'video'")
    from matplotlib import animation

    monkeypatch.setattr(animation.writers, "is_available", lambda name: name != "ffmpeg")
    monkeypatch.setitem(matplotlib.rcParams, "animation.ffmpeg_path", "no-such-ffmpeg")
    path = plot.animate(torch.rand(4, 1, 8, 8), tmp_path / "v.mp4", fps=4)
    assert path.read_bytes()[4:8] == b"ftyp"
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    probe = subprocess.run([ffmpeg, "-i", str(path), "-map", "0:v:0", "-f", "null", "-"],
                           capture_output=True, text=True, check=True)  # fmt: skip
    assert re.findall(r"frame=\s*(\d+)", probe.stderr)[-1] == "4"
    assert matplotlib.rcParams["animation.ffmpeg_path"] == "no-such-ffmpeg"  # restored


def _ffmpeg() -> str:
    """An ffmpeg binary: on PATH, else imageio-ffmpeg's, else skip."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg
    except ImportError:
        pytest.skip("no ffmpeg program (nor imageio-ffmpeg) to write an MP4 with")
    return imageio_ffmpeg.get_ffmpeg_exe()


def test_animate_mp4_with_ffmpeg(tmp_path, monkeypatch):
    ffmpeg = _ffmpeg()
    monkeypatch.setitem(matplotlib.rcParams, "animation.ffmpeg_path", ffmpeg)
    path = plot.animate(torch.rand(6, 2, 10, 10), tmp_path / "v.mp4", fps=5)
    assert path.read_bytes()[4:8] == b"ftyp"
    probe = subprocess.run([ffmpeg, "-i", str(path), "-map", "0:v:0", "-f", "null", "-"],
                           capture_output=True, text=True, check=True)  # fmt: skip
    assert re.findall(r"frame=\s*(\d+)", probe.stderr)[-1] == "6"
    assert os.listdir(tmp_path) == ["v.mp4"]


@pytest.mark.parametrize(
    ("frames", "path", "kwargs", "error", "match"),
    [
        (
            torch.zeros(3, 4, 4),
            "a.png",
            {},
            ConfigurationError,
            r"writes \.gif, \.mp4 files, not '\.png'",
        ),
        (torch.zeros(3, 4, 4), "a.gif", {"fps": 0}, ConfigurationError, r"fps must be.*\(0, inf\)"),
        (torch.zeros(3, 4, 4, 2), "a.gif", {}, ShapeError, r"P in 1..3; got shape \(3, 4, 4, 2\)"),
        (torch.zeros(0, 4, 4), "a.gif", {}, ShapeError, r"frames has no time step"),
        (
            torch.zeros(3, 4, 4),
            "a.gif",
            {"vmin": 2, "vmax": 1},
            ConfigurationError,
            r"vmax=1 must be above vmin=2",
        ),
        (
            torch.zeros(3, 4, 4),
            "a.gif",
            {"representation": ToFrame(3)},
            ConfigurationError,
            r"applies to an EventRecording",
        ),
    ],
)
def test_animate_bad_input_is_named(tmp_path, frames, path, kwargs, error, match):
    with pytest.raises(error, match=match):
        plot.animate(frames, tmp_path / path, **kwargs)
    assert os.listdir(tmp_path) == []


# -- record -------------------------------------------------------------------------------


def test_record_equals_a_hand_loop_and_restores_the_network():
    lin = layers.Linear(5, 6)
    net = nn.Sequential(lin, neurons.IFNode(v_threshold=0.7), layers.Linear(6, 3), neurons.IFNode())
    x = torch.rand(8, 4, 5) * 2
    recorded = plot.record(net, x, layers=["1"])
    assert list(recorded) == ["1"]
    with torch.no_grad():
        s, v = if_reference(lin(x), 0.7)
    torch.testing.assert_close(recorded["1"].spikes, s)
    torch.testing.assert_close(recorded["1"].v, v)
    assert recorded["1"].threshold == 0.7 and recorded["1"].spikes.device.type == "cpu"
    assert not any(m._forward_hooks for m in net.modules())
    assert not net[1].store_v_seq and net[1].v_seq is None
    both = plot.record(net, x, membrane=False)
    assert list(both) == ["1", "3"] and both["3"].v is None
    with pytest.raises(
        ConfigurationError, match=r"no spiking layer named \['2'\]; the model has \['1', '3'\]"
    ):
        plot.record(net, x, layers="2")


def test_record_stacks_single_step_calls():
    class Loop(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 4)
            self.node = neurons.IFNode(step_mode="s")

        def forward(self, x):
            with functional.streaming(self.node):
                return torch.stack([self.node(self.lin(xt)) for xt in x])

    net = Loop()
    x = torch.rand(5, 2, 3) * 2
    recorded = plot.record(net, x)["node"]
    with torch.no_grad():
        s, v = if_reference(net.lin(x), 1.0)
    assert recorded.spikes.shape == (5, 2, 4)
    torch.testing.assert_close(recorded.spikes, s)
    torch.testing.assert_close(recorded.v, v)


def test_recorded_layers_feed_the_plots():
    net = nn.Sequential(layers.Conv2d(2, 3, 3, padding=1), neurons.LIFNode(tau=2.0))
    x = torch.rand(6, 2, 2, 5, 5) * 3
    r = plot.record(net, x)["1"]
    ax = plot.raster(r.spikes, sample=1)
    assert len(offsets(ax.collections[0])) == int(r.spikes[:, 1].sum())
    ax = plot.membrane(r.v, r.spikes, r.threshold, sample=1, neurons=[0, 30])
    assert len(ax.get_lines()) == 3
    fig = plot.feature_maps(r.spikes, sample=1)
    np.testing.assert_allclose(fig.axes[0].get_images()[0].get_array(), r.spikes[:, 1, 0].mean(0))


def test_training_raster_is_drawn_by_plot_raster(tmp_path, monkeypatch):
    from spikeflow.training import plots as training_plots

    drawn = []

    def spy(spikes, **kwargs):
        ax = plot.raster(spikes, **kwargs)
        drawn.append(offsets(ax.collections[0]))
        return ax

    monkeypatch.setattr(training_plots, "raster", spy)
    spikes = {"a": torch.eye(3), "b": torch.zeros(3, 2)}
    path = training_plots.plot_raster(spikes, tmp_path / "r.png", title="t")
    assert path.read_bytes()[:4] == b"\x89PNG" and os.listdir(tmp_path) == ["r.png"]
    np.testing.assert_array_equal(drawn[0], [[0, 0], [1, 1], [2, 2]])
    assert len(drawn) == 2 and len(drawn[1]) == 0


def test_training_raster_says_when_it_shows_only_the_first_neurons(tmp_path, monkeypatch):
    from spikeflow.training import plots as training_plots

    axes = []

    def spy(spikes, **kwargs):
        axes.append(plot.raster(spikes, **kwargs))
        return axes[-1]

    monkeypatch.setattr(training_plots, "raster", spy)
    spikes = {"conv": torch.eye(3), "fc": torch.zeros(3, 2)}
    counts = {"conv": 147968, "fc": 2}
    training_plots.plot_raster(spikes, tmp_path / "r.png", neuron_counts=counts)
    assert axes[0].get_ylabel() == "conv\nfirst 3 of\n147,968 neurons"
    assert axes[1].get_ylabel() == "fc\nneuron"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_tensors_on_the_gpu():
    net = nn.Sequential(layers.Linear(4, 5), neurons.IFNode()).cuda()
    x = torch.rand(6, 2, 4, device="cuda") * 2
    r = plot.record(net, x)["1"]
    assert r.spikes.device.type == "cpu"
    spikes = net(x)
    ax = plot.raster(spikes, sample=1)
    assert len(offsets(ax.collections[0])) == int(spikes[:, 1].sum())
    ax = plot.heatmap(spikes.float())
    np.testing.assert_array_equal(ax.get_images()[0].get_array(), spikes[:, 0].T.cpu().numpy())


# -- without matplotlib -------------------------------------------------------------------


def test_every_plot_names_the_extra_without_matplotlib(tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    rec = random_recording(n=20)
    calls = [
        lambda: plot.raster(torch.eye(3)),
        lambda: plot.membrane(torch.rand(3, 2)),
        lambda: plot.heatmap(torch.rand(3, 2)),
        lambda: plot.feature_maps(torch.rand(2, 3, 3)),
        lambda: plot.event_grid(rec),
        lambda: plot.event_scatter(rec),
        lambda: plot.animate(torch.rand(2, 3, 3), tmp_path / "a.gif"),
    ]
    for call in calls:
        with pytest.raises(MissingExtraError, match=r"pip install 'spikeflow\[plot\]'"):
            call()


def test_importing_spikeflow_plot_needs_no_matplotlib():
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "import spikeflow.plot, torch\n"
            "try:\n    spikeflow.plot.raster(torch.eye(2))\n"
            "except ImportError as e:\n    print(type(e).__name__, e)\n")  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "MissingExtraError" in out.stdout and "spikeflow[plot]" in out.stdout


# -- real data ----------------------------------------------------------------------------


def test_real_nmnist_recording_in_the_grid_and_a_gif(tmp_path):
    from spikeflow.data.io import read_atis_bin

    path = require_shared_data("nmnist-small", "Test", "3")
    rec = read_atis_bin(sorted(path.glob("*.bin"))[0])
    assert rec.sensor_size == (34, 34, 2) and len(rec) > 1000
    fig = plot.event_grid(rec, bins=6)
    images = grid_images(fig, 2, 6)
    np.testing.assert_array_equal(images, counts_by_hand(rec, 6))
    p = rec.events["p"]
    assert images[0].sum() == (p == 0).sum() and images[1].sum() == (p != 0).sum()
    assert images.sum() == len(rec)
    gif = plot.animate(rec, tmp_path / "nmnist.gif", fps=10, representation=ToFrame(12, "time"))
    assert gif_frames(gif) == (12, [100] * 12)


def test_docs_visualization_runs(tmp_path, monkeypatch):
    """Every python block of docs/visualization.md, in order, in one namespace, from a
    folder beside a link to ../shared (the blocks read the N-MNIST subset and write
    files into the current folder)."""
    shared = require_shared_data("nmnist-small").parents[1]
    (tmp_path / "shared").symlink_to(shared)
    (tmp_path / "repo").mkdir()
    monkeypatch.chdir(tmp_path / "repo")
    blocks = re.findall(
        r"```python\n(.*?)```", (ROOT / "docs" / "visualization.md").read_text(), re.S
    )
    assert len(blocks) >= 4
    ns: dict = {}
    for i, code in enumerate(blocks):
        exec(compile(code, f"docs/visualization.md python block {i}", "exec"), ns)
    written = ["conv_rates.png", "conv_step10.png", "grid.png", "layer.png", "nmnist.gif",
               "scatter.png", "three_d.png"]  # fmt: skip
    assert sorted(os.listdir(".")) == written
    # the values the text states
    assert ns["counts"] == [711, 399, 812, 466, 332, 424, 638, 407, 735, 468, 315, 437]
    assert sum(ns["counts"]) == len(ns["rec"]) == 6144
    assert tuple(ns["conv"].spikes.shape) == (20, 1, 8, 17, 17) and ns["fc"].threshold == 0.5
    assert gif_frames(Path("nmnist.gif"))[0] == 20
    assert sum(bar.get_height() for bar in ns["ax"].patches) == 1280  # the histogram
    assert len(ns["fig"].axes[0].collections[0].get_offsets()) == 18  # izhikevich's spikes
