"""Lava-DL's SLAYER losses (SpikeRate, SpikeMax, SpikeTime) and classifiers (Rate,
MovingWindow): by hand, against loops written in Lava-DL's time-last layout ``[N, C, T]``
(the time-major input transposed) in float64, with gradcheck, through the registry, and
their errors. Lava-DL is not installable here; the loops follow its ``loss.py``,
``classifier.py`` and ``utils/filter`` (docs/models.md, "Lava-DL's SLAYER losses")."""

from __future__ import annotations

import math

import pytest
import torch

from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.losses import (
    MovingWindow,
    Rate,
    SpikeMax,
    SpikeRate,
    SpikeTime,
    exponential_kernel,
    get_loss,
    loss_readout,
    moving_window_confidence,
    moving_window_predict,
    moving_window_rate,
    predict,
    rate_confidence,
    spike_max_loss,
    spike_rate_loss,
    spike_time_loss,
)

EPS = 1e-6  # Lava-DL's Rate/MovingWindow eps


# ---- references in Lava-DL's layout: x[n, c, t], labels [N] or [N, T] -------------------


def _lava_fir(x, taps):
    """Lava-DL's ``conv`` in time: y[..., t] = Σ_j taps[j] x[..., t - j], causal."""
    y = torch.zeros_like(x)
    steps = x.shape[-1]
    for j, tap in enumerate(taps[:steps]):
        y[..., j:] += tap * x[..., : steps - j]
    return y


def _lava_window_rate(x, window):
    return _lava_fir(x, [1.0 / window] * window)


def _reduce(terms, reduction):
    total = sum(terms)
    return total / len(terms) if reduction == "mean" else total


def _lava_spike_rate(x, labels, true_rate, false_rate, window, reduction):
    n_, c_, t_ = x.shape
    terms = []
    if window is None:
        for n in range(n_):
            for c in range(c_):
                wanted = true_rate if c == labels[n] else false_rate
                terms.append((x[n, c].sum() / t_ - wanted) ** 2)
        return _reduce(terms, reduction)
    rates = _lava_window_rate(x, window)
    for n in range(n_):
        for c in range(c_):
            for t in range(t_):
                wanted = true_rate if c == labels[n, t] else false_rate
                terms.append((rates[n, c, t] - wanted) ** 2)
    return _reduce(terms, reduction)


def _log_p(rates, label, mode):
    """log of the label's confidence from the rates of one sample (and step) [C]."""
    if mode == "probability":
        return torch.log(rates[label] / (rates.sum() + EPS))
    return rates[label] - torch.log(torch.exp(rates).sum())


def _lava_spike_max(x, labels, window, mode, reduction):
    n_, _, t_ = x.shape
    if window is None:
        terms = [-_log_p(x[n].sum(-1) / t_, labels[n], mode) for n in range(n_)]
        return _reduce(terms, reduction)
    rates = _lava_window_rate(x, window)
    terms = [-_log_p(rates[n, :, t], labels[n, t], mode) for n in range(n_) for t in range(t_)]
    return _reduce(terms, reduction)


def _lava_spike_time(x, desired, tau, length, order, reduction):
    taps = [math.exp(-j / tau) for j in range(length)]
    base = list(taps)
    for _ in range(order - 1):  # the taps filtered by the first-order filter, truncated
        taps = [sum(base[i] * taps[j - i] for i in range(j + 1)) for j in range(length)]
    diff = _lava_fir(x, taps) - _lava_fir(desired, taps)
    return _reduce(list(diff.flatten() ** 2), reduction)


def _time_major(x):
    """Lava-DL's [N, C, T] as spikeflow's [T, B, K]."""
    return x.permute(2, 0, 1)


def _spikes(shape, p=0.4):
    return (torch.rand(shape, dtype=torch.float64) < p).double()


# ---- by hand ------------------------------------------------------------------------


