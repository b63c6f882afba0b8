"""examples/residual_depth.py trains the residual zoo with one recipe and prints the
depth table (tiny runs: two depths, one epoch, a subset of the digits)."""

from __future__ import annotations

import csv

import pytest

from conftest import load_example
from spikeflow.training import load_config_file

TINY = ["--epochs", "1", "--train-samples", "96", "--test-samples", "48", "--batch-size", "32",
        "--base-width", "4", "-T", "2"]  # fmt: skip


def test_the_table_has_a_row_per_model_and_depth_and_the_runs_their_arguments(capsys, tmp_path):
    pytest.importorskip("sklearn", reason="scikit-learn (the 'examples' extra) is needed")
    module = load_example("residual_depth")
    results = module.main([*TINY, "--depths", "18", "34", "--seeds", "0", "1",
                           "--output-dir", str(tmp_path)])  # fmt: skip
    expected = [("spiking", 18, False), ("spiking", 18, True), ("spiking", 34, False),
                ("spiking", 34, True), ("sew ADD", 18, False), ("sew ADD", 34, False),
                ("sew IAND", 18, False), ("ms", 18, True), ("ms", 34, True)]  # fmt: skip
    assert [(v.label, v.depth, v.zero_init) for v in results] == expected
    lines = capsys.readouterr().out.splitlines()
    header = lines.index("model     zero depth   test ± std   min  train    loss      s")
    rows = [line.split() for line in lines[header + 1 :]]
    assert len(rows) == len(expected)
    for row, (variant, runs) in zip(rows, results.items(), strict=True):
        assert row[0:1] == variant.label.split()[:1]
        assert len(runs) == 2
        tests = [100 * run.test_acc for run in runs]
        offset = len(variant.label.split()) - 1
        assert float(row[3 + offset]) == pytest.approx(sum(tests) / 2, abs=0.051)
        assert float(row[6 + offset]) == pytest.approx(min(tests), abs=0.051)
        trains = [100 * run.train_acc for run in runs]
        assert float(row[7 + offset]) == pytest.approx(sum(trains) / 2, abs=0.051)
        losses = [run.train_loss for run in runs]
        assert float(row[8 + offset]) == pytest.approx(sum(losses) / 2, abs=5e-4)
    # each run's numbers are its last epoch in the metrics the Trainer wrote
    (runs,) = [
        r for v, r in results.items() if (v.label, v.depth, v.zero_init) == ("spiking", 34, True)
    ]
    with open(tmp_path / "spiking_resnet34-zi1-s1" / "metrics.csv", newline="") as file:
        last = list(csv.DictReader(file))[-1]
    assert runs[1].test_acc == pytest.approx(float(last["test_acc"]))
    assert runs[1].train_acc == pytest.approx(float(last["train_acc"]))
    assert runs[1].train_loss == pytest.approx(float(last["train_loss"]))
    # each run trained the model and arguments its row names
    config = load_config_file(tmp_path / "spiking_resnet34-zi1-s1" / "config.toml")
    assert config["model"] == "spiking_resnet34" and config["seed"] == 1
    assert config["model_kwargs"] == {"stem": "cifar", "base_width": 4,
                                      "zero_init_residual": True}  # fmt: skip
    config = load_config_file(tmp_path / "sew_resnet18-IAND-zi0-s0" / "config.toml")
    assert config["model_kwargs"]["cnf"] == "IAND"
    assert config["model_kwargs"]["zero_init_residual"] is False
    assert config["optimizer"] == "sgd" and config["loss"] == "ce" and config["T"] == 2


def test_a_seed_gives_the_same_numbers_and_another_seed_others(tmp_path):
    pytest.importorskip("sklearn", reason="scikit-learn (the 'examples' extra) is needed")
    module = load_example("residual_depth")
    argv = [*TINY, "--depths", "18", "--families", "sew_add", "--output-dir", str(tmp_path)]

    def run(seed: str) -> tuple[float, float]:
        (runs,) = module.main([*argv, "--seeds", seed]).values()
        return runs[0].test_acc, runs[0].train_loss

    first = run("3")
    assert run("3") == first
    assert run("4") != first


def test_depths_no_family_has_are_refused():
    module = load_example("residual_depth")
    with pytest.raises(SystemExit):
        module.main(["--depths", "104", "--families", "spiking", "sew_add"])
