"""The adaptive LIF neuron of Bittar & Garner (2022): learnable leak, subthreshold and
spike-triggered adaptation, per neuron.

Declared once, like every spikeflow neuron: the reference loop and the fused kernels
(forward and backward, gradients of the four per-neuron parameters included) come from
the declaration.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from spikeflow.errors import ConfigurationError
from spikeflow.neurons.base import BaseNode
from spikeflow.neurons.declaration import NeuronDeclaration, declare

__all__ = ["AdLIFNode"]


def _adlif_charge(
    x: Tensor, v: Tensor, w: Tensor, *, alpha: Tensor, beta: Tensor, a: Tensor, b: Tensor
) -> Tensor:
    """``H = alpha V + (1 - alpha) (X - w)``: ``w`` is this step's adaptation current."""
    return alpha * v + (1.0 - alpha) * (x - w)


def _adlif_update(
    h: Tensor, s: Tensor, w: Tensor, *, alpha: Tensor, beta: Tensor, a: Tensor, b: Tensor
) -> Tensor:
    """After firing, the next step's adaptation: ``beta w + a H + b S``."""
    return beta * w + a * h + b * s


def _check_range(name: str, value: object, positive: bool) -> tuple[float, float]:
    """A ``(low, high)`` pair of finite floats with ``low <= high``."""
    if (
        not isinstance(value, Sequence)
        or len(value) != 2
        or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in value)
    ):
        raise ConfigurationError(f"{name} must be a pair (low, high) of numbers, got {value!r}")
    low, high = float(value[0]), float(value[1])
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        raise ConfigurationError(f"{name} must be finite with low <= high, got {value!r}")
    if positive and low <= 0:
        raise ConfigurationError(f"{name} must be > 0 (time constants in steps), got {value!r}")
    return low, high


