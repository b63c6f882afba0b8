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
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from spikeflow._compile_marks import eager_under_compile
from spikeflow.base import MemoryModule, _ExplicitState
from spikeflow.errors import ConfigurationError
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

__all__ = [
    "Recomputed",
    "has_recomputed_blocks",
    "is_recomputing",
    "recompute_blocks",
    "undo_recompute",
]

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
        self.active = True

    def __exit__(self, *exc: object) -> None:
        """Put every carried state, recorded tensor and mode back as before the
        recomputation."""
        self.active = False
        _local.depth -= 1
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


def _has_neuron(module: nn.Module) -> bool:
    from spikeflow.training.monitors import SPIKING_LAYER_TYPES  # (imports this module)

    return any(isinstance(m, SPIKING_LAYER_TYPES) for m in module.modules())


def _keeps_spikes(module: nn.Module) -> bool:
    """A layer after a neuron whose output is still spikes (a 0/1 tensor), and smaller or
    the same: max pooling, flattening."""
    return isinstance(module, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.Flatten))


#: Which segments of a segmented ``nn.Sequential`` are recomputed, by the names of their
#: children, and how each keeps its input; None: every segment, packed alike.
SegmentPlan = dict[tuple[str, ...], PackMode] | None


def _segment_children(segment: nn.Module) -> nn.Sequential:
    return segment.module if isinstance(segment, Recomputed) else segment  # type: ignore[return-value]


class _SegmentedSequential(nn.Sequential):
    """An ``nn.Sequential`` run as segments, recomputed (all, or those of its plan) (its
    class after :func:`recompute_blocks` chose it; its children, names and
    ``state_dict`` are unchanged). The segments are kept outside the module tree, and
    cut again when the children change (one replaced, appended or removed, or a slice
    of it)."""

    def forward(self, x: Any) -> Any:  # type: ignore[override]
        segments = self.__dict__.get("_recompute_segments")
        children = list(self._modules.values())
        cut = [m for segment in segments or () for m in _segment_children(segment)]
        if (
            segments is None
            or len(cut) != len(children)
            or any(a is not b for a, b in zip(cut, children))
        ):
            _segment_sequential(
                self,
                self.__dict__.get("_recompute_pack", "auto"),
                self.__dict__.get("_recompute_plan"),
                self.__dict__.get("_recompute_chunks", 1),
            )
            segments = self.__dict__["_recompute_segments"]
        for segment in segments:
            x = segment(x)
        return x

    def __getitem__(self, idx: Any) -> Any:
        item = super().__getitem__(idx)
        if isinstance(item, _SegmentedSequential):  # a slice: packed as this one
            item.__dict__["_recompute_pack"] = self.__dict__.get("_recompute_pack", "auto")
            item.__dict__["_recompute_plan"] = self.__dict__.get("_recompute_plan")
            item.__dict__["_recompute_chunks"] = self.__dict__.get("_recompute_chunks", 1)
        return item


def _segments(seq: nn.Sequential) -> list[list[str]]:
    """The children of ``seq`` cut after each child holding a neuron (and the max
    pooling or flattening after it, so that a segment's input is small spikes)."""
    cuts: list[list[str]] = [[]]
    # _modules, not named_children(): that skips a module placed twice (seq[2] is seq[4])
    children = [(name, m) for name, m in seq._modules.items() if m is not None]
    for k, (name, child) in enumerate(children):
        cuts[-1].append(name)
        ends = _has_neuron(child) or (k > 0 and _keeps_spikes(child) and _has_neuron(seq[k - 1]))
        following = children[k + 1][1] if k + 1 < len(children) else None
        if ends and not (following is not None and _keeps_spikes(following)):
            cuts.append([])
    return [c for c in cuts if c]


def _segment_sequential(
    seq: nn.Sequential, pack: PackMode, plan: SegmentPlan = None, time_chunks: int = 1
) -> list[list[str]]:
    """Cut ``seq`` into segments (:func:`_segments`) and recompute them: every one with
    ``pack`` (``plan`` None), or those ``plan`` names, each with its own pack mode (the
    others run as they are); each recomputed one in ``time_chunks`` windows of time."""
    cuts = _segments(seq)
    modules = {name: m for name, m in seq._modules.items() if m is not None}
    seq.__dict__["_recompute_pack"] = pack
    seq.__dict__["_recompute_plan"] = plan
    seq.__dict__["_recompute_chunks"] = time_chunks
    segments: list[nn.Module] = []
    for names in cuts:
        segment = nn.Sequential(*(modules[n] for n in names))
        if plan is None:
            segments.append(Recomputed(segment, pack=pack, time_chunks=time_chunks))
        elif tuple(names) in plan:
            segments.append(Recomputed(segment, pack=plan[tuple(names)], time_chunks=time_chunks))
        else:
            segments.append(segment)
    seq.__dict__["_recompute_segments"] = segments
    seq.__class__ = _SegmentedSequential
    return cuts


def _auto_blocks(model: nn.Module) -> list[str]:
    """Top down: every plain ``nn.Sequential`` or ``nn.ModuleList`` holding a spiking
    layer, not inside another, nor inside a container that runs its children step by
    step (a recurrent layer's cell: recomputed at every step, and its reparameterised
    weights, computed once for the steps, could not be)."""
    chosen: list[str] = []
    passed: list[str] = []
    for name, module in model.named_modules():
        if any(name.startswith(c + ".") or c == "" for c in chosen + passed):
            continue
        if getattr(module, "owns_children_time", False):
            passed.append(name)
        elif type(module) in (nn.Sequential, nn.ModuleList) and _has_neuron(module):
            chosen.append(name)
    return chosen


