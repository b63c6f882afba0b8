"""The one check of a sample index that spikeflow's map-style datasets share."""

from __future__ import annotations

import operator
from typing import Any

import numpy as np
import torch

from spikeflow.errors import ConfigurationError

__all__ = ["IndexTypeError", "check_index"]


class IndexTypeError(ConfigurationError, TypeError):
    """An index that is not an integer (a float, a bool, a string, a slice). A
    ``TypeError``, as a Python list raises for ``items[1.0]`` (and as
    :class:`~spikeflow.data.SlicedDataset` raised before the datasets shared
    :func:`check_index`), and a :class:`~spikeflow.errors.ConfigurationError`, as these
    datasets have raised since, so that ``except TypeError`` and ``except ValueError``
    both catch it."""


def check_index(owner: str, index: Any, length: int, what: str = "samples") -> int:
    """``index`` as an ``int`` in ``[0, length)``, read as Python reads a list index.

    An int, a numpy integer or a 0-d integer tensor is accepted, negative values count
    from the end; a bool (Python's, numpy's or a bool tensor) is refused, as are floats,
    strings and slices (``True`` would otherwise read sample 1).

    Args:
        owner: who checks, the start of every message (``"SlicedDataset"``).
        index: the index given to ``__getitem__``.
        length: the number of items.
        what: what is indexed, for the out-of-range message (``"slices"``).

    Raises:
        IndexTypeError: ``index`` is not an integer (the message names it); both a
            ``TypeError`` and a ``ConfigurationError``.
        IndexError: ``index`` is out of range; the message names the index, the length
            and ``what`` (an IndexError, so iterating over the dataset stops there).
    """
    if isinstance(index, (bool, np.bool_)) or (
        isinstance(index, torch.Tensor) and index.dtype == torch.bool
    ):
        i = None
    else:
        try:  # an int, a numpy integer, a 0-d integer tensor
            i = operator.index(index)
        except TypeError:
            i = None
    if i is None:
        raise IndexTypeError(
            f"{owner}: index must be an integer (an int, a numpy integer or a 0-d integer "
            f"tensor, not a bool); got {index!r} ({type(index).__name__})"
        )
    if not -length <= i < length:
        raise IndexError(f"{owner}: index {i} is out of range for {length} {what}")
    return i % length if i < 0 else i
