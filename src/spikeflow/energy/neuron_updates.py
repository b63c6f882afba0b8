"""The arithmetic of one step of a declared neuron, counted from its declaration.

A neuron declared by its equations (:mod:`spikeflow.neurons.declaration`) is traced
once with symbolic values (:mod:`spikeflow.kernels.expr`, the tracer the fused kernels
are generated from), for the parameter values it has: a parameter that is a number
(or a one-element tensor) enters as that number, so ``V - V_rest`` with ``V_rest = 0``
is no subtraction, ``X · 1`` no multiplication. The operations left in the charge
equation (and in a declared threshold, fire, update or reset rule) are counted once per
distinct expression:

* additions: ``+`` and ``-``; multiplications: ``×`` and ``÷``;
* comparisons: the spike function ``Θ(u)`` and ``<, <=, >, >=, ==, !=``, ``max``,
  ``min`` (a subtraction feeding only a spike function is its comparison's operand,
  not an addition of its own);
* free: negation (a sign bit), casts, ``detach``; and anything computed from the
  parameters alone (once per call, not per neuron and step);
* other: everything else (``exp``, ``sigmoid``, ``where``, ...), by name.

The shared firing rule ``S = Θ(H - θ)`` is one comparison per neuron and step; the
shared reset acts only where a spike fired: a soft reset ``V = H - θ`` is one
addition per spike, a hard reset ``V = V_r`` an assignment (no arithmetic). A declared
``reset_membrane`` is counted from its equation at every step, as written.

Only neurons that run their declaration and nothing else are counted this way: the
subclasses of :class:`~spikeflow.neurons.base.BaseNode` that keep its ``forward`` (or
whose own adds no arithmetic per step: :class:`~spikeflow.neurons.KLIFNode`,
:class:`~spikeflow.neurons.ActivationAwareIFNode`). Others (a LIAF's activation, an
ILIF's counts, a conductance neuron's two sub-steps, the PSN family, loops) are listed
as not counted, with the reason.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from spikeflow.kernels.expr import Expr, apply, const, topological, tracing_dtype, var
from spikeflow.neurons import ActivationAwareIFNode, KLIFNode
from spikeflow.neurons.base import BaseNode

__all__ = ["StepOperations", "counted_neuron", "step_operations"]

_ADDITIONS = frozenset({"add", "sub"})
_MULTIPLICATIONS = frozenset({"mul", "div"})
_SPIKES = frozenset({"spike", "spike_strict"})
_COMPARISONS = _SPIKES | {"lt", "le", "gt", "ge", "eq", "ne", "maximum", "minimum"}
_FREE = frozenset({"var", "const", "nograd", "tofloat", "neg"})

#: Neurons whose ``forward`` wraps :meth:`BaseNode.forward` without arithmetic per step.
_PLAIN_WRAPPERS: tuple[type[nn.Module], ...] = (KLIFNode, ActivationAwareIFNode)


@dataclass(frozen=True)
class StepOperations:
    """The arithmetic of one neuron's step (see the module docstring).

    Attributes:
        additions, multiplications, comparisons: per neuron and step (the shared
            firing rule's comparison included).
        other: operations of other kinds per neuron and step, by name.
        reset: ``"soft"`` (one addition per spike), ``"hard"`` (an assignment per
            spike) or ``"declared"`` (the declaration's own, in the counts above).
        states: the state variables a step reads and writes (the membrane first).
    """

    additions: int
    multiplications: int
    comparisons: int
    other: tuple[tuple[str, int], ...]
    reset: str
    states: int = 1


def counted_neuron(module: nn.Module) -> str | None:
    """``None`` when ``module``'s updates are counted from its declaration, else why
    not (a spiking layer of another kind, or one whose ``forward`` does more)."""
    if not isinstance(module, BaseNode):
        return f"{type(module).__name__} is not a declared neuron"
    forward = type(module).forward
    if forward is not BaseNode.forward and not isinstance(module, _PLAIN_WRAPPERS):
        return f"{type(module).__name__}.forward computes more than its declaration"
    return None


def _symbol(name: str, value: object) -> Expr:
    """A parameter as a number when it is one (a float, a one-element tensor), else as
    a variable (a per-neuron tensor)."""
    if isinstance(value, bool):
        return const(float(value))
    if isinstance(value, (int, float)):
        return const(float(value))
    if isinstance(value, Tensor) and value.numel() == 1:
        return const(float(value.detach().reshape(())))
    return var(name)


def step_operations(module: BaseNode, step_shape: torch.Size, dtype: torch.dtype) -> StepOperations:
    """Count the arithmetic of one step of ``module`` (a declared neuron, see
    :func:`counted_neuron`) for steps of ``step_shape`` in ``dtype``.

    Raises:
        TraceError: the declaration cannot be traced (the tracer's message says why).
    """
    theta_value = module.firing_threshold(step_shape)
    decl, values = module.equations(module.neuron_params(), theta_value, dtype)
    params = {name: _symbol(f"param_{name}", values[name]) for name in decl.param_names}
    theta = _symbol("theta", theta_value)
    with tracing_dtype(dtype):
        x = var("x")
        states = [var(f"state_{n}") for n in decl.state_names]
        h, new_aux = decl.charged(
            decl.charge(x, *states, **{k: params[k] for k in decl.charge_params})
        )
        h = apply("add", h, 0.0)  # a number as an expression
        aux = list(states[1:]) if new_aux is None else list(new_aux)
        if decl.threshold is not None:
            thr = decl.threshold(theta, *aux, **{k: params[k] for k in decl.threshold_params})
            theta = apply("add", thr, 0.0)
        outputs: list[object] = [h, theta, *aux]
        shared_fire = decl.fire is None
        if shared_fire:
            spike: object = var("spike")  # Θ(H - θ): one comparison, counted below
        else:
            fired = decl.fire(
                h, theta, lambda u: apply("spike", u), *aux,
                **{k: params[k] for k in decl.fire_params},
            )  # fmt: skip
            spike = decl.fired(fired)[0]
            outputs.append(spike)
        if decl.update is not None:
            update_kw = {k: params[k] for k in decl.update_params}
            aux = list(decl.updated(decl.update(h, spike, *aux, **update_kw)))
            outputs += aux
        if decl.reset_membrane is not None:
            reset_kw = {k: params[k] for k in decl.reset_params}
            outputs.append(decl.reset_membrane(h, spike, theta, *aux, **reset_kw))
            reset = "declared"
        else:
            reset = "soft" if module.v_reset is None else "hard"
    counts = _count([apply("add", o, 0.0) for o in outputs])
    additions = sum(counts.pop(op, 0) for op in _ADDITIONS)
    multiplications = sum(counts.pop(op, 0) for op in _MULTIPLICATIONS)
    comparisons = sum(counts.pop(op, 0) for op in _COMPARISONS) + int(shared_fire)
    return StepOperations(additions, multiplications, comparisons,
                          tuple(sorted(counts.items())), reset, len(decl.state_names))  # fmt: skip


def _varying(node: Expr, known: dict[tuple, bool]) -> bool:
    """Whether ``node`` depends on the input, a state or the spike (else it is computed
    from parameters and constants alone)."""
    if node.op == "var":
        return node.name == "x" or node.name == "spike" or node.name.startswith("state_")
    return any(known[a.key] for a in node.args)


def _count(outputs: list[Expr]) -> Counter[str]:
    """Operations per step of the distinct expressions that ``outputs`` need."""
    nodes: dict[tuple, Expr] = {}
    for node in topological(outputs):
        nodes.setdefault(node.key, node)
    varying: dict[tuple, bool] = {}
    for key, node in nodes.items():
        varying[key] = _varying(node, varying)
    consumers: dict[tuple, set[str]] = {key: set() for key in nodes}
    for key, node in nodes.items():
        if varying[key]:
            for arg in node.args:
                consumers[arg.key].add(node.op)
    roots = {o.key for o in outputs}
    counts: Counter[str] = Counter()
    for key, node in nodes.items():
        if not varying[key] or node.op in _FREE:
            continue
        users = consumers[key]
        if node.op in _ADDITIONS and users and users <= _SPIKES and key not in roots:
            continue  # Θ(a - b): the comparison of a and b
        counts[node.op] += 1
    return counts
