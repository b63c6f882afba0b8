"""Argument checks shared across the package (neurons, surrogates, data transforms)."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from spikeflow.errors import ConfigurationError


def check_flag(owner: str, name: str, value: Any) -> bool:
    """``value`` as a bool, or a ConfigurationError naming ``owner`` and ``name``.

    Only ``True``/``False`` (numpy's too) are flags: ``bool("False")`` is True, so a
    string read from a config file would silently turn an option on.
    """
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise ConfigurationError(
        f"{owner}: {name} must be True or False, got {value!r} ({type(value).__name__})"
    )


def is_count(value: Any) -> bool:
    """Whether ``value`` is an integer >= 1: a Python or numpy integer, not a bool."""
    return not isinstance(value, bool) and isinstance(value, numbers.Integral) and bool(value >= 1)


def check_number(
    owner: str,
    name: str,
    value: Any,
    *,
    low: float = -math.inf,
    high: float = math.inf,
    open_low: bool = False,
    open_high: bool = True,
) -> float:
    """``value`` as a float if it is a finite real number in the interval, else a
    ConfigurationError naming ``owner``, ``name``, the interval and the value.

    Python and numpy reals count; bools and strings do not. The interval is
    ``[low, high)`` by default (``open_low``/``open_high`` choose its ends).
    """
    ok = (
        not isinstance(value, (bool, np.bool_))
        and isinstance(value, numbers.Real)
        and math.isfinite(value)
        and (value > low if open_low else value >= low)
        and (value < high if open_high else value <= high)
    )
    if not ok:
        left, right = "(" if open_low else "[", ")" if open_high else "]"
        raise ConfigurationError(
            f"{owner}: {name} must be a number in {left}{low:g}, {high:g}{right}, got {value!r}"
        )
    return float(value)
