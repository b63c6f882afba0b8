"""docs/migration.md, checked against SpikingJelly 2.0 and Norse 1.1 (its snnTorch
section: tests/test_migration_snntorch.py).

Every mapping the page states is run here on both sides with the same weights and the
same input: spikes must be identical and gradients equal in float64. The page's code
blocks are executed as printed. Each test skips when its peer is absent.
"""

from __future__ import annotations

import copy
import fnmatch
import importlib
import importlib.metadata
import importlib.util
import inspect
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from conftest import require_shared_data
from migration_checks import (
    F64_RTOL,
    TEXT,
    assert_same_spikes,
    block,
    grads,
    run,
    sequence,
    step_loop,
)
from spikeflow import encoding, functional, layers, losses, models, neurons, surrogate
from spikeflow.errors import ConfigurationError, ShapeError, StateError

SJ_IMPORT = "from spikingjelly.activation_based import functional, layer, neuron, surrogate"
SF_IMPORT = "from spikeflow import functional, layers as layer, neurons as neuron, surrogate"


def sj(module: str):
    return pytest.importorskip(
        f"spikingjelly.activation_based.{module}", reason="SpikingJelly is not installed"
    )


@pytest.fixture
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


# -- SpikingJelly: the script ported by changing its import ----------------------------


def test_sj_script_ports_by_changing_the_import(float64):
    sj("neuron")
    code = block("sj-script")
    assert SJ_IMPORT in code and SF_IMPORT in TEXT and SJ_IMPORT in TEXT
    theirs = run(code, "SpikingJelly")
    ours = run(code.replace(SJ_IMPORT, SF_IMPORT), "spikeflow")
    assert type(ours["net"][2]).__module__.startswith("spikeflow")
    assert type(theirs["net"][2]).__module__.startswith("spikingjelly")
    assert torch.equal(ours["out"], theirs["out"]) and 0 < ours["out"].mean() < 0.98
    assert ours["loss"].item() == pytest.approx(theirs["loss"].item(), rel=1e-12)
    for (name, p), (name_sj, p_sj) in zip(
        ours["net"].named_parameters(), theirs["net"].named_parameters(), strict=True
    ):
        assert name == name_sj and p.grad.abs().sum() > 0
        torch.testing.assert_close(p.grad, p_sj.grad, **F64_RTOL)
        torch.testing.assert_close(p, p_sj, **F64_RTOL)  # after the optimizer step
    for (name, b), (_, b_sj) in zip(ours["net"].named_buffers(), theirs["net"].named_buffers()):
        torch.testing.assert_close(b, b_sj, **F64_RTOL, msg=name)  # BN running statistics

    # every layer's output and the input gradient, with the updated weights
    x = torch.rand(8, 4, 2, 34, 34).requires_grad_()
    g = torch.randn(8, 4, 10)
    h_sf, h_sj, outputs = x, x, []
    for layer_sf, layer_sj in zip(ours["net"], theirs["net"]):
        h_sf, h_sj = layer_sf(h_sf), layer_sj(h_sj)
        assert torch.equal(h_sf, h_sj), type(layer_sf).__name__
        outputs.append(h_sf)
    assert 0.02 < outputs[2].mean() < 0.98 and outputs[6].sum() > 0  # LIF and IF spikes
    (gx_sf,) = grads(h_sf, [x], g)
    (gx_sj,) = grads(h_sj, [x], g)
    assert gx_sf.abs().sum() > 0
    torch.testing.assert_close(gx_sf, gx_sj, **F64_RTOL)

    # the two lines spikeflow does not need
    lean = code.replace(SJ_IMPORT, SF_IMPORT)
    lean = lean.replace('functional.set_step_mode(net, "m")\n', "")
    lean = lean.replace("functional.reset_net(net)\n", "")
    assert "set_step_mode" not in lean and "reset_net" not in lean
    assert torch.equal(run(lean, "spikeflow, lean")["out"], theirs["out"])


def _sj_and_sf_nets():
    code = block("sj-script").split("functional.set_step_mode")[0]
    theirs = run(code, "SpikingJelly net")
    sj("functional").set_step_mode(theirs["net"], "m")
    ours = run(code.replace(SJ_IMPORT, SF_IMPORT), "spikeflow net")
    ours["net"].load_state_dict(theirs["net"].state_dict())
    return ours["net"].eval(), theirs["net"].eval()


def test_state_and_step_modes_as_documented(float64):
    sj_functional = sj("functional")
    net, sj_net = _sj_and_sf_nets()
    a, b = torch.rand(8, 4, 2, 34, 34) * 2, torch.rand(8, 4, 2, 34, 34) * 2
    with torch.no_grad():
        fresh = net(b)
        net(a)
        assert torch.equal(net(b), fresh)  # no state leaks from the previous batch
        sj_net(a)
        leaked = sj_net(b)
        sj_functional.reset_net(sj_net)
        assert torch.equal(sj_net(b), fresh) and not torch.equal(leaked, fresh)
        functional.reset_net(net)  # harmless
        assert torch.equal(net(b), fresh)

        with pytest.raises(ShapeError, match="missing the time dimension"):
            net(b[0])  # SpikingJelly's per-step loop on a multi-step net
        functional.set_step_mode(net, "s")
        with pytest.raises(StateError, match="streaming"):
            net(b[0])
        with functional.streaming(net):
            steps = torch.stack([net(b_t) for b_t in b])
        assert torch.equal(steps, fresh)
        functional.set_step_mode(net, "m")
        with functional.streaming(net):
            chunks = torch.cat([net(c) for c in b.split(3)])
        assert torch.equal(chunks, fresh)

    lif = net[2]
    assert lif.v is None  # no membrane kept outside streaming
    lif.store_v_seq = True
    net(b)
    assert lif.v_seq.shape == (8, 4, 16, 34, 34)
    sj_lif = sj_net[2]
    assert sj_lif.v.shape == (4, 16, 34, 34)  # SpikingJelly's last membrane
    torch.testing.assert_close(lif.v_seq[-1], sj_lif.v, **F64_RTOL)


