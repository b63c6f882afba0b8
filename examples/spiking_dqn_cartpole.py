"""A spiking deep Q network (the idea of SpikingJelly's ``spiking_dqn_state.py``) learning
to balance a pole on a cart.

The environment is Gymnasium's ``CartPole-v1`` with its dynamics, termination and reward
written out here (gymnasium is not a dependency): a cart of mass 1 with a pole of mass
0.1 and half-length 0.5, gravity 9.8, a force of ±10 (action 1 pushes right, 0 left),
explicit Euler steps of 0.02 s::

    a       = (F + m l θ̇² sin θ) / (M + m)
    θ̈       = (g sin θ − cos θ a) / (l (4/3 − m cos² θ / (M + m)))
    ẍ       = a − m l θ̈ cos θ / (M + m)
    x += 0.02 ẋ,   ẋ += 0.02 ẍ,   θ += 0.02 θ̇,   θ̇ += 0.02 θ̈

(positions updated with the old speeds). Reward 1 for every step, the last included; the
episode terminates when ``|x| > 2.4`` or ``|θ| > 12°`` and is truncated after 500 steps;
it starts from ``(x, ẋ, θ, θ̇) ~ U(-0.05, 0.05)``. The observation is the state. A return
of 500 is the maximum; Gymnasium calls the task solved at an average of 475; a random
policy averages about 22.

The Q network is spiking: the observation, divided by ``OBS_SCALE``, is the input
current of every one of ``T`` steps, Linear -> ``LIFNode`` -> Linear -> ``LIFNode`` ->
Linear -> a non-spiking LIF integrator (``NonSpikingLIFNode(tau=2)``) whose membrane at
the last step is the Q value of each action (SpikingJelly's example has one IF hidden
layer and the same read-out). DQN: ε-greedy actions (ε from 1 to 0.05 over
``--eps-steps``), a replay buffer of every transition, a target network copied every
``--target-every`` steps, the Huber loss on ``r + γ max_a Q_target(s', a)`` (no bootstrap
past termination; bootstrap past the time limit), Adam, one update of a batch per step
after ``--learning-starts`` steps.

Every ``--eval-every`` steps the greedy policy is run on 10 episodes from fixed starts
and the mean return is printed; the network of the best evaluation (the later one on a
tie) is the one returned (plain DQN drifts after solving the task: ``--keep-last``
returns the last network instead).

    python examples/spiking_dqn_cartpole.py --steps 20000 --seed 0
"""

from __future__ import annotations

import argparse
import copy
import math
import time

import numpy as np
import torch
from torch import Tensor, nn

from spikeflow.neurons import LIFNode, NonSpikingLIFNode
from spikeflow.surrogate import ATan

GRAVITY, CART_MASS, POLE_MASS, HALF_LENGTH = 9.8, 1.0, 0.1, 0.5
FORCE, DT, MAX_STEPS = 10.0, 0.02, 500
X_LIMIT, THETA_LIMIT = 2.4, 12 * 2 * math.pi / 360
#: What the Q network divides the observation by: the limits of x and θ, and speeds of
#: a typical magnitude, so that every feature drives the first layer alike.
OBS_SCALE = (X_LIMIT, 2.0, THETA_LIMIT, 2.0)


