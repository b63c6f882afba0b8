"""Channel tensor parallelism: each process holds a slice of the channels of a spiking
network's layers (Megatron-style column/row pairs, on channels).

A *pair* is a column layer (a ``Conv1d``/``Conv2d``/``Linear`` whose output channels are
split over the ranks), the channel-wise modules after it, and a row layer (the next
weighted layer, whose input channels are split the same way); see
:mod:`~spikeflow.training.tensor_parallel_layers`. One all-reduce forward (after the row
layer) and one backward (into the column layer's input) per pair; everything outside the
pairs runs whole, and identically, on every rank.

Between the two layers, nothing needs communication, because each module acts on each
channel alone:

* batch norm: its statistics are per channel (over batch, time and space), so a rank's
  slice of channels has exactly its own statistics: its weight, bias and running
  statistics are sliced, with no all-reduce (unlike SyncBatchNorm's batch sharding);
* spiking neurons are elementwise: their state takes the shape of the input slice.
  Per-channel parameters (a PLIF neuron's ``w`` of shape ``(C, 1, 1)``, a tensor
  ``tau`` or threshold) are sliced too; a parameter shared by every channel (a scalar
  ``w``) stays whole, and its gradient (each rank's share from its channels) is summed
  over the ranks by a gradient hook;
* activations, ``Flatten`` from the channel dim on, and pooling over the spatial dims
  of the column layer's output (a ``MaxPool2d`` after a ``Conv2d``; no pooling after a
  ``Linear`` or a ``Flatten``, where it would mix channels) need nothing; spikeflow's
  ``Dropout``/``Dropout2d`` draw the whole layer's mask (the same on every rank, from
  the same seed) and keep their slice, so the sharded model drops what the whole model
  drops.

Which layers pair up is decided from the model alone
(:func:`~spikeflow.training.tensor_parallel_plan.channel_plan`, re-exported here); this
module splits them and gathers their state, gradients' norm and optimizer state back.

The processes must start from the same weights (build the model after the same
``torch.manual_seed``) and run the same inputs; a data-parallel dimension on top is not
handled here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from spikeflow.errors import ConfigurationError
from spikeflow.layers.dropout import _SequenceDropout
from spikeflow.neurons.base import BaseNode
from spikeflow.training.tensor_parallel_layers import (
    ChannelShardedConv,
    ChannelShardedLinear,
    group_rank_and_size,
    shard_range,
)
from spikeflow.training.tensor_parallel_plan import (
    ChannelPair,
    _channel_wise_run,
    _flattens_channels,
    _nested_per_channel,
    _own_computation,
    _pairs_up,
    _weighted,
    _width,
    channel_plan,
)

__all__ = ["ChannelPair", "ChannelShards", "channel_plan", "parallelize_channels"]


@dataclass
class ChannelShards:
    """What :func:`parallelize_channels` did: the pairs, the state-dict entries that are
    sliced (name -> the dim they are split along), and the group."""

    pairs: list[ChannelPair]
    split_dims: dict[str, int] = field(default_factory=dict)
    group: Any = None

    def full_state_dict(self, model: nn.Module) -> dict[str, Tensor]:
        """The model's ``state_dict`` with every slice gathered (every rank joins): the
        unsharded model's keys and shapes."""
        return {k: self._gather(k, v) for k, v in model.state_dict().items()}

    def full_grads(self, model: nn.Module) -> dict[str, Tensor | None]:
        """Each parameter's gradient, gathered whole (every rank joins)."""
        return {
            name: None if p.grad is None else self._gather(name, p.grad)
            for name, p in model.named_parameters()
        }

    def load_full_state_dict(self, model: nn.Module, state: dict[str, Tensor]) -> None:
        """Load an unsharded ``state_dict`` (:meth:`full_state_dict`'s, or a whole
        model's) into the sharded ``model``: each sliced entry keeps this rank's part
        (the inverse of :meth:`full_state_dict`; no communication).

        Raises:
            ConfigurationError: keys missing from or foreign to the model, or an entry
                whose shape is not the unsharded one, named.
        """
        rank, world = group_rank_and_size(self.group)
        own = model.state_dict()
        missing, foreign = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        if missing or foreign:
            raise ConfigurationError(
                f"load_full_state_dict: keys missing from the state: {missing[:5]}; keys "
                f"the model does not have: {foreign[:5]}"
            )
        local = {}
        for key, value in state.items():
            dim, shape = self.split_dims.get(key), list(own[key].shape)
            if dim is not None:
                shape[dim] *= world
            if tuple(value.shape) != tuple(shape):
                raise ConfigurationError(
                    f"load_full_state_dict: {key!r} has shape {tuple(value.shape)}, "
                    f"the unsharded model's is {tuple(shape)}"
                )
            if dim is not None:
                part = own[key].shape[dim]
                value = value.narrow(dim, rank * part, part)
            local[key] = value
        model.load_state_dict(local)

    def full_optimizer_state(
        self, model: nn.Module, optimizer: torch.optim.Optimizer
    ) -> dict[str, Any]:
        """``optimizer.state_dict()`` with the state of each sliced parameter
        (momentum, Adam's moments: the tensors shaped as the parameter) gathered whole:
        the state an optimizer of the unsharded model would hold (every rank joins)."""
        saved = optimizer.state_dict()
        params = self._optimized(model, optimizer)
        state = {}
        for index, entries in saved["state"].items():
            name, param = params[index]
            state[index] = {
                key: self._gather(name, value) if _like(value, param) else value
                for key, value in entries.items()
            }
        return {**saved, "state": state}

    def load_full_optimizer_state(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]
    ) -> None:
        """Load :meth:`full_optimizer_state`'s (or an unsharded model's optimizer's)
        state into ``optimizer`` of the sharded ``model``: each sliced parameter's
        state keeps this rank's part."""
        rank, world = group_rank_and_size(self.group)
        params = self._optimized(model, optimizer)
        local = {}
        for index, entries in state["state"].items():
            name, param = params[int(index)]
            dim = self.split_dims.get(name)
            local[index] = {}
            for key, value in entries.items():
                if dim is not None and isinstance(value, Tensor) and value.dim() == param.dim():
                    part = param.shape[dim]
                    if value.shape[dim] != part * world:
                        raise ConfigurationError(
                            f"load_full_optimizer_state: {key!r} of {name!r} has shape "
                            f"{tuple(value.shape)}, not the unsharded parameter's"
                        )
                    value = value.narrow(dim, rank * part, part)
                local[index][key] = value
        optimizer.load_state_dict({**state, "state": local})

    @staticmethod
    def _optimized(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[tuple[str, Tensor]]:
        """The optimizer's parameters in its ``state_dict`` order, with their names in
        ``model``; an optimizer made before :func:`parallelize_channels` is refused."""
        names = {id(p): n for n, p in model.named_parameters()}
        params = [p for group in optimizer.param_groups for p in group["params"]]
        foreign = [i for i, p in enumerate(params) if id(p) not in names]
        if foreign:
            raise ConfigurationError(
                f"the optimizer's parameter {foreign[0]} is not the model's: create the "
                "optimizer after parallelize_channels (it replaces the split layers' "
                "parameters)"
            )
        return [(names[id(p)], p) for p in params]

    def clip_grad_norm_(self, model: nn.Module, max_norm: float, norm_type: float = 2.0) -> Tensor:
        """``torch.nn.utils.clip_grad_norm_`` over the whole model: the norm of every
        gradient, the slices of every rank together (each whole parameter counted
        once), and the same scale on every rank. ``clip_grad_norm_`` on one rank's
        parameters would see its own slices only: a smaller norm, different on each
        rank, whose scale would make the ranks' copies of the whole parameters drift
        apart. Returns the total norm (every rank joins)."""
        norm_type = float(norm_type)
        split, whole = [], []
        for name, param in model.named_parameters():
            if param.grad is not None:
                (split if name in self.split_dims else whole).append(param.grad.detach())
        device = (split + whole)[0].device if split + whole else torch.device("cpu")
        sharded, replicated = _norms(split, norm_type, device), _norms(whole, norm_type, device)
        _, world = group_rank_and_size(self.group)
        if norm_type == float("inf"):
            total = sharded.max()
            if world > 1:
                dist.all_reduce(total, op=dist.ReduceOp.MAX, group=self.group)
            total = torch.maximum(total, replicated.max())
        else:
            total = sharded.pow(norm_type).sum()
            if world > 1:
                dist.all_reduce(total, group=self.group)
            total = (total + replicated.pow(norm_type).sum()).pow(1.0 / norm_type)
        scale = torch.clamp(max_norm / (total + 1e-6), max=1.0)
        for grad in split + whole:
            grad.mul_(scale.to(grad.dtype))
        return total

    def _gather(self, name: str, value: Tensor) -> Tensor:
        dim = self.split_dims.get(name)
        _, world_size = group_rank_and_size(self.group)
        if dim is None or world_size == 1:
            return value.detach().clone()
        parts = [torch.empty_like(value) for _ in range(world_size)]
        dist.all_gather(parts, value.detach().contiguous(), group=self.group)
        return torch.cat(parts, dim)


def _like(value: Any, param: Tensor) -> bool:
    """Whether an optimizer state entry is shaped as its parameter (is sliced with it)."""
    return isinstance(value, Tensor) and value.shape == param.shape


def _norms(grads: list[Tensor], norm_type: float, device: torch.device) -> Tensor:
    """Each gradient's norm (float64, on ``device``); ``[0]`` for none."""
    if not grads:
        return torch.zeros(1, dtype=torch.float64, device=device)
    return torch.stack([torch.linalg.vector_norm(g, norm_type).double() for g in grads])


def _refuse_shared(model: nn.Module, pairs: list[ChannelPair]) -> None:
    """Refuse a pair whose module holds a parameter or buffer that is also reached
    under another name (the module used twice, or a tied weight), naming both: its
    slice would not fit the other use, and a shared parameter's gradient, summed over
    the ranks, would count the other (whole, the same on every rank) use once per rank."""
    places: dict[int, list[str]] = {}
    for name, tensor in [
        *model.named_parameters(remove_duplicate=False),
        *model.named_buffers(remove_duplicate=False),
    ]:
        places.setdefault(id(tensor), []).append(name)
    for pair in pairs:
        for name in (pair.column, *pair.between, pair.row):
            module = model.get_submodule(name)
            for key, tensor in [*module.named_parameters(), *module.named_buffers()]:
                others = [n for n in places.get(id(tensor), []) if n != f"{name}.{key}"]
                if others:
                    raise ConfigurationError(
                        f"parallelize_channels cannot shard {name!r} ({type(module).__name__}):"
                        f" its {key!r} is also used as {others[0]!r}; a module or weight "
                        "used in two places cannot be split (give each place its own)"
                    )


class _SumGradOverShards:
    """A gradient hook on a parameter every channel slice uses (a scalar PLIF ``w``):
    each rank's gradient covers its channels only; their sum is the whole gradient."""

    def __init__(self, group: Any) -> None:
        self.group = group

    def __call__(self, grad: Tensor) -> Tensor:
        if group_rank_and_size(self.group)[1] == 1:
            return grad
        grad = grad.clone()
        dist.all_reduce(grad, group=self.group)
        return grad


class _HookSharedParams:
    """A forward pre-hook on a channel-wise module that puts :class:`_SumGradOverShards`
    on its parameters shared by every channel (by name), once per parameter object:
    a copy of the model (``copy.deepcopy``) has new parameters, which tensor hooks do
    not follow, but keeps the module's hooks, so its parameters get theirs at its first
    forward."""

    def __init__(self, names: list[str], group: Any) -> None:
        self.names, self.group = names, group

    def __call__(self, module: nn.Module, args: Any) -> None:
        for name in self.names:
            param = module.get_parameter(name)
            if not getattr(param, "_spikeflow_sums_over_shards", False):
                param.register_hook(_SumGradOverShards(self.group))
                param._spikeflow_sums_over_shards = True  # type: ignore[attr-defined]


class _SlicedMask:
    """A dropout's ``_draw_mask`` that draws the whole layer's mask (the same on every
    rank: same seed, same draws) and keeps this rank's channels."""

    def __init__(self, module: _SequenceDropout, from_end: int, world: int, part: slice) -> None:
        self.draw = type(module)._draw_mask.__get__(module)
        self.from_end, self.world, self.part = from_end, world, part

    def __call__(self, step: Tensor) -> Tensor:
        shape = list(step.shape)
        shape[-self.from_end] *= self.world
        mask = self.draw(step.new_empty(shape))
        index = [slice(None)] * mask.dim()
        index[mask.dim() - self.from_end] = self.part
        return mask[tuple(index)]


class _Sharder:
    """Applies the pairs to the model in place, recording the split dims."""

    def __init__(self, model: nn.Module, group: Any) -> None:
        self.model, self.group = model, group
        self.rank, self.world = group_rank_and_size(group)
        self.split_dims: dict[str, int] = {}

    def module(self, name: str) -> nn.Module:
        try:
            return self.model.get_submodule(name)
        except AttributeError:
            raise ConfigurationError(
                f"parallelize_channels: the model has no module {name!r}"
            ) from None

    def replace(self, name: str, new: nn.Module) -> None:
        parent, _, child = name.rpartition(".")
        setattr(self.model.get_submodule(parent) if parent else self.model, child, new)

    def check(self, pair: ChannelPair) -> None:
        """Refuse a pair that cannot be split, naming the module, before any change."""
        column, row = self.module(pair.column), self.module(pair.row)
        for name, layer in ((pair.column, column), (pair.row, row)):
            if _weighted(layer) is None:
                affine = isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Linear))
                own = _own_computation(layer) if affine else None
                why = "" if own is None else f" that computes its plain op only ({own})"
                raise ConfigurationError(
                    f"parallelize_channels cannot shard {name!r} ({type(layer).__name__}): "
                    "a column or row layer must be a Conv1d/Conv2d (groups=1, zero padding) "
                    f"or a Linear{why}"
                )
        between = [self.module(n) for n in pair.between]
        fits = _channel_wise_run(column, between)
        if fits < len(between):
            name, module = pair.between[fits], between[fits]
            nested = _nested_per_channel(module) if isinstance(module, BaseNode) else None
            if nested is not None:
                raise ConfigurationError(
                    f"parallelize_channels cannot shard {name!r} ({type(module).__name__}): "
                    f"its {nested[0]!r} of shape {nested[1]} is per channel and held by a "
                    "submodule (DH-LIF's dendritic branches read K currents per channel, "
                    "after the channels): a neuron with nested per-channel parameters "
                    "cannot run on a slice of the channels; leave it outside the pairs"
                )
            raise ConfigurationError(
                f"parallelize_channels cannot shard {name!r} ({type(module).__name__}): "
                "between a column and a row layer only batch norm, spiking neurons, "
                "activations, spikeflow's Dropout (torch's with p=0), Flatten(1, -1) and "
                "pooling over the column layer's spatial dims (a Conv2d's 2, none after "
                "a Linear or a Flatten) can run on a slice of the channels"
            )
        shard_range(_width(column, "out"), self.rank, self.world, pair.column)
        if not _pairs_up(column, between, row, self.world):
            raise ConfigurationError(
                f"parallelize_channels: {pair.row!r} ({_width(row, 'in')} input channels) "
                f"cannot take the output of {pair.column!r} ({_width(column, 'out')} "
                f"channels) split over {self.world} processes"
            )

    def apply(self, pair: ChannelPair) -> None:
        column, row = self.module(pair.column), self.module(pair.row)
        width = _width(column, "out")
        from_end = column.weight.dim() - 1 if _weighted(column) == "conv" else 1
        for name in pair.between:
            module = self.module(name)
            if _flattens_channels(module):
                from_end, width = 1, _width(row, "in")
            else:
                self.shard_channel_wise(name, module, from_end, width)
        self.replace(pair.column, self.sharded(column, "column", pair.column))
        self.replace(pair.row, self.sharded(row, "row", pair.row))
        self.split_dims[f"{pair.column}.weight"] = 0
        if column.bias is not None:
            self.split_dims[f"{pair.column}.bias"] = 0
        self.split_dims[f"{pair.row}.weight"] = 1

    def sharded(self, layer: nn.Module, mode: Any, name: str) -> nn.Module:
        cls = ChannelShardedConv if _weighted(layer) == "conv" else ChannelShardedLinear
        return cls(layer, mode, self.group, name)

    def shard_channel_wise(self, name: str, module: nn.Module, from_end: int, width: int) -> None:
        part = shard_range(width, self.rank, self.world, name)
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            if module.num_features != width:
                raise ConfigurationError(
                    f"parallelize_channels: {name!r} normalises {module.num_features} "
                    f"channels, but {width} reach it"
                )
            module.num_features = part.stop - part.start
            self.slice_tensors(name, module, 1, width, part)
        elif isinstance(module, BaseNode):
            self.slice_tensors(name, module, from_end, width, part)
        elif isinstance(module, _SequenceDropout) and module.p > 0:
            module._draw_mask = _SlicedMask(module, from_end, self.world, part)  # type: ignore[method-assign]

    def slice_tensors(
        self, name: str, module: nn.Module, from_end: int, width: int, part: slice
    ) -> None:
        """Slice ``module``'s own per-channel parameters and buffers; hook the gradient
        of the parameters that every channel shares."""
        owned = [*module._parameters.items(), *module._buffers.items()]
        shared = []
        for key, tensor in owned:
            if tensor is None:
                continue
            dim = tensor.dim() - from_end
            if dim < 0 or tensor.shape[dim] == 1:  # shared by every channel
                if isinstance(tensor, nn.Parameter) and tensor.requires_grad:
                    shared.append(key)
                continue
            if tensor.shape[dim] != width:
                raise ConfigurationError(
                    f"parallelize_channels cannot shard {name}.{key} of shape "
                    f"{tuple(tensor.shape)}: its dim {dim} is neither the {width} channels "
                    "nor 1"
                )
            index = (slice(None),) * dim + (part,)
            piece = tensor.detach()[index].clone()
            if isinstance(tensor, nn.Parameter):
                module._parameters[key] = nn.Parameter(piece, requires_grad=tensor.requires_grad)
            else:
                module._buffers[key] = piece
            self.split_dims[f"{name}.{key}"] = dim
        for sub, param in module.named_parameters(prefix="", recurse=True):
            if "." in sub and param.requires_grad:  # (a learnable surrogate's)
                shared.append(sub)
        if shared:
            hook = _HookSharedParams(shared, self.group)
            hook(module, ())
            module.register_forward_pre_hook(hook)


