"""Values the equations or a custom surrogate read from globals and closures (numbers,
strings, Enum members, container entries) are folded into the fused kernels, and a
changed one must rebuild them (spikeflow.kernels.captures): before, anything but a plain
number was keyed by its type alone, and a surrogate's functions were not read at all,
so the kernels went silently stale."""

from __future__ import annotations

import collections
import copy
import enum
import functools
import math

import pytest
import torch

from conftest import fused_backends, kernel_device
from spikeflow.kernels import TraceError
from spikeflow.kernels.captures import _value_key, captured_numbers
from spikeflow.neurons import BaseNode, LIFNode
from spikeflow.neurons.declaration import declare
from spikeflow.surrogate import Surrogate


class Mode(enum.Enum):
    LIN = 1
    QUAD = 2


class OtherMode(enum.Enum):
    LIN = 1


# Read by the equations below; the tests change them through monkeypatch.
MODE = "linear"
EMODE = Mode.LIN
CFG = {"gain": 0.5, "name": "cfg"}
COEF = (0.5, 2.0)
Gains = collections.namedtuple("Gains", "x")
NAMED = Gains(0.5)
COEFS = [0.5, 2.0]
NESTED = {"gains": [0.5], "flags": {"quad": False}}
FLAGS = {"slow"}
ACTS = {"f": torch.sigmoid}
WIDTH = 0.5
STEEP = 1.0
BIG = [0.5] * 1000


def _str_flag(x, v):
    if MODE == "quadratic":
        return v + x + 0.5 * v * v
    return v + 0.5 * x


def _enum_flag(x, v):
    return v + x * (1.0 if EMODE is Mode.QUAD else 0.5)


def _dict_entry(x, v):
    return v + CFG["gain"] * x


def _tuple_entry(x, v):
    return v + COEF[0] * x


def _named_entry(x, v):
    return v + NAMED.x * x


def _list_entry(x, v):
    return v + COEFS[0] * x


def _nested_entries(x, v):
    return v + NESTED["gains"][0] * x + (0.3 * v * v if NESTED["flags"]["quad"] else 0.0)


def _set_member(x, v):
    return v + (1.0 if "fast" in FLAGS else 0.5) * x


def _function_entry(x, v):
    return v + 0.5 * x + 0.3 * ACTS["f"](v)


def _big_list(x, v):
    return v + BIG[0] * x


def _closure_dict():
    """A charge reading a closure's dict, and a function that changes its entry."""
    cfg = {"gain": 0.5}

    def charge(x, v):
        return v + cfg["gain"] * x

    def set_gain(monkeypatch, gain):
        monkeypatch.setitem(cfg, "gain", gain)

    return charge, set_gain


def _rebind(name):
    def set_value(monkeypatch, value):
        monkeypatch.setitem(globals(), name, value)

    return set_value


def _in_place(name, update):
    """A setter that changes the global container ``name`` in place (a copy of it, which
    monkeypatch puts back after the test)."""

    original = globals()[name]

    def set_value(monkeypatch, value):
        container = globals()[name]
        if container is original:
            container = copy.deepcopy(original)
            monkeypatch.setitem(globals(), name, container)
        update(container, value)

    return set_value


def _set_item(key):
    return lambda container, value: container.__setitem__(key, value)


def _set_nested(nested, value):
    nested["gains"][0], nested["flags"]["quad"] = value


def _set_fast(flags, fast):
    (flags.add if fast else flags.discard)("fast")


#: name -> (charge, how to set a value, two values whose spikes differ)
CASES = {
    "str flag": (_str_flag, _rebind("MODE"), ("linear", "quadratic")),
    "Enum member": (_enum_flag, _rebind("EMODE"), (Mode.LIN, Mode.QUAD)),
    "dict entry": (_dict_entry, _in_place("CFG", _set_item("gain")), (0.5, 1.3)),
    "tuple entry": (_tuple_entry, _rebind("COEF"), ((0.5, 2.0), (1.3, 2.0))),
    "namedtuple": (_named_entry, _rebind("NAMED"), (Gains(0.5), Gains(1.3))),
    "list entry": (_list_entry, _in_place("COEFS", _set_item(0)), (0.5, 1.3)),
    "nested entries": (
        _nested_entries,
        _in_place("NESTED", _set_nested),
        ((0.5, False), (1.3, True)),
    ),
    "set member": (_set_member, _in_place("FLAGS", _set_fast), (False, True)),
    "function entry": (
        _function_entry,
        _in_place("ACTS", _set_item("f")),
        (torch.sigmoid, torch.tanh),
    ),
    "closure dict": (*_closure_dict(), (0.5, 1.3)),
}


