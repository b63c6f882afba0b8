"""Sigma-delta networks (SDNN) in Lava-DL's ``netx`` HDF5 format: export and import.

Lava-DL's sigma-delta blocks (``slayer/block/sigma_delta.py``) export the layout of its
CUBA blocks with the sigma-delta neuron's ``device_params``::

    layer/0: type b'input', shape, neuron/{type='SDNN', activation='relu', vThMant}
    layer/i: type b'dense' | b'conv' | b'flatten', the synapse's datasets (as CUBA),
             optional bias (64 per unit), neuron/{type='SDNN', activation, vThMant}
    last:    a dense layer whose neuron also has sigma_output=True (the Output block)

and netx builds the input layer as Lava's ``Delta`` process, the others as
``SigmaDelta`` (``Sigma`` for ``sigma_output``), with ``spike_exp = state_exp = 6``
(:class:`~spikeflow.interop.netx_layers.LoihiSigmaDeltaInput`,
:class:`~spikeflow.interop.netx_layers.LoihiSigmaDelta`). The integer scales: an input
``x`` enters as ``round(64 x)``, a weight as Lava-DL's ``quantize_8bit`` integers, a
graded spike carries ``2^12`` per unit, the states and the output ``2^18``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from spikeflow.errors import ConfigurationError
from spikeflow.interop.netx_layers import (
    SDNN_BIAS_LIMIT,
    SDNN_MAX_VTH,
    LoihiConv2d,
    LoihiDense,
    LoihiSigmaDelta,
    LoihiSigmaDeltaInput,
)
from spikeflow.layers import Flatten
from spikeflow.layers.sigma_delta import DeltaEncoder, DeltaSynapse, SigmaDecoder, SigmaDelta

__all__ = [
    "is_sdnn",
    "sdnn_input_neuron",
    "sdnn_layers",
    "sdnn_neuron",
    "sdnn_threshold_mantissa",
]

#: The input scale of netx's sigma-delta input layer (its ``Quantize(exp=6)``).
SDNN_INPUT_SCALE = 64


def is_sdnn(modules: list[nn.Module]) -> bool:
    """Whether a network's (unrolled) modules are a sigma-delta network: it starts
    with a delta encoder."""
    return bool(modules) and isinstance(modules[0], (DeltaEncoder, LoihiSigmaDeltaInput))


def sdnn_threshold_mantissa(encoder: DeltaEncoder, where: str) -> int:
    """``vThMant`` of a delta encoder: Lava-DL's ``int(64 θ)`` (its threshold is
    ``int(64 θ) / 64``), at most ``2^11 - 1`` (Lava keeps ``vth << 12`` in a 24-bit
    state); one θ for the layer (Lava's processes hold one ``vth``), no ``cum_error``
    (netx's ``get_neuron_params`` passes none: the file cannot carry it)."""
    if encoder.cum_error:
        raise ConfigurationError(
            f"export_netx: {where}: cum_error=True is not carried by netx (its "
            "get_neuron_params builds Delta / SigmaDelta without cum_error): build the "
            "encoder with cum_error=False"
        )
    theta = encoder.threshold
    if isinstance(theta, Tensor):
        values = theta.detach().double().flatten().unique()
        if values.numel() != 1:
            raise ConfigurationError(
                f"export_netx: {where}: netx stores one vThMant per layer (Lava's Delta and "
                "SigmaDelta processes hold vth as one value, a Var of shape (1,)); the "
                f"threshold has {values.numel()} different values"
            )
        theta = float(values[0])
    mantissa = int(theta * SDNN_INPUT_SCALE)
    if mantissa > SDNN_MAX_VTH:
        raise ConfigurationError(
            f"export_netx: {where}: threshold {theta:g} gives vThMant={mantissa}; Lava keeps "
            f"vThMant << 12 in a 24-bit state, so vThMant <= {SDNN_MAX_VTH} (θ < 32)"
        )
    return mantissa


def _relu(activation: object, where: str) -> None:
    if isinstance(activation, nn.ReLU) or activation in (F.relu, torch.relu):
        return
    raise ConfigurationError(
        f"export_netx: {where}: the activation is {activation!r}; netx builds every "
        "sigma-delta layer with ReLU (Lava's SigmaDelta act_mode RELU)"
    )


def _neuron(vth: int, sigma_output: bool = False) -> dict[str, Any]:
    neuron: dict[str, Any] = {"type": "SDNN", "activation": "relu", "vThMant": vth}
    if sigma_output:
        neuron["sigma_output"] = True
    return neuron


def _bias(module: nn.Module, channels: int, where: str) -> np.ndarray | None:
    """The bias mantissa ``round(64 b)`` of a synapse, one per channel, or None."""
    if isinstance(module, DeltaSynapse):
        bias = module.bias
    elif isinstance(module, (nn.Linear, nn.Conv2d)):
        bias = module.bias
    else:
        return None
    if bias is None or not bool(bias.ne(0).any()):
        return None
    values = torch.round(bias.detach().cpu().double().flatten() * SDNN_INPUT_SCALE)
    if values.numel() != channels:
        raise ConfigurationError(
            f"export_netx: {where}: the bias must be one value per channel ({channels}), "
            f"got {values.numel()}"
        )
    if bool(((values < -SDNN_BIAS_LIMIT) | (values >= SDNN_BIAS_LIMIT)).any()):
        raise ConfigurationError(
            f"export_netx: {where}: the bias mantissa round(64 b) must be in [-2^11, "
            "2^11 - 1] (|b| < 32): Lava holds bias << 12 and sigma + (bias << 12) is a "
            "signed 24-bit state, which at rest is the bias alone; got values from "
            f"{int(values.min())} to {int(values.max())}"
        )
    return values.numpy().astype(np.float32)


def _synapse_layer(module: nn.Module, shape: tuple[int, ...], where: str) -> dict[str, Any]:
    from spikeflow.interop.netx import _synapse

    inner = module.layer if isinstance(module, DeltaSynapse) else module
    if isinstance(inner, (nn.Linear, nn.Conv2d)) and inner.bias is not None:
        raise ConfigurationError(
            f"export_netx: {where}: a sigma-delta layer's bias must be added once, not at "
            "every step: wrap the layer in layers.DeltaSynapse (to_sigma_delta does)"
        )
    if not isinstance(inner, (nn.Linear, nn.Conv2d, LoihiDense, LoihiConv2d)):
        raise ConfigurationError(
            f"export_netx: {where}: expected a Linear or Conv2d layer (or a DeltaSynapse "
            f"of one), got {type(inner).__name__}"
        )
    layer = _synapse(inner, shape, where)
    bias = _bias(module, layer["shape"][0], where)
    if bias is not None:
        layer["bias"] = bias
    return layer


def sdnn_layers(
    names: list[str], modules: list[nn.Module], input_shape: tuple[int, ...]
) -> list[dict[str, Any]]:
    """The netx groups of a sigma-delta network: a delta encoder, then synapses
    (``DeltaSynapse`` of a Linear / Conv2d, or one without bias) each followed by a
    ReLU ``SigmaDelta`` or, last, a ``SigmaDecoder`` (the ``sigma_output`` layer), with
    flattens between (the modules of :func:`~spikeflow.conversion.to_sigma_delta`'s
    network, or of an imported one)."""
    first = modules[0]
    if isinstance(first, LoihiSigmaDeltaInput):
        vth = first.vth
    else:
        vth = sdnn_threshold_mantissa(first, f"module {names[0]}")
    groups: list[dict[str, Any]] = [
        {"type": "input", "shape": list(input_shape), "neuron": _neuron(vth)}
    ]
    shape, i = input_shape, 1
    while i < len(modules):
        module, where = modules[i], f"module {names[i]} ({type(modules[i]).__name__})"
        if groups[-1].get("neuron", {}).get("sigma_output"):
            raise ConfigurationError(
                f"export_netx: {where} follows the SigmaDecoder, which must be the last "
                "layer (netx's Sigma output)"
            )
        if isinstance(module, (Flatten, nn.Flatten)):
            flat = int(np.prod(shape))
            groups.append({"type": "flatten", "shape": [flat, 1, 1]})
            shape, i = (flat,), i + 1
            continue
        layer = _synapse_layer(module, shape, where)
        unit = modules[i + 1] if i + 1 < len(modules) else None
        unit_where = f"module {names[i + 1]}" if unit is not None else where
        if isinstance(unit, SigmaDelta):
            _relu(unit.activation, unit_where)
            layer["neuron"] = _neuron(sdnn_threshold_mantissa(unit.delta, unit_where))
        elif isinstance(unit, SigmaDecoder):
            if "bias" in layer:
                raise ConfigurationError(
                    f"export_netx: {where}: the output layer has a bias, which netx's Sigma "
                    "output process does not add (Lava-DL's Output block has none): build "
                    "the last layer with bias=False, or add the bias to what you read out"
                )
            layer["neuron"] = _neuron(0, sigma_output=True)
        elif isinstance(unit, LoihiSigmaDelta):
            if unit.bias.ne(0).any():
                layer["bias"] = unit.bias.flatten().numpy().astype(np.float32)
            layer["neuron"] = _neuron(unit.vth, unit.sigma_output)
        else:
            raise ConfigurationError(
                f"export_netx: {where} must be followed by a SigmaDelta (ReLU) or, as the "
                "last layer, a SigmaDecoder (a netx sigma-delta block is a synapse and its "
                "neurons)"
            )
        groups.append(layer)
        shape, i = tuple(layer["shape"]), i + 2
    if not groups[-1].get("neuron", {}).get("sigma_output"):
        raise ConfigurationError(
            "export_netx: a sigma-delta network must end with a synapse and a SigmaDecoder "
            "(Lava-DL's Output block, netx's Sigma process)"
        )
    return groups


# -- import (``reader``: netx's file reader, errors naming the file and dataset) --------


def sdnn_neuron(reader: Any, neuron: Any, bias: Tensor | None) -> nn.Module:
    """netx's ``SigmaDelta`` (``Sigma`` with ``sigma_output``) neurons of a layer."""
    if "activation" in neuron and reader.string(neuron, "activation") != "relu":
        raise reader.fail(
            f"{neuron.name}/activation",
            f"{reader.string(neuron, 'activation')!r}: netx builds sigma-delta layers with "
            "ReLU only",
        )
    if bias is not None and "sigma_output" in neuron:
        raise reader.fail(f"{neuron.parent.name}/bias", "netx's Sigma output adds no bias")
    try:
        return LoihiSigmaDelta(
            reader.integer(neuron, "vThMant"), 0 if bias is None else bias, "sigma_output" in neuron
        )
    except ConfigurationError as error:
        raise reader.fail(neuron.name, str(error)) from error


def sdnn_input_neuron(reader: Any, group: Any) -> LoihiSigmaDeltaInput:
    """netx's ``Delta`` input process of a sigma-delta network (the only input neurons
    supported; an input ``weight``/``bias`` transform is not)."""
    neuron = group["neuron"]
    if reader.string(neuron, "type") != "SDNN":
        raise reader.fail(
            f"{neuron.name}/type", "an input layer with neurons other than SDNN is not supported"
        )
    for name in ("weight", "bias"):
        if name in group:
            raise reader.fail(f"{group.name}/{name}", "an input transform is not supported")
    try:
        return LoihiSigmaDeltaInput(reader.integer(neuron, "vThMant"))
    except ConfigurationError as error:
        raise reader.fail(neuron.name, str(error)) from error
