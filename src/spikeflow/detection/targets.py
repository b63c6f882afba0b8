"""The detection target contract and the DataLoader collate function.

Every detection dataset in spikeflow (the composed N-MNIST canvases, the Gen1 and 1Mpx
automotive readers) yields ``(sample, target)`` where ``target`` is a float32 tensor
``[K, 5]``, one row per object: ``(class_id, x_min, y_min, x_max, y_max)`` in pixels of
the sensor (continuous coordinates: a box over pixel columns 3..5 has ``x_min = 3``,
``x_max = 6``). ``K`` varies from sample to sample and may be 0 (``[0, 5]``). Batch such
samples with :func:`collate`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from spikeflow._processes import check_process_group, processes_to_sync
from spikeflow.detection.boxes import check_boxes
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError

__all__ = ["check_target", "collate", "global_count_share", "pad_targets", "split_target"]


def check_target(target: Tensor, name: str = "target") -> Tensor:
    """Check one sample's target against the contract; returns it unchanged.

    Raises:
        DTypeError: not a float32 tensor.
        ShapeError: not ``[K, 5]``.
        ConfigurationError: a class id that is negative or not a whole number, or an
            inverted box (``x_max < x_min``, ``y_max < y_min``); the message names the row.
    """
    if not isinstance(target, Tensor):
        raise DTypeError(f"{name} must be a float32 torch.Tensor, got {type(target).__name__}")
    if target.dtype != torch.float32:
        raise DTypeError(f"{name} must be float32 [K, 5] rows (class_id, x_min, y_min, "
                         f"x_max, y_max), got dtype {target.dtype}")  # fmt: skip
    if target.dim() != 2 or target.shape[1] != 5:
        raise ShapeError(
            f"{name} must have shape [K, 5], rows (class_id, x_min, y_min, x_max, y_max); "
            f"got {list(target.shape)}"
        )
    cls = target[:, 0]
    bad = (cls < 0) | (cls != cls.round())
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise ConfigurationError(
            f"{name}[{i}] has class_id {cls[i].item()!r}; class ids are whole numbers >= 0"
        )
    check_boxes(target[:, 1:], f"{name} boxes (columns 1:5)")
    return target


def split_target(target: Tensor, name: str = "target") -> tuple[Tensor, Tensor]:
    """``(boxes [K, 4] xyxy, classes [K] int64)`` of a checked target."""
    check_target(target, name)
    return target[:, 1:], target[:, 0].long()


def _check_layout(target: Tensor, name: str) -> None:
    """The type, dtype and shape checks of :func:`check_target` (no tensor operation)."""
    if not isinstance(target, Tensor):
        raise DTypeError(f"{name} must be a float32 torch.Tensor, got {type(target).__name__}")
    if target.dtype != torch.float32 or target.dim() != 2 or target.shape[1] != 5:
        check_target(target, name)


def pad_targets(targets: Sequence[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """A batch of targets as padded tensors: ``boxes [B, K_max, 4]`` (xyxy),
    ``classes [B, K_max]`` int64 and ``valid [B, K_max]`` bool (False on padding rows,
    whose boxes are 0 and classes -1; ``K_max >= 1`` even when every target is empty).
    Every target is checked (:func:`check_target`).

    Raises:
        ConfigurationError: an empty sequence; others as :func:`check_target`.
    """
    if len(targets) == 0:
        raise ConfigurationError("pad_targets got no targets")
    for i, target in enumerate(targets):
        _check_layout(target, f"targets[{i}]")
    counts = [t.shape[0] for t in targets]
    rows = torch.cat(list(targets))
    try:
        check_target(rows)  # one pass over the whole batch ...
    except ConfigurationError:
        for i, target in enumerate(targets):  # ... and, on failure, the culprit's name
            check_target(target, f"targets[{i}]")
        raise
    b, k = len(targets), max(*counts, 1)
    device = rows.device
    valid = torch.arange(k, device=device)[None, :] < torch.tensor(counts, device=device)[:, None]
    boxes = rows.new_zeros(b, k, 4)
    classes = torch.full((b, k), -1, dtype=torch.long, device=device)
    boxes[valid] = rows[:, 1:]
    classes[valid] = rows[:, 0].long()
    return boxes, classes, valid


def collate(
    batch: Sequence[tuple[Any, Tensor]], time_major: bool = False
) -> tuple[Any, list[Tensor]]:
    """DataLoader ``collate_fn`` for ``(sample, target)`` pairs with a variable number of
    objects: ``(samples, targets)``.

    ``samples`` are stacked to ``[B, ...]`` when they are tensors of one shape (frames
    ``[T, C, H, W]`` give ``[B, T, C, H, W]``, or ``[T, B, C, H, W]`` with
    ``time_major=True``); anything else (event recordings) stays a list. ``targets`` is
    the list of the ``B`` targets ``[K_i, 5]``, each checked against the contract.

    Raises:
        ConfigurationError: an empty batch, or an item that is not a (sample, target) pair.
        ShapeError: frames of different shapes; others as :func:`check_target`.
    """
    if len(batch) == 0:
        raise ConfigurationError("collate got an empty batch")
    samples, targets = [], []
    for i, item in enumerate(batch):
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ConfigurationError(
                f"collate: batch[{i}] must be a (sample, target) pair, got {type(item).__name__}"
            )
        samples.append(item[0])
        targets.append(check_target(item[1], f"batch[{i}] target"))
    if all(isinstance(s, Tensor) for s in samples):
        shapes = {tuple(s.shape) for s in samples}
        if len(shapes) != 1:
            raise ShapeError(f"collate: samples of different shapes {sorted(shapes)}")
        stacked = torch.stack(samples)
        return (stacked.transpose(0, 1).contiguous() if time_major else stacked), targets
    return samples, targets


def global_count_share(
    counts: Tensor,
    minimum: float = 0.0,
    sync_processes: bool = False,
    process_group: dist.ProcessGroup | None = None,
) -> Tensor:
    """What a loss divides its sums by: ``counts`` (the positives, or whatever a loss
    averages over, of this process's batch) raised to at least ``minimum``; with
    ``sync_processes`` and gradients on, summed over the processes of ``process_group``
    (None: the default group) first, raised to ``minimum`` and divided by their number.

    DDP averages the processes' gradients, so ``Σ_local / (N_global / W)`` gives the
    gradient of ``Σ_global / N_global``: one process's on the concatenated batch (FCOS
    and DETR all-reduce their number of positives the same way; YOLOX keeps its own). The
    all-reduce is asked for explicitly (the detection trainer asks under ``torchrun``),
    never implied by an initialised process group: every process of the group must then
    call the loss as often, with gradients on. Without gradients (an evaluation, whose
    shards may differ in their number of batches) nothing is communicated.

    Raises:
        DTypeError: ``counts`` not a floating-point tensor.
        ConfigurationError: ``process_group`` not a process group.
    """
    if not isinstance(counts, Tensor) or not counts.is_floating_point():
        what = counts.dtype if isinstance(counts, Tensor) else type(counts).__name__
        raise DTypeError(f"counts must be a floating-point tensor, got {what}")
    group = check_process_group("global_count_share", process_group)
    sync, group = processes_to_sync(bool(sync_processes) and torch.is_grad_enabled(), group)
    if not sync:
        return counts.clamp(min=minimum)
    world = dist.get_world_size(group)
    # NCCL reduces tensors on the GPU; gloo (and others here) on the CPU
    device = counts.device if dist.get_backend(group) == "nccl" else torch.device("cpu")
    total = counts.detach().to(device, torch.float64, copy=True)
    dist.all_reduce(total, group=group)
    return (total.clamp(min=minimum) / world).to(counts.device, counts.dtype)
