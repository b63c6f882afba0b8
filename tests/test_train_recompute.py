"""`spikeflow train --recompute`: the same training bit for bit, and a runtime option
(a run may be resumed with or without it)."""

from __future__ import annotations

import pytest
import torch

from spikeflow.cli import main
from spikeflow.errors import ConfigurationError
from spikeflow.memory.blocks import _SegmentedSequential
from spikeflow.training import Trainer, config_for_resume, load_checkpoint
from spikeflow.training.config import resolve
from train_runs import tiny

pytest.importorskip("sklearn", reason="the digits need scikit-learn (the 'examples' extra)")


def _weights(path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path / "last.pt")["model"]


def test_recompute_trains_exactly_as_without(tmp_path):
    Trainer(tiny(tmp_path, "plain"), log=None).fit()
    Trainer(tiny(tmp_path, "recompute", recompute=True), log=None).fit()
    plain, recomputed = _weights(tmp_path / "plain"), _weights(tmp_path / "recompute")
    assert plain.keys() == recomputed.keys()
    for key in plain:
        assert torch.equal(plain[key], recomputed[key]), key


def test_the_model_is_recomputed_and_a_resume_may_add_it(tmp_path):
    trainer = Trainer(tiny(tmp_path, "run", recompute=True, epochs=1), log=None)
    trainer.fit()
    assert any(isinstance(m, _SegmentedSequential) for m in trainer.raw_model.modules())
    Trainer(tiny(tmp_path, "full"), log=None).fit()
    Trainer(tiny(tmp_path, "split", stop_after=1), log=None).fit()
    payload = load_checkpoint(tmp_path / "split" / "last.pt")
    resumed = config_for_resume(payload, {"recompute": True})
    assert resumed.recompute
    Trainer(resumed, resume=payload, log=None).fit()
    full, split = _weights(tmp_path / "full"), _weights(tmp_path / "split")
    for key in full:
        assert torch.equal(full[key], split[key]), key


def test_recompute_is_refused_with_online_training(tmp_path):
    with pytest.raises(ConfigurationError, match="recompute cannot be combined with online"):
        resolve(tiny(tmp_path, "run", recompute=True, online=True, loss="ce"))


def test_command_line_flag(tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["train", "--recompute", "--epochs", "1", "--train-samples", "64",
                 "--test-samples", "32", "-T", "2", "--output-dir", str(out),
                 "--no-progress", "--plots", "off"])  # fmt: skip
    assert code == 0
    assert "recompute = true" in (out / "config.toml").read_text()
