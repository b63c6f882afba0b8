"""The LIF neuron with an adaptation current subtracted from its drive: Norse 1.1's
``ada_lif_step`` (``norse/torch/functional/lsnn.py``, read from its code)::

    H[t] = V[t-1] + (dt / tau_mem) (v_leak - V[t-1] + I[t-1] - B[t-1])
    S[t] = Θ(H[t] - θ)
    V[t] = H[t] - (θ - V_r) S[t]                     (a soft reset by θ - V_r)
    B[t] = (1 - dt / tau_adapt) B[t-1] + β S[t]      (the adaptation: jumps by β per spike)
    I[t] = (1 - dt / tau_syn) I[t-1] + X[t]          (the input reaches H at the next step)

Where the LSNN/ALIF neurons raise the threshold (``θ + b``), this one lowers the drive by
``B``: a spike makes the neuron harder to charge for a while, with a fixed threshold.
It is not :class:`~spikeflow.neurons.AdLIFNode` (Bittar & Garner's adLIF), whose
adaptation is itself driven by the membrane.

Declared once (:mod:`spikeflow.neurons.declaration`): the charge returns the membrane
and the decayed current (input added) and adaptation, the update adds ``β S``, the
reset subtracts ``θ - V_r``; the reference loop and the fused C and Triton kernels,
forward and backward, come from these functions.
"""

from __future__ import annotations

from torch import Tensor

from spikeflow.base import set_constants
from spikeflow.errors import ConfigurationError
from spikeflow.neurons.base import BaseNode, check_step_shape, show_float_or_shape
from spikeflow.neurons.current import _check_dt, _check_time_constant, _check_value
from spikeflow.neurons.declaration import NeuronDeclaration, declare

__all__ = ["AdaLIFNode"]

#: Norse's ``LSNNParameters`` names, with what this neuron takes for them (the error hint).
_NORSE_NAMES = {
    "tau_syn_inv": "tau_syn=1/tau_syn_inv",
    "tau_mem_inv": "tau_mem=1/tau_mem_inv",
    "tau_adapt_inv": "tau_adapt=1/tau_adapt_inv",
    "v_th": "v_threshold=v_th",
    "method": "surrogate_function (method='super' is SuperSpike(alpha=1.0))",
    "alpha": "the surrogate's own alpha (surrogate_function=...)",
}


def _ada_lif_charge(
    x: Tensor,
    v: Tensor,
    i: Tensor,
    b: Tensor,
    *,
    mem_decay: Tensor | float,
    syn_decay: Tensor | float,
    adapt_decay: Tensor | float,
    v_leak: Tensor | float,
) -> tuple[Tensor, Tensor, Tensor]:
    """The membrane charged by the last step's current less the adaptation, then the
    current decayed with this step's input added and the adaptation decayed."""
    h = v + mem_decay * ((v_leak - v) + i - b)
    return h, i - syn_decay * i + x, b - adapt_decay * b


def _ada_lif_update(h: Tensor, s: Tensor, i: Tensor, b: Tensor, *, beta: Tensor | float) -> tuple:
    """After firing: the current as charged, the adaptation ``B + β S``."""
    return i, b + beta * s


def _ada_lif_reset(
    h: Tensor, s: Tensor, theta: Tensor | float, i: Tensor, b: Tensor, *, v_reset: float
) -> Tensor:
    """The soft reset by ``θ - V_r``."""
    return h - s * (theta - v_reset)


