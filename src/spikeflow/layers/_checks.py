"""Argument checks shared by the layers (each raises ConfigurationError)."""

from __future__ import annotations

from spikeflow._checks import check_real
from spikeflow.errors import ConfigurationError

__all__ = ["check_int", "check_real"]


def check_int(name: str, value: object, minimum: int) -> int:
    """``value`` as an int, if it is an integer ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)
