"""Argument validation, the declaration mechanism, custom neurons, autocast."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.neurons import (
    PSN,
    BaseNode,
    CobaLIFNode,
    IFNode,
    LIFNode,
    LINode,
    MaskedPSN,
    ParametricLIFNode,
    SlidingPSN,
    declare,
)
from spikeflow.surrogate import ATan


@pytest.mark.parametrize("tau", [1.0, 0.5, -2.0, math.inf, math.nan])
def test_tau_must_exceed_one(tau):
    with pytest.raises(ConfigurationError, match="tau"):
        LIFNode(tau=tau)
    with pytest.raises(ConfigurationError, match="init_tau"):
        ParametricLIFNode(init_tau=tau)


@pytest.mark.parametrize("theta", [math.nan, math.inf, torch.tensor([1.0, math.nan])])
def test_threshold_must_be_finite(theta):
    with pytest.raises(ConfigurationError, match="v_threshold"):
        IFNode(v_threshold=theta)


def test_threshold_must_exceed_hard_reset_value():
    with pytest.raises(ConfigurationError, match="above v_reset"):
        IFNode(v_threshold=0.5, v_reset=0.5)
    IFNode(v_threshold=0.5, v_reset=None)  # soft reset: no such constraint


def test_bad_threshold_types():
    with pytest.raises(DTypeError, match="floating-point"):
        IFNode(v_threshold=torch.tensor([1, 2]))
    with pytest.raises(ConfigurationError, match="v_threshold"):
        IFNode(v_threshold="1.0")


def test_mismatched_threshold_shape():
    node = LIFNode(v_threshold=torch.ones(3, 1, 1))
    with pytest.raises(ShapeError, match=r"v_threshold of shape \(3, 1, 1\)"):
        node(torch.rand(4, 2, 5, 8, 8))  # 5 channels, not 3


class _ScaledIF(BaseNode):
    def __init__(self, a, **kwargs):
        super().__init__(**kwargs)
        self.register_buffer("a", a)

    @staticmethod
    def charge(x, v, *, a):
        return v + a * x

    def neuron_params(self):
        return {"a": self.a}


@pytest.mark.parametrize("backend", ["torch", "cpu", "auto"])
def test_mismatched_parameter_shape_is_named(backend):
    node = _ScaledIF(torch.full((3, 1, 1), 0.5), backend=backend)
    with pytest.raises(ShapeError, match=r"_ScaledIF: parameter 'a' of shape \(3, 1, 1\)"):
        node(torch.rand(6, 2, 3))  # the neuron shape is (2, 3): the reference broadcast up
    out = _ScaledIF(torch.full((3,), 0.5), backend=backend)(torch.rand(6, 2, 3) * 3)
    assert out.shape == (6, 2, 3)


class _ForgetsTau(BaseNode):
    @staticmethod
    def charge(x, v, *, tau, gain):
        return v + (x - v) / tau * gain

    def neuron_params(self):
        return {"gain": 1.0, "tua": 2.0}  # a typo: tau is missing


@pytest.mark.parametrize("backend", ["torch", "cpu"])
def test_a_parameter_missing_from_neuron_params_is_named(backend):
    with pytest.raises(ConfigurationError, match=r"missing \['tau'\]"):
        _ForgetsTau(backend=backend)(torch.rand(3, 4))


def test_a_learnable_threshold_keeps_the_tensor_dtype():
    theta = torch.tensor([0.1, 1 / 3], dtype=torch.float64)
    node = LIFNode(v_threshold=theta, learnable_threshold=True)
    assert isinstance(node.v_threshold, nn.Parameter)
    assert node.v_threshold.dtype == torch.float64
    assert torch.equal(node.v_threshold.detach(), theta)
    assert LIFNode(v_threshold=0.1, learnable_threshold=True).v_threshold.dtype == torch.float32


def test_integer_input_is_a_dtype_error():
    with pytest.raises(DTypeError, match=r"torch\.int64"):
        LIFNode()(torch.ones(4, 3, dtype=torch.long))


@pytest.mark.parametrize(
    "make",
    [
        LIFNode,
        lambda: CobaLIFNode(input_split="pair"),
        lambda: PSN(T=2),
        lambda: MaskedPSN(1, T=2, lambda_init=1.0, step_mode="s"),
        lambda: SlidingPSN(2),
    ],
)
def test_an_input_that_is_not_a_tensor_is_a_dtype_error(make):
    node = make()
    with pytest.raises(DTypeError, match=rf"{type(node).__name__} expects a tensor, got list"):
        node([[0.5, 1.0], [0.5, 1.0]])


def test_missing_time_dimension():
    with pytest.raises(ShapeError, match=r"\[T, B, \.\.\.\]"):
        LIFNode()(torch.rand(7))


@pytest.mark.parametrize("backend", ["torch", "cpu"])
def test_empty_sequence_is_named(backend):
    with pytest.raises(ShapeError, match=r"0 time steps \(input shape \(0, 4\)\)"):
        LIFNode(backend=backend)(torch.rand(0, 4))
    assert LIFNode(backend=backend)(torch.rand(5, 0)).shape == (5, 0)  # no neurons: fine


def test_bad_step_mode_backend_surrogate():
    with pytest.raises(ConfigurationError, match="step_mode"):
        LIFNode(step_mode="multi")
    with pytest.raises(ConfigurationError, match="unknown backend 'cuda_magic'"):
        LIFNode(backend="cuda_magic")
    with pytest.raises(ConfigurationError, match=r"unknown backend \['cpu'\]"):
        LIFNode(backend=["cpu"])  # unhashable: still the library's error
    with pytest.raises(ConfigurationError, match="surrogate_function"):
        LIFNode(surrogate_function=torch.sigmoid)
    with pytest.raises(ConfigurationError, match="v_reset"):
        LIFNode(v_reset="zero")


def test_declaration_reads_states_and_params_from_the_signature():
    decl = LIFNode().declaration()
    assert decl.state_names == ("v",)
    assert decl.charge_params == ("decay", "v_rest")
    assert IFNode().declaration().charge_params == ()
    assert LIFNode(decay_input=False).declaration() is not decl


def test_declaration_errors():
    def no_v(x, u):
        return x + u

    with pytest.raises(ConfigurationError, match=r"\('x', 'v'\)"):
        declare(no_v)

    def star_args(x, v, *rest):
        return v

    with pytest.raises(ConfigurationError, match=r"\*args"):
        declare(star_args)

    def with_aux(x, v, w, *, a):
        return v + x - w

    with pytest.raises(ConfigurationError, match="never advanced"):
        declare(with_aux)

    def bad_update(h, s, q):
        return q

    with pytest.raises(ConfigurationError, match="auxiliary state"):
        declare(with_aux, bad_update)


class _TwoCompartments(BaseNode):
    """A charge that advances a dendrite ``d`` before firing (charge_returns_aux)."""

    charge_returns_aux = True

    @staticmethod
    def charge(x, v, d, *, k):
        d = d + x - k * v
        return v + k * d, d

    def neuron_params(self):
        return {"k": 0.5}

    def initial_values(self):
        return {**super().initial_values(), "d": 0.0}


@pytest.mark.parametrize("backend", ["torch", "cpu"])
def test_a_charge_returning_state_without_the_flag_is_named(backend):
    class Forgot(_TwoCompartments):
        charge_returns_aux = False

        @staticmethod
        def update(h, s, d, *, k):
            return d

    with pytest.raises(ConfigurationError, match=r"charge_returns_aux = True.*\(H, d\)"):
        Forgot(backend=backend, step_mode="m")(torch.rand(3, 2, 4))


@pytest.mark.parametrize("backend", ["torch", "cpu"])
def test_a_state_without_a_starting_value_is_named(backend):
    class NoStart(_TwoCompartments):
        def initial_values(self):
            return {"v": 0.0}

    with pytest.raises(ConfigurationError, match=r"NoStart.initial_values\(\).*\['d'\]"):
        NoStart(backend=backend, step_mode="m")(torch.rand(3, 2, 4))
    assert _TwoCompartments(backend=backend, step_mode="m")(torch.rand(3, 2, 4)).shape == (3, 2, 4)


class QuadraticIF(BaseNode):
    """A user-written neuron: only the equation is written."""

    def __init__(self, a: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        self.a = a

    @staticmethod
    def charge(x, v, *, a):
        return v + x + a * v * v

    def neuron_params(self):
        return {"a": self.a}


class AdaptiveIF(BaseNode):
    """A user neuron with an auxiliary state advanced after each spike."""

    @staticmethod
    def charge(x, v, w, *, k):
        return v + x - w

    @staticmethod
    def update(h, s, w, *, k, b):
        return w * k + b * s

    def neuron_params(self):
        return {"k": 0.5, "b": 0.3}

    def initial_state(self, like):
        return {**super().initial_state(like), "w": torch.zeros_like(like)}


class _TwoTraces(BaseNode):
    @staticmethod
    def charge(x, v, a, b):
        return v + x - 0.1 * a - 0.1 * b

    @staticmethod
    def update(h, s, a, b):
        return 0.9 * a + s  # b forgotten: one value for two auxiliary states

    def initial_state(self, like):
        return {**super().initial_state(like), "a": torch.zeros_like(like),
                "b": torch.zeros_like(like)}  # fmt: skip


class _ShortCharge(BaseNode):
    charge_returns_aux = True

    @staticmethod
    def charge(x, v, i1, i2):
        return v + x, 0.8 * i1 + x  # i2 forgotten

    def initial_state(self, like):
        return {**super().initial_state(like), "i1": torch.zeros_like(like),
                "i2": torch.zeros_like(like)}  # fmt: skip


@pytest.mark.parametrize("backend", ["torch", "cpu", "auto"])
def test_equations_returning_the_wrong_number_of_states_are_refused(backend):
    # The fused kernels once ran these, storing a state never computed.
    x = torch.rand(4, 3, 5)
    with pytest.raises(ConfigurationError, match=r"_TwoTraces\.update must return .*\(a, b\)"):
        _TwoTraces(backend=backend)(x)
    with pytest.raises(ConfigurationError, match=r"must return 3 values \(H, i1, i2\)"):
        _ShortCharge(backend=backend)(x)


def test_custom_neuron_from_a_charge_equation():
    node = QuadraticIF(a=0.5, store_v_seq=True)
    s = node(torch.tensor([[0.5], [0.3], [0.2]], dtype=torch.float64))
    # H1 = 0.5 ; H2 = 0.5 + 0.3 + 0.125 = 0.925 ; H3 = 0.925 + 0.2 + 0.4278125 -> fire
    assert s.view(-1).tolist() == [0, 0, 1]
    torch.testing.assert_close(node.v_seq.view(-1)[:2], torch.tensor([0.5, 0.925]).double())


def test_custom_neuron_with_auxiliary_state():
    node = AdaptiveIF()
    assert node.declaration().state_names == ("v", "w")
    x = torch.tensor([[1.2], [0.9], [0.9], [0.9]])
    # t1: H 1.2 fire, V 0, w = 0 + 0.3 ; t2: H = 0.9 - 0.3 = 0.6, w = 0.15
    # t3: H = 0.6 + 0.9 - 0.15 = 1.35 fire, w = 0.075 + 0.3 = 0.375 ; t4: H = 0.525
    assert node(x).view(-1).tolist() == [1, 0, 1, 0]


def test_custom_neuron_gradcheck():
    node = QuadraticIF(a=0.2, surrogate_function=ATan(spiking=False)).double()
    x = (torch.rand(5, 3, dtype=torch.float64) * 0.8).requires_grad_()
    assert torch.autograd.gradcheck(node, (x,))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_forward_backward(dtype):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(16, 32), ParametricLIFNode(), nn.Linear(32, 4), LIFNode())
    x = torch.rand(6, 8, 16)
    with torch.autocast("cpu", dtype=dtype):
        out = net(x)
    assert out.dtype == dtype
    out.float().mean().backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert net[1].w.grad is not None


def test_leaky_integrator_parameter_shape_is_named():
    with pytest.raises(ShapeError, match=r"LINode: tau of shape \(3, 1, 1\)"):
        LINode(tau=torch.full((3, 1, 1), 2.0))(torch.rand(4, 2, 5))


def test_leaky_integrator_parameters_are_checked_per_neuron():
    # tau >= 1 for every neuron (a tensor too), v_leak finite; a float tensor is copied
    for tau in (0.5, torch.tensor([2.0, 0.5])):
        with pytest.raises(ConfigurationError, match=r"tau must be finite and >= 1, got"):
            LINode(tau=tau)
    with pytest.raises(ConfigurationError, match=r"v_leak must be finite, got"):
        LINode(v_leak=torch.tensor([0.0, math.inf]))
    with pytest.raises(DTypeError, match="tau must be a floating-point tensor"):
        LINode(tau=torch.tensor([2, 3]))
    tau = torch.tensor([1.0, 3.0])
    node = LINode(tau=tau)
    assert torch.equal(node.tau, tau) and node.tau is not tau


@pytest.mark.parametrize(
    ("make", "flag"),
    [
        (lambda v: LIFNode(decay_input=v), "decay_input"),
        (lambda v: IFNode(detach_reset=v), "detach_reset"),
        (lambda v: IFNode(strict_firing=v), "strict_firing"),
        (lambda v: IFNode(store_v_seq=v), "store_v_seq"),
        (lambda v: ATan(spiking=v), "spiking"),
        (lambda v: __import__("spikeflow").neurons.KLIFNode(scale_reset=v), "scale_reset"),
        (lambda v: __import__("spikeflow").neurons.SlidingPSN(2, exp_init=v), "exp_init"),
        (lambda v: __import__("spikeflow").neurons.NoResetLIFNode(decay_input=v), "decay_input"),
        (lambda v: __import__("spikeflow").neurons.LINode(decay_input=v), "decay_input"),
    ],
)
def test_flags_refuse_anything_but_a_bool(make, flag):
    # bool("False") is True: a string from a config file silently turned the option on.
    for bad in ("False", 0, 1.0, None):
        with pytest.raises(ConfigurationError, match=rf"{flag} must be True or False, got"):
            make(bad)
    assert getattr(make(False), flag) is False
    import numpy as np

    assert getattr(make(np.bool_(True)), flag) is True
