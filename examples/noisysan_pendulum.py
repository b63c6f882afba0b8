"""A noisy spiking actor (NoisySAN) learning to swing up a pendulum with TD3.

The environment is the classic torque-limited pendulum swing-up with the dynamics and
cost of Gymnasium's ``Pendulum-v1`` written out here (gymnasium is not a dependency):
``θ̈ = 3g/(2l) sin θ + 3/(m l²) u``, ``g = 10``, ``m = l = 1``, ``dt = 0.05``, torque
``|u| <= 2``, speed ``|θ̇| <= 8``, cost ``θ² + 0.1 θ̇² + 0.001 u²`` (θ wrapped to
``[-π, π)``, 0 upright), 200 steps an episode from ``θ ~ U(-π, π)``, ``θ̇ ~ U(-1, 1)``;
the observation is ``(cos θ, sin θ, θ̇ / 8)``. A return of about -1200 is a random
policy's; about -150 swings up and balances from any start.

The actor: population coding of the observation (``LearnablePopulationEncoder``, 10
neurons per feature, deterministic spikes over T = 5 steps) -> Linear ->
``NoisyCubaLIFNode`` (64) -> Linear -> ``NoisyCubaLIFNode`` (64) -> Linear ->
``NoisyNonSpikingIFNode`` (``decode="mean-mem"``) -> ``2 tanh``. Critics: two MLPs
(TD3: clipped double Q, target-policy smoothing 0.2 clipped at 0.5, actor and target
updates every second step, soft targets τ = 0.005, Adam 1e-3, batch 100, γ = 0.99,
1000 uniformly random first actions, a buffer holding every transition).

``--actor ilcsan`` replaces the actor by the ILC-SAN one (SpikingJelly's ``ilc_san``
example; Chen et al., TNNLS 2024): the same encoder, two ``CubaLIFNode`` layers (64)
without noise, a Linear to ``--dec-pop`` (10) output neurons with intra-layer
connections (``ILCCubaLIFNode(1, 10)``), a learnable population decoder (a ``Conv1d``
over the population, a non-spiking IF read out at the last step) and ``2 tanh``; it
explores by ``gaussian`` action noise (or ``none``).

``--exploration`` chooses how the actor explores:

* ``noisysan``: the neurons' coloured noise (``--beta``, ``--sigma-init``), drawn per
  episode (``reset_noise(200)``), stored with each transition
  (``get_colored_noise``) and replayed in the actor's update (``load_colored_noise``);
* ``gaussian``: no neuron noise (the actor in eval mode), N(0, 0.2²) added to the action
  (TD3's own exploration);
* ``none``: no noise at all (the noise-free baseline).

Every ``--eval-every`` steps the actor is run in eval mode (no noise) for 10 episodes
from fixed starts, and the mean return is printed.

    python examples/noisysan_pendulum.py --exploration noisysan --seed 0
    python examples/noisysan_pendulum.py --exploration none --steps 15000
    python examples/noisysan_pendulum.py --actor ilcsan --exploration gaussian --steps 5000
"""

from __future__ import annotations

import argparse
import copy
import math
import time

import numpy as np
import torch
from torch import Tensor, nn

from spikeflow.encoding import LearnablePopulationEncoder
from spikeflow.neurons import (
    CubaLIFNode,
    ILCCubaLIFNode,
    NoisyCubaLIFNode,
    NoisyNonSpikingIFNode,
    NonSpikingIFNode,
)
from spikeflow.surrogate import Rect

EPISODE = 200
MAX_TORQUE = 2.0


