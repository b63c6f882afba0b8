"""A spiking tiny YOLOv3 (Lava-DL's ``tiny_yolov3_str``, the strided tiny YOLOv3 it maps
to Loihi 2), with spiking (LIF) or sigma-delta units, and its anchor-based head.

The layout is Lava-DL's (channels times ``width_mult``):

* backbone: conv3x3 units 16/2, 32/2, 64/2, 128/2, 256/1 (stride 16);
* coarse branch: 256/2, 512, 1024, 1x1 256 (stride 32), then a 512 unit and the 1x1
  read-out of scale 32;
* fine branch: the coarse branch's 1x1 256 output through a 1x1 128 unit, upsampled
  (nearest) to the backbone's grid, joined to the backbone's 256 channels, a 256 unit and
  the 1x1 read-out of scale 16.

An input whose height or width is not a multiple of 32 is padded with zeros on the right
and bottom (Gen1's 304x240 becomes 320x256), so that every cell spans exactly its stride
and the anchors are fractions of the padded image. A read-out has ``A·(5 + C)``
channels (:mod:`spikeflow.detection.yolo`) and runs at every step: the outputs are per
step, ``[T, B, A·(5 + C), H_l, W_l]``, finest scale first.
:class:`~spikeflow.detection.YOLOLoss` trains them per step or on their time-mean;
:meth:`TinyYOLOv3.detect` decodes the time-mean.

Units (``block``):

* ``"spiking"``: conv-BN-neuron (default LIF τ = 2, detached hard reset, ATan surrogate,
  as spikeflow's other detection heads); the read-out is a conv on the spikes.
* ``"sigma_delta"``: Lava-DL's SDNN: a :class:`~spikeflow.layers.DeltaEncoder` on the
  input, then per unit a :class:`~spikeflow.layers.DeltaSynapse` conv and a
  :class:`~spikeflow.layers.SigmaDelta` (sigma, BN, ReLU, delta with threshold
  ``delta_threshold``); the read-out is a synapse and a
  :class:`~spikeflow.layers.SigmaDecoder` (the accumulated output). With threshold 0 each
  step's output is the ANN's on that step's frame. Lava-DL uses weight normalisation,
  mean-only batch norm and 8-bit weights for Loihi; here plain BN and float weights.

It is not in :func:`~spikeflow.models.create_model`'s registry, whose models are
classifiers (``[T, B, num_classes]``): ``spikeflow train --dataset nmnist_detection
--model tiny_yolov3`` builds it (docs/detection.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikeflow import layers
from spikeflow._checks import check_real
from spikeflow.detection.head import HEAD_NEURON_DEFAULTS, DetectMixin
from spikeflow.detection.metrics import Detections
from spikeflow.detection.yolo import LAVA_TINY_YOLOV3_ANCHORS, check_anchors, decode_yolo
from spikeflow.detection.yolo_loss import YOLOLoss
from spikeflow.errors import ConfigurationError
from spikeflow.layers._time import fold_time
from spikeflow.models.building import init_conv_linear
from spikeflow.models.common import NeuronFactory, NeuronSpec, check_input, check_positive_int

__all__ = ["TinyYOLOv3", "tiny_yolov3"]

BLOCKS = ("spiking", "sigma_delta")


class _Upsample(nn.Module):
    """Nearest upsampling of ``[T, B, C, h, w]`` to the grid of ``like`` ``[T, B, C', H, W]``."""

    def forward(self, x: Tensor, like: Tensor) -> Tensor:
        size = (int(like.shape[-2]), int(like.shape[-1]))
        return fold_time(lambda y: F.interpolate(y, size=size, mode="nearest"), x)


class TinyYOLOv3(DetectMixin, nn.Module):
    """The spiking tiny YOLOv3 (module docs): ``[T, B, C, H, W]`` -> a tuple of the two
    scales' per-step read-outs, stride 16 then 32.

    Args:
        num_classes: object classes.
        in_channels: input channels (2 for DVS polarities).
        anchors: ``[2, A, 2]`` anchors, fractions of the image (default Lava-DL's).
        width_mult: every unit's channels times this (at least 1 channel).
        block: ``"spiking"`` or ``"sigma_delta"``.
        neuron, neuron_kwargs: the spiking units' neuron (``block="spiking"`` only;
            default LIF).
        delta_threshold: θ of every delta encoder (``block="sigma_delta"`` only;
            default 0.1, Lava-DL's tiny YOLO's).
        prior_prob: initial objectness probability (the read-outs' objectness bias
            starts at ``-log((1 - p)/p)``, RetinaNet's prior).
        clamp_max: the largest ``t_w``, ``t_h`` when decoding (Lava-DL's 5).
    """

    strides = (16, 32)

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 2,
        anchors: Sequence[Sequence[Sequence[float]]] | Tensor = LAVA_TINY_YOLOV3_ANCHORS,
        width_mult: float = 1.0,
        block: str = "spiking",
        neuron: NeuronSpec | None = None,
        neuron_kwargs: Mapping[str, Any] | None = None,
        delta_threshold: float | None = None,
        prior_prob: float = 0.01,
        clamp_max: float = 5.0,
    ) -> None:
        super().__init__()
        self.num_classes = check_positive_int("num_classes", num_classes)
        self.in_channels = check_positive_int("in_channels", in_channels)
        self.register_buffer("anchors", check_anchors(anchors, len(self.strides)))
        mult = check_real("width_mult", width_mult, 0.0, None, low_open=True)
        if block not in BLOCKS:
            raise ConfigurationError(f"block must be one of {BLOCKS}, got {block!r}")
        self.block = block
        _refuse_unused(block, neuron, neuron_kwargs, delta_threshold)
        self.delta_threshold = check_real(
            "delta_threshold", 0.1 if delta_threshold is None else delta_threshold, 0.0
        )
        p = check_real("prior_prob", prior_prob, 0.0, 1.0, low_open=True, high_open=True)
        self.clamp_max = check_real("clamp_max", clamp_max, 0.0, None, low_open=True)
        self._factory = NeuronFactory(neuron or "lif", neuron_kwargs, HEAD_NEURON_DEFAULTS)

        def ch(n: int) -> int:
            return max(1, round(n * mult))

        self.input = layers.DeltaEncoder(self.delta_threshold) if block == "sigma_delta" else None
        plan = [(16, 2), (32, 2), (64, 2), (128, 2), (256, 1)]
        units, c = [], in_channels
        for width, stride in plan:
            units.append(self._unit(c, ch(width), 3, stride))
            c = ch(width)
        self.backbone = nn.Sequential(*units)
        self.coarse_backend = nn.Sequential(
            self._unit(c, ch(256), 3, 2),
            self._unit(ch(256), ch(512), 3, 1),
            self._unit(ch(512), ch(1024), 3, 1),
            self._unit(ch(1024), ch(256), 1, 1),
        )
        num_out = self.num_anchors * (5 + num_classes)
        self.coarse_head = nn.Sequential(
            self._unit(ch(256), ch(512), 3, 1), self._readout(ch(512), num_out)
        )
        self.fine_lateral = self._unit(ch(256), ch(128), 1, 1)
        self.upsample = _Upsample()
        self.fine_head = nn.Sequential(
            self._unit(ch(128) + c, ch(256), 3, 1), self._readout(ch(256), num_out)
        )
        init_conv_linear(self)
        for head in (self.coarse_head, self.fine_head):
            conv = _readout_conv(head[-1])
            nn.init.normal_(conv.weight, std=0.01)
            bias = conv.bias if conv.bias is not None else head[-1][0].bias
            with torch.no_grad():
                b = bias.view(self.num_anchors, 5 + num_classes)
                b.zero_()
                b[:, 4] = -torch.log(torch.tensor((1 - p) / p))

    @property
    def num_anchors(self) -> int:
        """Anchors per cell."""
        return int(self.anchors.shape[1])

    def _unit(self, c_in: int, c_out: int, k: int, stride: int) -> nn.Module:
        if self.block == "spiking":
            return nn.Sequential(
                layers.Conv2d(c_in, c_out, k, stride, k // 2, bias=False),
                layers.BatchNorm2d(c_out),
                self._factory(),
            )
        return nn.Sequential(
            layers.DeltaSynapse(nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False)),
            layers.SigmaDelta(
                nn.Sequential(nn.BatchNorm2d(c_out), nn.ReLU()), threshold=self.delta_threshold
            ),
        )

    def _readout(self, c_in: int, c_out: int) -> nn.Module:
        if self.block == "spiking":
            return layers.Conv2d(c_in, c_out, 1)
        return nn.Sequential(layers.DeltaSynapse(nn.Conv2d(c_in, c_out, 1)), layers.SigmaDecoder())

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``[T, B, C, H, W]`` -> (``[T, B, A·(5 + C), H/16, W/16]``, ``[..., H/32, W/32]``),
        the input padded with zeros (right, bottom) to a multiple of 32 first."""
        check_input(x, type(self).__name__, "[T, B, C, H, W]", 5, self.in_channels)
        # zeros on the right and bottom to a multiple of 32: every cell then spans exactly
        # its stride and the boxes keep the input's coordinates
        pad_h, pad_w = -x.shape[-2] % 32, -x.shape[-1] % 32
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        if self.input is not None:
            x = self.input(x)
        features = self.backbone(x)  # stride 16
        coarse = self.coarse_backend(features)  # stride 32
        out_coarse = self.coarse_head(coarse)
        lateral = self.fine_lateral(coarse)
        joined = torch.cat((self.upsample(lateral, features), features), 2)
        return self.fine_head(joined), out_coarse

    def criterion(self, **kwargs: Any) -> YOLOLoss:
        """The training loss: :class:`~spikeflow.detection.YOLOLoss` on this detector's
        classes, strides and anchors, with ``kwargs`` (weights, ``time_reduction``, ...)."""
        kwargs.setdefault("clamp_max", self.clamp_max)
        return YOLOLoss(self.num_classes, self.strides, self.anchors.cpu(), **kwargs)

    def decode_output(
        self,
        out: Sequence[Tensor],
        score_threshold: float = 0.05,
        iou_threshold: float = 0.5,
        max_detections: int = 100,
        image_size: Sequence[int] | None = None,
    ) -> list[Detections]:
        """Detections from the outputs' time-mean
        (:func:`~spikeflow.detection.yolo.decode_yolo`), clipped to ``image_size``."""
        return decode_yolo(
            out,
            self.strides,
            self.anchors,
            score_threshold=score_threshold,
            iou_threshold=iou_threshold,
            max_detections=max_detections,
            image_size=image_size,
            clamp_max=self.clamp_max,
        )

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, anchors={self.num_anchors}/scale, "
            f"block={self.block!r}"
        )


def _refuse_unused(
    block: str,
    neuron: NeuronSpec | None,
    neuron_kwargs: Mapping[str, Any] | None,
    delta_threshold: float | None,
) -> None:
    """Refuse, by name, an argument ``block`` would silently ignore."""
    if block == "sigma_delta":
        given = [
            f"{name}={value!r}"
            for name, value in (("neuron", neuron), ("neuron_kwargs", neuron_kwargs))
            if value is not None
        ]
        if given:
            raise ConfigurationError(
                f"block='sigma_delta' has no spiking neurons (its units are SigmaDelta), so "
                f"{', '.join(given)} (--neuron/--neuron-kwargs) would be ignored: leave "
                f"{'it' if len(given) == 1 else 'them'} out or use block='spiking'"
            )
    elif delta_threshold is not None:
        raise ConfigurationError(
            f"delta_threshold={delta_threshold!r} is the sigma-delta units' threshold; "
            f"block={block!r} has none: leave it out or use block='sigma_delta'"
        )


def _readout_conv(readout: nn.Module) -> nn.Conv2d:
    if isinstance(readout, nn.Conv2d):
        return readout
    return readout[0].layer  # a DeltaSynapse's conv (its bias moved to the synapse)


def tiny_yolov3(
    num_classes: int = 10,
    in_channels: int = 2,
    anchors: Sequence[Sequence[Sequence[float]]] | None = None,
    width_mult: float = 1.0,
    block: str = "spiking",
    neuron: NeuronSpec | None = None,
    neuron_kwargs: Mapping[str, Any] | None = None,
    delta_threshold: float | None = None,
) -> TinyYOLOv3:
    """The spiking tiny YOLOv3 (:class:`TinyYOLOv3`; ``anchors=None``: Lava-DL's).

    Raises:
        ConfigurationError: as :class:`TinyYOLOv3`, e.g. ``neuron`` with
            ``block="sigma_delta"`` or ``delta_threshold`` with ``block="spiking"``.
    """
    return TinyYOLOv3(
        num_classes,
        in_channels,
        LAVA_TINY_YOLOV3_ANCHORS if anchors is None else anchors,
        width_mult,
        block,
        neuron,
        neuron_kwargs,
        delta_threshold,
    )
