"""``spikeflow eval --early-exit CRITERION:THRESHOLD[,THRESHOLD...]``: the test split
run with early exit over time steps (:mod:`spikeflow.inference`), one pass per
threshold, with the accuracy, the mean steps and, with ``--operations`` and
``--neurobench``, the synaptic operations and NeuroBench's metrics of the steps actually
run; under the run's ``--amp`` autocast, as the full evaluation."""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from spikeflow.energy import E_AC, E_MAC, NeuroBenchCounter, OperationCounter
from spikeflow.errors import ConfigurationError
from spikeflow.inference import CRITERIA, ExitRule, early_exit
from spikeflow.inference.early_exit import Accumulate
from spikeflow.training.data import StaticLayout, to_time_major
from spikeflow.training.distributed import DistContext
from spikeflow.training.eval_counts import neurobench_fields
from spikeflow.training.loop import autocast_context

__all__ = ["evaluate_early_exit", "format_early_exit", "parse_early_exit"]


def parse_early_exit(
    text: str, accumulate: Accumulate = "mean", option: str = "--early-exit"
) -> list[ExitRule]:
    """``"confidence:0.9"`` or ``"entropy:0.05,0.1,0.2"`` as one rule per threshold
    (``accumulate``: the outputs' ``"mean"`` or ``"sum"`` over the steps so far).

    Raises:
        ConfigurationError: not ``CRITERION:THRESHOLD[,THRESHOLD...]`` with a known
            criterion and thresholds in ``[0, 1]``, naming ``option`` and the text.
    """
    criterion, sep, values = str(text).partition(":")
    if not sep or criterion not in CRITERIA or not values:
        raise ConfigurationError(
            f"{option}: expected CRITERION:THRESHOLD[,THRESHOLD...] with CRITERION one of "
            f"{', '.join(CRITERIA)} (e.g. confidence:0.9 or entropy:0.05,0.1), got {text!r}"
        )
    rules = []
    for part in values.split(","):
        try:
            threshold = float(part)
        except ValueError:
            raise ConfigurationError(
                f"{option} {text}: the threshold {part!r} is not a number"
            ) from None
        try:
            rules.append(ExitRule(criterion, threshold, accumulate))  # type: ignore[arg-type]
        except ConfigurationError as exc:
            raise ConfigurationError(f"{option} {text}: {exc}") from None
    return rules


@torch.no_grad()
def evaluate_early_exit(
    model: nn.Module,
    dataset: Dataset,
    rules: list[ExitRule],
    *,
    T: int,
    static: StaticLayout,
    batch_size: int,
    ctx: DistContext,
    workers: int = 0,
    progress: bool = False,
    operations: bool = False,
    spike_counts: bool = False,
    neurobench: bool = False,
    amp: str = "off",
) -> list[dict[str, Any]]:
    """For each rule, one pass over ``dataset`` with :func:`~spikeflow.inference.early_exit`
    (each process takes every ``world_size``-th sample; the sums are reduced): a dict
    with ``rule``, ``criterion``, ``threshold``, ``samples``, ``accuracy``,
    ``mean_steps``, ``exits`` (samples that stopped at each step, 1 to ``T``) and with
    ``operations`` the counts of the steps run per sample (``acs_per_sample``,
    ``macs_per_sample``, ``energy_per_sample_j``, as ``spikeflow eval --operations``);
    with ``neurobench``, ``neurobench``: NeuroBench's metrics of the steps run
    (:meth:`~spikeflow.energy.NeuroBenchCounter.stepped`: a sample's workload is that
    of its steps, each batch one batch; ClassificationAccuracy the early exit's) and
    ``neurobench_not_counted``. ``amp``: the run's autocast (``"off"``, ``"bf16"``,
    ``"fp16"``), as the full evaluation runs it; the outputs are accumulated in float32.
    ``operations`` and ``neurobench`` need one process (the counters are not reduced).

    Raises:
        ConfigurationError: ``operations`` or ``neurobench`` in a distributed ``ctx``.
    """
    if ctx.distributed and (operations or neurobench):
        asked = " and ".join(n for n, on in (("operations", operations),
                                              ("neurobench", neurobench)) if on)  # fmt: skip
        raise ConfigurationError(
            f"evaluate_early_exit: {asked} would count this process's samples only: the "
            f"counters are not reduced over the {ctx.world_size} processes (the accuracy "
            "and steps are); run the evaluation in one process"
        )
    indices = list(range(ctx.rank, len(dataset), ctx.world_size))  # type: ignore[arg-type]
    loader = DataLoader(dataset, batch_size=batch_size, sampler=indices, num_workers=workers,
                        pin_memory=ctx.device.type == "cuda")  # fmt: skip
    results = []
    for rule in rules:
        correct, steps, samples = 0.0, 0.0, 0.0
        exits = torch.zeros(T, dtype=torch.float64)
        counter = OperationCounter(model, spike_counts) if operations else None
        nb = NeuroBenchCounter(model) if neurobench else None
        bar = tqdm(total=len(loader), desc=f"early exit {rule}", leave=False,
                   disable=not (progress and ctx.is_main), dynamic_ncols=True)  # fmt: skip
        with (
            counter if counter is not None else contextlib.nullcontext(),
            nb if nb is not None else contextlib.nullcontext(),
            bar,
        ):
            for x, y in loader:
                x = to_time_major(x.to(ctx.device), T, static)
                with (
                    nb.stepped(len(y)) if nb is not None else contextlib.nullcontext(),
                    autocast_context(ctx.device, amp),
                ):
                    result = early_exit(model, x, rule,
                                        on_select=None if nb is None else nb.select)  # fmt: skip
                if nb is not None:
                    nb.score(result.predictions.cpu(), y)
                correct += float((result.predictions.cpu() == y).sum())
                steps += float(result.exit_steps.sum())
                samples += len(y)
                exits += torch.bincount(result.exit_steps.cpu() - 1, minlength=T).double()
                bar.update(1)
        correct, steps, samples, *counts = ctx.all_reduce_sum(
            [correct, steps, samples, *exits.tolist()]
        )
        entry: dict[str, Any] = {
            "rule": str(rule), "criterion": rule.criterion, "threshold": rule.threshold,
            "accumulate": rule.accumulate,
            "samples": int(samples), "accuracy": correct / samples,
            "mean_steps": steps / samples, "exits": [int(c) for c in counts],
        }  # fmt: skip
        if counter is not None:
            report = counter.report(max(1, len(indices)))
            entry["operations"] = {"acs_per_sample": report.acs, "macs_per_sample": report.macs,
                                   "energy_per_sample_j": report.energy()}  # fmt: skip
        if nb is not None:
            entry.update(neurobench_fields(nb.results()))
        results.append(entry)
    return results


