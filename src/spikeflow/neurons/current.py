"""Current-based LIF (CUBA): a synaptic current filters the input before the membrane.

The continuous-time model is NIR's ``CubaLIF`` (``nir.CubaLIF``)::

    tau_syn dI/dt = -I + w_in X
    tau_mem dV/dt = (v_leak - V) + r I
    spike when V crosses v_threshold, then V = v_reset

discretised with step ``dt`` (forward Euler for the current, then the membrane is
advanced with the *updated* current, as Lava/Loihi's CUBA and snnTorch's ``Synaptic``
do, so an input reaches the membrane in the step it arrives)::

    I[t] = I[t-1] + (dt / tau_syn) (X[t] - I[t-1])
    H[t] = V[t-1] + (dt / tau_mem) (v_leak - V[t-1] + r I[t])
    S[t] = Θ(H[t] - θ),   V[t] = reset(H[t], S[t])

``w_in`` is 1 here: the weights live in the layer before the neuron. NIR's numpy
reference simulator instead feeds ``I[t-1]`` to the membrane, which delays every input
by one step; that is the only difference.

The time constants may be learned, one per neuron or channel (``learnable_tau_syn``,
``learnable_tau_mem``), and ``r`` may follow them (``r="tau_syn"``: Norse's current,
which jumps by the input; ``r="tau_syn*tau_mem"``: Lava-DL's / Loihi's CUBA and
snnTorch's ``Synaptic``, whose current and membrane both add their input unscaled).

``graded_spike=True`` is Lava-DL's ``cuba.Neuron(graded_spike=True)``: the output is the
charged membrane where it fires, ``S = H Θ(H - θ)`` (Lava-DL divides by a ``scale`` that
its CUBA neuron passes as 1), the membrane resets to 0, and the backward is Lava-DL's:
``∂S/∂H = scale_rho exp(min(H - θ, 0) / tau_rho)`` (``spike/spike.py``) with a reset
that passes the gradient through unchanged (its ``leaky_integrator`` backward). Declared
as a fire rule and a reset rule, so the fused kernels run it.

``norm=`` is Lava-DL's ``cuba.Neuron(norm=...)``: a normalisation (a module on the
time-major current, such as :class:`~spikeflow.layers.MeanOnlyBatchNorm`) applied to the
whole sequence of the current *between* the current and the voltage updates. Its
statistics span every step, so it cannot live inside a per-step fused kernel: the
current is run first (a linear recurrence over time), normalised, and the voltage then
runs through the declared fused kernels on the normalised current (see
:class:`CubaLIFNode`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from spikeflow._checks import check_flag
from spikeflow.base import set_constants
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.kernels import resolve_backend
from spikeflow.neurons.base import BaseNode, check_step_shape
from spikeflow.neurons.declaration import NeuronDeclaration, declare
from spikeflow.neurons.lif import learnable_time_constant

__all__ = [
    "NORM_NAMES",
    "R_RULES",
    "CubaLIFNode",
    "cuba_voltage_charge",
    "lava_graded_fire",
    "lava_graded_reset",
]

#: The names ``CubaLIFNode(norm=...)`` takes for Lava-DL's norms (what a command line or a
#: config file can give): each builds a fresh module with Lava-DL's hook on the mean
#: (``quant.LoihiWeightGrid``, its neuron's ``quantize_8bit``) and ``num_features=None``.
NORM_NAMES = ("mean_only", "wgt_scale")


def _named_norm(owner: str, name: str) -> nn.Module:
    """The Lava-DL norm ``name`` names (:data:`NORM_NAMES`), hooked as Lava-DL's neuron
    hooks it."""
    from spikeflow.layers.lava_norm import MeanOnlyBatchNorm, WgtScaleBatchNorm
    from spikeflow.quant.loihi_grid import LoihiWeightGrid

    builders = {"mean_only": MeanOnlyBatchNorm, "wgt_scale": WgtScaleBatchNorm}
    if name not in builders:
        names = ", ".join(repr(n) for n in NORM_NAMES)
        raise ConfigurationError(
            f"{owner}: norm must be an nn.Module applied to the current [T, B, ...], one of "
            f"{names} (Lava-DL's MeanOnlyBatchNorm / WgtScaleBatchNorm), or None; got {name!r}"
        )
    return builders[name](pre_hook_fx=LoihiWeightGrid())


#: The values of ``CubaLIFNode(r=...)`` that tie ``r`` to the time constants (in steps,
#: ``tau / dt``): ``"tau_syn"`` is Norse's ``LIF`` (its current jumps by the input),
#: ``"tau_syn*tau_mem"`` Lava-DL's CUBA and snnTorch's ``Synaptic`` (the current and the
#: membrane both add their input unscaled).
R_RULES = ("tau_syn", "tau_syn*tau_mem")


def _check_value(name: str, value: object, low: float | None = None) -> float | Tensor:
    """A neuron parameter: a finite float, or a floating-point tensor of finite values
    (a detached copy), everywhere ``>= low`` when ``low`` is given."""
    if isinstance(value, Tensor):
        if not value.is_floating_point():
            raise DTypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
        ok = bool(torch.isfinite(value).all()) and (low is None or bool((value >= low).all()))
        checked: float | Tensor = value.detach().clone()
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"{name} must be a float or a tensor, got {value!r}")
    else:
        checked = float(value)
        ok = math.isfinite(checked) and (low is None or checked >= low)
    if not ok:
        bound = "" if low is None else f" and >= {low:g}"
        raise ConfigurationError(f"{name} must be finite{bound}, got {value}")
    return checked


def _check_dt(dt: object, name: str = "dt", unit: str = "") -> float:
    """The step ``dt`` as a float if it is a finite number > 0, else a ConfigurationError
    naming it ``name`` (``"Owner: dt"``) and its ``unit`` (``" (ms)"``)."""
    if (
        isinstance(dt, bool)
        or not isinstance(dt, (int, float))
        or not (math.isfinite(dt) and dt > 0)
    ):
        raise ConfigurationError(f"{name} must be a finite number > 0{unit}, got {dt!r}")
    return float(dt)


def _check_time_constant(name: str, value: object, dt: float) -> float | Tensor:
    checked = _check_value(name, value)
    # (a number is compared as a number: a tensor made of it would be on the default
    # device, the meta device included, where it has no value to compare)
    ok = checked >= dt if isinstance(checked, float) else bool(torch.all(checked >= dt))
    if not ok:
        raise ConfigurationError(
            f"{name} must be >= dt ({dt}) everywhere: forward Euler with dt/{name} > 1 "
            f"overshoots the decay; got {name}={value}"
        )
    return checked


def _check_r(r: object) -> float | Tensor | str:
    if isinstance(r, str):
        if r not in R_RULES:
            rules = ", ".join(repr(rule) for rule in R_RULES)
            raise ConfigurationError(
                f"r must be a float or a tensor, or one of {rules} (r tied to the time "
                f"constants), got {r!r}"
            )
        return r
    return _check_value("r", r)


def lava_graded_fire(
    h: Tensor,
    theta: Tensor | float,
    spike: Callable[[Tensor], Tensor],
    i: Tensor,
    *,
    tau_rho: float,
    scale_rho: float,
) -> Tensor:
    """Lava-DL's graded spike: ``S = H · Θ(H - θ)`` in the forward pass, with the
    derivative ``∂S/∂H = scale_rho · exp(min(H - θ, 0) / tau_rho)`` (not the product
    rule): the value comes from detached terms, the gradient from ``P(u) - P(u)`` (zero)
    with ``P' = `` that derivative, ``P(u) = scale_rho (tau_rho e^{min(u,0)/tau_rho} +
    max(u, 0))``."""
    u = h - theta
    below = torch.where(u < 0.0, u, u * 0.0)  # min(u, 0), derivative 1 only where u < 0
    primitive = scale_rho * (tau_rho * torch.exp(below / tau_rho) + (u - below))
    return h.detach() * spike(u).detach() + (primitive - primitive.detach())


def lava_graded_reset(h: Tensor, s: Tensor, theta: Tensor | float, i: Tensor) -> Tensor:
    """Lava-DL's CUBA reset with graded spikes: ``V = H - S`` (0 where the neuron fired,
    since ``S = H`` there), and ``∂V/∂H = 1``: its backward ignores the reset."""
    return h - s.detach()


def cuba_voltage_charge(
    x: Tensor,
    v: Tensor,
    *,
    mem_decay: Tensor | float,
    r: Tensor | float,
    v_leak: Tensor | float,
) -> Tensor:
    """The CUBA membrane driven by a given current ``x`` (the voltage half of
    :meth:`CubaLIFNode.charge`): ``H = V + (v_leak - V + r x) mem_decay``."""
    return v + (v_leak - v + r * x) * mem_decay


def _graded_fire_voltage(
    h: Tensor, theta: Tensor | float, spike: Callable[[Tensor], Tensor], *,
    tau_rho: float, scale_rho: float,
) -> Tensor:  # fmt: skip
    """:func:`lava_graded_fire` for :func:`cuba_voltage_charge` (no current state)."""
    return lava_graded_fire(h, theta, spike, h, tau_rho=tau_rho, scale_rho=scale_rho)


def _graded_reset_voltage(h: Tensor, s: Tensor, theta: Tensor | float) -> Tensor:
    """:func:`lava_graded_reset` for :func:`cuba_voltage_charge` (no current state)."""
    return lava_graded_reset(h, s, theta, h)


class CubaLIFNode(BaseNode):
    """Current-based LIF with NIR ``CubaLIF`` semantics (see the module docstring)::

        I[t] = I[t-1] + (dt / tau_syn) (X[t] - I[t-1])
        H[t] = V[t-1] + (dt / tau_mem) (v_leak - V[t-1] + r I[t])

    then the shared fire and reset rules (``v_threshold``, ``v_reset``; NIR fires on
    ``V > θ``: pass ``strict_firing=True`` for that). The current is advanced before
    firing (the charge returns ``(H, I[t])``). State: ``v`` and the current ``i``, both
    starting at 0 (``v`` at ``v_reset`` for hard reset).

    Mapping to ``nir.CubaLIF(tau_syn, tau_mem, r, v_leak, v_threshold, v_reset,
    w_in=1)``: the same names and values, with time constants in the units of ``dt``.
    ``tau_syn``, ``tau_mem``, ``r`` and ``v_leak`` may be tensors broadcastable to the
    neuron shape (one value per neuron, as NIR stores them).

    **Learned time constants.** ``learnable_tau_syn`` / ``learnable_tau_mem`` make the
    time constant an ``nn.Parameter`` under the same name (a number becomes a 0-dim one,
    a tensor keeps its shape: one per neuron or channel), trained in the units of
    ``dt`` and clamped to ``>= dt`` at each call (``dt / tau <= 1``; a time constant
    pushed below ``dt`` acts as ``dt`` and gets no gradient until it comes back), as
    :class:`~spikeflow.neurons.LIFNode`'s ``learnable_tau``. A fixed ``r`` keeps the
    current normalised while they learn (a constant input ``X`` charges the membrane
    towards ``v_leak + r X`` whatever the time constants); ``r`` may instead follow them:
    ``r="tau_syn"`` is ``tau_syn / dt`` (Norse's ``LIF``, whose current jumps by the
    input), ``r="tau_syn*tau_mem"`` is ``tau_syn tau_mem / dt^2`` (Lava-DL's CUBA,
    snnTorch's ``Synaptic``, SpikingJelly's ``CUBALIFNode``: current and membrane add
    their input unscaled), computed from the clamped time constants at each call, so
    their gradients include its own (``current_r`` is its value now).

    **Graded spikes** (``graded_spike=True``, Lava-DL's ``cuba.Neuron(graded_spike=True)``,
    see the module docstring): the output is ``H Θ(H - θ)``, the membrane resets to 0
    (``v_reset`` must be 0.0) and the spike's derivative is ``scale_rho exp(min(H - θ, 0)
    / tau_rho)`` (:func:`lava_graded_fire`; the ``surrogate_function`` is not used).
    The threshold is not learnable with it (``learnable_threshold=True`` is refused):
    Lava-DL's graded spike returns no threshold gradient, and ``∂S/∂θ = −∂S/∂H`` would
    push θ by the full derivative even where the spike does not depend on θ (``S = H``
    above it).
    Lava-DL's values for ``tau_grad``, ``scale_grad`` and a threshold ``θ``:
    ``tau_rho = 100 tau_grad θ`` and ``scale_rho = 0.1 scale_grad`` (its CUBA neuron's
    ``TAU_RHO_MULT`` and ``SCALE_RHO_MULT``, ``θ`` quantised to ``int(64 θ) / 64``).

    **Normalised current** (``norm``, Lava-DL's ``cuba.Neuron(norm=...)``): a module
    applied to the current of the whole sequence between the current and the voltage
    updates. It sees the current with a gain of 1 on the input, ``u = I tau_syn / dt``
    (Lava-DL's current ``u[t] = (1 - dt/tau_syn) u[t-1] + X[t]``, whatever ``r``), as a
    ``[T, B, ...]`` tensor, and must return its shape; the membrane is then driven by
    ``r (dt / tau_syn) norm(u)`` (``r I`` when ``norm`` is the identity)::

        u[t] = (1 - dt/tau_syn) u[t-1] + X[t]          every step, then
        n    = norm(u[0..T-1])                          over the whole sequence
        H[t] = V[t-1] + (dt/tau_mem) (v_leak - V[t-1] + r (dt/tau_syn) n[t])

    A normalisation's statistics span the steps (a batch norm's mean over time, batch
    and space), so the norm cannot run inside the declared per-step fused kernel: with
    ``norm`` the neuron takes another path, exact, not an approximation: the current as
    a loop over time in PyTorch, the norm, then the voltage, fire and reset through the
    declared kernels of :func:`cuba_voltage_charge` (``backend`` applies to that part;
    graded spikes too). In single-step mode (``step_mode='s'``) the norm sees one step.
    The carried current (streaming) is the current before the norm. The norm is a child
    module (``node.norm``): its running statistics follow ``train()`` / ``eval()`` and
    the state dict. A membrane quantizer (``quant.loihi_grid``) refuses the neuron.

    Args:
        tau_syn: synaptic time constant, >= ``dt`` (default 2): a number or a tensor.
        tau_mem: membrane time constant, >= ``dt`` (default 2): a number or a tensor.
        r: resistance (gain of the current on the membrane), default 1: a number, a
            tensor, or ``"tau_syn"`` / ``"tau_syn*tau_mem"`` (tied to the time
            constants, see above).
        v_leak: the membrane's resting (leak) voltage, default 0.
        dt: the time step, > 0 (default 1).
        learnable_tau_syn: make ``tau_syn`` a trainable parameter (default False).
        learnable_tau_mem: make ``tau_mem`` a trainable parameter (default False).
        graded_spike: Lava-DL's graded spikes (default False; see above).
        tau_rho: the graded spike derivative's width (> 0, default 1).
        scale_rho: the graded spike derivative's scale (> 0, default 1).
        norm: a module normalising the current between the current and the voltage
            updates (default None; see above), e.g.
            :class:`~spikeflow.layers.MeanOnlyBatchNorm`; or a name (what a command
            line or config file can give): ``"mean_only"`` / ``"wgt_scale"`` build
            Lava-DL's ``MeanOnlyBatchNorm`` / ``WgtScaleBatchNorm`` as its neuron does
            (``pre_hook_fx=quant.LoihiWeightGrid()``, the channels from the input).
        **kwargs: the arguments of :class:`~spikeflow.neurons.base.BaseNode`.

    Raises:
        ConfigurationError: ``dt <= 0``, a time constant below ``dt``, a non-finite
            value, an ``r`` string that names no rule, a flag that is not a bool; with
            ``graded_spike``: a ``v_reset`` other than 0.0, ``learnable_threshold``, a
            ``tau_rho`` or ``scale_rho`` that is not a number > 0, or a subclass with
            other equations; a ``norm`` that is not an ``nn.Module`` nor one of
            :data:`NORM_NAMES`.
        ShapeError (at the call): a tensor that does not broadcast to one step; a
            ``norm`` whose output does not have its input's shape.
    """

    charge_returns_aux = True

    def __init__(
        self,
        tau_syn: float | Tensor = 2.0,
        tau_mem: float | Tensor = 2.0,
        r: float | Tensor | str = 1.0,
        v_leak: float | Tensor = 0.0,
        dt: float = 1.0,
        *,
        learnable_tau_syn: bool = False,
        learnable_tau_mem: bool = False,
        graded_spike: bool = False,
        tau_rho: float = 1.0,
        scale_rho: float = 1.0,
        norm: nn.Module | str | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        owner = type(self).__name__
        self.dt = _check_dt(dt)
        self.graded_spike = check_flag(owner, "graded_spike", graded_spike)
        self.tau_rho = _check_dt(tau_rho, f"{owner}: tau_rho")
        self.scale_rho = _check_dt(scale_rho, f"{owner}: scale_rho")
        if self.graded_spike and self.v_reset != 0.0:
            raise ConfigurationError(
                f"{owner}: graded_spike=True resets the membrane to 0 (Lava-DL's CUBA), so "
                f"v_reset must be 0.0; got v_reset={self.v_reset!r}"
            )
        self._check_graded_threshold()
        if self.graded_spike and type(self).charge is not CubaLIFNode.charge:
            raise ConfigurationError(
                f"{owner}: graded_spike=True is Lava-DL's CUBA neuron's; {owner} has "
                "equations of its own"
            )
        if isinstance(norm, str):
            norm = _named_norm(owner, norm)
        if norm is not None:
            self._check_norm(norm)
        self.norm = norm
        learnable = {
            "tau_syn": check_flag(owner, "learnable_tau_syn", learnable_tau_syn),
            "tau_mem": check_flag(owner, "learnable_tau_mem", learnable_tau_mem),
        }
        values = {
            "tau_syn": _check_time_constant("tau_syn", tau_syn, self.dt),
            "tau_mem": _check_time_constant("tau_mem", tau_mem, self.dt),
            "r": _check_r(r),
            "v_leak": _check_value("v_leak", v_leak),
        }
        for name, value in values.items():  # in this order: the state dict's
            if learnable.get(name):
                setattr(self, name, learnable_time_constant(value))  # type: ignore[arg-type]
            else:
                set_constants(self, {name: value})

    @staticmethod
    def charge(
        x: Tensor,
        v: Tensor,
        i: Tensor,
        *,
        syn_decay: Tensor | float,
        mem_decay: Tensor | float,
        r: Tensor | float,
        v_leak: Tensor | float,
    ) -> tuple[Tensor, Tensor]:
        i_new = i + (x - i) * syn_decay
        h = v + (v_leak - v + r * i_new) * mem_decay
        return h, i_new

    def declaration(self) -> NeuronDeclaration:
        """The CUBA equations; with ``graded_spike``, Lava-DL's graded fire and reset."""
        if not self.graded_spike:
            return super().declaration()
        return declare(
            CubaLIFNode.charge, None, "CubaLIFNodeGraded", True, None,
            lava_graded_reset, lava_graded_fire,
        )  # fmt: skip

    def equations(
        self, params: dict[str, Tensor | float], theta: float | Tensor, dtype: torch.dtype
    ) -> tuple[NeuronDeclaration, dict[str, Tensor | float]]:
        """As :meth:`BaseNode.equations`; refused with ``norm``, whose normalisation spans
        the sequence and is not in one declaration (what reads the equations, such as
        the ahead-of-time Triton kernels or the operation counts, would drop it)."""
        if self.norm is not None:
            raise ConfigurationError(
                f"{type(self).__name__} with norm: the current is normalised over the whole "
                "sequence between the current and the voltage updates, which one declared "
                "per-step equation cannot carry; call the neuron itself"
            )
        return super().equations(params, theta, dtype)

    def _check_graded_threshold(self) -> None:
        """Refuse a learnable threshold with graded spikes; checked at construction and
        again at each call (``node.v_threshold = nn.Parameter(...)`` may come later)."""
        if self.graded_spike and isinstance(self.v_threshold, nn.Parameter):
            raise ConfigurationError(
                f"{type(self).__name__}: graded_spike=True with learnable_threshold=True: "
                "Lava-DL's graded spike gives the threshold no gradient (its Spike.backward "
                "returns None for it; the CUBA threshold is a fixed number), and the graded "
                "derivative (a function of H alone) has no threshold term to learn from; "
                "build it with learnable_threshold=False"
            )

    def _check_norm(self, norm: object) -> None:
        """Refuse a ``norm`` that is not an ``nn.Module``, or one on a subclass with
        equations of its own (the norm path runs the plain CUBA voltage). Checked at
        construction and again at each call: ``node.norm = ...`` may come later."""
        owner = type(self).__name__
        if not isinstance(norm, nn.Module):
            raise ConfigurationError(
                f"{owner}: norm must be an nn.Module applied to the current [T, B, ...] "
                f"(e.g. layers.MeanOnlyBatchNorm()), or None; got {type(norm).__name__}"
            )
        if (
            type(self).charge is not CubaLIFNode.charge
            or type(self).declaration is not CubaLIFNode.declaration
        ):
            raise ConfigurationError(
                f"{owner}: norm is Lava-DL's CUBA neuron's (a norm between its current and "
                f"voltage updates); {owner} has equations of its own"
            )

    def _run_steps(self, x_seq: Tensor, record_v: bool) -> tuple[Tensor, Tensor | None]:
        """Without ``norm``, the declared CUBA equations; with it, the current over the
        whole sequence, the norm, then the declared voltage equations (class docstring)."""
        self._check_graded_threshold()
        if self.norm is None:
            return super()._run_steps(x_seq, record_v)
        self._check_norm(self.norm)
        owner = type(self).__name__
        if self._modules.get("membrane_quantizer") is not None:
            raise ConfigurationError(
                f"{owner}: a membrane quantizer (quant.loihi_grid) does not carry the norm "
                "between the current and the voltage; remove_membrane_quantization, or "
                "build the neuron without norm"
            )
        step_shape = x_seq.shape[1:]
        theta = self.firing_threshold(step_shape)
        state = self._carried_state(step_shape) or self.start_state(x_seq[0])
        params = dict(self._call_params(step_shape))
        syn_decay = params.pop("syn_decay")
        keep = 1.0 - syn_decay
        u = state["i"] / syn_decay  # the carried current, at a gain of 1 on the input
        currents = []
        for x_t in x_seq.unbind(0):
            u = keep * u + x_t
            currents.append(u)
        current = torch.stack(currents)
        normed = self.norm(current)
        if not isinstance(normed, Tensor) or normed.shape != current.shape:
            got = tuple(normed.shape) if isinstance(normed, Tensor) else type(normed).__name__
            raise ShapeError(
                f"{owner}: norm must return the current's shape {tuple(current.shape)} "
                f"([T, B, ...]), got {got}"
            )
        params["r"] = params["r"] * syn_decay
        if self.graded_spike:
            decl = declare(
                cuba_voltage_charge, None, "CubaVoltageGraded", False, None,
                _graded_reset_voltage, _graded_fire_voltage,
            )  # fmt: skip
        else:
            decl = declare(cuba_voltage_charge, None, "CubaVoltage")
        stepped = self.__dict__.get("_step_params") is not None
        run = resolve_backend(self.backend, normed, stepped)
        spikes, voltage, v_seq = run(
            decl, normed, {"v": state["v"]}, params, theta, self.firing_rule, record_v
        )
        self._keep_state({"v": voltage["v"], "i": syn_decay * current[-1]})
        return spikes, v_seq

    def _time_constant(self, name: str) -> float | Tensor:
        """A time constant as this call uses it: a learned one clamped to ``>= dt``."""
        value = getattr(self, name)
        if name in self._parameters:  # learned (also when torch.func swaps it in)
            return torch.clamp(value, min=self.dt)
        return value

    def _resistance(self, tau_syn: float | Tensor, tau_mem: float | Tensor) -> float | Tensor:
        rule = self.r
        if not isinstance(rule, str):
            return rule
        if rule == "tau_syn":
            return tau_syn / self.dt
        return tau_syn * tau_mem / (self.dt * self.dt)  # "tau_syn*tau_mem"

    @property
    def current_r(self) -> float | Tensor:
        """``r`` as the neuron uses it now (detached): ``r`` itself, or its rule's value
        (``r="tau_syn"``, ``"tau_syn*tau_mem"``) at the current time constants."""
        with torch.no_grad():
            r = self._resistance(self._time_constant("tau_syn"), self._time_constant("tau_mem"))
        return r.detach() if isinstance(r, Tensor) else r

    def neuron_params(self) -> dict[str, Tensor | float]:
        tau_syn, tau_mem = self._time_constant("tau_syn"), self._time_constant("tau_mem")
        params = {
            "syn_decay": self.dt / tau_syn,
            "mem_decay": self.dt / tau_mem,
            "r": self._resistance(tau_syn, tau_mem),
            "v_leak": self.v_leak,
        }
        if self.graded_spike:
            params.update(tau_rho=self.tau_rho, scale_rho=self.scale_rho)
        return params

    def initial_values(self) -> dict[str, float]:
        return {**super().initial_values(), "i": 0.0}

    @property
    def i(self) -> Tensor | None:
        """The synaptic current carried to the next call (only while streaming)."""
        return None if self.state is None else self.state["i"]

    def _check_input(self, x: Tensor) -> Tensor:
        x_seq = super()._check_input(x)
        step_shape = x_seq.shape[1:]
        for name in ("tau_syn", "tau_mem", "r", "v_leak"):
            check_step_shape("CubaLIFNode", name, getattr(self, name), step_shape)
        return x_seq

    def extra_repr(self) -> str:
        def show(value: float | Tensor | str) -> str:
            if isinstance(value, str):
                return repr(value)
            return f"{value:g}" if isinstance(value, float) else f"tensor{tuple(value.shape)}"

        learned = [f"learnable_{n}=True" for n in ("tau_syn", "tau_mem")
                   if n in self._parameters]  # fmt: skip
        if self.graded_spike:
            learned.append(
                f"graded_spike=True, tau_rho={self.tau_rho:g}, scale_rho={self.scale_rho:g}"
            )
        return (
            f"tau_syn={show(self.tau_syn)}, tau_mem={show(self.tau_mem)}, r={show(self.r)}, "
            f"v_leak={show(self.v_leak)}, dt={self.dt:g}, "
            + "".join(f"{text}, " for text in learned)
            + super().extra_repr()
        )
