"""Max pooling for converted SNNs, gated by spike counts (Rueckauer et al. 2017).

Average pooling is linear and converts exactly: the mean over time of the pooled spikes
is the pool of the rates. Max pooling is not: the maximum of spike trains, step by step,
fires whenever any input fires and overestimates the maximum rate. :class:`GatedMaxPool`
instead lets through, at each step and for each window, the input whose accumulated
count (sum of its inputs up to and including this step) is largest so far, so the
output converges to the input of the highest rate; ties go to the first position (as
``max_pool`` returns them). It is still an approximation while the winner changes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikeflow.base import MemoryModule, StepMode, check_time_major
from spikeflow.errors import ConfigurationError

__all__ = ["GatedMaxPool", "pool_dims"]

_POOLS = {
    nn.MaxPool1d: (1, F.max_pool1d),
    nn.MaxPool2d: (2, F.max_pool2d),
    nn.MaxPool3d: (3, F.max_pool3d),
}
#: The max pool of each number of spatial dims. Looked up at each call, not kept on the
#: module: ``F.max_poolNd`` is a local function of torch's ``boolean_dispatch``, which
#: pickle cannot store (``torch.save`` of a whole converted network failed).
MAX_POOLS = {dims: pool for dims, pool in _POOLS.values()}


def pool_dims(pool: nn.Module) -> int:
    """The spatial dims (1, 2 or 3) of an ``nn.MaxPool{1,2,3}d`` or a subclass of one
    (one that only adds attributes converts as its parent)."""
    for kind, (dims, _) in _POOLS.items():
        if isinstance(pool, kind):
            return dims
    raise ConfigurationError(f"expected nn.MaxPool1d/2d/3d, got {type(pool).__name__}")


class GatedMaxPool(MemoryModule):
    """Spike-count-gated max pooling over ``[T, B, C, *spatial]`` (1 to 3 spatial dims).

    Args:
        kernel_size, stride, padding, dilation, ceil_mode: as the torch max pool.
        spatial_dims: 1, 2 or 3.
        step_mode: ``'m'`` (default) or ``'s'`` (one step, streaming).
    """

    def __init__(
        self,
        kernel_size: int | tuple[int, ...],
        stride: int | tuple[int, ...] | None = None,
        padding: int | tuple[int, ...] = 0,
        dilation: int | tuple[int, ...] = 1,
        ceil_mode: bool = False,
        spatial_dims: int = 2,
        step_mode: StepMode = "m",
    ) -> None:
        super().__init__(step_mode)
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None or stride == [] else stride
        self.padding = padding
        self.dilation = dilation
        self.ceil_mode = bool(ceil_mode)
        if spatial_dims not in MAX_POOLS:
            raise ConfigurationError(f"spatial_dims must be 1, 2 or 3, got {spatial_dims}")
        self.spatial_dims = spatial_dims

    @classmethod
    def from_max_pool(cls, pool: nn.Module) -> GatedMaxPool:
        """The gated version of a ``torch.nn.MaxPool{1,2,3}d``."""
        dims = pool_dims(pool)
        return cls(
            pool.kernel_size,
            pool.stride,
            pool.padding,
            pool.dilation,  # type: ignore[arg-type]
            pool.ceil_mode,
            dims,
        )  # type: ignore[arg-type]

    def forward(self, x: Tensor) -> Tensor:
        """Pooled ``[T, B, C, *spatial']`` (or one step ``[B, C, *spatial']``)."""
        if self.step_mode == "m":
            check_time_major(x, "GatedMaxPool", self.spatial_dims + 3)
            x_seq = x
        else:
            x_seq = x.unsqueeze(0)
        steps, batch = x_seq.shape[0], x_seq.shape[1]
        state = self._carried_state(x_seq.shape[1:])
        # An explicit left-to-right sum (torch.cumsum may reassociate): the counts, and so
        # the winners of exact ties, are the same whether a sequence comes whole or chunked.
        running = torch.zeros_like(x_seq[0]) if state is None else state["count"]
        sums = []
        for x_t in x_seq.unbind(0):
            running = running + x_t
            sums.append(running)
        counts = torch.stack(sums)
        self._keep_state({"count": counts[-1]})
        _, index = MAX_POOLS[self.spatial_dims](
            counts.flatten(0, 1),
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            self.ceil_mode,
            True,
        )
        values = x_seq.flatten(0, 1).flatten(2).gather(2, index.flatten(2)).view_as(index)
        out = values.unflatten(0, (steps, batch))
        return out if self.step_mode == "m" else out[0]

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"dilation={self.dilation}, ceil_mode={self.ceil_mode}, "
            f"spatial_dims={self.spatial_dims}"
        )
