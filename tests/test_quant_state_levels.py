"""snnTorch's ``state_quant`` grids (``quant.snntorch_state_levels``) and membrane
quantization to a list of levels (``quant.apply_state_quantization``): the levels equal
snnTorch's bit for bit (uniform, threshold-centred and zero-centred non-uniform, given
and default multipliers); the rounding equals snnTorch's ``StateQuant`` on a dense probe
and at a tie by hand; ``LeakyNode`` with the levels equals ``snn.Leaky(state_quant=q)``
(spikes, membranes, float64 gradients) on the reference loop, the C kernel and Triton;
saturation of an infinite membrane; state dicts; the errors.
"""

from __future__ import annotations

import pytest
import torch

from conftest import fused_backends, kernel_device
from snntorch_checks import atan64
from spikeflow import quant
from spikeflow.errors import ConfigurationError
from spikeflow.neurons import LeakyNode
from spikeflow.quant.state_levels import LevelQuantizer, nearest_level

F64 = torch.float64
BACKENDS = fused_backends("torch")
#: snnTorch's state_quant arguments: uniform, centred on θ, on 0, given multiplier, 8 bits.
GRIDS = [
    {"num_bits": 4, "uniform": True, "threshold": 1.0},
    {"num_bits": 3, "uniform": False, "threshold": 1.5, "lower_limit": 0.5, "upper_limit": 0.3},
    {"num_bits": 5, "uniform": False, "thr_centered": False},
    {"num_bits": 2, "uniform": False, "multiplier": 0.6, "threshold": 2.0},
    {"num_bits": 1, "uniform": False},
    {"num_bits": 8, "uniform": False},
]
GRID_IDS = ["uniform4", "thr3", "zero5", "mult2", "one_bit", "eight"]


def _snntorch_quant(**kwargs):
    return pytest.importorskip("snntorch.functional.quant").state_quant(**kwargs)


def _their_levels(q):
    """The levels snnTorch's state_quant closes over."""
    (cell,) = [c for c in q.__closure__ if isinstance(c.cell_contents, torch.Tensor)]
    return cell.cell_contents


@pytest.mark.parametrize("kwargs", GRIDS, ids=GRID_IDS)
def test_levels_equal_snntorch(float64, kwargs):
    want = _their_levels(_snntorch_quant(**kwargs))
    got = quant.snntorch_state_levels(**kwargs)
    assert got.dtype == F64 and got.numel() == 2 ** kwargs["num_bits"]
    assert torch.equal(got, want.sort().values)
    assert bool((got[1:] > got[:-1]).all())  # distinct


@pytest.mark.parametrize("kwargs", GRIDS, ids=GRID_IDS)
def test_rounding_equals_snntorch(float64, kwargs):
    q = _snntorch_quant(**kwargs)
    levels = tuple(quant.snntorch_state_levels(**kwargs).tolist())
    probe = torch.linspace(-4, 4, 8001, dtype=F64)
    assert torch.equal(nearest_level(probe, levels=levels), q(probe))


def test_rounding_by_hand():
    levels = (-1.0, -0.5, 0.0, 0.5, 1.0)
    h = torch.tensor([0.25, 0.2500001, -0.75, 7.0, -9.0, float("inf"), float("-inf")],
                     dtype=F64, requires_grad=True)  # fmt: skip
    out = nearest_level(h, levels=levels)
    # a tie goes to the lower level (snnTorch's argmin); beyond the ends, the ends
    assert out.tolist() == [0.0, 0.5, -1.0, 1.0, -1.0, 1.0, -1.0]
    out.sum().backward()
    # straight through; an infinite membrane (clamped to stay finite) passes none
    assert h.grad.tolist() == [1.0] * 5 + [0.0, 0.0]


