"""examples/latency_digits.py trains per loss and tests each net at several T (short)."""

from __future__ import annotations

import pytest

from conftest import load_example


def test_the_example_trains_each_loss_and_tests_at_each_t(capsys, tmp_path):
    pytest.importorskip("sklearn", reason="scikit-learn (the 'examples' extra) is needed")
    module = load_example("latency_digits")
    losses = ["ce", "tcl:lamb=0.1"]
    results = module.main(["--epochs", "5", "--train-samples", "384", "--test-samples", "96",
                           "--train-T", "2", "--eval-T", "1", "3", "--losses", *losses,
                           "--model-kwargs", "spiking_output=false",
                           "--output-dir", str(tmp_path)])  # fmt: skip
    assert list(results) == losses
    for accuracies in results.values():
        assert list(accuracies) == [1, 3]
        assert all(0.0 <= a <= 1.0 for a in accuracies.values())
    # trained well above chance (10%) in 5 short epochs, with logits out
    assert results["ce"][3] > 0.3, results
    assert (tmp_path / "tcl-lamb0.1" / "metrics.csv").is_file()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["loss", "T=1", "T=3", "time"]
    assert [line.split()[0] for line in lines[1:]] == losses
