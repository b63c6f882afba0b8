"""Second-order gradients through the fused neuron kernels, on request.

The fused kernels' backward is a kernel, not a graph: a gradient it returns cannot be
differentiated again. Under :func:`second_order` the fused forward also keeps the
initial-state tensors it was given (the input and the tensor parameters are kept
anyway, for the kernels' own backward) and what the reference loop needs besides
tensors (:class:`Recompute`). A backward that builds a graph (``create_graph=True``)
then runs the fused backward for the gradient's value and recomputes the neuron with
the reference loop (:func:`~spikeflow.kernels.reference.run_reference`) from those
saved inputs, differentiating it with ``create_graph=True`` for the gradient's own
derivatives (:func:`exact_gradients`): the value stays the fused kernel's, the
second-order terms are the reference loop's, exact. A backward without
``create_graph`` runs the fused kernel alone, as without the opt-in.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor

from spikeflow._second_order_flag import LOCAL as _LOCAL
from spikeflow._second_order_flag import second_order_enabled
from spikeflow.errors import ConfigurationError
from spikeflow.kernels.reference import FiringRule, run_reference
from spikeflow.neurons.declaration import NeuronDeclaration

__all__ = ["Recompute", "exact_gradients", "recompute_for", "second_order", "second_order_enabled"]


@contextmanager
def second_order(enabled: bool = True) -> Iterator[None]:
    """Let gradients computed through the fused neuron kernels be differentiated again.

    A fused neuron (``backend="cpu"``, ``"triton"``, or ``"auto"`` where it picks them)
    whose forward runs inside this context supports ``create_graph=True``: the
    gradients of its input, initial states and parameters keep the fused kernel's
    values and get exact derivatives by recomputing the neuron with the reference loop
    during that backward (what MAML's inner step, Hessian-vector products and gradient
    penalties need). Only the forward has to run inside it; the backward may run
    later. Per thread, as ``torch.no_grad``. Eager mode only: a neuron that
    ``torch.compile`` traces under it raises a ConfigurationError (AOTAutograd has no
    double backward, and Dynamo's ``"eager"`` backend drops the surrogate spike's
    second-order terms), which Dynamo turns into a graph break (the neuron runs
    eagerly) unless ``fullgraph=True``.

    Args:
        enabled: ``False`` switches the opt-in off inside an enclosing ``with``.

    Raises:
        ConfigurationError: ``enabled`` is not a bool.
    """
    if not isinstance(enabled, bool):
        raise ConfigurationError(f"second_order: enabled must be a bool, got {enabled!r}")
    previous = getattr(_LOCAL, "enabled", False)
    _LOCAL.enabled = enabled
    try:
        yield
    finally:
        _LOCAL.enabled = previous


@dataclasses.dataclass(slots=True)
class Recompute:
    """What the reference loop needs, besides the saved tensors, to recompute a call.

    Attributes:
        decl: the neuron's declaration.
        rule: its fire/reset rule.
        record_v: whether the call recorded the membrane.
        operands: per declared parameter, then the threshold (``""``): its value if a
            Python float, else ``None`` (a tensor, taken from the saved operands in
            order).
        param_names: the declared parameter names, in the order of ``operands``.
        uniform: per state, in declaration order: its value if the call started from a
            number (a fresh neuron's), else ``None`` (a saved state tensor, in order).
        spiking: the surrogate's mode at the forward.
        surrogate_params: the surrogate's parameters at the forward (one annealed
            before the backward does not change this call's, as in the reference loop).
    """

    decl: NeuronDeclaration
    rule: FiringRule
    record_v: bool
    operands: tuple[float | None, ...]
    param_names: tuple[str, ...]
    uniform: tuple[float | None, ...]
    spiking: bool
    surrogate_params: dict[str, float]

    def forward_rule(self) -> FiringRule:
        """The fire/reset rule with the surrogate as it was at the forward."""
        surrogate = copy.copy(self.rule.surrogate)
        surrogate.spiking = self.spiking
        for name, value in self.surrogate_params.items():
            setattr(surrogate, name, value)
        return dataclasses.replace(self.rule, surrogate=surrogate)


def recompute_for(
    decl: NeuronDeclaration,
    rule: FiringRule,
    record_v: bool,
    params: dict[str, Tensor | float],
    threshold: Tensor | float,
    uniform: Sequence[float | None],
) -> Recompute:
    """The :class:`Recompute` of a fused call (``uniform``: per state, the number it
    starts from, or ``None`` for a tensor)."""
    names = tuple(decl.param_names)
    values = [*(params[p] for p in names), threshold]
    operands = tuple(None if isinstance(v, Tensor) else float(v) for v in values)
    sg = rule.surrogate
    return Recompute(decl, rule, record_v, operands, names, tuple(uniform), sg.spiking, sg.params)


def exact_gradients(
    recompute: Recompute,
    inputs: Sequence[Tensor],
    grads: Sequence[Tensor | None],
    fused: Sequence[Tensor | None],
    needs: Sequence[bool],
) -> list[Tensor | None]:
    """The gradients of a fused call's ``inputs`` (the input, the initial states passed
    as tensors, the tensor operands, as saved by the forward: attached to the graph
    that made them) with the values ``fused`` (the fused backward's, without a graph)
    and the derivatives of the reference loop's, which is recomputed from ``inputs``
    and differentiated with ``create_graph=True`` against ``grads`` (the gradients of
    the spikes, the final states and, if recorded, the membrane; ``None`` for absent).
    ``needs``: which inputs want a gradient (``None`` is returned for the others)."""
    decl = recompute.decl
    x, rest = inputs[0], list(inputs[1:])
    tensor_states = iter(rest[: sum(u is None for u in recompute.uniform)])
    operands = iter(rest[sum(u is None for u in recompute.uniform) :])
    state = {name: next(tensor_states) if u is None else u
             for name, u in zip(decl.state_names, recompute.uniform)}  # fmt: skip
    values = [next(operands) if v is None else v for v in recompute.operands]
    params = dict(zip(recompute.param_names, values[:-1]))
    with torch.enable_grad():
        spikes, finals, v_seq = run_reference(
            decl, x, state, params, values[-1], recompute.forward_rule(), recompute.record_v
        )
        outputs = [spikes, *(finals[name] for name in decl.state_names)]
        if recompute.record_v:
            outputs.append(v_seq)  # type: ignore[arg-type]
        pairs = [(o, g) for o, g in zip(outputs, grads) if g is not None and o.requires_grad]
        wanted = [t for t, need in zip(inputs, needs) if need]
        exact: list[Tensor | None] = []
        if pairs and wanted:
            outs, cotangents = zip(*pairs)
            exact = list(
                torch.autograd.grad(outs, wanted, cotangents, create_graph=True, allow_unused=True)
            )
    reference = iter(exact)
    result: list[Tensor | None] = []
    for need, value in zip(needs, fused):
        r = next(reference, None) if need else None
        if value is None or r is None:
            result.append(value)
            continue
        # The fused value, with the reference's derivative: r - r.detach() is zero.
        result.append(value.detach() + (r - r.detach()))
    return result
