"""Training configurations: config files (TOML, JSON, YAML) that round-trip a run,
their values checked and named (bools, seeds, strings, numbers, unknown keys), and
config.toml written atomically without the invocation's options."""

from __future__ import annotations

import json
import os
import re

import pytest

from spikeflow.cli import main
from spikeflow.errors import ConfigurationError, MissingExtraError
from spikeflow.training import (
    TrainConfig,
    Trainer,
    load_checkpoint,
    load_config_file,
)
from spikeflow.training.config import config_from_dict, dump_toml
from spikeflow.training.metric_logs import read_csv
from train_runs import (
    TINY,
    assert_same_weights,
    metrics,
    tiny,
    weights,
)

pytest.importorskip("sklearn", reason="the digits need scikit-learn (the 'examples' extra)")


def test_command_line_kwargs_add_to_the_config_files_table(tmp_path):
    source = tmp_path / "run.toml"
    values = {**TINY, "epochs": 1, "neuron": "lif",
              "neuron_kwargs": {"tau": 3.0, "v_threshold": 0.5}}  # fmt: skip
    source.write_text(dump_toml(values))
    out = tmp_path / "out"
    assert main(["train", "--config", str(source), "--output-dir", str(out), "--no-progress",
                 "--neuron-kwargs", "tau=4.0", "detach_reset=true"]) == 0  # fmt: skip
    written = load_config_file(out / "config.toml")["neuron_kwargs"]
    assert written == {"tau": 4.0, "v_threshold": 0.5, "detach_reset": True}


def test_config_file_round_trip_reproduces_the_run(tmp_path):
    source = tmp_path / "run.toml"
    values = {**TINY, "epochs": 2, "neuron": "lif", "neuron_kwargs": {"tau": 3.0},
              "optimizer": "sgd", "lr": 0.05, "schedule": "step", "step_size": 1}  # fmt: skip
    source.write_text(dump_toml(values))
    out1, out2 = tmp_path / "one", tmp_path / "two"
    assert main(["train", "--config", str(source), "--output-dir", str(out1)]) == 0
    written = load_config_file(out1 / "config.toml")
    assert {k: written[k] for k in values} == values
    assert main(["train", "--config", str(out1 / "config.toml"), "--output-dir", str(out2)]) == 0
    assert load_config_file(out2 / "config.toml") == written
    assert_same_weights(weights(out1), weights(out2))
    # the same numbers, epoch by epoch and layer by layer
    assert metrics(out1) == metrics(out2) and len(metrics(out1)) == 2
    assert read_csv(out1 / "layers.csv") == read_csv(out2 / "layers.csv")
    if _has_yaml():  # the same run from a YAML file
        import yaml

        (tmp_path / "run.yaml").write_text(yaml.safe_dump(values))
        out3 = tmp_path / "three"
        assert (
            main(["train", "--config", str(tmp_path / "run.yaml"), "--output-dir", str(out3)]) == 0
        )
        assert load_config_file(out3 / "config.toml") == written
        assert metrics(out3) == metrics(out1)


def test_config_formats_and_errors(tmp_path, monkeypatch):
    (tmp_path / "c.json").write_text(json.dumps({"epochs": 2, "neuron_kwargs": {"tau": 2.5}}))
    (tmp_path / "c.yaml").write_text("epochs: 2\nneuron_kwargs:\n  tau: 2.5\n")
    (tmp_path / "bad.toml").write_text("epochz = 2\n")
    assert load_config_file(tmp_path / "c.json") == {"epochs": 2, "neuron_kwargs": {"tau": 2.5}}
    if _has_yaml():
        assert load_config_file(tmp_path / "c.yaml") == load_config_file(tmp_path / "c.json")
    with pytest.raises(ConfigurationError, match="epochz"):
        config_from_dict(load_config_file(tmp_path / "bad.toml"))
    with pytest.raises(ConfigurationError, match="optimizer"):
        config_from_dict({"optimizer": "lamb"}).validate()
    monkeypatch.setitem(__import__("sys").modules, "yaml", None)
    with pytest.raises(MissingExtraError, match=r"spikeflow\[yaml\]"):
        load_config_file(tmp_path / "c.yaml")


def _has_yaml() -> bool:
    try:
        import yaml  # noqa: F401
    except ImportError:
        return False
    return True


