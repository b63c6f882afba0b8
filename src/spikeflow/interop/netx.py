"""Lava-DL ``netx`` HDF5 export and import of CUBA spiking networks (Loihi 2 / Lava).

:func:`export_netx` writes a sequential network of dense and 2-d convolution synapses,
each followed by a CUBA neuron population and optionally an axonal delay, in the layout
Lava-DL's ``slayer`` blocks export and ``lava.lib.dl.netx.hdf5.Network`` reads::

    layer/0/type = b'input', shape = [C, H, W] or [K]
    layer/i/type = b'dense' | b'conv' | b'flatten'
    dense: shape [out], inFeatures, outFeatures, weight [out, in]
    conv:  shape [C, H, W], inChannels, outChannels, kernelSize, stride, padding,
           dilation (each [H, W]), groups, weight [out, in/groups, kH, kW]
    optional: bias [C] (the neurons' bias mantissa), delay [C] (whole steps)
    neuron/type = 'CUBA', iDecay, vDecay, vThMant, refDelay = 1, gradedSpike = False

and Lava-DL's ``pool``, ``unpool``, ``convT`` and (last) ``average`` layers, complex
synapses (``weight/real``, ``weight/imag``) and ``ALIF`` / ``RF_PHASE`` /
``RF_IZHIKEVICH`` / ``ADRF_PHASE`` neurons, as :func:`import_netx` reads them
(:mod:`spikeflow.interop.netx_export_blocks`).

Float weights are quantised as Lava-DL's ``quantize_8bit`` does for export (``scale =
64``): ``w_int = clamp(2 round(32 w), -256, 254)``, the integers a Loihi synapse adds.
:func:`import_netx` (in :mod:`spikeflow.interop.netx_import`, re-exported here) reads
such a file (Lava-DL's own exports included) into a
:class:`~spikeflow.interop.netx_layers.NetxNetwork` of integer layers and
:class:`~spikeflow.quant.loihi.LoihiCubaLIFNode` populations, which computes what Lava's
bit-accurate processes compute. Sigma-delta networks (a ``DeltaEncoder`` first, netx's
``SDNN`` neurons) go through :mod:`spikeflow.interop.netx_sdnn`. Needs ``h5py``
(``pip install 'spikeflow[loihi]'``). See ``docs/loihi.md``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from spikeflow._files import give_mode
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.interop.netx_export_blocks import (
    BLOCK_NEURONS,
    COMPLEX_BLOCK_NEURONS,
    KERNEL_SYNAPSES,
    average_layer,
    avg_pool_as_sum_pool,
    block_neuron_fields,
    check_exact_weights,
    kernel_layer,
)
from spikeflow.interop.netx_import import NETX_MAX_DELAY, import_netx, require_h5py
from spikeflow.interop.netx_layers import LoihiConv2d, LoihiDense, NetxNetwork
from spikeflow.interop.netx_plif import plif_as_lif
from spikeflow.interop.netx_pool import LoihiAverage, LoihiComplexSynapse, LoihiConvTranspose2d
from spikeflow.interop.netx_sdnn import is_sdnn, sdnn_layers
from spikeflow.layers import AxonalDelay, Flatten, MeanOnlyBatchNorm
from spikeflow.neurons import CubaLIFNode, IFNode, LIFNode
from spikeflow.quant.loihi import (
    WEIGHT_SCALE,
    LoihiCubaLIFNode,
    cuba_device_params,
    lava_weight_integers,
)
from spikeflow.quant.weights import WeightQuantizer, integer_weights

# (import_netx, NETX_MAX_DELAY and require_h5py: re-exported from netx_import)
__all__ = ["NETX_MAX_DELAY", "export_netx", "import_netx", "lava_dl_weights"]


def lava_dl_weights(weight: Tensor) -> Tensor:
    """Float weights as the integers Lava-DL exports for a CUBA block (its neuron's
    ``quantize_8bit(w, descale=True)``: step ``2/64``, clamped to ``[-256, 254] / 64``,
    times 64): ``clamp(2 round(32 w), -256, 254)`` as ``int64`` (``torch.round``: halves
    to even)."""
    return lava_weight_integers(weight, "lava_dl_weights")


# -- export -----------------------------------------------------------------------------


def _float_weights(module: nn.Module, where: str) -> Tensor:
    """:func:`lava_dl_weights` of a layer's weights; a layer whose weights were quantized
    by :func:`~spikeflow.quant.apply_weight_quantization` (``k·s``) only where they are
    on Lava's grid already (rounding them again would lose the trained levels)."""
    integers = lava_dl_weights(module.weight)
    if parametrize.is_parametrized(module, "weight") and any(
        isinstance(p, WeightQuantizer) for p in module.parametrizations.weight
    ):
        weight = module.weight.detach().to(torch.float64)
        moved = int((integers.to(torch.float64) / WEIGHT_SCALE != weight).sum())
        if moved:
            _, step = integer_weights(module)
            raise ConfigurationError(
                f"export_netx: {where}: its weights are quantized (apply_weight_quantization, "
                f"steps {step.flatten()[:3].tolist()}), and {moved} of {weight.numel()} are "
                f"not on Lava's grid (multiples of 2/{WEIGHT_SCALE}): netx would round them "
                "again to other levels than the network trained with; train on Loihi's grid "
                "(spikeflow.quant.loihi_grid) for netx"
            )
    return integers