def test_spike_rate_by_hand():
    out = torch.tensor([[[1.0, 1.0]], [[1.0, 0.0]], [[0.0, 0.0]], [[0.0, 0.0]]])  # T = 4
    label = torch.tensor([0])  # rates [0.5, 0.25]; wanted [0.75, 0.25]
    assert spike_rate_loss(out, label, 0.75, 0.25).item() == pytest.approx(0.0625)
    assert spike_rate_loss(out, label, 0.75, 0.25, reduction="mean").item() == pytest.approx(
        0.0625 / 2
    )
    # W = 2: class 0 rates [0.5, 1, 0.5, 0], class 1 [0.5, 0.5, 0, 0] (zero before step 0)
    got = spike_rate_loss(out, label, 1.0, 0.0, moving_window=2)
    assert got.item() == pytest.approx((0.25 + 0 + 0.25 + 1) + (0.25 + 0.25))


def test_spike_max_by_hand():
    out = torch.tensor([[[1.0, 1.0]], [[1.0, 0.0]], [[0.0, 0.0]], [[0.0, 0.0]]])
    got = spike_max_loss(out, torch.tensor([1]))
    assert got.item() == pytest.approx(-math.log(0.25 / (0.75 + EPS)))
    soft = -(0.25 - math.log(math.exp(0.5) + math.exp(0.25)))
    for mode in ("softmax", "logsoftmax"):  # Lava-DL: both are log-softmax
        assert spike_max_loss(out, torch.tensor([1]), mode=mode).item() == pytest.approx(soft)
    # W = 2, per-step labels all 0: class 0 rates [0.5, 1, 0.5, 0], class 1 [0.5, 0.5, 0,
    # 0]; the label's rate at the last step is 0: log 0, an infinite loss, as in Lava-DL
    labels = torch.tensor([[0], [0], [0], [0]])
    want = -(math.log(0.5 / (1 + EPS)) + math.log(1 / (1.5 + EPS)) + math.log(0.5 / (0.5 + EPS)))
    got = spike_max_loss(out[:3], labels[:3], moving_window=2)
    assert got.item() == pytest.approx(want)
    assert spike_max_loss(out, labels, moving_window=2).item() == math.inf


def test_exponential_kernel_has_the_closed_form():
    # Lava-DL's order-n taps: the first-order taps convolved n - 1 more times, truncated:
    # ε_n[j] = C(j + n - 1, n - 1) a^j with a = exp(-1 / τ).
    tau, length = 3.0, 9
    a = math.exp(-1 / tau)
    for order in (1, 2, 3):
        want = [math.comb(j + order - 1, order - 1) * a**j for j in range(length)]
        got = exponential_kernel(tau, length, order)
        assert got.dtype == torch.float64
        torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64))
    torch.testing.assert_close(SpikeTime(tau, length, 2).kernel, exponential_kernel(tau, length, 2))


def test_spike_time_by_hand():
    steps, tau = 6, 2.0
    out = torch.zeros(steps, 1, 2, dtype=torch.float64)
    out[0, 0, 0] = 1.0  # one spike at t = 0; none wanted: filtered a^t
    desired = torch.zeros_like(out)
    desired[2, 0, 1] = 1.0  # one wanted at t = 2 that never came: a^(t-2) from t = 2
    a2 = math.exp(-2 / tau)
    want = sum(a2**t for t in range(steps)) + sum(a2**t for t in range(steps - 2))
    assert spike_time_loss(out, desired, tau).item() == pytest.approx(want)
    mean = spike_time_loss(out, desired, tau, reduction="mean")
    assert mean.item() == pytest.approx(want / (steps * 2))
    # a bool spike train is taken as out_seq's dtype; taps past T do not matter
    got = spike_time_loss(out, desired.bool(), tau, length=steps)
    assert got.item() == pytest.approx(want)
    short = spike_time_loss(out, desired, tau, length=2)  # taps 1, a only
    a = math.exp(-1 / tau)
    assert short.item() == pytest.approx(2 * (1 + a**2))


# ---- against Lava-DL's definitions in its own layout ----------------------------------


