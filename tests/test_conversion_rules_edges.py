"""Conversion rules at their edges (a review of the rules API): subclasses of ReLU with
a forward of their own given a rule, rules under differential coding, rules with
fine_tunable, rules scoped to a block of code or a thread, rules for batch norms.

Checked against thresholds computed here from the calibration data, against the ANN
in the limit of many steps, and against the errors a misuse must give.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from spikeflow.conversion import (
    ConversionIFNode,
    ConversionRule,
    DifferentialNeuron,
    TimeFolded,
    constant_input,
    convert,
)
from spikeflow.errors import ConfigurationError


class CappedReLU(nn.ReLU):
    """A ReLU subclass with a forward of its own: ``clamp(x, 0, cap)``."""

    def __init__(self, cap: float) -> None:
        super().__init__()
        self.cap = cap

    def forward(self, x: Tensor) -> Tensor:
        return x.clamp(0.0, self.cap)


class Clip(nn.Module):
    """``clamp(x, 0, ceiling)`` (spikeflow has no rule for it)."""

    def __init__(self, ceiling: float) -> None:
        super().__init__()
        self.ceiling = ceiling

    def forward(self, x: Tensor) -> Tensor:
        return x.clamp(0.0, self.ceiling)


def if_of_scale(site):
    return ConversionIFNode(site.scale)


IF_RULE = ConversionRule(if_of_scale, name="IF of scale")


@pytest.fixture(scope="module")
def digits() -> Tensor:
    sklearn = pytest.importorskip("sklearn.datasets", reason="scikit-learn (extra 'examples')")
    return torch.tensor(sklearn.load_digits().data / 16.0, dtype=torch.float32)


def _mlp(act: type[nn.Module], *args: float, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Linear(64, 48), act(*args), nn.Linear(48, 32), act(*args), nn.Linear(32, 10)
    )
    return net.eval().requires_grad_(False)


def _thresholds(snn: nn.Module) -> list[Tensor]:
    return [m.module.v_threshold for m in snn.modules() if isinstance(m, TimeFolded)]


def test_a_relu_subclass_with_its_own_forward_is_calibrated_on_that_forward(digits):
    """A rule keyed on a ReLU subclass with a forward of its own: the calibration runs
    that forward (not a plain ReLU), so the scales are the maxima of its clipped output
    and the layer after it sees what the ANN's saw."""
    net = _mlp(CappedReLU, 0.4)
    calibration = digits[:400]
    snn, report = convert(net, calibration, rules={CappedReLU: IF_RULE})
    assert [e.source for e in report.converted] == ["CappedReLU"] * 2
    h1 = net[1](net[0](calibration))
    by_hand = [h1.max(), net[3](net[2](h1)).max()]
    assert float(net[0](calibration).max()) > 0.4  # the plain ReLU's max would be above
    assert [float(t) for t in _thresholds(snn)] == [float(t) for t in by_hand]
    assert bool((torch.stack(by_hand) <= torch.tensor(0.4)).all())
    x = digits[1500:1600]
    with torch.no_grad():
        error = (snn.rate(x, 512) - net(x)).abs().max()
    assert error < 0.02 * float(net(x).abs().max())


def follows_coding(site):
    if site.options.coding == "differential":
        return DifferentialNeuron(site.scale, site.options.multi_threshold)
    return ConversionIFNode(site.scale)


def test_differential_coding_refuses_a_rate_rule_and_runs_one_that_follows_it(digits):
    net = _mlp(Clip, 1.0)
    calibration, x = digits[:400], digits[1500:1564]
    with pytest.raises(
        ConfigurationError,
        match=r"coding='differential' is not among the codings rule 'IF of scale' at '1' "
        r"\(Clip\) declares \(rate\).*coding='rate'",
    ):
        convert(net, calibration, rules={Clip: IF_RULE}, coding="differential")
    both = ConversionRule(follows_coding, name="follows", codings=("rate", "differential"))
    # as a rule for nn.ReLU it builds convert's own differential SNN, step for step
    relu_net = _mlp(nn.ReLU)
    for k in (None, 3):
        mine, report = convert(
            relu_net, calibration, rules={nn.ReLU: both}, coding="differential", multi_threshold=k
        )
        theirs, _ = convert(relu_net, calibration, coding="differential", multi_threshold=k)
        assert [e.detail.split(":")[0] for e in report.converted] == ["rule 'follows'"] * 2
        seq = constant_input(x, 24)
        with torch.no_grad():
            assert torch.equal(mine(seq), theirs(seq))
    # and for the clip, the differential SNN approaches the ANN as T grows
    snn, _ = convert(net, calibration, rules={Clip: both}, coding="differential")
    with torch.no_grad():
        errors = [float((snn.rate(x, t) - net(x)).abs().max()) for t in (16, 256)]
    assert errors[1] < errors[0] / 4 and errors[1] < 0.02 * float(net(x).abs().max())
    with pytest.raises(ConfigurationError, match=r"ConversionRule.codings must be a non-empty"):
        ConversionRule(follows_coding, codings=("rate", "temporal"))
    with pytest.raises(ConfigurationError, match=r"ConversionRule.codings must be a non-empty"):
        ConversionRule(follows_coding, codings=())
