"""Which layer of a network is slow, and which one keeps the memory: a layer-wise profile
of one training step (SpikingJelly 2.0's ``activation_based.profiler``, on any device).

:func:`profile_layers` runs ``model(x)``, a loss and its backward pass ``repeat`` times
and reports, per layer (leaf modules, spiking neurons, recomputed blocks, or the modules
you name):

* **forward time**: from the layer's forward pre-hook to its forward hook (inclusive of
  the layers it contains), summed over its calls in one step;
* **backward time**: the time of the autograd nodes the layer's forward created. When a
  call of the layer ends, its output's graph is walked back to the nodes that existed
  before the call (told apart by their sequence numbers) and to its inputs; the nodes
  found (and the gradient accumulators of parameters reached from them) are the
  layer's, unless a layer inside it claimed them first. Each node is timed from its
  pre-hook to its hook, so nothing is counted twice and the engine's own time between
  nodes is in no layer. A container's backward time is that of its own nodes and its
  layers'. Nodes no layer created (the loss, operations in a parent's ``forward``) go
  to the row ``(other)``;
* **saved bytes**: the tensors autograd keeps for the backward pass while the layer
  runs (:class:`torch.autograd.graph.saved_tensors_hooks`), each storage counted once
  however many views of it are saved, parameters and buffers left out (they are
  counted under parameters and buffers). A fused spiking neuron's kernel saves real
  tensors (its input and its state every few steps) and they are counted as such;
* **output bytes** (the size of the tensors the layer returns) and **calls**.

Plus a summary by category as SpikingJelly's ``CategoryMemoryProfiler`` gives it: bytes
of parameters, gradients, buffers, optimizer state and saved activations.

On CUDA the device is synchronized at every hook (as SpikingJelly's profilers do), so
the times are those of the kernels the layer launched; that path is written but has not
been run on a GPU here. Times are means over the ``repeat`` measured steps, after
``warmup`` steps; bytes and calls are those of the last step.

A block recomputed in the backward pass (:mod:`spikeflow.memory`) keeps only its input
(packed to bits when it is spikes): its saved bytes are those, and its layers' are 0
(the recomputation saves into the checkpoint, not through these hooks). Its
recomputation runs inside its backward nodes and is timed as its backward time; forward
hooks skip it (:func:`spikeflow.memory.reruns_forward`).

A model compiled with ``torch.compile`` runs its layers inside one graph: there are no
layer calls to time, so the report has one row, the whole compiled model, whose saved
bytes are what the compiled graph keeps for its backward pass.

See ``docs/profiling.md``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from spikeflow._saved_tensors import model_storages, recording_saved, storage_key
from spikeflow.base import MemoryModule
from spikeflow.errors import ConfigurationError
from spikeflow.memory import Recomputed, reruns_forward
from spikeflow.memory import recompute as _recompute
from spikeflow.memory.measure import _foreign_memories, _Restore
from spikeflow.profiling_report import LayerProfile, MemoryCategories, ProfileReport

__all__ = ["LayerProfile", "MemoryCategories", "ProfileReport", "profile_layers"]

#: The row of what no profiled layer did (the loss, a parent's own operations).
OTHER = "(other)"

LayerChoice = str | Sequence[str] | Callable[[str, nn.Module], bool]
_MODES = ("leaves", "children", "all")


# --------------------------------------------------------------------------------------
# choosing the layers


def _is_recomputed_block(m: nn.Module) -> bool:
    segmented = getattr(_recompute, "_SegmentedSequential", None)
    return isinstance(m, Recomputed) or (segmented is not None and isinstance(m, segmented))


def _choose(model: nn.Module, layers: LayerChoice) -> list[tuple[str, nn.Module]]:
    """The profiled modules, in ``named_modules`` order (each module once)."""
    named = list(model.named_modules())
    if isinstance(layers, str):
        if layers not in _MODES:
            raise ConfigurationError(
                f"layers must be one of {_MODES}, a list of module names or a predicate "
                f"(name, module) -> bool, got {layers!r}"
            )
        if layers == "all":
            return named
        if layers == "children":
            return list(model.named_children())
        chosen, inside = [], []
        for name, m in named:
            if any(name.startswith(p + ".") for p in inside):
                continue  # (a neuron's surrogate, ...)
            if isinstance(m, MemoryModule) or not any(True for _ in m.children()):
                chosen.append((name, m))
                if isinstance(m, MemoryModule):
                    inside.append(name)
            elif _is_recomputed_block(m):
                chosen.append((name, m))
        return chosen
    by_name = dict(named)
    if callable(layers):
        return [(n, m) for n, m in named if layers(n, m)]
    if not isinstance(layers, Sequence) or not all(isinstance(n, str) for n in layers):
        raise ConfigurationError(
            f"layers must be a mode, a list of module names or a predicate, got {layers!r}"
        )
    missing = [n for n in layers if n not in by_name]
    if missing:
        top = [n for n, _ in model.named_children()]
        raise ConfigurationError(
            f"no submodule named {missing} in {type(model).__name__}; its top-level "
            f"submodules are {top} ('' is the model itself)"
        )
    wanted = set(layers)
    return [(n, m) for n, m in named if n in wanted]


# --------------------------------------------------------------------------------------
# the recorder


def _tensors(value: Any) -> Iterator[Tensor]:
    """The tensors in ``value`` (nested tuples, lists, dicts)."""
    if isinstance(value, Tensor):
        yield value
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from _tensors(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _tensors(v)


class _Row:
    """A profiled layer's counters of one step."""

    def __init__(self, name: str, module: nn.Module) -> None:
        self.name = name
        self.type = type(module).__name__
        self.order = math.inf
        self.depth = 0
        self.reset()

    def reset(self) -> None:
        self.calls = 0
        self.forward_s = 0.0
        self.backward_s = 0.0
        self.saved: dict[tuple[int, int], None] = {}
        self.output_bytes = 0
        self.nodes: list[str] = []


