"""Learned step size quantization (LSQ) of weights: the forward on its integer grid
(``layer.weight == k·s``), the paper's initial step, and the gradients to the weight
and the step against the formulas of Esser et al. (ICLR 2020) written out by hand
element by element, per layer and per channel, symmetric and asymmetric; gradcheck
(float64) of the clip-aware part with the rounding taken out; the state dict, the
footprint, and a ``--weight-quant lsq`` training run."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from spikeflow import layers, prune, quant
from spikeflow.energy import neurobench_static
from spikeflow.errors import ConfigurationError
from spikeflow.quant import lsq


def _weight(shape=(4, 3, 3, 3), seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64) * 0.3


def _hand_gradients(w, s, low, high, g, c):
    """dL/dw and dL/ds of L = Σ c·w_q by the paper's formulas, one element at a time
    (``s``, ``low``, ``high`` per output channel, dim 0)."""
    dw = torch.zeros_like(w)
    ds = torch.zeros(w.shape[0], dtype=torch.float64)
    for o in range(w.shape[0]):
        for i, v in enumerate(w[o].flatten().tolist()):
            ratio = v / float(s[o])
            lo, hi = float(low[o]), float(high[o])
            cc = float(c[o].flatten()[i])
            if ratio <= lo:
                ds[o] += cc * lo
            elif ratio >= hi:
                ds[o] += cc * hi
            else:
                dw[o].view(-1)[i] = cc
                ds[o] += cc * (round(ratio) - ratio)
    return dw, ds * g


@pytest.mark.parametrize("per_channel", [True, False])
@pytest.mark.parametrize("asymmetric", [False, True])
def test_gradients_match_the_papers_formulas(per_channel, asymmetric):
    bits = 3
    layer = nn.Conv2d(3, 4, 3, bias=False).double()
    with torch.no_grad():
        layer.weight.copy_(_weight())
    quant.apply_weight_quantization(layer, bits, per_channel=per_channel, method="lsq",
                                    asymmetric=asymmetric)  # fmt: skip
    q = layer.parametrizations.weight[0]
    with torch.no_grad():  # a smaller step: some weights beyond the clip range
        q.step.mul_(0.6)
    w = layer.parametrizations.weight.original
    c = torch.randn(w.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    (layer.weight * c).sum().backward()
    low, high = q.bounds()
    steps = q.step.detach().expand(4) if not per_channel else q.step.detach().flatten()
    lows = low.expand(4) if low.dim() == 0 else low.flatten()
    highs = high.expand(4) if high.dim() == 0 else high.flatten()
    per_step = w.numel() // q.step.numel()
    g = 1 / math.sqrt(per_step * (2 ** (bits - 1) - 1))
    dw, ds = _hand_gradients(w.detach(), steps, lows, highs, g, c)
    clipped = int((dw == 0).sum())
    assert 0 < clipped < w.numel()  # both branches of the clip are exercised
    torch.testing.assert_close(w.grad, dw, rtol=0, atol=1e-12)
    expected = ds if per_channel else ds.sum()
    torch.testing.assert_close(q.step.grad.flatten(), expected.flatten(), rtol=1e-12, atol=1e-12)


def test_gradcheck_of_the_clip_aware_part_without_the_rounding(monkeypatch):
    # With the rounding taken out, s·clamp(v/s, lo, hi) is piecewise smooth: its true
    # gradient is LSQ's (clip-aware to v; v/s's own term and the bounds to s).
    monkeypatch.setattr(lsq, "round_pass", lambda x: x)
    v = torch.tensor([-2.3, -0.7, 0.15, 0.9, 1.6, 3.1], dtype=torch.float64, requires_grad=True)
    s = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)  # clips -2.3 and 3.1 (q=3)
    assert torch.autograd.gradcheck(lambda v, s: lsq.lsq_quantize(v, s, -3.0, 3.0, 1.0), (v, s))
    # The gradient scale g multiplies the step's gradient only.
    out = lsq.lsq_quantize(v, s, -3.0, 3.0, 0.25).sum()
    gv, gs = torch.autograd.grad(out, (v, s))
    ref_v, ref_s = torch.autograd.grad(lsq.lsq_quantize(v, s, -3.0, 3.0, 1.0).sum(), (v, s))
    assert torch.equal(gv, ref_v) and torch.equal(gs, 0.25 * ref_s)


@pytest.mark.parametrize("asymmetric", [False, True])
def test_the_forward_is_on_the_integer_grid_with_the_papers_initial_step(asymmetric):
    bits = 4
    layer = layers.Conv2d(3, 4, 3, bias=False)
    w = layer.weight.detach().clone()
    quant.apply_weight_quantization(layer, bits, method="lsq", asymmetric=asymmetric)
    q = layer.parametrizations.weight[0]
    qp = 2 ** (bits - 1) - 1
    torch.testing.assert_close(q.step.detach().flatten(),
                               2 * w.abs().mean(dim=(1, 2, 3)) / math.sqrt(qp))  # fmt: skip
    k, s = quant.integer_weights(layer)
    low, high = q.bounds()
    assert torch.equal(layer.weight, (k * s).float())
    assert bool((k >= low).all() and (k <= high).all())
    if asymmetric:  # 2^bits codes u = k + z, zero a level, z where the weights lie
        z = q.zero_point.flatten()
        assert torch.equal(high.flatten() - low.flatten(), torch.full((4,), 2.0**bits - 1))
        share = -w.amin(dim=(1, 2, 3)) / (w.amax(dim=(1, 2, 3)) - w.amin(dim=(1, 2, 3)))
        assert torch.equal(z, torch.round(share * (2**bits - 1)))
    else:
        assert torch.equal(low, -high) and int(high.max()) == qp
    assert quant.weight_bits(layer) == bits


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_a_half_precision_weight_is_k_times_s_rounded_to_its_dtype(dtype):
    # The quotient w/s was taken in the weight's dtype, whose rounding moved weights to
    # other levels than integer_weights gives (67 of 16384 in bfloat16, 5 in float16):
    # the deployed integers were not those the network trained with.
    torch.manual_seed(0)
    layer = layers.Linear(256, 64)
    quant.apply_weight_quantization(layer, 4, method="lsq")
    layer = layer.to(dtype)
    k, s = quant.integer_weights(layer)
    assert layer.weight.dtype == dtype
    assert torch.equal(layer.weight, (k * s).to(dtype))
    layer(torch.randn(2, 8, 256, dtype=dtype)).float().pow(2).sum().backward()
    step = layer.parametrizations.weight[0].step
    assert step.grad is not None and step.grad.dtype == dtype and bool(step.grad.isfinite().all())


def test_a_learned_step_trains_and_the_state_dict_holds_it():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 2))
    quant.apply_weight_quantization(net, 3, per_channel=False, method="lsq")
    step = net[0].parametrizations.weight[0].step
    before = step.detach().clone()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    assert any(p is step for p in net.parameters())
    net(torch.randn(16, 6)).pow(2).sum().backward()
    opt.step()
    assert not torch.equal(step.detach(), before)
    state = net.state_dict()
    assert "0.parametrizations.weight.0.step" in state
    other = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 2))
    quant.apply_weight_quantization(other, 3, per_channel=False, method="lsq")
    other.load_state_dict(state)
    assert torch.equal(other[0].weight, net[0].weight)
    fixed = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 2))
    quant.apply_weight_quantization(fixed, 3, per_channel=False)
    with pytest.raises(RuntimeError, match="they differ in method"):
        fixed.load_state_dict(state)
    quantized = net[0].weight.detach().clone()
    assert prune.finalize(net) == ["0", "2"]  # baked: plain layers holding k·s
    assert torch.equal(net[0].weight, quantized) and quant.weight_bits(net[0]) is None


def test_the_footprint_counts_the_integers_and_one_scale_per_channel():
    net = nn.Sequential(nn.Linear(8, 4, bias=False), nn.Linear(4, 3, bias=False))
    quant.apply_weight_quantization(net, 3, method="lsq", layers=[net[0]])
    quant.apply_weight_quantization(net, 4, per_channel=False, method="lsq", layers=[net[1]])
    # 32 3-bit integers (12 bytes) + 4 float32 steps; 12 4-bit (6 bytes) + 1 step.
    assert neurobench_static(net)["Footprint"] == 12 + 4 * 4 + 6 + 4


def test_bad_settings_are_refused_by_name():
    with pytest.raises(ConfigurationError, match="method must be one of"):
        quant.apply_weight_quantization(nn.Linear(2, 2), 4, method="pact")
    with pytest.raises(ConfigurationError, match="asymmetric levels need learned steps"):
        quant.apply_weight_quantization(nn.Linear(2, 2), 4, asymmetric=True)
    with pytest.raises(ConfigurationError, match="grouped transposed"):
        quant.apply_weight_quantization(nn.ConvTranspose2d(4, 4, 2, groups=2), 4, method="lsq")
    bad = nn.Linear(2, 2)
    with torch.no_grad():
        bad.weight[0, 0] = float("nan")
    with pytest.raises(ConfigurationError, match="NaN or infinite"):
        quant.apply_weight_quantization(bad, 4, method="lsq")


def test_a_lsq_run_with_a_quantized_input_trains_resumes_exactly_and_evaluates(tmp_path, capsys):
    pytest.importorskip("sklearn", reason="the digits need scikit-learn (the 'examples' extra)")
    from spikeflow.cli import main
    from spikeflow.training import load_checkpoint
    from spikeflow.training.metric_logs import read_csv
    from train_runs import check_resume_is_exact

    check_resume_is_exact(tmp_path, weight_bits=3, weight_quant="lsq", input_bits=4)
    history = read_csv(tmp_path / "full" / "metrics.csv")
    assert float(history[-1]["test_acc"]) > 0.2  # chance: 0.1
    state = load_checkpoint(tmp_path / "full" / "best.pt")["model"]
    step = state["features.0.input_quantizer.step"]
    assert bool(state["features.0.input_quantizer.initialized"])
    assert 0 < float(step) != 1.0  # set from the first batch, then trained
    assert "features.0.parametrizations.weight.0.step" in state
    code = main(["eval", "--checkpoint", str(tmp_path / "full" / "best.pt"), "--no-progress"])
    assert code == 0
    best = max(float(row["test_acc"]) for row in history)
    assert f"test accuracy: {best:.4f}" in capsys.readouterr().out
    assert main(["train", "--weight-quant", "lsq", "--output-dir", str(tmp_path / "x")]) == 2
    assert "needs weight quantization: add --weight-bits" in capsys.readouterr().err
