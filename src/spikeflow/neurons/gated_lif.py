"""The gated LIF neuron (GLIF) of Yao et al., NeurIPS 2022: learnable gates that mix two
kinds of leak, of input and of reset.

GLIF's reset acts one step late: the charge of step t reads the spike of step t-1 and
takes it off the membrane it decays. The declaration therefore carries that spike as a
state and resets inside ``charge``; its ``reset_membrane`` keeps the charged membrane.
The input gate reads a conductance learned per time step, so it scales the input
before the loop (one elementwise product, differentiable in its parameters); the rest
of the step is the declaration, run by the reference loop and the fused kernels alike.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor, nn

from spikeflow._checks import check_int, check_real
from spikeflow.base import StepMode
from spikeflow.errors import ShapeError, StateError
from spikeflow.neurons.base import (
    BaseNode,
    keep_detached_spike,
    keep_spike,
    membrane_as_charged,
)
from spikeflow.neurons.declaration import NeuronDeclaration, declare
from spikeflow.surrogate import Surrogate

__all__ = ["GLIFNode", "GatedLIFNode"]


def _glif_charge(
    x: Tensor,
    v: Tensor,
    spike: Tensor,
    *,
    decay: Tensor,
    leak: Tensor,
    gamma: Tensor,
    sub_reset: Tensor,
) -> Tensor:
    """``H = D V - leak + I - γ D V S' - sub_reset S'``: ``x`` is the gated input ``I``,
    ``spike`` the previous step's spike ``S'``, ``D = 1 - α (1 - τ)``, ``leak =
    (1 - α) E``, ``sub_reset = (1 - γ) V_sub`` (each step as SpikingJelly orders it)."""
    decayed = decay * v
    return ((decayed - leak) + x) - decayed * gamma * spike - sub_reset * spike


def _unit(name: str, value: object) -> float:
    """``value`` as a float in (0, 1), or a ConfigurationError naming ``name``."""
    return check_real(f"GatedLIFNode: {name}", value, 0.0, 1.0, low_open=True, high_open=True)


def _logit(p: float) -> float:
    """The parameter whose sigmoid is ``p``."""
    return math.log(p) - math.log1p(-p)


class GatedLIFNode(BaseNode):
    """Gated LIF neuron (GLIF; Yao et al., NeurIPS 2022, "GLIF: A Unified Gated Leaky
    Integrate-and-Fire Neuron for Spiking Neural Networks"), SpikingJelly 2.0's
    ``GatedLIFNode``::

        I[t] = (1 - β (1 - g[t])) X[t]                             (gated input)
        D    = 1 - α (1 - τ)                                       (gated decay)
        H[t] = D V[t-1] - (1 - α) E + I[t]                         (leak: decay, linear)
               - γ D V[t-1] S[t-1] - (1 - γ) V_sub S[t-1]          (reset of the last spike)
        S[t] = Θ(H[t] - θ);     V[t] = H[t]

    Every quantity is the logistic sigmoid of a learnable parameter (SpikingJelly's
    names): the gates ``α = σ(alpha)`` (exponential or linear leak), ``β = σ(beta)``
    (constant or conductance-scaled input), ``γ = σ(gamma)`` (multiplicative or
    subtractive reset); the decay ``τ = σ(tau)``, the linear leak ``E =
    σ(linear_decay)``, the subtractive reset ``V_sub = σ(v_subreset)``, the threshold
    ``θ = σ(v_threshold)`` and one conductance per time step ``g[t] = σ(conduct[t])``.
    All are per layer, or per channel with ``inplane`` (dim 1 of a step ``[B, C, ...]``:
    conv ``[B, C, H, W]`` and linear ``[B, C]`` steps alike). The gates start uniform
    in ``(-0.1, 0.1)`` (σ near 0.5), the others at the given initial values (stored
    pre-sigmoid, as SpikingJelly stores them: its ``state_dict`` loads directly).

    A spike resets the membrane at the next step, not the one it fires at: ``V`` is
    the charged membrane (what ``v_seq`` records) and ``S[t-1]`` is carried as the
    state ``spike``. Both start at 0.

    Args (by position as SpikingJelly's):
        T: the number of time steps: the conductance is learned per step, so a sequence
            (or the steps streamed since a reset) may have at most ``T`` steps.
        inplane: the number of channels for per-channel parameters; ``None`` (default):
            one value of each per layer.
        init_linear_decay: ``E`` at the start, in (0, 1) (default ``init_v_threshold /
            (2 T)``).
        init_v_subreset: ``V_sub`` at the start, in (0, 1) (default ``init_v_threshold``).
        init_tau: ``τ`` (a decay factor per step, not a time constant) at the start, in
            (0, 1) (default 0.25).
        init_v_threshold: ``θ`` at the start, in (0, 1) (default 0.5).
        init_conduct: every ``g[t]`` at the start, in (0, 1) (default 0.5).
        surrogate_function: the spike function (default ``Sigmoid(alpha=4)``).
        step_mode: ``'m'`` (default) or ``'s'`` (one step per call, streaming).
        detach_reset: no gradient through the spike of the reset terms (beyond
            SpikingJelly's node).
        strict_firing, backend, store_v_seq: as :class:`~spikeflow.neurons.base.BaseNode`.

    State: ``v`` and the last spike ``spike`` (``node.state["spike"]`` while streaming),
    and the number of steps run since the state was last fresh (which ``conduct`` row
    the next step reads).

    Raises:
        ConfigurationError: a bad ``T``, ``inplane`` or initial value (each named), or a
            bad argument of :class:`~spikeflow.neurons.base.BaseNode`.
        ShapeError: a sequence of more than ``T`` steps; with ``inplane``, steps whose
            dim 1 is not ``inplane`` channels.
        StateError: streamed steps beyond ``T`` since the last reset.
    """

    #: The PLIF nets' default ``init_tau`` (a time constant, 2) is not this neuron's (a
    #: decay factor in (0, 1)): a model's defaults never set it (``neuron_kwargs`` do).
    model_defaults_ignored: ClassVar[tuple[str, ...]] = ("init_tau",)

    alpha: nn.Parameter
    beta: nn.Parameter
    gamma: nn.Parameter
    tau: nn.Parameter
    v_threshold: nn.Parameter
    linear_decay: nn.Parameter
    v_subreset: nn.Parameter
    conduct: nn.Parameter

    def __init__(
        self,
        T: int,
        inplane: int | None = None,
        init_linear_decay: float | None = None,
        init_v_subreset: float | None = None,
        init_tau: float = 0.25,
        init_v_threshold: float = 0.5,
        init_conduct: float = 0.5,
        surrogate_function: Surrogate | None = None,
        step_mode: StepMode = "m",
        *,
        detach_reset: bool = False,
        strict_firing: bool = False,
        backend: str = "auto",
        store_v_seq: bool = False,
    ) -> None:
        steps = check_int("GatedLIFNode: T", T, 1)
        if inplane is not None:
            inplane = check_int("GatedLIFNode: inplane", inplane, 1)
        shape = () if inplane is None else (inplane,)
        theta = _unit("init_v_threshold", init_v_threshold)
        tau = _unit("init_tau", init_tau)
        if init_linear_decay is None:
            init_linear_decay = theta / (2 * steps)
        linear_decay = _unit("init_linear_decay", init_linear_decay)
        v_subreset = _unit("init_v_subreset", theta if init_v_subreset is None else init_v_subreset)
        conduct = _unit("init_conduct", init_conduct)
        super().__init__(
            v_threshold=torch.full(shape, _logit(theta)),
            v_reset=None,
            surrogate_function=surrogate_function,
            detach_reset=detach_reset,
            strict_firing=strict_firing,
            learnable_threshold=True,
            step_mode=step_mode,
            backend=backend,
            store_v_seq=store_v_seq,
        )
        self.T = steps
        self.inplane = inplane
        # Registered in SpikingJelly's order (its optimizer state loads by position).
        threshold = self.v_threshold
        del self.v_threshold
        for name in ("alpha", "beta", "gamma"):
            self.register_parameter(name, nn.Parameter(torch.empty(shape).uniform_(-0.1, 0.1)))
        self.tau = nn.Parameter(torch.full(shape, _logit(tau)))
        self.v_threshold = threshold
        self.linear_decay = nn.Parameter(torch.full(shape, _logit(linear_decay)))
        self.v_subreset = nn.Parameter(torch.full(shape, _logit(v_subreset)))
        self.conduct = nn.Parameter(torch.full((steps, *shape), _logit(conduct)))
        self._channels: tuple[int, ...] = shape  # the parameters' view for one step
        self._t = 0  # steps run since the state was fresh: the next conduct row

    # -- the declaration ---------------------------------------------------------------

    def declaration(self) -> NeuronDeclaration:
        keep = keep_detached_spike if self.detach_reset else keep_spike
        name = f"{type(self).__name__}{'(detach_reset)' if self.detach_reset else ''}"
        return declare(_glif_charge, keep, name, reset_membrane=membrane_as_charged)

    def neuron_params(self) -> dict[str, Tensor | float]:
        alpha, tau, gamma, linear_decay, v_subreset = (
            torch.sigmoid(p).view(self._channels)
            for p in (self.alpha, self.tau, self.gamma, self.linear_decay, self.v_subreset)
        )
        return {
            "decay": 1 - alpha * (1 - tau),
            "leak": (1 - alpha) * linear_decay,
            "gamma": gamma,
            "sub_reset": (1 - gamma) * v_subreset,
        }

    def firing_threshold(self, step_shape: torch.Size) -> Tensor:
        """``θ = σ(v_threshold)``, per layer or per channel of the steps."""
        return torch.sigmoid(self.v_threshold).view(self._channels)

    def initial_values(self) -> dict[str, float]:
        return {**super().initial_values(), "spike": 0.0}

    # -- execution ---------------------------------------------------------------------

    def _check_input(self, x: Tensor) -> Tensor:
        x_seq = super()._check_input(x)
        if self.inplane is not None:
            if x_seq.dim() < 3 or x_seq.shape[2] != self.inplane:
                raise ShapeError(
                    f"GatedLIFNode was built with inplane={self.inplane} (per-channel "
                    f"parameters, channels at dim 1 of a step [B, C, ...]) but its steps have "
                    f"shape {tuple(x_seq.shape[1:])}"
                )
            self._channels = (self.inplane,) + (1,) * (x_seq.dim() - 3)
        return x_seq

    def reset(self) -> None:
        super().reset()
        self._t = 0

    def check_steps(self, steps: int) -> None:
        """Raise the ShapeError a sequence of ``steps`` steps from a fresh state would
        raise: more than ``T`` (before running one: ``spikeflow train`` asks)."""
        if steps > self.T:
            raise ShapeError(
                f"GatedLIFNode was built for T={self.T} time steps (one conductance "
                f"per step, conduct of shape {tuple(self.conduct.shape)}) but got a "
                f"sequence of {steps} steps"
            )

    def forward(self, x: Tensor) -> Tensor:
        """Spikes for ``x``: ``[T', B, ...]`` (``T' <= T``) in multi-step mode, ``[B, ...]``
        in single-step mode."""
        x_seq = self._check_input(x)
        carried = self._carried_state(x_seq.shape[1:])
        explicit = self._explicit_call()  # run(x, state): the step index is in the state
        if carried is None:
            start = 0
        else:
            start = int(carried["t"]) if explicit else self._t
        steps = x_seq.shape[0]
        if start + steps > self.T:
            if start == 0:
                self.check_steps(steps)
            raise StateError(
                f"GatedLIFNode was built for T={self.T} time steps and has run {start} since "
                f"its state was reset; {steps} more would pass T: call "
                "spikeflow.functional.reset_net(net) between sequences"
            )
        # I[t] = (1 - β (1 - g[t])) X[t], for the steps start .. start + steps - 1.
        conduct = torch.sigmoid(self.conduct[start : start + steps])
        gate = 1 - torch.sigmoid(self.beta) * (1 - conduct)
        gate = gate.view(steps, *(1,) * (x_seq.dim() - 1 - len(self._channels)), *self._channels)
        x_gated = x_seq * gate.to(x_seq.dtype)
        spikes = super().forward(x_gated if self.step_mode == "m" else x_gated[0])
        if explicit:  # handed back with the state, the module's own count left alone
            kept = self.__dict__["_explicit"]
            kept.final = kept.current = {**kept.final, "t": torch.tensor(start + steps)}
        else:
            self._t = start + steps
        return spikes

    def extra_repr(self) -> str:
        parts = [
            f"T={self.T}",
            f"inplane={self.inplane}",
            f"detach_reset={self.detach_reset}",
            *self._mode_repr(),
        ]
        return ", ".join(parts)


#: Short name.
GLIFNode = GatedLIFNode
