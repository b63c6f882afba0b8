"""Quantization-aware training of membrane potentials (fixed-point neuron state).

A neuromorphic chip holds each neuron's membrane in a signed integer register. A
quantized neuron rounds its charged membrane ``H`` to that register's grid at every
step, before firing::

    H_q = Δ·clamp(floor(H/Δ + 1/2), -2^(bits-1), 2^(bits-1) - 1)

so the fire rule compares the register with the threshold, the reset starts from it and
the next step charges from it. The step is ``Δ = θ / 2^fraction_bits`` (the threshold is
the level ``2^fraction_bits``, exactly, as a power of two) or a fixed ``step``. The
gradient passes straight through the rounding and the saturation (``∂H_q/∂H := 1``).

The rounding is written into the neuron's charge equation (a wrapper of the
declaration's ``charge``), so the fused C and Triton kernels are generated for the
quantized neuron as for any other. See ``docs/quantization.md``.
"""

from __future__ import annotations

import inspect
import math
import numbers
import struct
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from spikeflow.errors import ConfigurationError
from spikeflow.neurons.base import BaseNode
from spikeflow.neurons.declaration import NeuronDeclaration
from spikeflow.quant.charge_wrappers import quantized_declaration, register_wrapper, wrapped_charge
from spikeflow.quant.weights import is_integer_from

__all__ = [
    "MembraneQuantizer",
    "apply_membrane_quantization",
    "quantize_membrane",
    "remove_membrane_quantization",
]

#: Bits a membrane register may have. 24 keeps every level exact in float32.
MIN_BITS, MAX_BITS = 2, 24
#: The keyword parameters the quantized charge adds to the neuron's own.
QUANT_PARAMS = ("membrane_step", "membrane_min", "membrane_max")
#: The significand bits of the floating-point dtypes: a register of at most this many
#: bits has every level ``k`` exact and ``H/Δ + 1/2`` rounded without error in them
#: (with a power-of-two threshold; bfloat16 holds 8 bits, float16 11).
SIGNIFICAND_BITS = {torch.bfloat16: 8, torch.float16: 11, torch.float32: 24, torch.float64: 53}


def check_membrane_bits(value: object) -> int:
    """``value`` as an int if it is an integer number of bits from 2 to 24 (a Python or
    numpy integer, not a bool)."""
    if not is_integer_from(value, MIN_BITS, MAX_BITS):
        raise ConfigurationError(
            f"membrane quantization: bits must be an integer from {MIN_BITS} to {MAX_BITS} "
            f"(24 keeps every level exact in float32), got {value!r}"
        )
    return int(value)


def quantize_membrane(
    h: Tensor, *, membrane_step: Tensor | float, membrane_min: float, membrane_max: float
) -> Tensor:
    """``h`` rounded (half up) to the grid ``k·membrane_step``, ``k`` an integer
    clamped to ``[membrane_min, membrane_max]``; the gradient passes straight through.

    Elementwise and traceable, so it runs inside the fused kernels' charge equation.
    ``h_f - h_f.detach()`` is exactly zero and carries the gradient 1: ``h_f`` is ``h``
    with an infinity clamped to the dtype's largest value, which saturates the register
    like any value beyond it (``inf - inf`` would make the membrane NaN).
    """
    level = torch.clamp(torch.floor(h / membrane_step + 0.5), membrane_min, membrane_max)
    largest = torch.finfo(h.dtype).max
    finite = torch.clamp(h, -largest, largest)
    return level * membrane_step + (finite - finite.detach())


def quantized_charge(charge: Callable[..., object], returns_aux: bool) -> Callable[..., object]:
    """``charge`` followed by :func:`quantize_membrane` of the membrane it returns; its
    signature is ``charge``'s plus the keyword parameters :data:`QUANT_PARAMS` (one
    function per charge and its code: :func:`~spikeflow.quant.charge_wrappers.wrapped_charge`)."""
    return wrapped_charge("membrane", charge, returns_aux)


