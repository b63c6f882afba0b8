"""E-prop: eligibility propagation (Bellec et al., Nature Communications 2020), the
online learning rule for recurrent spiking networks, one step at a time.

The network is :class:`~spikeflow.learn.EPropRSNN` (its equations: that module). Its
weights ``W = (W^in, W^rec)`` see the presynaptic input ``p[t] = (x[t], z[t-1])``. At
each step e-prop updates, with memory independent of ``T``::

    ε_i[t]    = α ε_i[t-1] + ζ p_i[t]                 eligibility vector, v part
                                                      (= dv_j[t]/dW_ji, the same for all j)
    e_ji[t]   = ψ_j[t] (ε_i[t] − β εa_ji[t])           eligibility trace (LIF: εa = 0)
    εa_ji[t+1] = ρ εa_ji[t] + e_ji[t]                  ALIF's adaptation part (= da_j/dW_ji)
    ē_ji[t]   = κ ē_ji[t-1] + e_ji[t]                  filtered by the readout's κ
    δ_k[t]    = (w[t]/B) ∂ℓ/∂y_k[t]                     softmax(y) − π*  or  y − y*
    L_j[t]    = Σ_k B_jk δ_k[t]                         learning signal
    ∂E/∂W_ji += Σ_b L_j[t] ē_ji[t]
    ∂E/∂W^out_kj += Σ_b δ_k[t] z̄_j[t],  z̄ = κ z̄ + z;   ∂E/∂b_k += Σ_b δ_k[t] c[t],  c = κ c + 1

(``εa[t+1] = ρ εa + e`` is the paper's ``ψ ε + (ρ − ψ β) εa``.) ``B`` is ``W^outᵀ``
(symmetric e-prop), a fixed random matrix (random e-prop) or a matrix learnt with
``W^out``'s own update plus a decay of both (adaptive e-prop). The firing-rate
regularisation ``E_reg = (c/2) Σ_j (f_j − f_target)²`` (:func:`rate_regularization`)
adds ``c (f_j − f_target)/(T B) · Σ_t Σ_b e_ji[t]`` at the end of the sequence: ``f``
and the sum of the ``e`` are running sums, so it needs no memory of the steps either.

**What e-prop keeps, exactly.** Symmetric e-prop's gradient *equals* autograd's
gradient of ``E = eprop_loss(y, target, loss, weight) + rate_regularization(...)`` for
the network run as ``net(x, detach_recurrent=True, detach_reset=True)``: the graph in
which a spike ``z_j[t]`` reaches the loss only

* through the readout ``y[t'] (t' >= t)``, filtered by ``κ^(t'−t)``, and the
  regularisation (its direct, "partial" derivative ``∂E/∂z_j[t]``),
* through its own adaptation ``a_j[t+1]`` and hence its own later spikes (kept in ε^a),

and not through the recurrent weights into the other neurons (``W^rec z[t]``, cut) nor
through its own reset ``− v_th z_j[t]`` (cut; the paper drops the reset from the
eligibility too). The membranes keep their leak ``α``. In that graph ``z_j[t]``
depends on ``W_ji`` only through neuron j's own ``v_j`` and ``a_j``, so
``dz_j[t]/dW_ji = e_ji[t]`` (the recursion above); the loss's derivative along the
readout is ``Σ_{t'≥t} κ^(t'−t) Σ_k W^out_kj δ_k[t']``, and swapping the two sums over
time moves the filter from the error onto the eligibility: ``Σ_t L_j[t] ē_ji[t]``. The
readout's own gradient is exact (no approximation). ``tests/test_eprop.py`` checks the
equality in float64 (LIF, ALIF, refractory, both losses, ``decay_input``, T = 1 and
T > 1, batches, several seeds). With T = 1 e-prop is also full BPTT's gradient.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from spikeflow._checks import check_real
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError, StateError
from spikeflow.learn.eprop_network import (
    EPropRSNN,
    RSNNState,
    check_eprop_loss,
    step_error,
    step_loss,
    step_targets,
    step_weights,
)

__all__ = ["FEEDBACKS", "EProp", "EPropResult"]

#: The learning signals' feedback: ``W^outᵀ``, a fixed random ``B``, a learnt ``B``.
FEEDBACKS = ("symmetric", "random", "adaptive")


@dataclass(frozen=True)
class EPropResult:
    """What :meth:`EProp.run` returns.

    Attributes:
        y: the readout of every step ``[T, B, K]`` (detached).
        loss: ``E`` (the task loss of the steps with a target) plus the rate
            regularisation, a detached scalar.
    """

    y: Tensor
    loss: Tensor


@dataclass
class _Traces:
    """What e-prop carries from one step to the next (no dimension of length T)."""

    net: RSNNState
    eps: Tensor  # ε: [B, I + N]
    eps_adapt: Tensor  # εa of the ALIF neurons: [n_alif, B, I + N]
    trace: Tensor  # ē: [N, B, I + N] (neuron-major: Σ_b L ē is one batched product)
    readout_trace: Tensor  # z̄: [B, N]
    bias_trace: float  # c
    loss: Tensor  # the task loss so far (scalar)
    steps: int
    spike_count: Tensor  # Σ_t Σ_b z: [N]
    eligibility_sum: Tensor  # Σ_t Σ_b e: [N, I + N] (rate regularisation only)


def _add_grad(param: nn.Parameter, value: Tensor) -> None:
    if not param.requires_grad:
        return
    if param.grad is None:
        param.grad = value.to(param.dtype).clone()
    else:
        param.grad.add_(value.to(param.grad.dtype))


class EProp(nn.Module):
    """E-prop for an :class:`~spikeflow.learn.EPropRSNN` (module docstring): the
    gradients, computed forward in time, are added to the parameters' ``.grad``, so any
    optimizer applies them (the paper uses Adam).

    Args:
        network: the network to train (held, not a submodule: the rule's parameters
            and state_dict are ``B`` alone, with adaptive or random feedback).
        feedback: ``"symmetric"`` (``B = W^outᵀ``, the gradient of the module
            docstring), ``"random"`` (a fixed ``B``) or ``"adaptive"`` (``B`` learnt:
            ``B.grad`` gets ``W^out.grad``'s increments transposed, and at
            :meth:`finish` both get ``feedback_decay`` times themselves; put
            ``rule.parameters()`` in the optimizer).
        loss: ``"ce"`` (cross-entropy of the softmax at each step) or ``"mse"``
            (``½ Σ (y − y*)²`` at each step); see :func:`~spikeflow.learn.eprop_loss`.
        feedback_weight: ``B`` ``[N, K]`` for random/adaptive feedback (a copy, on the
            network's device and in its dtype; default drawn
            from ``N(0, 1/N)`` with ``generator``).
        feedback_decay: the decay ``c_decay >= 0`` of adaptive feedback (default 0).
        rate_target: the target firing rate in spikes per step (default 0.01).
        rate_strength: ``c >= 0`` of the rate regularisation (default 0: off).
        generator: the random generator drawing ``B``.

    Raises:
        ConfigurationError: an unknown feedback or loss, a ``feedback_weight`` with
            symmetric feedback, or a value out of range.
        ShapeError: a ``feedback_weight`` that is not ``[N, K]``.

    Example::

        net = EPropRSNN(in_features=162, out_features=10, n_lif=100, n_alif=100)
        rule = EProp(net, feedback="random", loss="ce")
        optimizer = torch.optim.Adam([*net.parameters(), *rule.parameters()], lr=1e-3)
        for x, label in loader:                      # x: [T, B, 162]
            optimizer.zero_grad()
            rule.run(x, label)                       # or rule.step(x[t], label) ...; finish()
            optimizer.step()
    """

    def __init__(
        self,
        network: EPropRSNN,
        feedback: str = "symmetric",
        loss: str = "ce",
        *,
        feedback_weight: Tensor | None = None,
        feedback_decay: float = 0.0,
        rate_target: float = 0.01,
        rate_strength: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self._traces: _Traces | None = None
        if not isinstance(network, EPropRSNN):
            raise ConfigurationError(
                f"EProp trains an EPropRSNN (its equations are e-prop's), got "
                f"{type(network).__name__}"
            )
        if feedback not in FEEDBACKS:
            raise ConfigurationError(
                f"EProp: feedback must be one of {FEEDBACKS}, got {feedback!r}"
            )
        # Not a submodule: rule.parameters() is B alone (adaptive feedback), and the rule's
        # state_dict holds B, not the network's weights.
        self.__dict__["network"] = network
        self.feedback = feedback
        self.loss = check_eprop_loss("EProp", loss)
        self.feedback_decay = check_real("EProp: feedback_decay", feedback_decay, 0.0)
        self.rate_target = check_real("EProp: rate_target", rate_target, 0.0)
        self.rate_strength = check_real("EProp: rate_strength", rate_strength, 0.0)
        shape = (network.hidden, network.out_features)
        like = network.output.weight
        if feedback == "symmetric":
            if feedback_weight is not None:
                raise ConfigurationError(
                    "EProp: symmetric feedback uses W^out's transpose; feedback_weight is "
                    "for feedback='random' or 'adaptive'"
                )
            self.feedback_weight = None
            return
        if feedback_weight is None:
            feedback_weight = torch.randn(shape, generator=generator, dtype=like.dtype)
            feedback_weight = feedback_weight.to(like.device) / math.sqrt(network.hidden)
        elif not isinstance(feedback_weight, Tensor) or tuple(feedback_weight.shape) != shape:
            got = (
                tuple(feedback_weight.shape)
                if isinstance(feedback_weight, Tensor)
                else type(feedback_weight).__name__
            )
            raise ShapeError(f"EProp: feedback_weight must be [N, K] = {list(shape)}, got {got}")
        feedback_weight = feedback_weight.detach().clone().to(like.device, like.dtype)
        if feedback == "adaptive":
            self.feedback_weight = nn.Parameter(feedback_weight)
        else:
            self.register_buffer("feedback_weight", feedback_weight)

    # -- state ----------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget the carried state: the next :meth:`step` starts a new sequence (the
        gradients already written stay)."""
        self._traces = None

    def state_tensors(self) -> dict[str, Tensor]:
        """The tensors carried from one step to the next (empty between sequences)."""
        traces = self._traces
        if traces is None:
            return {}
        out = {f"net.{name}": value for name, value in traces.net._asdict().items()}
        for name in ("eps", "eps_adapt", "trace", "readout_trace", "loss", "spike_count"):
            out[name] = getattr(traces, name)
        out["eligibility_sum"] = traces.eligibility_sum
        return out

    def _start(self, x_t: Tensor) -> _Traces:
        net = self.network
        batch, n, p = x_t.shape[0], net.hidden, net.in_features + net.hidden
        zeros = x_t.new_zeros
        regularised = self.rate_strength > 0
        return _Traces(
            net=net.initial_state(batch),
            eps=zeros((batch, p)),
            eps_adapt=zeros((net.n_alif, batch, p)),
            trace=zeros((n, batch, p)),
            readout_trace=zeros((batch, n)),
            bias_trace=0.0,
            loss=zeros(()),
            steps=0,
            spike_count=zeros((n,)),
            eligibility_sum=zeros((n, p) if regularised else (0,)),
        )

    # -- one step -------------------------------------------------------------------------

    @torch.no_grad()
    def step(
        self, x_t: Tensor, target: Tensor | None = None, weight: Tensor | float = 1.0
    ) -> Tensor:
        """Run one step, update the traces and add this step's gradient to ``.grad``.

        The step's spikes ``[1, B, N]`` pass through the network's ``neurons``
        (:class:`~spikeflow.neurons.SpikeTap`), as :meth:`EPropRSNN.step
        <spikeflow.learn.EPropRSNN.step>`'s do, so that a
        :class:`~spikeflow.training.SpikeMonitor` or an operation counter on the network
        sees them (the first step after :meth:`finish` or :meth:`reset` starts a
        sequence).

        Args:
            x_t: the input ``[B, in_features]``.
            target: this step's target: integer labels ``[B]`` or floats ``[B, K]``
                (probabilities for ``ce``); ``None``: no loss at this step.
            weight: the step's loss weight, a number or ``[B]``.

        Returns:
            The readout ``y[t]`` ``[B, K]`` (detached).

        Raises:
            ShapeError, DTypeError: an input or target that does not fit, or a batch
                size other than the sequence's.
        """
        net = self.network
        net.check_step_input(x_t, "EProp")
        with torch.autocast(x_t.device.type, enabled=False):
            traces = self._traces
            if traces is None:
                traces = self._traces = self._start(x_t)
            batch = x_t.shape[0]
            if traces.net.v.shape[0] != batch:
                raise ShapeError(
                    f"EProp: this sequence has batch {traces.net.v.shape[0]}, the step "
                    f"has {batch} (call reset() or finish() between sequences)"
                )
            continues = traces.steps > 0
            previous = traces.net.z
            out = net._step(x_t, traces.net, net.recurrent_weight(), False, False)
            traces.net = out.state
            # The spikes pass through the network's tap, as its own step's do.
            net._tap_step(x_t, previous if continues else None, out.z)
            psi = net.pseudo_derivative(out.margin, out.ready).T  # ψ: [N, B]
            # ε = α ε + ζ p;  e = ψ (ε − β εa);  εa ← ρ εa + e;  ē = κ ē + e
            eps = traces.eps.mul_(net.alpha).add_(torch.cat([x_t, previous], 1), alpha=net.zeta)
            lif, alif = psi[: net.n_lif], psi[net.n_lif :]
            traces.trace[: net.n_lif].mul_(net.kappa).addcmul_(lif.unsqueeze(2), eps)
            e_adapt = None
            if net.n_alif:
                e_adapt = torch.add(eps, traces.eps_adapt, alpha=-net.beta).mul_(alif.unsqueeze(2))
                traces.eps_adapt.mul_(net.rho).add_(e_adapt)
                traces.trace[net.n_lif :].mul_(net.kappa).add_(e_adapt)
            traces.readout_trace.mul_(net.kappa).add_(out.z)
            traces.bias_trace = net.kappa * traces.bias_trace + 1.0
            traces.steps += 1
            traces.spike_count.add_(out.z.sum(0))
            if self.rate_strength > 0:  # Σ_b e
                traces.eligibility_sum[: net.n_lif].add_(lif @ eps)
                if e_adapt is not None:
                    traces.eligibility_sum[net.n_lif :].add_(e_adapt.sum(1))
            if target is not None:
                self._learn(traces, out.y, target, weight)
        return out.y

    def _learn(self, traces: _Traces, y: Tensor, target: Tensor, weight: Tensor | float) -> None:
        net = self.network
        batch = y.shape[0]
        goal = step_targets("EProp", target, batch, net.out_features, y)
        w = step_weights("EProp", _one_step(weight), 1, batch, y)[0]
        traces.loss.add_((w * step_loss(y, goal, self.loss)).sum() / batch)
        delta = step_error(y, goal, self.loss) * (w / batch).unsqueeze(1)  # [B, K]
        feedback = net.output.weight.T if self.feedback_weight is None else self.feedback_weight
        signal = feedback @ delta.T  # L: [N, B]
        self._add_hidden_grads(torch.bmm(signal.unsqueeze(1), traces.trace).squeeze(1))
        out_grad = delta.T @ traces.readout_trace
        _add_grad(net.output.weight, out_grad)
        _add_grad(net.output.bias, delta.sum(0) * traces.bias_trace)
        if self.feedback == "adaptive":
            _add_grad(self.feedback_weight, out_grad.T)

    def _add_hidden_grads(self, grad: Tensor) -> None:
        net = self.network
        _add_grad(net.input.weight, grad[:, : net.in_features])
        _add_grad(net.recurrent.weight, grad[:, net.in_features :] * net.off_diagonal)

    # -- end of a sequence ----------------------------------------------------------------

    @torch.no_grad()
    def finish(self) -> Tensor:
        """End the sequence: add the rate regularisation's gradient (and adaptive
        feedback's decay), forget the state, and return the sequence's loss (task +
        regularisation, detached).

        Raises:
            StateError: no step was run since the last :meth:`finish` or :meth:`reset`.
        """
        traces = self._traces
        if traces is None:
            raise StateError("EProp.finish(): no step was run in this sequence")
        net = self.network
        loss = traces.loss
        if self.rate_strength > 0:
            count = traces.steps * traces.net.v.shape[0]  # T·B
            excess = traces.spike_count / count - self.rate_target  # f − f_target
            loss = loss + 0.5 * self.rate_strength * (excess**2).sum()
            scale = (self.rate_strength / count) * excess
            self._add_hidden_grads(scale.unsqueeze(1) * traces.eligibility_sum)
        if self.feedback == "adaptive" and self.feedback_decay > 0:
            _add_grad(net.output.weight, self.feedback_decay * net.output.weight)
            _add_grad(self.feedback_weight, self.feedback_decay * self.feedback_weight)
        self._traces = None
        return loss

    def run(
        self,
        x: Tensor,
        target: Tensor | None = None,
        weight: Tensor | float | None = None,
    ) -> EPropResult:
        """A whole sequence ``x`` ``[T, B, in_features]``, from a fresh state, step by
        step (:meth:`step` then :meth:`finish`): the gradients are in ``.grad``. Each
        step's spikes pass through the network's ``neurons``
        (:class:`~spikeflow.neurons.SpikeTap`) as :meth:`step` says, so that a
        :class:`~spikeflow.training.SpikeMonitor` on the network sees the sequence's
        spikes (its samples counted once), as in its forward.

        Args:
            x: the inputs.
            target: labels ``[B]`` or ``[T, B]``, floats ``[B, K]`` or ``[T, B, K]``
                (as :func:`~spikeflow.learn.eprop_loss`), or ``None`` (no task loss).
            weight: ``None`` (1), a number, ``[T]`` or ``[T, B]``.

        Raises:
            ShapeError, DTypeError: inputs, targets or weights that do not fit.
        """
        if not isinstance(x, Tensor) or x.dim() != 3 or x.shape[0] == 0:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ShapeError(f"EProp.run: x must be [T, B, in_features] with T >= 1, got {shape}")
        steps, batch = x.shape[:2]
        targets = _per_step_targets(target, steps)
        if target is None:
            weights, counted = None, [False] * steps
        else:
            weights = step_weights("EProp.run", weight, steps, batch, x)
            counted = weights.ne(0).any(1).tolist()  # steps of weight 0 learn nothing: skipped
        self.reset()
        outputs = []
        try:
            for t in range(steps):
                if counted[t]:
                    outputs.append(self.step(x[t], targets[t], weights[t]))
                else:
                    outputs.append(self.step(x[t]))
            loss = self.finish()
        finally:
            self._traces = None
        return EPropResult(torch.stack(outputs), loss)

    def extra_repr(self) -> str:
        return (
            f"feedback={self.feedback!r}, loss={self.loss!r}, "
            f"feedback_decay={self.feedback_decay:g}, rate_target={self.rate_target:g}, "
            f"rate_strength={self.rate_strength:g}"
        )


def _one_step(weight: Tensor | float) -> Tensor | float:
    """A step's weight (number or ``[B]``) as :func:`step_weights` takes it for T = 1."""
    if isinstance(weight, Tensor):
        if weight.dim() == 0:
            return weight.reshape(1, 1)
        if weight.dim() != 1:
            raise ShapeError(
                f"EProp: a step's weight must be a number or [B], got {tuple(weight.shape)}"
            )
        return weight.unsqueeze(0)
    return weight


def _per_step_targets(target: Tensor | None, steps: int) -> list[Tensor | None]:
    """A sequence's target as one target per step (the same for all, or indexed by t)."""
    if target is None:
        return [None] * steps
    if not isinstance(target, Tensor):
        raise DTypeError(f"EProp.run: the target must be a tensor, got {type(target).__name__}")
    per_step = (target.dim() == 2 and not target.is_floating_point()) or target.dim() == 3
    if not per_step:
        return [target] * steps
    if target.shape[0] != steps:
        raise ShapeError(
            f"EProp.run: a per-step target must have T = {steps} steps first, got "
            f"{tuple(target.shape)}"
        )
    return list(target.unbind(0))
