"""The sequential-CIFAR network of the PSN paper (Fang et al., NeurIPS 2023; methods.md 4.5).

Each image column is one time step: a CIFAR image ``[B, 3, 32, 32]`` becomes the
sequence ``[T=32, B, 3, 32]`` (``x.permute(3, 0, 1, 2)``, see :func:`image_to_columns`),
and the network is 1-d along the 32 rows:

    {Conv1d k3 (C)-BN-SN x3 → AvgPool1d 2} x2 → flatten → FC(C·8 → C·8/4) → SN → FC(→ classes)

with C = 128 channels (so FC 1024 → 256), convolutions without bias. Output
``[T, B, num_classes]``; the paper classifies with its mean over T (CE with label
smoothing 0.1). Default neuron: PSN with ``T = 32`` and ATan; PSN-type neurons need
``T`` (pass ``neuron_kwargs={"T": ...}`` for other lengths), the others ignore it.
The baselines of the paper use ``neuron="lif"`` with
``neuron_kwargs={"v_reset": None}`` (soft reset; detach_reset is a default).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from torch import Tensor, nn

from spikeflow import layers
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.models.common import (
    NeuronFactory,
    NeuronSpec,
    check_input,
    check_positive_int,
)
from spikeflow.models.registry import register_model
from spikeflow.surrogate import ATan

__all__ = ["PSNSequentialCIFARNet", "image_to_columns", "psn_seqcifar"]

#: PSN over the 32 columns, ATan; ``detach_reset`` for the LIF/PLIF baselines.
SEQCIFAR_NEURON_DEFAULTS: dict[str, Any] = {
    "T": 32,
    "detach_reset": True,
    "surrogate_function": ATan(),
}


def image_to_columns(images: Tensor) -> Tensor:
    """``[B, C, H, W]`` images → the column sequence ``[W, B, C, H]`` (time = column)."""
    if not isinstance(images, Tensor) or images.dim() != 4:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ShapeError(f"image_to_columns expects [B, C, H, W] images, got {shape}")
    return images.permute(3, 0, 1, 2)


def _column_length(length: int | None, input_size: int | tuple[int, int] | None) -> int:
    """``length``, else the height of ``input_size``, else 32; both given must agree."""
    if input_size is None:
        return 32 if length is None else length
    if isinstance(input_size, (tuple, list)) and len(input_size) == 2:
        height = input_size[0]
    elif isinstance(input_size, int) and not isinstance(input_size, bool):
        height = input_size
    else:
        raise ConfigurationError(f"input_size must be H or (H, W), got {input_size!r}")
    if length is not None and length != height:
        raise ConfigurationError(
            f"length={length} (rows per column) but input_size={input_size!r} has "
            f"{height} rows: leave length out or make them agree"
        )
    return height


class PSNSequentialCIFARNet(nn.Module):
    """Conv1d spiking network over column sequences ``[T, B, C, L]`` → ``[T, B, num_classes]``.

    Args:
        num_classes: 10 (CIFAR-10) or 100 (CIFAR-100).
        in_channels: values per row of a column (3 colour channels).
        channels: width of the Conv1d layers (128).
        length: rows per column; must be divisible by 4. Default: the height of
            ``input_size`` if given (``spikeflow train`` passes the dataset's), else 32.
        input_size: the image size ``H`` or ``(H, W)``; only its height is used.
        neuron, neuron_kwargs: the spiking neuron (default PSN, T = 32).
        zero_init_residual: must be False (no residual blocks).
    """

    #: ``spikeflow train`` feeds a static image one column per step (``T`` = width).
    static_input: ClassVar[str] = "columns"

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        channels: int = 128,
        length: int | None = None,
        neuron: NeuronSpec = "psn",
        neuron_kwargs: Mapping[str, Any] | None = None,
        zero_init_residual: bool = False,
        input_size: int | tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        if zero_init_residual:
            raise ConfigurationError("the sequential-CIFAR net has no residual blocks")
        self.num_classes = check_positive_int("num_classes", num_classes)
        self.in_channels = check_positive_int("in_channels", in_channels)
        check_positive_int("channels", channels)
        length = _column_length(length, input_size)
        self.length = check_positive_int("length", length)
        if length % 4 != 0:
            raise ConfigurationError(f"length must be divisible by 4 (two pools), got {length}")
        factory = NeuronFactory(neuron, neuron_kwargs, SEQCIFAR_NEURON_DEFAULTS)
        conv: list[nn.Module] = []
        c_in = in_channels
        for _ in range(2):
            for _ in range(3):
                conv += [
                    layers.Conv1d(c_in, channels, 3, padding=1, bias=False),
                    layers.BatchNorm1d(channels),
                    factory(),
                ]
                c_in = channels
            conv.append(layers.AvgPool1d(2))
        self.conv = nn.Sequential(*conv)
        flat = channels * (length // 4)
        self.fc = nn.Sequential(
            layers.Flatten(),
            layers.Linear(flat, flat // 4),
            factory(),
            layers.Linear(flat // 4, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, C, L]`` → ``[T, B, num_classes]``."""
        check_input(x, type(self).__name__, "[T, B, C, L]", 4, self.in_channels)
        if x.shape[3] != self.length:
            raise ShapeError(
                f"{type(self).__name__} was built for columns of length {self.length}, "
                f"got shape {tuple(x.shape)}"
            )
        return self.fc(self.conv(x))


@register_model("psn_seqcifar")
def psn_seqcifar(**kwargs: Any) -> PSNSequentialCIFARNet:
    """The PSN paper's sequential-CIFAR net; kwargs of :class:`PSNSequentialCIFARNet`."""
    return PSNSequentialCIFARNet(**kwargs)