def _build_quantized(charge: Callable[..., object], returns_aux: bool) -> Callable[..., object]:
    """The wrapper :func:`quantized_charge` returns (built once per charge)."""
    signature = inspect.signature(charge)  # its callers refuse a clash (_refuse_grid_names)

    def charge_quantized(
        x: Tensor,
        v: Tensor,
        *state: Tensor,
        membrane_step: Tensor | float,
        membrane_min: float,
        membrane_max: float,
        **params: Any,
    ) -> object:
        out = charge(x, v, *state, **params)
        grid = {"membrane_step": membrane_step, "membrane_min": membrane_min,
                "membrane_max": membrane_max}  # fmt: skip
        if returns_aux:
            h, *aux = out  # type: ignore[misc]
            return (quantize_membrane(h, **grid), *aux)
        return quantize_membrane(out, **grid)  # type: ignore[arg-type]

    added = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY) for n in QUANT_PARAMS]
    charge_quantized.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*signature.parameters.values(), *added]
    )
    # The code behind it (the fused kernels' caches and captured values follow it).
    charge_quantized.__wrapped__ = charge  # type: ignore[attr-defined]
    name = getattr(charge, "__qualname__", "charge")
    charge_quantized.__qualname__ = charge_quantized.__name__ = f"{name}_quantized"
    return charge_quantized


register_wrapper("membrane", _build_quantized)


def _float_bits(value: float) -> int:
    return struct.unpack("<q", struct.pack("<d", value))[0]


def _bits_float(value: int) -> float:
    return struct.unpack("<d", struct.pack("<q", value))[0]


def _threshold(neuron: BaseNode) -> Tensor | float:
    """The threshold ``neuron`` fires at (its own shape: per layer, per channel)."""
    theta = neuron.v_threshold
    return neuron.firing_threshold(theta.shape if isinstance(theta, Tensor) else torch.Size())


def _refuse_grid_names(decl: NeuronDeclaration, who: str) -> None:
    """Raise a ConfigurationError (``who``: ...) if an equation of ``decl`` has a
    parameter of :data:`QUANT_PARAMS`, whose value the grid's would replace."""
    clash = [p for p in QUANT_PARAMS if p in decl.param_names]
    if clash:
        raise ConfigurationError(
            f"{who}: it adds the parameters {QUANT_PARAMS} to the charge equation, and the "
            f"equations of {decl.name} already have {clash}"
        )


def refuse_own_fire(decl: NeuronDeclaration, who: str) -> None:
    """Raise a ConfigurationError (``who``: ...) if ``decl`` fires by a rule of its own
    (``fire``: a delta or ternary neuron's), which a quantized declaration would drop
    (the neuron's forward refuses it too; this says so when the quantizer is put on)."""
    if decl.fire is not None:
        raise ConfigurationError(
            f"{who}: {decl.name} fires by a rule of its own (fire), which the quantized "
            "declaration would drop (it would fire by Θ(H - θ)); leave it unquantized"
        )


def _is_whole(value: float) -> bool:
    return math.isfinite(value) and value == math.floor(value)


