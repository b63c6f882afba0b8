"""The recurrent spiking network that e-prop trains (Bellec et al., Nature Communications
2020, "A solution to the learning dilemma for recurrent networks of spiking neurons"),
and the losses whose gradients e-prop computes.

``N = n_lif + n_alif`` neurons (LIF first, then ALIF), inputs ``x[t]`` (``I`` per step),
``K`` leaky readouts. Steps ``t = 1..T``; every state is 0 at ``t = 0``::

    v_j[t] = α v_j[t-1] + ζ (Σ_i W^in_ji x_i[t] + Σ_{i≠j} W^rec_ji z_i[t-1]) − v_th z_j[t-1]
    a_j[t] = ρ a_j[t-1] + z_j[t-1]                       (ALIF; LIF neurons have no a)
    A_j[t] = v_th + β a_j[t]                             (LIF: A_j = v_th)
    z_j[t] = H(v_j[t] − A_j[t])                          (0 while refractory)
    y_k[t] = κ y_k[t-1] + Σ_j W^out_kj z_j[t] + b_k
    ψ_j[t] = γ_pd max(0, 1 − |v_j[t] − A_j[t]| / v_th) / v_th     (0 while refractory)

with ``α = exp(−1/tau)``, ``ρ = exp(−1/tau_adapt)``, ``κ = exp(−1/tau_out)``, ``ζ = 1``
(the paper's Methods) or ``1 − α`` (``decay_input=True``; NEST's e-prop neurons offer
both), and ``H(x) = 1[x > 0]``. The reset subtracts ``v_th`` (not the adapted ``A``) at the next
step, unleaked. A neuron that spikes at ``t`` cannot spike at ``t+1 .. t+refractory``
(its membrane keeps integrating). The spike's pseudo-derivative ``ψ`` is γ_pd times
spikeflow's :class:`~spikeflow.surrogate.Triangle` with ``gamma = v_th`` (whose
derivative is ``max(0, 1 − |x|/v_th)/v_th``); any other spikeflow surrogate may replace
it. Bellec's LSNN paper (2018) writes ``a = ρ a + (1 − ρ) z``: ``β' (1 − ρ)`` here.

What of spikeflow is reused, and what is not (the equations differ):

* ``Triangle`` is ψ (above), and :class:`~spikeflow.neurons.LINode` with
  ``decay_input=False, tau = 1/(1 − κ)`` is the readout, ``y = κ y + u``: ``forward``
  runs it on the readout currents of all steps (one GEMM for the readout).
* ``LIFNode``/``ALIFNode`` with soft reset are not this neuron: they subtract the
  threshold from the charge before the leak (``V = H − θ S``, then ``H' = α V + X``), so
  the reset reaching the next step is ``α v_th``, not ``v_th``; ``ALIFNode`` subtracts
  the adapted threshold ``v_th + β a``, not ``v_th``; and their leak is ``1 − 1/τ``.
  No choice of their arguments gives Bellec's ``v``.
* ``layers.Recurrent`` feeds the neurons' output back as is: the e-prop reference graph
  (see :mod:`spikeflow.learn.eprop`) needs the fed-back spikes detached while the
  readout and the neuron's own adaptation keep theirs. ``models.rsnn`` is another
  network (Bittar & Garner: batch norm, dropout, adLIF neurons).
* ``PiecewiseLeakyReLU`` and ``Rect`` are boxes, not Bellec's triangle.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikeflow._checks import check_flag, check_int, check_labels, check_real
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.neurons import LINode, SpikeTap
from spikeflow.surrogate import Surrogate, Triangle

__all__ = [
    "EPROP_LOSSES",
    "EPropRSNN",
    "RSNNOutput",
    "RSNNState",
    "RSNNStep",
    "eprop_loss",
    "rate_regularization",
]

#: The per-step losses e-prop computes the gradient of (see :func:`eprop_loss`).
EPROP_LOSSES = ("ce", "mse")


class RSNNState(NamedTuple):
    """The network's state after step ``t`` (all ``[B, ...]``)."""

    v: Tensor  #: membrane ``v[t]``, ``[B, N]``
    z: Tensor  #: spikes ``z[t]``, ``[B, N]``
    a: Tensor  #: adaptation ``a[t]`` of the ALIF neurons, ``[B, n_alif]``
    refractory: Tensor  #: steps each neuron still cannot spike, ``[B, N]`` int32
    y: Tensor  #: readout ``y[t]``, ``[B, K]``


