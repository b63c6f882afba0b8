"""examples/prune_digits.py trains real pruned runs and reports them (short runs)."""

from __future__ import annotations

import pytest

from conftest import load_example


def test_the_example_prunes_each_method_and_prints_the_table(capsys, tmp_path):
    pytest.importorskip("sklearn", reason="scikit-learn (the 'examples' extra) is needed")
    module = load_example("prune_digits")
    settings = ["dense", "grad_r:alpha=0.5", "stds:final_threshold=0.05,shape=linear",
                "lats:l1=20"]  # fmt: skip
    results = module.main(["--epochs", "2", "--train-samples", "192", "--test-samples", "96",
                           "--output-dir", str(tmp_path), "--settings", *settings])  # fmt: skip
    assert list(results) == settings
    assert results["dense"][1] == 0.0
    for setting in settings[1:]:
        assert results[setting][1] > 0.05, (setting, results[setting])
    assert (tmp_path / "stds-final_threshold0.05-shapelinear" / "metrics.csv").is_file()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["setting", "test", "acc", "sparsity", "time"]
    assert [line.split()[0] for line in lines[1:]] == settings
