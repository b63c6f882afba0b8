"""``spikeflow.training.load_trained_model``: a ``spikeflow train`` run's model back in
Python, checked against the checkpoint's weights and ``spikeflow eval``'s accuracy."""

from __future__ import annotations

import pytest
import torch

from spikeflow.errors import ConfigurationError
from spikeflow.functional import reset_net
from spikeflow.losses import predict
from spikeflow.training import TrainConfig, Trainer, load_trained_model
from spikeflow.training.checkpoint import load_checkpoint
from spikeflow.training.evaluation import evaluate_checkpoint
from spikeflow.training.train_config import resolved_readout


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A short digits run with 8-bit weights (a parametrized model, as pruning's)."""
    out = tmp_path_factory.mktemp("run") / "digits"
    config = TrainConfig(
        dataset="digits", epochs=2, test_samples=120, weight_bits=8,
        output_dir=str(out), progress=False, plots="off",
    )  # fmt: skip
    Trainer(config).fit()
    return out


def test_weights_are_the_checkpoints(run_dir):
    trained = load_trained_model(run_dir)
    assert trained.checkpoint == run_dir / "best.pt"
    assert not trained.model.training
    saved = load_checkpoint(run_dir / "best.pt")["model"]
    state = trained.model.state_dict()
    assert state.keys() == saved.keys()
    for name, tensor in saved.items():
        assert torch.equal(state[name], tensor), name


def test_accuracy_equals_spikeflow_eval(run_dir):
    reference = evaluate_checkpoint(run_dir / "last.pt")
    trained = load_trained_model(run_dir / "last.pt")
    assert trained.config.T == 4 and trained.config.test_samples == 120
    x, y = trained.batch(len(trained.test_set))
    assert x.shape == (4, 120, 1, 8, 8)  # time-major, the image repeated over T
    assert torch.equal(x[0], x[3])
    with torch.no_grad():
        out = trained.model(x)
    reset_net(trained.model)
    correct = (predict(out, resolved_readout(trained.config)) == y).sum().item()
    assert correct == round(reference["test_acc"] * reference["samples"])
    assert reference["samples"] == 120


def test_bad_input_is_named(run_dir, tmp_path):
    with pytest.raises(ConfigurationError, match=r"without best\.pt or last\.pt"):
        load_trained_model(tmp_path)
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_trained_model(tmp_path / "nothing.pt")
    with pytest.raises(ConfigurationError, match=r"must be a str or os\.PathLike.*got int 5"):
        load_trained_model(5)  # before: a bare TypeError from pathlib
    trained = load_trained_model(run_dir)
    with pytest.raises(ConfigurationError, match="batch size must be a positive integer"):
        trained.batch(0)
