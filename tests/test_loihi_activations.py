"""Lava-DL's Loihi-friendly activations (spikeflow.conversion.PiecewiseLinearSiLU, ReLU1):
equal to Lava-DL's formulas transcribed (its clamp and masked assignment), forward and
gradient in float64, and inside to_sigma_delta's units equal to the ANN at θ = 0."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikeflow.conversion import (
    ConversionIFNode,
    ConversionRule,
    PiecewiseLinearSiLU,
    ReLU1,
    convert,
    piecewise_linear_silu,
    relu1,
    to_sigma_delta,
)
from spikeflow.conversion.report import ConversionError
from spikeflow.errors import ConfigurationError, DTypeError
from spikeflow.layers import SigmaDelta

f64 = torch.float64


def _lava_pl_silu(x: torch.Tensor) -> torch.Tensor:
    """Lava-DL's PiecewiseLinearSiLU.forward transcribed: clamp below at -5, then the
    elements below -0.5 replaced by (x + 5) * -0.1."""
    y = x.clamp(-5.0)
    below = y < -0.5
    y[below] = (y[below] + 5) * -0.1
    return y


def _points() -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    edges = torch.tensor([-7.0, -5.0, -4.999, -2.0, -0.5001, -0.5, -0.4999, 0.0, 0.3, 9.0])
    return torch.cat([edges, 8 * torch.rand(500, generator=gen) - 7]).to(f64)


def test_piecewise_linear_silu_equals_lava_dls_forward_and_gradient():
    x = _points().requires_grad_()
    ours = piecewise_linear_silu(x)
    x_ref = x.detach().clone().requires_grad_()
    theirs = _lava_pl_silu(x_ref)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-15)
    weights = torch.linspace(-1, 2, len(x), dtype=f64)
    (ours * weights).sum().backward()
    (theirs * weights).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=0, atol=1e-15)
    # the three pieces by hand: x, -0.1 (x + 5), 0 (and slopes 1, -0.1, 0)
    values = piecewise_linear_silu(torch.tensor([1.5, -0.5, -3.0, -6.0], dtype=f64))
    torch.testing.assert_close(values, torch.tensor([1.5, -0.5, -0.2, 0.0], dtype=f64))
    assert set(x.grad.div(weights).round(decimals=9).tolist()) == {1.0, -0.1, 0.0}
    probe = torch.tensor([-6.0, -3.0, 0.5], dtype=f64, requires_grad=True)
    assert torch.autograd.gradcheck(piecewise_linear_silu, (probe,))


def test_relu1_equals_lava_dls_clamp():
    x = _points().requires_grad_()
    ours = ReLU1()(x)
    x_ref = x.detach().clone().requires_grad_()
    theirs = torch.clamp(x_ref, min=0, max=1)  # Lava-DL's ReLU1.forward
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    ours.sum().backward()
    theirs.sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=0, atol=0)
    assert ours.min() == 0 and ours.max() == 1


def test_the_modules_are_the_functions_and_refuse_integer_input():
    x = torch.randn(3, 4, dtype=f64)
    torch.testing.assert_close(PiecewiseLinearSiLU()(x), piecewise_linear_silu(x))
    torch.testing.assert_close(ReLU1()(x), relu1(x))
    for fn in (piecewise_linear_silu, relu1):
        with pytest.raises(DTypeError, match=r"expects a floating-point tensor, got torch\.int64"):
            fn(torch.ones(3, dtype=torch.long))


def _conv_norm_activation(activation_layer: type[nn.Module]) -> nn.Sequential:
    """A block built as torchvision's Conv2dNormActivation builds it (its default
    ``inplace=True`` passed to the activation's constructor)."""
    torch.manual_seed(0)
    conv, bn = nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
    return nn.Sequential(conv, bn, activation_layer(inplace=True)).eval()


