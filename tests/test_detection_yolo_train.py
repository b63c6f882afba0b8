"""``spikeflow train --model tiny_yolov3`` on the real N-MNIST detection task: a tiny run
end to end (the YOLO loss, its parts, the mAP of the decoded boxes, ``spikeflow eval``),
and the model/loss pairs a detection run refuses."""

from __future__ import annotations

import json

import pytest

from conftest import require_shared_data
from spikeflow.cli import main
from spikeflow.detection import YOLOLoss
from spikeflow.training.metric_logs import read_csv


@pytest.fixture(scope="module")
def root():
    return str(require_shared_data("nmnist-small"))


def yolo_args(root, out, *extra):
    return [
        "train", "--dataset", "nmnist_detection", "--data-dir", root, "--output-dir", str(out),
        "--train-samples", "16", "--test-samples", "8", "--batch-size", "8", "-T", "2",
        "--epochs", "1", "--model", "tiny_yolov3", "--model-kwargs", "width_mult=0.125",
        "--dataset-kwargs", "canvas_size=[80,72]", "digits=[1,2]", "--no-progress",
        "--threads", "1",
        *extra,
    ]  # fmt: skip


def test_a_tiny_yolov3_run_trains_with_the_yolo_loss_and_is_evaluated(
    root, tmp_path, capsys, monkeypatch
):
    sizes = set()
    forward = YOLOLoss.forward

    def spy(self, outputs, targets, image_size=None):
        sizes.add(image_size)
        return forward(self, outputs, targets, image_size)

    monkeypatch.setattr(YOLOLoss, "forward", spy)
    out = tmp_path / "run"
    assert main(yolo_args(root, out, "--loss-kwargs", "time_reduction=mean")) == 0
    # training and evaluation clip the boxes to the 80x72 canvas (height 72, width 80;
    # not square, so a swap would show), not the padded 96x96
    assert sizes == {(72, 80)}
    config = (out / "config.toml").read_text()
    assert 'model = "tiny_yolov3"' in config and 'loss = "yolo"' in config
    assert "time_reduction" in config
    (row,) = read_csv(out / "metrics.csv")
    # the logged loss is the sum of its weighted parts (box, obj, cls), not 5·box + ...
    parts = float(row["train_box"]) + float(row["train_obj"]) + float(row["train_cls"])
    assert float(row["train_loss"]) == pytest.approx(parts, rel=1e-5)
    assert 0 <= float(row["test_map"]) <= float(row["test_map_50"]) <= 1
    # spikeflow eval rebuilds the model and the YOLO loss (time_reduction too) from the run
    report = tmp_path / "eval.json"
    assert main(["eval", "--checkpoint", str(out), "--json", str(report)]) == 0
    result = json.loads(report.read_text())
    assert result["test_loss"] == pytest.approx(float(row["test_loss"]), rel=1e-5)
    assert result["map"] == pytest.approx(float(row["test_map"]), abs=1e-6)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["--model", "tiny_yolov3", "--loss", "detection"], "--loss detection"),
        (["--loss", "yolo"], "--loss yolo"),
        (["--model", "yolo_kp"], "--model yolo_kp"),
    ],
)
def test_model_and_loss_pairs_are_refused_before_writing(tmp_path, capsys, options, named):
    out = tmp_path / "sub" / "run"
    args = ["train", "--dataset", "nmnist_detection", "--data-dir", str(tmp_path / "none"),
            "--output-dir", str(out), *options]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert named in err and "detection" in err
    assert not (tmp_path / "sub").exists()


def test_tiny_yolov3_arguments_are_checked_by_name(root, tmp_path, capsys):
    assert main(yolo_args(root, tmp_path / "a", "--model-kwargs", "widths=[4,8]")) == 2
    assert "tiny_yolov3 takes no argument ['widths']" in capsys.readouterr().err
    assert main(yolo_args(root, tmp_path / "b", "--loss-kwargs", "box_weight=5")) == 2
    assert "lambda_iou" in capsys.readouterr().err


def test_sigma_delta_tiny_yolov3_refuses_neuron_options_by_name(root, tmp_path, capsys):
    # a sigma-delta network has no spiking neurons: --neuron would be silently dropped
    args = yolo_args(root, tmp_path / "sd", "--model-kwargs", "width_mult=0.125",
                     "block=sigma_delta", "--neuron", "plif")  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "block='sigma_delta'" in err and "neuron='plif'" in err and "--neuron" in err
    assert not (tmp_path / "sd").exists()


@pytest.mark.parametrize("model", ["tiny_yolov3", "spiking_detector"])
def test_a_detector_on_a_classification_dataset_is_refused_by_name(tmp_path, capsys, model):
    out = tmp_path / "sub" / "run"
    args = ["train", "--dataset", "nmnist", "--data-dir", str(tmp_path / "none"),
            "--output-dir", str(out), "--model", model]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"--model {model} is a detector" in err and "nmnist_detection" in err
    assert not (tmp_path / "sub").exists()