def test_backend_and_argument_checks():
    with pytest.raises(ConfigurationError, match="'auto', 'torch', 'cpu', 'triton'"):
        neurons.LIFNode(backend="cupy")
    assert not hasattr(functional, "set_backend")
    sj_neuron, sj_functional = sj("neuron"), sj("functional")  # SpikingJelly 2.0 has neither
    assert not hasattr(sj_functional, "set_backend")
    assert "backend" not in inspect.signature(sj_neuron.LIFNode).parameters
    assert neurons.LIFNode().backend == "auto" and neurons.LIFNode().step_mode == "m"
    with pytest.raises(TypeError):
        neurons.LIFNode(2.0, True, 1.0)  # v_threshold by keyword only
    assert list(inspect.signature(neurons.IFNode).parameters)[4] == "strict_firing"
    for bad in (dict(tau=1.0), dict(v_threshold=0.0), dict(v_threshold=float("nan"))):
        with pytest.raises(ConfigurationError):
            neurons.LIFNode(**bad)


# -- SpikingJelly: same-named neurons, layers, surrogates, encoders ----------------------


def _sj_neuron_pairs(sj_neuron):
    return {
        "IFNode": (lambda: neurons.IFNode(), lambda: sj_neuron.IFNode(step_mode="m")),
        "LIFNode": (
            lambda: neurons.LIFNode(tau=3.0, decay_input=False, v_reset=None),
            lambda: sj_neuron.LIFNode(tau=3.0, decay_input=False, v_reset=None, step_mode="m"),
        ),
        "ParametricLIFNode": (
            lambda: neurons.PLIFNode(init_tau=2.5, detach_reset=True),
            lambda: sj_neuron.ParametricLIFNode(init_tau=2.5, detach_reset=True, step_mode="m"),
        ),
        "QIFNode": (lambda: neurons.QIFNode(), lambda: sj_neuron.QIFNode(step_mode="m")),
        "EIFNode": (lambda: neurons.EIFNode(), lambda: sj_neuron.EIFNode(step_mode="m")),
        "IzhikevichNode": (
            lambda: neurons.IzhikevichNode(),
            lambda: sj_neuron.IzhikevichNode(step_mode="m"),
        ),
        "KLIFNode": (lambda: neurons.KLIFNode(), lambda: sj_neuron.KLIFNode(step_mode="m")),
        "PSN": (lambda: neurons.PSN(16), lambda: sj_neuron.PSN(16)),
        "SlidingPSN": (
            lambda: neurons.SlidingPSN(3),
            lambda: sj_neuron.SlidingPSN(3, step_mode="m"),
        ),
        "MaskedPSN": (
            lambda: neurons.MaskedPSN(3, 16, lambda_init=0.3),
            lambda: sj_neuron.MaskedPSN(3, 16, lambda_init=0.3, step_mode="m"),
        ),
        "CUBALIFNode": (  # the table's parameter mapping, SpikingJelly's defaults passed
            lambda: neurons.CubaLIFNode(
                tau_syn=1 / (1 - 0.5),
                tau_mem=1 / (1 - 0.75),
                r=(1 / 0.5) * (1 / 0.25),
                v_threshold=0.5,
                surrogate_function=surrogate.Rect(),
            ),
            lambda: sj_neuron.CUBALIFNode(c_decay=0.5, v_decay=0.75),
        ),
        "NonSpikingLIFNode": (
            lambda: neurons.LINode(tau=3.0),
            lambda: sj_neuron.NonSpikingLIFNode(tau=3.0),
        ),
        "ComplementaryLIFNode": (  # the same leading positional arguments
            lambda: neurons.ComplementaryLIFNode(3.0, 0.8, surrogate.ATan()),
            lambda: sj_neuron.ComplementaryLIFNode(3.0, 0.8, sj("surrogate").ATan(), "m"),
        ),
        "GatedLIFNode": (  # all nine positional arguments
            lambda: neurons.GatedLIFNode(16, 20, None, 0.3, 0.4, 0.6, 0.3, surrogate.ATan(), "m"),
            lambda: sj_neuron.GatedLIFNode(  # its parameters are float32 whatever the default
                16, 20, None, 0.3, 0.4, 0.6, 0.3, sj("surrogate").ATan(), "m"
            ).double(),
        ),
        "RAFNode": (
            lambda: neurons.RAFNode(-0.3, 1.5, 0.5, 0.9, None, surrogate.Sigmoid(), True),
            lambda: sj_neuron.RAFNode(
                -0.3, 1.5, 0.5, 0.9, None, sj("surrogate").Sigmoid(), True, "m"
            ),
        ),
    }


SJ_NEURONS = (
    "IFNode LIFNode ParametricLIFNode QIFNode EIFNode IzhikevichNode KLIFNode PSN SlidingPSN "
    "MaskedPSN CUBALIFNode NonSpikingLIFNode ComplementaryLIFNode RAFNode GatedLIFNode"
).split()


