"""What the equation tracer accepts, and how it refuses the rest: a ConfigurationError
that names the call from an explicit fused backend, the reference loop (with a warning)
from backend="auto"."""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import fused_backends, kernel_device
from spikeflow.errors import ConfigurationError
from spikeflow.neurons import BaseNode

BACKENDS = fused_backends()


@pytest.fixture(autouse=True)
def _warn_afresh(monkeypatch):
    """backend="auto" warns once per neuron and reason: each test sees its warning."""
    from spikeflow import kernels

    monkeypatch.setattr(kernels, "_WARNED", set(), raising=False)


def neuron(charge) -> type[BaseNode]:
    return type("UserNeuron", (BaseNode,), {"charge": staticmethod(charge)})


def spikes_and_grad(node: BaseNode, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    xi = x.clone().requires_grad_()
    spikes = node(xi)
    weights = torch.linspace(0.5, 1.5, x.shape[-1], dtype=x.dtype, device=x.device)
    (spikes * weights).sum().backward()
    return spikes.detach(), xi.grad


# Torch-style spellings that map onto what the kernels compute.
TRACEABLE = {
    "F.relu(x)": lambda x, v: v + F.relu(x - 0.5),
    "F.relu(x, inplace=False)": lambda x, v: v + F.relu(x - 0.5, inplace=False),
    "v.clamp(min=-1)": lambda x, v: v.clamp(min=-1.0) * 0.9 + x,
    "v.clamp_min/clamp_max": lambda x, v: v.clamp_min(-1.0).clamp_max(2.0) * 0.9 + x,
    "x.exp()": lambda x, v: v + 0.1 * x.exp(),
    "x.sigmoid().pow(2)": lambda x, v: v * 0.8 + x.sigmoid().pow(2),
    "v.detach()": lambda x, v: v.detach() * 0.5 + x,
    "x.where(cond, y)": lambda x, v: v * 0.9 + x.where(x > 0.5, -x),
    "(v > 0) & (x > 0)": lambda x, v: torch.where((v > 0.3) & (x > 0.4), v + x, x),
    "(v > 0) | (x > 0)": lambda x, v: torch.where((v > 0.6) | (x < 0.2), v + x, x),
    "~(v > 0)": lambda x, v: torch.where(~(v > 0.3), v + x, x),
    "(v > 0) ^ (x > 0)": lambda x, v: torch.where((v > 0.3) ^ (x > 0.4), v + x, x),
    "x.to(x.dtype), v.double()": lambda x, v: v.double() * 0.5 + x.to(x.dtype),
    "torch.logical_and/not": lambda x, v: (
        v * 0.5 + torch.logical_and(v > 0.2, torch.logical_not(x > 0.8)).float() * x
    ),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("label", list(TRACEABLE))
def test_torch_style_calls_trace_and_equal_the_reference(backend, label):
    # These failed with the tracer's own TypeError/AttributeError ('Expr' object has no
    # attribute 'clamp', unexpected keyword argument 'inplace', unsupported operand &).
    cls = neuron(TRACEABLE[label])
    x = (torch.rand(7, 3, 11, dtype=torch.float64) * 1.5).to(kernel_device(backend))
    s_ref, g_ref = spikes_and_grad(cls(backend="torch"), x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback to the reference loop
        s, g = spikes_and_grad(cls(backend=backend), x)
    assert torch.equal(s, s_ref)
    torch.testing.assert_close(g, g_ref, rtol=1e-9, atol=1e-12)


GAIN = torch.nn.Parameter(torch.tensor(0.5))  # a learnable gain captured as a global
THRESHOLDS = torch.tensor([0.3])  # a buffer captured as a global


def _captured_gain(x, v):
    return v + GAIN * x


def _captured_buffer(x, v):
    return torch.maximum(v + x, THRESHOLDS)


# Each: the charge, and (a regular expression of) what the error names.
REFUSED = {
    "v % 2": (lambda x, v: v % 2 + x, r"operator %"),
    "v // 2": (lambda x, v: v // 2 + x, r"operator //"),
    "F.relu(inplace=True)": (lambda x, v: v + F.relu(x, inplace=True), r"relu.*inplace=True"),
    "x.exp_()": (lambda x, v: v + x.exp_(), r"Tensor\.exp_ .*in-place"),
    "v.cumsum()": (lambda x, v: v + x.cumsum(0), r"Tensor\.cumsum"),
    "torch.round": (lambda x, v: v + torch.round(x), r"torch\.round"),
    "F.leaky_relu": (lambda x, v: v + F.leaky_relu(x), r"leaky_relu"),
    "F.linear": (lambda x, v: v + F.linear(x, torch.eye(7)), r"torch\.nn\.functional\.linear is"),
    "v[0]": (lambda x, v: v + x[0], r"indexing"),
    "math.exp(x)": (lambda x, v: v + __import__("math").exp(x), r"Python number"),
    "if v > 0": (lambda x, v: v + x if v > 0 else x, r"branches on a traced value"),
    "min(v, x)": (lambda x, v: min(v, x), r"branches on a traced value"),
    "(v > 0) & 1.0": (lambda x, v: torch.where((v > 0) & 1.0, v, x), r"operator &"),
    "torch.add(alpha=0.37)": (lambda x, v: torch.add(v + x, x, alpha=0.37), r"alpha=0\.37"),
    "torch.sub(alpha=2)": (lambda x, v: torch.sub(v + x, x, alpha=2), r"alpha=2"),
    "a captured nn.Parameter": (_captured_gain, r"requires grad.*neuron_params"),
    "a captured tensor": (_captured_buffer, r"tensor \(shape \(1,\)\).*neuron_params"),
    "a tensor made inside": (lambda x, v: v + x * torch.tensor(0.5), r"created inside"),
    # Rounding to another dtype inside the equation (once silently computed in the
    # neuron's own type).
    "v.half()": (lambda x, v: v.half() * 0.9 + x, r"cast to torch\.float16"),
    "x.bfloat16()": (lambda x, v: v * 0.9 + x.bfloat16(), r"cast to torch\.bfloat16"),
    "x.to(torch.float16)": (lambda x, v: v * 0.9 + x.to(torch.float16), r"cast to torch\.float16"),
    "v.to(dtype=torch.int32)": (lambda x, v: v.to(dtype=torch.int32) + x, r"cast to torch\.int32"),
    "x.shape[-1]": (lambda x, v: v + x / x.shape[-1], r"the shape of a traced value"),
}


#: Python on tensors of more than one element that PyTorch refuses too.
NOT_TORCH = {"math.exp(x)", "if v > 0", "min(v, x)", "(v > 0) & 1.0"}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("label", list(REFUSED))
def test_untraceable_equations_are_refused_by_name_and_auto_runs_the_reference(backend, label):
    charge, names = REFUSED[label]
    cls = neuron(charge)
    device = kernel_device(backend)
    x = (torch.rand(5, 2, 7) * 1.5).to(device)
    with pytest.raises(ConfigurationError, match=names):
        cls(backend=backend)(x)
    if label in NOT_TORCH:  # not valid PyTorch either: auto raises the reference's error
        with pytest.raises((TypeError, ValueError, RuntimeError)), pytest.warns(UserWarning):
            cls(backend="auto")(x)
    elif device.type == "cpu":  # auto on CPU tensors picks the C kernel
        with torch.no_grad():
            expected = cls(backend="torch")(x)
        with pytest.warns(UserWarning, match="runs on the reference loop") as record:
            with torch.no_grad():
                got = cls(backend="auto")(x)
        assert torch.equal(got, expected)
        assert any(__import__("re").search(names, str(w.message)) for w in record)


def test_add_with_alpha_is_refused_because_torch_rounds_it_either_way():
    # PyTorch's CPU add with alpha rounds once (an FMA) in its AVX2/AVX-512 kernels and
    # twice in its default one, picked at run time (ATEN_CPU_CAPABILITY): no kernel can
    # promise its spikes, so the fused backends refuse it and auto runs the reference.
    torch.manual_seed(0)
    x0 = torch.rand(4096) + 0.5
    theta = torch.add(x0, x0, alpha=0.37)  # each threshold = the reference's H
    cls = neuron(lambda x, v: torch.add(v + x, x, alpha=0.37))
    with torch.no_grad():
        assert cls(backend="torch", v_threshold=theta)(x0[None]).all()
        with pytest.warns(UserWarning, match="alpha"):
            assert cls(backend="auto", v_threshold=theta)(x0[None]).all()
    # Written out, a + alpha * b rounds twice in every backend: the fused kernel runs it,
    # and so it does alpha=1 (a + b).
    for charge in (lambda x, v: v + x + 0.37 * x, lambda x, v: torch.sub(v + x, x, alpha=1)):
        spelled = neuron(charge)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("error")  # no fallback to the reference loop
            ref = spelled(backend="torch", store_v_seq=True, v_threshold=1e9)
            fused = spelled(backend="cpu", store_v_seq=True, v_threshold=1e9)
            ref(x0[None]), fused(x0[None])
        assert torch.equal(fused.v_seq, ref.v_seq)


class GainAsParameter(BaseNode):
    """The supported way: the gain is a neuron parameter."""

    @staticmethod
    def charge(x, v, *, gain):
        return v + gain * x

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.gain = torch.nn.Parameter(torch.tensor(0.5))

    def neuron_params(self) -> dict[str, torch.Tensor]:
        return {"gain": self.gain}


def test_a_captured_tensor_on_auto_trains_and_sees_later_updates():
    # The fused kernel froze a captured tensor's value at the first call (no gradient,
    # later optimizer steps ignored); auto now runs the reference loop for it.
    cls = neuron(_captured_gain)
    x = torch.full((4, 2), 0.6)
    node = cls(backend="auto")
    GAIN.grad = None
    with torch.no_grad():
        GAIN.fill_(0.5)
    with pytest.warns(UserWarning, match="neuron_params"):
        node(x).sum().backward()
    assert GAIN.grad is not None and GAIN.grad != 0
    with torch.no_grad():
        GAIN.fill_(2.0)
        assert node(x).sum() == cls(backend="torch")(x).sum() == 8
    # The supported way, on the fused kernel: the gain as a neuron parameter.
    node = GainAsParameter(backend="cpu")
    node(x).sum().backward()
    assert node.gain.grad is not None and node.gain.grad != 0
    with torch.no_grad():
        node.gain.fill_(2.0)
        assert node(x).sum() == 8


GLOBAL_GAIN = 0.5  # a module-level Python number read by a charge (changed by a test)


def _global_gain(x, v):
    return v + GLOBAL_GAIN * x


def _closure_gain() -> tuple[type[BaseNode], object]:
    """A neuron whose charge reads a closure's number, and a function that changes it."""
    gain = 0.5

    def charge(x, v):
        return v + gain * x

    def set_gain(value: float) -> None:
        nonlocal gain
        gain = value

    return neuron(charge), set_gain


@pytest.mark.parametrize("backend", ["cpu", "auto"])
@pytest.mark.parametrize("where", ["global", "closure"])
def test_a_captured_python_number_is_read_at_every_call(backend, where, monkeypatch):
    # The tracer folds a number into the kernel; the kernels were cached by the
    # declaration alone, so a changed global or closure number kept its first value.
    from spikeflow.kernels import registry

    if where == "global":
        cls = neuron(_global_gain)

        def set_gain(value: float) -> None:
            monkeypatch.setitem(globals(), "GLOBAL_GAIN", value)
    else:
        cls, set_gain = _closure_gain()
    x = torch.full((3, 1, 4), 0.6)
    sizes = []
    for gain in (0.5, 2.0, 0.5, 2.0):
        set_gain(gain)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("error")  # the fused kernel, no fallback
            expected = cls(backend="torch")(x)
            got = cls(backend=backend)(x)
        assert torch.equal(got, expected)
        assert got.sum() == (12 if gain == 2.0 else 0)
        sizes.append(len(registry._KEYS))
    assert sizes[2:] == [sizes[1]] * 2  # one kernel per value, reused when it returns


def test_captured_numbers_are_the_globals_an_equation_reads():
    from spikeflow.kernels.captures import captured_numbers
    from spikeflow.neurons.declaration import declare

    decl = declare(_global_gain)
    assert captured_numbers(decl) == (repr(GLOBAL_GAIN),)
    assert captured_numbers(declare(TRACEABLE["x.exp()"])) == ()


def _decorated(fn):
    @functools.wraps(fn)
    def wrapper(x, v):
        return fn(x, v)

    return wrapper


GLOBAL_SCALE = None  # None, a Python number or a numpy scalar (changed by a test)


def _optional_scale(x, v):
    return v + (0.2 if GLOBAL_SCALE is None else GLOBAL_SCALE) * x


@pytest.mark.parametrize(
    ("label", "charge", "name", "values"),
    [
        # A charge behind functools.partial or a functools.wraps decorator: the wrapped
        # function's globals were not read.
        ("partial", functools.partial(_global_gain), "GLOBAL_GAIN", [0.5, 2.0, 0.5]),
        ("decorated", _decorated(_global_gain), "GLOBAL_GAIN", [0.5, 2.0, 0.5]),
        # Not a number at the first call (so never read again), or not a numbers.Number.
        ("None, then a number", _optional_scale, "GLOBAL_SCALE", [None, 2.0, None]),
        ("numpy scalars", _optional_scale, "GLOBAL_SCALE", [np.float64(0.3), np.float64(2.0)]),
    ],
)
def test_captured_numbers_behind_wrappers_and_late_numbers(
    label, charge, name, values, monkeypatch
):
    cls = neuron(charge)
    x = torch.full((3, 1, 4), 0.6)
    for value in values:
        monkeypatch.setitem(globals(), name, value)
        with torch.no_grad():
            assert torch.equal(cls(backend="cpu")(x), cls(backend="torch")(x)), (label, value)


def test_a_numpy_bool_global_is_read_at_every_call(monkeypatch):
    def charge(x, v):
        return v + torch.where(x > 0.0, 2.0, 0.1) * x if GLOBAL_SCALE else v + 0.1 * x

    cls = neuron(charge)
    x = torch.full((3, 1, 4), 0.6)
    for flag in (np.bool_(True), np.bool_(False), np.bool_(True)):
        monkeypatch.setitem(globals(), "GLOBAL_SCALE", flag)
        with torch.no_grad():
            assert torch.equal(cls(backend="cpu")(x), cls(backend="torch")(x)), flag


class _EpsGuarded(BaseNode):
    @staticmethod
    def charge(x, v):
        # A division guard from the input's dtype: float64's eps in a float64 neuron.
        return v * 0.5 + x.to(x.dtype) / (1.0 + 1e6 * torch.finfo(x.dtype).eps)


@pytest.mark.parametrize("backend", fused_backends())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_traced_value_reports_the_inputs_dtype(backend, dtype):
    x = torch.rand(5, 3, 7, dtype=dtype, device=kernel_device(backend))
    runs = []
    for b in ("torch", backend):
        node = _EpsGuarded(backend=b, store_v_seq=True)
        runs.append((node(x), node.v_seq))
    (s_ref, v_ref), (s, v) = runs
    assert torch.equal(s, s_ref)
    assert torch.equal(v, v_ref)  # float32's eps folded into a float64 kernel differed
