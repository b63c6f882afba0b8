"""Early exit over time steps (spikeflow.inference): the runner against a naive
reference that runs all T steps for the whole batch and picks each sample's exit
after the fact, in float64, on several networks; the samples that exited really
leave the batch; the threshold sweep; errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from spikeflow import layers
from spikeflow.base import MemoryModule
from spikeflow.energy import OperationCounter
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError, StateError
from spikeflow.inference import (
    ACCUMULATE,
    ExitRule,
    SteppedNetwork,
    ThresholdSweep,
    early_exit,
    exit_from_outputs,
    exit_scores,
    threshold_sweep,
)
from spikeflow.models import create_model
from spikeflow.neurons import LIFNode


def reference_exits(out_seq: Tensor, rule: ExitRule) -> tuple[list[int], list[int], Tensor]:
    """Per sample, a plain loop: the first step t whose accumulated output passes
    (else T), the predicted class there and the accumulated output."""
    steps, batch, classes = out_seq.shape
    exit_steps, predictions, outputs = [], [], []
    for b in range(batch):
        total = torch.zeros(classes, dtype=out_seq.dtype)
        for t in range(steps):
            total = total + out_seq[t, b]
            acc = total / (t + 1) if rule.accumulate == "mean" else total
            p = torch.softmax(acc, dim=0)
            if rule.criterion == "confidence":
                ok = float(p.max()) >= rule.threshold
            else:
                entropy = -float(sum(float(q) * math.log(float(q)) for q in p if q > 0))
                ok = entropy / math.log(classes) <= rule.threshold
            if ok or t == steps - 1:
                exit_steps.append(t + 1)
                predictions.append(int(acc.argmax()))
                outputs.append(acc)
                break
    return exit_steps, predictions, torch.stack(outputs)


def spread_threshold(out_seq: Tensor, criterion: str, accumulate: str = "mean") -> float:
    """A threshold between two scores of the run (no score sits on it) that lets about
    half the sample-steps pass, so that the samples exit at different steps."""
    total = out_seq.cumsum(0)
    if accumulate == "mean":
        total = total / torch.arange(1, out_seq.shape[0] + 1, dtype=out_seq.dtype).view(-1, 1, 1)
    scores = exit_scores(total, criterion).flatten().sort().values
    middle = len(scores) // 2
    return float((scores[middle - 1] + scores[middle]) / 2)


def mlp() -> nn.Module:
    return nn.Sequential(
        layers.Flatten(), layers.Linear(64, 48), LIFNode(tau=2.0),
        layers.Linear(48, 10),
    )  # fmt: skip


class TimeNormDelayNet(nn.Module):
    """Conv, BN through time (a step counter), a LIF, a delay (a queue of steps),
    TEBN, a LIF, a readout: states of several layouts."""

    def __init__(self, T: int) -> None:
        super().__init__()
        self.conv = layers.Conv2d(1, 6, 3, padding=1)
        self.bntt = layers.BatchNormThroughTime2d(6, T)
        self.lif1 = LIFNode(tau=2.0)
        self.delay = layers.Delay(2)
        self.conv2 = layers.Conv2d(6, 6, 3, padding=1, stride=2)
        self.tebn = layers.TemporalEffectiveBatchNorm2d(6, T)
        self.lif2 = LIFNode(tau=2.0)
        self.fc = nn.Sequential(layers.Flatten(), layers.Linear(6 * 16, 10))

    def forward(self, x: Tensor) -> Tensor:
        s = self.lif1(self.bntt(self.conv(x)))
        s = s + self.delay(s)
        return self.fc(self.lif2(self.tebn(self.conv2(s))))


def calibrate(net: nn.Module, x: Tensor) -> None:
    """Give every batch norm statistics of its own, then scale each linear, convolution
    and batch-norm layer, in the order they run, so that its output has a standard
    deviation of 1 on ``x``: every layer fires and the outputs' confidences vary."""
    g = torch.Generator().manual_seed(7)
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._NormBase) and m.running_mean is not None:
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)

    def rescale(module: nn.Module, args: tuple, out: Tensor) -> Tensor:
        scale = SPREAD / float(out.std())
        for p in module.parameters(recurse=False):
            p.mul_(scale)
        return out * scale  # (a norm without affine map: the next layer makes up for it)

    kinds = (nn.Linear, nn.Conv2d, nn.modules.batchnorm._NormBase)
    handles = [m.register_forward_hook(rescale) for m in net.modules() if isinstance(m, kinds)]
    with torch.no_grad():
        net.eval()(x)
    for h in handles:
        h.remove()


