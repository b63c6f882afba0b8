"""A learned receptive-field front end against a free convolution on real N-MNIST.

The network: front end -> BatchNorm -> LIF -> Linear -> LIF, trained with Adam on the
mean output spikes (MSE to one-hot) on the N-MNIST subset in ../shared/data (1,000
train / 100 test real recordings, T = 10 equal-count frames, clamped to 0/1).

* ``--front rf``: :class:`spikeflow.layers.SpatialReceptiveField2d` with 32 kernels
  (scales 1 and 2, 4 angles, ratios 0.5 and 1, the Gaussian and its first derivative),
  9x9, stride 2: 96 trained numbers (scale, angle, ratio per kernel);
* ``--front conv``: a free ``Conv2d(2, 32, 9, stride=2)``: 5,216 weights.

Prints the test accuracy after each epoch.

    python examples/receptive_field_nmnist.py --front rf     # ~7 min on 2 busy CPU cores
    python examples/receptive_field_nmnist.py --front conv   # ~5 min
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch import nn

from spikeflow import layers, neurons
from spikeflow.data import NMNIST

ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "nmnist-small"


def load(dataset: NMNIST, limit: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``[N, T, 2, 34, 34]`` binary frames and ``[N]`` labels."""
    count = len(dataset) if limit is None else min(limit, len(dataset))
    frames, labels = zip(*(dataset[i] for i in range(count)))
    binary = [torch.as_tensor(f).float().clamp(max=1) for f in frames]
    return torch.stack(binary), torch.tensor(labels)


def build(front: str) -> nn.Sequential:
    """The network with the chosen front end."""
    if front == "rf":
        table = layers.spatial_parameters(
            torch.tensor([1.0, 2.0]),
            torch.linspace(0, torch.pi, 5)[:-1],
            torch.tensor([0.5, 1.0]),
            [(0, 0), (1, 0)],
        )
        first: nn.Module = layers.SpatialReceptiveField2d(2, 9, table, padding=4, stride=2)
        channels = first.out_channels
    else:
        first = layers.Conv2d(2, 32, 9, padding=4, stride=2)
        channels = 32
    return nn.Sequential(
        first, layers.BatchNorm2d(channels), neurons.LIFNode(), layers.Flatten(),
        layers.Linear(channels * 17 * 17, 10), neurons.LIFNode(),
    )  # fmt: skip


def main(argv: list[str] | None = None) -> list[float]:
    """Train and return the test accuracy after each epoch."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--front", choices=("rf", "conv"), default="rf")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", type=Path, default=ROOT)
    parser.add_argument("--limit", type=int, default=None, help="samples per split (smoke runs)")
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    x_train, y_train = load(NMNIST(args.root, True, "frame", 10, "number"), args.limit)
    x_test, y_test = load(NMNIST(args.root, False, "frame", 10, "number"), args.limit)
    net = build(args.front)
    optimizer = torch.optim.Adam(net.parameters(), 1e-3)
    front_params = sum(p.numel() for p in net[0].parameters())
    print(f"front {args.front}: {front_params} trained numbers in the front end")
    accuracies, start = [], time.time()
    for epoch in range(args.epochs):
        net.train()
        order = torch.randperm(len(x_train))
        for i in range(0, len(order), 50):
            batch = order[i : i + 50]
            rates = net(x_train[batch].transpose(0, 1)).mean(0)
            target = nn.functional.one_hot(y_train[batch], 10).float()
            loss = nn.functional.mse_loss(rates, target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        net.eval()
        with torch.no_grad():
            predicted = net(x_test.transpose(0, 1)).mean(0).argmax(1)
        accuracies.append((predicted == y_test).float().mean().item())
        print(f"epoch {epoch}: test accuracy {accuracies[-1]:.2f} ({time.time() - start:.0f} s)")
    return accuracies


if __name__ == "__main__":
    from spikeflow.data import exit_on_missing_data

    exit_on_missing_data(main, root_option="--root")
