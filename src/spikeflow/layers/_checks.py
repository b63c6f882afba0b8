"""Argument checks the layers use (each raises ConfigurationError): the general ones
live in :mod:`spikeflow._checks`; :func:`check_surrogate` is the layers' own."""

from __future__ import annotations

from spikeflow._checks import check_int, check_real
from spikeflow.errors import ConfigurationError
from spikeflow.surrogate import Surrogate

__all__ = ["check_int", "check_real", "check_surrogate"]


def check_surrogate(owner: str, name: str, value: object, optional: bool = False) -> None:
    """Raise a ConfigurationError naming ``owner`` and ``name`` unless ``value`` is a
    :class:`~spikeflow.surrogate.Surrogate` (or None, where ``optional``)."""
    if value is None and optional:
        return
    if not isinstance(value, Surrogate):
        raise ConfigurationError(
            f"{owner}: {name} must be a spikeflow.surrogate.Surrogate instance"
            f"{' or None' if optional else ''}, got {type(value).__name__}"
        )
