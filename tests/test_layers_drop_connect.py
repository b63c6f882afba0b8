"""``layers.DropConnectLinear``: DropConnect (Wan et al. 2013), SpikingJelly 2.0's layer.

Against SpikingJelly in float64 with the same seed: initial weights, training outputs
(one mask per sequence and a new mask per step), single-step streaming, eval-mode
samples and gradients. Against a loop over samples and steps with the drawn masks
(outputs and gradients) and gradcheck; one mask shared by all steps of a sequence and
carried while streaming; the keep rate; the expectation at eval (the mean, the
Gaussian sample mean, the ReLU of a Gaussian by its closed form, the average of many
training masks); inner dims; the errors.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from spikeflow import functional as F
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError, StateError
from spikeflow.layers import DropConnectLinear
from spikeflow.neurons import LIFNode

F64 = torch.float64


def sj_layer():
    return pytest.importorskip(
        "spikingjelly.activation_based.layer", reason="SpikingJelly is not installed"
    )


def pair(seed=3, **kwargs):
    """SpikingJelly's layer and ours, built from the same seed."""
    layer = sj_layer()
    torch.manual_seed(seed)
    theirs = layer.DropConnectLinear(12, 7, **kwargs).double()
    torch.manual_seed(seed)
    ours = DropConnectLinear(12, 7, **kwargs).double()
    return theirs, ours


def reference(layer, x_seq, weight_masks, bias_masks):
    """``a((M ⊙ W) x + m ⊙ b)`` by a loop over steps and samples (masks per step)."""
    out = []
    for t, x in enumerate(x_seq):
        rows = []
        for b in range(x.shape[0]):
            u = (layer.weight * weight_masks[t][b]) @ x[b]
            if layer.bias is not None:
                u = u + layer.bias * bias_masks[t][b]
            rows.append(u)
        out.append(torch.stack(rows))
    u = torch.stack(out)
    return u if layer.activation is None else layer.activation(u)


