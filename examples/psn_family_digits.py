"""The PSN family against LIF, PLIF, KLIF and GLIF on the digits read one column per step.

methods.md 4.5's sequential-CIFAR set-up at the digits' scale: the PSN paper's Conv1d
network (``psn_seqcifar``) reads each 8x8 digit one column per time step (T = 8, each
step the 8 pixels of a column), and every neuron variant is trained with that paper's
recipe for PSN and masked PSN on sequential CIFAR (SGD lr 0.1, momentum 0.9, no
weight decay, cosine schedule, cross-entropy with label smoothing 0.1 on the mean output
over time, ATan surrogate), without its augmentation; the paper trains sliding PSN
with AdamW lr 1e-3, here it gets the same SGD as the others. One command gives the table of
docs/neuron_zoo_parallel.md ("Measured: accuracy on the digits read as columns"):

    python examples/psn_family_digits.py --seeds 0 1 2 --epochs 15

It prints one row per variant: the last epoch's test accuracy for each seed, their mean
and spread (max - min), and the seconds per run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from spikeflow.training import TrainConfig, Trainer

#: Each variant: the zoo neuron's name and its ``neuron_kwargs`` (the paper's baselines:
#: LIF and PLIF with soft reset, detach_reset from the model's defaults; KLIF with soft
#: reset and without detach_reset, as its authors' sequential-CIFAR script) and the
#: masked PSN's mask schedule (``none`` keeps ``lambda_init``, here 1: the band mask
#: from the first step, where 0 would train a dense PSN). ``{k}`` is replaced by ``--k``.
VARIANTS: dict[str, tuple[str, dict[str, Any], str]] = {
    "psn": ("psn", {}, "paper"),
    "masked_psn_paper": ("masked_psn", {"k": "{k}"}, "paper"),
    "masked_psn_linear": ("masked_psn", {"k": "{k}"}, "linear"),
    "masked_psn_none": ("masked_psn", {"k": "{k}", "lambda_init": 1.0}, "none"),
    "sliding_psn": ("sliding_psn", {"k": "{k}"}, "paper"),
    "lif": ("lif", {"v_reset": None}, "paper"),
    "noreset_lif": ("noreset_lif", {}, "paper"),
    "plif": ("plif", {"v_reset": None}, "paper"),
    "klif": ("klif", {"v_reset": None, "detach_reset": False}, "paper"),
    "glif": ("glif", {}, "paper"),
}


def variant_config(
    variant: str, seed: int, args: argparse.Namespace, output_dir: Path
) -> TrainConfig:
    """The training configuration of one variant and seed."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {sorted(VARIANTS)}")
    neuron, kwargs, schedule = VARIANTS[variant]
    neuron_kwargs = {key: args.k if value == "{k}" else value for key, value in kwargs.items()}
    return TrainConfig(
        dataset="digits", model="psn_seqcifar", T=8,
        model_kwargs={"channels": args.channels},  # in_channels, length: the data's
        neuron=neuron, neuron_kwargs=neuron_kwargs, mask_schedule=schedule,
        loss="ce", loss_kwargs={"label_smoothing": 0.1},
        optimizer="sgd", lr=args.lr, momentum=0.9, schedule="cosine",
        epochs=args.epochs, batch_size=args.batch_size, seed=seed, threads=args.threads,
        output_dir=str(output_dir / f"{variant}-seed{seed}"), progress=False, plots="off",
    )  # fmt: skip


def run(args: argparse.Namespace, output_dir: Path) -> dict[str, list[tuple[float, float]]]:
    """Train every variant on every seed: ``{variant: [(test accuracy, seconds), ...]}``."""
    results: dict[str, list[tuple[float, float]]] = {}
    for variant in args.neurons:
        for seed in args.seeds:
            start = time.perf_counter()
            result = Trainer(variant_config(variant, seed, args, output_dir)).fit()
            seconds = time.perf_counter() - start
            results.setdefault(variant, []).append((result.final_test_acc, seconds))
            print(f"{variant} seed {seed}: {100 * result.final_test_acc:.2f}% ({seconds:.0f} s)")
    return results


def table(results: dict[str, list[tuple[float, float]]], seeds: list[int]) -> str:
    """A markdown table: accuracy per seed, mean, spread (max - min), seconds per run."""
    head = "| variant | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | spread | s/run |"
    rows = [head, "|" + "---|" * (len(seeds) + 4)]
    for variant, runs in results.items():
        accs = [100 * acc for acc, _ in runs]
        cells = " | ".join(f"{a:.2f}" for a in accs)
        spread = max(accs) - min(accs)
        seconds = statistics.mean(s for _, s in runs)
        rows.append(
            f"| {variant} | {cells} | {statistics.mean(accs):.2f} | {spread:.2f} | {seconds:.0f} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> dict[str, list[tuple[float, float]]]:
    """Parse the options, train, print the table; returns the per-run results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--neurons", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--k", type=int, default=4, help="order of masked and sliding PSN")
    parser.add_argument("--channels", type=int, default=64, help="Conv1d width (paper: 128)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output-dir", default=None, help="default: a temporary folder")
    args = parser.parse_args(argv)
    if not 1 <= args.k <= 8:
        parser.error(f"--k must be in 1..8 (T = 8 columns), got {args.k}")
    if args.output_dir is None:
        with tempfile.TemporaryDirectory() as tmp:
            results = run(args, Path(tmp))
    else:
        results = run(args, Path(args.output_dir))
    print(table(results, args.seeds))
    return results


if __name__ == "__main__":
    main()
