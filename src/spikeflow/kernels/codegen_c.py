"""Print a neuron step graph as a fused C kernel (loop over T inside, OpenMP over neurons).

Layout: every sequence is ``[T, N]`` contiguous, every state/parameter array ``[N]``.
Neurons are processed in blocks (at most ``BLOCK`` wide) whose state stays in a
block-local array (in a per-thread buffer on the heap), so the inner loop over the block
vectorises (``omp simd``) and each step touches the input and output once. Floating-point
contraction is off so the forward reproduces the reference loop's float32 arithmetic
exactly.
"""

from __future__ import annotations

import math

import torch

from spikeflow.kernels.expr import Expr, topological
from spikeflow.kernels.printing import (
    POW_SPECIAL,
    Typing,
    emit,
    gradient_targets,
    indent,
    user_name,
)
from spikeflow.kernels.spec import KernelSpec

__all__ = ["BLOCK", "CHECKPOINT", "SEGMENT_BYTES", "backward_width", "generate_c"]

#: The widest block of neurons. A block walks T rows of every [T, N] sequence, a short
#: run of each row per step: runs of 4 KiB (1024 float32 values) keep the hardware
#: prefetchers streaming, where 1 KiB runs (256) left the backward latency-bound at
#: T >= 64 (LIF T=64, N=1e5 backward 6.8 -> 4.2 ms on 2 cores). The drivers cut N into
#: equal blocks, as many for each thread, so narrower ones are used where N is small.
BLOCK = 1024
#: The forward saves the state every CHECKPOINT steps; the backward replays each
#: segment from its checkpoint into a block-local buffer (block width x CHECKPOINT
#: values per state) and walks it backwards. Global memory traffic for backward is
#: then the input, the spike gradient and the input gradient only. The block-local
#: arrays live in one buffer per thread on the heap, allocated once per call (a neuron
#: with many states overflowed a thread's stack with them).
CHECKPOINT = 16
#: The backward's blocks are narrowed so that a segment's replayed states stay within
#: this many bytes (cache-resident): a neuron with more states gets narrower blocks.
SEGMENT_BYTES = 64 * 1024

# The backward unit asks glibc's <math.h> for its vector-variant declarations (libmvec),
# which it gives only under __FAST_MATH__, without -ffast-math itself: its
# finite-math-only turned an exp overflowing to inf (a membrane far below threshold)
# into NaN gradients.
_HEADER = """#include <stdint.h>
#include <stdlib.h>
#if defined(SPIKEFLOW_BACKWARD_ONLY) && defined(__GLIBC__) && !defined(__FAST_MATH__)
#define __FAST_MATH__ 1
#endif
#include <math.h>

// The width of the blocks N is cut into: equal blocks, as many for each thread, each
// at most cap wide and a multiple of 16 (whole cache lines).
static int64_t block_width(int64_t N, int threads, int64_t cap) {
    const int64_t per = (N + threads - 1) / threads;
    if (per <= 0) return cap;
    const int64_t blocks = (per + cap - 1) / cap;
    const int64_t w = ((per + blocks - 1) / blocks + 15) / 16 * 16;
    return w < cap ? w : cap;
}
"""

