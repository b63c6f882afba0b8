"""``spikeflow eval``: a checkpoint's model on the test split of its dataset."""

from __future__ import annotations

import contextlib
import json
import math
import os
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from spikeflow.data.cache import atomic_write_bytes
from spikeflow.energy import NeuroBenchCounter, OperationCounter
from spikeflow.errors import ConfigurationError
from spikeflow.training.build import build_model
from spikeflow.training.checkpoint import load_checkpoint, load_weights
from spikeflow.training.config import TrainConfig, config_from_dict, resolve, resolved_readout
from spikeflow.training.data import build_datasets, even_subset, static_layout
from spikeflow.training.detection_eval import (
    evaluate_detection_checkpoint,
    format_detection_evaluation,
    refuse_early_exit,
)
from spikeflow.training.detection_task import detection_task
from spikeflow.training.distributed import DistContext, pick_device
from spikeflow.training.early_exit_eval import (
    check_readout,
    evaluate_early_exit,
    format_early_exit,
    parse_early_exit,
)
from spikeflow.training.eval_counts import format_counts, neurobench_fields, operations_fields
from spikeflow.training.loop import evaluate
from spikeflow.training.neuromc_eval import ENERGY_MODELS, format_neuromc, price_training_step

__all__ = [
    "check_json_destination",
    "evaluate_checkpoint",
    "find_checkpoint",
    "format_evaluation",
    "write_json_atomic",
]


def find_checkpoint(path: str | os.PathLike) -> Path:
    """The checkpoint file ``path`` names: ``path`` itself, or for a run folder its
    ``best.pt`` if there is one, else its ``last.pt``.

    Raises:
        ConfigurationError: ``path`` not a str or path; a folder that holds neither (a
            missing file is left to :func:`~spikeflow.training.checkpoint.load_checkpoint`,
            which names it).
    """
    if not isinstance(path, (str, os.PathLike)):
        raise ConfigurationError(
            f"checkpoint path must be a str or os.PathLike (a checkpoint file or run "
            f"folder), got {type(path).__name__} {path!r:.80}"
        )
    path = Path(path)
    if not path.is_dir():
        return path
    for name in ("best.pt", "last.pt"):
        if (path / name).is_file():
            return path / name
    raise ConfigurationError(
        f"checkpoint {path} is a folder without best.pt or last.pt: pass a run folder "
        "written by spikeflow train, or a checkpoint file"
    )


def read_run_checkpoint(
    path: str | os.PathLike, data_dir: str | None = None
) -> tuple[Path, dict[str, Any], TrainConfig]:
    """The checkpoint file ``path`` names (:func:`find_checkpoint`), its payload, and
    the run's configuration as saved, its ``data_dir`` replaced by ``data_dir`` if given.

    Raises:
        ConfigurationError: as :func:`find_checkpoint` and
            :func:`~spikeflow.training.checkpoint.load_checkpoint`.
    """
    file = find_checkpoint(path)
    payload = load_checkpoint(file)
    config = config_from_dict(payload["config"])
    if data_dir is not None:
        config = replace(config, data_dir=data_dir)
    return file, payload, config


