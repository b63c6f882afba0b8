"""snnTorch's spike-time losses (mse_temporal, ce_temporal) and spike_times: by hand,
against loops, against snnTorch 1.0 in float64 (values and sign-estimator gradients),
the snnTorch quirks docs/models.md states, descent on a LIF layer, and errors."""

from __future__ import annotations

import math

import pytest
import torch

from snntorch_losses import assert_same, snntorch_functional, value_and_grad
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.losses import (
    ce_temporal_loss,
    get_loss,
    loss_readout,
    mse_temporal_loss,
    spike_times,
    ttfs_loss,
)

SHAPES = [(1, 1, 2), (7, 4, 5), (12, 3, 10)]


def _spikes(shape, p=0.25):
    return (torch.rand(shape) < p).double()


def test_spike_times_by_hand_and_the_sign_estimator():
    out = torch.zeros(5, 1, 3, dtype=torch.float64)
    out[[1, 3], 0, 0] = 1.0  # spikes at 1 and 3
    out[2, 0, 1] = 1.0  # one spike at 2; neuron 2 silent
    leaf = out.clone().requires_grad_(True)
    times = spike_times(leaf, num_spikes=2)
    assert times[:, 0].tolist() == [[1.0, 2.0, 4.0], [3.0, 4.0, 4.0]]
    weights = torch.tensor([[[1.0, 10.0, 100.0]], [[1000.0, 1e4, 1e5]]], dtype=torch.float64)
    (times * weights).sum().backward()
    wanted = torch.zeros(5, 1, 3, dtype=torch.float64)
    wanted[1, 0, 0], wanted[3, 0, 0] = -1.0, -1000.0
    wanted[2, 0, 1], wanted[4, 0, 1] = -10.0, -1e4  # the missing second spike: at T - 1
    wanted[4, 0, 2] = -100.0 - 1e5  # both missing: summed at T - 1
    torch.testing.assert_close(leaf.grad, wanted)


def _nth_spike_loop(out, nth):
    steps = out.shape[0]
    times = torch.full(out.shape[1:], float(steps - 1), dtype=out.dtype)
    for b in range(out.shape[1]):
        for k in range(out.shape[2]):
            seen = 0
            for t in range(steps):
                seen += int(out[t, b, k] != 0)
                if out[t, b, k] != 0 and seen == nth:
                    times[b, k] = t
                    break
    return times


@pytest.mark.parametrize("shape", SHAPES)
def test_spike_times_against_a_loop(shape):
    out = _spikes(shape, 0.4) * torch.rand(shape, dtype=torch.float64)  # graded outputs too
    times = spike_times(out, num_spikes=3)
    for nth in range(3):
        torch.testing.assert_close(times[nth], _nth_spike_loop(out, nth + 1))


def test_mse_temporal_by_hand():
    out = torch.zeros(4, 1, 3, dtype=torch.float64)
    out[2, 0, 0] = out[0, 0, 1] = 1.0  # neuron 2 silent: time 3
    # label 0: wanted [0, 3, 3]; times [2, 0, 3]: errors [2, -3, 0] / 4
    value, grad = value_and_grad(lambda x: mse_temporal_loss(x, torch.tensor([0])), out)
    assert value == pytest.approx((4 + 9) / 16 / 3)
    wanted = torch.zeros_like(out)
    wanted[2, 0, 0] = -2 * 2 / 16 / 3  # -dL/dt = -2 (t - t*) / (T^2 N)
    wanted[0, 0, 1] = -2 * -3 / 16 / 3
    torch.testing.assert_close(grad, wanted)
    # on 1, off 1, tolerance 2: |2-1| < 2 and |0-1| < 2 forgiven, |3-1| = 2 is not
    value, grad = value_and_grad(
        lambda x: mse_temporal_loss(x, torch.tensor([0]), on_target=1, off_target=1, tolerance=2),
        out,
    )
    assert value == pytest.approx(4 / 16 / 3)
    assert grad[:3].abs().sum() == 0 and grad[3, 0, 2] == pytest.approx(-2 * 2 / 16 / 3)


def test_mse_temporal_several_spikes_against_a_loop():
    out = _spikes((9, 3, 4), 0.35)
    labels = torch.tensor([1, 0, 3])
    on, off = [1, 4, -2], [5, -3, 8]
    got = mse_temporal_loss(out, labels, on_target=on, off_target=off, tolerance=1.5)
    total = 0.0
    for nth in range(3):
        times = _nth_spike_loop(out, nth + 1)
        for b in range(3):
            for k in range(4):
                wanted = (on if k == labels[b] else off)[nth] % 9
                error = float(times[b, k]) - wanted
                total += 0.0 if abs(error) < 1.5 else (error / 9) ** 2
    assert got.item() == pytest.approx(total / (3 * 3 * 4))


