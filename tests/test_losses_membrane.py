"""The membrane losses (snnTorch's mse_membrane_loss and ce_max_membrane_loss): by hand,
against loops, against snnTorch 1.0 in float64, gradcheck, errors, the ``max`` readout
and a training run through the command line's plumbing."""

from __future__ import annotations

import math

import pytest
import torch

from snntorch_losses import assert_same, snntorch_functional
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.losses import (
    ce_max_membrane_loss,
    get_loss,
    loss_readout,
    mse_membrane_loss,
    predict,
)

SHAPES = [(1, 1, 2), (7, 4, 5), (12, 3, 10)]


def test_mse_membrane_by_hand():
    membrane = torch.tensor([[[1.0, 0.5]], [[0.0, 2.0]]])  # [T=2, B=1, K=2]
    # wanted [0, 1] at both steps: (1-0)^2 + (.5-1)^2 + (0-0)^2 + (2-1)^2 = 2.25 over 4
    assert mse_membrane_loss(membrane, torch.tensor([1])).item() == pytest.approx(0.5625)
    # on 3, off -1: wanted [-1, 3]: 4 + 6.25 + 1 + 1 = 12.25 over 4
    got = mse_membrane_loss(membrane, torch.tensor([1]), on_target=3.0, off_target=-1.0)
    assert got.item() == pytest.approx(12.25 / 4)


def _mse_membrane_loop(u, labels_per_step, on, off):
    steps, batch, classes = u.shape
    total = 0.0
    for t in range(steps):
        for b in range(batch):
            for k in range(classes):
                wanted = on if k == int(labels_per_step[t][b]) else off
                total += (float(u[t, b, k]) - wanted) ** 2
    return total / u.numel()


@pytest.mark.parametrize("shape", SHAPES)
def test_mse_membrane_per_step_labels_against_a_loop(shape):
    steps, batch, classes = shape
    u = torch.randn(shape, dtype=torch.float64)
    per_step = torch.randint(0, classes, (steps, batch))
    got = mse_membrane_loss(u, per_step, on_target=0.8, off_target=-0.3)
    assert got.item() == pytest.approx(_mse_membrane_loop(u, per_step.tolist(), 0.8, -0.3))
    # labels [B] are the same labels at every step
    labels = torch.randint(0, classes, (batch,))
    same = labels.expand(steps, batch)
    torch.testing.assert_close(mse_membrane_loss(u, labels), mse_membrane_loss(u, same))


def test_mse_membrane_distributions_scale_between_off_and_on():
    u = torch.randn(3, 2, 4, dtype=torch.float64)
    a, b = torch.tensor([0, 3]), torch.tensor([2, 2])
    one_hot = torch.nn.functional.one_hot
    torch.testing.assert_close(
        mse_membrane_loss(u, a, 2.0, 0.5), mse_membrane_loss(u, one_hot(a, 4).double(), 2.0, 0.5)
    )
    mix = 0.3 * one_hot(a, 4).double() + 0.7 * one_hot(b, 4).double()
    wanted = 0.5 + 1.5 * mix  # off + (on - off) * y
    expected = ((u - wanted) ** 2).mean()
    torch.testing.assert_close(mse_membrane_loss(u, mix, 2.0, 0.5), expected)
    per_step = mix.expand(3, 2, 4).clone()
    per_step[1] = one_hot(b, 4).double()
    wanted = 0.5 + 1.5 * per_step
    torch.testing.assert_close(mse_membrane_loss(u, per_step, 2.0, 0.5), ((u - wanted) ** 2).mean())


def test_ce_max_membrane_by_hand_and_its_gradient_at_the_maxima():
    u = torch.tensor([[[2.0, 0.0, -1.0]], [[0.0, 1.0, 1.5]]], requires_grad=True)
    # max over time [2, 1, 1.5], label 1
    expected = math.log(math.exp(2) + math.exp(1) + math.exp(1.5)) - 1.0
    loss = ce_max_membrane_loss(u, torch.tensor([1]))
    assert loss.item() == pytest.approx(expected)
    loss.backward()
    softmax = torch.softmax(torch.tensor([2.0, 1.0, 1.5]), 0)
    wanted = torch.zeros(2, 1, 3)
    wanted[0, 0, 0] = softmax[0]
    wanted[1, 0, 1] = softmax[1] - 1.0
    wanted[1, 0, 2] = softmax[2]
    torch.testing.assert_close(u.grad, wanted)


