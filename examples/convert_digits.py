"""ANN-to-SNN conversion on scikit-learn's 8x8 digits: max-norm, robust norm, Gaussian
thresholds, multi-threshold neurons and QCFS.

Trains two small CNNs with batch norm on the digits (1,797 real scans, no download): one
with ReLU and one with QCFS activations (methods.md 7.2). The ReLU network is converted
with max-norm and with the robust norm (99.9th and 99.99th percentiles of the positive
activations, methods.md 7.1), with the Gaussian threshold for 8 levels (V0 = θ/2: the
rounding it assumes), with multi-threshold neurons and with differential coding
(methods.md 7.4), the QCFS network
with threshold λ and initial membrane λ/2 (and with group neurons, methods.md 7.3).
Each SNN sees the image as a constant input current for T steps and answers with its
mean output; the table gives the test accuracy for T = 1, 2, 4, 8, 16, 32, 64 (one run
of 64 steps gives every T: the network is causal and starts from its initial state).

    python examples/convert_digits.py                    # ~20-30 s on 2 CPU cores
    python examples/convert_digits.py --dataset nmnist   # the N-MNIST subset in ../shared

``--dataset nmnist`` does the same on the N-MNIST subset (1,000 train / 100 test
recordings), each recording's events summed into one two-channel 34x34 count image.
``--steps``, ``--train-samples`` and ``--test-samples`` cut a run short (the tests use
them). For the QCFS network at T = L the example also prints, per neuron layer, the
share of neurons whose spike count is off because their input arrived unevenly
(:func:`spikeflow.conversion.unevenness`, in float64): the only error left at T = L.
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from spikeflow.conversion import QCFS, convert, unevenness

STEPS = (1, 2, 4, 8, 16, 32, 64)


class Results(NamedTuple):
    """What :func:`main` measured."""

    rows: dict[str, tuple[float, list[float]]]  # row -> (ANN accuracy, SNN accuracy per T)
    steps: tuple[int, ...]  # the T of each SNN accuracy
    qcfs_row: str  # the name of the QCFS row
    unevenness: dict[str, float]  # QCFS at T = L: share of neurons off, per layer


class DigitsCNN(nn.Module):
    """conv-BN-act, a residual conv-BN-act block, avg pool, conv-BN-act, avg pool, FC-act, FC.

    For inputs larger than 16x16 (N-MNIST's 34x34) an average pool halves the input first.
    """

    def __init__(
        self,
        activation: Callable[[], nn.Module],
        in_channels: int = 1,
        size: int = 8,
        channels: int = 16,
    ) -> None:
        super().__init__()
        c = channels
        self.pool0 = nn.AvgPool2d(2) if size > 16 else nn.Identity()
        size = size // 2 if size > 16 else size
        self.conv1, self.bn1, self.act1 = (
            nn.Conv2d(in_channels, c, 3, padding=1, bias=False),
            nn.BatchNorm2d(c),
            activation(),
        )
        self.conv2, self.bn2, self.act2 = (
            nn.Conv2d(c, c, 3, padding=1, bias=False),
            nn.BatchNorm2d(c),
            activation(),
        )
        self.pool1 = nn.AvgPool2d(2)  # 8x8 -> 4x4
        self.conv3, self.bn3, self.act3 = (
            nn.Conv2d(c, 2 * c, 3, padding=1, bias=False),
            nn.BatchNorm2d(2 * c),
            activation(),
        )
        self.pool2 = nn.AvgPool2d(2)  # 4x4 -> 2x2
        self.fc1, self.act4 = nn.Linear(2 * c * (size // 4) ** 2, 64), activation()
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x: Tensor) -> Tensor:
        y = self.act1(self.bn1(self.conv1(self.pool0(x))))
        y = self.act2(self.bn2(self.conv2(y)) + y)  # residual addition
        y = self.pool1(y)
        y = self.pool2(self.act3(self.bn3(self.conv3(y))))
        return self.fc2(self.act4(self.fc1(torch.flatten(y, 1))))


def load_digits_split(seed: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The 8x8 digits, scaled to [0, 1], split 80/20 stratified by class."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[:, None]
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, data.target, test_size=0.2, random_state=seed, stratify=data.target
    )
    return (
        torch.from_numpy(x_tr),
        torch.from_numpy(y_tr),
        torch.from_numpy(x_te),
        torch.from_numpy(y_te),
    )


def spread(count: int, limit: int) -> list[int]:
    """``limit`` indices spread evenly over ``range(count)`` (all of them for 0 or more)."""
    if limit <= 0 or limit >= count:
        return list(range(count))
    return [i * count // limit for i in range(limit)]


def load_nmnist_counts(
    root: str, train_samples: int = 0, test_samples: int = 0
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """N-MNIST as images: each recording's events summed into one frame [2, 34, 34] / 16.

    ``train_samples`` / ``test_samples`` > 0 take that many recordings spread evenly over
    each split (which is sorted by label, so every class is represented).
    """
    from spikeflow.data.datasets import NMNIST

    def load(train: bool) -> tuple[Tensor, Tensor]:
        data = NMNIST(root, train=train, data_type="frame", frames_number=1, split_by="number")
        samples = [data[i] for i in spread(len(data), train_samples if train else test_samples)]
        x = torch.stack([torch.as_tensor(f)[0] for f, _ in samples]) / 16.0
        return x, torch.tensor([label for _, label in samples])

    return (*load(True), *load(False))


def train(
    model: nn.Module, x: Tensor, y: Tensor, epochs: int, lr: float, batch_size: int = 64
) -> None:
    """SGD with momentum 0.9, weight decay 5e-4 (λ included), cosine schedule (methods.md 7.2)."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    fit(model, x, y, opt, epochs, batch_size)


def fit(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    opt: torch.optim.Optimizer,
    epochs: int,
    batch_size: int = 64,
) -> None:
    """``epochs`` of shuffled mini-batches of cross-entropy with ``opt``, its learning
    rate on a cosine schedule over the epochs; ``model`` left in eval mode. The training
    loop of the digits examples (each picks its optimiser)."""
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x))
        for i in range(0, len(x), batch_size):
            idx = order[i : i + batch_size]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    model.eval()