class _Call:
    """One running forward call of a profiled layer (``row`` None: a recomputation)."""

    __slots__ = ("inputs", "row", "seq", "start")

    def __init__(self, row: _Row | None, start: float, seq: int, inputs: Any) -> None:
        self.row = row
        self.start = start
        self.seq = seq
        self.inputs = inputs


_PROBE = torch.zeros(1, requires_grad=True)


def _next_sequence_nr() -> int:
    """The sequence number the next autograd node will get (a probe node takes one)."""
    return _PROBE.view(1).grad_fn._sequence_nr() + 1  # type: ignore[union-attr]


class _Recorder:
    """Hooks on the chosen modules, the saved-tensor hooks and the autograd node hooks."""

    def __init__(self, chosen: list[tuple[str, nn.Module]], sync: Callable[[], None]) -> None:
        self.rows = {id(m): _Row(name, m) for name, m in chosen}
        self.chosen = chosen
        self.other = _Row(OTHER, nn.Module())
        self.other.type = ""
        self.sync = sync
        self.stack: list[_Call] = []
        self.claimed: dict[Any, tuple[_Row, ...]] = {}
        self.started: dict[Any, float] = {}
        self.saved_all: dict[tuple[int, int], None] = {}
        self.handles: list[Any] = []
        self.order = 0

    # forward ------------------------------------------------------------------------
    def install(self) -> None:
        for _, m in self.chosen:
            self.handles.append(m.register_forward_pre_hook(self._pre))
            self.handles.append(m.register_forward_hook(self._post, always_call=True))

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()

    def new_step(self) -> None:
        for row in [*self.rows.values(), self.other]:
            row.reset()
        self.claimed.clear()
        self.started.clear()
        self.saved_all.clear()
        self.stack.clear()

    def _active(self) -> tuple[_Row, ...]:
        return tuple(c.row for c in self.stack if c.row is not None)

    def _pre(self, module: nn.Module, args: tuple) -> None:
        if reruns_forward():  # a recomputation in the backward pass: its nodes time it
            self.stack.append(_Call(None, 0.0, 0, ()))
            return
        row = self.rows[id(module)]
        if row.order == math.inf:
            row.order = self.order
            self.order += 1
            row.depth = len(self._active())
        seq = _next_sequence_nr() if torch.is_grad_enabled() else 0
        self.sync()
        self.stack.append(_Call(row, time.perf_counter(), seq, args))

    def _post(self, module: nn.Module, args: tuple, output: Any) -> None:
        self.sync()
        end = time.perf_counter()
        call = self.stack.pop()
        if call.row is None:  # (a recomputation)
            return
        row = call.row
        row.calls += 1
        row.forward_s += end - call.start
        outs = list(_tensors(output))
        row.output_bytes += sum(t.numel() * t.element_size() for t in outs)
        if torch.is_grad_enabled():
            self._claim(outs, call, (*self._active(), row))

    def _claim(self, outs: list[Tensor], call: _Call, rows: tuple[_Row, ...]) -> None:
        """Claim for ``rows`` the autograd nodes this call created that no layer inside
        it claimed, and hook them for timing."""
        inputs = {id(t) for t in _tensors(call.inputs)}

        def outside(node: Any) -> bool:
            variable = getattr(node, "variable", None)
            if variable is not None:  # a gradient accumulator: a parameter's, not an input's
                return id(variable) in inputs
            return node._sequence_nr() < call.seq  # created before this call

        self._hook_graph([t.grad_fn for t in outs if t.grad_fn is not None], rows, outside)

    def _hook_graph(
        self, roots: list[Any], rows: tuple[_Row, ...], outside: Callable[[Any], bool] | None = None
    ) -> None:
        """Walk the autograd graph from ``roots`` (each node once) and hook for ``rows``
        every node not claimed yet; a node ``outside`` says is neither hooked nor walked
        through."""
        todo = list(roots)
        seen: set[Any] = set()
        while todo:
            node = todo.pop()
            if node is None or node in seen:
                continue
            seen.add(node)
            if outside is not None and outside(node):
                continue
            if node not in self.claimed:
                self._hook_node(node, rows)
            todo.extend(n for n, _ in node.next_functions)

    def _hook_node(self, node: Any, rows: tuple[_Row, ...]) -> None:
        self.claimed[node] = rows
        rows[-1].nodes.append(type(node).__name__)

        def pre(grad_outputs: Any) -> None:
            self.sync()
            self.started[node] = time.perf_counter()

        def post(grad_inputs: Any, grad_outputs: Any) -> None:
            self.sync()
            elapsed = time.perf_counter() - self.started.pop(node, time.perf_counter())
            for r in self.claimed.get(node, ()):
                r.backward_s += elapsed

        node.register_prehook(pre)
        node.register_hook(post)

    def claim_rest(self, loss: Tensor) -> None:
        """Hook the nodes of ``loss``'s graph no layer claimed, for ``(other)``."""
        self._hook_graph([loss.grad_fn], (self.other,))

    # saved tensors --------------------------------------------------------------------
    def saved(self, key: tuple[int, int]) -> None:
        """A storage autograd saved (not a parameter's or buffer's): the running layers'."""
        self.saved_all[key] = None
        active = self._active() if self.stack and self.stack[-1].row is not None else ()
        for row in active or (self.other,):
            row.saved[key] = None

    def profiles(self, sums: dict[str, list[float]], uncalled: bool) -> tuple[LayerProfile, ...]:
        """The rows in the order of their first call (then, with ``uncalled``, those never
        called, in ``named_modules`` order), then ``(other)``."""
        rows = [r for r in self.rows.values() if uncalled or r.order != math.inf]
        out = []
        for r in [*sorted(rows, key=lambda r: r.order), self.other]:
            fwd, bwd = sums.get(r.name, [0.0, 0.0])
            out.append(
                LayerProfile(
                    name=r.name or "(model)",
                    type=r.type,
                    calls=r.calls,
                    forward_s=fwd,
                    backward_s=bwd,
                    saved_bytes=sum(n for _, n in r.saved),
                    output_bytes=r.output_bytes,
                    backward_nodes=tuple(sorted(r.nodes)),
                    depth=r.depth,
                )
            )
        return tuple(out)


