"""Measuring one training step (forward, loss, backward) of a network: its peak memory
(:func:`step_peak_memory`; on CUDA by the caching allocator, elsewhere by following the
tensor storages the step allocates) and its time, with the network's state (carried
neuron state, buffers, gradients, modes, random generators) put back after each step.
:func:`spikeflow.memory.optimize` (which re-exports :func:`step_peak_memory`) measures
its plans with these, and :func:`spikeflow.profiling.profile_layers` restores the
network with the same :class:`_Restore`.
"""

from __future__ import annotations

import statistics
import time
import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from spikeflow.base import MemoryModule
from spikeflow.errors import ConfigurationError
from spikeflow.memory.recompute import _attributes, _own_generators, _set_attributes

__all__ = ["step_peak_memory"]

#: The loss of a model's output (a one-element tensor that requires grad).
LossFn = Callable[[Any], Tensor]


_SPARSE_PARTS: dict[torch.layout, tuple[str, ...]] = {
    torch.sparse_coo: ("_indices", "_values"),
    torch.sparse_csr: ("crow_indices", "col_indices", "values"),
    torch.sparse_bsr: ("crow_indices", "col_indices", "values"),
    torch.sparse_csc: ("ccol_indices", "row_indices", "values"),
    torch.sparse_bsc: ("ccol_indices", "row_indices", "values"),
}


def _storages(values: list[Any]) -> list[torch.UntypedStorage]:
    """The storages of the tensors among ``values`` (a sparse tensor's: those of its
    indices and values); none for meta tensors."""
    found = []
    for t in values:
        if not isinstance(t, Tensor) or t.device.type == "meta":
            continue
        if t.layout == torch.strided:
            found.append(t.untyped_storage())
        else:
            parts = _SPARSE_PARTS.get(t.layout, ())
            found.extend(getattr(t, part)().untyped_storage() for part in parts)
    return found


