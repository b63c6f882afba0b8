"""``spikeflow eval --early-exit``: a trained digits run evaluated with early exit,
against the exits read off a whole run of the same model and samples by a plain
per-sample loop; the operations count only the steps run; bad options are named."""

from __future__ import annotations

import json

import pytest
import torch

from spikeflow.cli import main
from spikeflow.errors import ConfigurationError
from spikeflow.inference import ExitRule
from spikeflow.training.early_exit_eval import parse_early_exit
from test_inference_early_exit import reference_exits
from train_runs import tiny


def _outputs_and_labels(checkpoint) -> tuple[torch.Tensor, torch.Tensor]:
    """The run's model on its test samples, all T steps: outputs [T, N, K], labels [N]."""
    from spikeflow.training import load_trained_model

    run = load_trained_model(checkpoint)
    x, labels = run.batch(len(run.test_set))
    with torch.no_grad():
        return run.model(x), labels


def test_eval_early_exit_equals_the_reference(tmp_path, capsys):
    from spikeflow.training import Trainer

    Trainer(tiny(tmp_path, "run", T=4), log=None).fit()
    checkpoint = tmp_path / "run" / "last.pt"
    out_seq, labels = _outputs_and_labels(checkpoint)
    low, high = 0.105, 0.125  # rate outputs in [0, 1]: confidences in [0.1, 0.232]
    out = tmp_path / "eval.json"
    assert main(["eval", "--checkpoint", str(checkpoint), "--no-progress", "--operations",
                 "--early-exit", f"confidence:{low},{high}", "--json", str(out)]) == 0  # fmt: skip
    text = capsys.readouterr().out
    result = json.loads(out.read_text())
    points = result["early_exit"]
    assert [p["threshold"] for p in points] == [low, high]
    spread = set()
    for point in points:
        steps, predictions, _ = reference_exits(out_seq, ExitRule("confidence", point["threshold"]))
        spread |= set(steps)
        assert point["samples"] == len(labels) == 96
        assert point["accuracy"] == sum(
            p == int(y) for p, y in zip(predictions, labels, strict=True)
        ) / len(labels)
        assert point["mean_steps"] == pytest.approx(sum(steps) / len(steps), abs=1e-12)
        assert point["exits"] == [steps.count(t) for t in range(1, 5)]
        # the first convolution reads the image (the only MACs): its dense count per
        # sample and step, times the steps run
        per_step = result["operations"]["macs_per_sample"] / 4
        assert point["operations"]["macs_per_sample"] == pytest.approx(
            per_step * point["mean_steps"]
        )
        assert point["operations"]["acs_per_sample"] < result["operations"]["acs_per_sample"]
    assert len(spread) >= 2, "the thresholds should stop samples at different steps"
    assert "early exit over time steps (confidence of the time-mean output; T=4)" in text
    assert "all steps" in text


def test_bad_early_exit_options(tmp_path, capsys):
    for text, match in [
        ("confidence", "CRITERION:THRESHOLD"),
        ("margin:0.5", "CRITERION:THRESHOLD"),
        ("entropy:0.1,x", "the threshold 'x' is not a number"),
        ("confidence:1.5", r"threshold must be a finite real number in \[0, 1\], got 1.5"),
    ]:
        with pytest.raises(ConfigurationError, match=match):
            parse_early_exit(text)
    rules = parse_early_exit("entropy:0.05,0.1", "sum")
    assert rules == [ExitRule("entropy", 0.05, "sum"), ExitRule("entropy", 0.1, "sum")]
    # on the command line: status 2, the option named, before any work
    missing = tmp_path / "none.pt"
    assert main(["eval", "--checkpoint", str(missing), "--early-exit", "confidence:2"]) == 2
    assert (
        "--early-exit confidence:2: early exit: the confidence threshold" in capsys.readouterr().err
    )
    # the accumulation alone would be ignored silently: refused
    assert main(["eval", "--checkpoint", str(missing), "--early-exit-accumulate", "sum"]) == 2
    assert "--early-exit-accumulate) needs early_exit (--early-exit)" in capsys.readouterr().err
