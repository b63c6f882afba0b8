"""Class weights, reductions and population codes of the losses (spikeflow.losses.weighting)
against snnTorch 1.0 in float64: ``weight=``, ``reduction="mean"|"sum"|"none"``,
``population_code=True, num_classes=K``, ``mse_temporal_loss(off_target=T)``."""

from __future__ import annotations

import pytest
import torch

from snntorch_losses import assert_same, snntorch_functional
from spikeflow.cli.kwargs import parse_kwargs
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.losses import (
    accuracy,
    ce_count_loss,
    ce_max_membrane_loss,
    ce_mean_loss,
    ce_temporal_loss,
    check_loss_fits,
    get_loss,
    mse_count_loss,
    mse_membrane_loss,
    mse_temporal_loss,
    rate_mse_loss,
    spike_count_loss,
    tet_loss,
)

STEPS, BATCH, CLASSES = 8, 6, 5
WEIGHT = torch.tensor([0.5, 2.0, 1.0, 3.0, 0.25], dtype=torch.float64)


def _spikes(shape, p=0.35):
    return (torch.rand(shape) < p).double()


def _labels(batch=BATCH, classes=CLASSES):
    return torch.randint(0, classes, (batch,))


def _ce_pairs(sf):
    """(spikeflow loss, snnTorch class, its input) of the cross-entropy losses whose
    snnTorch counterpart is a ``LossFunctions`` (plain mean with a weight)."""
    return [
        (lambda x, y, **k: tet_loss(x, y, lamb=0.0, **k), sf.ce_rate_loss, "spikes"),
        (ce_count_loss, sf.ce_count_loss, "spikes"),
        (ce_max_membrane_loss, sf.ce_max_membrane_loss, "membrane"),
    ]


def _input(kind):
    if kind == "spikes":
        return _spikes((STEPS, BATCH, CLASSES))
    return torch.randn(STEPS, BATCH, CLASSES, dtype=torch.float64)


@pytest.mark.parametrize("index", [0, 1, 2])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_losses_equal_snntorch(monkeypatch, index, reduction, weighted):
    """ce_rate (tet with lamb=0), ce_count and ce_max_membrane: value and gradient equal
    snnTorch's with the same ``weight`` and ``reduction``. snnTorch returns the
    per-sample losses unreduced for ``reduction="sum"`` with a weight; spikeflow sums
    them."""
    sf = snntorch_functional(monkeypatch)
    ours, theirs_class, kind = _ce_pairs(sf)[index]
    x, y = _input(kind), _labels()
    weight = WEIGHT if weighted else None
    theirs = theirs_class(reduction=reduction, weight=weight)
    assert_same(lambda v: ours(v, y, weight=weight, reduction=reduction), lambda v: theirs(v, y), x)
    if reduction == "none":
        per_sample = ours(x, y, weight=weight, reduction="none")
        assert per_sample.shape == (BATCH,)
        torch.testing.assert_close(per_sample, theirs(x.clone(), y).reshape(BATCH))
    if reduction == "sum" and weighted:  # snnTorch's sum with a weight is unreduced
        assert theirs(x.clone(), y).shape == (BATCH,)


