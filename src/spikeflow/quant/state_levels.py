"""Membrane quantization to a list of levels: snnTorch's ``state_quant`` grids.

snnTorch 1.0's ``snntorch.functional.quant.state_quant(num_bits, uniform, thr_centered,
threshold, lower_limit, upper_limit, multiplier)``, passed as ``Leaky(state_quant=q)``,
rounds the charged membrane to the nearest of ``2^num_bits`` levels before firing
(straight-through gradient). :func:`snntorch_state_levels` computes the same levels
(uniform, or packed around the threshold or around 0 with geometric spacing), and
:func:`apply_state_quantization` puts a :class:`LevelQuantizer` in each neuron's
``membrane_quantizer`` slot, where :class:`~spikeflow.quant.MembraneQuantizer` (a
fixed-point register) goes: the neuron's charge equation is wrapped to round ``H`` to
the nearest level, so the fire rule, the reset and the next step read the rounded
membrane, on the reference loop and the fused kernels alike.

The rounding is elementwise: the distance to each level in turn, the first of the
smallest kept (snnTorch's ``argmin``, a tie going to the lower level), so it costs a
few operations per level and neuron-step (256 levels at 8 bits).
"""

from __future__ import annotations

import inspect
import itertools
import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from spikeflow.errors import ConfigurationError
from spikeflow.neurons.base import BaseNode
from spikeflow.neurons.declaration import NeuronDeclaration
from spikeflow.quant.charge_wrappers import quantized_declaration, register_wrapper
from spikeflow.quant.membrane import refuse_own_fire

__all__ = ["LevelQuantizer", "apply_state_quantization", "nearest_level", "snntorch_state_levels"]

#: At most this many levels (8 bits, snnTorch's default; the fused kernels read the
#: levels as constants of the generated code, at most 256 of them).
MAX_LEVELS = 256
#: snnTorch's default geometric ratio of the non-uniform levels, by number of bits.
_MULTIPLIERS = {1: 0.05, 2: 0.1, 3: 0.3, 4: 0.5, 5: 0.7, 6: 0.9, 7: 0.925}


def _geometric(start: float, span: float, count: int, ratio: float, rising: bool) -> list[float]:
    """``count`` levels over ``span`` from ``start`` whose gaps are ``ratio^j`` scaled to
    fill it: gaps shrinking (``rising=True``: towards ``start + span``) or growing away
    from ``start`` (``rising=False``); summed in snnTorch's order, for its bits."""
    total = 0.0
    for j in reversed(range(count)):
        total += ratio**j
    unit = total / span
    levels, value = [], start
    if rising:  # from the low end up: start, start + 1/unit, start + (1 + r)/unit, ...
        for j in range(count):
            levels.append(value)
            value += ratio**j / unit
    else:  # from start up, the last gap the smallest: start + r^(n-1)/unit, ...
        for j in reversed(range(count)):
            value += ratio**j / unit
            levels.append(value)
    return levels


