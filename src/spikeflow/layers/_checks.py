"""Argument checks shared by the layers (each raises ConfigurationError)."""

from __future__ import annotations

import math

from spikeflow.errors import ConfigurationError

__all__ = ["check_int", "check_real"]


def check_int(name: str, value: object, minimum: int) -> int:
    """``value`` as an int, if it is an integer ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_real(
    name: str,
    value: object,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a finite float within the given bounds (closed unless ``*_open``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"{name} must be a real number, got {value!r}")
    v = float(value)
    ok = math.isfinite(v)
    if ok and low is not None:
        ok = v > low if low_open else v >= low
    if ok and high is not None:
        ok = v < high if high_open else v <= high
    if not ok:
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        interval = f"{'(' if low_open or low is None else '['}{lo}, {hi}" + (
            ")" if high_open or high is None else "]"
        )
        raise ConfigurationError(f"{name} must be a finite number in {interval}, got {value!r}")
    return v
