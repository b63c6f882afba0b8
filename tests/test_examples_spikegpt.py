"""examples/spikegpt_text.py (docs/language.md): the corpus split, the bits-per-byte
evaluation (every validation byte after the first counted once, exactly 8 bits for
uniform predictions), the equal-size LSTM, and a short run of the script."""

from __future__ import annotations

import json

import torch
from torch import nn

from conftest import load_example


class _Uniform(nn.Module):
    """Equal logits for the 256 bytes (8 bits per byte), recording what it was fed."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        self.seen.append(tokens)
        return torch.zeros(*tokens.shape, 256)


def test_split_and_bits_per_byte():
    module = load_example("spikegpt_text")
    train, val = module.corpus()
    assert len(train) == int(0.9 * (len(train) + len(val))) and val.max() < 256
    model = _Uniform()
    values = torch.arange(1000) % 256
    assert abs(module.bits_per_byte(model, values, 128, 4) - 8.0) < 1e-5  # (float32)
    # 999 predictions: 7 full windows of 128 (batches of 4 and 3), then 103
    assert [tuple(x.shape) for x in model.seen] == [(128, 4), (128, 3), (103, 1)]
    fed = torch.cat([x.t().flatten() for x in model.seen])
    assert torch.equal(fed, values[:999])  # each byte but the last read once, in order
    # 1024 bytes: the eighth window would need byte 1024, so it is the shorter one
    model = _Uniform()
    assert abs(module.bits_per_byte(model, torch.arange(1024) % 256, 128, 4) - 8.0) < 1e-5
    assert [tuple(x.shape) for x in model.seen] == [(128, 4), (128, 3), (127, 1)]


def test_lstm_matches_the_parameter_count():
    module = load_example("spikegpt_text")
    lstm = module.lstm_of_size(923_648)
    count = module.count(lstm)
    assert count <= 923_648 < module.count(module.ByteLSTM(lstm.lstm.hidden_size + 1))


def test_a_short_run_reports_everything(tmp_path, capsys):
    module = load_example("spikegpt_text")
    out = tmp_path / "results.json"
    argv = ["--model", "spikegpt", "--steps", "2", "--d-model", "16", "--layers", "1",
            "--context", "32", "--batch", "64", "--sample-bytes", "8"]  # fmt: skip
    argv += ["--out", str(out)]
    (result,) = module.main(argv)
    assert json.loads(out.read_text()) == [result]
    assert result["parameters"] == sum(
        p.numel() for p in module.create_model("spike_gpt", d_model=16, n_layers=1).parameters()
    )
    assert 6.0 < result["val_bits_per_byte"] < 9.0  # near chance after two steps
    assert result["sample"].startswith(module.PROMPT)
    assert set(result["firing_rates"]) == {
        "binary_embedding", "blocks.0.neuron_att", "blocks.0.neuron_ffn"
    }  # fmt: skip
    assert 0.3 < result["firing_rates"]["binary_embedding"] < 0.7


def test_l2wrap_flag_wraps_every_training_loss(monkeypatch):
    module = load_example("spikegpt_text")
    calls, real = [], module.l2wrap

    def spy(loss, logits):
        calls.append(tuple(logits.shape))
        return real(loss, logits)

    monkeypatch.setattr(module, "l2wrap", spy)
    argv = ["--model", "rwkv", "--steps", "2", "--d-model", "8", "--layers", "1",
            "--context", "16", "--batch", "4", "--sample-bytes", "2"]  # fmt: skip
    (plain,) = module.main(argv)
    assert calls == [] and plain["l2wrap"] is False
    (wrapped,) = module.main([*argv, "--l2wrap"])
    assert calls == [(16, 4, 256)] * 2 and wrapped["l2wrap"] is True
