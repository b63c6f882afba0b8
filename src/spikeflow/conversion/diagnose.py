"""Where a converted SNN departs from its ANN: the unevenness of each neuron layer.

An IF neuron with soft reset, threshold ``θ`` and initial membrane ``V0`` that receives
the inputs ``X[1..T]`` fires ``n = (ΣX + V0 − V[T]) / θ`` spikes. When its input is
spread evenly (a constant current) the final membrane stays in ``[0, θ)`` and

    n = clip(floor((ΣX + V0) / θ), 0, T)

which, for QCFS (``θ = λ``, ``V0 = λ/2``) at ``T = L``, is exactly the QCFS activation of
the mean input (methods.md 7.2). A neuron whose count differs got its input unevenly:
charge that arrived too late to be fired (``V[T] ≥ θ`` with fewer than ``T`` spikes) or
spikes fired before inhibition arrived (``V[T] < 0`` with spikes). That is the
"unevenness" error, the only conversion error left at ``T = L``: the layers between the
neurons are affine and run on every step, so the SNN's mean output is the ANN evaluated
on the neurons' mean outputs (tested), and the first neuron layer, whose input is
constant, is exact.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from spikeflow.conversion._checks import check_positive_int
from spikeflow.conversion.group import GroupNeuron
from spikeflow.conversion.neuron import ConversionIFNode
from spikeflow.conversion.snn import ConvertedSNN, TimeFolded, constant_input
from spikeflow.errors import ConfigurationError

__all__ = ["uneven_counts", "unevenness"]


def uneven_counts(neuron: nn.Module, x_seq: Tensor, out_seq: Tensor) -> Tensor:
    """Where the neuron's spike count differs from the count of its input spread evenly.

    Args:
        neuron: a :class:`ConversionIFNode` or :class:`GroupNeuron` (a group counts in
            units of ``θ/m``, at most ``T·m`` per run).
        x_seq: its input ``[T, B, ...]`` for one run from the initial state.
        out_seq: its output ``[T, B, ...]`` for that run.

    Returns:
        A boolean tensor ``[B, ...]``.
    """
    if isinstance(neuron, GroupNeuron):
        unit, cap = neuron.unit, x_seq.shape[0] * neuron.members
    elif isinstance(neuron, ConversionIFNode):
        unit, cap = neuron.v_threshold, x_seq.shape[0]
    else:
        raise ConfigurationError(
            f"uneven_counts needs a ConversionIFNode or GroupNeuron, got {type(neuron).__name__}"
        )
    total = x_seq.sum(0) + neuron.initial_membrane * unit
    even = torch.clamp(torch.floor(total / unit), 0, cap)
    count = torch.round(out_seq.sum(0) / unit)
    return count != even


@torch.no_grad()
def unevenness(snn: ConvertedSNN, x: Tensor, steps: int) -> dict[str, float]:
    """The fraction of neurons of each layer whose count is off by unevenness.

    Runs ``snn`` for ``steps`` steps on the constant input ``x`` ``[B, ...]`` and, for
    every neuron layer (IF or group), counts the neurons whose spike count differs from
    ``clip(floor((ΣX + V0)/θ), 0, T)``, the count of the same total input arriving evenly
    (:func:`uneven_counts`). With QCFS at ``T = L`` these are exactly the neurons whose
    mean output is not the QCFS activation of their mean input; the first layer (constant
    input) is always 0. Compute in float64 for an exact answer: in float32 a total that
    lies within rounding of a multiple of θ may be counted either way.

    Returns:
        ``{module path: fraction in [0, 1]}``, in call order.
    """
    if not isinstance(snn, ConvertedSNN):
        raise ConfigurationError(f"unevenness expects a ConvertedSNN, got {type(snn).__name__}")
    steps = check_positive_int(steps, "steps (T)")  # type: ignore[assignment]
    result: dict[str, float] = {}
    handles = []

    def record(name: str):
        def hook(module: TimeFolded, args: tuple[Tensor, ...], out: Tensor) -> None:
            assert module.steps is not None
            x_seq = args[0].unflatten(0, (module.steps, -1))
            off = uneven_counts(module.module, x_seq, out.unflatten(0, (module.steps, -1)))
            result[name] = float(off.double().mean()) if off.numel() else math.nan

        return hook

    for name, module in snn.body.named_modules():
        if isinstance(module, TimeFolded) and isinstance(
            module.module, (ConversionIFNode, GroupNeuron)
        ):
            handles.append(module.register_forward_hook(record(name or "<root>")))
    try:
        snn(constant_input(x, steps))
    finally:
        for handle in handles:
            handle.remove()
    return result
