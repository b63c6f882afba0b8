"""Forward-Forward (spikeflow.training.forward_forward) against plain loops written from
snnTorch's tutorial_forward_forward (its LeakyLayer and Net equations, with snnTorch's own
``snn.Leaky`` for its one-step LIF layer), in float64 on the real 8x8 digits. Spiking
layers over T are checked against a hand-written float64 loop of ``snn.Leaky``'s
equations (snnTorch returns float32 spikes, whose gradients would lose precision),
itself checked spike for spike against ``snn.Leaky``."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.neurons import LeakyNode
from spikeflow.training.forward_forward import (
    ForwardForwardTrainer,
    NeuronMembrane,
    forward_forward_loss,
    goodness,
    negative_labels,
    normalize_direction,
    overlay_labels,
)

snn = pytest.importorskip("snntorch")
DT = torch.float64
THETA = 5.0  # the tutorial's


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.data[:32], dtype=DT) / 16.0
    return x, torch.tensor(data.target[:32])


def pairs(x, y, seed=0):
    wrong = negative_labels(y, 10, "permute", torch.Generator().manual_seed(seed))
    return overlay_labels(x, y, 10), overlay_labels(x, wrong, 10)


def float_net(sizes, activation, seed=0):
    torch.manual_seed(seed)
    layers = [
        nn.Sequential(nn.Linear(a, b, bias=False), activation())
        for a, b in itertools.pairwise(sizes)
    ]
    return nn.Sequential(*layers).to(DT)


def lif_net(sizes, seed=0, membrane=True, scale=1.0):
    torch.manual_seed(seed)
    layers = []
    for a, b in itertools.pairwise(sizes):
        linear = nn.Linear(a, b, bias=False).to(DT)
        with torch.no_grad():
            linear.weight.mul_(scale)
        node = LeakyNode(beta=torch.tensor(0.8, dtype=DT))
        layers.append(nn.Sequential(linear, NeuronMembrane(node) if membrane else node))
    return nn.Sequential(*layers)


def weights_of(net):
    return [layer[0].weight.detach().clone() for layer in net]


# -- the tutorial's equations, written out -------------------------------------------
def tutorial_forward(w, x, activation):
    """LeakyLayer.forward: direction of x, x W^T, then ReLU or one snn.Leaky step's mem."""
    z = (x / (torch.norm(x, p=2, dim=1, keepdim=True) + 1e-4)) @ w.T
    if activation == "relu":
        return torch.relu(z)
    lif = snn.Leaky(beta=torch.tensor(0.8, dtype=DT))
    _, mem = lif(z, lif.init_leaky())
    return mem


def tutorial_train(ws, x_pos, x_neg, steps, activation):
    """Net.train: each layer trained ``steps`` times (Adam 0.03, θ = 5) on the previous
    layer's final outputs. Returns the losses [layers, steps]; ``ws`` are updated."""
    h_pos, h_neg, history = x_pos, x_neg, []
    for w in ws:
        w.requires_grad_(True)
        opt = torch.optim.Adam([w], lr=0.03)
        losses = []
        for _ in range(steps):
            g_pos = tutorial_forward(w, h_pos, activation).pow(2).mean(1)
            g_neg = tutorial_forward(w, h_neg, activation).pow(2).mean(1)
            loss = F.softplus(torch.cat([-g_pos + THETA, g_neg - THETA])).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        h_pos = tutorial_forward(w, h_pos, activation).detach()
        h_neg = tutorial_forward(w, h_neg, activation).detach()
        history.append(losses)
    return torch.tensor(history, dtype=torch.float32)


def tutorial_predict(ws, x, activation):
    scores = []
    for label in range(10):
        h = overlay_labels(x, label, 10)
        total = 0
        for w in ws:
            h = tutorial_forward(w, h, activation)
            total = total + h.pow(2).mean(1)
        scores.append(total)
    return torch.stack(scores, 1).argmax(1)


