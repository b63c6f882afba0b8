"""Weight-standardised layers (``WSConv2d``, ``WSLinear``) and the 3-d per-step batch
norms (``BatchNormThroughTime3d``, ``TemporalEffectiveBatchNorm3d``).

The standardised weight against its formula (a loop over output channels); the layers
against SpikingJelly 2.0 in float64 (its ``state_dict`` loaded: outputs, gradients of
the input and of every parameter, running statistics); float64 gradcheck; the shared
``standardize_weight`` that the event-driven layers also use; single-step streaming
equal to one multi-step call; the errors.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sj_checks import F64, TIGHT, grads, sj
from spikeflow import layers as L
from spikeflow.energy._pairs import layer_weight
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.functional import streaming
from spikeflow.layers.weight_standardization import standardize_weight

# -- weight standardisation ----------------------------------------------------------------


def test_standardized_weight_by_a_loop(float64):
    conv = L.WSConv2d(3, 5, 3, eps=1e-3)
    with torch.no_grad():
        conv.gain.copy_(torch.linspace(0.5, 2.0, 5).view(5, 1, 1, 1))
    got = conv.standardized_weight()
    for o in range(5):
        w = conv.weight[o].flatten()
        n = w.numel()  # fan-in 27
        mean = w.sum() / n
        var = ((w - mean) ** 2).sum() / (n - 1)
        want = conv.gain[o, 0, 0, 0] * (w - mean) / torch.sqrt(var * n + 1e-3)
        torch.testing.assert_close(got[o].flatten(), want, **TIGHT)
        assert abs(got[o].sum().item()) < 1e-12  # zero mean per output channel
        # ‖Ŵ[o]‖² = g² (n − 1) var / (n var + eps): about g² for the fan-in scaling
        norm2 = got[o].square().sum() / conv.gain[o, 0, 0, 0] ** 2
        torch.testing.assert_close(norm2, (n - 1) * var / (n * var + 1e-3), **TIGHT)
    assert torch.equal(conv.get_weight(), got)
    # the layer computes with it, per step
    x = torch.randn(4, 2, 3, 6, 6)
    want = torch.stack([nn.functional.conv2d(x_t, got, conv.bias) for x_t in x])
    torch.testing.assert_close(conv(x), want, **TIGHT)
    # the shared step without fan-in scaling: unit sample standard deviation
    unit = standardize_weight(conv.weight, 0.0)
    torch.testing.assert_close(unit.flatten(1).std(dim=1), torch.ones(5), **TIGHT)
    # energy counts the weight the layer computes with
    assert torch.equal(layer_weight(conv), got)  # (standardized_weight, as event-driven)


@pytest.mark.parametrize("gain", [True, False])
def test_ws_layers_equal_spikingjelly(float64, gain):
    layer = sj("layer")
    cases = [
        (
            layer.WSConv2d(3, 6, 3, padding=1, stride=2, groups=3, step_mode="m", gain=gain),
            L.WSConv2d(3, 6, 3, padding=1, stride=2, groups=3, gain=gain),
            torch.randn(4, 2, 3, 9, 9),
        ),
        (layer.WSLinear(10, 7, gain=gain), L.WSLinear(10, 7, gain=gain), torch.randn(4, 2, 10)),
    ]
    for theirs, ours, x in cases:
        if gain:
            with torch.no_grad():
                theirs.gain.uniform_(0.5, 2.0)  # not the initial ones: the loading matters
        ours.load_state_dict(theirs.state_dict())
        assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
        x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
        want, got = theirs(x1), ours(x2)
        torch.testing.assert_close(got, want, **TIGHT)
        g = torch.randn_like(want)
        grads_theirs = grads(want, [x1, *theirs.parameters()], g)
        grads_ours = grads(got, [x2, *ours.parameters()], g)
        for a, b in zip(grads_ours, grads_theirs, strict=True):
            assert a.abs().sum() > 0
            torch.testing.assert_close(a, b, **TIGHT)


def test_ws_layers_gradcheck_and_single_step():
    conv = L.WSConv2d(2, 3, 2, dtype=F64)
    x = torch.randn(2, 1, 2, 3, 3, dtype=F64, requires_grad=True)
    params = dict(conv.named_parameters())

    def run(x, weight, gain):
        return torch.func.functional_call(conv, {**params, "weight": weight, "gain": gain}, (x,))

    w = conv.weight.detach().clone().requires_grad_()
    gain = torch.rand(3, 1, 1, 1, dtype=F64).add(0.5).requires_grad_()
    assert torch.autograd.gradcheck(run, (x, w, gain))
    fc = L.WSLinear(4, 3, dtype=F64)
    seq = torch.randn(5, 2, 4, dtype=F64)
    whole = fc(seq)
    fc.step_mode = "s"
    torch.testing.assert_close(torch.stack([fc(s) for s in seq]), whole, **TIGHT)


def test_ws_layers_errors():
    with pytest.raises(ConfigurationError, match="fan-in, which must be >= 2"):
        L.WSLinear(1, 4)
    with pytest.raises(ConfigurationError, match="eps"):
        L.WSConv2d(2, 3, 3, eps=-1.0)
    with pytest.raises(ConfigurationError, match="gain must be True or False"):
        L.WSLinear(3, 4, gain="yes")
    with pytest.raises(ShapeError, match="missing the time dimension"):
        L.WSConv2d(2, 3, 3)(torch.randn(2, 2, 5, 5))
    assert L.WSLinear(3, 4, gain=False).gain is None


# -- BNTT and TEBN, 3-d --------------------------------------------------------------------


def _normalise(x, dims, eps=1e-5):
    mean = x.mean(dim=dims, keepdim=True)
    var = x.var(dim=dims, unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps)


def test_bntt3d_and_tebn3d_by_hand(float64):
    x = torch.randn(3, 4, 2, 3, 4, 4) + torch.arange(3.0).view(3, 1, 1, 1, 1, 1)
    bntt = L.BatchNormThroughTime3d(2, T=3)
    with torch.no_grad():
        for t in range(3):
            bntt.bn[t].weight.fill_(t + 1.0)
    y = bntt(x)
    for t in range(3):  # per-step statistics over (B, D, H, W)
        torch.testing.assert_close(y[t], (t + 1.0) * _normalise(x[t], (0, 2, 3, 4)), **TIGHT)
    tebn = L.TemporalEffectiveBatchNorm3d(2, T=3)
    with torch.no_grad():
        tebn.p.copy_(torch.tensor([0.5, 1.0, 2.0]))
    want = torch.tensor([0.5, 1.0, 2.0]).view(3, 1, 1, 1, 1, 1) * _normalise(x, (0, 1, 3, 4, 5))
    torch.testing.assert_close(tebn(x), want, **TIGHT)


def _our_name(name: str) -> str:
    """SpikingJelly's state-dict key as spikeflow's (docs/migration.md's row)."""
    if name.startswith("bn_list."):
        return name.replace("bn_list.", "bn.")
    return "p" if name == "scale" else "bn." + name


def test_bntt3d_and_tebn3d_equal_spikingjelly(float64):
    layer = sj("layer")
    x = torch.randn(4, 3, 2, 3, 4, 4) * 2 + 0.5
    theirs = layer.BatchNormThroughTime3d(4, 2, step_mode="m")
    ours = L.BatchNormThroughTime3d(2, T=4)
    with torch.no_grad():
        for bn in theirs.bn_list:
            bn.weight.uniform_(0.5, 1.5)
    ours.load_state_dict({_our_name(k): v for k, v in theirs.state_dict().items()})
    theirs_tebn = layer.TemporalEffectiveBatchNorm3d(4, 2)
    ours_tebn = L.TemporalEffectiveBatchNorm3d(2, T=4)
    with torch.no_grad():
        theirs_tebn.scale.uniform_(0.5, 1.5)
        theirs_tebn.weight.uniform_(0.5, 1.5)
        theirs_tebn.bias.uniform_(-0.5, 0.5)
    state = theirs_tebn.state_dict()
    ours_tebn.load_state_dict({_our_name(k): v for k, v in state.items()})
    for theirs_m, ours_m in ((theirs, ours), (theirs_tebn, ours_tebn)):
        for mode in ("train", "eval"):
            getattr(theirs_m, mode)()
            getattr(ours_m, mode)()
            x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
            if hasattr(theirs_m, "reset"):
                theirs_m.reset()
            want, got = theirs_m(x1), ours_m(x2)
            torch.testing.assert_close(got, want, **TIGHT)
            g = torch.randn_like(want)
            names = [n for n, _ in theirs_m.named_parameters()]
            ours_params = dict(ours_m.named_parameters())
            assert len(ours_params) == len(names)
            grads_theirs = grads(want, [x1, *theirs_m.parameters()], g)
            grads_ours = grads(got, [x2, *(ours_params[_our_name(n)] for n in names)], g)
            for a, b in zip(grads_ours, grads_theirs, strict=True):
                assert a.abs().sum() > 0
                torch.testing.assert_close(a, b, **TIGHT)
        buffers_theirs = [b for n, b in theirs_m.named_buffers() if "running" in n]
        buffers_ours = [b for n, b in ours_m.named_buffers() if "running" in n]
        assert len(buffers_ours) == len(buffers_theirs) > 0
        for a, b in zip(buffers_ours, buffers_theirs):
            torch.testing.assert_close(a, b, **TIGHT)


def test_bntt3d_and_tebn3d_streaming_and_errors():
    x = torch.randn(3, 2, 2, 2, 3, 3)
    for m in (L.BatchNormThroughTime3d(2, T=3), L.TemporalEffectiveBatchNorm3d(2, T=3).eval()):
        whole = m(x)
        m.step_mode = "s"
        with streaming(m):
            stepped = torch.stack([m(s) for s in x])
        torch.testing.assert_close(stepped, whole)
        m.step_mode = "m"
        with pytest.raises(ShapeError, match=r"\[T, B, C, D, H, W\]"):
            m(x[0])
        with pytest.raises(ShapeError, match="T=3"):
            m(x[:2])


def test_pruning_and_quantization_refuse_weight_standardised_layers() -> None:
    from spikeflow import neurons
    from spikeflow.prune import apply_gradient_rewiring, apply_soft_threshold
    from spikeflow.quant import apply_weight_quantization

    net = nn.Sequential(L.WSLinear(4, 8), neurons.IFNode(), L.Linear(8, 2))
    for apply, word in ((apply_gradient_rewiring, "pruned"), (apply_soft_threshold, "pruned"),
                        (lambda m: apply_weight_quantization(m, 4), "quantized")):  # fmt: skip
        with pytest.raises(ConfigurationError, match=f"'0' is a weight-standardised.*{word}"):
            apply(net)
