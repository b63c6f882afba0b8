"""Sharded data parallelism (``spikeflow train --fsdp``): torch's FSDP2 ``fully_shard``.

Each process keeps 1/world_size of every weight, of its gradient and of the optimizer's
state (``DTensor`` shards along dim 0); a block's whole weights are gathered just
before its forward and backward and freed after them. The unit that is gathered at once
is one top-level child of the model, or, where that child is a ``Sequential`` or
``ModuleList`` of blocks (a ResNet stage), each block; the root holds what is left
(see :func:`shard_units`). Single layers are not units of their own: a unit's output
must not be a view that a later layer changes in place (FSDP2's warning), which a
sequence layer's folded ``[T * B, ...]`` output can be.

What FSDP2 cannot shard stays whole on every process, as under DDP: zero-dimensional
parameters (a PLIF neuron's ``w``, a learned threshold), whose gradients
:func:`average_replicated_grads` averages over the processes, and every buffer (batch
norms' running statistics, neuron states), which the trainer gives rank 0's values at
the start and after every epoch.

Checkpoints hold full tensors (:func:`full_model_state`, :func:`full_optimizer_state`):
the same file as a one-process or DDP run writes, which ``spikeflow eval``, ``export``
and a ``--resume`` with any number of processes (with or without ``--fsdp``) read.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from spikeflow.errors import ConfigurationError

__all__ = [
    "FSDP_REFUSED",
    "average_replicated_grads",
    "full_model_state",
    "full_optimizer_state",
    "is_sharded",
    "local_part",
    "shard_model",
    "shard_optimizer_state",
    "shard_units",
]

#: The settings ``--fsdp`` refuses (config name, flag, why).
FSDP_REFUSED = (
    ("sync_bn", "--sync-bn", "torch's SyncBatchNorm under FSDP is not supported here"),
    ("online", "--online", "its steps reduce the gradients once per batch through DDP"),
    ("eprop", "--eprop", "e-prop writes the gradients itself, past FSDP's reduction"),
    ("decolle", "--decolle", "DECOLLE updates each layer alone, step by step"),
    ("eventprop", "--eventprop", "the adjoint runs whole float sequences outside FSDP"),
    ("tbptt", "--tbptt", "a window's backward would reduce the gradients per window"),
    ("prune", "--prune", "pruning masks and Grad R's signs act on whole weights"),
    ("weight_bits", "--weight-bits", "quantizers read whole weights for their scales"),
    ("input_bits", "--input-bits", "quantizers read whole weights for their scales"),
    ("membrane_bits", "--membrane-bits", "quantizers read whole weights for their scales"),
)


def check_fsdp_config(config: Any) -> None:
    """Refuse ``--fsdp`` together with a setting it cannot run, naming that setting."""
    if not config.fsdp:
        return
    for name, flag, why in FSDP_REFUSED:
        if getattr(config, name) not in (None, False, 0, "none"):
            raise ConfigurationError(f"--fsdp (fsdp = true) cannot be combined with {flag}: {why}")


def _fully_shard() -> Any:
    try:
        from torch.distributed.fsdp import fully_shard
    except ImportError as exc:  # torch < 2.6 has it elsewhere only
        raise ConfigurationError(
            f"--fsdp needs torch.distributed.fsdp.fully_shard (FSDP2, torch >= 2.6): {exc}"
        ) from None
    return fully_shard


def is_sharded(model: nn.Module) -> bool:
    """Whether ``model`` is an FSDP2 module (:func:`shard_model`)."""
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:
        return False
    return isinstance(model, FSDPModule)


def _is_block(module: nn.Module) -> bool:
    """Whether ``module`` holds two or more layers with weights (a residual block)."""
    weighted = [m for m in module.modules() if any(p.dim() > 0 for p in m.parameters(False))]
    return len(weighted) >= 2


def shard_units(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The modules gathered as one unit (name, module), root excluded: each top-level
    child with parameters, or, where that child is a ``Sequential``/``ModuleList`` of
    blocks (items with two or more layers with weights: a ResNet stage), each item
    with parameters."""
    units = []
    for name, child in model.named_children():
        items = [("", child)]
        if isinstance(child, (nn.Sequential, nn.ModuleList)) and any(
            _is_block(item) for item in child
        ):
            items = list(child.named_children())
        for item, module in items:
            if any(p.dim() > 0 for p in module.parameters()):
                units.append((f"{name}.{item}" if item else name, module))
    return units


