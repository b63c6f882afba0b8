"""DIET-SNN's learnable leak and STDB's surrogate in hybrid fine-tuning, on the 8x8 digits.

For each seed: trains the ReLU CNN of ``examples/convert_digits.py`` (the seed sets the
split and the weights), converts it with max-norm, and fine-tunes one copy per T and
variant for the same epochs (Adam, cosine schedule; ``convert_finetune_digits.py``'s
``fine_tune``), evaluated at the T it was tuned for:

* ``triangle``: learnable thresholds, DIET-SNN's triangle surrogate (the default);
* ``triangle + leak``: also a learnable leak per layer (``learnable_leak=True``);
* ``diet``: DIET-SNN's damped triangle ``0.3·max(0, 1 − |z|)``
  (``surrogate_function="diet"``; not run by default: ``--variants``);
* ``stdb``: STDB's spike-time surrogate (``surrogate_function="stdb"``);
* ``stdb + leak``: both;
* ``stdb detached``: STDB with the reset's spike detached, as the authors' code resets
  (not run by default: ``--variants``);
* ``stdb fixed detached``: STDB as Rathi et al.'s hybrid code trains, the thresholds
  fixed (not parameters there) and the reset detached (not run by default).

    python examples/convert_finetune_digits_diet.py          # 3 seeds, T = 2, 4, 8: 10 epochs
    python examples/convert_finetune_digits_diet.py --fraction 0.3  # DIET-SNN's lowered θ
    python examples/convert_finetune_digits_diet.py --readout sum   # the authors' loss

``--readout sum`` puts the cross-entropy on the output summed over the T steps, as
Rathi et al.'s code does (its output layer accumulates a membrane over the steps and
the loss takes it as it is), instead of on the mean (the rate).

Prints one row per variant: the mean and the spread over the seeds at each T.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import NamedTuple

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from convert_digits import DigitsCNN, ann_accuracy, load_digits_split, parse_steps, train
from convert_finetune_digits import fine_tune

from spikeflow.conversion import convert

VARIANTS: dict[str, dict[str, object]] = {
    "triangle": {},
    "triangle + leak": {"learnable_leak": True},
    "diet": {"surrogate_function": "diet"},
    "stdb": {"surrogate_function": "stdb"},
    "stdb + leak": {"surrogate_function": "stdb", "learnable_leak": True},
    "stdb detached": {"surrogate_function": "stdb", "detach_reset": True},
    "stdb fixed detached": {
        "surrogate_function": "stdb",
        "detach_reset": True,
        "learnable_threshold": False,
    },
}


class Results(NamedTuple):
    """Accuracies in [0, 1]: ``tuned[variant][T]`` one per seed; the converted
    network's and the ANN's per seed too."""

    steps: tuple[int, ...]
    ann: list[float]
    converted: dict[int, list[float]]
    tuned: dict[str, dict[int, list[float]]]
    leaks: dict[str, dict[int, list[list[float]]]]  # the learnt λ per layer (run as ≤ 1)


def _seeds(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(s) for s in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds needs integers, got {text!r}") from None


@torch.no_grad()
def accuracy(snn: nn.Module, x, y, steps: int) -> float:
    return float((snn.rate(x, steps).argmax(1) == y).float().mean())


def main(argv: list[str] | None = None) -> Results:
    """Run the comparison and print the table; return the numbers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=_seeds, default=(0, 1, 2), help="e.g. 0,1,2")
    parser.add_argument("--steps", type=parse_steps, default=(2, 4, 8), help="fine-tuning T")
    parser.add_argument("--epochs", type=int, default=20, help="ANN training epochs")
    parser.add_argument("--finetune-epochs", type=int, default=10, help="per T and variant")
    parser.add_argument("--finetune-lr", type=float, default=5e-3, help="Adam")
    parser.add_argument(
        "--fraction", type=float, default=None,
        help="start from thresholds at this share of max-norm's (DIET-SNN's lowered start)",
    )  # fmt: skip
    parser.add_argument(
        "--readout", choices=("mean", "sum"), default="mean",
        help="cross-entropy on the mean output over T, or on its sum (Rathi et al.'s code)",
    )  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument(
        "--variants",
        default="triangle,triangle + leak,stdb,stdb + leak",
        help="comma-separated, of " + ", ".join(VARIANTS),
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    variants = [v.strip() for v in args.variants.split(",")]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; choose from {list(VARIANTS)}")
    steps: tuple[int, ...] = args.steps
    start = time.perf_counter()
    results = Results(steps, [], {t: [] for t in steps}, {}, {})
    for v in variants:
        results.tuned[v] = {t: [] for t in steps}
        results.leaks[v] = {t: [] for t in steps}
    for seed in args.seeds:
        x_tr, y_tr, x_te, y_te = load_digits_split(seed)
        torch.manual_seed(seed)
        ann = DigitsCNN(nn.ReLU, in_channels=1, size=8)
        train(ann, x_tr, y_tr, args.epochs, 0.05, args.batch_size)
        results.ann.append(ann_accuracy(ann, x_te, y_te))
        calibration = [x_tr[i : i + 256] for i in range(0, len(x_tr), 256)]
        snn, _ = convert(ann, calibration, fraction=args.fraction)  # max-norm (× fraction)
        for t in steps:
            results.converted[t].append(accuracy(snn, x_te, y_te, t))
            for v in variants:
                torch.manual_seed(seed)  # the same batches for every variant
                tuned = fine_tune(
                    snn, x_tr, y_tr, t, args.finetune_epochs, args.finetune_lr,
                    args.batch_size, readout=args.readout, **VARIANTS[v],
                )  # fmt: skip
                results.tuned[v][t].append(accuracy(tuned, x_te, y_te, t))
                # the learnt λ (a layer runs with min(λ, 1))
                leaks = [float(torch.as_tensor(n.leak).detach())
                         for n in tuned.modules() if hasattr(n, "used_leak")]  # fmt: skip
                results.leaks[v][t].append(leaks)
                print(
                    f"seed {seed} T={t} {v}: {100 * results.tuned[v][t][-1]:.2f}% "
                    f"(leaks {', '.join(f'{lk:.3f}' for lk in leaks)}; "
                    f"{time.perf_counter() - start:.0f}s)",
                    flush=True,
                )
    print(
        f"\n8x8 digits, CNN converted with {f'{args.fraction:g}·' if args.fraction else ''}"
        f"max-norm, seeds {list(args.seeds)}; fine-tuning "
        f"{args.finetune_epochs} epochs at each T, loss on the {args.readout} output; "
        "test accuracy (%), mean ± half range"
    )
    print(f"{'':<16}" + "".join(f"{f'T={t}':>16}" for t in steps))
    rows = {"converted": results.converted, **results.tuned}
    for name, by_t in rows.items():
        cells = []
        for t in steps:
            accs = torch.tensor(by_t[t]) * 100
            half = (accs.max() - accs.min()) / 2
            cells.append(f"{float(accs.mean()):>9.2f} ± {float(half):4.2f}")
        print(f"{name:<16}" + "".join(f"{c:>16}" for c in cells))
    ann = 100 * sum(results.ann) / len(results.ann)
    print(f"ANN {ann:.2f}%; total {time.perf_counter() - start:.0f}s")
    return results


if __name__ == "__main__":
    main()
