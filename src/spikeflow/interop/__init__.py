"""Interoperability with other tools: NIR (the Neuromorphic Intermediate Representation).

* :func:`export_to_nir` / :func:`write_nir`: a spikeflow network to a ``nir.NIRGraph``
  and to a file;
* :func:`import_from_nir` / :func:`read_nir`: a NIR graph (object or file) to a
  runnable time-major spikeflow network (:class:`NIRGraphNetwork`);
* :mod:`~spikeflow.interop.nir_mapping`: the discretisation (continuous NIR time
  constants to discrete steps);
* :class:`Scale`, :class:`Threshold`: NIR's elementwise nodes as modules;
  :class:`OffDiagonalLinear`: an imported recurrent weight without self-connections.

* :func:`prepare_for_export`: a trained network's inference form (batch norm folded,
  dropout removed, voting as a Linear, containers flattened) for both exports;

* :func:`export_netx` / :func:`import_netx`: Lava-DL's ``netx`` HDF5 networks for
  Loihi 2 (Lava), with the fixed-point :class:`NetxNetwork` (``docs/loihi.md``; needs
  ``h5py``, the ``loihi`` extra).

NIR support needs the ``nir`` extra (``pip install 'spikeflow[nir]'``: ``nir`` and
``nirtorch``); without it these functions raise
:class:`~spikeflow.errors.MissingExtraError`. See ``docs/nir.md``.
"""

from spikeflow.interop.netx import export_netx, import_netx, lava_dl_weights
from spikeflow.interop.netx_layers import (
    LoihiConv2d,
    LoihiDense,
    LoihiSigmaDelta,
    LoihiSigmaDeltaInput,
    NetxNetwork,
    StateOverflowError,
)
from spikeflow.interop.netx_neurons import (
    LoihiAdaptiveResonatorNode,
    LoihiALIFNode,
    LoihiResonatorNode,
)
from spikeflow.interop.netx_pool import (
    LoihiAverage,
    LoihiComplexSynapse,
    LoihiConvTranspose2d,
    LoihiSumPool,
    LoihiUnpool,
)
from spikeflow.interop.nir_export import export_to_nir, write_nir
from spikeflow.interop.nir_graph import NIRGraphNetwork, inline_subgraphs
from spikeflow.interop.nir_import import import_from_nir, read_nir
from spikeflow.interop.nir_mapping import CONVENTIONS
from spikeflow.interop.nir_modules import OffDiagonalLinear, Scale, Threshold
from spikeflow.interop.prepare import prepare_for_export

#: Short aliases, as snnTorch and Norse name them.
to_nir = export_to_nir
from_nir = import_from_nir

__all__ = [
    "CONVENTIONS",
    "LoihiALIFNode",
    "LoihiAdaptiveResonatorNode",
    "LoihiAverage",
    "LoihiComplexSynapse",
    "LoihiConv2d",
    "LoihiConvTranspose2d",
    "LoihiDense",
    "LoihiResonatorNode",
    "LoihiSigmaDelta",
    "LoihiSigmaDeltaInput",
    "LoihiSumPool",
    "LoihiUnpool",
    "NIRGraphNetwork",
    "NetxNetwork",
    "OffDiagonalLinear",
    "Scale",
    "StateOverflowError",
    "Threshold",
    "export_netx",
    "export_to_nir",
    "from_nir",
    "import_from_nir",
    "import_netx",
    "inline_subgraphs",
    "lava_dl_weights",
    "prepare_for_export",
    "read_nir",
    "to_nir",
    "write_nir",
]
