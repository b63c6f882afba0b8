"""The README's main job (examples/train_digits.py, = `spikeflow train` with no
arguments) reaches the accuracy the issue asks for, as the README runs it."""

from __future__ import annotations

import time

import pytest

from conftest import load_example


def test_digits_example_with_its_defaults_reaches_95_percent(capsys, tmp_path):
    pytest.importorskip("sklearn", reason="scikit-learn (the 'examples' extra) is needed")
    module = load_example("train_digits")
    start = time.perf_counter()
    acc = module.main(["--output-dir", str(tmp_path)])  # the defaults: 40 epochs, T=4
    elapsed = time.perf_counter() - start
    assert acc >= 0.95, f"the default run reached only {acc:.4f} test accuracy"
    out = capsys.readouterr().out
    assert f"test accuracy: {acc:.4f}" in out
    print(f"default digits run: {acc:.4f} in {elapsed:.0f} s")
