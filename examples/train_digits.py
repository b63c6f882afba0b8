"""Train a parametric-LIF convolutional SNN on scikit-learn's 8x8 handwritten digits.

The digits (1,797 real scans, 10 classes) ship inside scikit-learn, so this needs no
download. The network follows the PLIF paper's recipe (methods.md 11.2) at a small
scale: a conv + BN encoder that runs once on the static image and is repeated over T
steps, PLIF neurons (init_tau 2, detach_reset, ATan surrogate), dropout masks shared
across time, a voting output layer, and MSE between the output firing rate and the
one-hot label.

    python examples/train_digits.py --epochs 40 --T 4
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import Tensor, nn

from spikeflow import functional, layers
from spikeflow.neurons import ParametricLIFNode
from spikeflow.surrogate import ATan


def plif() -> ParametricLIFNode:
    return ParametricLIFNode(init_tau=2.0, detach_reset=True, surrogate_function=ATan())


class DigitsCSNN(nn.Module):
    """conv-BN encoder -> PLIF -> {conv-BN-PLIF-maxpool} -> FC-PLIF -> FC-PLIF -> voting."""

    def __init__(self, T: int = 4, channels: int = 32, classes: int = 10) -> None:
        super().__init__()
        self.T = T
        self.encoder = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels)
        )
        self.body = nn.Sequential(
            plif(),
            layers.Conv2d(channels, channels, 3, padding=1, bias=False),
            layers.BatchNorm2d(channels),
            plif(),
            layers.MaxPool2d(2),  # 8x8 -> 4x4
            layers.Flatten(),
            layers.Dropout(0.5),
            layers.Linear(channels * 4 * 4, 128, bias=False),
            plif(),
            layers.Dropout(0.5),
            layers.Linear(128, classes * 10, bias=False),
            plif(),
            layers.VotingLayer(10),
        )

    def forward(self, images: Tensor) -> Tensor:
        """Images ``[B, 1, 8, 8]`` -> output firing rates ``[B, classes]``."""
        encoded = self.encoder(images)  # run once on the static image
        x_seq = encoded.unsqueeze(0).expand(self.T, *encoded.shape)  # [T, B, C, H, W]
        return self.body(x_seq).mean(0)


def load_digits_split(seed: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The 8x8 digits, scaled to [0, 1], split 80/20 stratified by class."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[:, None]
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, data.target, test_size=0.2, random_state=seed, stratify=data.target
    )
    return (torch.from_numpy(x_tr), torch.from_numpy(y_tr),
            torch.from_numpy(x_te), torch.from_numpy(y_te))


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor, batch: int = 256) -> float:
    model.eval()
    correct = sum(
        int((model(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum())
        for i in range(0, len(x), batch)
    )
    return correct / len(x)


def main(argv: list[str] | None = None) -> float:
    """Train and evaluate; returns the test accuracy."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--T", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    x_tr, y_tr, x_te, y_te = load_digits_split(args.seed)
    model = DigitsCSNN(T=args.T)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    print(f"8x8 digits: {len(x_tr)} train / {len(x_te)} test, T={args.T}")
    start = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(x_tr))
        total_loss = 0.0
        for i in range(0, len(order), args.batch_size):
            idx = order[i : i + args.batch_size]
            rate = model(x_tr[idx])
            loss = nn.functional.mse_loss(rate, nn.functional.one_hot(y_tr[idx], 10).float())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * len(idx)
        scheduler.step()
        if (epoch + 1) % 5 == 0 or epoch == args.epochs - 1:
            print(
                f"epoch {epoch + 1:3d}  loss {total_loss / len(x_tr):.4f}  "
                f"test acc {accuracy(model, x_te, y_te):.4f}  "
                f"({time.perf_counter() - start:.0f}s)"
            )
    functional.reset_net(model)
    acc = accuracy(model, x_te, y_te)
    print(f"test accuracy: {acc:.4f}")
    return acc


if __name__ == "__main__":
    main()
