"""DECOLLE (spikeflow.learn.decolle): each layer's gradient against autograd on a
hand-written loop of the paper's equations with that layer's readout loss alone, float64."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.learn import DECOLLE, DECOLLELayer, DECOLLENetwork, decolle_loss
from spikeflow.learn.decolle import decolle_u_regularisation, predict

ALPHA, BETA, ALPHARP, WRP = 0.8, 0.7, 0.6, 0.9


def _network(seed: int = 0, normalize: bool = True, scale: float = 6.0) -> DECOLLENetwork:
    torch.manual_seed(seed)
    kw = dict(alpha=ALPHA, beta=BETA, alpharp=ALPHARP, wrp=WRP, normalize=normalize)
    layers = [
        DECOLLELayer(nn.Conv2d(2, 3, 3, padding=1).double(), pool=2, **kw),
        DECOLLELayer(nn.Linear(3 * 3 * 3, 5).double(), **kw),
    ]
    with torch.no_grad():  # large enough weights for the neurons to spike often
        for layer in layers:
            layer.synapse.weight.mul_(scale)
            layer.synapse.bias.add_(0.1)
    return DECOLLENetwork(layers, (2, 6, 6), 4, readout_scale=1.5)


def _input(steps: int = 6, batch: int = 3, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand((steps, batch, 2, 6, 6), generator=g) < 0.4).double()


def _spike(u: torch.Tensor) -> torch.Tensor:
    # H(u) with the box derivative 1[|u| < 1/2], written out (not spikeflow's Rect).
    box = (u.abs() < 0.5).double()
    return (u >= 0).double() + box * (u - u.detach())


def _hand_layer(x, weight, bias, conv: bool, pool: int, gains):
    """One layer by the paper's equations, state detached between steps: (S, U) per step."""
    gq, gp = gains
    q = p = r = s_prev = None
    out = []
    for x_t in x:
        x_t = x_t if conv else x_t.flatten(1)
        if q is None:
            q, p = torch.zeros_like(x_t), torch.zeros_like(x_t)
        q_new = BETA * q + gq * x_t
        p = ALPHA * p + gp * q
        q = q_new
        u_full = F.conv2d(p, weight, bias, padding=1) if conv else F.linear(p, weight, bias)
        if r is None:
            r, s_prev = torch.zeros_like(u_full), torch.zeros_like(u_full)
        r = ALPHARP * r + WRP * s_prev
        u_full = u_full - r
        s_prev = (u_full >= 0).double().detach()
        u = F.max_pool2d(u_full, pool) if pool > 1 else u_full
        out.append(_spike(u))
    return out


def _hand_grads(net: DECOLLENetwork, x, label, burnin: int, loss: str, gains):
    """Per layer: autograd of that layer's own readout loss, its input detached."""
    grads, inputs = [], list(x)
    for index, (layer, readout) in enumerate(zip(net.layers, net.readouts)):
        w = layer.synapse.weight.detach().clone().requires_grad_(True)
        b = layer.synapse.bias.detach().clone().requires_grad_(True)
        conv = index == 0
        spikes = _hand_layer([i.detach() for i in inputs], w, b, conv, layer.pool, gains)
        target = F.one_hot(label, 4).double()
        total = 0.0
        for s in spikes[burnin:]:
            y = F.linear(s.flatten(1), readout.weight, readout.bias)
            if loss == "smooth_l1":
                d = (y - target).abs()
                total = total + torch.where(d < 1, 0.5 * d**2, d - 0.5).mean()
            else:
                total = total + ((y - target) ** 2).mean()
        grads.append(torch.autograd.grad(total, [w, b]))
        inputs = [s.detach() for s in spikes]
    return grads, inputs


