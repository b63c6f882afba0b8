"""Lava-DL's SLAYER neurons beyond CUBA, declared as spikeflow neurons.

Lava-DL (``lava-nc/lava-dl``, ``src/lava/lib/dl/slayer/neuron``) describes each neuron
with decays given as fractions of a step (``current_decay=0.25`` keeps ``1 - 0.25`` of
the current each step), stored as whole 4096ths (``p_scale = 1 << 12``) and rounded
(``quantize``, straight-through gradient) at every call, a threshold truncated to the
weight grid ``int(scale θ) / scale`` when the neuron is built, and states carried between
calls with ``persistent_state``. The classes here keep those names and semantics on
spikeflow's time-major input ``[T, B, ...]`` (Lava-DL's is time-last ``[N, C, T]``:
``x.permute(2, 0, 1)``) and are declared once: the reference loop and the fused C and
Triton kernels (forward and BPTT backward) come from the declaration.

What is reproduced is Lava-DL's floating-point dynamics, as for
:class:`~spikeflow.neurons.CubaLIFNode`'s mapping: its training forward computes the
states on a fixed-point grid (``1 / (64 scale)`` of a unit, products truncated towards
zero, ``dynamics/*.py``), which is not reproduced here, nor its spike derivative
(``scale_rho / (2 tau_rho) exp(-|v - θ| / tau_rho)``): the surrogate is the module's
``surrogate_function``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from spikeflow._checks import check_flag, check_real
from spikeflow.errors import ConfigurationError, DTypeError
from spikeflow.neurons.base import BaseNode, check_step_shape, show_float_or_shape
from spikeflow.neurons.declaration import NeuronDeclaration, declare

__all__ = ["LAVA_P_SCALE", "LavaALIFNode", "lava_decay_keep"]

#: Lava-DL's parameter scale (``p_scale = 1 << 12``): a decay fraction ``d`` is stored
#: as ``4096 d`` and rounded to a whole number of 4096ths at each call.
LAVA_P_SCALE = 4096


def lava_decay_keep(decay: Tensor | float) -> Tensor | float:
    """The fraction ``1 - round(4096 decay) / 4096`` of a state that a Lava-DL decay
    keeps each step (``quantize(decay)``: ``torch.round``, halves to even), with the
    straight-through gradient of ``decay`` for a tensor (as Lava-DL's ``quantize``).

    Raises:
        DTypeError: ``decay`` is a tensor that is not floating point.
    """
    if isinstance(decay, Tensor):
        if not decay.is_floating_point():
            raise DTypeError(f"decay must be a floating-point tensor, got dtype {decay.dtype}")
        level = torch.round(decay.detach() * LAVA_P_SCALE)
        return 1.0 - (level / LAVA_P_SCALE + (decay - decay.detach()))
    return 1.0 - round(float(decay) * LAVA_P_SCALE) / LAVA_P_SCALE


def _check_decay(owner: str, name: str, value: object, shared_param: bool) -> float | Tensor:
    """A decay fraction in [0, 1]: a float, or (``shared_param=False``) a float tensor
    (a detached copy) of per-channel values."""
    if isinstance(value, Tensor):
        if shared_param and value.numel() != 1:
            raise ConfigurationError(
                f"{owner}: {name} must be a scalar when shared_param is True (Lava-DL's "
                f"rule), got a tensor of shape {tuple(value.shape)}; pass "
                f"shared_param=False for per-channel decays"
            )
        if not value.is_floating_point():
            raise DTypeError(f"{owner}: {name} must be a floating-point tensor, got {value.dtype}")
        if not bool(torch.isfinite(value).all()) or not bool(((value >= 0) & (value <= 1)).all()):
            raise ConfigurationError(f"{owner}: {name} must be in [0, 1] everywhere, got {value}")
        return value.detach().clone()
    return check_real(f"{owner}: {name}", value, 0.0, 1.0)


def store_decays(
    module: nn.Module,
    owner: str,
    decays: dict[str, object],
    shared_param: bool,
    learnable: bool,
) -> None:
    """Check each decay (:func:`_check_decay`) and put it on ``module``: a parameter when
    ``learnable`` (Lava-DL's ``requires_grad``), a buffer when a tensor, else a float."""
    for name, value in decays.items():
        checked = _check_decay(owner, name, value, shared_param)
        if learnable:
            as_tensor = torch.as_tensor(checked, dtype=torch.get_default_dtype())
            setattr(module, name, nn.Parameter(as_tensor.clone()))
        elif isinstance(checked, Tensor):
            module.register_buffer(name, checked)
        else:
            setattr(module, name, checked)


def _on_grid(owner: str, name: str, value: object, scale: int) -> float:
    """Lava-DL's ``int(value * scale) / scale`` (truncation towards zero)."""
    checked = check_real(f"{owner}: {name}", value)
    return int(checked * scale) / scale


def _grid_threshold(owner: str, threshold: object, scale: int) -> float:
    """The firing threshold θ0 on the grid (:func:`_on_grid`), checked > 0 there."""
    theta0 = _on_grid(owner, "threshold", threshold, scale)
    if not theta0 > 0:
        raise ConfigurationError(
            f"{owner}: threshold must be > 0 on the grid int(scale θ)/scale, got "
            f"{threshold!r} (scale {scale})"
        )
    return theta0


def _grid_threshold_step(owner: str, threshold_step: object, scale: int) -> float:
    """The threshold's raise per spike on the grid (:func:`_on_grid`), checked >= 0."""
    step = _on_grid(owner, "threshold_step", threshold_step, scale)
    if step < 0:
        raise ConfigurationError(f"{owner}: threshold_step must be >= 0, got {threshold_step!r}")
    return step


def _check_scale(owner: str, scale: object) -> int:
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ConfigurationError(f"{owner}: scale must be an int >= 1, got {scale!r}")
    return scale


# -- ALIF -------------------------------------------------------------------------------


def _alif_charge(
    x: Tensor,
    v: Tensor,
    i: Tensor,
    th: Tensor,
    r: Tensor,
    *,
    i_keep: Tensor | float,
    v_keep: Tensor | float,
    th_keep: Tensor | float,
    r_keep: Tensor | float,
    th0: float,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``u = k_u u + x``, ``v = k_v v + u``, ``θ = k_θ (θ - θ0) + θ0``, ``r = k_r r``."""
    i_new = i * i_keep + x
    h = v * v_keep + i_new
    th_new = (th - th0) * th_keep + th0
    r_new = r * r_keep
    return h, i_new, th_new, r_new


def _alif_threshold(theta: Tensor | float, i: Tensor, th: Tensor, r: Tensor) -> Tensor:
    """Fire where ``v >= θ[t] + r[t]``."""
    return th + r


def _alif_update(
    h: Tensor, s: Tensor, i: Tensor, th: Tensor, r: Tensor, *, th_step: float
) -> tuple[Tensor, Tensor, Tensor]:
    """After a spike: ``r += 2 θ[t]``, ``θ += θ_step`` (full BPTT through them)."""
    return i, th + th_step * s, r + 2.0 * th * s


def _alif_update_detached(
    h: Tensor, s: Tensor, i: Tensor, th: Tensor, r: Tensor, *, th_step: float
) -> tuple[Tensor, Tensor, Tensor]:
    """As :func:`_alif_update` with the spike detached (Lava-DL's backward)."""
    spike = s.detach()
    return i, th + th_step * spike, r + 2.0 * th * spike


def _alif_keep_membrane(
    h: Tensor, s: Tensor, theta: Tensor | float, i: Tensor, th: Tensor, r: Tensor
) -> Tensor:
    """ALIF does not reset its voltage: the refractory state ``r`` does its work."""
    return h


class LavaALIFNode(BaseNode):
    """Lava-DL's adaptive-threshold LIF (``slayer.neuron.alif.Neuron``)::

        u[t] = (1 - α_u) u[t-1] + x[t]                   (current)
        v[t] = (1 - α_v) v[t-1] + u[t]                   (voltage, never reset)
        θ[t] = (1 - α_θ) (θ[t-1] - θ0) + θ0              (adaptive threshold)
        r[t] = (1 - α_r) r[t-1]                          (refractory state)
        s[t] = v[t] >= θ[t] + r[t]
        r[t] += 2 θ[t] s[t];   θ[t] += θ_step s[t]

    with ``α = round(4096 decay) / 4096`` (:func:`lava_decay_keep`), ``θ0 =
    int(scale threshold) / scale`` and ``θ_step = int(scale threshold_step) / scale``
    (Lava-DL's grid), from ``u = v = r = 0``, ``θ = θ0``. The voltage is never reset:
    a spike raises the refractory state by twice the threshold instead, and the
    threshold by ``θ_step``. The floating-point dynamics of
    ``dynamics/leaky_integrator.py`` and ``dynamics/adaptive_threshold.py`` (its
    fixed-point grid is not reproduced, see the module docstring).

    Mapping (Lava-DL ``alif.Neuron(threshold, threshold_step, current_decay,
    voltage_decay, threshold_decay, refractory_decay, scale=1 << 6, shared_param=True,
    persistent_state=False, requires_grad=False)``): the same names and values.
    ``shared_param=False`` takes per-channel decays as tensors broadcastable to the
    neuron shape (``(C,)`` for ``[T, B, C]``, ``(C, 1, 1)`` for images); Lava-DL instead
    draws them at random (1 % jitter or a ``(min, max)`` range) on the first call, which
    is not reproduced. ``persistent_state=True`` turns streaming on (the state carries
    from one call to the next, as :func:`spikeflow.functional.streaming`).
    ``requires_grad=True`` makes the four decays ``nn.Parameter``\\ s under their names
    (fractions, not 4096ths: Lava-DL's parameters are ``4096 decay``), clamped to [0, 1]
    and rounded to 4096ths with a straight-through gradient at each call.

    **Gradient.** Lava-DL's threshold and refractory dynamics have no backward (their
    autograd function returns ``None``): the adaptive threshold is a constant to the
    gradient. ``detach_adaptation=True`` (default) does the same (the spike that raises
    ``θ`` and ``r`` is detached, so the threshold and refractory decays get no gradient
    either); ``detach_adaptation=False`` backpropagates through them.

    Args:
        threshold: θ0, the resting threshold (> 0).
        threshold_step: the threshold raise per spike (>= 0).
        current_decay: α_u in [0, 1] (a float; a tensor with ``shared_param=False``).
        voltage_decay: α_v in [0, 1].
        threshold_decay: α_θ in [0, 1].
        refractory_decay: α_r in [0, 1].
        scale: Lava-DL's weight scale (default ``1 << 6``): the grid of the threshold
            and its step.
        shared_param: one decay for every neuron (default True).
        persistent_state: carry the state between calls (default False).
        requires_grad: learn the decays (default False).
        detach_adaptation: no gradient through the threshold and refractory states
            (default True: Lava-DL's backward).
        **kwargs: ``surrogate_function``, ``step_mode``, ``backend``, ``store_v_seq``
            of :class:`~spikeflow.neurons.base.BaseNode`; ``v_threshold``, when given,
            replaces ``threshold`` (spikeflow's name, which the zoo's models pass);
            ``v_reset``, ``strict_firing`` and ``learnable_threshold`` are refused (the
            class fires on ``v >= θ + r`` and never resets its voltage).

    State: ``v``, the current ``i``, the threshold ``th`` and the refractory state
    ``r`` (``node.state[...]`` while streaming).

    Raises:
        ConfigurationError: a decay outside [0, 1] or a tensor decay with
            ``shared_param=True``, ``threshold <= 0``, ``threshold_step < 0``, a
            ``scale`` that is not an int >= 1, a flag that is not a bool, or one of the
            arguments this class sets.
        ShapeError (at the call): a per-channel decay that does not broadcast to one
            step of the input.
    """

    def __init__(
        self,
        threshold: float,
        threshold_step: float,
        current_decay: float | Tensor,
        voltage_decay: float | Tensor,
        threshold_decay: float | Tensor,
        refractory_decay: float | Tensor,
        scale: int = 1 << 6,
        *,
        shared_param: bool = True,
        persistent_state: bool = False,
        requires_grad: bool = False,
        detach_adaptation: bool = True,
        **kwargs: object,
    ) -> None:
        owner = type(self).__name__
        if "v_threshold" in kwargs:  # spikeflow's name (the zoo's models pass it)
            threshold = kwargs.pop("v_threshold")  # type: ignore[assignment]
        for fixed in ("v_reset", "strict_firing", "learnable_threshold"):
            if fixed in kwargs:
                raise ConfigurationError(
                    f"{owner}: {fixed} is set by the class (Lava-DL's ALIF fires on "
                    f"v >= θ + r and never resets its voltage)"
                )
        self.scale = _check_scale(owner, scale)
        theta0 = _grid_threshold(owner, threshold, self.scale)
        super().__init__(v_threshold=theta0, v_reset=0.0, **kwargs)  # type: ignore[arg-type]
        self.threshold_step = _grid_threshold_step(owner, threshold_step, self.scale)
        self.shared_param = check_flag(owner, "shared_param", shared_param)
        self.persistent_state = check_flag(owner, "persistent_state", persistent_state)
        self.requires_grad = check_flag(owner, "requires_grad", requires_grad)
        self.detach_adaptation = check_flag(owner, "detach_adaptation", detach_adaptation)
        decays = {
            "current_decay": current_decay,
            "voltage_decay": voltage_decay,
            "threshold_decay": threshold_decay,
            "refractory_decay": refractory_decay,
        }
        store_decays(self, owner, decays, self.shared_param, self.requires_grad)
        if self.persistent_state:
            self.streaming = True

    def declaration(self) -> NeuronDeclaration:
        update = _alif_update_detached if self.detach_adaptation else _alif_update
        name = f"{type(self).__name__}(detach_adaptation={self.detach_adaptation})"
        return declare(
            _alif_charge,
            update,
            name,
            charge_returns_aux=True,
            threshold=_alif_threshold,
            reset_membrane=_alif_keep_membrane,
        )

    def _keep(self, name: str) -> Tensor | float:
        value = getattr(self, name)
        if isinstance(value, nn.Parameter):
            value = torch.clamp(value, 0.0, 1.0)
        keep = lava_decay_keep(value)
        if self.detach_adaptation and name in ("threshold_decay", "refractory_decay"):
            return keep.detach() if isinstance(keep, Tensor) else keep
        return keep

    def neuron_params(self) -> dict[str, Tensor | float]:
        return {
            "i_keep": self._keep("current_decay"),
            "v_keep": self._keep("voltage_decay"),
            "th_keep": self._keep("threshold_decay"),
            "r_keep": self._keep("refractory_decay"),
            "th0": float(self.v_threshold),
            "th_step": self.threshold_step,
        }

    def initial_values(self) -> dict[str, float]:
        return {"v": 0.0, "i": 0.0, "th": float(self.v_threshold), "r": 0.0}

    def _check_input(self, x: Tensor) -> Tensor:
        x_seq = super()._check_input(x)
        for name in ("current_decay", "voltage_decay", "threshold_decay", "refractory_decay"):
            check_step_shape(type(self).__name__, name, getattr(self, name), x_seq.shape[1:])
        return x_seq

    def extra_repr(self) -> str:
        decays = ", ".join(
            f"{name}={show_float_or_shape(getattr(self, name))}"
            for name in ("current_decay", "voltage_decay", "threshold_decay", "refractory_decay")
        )
        return (
            f"threshold={float(self.v_threshold):g}, threshold_step={self.threshold_step:g}, "
            f"{decays}, scale={self.scale}, shared_param={self.shared_param}, "
            f"persistent_state={self.persistent_state}, requires_grad={self.requires_grad}, "
            f"detach_adaptation={self.detach_adaptation}"
        )
