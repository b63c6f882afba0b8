"""The exception types spikeflow raises.

Every error derives from :class:`SpikeflowError`, and also from the built-in type a
caller would naturally catch (``ValueError`` for a bad argument, ``ImportError`` for a
missing extra, ...), so ``except ValueError`` keeps working.
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "DTypeError",
    "DataFormatError",
    "MissingExtraError",
    "ShapeError",
    "SpikeflowError",
    "StateError",
]


class SpikeflowError(Exception):
    """Base class of every error raised by spikeflow."""


class ConfigurationError(SpikeflowError, ValueError):
    """An argument has an invalid value (e.g. ``tau <= 1`` or a NaN threshold)."""


class ShapeError(SpikeflowError, ValueError):
    """A tensor has the wrong number of dimensions or a shape that does not fit."""


class DTypeError(SpikeflowError, TypeError):
    """A tensor has a dtype the operation does not accept."""


class StateError(SpikeflowError, RuntimeError):
    """Carried (streaming) state is used in a way that would give wrong numbers."""


class DataFormatError(SpikeflowError, ValueError):
    """A data file is malformed; the message names the file, the offset and the problem."""


class MissingExtraError(SpikeflowError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""

    def __init__(self, feature: str, package: str, extra: str) -> None:
        self.feature = feature
        self.package = package
        self.extra = extra
        super().__init__(
            f"{feature} needs the optional package '{package}': "
            f"install it with  pip install 'spikeflow[{extra}]'"
        )
