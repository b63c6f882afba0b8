"""Print a neuron step graph as Triton kernels (one program per block of neurons).

The kernels take the same buffers in the same order as the C kernels (see
:mod:`spikeflow.kernels.codegen_c`), then a tensor of scalar parameters, then ``T``,
``N`` (and for the backward ``LAST = (T - 1) * N``, ``GSTEP``, the elements between two
steps of the spike gradient, ``N`` or 0, ``GLAST = (T - 1) * GSTEP``, and the constant
``GELEM``: 1, or 0 when the spike gradient is one value for every step and neuron, as
after ``spikes.sum()``, read from a 1-element buffer) and ``BLOCK``. Each program keeps
the state of ``BLOCK`` neurons in registers and loops over T, advancing its pointers by
``N`` per step, so offsets never overflow 32 bits.

Two flavours of the same kernels are printed. For a GPU (``exact=True``) every
operation rounds as PyTorch's CUDA kernels do, so the fused forward reproduces the
reference loop's spikes bit for bit: transcendental functions call libdevice (the
library PyTorch's CUDA kernels are built against), float32 division and square root
are IEEE round-to-nearest (``tl.div_rn``, ``tl.sqrt_rn``; Triton's plain ``/`` is
approximate), a tensor divided by a Python number is multiplied by its reciprocal (as
PyTorch's CUDA division computes it), and both kernels are launched without
floating-point contraction (see :mod:`spikeflow.kernels.triton_backend`; the backward
recomputes the forward's spikes).
For Triton's CPU interpreter (``exact=False``), which has no libdevice, only core ``tl``
math is used; numpy computes it there.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from spikeflow.kernels.expr import BINARY, BOOLEAN, UNARY, Expr
from spikeflow.kernels.printing import (
    POW_SPECIAL,
    Typing,
    emit,
    gradient_targets,
    indent,
    user_name,
)
from spikeflow.kernels.spec import KernelSpec

__all__ = ["generate_triton"]

_UNARY = {
    "exp": "tl.exp({a})",
    "log": "tl.log({a})",
    "log1p": "_log1p({a})",
    "expm1": "_expm1({a})",
    "tanh": "_tanh({a})",
    "atan": "_atan({a})",
    "erf": "tl.math.erf({a})",
    "erfc": "(1.0 - tl.math.erf({a}))",
    "abs": "tl.abs({a})",
    "floor": "tl.floor({a})",
    "sin": "tl.sin({a})",
    "cos": "tl.cos({a})",
    "sqrt": "tl.sqrt({a})",
    "rsqrt": "tl.rsqrt({a})",
    "sigmoid": "tl.sigmoid({a})",
    "neg": "(-{a})",
    # .to(CT): a where between literals alone is float32, also in a float64 kernel.
    "sign": "tl.where({a} > 0, 1.0, tl.where({a} < 0, -1.0, 0.0)).to({CT})",
    # NaN propagates through relu, maximum and minimum, as in PyTorch.
    "relu": "tl.where({a} < 0, 0.0, {a})",
    "tofloat": "({a}).to({CT})",
    "lnot": "({a} == 0)",
    "nograd": "{a}",
    "spike": "({a} >= 0).to({CT})",
    "spike_strict": "({a} > 0).to({CT})",
}
_BINARY = {
    "add": "({a} + {b})",
    "sub": "({a} - {b})",
    "mul": "({a} * {b})",
    "div": "({a} / {b})",
    "maximum": "tl.where({a} != {a}, {a}, tl.where({a} > {b}, {a}, {b}))",
    "minimum": "tl.where({a} != {a}, {a}, tl.where({a} < {b}, {a}, {b}))",
    "lt": "({a} < {b})",
    "le": "({a} <= {b})",
    "gt": "({a} > {b})",
    "ge": "({a} >= {b})",
    "eq": "({a} == {b})",
    "ne": "({a} != {b})",
    # As 0/1 arithmetic: the interpreter cannot & or | a scalar boolean with a tensor one.
    "land": "(({a}).to(CT) * ({b}).to(CT) != 0)",
    "lor": "(({a}).to(CT) + ({b}).to(CT) != 0)",
}

_ATAN = """
@triton.jit
def _atan(x):
    # atan without libdevice (the interpreter has none): |x| > 1 inverted, two
    # argument halvings, atan(z) = 2 atan(z / (1 + sqrt(1 + z^2))), down to |z| <= 0.2,
    # then the odd series to z^21 (truncation ~1e-17: float64 digits).
    ax = tl.abs(x)
    inv = ax > 1.0
    z = tl.where(inv, 1.0 / tl.where(inv, ax, 1.0), ax)
    z = z / (1.0 + tl.sqrt(1.0 + z * z))
    z = z / (1.0 + tl.sqrt(1.0 + z * z))
    z2 = z * z
    p = z2 * (1.0 / 21.0) - 1.0 / 19.0
    p = p * z2 + 1.0 / 17.0
    p = p * z2 - 1.0 / 15.0
    p = p * z2 + 1.0 / 13.0
    p = p * z2 - 1.0 / 11.0
    p = p * z2 + 1.0 / 9.0
    p = p * z2 - 1.0 / 7.0
    p = p * z2 + 1.0 / 5.0
    p = p * z2 - 1.0 / 3.0
    r = 4.0 * (z + z * (p * z2))
    r = tl.where(inv, 1.5707963267948966 - r, r)
    return tl.where(x < 0, -r, r)