class _TensorMemory(TorchDispatchMode):
    """The bytes of the tensor storages the operations run under it allocate, live and
    at their peak (a storage counts from the operation that returned it until it is
    freed). An output sharing the storage of an input (a view, ``detach``, an in-place
    operation) allocates nothing, nor does one of a storage allocated before."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._sizes: dict[int, int] = {}
        self._refs: dict[int, Any] = {}

    def _freed(self, key: int) -> None:
        self.live -= self._sizes.pop(key, 0)
        self._refs.pop(key, None)

    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None
    ) -> Any:
        inputs = {s.data_ptr() for s in _storages(tree_flatten((args, kwargs))[0])}
        out = func(*args, **(kwargs or {}))
        for storage in _storages(tree_flatten(out)[0]):
            key, size = storage.data_ptr(), storage.nbytes()
            if key == 0 or (key in inputs and key not in self._sizes):
                continue  # empty, or a storage from before (a parameter's, viewed)
            if key not in self._sizes:
                self._refs[key] = weakref.ref(storage, lambda _, k=key: self._freed(k))
                self._sizes[key] = 0
            grown = size - self._sizes[key]
            if grown > 0:  # new, or resized by an out= operation
                self._sizes[key] = size
                self.live += grown
                self.peak = max(self.peak, self.live)
        return out


def _foreign_memories(model: nn.Module) -> list[tuple[nn.Module, dict[str, Any]]]:
    """The stateful modules of another library (SpikingJelly's ``MemoryModule``: its
    carried state in a ``_memories`` dict), with that dict."""
    return [
        (m, m.__dict__["_memories"])
        for m in model.modules()
        if not isinstance(m, MemoryModule) and isinstance(m.__dict__.get("_memories"), dict)
    ]


class _Restore:
    """The network's state before a measured step, put back after it: carried state,
    buffers, gradients (None during the step; those of the parameters and of the input
    tensors that are leaves requiring grad), train/eval modes, random generators."""

    def __init__(self, model: nn.Module, inputs: Any = ()) -> None:
        self.model = model
        self.memories = [m for m in model.modules() if isinstance(m, MemoryModule)]
        self.states = [_attributes(m) for m in self.memories]
        self.foreign = [(m, dict(memories)) for m, memories in _foreign_memories(model)]
        # (the module, the name, the buffer and its value: a step may replace a buffer)
        self.buffers = [
            (m, name, b, b.detach().clone())
            for m in model.modules()
            for name, b in m._buffers.items()
            if b is not None
        ]
        leaves = [
            t
            for t in tree_flatten(inputs)[0]
            if isinstance(t, Tensor) and t.is_leaf and t.requires_grad
        ]
        self.grads = [(p, p.grad) for p in dict.fromkeys([*model.parameters(), *leaves])]
        self.modes = [(m, m.training) for m in model.modules()]
        self.rng = torch.get_rng_state()
        self.cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
        self.generators = [(g, g.get_state()) for g in _own_generators(model)]

    def step_state(self) -> None:
        """Before (and after) a measured step: the state of the start, no gradients."""
        for m, attributes in zip(self.memories, self.states):
            _set_attributes(m, attributes)
        for m, memories in self.foreign:
            m._memories.clear()
            m._memories.update(memories)
        with torch.no_grad():
            for m, name, b, value in self.buffers:
                b.copy_(value)
                m._buffers[name] = b
        for p, _ in self.grads:
            p.grad = None
        for m, training in self.modes:
            m.training = training
        torch.set_rng_state(self.rng)
        if self.cuda_rng is not None:
            torch.cuda.set_rng_state_all(self.cuda_rng)
        for g, state in self.generators:
            g.set_state(state)

    def finish(self) -> None:
        """Everything as it was, the gradients too."""
        self.step_state()
        for p, grad in self.grads:
            p.grad = grad


def _default_loss(out: Any) -> Tensor:
    tensors = [
        t
        for t in tree_flatten(out)[0]
        if isinstance(t, Tensor) and t.is_floating_point() and t.requires_grad
    ]
    if not tensors:
        raise ConfigurationError(
            "the model's output holds no floating-point tensor that requires grad: "
            "nothing to train (pass loss_fn to say what the loss is)"
        )
    return torch.stack([t.float().sum() for t in tensors]).sum()


def _step(model: nn.Module, example_input: Any, loss_fn: LossFn | None) -> None:
    out = model(example_input)
    loss = (loss_fn or _default_loss)(out)
    if not isinstance(loss, Tensor) or loss.numel() != 1 or not loss.requires_grad:
        raise ConfigurationError(
            f"loss_fn must return a one-element tensor that requires grad, got "
            f"{type(loss).__name__}{tuple(loss.shape) if isinstance(loss, Tensor) else ''}"
        )
    loss.backward()


def _device(model: nn.Module, example_input: Any) -> torch.device:
    if isinstance(example_input, Tensor):
        return example_input.device
    first = next(iter(model.parameters()), None)
    return first.device if first is not None else torch.device("cpu")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak(model: nn.Module, example_input: Any, loss_fn: LossFn | None, restore: _Restore) -> int:
    """The peak memory of one training step above what was allocated before it."""
    device = _device(model, example_input)
    restore.step_state()
    try:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            before = torch.cuda.memory_allocated(device)
            _step(model, example_input, loss_fn)
            torch.cuda.synchronize(device)
            return torch.cuda.max_memory_allocated(device) - before
        with _TensorMemory() as tracker:
            _step(model, example_input, loss_fn)
        return tracker.peak
    finally:
        restore.step_state()


def _step_ms(
    model: nn.Module, example_input: Any, loss_fn: LossFn | None, restore: _Restore, repeat: int
) -> float:
    """The median time of ``repeat`` training steps."""
    device = _device(model, example_input)
    times = []
    for _ in range(repeat):
        restore.step_state()
        _sync(device)
        start = time.perf_counter()
        _step(model, example_input, loss_fn)
        _sync(device)
        times.append(1000 * (time.perf_counter() - start))
    restore.step_state()
    return statistics.median(times)


def step_peak_memory(model: nn.Module, example_input: Any, loss_fn: LossFn | None = None) -> int:
    """The peak memory, in bytes, of one training step of ``model`` on ``example_input``
    (forward, ``loss_fn(output)``, backward), as :func:`optimize` measures it: on CUDA
    by the caching allocator, elsewhere by following the tensor storages the step
    allocates; above what was allocated before the step. The network's state
    (carried state, buffers, gradients, random generators) is put back afterwards.

    ``loss_fn`` defaults to the sum of the output's floating-point tensors."""
    restore = _Restore(model, example_input)
    try:
        return _peak(model, example_input, loss_fn, restore)
    finally:
        restore.finish()
