"""Time-based losses (methods.md 9) against loops written from the rules, and readouts."""

from __future__ import annotations

import math

import pytest
import torch

from spikeflow.errors import ConfigurationError, DTypeError
from spikeflow.losses import (
    ce_plus_loss,
    first_spike_steps,
    get_loss,
    loss_readout,
    predict,
    spike_count_loss,
    spike_count_plus_loss,
    spike_count_sum0_loss,
    ttfs_loss,
)


def _spikes(steps: int, batch: int, classes: int, p: float = 0.3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(steps, batch, classes, generator=g) < p).double()


def _within(fn, count: int) -> dict[str, int]:
    """``desired_count=count`` for the counting losses (their default 10 is above the
    few steps here, refused), nothing for the others."""
    return {"desired_count": count} if fn in (spike_count_plus_loss, spike_count_sum0_loss) else {}


def _grad(loss_fn, out, target, **kwargs) -> tuple[float, torch.Tensor]:
    out = out.clone().requires_grad_(True)
    value = loss_fn(out, target, **kwargs)
    value.backward()
    return value.item(), out.grad


def _count_plus_by_hand(out, target, desired, undesired, balance):
    steps, batch, classes = out.shape
    counts = [[float(out[:, b, c].sum()) for c in range(classes)] for b in range(batch)]
    clipped_label = clipped_other = 0.0
    for b in range(batch):
        for c in range(classes):
            n = counts[b][c]
            if c == int(target[b]):
                clipped_label += min(n, desired)
            else:
                clipped_other += max(n, undesired)
    ratio = (clipped_other + 1e-5) / (clipped_label + 1e-5)
    factor = 1.0 if balance is None else max(ratio / balance, 1.0)
    value = 0.0
    grad = torch.zeros_like(out)
    for b in range(batch):
        for c in range(classes):
            n = counts[b][c]
            if c == int(target[b]):
                err = min(n - desired, 0.0)
            else:
                err = max(n - undesired, 0.0)
            value += 0.5 * (err / steps) ** 2 / batch
            dl_dn = err / steps**2 / batch * (factor if c == int(target[b]) else 1.0)
            for t in range(steps):
                if out[t, b, c] != 0:
                    grad[t, b, c] = dl_dn / n
    return value, grad


@pytest.mark.parametrize("balance", [10.0, 2.0, None])
def test_count_plus_by_hand(balance):
    out = _spikes(12, 5, 4, p=0.35)
    target = torch.tensor([0, 3, 1, 1, 2])
    value, grad = _grad(spike_count_plus_loss, out, target, desired_count=6,
                        undesired_count=1, balance=balance)  # fmt: skip
    want_value, want_grad = _count_plus_by_hand(out, target, 6.0, 1.0, balance)
    assert value == pytest.approx(want_value, rel=1e-12)
    torch.testing.assert_close(grad, want_grad, rtol=1e-12, atol=1e-15)
    # the value is the counting loss's
    assert value == pytest.approx(spike_count_loss(out, target, 6, 1).item(), rel=1e-12)


def test_count_plus_gradient_only_on_spikes_and_shared():
    out = _spikes(10, 6, 5, p=0.4, seed=1)
    target = torch.tensor([0, 1, 2, 3, 4, 0])
    _, grad = _grad(spike_count_plus_loss, out, target, desired_count=8, balance=None)
    assert torch.all(grad[out == 0] == 0)
    # a neuron's spikes share its dL/dn equally: sum over its spikes = dL/dn
    counts = out.sum(0)
    err = torch.where(
        torch.nn.functional.one_hot(target, 5).bool(),
        (counts - 8).clamp(max=0),
        (counts - 1).clamp(min=0),
    )
    dl_dn = err / 10**2 / 6
    torch.testing.assert_close(grad.sum(0), torch.where(counts > 0, dl_dn, 0.0))