@torch.no_grad()
def ann_accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    return float((model.eval()(x).argmax(1) == y).float().mean())


@torch.no_grad()
def snn_accuracies(
    snn: nn.Module, x: Tensor, y: Tensor, steps: tuple[int, ...] = STEPS
) -> list[float]:
    """Accuracy at each T of ``steps``, from one run of max(steps) steps."""
    rate = snn.running_rate(x, max(steps))  # [T, B, classes]: mean output after t steps
    return [float((rate[t - 1].argmax(1) == y).float().mean()) for t in steps]


@torch.no_grad()
def accumulated_accuracies(
    snn: nn.Module, x: Tensor, y: Tensor, reference: Tensor, steps: tuple[int, ...], chunk: int
) -> tuple[list[float], list[float]]:
    """For each T of ``steps``: the accuracy of ``snn.accumulate``'s output summed over T
    steps, and the share of images whose sum equals ``reference`` (the ANN's output) to
    1e-9; ``x`` run in chunks of ``chunk`` images, each once for max(steps) steps."""
    sums = torch.cat(
        [snn.accumulate(x[i : i + chunk], max(steps)) for i in range(0, len(x), chunk)], 1
    )
    accs = [float((sums[t - 1].argmax(1) == y).double().mean()) for t in steps]
    exact = [
        float(((sums[t - 1] - reference).abs().amax(1) <= 1e-9).double().mean()) for t in steps
    ]
    return accs, exact


def parse_steps(text: str) -> tuple[int, ...]:
    """``"1,8,32"`` -> ``(1, 8, 32)`` (sorted, each >= 1)."""
    try:
        steps = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--steps takes integers like 1,8,32, got {text!r}"
        ) from None
    if not steps or steps[0] < 1:
        raise argparse.ArgumentTypeError(f"--steps needs integers >= 1, got {text!r}")
    return steps


