"""`spikeflow train` from the command line: the default digits run (and its eval), bad
options named with their choices, datasets chosen by name (sizes, downloads, N-MNIST),
progress bars, bf16, neurons chosen by name and the masked PSN's schedule."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch

from spikeflow.cli import main
from spikeflow.errors import ConfigurationError
from spikeflow.training import (
    Trainer,
    load_checkpoint,
    load_config_file,
)
from spikeflow.training.metric_logs import read_csv
from train_runs import (
    tiny,
    weights,
)

pytest.importorskip("sklearn", reason="the digits need scikit-learn (the 'examples' extra)")


def test_default_command_learns_the_digits(tmp_path, capsys):
    # The no-argument run (40 epochs) reaches ~99%; 3 epochs of it must already learn.
    code = main(["train", "--epochs", "3", "--output-dir", str(tmp_path / "run"),
                 "--no-progress", "--plots", "off"])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "test accuracy:" in out
    rows = read_csv(tmp_path / "run" / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert float(rows[-1]["test_acc"]) > 0.8
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    assert 0.0 < float(rows[-1]["test_rate"]) < 1.0
    config = load_config_file(tmp_path / "run" / "config.toml")
    assert config["model"] == "plif_digits" and config["T"] == 4 and config["epochs"] == 3
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert ckpt["epoch"] == 3 and ckpt["step"] == 0
    assert {"model", "optimizer", "scheduler", "scaler", "rng", "config"} <= set(ckpt)
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert best["best"]["test_acc"] == max(float(r["test_acc"]) for r in rows)

    # eval on the best checkpoint gives the accuracy logged for its epoch
    assert main(["eval", "--checkpoint", str(tmp_path / "run" / "best.pt"),
                 "--json", str(tmp_path / "eval.json")]) == 0  # fmt: skip
    result = json.loads((tmp_path / "eval.json").read_text())
    logged = float(rows[best["epoch"] - 1]["test_acc"])
    assert result["test_acc"] == pytest.approx(logged, abs=1e-12)
    assert result["samples"] == result["split_samples"] == 360 and len(result["layers"]) == 4
    assert (result["model"], result["dataset"], result["T"]) == ("plif_digits", "digits", 4)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith(f"best.pt: plif_digits (T=4) after epoch {best['epoch']} of 3, "
                             "digits test split")  # fmt: skip
    assert lines[1].strip() == "all 360 test samples"
    assert f"accuracy {100 * logged:.2f}%" in lines[2] and "mean firing rate" in lines[2]
    assert lines[4].split() == ["spiking", "layer", "rate", "spikes/sample", "neurons", "v",
                                "mean", "v", "std"]  # fmt: skip
    assert [line.split()[0] for line in lines[5:9]] == [s["name"] for s in result["layers"]]
    assert lines[-1] == f"test accuracy: {logged:.4f}"


def test_bad_options_exit_with_status_2(tmp_path, capsys):
    assert main(["train", "--dataset", "mnist-ish", "--output-dir", str(tmp_path)]) == 2
    assert "unknown dataset 'mnist-ish'; available: " in capsys.readouterr().err
    assert main(["train", "--amp", "fp16", "--device", "cpu", "--output-dir", str(tmp_path)]) == 2
    assert "fp16" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "mnist-ish"], r"unknown dataset 'mnist-ish'; available: .*digits.*nmnist"),
        (["--model", "resnet9000"], r"unknown model 'resnet9000'; available: .*plif_digits.*"
                                    r"sew_resnet18.*spiking_vgg19_bn"),
        (["--neuron", "relu"], r"unknown neuron 'relu'; available: .*lif.*plif.*psn"),
        (["--loss", "hinge"], r"unknown loss 'hinge'; available: ce, ce\+, ce_count, "
                              r"ce_max_membrane, ce_temporal, count, count\+, kernel, mse, "
                              r"mse_count, mse_membrane, mse_temporal, spike_max, spike_moid, "
                              r"spike_rate, "
                              r"stcl, sum0, tcl, tet, timing, ttfs"),
        (["--model-kwargs", "channelz=8"], r"'plif_digits' does not accept the argument\(s\) "
                                           r"\['channelz'\]; it accepts .*channels"),
        (["--neuron-kwargs", "taux=2"], r"does not accept \['taux'\]; it accepts .*init_tau"),
        (["--neuron", "masked_psn"], r"MaskedPSN needs the argument\(s\) \['k'\].*"
                                     r"--neuron-kwargs k=\.\.\."),
        (["--epochs", "0"], r"epochs must be a positive integer, got 0"),
        (["--dataset", "nmnist"], r"dataset 'nmnist' needs --data-dir"),
        (["--data-dir", "{tmp}"], r"--data-dir .* was given, but the 'digits' dataset ships with "
                                  r"scikit-learn"),
        # options the digits would ignore are refused like --data-dir
        (["--cache-dir", "{tmp}"], r"--cache-dir .* was given, but the 'digits' dataset"),
        (["--split-by", "time", "--download"], r"--split-by time, --download were given, but "
                                               r"the 'digits' dataset"),
        (["--dataset", "nmnist", "--data-dir", "{tmp}"],
         r"--data-dir .*: N-MNIST not found: .*Train does not exist\. Pass --download to "
         r"download Train\.zip .*Expected layout: <root>/\{Train,Test\}/<label>/<id>\.bin"),
        (["--dataset", "dvs128gesture", "--model", "plif_dvsgesture", "--data-dir", "{tmp}",
          "--download"],
         r"--download: DVS128Gesture cannot be downloaded automatically"),
        (["--config", "{tmp}/missing.toml"], r"config file .*missing\.toml does not exist"),
        (["--resume", "{tmp}/nothing.pt"], r"checkpoint .*nothing\.pt does not exist"),
    ],
)  # fmt: skip
def test_bad_command_line_input_names_the_argument_and_the_choices(tmp_path, capsys, args, message):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    code = main(["train", *args, "--output-dir", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("spikeflow train: error: ")
    assert re.search(message, err), err
    assert not (tmp_path / "out" / "last.pt").exists()


def test_bad_eval_and_run_options_are_named(tmp_path, capsys):
    from spikeflow.training.distributed import pick_device
    from spikeflow.training.evaluation import evaluate_checkpoint

    with pytest.raises(ConfigurationError, match="workers must be"):
        evaluate_checkpoint(tmp_path / "none.pt", workers=-1)
    with pytest.raises(ConfigurationError, match="batch_size must be"):
        evaluate_checkpoint(tmp_path / "none.pt", batch_size=-3)
    with pytest.raises(ConfigurationError, match="'cpu' or 'cuda'"):
        pick_device("meta")
    (tmp_path / "a-file").write_text("")
    code = main(["train", "--output-dir", str(tmp_path / "a-file"), "--epochs", "1",
                 "--no-progress"])  # fmt: skip
    assert code == 2 and "not a folder" in capsys.readouterr().err
    # A refused run leaves no empty output folder behind.
    code = main(["train", "--model", "resnet9000", "--output-dir", str(tmp_path / "refused"),
                 "--no-progress"])  # fmt: skip
    assert code == 2 and not (tmp_path / "refused").exists()


def test_nmnist_subset_trains_through_the_command_line(tmp_path, capsys):
    from conftest import require_shared_data

    root = require_shared_data("nmnist-small")
    out = tmp_path / "nmnist"
    code = main([
        "train", "--dataset", "nmnist", "--data-dir", str(root), "--train-samples", "40",
        "--test-samples", "20", "--epochs", "1", "-T", "4", "--model-kwargs", "channels=4",
        "--output-dir", str(out), "--no-progress", "--plots", "off",
    ])  # fmt: skip
    assert code == 0
    config = load_config_file(out / "config.toml")
    assert (config["model"], config["T"], config["batch_size"]) == ("plif_nmnist", 4, 16)
    row = read_csv(out / "metrics.csv")[0]
    assert 0.0 <= float(row["test_acc"]) <= 1.0 and float(row["train_rate"]) > 0.0
    assert main(["eval", "--checkpoint", str(out / "last.pt"), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert f"test accuracy: {float(row['test_acc']):.4f}" in text
    assert "20 of the 100 test samples, as the run tested" in text
    # the whole test split of the subset (100 samples) on request
    assert main(["eval", "--checkpoint", str(out / "last.pt"), "--test-samples", "all",
                 "--json", str(tmp_path / "all.json"), "--no-progress"]) == 0  # fmt: skip
    result = json.loads((tmp_path / "all.json").read_text())
    assert result["samples"] == result["split_samples"] == 100
    assert "all 100 test samples" in capsys.readouterr().out
    assert main(["eval", "--checkpoint", str(out / "last.pt"), "--test-samples", "10",
                 "--no-progress"]) == 0  # fmt: skip
    text = capsys.readouterr().out
    assert "10 of the 100 test samples (--test-samples)" in text and "as the run" not in text
    assert main(["eval", "--checkpoint", str(out / "last.pt"), "--data-dir", str(tmp_path)]) == 2
    assert f"--data-dir {tmp_path}: N-MNIST not found" in capsys.readouterr().err


def test_progress_bars_show_loss_accuracy_and_firing_rate(tmp_path, monkeypatch):
    import tqdm as tqdm_module

    import spikeflow.training.loop as loop_module
    import spikeflow.training.trainer_steps as steps_module

    shown: list[tuple[str, dict[str, str]]] = []

    class RecordingBar(tqdm_module.tqdm):
        def set_postfix(self, ordered_dict=None, refresh=True, **kwargs):
            shown.append((self.desc, dict(kwargs)))
            super().set_postfix(ordered_dict, refresh, **kwargs)

    monkeypatch.setattr(steps_module, "tqdm", RecordingBar)
    monkeypatch.setattr(loop_module, "tqdm", RecordingBar)
    Trainer(tiny(tmp_path, "bars", epochs=1, progress=True), log=None).fit()
    row = read_csv(tmp_path / "bars" / "metrics.csv")[0]
    train = [values for desc, values in shown if desc == "epoch 1/1"]
    test = [values for desc, values in shown if desc == "test"]
    assert train and set(train[-1]) == {"loss", "acc", "rate"}
    assert test and set(test[-1]) == {"loss", "acc"}
    # the last values shown are the epoch's logged numbers
    assert float(train[-1]["loss"]) == pytest.approx(float(row["train_loss"]), abs=1e-4)
    assert float(train[-1]["acc"]) == pytest.approx(float(row["train_acc"]), abs=1e-3)
    assert float(train[-1]["rate"]) == pytest.approx(float(row["train_rate"]), abs=1e-3)
    assert float(train[-1]["rate"]) > 0
    assert float(test[-1]["acc"]) == pytest.approx(float(row["test_acc"]), abs=1e-3)


def test_amp_bf16_runs_the_forward_in_bfloat16_and_keeps_float32_weights(tmp_path, monkeypatch):
    import spikeflow.training.trainer as trainer_module

    dtypes: list[torch.dtype] = []
    real_build = trainer_module.build_model

    def build_and_watch(config, info):
        model = real_build(config, info)
        conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
        conv.register_forward_hook(lambda module, inputs, output: dtypes.append(output.dtype))
        return model

    monkeypatch.setattr(trainer_module, "build_model", build_and_watch)
    result = Trainer(tiny(tmp_path, "bf16", amp="bf16", epochs=1), log=None).fit()
    assert dtypes and set(dtypes) == {torch.bfloat16}
    assert math.isfinite(result.history[0]["train_loss"])
    model = load_checkpoint(tmp_path / "bf16" / "last.pt")["model"]
    assert {t.dtype for t in model.values() if t.is_floating_point()} == {torch.float32}


def test_a_neuron_chosen_by_name_gets_T_when_it_needs_it(tmp_path):
    result = Trainer(tiny(tmp_path, "psn", neuron="psn", epochs=1), log=None).fit()
    assert result.epochs_completed == 1
    model = load_checkpoint(tmp_path / "psn" / "last.pt")["model"]
    # a PSN layer holds a T x T weight: T = 2, the run's T
    psn_weights = [t for k, t in model.items() if k.endswith(".weight") and t.shape == (2, 2)]
    assert len(psn_weights) == 4


def test_num_classes_prefers_classes_then_num_classes_then_labels():
    from spikeflow.training.data import dataset_num_classes

    class Named:
        classes = ("a", "b", "c")
        num_classes = 7
        targets = (0, 1)

    class Counted:
        num_classes = 5
        targets = (0, 1)

    class Labelled:
        targets = (0, 3, 1)

    class Unknown:
        pass

    named_on_instance = Counted()
    named_on_instance.classes = ["x", "y", "z", "w"]  # set by the constructor (DVS-Lip)
    assert dataset_num_classes(Named()) == 3
    assert dataset_num_classes(named_on_instance) == 4
    assert dataset_num_classes(Counted()) == 5
    assert dataset_num_classes(Labelled()) == 4
    with pytest.raises(ConfigurationError, match="cannot tell how many classes Unknown has"):
        dataset_num_classes(Unknown(), "Unknown")


def test_a_dataset_with_num_classes_only_sizes_the_model(tmp_path, monkeypatch):
    """A spikeflow.data dataset without ``classes``: ``num_classes`` (3) decides the output
    size, not the labels seen (0 and 1); the PLIF net is sized for its 6x6 frames."""
    from spikeflow.data import datasets as datasets_module

    class TinyFrames(datasets_module.NeuromorphicDataset):
        sensor_size = (6, 6, 2)
        num_classes = 3

        def _find_samples(self):
            return [(self.root / f"{i}.bin", i % 2) for i in range(8 if self.train else 4)]

        def __getitem__(self, index):
            generator = torch.Generator().manual_seed(index + 100 * self.train)
            frames = (torch.rand(2, 2, 6, 6, generator=generator) < 0.3).float()
            return frames, self.samples[index][1]

    class WideFrames(TinyFrames):
        sensor_size = (8, 6, 2)  # W x H x C: not square

    monkeypatch.setattr(datasets_module, "TinyFrames", TinyFrames, raising=False)
    monkeypatch.setattr(datasets_module, "WideFrames", WideFrames, raising=False)
    wide = tiny(tmp_path, "wide", dataset="wideframes", data_dir=str(tmp_path),
                model="plif_nmnist", train_samples=None, test_samples=None)  # fmt: skip
    with pytest.raises(ConfigurationError, match=r"frames are 6x8 \(H x W\).*square inputs"):
        Trainer(wide, log=None).fit()
    config = tiny(tmp_path, "tinyframes", dataset="tinyframes", data_dir=str(tmp_path),
                  model="plif_nmnist", model_kwargs={"channels": 4}, batch_size=4, epochs=1,
                  train_samples=None, test_samples=None)  # fmt: skip
    Trainer(config, log=None).fit()
    model = load_checkpoint(tmp_path / "tinyframes" / "last.pt")["model"]
    linear = [t for k, t in model.items() if k.endswith("weight") and t.dim() == 2]
    assert linear[0].shape[1] == 4 * 1 * 1  # 6x6 -> 3x3 -> 1x1 after the two pools
    assert linear[-1].shape[0] == 3 * 10  # 3 classes, 10 voting neurons each


def test_download_option_reaches_the_dataset(tmp_path, monkeypatch, capsys):
    """`--download` is passed on as download=True (the dataset then fetches and checks)."""
    from spikeflow.data.datasets import DatasetNotFoundError
    from spikeflow.training import data as training_data

    seen = []

    class Fetchable:
        downloadable = True

        def __init__(self, root, train=True, download=False, **kwargs):
            seen.append(download)
            raise DatasetNotFoundError("no network in this test")

    monkeypatch.setattr(training_data, "_neuromorphic_classes", lambda: {"fetchable": Fetchable})
    for flag, expected in (([], False), (["--download"], True)):
        args = ["--dataset", "fetchable", "--model", "plif_nmnist", "--data-dir", str(tmp_path)]
        code = main(["train", *args, "--no-progress", "--output-dir", str(tmp_path / "o"), *flag])
        assert code == 2
        assert seen[-1] is expected
        # the hint to pass --download only where it was not passed, before the message
        hint = f"--data-dir {tmp_path} (from the command line: pass --download to fetch it): "
        assert (hint in capsys.readouterr().err) is not expected


@pytest.mark.parametrize("dataset", ["asldvs", "navgesture", "ncars"])
def test_download_is_refused_for_a_dataset_that_declares_it_cannot_download(
    tmp_path, capsys, dataset
):
    # ASL-DVS took --download (a `download` argument it inherits and ignores), then
    # advised --download in its not-found error.
    args = ["--dataset", dataset, "--model", "plif_nmnist", "--data-dir", str(tmp_path)]
    assert main(["train", *args, "--download", "--output-dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "--download: " in err and "cannot be downloaded automatically" in err
    assert "pass --download" not in err.lower()


def test_the_downloadable_datasets_are_those_the_docs_list():
    from spikeflow.training.data import _neuromorphic_classes

    found = {name for name, cls in _neuromorphic_classes().items() if cls.downloadable}
    assert found == {"nmnist", "ncaltech101", "cifar10dvs", "shd", "ssc", "fsdd", "speechcommands",
                     "ntidigits18", "bullying10k", "smnist"}  # fmt: skip
    docs = (Path(__file__).parents[1] / "docs" / "training.md").read_text()
    listed = (
        "N-MNIST, N-Caltech101, CIFAR10-DVS, SHD, SSC, FSDD, SpeechCommands, NTIDIGITS18, "
        "Bullying10K, SMNIST:"
    )
    assert f"where its host allows it ({listed}" in docs


class _MaskLambdas:
    """Records the masked PSNs' λ at the first step of every epoch."""

    def __init__(self) -> None:
        self.seen: list[float] = []

    def on_step_end(self, trainer, epoch, step, loss):
        if step == 0:
            values = {float(m.mask_lambda) for m in trainer.model.modules()
                      if hasattr(m, "mask_lambda")}  # fmt: skip
            assert len(values) == 1
            self.seen.append(values.pop())


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [("paper", [0.0, 1.0, 1.0]), ("linear", [1 / 3, 2 / 3, 1.0]), ("none", [0.0, 0.0, 0.0])],
)
def test_masked_psn_mask_follows_the_schedule(tmp_path, schedule, expected):
    # methods.md 4.3: the progressive mask lambda = min(1, 8 epoch / (epochs - 1)).
    record = _MaskLambdas()
    config = tiny(tmp_path, schedule, neuron="masked_psn", neuron_kwargs={"k": 2},
                  mask_schedule=schedule)  # fmt: skip
    Trainer(config, log=None, callbacks=[record]).fit()
    assert record.seen == pytest.approx(expected)
    saved = [float(v) for k, v in weights(tmp_path / schedule).items() if k.endswith("mask_lambda")]
    assert saved and all(v == pytest.approx(expected[-1]) for v in saved)