@pytest.mark.parametrize(
    ("seed", "loss", "normalize", "burnin"),
    [(0, "smooth_l1", True, 2), (1, "mse", True, 0), (2, "smooth_l1", False, 1)],
)
def test_each_layer_gradient_is_its_own_readout_loss(seed, loss, normalize, burnin):
    net = _network(seed, normalize, scale=6.0 if normalize else 0.02)
    x, label = _input(seed=seed), torch.tensor([0, 3, 1])
    gains = (1 - BETA, 1 - ALPHA) if normalize else (1 / (1 - BETA), 1 / (1 - ALPHA))
    expected, spikes = _hand_grads(net, x, label, burnin, loss, gains)
    rates = [torch.stack(spikes).mean().item()]
    assert 0.05 < rates[0] < 0.95, rates  # the spikes are neither silent nor saturated
    result = DECOLLE(net, loss=loss, burnin=burnin).run(x, label)
    assert result.y.shape == (6 - burnin, 2, 3, 4)
    for layer, (gw, gb) in zip(net.layers, expected):
        assert gw.abs().sum() > 0
        torch.testing.assert_close(layer.synapse.weight.grad, gw, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(layer.synapse.bias.grad, gb, rtol=1e-12, atol=1e-12)
    for readout in net.readouts:
        assert readout.weight.grad is None and not readout.weight.requires_grad
    # the local graph of forward() gives the same gradients as the rule
    grads = [layer.synapse.weight.grad.clone() for layer in net.layers]
    net.zero_grad()
    out = net(x)[burnin:]
    sum(decolle_loss(y_t, label, loss) for y_t in out).backward()
    for layer, g in zip(net.layers, grads):
        torch.testing.assert_close(layer.synapse.weight.grad, g, rtol=1e-12, atol=1e-12)


def test_no_gradient_crosses_layers():
    net = _network()
    with torch.no_grad():  # the first layer's readout sees nothing: its loss is constant
        net.readouts[0].weight.zero_()
    x, label = _input(), torch.tensor([0, 3, 1])
    DECOLLE(net).run(x, label)
    assert torch.count_nonzero(net.layers[0].synapse.weight.grad) == 0
    assert torch.count_nonzero(net.layers[1].synapse.weight.grad) > 0
    # BPTT of the same network: the second layer's loss reaches the first layer
    net.zero_grad()
    sum(decolle_loss(y_t, label) for y_t in net(x, local=False)).backward()
    assert torch.count_nonzero(net.layers[0].synapse.weight.grad) > 0


class _CountingSGD(torch.optim.SGD):
    def __init__(self, params, lr):
        super().__init__(params, lr=lr)
        self.steps = 0

    def step(self, closure=None):
        self.steps += 1
        return super().step(closure)


def test_schedules_and_fixed_readouts():
    x, label = _input(steps=5), torch.tensor([0, 3, 1])
    net = _network()
    readouts = [r.weight.clone() for r in net.readouts]
    opt = _CountingSGD([p for p in net.parameters() if p.requires_grad], lr=0.1)
    DECOLLE(net, burnin=1).run(x, label, opt)
    assert opt.steps == 4  # one per step after the burn-in
    for r, w in zip(net.readouts, readouts):
        assert torch.equal(r.weight, w)
    # sequence: one step with the accumulated gradients of the run without optimizer
    a, b = _network(), _network()
    DECOLLE(a, burnin=1).run(x, label)
    before = b.layers[1].synapse.weight.detach().clone()
    opt = _CountingSGD([p for p in b.parameters() if p.requires_grad], lr=0.1)
    DECOLLE(b, burnin=1, update="sequence").run(x, label, opt)
    assert opt.steps == 1
    expected = before - 0.1 * a.layers[1].synapse.weight.grad
    torch.testing.assert_close(b.layers[1].synapse.weight, expected, rtol=1e-12, atol=1e-12)
    # trainable readouts learn
    torch.manual_seed(0)
    layer = DECOLLELayer(nn.Linear(72, 6).double())
    net = DECOLLENetwork([layer], (2, 6, 6), 4, train_readouts=True)
    w = net.readouts[0].weight.detach().clone()
    DECOLLE(net).run(x, label, torch.optim.SGD(net.parameters(), lr=0.1))
    assert not torch.equal(net.readouts[0].weight, w)


def test_loss_and_prediction_by_hand():
    y = torch.tensor([[[0.5, 3.0]], [[0.0, 1.0]]])  # [L=2, B=1, K=2], label 1
    label = torch.tensor([1])
    # layer 0: d = (0.5, 2): 0.125 and 1.5, mean 0.8125; layer 1: d = (0, 0)
    assert decolle_loss(y, label).item() == pytest.approx(0.8125)
    assert decolle_loss(y, label, "mse").item() == pytest.approx((0.25 + 4.0) / 2)
    out = torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]]], [[[1.0, 0.0]], [[0.0, 0.5]]]])
    assert predict(out).tolist() == [1]


