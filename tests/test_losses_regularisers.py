"""Activity regularisers (l1_rate_sparsity, l2_spike_population, im_loss), LayerSpikes and the
accuracy helper: by hand, against snnTorch 1.0 (l1_rate_sparsity, accuracy_rate,
accuracy_temporal), gradients, recording a network's layers with their graph, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from snntorch_losses import assert_same, snntorch_functional
from spikeflow import layers, neurons
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.losses import (
    LayerSpikes,
    accuracy,
    get_loss,
    im_loss,
    l1_rate_sparsity,
    l2_spike_population,
    predict,
)


def _spikes(shape, p=0.3):
    return (torch.rand(shape) < p).double()


def test_l1_and_l2_by_hand():
    s = torch.zeros(3, 2, 2, dtype=torch.float64)  # [T, B, N]
    s[:, 0, 0] = 1.0  # sample 0: neuron 0 fires 3 times, neuron 1 once
    s[1, 0, 1] = 1.0
    s[0, 1, 1] = 1.0  # sample 1: neuron 1 once
    assert l1_rate_sparsity(s, strength=0.5).item() == pytest.approx(0.5 * 5)
    assert l1_rate_sparsity(s, 0.5, reduction="mean").item() == pytest.approx(0.5 * 5 / 2)
    assert l2_spike_population(s, strength=0.5).item() == pytest.approx(0.5 * (9 + 1 + 1))
    assert l2_spike_population(s, 0.5, "mean").item() == pytest.approx(0.5 * 11 / 2)
    # spreading the same 4 spikes of sample 0 over both neurons costs less
    spread = s.clone()
    spread[2, 0, 0], spread[2, 0, 1] = 0.0, 1.0
    assert l1_rate_sparsity(spread).item() == l1_rate_sparsity(s).item()
    assert l2_spike_population(spread).item() < l2_spike_population(s).item()


def test_l2_against_a_loop_and_its_gradient():
    s = _spikes((5, 3, 2, 4)).requires_grad_(True)  # [T, B, C, N]: any trailing dims
    loss = l2_spike_population(s, strength=0.1, reduction="mean")
    total = 0.0
    for b in range(3):
        for c in range(2):
            for i in range(4):
                total += float(s[:, b, c, i].detach().sum()) ** 2
    assert loss.item() == pytest.approx(0.1 * total / 3)
    loss.backward()
    counts = s.detach().sum(0, keepdim=True)
    torch.testing.assert_close(s.grad, (2 * 0.1 * counts / 3).expand_as(s))
    assert torch.autograd.gradcheck(
        lambda x: l2_spike_population(x, 0.3),
        (torch.rand(4, 2, 3, dtype=torch.float64, requires_grad=True),),
    )


@pytest.mark.parametrize("shape", [(1, 1, 2), (7, 4, 5), (12, 3, 2, 6)])
def test_l1_rate_sparsity_equals_snntorch(monkeypatch, shape):
    sf = snntorch_functional(monkeypatch)
    assert_same(
        lambda x: l1_rate_sparsity(x, 2e-3),
        lambda x: sf.l1_rate_sparsity(Lambda=2e-3)(x),
        _spikes(shape),
    )


def test_terms_sum_over_several_tensors():
    a, b = _spikes((4, 3, 5)), _spikes((4, 3, 2, 2))
    for term in (l1_rate_sparsity, l2_spike_population):
        torch.testing.assert_close(term([a, b], 0.2), term(a, 0.2) + term(b, 0.2))
        torch.testing.assert_close(
            term({"x": a, "y": b}.values(), 0.2, "mean"),
            term(a, 0.2, "mean") + term(b, 0.2, "mean"),
        )


def _net(hidden=6):
    return nn.Sequential(
        layers.Linear(4, hidden),
        neurons.LIFNode(tau=2.0, v_threshold=0.5),
        layers.Linear(hidden, 3),
        neurons.LIFNode(tau=2.0, v_threshold=0.5),
    )


def test_layer_spikes_keeps_each_layers_output_with_its_graph():
    net = _net()
    x = torch.rand(6, 2, 4) * 2
    with LayerSpikes(net) as recorded:
        out = net(x)
        spikes = recorded.spikes
        assert list(spikes) == ["1", "3"]
        torch.testing.assert_close(spikes["3"], out)
        torch.testing.assert_close(spikes["1"], (net[1](net[0](x))).detach())
        assert spikes["1"].sum() > 0
        l1_rate_sparsity(spikes.values(), 1.0).backward()
        assert net[0].weight.grad is not None and net[0].weight.grad.abs().sum() > 0
        # a new forward replaces the last one: nothing accumulates between batches
        net(x[:3])
        assert recorded.spikes["1"].shape == (3, 2, 6)
        recorded.clear()
        assert recorded.spikes == {}
    net(x)  # the hooks are off after the block
    assert recorded.spikes == {}
    assert LayerSpikes(net, layers="3").layers.keys() == {"3"}


def test_layer_spikes_stacks_single_step_calls():
    cell = layers.ElementWiseRecurrentContainer(
        neurons.IFNode(v_threshold=0.5, step_mode="s"), torch.add
    )
    net = nn.Sequential(layers.Linear(3, 4), cell)
    x = torch.rand(5, 2, 3)
    with LayerSpikes(net) as recorded:
        out = net(x)
        assert list(recorded.spikes) == ["1.sub_module"]
        torch.testing.assert_close(recorded.spikes["1.sub_module"], out)
        net(x)
        assert recorded.spikes["1.sub_module"].shape == (5, 2, 4)  # replaced, not 10 steps


def _train_hidden_rate(strength: float) -> tuple[float, float]:
    """The hidden layer's firing rate before and after 30 Adam steps on CE plus
    ``strength`` times the L2 population term of that layer (same start and data)."""
    torch.manual_seed(1)
    net = _net(hidden=16)
    x = torch.rand(8, 16, 4) * 2
    labels = torch.randint(0, 3, (16,))
    opt = torch.optim.Adam(net.parameters(), lr=0.02)
    ce = get_loss("ce")
    with LayerSpikes(net, layers="1") as recorded:
        net(x)
        before = float(recorded.spikes["1"].detach().mean())
        for _ in range(30):
            opt.zero_grad()
            out = net(x)
            term = l2_spike_population(recorded.spikes.values(), strength, "mean")
            (ce(out, labels) + term).backward()
            opt.step()
        net(x)
        return before, float(recorded.spikes["1"].detach().mean())


def test_regularised_training_lowers_the_hidden_firing():
    before, plain = _train_hidden_rate(0.0)
    same_start, regularised = _train_hidden_rate(1e-2)
    assert before == same_start > 0.1
    assert regularised < 0.5 * min(before, plain)


def test_regulariser_errors_name_what_is_wrong():
    s = _spikes((3, 2, 4))
    with pytest.raises(ShapeError, match=r"l1_rate_sparsity: spikes must be \[T, B, ...\]"):
        l1_rate_sparsity(s[0, 0])
    with pytest.raises(ShapeError, match="empty"):
        l2_spike_population([])
    with pytest.raises(DTypeError, match=r"spikes\[1\] must be floating point"):
        l2_spike_population([s, s.long()])
    with pytest.raises(DTypeError, match=r"spikes\[0\] must be a tensor"):
        l1_rate_sparsity([1.0])
    with pytest.raises(ConfigurationError, match="reduction must be one of sum, mean"):
        l1_rate_sparsity(s, reduction="none")
    with pytest.raises(ConfigurationError, match="strength must be a finite real"):
        l2_spike_population(s, strength=-1.0)
    with pytest.raises(ShapeError, match="empty batch"):
        l1_rate_sparsity(torch.zeros(3, 0, 4), reduction="mean")
    with pytest.raises(ConfigurationError, match=r"no spiking layer named \[.0.\]"):
        LayerSpikes(_net(), layers="0")


def test_layer_spikes_refuses_a_network_without_spiking_layers():
    # a sigma-delta network sends graded deltas: recording nothing would make the
    # regulariser a silent 0 (a Lava-DL PilotNet user's event-rate loss)
    from spikeflow.layers import DeltaEncoder, DeltaSynapse, SigmaDecoder, SigmaDelta

    sdnn = nn.Sequential(
        DeltaEncoder(0.1), DeltaSynapse(nn.Linear(4, 8)), SigmaDelta(nn.ReLU(), threshold=0.1),
        DeltaSynapse(nn.Linear(8, 1)), SigmaDecoder(),
    )  # fmt: skip
    for model in (sdnn, nn.Sequential(nn.Linear(4, 2), nn.ReLU())):
        with pytest.raises(ConfigurationError, match="no spiking layer with spikes to record"):
            LayerSpikes(model)
    with LayerSpikes(_net()) as recorded:  # a spiking network is still recorded
        assert recorded.layers


def test_accuracy_by_hand_and_with_each_readout():
    out = torch.zeros(3, 3, 2)
    out[:, 0, 1] = 1.0  # sample 0 predicts 1
    out[0, 1, 0] = 1.0  # sample 1 predicts 0
    out[2, 2, 0] = out[1, 2, 1] = 1.0  # sample 2: count tie, first spike 1
    labels = torch.tensor([1, 1, 1])
    assert accuracy(out, labels) == pytest.approx(1 / 3)  # rate: tie to index 0
    assert accuracy(out, labels, "count") == pytest.approx(2 / 3)
    assert accuracy(out, labels, "first_spike") == pytest.approx(2 / 3)
    for readout in ("rate", "count", "first_spike", "max"):
        wanted = float((predict(out, readout) == labels).double().mean())
        assert accuracy(out, labels, readout) == wanted


@pytest.mark.parametrize("shape", [(1, 5, 3), (10, 64, 10), (25, 32, 4)])
def test_accuracy_rate_equals_snntorch(monkeypatch, shape):
    sf = snntorch_functional(monkeypatch)
    out = _spikes(shape, 0.2)  # many count ties: both go to the lowest index
    labels = torch.randint(0, shape[2], (shape[1],))
    assert accuracy(out, labels, "rate") == pytest.approx(float(sf.accuracy_rate(out, labels)))


def test_accuracy_temporal_equals_snntorch_without_ties(monkeypatch):
    sf = snntorch_functional(monkeypatch)
    steps, batch, classes = 12, 40, 5
    out = torch.zeros(steps, batch, classes, dtype=torch.float64)
    for b in range(batch):  # distinct first spikes, none silent, extra spikes after
        first = torch.randperm(steps - 1)[:classes]
        out[first, b, torch.arange(classes)] = 1.0
        out[-1, b] = 1.0
    labels = torch.randint(0, classes, (batch,))
    ours = accuracy(out, labels, "first_spike")
    assert ours == pytest.approx(float(sf.accuracy_temporal(out, labels)))
    assert 0.0 < ours < 1.0
    # on ties they differ: snnTorch's silent neuron ties with one firing at T - 1
    tie = torch.zeros(steps, 1, 2, dtype=torch.float64)
    tie[-1, 0, 1] = 1.0
    assert accuracy(tie, torch.tensor([1]), "first_spike") == 1.0
    assert float(sf.accuracy_temporal(tie, torch.tensor([1]))) == 0.0


def test_accuracy_errors():
    out = _spikes((3, 2, 4))
    with pytest.raises(ShapeError, match=r"accuracy: out_seq must be a \[T, B, K\]"):
        accuracy(out[0], torch.tensor([0, 1]))
    with pytest.raises(DTypeError, match="integer class labels"):
        accuracy(out, torch.rand(2))
    with pytest.raises(ConfigurationError, match=r"labels must lie in \[0, 3\]"):
        accuracy(out, torch.tensor([0, 4]))
    with pytest.raises(ShapeError, match=r"shape \[B\] = \[2\]"):
        accuracy(out, torch.tensor([0, 1, 2]))
    with pytest.raises(ConfigurationError, match="unknown readout 'votes'"):
        accuracy(out, torch.tensor([0, 1]), "votes")


def test_the_docs_training_step_runs():
    """docs/models.md's regularised training step, executed as printed."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "models.md").read_text()
    code = re.search(r"<!-- losses: regularisers -->\s*```python\n(.*?)```", text, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "docs/models.md (regularisers)", "exec"), namespace)
    assert namespace["loss"].ndim == 0 and torch.isfinite(namespace["loss"])
    assert namespace["net"][0].weight.grad.abs().sum() > 0
    assert namespace["recorded"].spikes == {}  # the block's end dropped the record


