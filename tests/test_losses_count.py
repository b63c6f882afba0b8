"""snnTorch's rate and count losses: ce_count and mse_count (new in spikeflow) by hand,
against snnTorch 1.0 in float64 and with gradcheck; ce_rate_loss is spikeflow's TET
with ``lamb=0`` and mse_count with the rates 1/0 is ``T`` times ``mse`` (docs/models.md
states both mappings)."""

from __future__ import annotations

import math

import pytest
import torch

from snntorch_losses import assert_same, snntorch_functional
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.losses import (
    ce_count_loss,
    ce_mean_loss,
    get_loss,
    loss_readout,
    mse_count_loss,
    rate_mse_loss,
    tet_loss,
)

SHAPES = [(1, 1, 2), (7, 4, 5), (12, 3, 10)]


def _spikes(shape, p=0.3):
    return (torch.rand(shape) < p).double()


def test_ce_count_by_hand():
    out = torch.tensor([[[1.0, 0.0, 1.0]], [[1.0, 1.0, 0.0]], [[1.0, 0.0, 0.0]]])
    counts = [3.0, 1.0, 1.0]  # label 2
    expected = math.log(sum(math.exp(c) for c in counts)) - counts[2]
    assert ce_count_loss(out, torch.tensor([2])).item() == pytest.approx(expected)
    # spikeflow's ce takes the mean, counts / T: a different loss
    mean_ce = math.log(sum(math.exp(c / 3) for c in counts)) - counts[2] / 3
    assert ce_mean_loss(out, torch.tensor([2])).item() == pytest.approx(mean_ce)


def test_mse_count_by_hand():
    out = torch.tensor([[[1.0, 0.0]], [[1.0, 1.0]], [[0.0, 1.0]], [[1.0, 1.0]]])  # T = 4
    # counts [3, 3]; label 0 wants 4 * 0.75 = 3, label-free wants 4 * 0.25 = 1
    expected = ((3 - 3) ** 2 + (3 - 1) ** 2) / 2 / 4
    got = mse_count_loss(out, torch.tensor([0]), correct_rate=0.75, incorrect_rate=0.25)
    assert got.item() == pytest.approx(expected)
    # wanted counts stay exact: T * 0.3 = 1.2 (snnTorch rounds it down to 1)
    got = mse_count_loss(out, torch.tensor([1]), correct_rate=0.3, incorrect_rate=0.0)
    assert got.item() == pytest.approx(((3 - 0) ** 2 + (3 - 1.2) ** 2) / 2 / 4)


def test_mse_count_with_a_distribution():
    out = _spikes((6, 3, 4))
    labels = torch.tensor([3, 0, 1])
    one_hot = torch.nn.functional.one_hot(labels, 4).double()
    torch.testing.assert_close(
        mse_count_loss(out, one_hot, 0.5, 1 / 6), mse_count_loss(out, labels, 0.5, 1 / 6)
    )
    mix = 0.25 * one_hot + 0.75 * one_hot.roll(1, dims=1)
    wanted = 6 * (1 / 6 + (0.5 - 1 / 6) * mix)
    torch.testing.assert_close(
        mse_count_loss(out, mix, 0.5, 1 / 6), ((out.sum(0) - wanted) ** 2).mean() / 6
    )


@pytest.mark.parametrize("shape", SHAPES)
def test_ce_count_equals_snntorch(monkeypatch, shape):
    sf = snntorch_functional(monkeypatch)
    labels = torch.randint(0, shape[2], (shape[1],))
    for out in (_spikes(shape), torch.randn(shape, dtype=torch.float64)):
        assert_same(
            lambda x: ce_count_loss(x, labels), lambda x: sf.ce_count_loss()(x, labels), out
        )


