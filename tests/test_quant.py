"""Quantization-aware training of weights: the levels by hand, the straight-through
gradient, stacking on pruning, integers for hardware, and training runs."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from spikeflow import layers, neurons, prune, quant
from spikeflow.errors import ConfigurationError


def small_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Flatten(), nn.Linear(100, 6)).double()  # fmt: skip


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("per_channel", [True, False])
def test_levels_and_scales_by_hand(bits, per_channel):
    net = small_net()
    ref = copy.deepcopy(net)
    quant.apply_weight_quantization(net, bits=bits, per_channel=per_channel)
    q = 2 ** (bits - 1) - 1
    for index in (0, 4):
        w = ref[index].weight.detach()
        if per_channel:
            peak = w.abs().flatten(1).amax(1).reshape(-1, *([1] * (w.dim() - 1)))
        else:
            peak = w.abs().amax()
        s = peak / q
        expected = torch.round(w / s).clamp(-q, q) * s
        assert torch.equal(net[index].weight, expected)
        k, scale = quant.integer_weights(net[index])
        assert k.dtype == torch.int32 and int(k.abs().max()) == q  # the peak is a level
        assert torch.equal(k.double() * scale, net[index].weight)
        levels = torch.unique(k.flatten(1), dim=None)
        assert len(levels) <= 2 * q + 1
        # rounding to the nearest level: off by at most half a step
        assert float(((net[index].weight.detach() - w).abs() / s).max()) <= 0.5 + 1e-12


def test_the_gradient_passes_straight_through():
    layer = nn.Linear(5, 3).double()
    quant.apply_weight_quantization(layer, bits=3)
    upstream = torch.randn(3, 5, dtype=torch.float64)
    (layer.weight * upstream).sum().backward()
    assert torch.equal(layer.parametrizations.weight.original.grad, upstream)


def test_quantization_stacks_on_pruning_and_keeps_pruned_synapses_at_zero():
    net = small_net().eval()
    prune.apply_soft_threshold(net)
    prune.set_threshold(net, 0.1)
    sparse = net[4].weight.detach().clone()
    quant.apply_weight_quantization(net, bits=4)
    assert bool(((sparse == 0) <= (net[4].weight == 0)).all())  # zeros stay zeros
    k, s = quant.integer_weights(net[4])
    assert torch.equal(k.double() * s, net[4].weight)
    x = torch.randn(2, 2, 5, 5, dtype=torch.float64)
    out = net(x)
    assert prune.finalize(net) == ["0", "4"]
    assert not parametrize.is_parametrized(net[0])
    assert torch.equal(net(x), out)
    # the other order is refused: pruning wants a plain weight
    net = small_net()
    quant.apply_weight_quantization(net, bits=4)
    with pytest.raises(ConfigurationError, match="already parametrized"):
        prune.apply_gradient_rewiring(net)


def test_refusals():
    for bits in (0, -1, 17, 4.0, True, "8"):
        with pytest.raises(ConfigurationError, match="bits must be an integer from 1"):
            quant.apply_weight_quantization(small_net(), bits=bits)
    net = small_net()
    quant.apply_weight_quantization(net, bits=8, layers=[net[4]])
    with pytest.raises(ConfigurationError, match="quantized already"):
        quant.apply_weight_quantization(net, bits=4)
    with pytest.raises(ConfigurationError, match="is not quantized"):
        quant.integer_weights(net[0])
    with pytest.raises(ConfigurationError, match="no linear or convolution layer to quantize"):
        quant.apply_weight_quantization(nn.Sequential(nn.ReLU()))


def test_an_all_zero_channel_and_spiking_layers():
    net = nn.Sequential(layers.Linear(4, 3), neurons.LIFNode())
    with torch.no_grad():
        net[0].weight[1] = 0.0
    quant.apply_weight_quantization(net, bits=2)
    assert torch.equal(net[0].weight[1], torch.zeros(4))  # no 0/0
    assert set(torch.unique(quant.integer_weights(net[0])[0]).tolist()) <= {-1, 0, 1}
    net(torch.rand(5, 2, 4)).sum().backward()
    assert net[0].parametrizations.weight.original.grad is not None


def test_nir_export_writes_the_quantized_weights():
    pytest.importorskip("nir", reason="the nir extra is not installed")
    from spikeflow.interop import export_to_nir

    net = nn.Sequential(layers.Linear(6, 4), neurons.LIFNode())
    quant.apply_weight_quantization(net, bits=3)
    graph = export_to_nir(net, torch.zeros(2, 1, 6))
    assert torch.equal(torch.as_tensor(graph.nodes["_0"].weight), net[0].weight.detach())


# -- training -------------------------------------------------------------------------


def test_a_quantized_run_trains_resumes_exactly_and_evaluates(tmp_path, capsys):
    pytest.importorskip("sklearn", reason="the digits need scikit-learn (the 'examples' extra)")
    from spikeflow.cli import main
    from spikeflow.training import Trainer
    from spikeflow.training.metric_logs import read_csv
    from train_runs import check_resume_is_exact, tiny

    changes = {"weight_bits": 3, "prune": "stds", "prune_kwargs": {"final_threshold": 0.05}}
    check_resume_is_exact(tmp_path, **changes)
    rows = read_csv(tmp_path / "full" / "metrics.csv")
    assert all(0 < float(r["sparsity"]) < 1 for r in rows)
    code = main(["eval", "--checkpoint", str(tmp_path / "full" / "best.pt"), "--no-progress"])
    assert code == 0
    assert f"test accuracy: {max(float(r['test_acc']) for r in rows):.4f}" in (
        capsys.readouterr().out)  # fmt: skip
    Trainer(tiny(tmp_path, "ternary", weight_bits=2), log=None).fit()
    rows = read_csv(tmp_path / "ternary" / "metrics.csv")  # quantization alone logs it too
    assert float(rows[-1]["sparsity"]) > 0.05
    assert main(["train", "--weight-bits", "0", "--output-dir", str(tmp_path / "x")]) == 2
    assert "bits must be an integer from 1" in capsys.readouterr().err


def test_transposed_convolutions_scale_per_output_channel():
    layer = nn.ConvTranspose2d(3, 5, 2).double()  # weight [in=3, out=5, 2, 2]
    w = layer.weight.detach().clone()
    quant.apply_weight_quantization(layer, bits=3)
    k, s = quant.integer_weights(layer)
    assert s.shape == (1, 5, 1, 1)
    torch.testing.assert_close(s, w.abs().amax(dim=(0, 2, 3), keepdim=True) / 3)
    assert torch.equal(k.double() * s, layer.weight)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("bits", [4, 8, 13])
def test_half_weights_are_quantized_in_float32(dtype, bits):
    torch.manual_seed(8)
    layer = nn.Linear(64, 8).to(dtype)
    with torch.no_grad():
        layer.weight[1] = 0.0  # a pruned output channel
        layer.weight[2] *= 1e-3  # tiny weights
    w = layer.weight.detach().float()
    quant.apply_weight_quantization(layer, bits=bits)
    k, s = quant.integer_weights(layer)
    q = 2 ** (bits - 1) - 1
    assert s.dtype == torch.float32 and bool(torch.isfinite(layer.weight).all())
    assert int(k.abs().max()) == q and torch.equal(k[1], torch.zeros_like(k[1]))
    assert torch.equal((k.float() * s).to(dtype), layer.weight)
    # the levels are those of the float32 weights: within half a step (w/s rounds in
    # float32, so up to a float32 ulp of 2^12 levels more)
    error = (k.double() * s.double() - w.double()).abs() / s.double()
    assert float(error.max()) <= 0.5 + 1e-3


def test_grouped_transposed_convolutions_scale_per_output_channel():
    torch.manual_seed(9)
    layer = nn.ConvTranspose2d(4, 6, 3, groups=2).double()  # weight [4, 3, 3, 3]
    w = layer.weight.detach().clone()
    quant.apply_weight_quantization(layer, bits=4)
    _, s = quant.integer_weights(layer)
    # output channel g*3 + j holds w[g*2:(g+1)*2, j]
    for g in range(2):
        for j in range(3):
            peak = w[2 * g : 2 * g + 2, j].abs().max()
            assert torch.equal(s[2 * g : 2 * g + 2, j], (peak / 7).expand(2, 3, 3))


def test_a_weight_normed_layer_can_be_quantized():
    model = nn.Sequential(nn.utils.parametrizations.weight_norm(nn.Linear(5, 4)),
                          nn.Linear(4, 2)).double()  # fmt: skip
    assert quant.apply_weight_quantization(model, bits=4) == ["0", "1"]
    k, s = quant.integer_weights(model[0])
    assert torch.equal(k.double() * s, model[0].weight)


def test_a_state_dict_of_other_quantization_settings_is_refused():
    net = small_net()
    quant.apply_weight_quantization(net, bits=3)
    saved = net.state_dict()
    same = small_net()
    quant.apply_weight_quantization(same, bits=3)
    same.load_state_dict(saved)
    assert torch.equal(same[4].weight, net[4].weight)
    other = small_net()
    quant.apply_weight_quantization(other, bits=8)
    with pytest.raises(RuntimeError, match=r"quantized to 3 bits .* quantizes to 8 bits"):
        other.load_state_dict(saved)
    per_layer = small_net()
    quant.apply_weight_quantization(per_layer, bits=3, per_channel=False)
    with pytest.raises(RuntimeError, match=r"per_channel=True\), this layer"):
        per_layer.load_state_dict(saved)
    half = small_net().half()
    quant.apply_weight_quantization(half, bits=3)
    half.load_state_dict(saved)  # the settings buffer is an integer: .half() keeps it
