"""What ``spikeflow eval --operations`` and ``--neurobench`` add to an evaluation, for
classification and detection runs alike: the counters' results as JSON-ready dicts and
the report lines that print them."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from spikeflow.energy import (
    E_AC,
    E_MAC,
    E_MUL,
    NeuronOperations,
    OperationReport,
    format_neurobench,
    simple_energy,
)
from spikeflow.energy.neurobench import NeuroBenchResults
from spikeflow.energy.report import format_neurons

__all__ = ["format_counts", "neurobench_fields", "operations_fields"]


def operations_fields(report: OperationReport, spike_counts: bool) -> dict[str, Any]:
    """``result["operations"]`` of an evaluation counted by an
    :class:`~spikeflow.energy.OperationCounter` (``report``: per sample evaluated)."""
    simple = simple_energy(report)
    return {
        "acs_per_sample": report.acs,
        "macs_per_sample": report.macs,
        "energy_per_sample_j": report.energy(),
        "spike_counts": spike_counts,
        "layers": [
            {
                "name": r.name,
                "kind": r.kind,
                "acs": r.acs,
                "macs": r.macs,
                "input_density": r.input_density,
                "weight_bits": r.weight_bits,
            }
            for r in report.layers
        ],
        "not_counted": report.not_counted,
        "neuron_energy_per_sample_j": report.neuron_energy(),
        "neurons": [asdict(n) for n in report.neurons],
        "neurons_not_counted": report.neurons_not_counted,
        "simple_energy": {**asdict(simple), "memory": simple.memory, "total": simple.total},
    }


def neurobench_fields(results: NeuroBenchResults) -> dict[str, Any]:
    """``result["neurobench"]`` and ``result["neurobench_not_counted"]`` of an
    evaluation counted by a :class:`~spikeflow.energy.NeuroBenchCounter`."""
    return {
        "neurobench": results.as_neurobench(),
        "neurobench_not_counted": {
            "MembraneUpdates": results.membrane_not_counted,
            "SynapticOperations": results.synops_not_counted,
        },
    }


def format_counts(result: dict[str, Any]) -> list[str]:
    """The report lines of ``result["operations"]`` and ``result["neurobench"]`` (none
    where the evaluation has neither)."""
    lines: list[str] = []
    if "operations" in result:
        lines += _format_operations(result["operations"], result["samples"])
    if "neurobench" in result:
        lines += ["", *(f"  {line}" for line in format_neurobench(result["neurobench"]))]
        for metric, names in result.get("neurobench_not_counted", {}).items():
            if names:
                lines.append(f"    not in {metric}: {', '.join(names)}")
    return lines


def _format_operations(ops: dict[str, Any], samples: int) -> list[str]:
    width = max([28, *(len(layer["name"]) for layer in ops["layers"])])
    lines = ["", f"  {'layer (synaptic operations)':<{width}} {'input density':>13} "
                 f"{'ACs/sample':>14} {'MACs/sample':>14}"]  # fmt: skip
    for layer in ops["layers"]:
        lines.append(
            f"  {layer['name']:<{width}} {layer['input_density']:13.4f} "
            f"{layer['acs'] / samples:14,.0f} {layer['macs'] / samples:14,.0f}"
        )
    lines.append(
        f"  per sample: {ops['acs_per_sample']:,.0f} ACs, {ops['macs_per_sample']:,.0f} "
        f"MACs; energy estimate {ops['energy_per_sample_j'] * 1e6:.4g} µJ "
        f"({E_AC * 1e12:g} pJ per AC, {E_MAC * 1e12:g} pJ per MAC, 45 nm)"
        + ("; whole-number inputs read as spike counts" if ops.get("spike_counts") else "")
    )
    simple = ops.get("simple_energy")
    if simple:
        lines.append(
            f"  with memory traffic (simple_energy, SpikingJelly's estimate_simple_energy):"
            f" {simple['total'] * 1e6:.4g} µJ per sample, of which weight and bias reads "
            f"{simple['parameters'] * 1e6:.4g} µJ and neuron state reads and writes "
            f"{simple['neuron_states'] * 1e6:.4g} µJ (3.12 pJ per bit, float32 words; "
            "quantized weights at their bits)"
        )
    if ops["not_counted"]:
        lines.append(f"  not counted: {', '.join(ops['not_counted'])}")
    neurons = [NeuronOperations(**n) for n in ops.get("neurons", [])]
    if neurons:
        lines += ["", *format_neurons(neurons, samples, indent="  ")]
        lines.append(
            f"  neuron updates per sample: {ops['neuron_energy_per_sample_j'] * 1e6:.4g} µJ "
            f"({E_AC * 1e12:g} pJ per addition or comparison, {E_MUL * 1e12:g} pJ per "
            "multiplication), not in the energy estimate above"
        )
    if ops.get("neurons_not_counted"):
        lines.append(f"  neuron updates not counted: {', '.join(ops['neurons_not_counted'])}")
    return lines