class RSNNStep(NamedTuple):
    """One step of :meth:`EPropRSNN.step`."""

    y: Tensor  #: readout ``y[t]``, ``[B, K]``
    z: Tensor  #: spikes ``z[t]``, ``[B, N]``
    state: RSNNState  #: the state after the step
    margin: Tensor  #: ``v[t] − A[t]``, ``[B, N]``
    ready: Tensor | None  #: 1 where not refractory (``None``: no refractory period)


class RSNNOutput(NamedTuple):
    """What :meth:`EPropRSNN.forward` returns."""

    y: Tensor  #: readout ``[T, B, K]``
    spikes: Tensor  #: spikes ``[T, B, N]``


def _time_constant(name: str, value: float) -> float:
    return check_real(f"EPropRSNN: {name}", value, 0.0, low_open=True)


class EPropRSNN(nn.Module):
    """Recurrent network of LIF and ALIF neurons with a leaky readout (module docstring).

    Args:
        in_features: inputs per step ``I``.
        out_features: readouts ``K``.
        n_lif: LIF neurons (default 100).
        n_alif: ALIF neurons (default 0), after the LIF ones.
        tau: membrane time constant in steps, ``α = exp(−1/tau)`` (default 20).
        tau_adapt: adaptation time constant in steps, ``ρ = exp(−1/tau_adapt)`` (200).
        beta: threshold raise per unit of adaptation, ``>= 0`` (default 0.07).
        v_threshold: ``v_th > 0`` (default 1).
        tau_out: readout time constant in steps, ``κ = exp(−1/tau_out)`` (default 20).
        gamma_pd: the pseudo-derivative's height ``γ_pd > 0`` (default 0.3, the paper's).
        refractory: steps after a spike in which a neuron cannot spike (default 0).
        decay_input: scale the input currents by ``ζ = 1 − α`` (default False: ζ = 1).
        surrogate_function: the spike's surrogate (default ``Triangle(gamma=v_threshold)``:
            Bellec's ψ); its derivative is scaled by ``gamma_pd``.

    Weights: ``input`` (``Linear(I, N)``, no bias), ``recurrent`` (``Linear(N, N)``, no
    bias, its diagonal masked at every call: no self-connections, the diagonal gets no
    gradient) and ``output`` (``Linear(N, K)`` with bias ``b``), drawn from
    ``N(0, 1/fan_in)``, the bias 0. The defaults are spikeflow's
    choice in the ranges the paper uses. The spikes of each sequence pass through
    ``neurons`` (a :class:`~spikeflow.neurons.SpikeTap`), so that
    :class:`~spikeflow.training.SpikeMonitor` reads their firing rate and
    :mod:`spikeflow.energy` counts the operations of ``input`` and ``recurrent``; so do
    the spikes of each :meth:`step`.

    Raises:
        ConfigurationError: a count, time constant or scale out of range, or a surrogate
            that is not a spiking spikeflow surrogate.
    """

    #: ``forward`` runs a whole sequence from the initial state (:meth:`step` carries
    #: state explicitly): streaming it, or training it online, one call per step, would
    #: restart it at every call (:func:`spikeflow.functional.check_streamable` refuses).
    streamable = False

    def __init__(
        self,
        in_features: int,
        out_features: int,
        n_lif: int = 100,
        n_alif: int = 0,
        *,
        tau: float = 20.0,
        tau_adapt: float = 200.0,
        beta: float = 0.07,
        v_threshold: float = 1.0,
        tau_out: float = 20.0,
        gamma_pd: float = 0.3,
        refractory: int = 0,
        decay_input: bool = False,
        surrogate_function: Surrogate | None = None,
    ) -> None:
        super().__init__()
        self.in_features = check_int("EPropRSNN: in_features", in_features, 1)
        self.out_features = check_int("EPropRSNN: out_features", out_features, 1)
        self.n_lif = check_int("EPropRSNN: n_lif", n_lif, 0)
        self.n_alif = check_int("EPropRSNN: n_alif", n_alif, 0)
        if self.n_lif + self.n_alif == 0:
            raise ConfigurationError("EPropRSNN: n_lif + n_alif must be >= 1, got 0 neurons")
        self.tau = _time_constant("tau", tau)
        self.tau_adapt = _time_constant("tau_adapt", tau_adapt)
        self.tau_out = _time_constant("tau_out", tau_out)
        self.beta = check_real("EPropRSNN: beta", beta, 0.0)
        self.v_threshold = check_real("EPropRSNN: v_threshold", v_threshold, 0.0, low_open=True)
        self.gamma_pd = check_real("EPropRSNN: gamma_pd", gamma_pd, 0.0, low_open=True)
        self.refractory = check_int("EPropRSNN: refractory", refractory, 0)
        self.decay_input = check_flag("EPropRSNN", "decay_input", decay_input)
        if surrogate_function is None:
            surrogate_function = Triangle(gamma=self.v_threshold)
        if not isinstance(surrogate_function, Surrogate) or not surrogate_function.spiking:
            raise ConfigurationError(
                "EPropRSNN: surrogate_function must be a spikeflow Surrogate with "
                f"spiking=True, got {surrogate_function!r}"
            )
        self.surrogate_function = surrogate_function
        self.alpha = math.exp(-1.0 / self.tau)
        self.rho = math.exp(-1.0 / self.tau_adapt)
        self.kappa = math.exp(-1.0 / self.tau_out)
        self.zeta = 1.0 - self.alpha if self.decay_input else 1.0
        n = self.hidden
        self.input = nn.Linear(self.in_features, n, bias=False)
        self.recurrent = nn.Linear(n, n, bias=False)
        self.output = nn.Linear(n, self.out_features)
        with torch.no_grad():
            self.input.weight.normal_(0.0, 1.0 / math.sqrt(self.in_features))
            self.recurrent.weight.normal_(0.0, 1.0 / math.sqrt(n))
            self.output.weight.normal_(0.0, 1.0 / math.sqrt(n))
            self.output.bias.zero_()
        self.register_buffer("off_diagonal", 1.0 - torch.eye(n), persistent=False)
        #: The spikes ``z`` ``[T, B, N]`` of every sequence pass through it (forward, and
        #: :meth:`spikeflow.learn.EProp.run`): what spikeflow's monitors, rasters and
        #: operation counter watch (the neurons are equations here, not neuron layers).
        self.neurons = SpikeTap(n)
        #: While :meth:`step` passes its spikes through ``neurons``: the step's input and
        #: the spikes fed back (None at a sequence's first step), for the hooks there.
        self._stepping: tuple[Tensor, Tensor | None] | None = None

    @property
    def hidden(self) -> int:
        """The number of recurrent neurons ``N = n_lif + n_alif``."""
        return self.n_lif + self.n_alif

    def recurrent_weight(self) -> Tensor:
        """``W^rec`` as applied: the diagonal zeroed (no self-connections)."""
        return self.recurrent.weight * self.off_diagonal.to(self.recurrent.weight.dtype)

    def initial_state(self, batch: int) -> RSNNState:
        """The state at ``t = 0`` (zeros) for ``batch`` samples, in the weights' dtype."""
        weight = self.input.weight
        zeros = weight.new_zeros((batch, self.hidden))
        return RSNNState(
            v=zeros,
            z=zeros,
            a=weight.new_zeros((batch, self.n_alif)),
            refractory=torch.zeros((batch, self.hidden), dtype=torch.int32, device=weight.device),
            y=weight.new_zeros((batch, self.out_features)),
        )

    def check_step_input(self, x_t: Tensor, owner: str = "EPropRSNN") -> None:
        """Raise unless ``x_t`` is one step ``[B, in_features]`` in the weights' dtype."""
        weight = self.input.weight
        if not isinstance(x_t, Tensor) or x_t.dim() != 2 or x_t.shape[1] != self.in_features:
            shape = tuple(x_t.shape) if isinstance(x_t, Tensor) else type(x_t).__name__
            raise ShapeError(
                f"{owner}: one input step must have shape [B, in_features] = "
                f"[B, {self.in_features}], got {shape}"
            )
        if x_t.dtype != weight.dtype:
            raise DTypeError(
                f"{owner}: the input has dtype {x_t.dtype}, the network's weights "
                f"{weight.dtype} (convert one of them)"
            )

    def _step(
        self,
        x_t: Tensor,
        state: RSNNState,
        w_rec: Tensor,
        detach_recurrent: bool,
        detach_reset: bool,
        readout: bool = True,
    ) -> RSNNStep:
        # readout=False: y is not computed (forward reads out all steps at once after the
        # loop; computing it here too ran W^out twice) and stays the state's.
        z_prev = state.z
        fed_back = z_prev.detach() if detach_recurrent else z_prev
        current = F.linear(x_t, self.input.weight) + F.linear(fed_back, w_rec)
        if self.decay_input:
            current = current * self.zeta
        reset = z_prev.detach() if detach_reset else z_prev
        v = self.alpha * state.v + current - self.v_threshold * reset
        a = self.rho * state.a + z_prev[:, self.n_lif :]
        margin = v - self.v_threshold
        if self.n_alif:
            raise_ = torch.cat([margin.new_zeros((len(v), self.n_lif)), self.beta * a], dim=1)
            margin = margin - raise_
        s = self.surrogate_function(margin, strict=True)
        z = s.detach() + self.gamma_pd * (s - s.detach())  # the value s, slope γ_pd·ψ
        refractory, ready = state.refractory, None
        if self.refractory:
            ready = (refractory == 0).to(v.dtype)
            z = z * ready
            refractory = torch.where(
                z.detach() > 0,
                torch.full_like(refractory, self.refractory),
                (refractory - 1).clamp(min=0),
            )
        y = self.kappa * state.y + self.output(z) if readout else state.y
        return RSNNStep(y, z, RSNNState(v, z, a, refractory, y), margin, ready)

    def step(
        self,
        x_t: Tensor,
        state: RSNNState | None = None,
        *,
        detach_recurrent: bool = False,
        detach_reset: bool = False,
    ) -> RSNNStep:
        """One step from ``state`` (``None``: the initial state, a new sequence).

        The step's spikes ``[1, B, N]`` pass through ``neurons`` (the
        :class:`~spikeflow.neurons.SpikeTap`), as a whole sequence's do in
        :meth:`forward`, so that :class:`~spikeflow.training.SpikeMonitor` and
        :mod:`spikeflow.energy` see them; a step from a given ``state`` continues the
        sequence (a monitor counts its samples once per sequence).

        Args:
            x_t: the input of this step, ``[B, in_features]``.
            state: the state after the previous step.
            detach_recurrent: cut the gradient of the spikes fed back through
                ``W^rec`` (their value is kept).
            detach_reset: cut the gradient of the reset ``− v_th z[t-1]``.

        Raises:
            ShapeError, DTypeError: ``x_t`` is not ``[B, in_features]`` in the weights'
                dtype.
        """
        self.check_step_input(x_t)
        continues = state is not None
        if state is None:
            state = self.initial_state(x_t.shape[0])
        result = self._step(x_t, state, self.recurrent_weight(), detach_recurrent, detach_reset)
        self._tap_step(x_t, state.z if continues else None, result.z)
        return result

    def _tap_step(self, x_t: Tensor, fed: Tensor | None, z: Tensor) -> None:
        """Pass one step's spikes ``z`` ``[B, N]`` through the tap (as ``[1, B, N]``) for
        its hooks, with what the operation counter reads of the step: its input ``x_t``
        and the spikes fed back ``fed`` (``None`` at a sequence's first step, which
        :meth:`SpikeTap.pass_step <spikeflow.neurons.SpikeTap.pass_step>` is told)."""
        self._stepping = (x_t, fed)
        try:
            self.neurons.pass_step(z.unsqueeze(0), fed is not None)
        finally:
            self._stepping = None

    def forward(
        self, x: Tensor, *, detach_recurrent: bool = False, detach_reset: bool = False
    ) -> RSNNOutput:
        """The readout and spikes for a whole sequence ``x`` ``[T, B, in_features]``,
        from the initial state (flags: as :meth:`step`; both False is plain BPTT)."""
        if not isinstance(x, Tensor) or x.dim() != 3 or x.shape[0] == 0:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ShapeError(
                f"EPropRSNN: the input must be a sequence [T, B, in_features] with T >= 1, "
                f"got {shape}"
            )
        self.check_step_input(x[0])
        state = self.initial_state(x.shape[1])
        w_rec = self.recurrent_weight()
        spikes = []
        for x_t in x.unbind(0):
            state = self._step(x_t, state, w_rec, detach_recurrent, detach_reset, False).state
            spikes.append(state.z)
        z = self.neurons(torch.stack(spikes))  # (the same tensor: seen by monitors)
        # y = κ y + W^out z + b for all steps: one GEMM, then spikeflow's leaky integrator.
        readout = LINode(tau=1.0 / (1.0 - self.kappa), decay_input=False)
        return RSNNOutput(readout(self.output(z)), z)

    def pseudo_derivative(self, margin: Tensor, ready: Tensor | None) -> Tensor:
        """``ψ = γ_pd · surrogate'(v − A)``, 0 where refractory (no gradient)."""
        sg = self.surrogate_function
        psi = self.gamma_pd * type(sg).derivative(margin.detach(), **sg.params)
        return psi if ready is None else psi * ready

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"n_lif={self.n_lif}, n_alif={self.n_alif}, tau={self.tau:g}, "
            f"tau_adapt={self.tau_adapt:g}, beta={self.beta:g}, "
            f"v_threshold={self.v_threshold:g}, tau_out={self.tau_out:g}, "
            f"gamma_pd={self.gamma_pd:g}, refractory={self.refractory}, "
            f"decay_input={self.decay_input}"
        )


