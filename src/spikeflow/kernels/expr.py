"""A small symbolic expression language for tracing and differentiating neuron equations.

A neuron's charge/update functions and a surrogate's derivative are ordinary Python
functions of elementwise ``torch`` code. Called with :class:`Expr` arguments instead of
tensors (operators are overloaded and ``torch.*`` calls arrive via
``__torch_function__``) they return an expression graph, which :func:`vjp`
differentiates and the code generators print as C or Triton.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
import numbers
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from spikeflow.errors import ConfigurationError

__all__ = ["Expr", "TraceError", "const", "topological", "tracing_dtype", "var", "vjp"]

#: Elementwise unary functions the generators can print.
UNARY = (
    "neg", "exp", "log", "log1p", "expm1", "sigmoid", "tanh", "atan", "erf", "erfc",
    "abs", "sign", "sin", "cos", "sqrt", "rsqrt", "relu", "floor", "tofloat",
)  # fmt: skip
BINARY = ("add", "sub", "mul", "div", "pow", "maximum", "minimum")
COMPARE = ("lt", "le", "gt", "ge", "eq", "ne")
#: Logical operations on comparisons (``&``, ``|``, ``~`` of boolean tensors).
LOGICAL = ("land", "lor", "lnot")
#: Operations whose value is a boolean (a comparison or a logical combination of them).
BOOLEAN = COMPARE + LOGICAL
#: ``spike(u)``: Heaviside 1[u >= 0] whose derivative is the surrogate's (arg 1);
#: ``spike_strict``: 1[u > 0]; ``nograd(a)``: a with a zero derivative (detach).
SPECIAL = ("where", "spike", "spike_strict", "nograd")

_SUPPORTED_HINT = "see docs/kernels.md for what the fused kernels can compile"


class TraceError(ConfigurationError):
    """An equation the fused kernels cannot compile (an unsupported call or operator, a
    branch on a traced value, a captured tensor, ...). The message names it. An explicit
    fused backend raises it; ``backend="auto"`` runs the reference loop instead."""


class _UnsupportedAttribute(TraceError, AttributeError):
    """A tensor attribute or method the tracer does not know (also an AttributeError, so
    that ``hasattr`` keeps working)."""


@dataclass(eq=False)
class Expr:
    """A node of an expression graph: a constant, a named variable or an operation."""

    op: str
    args: tuple[Expr, ...] = ()
    value: float = 0.0
    name: str = ""
    _key: tuple | None = field(default=None, repr=False)

    # -- structure --------------------------------------------------------------

    @property
    def key(self) -> tuple:
        """A structural key: equal keys mean equal expressions (used for CSE)."""
        if self._key is None:
            if self.op == "const":
                # The sign too: -0.0 == 0.0, but they are different constants.
                self._key = ("const", self.value, math.copysign(1.0, self.value))
            elif self.op == "var":
                self._key = ("var", self.name)
            elif self.name:  # a cast's dtype
                self._key = (self.op, self.name, *(a.key for a in self.args))
            else:
                self._key = (self.op, *(a.key for a in self.args))
        return self._key

    @property
    def is_const(self) -> bool:
        return self.op == "const"

    def __repr__(self) -> str:
        if self.op == "const":
            return repr(self.value)
        if self.op == "var":
            return self.name
        return f"{self.op}({', '.join(map(repr, self.args))})"

    # -- what tracing needs of a tensor -------------------------------------------

    @property
    def dtype(self) -> torch.dtype:
        """The dtype being traced for (:func:`tracing_dtype`): ``torch.finfo(x.dtype)``
        and ``x.to(x.dtype)`` mean in the kernel what they mean in the reference."""
        return _TRACE_DTYPE.get()

    @property
    def shape(self) -> tuple[int, ...]:
        return _refuse("the shape of a traced value (x.shape, x.size(); the kernels work "
                       "on one neuron at a time)")  # fmt: skip

    def to(self, *args: Any, **kwargs: Any) -> Expr:
        return _cast(self, *args, **kwargs)

    def float(self, *args: Any, **kwargs: Any) -> Expr:
        return _cast(self, torch.float32)

    def double(self, *args: Any, **kwargs: Any) -> Expr:
        return _cast(self, torch.float64)

    def half(self, *args: Any, **kwargs: Any) -> Expr:
        return _cast(self, torch.float16)

    def bfloat16(self, *args: Any, **kwargs: Any) -> Expr:
        return _cast(self, torch.bfloat16)

    def __bool__(self) -> bool:
        raise TraceError(
            "a neuron or surrogate equation branches on a traced value (if/and/or on a "
            "tensor, or a Python comparison chain a < b < c); use torch.where, and & | ~ "
            "between comparisons, so that the equation stays elementwise"
        )

    __add__ = lambda a, b: apply("add", a, b)  # noqa: E731
    __radd__ = lambda a, b: apply("add", b, a)  # noqa: E731
    __sub__ = lambda a, b: apply("sub", a, b)  # noqa: E731
    __rsub__ = lambda a, b: apply("sub", b, a)  # noqa: E731
    __mul__ = lambda a, b: apply("mul", a, b)  # noqa: E731
    __rmul__ = lambda a, b: apply("mul", b, a)  # noqa: E731
    __truediv__ = lambda a, b: apply("div", a, b)  # noqa: E731
    __rtruediv__ = lambda a, b: _rdiv(b, a)  # noqa: E731
    __pow__ = lambda a, b: apply("pow", a, b)  # noqa: E731
    __rpow__ = lambda a, b: apply("pow", b, a)  # noqa: E731
    __neg__ = lambda a: apply("neg", a)  # noqa: E731
    __pos__ = lambda a: a  # noqa: E731
    __abs__ = lambda a: apply("abs", a)  # noqa: E731
    __lt__ = lambda a, b: apply("lt", a, b)  # noqa: E731
    __le__ = lambda a, b: apply("le", a, b)  # noqa: E731
    __gt__ = lambda a, b: apply("gt", a, b)  # noqa: E731
    __ge__ = lambda a, b: apply("ge", a, b)  # noqa: E731
    __and__ = lambda a, b: _logical("land", "&", a, b)  # noqa: E731
    __rand__ = lambda a, b: _logical("land", "&", b, a)  # noqa: E731
    __or__ = lambda a, b: _logical("lor", "|", a, b)  # noqa: E731
    __ror__ = lambda a, b: _logical("lor", "|", b, a)  # noqa: E731
    __xor__ = lambda a, b: _logical("ne", "^", a, b)  # noqa: E731
    __rxor__ = lambda a, b: _logical("ne", "^", b, a)  # noqa: E731
    __invert__ = lambda a: _logical("lnot", "~", a)  # noqa: E731

    def __mod__(self, other: object) -> Expr:
        return _refuse("the operator % (torch.remainder)")

    def __floordiv__(self, other: object) -> Expr:
        return _refuse("the operator // (torch.floor_divide)")

    def __matmul__(self, other: object) -> Expr:
        return _refuse("the operator @ (a matrix product)")

    __rmod__, __rfloordiv__, __rmatmul__ = __mod__, __floordiv__, __matmul__

    def __getitem__(self, index: object) -> Expr:
        return _refuse("indexing a traced value (x[...])")

    def __setitem__(self, index: object, value: object) -> None:
        _refuse("assigning into a traced value (x[...] = ...)")

    def __float__(self) -> float:
        return _refuse("converting a traced value to a Python number (float(x), math.* functions)")

    __int__ = __index__ = __float__  # type: ignore[assignment]

    def __getattr__(self, name: str) -> Any:
        # Tensor methods: x.exp(), v.clamp(min=-1), v.detach(), ... map onto the
        # torch functions the tracer knows; anything else is refused by name.
        if name.startswith("_"):
            raise AttributeError(name)
        if name == "where":  # x.where(condition, y) is torch.where(condition, x, y)
            return lambda condition, other: apply("where", condition, self, other)
        if name in _METHODS:
            return functools.partial(_call, name, f"Tensor.{name}", self)
        inplace = name.endswith("_") and name[:-1] in _METHODS
        raise _UnsupportedAttribute(
            f"Tensor.{name} is not supported in neuron/surrogate equations compiled to fused "
            "kernels"
            + (" (an in-place operation; use the out-of-place form)" if inplace else "")
            + f"; supported tensor methods: {', '.join(sorted(_METHODS))}; {_SUPPORTED_HINT}"
        )

    def __eq__(self, other: object) -> Expr:  # type: ignore[override]
        return apply("eq", self, other)

    def __ne__(self, other: object) -> Expr:  # type: ignore[override]
        return apply("ne", self, other)

    __hash__ = object.__hash__

    @classmethod
    def __torch_function__(
        cls, func: Callable, types: Iterable[type], args: tuple = (), kwargs: dict | None = None
    ) -> Any:
        return _torch_call(func, args, kwargs or {})


_TRACE_DTYPE: contextvars.ContextVar[torch.dtype] = contextvars.ContextVar(
    "spikeflow_trace_dtype", default=torch.float32
)


@contextlib.contextmanager
def tracing_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Trace for inputs of ``dtype``: what a traced value's ``.dtype`` reports."""
    token = _TRACE_DTYPE.set(dtype)
    try:
        yield
    finally:
        _TRACE_DTYPE.reset(token)


