"""DECOLLE: deep continuous local learning (Kaiser, Mostafa & Neftci, Frontiers in
Neuroscience 2020, "Synaptic plasticity dynamics for deep continuous local learning").

Every spiking layer ``l`` has its own fixed random linear readout ``y_l = G_l s_l`` to
the targets and its own loss at every step; the gradient of that loss reaches only
layer ``l``'s weights: each layer's input is detached (no gradient crosses layers), and
the neuron's state is detached from one step to the next (no gradient through time
beyond the traces, which do not depend on the weights). Layer ``l``'s neurons, with
presynaptic traces ``P``, ``Q`` of its input spikes ``x`` and a refractory trace ``R``
(every state 0 at ``t = 0``)::

    Q[t] = β Q[t-1] + g_q x[t]
    P[t] = α P[t-1] + g_p Q[t-1]
    R[t] = α_rp R[t-1] + w_rp S[t-1]
    U[t] = W P[t] + b − R[t]                    (W: a Linear or a Conv2d)
    S[t] = H(U[t])                              (max-pooled first, if ``pool > 1``)

with ``g_q = 1 − β`` and ``g_p = 1 − α`` (the paper's normalised traces, the default)
or ``g_q = 1/(1 − β)`` and ``g_p = 1/(1 − α)`` (``normalize=False``: the gains of the
reference code, nmi-lab/decolle-public). ``S``'s derivative is a surrogate (default
:class:`~spikeflow.surrogate.Rect`, the unit box on ``|U| < 1/2`` of the reference code's
smooth step). Since ``P`` depends on the input alone and ``R`` on detached spikes, the
gradient of the loss at step ``t`` is ``∂ℓ_l[t]/∂W = (∂ℓ_l[t]/∂S[t] σ'(U[t])) ⊗ P[t]``:
``P`` is the synapse's eligibility trace and the rule is local in space and time.

The layers and the network are in :mod:`spikeflow.learn.decolle_layers` (re-exported
here); this module holds the rule (:class:`DECOLLE`), its losses and :func:`predict`.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from spikeflow._checks import check_int, check_real
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.learn.decolle_layers import DECOLLELayer, DECOLLENetwork, DECOLLEState
from spikeflow.learn.eprop_network import step_targets

__all__ = [
    "DECOLLE",
    "DECOLLE_LOSSES",
    "DECOLLE_UPDATES",
    "DECOLLELayer",
    "DECOLLENetwork",
    "DECOLLEResult",
    "DECOLLEState",
    "decolle_loss",
    "decolle_u_regularisation",
    "predict",
]

#: The local losses: the paper's smooth L1 (Huber, ``δ = 1``) and the squared error.
DECOLLE_LOSSES = ("smooth_l1", "mse")
#: When the optimizer steps: after every time step (the paper's) or once a sequence.
DECOLLE_UPDATES = ("step", "sequence")


def _check_loss(owner: str, loss: str) -> str:
    if loss not in DECOLLE_LOSSES:
        raise ConfigurationError(f"{owner}: loss must be one of {DECOLLE_LOSSES}, got {loss!r}")
    return loss


def decolle_loss(y_t: Tensor, target_t: Tensor, loss: str = "smooth_l1") -> Tensor:
    """The local losses of one step, summed over the layers: ``Σ_l mean_{b,k} ℓ(y_l − y*)``.

    Args:
        y_t: the readouts of one step ``[L, B, K]`` (or one layer's ``[B, K]``).
        target_t: labels ``[B]`` (one-hot targets) or values ``[B, K]``.
        loss: ``"smooth_l1"`` (the paper's: ``½ d²`` for ``|d| < 1``, ``|d| − ½``
            beyond) or ``"mse"`` (``d²``), averaged over the batch and the ``K`` outputs
            (PyTorch's ``SmoothL1Loss()`` and ``MSELoss()``, as the reference code).

    Raises:
        ConfigurationError: an unknown loss or labels out of range; ShapeError: shapes
            that do not fit.
    """
    _check_loss("decolle_loss", loss)
    if not isinstance(y_t, Tensor) or y_t.dim() not in (2, 3):
        shape = tuple(y_t.shape) if isinstance(y_t, Tensor) else type(y_t).__name__
        raise ShapeError(f"decolle_loss: y_t must be [L, B, K] or [B, K], got {shape}")
    if y_t.dim() == 2:
        y_t = y_t.unsqueeze(0)
    _, batch, classes = y_t.shape
    target = step_targets("decolle_loss", target_t, batch, classes, y_t).expand_as(y_t)
    if loss == "smooth_l1":
        per = F.smooth_l1_loss(y_t, target, reduction="none")
    else:
        per = (y_t - target) ** 2
    return per.mean(dim=(1, 2)).sum()


def _number(value: object) -> object:
    """``value``, or the Python number a one-element 0-d tensor holds (checked by the
    caller, as any other value)."""
    if isinstance(value, Tensor) and value.dim() == 0:
        return value.item()
    return value


def _values(owner: str, name: str, value: object, what: str) -> list[object]:
    """The items of ``value``, a sequence (a list, a tuple, a 1-d tensor), or a
    ConfigurationError naming ``owner``'s argument ``name`` (None, a string: their
    iteration raised a bare TypeError or gave characters)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ConfigurationError(f"{owner}: {name} must be a sequence of {what}, got {value!r}")
    return list(value)


def decolle_u_regularisation(u_t: Sequence[Tensor], strength: Sequence[float]) -> Tensor:
    """The reference code's regularisation of the membranes of one step (nmi-lab/
    decolle-public, ``DECOLLELoss`` with ``reg_l``), summed over the layers::

        Σ_l λ_l · ( mean(relu(U_l + 0.01)) + 3e-3 · relu(mean(0.1 − σ(U_l))) )

    The first term penalises membranes above −0.01 (activity), the second a layer whose
    mean ``σ(U)`` falls below 0.1 (a silent layer); the means run over the batch and
    the neurons. A layer with ``λ_l = 0`` adds nothing.

    Args:
        u_t: each layer's (pooled) membrane ``U`` of one step, ``[B, ...]``.
        strength: ``λ_l >= 0``, one per layer.

    Raises:
        ConfigurationError: ``u_t`` not a sequence of tensors or empty, ``strength`` not
            a sequence (a number, None, a string), not one strength per layer, or a
            negative one.
    """
    owner = "decolle_u_regularisation"
    u_t = _values(owner, "u_t", u_t, "membranes (one tensor per layer)")
    strange = [type(u).__name__ for u in u_t if not isinstance(u, Tensor)]
    if strange:
        raise ConfigurationError(f"{owner}: u_t must hold tensors, got {strange}")
    if isinstance(strength, numbers.Real) or (isinstance(strength, Tensor) and strength.dim() == 0):
        raise ConfigurationError(
            f"decolle_u_regularisation: strength must hold one value per layer, got {strength!r}"
        )
    strength = [_number(lam) for lam in _values(owner, "strength", strength, "strengths")]
    if not u_t:
        raise ConfigurationError(
            "decolle_u_regularisation: u_t holds no layer's membrane (it needs at least one)"
        )
    if len(strength) != len(u_t):
        raise ConfigurationError(
            f"decolle_u_regularisation: {len(strength)} strengths for {len(u_t)} layers "
            "(one per layer)"
        )
    total = u_t[0].new_zeros(())
    for index, (u, lam) in enumerate(zip(u_t, strength)):
        lam = check_real(f"decolle_u_regularisation: strength[{index}]", lam, 0.0)
        if lam:
            flat = u.flatten(1)
            activity = F.relu(flat + 0.01).mean()
            silence = F.relu((0.1 - torch.sigmoid(flat)).mean())
            total = total + lam * (activity + 3e-3 * silence)
    return total


class DECOLLEResult(NamedTuple):
    """What :meth:`DECOLLE.run` returns."""

    y: Tensor  #: the readouts of the steps after the burn-in ``[T − burnin, L, B, K]`` (detached)
    #: the sum of the local losses (and regularisation) over those steps (detached scalar)
    loss: Tensor


class DECOLLE:
    """The DECOLLE rule for a :class:`DECOLLENetwork`: at every step after the burn-in,
    the local losses of all layers (:func:`decolle_loss`) are back-propagated through
    that step's graph only, in which each layer's input and state are detached, so the
    gradient added to layer ``l``'s ``.grad`` is that of its own readout's loss through
    its own synapse (module docstring).

    Args:
        network: the network to train (held, not owned).
        loss: ``"smooth_l1"`` (default, the paper's) or ``"mse"``.
        burnin: steps run first without learning (the state settles; default 0; the
            paper's N-MNIST runs use about 50 of 300 ms).
        update: with an optimizer, ``"step"`` (default) steps it after every time step,
            as the paper and the reference code do: DECOLLE's point is online learning
            with no memory of past steps, and each step's gradient is complete in
            itself; ``"sequence"`` accumulates the gradients of all steps and steps once
            at the end of :meth:`run` (a batch-style schedule).
        reg_u: the reference code's regularisation of the membranes
            (:func:`decolle_u_regularisation`), added to every learning step's loss:
            one strength ``λ >= 0`` for all layers or one per layer (default 0: off).
            Each layer's term reaches its own weights only, like its readout loss.

    Raises:
        ConfigurationError: a network that is not a DECOLLENetwork, an unknown loss or
            update, a negative burn-in, a ``reg_u`` neither a number nor a sequence,
            a negative strength or not one per layer.
    """

    def __init__(
        self,
        network: DECOLLENetwork,
        *,
        loss: str = "smooth_l1",
        burnin: int = 0,
        update: str = "step",
        reg_u: float | Sequence[float] = 0.0,
    ) -> None:
        if not isinstance(network, DECOLLENetwork):
            raise ConfigurationError(
                f"DECOLLE: network must be a DECOLLENetwork, got {type(network).__name__}"
            )
        self.network = network
        self.loss = _check_loss("DECOLLE", loss)
        self.burnin = check_int("DECOLLE: burnin", burnin, 0)
        if update not in DECOLLE_UPDATES:
            raise ConfigurationError(
                f"DECOLLE: update must be one of {DECOLLE_UPDATES}, got {update!r}"
            )
        self.update = update
        layers = len(network.layers)
        one = isinstance(reg_u, numbers.Real) or (isinstance(reg_u, Tensor) and reg_u.dim() == 0)
        many = [reg_u] * layers if one else _values("DECOLLE", "reg_u", reg_u, "strengths")
        strengths = [_number(lam) for lam in many]
        if len(strengths) != layers:
            raise ConfigurationError(
                f"DECOLLE: reg_u must be one strength or one per layer ({layers}), got "
                f"{len(strengths)}: {list(strengths)}"
            )
        self.reg_u = tuple(
            check_real(f"DECOLLE: reg_u[{i}]", lam, 0.0) for i, lam in enumerate(strengths)
        )

    def run(
        self,
        x: Tensor,
        target: Tensor,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        after_step: Callable[[int, Tensor], None] | None = None,
    ) -> DECOLLEResult:
        """Run the sequence ``x`` ``[T, B, *input_shape]`` and learn from ``target``.

        Without an optimizer the gradients of all learning steps are added to ``.grad``
        (as ``loss.backward()`` would, ``update`` unused). With one, ``.grad`` is zeroed
        and the optimizer stepped after every step (``update="step"``) or once at the
        end (``"sequence"``).

        Args:
            x: the input sequence, time first.
            target: labels ``[B]`` or values ``[B, K]`` (the same at every step), or
                per step ``[T, B]`` / ``[T, B, K]``.
            optimizer: applies the updates (optional).
            after_step: called as ``after_step(t, loss)`` after step ``t``'s backward
                (and the optimizer's step, if any), ``loss`` that step's detached loss:
                a caller without an optimizer updates the weights there (and zeroes
                ``.grad``) for per-step updates of its own.

        Raises:
            ShapeError, DTypeError: ``x`` or ``target`` does not fit the network;
            ConfigurationError: ``T <= burnin``, labels out of range.
        """
        net = self.network
        if not isinstance(x, Tensor) or x.dim() != len(net.input_shape) + 2:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ShapeError(f"DECOLLE.run: x must be [T, B, *input_shape], got {shape}")
        steps, batch = x.shape[:2]
        if steps <= self.burnin:
            raise ConfigurationError(
                f"DECOLLE.run: the sequence has T = {steps} steps, not more than the "
                f"burn-in ({self.burnin}): nothing to learn from"
            )
        targets = self._targets(target, steps, batch)
        states = None
        with torch.no_grad():
            for t in range(self.burnin):
                _, states = net.step(x[t], states)
        if optimizer is not None:
            optimizer.zero_grad()
        ys, total = [], x.new_zeros(())
        regularise = any(self.reg_u)
        for t in range(self.burnin, steps):
            net.check_step_input(x[t])
            y, states, us = net._step(x[t], states, True, detach_state=True)
            loss = decolle_loss(y, targets[t], self.loss)
            if regularise:
                loss = loss + decolle_u_regularisation(us, self.reg_u)
            loss.backward()
            ys.append(y.detach())
            total = total + loss.detach()
            if optimizer is not None and self.update == "step":
                optimizer.step()
                if t + 1 < steps:
                    optimizer.zero_grad()
            if after_step is not None:
                after_step(t, loss.detach())
        if optimizer is not None and self.update == "sequence":
            optimizer.step()
        return DECOLLEResult(torch.stack(ys), total)

    def _targets(self, target: Tensor, steps: int, batch: int) -> list[Tensor]:
        if not isinstance(target, Tensor):
            raise ShapeError(f"DECOLLE.run: target must be a Tensor, got {type(target).__name__}")
        per_step = (target.dim() == 2 and not target.is_floating_point()) or target.dim() == 3
        if per_step and target.shape[0] != steps:
            raise ShapeError(
                f"DECOLLE.run: a per-step target must have T = {steps} steps first, got "
                f"{tuple(target.shape)}"
            )
        return list(target) if per_step else [target] * steps

    def __repr__(self) -> str:
        reg = f", reg_u={self.reg_u}" if any(self.reg_u) else ""
        return f"DECOLLE(loss={self.loss!r}, burnin={self.burnin}, update={self.update!r}{reg})"


def predict(y: Tensor) -> Tensor:
    """Class predictions ``[B]`` from readouts ``[T, L, B, K]``: the last layer's
    readout summed over the steps, argmax (the reference code's accuracy)."""
    if not isinstance(y, Tensor) or y.dim() != 4:
        shape = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
        raise ShapeError(f"decolle predict: y must be [T, L, B, K], got {shape}")
    return y[:, -1].sum(0).argmax(-1)
