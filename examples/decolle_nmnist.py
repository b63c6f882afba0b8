"""DECOLLE (layer-local learning, Kaiser et al. 2020) against BPTT of the same network
on N-MNIST (docs/learning.md, "DECOLLE").

The recordings under ``--nmnist-root`` (the real subset in
``../shared/data/nmnist-small``: 1,000 train / 100 test), events downsampled 2x in space
(2 x 17 x 17), ``--frames`` frames of equal event counts, a pixel with an event in a frame
a spike. The network: two convolutional DECOLLE layers (16 and 32 channels, 5x5, max
pool 2) and a dense one (128), each with its fixed random readout to the 10 classes;
the prediction is the last layer's readout summed over the steps after the burn-in.
DECOLLE steps Adam after every time step (the paper's schedule); BPTT trains the same
network (same seed and initial weights, same loss: the sum of all layers' smooth-L1
readout losses over the steps) through layers and time, one step per batch.

    python examples/decolle_nmnist.py --seed 0
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import Tensor, nn

from spikeflow.learn import DECOLLE, DECOLLELayer, DECOLLENetwork, decolle_loss
from spikeflow.learn.decolle import predict


def load_nmnist(root: str, frames: int) -> tuple[Tensor, ...]:
    """N-MNIST as spike frames ``[frames, samples, 2, 17, 17]`` (module docstring)."""
    from spikeflow.data.datasets import NMNIST
    from spikeflow.data.transforms import Downsample

    def split(train: bool) -> tuple[Tensor, Tensor]:
        data = NMNIST(root, train=train, data_type="frame", frames_number=frames,
                      split_by="number", event_transform=Downsample(0.5))  # fmt: skip
        xs, ys = zip(*(data[i] for i in range(len(data))))
        x = torch.stack([torch.as_tensor(f) for f in xs])  # [N, T, 2, 17, 17]
        return (x > 0).float().transpose(0, 1).contiguous(), torch.tensor(ys)

    return (*split(True), *split(False))


def build(seed: int, input_shape: tuple[int, ...]) -> DECOLLENetwork:
    """The network of the module docstring, from ``seed``."""
    torch.manual_seed(seed)
    layers = [
        DECOLLELayer(nn.Conv2d(2, 16, 5, padding=2), pool=2),
        DECOLLELayer(nn.Conv2d(16, 32, 5, padding=2), pool=2),
        DECOLLELayer(nn.Linear(32 * 4 * 4, 128)),
    ]
    return DECOLLENetwork(layers, input_shape, 10)


def accuracy(net: DECOLLENetwork, x: Tensor, y: Tensor, burnin: int) -> float:
    net.eval()
    with torch.no_grad():
        out = net(x)[burnin:]
    net.train()
    return 100.0 * (predict(out) == y).float().mean().item()


def train(method: str, data: tuple[Tensor, ...], args: argparse.Namespace) -> list[float]:
    x_train, y_train, x_test, y_test = data
    net = build(args.seed, tuple(x_train.shape[2:]))
    optimizer = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=args.lr)
    rule = DECOLLE(net, burnin=args.burnin)
    generator = torch.Generator().manual_seed(args.seed)
    accuracies = []
    for epoch in range(args.epochs):
        start = time.perf_counter()
        order = torch.randperm(x_train.shape[1], generator=generator)
        for first in range(0, len(order), args.batch):
            index = order[first : first + args.batch]
            x, label = x_train[:, index], y_train[index]
            if method == "decolle":
                rule.run(x, label, optimizer)
            else:
                optimizer.zero_grad()
                out = net(x, local=False)[args.burnin :]
                sum(decolle_loss(y_t, label) for y_t in out).backward()
                optimizer.step()
        accuracies.append(accuracy(net, x_test, y_test, args.burnin))
        print(
            f"{method} epoch {epoch + 1}: test accuracy {accuracies[-1]:.1f}% "
            f"({time.perf_counter() - start:.0f} s)",
            flush=True,
        )
    return accuracies


def main(argv: list[str] | None = None) -> dict[str, list[float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nmnist-root", default="../shared/data/nmnist-small")
    parser.add_argument("--methods", nargs="+", choices=("decolle", "bptt"),
                        default=["decolle", "bptt"])  # fmt: skip
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--burnin", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = load_nmnist(args.nmnist_root, args.frames)
    return {method: train(method, data, args) for method in args.methods}


if __name__ == "__main__":
    from spikeflow.data import exit_on_missing_data

    exit_on_missing_data(main, root_option="--nmnist-root")