"""

#: Helpers of the interpreter's flavour, which has no libdevice (the GPU's calls it).
_INTERPRETER_HELPERS = """
@triton.jit
def _log1p(a):
    # log(1 + a) without the cancellation of 1 + a for a tiny a (Goldberg).
    u = 1.0 + a
    r = tl.log(u) * (a / tl.where(u == 1.0, 1.0, u - 1.0))
    return tl.where(u == 1.0, a, tl.where(u == 1e999, u, r))


@triton.jit
def _expm1(a):
    # exp(a) - 1 without the cancellation for a tiny a (Kahan).
    u = tl.exp(a)
    d = u - 1.0
    r = d * (a / tl.log(tl.where(u == 1.0, 2.0, u)))
    return tl.where(u == 1.0, a, tl.where((u == 1e999) | (d == -1.0), d, r))


@triton.jit
def _tanh(a):
    # tanh through expm1 of -2|a| (no cancellation near 0, no overflow for a large |a|).
    t = _expm1(-2.0 * tl.abs(a))
    r = -t / (t + 2.0)
    return tl.where(a < 0, -r, r)


@triton.jit
def _pow(a, b):
    # a ** b without libdevice: |a| ** b through exp and log, negated for a negative
    # base and an odd integer exponent, NaN for a negative base and a non-integer one
    # (as powf); x ** 0 is 1, also for x = 0.
    r = tl.exp(b * tl.log(tl.abs(a)))
    whole = tl.floor(b) == b
    half = b * 0.5
    odd = whole & (tl.floor(half) != half)
    r = tl.where(a < 0, tl.where(whole, tl.where(odd, -r, r), r * 0.0 + (1e999 * 0.0)), r)
    return tl.where(b == 0, 1.0, r)