# -- losses -----------------------------------------------------------------------------


def check_eprop_loss(owner: str, loss: str) -> str:
    """``loss`` if it is one of :data:`EPROP_LOSSES`, else a ConfigurationError."""
    if loss not in EPROP_LOSSES:
        raise ConfigurationError(
            f"{owner}: loss must be one of {EPROP_LOSSES} (cross-entropy or squared error "
            f"at every step), got {loss!r}"
        )
    return loss


def step_targets(owner: str, target: Tensor, batch: int, classes: int, like: Tensor) -> Tensor:
    """One step's target as ``[B, K]`` values in ``like``'s dtype: integer labels ``[B]``
    become one-hot rows, float targets must be ``[B, K]``."""
    if not isinstance(target, Tensor):
        raise DTypeError(f"{owner}: the target must be a tensor, got {type(target).__name__}")
    if not target.is_floating_point():
        if target.dtype == torch.bool:
            raise DTypeError(f"{owner}: the target must be integer labels or floats, got bool")
        check_labels(f"{owner}: target", target, batch, classes)
        return F.one_hot(target.long(), classes).to(like.dtype)
    if tuple(target.shape) != (batch, classes):
        raise ShapeError(
            f"{owner}: a float target must have shape [B, K] = [{batch}, {classes}], "
            f"got {tuple(target.shape)}"
        )
    return target.to(like.dtype)