@pytest.mark.parametrize("activation", ["relu", "lif"])
def test_tutorial_layers_trained_layerwise_equal_the_hand_loop(digits, activation):
    x, y = digits
    x_pos, x_neg = pairs(x, y)
    if activation == "relu":
        net, kwargs = float_net([64, 40, 30], nn.ReLU), {}
    else:
        net, kwargs = lif_net([64, 40, 30]), {"time_steps": 1, "over_time": "rate"}
    ws = weights_of(net)
    trainer = ForwardForwardTrainer(net, num_classes=10, **kwargs)
    history = trainer.train_layerwise(x_pos, x_neg, steps=25)
    expected = tutorial_train(ws, x_pos, x_neg, 25, activation)
    torch.testing.assert_close(history, expected, rtol=1e-6, atol=1e-7)
    assert history[:, -1].lt(history[:, 0]).all()  # it learns
    for got, want in zip(weights_of(net), ws):
        torch.testing.assert_close(got, want.detach(), rtol=1e-10, atol=1e-12)
    assert torch.equal(trainer.predict(x), tutorial_predict(ws, x, activation))


class ATanSpike(torch.autograd.Function):
    """Θ(v) with snnTorch's ``atan()`` gradient ``(α/2) / (1 + (π α v / 2)²)``, α = 2."""

    @staticmethod
    def forward(ctx, v):
        ctx.save_for_backward(v)
        return (v > 0).to(v.dtype)

    @staticmethod
    def backward(ctx, grad):
        (v,) = ctx.saved_tensors
        return grad / (1 + (torch.pi * v) ** 2)


def leaky_loop(z_seq):
    """snn.Leaky's equations over T in float64: U[t] = 0.8 U[t-1] + Z[t] − R[t],
    R[t] = Θ(U[t-1] − 1) detached (delayed subtract reset), S[t] = Θ(U[t] − 1)."""
    mem, spikes = torch.zeros_like(z_seq[0]), []
    for z in z_seq:
        reset = (mem > 1.0).to(DT)
        mem = 0.8 * mem + z - reset
        spikes.append(ATanSpike.apply(mem - 1.0))
    return torch.stack(spikes)


def spiking_reference_step(ws, opts, x_pos, x_neg, steps, theta):
    """Hinton's schedule with LIF layers over T: every layer updated once per step on the
    previous layer's spikes (each step's vector scaled to unit length, detached) from
    before the update; goodness the mean squared spike count."""
    history = []
    for _ in range(steps):
        losses, total = [], 0
        for opt in opts:
            opt.zero_grad()
        h_pos, h_neg = x_pos, x_neg
        for w in ws:
            outs = [
                leaky_loop((h / (torch.norm(h, dim=2, keepdim=True) + 1e-4)) @ w.T)
                for h in (h_pos, h_neg)
            ]
            g_pos, g_neg = (o.sum(0).pow(2).mean(1) for o in outs)
            loss = F.softplus(torch.cat([theta - g_pos, g_neg - theta])).mean()
            losses.append(loss.item())
            total = total + loss
            h_pos, h_neg = outs[0].detach(), outs[1].detach()
        total.backward()
        for opt in opts:
            opt.step()
        history.append(losses)
    return torch.tensor(history, dtype=torch.float32).T


def test_hand_written_leaky_loop_is_snntorchs_leaky():
    z = torch.randn(8, 5, 7, dtype=DT) * 2
    lif = snn.Leaky(beta=torch.tensor(0.8, dtype=DT))
    mem, spikes = lif.init_leaky(), []
    for t in range(8):
        spk, mem = lif(z[t], mem)
        spikes.append(spk.to(DT))
    assert torch.equal(leaky_loop(z), torch.stack(spikes)) and leaky_loop(z).sum() > 0


