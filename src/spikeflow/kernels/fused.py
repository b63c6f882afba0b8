"""The autograd glue shared by every fused backend, as PyTorch custom operators.

A backend supplies a :class:`Launcher`: given a :class:`KernelSpec` it builds (or loads
from cache) a forward and a backward kernel that read and write flat ``[T, N]`` /
``[N]`` buffers in one fixed order (see :mod:`spikeflow.kernels.codegen_c`). This
module registers two custom operators, ``spikeflow::neuron_forward`` and
``spikeflow::neuron_backward``, with fake (meta) implementations and an autograd
formula: inside ``torch.compile`` the fused kernels are opaque nodes of one graph (the
kernel lookup is a constant of the graph, see :mod:`spikeflow.kernels.registry`);
in eager mode an ``autograd.Function`` runs the same code without the operators'
dispatch. Parameters and the threshold are passed as tensors (0-dim ones are read as
scalars by the kernels; others are expanded to the neuron shape); Python floats travel
with each call (a list in eager mode, the operators' float64 ``values`` tensor under
``torch.compile``), so the kernels and their registry entry do not depend on them.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.autograd import forward_ad

from spikeflow._second_order_flag import refuse_compiled_second_order
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.kernels.precision import (
    HostScalarError,
    device_advice,
    operand_tag,
    promoted_input,
)
from spikeflow.kernels.reference import FiringRule
from spikeflow.kernels.registry import (
    Entry,
    Kernels,
    Launcher,
    Steps,
    compiled_entry_key,
    entry_key,
    forget,
    step_graph,
    surrogate_key,
)
from spikeflow.kernels.registry import entry as _lookup
from spikeflow.kernels.second_order import (
    Recompute,
    exact_gradients,
    recompute_for,
    second_order_enabled,
)
from spikeflow.neurons.declaration import NeuronDeclaration
from spikeflow.surrogate.base import forward_ad_active

__all__ = [
    "Kernels",
    "Launcher",
    "Steps",
    "batched_gradients",
    "dual_tensors",
    "forget",
    "functorch_active",
    "promoted_input",
    "run_fused",
    "step_graph",
]


def _layout(
    entry: Entry, operands: list[Tensor], values: list[float], step_shape: torch.Size
) -> tuple[list[Tensor], list[float]]:
    """Kernel arrays (``[N]``, or 1-element buffers of 0-dim tensors for kernels with
    ``device_scalars``) and scalars, in declaration order; ``values`` are the
    Python-float operands, in order."""
    if not operands:  # every parameter a Python float
        return [], values
    arrays: list[Tensor] = []
    scalars: list[float] = []
    tensors, floats = iter(operands), iter(values)
    is_array = (*entry.spec.array_params, entry.spec.theta_is_array)
    on_device = getattr(entry.kernels, "device_scalars", False)
    for is_tensor, array in zip(entry.is_tensor, is_array):
        if not is_tensor:
            scalars.append(next(floats))
            continue
        t = next(tensors)
        if not array and not on_device:
            scalars.append(float(t))
            continue
        # A float64 0-dim tensor keeps its dtype (the kernels compute the scalar-only
        # sub-expressions it enters in float64, see KernelSpec.operands).
        sd = torch.float64 if t.dtype == torch.float64 and t.dim() == 0 else entry.state_dtype
        t = t.detach().to(sd)
        arrays.append(t.expand(step_shape).contiguous().view(-1) if array else t.reshape(1))
    scalars.extend(floats)  # the surrogate's run-time parameters
    return arrays, scalars


def _forward_shapes(entry: Entry, x: Tensor) -> list[tuple[tuple[int, ...], torch.dtype]]:
    T, step = x.shape[0], tuple(x.shape[1:])
    n_st = len(entry.spec.graph.decl.state_names)
    n = 1
    for d in step:
        n *= d
    shapes = [(tuple(x.shape), x.dtype)] + [(step, entry.state_dtype)] * n_st
    if entry.spec.save_states:
        shapes += [((-(-T // entry.spec.checkpoint), n), entry.state_dtype)] * n_st
    if entry.spec.record_v:
        shapes.append((tuple(x.shape), x.dtype))
    return shapes


def _forward_impl(
    key: str, x: Tensor, states: list[Tensor], operands: list[Tensor], values: list[float]
) -> list[Tensor]:
    entry = _lookup(key)
    outs = [torch.empty(s, dtype=d, device=x.device) for s, d in _forward_shapes(entry, x)]
    T = x.shape[0]
    n = math.prod(x.shape[1:])
    arrays, scalars = _layout(entry, operands, values, x.shape[1:])
    # The kernels read only data pointers and dtypes: contiguous buffers, in any shape.
    # outs: spikes, finals, saved states ([rows, N]), recorded membrane.
    buffers = [*arrays, x.contiguous(), *(s.contiguous() for s in states), *outs]
    entry.kernels.forward(T, n, buffers, scalars)
    return outs


# The operators take the Python-float values as a float64 CPU tensor: a float argument
# would make torch.compile specialise the graph on each value (one recompilation per
# annealed threshold or surrogate alpha), a tensor computed from them does not.
@torch.library.custom_op("spikeflow::neuron_forward", mutates_args=())
def _neuron_forward(
    key: str, x: Tensor, states: list[Tensor], operands: list[Tensor], values: Tensor
) -> list[Tensor]:
    return _forward_impl(key, x, states, operands, values.tolist())


@_neuron_forward.register_fake
def _(
    key: str, x: Tensor, states: list[Tensor], operands: list[Tensor], values: Tensor
) -> list[Tensor]:
    return [x.new_empty(s, dtype=d) for s, d in _forward_shapes(_lookup(key), x)]


def _backward_shapes(entry: Entry, x: Tensor) -> list[tuple[tuple[int, ...], torch.dtype]]:
    step = tuple(x.shape[1:])
    n_st = len(entry.spec.graph.decl.state_names)
    n_grads = sum(entry.spec.grad_params) + int(entry.spec.grad_theta)
    shapes = [(tuple(x.shape), x.dtype)] + [(step, entry.state_dtype)] * n_st
    return shapes + [(step, entry.state_dtype)] * n_grads


def _backward_impl(
    key: str,
    x: Tensor,
    saved: list[Tensor],
    operands: list[Tensor],
    grad_spikes: Tensor,
    grad_finals: list[Tensor | None],
    values: list[float],
) -> list[Tensor]:
    entry = _lookup(key)
    outs = [torch.empty(s, dtype=d, device=x.device) for s, d in _backward_shapes(entry, x)]
    T = x.shape[0]
    n = math.prod(x.shape[1:])
    arrays, scalars = _layout(entry, operands, values, x.shape[1:])
    sd = entry.state_dtype
    one_value = getattr(entry.kernels, "one_value_gradients", False)
    gspk, gspk_step = _per_step(grad_spikes, x, n, one_value)
    n_st = len(entry.spec.graph.decl.state_names)
    buffers: list[Tensor | None] = [
        *arrays,
        x.contiguous(),
        *(s.contiguous() for s in saved),
        gspk,
        *(None if g is None else g.to(sd).contiguous() for g in grad_finals[:n_st]),
    ]
    gvrec_step = 0
    if entry.spec.record_v:  # the recorded membrane's gradient (see _backward)
        g_row, gvrec_step = _per_step(grad_finals[n_st], x, n, one_value)  # type: ignore[arg-type]
        buffers.append(g_row)
    buffers += outs
    entry.kernels.backward(T, n, buffers, scalars, (gspk_step, gvrec_step))
    return outs


def _per_step(grad: Tensor, x: Tensor, n: int, one_value: bool = False) -> tuple[Tensor, int]:
    """A ``[T, ...]`` gradient as a kernel buffer and its step: one ``[N]`` row (step 0)
    when it is the same at every step (``spikes.sum()``, ``spikes.mean(0)``, an absent
    gradient: stride 0 over time), else ``[T, N]`` (step ``n``). To kernels that take
    ``one_value`` gradients, one that is a single value broadcast everywhere (every
    stride 0: ``spikes.sum()``'s) goes as that element (step -1), not copied to a row."""
    if one_value and grad.numel() and all(st == 0 for st in grad.stride()):
        return grad.as_strided((1,), (1,)).to(x.dtype), -1
    if grad.shape[0] == 1 or grad.stride(0) == 0:
        return grad[0].to(x.dtype).contiguous(), 0
    return grad.to(x.dtype).contiguous(), n


@torch.library.custom_op("spikeflow::neuron_backward", mutates_args=())
def _neuron_backward(
    key: str,
    x: Tensor,
    saved: list[Tensor],
    operands: list[Tensor],
    grad_spikes: Tensor,
    grad_finals: list[Tensor | None],
    values: Tensor,
) -> list[Tensor]:
    return _backward_impl(key, x, saved, operands, grad_spikes, grad_finals, values.tolist())


@_neuron_backward.register_fake
def _(
    key: str,
    x: Tensor,
    saved: list[Tensor],
    operands: list[Tensor],
    grad_spikes: Tensor,
    grad_finals: list[Tensor | None],
    values: Tensor,
) -> list[Tensor]:
    return [x.new_empty(s, dtype=d) for s, d in _backward_shapes(_lookup(key), x)]


def _setup_context(
    ctx: Any, inputs: tuple, output: list[Tensor], keep_states: bool = False
) -> None:
    """Save what the backward needs; ``keep_states``: also the initial states passed
    as tensors (for a second-order backward, see second_order.py)."""
    key, x, states, operands, values = inputs  # (states passed: the non-uniform ones)
    entry = _lookup(key)
    n_st = len(entry.spec.graph.decl.state_names)
    saved = output[1 + n_st : 1 + 2 * n_st] if entry.spec.save_states else []
    ctx.record_v = entry.spec.record_v
    ctx.key = key
    ctx.n_saved = len(saved)
    ctx.n_states = n_st
    # The operator's values tensor is saved as a tensor; the eager path's list as is.
    ctx.values = None if isinstance(values, Tensor) else values
    kept = states if keep_states else []
    ctx.n_kept = len(kept)
    ctx.save_for_backward(x, *saved, *operands, *kept, *([values] if ctx.values is None else []))


def _backward(
    ctx: Any,
    grads: list[Tensor | None],
    run: Callable[..., list[Tensor]] = _neuron_backward,
    saved_tensors: Sequence[Tensor] | None = None,
) -> tuple:
    """The gradients of the operator's inputs; ``saved_tensors``: ``ctx.saved_tensors``
    if the caller has read them already (a checkpointed forward's unpack only once)."""
    entry = _lookup(ctx.key)
    x, *rest = ctx.saved_tensors if saved_tensors is None else saved_tensors
    values = rest.pop() if ctx.values is None else ctx.values
    if run is _neuron_backward and not isinstance(values, Tensor):
        values = _values_tensor(values)
    saved, operands = rest[: ctx.n_saved], rest[ctx.n_saved : len(rest) - ctx.n_kept]

    # An absent gradient of a [T, ...] output (the spikes, the recorded membrane) is a
    # zero broadcast over time (read as one row, no [T, N] buffer); absent final-state
    # gradients go to the kernels as None (zero).
    def per_step(g: Tensor | None) -> Tensor:
        return g if g is not None else x.new_zeros(()).expand(x.shape)

    g_spikes = per_step(grads[0])
    g_finals = list(grads[1 : 1 + ctx.n_states])
    if ctx.record_v:  # the recorded membrane, the last output
        g_finals.append(per_step(grads[-1]))
    outs = run(ctx.key, x, list(saved), list(operands), g_spikes, g_finals, values)
    gx, per_neuron = outs[0], iter(outs[1 + ctx.n_states :])
    # The gradients of the initial states passed as tensors (not of the uniform ones).
    g_states = [g for k, g in enumerate(outs[1 : 1 + ctx.n_states]) if not entry.spec.uniform(k)]
    wants = [w for w, t in zip((*entry.spec.grad_params, entry.spec.grad_theta), entry.is_tensor)
             if t]  # fmt: skip
    g_ops: list[Tensor | None] = []
    for op, want in zip(operands, wants):
        if not want:
            g_ops.append(None)
            continue
        g = next(per_neuron)
        g = g.sum() if op.dim() == 0 else g.sum_to_size(op.shape)
        g_ops.append(g.reshape(op.shape).to(op.dtype))
    return None, gx, list(g_states), g_ops, None


torch.library.register_autograd(
    "spikeflow::neuron_forward", _backward, setup_context=_setup_context
)


def _no_double_backward(ctx: Any, grads: list[Tensor | None]) -> tuple:
    raise ConfigurationError(
        "second-order gradients (a backward through a gradient, create_graph=True) through "
        "the fused neuron kernels need the opt-in: run the neuron's forward inside "
        "`with spikeflow.kernels.second_order():` (eager mode only; inside torch.compile "
        "AOTAutograd has no double backward), or build this neuron with backend='torch' "
        "(the reference loop); the kernels' own backward has no graph"
    )


def _nothing_to_save(ctx: Any, inputs: tuple, output: list[Tensor]) -> None:
    return None


torch.library.register_autograd(
    "spikeflow::neuron_backward", _no_double_backward, setup_context=_nothing_to_save
)


def functorch_active() -> bool:
    """Whether a ``torch.func`` transform (grad, vmap, jacrev, ...) is running."""
    active = getattr(torch._C, "_are_functorch_transforms_active", None)
    return bool(active and active())


def dual_tensors(*values: object) -> bool:
    """Whether any tensor among ``values`` (tensors, dicts and lists of them, other
    values ignored) is a forward-mode AD dual tensor (``torch.autograd.forward_ad``)
    carrying a tangent. Outside a ``dual_level`` context no tensor can carry one, which
    is checked first (no per-tensor work on the usual path)."""
    if not forward_ad_active():
        return False
    stack = list(values)
    while stack:
        v = stack.pop()
        if isinstance(v, Tensor):
            if forward_ad.unpack_dual(v).tangent is not None:
                return True
        elif isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, (list, tuple)):
            stack.extend(v)
    return False


