"""The balanced resonate-and-fire neuron (BRF) of Higuchi et al. (ICML 2024).

A resonate-and-fire neuron (a damped oscillator, Euler-discretised) whose damping is
kept at the divergence boundary of the discretisation and raised after each spike by a
refractory variable, which also raises the threshold. Declared once, like every spikeflow
neuron: the reference loop and the fused CPU and Triton kernels (forward and backward,
the gradients of the learnable frequency and damping included) come from the declaration.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from spikeflow._checks import check_real
from spikeflow.base import StepMode
from spikeflow.errors import ConfigurationError
from spikeflow.neurons.adlif import _check_range, _check_shape, _expand_per_layer_values
from spikeflow.neurons.base import BaseNode
from spikeflow.neurons.declaration import NeuronDeclaration, declare
from spikeflow.surrogate import Surrogate

__all__ = ["BRFNode"]

#: |omega| is kept below (1 - this) / dt, where the divergence boundary p(omega) is real.
_OMEGA_MARGIN = 1e-3


def _brf_charge(
    x: Tensor, v: Tensor, w: Tensor, q: Tensor, *,
    omega: Tensor, p_omega: Tensor, b_offset: Tensor, dt: float, input_scale: float,
) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
    """One Euler step of ``dz/dt = (b + i omega) z + k X``, ``b = p(omega) - b_offset - q``;
    ``V`` (the real part, which fires) and ``w`` (the imaginary part) from the old pair."""
    b = p_omega - b_offset - q
    h = v + dt * (b * v - omega * w + input_scale * x)
    return h, w + dt * (omega * v + b * w), q


def _brf_threshold(theta: Tensor, w: Tensor, q: Tensor) -> Tensor:
    """The threshold raised by the refractory variable of the previous step."""
    return theta + q


def _brf_update(
    h: Tensor, s: Tensor, w: Tensor, q: Tensor, *, q_decay: float
) -> tuple[Tensor, Tensor]:
    """The refractory variable counts this step's spike: ``q_decay q + S``."""
    return w, q_decay * q + s


def _brf_no_reset(h: Tensor, s: Tensor, theta: Tensor, w: Tensor, q: Tensor) -> Tensor:
    """The membrane is not reset: the refractory variable damps it instead."""
    return h