def test_weighted_mean_is_the_plain_mean_of_the_weighted_losses(monkeypatch):
    """snnTorch (and spikeflow) divide by B, not by ``sum_b w[y_b]`` as
    ``F.cross_entropy(weight=w)`` does; ``"none"`` summed is ``"sum"``."""
    x, y = _spikes((STEPS, BATCH, CLASSES)), _labels()
    for loss in (ce_count_loss, ce_mean_loss, ce_max_membrane_loss, ce_temporal_loss):
        none = loss(x, y, weight=WEIGHT, reduction="none")
        plain = loss(x, y, reduction="none")
        torch.testing.assert_close(none, plain * WEIGHT[y])
        torch.testing.assert_close(loss(x, y, weight=WEIGHT), none.mean())
        torch.testing.assert_close(loss(x, y, weight=WEIGHT, reduction="sum"), none.sum())
    counts = x.sum(0)
    torch_weighted = torch.nn.functional.cross_entropy(counts, y, weight=WEIGHT)
    ours = ce_count_loss(x, y, weight=WEIGHT, reduction="sum") / WEIGHT[y].sum()
    torch.testing.assert_close(ours, torch_weighted)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_ce_temporal_equals_snntorch(monkeypatch, reduction):
    """Unweighted: equal for every reduction. Weighted, snnTorch hands ``weight`` to
    CrossEntropyLoss: "sum" and "none" equal, its "mean" is spikeflow's "sum" divided by
    ``weight[target].sum()`` (docs/models.md)."""
    sf = snntorch_functional(monkeypatch)
    x, y = _spikes((STEPS, BATCH, CLASSES), 0.2), _labels()
    for inverse in ("negate", "reciprocal"):
        theirs = sf.ce_temporal_loss(inverse=inverse, reduction=reduction)
        assert_same(
            lambda v, inv=inverse: ce_temporal_loss(v, y, inv, reduction=reduction),
            lambda v, fn=theirs: fn(v, y),
            x,
        )
        theirs = sf.ce_temporal_loss(inverse=inverse, reduction=reduction, weight=WEIGHT)
        if reduction == "mean":
            ours = ce_temporal_loss(x, y, inverse, weight=WEIGHT, reduction="sum")
            torch.testing.assert_close(ours / WEIGHT[y].sum(), theirs(x.clone(), y))
        else:
            assert_same(
                lambda v, inv=inverse: ce_temporal_loss(
                    v, y, inv, weight=WEIGHT, reduction=reduction
                ),
                lambda v, fn=theirs: fn(v, y),
                x,
            )


def _mse_pairs(sf):
    return [
        (lambda x, y, **k: mse_count_loss(x, y, 0.75, 0.25, **k),
         lambda **k: sf.mse_count_loss(0.75, 0.25, **k), "spikes"),
        (lambda x, y, **k: mse_membrane_loss(x, y, 1.0, 0.2, **k),
         lambda **k: sf.mse_membrane_loss(on_target=1.0, off_target=0.2, **k), "membrane"),
        (lambda x, y, **k: mse_temporal_loss(x, y, 1, STEPS - 2, 2, **k),
         lambda **k: sf.mse_temporal_loss(on_target=1, off_target=STEPS - 2, tolerance=2, **k),
         "spikes"),
    ]  # fmt: skip


@pytest.mark.parametrize("index", [0, 1, 2])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_squared_error_losses_equal_snntorch(monkeypatch, index, reduction):
    """mse_count, mse_membrane, mse_temporal without a weight: value and gradient equal
    snnTorch's for each reduction; "none" gives its terms [B, K]."""
    sf = snntorch_functional(monkeypatch)
    ours, theirs_fn, kind = _mse_pairs(sf)[index]
    x, y = _input(kind), _labels()
    theirs = theirs_fn(reduction=reduction)
    assert_same(lambda v: ours(v, y, reduction=reduction), lambda v: theirs(v, y), x)
    if reduction == "none":
        terms = ours(x, y, reduction="none")
        assert terms.shape == (BATCH, CLASSES)
        torch.testing.assert_close(terms, theirs(x.clone(), y).reshape(BATCH, CLASSES))


