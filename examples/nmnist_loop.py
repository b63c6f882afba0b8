"""A spiking network on N-MNIST, from the raw sensor files to a trained model, with a
training loop written by hand (the walkthrough: docs/tutorial.md).

N-MNIST holds the events a DVS camera recorded while it moved over MNIST digits. This
script reads the official ``Train/<label>/<id>.bin`` files, integrates each recording
into T frames (cached on disk), trains a convolutional network of parametric LIF
neurons by backpropagation through time with a surrogate gradient, reports per-layer
firing rates, saves the weights, and runs the trained network step by step from an
explicit state, as a streaming deployment would.

    python examples/nmnist_loop.py                          # ../shared/data/nmnist-small
    python examples/nmnist_loop.py --root data/nmnist --epochs 10 --download
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from spikeflow import functional, layers, losses, neurons, surrogate
from spikeflow.data import NMNIST
from spikeflow.monitor import OutputMonitor

DEFAULT_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nmnist-small"


def build_network(channels: int = 16) -> nn.Module:
    """Conv-BN-PLIF-pool twice, then a linear read-out of PLIF neurons. spikeflow's
    layers take whole sequences ``[T, B, ...]`` (time folded into the batch for the
    stateless ones); the neurons keep their membrane over the T steps of one call."""

    def plif() -> nn.Module:
        return neurons.ParametricLIFNode(init_tau=2.0, detach_reset=True,
                                         surrogate_function=surrogate.ATan())  # fmt: skip

    return nn.Sequential(
        layers.Conv2d(2, channels, 3, padding=1, bias=False),
        layers.BatchNorm2d(channels),
        plif(),
        layers.MaxPool2d(2),  # 34 -> 17
        layers.Conv2d(channels, channels, 3, padding=1, bias=False),
        layers.BatchNorm2d(channels),
        plif(),
        layers.MaxPool2d(2),  # 17 -> 8
        layers.Flatten(),
        layers.Linear(channels * 8 * 8, 10),
        plif(),
    )


def to_time_major(frames: torch.Tensor) -> torch.Tensor:
    """A DataLoader batch ``[B, T, P, H, W]`` as spikeflow's ``[T, B, P, H, W]``."""
    return frames.transpose(0, 1).contiguous()


def evaluate(net: nn.Module, loader: DataLoader) -> float:
    """Test accuracy: the class whose output neuron fired most over the T steps."""
    net.eval()
    correct = total = 0
    with torch.no_grad():
        for frames, labels in loader:
            out = net(to_time_major(frames))  # [T, B, 10] spikes
            correct += int((out.mean(0).argmax(1) == labels).sum())
            total += len(labels)
    return correct / total


def main(argv: list[str] | None = None) -> float:
    """Train, evaluate, save and stream; returns the final test accuracy."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--download", action="store_true", help="fetch N-MNIST into --root")
    parser.add_argument("--T", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--train-samples", type=int, default=None, help="default: all")
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--cache-dir", default="auto")
    parser.add_argument("--output", type=Path, default=Path("nmnist_plif.pt"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)

    # 1. The raw .bin files, integrated into T frames of equal event counts, cached.
    frames = {"data_type": "frame", "frames_number": args.T, "split_by": "number",
              "cache_dir": args.cache_dir, "download": args.download}  # fmt: skip
    train_set = NMNIST(args.root, train=True, **frames)
    test_set = NMNIST(args.root, train=False, **frames)
    if args.train_samples is not None:
        picked = torch.randperm(len(train_set))[: args.train_samples].tolist()
        train_set = Subset(train_set, picked)
    train_loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True)
    test_loader = DataLoader(test_set, batch_size=100)

    # 2. The network, the optimizer; no reset between batches: each call starts fresh.
    net = build_network(args.channels)
    optimizer = torch.optim.Adam(net.parameters(), lr=args.lr)
    for epoch in range(args.epochs):
        net.train()
        for x, labels in train_loader:
            out = net(to_time_major(x))  # [T, B, 10]
            loss = losses.rate_mse_loss(out, labels)  # firing rate vs one-hot
            optimizer.zero_grad()
            loss.backward()  # through time, with the surrogate gradient
            optimizer.step()
        print(f"epoch {epoch + 1}: loss {loss.item():.4f}, test {evaluate(net, test_loader):.3f}")

    # 3. Firing rates of every spiking layer on one test batch.
    frames_batch, _ = next(iter(test_loader))
    with OutputMonitor(net, neurons.BaseNode, lambda s: s.mean().item()) as monitor:
        net.eval()
        with torch.no_grad():
            net(to_time_major(frames_batch))
        for name, indices in monitor.name_records_index.items():
            print(f"layer {name}: firing rate {monitor.records[indices[0]]:.3f}")

    # 4. Save the weights; a new network loads them.
    torch.save(net.state_dict(), args.output)
    restored = build_network(args.channels)
    restored.load_state_dict(torch.load(args.output, weights_only=True))

    # 5. Streaming: one step per call, the state passed in and out explicitly.
    restored.eval()
    functional.set_step_mode(restored, "s")
    x = to_time_major(frames_batch)
    state, counts = None, 0
    with torch.no_grad():
        for x_t in x:  # [B, 2, 34, 34], one time step
            out_t, state = functional.run(restored, x_t, state)
            counts = counts + out_t
        net.eval()
        assert torch.equal(counts, net(x).sum(0)), "streaming differs from one call"
    accuracy = evaluate(net, test_loader)
    print(f"test accuracy: {accuracy:.4f}")
    return accuracy


if __name__ == "__main__":
    from spikeflow.data import exit_on_missing_data

    exit_on_missing_data(main, download_option="--download")
