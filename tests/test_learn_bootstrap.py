"""Bootstrap training (spikeflow.learn.bootstrap) against hand-derived cases (sampler rate
statistics, a fit worked by hand, an IF neuron's closed-form rate), and against
transcriptions of Lava-DL's pure loops (``AnnSampler.fit``, ``_pwl``, ``Scheduler``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spikeflow import layers
from spikeflow.errors import ConfigurationError, ShapeError, StateError
from spikeflow.learn.bootstrap import (
    AnnSampler,
    BootstrapBlock,
    BootstrapSequential,
    LayerMode,
    Mode,
    Scheduler,
    piecewise_linear,
)
from spikeflow.neurons import IFNode

# --- Lava-DL transcriptions (lava.lib.dl.bootstrap, ann_sampler.py and routine.py) ---


def _lava_fit(z, a, old_centers, num_centers=5, sample_range=(0.1, 0.9), alpha=0.1):
    """AnnSampler.fit, transcribed (returns centers, slopes, max)."""
    max_ = max(np.mean(a[a > sample_range[1] * a.max()]), 0.8)
    activation = np.linspace(sample_range[0] * max_, sample_range[1] * max_, num_centers + 1)
    centers = []
    for i in range(num_centers):
        ind = np.argwhere((a > activation[i]) & (a <= activation[i + 1]))
        center_ind = None
        if old_centers is not None:
            center_ind = np.argwhere(
                (old_centers[:, 1] > activation[i]) * (old_centers[:, 1] <= activation[i + 1])
            ).flatten()
            if len(center_ind) == 0:
                center_ind = None
        if len(ind) == 0 and center_ind is not None:
            centers.append([old_centers[center_ind, 0].mean(), old_centers[center_ind, 1].mean()])
        elif len(ind) > 0 and center_ind is not None:
            centers.append([
                alpha * np.median(z[ind]) + (1 - alpha) * old_centers[center_ind, 0].mean(),
                alpha * np.median(a[ind]) + (1 - alpha) * old_centers[center_ind, 1].mean(),
            ])  # fmt: skip
        elif len(ind) > 0 and center_ind is None:
            centers.append([np.median(z[ind]), np.median(a[ind])])
    if len(centers) == 0:
        centers = [[0, 0], [1, 1]]
    elif len(centers) == 1:
        centers = [[0, 0], centers[0]]
    centers = np.array(centers)
    slopes = (centers[1:, 1] - centers[:-1, 1]) / (centers[1:, 0] - centers[:-1, 0])
    slopes = np.abs(np.concatenate([[slopes[0]], slopes, [slopes[-1]]]))
    centers = np.vstack((
        np.array([centers[0][0] - centers[0][1] / slopes[0], 0]),
        centers,
        np.array([centers[-1][0] + (max_ - centers[-1][1]) / slopes[-1], max_]),
    ))  # fmt: skip
    return centers, slopes, max_


def _lava_pwl(z, centers, slopes, max_, eps):
    """_pwl.forward and _pwl.backward (for a unit output gradient), transcribed."""
    a = torch.zeros_like(z)
    for i in range(len(centers) - 1):
        a = torch.where(
            (z > centers[i, 0]) & (z <= centers[i + 1, 0]),
            centers[i, 1] + slopes[i] * (z - centers[i, 0]),
            a,
        )
    a = torch.where(z > centers[-1, 0], max_ + a, a)
    grad = torch.zeros_like(z)
    for i in range(len(centers) - 1):
        grad = torch.where((z > centers[i, 0]) & (z <= centers[i + 1, 0]), slopes[i], grad)
    grad = grad * (centers[-1, 0] / centers[-1, 1]) + eps
    return a, grad


class _LavaScheduler:
    """routine.Scheduler.mode and LayerMode.__iter__, transcribed (stateful crossover)."""

    def __init__(self, num_sample_iter, sample_period, crossover_epochs):
        self.num_sample_iter, self.sample_period = num_sample_iter, sample_period
        self.crossover_epochs, self.crossover = crossover_epochs, 0

    def mode(self, epoch, iteration, train=True):
        if train:
            if self.crossover_epochs is not None:
                if epoch in self.crossover_epochs and iteration == 0:
                    self.crossover += 1
            if iteration < self.num_sample_iter and epoch % self.sample_period == 0:
                return self.crossover, Mode.SAMPLE
            if iteration == self.num_sample_iter and epoch % self.sample_period == 0:
                return self.crossover, Mode.FIT
            return self.crossover, Mode.ANN
        if epoch % self.sample_period == 0:
            return self.crossover, Mode.SNN
        return self.crossover, Mode.ANN


def _lava_layer_modes(crossover, base_mode, n):
    out, count = [], 0
    while len(out) < n:
        if base_mode == Mode.SAMPLE:
            out.append(Mode.SAMPLE)
        elif count < crossover:
            out.append(Mode.SNN)
        else:
            out.append(base_mode)
        count += 1
    return out


# --- the sampler ---


def test_append_records_time_means_per_neuron_and_sample() -> None:
    spikes = torch.tensor([[[1.0, 0.0]], [[1.0, 1.0]], [[0.0, 0.0]], [[1.0, 0.0]]])  # [4, 1, 2]
    z = torch.tensor([[[0.5, -1.0]], [[1.5, 2.0]], [[1.0, 0.0]], [[1.0, 3.0]]])
    sampler = AnnSampler()
    sampler.append(spikes, z)
    sampler.append(spikes[:2], z[:2])
    np.testing.assert_allclose(sampler.a, [0.75, 0.25, 1.0, 0.5])
    np.testing.assert_allclose(sampler.z, [1.0, 1.0, 1.0, 0.5])
    sampler.soft_clear(torch.Generator().manual_seed(0))
    assert sampler.num_points == 2
    assert {(z_, a_) for z_, a_ in zip(sampler.z, sampler.a)} <= {
        (1.0, 0.75), (1.0, 0.25), (1.0, 1.0), (0.5, 0.5)}  # fmt: skip
    sampler.clear()
    assert sampler.num_points == 0
    with pytest.raises(ConfigurationError, match="same shape"):
        sampler.append(spikes, z[:, :, :1])
    with pytest.raises(ShapeError, match="time-major"):
        sampler.append(spikes[0, 0], z[0, 0])
    with pytest.raises(StateError, match=r"Mode\.SAMPLE first"):
        sampler.fit()
    with pytest.raises(StateError, match="no activation fitted"):
        sampler(z)


def test_fit_by_hand_and_exponential_average() -> None:
    # rates 0.2, 0.4 | 0.6, 0.8 fall in the bins (0.1, 0.5] | (0.5, 0.9] of a_max = 1
    a = np.array([0.2, 0.4, 0.6, 0.8, 1.0, 1.0])
    z = np.array([0.3, 0.5, 0.9, 1.1, 1.6, 1.8])
    sampler = AnnSampler(num_centers=2)
    sampler.z, sampler.a = z, a
    sampler.fit()
    # centers (0.4, 0.3) and (1.0, 0.7): slope 0.4 / 0.6 = 2/3, extended to a = 0 and 1
    s = 2 / 3
    knots = [[0.4 - 0.3 / s, 0.0], [0.4, 0.3], [1.0, 0.7], [1.0 + 0.3 / s, 1.0]]
    np.testing.assert_allclose(sampler.centers.numpy(), knots, atol=1e-12)
    np.testing.assert_allclose(sampler.slopes.numpy(), [s, s, s], atol=1e-12)
    zs = torch.tensor([-1.0, 0.4, 0.7, 1.2, 1.45, 2.0], dtype=torch.float64, requires_grad=True)
    out = sampler(zs)
    expected = [0.0, 0.3, 0.3 + s * 0.3, 0.7 + s * 0.2, 1.0, 1.0]
    np.testing.assert_allclose(out.detach().numpy(), expected, atol=1e-12)
    out.sum().backward()  # slope x z_top / a_top (= 1.45) + eps; eps outside
    eps = sampler.eps
    grads = [eps, s * 1.45 + eps, s * 1.45 + eps, s * 1.45 + eps, s * 1.45 + eps, eps]
    np.testing.assert_allclose(zs.grad.numpy(), grads, atol=1e-12)
    assert sampler.scale == pytest.approx(1.45)
    # second fit, new points only at rate 0.3 (input 0.6): a_max = max(0.3, 0.8) = 0.8,
    # bins (0.08, 0.4] | (0.4, 0.72]; the first center moves a tenth of the way, the
    # second (no new points) stays
    sampler.clear()
    sampler.z, sampler.a = np.array([0.6]), np.array([0.3])
    sampler.fit()
    c0 = [0.1 * 0.6 + 0.9 * 0.4, 0.3]
    s = 0.4 / (1.0 - c0[0])
    knots = [[c0[0] - 0.3 / s, 0.0], c0, [1.0, 0.7], [1.0 + 0.1 / s, 0.8]]
    np.testing.assert_allclose(sampler.centers.numpy(), knots, atol=1e-12)
    assert float(sampler.a_max) == pytest.approx(0.8)


def test_fit_equals_lava_transcription_over_refits() -> None:
    gen = np.random.default_rng(1)
    sampler, old = AnnSampler(num_centers=4), None
    for round_ in range(3):
        z = gen.uniform(-0.5, 2.0, 400)
        a = np.clip(np.floor(16 * z * gen.uniform(0.8, 1.0, 400)) / 16, 0, 1)
        if round_ == 0:  # rates on the bin edges, falling with the input (|slopes|)
            a = gen.choice(np.append(np.linspace(0.1, 0.9, 5), 1.0), 400)
            z = -a + gen.uniform(0, 0.01, 400)
        sampler.z, sampler.a = z, a
        sampler.fit()
        centers, slopes, max_ = _lava_fit(z, a, old, num_centers=4)
        np.testing.assert_allclose(sampler.centers.numpy(), centers, rtol=1e-12)
        np.testing.assert_allclose(sampler.slopes.numpy(), slopes, rtol=1e-12)
        assert float(sampler.a_max) == pytest.approx(max_, rel=1e-12)
        zs = torch.linspace(-1, 3, 97, dtype=torch.float64, requires_grad=True)
        out = sampler(zs)
        out.sum().backward()
        ref, grad = _lava_pwl(zs.detach(), torch.from_numpy(centers), torch.from_numpy(slopes),
                              max_, sampler.eps)  # fmt: skip
        torch.testing.assert_close(out.detach(), ref, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(zs.grad, grad, rtol=1e-12, atol=1e-12)
        old = centers


def test_fit_on_if_neuron_follows_its_closed_form_rate() -> None:
    # IF with soft reset (subtract θ = 1) on a constant input z in [0, 1] over T steps
    # fires floor(T z) times (z off the multiples of 1/T); above 1 it fires every step
    steps = 16
    z = (torch.arange(0, 24, dtype=torch.float64) + 0.37) / steps  # up to 1.5
    spikes = IFNode(v_reset=None)(z.expand(steps, 1, -1).clone())
    rate = torch.clamp(torch.floor(steps * z), max=steps) / steps
    torch.testing.assert_close(spikes.mean(0)[0], rate, rtol=0, atol=0)
    sampler = AnnSampler()
    sampler.append(spikes, z.expand(steps, 1, -1))
    sampler.fit()
    # every bin's median lies between z - 1/T and z, so the fit stays within 1/T of the
    # rate curve min(z, 1) and of the true rate inside the sampled range
    zs = torch.linspace(0.1, 1.5, 141, dtype=torch.float64)
    fitted = sampler(zs)
    assert float((fitted - torch.clamp(zs, max=1)).abs().max()) <= 1 / steps
    true = torch.clamp(torch.floor(steps * zs), max=steps) / steps
    assert float((fitted - true).abs().max()) <= 1 / steps
    # a_max: the mean of the rates above 0.9 (15/16 once, 1 eight times)
    assert float(sampler.a_max) == pytest.approx((15 / 16 + 8) / 9, rel=1e-12)
    assert float(sampler(torch.tensor([0.0], dtype=torch.float64))) == 0.0


def test_state_dict_round_trip_and_arguments() -> None:
    sampler = AnnSampler(num_centers=2)
    sampler.z, sampler.a = np.array([0.3, 0.5, 0.9, 1.1, 1.6]), np.array([0.2, 0.4, 0.6, 0.8, 1.0])
    sampler.fit()
    fresh = AnnSampler(num_centers=2)
    fresh.load_state_dict(sampler.state_dict())
    zs = torch.linspace(-1, 2, 31, dtype=torch.float64)
    torch.testing.assert_close(fresh(zs), sampler(zs))
    for kwargs, name in (({"num_centers": 0}, "num_centers"),
                         ({"sample_range": (0.9, 0.1)}, "lo < hi"),
                         ({"sample_range": (0.1, 1.5)}, r"sample_range\[1\]"),
                         ({"alpha": 2.0}, "alpha")):  # fmt: skip
        with pytest.raises(ConfigurationError, match=name):
            AnnSampler(**kwargs)
    with pytest.raises(ConfigurationError, match="slopes must be"):
        piecewise_linear(zs, sampler.centers, sampler.slopes[:1], 1.0)


# --- blocks and networks ---


def _block(seed: int, n_in: int, n_out: int) -> BootstrapBlock:
    torch.manual_seed(seed)
    return BootstrapBlock(layers.Linear(n_in, n_out).double(), IFNode(v_reset=None))


def test_block_modes() -> None:
    block = _block(0, 3, 4)
    x = (torch.rand(12, 5, 3, generator=torch.Generator().manual_seed(2)) < 0.5).double()
    with pytest.raises(StateError, match="no activation fitted"):
        block(x, Mode.ANN)
    with torch.no_grad():
        z = block.synapse(x)
        spikes = block(x, Mode.SNN)
    torch.testing.assert_close(spikes, IFNode(v_reset=None)(z))
    assert block.sampler.num_points == 0
    torch.testing.assert_close(block(x, Mode.SAMPLE).detach(), spikes)
    np.testing.assert_allclose(block.sampler.a, spikes.mean(0).flatten().numpy())
    np.testing.assert_allclose(block.sampler.z, z.mean(0).flatten().numpy())
    out = block(x, Mode.FIT)  # fits, keeps half the points, runs as the ANN
    assert block.sampler.fitted and block.sampler.num_points == 10
    torch.testing.assert_close(out.detach(), block.sampler(z))
    with pytest.raises(ConfigurationError, match="mode must be a Mode"):
        block(x, "ANN")  # type: ignore[arg-type]


def test_sequential_hybrid_crossover() -> None:
    first, second = _block(0, 3, 4), _block(1, 4, 2)
    net = BootstrapSequential(first, second, layers.Linear(2, 2).double())
    x = (torch.rand(10, 5, 3, generator=torch.Generator().manual_seed(3)) < 0.6).double()
    net(x, Mode.SAMPLE)
    net(x, LayerMode(0, Mode.FIT))
    # crossover 1: the first block spikes, its rate feeds the second block's ANN
    out = net(x, LayerMode(1, Mode.ANN))
    rate = first(x, Mode.SNN).mean(0, keepdim=True)
    torch.testing.assert_close(out, net[2](second(rate, Mode.ANN)))
    assert out.shape == (1, 5, 2)
    # all ANN: the input's rate goes through
    ann = net(x, Mode.ANN)
    xr = x.mean(0, keepdim=True)
    torch.testing.assert_close(ann, net[2](second(first(xr, Mode.ANN), Mode.ANN)))
    with pytest.raises(ConfigurationError, match="after an ANN block"):
        BootstrapSequential(first, _block(2, 4, 4), second)(x, _ModesForTest())


class _ModesForTest(LayerMode):
    def __init__(self) -> None:
        super().__init__(0, Mode.ANN)

    def __iter__(self):  # type: ignore[override]
        yield from (Mode.ANN, Mode.SNN, Mode.ANN)


def test_scheduler_equals_lava_transcription() -> None:
    ours = Scheduler(num_sample_iter=3, sample_period=4, crossover_epochs=[2, 5])
    lava = _LavaScheduler(3, 4, [2, 5])
    for epoch in range(9):
        for iteration in range(6):
            mode = ours.mode(epoch, iteration, train=True)
            crossover, base = lava.mode(epoch, iteration, train=True)
            assert (mode.crossover, mode.base_mode) == (crossover, base)
            modes = [m for m, _ in zip(mode, range(4))]
            assert modes == _lava_layer_modes(crossover, base, 4)
            assert [m for m, _ in zip(mode, range(4))] == modes  # each iteration restarts
        evaluation = ours.mode(epoch, 0, train=False)
        assert (evaluation.crossover, evaluation.base_mode) == lava.mode(epoch, 0, train=False)
    with pytest.raises(ConfigurationError, match="sample_period"):
        Scheduler(sample_period=0)
    with pytest.raises(ConfigurationError, match="crossover"):
        LayerMode(-1, Mode.ANN)