# --------------------------------------------------------------------------------------
# the step


def _default_loss(output: Any) -> Tensor:
    """The sum of every floating-point output that requires grad."""
    parts = [t.sum() for t in _tensors(output) if t.is_floating_point() and t.requires_grad]
    if not parts:
        raise ConfigurationError(
            "the model's output has no floating-point tensor that requires grad (no "
            "parameter requires grad, or gradients are disabled): pass backward=False "
            "to profile the forward pass only"
        )
    return torch.stack(parts).sum() if len(parts) > 1 else parts[0]


def _device(model: nn.Module, args: tuple) -> torch.device:
    for t in (*model.parameters(), *model.buffers(), *_tensors(args)):
        return t.device
    return torch.device("cpu")


def _is_compiled(model: nn.Module) -> bool:
    return type(model).__name__ == "OptimizedModule" and isinstance(
        getattr(model, "_orig_mod", None), nn.Module
    )


def _nbytes(tensors: Iterator[Tensor]) -> int:
    seen: dict[tuple[int, int], None] = {}
    for t in tensors:
        seen[storage_key(t)] = None
    return sum(n for _, n in seen)


def _optimizer_tensors(
    optimizer: torch.optim.Optimizer | None, params: set[int]
) -> Iterator[Tensor]:
    if optimizer is None:
        return
    for p, state in optimizer.state.items():
        if id(p) in params:
            yield from (v for v in state.values() if isinstance(v, Tensor))


