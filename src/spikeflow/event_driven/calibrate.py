"""Firing-rate initialisation of event-driven layers (the authors' code; methods.md 10).

Time-based gradients exist only at spikes, so a layer that starts silent never learns.
Before training, each event-driven layer, in forward order on one batch, gets the gain
of its weight standardisation scaled so that its neurons fire about
``spikes_per_neuron`` times per sequence: a geometric bisection of the scale in
``[0.1, 100]`` (to 1%) on the spike count of the last third of the steps, with the
authors' 30% slack. Later layers see the already scaled earlier ones. A layer that
the model calls more than once (shared weights) is calibrated once, on the input of its
first call; its later calls run with that scale.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
from torch import Tensor, nn

from spikeflow._checks import check_real
from spikeflow._compile_marks import eager_under_compile
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.event_driven.layers import EventDrivenLayer

__all__ = ["calibrate_event_driven"]


def _search_scale(layer: EventDrivenLayer, x: Tensor, spikes_per_neuron: float) -> float:
    steps = x.shape[0]
    start = steps * 2 // 3
    budget = spikes_per_neuron / steps * (steps - start) * 1.3
    low, high, mid = 0.1, 100.0, 1.0
    while high / low >= 1.01:
        mid = math.sqrt(high * low)
        layer.gain.mul_(mid)
        out = layer.forward(x)  # not layer(x): no hooks, so no recursion
        layer.gain.div_(mid)
        per_neuron = float(out[start:].sum()) / out[0].numel()
        if per_neuron > budget:
            high = mid
        else:
            low = mid
    return mid


@eager_under_compile
@torch.no_grad()
def calibrate_event_driven(
    model: nn.Module, x: Tensor, spikes_per_neuron: float = 1.0
) -> dict[str, float]:
    """Scale the gains of ``model``'s event-driven layers for a firing rate of about
    ``spikes_per_neuron`` per sequence on the batch ``x`` (see the module docstring).

    Runs ``model(x)`` once in eval mode (dropout off) and changes only the layers'
    ``gain``; a layer called more than once is calibrated at its first call. Under
    ``torch.distributed`` the processes' scales are averaged (geometric mean), so every
    copy of the model stays the same.

    Returns:
        ``{layer name: scale applied}`` in forward order.

    Raises:
        ConfigurationError: ``spikes_per_neuron`` is not a positive real, or the model
            has no event-driven layer.
        ShapeError: the batch has no samples.
    """
    spikes_per_neuron = check_real(
        "calibrate_event_driven: spikes_per_neuron", spikes_per_neuron, 0.0, low_open=True
    )
    names = {m: n for n, m in model.named_modules() if isinstance(m, EventDrivenLayer)}
    if not names:
        raise ConfigurationError(
            f"calibrate_event_driven: {type(model).__name__} has no event-driven layer"
        )
    scales: dict[str, float] = {}
    synced = dist.is_available() and dist.is_initialized()

    def scale_layer(layer: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> Tensor | None:
        assert isinstance(layer, EventDrivenLayer)
        if names[layer] in scales:  # a layer used again: calibrated at its first use
            return None
        if inputs[0].dim() < 2 or inputs[0].shape[1] == 0:
            raise ShapeError(
                f"calibrate_event_driven: the batch reaching {names[layer] or 'the model'} "
                f"has no samples (shape {tuple(inputs[0].shape)}); calibrate on a batch of "
                "real inputs"
            )
        scale = _search_scale(layer, inputs[0], spikes_per_neuron)
        if synced:
            log_scale = torch.tensor(math.log(scale), dtype=torch.float64,
                                     device=layer.gain.device)  # fmt: skip
            dist.all_reduce(log_scale)
            scale = math.exp(float(log_scale) / dist.get_world_size())
        layer.gain.mul_(scale)
        scales[names[layer]] = scale
        return layer.forward(inputs[0])

    # Other hooks on the layers (a spike monitor's) would see this pass as a training
    # step: they are set aside while it runs.
    hidden = {layer: (dict(layer._forward_pre_hooks), dict(layer._forward_hooks))
              for layer in names}  # fmt: skip
    for layer in names:
        layer._forward_pre_hooks.clear()
        layer._forward_hooks.clear()
    handles = [layer.register_forward_hook(scale_layer) for layer in names]
    was_training = model.training
    model.eval()
    try:
        model(x)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
        for layer, (pre_hooks, hooks) in hidden.items():
            layer._forward_pre_hooks.update(pre_hooks)
            layer._forward_hooks.update(hooks)
    return scales