def test_spiking_layers_over_time_step_equal_snntorch_leaky_loop(digits):
    x, y = digits
    x_pos, x_neg = pairs(x, y)
    T = 6
    net = lif_net([64, 40, 30], membrane=False, scale=6.0)
    ws = [w.requires_grad_(True) for w in weights_of(net)]
    opts = [torch.optim.Adam([w], lr=0.01) for w in ws]
    trainer = ForwardForwardTrainer(
        net, num_classes=10, theta=2.0, time_steps=T,
        optimizer=lambda p: torch.optim.Adam(p, lr=0.01),
    )  # fmt: skip
    with torch.no_grad():
        counts = trainer.activities(x_pos)[1].sum(0)
    assert 0 < counts.mean() < T  # the second layer fires, not saturated
    rep = lambda v: v.unsqueeze(0).expand(T, *v.shape)  # noqa: E731
    expected = spiking_reference_step(ws, opts, rep(x_pos), rep(x_neg), 12, 2.0)
    history = torch.stack([trainer.step(x_pos, x_neg) for _ in range(12)], 1).float()
    torch.testing.assert_close(history, expected, rtol=1e-6, atol=1e-7)
    for got, want in zip(weights_of(net), ws):
        torch.testing.assert_close(got, want.detach(), rtol=1e-10, atol=1e-12)
    assert not torch.equal(ws[0], weights_of(lif_net([64, 40, 30], scale=6.0))[0])


def test_no_gradient_crosses_layers(digits):
    """After one step each layer's gradient is that of its own loss alone (fails if the
    trainer fed a layer the previous output without detaching it)."""
    x, y = digits
    x_pos, x_neg = pairs(x, y)
    net = float_net([64, 40, 30], nn.ReLU)
    trainer = ForwardForwardTrainer(
        net, num_classes=10, optimizer=lambda p: torch.optim.SGD(p, lr=0.0)
    )
    own = [
        torch.autograd.grad(loss, layer[0].weight)[0]
        for loss, layer in zip(trainer.layer_losses(x_pos, x_neg), net)
    ]
    trainer.step(x_pos, x_neg)
    for layer, grad in zip(net, own):
        torch.testing.assert_close(layer[0].weight.grad, grad, rtol=1e-12, atol=1e-14)
    assert own[1].abs().sum() > 0


def test_loss_and_goodness_formulas_and_gradcheck():
    a = torch.tensor([[[1.0, 0.0], [1.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]]], dtype=DT)  # [2,2,2]
    torch.testing.assert_close(goodness(a, "mean", "count"), torch.tensor([2.0, 2.5], dtype=DT))
    torch.testing.assert_close(goodness(a, "sum", "rate"), torch.tensor([1.0, 1.25], dtype=DT))
    loss = forward_forward_loss(torch.tensor([6.0]), torch.tensor([1.0]), 5.0)
    want = (
        torch.log1p(torch.exp(torch.tensor(-1.0))) + torch.log1p(torch.exp(torch.tensor(-4.0)))
    ) / 2
    torch.testing.assert_close(loss, want)
    y = torch.randn(4, 7, dtype=DT, requires_grad=True)
    y2 = torch.randn(4, 7, dtype=DT, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda p, n: forward_forward_loss(goodness(p), goodness(n, "sum"), 2.0), (y, y2)
    )


def test_overlay_and_negative_labels():
    x = torch.rand(5, 12) + 0.1
    y = torch.tensor([0, 3, 9, 3, 1])
    out = overlay_labels(x, y, 10)
    assert torch.equal(out[:, 10:], x[:, 10:])
    assert torch.equal(out[:, :10], F.one_hot(y, 10).float() * x.max())
    assert torch.equal(overlay_labels(x, y, 10, value=2.0)[:, :10], 2.0 * F.one_hot(y, 10).float())
    labels = torch.arange(10).repeat(200)
    wrong = negative_labels(labels, 10, "wrong", torch.Generator().manual_seed(1))
    assert (wrong != labels).all() and (wrong >= 0).all() and (wrong < 10).all()
    assert len(set(zip(labels.tolist(), wrong.tolist()))) == 90  # every wrong label drawn
    again = negative_labels(labels, 10, "wrong", torch.Generator().manual_seed(1))
    assert torch.equal(wrong, again)
    perm = negative_labels(labels, 10, "permute", torch.Generator().manual_seed(1))
    assert torch.equal(perm.sort().values, labels.sort().values) and not torch.equal(perm, labels)


