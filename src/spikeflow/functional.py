"""Small verbs that act on every spiking module of a network.

>>> set_step_mode(net, "s")           # single-step mode everywhere
>>> with streaming(net):              # carry state across calls (reset on entry and exit)
...     for x_t in x_seq:
...         y_t = net(x_t)
>>> detach_net(net)                   # truncated BPTT: cut the carried state's graph
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import Tensor, nn

from spikeflow.base import MemoryModule, StepModule, check_step_mode
from spikeflow.errors import StateError

__all__ = [
    "check_streamable",
    "detach_net",
    "memory_modules",
    "multi_step_forward",
    "reset_before_call",
    "reset_net",
    "seq_to_ann_forward",
    "set_step_mode",
    "set_streaming",
    "streaming",
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


def memory_modules(net: nn.Module) -> Iterator[MemoryModule]:
    """Yield every module of ``net`` (itself included) that carries state over time."""
    for module in net.modules():
        if isinstance(module, MemoryModule):
            yield module


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
    (SpikingJelly's name; what :class:`~spikeflow.layers.SeqToANNContainer` does)."""
    from spikeflow.layers._time import fold_time

    return fold_time(_chain(module), x_seq)


def multi_step_forward(x_seq: Tensor, module: nn.Module) -> Tensor:
    """Call a single-step ``module`` (or a sequence of them) on each step of ``x_seq``
    (``[T, B, ...]``) and stack the outputs (SpikingJelly's name; what
    :class:`~spikeflow.layers.MultiStepContainer` does). Stateful modules start from
    their initial state and keep nothing after the call, unless they are streaming."""
    from spikeflow.layers._time import run_steps, stepping_memory

    chained = _chain(module)
    with stepping_memory([chained]):
        return run_steps(chained, x_seq)


def _chain(module: nn.Module | list | tuple) -> nn.Module:
    """A module, or a list/tuple of modules applied in order (as SpikingJelly takes)."""
    return nn.Sequential(*module) if isinstance(module, (list, tuple)) else module
