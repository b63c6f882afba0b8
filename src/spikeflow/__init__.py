"""spikeflow: a full-stack spiking deep learning framework on PyTorch.

Spiking tensors are time-major, ``[T, B, ...]``. Start with :mod:`spikeflow.neurons`,
:mod:`spikeflow.layers`, :mod:`spikeflow.surrogate` and :mod:`spikeflow.functional`.
"""

from spikeflow import (
    conversion,
    encoding,
    errors,
    functional,
    interop,
    layers,
    learn,
    losses,
    models,
    neurons,
    prune,
    quant,
    surrogate,
)
from spikeflow.errors import SpikeflowError

__version__ = "0.1.0"

__all__ = [
    "SpikeflowError",
    "__version__",
    "conversion",
    "encoding",
    "errors",
    "functional",
    "interop",
    "layers",
    "learn",
    "losses",
    "models",
    "neurons",
    "prune",
    "quant",
    "surrogate",
]