def test_ce_temporal_by_hand():
    out = torch.zeros(4, 2, 3, dtype=torch.float64)
    out[1, 0, 0] = out[0, 0, 1] = out[3, 1, 2] = 1.0
    # times: sample 0 [1, 0, 3]; sample 1 [3, 3, 3] (two silent, one at the last step)
    labels = torch.tensor([0, 2])

    def ce(scores, label):
        return math.log(sum(math.exp(s) for s in scores)) - scores[label]

    negate = (ce([-1, 0, -3], 0) + ce([-3, -3, -3], 2)) / 2
    assert ce_temporal_loss(out, labels).item() == pytest.approx(negate)
    reciprocal = (ce([1 / 2, 1, 1 / 4], 0) + ce([1 / 4] * 3, 2)) / 2
    assert ce_temporal_loss(out, labels, "reciprocal").item() == pytest.approx(reciprocal)
    # negate: dL/dO at the first spike = -dL/dt = dL/ds
    _, grad = value_and_grad(lambda x: ce_temporal_loss(x, labels), out)
    scores = torch.tensor([[-1.0, 0.0, -3.0], [-3.0, -3.0, -3.0]], dtype=torch.float64)
    dscores = (torch.softmax(scores, 1) - torch.nn.functional.one_hot(labels, 3)) / 2
    assert grad[1, 0, 0] == pytest.approx(float(dscores[0, 0]))
    assert grad[3, 1].tolist() == pytest.approx(dscores[1].tolist())  # silent: at T - 1


def test_ce_temporal_differs_from_ttfs_by_temperature_and_silence():
    out = _spikes((6, 4, 5), 0.5)
    out[:, :, 0] = 0.0
    out[-1, :, 0] = 1.0  # neuron 0 fires at the last step only, never silent elsewhere
    out[0, :, 1:] = 1.0  # every other neuron fires at 0: no neuron is silent
    labels = torch.tensor([0, 1, 2, 4])
    times = spike_times(out)[0]
    torch.testing.assert_close(
        ttfs_loss(out, labels), torch.nn.functional.cross_entropy(-times / 6, labels)
    )
    torch.testing.assert_close(
        ce_temporal_loss(out, labels), torch.nn.functional.cross_entropy(-times, labels)
    )


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(
    ("on", "off", "tolerance"), [(0, "last", 0), (2, 5, 0), (2, 5, 1), (3, 0, 2), (0, 0, 0)]
)
def test_mse_temporal_equals_snntorch(monkeypatch, shape, on, off, tolerance):
    sf = snntorch_functional(monkeypatch)
    steps, batch, classes = shape
    on, off = min(on, steps - 1), steps - 1 if off == "last" else min(off, steps - 1)
    labels = torch.randint(0, classes, (batch,))
    assert_same(
        lambda x: mse_temporal_loss(x, labels, on, off, tolerance),
        lambda x: sf.mse_temporal_loss(on_target=on, off_target=off, tolerance=tolerance)(
            x, labels
        ),
        _spikes(shape),
    )


@pytest.mark.parametrize("shape", SHAPES)
def test_mse_temporal_given_times_equals_snntorch(monkeypatch, shape):
    sf = snntorch_functional(monkeypatch)
    steps, batch, classes = shape
    times = torch.randint(-steps, steps, (batch, classes)).double()
    kept = times.clone()
    assert_same(
        lambda x: mse_temporal_loss(x, times, tolerance=1, target_is_time=True),
        lambda x: sf.mse_temporal_loss(target_is_time=True, tolerance=1)(x, times.clone()),
        _spikes(shape),
    )
    assert torch.equal(times, kept)  # snnTorch wraps the negative times in place; not here


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("inverse", ["negate", "reciprocal"])
def test_ce_temporal_equals_snntorch(monkeypatch, shape, inverse):
    sf = snntorch_functional(monkeypatch)
    labels = torch.randint(0, shape[2], (shape[1],))
    assert_same(
        lambda x: ce_temporal_loss(x, labels, inverse),
        lambda x: sf.ce_temporal_loss(inverse=inverse)(x, labels),
        _spikes(shape),
    )


def test_mse_temporal_several_spikes_equals_snntorch_for_one_neuron(monkeypatch):
    """snnTorch's multi-spike reading is right for one neuron of one sample (see the
    next test); there the values and gradients agree."""
    sf = snntorch_functional(monkeypatch)
    on, off = [1, 3, 6], [0, 0, 0]
    theirs = sf.mse_temporal_loss(
        on_target=torch.tensor(on), off_target=torch.tensor(off), multi_spike=True
    )
    label = torch.tensor([0])
    for seed in range(4):
        torch.manual_seed(seed)
        out = _spikes((10, 1, 1), 0.4)
        out[-1] = 0.0  # at most one read at T - 1 (snnTorch overwrites, spikeflow sums)
        assert out.sum() >= 2
        assert_same(lambda x: mse_temporal_loss(x, label, on, off), lambda x: theirs(x, label), out)