def _refuse_quantized_inputs(model: nn.Module) -> None:
    """Refuse a model with a quantized input (a forward pre-hook netx leaves out)."""
    quantized = [name or type(model).__name__ for name, module in model.named_modules()
                 if module._modules.get("input_quantizer") is not None]  # fmt: skip
    if quantized:
        raise ConfigurationError(
            f"export_netx: the inputs of {', '.join(quantized)} are quantized "
            "(spikeflow.quant.apply_input_quantization), which netx cannot express: the "
            "exported network would take the input unrounded; quantize the input before it"
        )


def _neuron_params(module: nn.Module, where: str) -> dict[str, Any]:
    """``iDecay``, ``vDecay``, ``vThMant`` and the bias mantissa of a neuron."""
    if isinstance(module, LoihiCubaLIFNode):
        if module.bias_exp != 6 and bool(module.bias_mant.ne(0).any()):
            raise ConfigurationError(
                f"export_netx: {where}: netx gives every neuron bias_exp=6, this one has "
                f"bias_exp={module.bias_exp}"
            )
        bias = module.bias_mant if bool(module.bias_mant.ne(0).any()) else None
        return {
            "iDecay": module.i_decay,
            "vDecay": module.v_decay,
            "vThMant": module.vth,
            "bias": bias,
        }
    if type(module) in (IFNode, LIFNode):
        return _if_lif_params(module, where)
    try:
        params = cuba_device_params(module)
    except ConfigurationError as error:
        raise ConfigurationError(f"export_netx: {where}: {error}") from error
    return {
        "iDecay": params["i_decay"],
        "vDecay": params["v_decay"],
        "vThMant": params["v_th_mant"],
        "bias": _norm_bias(module, where),
    }


def _norm_bias(module: nn.Module, where: str) -> Tensor | None:
    """The bias mantissa of a CUBA neuron's ``norm``, as Lava-DL's blocks export it
    (``norm.bias``: ``-quantize_8bit(running_mean, descale=True)``): in evaluation a
    mean-only norm of the current subtracts ``running_mean`` from the voltage's input at
    every step, which is Loihi's voltage bias. None without a norm (or a zero one)."""
    norm = getattr(module, "norm", None)
    if norm is None:
        return None
    if type(norm) is not MeanOnlyBatchNorm:
        raise ConfigurationError(
            f"export_netx: {where}: the neuron's norm is a {type(norm).__name__}; netx "
            "carries a layers.MeanOnlyBatchNorm only, as the neuron bias -running_mean "
            "(Lava-DL's export; netx does not read the weight_exp Lava-DL writes for a "
            "WgtScaleBatchNorm)"
        )
    bias = -lava_weight_integers(norm.running_mean, f"export_netx: {where}: norm")
    return bias if bool(bias.ne(0).any()) else None


