"""The KEY=VALUE options (--model-kwargs, --neuron-kwargs): TOML values with Python's
True/False/None (whole, in lists and tables), errors naming the column, bools that do
what they say, and runs saved by the older parser with a string where a bool goes."""

from __future__ import annotations

import json

import pytest

from spikeflow.cli import main, parse_kwargs
from spikeflow.errors import ConfigurationError
from spikeflow.training import (
    Trainer,
    load_checkpoint,
    load_config_file,
    save_checkpoint,
)
from spikeflow.training.config import config_from_dict, resolve
from train_runs import (
    TINY,
    assert_same_weights,
    metrics,
    tiny,
    weights,
)

pytest.importorskip("sklearn", reason="the digits need scikit-learn (the 'examples' extra)")


def test_kwargs_options_parse_toml_values():
    parsed = parse_kwargs(["tau=2.0", "detach_reset=true", "surrogate_function=atan",
                           'sg={name = "sigmoid", alpha = 4}'], "--neuron-kwargs")  # fmt: skip
    assert parsed == {"tau": 2.0, "detach_reset": True, "surrogate_function": "atan",
                      "sg": {"name": "sigmoid", "alpha": 4}}  # fmt: skip
    assert parse_kwargs(['{"channels": 16}'], "--model-kwargs") == {"channels": 16}
    with pytest.raises(ConfigurationError, match="KEY=VALUE"):
        parse_kwargs(["tau"], "--neuron-kwargs")
    with pytest.raises(ConfigurationError, match=r"tau=2\.O"):  # a typo is not a string
        parse_kwargs(["tau=2.O"], "--neuron-kwargs")


#: The tiny run's options on the command line.
TINY_ARGS = ["--train-samples", "192", "--test-samples", "96", "--batch-size", "32", "-T", "2",
             "--no-progress", "--plots", "off", "--device", "cpu"]  # fmt: skip


def test_kwargs_options_read_pythons_constants():
    # False used to be the string 'False', which is truthy.
    parsed = parse_kwargs(["batch_norm=False", "detach_reset=True", "v_reset=None", "a=null",
                           "b=false", "c=none", "d=FALSE"], "--model-kwargs")  # fmt: skip
    assert parsed == {"batch_norm": False, "detach_reset": True, "v_reset": None, "a": None,
                      "b": False, "c": "none", "d": "FALSE"}  # fmt: skip


