"""Small verbs that act on every spiking module of a network.

>>> set_step_mode(net, "s")           # single-step mode everywhere
>>> with streaming(net):              # carry state across calls (reset on entry and exit)
...     for x_t in x_seq:
...         y_t = net(x_t)
>>> detach_net(net)                   # truncated BPTT: cut the carried state's graph

Also SpikingJelly's forward helpers (:func:`seq_to_ann_forward`, :func:`multi_step_forward`,
:func:`chunk_multi_step_forward`, the time-last ``t_last_*``), :func:`delay`,
:func:`kaiming_normal_conv_linear_weight`, and its output helpers from
:mod:`spikeflow.output_coding` (:func:`first_spike_index`, :func:`redundant_one_hot`,
:func:`kernel_dot_product`, :func:`spike_similar_loss`, :func:`set_threshold_margin`),
and its bit packing and Linear on spikes from :mod:`spikeflow.memory.spike_linear`
(:func:`bit_spike_compress`, :func:`bit_spike_decompress`, :func:`bit_pack_spike_dense`,
:func:`packed_spike_linear`, :func:`sparse_linear`).
See ``docs/functional.md``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from spikeflow._checks import check_int
from spikeflow.base import MemoryModule, StepModule, check_step_mode, check_time_major
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError, StateError
from spikeflow.explicit_state import check_state, check_state_device, run_explicit
from spikeflow.memory.spike_linear import (
    bit_pack_spike_dense,
    bit_spike_compress,
    bit_spike_decompress,
    packed_spike_linear,
    sparse_linear,
)
from spikeflow.neuron_functional import *  # noqa: F403  (re-export: stateless neuron steps)
from spikeflow.output_coding import (
    first_spike_index,
    kernel_dot_product,
    redundant_one_hot,
    set_threshold_margin,
    spike_similar_loss,
)

__all__ = [
    "bit_pack_spike_dense",
    "bit_spike_compress",
    "bit_spike_decompress",
    "check_not_whole_sequence",
    "check_streamable",
    "chunk_multi_step_forward",
    "delay",
    "detach_net",
    "first_spike_index",
    "kaiming_normal_conv_linear_weight",
    "kernel_dot_product",
    "memory_modules",
    "multi_step_forward",
    "packed_spike_linear",
    "redundant_one_hot",
    "reset_before_call",
    "reset_net",
    "run",
    "seq_to_ann_forward",
    "set_step_mode",
    "set_streaming",
    "set_threshold_margin",
    "sparse_linear",
    "spike_similar_loss",
    "streaming",
    "t_last_multi_step_forward",
    "t_last_seq_to_ann_forward",
]


def reset_before_call(module: nn.Module, args: tuple) -> None:
    """Forward pre-hook that restarts ``module`` (a neuron of another library, whose
    ``reset()`` forgets its membrane) at every call: each call is a whole sequence.
    The models register it on such neurons; :func:`streaming` refuses them."""
    module.reset()


def check_streamable(net: nn.Module) -> None:
    """Raise a StateError if ``net`` holds a module :func:`reset_before_call` restarts at
    every call, or one that says it cannot stream (``streamable = False``: it runs whole
    sequences only): streaming would silently restart it at every chunk."""
    for name, module in net.named_modules():
        if getattr(module, "streamable", True) is False:
            raise StateError(
                f"module {name or type(net).__name__!r} ({type(module).__name__}) runs whole "
                "sequences only and cannot carry its state from one chunk to the next: "
                "call the network on the whole sequence instead of streaming it"
            )
        if any(hook is reset_before_call for hook in module._forward_pre_hooks.values()):
            raise StateError(
                f"module {name or type(net).__name__!r} ({type(module).__name__}) is another "
                "library's neuron, restarted at every call, so it cannot carry its state "
                "from one chunk or step to the next: streaming needs spikeflow's neurons"
            )


def check_no_temporal_only(net: nn.Module, consequence: str) -> None:
    """Raise a ConfigurationError naming the first module of ``net`` whose input reaches
    its output only through carried state (a delay, a resonator: it says why in its
    ``temporal_only`` string; '' or absent: it does not), followed by ``consequence``
    (what the caller's training does to that gradient)."""
    for name, module in net.named_modules():
        reason = getattr(module, "temporal_only", "")
        if reason:
            raise ConfigurationError(
                f"module {name or type(net).__name__!r} ({type(module).__name__}) {reason}: "
                f"{consequence}"
            )


def check_not_whole_sequence(net: nn.Module, consequence: str) -> None:
    """Raise a ConfigurationError naming the first module of ``net`` that needs a whole
    sequence in one call (it says why in its ``whole_sequence`` string, e.g. a sequence
    classifier that reads out the mean over all the steps; '' or absent: it does not),
    followed by ``consequence`` (what the caller's training does instead)."""
    for name, module in net.named_modules():
        reason = getattr(module, "whole_sequence", "")
        if reason:
            raise ConfigurationError(
                f"module {name or type(net).__name__!r} ({type(module).__name__}) {reason}: "
                f"{consequence}"
            )


def memory_modules(net: nn.Module) -> Iterator[MemoryModule]:
    """Yield every module of ``net`` (itself included) that carries state over time."""
    for module in net.modules():
        if isinstance(module, MemoryModule):
            yield module


def run(
    net: nn.Module, x: Any, state: Mapping[str, Mapping[str, Tensor]] | None = None
) -> tuple[Any, dict[str, dict[str, Tensor]]]:
    """Call ``net`` as a pure function of its input and the explicit state of every
    stateful module in it (Norse's ``SequentialState``): ``(output, state after the
    call)``, the state a dict from each module's name in ``net.named_modules()`` to its
    state (as :meth:`MemoryModule.run` returns it). ``state`` None (or a module left
    out) starts from the initial state; pass the returned state to the next call to
    continue the sequence, chunk by chunk (multi-step) or step by step (single-step,
    no streaming needed). Containers that step their inner modules (``Recurrent``,
    ...) carry the inner state from step to step within the call, as streaming does.
    Gradients flow through the state; the modules' own carried state and flags are
    left as they were.

    Raises:
        ConfigurationError: a ``state`` that is not a mapping of module names to
            mappings of tensors, or names a module that is not a stateful module of
            ``net``.
        StateError: a module that cannot stream (see :func:`streaming`), a state
            that does not fit the input (or is on another device), misses or adds a
            variable, or belongs to a module the call did not run; a module run twice
            in multi-step mode within the call (used twice in the forward).
    """
    check_streamable(net)
    modules = {name: m for name, m in net.named_modules() if isinstance(m, MemoryModule)}
    given: dict[str, dict[str, Tensor] | None] = {}
    if state is not None:
        if not isinstance(state, Mapping):
            raise ConfigurationError(
                "run: state must be None or a mapping of module names to states (what the "
                f"last run returned), got {type(state).__name__}"
            )
        unknown = [name for name in state if name not in modules]
        if unknown:
            raise ConfigurationError(
                f"run: state names {unknown}, which are not stateful modules of the network "
                f"(those are {list(modules)})"
            )
        given = {name: check_state(value, f"run: state[{name!r}]") for name, value in state.items()}
        for name, value in given.items():
            check_state_device(value, x, f"run: state[{name!r}]")
    return run_explicit(modules, given, lambda: net(x))


def reset_net(net: nn.Module) -> None:
    """Forget the carried state of every stateful module in ``net``."""
    for module in memory_modules(net):
        module.reset()


def detach_net(net: nn.Module) -> None:
    """Detach the carried state of every stateful module (truncated BPTT)."""
    for module in memory_modules(net):
        module.detach()


def set_step_mode(net: nn.Module, step_mode: str) -> None:
    """Set ``step_mode`` (``'s'`` or ``'m'``) on every module of ``net`` that has one.

    Containers that own their children's time dimension (``SeqToANNContainer``,
    ``MultiStepContainer``, ``StepModeContainer``) keep their per-step children as
    they are; a ``StepModeContainer`` switches its own mode, the sequence-only
    containers stay multi-step.
    """
    check_step_mode(step_mode)
    _set_step_mode(net, step_mode)


def _set_step_mode(module: nn.Module, step_mode: str) -> None:
    if isinstance(module, StepModule):
        if module.owns_children_time:
            if not module.multi_step_only:
                module.step_mode = step_mode
            return
        module.step_mode = step_mode
    for child in module.children():
        _set_step_mode(child, step_mode)


def set_streaming(net: nn.Module, enabled: bool) -> None:
    """Turn carried state on or off for every stateful module, resetting each one.

    While streaming, each call continues from where the previous one stopped: feed a
    long sequence chunk by chunk (multi-step) or step by step (single-step), and call
    :func:`reset_net` between sequences.
    """
    if enabled:
        check_streamable(net)
    for module in memory_modules(net):
        module.streaming = bool(enabled)
        module.reset()


@contextmanager
def streaming(net: nn.Module) -> Iterator[nn.Module]:
    """Context in which ``net`` carries state across calls; reset on entry and exit.

    The previous streaming flags are restored on exit.
    """
    check_streamable(net)
    modules = list(memory_modules(net))
    previous = [m.streaming for m in modules]
    for m in modules:
        m.streaming = True
        m.reset()
    try:
        yield net
    finally:
        for m, flag in zip(modules, previous):
            m.streaming = flag
            m.reset()


def seq_to_ann_forward(x_seq: Tensor, module: nn.Module) -> Tensor:
    """Run a stateless per-step ``module`` (or a sequence of them) on ``x_seq``
    (``[T, B, ...]``) with time folded into the batch: one call on ``[T*B, ...]``
    (SpikingJelly's name; what :class:`~spikeflow.layers.SeqToANNContainer` does).

    Raises:
        ConfigurationError: ``module`` holds a neuron or other module that carries
            state from step to step (folding time would mix the steps), or a
            spikeflow module in multi-step mode (it would read ``T*B`` as time).
    """
    from spikeflow.layers._time import check_inner_modules, fold_time

    chained = _chain(module)
    check_inner_modules("seq_to_ann_forward", [chained], stateless=True)
    return fold_time(chained, x_seq)


def multi_step_forward(x_seq: Tensor, module: nn.Module) -> Tensor:
    """Call a single-step ``module`` (or a sequence of them) on each step of ``x_seq``
    (``[T, B, ...]``) and stack the outputs (SpikingJelly's name; what
    :class:`~spikeflow.layers.MultiStepContainer` does). Stateful modules start from
    their initial state and keep nothing after the call, unless they are streaming.
    A sequence of 0 steps raises a :class:`~spikeflow.errors.ShapeError`; a spikeflow
    module in multi-step mode (the default) a
    :class:`~spikeflow.errors.ConfigurationError`, since it would read each step's batch
    dim as time (build it with ``step_mode="s"``, or call it on ``x_seq`` directly)."""
    from spikeflow.layers._time import check_inner_modules, run_steps, stepping_memory

    chained = _chain(module)
    check_inner_modules("multi_step_forward", [chained], stateless=False)
    with stepping_memory([chained]):
        return run_steps(chained, x_seq)


def _chain(module: nn.Module | list | tuple) -> nn.Module:
    """A module, or a list/tuple of modules applied in order (as SpikingJelly takes)."""
    return nn.Sequential(*module) if isinstance(module, (list, tuple)) else module


def chunk_multi_step_forward(
    split_size: int, x_seq: Tensor, multi_step_module: nn.Module
) -> Tensor:
    """``multi_step_module(x_seq)``, computed ``split_size`` steps at a time.

    ``x_seq`` (``[T, B, ...]``) is split along time into chunks of ``split_size`` steps
    (the last one shorter if ``T`` is not a multiple), each chunk goes through the
    module, and the outputs are concatenated back to ``T`` steps. The state is carried
    from one chunk to the next (the memory modules stream for the call: those not
    already streaming start from their initial state and are reset afterwards), so the
    output, and its gradient, equals one call on the whole sequence (except where a
    batch norm in training mode normalises each chunk with that chunk's statistics);
    under ``torch.no_grad()`` the activations of only one chunk are alive at a time
    (long inference, e.g. a converted network run for thousands of steps).

    Args:
        split_size: steps per chunk (>= 1).
        x_seq: the input sequence ``[T, B, ...]``.
        multi_step_module: a network in multi-step mode.

    Raises:
        ConfigurationError: ``split_size`` is not a positive integer.
        ShapeError: ``x_seq`` has fewer than 2 dims.
        StateError: the network holds a module that cannot carry its state from one
            chunk to the next (:func:`check_streamable`).
    """
    split_size = check_int("chunk_multi_step_forward: split_size", split_size, 1)
    check_time_major(x_seq, "chunk_multi_step_forward", single_step=False)
    check_streamable(multi_step_module)
    temporary = [m for m in memory_modules(multi_step_module) if not m.streaming]
    for m in temporary:
        m.reset()
        m.streaming = True
    try:
        return torch.cat([multi_step_module(chunk) for chunk in x_seq.split(split_size)])
    finally:
        for m in temporary:
            m.streaming = False
            m.reset()


def _time_last(x_seq: Tensor, owner: str, per_step: bool = False) -> Tensor:
    """``x_seq`` (``[B, ..., T]``) as a time-major view ``[T, B, ...]``; ``per_step``:
    the modules run once per step, so ``T`` must be at least 1."""
    if not isinstance(x_seq, Tensor):
        raise DTypeError(f"{owner} expects a tensor, got {type(x_seq).__name__}")
    if x_seq.dim() < 2:
        raise ShapeError(
            f"{owner} expects a time-last sequence [B, ..., T] with at least 2 dims; "
            f"got shape {tuple(x_seq.shape)}"
        )
    if per_step and x_seq.shape[-1] == 0:
        raise ShapeError(
            f"{owner} runs its modules once per time step, but the time-last sequence "
            f"[B, ..., T] has T = 0 (shape {tuple(x_seq.shape)})"
        )
    return x_seq.movedim(-1, 0)


def _time_back(y: Any) -> Any:
    """The outputs (a tensor or a tuple) of a time-major call, time moved last again."""
    if isinstance(y, tuple):
        return tuple(_time_back(v) for v in y)
    return y.movedim(0, -1)


def t_last_multi_step_forward(x_seq: Tensor, single_step_module: nn.Module) -> Tensor:
    """:func:`multi_step_forward` for a time-last sequence ``[B, ..., T]``.

    The per-step module (or list of modules) runs on every ``x_seq[..., t]`` in turn
    and the outputs are stacked along the last dim. Stateful modules start from their
    initial state and keep nothing after the call, unless they are streaming.

    Raises:
        ShapeError: ``x_seq`` has fewer than 2 dims, or no time steps (``T = 0``).
    """
    x = _time_last(x_seq, "t_last_multi_step_forward", per_step=True)
    return _time_back(multi_step_forward(x, single_step_module))


def t_last_seq_to_ann_forward(x_seq: Tensor, stateless_module: nn.Module) -> Any:
    """:func:`seq_to_ann_forward` for a time-last sequence ``[B, ..., T]``.

    The stateless module (or list of modules) runs once on the ``T*B`` steps folded
    into the batch; the output (or each tensor of a tuple output) gets its time dim back
    in last place. This equals applying the module to every ``x_seq[..., t]``, except
    for batch norm in training mode, which normalises over all ``T*B`` samples
    (SpikingJelly's ``torch.vmap`` refuses it).
    """
    x = _time_last(x_seq, "t_last_seq_to_ann_forward")
    return _time_back(seq_to_ann_forward(x, stateless_module))


def delay(x_seq: Tensor, delay_steps: int) -> Tensor:
    """``x_seq`` (``[T, ...]``) delayed by ``k = delay_steps`` steps: ``y[t] = x[t − k]``,
    zeros for ``t < k`` (all zeros when ``k >= T``); ``k = 0`` returns ``x_seq``.

    The function form of :class:`~spikeflow.layers.Delay` (which also carries the last
    ``k`` steps between streamed calls); the gradient of ``x[t]`` is that of ``y[t + k]``.

    Raises:
        ConfigurationError: ``delay_steps`` is not an integer >= 0.
        ShapeError: ``x_seq`` is 0-d (it has no time dim).
    """
    k = check_int("delay: delay_steps", delay_steps, 0)
    if not isinstance(x_seq, Tensor):
        raise DTypeError(f"delay expects a tensor, got {type(x_seq).__name__}")
    if x_seq.dim() == 0:
        raise ShapeError("delay expects a sequence [T, ...], got a 0-d tensor")
    if k == 0:
        return x_seq
    k = min(k, x_seq.shape[0])  # (k >= T: all zeros, still in x_seq's graph)
    return torch.cat([x_seq.new_zeros(k, *x_seq.shape[1:]), x_seq[: x_seq.shape[0] - k]])


def kaiming_normal_conv_linear_weight(net: nn.Module) -> None:
    """Re-draw the weight (not the bias) of every ``Conv1d/2d/3d`` and ``Linear`` of
    ``net`` (spikeflow's sequence layers included) from Kaiming's normal distribution,
    ``torch.nn.init.kaiming_normal_(w, a=sqrt(5))``: standard deviation
    ``sqrt(2 / (1 + 5)) / sqrt(fan_in) = 1 / sqrt(3 fan_in)``. Transposed convolutions
    are left as they are (as SpikingJelly does)."""
    kinds = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
    for module in net.modules():
        if isinstance(module, kinds):
            nn.init.kaiming_normal_(module.weight, a=math.sqrt(5))