@pytest.mark.parametrize("invariant", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_training_equals_spikingjelly(invariant, bias):
    theirs, ours = pair(invariant=invariant, bias=bias, p=0.3, step_mode="m")
    assert torch.equal(ours.weight, theirs.weight)
    if bias:
        assert torch.equal(ours.bias, theirs.bias)
    x = torch.randn(5, 4, 12, dtype=F64)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    torch.manual_seed(11)
    want = theirs(x1)
    torch.manual_seed(11)
    got = ours(x2)  # one batched product for all steps: float64 rounding apart
    torch.testing.assert_close(got, want, rtol=1e-13, atol=1e-14)
    assert (want > 0).double().mean() > 0.2  # the ReLU lets enough through to compare
    g = torch.randn_like(want)
    params_t = [x1, theirs.weight] + ([theirs.bias] if bias else [])
    params_o = [x2, ours.weight] + ([ours.bias] if bias else [])
    for a, b in zip(
        torch.autograd.grad((got * g).sum(), params_o),
        torch.autograd.grad((want * g).sum(), params_t),
    ):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_single_step_streaming_equals_spikingjelly():
    theirs, ours = pair(invariant=True, step_mode="s")
    x = torch.randn(6, 3, 12, dtype=F64)
    torch.manual_seed(5)
    want = torch.stack([theirs(step) for step in x])
    torch.manual_seed(5)
    with F.streaming(ours):
        got = torch.stack([ours(step) for step in x])
    torch.testing.assert_close(got, want, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("activation", ["relu", None])
def test_eval_samples_equal_spikingjelly(activation):
    act = nn.ReLU() if activation else None
    theirs, ours = pair(activation=act, p=0.4, samples_num=64, step_mode="m")
    theirs.eval(), ours.eval()
    x = torch.randn(3, 4, 12, dtype=F64)
    torch.manual_seed(2)
    want = theirs(x)
    torch.manual_seed(2)
    got = ours(x)
    torch.testing.assert_close(got, want, rtol=1e-13, atol=1e-13)
    assert not got.requires_grad  # sampled: no gradient, as SpikingJelly's


def test_state_dict_loads_from_spikingjelly():
    theirs, _ = pair(seed=0)
    ours = DropConnectLinear(12, 7).double()
    ours.load_state_dict(theirs.state_dict())
    assert torch.equal(ours.weight, theirs.weight)


@pytest.mark.parametrize("bias", [True, False])
def test_one_mask_per_sequence_equals_the_reference_loop(bias):
    layer = DropConnectLinear(12, 7, bias=bias, p=0.5).double()
    x = torch.randn(6, 4, 12, dtype=F64, requires_grad=True)
    with F.streaming(layer):
        y = layer(x)
        wm, bm = layer.weight_mask, layer.bias_mask
    assert wm.shape == (4, 7, 12) and wm.dtype == torch.bool
    assert (bm is None) == (not bias)
    want = reference(layer, x, [wm] * 6, [bm] * 6)
    torch.testing.assert_close(y, want, rtol=1e-13, atol=1e-13)
    # gradients: W gets sum_{t,b} M_b ⊙ (g x^T) only where the ReLU passed
    g = torch.randn_like(y)
    params = [x, layer.weight] + ([layer.bias] if bias else [])
    for a, b in zip(
        torch.autograd.grad((y * g).sum(), params), torch.autograd.grad((want * g).sum(), params)
    ):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    # each sample has its own mask; a dropped weight gets no gradient from that sample
    assert not torch.equal(wm[0], wm[1])
    layer.activation = None
    x1 = torch.randn(1, 4, 12, dtype=F64)
    with F.streaming(layer):
        layer(x1)
        wm = layer.weight_mask
        (gw,) = torch.autograd.grad(layer(x1)[:, :1].sum(), layer.weight)
    torch.testing.assert_close(gw, wm[0] * x1[0, 0], rtol=0, atol=1e-15)


def test_mask_shared_by_all_steps_and_redrawn_per_step_or_call():
    layer = DropConnectLinear(32, 16, activation=None).double()
    x = torch.randn(1, 8, 32, dtype=F64).expand(5, -1, -1)  # the same input at every step
    y = layer(x)
    for t in range(1, 5):
        torch.testing.assert_close(y[t], y[0], rtol=1e-14, atol=1e-14)
    assert (layer(x)[0] - y[0]).abs().max() > 0.1  # a new call (not streaming): a new mask
    layer.invariant = False
    y = layer(x)
    assert (y[1] - y[0]).abs().max() > 0.1  # a new mask at every step
    # while streaming, single steps keep the mask until a reset
    layer.invariant, layer.step_mode = True, "s"
    with F.streaming(layer):
        first = layer(x[0])
        assert torch.equal(layer(x[0]), first)
        layer.reset()
        assert not torch.equal(layer(x[0]), first)


def test_keep_rate_and_no_rescaling():
    layer = DropConnectLinear(64, 64, p=0.3, activation=None).double()
    weight_mask, bias_mask = layer.draw_masks(50)
    n = weight_mask.numel()
    kept = weight_mask.double().mean().item()
    assert abs(kept - 0.7) < 5 * math.sqrt(0.21 / n)
    assert abs(bias_mask.double().mean().item() - 0.7) < 5 * math.sqrt(0.21 / bias_mask.numel())
    # kept weights are the weights themselves (SpikingJelly's: no 1/(1-p) scaling)
    x = torch.zeros(1, 1, 64, dtype=F64)
    x[0, 0, 5] = 1.0
    with F.streaming(layer):
        y = layer(x)[0, 0]
        wm, bm = layer.weight_mask[0], layer.bias_mask[0]
    torch.testing.assert_close(y, layer.weight[:, 5] * wm[:, 5] + layer.bias * bm)


def test_keep_rate_in_bfloat16():
    # bfloat16 uniforms sit on a coarse grid: drawn in the weight's dtype, p = 0.1 kept
    # 89.8% of the connections (0.2% off: 35 standard errors at this size)
    layer = DropConnectLinear(100, 100, p=0.1).bfloat16()
    torch.manual_seed(0)
    weight_mask, bias_mask = layer.draw_masks(300)
    n = weight_mask.numel()
    assert abs(weight_mask.double().mean().item() - 0.9) < 5 * math.sqrt(0.09 / n)
    assert bias_mask.shape == (300, 100)


def test_each_layer_has_its_own_default_activation():
    # the signature's nn.ReLU() was one module shared by every layer made with the
    # default: named_modules() listed it under the first layer only, and a hook on one
    # layer's activation fired for the others
    net = nn.Sequential(DropConnectLinear(4, 5), DropConnectLinear(5, 3))
    assert isinstance(net[1].activation, nn.ReLU)
    assert net[0].activation is not net[1].activation
    assert "1.activation" in dict(net.named_modules())
    shared = nn.Tanh()  # a module the caller passes is used as it is
    assert DropConnectLinear(4, 5, activation=shared).activation is shared


@pytest.mark.parametrize("invariant", [True, False])
def test_an_empty_batch(invariant):
    layer = DropConnectLinear(6, 4, invariant=invariant)
    assert layer(torch.zeros(3, 0, 6)).shape == (3, 0, 4)
    assert layer(torch.zeros(3, 0, 5, 6)).shape == (3, 0, 5, 4)
    layer.step_mode = "s"
    with F.streaming(layer):
        assert layer(torch.zeros(0, 6)).shape == (0, 4)
    layer.eval()
    with F.streaming(layer):
        assert layer(torch.zeros(0, 2, 6)).shape == (0, 2, 4)


def test_expectation_at_eval():
    torch.manual_seed(1)
    layer = DropConnectLinear(40, 10, p=0.4, activation=None, samples_num=0).double().eval()
    x = torch.randn(2, 6, 40, dtype=F64)
    mean = 0.6 * (x @ layer.weight.T + layer.bias)
    torch.testing.assert_close(layer(x), mean, rtol=1e-13, atol=1e-13)  # E[u], exactly
    # the average of training outputs over many masks (one per sample of a batch of
    # copies of one input) tends to the same mean
    layer.train()
    average = layer(x[:1, :1].expand(1, 3000, 40)).mean(1)[0]
    var = 0.24 * (x[0, 0].square() @ layer.weight.T.square() + layer.bias.square())
    assert ((average - mean[0, 0]).abs() < 5 * (var / 3000).sqrt()).all()
    # sampled: within a few standard errors of the mean
    layer.eval()
    layer.samples_num = 4096
    sampled = layer(x)
    stderr = (0.24 * (x.square() @ layer.weight.T.square() + layer.bias.square()) / 4096).sqrt()
    assert ((sampled - mean).abs() < 5 * stderr).all()
    assert not torch.equal(sampled, mean)


def test_eval_with_relu_matches_the_gaussian_closed_form():
    # E[ReLU(u)] for u ~ N(m, s^2) is m Phi(m/s) + s phi(m/s)
    torch.manual_seed(4)
    layer = DropConnectLinear(30, 8, p=0.5, samples_num=20000).double().eval()
    x = torch.randn(3, 30, dtype=F64).unsqueeze(0)
    m = 0.5 * (x @ layer.weight.T + layer.bias)
    s = (0.25 * (x.square() @ layer.weight.T.square() + layer.bias.square())).sqrt()
    normal = torch.distributions.Normal(torch.zeros((), dtype=F64), torch.ones((), dtype=F64))
    closed = m * normal.cdf(m / s) + s * normal.log_prob(m / s).exp()
    got = layer(x)
    assert (got - closed).abs().max() < 5 * s.max() / math.sqrt(20000)
    assert not torch.allclose(got, torch.relu(m), atol=1e-3)  # not the ReLU of the mean
    layer.samples_num = 0
    torch.testing.assert_close(layer(x), torch.relu(m))
    # a zero variance (an all-zero input without bias) gives the mean, not an error
    nobias = DropConnectLinear(30, 8, bias=False).double().eval()
    assert torch.equal(nobias(torch.zeros(1, 2, 30, dtype=F64)), torch.zeros(1, 2, 8, dtype=F64))


def test_gradcheck_with_a_fixed_mask():
    layer = DropConnectLinear(5, 3, activation=nn.Tanh()).double()
    x = torch.randn(3, 2, 5, dtype=F64, requires_grad=True)
    with F.streaming(layer):
        layer(x)  # draws the mask kept for the calls below

        def run(x, w, b):
            return torch.func.functional_call(layer, {"weight": w, "bias": b}, (x,))

        w = layer.weight.detach().clone().requires_grad_()
        b = layer.bias.detach().clone().requires_grad_()
        assert torch.autograd.gradcheck(run, (x, w, b))


def test_inner_dims():
    layer = DropConnectLinear(6, 4).double()
    x = torch.randn(3, 2, 5, 6, dtype=F64)  # [T, B, N, in]
    with F.streaming(layer):
        y = layer(x)
        wm, bm = layer.weight_mask, layer.bias_mask
    for n in range(5):
        want = reference(layer, x[:, :, n], [wm] * 3, [bm] * 3)
        torch.testing.assert_close(y[:, :, n], want, rtol=1e-13, atol=1e-13)
    layer.eval()
    assert layer(x).shape == (3, 2, 5, 4)


def test_runs_under_autocast_after_a_layer_autocast_made_bfloat16():
    # --amp bf16: the nn.Linear before it gives bfloat16; the dtype check refused that.
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 6), DropConnectLinear(6, 4, activation=None))
    x = torch.randn(3, 2, 6)
    torch.manual_seed(1)
    want = net(x)
    torch.manual_seed(1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = net(x)
    assert not torch.equal(got.float(), want)  # computed in bfloat16, the same masks
    torch.testing.assert_close(got.float(), want, rtol=0.05, atol=0.05)
    net.eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert net(x).shape == (3, 2, 4)


def test_errors():
    with pytest.raises(ConfigurationError, match="p must"):
        DropConnectLinear(4, 3, p=1.0)
    with pytest.raises(ConfigurationError, match="samples_num"):
        DropConnectLinear(4, 3, samples_num=-1)
    with pytest.raises(ConfigurationError, match="in_features"):
        DropConnectLinear(0, 3)
    with pytest.raises(ConfigurationError, match="carries state"):
        DropConnectLinear(4, 3, activation=LIFNode())
    with pytest.raises(ConfigurationError, match="activation"):
        DropConnectLinear(4, 3, activation=torch.relu)
    layer = DropConnectLinear(4, 3)
    with pytest.raises(ShapeError, match="in_features = 4"):
        layer(torch.ones(2, 3, 5))
    with pytest.raises(ShapeError, match="time dimension"):
        layer(torch.ones(3, 4))
    with pytest.raises(DTypeError, match="dtype"):
        layer(torch.ones(2, 3, 4, dtype=F64))
    with pytest.raises(StateError, match="streaming"):
        DropConnectLinear(4, 3, step_mode="s")(torch.ones(2, 4))
    with F.streaming(layer):
        layer(torch.ones(2, 3, 4))
        with pytest.raises(StateError, match="new sequence"):
            layer(torch.ones(2, 5, 4))  # another batch
    assert "p=0.5, samples_num=1024, invariant=True" in repr(layer)


def test_docs_example():
    text = (Path(__file__).resolve().parents[1] / "docs" / "layers.md").read_text()
    match = re.search(r"<!-- layers: drop-connect\b.*?-->\s*```python\n(.*?)```", text, re.S)
    assert match, "no drop-connect block in docs/layers.md"
    ns: dict = {}
    exec(compile(match.group(1), "docs/layers.md", "exec"), ns)
    assert ns["y"].shape == ns["y_eval"].shape == ns["y_mean"].shape == (8, 4, 10)