def test_a_bool_kwarg_does_what_it_says_or_is_refused(tmp_path, capsys):
    out = tmp_path / "no-bn"
    code = main(["train", *TINY_ARGS, "--epochs", "1", "--output-dir", str(out),
                 "--model-kwargs", "channels=8", "hidden=32", "batch_norm=False"])  # fmt: skip
    assert code == 0
    assert not [key for key in weights(out) if "running_mean" in key]  # no batch norm
    assert load_config_file(out / "config.toml")["model_kwargs"]["batch_norm"] is False
    # a value that is not a bool is an error naming the argument (it used to count as true)
    code = main(["train", *TINY_ARGS, "--epochs", "1", "--output-dir", str(tmp_path / "r1"),
                 "--neuron-kwargs", "learnable_threshold=yes"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "argument learnable_threshold must be true or false, got 'yes'" in err
    (tmp_path / "c.json").write_text(
        json.dumps({**TINY, "epochs": 1, "model_kwargs": {"batch_norm": "False"}})
    )
    code = main(["train", "--config", str(tmp_path / "c.json"),
                 "--output-dir", str(tmp_path / "r2")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "argument batch_norm must be true or false, got 'False' (str)" in err
    assert not (tmp_path / "r1" / "last.pt").exists() and not (tmp_path / "r2").exists()


def test_a_soft_reset_given_on_the_command_line_round_trips(tmp_path):
    # v_reset=None (soft reset) used to be the string 'None', refused by the neuron.
    from spikeflow.training.data import DataInfo
    from spikeflow.training.trainer import build_model

    args = ["train", *TINY_ARGS, "--epochs", "2", "--model-kwargs", "channels=8", "hidden=32",
            "--neuron", "lif", "--neuron-kwargs", "v_reset=None", "tau=2.0"]  # fmt: skip
    one, two = tmp_path / "one", tmp_path / "two"
    assert main([*args, "--output-dir", str(one), "--stop-after", "1"]) == 0
    config = config_from_dict(load_config_file(one / "config.toml"))
    assert config.neuron_kwargs == {"v_reset": None, "tau": 2.0}
    model = build_model(resolve(config), DataInfo(10, 1, (8, 8), static=True))
    lifs = [m for m in model.modules() if type(m).__name__ == "LIFNode"]
    assert lifs and all(m.v_reset is None for m in lifs)
    # a resume repeating the kwargs is no change; a rerun of config.toml is the same run
    assert main([*args, "--resume", str(one)]) == 0
    assert main(["train", "--config", str(one / "config.toml"), "--output-dir", str(two),
                 "--no-progress"]) == 0  # fmt: skip
    assert_same_weights(weights(one), weights(two))
    assert metrics(one) == metrics(two) and len(metrics(one)) == 2


def test_a_run_saved_with_a_string_bool_evaluates_and_resumes_as_it_ran(tmp_path, capsys):
    # Before K=V options read Python's False, `--neuron-kwargs detach_reset=False` saved
    # the string 'False' (config.toml and the checkpoint), which the neuron used as True.
    # eval and --resume of such a run refused it with no way out; they now read it as
    # the run did, with a warning, while new input (a rerun of config.toml) stays strict.
    from spikeflow.models.common import SavedRunWarning
    from spikeflow.training.evaluation import evaluate_checkpoint

    base = {**TINY, "epochs": 2, "neuron": "lif"}  # LIFNode's detach_reset defaults to False
    Trainer(tiny(tmp_path, "ran", base=base, neuron_kwargs={"detach_reset": True}), log=None).fit()
    old = tmp_path / "old"
    Trainer(tiny(tmp_path, "old", base=base, neuron_kwargs={"detach_reset": True},
                 stop_after=1), log=None).fit()  # fmt: skip
    expected = evaluate_checkpoint(old / "last.pt")
    # what the older spikeflow wrote
    payload = load_checkpoint(old / "last.pt")
    payload["config"]["neuron_kwargs"] = {"detach_reset": "False"}
    for name in ("last.pt", "best.pt"):
        save_checkpoint(payload, old / name)
    text = (old / "config.toml").read_text()
    assert "neuron_kwargs = {detach_reset = true}" in text
    (old / "config.toml").write_text(
        text.replace("{detach_reset = true}", '{detach_reset = "False"}')
    )
    with pytest.warns(SavedRunWarning, match=r"argument detach_reset is the string 'False'"):
        result = evaluate_checkpoint(old / "last.pt")
    assert (result["test_loss"], result["test_acc"]) == (
        expected["test_loss"], expected["test_acc"]
    )  # fmt: skip
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(old), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert err.startswith(
        "spikeflow eval: warning: neuron LIFNode: in the saved run, argument detach_reset "
        "is the string 'False', which is ambiguous"
    ), err
    assert "using True, what the run used" in err
    # --resume: the value the run used repeats it; False is a change, and says why
    resume = ["train", "--resume", str(old), "--no-progress"]
    assert main([*resume, "--neuron-kwargs", "detach_reset=False"]) == 2
    err = capsys.readouterr().err
    assert "fixed ['neuron_kwargs']" in err
    assert (
        "the checkpoint holds neuron_kwargs: detach_reset = 'False', which the run used as True"
        in err
    )
    assert main([*resume, "--neuron-kwargs", "detach_reset=True"]) == 0
    assert "warning: neuron LIFNode: in the saved run" in capsys.readouterr().err
    # it trained on as it had: the same weights as the run that never stopped
    assert_same_weights(weights(tmp_path / "ran"), weights(old))
    assert metrics(tmp_path / "ran") == metrics(old)
    # a rerun of config.toml is a new run: refused, saying what the old run used
    code = main(["train", "--config", str(old / "config.toml"),
                 "--output-dir", str(tmp_path / "rerun")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "argument detach_reset must be true or false, got 'False'" in err
    assert "that run used it as True" in err


def test_kwargs_options_read_pythons_constants_inside_lists_and_tables():
    # True/False/None used to be read only as a whole value: in the table the docs give
    # for a surrogate they were a TOML error. Quoted strings and keys stay as written.
    parsed = parse_kwargs(
        ['surrogate_function={name = "atan", spiking = False}', "channels=[32, None]",
         'nested={a = [True, {b = null}], "None" = None, True = "False", c = "x None y"}',
         "s=['None', \"True\", '''False''', \"a\\\"None\"]", "n=[1, 2] # None"],
        "--neuron-kwargs",
    )  # fmt: skip
    assert parsed == {
        "surrogate_function": {"name": "atan", "spiking": False},
        "channels": [32, None],
        "nested": {"a": [True, {"b": None}], "None": None, "True": "False", "c": "x None y"},
        "s": ["None", "True", "False", 'a"None'],
        "n": [1, 2],
    }
    with pytest.raises(ConfigurationError, match=r"True, False and None are read in lists"):
        parse_kwargs(["x=[Tru]"], "--neuron-kwargs")


@pytest.mark.parametrize(
    ("item", "column"),
    [("a={x = 2.O}", 7), ("a=[None, 2.O]", 9), ("a=[None, None, 1.2.3]", 17),
     ("a=[True, 2x]", 9)],
)  # fmt: skip
def test_a_toml_error_names_the_column_in_the_value_as_typed(item, column):
    # The parser's column counted its "v = " prefix and the long marker None becomes
    # ("column 48" for the 9th character).
    with pytest.raises(ConfigurationError, match=rf"\(at column {column} of the value\)$"):
        parse_kwargs([item], "--model-kwargs")


def test_a_resume_takes_a_bool_for_a_saved_string_only_where_an_old_parser_wrote_one():
    """Saved 'False'/'True' strings (the old K=V parser's) match the bool the run used;
    any other string (a surrogate name) given a bool on resume is a change, refused."""
    from spikeflow.training.config import TrainConfig, config_to_dict
    from spikeflow.training.trainer import config_for_resume

    saved = TrainConfig(neuron_kwargs={"surrogate_function": "atan", "detach_reset": "False"})
    payload = {"config": config_to_dict(saved)}
    config_for_resume(
        payload, {"neuron_kwargs": {"surrogate_function": "atan", "detach_reset": True}}
    )
    with pytest.raises(ConfigurationError, match="fixed \\['neuron_kwargs'\\]"):
        config_for_resume(
            payload, {"neuron_kwargs": {"surrogate_function": True, "detach_reset": True}}
        )
