"""The delayed spiking XOR of Zheng et al. (Nature Communications 2024, DH-SNN), a
task with two timescales: a fast one (two short spike patterns) and a slow one (the
delay between them), learnt by one feed-forward layer of DH-LIF, plain LIF or TC-LIF.

The task, as the authors' script defines it (eva1801/DH-SNN,
``delayed_xor/delayed_xor_snn.py``; re-implemented here): 20 input channels, ``T``
steps (200 there), every channel firing at random with probability 0.01 per step. In
the first 10 steps every channel fires with probability 0.2 ("low") or 0.6 ("high"),
one of the two per sample; in the last 10 steps again, chosen independently. The label
is their XOR (1 when one is high and the other low). The loss is the cross-entropy of
the readout at each step of the last window but its first, the accuracy the fraction
of those steps whose larger readout is the label (chance: 0.5); fresh random batches
every step, and a fixed seeded test set.

The network, as theirs: ``Linear(20 → 16)``, 16 neurons, a ``Linear(16 → 2)`` readout
into a leaky integrator with a learnable time constant. The neurons:

* ``dh``: ``DHLIFNode`` with one branch (the authors' ``Dense_denri``, ``branch=1``;
  timing factors drawn in (0, 4) for soma and branch);
* ``lif``: the same neuron with the branch filter switched off (``tau_n`` frozen at
  -30, so the branch current is the input: the authors' vanilla SFNN,
  ``mem_update_pra`` on the dense input);
* ``tc``: ``TCLIFNode`` (per neuron, spikeflow's defaults).

Differences from their script: they apply a softmax before ``CrossEntropyLoss`` (a
second softmax inside it); here the readout goes to the cross-entropy directly. Their
states start at random values, here at 0, so with their threshold (1), or 0.5, the
layer is silent from the start and stays so (measured: chance after 400 batches): the
threshold here is 0.1 (``--v-threshold``), where about 3% of the steps fire at the
start. They train 150 epochs of 100 batches of 500;
the defaults here are shorter (``--epochs``, ``--batches``).

    python examples/delayed_xor_dh_lif.py --neuron dh --seed 0

Results are in docs/neuron_zoo_sequence.md ("The delayed spiking XOR").
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import Tensor, nn

from spikeflow import layers, neurons

CHANNELS, WINDOW, NOISE, RATES = 20, 10, 0.01, (0.2, 0.6)


def batch(size: int, steps: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Spikes ``[T, B, 20]`` and labels ``[B]`` (module docstring)."""
    x = torch.rand(steps, size, CHANNELS, generator=generator) < NOISE
    first = torch.randint(2, (size,), generator=generator)
    second = torch.randint(2, (size,), generator=generator)
    rates = torch.tensor(RATES)
    for pattern, window in ((first, slice(0, WINDOW)), (second, slice(steps - WINDOW, steps))):
        p = rates[pattern].expand(WINDOW, CHANNELS, size).permute(0, 2, 1)
        x[window] |= torch.rand(WINDOW, size, CHANNELS, generator=generator) < p
    return x.float(), (first != second).long()


class Net(nn.Module):
    """``[T, B, 20]`` → the readout ``[T, B, 2]``."""

    def __init__(self, neuron: str, hidden: int = 16, v_threshold: float = 0.1) -> None:
        super().__init__()
        if neuron in ("dh", "lif"):
            self.dense = layers.DendriticLinear(CHANNELS, hidden, 1)
            self.node = neurons.DHLIFNode(1, hidden, v_threshold=v_threshold)
            if neuron == "lif":
                self.node.dendrites.tau_n.data.fill_(-30.0)
                self.node.dendrites.tau_n.requires_grad_(False)
        else:
            self.dense = layers.Linear(CHANNELS, hidden)
            self.node = neurons.TCLIFNode(hidden)
        self.readout = layers.Linear(hidden, 2)
        tau = 1.0 + torch.rand(2) * 4.0  # a leaky readout, learnable per class
        self.integrator = neurons.LINode(tau=tau, learnable_tau=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.integrator(self.readout(self.node(self.dense(x))))


def window_loss(out: Tensor, label: Tensor) -> tuple[Tensor, Tensor]:
    """Cross-entropy and accuracy over the last window's steps but its first."""
    scored = out[-(WINDOW - 1) :]  # [W-1, B, 2]
    target = label.expand(scored.shape[0], -1)
    loss = nn.functional.cross_entropy(scored.flatten(0, 1), target.flatten())
    return loss, (scored.argmax(-1) == target).float().mean()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--neuron", choices=["dh", "lif", "tc"], default="dh")
    parser.add_argument("--steps", type=int, default=200, help="T, the delay (default 200)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batches", type=int, default=20, help="batches per epoch")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--v-threshold", type=float, default=0.1, help="dh and lif's θ")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    net = Net(args.neuron, v_threshold=args.v_threshold)
    optimizer = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=args.lr)
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, max(1, args.epochs // 3), 0.1)
    data = torch.Generator().manual_seed(1000 + args.seed)
    test_x, test_y = batch(2000, args.steps, torch.Generator().manual_seed(12345))
    start = time.perf_counter()
    for epoch in range(args.epochs):
        net.train()
        for _ in range(args.batches):
            x, y = batch(args.batch_size, args.steps, data)
            loss, acc = window_loss(net(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        schedule.step()
        net.eval()
        with torch.no_grad():
            test_loss, test_acc = window_loss(net(test_x), test_y)
        print(f"epoch {epoch + 1:3d}  train loss {loss.item():.4f} acc {acc.item():.3f}  "
              f"test loss {test_loss.item():.4f} acc {test_acc.item():.3f}  "
              f"{time.perf_counter() - start:.0f} s", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