def test_snntorch_quirks_that_docs_state(monkeypatch):
    sf = snntorch_functional(monkeypatch)
    out = _spikes((7, 4, 5))
    labels = torch.tensor([0, 4, 2, 2])
    # 1. Its default off_target=-1 is lost (clamp(0 * one_hot, min=-1)): every neuron
    # is asked to fire at step 0; spikeflow asks the other classes for the last step.
    assert_same(
        lambda x: mse_temporal_loss(x, labels, on_target=0, off_target=0),
        lambda x: sf.mse_temporal_loss()(x, labels),
        out,
    )
    assert mse_temporal_loss(out, labels) != mse_temporal_loss(out, labels, 0, 0)
    # 2. Its multi-spike reading zeroes whole steps: a neuron's second spike is lost
    # when another neuron's first spike shares its step.
    two = torch.zeros(5, 1, 2, dtype=torch.float64)
    two[[1, 3], 0, 0] = 1.0
    two[[3, 4], 0, 1] = 1.0
    from snntorch.functional.loss import SpikeTime

    theirs, _ = SpikeTime(target_is_time=True, multi_spike=True)(two, torch.zeros(2, 1, 2))
    assert theirs[1, 0].tolist() == [4.0, 4.0]
    assert spike_times(two, 2)[1, 0].tolist() == [3.0, 4.0]


def test_mse_temporal_moves_spikes_by_surrogate_descent():
    """Descent through a LIF layer's surrogate makes the label neurons fire earlier and
    the others later, and lowers the loss."""
    from spikeflow.neurons import LIFNode

    torch.manual_seed(3)
    steps, batch, inputs, classes = 20, 8, 30, 4
    x = (torch.rand(steps, batch, inputs) < 0.3).float()
    labels = torch.arange(batch) % classes
    fc = torch.nn.Linear(inputs, classes)
    torch.nn.init.uniform_(fc.weight, 0.0, 0.2)
    lif = LIFNode(tau=2.0, v_threshold=1.0)
    opt = torch.optim.Adam(fc.parameters(), lr=0.02)
    is_label = torch.nn.functional.one_hot(labels, classes).bool()

    def run():
        out = lif(fc(x.flatten(0, 1)).unflatten(0, (steps, batch)))
        return out, mse_temporal_loss(out, labels, on_target=2, off_target=-1)

    with torch.no_grad():
        out, first = run()
        before = spike_times(out)[0]
    for _ in range(60):
        opt.zero_grad()
        run()[1].backward()
        opt.step()
    with torch.no_grad():
        out, last = run()
        after = spike_times(out)[0]
    assert last < 0.5 * first
    assert after[is_label].mean() < before[is_label].mean()
    assert after[~is_label].mean() > before[~is_label].mean()


def test_temporal_losses_registered():
    assert loss_readout("mse_temporal") == loss_readout("ce_temporal") == "first_spike"
    out, labels = _spikes((6, 3, 4)), torch.tensor([0, 1, 3])
    bound = get_loss("mse_temporal", on_target=[1, 2], off_target=[-1, -1], tolerance=1)
    torch.testing.assert_close(
        bound(out, labels), mse_temporal_loss(out, labels, [1, 2], [-1, -1], 1)
    )
    assert get_loss("ce_temporal") is ce_temporal_loss


def test_temporal_loss_errors_name_what_is_wrong():
    out, labels = _spikes((6, 2, 3)), torch.tensor([0, 2])
    with pytest.raises(
        ConfigurationError, match=r"on_target and off_target must lie in \[-T, T\] = \[-6, 6\]"
    ):
        mse_temporal_loss(out, labels, on_target=7)
    with pytest.raises(ConfigurationError, match="same length"):
        get_loss("mse_temporal", on_target=[1, 2], off_target=5)
    with pytest.raises(ConfigurationError, match="tolerance"):
        get_loss("mse_temporal", tolerance=-1)
    with pytest.raises(ConfigurationError, match="non-empty list"):
        get_loss("mse_temporal", on_target=[])
    with pytest.raises(ConfigurationError, match=r"on_target\[1\] must be a finite real"):
        mse_temporal_loss(out, labels, on_target=[1, "2"], off_target=[3, 4])
    with pytest.raises(ConfigurationError, match="target_is_time must be True or False"):
        get_loss("mse_temporal", target_is_time="yes")
    with pytest.raises(ShapeError, match=r"spike times \[B, K\] = \[2, 3\] or \[F, B, K\]"):
        mse_temporal_loss(out, torch.zeros(2, 4), target_is_time=True)
    with pytest.raises(ConfigurationError, match="target times must lie in"):
        mse_temporal_loss(out, torch.full((2, 3), 9.0), target_is_time=True)
    with pytest.raises(DTypeError, match="integer class labels"):
        mse_temporal_loss(out, torch.zeros(2, 3))
    with pytest.raises(ConfigurationError, match="inverse must be one of negate, reciprocal"):
        get_loss("ce_temporal", inverse="log")
    with pytest.raises(ShapeError, match=r"ce_temporal_loss: out_seq must be a \[T, B, K\]"):
        ce_temporal_loss(out[0], labels)
    with pytest.raises(DTypeError, match="spike_times: out_seq must be floating point"):
        spike_times(out.bool())
    with pytest.raises(ConfigurationError, match="num_spikes must be an integer >= 1"):
        spike_times(out, 0)