def _if_lif_params(module: IFNode | LIFNode, where: str) -> dict[str, Any]:
    """An IF or LIF neuron as the CUBA neuron that computes it, as SpikingJelly's
    ``lava_exchange`` maps them: the current decays fully each step (``iDecay = 4096``,
    so the voltage adds the step's input) and the voltage by ``1/tau`` (``vDecay =
    round(4096/tau)``; IF: 0). Needs a hard reset to 0 and, for LIF, ``decay_input=False``
    (Loihi adds the input undecayed) and a fixed ``tau``."""
    name = type(module).__name__
    problems = []
    if module.v_reset is None or float(module.v_reset) != 0.0:
        problems.append(f"v_reset={module.v_reset} (Loihi resets the voltage to 0)")
    if isinstance(module, LIFNode):
        if module.decay_input:
            problems.append("decay_input=True (Loihi adds the input undecayed: decay_input=False)")
        if not isinstance(module.tau, (int, float)) or isinstance(module.tau, bool):
            problems.append("a tau that is not one number")
    theta = module.v_threshold
    if isinstance(theta, Tensor):
        if theta.numel() != 1:
            problems.append("a threshold that is not one number")
        theta = float(theta.detach().reshape(-1)[0]) if theta.numel() else 0.0
    if problems:
        raise ConfigurationError(
            f"export_netx: {where}: this {name} has no CUBA equivalent: " + "; ".join(problems)
        )
    theta = float(theta)
    if not 1 <= theta * 64 < (1 << 17) + 1:
        raise ConfigurationError(
            f"export_netx: {where}: v_threshold={theta:g} gives vThMant={theta * 64:g}, outside "
            f"Loihi's 17-bit threshold (0, {1 << 17}]"
        )
    v_decay = 0
    if isinstance(module, LIFNode):  # Lava-DL: a float32 parameter, torch.round
        v_decay = int(torch.round(torch.tensor([4096 / module.tau], dtype=torch.float32)))
    return {"iDecay": 4096, "vDecay": v_decay, "vThMant": int(theta * 64), "bias": None}


def _synapse(
    module: nn.Module, shape: tuple[int, ...], where: str, voltage_bias: bool = False
) -> dict[str, Any]:
    """The datasets of a dense or conv synapse on an input of one-sample ``shape``; with
    ``voltage_bias`` (its neurons add the step's input undecayed to the voltage) a layer
    bias is allowed, and the caller writes it as the neurons' bias."""
    if isinstance(module, (nn.Linear, LoihiDense)):
        if len(shape) != 1:
            raise ShapeError(
                f"export_netx: {where}: a dense layer needs a flat input, got shape {shape}: "
                "put a Flatten before it"
            )
        if isinstance(module, nn.Linear):
            if not voltage_bias and module.bias is not None and bool(module.bias.ne(0).any()):
                raise ConfigurationError(
                    f"export_netx: {where}: the Linear layer has a bias; Loihi adds a bias to "
                    "the voltage, not to the current: build it with bias=False (or follow "
                    "it by an IFNode / LIFNode(decay_input=False), whose voltage adds it)"
                )
            weight = _float_weights(module, where)
        else:
            weight = module.weight
        if weight.shape[1] != shape[0]:
            raise ShapeError(
                f"export_netx: {where}: the layer takes {weight.shape[1]} inputs, the "
                f"previous layer gives {shape[0]}"
            )
        out = int(weight.shape[0])
        return {
            "type": "dense",
            "shape": [out],
            "inFeatures": int(weight.shape[1]),
            "outFeatures": out,
            "weight": weight,
        }
    if isinstance(module, nn.Conv2d):
        if not voltage_bias and module.bias is not None and bool(module.bias.ne(0).any()):
            raise ConfigurationError(
                f"export_netx: {where}: the Conv2d layer has a bias; Loihi adds a bias to "
                "the voltage, not to the current: build it with bias=False (or follow "
                "it by an IFNode / LIFNode(decay_input=False), whose voltage adds it)"
            )
        if module.padding_mode != "zeros" or isinstance(module.padding, str):
            raise ConfigurationError(
                f"export_netx: {where}: only zero padding given as numbers is exported, got "
                f"padding={module.padding!r}, padding_mode={module.padding_mode!r}"
            )
        conv = LoihiConv2d(
            _float_weights(module, where),
            module.stride,  # type: ignore[arg-type]
            module.padding,  # type: ignore[arg-type]
            module.dilation,  # type: ignore[arg-type]
            module.groups,
        )
    elif isinstance(module, LoihiConv2d):
        conv = module
    else:
        raise ConfigurationError(
            f"export_netx: {where}: expected a synapse netx holds, a Linear or Conv2d layer "
            "(a ConvTranspose2d, an AvgPool2d a netx pool computes, or the Loihi* synapses), "
            f"got {type(module).__name__}"
            + (" (netx has no max pooling)" if isinstance(module, nn.MaxPool2d) else "")
        )
    if len(shape) != 3 or shape[0] != conv.in_channels:
        raise ShapeError(
            f"export_netx: {where}: the convolution takes [{conv.in_channels}, H, W] inputs, "
            f"the previous layer gives {list(shape)}"
        )
    out_shape = conv.output_shape(shape)
    if min(out_shape[1:]) < 1:
        raise ShapeError(f"export_netx: {where}: the input {shape} is smaller than the kernel")
    return {
        "type": "conv",
        "shape": list(out_shape),
        "inChannels": conv.in_channels,
        "outChannels": out_shape[0],
        "kernelSize": list(conv.weight.shape[2:]),
        "stride": list(conv.stride),
        "padding": list(conv.padding),
        "dilation": list(conv.dilation),
        "groups": conv.groups,
        "weight": conv.weight,
    }


