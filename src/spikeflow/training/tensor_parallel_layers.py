"""Channel-sharded convolutions and linear layers for tensor parallelism (Megatron's
column/row pairs, on channels).

A *column* layer holds this rank's slice of the output channels (weight rows and bias
entries); its input is whole (the same on every rank), so its forward needs no
communication and its backward sums the input's gradient over the ranks (each rank
saw only its own channels' share of it). A *row* layer holds the slice of the input
channels that the column layer before it produced on this rank; each rank computes a
partial sum of every output channel, and one all-reduce sums them (its backward needs
nothing: every rank holds the whole output gradient). A column/row pair thus costs one
all-reduce forward and one backward, whatever runs between them channel by channel
(batch norm, spiking neurons, pooling: see :mod:`spikeflow.training.tensor_parallel`).

The layers keep the parameter names of the layer they replace (``weight``, ``bias``),
so a sharded model's ``state_dict`` has the unsharded model's keys with sliced shapes.
They accept what the replaced layer accepted: a spikeflow sequence layer's ``[T, B,
...]`` (time folded into the batch) or one step, a torch layer's ``[B, ...]``.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from spikeflow.base import StepModule
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.training.distributed import group_rank_and_size

__all__ = [
    "ChannelShardedConv",
    "ChannelShardedLinear",
    "copy_to_shards",
    "group_rank_and_size",
    "shard_range",
    "sum_over_shards",
]

ShardMode = Literal["column", "row"]


def shard_range(total: int, rank: int, world_size: int, what: str) -> slice:
    """Rank ``rank``'s contiguous block of ``total`` channels, or a ConfigurationError
    naming ``what`` when ``total`` does not split evenly."""
    if total % world_size:
        raise ConfigurationError(
            f"{what}: {total} channels do not split evenly over {world_size} processes"
        )
    size = total // world_size
    return slice(rank * size, (rank + 1) * size)


class _CopyToShards(torch.autograd.Function):
    """Forward: the input as it is (every rank holds it whole). Backward: the gradient
    summed over the ranks."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, group: Any) -> Tensor:
        ctx.group = group
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


class _SumOverShards(torch.autograd.Function):
    """Forward: the partial results summed over the ranks. Backward: the gradient as it
    is (every rank holds the whole output gradient)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, group: Any) -> Tensor:
        out = x.contiguous().clone()
        dist.all_reduce(out, group=group)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad, None


def copy_to_shards(x: Tensor, group: Any = None) -> Tensor:
    """``x`` (whole on every rank) entering channel-sharded layers: identity forward,
    gradient summed over ``group``'s ranks backward. Identity in one process."""
    if group_rank_and_size(group)[1] == 1:
        return x
    return _CopyToShards.apply(x, group)


def sum_over_shards(x: Tensor, group: Any = None) -> Tensor:
    """Per-rank partial sums added over ``group``'s ranks (forward all-reduce), the
    gradient passed through unchanged backward. Identity in one process."""
    if group_rank_and_size(group)[1] == 1:
        return x
    return _SumOverShards.apply(x, group)


def _sliced(param: Tensor | None, index: tuple[Any, ...]) -> nn.Parameter | None:
    if param is None:
        return None
    return nn.Parameter(param.detach()[index].clone(), requires_grad=param.requires_grad)


class _ChannelSharded(StepModule, nn.Module):
    """What the sharded conv and linear layers share: the mode, the group, the input
    check and the column/row computation around ``_apply_op`` (the layer's op). The
    step mode is the replaced layer's (``functional.set_step_mode`` switches it); a
    torch layer's stand-in never folds time (``folds_time`` False)."""

    weight: nn.Parameter
    bias: nn.Parameter | None
    #: the channel dim of one step counted from the end (conv: 1 + spatial dims).
    channel_from_end: int

    def _init_shards(self, layer: nn.Module, mode: str, group: Any, name: str) -> None:
        if mode not in ("column", "row"):
            raise ConfigurationError(f"{name}: mode must be 'column' or 'row', got {mode!r}")
        self.mode, self.group, self.layer_name = mode, group, name
        self.rank, self.world_size = group_rank_and_size(group)
        self.folds_time = isinstance(layer, StepModule)
        if self.folds_time:
            self.step_mode = layer.step_mode
        out_total, in_total = layer.weight.shape[0], layer.weight.shape[1]
        if mode == "column":
            rows = shard_range(out_total, self.rank, self.world_size, f"{name} (output)")
            self.weight = _sliced(layer.weight, (rows,))  # type: ignore[assignment]
            self.bias = _sliced(layer.bias, (rows,))
            self.expected_in = in_total
        else:
            cols = shard_range(in_total, self.rank, self.world_size, f"{name} (input)")
            self.weight = _sliced(layer.weight, (slice(None), cols))  # type: ignore[assignment]
            self.bias = _sliced(layer.bias, (slice(None),))
            self.expected_in = cols.stop - cols.start

    def _apply_op(self, x: Tensor, bias: Tensor | None) -> Tensor:
        raise NotImplementedError

    def _check(self, x: Tensor) -> None:
        k = self.channel_from_end
        if x.dim() < k or x.shape[-k] != self.expected_in:
            where = "whole input" if self.mode == "column" else "this rank's input channels"
            raise ShapeError(
                f"{self.layer_name!r} ({self.mode}-sharded, rank {self.rank} of "
                f"{self.world_size}) expects {self.expected_in} channels ({where}) at dim "
                f"{-k}, got an input of shape {tuple(x.shape)}"
            )

    def _shard_forward(self, x: Tensor) -> Tensor:
        if self.mode == "column":
            return self._apply_op(copy_to_shards(x, self.group), self.bias)
        y = sum_over_shards(self._apply_op(x, None), self.group)
        if self.bias is not None:
            y = y + self.bias.view(-1, *([1] * (self.channel_from_end - 1)))
        return y

    def extra_repr(self) -> str:
        return (
            f"{self.layer_name!r}, mode={self.mode}, rank={self.rank}/{self.world_size}, "
            f"weight={tuple(self.weight.shape)}"
            + (f", step_mode={self.step_mode}" if self.folds_time else "")
        )