class AdLIFNode(BaseNode):
    """Adaptive LIF with learnable per-neuron dynamics (Bittar & Garner, Front. Neurosci.
    2022, "A surrogate gradient spiking baseline for speech command recognition")::

        w[t] = beta w[t-1] + a u[t-1] + b S[t-1]            (adaptation current)
        H[t] = alpha V[t-1] + (1 - alpha) (X[t] - w[t])      (charge)
        S[t] = Θ(H[t] - θ)
        V[t] = H[t] - θ S[t]                                 (soft reset: v_reset=None, default)

    where ``u[t-1] = H[t-1]`` is the membrane before its reset. ``a`` couples the
    membrane to the adaptation (``a < 0`` makes the neuron resonate), ``b`` raises the
    adaptation after each spike. The four parameters are learnable, one value per
    neuron when ``shape`` is given (else one per layer), drawn uniformly from the paper's
    ranges and clamped to them at every call: ``alpha = exp(-1/tau)`` with ``tau`` in
    ``tau_range`` (5 to 25 steps), ``beta = exp(-1/tau_adapt)`` with ``tau_adapt`` in
    ``tau_adapt_range`` (30 to 120 steps), ``a`` in ``a_range`` ([-1, 1]), ``b`` in
    ``b_range`` ([0, 2]). States start at 0 (the authors' code draws them at random for
    each batch). With ``a = b = 0`` it is a LIF whose input is scaled by ``1 - alpha``.

    Their network (model ``rsnn``) fires on ``H > θ`` (``strict_firing=True``) with a
    boxcar surrogate of width 1 (``Rect(alpha=1)``); here the neuron has spikeflow's
    defaults (``H >= θ``, Sigmoid) unless those are passed.

    Args:
        shape: the per-neuron parameters' shape, broadcast against one step's input
            (``hidden`` for ``[B, hidden]`` inputs, ``(C, 1, 1)`` for one value per
            channel of ``[B, C, H, W]``); ``None``: one value per layer.
        tau_range, tau_adapt_range: the membrane and adaptation time constants' ranges,
            in steps (> 0).
        a_range, b_range: the ranges of ``a`` and ``b``.
        **kwargs: the arguments of :class:`~spikeflow.neurons.base.BaseNode`
            (``v_reset`` defaults to ``None`` here: the soft reset of the paper).

    State: ``v`` and the adaptation ``w`` of the next step (``node.state["w"]`` while
    streaming).

    Raises:
        ConfigurationError: a bad shape or range, or a bad argument of
            :class:`~spikeflow.neurons.base.BaseNode`.
    """

    def __init__(
        self,
        shape: int | Sequence[int] | None = None,
        tau_range: tuple[float, float] = (5.0, 25.0),
        tau_adapt_range: tuple[float, float] = (30.0, 120.0),
        a_range: tuple[float, float] = (-1.0, 1.0),
        b_range: tuple[float, float] = (0.0, 2.0),
        v_reset: float | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(v_reset=v_reset, **kwargs)  # type: ignore[arg-type]
        self.shape = _check_shape(shape)
        taus = _check_range("tau_range", tau_range, positive=True)
        adapts = _check_range("tau_adapt_range", tau_adapt_range, positive=True)
        self.alpha_range = (math.exp(-1.0 / taus[0]), math.exp(-1.0 / taus[1]))
        self.beta_range = (math.exp(-1.0 / adapts[0]), math.exp(-1.0 / adapts[1]))
        self.a_range = _check_range("a_range", a_range, positive=False)
        self.b_range = _check_range("b_range", b_range, positive=False)
        size = self.shape if self.shape is not None else ()
        for name in ("alpha", "beta", "a", "b"):
            low, high = getattr(self, f"{name}_range")
            self.register_parameter(name, nn.Parameter(torch.empty(size).uniform_(low, high)))

    alpha: nn.Parameter
    beta: nn.Parameter
    a: nn.Parameter
    b: nn.Parameter

    def declaration(self) -> NeuronDeclaration:
        return declare(_adlif_charge, _adlif_update, type(self).__name__)

    def neuron_params(self) -> dict[str, Tensor | float]:
        # Clamped inside the graph: a parameter pushed past its range gets no gradient.
        return {
            name: torch.clamp(getattr(self, name), *getattr(self, f"{name}_range"))
            for name in ("alpha", "beta", "a", "b")
        }

    def initial_values(self) -> dict[str, float]:
        return {**super().initial_values(), "w": 0.0}

    def extra_repr(self) -> str:
        shape = "per layer" if self.shape is None else tuple(self.shape)
        return f"shape={shape}, " + super().extra_repr()

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        _expand_per_layer_values(self, state_dict, prefix, ("alpha", "beta", "a", "b"))
        super()._load_from_state_dict(state_dict, prefix, *args)


def _expand_per_layer_values(
    module: nn.Module, state_dict: dict[str, Any], prefix: str, names: Sequence[str]
) -> None:
    """Let a per-neuron module (``shape`` given) load a per-layer checkpoint.

    A per-layer value broadcast to every neuron is the same neuron, so a checkpoint saved
    without ``shape`` (``recurrent_lif_seq`` before it passed its hidden width) loads and
    gives the same outputs. The parameter's leading dimensions (TC-LIF's pair) stay.
    """
    shape = getattr(module, "shape", None)
    if shape is None:
        return
    for name in names:
        key = prefix + name
        value = state_dict.get(key)
        param = getattr(module, name)
        lead = param.shape[: param.dim() - len(shape)]
        if isinstance(value, Tensor) and value.shape == lead:
            view = value.reshape(*lead, *(1,) * len(shape))
            state_dict[key] = view.expand(param.shape).clone()


def _check_shape(shape: int | Sequence[int] | None) -> tuple[int, ...] | None:
    if shape is None:
        return None
    dims = [shape] if isinstance(shape, numbers.Integral) else shape
    if (
        not isinstance(dims, Sequence)
        or not dims
        or not all(isinstance(d, numbers.Integral) and not isinstance(d, bool) for d in dims)
        or any(int(d) < 1 for d in dims)
    ):
        raise ConfigurationError(
            f"shape must be a positive integer or a tuple of them (or None), got {shape!r}"
        )
    return tuple(int(d) for d in dims)
