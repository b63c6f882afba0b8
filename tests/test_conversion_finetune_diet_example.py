"""examples/convert_finetune_digits_diet.py: the leak / STDB comparison, a short run."""

from __future__ import annotations

import pytest
import torch

from conftest import load_example


def test_diet_example_short_run(capsys):
    pytest.importorskip("sklearn", reason="scikit-learn (the 'examples' extra) is needed")
    module = load_example("convert_finetune_digits_diet")
    threads = torch.get_num_threads()
    try:
        result = module.main(
            ["--seeds", "0", "--steps", "4", "--epochs", "10", "--finetune-epochs", "2",
             "--variants", "triangle,stdb + leak"]
        )  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    assert set(result.tuned) == {"triangle", "stdb + leak"} and result.ann[0] > 0.9
    # max-norm is at chance at T = 4; the triangle surrogate lifts it in two epochs
    assert result.converted[4][0] < 0.2 and result.tuned["triangle"][4][0] > 0.8, result
    assert len(result.leaks["stdb + leak"][4][0]) == 4  # one λ per neuron layer, as run
    assert all(lk == 1.0 for lk in result.leaks["triangle"][4][0])
    assert "stdb + leak" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        module.main(["--variants", "leaky"])