class Pendulum:
    """Gymnasium's ``Pendulum-v1`` dynamics and cost (module docstring), for ``n``
    pendulums at once."""

    def __init__(self, rng: np.random.Generator, n: int = 1) -> None:
        self.rng, self.n = rng, n
        self.theta = self.speed = np.zeros(n)

    def reset(self, starts: np.ndarray | None = None) -> np.ndarray:
        """New episodes from ``starts`` (``[n, 2]``: θ, θ̇) or random ones."""
        if starts is None:
            starts = np.stack([self.rng.uniform(-math.pi, math.pi, self.n),
                               self.rng.uniform(-1.0, 1.0, self.n)], 1)  # fmt: skip
        self.theta, self.speed = starts[:, 0].copy(), starts[:, 1].copy()
        return self.observe()

    def observe(self) -> np.ndarray:
        return np.stack([np.cos(self.theta), np.sin(self.theta), self.speed / 8.0], 1)

    def step(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Apply torques ``u`` (``[n]``): the next observations and the rewards."""
        u = np.clip(u, -MAX_TORQUE, MAX_TORQUE)
        angle = (self.theta + math.pi) % (2 * math.pi) - math.pi
        cost = angle**2 + 0.1 * self.speed**2 + 0.001 * u**2
        speed = self.speed + (3 * 10.0 / 2 * np.sin(self.theta) + 3.0 * u) * 0.05
        self.speed = np.clip(speed, -8.0, 8.0)
        self.theta = self.theta + self.speed * 0.05
        return self.observe(), -cost


class Actor(nn.Module):
    """Population-coded input, two noisy current-based LIF layers, a noisy decoder."""

    def __init__(self, T: int, hidden: int, sigma_init: float, beta: float) -> None:
        super().__init__()
        self.encoder = LearnablePopulationEncoder(3, 10, T, mean_range=(-1.0, 1.0), std=0.15)
        self.fc1, self.fc2 = nn.Linear(30, hidden), nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, 1)
        kw = {"T": T, "sigma_init": sigma_init, "beta": beta}
        self.lif1, self.lif2 = NoisyCubaLIFNode(hidden, **kw), NoisyCubaLIFNode(hidden, **kw)
        self.decoder = NoisyNonSpikingIFNode(1, decode="mean-mem", **kw)
        self.noisy = (self.lif1, self.lif2, self.decoder)

    def forward(self, obs: Tensor) -> Tensor:
        x = self.lif1(self.fc1(self.encoder(obs)))
        x = self.lif2(self.fc2(x))
        return MAX_TORQUE * torch.tanh(self.decoder(self.fc3(x)))

    def reset_noise(self, steps: int) -> None:
        for node in self.noisy:
            node.reset_noise(steps)

    def noise(self) -> Tensor:
        """The noise the last call used, all three layers, ``[T, total]``."""
        return torch.cat([node.get_colored_noise() for node in self.noisy], dim=1)

    def load(self, noise: Tensor | None) -> None:
        """Replay stored noises ``[B, T, total]`` (None: stop replaying)."""
        start = 0
        for node in self.noisy:
            if noise is None:
                node.cancel_load()
                continue
            width = (1 if node is self.decoder else 2) * node.num_node
            node.load_colored_noise(noise[:, :, start : start + width])
            start += width


class ILCActor(nn.Module):
    """The ILC-SAN actor (SpikingJelly's ``ilc_san`` example): population-coded input,
    two current-based LIF layers (SpikingJelly's ``CUBALIFNode``: decays 0.5, 0.75,
    θ 0.5, ``Rect``), a Linear to ``dec_pop`` output neurons with intra-layer
    connections (``ILCCubaLIFNode(1, dec_pop)``), a learnable population decoder (a
    grouped ``Conv1d`` per action dimension, then a non-spiking IF read out at the last
    step, ``decode="last-mem"``) and ``2 tanh``. No neuron noise: it explores by the
    action noise of TD3 (``--exploration gaussian``)."""

    def __init__(self, T: int, hidden: int, dec_pop: int) -> None:
        super().__init__()
        self.T, self.dec_pop = T, dec_pop
        self.encoder = LearnablePopulationEncoder(3, 10, T, mean_range=(-1.0, 1.0), std=0.15)
        self.fc1, self.fc2 = nn.Linear(30, hidden), nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, dec_pop)
        cuba = {"tau_syn": 2.0, "tau_mem": 4.0, "r": 8.0, "v_threshold": 0.5}
        self.lif1 = CubaLIFNode(**cuba, surrogate_function=Rect())
        self.lif2 = CubaLIFNode(**cuba, surrogate_function=Rect())
        self.out_pop = ILCCubaLIFNode(1, dec_pop)
        self.decoder = nn.Conv1d(1, 1, dec_pop)  # one action: one group
        self.readout = NonSpikingIFNode(decode="last-mem")

    def forward(self, obs: Tensor) -> Tensor:
        x = self.lif1(self.fc1(self.encoder(obs)))
        spikes = self.out_pop(self.fc3(self.lif2(self.fc2(x))))  # [T, B, dec_pop]
        pop = self.decoder(spikes.reshape(-1, 1, self.dec_pop)).view(self.T, -1, 1)
        return MAX_TORQUE * torch.tanh(self.readout(pop))


def critic() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                         nn.Linear(256, 1))  # fmt: skip


@torch.no_grad()
def evaluate(actor: nn.Module, starts: np.ndarray) -> float:
    """The mean return of the noise-free (eval-mode) actor from each start (``[n, 2]``)."""
    actor.eval()
    env = Pendulum(np.random.default_rng(0), len(starts))
    obs, total = env.reset(starts), 0.0
    for _ in range(EPISODE):
        u = actor(torch.as_tensor(obs, dtype=torch.float32)).view(-1).numpy()
        obs, r = env.step(u.astype(np.float64))
        total += float(r.sum())
    return total / len(starts)


def main(argv: list[str] | None = None) -> list[float]:
    """Train as the module docstring says; returns the evaluation returns."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--actor", choices=("noisysan", "ilcsan"), default="noisysan")
    p.add_argument("--exploration", choices=("noisysan", "gaussian", "none"), default="noisysan")
    p.add_argument("--dec-pop", type=int, default=10, help="ILC-SAN: output neurons")
    p.add_argument("--steps", type=int, default=15000)
    p.add_argument("--eval-every", type=int, default=2500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--T", type=int, default=5)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--sigma-init", type=float, default=0.5)
    p.add_argument("--beta", type=float, default=0.5)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    noisy = args.exploration == "noisysan"
    if args.actor == "ilcsan":
        if noisy:
            p.error("the ILC-SAN actor has no neuron noise: use --exploration gaussian or none")
        actor: nn.Module = ILCActor(args.T, args.hidden, args.dec_pop)
    else:
        actor = Actor(args.T, args.hidden, args.sigma_init if noisy else 0.0, args.beta)
    actor_target = copy.deepcopy(actor).eval()
    critics = nn.ModuleList([critic(), critic()])
    critics_target = copy.deepcopy(critics)
    opt_actor = torch.optim.Adam(actor.parameters(), lr=1e-3)
    opt_critic = torch.optim.Adam(critics.parameters(), lr=1e-3)
    starts_rng = np.random.default_rng(1234)
    starts = np.stack([starts_rng.uniform(-math.pi, math.pi, 10), starts_rng.uniform(-1, 1, 10)], 1)
    width = 2 * 2 * args.hidden + 1
    buf_obs = torch.zeros(args.steps, 3)
    buf_act = torch.zeros(args.steps, 1)
    buf_rew = torch.zeros(args.steps, 1)
    buf_next = torch.zeros(args.steps, 3)
    buf_noise = torch.zeros(args.steps, args.T, width) if noisy else None
    env = Pendulum(rng)
    returns, t0 = [], time.perf_counter()
    for step in range(args.steps):
        if step % EPISODE == 0:
            obs = env.reset()[0]
            if noisy:
                actor.reset_noise(EPISODE)
        with torch.no_grad():
            actor.train(noisy)
            u = float(actor(torch.as_tensor(obs, dtype=torch.float32)[None]))
            if noisy:
                buf_noise[step] = actor.noise()
        if step < 1000:
            u = float(rng.uniform(-MAX_TORQUE, MAX_TORQUE))
        elif args.exploration == "gaussian":
            u = float(np.clip(u + rng.normal(0.0, 0.1 * MAX_TORQUE), -MAX_TORQUE, MAX_TORQUE))
        nxt, r = env.step(np.array([u]))
        nxt, r = nxt[0], float(r[0])
        buf_obs[step], buf_act[step], buf_rew[step] = torch.as_tensor(obs), u, r
        buf_next[step] = torch.as_tensor(nxt)
        obs = nxt
        if step >= 1000:  # TD3 update (no terminal states: episodes end by time limit)
            idx = torch.randint(0, step + 1, (100,))
            o, a, rew, o2 = buf_obs[idx], buf_act[idx], buf_rew[idx], buf_next[idx]
            with torch.no_grad():
                smooth = (torch.randn_like(a) * 0.2).clamp(-0.5, 0.5)
                a2 = (actor_target(o2) + smooth).clamp(-MAX_TORQUE, MAX_TORQUE)
                q2 = torch.min(*[q(torch.cat([o2, a2], 1)) for q in critics_target])
                target = rew + 0.99 * q2
            loss = sum(((q(torch.cat([o, a], 1)) - target) ** 2).mean() for q in critics)
            opt_critic.zero_grad()
            loss.backward()
            opt_critic.step()
            if step % 2 == 0:
                actor.train(noisy)
                if noisy:
                    actor.load(buf_noise[idx])
                loss_actor = -critics[0](torch.cat([o, actor(o)], 1)).mean()
                if noisy:
                    actor.load(None)
                opt_actor.zero_grad()
                loss_actor.backward()
                opt_actor.step()
                with torch.no_grad():
                    pairs = [(actor, actor_target), (critics, critics_target)]
                    for net, tgt in pairs:
                        for w, w_t in zip(net.parameters(), tgt.parameters()):
                            w_t.lerp_(w, 0.005)
        if (step + 1) % args.eval_every == 0:
            returns.append(evaluate(actor, starts))
            sigma = getattr(actor.decoder, "sigma", None)
            noise = "" if sigma is None else f"decoder sigma {float(sigma.detach().mean()):.3f}, "
            print(f"{args.actor} actor, {args.exploration} seed {args.seed} step {step + 1}: "
                  f"eval return {returns[-1]:.1f} ({noise}"
                  f"{time.perf_counter() - t0:.0f} s)", flush=True)  # fmt: skip
    return returns


if __name__ == "__main__":
    main()
