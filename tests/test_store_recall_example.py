"""examples/store_recall_alif.py runs end to end on a tiny store-recall task (the
accuracies of full runs are in docs/datasets.md); the ALIF and LIF networks differ."""

from __future__ import annotations

import math

from conftest import load_example


def test_the_example_runs_and_reports(capsys):
    module = load_example("store_recall_alif")
    tiny = ["--epochs", "1", "--train-samples", "32", "--test-samples", "16", "--seq-length",
            "4", "--seq-periods", "2", "--hidden", "8", "--batch-size", "16"]  # fmt: skip
    alif = module.main(tiny)
    lif = module.main([*tiny, "--neuron", "lif"])
    for result in (alif, lif):
        assert set(result) == {"loss", "accuracy", "rate"}
        assert math.isfinite(result["loss"]) and 0.0 <= result["accuracy"] <= 1.0
        assert 0.0 <= result["rate"] <= 1.0
    assert alif != lif  # beta = 0 is another network
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("alif:") and "T = 8 steps" in lines[0]
    assert lines[1].split()[:2] == ["epoch", "1"]
