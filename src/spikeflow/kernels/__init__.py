"""Execution backends for neuron declarations.

``"torch"`` is the reference loop (:mod:`spikeflow.kernels.reference`); ``"auto"``
picks the fastest backend available for the input's device.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from spikeflow.errors import ConfigurationError
from spikeflow.kernels.reference import FiringRule, run_reference

__all__ = ["BACKENDS", "FiringRule", "check_backend", "resolve_backend", "run_reference"]

#: Backend name -> runner with the signature of :func:`run_reference`.
BACKENDS: dict[str, Callable[..., tuple]] = {"torch": run_reference}


def check_backend(name: str) -> str:
    """Return ``name`` if it is ``"auto"`` or a known backend, else raise."""
    if name != "auto" and name not in BACKENDS:
        valid = ", ".join(repr(n) for n in ("auto", *BACKENDS))
        raise ConfigurationError(f"unknown backend {name!r}; choose one of {valid}")
    return name


def resolve_backend(name: str, x: Tensor) -> Callable[..., tuple]:
    """The runner for backend ``name`` on ``x``'s device (``"auto"``: the best one)."""
    check_backend(name)
    if name == "auto":
        return run_reference
    return BACKENDS[name]
