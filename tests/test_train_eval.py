"""`spikeflow eval`: only the test split is opened, --json is checked first and written
atomically (non-finite numbers as null), a run folder evaluates its best.pt, and its
errors advise only options eval has."""

from __future__ import annotations

import json
import math

import pytest

from spikeflow.cli import main
from spikeflow.errors import ConfigurationError
from spikeflow.training import (
    Trainer,
    load_checkpoint,
    save_checkpoint,
)
from spikeflow.training.config import config_from_dict
from train_runs import (
    tiny,
)

pytest.importorskip("sklearn", reason="the digits need scikit-learn (the 'examples' extra)")


def test_evaluation_opens_only_the_test_split(tmp_path):
    # `spikeflow eval` on a machine that holds only the test split of N-MNIST.
    from conftest import require_shared_data
    from spikeflow.data.datasets import DatasetNotFoundError
    from spikeflow.training.data import build_datasets

    shared = require_shared_data("nmnist-small")
    (tmp_path / "Test").symlink_to(shared / "Test")
    config = config_from_dict({"dataset": "nmnist", "data_dir": str(tmp_path), "T": 4,
                               "test_samples": 10})  # fmt: skip
    train, test, info = build_datasets(config, with_train=False)
    assert train is None and len(test) == 10 and info.num_classes == 10
    with pytest.raises(DatasetNotFoundError, match="Train"):
        build_datasets(config)