def test_count_plus_balance_factor_raises_the_label_gradient():
    # The other classes fire far more than the label class: ratio well above 10.
    steps, batch, classes = 20, 2, 4
    out = torch.zeros(steps, batch, classes, dtype=torch.float64)
    out[:2, :, 0] = 1.0  # label class 0: 2 spikes each
    out[:, :, 1:] = 1.0  # others: 20 spikes each
    target = torch.tensor([0, 0])
    _, plain = _grad(spike_count_plus_loss, out, target, balance=None)
    _, balanced = _grad(spike_count_plus_loss, out, target, balance=10.0)
    ratio = (2 * 3 * 20 + 1e-5) / (2 * 2 + 1e-5)
    torch.testing.assert_close(balanced[:, :, 0], plain[:, :, 0] * ratio / 10)
    torch.testing.assert_close(balanced[:, :, 1:], plain[:, :, 1:])
    assert plain[0, 0, 0] < 0  # the label class is pushed to fire more


def test_sum0_is_count_plus_recentred():
    out = _spikes(9, 4, 3, p=0.5, seed=2)
    target = torch.tensor([2, 0, 1, 1])
    value, grad = _grad(spike_count_sum0_loss, out, target, desired_count=7)
    value_plus, grad_plus = _grad(spike_count_plus_loss, out, target, desired_count=7)
    assert value == value_plus
    shift = grad_plus.sum() / out.sum()
    torch.testing.assert_close(grad, grad_plus - out * shift)
    assert abs(grad.sum().item()) < 1e-15
    assert torch.all(grad[out == 0] == 0)


def test_ce_plus_by_hand():
    steps, batch, classes = 8, 4, 3
    out = _spikes(steps, batch, classes, p=0.4, seed=3)
    out[:, 3, 2] = 0.0  # sample 3: its label neuron is silent -> no gradient
    out[:, 1, 0] = 0.0  # a silent non-label neuron
    target = torch.tensor([0, 1, 1, 2])
    value, grad = _grad(ce_plus_loss, out, target, silent_logit=-20.0)
    want_value = 0.0
    want = torch.zeros_like(out)
    for b in range(batch):
        counts = [float(out[:, b, c].sum()) for c in range(classes)]
        logits = [2 * n / steps if n else -20.0 for n in counts]
        z = sum(math.exp(v) for v in logits)
        want_value += (math.log(z) - logits[int(target[b])]) / batch
        if counts[int(target[b])] == 0:
            continue
        for c in range(classes):
            d_logit = (math.exp(logits[c]) / z - (c == int(target[b]))) / batch
            for t in range(steps):
                if out[t, b, c]:
                    want[t, b, c] = d_logit * 2 / steps / counts[c]
    assert value == pytest.approx(want_value, rel=1e-12)
    torch.testing.assert_close(grad, want, rtol=1e-12, atol=1e-15)
    assert torch.all(grad[:, 3] == 0)


def test_ttfs_by_hand():
    steps, batch, classes = 6, 3, 3
    out = torch.zeros(steps, batch, classes, dtype=torch.float64)
    out[1, 0, 0] = out[4, 0, 0] = 1.0  # first spike at 1
    out[3, 0, 1] = 1.0
    out[0, 1, 2] = out[2, 1, 2] = 1.0
    out[5, 2, 0] = 1.0  # sample 2: classes 1 and 2 silent
    target = torch.tensor([0, 1, 0])
    value, grad = _grad(ttfs_loss, out, target, silent_value=-3.0)
    want_value = 0.0
    want = torch.zeros_like(out)
    for b in range(batch):
        firsts = []
        for c in range(classes):
            hits = [t for t in range(steps) if out[t, b, c]]
            firsts.append(hits[0] if hits else None)
        scores = [1 - f / steps if f is not None else -3.0 for f in firsts]
        z = sum(math.exp(s) for s in scores)
        want_value += (math.log(z) - scores[int(target[b])]) / batch
        for c, f in enumerate(firsts):
            if f is not None:
                d_score = (math.exp(scores[c]) / z - (c == int(target[b]))) / batch
                want[f, b, c] = d_score / steps  # presence gradient = -dL/dt = dL/ds / T
    assert value == pytest.approx(want_value, rel=1e-12)
    torch.testing.assert_close(grad, want, rtol=1e-12, atol=1e-15)
    assert grad[4, 0, 0] == 0  # a later spike gets nothing
    assert grad[1, 0, 0] < 0  # the label's first spike: be earlier (more present)


