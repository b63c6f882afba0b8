"""Synthetic trajectories to regress at every time step (the dataset of snnTorch's
``tutorial_regression_1``, "Regression with SNNs: Part I"): the network reads a ramp and
its output must follow a target curve step by step.

Sample ``i`` is a ramp from 0 to a random end ``e_i ~ U(0, 1)`` over ``T`` steps,
``x[t] = e_i · t / (T − 1)``, and the target is ``y = x`` (``mode="linear"``) or
``y = sqrt(s · x)`` (``mode="sqrt"``) with one slope ``s ~ U(0, 1)`` for the whole
dataset. A sample is ``(x, y)``, both ``[T, 1]`` float32; the DataLoader batches them to
``[B, T, 1]`` and ``x.transpose(0, 1)`` makes them time-major. ``examples/
regression_trajectory.py`` trains a spiking network whose output membrane follows the
target (docs/training.md, "Regression at every step").
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import Dataset

from spikeflow._checks import check_int
from spikeflow.errors import ConfigurationError

__all__ = ["Trajectories"]

_MODES = ("linear", "sqrt")


class Trajectories(Dataset[tuple[Tensor, Tensor]]):
    """Ramps and the curves to follow at every step (see the module docstring).

    With ``seed=None`` the random numbers come from PyTorch's global generator in the
    tutorial's order (each sample's end, then the slope): after the same
    ``torch.manual_seed`` the samples equal snnTorch's tutorial ``RegressionDataset``'s.
    With an integer ``seed`` they come from a generator seeded with it, and the global
    generator is left alone. The samples are drawn once, when the dataset is made.

    Args:
        samples: the number of samples (>= 1; the tutorial's is 1).
        T: steps per sample (>= 2; the tutorial's is 50).
        mode: ``"linear"`` (``y = x``) or ``"sqrt"`` (``y = sqrt(s · x)``).
        seed: ``None`` (the global generator) or an integer >= 0.

    Raises:
        ConfigurationError: an argument out of range or an unknown ``mode``.
    """

    def __init__(self, samples: int, T: int = 50, mode: str = "sqrt", seed: int | None = None):
        owner = type(self).__name__
        self.samples = check_int(f"{owner}: samples", samples, 1)
        self.T = check_int(f"{owner}: T", T, 2)
        if mode not in _MODES:
            raise ConfigurationError(f"{owner}: mode must be one of {_MODES}, got {mode!r}")
        if seed is not None:
            check_int(f"{owner}: seed", seed, 0)
        self.mode = mode
        generator = None if seed is None else torch.Generator().manual_seed(seed)
        ends = [float(torch.rand(1, generator=generator)) for _ in range(self.samples)]
        self.inputs = torch.stack([torch.linspace(0.0, end, self.T) for end in ends])[..., None]
        if mode == "linear":
            self.slope = 1.0
            self.targets = self.inputs.clone()
        else:
            self.slope = float(torch.rand(1, generator=generator))
            self.targets = torch.sqrt(self.inputs * self.slope)

    def __len__(self) -> int:
        return self.samples

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        """Sample ``index``: the ramp and its target, each ``[T, 1]``."""
        return self.inputs[index], self.targets[index]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(samples={self.samples}, T={self.T}, mode={self.mode!r})"
