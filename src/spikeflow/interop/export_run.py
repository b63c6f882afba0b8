"""Export a ``spikeflow train`` run's network to NIR or Lava-DL netx (``spikeflow export``).

The run's model comes back with :func:`~spikeflow.training.load_trained_model`, is put
in its inference form by :func:`~spikeflow.interop.prepare_for_export` (batch norm
folded, dropout removed, voting as a Linear) and written by
:func:`~spikeflow.interop.export_to_nir` / :func:`~spikeflow.interop.export_netx`.
"""

from __future__ import annotations

import copy
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from spikeflow.errors import ConfigurationError

__all__ = [
    "EXPORT_FORMATS",
    "ExportedRun",
    "NetxParts",
    "export_trained_run",
    "netx_parts",
    "netx_problems",
    "on_netx_grid",
]

#: The formats ``spikeflow export --to`` writes.
EXPORT_FORMATS = ("nir", "netx")


@dataclass(frozen=True)
class ExportedRun:
    """What :func:`export_trained_run` wrote.

    Attributes:
        path: the file written.
        format: ``"nir"`` or ``"netx"``.
        checkpoint: the checkpoint the weights came from.
        model: the prepared network that was exported (evaluation mode, the exported dtype).
        input_shape: one sample's shape per time step (the exported input).
        nodes: the number of NIR nodes, or netx layers (the input layer included).
        parts: netx only: the host's encoder, the network in the file and the host's
            read-out (:func:`netx_parts`); ``input_shape`` is then the file's input.
    """

    path: Path
    format: str
    checkpoint: Path
    model: nn.Module
    input_shape: tuple[int, ...]
    nodes: int
    parts: NetxParts | None = None


@dataclass(frozen=True)
class NetxParts:
    """A prepared network cut where Lava-DL's netx needs it (:func:`netx_parts`).

    ``readout(chip(encoder(x)))`` computes what the prepared network computes (in
    float64 to rounding: pooling folded into the dense layer after it).

    Attributes:
        encoder: the layers up to the first neurons, run on the host (a CUBA layer on
            Loihi takes binary spikes, not a static image's values), or None where the
            input is spikes.
        chip: the blocks netx carries (written by :func:`export_netx`).
        readout: the layers after the last neurons (the voting ``Linear``), run on the
            host on the chip's output spikes, or None.
        input_shape: one sample's shape per step at the chip's input.
    """

    encoder: nn.Sequential | None
    chip: nn.Sequential
    readout: nn.Sequential | None
    input_shape: tuple[int, ...]


