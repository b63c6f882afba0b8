"""The reference execution path: a plain loop over time, autograd through it.

Every faster backend must reproduce this loop's spikes and gradients.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from spikeflow.neurons.declaration import NeuronDeclaration
from spikeflow.surrogate import Surrogate

__all__ = ["FiringRule", "run_reference"]


@dataclass(frozen=True)
class FiringRule:
    """The shared fire and reset rules (methods.md 1.1).

    Attributes:
        surrogate: spike function, Heaviside forward with a surrogate derivative.
        v_reset: hard-reset value, or ``None`` for soft reset (subtract the threshold).
        detach_reset: cut the gradient through the reset branch.
        strict: fire on ``H > θ`` instead of ``H >= θ``.
    """

    surrogate: Surrogate
    v_reset: float | None
    detach_reset: bool
    strict: bool


def run_reference(
    decl: NeuronDeclaration,
    x_seq: Tensor,
    state: dict[str, Tensor | float],
    params: dict[str, Tensor | float],
    threshold: Tensor | float,
    rule: FiringRule,
    record_v: bool = False,
) -> tuple[Tensor, dict[str, Tensor], Tensor | None]:
    """Run ``decl`` over ``x_seq`` (``[T, ...]``) from ``state`` (tensors, or numbers:
    the same value for every neuron, in the input's dtype).

    Returns the spikes ``[T, ...]``, the final state, and the membrane after reset of
    every step ``[T, ...]`` if ``record_v`` (else ``None``).
    """
    if any(not isinstance(s, Tensor) for s in state.values()):
        # A number (a fresh neuron's state, the same for every neuron): as full_like.
        like = x_seq[0]
        state = {k: s if isinstance(s, Tensor) else torch.full_like(like, s)
                 for k, s in state.items()}  # fmt: skip
    v = state["v"]
    aux = tuple(state[name] for name in decl.aux_names)
    charge_kw = {name: params[name] for name in decl.charge_params}
    update_kw = {name: params[name] for name in decl.update_params}
    threshold_kw = {name: params[name] for name in decl.threshold_params}
    reset_kw = {name: params[name] for name in decl.reset_params}
    fire_kw = {name: params[name] for name in decl.fire_params}
    surrogate, strict = rule.surrogate, rule.strict

    def spike(u: Tensor) -> Tensor:  # a declared fire rule's spike function
        return surrogate(u, strict=strict)

    spikes: list[Tensor] = []
    v_record: list[Tensor] = []
    # unbind, not x_seq[t]: indexing makes every step's backward allocate a zero tensor
    # of the whole sequence (T^2 N work).
    for x_t in x_seq.unbind(0):
        h, new_aux = decl.charged(decl.charge(x_t, v, *aux, **charge_kw))
        if new_aux is not None:
            aux = new_aux
        theta = threshold
        if decl.threshold is not None:  # a state-dependent threshold (fire and soft reset)
            theta = decl.threshold(threshold, *aux, **threshold_kw)
        event = None  # the hard reset's event, when a declared fire rule gives one
        if decl.fire is not None:  # the neuron's own fire rule (a ternary neuron's)
            s, event = decl.fired(decl.fire(h, theta, spike, *aux, **fire_kw))
        else:
            s = surrogate(h - theta, strict=strict)
        s_reset = s.detach() if rule.detach_reset else s
        if decl.update is not None:
            aux = decl.updated(decl.update(h, s, *aux, **update_kw))
        if decl.reset_membrane is not None:  # the neuron's own reset (aux after update)
            v = decl.reset_membrane(h, s_reset, theta, *aux, **reset_kw)
        elif rule.v_reset is None:
            v = h - theta * s_reset
        else:
            if event is not None:
                s_reset = event.detach() if rule.detach_reset else event
            v = h * (1.0 - s_reset) + rule.v_reset * s_reset
        spikes.append(s)
        if record_v:
            v_record.append(v)
    aux = tuple(_step_shaped(a, v, x_seq.shape[1:]) for a in aux)
    final = {"v": v, **dict(zip(decl.aux_names, aux))}
    v_seq = torch.stack(v_record) if record_v else None
    return torch.stack(spikes), final, v_seq


def _step_shaped(value: Tensor | float, v: Tensor, shape: torch.Size) -> Tensor:
    """A final state with the step's shape, as the kernels return it and the next call
    expects: one computed from parameters alone has theirs (0-dim, ``[C, 1, 1]``) or is
    a Python number."""
    if not isinstance(value, Tensor):
        return torch.full(shape, value, dtype=v.dtype, device=v.device)
    if value.shape == shape:
        return value
    if value.dim() == 0:  # a 0-dim value does not promote the steps: nor may its copy
        value = value.to(v.dtype)
    return value.expand(shape).contiguous()