@pytest.mark.parametrize("name", SJ_NEURONS)
def test_neurons_equal_to_spikingjelly(float64, name):
    sj_neuron = sj("neuron")
    make_ours, make_theirs = _sj_neuron_pairs(sj_neuron)[name]
    ours, theirs = make_ours(), make_theirs()
    state = theirs.state_dict()
    if name == "MaskedPSN":  # the state-dict difference the table states
        state = {"weight": state["weight"], "bias": state["bias"], "mask_lambda": state["_lambda_"]}
    ours.load_state_dict(state)
    psn = name in ("PSN", "MaskedPSN")
    x = torch.rand(16, 4, 20) * (6.0 if psn else 2.0) - (1.0 if psn else 0.2)
    if name == "GatedLIFNode":  # SpikingJelly's runs on [T, B, C, H, W] only
        x = x[..., None, None]
    g = torch.randn_like(x)
    x_sf, x_sj = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_sf = ours(x_sf)
    if name == "CUBALIFNode":  # SpikingJelly runs it step by step only
        out_sj = torch.stack([theirs(x_t) for x_t in x_sj])
    elif name == "NonSpikingLIFNode":  # a list of steps
        out_sj = torch.stack(theirs(x_sj))
    else:
        out_sj = theirs(x_sj)
    if name == "NonSpikingLIFNode":
        torch.testing.assert_close(out_sf, out_sj, **F64_RTOL)
    else:
        assert_same_spikes(out_sf, out_sj)
    got = grads(out_sf, [x_sf, *ours.parameters()], g)
    want = grads(out_sj, [x_sj, *theirs.parameters()], g)
    assert got[0].abs().sum() > 0
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, **F64_RTOL)


def test_layer_argument_mappings(float64):
    sj_layer, sj_functional = sj("layer"), sj("functional")
    x = torch.randn(4, 3, 8, 5, 5)
    pairs = [
        (
            sj_layer.ThresholdDependentBatchNorm2d(0.5, 1.5, 8),
            layers.ThresholdDependentBatchNorm2d(8, alpha=0.5, v_threshold=1.5),
            None,
        ),
        (
            sj_layer.BatchNormThroughTime2d(4, 8),
            layers.BatchNormThroughTime2d(8, T=4),
            lambda k: k.replace("bn_list.", "bn."),
        ),
        (
            sj_layer.TemporalEffectiveBatchNorm2d(4, 8),
            layers.TemporalEffectiveBatchNorm2d(8, T=4),
            lambda k: "p" if k == "scale" else "bn." + k,
        ),
    ]
    conv = nn.Conv2d(8, 2, 3)  # the container's contents start equal
    pairs.append(
        (
            sj_layer.StepModeContainer(False, "m", conv),
            layers.StepModeContainer(copy.deepcopy(conv), stateless=not False),
            None,
        )
    )
    for theirs, ours, rename in pairs:
        sj_functional.set_step_mode(theirs, "m")
        name = type(ours).__name__
        rename = rename or (lambda k: k)
        ours_state = ours.state_dict()
        for key, value in theirs.state_dict().items():  # the same initial values (TDBN: α·θ)
            torch.testing.assert_close(ours_state[rename(key)], value, msg=f"{name}.{key}")
        torch.testing.assert_close(ours(x), theirs(x), **F64_RTOL, msg=name)
        sj_functional.reset_net(theirs)  # SpikingJelly's BNTT counts steps until reset
        with torch.no_grad():
            for p in theirs.parameters():  # not the initial values, so loading matters
                p.add_(torch.rand_like(p))
        ours.load_state_dict({rename(k): v for k, v in theirs.state_dict().items()})
        torch.testing.assert_close(ours(x), theirs(x), **F64_RTOL, msg=name)
    with pytest.raises(ShapeError):
        layers.BatchNormThroughTime2d(4, 8)(x)  # SpikingJelly's (T, C) order, T != C
    layers.VotingLayer(10, step_mode="m")  # accepted (and checked), no other effect
    with pytest.raises(ConfigurationError, match="step_mode"):
        layers.VotingLayer(10, step_mode="x")

    # functional.seq_to_ann_forward / multi_step_forward, and the containers
    conv = nn.Conv2d(8, 2, 3)
    want = sj_functional.seq_to_ann_forward(x, conv)
    torch.testing.assert_close(layers.SeqToANNContainer(conv)(x), want)
    torch.testing.assert_close(functional.seq_to_ann_forward(x, conv), want)
    lif_sj = sj("neuron").LIFNode()
    want = sj_functional.multi_step_forward(x, lif_sj)
    assert torch.equal(layers.MultiStepContainer(neurons.LIFNode(step_mode="s"))(x), want)
    assert torch.equal(functional.multi_step_forward(x, neurons.LIFNode(step_mode="s")), want)

    # the same-named layers are torch's layers with a step mode: torch weights load
    for name in ["Conv2d", "Linear", "BatchNorm2d", "GroupNorm", "LayerNorm", "ConvTranspose2d"]:
        assert issubclass(getattr(layers, name), getattr(nn, name))


