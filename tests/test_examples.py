"""The README's main job (examples/train_digits.py, = `spikeflow train` with no
arguments) reaches the accuracy the issue asks for, as the README runs it."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "train_digits.py"


def test_digits_example_with_its_defaults_reaches_95_percent(capsys, tmp_path):
    pytest.importorskip("sklearn", reason="scikit-learn (the 'examples' extra) is needed")
    spec = importlib.util.spec_from_file_location("train_digits", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    start = time.perf_counter()
    acc = module.main(["--output-dir", str(tmp_path)])  # the defaults: 40 epochs, T=4
    elapsed = time.perf_counter() - start
    assert acc >= 0.95, f"the default run reached only {acc:.4f} test accuracy"
    out = capsys.readouterr().out
    assert f"test accuracy: {acc:.4f}" in out
    print(f"default digits run: {acc:.4f} in {elapsed:.0f} s")
