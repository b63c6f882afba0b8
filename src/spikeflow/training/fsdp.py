"""Sharded data parallelism (``spikeflow train --fsdp``): torch's FSDP2 ``fully_shard``.

Each process keeps 1/world_size of every weight, of its gradient and of the optimizer's
state (``DTensor`` shards along dim 0); a block's whole weights are gathered just
before its forward and backward and freed after them. The unit that is gathered at once
is one top-level child of the model, or, where that child is a ``Sequential`` of
blocks (a ResNet stage) or a ``ModuleList``, each item; units with tied weights and
what is left belong to the root (see :func:`shard_units`). A unit's output that is a
view (a sequence layer's ``[T, B, ...]`` view of its folded result) is copied, so that
an in-place change downstream cannot drop FSDP2's backward hook on it.

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


def _candidate_units(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Each top-level child; the items of a ``Sequential`` of blocks; the items of a
    ``ModuleList``/``ModuleDict`` (containers with no forward of their own, whose
    hooks would never run), looked into again where an item is such a container."""
    units = []
    pending = list(model.named_children())
    while pending:
        name, child = pending.pop(0)
        container = isinstance(child, (nn.ModuleList, nn.ModuleDict))
        if container or (isinstance(child, nn.Sequential) and any(_is_block(m) for m in child)):
            pending[:0] = [(f"{name}.{item}", m) for item, m in child.named_children()]
        elif any(p.dim() > 0 for p in child.parameters()):
            units.append((name, child))
    return units


def shard_units(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The modules gathered as one unit (name, module), root excluded: each top-level
    child with parameters, or, where that child is a ``Sequential`` of blocks (items
    with two or more layers with weights: a ResNet stage) or a ``ModuleList`` /
    ``ModuleDict``, each item with parameters. A unit that shares a parameter with
    another unit or with the root (tied weights) is left to the root, which then
    gathers that parameter once for all its users."""
    units = _candidate_units(model)
    while True:
        owners: dict[int, set[str]] = {}
        for name, param in model.named_parameters(remove_duplicate=False):
            if param.dim() == 0:  # (kept whole: a tie costs nothing)
                continue
            unit = next((u for u, _ in units if name.startswith(u + ".")), "")
            owners.setdefault(id(param), set()).add(unit)
        shared = {u for found in owners.values() if len(found) > 1 for u in found}
        if not shared - {""}:
            return units
        units = [(name, module) for name, module in units if name not in shared]


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
    units = shard_units(model)
    for unit, module in units:
        for name, layer in module.named_modules():
            if name and any(p.dim() > 0 for p in layer.parameters(recurse=False)):
                layer.register_forward_pre_hook(_UnitCheck(model, unit, f"{unit}.{name}"))
    for module in [*(m for _, m in units), model]:
        # (before fully_shard's hooks, so that they see the copy)
        module.register_forward_hook(_copy_view_outputs)
        fully_shard(module, ignored_params=ignored)
    return replicated


class _UnitCheck:
    """A forward pre-hook on each layer with weights inside a unit: the layer must run
    within its unit's forward (where FSDP2 has gathered the unit's weights); a model
    that calls it directly (iterating a ``Sequential`` unit, calibrating its layers)
    is refused by name instead of failing inside torch on a weight shard."""

    def __init__(self, model: nn.Module, unit: str, layer: str) -> None:
        self.model_name, self.unit, self.layer = type(model).__name__, unit, layer

    def __call__(self, module: nn.Module, args: Any) -> None:
        from torch.distributed.tensor import DTensor

        if any(isinstance(p, DTensor) for p in module.parameters(recurse=False)):
            raise ConfigurationError(
                f"--fsdp: {self.model_name} runs its layer {self.layer!r} without calling "
                f"{self.unit!r}, the unit that holds it (FSDP gathers a unit's weights when "
                "the unit's forward runs): this model cannot be trained with --fsdp; "
                "train it without (DDP)"
            )


def _copy_view_outputs(module: nn.Module, args: Any, output: Any) -> Any:
    """A sharded unit's output tensors that are views (a sequence layer's ``[T, B, ...]``
    view of its folded ``[T * B, ...]`` result), copied: FSDP2 hooks the unit's
    backward gather onto its outputs, and an in-place change of a view output (a
    residual ``x += y`` downstream) drops that hook (FSDP2's warning). Only where the
    output takes part in a backward (training)."""
    if not torch.is_grad_enabled():
        return output

    def copy(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return value.clone() if value.requires_grad and value._base is not None else value
        if isinstance(value, tuple) and hasattr(value, "_fields"):  # a named tuple
            return type(value)(*(copy(v) for v in value))
        if isinstance(value, (tuple, list)):
            return type(value)(copy(v) for v in value)
        if isinstance(value, dict):
            return {k: copy(v) for k, v in value.items()}
        return value

    return copy(output)


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
