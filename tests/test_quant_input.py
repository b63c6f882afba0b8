"""Quantization of the first layer's real-valued input: fixed steps against the
rounding written out by hand, LSQ's initial step from the first batch and its
gradients against the paper's formulas, the hook on a model zoo network (its output
equals the float network's on the input quantized by hand), removal, and errors."""

from __future__ import annotations

import math

import pytest
import torch

from spikeflow import quant
from spikeflow.errors import ConfigurationError
from spikeflow.models import create_model


def _images(seed=0, shape=(3, 2, 1, 8, 8)) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g, dtype=torch.float64) * 1.2 - 0.1  # a bit outside


def test_a_fixed_step_rounds_and_saturates_like_the_hand_written_rule():
    q = quant.InputQuantizer(3, step=0.25).double()
    x = _images()
    expected = torch.tensor([min(max(round(v / 0.25), 0), 7) * 0.25 for v in x.flatten().tolist()],
                            dtype=torch.float64).reshape(x.shape)  # fmt: skip
    assert torch.equal(q(x), expected)
    signed = quant.InputQuantizer(3, signed=True, step=0.25).double()
    centred = (x - 0.5) * 2
    expected = [min(max(round(v / 0.25), -3), 3) * 0.25 for v in centred.flatten().tolist()]
    assert signed(centred).flatten().tolist() == expected
    levels = signed.integers(centred)
    assert torch.equal(levels.double() * 0.25, signed(centred))
    assert int(levels.min()) == -3 and int(levels.max()) == 3
    assert list(q.buffers()) and not list(q.parameters())  # a fixed step is not trained


def test_a_learned_step_starts_from_the_first_batch_with_the_papers_gradients():
    bits = 4
    qp = 2**bits - 1
    q = quant.InputQuantizer(bits).double()
    x = _images().requires_grad_()
    out = q(x)
    s = q.step.detach()
    assert float(s) == pytest.approx(2 * float(x.detach().abs().mean()) / math.sqrt(qp), rel=1e-12)
    c = torch.randn(x.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    (out * c).sum().backward()
    ratio = (x.detach() / s).flatten().tolist()
    inside = [0 < r < qp for r in ratio]
    dx = torch.tensor([cc if i else 0.0 for cc, i in zip(c.flatten().tolist(), inside)],
                      dtype=torch.float64).reshape(x.shape)  # fmt: skip
    per_sample_step = 1 * 8 * 8  # [T, B, 1, 8, 8]: N leaves out T and B
    g = 1 / math.sqrt(per_sample_step * qp)
    ds = g * sum(cc * ((round(r) - r) if 0 < r < qp else (0 if r <= 0 else qp))
                 for cc, r in zip(c.flatten().tolist(), ratio))  # fmt: skip
    assert any(inside) and not all(inside)  # both sides of the clip
    torch.testing.assert_close(x.grad, dx, rtol=0, atol=1e-12)  # (v/s)·s: an ulp
    assert float(q.step.grad) == pytest.approx(ds, rel=1e-10)
    q(x * 3)  # the step is set once
    assert torch.equal(q.step.detach(), s)


def test_a_model_takes_its_input_quantized_and_lets_it_go():
    torch.manual_seed(0)
    kwargs = {"dropout": 0.0, "neuron_kwargs": {"v_threshold": 0.2}}  # fires untrained
    model = create_model("plif_digits", **kwargs).double().eval()
    reference = create_model("plif_digits", **kwargs).double().eval()
    reference.load_state_dict(model.state_dict())
    assert quant.apply_input_quantization(model, 2, step=0.3) == "features.0"
    x = _images(1)
    by_hand = torch.clamp(torch.round(x / 0.3), 0, 3) * 0.3
    with torch.no_grad():
        spikes = model.features(x)
        assert torch.equal(spikes, reference.features(by_hand))
        assert torch.equal(model(x), reference(by_hand))
        assert 0.02 < float(spikes.mean()) < 0.9
        assert not torch.equal(reference.features(x), spikes)  # it changed something
    with pytest.raises(ConfigurationError, match="quantized already"):
        quant.apply_input_quantization(model, 4)
    assert "features.0.input_quantizer.step" in model.state_dict()
    assert quant.remove_input_quantization(model) == ["features.0"]
    with torch.no_grad():
        assert torch.equal(model.features(x), reference.features(x))


def test_bad_inputs_are_refused_by_name():
    with pytest.raises(ConfigurationError, match="bits must be an integer from 2 to 16"):
        quant.InputQuantizer(1)
    with pytest.raises(ConfigurationError, match="step must be a positive finite number"):
        quant.InputQuantizer(4, step=0.0)
    with pytest.raises(ConfigurationError, match="must be floating point"):
        quant.InputQuantizer(4)(torch.ones(2, 3, dtype=torch.int64))
    with pytest.raises(ConfigurationError, match="NaN or infinite"):
        quant.InputQuantizer(4)(torch.tensor([1.0, float("nan")]))
    with pytest.raises(ConfigurationError, match="not a layer of the model"):
        quant.apply_input_quantization(torch.nn.Linear(2, 2), 4, layer=torch.nn.Linear(2, 2))
    with pytest.raises(ConfigurationError, match="no linear or convolution layer"):
        quant.apply_input_quantization(torch.nn.ReLU(), 4)


def test_nir_export_refuses_a_quantized_input_by_name():
    pytest.importorskip("nir", reason="the nir extra is not installed")
    from torch import nn

    from spikeflow import layers
    from spikeflow.interop import export_to_nir
    from spikeflow.neurons import LIFNode

    net = nn.Sequential(layers.Linear(6, 4), LIFNode())
    quant.apply_input_quantization(net, 4)
    with pytest.raises(ConfigurationError, match="inputs of 0 are quantized"):
        export_to_nir(net, torch.zeros(2, 1, 6))
    quant.remove_input_quantization(net)
    export_to_nir(net, torch.zeros(2, 1, 6))


def test_a_fixed_step_inside_its_range_equals_spikingjellys_step_quantize():
    from sj_checks import TIGHT, sj

    quantize = sj("quantize")
    x = (_images(4) - 0.5) * 6  # within ±(2^15 - 1)·0.05: no level saturates
    x.requires_grad_()
    c = torch.randn(x.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    ours = quant.InputQuantizer(16, signed=True, step=0.05).double()(x)
    theirs = quantize.step_quantize(x, 0.05)
    assert torch.equal(ours, theirs)
    ours_grad, theirs_grad = (torch.autograd.grad((y * c).sum(), x)[0] for y in (ours, theirs))
    torch.testing.assert_close(ours_grad, theirs_grad, **TIGHT)  # ((x/s)·s: an ulp)