class MembraneQuantizer(nn.Module):
    """The membrane register of a neuron: ``bits`` bits, signed (see the module doc).

    Args:
        bits: the register's width, 2 to 24; levels ``-2^(bits-1) ... 2^(bits-1) - 1``.
        fraction_bits: the threshold is the level ``2^fraction_bits`` (``Δ = θ /
            2^fraction_bits``); default ``bits - 2``, so the register spans ``[-2θ, 2θ)``.
            At most ``bits - 2`` (the threshold must be a level). It follows a learnable
            threshold.
        step: a fixed ``Δ`` instead (in membrane units, e.g. for a threshold of 30 mV
            and a reset of -65 mV); the threshold and ``v_reset`` must be whole numbers
            of steps.

    A neuron holds it as its ``membrane_quantizer`` child (set by
    :func:`apply_membrane_quantization`). Its settings are saved in the state dict, so
    loading one quantized otherwise is an error naming both.
    """

    def __init__(self, bits: int = 8, fraction_bits: int | None = None,
                 step: float | None = None) -> None:  # fmt: skip
        super().__init__()
        self.bits = check_membrane_bits(bits)
        if step is not None and fraction_bits is not None:
            raise ConfigurationError(
                "membrane quantization: give fraction_bits (a step relative to the threshold) "
                f"or step (a fixed step), not both; got fraction_bits={fraction_bits!r}, "
                f"step={step!r}"
            )
        if step is not None:
            if (
                isinstance(step, (bool, np.bool_))
                or not isinstance(step, numbers.Real)
                or not (math.isfinite(step) and step > 0)
            ):
                raise ConfigurationError(
                    f"membrane quantization: step must be a positive finite number, got {step!r}"
                )
            step = float(step)
        else:
            fraction_bits = self.bits - 2 if fraction_bits is None else fraction_bits
            if not is_integer_from(fraction_bits, 0, self.bits - 2):
                raise ConfigurationError(
                    "membrane quantization: fraction_bits must be an integer from 0 to bits - 2 "
                    f"= {self.bits - 2} (the threshold, level 2^fraction_bits, must fit in the "
                    f"register), got {fraction_bits!r}"
                )
            fraction_bits = int(fraction_bits)
        self.fraction_bits = fraction_bits
        self.step = step
        self.min_level = -(2 ** (self.bits - 1))
        self.max_level = 2 ** (self.bits - 1) - 1
        # Saved with the model, so a state dict of other settings is refused on load.
        self.register_buffer("settings", self._settings(), persistent=True)

    def _settings(self) -> Tensor:
        # Integers (a model's .half() or .double() leaves them be): the step by its bits.
        relative = self.fraction_bits is not None
        detail = self.fraction_bits if relative else _float_bits(self.step)  # type: ignore[arg-type]
        return torch.tensor([self.bits, int(relative), detail], dtype=torch.int64)

    @staticmethod
    def _describe(settings: Tensor) -> str:
        bits, relative, detail = settings.tolist()
        grid = f"fraction_bits={detail}" if relative else f"step={_bits_float(detail)!r}"
        return f"{bits} bits, {grid}"

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        saved = state_dict.get(prefix + "settings")
        mine = self._settings()
        if isinstance(saved, Tensor) and saved.shape == mine.shape:
            if saved.dtype != mine.dtype or not torch.equal(saved.cpu(), mine):
                args[-1].append(
                    f"{prefix}settings: the state dict's membranes were quantized to "
                    f"{self._describe(saved)}, this neuron quantizes to {self._describe(mine)}"
                )
                return
        super()._load_from_state_dict(state_dict, prefix, *args)

    # -- the grid -------------------------------------------------------------------

    def grid_step(self, theta: Tensor | float) -> Tensor | float:
        """``Δ`` for the threshold ``theta`` (no gradient through it)."""
        if self.step is not None:
            return self.step
        if isinstance(theta, Tensor):
            theta = theta.detach()
        return theta / 2**self.fraction_bits  # a power of two: exact

    def grid(self, theta: Tensor | float) -> dict[str, Tensor | float]:
        """The values of :data:`QUANT_PARAMS` for the threshold ``theta``."""
        return {
            "membrane_step": self.grid_step(theta),
            "membrane_min": float(self.min_level),
            "membrane_max": float(self.max_level),
        }

    def forward(self, v: Tensor, theta: Tensor | float) -> Tensor:
        """``v`` on the grid of threshold ``theta`` (straight-through gradient)."""
        return quantize_membrane(v, **self.grid(theta))  # type: ignore[arg-type]

    def integers(self, v: Tensor, theta: Tensor | float) -> Tensor:
        """The register's integer levels (int32) of ``v``: ``v == k·Δ`` on the grid.

        Computed in float64 from ``Δ`` as the neuron used it (a Python float step in
        ``v``'s dtype): computed in float32, ``v/Δ`` rounds to the next level for some
        values of a 23- or 24-bit register whose threshold is not a power of two."""
        step = self.grid_step(theta)
        v = v.detach()
        if not isinstance(step, Tensor):
            step = torch.tensor(step, dtype=v.dtype, device=v.device)
        level = torch.floor(v.double() / step.double() + 0.5)
        return level.clamp(self.min_level, self.max_level).to(torch.int32)

    def check_dtype(self, dtype: torch.dtype, owner: str) -> None:
        """Raise a ConfigurationError naming ``owner`` if a membrane of ``dtype`` cannot
        hold this register (more bits than its significand: levels and rounding off)."""
        precision = SIGNIFICAND_BITS.get(dtype)
        if precision is not None and self.bits > precision:
            raise ConfigurationError(
                f"{owner}: a membrane register of {self.bits} bits does not fit a {dtype} "
                f"membrane, whose {precision}-bit significand holds the levels of at most "
                f"{precision} bits (autocast and --amp compute the neurons in {dtype}): "
                f"quantize to at most {precision} bits, or run the neuron in float32"
            )

    def check(self, neuron: BaseNode, name: str) -> None:
        """Raise a ConfigurationError naming ``name`` unless ``neuron``'s threshold and
        reset are on this grid (the fire rule and the reset then keep the membrane on it),
        and its equations take no parameter of :data:`QUANT_PARAMS`."""
        _refuse_grid_names(neuron.declaration(), f"membrane quantization of {name}")
        refuse_own_fire(neuron.declaration(), f"membrane quantization of {name}")
        theta = _threshold(neuron)
        tensor = isinstance(theta, Tensor)
        values = theta.detach().double().flatten().tolist() if tensor else [theta]
        if any(not (math.isfinite(t) and t > 0) for t in values):
            raise ConfigurationError(
                f"membrane quantization of {name}: the threshold must be positive (the grid "
                f"is relative to it), got {theta}"
            )
        learnable = tensor and theta.requires_grad
        if self.step is not None:
            if learnable:
                raise ConfigurationError(
                    f"membrane quantization of {name}: a learnable threshold leaves a fixed "
                    "step's grid as it learns; use fraction_bits (a step relative to it)"
                )
            levels = [t / self.step for t in values]
            if any(not _is_whole(k) or not 1 <= k <= self.max_level for k in levels):
                raise ConfigurationError(
                    f"membrane quantization of {name}: the threshold {theta} must be a whole "
                    f"number of steps (step={self.step}) from 1 to {self.max_level}"
                )
        v_reset = neuron.v_reset
        if v_reset is None or v_reset == 0:
            return
        if learnable and self.step is None:
            raise ConfigurationError(
                f"membrane quantization of {name}: with a learnable threshold the grid moves "
                f"and v_reset={v_reset} leaves it; use v_reset=0 or a fixed threshold"
            )
        steps = [self.grid_step(t) for t in values]
        levels = [v_reset / float(s) for s in steps]
        if any(not _is_whole(k) for k in levels):
            raise ConfigurationError(
                f"membrane quantization of {name}: v_reset={v_reset} is not a level of the "
                f"grid ({self._describe(self._settings())}, threshold {theta}): the "
                "reset would leave the grid"
            )
        if any(not self.min_level <= k <= self.max_level for k in levels):
            raise ConfigurationError(
                f"membrane quantization of {name}: v_reset={v_reset} is below the register's "
                f"lowest level ({self.min_level} steps; {self._describe(self._settings())}, "
                f"threshold {theta}): the reset would leave the register"
            )

    def quantized(self, decl: NeuronDeclaration) -> NeuronDeclaration:
        """``decl`` with the membrane rounded after its charge equation.

        Raises:
            ConfigurationError: one of ``decl``'s equations already has a parameter of
                :data:`QUANT_PARAMS` (whose value the grid's would replace).
        """
        _refuse_grid_names(decl, "membrane quantization")
        return quantized_declaration(decl, "membrane", "quantized", QUANT_PARAMS)

    def extra_repr(self) -> str:
        return self._describe(self._settings())