"""


# The GPU flavour: functions PyTorch's CUDA kernels compute with libdevice, called
# from libdevice too (same results). Sigmoid is printed as 1 / (1 + exp(-a)), as
# PyTorch computes it.
_UNARY_GPU = {
    **_UNARY,
    **{f: f"libdevice.{f}({{a}})" for f in
       ("exp", "log", "log1p", "expm1", "tanh", "atan", "erf", "erfc", "sin", "cos")},
    "sqrt": "libdevice.sqrt_rn({a})",
    "rsqrt": "libdevice.rsqrt({a})",
}  # fmt: skip


def _pow(
    a: str,
    b: Expr,
    b_code: str,
    exact: bool,
    div: Callable[..., str],
    one: str = "1.0",
    widen: str = " + zero_",
) -> str:
    """``a ** b`` as PyTorch computes it (see POW_SPECIAL): its CUDA kernels call powf
    for every other exponent, and so does the GPU flavour (libdevice). ``one``: 1 in
    the operation's type; ``widen``: what makes the exponent a tensor of that type."""
    special = POW_SPECIAL.get(b.value) if b.is_const else None
    if special == "square":
        return f"({a} * {a})"
    if special == "cube":
        return f"({a} * {a} * {a})"
    if special == "reciprocal":
        return div(one, a, True)
    if special == "inverse_square":
        return div(one, f"({a} * {a})", True)
    if special == "sqrt":
        return f"libdevice.sqrt_rn({a})" if exact else f"tl.sqrt({a})"
    if special == "rsqrt":  # CUDA's torch.rsqrt: libdevice's (approximate in float32)
        return f"libdevice.rsqrt({a})" if exact else div(one, f"tl.sqrt({a})", True)
    if exact:
        return f"libdevice.pow({a}, {b_code}{widen})"
    if b.is_const and b.value == int(b.value) and abs(b.value) <= 4:
        # The interpreter has no pow: small integer powers as products.
        prod = "(" + " * ".join([a] * int(abs(b.value))) + ")"
        return div(one, prod, True) if b.value < 0 else prod
    return f"_pow({a}, {b_code}{widen})"


def _reciprocal(b: float, dtype: torch.dtype) -> float:
    """``1 / b`` rounded as CUDA computes it for ``x / b`` (``b`` a Python number): in
    the operation's type, from ``b`` rounded to that type."""
    np_type = np.float32 if dtype == torch.float32 else np.float64
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np_type(1.0) / np_type(b))


def _per_neuron(e: Expr, block_vars: frozenset[str], memo: dict[int, bool]) -> bool:
    """Whether ``e`` depends on a per-neuron value (a ``[BLOCK]`` tensor in the kernel),
    rather than on scalars and constants only."""
    hit = memo.get(id(e))
    if hit is None:
        if e.op == "var":
            hit = e.name in block_vars
        else:
            hit = any(_per_neuron(a, block_vars, memo) for a in e.args)
        memo[id(e)] = hit
    return hit


#: Operations on numbers: a boolean operand (a comparison used as 0/1) is cast first.
_ARITHMETIC = frozenset(UNARY + BINARY) - {"tofloat"}


#: Triton types of the dtypes a scalar-only sub-expression computes in (see Typing).
_TL_TYPES = {torch.float32: "tl.float32", torch.float64: "tl.float64"}


