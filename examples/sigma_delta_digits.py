"""Sigma-delta networks on slowly changing input: accuracy and work against θ.

Trains a small CNN (an ``nn.Sequential`` with batch norm) on scikit-learn's 8x8 digits
(1,797 real scans, no download), converts it with
:func:`spikeflow.conversion.to_sigma_delta` for several thresholds θ (the same θ for
the input and every unit), and runs each SDNN on sequences of frames:

* ``--dataset digits``: each test image as T = 16 frames with a slow brightness drift
  (+0.1 over the sequence, the same for every pixel) and sensor noise (σ = 0.01 per
  pixel and frame, independent);
* ``--dataset nmnist``: the N-MNIST subset in ../shared/data (1,000 train / 100 test
  real recordings). The ANN is trained on each recording's event counts (one
  two-channel 34x34 image / 16); at test time frame t holds the events of the first
  t + 1 of T = 20 equal-count slices, so the last frame is the training image and the
  input's changes are exactly each slice's events.

For each θ it prints: the accuracy of the SDNN's accumulated output on every frame
(mean over frames) and on the last frame, beside the ANN run on every frame; the share
of nonzero deltas sent by the input encoder and by each unit; the synaptic operations
per sample (MACs: one per nonzero delta and nonzero weight, spikeflow.energy) against
the ANN's dense MACs on every frame; and the largest difference of the output from
the ANN's (0 up to float rounding at θ = 0).

    python examples/sigma_delta_digits.py                    # ~30 s on 2 CPU cores
    python examples/sigma_delta_digits.py --dataset nmnist   # ~1 min
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import NamedTuple

import torch
from torch import Tensor, nn

from spikeflow.conversion import to_sigma_delta
from spikeflow.energy import count_operations
from spikeflow.layers import delta_activity

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from convert_digits import fit  # the examples' shared training loop

THETAS = (0.0, 0.005, 0.01, 0.02, 0.05, 0.1)


class Row(NamedTuple):
    """What one θ gave."""

    accuracy: float  # mean over frames
    last: float  # on the last frame
    input_activity: float  # share of the input's deltas that were nonzero
    unit_activity: list[float]  # the same for each unit, in order
    macs: float  # per sample, all frames
    max_error: float  # largest |SDNN output - ANN output| over frames and samples


class Results(NamedTuple):
    """What :func:`main` measured."""

    rows: dict[float, Row]
    ann_accuracy: float  # the ANN on every frame, mean over frames
    ann_last: float
    ann_macs: float  # per sample, all frames
    ann_sparse_macs: float  # the same, skipping zero inputs (an event-driven ANN)
    steps: int


def make_cnn(in_channels: int, size: int, channels: int = 16) -> nn.Sequential:
    """conv-BN-ReLU ×2, avg pool, conv-BN-ReLU, avg pool, FC-ReLU, FC (an average pool
    first halves inputs larger than 16x16)."""
    c, modules = channels, []
    if size > 16:
        modules.append(nn.AvgPool2d(2))
        size //= 2
    modules += [
        nn.Conv2d(in_channels, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
        nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Conv2d(c, 2 * c, 3, padding=1, bias=False), nn.BatchNorm2d(2 * c), nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(2 * c * (size // 4) ** 2, 64), nn.ReLU(), nn.Linear(64, 10),
    ]  # fmt: skip
    return nn.Sequential(*modules)


def train(model: nn.Module, x: Tensor, y: Tensor, epochs: int, lr: float, batch: int) -> None:
    """SGD with momentum 0.9, weight decay 5e-4, cosine schedule."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    fit(model, x, y, opt, epochs, batch)


def digits_data(seed: int, steps: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Train images and labels, test sequences ``[T, B, 1, 8, 8]`` (drift and noise) and
    labels."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = torch.tensor(data.images / 16.0, dtype=torch.float32)[:, None]
    y = torch.tensor(data.target)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=0.2, random_state=seed, stratify=data.target
    )
    generator = torch.Generator().manual_seed(seed + 1)
    drift = torch.linspace(0.0, 0.1, steps).reshape(steps, 1, 1, 1, 1)
    noise = 0.01 * torch.randn((steps, *x_te.shape), generator=generator)
    return x_tr, y_tr, x_te[None] + drift + noise, y_te


