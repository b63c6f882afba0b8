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
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikeflow._checks import check_flag, check_int, check_real
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.learn.eprop_network import step_targets
from spikeflow.neurons.tap import SpikeTap
from spikeflow.surrogate import Rect, Surrogate

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


class DECOLLEState(NamedTuple):
    """One layer's state after step ``t`` (all ``[B, ...]``)."""

    q: Tensor  #: presynaptic trace ``Q``, the input's shape
    p: Tensor  #: presynaptic trace ``P``, the input's shape
    r: Tensor  #: refractory trace ``R``, the membrane's shape (before pooling)
    s: Tensor  #: spikes ``S`` before pooling (detached)


class DECOLLELayer(nn.Module):
    """One DECOLLE layer: traces, synapse, refractory trace, spike (module docstring).

    Args:
        synapse: an ``nn.Linear`` (its input is flattened to ``[B, in_features]``) or an
            ``nn.Conv2d``; its weights are re-drawn (below) unless ``init=False``.
        alpha: ``α`` in ``[0, 1)``, the decay of ``P`` (default 0.9, the reference's).
        beta: ``β`` in ``[0, 1)``, the decay of ``Q`` (default 0.85).
        alpharp: ``α_rp`` in ``[0, 1)``, the decay of ``R`` (default 0.65).
        wrp: ``w_rp >= 0``, the refractory jump per spike (default 1).
        pool: max-pooling size applied to ``U`` before the spike (Conv2d only; 1: none).
        normalize: the paper's trace gains ``1 − β``, ``1 − α`` (default) or the
            reference code's ``1/(1 − β)``, ``1/(1 − α)``.
        surrogate_function: the spike's surrogate (default ``Rect(alpha=1)``).
        init: draw the weights as below (default True): ``W`` and ``b`` uniform in
            ``±1/sqrt(fan_in)`` divided by the traces' gain ``g_q g_p / ((1 − β)(1 − α))``
            (1 when normalised), so that ``U``'s scale does not depend on ``normalize``.

    Raises:
        ConfigurationError: a synapse that is not a Linear or Conv2d, a pool on a
            Linear, a decay outside ``[0, 1)``, a negative ``wrp``, a surrogate that is
            not a spiking spikeflow surrogate.
    """

    def __init__(
        self,
        synapse: nn.Linear | nn.Conv2d,
        *,
        alpha: float = 0.9,
        beta: float = 0.85,
        alpharp: float = 0.65,
        wrp: float = 1.0,
        pool: int = 1,
        normalize: bool = True,
        surrogate_function: Surrogate | None = None,
        init: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(synapse, (nn.Linear, nn.Conv2d)):
            raise ConfigurationError(
                f"DECOLLELayer: synapse must be an nn.Linear or nn.Conv2d, got "
                f"{type(synapse).__name__}"
            )
        self.synapse = synapse
        self.alpha = check_real("DECOLLELayer: alpha", alpha, 0.0, 1.0, high_open=True)
        self.beta = check_real("DECOLLELayer: beta", beta, 0.0, 1.0, high_open=True)
        self.alpharp = check_real("DECOLLELayer: alpharp", alpharp, 0.0, 1.0, high_open=True)
        self.wrp = check_real("DECOLLELayer: wrp", wrp, 0.0)
        self.pool = check_int("DECOLLELayer: pool", pool, 1)
        if self.pool > 1 and isinstance(synapse, nn.Linear):
            raise ConfigurationError("DECOLLELayer: pool > 1 needs an nn.Conv2d synapse")
        self.normalize = check_flag("DECOLLELayer", "normalize", normalize)
        if surrogate_function is None:
            surrogate_function = Rect(alpha=1.0)
        if not isinstance(surrogate_function, Surrogate) or not surrogate_function.spiking:
            raise ConfigurationError(
                "DECOLLELayer: surrogate_function must be a spikeflow Surrogate with "
                f"spiking=True, got {surrogate_function!r}"
            )
        self.surrogate_function = surrogate_function
        if self.normalize:
            self.gain_q, self.gain_p = 1.0 - self.beta, 1.0 - self.alpha
        else:
            self.gain_q, self.gain_p = 1.0 / (1.0 - self.beta), 1.0 / (1.0 - self.alpha)
        if check_flag("DECOLLELayer", "init", init):
            self.reset_parameters()

    def reset_parameters(self) -> None:
        """Draw ``W`` and ``b`` uniform in ``±1/(sqrt(fan_in) · gain)`` (class docstring)."""
        weight = self.synapse.weight
        fan_in = weight[0].numel()
        gain = self.gain_q * self.gain_p / ((1.0 - self.beta) * (1.0 - self.alpha))
        bound = 1.0 / (math.sqrt(fan_in) * gain)
        with torch.no_grad():
            weight.uniform_(-bound, bound)
            if self.synapse.bias is not None:
                self.synapse.bias.uniform_(-bound, bound)

    def check_input(self, x_t: Tensor, owner: str = "DECOLLELayer") -> None:
        """Raise unless ``x_t`` is one step the synapse takes, in the weights' dtype."""
        weight = self.synapse.weight
        if not isinstance(x_t, Tensor):
            raise ShapeError(f"{owner}: an input step must be a Tensor, got {type(x_t).__name__}")
        if isinstance(self.synapse, nn.Conv2d):
            if x_t.dim() != 4 or x_t.shape[1] != self.synapse.in_channels:
                raise ShapeError(
                    f"{owner}: a Conv2d layer's input step must be [B, C, H, W] with C = "
                    f"{self.synapse.in_channels}, got {tuple(x_t.shape)}"
                )
        elif x_t.dim() < 2 or x_t[0].numel() != self.synapse.in_features:
            raise ShapeError(
                f"{owner}: a Linear layer's input step must be [B, ...] with "
                f"{self.synapse.in_features} values per sample, got {tuple(x_t.shape)}"
            )
        if x_t.dtype != weight.dtype:
            raise DTypeError(
                f"{owner}: the input has dtype {x_t.dtype}, the layer's weights "
                f"{weight.dtype} (convert one of them)"
            )

    def initial_state(self, x_t: Tensor) -> DECOLLEState:
        """The state at ``t = 0`` (zeros) for an input step like ``x_t``."""
        x_t = self._shape_input(x_t)
        with torch.no_grad():
            membrane = self.synapse(torch.zeros_like(x_t))
        zeros = torch.zeros_like(membrane)
        return DECOLLEState(torch.zeros_like(x_t), torch.zeros_like(x_t), zeros, zeros)

    def _shape_input(self, x_t: Tensor) -> Tensor:
        return x_t.flatten(1) if isinstance(self.synapse, nn.Linear) else x_t

    def _dynamics(self, x_t: Tensor, state: DECOLLEState | None) -> tuple[Tensor, ...]:
        """One step's traces and membrane, shared by :meth:`step` and the BPTT step:
        ``(Q, P, R, U before pooling, U, S)`` from ``state`` (zeros when None)."""
        self.check_input(x_t)
        if state is None:
            state = self.initial_state(x_t)
        x_t = self._shape_input(x_t)
        q = self.beta * state.q + self.gain_q * x_t
        p = self.alpha * state.p + self.gain_p * state.q
        r = self.alpharp * state.r + self.wrp * state.s
        u_full = self.synapse(p) - r
        u = F.max_pool2d(u_full, self.pool) if self.pool > 1 else u_full
        return q, p, r, u_full, u, self.surrogate_function(u)

    def step(
        self, x_t: Tensor, state: DECOLLEState | None = None
    ) -> tuple[Tensor, Tensor, DECOLLEState]:
        """One step: ``(S, U, state)``, ``S`` and ``U`` pooled (if ``pool > 1``).

        The state returned is detached (the next step's gradient does not reach this
        one); ``x_t`` is used as given: :class:`DECOLLENetwork` detaches it.

        Raises:
            ShapeError, DTypeError: ``x_t`` does not fit the synapse or its dtype.
        """
        q, p, r, u_full, u, s = self._dynamics(x_t, state)
        with torch.no_grad():
            s_full = (u_full >= 0).to(u_full.dtype)
        new = DECOLLEState(q.detach(), p.detach(), r.detach(), s_full)
        return s, u, new

    def extra_repr(self) -> str:
        return (
            f"alpha={self.alpha}, beta={self.beta}, alpharp={self.alpharp}, wrp={self.wrp}, "
            f"pool={self.pool}, normalize={self.normalize}"
        )


class DECOLLENetwork(nn.Module):
    """DECOLLE layers in sequence, each with a fixed random readout to ``K`` targets.

    Layer ``l``'s pooled spikes ``s_l`` ``[B, ...]`` (after ``dropout``, if any) are
    flattened and read out by ``readouts[l]`` (``nn.Linear(n_l, K)``), drawn uniform in
    ``±readout_scale/sqrt(n_l)`` (weights and bias: the reference code's ``lc_ampl``,
    default 0.5) and frozen (``requires_grad=False``) unless ``train_readouts``.

    Args:
        layers: the :class:`DECOLLELayer` s, first to last.
        input_shape: one sample's input step, without the batch (``(C, H, W)`` for a
            Conv2d first layer, ``(n,)`` or any shape for a Linear one).
        out_features: ``K``, the readouts' size (classes).
        readout_scale: ``lc_ampl > 0`` (default 0.5).
        train_readouts: let the readouts learn (default False: the paper's fixed ones).
        dropout: the probability of zeroing a spike on its way to the readout during
            training (default 0; the paper uses 0.5), in ``[0, 1)``.

    Raises:
        ConfigurationError: no layers, a layer that is not a DECOLLELayer, a scale or
            probability out of range; ShapeError: ``input_shape`` does not fit the layers.
    """

    #: ``forward`` runs every call from the resting state (the states are local to
    #: it): streaming it step by step (``--online``, ``--tbptt``, ``streaming``) would
    #: restart the network at every chunk, so it says it cannot stream.
    streamable = False

    def __init__(
        self,
        layers: Sequence[DECOLLELayer],
        input_shape: Sequence[int],
        out_features: int,
        *,
        readout_scale: float = 0.5,
        train_readouts: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        layers = list(layers)
        if not layers or not all(isinstance(layer, DECOLLELayer) for layer in layers):
            raise ConfigurationError(
                "DECOLLENetwork: layers must be a non-empty sequence of DECOLLELayer, got "
                f"{[type(layer).__name__ for layer in layers]}"
            )
        self.layers = nn.ModuleList(layers)
        self.input_shape = tuple(
            check_int("DECOLLENetwork: input_shape", n, 1) for n in input_shape
        )
        self.out_features = check_int("DECOLLENetwork: out_features", out_features, 1)
        self.readout_scale = check_real(
            "DECOLLENetwork: readout_scale", readout_scale, 0.0, low_open=True
        )
        self.train_readouts = check_flag("DECOLLENetwork", "train_readouts", train_readouts)
        self.dropout = check_real("DECOLLENetwork: dropout", dropout, 0.0, 1.0, high_open=True)
        weight = layers[0].synapse.weight
        x = torch.zeros((1, *self.input_shape), dtype=weight.dtype, device=weight.device)
        sizes = []
        with torch.no_grad():
            for index, layer in enumerate(layers):
                layer.check_input(
                    x, f"DECOLLENetwork: layer {index} (input_shape {self.input_shape})"
                )
                x, _, _ = layer.step(x)
                sizes.append(x[0].numel())
        #: Each layer's (pooled) spikes pass through its tap, which monitors read
        #: (no parameters, no state: the state dict is unchanged).
        self.taps = nn.ModuleList(SpikeTap(n) for n in sizes)
        self.readouts = nn.ModuleList(nn.Linear(n, self.out_features) for n in sizes)
        for readout, n in zip(self.readouts, sizes):
            readout.to(dtype=weight.dtype, device=weight.device)
            bound = self.readout_scale / math.sqrt(n)
            with torch.no_grad():
                readout.weight.uniform_(-bound, bound)
                readout.bias.uniform_(-bound, bound)
            readout.requires_grad_(self.train_readouts)

    def check_step_input(self, x_t: Tensor, owner: str = "DECOLLENetwork") -> None:
        """Raise unless ``x_t`` is one step ``[B, *input_shape]`` in the weights' dtype."""
        if not isinstance(x_t, Tensor) or tuple(x_t.shape[1:]) != self.input_shape:
            shape = tuple(x_t.shape) if isinstance(x_t, Tensor) else type(x_t).__name__
            raise ShapeError(
                f"{owner}: one input step must have shape [B, *input_shape] = "
                f"[B, {', '.join(map(str, self.input_shape))}], got {shape}"
            )
        self.layers[0].check_input(x_t, owner)

    def step(
        self, x_t: Tensor, states: list[DECOLLEState] | None = None
    ) -> tuple[Tensor, list[DECOLLEState]]:
        """One DECOLLE step through every layer: the readouts ``[L, B, K]`` and the new
        states (``None``: the initial ones).

        Each layer's input is detached and its state is too, so each readout's gradient
        reaches its own layer's weights only, through this step's ``U`` alone. (The
        input of step ``t`` enters ``U`` only at ``t + 1``, through ``Q`` and the
        detached state: the detach of the input is what keeps the rule layer-local
        whatever the layer's equations.)

        Raises:
            ShapeError, DTypeError: ``x_t`` is not ``[B, *input_shape]`` in the weights'
                dtype.
        """
        self.check_step_input(x_t)
        y, new_states, _ = self._step(x_t, states, True, detach_state=True)
        return y, new_states

    def _step(self, x_t, states, local, detach_state):
        # (readouts [L, B, K], new states, each layer's (pooled) U [B, ...])
        continues = states is not None
        if states is None:
            states = [None] * len(self.layers)
        ys, new_states, us, x = [], [], [], x_t
        for layer, readout, tap, state in zip(self.layers, self.readouts, self.taps, states):
            if local:
                x = x.detach()
            if detach_state:
                s, u, new = layer.step(x, state)
            else:
                s, u, new = _step_attached(layer, x, state)
            new_states.append(new)
            us.append(u)
            s = tap.pass_step(s.unsqueeze(0), continues).squeeze(0)
            out = F.dropout(s, self.dropout, self.training) if self.dropout else s
            ys.append(readout(out.flatten(1)))
            x = s
        return torch.stack(ys), new_states, us

    def forward(self, x: Tensor, *, local: bool = True) -> Tensor:
        """The readouts of every step ``[T, L, B, K]`` for ``x`` ``[T, B, *input_shape]``.

        ``local=True``: DECOLLE's graph (layer inputs and states detached).
        ``local=False``: the full graph through layers and time (BPTT of the same
        network: the traces, the refractory trace and the spikes keep their gradients).
        """
        if not isinstance(x, Tensor) or x.dim() != len(self.input_shape) + 2:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ShapeError(f"DECOLLENetwork: x must be [T, B, *input_shape], got {shape}")
        states, ys = None, []
        for x_t in x:
            self.check_step_input(x_t)
            y, states, _ = self._step(x_t, states, local, detach_state=local)
            ys.append(y)
        return torch.stack(ys)


def _step_attached(layer: DECOLLELayer, x_t: Tensor, state: DECOLLEState | None):
    # The layer's step with the state's graph kept (BPTT): the spikes carried to R keep
    # their surrogate gradient.
    q, p, r, u_full, u, s = layer._dynamics(x_t, state)
    s_full = layer.surrogate_function(u_full) if layer.pool > 1 else s
    return s, u, DECOLLEState(q, p, r, s_full)


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
