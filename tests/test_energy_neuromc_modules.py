"""NeuroMC's price of the modules it once refused (spikeflow's conventions,
spikeflow.energy.neuromc_pooling and neuromc_modules): constant scales (OTTT's, NIR's),
AdjustedAvgPool2d, a SpikeDHS DGSUnit outside a search stage, DECOLLE layers; by hand on
tiny nets, and the zoo's models end to end against torch's FlopCounterMode."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from spikeflow import layers, neurons
from spikeflow.energy import neuromc_energy_report
from spikeflow.errors import ConfigurationError
from spikeflow.event_driven import AdjustedAvgPool2d, pooling
from spikeflow.functional import reset_net
from spikeflow.interop.nir_modules import Scale as NIRScale
from spikeflow.models.ottt_vgg import Scale

torch.set_num_threads(1)
PJ = 1e-12
REG1, REG16 = 0.00901 / 7.1 * 2, 0.14416 / 7.1 * 2
SOMA_U = 92.68282828  # pJ per 256-bit access of the soma's potential SRAM


def _spikes(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=g) < 0.4).float()


def _works(report, op: str) -> list:
    return [w for w in report.works if w.op == op]


# ---------------------------------------------------------------- scales


def test_scale_of_spikes_by_hand():
    """OTTT's Scale(2.74) after a LIF of 2 neurons (T = B = 1, both fire): 2
    multiplications reading 1-bit spikes and writing 16-bit values, on the FP soma's
    registers; backward 2 multiplications, 16 bits in and out; the next linear layer
    reads the scaled spikes as 16-bit values (ANN engine)."""
    first = layers.Linear(3, 2, bias=False)
    nn.init.constant_(first.weight, 1.0)
    net = nn.Sequential(first, neurons.LIFNode(v_threshold=0.5), Scale(2.74),
                        layers.Linear(2, 1, bias=False), neurons.LIFNode())  # fmt: skip
    report = neuromc_energy_report(net, torch.ones(1, 1, 3), torch.ones(1, 1, 1), F.mse_loss)
    (forward,) = _works(report, "scale.forward")
    assert (forward.name, forward.engine, forward.process) == ("2", "fp_soma", "with_scale")
    assert forward.priced.ops == {"mux": 0, "add": 0, "mul": 2, "comp": 0, "sqrt": 0}
    assert forward.priced.bits == {("reg", "rh2l"): 2, ("reg", "wl2h"): 32}
    assert forward.total == pytest.approx((2 * 0.812 + 2 * REG1 + 2 * REG16) * PJ, rel=1e-12)
    (backward,) = _works(report, "scale.backward")
    assert backward.engine == "bp_grad" and backward.priced.ops["mul"] == 2
    assert backward.priced.bits == {("reg", "rh2l"): 32, ("reg", "wl2h"): 32}
    assert backward.total == pytest.approx((2 * 0.812 + 4 * REG16) * PJ, rel=1e-12)
    assert [w.engine for w in report.works if w.op == "linear.forward"] == ["fp_soma", "ann_fe"]


def test_nir_scale_of_values_and_the_data():
    """NIR's Scale (a per-feature tensor) on 16-bit values: the elements' multiplications;
    on the data (no gradient needed), no backward."""
    net = nn.Sequential(NIRScale(torch.tensor([1.0, 2.0, 3.0])), layers.Linear(3, 2),
                        neurons.LIFNode())  # fmt: skip
    x = torch.rand(2, 4, 3)
    report = neuromc_energy_report(net, x, torch.rand(2, 4, 2), F.mse_loss)
    (forward,) = _works(report, "scale.forward")
    assert forward.engine == "ann_fe" and forward.priced.ops["mul"] == 24
    assert forward.priced.bits == {("reg", "rh2l"): 24 * 16, ("reg", "wl2h"): 24 * 16}
    assert _works(report, "scale.backward") == []


# ---------------------------------------------------------------- adjusted pooling


def test_adjusted_avg_pool_by_hand():
    """AdjustedAvgPool2d(2) on 1-bit spikes [1, 1, 2, 4, 4] (8 outputs of 4 inputs):
    forward as an average pool (24 additions, 8 multiplications); backward one
    comparison, one mux and one multiplication per output, reading each output's
    gradient and mean (16 bits each) and writing the 32 inputs' gradients."""
    conv = layers.Conv2d(2, 2, 1, bias=False)
    nn.init.constant_(conv.weight, 1.0)

    def net(pool):
        return nn.Sequential(conv, neurons.LIFNode(v_threshold=0.5), pool, layers.Flatten(),
                             layers.Linear(8, 2), neurons.LIFNode())  # fmt: skip

    x, y = _spikes(1, 1, 2, 4, 4), torch.rand(1, 1, 2)
    adjusted = neuromc_energy_report(net(AdjustedAvgPool2d(2)), x, y, F.mse_loss)
    plain = neuromc_energy_report(net(layers.AvgPool2d(2)), x, y, F.mse_loss)
    (forward,) = _works(adjusted, "adjavgpool.forward")
    assert forward.priced.ops == {"mux": 0, "add": 24, "mul": 8, "comp": 0, "sqrt": 0}
    assert forward.priced.bits == {("reg", "rh2l"): 32, ("reg", "wl2h"): 8 * 16}
    assert forward.total == _works(plain, "avgpool.forward")[0].total
    (backward,) = _works(adjusted, "adjavgpool.backward")
    assert backward.priced.ops == {"mux": 8, "add": 0, "mul": 8, "comp": 8, "sqrt": 0}
    assert backward.priced.bits == {("reg", "rh2l"): 2 * 8 * 16, ("reg", "wl2h"): 32 * 16}
    ops_j = 8 * (0.548 / 16 + 0.812 + 0.056)
    assert backward.total == pytest.approx((ops_j + (16 + 32) * REG16) * PJ, rel=1e-12)
    assert forward.dims["FY"] == 4 and backward.engine == "bp_grad"


