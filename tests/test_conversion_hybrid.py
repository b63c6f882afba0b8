"""Hybrid training: converted IF neurons fine-tuned with a surrogate on (H − θ)/θ."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikeflow.conversion import (
    ConversionIFNode,
    TrainableIFNode,
    constant_input,
    convert,
    fine_tunable,
    frozen,
)
from spikeflow.conversion.snn import TimeFolded
from spikeflow.errors import ConfigurationError
from spikeflow.surrogate import PoissonPass, Sigmoid, Triangle


class _TriangleSpike(torch.autograd.Function):
    """Θ(z) forward, DIET-SNN's max(0, 1 − |z|) backward (written here from the paper)."""

    @staticmethod
    def forward(ctx, z):
        ctx.save_for_backward(z)
        return (z >= 0).to(z.dtype)

    @staticmethod
    def backward(ctx, grad):
        (z,) = ctx.saved_tensors
        return grad * (1 - z.abs()).clamp_min(0)


def _reference(x_seq, theta, initial_membrane, detach_reset=False):
    """The trainable IF neuron as a float64 loop: z = (H − θ)/θ, soft reset, output θS;
    ``detach_reset``: the reset's spike without gradient, θ with (DIET-SNN's code)."""
    v = torch.zeros_like(x_seq[0]) + initial_membrane * theta
    out = []
    for x in x_seq:
        h = v + x
        s = _TriangleSpike.apply((h - theta) / theta)
        v = h - theta * (s.detach() if detach_reset else s)
        out.append(theta * s)
    return torch.stack(out)


@pytest.mark.parametrize("backend", ["torch", "auto"])
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("initial_membrane", [0.0, 0.5])
def test_gradients_match_a_float64_reference_loop(backend, per_channel, initial_membrane):
    torch.manual_seed(0)
    x = (torch.randn(8, 3, 4, 5, dtype=torch.float64) * 0.6 + 0.3).requires_grad_()
    theta0 = (
        torch.rand(4, 1, dtype=torch.float64) + 0.3
        if per_channel
        else torch.tensor(0.7, dtype=torch.float64)
    )
    neuron = TrainableIFNode(theta0, initial_membrane, backend=backend)
    out = neuron(x)
    theta = theta0.clone().requires_grad_()
    expected = _reference(x, theta, initial_membrane)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    # the forward is the converted neuron's, spike for spike
    torch.testing.assert_close(out, ConversionIFNode(theta0, initial_membrane)(x), rtol=0, atol=0)
    weights = torch.randn_like(out)
    got = torch.autograd.grad((out * weights).sum(), [x, neuron.v_threshold])
    want = torch.autograd.grad((expected * weights).sum(), [x, theta])
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-10)
    assert float(want[1].abs().sum()) > 0.1 and float((want[0] != 0).double().mean()) > 0.3


def test_gradcheck_with_the_smooth_surrogate():
    # spiking=False: the forward is the surrogate's smooth primitive, so autograd's
    # gradient (the backends') must match finite differences, for x and θ.
    torch.manual_seed(1)
    x = (torch.randn(5, 2, 3, dtype=torch.float64) * 0.5 + 0.4).requires_grad_()
    neuron = TrainableIFNode(
        torch.rand(3, dtype=torch.float64) + 0.5, 0.5, surrogate_function=Triangle(spiking=False)
    )
    # θ is passed as the neuron's own parameter: gradcheck perturbs it in place
    assert torch.autograd.gradcheck(lambda x, _theta: neuron(x), (x, neuron.v_threshold))


def _cnn(pool: nn.Module) -> nn.Module:
    torch.manual_seed(2)
    return nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), pool,
        nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 3 * 3, 5),
    ).eval()  # fmt: skip