def _any_synapse(
    module: nn.Module, shape: tuple[int, ...], where: str, voltage_bias: bool
) -> dict[str, Any]:
    """The datasets of any synapse netx files hold: dense, conv, pool, unpool, convT (a
    float ``ConvTranspose2d`` quantised as :func:`lava_dl_weights`; an ``AvgPool2d`` that a
    pool computes exactly, :func:`avg_pool_as_sum_pool`), or a complex synapse
    of two of one kind (written as the real one's layer with ``weight/real`` and
    ``weight/imag``, as Lava-DL's blocks write it)."""
    if isinstance(module, LoihiComplexSynapse):
        if isinstance(module.real, LoihiComplexSynapse):  # netx: one weight/real, weight/imag
            raise ConfigurationError(
                f"export_netx: {where}: a complex synapse of complex synapses; netx holds "
                "one real and one imaginary weight per layer"
            )
        layer = _any_synapse(module.real, shape, f"{where}.real", False)
        imag = _any_synapse(module.imag, shape, f"{where}.imag", False)
        layer["weight/real"] = layer.pop("weight")
        layer["weight/imag"] = imag["weight"]
        return layer
    if isinstance(module, nn.ConvTranspose2d):
        problems = []
        if not voltage_bias and module.bias is not None and bool(module.bias.ne(0).any()):
            problems.append("a bias (Loihi adds a bias to the voltage: bias=False)")
        if any(module.output_padding) or module.padding_mode != "zeros":
            problems.append(
                f"output_padding={module.output_padding}, padding_mode="
                f"{module.padding_mode!r} (Lava-DL's ConvTranspose has neither)"
            )
        if isinstance(module.padding, str):
            problems.append(f"padding={module.padding!r} (netx stores numbers)")
        if problems:
            raise ConfigurationError(f"export_netx: {where}: " + "; ".join(problems))
        module = LoihiConvTranspose2d(
            _float_weights(module, where),
            module.stride,  # type: ignore[arg-type]
            module.padding,  # type: ignore[arg-type]
            module.dilation,  # type: ignore[arg-type]
            module.groups,
        )
    if isinstance(module, nn.AvgPool2d):
        module = avg_pool_as_sum_pool(module, shape, where)
    if isinstance(module, KERNEL_SYNAPSES):
        return kernel_layer(module, shape, where)
    return _synapse(module, shape, where, voltage_bias)


def _channel_bias(bias: Tensor, channels: int, where: str) -> np.ndarray:
    """One bias mantissa per channel (netx broadcasts a channel's to its neurons)."""
    values = bias.detach().cpu().flatten()  # (a model on the GPU is written too)
    if values.numel() == 1:
        values = values.expand(channels)
    if values.numel() != channels:
        raise ConfigurationError(
            f"export_netx: {where}: bias_mant of shape {tuple(bias.shape)}: netx stores "
            f"one bias per channel ({channels}) or one for all"
        )
    return values.numpy().astype(np.float32)


