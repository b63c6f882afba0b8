"""Which blocks of a network are recomputed: :func:`recompute_blocks` (a plain
``nn.Sequential`` cut into segments after each spiking layer, each element of an
``nn.ModuleList`` wrapped, or named blocks), :func:`has_recomputed_blocks` and
:func:`undo_recompute`. The recomputation itself is :class:`Recomputed`
(:mod:`spikeflow.memory.recompute`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from spikeflow.errors import ConfigurationError
from spikeflow.memory.chunking import check_time_chunks
from spikeflow.memory.recompute import PackMode, Recomputed, _check_pack

__all__ = ["has_recomputed_blocks", "recompute_blocks", "undo_recompute"]


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