@pytest.mark.parametrize("window", [None, 1, 3, 7])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_spike_rate_equals_the_lava_layout_loop(window, reduction):
    n_, c_, t_ = 3, 4, 7
    x = _spikes((n_, c_, t_))
    labels = torch.randint(0, c_, (n_,))
    want = _lava_spike_rate(
        x, labels[:, None].expand(n_, t_) if window else labels, 0.6, 0.1, window, reduction
    )
    got = spike_rate_loss(_time_major(x), labels, 0.6, 0.1, window, reduction)
    torch.testing.assert_close(got, want)
    if window is not None:  # per-step labels [T, B] are Lava-DL's [N, T] transposed
        per_step = torch.randint(0, c_, (n_, t_))
        want = _lava_spike_rate(x, per_step, 0.6, 0.1, window, reduction)
        got = spike_rate_loss(_time_major(x), per_step.t(), 0.6, 0.1, window, reduction)
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("window", [None, 2, 5])
@pytest.mark.parametrize("mode", ["probability", "softmax"])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_spike_max_equals_the_lava_layout_loop(window, mode, reduction):
    n_, c_, t_ = 3, 4, 6
    x = torch.rand(n_, c_, t_, dtype=torch.float64) + 0.05  # no silent window
    labels = torch.randint(0, c_, (n_,))
    per_sample = labels[:, None].expand(n_, t_) if window else labels
    want = _lava_spike_max(x, per_sample, window, mode, reduction)
    got = spike_max_loss(_time_major(x), labels, window, mode, reduction)
    torch.testing.assert_close(got, want)
    if window is not None:
        per_step = torch.randint(0, c_, (n_, t_))
        want = _lava_spike_max(x, per_step, window, mode, reduction)
        got = spike_max_loss(_time_major(x), per_step.t(), window, mode, reduction)
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize(
    ("tau", "length", "order", "reduction"),
    [(5.0, 100, 1, "sum"), (2.0, 4, 1, "mean"), (1.5, 6, 2, "sum"), (3.0, 8, 3, "mean")],
)
def test_spike_time_equals_the_lava_layout_loop(tau, length, order, reduction):
    x, desired = _spikes((2, 3, 8)), _spikes((2, 3, 8))
    want = _lava_spike_time(x, desired, tau, length, order, reduction)
    got = spike_time_loss(_time_major(x), _time_major(desired), tau, length, order, reduction)
    torch.testing.assert_close(got, want)
    module = SpikeTime(tau, length, order, reduction)
    torch.testing.assert_close(module(_time_major(x), _time_major(desired)), want)


def test_long_sequences_cross_the_filter_blocks():
    # The filter works on blocks of max(L, 64) steps; T = 150 makes 3 blocks of 64 for
    # the window (the last one padded) and 2 of 100 for the kernel.
    x, desired = _spikes((2, 3, 150)), _spikes((2, 3, 150))
    torch.testing.assert_close(
        moving_window_rate(_time_major(x), 5), _time_major(_lava_window_rate(x, 5))
    )
    want = _lava_spike_time(x, desired, 20.0, 100, 1, "sum")
    torch.testing.assert_close(spike_time_loss(_time_major(x), _time_major(desired), 20.0), want)
    out = torch.rand(70, 1, 1, dtype=torch.float64, requires_grad=True)  # 2 blocks of 64
    target = _spikes((70, 1, 1))
    check = torch.autograd.gradcheck  # fast mode: random projections of the Jacobian
    assert check(lambda o: spike_time_loss(o, target, 2.0, 3), (out,), fast_mode=True)


def test_trailing_dims_are_flattened_into_the_classes():
    out = torch.rand(5, 2, 3, 2, dtype=torch.float64) + 0.1  # [T, B, C, H]
    flat = out.flatten(2)
    labels = torch.tensor([5, 0])
    torch.testing.assert_close(
        spike_rate_loss(out, labels, 1, 0), spike_rate_loss(flat, labels, 1, 0)
    )
    torch.testing.assert_close(spike_max_loss(out, labels, 2), spike_max_loss(flat, labels, 2))
    torch.testing.assert_close(Rate.predict(out), predict(flat, "rate"))
    assert moving_window_rate(out, 2).shape == out.shape


# ---- classifiers ------------------------------------------------------------------------


