"""``spikeflow eval`` of a detection run (:mod:`spikeflow.training.detection_task`):
COCO mAP and the loss on the test split, and with ``--operations`` / ``--neurobench``
the synaptic operations, energy estimates and NeuroBench's workload metrics of the
detector's forward passes (the decoding of boxes and their non-maximum suppression,
post-processing on the outputs, are not synaptic work and are not counted)."""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import replace
from typing import Any

from spikeflow.energy import NeuroBenchCounter, OperationCounter
from spikeflow.errors import ConfigurationError
from spikeflow.training.config import TrainConfig
from spikeflow.training.data import even_subset
from spikeflow.training.detection_task import COCO_KEYS, DetectionTask
from spikeflow.training.distributed import DistContext
from spikeflow.training.eval_counts import format_counts, neurobench_fields, operations_fields

__all__ = ["evaluate_detection_checkpoint", "format_detection_evaluation", "refuse_early_exit"]


def refuse_early_exit() -> None:
    """``--early-exit`` on a detection run: refused, with the reason.

    Raises:
        ConfigurationError: always.
    """
    raise ConfigurationError(
        "--early-exit: not for detection runs: its criteria (confidence, entropy) read "
        "one class distribution per sample, the softmax of the time-mean output; a "
        "detector outputs boxes, objectness and classes at every cell of its grids, so "
        "there is no one score per sample to stop a sample's time steps on"
    )


def evaluate_detection_checkpoint(
    path: Any,
    payload: dict[str, Any],
    config: TrainConfig,
    *,
    count: int | None,
    chosen_by: str,
    device: str = "auto",
    batch_size: int | None = None,
    workers: int = 0,
    progress: bool = False,
    operations: bool = False,
    spike_counts: bool = False,
    neurobench: bool = False,
) -> dict[str, Any]:
    """``spikeflow eval`` of a detection run's checkpoint ``path`` (its ``payload`` and
    saved ``config``): the model on ``count`` samples of the test split (None: all the
    run tested). Returns what :func:`~spikeflow.training.evaluation.evaluate_checkpoint`
    returns for a classification run, with ``test_loss`` and its parts (``test_box``,
    ``test_obj``, ``test_cls``), the 12 COCO numbers (:data:`COCO_KEYS`), ``map_voc50``
    and ``map_50_per_class`` in place of the accuracy; with ``operations``
    (``spike_counts``) and ``neurobench``, ``operations`` and ``neurobench`` as for a
    classification run, counted over the detector's forward passes (NeuroBench's
    ``ClassificationAccuracy`` left out: the mAP is the detection score)."""
    from spikeflow.models.common import reading_saved_run
    from spikeflow.training.checkpoint import load_weights
    from spikeflow.training.config import resolve
    from spikeflow.training.distributed import pick_device
    from spikeflow.training.evaluation import run_fields

    config = resolve(config)
    task = DetectionTask(config.dataset)
    # The whole split, then ``count`` of it (the run's test_samples, or the argument's):
    # a Prophesee run's test_samples chose a subset of the split, which "all" (or a
    # larger count) must not stop at. NMNISTDetection's test_samples is how many
    # canvases its test split holds.
    whole = config if task.dataset == "nmnist_detection" else replace(config, test_samples=None)
    _, full, info = task.build_datasets(whole, with_train=False)
    test_set = even_subset(full, count)
    ctx = DistContext(device=pick_device(device))
    with reading_saved_run():
        model = task.build_model(config, info).to(ctx.device)
    load_weights(model, payload, path)
    counter = OperationCounter(model, spike_counts) if operations else contextlib.nullcontext()
    nb = NeuroBenchCounter(model) if neurobench else contextlib.nullcontext()
    with counter, nb:
        sums, metrics, rate, layers = task.evaluate(
            model,
            test_set,
            task.make_loss(config, model),
            T=config.T,  # type: ignore[arg-type]
            static=info.static,  # camera images (coco, bdd100k): repeated over T
            batch_size=batch_size or config.batch_size,  # type: ignore[arg-type]
            ctx=ctx,
            amp=config.amp,
            workers=workers,
            progress=progress,
        )
    means = sums.means()
    extra: dict[str, Any] = {}
    if operations:
        extra["operations"] = operations_fields(counter.report(int(sums.count)), spike_counts)  # type: ignore[union-attr]
    if neurobench:
        extra.update(neurobench_fields(nb.results()))  # type: ignore[union-attr]
    return {
        "checkpoint": str(path),
        **run_fields(config, payload, sums.count, full, chosen_by),
        "test_loss": means["loss"],
        "test_box": means["box"],
        "test_obj": means["obj"],
        "test_cls": means["cls"],
        **{key: float(metrics[key]) for key in COCO_KEYS},
        "map_voc50": float(metrics["map_voc50"]),
        "map_50_per_class": {int(k): float(v) for k, v in metrics["map_50_per_class"].items()},
        "test_rate": rate,
        "layers": [dataclasses.asdict(s) for s in layers],
        **extra,
    }


#: How ``spikeflow eval`` labels the 12 COCO numbers (pycocotools' summary lines).
_COCO_LABELS = (
    "AP  @[IoU=0.50:0.95 | area=   all | maxDets=100]",
    "AP  @[IoU=0.50      | area=   all | maxDets=100]",
    "AP  @[IoU=0.75      | area=   all | maxDets=100]",
    "AP  @[IoU=0.50:0.95 | area= small | maxDets=100]",
    "AP  @[IoU=0.50:0.95 | area=medium | maxDets=100]",
    "AP  @[IoU=0.50:0.95 | area= large | maxDets=100]",
    "AR  @[IoU=0.50:0.95 | area=   all | maxDets=  1]",
    "AR  @[IoU=0.50:0.95 | area=   all | maxDets= 10]",
    "AR  @[IoU=0.50:0.95 | area=   all | maxDets=100]",
    "AR  @[IoU=0.50:0.95 | area= small | maxDets=100]",
    "AR  @[IoU=0.50:0.95 | area=medium | maxDets=100]",
    "AR  @[IoU=0.50:0.95 | area= large | maxDets=100]",
)


def format_detection_evaluation(result: dict[str, Any]) -> str:
    """The report ``spikeflow eval`` prints for a detection run: the 12 COCO numbers
    (as pycocotools' ``summarize()`` labels them; ``nan`` where pycocotools prints -1),
    VOC AP@0.5, the loss and its parts, the firing rate."""
    lines = [
        f"{result['checkpoint']}: {result['model']} (T={result['T']}) after epoch "
        f"{result['epoch']} of {result['epochs']}, {result['dataset']} test split",
        f"  {result['samples']} of the {result['split_samples']} test samples",
        f"  loss {result['test_loss']:.4f} (box {result['test_box']:.4f}, obj "
        f"{result['test_obj']:.4f}, cls {result['test_cls']:.4f})   mean firing rate "
        f"{result['test_rate']:.4f} spikes/neuron/step",
        "",
    ]
    for key, label in zip(COCO_KEYS, _COCO_LABELS, strict=True):
        lines.append(
            f"  Average {'Precision' if key.startswith('map') else 'Recall   '}  "
            f"{label} = {result[key]:.4f}   ({key})"
        )
    lines.append(f"  VOC AP@0.5 = {result['map_voc50']:.4f}")
    lines += format_counts(result)
    lines.append(f"test COCO mAP: {result['map']:.4f}, mAP@0.5 {result['map_50']:.4f}")
    return "\n".join(lines)