def _rdiv(number: object, a: Expr) -> Expr:
    """``number / a`` with a Python number first: PyTorch's ``Tensor.__rtruediv__``
    computes ``a.reciprocal() * number`` (two roundings). A value of parameters alone may
    be a Python float in the reference loop, which Python divides in one rounding: that
    division is marked ``rdiv``, and the printers choose once the parameters' types are
    known (``Typing.weak``)."""
    if _parameters_only(a):
        return Expr("div", (_lift(number), a), name="rdiv")
    return apply("mul", apply("div", 1.0, a), number)


def const(value: float) -> Expr:
    """A constant."""
    return Expr("const", value=float(value))


def var(name: str) -> Expr:
    """A named input variable."""
    return Expr("var", name=name)


def _refuse(what: str) -> Any:
    raise TraceError(
        f"{what} is not supported in neuron/surrogate equations compiled to fused kernels; "
        f"{_SUPPORTED_HINT}"
    )


def _lift(a: object) -> Expr:
    if isinstance(a, Expr):
        return a
    if isinstance(a, bool):
        return const(1.0 if a else 0.0)
    if isinstance(a, numbers.Real):
        return const(float(a))
    if isinstance(a, torch.Tensor):
        # A tensor captured by the equation (a global or closure nn.Parameter, a buffer)
        # or created inside it: inlining its value would freeze it into the kernel (no
        # gradient, later in-place updates ignored), so it is refused.
        shape = tuple(a.shape)
        if a.requires_grad:
            raise TraceError(
                f"a neuron equation uses a tensor that requires grad (shape {shape}) which is "
                "not one of its arguments (captured from a global, a closure or an "
                "attribute): the fused kernels would freeze its value and drop its gradient. "
                "Pass it as a neuron parameter: a keyword-only argument of charge/update/"
                "threshold whose value neuron_params() returns"
            )
        raise TraceError(
            f"a neuron equation uses a tensor (shape {shape}) which is not one of its "
            "arguments (captured from a global, a closure or an attribute, or created inside "
            "the equation): the fused kernels would freeze its value at the first call. "
            "Pass it as a neuron parameter (a keyword-only argument whose value "
            "neuron_params() returns) or write the number as a Python float"
        )
    raise TraceError(
        f"a traced equation combines a symbolic value with {type(a).__name__} {a!r}; only "
        "numbers and the equation's own arguments may appear"
    )