def test_tet_loss_is_spikingjelly_tet_with_lamb_zero(float64):
    sj_functional = sj("functional")
    out, y = torch.randn(6, 4, 10), torch.randint(0, 10, (4,))
    want = sj_functional.temporal_efficient_training_cross_entropy(out, y)
    torch.testing.assert_close(losses.tet_loss(out, y, lamb=0.0), want, **F64_RTOL)
    assert not torch.allclose(losses.tet_loss(out, y, lamb=0.5), want)


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "VanillaRNN"])
def test_spiking_rnns_equal_to_spikingjelly(float64, kind):
    """The rnn row of the table: SpikingJelly's weights load and give the same outputs
    and states (the full comparison, gradients included, is tests/test_spiking_rnn.py)."""
    sj_rnn = sj("rnn")

    def tensors(out):  # y, (y, h), (y, (h, c)) or (h, c) as a flat list
        return [out] if isinstance(out, torch.Tensor) else [t for o in out for t in tensors(o)]

    # (positional arguments, input shape): the stacked layer (2 layers, bidirectional)
    # and the cell
    for suffix, args, shape in [
        ("", (3, 5, 2, True, 0.0, False, True), (6, 4, 3)),
        ("Cell", (3, 5), (4, 3)),
    ]:
        theirs = getattr(sj_rnn, f"Spiking{kind}{suffix}")(*args)
        ours = getattr(layers, f"Spiking{kind}{suffix}")(*args)
        ours.load_state_dict(theirs.state_dict())
        x = torch.randn(shape) * 2
        want, got = tensors(theirs(x)), tensors(ours(x))
        assert len(got) == len(want) and all(torch.equal(a, b) for a, b in zip(got, want))


def _sj_surrogate_names() -> list[str]:
    row = next(line for line in TEXT.splitlines() if line.startswith("| `surrogate.Sigmoid`"))
    cell = row.split("|")[1]
    return re.findall(r"`(?:surrogate\.)?(\w+)`", cell)


def test_surrogates_same_as_spikingjelly(float64):
    sj_surrogate = sj("surrogate")
    # MultiLevelSpikeCount (a count, whose D SpikingJelly's requires) is compared in
    # test_surrogate_multilevel.py, whether the row names it or not.
    names = [n for n in _sj_surrogate_names() if n != "MultiLevelSpikeCount"]
    assert len(names) == 17
    shared = {n for n in surrogate.SURROGATES if hasattr(sj_surrogate, n)}
    assert "MultiLevelSpikeCount" in shared
    shared.discard("MultiLevelSpikeCount")
    snntorch_only = {"FastSigmoid", "SpikeRateEscape", "SparseFastSigmoid", "Triangular",
                     "LeakySpikeOperator"}  # fmt: skip
    norse_only = {"HeaviTanh", "HeaviErfc", "HeaviCirc", "NorseTriangle"}
    assert set(names) == shared
    assert set(surrogate.SURROGATES) - shared == {"Triangle", "MultiLevelSpikeCount", "DSpike",
                                                   "DoubleGaussian", "MultiGaussian",
                                                   "ArctanSpike",
                                                   *snntorch_only, *norse_only}  # fmt: skip
    x = torch.linspace(-3, 3, 601)
    other = dict(alpha=3.0, w=0.5, c=0.05, leak=0.1, k=2.0, beta=2.0, n=4, T_period=6.0)
    for name in names:
        sj_cls, sf_cls = getattr(sj_surrogate, name), getattr(surrogate, name)
        keys = [k for k in inspect.signature(sj_cls).parameters if k != "spiking"]
        sf_keys = [k for k in inspect.signature(sf_cls).parameters if k != "spiking"]
        assert keys == sf_keys, name
        for kwargs in ({}, {k: other[k] for k in keys}):
            if name == "QPseudoSpike" and kwargs:
                kwargs = {"alpha": 3.0}
            theirs, ours = sj_cls(**kwargs), sf_cls(**kwargs)
            x_sj, x_sf = x.clone().requires_grad_(), x.clone().requires_grad_()
            y_sj, y_sf = theirs(x_sj), ours(x_sf)
            assert torch.equal(y_sj, y_sf), name
            y_sj.sum().backward()
            y_sf.sum().backward()
            torch.testing.assert_close(x_sf.grad, x_sj.grad, **F64_RTOL, msg=name)
            if sf_cls.has_primitive:
                p_sj = sj_cls(**kwargs, spiking=False)(x)
                p_sf = sf_cls(**kwargs, spiking=False)(x)
                if name == "S2NN":  # SpikingJelly's log(x + 1 + 1e-5) for x >= 0
                    gap = (p_sj - p_sf).abs().max()
                    assert 0 < gap < ours.beta * 1e-5
                else:
                    torch.testing.assert_close(p_sf, p_sj, **F64_RTOL, msg=name)