def test_ce_max_membrane_label_smoothing_and_distribution():
    u = torch.randn(5, 3, 4, dtype=torch.float64)
    labels = torch.tensor([0, 3, 1])
    top = u.max(0).values
    ref = torch.nn.functional.cross_entropy(top, labels, label_smoothing=0.2)
    torch.testing.assert_close(ce_max_membrane_loss(u, labels, label_smoothing=0.2), ref)
    soft = torch.nn.functional.one_hot(labels, 4).double()
    torch.testing.assert_close(ce_max_membrane_loss(u, soft), ce_max_membrane_loss(u, labels))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("on", "off"), [(1.0, 0.0), (0.75, 0.25), (-0.5, 1.5), (3.0, 3.0)])
def test_mse_membrane_equals_snntorch(monkeypatch, shape, on, off):
    sf = snntorch_functional(monkeypatch)
    u = torch.randn(shape, dtype=torch.float64)
    labels = torch.randint(0, shape[2], (shape[1],))
    assert_same(
        lambda x: mse_membrane_loss(x, labels, on_target=on, off_target=off),
        lambda x: sf.mse_membrane_loss(on_target=on, off_target=off)(x, labels),
        u,
    )


def test_snntorch_mse_membrane_drops_a_negative_off_target(monkeypatch):
    """docs/models.md: with on_target > off_target, snnTorch builds its targets as
    clamp(on * one_hot, min=off), so a negative off_target becomes 0."""
    sf = snntorch_functional(monkeypatch)
    u = torch.randn(4, 3, 5, dtype=torch.float64)
    labels = torch.tensor([0, 4, 2])
    assert_same(
        lambda x: mse_membrane_loss(x, labels, on_target=1.0, off_target=0.0),
        lambda x: sf.mse_membrane_loss(on_target=1.0, off_target=-0.5)(x, labels),
        u,
    )
    ours = mse_membrane_loss(u, labels, on_target=1.0, off_target=-0.5)
    assert ours.item() == pytest.approx(((u - (-0.5 + 1.5 * _one_hot(labels, 5))) ** 2).mean())


def _one_hot(labels, classes):
    return torch.nn.functional.one_hot(labels, classes).double()


@pytest.mark.parametrize("shape", SHAPES)
def test_ce_max_membrane_equals_snntorch(monkeypatch, shape):
    sf = snntorch_functional(monkeypatch)
    u = torch.randn(shape, dtype=torch.float64)
    labels = torch.randint(0, shape[2], (shape[1],))
    assert_same(
        lambda x: ce_max_membrane_loss(x, labels),
        lambda x: sf.ce_max_membrane_loss()(x, labels),
        u,
    )


