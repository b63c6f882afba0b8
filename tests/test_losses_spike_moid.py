"""Lava-DL's SpikeMoid (spikeflow.losses.spike_moid) against a transcription of its
forward in Lava-DL's layout (lava-dl src/lava/lib/dl/slayer/loss.py: the sigmoid of the
scaled rates, then binary cross-entropy of the flattened terms), by hand, and gradcheck.
"""

from __future__ import annotations

import math

import pytest
import torch

from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.losses import SpikeMoid, check_loss_fits, get_loss, loss_readout, spike_moid_loss
from test_losses_slayer import _lava_window_rate, _reduce, _spikes, _time_major


def _lava_spike_moid(x, labels, window, reduction, alpha, theta):
    """x [N, C, T]; labels [N, C] (or [N, C, T] with a window); the per-term BCE."""
    n_, c_, t_ = x.shape
    rates = x.mean(-1, keepdim=True) if window is None else _lava_window_rate(x, window)
    if window is not None and labels.dim() == 2:
        labels = labels[..., None].expand(n_, c_, t_)
    labels = labels if window is not None else labels[..., None]
    terms = []
    for n in range(n_):
        for c in range(c_):
            for t in range(rates.shape[-1]):
                p = 1 / (1 + math.exp(-(float(rates[n, c, t]) - theta) / alpha))
                y = float(labels[n, c, t])
                terms.append(-(y * math.log(p) + (1 - y) * math.log(1 - p)))
    return _reduce(terms, reduction)


def test_by_hand():
    out = torch.tensor([[[1.0, 0.0]], [[1.0, 1.0]]])  # T = 2: rates [1, 0.5]
    target = torch.tensor([[1.0, 0.0]])
    p = [1 / (1 + math.exp(-1.0)), 1 / (1 + math.exp(-0.5))]
    expected = -math.log(p[0]) - math.log(1 - p[1])
    assert spike_moid_loss(out, target).item() == pytest.approx(expected, rel=1e-6)
    # theta 0.5, alpha 0.25: logits [2, 0]
    p = [1 / (1 + math.exp(-2.0)), 0.5]
    expected = (-math.log(p[0]) - math.log(1 - p[1])) / 2
    got = spike_moid_loss(out, target, reduction="mean", alpha=0.25, theta=0.5)
    assert got.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("window", [None, 1, 3])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize(("alpha", "theta"), [(1.0, 0.0), (0.2, 0.3)])
def test_equals_lava_dl_on_multi_hot_targets(window, reduction, alpha, theta):
    torch.manual_seed(0)
    x = _spikes((4, 5, 6))  # Lava-DL's [N, C, T]
    labels = (torch.rand(4, 5) < 0.4).double()
    expected = _lava_spike_moid(x, labels, window, reduction, alpha, theta)
    got = spike_moid_loss(_time_major(x), labels, window, reduction, alpha, theta)
    assert got.item() == pytest.approx(float(expected), rel=1e-12)
    assert SpikeMoid(window, reduction, alpha, theta)(_time_major(x), labels).item() == got.item()
    if window is not None:  # per-step targets [T, B, K] (Lava-DL's [N, C, T])
        per_step = (torch.rand(4, 5, 6) < 0.5).double()
        expected = _lava_spike_moid(x, per_step, window, reduction, alpha, theta)
        got = spike_moid_loss(_time_major(x), _time_major(per_step), window, reduction, alpha,
                              theta)  # fmt: skip
        assert got.item() == pytest.approx(float(expected), rel=1e-12)


def test_integer_labels_are_one_hot_and_train_a_classifier_by_rate():
    torch.manual_seed(1)
    out = _time_major(_spikes((3, 4, 5)))
    labels = torch.tensor([2, 0, 3])
    one_hot = torch.nn.functional.one_hot(labels, 4).double()
    assert spike_moid_loss(out, labels).item() == spike_moid_loss(out, one_hot).item()
    per_step = torch.randint(0, 4, (5, 3))
    got = spike_moid_loss(out, per_step, moving_window=2)
    expected = spike_moid_loss(out, torch.nn.functional.one_hot(per_step, 4).double(), 2)
    assert got.item() == expected.item()
    assert get_loss("spike_moid", alpha=0.5)(out, labels).item() == pytest.approx(
        spike_moid_loss(out, labels, alpha=0.5).item()
    )
    assert loss_readout("spike_moid") == "rate"


