"""Online training through time: one step at a time, memory independent of ``T``.

Backpropagation through time keeps every step's activations until the loss of the
whole sequence is known, so its memory grows with ``T``. Spatial learning through time
(SLTT; Meng et al., ICCV 2023, "Towards Memory- and Time-Efficient Backpropagation for
Training Spiking Neural Networks") drops the gradient paths that run through the
neurons' carried state (the membrane's leak and reset from one step to the next) and
keeps the spatial ones, inside each step. The gradient of a loss that is a sum over
steps then splits into one backward pass per step, taken as soon as the step's output
exists: the network runs streaming, one step per call, and each step's graph is freed
before the next step starts. The gradient is BPTT's without its temporal terms (with
``T = 1`` the two are equal); the authors show the dropped terms are small for the
usual time constants and report accuracy on par with BPTT.

OTTT (Xiao et al., NeurIPS 2022; ``trace_decay``, :mod:`spikeflow.training.traces`) is the
same per-step backward in which the Linear and Conv weights learn from a decaying trace
of their inputs instead of the step's input, which puts the temporal dependencies
through a leaky membrane back into the weight updates.

SLTT-K backpropagates only ``K`` of the ``T`` steps, drawn at random for every batch
(the other steps run without a graph), cutting the backward work to ``K / T``. As in
the authors' code, each trained step's loss keeps its ``1 / T`` weight, so the expected
gradient is ``K / T`` times SLTT's (a smaller effective learning rate).

The per-step loss is the training loss applied to one step's output (a sequence of
length one), averaged over the ``T`` steps: for ``ce`` and ``tet`` that is the mean of
the steps' cross-entropies (TET's objective, the loss the authors train with), for
``mse`` the mean of the steps' squared errors against the one-hot target, for
``mse_membrane`` (already a mean over steps of each step's squared error) the loss
itself, and for Lava-DL's ``spike_rate``, ``spike_max`` and ``spike_moid`` the loss of
the rates over that one step (each output 0 or 1 spikes): the same relation to the
sequence's rates as ``mse``'s per-step form to BPTT's ``mse`` (the squared errors of
the steps, not of their mean: ``Σ_t (s_t − r)² = T (s̄ − r)² + Σ_t (s_t − s̄)²``). A
``moving_window`` over past steps is refused (their graphs are gone; Lava-DL's window
is a BPTT loss), and so is ``spike_max``'s ``probability`` mode (its default), infinite
at every step where the label neuron is silent: ``mode=softmax`` is finite. The target
may be labels ``[B]`` or class distributions ``[B, K]`` (mixup and
CutMix: the one mixed target of the batch feeds every step's loss, as it feeds the
whole sequence's in BPTT). Losses of a whole spike train (spike counts, first-spike
times, the maximum of the membrane over time, the contrastive TCL) have no per-step
form and are refused.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.functional import (
    check_no_temporal_only,
    check_not_whole_sequence,
    check_streamable,
    detach_net,
    streaming,
)
from spikeflow.training.traces import PresynapticTraces

__all__ = [
    "PER_STEP_LOSSES",
    "OnlineResult",
    "check_online_model",
    "choose_train_steps",
    "online_backward",
    "per_step_loss",
    "trains_per_step",
]

#: The losses whose per-step form online training optimises (see the module docstring).
PER_STEP_LOSSES = ("mse", "ce", "tet", "mse_membrane", "spike_rate", "spike_max", "spike_moid")
#: Lava-DL's rate losses: per step, the rate over that one step (no moving window).
RATE_LOSSES = ("spike_rate", "spike_max", "spike_moid")


@dataclass(frozen=True)
class OnlineResult:
    """What :func:`online_backward` returns.

    Attributes:
        output: the network's output for every step, ``[T, B, ...]``, detached.
        loss: the mean over all ``T`` steps of the per-step loss (trained or not),
            a detached scalar tensor.
        train_steps: the steps whose loss was backpropagated, ascending.
    """

    output: Tensor
    loss: Tensor
    train_steps: tuple[int, ...]


def trains_per_step(config: object) -> bool:
    """Whether a run of ``config`` trains, and is evaluated on, the per-step loss
    (:func:`per_step_loss`): online training and e-prop do."""
    return bool(getattr(config, "online", False) or getattr(config, "eprop", None))


def check_online_model(model: nn.Module, takes_target: bool = False) -> None:
    """Raise if ``model`` cannot be trained online: it needs whole sequences (parallel
    spiking neurons, another library's neurons: StateError), supervises its own output
    layer from the target (``takes_target``, the event-driven nets), needs the whole
    sequence in one call (a module's ``whole_sequence`` reason), or holds a module
    whose input reaches its output only through carried state (a delay, a resonator),
    through which online training passes no gradient: the layers before it would not
    learn (ConfigurationError).
    """
    if takes_target:
        raise ConfigurationError(
            f"{type(model).__name__} supervises its output spikes from the target over the "
            "whole sequence (event-driven training) and cannot be trained online"
        )
    check_not_whole_sequence(
        model, "online training calls it one step at a time, so it cannot be trained "
        "online; train it with BPTT",
    )  # fmt: skip
    check_streamable(model)
    check_no_temporal_only(
        model,
        "online training (SLTT) drops the gradient through carried state, so the layers "
        "before it would get no (or almost no) gradient; train with BPTT",
    )


def choose_train_steps(
    T: int, k: int | None, generator: torch.Generator | None = None
) -> tuple[int, ...]:
    """The steps SLTT-K backpropagates: ``k`` of ``0 .. T-1`` drawn without replacement
    (all of them when ``k`` is ``None``), ascending.

    Raises:
        ConfigurationError: ``k`` is not an integer from 1 to ``T``.
    """
    if k is None:
        return tuple(range(T))
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= T:
        raise ConfigurationError(f"online_steps must be an integer from 1 to T = {T}, got {k!r}")
    return tuple(sorted(torch.randperm(T, generator=generator)[:k].tolist()))


def online_backward(
    model: nn.Module,
    inputs: Tensor,
    target: Tensor,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    *,
    train_steps: int | None = None,
    generator: torch.Generator | None = None,
    backward: Callable[[Tensor], None] | None = None,
    autocast: Callable[[], contextlib.AbstractContextManager] | None = None,
    trace_decay: float | None = None,
) -> OnlineResult:
    """Run ``model`` over ``inputs`` one step at a time and backpropagate each step's
    loss at once (SLTT; SLTT-K with ``train_steps``); gradients accumulate in ``.grad``.

    The caller zeroes the gradients before and steps the optimizer after, as for one
    ``loss.backward()``. The model runs streaming (its state carried from step to step
    and detached after each one) in the mode it is in; it must return per-step outputs
    (a ``[1, B, ...]`` output for a ``[1, B, ...]`` input).

    Args:
        model: the network (a ``DistributedDataParallel`` wrapper too: the steps run
            without its reduction and the gradients are averaged over the processes
            once, at the end).
        inputs: the input sequence ``[T, B, ...]``.
        target: what ``loss_fn`` compares each step's output with (the same for every
            step: labels ``[B]``, or class distributions ``[B, K]`` of a mixed batch).
        loss_fn: ``loss_fn(out_seq, target)`` on a one-step sequence ``[1, B, K]``, e.g.
            ``spikeflow.losses.get_loss("tet")``; it is called outside ``autocast``, on
            float32 outputs where the model's are half precision.
        train_steps: ``K`` of SLTT-K (the number of steps backpropagated, drawn with
            ``generator``); ``None`` backpropagates every step.
        generator: the random source of the trained steps.
        backward: what backpropagates one step's loss (default ``loss.backward()``;
            with a ``GradScaler``: ``lambda loss: scaler.scale(loss).backward()``).
        autocast: a factory of the context each step's forward runs in (mixed
            precision), or ``None``.
        trace_decay: OTTT (:mod:`spikeflow.training.traces`): the Linear and Conv
            weights learn from presynaptic traces with this decay (``1 - 1/τ`` of the
            network's neurons) instead of each step's input; ``None``: SLTT.

    Raises:
        ShapeError: ``inputs`` has no time dimension, or the model's output of a step
            is not ``[1, B, ...]``.
        StateError: the model cannot stream (parallel spiking neurons, another
            library's neurons): it needs whole sequences.
        ConfigurationError: a module passes its input on only through carried state
            (:func:`check_online_model`).
    """
    if inputs.dim() < 2 or inputs.shape[0] < 1:
        raise ShapeError(
            f"online training needs a time-major input [T, B, ...], got shape {tuple(inputs.shape)}"
        )
    check_online_model(model)
    T = inputs.shape[0]
    chosen = choose_train_steps(T, train_steps, generator)
    run_backward = backward or (lambda loss: loss.backward())
    make_autocast = autocast or contextlib.nullcontext
    # A compiled model (torch.compile, spikeflow train --compile) wraps the DDP module.
    inner = getattr(model, "_orig_mod", model)
    ddp = isinstance(inner, nn.parallel.DistributedDataParallel)
    grad_enabled = torch.is_grad_enabled()
    outputs: list[Tensor] = []
    losses: list[Tensor] = []
    # Under DDP every step runs without its reduction (a step's graph need not reach
    # every parameter: per-step batch norms, SLTT-K); the sums are averaged once below.
    traces = (
        contextlib.nullcontext(None)
        if trace_decay is None
        else PresynapticTraces(getattr(inner, "module", inner), trace_decay)
    )
    with (
        streaming(model),
        inner.no_sync() if ddp else contextlib.nullcontext(),
        traces as tracer,
    ):
        for t in range(T):
            train = grad_enabled and t in chosen
            with torch.set_grad_enabled(train), make_autocast():
                out = model(inputs[t : t + 1])
            if not isinstance(out, Tensor) or out.dim() < 2 or out.shape[0] != 1:
                shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
                raise ShapeError(
                    "online training needs a model that returns one output per step "
                    f"([1, B, ...] for a [1, B, ...] input); got {shape} at step {t}"
                )
            with torch.set_grad_enabled(train):
                loss = loss_fn(_upcast(out), target) / T
            if train:
                run_backward(loss)
            losses.append(loss.detach())
            outputs.append(out.detach())
            detach_net(model)
            if tracer is not None:
                tracer.end_step()
    if ddp and grad_enabled:
        _average_gradients(inner)
    return OnlineResult(torch.cat(outputs), torch.stack(losses).sum(), chosen)


def _average_gradients(model: nn.Module) -> None:
    """Average the accumulated ``.grad`` of every trainable parameter over the processes
    (one all-reduce per dtype; a parameter without a gradient counts as zeros, so every
    process makes the same calls)."""
    import torch.distributed as dist

    world = dist.get_world_size()
    params = [p for p in model.parameters() if p.requires_grad]
    for dtype in sorted({p.dtype for p in params}, key=str):
        group = [p for p in params if p.dtype == dtype]
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                          for p in group])  # fmt: skip
        dist.all_reduce(flat)
        flat /= world
        offset = 0
        for p in group:
            p.grad = flat[offset : offset + p.numel()].view_as(p).clone()
            offset += p.numel()


def per_step_loss(
    loss_fn: Callable[[Tensor, Tensor], Tensor],
) -> Callable[[Tensor, Tensor], Tensor]:
    """``loss_fn`` as online training applies it: to each step of ``out_seq``
    (``[T, B, ...]``) as a one-step sequence, averaged over the steps (what
    :func:`online_backward` reports, for evaluating online runs alike)."""

    def loss(out_seq: Tensor, target: Tensor) -> Tensor:
        steps = out_seq.shape[0]
        return sum(loss_fn(out_seq[t : t + 1], target) for t in range(steps)) / steps

    loss.__name__ = f"per_step({getattr(loss_fn, '__name__', 'loss')})"
    return loss


def _upcast(out: Tensor) -> Tensor:
    """A half-precision output as float32 for the loss (float64 stays float64)."""
    return out.float() if out.dtype in (torch.float16, torch.bfloat16) else out


class _Saved:
    """A tensor autograd saved for the backward pass, counted while the graph holds it."""

    __slots__ = ("__weakref__", "tensor")

    def __init__(self, tensor: Tensor) -> None:
        self.tensor = tensor


def peak_saved_bytes(fn: Callable[[], object]) -> tuple[object, int]:
    """Run ``fn()`` and return its result with the peak number of bytes that autograd
    held saved for backward passes while it ran (on any device; CPU has no allocator
    statistics).

    A saved tensor counts its own elements (a step's slice of the input, not the whole
    input), once however often it is saved, as long as any graph holds it. Parameters
    and inputs that a graph saves count too.
    """
    live: dict[tuple[int, int], list[int]] = {}  # (address, bytes) -> [holders, bytes]
    state = {"now": 0, "peak": 0}

    def release(key: tuple[int, int]) -> None:
        entry = live[key]
        entry[0] -= 1
        if entry[0] == 0:
            state["now"] -= entry[1]
            del live[key]

    def pack(tensor: Tensor) -> _Saved:
        size = tensor.numel() * tensor.element_size()
        key = (tensor.data_ptr(), size)
        if key in live:
            live[key][0] += 1
        else:
            live[key] = [1, size]
            state["now"] += size
            state["peak"] = max(state["peak"], state["now"])
        holder = _Saved(tensor)
        weakref.finalize(holder, release, key)
        return holder

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda holder: holder.tensor):
        result = fn()
    return result, state["peak"]
