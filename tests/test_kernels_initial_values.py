"""A fresh neuron's state starts from numbers (``BaseNode.initial_values``) that the fused
kernels read as scalars: no state tensor is filled before the call (one GPU launch per
call fewer), with the same spikes, states and gradients as the reference loop."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from conftest import fused_backends, kernel_device
from spikeflow.kernels import FiringRule, run_reference
from spikeflow.kernels.cpu import run_cpu
from spikeflow.neurons import (
    ALIFNode,
    BaseNode,
    ComplementaryLIFNode,
    CubaLIFNode,
    IzhikevichNode,
    LIFNode,
    ParametricLIFNode,
    RAFNode,
)
from spikeflow.surrogate import Sigmoid

_FILLS = ("aten.full", "aten.full_like", "aten.fill_", "aten.zeros_like", "aten.zero_",
          "aten.zeros", "aten.ones_like", "aten.new_full", "aten.new_zeros")  # fmt: skip


class _Ops(TorchDispatchMode):
    """The ATen operators a call dispatches (each a kernel launch on a GPU)."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(str(getattr(func, "overloadpacket", func)))
        return func(*args, **(kwargs or {}))


NEURONS = {
    "LIF": lambda b: LIFNode(tau=2.0, v_reset=0.3, backend=b),
    "PLIF soft": lambda b: ParametricLIFNode(v_reset=None, backend=b),
    "ALIF": lambda b: ALIFNode(tau=2.0, tau_adapt=5.0, beta=0.5, backend=b),
    "CUBA": lambda b: CubaLIFNode(backend=b),
    "Izhikevich": lambda b: IzhikevichNode(w_rest=-0.2, backend=b),
    "CLIF": lambda b: ComplementaryLIFNode(tau=2.0, backend=b),
    "RAF": lambda b: RAFNode(b=-0.3, omega=1.5, v_reset=-0.2, backend=b),
}


@pytest.mark.parametrize("kind", NEURONS)
def test_a_fresh_fused_call_fills_no_state_tensor(kind):
    x = torch.rand(4, 3, 7) * 2
    node = NEURONS[kind]("cpu")
    node(x)  # builds the kernels
    node.reset()
    with _Ops() as ops:
        node(x)
    fills = [n for n in ops.names if n in _FILLS]
    assert not fills, fills  # was a full_like per state variable


@pytest.mark.parametrize("backend", fused_backends())
@pytest.mark.parametrize("kind", NEURONS)
def test_fresh_calls_equal_the_reference(kind, backend):
    device = kernel_device(backend)
    x = (torch.rand(6, 2, 5, dtype=torch.float64) * 2).to(device).requires_grad_()
    ref, fused = NEURONS[kind]("torch").double().to(device), NEURONS[kind](backend).double()
    fused = fused.to(device)
    fused.load_state_dict(ref.state_dict())
    for node in (ref, fused):
        node.store_v_seq = True
    s_ref, s = ref(x), fused(x)
    assert torch.equal(s, s_ref)
    torch.testing.assert_close(fused.v_seq, ref.v_seq, rtol=1e-12, atol=1e-12)
    g_ref = torch.autograd.grad((s_ref * torch.arange(5.0, dtype=x.dtype, device=device)).sum()
                                + ref.v_seq.sum(), [x, *ref.parameters()])  # fmt: skip
    g = torch.autograd.grad((s * torch.arange(5.0, dtype=x.dtype, device=device)).sum()
                            + fused.v_seq.sum(), [x, *fused.parameters()])  # fmt: skip
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("backend", fused_backends())
def test_a_half_input_starts_from_the_half_value_of_a_uniform_state(backend):
    if backend != "triton":
        pytest.skip("the C kernels take float32/float64")
    device = kernel_device(backend)
    # v_reset = 0.3 is 0.30004883 in float16; a float32 start would give other membranes.
    x = (torch.rand(5, 64) * 1.2).to(device, torch.float16)
    ref, fused = LIFNode(tau=2.0, v_reset=0.3, backend="torch", store_v_seq=True), LIFNode(
        tau=2.0, v_reset=0.3, backend=backend, store_v_seq=True)  # fmt: skip
    assert torch.equal(fused(x), ref(x))
    assert fused.v_seq.dtype == ref.v_seq.dtype == torch.float16
    torch.testing.assert_close(fused.v_seq, ref.v_seq, rtol=0, atol=1e-3)


class _RandomStart(LIFNode):
    """A user neuron whose membrane starts at a different value per neuron."""

    def initial_state(self, like):
        return {"v": torch.linspace(-0.5, 0.9, like.numel()).reshape(like.shape).to(like)}


@pytest.mark.parametrize("backend", fused_backends("torch"))
def test_an_overridden_initial_state_is_used(backend):
    x = torch.rand(3, 2, 8).to(kernel_device(backend))
    node = _RandomStart(tau=2.0, backend=backend, store_v_seq=True)
    plain = LIFNode(tau=2.0, backend=backend, store_v_seq=True)
    node(x), plain(x)
    start = torch.linspace(-0.5, 0.9, 16).reshape(2, 8).to(x)
    torch.testing.assert_close(node.v_seq[0], start + (x[0] - start) / 2.0)
    assert not torch.equal(node.v_seq, plain.v_seq)
    assert _RandomStart().start_state(x[0])["v"].shape == (2, 8)
    assert LIFNode().start_state(x[0]) == {"v": 0.0}


