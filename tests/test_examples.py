"""The README's main job (examples/train_digits.py) really learns."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "train_digits.py"


def test_digits_example_learns_in_a_few_epochs(capsys):
    pytest.importorskip("sklearn", reason="scikit-learn (the 'examples' extra) is needed")
    spec = importlib.util.spec_from_file_location("train_digits", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    acc = module.main(["--epochs", "4", "--T", "4"])
    assert acc > 0.9, f"PLIF CSNN reached only {acc:.3f} on the digits after 4 epochs"
    assert "test accuracy" in capsys.readouterr().out
