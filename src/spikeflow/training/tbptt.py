"""Truncated backpropagation through time (TBPTT): a sequence trained in windows of ``K``.

BPTT keeps every step's activations until the loss of the whole sequence is known.
TBPTT (Williams & Peng 1990; snnTorch's ``snntorch.backprop.TBPTT``) runs a batch
``[T, B, ...]`` in windows of ``K`` steps: the network streams (its state carried from
one window to the next), each window's loss is taken on that window's outputs and
backpropagated at once, and the carried state is then detached, so no gradient crosses
a window boundary and only one window's graph is alive at a time (memory grows with
``K``, not ``T``). Within a window the gradient is BPTT's, through the carried state
too; with ``K = T`` it is BPTT. When ``T`` is not a multiple of ``K`` the last window
is shorter (``T mod K`` steps).

Two ways to use the windows' gradients:

- ``"window"`` (the default of :func:`tbptt_step` and of ``spikeflow train --tbptt``):
  one optimizer step after every window, on that window's loss (weight 1), then the
  next window runs on the updated weights (snnTorch's TBPTT, Williams & Peng's: a long
  sequence makes ``ceil(T / K)`` updates instead of one). This is the default because
  it is what TBPTT means where spikeflow's users meet it (snnTorch, the literature).
- ``"batch"`` (gradient accumulation): the windows' gradients add up in ``.grad``, each
  window's loss weighted by its share of the steps (``len / T``), and the optimizer
  steps once per batch. The loss is then the length-weighted mean of the window losses
  (for a loss that is a mean over steps, ``tet`` or ``mse_membrane``, the loss of the
  whole sequence) and with ``K = T`` the update is BPTT's: the memory of ``K`` steps
  with BPTT's number of updates.

The loss is applied to each window's outputs ``[len, B, ...]``: the losses read a rate,
a count relative to the window's length or every step (``mse``, ``ce``, ``tet``,
``mse_membrane``, ``ce_max_membrane`` (the window's maximum), ``ce_count``,
``mse_count``, ``ce+``, Lava-DL's ``spike_rate``, ``spike_max`` and ``spike_moid``) mean
the same over a window. Those of the whole sequence are refused (:data:`WHOLE_SEQUENCE_LOSSES`):
first-spike times (``ttfs``, ``mse_temporal``, ``ce_temporal``: a window holds at most
part of the train and its times restart at 0), absolute spike counts for the ``T``
steps (``count``, ``count+``, ``sum0``), target spike trains of ``T`` steps
(``timing``, ``kernel``: the spikes' order and the filter's state run over the whole
train) and ``tcl`` and ``stcl``, which contrast every pair of the sequence's steps. A
batch norm normalises each window over its own steps and samples.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from spikeflow._checks import check_int
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.functional import (
    check_no_temporal_only,
    check_not_whole_sequence,
    check_streamable,
    detach_net,
    streaming,
)
from spikeflow.losses import (
    ce_temporal_loss,
    loss_key,
    mse_temporal_loss,
    spike_count_loss,
    spike_count_plus_loss,
    spike_count_sum0_loss,
    spike_kernel_loss,
    spike_timing_loss,
    stcl_loss,
    tcl_loss,
    ttfs_loss,
)

__all__ = [
    "UPDATES",
    "WHOLE_SEQUENCE_LOSSES",
    "TBPTTResult",
    "check_tbptt_model",
    "check_window_loss",
    "tbptt_backward",
    "tbptt_step",
    "tbptt_windows",
    "windowed_loss",
]

#: When the weights are updated: after every window, or once per batch (accumulated).
UPDATES = ("window", "batch")

_TIMES = "first-spike times, which a window holds at most part of (its times restart at 0)"
_COUNTS = "spike counts for all T steps (a window has fewer steps to reach them)"
#: The losses of the whole sequence that TBPTT refuses: name -> what they need.
WHOLE_SEQUENCE_LOSSES: dict[str, str] = {
    "ttfs": _TIMES,
    "mse_temporal": _TIMES,
    "ce_temporal": _TIMES,
    "count": _COUNTS,
    "count+": _COUNTS,
    "sum0": _COUNTS,
    "timing": "the target spike train of all T steps (the k-th spike's time)",
    "kernel": "the target spike train of all T steps (its filter runs over them)",
    "tcl": "pairs of all the sequence's steps (its temporal contrast)",
    "stcl": "pairs of all the sequence's steps (its temporal contrast)",
}
_FUNCTIONS = {
    "ttfs": ttfs_loss, "mse_temporal": mse_temporal_loss, "ce_temporal": ce_temporal_loss,
    "count": spike_count_loss, "count+": spike_count_plus_loss, "sum0": spike_count_sum0_loss,
    "timing": spike_timing_loss, "kernel": spike_kernel_loss, "tcl": tcl_loss,
    "stcl": stcl_loss,
}  # fmt: skip


@dataclass(frozen=True)
class TBPTTResult:
    """What :func:`tbptt_backward` and :func:`tbptt_step` return.

    Attributes:
        output: the network's output for every step, ``[T, B, ...]``, detached.
        loss: the windows' losses weighted by their share of the steps (``len / T``)
            and summed, a detached scalar tensor (each window's as it ran: with
            per-window updates, on the weights of that window).
        window_losses: each window's loss (unweighted), detached.
        windows: each window's ``(start, stop)`` steps.
    """

    output: Tensor
    loss: Tensor
    window_losses: tuple[Tensor, ...]
    windows: tuple[tuple[int, int], ...]


def tbptt_windows(T: int, window: int) -> tuple[tuple[int, int], ...]:
    """The ``(start, stop)`` steps of the windows of ``window`` steps over ``T`` steps;
    the last one is shorter when ``window`` does not divide ``T``.

    Raises:
        ConfigurationError: ``T`` is not a positive integer, or ``window`` is not an
            integer from 1 to ``T``.
    """
    T = check_int("tbptt: T", T, 1)
    if isinstance(window, bool) or not isinstance(window, int) or not 1 <= window <= T:
        raise ConfigurationError(
            f"tbptt: the window K must be an integer from 1 to T = {T} (the steps of a "
            f"sample; K = T is BPTT), got {window!r}"
        )
    return tuple((start, min(start + window, T)) for start in range(0, T, window))


def check_window_loss(loss: str | Callable[..., Tensor]) -> None:
    """Raise a ConfigurationError if ``loss`` (a :func:`spikeflow.losses.get_loss` name,
    or the function it returns) is one of :data:`WHOLE_SEQUENCE_LOSSES`. Other
    callables are taken as they are (a loss of the caller's own applies per window)."""
    name = _whole_sequence_name(loss)
    if name is not None:
        raise ConfigurationError(
            f"truncated BPTT applies the loss to each window of K steps, but loss {name!r} "
            f"needs {WHOLE_SEQUENCE_LOSSES[name]}: train it with BPTT, or use a loss of "
            "rates, per-window counts or every step (mse, ce, tet, mse_membrane, "
            "ce_max_membrane, ce_count, mse_count, ce+, spike_rate, spike_max, spike_moid)"
        )


def _whole_sequence_name(loss: object) -> str | None:
    if isinstance(loss, str):
        key = loss_key(loss)
        return key if key in WHOLE_SEQUENCE_LOSSES else None
    inner = getattr(loss, "func", loss)  # functools.partial
    for name, fn in _FUNCTIONS.items():
        # get_loss(name, **kwargs) binds the arguments into a function named after it
        bound = getattr(inner, "__doc__", None) is fn.__doc__ and str(
            getattr(inner, "__name__", "")
        ).startswith(f"{fn.__name__}(")
        if inner is fn or bound:
            return name
    return None


def check_tbptt_model(model: nn.Module, window: int = 2, takes_target: bool = False) -> None:
    """Raise if ``model`` cannot be trained in windows: it needs whole sequences
    (parallel spiking neurons, another library's neurons: StateError, naming the
    module), supervises its own output layer from the target over the whole sequence
    (``takes_target``, the event-driven nets: ConfigurationError), needs the whole
    sequence in one call (a module's ``whole_sequence`` reason: the sequence classifiers
    with ``input_mode='pixels'``; ConfigurationError), returns one output per call
    (``pooled_output``: the sequence classifiers) for windows of K >= 2 steps
    (ConfigurationError), or, for windows of
    one step, holds a module whose input reaches its output only through carried state
    (a delay, a resonator): the gradient stops at every window boundary, so the layers
    before it would learn nothing (ConfigurationError). With longer windows a delay
    passes the gradient of the pairs of steps within a window.
    """
    if takes_target:
        raise ConfigurationError(
            f"{type(model).__name__} supervises its output spikes from the target over the "
            "whole sequence (event-driven training) and cannot be trained in TBPTT windows"
        )
    check_not_whole_sequence(
        model, "truncated BPTT calls it on windows of K steps, so it cannot be trained in "
        "TBPTT windows; train it with BPTT",
    )  # fmt: skip
    check_streamable(model)
    pooled = getattr(model, "pooled_output", "")
    if window > 1 and pooled:
        raise ConfigurationError(
            f"{type(model).__name__} {pooled}, and truncated BPTT takes each window's loss "
            f"on an output per step: windows of K = {window} steps cannot be trained; use "
            "K = 1 (one step per call) or BPTT"
        )
    if window > 1:
        return
    check_no_temporal_only(
        model,
        "truncated BPTT with windows of K = 1 step detaches the carried state after every "
        "step, so the layers before it would get no gradient; use K >= 2",
    )


def tbptt_backward(
    model: nn.Module,
    inputs: Tensor,
    target: Tensor,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    window: int,
    *,
    step: Callable[[int, Tensor], None] | None = None,
    target_per_step: bool = False,
    backward: Callable[[Tensor], None] | None = None,
    autocast: Callable[[], contextlib.AbstractContextManager] | None = None,
) -> TBPTTResult:
    """Run ``model`` over ``inputs`` in windows of ``window`` steps, backpropagating each
    window's loss at once and detaching the carried state after it (module docstring).

    Without ``step`` the windows' gradients accumulate in ``.grad``, each window's loss
    weighted by ``len / T`` (the caller zeroes the gradients before and steps the
    optimizer after, as for one ``loss.backward()``; with ``window = T``: BPTT). With
    ``step``, ``step(i, loss_i)`` is called after window ``i``'s backward (its loss
    unweighted, detached) to update the weights and zero the gradients before the next
    window runs (snnTorch's TBPTT; :func:`tbptt_step` passes one). The model runs
    streaming in the mode it is in (reset before the first window and after the last);
    it must return an output per step (``[len, B, ...]`` for a ``[len, B, ...]``
    input). Under ``torch.no_grad()`` nothing is backpropagated and ``step`` is not
    called.

    Args:
        model: a network that can stream (multi-step or single-step modules).
        inputs: the input sequence ``[T, B, ...]``.
        target: what ``loss_fn`` compares each window's output with: the same for every
            window (labels ``[B]``, class distributions ``[B, K]``) or, with
            ``target_per_step``, a target per step ``[T, ...]`` sliced with the window.
        loss_fn: ``loss_fn(out_window, target)``, e.g. ``spikeflow.losses.get_loss("ce")``;
            called outside ``autocast``, on float32 outputs where the model's are half
            precision. The losses of the whole sequence are refused
            (:func:`check_window_loss`).
        window: ``K``, the steps per window, from 1 to ``T``.
        step: the update after each window (``None``: accumulate, one update per batch).
        target_per_step: ``target``'s first dim is time (``mse_membrane``'s per-step
            labels ``[T, B]``; snnTorch's ``time_var_targets``).
        backward: what backpropagates a window's loss (default ``loss.backward()``; with
            a ``GradScaler``: ``lambda loss: scaler.scale(loss).backward()``).
        autocast: a factory of the context each window's forward runs in, or ``None``.

    Raises:
        ShapeError: ``inputs`` has no time dimension, a per-step ``target`` has not
            ``T`` steps, or the model's output of a window does not have its steps.
        ConfigurationError: a bad ``window``, a loss of the whole sequence, or a model
            :func:`check_tbptt_model` refuses.
        StateError: the model cannot stream (it needs whole sequences).
    """
    if not isinstance(inputs, Tensor) or inputs.dim() < 2 or inputs.shape[0] < 1:
        shape = tuple(inputs.shape) if isinstance(inputs, Tensor) else type(inputs).__name__
        raise ShapeError(f"tbptt needs a time-major input [T, B, ...], got {shape}")
    T = inputs.shape[0]
    spans = tbptt_windows(T, window)
    check_window_loss(loss_fn)
    check_tbptt_model(model, window, bool(getattr(model, "takes_target", False)))
    if target_per_step and (not isinstance(target, Tensor) or target.shape[:1] != (T,)):
        shape = tuple(target.shape) if isinstance(target, Tensor) else type(target).__name__
        raise ShapeError(
            f"tbptt: target_per_step needs a target [T, ...] with T = {T} steps, got {shape}"
        )
    run_backward = backward or (lambda loss: loss.backward())
    make_autocast = autocast or contextlib.nullcontext
    train = torch.is_grad_enabled()
    outputs: list[Tensor] = []
    losses: list[Tensor] = []
    with streaming(model):
        for index, (start, stop) in enumerate(spans):
            with make_autocast():
                out = model(inputs[start:stop])
            if not isinstance(out, Tensor) or out.dim() < 2 or out.shape[0] != stop - start:
                shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
                raise ShapeError(
                    "tbptt needs a model that returns one output per step ([K, B, ...] for "
                    f"a [K, B, ...] input); got {shape} for steps {start} to {stop - 1}"
                )
            part = target[start:stop] if target_per_step else target
            loss = loss_fn(_upcast(out), part)
            share = (stop - start) / T
            if train:
                run_backward(loss if step is not None else loss * share)
            losses.append(loss.detach())
            outputs.append(out.detach())
            detach_net(model)
            if train and step is not None:
                step(index, losses[-1])
    total = sum(((b - a) / T) * loss for (a, b), loss in zip(spans, losses))
    return TBPTTResult(torch.cat(outputs), total, tuple(losses), spans)  # type: ignore[arg-type]


def tbptt_step(
    model: nn.Module,
    inputs: Tensor,
    target: Tensor,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    window: int,
    *,
    update: str = "window",
    target_per_step: bool = False,
) -> TBPTTResult:
    """Train ``model`` on one batch ``inputs`` ``[T, B, ...]`` by truncated BPTT with
    windows of ``window`` steps: ``update="window"`` (default, snnTorch's) steps
    ``optimizer`` after every window on that window's loss; ``update="batch"``
    accumulates the windows' gradients (each loss weighted by ``len / T``) and steps
    once. The gradients are zeroed before the first window (and, with per-window
    updates, after each step). See :func:`tbptt_backward` for the other arguments.

    Raises:
        ConfigurationError: ``update`` is not ``"window"`` or ``"batch"``, or what
            :func:`tbptt_backward` raises.
    """
    if update not in UPDATES:
        raise ConfigurationError(
            f"tbptt: update must be one of {', '.join(UPDATES)}, got {update!r}"
        )

    def after_window(index: int, loss: Tensor) -> None:
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    optimizer.zero_grad(set_to_none=True)
    result = tbptt_backward(
        model, inputs, target, loss_fn, window,
        step=after_window if update == "window" else None, target_per_step=target_per_step,
    )  # fmt: skip
    if update == "batch" and torch.is_grad_enabled():
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return result


def windowed_loss(
    loss_fn: Callable[[Tensor, Tensor], Tensor], window: int
) -> Callable[[Tensor, Tensor], Tensor]:
    """``loss_fn`` as truncated BPTT applies it: to each window of ``window`` steps of
    ``out_seq`` (``[T, B, ...]``), weighted by the window's share of the steps and
    summed (the loss :func:`tbptt_backward` reports, for evaluating TBPTT runs alike;
    a sequence shorter than ``window`` is one window)."""

    def loss(out_seq: Tensor, target: Tensor) -> Tensor:
        steps = out_seq.shape[0]
        spans = tbptt_windows(steps, min(window, steps))
        return sum(((b - a) / steps) * loss_fn(out_seq[a:b], target) for a, b in spans)

    loss.__name__ = f"windowed({getattr(loss_fn, '__name__', 'loss')}, K={window})"
    return loss  # type: ignore[return-value]


def _upcast(out: Tensor) -> Tensor:
    """A half-precision output as float32 for the loss (float64 stays float64)."""
    return out.float() if out.dtype in (torch.float16, torch.bfloat16) else out