def nmnist_data(root: str, steps: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Train count images ``[N, 2, 34, 34] / 16``, test sequences of accumulated slices
    ``[T, B, 2, 34, 34] / 16`` and labels."""
    from spikeflow.data.datasets import NMNIST

    def load(train: bool, frames: int) -> tuple[Tensor, Tensor]:
        data = NMNIST(root, train=train, data_type="frame", frames_number=frames, split_by="number")
        samples = [data[i] for i in range(len(data))]
        x = torch.stack([torch.as_tensor(f, dtype=torch.float32) for f, _ in samples])
        return x, torch.tensor([label for _, label in samples])

    x_tr, y_tr = load(True, 1)
    slices, y_te = load(False, steps)
    return x_tr[:, 0] / 16.0, y_tr, slices.cumsum(1).transpose(0, 1) / 16.0, y_te


def accuracy(logits: Tensor, y: Tensor) -> tuple[float, float]:
    """Mean over frames and last-frame accuracy of ``[T, B, classes]``."""
    right = (logits.argmax(-1) == y).float()
    return float(right.mean()), float(right[-1].mean())


def main(argv: list[str] | None = None) -> Results:
    """Train, convert for each θ, print the table; return the numbers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=("digits", "nmnist"), default="digits")
    parser.add_argument("--nmnist-root", default="../shared/data/nmnist-small")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=0, help="frames T (default 16 / 20)")
    parser.add_argument(
        "--thetas",
        default=",".join(f"{t:g}" for t in THETAS),
        help="comma-separated θ values (units and input)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    thetas = [float(t) for t in args.thetas.split(",") if t.strip()]
    start = time.perf_counter()
    if args.dataset == "digits":
        steps = args.steps or 16
        x_tr, y_tr, seq, y_te = digits_data(args.seed, steps)
        title = f"8x8 digits, T = {steps} frames with drift +0.1 and noise σ = 0.01"
    else:
        steps = args.steps or 20
        x_tr, y_tr, seq, y_te = nmnist_data(args.nmnist_root, steps)
        title = f"N-MNIST subset, T = {steps} frames of accumulated events"
    torch.manual_seed(args.seed)
    ann = make_cnn(x_tr.shape[1], x_tr.shape[-1])
    train(ann, x_tr, y_tr, args.epochs, args.lr, args.batch_size)
    trained = time.perf_counter() - start

    batch = seq.shape[1]
    with torch.no_grad():
        ann_logits = torch.stack([ann(frame) for frame in seq])
    ann_acc, ann_last = accuracy(ann_logits, y_te)
    frame_ops = count_operations(ann, seq[0], samples=batch)
    ann_macs = steps * (frame_ops.macs + frame_ops.acs)
    # The ANN on an event-driven chip that skips zero activations: each frame as a
    # sequence of one step (its deltas are then the activations themselves).
    frames, _ = to_sigma_delta(ann)
    sparse_macs = count_operations(frames, seq.flatten(0, 1)[None], samples=batch).macs
    rows: dict[float, Row] = {}
    for theta in thetas:
        sdnn, _ = to_sigma_delta(ann, theta)
        with torch.no_grad():
            logits = sdnn(seq)
        activity = delta_activity(sdnn, seq)
        acc, last = accuracy(logits, y_te)
        rows[theta] = Row(
            accuracy=acc,
            last=last,
            input_activity=activity.pop("input"),
            unit_activity=list(activity.values()),
            macs=count_operations(sdnn, seq).macs,
            max_error=float((logits - ann_logits).abs().max()),
        )

    print(
        f"{title}: {len(x_tr)} train images, {batch} test sequences; ANN {args.epochs} "
        f"epochs ({trained:.0f}s)"
    )
    print(
        f"{'θ':>6}  {'acc/frame':>9}  {'last':>6}  {'input Δ':>7}  {'units Δ (%)':<20}  "
        f"{'MACs/sample':>12}  {'vs ANN':>7}  {'max|Δout|':>9}"
    )
    print(
        f"{'ANN':>6}  {100 * ann_acc:9.2f}  {100 * ann_last:6.2f}  {'100%':>7}  {'100':<20}  "
        f"{ann_macs:12,.0f}  {'1':>7}  {0:9.2g}"
    )
    print(
        f"{'ANN*':>6}  {'':9}  {'':6}  {'':7}  {'':<20}  {sparse_macs:12,.0f}  "
        f"{sparse_macs / ann_macs:7.3f}"
    )
    for theta, row in rows.items():
        units = "/".join(f"{100 * a:.1f}" for a in row.unit_activity)
        print(
            f"{theta:6g}  {100 * row.accuracy:9.2f}  {100 * row.last:6.2f}  "
            f"{100 * row.input_activity:6.1f}%  {units:<20}  {row.macs:12,.0f}  "
            f"{row.macs / ann_macs:7.3f}  {row.max_error:9.2g}"
        )
    print("ANN*: the ANN on every frame, skipping the MACs of zero inputs")
    print(f"total {time.perf_counter() - start:.0f}s")
    return Results(rows, ann_acc, ann_last, ann_macs, sparse_macs, steps)


if __name__ == "__main__":
    from spikeflow.data import exit_on_missing_data

    exit_on_missing_data(main, root_option="--nmnist-root")
