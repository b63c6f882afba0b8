"""Accuracy against the number of inference steps for CE, TET and TCL on the 8x8 digits.

Trains the default job's network (``plif_digits``, Adam 1e-3 with a cosine schedule,
seed 0) at ``--train-T`` steps once per loss below, each a full ``spikeflow train`` run,
then tests each trained network with fewer and more steps (the same weights, the image
repeated over T) and prints the test accuracy at each T. TCL (docs/models.md) claims
accuracy that holds up when T is cut.

    python examples/latency_digits.py                      # 40 epochs, T = 4
    python examples/latency_digits.py --losses ce tcl:lamb=0.5 --eval-T 1 2 4
    python examples/latency_digits.py --model-kwargs spiking_output=false  # logits out

A loss is ``NAME`` or ``NAME:KEY=VALUE,...`` with its ``--loss-kwargs``. Runs are
written under ``--output-dir`` (default: a temporary folder).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from spikeflow.cli import parse_kwargs
from spikeflow.functional import reset_net
from spikeflow.losses import predict
from spikeflow.training import Trainer
from spikeflow.training.config import config_from_dict, resolved_readout
from spikeflow.training.data import build_datasets, to_time_major

LOSSES = ("ce", "tet", "tcl")


@torch.no_grad()
def accuracy_at(trainer: Trainer, steps: int) -> float:
    """Test accuracy of ``trainer``'s trained model run for ``steps`` time steps."""
    model = trainer.raw_model.eval()
    _, test_set, info = build_datasets(trainer.config, with_train=False)
    loader = torch.utils.data.DataLoader(test_set, batch_size=256)
    readout = resolved_readout(trainer.config)
    correct = total = 0
    for x, y in loader:
        reset_net(model)
        out = model(to_time_major(x, steps, info.static))
        correct += int((predict(out, readout) == y).sum())
        total += len(y)
    return correct / total


def main(argv: list[str] | None = None) -> dict[str, dict[int, float]]:
    """Train with each loss; print and return ``{loss: {T: test accuracy}}``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--train-T", type=int, default=4)
    parser.add_argument("--eval-T", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--losses", nargs="+", default=list(LOSSES))
    parser.add_argument("--model-kwargs", nargs="+", default=[], metavar="KEY=VALUE",
                        help="plif_digits arguments, e.g. spiking_output=false")  # fmt: skip
    parser.add_argument("--train-samples", type=int, default=None)
    parser.add_argument("--test-samples", type=int, default=None)
    parser.add_argument("--output-dir", default=None)
    args = parser.parse_args(argv)
    extra = {k: v for k, v in (("train_samples", args.train_samples),
                                ("test_samples", args.test_samples)) if v is not None}  # fmt: skip
    results: dict[str, dict[int, float]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(args.output_dir or scratch)
        print(f"{'loss':<20}" + "".join(f"{'T=' + str(t):>9}" for t in args.eval_T) + "     time")
        for spec in args.losses:
            name, _, arguments = spec.partition(":")
            start = time.perf_counter()
            config = config_from_dict({
                "loss": name, "loss_kwargs": parse_kwargs(arguments.split(",") if arguments
                                                          else [], spec),
                "model_kwargs": parse_kwargs(args.model_kwargs, "--model-kwargs"),
                "T": args.train_T, "epochs": args.epochs, "progress": False, "plots": "off",
                "output_dir": str(out / spec.replace(":", "-").replace(",", "-")
                                  .replace("=", "")),
                **extra,
            })  # fmt: skip
            trainer = Trainer(config, log=None)
            trainer.fit()
            results[spec] = {t: accuracy_at(trainer, t) for t in args.eval_T}
            row = "".join(f"{100 * results[spec][t]:>8.2f}%" for t in args.eval_T)
            print(f"{spec:<20}{row} {time.perf_counter() - start:>7.0f}s", flush=True)
    return results


if __name__ == "__main__":
    main()