def check_readout(readout: str) -> None:
    """Early exit reads the time-mean output (the rate readout)."""
    if readout != "rate":
        raise ConfigurationError(
            "--early-exit decides on the time-mean output (the rate readout); this run "
            f"reads its prediction with the {readout!r} readout"
        )


def format_early_exit(result: dict[str, Any]) -> list[str]:
    """The report lines of ``result["early_exit"]``, after the full evaluation's."""
    points = result["early_exit"]
    first = points[0]
    full_ops = result.get("operations")
    has_ops = "operations" in points[0]
    lines = [
        "",
        f"  early exit over time steps ({first['criterion']} of the time-{first['accumulate']} "
        f"output; T={result['T']})",
        f"  {'threshold':>10} {'accuracy':>9} {'mean steps':>11} {'exits per step':<24}"
        + (f" {'ACs/sample':>14} {'MACs/sample':>14} {'energy µJ':>10}" if has_ops else ""),
    ]
    for p in points:
        line = (
            f"  {p['threshold']:>10g} {100 * p['accuracy']:8.2f}% {p['mean_steps']:11.3f} "
            f"{' '.join(str(c) for c in p['exits']):<24}"
        )
        if has_ops:
            ops = p["operations"]
            line += (f" {ops['acs_per_sample']:14,.0f} {ops['macs_per_sample']:14,.0f} "
                     f"{ops['energy_per_sample_j'] * 1e6:10.4g}")  # fmt: skip
        lines.append(line)
    row = f"  {'all steps':>10} {100 * result['test_acc']:8.2f}% {result['T']:11.3f} {'':<24}"
    if has_ops and full_ops:
        row += (f" {full_ops['acs_per_sample']:14,.0f} {full_ops['macs_per_sample']:14,.0f} "
                f"{full_ops['energy_per_sample_j'] * 1e6:10.4g}")  # fmt: skip
    lines.append(row)
    if has_ops:
        lines.append(
            f"  (operations of the steps actually run; {E_AC * 1e12:g} pJ per AC, "
            f"{E_MAC * 1e12:g} pJ per MAC)"
        )
    if "neurobench" in first:
        lines += ["", "  NeuroBench's workload metrics of the steps actually run (per sample):",
                  f"  {'threshold':>10} {'act. sparsity':>13} {'membrane upd.':>14} "
                  f"{'Effective_ACs':>14} {'Effective_MACs':>14} {'Dense':>14}"]  # fmt: skip
        for p in [*points, {"threshold": None, "neurobench": result.get("neurobench")}]:
            nb = p["neurobench"]
            if nb is None:  # the full run's, when --neurobench ran it
                continue
            ops = nb["SynapticOperations"]
            label = "all steps" if p["threshold"] is None else f"{p['threshold']:g}"
            lines.append(
                f"  {label:>10} {nb['ActivationSparsity']:13.4f} {nb['MembraneUpdates']:14,.0f} "
                f"{ops['Effective_ACs']:14,.0f} {ops['Effective_MACs']:14,.0f} "
                f"{ops['Dense']:14,.0f}"
            )
    return lines