def test_config_files_hold_any_unicode_and_resume_checks_a_config_file(tmp_path, capsys):
    # An emoji in a path: JSON's surrogate-pair escapes are not valid TOML.
    values = {"data_dir": str(tmp_path / "data 😀"), "epochs": 2}
    (tmp_path / "u.toml").write_text(dump_toml(values), encoding="utf-8")
    assert load_config_file(tmp_path / "u.toml") == values
    # --resume with --config: the file's values are checked like flags (not ignored).
    Trainer(tiny(tmp_path, "cut", stop_after=1), log=None).fit()
    (tmp_path / "other.toml").write_text(dump_toml({"lr": 0.5}))
    code = main(["train", "--resume", str(tmp_path / "cut"), "--config",
                 str(tmp_path / "other.toml"), "--no-progress"])  # fmt: skip
    assert code == 2 and "lr" in capsys.readouterr().err


def test_resume_with_the_same_config_and_kwargs_options(tmp_path):
    # The file's tables merge with --neuron-kwargs on the resume as on the first run,
    # and a table the file holds as a JSON string (a null in it) reads as a table.
    source = tmp_path / "run.toml"
    source.write_text(dump_toml({**TINY, "epochs": 2, "neuron": "lif",
                                 "neuron_kwargs": {"tau": 3.0, "v_reset": None}}))  # fmt: skip
    assert 'neuron_kwargs = "{' in source.read_text()
    first = ["train", "--config", str(source), "--neuron-kwargs", "detach_reset=true",
             "--no-progress"]  # fmt: skip
    assert main([*first, "--output-dir", str(tmp_path / "r"), "--stop-after", "1"]) == 0
    assert main([*first, "--resume", str(tmp_path / "r")]) == 0
    assert load_checkpoint(tmp_path / "r" / "last.pt")["config"]["neuron_kwargs"] == {
        "tau": 3.0, "v_reset": None, "detach_reset": True}  # fmt: skip


def test_a_null_in_kwargs_survives_the_config_file(tmp_path):
    # TOML has no null: v_reset = None (soft reset) used to be dropped, so a rerun from
    # config.toml trained another network (hard reset).
    source = tmp_path / "run.json"
    values = {**TINY, "epochs": 1, "neuron": "lif", "neuron_kwargs": {"v_reset": None, "tau": 2.0}}
    source.write_text(json.dumps(values))
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["train", "--config", str(source), "--output-dir", str(one)]) == 0
    written = config_from_dict(load_config_file(one / "config.toml"))
    assert written.neuron_kwargs == {"v_reset": None, "tau": 2.0}
    assert main(["train", "--config", str(one / "config.toml"), "--output-dir", str(two)]) == 0
    assert metrics(one) == metrics(two)
    assert_same_weights(weights(one), weights(two))


def test_bool_config_keys_must_be_true_or_false(tmp_path, capsys):
    # A config file's overwrite = "false" (a string) used to act as true.
    import dataclasses

    bools = {f.name for f in dataclasses.fields(TrainConfig) if f.type == "bool"}
    assert bools == {
        "overwrite",
        "progress",
        "tensorboard",
        "download",
        "online",
        "compile",
        "recompute",
        "decolle",
        "no_decay_norm_bias",
        "model_ema",
        "sync_bn",
        "fsdp",
        "ra_sampler",
        "teacher_ema",
        "nesterov",
    }
    for name in sorted(bools):
        for value in ("false", "no", 0, 1, None):
            with pytest.raises(ConfigurationError, match=rf"{name} must be true or false, got "
                                                         rf"{re.escape(repr(value))}"):  # fmt: skip
                config_from_dict({name: value}).validate()
        needs = {
            "teacher_ema": {"teacher": str(tmp_path / "teacher")},
            "nesterov": {"optimizer": "sgd"},
        }.get(name, {})
        config_from_dict({name: True, **needs}).validate()
    Trainer(tiny(tmp_path, "precious", epochs=1, seed=7), log=None).fit()
    (tmp_path / "c.json").write_text(json.dumps({**TINY, "epochs": 1, "overwrite": "false"}))
    code = main(["train", "--config", str(tmp_path / "c.json"),
                 "--output-dir", str(tmp_path / "precious")])  # fmt: skip
    assert code == 2
    assert "overwrite must be true or false, got 'false'" in capsys.readouterr().err
    assert load_checkpoint(tmp_path / "precious" / "last.pt")["config"]["seed"] == 7