def _voltage_bias(module: nn.Module, where: str) -> Tensor | None:
    """The bias of a Linear / Conv2d followed by an IF / LIF neuron as the neurons' bias
    mantissa ``round(64 b)`` (``bias_exp = 6``: ``b`` on the weights' scale, 64 per
    unit). The neuron's current decays fully each step, so the voltage adds ``W x + b``
    each step, which Loihi computes as the current ``W x`` plus the voltage bias. None
    without a bias (or a zero one)."""
    bias = getattr(module, "bias", None)
    if not isinstance(bias, Tensor) or not bool(bias.ne(0).any()):
        return None
    bias = bias.detach().cpu().to(torch.float64)
    mant = torch.round(bias * 64)
    if (
        not bool(torch.isfinite(mant).all())
        or not -4096 <= float(mant.min()) <= float(mant.max()) <= 4095
    ):
        raise ConfigurationError(
            f"export_netx: {where}: bias from {float(bias.min()):g} to {float(bias.max()):g}: "
            "Loihi's bias mantissa round(64 b) holds [-4096, 4095] (|b| < 64)"
        )
    return mant.to(torch.int64)


def _delays(module: AxonalDelay, channels: int, where: str) -> np.ndarray:
    delay = torch.floor(module.delay.detach().cpu().clamp(0, module.max_delay)).flatten()
    if delay.numel() != channels:
        raise ShapeError(
            f"export_netx: {where}: {delay.numel()} axonal delays for {channels} channels "
            "(netx stores one per channel)"
        )
    if int(delay.max()) > NETX_MAX_DELAY:
        raise ConfigurationError(
            f"export_netx: {where}: delays up to {int(delay.max())} steps; netx accepts at "
            f"most {NETX_MAX_DELAY}"
        )
    return delay.numpy().astype(np.float32)


def _blocks(model: nn.Sequential, prefix: str = "") -> tuple[list[str], list[nn.Module]]:
    """The modules of ``model`` in order with their names, nested ``nn.Sequential``
    unrolled and the modules that do nothing at inference (``Dropout``, ``Identity``,
    which :func:`~spikeflow.quant.loihi_grid` trains with) left out."""
    names: list[str] = []
    modules: list[nn.Module] = []
    for name, module in model.named_children():
        if isinstance(module, nn.Sequential) and not isinstance(module, NetxNetwork):
            inner_names, inner = _blocks(module, f"{prefix}{name}.")
            names.extend(inner_names)
            modules.extend(inner)
        elif not isinstance(module, (nn.Dropout, nn.Identity)):
            names.append(prefix + name)
            modules.append(module)
    return names, modules


