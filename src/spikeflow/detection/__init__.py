"""Object detection on event cameras: boxes, NMS, mAP, a spiking detection head and loss
(docs/detection.md).

* :mod:`~spikeflow.detection.boxes`: box formats, areas, IoU, GIoU, NMS (pure torch).
* :mod:`~spikeflow.detection.targets`: the ``[K, 5]`` target contract and :func:`collate`.
* :mod:`~spikeflow.detection.metrics`: COCO mAP and VOC AP@0.5, accumulated by batch.
* :mod:`~spikeflow.detection.head`: the anchor-free spiking head, its loss and decoder.
* :mod:`~spikeflow.detection.model`: :class:`SpikingDetector` and a small builder.
* :mod:`~spikeflow.detection.multiscale`: the multi-scale (FPN) detector, its per-level
  assignment by object size (FCOS), loss and decoder.
* :mod:`~spikeflow.detection.yolo`, :mod:`~spikeflow.detection.yolo_loss`: anchor-based
  YOLO (Lava-DL's): anchors, target assignment, decoding and the CIoU-weighted loss;
  the spiking tiny YOLOv3 is :mod:`spikeflow.models.tiny_yolov3`.

The composed N-MNIST detection task is
:class:`spikeflow.data.datasets.nmnist_detection.NMNISTDetection`.
"""

from spikeflow.detection.boxes import (
    BOX_FORMATS,
    batched_nms,
    box_area,
    box_convert,
    box_iou,
    check_boxes,
    clip_boxes_to_image,
    complete_box_iou,
    complete_box_iou_loss,
    elementwise_box_iou,
    generalized_box_iou,
    nms,
)
from spikeflow.detection.head import (
    DetectionLoss,
    SpikingDetectionHead,
    assign_targets,
    decode,
    decode_boxes,
)
from spikeflow.detection.metrics import Detections, MeanAveragePrecision
from spikeflow.detection.model import SpikingDetector, spiking_detector
from spikeflow.detection.multiscale import (
    MultiScaleDetectionLoss,
    SpikingFPNDetector,
    assign_targets_multiscale,
    decode_multiscale,
    fcos_size_ranges,
)
from spikeflow.detection.targets import check_target, collate, pad_targets, split_target
from spikeflow.detection.yolo import assign_yolo_targets, decode_yolo
from spikeflow.detection.yolo_loss import YOLOLoss

__all__ = [
    "BOX_FORMATS",
    "DetectionLoss",
    "Detections",
    "MeanAveragePrecision",
    "MultiScaleDetectionLoss",
    "SpikingDetectionHead",
    "SpikingDetector",
    "SpikingFPNDetector",
    "YOLOLoss",
    "assign_targets",
    "assign_targets_multiscale",
    "assign_yolo_targets",
    "batched_nms",
    "box_area",
    "box_convert",
    "box_iou",
    "check_boxes",
    "check_target",
    "clip_boxes_to_image",
    "collate",
    "complete_box_iou",
    "complete_box_iou_loss",
    "decode",
    "decode_boxes",
    "decode_multiscale",
    "decode_yolo",
    "elementwise_box_iou",
    "fcos_size_ranges",
    "generalized_box_iou",
    "nms",
    "pad_targets",
    "spiking_detector",
    "split_target",
]