def build(name: str) -> tuple[nn.Module, Tensor]:
    """A float64 network in eval mode and an input [T, B, ...] for it."""
    torch.manual_seed(3)
    g = torch.Generator().manual_seed(5)
    T, B = 6, 24
    if name == "mlp":
        net, x = mlp(), torch.rand(T, B, 1, 8, 8, generator=g) * 2
    elif name == "plif_digits":  # conv + BN + PLIF + dropout + voting
        net, x = create_model("plif_digits"), torch.rand(T, B, 1, 8, 8, generator=g) * 3
    elif name == "sew_resnet18":  # residual
        net = create_model(
            "sew_resnet18", base_width=8, stem="cifar", in_channels=1, num_classes=10
        )
        x = (torch.rand(T, B, 1, 8, 8, generator=g) < 0.4).float() * 2
    elif name == "rsnn":  # recurrent layers, AdLIF, BN, leaky readout
        net = create_model("rsnn", in_features=16, hidden=32, hidden_layers=2, num_classes=5)
        x = (torch.rand(T, B, 16, generator=g) < 0.3).float() * 3
    else:
        net, x = TimeNormDelayNet(T), torch.rand(T, B, 1, 8, 8, generator=g) * 3
    net, x = net.double(), x.double()
    calibrate(net, x)
    return net.eval(), x


SPREAD = 3.0
NETWORKS = ["mlp", "plif_digits", "sew_resnet18", "rsnn", "time_norm_delay"]


@pytest.mark.parametrize("name", NETWORKS)
@pytest.mark.parametrize(("criterion", "accumulate"), [("confidence", "mean"),
                                                       ("entropy", "mean"),
                                                       ("confidence", "sum")])  # fmt: skip
def test_early_exit_equals_reference(name: str, criterion: str, accumulate: str) -> None:
    net, x = build(name)
    with torch.no_grad():
        out_seq = net(x)
    rule = ExitRule(criterion, spread_threshold(out_seq, criterion, accumulate), accumulate)
    steps, predictions, outputs = reference_exits(out_seq, rule)
    assert len(set(steps)) >= 3, f"the test needs exits at several steps: {steps}"
    result = early_exit(net, x, rule)
    assert result.exit_steps.tolist() == steps
    assert result.predictions.tolist() == predictions
    torch.testing.assert_close(result.outputs, outputs, rtol=1e-12, atol=1e-12)
    after = exit_from_outputs(out_seq, rule)  # the after-the-fact reading agrees too
    assert after.exit_steps.tolist() == steps
    assert after.predictions.tolist() == predictions
    torch.testing.assert_close(result.scores, after.scores, rtol=1e-12, atol=1e-12)


def test_exited_samples_leave_the_batch_and_the_counts() -> None:
    """Each step runs only the samples still running (the first layer's batch sizes),
    and the operation counter counts only those steps: the first Linear's MACs are
    in x out per sample-step run."""
    net, x = build("mlp")
    with torch.no_grad():
        out_seq = net(x)
    rule = ExitRule("confidence", spread_threshold(out_seq, "confidence"))
    steps, _, _ = reference_exits(out_seq, rule)
    sizes: list[int] = []
    hook = net[1].register_forward_pre_hook(lambda m, args: sizes.append(args[0].shape[1]))
    with OperationCounter(net) as counter:
        result = early_exit(net, x, rule)
    hook.remove()
    running = [sum(s > t for s in steps) for t in range(max(steps))]
    assert sizes == running
    assert sum(running) == int(result.exit_steps.sum()) < x.shape[0] * x.shape[1]
    first = next(r for r in counter.report(x.shape[1]).layers if r.name == "1")
    assert first.macs == 64 * 48 * sum(steps)


