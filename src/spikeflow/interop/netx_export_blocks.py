"""Writing Lava-DL's pool / unpool / convT / average layers, complex synapses and ALIF /
RF / RF-IZ / ADRF neuron groups to a netx file (for
:func:`~spikeflow.interop.export_netx`).

The fields are the ones :mod:`spikeflow.interop.netx_blocks` reads (its docstring is the
layout), as Lava-DL's blocks write them (``slayer/block/base.py``, ``export_hdf5`` of
``AbstractPool``, ``AbstractUnpool``, ``AbstractConvT``, ``AbstractAverage``, and the
neurons' ``device_params`` in ``slayer/neuron/{alif, rf, rf_iz, adrf}.py``):

* ``pool`` / ``unpool``: ``shape``, ``kernelSize``, ``stride``, ``padding``,
  ``dilation``, ``weight`` ``[1, 1, kH, kW]``.
* ``convT``: ``shape``, ``inChannels``, ``outChannels``, ``kernelSize``, ``stride``,
  ``padding``, ``dilation``, ``groups``, ``weight`` ``[in, out/groups, kH, kW]``.
* ``average``: ``shape`` ``[num_outputs, 1, 1]`` (the shape Lava-DL's block means).
* ``neuron/*``: ``ALIF`` (``iDecay``, ``vDecay``, ``thDecay``, ``refDecay``, ``vThMant``,
  ``vThStep``, ``refDelay = 1``, ``gradedSpike = False``), ``RF_PHASE`` /
  ``RF_IZHIKEVICH`` (``sinDecay``, ``cosDecay``, ``vThMant``, ``gradedSpike``),
  ``ADRF_PHASE`` (RF's and ``thDecay``, ``refDecay``, ``vThStep``); a decay is one
  value, or one per channel as an array.

A complex synapse is written by the caller as its real synapse's layer with
``weight/real`` and ``weight/imag`` in place of ``weight``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.interop.netx_neurons import (
    LoihiAdaptiveResonatorNode,
    LoihiALIFNode,
    LoihiResonatorNode,
)
from spikeflow.interop.netx_pool import (
    LoihiAverage,
    LoihiConvTranspose2d,
    LoihiSumPool,
    LoihiUnpool,
)

__all__ = [
    "BLOCK_NEURONS",
    "COMPLEX_BLOCK_NEURONS",
    "KERNEL_SYNAPSES",
    "average_layer",
    "avg_pool_as_sum_pool",
    "block_neuron_fields",
    "check_exact_weights",
    "kernel_layer",
]

#: The integer synapses written here (a complex synapse's parts may be these too).
KERNEL_SYNAPSES = (LoihiSumPool, LoihiUnpool, LoihiConvTranspose2d)
#: The neuron groups written here.
BLOCK_NEURONS = (LoihiALIFNode, LoihiResonatorNode, LoihiAdaptiveResonatorNode)
#: The neuron groups that take a complex synapse's (real, imag) sums.
COMPLEX_BLOCK_NEURONS = (LoihiResonatorNode, LoihiAdaptiveResonatorNode)
#: float32 (the weights' dataset type, as Lava-DL writes them) holds integers exactly
#: up to 2^24.
_FLOAT32_EXACT = 1 << 24


def check_exact_weights(weight: Tensor, where: str) -> None:
    """Refuse integer weights that a float32 ``weight`` dataset would round."""
    if weight.numel() and int(weight.abs().max()) > _FLOAT32_EXACT:
        raise ConfigurationError(
            f"export_netx: {where}: weights up to {int(weight.abs().max())} in magnitude; "
            f"the float32 weight dataset holds integers exactly only up to 2^24"
        )


def _as_pair(value: Any) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def avg_pool_as_sum_pool(module: nn.AvgPool2d, shape: tuple[int, ...], where: str) -> LoihiSumPool:
    """A float ``nn.AvgPool2d`` as the Lava-DL pool that computes it exactly: stride =
    kernel, no padding, an input height and width that are multiples of the kernel
    (Lava-DL's pool pads ``H mod kH`` rows where PyTorch drops them), and a window mean
    ``1 / (kH kW)`` on Lava-DL's weight grid (steps of 2/64: ``kH kW`` in 1, 2, 4, 8, 16,
    32), written as the integer kernel ``64 / (kH kW)``."""
    kernel = _as_pair(module.kernel_size)
    stride = _as_pair(module.stride if module.stride is not None else module.kernel_size)
    problems = []
    if stride != kernel or _as_pair(module.padding) != (0, 0) or module.ceil_mode:
        problems.append(
            f"stride={stride}, padding={module.padding}, ceil_mode={module.ceil_mode} "
            "(netx's pool: stride = kernel, no padding)"
        )
    count = kernel[0] * kernel[1]
    if module.divisor_override not in (None, count):
        problems.append(f"divisor_override={module.divisor_override}")
    if 64 % count or (64 // count) % 2:
        problems.append(
            f"the window mean 1/{count} is not on Lava-DL's weight grid (steps of 2/64)"
        )
    if len(shape) == 3 and (shape[1] % kernel[0] or shape[2] % kernel[1]):
        problems.append(
            f"an input {list(shape)} whose height and width are not multiples of the kernel "
            "(Lava-DL's pool pads H mod kH rows, PyTorch drops them)"
        )
    if problems:
        raise ConfigurationError(
            f"export_netx: {where}: no netx pool computes this average pooling: "
            + "; ".join(problems)
        )
    return LoihiSumPool(torch.full(kernel, 64 // count, dtype=torch.int64), stride=kernel)


def kernel_layer(module: nn.Module, shape: tuple[int, ...], where: str) -> dict[str, Any]:
    """The datasets of a pool, unpool or convT synapse on an input of one-sample
    ``shape`` ``(C, H, W)`` (without the neurons)."""
    if len(shape) != 3:
        raise ShapeError(
            f"export_netx: {where}: a {type(module).__name__} takes [C, H, W] inputs, the "
            f"previous layer gives {list(shape)}"
        )
    if isinstance(module, LoihiConvTranspose2d) and shape[0] != module.weight.shape[0]:
        raise ShapeError(
            f"export_netx: {where}: the transposed convolution takes "
            f"[{module.weight.shape[0]}, H, W] inputs, the previous layer gives {list(shape)}"
        )
    try:
        out = [int(n) for n in module.output_shape(shape)]  # type: ignore[operator]
    except ShapeError as error:
        raise ShapeError(f"export_netx: {where}: {error}") from error
    if min(out) < 1:
        raise ShapeError(f"export_netx: {where}: the input {list(shape)} gives no output {out}")
    settings = {
        "kernelSize": [int(n) for n in module.weight.shape[-2:]],
        "stride": list(module.stride),
        "padding": list(module.padding),
        "dilation": list(module.dilation),
    }
    if isinstance(module, LoihiConvTranspose2d):
        return {
            "type": "convT",
            "shape": out,
            "inChannels": int(module.weight.shape[0]),
            "outChannels": out[0],
            **settings,
            "groups": module.groups,
            "weight": module.weight,
        }
    kind = "pool" if isinstance(module, LoihiSumPool) else "unpool"
    # Lava-DL's one kernel for every channel: [1, 1, kH, kW]
    return {"type": kind, "shape": out, **settings, "weight": module.weight[None, None]}


def average_layer(module: LoihiAverage, shape: tuple[int, ...], where: str) -> dict[str, Any]:
    """The datasets of an average layer (``shape`` ``[num_outputs, 1, 1]``)."""
    try:
        module.output_shape(shape)
    except ShapeError as error:
        raise ShapeError(f"export_netx: {where}: {error}") from error
    return {"type": "average", "shape": [module.num_outputs, 1, 1]}


def _decay(value: Tensor) -> int | np.ndarray:
    """One decay as an ``int``, per-channel decays as an ``int64`` array (as Lava-DL's
    ``cx_*_decay``: ``val[0]`` for one value)."""
    values = value.detach().cpu().reshape(-1)
    return int(values[0]) if values.numel() == 1 else values.numpy().astype(np.int64)


def block_neuron_fields(module: nn.Module, channels: int, where: str) -> dict[str, Any]:
    """The ``neuron/*`` fields of an ALIF, RF or ADRF neuron group of ``channels``
    channels, in the order Lava-DL's ``device_params`` give them."""
    decays = {
        name: getattr(module, attribute)
        for name, attribute in (
            ("iDecay", "i_decay"),
            ("vDecay", "v_decay"),
            ("sinDecay", "sin_decay"),
            ("cosDecay", "cos_decay"),
            ("thDecay", "th_decay"),
            ("refDecay", "ref_decay"),
        )
        if isinstance(getattr(module, attribute, None), Tensor)
    }
    for name, value in decays.items():
        if value.numel() not in (1, channels):
            raise ConfigurationError(
                f"export_netx: {where}: {value.numel()} {name} values for a layer of "
                f"{channels} channels (netx stores one, or one per channel)"
            )
    fields: dict[str, Any]
    if isinstance(module, LoihiALIFNode):
        fields = {"type": "ALIF", **{k: _decay(v) for k, v in decays.items()}}
        fields.update(vThMant=module.v_th_mant, vThStep=module.v_th_step, refDelay=1)
    elif isinstance(module, LoihiAdaptiveResonatorNode):
        fields = {"type": "ADRF_PHASE", **{k: _decay(v) for k, v in decays.items()}}
        fields.update(vThMant=module.v_th_mant, vThStep=module.v_th_step)
    elif isinstance(module, LoihiResonatorNode):
        kind = "RF_IZHIKEVICH" if module.izhikevich else "RF_PHASE"
        fields = {"type": kind, **{k: _decay(v) for k, v in decays.items()}}
        fields["vThMant"] = module.v_th_mant
    else:
        raise ConfigurationError(
            f"export_netx: {where}: expected an ALIF, RF or ADRF neuron group, got "
            f"{type(module).__name__}"
        )
    fields["gradedSpike"] = False
    return fields
