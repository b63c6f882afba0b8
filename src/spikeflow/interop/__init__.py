"""Interoperability with other tools: NIR (the Neuromorphic Intermediate Representation).

* :func:`export_to_nir` / :func:`write_nir`: a spikeflow network to a ``nir.NIRGraph``
  and to a file;
* :func:`import_from_nir` / :func:`read_nir`: a NIR graph (object or file) to a
  runnable time-major spikeflow network (:class:`NIRGraphNetwork`);
* :mod:`~spikeflow.interop.nir_mapping`: the discretisation (continuous NIR time
  constants to discrete steps);
* :class:`Scale`, :class:`Threshold`: NIR's elementwise nodes as modules;
  :class:`OffDiagonalLinear`: an imported recurrent weight without self-connections.

NIR support needs the ``nir`` extra (``pip install 'spikeflow[nir]'``: ``nir`` and
``nirtorch``); without it these functions raise
:class:`~spikeflow.errors.MissingExtraError`. See ``docs/nir.md``.
"""

from spikeflow.interop.nir_export import export_to_nir, write_nir
from spikeflow.interop.nir_graph import NIRGraphNetwork, inline_subgraphs
from spikeflow.interop.nir_import import import_from_nir, read_nir
from spikeflow.interop.nir_mapping import CONVENTIONS
from spikeflow.interop.nir_modules import OffDiagonalLinear, Scale, Threshold

#: Short aliases, as snnTorch and Norse name them.
to_nir = export_to_nir
from_nir = import_from_nir

__all__ = [
    "CONVENTIONS",
    "NIRGraphNetwork",
    "OffDiagonalLinear",
    "Scale",
    "Threshold",
    "export_to_nir",
    "from_nir",
    "import_from_nir",
    "inline_subgraphs",
    "read_nir",
    "to_nir",
    "write_nir",
]