def test_model_left_as_it_was() -> None:
    """Training flags restored, no carried state, the next plain call unchanged."""
    net, x = build("plif_digits")
    net.train()
    with torch.no_grad():
        net.eval()
        before = net(x)
        net.train()
    early_exit(net, x, ExitRule("confidence", 0.5))
    assert all(m.training for m in net.modules())
    assert all(m.state is None for m in net.modules() if isinstance(m, MemoryModule))
    with torch.no_grad():
        net.eval()
        torch.testing.assert_close(net(x), before, rtol=0, atol=0)


def test_threshold_sweep_equals_early_exit() -> None:
    net, x = build("time_norm_delay")
    labels = torch.arange(x.shape[1]) % 10
    with torch.no_grad():
        out_seq = net(x)
    middle = spread_threshold(out_seq, "entropy")
    thresholds = [0.0, middle * 0.5, middle, min(1.0, middle * 1.5), 1.0]
    halves = [(x[:, :10], labels[:10]), (x[:, 10:], labels[10:])]
    points = threshold_sweep(net, halves, "entropy", thresholds)
    for point, threshold in zip(points, thresholds, strict=True):
        result = early_exit(net, x, ExitRule("entropy", threshold))
        correct = int((result.predictions == labels).sum())
        assert point.accuracy == correct / x.shape[1]
        assert point.mean_steps == pytest.approx(result.mean_steps, abs=1e-12)
        exits = torch.bincount(result.exit_steps - 1, minlength=x.shape[0]).tolist()
        assert list(point.exits) == exits
    assert points[0].mean_steps == x.shape[0]  # threshold 0: no early exit
    assert points[-1].mean_steps == 1.0  # threshold 1: every sample exits at once
    assert len({p.mean_steps for p in points}) >= 3


class _NoStepShape(MemoryModule):
    """Keeps a state without saying the shape of its steps."""

    def forward(self, x: Tensor) -> Tensor:
        self._keep_state({"v": x[-1]})
        return x


class _WrongStepShape(MemoryModule):
    """Says a step shape without the batch dim, so its state's samples are misplaced."""

    def forward(self, x: Tensor) -> Tensor:
        self._carried_state(x.shape[2:])
        self._keep_state({"v": x[-1]})
        return x


@pytest.mark.parametrize(
    ("module", "match"),
    [
        (_NoStepShape(), "did not say the shape of its steps"),
        (_WrongStepShape(), r"state 'v' has shape \(\d+, 48\), whose dim 1"),
    ],
)
def test_modules_whose_state_cannot_be_selected(module: nn.Module, match: str) -> None:
    net, x = build("mlp")
    net = nn.Sequential(net[0], net[1], module, net[2], net[3]).double()
    with torch.no_grad():
        out_seq = net(x)
    rule = ExitRule("confidence", spread_threshold(out_seq, "confidence"))
    with pytest.raises(StateError, match=match):
        early_exit(net, x, rule)


def test_whole_sequence_module_refused() -> None:
    """A module that needs the whole sequence (temporal-wise attention) cannot run
    step by step: refused before any step, naming it."""
    net, x = build("mlp")
    attention = layers.TemporalWiseAttention(x.shape[0], reduction=2, dimension=2)
    net = nn.Sequential(net[0], net[1], attention, net[2], net[3]).double()
    with pytest.raises(StateError, match=r"module '2' \(TemporalWiseAttention\) runs whole"):
        early_exit(net, x, ExitRule("confidence", 0.9))