def _network_layers(model: nn.Module, input_shape: tuple[int, ...]) -> list[dict[str, Any]]:
    if not isinstance(model, nn.Sequential):
        raise ConfigurationError(
            f"export_netx expects an nn.Sequential (or NetxNetwork), got {type(model).__name__}"
        )
    names, modules = _blocks(model)
    if is_sdnn(modules):
        return sdnn_layers(names, modules, input_shape)
    modules = plif_as_lif(names, modules)  # a trained PLIF: LIF with a fixed decay
    groups: list[dict[str, Any]] = [{"type": "input", "shape": list(input_shape)}]
    shape = input_shape
    i = 0
    while i < len(modules):
        module, where = modules[i], f"module {names[i]} ({type(modules[i]).__name__})"
        if isinstance(module, (Flatten, nn.Flatten)):
            if i == 0:
                raise ConfigurationError(
                    "export_netx: the network starts with a Flatten, which netx cannot read "
                    "(it flattens the output of a previous block): flatten the input "
                    "outside the network and give the flat input_shape"
                )
            flat = int(np.prod(shape))
            groups.append({"type": "flatten", "shape": [flat, 1, 1]})
            shape = (flat,)
            i += 1
            continue
        if isinstance(module, LoihiAverage):
            if i + 1 < len(modules):
                raise ConfigurationError(
                    f"export_netx: {where} must be the last module (Lava-DL's average is a "
                    f"float readout), followed by {names[i + 1]}"
                )
            if len(groups) == 1:
                raise ConfigurationError(
                    f"export_netx: {where}: an average layer before any synapse layer"
                )
            groups.append(average_layer(module, shape, where))
            break
        follower = modules[i + 1] if i + 1 < len(modules) else None
        layer = _any_synapse(module, shape, where, type(follower) in (IFNode, LIFNode))
        neurons = (CubaLIFNode, LoihiCubaLIFNode, *BLOCK_NEURONS)
        if not (isinstance(follower, neurons) or type(follower) in (IFNode, LIFNode)):
            found = (
                "nothing"
                if follower is None
                else f"module {names[i + 1]} ({type(follower).__name__})"
            )
            raise ConfigurationError(
                f"export_netx: {where} must be followed by a CubaLIFNode, "
                f"LoihiCubaLIFNode, IFNode, LIFNode or a netx ALIF / RF / ADRF node (a "
                f"netx block is a synapse and its neurons), got {found}"
            )
        complex_neuron = isinstance(follower, COMPLEX_BLOCK_NEURONS)
        if complex_neuron != isinstance(module, LoihiComplexSynapse):
            kind = "a complex" if isinstance(module, LoihiComplexSynapse) else "a real"
            raise ConfigurationError(
                f"export_netx: {where}: {kind} synapse before module {names[i + 1]} "
                f"({type(follower).__name__}): the resonators (RF, RF-IZ, ADRF) take a "
                "LoihiComplexSynapse's (real, imag) sums, the other neurons one real synapse's"
            )
        for key in ("weight", "weight/real", "weight/imag"):
            if key in layer:
                check_exact_weights(layer[key], where)
        if isinstance(follower, BLOCK_NEURONS):
            fields = block_neuron_fields(follower, layer["shape"][0], f"module {names[i + 1]}")
            layer["neuron"] = fields
        else:
            neuron = _neuron_params(follower, f"module {names[i + 1]}")
            bias = neuron.pop("bias")
            if bias is None:
                bias = _voltage_bias(module, where)
            if bias is not None:
                layer["bias"] = _channel_bias(bias, layer["shape"][0], f"module {names[i + 1]}")
            layer["neuron"] = {"type": "CUBA", **neuron, "refDelay": 1, "gradedSpike": False}
        i += 2
        if i < len(modules) and isinstance(modules[i], AxonalDelay):
            layer["delay"] = _delays(modules[i], layer["shape"][0], f"module {names[i]}")
            i += 1
        groups.append(layer)
        shape = tuple(layer["shape"])
    if len(groups) == 1:
        raise ConfigurationError("export_netx: the network has no synapse layer")
    return groups


def _write_group(h5: Any, group: Any, layer: dict[str, Any]) -> None:
    for key, value in layer.items():
        if key == "type":  # as Lava-DL's blocks write it: one fixed-length string
            group.create_dataset("type", (1,), "S10", [value.encode("ascii")])
        elif key == "neuron":
            for name, item in value.items():  # neuron/type: a variable-length string
                group.create_dataset(f"neuron/{name}", data=item)
        elif key.startswith("weight"):  # weight, or a complex synapse's weight/real, /imag
            group.create_dataset(key, data=value.cpu().numpy().astype(np.float32))
        else:
            group.create_dataset(key, data=np.asarray(value))