# ---------------------------------------------------------------- SpikeDHS units


def test_dgs_unit_is_its_main_branch_outside_a_search_stage():
    from spikeflow.models.spike_dhs_search import DGSUnit

    torch.manual_seed(0)
    unit = DGSUnit([2], 4, lambda: neurons.LIFNode(), search=True)
    x, y = _spikes(2, 2, 2, 5, 5), torch.rand(2, 2, 4, 5, 5)
    whole = neuromc_energy_report(unit, x, y, F.mse_loss)
    main = neuromc_energy_report(unit.branches[0], x, y, F.mse_loss)
    assert whole.total == pytest.approx(main.total, rel=1e-12)
    assert {w.name for w in whole.works} == {f"branches.0.{w.name}" for w in main.works}
    unit.dgs_init_stage()
    with pytest.raises(ConfigurationError, match=r"\(model\) \(DGSUnit\) in a search.*softmax"):
        neuromc_energy_report(unit, x)


# ---------------------------------------------------------------- DECOLLE


def _decolle(pool: int = 1):
    from spikeflow.learn.decolle import DECOLLELayer, DECOLLENetwork

    torch.manual_seed(0)
    if pool == 1:
        return DECOLLENetwork([DECOLLELayer(nn.Linear(3, 2))], (3,), 2)
    return DECOLLENetwork([DECOLLELayer(nn.Conv2d(1, 2, 3, padding=1), pool=pool)], (1, 4, 4), 2)


def test_decolle_layer_by_hand():
    """One Linear DECOLLE layer (3 inputs, 2 neurons), 2 steps of 1-bit spikes, its
    frozen readout: per step the traces of the 3 inputs (12 multiplications, 6
    additions; the input's bits; Q and P read and written in the soma's potential SRAM)
    and the soma of the 2 neurons; the synapse's and readout's products."""
    net = _decolle()
    x = _spikes(2, 1, 3)
    report = neuromc_energy_report(net, x, torch.rand(2, 1, 1, 2),
                                   lambda out, y: F.mse_loss(out, y))  # fmt: skip
    traces = _works(report, "decolle.traces.forward")
    assert [w.name for w in traces] == ["layers.0"] * 2
    (one, _) = traces
    assert one.priced.ops == {"mux": 0, "add": 6, "mul": 12, "comp": 0, "sqrt": 0}
    bits = {("reg", "rh2l"): 3 + 2 * 48, ("reg", "wl2h"): 2 * 48, ("sram", "rh2l"): 2 * 48,
            ("sram", "wl2h"): 2 * 48}  # fmt: skip
    assert one.priced.bits == bits
    memory = 3 * REG1 + 4 * 3 * REG16 + 4 * 48 / 256 * SOMA_U
    assert one.total == pytest.approx((6 * 0.548 + 12 * 0.812 + memory) * PJ, rel=1e-12)
    somas = _works(report, "soma.forward")
    assert [(w.name, w.priced.ops["comp"]) for w in somas] == [("layers.0", 6)] * 2
    assert [w.name for w in _works(report, "linear.forward")] == ["layers.0.synapse",
                                                                   "readouts.0"] * 2  # fmt: skip
    # local DECOLLE: the synapse's input is detached: no traces' backward
    assert [w.op for w in report.works if w.name == "layers.0" and w.phase == "backward"] == [
        "soma.backward"
    ] * 2
    assert _works(report, "decolle.traces.backward") == []


