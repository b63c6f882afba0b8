"""Argument checks shared across the package (neurons, surrogates, data transforms)."""

from __future__ import annotations

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