def test_negative_spikes_of_ternary_neurons_count_as_events():
    """A -1 spike is one event, as a +1 spike: the penalties do not reward it, and 0/1
    spikes (silent ones included) keep the gradient 1 of snnTorch's sum."""
    s = torch.tensor([[[1.0, -1.0, 0.0]], [[-1.0, 0.0, 0.0]]], requires_grad=True)  # [2, 1, 3]
    l1 = l1_rate_sparsity(s, strength=1.0)
    assert float(l1) == 3.0
    l1.backward()
    assert s.grad.tolist() == [[[1.0, -1.0, 1.0]], [[-1.0, 1.0, 1.0]]]
    assert float(l2_spike_population(s, strength=1.0)) == 2.0**2 + 1.0**2


def _im_loss_loop(tensors, strength, target_rate):
    """strength/L Σ_l (Σ s_l / |s_l| − r_l)², r_l = 0.5 / T_l unless given (sums by loops)."""
    total = 0.0
    for s in tensors:
        values = s.flatten().tolist()
        mean = sum(values) / len(values)
        r = 0.5 / s.shape[0] if target_rate is None else target_rate
        total += (mean - r) ** 2
    return strength * total / len(tensors)


@pytest.mark.parametrize(("strength", "target_rate"), [(0.005, None), (1.0, 0.5), (2.0, 0.0)])
def test_im_loss_against_the_transcribed_formula_and_its_gradient(strength, target_rate):
    torch.manual_seed(5)
    tensors = [_spikes((4, 3, 5), 0.1).requires_grad_(), _spikes((6, 3, 2, 2, 2), 0.6)]
    tensors[1].requires_grad_()
    value = im_loss(tensors, strength, target_rate)
    expected = _im_loss_loop(tensors, strength, target_rate)
    assert value.dtype == torch.float64 and abs(float(value) - expected) < 1e-15
    value.backward()
    for s in tensors:  # d/ds = strength · 2 (mean − r) / (N · L), the same for every s
        r = 0.5 / s.shape[0] if target_rate is None else target_rate
        grad = strength * 2 * (float(s.detach().mean()) - r) / (s.numel() * len(tensors))
        torch.testing.assert_close(s.grad, torch.full_like(s, grad), rtol=1e-12, atol=0)
    one = _spikes((4, 2, 3))
    assert float(im_loss(one, 1.0)) == pytest.approx((float(one.mean()) - 0.125) ** 2)


