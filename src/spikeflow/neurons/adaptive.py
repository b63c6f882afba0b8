"""Neurons that adapt how they fire: ALIF (adaptive threshold), KLIF (learnable slope)
and CLIF (a reset that grows with the recent spikes).

Each is declared once; the reference loop and the fused kernels come from the
declaration. ALIF is what the optional ``threshold`` function of a declaration exists
for (a threshold that depends on auxiliary state, used by firing and soft reset alike),
CLIF what its optional ``reset_membrane`` exists for (a reset that reads the auxiliary
state after this step's update).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from spikeflow._checks import check_flag, check_real
from spikeflow.errors import ConfigurationError
from spikeflow.neurons.base import BaseNode
from spikeflow.neurons.declaration import NeuronDeclaration, declare
from spikeflow.neurons.lif import _check_tau
from spikeflow.neurons.nonlinear import _positive
from spikeflow.surrogate import Rect, Surrogate

__all__ = ["ALIFNode", "AdaptiveLIFNode", "CLIFNode", "ComplementaryLIFNode", "KLIFNode"]


# -- ALIF -------------------------------------------------------------------------------


def _alif_charge_decay_input(
    x: Tensor, v: Tensor, a: Tensor, *, decay: float, v_rest: float
) -> Tensor:
    """ALIF charge, ``decay_input=True``: ``H = V + (X - (V - V_rest)) / tau``."""
    return v + (x - (v - v_rest)) * decay


def _alif_charge_no_decay_input(
    x: Tensor, v: Tensor, a: Tensor, *, decay: float, v_rest: float
) -> Tensor:
    """ALIF charge, ``decay_input=False``: ``H = V - (V - V_rest) / tau + X``."""
    return v - (v - v_rest) * decay + x


def _alif_update(h: Tensor, s: Tensor, a: Tensor, *, rho: float) -> Tensor:
    """After firing: ``a[t] = rho a[t-1] + S[t]``."""
    return rho * a + s


def _alif_update_detached(h: Tensor, s: Tensor, a: Tensor, *, rho: float) -> Tensor:
    """As :func:`_alif_update`, no gradient through the spike (``detach_adaptation``)."""
    return rho * a + s.detach()


def _alif_threshold(theta: Tensor | float, a: Tensor, *, beta: float) -> Tensor:
    """The effective threshold of step t: ``theta + beta a[t-1]``."""
    return theta + beta * a


class ALIFNode(BaseNode):
    """Adaptive-threshold LIF (after Bellec et al., NeurIPS 2018, "LSNN")::

        H[t]  = V[t-1] + (X[t] - (V[t-1] - V_r)) / tau     (decay_input=True; LIF charge)
        θ[t]  = v_threshold + beta a[t-1]                  (effective threshold)
        S[t]  = Θ(H[t] - θ[t])
        V[t]  = H[t] (1 - S[t]) + V_r S[t]                 (hard reset)
        V[t]  = H[t] - θ[t] S[t]                           (soft reset: the effective θ)
        a[t]  = rho a[t-1] + S[t],   rho = exp(-1 / tau_adapt)

    ``a`` is a spike trace starting at 0: each spike raises the threshold by ``beta``,
    and the raise decays with time constant ``tau_adapt`` (steps). Bellec et al. write
    ``b[t] = rho b[t-1] + (1 - rho) S[t]`` with threshold ``b0 + beta' b``; that is this
    neuron with ``beta = beta' (1 - rho)``. With ``beta = 0`` it is :class:`LIFNode`.
    The defaults (``tau_adapt=20``, ``beta=0.2``) are spikeflow's choice, not a paper's.

    Args:
        tau: membrane time constant, > 1 (default 2).
        tau_adapt: adaptation time constant in steps, > 0.
        beta: threshold raise per spike, >= 0.
        decay_input: whether the input is divided by ``tau`` as well.
        detach_adaptation: if True, no gradient flows through the trace ``a``
            (``a[t] = rho a[t-1] + S[t].detach()``: to autograd, a spike's raise of the
            later thresholds is a constant). Default False. ``detach_reset`` cuts the
            reset alone; Norse's ``LSNNRecurrent`` cuts both.
        **kwargs: the arguments of :class:`~spikeflow.neurons.base.BaseNode`.

    State: ``v`` and the trace ``a`` (``node.state["a"]`` while streaming).

    Raises:
        ConfigurationError: ``tau <= 1``, ``tau_adapt <= 0``, ``beta < 0``, a
            non-finite value, or a flag that is not True or False.
    """

    def __init__(
        self,
        tau: float = 2.0,
        tau_adapt: float = 20.0,
        beta: float = 0.2,
        decay_input: bool = True,
        detach_adaptation: bool = False,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.tau = _check_tau("tau", tau)
        self.tau_adapt = _positive("tau_adapt", tau_adapt)
        self.beta = check_real("beta", beta)
        if self.beta < 0:
            raise ConfigurationError(
                f"beta must be >= 0 (a spike raises the threshold), got {self.beta}"
            )
        self.decay_input = check_flag(type(self).__name__, "decay_input", decay_input)
        self.detach_adaptation = check_flag(
            type(self).__name__, "detach_adaptation", detach_adaptation
        )

    def declaration(self) -> NeuronDeclaration:
        charge = _alif_charge_decay_input if self.decay_input else _alif_charge_no_decay_input
        update = _alif_update_detached if self.detach_adaptation else _alif_update
        name = (
            f"{type(self).__name__}(decay_input={self.decay_input}, "
            f"detach_adaptation={self.detach_adaptation})"
        )
        return declare(charge, update, name, threshold=_alif_threshold)

    def neuron_params(self) -> dict[str, Tensor | float]:
        return {
            "decay": 1.0 / self.tau,
            "v_rest": 0.0 if self.v_reset is None else self.v_reset,
            "rho": math.exp(-1.0 / self.tau_adapt),
            "beta": self.beta,
        }

    def initial_values(self) -> dict[str, float]:
        return {**super().initial_values(), "a": 0.0}

    def extra_repr(self) -> str:
        return (
            f"tau={self.tau:g}, tau_adapt={self.tau_adapt:g}, beta={self.beta:g}, "
            f"decay_input={self.decay_input}, "
            + ("detach_adaptation=True, " if self.detach_adaptation else "")
            + super().extra_repr()
        )


#: Long name.
AdaptiveLIFNode = ALIFNode


# -- KLIF -------------------------------------------------------------------------------
#
# Without scale_reset, KLIF fires and resets on F = ReLU(k H) with the shared rules, so
# F is simply what charge returns. With scale_reset (SpikingJelly's KLIF), the membrane
# after reset is V = (F/k)(1 - S) + V_r S (hard) or (F - θ S)/k (soft): the reset acts on
# F/k while firing still tests F against θ. The kernels run that on the scaled membrane
# U = k (V - c) + c, with c = V_r (hard) or 0 (soft). Then the shared reset of
# F' = F + (1 - k) c against θ' = θ + (1 - k) c gives exactly the next U (an identity in
# S, so surrogate gradients agree), and F' - θ' = F - θ fires as KLIF does. U is converted
# to and from V at the boundaries of every call, so the state users see is V.


def _klif_charge_decay_input(
    x: Tensor, v: Tensor, *, k: Tensor, decay: float, v_rest: float
) -> Tensor:
    """``F = ReLU(k H)`` with the LIF charge ``H = V + (X - (V - V_rest)) / tau``."""
    return torch.relu(k * (v + (x - (v - v_rest)) * decay))


def _klif_charge_no_decay_input(
    x: Tensor, v: Tensor, *, k: Tensor, decay: float, v_rest: float
) -> Tensor:
    """``F = ReLU(k H)`` with the LIF charge ``H = V - (V - V_rest) / tau + X``."""
    return torch.relu(k * (v - (v - v_rest) * decay + x))


def _klif_scaled_decay_input(
    x: Tensor, v: Tensor, *, k: Tensor, decay: float, v_rest: float
) -> Tensor:
    """Scaled-reset KLIF on ``U = k (V - c) + c`` (``c = v_rest``): ``F + (1 - k) c``."""
    v_true = (v - v_rest) / k + v_rest
    f = torch.relu(k * (v_true + (x - (v_true - v_rest)) * decay))
    return f + (1.0 - k) * v_rest


def _klif_scaled_no_decay_input(
    x: Tensor, v: Tensor, *, k: Tensor, decay: float, v_rest: float
) -> Tensor:
    """As :func:`_klif_scaled_decay_input`, with ``decay_input=False``."""
    v_true = (v - v_rest) / k + v_rest
    f = torch.relu(k * (v_true - (v_true - v_rest) * decay + x))
    return f + (1.0 - k) * v_rest


def _klif_scaled_threshold(theta: Tensor | float, *, k: Tensor, v_rest: float) -> Tensor:
    """The threshold matching the shifted ``F``: ``θ + (1 - k) c`` (``c = v_rest``)."""
    return theta + (1.0 - k) * v_rest


class KLIFNode(BaseNode):
    """K-based LIF (Jiang et al., arXiv 2302.09238; methods.md 1.2)::

        H[t] = V[t-1] + (X[t] - (V[t-1] - V_r)) / tau      (LIF charge, decay_input=True)
        F[t] = ReLU(k H[t])                                 (k: learnable scalar, init 1)
        S[t] = Θ(F[t] - θ)

    Reset, ``scale_reset=False`` (default): the shared rules on ``F``,
    ``V[t] = F(1 - S) + V_r S`` (hard) or ``F - θ S`` (soft). ``scale_reset=True``
    (SpikingJelly's option): ``V[t] = (F/k)(1 - S) + V_r S`` (hard) or ``(F - θ S)/k``
    (soft). ``k`` rescales the surrogate's slope with respect to ``H``. The PSN paper
    trained KLIF with soft reset and ``detach_reset=False`` (it did not converge with
    detach). With soft reset the leak is towards 0.

    Args:
        tau: membrane time constant, > 1 (default 2).
        decay_input: whether the input is divided by ``tau`` as well.
        scale_reset: reset ``F/k`` with the threshold ``θ/k`` (see above).
        **kwargs: the arguments of :class:`~spikeflow.neurons.base.BaseNode`.

    Attributes:
        k: the learnable scalar (``nn.Parameter``, initialised to 1.0).
    """

    def __init__(
        self,
        tau: float = 2.0,
        decay_input: bool = True,
        scale_reset: bool = False,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.tau = _check_tau("tau", tau)
        self.decay_input = check_flag(type(self).__name__, "decay_input", decay_input)
        self.scale_reset = check_flag(type(self).__name__, "scale_reset", scale_reset)
        self.k = nn.Parameter(torch.tensor(1.0))

    def _c(self) -> float:
        return 0.0 if self.v_reset is None else self.v_reset

    def declaration(self) -> NeuronDeclaration:
        name = (
            f"{type(self).__name__}(decay_input={self.decay_input}, scale_reset={self.scale_reset})"
        )
        if not self.scale_reset:
            plain = _klif_charge_decay_input if self.decay_input else _klif_charge_no_decay_input
            return declare(plain, None, name)
        scaled = _klif_scaled_decay_input if self.decay_input else _klif_scaled_no_decay_input
        threshold = _klif_scaled_threshold if self._c() != 0.0 else None
        return declare(scaled, None, name, threshold=threshold)

    def neuron_params(self) -> dict[str, Tensor | float]:
        return {"k": self.k, "decay": 1.0 / self.tau, "v_rest": self._c()}

    # The kernels run a scaled-reset KLIF on U = k (V - c) + c (see above): convert the
    # state at the boundaries of each call so that users and streaming see V.

    def _carried_state(self, step_shape: torch.Size) -> dict[str, Tensor] | None:
        state = super()._carried_state(step_shape)
        if state is None or not self.scale_reset:
            return state
        c = self._c()
        return {**state, "v": self.k * (state["v"] - c) + c}

    def _keep_state(self, state: dict[str, Tensor]) -> None:
        if self.scale_reset:
            c = self._c()
            state = {**state, "v": (state["v"] - c) / self.k + c}
        super()._keep_state(state)

    def forward(self, x: Tensor) -> Tensor:
        """Spikes for ``x``: ``[T, B, ...]`` in multi-step mode, ``[B, ...]`` in single-step."""
        out = super().forward(x)
        if self.scale_reset and self.store_v_seq and self.v_seq is not None:
            c = self._c()
            self.v_seq = (self.v_seq - c) / self.k + c  # differentiable in k too
        return out

    def extra_repr(self) -> str:
        return (
            f"tau={self.tau:g}, decay_input={self.decay_input}, "
            f"scale_reset={self.scale_reset}, " + super().extra_repr()
        )


# -- CLIF -------------------------------------------------------------------------------
#
# CLIF's reset subtracts sigmoid(M[t]) of the complementary potential *after* this
# step's spike has been added to it, which neither shared reset rule can read: the
# declaration's reset_membrane (which sees the auxiliary state after update) is what
# expresses it, so the reference loop and the fused kernels run the published equations
# on the true membrane.


def _clif_charge(
    x: Tensor, v: Tensor, m: Tensor, *, tau: float, v_rest: float
) -> tuple[Tensor, Tensor]:
    """``H = V - (V - V_rest) / tau + X``; the complementary potential decays by
    ``sigmoid(H / tau)`` before firing."""
    h = v - (v - v_rest) / tau + x
    return h, m * torch.sigmoid(h / tau)


def _clif_update(h: Tensor, s: Tensor, m: Tensor) -> Tensor:
    """After firing, each spike strengthens the complementary potential: ``M += S``."""
    return m + s


def _clif_soft_reset(h: Tensor, s: Tensor, theta: Tensor | float, m: Tensor) -> Tensor:
    """``V = H - S (θ + sigmoid(M[t]))``, with ``M[t]`` counting this step's spike."""
    return h - s * (theta + torch.sigmoid(m))


def _clif_hard_reset(
    h: Tensor, s: Tensor, theta: Tensor | float, m: Tensor, *, v_rest: float
) -> Tensor:
    """``V = H (1 - S) + V_r S - S sigmoid(M[t])`` (the authors' code with a ``v_reset``)."""
    return h * (1.0 - s) + v_rest * s - s * torch.sigmoid(m)


class ComplementaryLIFNode(BaseNode):
    """Complementary LIF (CLIF; Huang et al., ICML 2024)::

        H[t] = V[t-1] - (V[t-1] - V_r) / tau + X[t]        (LIF charge, input not decayed)
        M'   = M[t-1] sigmoid(H[t] / tau)                   (the complementary potential decays)
        S[t] = Θ(H[t] - θ)
        M[t] = M' + S[t]                                    (each spike strengthens it)
        V[t] = H[t] - S[t] (θ + sigmoid(M[t]))              (soft reset, v_reset=None: default)
        V[t] = H[t] (1 - S[t]) + V_r S[t] - S[t] sigmoid(M[t])   (hard reset to v_reset)

    ``M`` starts at 0, ``V`` at 0 (soft reset) or ``V_r``; with soft reset ``V_r`` in the
    charge is 0. The complementary potential makes the reset grow with the recent spikes
    and gives the gradient through time extra paths (through ``M``). The defaults
    are the paper's and SpikingJelly 2.0's ``ComplementaryLIFNode``: ``tau=2``,
    ``v_threshold=1``, soft reset, the rectangular surrogate ``Rect(alpha=1)``; no
    learnable parameters. Equal to SpikingJelly's node in spikes and gradients
    (``tests/test_neurons_clif_raf.py``). SpikingJelly's node is soft-reset only and has
    no ``detach_reset``; here a hard reset (as the authors' code applies it) and
    ``detach_reset`` (the spike that multiplies the reset is detached; ``M`` still
    counts it with its gradient) are available too.

    Args (the first three by position as SpikingJelly's):
        tau: membrane time constant, > 1 (default 2).
        v_threshold: θ (default 1).
        surrogate_function: the spike function (default ``Rect(alpha=1)``).
        v_reset: ``None`` for CLIF's soft reset (default), or a hard-reset value.
        **kwargs: the other arguments of :class:`~spikeflow.neurons.base.BaseNode`.

    State: ``v`` and the complementary potential ``m`` (``node.m`` while streaming).

    Raises:
        ConfigurationError: ``tau <= 1`` or a non-finite ``tau``, or a bad argument of
            :class:`~spikeflow.neurons.base.BaseNode`.
    """

    def __init__(
        self,
        tau: float = 2.0,
        v_threshold: float | Tensor = 1.0,
        surrogate_function: Surrogate | None = None,
        v_reset: float | None = None,
        **kwargs: object,
    ) -> None:
        surrogate_function = Rect(alpha=1.0) if surrogate_function is None else surrogate_function
        super().__init__(
            v_threshold=v_threshold,
            v_reset=v_reset,
            surrogate_function=surrogate_function,
            **kwargs,  # type: ignore[arg-type]
        )
        self.tau = _check_tau("tau", tau)

    def declaration(self) -> NeuronDeclaration:
        soft = self.v_reset is None
        name = f"{type(self).__name__}({'soft' if soft else 'hard'} reset)"
        reset = _clif_soft_reset if soft else _clif_hard_reset
        return declare(_clif_charge, _clif_update, name, True, reset_membrane=reset)

    def neuron_params(self) -> dict[str, Tensor | float]:
        return {"tau": self.tau, "v_rest": 0.0 if self.v_reset is None else self.v_reset}

    def initial_values(self) -> dict[str, float]:
        return {**super().initial_values(), "m": 0.0}

    @property
    def m(self) -> Tensor | None:
        """The complementary potential carried to the next call (only while streaming)."""
        return None if self.state is None else self.state["m"]

    def extra_repr(self) -> str:
        return f"tau={self.tau:g}, " + super().extra_repr()


#: Short name.
CLIFNode = ComplementaryLIFNode
