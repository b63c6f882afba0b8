"""Signed quantised activations and the signed bounded IF neuron that reproduces them.

ANN side, :class:`SymmetricQuant`: ``q(x) = s · clip(floor(x/s + φ), n_min, n_max)``
with a learnable step ``s`` (used as ``|s|``, so that training cannot make it
negative; its floor passes its gradient straight through, as QCFS's, so
``∂q/∂s = clip(...) - x/s`` inside the range and the bound outside it) and integer
bounds ``n_min <= 0 < n_max`` (symmetric by default, ``n_min = -n_max``). It goes where
a Transformer's values may be negative (after a linear layer, a layer norm, before the
attention products, after the softmax), where QCFS, which clips at 0, cannot.

SNN side, :class:`SignedIFNeuron` (SpikeZIP-TF's ST-BIF neuron, You et al., ICML 2024;
SpikingJelly 2.0's ``STBIFNode``): its membrane, counted in thresholds (θ = s), starts
at ``φ`` and integrates ``x_t/θ``; each step it fires ``+θ`` if ``u >= 1`` and its
spike count ``n`` is below ``n_max``, ``-θ`` if ``u < 0`` and ``n > n_min``, else
nothing, and subtracts what it fired (soft reset: ``u - 1``, exact in floating point).
Whenever its cumulative input ``X`` stops changing it keeps firing, one spike a step,
until ``0 <= u < 1`` or a bound is reached, so its summed output ends at
``θ · clip(floor(X/θ + φ), n_min, n_max) = q(X)`` (for an input sent at one step, with
the quantiser's own arithmetic, ties and rounding included): a network whose
stages pass on the changes of their outputs (:mod:`spikeflow.conversion.temporal`)
then sums, after enough steps, to the quantised ANN's output exactly.

The tests check the neuron against a loop written from this rule, against
SpikingJelly's ``STBIFNode`` step for step, and its sum against :func:`symmetric_quant`.
"""

from __future__ import annotations

import numbers

import numpy as np
import torch
from torch import Tensor, nn

from spikeflow.base import MemoryModule, StepMode
from spikeflow.conversion._checks import (
    check_positive_int,
    check_threshold,
    current_sequence,
    store_threshold,
    threshold_repr,
)
from spikeflow.conversion.qcfs import QCFS, floor_ste
from spikeflow.errors import ConfigurationError

__all__ = ["SignedIFNeuron", "SymmetricQuant", "symmetric_quant"]


def _check_bounds(levels: object, min_level: object) -> tuple[int, int]:
    """``(n_min, n_max)``: ``levels`` an integer >= 1, ``min_level`` None (``-levels``) or
    an integer <= 0."""
    high = check_positive_int(levels, "levels (n_max)")
    if min_level is None:
        return -high, high
    if (
        isinstance(min_level, (bool, np.bool_))
        or not isinstance(min_level, numbers.Integral)
        or min_level > 0
    ):
        raise ConfigurationError(f"min_level (n_min) must be an integer <= 0, got {min_level!r}")
    return int(min_level), high


def _check_shift(shift: object) -> float:
    if isinstance(shift, (bool, np.bool_)) or not isinstance(shift, numbers.Real):
        raise ConfigurationError(f"shift (φ) must be a number in [0, 1), got {shift!r}")
    if not 0.0 <= float(shift) < 1.0:
        raise ConfigurationError(f"shift (φ) must be in [0, 1), got {shift}")
    return float(shift)


def symmetric_quant(
    x: Tensor, scale: Tensor | float, levels: int, min_level: int | None = None, shift: float = 0.5
) -> Tensor:
    """``s · clip(floor(x/s + φ), n_min, n_max)`` with ``s = scale``, ``n_max = levels``,
    ``n_min = min_level`` (default ``-levels``); the floor's gradient passes straight
    through."""
    low, high = _check_bounds(levels, min_level)
    return torch.clamp(floor_ste(x / scale + shift), low, high) * scale