_UNARY_C = {
    "exp": "exp{f}({a})",
    "log": "log{f}({a})",
    "log1p": "log1p{f}({a})",
    "expm1": "expm1{f}({a})",
    "tanh": "tanh{f}({a})",
    "atan": "atan{f}({a})",
    "erf": "erf{f}({a})",
    "erfc": "erfc{f}({a})",
    "abs": "fabs{f}({a})",
    "floor": "floor{f}({a})",
    "sin": "sin{f}({a})",
    "cos": "cos{f}({a})",
    "sqrt": "sqrt{f}({a})",
    "rsqrt": "(({T})1 / sqrt{f}({a}))",
    "sigmoid": "(({T})1 / (({T})1 + exp{f}(-({a}))))",
    "neg": "(-({a}))",
    "sign": "(({T})(({a}) > 0) - ({T})(({a}) < 0))",
    # NaN propagates through relu, maximum and minimum, as in PyTorch.
    "relu": "(({a}) < 0 ? ({T})0 : ({a}))",
    "tofloat": "(({T})({a}))",
    "lnot": "(({a}) == 0)",
    "nograd": "({a})",
    "spike": "(({T})(({a}) >= 0))",
    "spike_strict": "(({T})(({a}) > 0))",
}
_BINARY_C = {
    "add": "({a} + {b})",
    "sub": "({a} - {b})",
    "mul": "({a} * {b})",
    "div": "({a} / {b})",
    "pow": "pow{f}({a}, {b})",
    "maximum": "((({a}) > ({b}) || ({a}) != ({a})) ? ({a}) : ({b}))",
    "minimum": "((({a}) < ({b}) || ({a}) != ({a})) ? ({a}) : ({b}))",
    "lt": "({a} < {b})",
    "le": "({a} <= {b})",
    "gt": "({a} > {b})",
    "ge": "({a} >= {b})",
    "eq": "({a} == {b})",
    "ne": "({a} != {b})",
    # Comparisons are held in T temporaries (0 or 1): the logical operations test them.
    "land": "((({a}) != 0) & (({b}) != 0))",
    "lor": "((({a}) != 0) | (({b}) != 0))",
}


#: libm calls; in the backward unit these vectorise through glibc's libmvec.
_LIBM = ("exp", "log", "log1p", "expm1", "tanh", "atan", "erf", "erfc", "sin", "cos", "pow")
_LIBM_OPS = {*_LIBM, "sigmoid"}


#: C for each exponent PyTorch's pow kernels special-case (see POW_SPECIAL).
_POW_C = {
    "square": "({a} * {a})",
    "cube": "({a} * {a} * {a})",
    "reciprocal": "(({T})1 / {a})",
    "inverse_square": "(({T})1 / ({a} * {a}))",
    "sqrt": "sqrt{f}({a})",
    "rsqrt": "(({T})1 / sqrt{f}({a}))",
}


def _pow(a: str, exponent: Expr, b: str, f: str, t: str = "T") -> str:
    """``a ** exponent`` computed as PyTorch's pow kernels compute it (see POW_SPECIAL)."""
    special = POW_SPECIAL.get(exponent.value) if exponent.is_const else None
    return _POW_C.get(special, "pow{f}({a}, {b})").format(a=a, b=b, f=f, T=t)


#: C types of the dtypes a scalar-only sub-expression computes in (see Typing).
_C_TYPES = {torch.float32: "float", torch.float64: "double"}