def _sample_shapes(model: nn.Sequential, input_shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """The one-sample shape at the input of each module of ``model`` (and at its end)."""
    from spikeflow.functional import reset_net

    probe = copy.deepcopy(model).to(torch.float64)
    reset_net(probe)
    device = next(probe.parameters(), torch.empty(0)).device  # (a run on a GPU)
    x = torch.zeros(1, 1, *input_shape, dtype=torch.float64, device=device)
    shapes = [tuple(input_shape)]
    with torch.no_grad():
        for module in probe:
            x = module(x)
            shapes.append(tuple(int(n) for n in x.shape[2:]))
    return shapes


def _pooling_factor(pool: nn.Module) -> tuple[int, float] | None:
    """``(k, scale)`` of a non-overlapping ``k x k`` average or sum pooling (each input
    in one window, times ``scale``), or None for another pooling."""
    if not isinstance(pool, nn.AvgPool2d):
        return None
    kernel, stride = nn.modules.utils._pair(pool.kernel_size), nn.modules.utils._pair(pool.stride)
    if kernel[0] != kernel[1] or tuple(stride) != tuple(kernel) or pool.ceil_mode:
        return None
    if nn.modules.utils._pair(pool.padding) != (0, 0):
        return None
    k = int(kernel[0])
    return k, 1.0 / (pool.divisor_override or k * k)


def _folded_pooling(pool: nn.Module, linear: nn.Linear, shape: tuple[int, ...]) -> nn.Linear | None:
    """The Linear on the unpooled, flattened ``shape`` ``(C, H, W)`` equal to ``pool``,
    a flatten and ``linear`` (sum and average pooling are linear maps), or None."""
    from spikeflow.layers import Linear

    factor = _pooling_factor(pool)
    if factor is None or len(shape) != 3:
        return None
    k, scale = factor
    channels, height, width = shape
    pooled = (channels, height // k, width // k)
    if linear.in_features != channels * pooled[1] * pooled[2]:
        return None
    weight = linear.weight.detach().reshape(linear.out_features, *pooled) * scale
    weight = weight.repeat_interleave(k, dim=2).repeat_interleave(k, dim=3)
    full = weight.new_zeros(linear.out_features, channels, height, width)
    full[:, :, : weight.shape[2], : weight.shape[3]] = weight  # rows a floor drops: 0
    mode = getattr(linear, "step_mode", "m")
    folded = Linear(
        channels * height * width,
        linear.out_features,
        bias=linear.bias is not None,
        dtype=linear.weight.dtype,
        step_mode=mode,
    )
    with torch.no_grad():
        folded.weight.copy_(full.reshape(linear.out_features, -1))
        if linear.bias is not None:
            folded.bias.copy_(linear.bias)
    return folded.requires_grad_(False)


def netx_parts(
    prepared: nn.Sequential, input_shape: tuple[int, ...], spiking_input: bool
) -> NetxParts:
    """Cut a prepared network (:func:`~spikeflow.interop.prepare_for_export`) where netx
    needs it: a non-overlapping sum or average pooling followed by a flatten and a
    Linear is folded into that Linear (on the unpooled input: each input's weight is
    its window's, times 1, or ``1/k²`` for average pooling); the layers after the last
    neurons are the host's read-out; without ``spiking_input`` (a static image) the
    layers up to the first neurons are the host's encoder.

    Args:
        prepared: the prepared ``nn.Sequential``.
        input_shape: one sample's shape per step at the network's input.
        spiking_input: whether the input is binary spikes (else it goes through the
            encoder first).
    """
    from spikeflow.interop.prepare import ResidualBlockForExport
    from spikeflow.layers import Flatten
    from spikeflow.neurons.base import BaseNode

    shapes = _sample_shapes(prepared, tuple(input_shape))
    items = list(prepared.named_children())
    kept: list[tuple[str, nn.Module, tuple[int, ...]]] = []
    index = 0
    while index < len(items):
        name, module = items[index]
        if index + 2 < len(items) and isinstance(items[index + 1][1], (Flatten, nn.Flatten)):
            linear = items[index + 2][1]
            flatten = items[index + 1][1]
            folded = (
                _folded_pooling(module, linear, shapes[index])
                if isinstance(linear, nn.Linear)
                and (flatten.start_dim, flatten.end_dim) in ((1, -1), (-3, -1))
                else None
            )
            if folded is not None:
                kept.append((items[index + 1][0], flatten, shapes[index]))
                kept.append((items[index + 2][0], folded, (int(np.prod(shapes[index])),)))
                index += 3
                continue
        kept.append((name, module, shapes[index]))
        index += 1
    # a residual block holds neurons: kept on the chip, where netx_problems names it
    # (cut into the read-out, a SEW net's chip was empty: "no dense or conv layer")
    neurons = [
        i
        for i, (_, module, _) in enumerate(kept)
        if isinstance(module, (BaseNode, ResidualBlockForExport))
    ]
    cut = neurons and not spiking_input and isinstance(kept[neurons[0]][1], BaseNode)
    first = neurons[0] + 1 if cut else 0
    last = neurons[-1] + 1 if neurons else len(kept)

    def sequence(part: list[tuple[str, nn.Module, tuple[int, ...]]]) -> nn.Sequential | None:
        return nn.Sequential(OrderedDict((n, m) for n, m, _ in part)) if part else None

    chip = sequence(kept[first:last]) or nn.Sequential()
    shape = kept[first][2] if first < len(kept) else shapes[-1]
    return NetxParts(sequence(kept[:first]), chip, sequence(kept[last:]), tuple(shape))


def on_netx_grid(chip: nn.Sequential) -> nn.Sequential:
    """A float64 copy of ``chip`` (:attr:`NetxParts.chip`) with the numbers its netx file
    holds: each Linear / Conv2d weight on Lava-DL's grid (``w_int / 64``,
    :func:`~spikeflow.interop.lava_dl_weights`) and its bias on the neuron bias's
    (``round(64 b) / 64``), each PLIF layer as the LIF layer of its 12-bit decay
    (:func:`~spikeflow.interop.netx_plif.plif_as_lif`), each IF / LIF threshold as the
    file's ``vThMant / 64 = int(64 θ) / 64`` (a learned θ is rarely on that grid). With
    IF neurons (or LIF at ``tau = 2``), :func:`~spikeflow.interop.import_netx`'s
    network gives its spikes exactly."""
    from spikeflow.interop.netx import lava_dl_weights
    from spikeflow.interop.netx_plif import plif_as_lif
    from spikeflow.neurons import IFNode, LIFNode

    grid = copy.deepcopy(chip).to(torch.float64)
    names = [name for name, _ in grid.named_children()]
    fixed = plif_as_lif(names, [module for _, module in grid.named_children()])
    grid = nn.Sequential(OrderedDict(zip(names, fixed, strict=True)))
    with torch.no_grad():
        for module in grid.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                module.weight.copy_(lava_dl_weights(module.weight).to(torch.float64) / 64)
                if module.bias is not None:
                    module.bias.copy_(torch.round(module.bias * 64) / 64)
            elif type(module) in (IFNode, LIFNode):  # netx's vThMant = int(64 θ)
                theta = module.v_threshold
                if isinstance(theta, torch.Tensor):
                    theta.copy_(torch.trunc(theta * 64) / 64)
                else:
                    module.v_threshold = int(theta * 64) / 64
    return grid


def _check_destination(out: str | os.PathLike) -> Path:
    path = Path(out)
    if path.is_dir():
        raise ConfigurationError(f"--out {path} is a folder; give the file to write")
    if not path.parent.is_dir():
        raise ConfigurationError(f"--out {path}: the folder {path.parent} does not exist")
    return path


def netx_problems(chip: nn.Module) -> list[str]:
    """What in the network a netx file is to hold (:attr:`NetxParts.chip`) Lava-DL's netx
    cannot carry, one entry per kind of problem naming its modules (empty: nothing
    found; :func:`export_netx` checks the rest). A netx block is a synapse (Linear,
    Conv2d) and its CUBA neurons, the synapse's bias only before IF / LIF neurons (whose
    voltage adds it each step), with no pooling (:func:`netx_parts` folds a sum or
    average pooling before a flatten and a Linear into the Linear)."""
    from spikeflow.interop.netx_layers import NetxNetwork
    from spikeflow.interop.netx_plif import plif_fold_problem, plif_problem
    from spikeflow.interop.prepare import ResidualBlockForExport
    from spikeflow.neurons import CubaLIFNode, IFNode, LIFNode, ParametricLIFNode
    from spikeflow.neurons.base import BaseNode
    from spikeflow.quant.loihi import LoihiCubaLIFNode

    if not isinstance(chip, nn.Sequential) or isinstance(chip, NetxNetwork):
        return []
    found: dict[str, list[str]] = {kind: [] for kind in _NETX_PROBLEMS}
    items = list(chip.named_children())
    for index, (name, module) in enumerate(items):
        where = f"'{name}' ({type(module).__name__})"
        follower = items[index + 1][1] if index + 1 < len(items) else None
        if isinstance(module, nn.modules.pooling._AvgPoolNd):
            found["pooling"].append(where)
        elif isinstance(module, ResidualBlockForExport):
            found["residual"].append(where)
        elif isinstance(follower, ResidualBlockForExport):
            continue  # what feeds a residual block: named with the block
        elif isinstance(module, (nn.Linear, nn.Conv2d)):
            biased = module.bias is not None and bool(module.bias.ne(0).any())
            if biased and type(follower) not in (IFNode, LIFNode, ParametricLIFNode):
                found["bias"].append(where)
            if not isinstance(follower, BaseNode):
                found["read-out"].append(where)
        elif type(module) is ParametricLIFNode:
            before = items[index - 1][1] if index > 0 else None
            problem = plif_problem(module) or plif_fold_problem(before, module)
            if problem is not None:
                found["plif"].append(f"{where}: {problem}")
        elif isinstance(module, BaseNode) and not (
            isinstance(module, (CubaLIFNode, LoihiCubaLIFNode)) or type(module) in (IFNode, LIFNode)
        ):
            found["neuron"].append(where)
    return [f"{_NETX_PROBLEMS[kind]}: {', '.join(names)}" for kind, names in found.items() if names]


#: netx's limits a zoo network meets, as :func:`netx_problems` names them.
_NETX_PROBLEMS = {
    "pooling": "pooling, which Lava's netx runtime has no layer for (a non-overlapping sum "
    "or average pooling followed by a flatten and a Linear is folded into the Linear; "
    "export_netx writes Lava-DL's pool, which only import_netx reads)",
    "bias": "a layer bias (a folded batch norm, or bias=True) before neurons other than "
    "IFNode / LIFNode / ParametricLIFNode (Loihi adds a bias to the voltage; train with "
    "--neuron if, or batch_norm=false and bias-free layers)",
    "neuron": "neurons that are not Loihi's CUBA neuron (netx takes CubaLIFNode, or "
    "IFNode/LIFNode with decay_input=False, or ParametricLIFNode with one tau per layer, "
    "each with a hard reset to 0: train with --neuron if --neuron-kwargs "
    "strict_firing=true)",
    "plif": "PLIF layers netx cannot hold",
    "residual": "residual blocks (the sum of a branch and a shortcut; a netx file is a "
    "chain of blocks, each fed by the one before, with no sums)",
    "read-out": "a layer without spiking neurons after it before the last neurons (a "
    "netx block is a synapse and its neurons; only the read-out after the last neurons "
    "is computed on the host)",
}


def export_trained_run(
    run: str | os.PathLike,
    to: str,
    out: str | os.PathLike,
    *,
    data_dir: str | None = None,
    dt: float = 1.0,
    dtype: torch.dtype = torch.float32,
    ema: bool = False,
) -> ExportedRun:
    """Write the network of a ``spikeflow train`` run to ``out`` as NIR or netx.

    Args:
        run: a run folder (its ``best.pt``, else its ``last.pt``) or a checkpoint file.
        to: ``"nir"`` (HDF5 NIR graph, :func:`~spikeflow.interop.write_nir`) or
            ``"netx"`` (Lava-DL's HDF5 network for Loihi 2: the part of the network
            :func:`netx_parts` leaves for the chip; the host's encoder, for a static
            image, and read-out are in :attr:`ExportedRun.parts`).
        out: the file to write (its folder must exist; replaced atomically).
        data_dir: where the run's dataset is now (default: the run's); its test split
            sizes the model as the run did.
        dt: NIR's time step (time constants written as ``tau_steps * dt``; NIR only).
        dtype: the dtype of the exported weights (NIR only): ``torch.float64`` writes the
            batch norm folded into the weights without float32 rounding.
        ema: export the moving average of the weights a ``--model-ema`` run kept.

    Raises:
        MissingExtraError: the ``nir`` extra (``nir``, ``nirtorch``) for NIR, or the
            ``loihi`` extra (``h5py``) for netx, is not installed (checked first).
        ConfigurationError: an unknown format, a bad ``out``, or a network with modules
            the format cannot express (each named: max pooling, BNTT, TEBN, a layer bias
            on Loihi, the model's own layers, ...).
    """
    from spikeflow.interop._nir_deps import require_nirtorch
    from spikeflow.interop.netx import export_netx, require_h5py
    from spikeflow.interop.nir_export import export_to_nir, write_nir
    from spikeflow.interop.prepare import prepare_for_export
    from spikeflow.training import load_trained_model

    if to not in EXPORT_FORMATS:
        raise ConfigurationError(f"--to must be one of {EXPORT_FORMATS}, got {to!r}")
    if dtype not in (torch.float32, torch.float64):
        raise ConfigurationError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    h5py = require_h5py("spikeflow export --to netx") if to == "netx" else None
    if to == "nir":
        require_nirtorch("spikeflow export --to nir")
    path = _check_destination(out)
    trained = load_trained_model(run, data_dir=data_dir, ema=ema)
    x, _ = trained.batch(1)
    model = trained.model.to(dtype) if to == "nir" else trained.model
    try:
        prepared = prepare_for_export(model, x.to(dtype) if to == "nir" else x)
    except ConfigurationError as error:
        raise ConfigurationError(f"{trained.checkpoint}: {error}") from error
    input_shape = tuple(int(n) for n in x.shape[2:])
    if to == "nir":
        graph = export_to_nir(prepared, x.to(dtype), dt=dt)
        write_nir(graph, path)
        nodes = len(graph.nodes)
    else:
        if not isinstance(prepared, nn.Sequential):
            raise ConfigurationError(
                f"{trained.checkpoint}: netx holds a chain of layers; the prepared "
                f"{type(prepared).__name__} is not one (its forward is its own)"
            )
        parts = netx_parts(prepared, input_shape, spiking_input=not trained.static)
        problems = netx_problems(parts.chip)
        if problems:
            raise ConfigurationError(
                f"{trained.checkpoint}: the network does not fit Loihi's netx format: "
                + "; ".join(problems)
                + ". NIR export (--to nir) may take it (docs/loihi.md lists netx's limits)"
            )
        export_netx(parts.chip, path, parts.input_shape)
        with h5py.File(path, "r") as h5:
            nodes = len(h5["layer"])
        return ExportedRun(path, to, trained.checkpoint, prepared, parts.input_shape, nodes, parts)
    return ExportedRun(path, to, trained.checkpoint, prepared, input_shape, nodes)