def test_readout_init_and_layer_init():
    torch.manual_seed(0)
    net = DECOLLENetwork([DECOLLELayer(nn.Linear(8, 400))], (8,), 3, readout_scale=0.5)
    bound = 0.5 / 400**0.5
    assert net.readouts[0].weight.abs().max() <= bound
    assert net.readouts[0].weight.abs().max() > 0.9 * bound
    layer = DECOLLELayer(nn.Linear(100, 400), normalize=False, alpha=0.9, beta=0.5)
    # gains 1/(1-β) = 2, 1/(1-α) = 10: U's scale is 2·10/(0.5·0.1) = 400 times the
    # normalised one's, so W is drawn in ±1/(sqrt(100)·400)
    bound = 1.0 / (10.0 * 400.0)
    assert layer.synapse.weight.abs().max() <= bound
    assert layer.synapse.weight.abs().max() > 0.9 * bound


def test_errors_name_the_problem():
    with pytest.raises(ConfigurationError, match="synapse"):
        DECOLLELayer(nn.ReLU())
    with pytest.raises(ConfigurationError, match="pool"):
        DECOLLELayer(nn.Linear(2, 2), pool=2)
    with pytest.raises(ConfigurationError, match="alpha"):
        DECOLLELayer(nn.Linear(2, 2), alpha=1.0)
    with pytest.raises(ConfigurationError, match="surrogate"):
        DECOLLELayer(nn.Linear(2, 2), surrogate_function=nn.Sigmoid())
    with pytest.raises(ShapeError, match="input_shape"):
        DECOLLENetwork([DECOLLELayer(nn.Linear(8, 4))], (9,), 3)
    with pytest.raises(ConfigurationError, match="layers"):
        DECOLLENetwork([], (8,), 3)
    net = _network()
    with pytest.raises(ConfigurationError, match="loss"):
        DECOLLE(net, loss="ce")
    with pytest.raises(ConfigurationError, match="update"):
        DECOLLE(net, update="epoch")
    with pytest.raises(ConfigurationError, match="burn-in"):
        DECOLLE(net, burnin=6).run(_input(), torch.tensor([0, 1, 2]))
    with pytest.raises(ShapeError, match=r"\[B, 2, 6, 6\]"):
        net.step(torch.zeros(3, 2, 5, 5, dtype=torch.float64))
    with pytest.raises(DTypeError, match="dtype"):
        net.step(torch.zeros(3, 2, 6, 6))
    with pytest.raises(ShapeError, match="T = 6"):
        DECOLLE(net).run(_input(), torch.zeros(5, 3, dtype=torch.long))
    with pytest.raises(ConfigurationError):
        DECOLLE(net).run(_input(), torch.tensor([0, 1, 7]))


def test_the_nmnist_example_network_learns_a_batch():
    """examples/decolle_nmnist.py's network (docs/learning.md): the shapes of its
    layers fit 2 x 17 x 17 frames and one DECOLLE run on a batch lowers its loss."""
    from conftest import load_example

    module = load_example("decolle_nmnist")
    net = module.build(0, (2, 17, 17))
    assert [r.in_features for r in net.readouts] == [16 * 8 * 8, 32 * 4 * 4, 128]
    g = torch.Generator().manual_seed(0)
    x = (torch.rand((6, 4, 2, 17, 17), generator=g) < 0.2).float()
    label = torch.tensor([0, 1, 2, 3])
    rule = DECOLLE(net, burnin=3)
    optimizer = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-2)
    first = rule.run(x, label, optimizer).loss
    for _ in range(2):
        last = rule.run(x, label, optimizer).loss
    assert last < first


