"""examples/convert_llm_text.py: a Qwen2 trained on real text, converted (a short run)."""

from __future__ import annotations

import pytest
import torch

from conftest import load_example


def test_convert_llm_text_example_short_run(capsys):
    pytest.importorskip("transformers", reason="transformers (the 'llm' extra) is needed")
    threads = torch.get_num_threads()
    try:  # 60 training steps (loss about 2.8 nats), two of the table's levels
        decode = ["--decode-levels", "16", "--decode-prompts", "4", "--decode-new", "6"]
        result = load_example("convert_llm_text").main(
            ["--steps", "60", "--levels", "4,16", "--generate", "6", *decode]
        )
    finally:
        torch.set_num_threads(threads)
    rows = result["rows"]
    assert set(rows) == {(4, 4), (4, 8), (16, 16), (16, 32)}
    assert result["cache_equal"]
    # more levels: closer to the float model (mean error, top byte, bits per byte)
    assert rows[(16, 32)][3] < rows[(4, 8)][3] / 3
    assert rows[(16, 32)][4] > rows[(4, 8)][4]
    assert abs(rows[(16, 32)][5] - result["float_bpb"]) < abs(rows[(4, 8)][5] - result["float_bpb"])
    # the running logits before step T are further off than at T
    assert rows[(16, 32)][0] > rows[(16, 32)][2]
    assert "| 16 | 32 |" in capsys.readouterr().out
    # decoding: the exact form's beams and coupled draws are transformers' own
    decoded = result["decoding"]
    assert set(decoded) == {"exact", 16}
    assert decoded["exact"] == (6.0, 1.0, 6.0, 1.0)
    assert all(0 <= value <= 6 for value in decoded[16])


def test_finetune_llm_qcfs_example_short_run(capsys):
    pytest.importorskip("transformers", reason="transformers (the 'llm' extra) is needed")
    threads = torch.get_num_threads()
    try:  # 60 float steps, 15 fine-tuning steps at L = T = 4
        args = ["--steps", "60", "--finetune-steps", "15", "--lr", "3e-3", "--generate", "4"]
        result = load_example("finetune_llm_qcfs").main(args)
    finally:
        torch.set_num_threads(threads)
    # the quantised model loses to the float one; fine-tuning through it wins some back
    assert result["before"] > result["float"]
    assert result["after"] < result["before"] - 0.05
    assert result["last_loss"] < result["first_loss"]
    assert "| spikes, after 15 qcfs_sg steps |" in capsys.readouterr().out