def _boolean_operand(a: object) -> Expr | None:
    """``a`` as an operand of ``& | ^ ~``: a comparison or a logical combination of
    them, a Python bool, or a constant 0/1 (a comparison the tracer folded, such as
    ``torch.ones_like(v) > 0.5`` or a comparison of captured numbers); else None."""
    if isinstance(a, bool):
        return _lift(a)
    if isinstance(a, Expr) and (a.op in BOOLEAN or (a.is_const and a.value in (0.0, 1.0))):
        return a
    return None


def _logical(op: str, symbol: str, *args: object) -> Expr:
    """``&``, ``|``, ``^``, ``~`` between comparisons (boolean tensors); an operand that
    is a constant folds away (``c & True`` is ``c``, ``c ^ True`` is ``~c``, ...)."""
    operands = [_boolean_operand(a) for a in args]
    if any(a is None for a in operands):
        raise TraceError(
            f"the operator {symbol} is supported in fused-kernel equations only between "
            "comparisons (boolean tensors such as (v > 0) & (x < 1)); use arithmetic or "
            "torch.where for numbers"
        )
    if op == "ne" and any(a.is_const for a in operands):  # ^: exclusive or
        a, b = operands if operands[0].is_const else operands[::-1]
        if b.is_const:
            return const(float(a.value != b.value))
        return apply("lnot", b) if a.value else b
    return apply(op, *operands)