@pytest.mark.parametrize("index", [0, 1, 2])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_weighted_squared_error_losses_equal_snntorch_per_sample(monkeypatch, index, reduction):
    """snnTorch multiplies the terms [B, K] by ``weight[targets]`` [B] along the class
    axis, which is the per-sample weight only for B = 1: each sample alone equals
    spikeflow's row of the batch (value and gradient)."""
    sf = snntorch_functional(monkeypatch)
    ours, theirs_fn, kind = _mse_pairs(sf)[index]
    x, y = _input(kind), _labels()
    theirs = theirs_fn(reduction=reduction, weight=WEIGHT)
    terms = ours(x, y, weight=WEIGHT, reduction="none")
    for b in range(BATCH):
        xb, yb = x[:, b : b + 1], y[b : b + 1]
        assert_same(
            lambda v, yb=yb: ours(v, yb, weight=WEIGHT, reduction=reduction),
            lambda v, yb=yb: theirs(v, yb),
            xb,
        )
        torch.testing.assert_close(terms[b], ours(xb, yb, weight=WEIGHT, reduction="none")[0])
    torch.testing.assert_close(terms, ours(x, y, reduction="none") * WEIGHT[y][:, None])
    torch.testing.assert_close(ours(x, y, weight=WEIGHT), terms.mean())
    torch.testing.assert_close(ours(x, y, weight=WEIGHT, reduction="sum"), terms.sum())


def test_spikeflow_losses_reduce_and_weight_consistently():
    """rate_mse, ce (mean), tet with its regulariser, count: "mean" is the default,
    "none" summed is "sum", each sample scaled by its label's weight; a float class
    distribution y weighs y . w."""
    x, y = _spikes((STEPS, BATCH, CLASSES)), _labels()
    losses = [
        (rate_mse_loss, {}),
        (ce_mean_loss, {"label_smoothing": 0.1}),
        (tet_loss, {"lamb": 0.3, "phi": 0.8}),
        (spike_count_loss, {"desired_count": 6.0, "undesired_count": 1.0}),
    ]
    for loss, kwargs in losses:
        none = loss(x, y, reduction="none", **kwargs)
        assert none.shape[0] == BATCH
        torch.testing.assert_close(loss(x, y, **kwargs), none.mean())
        torch.testing.assert_close(loss(x, y, reduction="sum", **kwargs), none.sum())
        weighted = loss(x, y, weight=WEIGHT, reduction="none", **kwargs)
        scale = WEIGHT[y].reshape(-1, *([1] * (none.dim() - 1)))
        torch.testing.assert_close(weighted, none * scale)
    # TET per sample, written out: (1-lamb) mean_t CE_t + lamb mean_{t,k} (O - phi)^2.
    log_p = torch.log_softmax(x, dim=-1)
    ce_t = -log_p.gather(2, y.view(1, -1, 1).expand(STEPS, -1, 1)).squeeze(2)
    expected = 0.7 * ce_t.mean(0) + 0.3 * (x - 0.8).pow(2).mean(dim=(0, 2))
    torch.testing.assert_close(tet_loss(x, y, 0.3, 0.8, reduction="none"), expected)
    mix = torch.softmax(torch.randn(BATCH, CLASSES, dtype=torch.float64), -1)
    torch.testing.assert_close(
        ce_count_loss(x, mix, weight=WEIGHT, reduction="none"),
        ce_count_loss(x, mix, reduction="none") * (mix @ WEIGHT),
    )


@pytest.mark.parametrize(("correct", "incorrect"), [(1.0, 0.0), (0.5, 0.2)])
def test_population_code_equals_snntorch(monkeypatch, float64, correct, incorrect):
    """100 outputs, 10 classes of 10 neurons: mse_count_loss, ce_count_loss (value and
    gradient) and accuracy with ``population_code=True, num_classes=10`` equal
    snnTorch's."""
    sf = snntorch_functional(monkeypatch)
    steps, batch, classes = 10, 8, 10
    out = _spikes((steps, batch, 100), p=0.3)
    labels = _labels(batch, classes)
    pop = {"population_code": True, "num_classes": classes}
    theirs = sf.mse_count_loss(correct, incorrect, **pop)
    assert_same(
        lambda v: mse_count_loss(v, labels, correct, incorrect, **pop),
        lambda v: theirs(v, labels),
        out,
    )
    theirs = sf.ce_count_loss(**pop)
    assert_same(lambda v: ce_count_loss(v, labels, **pop), lambda v: theirs(v, labels), out)
    want = sf.accuracy_rate(out, labels, **pop)
    assert accuracy(out, labels, **pop) == pytest.approx(want)
    # The group's sum decides: neuron 0 fires most, but group 1 (neurons 10-19) has more.
    votes = torch.zeros(steps, 1, 100, dtype=torch.float64)
    votes[:, 0, 0] = 1.0
    votes[:2, 0, 10:20] = 1.0
    label = torch.tensor([1])
    assert accuracy(votes, label, **pop) == 1.0
    assert sf.accuracy_rate(votes, label, **pop) == 1.0