def step_loss(y_t: Tensor, target_t: Tensor, loss: str) -> Tensor:
    """Per-sample loss of one step, ``[B]``: ``−Σ_k π*_k log softmax(y)_k`` (``ce``) or
    ``½ Σ_k (y_k − y*_k)²`` (``mse``); ``target_t`` ``[B, K]`` (:func:`step_targets`)."""
    if loss == "ce":
        return -(target_t * torch.log_softmax(y_t, dim=-1)).sum(-1)
    return 0.5 * ((y_t - target_t) ** 2).sum(-1)


def step_error(y_t: Tensor, target_t: Tensor, loss: str) -> Tensor:
    """``∂ℓ/∂y`` of :func:`step_loss`, ``[B, K]``: ``softmax(y)·Σπ* − π*`` or ``y − y*``."""
    if loss == "ce":
        return torch.softmax(y_t, dim=-1) * target_t.sum(-1, keepdim=True) - target_t
    return y_t - target_t


def _sequence_targets(target: Tensor, steps: int, batch: int, classes: int, like: Tensor):
    owner = "eprop_loss"
    per_step = (target.dim() == 2 and not target.is_floating_point()) or target.dim() == 3
    if per_step:
        if target.shape[0] != steps:
            raise ShapeError(
                f"{owner}: a per-step target must have T = {steps} steps first, got "
                f"{tuple(target.shape)}"
            )
        return torch.stack([step_targets(owner, t, batch, classes, like) for t in target])
    return step_targets(owner, target, batch, classes, like).expand(steps, batch, classes)


