"""Spiking actor-critics (the idea of SpikingJelly's ``spiking_ppo.py`` and
``spiking_a2c.py``) learning CartPole by policy gradients: PPO or A2C (``--algo``).

The environment is the ``CartPole`` of ``spiking_dqn_cartpole.py`` (Gymnasium's
``CartPole-v1`` written out: reward 1 a step, termination at ``|x| > 2.4`` or
``|θ| > 12°``, truncation after 500 steps), imported from that example, run as
``--envs`` carts in parallel, each restarted as soon as its episode ends.

Actor and critic are two spiking networks of the Q network's shape: the observation,
divided by ``OBS_SCALE``, is the input current of each of ``T`` steps, Linear ->
``LIFNode`` -> Linear -> ``LIFNode`` -> Linear -> ``NonSpikingLIFNode(tau=2)`` read
at the last step: the actor's two outputs are the logits of a categorical policy, the
critic's one output is the value ``V(s)``.

Each iteration collects ``--rollout`` steps of every cart with the current policy, then
(Schulman et al. 2016 and 2017, "Proximal Policy Optimization Algorithms"):

* TD errors ``δ_t = r_t + γ (1 − term_t) V(s'_t) − V(s_t)``, with ``s'_t`` the state
  the step reached (before a restart: a truncated episode is bootstrapped, a terminated
  one is not);
* GAE ``Â_t = δ_t + γ λ (1 − done_t) Â_{t+1}`` (``done`` = terminated or truncated;
  ``Â`` = 0 past the rollout's end) and value targets ``R_t = Â_t + V(s_t)``;
* ``ppo``: ``--epochs`` passes over the rollout in ``--minibatch`` shuffled batches,
  maximising ``L^CLIP = E[min(ρ_t Â_t, clip(ρ_t, 1 − ε, 1 + ε) Â_t)]`` with
  ``ρ_t = π(a_t|s_t) / π_old(a_t|s_t)``, plus the entropy bonus ``c_2 H[π]``, and
  minimising ``(V(s_t) − R_t)²`` (the paper's ``L^{CLIP+VF+S}``; the advantages are
  normalised per batch, as in the paper's baselines code);
* ``a2c``: one step on the whole rollout maximising ``E[log π(a_t|s_t) Â_t] + c_2 H[π]``
  and minimising ``(V(s_t) − R_t)²`` (Mnih et al. 2016, synchronous; ``--lam 1`` gives
  its n-step returns).

Adam on both networks, gradients clipped to ``--max-grad-norm`` per network. After the
update that reaches each multiple of ``--eval-every`` environment steps (all carts
counted) the greedy policy (the argmax of the logits) is run from the DQN example's 10
fixed starts and the mean return printed; a random policy scores 21.2 from them. The
actor of the best evaluation (the later one on a tie) is the one returned, as the DQN
example's network (policy gradients drift after solving the task too: A2C seed 1 fell
from 280.4 to 120.4); ``--keep-last`` returns the last actor instead.

    python examples/spiking_actor_critic_cartpole.py --algo ppo --seed 0 --steps 30000
    python examples/spiking_actor_critic_cartpole.py --algo a2c --seed 0 --steps 50000
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import sys
import time

import numpy as np
import torch
from torch import Tensor, nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from spiking_dqn_cartpole import CartPole, SpikingQNetwork, evaluate

#: The DQN example's evaluation starts (``np.random.default_rng(1234)``), shared so the
#: returns of the two examples are measured from the same 10 episodes.
EVAL_STARTS = np.random.default_rng(1234).uniform(-0.05, 0.05, (10, 4))


class SpikingHead(SpikingQNetwork):
    """``outputs`` real values of an observation ``[B, obs_dim]``: the DQN example's
    network (``T`` steps of two LIF layers and a non-spiking LIF read-out, its membrane
    at the last step) with ``outputs`` read-outs."""

    def __init__(self, T: int, hidden: int, outputs: int, obs_dim: int = 4) -> None:
        super().__init__(T, hidden, obs_dim=obs_dim, actions=outputs)


def gae(
    rewards: Tensor,
    values: Tensor,
    next_values: Tensor,
    terminated: Tensor,
    done: Tensor,
    gamma: float,
    lam: float,
) -> tuple[Tensor, Tensor]:
    """Generalized advantage estimates and value targets of a rollout.

    Args:
        rewards, values, next_values, terminated, done: ``[steps, envs]``: ``r_t``,
            ``V(s_t)``, ``V(s'_t)`` of the state each step reached, 1 where the episode
            terminated (no bootstrap) and 1 where it ended for any reason (the
            advantage does not run across it).
        gamma, lam: the discount γ and the GAE parameter λ.

    Returns:
        ``(Â, R)``, each ``[steps, envs]``: ``δ_t = r_t + γ (1 − term_t) V(s'_t) − V(s_t)``,
        ``Â_t = δ_t + γ λ (1 − done_t) Â_{t+1}`` (0 past the last step), ``R = Â + V``.

    Raises:
        ValueError: the five tensors differ in shape or are not ``[steps, envs]``.
    """
    named = {"rewards": rewards, "values": values, "next_values": next_values,
             "terminated": terminated, "done": done}  # fmt: skip
    for name, tensor in named.items():
        if tensor.dim() != 2 or tensor.shape != rewards.shape:
            raise ValueError(
                f"gae: {name} must be [steps, envs] like rewards {tuple(rewards.shape)}, "
                f"got {tuple(tensor.shape)}"
            )
    delta = rewards + gamma * (1.0 - terminated.float()) * next_values - values
    carry = gamma * lam * (1.0 - done.float())
    advantages = torch.zeros_like(delta)
    running = torch.zeros_like(delta[0])
    for t in range(delta.shape[0] - 1, -1, -1):
        running = delta[t] + carry[t] * running
        advantages[t] = running
    return advantages, advantages + values


def clipped_surrogate(
    log_prob: Tensor, old_log_prob: Tensor, advantages: Tensor, clip: float
) -> Tensor:
    """PPO's ``L^CLIP = mean(min(ρ Â, clip(ρ, 1 − ε, 1 + ε) Â))``, ``ρ = exp(log π −
    log π_old)`` (to be maximised); all three tensors of one shape, ``clip`` = ε > 0."""
    if not log_prob.shape == old_log_prob.shape == advantages.shape:
        raise ValueError(
            f"clipped_surrogate: log_prob {tuple(log_prob.shape)}, old_log_prob "
            f"{tuple(old_log_prob.shape)} and advantages {tuple(advantages.shape)} differ"
        )
    if not clip > 0:
        raise ValueError(f"clipped_surrogate: clip must be > 0, got {clip}")
    ratio = torch.exp(log_prob - old_log_prob)
    clipped = torch.clamp(ratio, 1.0 - clip, 1.0 + clip)
    return torch.minimum(ratio * advantages, clipped * advantages).mean()


@torch.no_grad()
def random_policy_return(starts: np.ndarray, seed: int) -> float:
    """The mean return of uniformly random actions from each start (``[n, 4]``)."""
    rng = np.random.default_rng(seed)
    env = CartPole(rng, len(starts))
    env.reset(starts)
    alive, total = np.ones(len(starts), bool), np.zeros(len(starts))
    while alive.any():
        _, reward, terminated, truncated = env.step(rng.integers(0, 2, len(starts)))
        total += reward * alive
        alive &= ~(terminated | truncated)
    return float(total.mean())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--algo", choices=("ppo", "a2c"), default="ppo")
    p.add_argument("--steps", type=int, default=50000, help="environment steps, all carts")
    p.add_argument("--eval-every", type=int, default=5000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--envs", type=int, default=8, help="carts run in parallel")
    p.add_argument("--rollout", type=int, default=None,
                   help="steps of each cart per update (64 for ppo, 8 for a2c)")  # fmt: skip
    p.add_argument("--T", type=int, default=8, help="time steps per network evaluation")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--lr", type=float, default=None,
                   help="Adam learning rate (3e-3 for ppo, 1e-2 for a2c)")  # fmt: skip
    p.add_argument("--gamma", type=float, default=0.99)
    p.add_argument("--lam", type=float, default=0.95, help="GAE λ")
    p.add_argument("--clip", type=float, default=0.2, help="PPO's ε")
    p.add_argument("--epochs", type=int, default=10, help="PPO passes over a rollout")
    p.add_argument("--minibatch", type=int, default=128, help="PPO batch size")
    p.add_argument("--entropy", type=float, default=0.01, help="entropy bonus c_2")
    p.add_argument("--max-grad-norm", type=float, default=0.5)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--keep-last", action="store_true",
                   help="return the last actor, not the best-evaluated one")  # fmt: skip
    args = p.parse_args(argv)
    if args.rollout is None:
        args.rollout = 64 if args.algo == "ppo" else 8
    if args.lr is None:
        args.lr = 3e-3 if args.algo == "ppo" else 1e-2
    for name in ("envs", "rollout", "T", "hidden", "epochs", "minibatch", "eval_every"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    for name in ("gamma", "lam"):  # discount and GAE λ: fractions
        if not 0.0 <= getattr(args, name) <= 1.0:
            p.error(f"--{name} must be in [0, 1], got {getattr(args, name)}")
    for name in ("clip", "lr", "max_grad_norm"):
        value = getattr(args, name)
        if not (value > 0 and math.isfinite(value)):
            p.error(f"--{name.replace('_', '-')} must be > 0 and finite, got {value}")
    return args


def _policy_loss(
    actor: SpikingHead, obs: Tensor, actions: Tensor, old_log_prob: Tensor,
    advantages: Tensor, args: argparse.Namespace,
) -> Tensor:  # fmt: skip
    """The actor's loss on a batch: −L^CLIP (ppo, advantages normalised within the
    minibatch when it holds more than one) or −E[log π Â] (a2c), − c_2 H."""
    dist = torch.distributions.Categorical(logits=actor(obs))
    log_prob = dist.log_prob(actions)
    if args.algo == "ppo":
        if advantages.numel() > 1:  # one sample has no std (NaN): a last minibatch of 1
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        objective = clipped_surrogate(log_prob, old_log_prob, advantages, args.clip)
    else:
        objective = (log_prob * advantages).mean()
    return -objective - args.entropy * dist.entropy().mean()


def _update(
    actor: SpikingHead, critic: SpikingHead, opt: torch.optim.Optimizer,
    batch: dict[str, Tensor], args: argparse.Namespace, rng: torch.Generator,
) -> None:  # fmt: skip
    """The gradient steps of one rollout (flattened ``batch``): PPO's epochs of
    minibatches or A2C's single step."""
    n = batch["obs"].shape[0]
    if args.algo == "ppo":
        chunks = [
            idx
            for _ in range(args.epochs)
            for idx in torch.randperm(n, generator=rng).split(args.minibatch)
        ]
    else:
        chunks = [torch.arange(n)]
    for idx in chunks:
        policy = _policy_loss(actor, batch["obs"][idx], batch["actions"][idx],
                              batch["log_prob"][idx], batch["advantages"][idx], args)  # fmt: skip
        value = (critic(batch["obs"][idx]).squeeze(1) - batch["targets"][idx]).pow(2).mean()
        opt.zero_grad()
        (policy + 0.5 * value).backward()
        nn.utils.clip_grad_norm_(actor.parameters(), args.max_grad_norm)
        nn.utils.clip_grad_norm_(critic.parameters(), args.max_grad_norm)
        opt.step()


