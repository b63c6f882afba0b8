"""Conversion rules at their edges (a review of the rules API): subclasses of ReLU with
a forward of their own given a rule, rules under differential coding, rules with
fine_tunable, rules scoped to a block of code or a thread, rules for batch norms.

Checked against thresholds computed here from the calibration data, against the ANN
in the limit of many steps, and against the errors a misuse must give.
"""

from __future__ import annotations

import copy
import io
import pickle
import threading

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikeflow.conversion import (
    ConversionError,
    ConversionIFNode,
    ConversionRule,
    DifferentialNeuron,
    Replacement,
    TimeFolded,
    TrainableIFNode,
    constant_input,
    convert,
    fine_tunable,
    frozen,
    using_rules,
)
from spikeflow.errors import ConfigurationError
from spikeflow.functional import reset_net
from spikeflow.interop import to_nir


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


class SignedPair(nn.Module):
    """Two IF neurons, on ``x`` and on ``-x``: ``pos - slope·neg`` (a leaky clip)."""

    def __init__(self, ceiling: float, low: Tensor, slope: float) -> None:
        super().__init__()
        self.pos, self.neg = ConversionIFNode(ceiling), ConversionIFNode(low)
        self.slope = slope

    def forward(self, x_seq: Tensor) -> Tensor:
        return self.pos(x_seq) - self.slope * self.neg(-x_seq)


class LeakyClip(nn.Module):
    def __init__(self, ceiling: float, slope: float) -> None:
        super().__init__()
        self.ceiling, self.slope = ceiling, slope

    def forward(self, x: Tensor) -> Tensor:
        return x.clamp(0.0, self.ceiling) + self.slope * x.clamp_max(0.0)


class HandIF(nn.Module):
    """An IF neuron written out (no spikeflow neuron inside): nothing to fine-tune."""

    def __init__(self, theta: Tensor) -> None:
        super().__init__()
        self.register_buffer("theta", theta.detach().clone())

    def forward(self, x_seq: Tensor) -> Tensor:
        v, out = torch.zeros_like(x_seq[0]), []
        for x in x_seq:
            v = v + x
            spike = (v >= self.theta).to(x.dtype) * self.theta
            v = v - spike
            out.append(spike)
        return torch.stack(out)


PAIR_RULE = ConversionRule(
    lambda site: SignedPair(site.module.ceiling, site.scale, site.module.slope),
    observe=lambda x, y: (-x).clamp_min(0.0),
    name="pair",
)


def test_fine_tunable_trains_the_if_neurons_inside_a_rule_s_module(digits):
    net = _mlp(LeakyClip, 1.5, 0.1)
    snn, _ = convert(net, digits[:400], rules={LeakyClip: PAIR_RULE})
    tuned = fine_tunable(snn).requires_grad_(True)  # (the ANN's weights were frozen)
    pairs = [m.module for m in tuned.modules() if isinstance(m, TimeFolded)]
    assert [type(p) for p in pairs] == [SignedPair, SignedPair]
    assert all(isinstance(n, TrainableIFNode) for p in pairs for n in (p.pos, p.neg))
    assert all(type(n) is ConversionIFNode for m in snn.modules() for n in m.children()
               if isinstance(n, ConversionIFNode))  # fmt: skip
    seq = constant_input(digits[1500:1532], 12)
    with torch.no_grad():
        expected = snn(seq)
    out = tuned(seq)
    assert torch.equal(out.detach(), expected)  # the converted network, spike for spike
    out.mean(0).square().sum().backward()
    first = tuned.body.get_submodule("0").weight.grad
    assert first is not None and float(first.abs().sum()) > 0
    assert all(float(n.v_threshold.grad.abs().sum()) > 0 for n in (pairs[0].pos, pairs[0].neg))
    plain = frozen(tuned)
    back = [m.module for m in plain.modules() if isinstance(m, TimeFolded)]
    assert all(type(n) is ConversionIFNode for p in back for n in (p.pos, p.neg))
    with torch.no_grad():
        assert torch.equal(plain(seq), expected)
    hand = ConversionRule(lambda site: HandIF(site.scale), name="hand")
    snn, _ = convert(_mlp(Clip, 1.0), digits[:400], rules={Clip: hand})
    with pytest.raises(
        ConfigurationError,
        match=r"fine_tunable: '1' is a HandIF \(a conversion rule's module\) with no "
        r"ConversionIFNode inside",
    ):
        fine_tunable(snn)