def _wrap_list(modules: nn.ModuleList, pack: PackMode, time_chunks: int = 1) -> list[str]:
    """Wrap each element holding a spiking layer in :class:`Recomputed`."""
    wrapped = []
    for k, module in enumerate(modules):
        if _has_neuron(module) and not isinstance(module, Recomputed):
            modules[k] = Recomputed(module, pack=pack, time_chunks=time_chunks)
            wrapped.append(str(k))
    return wrapped


def _check_block_names(model: nn.Module, named: dict[str, nn.Module], names: list[str]) -> None:
    """Raise when a name of ``names`` is empty or not in ``named`` (``model``'s
    ``named_modules()``); the error lists ``model``'s top-level submodules."""
    missing = [name for name in names if name not in named or not name]
    if missing:
        top = [name for name, _ in model.named_children()]
        raise ConfigurationError(
            f"no submodule named {missing} in {type(model).__name__}; its top-level "
            f"submodules are {top}"
        )


def _outermost(names: Sequence[str]) -> list[str]:
    """``names`` without those inside another of them (``"a.b"`` goes where ``"a"`` is)."""
    return [n for n in names if not any(n.startswith(o + ".") for o in names if o != n)]


def recompute_blocks(
    model: nn.Module,
    blocks: str | Sequence[str] | Callable[[str, nn.Module], bool] = "auto",
    pack: PackMode = "auto",
    time_chunks: int = 1,
) -> list[str]:
    """Recompute parts of ``model`` in the backward pass (in place).

    Args:
        model: the network.
        blocks: ``"auto"`` (default): every plain ``nn.Sequential`` holding a spiking
            layer (the outermost ones; none inside a container that runs its children
            step by step, such as a recurrent layer) runs as segments, each cut after a
            spiking layer (and the max pooling or flattening that follows it), so each
            segment keeps one spike tensor, packed; the ``nn.Sequential`` keeps its
            children and keys.
            Each element of a plain ``nn.ModuleList`` (a transformer's blocks) that
            holds a spiking layer is wrapped in :class:`Recomputed`. Or the
            names of submodules to wrap in :class:`Recomputed` (as
            ``model.named_modules()`` gives them), or a predicate
            ``(name, module) -> bool`` choosing them; a chosen module inside another
            chosen one is left to it.
        pack: as :class:`Recomputed`.
        time_chunks: as :class:`Recomputed`: each recomputed block runs its
            ``[T, B, ...]`` input as this many windows of time, each recomputed on its
            own from the neuron state entering it (1: whole calls).

    Returns:
        The names of the recomputed modules; for ``"auto"``, each with its segments
        (``"conv[0,1,2,3|4,5,6,7]"``).

    Raises:
        ConfigurationError: a name is not a submodule of ``model`` (the error lists the
            top-level ones), or nothing was chosen; with ``time_chunks > 1``, a chosen
            block holds a module that needs the whole sequence (named).
    """
    _check_pack(pack)
    check_time_chunks(time_chunks)
    named = dict(model.named_modules())
    if isinstance(blocks, str):
        if blocks != "auto":
            raise ConfigurationError(
                f"blocks must be 'auto', a list of names or a predicate, got {blocks!r}"
            )
        found = _auto_blocks(model)
        if not found:
            raise ConfigurationError(
                f"{type(model).__name__} has no nn.Sequential or nn.ModuleList holding a "
                "spiking layer to recompute: name the blocks to recompute instead"
            )
        done = []
        for n in found:
            if isinstance(named[n], nn.ModuleList):
                parts = _wrap_list(named[n], pack, time_chunks)
            else:
                parts = [
                    ",".join(c) for c in _segment_sequential(named[n], pack, None, time_chunks)
                ]
            done.append(f"{n or '<model>'}[{'|'.join(parts)}]")
        return done
    if callable(blocks):
        chosen = [name for name, m in named.items() if name and blocks(name, m)]
    else:
        chosen = list(blocks)
        _check_block_names(model, named, chosen)
    chosen = _outermost(chosen)
    chosen = [n for n in chosen if not isinstance(named[n], (Recomputed, _SegmentedSequential))]
    if not chosen:
        raise ConfigurationError(f"no block of {type(model).__name__} was chosen to recompute")
    for name in chosen:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, Recomputed(named[name], pack=pack, time_chunks=time_chunks))
    return chosen


def has_recomputed_blocks(model: nn.Module) -> bool:
    """Whether ``model`` holds a :class:`Recomputed` block or a segmented
    ``nn.Sequential`` (what :func:`recompute_blocks` makes)."""
    return any(isinstance(m, (Recomputed, _SegmentedSequential)) for m in model.modules())


def undo_recompute(model: nn.Module) -> nn.Module:
    """Undo :func:`recompute_blocks` (in place): every segmented ``nn.Sequential`` is a
    plain one again and every :class:`Recomputed` block is replaced by its module.
    Returns ``model`` (its module, when ``model`` itself is a :class:`Recomputed`).
    Parameters, buffers and ``state_dict`` keys are unchanged; so are the results."""
    for module in list(model.modules()):
        if isinstance(module, _SegmentedSequential):
            module.__class__ = nn.Sequential
            module.__dict__.pop("_recompute_segments", None)
            module.__dict__.pop("_recompute_pack", None)
            module.__dict__.pop("_recompute_plan", None)
            module.__dict__.pop("_recompute_chunks", None)
        for name, child in list(module.named_children()):
            if isinstance(child, Recomputed):
                setattr(module, name, child.module)
    return model.module if isinstance(model, Recomputed) else model