def _check_count(name: str, value: Any, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ConfigurationError(f"{name} must be an integer >= {least}, got {value!r}")
    return value


def profile_layers(
    model: nn.Module,
    x: Any,
    loss_fn: Callable[[Any], Tensor] | None = None,
    *,
    layers: LayerChoice = "leaves",
    repeat: int = 3,
    warmup: int = 1,
    backward: bool = True,
    optimizer: torch.optim.Optimizer | None = None,
    reset: bool = True,
) -> ProfileReport:
    """Profile ``warmup + repeat`` training steps of ``model`` on ``x``, layer by layer.

    Each step resets the network's carried state (``reset``), runs ``model(x)`` (or
    ``model(*x)`` for a tuple), ``loss_fn`` of the output and the backward pass. The
    model is left as it was: its buffers (batch norm's running statistics), its
    parameters' ``.grad``, train/eval modes, carried state (reset, with ``reset``) and
    the random generators (dropout's draws) are put back. The optimizer is not
    stepped; pass it to count its state.

    Args:
        model: the network (on any device; a ``torch.compile``\\ d model is profiled as
            one row, see the module docstring).
        x: the input tensor, or a tuple of positional inputs.
        loss_fn: the output to a scalar loss; default, the sum of the floating-point
            outputs that require grad.
        layers: which modules get a row. ``"leaves"`` (default): modules without
            submodules, spiking neurons (stateful modules, as one row with their
            surrogate) and recomputed blocks; ``"children"``: the model's direct
            submodules (SpikingJelly's default ``search_mode``); ``"all"``: every
            module (containers include their layers); or a list of names as
            ``model.named_modules()`` gives them (``""`` is the model), or a predicate
            ``(name, module) -> bool``. A mode gives the layers that ran; names and a
            predicate give every layer chosen (0 calls: it never ran).
        repeat: steps measured (times are their means), >= 1.
        warmup: steps run first and not measured, >= 0.
        backward: run the loss and the backward pass (else forward only).
        optimizer: counted under optimizer state.
        reset: reset the carried state of the network before each step (and after;
            else the steps carry it on and it is put back as it was after them).

    Returns:
        A :class:`ProfileReport`; ``print`` it for a table, ``to_dict()`` for values.

    Raises:
        ConfigurationError: a bad argument (naming it), a layer name that is not a
            submodule (listing the top-level ones), or ``backward`` with an output that
            does not require grad.
    """
    if not isinstance(model, nn.Module):
        raise ConfigurationError(f"model must be an nn.Module, got {type(model).__name__}")
    _check_count("repeat", repeat, 1)
    _check_count("warmup", warmup, 0)
    if loss_fn is not None and not callable(loss_fn):
        raise ConfigurationError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise ConfigurationError(
            f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
        )
    args = x if isinstance(x, tuple) else (x,)
    compiled = _is_compiled(model)
    if compiled:
        chosen: list[tuple[str, nn.Module]] = [("", model)]
    else:
        chosen = _choose(model, layers)
    device = _device(model, args)
    sync: Callable[[], None] = (
        (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    )
    params = list(model.parameters())
    buffers = list(model.buffers())
    exclude = model_storages(model)
    recorder = _Recorder(chosen, sync)
    # carried state, buffers, .grad, train/eval, random generators: put back after
    restore = _Restore(model, args)
    loss = _default_loss if loss_fn is None else loss_fn
    sums: dict[str, list[float]] = {}
    step_f = step_b = 0.0
    recorder.install()
    try:
        for k in range(warmup + repeat):
            if reset:
                _reset(model)
            for p in params:
                p.grad = None
            recorder.new_step()
            sync()
            t0 = time.perf_counter()
            with recording_saved(recorder.saved, exclude):
                out = model(*args)
                value = loss(out) if backward else None
            sync()
            t1 = time.perf_counter()
            if value is not None:
                if not isinstance(value, Tensor) or value.numel() != 1:
                    raise ConfigurationError(
                        "loss_fn must return a one-element tensor, got "
                        f"{type(value).__name__}{tuple(getattr(value, 'shape', ()))}"
                    )
                if value.grad_fn is None:
                    _default_loss(value)  # (raises, saying why)
                recorder.claim_rest(value)
                value.backward()
                sync()
            t2 = time.perf_counter()
            del out, value
            if k >= warmup:
                step_f += t1 - t0
                step_b += t2 - t1
                for r in [*recorder.rows.values(), recorder.other]:
                    s = sums.setdefault(r.name or "(model)", [0.0, 0.0])
                    s[0] += r.forward_s / repeat
                    s[1] += r.backward_s / repeat
        ids = {id(p) for p in params}
        categories = MemoryCategories(
            parameters=_nbytes(iter(params)),
            gradients=_nbytes(p.grad for p in params if p.grad is not None),
            buffers=_nbytes(iter(buffers)),
            optimizer_state=_nbytes(_optimizer_tensors(optimizer, ids)),
            saved_activations=sum(n for _, n in recorder.saved_all),
        )
        for r in recorder.rows.values():
            if not r.name:
                r.name = "(model)"
        # named layers are all shown (0 calls: it never ran); chosen by a mode, those that ran
        rows = recorder.profiles(sums, uncalled=not isinstance(layers, str) and not compiled)
    finally:
        recorder.remove()
        restore.finish()
        if reset:
            _reset(model)
    return ProfileReport(
        layers=rows,
        categories=categories,
        forward_s=step_f / repeat,
        backward_s=step_b / repeat,
        repeat=repeat,
        warmup=warmup,
        device=str(device),
        compiled=compiled,
    )


def _reset(model: nn.Module) -> None:
    foreign = {id(m) for m, _ in _foreign_memories(model)}  # (a SpikingJelly neuron)
    for m in model.modules():
        if isinstance(m, MemoryModule) or (id(m) in foreign and callable(m.reset)):
            m.reset()