def evaluate_checkpoint(
    path: str | os.PathLike,
    *,
    data_dir: str | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    workers: int = 0,
    test_samples: int | str | None = None,
    progress: bool = False,
    operations: bool = False,
    spike_counts: bool = False,
    neurobench: bool = False,
    early_exit: str | None = None,
    early_exit_accumulate: str = "mean",
    energy: str | None = None,
    ema: bool = False,
) -> dict[str, Any]:
    """Loss, accuracy, mean firing rate and per-layer statistics of the model saved in the
    checkpoint ``path``, on the test split of the dataset it was trained on.

    Args:
        path: a ``last.pt`` or ``best.pt`` written by ``spikeflow train``, or its run
            folder: then its ``best.pt`` if there is one, else its ``last.pt``
            (:func:`find_checkpoint`).
        data_dir: where the run's dataset is now (default: the run's ``data_dir``).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...
        batch_size: the evaluation batch (default: the run's batch size).
        workers: DataLoader worker processes.
        test_samples: ``None``: the samples the run tested on (its ``test_samples``);
            ``"all"``: the whole test split; an int: that many, spread over the split.
        progress: show a progress bar.
        operations: also count the synaptic operations (:mod:`spikeflow.energy`).
        spike_counts: with ``operations``, read whole-number inputs as that many spikes
            (:class:`~spikeflow.energy.OperationCounter`).
        neurobench: also compute NeuroBench's metrics (:mod:`spikeflow.energy.neurobench`).
        early_exit: ``"CRITERION:THRESHOLD[,THRESHOLD...]"`` (``confidence:0.9``,
            ``entropy:0.05,0.1``): also run the test samples with early exit over time
            steps, one pass per threshold (:mod:`spikeflow.training.early_exit_eval`).
        early_exit_accumulate: ``"mean"`` (SEENN's and DT-SNN's papers) or ``"sum"``
            (SEENN's code) of the outputs of the steps so far.
        energy: ``"neuromc"``: also price one training step (forward, backward and the
            run's optimizer update) of the model on the first batch of the test samples
            on NeuroMC's accelerator (:mod:`spikeflow.training.neuromc_eval`).
        ema: evaluate the moving average of the weights a ``--model-ema`` run kept
            (the checkpoint's ``model_ema``) instead of its trained weights.

    Returns:
        A dict with ``checkpoint`` (the file evaluated), ``run_folder`` (``path`` when it is
        a run folder, else ``None``), ``dataset``, ``model``, ``T``, ``epoch`` (epochs
        done), ``epochs`` (the run's total), ``samples``, ``split_samples`` (the whole
        split's size), ``samples_chosen_by`` (``"run"``: the run's own ``test_samples``;
        ``"argument"``: ``test_samples`` given here), ``weights`` (``"ema"`` or
        ``"model"``), ``test_loss``, ``test_acc``,
        ``test_rate``, ``amp`` (the run's ``--amp``: the model runs under that autocast,
        early exit too, as the run trained and tested) and ``layers`` (one dict per spiking
        layer: ``name``, ``firing_rate``, ``spikes``, ``spikes_per_sample``, ``neurons``,
        ``v_mean``, ``v_std``); with ``operations``, ``operations``: ``acs_per_sample``,
        ``macs_per_sample``, ``energy_per_sample_j``, ``layers`` (``name``, ``kind``,
        ``acs``, ``macs``, ``input_density``, counts summed over the samples; the products
        between activations as rows of kind ``products``), ``not_counted``,
        ``neuron_energy_per_sample_j`` and ``neurons`` (the declared neurons' state updates:
        :class:`~spikeflow.energy.NeuronOperations`' fields, summed over the samples; not in
        ``energy_per_sample_j``) and ``neurons_not_counted``; with ``neurobench``,
        ``neurobench``: NeuroBench's metrics by its names
        (:meth:`~spikeflow.energy.NeuroBenchResults.as_neurobench`; its
        ClassificationAccuracy is ``test_acc``, the run's readout's) and
        ``neurobench_not_counted``; with ``early_exit``, ``early_exit``: one dict per
        threshold (:func:`~spikeflow.training.early_exit_eval.evaluate_early_exit`; its
        ``operations`` with ``operations``, NeuroBench's metrics of the steps run as
        ``neurobench`` with ``neurobench``); with ``energy="neuromc"``, ``neuromc``
        (:func:`~spikeflow.training.neuromc_eval.price_training_step`).

    The model is built as the run built it: a string an older spikeflow saved for a bool
    argument (``detach_reset = "False"``) is read by its truth value, with a
    :class:`~spikeflow.models.common.SavedRunWarning` (see :func:`build_model`).

    Raises:
        ConfigurationError: a bad ``test_samples``, ``workers`` or ``batch_size``, a
            missing or foreign checkpoint, or a dataset that cannot be found.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ConfigurationError(f"workers must be an integer >= 0, got {workers!r}")
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        raise ConfigurationError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if spike_counts and not operations:
        raise ConfigurationError("spike_counts (--spike-counts) needs operations (--operations)")
    if early_exit is None and early_exit_accumulate != "mean":
        raise ConfigurationError(
            "early_exit_accumulate (--early-exit-accumulate) needs early_exit (--early-exit)"
        )
    if energy is not None and energy not in ENERGY_MODELS:
        raise ConfigurationError(
            f"energy (--energy) must be one of {', '.join(ENERGY_MODELS)}, got {energy!r}"
        )
    if energy == "neuromc" and ema:
        raise ConfigurationError(
            "--energy neuromc with --ema: NeuroMC prices a training step of the trained "
            "weights with the run's optimizer state, and the moving average is never "
            "trained (its weights are not the ones that state belongs to): leave out --ema"
        )
    rules = None if early_exit is None else parse_early_exit(early_exit, early_exit_accumulate)  # type: ignore[arg-type]
    run_folder = Path(path) if Path(path).is_dir() else None
    path, payload, config = read_run_checkpoint(path, data_dir)
    if test_samples is None:
        count = config.test_samples
    elif test_samples == "all":
        count = None
    elif isinstance(test_samples, int) and not isinstance(test_samples, bool) and test_samples > 0:
        count = test_samples
    else:
        raise ConfigurationError(
            f"test_samples must be a positive integer or 'all', got {test_samples!r}"
        )
    chosen_by = "run" if test_samples is None else "argument"
    if detection_task(config.dataset) is not None:  # a detection run: COCO mAP
        if ema:
            raise ConfigurationError("--ema: detection runs keep no model EMA")
        if rules:
            refuse_early_exit()
        if energy:
            raise ConfigurationError(
                "--energy: not priced for detection runs yet (NeuroMC prices a training "
                "step with a classification run's loss on labels, not the detector's loss "
                "on boxes); --operations and --neurobench count a detection run's inference"
            )
        result = evaluate_detection_checkpoint(
            path, payload, config, count=count, device=device, batch_size=batch_size,
            chosen_by=chosen_by, workers=workers, progress=progress, operations=operations,
            spike_counts=spike_counts, neurobench=neurobench,
        )  # fmt: skip
        return {**result, "run_folder": None if run_folder is None else str(run_folder)}
    from spikeflow.training.regression_task import regression_task

    if regression_task(config.dataset) is not None:  # a regression run: MSE, MAE, R^2
        given = [name for name, used in (("--early-exit", rules),
                 ("--energy", energy), ("--operations", operations),
                 ("--neurobench", neurobench)) if used]  # fmt: skip
        if given:
            raise ConfigurationError(
                f"{', '.join(given)}: not for regression runs yet (spikeflow eval reports "
                "their loss, MSE, MAE and R^2)"
            )
        from spikeflow.training.regression_trainer import evaluate_regression_checkpoint

        result = evaluate_regression_checkpoint(
            path, payload, config, count=count, device=device, batch_size=batch_size,
            chosen_by=chosen_by, workers=workers, progress=progress, ema=ema,
        )  # fmt: skip
        return {**result, "run_folder": None if run_folder is None else str(run_folder)}
    if energy:
        from spikeflow.training.neuromc_eval import refuse_unpriced_training

        refuse_unpriced_training(config)
    config = resolve(replace(config, test_samples=None))
    _, full_test_set, info = build_datasets(config, with_train=False)
    test_set = even_subset(full_test_set, count)
    ctx = DistContext(device=pick_device(device))
    model = build_model(config, info, saved=True).to(ctx.device)  # read as the run was
    load_weights(model, payload, path, ema=ema)
    readout = resolved_readout(config)
    if rules:
        check_readout(readout)
    counter = OperationCounter(model, spike_counts) if operations else contextlib.nullcontext()
    nb = NeuroBenchCounter(model) if neurobench else contextlib.nullcontext()
    with counter, nb:
        sums, rate, layers = evaluate(
            model, test_set, _loss(config), T=config.T,
            static=static_layout(model, info, config.T),  # type: ignore[arg-type]
            batch_size=batch_size or config.batch_size, ctx=ctx, amp=config.amp,
            workers=workers, progress=progress, readout=readout,
        )  # fmt: skip
    extra: dict[str, Any] = {}
    if operations:
        report = counter.report(int(sums.count))  # type: ignore[union-attr]
        extra["operations"] = operations_fields(report, spike_counts)
    if neurobench:
        nb_results = replace(nb.results(), classification_accuracy=sums.accuracy)  # type: ignore[union-attr]
        extra.update(neurobench_fields(nb_results))
    if rules:
        extra["early_exit"] = evaluate_early_exit(
            model, test_set, rules, T=config.T,
            static=static_layout(model, info, config.T),  # type: ignore[arg-type]
            batch_size=batch_size or config.batch_size, ctx=ctx, workers=workers,
            progress=progress, operations=operations, spike_counts=spike_counts,
            neurobench=neurobench, amp=config.amp,
        )  # fmt: skip
    if energy == "neuromc":
        extra["neuromc"] = price_training_step(
            model, test_set, config, _loss(config), static_layout(model, info, config.T),
            batch_size=batch_size or config.batch_size, device=ctx.device,
            saved_optimizer=payload.get("optimizer"), source=str(path),
        )  # fmt: skip
    return {
        "checkpoint": str(path),
        "run_folder": None if run_folder is None else str(run_folder),
        "recorded_best_epoch": _recorded_best_epoch(run_folder, path, payload),
        **run_fields(config, payload, sums.count, full_test_set, chosen_by),
        "weights": "ema" if ema else "model",
        "test_loss": sums.mean_loss,
        "test_acc": sums.accuracy,
        "readout": readout,
        "test_rate": rate,
        "amp": config.amp,
        "layers": [asdict(s) for s in layers],
        **extra,
    }


def run_fields(
    config: Any, payload: dict[str, Any], samples: float, split: Any, chosen_by: str
) -> dict[str, Any]:
    """The fields every ``spikeflow eval`` result (classification or detection) has
    about the run and its test samples: the run's dataset, model, T, the checkpoint's
    epoch of the run's epochs, the ``samples`` evaluated of the ``split`` (a dataset)
    and who chose how many (``chosen_by``: ``"run"``, its ``test_samples``, or
    ``"argument"``)."""
    return {
        "dataset": config.dataset,
        "model": config.model,
        "T": config.T,
        "epoch": int(payload["epoch"]),
        "epochs": config.epochs,
        "samples": int(samples),
        "split_samples": len(split),
        "samples_chosen_by": chosen_by,
    }


def format_evaluation(result: dict[str, Any]) -> str:
    """The report ``spikeflow eval`` prints for a result of :func:`evaluate_checkpoint`."""
    if "map" in result:  # a detection run's
        return format_detection_evaluation(result)
    if "test_r2" in result:  # a regression run's
        from spikeflow.training.regression_trainer import format_regression_evaluation

        return format_regression_evaluation(result)
    samples, split = result["samples"], result["split_samples"]
    if samples == split:
        which = f"all {split} test samples"
    elif result.get("samples_chosen_by", "run") == "run":
        which = (
            f"{samples} of the {split} test samples, as the run tested (--test-samples all: "
            "the whole split)"
        )
    else:
        which = f"{samples} of the {split} test samples (--test-samples)"
    lines = []
    if result.get("run_folder"):
        name = Path(result["checkpoint"]).name
        why = (
            "the epoch with the highest test accuracy; pass its last.pt for the last epoch"
            if name == "best.pt"
            else "it holds no best.pt"
        )
        lines.append(f"{result['run_folder']} is a run folder: evaluating its {name} ({why})")
        recorded = result.get("recorded_best_epoch")
        if recorded is not None:
            lines.append(
                f"note: this best.pt holds epoch {result['epoch']}, but the run's last.pt "
                f"records epoch {recorded} as its best (a rewind with --overwrite keeps a "
                "best.pt of the epochs it discarded; a process stopped between writing "
                "best.pt and last.pt leaves best.pt ahead)"
            )
    readout = result.get("readout", "rate")
    how = "" if readout == "rate" else f" ({readout} readout)"
    lines += [
        f"{result['checkpoint']}: {result['model']} (T={result['T']}) after epoch "
        f"{result['epoch']} of {result['epochs']}, {result['dataset']} test split"
        + ("; the model EMA's weights (--ema)" if result.get("weights") == "ema" else ""),
        f"  {which}"
        + (
            ""
            if result.get("amp", "off") == "off"
            else f"; under {result['amp']} autocast, as the run trained (--amp {result['amp']})"
        ),
        f"  loss {result['test_loss']:.4f}   accuracy {100 * result['test_acc']:.2f}%{how}   "
        f"mean firing rate {result['test_rate']:.4f} spikes/neuron/step",
        "",
        f"  {'spiking layer':<24} {'rate':>7} {'spikes/sample':>14} {'neurons':>8} "
        f"{'v mean':>8} {'v std':>7}",
    ]
    for layer in result["layers"]:
        lines.append(
            f"  {layer['name']:<24} {layer['firing_rate']:7.4f} "
            f"{layer['spikes_per_sample']:14.1f} {layer['neurons']:8d} "
            f"{_membrane_stat(layer['v_mean'], '+8.3f')} {_membrane_stat(layer['v_std'], '7.3f')}"
        )
    lines += format_counts(result)
    if "neuromc" in result:
        lines += format_neuromc(result["neuromc"])
    if "early_exit" in result:
        lines += format_early_exit(result)
    lines.append(f"test accuracy: {result['test_acc']:.4f}")
    return "\n".join(lines)


def _membrane_stat(value: float | None, spec: str) -> str:
    """A membrane statistic of the eval table in the format ``spec``, or ``-`` in its
    width where the layer has no membrane (a :class:`~spikeflow.neurons.SpikeTap`, a
    parallel neuron: NaN, or ``None`` from JSON)."""
    if value is None or not math.isfinite(value):
        return f"{'-':>{int(spec.lstrip('+').split('.')[0])}}"
    return format(value, spec)


def _recorded_best_epoch(
    run_folder: Path | None, path: Path, payload: dict[str, Any]
) -> int | None:
    """The best epoch the run folder's ``last.pt`` records, where it is not the epoch of
    the ``best.pt`` evaluated (one kept from epochs a rewind discarded); else ``None``."""
    last = None if run_folder is None else run_folder / "last.pt"
    if last is None or path.name != "best.pt" or not last.is_file():
        return None
    try:
        recorded = load_checkpoint(last).get("best", {}).get("epoch")
    except ConfigurationError:  # a damaged last.pt says nothing about best.pt
        return None
    return None if recorded in (None, int(payload["epoch"])) else int(recorded)


def _loss(config: Any) -> Any:
    """The run's loss as it logged it (:func:`~spikeflow.training.run_checks.logged_loss`:
    an online or e-prop run's applied per step, a truncated-BPTT run's per window, a
    DECOLLE run's last layer's local loss), as its trainer evaluates it."""
    from spikeflow.losses import get_loss
    from spikeflow.training.run_checks import logged_loss

    return logged_loss(config, get_loss(config.loss, **config.loss_kwargs))


def check_json_destination(path: str | os.PathLike, option: str = "--json") -> Path:
    """Check that a JSON file can be written to ``path`` (its folder exists and is
    writable, and ``path`` is not a folder), before the work that produces it.

    Raises:
        ConfigurationError: naming ``option``, ``path`` and what is wrong.
    """
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise ConfigurationError(f"{option} {path}: the folder {folder} {what}")
    if path.is_dir():
        raise ConfigurationError(f"{option} {path} is a folder; give a file name")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigurationError(f"{option} {path}: the folder {folder} is not writable")
    return path


def _json_safe(data: Any) -> Any:
    """``data`` with every non-finite float (NaN, ±inf) replaced by ``None``, inside
    dicts, lists and tuples too: JSON (RFC 8259) has no NaN, so strict parsers (jq,
    JavaScript's ``JSON.parse``) reject Python's bare ``NaN`` token."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {key: _json_safe(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [_json_safe(value) for value in data]
    return data


def write_json_atomic(data: Any, path: str | os.PathLike, option: str = "--json") -> Path:
    """Write ``data`` as indented JSON to ``path`` atomically: to a temporary file in
    the same folder, then moved into place with ``os.replace`` (a failed write leaves
    any earlier ``path`` as it was and removes the temporary file). Non-finite floats
    are written as ``null`` (see ``_json_safe``), so the file is strict JSON.

    Raises:
        ConfigurationError: the file cannot be written (naming ``option`` and ``path``).
    """
    path = Path(path)
    text = json.dumps(_json_safe(data), indent=2, allow_nan=False)
    try:
        atomic_write_bytes(path, (text + "\n").encode("utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"{option} {path}: cannot write it: {exc}") from exc
    return path
