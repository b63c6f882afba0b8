"""Lava-DL's resonate-and-fire neurons: with Izhikevich's reset (``slayer.neuron.rf_iz``)
with the phase spike (``slayer.neuron.rf``), and the adaptive one with Izhikevich firing
(``slayer.neuron.adrf_iz``) and with the phase spike (``slayer.neuron.adrf``), the last
two in :mod:`spikeflow.neurons.lava_adrf` (re-exported here).

Lava-DL's resonators take a *complex* input (its complex synapses give a real and an
imaginary part), which the neuron declaration (one real input per neuron and step)
cannot take: these neurons are stepped by a loop (:class:`~spikeflow.neurons.LoopNode`),
with autograd through the loop, and takes ``(real, imag)`` or a real tensor (an
imaginary input of 0). Lava-DL's names and semantics are kept (see
:mod:`spikeflow.neurons.lava_dl`): time-major input ``[T, B, ...]``, its floating-point
dynamics (the fixed-point grid of ``dynamics/resonator.py`` not reproduced), the
module's surrogate in place of Lava-DL's exponential spike derivative.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from spikeflow._checks import check_flag, check_real
from spikeflow.base import StepMode
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.neurons.base import check_sequence, check_step_shape
from spikeflow.neurons.lava_dl import (
    LAVA_P_SCALE,
    _check_scale,
    _grid_threshold,
)
from spikeflow.neurons.loop import LoopNode, check_surrogate
from spikeflow.surrogate import Surrogate

__all__ = [
    "ADRF_SCALE_RHO_MULT",
    "ADRF_TAU_RHO_MULT",
    "RF_SCALE_RHO_MULT",
    "RF_TAU_RHO_MULT",
    "LavaADRFIzNode",
    "LavaADRFNode",
    "LavaRFIzNode",
    "LavaRFNode",
]


def _round_ste(value: Tensor) -> Tensor:
    """``torch.round(value)`` with the straight-through gradient (Lava-DL's
    ``quantize``)."""
    return torch.round(value.detach()) + (value - value.detach())


def _check_per_channel(
    owner: str, name: str, value: object, shared_param: bool, low: float, high: float
) -> Tensor:
    """``period`` / ``decay`` as a float64 tensor within [low, high]: a number, or with
    ``shared_param=False`` a float tensor of per-channel values."""
    if isinstance(value, Tensor):
        if shared_param and value.numel() != 1:
            raise ConfigurationError(
                f"{owner}: {name} must be a scalar when shared_param is True (Lava-DL's "
                f"rule), got a tensor of shape {tuple(value.shape)}; pass "
                f"shared_param=False for per-channel values"
            )
        if not value.is_floating_point():
            raise DTypeError(f"{owner}: {name} must be a floating-point tensor, got {value.dtype}")
        tensor = value.detach().to(torch.float64)
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"{owner}: {name} must be a number or a tensor, got {value!r}")
    else:
        tensor = torch.tensor(float(value), dtype=torch.float64)
    if not bool(torch.isfinite(tensor).all()) or not bool(
        ((tensor >= low) & (tensor <= high)).all()
    ):
        raise ConfigurationError(
            f"{owner}: {name} must be in [{low:g}, {high:g}] everywhere, got {value}"
        )
    return tensor


class LavaRFIzNode(LoopNode):
    """Lava-DL's resonate-and-fire neuron with Izhikevich's reset
    (``slayer.neuron.rf_iz.Neuron``), on a complex input ``x = x_re + i x_im``::

        Re z[t] = c Re z[t-1] - s Im z[t-1] + x_re[t]
        Im z[t] = s Re z[t-1] + c Im z[t-1] + x_im[t]
        S[t] = Im z[t] >= θ
        after a spike: Re z[t] = 0,  Im z[t] = θ - 1 / (64 scale)

    with ``s = round(4096 sin_decay) / 4096``, ``c = round(4096 cos_decay) / 4096``,
    ``sin_decay = sin(2π / period) (1 - decay)``, ``cos_decay = cos(2π / period) (1 -
    decay)`` (Lava-DL's parameters, clamped as its ``clamp()``: the gain ``sqrt(s² +
    c²)`` to at most ``4095 / 4096``, ``s >= 1 / 4096``, ``c >= 0``), ``θ = int(scale
    threshold) / scale``, from ``z = 0``. The membrane (``v``, ``v_seq``) is ``Im z``
    after the reset; the real part is the state ``u``.

    **Gradient.** Lava-DL's resonator backward is the linear recurrence without the
    reset (its autograd function does not see it); so is this neuron's (the reset is
    applied to the forward values only, the gradient passes as if there were none),
    with the module's surrogate on ``Im z - θ`` in place of Lava-DL's exponential spike
    derivative.

    Mapping (Lava-DL ``rf_iz.Neuron(threshold, period, decay, scale=1 << 6,
    shared_param=True, persistent_state=False, requires_grad=False)``, its blocks'
    complex synapse giving ``(real, imag)``): the same names and values; call the neuron
    on ``(real, imag)`` time-major tensors (or one real tensor: an imaginary input of
    0). ``shared_param=False`` takes per-channel ``period`` and ``decay`` tensors
    broadcastable to the neuron shape (Lava-DL draws them at random in a range on the
    first call, or log-spaced with ``log_init``: not reproduced). ``persistent_state``
    turns streaming on; ``requires_grad`` makes ``sin_decay`` and ``cos_decay``
    ``nn.Parameter``\\ s (fractions, not Lava-DL's 4096ths), re-clamped at each call.

    Args:
        threshold: θ (> 0 on the grid).
        period: the oscillation period in steps, >= 4 (Lava-DL's bound).
        decay: the fraction of ``|z|`` lost per step, in [0, 1].
        scale: Lava-DL's weight scale (default ``1 << 6``): the threshold's grid and,
            times 64, the state scale of the reset value.
        shared_param: one ``period`` and ``decay`` for every neuron (default True).
        persistent_state: carry the state between calls (default False).
        requires_grad: learn ``sin_decay`` and ``cos_decay`` (default False).
        surrogate_function: the spike function (default ``Sigmoid(alpha=4)``).
        step_mode: ``'m'`` (``[T, B, ...]``, default) or ``'s'`` (``[B, ...]``).
        store_v_seq: keep ``Im z`` after the reset of every step in ``self.v_seq``.

    Raises:
        ConfigurationError: ``period < 4``, ``decay`` outside [0, 1], tensors with
            ``shared_param=True``, ``threshold <= 0`` on its grid, a bad ``scale`` or
            flag.
        ShapeError (at the call): real and imaginary inputs of different shapes, or a
            per-channel parameter that does not broadcast to one step.
    """

    def __init__(
        self,
        threshold: float,
        period: float | Tensor,
        decay: float | Tensor,
        scale: int = 1 << 6,
        *,
        shared_param: bool = True,
        persistent_state: bool = False,
        requires_grad: bool = False,
        surrogate_function: Surrogate | None = None,
        step_mode: StepMode = "m",
        store_v_seq: bool = False,
    ) -> None:
        super().__init__(step_mode, store_v_seq)
        owner = type(self).__name__
        self.scale = _check_scale(owner, scale)
        self.threshold = _grid_threshold(owner, threshold, self.scale)
        self.shared_param = check_flag(owner, "shared_param", shared_param)
        self.persistent_state = check_flag(owner, "persistent_state", persistent_state)
        self.requires_grad = check_flag(owner, "requires_grad", requires_grad)
        self.surrogate_function = check_surrogate(owner, surrogate_function)
        period_t = _check_per_channel(owner, "period", period, self.shared_param, 4.0, math.inf)
        decay_t = _check_per_channel(owner, "decay", decay, self.shared_param, 0.0, 1.0)
        angle = 2 * math.pi / period_t
        dtype = torch.get_default_dtype()
        sin_decay = (torch.sin(angle) * (1 - decay_t)).to(dtype)
        cos_decay = (torch.cos(angle) * (1 - decay_t)).to(dtype)
        if self.requires_grad:
            self.sin_decay = nn.Parameter(sin_decay)
            self.cos_decay = nn.Parameter(cos_decay)
        else:
            self.register_buffer("sin_decay", sin_decay)
            self.register_buffer("cos_decay", cos_decay)
        self.clamp()
        if self.persistent_state:
            self.streaming = True

    def clamp(self) -> None:
        """Lava-DL's ``clamp()`` of the decays, in place (no gradient): the gain
        ``sqrt(sin² + cos²)`` to at most ``4095 / 4096``, ``sin_decay >= 1 / 4096``,
        ``cos_decay >= 0``."""
        with torch.no_grad():
            sin_p, cos_p = self.sin_decay * LAVA_P_SCALE, self.cos_decay * LAVA_P_SCALE
            gain = torch.sqrt(sin_p**2 + cos_p**2)
            factor = gain.clamp(0, LAVA_P_SCALE - 1) / gain
            self.sin_decay.copy_((sin_p * factor).clamp(min=1) / LAVA_P_SCALE)
            self.cos_decay.copy_((cos_p * factor).clamp(min=0) / LAVA_P_SCALE)

    @property
    def reset_value(self) -> float:
        """``Im z`` after a spike: ``θ - 1 / (64 scale)`` (one unit of Lava-DL's state
        scale below the threshold)."""
        return self.threshold - 1.0 / (self.scale * 64)

    def _decays(self) -> tuple[Tensor, Tensor]:
        """``(s, c)``: the decays rounded to 4096ths, straight-through."""
        if self.requires_grad:
            self.clamp()
        sin_q = _round_ste(self.sin_decay * LAVA_P_SCALE) / LAVA_P_SCALE
        cos_q = _round_ste(self.cos_decay * LAVA_P_SCALE) / LAVA_P_SCALE
        return sin_q, cos_q

    def initial_values(self) -> dict[str, float]:
        # u_pre / v_pre: the state before the last reset (for the decays' gradient)
        return {"v": 0.0, "u": 0.0, "v_pre": 0.0, "u_pre": 0.0}

    def step(self, x: Tensor, state: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """One step of the complex input ``x`` (``[2, B, ...]``: real, imaginary)."""
        sin_q, cos_q = self.__dict__["_step_decays"]
        real, imag = state["u"], state["v"]
        # The values rotate the state after the reset; the decays' gradient reads the
        # states before it (Lava-DL's backward saves those), zero-valued terms here.
        d_sin, d_cos = sin_q - sin_q.detach(), cos_q - cos_q.detach()
        pre_real, pre_imag = state["u_pre"], state["v_pre"]
        real_new = (
            cos_q.detach() * real - sin_q.detach() * imag + d_cos * pre_real - d_sin * pre_imag
        ) + x[0]
        imag_new = (
            sin_q.detach() * real + cos_q.detach() * imag + d_sin * pre_real + d_cos * pre_imag
        ) + x[1]
        spike = self.surrogate_function(imag_new - self.threshold)
        fired = spike.detach()
        # The reset on the values only: the gradient is the linear recurrence's.
        real_next = real_new - (real_new * fired).detach()
        imag_next = imag_new + ((self.reset_value - imag_new) * fired).detach()
        new_state = {"v": imag_next, "u": real_next, "v_pre": imag_new, "u_pre": real_new}
        return spike, new_state

    def _complex_input(self, x: object) -> Tensor:
        """``x`` as ``[T, 2, B, ...]`` (real and imaginary parts stacked), checked."""
        name = type(self).__name__
        if isinstance(x, (tuple, list)):
            if len(x) != 2:
                raise ShapeError(f"{name} takes (real, imag), got {len(x)} tensors")
            real, imag = x
        else:
            real, imag = x, None
        for part, value in (("real input", real), ("imaginary input", imag)):
            if value is None:
                continue
            if not isinstance(value, Tensor):
                raise DTypeError(f"{name}: the {part} must be a tensor, got {type(value).__name__}")
            if not value.is_floating_point():
                raise DTypeError(f"{name}: the {part} must be floating point, got {value.dtype}")
        if imag is None:
            imag = torch.zeros_like(real)
        if real.shape != imag.shape:
            raise ShapeError(
                f"{name}: the real input {tuple(real.shape)} and the imaginary input "
                f"{tuple(imag.shape)} differ in shape"
            )
        if self.step_mode == "m":
            check_sequence(real, name)
        else:
            real, imag = real.unsqueeze(0), imag.unsqueeze(0)
        for what in ("sin_decay", "cos_decay"):
            check_step_shape(name, what, getattr(self, what), real.shape[1:])
        return torch.stack([real, imag], 1)

    def forward(self, x: Tensor | tuple[Tensor, Tensor]) -> Tensor:  # type: ignore[override]
        """Spikes for the complex input ``(real, imag)`` (or a real tensor): ``[T, B,
        ...]`` in multi-step mode, ``[B, ...]`` in single-step mode."""
        x_seq = self._complex_input(x)  # [T, 2, B, ...]
        state = self._start_state(x_seq[0, 0])
        self.__dict__["_step_decays"] = self._decays()
        try:
            out = self._run_steps(x_seq, state)
        finally:
            del self.__dict__["_step_decays"]
        return out if self.step_mode == "m" else out[0]

    @property
    def u(self) -> Tensor | None:
        """The real part carried to the next call (only while streaming)."""
        return None if self.state is None else self.state["u"]

    def extra_repr(self) -> str:
        return (
            f"threshold={self.threshold:g}, scale={self.scale}, "
            f"shared_param={self.shared_param}, persistent_state={self.persistent_state}, "
            f"requires_grad={self.requires_grad}"
        )


#: Lava-DL's ``rf.py`` multipliers of the phase spike's derivative: its relaxation is
#: ``tau_grad θ · 0.5`` and its scale ``scale_grad · 10``.
RF_TAU_RHO_MULT, RF_SCALE_RHO_MULT = 0.5, 10.0


class _PhaseSpike(torch.autograd.Function):
    """Lava-DL's phase spike ``H(Re z − θ) [Im z[t−1] < 0] [Im z[t] >= 0]`` and its
    relaxed derivative (``slayer/spike/complex.py``): with ``δ(y) = exp(−|y| / τ) / (2τ)``,
    ``∂/∂Re = scale δ(Re − θ) δ(Im)`` and ``∂/∂Im = −(scale / τ) sign(Im) δ(Im) step``,
    ``step = (1 + sign(Re − θ)(1 − 2τ δ(Re − θ))) / 2``; none through ``Im z[t−1]``."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        real: Tensor,
        imag: Tensor,
        imag_before: Tensor,
        threshold: float | Tensor,
        tau: float,
        scale: float,
    ) -> Tensor:
        ctx.save_for_backward(real, imag)
        ctx.constants = (threshold, tau, scale)  # type: ignore[attr-defined]
        crossed = (real >= threshold) & (imag_before < 0) & (imag >= 0)
        return crossed.to(real.dtype)

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad: Tensor
    ) -> tuple[Tensor | None, ...]:
        real, imag = ctx.saved_tensors  # type: ignore[attr-defined]
        threshold, tau, scale = ctx.constants  # type: ignore[attr-defined]
        above = real - threshold
        delta_real = torch.exp(-torch.abs(above) / tau) / (2 * tau)
        delta_imag = torch.exp(-torch.abs(imag) / tau) / (2 * tau)
        step = (1 + torch.sign(above) * (1 - 2 * tau * delta_real)) / 2
        d_real = scale * delta_real * delta_imag
        d_imag = -(scale / tau) * torch.sign(imag) * delta_imag * step
        return grad * d_real, grad * d_imag, None, None, None, None


