"""The autograd glue shared by every fused backend.

A backend supplies a :class:`Launcher`: given a :class:`KernelSpec` it builds (or loads
from cache) a forward and a backward kernel that read and write flat ``[T, N]`` /
``[N]`` buffers in one fixed order (see :mod:`spikeflow.kernels.codegen_c`). This
module prepares those buffers, runs the kernels inside a ``torch.autograd.Function``
and maps the gradients back to the inputs, parameters and threshold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

from spikeflow.kernels.reference import FiringRule
from spikeflow.kernels.spec import KernelSpec
from spikeflow.kernels.step import StepGraph, build_step
from spikeflow.neurons.declaration import NeuronDeclaration

__all__ = ["Kernels", "Launcher", "run_fused", "step_graph"]

_GRAPHS: dict[tuple, StepGraph] = {}


def step_graph(decl: NeuronDeclaration, rule: FiringRule) -> StepGraph:
    """The traced and differentiated step of ``decl`` under ``rule`` (cached)."""
    sg = rule.surrogate
    key = (decl, type(sg), sg.spiking, tuple(sorted(sg.params.items())), rule.v_reset,
           rule.detach_reset, rule.strict)  # fmt: skip
    graph = _GRAPHS.get(key)
    if graph is None:
        graph = _GRAPHS[key] = build_step(decl, sg, rule.v_reset, rule.detach_reset, rule.strict)
    return graph


class Kernels(Protocol):
    """A compiled forward/backward pair."""

    def forward(self, T: int, n: int, buffers: list[Tensor], scalars: list[float]) -> None: ...

    def backward(self, T: int, n: int, buffers: list[Tensor], scalars: list[float]) -> None: ...


class Launcher(Protocol):
    """Builds the kernels of a spec for one backend."""

    def __call__(self, spec: KernelSpec) -> Kernels: ...


@dataclass
class _Operand:
    """A parameter or the threshold as the kernels see it."""

    value: float | None  # scalar, passed by value
    array: Tensor | None  # [N], expanded to the neuron shape
    source: Tensor | None  # the original tensor, when a gradient may be needed
    shape: torch.Size | None  # its shape, to reduce the per-neuron gradient


def _operand(value: Tensor | float, step_shape: torch.Size, dtype: torch.dtype) -> _Operand:
    if not isinstance(value, Tensor):
        return _Operand(float(value), None, None, None)
    if value.dim() == 0:
        return _Operand(float(value.detach()), None, value, value.shape)
    array = value.detach().to(dtype).expand(step_shape).contiguous().view(-1)
    return _Operand(None, array, value, value.shape)


@dataclass
class _Run:
    kernels: Kernels
    spec: KernelSpec
    n: int
    n_states: int
    step_shape: torch.Size
    state_dtype: torch.dtype
    arrays: list[Tensor]
    scalars: list[float]
    operands: list[_Operand]


class _FusedNeuron(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, run: _Run, x: Tensor, *tensors: Tensor) -> tuple[Tensor, ...]:
        T, n = x.shape[0], run.n
        xs = x.detach().contiguous().view(T, n)
        states = [s.detach().reshape(n) for s in tensors[: run.n_states]]
        spikes = torch.empty_like(xs)
        finals = [torch.empty(n, dtype=run.state_dtype, device=x.device) for _ in states]
        rows = -(-T // run.spec.checkpoint)  # saved states: one row per checkpoint
        saved = [
            torch.empty(rows, n, dtype=run.state_dtype, device=x.device) for _ in states
        ] if run.spec.save_states else []  # fmt: skip
        vrec = [torch.empty_like(xs)] if run.spec.record_v else []
        run.kernels.forward(
            T, n, [*run.arrays, xs, *states, spikes, *finals, *saved, *vrec], run.scalars
        )
        ctx.run = run
        ctx.save_for_backward(xs, *saved)
        shape = x.shape
        outputs = [spikes.view(shape), *(f.view(shape[1:]) for f in finals)]
        if vrec:
            outputs.append(vrec[0].view(shape))
            ctx.mark_non_differentiable(outputs[-1])
        return tuple(outputs)

    @staticmethod
    def backward(ctx: Any, grad_spikes: Tensor, *grad_rest: Tensor | None) -> tuple:
        run: _Run = ctx.run
        xs, *saved = ctx.saved_tensors
        T, n = xs.shape
        sd, dev = run.state_dtype, xs.device
        g_spk = grad_spikes.contiguous().view(T, n).to(xs.dtype)
        g_out = [
            torch.zeros(n, dtype=sd, device=dev) if g is None else g.reshape(n).to(sd).contiguous()
            for g in grad_rest[: run.n_states]
        ]
        gx = torch.empty_like(xs)
        g_states = [torch.empty(n, dtype=sd, device=dev) for _ in range(run.n_states)]
        g_params = [torch.empty(n, dtype=sd, device=dev) for g in run.spec.grad_params if g]
        g_theta = [torch.empty(n, dtype=sd, device=dev)] if run.spec.grad_theta else []
        run.kernels.backward(
            T,
            n,
            [*run.arrays, xs, *saved, g_spk, *g_out, gx, *g_states, *g_params, *g_theta],
            run.scalars,
        )
        step_shape = run.step_shape
        grads: list[Tensor | None] = [gx.view(T, *step_shape)]
        grads += [g.view(step_shape) for g in g_states]
        per_neuron = iter([*g_params, *g_theta])
        for op, wants in zip(run.operands, (*run.spec.grad_params, run.spec.grad_theta)):
            if op.source is None:
                continue
            if not wants:
                grads.append(None)
                continue
            g = next(per_neuron).view(step_shape)
            g = g.sum() if op.array is None else g.sum_to_size(op.shape)
            grads.append(g.reshape(op.shape).to(op.source.dtype))
        return (None, *grads)


def run_fused(
    launcher: Launcher,
    ctype: str,
    state_dtype: torch.dtype,
    checkpoint: int,
    decl: NeuronDeclaration,
    x_seq: Tensor,
    state: dict[str, Tensor],
    params: dict[str, Tensor | float],
    threshold: Tensor | float,
    rule: FiringRule,
    record_v: bool,
) -> tuple[Tensor, dict[str, Tensor], Tensor | None]:
    """Run ``decl`` over ``x_seq`` with the kernels ``launcher`` builds.

    ``ctype`` is the compute type the kernels are specialised for; states, saved
    states and gradients of states are kept in ``state_dtype``; the state is saved for
    backward every ``checkpoint`` steps.
    """
    step_shape = x_seq.shape[1:]
    operands = [_operand(params[p], step_shape, state_dtype) for p in decl.param_names]
    operands.append(_operand(threshold, step_shape, state_dtype))
    needs = [op.source is not None and op.source.requires_grad for op in operands]
    states = [
        state[s].to(state_dtype).expand(step_shape).contiguous() for s in decl.state_names
    ]
    grad_on = torch.is_grad_enabled() and (
        x_seq.requires_grad or any(needs) or any(s.requires_grad for s in states)
    )
    spec = KernelSpec(
        step_graph(decl, rule),
        ctype,
        array_params=tuple(op.array is not None for op in operands[:-1]),
        theta_is_array=operands[-1].array is not None,
        save_states=grad_on,
        record_v=record_v,
        grad_params=tuple(needs[:-1]),
        grad_theta=needs[-1],
        checkpoint=checkpoint,
    )
    run = _Run(
        kernels=launcher(spec),
        spec=spec,
        n=step_shape.numel(),
        n_states=len(states),
        step_shape=step_shape,
        state_dtype=state_dtype,
        arrays=[op.array for op in operands if op.array is not None],
        scalars=[op.value for op in operands if op.value is not None],
        operands=operands,
    )
    grad_inputs = [op.source for op in operands if op.source is not None]
    out = _FusedNeuron.apply(run, x_seq, *states, *grad_inputs)
    spikes, finals = out[0], out[1 : 1 + len(states)]
    v_seq = out[-1] if record_v else None
    return spikes, dict(zip(decl.state_names, finals)), v_seq