class ChannelShardedConv(_ChannelSharded):
    """This rank's shard of a ``Conv1d``/``Conv2d`` (torch's or spikeflow's sequence
    layer, ``groups=1``, zero padding): output channels (``mode="column"``) or input
    channels (``mode="row"``, bias added once after the sum over the ranks).

    Args:
        layer: the whole convolution (every rank holds the same weights).
        mode: ``"column"`` or ``"row"``.
        group: the process group the channels are split over (None: the default).
        name: the layer's name in the model, for error messages.

    Raises:
        ConfigurationError: a transposed, grouped or non-zero-padded convolution, or
            channels that do not split evenly over the ranks.
    """

    def __init__(
        self, layer: nn.Module, mode: ShardMode, group: Any = None, name: str = ""
    ) -> None:
        super().__init__()
        name = name or type(layer).__name__
        if not isinstance(layer, (nn.Conv1d, nn.Conv2d)):
            raise ConfigurationError(f"{name}: {type(layer).__name__} is not a Conv1d/Conv2d")
        if layer.groups != 1 or layer.padding_mode != "zeros":
            raise ConfigurationError(
                f"{name}: channel sharding takes convolutions with groups=1 and zero "
                f"padding, got groups={layer.groups}, padding_mode={layer.padding_mode!r}"
            )
        self.spatial = 2 if isinstance(layer, nn.Conv2d) else 1
        self.channel_from_end = self.spatial + 1
        self.stride, self.padding, self.dilation = layer.stride, layer.padding, layer.dilation
        self.in_channels, self.out_channels = layer.in_channels, layer.out_channels
        self._init_shards(layer, mode, group, name)

    def _apply_op(self, x: Tensor, bias: Tensor | None) -> Tensor:
        conv = F.conv2d if self.spatial == 2 else F.conv1d
        return conv(x, self.weight, bias, self.stride, self.padding, self.dilation)

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, C, ...]`` (a multi-step layer's sequence, time folded into the batch)
        or ``[B, C, ...]``."""
        step_dims = self.spatial + 2
        if self.folds_time and self.step_mode == "m":
            if x.dim() != step_dims + 1:
                raise ShapeError(
                    f"{self.layer_name!r} in multi-step mode expects [T, B, C, ...] "
                    f"({step_dims + 1} dims), got shape {tuple(x.shape)}"
                )
            self._check(x)
            y = self._shard_forward(x.flatten(0, 1))
            return y.unflatten(0, x.shape[:2])
        self._check(x)
        return self._shard_forward(x)


class ChannelShardedLinear(_ChannelSharded):
    """This rank's shard of a ``Linear`` (torch's or spikeflow's): output features
    (``mode="column"``) or input features (``mode="row"``, bias added once after the sum
    over the ranks). Arguments as :class:`ChannelShardedConv`'s."""

    channel_from_end = 1

    def __init__(
        self, layer: nn.Module, mode: ShardMode, group: Any = None, name: str = ""
    ) -> None:
        super().__init__()
        name = name or type(layer).__name__
        if not isinstance(layer, nn.Linear):
            raise ConfigurationError(f"{name}: {type(layer).__name__} is not a Linear")
        self.in_features, self.out_features = layer.in_features, layer.out_features
        self._init_shards(layer, mode, group, name)

    def _apply_op(self, x: Tensor, bias: Tensor | None) -> Tensor:
        return F.linear(x, self.weight, bias)

    def forward(self, x: Tensor) -> Tensor:
        """``[..., features]`` (any leading dims: time, batch)."""
        self._check(x)
        return self._shard_forward(x)