def _emit(
    targets: list[tuple[str, Expr]],
    names: dict[str, str],
    f: str,
    exact: frozenset[tuple] = frozenset(),
    typing: Typing | None = None,
    raw: dict[str, str] | None = None,
) -> list[str]:
    """C statements computing every target (common subexpressions computed once).

    Nodes whose key is in ``exact`` (the forward's values, recomputed by the backward)
    call libm through the ``sfx_`` wrappers: scalar, as the forward calls it, so the
    backward sees the forward's states and spikes bit for bit.

    ``typing``: the dtypes of the scalar-only sub-expressions, each computed in its own
    (``float``/``double``, from operands cast to it) and cast to ``T`` where a per-neuron
    value uses it; ``raw``: the variables that hold the double value of a float64
    parameter in a float kernel (whose ``T`` copy is rounded).
    """
    typing = typing or Typing(torch.float32 if f else torch.float64)
    raw = raw or {}
    T = typing.T

    def tname(d: torch.dtype) -> str:
        return "T" if d == T else _C_TYPES[d]

    def cast(code: str, frm: torch.dtype, to: torch.dtype) -> str:
        return code if frm == to else f"(({tname(to)})({code}))"

    def operand(arg: Expr, code: str, d: torch.dtype) -> str:
        """``arg`` (printed ``code``) as an operand of an operation computing in ``d``."""
        if arg.op == "const":
            return _literal(arg.value, tname(d))
        if arg.op == "var":
            if d == T:
                return code
            if arg.name in raw and typing.leaves.get(arg.name) == d:
                return raw[arg.name]
            return f"(({tname(d)}){code})"
        return cast(code, typing.stored(arg), d)

    def operation(node: Expr, args: list[str]) -> str:
        d = typing.compute.get(node.key, T)
        t, fd = tname(d), ("f" if d == torch.float32 else "")
        if node.op == "where":
            branches = [operand(a, c, d) for a, c in zip(node.args[1:], args[1:])]
            return f"({args[0]} ? {branches[0]} : {branches[1]})"
        args = [operand(a, c, d) for a, c in zip(node.args, args)]
        if node.op == "div" and node.name == "rdiv" and node.key not in typing.weak:
            # number / tensor: PyTorch's Tensor.__rtruediv__, reciprocal times the number.
            code = f"(({_literal(1.0, t)} / {args[1]}) * {args[0]})"
        elif node.op == "pow" and node.key in typing.weak:  # Python's a ** b: libm's pow
            code = f"pow({args[0]}, {args[1]})"
        elif node.op == "pow":
            code = _pow(args[0], node.args[1], args[1], fd, t)
        elif node.op in _UNARY_C:
            code = _UNARY_C[node.op].format(a=args[0], f=fd, T=t)
        else:
            code = _BINARY_C[node.op].format(a=args[0], b=args[1], f=fd, T=t)
        if node.op in _LIBM_OPS and node.key in exact:
            fn = "exp" if node.op == "sigmoid" else node.op
            code = code.replace(f"{fn}{fd}(", f"sfx_{fn}{fd}(")
        return code

    def define(node: Expr, name: str, code: str) -> str:
        return f"const {tname(typing.stored(node))} {name} = {code};"

    def result(node: Expr, code: str) -> str:
        return code if node.op in ("const", "var") else cast(code, typing.stored(node), T)

    return emit(targets, names, _literal, operation, define, "{name} = {code};", result)


def _literal(v: float, t: str = "T") -> str:
    if math.isnan(v):
        return f"(({t})NAN)"
    if math.isinf(v):
        return f"(({t})INFINITY)" if v > 0 else f"(-({t})INFINITY)"
    return f"(({t}){v!r})"


def _exact_wrappers(f: str, t: str = "T") -> list[str]:
    """Scalar libm behind a call the vectoriser cannot look through (see :func:`_emit`)."""
    lines = []
    for fn in _LIBM:
        args, call = (
            (f"{t} a, {t} b", f"pow{f}(a, b)") if fn == "pow" else (f"{t} a", f"{fn}{f}(a)")
        )
        lines.append(
            f"__attribute__((noinline, unused)) static {t} sfx_{fn}{f}({args}) {{ return {call}; }}"
        )
    return lines


def _driver(kind: str, work: int, width: int, extra_params: str = "", extra_args: str = "") -> str:
    """The exported entry: the blocks of neurons on OpenMP threads, or in a plain loop
    on one thread, which never enters the OpenMP runtime (GNU OpenMP's thread pool does
    not survive a fork(); a forked child runs on one thread, see cpu.kernel_threads).

    Blocks are at most ``width`` neurons wide (see ``block_width`` in ``_HEADER``). Each
    thread allocates the ``work`` values of its blocks' local arrays once, on the heap
    (64-byte aligned). Returns 0, or 1 when that allocation failed."""
    call = f"{kind}_block(o_n, w, T_, N, ptrs, scalars, work{extra_args});"
    params = f"int64_t T_, int64_t N, int threads, void** ptrs, const double* scalars{extra_params}"
    return f"""
int spikeflow_{kind}({params}) {{
    const size_t bytes = (size_t){work} * sizeof(T);
    const int64_t w = block_width(N, threads, {width});
    if (threads > 1) {{
        int failed = 0;
        #pragma omp parallel num_threads(threads) reduction(|: failed)
        {{
            T* work = (T*)aligned_alloc(64, bytes);
            failed |= (work == NULL);
            #pragma omp for schedule(static)
            for (int64_t o_n = 0; o_n < N; o_n += w) {{
                if (work) {call}
            }}
            free(work);
        }}
        return failed;
    }}
    T* work = (T*)aligned_alloc(64, bytes);
    if (work == NULL) return 1;
    for (int64_t o_n = 0; o_n < N; o_n += w) {call}
    free(work);
    return 0;
}}"""