def batched_gradients(grads: tuple[Tensor | None, ...]) -> bool:
    """Whether a backward runs batched: under a ``torch.func`` transform (a vmap over the
    backward), or on the legacy batched tensors of ``torch.autograd.grad(...,
    is_grads_batched=True)``, which have no storage for the kernels to read."""
    if functorch_active():
        return True
    ft = torch._C._functorch
    for g in grads:
        if g is not None and (ft.is_legacy_batchedtensor(g) or ft.is_batchedtensor(g)):
            return True
    return False


class _EagerNeuron(torch.autograd.Function):
    """The same forward, backward and saved tensors as the custom operators, without
    their dispatch (tens of microseconds a call): used outside ``torch.compile``.

    The forward takes ``ctx`` (no ``setup_context``): ``Function.apply`` then skips
    binding the arguments through ``inspect.signature`` (~25 µs a call). ``torch.func``
    never reaches it (:func:`run_fused` refuses fused kernels there).

    ``recompute`` (given under :func:`spikeflow.kernels.second_order`) keeps the
    initial states too, and a backward under ``create_graph=True`` then gives its
    gradients the reference loop's derivatives (see second_order.py).
    """

    @staticmethod
    def forward(
        ctx: Any,
        key: str,
        values: list[float],
        x: Tensor,
        n_states: int,
        recompute: Recompute | None,
        *tensors: Tensor,
    ) -> tuple:
        states, operands = list(tensors[:n_states]), list(tensors[n_states:])
        output = _forward_impl(key, x, states, operands, values)
        inputs = (key, x, states, operands, values)
        _setup_context(ctx, inputs, output, keep_states=recompute is not None)
        ctx.recompute = recompute
        ctx.set_materialize_grads(False)
        saved = output[1 + ctx.n_states : len(output) - int(ctx.record_v)]
        ctx.mark_non_differentiable(*saved)
        return tuple(output)

    @staticmethod
    def backward(ctx: Any, *grads: Tensor | None) -> tuple:
        if batched_gradients(grads):
            raise ConfigurationError(
                "the fused neuron kernels cannot compute batched gradients "
                "(torch.autograd.grad(..., is_grads_batched=True), "
                "torch.autograd.functional.jacobian(vectorize=True), or a vmap over the "
                "backward): their backward reads raw memory, which the batched gradient "
                "tensors lack; build this neuron with backend='torch' (the reference loop) "
                "for such Jacobians, or compute them without batching (vectorize=False)"
            )
        if ctx.recompute is not None and torch.is_grad_enabled():
            gx, *g_inputs = _second_order_backward(ctx, grads)
            return (None, None, gx, None, None, *g_inputs)
        # Under create_graph the backward goes through the custom operator, whose
        # autograd formula refuses a double backward by name (as on the compiled path)
        # instead of silently dropping the neuron's second-order terms.
        run = _neuron_backward if torch.is_grad_enabled() else _backward_impl
        _, gx, g_states, g_ops, _ = _backward(ctx, list(grads), run)
        return (None, None, gx, None, None, *g_states, *g_ops)