def _emit(
    targets: list[tuple[str, Expr]],
    names: dict[str, str],
    exact: bool,
    ctype: str,
    block_vars: frozenset[str],
    typing: Typing | None = None,
    raw: dict[str, str] | None = None,
    prefix: str = "tmp",
) -> list[str]:
    """Triton statements computing every target (common subexpressions computed once),
    in temporaries named ``<prefix><k>``.

    ``block_vars``: the variables that are ``[BLOCK]`` tensors in the kernel (the others
    are scalars); a target computed from scalars alone is broadcast to a block.
    ``typing``: the dtypes of the scalar-only sub-expressions, each computed in its own
    (from operands cast to it) and cast to CT where a per-neuron value uses it; ``raw``:
    the variables holding the unrounded value of a float64 parameter (a float kernel).

    In the GPU flavour a tensor divided by a Python number (a literal, a Python-float
    parameter, an expression of them) is multiplied by its reciprocal, computed in the
    operation's type from the number rounded to it, as PyTorch's CUDA division does
    (BinaryDivTrueKernel.cu; its CPU kernels, and the interpreter's flavour, divide).
    """
    T = torch.float32 if ctype == "float" else torch.float64
    typing = typing or Typing(T)
    raw = raw or {}
    unary = _UNARY_GPU if exact else _UNARY

    def tl_type(d: torch.dtype) -> str:
        return "CT" if d == T else _TL_TYPES[d]

    def one(d: torch.dtype) -> str:
        return "1.0" if d == T else f"tl.full([], 1.0, {tl_type(d)})"

    def div(a: str, b: str, a_is_const: bool = False, d: torch.dtype = T) -> str:
        # float32 division rounds exactly only through div_rn; float64 ``/`` already does.
        if not (exact and d == torch.float32):
            return f"({a} / {b})"
        # A literal dividend is made a block of CT (a typed one is a tensor already).
        return f"tl.div_rn({a} + zero_, {b})" if a_is_const and d == T else f"tl.div_rn({a}, {b})"

    def operand(node: Expr, arg: Expr, code: str, d: torch.dtype) -> str:
        """``arg`` (printed ``code``) as an operand of ``node``, which computes in ``d``."""
        if arg.op in BOOLEAN:
            return f"({code}).to({tl_type(d)})" if node.op in _ARITHMETIC else code
        if d == T:
            if arg.op in ("const", "var") or typing.stored(arg) == T:
                return code
            return f"({code}).to(CT)"
        if arg.op == "const":
            return f"tl.full([], {code}, {tl_type(d)})"
        if arg.op == "var":
            if arg.name in raw and typing.leaves.get(arg.name) == d:
                return f"{raw[arg.name]}.to({tl_type(d)})"
            return f"{code}.to({tl_type(d)})"
        return code if typing.stored(arg) == d else f"({code}).to({tl_type(d)})"

    def operation(node: Expr, args: list[str]) -> str:
        d = typing.compute.get(node.key, T)
        ct = tl_type(d)
        if node.op == "where":
            args = [args[0], *(operand(node, a, c, d) for a, c in zip(node.args[1:], args[1:]))]
        else:
            args = [operand(node, a, c, d) for a, c in zip(node.args, args)]
        if (
            d == T
            and node.op in _ARITHMETIC
            and (
                all(arg.is_const for arg in node.args)
                or (node.op == "pow" and node.args[0].is_const)
            )
        ):
            # A literal is float32 to Triton: f(literal) would be computed (and folded)
            # in float32 inside a float64 kernel; a block of CT is not.
            args = [f"tl.full([BLOCK], {args[0]}, CT)", *args[1:]]
        if node.op == "where":
            if d == T and node.args[1].is_const and node.args[2].is_const:  # else float32
                args = [args[0], f"tl.full([BLOCK], {args[1]}, CT)", args[2]]
            return f"tl.where({args[0]}, {args[1]}, {args[2]})"
        if node.op == "pow":
            weak = node.key in typing.weak  # Python's a ** b: pow, no special exponents
            if weak and node.args[1].is_const and node.args[1].value == 2.0:
                return f"({args[0]} * {args[0]})"  # pow(a, 2) is a * a correctly rounded
            if weak:  # (a literal as a tensor: libdevice takes no Python number)
                base, ex = (f"tl.full([], {c}, {ct})" if e.is_const and d == T else c
                            for e, c in zip(node.args, args))  # fmt: skip
                return f"libdevice.pow({base}, {ex})" if exact else f"_pow({base}, {ex})"
            widen = " + zero_" if d == T else ""
            return _pow(args[0], node.args[1], args[1], exact,
                        lambda a, b, c=False: div(a, b, c, d), one(d), widen)  # fmt: skip
        if node.op == "div" and node.name == "rdiv" and not typing.is_weak(node):
            # number / tensor: PyTorch's Tensor.__rtruediv__, reciprocal times the number.
            return f"({div(one(d), args[1], True, d)} * {args[0]})"
        if node.op == "div":
            dividend, divisor = node.args
            if exact and typing.is_weak(divisor) and not typing.is_weak(dividend):
                # CUDA: a tensor divided by a CPU scalar is a * (1 / b) (see above).
                if divisor.is_const:
                    inv = _literal(_reciprocal(divisor.value, d))
                    inv = inv if d == T else f"tl.full([], {inv}, {ct})"
                else:
                    inv = div(one(d), args[1], True, d)
                return f"({args[0]} * {inv})"
            return div(args[0], args[1], dividend.is_const, d)
        if node.op in ("maximum", "minimum") and node.args[0].is_const:
            # A constant first operand is not NaN (no NaN test on a Python literal): a NaN
            # second one is chosen anyway.
            cmp = ">" if node.op == "maximum" else "<"
            return f"tl.where({args[0]} {cmp} {args[1]}, {args[0]}, {args[1]})"
        if node.op == "sigmoid" and exact:
            return div(one(d), f"(1.0 + libdevice.exp(-{args[0]}))", True, d)
        if node.op in unary:
            return unary[node.op].format(a=args[0], CT=ct)
        return _BINARY[node.op].format(a=args[0], b=args[1])

    def result(node: Expr, code: str) -> str:
        if node.op in ("const", "var") or node.op in BOOLEAN or typing.stored(node) == T:
            return code
        return f"({code}).to(CT)"

    lines = emit(
        targets, names, _literal, operation, "{name} = {code}", "{name} = {code}", result, prefix
    )
    # A target computed from scalars alone must still be a block tensor of CT (a
    # loop-carried state keeps its type).
    memo: dict[int, bool] = {}
    lines += [
        f"{dst} = tl.where(mask, {dst}, zero_)"
        for dst, e in targets
        if not _per_neuron(e, block_vars, memo)
    ]
    return lines