def export_netx(model: nn.Module, path: str | os.PathLike, input_shape: Sequence[int]) -> Path:
    """Write ``model`` to ``path`` as a Lava-DL ``netx`` HDF5 network, atomically.

    ``model`` is an ``nn.Sequential`` (or a :class:`NetxNetwork`) of blocks: a synapse
    (``Linear`` / ``Conv2d`` without bias, or ``LoihiDense`` / ``LoihiConv2d``), its
    neurons (``CubaLIFNode`` as Lava-DL's CUBA, ``LoihiCubaLIFNode``, or an ``IFNode`` /
    ``LIFNode(decay_input=False)`` with a hard reset to 0, as the CUBA neuron whose current
    decays fully each step, SpikingJelly's ``lava_exchange`` mapping; a trained
    ``ParametricLIFNode`` as that LIF with the 12-bit decay ``round(4096 sigmoid(w))``,
    :mod:`~spikeflow.interop.netx_plif`), optionally an
    ``AxonalDelay`` (exported as whole steps, ``floor(d)``, as Lava-DL does), with
    ``Flatten`` between a convolution and a dense block. The modules
    :func:`import_netx` builds for Lava-DL's other blocks are written back in its layout
    (:mod:`~spikeflow.interop.netx_export_blocks`): ``LoihiSumPool`` (``pool``),
    ``LoihiUnpool`` (``unpool``), ``LoihiConvTranspose2d`` or a float bias-free
    ``nn.ConvTranspose2d`` without output padding (``convT``), an ``nn.AvgPool2d`` a
    ``pool`` computes exactly (stride = kernel, no padding, ``H`` and ``W`` multiples of
    the kernel, ``kH·kW`` in 1, 2, 4, ..., 32), a ``LoihiComplexSynapse``
    of two dense / conv / pool / unpool / convT synapses (``weight/real``,
    ``weight/imag``), a last ``LoihiAverage`` (``average``), and ``LoihiALIFNode``,
    ``LoihiResonatorNode``, ``LoihiAdaptiveResonatorNode`` neurons (``ALIF``,
    ``RF_PHASE`` / ``RF_IZHIKEVICH``, ``ADRF_PHASE``; resonators only after a complex
    synapse): :func:`import_netx` reads these, Lava's ``netx.hdf5.Network`` does not
    (``NotImplementedError``). The pool's kernel ``64/(kH·kW)`` is the weights' scale,
    undone by the thresholds' (``vThMant = 64 θ``). Nested ``nn.Sequential`` are
    unrolled and ``Dropout`` / ``Identity`` (no-ops at inference, which
    :func:`~spikeflow.quant.loihi_grid` trains with) left out. Float weights are quantised as
    :func:`lava_dl_weights`, the neurons as
    :meth:`~spikeflow.quant.loihi.LoihiCubaLIFNode.from_cuba`.

    A sigma-delta network (:func:`~spikeflow.conversion.to_sigma_delta`'s, or an
    ``nn.Sequential`` of a ``DeltaEncoder``, then ``DeltaSynapse`` layers of Linear / Conv2d
    layers each followed by a ReLU ``SigmaDelta``, ``Flatten`` modules between, and a last
    synapse without bias followed by a ``SigmaDecoder``) is written as Lava-DL's SDNN
    blocks: ``neuron/type = 'SDNN'``, ``activation = 'relu'``, ``vThMant = int(64 θ)``,
    the bias as ``round(64 b)``, the last layer with ``sigma_output`` (see
    :mod:`spikeflow.interop.netx_sdnn`).

    Args:
        model: the network.
        path: the ``.net`` / ``.h5`` file to write (replaced if it exists).
        input_shape: one input sample's shape, ``(C, H, W)`` or ``(K,)`` (written as
            the ``input`` layer, from which netx infers the first layer's input); a
            ``NetxNetwork`` is written with its own.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ConfigurationError: a module netx cannot represent (named with its index), a
            neuron that is not Lava-DL's CUBA or one of the neurons above (graded spikes
            included), a layer bias, a resonator after a real synapse (or another neuron
            after a complex one, or a complex synapse of complex ones), a layer after an
            average, per-channel decays of another
            count than the layer's channels, integer weights beyond 2^24 (the float32
            weight dataset would round them); in
            a sigma-delta network an activation other than ReLU, ``cum_error``, one
            threshold per neuron, a bias on the output layer.
        ShapeError: layers whose shapes do not chain from ``input_shape``.
        MissingExtraError: ``h5py`` is not installed (the ``loihi`` extra).
        FileNotFoundError: ``path``'s folder does not exist.
    """
    h5py = require_h5py("netx export")
    if isinstance(model, NetxNetwork):
        input_shape = model.input_shape
    if (
        isinstance(input_shape, (str, bytes))
        or len(input_shape) not in (1, 3)
        or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in input_shape)
    ):
        raise ConfigurationError(
            f"export_netx: input_shape must be (C, H, W) or (K,) positive integers, got "
            f"{input_shape!r}"
        )
    _refuse_quantized_inputs(model)
    layers = _network_layers(model, tuple(input_shape))
    path = Path(path)
    if not path.parent.is_dir():  # (mkstemp's error would name the temporary file)
        raise FileNotFoundError(f"cannot write {path}: the folder {path.parent} does not exist")
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        with h5py.File(temporary, "w") as h5:
            for index, layer in enumerate(layers):
                _write_group(h5, h5.create_group(f"layer/{index}"), layer)
        with open(temporary, "rb") as written:  # on disk before it replaces the file
            os.fsync(written.fileno())
        give_mode(temporary, path)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
