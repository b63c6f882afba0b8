"""The adjoint neurons' layers (spikeflow.learn.adjoint_layers): the functional calls
with the layer's weights (spikes, membrane and every gradient), ``jumps`` passed on,
errors named, and a small model on real data trained through them."""

from __future__ import annotations

import pytest
import torch

from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.learn import (
    CobaLIFAdjointParameters,
    EventPropCobaLIF,
    EventPropLIF,
    EventPropLSNN,
    EventPropRefracLIF,
    LIFAdjointParameters,
    LIFRefracAdjointParameters,
    LSNNAdjointParameters,
    coba_lif_adjoint,
    lif_refrac_adjoint,
    lsnn_adjoint,
)

F64 = torch.float64
REFRAC = LIFRefracAdjointParameters(LIFAdjointParameters(v_leak=0.2, v_reset=-0.1), 2.0)
LSNN = LSNNAdjointParameters(tau_adapt_inv=20.0, beta=0.5)
COBA = CobaLIFAdjointParameters(
    tau_syn_exc_inv=200.0, tau_syn_inh_inv=100.0, c_m_inv=100.0, g_l=1.0, e_rev_I=-1.0,
    e_rev_E=5.0, v_rest=0.0, v_reset=0.0, v_thresh=1.0, dt=1e-3,
)  # fmt: skip


def _layer(kind: str, jumps: str = "eventprop"):
    """(layer, the functional call on (x, W_in, W_rec or None))."""
    torch.manual_seed(0)
    if kind == "refrac":
        layer = EventPropRefracLIF(5, 4, True, REFRAC, jumps, weight_scale=6.0)
        return layer, lambda x, w, r: lif_refrac_adjoint(x, REFRAC, w, r, jumps)
    if kind == "lsnn":
        layer = EventPropLSNN(5, 4, True, LSNN, jumps, weight_scale=60.0)
        return layer, lambda x, w, r: lsnn_adjoint(x, LSNN, w, r, jumps)
    layer = EventPropCobaLIF(5, 4, COBA, weight_scale=3.0)
    return layer, lambda x, w, r: coba_lif_adjoint(x @ w.t(), COBA)


@pytest.mark.parametrize(("kind", "jumps"), [("refrac", "eventprop"), ("refrac", "norse"),
                                             ("lsnn", "eventprop"), ("lsnn", "norse"),
                                             ("coba", "eventprop")])  # fmt: skip