class AdaLIFNode(BaseNode):
    """LIF with an adaptation current subtracted from the drive (Norse's
    ``ada_lif_step``; see the module docstring)::

        H[t] = V + (dt / tau_mem) (v_leak - V + I - B)          (V, I, B of step t-1)
        S[t] = Θ(H[t] - θ),   V[t] = H[t] - (θ - V_r) S[t]
        B[t] = (1 - dt / tau_adapt) B + β S[t]
        I[t] = (1 - dt / tau_syn) I + X[t]

    **Norse**: ``ada_lif_step(x, LSNNState(z, v, i, b), w_in, w_rec,
    LSNNParameters(tau_syn_inv, tau_mem_inv, tau_adapt_inv, v_leak, v_th, v_reset, beta,
    method="super"), dt)`` stepped over a sequence is this neuron with
    ``tau_syn=1/tau_syn_inv, tau_mem=1/tau_mem_inv, tau_adapt=1/tau_adapt_inv,
    v_leak=v_leak, beta=beta, dt=dt, v_threshold=v_th, v_reset=v_reset,
    strict_firing=True, surrogate_function=SuperSpike(alpha=1.0)`` on the input
    ``X[t] = w_in x[t] + w_rec z[t-1]`` (a bias-free ``layers.Linear`` before it, and
    :class:`~spikeflow.layers.Recurrent` for ``w_rec``): the same spikes, states and
    gradients (tested in float64 on every backend). The membrane starts at ``v_leak``,
    ``I`` and ``B`` at 0 (pass Norse the same start).

    Args:
        tau_syn: the synaptic current's time constant, ``>= dt`` (default 5).
        tau_mem: the membrane's, ``>= dt`` (default 10).
        tau_adapt: the adaptation's, ``>= dt`` (default 800).
        v_leak: the resting potential the membrane leaks towards (default 0).
        beta: the adaptation's jump per spike (default 1.8, Norse's).
        dt: the step, in the units of the time constants (default 1).
        **kwargs: the arguments of :class:`~spikeflow.neurons.base.BaseNode`;
            ``v_reset`` must be a float below the threshold (default 0): the reset
            subtracts ``θ - v_reset`` (Norse's), it does not set the membrane.

    Every parameter but ``dt`` may be a tensor broadcastable to the neuron shape. State:
    ``v``, the current ``i`` and the adaptation ``b`` (``node.state`` while streaming).

    Raises:
        ConfigurationError: ``v_reset=None``, a time constant below ``dt``, ``dt <= 0``,
            a non-finite value, a Norse parameter name (``tau_mem_inv``, ``v_th``, ...:
            the message gives the argument to use).
    """

    def __init__(
        self,
        tau_syn: float | Tensor = 5.0,
        tau_mem: float | Tensor = 10.0,
        tau_adapt: float | Tensor = 800.0,
        v_leak: float | Tensor = 0.0,
        beta: float | Tensor = 1.8,
        dt: float = 1.0,
        **kwargs: object,
    ) -> None:
        owner = type(self).__name__
        norse = [name for name in kwargs if name in _NORSE_NAMES]
        if norse:
            raise ConfigurationError(
                f"{owner}: {norse} are Norse's LSNNParameters names; here "
                + ", ".join(f"{name}: {_NORSE_NAMES[name]}" for name in norse)
                + " (with Norse's dt)"
            )
        if "v_reset" in kwargs and kwargs["v_reset"] is None:
            raise ConfigurationError(
                f"{owner}: v_reset must be a float (the reset subtracts v_threshold - "
                "v_reset, as Norse's ada_lif_step), got None"
            )
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.dt = _check_dt(dt, f"{owner}: dt")
        values = {
            "tau_syn": _check_time_constant("tau_syn", tau_syn, self.dt),
            "tau_mem": _check_time_constant("tau_mem", tau_mem, self.dt),
            "tau_adapt": _check_time_constant("tau_adapt", tau_adapt, self.dt),
            "v_leak": _check_value("v_leak", v_leak),
            "beta": _check_value("beta", beta),
        }
        set_constants(self, values)

    def declaration(self) -> NeuronDeclaration:
        return declare(
            _ada_lif_charge, _ada_lif_update, type(self).__name__, charge_returns_aux=True,
            reset_membrane=_ada_lif_reset,
        )  # fmt: skip

    def neuron_params(self) -> dict[str, Tensor | float]:
        return {
            "mem_decay": self.dt / self.tau_mem,
            "syn_decay": self.dt / self.tau_syn,
            "adapt_decay": self.dt / self.tau_adapt,
            "v_leak": self.v_leak,
            "beta": self.beta,
            "v_reset": self.v_reset,
        }

    def initial_values(self) -> dict[str, float]:
        start = 0.0 if isinstance(self.v_leak, Tensor) else self.v_leak
        return {"v": start, "i": 0.0, "b": 0.0}

    def initial_state(self, like: Tensor) -> dict[str, Tensor]:
        state = super().initial_state(like)
        if isinstance(self.v_leak, Tensor):  # one resting value per neuron
            state["v"] = like.new_zeros(like.shape) + self.v_leak.to(like)
        return state

    def start_state(self, like: Tensor) -> dict[str, Tensor | float]:
        if isinstance(self.v_leak, Tensor):
            return self.initial_state(like)
        return dict(self.initial_values())

    def _check_input(self, x: Tensor) -> Tensor:
        x_seq = super()._check_input(x)
        for name in ("tau_syn", "tau_mem", "tau_adapt", "v_leak", "beta"):
            check_step_shape(type(self).__name__, name, getattr(self, name), x_seq.shape[1:])
        return x_seq

    def extra_repr(self) -> str:
        shown = ", ".join(
            f"{name}={show_float_or_shape(getattr(self, name))}"
            for name in ("tau_syn", "tau_mem", "tau_adapt", "v_leak", "beta")
        )
        return f"{shown}, dt={self.dt:g}, " + super().extra_repr()
