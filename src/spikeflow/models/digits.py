"""A small PLIF convolutional network for 8x8 images (scikit-learn's handwritten digits).

It follows the PLIF paper's recipe (methods.md 11.2) at a small scale and is the
network ``spikeflow train`` trains by default: conv-BN, PLIF, conv-BN, PLIF, max-pool,
then dropout (one mask per sequence), FC, PLIF, dropout, FC, PLIF and a voting layer.
Static images are repeated over T by the caller (the first conv-BN then sees the same
image at every step, so it computes what the paper's "encoder run once" computes).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from spikeflow import layers
from spikeflow.errors import ConfigurationError
from spikeflow.models.building import pooling_2x2
from spikeflow.models.common import NeuronFactory, NeuronSpec, check_input, check_positive_int
from spikeflow.models.registry import register_model

__all__ = ["PLIF_DEFAULTS", "DigitsPLIFNet", "plif_digits"]

#: The PLIF paper's neuron (methods.md 11.2): tau_0 = 2, detach_reset, ATan surrogate;
#: those a different ``neuron`` does not take are dropped (see NeuronFactory).
PLIF_DEFAULTS: dict[str, Any] = {
    "init_tau": 2.0,
    "detach_reset": True,
    "surrogate_function": "atan",
}


class DigitsPLIFNet(nn.Module):
    """conv-BN-PLIF-conv-BN-PLIF-maxpool-[dropout-FC-PLIF]-dropout-FC-PLIF-voting.

    Input ``[T, B, in_channels, H, W]`` (time-major), output ``[T, B, num_classes]``: the
    voting layer's mean spike of each class's group of ``voting_size`` neurons per step;
    its mean over T is the firing rate the PLIF paper's MSE loss compares to the one-hot
    label. With ``spiking_output=False`` the last FC layer's logits at every step.

    Args:
        num_classes: output classes.
        in_channels: input channels (1 for grey images, 2 for DVS polarities).
        input_size: ``(H, W)`` of the input, or one side of a square input (needed for the
            first FC layer); H and W even.
        channels: conv channels.
        hidden: neurons of the hidden FC layer.
        dropout: dropout probability (masks shared over T); 0 disables it.
        batch_norm: BN after each conv (True, the recipe) or no normalisation.
        voting_size: output neurons per class.
        spiking_output: spiking output neurons with voting (True, the PLIF paper), or a
            plain FC layer giving real-valued logits at every step (False; the nets of
            TET and TCL end so), with ``voting_size`` unused.
        neuron: neuron class, factory or name (default ``"plif"``).
        neuron_kwargs: its arguments, over the defaults ``init_tau=2``,
            ``detach_reset=True``, ATan surrogate (the PLIF paper; a neuron that does not
            take one of them gets the rest).
        zero_init_residual: accepted for the zoo's common interface; the network has no
            residual blocks, so it must be False.
        pooling: ``"max"`` (the recipe's 2x2 max pool), ``"avg"`` or ``"sum"`` (2x2
            average or sum pooling, which NIR can express: docs/nir.md).
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        input_size: int | tuple[int, int] | list[int] = (8, 8),
        channels: int = 32,
        hidden: int = 128,
        dropout: float = 0.5,
        batch_norm: bool = True,
        voting_size: int = 10,
        neuron: NeuronSpec = "plif",
        neuron_kwargs: Mapping[str, Any] | None = None,
        zero_init_residual: bool = False,
        spiking_output: bool = True,
        pooling: str = "max",
    ) -> None:
        super().__init__()
        if zero_init_residual:
            raise ConfigurationError("DigitsPLIFNet has no residual blocks to zero-init")
        if isinstance(input_size, int) and not isinstance(input_size, bool):
            input_size = (input_size, input_size)
        if not isinstance(input_size, (tuple, list)) or len(input_size) != 2:
            raise ConfigurationError(
                f"input_size must be (H, W) or one int (a square input); got {input_size!r}"
            )
        height, width = (check_positive_int("input_size", s) for s in input_size)
        for name, value in (
            ("num_classes", num_classes), ("in_channels", in_channels),
            ("channels", channels), ("hidden", hidden), ("voting_size", voting_size),
        ):  # fmt: skip
            check_positive_int(name, value)
        if height % 2 or width % 2:
            raise ConfigurationError(f"input_size must be even (a 2x2 pooling); got {input_size}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigurationError(f"dropout must be in [0, 1); got {dropout}")
        if not isinstance(spiking_output, bool):
            raise ConfigurationError(
                f"spiking_output must be true or false; got {spiking_output!r}"
            )
        pool_2x2 = pooling_2x2(pooling)
        spiking = NeuronFactory(neuron, neuron_kwargs, defaults=PLIF_DEFAULTS)
        self.in_channels = in_channels
        self.num_classes = num_classes

        def norm() -> nn.Module:
            return layers.BatchNorm2d(channels) if batch_norm else nn.Identity()

        def drop() -> nn.Module:
            return layers.Dropout(dropout) if dropout > 0 else nn.Identity()

        self.features = nn.Sequential(
            layers.Conv2d(in_channels, channels, 3, padding=1, bias=not batch_norm),
            norm(),
            spiking(),
            layers.Conv2d(channels, channels, 3, padding=1, bias=not batch_norm),
            norm(),
            spiking(),
            pool_2x2(),
        )
        self.classifier = nn.Sequential(
            layers.Flatten(),
            drop(),
            layers.Linear(channels * (height // 2) * (width // 2), hidden, bias=False),
            spiking(),
            drop(),
            *(
                (layers.Linear(hidden, num_classes * voting_size, bias=False), spiking(),
                 layers.VotingLayer(voting_size))
                if spiking_output else (layers.Linear(hidden, num_classes),)
            ),
        )  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, C, H, W]`` -> ``[T, B, num_classes]``."""
        check_input(x, type(self).__name__, "[T, B, C, H, W]", 5, self.in_channels)
        return self.classifier(self.features(x))


@register_model("plif_digits")
def plif_digits(
    num_classes: int = 10,
    in_channels: int = 1,
    neuron: NeuronSpec = "plif",
    neuron_kwargs: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> DigitsPLIFNet:
    """The PLIF network for 8x8 digits (:class:`DigitsPLIFNet`); ``kwargs`` are its other
    arguments (``input_size``, ``channels``, ``hidden``, ``dropout``, ``batch_norm``, ...)."""
    return DigitsPLIFNet(
        num_classes=num_classes, in_channels=in_channels, neuron=neuron,
        neuron_kwargs=neuron_kwargs, **kwargs,
    )  # fmt: skip
