"""Recompute blocks of a spiking network in the backward pass instead of keeping their
activations (gradient checkpointing), with the input of each block kept as bits.

Backpropagation through time keeps every layer's activations of all ``T`` steps until
the backward pass, so memory grows with depth x ``T``. A :class:`Recomputed` block keeps
only its input; in the backward pass it runs its forward again to rebuild what its
gradients need (PyTorch's non-reentrant :func:`torch.utils.checkpoint.checkpoint`).
Spiking blocks take spikes, so the kept input is packed at one bit per element
(:mod:`spikeflow.memory.packing`): a float32 input costs 1/32 of its size; an input of
small counts (a SEW ResNet block's, spikes plus its shortcut) is kept as bytes, 1/4.
The price is one more forward pass of the recomputed blocks.

What makes recomputing a *spiking* block exact:

* **Carried state.** A streaming neuron starts a call from the state the previous call
  left. The recomputation starts from what every memory module held at the forward
  call: its instance attributes (the carried state, kept by reference, a step counter,
  the streaming switch and per-call caches a container's steps set up), and every
  module's train/eval mode. Afterwards they are put back as they were before it, the
  recorded membranes too: recomputing leaves no trace in the network.
* **Buffers.** Buffers the forward call changed in place (batch norm's running
  statistics, counters) are recomputed from copies of their values before the call,
  so the live buffers are updated once, not twice.
* **Random draws** (dropout) are replayed: the random generators' states are restored
  for the recomputation (``preserve_rng_state``), and those of generators the block's
  modules hold (a Poisson encoder's).
* **Hooks** run again in the recomputation. spikeflow's own (the training monitors,
  OTTT's traces, the energy counters) skip it through :func:`is_recomputing`; a hook of
  yours that counts or records should do the same.

PyTorch checks that the recomputation saves as many tensors as the forward call did,
of the same shapes, dtypes and devices, and raises an error if not; it does not compare
their values (a recomputation that drew other spikes would go unnoticed).
"""

from __future__ import annotations

import contextlib
import copy
import threading
from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from spikeflow._compile_marks import eager_under_compile
from spikeflow.base import MemoryModule
from spikeflow.errors import ConfigurationError
from spikeflow.explicit_state import _ExplicitState
from spikeflow.kernels.second_order import second_order, second_order_enabled
from spikeflow.memory.chunking import (
    _explicit_call,
    check_chunkable,
    check_time_chunks,
    run_in_time_chunks,
)
from spikeflow.memory.packing import (
    PackedSpikes,
    pack_counts,
    pack_spikes,
    try_pack_counts,
    try_pack_spikes,
    unpack_spikes,
)

__all__ = ["Recomputed", "is_recomputing", "reruns_forward"]

PackMode = Literal["auto", "bits", "uint8", "none"]
_PACK_MODES = ("auto", "bits", "uint8", "none")

_local = threading.local()


def is_recomputing() -> bool:
    """Whether a :class:`Recomputed` block is running its forward again for the backward
    pass (in this thread)."""
    return getattr(_local, "depth", 0) > 0


def reruns_forward() -> bool:
    """Whether this forward call runs again for a backward pass (in this thread): a
    :class:`Recomputed` block's, or ``torch.utils.checkpoint``'s (reentrant or not),
    which reruns the forward inside the autograd engine. Forward hooks that count or
    record should skip that call. (For forward hooks only: a backward hook always runs
    inside the engine.)"""
    if is_recomputing():
        return True
    if torch.compiler.is_compiling():  # (a compiled backward runs no Python hooks)
        return False
    # inside the autograd engine (torch.utils.checkpoint asks the same of it)
    task = getattr(torch._C, "_current_graph_task_id", None)
    return task is not None and task() != -1