def test_moving_window_rate_confidence_and_predict_equal_the_lava_layout_loop():
    n_, c_, t_, w = 2, 3, 6, 3
    x = _spikes((n_, c_, t_), p=0.5)
    rates = _lava_window_rate(x, w)  # [N, C, T]
    torch.testing.assert_close(moving_window_rate(_time_major(x), w), _time_major(rates))
    probability = rates / (rates.sum(1, keepdim=True) + EPS)  # over the classes, each step
    torch.testing.assert_close(
        moving_window_confidence(_time_major(x), w), _time_major(probability)
    )
    soft = torch.softmax(rates, 1)
    window = MovingWindow(w, mode="softmax")
    torch.testing.assert_close(window.confidence(_time_major(x)), _time_major(soft))
    torch.testing.assert_close(
        window.confidence(_time_major(x), "logsoftmax"), _time_major(soft.log())
    )
    torch.testing.assert_close(window.rate(_time_major(x)), _time_major(rates))
    assert torch.equal(moving_window_predict(_time_major(x), w), rates.argmax(1).t())
    assert torch.equal(window(_time_major(x)), rates.argmax(1).t())


def test_rate_classifier():
    out = torch.tensor([[[1.0, 0.0, 1.0]], [[0.0, 0.0, 1.0]], [[1.0, 1.0, 0.0]]])
    rates = torch.tensor([[2 / 3, 1 / 3, 2 / 3]])
    torch.testing.assert_close(Rate.rate(out), rates)
    torch.testing.assert_close(Rate.confidence(out), rates / (5 / 3 + EPS))
    torch.testing.assert_close(rate_confidence(out, "softmax"), torch.softmax(rates, -1))
    torch.testing.assert_close(Rate.confidence(out, "logsoftmax"), torch.log_softmax(rates, -1))
    assert Rate()(out).tolist() == [0]  # a tie goes to the lowest index
    assert Rate.predict(out).tolist() == predict(out, "rate").tolist()


# ---- gradients ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("loss", "kwargs"),
    [
        (spike_rate_loss, {"true_rate": 0.7, "false_rate": 0.1}),
        (spike_rate_loss, {"true_rate": 0.7, "false_rate": 0.1, "moving_window": 3}),
        (spike_max_loss, {"mode": "probability"}),
        (spike_max_loss, {"mode": "softmax", "reduction": "mean"}),
        (spike_max_loss, {"mode": "probability", "moving_window": 2}),
        (spike_max_loss, {"mode": "logsoftmax", "moving_window": 4}),
    ],
)
def test_rate_losses_gradcheck(loss, kwargs):
    out = (torch.rand(5, 2, 3, dtype=torch.float64) + 0.1).requires_grad_(True)
    labels = torch.tensor([2, 0])
    assert torch.autograd.gradcheck(lambda o: loss(o, labels, **kwargs), (out,))


@pytest.mark.parametrize(("order", "reduction"), [(1, "sum"), (2, "mean")])
def test_spike_time_gradcheck(order, reduction):
    out = torch.rand(6, 2, 2, dtype=torch.float64, requires_grad=True)
    desired = _spikes((6, 2, 2)).requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda o, d: spike_time_loss(o, d, 2.0, 4, order, reduction), (out, desired)
    )


# ---- modules and the registry ------------------------------------------------------------


def test_modules_equal_the_functions():
    out, labels = _spikes((6, 3, 4)), torch.tensor([1, 3, 0])
    torch.testing.assert_close(
        SpikeRate(0.5, 0.05, 2, "mean")(out, labels),
        spike_rate_loss(out, labels, 0.5, 0.05, 2, "mean"),
    )
    rates = out + 0.1
    torch.testing.assert_close(
        SpikeMax(3, "softmax")(rates, labels), spike_max_loss(rates, labels, 3, "softmax")
    )
    assert "true_rate=0.5" in repr(SpikeRate(0.5, 0.05))


def test_registry_binds_the_slayer_losses():
    out, labels = _spikes((4, 2, 3)), torch.tensor([2, 1])
    assert get_loss("spike_max") is spike_max_loss
    assert get_loss("Spike-Max") is spike_max_loss
    bound = get_loss("spike_rate", true_rate=0.2, false_rate=0.03, moving_window=2)
    torch.testing.assert_close(bound(out, labels), spike_rate_loss(out, labels, 0.2, 0.03, 2))
    assert loss_readout("spike_rate") == loss_readout("spike_max") == "rate"
    with pytest.raises(ConfigurationError, match=r"needs the argument\(s\) \['true_rate'"):
        get_loss("spike_rate")
    with pytest.raises(ConfigurationError, match=r"\['false_rate'\]"):
        get_loss("spike_rate", true_rate=0.2)
    with pytest.raises(ConfigurationError, match="spike_rate_loss: false_rate must be"):
        get_loss("spike_rate", true_rate=0.2, false_rate=1.5)
    with pytest.raises(ConfigurationError, match="spike_max_loss: mode must be one of"):
        get_loss("spike_max", mode="logprobability")
    with pytest.raises(ConfigurationError, match="takes no argument"):
        get_loss("spike_max", true_rate=0.2)