def main(argv: list[str] | None = None) -> Results:
    """Train, convert, print the table and the QCFS T = L diagnosis; return the numbers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--levels", type=int, default=8, help="QCFS levels L")
    parser.add_argument("--group-size", type=int, default=4, help="group neuron members m")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dataset", choices=("digits", "nmnist"), default="digits")
    parser.add_argument(
        "--nmnist-root",
        default="../shared/data/nmnist-small",
        help="N-MNIST in its official layout (Train/<label>/*.bin, Test/...)",
    )
    parser.add_argument(
        "--steps",
        type=parse_steps,
        default=STEPS,
        help="comma-separated T values of the table (one run of the largest)",
    )
    parser.add_argument(
        "--train-samples",
        type=int,
        default=0,
        help="train on this many samples spread over the split (0: all)",
    )
    parser.add_argument(
        "--test-samples",
        type=int,
        default=0,
        help="test on this many samples spread over the split (0: all)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (tensors this small run fastest on one)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    steps: tuple[int, ...] = args.steps

    start = time.perf_counter()
    if args.dataset == "digits":
        x_tr, y_tr, x_te, y_te = load_digits_split(args.seed)
        keep_tr = spread(len(x_tr), args.train_samples)
        keep_te = spread(len(x_te), args.test_samples)
        x_tr, y_tr, x_te, y_te = x_tr[keep_tr], y_tr[keep_tr], x_te[keep_te], y_te[keep_te]
        title = "8x8 digits"
    else:
        x_tr, y_tr, x_te, y_te = load_nmnist_counts(
            args.nmnist_root, args.train_samples, args.test_samples
        )
        title = "N-MNIST subset as event-count images"
    shape = {"in_channels": x_tr.shape[1], "size": x_tr.shape[-1]}
    torch.manual_seed(args.seed)
    relu_net = DigitsCNN(nn.ReLU, **shape)
    train(relu_net, x_tr, y_tr, args.epochs, args.lr, args.batch_size)
    torch.manual_seed(args.seed)
    qcfs_net = DigitsCNN(lambda: QCFS(levels=args.levels, threshold=8.0), **shape)
    train(qcfs_net, x_tr, y_tr, args.epochs, args.lr, args.batch_size)
    trained = time.perf_counter() - start
    calibration = [x_tr[i : i + 256] for i in range(0, len(x_tr), 256)]

    relu_acc, qcfs_acc = ann_accuracy(relu_net, x_te, y_te), ann_accuracy(qcfs_net, x_te, y_te)
    rows: dict[str, tuple[float, list[float]]] = {}
    variants = [
        ("ReLU, max-norm", relu_net, relu_acc, {"norm": "max"}),
        ("ReLU, robust 99.9%", relu_net, relu_acc, {"norm": "percentile", "percentile": 99.9}),
        ("ReLU, robust 99.99%", relu_net, relu_acc, {"norm": "percentile", "percentile": 99.99}),
        (
            "ReLU, 99.9% per channel, V0=θ/2",
            relu_net,
            relu_acc,
            {
                "norm": "percentile",
                "percentile": 99.9,
                "per_channel": True,
                "initial_membrane": 0.5,
            },
        ),
        (
            "ReLU, Gaussian θ for 8 levels, V0=θ/2",
            relu_net,
            relu_acc,
            {"norm": "gaussian", "levels": 8, "initial_membrane": 0.5},
        ),
        (
            "ReLU, same per channel",
            relu_net,
            relu_acc,
            {"norm": "gaussian", "levels": 8, "per_channel": True, "initial_membrane": 0.5},
        ),
        ("ReLU, max-norm, 8 thresholds", relu_net, relu_acc, {"multi_threshold": 8}),
        (
            "ReLU, Gaussian θ (4·2^8 levels), 8 thresholds",
            relu_net,
            relu_acc,
            {"norm": "gaussian", "levels": 4 * 2**8, "multi_threshold": 8},
        ),
        (
            "ReLU, same, negative spikes",
            relu_net,
            relu_acc,
            {"norm": "gaussian", "levels": 4 * 2**8, "multi_threshold": 8, "negative_spikes": True},
        ),
        ("ReLU, max-norm, differential", relu_net, relu_acc, {"coding": "differential"}),
        (
            "ReLU, max-norm, 8 thresholds, differential",
            relu_net,
            relu_acc,
            {"coding": "differential", "multi_threshold": 8},
        ),
        (f"QCFS L={args.levels} (θ=λ, V0=λ/2)", qcfs_net, qcfs_acc, {}),
        (
            f"QCFS L={args.levels}, group neurons m={args.group_size}",
            qcfs_net,
            qcfs_acc,
            {"group_size": args.group_size},
        ),
    ]
    for name, net, acc, options in variants:
        snn, _ = convert(net, calibration, **options)
        rows[name] = (acc, snn_accuracies(snn, x_te, y_te, steps))

    print(
        f"{title}: {len(x_tr)} train / {len(x_te)} test; {args.epochs} epochs per ANN "
        f"({trained:.0f}s); test accuracy (%)"
    )
    width = max(len(name) for name in rows)
    print(f"{'conversion':<{width}}  {'ANN':>6}  " + "  ".join(f"{f'T={t}':>6}" for t in steps))
    for name, (acc, accs) in rows.items():
        print(f"{name:<{width}}  {100 * acc:6.2f}  " + "  ".join(f"{100 * a:6.2f}" for a in accs))
    qcfs_name = f"QCFS L={args.levels} (θ=λ, V0=λ/2)"
    uneven: dict[str, float] = {}
    if args.levels in steps:
        qcfs_row = rows[qcfs_name]
        gap = 100 * (qcfs_row[1][steps.index(args.levels)] - qcfs_row[0])
        # In float64, so that no total input within rounding of a multiple of λ blurs it.
        snn64, _ = convert(copy.deepcopy(qcfs_net).double())
        uneven = unevenness(snn64, x_te.double(), args.levels)
        shares = ", ".join(f"{name} {100 * share:.1f}%" for name, share in uneven.items())
        print(
            f"QCFS at T = L = {args.levels}: SNN - ANN = {gap:+.2f} points; neurons whose "
            f"spike count is off by uneven input: {shares} (the first layer is exact)"
        )
    print(f"total {time.perf_counter() - start:.0f}s")
    return Results(rows, steps, qcfs_name, uneven)


if __name__ == "__main__":
    from spikeflow.data import exit_on_missing_data

    exit_on_missing_data(main, root_option="--nmnist-root")
