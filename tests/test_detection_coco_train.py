"""``spikeflow train`` / ``eval`` on the camera-image detection datasets (``--dataset
coco``, ``bdd100k``) built in tmp_path (tests/coco_layouts.py): a 1-epoch tiny YOLOv3 run
and its evaluation, the COCO protocol of the evaluation (ground truth fed back as
detections scores mAP 1; detections scored as pycocotools scores a results file on the
official json), and the options such a run refuses."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Subset

from coco_layouts import write_bdd, write_coco
from spikeflow.cli import main
from spikeflow.detection import Detections, YOLOLoss
from spikeflow.training.config import TrainConfig
from spikeflow.training.detection_task import COCO_KEYS, DetectionTask
from spikeflow.training.distributed import DistContext
from spikeflow.training.metric_logs import read_csv


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory):
    return write_coco(tmp_path_factory.mktemp("coco"))


def test_a_tiny_yolov3_run_on_coco_trains_and_is_evaluated(coco_root, tmp_path, monkeypatch):
    shapes, sizes = [], set()
    forward = YOLOLoss.forward

    def spy(self, outputs, targets, image_size=None):
        sizes.add(image_size)
        return forward(self, outputs, targets, image_size)

    monkeypatch.setattr(YOLOLoss, "forward", spy)
    from spikeflow.models.tiny_yolov3 import TinyYOLOv3

    model_forward = TinyYOLOv3.forward

    def seen(self, x):
        shapes.append(tuple(x.shape))
        return model_forward(self, x)

    monkeypatch.setattr(TinyYOLOv3, "forward", seen)
    out = tmp_path / "run"
    args = ["train", "--dataset", "coco", "--data-dir", str(coco_root), "--output-dir", str(out),
            "--model", "tiny_yolov3", "--model-kwargs", "width_mult=0.125", "--dataset-kwargs",
            "image_size=[64,96]", "-T", "2", "--epochs", "1", "--batch-size", "2",
            "--no-progress", "--threads", "1"]  # fmt: skip
    assert main(args) == 0
    # each image repeated over the 2 steps: [T, B, 3, H, W]; the loss clips to 64x96
    assert shapes and all(s[0] == 2 and s[2:] == (3, 64, 96) for s in shapes)
    assert sizes == {(64, 96)}
    (row,) = read_csv(out / "metrics.csv")
    assert 0 <= float(row["test_map"]) <= float(row["test_map_50"]) <= 1
    report = tmp_path / "eval.json"
    assert main(["eval", "--checkpoint", str(out), "--no-progress", "--json", str(report)]) == 0
    result = json.loads(report.read_text())
    assert result["samples"] == 4 and result["dataset"] == "coco"
    assert result["map"] == pytest.approx(float(row["test_map"]), abs=1e-6)
    assert result["test_loss"] == pytest.approx(float(row["test_loss"]), rel=1e-5)


class _Oracle(nn.Module):
    """A "detector" that answers each image with the detections given for it (found by
    its pixels among the dataset's images), in the resized image's pixels."""

    def __init__(self, dataset, answers):
        super().__init__()
        self.images = torch.stack([dataset[i][0] for i in range(len(dataset))])
        self.answers = answers
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return x[0]

    def decode_output(self, out, image_size):
        found = []
        for image in out:
            j = int((self.images - image).abs().flatten(1).sum(1).argmin())
            found.append(self.answers[j])
        return found


def _no_loss(out, targets):
    zero = torch.zeros(())
    return zero, {"box": zero, "obj": zero, "cls": zero, "positives": zero}


def _evaluate(task, dataset, model, batch_size=3):
    _, metrics, _, _ = task.evaluate(model, dataset, _no_loss, T=1, static=True,
                                     batch_size=batch_size, ctx=DistContext())  # fmt: skip
    return metrics


def _task_and_split(root, **kwargs):
    task = DetectionTask("coco")
    config = task.resolve(TrainConfig(dataset="coco", data_dir=str(root), dataset_kwargs=kwargs))
    _, test, info = task.build_datasets(config, with_train=False)
    return task, test, info


def test_ground_truth_fed_back_as_detections_scores_map_one(coco_root):
    task, test, info = _task_and_split(coco_root, image_size=[48, 64])
    assert (info.num_classes, info.in_channels, info.input_size, info.static) == (
        3,
        3,
        (48, 64),
        True,
    )
    answers = [
        Detections(t[:, 1:], torch.ones(len(t)), t[:, 0].long())
        for t in (test.target(i) for i in range(len(test)))
    ]
    # a Subset in another order, 4 samples in batches of 3: each batch's images are found
    # by their indices; a detection inside the crowd region of image 285 is ignored
    order = [2, 0, 3, 1]
    crowd = next(i for i, r in enumerate(test.records) if r.crowd.any())
    sx, sy, left, top = test.geometry(crowd)
    inside = torch.tensor([[10 * sx + left, 15 * sy + top, 30 * sx + left, 35 * sy + top]])
    a = answers[crowd]
    answers[crowd] = Detections(
        torch.cat([a.boxes, inside]),
        torch.cat([a.scores, torch.tensor([2.0])]),  # ranked first
        torch.cat([a.classes, torch.tensor([1])]),
    )
    model = _Oracle(test, answers)
    metrics = _evaluate(task, Subset(test, order), model)
    assert metrics["map"] == pytest.approx(1.0) and metrics["mar_100"] == pytest.approx(1.0)
    assert metrics["map_voc50"] == pytest.approx(1.0)
    # the letterbox's pixels scored against the images' own would miss
    shifted = [Detections(d.boxes + 3.0, d.scores, d.classes) for d in answers]
    assert _evaluate(task, test, _Oracle(test, shifted))["map"] < 0.9


def test_tied_scores_are_ranked_in_image_id_order_as_pycocotools_ranks_them(tmp_path):
    # the json lists image 200 before image 100 (val2017's images are not in id order);
    # one object each (person, class 1); equal scores: a hit on image 100, a miss on 200.
    # COCO's accumulate ranks ties in sorted image-id order: the hit first, precision 1
    # up to recall 1/2, AP 51/101 at every IoU; in the json's order the miss comes first
    # (precision 1/2: AP 25.5/101)
    images = {200: ("b.jpg", 40, 40), 100: ("a.jpg", 40, 40)}
    anns = [{"id": k, "image_id": image_id, "category_id": 1, "bbox": [5, 5, 20, 20],
             "area": 400.0, "iscrowd": 0} for k, image_id in ((1, 100), (2, 200))]  # fmt: skip
    root = write_coco(tmp_path / "c", splits=("val",), annotations=anns, images=images)
    task, test, _ = _task_and_split(root, image_size=[32, 32])
    assert [r.image_id for r in test.records] == [200, 100]
    score = torch.tensor([0.5])
    answers = [
        Detections(torch.tensor([[0.0, 0.0, 2.0, 2.0]]), score, torch.tensor([1])),  # 200
        Detections(test.target(1)[:, 1:], score, torch.tensor([1])),  # 100: its object
    ]
    for batch_size in (1, 2):
        metrics = _evaluate(task, test, _Oracle(test, answers), batch_size=batch_size)
        assert metrics["map"] == pytest.approx(51 / 101) and metrics["mar_100"] == 0.5


def _pycocotools_on_the_json(root, test, answers):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    results = []
    for i, d in enumerate(answers):
        r = test.records[i]
        boxes = test.to_original(i, d.boxes.double())
        for (x0, y0, x1, y1), s, c in zip(boxes.tolist(), d.scores.tolist(), d.classes.tolist()):
            results.append({"image_id": r.image_id, "category_id": test.category_ids[c],
                            "bbox": [x0, y0, x1 - x0, y1 - y0], "score": s})  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(root / "annotations" / "instances_val2017.json"))
        evaluation = COCOeval(gt, gt.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return np.where(evaluation.stats > -1, evaluation.stats, np.nan)


@pytest.mark.parametrize("seed", [0, 1])
def test_the_evaluation_equals_pycocotools_on_the_official_json(coco_root, seed):
    pytest.importorskip("pycocotools", reason="pycocotools (the COCO reference) is not installed")
    task, test, _ = _task_and_split(coco_root, image_size=[48, 64])
    rng = np.random.default_rng(seed)
    answers = []
    for i in range(len(test)):
        t = test.target(i)
        extra = torch.tensor(rng.uniform(0, 30, (2, 2)), dtype=torch.float32)
        boxes = torch.cat([t[:, 1:] + torch.tensor(rng.normal(0, 1.5, (len(t), 4)),
                                                   dtype=torch.float32),
                           torch.cat([extra, extra + 12], 1)])  # fmt: skip
        boxes = torch.cat([boxes[:, :2], torch.maximum(boxes[:, 2:], boxes[:, :2] + 1)], 1)
        classes = torch.cat([t[:, 0].long(), torch.tensor(rng.integers(0, 3, 2))])
        scores = torch.tensor(rng.random(len(boxes)), dtype=torch.float32)
        answers.append(Detections(boxes, scores, classes))
    ours = _evaluate(task, test, _Oracle(test, answers), batch_size=2)
    reference = _pycocotools_on_the_json(coco_root, test, answers)
    np.testing.assert_allclose([ours[k] for k in COCO_KEYS], reference, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--cache-dir", "x"], "--cache-dir x: dataset 'coco' decodes each JPEG"),
        (["--download"], "--download: COCODetection is not downloaded automatically"),
        (["--dataset-kwargs", "annotation_file=a.json"], "annotation_file=...: the run reads"),
        (["--dataset-kwargs", "size=3"], "COCODetection takes no argument 'size'"),
    ],
)
def test_options_a_coco_run_cannot_take_are_refused(coco_root, tmp_path, capsys, extra, named):
    out = tmp_path / "run"
    args = ["train", "--dataset", "coco", "--data-dir", str(coco_root), "--output-dir", str(out),
            "--no-progress", *extra]  # fmt: skip
    assert main(args) == 2
    assert named in capsys.readouterr().err


def test_a_bdd100k_run_builds_its_splits(tmp_path):
    root = write_bdd(tmp_path / "bdd", size=(1280, 720))
    task = DetectionTask("bdd100k")
    kwargs = {"image_size": 96, "keep_empty": False}
    config = task.resolve(TrainConfig(dataset="bdd100k", data_dir=str(root), dataset_kwargs=kwargs))
    assert (config.T, config.batch_size) == (4, 16)
    train, test, info = task.build_datasets(config)
    # keep_empty=False drops the frame without labels from the train split only: the
    # evaluation, as COCO's, counts the false positives on it
    assert (len(train), len(test)) == (2, 3) and not train.keep_empty and test.keep_empty
    assert (info.num_classes, info.in_channels, info.input_size, info.static) == (
        10,
        3,
        (96, 96),
        True,
    )