def train(args: argparse.Namespace) -> tuple[SpikingHead, list[float]]:
    """Train as the module docstring says: the actor (the best-evaluated one unless
    ``--keep-last``) and the evaluation returns (one every ``--eval-every`` environment
    steps)."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    actor, critic = SpikingHead(args.T, args.hidden, 2), SpikingHead(args.T, args.hidden, 1)
    opt = torch.optim.Adam([*actor.parameters(), *critic.parameters()], lr=args.lr)
    env = CartPole(np.random.default_rng(args.seed), args.envs)
    obs = torch.as_tensor(env.reset(), dtype=torch.float32)
    shape = (args.rollout, args.envs)
    returns, done_steps, next_eval, t0 = [], 0, args.eval_every, time.perf_counter()
    best: tuple[float, int, SpikingHead] | None = None  # (return, step, actor)
    while done_steps < args.steps:
        buf = {k: torch.zeros(*shape, 4) for k in ("obs", "next_obs")}
        buf |= {k: torch.zeros(shape) for k in ("rewards", "terminated", "done", "log_prob")}
        buf["actions"] = torch.zeros(shape, dtype=torch.long)
        for t in range(args.rollout):
            with torch.no_grad():
                dist = torch.distributions.Categorical(logits=actor(obs))
                action = dist.sample()
            nxt, reward, terminated, truncated = env.step(action.numpy())
            buf["obs"][t], buf["actions"][t] = obs, action
            buf["log_prob"][t] = dist.log_prob(action)
            buf["next_obs"][t] = torch.as_tensor(nxt, dtype=torch.float32)
            buf["rewards"][t] = torch.as_tensor(reward, dtype=torch.float32)
            buf["terminated"][t] = torch.as_tensor(terminated, dtype=torch.float32)
            ended = terminated | truncated
            buf["done"][t] = torch.as_tensor(ended, dtype=torch.float32)
            if ended.any():  # restart the carts whose episode ended
                fresh = env.rng.uniform(-0.05, 0.05, (int(ended.sum()), 4))
                env.state[ended], env.steps[ended] = fresh, 0
                nxt = env.state.copy()
            obs = torch.as_tensor(nxt, dtype=torch.float32)
        with torch.no_grad():
            values = critic(buf["obs"].flatten(0, 1)).view(shape)
            next_values = critic(buf["next_obs"].flatten(0, 1)).view(shape)
        advantages, targets = gae(buf["rewards"], values, next_values, buf["terminated"],
                                  buf["done"], args.gamma, args.lam)  # fmt: skip
        batch = {k: buf[k].flatten(0, 1) for k in ("obs", "actions", "log_prob")}
        batch |= {"advantages": advantages.flatten(), "targets": targets.flatten()}
        _update(actor, critic, opt, batch, args, gen)
        done_steps += args.rollout * args.envs
        while done_steps >= next_eval and next_eval <= args.steps:
            returns.append(evaluate(actor, EVAL_STARTS))
            print(f"{args.algo} seed {args.seed} step {next_eval}: eval return "
                  f"{returns[-1]:.1f} ({time.perf_counter() - t0:.0f} s)", flush=True)  # fmt: skip
            if best is None or returns[-1] >= best[0]:
                best = (returns[-1], next_eval, copy.deepcopy(actor))
            next_eval += args.eval_every
    if best is not None and not args.keep_last:
        print(f"{args.algo} seed {args.seed}: the best evaluation, {best[0]:.1f} at step "
              f"{best[1]}, is the actor returned")  # fmt: skip
        return best[2], returns
    return actor, returns


def main(argv: list[str] | None = None) -> list[float]:
    """Train from the command line ``argv``; returns the evaluation returns."""
    args = parse_args(argv)
    print(f"random policy from the same starts: {random_policy_return(EVAL_STARTS, 0):.1f}")
    return train(args)[1]


if __name__ == "__main__":
    main()