_BWD_STEP_PARAMS = ", int64_t gspk_step, int64_t gvrec_step"


def backward_width(n_states: int, checkpoint: int, itemsize: int) -> int:
    """The backward's widest block: ``BLOCK``, narrowed (to a multiple of 16, at least
    16) so that a segment's replayed states fit in ``SEGMENT_BYTES``."""
    fits = SEGMENT_BYTES // (max(1, n_states) * checkpoint * itemsize) // 16 * 16
    return max(16, min(BLOCK, fits))


def _recorded(spec: KernelSpec, state: str) -> bool:
    """Whether ``state`` is the membrane recorded every step (``record_v``)."""
    return spec.record_v and state == "v"


def generate_c(spec: KernelSpec) -> str:
    """C source with ``spikeflow_forward`` and ``spikeflow_backward``.

    Both take ``(int64 T, int64 N, int threads, void** ptrs, const double* scalars)``
    and return 0 (1: the per-thread work buffer could not be allocated); the pointer
    and scalar order is documented in :mod:`spikeflow.kernels.cpu`. The
    backward also takes ``int64 gspk_step``: the elements between two steps of the
    spike gradient (``N``, or 0 when every step has the same gradient, as after
    ``spikes.sum()`` or ``spikes.mean(0)``, which is then passed as one ``[N]`` row),
    and ``int64 gvrec_step``, the same for the gradient of the recorded membrane (read
    only by a ``record_v`` kernel).

    User-named states and parameters appear as ``<family>__<name>`` (see
    :func:`spikeflow.kernels.printing.user_name`); the generator's own identifiers
    never contain a double underscore.
    """
    g = spec.graph
    decl = g.decl
    f = "f" if spec.ctype == "float" else ""
    states = decl.state_names
    params = decl.param_names
    n_st = len(states)
    K = spec.checkpoint

    def S(family: str, s: str) -> str:  # a user-named state's or parameter's identifier
        return user_name(family, s)

    # Names visible inside the inner loop.
    names = {"x": "x_"}
    names.update({f"state_{s}": S("st", s) for s in states})
    names.update({f"grad_state_{s}": S("gst", s) for s in states})
    names["grad_spike"] = "gspk_"
    for k, p in enumerate(params):
        names[f"param_{p}"] = f"{S('P', p)}[o_n + i]" if spec.array_params[k] else S("p", p)
    names["theta"] = "THETA[o_n + i]" if spec.theta_is_array else "theta_"

    # Pointer table: shared prefix of both kernels.
    typing = spec.typing
    raw: dict[str, str] = {}  # a float64 scalar's double value, in a float kernel
    prefix: list[str] = []
    ptr = 0
    scal = 0
    for k, p in enumerate(params):
        if spec.array_params[k]:
            prefix.append(f"const T* {S('P', p)} = (const T*)ptrs[{ptr}];")
            ptr += 1
        else:
            prefix.append(f"const T {S('p', p)} = (T)scalars[{scal}];")
            if f"param_{p}" in typing.raw:
                raw[f"param_{p}"] = S("d", p)
                prefix.append(f"const double {S('d', p)} = scalars[{scal}];")
            scal += 1
    if spec.theta_is_array:
        prefix.append(f"const T* THETA = (const T*)ptrs[{ptr}];")
        ptr += 1
    else:
        prefix.append(f"const T theta_ = (T)scalars[{scal}];")
        if "theta" in typing.raw:
            raw["theta"] = "thetad_"
            prefix.append(f"const double thetad_ = scalars[{scal}];")
        scal += 1
    for name in g.surrogate_scalars:  # the surrogate's run-time parameters
        names[f"sg_{name}"] = S("sg", name)
        prefix.append(f"const T {S('sg', name)} = (T)scalars[{scal}];")
        scal += 1
    prefix.append(f"const T* X = (const T*)ptrs[{ptr}];")
    ptr += 1
    base = ptr

    # ---------------- forward ----------------
    # An initial state that is one number (spec.uniform_states) is read from the
    # scalars, after the surrogate's; the others from [N] buffers.
    fwd_ptrs: list[str] = []
    start: dict[str, str] = {}
    q = base
    for k, s in enumerate(states):
        if spec.uniform(k):
            fwd_ptrs.append(f"const T {S('S0', s)} = (T)scalars[{scal}];")
            start[s] = S("S0", s)
            scal += 1
        else:
            fwd_ptrs.append(f"const T* {S('S0', s)} = (const T*)ptrs[{q}];")
            start[s] = f"{S('S0', s)}[o_n + i]"
            q += 1
    fwd_ptrs.append(f"T* SPK = (T*)ptrs[{q}];")
    fwd_ptrs += [f"T* {S('OUT', s)} = (T*)ptrs[{q + 1 + k}];" for k, s in enumerate(states)]
    q += 1 + n_st
    if spec.save_states:
        fwd_ptrs += [f"T* {S('SAVE', s)} = (T*)ptrs[{q + k}];" for k, s in enumerate(states)]
        q += n_st
    if spec.record_v:
        fwd_ptrs.append(f"T* VREC = (T*)ptrs[{q}];")
    targets = [("SPK[o + i]", g.spike)]
    targets += [(S("new", s), e) for s, e in zip(states, g.new_state)]
    body = ["const T x_ = X[o + i];"]
    body += [f"const T {S('st', s)} = {S('ST', s)}[i];" for s in states]
    body += [f"T {S('new', s)};" for s in states]
    body += _emit(targets, names, f, typing=typing, raw=raw)
    body += [f"{S('ST', s)}[i] = {S('new', s)};" for s in states]
    if spec.record_v:
        body.append(f"VREC[o + i] = {S('new', 'v')};")
    save_checkpoint = (
        [f"if (t % {K} == 0) {{", f"    const int64_t c = (t / {K}) * N + o_n;"]
        + [
            f"    for (int64_t i = 0; i < m; ++i) {S('SAVE', s)}[c + i] = {S('ST', s)}[i];"
            for s in states
        ]
        + ["}"]
        if spec.save_states
        else []
    )
    # Block-local arrays, carved out of the thread's work buffer.
    fwd_locals = [f"T* restrict {S('ST', s)} = work + {k * BLOCK};" for k, s in enumerate(states)]
    fwd_work = n_st * BLOCK
    forward = f"""
#ifndef SPIKEFLOW_BACKWARD_ONLY
// Not inlined into the drivers: inlined (twice, the threaded and the serial loop) the
// backward ran ~5% slower (LIF, T=64, N=1e5), as the arrays became pointers to the heap.
__attribute__((noinline)) static void forward_block(int64_t o_n, int64_t w, int64_t T_,
                                                    int64_t N, void** ptrs,
                                                    const double* scalars,
                                                    T* restrict work) {{
{indent(prefix + fwd_ptrs, 1)}
    {{
        const int64_t m = (N - o_n < w) ? (N - o_n) : w;
{indent(fwd_locals, 2)}
        for (int64_t i = 0; i < m; ++i) {{
{indent([f"{S('ST', s)}[i] = {start[s]};" for s in states], 3)}
        }}
        for (int64_t t = 0; t < T_; ++t) {{
            const int64_t o = t * N + o_n;
{indent(save_checkpoint, 3)}
            #pragma omp simd
            for (int64_t i = 0; i < m; ++i) {{
{indent(body, 4)}
            }}
        }}
        for (int64_t i = 0; i < m; ++i) {{
{indent([f"{S('OUT', s)}[o_n + i] = {S('ST', s)}[i];" for s in states], 3)}
        }}
    }}
}}
{_driver("forward", fwd_work, BLOCK)}
#endif
"""
    # ---------------- backward ----------------
    bwd_ptrs = [
        f"const T* {S('SAVE', s)} = (const T*)ptrs[{base + k}];" for k, s in enumerate(states)
    ]
    q = base + n_st
    bwd_ptrs.append(f"const T* GSPK = (const T*)ptrs[{q}];")
    bwd_ptrs += [
        f"const T* {S('GOUT', s)} = (const T*)ptrs[{q + 1 + k}];" for k, s in enumerate(states)
    ]
    q += 1 + n_st
    if spec.record_v:
        bwd_ptrs.append(f"const T* GVREC = (const T*)ptrs[{q}];")
        q += 1
    bwd_ptrs.append(f"T* GX = (T*)ptrs[{q}];")
    bwd_ptrs += [f"T* {S('GS0', s)} = (T*)ptrs[{q + 1 + k}];" for k, s in enumerate(states)]
    q += 1 + n_st
    grad_p = [p for k, p in enumerate(params) if spec.grad_params[k]]
    bwd_ptrs += [f"T* {S('GP', p)} = (T*)ptrs[{q + k}];" for k, p in enumerate(grad_p)]
    q += len(grad_p)
    if spec.grad_theta:
        bwd_ptrs.append(f"T* GTHETA = (T*)ptrs[{q}];")
    replay = ["const T x_ = X[o + i];"]
    replay += [f"const T {S('st', s)} = {S('ST', s)}[i];" for s in states]
    replay += [f"{S('LOC', s)}[j][i] = {S('st', s)};" for s in states]
    replay += [f"T {S('new', s)};" for s in states]
    fwd = frozenset(n.key for n in topological([g.spike, *g.new_state]))
    replay += _emit([(S("new", s), e) for s, e in zip(states, g.new_state)], names, f, fwd,
                    typing, raw)  # fmt: skip
    replay += [f"{S('ST', s)}[i] = {S('new', s)};" for s in states]

    def step_body(grads: tuple[Expr, ...]) -> list[str]:
        """One backward step (the body of the loop over a block's neurons) computing
        ``grads`` (:attr:`StepGraph.gradients`' layout)."""
        body = ["const T x_ = X[o + i];", "const T gspk_ = GSPK[og + i];"]
        body += [f"const T {S('st', s)} = {S('LOC', s)}[j][i];" for s in states]
        body += [f"const T {S('gst', s)} = {S('GST', s)}[i];" for s in states
                 if not _recorded(spec, s)]  # fmt: skip
        if spec.record_v:  # the recorded membrane's gradient joins the carried one
            body.append(
                f"const T {S('gst', 'v')} = {S('GST', 'v')}[i]"
                " + GVREC[(t0 + j) * gvrec_step + o_n + i];"
            )
        body += [f"T {S('ngs', s)};" for s in states]
        body += [f"T {S('dp', p)};" for p in grad_p]
        if spec.grad_theta:
            body.append("T dtheta_;")
        body += _emit(gradient_targets(spec, grads, "GX[o + i]"), names, f, fwd, typing, raw)
        body += [f"{S('GST', s)}[i] = {S('ngs', s)};" for s in states]
        body += [f"{S('ACC', p)}[i] += {S('dp', p)};" for p in grad_p]
        if spec.grad_theta:
            body.append("ACC_THETA[i] += dtheta_;")
        return body

    body = step_body(g.gradients)
    # The last step counts each output only where its gradient is not zero (see
    # StepGraph.last_step): an absent final-state gradient (NULL, read as 0) then
    # contributes nothing, not 0 * inf.
    last_body = step_body(g.last_step)
    accs = [S("ACC", p) for p in grad_p] + (["ACC_THETA"] if spec.grad_theta else [])
    outs = [S("GP", p) for p in grad_p] + (["GTHETA"] if spec.grad_theta else [])
    # Block-local arrays, carved out of the thread's work buffer: per state the carried
    # gradient, the replayed state and the segment's states; per accumulated gradient one.
    W = backward_width(n_st, K, 4 if spec.ctype == "float" else 8)
    locals_: list[str] = []
    off = 0
    for s in states:
        locals_.append(f"T* restrict {S('GST', s)} = work + {off};")
        locals_.append(f"T* restrict {S('ST', s)} = work + {off + W};")
        locals_.append(f"T (*restrict {S('LOC', s)})[{W}] = (T (*)[{W}])(work + {off + 2 * W});")
        off += (2 + K) * W
    for a in accs:
        locals_.append(f"T* restrict {a} = work + {off};")
        off += W
    bwd_work = off
    # A final state whose gradient is absent comes as a NULL pointer: it starts at 0.
    init_grads = [
        line
        for s in states
        for line in (
            f"if ({S('GOUT', s)}) {{ for (int64_t i = 0; i < m; ++i) "
            f"{S('GST', s)}[i] = {S('GOUT', s)}[o_n + i]; }}",
            f"else {{ for (int64_t i = 0; i < m; ++i) {S('GST', s)}[i] = 0; }}",
        )
    ]
    init_grads += [f"for (int64_t i = 0; i < m; ++i) {a}[i] = 0;" for a in accs]
    store_grads = [f"{S('GS0', s)}[o_n + i] = {S('GST', s)}[i];" for s in states]
    store_grads += [f"{o}[o_n + i] = {a}[i];" for o, a in zip(outs, accs)]
    # Sub-expressions computed in the other floating type call libm in that type too.
    wrappers = _exact_wrappers(f)
    for d in sorted({d for d in typing.compute.values() if d != typing.T}, key=str):
        wrappers += _exact_wrappers("f" if d == torch.float32 else "", _C_TYPES[d])
    backward = f"""
#ifdef SPIKEFLOW_BACKWARD_ONLY
{chr(10).join(wrappers)}

__attribute__((noinline)) static void backward_block(int64_t o_n, int64_t w, int64_t T_,
                                                     int64_t N, void** ptrs,
                                                     const double* scalars,
                                                     T* restrict work, int64_t gspk_step,
                                                     int64_t gvrec_step) {{
{indent(prefix + bwd_ptrs, 1)}
    {{
        const int64_t m = (N - o_n < w) ? (N - o_n) : w;
{indent(locals_, 2)}
{indent(init_grads, 2)}
        for (int64_t seg = (T_ - 1) / {K}; seg >= 0; --seg) {{
            const int64_t t0 = seg * {K};
            const int64_t len = (T_ - t0 < {K}) ? (T_ - t0) : {K};
            for (int64_t i = 0; i < m; ++i) {{
{indent([f"{S('ST', s)}[i] = {S('SAVE', s)}[seg * N + o_n + i];" for s in states], 4)}
            }}
            for (int64_t j = 0; j < len; ++j) {{
                const int64_t o = (t0 + j) * N + o_n;
                #pragma omp simd
                for (int64_t i = 0; i < m; ++i) {{
{indent(replay, 5)}
                }}
            }}
            int64_t top = len - 1;
            if (t0 + top == T_ - 1) {{
                const int64_t j = top--;
                const int64_t o = (t0 + j) * N + o_n;
                const int64_t og = (t0 + j) * gspk_step + o_n;
                #pragma omp simd
                for (int64_t i = 0; i < m; ++i) {{
{indent(last_body, 5)}
                }}
            }}
            for (int64_t j = top; j >= 0; --j) {{
                const int64_t o = (t0 + j) * N + o_n;
                const int64_t og = (t0 + j) * gspk_step + o_n;
                #pragma omp simd
                for (int64_t i = 0; i < m; ++i) {{
{indent(body, 5)}
                }}
            }}
        }}
        for (int64_t i = 0; i < m; ++i) {{
{indent(store_grads, 3)}
        }}
    }}
}}
{_driver("backward", bwd_work, W, _BWD_STEP_PARAMS, ", gspk_step, gvrec_step")}
#endif
"""
    header = f"{_HEADER}typedef {spec.ctype} T;\n"
    return header + forward + backward