def test_resume_with_a_config_file_holding_an_unknown_key_names_it(tmp_path, capsys):
    Trainer(tiny(tmp_path, "run", epochs=2, stop_after=1), log=None).fit()
    (tmp_path / "typo.toml").write_text("epochz = 2\n")
    code = main(["train", "--resume", str(tmp_path / "run"), "--config",
                 str(tmp_path / "typo.toml"), "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("spikeflow train: error: unknown config key(s) ['epochz']; valid keys")
    assert len(read_csv(tmp_path / "run" / "metrics.csv")) == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"seed": 99999999999999999999}, r"seed must be an integer from 0 to 2\*\*32 - 1 "
                                         r"\(4294967295\), got 99999999999999999999"),
        ({"seed": 2**32}, r"seed must be an integer .*got 4294967296"),
        ({"seed": -1}, r"seed must be an integer .*got -1"),
        ({"seed": 1.5}, r"seed must be an integer .*got 1\.5"),
        ({"output_dir": 5}, r"output_dir must be a string, got 5"),
        ({"loss": ["mse"]}, r"loss must be a string, got \['mse'\]"),
        ({"data_dir": 5}, r"data_dir must be a string, got 5"),
        ({"cache_dir": True}, r"cache_dir must be a string, got True"),
        ({"model": 5}, r"model must be a string, got 5"),
        ({"neuron": ["lif"]}, r"neuron must be a string, got \['lif'\]"),
        ({"device": 0}, r"device must be a string, got 0"),
        ({"optimizer": ["sgd"]}, r"optimizer must be a string, got \['sgd'\]"),
        ({"schedule": 1}, r"schedule must be a string, got 1"),
        ({"plots": False}, r"plots must be a string, got False"),
        ({"lr": True}, r"lr must be a finite number >= 0, got True"),
        ({"weight_decay": False}, r"weight_decay must be a finite number >= 0, got False"),
        ({"momentum": 5}, r"momentum must be >= 0 and < 1, got 5"),
        ({"momentum": 1.0}, r"momentum must be >= 0 and < 1, got 1\.0"),
    ],
)  # fmt: skip
def test_bad_config_values_exit_with_status_2_naming_the_key(tmp_path, capsys, change, message):
    (tmp_path / "c.json").write_text(json.dumps({**TINY, "epochs": 1, **change}))
    args = ["train", "--config", str(tmp_path / "c.json")]
    if "output_dir" not in change:
        args += ["--output-dir", str(tmp_path / "out")]
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("spikeflow train: error: ")
    assert re.search(message, err), err
    assert not (tmp_path / "out").exists()


def test_seed_on_the_command_line_is_range_checked_and_the_largest_seed_trains(tmp_path, capsys):
    args = ["train", "--epochs", "1", "--no-progress", "--plots", "off",
            "--train-samples", "64", "--test-samples", "32", "--model-kwargs", "channels=8",
            "hidden=32", "-T", "2", "--device", "cpu"]  # fmt: skip
    code = main([*args, "--seed", "99999999999999999999", "--output-dir", str(tmp_path / "a")])
    assert code == 2 and "seed must be an integer" in capsys.readouterr().err
    # every seed the check lets through trains (the trainer derives larger seeds from it)
    assert main([*args, "--seed", str(2**32 - 1), "--output-dir", str(tmp_path / "b")]) == 0
    assert load_checkpoint(tmp_path / "b" / "last.pt")["config"]["seed"] == 2**32 - 1


def test_path_options_take_a_pathlib_path_in_the_python_api(tmp_path):
    from spikeflow.training.config import resolve

    config = resolve(TrainConfig(output_dir=tmp_path / "run", cache_dir=tmp_path / "cache"))
    assert config.output_dir == str(tmp_path / "run")
    assert config.cache_dir == str(tmp_path / "cache")


def test_a_failed_config_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    import errno

    from spikeflow.training.config import save_config

    target = tmp_path / "config.toml"
    save_config(tiny(tmp_path, "x"), target)
    before = target.read_text()

    def disk_full(fd: int) -> None:  # once the temporary file is written
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        save_config(tiny(tmp_path, "x", seed=3), target)
    assert [p.name for p in tmp_path.iterdir()] == ["config.toml"]
    assert target.read_text() == before


def test_config_toml_leaves_out_stop_after(tmp_path):
    # A rerun of a --stop-after run's config.toml trains every epoch of it.
    Trainer(tiny(tmp_path, "a", epochs=2, stop_after=1), log=None).fit()
    written = load_config_file(tmp_path / "a" / "config.toml")
    assert "stop_after" not in written and written["epochs"] == 2
    assert main(["train", "--config", str(tmp_path / "a" / "config.toml"),
                 "--output-dir", str(tmp_path / "b")]) == 0  # fmt: skip
    assert [int(r["epoch"]) for r in metrics(tmp_path / "b")] == [1, 2]
