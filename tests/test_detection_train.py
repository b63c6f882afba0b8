"""``spikeflow train`` / ``spikeflow eval`` on a detection dataset: a tiny nmnist_detection
run end to end (files, metrics, mAP against an independent evaluation), the best
checkpoint chosen by mAP, exact resume from within an epoch, and the options a
detection run refuses before writing anything."""

from __future__ import annotations

import json
import math
import os
import signal

import pytest
import torch
from torch.utils.data import DataLoader

from conftest import require_shared_data
from spikeflow.cli import main
from spikeflow.data.datasets.nmnist_detection import NMNISTDetection
from spikeflow.detection import MeanAveragePrecision, collate, spiking_detector
from spikeflow.errors import ConfigurationError
from spikeflow.training import load_trained_model
from spikeflow.training.checkpoint import load_checkpoint, save_checkpoint
from spikeflow.training.config import TrainConfig
from spikeflow.training.detection_task import COCO_KEYS, DetectionTask
from spikeflow.training.detection_trainer import DETECTION_COLUMNS, DetectionTrainer
from spikeflow.training.metric_logs import read_csv


@pytest.fixture(scope="module")
def root():
    return str(require_shared_data("nmnist-small"))


def tiny_args(root, out, *extra):
    return [
        "train", "--dataset", "nmnist_detection", "--data-dir", root, "--output-dir", str(out),
        "--train-samples", "16", "--test-samples", "8", "--batch-size", "8", "-T", "2",
        "--epochs", "2", "--model-kwargs", "widths=[4,8,16]", "--dataset-kwargs",
        "canvas_size=72", "digits=[1,2]", "--no-progress", *extra,
    ]  # fmt: skip


def metrics(run):
    """metrics.csv without the wall-clock column."""
    return [
        {k: v for k, v in row.items() if k != "epoch_time_s"}
        for row in read_csv(run / "metrics.csv")
    ]


def tiny_config(root, out, **kw):
    return TrainConfig(
        dataset="nmnist_detection", data_dir=root, output_dir=str(out), train_samples=16,
        test_samples=8, batch_size=8, T=2, epochs=2, model_kwargs={"widths": [4, 8, 16]},
        dataset_kwargs={"canvas_size": 72, "digits": [1, 2]}, progress=False, **kw,
    )  # fmt: skip