_FOLD: dict[str, Callable[..., float]] = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b if b != 0 else math.copysign(math.inf, a) if a else math.nan,
    "neg": lambda a: -a,
    "exp": math.exp,
    "sqrt": math.sqrt,
    "abs": abs,
    "floor": lambda a: float(math.floor(a)),
    "lt": lambda a, b: float(a < b),
    "le": lambda a, b: float(a <= b),
    "gt": lambda a, b: float(a > b),
    "ge": lambda a, b: float(a >= b),
    "maximum": max,
    "minimum": min,
    "tofloat": lambda a: a,
}


#: The dtypes the kernels compute in (a cast to one of them is computed in the kernel's).
_KERNEL_DTYPES = (torch.float32, torch.float64)


def _cast(a: Expr, *args: Any, **kwargs: Any) -> Expr:
    """``a.to(...)``: a comparison becomes a number (0 or 1); a cast to float32 or
    float64, or to the traced input's own dtype (``x.to(x.dtype)``), computes on in the
    kernel's own type (no rounding to the named one); a cast to another half or
    non-floating type, whose rounding or truncation the kernels do not reproduce, is
    refused."""
    dtype = kwargs.get("dtype")
    for arg in args:
        if isinstance(arg, torch.dtype):
            dtype = arg
        elif isinstance(arg, torch.Tensor):
            dtype = arg.dtype
        elif isinstance(arg, Expr):  # a.to(x): the traced input's dtype
            dtype = _TRACE_DTYPE.get()
    if dtype is not None and dtype != _TRACE_DTYPE.get() and dtype not in _KERNEL_DTYPES:
        raise TraceError(
            f"a cast to {dtype} inside a neuron equation (.to({dtype}), .half(), "
            ".bfloat16(), ...): the fused kernels compute every value in the neuron's "
            "float32 or float64 type and would not round or truncate it as the reference "
            "loop does; drop the cast, or use backend='torch'"
        )
    a = _lift(a)
    # Where the cast can matter, the node keeps the dtype asked for (its name): a
    # comparison's 0/1, and a value of parameters and constants alone, which the kernels
    # compute in the types PyTorch gives it (printing.scalar_types). A value that depends
    # on the input or a state is computed in the kernel's type whatever the cast.
    target = str(dtype).removeprefix("torch.") if dtype in _KERNEL_DTYPES else ""
    if a.op in BOOLEAN or (target and not a.is_const and _parameters_only(a)):
        return Expr("tofloat", (a,), name=target)
    return apply("tofloat", a)


#: Variables that do not vary from neuron to neuron within a call (scalars or per-neuron
#: parameters): everything but the input and the states.
_PARAMETER_PREFIXES = ("param_", "theta", "sg_")


def _parameters_only(e: Expr) -> bool:
    """Whether ``e`` depends on parameters, the threshold and constants alone."""
    if e.op == "var":
        return e.name.startswith(_PARAMETER_PREFIXES)
    return all(_parameters_only(a) for a in e.args)


def apply(op: str, *args: object) -> Expr:
    """Build ``op(*args)`` with constant folding and the trivial identities."""
    ea = tuple(_lift(a) for a in args)
    if op in _FOLD and all(a.is_const for a in ea):
        try:
            return const(_FOLD[op](*(a.value for a in ea)))
        except (OverflowError, ValueError):
            pass
    if len(ea) == 2:
        a, b = ea
        # Negations fold into the sum (exact in IEEE arithmetic: a + (-b) is a - b).
        if op == "add":
            if a.is_const and a.value == 0:
                return b
            if b.is_const and b.value == 0:
                return a
            if b.op == "neg":
                return apply("sub", a, b.args[0])
            if a.op == "neg":
                return apply("sub", b, a.args[0])
        elif op == "sub":
            if b.is_const and b.value == 0:
                return a
            if a.is_const and a.value == 0:
                return apply("neg", b)
            if b.op == "neg":
                return apply("add", a, b.args[0])
        elif op == "mul":
            if (a.is_const and a.value == 0) or (b.is_const and b.value == 0):
                return const(0.0)
            if a.is_const and a.value == 1:
                return b
            if b.is_const and b.value == 1:
                return a
            if a.is_const and a.value == -1:
                return apply("neg", b)
            if b.is_const and b.value == -1:
                return apply("neg", a)
        elif op == "div" and b.is_const and b.value == 1:
            return a
        elif op == "pow" and b.is_const and b.value == 1:
            return a
        elif op == "pow" and b.is_const and b.value == 0:
            return const(1.0)  # as torch.pow: x ** 0 is 1, also for NaN (and no gradient)
    if op == "neg" and ea[0].op == "neg":
        return ea[0].args[0]
    if op in LOGICAL and any(a.is_const for a in ea):  # a comparison folded to 0/1
        if op == "lnot":
            return const(float(not ea[0].value))
        a, b = ea if ea[0].is_const else ea[::-1]
        if b.is_const:
            return const(float(_truth(op, bool(a.value), bool(b.value))))
        # c & True is c, c & False is 0; c | True is 1, c | False is c.
        if bool(a.value) == (op == "land"):
            return b
        return const(float(op == "lor"))
    if op == "where" and ea[0].is_const:
        # A constant condition selects its branch; the other gets no gradient, as
        # PyTorch's where gives it (Triton would also warn on a float condition).
        return ea[1] if ea[0].value else ea[2]
    if op == "where" and ea[1].key == ea[2].key:
        return ea[1]
    if op == "tofloat" and ea[0].op not in BOOLEAN:
        return ea[0]
    return Expr(op, ea)


