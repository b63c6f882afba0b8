"""Products between activations, counted while a model runs.

Spiking transformers multiply activations with each other: Spikformer's ``Q Kᵀ V``
(spikes by spikes, then spikes by the counts ``Kᵀ V``), the Spike-driven Transformer's
``K ⊙ V`` and ``Q ⊙ SN(·)``, QKFormer's ``A ⊙ K``. No layer hook sees them, so a
:class:`~torch.overrides.TorchFunctionMode` is active while the model runs (from the
first call into one of its modules until that call returns) and counts every
``matmul`` / ``@``, ``mm``, ``bmm``, ``addmm``, ``baddbmm``, ``addbmm``, two-operand
``einsum`` and elementwise ``*`` / ``mul`` between two tensors, exactly, on masks:

* an operand is spikes when its nonzero entries have one magnitude (as a layer's
  input); it is event-driven: only its nonzero entries cost anything. Any other
  operand is real-valued and arrives at run time, so each of its entries costs, zeros
  included (as a layer fed real values);
* a pair is an entry of one operand and an entry of the other that are multiplied
  together into an output (for ``A @ B``, ``A[i, k]`` and ``B[k, j]`` for every ``i,
  k, j``; for ``A ⊙ B``, the entries at one position after broadcasting); counted are
  the pairs whose spike entries are nonzero;
* with a spike operand each counted pair is one accumulate (AC); between two real
  operands each pair is a multiply-accumulate (MAC). An elementwise product with spikes
  is a gate (the entry where a spike is, zero elsewhere): counted as one AC per pair
  too, an upper bound;
* not counted: products with a number or a one-element tensor (a scale), products
  with a parameter, a buffer, a tensor made from no tensor (``torch.rand``,
  ``torch.ones``: drawn masks, constants) or anything computed from those alone
  (weights, masks kept as buffers, a weight masked by a drawn mask: a layer's
  business), and products inside layers
  whose work is counted otherwise or not at all (linear and convolution layers,
  spiking neurons, normalisation, dropout), and integer arithmetic.

Each is credited to the module whose forward ran it (the innermost module called), in
a row ``<module> (activation products)``. A module's ``forward`` that calls
``F.linear`` or ``F.conv*`` with a weight is not seen here (see
:class:`~spikeflow.energy.OperationCounter`'s "not counted").
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode, _get_current_function_mode_stack

from spikeflow.energy._pairs import is_spikes, tensors
from spikeflow.energy.report import LayerOperations
from spikeflow.memory.recompute import reruns_forward

__all__ = ["RunMode", "product_operands"]

#: ``A @ B`` by the function's name (``torch.matmul``, ``Tensor.matmul``, ``@``, ...).
_MATMULS = frozenset({"matmul", "__matmul__", "mm", "bmm"})
#: ``C + A @ B`` (``addmm(C, A, B)``, ...): the product is ``A @ B``.
_ADD_MATMULS = frozenset({"addmm", "addmm_", "baddbmm", "baddbmm_", "addbmm", "addbmm_"})
_MULS = frozenset({"mul", "mul_", "multiply", "multiply_", "__mul__", "__rmul__", "__imul__"})
_IN_PLACE = ("__setitem__", "__iadd__", "__isub__", "__imul__", "__itruediv__")


def product_operands(name: str, args: tuple, kwargs: dict) -> tuple[str, list[object]] | None:
    """The kind (``"matmul"``, ``"mul"`` or an einsum equation) and operands of a call
    to the torch function named ``name``, or None when it is no product counted here."""
    if name in _MATMULS:
        return "matmul", [*args[:2], *kwargs.values()][:2]
    if name == "__rmatmul__":
        return "matmul", list(args[:2])[::-1]
    if name in _ADD_MATMULS:
        named = [kwargs[k] for k in ("mat1", "mat2", "batch1", "batch2") if k in kwargs]
        return "matmul", [*args[1:3], *named][:2]
    if name in _MULS:
        return "mul", [*args[:2], *kwargs.values()][:2]
    if name == "einsum" and args and isinstance(args[0], str):
        operands = list(args[1:])
        if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
            operands = list(operands[0])
        return args[0], operands
    return None


def _shallow_tensors(*values: object) -> list[Tensor]:
    """The tensors among ``values`` and in the lists and tuples among them (the
    arguments of a torch call, its outputs): cheaper than a full tree walk, and torch
    calls take tensors no deeper."""
    found: list[Tensor] = []
    for value in values:
        if isinstance(value, Tensor):
            found.append(value)
        elif isinstance(value, (list, tuple)):
            found.extend(v for v in value if isinstance(v, Tensor))
    return found


def _matmul_pairs(a: Tensor, b: Tensor) -> int:
    """Pairs ``(A[..., i, k], B[..., k, j])`` of ``A @ B`` (masks; 1-D operands as
    :func:`torch.matmul` reads them, batch dims broadcast): ``Σ_k (Σ_i A) (Σ_j B)``."""
    a = a.unsqueeze(0) if a.dim() == 1 else a
    b = b.unsqueeze(-1) if b.dim() == 1 else b
    per_k_a = a.sum(-2, dtype=torch.float64)  # [..., k]
    per_k_b = b.sum(-1, dtype=torch.float64)
    return round(float((per_k_a * per_k_b).sum()))


def _einsum_pairs(equation: str, a: Tensor, b: Tensor) -> int:
    """Pairs of a two-operand einsum: every combination of its indices, summed."""
    inputs = equation.replace(" ", "").split("->")[0]
    with torch.autocast(a.device.type, enabled=False):
        total = torch.einsum(inputs + "->", a.to(torch.float64), b.to(torch.float64))
    return round(float(total))


#: How deep this thread is inside counters' own arithmetic (:meth:`RunMode.quiet`).
_QUIET = threading.local()


class _Running(threading.local):
    """What one thread's run of the model follows (see :class:`RunMode`)."""

    def __init__(self) -> None:
        self.analog: dict[int, weakref.ref[Tensor]] = {}
        self.derived: dict[int, weakref.ref[Tensor]] = {}  # computed from weights alone
        self.weights: set[int] = set()  # storages of the parameters and buffers
        self.stack: list[str] = []  # the modules running, outermost first
        self.excluded = 0  # how many of them are excluded types