def test_layer_is_the_functional_call_with_its_weights(kind: str, jumps: str) -> None:
    layer, functional = _layer(kind, jumps)
    layer = layer.double()
    x = (torch.rand(30, 3, 5, dtype=F64) < 0.4).to(F64).requires_grad_()
    cz, cv = torch.randn(2, 30, 3, 4, dtype=F64)
    z, v = layer(x, return_voltage=True)
    assert torch.equal(layer(x), z)
    assert 0.05 < z.mean() < 0.9
    params = [p for p in (layer.input_weights, layer.recurrent_weights) if p is not None]
    assert len(params) == (1 if kind == "coba" else 2)
    grads = torch.autograd.grad((z * cz).sum() + (v * cv).sum(), [x, *params])
    weights = [p.detach().clone().requires_grad_() for p in params]
    z_f, v_f = functional(x, weights[0], weights[1] if len(weights) > 1 else None)
    grads_f = torch.autograd.grad((z_f * cz).sum() + (v_f * cv).sum(), [x, *weights])
    assert torch.equal(z, z_f) and torch.equal(v, v_f)
    for mine, expected in zip(grads, grads_f):
        assert expected.abs().max() > 0
        torch.testing.assert_close(mine, expected, rtol=0, atol=0)
    if kind != "coba":  # the layer passes jumps on: the other adjoint differs
        other = "norse" if jumps == "eventprop" else "eventprop"
        z_o, v_o = _layer(kind, other)[0].double()(x, return_voltage=True)
        d_other = torch.autograd.grad((z_o * cz).sum() + (v_o * cv).sum(), x)[0]
        assert not torch.allclose(d_other, grads[0])


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ConfigurationError, match="out_features"):
        EventPropRefracLIF(3, 0)
    with pytest.raises(ConfigurationError, match="LIFRefracAdjointParameters"):
        EventPropRefracLIF(3, 2, p=LIFAdjointParameters())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="jumps"):
        EventPropLSNN(3, 2, jumps="exact")
    with pytest.raises(ConfigurationError, match="tau_adapt_inv"):
        EventPropLSNN(3, 2, p=LSNNAdjointParameters(tau_adapt_inv=-1.0))
    with pytest.raises(ConfigurationError, match="weight_scale"):
        EventPropCobaLIF(3, 2, weight_scale=0.0)
    with pytest.raises(ConfigurationError, match="beta"):  # a threshold that drops
        EventPropLSNN(3, 2, p=LSNNAdjointParameters(beta=-0.1))
    with pytest.raises(ConfigurationError, match="CobaLIFAdjointParameters"):
        EventPropCobaLIF(3, 2, True)  # type: ignore[arg-type]  # no recurrent flag
    with pytest.raises(ShapeError, match="x has 4 features per step, the weights take 3"):
        EventPropCobaLIF(3, 2)(torch.rand(5, 1, 4))
    with pytest.raises(ShapeError, match="x has 4 features"):
        EventPropLSNN(3, 2, recurrent=True)(torch.rand(5, 1, 4))
    with pytest.raises(DTypeError, match="input_weights"):
        EventPropCobaLIF(3, 2)(torch.rand(5, 1, 3, dtype=F64))
    nan_input = torch.rand(5, 1, 3)
    nan_input[4, 0, 1] = float("nan")
    for layer in (EventPropRefracLIF(3, 2), EventPropLSNN(3, 2), EventPropCobaLIF(3, 2)):
        with pytest.raises(
            ConfigurationError, match=r"x must be finite .*nan at index \[4, 0, 1\]"
        ):
            layer(nan_input)
    diverged = EventPropLSNN(3, 2, recurrent=True)
    with torch.no_grad():
        diverged.recurrent_weights[1, 0] = float("inf")
    with pytest.raises(ConfigurationError, match=r"recurrent_weights must be finite .*inf"):
        diverged(torch.rand(5, 1, 3))
    text = repr(EventPropRefracLIF(3, 2, recurrent=True, p=REFRAC))
    assert "recurrent=True" in text and "rho_reset=2.0" in text and "v_leak=0.2" in text


@pytest.mark.parametrize("layer", [EventPropLIF, EventPropRefracLIF, EventPropLSNN])
def test_weights_are_drawn_with_the_documented_spread(layer: type) -> None:
    """W_in ~ N(0, scale² 2/in), W_rec ~ N(0, scale² 2/out): each sample's standard
    deviation within 3% (about 10 standard errors at these sizes)."""
    torch.manual_seed(0)
    model = layer(300, 400, recurrent=True, weight_scale=0.5)
    for weights, fan_in in ((model.input_weights, 300), (model.recurrent_weights, 400)):
        weights = weights.detach()
        expected = 0.5 * (2.0 / fan_in) ** 0.5
        assert abs(float(weights.std()) / expected - 1) < 0.03
        assert abs(float(weights.mean())) < 0.03 * expected
    assert EventPropLSNN(3, 2).recurrent_weights is None


def test_a_model_of_the_layers_trains_on_digits() -> None:
    """Real data, small: 200 of scikit-learn's digits as constant inputs for 20 steps,
    two adjoint layers (refractory LIF, recurrent; then LSNN) and a trainable readout of
    the second layer's spike counts; Adam on everything (measured: 2.30 -> 1.45 in 8
    steps); every weight gets a gradient."""
    datasets = pytest.importorskip("sklearn.datasets")
    digits = datasets.load_digits()
    x = torch.tensor(digits.data[:200], dtype=torch.float32)[None].expand(20, -1, -1) / 16
    y = torch.tensor(digits.target[:200])
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        EventPropRefracLIF(64, 40, recurrent=True),
        EventPropLSNN(40, 30, p=LSNNAdjointParameters(tau_adapt_inv=20.0, beta=0.2),
                      weight_scale=4.0),
    )  # fmt: skip
    readout = torch.nn.Linear(30, 10)
    optimizer = torch.optim.Adam([*model.parameters(), *readout.parameters()], lr=0.02)
    losses = []
    for _ in range(8):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(readout(model(x).sum(0)), y)
        loss.backward()
        if not losses:
            for name, weight in model.named_parameters():
                assert weight.grad is not None and weight.grad.abs().max() > 0, name
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
