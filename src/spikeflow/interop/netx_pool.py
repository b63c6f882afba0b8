"""The integer synapses of Lava-DL's pool, unpool, transposed-convolution, average and
complex blocks, as :func:`~spikeflow.interop.import_netx` builds them from a netx file.

Each follows the ``forward`` of Lava-DL's synapse (``slayer/synapse/layer.py``) or
block (``slayer/block/base.py``) it is read from, on integer spikes ``[T, B, C, H, W]``
(the sums in float64, exact below ``2^53``, then ``int64``):

* :class:`LoihiSumPool` — ``synapse.Pool``: one ``[kH, kW]`` kernel for every channel,
  applied to the channels **stacked along the height** (Lava-DL reshapes ``[N, C, H,
  W]`` to ``[N, 1, C·H, W]`` first): where ``H`` is not a multiple of ``kH`` it appends
  ``H mod kH`` zero rows (``W`` likewise), then convolves with the file's stride,
  padding and dilation and splits the rows back into ``C`` channels. With Lava-DL's
  default (stride = kernel, no padding) this is a per-channel sum pooling; other
  settings keep Lava-DL's stacking as it is.
* :class:`LoihiUnpool` — ``synapse.Unpool``: the transposed convolution of the same
  stacked layout with a ``[kH, kW]`` kernel.
* :class:`LoihiConvTranspose2d` — ``synapse.ConvTranspose``: ``conv_transpose`` with
  ``[in, out/groups, kH, kW]`` weights (PyTorch's layout, ``output_padding = 0``).
* :class:`LoihiAverage` — ``AbstractAverage``: the mean of each of ``num_outputs``
  equal groups of the flattened features (a float64 readout: the last layer).
* :class:`LoihiComplexSynapse` — a complex synapse (``weight/real``, ``weight/imag``,
  the resonator blocks'): the pair ``(real sums, imaginary sums)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.interop.netx_layers import (
    _init_convolution,
    _integer_convolution,
    _integer_input,
    _integer_weight,
    _pair,
)

__all__ = [
    "LoihiAverage",
    "LoihiComplexSynapse",
    "LoihiConvTranspose2d",
    "LoihiSumPool",
    "LoihiUnpool",
]


def _stacked_input(owner: str, x: Tensor) -> tuple[Tensor, int, int]:
    """``x`` ``[T, B, C, H, W]`` as Lava-DL's pool layout ``[T·B, 1, C·H, W]`` (float64)."""
    x = _integer_input(owner, x, 4, "[T, B, C, H, W]")
    T, B, C, H, W = x.shape
    return x.reshape(T * B, 1, C * H, W).to(torch.float64), T, B


