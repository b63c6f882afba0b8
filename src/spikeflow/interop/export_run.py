"""Export a ``spikeflow train`` run's network to NIR or Lava-DL netx (``spikeflow export``).

The run's model comes back with :func:`~spikeflow.training.load_trained_model`, is put
in its inference form by :func:`~spikeflow.interop.prepare_for_export` (batch norm
folded, dropout removed, voting as a Linear) and written by
:func:`~spikeflow.interop.export_to_nir` / :func:`~spikeflow.interop.export_netx`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from spikeflow.errors import ConfigurationError

__all__ = ["EXPORT_FORMATS", "ExportedRun", "export_trained_run", "netx_problems"]

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
    """

    path: Path
    format: str
    checkpoint: Path
    model: nn.Module
    input_shape: tuple[int, ...]
    nodes: int


def _check_destination(out: str | os.PathLike) -> Path:
    path = Path(out)
    if path.is_dir():
        raise ConfigurationError(f"--out {path} is a folder; give the file to write")
    if not path.parent.is_dir():
        raise ConfigurationError(f"--out {path}: the folder {path.parent} does not exist")
    return path


def netx_problems(prepared: nn.Module) -> list[str]:
    """What in a prepared network (:func:`~spikeflow.interop.prepare_for_export`) Lava-DL's
    netx cannot carry, one entry per kind of problem naming its modules (empty: nothing
    found; :func:`export_netx` checks the rest). A netx block is a bias-free synapse
    (Linear, Conv2d) and its CUBA neurons, with no pooling."""
    from spikeflow.interop.netx_layers import NetxNetwork
    from spikeflow.neurons import CubaLIFNode, IFNode, LIFNode
    from spikeflow.neurons.base import BaseNode
    from spikeflow.quant.loihi import LoihiCubaLIFNode

    if not isinstance(prepared, nn.Sequential) or isinstance(prepared, NetxNetwork):
        return []
    found: dict[str, list[str]] = {kind: [] for kind in _NETX_PROBLEMS}
    items = list(prepared.named_children())
    for index, (name, module) in enumerate(items):
        where = f"'{name}' ({type(module).__name__})"
        if isinstance(module, (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)):
            found["pooling"].append(where)
        elif isinstance(module, (nn.Linear, nn.Conv2d)):
            if module.bias is not None and bool(module.bias.ne(0).any()):
                found["bias"].append(where)
            follower = items[index + 1][1] if index + 1 < len(items) else None
            if not isinstance(follower, BaseNode):
                found["read-out"].append(where)
        elif isinstance(module, BaseNode) and not (
            isinstance(module, (CubaLIFNode, LoihiCubaLIFNode)) or type(module) in (IFNode, LIFNode)
        ):
            found["neuron"].append(where)
    return [f"{_NETX_PROBLEMS[kind]}: {', '.join(names)}" for kind, names in found.items() if names]


#: netx's limits a zoo network meets, as :func:`netx_problems` names them.
_NETX_PROBLEMS = {
    "pooling": "pooling, which netx has no layer for",
    "bias": "a layer bias (a folded batch norm, or bias=True), which netx's synapses do not "
    "have (train with batch_norm=false and bias-free layers)",
    "neuron": "neurons that are not Loihi's CUBA neuron (netx takes CubaLIFNode, or "
    "IFNode/LIFNode with decay_input=False and a hard reset to 0)",
    "read-out": "a layer without spiking neurons after it (a netx block is a synapse and "
    "its neurons; a voting or logit read-out is computed on the host)",
}


def export_trained_run(
    run: str | os.PathLike,
    to: str,
    out: str | os.PathLike,
    *,
    data_dir: str | None = None,
    dt: float = 1.0,
    dtype: torch.dtype = torch.float32,
) -> ExportedRun:
    """Write the network of a ``spikeflow train`` run to ``out`` as NIR or netx.

    Args:
        run: a run folder (its ``best.pt``, else its ``last.pt``) or a checkpoint file.
        to: ``"nir"`` (HDF5 NIR graph, :func:`~spikeflow.interop.write_nir`) or
            ``"netx"`` (Lava-DL's HDF5 network for Loihi 2).
        out: the file to write (its folder must exist; replaced atomically).
        data_dir: where the run's dataset is now (default: the run's); its test split
            sizes the model as the run did.
        dt: NIR's time step (time constants written as ``tau_steps * dt``; NIR only).
        dtype: the dtype of the exported weights (NIR only): ``torch.float64`` writes the
            batch norm folded into the weights without float32 rounding.

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
    trained = load_trained_model(run, data_dir=data_dir)
    x, _ = trained.batch(1)
    model = trained.model.to(dtype) if to == "nir" else trained.model
    try:
        prepared = prepare_for_export(model)
    except ConfigurationError as error:
        raise ConfigurationError(f"{trained.checkpoint}: {error}") from error
    input_shape = tuple(int(n) for n in x.shape[2:])
    if to == "nir":
        graph = export_to_nir(prepared, x.to(dtype), dt=dt)
        write_nir(graph, path)
        nodes = len(graph.nodes)
    else:
        problems = netx_problems(prepared)
        if problems:
            raise ConfigurationError(
                f"{trained.checkpoint}: the network does not fit Loihi's netx format: "
                + "; ".join(problems)
                + ". NIR export (--to nir) may take it (docs/loihi.md lists netx's limits)"
            )
        export_netx(prepared, path, input_shape)
        with h5py.File(path, "r") as h5:
            nodes = len(h5["layer"])
    return ExportedRun(path, to, trained.checkpoint, prepared, input_shape, nodes)
