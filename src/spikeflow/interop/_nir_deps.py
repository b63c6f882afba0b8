"""Import of the optional ``nir`` and ``nirtorch`` packages (the ``nir`` extra)."""

from __future__ import annotations

import importlib
from types import ModuleType

from spikeflow.errors import MissingExtraError

__all__ = ["require_nir", "require_nirtorch"]


def require_nir(feature: str) -> ModuleType:
    """The ``nir`` module, or :class:`MissingExtraError` naming the ``nir`` extra."""
    try:
        return importlib.import_module("nir")
    except ImportError as error:
        raise MissingExtraError(feature, "nir", "nir") from error


def require_nirtorch(feature: str) -> ModuleType:
    """The ``nirtorch`` module, or :class:`MissingExtraError` naming the ``nir`` extra."""
    require_nir(feature)
    try:
        return importlib.import_module("nirtorch")
    except ImportError as error:
        raise MissingExtraError(feature, "nirtorch", "nir") from error