# ---- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda o, y: spike_rate_loss(o, y, 1.2, 0.0), ConfigurationError, "true_rate must be"),
        (lambda o, y: spike_rate_loss(o, y, 1, 0, moving_window=0), ConfigurationError,
         "moving_window must be an integer >= 1, got 0"),
        (lambda o, y: spike_rate_loss(o, y, 1, 0, moving_window=6), ConfigurationError,
         r"moving_window \(6\) is longer than the T = 5 steps"),
        (lambda o, y: spike_rate_loss(o, y, 1, 0, reduction="none"), ConfigurationError,
         "reduction must be one of sum, mean, got 'none'"),
        (lambda o, y: spike_max_loss(o, y, mode="log"), ConfigurationError,
         "mode must be one of probability, softmax, logsoftmax"),
        (lambda o, y: spike_max_loss(o, y, moving_window=2.0), ConfigurationError,
         "moving_window must be an integer"),
        (lambda o, y: spike_max_loss(o, torch.tensor([0, 3])), ConfigurationError,
         r"labels must lie in \[0, 2\], got range \[0, 3\]"),
        (lambda o, y: spike_max_loss(o, torch.tensor([-1, 0])), ConfigurationError,
         r"labels must lie in \[0, 2\]"),
        (lambda o, y: spike_max_loss(o, torch.tensor([0, 1, 2])), ShapeError,
         r"target must be labels \[B\] for out_seq \(5, 2, 3\), got \(3,\)"),
        (lambda o, y: spike_rate_loss(o, y.expand(5, 2), 1, 0), ShapeError,
         r"labels \[B\] for"),
        (lambda o, y: spike_rate_loss(o, y.expand(4, 2), 1, 0, 2), ShapeError,
         r"\[B\] or per-step \[T, B\]"),
        (lambda o, y: spike_max_loss(o, y.double()), DTypeError, "integer class labels"),
        (lambda o, y: spike_max_loss(o[0], y), ShapeError, r"\[T, B, K\] tensor, got \(2, 3\)"),
        (lambda o, y: spike_max_loss(o.long(), y), DTypeError, "floating point"),
        (lambda o, y: spike_rate_loss(o[:, :0], y[:0], 1, 0), ShapeError, "no steps, samples"),
        (lambda o, y: spike_time_loss(o, o[:4]), ShapeError,
         r"target must have out_seq's shape \(5, 2, 3\), got \(4, 2, 3\)"),
        (lambda o, y: spike_time_loss(o, o, time_constant=0), ConfigurationError,
         r"time_constant must be a finite real number in \(0, inf\)"),
        (lambda o, y: spike_time_loss(o, o, length=0), ConfigurationError,
         "length must be an integer >= 1"),
        (lambda o, y: spike_time_loss(o, o, filter_order=0), ConfigurationError,
         "filter_order must be an integer >= 1"),
        (lambda o, y: spike_time_loss(o, o, reduction="max"), ConfigurationError, "reduction"),
        (lambda o, y: spike_time_loss(o[0, 0], o[0, 0]), ShapeError, r"\[T, B, \.\.\.\]"),
        (lambda o, y: moving_window_rate(o, 9), ConfigurationError,
         r"moving_window_rate: window \(9\) is longer than the T = 5"),
        (lambda o, y: rate_confidence(o, "max"), ConfigurationError, "rate_confidence: mode"),
        (lambda o, y: rate_confidence(o, eps=-1.0), ConfigurationError, "eps must be"),
        (lambda o, y: MovingWindow(0), ConfigurationError, "time_window must be an integer"),
        (lambda o, y: MovingWindow(3).confidence(o, "max"), ConfigurationError, "mode must be"),
        (lambda o, y: SpikeMax(mode="logprobability"), ConfigurationError, "mode must be"),
        (lambda o, y: SpikeTime(length=2.5), ConfigurationError, "length must be an integer"),
    ],
)  # fmt: skip
def test_bad_input_is_named(call, error, match):
    out, labels = torch.rand(5, 2, 3), torch.tensor([0, 2])
    with pytest.raises(error, match=match):
        call(out, labels)


