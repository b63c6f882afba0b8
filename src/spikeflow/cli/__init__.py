"""The ``spikeflow`` command: ``spikeflow train``, ``spikeflow eval``, ``spikeflow export``.

``spikeflow train`` with no arguments trains the PLIF network on scikit-learn's 8x8
digits (no download). Values come from the defaults, then ``--config FILE`` (TOML,
YAML or JSON), then the options given; the resolved config is written next to the
results as ``config.toml``. See ``docs/training.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from spikeflow.cli.kwargs import parse_kwargs
from spikeflow.cli.options import build_parser
from spikeflow.cli.restart import elastic_restart_checkpoint, refuse_rewind
from spikeflow.errors import SpikeflowError
from spikeflow.training.config import TABLE_FIELDS

__all__ = ["build_parser", "main", "parse_kwargs"]


_KWARG_OPTIONS = TABLE_FIELDS


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    values = {k: v for k, v in vars(args).items() if k not in ("command", "config", "resume")}
    for key in _KWARG_OPTIONS:
        if key in values:
            values[key] = parse_kwargs(values[key], "--" + key.replace("_", "-"))
    return values


def _train(args: argparse.Namespace) -> int:
    from spikeflow.training import checkpoint as ckpt
    from spikeflow.training.config import config_from_dict, decode_tables, load_config_file
    from spikeflow.training.detection_trainer import trainer_for
    from spikeflow.training.trainer import config_for_resume

    overrides = _overrides(args)
    from_file = decode_tables(load_config_file(args.config)) if hasattr(args, "config") else {}
    # The file's keys are checked first, for a resume too ("unknown config key(s) ...").
    file_config = config_from_dict(from_file) if from_file else None
    for key in _KWARG_OPTIONS:  # K=V options add to the file's tables, key by key
        if key in overrides and isinstance(from_file.get(key), dict):
            overrides[key] = {**from_file[key], **overrides[key]}
    payload, path = None, None
    if hasattr(args, "resume"):
        path = Path(args.resume)
        path = path / "last.pt" if path.is_dir() else path
        payload = ckpt.load_checkpoint(path)
    restarted = elastic_restart_checkpoint(path, payload, overrides, file_config)
    if restarted is not None:
        path, payload = restarted
    if payload is not None and path is not None:
        resume_dir = path.parent
        # The file's values are checked like the flags' (the command line first); K=V
        # tables add to the checkpoint's, so repeating a key with its value is no change.
        overrides = {**from_file, **overrides}
        saved = decode_tables(payload["config"])
        for key in _KWARG_OPTIONS:
            if isinstance(overrides.get(key), dict) and isinstance(saved.get(key), dict):
                overrides[key] = {**saved[key], **overrides[key]}
        overrides.setdefault("output_dir", str(resume_dir))
        config = config_for_resume(payload, overrides)
        refuse_rewind(path, payload, Path(config.output_dir), config.overwrite)
    else:
        resume_dir = None
        config = config_from_dict(overrides, file_config)
    result = trainer_for(config, resume=payload, resume_dir=resume_dir).fit()
    if result.interrupted:
        return 130
    if (
        result.history
        and int(os.environ.get("RANK", "0")) == 0
        and "test_map" in result.history[-1]
    ):
        last = result.history[-1]  # a detection run
        print(
            f"test COCO mAP: {last['test_map']:.4f}, mAP@0.5 {last['test_map_50']:.4f} (epoch "
            f"{last['epoch']}; best mAP {result.best_test_acc:.4f} at epoch "
            f"{result.best_epoch}); results in {result.output_dir}"
        )
    elif (
        result.history and int(os.environ.get("RANK", "0")) == 0 and "test_r2" in result.history[-1]
    ):
        last = result.history[-1]  # a regression run
        print(
            f"test loss: {last['test_loss']:.4f}, MSE {last['test_mse']:.4f}, MAE "
            f"{last['test_mae']:.4f}, R^2 {last['test_r2']:.4f} (epoch {last['epoch']}; lowest "
            f"test loss {result.best_test_acc:.4f} at epoch {result.best_epoch}); results in "
            f"{result.output_dir}"
        )
    elif result.history and int(os.environ.get("RANK", "0")) == 0:
        last = result.history[-1]
        print(
            f"test accuracy: {last['test_acc']:.4f} (epoch {last['epoch']}; best "
            f"{result.best_test_acc:.4f} at epoch {result.best_epoch}); results in "
            f"{result.output_dir}"
        )
    return 0


def _eval(args: argparse.Namespace) -> int:
    from spikeflow.training.evaluation import (
        check_json_destination,
        evaluate_checkpoint,
        format_evaluation,
        write_json_atomic,
    )

    if args.json:  # before the evaluation, which may take long
        check_json_destination(args.json, "--json")
    result = evaluate_checkpoint(
        args.checkpoint or args.run, data_dir=args.data_dir, device=args.device,
        batch_size=args.batch_size, workers=args.workers, test_samples=args.test_samples,
        progress=args.progress, operations=args.operations, spike_counts=args.spike_counts,
        neurobench=args.neurobench, early_exit=args.early_exit,
        early_exit_accumulate=args.early_exit_accumulate, energy=args.energy, ema=args.ema,
    )  # fmt: skip
    print(format_evaluation(result))
    if args.json:
        write_json_atomic(result, args.json, "--json")
    return 0


def _export(args: argparse.Namespace) -> int:
    import torch

    from spikeflow.interop.export_run import export_trained_run

    result = export_trained_run(
        args.run, args.to, args.out, data_dir=args.data_dir, dt=args.dt,
        dtype=torch.float64 if args.float64 else torch.float32, ema=args.ema,
    )  # fmt: skip
    what = "NIR nodes" if result.format == "nir" else "netx layers"
    print(
        f"wrote {result.path} ({result.format}, {result.nodes} {what}, input "
        f"{list(result.input_shape)} per step) from {result.checkpoint}"
    )
    return 0


_COMMANDS = {"train": _train, "eval": _eval, "export": _export}


@contextlib.contextmanager
def _saved_run_warnings(command: str) -> Iterator[None]:
    """Show each :class:`~spikeflow.models.common.SavedRunWarning` (a saved run's value
    read as the run read it) as ``spikeflow eval: warning: ...``, once, on rank 0."""
    from spikeflow.models.common import SavedRunWarning

    with warnings.catch_warnings():
        show = warnings.showwarning

        def shown(message: Any, category: Any, *args: Any, **kwargs: Any) -> None:
            if not issubclass(category, SavedRunWarning):
                show(message, category, *args, **kwargs)
            elif int(os.environ.get("RANK", "0")) == 0:
                print(f"spikeflow {command}: warning: {message}", file=sys.stderr)

        warnings.showwarning = shown
        yield


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 diverged, 2 bad input,
    130 stopped by Ctrl-C after saving a checkpoint)."""
    args = build_parser().parse_args(argv)
    from spikeflow.training.trainer import NonFiniteLossError

    try:
        with _saved_run_warnings(args.command):
            return _COMMANDS[args.command](args)
    except NonFiniteLossError as exc:
        print(f"spikeflow {args.command}: {exc}", file=sys.stderr)
        return 1
    except SpikeflowError as exc:
        print(f"spikeflow {args.command}: error: {exc}", file=sys.stderr)
        return 2