def test_clear_errors(digits):
    x, y = digits
    net = float_net([64, 20], nn.ReLU)
    with pytest.raises(ConfigurationError, match=r"sequence of layers.*Linear"):
        ForwardForwardTrainer(nn.Linear(64, 20), num_classes=10)
    with pytest.raises(ConfigurationError, match=r"layers\[1\].*no trainable"):
        ForwardForwardTrainer([net[0], nn.ReLU()], num_classes=10)
    with pytest.raises(ConfigurationError, match=r"labels must lie in \[0, 9\].*\[12, 12\]"):
        overlay_labels(x, torch.full((32,), 12), 10)
    with pytest.raises(
        DTypeError, match=r"labels: integer class indices; got dtype torch\.float64"
    ):
        overlay_labels(x, y.double(), 10)
    with pytest.raises(DTypeError, match="labels: a tensor of integer class indices; got list"):
        overlay_labels(x, y.tolist(), 10)
    with pytest.raises(ShapeError, match=r"\(32, 10\) \(one-hot labels\? pass labels.argmax"):
        negative_labels(F.one_hot(y, 10), 10)
    with pytest.raises(
        ShapeError, match=r"labels: integer class labels must have shape \[B\] = \[32\]"
    ):
        overlay_labels(x, y[:5], 10)
    trainer = ForwardForwardTrainer(net, num_classes=10)
    with pytest.raises(ShapeError, match=r"\[B, F\] for float layers"):
        trainer.goodness(x.unsqueeze(0))
    spiking = ForwardForwardTrainer(lif_net([64, 20], membrane=False), num_classes=10, time_steps=4)
    with pytest.raises(ShapeError, match="3 time steps, the trainer's time_steps is 4"):
        spiking.goodness(x.unsqueeze(0).expand(3, -1, -1))
    with pytest.raises(ConfigurationError, match="negative must be 'wrong' or 'permute'; got 'x'"):
        ForwardForwardTrainer(net, num_classes=10, negative="x")
    with pytest.raises(ConfigurationError, match="skip_layers"):
        trainer.predict(x, skip_layers=1)
    flat = ForwardForwardTrainer([nn.Sequential(nn.Linear(64, 5), nn.Flatten(0))], num_classes=10)
    with pytest.raises(ShapeError, match=r"layers\[0\] maps \(32, 64\) to \(160,\)"):
        flat.goodness(x.float())


def test_every_call_starts_from_rest_even_when_streaming(digits):
    """Inside ``functional.streaming`` neurons carry their state across calls; the
    trainer resets each layer before running it, so goodness does not depend on the
    previous batch."""
    from spikeflow.functional import streaming

    x, y = digits
    net = lif_net([64, 20], membrane=False, scale=6.0)
    trainer = ForwardForwardTrainer(net, num_classes=10, time_steps=3)
    first = trainer.goodness(overlay_labels(x, y, 10))
    with streaming(net):
        trainer.goodness(overlay_labels(x, y, 10))
        again = trainer.goodness(overlay_labels(x, y, 10))
    assert first.sum() > 0 and torch.equal(first, again)


# -- the example, on real data -------------------------------------------------------
def test_the_example_learns_the_digits_by_forward_forward_and_backprop(capsys):
    pytest.importorskip("sklearn", reason="scikit-learn (the 'examples' extra) is needed")
    from conftest import load_example

    module = load_example("forward_forward_digits")
    results = module.main(["--layers", "lif", "--epochs", "2", "--hidden", "100", "100",
                           "--T", "4"])  # fmt: skip
    assert results["lif"]["ff"]["test"] > 0.6, results  # chance: 10%
    assert results["lif"]["backprop"]["test"] > 0.6, results
    out = capsys.readouterr().out
    assert out.startswith("digits: 1437 train / 360 test, schedule epochs")
    assert f"lif: ff train {results['lif']['ff']['train']:.2%}" in out


