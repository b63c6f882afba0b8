"""The per-thread switch of :func:`spikeflow.kernels.second_order` (here, importing
nothing of spikeflow's but its errors, so that the surrogates can read it: see
``spikeflow/kernels/second_order.py``)."""

from __future__ import annotations

import threading

import torch

from spikeflow.errors import ConfigurationError

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


def refuse_compiled_second_order() -> None:
    """Raise the :data:`COMPILED_REFUSAL` if ``torch.compile`` is tracing under the
    opt-in (Dynamo guards on the switch; without ``fullgraph`` the error is a graph
    break, and the caller then runs eagerly, where its second-order terms are exact).

    Raises:
        ConfigurationError: tracing under :func:`spikeflow.kernels.second_order`.
    """
    if torch.compiler.is_compiling() and second_order_enabled():
        raise ConfigurationError(COMPILED_REFUSAL)
