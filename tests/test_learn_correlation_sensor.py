"""learn.correlation_sensor_step, CorrelationSensor, LIFCorrelation, stdp_sensor_step and
correlation_based_update against Norse 1.1 (values and float64 gradients), plus a
hand-derived trace of the sensor on a spike pair. The Norse tests skip without Norse."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikeflow import functional, learn
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError

F64 = dict(rtol=1e-10, atol=1e-12)
DT = 1e-3
SENSOR = dict(eta_p=0.7, eta_m=1.3, tau_c=0.02, tau_ac=0.05)


def _norse_sensor_p(cs):
    return cs.CorrelationSensorParameters(
        eta_p=torch.tensor(SENSOR["eta_p"]),
        eta_m=torch.tensor(SENSOR["eta_m"]),
        tau_ac_inv=torch.tensor(1 / SENSOR["tau_ac"]),
        tau_c_inv=torch.tensor(1 / SENSOR["tau_c"]),
    )


def _spikes(*shape, rate=0.3):
    return (torch.rand(*shape) < rate).double()


def test_pair_by_hand():
    """pre at t=0, post at t=2 on one synapse: the correlation trace decays from eta_p
    until the post spike, then holds; the anti-correlation trace jumps by eta_m."""
    sensor = learn.CorrelationSensor(**SENSOR, dt=DT)
    pre = torch.tensor([1.0, 0.0, 0.0, 0.0]).view(4, 1, 1)
    post = torch.tensor([0.0, 0.0, 1.0, 0.0]).view(4, 1, 1)
    s = sensor(pre, post)
    c = SENSOR["eta_p"] * (1 - DT / SENSOR["tau_c"]) ** 2  # decays at t=1, 2; held at 3
    a = SENSOR["eta_m"] * (1 - DT / SENSOR["tau_ac"])  # decays at t=3 (post_pre = 1)
    torch.testing.assert_close(s.correlation_trace, torch.tensor([[[c]]]))
    torch.testing.assert_close(s.anti_correlation_trace, torch.tensor([[[a]]]))
    assert s.post_pre.item() == 1.0


def test_sensor_equals_norse(float64):
    pytest.importorskip("norse.torch", reason="Norse is not installed")
    from norse.torch.functional import correlation_sensor as cs

    torch.manual_seed(0)
    # a batch of one: Norse's masks broadcast the batch against the synapses
    pre, post = _spikes(25, 1, 4), _spikes(25, 1, 3)
    pre_n, pre_s = pre.clone().requires_grad_(), pre.clone().requires_grad_()
    post_n, post_s = post.clone().requires_grad_(), post.clone().requires_grad_()
    zeros = torch.zeros(1, 4, 3)
    state = cs.CorrelationSensorState(zeros, zeros, zeros)
    for a, b in zip(pre_n, post_n):
        state = cs.correlation_sensor_step(a, b, state, _norse_sensor_p(cs), DT)
    ours = learn.CorrelationSensor(**SENSOR, dt=DT)(pre_s, post_s)
    for got, want in zip(ours, state):
        torch.testing.assert_close(got, want, **F64)
    assert state.correlation_trace.abs().sum() > 0 and state.post_pre.sum() > 0
    g1, g2 = torch.randn(1, 4, 3), torch.randn(1, 4, 3)

    def loss(s):
        return (s.correlation_trace * g1 + s.anti_correlation_trace * g2).sum()

    want = torch.autograd.grad(loss(state), [pre_n, post_n])
    got = torch.autograd.grad(loss(ours), [pre_s, post_s])
    for a, b in zip(got, want):
        assert b.abs().sum() > 0
        torch.testing.assert_close(a, b, **F64)


def test_sensor_is_per_sample():
    """A batch is its samples run one by one (where Norse's broadcasting mixes them)."""
    torch.manual_seed(4)
    pre, post = _spikes(15, 3, 4), _spikes(15, 3, 2)
    sensor = learn.CorrelationSensor(**SENSOR, dt=DT)
    batch = sensor(pre, post)
    for b in range(3):
        alone = sensor(pre[:, b : b + 1], post[:, b : b + 1])
        for x, y in zip(batch, alone):
            torch.testing.assert_close(x[b : b + 1], y)
    assert not torch.equal(batch.correlation_trace[0], batch.correlation_trace[1])


def test_lif_correlation_equals_norse(float64):
    norse = pytest.importorskip("norse.torch", reason="Norse is not installed")
    from norse.torch.functional import correlation_sensor as cs
    from norse.torch.functional.lif_correlation import LIFCorrelationParameters
    from norse.torch.module.lif_correlation import LIFCorrelation

    torch.manual_seed(1)
    n_in, n = 4, 3
    lif_p = norse.LIFParameters(
        tau_syn_inv=torch.tensor(200.0), tau_mem_inv=torch.tensor(100.0), v_th=torch.tensor(0.3)
    )
    p = LIFCorrelationParameters(lif_p, _norse_sensor_p(cs), _norse_sensor_p(cs))
    theirs = LIFCorrelation(n_in, n, p, dt=DT)
    ours = learn.LIFCorrelation(
        n_in, n, tau_syn=1 / 200, tau_mem=1 / 100, v_threshold=0.3, dt=DT,
        input_sensor=SENSOR, recurrent_sensor=SENSOR,
    )  # fmt: skip
    with torch.no_grad():
        ours.input_weight.mul_(6.0)
        ours.recurrent_weight.mul_(2.0)
    w_in = ours.input_weight.detach().clone().requires_grad_()
    w_rec = ours.recurrent_weight.detach().clone().requires_grad_()
    x = _spikes(30, 1, n_in, rate=0.5)
    x_n, x_s = x.clone().requires_grad_(), x.clone().requires_grad_()
    out, s = [], None
    for x_t in x_n:
        z, s = theirs(x_t, input_weights=w_in, recurrent_weights=w_rec, state=s)
        out.append(z)
    want = torch.stack(out)
    got, states = functional.run(ours, x_s)
    assert torch.equal(got, want) and 0.05 < want.mean() < 0.95
    torch.testing.assert_close(states[""]["v"], s.lif_state.v, **F64)
    for mine, norse_state in (
        (ours.input_correlation, s.input_correlation_state),
        (ours.recurrent_correlation, s.recurrent_correlation_state),
    ):
        for a, b in zip(mine, norse_state):
            torch.testing.assert_close(a, b, **F64)
    g = torch.randn_like(want)
    g_c = torch.randn(1, n_in, n)

    def loss(spikes, sensor):
        return (spikes * g).sum() + (sensor.correlation_trace * g_c).sum()

    want_g = torch.autograd.grad(loss(want, s.input_correlation_state), [x_n, w_in, w_rec])
    got_g = torch.autograd.grad(
        loss(got, ours.input_correlation), [x_s, ours.input_weight, ours.recurrent_weight]
    )
    for a, b in zip(got_g, want_g):
        assert b.abs().sum() > 0
        torch.testing.assert_close(a, b, **F64)


def test_stdp_sensor_and_update_equal_norse(float64):
    pytest.importorskip("norse.torch", reason="Norse is not installed")
    from norse.torch.functional import correlation_sensor as cs
    from norse.torch.functional import stdp_sensor as ss

    torch.manual_seed(2)
    pre, post = _spikes(20, 2, 5), _spikes(20, 2, 5)
    p = ss.STDPSensorParameters(
        eta_p=torch.tensor(0.5), eta_m=torch.tensor(2.0), tau_c_inv=torch.tensor(40.0)
    )
    zeros = torch.zeros(2, 5)
    theirs, ours = ss.STDPSensorState(zeros, zeros), learn.STDPSensorState(zeros, zeros)
    for a, b in zip(pre, post):
        theirs = ss.stdp_sensor_step(a, b, theirs, p, DT)
        ours = learn.stdp_sensor_step(a, b, ours, eta_p=0.5, eta_m=2.0, tau_c=1 / 40, dt=DT)
    for a, b in zip(ours, theirs):
        assert b.abs().sum() > 0
        torch.testing.assert_close(a, b, **F64)
    # the update: the same weights, the traces zeroed, nothing between the steps
    update = nn.Linear(2 * 4 * 3, 4 * 3)
    weights = torch.randn(3, 4)
    state = learn.CorrelationSensor(**SENSOR, dt=DT)(_spikes(9, 1, 4), _spikes(9, 1, 3))
    copy = cs.CorrelationSensorState(*(t.clone() for t in state))
    want = cs.correlation_based_update(20, update, weights, copy, 0.1, 10)
    got = learn.correlation_based_update(20, update, weights, state, 0.1, 10)
    torch.testing.assert_close(got, want, **F64)
    assert not torch.equal(got, weights) and state.correlation_trace.abs().sum() == 0
    assert learn.correlation_based_update(21, update, weights, state, 0.1, 10) is weights


def test_streaming_continues_one_call_and_bad_input():
    torch.manual_seed(3)
    layer = learn.LIFCorrelation(3, 4)
    with torch.no_grad():
        layer.input_weight.mul_(10.0)
    x = _spikes(16, 2, 3, rate=0.5).float()
    whole = layer(x)
    trace = layer.recurrent_correlation.anti_correlation_trace
    with functional.streaming(layer):
        parts = torch.cat([layer(x[:5]), layer(x[5:])])
    torch.testing.assert_close(parts, whole)
    torch.testing.assert_close(layer.recurrent_correlation.anti_correlation_trace, trace)
    assert whole.sum() > 0
    with pytest.raises(ShapeError, match="same T"):
        learn.CorrelationSensor()(torch.zeros(5, 2, 3), torch.zeros(4, 2, 3))
    with pytest.raises(ConfigurationError, match="tau_c must be >= dt"):
        learn.CorrelationSensor(tau_c=1e-4)
    with pytest.raises(ConfigurationError, match="recurrent_sensor"):
        learn.LIFCorrelation(3, 4, recurrent_sensor={"tau": 1.0})
    with pytest.raises(ShapeError, match="linear_update must give"):
        state = learn.CorrelationSensor()(torch.zeros(2, 1, 3), torch.zeros(2, 1, 2))
        learn.correlation_based_update(0, nn.Linear(12, 5), torch.zeros(2, 3), state, 0.1, 1)


def test_lif_correlation_names_an_input_in_another_dtype_than_its_weights():
    """A float64 input to float32 weights was a bare RuntimeError from F.linear."""
    layer = learn.LIFCorrelation(3, 4)
    x = _spikes(5, 1, 3, rate=0.5).double()
    with pytest.raises(DTypeError, match=r"LIFCorrelation: .*weights' dtype torch\.float32"):
        layer(x)
    assert layer.double()(x).dtype == torch.float64