class SymmetricQuant(nn.Module):
    """Signed quantised activation with a learnable step, the ANN side of a converted
    Transformer (see the module docstring).

    Args:
        levels: ``n_max``, the number of positive levels (default 8).
        scale: the initial step ``s`` (default 0.25: values up to 2 at 8 levels); one
            scalar per layer.
        min_level: ``n_min`` (default ``-levels``; 0 gives an unsigned quantiser, a
            ReLU-like clip at 0).
        shift: φ (default 1/2: rounding to the nearest level); the neuron starts at φ·s.
        learnable: whether ``s`` is a trainable parameter (default True).
    """

    def __init__(
        self,
        levels: int = 8,
        scale: float = 0.25,
        min_level: int | None = None,
        shift: float = 0.5,
        learnable: bool = True,
    ) -> None:
        super().__init__()
        self.min_level, self.levels = _check_bounds(levels, min_level)
        self.shift = _check_shift(shift)
        value = torch.tensor(check_threshold(scale, "SymmetricQuant scale (s)"))
        value = value.to(torch.get_default_dtype())
        if learnable:
            self.scale = nn.Parameter(value)
        else:
            self.register_buffer("scale", value)

    def forward(self, x: Tensor) -> Tensor:
        """``q(x)``, elementwise."""
        return symmetric_quant(x, self.scale.abs(), self.levels, self.min_level, self.shift)

    def extra_repr(self) -> str:
        return (
            f"levels={self.levels}, min_level={self.min_level}, "
            f"scale={float(self.scale.detach()):.4g}, shift={self.shift:g}"
        )


class SignedIFNeuron(MemoryModule):
    """Signed, bounded IF neuron with soft reset whose spikes carry ``±θ`` (inference
    only; see the module docstring).

    Args:
        v_threshold: θ, the step ``s`` of the quantiser it replaces (a float, or a
            tensor broadcastable to one step).
        levels: ``n_max``, the most spikes its count may reach (default 8).
        min_level: ``n_min``, the lowest count (default ``-levels``).
        shift: φ: the membrane starts at ``φ·θ`` (``φ`` thresholds; default 1/2).
        step_mode: ``'m'`` (``[T, B, ...]``, default) or ``'s'`` (``[B, ...]``, streaming).
    """

    def __init__(
        self,
        v_threshold: float | Tensor = 1.0,
        levels: int = 8,
        min_level: int | None = None,
        shift: float = 0.5,
        step_mode: StepMode = "m",
    ) -> None:
        super().__init__(step_mode)
        store_threshold(self, v_threshold, "SignedIFNeuron")
        self.min_level, self.levels = _check_bounds(levels, min_level)
        self.shift = _check_shift(shift)

    @classmethod
    def from_quantizer(cls, quantizer: nn.Module) -> SignedIFNeuron:
        """The neuron of a :class:`SymmetricQuant` (θ = s) or of a
        :class:`~spikeflow.conversion.qcfs.QCFS` (θ = λ/L, counts 0..L, V0 = φ·θ)."""
        if isinstance(quantizer, SymmetricQuant):
            theta, low, high = (
                quantizer.scale.detach().abs(),
                quantizer.min_level,
                quantizer.levels,
            )
        elif isinstance(quantizer, QCFS):
            theta = quantizer.threshold.detach() / quantizer.levels
            low, high = 0, quantizer.levels
        else:
            raise ConfigurationError(
                f"SignedIFNeuron.from_quantizer takes a SymmetricQuant or a QCFS, got "
                f"{type(quantizer).__name__}"
            )
        return cls(theta, high, low, quantizer.shift)

    def forward(self, x: Tensor) -> Tensor:
        """The spikes' values ``±θ`` or 0: ``[T, B, ...]`` in multi-step mode, ``[B, ...]``
        in single-step."""
        x_seq = current_sequence(x, "SignedIFNeuron", self.step_mode)
        theta = torch.as_tensor(self.v_threshold, dtype=x_seq.dtype, device=x_seq.device)
        state = self._carried_state(x_seq.shape[1:])
        if state is None:  # u: the membrane in thresholds (x/θ then + φ, as q's floor)
            u = torch.zeros_like(x_seq[0] / theta)
            count = torch.zeros_like(u)
        else:
            u, count = state["u"], state["count"]
        out = []
        for t, x_t in enumerate(x_seq.unbind(0)):
            u = x_t / theta + self.shift + u if state is None and t == 0 else u + x_t / theta
            up = (u >= 1) & (count < self.levels)
            down = (u < 0) & (count > self.min_level)
            spike = up.to(u.dtype) - down.to(u.dtype)
            u = u - spike
            count = count + spike
            out.append(spike * theta)
        self._keep_state({"u": u, "count": count})
        spikes = torch.stack(out)
        return spikes if self.step_mode == "m" else spikes[0]

    def extra_repr(self) -> str:
        return (
            f"v_threshold={threshold_repr(self.v_threshold)}, levels={self.levels}, "
            f"min_level={self.min_level}, shift={self.shift:g}, step_mode={self.step_mode!r}"
        )