class BRFNode(BaseNode):
    """Balanced resonate-and-fire neuron (Higuchi, Kairat, Bohté & Otte, ICML 2024,
    "Balanced Resonate-and-Fire Neurons")::

        b[t]  = p(omega) - b_offset - q[t-1],   p(omega) = (-1 + sqrt(1 - (dt omega)²)) / dt
        H[t]  = V[t-1] + dt (b[t] V[t-1] - omega W[t-1] + k X[t])   (real part: fires)
        W[t]  = W[t-1] + dt (omega V[t-1] + b[t] W[t-1])            (imaginary part)
        S[t]  = Θ(H[t] - θ - q[t-1])
        q[t]  = q_decay q[t-1] + S[t];   V[t] = H[t]                (no reset)

    ``p(omega)`` is the divergence boundary of the Euler step (the damping at which the
    discrete oscillation neither grows nor decays): with ``b_offset >= 0`` the neuron
    stays stable, and each spike both damps it and raises its threshold through ``q``,
    in place of a reset. ``omega`` and ``b_offset`` are learnable (one value per layer,
    or per neuron with ``shape``), drawn uniformly from ``omega_range`` and
    ``b_offset_range``; the equations use ``|omega|`` and ``|b_offset|``, as the
    authors' code, with ``|omega|`` clamped below ``1/dt`` (where ``p`` is real; the
    authors' code does not clamp). The defaults are those of the authors' ``BRFCell``:
    ``dt = 0.01``, ``q_decay = 0.9``, ``θ = 1``, ``omega`` in [5, 10] and ``b_offset`` in
    [0, 3]; their experiments pass other ranges (SHD: ``b_offset`` in [2, 3]; see
    docs/neuron_zoo_sequence.md). Their ``p(omega)`` always uses ``dt = 0.01``, this one
    the ``dt`` given. Their spike function is a double-Gaussian surrogate firing on
    ``H > θ + q`` (``surrogate_function=DoubleGaussian(), strict_firing=True``); here
    the default is spikeflow's (Sigmoid, ``H >= θ + q``).

    The input enters scaled by ``dt`` (``k = input_scale = 1``, the authors'): their
    networks reach currents of order ``1/dt`` through their weights, whereas unit-scale
    inputs (a LayerNorm's, the zoo's sequence models') move the membrane by about
    ``dt / |b + i omega|`` (~0.1) and leave it silent. ``input_scale=1/dt`` (100 here)
    makes the input enter as ``X`` itself (not part of the paper).

    Args:
        shape: the per-neuron parameters' shape, broadcast against one step's input
            (``hidden`` for ``[B, hidden]``); ``None``: one value per layer.
        omega_range: the initial angular frequencies' range (radians per unit of time;
            the high end below ``1/dt``).
        b_offset_range: the initial damping offsets' range.
        dt: the Euler step, > 0.
        q_decay: the refractory variable's decay per step, in [0, 1].
        input_scale: ``k``, the input's gain, > 0 (1: the authors' equations).
        v_threshold, surrogate_function, strict_firing, learnable_threshold,
            step_mode, backend, store_v_seq: as :class:`~spikeflow.neurons.base.BaseNode`
            (it takes no ``v_reset`` or ``detach_reset``: the membrane is never reset).

    State: ``v`` (the real part), ``w`` (the imaginary part) and ``q``, all starting
    at 0 (``node.state[...]`` while streaming).

    Raises:
        ConfigurationError: a bad ``shape`` or range, ``dt <= 0``, ``q_decay`` outside
            [0, 1], ``input_scale <= 0``, or a bad argument of
            :class:`~spikeflow.neurons.base.BaseNode`.
    """

    charge_returns_aux = True

    def __init__(
        self,
        shape: int | Sequence[int] | None = None,
        omega_range: tuple[float, float] = (5.0, 10.0),
        b_offset_range: tuple[float, float] = (0.0, 3.0),
        dt: float = 0.01,
        q_decay: float = 0.9,
        input_scale: float = 1.0,
        v_threshold: float | Tensor = 1.0,
        surrogate_function: Surrogate | None = None,
        strict_firing: bool = False,
        learnable_threshold: bool = False,
        step_mode: StepMode = "m",
        backend: str = "auto",
        store_v_seq: bool = False,
    ) -> None:
        # No v_reset or detach_reset: the membrane is never reset (V = H).
        super().__init__(
            v_threshold=v_threshold, v_reset=0.0, surrogate_function=surrogate_function,
            strict_firing=strict_firing, learnable_threshold=learnable_threshold,
            step_mode=step_mode, backend=backend, store_v_seq=store_v_seq,
        )  # fmt: skip
        self.shape = _check_shape(shape)
        self.dt = check_real("dt", dt, 0.0, low_open=True)
        self.q_decay = check_real("q_decay", q_decay, 0.0, 1.0)
        self.input_scale = check_real("input_scale", input_scale, 0.0, low_open=True)
        self.omega_range = _check_range("omega_range", omega_range, positive=True)
        self.b_offset_range = _check_range("b_offset_range", b_offset_range, positive=False)
        if self.omega_range[1] * self.dt >= 1.0:
            raise ConfigurationError(
                f"omega_range {omega_range!r} must stay below 1/dt = {1.0 / self.dt:g} "
                "(where the divergence boundary sqrt(1 - (dt omega)²) is real)"
            )
        size = self.shape if self.shape is not None else ()
        self.omega = nn.Parameter(torch.empty(size).uniform_(*self.omega_range))
        self.b_offset = nn.Parameter(torch.empty(size).uniform_(*self.b_offset_range))

    def declaration(self) -> NeuronDeclaration:
        return declare(
            _brf_charge, _brf_update, type(self).__name__, charge_returns_aux=True,
            threshold=_brf_threshold, reset_membrane=_brf_no_reset,
        )  # fmt: skip

    def neuron_params(self) -> dict[str, Tensor | float]:
        omega = torch.clamp(self.omega.abs(), max=(1.0 - _OMEGA_MARGIN) / self.dt)
        p_omega = (torch.sqrt(1.0 - torch.square(self.dt * omega)) - 1.0) / self.dt
        return {
            "omega": omega,
            "p_omega": p_omega,
            "b_offset": self.b_offset.abs(),
            "dt": self.dt,
            "q_decay": self.q_decay,
            "input_scale": self.input_scale,
        }

    def initial_values(self) -> dict[str, float]:
        return {**super().initial_values(), "w": 0.0, "q": 0.0}

    def extra_repr(self) -> str:
        shape = "per layer" if self.shape is None else tuple(self.shape)
        return (
            f"shape={shape}, dt={self.dt:g}, q_decay={self.q_decay:g}, "
            f"input_scale={self.input_scale:g}, " + super().extra_repr()
        )

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # a per-layer checkpoint loads into a per-neuron module (the same neuron)
        _expand_per_layer_values(self, state_dict, prefix, ("omega", "b_offset"))
        super()._load_from_state_dict(state_dict, prefix, *args)
