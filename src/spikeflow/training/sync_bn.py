"""Synchronised batch norm (``--sync-bn``): under ``torchrun``, every batch norm of the
model normalises with the statistics of the global batch (all processes' samples), and
its running statistics follow them, as one process on the whole batch would.

torch's ``nn.SyncBatchNorm.convert_sync_batchnorm`` replaces each batch norm by a plain
``SyncBatchNorm``, which drops what a subclass does around the normalisation
(spikeflow's sequence ``BatchNorm2d`` folds ``[T, B, C, H, W]`` into ``[T*B, ...]``,
tdBN scales by the threshold, ``FeatureBatchNorm`` normalises the last dim), and it
refuses CPU tensors (no gloo). Here each batch norm keeps its class, with the
statistics step swapped: its class becomes a subclass of its own class whose torch
batch-norm call is :class:`SyncedStatistics`'s (in the method order right after torch's
``BatchNorm1d/2d/3d``), so the layer's own ``forward`` still runs around it. Parameter
and buffer names are unchanged (checkpoints load into the plain model).

The statistics are reduced with differentiable all-reduces (two passes: the mean, then
the squared deviations), so the gradients flow through the global mean and variance as
one process's batch norm on the concatenated batch does. BNTT and TEBN hold plain torch
batch norms, which are synchronised; MPBN neurons' ``vbn`` too. Layers that compute batch
statistics by themselves (Lava-DL's ``MeanOnlyBatchNorm``/``WgtScaleBatchNorm``) are
refused by name.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from spikeflow.errors import ConfigurationError

__all__ = ["SyncedStatistics", "convert_sync_batchnorm", "synced_batch_norm"]


class _AllReduceSum(torch.autograd.Function):
    """Sum over the processes; the gradient of each process's input is the sum of the
    processes' output gradients (every process's loss depends on the sum)."""

    @staticmethod
    def forward(ctx: Any, t: Tensor) -> Tensor:
        out = t.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        out = grad.contiguous().clone()
        dist.all_reduce(out)
        return out


def _all_reduce(t: Tensor) -> Tensor:
    """Sum of ``t`` over the processes, differentiable."""
    return _AllReduceSum.apply(t)


def synced_batch_norm(
    x: Tensor,
    weight: Tensor | None,
    bias: Tensor | None,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    momentum: float,
    eps: float,
) -> Tensor:
    """Batch norm of ``x`` (``[N, C, ...]``) in training mode with the statistics of every
    process's ``x``; the running statistics (when given) move by ``momentum`` towards
    the global mean and the global unbiased variance. A float16/bfloat16 ``x`` is
    reduced in float32 and its output has ``x``'s dtype (as torch's batch norm's)."""
    dims = [d for d in range(x.dim()) if d != 1]
    shape = [1, -1] + [1] * (x.dim() - 2)
    xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    count = xf.new_tensor(float(xf.numel() // xf.shape[1]))
    total = _all_reduce(torch.cat([xf.sum(dims), count.reshape(1)]))
    n = total[-1]
    mean = total[:-1] / n
    centred = xf - mean.reshape(shape)
    var = _all_reduce((centred * centred).sum(dims)) / n
    if running_mean is not None and running_var is not None:
        with torch.no_grad():
            unbiased = var * (n / (n - 1)) if float(n) > 1 else var
            running_mean.lerp_(mean.detach().to(running_mean.dtype), momentum)
            running_var.lerp_(unbiased.detach().to(running_var.dtype), momentum)
    y = centred * torch.rsqrt(var + eps).reshape(shape)
    if weight is not None:
        y = y * weight.reshape(shape)
    if bias is not None:
        y = y + bias.reshape(shape)
    return y.to(x.dtype)  # (half inputs: computed in float32, returned as given, as torch's)


class SyncedStatistics(_BatchNorm):
    """The statistics step of a synchronised batch norm (never built alone: a batch norm
    class ``C`` becomes ``Synced<C>(C, SyncedStatistics)``, see
    :func:`convert_sync_batchnorm`). In training with more than one process it
    normalises over the global batch; otherwise it is torch's batch norm."""

    def forward(self, input: Tensor) -> Tensor:
        """Normalise ``input`` (``[N, C, ...]``, after the subclass's own reshaping)."""
        synced = (
            self.training
            and dist.is_available()
            and dist.is_initialized()
            and dist.get_world_size() > 1
        )
        if not synced:
            return super().forward(input)
        self._check_input_dim(input)
        tracking = self.track_running_stats and self.running_mean is not None
        factor = 0.0 if self.momentum is None else float(self.momentum)
        if tracking and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative average, as torch's
                factor = 1.0 / float(self.num_batches_tracked)
        return synced_batch_norm(
            input, self.weight, self.bias,
            self.running_mean if tracking else None, self.running_var if tracking else None,
            factor, self.eps,
        )  # fmt: skip


_SYNCED: dict[type, type] = {}


def _synced_class(cls: type) -> type:
    if cls not in _SYNCED:
        _SYNCED[cls] = type(f"Synced{cls.__name__}", (cls, SyncedStatistics), {
            "__module__": cls.__module__, "__doc__": cls.__doc__,
        })  # fmt: skip
    return _SYNCED[cls]


#: Layers that compute batch statistics themselves, which are not synchronised.
_NOT_SYNCABLE = ("MeanOnlyBatchNorm", "WgtScaleBatchNorm")


def convert_sync_batchnorm(model: nn.Module) -> list[str]:
    """Make every batch norm of ``model`` (each ``nn.BatchNorm1d/2d/3d``, subclasses
    included) synchronise its statistics over the processes, in place; returns their
    names. Under one process (or no process group) they compute as before.

    Raises:
        ConfigurationError: a layer computes batch statistics that cannot be synchronised
            (named), or a batch norm is not one of torch's ``BatchNorm1d/2d/3d`` (named).
    """
    refused = [
        f"{name} ({type(m).__name__})"
        for name, m in model.named_modules()
        if any(c.__name__ in _NOT_SYNCABLE for c in type(m).__mro__)
    ]
    plain = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
    refused += [
        f"{name} ({type(m).__name__}: not a torch BatchNorm1d/2d/3d)"
        for name, m in model.named_modules()
        if isinstance(m, _BatchNorm)
        and not isinstance(m, (*plain, SyncedStatistics, nn.SyncBatchNorm))
    ]
    if refused:
        raise ConfigurationError(
            "--sync-bn cannot synchronise the batch statistics of "
            + ", ".join(refused[:6])
            + (f" and {len(refused) - 6} more" if len(refused) > 6 else "")
            + ": train without --sync-bn"
        )
    converted = []
    for name, module in model.named_modules():
        if isinstance(module, plain) and not isinstance(module, SyncedStatistics):
            module.__class__ = _synced_class(type(module))
            converted.append(name)
    return converted