def test_eval_checks_the_json_destination_before_evaluating(tmp_path, capsys, monkeypatch):
    import spikeflow.training.evaluation as evaluation

    Trainer(tiny(tmp_path, "run", epochs=1), log=None).fit()
    calls = []
    real = evaluation.evaluate_checkpoint
    monkeypatch.setattr(evaluation, "evaluate_checkpoint",
                        lambda *a, **k: calls.append(1) or real(*a, **k))  # fmt: skip
    checkpoint = str(tmp_path / "run" / "last.pt")
    missing = tmp_path / "no-such-dir" / "r.json"
    assert main(["eval", "--checkpoint", checkpoint, "--no-progress", "--json", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"spikeflow eval: error: --json {missing}: the folder ")
    assert "does not exist" in err and not calls
    assert main(["eval", "--checkpoint", checkpoint, "--no-progress", "--json",
                 str(tmp_path)]) == 2  # fmt: skip
    assert "is a folder" in capsys.readouterr().err and not calls
    # a good destination: written, and no temporary file left beside it
    (tmp_path / "out").mkdir()
    assert main(["eval", "--checkpoint", checkpoint, "--no-progress", "--json",
                 str(tmp_path / "out" / "r.json")]) == 0  # fmt: skip
    assert calls and json.loads((tmp_path / "out" / "r.json").read_text())["samples"] == 96
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["r.json"]


def test_eval_json_is_written_atomically(tmp_path, monkeypatch):
    from spikeflow.training import evaluation

    target = tmp_path / "r.json"
    evaluation.write_json_atomic({"a": 1}, target)
    assert json.loads(target.read_text()) == {"a": 1}

    def fail(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(evaluation.os, "replace", fail)
    with pytest.raises(ConfigurationError, match=r"--json .*r\.json: cannot write it: .*space"):
        evaluation.write_json_atomic({"a": 2}, target)
    assert json.loads(target.read_text()) == {"a": 1}  # the earlier file stays whole
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # and no temporary


def test_eval_json_writes_non_finite_numbers_as_null(tmp_path):
    from spikeflow.training import evaluation

    def refuse(token: str) -> None:
        raise ValueError(f"not JSON: {token}")

    nan, inf = float("nan"), float("inf")
    data = {"test_rate": nan, "layers": [{"v_mean": nan, "v_std": -inf, "spikes": 2.5}],
            "pair": (1, inf), "name": "x", "n": 3}  # fmt: skip
    target = evaluation.write_json_atomic(data, tmp_path / "r.json")
    assert json.loads(target.read_text(), parse_constant=refuse) == {
        "test_rate": None, "layers": [{"v_mean": None, "v_std": None, "spikes": 2.5}],
        "pair": [1, None], "name": "x", "n": 3,
    }  # fmt: skip
    assert math.isnan(data["test_rate"])  # the caller's data is left as it was


def test_eval_takes_a_run_folder(tmp_path, capsys):
    Trainer(tiny(tmp_path, "run", epochs=1), log=None).fit()
    run = tmp_path / "run"
    assert main(["eval", "--checkpoint", str(run), "--no-progress", "--json",
                 str(tmp_path / "r.json")]) == 0  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{run} is a run folder: evaluating its best.pt")
    assert lines[1].startswith(f"{run / 'best.pt'}: plif_digits (T=2) after epoch 1 of 1")
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["checkpoint"] == str(run / "best.pt") and result["run_folder"] == str(run)
    (run / "best.pt").unlink()  # without best.pt: its last.pt
    assert main(["eval", "--checkpoint", str(run), "--no-progress"]) == 0
    assert capsys.readouterr().out.startswith(f"{run} is a run folder: evaluating its last.pt")
    (tmp_path / "empty").mkdir()
    assert main(["eval", "--checkpoint", str(tmp_path / "empty"), "--no-progress"]) == 2
    assert "is a folder without best.pt or last.pt" in capsys.readouterr().err
    # the run as `spikeflow export RUN` takes it: the same evaluation as --checkpoint
    assert main(["eval", str(run), "--no-progress", "--json", str(tmp_path / "p.json")]) == 0
    assert capsys.readouterr().out.startswith(f"{run} is a run folder: evaluating its last.pt")
    positional = json.loads((tmp_path / "p.json").read_text())
    assert positional["checkpoint"] == str(run / "last.pt")
    assert positional["test_acc"] == json.loads((tmp_path / "r.json").read_text())["test_acc"]
    for argv, named in (
        ([], "one of the arguments RUN --checkpoint is required"),
        ([str(run), "--checkpoint", str(run)], "not allowed with argument RUN"),
    ):
        with pytest.raises(SystemExit):
            main(["eval", *argv])
        assert named in capsys.readouterr().err


def test_eval_does_not_suggest_the_download_option_it_lacks(tmp_path, capsys):
    Trainer(tiny(tmp_path, "a", epochs=1), log=None).fit()
    payload = load_checkpoint(tmp_path / "a" / "last.pt")
    payload["config"].update(dataset="nmnist", data_dir=str(tmp_path / "elsewhere"))
    save_checkpoint(payload, tmp_path / "nmnist.pt")
    assert main(["eval", "--checkpoint", str(tmp_path / "nmnist.pt"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "N-MNIST not found" in err and "download=True" not in err
    assert "spikeflow eval does not download; run spikeflow train --download to download" in err


def test_eval_of_a_digits_run_given_a_data_dir_does_not_advise_dataset(tmp_path, capsys):
    # It advised "also pass --dataset", an option spikeflow eval does not have.
    Trainer(tiny(tmp_path, "a", epochs=1), log=None).fit()
    args = ["eval", "--checkpoint", str(tmp_path / "a"), "--data-dir", str(tmp_path)]
    assert main([*args, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"--data-dir {tmp_path} was given, but the 'digits' dataset" in err
    assert "--dataset" not in err and "the run trained on the digits: leave it out" in err


def test_eval_of_a_run_folder_notes_a_best_pt_the_run_no_longer_records(tmp_path):
    # After a rewind (--resume early.pt --overwrite) whose epochs never beat the
    # discarded ones, best.pt still holds a discarded epoch: eval now says so.
    from spikeflow.training.evaluation import evaluate_checkpoint, format_evaluation

    run = tmp_path / "run"
    Trainer(tiny(tmp_path, "run", epochs=2), log=None).fit()
    assert evaluate_checkpoint(run)["recorded_best_epoch"] is None  # consistent
    payload = load_checkpoint(run / "last.pt")
    held = load_checkpoint(run / "best.pt")["epoch"]
    payload["best"] = {"test_acc": 0.0, "epoch": held + 5}  # the rewound run's record
    save_checkpoint(payload, run / "last.pt")
    result = evaluate_checkpoint(run)
    assert result["recorded_best_epoch"] == held + 5
    assert (
        f"note: this best.pt holds epoch {held}, but the run's last.pt records epoch "
        f"{held + 5}" in format_evaluation(result)
    )