def apply_membrane_quantization(
    model: nn.Module,
    bits: int = 8,
    fraction_bits: int | None = None,
    step: float | None = None,
) -> list[str]:
    """Quantize the membrane of every spiking neuron of ``model`` (every
    :class:`~spikeflow.neurons.BaseNode`; see :class:`MembraneQuantizer` for the
    arguments). Returns the names of the neurons quantized.

    Raises:
        ConfigurationError: no such neuron in ``model``, a neuron already quantized,
            one that fires by a rule of its own (``fire``: ``DeltaLeakyNode``, the
            ternary neurons), or a threshold / ``v_reset`` off the grid (named).
    """
    quantizer = MembraneQuantizer(bits, fraction_bits, step)
    neurons = [(n or type(m).__name__, m) for n, m in model.named_modules()
               if isinstance(m, BaseNode)]  # fmt: skip
    if not neurons:
        raise ConfigurationError(
            f"membrane quantization: {type(model).__name__} has no spiking neuron with a "
            "membrane (spikeflow.neurons.BaseNode); parallel spiking neurons (PSN) and "
            "event-driven layers have none to quantize"
        )
    for name, neuron in neurons:
        if neuron._modules.get("membrane_quantizer") is not None:
            raise ConfigurationError(
                f"membrane quantization: {name} is quantized already "
                f"({neuron.membrane_quantizer}); remove_membrane_quantization first"
            )
        quantizer.check(neuron, name)
    for _, neuron in neurons:
        tensors = [*neuron.parameters(), *neuron.buffers()]
        copy = MembraneQuantizer(bits, fraction_bits, step)
        neuron.membrane_quantizer = copy.to(tensors[0].device) if tensors else copy
    return [name for name, _ in neurons]


def remove_membrane_quantization(model: nn.Module) -> list[str]:
    """Take the membrane quantizers off ``model``'s neurons; returns their names."""
    removed = []
    for name, module in model.named_modules():
        if isinstance(module, BaseNode) and module._modules.get("membrane_quantizer") is not None:
            del module.membrane_quantizer
            removed.append(name or type(module).__name__)
    return removed