def test_population_code_errors_name_the_argument():
    out, labels = _spikes((4, 2, 12)), torch.tensor([0, 1])
    with pytest.raises(ConfigurationError, match="population_code=True needs num_classes"):
        mse_count_loss(out, labels, population_code=True)
    with pytest.raises(ShapeError, match=r"12 outputs .* multiple of num_classes = 5"):
        ce_count_loss(out, labels, population_code=True, num_classes=5)
    with pytest.raises(ConfigurationError, match=r"num_classes .* only read with population"):
        accuracy(out, labels, num_classes=4)
    with pytest.raises(ConfigurationError, match="population_code must be True or False"):
        get_loss("mse_count", population_code="yes", num_classes=4)


@pytest.mark.parametrize("tolerance", [0, 2])
def test_mse_temporal_off_target_t_equals_snntorch(monkeypatch, tolerance):
    """``off_target=T`` (snnTorch: "no spike"): a silent neuron is one step off."""
    sf = snntorch_functional(monkeypatch)
    x, y = _spikes((STEPS, BATCH, CLASSES), 0.15), _labels()
    theirs = sf.mse_temporal_loss(on_target=0, off_target=STEPS, tolerance=tolerance)
    assert_same(
        lambda v: mse_temporal_loss(v, y, 0, STEPS, tolerance),
        lambda v: theirs(v, y),
        x,
    )
    silent = torch.zeros(3, 1, 2, dtype=torch.float64)
    silent[0, 0, 0] = 1.0  # the label fires at its target step 0; class 1 never fires
    assert mse_temporal_loss(silent, torch.tensor([0]), 0, 3).item() == pytest.approx(
        ((2 - 3) / 3) ** 2 / 2
    )
    with pytest.raises(ConfigurationError, match=r"must lie in \[-T, T\] = \[-8, 8\]"):
        mse_temporal_loss(x, y, 0, STEPS + 1)


def test_loss_kwargs_weight_passes_through_get_loss():
    """``spikeflow train --loss-kwargs weight=[...] reduction=sum`` reaches the loss;
    reduction=none is refused before a run (a step needs one number)."""
    kwargs = parse_kwargs(["weight=[0.5, 2.0, 1.0, 3.0, 0.25]", "reduction=sum"], "--loss-kwargs")
    x, y = _spikes((STEPS, BATCH, CLASSES)), _labels()
    for name, loss in [("ce_count", ce_count_loss), ("tet", tet_loss), ("mse", rate_mse_loss)]:
        bound = get_loss(name, **kwargs)
        torch.testing.assert_close(bound(x, y), loss(x, y, weight=WEIGHT, reduction="sum"))
        check_loss_fits(name, STEPS, kwargs)
        with pytest.raises(ConfigurationError, match="reduction='none' gives one loss per"):
            check_loss_fits(name, STEPS, {"reduction": "none"})
    with pytest.raises(ConfigurationError, match="reduction must be one of mean, sum, none"):
        get_loss("ce_count", reduction="avg")
    with pytest.raises(ConfigurationError, match="weight must hold finite values >= 0"):
        get_loss("mse_membrane", weight=[1.0, -1.0])
    with pytest.raises(ConfigurationError, match="weight must be a list"):
        get_loss("ce_temporal", weight="balanced")
    with pytest.raises(ShapeError, match="weight has 3 values, one per class is needed"):
        get_loss("mse_count", weight=[1.0, 2.0, 3.0])(x, y)
    with pytest.raises(ConfigurationError, match=r"weight .* needs class labels"):
        get_loss("mse_temporal", target_is_time=True, weight=[1.0] * CLASSES)
