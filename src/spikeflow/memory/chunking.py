"""Temporal chunks of a recomputed block: its ``[T, B, ...]`` call run as ``k`` windows
of time, each window checkpointed on its own.

A :class:`~spikeflow.memory.Recomputed` block with ``time_chunks=k`` splits its input
along time into ``k`` windows and runs them one after the other, its neurons carrying
their state from one window to the next (as :func:`spikeflow.functional.streaming`
does). Each window is one checkpointed call: its input is kept (packed), and the neuron
state entering it is what its recomputation starts from (the snapshot every recomputed
call takes). The backward pass recomputes one window at a time, so the block's live
activations are those of ``T / k`` steps instead of ``T``.

Only a block whose modules can stream is chunked: a module that needs the whole
sequence (PSN, temporal attention, PyTorch's RNNs and multi-head attention reading
dim 0 as the sequence, a batch norm whose statistics are taken over all the steps in
training mode) is refused by name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from spikeflow.base import MemoryModule, SequenceOnly
from spikeflow.errors import ConfigurationError, ShapeError

if TYPE_CHECKING:
    from spikeflow.memory.recompute import Recomputed

__all__ = ["check_chunkable", "check_time_chunks", "run_in_time_chunks"]


def check_time_chunks(time_chunks: int) -> int:
    """``time_chunks`` if it is an int of at least 1, else a ConfigurationError."""
    if isinstance(time_chunks, bool) or not isinstance(time_chunks, int) or time_chunks < 1:
        raise ConfigurationError(f"time_chunks must be an int >= 1, got {time_chunks!r}")
    return time_chunks


#: PyTorch modules that read dim 0 as the sequence when ``batch_first`` is False: an RNN
#: restarts its hidden state at every call, attention attends within the window only.
_TIME_FIRST = (nn.RNNBase, nn.MultiheadAttention)


def _whole_sequence_reason(module: nn.Module, training: bool) -> str:
    """Why ``module`` cannot run its sequence in windows ('' if it can)."""
    from spikeflow.functional import reset_before_call
    from spikeflow.layers.norm import _TemporalEffectiveBatchNorm

    if getattr(module, "streamable", True) is False:
        return "runs whole sequences only"
    reason = getattr(module, "whole_sequence", "")
    if reason:
        return str(reason)
    if isinstance(module, SequenceOnly) and not getattr(module, "multi_step_only", False):
        return str(getattr(module, "sequence_reason", "it takes a whole sequence"))
    if any(hook is reset_before_call for hook in module._forward_pre_hooks.values()):
        return "is another library's neuron, restarted at every call"
    if isinstance(module, _TIME_FIRST) and not module.batch_first:
        if module.__dict__.get("streamable") is not True:
            return (
                "reads its first dim (time, in a [T, B, ...] block) as the sequence, "
                "which a window would cut (set .streamable = True on it if its input "
                "is not time-first)"
            )
    if training and isinstance(module, (_BatchNorm, _TemporalEffectiveBatchNorm)):
        if module.training:
            return "normalises over all the time steps in training mode (call .eval() on it)"
    return ""


def check_chunkable(block: nn.Module, training: bool = True) -> None:
    """Raise a ConfigurationError naming the first module of ``block`` that cannot run
    its sequence in windows of time (``training``: batch norms in training mode
    too, whose statistics a window would change).

    Raises:
        ConfigurationError: a module needs the whole sequence.
    """
    for name, module in block.named_modules():
        reason = _whole_sequence_reason(module, training)
        if reason:
            raise ConfigurationError(
                f"time_chunks > 1: module {name or type(block).__name__!r} "
                f"({type(module).__name__}) cannot run its sequence in windows of time: "
                f"{reason}"
            )


def _explicit_call(block: nn.Module) -> bool:
    """Whether ``block`` runs inside an explicit-state call (:func:`spikeflow.functional.run`),
    which carries its state itself: such a call is not chunked."""
    return any(m.__dict__.get("_explicit") is not None for m in _memories(block))


def _memories(block: nn.Module) -> list[MemoryModule]:
    return [m for m in block.modules() if isinstance(m, MemoryModule)]


def _window_sizes(steps: int, chunks: int) -> list[int]:
    """``steps`` cut into ``min(chunks, steps)`` windows differing by at most one step."""
    count = min(chunks, steps)
    base, extra = divmod(steps, count)
    return [base + 1 if k < extra else base for k in range(count)]


def _cat(outputs: list[Any]) -> Any:
    """The windows' outputs joined along time (a tuple of outputs: each joined)."""
    if isinstance(outputs[0], Tensor):
        return torch.cat(outputs, dim=0)
    if isinstance(outputs[0], tuple) and all(isinstance(o, Tensor) for o in outputs[0]):
        return tuple(torch.cat(parts, dim=0) for parts in zip(*outputs, strict=True))
    raise ConfigurationError(
        "time_chunks > 1: the block must return a [T, B, ...] tensor or a tuple of them, "
        f"got {type(outputs[0]).__name__}"
    )