@pytest.mark.parametrize("pool", [nn.AvgPool2d(2), nn.MaxPool2d(2)])
def test_fine_tunable_keeps_the_outputs_and_trains_weights_and_thresholds(pool):
    net = _cnn(pool)
    x = torch.rand(16, 1, 6, 6)
    snn, _ = convert(net, x, per_channel=True, initial_membrane=0.5)
    tuned = fine_tunable(snn, surrogate_function=Sigmoid(alpha=2.0))
    neurons = [m.module for m in tuned.body.modules() if isinstance(m, TimeFolded)]
    trainable = [n for n in neurons if isinstance(n, TrainableIFNode)]
    assert len(trainable) == 2 and all(isinstance(n.v_threshold, nn.Parameter) for n in trainable)
    assert trainable[0].surrogate_function is not trainable[1].surrogate_function
    x_seq = constant_input(x, 6)
    with torch.no_grad():
        torch.testing.assert_close(tuned(x_seq), snn(x_seq), rtol=0, atol=0)
    nn.functional.cross_entropy(tuned(x_seq).mean(0), torch.arange(16) % 5).backward()
    first_conv = next(m for m in tuned.body.modules() if isinstance(m, nn.Conv2d))
    assert float(first_conv.weight.grad.abs().sum()) > 0
    assert all(float(n.v_threshold.grad.abs().sum()) > 0 for n in trainable)
    # the converted network is left as it was; frozen() gives plain neurons back
    assert not any(isinstance(p, nn.Parameter) for p in _thresholds(snn))
    plain = frozen(tuned)
    assert all(type(n) is ConversionIFNode for n in _neurons(plain))
    with torch.no_grad():
        torch.testing.assert_close(plain(x_seq), tuned(x_seq), rtol=0, atol=0)
    fixed = fine_tunable(snn, learnable_threshold=False)
    assert not any(isinstance(p, nn.Parameter) for p in _thresholds(fixed))


def _neurons(snn):
    return [m.module for m in snn.body.modules() if isinstance(m, TimeFolded)
            and isinstance(m.module, ConversionIFNode)]  # fmt: skip


def _thresholds(snn):
    return [n.v_threshold for n in _neurons(snn)]


def test_fine_tuning_raises_small_t_accuracy_on_the_digits():
    datasets = pytest.importorskip("sklearn.datasets", reason="scikit-learn: the 'examples' extra")
    digits = datasets.load_digits()
    x = torch.tensor(digits.images / 16.0, dtype=torch.float32).reshape(-1, 64)
    y = torch.tensor(digits.target)
    x_tr, y_tr, x_te, y_te = x[:1400], y[:1400], x[1400:], y[1400:]
    torch.manual_seed(0)
    ann = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                        nn.Linear(64, 10))  # fmt: skip
    opt = torch.optim.Adam(ann.parameters(), lr=3e-3)
    for _ in range(8):
        for i in range(0, 1400, 50):
            loss = nn.functional.cross_entropy(ann(x_tr[i : i + 50]), y_tr[i : i + 50])
            opt.zero_grad()
            loss.backward()
            opt.step()
    snn, _ = convert(ann.eval(), x_tr)
    steps = 2
    with torch.no_grad():
        before = float((snn.rate(x_te, steps).argmax(1) == y_te).float().mean())
    tuned = fine_tunable(snn)
    opt = torch.optim.Adam(tuned.parameters(), lr=1e-3)
    for i in range(0, 1400, 50):
        loss = nn.functional.cross_entropy(tuned.rate(x_tr[i : i + 50], steps), y_tr[i : i + 50])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = float((tuned.rate(x_te, steps).argmax(1) == y_te).float().mean())
    assert after > before + 0.2 and after > 0.7, (before, after)


def test_nir_export_asks_for_the_frozen_network():
    pytest.importorskip("nir", reason="NIR export needs the 'nir' extra")
    from spikeflow.interop import export_to_nir, import_from_nir

    ann = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)).eval()
    x = torch.rand(64, 16)
    snn, _ = convert(ann, x)
    tuned = fine_tunable(snn)
    x_seq = constant_input(x[:4], 4)
    with pytest.raises(ConfigurationError, match=r"TrainableIFNode .* export frozen\(snn\)"):
        export_to_nir(tuned, x_seq, soft_reset="metadata")
    graph = export_to_nir(frozen(tuned), x_seq, soft_reset="metadata")
    with torch.no_grad():
        torch.testing.assert_close(
            import_from_nir(graph)(x_seq), tuned(x_seq), rtol=1e-5, atol=1e-6
        )


def test_bad_networks_are_named():
    net = _cnn(nn.AvgPool2d(2))
    x = torch.rand(16, 1, 6, 6)
    with pytest.raises(ConfigurationError, match="expects a ConvertedSNN"):
        fine_tunable(net)
    group, _ = convert(net, x, group_size=4)
    with pytest.raises(ConfigurationError, match="is a GroupNeuron; only IF neurons"):
        fine_tunable(group)
    multi, _ = convert(net, x, multi_threshold=4)
    with pytest.raises(ConfigurationError, match="is a MultiThresholdNeuron"):
        fine_tunable(multi)
    differential, _ = convert(net, x, coding="differential")
    with pytest.raises(ConfigurationError, match="differentially coded"):
        fine_tunable(differential)
    snn, _ = convert(net, x)
    with pytest.raises(ConfigurationError, match="surrogate_function must be"):
        fine_tunable(snn, surrogate_function="triangle")
    # a smooth or non-Heaviside forward would train another network than frozen() gives
    with pytest.raises(ConfigurationError, match="has spiking=False: the network trained"):
        fine_tunable(snn, surrogate_function=Triangle(spiking=False))
    with pytest.raises(ConfigurationError, match="a forward that is not Θ"):
        fine_tunable(snn, surrogate_function=PoissonPass())
    with pytest.raises(ConfigurationError, match="keeps the converted neuron's strict_firing"):
        TrainableIFNode(1.0, strict_firing=True)


