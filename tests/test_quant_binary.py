"""Binary (1-bit) weights: ``quant.apply_weight_quantization(net, bits=1)``.

The formulas written out here in float64 are BinaryConnect's (Courbariaux et al. 2015,
deterministic form) with XNOR-Net's scale (Rastegari et al. 2016)::

    w_b = α·sign(w)          sign(0) = +1           α = mean|w| per output channel
    ∂L/∂w = ∂L/∂w_b · 1{|w| <= 1}                  (hard-tanh straight-through)

and, with a learned step (``method="lsq"``, LSQ's rules at Qn = Qp = 1)::

    w_b = s·sign(w)          s₀ = mean|w|
    ∂L/∂w = ∂L/∂w_b · 1{|w| < s}      ∂L/∂s = g·Σ ∂L/∂w_b·sign(w)      g = 1/sqrt(N)

(snnTorch's binary examples are notebooks, not in the installed package, so the check
is against these formulas.)
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import require_shared_data
from spikeflow import layers, prune, quant
from spikeflow.errors import ConfigurationError
from spikeflow.neurons import IFNode
from spikeflow.quant.lsq import lsq_binary


def _sign(w: torch.Tensor) -> torch.Tensor:
    return torch.where(w >= 0, 1.0, -1.0).to(w.dtype)


def _weights(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """Float64 weights with exact zeros (sign(0) = +1) and entries beyond |w| = 1 (where
    the hard tanh stops the gradient)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(shape, generator=g, dtype=torch.float64) * 0.8
    flat = w.view(-1)
    flat[::7] = 0.0
    flat[3::11] = 1.7 * torch.sign(flat[3::11] + 1e-3)
    return w