class RunMode(TorchFunctionMode):
    """Active while a counted model runs (entered at the first call into one of its
    modules, left when that call returns): follows which tensors hold the values of
    neurons with an analog output (``track_analog``) and which are weights or computed
    from weights alone, and counts the products between activations (see the module
    docstring) into ``records``, by the name of the module running them.

    Args:
        model: the model counted; its parameters and buffers are the weights.
        track_analog: follow analog values (for models holding such neurons).
        excluded: module types inside whose forward no product is counted.
        not_counted: where a product of an unsupported form (an einsum of more than
            two operands) is listed.
    """

    def __init__(
        self,
        model: nn.Module,
        track_analog: bool,
        excluded: tuple[type[nn.Module], ...],
        not_counted: list[str],
    ) -> None:
        super().__init__()
        self.model = model
        self.track_analog = track_analog
        self.records: dict[str, LayerOperations] = {}
        self._excluded_types = excluded
        self._not_counted = not_counted
        # What a run follows, per thread (threads running the model at once, as
        # nn.DataParallel's replicas do, each enter the mode in their own thread).
        self._running = _Running()
        self._lock = threading.Lock()  # the records, updated from every thread

    @property
    def _analog(self) -> dict[int, weakref.ref[Tensor]]:
        return self._running.analog

    @property
    def _derived(self) -> dict[int, weakref.ref[Tensor]]:
        return self._running.derived

    @property
    def _stack(self) -> list[str]:
        return self._running.stack

    @property
    def _excluded(self) -> int:
        return self._running.excluded

    @_excluded.setter
    def _excluded(self, value: int) -> None:
        self._running.excluded = value

    @property
    def _weights(self) -> set[int]:
        return self._running.weights

    @_weights.setter
    def _weights(self, value: set[int]) -> None:
        self._running.weights = value

    @staticmethod
    @contextlib.contextmanager
    def quiet() -> Iterator[None]:
        """Look away: the calls made meanwhile (a counter's own) are not the model's.
        Every counter looks away (in this thread), so that one counter's arithmetic is
        not counted by another counting the same calls (nested counters)."""
        _QUIET.depth = getattr(_QUIET, "depth", 0) + 1
        try:
            yield
        finally:
            _QUIET.depth -= 1

    # -- the modules running ---------------------------------------------------------

    def hooks(self, name: str, module: nn.Module) -> tuple[Callable, Callable]:
        """A forward pre-hook and a forward hook for ``module`` (named ``name``)."""
        excluded = isinstance(module, self._excluded_types)

        def enter(mod: nn.Module, args: Any) -> None:
            if not self._stack:
                self._weights = {
                    t.untyped_storage().data_ptr()
                    for t in (*self.model.parameters(), *self.model.buffers())
                    if t.numel() and not t.is_meta
                }
                self.__enter__()
            self._stack.append(name)
            self._excluded += excluded

        def leave(mod: nn.Module, args: Any, output: Any) -> None:
            if not self._stack:
                return
            self._stack.pop()
            self._excluded -= excluded
            if not self._stack:
                self.__exit__(None, None, None)
                self._analog.clear()
                self._derived.clear()

        return enter, leave

    def close(self) -> None:
        """Leave a run that never returned in this thread: a ``BaseException`` that is
        no ``Exception`` (``KeyboardInterrupt``) skips the modules' forward hooks, which
        would have left the mode (the counter's ``remove`` calls this)."""
        if not self._stack:
            return
        self._stack.clear()
        self._excluded = 0
        self._analog.clear()
        self._derived.clear()
        modes = _get_current_function_mode_stack()
        if modes and modes[-1] is self:
            self.__exit__(None, None, None)

    # -- what the tensors hold -------------------------------------------------------

    @staticmethod
    def _holds(marks: dict[int, weakref.ref[Tensor]], x: Tensor) -> bool:
        ref = marks.get(id(x))
        return ref is not None and ref() is x

    def is_analog(self, x: Tensor) -> bool:
        """Whether ``x`` was computed from the output of a neuron with an analog output."""
        return self._holds(self._analog, x)

    def mark_analog(self, value: Any, analog: bool = True) -> None:
        """Mark the tensors of ``value`` as analog values (or as spikes again)."""
        for x in tensors(value):
            if analog:
                self._analog[id(x)] = weakref.ref(x)
            else:
                self._analog.pop(id(x), None)

    def _is_weight(self, x: Tensor) -> bool:
        """A parameter, a buffer (or a view of one), or a tensor computed from them."""
        if self._holds(self._derived, x):
            return True
        try:
            return x.untyped_storage().data_ptr() in self._weights
        except (RuntimeError, NotImplementedError):  # no storage (a meta tensor, ...)
            return False

    def __torch_function__(
        self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None
    ) -> Any:
        kwargs = kwargs or {}
        if getattr(_QUIET, "depth", 0) or (self._excluded and not self._analog):
            # (inside a layer, neuron, norm, ...: no product counted, and what it computes
            # from weights alone stays inside it; only analog values need following)
            return func(*args, **kwargs)
        name = getattr(func, "__name__", "")
        in_place = (name.endswith("_") or name in _IN_PLACE) and bool(args)
        product = None
        if not self._excluded and self._stack:
            product = product_operands(name, args, kwargs)
        if product is not None and in_place:
            self._count(*product)  # before it changes an operand (if it runs: mul_ can fail)
        out = func(*args, **kwargs)
        if product is not None and not in_place:
            self._count(*product)
        inputs = _shallow_tensors(*args, *kwargs.values())
        target = args[0] if in_place and isinstance(args[0], Tensor) else None
        # Weights in, weights out; and what is made from no tensor at all (torch.rand,
        # torch.ones: a drawn mask, a constant) is no activation either.
        if all(self._is_weight(x) for x in inputs):
            for x in _shallow_tensors(out):
                self._derived[id(x)] = weakref.ref(x)
        elif target is not None:
            self._derived.pop(id(target), None)  # changed in place by an activation
        if self._analog and any(self.is_analog(x) for x in inputs):
            self.mark_analog(_shallow_tensors(out))
            if target is not None:
                self.mark_analog(target)  # changed in place by a real value
        return out

    # -- the products ----------------------------------------------------------------

    def _count(self, kind: str, operands: list[object]) -> None:
        if len(operands) != 2 or not all(isinstance(x, Tensor) for x in operands):
            if kind not in ("matmul", "mul") and len(operands) > 2:
                where = self._stack[-1] or "(model)"
                entry = f"{where} (einsum of {len(operands)} operands)"
                if entry not in self._not_counted:
                    self._not_counted.append(entry)
            return
        a, b = operands
        assert isinstance(a, Tensor) and isinstance(b, Tensor)
        if a.numel() <= 1 or b.numel() <= 1:  # a scale
            return
        if not (a.is_floating_point() or b.is_floating_point()):
            return  # integer arithmetic (indices), booleans
        if any(not (x.is_floating_point() or x.dtype == torch.bool) for x in (a, b)):
            return
        if self._is_weight(a) or self._is_weight(b) or reruns_forward():
            return
        with self.quiet(), torch.no_grad():
            spikes = [not self.is_analog(x) and is_spikes(x) for x in (a, b)]
            masks = [
                (x != 0) if spike else torch.ones_like(x, dtype=torch.bool)
                for x, spike in zip((a, b), spikes, strict=True)
            ]
            if kind == "matmul":
                pairs = _matmul_pairs(*masks)
            elif kind == "mul":
                pairs = int(torch.broadcast_tensors(masks[0], masks[1])[0]
                            .logical_and(masks[1]).sum())  # fmt: skip
            else:
                pairs = _einsum_pairs(kind, *masks)
            nonzero = int((a != 0).sum()) + int((b != 0).sum())
        where = self._stack[-1]
        with self._lock:
            record = self.records.get(where)
            if record is None:
                label = f"{where or '(model)'} (activation products)"
                record = self.records[where] = LayerOperations(label, "products")
            record.calls += 1
            if any(spikes):
                record.spike_calls += 1
                record.acs += pairs
            else:
                record.macs += pairs
            record.input_elements += a.numel() + b.numel()
            record.input_nonzero += nonzero