def test_encoders_as_in_spikingjelly():
    sj_encoding = sj("encoding")
    x = torch.rand(4, 3, 5)
    x[0, 0, :3] = torch.tensor([0.0, 1.0, 0.5])
    for fn in ("linear", "log"):
        enc = sj_encoding.LatencyEncoder(8, enc_function=fn)
        want = torch.stack([enc(x) for _ in range(8)])
        assert torch.equal(encoding.LatencyEncoder(8, fn)(x), want)
    xk = torch.rand(4, 3, 5) * (1 - 2**-6)
    enc = sj_encoding.WeightedPhaseEncoder(6)
    assert torch.equal(
        encoding.WeightedPhaseEncoder(6)(xk), torch.stack([enc(xk) for _ in range(6)])
    )
    pattern = (torch.rand(5, 3, 5) > 0.5).float()
    enc = sj_encoding.PeriodicEncoder(pattern)
    want = torch.stack([enc(pattern) for _ in range(12)])  # SpikingJelly is given the pattern
    assert torch.equal(encoding.PeriodicEncoder(spikes=pattern, T=12)(pattern[0]), want)
    got = encoding.PeriodicEncoder(spikes=pattern, T=12)(x)  # broadcast to x: [12, 4, 3, 5]
    assert got.shape == (12, 4, 3, 5) and torch.equal(got, want[:, None].expand_as(got))
    with pytest.raises(TypeError):
        encoding.PeriodicEncoder(spike=pattern)
    binary = (torch.rand(4, 3, 5) > 0.5).float()
    assert torch.equal(sj_encoding.PoissonEncoder()(binary), binary)
    assert torch.equal(encoding.PoissonEncoder(8)(binary), binary.expand(8, -1, -1, -1))
    assert encoding.PoissonEncoder(8, step_mode="s")(binary).shape == binary.shape
    with pytest.raises(ConfigurationError, match=r"PoissonEncoder\(1, step_mode='s'\)"):
        encoding.PoissonEncoder()  # SpikingJelly's call: the error says how to port it
    x = torch.rand(4, 3, 5)
    torch.manual_seed(5)
    want = sj_encoding.PoissonEncoder()(x)
    torch.manual_seed(5)
    got = encoding.PoissonEncoder(1, step_mode="s")(x)
    assert 0.2 < want.mean() < 0.8 and torch.equal(got, want)


# -- SpikingJelly: the tables' names and the list of what spikeflow lacks --------------

SF_MODULES = tuple(
    "neurons layers functional surrogate encoding learn training conversion losses models "
    "monitor quant".split()
)
SJ_MODULES = tuple(
    "neuron layer functional surrogate encoding learning monitor ann2snn rnn quantize".split()
)


def _expand(token: str) -> list[str]:
    """``Conv1d/2d/3d`` -> Conv1d, Conv2d, Conv3d; ``f(...)`` -> f; other tokens as they are."""
    token = token.split("(")[0].strip()
    if "/" not in token:
        return [token]
    first, *rest = token.split("/")
    stem = re.sub(r"\d+d$", "", first)
    return [first] + [stem + r for r in rest]


def _table_rows() -> list[list[str]]:
    table = TEXT.split("### Names")[1].split("**Model zoo.**")[0]
    return [row.split("|")[1:-1] for row in table.splitlines()[4:] if row.startswith("|")]


def _names(cell: str, modules: tuple[str, ...]) -> list[tuple[str, str]]:
    """``(module, name)`` for every backticked name of a cell: a ``module.name`` token
    sets the module, bare names after it in the cell belong to it."""
    found, module = [], None
    for token in re.findall(r"`([^`]+)`", cell):
        for name in _expand(token):
            head, _, tail = name.partition(".")
            if head in modules and tail.isidentifier():
                module, name = head, tail
            elif not name.isidentifier() or module is None:
                continue
            found.append((module, name))
    return found


SAME_MODULE = {**dict(zip(SJ_MODULES[:5], SF_MODULES[:5])), "rnn": "layers", "monitor": "monitor"}


def test_table_names_exist_on_both_sides():
    """Every name in the SpikingJelly table exists in its library; where the spikeflow
    cell says "..." (the same names), SpikingJelly's names exist in spikeflow too."""
    sj("neuron")
    checked = 0
    for sj_cell, sf_cell, _ in _table_rows():
        theirs, ours = _names(sj_cell, SJ_MODULES), _names(sf_cell, SF_MODULES)
        for module, name in theirs:
            sj_module = importlib.import_module(f"spikingjelly.activation_based.{module}")
            assert hasattr(sj_module, name), f"SpikingJelly has no {module}.{name}"
        if "..." in re.sub(r"`[^`]*`", "", sf_cell):  # outside code: "the same names"
            ours += [(SAME_MODULE[m], n) for m, n in theirs]
        for module, name in ours:
            sf_module = importlib.import_module(f"spikeflow.{module}")
            assert hasattr(sf_module, name), f"spikeflow has no {module}.{name}"
        checked += len(theirs) + len(ours)
    assert checked > 150
    from spikeflow import learn

    assert "tau_eligibility" in inspect.signature(learn.STDPLearner).parameters
    assert "reward" in inspect.signature(learn.STDPLearner.step).parameters


def _sj_public_names(module) -> set[str]:
    names = set()
    for name in dir(module):
        obj = getattr(module, name)
        if name.startswith("_") or inspect.ismodule(obj):
            continue
        if (getattr(obj, "__module__", "") or "").startswith("spikingjelly"):
            names.add(name)
    return names


def _missing_section() -> dict[str, list[str]]:
    section = TEXT.split("<!-- migration: sj-missing")[1].split("## From snnTorch")[0]
    bullets = re.split(r"\n- ", section)[1:]
    return {b.split(":")[0]: re.findall(r"`([^`]+)`", b) for b in bullets}


