"""Conversion rules: a user's own activation converted by convert's own passes.

Checked against networks built by hand (the same neurons, thresholds from the
calibration data computed here), the rate-coding bound of a constant input (the first
layer within θ/T), and the errors bad rules must give.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikeflow.conversion import (
    ConversionError,
    ConversionIFNode,
    ConversionRule,
    Replacement,
    TimeFolded,
    constant_input,
    convert,
    register_rule,
    registered_rules,
    unregister_rule,
)
from spikeflow.errors import ConfigurationError, StateError
from spikeflow.functional import streaming


class BoundedReLU(nn.Module):
    """``clamp(x, 0, bound)``: ReLU6 with another bound (spikeflow has no rule for it)."""

    def __init__(self, bound: float) -> None:
        super().__init__()
        self.bound = bound

    def forward(self, x: Tensor) -> Tensor:
        return x.clamp(0.0, self.bound)


class LeakyClip(nn.Module):
    """``x`` on ``[0, ceiling]``, ``ceiling`` above it, ``slope·x`` below 0."""

    def __init__(self, ceiling: float, slope: float) -> None:
        super().__init__()
        self.ceiling, self.slope = ceiling, slope

    def forward(self, x: Tensor) -> Tensor:
        return x.clamp(0.0, self.ceiling) + self.slope * x.clamp_max(0.0)


class TwoThresholdIF(nn.Module):
    """IF neuron on ``[T, B, ...]``: fires ``θ`` at ``v >= θ`` (soft reset); the membrane
    never holds more than ``ceiling`` (charge above the clip is dropped, as the clipped
    activation drops input above its bound)."""

    def __init__(self, theta: Tensor, ceiling: float) -> None:
        super().__init__()
        self.register_buffer("theta", theta.detach().clone())
        self.ceiling = ceiling

    def forward(self, x_seq: Tensor) -> Tensor:
        v = torch.zeros_like(x_seq[0])
        out = []
        for x in x_seq:
            v = v + x
            spike = (v >= self.theta).to(x.dtype) * self.theta
            v = torch.clamp_max(v - spike, self.ceiling)
            out.append(spike)
        return torch.stack(out)


class SignedPair(nn.Module):
    """Two IF neurons: one on ``x`` (threshold ``ceiling``), one on ``-x`` (threshold
    ``low``), their outputs ``pos - slope·neg``: rate-coded, a leaky clip."""

    def __init__(self, ceiling: float, low: Tensor, slope: float) -> None:
        super().__init__()
        self.pos = ConversionIFNode(ceiling)
        self.neg = ConversionIFNode(low)
        self.slope = slope

    def forward(self, x_seq: Tensor) -> Tensor:
        return self.pos(x_seq) - self.slope * self.neg(-x_seq)


def two_threshold(site):
    return TwoThresholdIF(site.scale, site.module.bound)


def signed_pair(site):
    return SignedPair(site.module.ceiling, site.scale, site.module.slope)


def negative_side(x: Tensor, y: Tensor) -> Tensor:
    return (-x).clamp_min(0.0)


TWO_THRESHOLD = ConversionRule(two_threshold, name="two-threshold IF")
SIGNED_PAIR = ConversionRule(signed_pair, observe=negative_side, name="leaky clip pair")


@pytest.fixture(scope="module")
def digits() -> Tensor:
    sklearn = pytest.importorskip("sklearn.datasets", reason="scikit-learn (extra 'examples')")
    return torch.tensor(sklearn.load_digits().data / 16.0, dtype=torch.float32)


def _mlp(act: type[nn.Module], *args: float) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(64, 48), act(*args), nn.Linear(48, 32), act(*args), nn.Linear(32, 10)
    ).eval()


def _trained(net: nn.Sequential, digits: Tensor, steps: int = 80) -> nn.Sequential:
    """``net`` fitted on the first 1400 digits (full batch, Adam): realistic activations."""
    sklearn = pytest.importorskip("sklearn.datasets", reason="scikit-learn (extra 'examples')")
    labels = torch.tensor(sklearn.load_digits().target[:1400])
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    net.train()
    for _ in range(steps):
        optimizer.zero_grad()
        F.cross_entropy(net(digits[:1400]), labels).backward()
        optimizer.step()
    return net.eval().requires_grad_(False)


def test_a_rule_for_a_bounded_relu_builds_the_network_built_by_hand(digits):
    net = _trained(_mlp(BoundedReLU, 2.0), digits)
    calibration, x = digits[:512], digits[1500:1540]
    batches = [calibration[:256], calibration[256:]]
    rules = {BoundedReLU: TWO_THRESHOLD}
    snn, report = convert(net, batches, rules=rules, per_channel=True)
    # by hand: each channel's max of the activation's output over the calibration data
    h1 = net[1](net[0](calibration))
    theta1, theta2 = h1.amax(0), net[3](net[2](h1)).amax(0)
    # a channel never above 0 gets its layer's largest scale (calibrate.py)
    silent = [int((theta == 0).sum()) for theta in (theta1, theta2)]
    assert silent[1] > 0
    theta1, theta2 = (torch.where(t > 0, t, t.max()) for t in (theta1, theta2))
    assert 0 < (theta1 < 2.0).sum() < theta1.numel()  # some channels clipped, some not
    steps = 24
    seq = constant_input(x, steps)
    folded = seq.flatten(0, 1)
    s1 = TwoThresholdIF(theta1, 2.0)(net[0](folded).unflatten(0, (steps, -1)))
    s2 = TwoThresholdIF(theta2, 2.0)(net[2](s1.flatten(0, 1)).unflatten(0, (steps, -1)))
    by_hand = net[4](s2.flatten(0, 1)).unflatten(0, (steps, -1))
    with torch.no_grad():
        out = snn(seq)
    assert torch.equal(out, by_hand)
    neurons = [m.module for m in snn.modules() if isinstance(m, TimeFolded)]
    assert [type(n) for n in neurons] == [TwoThresholdIF, TwoThresholdIF]
    assert torch.equal(neurons[0].theta, theta1) and torch.equal(neurons[1].theta, theta2)
    entries = report.converted
    assert [(e.name, e.source) for e in entries] == [("1", "BoundedReLU"), ("3", "BoundedReLU")]
    first = "rule 'two-threshold IF': TwoThresholdIF, max per-channel scale[48]"
    assert entries[0].detail == first + (f", {silent[0]} silent in calibration" * bool(silent[0]))
    assert entries[1].detail.endswith(f"scale[32], {silent[1]} silent in calibration")
    assert report.ok


def test_a_rule_for_an_unknown_activation_is_exact_in_the_limit(digits):
    slope = 0.1
    net = _trained(_mlp(LeakyClip, 1.5, slope), digits)
    calibration, x = digits[:600], digits[1500:1600]
    snn, report = convert(net, calibration, rules={LeakyClip: SIGNED_PAIR})
    assert [e.detail.split(":")[0] for e in report.converted] == ["rule 'leaky clip pair'"] * 2
    with torch.no_grad():
        z1 = net[0](x)
        low1 = (-net[0](calibration)).clamp_min(0).max()
        pair = snn.body.get_submodule("1").module
        assert torch.equal(pair.neg.v_threshold, low1)
        errors = []
        for steps in (16, 64, 256, 1024):
            # the first layer, constant input: within (ceiling + slope·low)/T of the ANN
            layer1 = pair(constant_input(z1, steps)).mean(0)
            bound = (1.5 + slope * float(low1)) / steps
            assert (layer1 - net[1](z1)).abs().max() <= bound * (1 + 1e-5)
            errors.append(float((snn.rate(x, steps) - net(x)).abs().max()))
    # the network's output error falls as about 1/T
    assert errors[-1] < errors[0] / 16
    assert errors[-1] < 0.05 * float(net(x).abs().max())


def test_a_rule_without_observation_takes_its_scale_from_the_module(digits):
    rule = ConversionRule(
        lambda site: ConversionIFNode(site.module.bound), observe=None, name="bound"
    )
    net = _mlp(BoundedReLU, 0.75)
    snn, report = convert(net, rules={BoundedReLU: rule})  # no calibration data needed
    assert [e.detail for e in report.converted] == ["rule 'bound': ConversionIFNode"] * 2
    x = digits[1500:1510]
    with torch.no_grad():
        first = snn.body.get_submodule("1").module(constant_input(net[0](x), 64)).mean(0)
        assert (first - net[1](net[0](x))).abs().max() <= 0.75 / 64 * (1 + 1e-6)


def test_a_rule_for_nn_relu_applies_to_relu_calls_and_untraced_forwards(digits):
    class Calls(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.act, self.fc2 = nn.Linear(64, 20), nn.ReLU(), nn.Linear(20, 20)

        def forward(self, x: Tensor) -> Tensor:
            return self.fc2(F.relu(self.act(self.fc1(x))))

    rule = ConversionRule(lambda site: TwoThresholdIF(site.scale, 1e9), name="mine")
    for trace in ("fx", "modules"):
        _, report = convert(Calls(), digits[:64], rules={nn.ReLU: rule}, trace=trace, strict=False)
        mine = [e for e in report.entries if e.detail.startswith("rule 'mine'")]
        assert len(mine) == (2 if trace == "fx" else 1)  # untraced: the F.relu is reported
    _, report = convert(Calls(), digits[:64])  # built-in rule when not overridden
    assert all(e.detail.startswith("IF soft reset") for e in report.converted)


def test_a_ruled_module_is_a_leaf_and_a_subclass_with_its_own_forward_is_traced(digits):
    class Branching(nn.Module):  # data-dependent control flow: torch.fx cannot trace it
        def forward(self, x: Tensor) -> Tensor:
            return x.clamp(0.0, 1.0) if bool(x.sum() > -1e9) else x

    net = nn.Sequential(nn.Linear(64, 16), Branching(), nn.Linear(16, 4))
    with pytest.raises(ConversionError, match=r"could not trace"):
        convert(net, digits[:64], trace="fx")
    rule = ConversionRule(lambda site: TwoThresholdIF(site.scale, 1.0), name="branching")
    _, report = convert(net, digits[:64], rules={Branching: rule}, trace="fx")
    assert [e.detail.split(":")[0] for e in report.converted] == ["rule 'branching'"]

    class Renamed(BoundedReLU):  # keeps the parent's forward: the rule applies
        pass

    class OwnForward(BoundedReLU):  # computes something else: traced, its relu converted
        def forward(self, x: Tensor) -> Tensor:
            return torch.relu(x) * 0.5

    net = nn.Sequential(nn.Linear(64, 16), Renamed(1.0), nn.Linear(16, 8), OwnForward(1.0))
    _, report = convert(net, digits[:64], rules={BoundedReLU: TWO_THRESHOLD})
    assert [(e.source, e.detail.split(",")[0]) for e in report.converted] == [
        ("Renamed", "rule 'two-threshold IF': TwoThresholdIF"),
        ("torch.relu", "IF soft reset"),
    ]


def test_register_rule_applies_to_later_conversions_and_refuses_conflicts(digits):
    net = _mlp(BoundedReLU, 1.0)
    with pytest.raises(ConversionError, match=r"clamp \(Tensor.clamp\): not affine"):
        convert(net, digits[:64])  # no rule: traced through, its clamp unconverted
    register_rule(BoundedReLU, TWO_THRESHOLD)
    try:
        assert registered_rules() == {BoundedReLU: TWO_THRESHOLD}
        _, report = convert(net, digits[:64])
        assert len(report.converted) == 2 and report.ok
        other = ConversionRule(two_threshold, name="other")
        with pytest.raises(
            ConfigurationError, match=r"already has the rule 'two-threshold IF'.*'other'"
        ):
            register_rule(BoundedReLU, other)
        register_rule(BoundedReLU, other, replace=True)
        _, report = convert(net, digits[:64])
        assert report.converted[0].detail.startswith("rule 'other'")
        # rules= overrides the registered rule for one conversion
        _, report = convert(net, digits[:64], rules={BoundedReLU: TWO_THRESHOLD})
        assert report.converted[0].detail.startswith("rule 'two-threshold IF'")
    finally:
        unregister_rule(BoundedReLU)
    assert registered_rules() == {}
    with pytest.raises(ConfigurationError, match=r"no rule is registered for BoundedReLU"):
        unregister_rule(BoundedReLU)
    with pytest.raises(ConfigurationError, match=r"nn.ReLU|ReLU has the built-in rule 'relu'"):
        register_rule(nn.ReLU, TWO_THRESHOLD)


def test_bad_rules_are_named(digits):
    net = _mlp(BoundedReLU, 1.0)
    data = digits[:64]

    def bad(site):
        return 3

    with pytest.raises(ConversionError, match=r"rule 'bad' at '1' \(BoundedReLU\) returned int"):
        convert(net, data, rules={BoundedReLU: ConversionRule(bad)})

    def failing(site):
        raise RuntimeError("no neuron for you")

    with pytest.raises(ConversionError, match=r"rule 'failing' failed at '1'.*no neuron for you"):
        convert(net, data, rules={BoundedReLU: ConversionRule(failing)})
    with pytest.raises(
        ConfigurationError, match=r"must be a ConversionRule, got function.*wrap it"
    ):
        convert(net, data, rules={BoundedReLU: two_threshold})
    with pytest.raises(ConfigurationError, match=r"key must be an nn.Module subclass"):
        convert(net, data, rules={"BoundedReLU": TWO_THRESHOLD})
    with pytest.raises(ConfigurationError, match=r"Sequential holds other modules"):
        register_rule(nn.Sequential, TWO_THRESHOLD)
    with pytest.raises(ConfigurationError, match=r"rules must be a mapping"):
        convert(net, data, rules=[TWO_THRESHOLD])
    with pytest.raises(ConfigurationError, match=r"replace must be callable"):
        ConversionRule(replace=None)
    with pytest.raises(ConfigurationError, match=r"observe must be 'output', a callable"):
        ConversionRule(two_threshold, observe="input")
    with pytest.raises(ConfigurationError, match=r"Replacement.action must be one of"):
        Replacement(nn.Identity(), action="done")
    with pytest.raises(ConfigurationError, match=r"Replacement.module must be an nn.Module"):
        Replacement(lambda x: x)
    not_a_tensor = ConversionRule(two_threshold, observe=lambda x, y: 1.0, name="scalar")
    with pytest.raises(
        ConversionError, match=r"rule 'scalar' at '1'.*returned float, not a tensor"
    ):
        convert(net, data, rules={BoundedReLU: not_a_tensor})
    with pytest.raises(ConfigurationError, match=r"norm='ltb'.*'leaky clip pair' at '1'"):
        convert(_mlp(LeakyClip, 1.0, 0.1), data, rules={LeakyClip: SIGNED_PAIR}, norm="ltb")
    with pytest.raises(ConfigurationError, match=r"calibration_data is needed.*1 \(rule 'two-thr"):
        convert(net, rules={BoundedReLU: TWO_THRESHOLD})

    class Both(BoundedReLU, LeakyClip):
        def __init__(self) -> None:
            nn.Module.__init__(self)
            self.bound = self.ceiling = 1.0

    both = nn.Sequential(nn.Linear(64, 8), Both())
    rules = {BoundedReLU: TWO_THRESHOLD, LeakyClip: SIGNED_PAIR}
    with pytest.raises(ConfigurationError, match=r"Both derives from BoundedReLU.*and LeakyClip"):
        convert(both, data, rules=rules)


def test_a_rule_may_leave_a_site_unconverted_and_strict_refuses_it(digits):
    def refuse(site):
        return Replacement(site.module, "bound above 0.5 not supported", "unconverted")

    net = _mlp(BoundedReLU, 1.0)
    with pytest.raises(ConversionError, match=r"rule 'refuse': bound above 0.5 not supported"):
        convert(net, digits[:64], rules={BoundedReLU: ConversionRule(refuse)})
    snn, report = convert(
        net, digits[:64], rules={BoundedReLU: ConversionRule(refuse)}, strict=False
    )
    assert len(report.unconverted) == 2
    assert type(snn.body.get_submodule("1")) is BoundedReLU  # the ANN's own, on [T*B, ...]
    x = digits[1500:1504]
    torch.testing.assert_close(snn.rate(x, 3), net(x))  # the ANN's modules, run each step


def test_a_user_rule_for_nn_relu_reproduces_the_built_in_conversion(digits):
    """SpikingJelly's rate-coding recipe as a user rule: the calibrated max as the
    threshold of a soft-reset IF neuron; the SNN equals convert's own at every step."""

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 6, 3, padding=1)
            self.bn = nn.BatchNorm2d(6)
            self.act = nn.ReLU()
            self.fc = nn.Linear(6 * 4 * 4, 10)

        def forward(self, x: Tensor) -> Tensor:
            y = F.avg_pool2d(F.relu(self.bn(self.conv(x))), 2)
            return self.fc(torch.flatten(self.act(y + 0.1), 1))

    torch.manual_seed(0)
    net = Net().eval()
    images = digits.reshape(-1, 1, 8, 8)
    rate_coding = ConversionRule(lambda site: ConversionIFNode(site.scale), name="rate coding")
    mine, report = convert(net, images[:300], rules={nn.ReLU: rate_coding})
    theirs, _ = convert(net, images[:300])
    assert [e.detail.split(":")[0] for e in report.converted] == ["rule 'rate coding'"] * 2
    seq = constant_input(images[1500:1532], 32)
    with torch.no_grad():
        assert torch.equal(mine(seq), theirs(seq))


def test_streaming_carries_a_rule_s_neurons_or_refuses_a_module_it_cannot_carry(digits):
    net = _mlp(LeakyClip, 1.5, 0.1)
    snn, _ = convert(net, digits[:256], rules={LeakyClip: SIGNED_PAIR})
    seq = constant_input(digits[1500:1516], 20)
    with torch.no_grad():
        whole = snn(seq)
        with streaming(snn):  # the pair's IF neurons carry their membranes across chunks
            chunks = torch.cat([snn(seq[:7]), snn(seq[7:])])
    assert torch.equal(chunks, whole)
    snn, _ = convert(_mlp(BoundedReLU, 1.0), digits[:256], rules={BoundedReLU: TWO_THRESHOLD})
    with pytest.raises(StateError, match=r"'body\.1\.module' \(TwoThresholdIF\) runs whole"):
        with streaming(snn):
            pass
