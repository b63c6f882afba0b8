"""Lava-DL ``netx`` HDF5 import: a file's layers as a fixed-point :class:`NetxNetwork`.

:func:`import_netx` reads the layout :func:`~spikeflow.interop.netx.export_netx` writes
(Lava-DL's own exports included) as netx's ``hdf5.Network`` reads it, with errors naming
the file and the dataset; sigma-delta layers go through
:mod:`spikeflow.interop.netx_sdnn`. :data:`NETX_MAX_DELAY` (netx's delay limit) and
:func:`require_h5py` live here and are shared with the export. Needs ``h5py``
(``pip install 'spikeflow[loihi]'``).
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from spikeflow.errors import ConfigurationError, DataFormatError, MissingExtraError, ShapeError
from spikeflow.interop.netx_blocks import (
    COMPLEX_NEURONS,
    NEURON_TYPES,
    kernel_synapse,
    netx_neuron,
    read_weight,
)
from spikeflow.interop.netx_layers import (
    LoihiConv2d,
    LoihiDense,
    LoihiSigmaDelta,
    LoihiSigmaDeltaInput,
    NetxNetwork,
)
from spikeflow.interop.netx_pool import (
    LoihiAverage,
    LoihiComplexSynapse,
    LoihiConvTranspose2d,
    LoihiSumPool,
    LoihiUnpool,
)
from spikeflow.interop.netx_sdnn import sdnn_input_neuron, sdnn_neuron
from spikeflow.layers import AxonalDelay, Flatten
from spikeflow.quant.loihi import LoihiCubaLIFNode

__all__ = ["NETX_MAX_DELAY", "import_netx", "require_h5py"]

#: The largest axonal delay Lava-DL's ``netx`` accepts (``num_delay_bits``: < 63).
NETX_MAX_DELAY = 62
#: The neuron ``netx`` gives a dense layer that has none: a non-leaky integrator
#: (``create_dense``; ``1 << 18 - 1`` is ``1 << 17`` by Python's precedence).
_NETX_DEFAULT_NEURON = {"i_decay": 0, "v_decay": 4096, "v_th_mant": 1 << 17}
_SUPPORTED = ("input", "dense", "conv", "flatten", "pool", "unpool", "convT", "average")
#: The integer synapses a layer of the file may have.
_SYNAPSES = (
    LoihiDense,
    LoihiConv2d,
    LoihiSumPool,
    LoihiUnpool,
    LoihiConvTranspose2d,
    LoihiComplexSynapse,
)


def require_h5py(feature: str) -> ModuleType:
    """The ``h5py`` module, or :class:`MissingExtraError` naming the ``loihi`` extra."""
    try:
        return importlib.import_module("h5py")
    except ImportError as error:
        raise MissingExtraError(feature, "h5py", "loihi") from error


class _Reader:
    """Reads one netx file's datasets as netx's ``NetDict`` does, with errors naming
    the file and the dataset."""

    def __init__(self, path: Path, h5: Any) -> None:
        self.path, self.h5 = path, h5

    def fail(self, key: str, problem: str) -> DataFormatError:
        return DataFormatError(f"{self.path}: netx dataset {key!r}: {problem}")

    def get(self, group: Any, name: str) -> Any:
        if name not in group:
            raise self.fail(f"{group.name}/{name}", "missing")
        return group[name][()]

    def string(self, group: Any, name: str) -> str:
        value = self.get(group, name)
        if isinstance(value, np.ndarray):
            value = value.reshape(-1)[0] if value.size else b""
        if isinstance(value, bytes):
            value = value.decode("ascii", "replace")
        return str(value)

    def integers(self, group: Any, name: str) -> np.ndarray:
        value = np.asarray(self.get(group, name))
        kind = value.dtype.kind
        bad = kind not in "iufb"
        if kind == "f":  # whole numbers that int64 holds (astype would wrap the others)
            whole = np.isfinite(value) & (value == np.round(value))
            bad = not np.all(whole & (np.abs(np.where(whole, value, 0)) < 2.0**63))
        elif kind == "u" and value.size:
            bad = int(value.max()) > np.iinfo(np.int64).max
        if bad:
            raise self.fail(
                f"{group.name}/{name}", f"expected integers within int64, got {value!r}"
            )
        return value.astype(np.int64)

    def integer(self, group: Any, name: str) -> int:
        value = self.integers(group, name)
        if value.size != 1:
            raise self.fail(f"{group.name}/{name}", f"expected one value, got {value.shape}")
        return int(value.reshape(-1)[0])

    def pair(self, group: Any, name: str) -> tuple[int, int]:
        value = self.integers(group, name).reshape(-1)  # netx: a scalar means both dims
        if value.size == 1:
            return int(value[0]), int(value[0])
        if value.size != 2:
            raise self.fail(f"{group.name}/{name}", f"expected 1 or 2 values, got {value}")
        return int(value[0]), int(value[1])


def _neuron(
    reader: _Reader, group: Any, kind: str, bias: Tensor | None, channels: int, complex_: bool
) -> nn.Module:
    if "neuron" not in group:  # netx's default for a dense layer without one
        if kind == "dense" and not complex_:
            return LoihiCubaLIFNode.from_netx(**_NETX_DEFAULT_NEURON, bias=_bias(bias))
        raise reader.fail(f"{group.name}/neuron", "missing")
    neuron = group["neuron"]
    kind = reader.string(neuron, "type")
    if complex_ != (kind in COMPLEX_NEURONS):
        raise reader.fail(
            f"{group.name}/weight",
            f"a {'complex' if complex_ else 'real'} weight for {kind!r} neurons (the "
            f"resonators {COMPLEX_NEURONS} take weight/real and weight/imag, others one weight)",
        )
    if kind in NEURON_TYPES:
        if bias is not None:
            raise reader.fail(
                f"{group.name}/bias", f"a bias (a norm's) before {kind} neurons is not supported"
            )
        return netx_neuron(reader, neuron, kind, channels)
    if kind == "SDNN":
        return sdnn_neuron(reader, neuron, bias)
    if kind not in ("CUBA", "LOIHI"):
        raise reader.fail(
            f"{neuron.name}/type",
            f"neuron type {kind!r} is not supported (only CUBA / LOIHI / SDNN / "
            f"{' / '.join(NEURON_TYPES)})",
        )
    if "messageBits" in neuron and reader.integer(neuron, "messageBits") != 0:
        raise reader.fail(f"{neuron.name}/messageBits", "graded spikes are not supported")
    try:
        return LoihiCubaLIFNode.from_netx(
            i_decay=reader.integer(neuron, "iDecay"),
            v_decay=reader.integer(neuron, "vDecay"),
            v_th_mant=reader.integer(neuron, "vThMant"),
            bias=_bias(bias),
        )
    except ConfigurationError as error:
        raise reader.fail(neuron.name, str(error)) from error


def _bias(bias: Tensor | None) -> Tensor | int:
    return 0 if bias is None else bias


def _synapse(
    reader: _Reader, group: Any, kind: str, weight: Tensor, shape: tuple[int, ...], out: tuple
) -> nn.Module:
    """One (real) synapse of a dense, conv, convT, pool or unpool layer, checked."""
    where = group.name
    if kind == "dense":
        if len(shape) != 1:
            raise reader.fail(where, f"a dense layer on an unflattened input of shape {shape}")
        neurons = int(np.prod(out))
        # [out, in] (netx reshapes only a 1-d weight), not another shape of the same size
        rows = weight.shape[0] if weight.dim() > 1 else neurons
        if rows != neurons or weight.numel() % neurons:
            raise reader.fail(
                f"{where}/weight",
                f"{list(weight.shape)} does not form [{neurons}, in] weights for the "
                f"layer's shape {list(out)}",
            )
        synapse: nn.Module = LoihiDense(weight.reshape(neurons, -1))
        if synapse.weight.shape[1] != shape[0]:
            raise reader.fail(f"{where}/weight", f"{synapse.weight.shape[1]} inputs for {shape}")
        return synapse
    if len(shape) != 3:
        raise reader.fail(where, f"a {kind} layer on an input of shape {shape} (not C, H, W)")
    if kind == "conv":
        if weight.dim() == 5:  # Lava-DL's own [out, in, kH, kW, 1]
            weight = weight[..., 0]
        try:
            synapse = LoihiConv2d(
                weight,
                reader.pair(group, "stride"),
                reader.pair(group, "padding"),
                reader.pair(group, "dilation"),
                reader.integer(group, "groups"),
            )
        except (ConfigurationError, ShapeError) as error:
            raise reader.fail(where, str(error)) from error
    else:
        synapse = kernel_synapse(reader, group, kind, weight)
    if kind == "convT" and synapse.weight.shape[0] != shape[0]:
        raise reader.fail(
            f"{where}/weight", f"{synapse.weight.shape[0]} input channels for {shape}"
        )
    try:
        produced = tuple(synapse.output_shape(shape))
    except ShapeError as error:
        raise reader.fail(where, str(error)) from error
    if produced != out:
        raise reader.fail(
            f"{where}/shape",
            f"{list(out)} is not the {kind} layer's output {list(produced)} for {shape}",
        )
    return synapse


def _layer(
    reader: _Reader, group: Any, kind: str, shape: tuple[int, ...] | None
) -> tuple[list[nn.Module], tuple[int, ...]]:
    """The modules of one netx layer and its output shape (``(C, H, W)`` or ``(K,)``)."""
    where = group.name
    out = tuple(int(n) for n in reader.integers(group, "shape").reshape(-1))
    weight = read_weight(reader, group)
    first = weight[0] if isinstance(weight, tuple) else weight
    if shape is None and kind == "dense":  # Lava-DL's exports start with the first block
        shape = (int(np.prod(first.shape)) // int(np.prod(out)),)
    if shape is None:
        raise reader.fail(where, f"a {kind} layer before the input shape is known")
    if kind == "dense":
        out = (int(np.prod(out)),)
    if isinstance(weight, tuple):
        if weight[0].shape != weight[1].shape:
            raise reader.fail(
                f"{where}/weight",
                f"weight/real {list(weight[0].shape)} and weight/imag "
                f"{list(weight[1].shape)} differ in shape",
            )
        synapse: nn.Module = LoihiComplexSynapse(
            *(_synapse(reader, group, kind, part, shape, out) for part in weight)
        )
    else:
        synapse = _synapse(reader, group, kind, weight, shape, out)
    bias = None
    if "bias" in group:
        values = torch.from_numpy(reader.integers(group, "bias")).reshape(-1)
        channels = out[0]
        if values.numel() not in (1, channels):
            raise reader.fail(f"{where}/bias", f"{values.numel()} values for {channels} channels")
        bias = values.reshape(channels, *([1] * (len(out) - 1))) if values.numel() > 1 else values
    neuron = _neuron(reader, group, kind, bias, out[0], isinstance(weight, tuple))
    modules = [synapse, neuron]
    if "delay" in group and isinstance(modules[1], LoihiSigmaDelta):
        raise reader.fail(f"{where}/delay", "delays of sigma-delta layers are not supported")
    if "delay" in group:
        delay = torch.from_numpy(reader.integers(group, "delay")).reshape(-1).to(torch.float32)
        if delay.numel() != out[0] or float(delay.min()) < 0 or float(delay.max()) > NETX_MAX_DELAY:
            raise reader.fail(
                f"{where}/delay", f"expected {out[0]} delays from 0 to {NETX_MAX_DELAY}"
            )
        modules.append(
            AxonalDelay(out[0], NETX_MAX_DELAY, init=delay, learnable=False, interpolate=False)
        )
    return modules, out


def _average(reader: _Reader, group: Any, shape: tuple[int, ...], after: bool) -> LoihiAverage:
    """An ``average`` layer: ``shape`` ``[num_outputs, 1, 1]`` (or ``[num_outputs]``)."""
    out = tuple(int(n) for n in reader.integers(group, "shape").reshape(-1))
    if not after:
        raise reader.fail(group.name, "an average layer before any synapse layer")
    if not out or any(n != 1 for n in out[1:]) or out[0] < 1:
        raise reader.fail(f"{group.name}/shape", f"expected [num_outputs, 1, 1], got {list(out)}")
    average = LoihiAverage(out[0])
    try:
        average.output_shape(shape)
    except ShapeError as error:
        raise reader.fail(f"{group.name}/shape", str(error)) from error
    return average


def import_netx(path: str | os.PathLike) -> NetxNetwork:
    """Read a Lava-DL ``netx`` HDF5 network into a fixed-point :class:`NetxNetwork`.

    The layers are read as netx's ``hdf5.Network`` reads them: ``input`` (its ``shape``
    gives the input; an input layer with neurons is not supported), ``dense``,
    ``conv``, ``flatten``; and, as Lava-DL's blocks compute them (netx has no reader for
    these), ``pool``, ``unpool``, ``convT``, complex (``weight/real``, ``weight/imag``)
    synapses and a last ``average`` layer (:mod:`spikeflow.interop.netx_pool`,
    :mod:`spikeflow.interop.netx_blocks`), ``ALIF``, ``RF_PHASE``, ``RF_IZHIKEVICH``
    and ``ADRF_PHASE`` neurons in Lava-DL's fixed point
    (:mod:`spikeflow.interop.netx_neurons`); each CUBA neuron group becomes a
    :class:`~spikeflow.quant.loihi.LoihiCubaLIFNode` (``du = iDecay − 1``, ``dv =
    vDecay``, ``vth = vThMant``, the layer's ``bias`` as ``bias_mant`` with
    ``bias_exp = 6``), a ``delay`` an ``AxonalDelay(interpolate=False)`` of whole steps.
    A sigma-delta file (``SDNN`` neurons) gives an input
    :class:`~spikeflow.interop.netx_layers.LoihiSigmaDeltaInput` (netx's ``Delta``) and
    :class:`~spikeflow.interop.netx_layers.LoihiSigmaDelta` layers (``SigmaDelta``, the
    ``sigma_output`` layer's ``Sigma``): its input is ``round(64 x)``, its output the
    last layer's sums, ``2^18`` per unit. The network computes in integers on integer
    spikes: inference only, no gradient.

    Raises:
        DataFormatError: a missing or malformed dataset, or a layer or neuron type
            netx files may hold that is not supported here (``concat``, graded spikes,
            a bias before ALIF / resonator neurons, sigma-delta activations other than
            ReLU or delays), named with the file and the dataset.
        MissingExtraError: ``h5py`` is not installed (the ``loihi`` extra).
    """
    h5py = require_h5py("netx import")
    path = Path(path)
    try:
        h5 = h5py.File(path, "r")
    except OSError as error:
        raise DataFormatError(f"{path}: not a readable HDF5 file ({error})") from error
    with h5:
        reader = _Reader(path, h5)
        if "layer" not in h5:
            raise reader.fail("/layer", "missing: not a netx network file")
        layers = h5["layer"]
        input_shape: tuple[int, ...] | None = None
        shape: tuple[int, ...] = ()
        modules: list[nn.Module] = []
        for index in range(len(layers)):
            if str(index) not in layers:
                raise reader.fail(f"/layer/{index}", "missing (layers are numbered 0, 1, ...)")
            group = layers[str(index)]
            kind = reader.string(group, "type")
            if kind == "concat":
                raise reader.fail(
                    f"{group.name}/type",
                    "layer type 'concat' is not supported: netx's own reader raises "
                    "NotImplementedError for it, and a netx file is a chain of numbered "
                    "layers that names no inputs for a concat (no Lava-DL block writes one)",
                )
            if modules and isinstance(modules[-1], LoihiAverage):
                raise reader.fail(
                    group.name, "a layer after an average layer (a float readout: it must be last)"
                )
            if kind not in _SUPPORTED:
                raise reader.fail(
                    f"{group.name}/type", f"layer type {kind!r} is not supported ({_SUPPORTED})"
                )
            if kind == "input":
                if modules or input_shape is not None:
                    raise reader.fail(group.name, "an input layer after the first layer")
                if "neuron" in group:
                    modules.append(sdnn_input_neuron(reader, group))
                input_shape = tuple(int(n) for n in reader.integers(group, "shape").reshape(-1))
                shape = input_shape
            elif kind == "flatten":
                # netx flattens a block's output, its sigma-delta input block's too
                flattenable = (*_SYNAPSES, LoihiSigmaDeltaInput)
                if not any(isinstance(m, flattenable) for m in modules):
                    raise reader.fail(
                        group.name, "a flatten before any dense, conv or sigma-delta input layer"
                    )
                modules.append(Flatten())
                shape = (int(np.prod(shape)),)
            elif kind == "average":
                modules.append(_average(reader, group, shape, bool(modules)))
                shape = (modules[-1].num_outputs,)
            else:
                block, out = _layer(reader, group, kind, shape if input_shape else None)
                if input_shape is None:
                    dense = getattr(block[0], "real", block[0])  # (a complex synapse's)
                    input_shape = (int(dense.weight.shape[1]),)
                modules.extend(block)
                shape = out
        if input_shape is None or not any(isinstance(m, _SYNAPSES) for m in modules):
            raise reader.fail("/layer", "no input shape and synapse layer found")
        return NetxNetwork(input_shape, *modules)
