"""Delayed read-out of a converted network: how many warm-up steps to skip.

A converted IF neuron starting at ``V0`` needs ``(θ − V0) / x̄`` steps of its mean input
``x̄`` before its first spike, and the layers after it wait for it in turn: the first
steps of a rate-coded SNN's output are the warm-up, not the answer. Reading out only the
steps from ``delay`` on (``snn.rate(x, T, delay=d)``) drops them.

:func:`estimate_delay_start` estimates ``delay`` from data as SpikingJelly 2.0's
``ann2snn.estimate_delay_start`` does: one probe pass in which each IF neuron is
replaced by its ANN form, ``clamp(x, 0, θ)`` (so every layer sees the clipped ANN's
activations), recording per neuron layer the ratio

    r = max_c (θ_c − V0_c) / max_c mean_c(relu(x))

(per layer: ``(θ − V0) / mean(relu(x))``; ``r = 0`` where the layer got no positive
input), averaged over the probe batches and summed over the layers; the estimate is
``ceil(Σ r)``. SpikingJelly keeps at least 4 read-out steps: when ``steps`` is below
``ceil(Σ r) + 4`` it warns and returns ``max(steps − 5, 0)``, else
``min(ceil(Σ r), steps − 1)``; so does this function, which returns the same number as
SpikingJelly's on the same converted network and batches (tested).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from itertools import islice
from typing import Any

import torch
from torch import Tensor, nn

from spikeflow.conversion._checks import check_positive_int
from spikeflow.conversion.calibrate import batch_input
from spikeflow.conversion.neuron import ConversionIFNode
from spikeflow.conversion.pooling import GatedMaxPool
from spikeflow.conversion.snn import ConvertedSNN, TimeFolded, constant_input
from spikeflow.errors import ConfigurationError

__all__ = ["MIN_READOUT_STEPS", "delay_ratio", "estimate_delay_start"]

#: Read-out steps the estimate leaves after the delay (SpikingJelly's rule).
MIN_READOUT_STEPS = 4


def delay_ratio(neuron: ConversionIFNode, x_seq: Tensor) -> float:
    """The steps ``neuron`` needs to charge from ``V0`` to ``θ`` on the mean of its input
    ``x_seq`` (``[T, B, C, ...]``, negatives counted as 0): ``(θ − V0) / mean(relu(x))``
    per layer; per channel the largest ``θ_c − V0_c`` over the largest channel mean.
    0 when no input is positive."""
    theta = torch.as_tensor(neuron.v_threshold, dtype=x_seq.dtype, device=x_seq.device)
    required = (theta - neuron.initial_membrane * theta).clamp_min(0)
    positive = x_seq.detach().clamp_min(0)
    if theta.dim() == 0:
        mean_input, required_max = positive.mean(), required
    else:  # θ is [C, 1, ...]: the channels are dim 2 of [T, B, C, ...]
        dims = [d for d in range(positive.dim()) if d != 2]
        mean_input, required_max = positive.mean(dim=dims).max(), required.max()
    if not bool(mean_input > 0):
        return 0.0
    return float(required_max / mean_input)


def _neurons(snn: ConvertedSNN) -> list[tuple[str, ConversionIFNode]]:
    """The IF neurons of ``snn``; any other kind of neuron is refused by name."""
    found = []
    for name, module in snn.body.named_modules():
        if not isinstance(module, TimeFolded):
            continue
        inner = module.module
        if isinstance(inner, ConversionIFNode):
            found.append((name, inner))
        elif not isinstance(inner, GatedMaxPool):
            raise ConfigurationError(
                f"estimate_delay_start: {name!r} is a {type(inner).__name__}; the delay "
                "estimate is defined for IF neurons (ConversionIFNode) only, not for group, "
                "multi-threshold or differential neurons"
            )
    return found


@torch.no_grad()
def estimate_delay_start(
    snn: ConvertedSNN,
    calibration_data: Tensor | Iterable[Any],
    steps: int,
    num_batches: int = 1,
) -> int:
    """How many of ``steps`` steps to skip before reading out ``snn`` (SpikingJelly's
    ``ann2snn.estimate_delay_start``; see the module docstring for the formula).

    Args:
        snn: a rate-coded :class:`~spikeflow.conversion.snn.ConvertedSNN` of IF neurons.
        calibration_data: a batch ``[B, ...]`` or an iterable of batches or of
            ``(input, label)`` pairs (a DataLoader), as for ``convert``.
        steps: the T the network will run; the estimate leaves at least 4 read-out
            steps (or warns and returns ``max(steps − 5, 0)``).
        num_batches: how many batches of ``calibration_data`` to probe with.

    Returns:
        ``delay`` in ``[0, steps)``: pass it to ``snn.rate(x, steps, delay=delay)``.

    Raises:
        ConfigurationError: ``snn`` is not a rate-coded ``ConvertedSNN`` of IF neurons,
            ``steps`` or ``num_batches`` is not an integer >= 1, ``calibration_data``
            gave no batch.
    """
    if not isinstance(snn, ConvertedSNN):
        raise ConfigurationError(
            f"estimate_delay_start expects a ConvertedSNN (from convert), got {type(snn).__name__}"
        )
    if snn.coding != "rate":
        raise ConfigurationError(
            "estimate_delay_start: a differentially coded network has no rate warm-up to skip"
        )
    steps = check_positive_int(steps, "steps (T)")  # type: ignore[assignment]
    num_batches = check_positive_int(num_batches, "num_batches")  # type: ignore[assignment]
    neurons = _neurons(snn)
    ratios: dict[int, list[float]] = {id(n): [] for _, n in neurons}

    def probe(module: nn.Module, args: tuple[Tensor, ...], _out: Tensor) -> Tensor:
        x_seq = args[0]
        ratios[id(module)].append(delay_ratio(module, x_seq))  # type: ignore[arg-type]
        theta = torch.as_tensor(module.v_threshold, dtype=x_seq.dtype, device=x_seq.device)
        clipped = torch.minimum(x_seq.clamp_min(0), theta)  # the clipped ANN activation
        return clipped if module.weighted else clipped / theta  # type: ignore[union-attr]

    batches = [calibration_data] if isinstance(calibration_data, Tensor) else calibration_data
    handles = [neuron.register_forward_hook(probe) for _, neuron in neurons]
    probed = 0
    try:
        for batch in islice(batches, num_batches):
            snn(constant_input(batch_input(batch), 1))
            probed += 1
    finally:
        for handle in handles:
            handle.remove()
    if probed == 0:  # SpikingJelly warns and returns 0: a silent "no delay"
        raise ConfigurationError(
            "estimate_delay_start: calibration_data gave no batch (an empty or exhausted "
            "iterable, e.g. a generator already consumed): nothing to estimate the delay on"
        )
    delay = sum(sum(values) / len(values) for values in ratios.values() if values)
    raw = math.ceil(delay) if math.isfinite(delay) else steps
    if steps < raw + MIN_READOUT_STEPS:
        warnings.warn(
            f"estimate_delay_start: the estimated delay {raw} leaves fewer than "
            f"{MIN_READOUT_STEPS} of T = {steps} steps to read out; returning "
            f"max(T - {MIN_READOUT_STEPS + 1}, 0) (SpikingJelly's rule): run more steps",
            RuntimeWarning,
            stacklevel=3,  # the caller's line (torch.no_grad wraps this function)
        )
        return max(steps - MIN_READOUT_STEPS - 1, 0)
    return min(raw, steps - 1)