def test_gradients_scale_with_the_upstream_gradient():
    """The backward multiplies by the incoming gradient (AMP's loss scaling works)."""
    out = _spikes(7, 3, 4, p=0.4, seed=5)
    target = torch.tensor([1, 2, 3])
    for fn in (spike_count_plus_loss, spike_count_sum0_loss, ce_plus_loss, ttfs_loss):
        kwargs = _within(fn, 6)  # (the default desired_count 10 is above T = 7)
        a = out.clone().requires_grad_(True)
        fn(a, target, **kwargs).backward()
        b = out.clone().requires_grad_(True)
        (1024.0 * fn(b, target, **kwargs)).backward()
        torch.testing.assert_close(b.grad, 1024.0 * a.grad, msg=fn.__name__)
        assert a.grad.abs().sum() > 0, fn.__name__


def test_time_based_losses_drive_an_event_driven_layer():
    """The spike gradients reach a (calibrated) event-driven output layer's weights and
    gradient descent lowers each loss well below its start."""
    from spikeflow.event_driven import EventDrivenLinear, calibrate_event_driven

    torch.manual_seed(0)
    x = (torch.rand(20, 16, 40) < 0.3).float()
    target = torch.arange(16) % 4
    for name in ("count+", "sum0", "ce+", "ttfs"):
        torch.manual_seed(1)
        layer = EventDrivenLinear(40, 4)
        calibrate_event_driven(layer, x, 5.0)
        loss_fn = get_loss(name)
        before = loss_fn(layer(x), target).item()
        opt = torch.optim.SGD(layer.parameters(), lr=0.5)
        for _ in range(30):
            opt.zero_grad()
            loss_fn(layer(x), target).backward()
            assert torch.isfinite(layer.weight.grad).all(), name
            opt.step()
        assert loss_fn(layer(x), target).item() < 0.6 * before, name


def test_errors_name_the_loss_and_argument():
    out = torch.zeros(4, 2, 3)
    with pytest.raises(DTypeError, match="spike_count_plus_loss: target must be integer"):
        spike_count_plus_loss(out, torch.zeros(2, 3))
    with pytest.raises(DTypeError, match="ttfs_loss: target must be integer"):
        ttfs_loss(out, torch.zeros(2, 3))
    with pytest.raises(ConfigurationError, match="spike_count_sum0_loss: balance must be > 0"):
        spike_count_sum0_loss(out, torch.tensor([0, 1]), balance=0.0)
    with pytest.raises(ConfigurationError, match="ce_plus_loss: silent_logit"):
        get_loss("ce+", silent_logit=float("nan"))
    with pytest.raises(ConfigurationError, match="desired_count"):
        get_loss("count+", desired_count=1, undesired_count=3)
    with pytest.raises(ConfigurationError, match="takes no argument"):
        get_loss("ttfs", balance=1.0)
    assert get_loss("count+", balance=None, desired_count=4)(out, torch.tensor([0, 1])) >= 0
    for name, fn in (("count+", spike_count_plus_loss), ("sum0", spike_count_sum0_loss)):
        # a desired count above T: never reached (at most a spike per step), refused
        message = rf"{fn.__name__}: desired_count \(5\) is more than the T = 4 steps of out_seq"
        with pytest.raises(ConfigurationError, match=message):
            get_loss(name, desired_count=5)(out, torch.tensor([0, 1]))


def test_silent_output_gives_finite_zero_gradients():
    out = torch.zeros(5, 2, 3, requires_grad=True)
    target = torch.tensor([0, 2])
    for fn in (spike_count_plus_loss, spike_count_sum0_loss, ce_plus_loss, ttfs_loss):
        out.grad = None
        value = fn(out, target, **_within(fn, 5))
        value.backward()
        assert torch.isfinite(value), fn.__name__
        assert torch.all(out.grad == 0), fn.__name__


