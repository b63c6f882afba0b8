"""Reading Lava-DL's pool / unpool / convT / average layers, complex weights and
adaptive / resonator neuron groups from a netx file (for
:func:`~spikeflow.interop.import_netx`).

The fields, as Lava-DL's blocks write them (``slayer/block/base.py``, ``export_hdf5``):

* ``pool`` (``AbstractPool``), ``unpool`` (``AbstractUnpool``): ``type``; ``shape``
  (the neurons' ``(C, H, W)``); ``kernelSize``, ``stride``, ``padding``, ``dilation``
  (``(H, W)`` pairs); ``weight``, the integer kernel ``[1, 1, kH, kW]`` (Lava-DL's
  ``pre_hook_fx(weight, descale=True)``: ``weight_scale`` times 64 on its grid, the
  same for every channel); optional ``delay``; ``neuron/*``.
* ``convT`` (``AbstractConvT``): as ``conv``: ``inChannels``, ``outChannels``,
  ``kernelSize``, ``stride``, ``padding``, ``dilation``, ``groups``, ``weight`` ``[in,
  out/groups, kH, kW]`` (``ConvTranspose3d``'s layout without the time dim), optional
  ``bias`` (a norm's) and ``delay``, ``neuron/*``.
* ``average`` (``AbstractAverage``): ``type`` and ``shape`` ``[num_outputs, 1, 1]``
  (its ``export_hdf5`` reads ``self.neuron.shape``, which the block lacks: Lava-DL's own
  export of it fails; a file written with the intended shape is read here).
* A complex synapse (the resonator blocks') writes ``weight/real`` and ``weight/imag``
  in place of ``weight``.
* ``neuron/type`` ``ALIF`` (``alif.Neuron.device_params``): ``iDecay``, ``vDecay``,
  ``thDecay``, ``refDecay`` (12-bit decays, ``round(4096 decay)``), ``vThMant`` (``int(64
  θ)``), ``vThStep`` (``int(64 θ_step)``), ``refDelay`` (always 1, unused by the
  dynamics), ``gradedSpike``. ``RF_PHASE`` (``rf``) and ``RF_IZHIKEVICH`` (``rf_iz``):
  ``sinDecay``, ``cosDecay`` (``round(4096 (1 − decay) sin / cos(2π / period))``),
  ``vThMant``, ``gradedSpike``. ``ADRF_PHASE`` (``adrf``): RF's fields and ``thDecay``,
  ``refDecay``, ``vThStep``. A decay is one value, or one per channel
  (``shared_param=False``).

``concat`` is refused: netx's own reader (``hdf5.Network._create``) raises
``NotImplementedError`` for it (``create_concat`` is a stub), and a netx file is a chain
of numbered layers: no Lava-DL block writes a concat layer or names the layers it would
join, so there is nothing to read its inputs from. The export of these layers and
neurons is :mod:`spikeflow.interop.netx_export_blocks`.
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
from spikeflow.interop.netx_pool import LoihiConvTranspose2d, LoihiSumPool, LoihiUnpool

__all__ = ["NEURON_TYPES", "kernel_synapse", "netx_neuron", "read_weight"]

#: The neuron types read here, and the fields each needs.
NEURON_TYPES = {
    "ALIF": ("iDecay", "vDecay", "thDecay", "refDecay", "vThMant", "vThStep"),
    "RF_PHASE": ("sinDecay", "cosDecay", "vThMant"),
    "RF_IZHIKEVICH": ("sinDecay", "cosDecay", "vThMant"),
    "ADRF_PHASE": ("sinDecay", "cosDecay", "thDecay", "refDecay", "vThMant", "vThStep"),
}
#: The neuron types that take a complex synapse's (real, imag) sums.
COMPLEX_NEURONS = ("RF_PHASE", "RF_IZHIKEVICH", "ADRF_PHASE")


def read_weight(reader: Any, group: Any) -> Tensor | tuple[Tensor, Tensor]:
    """The layer's integer ``weight``, or ``(real, imag)`` for a complex synapse
    (``weight/real``, ``weight/imag``)."""
    if "weight" in group and hasattr(group["weight"], "keys"):
        parts = group["weight"]
        return tuple(  # type: ignore[return-value]
            torch.from_numpy(reader.integers(parts, name)) for name in ("real", "imag")
        )
    return torch.from_numpy(reader.integers(group, "weight"))


def kernel_synapse(reader: Any, group: Any, kind: str, weight: Tensor) -> nn.Module:
    """The synapse of a ``pool``, ``unpool`` or ``convT`` layer from its fields."""
    where = group.name
    if weight.dim() == 5:  # [.., .., kH, kW, 1] as Lava-DL's 3-d weights
        weight = weight[..., 0]
    settings = [reader.pair(group, name) for name in ("stride", "padding", "dilation")]
    try:
        if kind == "convT":
            synapse: nn.Module = LoihiConvTranspose2d(
                weight, *settings, groups=reader.integer(group, "groups")
            )
        else:
            cls = LoihiSumPool if kind == "pool" else LoihiUnpool
            if weight.dim() == 4 and tuple(weight.shape[:2]) != (1, 1):
                raise ShapeError(
                    f"a {kind} kernel is one [1, 1, kH, kW] for all channels, got "
                    f"{list(weight.shape)}"
                )
            synapse = cls(weight, *settings)
    except (ConfigurationError, ShapeError) as error:
        raise reader.fail(f"{where}/weight", str(error)) from error
    if "kernelSize" in group:
        kernel = reader.pair(group, "kernelSize")
        if tuple(synapse.weight.shape[-2:]) != kernel:
            raise reader.fail(
                f"{where}/kernelSize",
                f"{list(kernel)} differs from the weight's kernel "
                f"{list(synapse.weight.shape[-2:])}",
            )
    return synapse


def _decays(reader: Any, neuron: Any, name: str, channels: int) -> Tensor | int:
    values = reader.integers(neuron, name).reshape(-1)
    if values.size == 1:
        return int(values[0])
    if values.size != channels:
        raise reader.fail(
            f"{neuron.name}/{name}", f"{values.size} values for {channels} channels (1 or one each)"
        )
    return torch.from_numpy(np.ascontiguousarray(values))


def netx_neuron(reader: Any, neuron: Any, kind: str, channels: int) -> nn.Module:
    """The fixed-point neuron of an ``ALIF``, ``RF_PHASE``, ``RF_IZHIKEVICH`` or
    ``ADRF_PHASE`` group (:mod:`spikeflow.interop.netx_neurons`) for ``channels``
    channels, with errors naming the file and the field."""
    for name in NEURON_TYPES[kind]:
        if name not in neuron:
            raise reader.fail(f"{neuron.name}/{name}", f"missing (a {kind} neuron needs it)")
    if "gradedSpike" in neuron and reader.integer(neuron, "gradedSpike") != 0:
        raise reader.fail(f"{neuron.name}/gradedSpike", "graded spikes are not supported")
    value = {name: _decays(reader, neuron, name, channels) for name in NEURON_TYPES[kind]}
    for name in ("vThMant", "vThStep"):
        if name in value and not isinstance(value[name], int):
            raise reader.fail(f"{neuron.name}/{name}", "expected one value for the layer")
    try:
        if kind == "ALIF":
            return LoihiALIFNode(
                value["iDecay"],
                value["vDecay"],
                value["thDecay"],
                value["refDecay"],
                value["vThMant"],  # type: ignore[arg-type]
                value["vThStep"],  # type: ignore[arg-type]
            )
        if kind == "ADRF_PHASE":
            return LoihiAdaptiveResonatorNode(
                value["sinDecay"],
                value["cosDecay"],
                value["thDecay"],
                value["refDecay"],
                value["vThMant"],  # type: ignore[arg-type]
                value["vThStep"],  # type: ignore[arg-type]
            )
        return LoihiResonatorNode(
            value["sinDecay"],
            value["cosDecay"],
            value["vThMant"],  # type: ignore[arg-type]
            izhikevich=kind == "RF_IZHIKEVICH",
        )
    except ConfigurationError as error:
        raise reader.fail(neuron.name, str(error)) from error