def test_cli_trains_logs_checkpoints_and_eval_reports_the_coco_numbers(root, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(tiny_args(root, out, "--threads", "1")) == 0
    printed = capsys.readouterr().out
    assert "test COCO mAP" in printed
    assert {p.name for p in out.iterdir()} >= {"config.toml", "last.pt", "best.pt", "metrics.csv"}
    rows = read_csv(out / "metrics.csv")
    assert len(rows) == 2 and tuple(rows[0]) == DETECTION_COLUMNS
    for row in rows:  # the loss is the sum of its weighted parts (YOLOX's 5, 1, 1)
        parts = 5 * float(row["train_box"]) + float(row["train_obj"]) + float(row["train_cls"])
        assert float(row["train_loss"]) == pytest.approx(parts, rel=1e-5)
        assert 0 <= float(row["test_map"]) <= float(row["test_map_50"]) <= 1
    config = (out / "config.toml").read_text()
    assert 'model = "spiking_detector"' in config and 'loss = "detection"' in config
    assert "threads = 1" in config
    # spikeflow eval: the 12 COCO numbers, and the same as an evaluation written here. Two
    # epochs on 16 canvases detect nothing yet: the read-out's biases are set to give boxes
    # of about a digit's size (21 px) at every cell, all of the test split's commonest digit.
    test = NMNISTDetection(root, False, num_samples=8, seed=10_000, canvas_size=72, digits=(1, 2),
                           frames_number=2)  # fmt: skip
    digits = torch.cat([test[i][1][:, 0] for i in range(len(test))]).long()
    payload = load_checkpoint(out / "last.pt")
    payload["model"]["head.readout.bias"][:4] = 1.0
    payload["model"]["head.readout.bias"][4:] = 0.0
    payload["model"]["head.readout.bias"][5 + int(digits.bincount().argmax())] = 1.0
    save_checkpoint(payload, tmp_path / "edited.pt")
    report = tmp_path / "eval.json"
    assert main(["eval", "--checkpoint", str(tmp_path / "edited.pt"), "--no-progress",
                 "--json", str(report)]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert printed.count("Average Precision") == 6 and printed.count("Average Recall") == 6
    result = json.loads(report.read_text())
    assert result["map_50"] > 0 and result["mar_100"] > 0  # not an all-zero comparison
    net = spiking_detector(10, 2, widths=(4, 8, 16))
    net.load_state_dict(payload["model"])
    net.eval()
    metric = MeanAveragePrecision()
    with torch.no_grad():
        for frames, targets in DataLoader(test, batch_size=3, collate_fn=collate):
            metric.update(net.detect(frames.transpose(0, 1)), targets)
    expected = metric.compute()
    for key in COCO_KEYS:
        a, b = result[key], float(expected[key])
        assert (a is None and math.isnan(b)) or a == pytest.approx(b, abs=1e-6), key
    # load_trained_model batches a detection run's samples as its trainer does (before:
    # PyTorch's default collate refused targets of different sizes)
    trained = load_trained_model(tmp_path / "edited.pt")
    frames, targets = trained.batch(len(test))
    assert frames.shape[:2] == (2, len(test)) and len(targets) == len(test)
    for i in range(len(test)):
        assert torch.equal(frames[:, i], test[i][0]) and torch.equal(targets[i], test[i][1])
    metric = MeanAveragePrecision()
    with torch.no_grad():
        metric.update(trained.model.detect(frames), targets)
    assert float(metric.compute()["map_50"]) == pytest.approx(float(expected["map_50"]))
    # ... and eval of the run's own checkpoint repeats the mAP its last epoch logged
    assert main(["eval", "--checkpoint", str(out / "last.pt"), "--no-progress", "--json",
                 str(report)]) == 0  # fmt: skip
    assert json.loads(report.read_text())["map"] == pytest.approx(float(rows[-1]["test_map"]))


def test_the_best_checkpoint_is_the_epoch_of_highest_map(root, tmp_path, monkeypatch):
    real = DetectionTask.evaluate
    maps = iter([0.3, 0.1])  # epoch 1 scores higher than epoch 2, whatever the losses

    def scored(self, *args, **kwargs):
        sums, metrics, rate, layers = real(self, *args, **kwargs)
        return sums, {**metrics, "map": next(maps)}, rate, layers

    monkeypatch.setattr(DetectionTask, "evaluate", scored)
    threads, seen = torch.get_num_threads(), set()

    class Threads:  # --threads holds during the run, and is restored after it
        def on_step_end(self, trainer, epoch, step, loss):
            seen.add(torch.get_num_threads())

    config = tiny_config(root, tmp_path / "run", threads=threads + 1)
    result = DetectionTrainer(config, callbacks=[Threads()], log=None).fit()
    assert seen == {threads + 1} and torch.get_num_threads() == threads
    assert (result.best_epoch, result.best_test_acc) == (1, 0.3)
    assert result.final_test_acc == 0.1  # the last epoch's mAP
    assert load_checkpoint(tmp_path / "run" / "best.pt")["epoch"] == 1
    assert load_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 2


class _CtrlC:
    def on_step_end(self, trainer, epoch, step, loss):
        if (epoch, step) == (1, 0):
            os.kill(os.getpid(), signal.SIGINT)


def test_resume_from_within_an_epoch_is_exact(root, tmp_path):
    DetectionTrainer(tiny_config(root, tmp_path / "full"), log=None).fit()
    cut = DetectionTrainer(tiny_config(root, tmp_path / "cut"), callbacks=[_CtrlC()], log=None)
    assert cut.fit().interrupted
    payload = load_checkpoint(tmp_path / "cut" / "last.pt")
    assert (payload["epoch"], payload["step"]) == (1, 1)
    assert main(["train", "--resume", str(tmp_path / "cut"), "--no-progress"]) == 0
    full = load_checkpoint(tmp_path / "full" / "last.pt")["model"]
    resumed = load_checkpoint(tmp_path / "cut" / "last.pt")["model"]
    for name, value in full.items():
        assert torch.equal(value, resumed[name]), name
    assert metrics(tmp_path / "full") == metrics(tmp_path / "cut")


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["--readout", "rate"], "--readout"),
        (["--mixup", "0.2"], "--mixup"),
        (["--cutmix", "1.0"], "--cutmix"),
        (["--loss-kwargs", "label_smoothing=0.1"], "label_smoothing"),
        (["--decolle"], "--decolle"),
        (["--eventprop", "eventprop"], "--eventprop"),
        (["--tbptt", "2"], "--tbptt"),
        (["--online"], "--online"),
        (["--model", "plif_net"], "--model plif_net"),
        (["--loss", "ce"], "--loss ce"),
        (["--cache-dir", "frames"], "--cache-dir"),
    ],
)
def test_classification_options_are_refused_by_name_before_writing(tmp_path, capsys, options,
                                                                   named):  # fmt: skip
    out = tmp_path / "sub" / "run"
    args = ["train", "--dataset", "nmnist_detection", "--data-dir", str(tmp_path / "none"),
            "--output-dir", str(out), *options]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert named in err and "detection" in err
    assert not (tmp_path / "sub").exists()