def step_weights(owner: str, weight: Tensor | float | None, steps: int, batch: int, like: Tensor):
    """Per-step, per-sample loss weights ``[T, B]`` from ``None`` (1), a number, ``[T]``
    or ``[T, B]``."""
    if weight is None:
        return like.new_ones((steps, batch))
    if not isinstance(weight, Tensor):
        return like.new_full((steps, batch), check_real(f"{owner}: weight", weight))
    if weight.dim() == 1 and weight.shape[0] == steps:
        weight = weight.unsqueeze(1)
    if weight.dim() != 2 or weight.shape[0] != steps or weight.shape[1] not in (1, batch):
        raise ShapeError(
            f"{owner}: weight must be a number, [T] = [{steps}] or [T, B] = "
            f"[{steps}, {batch}], got {tuple(weight.shape)}"
        )
    return weight.to(like.dtype).expand(steps, batch)


def eprop_loss(
    y: Tensor, target: Tensor, loss: str = "ce", weight: Tensor | float | None = None
) -> Tensor:
    """The loss e-prop descends: ``E = (1/B) Σ_t Σ_b w[t,b] ℓ(y[t,b], target[t,b])``.

    ``ℓ`` is the cross-entropy of the softmax at each step (``ce``, Bellec's
    classification loss) or half the squared error (``mse``, their regression loss),
    :func:`step_loss`. ``y`` is the readout ``[T, B, K]``.

    Args:
        y: the readout of every step.
        target: integer labels ``[B]`` (the same at every step) or ``[T, B]``, or float
            targets ``[B, K]`` or ``[T, B, K]`` (probabilities for ``ce``).
        loss: ``"ce"`` or ``"mse"``.
        weight: the steps' weights: ``None`` (1), a number, ``[T]`` or ``[T, B]``
            (e.g. 1 on the steps of a decision period, 0 elsewhere).

    Raises:
        ConfigurationError: an unknown loss or labels out of range; ShapeError: shapes
            that do not fit ``y``.
    """
    check_eprop_loss("eprop_loss", loss)
    if not isinstance(y, Tensor) or y.dim() != 3:
        shape = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
        raise ShapeError(f"eprop_loss: y must be the readout [T, B, K], got {shape}")
    steps, batch, classes = y.shape
    targets = _sequence_targets(target, steps, batch, classes, y)
    weights = step_weights("eprop_loss", weight, steps, batch, y)
    return (weights * step_loss(y, targets, loss)).sum() / batch


def rate_regularization(spikes: Tensor, target_rate: float, strength: float) -> Tensor:
    """Bellec's firing-rate regularisation ``E_reg = (c/2) Σ_j (f_j − f_target)²``, with
    ``f_j`` neuron j's spikes per step averaged over the ``T`` steps and ``B`` samples of
    ``spikes`` ``[T, B, N]`` and ``c = strength``."""
    target_rate = check_real("rate_regularization: target_rate", target_rate, 0.0)
    strength = check_real("rate_regularization: strength", strength, 0.0)
    if not isinstance(spikes, Tensor) or spikes.dim() != 3:
        shape = tuple(spikes.shape) if isinstance(spikes, Tensor) else type(spikes).__name__
        raise ShapeError(f"rate_regularization: spikes must be [T, B, N], got {shape}")
    rate = spikes.mean(dim=(0, 1))
    return 0.5 * strength * ((rate - target_rate) ** 2).sum()
