"""Lava-DL's SLAYER N-MNIST tutorial (``tutorials/lava/lib/dl/slayer/nmnist``) written
with spikeflow, as docs/migration.md "From Lava-DL" maps each piece.

The input is Lava-DL's: each recording sampled into ``--steps`` bins of 1 ms centred on
whole milliseconds from ``t = 0`` (its ``Event.fill_tensor``), one spike per pixel and
bin. The network is its stack of ``slayer.block.cuba.Dense`` blocks: a weight-normalised
linear layer without bias, Lava-DL's CUBA neuron (threshold 1.25, current decay 0.25,
voltage decay 0.03), the block's one-step output shift (``delay_shift``) and, on the
hidden blocks, a learned axonal delay of up to 62 steps. It trains with Lava-DL's
``SpikeRate`` loss (true rate 0.2, false rate 0.03) and classifies by spike rate
(``Rate.predict``), printing each block's event rate as the tutorial's count log does.
The training recordings get Lava-DL's random shift-and-rotate augmentation
(``transforms.LavaShiftRotate``: shift within ±4 pixels, rotation within ±5 degrees;
``--no-augment`` turns it off). Small widths and a short run by default (the tutorial:
512 hidden, 200 epochs).

    python examples/lava_slayer_nmnist.py                      # ../shared/data/nmnist-small
    python examples/lava_slayer_nmnist.py --hidden 512 --epochs 20
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from spikeflow import layers, losses, neurons
from spikeflow.data import NMNIST, EventRecording, SliceByTime, ToFrameBySlices, transforms

DEFAULT_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nmnist-small"


class LavaInput:
    """Lava-DL's ``fill_tensor(zeros(2, 34, 34, steps), sampling_time=1)`` as a dataset
    transform: ``[steps, 2·34·34]`` float32 spikes (bins ``round(t / 1 ms)``; an event
    exactly halfway between two bins lands in the later one, numpy's in the even one)."""

    def __init__(self, steps: int) -> None:
        self.steps = steps
        bins = SliceByTime(
            1000, include_incomplete=True, start_time=-500, end_time=steps * 1000 - 500
        )
        self.frames = ToFrameBySlices(bins)

    def __call__(self, recording: EventRecording) -> torch.Tensor:
        counts = self.frames(recording)  # [steps, 2, 34, 34] event counts
        return torch.from_numpy(np.minimum(counts, 1)).float().flatten(1)


def cuba_neuron() -> nn.Module:
    """``slayer.neuron.cuba.Neuron(threshold=1.25, current_decay=0.25,
    voltage_decay=0.03)`` (the migration page's mapping)."""
    return neurons.CubaLIFNode(tau_syn=1 / 0.25, tau_mem=1 / 0.03, r="tau_syn*tau_mem",
                               v_threshold=1.25 + 0.01 / 4096, v_reset=0.0,
                               detach_reset=True)  # fmt: skip


def dense_block(n_in: int, n_out: int, delay: bool) -> list[nn.Module]:
    """``slayer.block.cuba.Dense(params, n_in, n_out, weight_norm=True, delay=delay)``."""
    linear = nn.utils.parametrizations.weight_norm(layers.Linear(n_in, n_out, bias=False))
    block = [linear, cuba_neuron(), layers.Delay(1)]  # Delay(1): the block's delay_shift
    if delay:
        block.append(layers.AxonalDelay(n_out, 62, interpolate=False))
    return block


def build_network(hidden: int) -> nn.Sequential:
    """The tutorial's 2312 → hidden → hidden → 10 network."""
    return nn.Sequential(
        *dense_block(34 * 34 * 2, hidden, delay=True),
        *dense_block(hidden, hidden, delay=True),
        *dense_block(hidden, 10, delay=False),
    )


def event_rates(net: nn.Sequential, x: torch.Tensor) -> list[float]:
    """The mean output of each block's neuron (the tutorial's ``count`` log)."""
    rates: list[float] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: rates.append(float(out.mean())))
             for m in net if isinstance(m, neurons.CubaLIFNode)]  # fmt: skip
    with torch.no_grad():
        net(x)
    for hook in hooks:
        hook.remove()
    return rates


def evaluate(net: nn.Module, loader: DataLoader) -> float:
    """Accuracy of ``Rate.predict``: the class whose output fired most."""
    correct = total = 0
    with torch.no_grad():
        for x, y in loader:
            out = net(x.transpose(0, 1))  # [steps, B, 10]
            correct += int((losses.Rate.predict(out) == y).sum())
            total += len(y)
    return correct / total


def main(argv: list[str] | None = None) -> float:
    """Train and test; returns the final test accuracy."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--steps", type=int, default=300, help="1 ms bins (the tutorial: 300)")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train-samples", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-augment", action="store_true", help="no shift-and-rotate")
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)

    spikes = LavaInput(args.steps)
    augment = transforms.LavaShiftRotate(max_shift=4, theta=10.0, seed=args.seed)
    train_transform = spikes if args.no_augment else transforms.Compose([augment, spikes])
    train = NMNIST(args.root, train=True, transform=train_transform)
    test = NMNIST(args.root, train=False, transform=spikes)
    if args.train_samples is not None:
        train = Subset(train, torch.randperm(len(train))[: args.train_samples].tolist())
    train_loader = DataLoader(train, batch_size=args.batch_size, shuffle=True)
    test_loader = DataLoader(test, batch_size=args.batch_size)

    net = build_network(args.hidden)
    optimizer = torch.optim.Adam(net.parameters(), lr=args.lr)
    error = losses.SpikeRate(true_rate=0.2, false_rate=0.03, reduction="sum")
    accuracy = 0.0
    for epoch in range(1, args.epochs + 1):
        net.train()
        for x, y in train_loader:  # x: [B, steps, 2312]
            loss = error(net(x.transpose(0, 1)), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            layers.clamp_delays(net)  # Lava-DL clamps its delays into [0, 62]
        net.eval()
        accuracy = evaluate(net, test_loader)
        rates = ", ".join(f"{r:.4f}" for r in event_rates(net, x.transpose(0, 1)))
        print(f"epoch {epoch}: loss {loss.item():.3f}, test accuracy {accuracy:.4f}, "
              f"event rates {rates}")  # fmt: skip
    return accuracy


if __name__ == "__main__":
    from spikeflow.data import exit_on_missing_data

    torch.set_num_threads(1)
    exit_on_missing_data(main, root_option="--root")