@pytest.mark.parametrize(
    ("module", "function"), [(PiecewiseLinearSiLU, piecewise_linear_silu), (ReLU1, relu1)]
)
def test_inplace_is_taken_as_lava_dls_take_it_and_other_arguments_are_refused(module, function):
    block = _conv_norm_activation(module)
    assert "inplace=True" in repr(block[2]) and module(True).inplace
    x = 4 * torch.randn(2, 3, 16, 16)
    pre = block[1](block[0](x))
    kept = pre.clone()
    out = block[2](pre)
    assert torch.equal(out, function(kept)) and out.data_ptr() != pre.data_ptr()
    assert torch.equal(pre, kept)  # as Lava-DL's: the input is left alone
    assert torch.equal(block(x), nn.Sequential(block[0], block[1], module())(x))
    with pytest.raises(ConfigurationError, match=rf"{module.__name__}: inplace must be a bool"):
        module(inplace="yes")
    with pytest.raises(TypeError, match="unexpected keyword argument 'slope'"):
        module(slope=0.2)


def test_in_a_sigma_delta_network_they_equal_the_ann_at_theta_zero():
    torch.manual_seed(0)
    ann = nn.Sequential(
        nn.Conv2d(2, 6, 3, padding=1), nn.BatchNorm2d(6), PiecewiseLinearSiLU(),
        nn.Conv2d(6, 4, 3, padding=1), ReLU1(), nn.Flatten(), nn.Linear(4 * 36, 5),
    ).double().eval()  # fmt: skip
    with torch.no_grad():
        ann[1].running_mean.uniform_(-1, 1)
        ann[1].weight.uniform_(3.0, 6.0)  # inputs on all three pieces of the SiLU
    sdnn, report = to_sigma_delta(ann)
    actions = {e.name: e.action for e in report.entries}
    assert report.ok and actions["2"] == actions["4"] == "converted"
    assert sum(isinstance(m, SigmaDelta) for m in sdnn.modules()) == 2
    x = (4 * torch.rand(7, 3, 2, 6, 6, dtype=f64) - 2).requires_grad_()
    expected = torch.stack([ann(step) for step in x])
    torch.testing.assert_close(sdnn(x), expected, rtol=0, atol=1e-11)
    pieces = ann[:2](x[0].detach())
    assert (pieces < -5).any() and ((pieces < -0.5) & (pieces > -5)).any() and (pieces > 0).any()


def test_convert_names_them_whole_and_a_users_rule_converts_relu1():
    """Rate-coded ``convert`` has no neuron for them: each is named as its module (not
    traced into the clamp calls of its forward) with to_sigma_delta as the way; a user's
    rule for ReLU1 (an IF neuron of the calibrated scale, as docs/conversion.md's Clip)
    still converts it, and the rates approach the ANN."""
    torch.manual_seed(0)
    layers = [nn.Linear(12, 24), nn.ReLU(), nn.Linear(24, 24), ReLU1(), nn.Linear(24, 16)]
    ann = nn.Sequential(*layers, PiecewiseLinearSiLU(), nn.Linear(16, 3)).eval()
    x = torch.rand(128, 12)
    with pytest.raises(ConversionError) as caught:
        convert(ann, x)
    message = str(caught.value)
    assert "3 (ReLU1)" in message and "5 (PiecewiseLinearSiLU)" in message
    assert message.count("to_sigma_delta") == 2 and "clamp" not in message
    _, report = convert(ann, x, strict=False)
    assert [(e.name, e.source) for e in report.unconverted] == [
        ("3", "ReLU1"), ("5", "PiecewiseLinearSiLU")
    ]  # fmt: skip
    clipped = ConversionRule(lambda site: ConversionIFNode(site.scale), name="clipped IF")
    head = nn.Sequential(*list(ann)[:4], nn.Linear(24, 3)).eval()
    snn, report = convert(head, x, rules={ReLU1: clipped})
    assert [e.name for e in report.converted] == ["1", "3"] and not report.unconverted
    with torch.no_grad():
        assert (snn.rate(x, 256) - head(x)).abs().max() < 0.05
