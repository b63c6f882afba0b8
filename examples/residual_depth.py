"""Does Spiking ResNet get worse with depth while SEW ResNet does not? (methods.md 3.4, 6)

Trains the residual zoo with one recipe, each run a full ``spikeflow train`` job
(``Trainer``): Spiking ResNet with and without ``zero_init_residual``, SEW ResNet with
``cnf="ADD"`` (and ``"IAND"`` at the ``--iand-depths``), MS-ResNet at the depths it has
(18, 34, 104; its zero-init is its design), at each ``--depths`` and ``--seeds``. The recipe
is the SEW paper's ImageNet one at a small scale: the models' default neurons (IF; the
authors' LIF for MS-ResNet), SGD lr 0.1, momentum 0.9, no weight decay, a cosine
schedule, cross-entropy on the time-mean output; ``stem="cifar"`` and ``base_width`` 8
(stages of 8, 16, 32, 64 planes) so that the 8x8 digits (1,437 train / 360 test, one
image is 0.28 points) run on one CPU thread.

Prints one row per (model, zero-init, depth): the final-epoch test accuracy (mean ± the
standard deviation over seeds, and the worst seed), the final-epoch training accuracy
and loss (means; measured on the training batches as they are trained, so a
depth-degradation that is an optimisation failure shows there too), and the mean time
of a run.

    python examples/residual_depth.py            # 2 seeds, depths 18 34 50, 10 epochs
    python examples/residual_depth.py --depths 101 --seeds 0 1 --families spiking sew_add
    python examples/residual_depth.py --dataset nmnist \\
        --data-dir ../shared/data/nmnist-small -T 10 --epochs 5 --depths 18 34

The default command (24 runs) takes about 10 minutes of CPU time on one thread of an
AMD EPYC (14, 26 and 45 s a run at depths 18, 34 and 50); results in docs/models.md,
"Measured: accuracy against depth on the 8x8 digits".
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

from spikeflow.training import Trainer
from spikeflow.training.config import config_from_dict

FAMILIES = ("spiking", "sew_add", "sew_iand", "ms")
RESNET_DEPTHS = (18, 34, 50, 101, 152)
MS_DEPTHS = (18, 34, 104)


class Variant(NamedTuple):
    """One architecture of the table: a zoo model and its arguments."""

    label: str
    depth: int
    model: str
    model_kwargs: tuple[tuple[str, object], ...]
    zero_init: bool


class RunResult(NamedTuple):
    """The final epoch of one training run."""

    test_acc: float
    train_acc: float
    train_loss: float
    seconds: float


def variants(args: argparse.Namespace) -> list[Variant]:
    """The variants that ``args`` (families, depths, zero-init choice) select, in table
    order: each family over the depths."""
    zero_inits = {"both": (False, True), "on": (True,), "off": (False,)}[args.zero_init]
    out: list[Variant] = []
    for family in args.families:
        for depth in args.depths:
            if family != "ms" and depth not in RESNET_DEPTHS:
                continue
            if family == "spiking":
                out += [Variant("spiking", depth, f"spiking_resnet{depth}", (), z)
                        for z in zero_inits]  # fmt: skip
            elif family == "sew_add":
                out.append(Variant("sew ADD", depth, f"sew_resnet{depth}",
                                   (("cnf", "ADD"),), args.sew_zero_init))  # fmt: skip
            elif family == "sew_iand" and depth in args.iand_depths:
                out.append(Variant("sew IAND", depth, f"sew_resnet{depth}",
                                   (("cnf", "IAND"),), args.sew_zero_init))  # fmt: skip
            elif family == "ms" and depth in MS_DEPTHS:
                out.append(Variant("ms", depth, f"ms_resnet{depth}", (), True))
    return out


def train_one(variant: Variant, seed: int, args: argparse.Namespace, out: Path) -> RunResult:
    """Train ``variant`` from ``seed`` with the shared recipe; its final epoch."""
    cnf = dict(variant.model_kwargs).get("cnf")
    name = f"{variant.model}{f'-{cnf}' if cnf else ''}-zi{int(variant.zero_init)}"
    model_kwargs = {
        **dict(variant.model_kwargs),
        "stem": args.stem,
        "base_width": args.base_width,
        "zero_init_residual": variant.zero_init,
    }
    values: dict[str, object] = {
        "dataset": args.dataset, "data_dir": args.data_dir, "T": args.T,
        "model": variant.model, "model_kwargs": model_kwargs, "loss": "ce",
        "optimizer": "sgd", "lr": args.lr, "momentum": 0.9, "weight_decay": 0.0,
        "schedule": "cosine", "epochs": args.epochs, "batch_size": args.batch_size,
        "seed": seed, "threads": 1, "progress": False, "plots": "off",
        "output_dir": str(out / f"{name}-s{seed}"), "overwrite": True,
        "train_samples": args.train_samples, "test_samples": args.test_samples,
    }  # fmt: skip
    start = time.perf_counter()
    last = Trainer(config_from_dict(values), log=None).fit().history[-1]
    return RunResult(float(last["test_acc"]), float(last["train_acc"]),
                     float(last["train_loss"]), time.perf_counter() - start)  # fmt: skip


def _row(variant: Variant, runs: list[RunResult]) -> str:
    """One table line: means over the seeds (the test accuracy ± its spread)."""
    test = [100 * r.test_acc for r in runs]
    spread = statistics.stdev(test) if len(test) > 1 else 0.0
    mean = statistics.fmean
    return (f"{variant.label:<9} {'yes' if variant.zero_init else 'no':<4} {variant.depth:>5} "
            f"{mean(test):>6.1f} ± {spread:<4.1f} {min(test):>5.1f} "
            f"{100 * mean([r.train_acc for r in runs]):>6.1f} "
            f"{mean([r.train_loss for r in runs]):>7.3f} "
            f"{mean([r.seconds for r in runs]):>6.0f}")  # fmt: skip


def main(argv: list[str] | None = None) -> dict[Variant, list[RunResult]]:
    """Train every variant with every seed; print the table and return the runs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    parser.add_argument("--depths", type=int, nargs="+", default=[18, 34, 50],
                        choices=sorted({*RESNET_DEPTHS, *MS_DEPTHS}))  # fmt: skip
    parser.add_argument("--iand-depths", type=int, nargs="+", default=[18])
    parser.add_argument("--zero-init", choices=("both", "on", "off"), default="both",
                        help="Spiking ResNet's zero_init_residual (default: both)")  # fmt: skip
    parser.add_argument("--sew-zero-init", action="store_true",
                        help="SEW ResNet with zero_init_residual (default: without)")  # fmt: skip
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("-T", "--T", type=int, default=4)
    parser.add_argument("--base-width", type=int, default=8)
    parser.add_argument("--stem", choices=("cifar", "imagenet"), default="cifar")
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--dataset", default="digits", help="a `spikeflow train` dataset")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--train-samples", type=int, default=None)
    parser.add_argument("--test-samples", type=int, default=None)
    parser.add_argument("--output-dir", default=None, help="default: a temporary folder")
    args = parser.parse_args(argv)
    if args.dataset == "nmnist":  # a missing folder: one line naming it, before any run
        from spikeflow.data import NMNIST

        if args.data_dir is None:
            parser.error("--dataset nmnist needs --data-dir (the folder that holds N-MNIST)")
        NMNIST(args.data_dir, train=True)

    chosen = variants(args)
    if not chosen:
        parser.error(f"no model has the depths {args.depths} in the families {args.families}")
    results: dict[Variant, list[RunResult]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(args.output_dir or scratch)
        for variant in chosen:
            results[variant] = []
            for seed in args.seeds:
                run = train_one(variant, seed, args, out)
                results[variant].append(run)
                print(
                    f"  {variant.model} {dict(variant.model_kwargs).get('cnf', '')} "
                    f"zero-init {variant.zero_init} seed {seed}: test {100 * run.test_acc:.1f}, "
                    f"train {100 * run.train_acc:.1f}, {run.seconds:.0f} s",
                    flush=True,
                )
    print(f"{args.dataset}, T={args.T}, base_width {args.base_width}, stem {args.stem}, "
          f"{args.epochs} epochs, seeds {args.seeds}; accuracies in %, "
          "train: the last epoch's")  # fmt: skip
    print("model     zero depth   test ± std   min  train    loss      s")
    for variant, runs in results.items():
        print(_row(variant, runs))
    return results


if __name__ == "__main__":
    from spikeflow.data import exit_on_missing_data

    exit_on_missing_data(main, root_option="--data-dir")