def test_the_docs_training_step_runs():
    """docs/models.md's SpikeMax training step, executed as printed."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "models.md").read_text()
    code = re.search(r"<!-- losses: slayer -->\s*```python\n(.*?)```", text, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "docs/models.md (slayer)", "exec"), namespace)
    assert namespace["loss"].ndim == 0 and torch.isfinite(namespace["loss"])
    assert namespace["net"][0].weight.grad.abs().sum() > 0
    assert namespace["prediction"].shape == (32,) and namespace["per_step"].shape == (16, 32)


# ---- the filter's memory, low-precision inputs, the SpikeTime buffer --------------------


@pytest.mark.parametrize("window", [1, 63, 64, 65, 130, 200])
def test_every_window_equals_the_lava_layout_loop(window):
    x = _spikes((2, 3, 200))  # 4 blocks of 64 steps: windows within, at and across them
    want = _time_major(_lava_window_rate(x, window))
    torch.testing.assert_close(moving_window_rate(_time_major(x), window), want)


def test_a_long_window_keeps_memory_linear_in_T():
    # A window (or SpikeTime kernel) as long as the sequence must not build [T, T]
    # matrices, which the backward pass keeps: at T = 2048 those held 4.2 M elements (and
    # int64 lags as large beside them), for 2048 values; the filter's blocks are at most
    # 512 steps, whatever T.
    steps = 2048
    x = torch.rand(steps, 1, 1, dtype=torch.float64, requires_grad=True)
    kept: list[int] = []

    def keep(tensor):
        kept.append(tensor.numel())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor):
        got = moving_window_rate(x, steps)
        loss = spike_time_loss(x, x.detach().flip(0), 500.0, steps)
    assert kept and max(kept) <= 512**2
    torch.testing.assert_close(got, x.cumsum(0) / steps)
    loss.backward()  # the saved tensors still serve the gradient
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_outputs_are_summed_in_float32(dtype):
    # Lava-DL's sums grow with T·B·K: in float16 SpikeTime's sum of these 8000 terms
    # (1.0e5) overflowed to inf, and bfloat16 kept 3 significant digits.
    out = torch.ones(100, 8, 10, dtype=dtype)
    out[::3] = 0
    zeros, labels = torch.zeros_like(out), torch.tensor([0, 3, 9, 2, 1, 1, 5, 7])
    cases = [
        lambda o: spike_time_loss(o, zeros),
        lambda o: spike_rate_loss(o, labels, 0.9, 0.05, moving_window=7),
        lambda o: spike_max_loss(o + 0.01, labels, moving_window=7),
    ]
    for loss in cases:
        got, want = loss(out), loss(out.float())
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, want, rtol=1e-5, atol=0)
    grad_out = out.clone().requires_grad_(True)
    spike_time_loss(grad_out, zeros).backward()
    assert grad_out.grad.dtype == dtype and torch.isfinite(grad_out.grad).all()


def test_spike_time_filters_with_its_kernel_buffer():
    # As Lava-DL's SpikeTime filters with filter.filter, the module's taps are its
    # buffer: replaced taps (Lava-DL: filter.filter.data = ...) or a loaded state_dict act.
    x, s = _spikes((2, 2, 6)), _spikes((2, 2, 6))
    out, desired = _time_major(x), _time_major(s)
    loss = SpikeTime(2.0, 4)
    with torch.no_grad():
        loss.kernel.copy_(torch.tensor([1.0, 0.5, 0.0, 0.0], dtype=torch.float64))
    want = _lava_spike_time(x, s, 1 / math.log(2), 2, 1, "sum")  # taps 1, 1/2
    torch.testing.assert_close(loss(out, desired), want)
    other = SpikeTime(2.0, 4)
    other.load_state_dict(loss.state_dict())
    torch.testing.assert_close(other(out, desired), want)
