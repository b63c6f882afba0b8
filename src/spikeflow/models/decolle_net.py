"""The DECOLLE network of the zoo (``decolle``): convolutional then dense DECOLLE layers,
each with a fixed random readout; ``spikeflow train --decolle`` trains it by DECOLLE's
local rule (:mod:`spikeflow.training.decolle`), without it BPTT trains it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from spikeflow._checks import check_flag, check_int
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.learn.decolle import (
    DECOLLELayer,
    DECOLLENetwork,
)
from spikeflow.models.registry import register_model

__all__ = ["DECOLLEClassifier", "decolle"]


def _pair(name: str, value: Any) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        return value, value
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return int(value[0]), int(value[1])
    raise ConfigurationError(f"decolle: {name} must be an integer or (H, W), got {value!r}")


class DECOLLEClassifier(DECOLLENetwork):
    """A DECOLLE network for ``spikeflow train``: ``len(channels)`` convolutional layers
    (``kernel_size`` square kernels, "same" padding, max pooling ``pool`` on the
    membrane), then ``len(hidden)`` dense layers, every layer with its fixed random
    readout to the ``num_classes`` targets (:class:`~spikeflow.learn.DECOLLENetwork`).
    The defaults are ``examples/decolle_nmnist.py``'s network (the paper's N-MNIST
    network has three convolutional layers).

    ``forward(x)`` (``x`` ``[T, B, C, H, W]``) runs the whole graph (BPTT of the network)
    and returns the last layer's readout of the steps after ``burnin`` (an attribute,
    0 unless the run sets ``--decolle-burnin``): ``[T − burnin, B, num_classes]``.

    Args:
        num_classes: ``K``.
        in_channels, input_size: one step's input ``[C, H, W]`` (``input_size``: ``H``
            or ``(H, W)``).
        channels: output channels of the convolutional layers (may be empty).
        kernel_size: their kernels' side (odd).
        pool: their max pooling (1: none).
        hidden: neurons of the dense layers (may be empty; not both empty).
        alpha, beta, alpharp, wrp, normalize: the layers' traces
            (:class:`~spikeflow.learn.DECOLLELayer`).
        readout_scale, train_readouts, dropout: the readouts
            (:class:`~spikeflow.learn.DECOLLENetwork`).
        binary_input: read each input value above 0 as a spike, 1 (event counts of a
            frame as spikes, as ``examples/decolle_nmnist.py``; default False).
        input_pool: max-pool each input step by this factor in space first (default 1:
            none; with ``binary_input``, 2 gives the example's 2x downsampled events).

    Raises:
        ConfigurationError: no layers, an even kernel, sizes below 1, an input the
            pooling shrinks to nothing.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 2,
        input_size: int | tuple[int, int] | list[int] = 32,
        channels: Sequence[int] = (16, 32),
        kernel_size: int = 5,
        pool: int = 2,
        hidden: Sequence[int] = (128,),
        alpha: float = 0.9,
        beta: float = 0.85,
        alpharp: float = 0.65,
        wrp: float = 1.0,
        normalize: bool = True,
        readout_scale: float = 0.5,
        train_readouts: bool = False,
        dropout: float = 0.0,
        binary_input: bool = False,
        input_pool: int = 1,
    ) -> None:
        channels, hidden = list(channels), list(hidden)
        binary_input = check_flag("decolle", "binary_input", binary_input)
        input_pool = check_int("decolle: input_pool", input_pool, 1)
        if not channels and not hidden:
            raise ConfigurationError("decolle: channels and hidden are both empty: no layers")
        if any(isinstance(n, bool) or not isinstance(n, int) or n < 1
               for n in [*channels, *hidden]):  # fmt: skip
            raise ConfigurationError(
                f"decolle: channels and hidden must hold integers >= 1, got {channels}, {hidden}"
            )
        if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1:
            raise ConfigurationError(
                f"decolle: kernel_size must be an odd integer >= 1, got {kernel_size!r}"
            )
        if kernel_size % 2 == 0:
            raise ConfigurationError(
                f"decolle: kernel_size must be odd ('same' padding), got {kernel_size}"
            )
        height, width = _pair("input_size", input_size)
        if min(height, width) < input_pool:
            raise ConfigurationError(
                f"decolle: the input {height}x{width} is smaller than input_pool {input_pool}"
            )
        height, width = height // input_pool, width // input_pool
        kw = dict(alpha=alpha, beta=beta, alpharp=alpharp, wrp=wrp, normalize=normalize)
        layers, size, features = [], (height, width), in_channels
        for out in channels:
            if min(size) < pool:
                raise ConfigurationError(
                    f"decolle: the input {height}x{width} is too small for {len(channels)} "
                    f"max pools of {pool}"
                )
            conv = nn.Conv2d(features, out, kernel_size, padding=kernel_size // 2)
            layers.append(DECOLLELayer(conv, pool=pool, **kw))  # type: ignore[arg-type]
            size, features = (size[0] // pool, size[1] // pool), out
        flat = features * size[0] * size[1]
        for out in hidden:
            layers.append(DECOLLELayer(nn.Linear(flat, out), **kw))  # type: ignore[arg-type]
            flat = out
        super().__init__(
            layers, (in_channels, height, width), num_classes, readout_scale=readout_scale,
            train_readouts=train_readouts, dropout=dropout,
        )  # fmt: skip
        self.binary_input, self.input_pool = binary_input, input_pool
        #: Steps run before the output (and learning) starts (``--decolle-burnin``).
        self.burnin = 0

    def prepare_input(self, x: Tensor) -> Tensor:
        """``x`` ``[T, B, C, H, W]`` as the layers take it: spikes where ``binary_input``,
        max-pooled by ``input_pool``."""
        if self.binary_input:
            x = (x > 0).to(x.dtype)
        if self.input_pool > 1:
            if not isinstance(x, Tensor) or x.dim() != 5:
                shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
                raise ShapeError(f"DECOLLEClassifier: x must be [T, B, C, H, W], got {shape}")
            pooled = F.max_pool2d(x.flatten(0, 1), self.input_pool)
            x = pooled.unflatten(0, x.shape[:2])
        return x

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        """The last layer's readout ``[T − burnin, B, K]`` of ``x`` ``[T, B, C, H, W]``."""
        if isinstance(x, Tensor) and x.dim() >= 1 and x.shape[0] <= self.burnin:
            raise ShapeError(
                f"DECOLLEClassifier: the input has T = {x.shape[0]} steps, not more than "
                f"the burn-in ({self.burnin})"
            )
        return super().forward(self.prepare_input(x), local=False)[self.burnin :, -1]


@register_model("decolle")
def decolle(num_classes: int = 10, **kwargs: Any) -> DECOLLEClassifier:
    """The DECOLLE network (:class:`DECOLLEClassifier`): convolutional then dense
    DECOLLE layers, each with a fixed random readout; ``--decolle`` trains it by
    DECOLLE's local rule, without it BPTT trains it; ``kwargs`` are its arguments."""
    return DECOLLEClassifier(num_classes=num_classes, **kwargs)