def _second_order_backward(ctx: Any, grads: tuple[Tensor | None, ...]) -> list[Tensor | None]:
    """The gradients of the input, states and operands under ``create_graph=True``
    with the opt-in: the fused backward's values, the reference loop's derivatives."""
    # Read once: under torch.utils.checkpoint (memory.Recomputed) a second read fails.
    saved_tensors = ctx.saved_tensors
    with torch.no_grad():
        _, gx, g_states, g_ops, _ = _backward(ctx, list(grads), _backward_impl, saved_tensors)
    x, *rest = saved_tensors
    n_ops = len(g_ops)
    operands = rest[ctx.n_saved : ctx.n_saved + n_ops]
    states = rest[ctx.n_saved + n_ops : ctx.n_saved + n_ops + ctx.n_kept]
    # The gradients of the outputs the reference returns (not of the saved rows).
    outs = [grads[0], *grads[1 : 1 + ctx.n_states], *([grads[-1]] if ctx.record_v else [])]
    needs = ctx.needs_input_grad[2:3] + ctx.needs_input_grad[5:]
    inputs, fused = [x, *states, *operands], [gx, *g_states, *g_ops]
    return exact_gradients(ctx.recompute, inputs, outs, fused, needs)


def _values_tensor(values: list[float]) -> Tensor:
    """``values`` as the operators take them: a float64 CPU tensor, computed from the
    numbers (under torch.compile, each a graph input, not a constant)."""
    if not values:
        return torch.empty(0, dtype=torch.float64)
    one = torch.ones((), dtype=torch.float64)
    return torch.stack([one * v for v in values])


