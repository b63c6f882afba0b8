"""Reward-modulated STDP (MSTDP, MSTDP-ET) against loops written from the rules."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.learn import STDPLearner, eligibility_reward, stdp_update


def _spikes(*shape: int, p: float = 0.3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=g) < p).double()


def ours_tau(tau: float) -> float:
    """The τ whose decay 1 - 1/τ is SpikingJelly's reward learners' exp(-1/τ)."""
    return 1.0 / (1.0 - math.exp(-1.0 / tau))


def _eligibilities(w, pre, post, tau_pre, tau_post):
    """ζ[t, b] = f_post(w)·post ⊗ x - f_pre(w)·y ⊗ pre with f = identity, by loops."""
    steps, batch = pre.shape[:2]
    x = torch.zeros(batch, pre.shape[2], dtype=w.dtype)
    y = torch.zeros(batch, post.shape[2], dtype=w.dtype)
    out = torch.zeros(steps, batch, *w.shape, dtype=w.dtype)
    for t in range(steps):
        x = x * (1 - 1 / tau_pre) + pre[t]
        y = y * (1 - 1 / tau_post) + post[t]
        for b in range(batch):
            out[t, b] = w * torch.outer(post[t, b], x[b]) - w * torch.outer(y[b], pre[t, b])
    return out


def test_mstdp_linear_by_hand():
    torch.manual_seed(0)
    fc = nn.Linear(6, 4, bias=False).double()
    pre, post = _spikes(9, 3, 6, seed=1), _spikes(9, 3, 4, seed=2)
    reward = torch.randn(9, 3, dtype=torch.float64)
    delta, _ = stdp_update(fc, pre, post, 3.0, 4.0, reward=reward)
    zeta = _eligibilities(fc.weight.detach(), pre, post, 3.0, 4.0)
    want = (reward[:, :, None, None] * zeta).sum(dim=(0, 1))
    torch.testing.assert_close(delta, want, rtol=1e-12, atol=1e-12)
    plain, _ = stdp_update(fc, pre, post, 3.0, 4.0)
    torch.testing.assert_close(stdp_update(fc, pre, post, 3.0, 4.0, reward=1.0)[0], plain)
    # [B] rewards: one per sample; [T, 1]: one per step
    per_sample = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    torch.testing.assert_close(
        stdp_update(fc, pre, post, 3.0, 4.0, reward=per_sample)[0],
        (per_sample[None, :, None, None] * zeta).sum(dim=(0, 1)),
    )
    per_step = torch.linspace(-1, 1, 9, dtype=torch.float64).unsqueeze(1)
    torch.testing.assert_close(
        stdp_update(fc, pre, post, 3.0, 4.0, reward=per_step)[0],
        (per_step[:, :, None, None] * zeta).sum(dim=(0, 1)),
    )


def test_mstdp_conv_is_the_rewarded_sum_of_single_steps():
    torch.manual_seed(1)
    conv = nn.Conv2d(2, 3, 3, stride=2, padding=1).double()
    pre = _spikes(5, 2, 2, 7, 7, seed=3)
    post = _spikes(5, 2, 3, 4, 4, seed=4)
    reward = torch.randn(5, 2, dtype=torch.float64)
    delta, _ = stdp_update(conv, pre, post, 2.0, 5.0, reward=reward)
    want = torch.zeros_like(conv.weight)
    for b in range(2):
        traces = (None, None)
        for t in range(5):
            step, traces = stdp_update(conv, pre[t:t + 1, b:b + 1], post[t:t + 1, b:b + 1],
                                       2.0, 5.0, traces=traces)  # fmt: skip
            want += reward[t, b] * step
    torch.testing.assert_close(delta, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("tau", [1.0, 2.5, 10.0])
def test_mstdp_et_is_mstdp_with_the_eligibility_reward(tau):
    """z[t] = z[t-1](1 - 1/τ) + ζ[t]/τ, Δw = Σ r[t] z[t], by the recursion."""
    torch.manual_seed(2)
    fc = nn.Linear(5, 3, bias=False).double()
    pre, post = _spikes(12, 2, 5, seed=5), _spikes(12, 2, 3, p=0.4, seed=6)
    reward = torch.randn(12, 2, dtype=torch.float64)
    zeta = _eligibilities(fc.weight.detach(), pre, post, 2.0, 3.0)
    z = torch.zeros(2, *fc.weight.shape, dtype=torch.float64)
    want = torch.zeros_like(fc.weight)
    for t in range(12):
        z = z * (1 - 1 / tau) + zeta[t] / tau
        want += (reward[t, :, None, None] * z).sum(0)
    got, _ = stdp_update(fc, pre, post, 2.0, 3.0, reward=eligibility_reward(reward, tau))
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_learner_streams_rewards_step_by_step():
    """step(reward=r_t) after each streamed step equals the rewarded whole sequence;
    [S, B] rewards split over several recorded calls."""
    from spikeflow.functional import reset_net, set_step_mode, set_streaming
    from spikeflow.neurons import LIFNode

    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(8, 4, bias=False), LIFNode(tau=2.0, v_threshold=0.5))
    net = net.double()
    x = _spikes(6, 3, 8, p=0.5, seed=7)
    reward = torch.randn(6, 3, dtype=torch.float64)
    learner = STDPLearner(net[0], net[1], 2.0, 2.0)
    out = net(x)
    whole = learner.step(on_grad=False, reward=reward)
    want, _ = stdp_update(net[0], x, out, 2.0, 2.0, reward=reward)
    torch.testing.assert_close(whole, want)
    # streamed: one step per call, the reward after each
    set_step_mode(net, "s")
    set_streaming(net, True)
    reset_net(net)
    streamed = torch.zeros_like(want)
    for t in range(6):
        net(x[t])
        streamed += learner.step(on_grad=False, reward=reward[t])
    torch.testing.assert_close(streamed, want)
    # several calls recorded, one step(): per-step rewards [S, B] are split over them
    reset_net(net)
    learner.reset()
    for t in range(6):
        net(x[t])
    torch.testing.assert_close(learner.step(on_grad=False, reward=reward), want)
    reset_net(net)
    net(x[0])
    with pytest.raises(
        ShapeError, match=r"per-step rewards must be \[S, 1\] or \[S, B\] with S = 1"
    ):
        learner.step(reward=reward)


def test_integer_and_bool_rewards_are_summed_in_float():
    reward = torch.tensor([[0], [0], [1]])
    want = eligibility_reward(reward.double(), 2.0)
    torch.testing.assert_close(eligibility_reward(reward, 2.0).double(), want)
    torch.testing.assert_close(eligibility_reward(reward.bool(), 2.0).double(), want)
    torch.testing.assert_close(want[:, 0], torch.tensor([0.125, 0.25, 0.5], dtype=torch.float64))


def test_learner_takes_one_reward_row_for_all_steps():
    from spikeflow.neurons import LIFNode

    torch.manual_seed(5)
    net = nn.Sequential(nn.Linear(6, 3, bias=False), LIFNode(tau=2.0, v_threshold=0.4))
    learner = STDPLearner(net[0], net[1], 2.0, 2.0)
    x = _spikes(4, 2, 6, p=0.6, seed=10).float()
    out = net(x)
    per_sample = torch.tensor([[2.0, -1.0]])
    got = learner.step(on_grad=False, reward=per_sample)
    want, _ = stdp_update(net[0], x, out, 2.0, 2.0, reward=per_sample[0])
    torch.testing.assert_close(got, want)


def test_reward_errors_are_named():
    fc = nn.Linear(3, 2)
    pre, post = _spikes(4, 2, 3).float(), _spikes(4, 2, 2).float()
    with pytest.raises(ShapeError, match=r"does not broadcast to \[T, B\] = \[4, 2\]"):
        stdp_update(fc, pre, post, 2.0, 2.0, reward=torch.ones(4))
    with pytest.raises(ConfigurationError, match="reward must be finite"):
        stdp_update(fc, pre, post, 2.0, 2.0, reward=float("nan"))
    with pytest.raises(ConfigurationError, match="eligibility_reward: tau"):
        eligibility_reward(torch.ones(3), 0.5)
    with pytest.raises(ShapeError, match="eligibility_reward: reward must be"):
        eligibility_reward(torch.tensor(1.0), 2.0)


def test_matches_spikingjelly_reward_learners():
    """SpikingJelly's MSTDPLearner and MSTDPETLearner, single-step Linear. They decay
    traces by exp(-1/τ) (spikeflow: 1 - 1/τ, so τ here is converted) and apply the
    reward of a call to the previous call's eligibility (so rewards are shifted by one
    call, with one extra call at the end)."""
    plasticity = pytest.importorskip(
        "spikingjelly.activation_based.learning.plasticity",
        reason="SpikingJelly (a benchmark extra, scripts/setup.sh bench) is the reference",
    )
    torch.manual_seed(4)
    steps, batch = 7, 3
    pre = _spikes(steps + 1, batch, 5, p=0.5, seed=8)
    post = _spikes(steps + 1, batch, 4, p=0.5, seed=9)
    pre[-1] = post[-1] = 0.0  # the extra call that receives the last reward
    reward = torch.randn(steps, batch, dtype=torch.float64)
    fc = nn.Linear(5, 4, bias=False).double()

    class Replay(nn.Module):  # emits recorded post spikes
        def __init__(self) -> None:
            super().__init__()
            self.t = 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.t += 1
            return post[self.t - 1]

    replay = Replay()
    theirs = plasticity.MSTDPLearner("s", fc, replay, 3.0, 4.0)
    total = torch.zeros_like(fc.weight)
    for t in range(steps + 1):
        replay(fc(pre[t]))
        got = theirs.step(on_grad=False, reward=reward[t - 1] if t else torch.zeros(batch,
                          dtype=torch.float64))  # fmt: skip
        total += 0 if got is None else got
    ours, _ = stdp_update(fc, pre[:steps], post[:steps], ours_tau(3.0), ours_tau(4.0),
                          reward=reward)  # fmt: skip
    torch.testing.assert_close(ours, total, rtol=1e-10, atol=1e-12)
    assert total.abs().max() > 1e-3

    # MSTDP-ET, unbatched (one sample), scalar rewards
    tau_e = 5.0
    replay.t = 0
    single = post[:, :1]
    replay.forward = lambda x: single[replay.t - 1][0]  # type: ignore[method-assign]
    theirs_et = plasticity.MSTDPETLearner("s", fc, replay, 3.0, 4.0, tau_e)
    total = torch.zeros_like(fc.weight)
    for t in range(steps + 1):
        replay.t += 1
        replay(fc(pre[t, 0]))
        r = reward[t - 1, 0] if t else torch.tensor(0.0, dtype=torch.float64)
        got = theirs_et.step(on_grad=False, reward=r)
        total += 0 if got is None else got
    tau_z = ours_tau(tau_e)  # same decay; their trace adds ζ/τ_e where ours adds ζ/τ_z
    filtered = eligibility_reward(reward[:, :1], tau_z) * (tau_z / tau_e)
    ours, _ = stdp_update(fc, pre[:steps, :1], single[:steps], ours_tau(3.0), ours_tau(4.0),
                          reward=filtered)  # fmt: skip
    torch.testing.assert_close(ours, total, rtol=1e-10, atol=1e-12)
    assert total.abs().max() > 1e-3


def _et_by_recursion(zeta: torch.Tensor, reward: torch.Tensor, tau: float) -> torch.Tensor:
    """z_b[t] = z_b[t-1](1 - 1/τ) + ζ_b[t]/τ, Δw = Σ_t Σ_b r[t,b] z_b[t]."""
    z = torch.zeros_like(zeta[0])
    total = torch.zeros_like(zeta[0, 0])
    for t in range(zeta.shape[0]):
        z = z * (1 - 1 / tau) + zeta[t] / tau
        total += (reward[t].reshape(-1, *[1] * (z.dim() - 1)) * z).sum(0)
    return total


@pytest.mark.parametrize("tau", [1.0, 4.0])
def test_carried_eligibility_equals_the_recursion_in_any_chunks(tau):
    from spikeflow.learn import eligibility_stdp_update

    torch.manual_seed(8)
    fc = nn.Linear(5, 3, bias=False).double()
    pre, post = _spikes(10, 2, 5, seed=11), _spikes(10, 2, 3, p=0.4, seed=12)
    reward = torch.randn(10, 2, dtype=torch.float64)
    want = _et_by_recursion(_eligibilities(fc.weight.detach(), pre, post, 2.0, 3.0), reward,
                            tau)  # fmt: skip
    for chunks in ((10,), (4, 1, 5), (1,) * 10):
        got, traces, z, start = torch.zeros_like(want), (None, None), None, 0
        for n in chunks:
            change, traces, z = eligibility_stdp_update(
                fc, pre[start:start + n], post[start:start + n], reward[start:start + n],
                2.0, 3.0, tau, traces=traces, eligibility=z)  # fmt: skip
            got += change
            start += n
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_carried_eligibility_of_a_convolution():
    from spikeflow.learn import eligibility_stdp_update

    torch.manual_seed(9)
    conv = nn.Conv2d(2, 3, 3, padding=1).double()
    pre, post = _spikes(6, 2, 2, 5, 5, seed=13), _spikes(6, 2, 3, 5, 5, seed=14)
    reward = torch.randn(6, 2, dtype=torch.float64)
    zeta = torch.zeros(6, 2, *conv.weight.shape, dtype=torch.float64)
    for b in range(2):  # ζ_b[t] from single steps of plain STDP with carried traces
        traces = (None, None)
        for t in range(6):
            step_pre, step_post = pre[t : t + 1, b : b + 1], post[t : t + 1, b : b + 1]
            zeta[t, b], traces = stdp_update(conv, step_pre, step_post, 2.0, 2.0,
                                             traces=traces)  # fmt: skip
    want = _et_by_recursion(zeta, reward, 3.0)
    first, traces, z = eligibility_stdp_update(conv, pre[:2], post[:2], reward[:2], 2.0, 2.0,
                                               3.0)  # fmt: skip
    second, _, _ = eligibility_stdp_update(conv, pre[2:], post[2:], reward[2:], 2.0, 2.0, 3.0,
                                           traces=traces, eligibility=z)  # fmt: skip
    torch.testing.assert_close(first + second, want, rtol=1e-10, atol=1e-12)


def test_et_learner_online_matches_spikingjelly():
    """One step per call, the reward after each: spikeflow's learner with tau_eligibility
    against SpikingJelly's MSTDPETLearner (unbatched; its reward reaches the previous
    call's eligibility, and its traces decay by exp(-1/τ): converted)."""
    plasticity = pytest.importorskip(
        "spikingjelly.activation_based.learning.plasticity",
        reason="SpikingJelly (a benchmark extra, scripts/setup.sh bench) is the reference",
    )
    torch.manual_seed(10)
    steps = 8
    pre = _spikes(steps + 1, 1, 5, p=0.5, seed=15)
    post = _spikes(steps + 1, 1, 4, p=0.5, seed=16)
    pre[-1] = post[-1] = 0.0
    reward = torch.randn(steps, dtype=torch.float64)
    fc = nn.Linear(5, 4, bias=False).double()
    replay = nn.Identity()
    learner = STDPLearner(fc, replay, ours_tau(3.0), ours_tau(4.0), tau_eligibility=ours_tau(5.0))
    ours = torch.zeros_like(fc.weight)
    for t in range(steps):  # not streaming: the Identity is no spikeflow neuron, and a
        fc(pre[t])  # one-step input continues the traces
        replay(post[t])
        ours += learner.step(on_grad=False, reward=reward[t])
    theirs_learner = plasticity.MSTDPETLearner("s", fc, replay, 3.0, 4.0, 5.0)
    theirs = torch.zeros_like(fc.weight)
    for t in range(steps + 1):
        fc(pre[t, 0])
        replay(post[t, 0])
        r = reward[t - 1] if t else torch.tensor(0.0, dtype=torch.float64)
        got = theirs_learner.step(on_grad=False, reward=r)
        theirs += 0 if got is None else got
    tau_z = ours_tau(5.0)
    torch.testing.assert_close(ours * (tau_z / 5.0), theirs, rtol=1e-10, atol=1e-12)
    assert theirs.abs().max() > 1e-3


def test_et_learner_needs_rewards_and_one_batch_size():
    from spikeflow.learn import eligibility_stdp_update

    fc = nn.Linear(3, 2)
    learner = STDPLearner(fc, nn.Identity(), 2.0, 2.0, tau_eligibility=3.0)
    fc(torch.ones(1, 3))
    learner.neuron(torch.ones(1, 2))
    with pytest.raises(ConfigurationError, match="needs the rewards"):
        learner.step()
    pre, post = _spikes(2, 2, 3).float(), _spikes(2, 2, 2).float()
    with pytest.raises(ShapeError, match="carried eligibility traces have shape"):
        eligibility_stdp_update(fc, pre, post, 1.0, 2.0, 2.0, 3.0,
                                eligibility=torch.zeros(3, 2, 3))  # fmt: skip
