"""spikeflow.energy.spikesim_energy_report: SpikeSim's crossbar model by hand, and against
SpikingJelly 2.0's ``estimate_spikesim_energy`` on the equal networks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikeflow import layers, neurons
from spikeflow.energy import SpikeSimCosts, spikesim_energy_report
from spikeflow.errors import ConfigurationError, ShapeError

PJ = 1e-12
#: E_pc by hand: H-tree 19.64·8, fetch 4.64, tile buffer 397, (64/8)·16 subtractors of
#: 1.15e-6, (64/8) temp buffers of 0.2, (64/8)² ADCs and muxes of 2.03084 + 0.094245 pJ.
PATCH = (157.12 + 4.64 + 397.0 + 8 * 16 * 1.15e-6 + 8 * 0.2 + 64 * 2.125085) * PJ
NEURON, RRAM = 4 * 1.274 * PJ, 1.76423 * PJ
#: SpikingJelly's component names (less "_pj") to spikeflow's.
NAMES = {"pe_cycle": "pe_cycles", "xbar": "crossbar", "neuron": "neurons"}


def test_a_conv_by_hand():
    """Conv2d 1 -> 2, 2x2 kernel, on a 3x3 input with spikes at two corners: one input
    and one output tile (p = q = 1); of the 4 output sites, the two corner windows hold
    one spike each: A = 2 active patches, R = 2 rows, Z = 2 sites."""
    conv = layers.Conv2d(1, 2, 2, bias=False)
    x = torch.zeros(1, 1, 1, 3, 3)  # [T, B, C, H, W]
    x[..., 0, 0] = x[..., 2, 2] = 1.0
    report = spikesim_energy_report(conv, x)
    (layer,) = report.layers
    assert (layer.sites, layer.active_patches, layer.active_rows, layer.active_sites) == (
        4, 2, [2], 2)  # fmt: skip
    assert report.costs.patch_control == pytest.approx(PATCH, rel=1e-12)
    assert report.pe_cycles == 4
    dense = 4 * (PATCH + NEURON + 8 * 2 * 2 * RRAM)  # (X/8)·k_h·k_w crossbar reads
    assert report.energy("dense") == pytest.approx(dense, rel=1e-12)
    # event: 2 patch controls, 2 rows of a tile of 1 channel priced as 64, 2 neurons
    event = 2 * PATCH + 2 * RRAM / 8 * 64 + 2 * NEURON
    assert report.energy("event") == pytest.approx(event, rel=1e-12)
    parts = report.layer_energy("event")["(model)"]
    assert parts["crossbar"] == pytest.approx(2 * RRAM * 8, rel=1e-12)
    # spikes of another magnitude are spikes (SpikingJelly: {0, 1} only, else dense)
    assert spikesim_energy_report(conv, 2 * x).layers[0].active_rows == [2]
    # real values: every patch, every row of every tap, every site (= dense here)
    real = spikesim_energy_report(conv, x * torch.rand(1, 1, 1, 3, 3) + 0.5)
    assert real.energy("event") == pytest.approx(
        4 * PATCH + 4 * 4 * RRAM / 8 * 64 + 4 * NEURON, rel=1e-12
    )
    assert "(model)" in str(report) and "dense" in str(report)


def test_tiles_of_a_small_crossbar():
    """X = 4: 6 input channels are tiles of 4 and 2 (p = 2), 5 outputs q = 2; a 1x1 conv
    on all-ones spikes drives every row: R = (4, 2) per site, the 2-channel tile priced
    as full (x 4/2)."""
    costs = SpikeSimCosts(xbar_size=4, device="sram")
    conv = layers.Conv2d(6, 5, 1, bias=False)
    report = spikesim_energy_report(conv, torch.ones(2, 3, 6, 2, 2), costs)  # T 2, B 3
    (layer,) = report.layers
    sites = 2 * 3 * 4
    assert (layer.active_patches, layer.active_rows, layer.active_sites) == (
        2 * sites, [4 * sites, 2 * sites], sites)  # fmt: skip
    xbar = 671.089 * PJ
    patch = (157.12 + 4.64 + 397.0 + 0.5 * 16 * 1.15e-6 + 0.5 * 0.2 + 0.25 * 2.125085) * PJ
    event = 2 * (2 * sites * patch + (4 * sites + 2 * sites * 2) * xbar / 8 + 2 * sites * NEURON)
    assert report.energy("event") == pytest.approx(event / 3, rel=1e-12)
    dense = 2 * 2 * sites * (patch + NEURON + 0.5 * xbar)
    assert report.energy("dense") == pytest.approx(dense / 3, rel=1e-12)


def test_what_is_not_mapped_is_listed():
    net = nn.Sequential(
        layers.Conv2d(2, 4, 3, groups=2), neurons.ParametricLIFNode(), layers.Flatten(),
        layers.Linear(16, 2), neurons.IFNode(),
    )  # fmt: skip
    report = spikesim_energy_report(net, torch.rand(1, 1, 2, 4, 4))
    assert report.layers == [] and report.energy() == 0 and report.energy("event") == 0
    assert [entry.split(" ")[0] for entry in report.not_counted] == ["0", "1", "3"]
    assert "2 groups" in report.not_counted[0] and "IF/LIF" in report.not_counted[1]


def test_bad_arguments_are_named():
    conv = layers.Conv2d(1, 1, 1)
    with pytest.raises(ShapeError, match="time-major"):
        spikesim_energy_report(conv, torch.ones(3))
    with pytest.raises(ConfigurationError, match="samples must be a positive integer"):
        spikesim_energy_report(conv, torch.ones(1, 1, 1, 2, 2), samples=0)
    with pytest.raises(ConfigurationError, match="costs must be SpikeSimCosts"):
        spikesim_energy_report(conv, torch.ones(1, 1, 1, 2, 2), costs={})  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="xbar_size must be a positive integer"):
        SpikeSimCosts(xbar_size=0)
    with pytest.raises(ConfigurationError, match="device must be 'rram' or 'sram'"):
        SpikeSimCosts(device="pcm")
    with pytest.raises(ConfigurationError, match="adc must be a finite number"):
        SpikeSimCosts(adc=-1.0)
    report = spikesim_energy_report(conv, torch.ones(1, 1, 1, 2, 2))
    with pytest.raises(ConfigurationError, match="mode must be one of"):
        report.energy("sparse")


# -- against SpikingJelly 2.0 ----------------------------------------------------------


def _networks(kind: str) -> tuple[nn.Module, nn.Module]:
    """SpikingJelly's network and spikeflow's, the same weights."""
    from spikingjelly.activation_based import layer, neuron

    torch.manual_seed(0)
    if kind == "conv":  # conv fed an image, LIF, conv fed spikes (6 channels), LIF
        theirs = nn.Sequential(
            layer.Conv2d(2, 6, 3, step_mode="m"), neuron.LIFNode(tau=2.0, step_mode="m"),
            layer.Conv2d(6, 5, 3, padding=1, step_mode="m"), neuron.LIFNode(step_mode="m"),
            layer.Flatten(step_mode="m"), layer.Linear(5 * 16, 3, step_mode="m"),
        )  # fmt: skip
        ours = nn.Sequential(
            layers.Conv2d(2, 6, 3), neurons.LIFNode(tau=2.0), layers.Conv2d(6, 5, 3, padding=1),
            neurons.LIFNode(), layers.Flatten(), layers.Linear(5 * 16, 3),
        )  # fmt: skip
    elif kind == "mlp":
        theirs = nn.Sequential(
            layer.Linear(10, 8, step_mode="m"), neuron.LIFNode(tau=2.0, step_mode="m"),
            layer.Linear(8, 4, step_mode="m"), neuron.IFNode(step_mode="m"),
        )  # fmt: skip
        ours = nn.Sequential(
            layers.Linear(10, 8), neurons.LIFNode(tau=2.0), layers.Linear(8, 4), neurons.IFNode()
        )
    else:  # conv, batch norm, LIF, max pooling, conv, IF, linear
        theirs = nn.Sequential(
            layer.Conv2d(2, 4, 3, bias=False, step_mode="m"), layer.BatchNorm2d(4, step_mode="m"),
            neuron.LIFNode(tau=2.0, step_mode="m"), layer.MaxPool2d(2, step_mode="m"),
            layer.Conv2d(4, 4, 3, padding=1, step_mode="m"), neuron.IFNode(step_mode="m"),
            layer.Flatten(step_mode="m"), layer.Linear(36, 3, step_mode="m"),
        )  # fmt: skip
        ours = nn.Sequential(
            layers.Conv2d(2, 4, 3, bias=False), layers.BatchNorm2d(4),
            neurons.LIFNode(tau=2.0), layers.MaxPool2d(2), layers.Conv2d(4, 4, 3, padding=1),
            neurons.IFNode(), layers.Flatten(), layers.Linear(36, 3),
        )  # fmt: skip
        with torch.no_grad():
            theirs[1].bias.fill_(0.5)
    with torch.no_grad():
        theirs[0].weight.mul_(4.0)
    ours.load_state_dict(theirs.state_dict())
    return theirs.eval(), ours.eval()


@pytest.mark.parametrize(("kind", "xbar"), [("conv", 64), ("conv", 4), ("pool_bn", 64),
                                             ("pool_bn", 3), ("mlp", 64)])  # fmt: skip
def test_equals_spikingjelly_spikesim(kind, xbar):
    """Dense and event energies per layer equal SpikingJelly's (its totals are over the
    batch, spikeflow's per sample); a network without Conv2d layers is priced 0 by both
    (SpikingJelly warns, spikeflow lists the linear layers as not mapped)."""
    sj = pytest.importorskip(
        "spikingjelly.activation_based.op_counter.spikesim",
        reason="SpikingJelly (a benchmark extra, scripts/setup.sh bench) is the reference",
    )
    from spikingjelly.activation_based import functional

    theirs, ours = _networks(kind)
    T, B = 3, 2
    side = 8 if kind == "pool_bn" else 6
    x = (torch.rand(T, B, 10) < 0.5).float() if kind == "mlp" else torch.rand(T, B, 2, side, side)
    report = spikesim_energy_report(ours, x, SpikeSimCosts(xbar_size=xbar))
    for mode in ("dense", "event"):
        config = sj.SpikeSimEnergyConfig(xbar_size=xbar, activity_mode=mode)
        ref = sj.estimate_spikesim_energy(theirs, x, config=config, strict=False)
        functional.reset_net(theirs)
        ours_layers = report.layer_energy(mode)
        assert len(ours_layers) == len(ref.energy_by_stage) == {"mlp": 0}.get(kind, 2)
        for (name, parts), (stage, pj) in zip(ours_layers.items(), ref.energy_by_stage.items(),
                                              strict=True):  # fmt: skip
            assert stage == f"Sequential.{name}"
            assert parts["total"] * B / PJ == pytest.approx(pj, rel=1e-9)
            for key, value in ref.energy_by_component["by_stage"][stage].items():
                ours_key = NAMES.get(key.removesuffix("_pj"), key.removesuffix("_pj"))
                assert parts[ours_key] * B / PJ == pytest.approx(value, rel=1e-9)
        assert report.energy(mode) * B / PJ == pytest.approx(ref.energy_total_pj, rel=1e-9)
        assert report.pe_cycles * B == ref.counts["dense_pe_cycle_count"]
    if kind != "mlp":  # the second conv is fed spikes: event-driven is cheaper
        assert report.layers[1].event_calls == report.layers[1].calls == 1
        assert report.energy("event") < report.energy("dense")
    else:
        assert [e.split(" ")[0] for e in report.not_counted] == ["0", "2"]


def test_padding_modes():
    """One spike in a corner of a 3x3 input, a 3x3 kernel with padding 1: zero padding
    puts it in the windows of 4 output sites, circular padding (a torus) in all 9."""
    x = torch.zeros(1, 1, 1, 3, 3)
    x[..., 0, 0] = 1.0
    for mode, sites in (("zeros", 4), ("circular", 9)):
        conv = layers.Conv2d(1, 1, 3, padding=1, padding_mode=mode)
        (layer,) = spikesim_energy_report(conv, x).layers
        assert (layer.active_patches, layer.active_rows, layer.active_sites) == (
            sites, [sites], sites)  # fmt: skip