def _check_device(decl: NeuronDeclaration, what: str, value: Tensor, x: Tensor) -> None:
    """Refuse a tensor on another device than the input ``x``: the kernels would read
    its raw pointer on the wrong device (a crash). A 0-dim CPU tensor, which PyTorch
    accepts beside any device as a host scalar, is a :class:`HostScalarError` (``auto``
    runs the reference loop)."""
    if value.device == x.device:
        return
    if value.dim() == 0 and value.device.type == "cpu":
        raise HostScalarError(what, value.dtype, x.dtype, str(x.device))
    raise ConfigurationError(
        f"{decl.name}: {what} is on device {value.device} but the input is on {x.device}; "
        f"{device_advice(what)}"
    )


#: Above 0 (inside :class:`spikeflow.energy.MemoryAccessCounter`): eager calls go through
#: the custom operators, which a ``TorchDispatchMode`` sees, not around them.
_operators_seen = 0


@contextlib.contextmanager
def operators_seen_by_dispatch() -> Iterator[None]:
    """Inside: the fused kernels run as the ``spikeflow::neuron_forward`` and
    ``neuron_backward`` operators in eager mode too (the same results, tens of
    microseconds more a call), so a dispatch mode counting operations is told of them
    instead of missing them."""
    global _operators_seen
    _operators_seen += 1
    try:
        yield
    finally:
        _operators_seen -= 1


