"""SpikingJelly 2.0's operation counters (``activation_based.op_counter``) on a model it
builds and on the equal spikeflow model, same weights, same input.

Where the definitions agree the counts are equal: SynOpCounter's convolutions and
matrix products (``mm``, ``addmm``, ``bmm``) against spikeflow's ACs of the layers and
of the attention's products; MACCounter's convolutions fed real values against
spikeflow's MACs. Where they differ (documented in docs/energy.md): SpikingJelly counts
the taps on zero padding as MACs (spikeflow: products with no input are not done), and
its spikes are ``{0, 1}`` only (spikeflow: any one magnitude); MACCounter adds batch
norm's affine multiplications, ACCounter batch norm's and the neurons' additions, which
spikeflow counts apart (the neurons) or not at all (batch norm)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikeflow import layers, neurons
from spikeflow.energy import count_operations

op_counter = pytest.importorskip(
    "spikingjelly.activation_based.op_counter",
    reason="SpikingJelly (a benchmark extra, scripts/setup.sh bench) is the reference",
)
aten = torch.ops.aten


def _theirs(model: nn.Module, x: torch.Tensor, *kinds: type) -> list[dict]:
    """SpikingJelly's counts by scope (``Sequential.0``, ...) and aten op, per counter."""
    from spikingjelly.activation_based import functional

    counters = [kind() for kind in kinds]
    with torch.no_grad(), op_counter.DispatchCounterMode(counters):
        out = model(x)
    functional.reset_net(model)
    return [out, *({s: dict(r) for s, r in c.records.items()} for c in counters)]


def _conv_lif(sj_layer, sj_neuron, padding: int) -> tuple[nn.Module, nn.Module]:
    """Conv, LIF, flatten, linear, LIF: SpikingJelly's and spikeflow's, same weights."""
    theirs = nn.Sequential(
        sj_layer.Conv2d(2, 4, 3, padding=padding, step_mode="m"),
        sj_neuron.LIFNode(tau=2.0, step_mode="m"),
        sj_layer.Flatten(step_mode="m"),
        sj_layer.Linear(4 * (6 + 2 * padding - 2) ** 2, 3, step_mode="m"),
        sj_neuron.LIFNode(tau=2.0, step_mode="m"),
    )
    ours = nn.Sequential(
        layers.Conv2d(2, 4, 3, padding=padding), neurons.LIFNode(tau=2.0), layers.Flatten(),
        layers.Linear(4 * (6 + 2 * padding - 2) ** 2, 3), neurons.LIFNode(tau=2.0),
    )  # fmt: skip
    ours.load_state_dict(theirs.state_dict())
    return theirs, ours


def test_a_conv_lif_network_counts_as_spikingjelly():
    from spikingjelly.activation_based import layer, neuron

    torch.manual_seed(0)
    theirs, ours = _conv_lif(layer, neuron, padding=0)
    with torch.no_grad():
        theirs[0].weight.mul_(4.0)  # the LIF after it fires
    ours.load_state_dict(theirs.state_dict())
    x = (torch.rand(3, 2, 2, 6, 6) < 0.4).float()  # spikes
    out, synops, macs = _theirs(theirs, x, op_counter.SynOpCounter, op_counter.MACCounter)
    report = count_operations(ours, x)
    with torch.no_grad():
        assert torch.equal(ours(x), out)
    conv, fc = report.layers
    assert conv.acs == synops["Sequential.0"][aten.convolution.default] > 0
    assert fc.acs == synops["Sequential.3"][aten.addmm.default] > 0
    assert sum(synops["Global"].values()) == conv.acs + fc.acs
    assert sum(macs["Global"].values()) == report.macs == 0
    # Real values in: MACs, every (input, weight) pair of the dense layer alike.
    image = torch.rand(3, 2, 2, 6, 6)
    _, macs = _theirs(theirs, image, op_counter.MACCounter)
    real = count_operations(ours, image).layers[0]
    assert real.macs == macs["Sequential.0"][aten.convolution.default] == 6 * 2 * 16 * 9 * 4


def test_zero_padding_is_where_the_mac_counts_differ():
    """A 3x3 kernel on 6x6 with padding 1: 324 taps per (input channel, output channel)
    of which 16 · 16 = 256 fall inside (per axis 2 + 3 + 3 + 3 + 3 + 2 = 16 of the 6 x 3
    taps). SpikingJelly counts all 324 (a dense kernel over the padded input); spikeflow
    the 256 that multiply an input."""
    from spikingjelly.activation_based import layer, neuron

    theirs, ours = _conv_lif(layer, neuron, padding=1)
    image = torch.rand(1, 1, 2, 6, 6)
    _, macs = _theirs(theirs, image, op_counter.MACCounter)
    assert macs["Sequential.0"][aten.convolution.default] == 324 * 2 * 4
    assert count_operations(ours, image).layers[0].macs == 256 * 2 * 4


def test_spiking_self_attention_counts_as_spikingjelly():
    """Spikformer's SSA: SpikingJelly computes (V Kᵀ) Q on [d, N] heads, spikeflow
    Q (Kᵀ V) on [N, d]: the same products, counted alike (spike by spike: the pairs;
    the counts V Kᵀ by spikes: each spike of Q meets d entries)."""
    from spikingjelly.activation_based.layer.attention import SpikingSelfAttention as SJSSA

    from spikeflow.layers import SpikingSelfAttention
    from spikeflow.models.qkformer import convert_spikingjelly_state_dict

    torch.manual_seed(1)
    theirs = SJSSA(8, 2).eval()
    with torch.no_grad():
        theirs.qkv_conv_bn[1].bias.fill_(2.0)  # Q, K, V and the attention fire
        theirs.proj_conv_bn[1].bias.fill_(1.0)
    ours = SpikingSelfAttention(8, 2).eval()
    prefix = "stage3.0.attn."  # (QKFormer's stage 3 is this attention)
    state = convert_spikingjelly_state_dict({prefix + k: v for k, v in theirs.state_dict().items()})
    ours.load_state_dict({k.removeprefix(prefix): v for k, v in state.items()})
    x = (torch.rand(2, 2, 16, 8) < 0.5).float()  # [T, B, N, D]; SpikingJelly's [T, B, D, N]
    kinds = (op_counter.SynOpCounter, op_counter.MACCounter)
    out, synops, macs = _theirs(theirs, x.transpose(2, 3).contiguous(), *kinds)
    report = count_operations(ours, x)
    with torch.no_grad():
        assert torch.equal(ours(x), out.transpose(2, 3))
    products = next(r for r in report.layers if r.kind == "products")
    projections = sum(r.acs for r in report.layers if r.kind == "Linear")
    theirs_total = synops["Global"]
    assert products.acs == theirs_total[aten.bmm.default] > 0
    assert projections == theirs_total[aten.convolution.default]
    assert report.layers[3].name == "proj" and report.layers[3].acs > 0  # it fired
    assert sum(macs["Global"].values()) == macs["Global"][aten.native_batch_norm.default]
    assert report.macs == 0  # batch norm's affine MACs are SpikingJelly's alone
