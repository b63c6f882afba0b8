"""Print a neuron step graph as a fused C kernel (loop over T inside, OpenMP over neurons).

Layout: every sequence is ``[T, N]`` contiguous, every state/parameter array ``[N]``.
Neurons are processed in blocks of ``BLOCK`` whose state stays in a local array, so
the inner loop over the block vectorises (``omp simd``) and each step touches the
input and output once. Floating-point contraction is off so the forward reproduces the
reference loop's float32 arithmetic exactly.
"""

from __future__ import annotations

import math

from spikeflow.kernels.expr import Expr, topological
from spikeflow.kernels.printing import emit, indent
from spikeflow.kernels.spec import KernelSpec

__all__ = ["BLOCK", "CHECKPOINT", "generate_c"]

BLOCK = 256
#: The forward saves the state every CHECKPOINT steps; the backward replays each
#: segment from its checkpoint into a block-local buffer (BLOCK x CHECKPOINT values per
#: state, cache-resident) and walks it backwards. Global memory traffic for backward
#: is then the input, the spike gradient and the input gradient only.
CHECKPOINT = 32

# The backward unit asks glibc's <math.h> for its vector-variant declarations (libmvec),
# which it gives only under __FAST_MATH__, without -ffast-math itself: its
# finite-math-only turned an exp overflowing to inf (a membrane far below threshold)
# into NaN gradients.
_HEADER = """#include <stdint.h>
#if defined(SPIKEFLOW_BACKWARD_ONLY) && defined(__GLIBC__) && !defined(__FAST_MATH__)
#define __FAST_MATH__ 1
#endif
#include <math.h>
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
    "sin": "sin{f}({a})",
    "cos": "cos{f}({a})",
    "sqrt": "sqrt{f}({a})",
    "rsqrt": "((T)1 / sqrt{f}({a}))",
    "sigmoid": "((T)1 / ((T)1 + exp{f}(-({a}))))",
    "neg": "(-({a}))",
    "sign": "((T)(({a}) > 0) - (T)(({a}) < 0))",
    "relu": "(({a}) > 0 ? ({a}) : (T)0)",
    "tofloat": "((T)({a}))",
    "nograd": "({a})",
    "spike": "((T)(({a}) >= 0))",
    "spike_strict": "((T)(({a}) > 0))",
}
_BINARY_C = {
    "add": "({a} + {b})",
    "sub": "({a} - {b})",
    "mul": "({a} * {b})",
    "div": "({a} / {b})",
    "pow": "pow{f}({a}, {b})",
    "maximum": "(({a}) > ({b}) ? ({a}) : ({b}))",
    "minimum": "(({a}) < ({b}) ? ({a}) : ({b}))",
    "lt": "({a} < {b})",
    "le": "({a} <= {b})",
    "gt": "({a} > {b})",
    "ge": "({a} >= {b})",
    "eq": "({a} == {b})",
    "ne": "({a} != {b})",
}


#: libm calls; in the backward unit these vectorise through glibc's libmvec.
_LIBM = ("exp", "log", "log1p", "expm1", "tanh", "atan", "erf", "erfc", "sin", "cos", "pow")
_LIBM_OPS = {*_LIBM, "sigmoid"}


def _emit(
    targets: list[tuple[str, Expr]],
    names: dict[str, str],
    f: str,
    exact: frozenset[tuple] = frozenset(),
) -> list[str]:
    """C statements computing every target (common subexpressions computed once).

    Nodes whose key is in ``exact`` (the forward's values, recomputed by the backward)
    call libm through the ``sfx_`` wrappers: scalar, as the forward calls it, so the
    backward sees the forward's states and spikes bit for bit.
    """

    def operation(node: Expr, args: list[str]) -> str:
        if node.op == "where":
            return f"({args[0]} ? {args[1]} : {args[2]})"
        if node.op in _UNARY_C:
            code = _UNARY_C[node.op].format(a=args[0], f=f)
        else:
            code = _BINARY_C[node.op].format(a=args[0], b=args[1], f=f)
        if node.op in _LIBM_OPS and node.key in exact:
            fn = "exp" if node.op == "sigmoid" else node.op
            code = code.replace(f"{fn}{f}(", f"sfx_{fn}{f}(")
        return code

    return emit(targets, names, _literal, operation, "const T {name} = {code};", "{name} = {code};")


def _literal(v: float) -> str:
    if math.isnan(v):
        return "((T)NAN)"
    if math.isinf(v):
        return "((T)INFINITY)" if v > 0 else "(-(T)INFINITY)"
    return f"((T){v!r})"


def _exact_wrappers(f: str) -> list[str]:
    """Scalar libm behind a call the vectoriser cannot look through (see :func:`_emit`)."""
    lines = []
    for fn in _LIBM:
        args, call = ("T a, T b", f"pow{f}(a, b)") if fn == "pow" else ("T a", f"{fn}{f}(a)")
        lines.append(
            f"__attribute__((noinline, unused)) static T sfx_{fn}{f}({args}) {{ return {call}; }}"
        )
    return lines


def _driver(kind: str, extra_params: str = "", extra_args: str = "") -> str:
    """The exported entry: the blocks of neurons on OpenMP threads, or in a plain loop
    on one thread, which never enters the OpenMP runtime (GNU OpenMP's thread pool does
    not survive a fork(); a forked child runs on one thread, see cpu.kernel_threads)."""
    call = f"{kind}_block(o_n, T_, N, ptrs, scalars{extra_args});"
    params = f"int64_t T_, int64_t N, int threads, void** ptrs, const double* scalars{extra_params}"
    return f"""
void spikeflow_{kind}({params}) {{
    if (threads > 1) {{
        #pragma omp parallel for schedule(static) num_threads(threads)
        for (int64_t o_n = 0; o_n < N; o_n += {BLOCK}) {call}
    }} else {{
        for (int64_t o_n = 0; o_n < N; o_n += {BLOCK}) {call}
    }}
}}"""


def _recorded(spec: KernelSpec, state: str) -> bool:
    """Whether ``state`` is the membrane recorded every step (``record_v``)."""
    return spec.record_v and state == "v"


def generate_c(spec: KernelSpec) -> str:
    """C source with ``spikeflow_forward`` and ``spikeflow_backward``.

    Both take ``(int64 T, int64 N, int threads, void** ptrs, const double* scalars)``;
    the pointer and scalar order is documented in :mod:`spikeflow.kernels.cpu`. The
    backward also takes ``int64 gspk_step``: the elements between two steps of the
    spike gradient (``N``, or 0 when every step has the same gradient, as after
    ``spikes.sum()`` or ``spikes.mean(0)``, which is then passed as one ``[N]`` row),
    and ``int64 gvrec_step``, the same for the gradient of the recorded membrane (read
    only by a ``record_v`` kernel).
    """
    g = spec.graph
    decl = g.decl
    f = "f" if spec.ctype == "float" else ""
    states = decl.state_names
    params = decl.param_names
    n_st = len(states)

    # Names visible inside the inner loop.
    names = {"x": "x_"}
    names.update({f"state_{s}": f"st_{s}" for s in states})
    names.update({f"grad_state_{s}": f"gst_{s}" for s in states})
    names["grad_spike"] = "gspk_"
    for k, p in enumerate(params):
        names[f"param_{p}"] = f"P_{p}[o_n + i]" if spec.array_params[k] else f"p_{p}"
    names["theta"] = "THETA[o_n + i]" if spec.theta_is_array else "theta_"

    # Pointer table: shared prefix of both kernels.
    prefix: list[str] = []
    ptr = 0
    scal = 0
    for k, p in enumerate(params):
        if spec.array_params[k]:
            prefix.append(f"const T* P_{p} = (const T*)ptrs[{ptr}];")
            ptr += 1
        else:
            prefix.append(f"const T p_{p} = (T)scalars[{scal}];")
            scal += 1
    if spec.theta_is_array:
        prefix.append(f"const T* THETA = (const T*)ptrs[{ptr}];")
        ptr += 1
    else:
        prefix.append(f"const T theta_ = (T)scalars[{scal}];")
        scal += 1
    for name in g.surrogate_scalars:  # the surrogate's run-time parameters
        names[f"sg_{name}"] = f"sg_{name}"
        prefix.append(f"const T sg_{name} = (T)scalars[{scal}];")
        scal += 1
    prefix.append(f"const T* X = (const T*)ptrs[{ptr}];")
    ptr += 1
    base = ptr

    # ---------------- forward ----------------
    fwd_ptrs = [f"const T* S0_{s} = (const T*)ptrs[{base + k}];" for k, s in enumerate(states)]
    q = base + n_st
    fwd_ptrs.append(f"T* SPK = (T*)ptrs[{q}];")
    fwd_ptrs += [f"T* OUT_{s} = (T*)ptrs[{q + 1 + k}];" for k, s in enumerate(states)]
    q += 1 + n_st
    if spec.save_states:
        fwd_ptrs += [f"T* SAVE_{s} = (T*)ptrs[{q + k}];" for k, s in enumerate(states)]
        q += n_st
    if spec.record_v:
        fwd_ptrs.append(f"T* VREC = (T*)ptrs[{q}];")
    targets = [("SPK[o + i]", g.spike)]
    targets += [(f"new_{s}", e) for s, e in zip(states, g.new_state)]
    body = ["const T x_ = X[o + i];"]
    body += [f"const T st_{s} = ST_{s}[i];" for s in states]
    body += [f"T new_{s};" for s in states]
    body += _emit(targets, names, f)
    body += [f"ST_{s}[i] = new_{s};" for s in states]
    if spec.record_v:
        body.append("VREC[o + i] = new_v;")
    K = spec.checkpoint
    save_checkpoint = (
        [f"if (t % {K} == 0) {{", f"    const int64_t c = (t / {K}) * N + o_n;"]
        + [f"    for (int64_t i = 0; i < m; ++i) SAVE_{s}[c + i] = ST_{s}[i];" for s in states]
        + ["}"]
        if spec.save_states
        else []
    )
    forward = f"""
#ifndef SPIKEFLOW_BACKWARD_ONLY
static inline void forward_block(int64_t o_n, int64_t T_, int64_t N, void** ptrs,
                                 const double* scalars) {{
{indent(prefix + fwd_ptrs, 1)}
    {{
        const int64_t m = (N - o_n < {BLOCK}) ? (N - o_n) : {BLOCK};
{indent([f"T ST_{s}[{BLOCK}];" for s in states], 2)}
        for (int64_t i = 0; i < m; ++i) {{
{indent([f"ST_{s}[i] = S0_{s}[o_n + i];" for s in states], 3)}
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
{indent([f"OUT_{s}[o_n + i] = ST_{s}[i];" for s in states], 3)}
        }}
    }}
}}
{_driver("forward")}
#endif
"""
    # ---------------- backward ----------------
    bwd_ptrs = [f"const T* SAVE_{s} = (const T*)ptrs[{base + k}];" for k, s in enumerate(states)]
    q = base + n_st
    bwd_ptrs.append(f"const T* GSPK = (const T*)ptrs[{q}];")
    bwd_ptrs += [f"const T* GOUT_{s} = (const T*)ptrs[{q + 1 + k}];" for k, s in enumerate(states)]
    q += 1 + n_st
    if spec.record_v:
        bwd_ptrs.append(f"const T* GVREC = (const T*)ptrs[{q}];")
        q += 1
    bwd_ptrs.append(f"T* GX = (T*)ptrs[{q}];")
    bwd_ptrs += [f"T* GS0_{s} = (T*)ptrs[{q + 1 + k}];" for k, s in enumerate(states)]
    q += 1 + n_st
    grad_p = [p for k, p in enumerate(params) if spec.grad_params[k]]
    bwd_ptrs += [f"T* GP_{p} = (T*)ptrs[{q + k}];" for k, p in enumerate(grad_p)]
    q += len(grad_p)
    if spec.grad_theta:
        bwd_ptrs.append(f"T* GTHETA = (T*)ptrs[{q}];")
    targets = [("GX[o + i]", g.grad_x)]
    targets += [(f"ngs_{s}", e) for s, e in zip(states, g.grad_state)]
    targets += [
        (f"dp_{p}", e) for k, (p, e) in enumerate(zip(params, g.grad_params)) if spec.grad_params[k]
    ]
    if spec.grad_theta:
        targets.append(("dtheta_", g.grad_theta))
    replay = ["const T x_ = X[o + i];"]
    replay += [f"const T st_{s} = ST_{s}[i];" for s in states]
    replay += [f"LOC_{s}[j][i] = st_{s};" for s in states]
    replay += [f"T new_{s};" for s in states]
    fwd = frozenset(n.key for n in topological([g.spike, *g.new_state]))
    replay += _emit([(f"new_{s}", e) for s, e in zip(states, g.new_state)], names, f, fwd)
    replay += [f"ST_{s}[i] = new_{s};" for s in states]
    body = ["const T x_ = X[o + i];", "const T gspk_ = GSPK[og + i];"]
    body += [f"const T st_{s} = LOC_{s}[j][i];" for s in states]
    body += [f"const T gst_{s} = GST_{s}[i];" for s in states if not _recorded(spec, s)]
    if spec.record_v:  # the recorded membrane's gradient joins the carried one
        body.append("const T gst_v = GST_v[i] + GVREC[(t0 + j) * gvrec_step + o_n + i];")
    body += [f"T ngs_{s};" for s in states]
    body += [f"T dp_{p};" for p in grad_p]
    if spec.grad_theta:
        body.append("T dtheta_;")
    body += _emit(targets, names, f, fwd)
    body += [f"GST_{s}[i] = ngs_{s};" for s in states]
    body += [f"ACC_{p}[i] += dp_{p};" for p in grad_p]
    if spec.grad_theta:
        body.append("ACC_theta_[i] += dtheta_;")
    accs = [f"ACC_{p}" for p in grad_p] + (["ACC_theta_"] if spec.grad_theta else [])
    outs = [f"GP_{p}" for p in grad_p] + (["GTHETA"] if spec.grad_theta else [])
    locals_ = [f"T GST_{s}[{BLOCK}];" for s in states] + [f"T {a}[{BLOCK}];" for a in accs]
    locals_ += [f"T ST_{s}[{BLOCK}];" for s in states]
    locals_ += [f"T LOC_{s}[{K}][{BLOCK}];" for s in states]
    # A final state whose gradient is absent comes as a NULL pointer: it starts at 0.
    init_grads = [
        line
        for s in states
        for line in (
            f"if (GOUT_{s}) {{ for (int64_t i = 0; i < m; ++i) GST_{s}[i] = GOUT_{s}[o_n + i]; }}",
            f"else {{ for (int64_t i = 0; i < m; ++i) GST_{s}[i] = 0; }}",
        )
    ]
    init_grads += [f"for (int64_t i = 0; i < m; ++i) {a}[i] = 0;" for a in accs]
    store_grads = [f"GS0_{s}[o_n + i] = GST_{s}[i];" for s in states]
    store_grads += [f"{o}[o_n + i] = {a}[i];" for o, a in zip(outs, accs)]
    backward = f"""
#ifdef SPIKEFLOW_BACKWARD_ONLY
{chr(10).join(_exact_wrappers(f))}

static inline void backward_block(int64_t o_n, int64_t T_, int64_t N, void** ptrs,
                                  const double* scalars, int64_t gspk_step,
                                  int64_t gvrec_step) {{
{indent(prefix + bwd_ptrs, 1)}
    {{
        const int64_t m = (N - o_n < {BLOCK}) ? (N - o_n) : {BLOCK};
{indent(locals_, 2)}
{indent(init_grads, 2)}
        for (int64_t seg = (T_ - 1) / {K}; seg >= 0; --seg) {{
            const int64_t t0 = seg * {K};
            const int64_t len = (T_ - t0 < {K}) ? (T_ - t0) : {K};
            for (int64_t i = 0; i < m; ++i) {{
{indent([f"ST_{s}[i] = SAVE_{s}[seg * N + o_n + i];" for s in states], 4)}
            }}
            for (int64_t j = 0; j < len; ++j) {{
                const int64_t o = (t0 + j) * N + o_n;
                #pragma omp simd
                for (int64_t i = 0; i < m; ++i) {{
{indent(replay, 5)}
                }}
            }}
            for (int64_t j = len - 1; j >= 0; --j) {{
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
{_driver("backward", ", int64_t gspk_step, int64_t gvrec_step", ", gspk_step, gvrec_step")}
#endif
"""
    header = f"{_HEADER}typedef {spec.ctype} T;\n"
    return header + forward + backward