def _check_window_output(out: Any, steps: int, input_shape: tuple[int, ...]) -> None:
    """Raise a ShapeError unless every tensor of ``out`` has ``steps`` on dim 0: a block
    whose input is not ``[T, B, ...]`` (an encoder's static ``[B, ...]`` image, a
    batch-first sequence) would be cut along the wrong dim and joined along time."""
    parts = out if isinstance(out, tuple) else (out,)
    for part in parts:
        if isinstance(part, Tensor) and (part.dim() == 0 or part.shape[0] != steps):
            raise ShapeError(
                f"time_chunks > 1: a window of {steps} step(s) (dim 0 of the input "
                f"{input_shape}) gave an output of shape {tuple(part.shape)}; the block "
                "must map [T, B, ...] to [T, B, ...] step for step (an encoder of static "
                "input or a batch-first block cannot be chunked)"
            )


def _collect_recorded(
    memories: list[MemoryModule], steps: int, recorded: dict[tuple[int, str], list[Any]]
) -> None:
    """Add what each multi-step module recorded of this window (``_graph_attributes``:
    a neuron's ``v_seq``) to ``recorded``; a value that is not a tensor of the window's
    ``steps`` on dim 0 (a last state, a scalar) is recorded as None: not joined."""
    for k, m in enumerate(memories):
        if m.step_mode != "m":
            continue
        for name in m._graph_attributes:
            value = m.__dict__.get(name)
            per_step = isinstance(value, Tensor) and value.dim() > 0 and value.shape[0] == steps
            recorded.setdefault((k, name), []).append(value if per_step else None)


def _join_recorded(
    memories: list[MemoryModule], recorded: dict[tuple[int, str], list[Any]]
) -> None:
    """Set each recorded sequence to its windows' values joined along time, as the plain
    call records it (a ``store_v_seq`` membrane of all ``T`` steps, not the last
    window's)."""
    for (k, name), values in recorded.items():
        if all(v is not None for v in values):
            setattr(memories[k], name, torch.cat(values, dim=0))


def run_in_time_chunks(
    recomputed: Recomputed, x: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """``recomputed``'s block on ``x`` (``[T, B, ...]``) as ``recomputed.time_chunks``
    checkpointed windows of time, its neurons carrying their state between windows; the
    outputs joined along time. A block that was not streaming starts from its initial
    state and keeps no state afterwards, as a plain call; a streaming one continues
    from its carried state and keeps the last window's. Sequences the modules record
    (``store_v_seq`` membranes) are joined along time, as a plain call records them.

    Raises:
        ConfigurationError: extra arguments, a non-tensor input or output, or a module
            that needs the whole sequence (see :func:`check_chunkable`).
        ShapeError: ``x`` has no time dim, or a window's output has not the window's
            steps on dim 0 (the block changes or does not read dim 0 as time).
    """
    block = recomputed.module
    if args or kwargs:
        raise ConfigurationError(
            "time_chunks > 1: the block must take its [T, B, ...] input alone "
            f"(got {len(args)} more positional and {sorted(kwargs)} keyword arguments)"
        )
    if not isinstance(x, Tensor) or x.dim() < 2:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ShapeError(f"time_chunks > 1: the input must be a [T, B, ...] tensor, got {shape}")
    check_chunkable(block, training=True)
    memories = _memories(block)
    streaming = [m.streaming for m in memories]
    for m, was in zip(memories, streaming):
        if not was:  # a plain call starts from the initial state
            m._state = None
        m.streaming = True
    outputs = []
    recorded: dict[tuple[int, str], list[Any]] = {}
    try:
        for window in torch.split(x, _window_sizes(x.shape[0], recomputed.time_chunks)):
            outputs.append(recomputed._checkpointed(window, (), {}))
            _check_window_output(outputs[-1], window.shape[0], tuple(x.shape))
            _collect_recorded(memories, window.shape[0], recorded)
        _join_recorded(memories, recorded)
    finally:
        for m, was in zip(memories, streaming):
            m.streaming = was
            if not was:  # a plain call keeps no state
                m._state = None
    return _cat(outputs)
