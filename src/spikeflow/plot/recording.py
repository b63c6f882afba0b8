"""Record what chosen spiking layers do in one forward, to feed the plots.

:func:`record` hooks the layers (the spiking layers :mod:`spikeflow.training.monitors`
knows, found and named the same way), runs the model once without gradients, and
returns each layer's spikes (its whole output; for a neuron with an analog output,
:class:`~spikeflow.neurons.LIAFNode`, its spike decision ``spike_seq``, which the
monitors' claim records for the call) and, for neurons that record it
(:data:`~spikeflow.training.monitors.MEMBRANE_LAYER_TYPES`), its membrane after reset
(``v_seq``; the monitors' membrane claim turns ``store_v_seq`` on for the call and
restores it after).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from spikeflow.errors import DTypeError
from spikeflow.training.monitors import (
    MEMBRANE_LAYER_TYPES,
    _claim_record,
    _release_record,
    output_spikes,
    spike_layers,
    spike_source,
)

__all__ = ["LayerRecord", "record"]


@dataclass(frozen=True)
class LayerRecord:
    """One layer's activity in a recorded forward (detached, on the CPU)."""

    #: the layer's spikes, ``[T, B, ...]`` (the steps of single-step calls stacked): its
    #: output, or the spike decision of a neuron with an analog output (LIAF).
    spikes: Tensor
    #: the membrane after reset, same shape; ``None`` where the layer keeps none.
    v: Tensor | None
    #: the layer's threshold (a float or a tensor), ``None`` where it has none.
    threshold: float | Tensor | None


def _threshold(module: nn.Module) -> float | Tensor | None:
    theta = getattr(module, "v_threshold", None)
    if isinstance(theta, Tensor):
        return theta.detach().cpu().clone()
    return float(theta) if isinstance(theta, (int, float)) else None


@torch.no_grad()
def record(
    model: nn.Module,
    x: Tensor,
    layers: Iterable[str] | str | None = None,
    *,
    membrane: bool = True,
) -> dict[str, LayerRecord]:
    """Run ``model(x)`` once and return ``{layer name: LayerRecord}``.

    Args:
        model: the network; it runs in its current train/eval mode, without gradients.
        x: its input (time-major ``[T, B, ...]`` for multi-step networks).
        layers: names of spiking layers (as in ``model.named_modules()``; default every
            spiking layer, see :data:`~spikeflow.training.monitors.SPIKING_LAYER_TYPES`,
            that has spikes: one with an analog output that records none is left out).
        membrane: also record the membrane of the neurons that keep one.

    Returns:
        per layer that ran, in the order of ``layers``: its spikes ``[T, B, ...]``, its
        membrane (or ``None``) and its threshold. A layer called once per step
        (single-step neurons) gets its steps stacked along a new time axis; a
        multi-step layer called several times gets its calls concatenated in time.

    Raises:
        ConfigurationError: a name that is not a spiking layer of ``model`` (the message
            lists the ones it has), or one with an analog output and no spikes recorded.
    """
    if not isinstance(x, Tensor):
        raise DTypeError(f"x must be a torch.Tensor (the model's input), got {type(x).__name__}")
    chosen = spike_layers(model, layers, "record")
    outputs: dict[str, list[Tensor]] = {}
    membranes: dict[str, list[Tensor]] = {}
    handles = []
    claimed: list[tuple[nn.Module, str]] = []

    def make_hook(name: str, multi: bool) -> Any:
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            if spike_source(module) == "spike_seq":  # [T, B, ...], [1, B, ...] single-step
                if not isinstance(module.spike_seq, Tensor):
                    return
                outputs.setdefault(name, []).append(module.spike_seq.detach().cpu())
            elif isinstance(output, Tensor) and output.dim() >= (2 if multi else 1):
                out = output_spikes(module, output.detach())  # (DSR's: 1, not θ)
                outputs.setdefault(name, []).append((out if multi else out.unsqueeze(0)).cpu())
            else:
                return
            v = getattr(module, "v_seq", None) if membrane else None
            if isinstance(v, Tensor):  # [T, B, ...], or [1, B, ...] in single-step mode
                membranes.setdefault(name, []).append(v.detach().cpu())

        return hook

    try:
        for name, module in chosen.items():
            multi = getattr(module, "step_mode", "m") == "m"
            handles.append(module.register_forward_hook(make_hook(name, multi)))
            # After the hook: the records are dropped after it reads them.
            if spike_source(module) == "spike_seq":
                _claim_record(module, "spike_seq")
                claimed.append((module, "spike_seq"))
            if membrane and isinstance(module, MEMBRANE_LAYER_TYPES):
                _claim_record(module, "v_seq")
                claimed.append((module, "v_seq"))
        model(x)
    finally:
        for handle in handles:
            handle.remove()
        for module, attribute in claimed:
            _release_record(module, attribute)
    result = {}
    for name, module in chosen.items():
        if name not in outputs:
            continue
        v = membranes.get(name)
        result[name] = LayerRecord(
            spikes=torch.cat(outputs[name]),
            v=torch.cat(v) if v and len(v) == len(outputs[name]) else None,
            threshold=_threshold(module),
        )
    return result