def test_im_loss_moves_a_silent_layer_towards_the_target_rate():
    """Adam on the IM term alone raises a near-silent hidden layer's firing rate."""
    torch.manual_seed(2)
    net = _net(hidden=16)
    x = torch.rand(8, 16, 4) * 0.3
    opt = torch.optim.Adam(net.parameters(), lr=0.02)
    with LayerSpikes(net, layers="1") as recorded:
        net(x)
        before = float(recorded.spikes["1"].detach().mean())
        for _ in range(40):
            opt.zero_grad()
            net(x)
            im_loss(recorded.spikes.values(), 1.0, target_rate=0.5).backward()
            opt.step()
        net(x)
        after = float(recorded.spikes["1"].detach().mean())
    assert before < 0.1 and after > before + 0.2


def test_im_loss_errors():
    s = _spikes((3, 2, 4))
    with pytest.raises(ConfigurationError, match="im_loss: strength"):
        im_loss(s, -1.0)
    with pytest.raises(ConfigurationError, match="im_loss: target_rate"):
        im_loss(s, 1.0, target_rate=1.5)
    with pytest.raises(ShapeError, match="im_loss: spikes is empty"):
        im_loss([])
    with pytest.raises(DTypeError, match="im_loss: spikes must be floating point"):
        im_loss(s.long())
