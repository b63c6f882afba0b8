"""``spikeflow eval RUN --energy neuromc``: a trained digits run's training step priced on
NeuroMC, equal to neuromc_energy_report called by hand on the run's model, first test
batch, loss and optimizer; bad uses named."""

from __future__ import annotations

import json

import pytest
import torch

from spikeflow.cli import main
from spikeflow.errors import ConfigurationError
from train_runs import tiny


def _by_hand(checkpoint, optimizer: str):
    """neuromc_energy_report on the run's model (train mode), its first 32 test samples
    as the trainer feeds them, its loss, and a fresh optimizer of its kind (SGD: after
    one real step, so that the momentum buffers exist)."""
    from spikeflow.energy import neuromc_energy_report
    from spikeflow.losses import get_loss
    from spikeflow.training import load_trained_model

    run = load_trained_model(checkpoint)
    model = run.model.train()
    x, y = run.batch(32)
    loss = get_loss(run.config.loss)
    if optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9)
        loss(model(x), y).backward()
        opt.step()
        opt.zero_grad()
    else:
        opt = torch.optim.Adam(model.parameters())
    return neuromc_energy_report(model, x, y, loss, opt)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_eval_energy_neuromc_equals_the_report_by_hand(tmp_path, capsys, optimizer):
    from spikeflow.training import Trainer

    Trainer(tiny(tmp_path, "run", optimizer=optimizer, epochs=1), log=None).fit()
    checkpoint = tmp_path / "run" / "last.pt"
    out = tmp_path / "eval.json"
    assert main(["eval", "--checkpoint", str(checkpoint), "--no-progress",
                 "--energy", "neuromc", "--json", str(out)]) == 0  # fmt: skip
    text = capsys.readouterr().out
    step = json.loads(out.read_text())["neuromc"]
    expected = _by_hand(checkpoint, optimizer)
    assert step["samples"] == expected.samples == 32
    assert step["total_j"] == pytest.approx(expected.total, rel=1e-12)
    assert step["by_phase_j"] == pytest.approx(expected.by_phase(), rel=1e-12)
    assert step["per_sample_j"] == pytest.approx(expected.total / 32, rel=1e-12)
    names = {(row["name"], row["phase"]) for row in step["layers"]}
    assert names == {(w.name, w.phase) for w in expected.works}
    assert f"NeuroMC training step on 32 test samples: {expected.total * 1e6:.4g} µJ" in text


def test_eval_energy_refuses_other_models(tmp_path):
    from spikeflow.training.evaluation import evaluate_checkpoint

    with pytest.raises(SystemExit):
        main(["eval", "--checkpoint", str(tmp_path), "--energy", "spikesim"])
    with pytest.raises(ConfigurationError, match=r"energy \(--energy\) must be one of neuromc"):
        evaluate_checkpoint(tmp_path, energy="spikesim")