def test_the_example_runs_the_tutorials_schedule_on_one_batch():
    pytest.importorskip("sklearn", reason="scikit-learn (the 'examples' extra) is needed")
    from conftest import load_example

    module = load_example("forward_forward_digits")
    result = module.main(["--schedule", "tutorial", "--layers", "lif1", "--iterations", "300",
                          "--hidden", "100", "100"])["lif1"]["ff"]  # fmt: skip
    assert result["train"] > 0.25, result  # the 128 images it trained on (40.6%); chance: 10%
    assert result["final_losses"][0] < 0.69, result  # below log 2: it separates pos/neg


def test_the_example_learns_the_real_nmnist_subset_with_spiking_layers():
    from conftest import load_example, require_shared_data

    root = require_shared_data("nmnist-small")
    module = load_example("forward_forward_digits")
    results = module.main(["--dataset", "nmnist", "--nmnist-root", str(root), "--layers",
                           "lif", "--epochs", "3", "--hidden", "200", "200",
                           "--no-backprop"])  # fmt: skip
    assert set(results["lif"]) == {"ff"}
    assert results["lif"]["ff"]["test"] > 0.25, results  # 43% here; 100 recordings; chance 10%


def test_a_multi_step_neuron_without_time_steps_is_refused(digits):
    """With ``time_steps=None`` a layer gets ``[B, F]``; a multi-step neuron would read
    B as time, each sample starting from the previous one's membrane (sample 3's
    goodness then depended on samples 0-2). Refused by name; with ``time_steps=1`` each
    sample's goodness is its own."""
    x, y = digits
    net = lif_net([64, 20], membrane=False, scale=6.0)
    with pytest.raises(ConfigurationError, match=r"layers\[0\]\.1 \(LeakyNode\).*time_steps=T"):
        ForwardForwardTrainer(net, num_classes=10)
    membrane = lif_net([64, 20, 10])
    with pytest.raises(ConfigurationError, match=r"layers\[1\]\.1\.neuron \(LeakyNode\)"):
        ForwardForwardTrainer([nn.Sequential(nn.Linear(64, 20), nn.ReLU()), membrane[1]],
                              num_classes=10)  # fmt: skip
    trainer = ForwardForwardTrainer(net, num_classes=10, time_steps=1)
    x_pos = overlay_labels(x, y, 10)
    batched = trainer.goodness(x_pos)
    alone = torch.cat([trainer.goodness(x_pos[i : i + 1]) for i in range(len(y))], 1)
    assert batched.sum() > 0 and torch.equal(batched, alone)


def test_an_empty_batch_and_bad_numbers_are_refused_by_name(digits):
    x, y = digits
    net = float_net([64, 20], nn.ReLU)
    trainer = ForwardForwardTrainer(net, num_classes=10)
    with pytest.raises(ShapeError, match=r"x: at least one sample.*\(0, 64\)"):
        trainer.predict(x[:0])
    with pytest.raises(ShapeError, match=r"x: at least one sample.*\(0, 64\)"):
        trainer.make_pairs(x[:0], y[:0])
    with pytest.raises(ConfigurationError, match="theta: a finite goodness threshold; got nan"):
        ForwardForwardTrainer(net, num_classes=10, theta=float("nan"))
    with pytest.raises(ConfigurationError, match=r"eps must be > 0.*got -0\.1"):
        ForwardForwardTrainer(net, num_classes=10, eps=-0.1)


