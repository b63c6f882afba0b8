"""TCL (temporal supervised contrastive loss) against a loop over anchors."""

from __future__ import annotations

import math

import pytest
import torch

from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.losses import get_loss, loss_readout, tcl_loss, temporal_contrastive_loss


def _by_hand(features: torch.Tensor, target: torch.Tensor, tau: float) -> float:
    steps, batch = features.shape[:2]
    items = [(features[t, b].flatten(), int(target[b])) for t in range(steps)
             for b in range(batch) if features[t, b].abs().sum() > 0]  # fmt: skip
    z = [v / v.norm() for v, _ in items]
    total, anchors = 0.0, 0
    for i, (_, label) in enumerate(items):
        others = [j for j in range(len(items)) if j != i]
        positives = [j for j in others if items[j][1] == label]
        if not positives:
            continue
        denominator = sum(math.exp(float(z[i] @ z[a]) / tau) for a in others)
        total += -sum(math.log(math.exp(float(z[i] @ z[p]) / tau) / denominator)
                      for p in positives) / len(positives)  # fmt: skip
        anchors += 1
    return total / anchors if anchors else 0.0


@pytest.mark.parametrize(("steps", "tau"), [(1, 0.1), (3, 0.1), (4, 0.5)])
def test_contrastive_loss_by_hand(steps, tau):
    g = torch.Generator().manual_seed(steps)
    features = torch.randn(steps, 6, 2, 3, generator=g, dtype=torch.float64)
    target = torch.tensor([0, 1, 1, 2, 0, 3])  # class 2 and 3 alone in the batch
    got = temporal_contrastive_loss(features, target, tau).item()
    assert got == pytest.approx(_by_hand(features, target, tau), rel=1e-10)


def test_silent_steps_take_no_part_and_keep_gradients_finite():
    features = (torch.rand(4, 6, 5, dtype=torch.float64) < 0.4).double()
    features[0] = 0.0  # a silent first step
    features[2, 3] = 0.0
    target = torch.tensor([0, 1, 1, 0, 2, 2])
    want = _by_hand(features, target, 0.1)
    leaf = features.clone().requires_grad_(True)
    value = temporal_contrastive_loss(leaf, target, 0.1)
    assert value.item() == pytest.approx(want, rel=1e-10)
    value.backward()
    assert torch.isfinite(leaf.grad).all() and leaf.grad.abs().max() < 100
    assert torch.all(leaf.grad[0] == 0)


def test_contrastive_loss_gradcheck_float64():
    features = torch.randn(3, 5, 4, dtype=torch.float64, requires_grad=True)
    target = torch.tensor([0, 1, 0, 2, 1])
    assert torch.autograd.gradcheck(lambda f: temporal_contrastive_loss(f, target, 0.2),
                                    (features,))  # fmt: skip


def test_no_positive_gives_zero_with_a_gradient_path():
    features = torch.randn(1, 3, 4, requires_grad=True)
    value = temporal_contrastive_loss(features, torch.tensor([0, 1, 2]))
    assert value.item() == 0.0
    value.backward()
    assert torch.all(features.grad == 0)


def test_contrastive_loss_pulls_a_class_together():
    """Gradient descent on the loss raises the similarity within classes above that
    across them."""
    torch.manual_seed(0)
    features = torch.randn(4, 8, 6, requires_grad=True)
    target = torch.arange(8) % 2
    opt = torch.optim.SGD([features], lr=2.0)
    for _ in range(100):
        opt.zero_grad()
        temporal_contrastive_loss(features, target).backward()
        opt.step()
    z = torch.nn.functional.normalize(features.detach().reshape(32, 6), dim=1)
    labels = target.repeat(4)
    sim = z @ z.T
    same = sim[labels[:, None] == labels[None, :]].mean()
    other = sim[labels[:, None] != labels[None, :]].mean()
    assert same > 0.9 and other < -0.1, (same, other)


def test_tcl_is_ce_plus_lamb_times_contrastive():
    out = torch.randn(5, 4, 3, dtype=torch.float64)
    target = torch.tensor([2, 0, 1, 2])
    ce = torch.nn.functional.cross_entropy(out.mean(0), target)
    contrastive = temporal_contrastive_loss(out, target, 0.3)
    torch.testing.assert_close(tcl_loss(out, target, 0.5, 0.3), ce + 0.5 * contrastive)
    torch.testing.assert_close(tcl_loss(out, target, 0.0), ce)
    torch.testing.assert_close(get_loss("tcl", lamb=0.5, temperature=0.3)(out, target),
                               ce + 0.5 * contrastive)  # fmt: skip
    assert loss_readout("tcl") == "rate"


def test_errors_name_the_argument():
    out = torch.randn(2, 3, 4)
    with pytest.raises(DTypeError, match="tcl_loss: target must be integer"):
        tcl_loss(out, torch.rand(3, 4))
    with pytest.raises(ConfigurationError, match=r"tcl_loss: temperature .* \(0, inf\)"):
        get_loss("tcl", temperature=0.0)
    with pytest.raises(ConfigurationError, match="tcl_loss: lamb"):
        get_loss("tcl", lamb=-1.0)
    with pytest.raises(ShapeError, match=r"features must be \[T, B, D\], got \(3, 4\)"):
        temporal_contrastive_loss(torch.randn(3, 4), torch.tensor([0, 1, 2]))
    with pytest.raises(ShapeError, match=r"labels must have shape \[B\] = \[3\]"):
        temporal_contrastive_loss(out, torch.tensor([0, 1]))
    with pytest.raises(ConfigurationError, match="labels must be >= 0"):
        temporal_contrastive_loss(out, torch.tensor([0, -1, 2]))
    with pytest.raises(DTypeError, match="features must be floating point"):
        temporal_contrastive_loss(torch.ones(2, 3, 4, dtype=torch.int64), torch.tensor([0, 1, 2]))


def test_computed_in_float32_under_autocast():
    features = torch.randn(3, 6, 10)
    target = torch.tensor([0, 1, 2, 0, 1, 2])
    exact = temporal_contrastive_loss(features.double(), target)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = temporal_contrastive_loss(features, target)
    assert got.dtype == torch.float32
    assert abs(got.item() - exact.item()) < 1e-5