class CartPole:
    """Gymnasium's ``CartPole-v1`` (module docstring) for ``n`` carts at once; a cart
    whose episode has ended stays where it ended until :meth:`reset`."""

    def __init__(self, rng: np.random.Generator, n: int = 1) -> None:
        self.rng, self.n = rng, n
        self.state = np.zeros((n, 4))
        self.steps = np.zeros(n, dtype=np.int64)

    def reset(self, starts: np.ndarray | None = None) -> np.ndarray:
        """New episodes from ``starts`` (``[n, 4]``: x, ẋ, θ, θ̇) or random ones; the
        observations."""
        if starts is None:
            starts = self.rng.uniform(-0.05, 0.05, (self.n, 4))
        self.state = np.array(starts, dtype=np.float64).reshape(self.n, 4)
        self.steps[:] = 0
        return self.state.copy()

    def step(self, action: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Push the carts (``action`` ``[n]`` of 0/1): the observations, rewards,
        terminations (the pole fell or the cart left) and truncations (the time limit)."""
        x, x_dot, theta, theta_dot = self.state.T
        force = np.where(np.asarray(action) == 1, FORCE, -FORCE)
        cos, sin = np.cos(theta), np.sin(theta)
        total = CART_MASS + POLE_MASS
        temp = (force + POLE_MASS * HALF_LENGTH * theta_dot**2 * sin) / total
        theta_acc = (GRAVITY * sin - cos * temp) / (
            HALF_LENGTH * (4.0 / 3.0 - POLE_MASS * cos**2 / total)
        )
        x_acc = temp - POLE_MASS * HALF_LENGTH * theta_acc * cos / total
        self.state = np.stack(
            [
                x + DT * x_dot,
                x_dot + DT * x_acc,
                theta + DT * theta_dot,
                theta_dot + DT * theta_acc,
            ],
            axis=1,
        )
        self.steps += 1
        terminated = (np.abs(self.state[:, 0]) > X_LIMIT) | (np.abs(self.state[:, 2]) > THETA_LIMIT)
        truncated = ~terminated & (self.steps >= MAX_STEPS)
        return self.state.copy(), np.ones(self.n), terminated, truncated


class SpikingQNetwork(nn.Module):
    """Q values from ``T`` steps of two LIF layers and a non-spiking LIF read-out."""

    def __init__(self, T: int, hidden: int, obs_dim: int = 4, actions: int = 2) -> None:
        super().__init__()
        self.T = T
        self.register_buffer("obs_scale", torch.tensor(OBS_SCALE), persistent=False)
        self.net = nn.Sequential(
            nn.Linear(obs_dim, hidden),
            LIFNode(tau=2.0, surrogate_function=ATan()),
            nn.Linear(hidden, hidden),
            LIFNode(tau=2.0, surrogate_function=ATan()),
            nn.Linear(hidden, actions),
            NonSpikingLIFNode(tau=2.0, decode="last-mem"),
        )

    def forward(self, obs: Tensor) -> Tensor:
        """``[B, actions]`` Q values of observations ``[B, obs_dim]``."""
        return self.net((obs / self.obs_scale).expand(self.T, *obs.shape))


@torch.no_grad()
def evaluate(q: SpikingQNetwork, starts: np.ndarray) -> float:
    """The mean return of the greedy policy from each start (``[n, 4]``)."""
    env = CartPole(np.random.default_rng(0), len(starts))
    obs, alive, total = env.reset(starts), np.ones(len(starts), bool), np.zeros(len(starts))
    while alive.any():
        action = q(torch.as_tensor(obs, dtype=torch.float32)).argmax(1).numpy()
        obs, reward, terminated, truncated = env.step(action)
        total += reward * alive
        alive &= ~(terminated | truncated)
    return float(total.mean())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--eval-every", type=int, default=2500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--T", type=int, default=8, help="time steps per Q evaluation")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--gamma", type=float, default=0.99)
    p.add_argument("--eps-steps", type=int, default=10000, help="ε decays over these")
    p.add_argument("--learning-starts", type=int, default=1000)
    p.add_argument("--target-every", type=int, default=250)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument(
        "--keep-last",
        action="store_true",
        help="return the last network, not the best-evaluated one",
    )
    return p.parse_args(argv)


def train(args: argparse.Namespace) -> tuple[SpikingQNetwork, list[float]]:
    """Train as the module docstring says: the Q network (the best-evaluated one unless
    ``--keep-last``; the last one if no evaluation ran) and the evaluation returns."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    q = SpikingQNetwork(args.T, args.hidden)
    q_target = copy.deepcopy(q).eval()
    opt = torch.optim.Adam(q.parameters(), lr=args.lr)
    starts = np.random.default_rng(1234).uniform(-0.05, 0.05, (10, 4))
    buf_obs = torch.zeros(args.steps, 4)
    buf_act = torch.zeros(args.steps, dtype=torch.long)
    buf_next = torch.zeros(args.steps, 4)
    buf_done = torch.zeros(args.steps)  # terminated: no bootstrap
    env = CartPole(rng)
    obs, returns, t0 = env.reset()[0], [], time.perf_counter()
    best_eval: tuple[float, int, SpikingQNetwork] | None = None
    for step in range(args.steps):
        eps = max(0.05, 1.0 - 0.95 * step / args.eps_steps)
        if rng.random() < eps:
            action = int(rng.integers(2))
        else:
            with torch.no_grad():
                action = int(q(torch.as_tensor(obs, dtype=torch.float32)[None]).argmax())
        nxt, _, terminated, truncated = env.step(np.array([action]))
        buf_obs[step], buf_act[step] = torch.as_tensor(obs), action
        buf_next[step], buf_done[step] = torch.as_tensor(nxt[0]), float(terminated[0])
        obs = nxt[0]
        if terminated[0] or truncated[0]:
            obs = env.reset()[0]
        if step >= args.learning_starts:
            idx = torch.randint(0, step + 1, (args.batch,))
            with torch.no_grad():
                best = q_target(buf_next[idx]).max(1).values
                target = 1.0 + args.gamma * (1.0 - buf_done[idx]) * best
            chosen = q(buf_obs[idx]).gather(1, buf_act[idx, None]).squeeze(1)
            loss = nn.functional.smooth_l1_loss(chosen, target)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(q.parameters(), 10.0)
            opt.step()
            if step % args.target_every == 0:
                q_target.load_state_dict(q.state_dict())
        if (step + 1) % args.eval_every == 0:
            returns.append(evaluate(q, starts))
            print(f"seed {args.seed} step {step + 1}: eval return {returns[-1]:.1f} "
                  f"(ε {eps:.2f}, {time.perf_counter() - t0:.0f} s)", flush=True)  # fmt: skip
            if best_eval is None or returns[-1] >= best_eval[0]:
                best_eval = (returns[-1], step + 1, copy.deepcopy(q))
    if best_eval is not None and not args.keep_last:
        print(f"seed {args.seed}: the best evaluation, {best_eval[0]:.1f} at step {best_eval[1]}, "
              "is the network returned", flush=True)  # fmt: skip
        return best_eval[2], returns
    return q, returns


def main(argv: list[str] | None = None) -> list[float]:
    """Train from the command line ``argv``; returns the evaluation returns."""
    return train(parse_args(argv))[1]


if __name__ == "__main__":
    main()