def test_membrane_losses_gradcheck():
    u = torch.randn(4, 3, 5, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([1, 0, 4])
    per_step = torch.randint(0, 5, (4, 3))
    assert torch.autograd.gradcheck(lambda x: mse_membrane_loss(x, per_step, 0.7, -0.2), (u,))
    assert torch.autograd.gradcheck(lambda x: ce_max_membrane_loss(x, labels, 0.1), (u,))


def test_max_readout_and_loss_readouts():
    u = torch.tensor([[[0.1, 0.9, 0.0]], [[0.8, 0.0, 0.95]], [[0.7, 0.0, 0.0]]])
    assert predict(u, "max").tolist() == [2]  # maxima [0.8, 0.9, 0.95]
    assert predict(u, "rate").tolist() == [0]  # means [0.53, 0.3, 0.32]
    assert loss_readout("ce_max_membrane") == "max"
    assert loss_readout("MSE-membrane") == "rate"
    assert get_loss("ce_max_membrane") is ce_max_membrane_loss
    bound = get_loss("mse_membrane", on_target=2.0)
    torch.testing.assert_close(
        bound(u, torch.tensor([1])), mse_membrane_loss(u, torch.tensor([1]), 2.0)
    )


def test_membrane_loss_errors_name_what_is_wrong():
    u = torch.randn(3, 2, 4)
    with pytest.raises(ShapeError, match=r"mse_membrane_loss: out_seq must be a \[T, B, K\]"):
        mse_membrane_loss(u[0], torch.tensor([0, 1]))
    with pytest.raises(ShapeError, match=r"per-step labels \[T, B\] must have shape \[3, 2\]"):
        mse_membrane_loss(u, torch.zeros(4, 2, dtype=torch.long))
    with pytest.raises(ShapeError, match=r"per-step distributions \[T, B, K\]"):
        mse_membrane_loss(u, torch.rand(3, 2, 5))
    with pytest.raises(ConfigurationError, match=r"labels must lie in \[0, 3\]"):
        mse_membrane_loss(u, torch.tensor([[0, 1], [4, 0], [0, 0]]))
    with pytest.raises(ConfigurationError, match=r"labels must lie in \[0, 3\]"):
        mse_membrane_loss(u, torch.tensor([0, 7]))
    with pytest.raises(DTypeError, match="integer labels or float"):
        mse_membrane_loss(u, torch.ones(3, 2, dtype=torch.bool))
    with pytest.raises(DTypeError, match="floating point"):
        mse_membrane_loss(u.long(), torch.tensor([0, 1]))
    with pytest.raises(ConfigurationError, match="on_target must be a finite real"):
        get_loss("mse_membrane", on_target=float("inf"))
    with pytest.raises(DTypeError, match="per-step labels have no meaning"):
        ce_max_membrane_loss(u, torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(ConfigurationError, match="label_smoothing"):
        ce_max_membrane_loss(u, torch.tensor([0, 1]), label_smoothing=1.5)
    with pytest.raises(ShapeError, match="empty batch"):
        ce_max_membrane_loss(torch.rand(3, 0, 4), torch.zeros(0, dtype=torch.long))


@pytest.mark.parametrize(
    ("loss", "spiking_output", "readout"),
    [("ce_max_membrane", False, "max"), ("mse_membrane", False, "rate"),
     ("ce_count", True, "count"), ("mse_temporal", True, "first_spike")],
)  # fmt: skip
def test_training_with_a_new_loss_reads_its_readout(tmp_path, loss, spiking_output, readout):
    """The trainer trains with each kind of new loss and reports the loss's readout:
    membrane losses on plif_digits with ``spiking_output=False`` (a linear layer at
    every step: a membrane without leak), the others on its spiking, voting output."""
    from spikeflow.training import Trainer
    from spikeflow.training.data import build_datasets, to_time_major
    from train_runs import TINY, tiny

    kwargs = {**TINY["model_kwargs"], "spiking_output": spiking_output}
    trainer = Trainer(tiny(tmp_path, loss, loss=loss, epochs=1, model_kwargs=kwargs), log=None)
    result = trainer.fit()
    assert trainer.readout == readout
    assert all(math.isfinite(row["train_loss"]) for row in result.history)
    model = trainer.raw_model.eval()
    _, test_set, info = build_datasets(trainer.config, with_train=False)
    xs = torch.stack([test_set[i][0] for i in range(len(test_set))])
    ys = torch.tensor([int(test_set[i][1]) for i in range(len(test_set))])
    with torch.no_grad():
        out = model(to_time_major(xs, trainer.config.T, info.static))
    correct = float((predict(out, readout) == ys).double().mean())
    assert result.final_test_acc == pytest.approx(correct)


def test_the_cli_trains_with_a_membrane_loss_and_the_max_readout(tmp_path):
    from spikeflow.cli import main

    out = tmp_path / "run"
    code = main(["train", "--epochs", "1", "--train-samples", "64", "--test-samples", "32",
                 "-T", "2", "--batch-size", "32", "--model-kwargs", "spiking_output=false",
                 "channels=8", "hidden=32", "--loss", "mse_membrane", "--loss-kwargs",
                 "on_target=2.0", "off_target=-1.0", "--readout", "max", "--device", "cpu",
                 "--output-dir", str(out), "--no-progress", "--plots", "off"])  # fmt: skip
    assert code == 0
    config = (out / "config.toml").read_text()
    assert 'loss = "mse_membrane"' in config and 'readout = "max"' in config
    assert "on_target = 2.0" in config