def generate_triton(spec: KernelSpec, exact: bool = False) -> str:
    """Python source defining ``spikeflow_forward`` and ``spikeflow_backward`` (Triton).

    ``exact``: print the GPU flavour (libdevice, IEEE division; see the module
    docstring); else the interpreter's (core ``tl`` math only).

    User-named states and parameters appear as ``<family>__<name>`` (see
    :func:`spikeflow.kernels.printing.user_name`), pointers as ``p<buffer>``; the
    generator's own identifiers never contain a double underscore.
    """
    S = user_name
    g = spec.graph
    states = g.decl.state_names
    params = g.decl.param_names
    ct = "tl.float32" if spec.ctype == "float" else "tl.float64"
    names = {"x": "x_", "theta": "theta_", "grad_spike": "gspk_"}
    names.update({f"state_{s}": S("st", s) for s in states})
    names.update({f"grad_state_{s}": S("gst", s) for s in states})
    names.update({f"param_{p}": S("p", p) for p in params})
    # The variables loaded per neuron ([BLOCK] tensors); the others are scalars.
    block_vars = frozenset(
        ["x", "grad_spike", *(f"state_{s}" for s in states), *(f"grad_state_{s}" for s in states)]
        + [f"param_{p}" for i, p in enumerate(params) if spec.array_params[i]]
        + (["theta"] if spec.theta_is_array else [])
    )

    # Arguments and loads shared by both kernels.
    shared_args: list[str] = []
    loads = [
        "pid = tl.program_id(0)",
        "offs = pid * BLOCK + tl.arange(0, BLOCK)",
        "mask = offs < N",
        "zero_ = tl.zeros([BLOCK], dtype=CT)",
    ]
    # A value wider than CT that a sub-expression computes with (see Typing.raw) is
    # also read unrounded: SCAL is float64, and so is a float64 0-dim tensor's buffer.
    typing = spec.typing
    raw: dict[str, str] = {}
    k = 0
    tensors = spec.operands or (False,) * (len(params) + 1)
    for i, p in enumerate(params):
        if spec.array_params[i]:
            shared_args.append(S("P", p))
            load = f"tl.load({S('P', p)} + offs, mask=mask, other=0.0)"
        elif tensors[i]:  # a 0-dim tensor: a 1-element buffer on the device
            shared_args.append(S("P", p))
            load = f"tl.load({S('P', p)})"
        else:
            load = f"tl.load(SCAL + {k})"
            k += 1
        loads.append(f"{S('p', p)} = {load}.to(CT)")
        if f"param_{p}" in typing.raw:
            raw[f"param_{p}"] = S("d", p)
            loads.append(f"{S('d', p)} = {load}")
    if spec.theta_is_array:
        shared_args.append("THETA")
        load = "tl.load(THETA + offs, mask=mask, other=0.0)"
    elif tensors[-1]:
        shared_args.append("THETA")
        load = "tl.load(THETA)"
    else:
        load = f"tl.load(SCAL + {k})"
        k += 1
    loads.append(f"theta_ = {load}.to(CT)")
    if "theta" in typing.raw:
        raw["theta"] = "thetad_"
        loads.append(f"thetad_ = {load}")
    for name in g.surrogate_scalars:  # the surrogate's run-time parameters
        names[f"sg_{name}"] = S("sg", name)
        loads.append(f"{S('sg', name)} = tl.load(SCAL + {k}).to(CT)")
        k += 1
    shared_args.append("X")

    # ---------------- forward ----------------
    # An initial state that is one number (spec.uniform_states) is read from SCAL,
    # after the surrogate's parameters; the others from [N] buffers.
    pre = []
    buffered = []
    for i, s in enumerate(states):
        if spec.uniform(i):
            pre.append(f"{S('st', s)} = zero_ + tl.load(SCAL + {k}).to(CT)")
            k += 1
        else:
            buffered.append(s)
            pre.append(f"{S('st', s)} = tl.load({S('S0', s)} + offs, mask=mask, other=0.0).to(CT)")
    f_args = [*shared_args, *(S("S0", s) for s in buffered), "SPK", *(S("OUT", s) for s in states)]
    if spec.save_states:
        f_args += [S("SAVE", s) for s in states]
    if spec.record_v:
        f_args.append("VREC")
    streams = ["X", "SPK"] + ([S("SAVE", s) for s in states] if spec.save_states else [])
    streams += ["VREC"] if spec.record_v else []
    pre += [f"p{b} = {b} + offs" for b in streams]
    body = ["x_ = tl.load(pX, mask=mask, other=0.0).to(CT)"]
    if spec.save_states:
        body += [
            f"tl.store(p{S('SAVE', s)}, {S('st', s)}.to({S('SAVE', s)}.dtype.element_ty), "
            "mask=mask)"
            for s in states
        ]
    targets = [("spk_", g.spike), *((S("new", s), e) for s, e in zip(states, g.new_state))]
    body += _emit(targets, names, exact, spec.ctype, block_vars, typing, raw)
    body.append("tl.store(pSPK, spk_.to(SPK.dtype.element_ty), mask=mask)")
    if spec.record_v:
        body.append(f"tl.store(pVREC, {S('new', 'v')}.to(VREC.dtype.element_ty), mask=mask)")
    body += [f"{S('st', s)} = {S('new', s)}" for s in states]
    body += [f"p{b} += N" for b in streams]
    post = [f"tl.store({S('OUT', s)} + offs, {S('st', s)}.to({S('OUT', s)}.dtype.element_ty), "
            "mask=mask)" for s in states]  # fmt: skip
    forward = f"""
@triton.jit
def spikeflow_forward({", ".join(f_args)}, SCAL, T, N, BLOCK: tl.constexpr):
    CT: tl.constexpr = {ct}
{indent(loads + pre, 1)}
    for _t in range(T):
{indent(body, 2)}
{indent(post, 1)}
"""
    # ---------------- backward ----------------
    grad_p = [p for i, p in enumerate(params) if spec.grad_params[i]]
    b_args = [*shared_args, *(S("SAVE", s) for s in states), "GSPK",
              *(S("GOUT", s) for s in states)]  # fmt: skip
    b_args += ["GVREC"] if spec.record_v else []
    b_args += ["GX", *(S("GS0", s) for s in states), *(S("GP", p) for p in grad_p)]
    if spec.grad_theta:
        b_args.append("GTHETA")
    streams = ["X", "GX", *(S("SAVE", s) for s in states)]
    accs = [S("acc", p) for p in grad_p] + (["acc_theta"] if spec.grad_theta else [])
    outs = [S("GP", p) for p in grad_p] + (["GTHETA"] if spec.grad_theta else [])
    # An absent final-state gradient is passed as None (a compile-time constant): zero,
    # without a zero-filled buffer.
    pre = [
        line
        for s in states
        for line in (
            f"if {S('GOUT', s)} is not None:",
            f"    {S('gst', s)} = tl.load({S('GOUT', s)} + offs, mask=mask, other=0.0).to(CT)",
            "else:",
            f"    {S('gst', s)} = zero_",
        )
    ]
    pre += [f"{a} = tl.zeros([BLOCK], dtype=CT)" for a in accs]
    pre += [f"p{b} = {b} + LAST + offs" for b in streams]
    # GELEM (GVELEM) 0: one value for every neuron, read from a 1-element buffer.
    pre.append("pGSPK = GSPK + GLAST + offs * GELEM")
    if spec.record_v:
        pre.append("pGVREC = GVREC + GVLAST + offs * GVELEM")

    def step_body(grads: tuple[Expr, ...], prefix: str) -> list[str]:
        """One backward step computing ``grads`` (:attr:`StepGraph.gradients`' layout),
        its temporaries named ``<prefix><k>`` (the last step's, before the loop, must
        not share the loop's names: Triton would take them for loop-carried values)."""
        body = [
            "x_ = tl.load(pX, mask=mask, other=0.0).to(CT)",
            "gspk_ = tl.load(pGSPK, mask=mask, other=0.0).to(CT)",
        ]
        body += [f"{S('st', s)} = tl.load(p{S('SAVE', s)}, mask=mask, other=0.0).to(CT)"
                 for s in states]  # fmt: skip
        if spec.record_v:  # the recorded membrane's gradient joins the carried one
            gv = S("gst", "v")
            body.append(f"{gv} = {gv} + tl.load(pGVREC, mask=mask, other=0.0).to(CT)")
        targets = gradient_targets(spec, grads, "gx_")
        body += _emit(targets, names, exact, spec.ctype, block_vars, typing, raw, prefix)
        body.append("tl.store(pGX, gx_.to(GX.dtype.element_ty), mask=mask)")
        body += [f"{S('gst', s)} = {S('ngs', s)}" for s in states]
        body += [f"{S('acc', p)} += {S('dp', p)}" for p in grad_p]
        if spec.grad_theta:
            body.append("acc_theta += dtheta_")
        body += [f"p{b} -= N" for b in streams]
        body.append("pGSPK -= GSTEP")
        if spec.record_v:
            body.append("pGVREC -= GVSTEP")
        return body

    body = step_body(g.gradients, "tmp")
    # The last step, before the loop over the others, counts each output only where its
    # gradient is not zero (see StepGraph.last_step): an absent final-state gradient
    # (None, read as 0) then contributes nothing, not 0 * inf.
    pre += step_body(g.last_step, "last")
    post = [f"tl.store({S('GS0', s)} + offs, {S('gst', s)}.to({S('GS0', s)}.dtype.element_ty), "
            "mask=mask)" for s in states]  # fmt: skip
    post += [f"tl.store({o} + offs, {a}.to({o}.dtype.element_ty), mask=mask)"
             for o, a in zip(outs, accs)]  # fmt: skip
    steps = ["LAST", "GSTEP", "GLAST", *(["GVSTEP", "GVLAST"] if spec.record_v else [])]
    elems = ["GELEM: tl.constexpr", *(["GVELEM: tl.constexpr"] if spec.record_v else [])]
    b_sig = ", ".join([*b_args, "SCAL", "T", "N", *steps, *elems, "BLOCK: tl.constexpr"])
    backward = f"""
@triton.jit
def spikeflow_backward({b_sig}):
    CT: tl.constexpr = {ct}
{indent(loads + pre, 1)}
    for _t in range(1, T):
{indent(body, 2)}
{indent(post, 1)}
"""
    header = "import triton\nimport triton.language as tl\n"
    if exact:
        header += "from triton.language.extra import libdevice\n"
    else:
        header += _INTERPRETER_HELPERS
    return header + _ATAN + forward + backward


def _literal(v: float) -> str:
    """A constant as Triton source: the literal 1e999 parses to infinity."""
    if math.isnan(v):
        return "(1e999 * 0.0)"
    if math.isinf(v):
        return "1e999" if v > 0 else "(-1e999)"
    return repr(v)