def test_first_spike_steps_and_readouts():
    out = torch.zeros(5, 1, 4)
    out[[1, 2, 3], 0, 0] = 1.0  # 3 spikes, first at 1
    out[[1, 4], 0, 1] = 1.0  # 2 spikes, first at 1
    out[[0], 0, 2] = 1.0  # 1 spike at 0
    out[[2, 3, 4], 0, 3] = 1.0  # 3 spikes, first at 2
    assert first_spike_steps(out).tolist() == [[1, 1, 0, 2]]
    assert predict(out, "count").tolist() == [0]  # 3 spikes: class 0 (earlier) over 3
    assert predict(out, "first_spike").tolist() == [2]
    out[:, 0, 2] = 0.0
    assert first_spike_steps(out).tolist() == [[1, 1, 5, 2]]
    assert predict(out, "first_spike").tolist() == [0]  # first at 1: 3 spikes beat 2
    assert predict(out, "rate").tolist() == [0]  # ties go to the lowest index
    out[:, 0, 0] = 0.0
    assert predict(out, "count").tolist() == [3]
    with pytest.raises(ConfigurationError, match="unknown readout 'votes'"):
        predict(out, "votes")


def test_loss_readouts():
    assert loss_readout("mse") == "rate"
    assert loss_readout("count") == "count"
    assert loss_readout("COUNT+") == "count"
    assert loss_readout("ttfs") == "first_spike"
    with pytest.raises(ConfigurationError, match="unknown loss"):
        loss_readout("hinge")


def test_training_reads_accuracy_with_the_loss_readout(tmp_path):
    """``readout: auto`` takes the loss's; the epoch's test accuracy and ``spikeflow
    eval`` use it; an explicit readout overrides it; an unknown one is refused."""
    from spikeflow.training import Trainer
    from spikeflow.training.config import resolved_readout
    from spikeflow.training.data import build_datasets, to_time_major
    from spikeflow.training.evaluation import evaluate_checkpoint
    from train_runs import tiny

    trainer = Trainer(tiny(tmp_path, "ttfs", loss="ttfs", epochs=1), log=None)
    result = trainer.fit()
    assert trainer.readout == "first_spike"
    model = trainer.raw_model.eval()
    _, test_set, info = build_datasets(trainer.config, with_train=False)
    correct = {"rate": 0, "first_spike": 0}
    with torch.no_grad():
        for i in range(len(test_set)):
            x, y = test_set[i]
            out = model(to_time_major(x.unsqueeze(0), trainer.config.T, info.static))
            for readout in correct:
                correct[readout] += int(predict(out, readout).item() == y)
    assert result.final_test_acc == pytest.approx(correct["first_spike"] / len(test_set))
    evaluated = evaluate_checkpoint(tmp_path / "ttfs" / "last.pt", progress=False)
    assert evaluated["test_acc"] == pytest.approx(result.final_test_acc)
    assert evaluated["readout"] == "first_spike"
    assert resolved_readout(tiny(tmp_path, "a", loss="ttfs")) == "first_spike"
    assert resolved_readout(tiny(tmp_path, "b", loss="ttfs", readout="rate")) == "rate"
    assert resolved_readout(tiny(tmp_path, "c", loss="sum0")) == "count"
    with pytest.raises(ConfigurationError, match="readout must be one of"):
        tiny(tmp_path, "bad", readout="votes").validate()


def test_count_readout_sums_graded_outputs():
    """A voting layer's outputs are fractions: ``count`` compares their sums (as the
    counting losses count), not the number of nonzero steps."""
    out = torch.zeros(4, 1, 3)
    out[:, 0, 0] = 0.1  # 4 nonzero steps, sum 0.4
    out[:3, 0, 1] = 0.9  # 3 nonzero steps, sum 2.7
    assert predict(out, "count").tolist() == [1]
    out[1:, 0, 2] = 0.9  # the same sum 2.7 with a later first output: the tie goes to 1
    assert predict(out, "count").tolist() == [1]
    assert predict(out, "first_spike").tolist() == [1]  # first at 0: larger sum than 0
