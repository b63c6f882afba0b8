"""Lava-DL's adaptive resonate-and-fire neurons: with Izhikevich firing
(``slayer.neuron.adrf_iz``, :class:`LavaADRFIzNode`) and with the phase spike
(``slayer.neuron.adrf``, :class:`LavaADRFNode`): the resonators of
:mod:`spikeflow.neurons.lava_rf` (whose docstring says how their complex input is
taken) with an adaptive threshold and a refractory state. Re-exported by
:mod:`spikeflow.neurons.lava_rf`.
"""

from __future__ import annotations

from torch import Tensor

from spikeflow.base import StepMode
from spikeflow.neurons.base import check_step_shape
from spikeflow.neurons.lava_dl import _grid_threshold_step, lava_decay_keep, store_decays
from spikeflow.neurons.lava_rf import LavaRFIzNode, LavaRFNode, _PhaseSpike, _rotate
from spikeflow.surrogate import Surrogate

__all__ = ["ADRF_SCALE_RHO_MULT", "ADRF_TAU_RHO_MULT", "LavaADRFIzNode", "LavaADRFNode"]


class _Adaptation:
    """What the adaptive resonators (ADRF-IZ, ADRF) add to their base: a threshold that
    steps up at each spike and decays back, and a refractory term ``2θ`` at each spike
    (Lava-DL's ``adaptive_threshold`` / ``adaptive_phase_th`` dynamics). Listed before
    the base class, so ``super()`` reaches the neuron's own methods."""

    threshold: float
    scale: int
    shared_param: bool
    threshold_step: float
    threshold_decay: float | Tensor
    refractory_decay: float | Tensor

    def _init_adaptation(
        self,
        threshold_step: float,
        threshold_decay: float | Tensor,
        refractory_decay: float | Tensor,
    ) -> None:
        owner = type(self).__name__
        self.threshold_step = _grid_threshold_step(owner, threshold_step, self.scale)
        decays = {"threshold_decay": threshold_decay, "refractory_decay": refractory_decay}
        store_decays(self, owner, decays, self.shared_param, learnable=False)  # type: ignore[arg-type]

    def initial_values(self) -> dict[str, float]:
        return {"v": 0.0, "u": 0.0, "th": self.threshold, "r": 0.0}

    def _decayed_adaptation(self, state: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """The threshold and refractory term decayed one step (before this step's spike)."""
        th0 = self.threshold
        th_new = (state["th"] - th0) * lava_decay_keep(self.threshold_decay) + th0
        return th_new, state["r"] * lava_decay_keep(self.refractory_decay)

    def _adapted_state(
        self, real: Tensor, imag: Tensor, th: Tensor, r: Tensor, fired: Tensor
    ) -> dict[str, Tensor]:
        """The next state: the threshold up by its step and the refractory term up by
        ``2θ`` where the neuron fired."""
        return {"v": imag, "u": real, "th": th + self.threshold_step * fired,
                "r": r + 2.0 * th * fired}  # fmt: skip

    def _complex_input(self, x: object) -> Tensor:
        x_seq = super()._complex_input(x)  # type: ignore[misc]
        for what in ("threshold_decay", "refractory_decay"):
            check_step_shape(type(self).__name__, what, getattr(self, what), x_seq.shape[2:])
        return x_seq

    def extra_repr(self) -> str:
        return super().extra_repr() + f", threshold_step={self.threshold_step:g}"  # type: ignore[misc]


class LavaADRFIzNode(_Adaptation, LavaRFIzNode):
    """Lava-DL's adaptive resonate-and-fire neuron with Izhikevich firing
    (``slayer.neuron.adrf_iz``, dynamics ``dynamics/adaptive_resonator.py``), on a
    complex input::

        Re z[t] = c Re z[t-1] - s Im z[t-1] + x_re[t]       (never reset)
        Im z[t] = s Re z[t-1] + c Im z[t-1] + x_im[t]
        θ[t] = (1 - α_θ) (θ[t-1] - θ0) + θ0;   r[t] = (1 - α_r) r[t-1]
        S[t] = Im z[t] >= θ[t] + r[t]
        r[t] += 2 θ[t] S[t];   θ[t] += θ_step S[t]

    the resonator of :class:`LavaRFIzNode` (``period``, ``decay``, the clamp, 4096ths)
    with the adaptive threshold and refractory state of
    :class:`~spikeflow.neurons.LavaALIFNode` in place of the reset (``θ_step`` on the
    threshold's grid, ``threshold_decay`` and ``refractory_decay`` rounded to 4096ths),
    from ``z = r = 0``, ``θ = θ0``. Its gradient is Lava-DL's: the resonator's linear
    recurrence, none through the threshold and refractory state (Lava-DL's
    ``_AdResDynamics`` returns none for them), the module's surrogate on ``Im z - (θ +
    r)``. ``requires_grad`` learns ``sin_decay`` and ``cos_decay``; the threshold and
    refractory decays get no gradient in Lava-DL and are fixed here.

    Mapping: Lava-DL ``adrf_iz.Neuron(threshold, threshold_step, period, decay,
    threshold_decay, refractory_decay, scale=1 << 6, shared_param=True,
    persistent_state=False, requires_grad=False)``, the same names and values.

    Args:
        threshold: θ0 (> 0 on the grid).
        threshold_step: the threshold raise per spike (>= 0).
        period, decay: the resonator's, as :class:`LavaRFIzNode`.
        threshold_decay: α_θ in [0, 1] (a tensor with ``shared_param=False``).
        refractory_decay: α_r in [0, 1].
        scale, shared_param, persistent_state, requires_grad, surrogate_function,
        step_mode, store_v_seq: as :class:`LavaRFIzNode`.

    State: ``v`` (``Im z``), ``u`` (``Re z``), ``th``, ``r``.

    Raises:
        ConfigurationError: as :class:`LavaRFIzNode`, ``threshold_step < 0`` or a
            threshold or refractory decay outside [0, 1].
    """

    def __init__(
        self,
        threshold: float,
        threshold_step: float,
        period: float | Tensor,
        decay: float | Tensor,
        threshold_decay: float | Tensor,
        refractory_decay: float | Tensor,
        scale: int = 1 << 6,
        *,
        shared_param: bool = True,
        persistent_state: bool = False,
        requires_grad: bool = False,
        surrogate_function: Surrogate | None = None,
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
            surrogate_function=surrogate_function,
            step_mode=step_mode,
            store_v_seq=store_v_seq,
        )
        self._init_adaptation(threshold_step, threshold_decay, refractory_decay)

    def step(self, x: Tensor, state: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """One step of the complex input ``x`` (``[2, B, ...]``: real, imaginary)."""
        real_new, imag_new = _rotate(self, x, state)
        th_new, r_new = self._decayed_adaptation(state)
        spike = self.surrogate_function(imag_new - (th_new + r_new))
        fired = spike.detach()
        return spike, self._adapted_state(real_new, imag_new, th_new, r_new, fired)


#: Lava-DL's ``adrf.py`` multipliers of the phase spike's derivative (relaxation
#: ``tau_grad θ · 100``, scale ``scale_grad · 0.1``).
ADRF_TAU_RHO_MULT, ADRF_SCALE_RHO_MULT = 100.0, 0.1


class LavaADRFNode(_Adaptation, LavaRFNode):
    """Lava-DL's adaptive resonate-and-fire neuron with the phase spike
    (``slayer.neuron.adrf``, threshold dynamics ``dynamics/adaptive_phase_th.py``), on a
    complex input: :class:`LavaRFNode`'s resonator (never reset) and phase spike, with
    :class:`LavaADRFIzNode`'s adaptive threshold and refractory state::

        θ[t] = (1 - α_θ)(θ[t-1] - θ0) + θ0;   r[t] = (1 - α_r) r[t-1]
        S[t] = [Re z[t] >= θ[t] + r[t]] [Im z[t-1] < 0] [Im z[t] >= 0]
        r[t] += 2 θ[t] S[t];   θ[t] += θ_step S[t]

    Its gradient is Lava-DL's: the resonator's linear recurrence and the phase spike's
    relaxed derivative (relaxation ``100 tau_grad θ0``, scale ``0.1 scale_grad``: the
    multipliers of its ``adrf.py``), measured from ``θ[t] + r[t]``, none through the
    threshold and refractory state.

    Mapping: Lava-DL ``adrf.Neuron(threshold, threshold_step, period, decay,
    threshold_decay, refractory_decay, tau_grad=1, scale_grad=1, scale=1 << 6,
    shared_param=True, persistent_state=False, requires_grad=False)``, the same names.

    Args:
        threshold, threshold_step, period, decay, threshold_decay, refractory_decay:
            as :class:`LavaADRFIzNode`.
        tau_grad, scale_grad: as :class:`LavaRFNode`.
        scale, shared_param, persistent_state, requires_grad, step_mode, store_v_seq:
            as :class:`LavaRFIzNode`.

    State: ``v`` (``Im z``), ``u`` (``Re z``), ``th``, ``r``.

    Raises:
        ConfigurationError: as :class:`LavaADRFIzNode` and :class:`LavaRFNode`.
    """

    def __init__(
        self,
        threshold: float,
        threshold_step: float,
        period: float | Tensor,
        decay: float | Tensor,
        threshold_decay: float | Tensor,
        refractory_decay: float | Tensor,
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
            tau_grad,
            scale_grad,
            scale,
            shared_param=shared_param,
            persistent_state=persistent_state,
            requires_grad=requires_grad,
            step_mode=step_mode,
            store_v_seq=store_v_seq,
        )
        self._init_adaptation(threshold_step, threshold_decay, refractory_decay)

    def step(self, x: Tensor, state: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """One step of the complex input ``x`` (``[2, B, ...]``: real, imaginary)."""
        real_new, imag_new = _rotate(self, x, state)
        th_new, r_new = self._decayed_adaptation(state)
        tau = self.tau_grad * self.threshold * ADRF_TAU_RHO_MULT
        spike = _PhaseSpike.apply(
            real_new, imag_new, state["v"].detach(), (th_new + r_new).detach(), tau,
            self.scale_grad * ADRF_SCALE_RHO_MULT,
        )  # fmt: skip
        fired = spike.detach()
        return spike, self._adapted_state(real_new, imag_new, th_new, r_new, fired)