def _truth(op: str, a: bool, b: bool) -> bool:
    return a and b if op == "land" else a or b


def _clamp(x: object, lo: object = None, hi: object = None) -> Expr:
    # As selections, not maximum/minimum: torch.clamp passes the gradient to x on the
    # bounds too (maximum/minimum split it in halves at a tie), and gives hi when lo > hi.
    # Its gradient is masked by lo <= x <= hi, so a NaN x (which passes through the
    # selections) gets none: x where the mask holds, else the same x without gradient.
    out = _lift(x)
    if not out.is_const and (lo is not None or hi is not None):
        bounds = [apply("ge", out, lo)] if lo is not None else []
        bounds += [apply("le", out, hi)] if hi is not None else []
        if all(b.op in BOOLEAN for b in bounds):  # not folded to a constant
            mask = bounds[0] if len(bounds) == 1 else apply("land", *bounds)
            out = apply("where", mask, out, apply("nograd", out))
    if lo is not None:
        out = apply("where", apply("lt", out, lo), lo, out)
    if hi is not None:
        out = apply("where", apply("gt", out, hi), hi, out)
    return out


_TORCH: dict[str, Callable[..., Expr]] = {
    **{name: (lambda n: lambda a: apply(n, a))(name) for name in UNARY if name != "tofloat"},
    "negative": lambda a: apply("neg", a),
    "square": lambda a: apply("mul", a, a),
    "reciprocal": lambda a: apply("div", 1.0, a),
    "add": lambda a, b, alpha=1: apply("add", a, _no_alpha("add", b, alpha)),
    "sub": lambda a, b, alpha=1: apply("sub", a, _no_alpha("sub", b, alpha)),
    "subtract": lambda a, b, alpha=1: apply("sub", a, _no_alpha("subtract", b, alpha)),
    "mul": lambda a, b: apply("mul", a, b),
    "multiply": lambda a, b: apply("mul", a, b),
    "div": lambda a, b: apply("div", a, b),
    "true_divide": lambda a, b: apply("div", a, b),
    "pow": lambda a, b: apply("pow", a, b),
    "maximum": lambda a, b: apply("maximum", a, b),
    "minimum": lambda a, b: apply("minimum", a, b),
    "where": lambda c, a, b: apply("where", c, a, b),
    "clamp": lambda x, min=None, max=None: _clamp(x, min, max),
    "clip": lambda x, min=None, max=None: _clamp(x, min, max),
    "clamp_min": lambda x, min: _clamp(x, min, None),
    "clamp_max": lambda x, max: _clamp(x, None, max),
    "zeros_like": lambda a, **kw: const(0.0),
    "ones_like": lambda a, **kw: const(1.0),
    "full_like": lambda a, v, **kw: const(v),
    "detach": lambda a: apply("nograd", a),
    "lt": lambda a, b: apply("lt", a, b),
    "le": lambda a, b: apply("le", a, b),
    "gt": lambda a, b: apply("gt", a, b),
    "ge": lambda a, b: apply("ge", a, b),
    "eq": lambda a, b: apply("eq", a, b),
    "ne": lambda a, b: apply("ne", a, b),
    "logical_and": lambda a, b: _logical("land", "logical_and", a, b),
    "logical_or": lambda a, b: _logical("lor", "logical_or", a, b),
    "logical_xor": lambda a, b: _logical("ne", "logical_xor", a, b),
    "logical_not": lambda a: _logical("lnot", "logical_not", a),
    "to": _cast,
    "float": lambda a, *args, **kw: _cast(a, torch.float32),
}
#: The tensor methods the tracer maps onto ``_TORCH`` (``x.exp()``, ``v.clamp(...)``).
_METHODS = frozenset(_TORCH) - {"zeros_like", "ones_like", "full_like", "where", "to", "float"}
#: Names under which operators and aliases reach ``__torch_function__``.
_ALIASES = {
    "truediv": "div",
    "and": "logical_and",
    "or": "logical_or",
    "xor": "logical_xor",
    "invert": "logical_not",
    "bitwise_and": "logical_and",
    "bitwise_or": "logical_or",
    "bitwise_xor": "logical_xor",
    "bitwise_not": "logical_not",
    "absolute": "abs",
    "arctan": "atan",
}


