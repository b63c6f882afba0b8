"""Choose which blocks of a network to recompute, and how to keep their inputs, by
measuring training steps on the user's device (SpikingJelly 2.0's
``memopt.optimize_memory``, made exact and measured on any device).

:func:`optimize` takes a network, an example input and a memory budget (or none: as
little memory as recomputing can give), measures a training step (forward, loss,
backward) of the plain network and of candidate plans, and leaves the network
recomputing the blocks it chose, returning a :class:`MemoryPlan` that says what it
chose and what it measured. The candidates are the blocks :func:`recompute_blocks`
would recompute ("auto": the segments of each ``nn.Sequential`` holding a spiking
layer, the elements of an ``nn.ModuleList``) or the submodules named.

How it chooses:

* A probe step of the plain network measures, per block, its forward time, the bytes
  autograd saves for backward inside it, and whether its input is spikes (0/1) or
  spike counts (integers 0-255), which a recomputed block keeps as bits or bytes.
* No budget: every block is recomputed, then, the most expensive first, each block
  whose recomputation does not lower the measured peak is run plainly again (the last
  block's activations are needed as soon as the backward pass starts; those of a block
  freed before the peak is reached do not count), then each block's input whose
  packing does not lower the peak is kept as it is (the network's input, which the
  caller holds anyway, costs its bits on top).
* A budget: blocks are recomputed, the most saved bytes per millisecond of forward
  first, until the measured peak fits (if recomputing every block does not, the search
  without a budget is made, whose least peak may run some blocks plainly); then, the
  most expensive first, each one that is not needed to fit is run plainly again, and
  each kept input that need not be packed to fit is kept as it is (packing costs a pass
  over it).

Peak memory is measured on CUDA by the caching allocator
(``torch.cuda.max_memory_allocated`` less what was allocated before the step), on other
devices by following every tensor storage the step's operations allocate (a
``TorchDispatchMode``; a storage counts until it is freed): the tensors of the step,
not the allocator's cache nor the memory of parameters and optimizer state held
before it. The network's state (carried neuron state, buffers, gradients, random
generators) is put back after each measured step.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from spikeflow._saved_tensors import StorageKey, model_storages, recording_saved
from spikeflow.errors import ConfigurationError
from spikeflow.memory.blocks import (
    _auto_blocks,
    _check_block_names,
    _has_neuron,
    _outermost,
    _segment_sequential,
    _segments,
    has_recomputed_blocks,
    undo_recompute,
)
from spikeflow.memory.chunking import check_time_chunks
from spikeflow.memory.measure import (
    LossFn,
    _device,
    _peak,
    _Restore,
    _step,
    _step_ms,
    _sync,
    step_peak_memory,
)
from spikeflow.memory.packing import try_pack_counts, try_pack_spikes
from spikeflow.memory.recompute import PackMode, Recomputed, _check_pack

__all__ = ["BlockCost", "MemoryPlan", "optimize", "step_peak_memory"]


@dataclass(frozen=True)
class BlockCost:
    """What the probe step measured of one candidate block (plain, not recomputed).

    Attributes:
        name: the block, as :attr:`MemoryPlan.recomputed` names it: ``"layer1[0]"`` (a
            segment of the ``nn.Sequential`` ``layer1``: its children ``0``),
            ``"blocks.3"`` (a submodule).
        input_bytes: bytes of its input tensor.
        input_kind: ``"spikes"`` (every element 0 or 1: kept as bits when recomputed),
            ``"counts"`` (integers 0-255: kept as bytes) or ``"other"`` (kept as it is).
        saved_bytes: bytes of the tensor storages autograd saved for backward during its
            forward (first saved there; parameters and buffers, which stay in memory
            either way, not counted): what recomputing it frees.
        forward_ms: its forward time: what recomputing it costs.
    """

    name: str
    input_bytes: int
    input_kind: str
    saved_bytes: int
    forward_ms: float


@dataclass
class MemoryPlan:
    """What :func:`optimize` chose and measured.

    Attributes:
        recomputed: the recomputed blocks, each with how its input is kept (``"auto"``:
            bits for spikes, bytes for spike counts; ``"none"``: as it is).
        blocks: every candidate block, as the probe measured it.
        peak_bytes_plain: the measured peak memory of a training step of the plain
            network.
        peak_bytes: that of the chosen plan.
        step_ms_plain: the median time of a training step of the plain network.
        step_ms: that of the chosen plan.
        budget_bytes: the budget the plan fits, or None (as little memory as possible).
        measured_by: how the peak was measured (``"cuda allocator"`` or ``"tensor
            storages"``).
        trials: how many training steps were measured to choose.
        time_chunks: the windows of time each recomputed block runs its sequence in
            (1: whole calls; see :class:`~spikeflow.memory.Recomputed`).
    """

    recomputed: dict[str, PackMode]
    blocks: list[BlockCost]
    peak_bytes_plain: int
    peak_bytes: int
    step_ms_plain: float
    step_ms: float
    budget_bytes: int | None
    measured_by: str
    trials: int = 0
    time_chunks: int = 1

    def apply(self, model: nn.Module) -> None:
        """Recompute the same blocks of ``model`` (another instance of the network
        :func:`optimize` measured), keeping their inputs the same way.

        Raises:
            ConfigurationError: ``model`` has recomputed blocks already, or lacks a block
                of the plan.
        """
        _refuse_recomputed(model)
        names = list(self.recomputed)
        if names:
            named = dict(model.named_modules())
            explicit = all(n in named for n in names)  # (a segment's name is no module's)
            candidates = _candidates(model, names if explicit else None)
            _apply(model, candidates, self.recomputed, self.time_chunks)

    def __str__(self) -> str:
        width = max([len("block"), *(len(b.name) for b in self.blocks)]) + 2
        lines = [f"{'block':<{width}}{'input':>10}{'kind':>8}{'saved':>11}{'fwd ms':>9}  chosen"]
        for b in self.blocks:
            chosen = self.recomputed.get(b.name)
            how = "-" if chosen is None else _how_kept(b.input_kind, chosen)
            lines.append(
                f"{b.name:<{width}}{_size(b.input_bytes):>10}{b.input_kind:>8}"
                f"{_size(b.saved_bytes):>11}{b.forward_ms:>9.1f}  {how}"
            )
        budget = "none" if self.budget_bytes is None else _size(self.budget_bytes)
        lines.append(
            f"peak {_size(self.peak_bytes_plain)} -> {_size(self.peak_bytes)} "
            f"({self.peak_bytes / max(self.peak_bytes_plain, 1):.2f}x, {self.measured_by}), "
            f"step {self.step_ms_plain:.1f} -> {self.step_ms:.1f} ms "
            f"({self.step_ms / max(self.step_ms_plain, 1e-9):.2f}x); budget {budget}; "
            f"{self.trials} steps measured"
            + (f"; {self.time_chunks} time chunks" if self.time_chunks > 1 else "")
        )
        return "\n".join(lines)


def _size(n: int) -> str:
    for unit, scale in (("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _how_kept(kind: str, pack: PackMode) -> str:
    if pack == "none" or kind == "other":
        return "recomputed, input as is"
    return "recomputed, input as " + ("bits" if kind == "spikes" else "bytes")


# -- candidates --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Candidate:
    name: str
    container: str  # the nn.Sequential cut into segments, or None for a submodule
    children: tuple[str, ...]  # the segment's children (empty for a submodule)
    segment: bool


def _candidates(model: nn.Module, blocks: Sequence[str] | None) -> list[_Candidate]:
    named = dict(model.named_modules())
    if blocks is not None:
        _check_block_names(model, named, list(blocks))
        return [_Candidate(n, n, (), False) for n in dict.fromkeys(_outermost(blocks))]
    found: list[_Candidate] = []
    for container in _auto_blocks(model):
        module = named[container]
        if isinstance(module, nn.ModuleList):
            for k, element in enumerate(module):
                if _has_neuron(element):
                    name = f"{container}.{k}" if container else str(k)
                    found.append(_Candidate(name, name, (), False))
        else:
            label = container or "<model>"
            for names in _segments(module):
                found.append(
                    _Candidate(f"{label}[{','.join(names)}]", container, tuple(names), True)
                )
    if not found:
        raise ConfigurationError(
            f"{type(model).__name__} has no nn.Sequential or nn.ModuleList holding a "
            "spiking layer to recompute: name the candidate blocks (blocks=[...])"
        )
    return found


def _apply(
    model: nn.Module,
    candidates: list[_Candidate],
    plan: dict[str, PackMode],
    time_chunks: int = 1,
) -> None:
    """Recompute the blocks of ``plan`` (the model plain before), each in
    ``time_chunks`` windows of time."""
    known = {c.name for c in candidates}
    unknown = [n for n in plan if n not in known]
    if unknown:
        raise ConfigurationError(
            f"{type(model).__name__} has no block {unknown}; its blocks are {sorted(known)}"
        )
    segments: dict[str, dict[tuple[str, ...], PackMode]] = {}
    for c in candidates:
        if c.name not in plan:
            continue
        if c.segment:
            segments.setdefault(c.container, {})[c.children] = plan[c.name]
        else:
            parent_name, _, child = c.name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            block = Recomputed(model.get_submodule(c.name), plan[c.name], time_chunks)
            setattr(parent, child, block)
    for container, chosen in segments.items():
        seq = model.get_submodule(container) if container else model
        _segment_sequential(seq, "auto", chosen, time_chunks)  # type: ignore[arg-type]


def _refuse_recomputed(model: nn.Module) -> None:
    if has_recomputed_blocks(model):
        raise ConfigurationError(
            f"{type(model).__name__} has recomputed blocks already: call "
            "spikeflow.memory.undo_recompute(model) first"
        )


def _input_kind(x: Tensor) -> str:
    if x.numel() and try_pack_spikes(x) is not None:
        return "spikes"
    if x.numel() and try_pack_counts(x) is not None:
        return "counts"
    return "other"


def _probe(
    model: nn.Module,
    example_input: Any,
    loss_fn: LossFn | None,
    candidates: list[_Candidate],
    restore: _Restore,
) -> list[BlockCost]:
    """One step of the plain network after an untimed one: per block its input, the
    bytes saved for backward inside it and its forward time."""
    device = _device(model, example_input)
    restore.step_state()
    _step(model, example_input, loss_fn)  # first-call costs (kernels compiled, caches)
    restore.step_state()
    current: list[str | None] = [None]
    inputs: dict[str, tuple[int, str]] = {}
    saved: dict[str, int] = {c.name: 0 for c in candidates}
    ms: dict[str, float] = {c.name: 0.0 for c in candidates}
    started: dict[str, float] = {}
    seen: set[StorageKey] = set()
    handles = []

    def pre(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple) -> None:
            x = next((a for a in args if isinstance(a, Tensor)), None)
            if x is not None and name not in inputs:
                inputs[name] = (x.numel() * x.element_size(), _input_kind(x))
            _sync(device)
            current[0] = name
            started[name] = time.perf_counter()

        return hook

    def post(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple, out: Any) -> None:
            _sync(device)
            ms[name] += 1000 * (time.perf_counter() - started.pop(name, time.perf_counter()))
            current[0] = None

        return hook

    def on_saved(key: StorageKey) -> None:
        if current[0] is not None and key not in seen:
            seen.add(key)
            saved[current[0]] += key[1]

    for c in candidates:
        if c.segment:
            seq = model.get_submodule(c.container) if c.container else model
            first, last = seq.get_submodule(c.children[0]), seq.get_submodule(c.children[-1])
        else:
            first = last = model.get_submodule(c.name)
        handles.append(first.register_forward_pre_hook(pre(c.name)))
        handles.append(last.register_forward_hook(post(c.name)))
    try:
        # a parameter or buffer autograd saves stays in memory however its block runs
        with recording_saved(on_saved, model_storages(model)):
            _step(model, example_input, loss_fn)
    finally:
        for h in handles:
            h.remove()
        restore.step_state()
    never = [c.name for c in candidates if c.name not in inputs]
    if never:
        raise ConfigurationError(
            f"the blocks {never} did not run on the example input (or took no tensor): "
            "name the blocks the forward pass calls (blocks=[...])"
        )
    return [
        BlockCost(c.name, inputs[c.name][0], inputs[c.name][1], saved[c.name], ms[c.name])
        for c in candidates
    ]


# -- choosing ----------------------------------------------------------------------------------


def _budget_bytes(budget: int | float | None, plain: int) -> int | None:
    if budget is None:
        return None
    if isinstance(budget, bool) or not isinstance(budget, int | float) or not budget > 0:
        raise ConfigurationError(
            f"budget must be None, a number of bytes (int) or a fraction of the plain "
            f"network's peak (float in (0, 1]), got {budget!r}"
        )
    if isinstance(budget, float):
        if not budget <= 1:
            raise ConfigurationError(
                f"a float budget is a fraction of the plain network's peak, in (0, 1]; "
                f"got {budget} (give bytes as an int)"
            )
        return math.floor(budget * plain)
    return int(budget)


def optimize(
    model: nn.Module,
    example_input: Any,
    budget: int | float | None = None,
    *,
    loss_fn: LossFn | None = None,
    blocks: Sequence[str] | None = None,
    pack: PackMode = "auto",
    repeat: int = 3,
    time_chunks: int = 1,
) -> MemoryPlan:
    """Recompute the blocks of ``model`` that a memory budget needs, chosen by measuring
    training steps on ``example_input`` (in place; see the module docstring).

    Args:
        model: the network, plain (no recomputed blocks), on the device to train on.
        example_input: an input of the size to train with (the first argument of
            ``model``): the choice holds for inputs of this size and content (the same
            firing rates).
        budget: None (default): as little peak memory as recomputing gives, for the
            least recomputation that gives it. An int: a peak in bytes the step must fit
            in; a float in (0, 1]: a fraction of the plain network's peak.
        loss_fn: the loss from the output (default: the sum of its floating-point
            tensors); it shapes the backward pass measured.
        blocks: the candidate blocks: None (default) for those of
            ``recompute_blocks(model)`` ("auto"), or names of submodules.
        pack: how a recomputed block keeps its input: ``"auto"`` (bits for spikes,
            bytes for counts, but as it is where packing does not lower the peak, or,
            with a budget, is not needed to fit it) or ``"none"``.
        repeat: training steps timed, each for the plain network and the plan (the
            median is reported; 0 skips timing).
        time_chunks: every recomputed block runs its ``[T, B, ...]`` sequence in this
            many windows of time, each recomputed from the neuron state entering it
            (measured so: the peaks and the choice are those of the chunked blocks).
            A candidate holding a module that needs the whole sequence (a batch norm in
            training mode: call ``.eval()`` on it to freeze it) is a ConfigurationError
            naming it.

    Returns:
        The :class:`MemoryPlan` (printable as a table): the blocks recomputed and how
        their inputs are kept, the probe's measurements, peaks and step times.

    Raises:
        ConfigurationError: a bad argument, a model with recomputed blocks already, no
            candidate blocks, or a budget below the least peak recomputing gives (the
            message gives that peak; the model is left plain).
    """
    if not isinstance(model, nn.Module):
        raise ConfigurationError(f"optimize takes an nn.Module, got {type(model).__name__}")
    if _check_pack(pack) not in ("auto", "none"):
        raise ConfigurationError(f"optimize's pack must be 'auto' or 'none', got {pack!r}")
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 0:
        raise ConfigurationError(f"repeat must be an int >= 0, got {repeat!r}")
    if isinstance(blocks, str):
        raise ConfigurationError(f"blocks must be None or a list of names, got {blocks!r}")
    check_time_chunks(time_chunks)
    _refuse_recomputed(model)
    if not torch.is_grad_enabled():
        raise ConfigurationError("optimize measures training steps: call it with grad enabled")
    candidates = _candidates(model, None if blocks is None else list(blocks))
    restore = _Restore(model, example_input)
    trials = 0

    def measure(plan: dict[str, PackMode]) -> int:
        nonlocal trials
        trials += 1
        _apply(model, candidates, plan, time_chunks)
        try:
            return _peak(model, example_input, loss_fn, restore)
        finally:
            undo_recompute(model)

    try:
        costs = _probe(model, example_input, loss_fn, candidates, restore)
        plain = measure({})
        target = _budget_bytes(budget, plain)
        everything = {c.name: pack for c in candidates}
        expensive = sorted(costs, key=lambda b: (-b.forward_ms, b.name))

        def prune(
            plan: dict[str, PackMode], peak: int, limit: int | None
        ) -> tuple[dict[str, PackMode], int]:
            """Run plainly what need not be recomputed, then keep as it is what need
            not be packed (an input the caller keeps anyway costs its bits on top): what
            keeps the peak within ``limit`` (None: not above the least found so far)."""
            least = limit is None
            limit = peak if limit is None else limit
            trials_left = [(b.name, None) for b in expensive if b.name in plan]
            if pack == "auto":
                packed = sorted(
                    (b for b in costs if b.input_kind != "other"), key=lambda b: -b.input_bytes
                )
                trials_left += [(b.name, "none") for b in packed]
            for name, how in trials_left:
                if name not in plan:
                    continue
                if how is None:
                    trial = {n: p for n, p in plan.items() if n != name}
                else:
                    trial = {**plan, name: how}
                found = measure(trial)
                if found <= limit:
                    plan, peak = trial, found
                    if least:  # as little as found so far
                        limit = found
            return plan, peak

        if target is None:
            plan, peak = prune(dict(everything), measure(everything), None)
        elif plain <= target:
            plan, peak = {}, plain
        else:
            plan, peak = {}, plain
            gain = sorted(costs, key=lambda b: -b.saved_bytes / max(b.forward_ms, 1e-3))
            for b in gain:
                plan[b.name] = pack
                peak = measure(plan)
                if peak <= target:
                    break
            if peak > target:  # the least peak may run a block plainly (the last one)
                plan, peak = prune(plan, peak, None)
                if peak > target:
                    raise ConfigurationError(
                        f"budget {target} bytes ({target / 2**20:.1f} MB) cannot be met: "
                        f"the least peak recomputing can give is {peak} bytes "
                        f"({peak / 2**20:.1f} MB; plain: {plain / 2**20:.1f} MB)"
                    )
            plan, peak = prune(plan, peak, target)
        step_plain = _step_ms(model, example_input, loss_fn, restore, repeat) if repeat else 0.0
        _apply(model, candidates, plan, time_chunks)
        try:
            step = _step_ms(model, example_input, loss_fn, restore, repeat) if repeat else 0.0
        except BaseException:
            undo_recompute(model)
            raise
    finally:
        restore.finish()
    return MemoryPlan(
        recomputed=plan,
        blocks=costs,
        peak_bytes_plain=plain,
        peak_bytes=peak,
        step_ms_plain=step_plain,
        step_ms=step,
        budget_bytes=target,
        measured_by=(
            "cuda allocator" if _device(model, example_input).type == "cuda" else "tensor storages"
        ),
        trials=trials,
        time_chunks=time_chunks,
    )