def test_a_detection_dataset_needs_its_data_dir(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--dataset", "gen1", "--output-dir", str(out)]) == 2
    assert "--data-dir" in capsys.readouterr().err and not out.exists()


def gen1_root(tmp_path, rows):
    """A Gen1 folder (train/ and test/) of the shared Prophesee .dat sample with the
    boxes ``rows`` of ``(ts, x, y, w, h, class_id)``: one labelled window per timestamp."""
    import numpy as np

    folder = require_shared_data("event-files", "prophesee-dat")
    dtype = np.dtype([("ts", "<u8"), ("x", "<f4"), ("y", "<f4"), ("w", "<f4"), ("h", "<f4"),
                      ("class_id", "u1"), ("confidence", "<f4"), ("track_id", "<u4")])  # fmt: skip
    boxes = np.array([(*row, 0.9, i) for i, row in enumerate(rows)], dtype)
    root = tmp_path / "gen1"
    for split in ("train", "test"):
        (root / split).mkdir(parents=True)
        (root / split / "rec_td.dat").write_bytes((folder / "NCARS_obj_004397_td.dat").read_bytes())
        np.save(root / split / "rec_bbox.npy", boxes)
    return root


def test_a_gen1_run_frames_the_event_windows(tmp_path):
    """Gen1 from the shared Prophesee .dat sample: two labelled timestamps per split; the
    windows become T frames of the 304x240 sensor and the detector has Gen1's 2 classes."""
    root = gen1_root(tmp_path, [(40_000, 10, 20, 30, 40, 0), (95_000, 100, 50, 60, 30, 1)])
    out = tmp_path / "run"
    args = ["train", "--dataset", "gen1", "--data-dir", str(root), "--output-dir", str(out),
            "-T", "2", "--epochs", "1", "--batch-size", "2", "--model-kwargs", "widths=[4,8]",
            "--dataset-kwargs", "window_us=30000", "--no-progress"]  # fmt: skip
    assert main(args) == 0
    (row,) = read_csv(out / "metrics.csv")
    assert math.isfinite(float(row["test_loss"])) and float(row["test_map"]) >= 0
    weights = load_checkpoint(out / "last.pt")["model"]
    assert weights["head.readout.weight"].shape[0] == 5 + 2
    _, test, info = DetectionTask("gen1").build_datasets(
        TrainConfig(
            dataset="gen1",
            data_dir=str(root),
            T=2,
            split_by="number",
            dataset_kwargs={"window_us": 30000},
        )
    )
    frames, target = test[1]
    assert frames.shape == (2, 2, 240, 304) and info.input_size == (240, 304)
    assert target.tolist() == [[1.0, 100, 50, 160, 80]]


def test_eval_of_a_gen1_run_with_test_samples_reaches_the_whole_split(tmp_path):
    """A run tested on 2 of the split's 4 windows: ``spikeflow eval`` repeats those 2 by
    default, and ``--test-samples all`` (or 3) takes them from the whole split, not from
    the run's 2."""
    rows = [(40_000 + 15_000 * i, 10 + 20 * i, 20, 30, 40, i % 2) for i in range(4)]
    root = gen1_root(tmp_path, rows)
    out, report = tmp_path / "run", tmp_path / "eval.json"
    assert main(["train", "--dataset", "gen1", "--data-dir", str(root), "--output-dir", str(out),
                 "-T", "2", "--epochs", "1", "--batch-size", "2", "--test-samples", "2",
                 "--model-kwargs", "widths=[4,8]", "--dataset-kwargs", "window_us=30000",
                 "--no-progress"]) == 0  # fmt: skip
    seen = {}
    for given in (None, "all", "3"):
        extra = [] if given is None else ["--test-samples", given]
        assert main(["eval", "--checkpoint", str(out / "last.pt"), "--no-progress", "--json",
                     str(report), *extra]) == 0  # fmt: skip
        result = json.loads(report.read_text())
        seen[given] = (result["samples"], result["split_samples"])
    assert seen == {None: (2, 4), "all": (4, 4), "3": (3, 4)}


class _FixedDetections(torch.nn.Module):
    """A stand-in detector: every image gets the detections ``dets``."""

    def __init__(self, dets):
        super().__init__()
        self.dets = dets
        self.bias = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return torch.zeros(x.shape[1], 7, 1, 1) + self.bias

    def decode_output(self, out, image_size):
        return [self.dets] * out.shape[0]


@pytest.mark.parametrize(("filter_labels", "map_50"), [(True, 1.0), (False, 0.5)])
def test_filtered_prophesee_labels_filter_the_detections_too(tmp_path, filter_labels, map_50):
    """Prophesee's protocol (and RVT's) filters detections by the labels' size filter: the
    small detection (5x5 px, under Gen1's side 10 and diagonal 30) that outranks the one
    matching the car is dropped with filter_labels (AP@0.5 1), and a false positive
    without it (ranked first, then the true positive: precision 0.5 at every recall)."""
    from spikeflow.data.datasets.prophesee_detection import Gen1Automotive
    from spikeflow.detection.metrics import Detections
    from spikeflow.training.distributed import DistContext

    root = gen1_root(tmp_path, [(40_000, 100, 50, 60, 30, 0)])
    test = Gen1Automotive(root, "test", data_type="frame", frames_number=2, window_us=30_000,
                          filter_labels=filter_labels, skip_ts=0)  # fmt: skip
    dets = Detections(torch.tensor([[10.0, 10, 15, 15], [100, 50, 160, 80]]),
                      torch.tensor([0.9, 0.5]), torch.tensor([0, 0]))  # fmt: skip

    def loss_fn(out, targets):
        parts = {k: torch.tensor(0.0) for k in ("box", "obj", "cls", "positives")}
        return out.sum(), parts

    _, metrics, _, _ = DetectionTask("gen1").evaluate(
        _FixedDetections(dets), torch.utils.data.Subset(test, [0]), loss_fn, T=2,
        static=False, batch_size=1, ctx=DistContext(),
    )  # fmt: skip
    assert float(metrics["map_50"]) == pytest.approx(map_50)


def test_the_classification_trainer_refuses_a_detection_dataset(root, tmp_path):
    """Trainer (exported by spikeflow.training) names the detection trainer instead of
    calling nmnist_detection an unknown dataset, and writes nothing."""
    from spikeflow.training import Trainer
    from spikeflow.training.detection_trainer import trainer_for

    config = tiny_config(root, tmp_path / "sub" / "run")
    with pytest.raises(ConfigurationError, match=r"detection task.*DetectionTrainer"):
        Trainer(config, log=None)
    assert not (tmp_path / "sub").exists()
    assert isinstance(trainer_for(config, log=None), DetectionTrainer)
