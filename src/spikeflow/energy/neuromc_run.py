"""What :func:`~spikeflow.energy.neuromc_energy_report`'s run leaves as it was, and the
matrix products it cannot price.

* :func:`preserved` keeps the parameters' gradients, the model's buffers (batch norm's
  running statistics: a training-mode forward updates them) and the random number
  generators (a dropout draws its mask) as they were before the run.
* :func:`eager` runs a compiled model eagerly, so that the hooks see every call.
* :class:`UnpricedProducts` watches the forward for matrix products and convolutions
  run outside the layers NeuroMC prices (an attention's ``q @ kᵀ`` in its module's own
  ``forward``): ``matmul`` (``@``), ``mm`` and ``bmm`` go to a pricing callback
  (:mod:`spikeflow.energy.neuromc_matmul`); any other (``einsum``, ``addmm``, a
  functional convolution, torch's fused attention with its softmax) is refused, named,
  rather than left out. A pooling function (``F.max_pool2d``, ...) goes to a pool
  pricing callback (:func:`~spikeflow.energy.neuromc_pooling.functional_pool`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

from spikeflow.energy.neuromc_pooling import POOL_FUNCTIONS, functional_pool
from spikeflow.errors import ConfigurationError
from spikeflow.event_driven import pooling
from spikeflow.event_driven.pooling import AdjustedAvgPool2d
from spikeflow.memory.recompute import Recomputed, reruns_forward

__all__ = ["UnpricedProducts", "eager", "preserved"]


def eager() -> contextlib.AbstractContextManager[Any]:
    """A context in which ``torch.compile``'d models and functions run eagerly (Dynamo
    turned off while it lasts), so that module hooks and torch function modes see every
    call; nothing to do when Dynamo was never imported (nothing can be compiled)."""
    from spikeflow._compile_marks import dynamo_loaded

    if not dynamo_loaded():
        return contextlib.nullcontext()
    import torch._dynamo

    return torch._dynamo.config.patch(disable=True)


@contextlib.contextmanager
def preserved(model: nn.Module, device: torch.device) -> Iterator[None]:
    """Run the body with the parameters' ``.grad`` cleared, then give back the gradients,
    the buffers' values (the same tensors, their contents copied back) and the CPU's
    (and ``device``'s, on CUDA) random number generator state."""
    grads = {p: p.grad for p in model.parameters()}
    buffers = [
        (module, name, buffer, buffer.detach().clone())
        for module in model.modules()
        for name, buffer in module.named_buffers(recurse=False)
    ]
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        try:
            for p in grads:
                p.grad = None
            yield
        finally:
            for p, grad in grads.items():
                p.grad = grad
            with torch.no_grad():
                for module, name, buffer, value in buffers:
                    module._buffers[name] = buffer
                    buffer.copy_(value)


_PRODUCT_FUNCTIONS = {
    torch.matmul, Tensor.matmul, Tensor.__matmul__, Tensor.__rmatmul__, torch.mm, Tensor.mm,
    torch.bmm, Tensor.bmm, torch.addmm, Tensor.addmm, torch.baddbmm, Tensor.baddbmm,
    torch.einsum, torch.tensordot, torch.inner, torch.outer, F.linear, F.bilinear,
    F.conv1d, F.conv2d, F.conv3d, F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d,
    F.scaled_dot_product_attention, F.multi_head_attention_forward,
}  # fmt: skip
#: The products priced as ``A @ B`` (``__rmatmul__``: its operands the other way round).
MATMULS = {
    torch.matmul, Tensor.matmul, Tensor.__matmul__, Tensor.__rmatmul__, torch.mm, Tensor.mm,
    torch.bmm, Tensor.bmm,
}  # fmt: skip
#: ``on_matmul(module name, A, B, A @ B, rerun)``; ``rerun``: a checkpoint's
#: recomputation in the backward (its forward priced already).
MatmulPricer = Callable[[str, Tensor, Tensor, Tensor, bool], None]
#: ``on_pool(module name, the pooling module it computes as, input, output, rerun)``.
PoolPricer = Callable[[str, nn.Module, Tensor, Tensor, bool], None]


def _operands(func: Any, args: tuple, kwargs: dict) -> tuple[Any, Any]:
    """``(A, B)`` of a call of one of :data:`MATMULS`."""
    a = args[0] if args else kwargs.get("input")
    b = args[1] if len(args) > 1 else kwargs.get("other", kwargs.get("mat2"))
    return (b, a) if func is Tensor.__rmatmul__ else (a, b)


class UnpricedProducts(TorchFunctionMode):
    """A torch function mode that, with module hooks keeping the stack of running
    modules, records the products run while no priced module is running: by the name
    of the innermost running module, the functions and their count. With ``on_matmul``
    a product of :data:`MATMULS` is handed to it (priced) instead; with ``on_pool`` a
    pooling function. ``busy()``: a priced layer run without its module call (a DECOLLE
    layer's step) is running, whose work is priced already."""

    def __init__(self, model: nn.Module, priced: dict[nn.Module, str],
                 on_matmul: MatmulPricer | None = None, on_pool: PoolPricer | None = None,
                 busy: Callable[[], bool] = lambda: False) -> None:  # fmt: skip
        super().__init__()
        self.priced, self.on_matmul, self.on_pool, self.busy = priced, on_matmul, on_pool, busy
        #: Set for the backward: the mode is entered again only for a checkpoint's
        #: recomputation of the forward (by the module hooks), whose products and pools
        #: register their backward (a reentrant checkpoint's first run is
        #: gradient-free) without being priced again.
        self.backward = False
        self.stack: list[nn.Module] = []
        self.found: dict[tuple[str, str], dict[str, int]] = {}
        self.names = {module: name or "(model)" for name, module in model.named_modules()}
        #: The modules that ran, and those in which a product or pool was priced.
        self.ran: set[nn.Module] = set()
        self.pricing: set[nn.Module | None] = set()
        self.handles = []
        if on_pool is not None:  # adjusted_avg_pool2d called as a function
            pooling._OBSERVERS.append(self._adjusted_pool)
        for module in self.names:
            self.handles.append(module.register_forward_pre_hook(self._enter))
            self.handles.append(module.register_forward_hook(self._leave, always_call=True))

    def _enter(self, module: nn.Module, _args: Any) -> None:
        if self.backward and not self.stack:
            if not reruns_forward():
                return
            self.__enter__()  # a recomputation, in the autograd engine: watch it
        self.stack.append(module)
        self.ran.add(module)

    def _watching(self) -> bool:
        """Whether a call now runs outside the priced modules and is to be watched."""
        if self.stack and isinstance(self.stack[-1], Recomputed):
            return False
        if self.backward and not self.stack:
            return False  # the autograd engine, outside a recomputation
        return not self.busy() and not any(m in self.priced for m in self.stack)

    def _adjusted_pool(self, x: Tensor, kernel_size: int, out: Tensor) -> None:
        """Price a call of ``adjusted_avg_pool2d`` as :class:`AdjustedAvgPool2d`."""
        if self.on_pool is not None and self._watching():
            module = self.stack[-1] if self.stack else None
            self.pricing.add(module)
            name = self.names.get(module, "(model)")  # type: ignore[arg-type]
            self.on_pool(name, AdjustedAvgPool2d(kernel_size), x, out, self.backward)

    def _leave(self, module: nn.Module, _args: Any, _out: Any) -> None:
        if self.stack and self.stack[-1] is module:
            self.stack.pop()
            if self.backward and not self.stack:
                self.__exit__(None, None, None)

    def __torch_function__(
        self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None
    ) -> Any:
        """Record ``func`` if it is a product run outside the priced modules (price it,
        if one of :data:`MATMULS`); run it."""
        kwargs = kwargs or {}
        if self.stack and isinstance(self.stack[-1], Recomputed):
            return func(*args, **kwargs)  # its own bit packing of the kept input
        if pooling.adjusted_pool_running():
            return func(*args, **kwargs)  # priced whole, as AdjustedAvgPool2d
        watched = func in _PRODUCT_FUNCTIONS or (self.on_pool and func in POOL_FUNCTIONS)
        if watched and not self.busy() and not any(m in self.priced for m in self.stack):
            module = self.stack[-1] if self.stack else None
            if func in POOL_FUNCTIONS:
                self.pricing.add(module)
                pool, x = functional_pool(func, args, kwargs)
                out = func(*args, **kwargs)  # (with_indices: (values, indices))
                value = out[0] if isinstance(out, tuple) else out
                self.on_pool(self.names.get(module, "(model)"), pool, x, value, self.backward)  # type: ignore[misc]
                return out
            a, b = _operands(func, args, kwargs) if func in MATMULS else (None, None)
            if self.on_matmul is not None and isinstance(a, Tensor) and isinstance(b, Tensor):
                self.pricing.add(module)
                out = func(*args, **kwargs)
                self.on_matmul(self.names.get(module, "(model)"), a, b, out, self.backward)
                return out
            if self.backward:  # (found in the forward already)
                return func(*args, **kwargs)
            key = (self.names.get(module, "(model)"), type(module).__name__)
            name = getattr(func, "__name__", str(func))
            counts = self.found.setdefault(key, {})
            counts[name] = counts.get(name, 0) + 1
        return func(*args, **kwargs)

    def remove(self) -> None:
        """Remove the module hooks (and the adjusted pooling's observer)."""
        for handle in self.handles:
            handle.remove()
        if self._adjusted_pool in pooling._OBSERVERS:
            pooling._OBSERVERS.remove(self._adjusted_pool)

    def check_leaves(
        self, leaves: dict[nn.Module, str], refuse: Callable[[str, nn.Module], Exception]
    ) -> None:
        """Raise ``refuse(label, module)`` for the first of ``leaves`` (parameter-free
        leaf modules of no priced kind) that ran without a priced product or pool in
        its own forward: its work is none NeuroMC has a cost for."""
        for module, label in leaves.items():
            if module in self.ran and module not in self.pricing:
                raise refuse(label, module)

    def check(self) -> None:
        """Raise a ConfigurationError naming each module that ran unpriced products."""
        if not self.found:
            return
        where = "; ".join(
            f"{name} ({kind}): " + ", ".join(f"{f} x{n}" for f, n in counts.items())
            for (name, kind), counts in self.found.items()
        )
        raise ConfigurationError(
            f"NeuroMC cannot price products run outside the layers it prices ({where}): it "
            "prices matmul (@), mm and bmm of two activations as a Linear's product (the "
            "right operand as its weights); einsum, addmm, baddbmm, a functional linear or "
            "convolution and torch's fused attention (a softmax) have no cost in its model"
        )