def test_missing_names_listed_exactly():
    """Every public SpikingJelly name spikeflow lacks is covered by the page's list, and
    every entry of the list names something SpikingJelly has and spikeflow lacks."""
    sj("neuron")
    version = importlib.metadata.version("spikingjelly")
    if not version.startswith("2.0"):
        pytest.skip(f"the list is SpikingJelly 2.0's; installed: {version}")
    pairs = {
        "neurons": ("neuron", "neurons"),
        "layers": ("layer", "layers"),
        "functional": ("functional", "functional"),
        "surrogate": ("surrogate", "surrogate"),
        "encoding": ("encoding", "encoding"),
        "rnn": ("rnn", "layers"),
    }
    listed = _missing_section()
    assert set(listed) == set(pairs)
    sj_surrogate_classes = {n.lower() for n in dir(sj("surrogate"))}
    for bullet, (sj_name, sf_name) in pairs.items():
        theirs = _sj_public_names(sj(sj_name))
        ours = importlib.import_module(f"spikeflow.{sf_name}")
        missing = {n for n in theirs if not hasattr(ours, n)}
        patterns = [p for p in listed[bullet] if re.fullmatch(r"[\w*]+", p)]
        assert len(missing) > (0 if bullet == "rnn" else 2)

        def covered(name, patterns=patterns, bullet=bullet):
            if any(fnmatch.fnmatchcase(name, p) for p in patterns):
                return True
            # "the function forms sigmoid, atan, ... and *_backward" of the surrogates
            return bullet == "surrogate" and name.replace("_", "") in sj_surrogate_classes

        uncovered = sorted(n for n in missing if not covered(n))
        assert not uncovered, f"{bullet}: not on the page: {uncovered}"
        for p in patterns:
            hits = [n for n in theirs if fnmatch.fnmatchcase(n, p)]
            assert hits, f"{bullet}: {p} matches no SpikingJelly name"
            assert not [n for n in hits if hasattr(ours, n)], f"{bullet}: spikeflow has {p}"


# -- SpikingJelly: model zoo and datasets -------------------------------------------------


def _randomise_bn(net):
    """BN parameters that are not the initial ones (so loading matters) and a head
    without bias (so the output is non-zero only if spikes reach it)."""
    with torch.no_grad():
        for bn in (m for m in net.modules() if isinstance(m, nn.BatchNorm2d)):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(0.0, 0.6)
            bn.running_mean.uniform_(-0.1, 0.1)
        net.fc.bias.zero_()


def test_model_zoo_weights_load_by_position(spikingjelly_models):
    m = spikingjelly_models
    sew_resnet, spiking_resnet, spiking_vgg = m.sew_resnet, m.spiking_resnet, m.spiking_vgg
    sj_neuron, sj_surrogate, sj_functional = sj("neuron"), sj("surrogate"), sj("functional")
    torch.manual_seed(1)
    x = torch.rand(2, 2, 3, 16, 16)
    for cnf in ("ADD", "AND", "IAND"):
        theirs = sew_resnet.sew_resnet18(
            spiking_neuron=sj_neuron.IFNode, cnf=cnf, num_classes=10, detach_reset=True
        )
        _randomise_bn(theirs)
        code = block("zoo-weights").replace('cnf="ADD"', f'cnf="{cnf}"')
        ours = run(code, "zoo-weights", models=models, theirs=theirs)["ours"].eval()
        sj_functional.set_step_mode(theirs.eval(), "m")
        with torch.no_grad():
            want = theirs(x)
            assert want.abs().sum() > 0, cnf
            torch.testing.assert_close(ours(x), want, msg=cnf)
    sns = [m for m in ours.modules() if isinstance(m, neurons.BaseNode)]
    assert sns and all(type(n) is neurons.IFNode and n.detach_reset for n in sns)
    assert all(type(n.surrogate_function) is surrogate.ATan for n in sns)
    with pytest.raises(ConfigurationError, match="pretrained"):
        models.create_model("sew_resnet18", pretrained=True)

    # the prose's spelling of SpikingJelly's neuron arguments
    theirs = spiking_resnet.spiking_resnet18(
        spiking_neuron=sj_neuron.IFNode,
        surrogate_function=sj_surrogate.ATan(),
        detach_reset=True,
        num_classes=10,
    )
    _randomise_bn(theirs)
    ours = models.create_model(
        "spiking_resnet18",
        neuron=neurons.IFNode,
        neuron_kwargs=dict(surrogate_function=surrogate.ATan(), detach_reset=True),
        num_classes=10,
    )
    renamed = {
        k.replace("conv1.", "stem.0.", 1).replace("bn1.", "stem.1.", 1)
        if k.startswith(("conv1.", "bn1."))
        else k: v
        for k, v in theirs.state_dict().items()
    }
    ours.load_state_dict(renamed)  # strict: only the stem's names differ
    sj_functional.set_step_mode(theirs.eval(), "m")
    with torch.no_grad():
        want = theirs(x)
        assert want.abs().sum() > 0
        torch.testing.assert_close(ours.eval()(x), want)
    with pytest.raises(ConfigurationError, match="spiking_neuron"):
        models.create_model("spiking_resnet18", spiking_neuron=neurons.IFNode)

    # VGG: the same tensors in the same order, the classifier's indices shifted by one
    # (on the meta device, without allocating 130M weights)
    with torch.device("meta"):
        theirs = spiking_vgg.spiking_vgg11_bn(spiking_neuron=sj_neuron.IFNode, num_classes=10)
        ours = models.create_model("spiking_vgg11_bn", num_classes=10).state_dict()
    theirs = theirs.state_dict()
    assert [v.shape for v in ours.values()] == [v.shape for v in theirs.values()]
    differ = {a: b for a, b in zip(theirs, ours) if a != b}
    assert differ and all(
        a.startswith("classifier.") and b == re.sub(r"\.(\d+)\.", lambda m: f".{int(m[1]) + 1}.", a)
        for a, b in differ.items()
    )


