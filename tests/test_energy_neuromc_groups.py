"""NeuroMC's estimate of grouped and depth-wise convolutions (spikeflow.energy.neuromc):
``G`` independent convolutions on the same engines, against the ``G`` per-group slices
priced as ungrouped convolutions, by hand on a tiny depth-wise one, and Max-Former's
depth-wise stages against torch's FlopCounterMode."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from spikeflow import layers, neurons
from spikeflow.energy import neuromc_energy_report
from spikeflow.energy.neuromc_costs import NEUROMC_MAC_J, NEUROMC_MEMORIES
from spikeflow.functional import reset_net

torch.set_num_threads(1)


def _input(shape: tuple[int, ...], spikes: bool) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(*shape, generator=g)
    return ((x < 0.3).float() if spikes else x).requires_grad_()  # its gradient is priced


def _loss(out: torch.Tensor, target: float) -> torch.Tensor:
    return (out.mean() - target) ** 2


def _conv_parts(report) -> dict[str, dict]:
    """The convolution's works by op: MACs, their joules, bits and joules by level."""
    parts: dict[str, dict] = {}
    for work in report.works:
        if work.op.startswith("conv."):
            part = parts.setdefault(work.op, {"macs": 0, "mac_j": 0.0, "bits": {}, "j": {}})
            part["macs"] += work.priced.macs
            part["mac_j"] += work.priced.mac_j
            for key, bits in work.priced.bits.items():
                part["bits"][key] = part["bits"].get(key, 0) + bits
            for key, joules in work.priced.base_j.items():
                part["j"][key] = part["j"].get(key, 0.0) + joules
    return parts


@pytest.mark.parametrize("spikes", [True, False])
@pytest.mark.parametrize(
    ("conv", "shape"),
    [
        (layers.Conv2d(6, 4, 3, padding=1, groups=2, bias=False), (2, 2, 6, 7, 5)),
        (layers.Conv2d(40, 40, 5, stride=2, groups=40, bias=False), (2, 1, 40, 9, 9)),
        (layers.Conv1d(36, 72, 3, groups=2, bias=False), (3, 2, 36, 11)),  # C/G over 16
    ],
)
def test_grouped_conv_is_the_sum_of_its_groups(conv, shape, spikes):
    """Forward, input gradient and weight gradient of a grouped convolution equal the
    sums over its groups of ungrouped convolutions on that group's input channels."""
    g, x = conv.groups, _input(shape, spikes)
    grouped = neuromc_energy_report(nn.Sequential(conv, neurons.LIFNode()), x, 0.0, _loss)
    cin, cout = conv.in_channels // g, conv.out_channels // g
    dense = type(conv)(cin, cout, conv.kernel_size, conv.stride, conv.padding, bias=False)
    sums = []
    for i in range(g):
        part = x.detach()[:, :, i * cin : (i + 1) * cin].requires_grad_()
        net = nn.Sequential(dense, neurons.LIFNode())
        sums.append(_conv_parts(neuromc_energy_report(net, part, 0.0, _loss)))
    mine = _conv_parts(grouped)
    assert set(mine) == {"conv.forward", "conv.backward.grad_input", "conv.backward.grad_weight"}
    for op, part in mine.items():
        assert part["macs"] == sum(s[op]["macs"] for s in sums)
        assert part["mac_j"] == pytest.approx(sum(s[op]["mac_j"] for s in sums), rel=1e-12)
        assert part["bits"] == {k: sum(s[op]["bits"][k] for s in sums) for k in part["bits"]}
        for key, joules in part["j"].items():
            assert joules == pytest.approx(sum(s[op]["j"][key] for s in sums), rel=1e-12)
    (forward,) = [w for w in grouped.works if w.op == "conv.forward"]
    assert forward.dims["G"] == g and (forward.dims["C"], forward.dims["K"]) == (cin, cout)