class LavaRFNode(LavaRFIzNode):
    """Lava-DL's resonate-and-fire neuron with the phase spike (``slayer.neuron.rf``),
    on a complex input ``x = x_re + i x_im``::

        Re z[t] = c Re z[t-1] - s Im z[t-1] + x_re[t]
        Im z[t] = s Re z[t-1] + c Im z[t-1] + x_im[t]
        S[t] = [Re z[t] >= θ] [Im z[t-1] < 0] [Im z[t] >= 0]

    (it fires where ``z`` crosses the positive real axis above the threshold, and is
    never reset), with the decays and threshold of :class:`LavaRFIzNode` (``period``,
    ``decay``, the clamp, 4096ths, ``int(scale θ) / scale``). Its gradient is Lava-DL's:
    the resonator's linear recurrence, and the phase spike's own relaxed derivative
    (``slayer/spike/complex.py``; no spikeflow surrogate has two inputs) with Lava-DL's
    ``tau_grad`` and ``scale_grad``: relaxation ``0.5 tau_grad θ``, scale ``10
    scale_grad``. The membrane (``v``) is ``Im z``, ``u`` the real part.

    Mapping: Lava-DL ``rf.Neuron(threshold, period, decay, tau_grad=1, scale_grad=1,
    scale=1 << 6, shared_param=True, persistent_state=False, requires_grad=False)``,
    the same names and values (see :class:`LavaRFIzNode` for ``shared_param``; its
    ``log_init`` draw is not reproduced).

    Args:
        threshold, period, decay, scale, shared_param, persistent_state,
        requires_grad, step_mode, store_v_seq: as :class:`LavaRFIzNode`.
        tau_grad: the relaxation of the spike's derivative, in units of θ (> 0).
        scale_grad: the scale of the spike's derivative (> 0).

    Raises:
        ConfigurationError: as :class:`LavaRFIzNode`, or ``tau_grad`` / ``scale_grad``
            not a finite number > 0.
    """

    def __init__(
        self,
        threshold: float,
        period: float | Tensor,
        decay: float | Tensor,
        tau_grad: float = 1.0,
        scale_grad: float = 1.0,
        scale: int = 1 << 6,
        *,
        shared_param: bool = True,
        persistent_state: bool = False,
        requires_grad: bool = False,
        step_mode: StepMode = "m",
        store_v_seq: bool = False,
    ) -> None:
        super().__init__(
            threshold,
            period,
            decay,
            scale,
            shared_param=shared_param,
            persistent_state=persistent_state,
            requires_grad=requires_grad,
            step_mode=step_mode,
            store_v_seq=store_v_seq,
        )
        owner = type(self).__name__
        self.tau_grad = check_real(f"{owner}: tau_grad", tau_grad, 0.0, low_open=True)
        self.scale_grad = check_real(f"{owner}: scale_grad", scale_grad, 0.0, low_open=True)
        del self.surrogate_function  # the phase spike has its own derivative

    def initial_values(self) -> dict[str, float]:
        return {"v": 0.0, "u": 0.0}

    def step(self, x: Tensor, state: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """One step of the complex input ``x`` (``[2, B, ...]``: real, imaginary)."""
        real_new, imag_new = _rotate(self, x, state)
        tau = self.tau_grad * self.threshold * RF_TAU_RHO_MULT
        spike = _PhaseSpike.apply(
            real_new, imag_new, state["v"].detach(), self.threshold, tau,
            self.scale_grad * RF_SCALE_RHO_MULT,
        )  # fmt: skip
        return spike, {"v": imag_new, "u": real_new}

    def extra_repr(self) -> str:
        return (
            super().extra_repr() + f", tau_grad={self.tau_grad:g}, scale_grad={self.scale_grad:g}"
        )


def _rotate(node: LoopNode, x: Tensor, state: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """The resonator's step: the state ``u + i v`` rotated by the decays, plus ``x``."""
    sin_q, cos_q = node.__dict__["_step_decays"]
    real, imag = state["u"], state["v"]
    return cos_q * real - sin_q * imag + x[0], sin_q * real + cos_q * imag + x[1]


# The adaptive resonators subclass the ones above, so they are imported once those exist
# (the package's __init__ imports this module first, so importing them directly works).
from spikeflow.neurons.lava_adrf import (  # noqa: E402
    ADRF_SCALE_RHO_MULT,
    ADRF_TAU_RHO_MULT,
    LavaADRFIzNode,
    LavaADRFNode,
)