def _no_alpha(name: str, b: object, alpha: object) -> object:
    """``b`` of ``torch.add(a, b, alpha=1)``. Another ``alpha`` is refused: PyTorch
    computes ``a + alpha * b`` with one rounding (a fused multiply-add) in its AVX2/AVX-512
    CPU kernels and twice in its default one (chosen at run time, ATEN_CPU_CAPABILITY), so
    no kernel can promise the reference's bits; written out, it rounds as the kernels do."""
    if isinstance(alpha, numbers.Real) and alpha == 1:
        return b
    raise TraceError(
        f"torch.{name}(..., alpha={alpha!r}) is not supported in equations compiled to fused "
        "kernels: PyTorch rounds a + alpha * b once (a fused multiply-add) or twice "
        "depending on the CPU kernel it picks at run time, so the fused kernels cannot "
        f"reproduce its spikes; write it out as a {'-' if name != 'add' else '+'} alpha * b"
    )


def _call(name: str, label: str, *args: object, **kwargs: object) -> Expr:
    """Apply the handler of ``name``; ``label`` names the call in errors."""
    inplace = kwargs.pop("inplace", False)
    if inplace is not False:
        raise TraceError(
            f"{label}(..., inplace={inplace!r}) is not supported in neuron/surrogate equations "
            "compiled to fused kernels: equations must not modify tensors in place; use "
            "inplace=False"
        )
    if kwargs.get("out", None) is None:
        kwargs.pop("out", None)
    handler = _TORCH.get(name)
    if handler is None:
        raise TraceError(
            f"{label} is not supported in neuron/surrogate equations compiled to fused "
            f"kernels; supported: {', '.join(sorted(_TORCH))}, the tensor methods of the same "
            "names, + - * / ** and comparisons, & | ~ between comparisons"
        )
    try:
        return handler(*args, **kwargs)
    except TypeError as exc:
        raise TraceError(
            f"{label} is called with arguments the fused-kernel tracer does not support "
            f"({exc}); {_SUPPORTED_HINT}"
        ) from exc


def _torch_call(func: Callable, args: tuple, kwargs: dict) -> Expr:
    name = getattr(func, "__name__", str(func)).strip("_")
    if name.startswith("r") and name[1:] in ("add", "sub", "mul", "truediv", "pow", "and", "or",
                                             "xor", "mod", "floordiv", "matmul"):  # fmt: skip
        args = (args[1], args[0], *args[2:])  # reflected dunder reached via __torch_function__
        name = name[1:]
    name = _ALIASES.get(name, name)
    module = getattr(func, "__module__", None) or ""
    functional = "functional" in module or module == "torch._C._nn"  # F.linear's is _nn
    label = f"{'torch.nn.functional' if functional else 'torch'}.{name}"
    return _call(name, label, *args, **kwargs)


def topological(outputs: Iterable[Expr]) -> list[Expr]:
    """The distinct nodes reachable from ``outputs``, arguments before users."""
    order: list[Expr] = []
    seen: set[int] = set()
    stack: list[tuple[Expr, bool]] = [(o, False) for o in outputs]
    while stack:
        node, done = stack.pop()
        if done:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        stack.extend((a, False) for a in node.args if id(a) not in seen)
    return order


# The derivatives (vjp) are in their own module, which builds on the nodes above.
from spikeflow.kernels.expr_vjp import vjp  # noqa: E402