def test_decolle_pool_and_bptt():
    """A Conv2d DECOLLE layer with pool 2 (1x4x4 in, 2x4x4 membrane, 2x2x2 spikes),
    BPTT (``local=False``: the full-size spikes carried to R keep their gradient): per
    step the max pool of the membrane (32 -> 8), the soma over the 32, and backward the
    soma over the 8 pooled and (but for the last step) the 32 carried spikes, and the
    pool's routing."""
    net = _decolle(pool=2)

    class Bptt(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net(x, local=False)[:, -1]

    report = neuromc_energy_report(Bptt(), _spikes(2, 1, 1, 4, 4), torch.rand(2, 1, 2), F.mse_loss)
    pools = _works(report, "maxpool.forward")
    assert [(w.priced.ops["comp"], w.engine) for w in pools] == [(32 - 8, "ann_fe")] * 2
    assert [w.priced.ops["comp"] for w in _works(report, "soma.forward")] == [3 * 32] * 2
    backward = sorted(w.priced.ops["mul"] // 4 for w in _works(report, "soma.backward"))
    assert backward == [8, 8, 32]  # the last step's carried spikes feed no later step
    assert len(_works(report, "maxpool.backward")) == 2


# ---------------------------------------------------------------- the zoo


_ZOO = [
    ("ottt_spiking_vggws", {"num_classes": 10}, (1, 1, 3, 16, 16)),
    ("spike_dhs", {}, (1, 2, 3, 32, 32)),
    ("decolle", {"input_size": 16, "channels": (4,), "hidden": (16,)}, (3, 2, 2, 16, 16)),
]


@pytest.mark.parametrize(("name", "kwargs", "shape"), _ZOO)
def test_zoo_models_once_refused_are_priced(name, kwargs, shape):
    """A training step of the zoo's OTTT VGG with weight standardization (its
    Scale), SpikeDHS (its DGSUnits) and DECOLLE (BPTT): the forward MACs are torch's
    FlopCounterMode's (half its FLOPs; DECOLLE's initial-state probes aside, which
    spikeflow does not price), and the modules once refused are priced."""
    from spikeflow.models import create_model

    torch.manual_seed(0)
    model = create_model(name, **kwargs)
    x, y = _spikes(*shape), torch.randint(0, 10, (shape[1],))

    def loss(out, y):
        return F.cross_entropy(out.mean(0), y)

    report = neuromc_energy_report(model, x, y, loss, torch.optim.SGD(model.parameters(), 0.1))
    reset_net(model)
    with FlopCounterMode(display=False) as forward:
        model(x)
    reset_net(model)
    macs = sum(w.priced.macs for w in report.works if w.phase == "forward")
    if name == "decolle":  # torch counts each layer's initial_state probe (a step's synapse)
        synapses = [w for w in report.works if w.name.endswith("synapse")]
        macs += sum(w.priced.macs for w in synapses if w.phase == "forward") // shape[0]
    assert macs == forward.get_total_flops() // 2
    ops = set(report.by_op())
    expected = {"ottt_spiking_vggws": "scale.backward", "spike_dhs": "conv.backward.grad_weight",
                "decolle": "decolle.traces.backward"}  # fmt: skip
    assert expected[name] in ops and report.by_phase()["optimizer"] > 0


# ---------------------------------------------------------------- AMSGrad


def test_amsgrad_reads_and_writes_its_maximum():
    """Adam(amsgrad=True) over P parameters: Adam's update plus P comparisons and the
    32-bit running maximum read and written at the register and the 6 MB SRAM (458.2 /
    375.0 pJ per 256-bit read / write); a param group without it is priced as Adam."""
    net = nn.Sequential(layers.Linear(4, 3), neurons.LIFNode())
    x, y = _spikes(2, 2, 4), torch.rand(2, 2, 3)
    adam = neuromc_energy_report(net, x, y, F.mse_loss, torch.optim.Adam(net.parameters()))
    ams = neuromc_energy_report(
        net, x, y, F.mse_loss, torch.optim.Adam(net.parameters(), amsgrad=True)
    )
    (plain,), (maximum,) = _works(adam, "adam"), _works(ams, "adam")
    count = 4 * 3 + 3
    assert maximum.priced.ops == {**plain.priced.ops, "comp": count}
    extra = count * (0.056 + 2 * 2 * REG16 + 32 / 256 * (458.1830181 + 375.0422185))
    assert maximum.total - plain.total == pytest.approx(extra * PJ, rel=1e-9)
    groups = [{"params": [net[0].weight], "amsgrad": True}, {"params": [net[0].bias]}]
    mixed = neuromc_energy_report(net, x, y, F.mse_loss, torch.optim.Adam(groups))
    assert sorted(w.priced.ops["comp"] for w in _works(mixed, "adam")) == [0, 12]
    assert sum(w.priced.ops["sqrt"] for w in _works(mixed, "adam")) == count


# ---------------------------------------------------------------- refused by name


@pytest.mark.parametrize("training", [True, False])
def test_event_driven_layers_are_refused_before_anything_runs(training):
    """An event-driven layer is a Conv2d/Linear subclass that runs its own neuron: it is
    refused by name (it was priced as a bare convolution, its neuron left out). In
    training, before the network's first forward calibrates the layers' gains in place
    (that forward's functional convolutions were reported under ``body``, and the gains
    stayed scaled while the ``calibrated`` flag was restored)."""
    from spikeflow.models import create_model

    torch.manual_seed(0)
    net = create_model("event_driven_nmnist").train(training)
    gains = [m.gain.detach().clone() for m in net.modules() if hasattr(m, "gain")]
    x, y = _spikes(2, 2, 2, 34, 34), torch.randint(0, 10, (2,))
    loss = (lambda out, y: F.cross_entropy(out.mean(0), y)) if training else None
    with pytest.raises(ConfigurationError, match=r"body\.0 \(EventDrivenConv2d\): an event"):
        neuromc_energy_report(net, x, y if training else None, loss)
    assert not bool(net.calibrated)
    after = [m.gain for m in net.modules() if hasattr(m, "gain")]
    assert all(torch.equal(a, b) for a, b in zip(gains, after, strict=True))


# ---------------------------------------------------------------- custom leaf modules


class _Gram(nn.Module):
    """A parameter-free leaf: its forward is one matmul of two activations."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ x.transpose(-1, -2)


class _GramWithChild(_Gram):
    """The same matmul in a module with a (free) child: not a leaf."""

    def __init__(self) -> None:
        super().__init__()
        self.tap = nn.Identity()


class _FunctionalAdjustedPool(nn.Module):
    """adjusted_avg_pool2d called as a function in a module's own forward."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from spikeflow.event_driven import adjusted_avg_pool2d

        return adjusted_avg_pool2d(x, 2)


def _summary(report) -> list[tuple[str, str, str, float]]:
    return [(w.name, w.phase, w.op, w.total) for w in report.works]


def test_a_leaf_module_is_priced_by_its_matmul_as_a_module_with_children():
    """A parameter-free leaf whose forward is ``x @ xᵀ`` is priced as the same matmul in
    a module with children (forward and both operands' backward), not refused; a leaf
    whose forward runs no priced product or pool is still refused, named."""
    x, y = _spikes(2, 1, 4, 6), torch.rand(2, 1, 4, 4)

    def net(gram: nn.Module) -> nn.Sequential:
        torch.manual_seed(0)
        return nn.Sequential(layers.Linear(6, 6), neurons.LIFNode(), gram)

    leaf = neuromc_energy_report(net(_Gram()), x, y, F.mse_loss)
    parent = neuromc_energy_report(net(_GramWithChild()), x, y, F.mse_loss)
    assert _summary(leaf) == _summary(parent)
    ops = {w.op for w in leaf.works if w.name == "2"}
    assert ops == {"matmul.forward", "matmul.backward.grad_left", "matmul.backward.grad_right"}

    class Clamp(nn.Module):
        def forward(self, v: torch.Tensor) -> torch.Tensor:
            return v.clamp(0.0, 1.0)

    with pytest.raises(ConfigurationError, match=r"cannot price 2 \(Clamp: work NeuroMC has no"):
        neuromc_energy_report(net(Clamp()), x, y, F.mse_loss)


def test_adjusted_avg_pool2d_called_as_a_function_is_priced_as_the_module():
    """``adjusted_avg_pool2d(x, 2)`` in a module's forward costs what AdjustedAvgPool2d(2)
    does: its adjusted backward included (not a plain average pool's)."""
    conv = layers.Conv2d(2, 2, 1, bias=False)
    nn.init.constant_(conv.weight, 1.0)

    def net(pool: nn.Module) -> nn.Sequential:
        return nn.Sequential(conv, neurons.LIFNode(v_threshold=0.5), pool, layers.Flatten(),
                             layers.Linear(8, 2), neurons.LIFNode())  # fmt: skip

    x, y = _spikes(1, 1, 2, 4, 4), torch.rand(1, 1, 2)
    function = neuromc_energy_report(net(_FunctionalAdjustedPool()), x, y, F.mse_loss)
    module = neuromc_energy_report(net(AdjustedAvgPool2d(2)), x, y, F.mse_loss)
    assert _summary(function) == _summary(module)
    assert [w.op for w in function.works if w.name == "2"] == [
        "adjavgpool.forward", "adjavgpool.backward",
    ]  # fmt: skip
    assert not pooling._OBSERVERS  # the report's observer is gone