def test_bad_input() -> None:
    net, x = build("mlp")
    rule = ExitRule("confidence", 0.9)
    with pytest.raises(ShapeError, match=r"returned \(24, 10\)"):
        early_exit(nn.Sequential(net, _MeanOverTime()), x, rule)
    with pytest.raises(ShapeError, match="time-major"):
        early_exit(net, x[0, 0, 0, 0], rule)
    for accumulate in ACCUMULATE:  # spike counts: refused as exit_from_outputs does
        with pytest.raises(DTypeError, match=r"must be floating point .*, got torch\.int64"):
            early_exit(nn.Sequential(net, _Counts()), x, ExitRule("confidence", 0.5, accumulate))
    with pytest.raises(ShapeError, match="no steps or no samples"):
        early_exit(net, x[:, :0], rule)
    with pytest.raises(ConfigurationError, match="must be an ExitRule"):
        early_exit(net, x, "confidence:0.9")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"threshold must be .* in \[0, 1\], got 1.5"):
        ExitRule("confidence", 1.5)
    with pytest.raises(ConfigurationError, match="criterion must be one of"):
        ExitRule("margin", 0.5)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="accumulate must be one of"):
        ExitRule("entropy", 0.5, "max")  # type: ignore[arg-type]
    assert ExitRule.parse("entropy:0.25") == ExitRule("entropy", 0.25)
    for text in ("confidence", "confidence:high", "0.9"):
        with pytest.raises(ConfigurationError, match="CRITERION:THRESHOLD"):
            ExitRule.parse(text)
    sweep = ThresholdSweep("confidence", [0.5])
    with pytest.raises(ConfigurationError, match="no batch was added"):
        sweep.points()
    with pytest.raises(ShapeError, match=r"out_seq must be \[T, B, K\]"):
        sweep.update(torch.zeros(3, 4), torch.zeros(4, dtype=torch.long))
    sweep.update(torch.zeros(3, 4, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ShapeError, match="T = 5 steps, the earlier ones 3"):
        sweep.update(torch.zeros(5, 4, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ConfigurationError, match="thresholds is empty"):
        ThresholdSweep("confidence", [])
    with pytest.raises(ConfigurationError, match="must be a sequence of numbers"):
        ThresholdSweep("confidence", torch.zeros(2, 2))
    # linspace thresholds, numpy or torch: the same rules as a list
    for values in (np.linspace(0, 1, 5), torch.linspace(0, 1, 5, dtype=torch.float64)):
        assert (
            ThresholdSweep("entropy", values).rules
            == ThresholdSweep("entropy", [0.0, 0.25, 0.5, 0.75, 1.0]).rules
        )


class _Counts(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return (x > 0).long()


class _MeanOverTime(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.mean(0)


def test_scores_by_hand() -> None:
    """Confidence and normalised entropy of known distributions."""
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [math.log(3.0), 0.0, 0.0, 0.0]])
    confidence = exit_scores(logits, "confidence")
    torch.testing.assert_close(confidence, torch.tensor([0.25, 0.5]))
    entropy = exit_scores(logits, "entropy")
    by_hand = -(0.5 * math.log(0.5) + 3 * (1 / 6) * math.log(1 / 6)) / math.log(4)
    torch.testing.assert_close(entropy, torch.tensor([1.0, by_hand]))


class _AttributeState(nn.Module):
    """A leaky sum kept in a plain attribute, restarted when the input's shape changes
    (as many hand-written layers do): stepped with samples dropped, it would restart
    silently."""

    def __init__(self) -> None:
        super().__init__()
        self.v: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        if self.v is None or self.v.shape != x.shape[1:]:
            self.v = torch.zeros_like(x[0])
        out = []
        for xt in x:
            self.v = 0.5 * self.v + xt
            out.append(self.v)
        return torch.stack(out)


class _BufferState(nn.Module):
    """A per-feature state updated in place in a buffer at every step."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.register_buffer("v", torch.zeros(features, dtype=torch.float64))

    def forward(self, x: Tensor) -> Tensor:
        out = []
        for xt in x:
            self.v.mul_(0.5).add_(xt.mean(0))
            out.append(xt + self.v)
        return torch.stack(out)


class _CacheOnce(nn.Module):
    """Fills a cache at its first call and only reads it after: not a state."""

    def __init__(self) -> None:
        super().__init__()
        self.scale: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        if self.scale is None:
            self.scale = torch.full(x.shape[2:], 1.5, dtype=x.dtype)
        return x * self.scale


@pytest.mark.parametrize(
    ("module", "match"),
    [
        (_AttributeState(), r"module '2' \(_AttributeState\) .* changes its tensor 'v'"),
        (_BufferState(48), r"module '2' \(_BufferState\) .* changes its tensor 'v'"),
    ],
)
def test_state_outside_memory_modules_refused(module: nn.Module, match: str) -> None:
    """Per-sample state in a plain module's attribute or buffer is refused, not
    silently restarted or mixed between samples."""
    net, x = build("mlp")
    net = nn.Sequential(net[0], net[1], module, net[2], net[3]).double()
    with pytest.raises(StateError, match=match):
        early_exit(net, x, ExitRule("confidence", 1.0))


@pytest.mark.parametrize("recorded", [False, True])
def test_cache_filled_at_the_first_call_accepted(recorded: bool) -> None:
    """A cache filled once is not a state; nor is a neuron's record of its membrane
    (``store_v_seq``, a tensor attribute of a MemoryModule set at every call)."""
    net, x = build("mlp")
    net[2].store_v_seq = recorded
    net = nn.Sequential(net[0], net[1], _CacheOnce(), net[2], net[3]).double()
    with torch.no_grad():
        out_seq = net(x)
    net[2].scale = None  # as new: the first step fills it again
    rule = ExitRule("confidence", spread_threshold(out_seq, "confidence"))
    steps, predictions, _ = reference_exits(out_seq, rule)
    result = early_exit(net, x, rule)
    assert result.exit_steps.tolist() == steps
    assert result.predictions.tolist() == predictions


def test_one_walk_of_the_network_per_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each step records the network's tensor attributes once (the record after a step
    is the next step's starting point), not before and after every step; the exits and
    a state kept outside MemoryModules are found as before."""
    from spikeflow.inference import state_rows

    walks = []
    real = state_rows._tensor_attributes

    def counted(net: nn.Module) -> state_rows._Attributes:
        walks.append(1)
        return real(net)

    monkeypatch.setattr(state_rows, "_tensor_attributes", counted)
    net, x = build("mlp")
    with torch.no_grad():
        out_seq = net(x)
    rule = ExitRule("confidence", spread_threshold(out_seq, "confidence"))
    steps, predictions, _ = reference_exits(out_seq, rule)
    result = early_exit(net, x, rule)
    assert result.exit_steps.tolist() == steps
    assert result.predictions.tolist() == predictions
    assert len(walks) == max(steps) > 1  # one walk per step run
    walks.clear()
    stateful = nn.Sequential(net[0], net[1], _BufferState(48), net[2], net[3]).double()
    with pytest.raises(StateError, match="changes its tensor 'v'"):
        early_exit(stateful, x, rule)
    assert len(walks) == 2  # refused at the second step


class _ReplacedState(nn.Module):
    """A state kept outside MemoryModules in a buffer dropped and set anew at each
    call: the new tensor may take the freed one's id (and version 0)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("last", torch.zeros(1, dtype=torch.float64))

    def forward(self, x: Tensor) -> Tensor:
        out = x + self.last
        self.last = None
        self.last = x.detach().mean().reshape(1)
        return out


class _Scale(nn.Module):
    """Multiplies by a buffer that only code outside the network changes."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("scale", torch.ones(1, dtype=torch.float64))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


def test_a_state_replaced_at_each_call_is_refused_whatever_its_id() -> None:
    """The record holds the tensors it saw, so a buffer replaced at each call is
    refused at the second call even where the freed tensor's id would be reused."""
    net, x = build("mlp")
    stepped = SteppedNetwork(nn.Sequential(net[0], net[1], _ReplacedState(), net[2], net[3]))
    with torch.no_grad():
        _, state = stepped(x[:1], None)
        with pytest.raises(StateError, match="changes its tensor 'last'"):
            stepped(x[1:2], state)


def test_a_change_between_two_calls_is_not_the_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    """Code between two calls that updates or replaces a recorded tensor (a buffer
    scaled, set anew) is not a state the call keeps: the next call is run, its output
    that of the changed network, at the cost of one more walk; a call that changes a
    tensor is still refused after it."""
    from spikeflow.functional import run
    from spikeflow.inference import state_rows

    walks = []
    real = state_rows._tensor_attributes
    monkeypatch.setattr(state_rows, "_tensor_attributes", lambda n: walks.append(1) or real(n))
    net, x = build("mlp")
    scaled = nn.Sequential(net[0], net[1], _Scale(), net[2], net[3])
    stepped = SteppedNetwork(scaled)
    with torch.no_grad():
        _, state = stepped(x[:1], None)
        _, reference = run(scaled, x[:1])
        scaled[2].scale.mul_(2.0)  # in place, between the calls
        out, state = stepped(x[1:2], state)
        expected, reference = run(scaled, x[1:2], reference)
        torch.testing.assert_close(out, expected, rtol=0, atol=0)
        assert len(walks) == 3  # one per call, one more for the change
        scaled[2].scale = torch.full((1,), 0.5, dtype=torch.float64)  # replaced
        out, state = stepped(x[2:3], state)
        expected, _ = run(scaled, x[2:3], reference)
        torch.testing.assert_close(out, expected, rtol=0, atol=0)
        stateful = nn.Sequential(net[0], net[1], scaled[2], _BufferState(48), net[2], net[3])
        stepped = SteppedNetwork(stateful)
        _, state = stepped(x[:1], None)
        scaled[2].scale.mul_(2.0)
        with pytest.raises(StateError, match="changes its tensor 'v'"):
            stepped(x[1:2], state)


def test_entropy_of_outputs_with_minus_infinity() -> None:
    """Log-probability outputs may hold -inf (a class of probability 0): 0 log 0 = 0,
    so the entropy is that of the other classes, not NaN (which never exits)."""
    inf = float("inf")
    logits = torch.tensor([[0.0, -inf, -inf, -inf], [0.0, 0.0, -inf, -inf]])
    entropy = exit_scores(logits, "entropy")
    torch.testing.assert_close(entropy, torch.tensor([0.0, math.log(2) / math.log(4)]))
    out_seq = torch.tensor([[0.0, -inf], [0.0, 0.0]]).log_softmax(-1).expand(3, 2, 2)
    result = exit_from_outputs(out_seq.contiguous(), ExitRule("entropy", 0.1))
    assert result.exit_steps.tolist() == [1, 3]


def test_outputs_with_nan_refused() -> None:
    """A NaN in a sample's output gives no score: refused naming the sample (its index
    in the batch given, after others left) and the step, not run on to T and predicted
    from NaN."""
    net, x = build("mlp")
    net = _InputReachesOutput(net)
    with torch.no_grad():
        out_seq = net(x)
    rule = ExitRule("confidence", spread_threshold(out_seq, "confidence"))
    steps, _, _ = reference_exits(out_seq, rule)
    last = max(i for i, s in enumerate(steps) if s == x.shape[0])  # runs all T steps
    assert min(steps) < x.shape[0] and last > steps.index(min(steps))
    x = x.clone()
    x[3, last] = float("nan")
    match = rf"sample {last} at step 4 gives no score"
    with pytest.raises(ConfigurationError, match=match):
        early_exit(net, x, rule)
    with torch.no_grad():
        out_seq = net(x)
    with pytest.raises(ConfigurationError, match=match):
        exit_from_outputs(out_seq, rule)


class _InputReachesOutput(nn.Module):
    """``net`` plus 0 times the input's sum: a NaN in the input reaches the output
    (spikes would swallow it)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x) + 0.0 * x.flatten(2).sum(-1, keepdim=True)


def test_batch_norm_without_running_statistics_refused() -> None:
    """A batch norm with track_running_stats=False normalises with each call's batch in
    eval mode too: one step of the running samples is not the whole run, refused."""
    net, x = build("mlp")
    norm = layers.BatchNorm1d(48, track_running_stats=False)
    net = nn.Sequential(net[0], net[1], norm, net[2], net[3]).double()
    with pytest.raises(ConfigurationError, match=r"module '2' \(BatchNorm1d\) has no running"):
        early_exit(net, x, ExitRule("confidence", 1.0))