#: (grid, reset_mechanism, reset_delay): each grid with one reset rule.
CASES = [
    pytest.param(GRIDS[0], "subtract", True, id="uniform4-subtract"),
    pytest.param(GRIDS[1], "zero", True, id="thr3-zero"),
    pytest.param(GRIDS[2], "subtract", False, id="zero5-subtract-now"),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kwargs, mechanism, delay", CASES)
def test_leaky_equals_snntorch_state_quant(float64, backend, kwargs, mechanism, delay):
    snn = pytest.importorskip("snntorch", reason="snnTorch is not installed")
    device = kernel_device(backend)
    theta = kwargs.get("threshold", 1.0)
    torch.manual_seed(3)
    x = (torch.rand(16, 3, 4, dtype=F64) * 1.2 * theta).requires_grad_()
    theirs = snn.Leaky(beta=0.8, threshold=theta, spike_grad=atan64, reset_mechanism=mechanism,
                       reset_delay=delay, state_quant=_snntorch_quant(**kwargs))  # fmt: skip
    spikes, mems, mem = [], [], theirs.init_leaky()
    for x_t in x:
        spk, mem = theirs(x_t, mem)
        spikes.append(spk)
        mems.append(mem)
    spk, mem = torch.stack(spikes), torch.stack(mems)
    node = LeakyNode(0.8, threshold=theta, reset_mechanism=mechanism, reset_delay=delay,
                     store_v_seq=True, backend=backend)  # fmt: skip
    assert quant.apply_state_quantization(node, quant.snntorch_state_levels(**kwargs)) == [
        "LeakyNode"
    ]
    node = node.to(device)
    xx = x.detach().to(device).requires_grad_()
    s = node(xx)
    assert torch.equal(s.detach().cpu(), spk.detach()) and 0.05 < spk.mean() < 0.9
    torch.testing.assert_close(node.v_seq.detach().cpu(), mem.detach(), atol=1e-12, rtol=0)
    if delay:  # the membrane kept is on the levels
        levels = quant.snntorch_state_levels(**kwargs)
        assert torch.isin(node.v_seq.detach().cpu(), levels).all()
    g = torch.randn_like(x)
    (got,) = torch.autograd.grad((s * g.to(device)).sum() + node.v_seq.sum(), xx)
    (want,) = torch.autograd.grad((spk * g).sum() + mem.sum(), x)
    assert want.abs().sum() > 0
    torch.testing.assert_close(got.cpu(), want, atol=1e-12, rtol=1e-10)


def test_snntorch_float32_defaults():
    snn = pytest.importorskip("snntorch", reason="snnTorch is not installed")
    kwargs = {"num_bits": 4, "uniform": False, "threshold": 1.0}
    torch.manual_seed(4)
    x = torch.rand(20, 2, 6) * 1.3
    theirs = snn.Leaky(beta=0.7, state_quant=_snntorch_quant(**kwargs))  # float32 levels
    spikes, mem = [], theirs.init_leaky()
    for x_t in x:
        spk, mem = theirs(x_t, mem)
        spikes.append(spk)
    node = LeakyNode(0.7)
    quant.apply_state_quantization(node, quant.snntorch_state_levels(**kwargs))
    assert torch.equal(node(x), torch.stack(spikes))


#: snnTorch grids whose geometric gaps fall below float64's resolution: repeated levels.
REPEATING = [
    {"num_bits": 6, "uniform": False, "multiplier": 0.3},
    {"num_bits": 5, "uniform": False, "multiplier": 0.05, "threshold": 1.5, "lower_limit": 0.5},
]


@pytest.mark.parametrize("backend", ["torch", "cpu"])
@pytest.mark.parametrize("kwargs", REPEATING, ids=["thr6", "thr5"])
def test_repeated_levels_of_snntorch_grids_are_kept_once(float64, backend, kwargs):
    """snnTorch's own grid with repeated levels: taken (each level once), the same rounding
    and the same Leaky spikes, membranes and gradients as snn.Leaky(state_quant=q)."""
    snn = pytest.importorskip("snntorch", reason="snnTorch is not installed")
    q = _snntorch_quant(**kwargs)
    levels = quant.snntorch_state_levels(**kwargs)
    distinct = torch.unique(levels)
    assert levels.numel() == 2 ** kwargs["num_bits"] and distinct.numel() < levels.numel()
    probe = torch.linspace(-1.5, 1.5, 3001, dtype=F64)
    assert torch.equal(nearest_level(probe, levels=tuple(levels.tolist())), q(probe))
    assert torch.equal(LevelQuantizer(levels.flip(0)).levels, distinct)
    torch.manual_seed(5)
    theta = kwargs.get("threshold", 1.0)
    x = (torch.rand(12, 3, 4, dtype=F64) * 1.2 * theta).requires_grad_()
    theirs = snn.Leaky(beta=0.8, threshold=theta, spike_grad=atan64, state_quant=q)
    spikes, mems, mem = [], [], theirs.init_leaky()
    for x_t in x:
        spk, mem = theirs(x_t, mem)
        spikes.append(spk)
        mems.append(mem)
    spk, mem = torch.stack(spikes), torch.stack(mems)
    node = LeakyNode(0.8, threshold=theta, store_v_seq=True, backend=backend)
    quant.apply_state_quantization(node, levels)
    assert node.membrane_quantizer.levels.numel() == distinct.numel()
    xx = x.detach().requires_grad_()
    s = node(xx)
    assert torch.equal(s.detach(), spk.detach()) and 0.05 < spk.mean() < 0.9
    torch.testing.assert_close(node.v_seq.detach(), mem.detach(), atol=1e-12, rtol=0)
    (got,) = torch.autograd.grad(s.sum() + node.v_seq.sum(), xx)
    (want,) = torch.autograd.grad(spk.sum() + mem.sum(), x)
    torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("backend", ["torch", "cpu"])
@pytest.mark.parametrize("kwargs", [GRIDS[0], GRIDS[1]], ids=["uniform4", "thr3"])
def test_float32_levels_are_snntorchs_bit_for_bit(backend, kwargs):
    """snnTorch in float32 (its default dtype) builds float32 levels: with
    dtype=torch.float32 they are its levels bit for bit, and LeakyNode's float32
    membranes are snn.Leaky(state_quant=q)'s exactly. (A float32 linspace is not the
    float64 one rounded: the uniform grid's float64 levels miss by an ulp.)"""
    snn = pytest.importorskip("snntorch", reason="snnTorch is not installed")
    q = _snntorch_quant(**kwargs)
    theirs_levels = _their_levels(q)
    assert theirs_levels.dtype == torch.float32
    levels = quant.snntorch_state_levels(**kwargs, dtype=torch.float32)
    assert levels.dtype == F64 and torch.equal(levels, theirs_levels.double().sort().values)
    if kwargs["uniform"]:  # the float64 grid, rounded, is not snnTorch's float32 one
        rounded = quant.snntorch_state_levels(**kwargs).float()
        assert not torch.equal(rounded, theirs_levels)
    theta = kwargs.get("threshold", 1.0)
    torch.manual_seed(6)
    x = torch.rand(16, 3, 8) * 1.2 * theta
    cell = snn.Leaky(beta=0.8, threshold=theta, state_quant=q)
    spikes, mems, mem = [], [], cell.init_leaky()
    for x_t in x:
        spk, mem = cell(x_t, mem)
        spikes.append(spk)
        mems.append(mem)
    node = LeakyNode(0.8, threshold=theta, store_v_seq=True, backend=backend)
    quant.apply_state_quantization(node, levels)
    assert torch.equal(node(x), torch.stack(spikes))
    assert torch.equal(node.v_seq, torch.stack(mems))


def test_a_neuron_with_its_own_fire_rule_is_refused_when_quantized():
    """DeltaLeakyNode fires on |U[t] - U[t-1]| (and snnTorch's DeltaLeaky ignores its
    state_quant): both quantizers refuse it when put on, naming it, and change nothing
    (the forward's own refusal came only at the first call)."""
    from spikeflow.neurons import DeltaLeakyNode

    net = torch.nn.Sequential(LeakyNode(0.5), DeltaLeakyNode(0.9, 0.5))
    with pytest.raises(ConfigurationError, match=r"state quantization of 1: DeltaLeakyNode fires"):
        quant.apply_state_quantization(net, [-1.0, 0.0, 1.0])
    with pytest.raises(ConfigurationError, match=r"quantization of 1: DeltaLeakyNode fires"):
        quant.apply_membrane_quantization(net, bits=8)
    assert all(m._modules.get("membrane_quantizer") is None for m in net)


def test_compiled_before_any_eager_call_and_inside_a_recurrent_layer():
    """torch.compile(fullgraph=True) of a rounding charge no earlier call built, and of a
    rounded neuron inside layers.Recurrent on the C kernel (its parameter cache mutates a
    dict first: reading the wrapper's signature then was refused by Dynamo)."""
    from spikeflow import functional, layers, neurons

    class Fresh(neurons.BaseNode):
        @staticmethod
        def charge(x, v):
            return v + 0.75 * x

    torch._dynamo.reset()  # (what earlier tests in this process compiled is no guide)
    levels = quant.snntorch_state_levels(num_bits=3)
    torch.manual_seed(0)
    x = torch.rand(8, 2, 6) * 1.5
    node = Fresh(v_reset=None)
    quant.apply_state_quantization(node, levels)
    compiled = torch.compile(node, backend="aot_eager", fullgraph=True)(x)
    assert torch.equal(compiled, node(x)) and 0.05 < compiled.mean() < 0.9
    rec = layers.Recurrent(neurons.LIFNode(step_mode="s", backend="cpu"), 6)
    quant.apply_state_quantization(rec, levels)
    eager = rec(x)
    functional.reset_net(rec)
    assert torch.equal(torch.compile(rec, backend="aot_eager", fullgraph=True)(x), eager)


def test_nearest_level_refuses_unsorted_levels():
    h = torch.tensor([0.9, -0.9])
    assert nearest_level(h, levels=(-1.0, 0.0, 0.0, 1.0)).tolist() == [1.0, -1.0]  # repeats
    with pytest.raises(ConfigurationError, match="sorted ascending"):
        nearest_level(h, levels=(1.0, 0.0, -1.0))
    with pytest.raises(ConfigurationError, match="sorted ascending"):
        nearest_level(h, levels=())


def test_state_dict_remove_and_errors():
    levels = quant.snntorch_state_levels(num_bits=3)
    node = LeakyNode(0.5)
    quant.apply_state_quantization(node, levels)
    assert isinstance(node.membrane_quantizer, LevelQuantizer)
    assert "8 levels in [-1, 1.2]" in repr(node)
    other = LeakyNode(0.5)
    quant.apply_state_quantization(other, levels)
    other.load_state_dict(node.state_dict())  # the same levels load
    wrong = LeakyNode(0.5)
    quant.apply_state_quantization(wrong, quant.snntorch_state_levels(num_bits=2))
    with pytest.raises(RuntimeError, match="other levels"):
        wrong.load_state_dict(node.state_dict())
    with pytest.raises(ConfigurationError, match="quantized already"):
        quant.apply_state_quantization(node, levels)
    assert quant.remove_membrane_quantization(node) == ["LeakyNode"]
    with pytest.raises(ConfigurationError, match="no spiking neuron"):
        quant.apply_state_quantization(torch.nn.Linear(2, 2), levels)
    with pytest.raises(ConfigurationError, match="2 to 256"):
        LevelQuantizer([0.5])
    with pytest.raises(ConfigurationError, match="2 to 256 distinct values, got 1"):
        LevelQuantizer([0.5, 0.5])
    with pytest.raises(ConfigurationError, match="1-d list"):
        LevelQuantizer([[0.0, 0.5]])
    with pytest.raises(ConfigurationError, match="finite"):
        LevelQuantizer([0.0, float("nan")])
    with pytest.raises(ConfigurationError, match="dtype must be a floating torch dtype"):
        quant.snntorch_state_levels(dtype=torch.int32)
    with pytest.raises(ConfigurationError, match="num_bits must be from 1 to 8"):
        quant.snntorch_state_levels(num_bits=9)
    with pytest.raises(ConfigurationError, match="threshold must be finite and > 0"):
        quant.snntorch_state_levels(threshold=0.0)
    with pytest.raises(ConfigurationError, match=r"multiplier must be in \(0, 1\]"):
        quant.snntorch_state_levels(uniform=False, multiplier=1.5)
