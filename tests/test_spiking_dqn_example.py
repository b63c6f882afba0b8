"""examples/spiking_dqn_cartpole.py: the CartPole-v1 dynamics written out there against
steps derived by hand from the Euler equations (Gymnasium's), its termination, time
limit and reward; one short DQN training call of the spiking Q network."""

from __future__ import annotations

import math

import numpy as np
import torch

from conftest import load_example

dqn = load_example("spiking_dqn_cartpole")


def _euler_step(state, action):
    """One step of the cart-pole by the textbook equations, one scalar at a time:
    cart mass 1, pole mass 0.1, half-length 0.5, g 9.8, force ±10, dt 0.02."""
    x, x_dot, th, th_dot = state
    f = 10.0 if action == 1 else -10.0
    m, M, l, g = 0.1, 1.0, 0.5, 9.8
    a = (f + m * l * th_dot**2 * math.sin(th)) / (M + m)
    th_acc = (g * math.sin(th) - math.cos(th) * a) / (l * (4 / 3 - m * math.cos(th) ** 2 / (M + m)))
    x_acc = a - m * l * th_acc * math.cos(th) / (M + m)
    return [x + 0.02 * x_dot, x_dot + 0.02 * x_acc, th + 0.02 * th_dot, th_dot + 0.02 * th_acc]


def test_step_from_rest_by_hand():
    """From rest, pushed right: a = 10/1.1, θ̈ = −a / (0.5 (4/3 − 0.1/1.1)) = −14.634146,
    ẍ = a − 0.05 θ̈ / 1.1 = 9.756098; positions move with the old speeds (0)."""
    env = dqn.CartPole(np.random.default_rng(0))
    env.reset(np.zeros((1, 4)))
    obs, reward, terminated, truncated = env.step(np.array([1]))
    np.testing.assert_allclose(obs[0], [0.0, 0.19512195, 0.0, -0.29268293], atol=1e-8)
    assert reward.tolist() == [1.0] and not terminated[0] and not truncated[0]


def test_steps_equal_the_euler_equations_for_many_carts():
    rng = np.random.default_rng(3)
    starts = rng.uniform([-2, -1.5, -0.2, -2], [2, 1.5, 0.2, 2], (6, 4))
    actions = rng.integers(0, 2, (5, 6))
    env = dqn.CartPole(rng, n=6)
    env.reset(starts)
    want = [list(s) for s in starts]
    for step_actions in actions:
        obs, _, _, _ = env.step(step_actions)
        want = [_euler_step(s, a) for s, a in zip(want, step_actions, strict=True)]
        np.testing.assert_allclose(obs, want, rtol=1e-12, atol=1e-12)
    # mirrored state and push: the mirrored result
    env = dqn.CartPole(rng, n=2)
    env.reset(np.array([[0.3, -0.4, 0.05, 0.6], [-0.3, 0.4, -0.05, -0.6]]))
    obs, *_ = env.step(np.array([0, 1]))
    np.testing.assert_allclose(obs[0], -obs[1], rtol=1e-14)


def test_termination_time_limit_and_reset():
    env = dqn.CartPole(np.random.default_rng(0), n=4)
    limit = 12 * 2 * math.pi / 360
    env.reset(np.array([
        [2.39, 1.0, 0.0, 0.0],            # the cart leaves: 2.39 + 0.02 > 2.4
        [0.0, 0.0, limit - 0.001, 1.0],   # the pole falls past 12 degrees
        [-2.39, 0.4, 0.0, 0.0],           # 2.39 - 0.008: still in
        [0.0, 0.0, 0.0, 0.0],
    ]))  # fmt: skip
    _, reward, terminated, truncated = env.step(np.array([1, 1, 0, 1]))
    assert terminated.tolist() == [True, True, False, False]
    assert reward.tolist() == [1.0] * 4 and not truncated.any()  # the last step is rewarded
    env.reset(np.zeros((4, 4)))
    env.steps[:] = 499
    _, _, terminated, truncated = env.step(np.array([0, 1, 0, 1]))
    assert truncated.all() and not terminated.any()  # 500 steps: the time limit
    starts = env.reset()
    assert starts.shape == (4, 4) and np.abs(starts).max() <= 0.05 and env.steps.sum() == 0


def test_a_short_training_call_learns_q_values():
    """300 steps, 200 updates: the Q values move from about 0 toward the discounted
    return of 1 per step (every target is >= 1), and the evaluation runs."""
    args = dqn.parse_args(["--steps", "300", "--learning-starts", "100", "--eval-every", "300",
                           "--T", "4", "--hidden", "32", "--batch", "32", "--lr", "3e-3",
                           "--target-every", "50", "--eps-steps", "300"])  # fmt: skip
    torch.manual_seed(0)
    untrained = dqn.SpikingQNetwork(4, 32)
    obs = torch.as_tensor(
        np.random.default_rng(1).uniform(-0.05, 0.05, (16, 4)), dtype=torch.float32
    )
    with torch.no_grad():
        before = untrained(obs)
    q, returns = dqn.train(args)
    with torch.no_grad():
        after = q(obs)
    assert after.shape == (16, 2) and before.abs().mean() < 0.5
    assert after.mean() > 1.2, f"Q values after 200 updates: {after.mean():.3f}"
    assert len(returns) == 1 and 8 <= returns[0] <= 500
    fired = []
    hook = q.net[1].register_forward_hook(lambda m, i, o: fired.append(o.mean().item()))
    q(obs)
    hook.remove()
    assert 0.0 < fired[0] < 1.0  # the hidden layer spikes


def test_q_network_is_the_readout_of_t_steps():
    """The read-out is V[T-1] of V[t] = V[t-1] + (X[t] - V[t-1]) / 2 from 0."""
    torch.manual_seed(2)
    net = dqn.SpikingQNetwork(5, 8)
    obs = torch.randn(3, 4)
    x = (obs / torch.tensor([2.4, 2.0, 12 * math.pi / 180, 2.0])).expand(5, 3, 4)
    for layer in list(net.net)[:-1]:
        x = layer(x)
    v = torch.zeros(3, 2)
    for t in range(5):
        v = v + (x[t] - v) / 2.0
    torch.testing.assert_close(net(obs), v)


def test_main_with_no_steps_returns_nothing():
    assert dqn.main(["--steps", "0"]) == []


def test_the_best_evaluated_network_is_returned_unless_keep_last():
    argv = ["--steps", "800", "--learning-starts", "100", "--eval-every", "100", "--T", "4",
            "--hidden", "32", "--batch", "32", "--lr", "1e-2", "--target-every", "50",
            "--eps-steps", "400"]  # fmt: skip
    starts = np.random.default_rng(1234).uniform(-0.05, 0.05, (10, 4))  # train's starts
    q, returns = dqn.train(dqn.parse_args(argv))
    assert len(returns) == 8 and max(returns) > returns[-1]  # the run drifts after its best
    assert dqn.evaluate(q, starts) == max(returns)
    last, again = dqn.train(dqn.parse_args([*argv, "--keep-last"]))
    assert again == returns  # same seed, same run
    assert dqn.evaluate(last, starts) == returns[-1]