def neuron(charge) -> type[BaseNode]:
    return type("CapturingNeuron", (BaseNode,), {"charge": staticmethod(charge)})


def spikes_and_grad(node, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    xi = x.clone().requires_grad_()
    spikes = node(xi)
    weights = torch.linspace(0.5, 1.5, x.shape[-1], dtype=x.dtype, device=x.device)
    (spikes * weights).sum().backward()
    return spikes.detach(), xi.grad


def assert_matches_reference(make, backend: str, x: torch.Tensor) -> tuple:
    """``make(backend)``'s spikes equal the reference loop's and its input gradient is
    close; returns the reference's (spikes, gradient)."""
    out, grad = spikes_and_grad(make(backend), x)
    ref_out, ref_grad = spikes_and_grad(make("torch"), x)
    assert torch.equal(out, ref_out)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-6)
    return ref_out, ref_grad


def _input(backend: str) -> torch.Tensor:
    return torch.rand(6, 2, 16, device=kernel_device(backend)) * 0.6


# Triton (through its interpreter without a GPU) on a few cases, to stay fast.
_TRITON_CASES = ("str flag", "dict entry")


@pytest.mark.parametrize(
    ("case", "backend"),
    [
        *((c, "cpu") for c in CASES),
        *(pytest.param(c, *b.values, marks=b.marks) for c in _TRITON_CASES
          for b in fused_backends()[1:]),
    ],
)  # fmt: skip
def test_a_changed_captured_value_rebuilds_the_kernels(case, backend, monkeypatch):
    charge, set_value, (a, b) = CASES[case]
    cls = neuron(charge)
    x = _input(backend)
    results = []
    for value in (a, b, a):
        set_value(monkeypatch, value)
        results.append(assert_matches_reference(lambda be: cls(backend=be), backend, x))
    assert not torch.equal(results[0][0], results[1][0]), "the change must matter"
    assert torch.equal(results[0][0], results[2][0])


class Box(Surrogate):
    """A surrogate whose derivative reads a module-level number."""

    def __init__(self, spiking: bool = True) -> None:
        super().__init__(spiking=spiking)

    @staticmethod
    def derivative(x):
        return (torch.abs(x) < WIDTH).float() / (2 * WIDTH)


class Ramp(Surrogate):
    """A non-spiking surrogate whose primitive (the forward) reads a module-level number."""

    def __init__(self, spiking: bool = False) -> None:
        super().__init__(spiking=spiking)

    @staticmethod
    def primitive(x):
        return torch.clamp(STEEP * x + 0.5, 0.0, 1.0)


@pytest.mark.parametrize("backend", fused_backends())
@pytest.mark.parametrize(("surrogate", "name", "values"),
                         [(Box, "WIDTH", (0.5, 0.1)), (Ramp, "STEEP", (1.0, 4.0))])  # fmt: skip
def test_a_surrogate_reading_a_global_rebuilds_the_kernels(
    surrogate, name, values, backend, monkeypatch
):
    x = _input(backend) * 2
    results = []
    for value in (*values, values[0]):
        monkeypatch.setitem(globals(), name, value)
        make = lambda be: LIFNode(backend=be, surrogate_function=surrogate())  # noqa: E731
        results.append(assert_matches_reference(make, backend, x))
    before, after, again = results
    assert not torch.equal(before[1], after[1]), "the change must matter"
    torch.testing.assert_close(before[1], again[1])


