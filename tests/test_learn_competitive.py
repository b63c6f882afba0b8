"""Winner-take-all neurons, the STDP pre-trace offset, and unsupervised STDP on the digits."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import load_example
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.learn import WinnerTakeAll, stdp_update


def _by_loop(x: torch.Tensor, wta: WinnerTakeAll, theta: torch.Tensor, train: bool):
    """The rule per sample and step: leak, pick the k largest excesses above threshold,
    reset the whole sample after any spike; thresholds rise and decay in training."""
    steps, batch, n = x.shape
    v = torch.zeros(batch, n)
    out = torch.zeros_like(x)
    theta = theta.clone()
    for t in range(steps):
        spikes_now = torch.zeros(batch, n)
        for b in range(batch):
            v[b] = v[b] + (x[t, b] - v[b]) / wta.tau
            excess = v[b] - (wta.v_threshold + theta)
            order = sorted(range(n), key=lambda i: -float(excess[i]))[: wta.k]
            for i in order:
                if excess[i] > 0:
                    spikes_now[b, i] = 1.0
            if spikes_now[b].any():
                v[b] = 0.0
        out[t] = spikes_now
        if train:
            theta = theta * wta.theta_decay + wta.theta_plus * spikes_now.sum(0)
    return out, theta


@pytest.mark.parametrize("k", [1, 2])
def test_winner_take_all_equals_the_rule_by_loop(k):
    torch.manual_seed(0)
    wta = WinnerTakeAll(6, tau=3.0, v_threshold=0.8, k=k, theta_plus=0.1, theta_decay=0.9)
    x = torch.rand(12, 4, 6) * 2.5
    want, theta = _by_loop(x, wta, torch.zeros(6), train=True)
    got = wta(x)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(wta.theta, theta)
    assert int(got.sum(-1).max()) <= k and got.sum() > 0
    wta.eval()  # thresholds stay as learned
    frozen = wta.theta.clone()
    want_eval, _ = _by_loop(x, wta, frozen, train=False)
    torch.testing.assert_close(wta(x), want_eval)
    torch.testing.assert_close(wta.theta, frozen)


def test_winner_take_all_errors_and_state():
    wta = WinnerTakeAll(4)
    with pytest.raises(ShapeError, match=r"currents \[T, B, N\] with N = 4"):
        wta(torch.rand(3, 2, 5))
    with pytest.raises(ShapeError, match="T >= 1"):
        wta(torch.rand(0, 2, 4))
    with pytest.raises(DTypeError, match="floating point"):
        wta(torch.ones(3, 2, 4, dtype=torch.int64))
    with pytest.raises(ConfigurationError, match="theta_decay"):
        WinnerTakeAll(4, theta_decay=1.5)
    with pytest.raises(ConfigurationError, match=r"k \(5\) must not exceed num_neurons \(4\)"):
        WinnerTakeAll(4, k=5)
    assert "theta" in wta.state_dict()


def test_thresholds_adapt_in_float32_under_low_precision_inputs():
    """A bfloat16 input must not stop the slow decay (0.9995 is 1 in bfloat16)."""
    wta = WinnerTakeAll(3, theta_plus=0.0, theta_decay=0.9995)
    wta.theta.fill_(2.0)
    wta.theta_plus = 1e-9  # adapting, no spike: decay only
    wta(torch.zeros(100, 1, 3, dtype=torch.bfloat16))
    torch.testing.assert_close(wta.theta, torch.full((3,), 2.0 * 0.9995**100))


def test_pre_offset_does_not_combine_with_eligibility():
    from spikeflow.learn import STDPLearner

    with pytest.raises(ConfigurationError, match=r"pre_offset .* tau_eligibility"):
        STDPLearner(nn.Linear(3, 2), nn.Identity(), 2.0, 2.0, tau_eligibility=4.0,
                    pre_offset=0.2)  # fmt: skip


def test_pre_offset_weakens_inputs_silent_before_a_spike():
    """Σ s_post ⊗ (x − x_tar): potentiation only (f_pre = 0, f_post = 1)."""
    fc = nn.Linear(3, 1, bias=False)
    pre = torch.zeros(4, 1, 3)
    pre[0, 0, 0] = 1.0  # input 0 fires before the post spike, input 1 never
    post = torch.zeros(4, 1, 1)
    post[2, 0, 0] = 1.0
    delta, _ = stdp_update(fc, pre, post, 2.0, 2.0, f_pre=lambda w: 0.0,
                           f_post=lambda w: 1.0, pre_offset=0.2)  # fmt: skip
    torch.testing.assert_close(delta, torch.tensor([[0.25 - 0.2, -0.2, -0.2]]))


def test_the_readout_skips_silent_neurons_and_counts_ties_wrong():
    module = load_example("stdp_digits")
    train = torch.tensor([[5.0, 0.0, 0.0], [0.0, 4.0, 0.0]])  # neuron 2 never fires
    labels = torch.tensor([0, 1])
    test = torch.tensor([[3.0, 0.0, 9.0], [0.0, 2.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    assert module.classify(train, labels, test).tolist() == [0, 1, -1, -1]


def test_unsupervised_stdp_learns_the_digits(capsys):
    pytest.importorskip("sklearn", reason="scikit-learn (the 'examples' extra) is needed")
    module = load_example("stdp_digits")
    results = module.main(["--neurons", "100", "--epochs", "1"])
    assert results["epoch 1"] > 0.6, results  # chance is 10%; ~80% measured here
    assert "test accuracy" in capsys.readouterr().out


def test_a_readout_learns_from_rewards_alone(capsys):
    """After unsupervised features, a 10-neuron output layer trained by MSTDP with a
    reward of +1/-1 per sample (labels only through the reward) beats chance."""
    pytest.importorskip("sklearn", reason="scikit-learn (the 'examples' extra) is needed")
    module = load_example("stdp_digits")
    results = module.main(["--neurons", "100", "--epochs", "1", "--reward-epochs", "2"])
    assert results["reward epoch 2"] > 0.35, results  # chance 10%; ~60% measured
    assert "reward-modulated readout" in capsys.readouterr().out
