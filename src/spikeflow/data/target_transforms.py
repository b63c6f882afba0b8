"""Target (label) transforms: :class:`Repeat`, Tonic's ``transforms.Repeat``.

A dataset's ``target_transform`` gets one sample's label. :class:`Repeat` turns it into
per-step targets ``[n_repeat, ...]``; a DataLoader then batches them to
``[B, n_repeat, ...]``, and ``.transpose(0, 1)`` makes them time-major ``[T, B, ...]``
like the spikes (as per-step losses take them).
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import torch

from spikeflow._checks import check_int
from spikeflow.errors import ConfigurationError

__all__ = ["Repeat"]


class Repeat:
    """Repeat a target ``n_repeat`` times along a new first axis.

    A tensor stays a tensor (dtype and device kept), anything else becomes a numpy
    array: a label ``y`` gives ``[n_repeat]``, a vector ``[K]`` (a one-hot label) gives
    ``[n_repeat, K]``, an array ``[...]`` gives ``[n_repeat, ...]``. Tonic's ``Repeat``
    gives the same for a vector; for a scalar label its result is ``[n_repeat, 1]``
    (``Repeat(n)(y)[:, None]`` here), and for arrays of 2 or more axes its ``np.tile``
    repeats along the second-to-last axis instead.

    Args:
        n_repeat: the number of copies (time steps), an integer >= 1.
    """

    random = False

    def __init__(self, n_repeat: int) -> None:
        self.n_repeat = check_int("Repeat: n_repeat", n_repeat, 1)

    def __call__(self, target: Any) -> Any:
        if isinstance(target, torch.Tensor):
            return target.unsqueeze(0).expand(self.n_repeat, *target.shape).clone()
        if not isinstance(target, (np.ndarray, numbers.Number, list, tuple, np.generic)):
            raise ConfigurationError(
                f"Repeat: the target must be a number, an array or a tensor; got "
                f"{type(target).__name__}"
            )
        array = np.asarray(target)
        if array.dtype.hasobject:
            raise ConfigurationError(f"Repeat: the target holds Python objects ({target!r:.60})")
        return np.repeat(array[None], self.n_repeat, axis=0)

    def cache_key(self) -> dict[str, Any]:
        """``{"name": "Repeat", "n_repeat": n}``."""
        return {"name": "Repeat", "n_repeat": self.n_repeat}

    def __repr__(self) -> str:
        return f"Repeat(n_repeat={self.n_repeat})"
