"""Losses against hand computation (loops over time, batch and class)."""

from __future__ import annotations

import math
import re

import pytest
import torch

from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.losses import (
    ce_mean_loss,
    get_loss,
    list_losses,
    rate_mse_loss,
    spike_count_loss,
    tet_loss,
)


def _ce_by_hand(logits: list[float], label: int) -> float:
    log_z = math.log(sum(math.exp(v) for v in logits))
    return log_z - logits[label]


def test_rate_mse_by_hand():
    out = torch.tensor(
        [[[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]], [[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]]
    )  # [T=2, B=2, K=3]
    target = torch.tensor([0, 2])
    # rates: b0 = [1, .5, 0] vs [1, 0, 0]; b1 = [0, .5, 1] vs [0, 0, 1]
    expected = (0.0 + 0.25 + 0.0 + 0.0 + 0.25 + 0.0) / 6
    assert rate_mse_loss(out, target).item() == pytest.approx(expected)


def test_rate_mse_soft_target_equals_one_hot():
    out = torch.rand(4, 3, 5)
    labels = torch.tensor([4, 0, 2])
    soft = torch.nn.functional.one_hot(labels, 5).float()
    torch.testing.assert_close(rate_mse_loss(out, labels), rate_mse_loss(out, soft))


def test_ce_mean_by_hand():
    out = torch.tensor([[[2.0, 0.0, -1.0]], [[0.0, 1.0, 1.0]]])  # T=2, B=1, K=3
    mean_logits = [1.0, 0.5, 0.0]
    assert ce_mean_loss(out, torch.tensor([1])).item() == pytest.approx(_ce_by_hand(mean_logits, 1))


def test_ce_mean_label_smoothing_by_hand():
    out = torch.randn(3, 2, 4, dtype=torch.float64)
    target = torch.tensor([1, 3])
    eps = 0.1
    mean = out.mean(0)
    expected = 0.0
    for b in range(2):
        logp = torch.log_softmax(mean[b], 0)
        dist = torch.full((4,), eps / 4, dtype=torch.float64)
        dist[target[b]] += 1 - eps
        expected += -(dist * logp).sum().item()
    got = ce_mean_loss(out, target, label_smoothing=eps).item()
    assert got == pytest.approx(expected / 2)


def test_tet_by_hand_loops():
    torch.manual_seed(1)
    steps, batch, classes = 3, 2, 4
    out = torch.randn(steps, batch, classes, dtype=torch.float64)
    target = torch.tensor([2, 0])
    lamb, phi = 0.2, 0.7
    ce_sum = 0.0
    for t in range(steps):
        step_ce = sum(_ce_by_hand(out[t, b].tolist(), int(target[b])) for b in range(batch))
        ce_sum += step_ce / batch
    mse = sum((v - phi) ** 2 for v in out.flatten().tolist()) / out.numel()
    expected = (1 - lamb) * ce_sum / steps + lamb * mse
    assert tet_loss(out, target, lamb=lamb, phi=phi).item() == pytest.approx(expected)


def test_tet_defaults_and_lamb_zero():
    out = torch.randn(2, 3, 5, dtype=torch.float64)
    target = torch.tensor([0, 1, 4])
    per_step = sum(torch.nn.functional.cross_entropy(out[t], target) for t in range(2)) / 2
    torch.testing.assert_close(tet_loss(out, target, lamb=0.0), per_step)
    mse = ((out - 1.0) ** 2).mean()
    torch.testing.assert_close(tet_loss(out, target), (1 - 1e-3) * per_step + 1e-3 * mse)


def test_tet_soft_target_matches_labels():
    out = torch.randn(3, 2, 4)
    labels = torch.tensor([3, 1])
    soft = torch.nn.functional.one_hot(labels, 4).float()
    torch.testing.assert_close(tet_loss(out, labels), tet_loss(out, soft))


def test_tet_gradient_float64():
    out = torch.randn(2, 2, 3, dtype=torch.float64, requires_grad=True)
    target = torch.tensor([1, 2])
    assert torch.autograd.gradcheck(lambda o: tet_loss(o, target, lamb=0.3), (out,))


def test_spike_count_by_hand():
    steps = 4
    out = torch.zeros(steps, 2, 3)
    out[:, 0, 0] = torch.tensor([1.0, 1.0, 0.0, 0.0])  # label class 0 fires 2 (< 3)
    out[:, 0, 1] = 1.0  # non-label fires 4 (> 1)
    out[:, 0, 2] = 0.0  # non-label fires 0 (< 1): not penalised
    out[:, 1, 1] = 1.0  # sample 1, label 1 fires 4 (> 3): not penalised
    out[0, 1, 2] = 1.0  # non-label fires exactly 1: no error
    target = torch.tensor([0, 1])
    # sample 0: deltas (2-3)/4 and (4-1)/4 -> 0.5*(1/16 + 9/16); sample 1: 0
    expected = (0.5 * (1 / 16 + 9 / 16) + 0.0) / 2
    got = spike_count_loss(out, target, desired_count=3, undesired_count=1)
    assert got.item() == pytest.approx(expected)


def test_a_desired_count_above_T_is_refused_naming_both():
    """At most one spike per step: a count above T is never reached (the label class
    would always be penalised); T itself is reachable."""
    out, target = torch.ones(4, 2, 3), torch.tensor([0, 1])
    assert spike_count_loss(out, target, desired_count=4, undesired_count=4) == 0
    message = r"spike_count_loss: desired_count \(4.5\) is more than the T = 4 steps of out_seq"
    with pytest.raises(ConfigurationError, match=message):
        spike_count_loss(out, target, desired_count=4.5)
    with pytest.raises(ConfigurationError, match=r"desired_count \(10\) .* T = 4 steps"):
        get_loss("count")(out, target)  # the default, 10


def test_get_loss_names_and_binding():
    assert list_losses() == [
        "ce", "ce+", "ce_count", "ce_max_membrane", "ce_temporal", "count", "count+", "kernel",
        "mse", "mse_count", "mse_membrane", "mse_temporal", "spike_max", "spike_moid", "spike_rate",
        "stcl", "sum0", "tcl", "tet", "timing", "ttfs",
    ]  # fmt: skip
    assert get_loss("mse") is rate_mse_loss
    assert get_loss("CE") is ce_mean_loss
    out = torch.randn(2, 2, 3)
    target = torch.tensor([0, 2])
    torch.testing.assert_close(get_loss("tet", lamb=0.5)(out, target), tet_loss(out, target, 0.5))
    names = r"available: ce, ce\+, ce_count, ce_max_membrane, ce_temporal, count, count\+, kernel,"
    with pytest.raises(ConfigurationError, match=names):
        get_loss("hinge")
    with pytest.raises(ConfigurationError, match="gamma"):
        get_loss("tet", gamma=2)


def test_bad_inputs_raise():
    out = torch.randn(2, 3, 4)
    with pytest.raises(ShapeError, match=r"\[T, B, K\]"):
        rate_mse_loss(out[0], torch.tensor([0, 1, 2]))
    with pytest.raises(ShapeError, match="shape \\[B\\]"):
        ce_mean_loss(out, torch.tensor([0, 1]))
    with pytest.raises(ConfigurationError, match="labels must lie in"):
        tet_loss(out, torch.tensor([0, 1, 4]))
    with pytest.raises(ShapeError, match="class distribution"):
        rate_mse_loss(out, torch.rand(3, 5))
    with pytest.raises(DTypeError, match="floating point"):
        ce_mean_loss(out.long(), torch.tensor([0, 1, 2]))
    with pytest.raises(ConfigurationError, match="lamb"):
        tet_loss(out, torch.tensor([0, 1, 2]), lamb=1.5)
    with pytest.raises(DTypeError, match="integer class labels"):
        spike_count_loss(out, torch.rand(3, 4))


@pytest.mark.parametrize(
    ("name", "hint"),
    [("ce_rate", "is 'tet' with lamb=0"), ("CE_RATE_LOSS", "is 'tet' with lamb=0"),
     ("mse_count_loss", "did you mean 'mse_count'"), ("tet-loss", "did you mean 'tet'")],
)  # fmt: skip
def test_a_peer_loss_name_gets_its_spikeflow_name(name, hint):
    # snnTorch's names (ce_rate_loss, mse_count_loss) were refused with the list alone
    with pytest.raises(ConfigurationError, match=re.escape(hint)):
        get_loss(name)
    with pytest.raises(ConfigurationError, match=r"unknown loss 'hinge'; available"):
        get_loss("hinge")


@pytest.mark.parametrize("name", ["mse_count", "ce_count", "tet", "mse_membrane", "accuracy"])
def test_a_batch_first_output_is_named_as_such(name):
    # snnTorch users stack their per-step records batch-first or pass [B, T, K]; the
    # error named only the labels' shape, which are right, not the output's layout.
    from spikeflow.losses import accuracy

    fn = accuracy if name == "accuracy" else get_loss(name)
    batch_first = torch.rand(4, 25, 10)  # [B=4, T=25, K=10]
    labels = torch.tensor([1, 2, 3, 4])
    with pytest.raises(ShapeError, match=r"time-major \[T, B, \.\.\.\].*transpose\(0, 1\)"):
        fn(batch_first, labels)
    fn(batch_first.transpose(0, 1), labels)  # the hint's fix works
    # a plain wrong batch size keeps the plain message
    with pytest.raises(ShapeError, match=r"shape \[B\] = \[25\], got \(3,\)$"):
        fn(batch_first, labels[:3])


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [("tet", {"phi": float("nan")}, "phi must be a finite real number"),
     ("tet", {"phi": None}, "phi must be a finite real number"),
     ("tet", {"lamb": "0.1"}, r"lamb must be a finite real number in \[0, 1\]"),
     ("tet", {"lamb": 2}, r"lamb must be a finite real number in \[0, 1\]"),
     ("ce", {"label_smoothing": "0.1"}, "label_smoothing must be a finite real number"),
     ("count", {"desired_count": float("nan")}, "desired_count must be a finite real"),
     ("count", {"desired_count": "10"}, "desired_count must be a finite real"),
     ("count", {"desired_count": 1, "undesired_count": 2}, "must be >= undesired_count")],
)  # fmt: skip
def test_loss_arguments_are_checked_when_bound_and_when_called(name, kwargs, match):
    # nan gave a NaN loss (blamed on the learning rate), strings a raw TypeError at the
    # first training step.
    with pytest.raises(ConfigurationError, match=match):
        get_loss(name, **kwargs)
    direct = {"tet": tet_loss, "ce": ce_mean_loss, "count": spike_count_loss}[name]
    with pytest.raises(ConfigurationError, match=match):
        direct(torch.rand(3, 2, 4), torch.tensor([0, 1]), **kwargs)


def test_a_bad_loss_argument_stops_the_cli_before_any_run_folder(tmp_path, capsys):
    from spikeflow.cli import main

    out = tmp_path / "run"
    code = main(["train", "--epochs", "1", "--loss", "tet", "--loss-kwargs", "phi=None",
                 "--output-dir", str(out), "--no-progress", "--plots", "off"])  # fmt: skip
    assert code == 2 and not out.exists()
    assert "tet_loss: phi must be a finite real number" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["mse", "ce", "tet", "count"])
def test_an_empty_batch_is_named_not_a_nan(name):
    with pytest.raises(ShapeError, match="empty batch"):
        get_loss(name)(torch.rand(3, 0, 4), torch.zeros(0, dtype=torch.long))