@pytest.mark.parametrize("shape", SHAPES)
def test_mse_count_equals_snntorch_where_the_wanted_counts_are_whole(monkeypatch, shape):
    sf = snntorch_functional(monkeypatch)
    steps, batch, classes = shape
    labels = torch.randint(0, classes, (batch,))
    for correct, incorrect in ((1.0, 0.0), (steps // 2 / steps, 0.0), (1.0, 1 / steps)):
        assert_same(
            lambda x: mse_count_loss(x, labels, correct, incorrect),  # noqa: B023
            lambda x: sf.mse_count_loss(correct, incorrect)(x, labels),  # noqa: B023
            _spikes(shape),
        )


def test_snntorch_rounds_the_wanted_counts_down(monkeypatch):
    """docs/models.md: snnTorch's wanted count is int(T * rate); spikeflow's T * rate."""
    sf = snntorch_functional(monkeypatch)
    out, labels = _spikes((10, 3, 4)), torch.tensor([0, 1, 3])
    assert_same(
        lambda x: mse_count_loss(x, labels, 0.7, 0.2),
        lambda x: sf.mse_count_loss(0.75, 0.29)(x, labels),  # int(7.5) = 7, int(2.9) = 2
        out,
    )


@pytest.mark.parametrize("shape", SHAPES)
def test_snntorch_ce_rate_is_tet_without_its_regulariser(monkeypatch, shape):
    sf = snntorch_functional(monkeypatch)
    labels = torch.randint(0, shape[2], (shape[1],))
    assert_same(
        lambda x: tet_loss(x, labels, lamb=0.0),
        lambda x: sf.ce_rate_loss()(x, labels),
        torch.randn(shape, dtype=torch.float64),
    )


@pytest.mark.parametrize("shape", SHAPES)
def test_mse_count_with_rates_one_and_zero_is_t_times_mse(shape):
    out = _spikes(shape)
    labels = torch.randint(0, shape[2], (shape[1],))
    torch.testing.assert_close(mse_count_loss(out, labels), shape[0] * rate_mse_loss(out, labels))


def test_count_losses_gradcheck():
    out = torch.randn(5, 3, 4, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 3, 2])
    assert torch.autograd.gradcheck(lambda x: ce_count_loss(x, labels, 0.1), (out,))
    assert torch.autograd.gradcheck(lambda x: mse_count_loss(x, labels, 0.6, 0.2), (out,))


def test_count_losses_registered_with_the_count_readout():
    assert loss_readout("ce_count") == loss_readout("mse_count") == "count"
    assert get_loss("CE-COUNT") is ce_count_loss
    out, labels = _spikes((4, 2, 3)), torch.tensor([2, 0])
    torch.testing.assert_close(
        get_loss("mse_count", correct_rate=0.5)(out, labels), mse_count_loss(out, labels, 0.5)
    )


def test_count_loss_errors_name_what_is_wrong():
    out = _spikes((4, 2, 3))
    with pytest.raises(ShapeError, match=r"ce_count_loss: out_seq must be a \[T, B, K\]"):
        ce_count_loss(out.sum(0), torch.tensor([0, 1]))
    with pytest.raises(ShapeError, match=r"class distribution, got \(2, 4\)"):
        mse_count_loss(out, torch.rand(2, 4, dtype=torch.float64))
    with pytest.raises(ConfigurationError, match=r"labels must lie in \[0, 2\]"):
        mse_count_loss(out, torch.tensor([0, 3]))
    with pytest.raises(DTypeError, match="integer labels or float"):
        ce_count_loss(out, torch.tensor([True, False]))
    with pytest.raises(
        ConfigurationError, match=r"correct_rate must be a finite real number in \[0, 1\]"
    ):
        get_loss("mse_count", correct_rate=1.5)
    with pytest.raises(ConfigurationError, match="incorrect_rate"):
        mse_count_loss(out, torch.tensor([0, 1]), incorrect_rate=-0.1)
    with pytest.raises(ConfigurationError, match="population_code=True needs num_classes"):
        get_loss("ce_count", population_code=True)


@pytest.mark.parametrize(("correct", "incorrect"), [(1.0, 0.0), (0.5, 0.2)])
def test_population_code_is_a_voting_layer_with_a_squared_group_scale(
    monkeypatch, float64, correct, incorrect
):
    """docs/models.md: snnTorch's ``population_code=True, num_classes=K`` is
    ``layers.VotingLayer(N // K)`` before the loss; snnTorch sums each group of
    ``G = N / K`` neurons where the layer averages it, so its ``mse_count_loss`` (value
    and gradient) is ``G²`` times spikeflow's, and the accuracy is the same."""
    from spikeflow.layers import VotingLayer
    from spikeflow.losses import accuracy

    sf = snntorch_functional(monkeypatch)
    steps, batch, classes, group = 10, 6, 4, 10
    out = _spikes((steps, batch, classes * group), p=0.4)
    labels = torch.randint(0, classes, (batch,))
    vote = VotingLayer(group)
    theirs = sf.mse_count_loss(correct, incorrect, population_code=True, num_classes=classes)
    assert_same(
        lambda x: group**2 * mse_count_loss(vote(x), labels, correct, incorrect),
        lambda x: theirs(x, labels),
        out,
    )
    want = sf.accuracy_rate(out, labels, population_code=True, num_classes=classes)
    assert accuracy(vote(out), labels) == pytest.approx(want)