def _unstack(owner: str, y: Tensor, T: int, B: int, channels: int) -> Tensor:
    """Lava-DL's ``result.reshape(N, C, -1, W')``: the stacked rows split into channels."""
    if y.shape[2] % channels:
        raise ShapeError(
            f"{owner}: {y.shape[2]} output rows do not split into {channels} channels "
            "(Lava-DL reshapes the stacked rows back per channel)"
        )
    return y.to(torch.int64).reshape(T, B, channels, y.shape[2] // channels, y.shape[3])


class _KernelOp(nn.Module):
    """An integer ``[kH, kW]`` kernel with stride, padding and dilation."""

    def __init__(
        self,
        weight: Tensor,
        stride: int | Sequence[int] | None = None,
        padding: int | Sequence[int] = 0,
        dilation: int | Sequence[int] = 1,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        if isinstance(weight, Tensor) and weight.dim() == 4 and weight.shape[:2] == (1, 1):
            weight = weight[0, 0]  # Lava-DL's [1, 1, kH, kW]
        self.register_buffer("weight", _integer_weight(owner, weight, 2))
        if self.weight.numel() == 0:
            raise ConfigurationError(
                f"{owner}: the kernel must be at least 1x1, got {list(self.weight.shape)}"
            )
        # Lava-DL's default stride is the kernel size
        kernel = tuple(int(n) for n in self.weight.shape)
        self.stride = _pair(owner, "stride", kernel if stride is None else stride, 1)
        self.padding = _pair(owner, "padding", padding, 0)
        self.dilation = _pair(owner, "dilation", dilation, 1)

    def extra_repr(self) -> str:
        return (
            f"kernel_size={tuple(self.weight.shape)}, stride={self.stride}, "
            f"padding={self.padding}, dilation={self.dilation}"
        )


class LoihiSumPool(_KernelOp):
    """Lava-DL's pool synapse in integers (see the module's docstring).

    Args:
        weight: the integer kernel ``[kH, kW]`` (or Lava-DL's ``[1, 1, kH, kW]``).
        stride, padding, dilation: ints or ``(H, W)`` pairs, as Lava-DL's ``Pool``
            (stride by default the kernel size, padding 0, dilation 1).

    Raises:
        ConfigurationError, ShapeError, DTypeError: a bad kernel or setting (and, at
            the call, an input that is not ``[T, B, C, H, W]`` integers).
    """

    def _padded(self, height: int, width: int) -> tuple[int, int]:
        # Lava-DL appends H mod kH zero rows (W mod kW columns) where it is not 0
        kh, kw = self.weight.shape
        return height + height % kh, width + width % kw

    def output_shape(self, shape: Sequence[int]) -> tuple[int, int, int]:
        """The ``(C, H, W)`` output of one step for a ``(C, H, W)`` input."""
        channels, height, width = (int(n) for n in shape)
        height, width = self._padded(height, width)
        rows = self._length(channels * height, 0)
        if rows % channels:
            raise ShapeError(
                f"LoihiSumPool: {rows} output rows for {channels} channels of height "
                f"{height} do not split into channels"
            )
        return channels, rows // channels, self._length(width, 1)

    def _length(self, size: int, i: int) -> int:
        span = self.dilation[i] * (self.weight.shape[i] - 1) + 1
        return (size + 2 * self.padding[i] - span) // self.stride[i] + 1

    def forward(self, x: Tensor) -> Tensor:
        """The integer sums ``[T, B, C, H', W']``."""
        owner = type(self).__name__
        x = _integer_input(owner, x, 4, "[T, B, C, H, W]")
        height, width = self._padded(x.shape[3], x.shape[4])
        x = F.pad(x, (0, width - x.shape[4], 0, height - x.shape[3]))
        stacked, T, B = _stacked_input(owner, x)
        y = F.conv2d(
            stacked,
            self.weight.to(torch.float64)[None, None],
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
        )
        return _unstack(owner, y, T, B, x.shape[2])


class LoihiUnpool(_KernelOp):
    """Lava-DL's unpool synapse in integers: the stacked ``[C·H, W]`` layout's
    transposed convolution with a ``[kH, kW]`` kernel (see the module's docstring).

    Args:
        weight: the integer kernel ``[kH, kW]`` (or Lava-DL's ``[1, 1, kH, kW]``).
        stride, padding, dilation: ints or ``(H, W)`` pairs, as Lava-DL's ``Unpool``
            (stride by default the kernel size, padding 0, dilation 1).
    """

    def _length(self, size: int, i: int) -> int:
        span = self.dilation[i] * (self.weight.shape[i] - 1) + 1
        return (size - 1) * self.stride[i] - 2 * self.padding[i] + span

    def output_shape(self, shape: Sequence[int]) -> tuple[int, int, int]:
        """The ``(C, H, W)`` output of one step for a ``(C, H, W)`` input."""
        channels, height, width = (int(n) for n in shape)
        rows = self._length(channels * height, 0)
        if rows % channels:
            raise ShapeError(
                f"LoihiUnpool: {rows} output rows for {channels} channels of height "
                f"{height} do not split into channels"
            )
        return channels, rows // channels, self._length(width, 1)

    def forward(self, x: Tensor) -> Tensor:
        """The integer sums ``[T, B, C, H', W']``."""
        owner = type(self).__name__
        stacked, T, B = _stacked_input(owner, x)
        y = F.conv_transpose2d(
            stacked,
            self.weight.to(torch.float64)[None, None],
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
        )
        return _unstack(owner, y, T, B, x.shape[2])


class LoihiConvTranspose2d(nn.Module):
    """An integer transposed convolution (``F.conv_transpose2d``, ``[in, out/groups,
    kH, kW]`` weights, no output padding) over ``[T, B, C, H, W]``: Lava-DL's
    ``synapse.ConvTranspose``.

    Args:
        weight: the integer kernel ``[in, out/groups, kH, kW]``.
        stride, padding, dilation: ints or ``(H, W)`` pairs.
        groups: the number of groups.

    Raises:
        ConfigurationError: a stride, padding, dilation or groups that is not valid.
        ShapeError, DTypeError: a weight that is not a 4-dim integer tensor.
    """

    def __init__(
        self,
        weight: Tensor,
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] = 0,
        dilation: int | Sequence[int] = 1,
        groups: int = 1,
    ) -> None:
        super().__init__()
        _init_convolution(self, weight, stride, padding, dilation, groups, "input")

    def output_shape(self, shape: Sequence[int]) -> tuple[int, int, int]:
        """The ``(C, H, W)`` output of one step for a ``(C, H, W)`` input."""
        size = []
        for i in range(2):
            span = self.dilation[i] * (self.weight.shape[2 + i] - 1) + 1
            size.append((int(shape[1 + i]) - 1) * self.stride[i] - 2 * self.padding[i] + span)
        return int(self.weight.shape[1]) * self.groups, size[0], size[1]

    def forward(self, x: Tensor) -> Tensor:
        """The integer sums ``[T, B, out, H', W']``."""
        return _integer_convolution(self, F.conv_transpose2d, x, int(self.weight.shape[0]))

    def extra_repr(self) -> str:
        i, per_group, kh, kw = self.weight.shape
        return (
            f"{i}, {per_group * self.groups}, kernel_size=({kh}, {kw}), "
            f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, "
            f"groups={self.groups}"
        )


class LoihiAverage(nn.Module):
    """Lava-DL's average block: the features of each sample (flattened) split into
    ``num_outputs`` equal groups, each group's mean per step, ``[T, B, num_outputs]``
    in float64 (a readout: no integer layer can follow it).

    Args:
        num_outputs: the number of groups (>= 1).
    """

    def __init__(self, num_outputs: int) -> None:
        super().__init__()
        if isinstance(num_outputs, bool) or not isinstance(num_outputs, int) or num_outputs < 1:
            raise ConfigurationError(
                f"LoihiAverage: num_outputs must be an integer >= 1, got {num_outputs!r}"
            )
        self.num_outputs = num_outputs

    def output_shape(self, shape: Sequence[int]) -> tuple[int]:
        """``(num_outputs,)``, checking that ``shape`` splits into that many groups."""
        size = 1
        for n in shape:
            size *= int(n)
        if size % self.num_outputs:
            raise ShapeError(
                f"LoihiAverage: {size} features ({tuple(shape)}) do not split into "
                f"{self.num_outputs} equal groups"
            )
        return (self.num_outputs,)

    def forward(self, x: Tensor) -> Tensor:
        """The group means ``[T, B, num_outputs]`` (float64)."""
        if not isinstance(x, Tensor) or x.dim() < 3:
            raise ShapeError(f"LoihiAverage expects [T, B, ...], got {getattr(x, 'shape', x)!r}")
        self.output_shape(x.shape[2:])
        T, B = x.shape[:2]
        # the group size spelled out: with T or B = 0 a -1 could not be inferred
        group = math.prod(x.shape[2:]) // self.num_outputs
        grouped = x.to(torch.float64).reshape(T, B, self.num_outputs, group)
        return grouped.mean(dim=3)

    def extra_repr(self) -> str:
        return f"num_outputs={self.num_outputs}"


class LoihiComplexSynapse(nn.Module):
    """A complex synapse: two integer synapses of the same kind (``weight/real`` and
    ``weight/imag``) on the same spikes, giving ``(real sums, imaginary sums)`` for a
    resonator population.

    Args:
        real, imag: the synapses (e.g. two ``LoihiDense`` or ``LoihiConv2d``).

    Raises:
        ConfigurationError: synapses of two kinds.
        ShapeError: weights of two shapes, or two settings (stride, padding, ...).
    """

    def __init__(self, real: nn.Module, imag: nn.Module) -> None:
        super().__init__()
        if type(real) is not type(imag):
            raise ConfigurationError(
                f"LoihiComplexSynapse: the real ({type(real).__name__}) and imaginary "
                f"({type(imag).__name__}) synapses must be of one kind"
            )
        layouts = [
            (tuple(getattr(s, "weight", torch.empty(0)).shape), s.extra_repr())
            for s in (real, imag)
        ]
        if layouts[0] != layouts[1]:
            raise ShapeError(
                f"LoihiComplexSynapse: the real synapse ({layouts[0][1]}, weight "
                f"{list(layouts[0][0])}) and the imaginary one ({layouts[1][1]}, weight "
                f"{list(layouts[1][0])}) must have one shape and setting"
            )
        self.real, self.imag = real, imag

    def output_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        """The real synapse's output shape."""
        from spikeflow.interop.netx_layers import _layer_output_shape

        return _layer_output_shape(self.real, tuple(shape))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(real, imag)`` integer sums."""
        return self.real(x), self.imag(x)
