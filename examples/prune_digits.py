"""Sparsity against accuracy on scikit-learn's 8x8 digits: Grad R, STDS and LATS.

Trains the default job's network (``plif_digits``, T = 4, Adam 1e-3 with a cosine
schedule, seed 0) once dense and once per pruning setting below, each a full
``spikeflow train`` run (docs/pruning.md), and prints the final test accuracy and the
share of zero weights of each.

    python examples/prune_digits.py                 # 40 epochs per run
    python examples/prune_digits.py --epochs 10 --settings dense grad_r:alpha=0.2
    python examples/prune_digits.py --weight-bits 4 --settings dense grad_r:alpha=0.2
    python examples/prune_digits.py --weight-bits 4 --weight-quant lsq --settings dense

A setting is ``dense`` or ``METHOD:KEY=VALUE,...`` with the method's ``--prune-kwargs``;
``--weight-bits`` trains every setting with weights quantized to that many bits
(``--weight-quant lsq``: learned step sizes; ``--input-bits``: the input quantized too;
docs/quantization.md).
Runs are written under ``--output-dir`` (default: a temporary folder).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from spikeflow.cli import parse_kwargs
from spikeflow.training import Trainer
from spikeflow.training.config import config_from_dict

SETTINGS = (
    "dense",
    "grad_r:alpha=0.05",
    "grad_r:alpha=0.2",
    "grad_r:alpha=0.5",
    "stds:final_threshold=0.05",
    "stds:final_threshold=0.1",
    "lats:l1=0.2",
    "lats:l1=0.5",
    "lats:final_threshold=0.1",
    "stds:final_threshold=0.1,shape=pgh,beta=0.1",
)


def run_setting(setting: str, epochs: int, out: Path, **extra: object) -> tuple[float, float]:
    """Train the digits with ``setting``; return (final test accuracy, final sparsity)."""
    method, _, arguments = setting.partition(":")
    values: dict[str, object] = {
        "epochs": epochs, "progress": False, "plots": "off",
        "output_dir": str(out / setting.replace(":", "-").replace(",", "-").replace("=", "")),
        **extra,
    }  # fmt: skip
    if method != "dense":
        values["prune"] = method
        values["prune_kwargs"] = parse_kwargs(arguments.split(",") if arguments else [], setting)
    result = Trainer(config_from_dict(values), log=None).fit()
    last = result.history[-1]
    return float(last["test_acc"]), float(last.get("sparsity", 0.0))


def main(argv: list[str] | None = None) -> dict[str, tuple[float, float]]:
    """Run the settings; print and return ``{setting: (accuracy, sparsity)}``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS))
    parser.add_argument("--train-samples", type=int, default=None)
    parser.add_argument("--test-samples", type=int, default=None)
    parser.add_argument("--weight-bits", type=int, default=None)
    parser.add_argument("--weight-quant", choices=["fixed", "lsq"], default=None)
    parser.add_argument("--input-bits", type=int, default=None)
    parser.add_argument("--output-dir", default=None)
    args = parser.parse_args(argv)
    extra = {k: v for k, v in (("train_samples", args.train_samples),
                                ("test_samples", args.test_samples),
                                ("weight_bits", args.weight_bits),
                                ("weight_quant", args.weight_quant),
                                ("input_bits", args.input_bits)) if v is not None}  # fmt: skip
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(args.output_dir or scratch)
        print(f"{'setting':<28} {'test acc':>9} {'sparsity':>9} {'time':>7}")
        for setting in args.settings:
            start = time.perf_counter()
            acc, zeros = run_setting(setting, args.epochs, out, **extra)
            results[setting] = (acc, zeros)
            elapsed = time.perf_counter() - start
            print(f"{setting:<28} {100 * acc:>8.2f}% {100 * zeros:>8.2f}% {elapsed:>6.0f}s",
                  flush=True)  # fmt: skip
    return results


if __name__ == "__main__":
    main()