def _converts(net: nn.Module, data: Tensor) -> str:
    """The first converted entry's rule name, or ``'refused'`` (the clamp unconverted)."""
    try:
        _, report = convert(net, data)
    except ConversionError:
        return "refused"
    return report.converted[0].detail.split(":")[0]


def test_using_rules_scopes_rules_to_a_block_and_a_thread(digits):
    net, data = _mlp(Clip, 1.0), digits[:64]
    other = ConversionRule(if_of_scale, name="other")
    assert _converts(net, data) == "refused"  # no rule: Clip is traced, its clamp refused
    with using_rules({Clip: IF_RULE}):
        assert _converts(net, data) == "rule 'IF of scale'"
        with using_rules({Clip: other}):  # an inner block overrides, then gives back
            assert _converts(net, data) == "rule 'other'"
        assert _converts(net, data) == "rule 'IF of scale'"
        # convert's own rules= override the block's
        _, report = convert(net, data, rules={Clip: other})
        assert report.converted[0].detail.startswith("rule 'other'")
        seen = []  # a thread started inside the block does not see it
        thread = threading.Thread(target=lambda: seen.append(_converts(net, data)))
        thread.start()
        thread.join()
        assert seen == ["refused"]
    assert _converts(net, data) == "refused"
    with pytest.raises(RuntimeError, match="inside"), using_rules({Clip: IF_RULE}):
        raise RuntimeError("inside")
    assert _converts(net, data) == "refused"  # given back on an error too
    # a block in another thread is not seen here while it runs
    entered, done = threading.Event(), threading.Event()

    def worker() -> None:
        with using_rules({Clip: IF_RULE}):
            entered.set()
            done.wait(timeout=60)

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        assert entered.wait(timeout=60)
        assert _converts(net, data) == "refused"
    finally:
        done.set()
        thread.join()
    # a built-in rule may be overridden for a block (as with rules=)
    with using_rules({nn.ReLU: other}):
        assert _converts(_mlp(nn.ReLU), data) == "rule 'other'"
    assert _converts(_mlp(nn.ReLU), data).startswith("IF soft reset")
    with pytest.raises(ConfigurationError, match=r"using_rules: a rule's key must be"):
        with using_rules({"Clip": IF_RULE}):
            pass
    with pytest.raises(ConfigurationError, match=r"using_rules expects a mapping"):
        with using_rules([IF_RULE]):
            pass