def test_uniform_and_tensor_states_mix_with_gradients_of_the_tensor_ones():
    node = ALIFNode(tau=2.0, tau_adapt=4.0, beta=0.7)
    decl, params = node.declaration(), node.neuron_params()
    rule = FiringRule(Sigmoid(), 0.0, False, False)
    x = torch.rand(5, 9, dtype=torch.float64, requires_grad=True)
    v0 = (torch.rand(9, dtype=torch.float64) * 0.5).requires_grad_()
    outs = {}
    for name, run in (("torch", run_reference), ("cpu", run_cpu)):
        s, final, _ = run(decl, x, {"v": v0, "a": 0.25}, params, 1.0, rule)
        loss = (s * torch.arange(9.0, dtype=x.dtype)).sum() + final["a"].sum() + final["v"].sum()
        outs[name] = (s, final, torch.autograd.grad(loss, [x, v0]))
    assert torch.equal(outs["cpu"][0], outs["torch"][0])
    for k in ("v", "a"):
        torch.testing.assert_close(outs["cpu"][1][k], outs["torch"][1][k], rtol=1e-12, atol=0)
    for a, b in zip(outs["cpu"][2], outs["torch"][2]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_initial_values_are_what_initial_state_fills():
    like = torch.zeros(3, 4)
    for make in NEURONS.values():
        node = make("torch")
        values, tensors = node.initial_values(), node.initial_state(like)
        assert values.keys() == tensors.keys() == set(node.declaration().state_names)
        for k, v in values.items():
            assert torch.equal(tensors[k], torch.full_like(like, v))


class _WithBase(BaseNode):
    """A user neuron with an auxiliary state that starts at one value."""

    @staticmethod
    def charge(x, v, a):
        return v * 0.8 + x - a

    @staticmethod
    def update(h, s, a):
        return a * 0.5 + s * 0.2

    def initial_values(self):
        return {**super().initial_values(), "a": 0.1}


@pytest.mark.parametrize("backend", fused_backends())
def test_a_user_neurons_initial_values_reach_the_kernels(backend):
    device = kernel_device(backend)
    x = (torch.rand(4, 10, dtype=torch.float64) * 1.5).to(device)
    ref = _WithBase(backend="torch", store_v_seq=True)
    fused = _WithBase(backend=backend, store_v_seq=True)
    assert torch.equal(fused(x), ref(x))
    torch.testing.assert_close(fused.v_seq, ref.v_seq, rtol=1e-12, atol=1e-12)
    h0 = x[0] - 0.1  # v0 = 0, a0 = 0.1
    torch.testing.assert_close(fused.v_seq[0], torch.where(h0 >= 1.0, 0.0, h0))


@pytest.mark.parametrize("backend", fused_backends("torch"))
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_promoted_half_input_starts_from_the_half_value(backend, dtype):
    # A float32 per-neuron threshold promotes the kernels' input to float32; the start
    # (v_reset 0.1) must still be the half value, as full_like of the half input gives.
    from spikeflow.neurons import IFNode

    device = kernel_device(backend)
    x = torch.tensor([[0.0] * 4, [0.5] * 4]).to(device, dtype)
    theta = torch.full((4,), 0.6, device=device)
    ref = IFNode(v_reset=0.1, backend="torch", v_threshold=theta, store_v_seq=True)
    node = IFNode(v_reset=0.1, backend=backend, v_threshold=theta, store_v_seq=True)
    assert torch.equal(node(x), ref(x))  # the fused kernels fired at step 1
    torch.testing.assert_close(node.v_seq, ref.v_seq.to(node.v_seq.dtype), rtol=0, atol=0)


def test_half_rounding_of_start_values_is_full_likes():
    import random

    from spikeflow.kernels.precision import _round_half

    rng = random.Random(0)
    for dtype in (torch.float16, torch.bfloat16):
        for _ in range(3000):
            v = rng.gauss(0, 1) * 10 ** rng.randint(-9, 4)
            assert _round_half(v, dtype) == float(torch.full((1,), v, dtype=dtype)[0]), v
    assert _round_half(-18519.999424002264, torch.float16) == -18528.0  # via float32
    assert math.copysign(1.0, _round_half(-1e-300, torch.float16)) == -1.0  # -0.0, as torch
    for v in (65520.0, 65510.0):  # 65510 rounds to 65504, but full_like refuses it
        with pytest.raises(OverflowError):
            _round_half(v, torch.float16)
        with pytest.raises(RuntimeError, match="overflow"):
            torch.full_like(torch.zeros(2, dtype=torch.float16), v)


@pytest.mark.parametrize("backend", fused_backends())
def test_bad_start_numbers_are_named(backend):
    from spikeflow.errors import ConfigurationError
    from spikeflow.kernels import BACKENDS

    node = LIFNode(tau=2.0)
    decl, params, rule = node.declaration(), node.neuron_params(), node.firing_rule
    x = torch.rand(3, 4).to(kernel_device(backend))
    with pytest.raises(ConfigurationError, match=r"state 'v' starts at '0\.5'"):
        BACKENDS[backend](decl, x, {"v": "0.5"}, params, 1.0, rule)
    if backend == "triton":
        with pytest.raises(ConfigurationError, match="cannot hold"):
            BACKENDS[backend](decl, x.half(), {"v": 1e5}, params, 1.0, rule)


@pytest.mark.parametrize("backend", fused_backends("torch"))
def test_an_initial_state_set_on_the_instance_is_used(backend):
    x = torch.zeros(2, 3).to(kernel_device(backend))
    node = LIFNode(backend=backend, store_v_seq=True)
    node.initial_state = lambda like: {"v": torch.full_like(like, 0.5)}
    node(x)
    torch.testing.assert_close(node.v_seq[0], torch.full_like(x[0], 0.25))  # was 0.0