def run_fused(
    launcher: Launcher,
    ctype: str,
    state_dtype: torch.dtype,
    checkpoint: int,
    decl: NeuronDeclaration,
    x_seq: Tensor,
    state: dict[str, Tensor | float],
    params: dict[str, Tensor | float],
    threshold: Tensor | float,
    rule: FiringRule,
    record_v: bool,
) -> tuple[Tensor, dict[str, Tensor], Tensor | None]:
    """Run ``decl`` over ``x_seq`` with the kernels ``launcher`` builds.

    ``ctype`` is the compute type the kernels are specialised for; states, saved
    states and gradients of states are kept in ``state_dtype``; the state is saved for
    backward every ``checkpoint`` steps. Tensor parameters of more than 0 dimensions
    are expanded to ``[N]`` arrays; 0-dim ones are passed by value, or, to kernels with
    ``device_scalars`` (the Triton ones: reading a GPU scalar on the host would
    synchronise), as 1-element buffers the kernels read on the device.
    """
    if functorch_active():
        raise ConfigurationError(
            "the fused backends cannot run inside torch.func transforms (grad, vmap, jacrev, "
            "...): their kernels read raw memory; use backend='auto' (which picks the "
            "reference loop there) or backend='torch'"
        )
    if torch.compiler.is_exporting():
        raise ConfigurationError(
            "the fused backends cannot be exported by torch.export: the exported program "
            "would name kernels registered in this process only; use backend='auto' "
            "(which picks the reference loop there) or backend='torch'"
        )
    if torch.jit.is_tracing():
        raise ConfigurationError(
            "the fused backends cannot be recorded by torch.jit.trace (their kernels are "
            "invisible to it, so the trace would replay stale memory); use backend='auto' "
            "(which picks the reference loop there), backend='torch', or torch.compile"
        )
    if dual_tensors(x_seq, state, params, threshold):
        raise ConfigurationError(
            "the fused backends do not support forward-mode AD (torch.autograd.forward_ad "
            "dual tensors): their kernels read raw memory and would drop the tangent; use "
            "backend='auto' (which picks the reference loop there) or backend='torch'"
        )
    if x_seq.shape[0] == 0:
        raise ShapeError(
            f"a neuron needs at least one time step; got input of shape {tuple(x_seq.shape)}"
        )
    step_shape = x_seq.shape[1:]
    # One pass over the parameters and the threshold (this runs on every call).
    values: list[float] = []
    operands: list[Tensor] = []
    needs: list[bool] = []
    is_array: list[bool] = []
    is_tensor: list[tuple[torch.dtype, bool] | bool] = []
    names = [*(f"parameter {p!r}" for p in decl.param_names), "the threshold"]
    for what, v in zip(names, [*(params[p] for p in decl.param_names), threshold]):
        tensor = isinstance(v, Tensor)
        # A tensor's (dtype, 0-dim): the types of the scalar-only sub-expressions.
        is_tensor.append(operand_tag(v, x_seq.dtype) if tensor else False)
        if tensor:
            _check_device(decl, what, v, x_seq)
            operands.append(v)
            needs.append(v.requires_grad)
            is_array.append(v.dim() > 0)
        else:
            values.append(float(v))
            needs.append(False)
            is_array.append(False)
    states = []
    uniform: list[bool] = []
    initial: list[float] = []  # the uniform initial values, in state order
    for name in decl.state_names:
        s = state[name]
        uniform.append(not isinstance(s, Tensor))
        if uniform[-1]:  # a number (a fresh neuron's): the kernels read it as a scalar
            initial.append(float(s))  # rounded to a half input (precision.rounded_start)
            continue
        _check_device(decl, f"state {name!r}", s, x_seq)
        s = s if s.dtype == state_dtype else s.to(state_dtype)
        states.append((s if s.shape == step_shape else s.expand(step_shape)).contiguous())
    grad_on = torch.is_grad_enabled() and (
        x_seq.requires_grad or any(needs) or any(s.requires_grad for s in states)
    )
    flags = (tuple(is_array), grad_on, record_v, tuple(needs), tuple(is_tensor), x_seq.dtype,
             tuple(uniform) if initial else ())  # fmt: skip
    compiling = torch.compiler.is_compiling()
    if compiling:  # a constant of the graph (no graph break), see registry.py
        refuse_compiled_second_order()  # (the opt-in is eager-only)
        key, symbolic = compiled_entry_key(
            launcher, ctype, state_dtype, checkpoint, decl, rule, *flags
        )
    else:
        sg_key, symbolic = surrogate_key(rule.surrogate)
        key = entry_key(launcher, ctype, state_dtype, checkpoint, decl, rule.surrogate, sg_key,
                        rule.v_reset, rule.detach_reset, rule.strict, *flags)  # fmt: skip
    # The surrogate's run-time parameters follow the operands' values, in the graph's order.
    sg_params = rule.surrogate.params
    values += [float(sg_params[n]) for n in symbolic]
    values += initial  # after the surrogate's (see KernelSpec.uniform_states)
    if compiling or _operators_seen:
        out = _neuron_forward(key, x_seq, states, operands, _values_tensor(values))
    elif not grad_on:  # nothing to differentiate: no autograd node (inference)
        out = _forward_impl(key, x_seq, states, operands, values)
    else:
        recompute = None
        if second_order_enabled():  # keep what the reference loop needs (second_order.py)
            starts = [None if isinstance(state[n], Tensor) else float(state[n])  # type: ignore[arg-type]
                      for n in decl.state_names]  # fmt: skip
            recompute = recompute_for(decl, rule, record_v, params, threshold, starts)
        out = _EagerNeuron.apply(key, values, x_seq, len(states), recompute, *states, *operands)
    n_st = len(decl.state_names)
    spikes, finals = out[0], out[1 : 1 + n_st]
    v_seq = out[-1] if record_v else None
    return spikes, dict(zip(decl.state_names, finals)), v_seq