def test_membrane_regularisation_by_hand():
    """The reference code's terms, λ (mean(relu(U + 0.01)) + 3e-3 relu(mean(0.1 − σ(U)))),
    on hand-computed values: layer 0's membranes are active (its silence term is 0),
    layer 1's are silent (its activity term is 0)."""
    u0 = torch.tensor([[-0.5, 0.2], [0.0, -0.02]], dtype=torch.float64)
    u1 = torch.full((2, 1, 2, 2), -5.0, dtype=torch.float64)
    activity0 = (0.0 + 0.21 + 0.01 + 0.0) / 4  # mean σ(u0) = 0.48 > 0.1: no silence term
    silence1 = 0.1 - 1 / (1 + math.exp(5.0))
    expected = 2.0 * activity0 + 0.5 * 3e-3 * silence1
    value = decolle_u_regularisation([u0, u1], [2.0, 0.5])
    assert float(value) == pytest.approx(expected, rel=1e-12)
    assert float(decolle_u_regularisation([u0, u1], [0.0, 0.0])) == 0.0
    with pytest.raises(ConfigurationError, match="2 strengths for 1 layers"):
        decolle_u_regularisation([u0], [1.0, 1.0])
    with pytest.raises(ConfigurationError, match="strength"):
        decolle_u_regularisation([u0], [-1.0])


@pytest.mark.parametrize("bias", [0.3, -4.0])
def test_membrane_regularisation_gradient_against_a_hand_loop(bias):
    """DECOLLE.run with ``reg_u=λ`` gives a Linear layer the gradient of its readout loss
    plus λ times the regulariser of its own U (state detached between steps), summed
    over the learning steps: autograd on a hand-written loop (float64). Bias 0.3: the
    activity term acts; -4: the silence term."""
    torch.manual_seed(3)
    layer = DECOLLELayer(nn.Linear(6, 5).double(), alpha=ALPHA, beta=BETA, alpharp=ALPHARP,
                         wrp=WRP)  # fmt: skip
    with torch.no_grad():
        layer.synapse.weight.mul_(4.0)
        layer.synapse.bias.fill_(bias)
    net = DECOLLENetwork([layer], (6,), 4, readout_scale=1.5)
    g = torch.Generator().manual_seed(4)
    x = (torch.rand((6, 3, 6), generator=g) < 0.5).double()
    label, lam, burnin = torch.tensor([0, 3, 1]), 0.7, 1
    DECOLLE(net, burnin=burnin, reg_u=lam).run(x, label)

    w = layer.synapse.weight.detach().clone().requires_grad_(True)
    b = layer.synapse.bias.detach().clone().requires_grad_(True)
    readout = net.readouts[0]
    q = p = torch.zeros(3, 6, dtype=torch.float64)
    r = s_prev = torch.zeros(3, 5, dtype=torch.float64)
    total, silent = 0.0, 0
    for t, x_t in enumerate(x):
        q, p = BETA * q + (1 - BETA) * x_t, ALPHA * p + (1 - ALPHA) * q
        r = ALPHARP * r + WRP * s_prev
        u = F.linear(p, w, b) - r
        s_prev = (u >= 0).double().detach()
        if t < burnin:
            continue
        y = F.linear(_spike(u), readout.weight, readout.bias)
        d = (y - F.one_hot(label, 4).double()).abs()
        silence = 0.1 - torch.sigmoid(u).mean()
        silent += int(silence > 0)
        reg = F.relu(u + 0.01).mean() + 3e-3 * F.relu(silence)
        total = total + torch.where(d < 1, 0.5 * d**2, d - 0.5).mean() + lam * reg
    assert (silent > 0) == (bias < 0)
    gw, gb = torch.autograd.grad(total, [w, b])
    torch.testing.assert_close(layer.synapse.weight.grad, gw, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(layer.synapse.bias.grad, gb, rtol=1e-12, atol=1e-12)
    net.zero_grad()
    DECOLLE(net, burnin=burnin).run(x, label)  # without it: another gradient
    assert not torch.allclose(layer.synapse.bias.grad, gb)
    with pytest.raises(ConfigurationError, match=r"one strength or one per layer \(1\)"):
        DECOLLE(net, reg_u=[1.0, 1.0])
