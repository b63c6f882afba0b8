"""The per-thread switch of :func:`spikeflow.kernels.second_order` (here, without
imports, so that the surrogates can read it: see ``spikeflow/kernels/second_order.py``)."""

from __future__ import annotations

import threading

LOCAL = threading.local()

#: The refusal of a neuron traced by ``torch.compile`` under the opt-in.
COMPILED_REFUSAL = (
    "spikeflow.kernels.second_order() is for eager mode, but a spiking neuron was traced "
    "by torch.compile under it: compiled, a double backward is refused by AOTAutograd "
    "(inductor, aot_eager) and silently loses the surrogate spike's second-order terms "
    "under Dynamo's 'eager' backend (torch 2.13); run the model uncompiled for "
    "second-order gradients"
)


def second_order_enabled() -> bool:
    """Whether this thread is inside :func:`spikeflow.kernels.second_order` (switched on)."""
    return getattr(LOCAL, "enabled", False)