def _layer(kind: str) -> nn.Module:
    if kind == "linear":
        layer = nn.Linear(12, 5, bias=False)
    else:
        layer = nn.Conv2d(3, 4, 3, padding=1, bias=False)
    layer = layer.double()
    with torch.no_grad():
        layer.weight.copy_(_weights(tuple(layer.weight.shape)))
    return layer


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal up to the last bits of ``w + (w_b - w)`` (the straight-through sum)."""
    return torch.allclose(a, b, rtol=1e-12, atol=1e-15)


def _apply(layer: nn.Module, w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return F.linear(x, w) if w.dim() == 2 else F.conv2d(x, w, padding=1)


@pytest.mark.parametrize("kind", ["linear", "conv"])
@pytest.mark.parametrize("per_channel", [True, False])
def test_forward_and_backward_are_binaryconnect_with_xnor_scales(kind, per_channel):
    layer = _layer(kind)
    w = layer.weight.detach().clone()
    quant.apply_weight_quantization(layer, bits=1, per_channel=per_channel)
    dims = tuple(range(1, w.dim()))
    alpha = w.abs().mean(dim=dims, keepdim=True) if per_channel else w.abs().mean()
    expected = alpha * _sign(w)
    assert _close(layer.weight, expected)
    k, s = quant.integer_weights(layer)
    assert set(k.unique().tolist()) == {-1, 1}
    assert torch.equal(k[w == 0], torch.ones_like(k[w == 0]))  # sign(0) = +1
    assert torch.allclose(s, alpha.expand_as(s) if per_channel else alpha)
    assert quant.weight_bits(layer) == 1

    x = torch.randn(6, 12) if kind == "linear" else torch.randn(2, 3, 6, 6)
    x = x.double()
    out = layer(x)
    assert torch.allclose(out, _apply(layer, expected, x))
    upstream = torch.randn_like(out)
    (out * upstream).sum().backward()
    wb = expected.clone().requires_grad_(True)
    (_apply(layer, wb, x) * upstream).sum().backward()
    clip = (w.abs() <= 1).to(w.dtype)
    assert 0 < float(clip.mean()) < 1  # both sides of the hard tanh are tested
    grad = layer.parametrizations.weight.original.grad
    assert torch.allclose(grad, wb.grad * clip)


def test_a_grouped_transposed_convolution_takes_each_output_channels_mean():
    layer = nn.ConvTranspose2d(4, 6, 3, groups=2, bias=False).double()
    with torch.no_grad():
        layer.weight.copy_(_weights(tuple(layer.weight.shape), seed=1))  # [4, 3, 3, 3]
    w = layer.weight.detach().clone()
    quant.apply_weight_quantization(layer, bits=1)
    alpha = torch.empty_like(w)
    for group in range(2):
        rows = slice(2 * group, 2 * group + 2)
        for out in range(3):  # output channel 3·group + out: the group's inputs, kernel
            alpha[rows, out] = w[rows, out].abs().mean()
    assert _close(layer.weight, alpha * _sign(w))


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
@pytest.mark.parametrize(
    "make",
    [
        lambda: nn.Linear(64, 8, bias=False),
        lambda: nn.Conv2d(6, 6, 3, groups=3),
        lambda: nn.Conv2d(6, 6, 3, groups=6),  # depthwise
        lambda: nn.ConvTranspose2d(4, 6, 3, groups=2),
    ],
)
def test_the_forward_weight_is_exactly_two_values_per_channel(make, dtype):
    """Weights far smaller than α (a typical 0.01-0.1 layer with some near zero): the
    forward is exactly ``k·α`` (what NIR export writes), not ``w + (α - w)`` rounded."""
    torch.manual_seed(0)
    layer = make().to(dtype)
    with torch.no_grad():
        layer.weight.mul_(0.1).view(-1)[::5] *= 1e-3
    quant.apply_weight_quantization(layer, bits=1)
    k, s = quant.integer_weights(layer)
    assert torch.equal(layer.weight.detach(), (k.to(s.dtype) * s).to(dtype))
    w = layer.weight.detach()
    if isinstance(layer, nn.ConvTranspose2d):  # [in, out/groups, ...]: output 3·g + o
        w = torch.stack([w[2 * g : 2 * g + 2, o] for g in range(2) for o in range(3)])
    for channel in w.flatten(1):
        assert channel.unique().numel() == 2


def test_nir_export_writes_the_binary_weights(tmp_path):
    """NIR's Linear weights are the ±α the network ran with (two values per row), and
    netx refuses weights off Lava's grid by the module's name."""
    pytest.importorskip("nir", reason="the nir extra is not installed")
    from spikeflow.interop.netx import export_netx
    from spikeflow.interop.nir_export import export_to_nir

    torch.manual_seed(0)
    net = nn.Sequential(layers.Linear(64, 10, bias=False), IFNode())
    with torch.no_grad():
        net[0].weight.view(-1)[::5] *= 1e-3  # far below α: w + (α - w) would round
    quant.apply_weight_quantization(net, bits=1)
    k, s = quant.integer_weights(net[0])
    graph = export_to_nir(net, torch.zeros(2, 1, 64))
    (weight,) = [n.weight for n in graph.nodes.values() if getattr(n, "weight", None) is not None]
    assert torch.equal(torch.as_tensor(weight), k.float() * s)
    assert all(row.unique().numel() == 2 for row in torch.as_tensor(weight))
    with pytest.raises(ConfigurationError, match=r"module 0 .*not on Lava's grid"):
        export_netx(net, tmp_path / "net.net", (64,))


def test_a_channel_of_zeros_stays_zero():
    layer = _layer("linear")
    with torch.no_grad():
        layer.weight[2] = 0.0
    quant.apply_weight_quantization(layer, bits=1)
    assert torch.equal(layer.weight[2], torch.zeros(12, dtype=torch.float64))
    k, s = quant.integer_weights(layer)
    assert torch.equal(k[2], torch.zeros(12, dtype=torch.int32)) and float(s[2]) == 1.0
    assert set(k[[0, 1, 3, 4]].unique().tolist()) == {-1, 1}


@pytest.mark.parametrize("kind", ["linear", "conv"])
@pytest.mark.parametrize("per_channel", [True, False])
def test_learned_step_forward_and_gradients_by_hand(kind, per_channel):
    layer = _layer(kind)
    w = layer.weight.detach().clone()
    quant.apply_weight_quantization(layer, bits=1, per_channel=per_channel, method="lsq")
    quantizer = layer.parametrizations.weight[0]
    dims = tuple(range(1, w.dim()))
    s0 = w.abs().mean(dim=dims, keepdim=True) if per_channel else w.abs().mean()
    assert torch.allclose(quantizer.step.detach(), s0)  # XNOR's mean|w|
    with torch.no_grad():  # a step that differs from mean|w| per channel
        quantizer.step.mul_(torch.linspace(0.6, 1.4, quantizer.step.numel())
                            .view_as(quantizer.step).double())  # fmt: skip
    s = quantizer.step.detach().clone()
    expected = s * _sign(w)
    assert _close(layer.weight, expected)
    k, step = quant.integer_weights(layer)
    assert _close(k.double() * step, expected)

    x = (torch.randn(6, 12) if kind == "linear" else torch.randn(2, 3, 6, 6)).double()
    out = layer(x)
    upstream = torch.randn_like(out)
    (out * upstream).sum().backward()
    wb = expected.clone().requires_grad_(True)
    (_apply(layer, wb, x) * upstream).sum().backward()
    inside = (w.abs() < s).to(w.dtype)
    assert 0 < float(inside.mean()) < 1
    grad_w = layer.parametrizations.weight.original.grad
    assert torch.allclose(grad_w, wb.grad * inside)
    n = w.numel() // s.numel()
    grad_s = (wb.grad * _sign(w)).sum(dim=dims if per_channel else None, keepdim=per_channel)
    assert torch.allclose(quantizer.step.grad, grad_s / math.sqrt(n))


def test_the_steps_gradient_passes_gradcheck():
    v = _weights((5, 9))
    step = (v.abs().mean(dim=1, keepdim=True) * 1.1).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda s: lsq_binary(v, s, 1.0), (step,))
    scaled = (v.abs().mean() * 0.9).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda s: lsq_binary(v, s, 1.0), (scaled,))


def test_refusals_name_the_cause():
    net = nn.Sequential(nn.Linear(8, 4))
    prune.apply_gradient_rewiring(net)
    with pytest.raises(ConfigurationError, match=r"pruned, and binary weights \(bits=1\) have"):
        quant.apply_weight_quantization(net, bits=1)
    with pytest.raises(ConfigurationError, match=r"binary weights \(bits=1\) are symmetric"):
        quant.apply_weight_quantization(nn.Linear(8, 4), bits=1, method="lsq", asymmetric=True)
    with pytest.raises(ConfigurationError, match=r"from 1 \(binary; 2: ternary\) to 16, got 0"):
        quant.apply_weight_quantization(nn.Linear(8, 4), bits=0)


@pytest.mark.parametrize("method", ["fixed", "lsq"])
def test_pruning_a_binary_layer_says_binary_weights_cannot_be_pruned(method):
    """Pruning after binarising: not the 2-bit advice 'prune first', which 1 bit refuses."""
    net = nn.Sequential(nn.Linear(8, 4))
    quant.apply_weight_quantization(net, bits=1, method=method)
    with pytest.raises(ConfigurationError, match=r"'0'.*binary .*cannot be pruned"):
        prune.apply_gradient_rewiring(net)


def test_a_state_dict_of_binary_weights_is_refused_by_a_ternary_layer():
    binary, ternary = nn.Linear(8, 4), nn.Linear(8, 4)
    quant.apply_weight_quantization(binary, bits=1)
    quant.apply_weight_quantization(ternary, bits=2)
    with pytest.raises(RuntimeError, match=r"quantized to 1 bits .* they differ in bits"):
        ternary.load_state_dict(binary.state_dict())


@pytest.mark.parametrize("method", ["fixed", "lsq"])
def test_binary_weights_fold_into_the_thresholds_on_real_nmnist(method):
    from spikeflow.data import NMNIST, ToFrame

    data = NMNIST(require_shared_data("nmnist-small"), train=False)
    frames = ToFrame(8)
    x = torch.stack([torch.as_tensor(frames(data[i * 12][0])) for i in range(4)])
    x = x.transpose(0, 1).double()
    torch.manual_seed(0)
    model = nn.Sequential(
        layers.Conv2d(2, 8, 3, padding=1, bias=False), IFNode(v_threshold=0.5),
        layers.MaxPool2d(2), layers.Flatten(),
        layers.Linear(8 * 17 * 17, 10, bias=False), IFNode(v_threshold=0.5),
    ).double()  # fmt: skip
    quant.apply_weight_quantization(model, 1, method=method)
    model.eval()

    def spikes(net: nn.Module) -> list[torch.Tensor]:
        out: list[torch.Tensor] = []
        hooks = [m.register_forward_hook(lambda m, i, o: out.append(o))
                 for m in net.modules() if isinstance(m, IFNode)]  # fmt: skip
        with torch.no_grad():
            net(x)
        for hook in hooks:
            hook.remove()
        return out

    reference = spikes(model)
    folded, report = quant.fold_weight_scales(model, x, integer_input=True)
    for a, b in zip(reference, spikes(folded)):
        assert 0.001 < float(a.mean()) < 0.9
        assert torch.equal(a, b)
    for r in report:
        weight = dict(folded.named_modules())[r.layer].weight
        assert set(weight.unique().tolist()) == {-1.0, 1.0}


def test_spikeflow_train_weight_bits_1(tmp_path, capsys):
    from spikeflow.cli import main
    from spikeflow.training import Trainer
    from train_runs import read_csv, tiny

    Trainer(tiny(tmp_path, "binary", weight_bits=1), log=None).fit()
    rows = read_csv(tmp_path / "binary" / "metrics.csv")
    assert float(rows[-1]["sparsity"]) == 0.0  # binary weights have no zero level
    args = ["train", "--weight-bits", "1", "--prune", "grad_r", "--epochs", "1",
            "--output-dir", str(tmp_path / "x"), "--no-progress"]  # fmt: skip
    assert main(args) != 0
    assert "binary weights (bits=1) have no zero level" in capsys.readouterr().err
