"""Sequence versions of the stateless torch layers.

Each class here is the torch layer of the same name plus a ``step_mode``:

* ``step_mode='m'`` (default): the input is ``[T, B, ...]``; time is folded into the
  batch, the torch layer runs once on ``[T*B, ...]`` and the output is unfolded to
  ``[T, B, ...]``.
* ``step_mode='s'``: the input is one step ``[B, ...]`` and goes to the torch layer as is.

The constructors take the torch layer's arguments plus the keyword ``step_mode``, and
the parameters (and ``state_dict`` keys) are the torch layer's, so weights load either
way. The folding is written once, in :class:`SequenceLayerMixin`; each layer only
states what one step looks like, which is what catches a forgotten time dimension::

    >>> conv = Conv2d(3, 8, 3)
    >>> conv(torch.rand(8, 3, 32, 32))
    ShapeError: Conv2d in multi-step mode expects [T, B, C, H, W] (5 dims); got shape
    (8, 3, 32, 32) — missing the time dimension? (use step_mode='s' for one step)

Batch norm in training mode normalises over the folded batch, i.e. with statistics
over ``T*B`` (and the spatial dims) per channel; every other layer here gives exactly
what it gives when applied to each step separately.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from spikeflow.base import StepMode, StepModule
from spikeflow.errors import DTypeError, ShapeError
from spikeflow.layers._time import STEP_1D, STEP_2D, STEP_3D, check_step_dims, fold_time

__all__ = [
    "AdaptiveAvgPool1d",
    "AdaptiveAvgPool2d",
    "AdaptiveAvgPool3d",
    "AvgPool1d",
    "AvgPool2d",
    "AvgPool3d",
    "Conv1d",
    "Conv2d",
    "Conv3d",
    "ConvTranspose1d",
    "ConvTranspose2d",
    "ConvTranspose3d",
    "Flatten",
    "Linear",
    "MaxPool1d",
    "MaxPool2d",
    "MaxPool3d",
    "MaxUnpool1d",
    "MaxUnpool2d",
    "MaxUnpool3d",
    "SequenceLayerMixin",
    "Upsample",
]


class SequenceLayerMixin(StepModule):
    """Give a stateless torch layer a ``step_mode`` by folding time into the batch.

    Put it first in the bases of a subclass of the torch layer and say what one step
    looks like::

        class Conv2d(SequenceLayerMixin, nn.Conv2d):
            step_layout = "[B, C, H, W]"
            step_ndim = (4, 4)

    The constructor takes the torch layer's arguments plus the keyword ``step_mode``.
    ``forward`` checks the number of dims (a :class:`~spikeflow.errors.ShapeError`
    names the expected layout) and, in multi-step mode, runs the torch layer once on
    the folded ``[T*B, ...]`` input. Layers whose step layout depends on their
    arguments override :meth:`_step_dims`; layers for which folding is not the right
    way to apply them per step override :meth:`_multi_step`.
    """

    #: One step's layout, used in error messages (``[B`` becomes ``[T, B`` in 'm' mode).
    step_layout: ClassVar[str] = "[B, ...]"
    #: ``(min, max)`` dims of one step; ``max`` None means no upper bound.
    step_ndim: ClassVar[tuple[int, int | None]] = (1, None)

    def __init__(self, *args: Any, step_mode: StepMode = "m", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.step_mode = step_mode

    def _step_dims(self) -> tuple[str, tuple[int, int | None]]:
        """``(layout, (min, max))`` of one step for this instance."""
        return self.step_layout, self.step_ndim

    def _multi_step(
        self, layer_forward: Callable[..., Any], x: Tensor, *args: Any, **kwargs: Any
    ) -> Any:
        """Apply the per-step ``layer_forward`` to the sequence ``x`` (``[T, B, ...]``)."""
        return fold_time(lambda y: layer_forward(y, *args, **kwargs), x)

    def forward(self, x: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        """The torch layer on ``x``: ``[T, B, ...]`` in multi-step mode, ``[B, ...]`` in single."""
        layout, dims = self._step_dims()
        check_step_dims(x, type(self).__name__, layout, dims, self.step_mode)
        layer_forward = super().forward  # type: ignore[misc]
        if torch.compiler.is_compiling():  # traced once (dtypes are guards), no cost per call
            problem = self._dtype_problem(x, torch_refused=False)
            if problem is not None:
                raise DTypeError(problem)
        try:
            if self.step_mode == "s":
                return layer_forward(x, *args, **kwargs)
            return self._multi_step(layer_forward, x, *args, **kwargs)
        except RuntimeError as error:  # looked at only when torch refuses: no cost per call
            problem = self._dtype_problem(x, torch_refused=True)
            if problem is None:
                raise
            raise DTypeError(problem) from error

    def _dtype_problem(self, x: Tensor, torch_refused: bool) -> str | None:
        """What to say when torch refused ``x`` for a dtype other than the weight's (its
        own words: ``"mat1 and mat2 must have the same dtype"``, for a norm ``"mixed
        dtype"``), None for other errors. Before torch has run (compiling), Linear and
        convolutions only: the norms take a bfloat16 input with float32 weights, and
        under autocast torch casts by itself."""
        if not torch_refused and not isinstance(self, (nn.Linear, nn.modules.conv._ConvNd)):
            return None
        weight = getattr(self, "weight", None)
        if not isinstance(weight, Tensor) or not weight.is_floating_point():
            return None
        if x.dtype == weight.dtype or torch.is_autocast_enabled(x.device.type):
            return None
        name = type(self).__name__
        if not (x.is_floating_point() or x.is_complex()):
            return (
                f"{name} expects a floating-point input like its weight ({weight.dtype}); "
                f"got dtype {x.dtype}: convert spikes or counts with x.float()"
            )
        return (
            f"{name}'s weight is {weight.dtype} but its input is {x.dtype}: convert the "
            f"input (x.to({weight.dtype})) or the network (net.to({x.dtype})) so they match"
        )

    def extra_repr(self) -> str:
        base = super().extra_repr()  # type: ignore[misc]
        mode = f"step_mode={self.step_mode}"
        return f"{base}, {mode}" if base else mode


# -- convolution and linear ---------------------------------------------------------------


class Conv1d(SequenceLayerMixin, nn.Conv1d):
    """:class:`torch.nn.Conv1d` over a sequence; one step is ``[B, C, L]``."""

    step_layout, step_ndim = STEP_1D


class Conv2d(SequenceLayerMixin, nn.Conv2d):
    """:class:`torch.nn.Conv2d` over a sequence; one step is ``[B, C, H, W]``."""

    step_layout, step_ndim = STEP_2D


class Conv3d(SequenceLayerMixin, nn.Conv3d):
    """:class:`torch.nn.Conv3d` over a sequence; one step is ``[B, C, D, H, W]``."""

    step_layout, step_ndim = STEP_3D


class ConvTranspose1d(SequenceLayerMixin, nn.ConvTranspose1d):
    """:class:`torch.nn.ConvTranspose1d` over a sequence; one step is ``[B, C, L]``.

    ``forward(x, output_size)`` takes ``output_size`` as the length ``(L,)``.
    """

    step_layout, step_ndim = STEP_1D


class ConvTranspose2d(SequenceLayerMixin, nn.ConvTranspose2d):
    """:class:`torch.nn.ConvTranspose2d` over a sequence; one step is ``[B, C, H, W]``.

    ``forward(x, output_size)`` takes ``output_size`` as the spatial size ``(H, W)``.
    """

    step_layout, step_ndim = STEP_2D


class ConvTranspose3d(SequenceLayerMixin, nn.ConvTranspose3d):
    """:class:`torch.nn.ConvTranspose3d` over a sequence; one step is ``[B, C, D, H, W]``.

    ``forward(x, output_size)`` takes ``output_size`` as the spatial size ``(D, H, W)``.
    """

    step_layout, step_ndim = STEP_3D


class Linear(SequenceLayerMixin, nn.Linear):
    """:class:`torch.nn.Linear` over a sequence; one step is ``[B, ..., in_features]``."""

    step_ndim = (2, None)

    def _step_dims(self) -> tuple[str, tuple[int, int | None]]:
        middle = "" if self.step_ndim[1] == 2 else "..., "  # (2, 2): a batch norm folded in
        return f"[B, {middle}{self.in_features}]", self.step_ndim


# -- pooling -----------------------------------------------------------------------------


class MaxPool1d(SequenceLayerMixin, nn.MaxPool1d):
    """:class:`torch.nn.MaxPool1d` over a sequence; one step is ``[B, C, L]``.

    With ``return_indices=True`` the output is ``(values, indices)``, both ``[T, B, ...]``.
    """

    step_layout, step_ndim = STEP_1D


class MaxPool2d(SequenceLayerMixin, nn.MaxPool2d):
    """:class:`torch.nn.MaxPool2d` over a sequence; one step is ``[B, C, H, W]``.

    With ``return_indices=True`` the output is ``(values, indices)``, both ``[T, B, ...]``.
    """

    step_layout, step_ndim = STEP_2D


class MaxPool3d(SequenceLayerMixin, nn.MaxPool3d):
    """:class:`torch.nn.MaxPool3d` over a sequence; one step is ``[B, C, D, H, W]``.

    With ``return_indices=True`` the output is ``(values, indices)``, both ``[T, B, ...]``.
    """

    step_layout, step_ndim = STEP_3D


class _MaxUnpoolMixin(SequenceLayerMixin):
    """The inverse of a max pool with ``return_indices=True``: ``forward(x, indices,
    output_size=None)``, ``x`` and ``indices`` (the pool's two outputs) of one shape;
    in multi-step mode both are folded. ``output_size`` is the spatial size to unpool
    to (``(H, W)`` for 2-D), or a one-step or whole-sequence shape ending in it (the
    pool's input ``x.shape``), for the sizes a strided pool rounded away."""

    def forward(  # type: ignore[override]
        self, x: Tensor, indices: Tensor, output_size: Sequence[int] | None = None
    ) -> Tensor:
        """Unpool ``x`` to the positions ``indices`` name (zeros elsewhere)."""
        name = type(self).__name__
        if not isinstance(indices, Tensor) or indices.dtype != torch.int64:
            what = indices.dtype if isinstance(indices, Tensor) else type(indices).__name__
            raise DTypeError(
                f"{name}: indices must be the int64 tensor a MaxPool with "
                f"return_indices=True returns, got {what}"
            )
        if isinstance(x, Tensor) and indices.shape != x.shape:
            raise ShapeError(
                f"{name}: indices must have the shape of x {tuple(x.shape)} (both outputs "
                f"of one max pool), got {tuple(indices.shape)}"
            )
        spatial = self.step_ndim[0] - 2
        if output_size is not None:
            size = tuple(output_size)
            if len(size) not in (spatial, spatial + 2, spatial + 3):
                raise ShapeError(
                    f"{name}: output_size must be the {spatial} spatial sizes, or a step's "
                    f"or the sequence's shape ending in them, got {size}"
                )
            output_size = size[-spatial:]
        return super().forward(x, indices, output_size)

    def _multi_step(
        self, layer_forward: Callable[..., Any], x: Tensor, *args: Any, **kwargs: Any
    ) -> Any:
        indices, output_size = args
        values = x.flatten(0, 1)
        out = layer_forward(values, indices.flatten(0, 1), output_size)
        return out.unflatten(0, x.shape[:2])


class MaxUnpool1d(_MaxUnpoolMixin, nn.MaxUnpool1d):
    """:class:`torch.nn.MaxUnpool1d` over a sequence; one step is ``[B, C, L]``.

    ``forward(x, indices, output_size=None)`` with ``(x, indices)`` from a
    :class:`MaxPool1d` with ``return_indices=True``; ``output_size`` ``(L,)``.
    """

    step_layout, step_ndim = STEP_1D


class MaxUnpool2d(_MaxUnpoolMixin, nn.MaxUnpool2d):
    """:class:`torch.nn.MaxUnpool2d` over a sequence; one step is ``[B, C, H, W]``.

    ``forward(x, indices, output_size=None)`` with ``(x, indices)`` from a
    :class:`MaxPool2d` with ``return_indices=True``; ``output_size`` ``(H, W)``.
    """

    step_layout, step_ndim = STEP_2D


class MaxUnpool3d(_MaxUnpoolMixin, nn.MaxUnpool3d):
    """:class:`torch.nn.MaxUnpool3d` over a sequence; one step is ``[B, C, D, H, W]``.

    ``forward(x, indices, output_size=None)`` with ``(x, indices)`` from a
    :class:`MaxPool3d` with ``return_indices=True``; ``output_size`` ``(D, H, W)``.
    """

    step_layout, step_ndim = STEP_3D


class AvgPool1d(SequenceLayerMixin, nn.AvgPool1d):
    """:class:`torch.nn.AvgPool1d` over a sequence; one step is ``[B, C, L]``."""

    step_layout, step_ndim = STEP_1D


class AvgPool2d(SequenceLayerMixin, nn.AvgPool2d):
    """:class:`torch.nn.AvgPool2d` over a sequence; one step is ``[B, C, H, W]``."""

    step_layout, step_ndim = STEP_2D


class AvgPool3d(SequenceLayerMixin, nn.AvgPool3d):
    """:class:`torch.nn.AvgPool3d` over a sequence; one step is ``[B, C, D, H, W]``."""

    step_layout, step_ndim = STEP_3D


class AdaptiveAvgPool1d(SequenceLayerMixin, nn.AdaptiveAvgPool1d):
    """:class:`torch.nn.AdaptiveAvgPool1d` over a sequence; one step is ``[B, C, L]``."""

    step_layout, step_ndim = STEP_1D


class AdaptiveAvgPool2d(SequenceLayerMixin, nn.AdaptiveAvgPool2d):
    """:class:`torch.nn.AdaptiveAvgPool2d` over a sequence; one step is ``[B, C, H, W]``."""

    step_layout, step_ndim = STEP_2D


class AdaptiveAvgPool3d(SequenceLayerMixin, nn.AdaptiveAvgPool3d):
    """:class:`torch.nn.AdaptiveAvgPool3d` over a sequence; one step is ``[B, C, D, H, W]``."""

    step_layout, step_ndim = STEP_3D


# -- reshaping and resampling -------------------------------------------------------------


def _after_time(dim: int) -> int:
    """A dim of one step ``[B, ...]`` as a dim of the sequence ``[T, B, ...]``."""
    return dim + 1 if dim >= 0 else dim


class Flatten(SequenceLayerMixin, nn.Flatten):
    """:class:`torch.nn.Flatten` applied to each step: ``[T, B, C, H, W]`` → ``[T, B, C*H*W]``.

    ``start_dim`` and ``end_dim`` count the dims of one step, as in ``nn.Flatten``: the
    default ``start_dim=1`` is the dim after the batch. In multi-step mode the sequence
    is flattened from ``start_dim + 1`` (so ``start_dim=0`` flattens batch and features
    of each step, ``[T, B*C*H*W]``, as applying ``nn.Flatten(0)`` to each step does).
    """

    def _step_dims(self) -> tuple[str, tuple[int, int | None]]:
        need = max(d + 1 if d >= 0 else -d for d in (self.start_dim, self.end_dim))
        return "[B, ...]", (max(need, 1), None)

    def _multi_step(
        self, layer_forward: Callable[..., Any], x: Tensor, *args: Any, **kwargs: Any
    ) -> Any:
        return x.flatten(_after_time(self.start_dim), _after_time(self.end_dim))


_UPSAMPLE_MODE_DIMS = {"linear": 1, "bilinear": 2, "bicubic": 2, "trilinear": 3}
_SPATIAL_STEP = {1: STEP_1D, 2: STEP_2D, 3: STEP_3D}


class Upsample(SequenceLayerMixin, nn.Upsample):
    """:class:`torch.nn.Upsample` over a sequence; one step is ``[B, C, *spatial]``.

    The number of spatial dims (1 to 3) follows from ``mode`` (``'bilinear'``: 2, ...)
    or from a tuple ``size`` / ``scale_factor``; with ``mode='nearest'`` and a scalar
    size or scale factor any of 1 to 3 spatial dims is accepted.
    """

    def _step_dims(self) -> tuple[str, tuple[int, int | None]]:
        k = _UPSAMPLE_MODE_DIMS.get(self.mode)
        if k is None:
            for v in (self.size, self.scale_factor):
                if isinstance(v, (tuple, list)):
                    k = len(v)
        if k is None or k not in _SPATIAL_STEP:
            return "[B, C, *spatial]", (3, 5)
        return _SPATIAL_STEP[k]