def snntorch_state_levels(
    num_bits: int = 8,
    uniform: bool = True,
    thr_centered: bool = True,
    threshold: float = 1.0,
    lower_limit: float = 0.0,
    upper_limit: float = 0.2,
    multiplier: float | None = None,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """The levels of snnTorch's ``state_quant`` with the same arguments (float64, sorted;
    ``2^num_bits`` of them, as snnTorch's, a level repeated where a geometric grid's
    gaps fall below float64's resolution, as at 8 bits with ``multiplier=0.8``:
    :class:`LevelQuantizer` keeps each once).

    snnTorch builds its levels in torch's default dtype (float32 unless a script sets
    another): ``dtype`` is that dtype, for its levels bit for bit (its float32
    ``linspace`` is not the float64 one rounded: a uniform grid's levels differ by an
    ulp). The levels are returned as float64 all the same.

    ``2^num_bits`` levels from ``-threshold (1 + lower_limit)`` to
    ``threshold (1 + upper_limit)``: evenly spaced (``uniform=True``), or packed
    geometrically (each gap ``multiplier`` times the last) towards ``threshold``
    (``thr_centered=True``) or towards 0, the levels split between the two sides in
    proportion to their ranges. ``multiplier=None`` takes snnTorch's value for
    ``num_bits`` (0.05 at 1 bit ... 0.95 from 8 bits).

    Raises:
        ConfigurationError: ``num_bits`` not an integer from 1 to 8, a non-finite or
            non-positive ``threshold``, a negative limit, ``multiplier`` not in (0, 1],
            ``dtype`` not a floating dtype.
    """
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ConfigurationError(
            f"snntorch_state_levels: dtype must be a floating torch dtype, got {dtype!r}"
        )
    if isinstance(num_bits, bool) or not isinstance(num_bits, numbers.Integral):
        raise ConfigurationError(
            f"snntorch_state_levels: num_bits must be an int, got {num_bits!r}"
        )
    if not 1 <= num_bits <= 8:
        raise ConfigurationError(
            f"snntorch_state_levels: num_bits must be from 1 to 8 (at most {MAX_LEVELS} "
            f"levels), got {num_bits}"
        )
    for name, value in (("threshold", threshold), ("lower_limit", lower_limit),
                        ("upper_limit", upper_limit)):  # fmt: skip
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ConfigurationError(
                f"snntorch_state_levels: {name} must be a number, got {value!r}"
            )
        if not math.isfinite(value) or value < 0 or (name == "threshold" and value == 0):
            bound = "> 0" if name == "threshold" else ">= 0"
            raise ConfigurationError(
                f"snntorch_state_levels: {name} must be finite and {bound}, got {value}"
            )
    count = 2**num_bits
    low = -(threshold + threshold * lower_limit)
    high = threshold + threshold * upper_limit
    if uniform:
        return torch.linspace(low, high, count, dtype=dtype).double()
    ratio = _MULTIPLIERS.get(num_bits, 0.95) if multiplier is None else multiplier
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or not 0 < ratio <= 1:
        raise ConfigurationError(
            f"snntorch_state_levels: multiplier must be in (0, 1], got {ratio!r}"
        )
    centre = threshold if thr_centered else 0.0
    below = math.floor(count * ((centre - low) / (high - low)))
    levels = []
    if below:
        levels += _geometric(low, centre - low, below, ratio, rising=True)
    if count - below:
        levels += _geometric(centre, high - centre, count - below, ratio, rising=False)
    return torch.tensor(levels, dtype=dtype).double().sort().values


def nearest_level(h: Tensor, *, levels: Sequence[float]) -> Tensor:
    """``h`` rounded to the nearest of ``levels`` (sorted ascending; a repeated level
    changes nothing), the gradient passing straight through. The distances are compared
    as snnTorch's ``argmin`` does (``|l - h|``, the first level of equal distance wins),
    so a value halfway between two levels rounds as it does. A value far beyond the end
    levels (infinite too) goes to the end level on its side (snnTorch's gives its lowest
    level once every distance rounds to the same number). Elementwise (one step per
    level), so it runs inside the fused kernels' charge equation.

    Raises:
        ConfigurationError: ``levels`` empty or not sorted ascending.
    """
    if not levels or any(high < low for low, high in itertools.pairwise(levels)):
        raise ConfigurationError(
            f"nearest_level: levels must be a non-empty sequence sorted ascending, got {levels}"
        )
    span = levels[-1] - levels[0]
    near = torch.clamp(h, levels[0] - span, levels[-1] + span)  # the same nearest level
    # |l - h| along the sorted levels falls, then rises (rounding is monotone), so the
    # first smallest is where it last fell strictly: each step compares two neighbours.
    best = near * 0.0 + levels[0]
    for below, level in itertools.pairwise(levels):
        best = torch.where(torch.abs(level - near) < torch.abs(below - near), level, best)
    largest = torch.finfo(h.dtype).max
    finite = torch.clamp(h, -largest, largest)  # inf - inf would make the membrane NaN
    return best + (finite - finite.detach())


def _level_charge(charge: Callable[..., object], returns_aux: bool,
                  levels: tuple[float, ...]) -> Callable[..., object]:  # fmt: skip
    """``charge`` followed by :func:`nearest_level` of the membrane it returns (the same
    signature: the levels are constants of the wrapper). Built once per charge, code and
    levels (:func:`~spikeflow.quant.charge_wrappers.wrapped_charge`)."""

    def charge_on_levels(x: Tensor, v: Tensor, *state: Tensor, **params: Any) -> object:
        out = charge(x, v, *state, **params)
        if returns_aux:
            h, *aux = out  # type: ignore[misc]
            return (nearest_level(h, levels=levels), *aux)
        return nearest_level(out, levels=levels)  # type: ignore[arg-type]

    charge_on_levels.__signature__ = inspect.signature(charge)  # type: ignore[attr-defined]
    charge_on_levels.__wrapped__ = charge  # type: ignore[attr-defined]
    name = getattr(charge, "__qualname__", "charge")
    charge_on_levels.__qualname__ = charge_on_levels.__name__ = f"{name}_on_levels"
    return charge_on_levels


register_wrapper("levels", _level_charge)


class LevelQuantizer(nn.Module):
    """A neuron's membrane rounded to a list of levels after every charge (see the
    module docstring); held in the neuron's ``membrane_quantizer`` slot.

    Args:
        levels: the levels (a 1-d tensor or a sequence of numbers, in membrane units),
            2 to 256 distinct finite values, in any order (kept sorted, each once, as
            float64 in the buffer ``levels``, saved in the state dict). A repeated value
            is kept once (it changes no rounding): snnTorch's geometric grids repeat
            levels where ``multiplier^j`` falls below float64's resolution.

    Raises:
        ConfigurationError: levels that are not 1-d, not finite, or fewer than 2 or
            more than 256 distinct values.
    """

    def __init__(self, levels: Tensor | Sequence[float]) -> None:
        super().__init__()
        values = torch.as_tensor(levels, dtype=torch.float64).detach().cpu()
        if values.dim() != 1:
            raise ConfigurationError(
                f"state quantization: levels must be a 1-d list, got shape {tuple(values.shape)}"
            )
        if not bool(torch.isfinite(values).all()):
            raise ConfigurationError(f"state quantization: the levels must be finite, got {values}")
        # A repeated level changes no rounding (snnTorch's argmin returns the same value):
        # its geometric grids repeat levels where the gaps fall below float64's resolution.
        values = torch.unique_consecutive(values.sort().values)
        if not 2 <= values.numel() <= MAX_LEVELS:
            raise ConfigurationError(
                f"state quantization: levels must hold 2 to {MAX_LEVELS} distinct values, "
                f"got {values.numel()}"
            )
        self.register_buffer("levels", values)
        self._values = tuple(values.tolist())

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        saved = state_dict.get(prefix + "levels")
        if isinstance(saved, Tensor) and not torch.equal(saved.double().cpu(), self.levels.cpu()):
            args[-1].append(f"{prefix}levels: the state dict's membranes were quantized to "
                            f"other levels ({saved.numel()} levels)")  # fmt: skip
            return
        super()._load_from_state_dict(state_dict, prefix, *args)

    def check_dtype(self, dtype: torch.dtype, owner: str) -> None:
        """Every floating dtype holds the rounding (levels in a narrower dtype round
        to it, as snnTorch's float32 levels do)."""

    def quantized(self, decl: NeuronDeclaration) -> NeuronDeclaration:
        """``decl`` with the membrane rounded to the levels after its charge equation."""
        # (the rounding adds no parameter: the levels are constants of the wrapper)
        return quantized_declaration(decl, "levels", "on_levels", constants=(self._values,))

    def grid(self, theta: Tensor | float) -> dict[str, Tensor | float]:
        """No parameters added to the charge (the levels are constants of it)."""
        return {}

    def forward(self, v: Tensor, theta: Tensor | float | None = None) -> Tensor:
        """``v`` rounded to the nearest level (straight-through gradient)."""
        return nearest_level(v, levels=self._values)

    def extra_repr(self) -> str:
        return f"{len(self._values)} levels in [{self._values[0]:g}, {self._values[-1]:g}]"


def apply_state_quantization(model: nn.Module, levels: Tensor | Sequence[float]) -> list[str]:
    """Round the membrane of every spiking neuron of ``model`` (every
    :class:`~spikeflow.neurons.BaseNode`) to the nearest of ``levels`` after each charge:
    snnTorch's ``Leaky(state_quant=q)`` with ``levels = snntorch_state_levels(...)`` of
    ``q``'s arguments. Returns the names of the neurons quantized;
    :func:`~spikeflow.quant.remove_membrane_quantization` takes them off.

    Raises:
        ConfigurationError: no such neuron in ``model``, a neuron quantized already, one
            that fires by a rule of its own (``DeltaLeakyNode``, the ternary neurons:
            the rounded declaration would drop it), bad levels (see
            :class:`LevelQuantizer`); nothing is changed then.
    """
    LevelQuantizer(levels)  # checks them before any neuron changes
    found = [(n or type(m).__name__, m) for n, m in model.named_modules()
             if isinstance(m, BaseNode)]  # fmt: skip
    if not found:
        raise ConfigurationError(
            f"state quantization: {type(model).__name__} has no spiking neuron with a "
            "membrane (spikeflow.neurons.BaseNode)"
        )
    for name, neuron in found:
        if neuron._modules.get("membrane_quantizer") is not None:
            raise ConfigurationError(
                f"state quantization: {name} is quantized already "
                f"({neuron.membrane_quantizer}); remove_membrane_quantization first"
            )
        refuse_own_fire(neuron.declaration(), f"state quantization of {name}")
    for _, neuron in found:
        tensors = [*neuron.parameters(), *neuron.buffers()]
        quantizer = LevelQuantizer(levels)
        neuron.membrane_quantizer = quantizer.to(tensors[0].device) if tensors else quantizer
    return [name for name, _ in found]