def test_depthwise_conv1d_by_hand():
    """Conv1d(2, 2, 3, groups=2) on one step of ones [1, 1, 2, 3]: per group one input
    channel, one output, 3 taps (3 MACs), all partial sums of one output; twice that.
    A dense Conv1d(2, 2, 3) would do 12 MACs on 12 weights."""
    net = nn.Sequential(layers.Conv1d(2, 2, 3, groups=2, bias=False), neurons.LIFNode())
    (forward, _soma) = neuromc_energy_report(net, torch.ones(1, 1, 2, 3)).works
    m, w, out, partial = 3, 3, 1, 2  # per group; 3 taps -> 3 chunks, 2 of them partial
    bits = {  # per group: inputs (1 bit), weights and outputs (16 bits)
        ("reg", "rh2l"): m * 1 + w * 16 + (m - out) * 16,
        ("reg", "wh2l"): m * 1 + w * 16 + m * 16,
        ("reg", "rl2h"): m * 16,
        ("reg", "wl2h"): partial * 16,
        ("sram", "rh2l"): w * 16 + (partial + out) * 1 + partial * 16,
        ("sram", "wl2h"): (partial + out) * 16,
    }
    assert forward.priced.macs == 2 * m
    assert forward.priced.bits == {k: 2 * v for k, v in bits.items()}
    assert forward.priced.mac_j == pytest.approx(2 * m * NEUROMC_MAC_J["fp_soma"], rel=1e-12)
    mem = NEUROMC_MEMORIES
    reg1, reg16 = mem["reg_1b"].read_j, mem["reg_16b"].read_j
    sram_w, sram_s = mem["sram_fp_conv_in_w"], mem["sram_fp_conv_in_s"]
    sram_o = mem["sram_fp_conv_out_xi"]
    by_hand = {
        ("reg", "rh2l"): m * reg1 + (w + m - out) * reg16,
        ("reg", "wh2l"): m * reg1 + (w + m) * reg16,
        ("reg", "rl2h"): m * reg16,
        ("reg", "wl2h"): partial * reg16,
        ("sram", "rh2l"): w * sram_w.read_j + 3 * sram_s.read_j + partial * sram_o.read_j,
        ("sram", "wl2h"): 3 * sram_o.write_j,
    }
    assert forward.priced.base_j.keys() == by_hand.keys()
    for key, joules in by_hand.items():
        assert forward.priced.base_j[key] == pytest.approx(2 * joules, rel=1e-12)
    assert forward.dims == {"B": 1, "T": 1, "C": 1, "K": 1, "OY": 1, "OX": 1, "FY": 3,
                            "FX": 1, "G": 2}  # fmt: skip


def test_maxformer_depthwise_stages_are_priced():
    """Max-Former's patch embeddings and its 7x7 and 5x5 depth-wise stages (its stage 3
    attention multiplies activations, which NeuroMC refuses), a training step: forward
    MACs equal half the FLOPs FlopCounterMode counts; each product's weight gradient,
    and input gradient but for the first layer's, has its forward's MACs (torch's
    counter prices a grouped convolution's weight gradient as a dense one's)."""
    from spikeflow.models.maxformer import maxformer_10_384

    torch.manual_seed(0)
    net = maxformer_10_384(num_classes=10, embed_dim=32, depths=(1, 1, 1), num_heads=2)
    body = nn.Sequential(net.patch_embed1, *net.stage1, net.patch_embed2, *net.stage2)
    x = _input((2, 1, 3, 32, 32), True).detach()
    report = neuromc_energy_report(body, x, 0.5, _loss, torch.optim.SGD(body.parameters(), 0.1))
    grouped = {w.name for w in report.works if "G" in w.dims}
    assert grouped == {n for n, m in body.named_modules() if getattr(m, "groups", 1) > 1}
    assert len(grouped) == 2
    macs: dict[tuple[str, str], int] = {}
    for work in report.works:
        if work.priced.macs:
            macs[(work.name, work.op.split(".", 1)[1])] = work.priced.macs
    reset_net(body)
    with FlopCounterMode(display=False) as counter:
        body(x)
    reset_net(body)
    forward = {name: n for (name, op), n in macs.items() if op == "forward"}
    assert sum(forward.values()) == counter.get_total_flops() // 2
    first = next(iter(forward))
    for name, n in forward.items():
        assert macs[(name, "backward.grad_weight")] == n
        assert macs.get((name, "backward.grad_input")) == (None if name == first else n)


def test_reuse_weights_needs_all_groups_to_fit():
    """``reuse_weights`` keeps a layer's weights in the weight SRAM (294,912 16-bit
    weights) only if all of them fit: the G groups run one after another on one engine,
    so a group's weights fitting alone is not enough. Conv1d(1024, 1024, 1, groups=2)
    holds 524,288 weights (262,144 a group): read again each pass, as the dense layer's;
    with groups=4 (262,144 in all) they stay and the forward reads none."""
    x = _input((1, 1, 1024, 3), spikes=True)
    for groups, fits in ((2, False), (4, True)):
        net = nn.Sequential(layers.Conv1d(1024, 1024, 1, groups=groups, bias=False),
                            neurons.LIFNode())  # fmt: skip
        plain = neuromc_energy_report(net, x.detach())
        reuse = neuromc_energy_report(net, x.detach(), reuse_weights=True)
        weight_reads = [work.priced.bits.get(("sram", "rh2l"), 0) for report in (plain, reuse)
                        for work in report.works if work.op == "conv.forward"]  # fmt: skip
        if fits:
            assert reuse.total < plain.total and weight_reads[1] < weight_reads[0]
        else:
            assert reuse.total == plain.total and weight_reads[1] == weight_reads[0]
