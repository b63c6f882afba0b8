"""DECOLLE's layers and network: the neurons the rule of :mod:`spikeflow.learn.decolle`
trains (Kaiser, Mostafa & Neftci 2020).

:class:`DECOLLELayer` is one layer's dynamics (presynaptic traces ``P``, ``Q``, the
refractory trace ``R``, the synapse and the spike; the equations are in
:mod:`spikeflow.learn.decolle`'s module doc) and :class:`DECOLLENetwork` stacks layers,
each with its fixed random readout. Both are also importable from
:mod:`spikeflow.learn.decolle` and :mod:`spikeflow.learn`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikeflow._checks import check_flag, check_int, check_real
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.neurons.tap import SpikeTap
from spikeflow.surrogate import Rect, Surrogate

__all__ = ["DECOLLELayer", "DECOLLENetwork", "DECOLLEState"]


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
