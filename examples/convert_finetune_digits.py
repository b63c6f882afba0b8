"""Hybrid training on the 8x8 digits: convert a trained CNN, then fine-tune the SNN.

Trains the ReLU CNN of ``examples/convert_digits.py`` (same seed, epochs and schedule:
the same ANN), converts it with max-norm, and measures the test accuracy of

* the converted SNN at each T (the image as a constant current, the mean output);
* the same SNN read out after the warm-up steps ``estimate_delay_start`` gives for
  that T (SpikingJelly's delayed read-out), at the same total T;
* copies fine-tuned at T = k for ``--finetune-epochs`` epochs with surrogate gradients
  through time and learnable thresholds (``conversion.fine_tunable``: Rathi et al.
  2020, DIET-SNN), each evaluated at every T;
* at the largest fine-tuning T, a copy fine-tuned with the thresholds kept fixed.

    python examples/convert_finetune_digits.py          # ~1-2 min on 2 CPU cores
    python examples/convert_finetune_digits.py --initial-membrane 0.5   # from V0 = θ/2

``--steps`` (the table's T), ``--finetune-steps`` (the T of the fine-tuned rows),
``--epochs`` (ANN) and ``--finetune-epochs`` cut a run short (the test uses them).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from typing import NamedTuple

import torch
from torch import Tensor, nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from convert_digits import (
    DigitsCNN,
    ann_accuracy,
    load_digits_split,
    parse_steps,
    snn_accuracies,
    train,
)

from spikeflow.conversion import ConvertedSNN, convert, estimate_delay_start, fine_tunable

STEPS = (1, 2, 4, 8, 16, 32, 64, 128)
FINETUNE_STEPS = (1, 2, 4, 8)


class Results(NamedTuple):
    """What :func:`main` measured (accuracies in [0, 1])."""

    ann: float
    steps: tuple[int, ...]
    rows: dict[str, list[float]]  # row -> accuracy at each T of ``steps``
    delays: dict[int, int]  # T -> estimated delay
    finetune_steps: tuple[int, ...]


def fine_tune(
    snn: ConvertedSNN,
    x: Tensor,
    y: Tensor,
    steps: int,
    epochs: int,
    lr: float,
    batch_size: int,
    learnable_threshold: bool = True,
    readout: str = "mean",
    **options: object,
) -> ConvertedSNN:
    """A copy of ``snn`` trained ``epochs`` epochs at ``steps`` steps: Adam, cross-entropy
    on the mean output over the steps (``readout="sum"``: on their sum, the output
    membrane Rathi et al.'s code accumulates), cosine schedule; ``options``: further
    arguments of ``fine_tunable`` (``learnable_leak``, ``surrogate_function``)."""
    if readout not in ("mean", "sum"):
        raise ValueError(f"fine_tune: readout must be 'mean' or 'sum', got {readout!r}")
    scale = steps if readout == "sum" else 1
    tuned = fine_tunable(snn, learnable_threshold=learnable_threshold, **options)
    opt = torch.optim.Adam(tuned.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1))
    for _ in range(epochs):
        order = torch.randperm(len(x))
        for i in range(0, len(x), batch_size):
            idx = order[i : i + batch_size]
            loss = nn.functional.cross_entropy(tuned.rate(x[idx], steps) * scale, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    return tuned


@torch.no_grad()
def delayed_accuracy(snn: ConvertedSNN, x: Tensor, y: Tensor, steps: int, delay: int) -> float:
    """Accuracy of the mean output over steps ``delay + 1 .. steps``."""
    return float((snn.rate(x, steps, delay=delay).argmax(1) == y).float().mean())


def main(argv: list[str] | None = None) -> Results:
    """Train, convert, fine-tune, print the table; return the numbers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20, help="ANN training epochs")
    parser.add_argument("--lr", type=float, default=0.05, help="ANN learning rate (SGD)")
    parser.add_argument(
        "--finetune-epochs", type=int, default=10, help="SNN fine-tuning epochs per T"
    )
    parser.add_argument(
        "--finetune-lr", type=float, default=5e-3, help="fine-tuning learning rate (Adam)"
    )
    parser.add_argument(
        "--initial-membrane", type=float, default=0.0, help="V0/θ of the converted neurons"
    )
    parser.add_argument("--batch-size", type=int, default=64, help="ANN and fine-tuning")
    parser.add_argument("--seed", type=int, default=0, help="data split and weights")
    parser.add_argument(
        "--steps", type=parse_steps, default=STEPS, help="T evaluated, e.g. 1,2,4,8"
    )
    parser.add_argument(
        "--finetune-steps",
        type=parse_steps,
        default=FINETUNE_STEPS,
        help="one fine-tuned copy per T (the largest also with θ fixed), e.g. 2",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    steps: tuple[int, ...] = args.steps

    start = time.perf_counter()
    x_tr, y_tr, x_te, y_te = load_digits_split(args.seed)
    torch.manual_seed(args.seed)  # as convert_digits.py: the same ANN
    ann = DigitsCNN(nn.ReLU, in_channels=1, size=8)
    train(ann, x_tr, y_tr, args.epochs, args.lr, args.batch_size)
    ann_acc = ann_accuracy(ann, x_te, y_te)
    calibration = [x_tr[i : i + 256] for i in range(0, len(x_tr), 256)]
    snn, _ = convert(ann, calibration, initial_membrane=args.initial_membrane)  # max-norm

    name = "converted (max-norm" + (
        f", V0={args.initial_membrane:g}θ)" if args.initial_membrane else ")"
    )
    rows: dict[str, list[float]] = {name: snn_accuracies(snn, x_te, y_te, steps)}
    delays, clamped = {}, []
    for t in steps:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            delays[t] = estimate_delay_start(snn, calibration, t)
        if caught:  # fewer than 4 steps would be left: SpikingJelly's max(T - 5, 0)
            clamped.append(t)
    rows["converted, delayed read-out"] = [
        delayed_accuracy(snn, x_te, y_te, t, delays[t]) for t in steps
    ]
    for k in args.finetune_steps:
        torch.manual_seed(args.seed)
        tuned = fine_tune(
            snn, x_tr, y_tr, k, args.finetune_epochs, args.finetune_lr, args.batch_size
        )
        rows[f"fine-tuned at T={k}"] = snn_accuracies(tuned, x_te, y_te, steps)
    k = max(args.finetune_steps)
    torch.manual_seed(args.seed)
    fixed = fine_tune(
        snn, x_tr, y_tr, k, args.finetune_epochs, args.finetune_lr, args.batch_size, False
    )
    rows[f"fine-tuned at T={k}, θ fixed"] = snn_accuracies(fixed, x_te, y_te, steps)

    print(
        f"8x8 digits: {len(x_tr)} train / {len(x_te)} test; ANN {args.epochs} epochs, "
        f"fine-tuning {args.finetune_epochs} epochs; test accuracy (%)"
    )
    width = max(len(name) for name in rows)
    print(f"{'SNN':<{width}}  {'ANN':>6}  " + "  ".join(f"{f'T={t}':>6}" for t in steps))
    for name, accs in rows.items():
        print(
            f"{name:<{width}}  {100 * ann_acc:6.2f}  " + "  ".join(f"{100 * a:6.2f}" for a in accs)
        )
    raw = estimate_delay_start(snn, calibration, 10**9)  # no clamping: ceil(Σ r)
    print(
        f"estimated delay ceil(Σ r) = {raw} steps; per T: "
        + ", ".join(
            f"T={t}: {d}" + (" (clamped)" if t in clamped else "") for t, d in delays.items()
        )
    )
    print(f"total {time.perf_counter() - start:.0f}s")
    return Results(ann_acc, steps, rows, delays, tuple(args.finetune_steps))


if __name__ == "__main__":
    main()
