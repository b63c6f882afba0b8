"""Bytes moved by a model's tensor operations: SpikingJelly 2.0's ``MemoryAccessCounter``.

Each aten operation that runs (forward or backward) is charged the bytes of the tensors
it reads and writes (``numel · element_size``), a lower bound on a device's memory
traffic that ignores caches, tiling and re-reads. Views (``view``, ``t``, ``expand``,
``select``, ...) cost nothing; an operation with no rule is not counted and is listed in
:attr:`MemoryAccessCounter.uncounted` (SpikingJelly skips it silently). spikeflow's fused
neuron kernels (``backend="auto"`` where a C compiler or Triton is found) run inside
the counter as the operators ``spikeflow.neuron_forward`` / ``neuron_backward``, listed
there, not counted: build the neurons with ``backend="torch"`` to count their reference
loop's operations.

The rules are SpikingJelly's, per operation (``tests/test_energy_memory_access.py``
checks the counts equal), except where its rule misses a tensor the operation touches:

* ``max_pool2d_with_indices_backward`` reads the gradient and the ``indices`` and writes
  the input's gradient (SpikingJelly counts the pooled input in place of the indices);
* ``native_batch_norm_backward`` reads the gradient, the input, ``weight`` and the saved
  statistics (the running ones in evaluation), and writes each gradient asked for
  (SpikingJelly omits the writes);
* ``logical_not`` reads one tensor (SpikingJelly's rule fails on it).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.module_tracker import ModuleTracker

from spikeflow.errors import ConfigurationError
from spikeflow.kernels.fused import operators_seen_by_dispatch

__all__ = ["MemoryAccessCounter", "count_memory_access"]

aten = torch.ops.aten
#: A rule: ``(args, kwargs, out) -> bytes``.
Rule = Callable[[tuple, dict, Any], int]


def _bytes(*values: Any) -> int:
    """The bytes of every tensor in ``values`` (nested lists and tuples too)."""
    flat, _ = tree_flatten(values)
    return sum(t.numel() * t.element_size() for t in flat if isinstance(t, Tensor))


def _free(args: tuple, kwargs: dict, out: Any) -> int:
    return 0


def _reads_and_writes(args: tuple, kwargs: dict, out: Any) -> int:
    """Every tensor argument read, every output written."""
    return _bytes(args, out)


def _first_read(args: tuple, kwargs: dict, out: Any) -> int:
    """The first argument read, the output written (the rest are sizes or options)."""
    return _bytes(args[0], out)


def _writes(args: tuple, kwargs: dict, out: Any) -> int:
    """Only the output written (``ones_like``: the argument gives its shape)."""
    return _bytes(out)


def _beta(args: tuple, kwargs: dict) -> float:
    return kwargs.get("beta", args[3] if len(args) > 3 else 1.0)


def _add_products(args: tuple, kwargs: dict, out: Any) -> int:
    """``beta · bias + alpha · x @ y``: the bias is read unless ``beta == 0``."""
    bias, x, y = args[:3]
    return _bytes(x, y, out) + (_bytes(bias) if _beta(args, kwargs) != 0 else 0)


def _convolution(args: tuple, kwargs: dict, out: Any) -> int:
    return _bytes(args[:3], out)  # input, weight, bias (None: nothing)


def _convolution_backward(args: tuple, kwargs: dict, out: Any) -> int:
    """The output gradient; with the input gradient the weight, with the weight
    gradient the input; each gradient asked for written."""
    grad_out, x, weight, mask = args[0], args[1], args[2], args[-1]
    total = _bytes(grad_out)
    for wanted, read, grad in zip(mask, (weight, x, None), out):
        if wanted:
            total += _bytes(read, grad)
    return total


def _max_pool_backward(args: tuple, kwargs: dict, out: Any) -> int:
    return _bytes(args[0], args[-1], out)  # gradient, indices; the input's gradient


def _batch_norm(args: tuple, kwargs: dict, out: Any) -> int:
    """Input, running statistics, weight and bias read; in training the output and the
    saved statistics written, in evaluation the output only."""
    x, running_mean, running_var, weight, bias, training = args[:6]
    written = out if training else out[0]
    return _bytes(x, running_mean, running_var, weight, bias, written)


def _batch_norm_backward(args: tuple, kwargs: dict, out: Any) -> int:
    """The gradient, the input, ``weight`` and the statistics the forward used (the
    saved batch ones in training, the running ones in evaluation, where the saved are
    empty) read; each gradient asked for written."""
    grad_out, x, weight = args[:3]
    training = args[7]
    saved = args[5:7] if training else args[3:5]  # save_mean/invstd, running_mean/var
    mask = args[-1]
    written = [grad for wanted, grad in zip(mask, out) if wanted]
    return _bytes(grad_out, x, weight, saved, written)


def _attention(args: tuple, kwargs: dict, out: Any) -> int:
    """Queries, keys, values and a bias or mask read; the attended values written."""
    bias = args[3] if len(args) > 3 and isinstance(args[3], Tensor) else None
    if bias is None:
        bias = kwargs.get("attn_mask", kwargs.get("attn_bias"))
    return _bytes(args[:3], bias, out[0] if isinstance(out, (tuple, list)) else out)


def _attention_backward(bias_index: int | None) -> Rule:
    def rule(args: tuple, kwargs: dict, out: Any) -> int:
        bias = None
        if bias_index is not None and len(args) > bias_index:
            bias = args[bias_index] if isinstance(args[bias_index], Tensor) else None
        if bias is None:
            bias = kwargs.get("attn_mask", kwargs.get("attn_bias"))
        return _bytes(args[:4], bias, out)

    return rule


def _elementwise(*names: str) -> dict[Any, Rule]:
    """Every overload of each named elementwise operation: operands read, output written
    (a Python scalar operand costs nothing)."""
    rules: dict[Any, Rule] = {}
    for name in names:
        packet = getattr(aten, name)
        for overload in ("Tensor", "Scalar", "default"):
            if overload in packet.overloads():
                rules[getattr(packet, overload)] = _reads_and_writes
    return rules


def default_rules() -> dict[Any, Rule]:
    """The operations counted and how (SpikingJelly 2.0's set, see the module docstring)."""
    rules: dict[Any, Rule] = {
        aten.mm.default: _reads_and_writes,
        aten.bmm.default: _reads_and_writes,
        aten.addmm.default: _add_products,
        aten.baddbmm.default: _add_products,
        aten.convolution.default: _convolution,
        aten.convolution_backward.default: _convolution_backward,
        aten.native_batch_norm.default: _batch_norm,
        aten.native_batch_norm_backward.default: _batch_norm_backward,
        aten.max_pool2d_with_indices.default: _first_read,
        aten.max_pool2d_with_indices_backward.default: _max_pool_backward,
        aten.avg_pool2d.default: _first_read,
        aten.sum.default: _first_read,
        aten.sum.dim_IntList: _first_read,
        aten.mean.dim: _first_read,
        aten.stack.default: _first_read,
        aten.clone.default: _first_read,
        aten._to_copy.default: _first_read,
        aten.select_backward.default: _first_read,
        aten.full_like.default: _writes,
        aten.ones_like.default: _writes,
    }
    rules.update(_elementwise("add", "add_", "sub", "sub_", "rsub", "mul", "mul_", "div",
                              "div_", "eq", "ne", "lt", "le", "gt", "ge", "logical_and",
                              "logical_or", "logical_xor", "logical_not", "neg", "neg_",
                              "sigmoid", "sigmoid_"))  # fmt: skip
    for view in (aten.view.default, aten.unsqueeze.default, aten.squeeze.dim,
                 aten.unbind.int, aten.empty.memory_format, aten.select.int,
                 aten.detach.default, aten.t.default, aten.expand.default):  # fmt: skip
        rules[view] = _free
    for name in ("_scaled_dot_product_flash_attention_for_cpu",
                 "_scaled_dot_product_flash_attention",
                 "_scaled_dot_product_efficient_attention",
                 "_scaled_dot_product_cudnn_attention"):  # fmt: skip
        if hasattr(aten, name):
            rules[getattr(aten, name).default] = _attention
    for name, bias_index in (("_scaled_dot_product_flash_attention_for_cpu_backward", None),
                             ("_scaled_dot_product_flash_attention_backward", None),
                             ("_scaled_dot_product_efficient_attention_backward", 4),
                             ("_scaled_dot_product_cudnn_attention_backward", 8)):  # fmt: skip
        if hasattr(aten, name):
            rules[getattr(aten, name).default] = _attention_backward(bias_index)
    return rules


class _Dispatch(TorchDispatchMode):
    def __init__(self, counter: MemoryAccessCounter) -> None:
        super().__init__()
        self.counter = counter

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: Any = None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self.counter._record(func, args, kwargs, out)
        return out


class MemoryAccessCounter:
    """Count the bytes read and written by the aten operations run inside ``with``
    (forward, backward and optimizer steps alike); see the module docstring.

    ``counter.total`` is the bytes over every operation, :meth:`by_op` per operation,
    :meth:`by_module` per module and operation (the module names of
    ``torch.utils.module_tracker.ModuleTracker``: the root module's class name, then the
    attribute path, as SpikingJelly's records; ``"Global"`` is everything).

    Args:
        extra_rules: ``{aten overload: rule}`` added to (or replacing) the defaults; a
            rule takes ``(args, kwargs, out)`` and returns bytes (SpikingJelly's
            ``extra_rules``).
        ignore_modules: module types whose operations, forward and backward, are not
            counted (SpikingJelly's ``extra_ignore_modules``).

    Raises:
        ConfigurationError: a rule that is not callable, or an ignored type that is not
            an ``nn.Module`` subclass.
    """

    def __init__(
        self,
        extra_rules: dict[Any, Rule] | None = None,
        ignore_modules: Iterable[type[nn.Module]] = (),
    ) -> None:
        self.rules = default_rules()
        for op, rule in (extra_rules or {}).items():
            if not callable(rule):
                raise ConfigurationError(
                    f"MemoryAccessCounter: the rule for {op} must be callable, got {rule!r}"
                )
            self.rules[op] = rule
        self.ignore_modules = tuple(ignore_modules)
        for kind in self.ignore_modules:
            if not (isinstance(kind, type) and issubclass(kind, nn.Module)):
                raise ConfigurationError(
                    f"MemoryAccessCounter: ignore_modules must hold nn.Module subclasses, "
                    f"got {kind!r}"
                )
        self.records: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        #: Operations run that have no rule: name -> calls.
        self.uncounted: dict[str, int] = defaultdict(int)
        self._tracker: ModuleTracker | None = None
        self._mode: _Dispatch | None = None
        self._known_count = -1
        self._ignored_names: set[str] = set()

    def __enter__(self) -> MemoryAccessCounter:
        self._tracker = ModuleTracker()
        self._tracker.__enter__()
        # the fused neuron kernels as operators: listed in .uncounted, not unseen
        self._operators = operators_seen_by_dispatch()
        self._operators.__enter__()
        self._mode = _Dispatch(self)
        self._mode.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._mode is not None and self._tracker is not None
        self._mode.__exit__(*exc)
        self._operators.__exit__(*exc)
        self._tracker.__exit__(*exc)
        self._mode = self._tracker = None

    def _in_ignored_module(self) -> bool:
        """Whether an ignored module runs now, forward or backward: the tracker's
        scopes (which its backward hooks keep too) against its ignored modules' names."""
        assert self._tracker is not None
        known = self._tracker._known_modules  # module -> its name, as the scopes name it
        if len(known) != self._known_count:  # new modules met: their names, once
            self._known_count = len(known)
            self._ignored_names = {
                name for module, name in known.items() if isinstance(module, self.ignore_modules)
            }
        return not self._ignored_names.isdisjoint(self._tracker.parents)

    def _record(self, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
        if self.ignore_modules and self._in_ignored_module():
            return
        rule = self.rules.get(func)
        name = str(func)
        if rule is None:
            self.uncounted[name] += 1
            return
        value = int(rule(args, kwargs, out))
        assert self._tracker is not None
        for scope in set(self._tracker.parents):
            self.records[scope][name] += value

    @property
    def total(self) -> int:
        """The bytes of every counted operation."""
        return sum(self.records.get("Global", {}).values())

    def by_op(self) -> dict[str, int]:
        """Bytes per operation (``"aten.mm.default"``, ...), largest first."""
        ops = self.records.get("Global", {})
        return dict(sorted(ops.items(), key=lambda item: -item[1]))

    def by_module(self) -> dict[str, dict[str, int]]:
        """Bytes per module and operation (``"Global"``: all of them)."""
        return {scope: dict(ops) for scope, ops in self.records.items()}

    def reset(self) -> None:
        """Forget every count."""
        self.records.clear()
        self.uncounted.clear()


def count_memory_access(
    model: nn.Module, *inputs: Any, backward: bool = False, **kwargs: Any
) -> MemoryAccessCounter:
    """The bytes moved by one call ``model(*inputs)`` (and, with ``backward``, the
    backward pass of the sum of each output that requires gradients); ``kwargs`` go to
    :class:`MemoryAccessCounter`. The forward runs without gradients unless ``backward``.

    Raises:
        ConfigurationError: ``backward`` with no output that requires gradients (no
            parameter nor input the output depends on requires them: nothing to count).
    """
    counter = MemoryAccessCounter(**kwargs)
    with counter, torch.set_grad_enabled(backward):
        out = model(*inputs)
        if backward:
            flat, _ = tree_flatten(out)
            wanted = [t.sum() for t in flat if isinstance(t, Tensor) and t.requires_grad]
            if not wanted:
                raise ConfigurationError(
                    f"count_memory_access: backward=True but no output of "
                    f"{type(model).__name__} requires gradients (no parameter or input "
                    "it depends on does): there is no backward pass to count"
                )
            torch.autograd.backward(wanted)
    return counter