def test_keys_tell_values_apart():
    distinct = [1, 1.0, True, "1", b"1", None, 0.0, -0.0, 1 + 0j, torch.float32,
                torch.float64, Mode.LIN, Mode.QUAD, OtherMode.LIN, (1,), [1], {1},
                frozenset({1}), {"a": 1}, {"a": 1.0}, {"a": True}, {"a": "1"}, (Mode.LIN,),
                (OtherMode.LIN,), [torch.sigmoid], [torch.tanh], [[1, 2]], [[1, 2.0]],
                {"a": {"b": 1}}, {"a": {"b": 2}}, [math], [torch], Gains(1),
                collections.OrderedDict(a=1)]  # fmt: skip
    keys = [_value_key(v) for v in distinct]
    assert len(set(keys)) == len(keys), keys
    # Equal contents, equal keys: a rebuilt config reuses its kernels.
    assert _value_key(float("nan")) == _value_key(float("nan"))
    assert _value_key({"a": [1, (2, Mode.QUAD)]}) == _value_key({"a": [1, (2, Mode.QUAD)]})
    assert _value_key({1: [torch.sigmoid]}) == _value_key({1: [torch.sigmoid]})
    # Modules, functions, classes and tensors count by type, as before (their identity
    # is not what the tracer folds in); a tensor inside a container too.
    assert _value_key(torch) == _value_key(math) == "<module>"
    assert _value_key(torch.sigmoid) == _value_key(torch.tanh)
    assert _value_key(Mode) == _value_key(OtherMode)
    assert _value_key(torch.ones(2)) == _value_key(torch.zeros(3))
    assert _value_key([torch.ones(2)]) == _value_key([torch.zeros(3)])


def test_captured_modules_and_functions_are_read_by_type():
    decl = declare(lambda x, v: v + torch.sigmoid(x) * math.pi)
    assert captured_numbers(decl) == ("<module>", "<module>")


def test_a_container_too_large_to_check_is_refused(monkeypatch):
    from spikeflow import kernels

    monkeypatch.setattr(kernels, "_WARNED", set())
    cls = neuron(_big_list)
    x = _input("cpu")
    with pytest.raises(TraceError, match="'BIG', a container with more than 256 entries"):
        cls(backend="cpu")(x)
    with pytest.warns(UserWarning, match="more than 256 entries"):
        out = cls(backend="auto")(x)
    assert torch.equal(out, cls(backend="torch")(x))
    loop: list = []
    loop.append(loop)  # a cycle: too deep
    monkeypatch.setitem(globals(), "BIG", loop)
    with pytest.raises(TraceError, match="'BIG', a container with more than"):
        cls(backend="cpu")(x)


#: A module global that shares its name with a tensor method the next charge calls.
exp = list(range(1000))


def _method_named_like_a_global(x, v):
    return v * 0.5 + (x * 0.1).exp() - 1.0


def test_attribute_names_are_not_read_as_globals():
    # co_names holds attribute and method names too: reading the global `exp` (too
    # large to compare) refused this neuron, which reads no global at all.
    cls = neuron(_method_named_like_a_global)
    assert captured_numbers(cls().declaration()) == ()
    x = _input("cpu")
    assert torch.equal(cls(backend="cpu")(x), cls(backend="torch")(x))


# -- under torch.compile ---------------------------------------------------------------


@pytest.fixture
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.usefixtures("fresh_dynamo")
@pytest.mark.parametrize("case", ["str flag", "Enum member", "dict entry", "set member",
                                  "function entry", "closure dict", "Box"])  # fmt: skip
def test_a_changed_captured_value_recompiles(case, monkeypatch):
    from torch._dynamo.testing import CompileCounter

    if case == "Box":  # the surrogate's derivative reads WIDTH
        set_value, values = _rebind("WIDTH"), (0.5, 0.1)
        node = LIFNode(backend="cpu", surrogate_function=Box())
        make = lambda be: LIFNode(backend=be, surrogate_function=Box())  # noqa: E731
    else:
        charge, set_value, values = CASES[case]
        cls = neuron(charge)
        node, make = cls(backend="cpu"), lambda be: cls(backend=be)
    counter = CompileCounter()
    compiled = torch.compile(node, backend=counter, fullgraph=True)
    x = _input("cpu") * (2 if case == "Box" else 1)
    frames, results = [], []
    for value in (*values, values[0], values[1]):
        set_value(monkeypatch, value)
        out, grad = spikes_and_grad(compiled, x)
        spikes_and_grad(compiled, x)  # unchanged: no recompilation
        frames.append(counter.frame_count)
        ref = assert_matches_reference(lambda be: make(be), "cpu", x)
        assert torch.equal(out, ref[0])
        torch.testing.assert_close(grad, ref[1], rtol=1e-5, atol=1e-6)
        results.append(ref)
    assert frames == [1, 2, 2, 2], frames  # one graph per value, each kept
    changed = 1 if case == "Box" else 0  # the surrogate changes the gradient only
    assert not torch.equal(results[0][changed], results[1][changed])