def parallelize_channels(
    model: nn.Module, group: Any = None, pairs: list[ChannelPair] | None = None
) -> ChannelShards:
    """Split ``model``'s channels over the processes of ``group`` (None: the default
    group), in place: each pair's column layer keeps this rank's output channels, its
    row layer the matching input channels, and the channel-wise modules between them
    (batch norm, neurons, dropout) this rank's channels (see the module doc).

    Every process must call it with the same model (same weights) and the same pairs.
    ``pairs`` None: :func:`channel_plan`'s. Returns a :class:`ChannelShards` that gathers
    the whole state and gradients.

    Raises:
        ConfigurationError: no pair found, or a pair naming a module that cannot be split
            (a grouped or transposed convolution, a layer norm, attention, ...), naming
            it; a module of a pair also used elsewhere (or a tied weight), naming both;
            channels that do not split evenly; a model wrapped for data parallelism.
    """
    if isinstance(model, nn.parallel.DistributedDataParallel) or hasattr(model, "_fsdp_state"):
        raise ConfigurationError(
            "parallelize_channels: shard the plain model; it cannot split a "
            f"{type(model).__name__} (wrapped for data parallelism)"
        )
    _, world = group_rank_and_size(group)
    pairs = channel_plan(model, world) if pairs is None else list(pairs)
    if not pairs:
        raise ConfigurationError(
            f"parallelize_channels found no column/row pair in {type(model).__name__}: two "
            "Conv/Linear layers in a row (in an nn.Sequential or a ResNet branch) with only "
            "batch norm, neurons, pooling or dropout between them; name them with pairs="
        )
    sharder = _Sharder(model, group)
    names = [n for pair in pairs for n in (pair.column, *pair.between, pair.row)]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigurationError(f"parallelize_channels: {repeated} named in two pairs")
    for pair in pairs:
        sharder.check(pair)
    _refuse_shared(model, pairs)
    for pair in pairs:
        sharder.apply(pair)
    return ChannelShards(pairs, sharder.split_dims, group)
