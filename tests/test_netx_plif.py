"""PLIF layers to Lava-DL netx: a trained PLIF layer is a LIF layer whose decay is
Loihi's 12-bit ``vDecay = round(4096 sigmoid(w))``; with ``decay_input=True`` its
``1/tau`` is folded into the synapse before. Checked against the file's numbers
computed here from ``w`` and the weights, against the float PLIF network on the weight
grid (exact at tau = 2 with strict firing), and the refusals of what netx cannot hold."""

from __future__ import annotations

import copy

import h5py
import pytest
import torch
from torch import nn

from spikeflow import layers, neurons
from spikeflow.errors import ConfigurationError
from spikeflow.functional import reset_net
from spikeflow.interop import export_netx, import_netx, lava_dl_weights
from spikeflow.interop.export_run import netx_problems, on_netx_grid
from spikeflow.quant import LoihiCubaLIFNode


def _plif(tau: float, decay_input: bool = True, **kwargs) -> neurons.ParametricLIFNode:
    return neurons.ParametricLIFNode(
        init_tau=tau, decay_input=decay_input, v_threshold=0.5, strict_firing=True, **kwargs
    )


def _net(taus: tuple[float, float, float]) -> nn.Sequential:
    """conv(bias)-PLIF-flatten-linear(bias)-PLIF(decay_input=False)-linear-PLIF, float64,
    weights scaled so that every layer fires on sparse input spikes."""
    torch.manual_seed(0)
    net = nn.Sequential(
        layers.Conv2d(2, 8, 3, padding=1), _plif(taus[0]),
        layers.Flatten(), layers.Linear(8 * 8 * 8, 30), _plif(taus[1], decay_input=False),
        layers.Linear(30, 10, bias=False), _plif(taus[2]),
    ).double()  # fmt: skip
    with torch.no_grad():
        for index, gain in ((0, 4.0), (3, 2.0), (5, 3.0)):
            net[index].weight.mul_(gain)
    return net