@pytest.mark.parametrize("window", [None, 2])
def test_spatial_outputs_take_targets_flat_or_in_their_shape_as_lava_dl(window):
    """[T, B, C, H, W] outputs: Lava-DL's forward flattens [N, C, H, W, T] to [N, C*H*W, T]
    and its target with ``label.flatten()``, so a multi-hot target [B, C, H, W] (per step
    [T, B, C, H, W] with a window) is the flat [B, C*H*W] one."""
    torch.manual_seed(3)
    x = _spikes((2, 2, 3, 2, 5))  # Lava-DL's [N, C, H, W, T]
    out = x.permute(4, 0, 1, 2, 3)  # [T, B, C, H, W]
    target = (torch.rand(2, 2, 3, 2) < 0.5).double()
    flat_x, flat_target = x.reshape(2, 12, 5), target.reshape(2, 12)
    expected = _lava_spike_moid(flat_x, flat_target, window, "sum", 0.5, 0.1)
    for given in (target, flat_target, target.bool()):
        got = spike_moid_loss(out, given, window, "sum", 0.5, 0.1)
        assert got.item() == pytest.approx(float(expected), rel=1e-12)
    if window is not None:
        per_step = (torch.rand(2, 2, 3, 2, 5) < 0.5).double()  # Lava-DL's [N, C, H, W, T]
        expected = _lava_spike_moid(flat_x, per_step.reshape(2, 12, 5), window, "sum", 0.5, 0.1)
        for given in (per_step.permute(4, 0, 1, 2, 3), _time_major(per_step.reshape(2, 12, 5))):
            got = spike_moid_loss(out, given, window, "sum", 0.5, 0.1)
            assert got.item() == pytest.approx(float(expected), rel=1e-12)


def test_saturated_sigmoid_stays_exact():
    """alpha = 1e-3: logits of 1000; Lava-DL's BCE of the rounded sigmoid clamps its log at
    -100, the logits form gives the exact softplus."""
    out = torch.ones(2, 1, 2)  # rates [1, 1]
    target = torch.tensor([[0.0, 1.0]])
    got = spike_moid_loss(out, target, alpha=1e-3)
    assert got.item() == pytest.approx(1000.0, rel=1e-6)  # -log(1 - sigmoid(1000)) ~ 1000


def test_gradcheck_float64():
    torch.manual_seed(2)
    out = torch.rand(4, 3, 5, dtype=torch.float64, requires_grad=True)
    target = torch.rand(3, 5, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda o: spike_moid_loss(o, target, 2, "mean", 0.3, 0.1),
                                    (out,))  # fmt: skip


def test_half_outputs_are_computed_in_float32():
    out = _time_major(_spikes((2, 3, 4))).half()
    got = spike_moid_loss(out, torch.tensor([0, 2]))
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(spike_moid_loss(out.double(), torch.tensor([0, 2])).item(),
                                       rel=1e-6)  # fmt: skip


@pytest.mark.parametrize(
    ("target", "error", "message"),
    [
        (torch.tensor([[0.5, 1.5, 0.0]]), ConfigurationError, r"must lie in \[0, 1\]"),
        (torch.tensor([3]), ConfigurationError, r"labels must lie in \[0, 2\]"),
        (torch.zeros(2, 3), ShapeError, r"integer labels \[1\] or targets \[1, 3\]"),
        (
            torch.zeros(1, 3, dtype=torch.int64),
            DTypeError,
            r"multi-hot target \[1, 3\] must be floating point or bool, got torch.int64",
        ),
        (torch.tensor([[0.5, float("nan"), 0.0]]), ConfigurationError, r"\[0, 1\], got NaN"),
        (torch.zeros(1, 3, 1), ShapeError, r"for out_seq \[4, 1, 3\] .*got torch.float32"),
        ([0], DTypeError, "target must be a tensor"),
    ],
)
def test_bad_targets_are_named(target, error, message):
    with pytest.raises(error, match=message):
        spike_moid_loss(torch.zeros(4, 1, 3), target)


def test_bad_arguments_are_named():
    with pytest.raises(ConfigurationError, match="alpha"):
        SpikeMoid(alpha=0.0)
    with pytest.raises(ConfigurationError, match="reduction"):
        get_loss("spike_moid", reduction="max")
    with pytest.raises(ConfigurationError, match=r"moving_window \(5\) is longer than the T = 4"):
        check_loss_fits("spike_moid", 4, {"moving_window": 5})