@pytest.mark.usefixtures("fresh_dynamo")
def test_a_container_too_large_under_compile_falls_back(monkeypatch):
    from spikeflow import kernels

    monkeypatch.setattr(kernels, "_WARNED", set())
    cls = neuron(_big_list)
    x = _input("cpu")
    with pytest.warns(UserWarning, match="more than 256 entries"):
        out = torch.compile(cls(), backend="aot_eager", fullgraph=True)(x)
    assert torch.equal(out, cls(backend="torch")(x))
    torch._dynamo.reset()
    with pytest.raises(Exception, match="more than 256 entries"):
        torch.compile(cls(backend="cpu"), backend="aot_eager", fullgraph=True)(x)


def _gain_half(x, v):
    return v * 0.5 + x * 0.5


def _gain_double(x, v):
    return v * 0.5 + x * 2.0


def test_a_charge_whose_code_is_replaced_in_place_rebuilds_the_kernels(monkeypatch):
    # IPython's autoreload swaps a function's __code__, keeping the function object.
    def charge(x, v):
        return v * 0.5 + x * 0.5

    monkeypatch.setattr(charge, "__code__", _gain_half.__code__)
    cls = neuron(charge)
    x = _input("cpu")
    first = cls(backend="cpu")(x)
    assert torch.equal(first, cls(backend="torch")(x))
    monkeypatch.setattr(charge, "__code__", _gain_double.__code__)
    second = cls(backend="cpu")(x)
    assert not torch.equal(first, second), "the new code must matter"
    assert torch.equal(second, cls(backend="torch")(x))


def _with_gain(x, v, *, gain):
    return v * 0.5 + x * gain


def test_a_charge_replaced_in_place_with_another_signature_is_declared_again(monkeypatch):
    # The declaration (state and parameter names) was cached by function object: a
    # keyword parameter added by a reload was never passed (a TypeError on every call).
    def charge(x, v):
        return v * 0.5 + x * 0.5

    cls = type(
        "GainNeuron",
        (BaseNode,),
        {"charge": staticmethod(charge), "neuron_params": lambda self: {"gain": 2.0}},
    )
    x = _input("cpu")
    first = cls(backend="cpu")(x)
    assert cls(backend="cpu").declaration().charge_params == ()
    monkeypatch.setattr(charge, "__code__", _with_gain.__code__)
    monkeypatch.setattr(charge, "__kwdefaults__", None)
    assert cls(backend="cpu").declaration().charge_params == ("gain",)
    for backend in ("torch", "cpu"):
        assert torch.equal(cls(backend=backend)(x), cls(backend="torch")(x))
    assert torch.equal(cls(backend="cpu")(x), neuron(_gain_double)(backend="torch")(x))
    assert not torch.equal(first, cls(backend="cpu")(x)), "the new code must matter"


def _charge_behind(kind: str, inner):
    """``inner`` as a neuron's charge behind a ``functools.wraps`` decorator or a partial."""
    if kind == "wraps":

        @functools.wraps(inner)
        def charge(*args, **kwargs):
            return inner(*args, **kwargs)

        return charge
    return functools.partial(inner)


@pytest.mark.parametrize("kind", ["wraps", "partial"])
def test_a_wrapped_charge_replaced_in_place_with_another_signature_is_declared_again(
    monkeypatch, kind
):
    # The cache compared the wrapper's own code (or a partial's None): a reload of the
    # function behind it kept the old signature.
    def inner(x, v):
        return v * 0.5 + x * 0.5

    cls = type(
        "GainNeuron",
        (BaseNode,),
        {"charge": staticmethod(_charge_behind(kind, inner)),
         "neuron_params": lambda self: {"gain": 2.0}},
    )  # fmt: skip
    x = _input("cpu")
    cls(backend="torch")(x)
    monkeypatch.setattr(inner, "__code__", _with_gain.__code__)
    assert cls().declaration().charge_params == ("gain",)
    assert torch.equal(cls(backend="torch")(x), neuron(_gain_double)(backend="torch")(x))
