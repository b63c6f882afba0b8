"""Argument checks shared by the event transforms' Tonic-style forms: a factor in
``(0, 1]``, a ``(w, h)`` pair of integers, a probability or a ``(low, high)`` range of
them; each raises a ConfigurationError naming the argument."""

from __future__ import annotations

import numbers

from spikeflow._checks import check_int, check_real
from spikeflow.errors import ConfigurationError

__all__ = ["factor_in_unit", "pair_of_ints", "probability_range"]


def factor_in_unit(name: str, value: object) -> float:
    """A spatial factor in ``(0, 1]``, else a ConfigurationError naming it."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not 0.0 < float(value) <= 1.0
    ):
        raise ConfigurationError(f"Downsample: {name} must be in (0, 1]; got {value!r}")
    return float(value)


def pair_of_ints(name: str, value: object) -> tuple[int, int]:
    """``(w, h)``, two integers ``>= 1``, else a ConfigurationError naming ``name``."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ConfigurationError(f"{name} must be (w, h); got {value!r}")
    return check_int(f"{name}[0]", value[0], 1), check_int(f"{name}[1]", value[1], 1)


def probability_range(name: str, value: object) -> float | tuple[float, float]:
    """A number in ``[0, 1]`` or a ``(low, high)`` range of them (``low <= high``), else
    a ConfigurationError naming ``name``."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ConfigurationError(f"{name} must be p or a (low, high) range; got {value!r}")
        low, high = (check_real(f"{name}[{i}]", v, 0.0, 1.0) for i, v in enumerate(value))
        if low > high:
            raise ConfigurationError(f"{name} range must have low <= high; got {value!r}")
        return (low, high)
    return check_real(name, value, 0.0, 1.0)
