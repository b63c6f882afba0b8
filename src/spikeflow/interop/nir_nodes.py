"""What one module becomes in a NIR graph: the node builders of :mod:`.nir_export`.

Each builder takes a module and the export's :class:`_Context` (the ``nir`` package,
``dt``, the soft-reset policy, and the per-sample shapes recorded by one probe run,
:func:`_record_shapes`) and returns that module's NIR node: Linear / Affine, Conv1d /
Conv2d, AvgPool2d / SumPool2d, Flatten, Scale, Threshold, Delay and the neurons
(:func:`~spikeflow.interop.nir_neurons.neuron_to_nir`). Tracing the network and joining
the nodes (sums, recurrent cycles, nesting) is :mod:`.nir_export`'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from spikeflow.errors import ConfigurationError
from spikeflow.interop.nir_modules import Scale, Threshold
from spikeflow.interop.nir_neurons import full_array, neuron_to_nir
from spikeflow.layers import Delay

# Probe sizes: a per-step tensor leads with B (3) or T*B (6), a sequence with T (2).
_PROBE_T, _PROBE_B = 2, 3


@dataclass
class _Context:
    nir: Any
    dt: float
    soft_reset: str
    shapes: dict[int, tuple[tuple[int, ...], tuple[int, ...]]]
    names: dict[int, str] = field(default_factory=dict)
    dtype: torch.dtype = torch.float32  # of the network (the Scale nodes export adds)

    def shape_in(self, module: nn.Module) -> tuple[int, ...]:
        if id(module) not in self.shapes:
            raise ConfigurationError(
                f"'{self.names.get(id(module), type(module).__name__)}' "
                f"({type(module).__name__}) did not run on the sample input, so its shape "
                "is unknown; NIR export needs every exported module to be used"
            )
        return self.shapes[id(module)][0]

    def shape_out(self, module: nn.Module) -> tuple[int, ...]:
        self.shape_in(module)
        return self.shapes[id(module)][1]


def _step_shape(x: Any) -> tuple[int, ...] | None:
    if not isinstance(x, Tensor) or x.dim() < 1:
        return None
    if x.shape[0] == _PROBE_T and x.dim() >= 2:
        return tuple(x.shape[2:])
    if x.shape[0] in (_PROBE_B, _PROBE_T * _PROBE_B):
        return tuple(x.shape[1:])
    return None


def _record_shapes(net: nn.Module, sample_input: Tensor) -> dict[int, Any]:
    """Per-sample input and output shapes of every module, from one probe run."""
    shapes: dict[int, Any] = {}

    def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if id(module) in shapes or not args:
            return
        shape_in, shape_out = _step_shape(args[0]), _step_shape(output)
        if shape_in is not None and shape_out is not None:
            shapes[id(module)] = (shape_in, shape_out)

    handles = [m.register_forward_hook(hook) for m in net.modules()]
    probe = sample_input.new_zeros((_PROBE_T, _PROBE_B, *sample_input.shape[2:]))
    try:
        with torch.no_grad():
            net(probe)
    finally:
        for handle in handles:
            handle.remove()
    return shapes


# -- stateless layers -------------------------------------------------------------------


def _linear(module: nn.Linear, ctx: _Context) -> Any:
    shape = ctx.shapes[id(module)][0] if id(module) in ctx.shapes else None
    if shape is not None and len(shape) != 1:  # NIR's Linear/Affine maps one vector per sample
        raise ConfigurationError(
            f"'{ctx.names.get(id(module), '')}' ({type(module).__name__}): NIR's Linear and "
            f"Affine take a flat input [{module.in_features}] per sample, this one gets "
            f"{list(shape)}; flatten it first (layers.Flatten)"
        )
    weight = module.weight.detach().cpu().numpy()
    if module.bias is None:
        return ctx.nir.Linear(weight=weight)
    return ctx.nir.Affine(weight=weight, bias=module.bias.detach().cpu().numpy())


def _conv(module: nn.Conv1d | nn.Conv2d, ctx: _Context) -> Any:
    name = ctx.names.get(id(module), "")
    if module.padding_mode != "zeros":
        raise ConfigurationError(
            f"'{name}' ({type(module).__name__}): NIR convolutions pad with zeros, got "
            f"padding_mode={module.padding_mode!r}"
        )
    weight = module.weight.detach().cpu().numpy()
    bias = (
        module.bias.detach().cpu().numpy()
        if module.bias is not None
        else np.zeros(weight.shape[0], dtype=weight.dtype)
    )
    spatial = ctx.shape_in(module)[1:]
    padding = module.padding
    if isinstance(module, nn.Conv1d):
        node = ctx.nir.Conv1d(
            input_shape=int(spatial[0]),
            weight=weight,
            stride=int(module.stride[0]),
            padding=padding if isinstance(padding, str) else int(padding[0]),
            dilation=int(module.dilation[0]),
            groups=int(module.groups),
            bias=bias,
        )
    else:
        node = ctx.nir.Conv2d(
            input_shape=tuple(int(s) for s in spatial),
            weight=weight,
            stride=tuple(module.stride),
            padding=padding if isinstance(padding, str) else tuple(padding),
            dilation=tuple(module.dilation),
            groups=int(module.groups),
            bias=bias,
        )
    node.metadata = {"spikeflow_bias": module.bias is not None}
    return node


def _pair(value: int | tuple[int, ...]) -> np.ndarray:
    return np.array([value, value] if isinstance(value, int) else list(value), dtype=np.int64)


def _avg_pool(module: nn.AvgPool2d, ctx: _Context) -> Any:
    name = ctx.names.get(id(module), "")
    if module.ceil_mode:
        raise ConfigurationError(f"'{name}' (AvgPool2d): NIR pooling has no ceil_mode=True")
    padded = bool(np.any(_pair(module.padding)))
    args = {
        "kernel_size": _pair(module.kernel_size),
        "stride": _pair(module.stride if module.stride is not None else module.kernel_size),
        "padding": _pair(module.padding),
    }
    if module.divisor_override == 1:
        return ctx.nir.SumPool2d(**args)
    if module.divisor_override is not None or (padded and not module.count_include_pad):
        raise ConfigurationError(
            f"'{name}' (AvgPool2d): NIR's AvgPool2d divides by the kernel size; "
            f"divisor_override={module.divisor_override} and count_include_pad=False with "
            "padding cannot be expressed (divisor_override=1 exports as SumPool2d)"
        )
    return ctx.nir.AvgPool2d(**args)


def _flatten(module: nn.Flatten, ctx: _Context) -> Any:
    start, end = module.start_dim, module.end_dim
    if start == 0 or end == 0:
        raise ConfigurationError(
            f"'{ctx.names.get(id(module), '')}' (Flatten): NIR flattens within one sample; "
            f"start_dim={start}, end_dim={end} would flatten the batch dimension"
        )
    return ctx.nir.Flatten(
        input_type={"input": np.array(ctx.shape_in(module))},
        start_dim=start - 1 if start > 0 else start,
        end_dim=end - 1 if end > 0 else end,
    )


def _scale(module: Scale, ctx: _Context) -> Any:
    return ctx.nir.Scale(scale=full_array(module.scale, ctx.shape_in(module)))


def _threshold(module: Threshold, ctx: _Context) -> Any:
    node = ctx.nir.Threshold(threshold=full_array(module.threshold, ctx.shape_in(module)))
    node.metadata = {"spikeflow_strict_firing": module.strict}
    return node


def _delay(module: Delay, ctx: _Context) -> Any:
    shape = ctx.shape_in(module)
    return ctx.nir.Delay(delay=np.full(shape, module.delay_steps * ctx.dt))


def _neuron(module: nn.Module, ctx: _Context) -> Any:
    name = ctx.names.get(id(module), type(module).__name__)
    return neuron_to_nir(ctx.nir, module, ctx.shape_in(module), ctx.dt, ctx.soft_reset, name)
