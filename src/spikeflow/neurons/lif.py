"""Integrate-and-fire neurons: IF, LIF and parametric LIF (methods.md 1.2).

The LIF time constant may be one number, one value per neuron (a tensor, fixed), or
learned: ``LIFNode(tau, learnable_tau=True)`` learns ``tau`` itself (clamped to
``>= 1`` at each call), ``ParametricLIFNode`` learns ``w`` with ``1/tau = sigmoid(w)``,
one per layer or, with ``shape``, one per channel or neuron.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import cast

import torch
from torch import Tensor, nn

from spikeflow._checks import check_flag
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.neurons.adlif import _check_range, _check_shape
from spikeflow.neurons.base import BaseNode, check_step_shape
from spikeflow.neurons.declaration import NeuronDeclaration, declare

__all__ = ["IFNode", "LIFNode", "PLIFNode", "ParametricLIFNode"]


class IFNode(BaseNode):
    """Integrate-and-fire neuron: ``H[t] = V[t-1] + X[t]``.

    Takes the arguments of :class:`~spikeflow.neurons.base.BaseNode` (threshold 1, hard
    reset to 0, Sigmoid(alpha=4) surrogate by default).
    """

    @staticmethod
    def charge(x: Tensor, v: Tensor) -> Tensor:
        return v + x


def _lif_decay_input(x: Tensor, v: Tensor, *, decay: Tensor | float, v_rest: float) -> Tensor:
    """LIF with ``decay_input=True``: ``H = V + (X - (V - V_rest)) / tau``."""
    return v + (x - (v - v_rest)) * decay


def _lif_no_decay_input(x: Tensor, v: Tensor, *, decay: Tensor | float, v_rest: float) -> Tensor:
    """LIF with ``decay_input=False``: ``H = V - (V - V_rest) / tau + X``."""
    return v - (v - v_rest) * decay + x


def _check_tau(name: str, tau: float) -> float:
    if isinstance(tau, bool) or not isinstance(tau, (int, float)):
        raise ConfigurationError(f"{name} must be a number > 1, got {tau!r}")
    tau = float(tau)
    if not tau > 1.0 or not math.isfinite(tau):
        raise ConfigurationError(
            f"{name} must be a finite number > 1 (the membrane keeps 1 - 1/{name} of its "
            f"deviation from rest each step), got {tau}"
        )
    return tau


def check_taus(name: str, tau: object) -> float | Tensor:
    """A LIF time constant: a number > 1 (as a float), or a floating-point tensor of
    finite values > 1 everywhere (a detached copy: one value per neuron or channel).

    Raises:
        ConfigurationError: neither a number nor a tensor, or a value that is not > 1
            or not finite (the message names ``name``).
        DTypeError: a tensor that is not floating-point.
    """
    if not isinstance(tau, Tensor):
        if isinstance(tau, bool) or not isinstance(tau, (int, float)):
            raise ConfigurationError(
                f"{name} must be a number > 1 or a floating-point tensor of them, got {tau!r}"
            )
        return _check_tau(name, tau)
    if not tau.is_floating_point():
        raise DTypeError(f"{name} must be a floating-point tensor, got dtype {tau.dtype}")
    if tau.is_meta:  # a model built on the meta device: no values to check
        return tau.detach().clone()
    bad = ~(torch.isfinite(tau) & (tau > 1.0))
    if bool(bad.any()):
        raise ConfigurationError(
            f"{name} must be finite and > 1 everywhere (the membrane keeps 1 - 1/{name} of "
            f"its deviation from rest each step); got {tau.detach()[bad].flatten()[:4].tolist()} "
            f"among the values of shape {tuple(tau.shape)}"
        )
    return tau.detach().clone()


def learnable_time_constant(value: float | Tensor) -> nn.Parameter:
    """A checked time constant as a trainable parameter: a tensor keeps its dtype and
    shape, a float becomes a 0-dim tensor of the default dtype."""
    tensor = value if isinstance(value, Tensor) else torch.tensor(value)
    return nn.Parameter(tensor)


class LIFNode(BaseNode):
    """Leaky integrate-and-fire neuron (methods.md 1.2).

    ``decay_input=True`` (default): ``H = V + (X - (V - V_r)) / tau``;
    ``decay_input=False``: ``H = V - (V - V_r) / tau + X``. With soft reset the leak
    is towards 0.

    ``tau`` is one number for the layer, or a tensor broadcastable to one step of the
    input (``(C, 1, 1)`` for one value per channel of ``[B, C, H, W]``, ``(N,)`` for one
    per neuron of ``[B, N]``): heterogeneous time constants. With
    ``learnable_tau=True`` it is an ``nn.Parameter`` (``node.tau``, same shape and
    name as the fixed one, so state dicts load across the two), trained directly in
    steps: the neuron uses ``1 / max(tau, 1)``, so a step that pushes ``tau`` below 1
    leaves the neuron at ``tau = 1`` (``decay = 1``, no memory beyond the step) with no
    gradient until it comes back, as snnTorch clamps its learned ``beta`` to [0, 1].
    (The clamp keeps ``tau`` itself as the parameter, the quantity the peers learn:
    Norse's ``tau_mem_inv``, snnTorch's ``beta = 1 - 1/tau``; for the sigmoid
    parametrisation of Fang et al., ``1/tau = sigmoid(w)``, which never leaves its range
    and has a gradient everywhere, use :class:`ParametricLIFNode` with ``shape``.)

    Args:
        tau: membrane time constant, > 1: a number (default 2) or a floating-point
            tensor of them (one value per neuron or channel).
        decay_input: whether the input is divided by ``tau`` as well.
        learnable_tau: make ``tau`` a trainable parameter (default False; by keyword,
            as every argument after ``decay_input``).
        **kwargs: the arguments of :class:`~spikeflow.neurons.base.BaseNode`.

    Raises:
        ConfigurationError: a ``tau`` that is not > 1 and finite everywhere.
        DTypeError: a ``tau`` tensor that is not floating-point.
        ShapeError (at the call): a ``tau`` tensor that does not broadcast to one step.
    """

    tau: float | Tensor

    def __init__(
        self,
        tau: float | Tensor = 2.0,
        decay_input: bool = True,
        *,
        learnable_tau: bool = False,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        owner = type(self).__name__
        learnable = check_flag(owner, "learnable_tau", learnable_tau)
        checked = check_taus("tau", tau)
        if learnable:
            self.tau = learnable_time_constant(checked)
        elif isinstance(checked, Tensor):
            self.register_buffer("tau", checked)
        else:
            self.tau = checked
        self.decay_input = check_flag(owner, "decay_input", decay_input)

    def declaration(self) -> NeuronDeclaration:
        charge = _lif_decay_input if self.decay_input else _lif_no_decay_input
        return declare(charge, None, f"{type(self).__name__}(decay_input={self.decay_input})")

    def _v_rest(self) -> float:
        return 0.0 if self.v_reset is None else self.v_reset

    def decay(self) -> float | Tensor:
        """``1 / tau`` for this call (``1 / max(tau, 1)`` for a learned ``tau``): the
        fraction of its deviation from rest the membrane loses each step."""
        if "tau" in self._parameters:  # learned (also when torch.func swaps it in)
            return 1.0 / torch.clamp(self.tau, min=1.0)
        return 1.0 / self.tau

    def neuron_params(self) -> dict[str, Tensor | float]:
        return {"decay": self.decay(), "v_rest": self._v_rest()}

    def _check_input(self, x: Tensor) -> Tensor:
        x_seq = super()._check_input(x)
        self._check_tau_shape(x_seq.shape[1:])
        return x_seq

    def _check_tau_shape(self, step_shape: torch.Size) -> None:
        check_step_shape(
            type(self).__name__, "tau", self.tau, step_shape,
            "; per-channel time constants of [B, C, H, W] need shape [C, 1, 1]",
        )  # fmt: skip

    def _tau_repr(self) -> str:
        tau = self.tau
        if not isinstance(tau, Tensor):
            return f"tau={tau:g}"
        text = f"tau={float(tau.detach()):g}" if tau.dim() == 0 else f"tau=tensor{tuple(tau.shape)}"
        return text + (", learnable_tau=True" if "tau" in self._parameters else "")

    def extra_repr(self) -> str:
        return f"{self._tau_repr()}, decay_input={self.decay_input}, " + super().extra_repr()


def _initial_taus(
    init_tau: object, shape: tuple[int, ...] | None
) -> tuple[float | Tensor, tuple[int, ...] | None]:
    """PLIF's initial time constants and the shape of ``w``: a float (``shape`` as given,
    ``None`` for one per layer), or a tensor of taus > 1 in ``w``'s shape (``shape``,
    else the tensor's own); a pair ``(low, high)`` draws each of ``shape``'s taus
    uniformly in it."""
    if isinstance(init_tau, Tensor):
        taus = cast(Tensor, check_taus("init_tau", init_tau))
        if shape is None:  # w takes the tensor's shape (a 0-dim one: one w per layer)
            return taus, (tuple(taus.shape) if taus.dim() else None)
        try:
            return taus.expand(shape).clone(), shape
        except RuntimeError:
            raise ShapeError(
                f"init_tau of shape {tuple(taus.shape)} does not broadcast to shape {shape}"
            ) from None
    if isinstance(init_tau, Sequence) and not isinstance(init_tau, str):
        low, high = _check_range("init_tau", init_tau, positive=True)
        if low <= 1.0:
            raise ConfigurationError(
                f"init_tau (low, high) must have low > 1 (time constants in steps), got "
                f"{init_tau!r}"
            )
        if shape is None:
            raise ConfigurationError(
                f"init_tau={init_tau!r} draws one time constant per element of w: give its "
                "shape (shape=(C, 1, 1) per channel, shape=N per neuron)"
            )
        return torch.empty(shape).uniform_(low, high), shape
    if isinstance(init_tau, numbers.Real) and not isinstance(init_tau, bool):
        init_tau = float(init_tau)
    return _check_tau("init_tau", init_tau), shape  # type: ignore[arg-type]


class ParametricLIFNode(LIFNode):
    """Parametric LIF (Fang et al., ICCV 2021): LIF with a learnable time constant.

    ``1/tau = sigmoid(w)``, initialised to ``w = -ln(init_tau - 1)`` so that
    ``tau = init_tau`` at the start. Without ``shape`` there is one scalar ``w`` per
    layer, shared by all neurons (the paper's PLIF, methods.md 13.2). With ``shape``,
    one ``w`` per element of ``shape``, broadcast against one step of the input:
    ``(C, 1, 1)`` learns one time constant per channel of ``[B, C, H, W]``, ``N`` (or
    ``(N,)``) one per neuron of ``[B, N]``: the heterogeneous, learned time constants
    of Perez-Nieves et al. (Nat. Commun. 2021). The sigmoid keeps every ``tau`` above 1
    with a gradient everywhere.

    Args:
        init_tau: the initial time constant, > 1 (default 2, giving w = 0): a number; a
            floating-point tensor of them (``w`` takes its shape, or ``shape`` when given,
            to which it must broadcast); or a pair ``(low, high)`` (``1 < low <= high``)
            from which each element's ``tau`` is drawn uniformly (needs ``shape``).
        decay_input: whether the input is divided by ``tau`` as well.
        shape: the shape of ``w`` (an int or a tuple of them), or ``None`` (default); by
            keyword, as every argument after ``decay_input``.
        **kwargs: the arguments of :class:`~spikeflow.neurons.base.BaseNode`.

    ``current_tau`` is the time constant now (a float for one per layer, else a
    tensor); ``tau`` is the initial one (a float, or with a tensor or range
    ``init_tau`` a tensor that is not saved in the state dict: ``w`` is the state).

    Raises:
        ConfigurationError: an ``init_tau`` not > 1, a bad range or ``shape``.
        ShapeError: a tensor ``init_tau`` that does not broadcast to ``shape``, or (at
            the call) a ``shape`` that does not broadcast to one step of the input.
    """

    def __init__(
        self,
        init_tau: float | Tensor | tuple[float, float] = 2.0,
        decay_input: bool = True,
        *,
        shape: int | Sequence[int] | None = None,
        **kwargs: object,
    ) -> None:
        w_shape = _check_shape(shape)
        taus, w_shape = _initial_taus(init_tau, w_shape)
        BaseNode.__init__(self, **kwargs)  # type: ignore[arg-type]
        self.decay_input = check_flag(type(self).__name__, "decay_input", decay_input)
        self.shape = w_shape
        if isinstance(taus, Tensor):
            self.register_buffer("tau", taus, persistent=False)
            w = -torch.log(taus - 1.0)
        else:
            self.tau = taus
            w = torch.tensor(-math.log(taus - 1.0))
            if w_shape is not None:
                w = w.expand(w_shape).clone()
        self.w = nn.Parameter(w)

    @property
    def current_tau(self) -> float | Tensor:
        """The time constant ``1 / sigmoid(w)`` right now: a float for one ``w`` per
        layer, else a tensor of ``w``'s shape."""
        tau = 1.0 / torch.sigmoid(self.w.detach())
        return float(tau) if tau.dim() == 0 else tau

    def decay(self) -> Tensor:
        """``1 / tau = sigmoid(w)``."""
        return torch.sigmoid(self.w)

    def _check_tau_shape(self, step_shape: torch.Size) -> None:
        check_step_shape(
            type(self).__name__, "w", self.w, step_shape,
            "; one time constant per channel of [B, C, H, W] needs shape=(C, 1, 1)",
        )  # fmt: skip

    def extra_repr(self) -> str:
        base = BaseNode.extra_repr(self)
        tau = self.current_tau
        if isinstance(tau, float):
            shown = f"tau={tau:.4g}"
        else:
            shown = f"tau=tensor{tuple(tau.shape)}"
        if self.shape is not None:
            shown += f", shape={self.shape}"
        return f"{shown}, decay_input={self.decay_input}, " + base


#: Short alias.
PLIFNode = ParametricLIFNode