def test_a_silent_layer_is_named_in_a_warning_and_does_not_learn(digits):
    """A layer whose output is zero on both batches has no gradient (dG/da = 2a): the
    update leaves it as it was. ``step`` warns once, naming the layer, after 10 silent
    updates in a row (a layer may start firing as the earlier ones learn: N-MNIST's
    second layer is silent on the first batch only); ``train_layerwise``, which repeats
    one batch, at the first. A layer that fires raises no warning."""
    import warnings

    x, y = digits
    x_pos, x_neg = pairs(x, y)
    net = lif_net([64, 40, 30], membrane=False, scale=6.0)
    with torch.no_grad():
        net[1][0].weight.mul_(0.01)  # the second layer stays below threshold
    before = weights_of(net)
    trainer = ForwardForwardTrainer(net, num_classes=10, theta=2.0, time_steps=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(9):
            trainer.step(x_pos, x_neg)
    with pytest.warns(UserWarning, match=r"layers\[1\] \(Sequential\) output only zeros") as got:
        for _ in range(3):
            trainer.step(x_pos, x_neg)
    assert len(got) == 1 and "(10 update(s) in a row)" in str(got[0].message)  # once
    after = weights_of(net)
    assert not torch.equal(after[0], before[0]) and torch.equal(after[1], before[1])
    layerwise = ForwardForwardTrainer(lif_net([64, 40], membrane=False, scale=0.01),
                                      num_classes=10, time_steps=4)  # fmt: skip
    with pytest.warns(UserWarning, match=r"layers\[0\].*never fires never learns"):
        layerwise.train_layerwise(x_pos, x_neg, steps=2)
    firing = ForwardForwardTrainer(lif_net([64, 40], membrane=False, scale=6.0),
                                   num_classes=10, time_steps=4)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        firing.step(x_pos, x_neg)
        firing.train_layerwise(x_pos, x_neg, steps=2)
        zeros = torch.zeros_like(x_pos)  # silences every layer (no bias)
        for batch in [zeros] * 9 + [x_pos] + [zeros] * 9:  # a firing update restarts the count
            firing.layer_losses(batch, batch)
    with pytest.warns(UserWarning, match=r"layers\[0\].*\(10 update\(s\) in a row\)"):
        firing.layer_losses(zeros, zeros)


def test_label_goodness_skips_the_first_layers_as_asked(digits):
    """``skip_layers=1`` (Hinton's supervised MNIST run) sums the goodness of the later
    layers only, against the tutorial's equations written out; 0 sums all of them."""
    x, y = digits
    net = float_net([64, 40, 30, 20], nn.ReLU)
    trainer = ForwardForwardTrainer(net, num_classes=10)
    trainer.train_layerwise(*pairs(x, y), steps=5)
    ws = weights_of(net)
    per_layer = []
    for label in range(10):
        h, goods = overlay_labels(x, label, 10), []
        for w in ws:
            h = tutorial_forward(w, h, "relu")
            goods.append(h.pow(2).mean(1))
        per_layer.append(torch.stack(goods))
    per_layer = torch.stack(per_layer, -1)  # [layers, B, K]
    for skip in range(3):
        got = trainer.label_goodness(x, skip_layers=skip)
        torch.testing.assert_close(got, per_layer[skip:].sum(0), rtol=1e-12, atol=1e-12)
        assert torch.equal(trainer.predict(x, skip_layers=skip), got.argmax(1))
    assert not torch.equal(trainer.predict(x, 1), trainer.predict(x, 2))


def test_the_tutorials_one_step_lif_layer_is_linear(digits):
    """From rest, one step of snn.Leaky's membrane is its input current, also where it
    crosses the threshold (the reset comes a step later): the tutorial's "LIF" layer is
    ``x̂ Wᵀ``, a linear layer (docs/training_methods.md)."""
    x, y = digits
    net = lif_net([64, 40, 30], scale=20.0)
    trainer = ForwardForwardTrainer(net, num_classes=10, time_steps=1)
    x_pos = overlay_labels(x, y, 10)
    first, second = trainer.activities(x_pos)
    w0, w1 = weights_of(net)
    linear0 = normalize_direction(x_pos) @ w0.T
    assert linear0.max() > 2.0  # well over the threshold 1
    torch.testing.assert_close(first[0], linear0, rtol=0, atol=0)
    torch.testing.assert_close(second[0], normalize_direction(linear0) @ w1.T, rtol=0, atol=0)
    lif = snn.Leaky(beta=torch.tensor(0.8, dtype=DT))
    torch.testing.assert_close(lif(linear0, lif.init_leaky())[1], linear0, rtol=0, atol=0)