def test_dataset_arguments():
    from spikeflow import data

    base = inspect.signature(data.NeuromorphicDataset).parameters
    names = "root train data_type frames_number split_by duration custom_integrate_function"
    for name in [*names.split(), "transform", "target_transform"]:
        assert name in base
    cache_dir = base["cache_dir"]
    assert cache_dir.default is None and cache_dir.kind is cache_dir.KEYWORD_ONLY
    kept = "NMNIST DVS128Gesture CIFAR10DVS NCaltech101 ASLDVS DVSLip ESImageNet HARDVS"
    for name in kept.split():
        assert issubclass(getattr(data, name), data.NeuromorphicDataset)
    cifar = inspect.signature(data.CIFAR10DVS).parameters
    assert cifar["train"].default is True and "split_rule" in cifar
    assert "split" in inspect.signature(data.SSC).parameters
    assert inspect.signature(data.NAVGesture).parameters["variant"].default == "walk"
    spikingjelly = pytest.importorskip("spikingjelly")
    sources = (Path(spikingjelly.__file__).parent / "datasets").glob("*.py")
    defined = set(re.findall(r"^class (\w+)\(", "".join(p.read_text() for p in sources), re.M))
    sj_names = "SpikingHeidelbergDigits SpikingSpeechCommands NAVGestureWalk NAVGestureSit"
    assert {*sj_names.split(), "CIFAR10DVSTEBNSplit", "NMNIST", "DVS128Gesture"} <= defined
    assert not hasattr(data, "NAVGestureWalk") and not hasattr(data, "NAVGestureSit")
    assert callable(data.SpikingHeidelbergDigits)  # builds an SHD
    assert data.SpikingSpeechCommands is data.SSC


def _sj_parameters(source: Path, cls: str) -> list[str]:
    """The parameter names of SpikingJelly's ``cls.__init__`` (its dataset modules import
    torchvision, which cannot be installed here: read from the source)."""
    import ast

    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.ClassDef) and node.name == cls:
            init = next(f for f in node.body if getattr(f, "name", "") == "__init__")
            return [a.arg for a in init.args.args[1:]]
    raise AssertionError(cls)


def test_datasets_take_spikingjellys_arguments_in_its_order():
    """After the split argument, every dataset takes SpikingJelly's positional arguments
    in its order; its own options only by keyword (a ported ``NMNIST(root, True,
    'frame', 4)`` once bound 'frame' to ``download``)."""
    from spikeflow import data

    spikingjelly = pytest.importorskip("spikingjelly")
    folder = Path(spikingjelly.__file__).parent / "datasets"
    base = [n for n, p in inspect.signature(data.NeuromorphicDataset).parameters.items()
            if p.kind is p.POSITIONAL_OR_KEYWORD]  # fmt: skip
    theirs = _sj_parameters(folder / "n_mnist.py", "NMNIST")
    assert base == theirs  # root, train, data_type, ..., transform, target_transform
    others = [("dvs128_gesture.py", "DVS128Gesture"), ("dvs_lip.py", "DVSLip"),
              ("bullying10k.py", "Bullying10kClassification"),
              ("es_imagenet.py", "ESImageNet")]  # fmt: skip
    for module, name in others:
        assert _sj_parameters(folder / module, name) == theirs, name
    for name in data.__all__:
        cls = getattr(data, name)
        if not (isinstance(cls, type) and issubclass(cls, data.NeuromorphicDataset)):
            continue
        kinds = [p.kind for p in inspect.signature(cls).parameters.values()]
        positional = kinds.count(inspect.Parameter.POSITIONAL_OR_KEYWORD)
        if inspect.Parameter.VAR_POSITIONAL in kinds:  # forwarded to the base
            assert kinds.index(inspect.Parameter.VAR_POSITIONAL) == positional, name
        else:
            assert cls.__init__ is data.NeuromorphicDataset.__init__ or positional <= 3, name
    # SpikingJelly's classes take one split argument, then data_type: so do these.
    ported = "NMNIST DVS128Gesture CIFAR10DVS NCaltech101 ASLDVS DVSLip ESImageNet HARDVS SSC"
    for name in [*ported.split(), "Bullying10K"]:
        params = list(inspect.signature(getattr(data, name)).parameters.values())
        third = params[2]  # forwarded to the base's data_type, or the base's own
        assert third.kind is third.VAR_POSITIONAL or third.name == "data_type", (name, params[:3])


def test_a_ported_positional_call_reads_the_same():
    from spikeflow import data

    root = require_shared_data("nmnist-small")
    ported = data.NMNIST(root, False, "frame", 4, "number")
    ours = data.NMNIST(root, train=False, data_type="frame", frames_number=4, split_by="number")
    assert len(ported) == len(ours)
    assert np.array_equal(ported[3][0], ours[3][0]) and ported[3][1] == ours[3][1]
    with pytest.raises(ConfigurationError, match="NMNIST: download must be True or False"):
        data.NMNIST(root, False, download="frame")
    with pytest.raises(ConfigurationError, match="SpikingJelly's CIFAR10DVS takes data_type"):
        data.CIFAR10DVS(root, "frame", 4)
    with pytest.raises(ConfigurationError, match="DVS128Gesture: progress must be True or"):
        data.DVS128Gesture(root, progress="no")
    with pytest.raises(ConfigurationError, match="custom_integrated_frames_dir_name"):
        data.NMNIST(root, False, "frame", 4, "number", None, None, "frames_dir")


