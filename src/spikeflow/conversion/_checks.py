"""Argument checks shared by the conversion modules (one message format for each)."""

from __future__ import annotations

import inspect
import math
import numbers

import numpy as np
from torch import Tensor, nn

from spikeflow.base import check_time_major
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError

__all__ = [
    "check_bias_step",
    "check_initial_membrane",
    "check_positive_int",
    "check_threshold",
    "current_sequence",
    "input_name_of",
    "single_input",
    "store_threshold",
    "threshold_problem",
    "threshold_repr",
]


def check_positive_int(value: object, name: str, *, allow_none: bool = False) -> int | None:
    """``value`` as an int if it is an integer >= 1, a Python or numpy one but not a bool
    (``None`` too when ``allow_none``)."""
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < 1:
        what = "None or an integer >= 1" if allow_none else "an integer >= 1"
        raise ConfigurationError(f"{name} must be {what}, got {value!r}")
    return int(value)


def threshold_problem(value: float | Tensor) -> str | None:
    """Why ``value`` is not a threshold (finite and > 0 everywhere), or ``None`` if it is:
    ``'-0.05 is not finite and > 0'``, ``'2 of 8 entries are not finite and > 0 (inf, ...)'``."""
    if not isinstance(value, Tensor):
        return None if math.isfinite(value) and value > 0 else f"{value:.6g} is not finite and > 0"
    bad = ~((value > 0) & value.isfinite())
    if not bool(bad.any()):
        return None
    if value.numel() == 1:
        return f"{float(value):.6g} is not finite and > 0"
    shown = ", ".join(f"{float(v):.6g}" for v in value[bad].reshape(-1)[:3])
    more = ", ..." if int(bad.sum()) > 3 else ""
    return f"{int(bad.sum())} of {value.numel()} entries are not finite and > 0 ({shown}{more})"


def check_threshold(value: float | Tensor, owner: str) -> float | Tensor:
    """A threshold that is finite and > 0: a float, or a tensor with every entry so."""
    if isinstance(value, Tensor):
        if threshold_problem(value) is not None:
            raise ConfigurationError(f"{owner} thresholds must be finite and > 0")
        return value
    try:
        if isinstance(value, (bool, str, bytes)):
            raise TypeError
        value = float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(
            f"{owner} threshold must be a number or a tensor, got {value!r}"
        ) from None
    if not (math.isfinite(value) and value > 0):
        raise ConfigurationError(f"{owner} threshold must be finite and > 0, got {value}")
    return value


def check_initial_membrane(value: float) -> float:
    """Validate an initial membrane given in units of the threshold (``[0, 1)``)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ConfigurationError(f"initial_membrane must be a number, got {value!r}")
    value = float(value)
    if not 0.0 <= value < 1.0:
        raise ConfigurationError(
            f"initial_membrane is a fraction of the threshold and must be in [0, 1), got {value}"
        )
    return value


def threshold_repr(theta: float | Tensor) -> str:
    """A threshold for ``extra_repr``: the number (of a float or a one-value tensor), or
    the shape of a per-channel tensor."""
    if isinstance(theta, Tensor) and theta.dim() == 0:
        return f"{float(theta.detach()):g}"
    return f"{theta:g}" if isinstance(theta, float) else f"tensor{tuple(theta.shape)}"


def store_threshold(module: nn.Module, value: float | Tensor, owner: str) -> None:
    """Check ``value`` (:func:`check_threshold`) and keep it as ``module.v_threshold``: a
    tensor as a buffer (it moves with the module), a number as a float."""
    value = check_threshold(value, owner)
    if isinstance(value, Tensor):
        module.register_buffer("v_threshold", value.detach().clone())
    else:
        module.v_threshold = value


def current_sequence(x: Tensor, owner: str, step_mode: str | None, ndim: int = 2) -> Tensor:
    """A neuron's input current as ``[T, ...]``: a floating-point tensor, time-major with
    at least ``ndim`` dims in multi-step mode (``'m'``), one step ``[B, ...]`` made a
    sequence of one in single-step mode (``'s'``); ``step_mode=None`` for modules that
    take whole sequences only."""
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise DTypeError(f"{owner} expects a floating-point tensor (the input current)")
    if step_mode == "s":
        return x.unsqueeze(0)
    check_time_major(x, owner, ndim, single_step=step_mode is not None)
    return x


def check_bias_step(steps: int, owner: str) -> None:
    """A differentially coded sequence has its bias step and at least one more."""
    if steps < 2:
        raise ShapeError(f"{owner} needs the bias step and at least one step, got {steps} step(s)")


def input_name_of(module: nn.Module) -> str:
    """The keyword of ``module``'s input: the name of its forward's first parameter
    (``input`` for torch's activations, which a caller may pass as ``act(input=h)``)."""
    try:
        parameters = inspect.signature(module.forward).parameters.values()
    except (TypeError, ValueError):  # a forward without a signature (a builtin)
        return "input"
    positional = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return next((p.name for p in parameters if p.kind in positional), "input")


def single_input(
    inputs: tuple[object, ...], keywords: dict[str, object], input_name: str
) -> object | None:
    """The one input of a call ``(*inputs, **keywords)``: positional, or given as
    ``input_name=``; None when the call has anything else (none, or more)."""
    if len(inputs) == 1 and not keywords:
        return inputs[0]
    if not inputs and list(keywords) == [input_name]:
        return keywords[input_name]
    return None