def test_a_rule_for_a_batch_norm_gets_it_unfolded(digits):
    """convert folds a batch norm after a linear layer into it; one a rule is for stays,
    and the rule gets it (before, the rule was silently never called)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 24), nn.BatchNorm1d(24), nn.ReLU(), nn.Linear(24, 10))
    with torch.no_grad():
        net[1].running_mean.uniform_(-0.5, 0.5)
        net[1].running_var.uniform_(0.5, 2.0)
        net[1].weight.uniform_(0.5, 2.0)
    net = net.eval().requires_grad_(False)
    seen = []

    def keep_bn(site):
        seen.append(site.module)
        return Replacement(site.module, "the batch norm as it is", "kept", steps="folded")

    rule = ConversionRule(keep_bn, observe=None, name="bn")
    calibration, x = digits[:300], digits[1500:1564]
    snn, report = convert(net, calibration, rules={nn.BatchNorm1d: rule})
    assert seen == [snn.body.get_submodule("1")]
    assert isinstance(seen[0], nn.BatchNorm1d)
    assert torch.equal(seen[0].running_mean, net[1].running_mean)
    entries = {e.name: (e.action, e.detail) for e in report.entries}
    assert entries["1"] == ("kept", "rule 'bn': the batch norm as it is")
    assert entries["0"] == ("kept", "runs on every step")  # nothing folded into it
    # the ReLU after it is calibrated on the batch norm's output, as without the rule
    plain, _ = convert(net, calibration)
    with torch.no_grad():
        theta = _thresholds(snn)[0]
        expected = net[2](net[1](net[0](calibration))).max()
        torch.testing.assert_close(theta, expected)
        torch.testing.assert_close(_thresholds(plain)[0], theta, rtol=1e-5, atol=0)
        torch.testing.assert_close(snn(constant_input(x, 16)), plain(constant_input(x, 16)))


def test_a_rule_for_a_torch_activation_applies_to_its_calls(digits):
    """A rule for nn.Hardtanh (nn.Sigmoid, ...) applies to F.hardtanh calls with the
    same arguments: the SNN equals the one of the network written with the module."""

    class Calls(nn.Module):
        def __init__(self, inplace: bool = False) -> None:
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(64, 32), nn.Linear(32, 10)
            self.inplace = inplace

        def forward(self, x: Tensor) -> Tensor:
            if self.inplace:  # by position: hardtanh(input, min_val, max_val, inplace)
                return self.fc2(F.hardtanh(self.fc1(x), 0.0, 0.5, True))
            return self.fc2(F.hardtanh(self.fc1(x), 0.0, 0.5, inplace=False))

    torch.manual_seed(0)
    calls = Calls().eval().requires_grad_(False)
    modules = nn.Sequential(calls.fc1, nn.Hardtanh(0.0, 0.5), calls.fc2)
    rule = ConversionRule(lambda site: ConversionIFNode(site.module.max_val), observe=None)
    calibration, seq = digits[:200], constant_input(digits[1500:1532], 16)
    with pytest.raises(ConversionError, match=r"hardtanh.*not affine"):
        convert(calls, calibration)  # no rule: refused, as before
    snn, report = convert(calls, calibration, rules={nn.Hardtanh: rule})
    reference, _ = convert(modules, calibration, rules={nn.Hardtanh: rule})
    assert [(e.source, e.detail) for e in report.converted] == [
        ("torch.nn.functional.hardtanh", "rule '<lambda>': ConversionIFNode")
    ]
    with torch.no_grad():
        assert torch.equal(snn(seq), reference(seq))
    # the rule's module is built from the call's arguments
    seen = []
    spy = ConversionRule(lambda site: seen.append(site.module) or ConversionIFNode(1.0))
    convert(calls, calibration, rules={nn.Hardtanh: spy})
    assert [(type(m), m.min_val, m.max_val) for m in seen] == [(nn.Hardtanh, 0.0, 0.5)]
    # in place, the call would rectify its input for the reads after it: not converted
    with pytest.raises(ConversionError, match=r"hardtanh.*not affine"):
        convert(Calls(inplace=True).eval(), calibration, rules={nn.Hardtanh: rule})


class GainedIF(nn.Module):
    """An IF neuron and a trainable output gain: a rule's module with a parameter."""

    def __init__(self, theta: Tensor) -> None:
        super().__init__()
        self.neuron = ConversionIFNode(theta)
        self.gain = nn.Parameter(torch.full((), 0.75))

    def forward(self, x_seq: Tensor) -> Tensor:
        return self.gain * self.neuron(x_seq)


def test_a_rule_s_module_with_parameters_travels_with_the_snn(digits):
    """The state dict holds the rule's module (parameter and threshold), which loads into
    a conversion calibrated elsewhere; copies, pickles, dtype moves and reset_net keep
    its outputs; NIR export refuses it by name."""
    net = _mlp(Clip, 1.0)
    rule = ConversionRule(lambda site: GainedIF(site.scale), name="gained")
    snn, _ = convert(net, digits[:300], rules={Clip: rule})
    seq = constant_input(digits[1500:1520], 10)
    with torch.no_grad():
        expected = snn(seq)
    state = snn.state_dict()
    assert {"body.1.module.gain", "body.1.module.neuron.v_threshold"} <= set(state)
    other, _ = convert(net, digits[300:310] * 0.5, rules={Clip: rule})
    other.body.get_submodule("1").module.gain.data.fill_(2.0)
    assert not torch.equal(other.body.get_submodule("1").module.neuron.v_threshold,
                           state["body.1.module.neuron.v_threshold"])  # fmt: skip
    other.load_state_dict(state)
    buffer = io.BytesIO()
    torch.save(snn, buffer)
    buffer.seek(0)
    with torch.no_grad():
        assert torch.equal(other(seq), expected)
        assert torch.equal(copy.deepcopy(snn)(seq), expected)
        assert torch.equal(pickle.loads(pickle.dumps(snn))(seq), expected)
        assert torch.equal(torch.load(buffer, weights_only=False)(seq), expected)
        wide = copy.deepcopy(snn).double()
        assert wide.body.get_submodule("1").module.gain.dtype == torch.float64
        torch.testing.assert_close(wide(seq.double()).float(), expected)
        reset_net(snn)
        assert torch.equal(snn(seq[:4]), expected[:4]) and torch.equal(snn(seq), expected)
    pytest.importorskip("nir", reason="the nir extra is not installed")
    pytest.importorskip("nirtorch", reason="the nir extra is not installed")
    with pytest.raises(ConfigurationError, match=r"does not support: '1' \(GainedIF\)"):
        to_nir(snn, seq, soft_reset="metadata")


