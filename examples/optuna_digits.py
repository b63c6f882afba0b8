"""Tune a spiking network's learning rate, membrane time constant, neuron and T with Optuna.

The port of snnTorch's tutorial_optuna to spikeflow's training API: every trial trains
the ``plif_digits`` net on scikit-learn's 8x8 digits (1,797 real scans) with
:class:`~spikeflow.training.Trainer`; :class:`~spikeflow.training.optuna_pruning.
OptunaPruning` reports each epoch's test accuracy to the trial, and Optuna's median
pruner stops a trial whose accuracy falls below the median of the earlier trials' at
the same epoch. Needs the ``optuna`` and ``examples`` extras
(``pip install 'spikeflow[optuna,examples]'``).

    python examples/optuna_digits.py --trials 16 --epochs 6 --threads 1
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from spikeflow.training import TrainConfig, Trainer
from spikeflow.training.optuna_pruning import OptunaPruning, trial_pruned_exception


def objective(trial: Any, args: argparse.Namespace, runs: Path) -> float:
    """Train one trial's configuration; returns its last epoch's test accuracy."""
    neuron = trial.suggest_categorical("neuron", ["plif", "lif"])
    tau_name = "init_tau" if neuron == "plif" else "tau"
    config = TrainConfig(
        dataset="digits", model="plif_digits", neuron=neuron,
        neuron_kwargs={tau_name: trial.suggest_float("tau", 1.5, 8.0, log=True)},
        T=trial.suggest_int("T", 2, 8), lr=trial.suggest_float("lr", 1e-4, 1e-2, log=True),
        epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
        output_dir=str(runs / f"trial{trial.number:03d}"), progress=False, plots="off",
        threads=args.threads,
    )  # fmt: skip
    pruning = OptunaPruning(trial, monitor="test_acc")
    return Trainer(config, callbacks=[pruning], log=None).fit().final_test_acc


def main(argv: list[str] | None = None) -> Any:
    """Run the study; print and return it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0, help="the training runs' seed")
    parser.add_argument("--sampler-seed", type=int, default=0, help="Optuna's TPE sampler")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--output-dir", default=None, help="the trials' runs (default: a temp dir)")
    args = parser.parse_args(argv)
    trial_pruned_exception()  # the optuna extra, checked before anything runs
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=args.sampler_seed),
        # prune below the median of earlier trials, from the 3rd epoch of the 4th trial on
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2),
    )
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        runs = Path(args.output_dir or scratch)
        study.optimize(lambda trial: objective(trial, args, runs), n_trials=args.trials)
    seconds = time.perf_counter() - start
    states = optuna.trial.TrialState
    pruned = [t for t in study.trials if t.state == states.PRUNED]
    complete = [t for t in study.trials if t.state == states.COMPLETE]
    best = study.best_trial
    print(f"{len(study.trials)} trials in {seconds:.0f} s ({torch.get_num_threads()} threads): "
          f"{len(complete)} complete, {len(pruned)} pruned")  # fmt: skip
    print(f"best trial {best.number}: test accuracy {best.value:.4f} with {best.params}")
    return study


if __name__ == "__main__":
    main()
