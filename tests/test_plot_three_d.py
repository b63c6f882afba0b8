"""spikeflow.plot's 3-D bars, 3-D scatters, histograms and Izhikevich panel: the drawn
data equals the input (bar heights, 3-D offsets, colour arrays, line data), the
Izhikevich membrane equals Norse's own simulation, and bad input is named."""

from __future__ import annotations

import numpy as np
import pytest
import torch

matplotlib = pytest.importorskip("matplotlib", reason="plots need matplotlib (the 'plot' extra)")
matplotlib.use("Agg", force=True)
import matplotlib.pyplot as plt  # noqa: E402

from spikeflow import plot  # noqa: E402
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def points_3d(collection) -> np.ndarray:
    """The (x, y, z) of every point of a 3-D scatter, one row each."""
    return np.stack([np.asarray(a, dtype=np.float64) for a in collection._offsets3d], axis=1)


def bars(ax) -> np.ndarray:
    """(neuron, step, height) of every 3-D bar: its corners' x, centre y and top z."""
    corners = [np.asarray(p._segment3d, dtype=np.float64) for p in ax.patches]
    return np.array(
        [(c[0, 0], (c[:, 1].min() + c[:, 1].max()) / 2, c[:, 2].max()) for c in corners]
    )


# -- bars_3d ------------------------------------------------------------------------------


def test_bars_3d_heights_are_the_values_neuron_by_neuron():
    x = torch.rand(6, 2, 5)  # [T, B, N]
    ax = plot.bars_3d(x, sample=1, neurons=[0, 3, 4])
    want = [(n, t, x[t, 1, n]) for n in (0, 3, 4) for t in range(6)]  # neuron by neuron
    assert ax.name == "3d" and len(ax.patches) == 3 * 6
    np.testing.assert_allclose(bars(ax), np.array(want), rtol=1e-6, atol=1e-12)


def test_bars_3d_matches_spikingjelly_bar_heights():
    sj = pytest.importorskip("spikingjelly.visualizing")
    rates = torch.softmax(torch.rand(4, 7) * 3, dim=1)  # [epochs, N]
    _, theirs = sj.plot_2d_bar_in_3d(rates, "t", "neuron", "epoch", "rate")
    ours = plot.bars_3d(rates)
    np.testing.assert_allclose(bars(ours), bars(theirs), rtol=1e-6, atol=1e-12)


def test_bars_3d_rejects_a_2d_axes_and_bad_values():
    _, flat = plt.subplots()
    with pytest.raises(ConfigurationError, match="3-D matplotlib Axes"):
        plot.bars_3d(torch.rand(3, 2), ax=flat)
    with pytest.raises(ConfigurationError, match=r"x\[1, 0\] = nan"):
        plot.bars_3d(torch.tensor([[0.0], [float("nan")]]))
    with pytest.raises(DTypeError, match=r"x must be a torch\.Tensor"):
        plot.bars_3d([[1.0, 2.0]])


# -- scatter_3d / layers_3d ---------------------------------------------------------------


def test_scatter_3d_points_are_the_nonzero_elements_at_step_column_row():
    torch.manual_seed(0)
    x = (torch.rand(7, 3, 2, 5, 6) < 0.2).float() * torch.rand(7, 3, 2, 5, 6)
    ax = plot.scatter_3d(x, sample=2, channel=1)
    frames = x[:, 2, 1].numpy()
    want = [(t, c, r, frames[t, r, c]) for t in range(7) for r in range(5) for c in range(6)
            if frames[t, r, c]]  # fmt: skip  # reference loop, row-major
    got = points_3d(ax.collections[0])
    np.testing.assert_array_equal(got, np.array(want)[:, :3])
    np.testing.assert_allclose(ax.collections[0].get_array(), np.array(want)[:, 3], rtol=1e-6)
    assert ax.get_zlim()[0] > ax.get_zlim()[1]  # row 0 on top, as in an image


def test_scatter_3d_sums_channels_by_default():
    x = np.zeros((2, 2, 3, 3), dtype=np.int64)  # [T, P, H, W] event counts
    x[0, 0, 1, 2] = 2
    x[0, 1, 1, 2] = 3
    x[1, 1, 0, 0] = 1
    ax = plot.scatter_3d(x, colorbar=False)
    np.testing.assert_array_equal(points_3d(ax.collections[0]), [[0, 2, 1], [1, 0, 0]])
    np.testing.assert_array_equal(ax.collections[0].get_array(), [5, 1])