@pytest.mark.parametrize("backend", ["torch", "auto"])
@pytest.mark.parametrize("per_channel", [False, True])
def test_detach_reset_matches_diet_snns_hard_reset(backend, per_channel):
    # DIET-SNN's code resets by θ·(V/θ − 1 > 0): a hard comparison, so no surrogate
    # gradient through the reset's spike, while θ still gets one there.
    torch.manual_seed(3)
    x = (torch.randn(10, 3, 4, dtype=torch.float64) * 0.6 + 0.4).requires_grad_()
    theta0 = (
        torch.rand(4, dtype=torch.float64) + 0.3
        if per_channel
        else torch.tensor(0.6, dtype=torch.float64)
    )
    neuron = TrainableIFNode(theta0, 0.5, backend=backend, detach_reset=True)
    attached = TrainableIFNode(theta0, 0.5, backend=backend)
    theta = theta0.clone().requires_grad_()
    expected = _reference(x, theta, 0.5, detach_reset=True)
    out = neuron(x)
    torch.testing.assert_close(out, attached(x), rtol=0, atol=0)  # the same forward
    weights = torch.randn_like(out)
    got = torch.autograd.grad((out * weights).sum(), [x, neuron.v_threshold])
    want = torch.autograd.grad((expected * weights).sum(), [x, theta])
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-10)
    other = torch.autograd.grad((attached(x) * weights).sum(), [x, attached.v_threshold])
    assert float((other[0] - got[0]).abs().max()) > 1e-3  # the flag changes the backward
    snn, _ = convert(nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2)).eval(),
                     torch.rand(32, 4))  # fmt: skip
    assert all(n.detach_reset for n in _neurons(fine_tunable(snn, detach_reset=True)))
    assert not any(n.detach_reset for n in _neurons(fine_tunable(snn)))
    with pytest.raises(ConfigurationError, match="detach_reset"):
        fine_tunable(snn, detach_reset="yes")


@pytest.mark.parametrize("bad", [0.0, -0.2, float("nan")])
def test_a_learnt_threshold_at_or_below_zero_is_named(bad):
    net = _cnn(nn.AvgPool2d(2))
    x = torch.rand(8, 1, 6, 6)
    snn, _ = convert(net, x, per_channel=True)
    tuned = fine_tunable(snn)
    theta = _neurons(tuned)[1].v_threshold
    with torch.no_grad():
        theta[2] = bad  # what an optimiser step with too large a rate can do
    with pytest.raises(ConfigurationError, match=r"TrainableIFNode: threshold 1 of 8 entries"):
        tuned.rate(x, 3)
    with pytest.raises(ConfigurationError, match=r"frozen: the threshold of '5': 1 of 8"):
        frozen(tuned)


def test_a_fine_tuned_network_passed_again_gets_the_new_arguments():
    # (they were ignored: the TrainableIFNodes were kept as they were)
    net = _cnn(nn.AvgPool2d(2))
    x = torch.rand(8, 1, 6, 6)
    snn, _ = convert(net, x, per_channel=True)
    tuned = fine_tunable(snn, surrogate_function=Sigmoid(alpha=2.0))
    with torch.no_grad():
        for theta in _thresholds(tuned):
            theta.mul_(0.8)  # as trained
    again = fine_tunable(tuned, learnable_threshold=False, detach_reset=True)
    neurons = _neurons(again)
    assert all(type(n) is TrainableIFNode and n.detach_reset for n in neurons)
    assert not any(isinstance(t, nn.Parameter) for t in _thresholds(again))
    assert all(isinstance(n.surrogate_function, Triangle) for n in neurons)
    for kept, trained in zip(_thresholds(again), _thresholds(tuned)):
        torch.testing.assert_close(kept, trained.detach(), rtol=0, atol=0)
    x_seq = constant_input(x, 5)
    with torch.no_grad():
        torch.testing.assert_close(again(x_seq), tuned(x_seq), rtol=0, atol=0)
