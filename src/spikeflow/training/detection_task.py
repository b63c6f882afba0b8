"""Object detection as a ``spikeflow train`` task: which datasets are detection datasets,
what a detection run refuses, and the task object that owns the run's data, model,
loss, collate function and evaluation (COCO mAP on the test split).

The classification trainer stays as it is; :class:`~spikeflow.training.detection_trainer.
DetectionTrainer` asks a :class:`DetectionTask` for each of these instead
(docs/detection.md, "From the command line").

Datasets:

* ``nmnist_detection``: :class:`~spikeflow.data.datasets.nmnist_detection.NMNISTDetection`
  canvases (``--data-dir`` is the N-MNIST folder); ``--train-samples``/``--test-samples``
  are the numbers of canvases drawn (default 2000 / 300, as ``examples/detect_nmnist.py``),
  training canvases from seed ``s`` and test canvases from ``10000 + s`` (``s`` =
  ``--dataset-kwargs seed=...``, default 0), so a run sees the example's canvases.
* ``gen1`` and ``1mpx``: :class:`~spikeflow.data.datasets.prophesee_detection.Gen1Automotive`
  and ``OneMpxAutomotive`` (``--data-dir`` holds ``train``/``val``/``test``): each
  sample's event window becomes ``T`` frames as any neuromorphic dataset's do
  (``data_type="frame"``, ``frames_number=T``, ``--split-by``), test split ``test``.
* ``coco`` and ``bdd100k``: :class:`~spikeflow.data.datasets.coco_detection.COCODetection`
  and :class:`~spikeflow.data.datasets.bdd100k_detection.BDD100KDetection` (camera
  images, letterboxed; :mod:`~spikeflow.training.detection_frames`), each image repeated
  over the ``T`` steps, test split ``val``, scored in each image's own pixels with its
  crowd regions, as COCO's evaluation does.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from spikeflow.detection import MeanAveragePrecision, collate
from spikeflow.detection.metrics import Detections
from spikeflow.errors import ConfigurationError
from spikeflow.training.config import TrainConfig
from spikeflow.training.data import DataInfo, StaticLayout, even_subset, to_time_major
from spikeflow.training.distributed import DistContext
from spikeflow.training.loop import EpochSums, autocast_context, reduce_monitor
from spikeflow.training.monitors import LayerStats, SpikeMonitor
from spikeflow.training.task_options import class_label_checks, fill_defaults, refuse_given

__all__ = [
    "COCO_KEYS",
    "DETECTION_DATASETS",
    "DetectionSums",
    "DetectionTask",
    "detection_task",
    "refuse_classification_options",
]

#: The 12 numbers of COCOeval.stats, in order, as :class:`MeanAveragePrecision` names them.
COCO_KEYS = (
    "map",
    "map_50",
    "map_75",
    "map_small",
    "map_medium",
    "map_large",
    "mar_1",
    "mar_10",
    "mar_100",
    "mar_small",
    "mar_medium",
    "mar_large",
)


@dataclass(frozen=True)
class _DatasetSpec:
    """How a detection dataset is built and what a run on it defaults to."""

    T: int
    batch_size: int
    lr: float
    description: str


#: The ``spikeflow train --dataset`` names of the detection datasets.
DETECTION_DATASETS: dict[str, _DatasetSpec] = {
    "nmnist_detection": _DatasetSpec(4, 32, 1e-2, "NMNISTDetection canvases of N-MNIST digits"),
    "gen1": _DatasetSpec(5, 8, 1e-3, "Prophesee Gen1 Automotive (304x240, 2 classes)"),
    "1mpx": _DatasetSpec(5, 4, 1e-3, "Prophesee 1Mpx Automotive (1280x720, 7 classes)"),
    "coco": _DatasetSpec(4, 16, 1e-3, "COCO 2017 detection (camera images, 80 classes)"),
    "bdd100k": _DatasetSpec(4, 16, 1e-3, "BDD100K detection (1280x720 images, 10 classes)"),
}
#: The model a detection run builds unless ``--model`` (the anchor-free detector).
DETECTION_MODEL = "spiking_detector"
#: The loss a detection run trains unless ``--loss``: spikeflow.detection's.
DETECTION_LOSS = "detection"
#: ``--model`` of a detection run -> the ``--loss`` it trains with (the only one it takes).
DETECTION_MODELS = {DETECTION_MODEL: DETECTION_LOSS, "tiny_yolov3": "yolo"}
#: NMNISTDetection's canvases per split unless ``--train-samples``/``--test-samples``.
NMNIST_DETECTION_SAMPLES = (2000, 300)


def detection_task(dataset: Any) -> DetectionTask | None:
    """The :class:`DetectionTask` of ``--dataset`` ``dataset``, or None for a
    classification dataset."""
    if isinstance(dataset, str) and dataset.lower() in DETECTION_DATASETS:
        return DetectionTask(dataset.lower())
    return None


def _given(config: TrainConfig) -> list[tuple[str, str]]:
    """``(option, why)`` for each classification-only (or, for detection, not yet
    supported) option ``config`` sets."""
    d = TrainConfig()
    label = "a classification readout (how a class is read from output spikes)"
    checks = [
        ("--readout", config.readout != d.readout, label),
        (
            "--regression-readout",
            config.regression_readout is not None,
            "decodes a regression output",
        ),
        *class_label_checks(config),
        ("--online", config.online, "per-step classification losses"),
        ("--tbptt", config.tbptt is not None, "per-window classification losses"),
        ("--prune", config.prune != d.prune, "not supported for detection yet"),
        ("--weight-bits", config.weight_bits is not None, "not supported for detection yet"),
        ("--membrane-bits", config.membrane_bits is not None, "not supported for detection yet"),
        ("--input-bits", config.input_bits is not None, "not supported for detection yet"),
        ("--recompute", config.recompute, "not supported for detection yet"),
        ("--model-ema", config.model_ema, "not supported for detection yet"),
        (
            "--fsdp",
            config.fsdp,
            "not supported for detection yet (its evaluation is not run in lockstep)",
        ),
        ("--teacher", config.teacher is not None, "distils class scores"),
        ("--spike-reg", config.spike_reg != "none", "not supported for detection yet"),
        ("--tensorboard", config.tensorboard, "not supported for detection yet (metrics.csv is)"),
        ("--plots on", config.plots == "on", "no plots for detection runs yet"),
    ]
    return [(option, why) for option, used, why in checks if used]


def refuse_classification_options(config: TrainConfig) -> None:
    """Raise a ConfigurationError naming every option of ``config`` a detection run
    cannot take (classification-only ones: ``--readout``, ``--mixup``/``--cutmix``, label
    smoothing, DECOLLE, EventProp, e-prop, online and truncated-BPTT training; and those
    not supported for detection yet: pruning, quantization, ``--recompute``,
    ``--tensorboard``, ``--plots on``), a ``--model`` other than ``spiking_detector`` or
    ``tiny_yolov3``, and a ``--loss`` other than the model's (``detection``, ``yolo``:
    :data:`DETECTION_MODELS`)."""
    name = config.dataset
    if config.model is not None and config.model not in DETECTION_MODELS:
        raise ConfigurationError(
            f"--model {config.model}: dataset {name!r} is a detection task, which trains "
            f"--model {DETECTION_MODEL} (spikeflow.detection.spiking_detector; its options go "
            "in --model-kwargs, e.g. widths=[16,32,64] strides=[8,16]) or --model tiny_yolov3 "
            "(spikeflow.models.tiny_yolov3, e.g. width_mult=0.25 block=sigma_delta)"
        )
    model = config.model or DETECTION_MODEL
    if config.loss is not None and config.loss != DETECTION_MODELS[model]:
        losses = {
            "detection": "spikeflow.detection.DetectionLoss: GIoU + objectness + class BCE; "
            "its weights go in --loss-kwargs, e.g. box_weight=5",
            "yolo": "spikeflow.detection.YOLOLoss: CIoU + coordinates + objectness + class "
            "CE; its weights go in --loss-kwargs, e.g. lambda_iou=2",
        }
        loss = DETECTION_MODELS[model]
        raise ConfigurationError(
            f"--loss {config.loss}: dataset {name!r} is a detection task, and --model {model} "
            f"is trained with --loss {loss} ({losses[loss]})"
        )
    refuse_given(_given(config), name, "detection")


@dataclass
class DetectionSums(EpochSums):
    """:class:`~spikeflow.training.loop.EpochSums` with the detection loss's parts (each
    times the batch size) and the positive cells; ``correct`` stays 0."""

    box: float = 0.0
    obj: float = 0.0
    cls: float = 0.0
    positives: float = 0.0

    def add_parts(self, loss: float, parts: dict[str, Tensor], count: int) -> None:
        """Add one batch: its mean loss and parts (:class:`DetectionLoss`'s) times ``count``."""
        self.add(loss * count, 0.0, count)
        self.box += float(parts["box"]) * count
        self.obj += float(parts["obj"]) * count
        self.cls += float(parts["cls"]) * count
        self.positives += float(parts["positives"])

    @property
    def accuracy(self) -> float:
        return math.nan  # no class accuracy in detection

    def means(self) -> dict[str, float]:
        """The mean loss and parts per sample."""
        n = self.count
        return {
            key: (getattr(self, attr) / n if n else math.nan)
            for key, attr in (("loss", "loss"), ("box", "box"), ("obj", "obj"), ("cls", "cls"))
        }


class DetectionTask:
    """What a detection run needs beyond the classification trainer: its datasets, its
    model (:func:`~spikeflow.detection.spiking_detector`), loss
    (:class:`~spikeflow.detection.DetectionLoss`, or the multi-scale one for a
    multi-scale detector), collate function (:func:`spikeflow.detection.collate`) and
    evaluation (COCO mAP with :class:`~spikeflow.detection.MeanAveragePrecision`).

    Args:
        dataset: one of :data:`DETECTION_DATASETS`.
    """

    collate: Callable[..., Any] = staticmethod(collate)

    def __init__(self, dataset: str) -> None:
        if dataset not in DETECTION_DATASETS:
            raise ConfigurationError(
                f"unknown detection dataset {dataset!r}; available: {', '.join(DETECTION_DATASETS)}"
            )
        self.dataset = dataset
        self.spec = DETECTION_DATASETS[dataset]

    def resolve(self, config: TrainConfig) -> TrainConfig:
        """``config`` (a copy) with the detection defaults where it holds None (model
        ``spiking_detector``, the model's loss (``detection``; ``yolo`` for
        ``tiny_yolov3``), the dataset's ``T``, batch size and
        learning rate, ``split_by="number"``), validated, after refusing the options a
        detection run cannot take (:func:`refuse_classification_options`; for
        ``nmnist_detection`` also ``--cache-dir``, which it has no use for)."""
        refuse_classification_options(config)
        if self.dataset == "nmnist_detection" and config.cache_dir is not None:
            raise ConfigurationError(
                f"--cache-dir {config.cache_dir}: dataset 'nmnist_detection' composes its "
                "canvases from the N-MNIST events as they are read and caches no frames: "
                "leave it out"
            )
        values = dataclasses.replace(config, dataset=self.dataset)
        model = values.model or DETECTION_MODEL
        defaults = {
            "model": model,
            "loss": DETECTION_MODELS[model],
            "T": self.spec.T,
            "batch_size": self.spec.batch_size,
            "lr": self.spec.lr,
            "split_by": "number",
        }
        fill_defaults(values, defaults)
        return values.validate()

    # -- data -------------------------------------------------------------------------

    def build_datasets(
        self, config: TrainConfig, with_train: bool = True
    ) -> tuple[Dataset | None, Dataset, DataInfo]:
        """The train split (None unless ``with_train``), the test split and their
        :class:`~spikeflow.training.data.DataInfo` (classes, polarities, sensor size).

        Raises:
            ConfigurationError: no ``--data-dir``, a ``--dataset-kwargs`` key the dataset
                does not take (or another option sets); DatasetNotFoundError: no data.
        """
        from spikeflow.training.detection_frames import (
            FRAME_DETECTION_DATASETS,
            build_frame_splits,
        )

        frames = self.dataset in FRAME_DETECTION_DATASETS
        if config.data_dir is None:
            raise ConfigurationError(
                f"dataset {self.dataset!r} needs --data-dir ("
                + (
                    "the N-MNIST folder"
                    if self.dataset == "nmnist_detection"
                    else FRAME_DETECTION_DATASETS[self.dataset][1]
                    if frames
                    else "the folder holding train/, val/ and test/"
                )
                + ")"
            )
        if self.dataset == "nmnist_detection":
            train, test = self._nmnist(config, with_train)
        elif frames:
            train, test = build_frame_splits(self.dataset, config, with_train, self._kwargs)
        else:
            train, test = self._prophesee(config, with_train)
        width, height, polarities = test.sensor_size  # type: ignore[attr-defined]
        classes = len(getattr(test, "classes", range(10)))  # NMNISTDetection: the 10 digits
        # camera images are static [3, H, W]: the loop repeats them over T
        info = DataInfo(classes, polarities, (height, width), static=frames)
        if train is not None and self.dataset != "nmnist_detection":
            train = even_subset(train, config.train_samples)
        if self.dataset != "nmnist_detection":
            test = even_subset(test, config.test_samples)
        return train, test, info

    def _kwargs(self, config: TrainConfig, cls: type, set_here: dict[str, str]) -> dict[str, Any]:
        given = dict(config.dataset_kwargs)
        accepted = {
            name
            for klass in cls.__mro__
            if "__init__" in vars(klass) and klass is not object
            for name in list(inspect.signature(vars(klass)["__init__"]).parameters)[1:]
        }
        for key in given:
            if key in set_here:
                raise ConfigurationError(f"--dataset-kwargs {key}=...: {set_here[key]}, not here")
            if key not in accepted or key in ("args", "kwargs"):
                options = sorted(accepted - set(set_here) - {"args", "kwargs", "self"})
                raise ConfigurationError(
                    f"--dataset-kwargs: {cls.__name__} takes no argument {key!r}; it takes "
                    f"{', '.join(options)}"
                )
        return given

    def _nmnist(self, config: TrainConfig, with_train: bool) -> tuple[Dataset | None, Dataset]:
        from spikeflow.data.datasets.nmnist_detection import NMNISTDetection

        set_here = {
            "root": "set by --data-dir",
            "train": "set by the run (both splits)",
            "num_samples": "set by --train-samples/--test-samples",
            "frames_number": "set by --T",
            "split_by": "set by --split-by",
            "data_type": "set by the run (frames)",
            "download": "set by --download",
            "transform": "Python only (a function)",
        }
        kwargs = self._kwargs(config, NMNISTDetection, set_here)
        seed = kwargs.pop("seed", 0)
        n_train, n_test = NMNIST_DETECTION_SAMPLES
        common = dict(
            frames_number=config.T, split_by=config.split_by, download=config.download, **kwargs
        )
        train = (
            NMNISTDetection(
                config.data_dir,
                True,
                num_samples=config.train_samples or n_train,
                seed=seed,
                **common,
            )
            if with_train
            else None
        )
        test = NMNISTDetection(
            config.data_dir,
            False,
            num_samples=config.test_samples or n_test,
            seed=10_000 + seed,
            **common,
        )
        return train, test

    def _prophesee(self, config: TrainConfig, with_train: bool) -> tuple[Dataset | None, Dataset]:
        from spikeflow.data.datasets.prophesee_detection import Gen1Automotive, OneMpxAutomotive

        cls = Gen1Automotive if self.dataset == "gen1" else OneMpxAutomotive
        set_here = {
            "root": "set by --data-dir",
            "split": "set by the run (train and test)",
            "train": "set by the run",
            "data_type": "set by the run (frames)",
            "frames_number": "set by --T",
            "split_by": "set by --split-by",
            "cache_dir": "set by --cache-dir",
            "download": "not downloadable",
            "transform": "Python only (a function)",
            "event_transform": "Python only (a function)",
            "target_transform": "Python only (a function)",
        }
        if config.download:
            raise ConfigurationError(
                f"--download: {cls.__name__} cannot be downloaded automatically (its host "
                f"needs a form); see help(spikeflow.data.datasets.prophesee_detection)"
            )
        kwargs = self._kwargs(config, cls, set_here)
        common = dict(
            data_type="frame",
            frames_number=config.T,
            split_by=config.split_by,
            cache_dir=config.cache_dir,
            **kwargs,
        )
        train = cls(config.data_dir, "train", **common) if with_train else None
        return train, cls(config.data_dir, "test", **common)

    # -- model and loss ---------------------------------------------------------------

    def build_model(self, config: TrainConfig, info: DataInfo) -> nn.Module:
        """:func:`~spikeflow.detection.spiking_detector` (or, for ``--model tiny_yolov3``,
        :func:`~spikeflow.models.tiny_yolov3.tiny_yolov3`) for the dataset's classes and
        polarities, with ``--model-kwargs``, ``--neuron`` and ``--neuron-kwargs``.

        Raises:
            ConfigurationError: an argument the builder does not take, or a bad value.
        """
        from spikeflow.detection import spiking_detector
        from spikeflow.models.tiny_yolov3 import tiny_yolov3

        builder = tiny_yolov3 if config.model == "tiny_yolov3" else spiking_detector
        name = builder.__name__
        kwargs = dict(config.model_kwargs)
        kwargs.setdefault("num_classes", info.num_classes)
        kwargs.setdefault("in_channels", info.in_channels)
        if config.neuron is not None:
            kwargs.setdefault("neuron", config.neuron)
        if config.neuron_kwargs:
            kwargs.setdefault("neuron_kwargs", dict(config.neuron_kwargs))
        accepted = set(inspect.signature(builder).parameters)
        unknown = sorted(set(kwargs) - accepted)
        if unknown:
            raise ConfigurationError(
                f"--model-kwargs: {name} takes no argument {unknown}; it takes "
                f"{', '.join(sorted(accepted))}"
            )
        if kwargs["num_classes"] < info.num_classes:
            raise ConfigurationError(
                f"model_kwargs num_classes ({kwargs['num_classes']}) is fewer than the "
                f"{info.num_classes} classes of dataset {config.dataset}"
            )
        try:
            return builder(**kwargs)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(
                f"{name} cannot be built with model_kwargs {config.model_kwargs}: {exc}"
            ) from exc

    def make_loss(
        self, config: TrainConfig, model: nn.Module, sync_processes: bool = False
    ) -> nn.Module:
        """The detector's loss (``model.criterion(**loss_kwargs)``: DetectionLoss on its
        stride(s)), with ``--loss-kwargs``; ``sync_processes``: the loss divides by the
        global batch's counts (the trainer's under ``torchrun``, where DDP averages the
        processes' gradients and every process calls the loss once per step).

        Raises:
            ConfigurationError: an argument the loss does not take, or one the run sets.
        """
        for key in ("sync_processes", "process_group"):
            if key in config.loss_kwargs:
                raise ConfigurationError(
                    f"--loss-kwargs {key}=...: set by the run (the loss sums its counts "
                    "over the processes under torchrun, where DDP trains), not here"
                )
        try:
            return model.criterion(**config.loss_kwargs, sync_processes=sync_processes)
        except TypeError as exc:
            takes = (
                "lambda_coord, lambda_obj, lambda_noobj, lambda_cls, lambda_iou, alpha_iou, "
                "label_smoothing, ignore_iou_threshold, time_reduction, clamp_max"
                if config.loss == "yolo"
                else "center_radius, box_loss, box_weight, obj_weight, cls_weight"
            )
            raise ConfigurationError(
                f"--loss-kwargs {config.loss_kwargs}: the {config.loss} loss takes {takes} ({exc})"
            ) from exc

    # -- evaluation -------------------------------------------------------------------

    @torch.no_grad()
    def evaluate(
        self,
        model: nn.Module,
        dataset: Dataset,
        loss_fn: Callable[..., tuple[Tensor, dict[str, Tensor]]],
        *,
        T: int,
        static: StaticLayout,
        batch_size: int,
        ctx: DistContext,
        amp: str = "off",
        workers: int = 0,
        progress: bool = False,
    ) -> tuple[DetectionSums, dict[str, Any], float, list[LayerStats]]:
        """The loss (and its parts), COCO/VOC metrics
        (:meth:`MeanAveragePrecision.compute`), mean firing rate and per-layer
        statistics of ``model`` (in eval mode) on ``dataset``. Each process runs every
        ``world_size``-th sample; the detections are gathered, so every process gets
        the metrics of the whole split.

        On a Prophesee dataset whose labels are filtered (``filter_labels=True``), the
        detections are filtered by the same sizes (``min_box_diag``, ``min_box_side``)
        before they are scored, as Prophesee's evaluation (and RVT's) filters both: a
        detection of an object too small to be labelled is not a false positive.

        On a camera-image dataset (``coco``, ``bdd100k``), the detections are moved back
        to each image's own pixels (the letterbox undone) and scored against its own
        annotations, crowd regions and annotation areas included, as COCO's evaluation
        (pycocotools) scores a results file."""
        from spikeflow.training.detection_frames import in_image_id_order, original_pixels

        was_training = model.training
        model.eval()
        size_filter = _label_filter(dataset)
        to_original = original_pixels(dataset)
        indices = list(range(ctx.rank, len(dataset), ctx.world_size))  # type: ignore[arg-type]
        loader = DataLoader(
            dataset, batch_size=batch_size, sampler=indices, num_workers=workers, collate_fn=collate
        )
        sums = DetectionSums()
        monitor = SpikeMonitor(model)
        found: list[tuple[list[Detections], list[Any], list[int]]] = []
        done = 0  # samples of ``indices`` read so far
        bar = tqdm(
            total=len(loader),
            desc="test",
            disable=not (progress and ctx.is_main),
            leave=False,
            dynamic_ncols=True,
        )
        try:
            for x, targets in loader:
                x = to_time_major(x.to(ctx.device), T, static)
                targets = [t.to(ctx.device) for t in targets]
                with autocast_context(ctx.device, amp):
                    out = model(x)
                out = _as_float(out)
                size = (int(x.shape[-2]), int(x.shape[-1]))
                loss, parts = detection_loss(loss_fn, out, targets, size)
                sums.add_parts(float(loss), parts, len(targets))
                dets = [_cpu(d) for d in model.decode_output(out, image_size=size)]
                if size_filter is not None:  # Prophesee's protocol: as the labels were
                    dets = [_filter_detections(d, *size_filter) for d in dets]
                truths: list[Any] = [t.cpu() for t in targets]
                batch = indices[done : done + len(targets)]
                if to_original is not None:  # COCO's protocol: the images' own pixels
                    dets, truths = to_original(batch, dets)
                done += len(targets)
                found.append((dets, truths, batch))
                bar.update(1)
            reduce_monitor(monitor, ctx)
            layer_stats, rate = monitor.summary(), monitor.mean_firing_rate()
        finally:
            bar.close()
            monitor.remove()
            model.train(was_training)
        metric = MeanAveragePrecision()
        gathered = [entry for part in ctx.all_gather_object(found) for entry in part]
        if to_original is not None:  # pycocotools ranks tied scores in image-id order
            gathered = in_image_id_order(dataset, gathered)
        for dets, targets, _ in gathered:
            metric.update(dets, targets)
        return sums.reduced(ctx), metric.compute(), rate, layer_stats


def detection_loss(
    loss_fn: Callable[..., tuple[Tensor, dict[str, Tensor]]],
    out: Any,
    targets: Sequence[Tensor],
    image_size: tuple[int, int],
) -> tuple[Tensor, dict[str, Tensor]]:
    """``loss_fn(out, targets)``; a :class:`~spikeflow.detection.YOLOLoss` also gets the
    input's ``image_size`` (``(height, width)`` before the detector padded it to a
    multiple of 32: Gen1's 304x240, not 320x256), to clip the boxes to."""
    from spikeflow.detection.yolo_loss import YOLOLoss

    if isinstance(loss_fn, YOLOLoss):
        return loss_fn(out, targets, image_size=image_size)
    return loss_fn(out, targets)


def _as_float(out: Any) -> Any:
    """The head's output(s) in float32 at least (after autocast)."""
    if isinstance(out, Tensor):
        return out.float()
    return type(out)(o.float() for o in out)


def _label_filter(dataset: Dataset) -> tuple[float, float] | None:
    """``(min_box_diag, min_box_side)`` of a dataset (or a Subset of one) whose labels
    are filtered by size (Prophesee's ``filter_labels``); None for any other."""
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    if not getattr(dataset, "filter_labels", False):
        return None
    return float(dataset.min_box_diag), float(dataset.min_box_side)  # type: ignore[attr-defined]


def _filter_detections(d: Detections, min_box_diag: float, min_box_side: float) -> Detections:
    """The detections of ``d`` that Prophesee's ``filter_boxes`` keeps: width and height
    at least ``min_box_side``, diagonal at least ``min_box_diag`` (pixels)."""
    w = d.boxes[:, 2] - d.boxes[:, 0]
    h = d.boxes[:, 3] - d.boxes[:, 1]
    keep = (w * w + h * h >= min_box_diag**2) & (w >= min_box_side) & (h >= min_box_side)
    return Detections(d.boxes[keep], d.scores[keep], d.classes[keep])


def _cpu(d: Detections) -> Detections:
    return Detections(d.boxes.cpu(), d.scores.cpu(), d.classes.cpu())
