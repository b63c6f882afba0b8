"""A spiking detector: any multi-step spiking backbone plus :class:`SpikingDetectionHead`,
and :func:`spiking_detector`, a small one built from spikeflow's layers and neurons."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from spikeflow import layers
from spikeflow.detection.head import (
    HEAD_NEURON_DEFAULTS,
    DetectionLoss,
    DetectMixin,
    SpikingDetectionHead,
    _check_stride,
    decode,
)
from spikeflow.detection.metrics import Detections
from spikeflow.detection.multiscale import SpikingFPNDetector, check_strides
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.models.common import (
    NeuronFactory,
    NeuronSpec,
    check_input,
    check_positive_int,
    init_conv_linear,
)

__all__ = ["SpikingDetector", "spiking_detector"]


class SpikingDetector(DetectMixin, nn.Module):
    """``backbone`` then ``head``: ``[T, B, C, H, W]`` -> ``[B, 5 + num_classes, H/s, W/s]``.

    Args:
        backbone: any module mapping time-major input ``[T, B, C, H, W]`` to a spiking
            feature map ``[T, B, C', H', W']`` (a zoo model cut before its pooling, or
            the stack :func:`spiking_detector` builds).
        head: the detection head on ``C'`` channels.
        stride: pixels of the input per cell of the feature map (``H / H'``).
        in_channels: input channels, checked at each call (None: not checked).
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: SpikingDetectionHead,
        stride: float,
        in_channels: int | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(head, SpikingDetectionHead):
            kind = type(head).__name__
            raise ConfigurationError(f"head must be a SpikingDetectionHead, got {kind}")
        self.backbone = backbone
        self.head = head
        self.stride = _check_stride(stride)
        self.in_channels = in_channels
        self.num_classes = head.num_classes

    def forward(self, x: Tensor) -> Tensor:
        """The head's raw output ``[B, 5 + num_classes, H', W']`` (train it with
        :class:`~spikeflow.detection.DetectionLoss`, decode it with :meth:`detect`)."""
        if self.in_channels is not None:
            check_input(x, type(self).__name__, "[T, B, C, H, W]", 5, self.in_channels)
        features = self.backbone(x)
        if features.dim() != 5:
            raise ShapeError(
                f"the backbone must return [T, B, C, H, W] features, got {list(features.shape)}"
            )
        return self.head(features)

    def criterion(self, **kwargs: Any) -> DetectionLoss:
        """The training loss of this detector's output: :class:`DetectionLoss` on its
        classes and stride, with ``kwargs`` (``center_radius``, ``box_loss``, weights)."""
        return DetectionLoss(self.num_classes, self.stride, **kwargs)

    def decode_output(
        self,
        out: Tensor,
        score_threshold: float = 0.05,
        iou_threshold: float = 0.5,
        max_detections: int = 100,
        image_size: Sequence[int] | None = None,
    ) -> list[Detections]:
        """Detections from this detector's output ``out`` (:func:`decode` on its stride),
        clipped to ``image_size`` (height, width) where given."""
        return decode(
            out,
            self.stride,
            score_threshold=score_threshold,
            iou_threshold=iou_threshold,
            max_detections=max_detections,
            image_size=image_size,
        )


def spiking_detector(
    num_classes: int = 10,
    in_channels: int = 2,
    widths: Sequence[int] = (16, 32, 64),
    extra_units: int = 0,
    head_depth: int = 1,
    neuron: NeuronSpec = "lif",
    neuron_kwargs: Mapping[str, Any] | None = None,
    strides: Sequence[int] | None = None,
    fpn_channels: int | None = None,
    size_ranges: Sequence[Sequence[float]] | None = None,
) -> SpikingDetector | SpikingFPNDetector:
    """A small spiking detector for event frames, stride ``2**len(widths)``; with
    ``strides``, a multi-scale one (:class:`~spikeflow.detection.multiscale.SpikingFPNDetector`).

    Backbone: for each width, conv3x3/2-BN-neuron (each halves the resolution); then
    ``extra_units`` conv3x3/1-BN-neuron units at the last width. Head:
    :class:`SpikingDetectionHead` with ``head_depth`` units. The default (16, 32, 64)
    maps a 96x96 canvas to a 12x12 grid of 8-pixel cells.

    Args:
        num_classes: object classes.
        in_channels: input channels (2 for DVS polarities).
        widths: channels of the downsampling units.
        extra_units: stride-1 units after them.
        head_depth: spiking units in the head.
        neuron, neuron_kwargs: the neuron everywhere (default LIF τ = 2, detached reset,
            ATan surrogate), as in the model zoo.
        strides: None (one scale, above), or the levels of a feature pyramid, e.g.
            ``(8, 16)``: powers of two; ``2**k`` is taken after the ``k``-th downsampling
            unit, and strides past ``2**len(widths)`` come from further conv3x3/2 units
            at the last width (FCOS's P6/P7); the last stride is at least
            ``2**len(widths)`` (else a ConfigurationError: stages that never run).
            ``extra_units`` then follow the last downsampling unit of ``widths`` as before.
        fpn_channels: channels of every pyramid level (default the last width).
        size_ranges: the levels' ``(lo, hi)`` size ranges for the targets (default
            FCOS's, :func:`~spikeflow.detection.multiscale.fcos_size_ranges`).
    """
    check_positive_int("in_channels", in_channels)
    widths = tuple(widths)
    if not widths:
        raise ConfigurationError("widths must name at least one downsampling unit")
    for i, w in enumerate(widths):
        check_positive_int(f"widths[{i}]", w)
    if isinstance(extra_units, bool) or not isinstance(extra_units, int) or extra_units < 0:
        raise ConfigurationError(f"extra_units must be an integer >= 0, got {extra_units!r}")
    factory = NeuronFactory(neuron, neuron_kwargs, HEAD_NEURON_DEFAULTS)
    if strides is not None:
        return _fpn_detector(
            num_classes, in_channels, widths, extra_units, head_depth, neuron, neuron_kwargs,
            strides, fpn_channels, size_ranges, factory,
        )  # fmt: skip
    if fpn_channels is not None or size_ranges is not None:
        raise ConfigurationError(
            "fpn_channels and size_ranges need strides (a multi-scale detector)"
        )
    units: list[nn.Module] = []
    c = in_channels
    for w in widths:
        units += [layers.Conv2d(c, w, 3, 2, 1, bias=False), layers.BatchNorm2d(w), factory()]
        c = w
    for _ in range(extra_units):
        units += [layers.Conv2d(c, c, 3, 1, 1, bias=False), layers.BatchNorm2d(c), factory()]
    backbone = nn.Sequential(*units)
    init_conv_linear(backbone)
    head = SpikingDetectionHead(
        c, num_classes, depth=head_depth, neuron=neuron, neuron_kwargs=neuron_kwargs
    )
    return SpikingDetector(backbone, head, stride=2 ** len(widths), in_channels=in_channels)


def _fpn_detector(
    num_classes: int,
    in_channels: int,
    widths: tuple[int, ...],
    extra_units: int,
    head_depth: int,
    neuron: NeuronSpec,
    neuron_kwargs: Mapping[str, Any] | None,
    strides: Sequence[int],
    fpn_channels: int | None,
    size_ranges: Sequence[Sequence[float]] | None,
    factory: NeuronFactory,
) -> SpikingFPNDetector:
    """:func:`spiking_detector`'s multi-scale form."""
    strides = check_strides(strides)
    depth = max(len(widths), int(math.log2(strides[-1])))
    stages: list[nn.Module] = []
    channels: list[int] = []
    c = in_channels
    for i in range(depth):
        w = widths[i] if i < len(widths) else widths[-1]
        units = [layers.Conv2d(c, w, 3, 2, 1, bias=False), layers.BatchNorm2d(w), factory()]
        if i == len(widths) - 1:
            for _ in range(extra_units):
                units += [layers.Conv2d(w, w, 3, 1, 1, bias=False), layers.BatchNorm2d(w),
                          factory()]  # fmt: skip
        stage = nn.Sequential(*units)
        init_conv_linear(stage)
        stages.append(stage)
        channels.append(w)
        c = w
    fpn = widths[-1] if fpn_channels is None else check_positive_int("fpn_channels", fpn_channels)
    return SpikingFPNDetector(stages, channels, strides, num_classes, fpn, head_depth, neuron,
                              neuron_kwargs, size_ranges, in_channels)  # fmt: skip