def test_a_subclass_with_its_own_forward_is_told_why_its_base_s_rule_does_not_apply(digits):
    class DoubledClip(Clip):  # its own forward: traced, the rule for Clip not used
        def forward(self, x: Tensor) -> Tensor:
            return super().forward(x) * 2.0

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 8), DoubledClip(1.0), nn.Linear(8, 2)).eval()
    with pytest.raises(ConversionError) as error:
        convert(net, digits[:64], rules={Clip: IF_RULE})
    message = str(error.value)
    assert (
        "clamp (Tensor.clamp): not affine, no spiking equivalent (in the forward of "
        "DoubledClip, a subclass of Clip with a forward of its own: rule 'IF of scale' for "
        "Clip does not apply to it; give DoubledClip a rule of its own)"
    ) in message
    assert "no ReLU, QCFS or ruled activation (Clip) found" in message
    _, report = convert(net, digits[:64], rules={DoubledClip: IF_RULE})  # as it says
    assert [e.source for e in report.converted] == ["DoubledClip"]


def test_a_ruled_module_called_with_more_than_one_input_is_named(digits):
    class Gate(nn.Module):
        def forward(self, x: Tensor, gate: Tensor) -> Tensor:
            return x.clamp(0.0, 1.0) * (gate > 0.5)

    class Gated(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc, self.gate, self.out = nn.Linear(64, 64), Gate(), nn.Linear(64, 4)

        def forward(self, x: Tensor) -> Tensor:
            return self.out(self.gate(self.fc(x), x))

    rule = ConversionRule(lambda site: ConversionIFNode(1.0), observe=None, name="gate")
    expected = r"rule 'gate' at 'gate' \(Gate\): the module is called with 2 positional"
    with pytest.raises(ConversionError, match=expected):
        convert(Gated(), rules={Gate: rule})  # traced: found in the graph, without data
    with pytest.raises(ConversionError, match=expected):
        convert(Gated(), digits[:32], rules={Gate: rule}, trace="modules")  # on the call


class KeywordCalls(nn.Module):
    """Activations called by keyword (``act(input=h)``, ``clip(x=h)``), or positionally."""

    def __init__(self, keyword: bool, inplace: bool = False) -> None:
        super().__init__()
        self.keyword = keyword
        self.fc, self.act = nn.Linear(64, 48), nn.ReLU(inplace=inplace)
        self.mid, self.clip, self.out = nn.Linear(48, 32), Clip(1.0), nn.Linear(32, 10)

    def forward(self, x: Tensor) -> Tensor:
        if self.keyword:
            return self.out(self.clip(x=self.mid(self.act(input=self.fc(x)))))
        return self.out(self.clip(self.mid(self.act(self.fc(x)))))


@pytest.mark.parametrize("trace", ["fx", "modules"])
@pytest.mark.parametrize("inplace", [False, True])
def test_an_activation_called_by_keyword_converts_as_one_called_positionally(
    digits, trace, inplace
):
    torch.manual_seed(0)
    by_keyword = KeywordCalls(keyword=True, inplace=inplace).eval()
    positional = copy.deepcopy(by_keyword)
    positional.keyword = False
    x = digits[:64]
    snn, report = convert(by_keyword, x, trace=trace, rules={Clip: IF_RULE})
    reference, _ = convert(positional, x, trace=trace, rules={Clip: IF_RULE})
    assert [e.source for e in report.converted] == ["nn.ReLU", "Clip"]
    seq = constant_input(x, 32)
    assert torch.equal(snn(seq), reference(seq))
    reset_net(snn)
    assert torch.equal(snn(seq), reference(seq))  # the neurons run again


def test_an_activation_called_by_a_keyword_it_does_not_take_is_named(digits):
    class WrongKeyword(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc, self.act, self.out = nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 2)

        def forward(self, x: Tensor) -> Tensor:
            return self.out(self.act(x=self.fc(x)))

    with pytest.raises(ConversionError, match=r"called with 0 positional, x= .* or as input="):
        convert(WrongKeyword(), digits[:32], trace="modules")