class _ZeroProxy(torch.autograd.Function):
    """Zeros shaped like ``x`` (one element broadcast: no memory) whose gradient is
    passed on to ``x``: the graph edge to ``x`` without keeping ``x``."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        return x.new_zeros(()).expand(x.shape)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        return grad


def _unpack(kept: Tensor, shape: torch.Size, dtype: torch.dtype) -> Tensor:
    """The kept input back: bits (a 1-D uint8 tensor of ``ceil(numel / 8)`` bytes) or
    counts (uint8, of the input's shape), told apart by ``shape``'s type: a
    ``torch.Size`` for bits, a tuple for counts."""
    if isinstance(shape, torch.Size):
        return unpack_spikes(PackedSpikes(kept, shape, dtype))
    return kept.to(dtype)


class _Unpacked(torch.autograd.Function):
    """The packed input unpacked, its gradient passed to the proxy (and so to ``x``)."""

    @staticmethod
    def forward(
        ctx: Any, bits: Tensor, shape: torch.Size, dtype: torch.dtype, proxy: Tensor
    ) -> Tensor:
        return _unpack(bits, shape, dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[None, None, None, Tensor]:
        return None, None, None, grad


class _Snapshot:
    """What a recomputation of one forward call starts from, and the switch that puts
    the network back afterwards."""

    def __init__(self, module: nn.Module) -> None:
        self.memories = [m for m in module.modules() if isinstance(m, MemoryModule)]
        self.states = [_attributes(m, skip=m._graph_attributes) for m in self.memories]
        self.modes = [(m, m.training) for m in module.modules()]
        self.generators = [(g, g.get_state()) for g in _own_generators(module)]
        self.module = module
        buffers = dict(module.named_buffers(remove_duplicate=False))
        self.buffers_before = {
            name: (b, b._version, b.detach().clone()) for name, b in buffers.items()
        }
        self.changed_buffers: dict[str, Tensor] = {}
        self.active = False
        # The recomputation runs in the backward pass, outside the forward's opt-in:
        # its fused neurons must keep what a second-order backward reads, as the
        # forward's did (else the saved tensors differ, or the gradient has no graph).
        self.second_order = second_order_enabled()

    def forward_done(self) -> None:
        """Keep the values from before the call only of buffers the call changed (compared
        by value: batch norm updates its running statistics without a version bump)."""
        now = dict(self.module.named_buffers(remove_duplicate=False))
        self.changed_buffers = {
            name: before
            for name, (live, version, before) in self.buffers_before.items()
            if now.get(name) is not live
            or live._version != version
            or not torch.equal(live, before)
        }
        self.buffers_before = {}

    def __enter__(self) -> None:
        """Enter a recomputation (the backward pass may run it more than once): start
        from the forward call's carried state and modes."""
        self.current = [_attributes(m) for m in self.memories]
        self.current_modes = [m.training for m, _ in self.modes]
        for m, attributes in zip(self.memories, self.states):
            _set_attributes(m, attributes, keep=m._graph_attributes)
        for m, training in self.modes:
            m.training = training
        self.current_generators = [g.get_state() for g, _ in self.generators]
        for g, generator_state in self.generators:
            g.set_state(generator_state)
        _local.depth = getattr(_local, "depth", 0) + 1
        self.second_order_context = second_order(self.second_order)
        self.second_order_context.__enter__()
        self.active = True

    def __exit__(self, *exc: object) -> None:
        """Put every carried state, recorded tensor and mode back as before the
        recomputation."""
        self.active = False
        _local.depth -= 1
        self.second_order_context.__exit__(None, None, None)
        for m, attributes in zip(self.memories, self.current):
            _set_attributes(m, attributes)
        for (m, _), training in zip(self.modes, self.current_modes):
            m.training = training
        for (g, _), generator_state in zip(self.generators, self.current_generators):
            g.set_state(generator_state)
        self.current = []


def _own_generators(module: nn.Module) -> list[torch.Generator]:
    """The random generators the modules of ``module`` hold (a Poisson encoder's): the
    recomputation replays their draws as PyTorch replays the global generators'."""
    found = {
        id(value): value
        for m in module.modules()
        for value in m.__dict__.values()
        if isinstance(value, torch.Generator)
    }
    return list(found.values())


#: An ``nn.Module``'s own registries (parameters, buffers, submodules, hooks): not state.
_REGISTRIES = frozenset(nn.Module().__dict__) - {"training"}


def _copied(value: Any) -> Any:
    """Dicts and lists copied (a call may fill them in place), and an explicit-state
    call's slot (:meth:`MemoryModule.run`, which each call moves on to its final state),
    other values as they are."""
    return copy.copy(value) if isinstance(value, dict | list | _ExplicitState) else value


def _attributes(m: MemoryModule, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """What a call of ``m`` may read and change besides its parameters and buffers: its
    instance attributes (the carried state, the streaming switch, a step counter, a
    per-call cache), but its registries and ``skip``."""
    return {
        name: _copied(value)
        for name, value in m.__dict__.items()
        if name not in _REGISTRIES and name not in skip
    }


def _set_attributes(
    m: MemoryModule, attributes: dict[str, Any], keep: tuple[str, ...] = ()
) -> None:
    """``m``'s attributes (but its registries and ``keep``) made those of ``attributes``."""
    for name in [n for n in m.__dict__ if n not in _REGISTRIES and n not in keep]:
        if name not in attributes:
            del m.__dict__[name]
    m.__dict__.update({name: _copied(value) for name, value in attributes.items()})


def _check_pack(pack: str) -> PackMode:
    if pack not in _PACK_MODES:
        raise ConfigurationError(f"pack must be one of {_PACK_MODES}, got {pack!r}")
    return pack  # type: ignore[return-value]


class Recomputed(nn.Module):
    """``module``, run again in the backward pass instead of keeping its activations.

    The outputs, gradients, carried states and buffers are those of ``module`` itself
    (see the module docstring for how). The ``state_dict`` has the keys of ``module``'s
    own (no ``module.`` prefix), so a checkpoint loads with or without recomputation.
    Without gradients (evaluation, ``torch.no_grad``) it simply calls ``module``.

    Args:
        module: the block (any ``nn.Module``; its first positional argument is the input
            that is kept).
        pack: how the kept input is stored. ``"auto"`` (default): as bits when every
            element is 0 or 1 (spikes), as bytes when every element is an integer from
            0 to 255 (spike counts), else as it is. ``"bits"``: always as bits;
            ``"uint8"``: always as bytes; an input with another value raises a
            ConfigurationError. ``"none"``: as it is.
        time_chunks: run a ``[T, B, ...]`` input as this many windows of time (sizes
            differing by at most one step), each checkpointed on its own with the
            neuron state entering it, its neurons carrying their state from one to the
            next: the block's live activations in the backward pass are those of
            ``T / time_chunks`` steps (:mod:`spikeflow.memory.chunking`). 1 (default):
            the whole call. A block holding a module that needs the whole sequence
            (PSN, temporal attention; a batch norm in training mode, at the call) is
            refused with a ConfigurationError naming it. Calls inside
            :func:`spikeflow.functional.run` are not chunked.
    """

    def __init__(self, module: nn.Module, pack: PackMode = "auto", time_chunks: int = 1) -> None:
        super().__init__()
        if not isinstance(module, nn.Module):
            raise ConfigurationError(f"Recomputed takes an nn.Module, got {type(module).__name__}")
        if isinstance(module, Recomputed):
            raise ConfigurationError("this module is already Recomputed")
        self.module = module
        self.pack = _check_pack(pack)
        self.time_chunks = check_time_chunks(time_chunks)
        if self.time_chunks > 1:
            check_chunkable(module, training=False)
        self.register_state_dict_post_hook(_strip_prefix)
        self.register_load_state_dict_pre_hook(_add_prefix)

    @eager_under_compile  # (Dynamo cannot trace a checkpoint with a context_fn)
    def forward(self, x: Any, *args: Any, **kwargs: Any) -> Any:
        """``module(x, *args, **kwargs)``, recomputed in the backward pass. Under
        ``torch.compile`` it runs eagerly (a graph break on each side)."""
        if not torch.is_grad_enabled():
            return self.module(x, *args, **kwargs)
        if self.time_chunks > 1 and not _explicit_call(self.module):
            return run_in_time_chunks(self, x, args, kwargs)
        return self._checkpointed(x, args, kwargs)

    def _checkpointed(self, x: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """One call of the block, checkpointed: its input kept (packed), the state it
        starts from snapshotted for the recomputation."""
        snapshot = _Snapshot(self.module)
        run = self._runner(snapshot, kwargs)
        kept: tuple[Tensor, Any] | None = None
        if isinstance(x, Tensor):
            kept = _kept_input(x, self.pack)
        if kept is not None:
            proxy = _ZeroProxy.apply(x) if x.requires_grad else None
            inputs: tuple[Any, ...] = (kept[0], kept[1], x.dtype, proxy)
        else:
            inputs = (x, None, None, None)
        try:
            out = checkpoint(
                run,
                *inputs,
                *args,
                use_reentrant=False,
                context_fn=lambda: (contextlib.nullcontext(), snapshot),
            )
        finally:
            snapshot.forward_done()
        return out

    def _runner(self, snapshot: _Snapshot, kwargs: dict[str, Any]) -> Callable[..., Any]:
        module = self.module

        def run(x: Any, shape: Any, dtype: Any, proxy: Tensor | None, *args: Any) -> Any:
            if shape is not None and proxy is not None:  # packed; x's gradient to proxy
                x = _Unpacked.apply(x, shape, dtype, proxy)
            elif shape is not None:  # packed
                x = _unpack(x, shape, dtype)
            if not snapshot.active:
                return module(x, *args, **kwargs)
            buffers = {name: b.clone() for name, b in snapshot.changed_buffers.items()}
            return torch.func.functional_call(module, buffers, (x, *args), kwargs, strict=False)

        return run

    def extra_repr(self) -> str:
        chunks = f", time_chunks={self.time_chunks}" if self.time_chunks > 1 else ""
        return f"pack={self.pack!r}{chunks}"


def _kept_input(x: Tensor, pack: PackMode) -> tuple[Tensor, Any] | None:
    """What :class:`Recomputed` keeps of its input ``x`` under ``pack``: (bits, its
    ``torch.Size``) or (counts, its shape as a tuple), or None to keep ``x`` itself."""
    if pack == "bits":
        return pack_spikes(x).bits, x.shape
    if pack == "uint8":
        return pack_counts(x), tuple(x.shape)
    if pack == "auto" and x.numel() > 0:
        bits = try_pack_spikes(x)
        if bits is not None:
            return bits.bits, x.shape
        counts = try_pack_counts(x)
        if counts is not None:
            return counts, tuple(x.shape)
    return None


def _strip_prefix(module: nn.Module, state_dict: dict, prefix: str, local_metadata: Any) -> None:
    inner = prefix + "module."
    for key in [k for k in state_dict if k.startswith(inner)]:
        state_dict[prefix + key[len(inner) :]] = state_dict.pop(key)


def _add_prefix(
    module: nn.Module, state_dict: dict, prefix: str, local_metadata: Any, *args: Any
) -> None:
    """The block's keys as :func:`_strip_prefix` wrote them, given their ``module.``
    back. A key the block does not have is left as it is: a key with the prefix already
    (from ``named_parameters``), or an unexpected one (reported as such)."""
    own = set(module.module.state_dict(keep_vars=True))  # type: ignore[union-attr]
    for key in [k for k in state_dict if k.startswith(prefix)]:
        rest = key[len(prefix) :]
        if rest in own or not rest.startswith("module."):
            state_dict[prefix + "module." + rest] = state_dict.pop(key)


#: Names that moved to :mod:`spikeflow.memory.blocks`, still importable from here.
_MOVED = frozenset(
    {"recompute_blocks", "has_recomputed_blocks", "undo_recompute", "_SegmentedSequential"}
)


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        from spikeflow.memory import blocks

        return getattr(blocks, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