def test_scatter_3d_names_bad_shapes_and_channels():
    with pytest.raises(ShapeError, match=r"x must be \[T, H, W\].*got shape \(4, 5\)"):
        plot.scatter_3d(torch.ones(4, 5))
    with pytest.raises(ConfigurationError, match="channel=2 is outside the 2 channels"):
        plot.scatter_3d(torch.ones(3, 2, 4, 4), channel=2)
    with pytest.raises(ConfigurationError, match="sample=3 is outside the batch"):
        plot.scatter_3d(torch.ones(3, 2, 1, 4, 4), sample=3)


def test_layers_3d_draws_every_pixel_of_every_map():
    maps = torch.rand(3, 4, 5)
    ax = plot.layers_3d(maps)
    got = points_3d(ax.collections[0])
    want = [(m, c, r) for m in range(3) for r in range(4) for c in range(5)]  # row-major
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(ax.collections[0].get_array(), maps.reshape(-1).numpy())
    listed = plot.layers_3d([maps[0].numpy(), maps[1].numpy()], colorbar=False)
    np.testing.assert_allclose(listed.collections[0].get_array(), maps[:2].reshape(-1))


def test_layers_3d_names_mismatched_maps():
    with pytest.raises(ShapeError, match="one \\[H, W\\] shape"):
        plot.layers_3d([np.zeros((2, 2)), np.zeros((3, 2))])
    with pytest.raises(ShapeError, match=r"maps must be \[L, H, W\].*\(2, 2\)"):
        plot.layers_3d(np.zeros((2, 2)))


# -- histogram ----------------------------------------------------------------------------


def test_histogram_bar_heights_are_numpys_counts():
    v = torch.randn(20, 4, 8, dtype=torch.float64)
    ax = plot.histogram(v, bins=12)
    counts, edges = np.histogram(v.numpy().reshape(-1), bins=12)
    np.testing.assert_array_equal([p.get_height() for p in ax.patches], counts)
    np.testing.assert_allclose([p.get_x() for p in ax.patches], edges[:-1])
    assert sum(p.get_height() for p in ax.patches) == v.numel()


def test_histogram_names_bad_input():
    with pytest.raises(ShapeError, match="x has no element"):
        plot.histogram(torch.zeros(0, 3))
    with pytest.raises(ConfigurationError, match="bins"):
        plot.histogram(torch.rand(5), bins=0)
    with pytest.raises(ConfigurationError, match=r"x\[2\] = inf"):
        plot.histogram(torch.tensor([0.0, 1.0, float("inf")]))


# -- izhikevich ---------------------------------------------------------------------------


def _norse_membrane(name: str, current: float, steps: int, onset: int) -> tuple:
    """Norse's own Izhikevich loop (the reference): v after each step and the spikes."""
    izh = pytest.importorskip("norse.torch.functional.izhikevich")
    p, s = getattr(izh, name)
    vs, zs = [], []
    for t in range(steps):
        drive = torch.full((1,), current if t >= onset else 0.0)
        z, s = izh.izhikevich_feed_forward_step(drive, s, p)
        vs.append(float(s.v.detach()))
        zs.append(float(z.detach()))
    return np.array(vs), np.array(zs)


@pytest.mark.parametrize("name", ["tonic_spiking", "tonic_bursting"])
def test_izhikevich_membrane_matches_norse(name):
    fig = plot.izhikevich(name, current=10.0, duration_ms=100.0, onset_ms=10.0)
    top, bottom = fig.axes
    times, v = (np.asarray(a) for a in top.lines[0].get_data())
    np.testing.assert_allclose(times, np.arange(400) * 0.25)
    want_v, want_z = _norse_membrane(name, 10.0, 400, 40)
    assert want_z.sum() >= 2  # the behaviour fires
    np.testing.assert_allclose(v, want_v, atol=1e-2)  # Norse runs in float32
    marks = np.asarray(top.collections[0].get_offsets())
    np.testing.assert_allclose(marks[:, 0], times[want_z > 0])
    np.testing.assert_allclose(marks[:, 1], 30.0)
    drive = bottom.lines[0].get_ydata()
    np.testing.assert_array_equal(drive, np.where(times >= 10.0, 10.0, 0.0))


def test_izhikevich_names_bad_arguments():
    with pytest.raises(ConfigurationError, match=r"unknown Izhikevich behaviour 'tonic'.*known"):
        plot.izhikevich("tonic")
    with pytest.raises(ConfigurationError, match="current must be a finite number"):
        plot.izhikevich(current=float("nan"))
    with pytest.raises(ConfigurationError, match="duration_ms must be > 0"):
        plot.izhikevich(duration_ms=0.0)
