"""QKFormer's Q-K attention: against a loop written from the paper's equations, against
SpikingJelly 2.0's layers (outputs, gradients, state_dict), step modes and errors."""

from __future__ import annotations

import pytest
import torch

from sample_neurons import lif_loop
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError, StateError
from spikeflow.functional import set_step_mode, streaming
from spikeflow.layers import ChannelQKAttention, QKAttention, TokenQKAttention

F64 = dict(rtol=1e-10, atol=1e-12)


@pytest.fixture(scope="module")
def sj():
    """SpikingJelly's layer and neuron modules (the tests using it skip without it)."""
    layer = pytest.importorskip(
        "spikingjelly.activation_based.layer", reason="SpikingJelly is not installed"
    )
    from spikingjelly.activation_based import functional, neuron

    return layer, neuron, functional


def _bn(norm: torch.nn.BatchNorm1d, x: torch.Tensor) -> torch.Tensor:
    """Batch norm in eval mode over the last dim, by its formula."""
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    return (x - norm.running_mean) * scale + norm.bias


def _randomise(module: torch.nn.Module, seed: int) -> None:
    """Batch norms that make the neurons fire (the defaults leave them silent in eval)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) * 0.5 + 0.2)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.rand(n, generator=g) + 0.3)


def _qk_by_hand(layer: QKAttention, x: torch.Tensor) -> torch.Tensor:
    """QKTA / QKCA from the paper, head by head and token by token (eval mode)."""
    tokens, dim = x.shape[-2:]
    heads, width = layer.num_heads, dim // layer.num_heads
    conv, norm = layer.qk_conv_bn
    qk = lif_loop(_bn(norm, x @ conv.weight[:, :, 0].T))
    q, k = qk[..., :dim], qk[..., dim:]
    masked = torch.zeros_like(k)
    for h in range(heads):
        part = slice(h * width, (h + 1) * width)
        if layer.qka_type == "token":  # Σ over the head's channels, per token
            sums = torch.stack([q[:, :, n, part].sum(-1) for n in range(tokens)], dim=2)
            mask = lif_loop(sums, threshold=0.5)  # [T, B, N]
            masked[..., part] = mask.unsqueeze(-1) * k[..., part]
        else:  # Σ over the tokens, per channel
            sums = torch.stack([q[:, :, :, c].sum(-1) for c in range(dim)], dim=2)[..., part]
            mask = lif_loop(sums, threshold=0.5)  # [T, B, d]
            masked[..., part] = mask.unsqueeze(2) * k[..., part]
    conv, norm = layer.proj_conv_bn
    return lif_loop(_bn(norm, masked @ conv.weight[:, :, 0].T))


@pytest.mark.parametrize("qka_type", ["token", "channel"])
@torch.no_grad()
def test_qk_attention_equals_the_paper_by_hand(qka_type):
    layer = QKAttention(16, num_heads=4, qka_type=qka_type).double().eval()
    _randomise(layer, 1)
    x = (torch.rand(6, 3, 10, 16, dtype=torch.float64) < 0.5).double()
    out = layer(x)
    torch.testing.assert_close(out, _qk_by_hand(layer, x))
    assert 0.05 < out.mean() < 0.95  # neither silent nor saturated


def _compare(peer, ours, x, functional):
    """Ours on [T, B, N, D] against the peer on [T, B, D, N]: outputs, input gradients,
    parameter gradients (by name) and, in training mode, the running statistics."""
    ours.load_state_dict(peer.state_dict())
    functional.reset_net(peer)
    x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    y1, y2 = peer(x1.transpose(-1, -2)).transpose(-1, -2), ours(x2)
    torch.testing.assert_close(y2, y1, **F64)
    g = torch.randn_like(y1)
    (y1 * g).sum().backward()
    (y2 * g).sum().backward()
    torch.testing.assert_close(x2.grad, x1.grad, **F64)
    theirs = dict(peer.named_parameters())
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, theirs[name].grad, **F64, msg=name)
    for name, buffer in peer.named_buffers():
        torch.testing.assert_close(ours.get_buffer(name), buffer, **F64, msg=name)
    assert 0 < y2.mean() < 1 and x2.grad.abs().sum() > 0


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("kind", ["token", "channel", "Token", "Channel"])
def test_equals_spikingjelly(sj, kind, training):
    layer, _, functional = sj
    if kind in ("token", "channel"):
        peer, ours = layer.QKAttention(16, 4, kind), QKAttention(16, 4, kind)
    else:
        peer = getattr(layer, f"{kind}QKAttention")(16, 4)
        ours = {"Token": TokenQKAttention, "Channel": ChannelQKAttention}[kind](16, 4)
    assert peer.qka_type == ours.qka_type
    _randomise(peer, 2)
    peer.double().train(training)
    ours.double().train(training)
    assert ours.state_dict().keys() == peer.state_dict().keys()
    x = (torch.rand(5, 3, 12, 16, dtype=torch.float64) < 0.5).double()
    _compare(peer, ours, x, functional)
    peer.load_state_dict(ours.state_dict())  # and back


def test_equals_spikingjelly_with_parametriclif_loop(sj):
    """A learnable neuron: its ``w`` in the state_dict, its gradient equal. SpikingJelly
    drops its defaults when given a neuron class, so its attention neuron has threshold
    1 there: ``attention_threshold=1.0`` matches it."""
    layer, neuron, functional = sj
    peer = layer.QKAttention(16, 2, "channel", spiking_neuron=neuron.ParametricLIFNode,
                             detach_reset=True)  # fmt: skip
    ours = QKAttention(16, 2, "channel", attention_threshold=1.0, neuron="plif")
    _randomise(peer, 3)
    with torch.no_grad():
        for name, w in (("qk_lif", 0.5), ("attn_lif", -0.3), ("proj_lif", 1.0)):
            getattr(peer, name).w.fill_(w)
    peer.double()
    ours.double()
    assert "attn_lif.w" in ours.state_dict()
    x = (torch.rand(5, 2, 9, 16, dtype=torch.float64) < 0.5).double()
    _compare(peer, ours, x, functional)


def test_the_layers_own_defaults_hold_where_spikingjellys_are_dropped(sj):
    """SpikingJelly's ``v_threshold=0.8`` also sets the attention neuron's threshold, and
    passing a neuron class drops the 0.5 threshold and the detached reset; here the
    attention threshold is ``attention_threshold`` and the defaults stay."""
    layer, neuron, functional = sj
    peer = layer.QKAttention(16, 4, spiking_neuron=neuron.LIFNode)
    assert peer.attn_lif.v_threshold == 1.0 and not peer.attn_lif.detach_reset
    ours = QKAttention(16, 4, neuron=neuron.LIFNode)  # a class here too
    assert ours.attn_lif.v_threshold == 0.5 and ours.attn_lif.detach_reset
    ours = QKAttention(16, 4, neuron_kwargs={"v_threshold": 0.8})
    assert ours.attn_lif.v_threshold == 0.5 and ours.qk_lif.v_threshold == 0.8
    assert layer.QKAttention(16, 4, v_threshold=0.8).attn_lif.v_threshold == 0.8
    # SpikingJelly's v_threshold=0.8 spelled here: the same outputs and gradients
    peer = layer.QKAttention(16, 4, "token", v_threshold=0.8)
    ours = QKAttention(16, 4, "token", attention_threshold=0.8, neuron_kwargs={"v_threshold": 0.8})
    _randomise(peer, 4)
    peer.double()
    ours.double()
    x = (torch.rand(4, 2, 10, 16, dtype=torch.float64) < 0.5).double()
    _compare(peer, ours, x, functional)
    # SpikingJelly given a neuron class, spelled here
    peer = layer.QKAttention(16, 4, "channel", spiking_neuron=neuron.LIFNode)
    ours = QKAttention(16, 4, "channel", attention_threshold=1.0, neuron="lif",
                       neuron_kwargs={"detach_reset": False})  # fmt: skip
    _randomise(peer, 5)
    peer.double()
    ours.double()
    _compare(peer, ours, x, functional)


@pytest.mark.parametrize("qka_type", ["token", "channel"])
@torch.no_grad()
def test_single_step_streaming_equals_multi_step(qka_type):
    layer = QKAttention(16, 4, qka_type).double().eval()
    _randomise(layer, 5)
    x = (torch.rand(6, 2, 8, 16, dtype=torch.float64) < 0.5).double()
    whole = layer(x)
    set_step_mode(layer, "s")
    assert {m.step_mode for m in (layer, layer.qk_lif, layer.attn_lif, layer.proj_lif)} == {"s"}
    with pytest.raises(StateError, match="streaming is off"):
        layer(x[0])
    with streaming(layer):
        steps = torch.stack([layer(x[t]) for t in range(6)])
    torch.testing.assert_close(steps, whole, **F64)
    assert whole.sum() > 0
    layer.step_mode = "m"  # the setter sets the neurons' too
    assert layer.qk_lif.step_mode == "m"
    torch.testing.assert_close(layer(x), whole, **F64)


@pytest.mark.parametrize("qka_type", ["token", "channel"])
@torch.no_grad()
def test_token_permutation_equivariant_and_causal_in_time(qka_type):
    layer = QKAttention(16, 4, qka_type).eval()
    _randomise(layer, 6)
    x = (torch.rand(6, 2, 9, 16) < 0.6).float()
    out = layer(x)
    perm = torch.randperm(9)
    torch.testing.assert_close(layer(x[:, :, perm]), out[:, :, perm])
    changed = x.clone()
    changed[4:] = 1 - changed[4:]
    torch.testing.assert_close(layer(changed)[:4], out[:4])
    assert not torch.equal(layer(changed)[4:], out[4:])


@pytest.mark.parametrize("qka_type", ["token", "channel"])
def test_gradients_reach_every_parameter(qka_type):
    layer = QKAttention(32, 4, qka_type, neuron_kwargs={"v_threshold": 0.3})
    x = (torch.rand(4, 4, 16, 32) < 0.5).float().requires_grad_(True)
    layer(x).sum().backward()
    for name, parameter in layer.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    assert x.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "cls, kind", [(TokenQKAttention, "token"), (ChannelQKAttention, "channel")]
)
def test_token_and_channel_layers_pass_every_argument_on(cls, kind):
    layer = cls(8, 2, 0.25, "if", {"v_threshold": 0.75}, "s")
    assert (layer.dim, layer.num_heads, layer.qka_type, layer.step_mode) == (8, 2, kind, "s")
    assert type(layer.qk_lif).__name__ == "IFNode" and layer.proj_lif.step_mode == "s"
    assert (layer.qk_lif.v_threshold, layer.attn_lif.v_threshold) == (0.75, 0.25)


def test_bad_arguments_and_inputs_are_named():
    with pytest.raises(ConfigurationError, match="qka_type must be 'token' or 'channel'"):
        QKAttention(8, 2, "spatial")
    with pytest.raises(ConfigurationError, match=r"dim \(10\) must be a multiple of num_heads"):
        TokenQKAttention(10, 4)
    with pytest.raises(ConfigurationError, match="does not accept"):
        ChannelQKAttention(8, 2, neuron_kwargs={"tua": 2.0})
    with pytest.raises(ConfigurationError, match="step_mode must be 's'"):
        QKAttention(8, 2, step_mode="x")
    layer = QKAttention(8, 2)
    with pytest.raises(AttributeError):
        layer.qka_type = "channel"
    with pytest.raises(ShapeError, match=r"D = dim = 8, got shape \(2, 3, 4, 6\)"):
        layer(torch.rand(2, 3, 4, 6))
    with pytest.raises(ShapeError, match=r"\[T, B, N, D\].*missing the time dimension"):
        layer(torch.rand(3, 4, 8))
    with pytest.raises(ShapeError, match=r"single-step mode expects \[B, N, D\]"):
        QKAttention(8, 2, step_mode="s")(torch.rand(2, 3, 4, 8))
    with pytest.raises(DTypeError, match="floating-point tokens"):
        layer(torch.ones(2, 3, 4, 8, dtype=torch.long))
    assert repr(layer).startswith("QKAttention(\n  dim=8, num_heads=2, qka_type=token")
