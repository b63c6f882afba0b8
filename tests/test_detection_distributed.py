"""Detection losses under data-parallel training: 2 gloo CPU processes, each on half of
a batch whose halves hold different numbers of positives, wrapped in DDP, take the
gradient of one process on the concatenated batch (float64), for the anchor-free
``DetectionLoss`` and the anchor-based ``YOLOLoss``. Without gradients (an evaluation,
whose shards may hold different numbers of batches) a loss stays per process and
communicates nothing."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.distributed as dist
from torch import nn

from spikeflow.detection import DetectionLoss, YOLOLoss
from spikeflow.errors import ConfigurationError
from test_train_distributed import _join, _spawn

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is absent")

NUM_CLASSES, IN_CHANNELS, T = 3, 4, 2
STRIDES = (16.0, 32.0)
ANCHORS = [[[0.1, 0.15], [0.3, 0.25]], [[0.45, 0.5], [0.8, 0.7]]]
IMAGE = (64, 96)  # the padded image both YOLO grids cover: 4x6 and 2x3 cells


def _box(cls: float, x0: float, y0: float, x1: float, y1: float) -> list[float]:
    return [cls, x0, y0, x1, y1]


def _targets() -> list[torch.Tensor]:
    """4 images: the first process's two hold 5 objects, the second's 1 (and none)."""
    rows = [
        [_box(0, 2, 3, 30, 25), _box(1, 40, 10, 90, 60), _box(2, 50, 30, 70, 50)],
        [_box(2, 10, 12, 40, 44), _box(0, 60, 0, 95, 40)],
        [_box(1, 20, 20, 52, 60)],
        [],
    ]
    return [torch.tensor(r, dtype=torch.float32).reshape(-1, 5) for r in rows]


class _YOLOOutputs(nn.Module):
    """A 1x1 convolution per scale: ``[T, B, C, H_l, W_l]`` -> ``[T, B, A·(5 + C), ...]``."""

    def __init__(self) -> None:
        super().__init__()
        out = 2 * (5 + NUM_CLASSES)
        self.convs = nn.ModuleList(nn.Conv2d(IN_CHANNELS, out, 1) for _ in STRIDES)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [c(x.flatten(0, 1)).unflatten(0, x.shape[:2]) for c, x in zip(self.convs, xs)]


def _setup(kind: str, sync: bool = False) -> tuple[nn.Module, nn.Module, list, list[torch.Tensor]]:
    """The model, its loss (``sync_processes=sync``), its inputs for the whole batch, the
    targets (all seeded)."""
    gen = torch.Generator().manual_seed(7)
    if kind == "anchor_free":
        torch.manual_seed(1)
        model = nn.Conv2d(IN_CHANNELS, 5 + NUM_CLASSES, 3, padding=1).double()
        x = torch.randn(4, IN_CHANNELS, 8, 12, generator=gen, dtype=torch.float64)
        return model, DetectionLoss(NUM_CLASSES, stride=8.0, sync_processes=sync), x, _targets()
    torch.manual_seed(1)
    model = _YOLOOutputs().double()
    h, w = IMAGE
    xs = [
        torch.randn(T, 4, IN_CHANNELS, int(h // s), int(w // s), generator=gen).double()
        for s in STRIDES
    ]
    return model, YOLOLoss(NUM_CLASSES, STRIDES, ANCHORS, sync_processes=sync), xs, _targets()


def _part(inputs, kind: str, rows: slice):
    return inputs[rows] if kind == "anchor_free" else [x[:, rows] for x in inputs]


def _loss(model: nn.Module, loss_fn: nn.Module, inputs, targets, kind: str) -> torch.Tensor:
    out = model(inputs)
    if kind == "anchor_free":
        return loss_fn(out, targets)[0]
    return loss_fn(out, targets, image_size=(60, 90))[0]


def _worker(rank: int, world_size: int, port: int, output: str, kind: str) -> None:
    _join(rank, world_size, port)
    dist.init_process_group("gloo")
    try:
        model, loss_fn, inputs, targets = _setup(kind, sync=True)
        if kind == "yolo":  # an explicit group (here all the processes) is summed over
            loss_fn.process_group = dist.new_group([0, 1])
        rows = slice(2 * rank, 2 * rank + 2)
        with torch.no_grad():  # no collective: rank 0 evaluates twice, rank 1 once
            for _ in range(2 - rank):
                evaluated = _loss(model, loss_fn, _part(inputs, kind, rows), targets[rows], kind)
        ddp = nn.parallel.DistributedDataParallel(model)
        _loss(ddp, loss_fn, _part(inputs, kind, rows), targets[rows], kind).backward()
        grads = [p.grad for p in model.parameters()]
        torch.save({"grads": grads, "evaluated": evaluated}, f"{output}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("kind", ["anchor_free", "yolo"])
def test_two_gloo_processes_take_the_gradient_of_one_process_on_the_whole_batch(tmp_path, kind):
    _spawn(_worker, str(tmp_path), kind, limit_s=120)
    model, loss_fn, inputs, targets = _setup(kind)
    _loss(model, loss_fn, inputs, targets, kind).backward()
    expected = [p.grad for p in model.parameters()]
    for rank in range(2):
        saved = torch.load(tmp_path / f"rank{rank}.pt")
        for got, want in zip(saved["grads"], expected, strict=True):
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
        # evaluation: the loss of the process's own half, normalised there
        rows = slice(2 * rank, 2 * rank + 2)
        with torch.no_grad():
            local = _loss(model, loss_fn, _part(inputs, kind, rows), targets[rows], kind)
        torch.testing.assert_close(saved["evaluated"], local, rtol=1e-12, atol=0)


def test_the_halves_differ_in_positives_so_per_process_means_would_not_do():
    """The check above has teeth: the halves' positives (and the YOLO negatives) differ,
    so per-process normalisation would give another gradient."""
    for kind in ("anchor_free", "yolo"):
        model, loss_fn, inputs, targets = _setup(kind)
        outs = [model(_part(inputs, kind, slice(r, r + 2))) for r in (0, 2)]
        counts = [
            float(
                (
                    loss_fn(o, targets[r : r + 2])
                    if kind == "anchor_free"
                    else loss_fn(o, targets[r : r + 2], image_size=(60, 90))
                )[1]["positives"]
            )
            for o, r in zip(outs, (0, 2))
        ]
        assert counts[0] != counts[1] and min(counts) > 0, (kind, counts)


def _independent_worker(rank: int, world_size: int, port: int, output: str) -> None:
    """A process group is initialised, but the losses are the default ones (no
    sync_processes): process 0 calls each twice with gradients on, process 1 never. An
    implicit all-reduce would wait for process 1 for ever."""
    _join(rank, world_size, port)
    dist.init_process_group("gloo")
    try:
        if rank == 0:
            values = {}
            for kind in ("anchor_free", "yolo"):
                model, loss_fn, inputs, targets = _setup(kind)
                for _ in range(2):
                    values[kind] = _loss(model, loss_fn, inputs, targets, kind).detach()
            torch.save(values, f"{output}/rank0.pt")
    finally:
        dist.destroy_process_group()


def test_an_initialised_group_alone_makes_no_loss_communicate(tmp_path):
    _spawn(_independent_worker, str(tmp_path), limit_s=90)
    saved = torch.load(tmp_path / "rank0.pt")
    for kind in ("anchor_free", "yolo"):
        model, loss_fn, inputs, targets = _setup(kind)
        want = _loss(model, loss_fn, inputs, targets, kind).detach()
        torch.testing.assert_close(saved[kind], want, rtol=1e-12, atol=0)


def test_sync_processes_and_process_group_are_checked():
    from spikeflow.detection import MultiScaleDetectionLoss
    from spikeflow.detection.targets import global_count_share

    for make in (
        lambda **kw: DetectionLoss(NUM_CLASSES, 8.0, **kw),
        lambda **kw: MultiScaleDetectionLoss(NUM_CLASSES, [8, 16], **kw),
        lambda **kw: YOLOLoss(NUM_CLASSES, STRIDES, ANCHORS, **kw),
    ):
        assert make().sync_processes is False
        with pytest.raises(ConfigurationError, match="sync_processes must be True or False"):
            make(sync_processes="true")
        with pytest.raises(ConfigurationError, match="process_group must be a torch"):
            make(process_group="world")
    # asked for, but no group initialised (one process): its own counts
    counts = torch.tensor([3.0, 0.0])
    assert global_count_share(counts, 1.0, sync_processes=True).tolist() == [3.0, 1.0]


def _trainer_worker(rank: int, world_size: int, port: int, output: str, data: str) -> None:
    """A tiny YOLO run under torchrun: 10 training canvases (5 per process, batches of
    2, 2 and 1) and 5 test canvases (3 and 2: 2 and 1 batches)."""
    from spikeflow.training import TrainConfig
    from spikeflow.training.detection_trainer import trainer_for

    _join(rank, world_size, port)
    config = TrainConfig(
        dataset="nmnist_detection", data_dir=data, train_samples=10, test_samples=5,
        batch_size=4, T=2, epochs=1, model="tiny_yolov3",
        model_kwargs={"width_mult": 0.125}, dataset_kwargs={"canvas_size": 72, "digits": [1, 2]},
        device="cpu", progress=False, output_dir=f"{output}/run",
    )  # fmt: skip
    trainer = trainer_for(config, log=None)
    trainer.fit()
    torch.save({"sync": trainer.loss_fn.sync_processes}, f"{output}/rank{rank}.pt")


def test_the_detection_trainer_asks_for_the_global_counts_under_torchrun(tmp_path):
    """Uneven last batches and evaluation shards: no process waits for another in the
    loss, and both losses sum their counts; a one-process run's loss does not."""
    from conftest import require_shared_data
    from spikeflow.models.tiny_yolov3 import tiny_yolov3
    from spikeflow.training import TrainConfig
    from spikeflow.training.detection_task import DetectionTask

    data = str(require_shared_data("nmnist-small"))
    _spawn(_trainer_worker, str(tmp_path), data, limit_s=240)
    assert [torch.load(tmp_path / f"rank{r}.pt")["sync"] for r in range(2)] == [True, True]
    assert (tmp_path / "run" / "last.pt").exists()
    # spikeflow eval and one-process runs: per process; the flag is the run's, not an option
    task, model = DetectionTask("nmnist_detection"), tiny_yolov3(10, 2, width_mult=0.125)
    config = task.resolve(TrainConfig(dataset="nmnist_detection", model="tiny_yolov3"))
    assert task.make_loss(config, model).sync_processes is False
    assert task.make_loss(config, model, sync_processes=True).sync_processes is True
    for key in ("sync_processes", "process_group"):
        bad = dataclasses.replace(config, loss_kwargs={key: True})
        with pytest.raises(ConfigurationError, match=f"{key}=.*set by the run"):
            task.make_loss(bad, model)