def shard_model(model: nn.Module) -> list[nn.Parameter]:
    """Shard ``model`` in place (every process joins): rank 0's weights and buffers go
    to every process first (as DDP's construction does), then each unit of
    :func:`shard_units` and the root are ``fully_shard``-ed. Returns the parameters
    left whole (zero-dimensional ones), whose gradients the caller averages with
    :func:`average_replicated_grads`."""
    fully_shard = _fully_shard()
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            dist.broadcast(tensor.data, src=0)
    replicated = [p for p in model.parameters() if p.dim() == 0]
    ignored = set(replicated)
    for _, module in shard_units(model):
        fully_shard(module, ignored_params=ignored)
    fully_shard(model, ignored_params=ignored)
    return replicated


def average_replicated_grads(params: list[nn.Parameter], world_size: int) -> None:
    """Average the gradients of the parameters FSDP left whole over the processes (a
    parameter without a gradient on some process counts zero there; one without a
    gradient on every process keeps none)."""
    if not params:
        return
    has = torch.tensor([float(p.grad is not None) for p in params], dtype=torch.float64)
    dist.all_reduce(has)
    for p, count in zip(params, has.tolist()):
        if count == 0:
            continue
        grad = p.grad if p.grad is not None else torch.zeros_like(p)
        dist.all_reduce(grad)
        p.grad = grad.div_(world_size)


def local_part(tensor: torch.Tensor) -> torch.Tensor:
    """This process's shard of a DTensor (a plain tensor as it is)."""
    to_local = getattr(tensor, "to_local", None)
    return tensor if to_local is None else to_local()


def _full(value: Any, keep: bool) -> Any:
    """A DTensor's full tensor on the CPU (every process joins the gather; only where
    ``keep`` is the result kept), anything else as it is."""
    from torch.distributed.tensor import DTensor

    if isinstance(value, DTensor):
        full = value.full_tensor()
        return full.cpu() if keep else None
    return value


def full_model_state(model: nn.Module, keep: bool) -> dict[str, Any] | None:
    """``model.state_dict()`` with every shard gathered into its full tensor: the keys
    and shapes of the unsharded model's. Every process must call it; it returns the
    state where ``keep`` (rank 0), else None."""
    state = {name: _full(value, keep) for name, value in model.state_dict().items()}
    return state if keep else None


def full_optimizer_state(optimizer: torch.optim.Optimizer, keep: bool) -> dict[str, Any] | None:
    """``optimizer.state_dict()`` with full tensors (the layout of a one-process run's:
    parameters by index). Every process must call it; it returns the state where
    ``keep``, else None."""
    saved = optimizer.state_dict()
    state = {
        index: {key: _full(value, keep) for key, value in entries.items()}
        for index, entries in saved["state"].items()
    }
    return {**saved, "state": state} if keep else None


def shard_optimizer_state(optimizer: torch.optim.Optimizer) -> None:
    """After ``optimizer.load_state_dict`` of a full state (a checkpoint's): cut each
    state tensor of a sharded parameter into that parameter's shard (every process
    joins, holding the same full state)."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    for group in optimizer.param_groups:
        for param in group["params"]:
            if not isinstance(param, DTensor):
                continue
            for key, value in optimizer.state.get(param, {}).items():
                if isinstance(value, DTensor) or not isinstance(value, torch.Tensor):
                    continue
                if tuple(value.shape) == tuple(param.shape):
                    optimizer.state[param][key] = distribute_tensor(
                        value.to(param.device), param.device_mesh, param.placements
                    )