def _run(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    reset_net(model)
    with torch.no_grad():
        return model(x)


def _spikes(steps: int = 30) -> torch.Tensor:
    torch.manual_seed(1)
    return (torch.rand(steps, 16, 2, 8, 8) < 0.3).double()


def test_plif_layers_are_written_with_their_12_bit_decay_and_folded_input(tmp_path):
    net = _net((2.7, 3.3, 1.6))
    path = export_netx(net, tmp_path / "plif.net", (2, 8, 8))
    decays = [round(4096 * float(torch.sigmoid(net[i].w.detach()))) for i in (1, 4, 6)]
    assert decays == [1517, 1241, 2560]
    with h5py.File(path, "r") as f:
        # layer/0 is the input, layer/2 the flatten
        for layer, synapse, decay, folded in ((1, 0, decays[0], True), (3, 3, decays[1], False),
                                              (4, 5, decays[2], True)):  # fmt: skip
            group = f[f"layer/{layer}"]
            assert int(group["neuron/vDecay"][()]) == decay
            assert int(group["neuron/iDecay"][()]) == 4096  # the voltage adds the input
            w = net[synapse + 1].w.detach()  # decay_input: input / tau, the trained tau
            factor = float(torch.sigmoid(w)) if folded else 1.0
            weight = net[synapse].weight.detach() * factor
            assert torch.equal(
                torch.from_numpy(group["weight"][()]).long(), lava_dl_weights(weight)
            )
            if net[synapse].bias is not None:
                bias = torch.round(net[synapse].bias.detach() * factor * 64)
                assert torch.equal(torch.from_numpy(group["bias"][()]).double(), bias)
    fixed = import_netx(path)
    assert [m.v_decay for m in fixed if isinstance(m, LoihiCubaLIFNode)] == decays
    # the fixed-point network against the float PLIF network on the file's grid (Loihi
    # rounds the decayed voltage towards zero: a few spikes differ) and the float one
    x = _spikes()
    got = fixed(x.long()).double()
    grid, float_out = _run(on_netx_grid(net), x), _run(net, x)
    assert got.mean() > 0.03
    assert (got == grid).double().mean() > 0.99
    assert (got == float_out).double().mean() > 0.9


def test_at_tau_2_the_file_gives_the_float_plif_spikes_on_the_grid_exactly(tmp_path):
    """At tau = 2 Loihi's halving is exact for 6 steps (the voltage starts a multiple of
    2^6 in its units, each step's input too, and each halving drops one factor 2; the
    digits run 4); the reference is the float
    PLIF network itself, with its weights w and biases b set to 2 q(w/2) and
    2 round(64 b / 2) / 64 (q: Lava-DL's grid), so that it adds what the file adds."""
    net = _net((2.0, 2.0, 2.0))
    path = export_netx(net, tmp_path / "plif.net", (2, 8, 8))
    reference = copy.deepcopy(net)
    with torch.no_grad():
        for index in (0, 5):  # decay_input=True: the synapse's input is halved
            layer = reference[index]
            layer.weight.copy_(2 * lava_dl_weights(layer.weight / 2).double() / 64)
            if layer.bias is not None:
                layer.bias.copy_(2 * torch.round(64 * layer.bias / 2) / 64)
        layer = reference[3]  # decay_input=False: as LIF
        layer.weight.copy_(lava_dl_weights(layer.weight).double() / 64)
        layer.bias.copy_(torch.round(64 * layer.bias) / 64)
    x = _spikes(6)
    got = import_netx(path)(x.long()).double()
    expected = _run(reference, x)
    assert expected.mean() > 0.05 and torch.equal(got, expected)
    assert torch.equal(_run(on_netx_grid(net), x), expected)


@pytest.mark.parametrize("tau", [5000.0, 10000.0])
def test_a_long_tau_keeps_its_trained_input_scale(tmp_path, tau):
    """With tau = 5000 (vDecay = round(0.82) = 1) and 10000 (vDecay = 0: an IF layer)
    the fold is the trained 1/tau, not vDecay/4096 (1.22 times it at 5000, and 0, a
    layer without input, at 10000): the file's weights are round(32 W/tau)·2 and the
    chip fires as the float PLIF layer does (its leak over 40 steps is < 1 %)."""
    torch.manual_seed(0)
    net = nn.Sequential(
        layers.Linear(20, 10, bias=False),
        neurons.ParametricLIFNode(init_tau=tau, v_threshold=1.0, strict_firing=True),
    ).double()
    with torch.no_grad():
        net[0].weight.mul_(2 * tau)  # W/tau of order 1: the float layer fires
    path = export_netx(net, tmp_path / "long.net", (20,))
    factor = float(torch.sigmoid(net[1].w.detach()))
    with h5py.File(path, "r") as f:
        weight = torch.from_numpy(f["layer/1/weight"][()]).long()
        assert int(f["layer/1/neuron/vDecay"][()]) == round(4096 / tau)
    assert torch.equal(weight, lava_dl_weights(net[0].weight.detach() * factor))
    x = (torch.rand(40, 8, 20) < 0.3).double()
    got, expected = import_netx(path)(x.long()).double(), _run(net, x)
    assert expected.mean() > 0.02
    assert abs(float(got.mean() - expected.mean())) < 0.1 * float(expected.mean())
    assert (got == expected).double().mean() > 0.97


def test_a_learned_threshold_off_the_64ths_is_on_the_file_s_grid_in_on_netx_grid(tmp_path):
    """A learned θ = 0.49 is written as vThMant = int(64 θ) = 31; on_netx_grid, the float
    network with the file's numbers, takes 31/64 too: at tau = 2 (exact halvings) the
    file's spikes are its own (with θ = 0.49 left, 0.8 % of them differed)."""
    torch.manual_seed(0)

    def plif(decay_input: bool = True) -> neurons.ParametricLIFNode:
        return neurons.ParametricLIFNode(decay_input=decay_input, v_threshold=0.49,
                                         strict_firing=True, learnable_threshold=True)  # fmt: skip

    net = nn.Sequential(
        layers.Conv2d(2, 8, 3, padding=1), plif(),
        layers.Flatten(), layers.Linear(8 * 8 * 8, 30), plif(decay_input=False),
        layers.Linear(30, 10, bias=False), plif(),
    ).double()  # fmt: skip
    with torch.no_grad():
        for index, gain in ((0, 4.0), (3, 2.0), (5, 3.0)):
            net[index].weight.mul_(gain)
    path = export_netx(net, tmp_path / "theta.net", (2, 8, 8))
    with h5py.File(path, "r") as f:
        assert [int(f[f"layer/{i}/neuron/vThMant"][()]) for i in (1, 3, 4)] == [31] * 3
    x = _spikes(6)
    got, grid = import_netx(path)(x.long()).double(), _run(on_netx_grid(net), x)
    assert got.mean() > 0.05 and torch.equal(got, grid)
    assert abs(float(net[1].v_threshold.detach()) - 0.49) < 1e-6  # the network is unchanged


def test_one_decay_per_layer_per_channel_w_of_one_value_exports(tmp_path):
    uniform = nn.Sequential(layers.Linear(6, 4, bias=False), _plif(3.0, shape=(4,)))
    fixed = import_netx(export_netx(uniform, tmp_path / "u.net", (6,)))
    assert fixed[1].v_decay == round(4096 / 3)


@pytest.mark.parametrize(
    ("neuron", "message"),
    [
        (_plif((1.5, 8.0), shape=(4,)), "module 1 (ParametricLIFNode): 4 learned time constants"),
        (  # named as the PLIF it is (it was named as the LIFNode export made of it)
            neurons.ParametricLIFNode(v_threshold=torch.full((4,), 0.5)),
            "module 1 (ParametricLIFNode): a threshold of shape (4,); netx holds one vThMant",
        ),
    ],
)
def test_plif_layers_netx_cannot_hold_are_refused_by_name(tmp_path, neuron, message):
    net = nn.Sequential(layers.Linear(6, 4, bias=False), neuron)
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        export_netx(net, tmp_path / "bad.net", (6,))
    assert not (tmp_path / "bad.net").exists()
    (problem,) = netx_problems(net)
    assert problem.startswith("PLIF layers netx cannot hold: '1' (ParametricLIFNode): ")


def test_a_decay_input_plif_needs_a_synapse_right_before_it(tmp_path):
    net = nn.Sequential(layers.Linear(6, 4, bias=False), _plif(2.0), _plif(2.0))
    with pytest.raises(ConfigurationError, match=r"module 2 .*found ParametricLIFNode"):
        export_netx(net, tmp_path / "bad.net", (6,))


def test_tau_1_is_loihis_full_leak_vdecay_4096(tmp_path):
    """A PLIF at tau ~ 1 (round(4096 sigmoid(w)) = 4096) is Loihi's vDecay = 4096, whose
    decay v·(4096 - 4096) >> 12 is 0: the voltage is each step's input alone. The chip's
    spikes are (W' x + b' > θ) step by step, W', b' the grid's weights and biases of the
    folded synapse, and on_netx_grid's network gives them exactly."""
    torch.manual_seed(0)
    net = nn.Sequential(
        layers.Linear(20, 12), _plif(1.0 + 1e-6),
        layers.Linear(12, 6, bias=False), _plif(1.0 + 1e-5, decay_input=False),
    ).double()  # fmt: skip
    with torch.no_grad():
        net[0].weight.mul_(3.0)
        net[2].weight.mul_(4.0)
    path = export_netx(net, tmp_path / "tau1.net", (20,))
    with h5py.File(path, "r") as f:
        for layer in (1, 2):
            assert int(f[f"layer/{layer}/neuron/vDecay"][()]) == 4096
            assert int(f[f"layer/{layer}/neuron/iDecay"][()]) == 4096
    x = (torch.rand(25, 8, 20) < 0.4).double()
    got = import_netx(path)(x.long()).double()
    factor = float(torch.sigmoid(net[1].w.detach()))
    w1 = lava_dl_weights(net[0].weight.detach() * factor).double() / 64
    b1 = torch.round(net[0].bias.detach() * factor * 64) / 64
    hidden = ((x @ w1.T + b1) > 0.5).double()  # memoryless: this step's input only
    w2 = lava_dl_weights(net[2].weight.detach()).double() / 64
    expected = ((hidden @ w2.T) > 0.5).double()
    assert 0.05 < hidden.mean() < 0.95 and 0.05 < expected.mean() < 0.95
    assert torch.equal(got, expected)
    assert torch.equal(_run(on_netx_grid(net), x), expected)
    # the float PLIF itself (tau ~ 1, its weights off the 1/32 grid): nearly the same
    assert (_run(net, x) == expected).double().mean() > 0.95


def test_a_fold_that_rounds_every_weight_to_zero_is_refused_naming_the_tau(tmp_path):
    """tau = 1e5 with decay_input=True scales weights of ~0.2 by 1e-5: all round to 0 on
    the 1/32 grid, a layer without input. Refused naming the layer and the tau (export,
    on_netx_grid, netx_problems); the same layer without the fold exports."""
    torch.manual_seed(0)
    net = nn.Sequential(layers.Linear(20, 10, bias=False), _plif(1e5)).double()
    message = r"module 1 \(ParametricLIFNode\) after module 0 \(Linear\): its trained tau = 100000"
    with pytest.raises(ConfigurationError, match=message):
        export_netx(net, tmp_path / "zero.net", (20,))
    assert not (tmp_path / "zero.net").exists()
    with pytest.raises(ConfigurationError, match="every one rounds to 0"):
        on_netx_grid(net)
    (problem,) = netx_problems(net)
    assert problem.startswith("PLIF layers netx cannot hold: '1' (ParametricLIFNode): its trained")
    net[1].decay_input = False  # nothing folded: the weights stay as they are
    assert netx_problems(net) == []
    export_netx(net, tmp_path / "kept.net", (20,))


def test_a_fold_that_keeps_only_the_bias_says_the_layer_gets_a_constant_drive(tmp_path):
    """tau = 1e5 rounds every folded weight to 0, but a bias of 1000 folds to 0.01,
    mantissa round(64 * 0.01) = 1: the layer still gets its bias each step, so the
    refusal says so instead of "never get input" (a bias of 1 folds to 0: it does)."""
    torch.manual_seed(0)
    net = nn.Sequential(layers.Linear(20, 10), _plif(1e5)).double()
    with torch.no_grad():
        net[0].bias.zero_()
        net[0].bias[:3] = 1000.0
    constant = r"only the constant drive of its bias \(3 of 10 bias values survive the fold\)"
    with pytest.raises(ConfigurationError, match=constant) as refused:
        export_netx(net, tmp_path / "bias.net", (20,))
    assert "never get input" not in str(refused.value)
    with torch.no_grad():
        net[0].bias[:3] = 1.0  # 1e-5: mantissa 0, nothing left
    with pytest.raises(ConfigurationError, match="the layer would never get input"):
        on_netx_grid(net)