@pytest.fixture
def sj_dataset_utils(monkeypatch, request):
    """SpikingJelly's ``datasets/utils.py`` (ATIS reader, frame integration) without the
    dataset classes, which import torchvision (see benchmarks/bench_data.py)."""
    spikingjelly = pytest.importorskip("spikingjelly")
    pytest.importorskip("matplotlib")
    pkg = types.ModuleType("spikingjelly.datasets")
    pkg.__path__ = [str(Path(spikingjelly.__file__).parent / "datasets")]
    monkeypatch.setitem(sys.modules, "spikingjelly.datasets", pkg)
    try:
        have_torchvision = importlib.util.find_spec("torchvision") is not None
    except ValueError:  # a stand-in module (no __spec__) another test left in sys.modules
        have_torchvision = False
    if not have_torchvision:
        tv = types.ModuleType("torchvision")
        tv.__path__ = []
        tv.transforms = types.ModuleType("torchvision.transforms")
        monkeypatch.setitem(sys.modules, "torchvision", tv)
        monkeypatch.setitem(sys.modules, "torchvision.transforms", tv.transforms)
    request.addfinalizer(lambda: sys.modules.pop("spikingjelly.datasets.utils", None))
    try:
        return importlib.import_module("spikingjelly.datasets.utils")
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        pytest.skip(f"SpikingJelly's dataset utilities cannot be imported: {exc}")


@pytest.mark.parametrize("split_by", ["number", "time"])
def test_nmnist_frames_are_spikingjelly_frames(sj_dataset_utils, split_by):
    from spikeflow.data import NMNIST

    root = require_shared_data("nmnist-small")
    utils = sj_dataset_utils
    options = dict(train=False, data_type="frame", frames_number=8, split_by=split_by)
    ours = NMNIST(root, **options)
    custom = NMNIST(
        root,
        train=False,
        data_type="frame",
        custom_integrate_function=lambda rec: utils.integrate_events_by_fixed_frames_number(
            rec.events, split_by, 8, 34, 34
        ),
    )
    for i in range(0, len(ours), 20):
        file, label = ours.samples[i]
        frames, y = ours[i]
        want = utils.integrate_events_by_fixed_frames_number(
            utils.load_ATIS_bin(str(file)), split_by, 8, 34, 34
        )
        assert y == label and frames.dtype == torch.float32 and frames.shape == (8, 2, 34, 34)
        assert frames.sum() > 0 and torch.equal(frames, torch.as_tensor(want, dtype=torch.float32))
        assert torch.equal(torch.as_tensor(custom[i][0], dtype=torch.float32), frames)


# -- Norse --------------------------------------------------------------------------------


@pytest.mark.parametrize("reset", ["value", "subtract"])
def test_norse_lif_box_cell(float64, reset):
    norse = pytest.importorskip("norse.torch", reason="Norse is not installed")
    from norse.torch.functional.reset import reset_subtract, reset_value

    dt, tau_mem_inv = 1e-3, 100.0
    p = norse.LIFBoxParameters(
        tau_mem_inv=torch.tensor(tau_mem_inv),
        v_th=torch.tensor(1.0),
        reset_method=reset_value if reset == "value" else reset_subtract,
    )
    x, g = sequence(30.0, (32, 4, 20))
    x_norse, x_sf = x.clone().requires_grad_(), x.clone().requires_grad_()
    want = step_loop(norse.LIFBoxCell(p, dt=dt), x_norse)
    ours = neurons.LIFNode(
        tau=1 / (dt * tau_mem_inv),
        v_threshold=1.0,
        v_reset=0.0 if reset == "value" else None,
        strict_firing=True,
        surrogate_function=surrogate.SuperSpike(alpha=1.0),
    )
    got = ours(x_sf)
    assert_same_spikes(got, want)
    torch.testing.assert_close(grads(got, [x_sf], g)[0], grads(want, [x_norse], g)[0], **F64_RTOL)
    # v > v_th: a step that charges exactly to the threshold (0.1 * 10 = 1) does not fire
    exact = torch.full((1, 1), 10.0)
    assert step_loop(norse.LIFBoxCell(p, dt=dt), exact).sum() == 0 == ours(exact).sum()


def test_norse_lif(float64):
    norse = pytest.importorskip("norse.torch", reason="Norse is not installed")
    dt = 1e-3
    # Norse starts the membrane at v_leak, spikeflow at v_reset: equal here, not 0
    p = norse.LIFParameters(
        tau_syn_inv=torch.tensor(200.0),
        tau_mem_inv=torch.tensor(100.0),  # float64 here
        v_leak=torch.tensor(0.1),
        v_th=torch.tensor(1.0),
        v_reset=torch.tensor(0.1),
    )
    tau_syn, tau_mem = 1 / p.tau_syn_inv.item(), 1 / p.tau_mem_inv.item()
    x, g = sequence(4.0, (32, 4, 20))
    x_norse, x_sf = x.clone().requires_grad_(), x.clone().requires_grad_()
    want, _ = norse.LIF(p, dt=dt)(x_norse)  # time-major, like spikeflow
    ours = neurons.CubaLIFNode(
        tau_syn=tau_syn,
        tau_mem=tau_mem,
        r=tau_syn / dt,
        v_leak=0.1,
        dt=dt,
        v_threshold=1.0,
        v_reset=0.1,
        strict_firing=True,
        surrogate_function=surrogate.SuperSpike(alpha=1.0),
    )
    got = ours(x_sf)
    assert_same_spikes(got, want)
    # Norse's LIF module starts from a float32 copy of v_leak (its initial state is float32)
    torch.testing.assert_close(
        grads(got, [x_sf], g)[0], grads(want, [x_norse], g)[0], rtol=1e-5, atol=1e-8
    )
