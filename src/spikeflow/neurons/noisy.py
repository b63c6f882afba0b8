"""Noisy spiking neurons for exploration in reinforcement learning (NoisySAN: Chen et
al., "Noisy Spiking Actor Network for Exploration"; SpikingJelly 2.0's
``neuron.noisy``).

A noisy spiking actor explores by adding coloured noise ``ε`` (power spectrum
``∝ 1/f^β``, :func:`powerlaw_psd_gaussian`) inside its neurons while it is in training
mode, twice per step in a spiking neuron::

    H[t] = charge(V[t-1], X[t] + R[t] + σ_v ε_v[t])       (noise in the input)
    S[t] = Θ(H[t] − θ);   V[t] = reset(H[t], S[t])          (reset by the clean spike)
    O[t] = S[t] + σ_s ε_s[t]                                (noise on the output)

with ``σ_v = σ_s = sigma_init / sqrt(num_node)`` and ``R`` the intra-layer input of the
ILC neurons (``R[0] = 0``, ``R[t+1] = conn(O[t])``, a grouped ``Conv1d`` that connects
each population of ``dec_pop_dim`` neurons with itself, one group per action
dimension). The non-spiking decoder has one noise, ``V[t] = V[t-1] + X[t] + σ ε[t]``,
with a learnable ``σ`` per neuron, and decodes its membranes as
:mod:`spikeflow.neurons.nonspiking` does. In eval mode (``module.eval()``) there is no
noise: the actor is deterministic.

The noise is drawn once per episode, ``reset_noise(num_steps)``: one coloured series of
``num_steps * T`` samples per neuron (coloured across the environment's steps, not only
within one), ``[num_steps, T, num_node]``. Each training-mode call takes the next
environment step's ``[T, num_node]`` (shared by the batch). The update step replays it:
:meth:`NoisyBaseNode.get_colored_noise` returns the noise the last call used (store it
with the transition), :meth:`NoisyBaseNode.load_colored_noise` takes a batch of stored
noises (``[B, T, 2 num_node]``; ``[B, T, num_node]`` for the decoder), one per sample,
used by every call until :meth:`NoisyBaseNode.cancel_load`.

Inputs are ``[T, B, num_node]`` with exactly the ``T`` of the neuron (a
:class:`~spikeflow.errors.ShapeError` otherwise); the neurons run whole sequences only
and keep no state between calls.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from spikeflow._checks import check_int, check_real
from spikeflow.base import SequenceOnly
from spikeflow.errors import ShapeError, StateError
from spikeflow.neurons.base import check_float_input, checked_surrogate
from spikeflow.neurons.colored_noise import (
    RandomState,
    colored_noise,
    normal_sampler,
    powerlaw_psd_gaussian,
)
from spikeflow.neurons.ilc import intra_layer_input, population_conn
from spikeflow.neurons.nonspiking import check_decode, decode_membrane
from spikeflow.surrogate import Rect, Surrogate

__all__ = [
    "NoisyBaseNode",
    "NoisyCubaLIFNode",
    "NoisyILCBaseNode",
    "NoisyILCCubaLIFNode",
    "NoisyNonSpikingBaseNode",
    "NoisyNonSpikingIFNode",
    "RandomState",
    "colored_noise",
    "powerlaw_psd_gaussian",
]


def _draw_seed() -> int:
    """A seed from torch's global generator (so ``torch.manual_seed`` fixes the noise)."""
    return int(torch.randint(0, 2**62, ()).item())


class _EpisodeNoise(SequenceOnly, nn.Module):
    """The noise protocol the noisy neurons share: ``reset_noise``, the training-mode
    draw of the next step's noise, ``get_colored_noise``, ``load_colored_noise``,
    ``cancel_load``; and the input check."""

    sequence_reason = "its noise is drawn for whole sequences of T steps"
    #: Names of the per-episode noise tensors, in the order they are drawn.
    _noise_names: tuple[str, ...] = ()

    def _init_noise(self, num_node: int, T: int, sigma_init: float, beta: float) -> None:
        self.num_node = check_int("num_node", num_node, 1)
        self.T = check_int("T", T, 1)
        self.sigma_init = check_real(f"{type(self).__name__}: sigma_init", sigma_init, 0.0)
        self.beta = check_real(f"{type(self).__name__}: beta", beta)
        for name in self._noise_names:
            self.register_buffer(name, None, persistent=False)
        self.noise_step = -1
        self._loaded: list[Tensor] | None = None

    @property
    def num_noise_steps(self) -> int:
        """How many environment steps of noise ``reset_noise`` drew (0 before)."""
        first = getattr(self, self._noise_names[0])
        return 0 if first is None else first.shape[0]

    def reset_noise(self, num_steps: int, random_state: RandomState = None) -> None:
        """Draw the noise of the next ``num_steps`` environment steps (an episode) and
        start at its first step.

        Args:
            num_steps: the number of training-mode calls the noise will serve.
            random_state: a seed, numpy ``Generator`` or ``RandomState``; None (default)
                seeds a numpy generator from torch's global generator, so
                ``torch.manual_seed`` makes the noise reproducible.

        Raises:
            ConfigurationError: ``num_steps < 1`` (or ``num_steps * T < 2``), a bad
                ``random_state``.
        """
        normal_sampler(random_state)  # the check (a bool is not a seed)
        if random_state is None:
            random_state = np.random.default_rng(_draw_seed())
        elif not isinstance(random_state, (np.random.Generator, np.random.RandomState)):
            random_state = np.random.default_rng(random_state)  # both draws from one
        device = self._noise_device()
        for name in self._noise_names:
            noise = colored_noise(self.beta, self.num_node, num_steps, self.T, random_state)
            setattr(self, name, noise.to(device))
        self.noise_step = -1

    def _noise_device(self) -> torch.device:
        for tensor in [*self.parameters(), *self.buffers()]:
            return tensor.device
        return torch.device("cpu")

    def get_colored_noise(self) -> Tensor:
        """The noise the last training-mode call drew, ``[T, k num_node]`` (``k`` = 2
        for a spiking neuron, the input noise then the output noise; 1 for the
        decoder): store it with the transition to replay it in the update step.

        Raises:
            StateError: no training-mode call has drawn noise since ``reset_noise``.
        """
        if self.noise_step < 0 or self.num_noise_steps == 0:
            raise StateError(
                f"{type(self).__name__}.get_colored_noise: no noise was drawn yet; call "
                "reset_noise(num_steps), then the network in training mode"
            )
        parts = [getattr(self, name)[self.noise_step] for name in self._noise_names]
        return torch.cat(parts, dim=1)

    def load_colored_noise(self, cn: Tensor) -> None:
        """Use the stored noises ``cn`` (``[B, T, k num_node]``, one row per sample of
        the batch: :meth:`get_colored_noise` results stacked) in every training-mode
        call until :meth:`cancel_load`; no episode noise is drawn meanwhile.

        Raises:
            DTypeError: ``cn`` is not a floating-point tensor.
            ShapeError: ``cn`` is not ``[B, T, k num_node]``.
        """
        owner = f"{type(self).__name__}.load_colored_noise"
        check_float_input(cn, owner, "floating-point noise")
        k = len(self._noise_names)
        want = (self.T, k * self.num_node)
        if cn.dim() != 3 or tuple(cn.shape[1:]) != want:
            raise ShapeError(
                f"{owner}: the noise must be [B, T={self.T}, {k} x num_node={want[1]}] "
                f"(get_colored_noise() of each sample, stacked), got shape {tuple(cn.shape)}"
            )
        self._loaded = list(cn.split(self.num_node, dim=2))

    def cancel_load(self) -> None:
        """Stop using the loaded noise: training-mode calls draw episode noise again."""
        self._loaded = None

    def _check_input(self, x_seq: object) -> Tensor:
        owner = type(self).__name__
        check_float_input(x_seq, owner)
        assert isinstance(x_seq, Tensor)
        if x_seq.dim() != 3 or x_seq.shape[0] != self.T or x_seq.shape[2] != self.num_node:
            raise ShapeError(
                f"{owner} takes [T={self.T}, B, num_node={self.num_node}] sequences, got "
                f"shape {tuple(x_seq.shape)}"
            )
        return x_seq

    def _call_noise(self, x_seq: Tensor) -> list[Tensor] | None:
        """The noises of this call, each ``[T, B or 1, num_node]`` in ``x_seq``'s dtype
        and device; None in eval mode."""
        if not self.training:
            return None
        owner = type(self).__name__
        if self._loaded is not None:
            batch = self._loaded[0].shape[0]
            if batch != x_seq.shape[1]:
                raise ShapeError(
                    f"{owner}: the loaded noise is for a batch of {batch}, the input "
                    f"has {x_seq.shape[1]} (shape {tuple(x_seq.shape)})"
                )
            return [n.transpose(0, 1).to(x_seq) for n in self._loaded]
        if self.num_noise_steps == 0:
            raise StateError(
                f"{owner}: no noise drawn; call reset_noise(num_steps) before running it "
                "in training mode (or load_colored_noise(cn), or eval() for no noise)"
            )
        if self.noise_step + 1 >= self.num_noise_steps:
            raise StateError(
                f"{owner}: all {self.num_noise_steps} steps of noise drawn by reset_noise "
                "are used; call reset_noise(num_steps) again for the next episode"
            )
        self.noise_step += 1
        return [getattr(self, n)[self.noise_step].unsqueeze(1).to(x_seq) for n in self._noise_names]


def _check_v_reset(v_reset: object) -> float | None:
    if v_reset is None:
        return None
    return check_real("v_reset", v_reset)


class NoisyBaseNode(_EpisodeNoise):
    """Base class of the noisy spiking neurons (module docstring): a subclass gives
    :meth:`initial_state` and :meth:`neuronal_charge`.

    Args:
        num_node: the number of neurons (the input's last dimension).
        T: the number of time steps of every call (default 5).
        sigma_init: the noise scale: ``σ_v = σ_s = sigma_init / sqrt(num_node)``
            (default 0.5).
        beta: the noise's spectral exponent (0 white, the default; 1 pink; 2 brown).
        v_threshold: θ (default 0.5).
        v_reset: the membrane after a spike (default 0); None for a soft reset
            (``V = H − S θ``; the membrane then starts at 0).
        surrogate_function: default ``Rect(alpha=1)`` (SpikingJelly's here).

    The training-mode / eval-mode switch is SpikingJelly's ``is_training``.

    Raises:
        ConfigurationError: a size below 1, a negative ``sigma_init``, a non-finite
            number, a surrogate that is not a spikeflow one.
    """

    _noise_names = ("eps_v_seq", "eps_s_seq")

    def __init__(
        self,
        num_node: int,
        T: int = 5,
        sigma_init: float = 0.5,
        beta: float = 0.0,
        v_threshold: float = 0.5,
        v_reset: float | None = 0.0,
        surrogate_function: Surrogate | None = None,
    ) -> None:
        super().__init__()
        self._init_noise(num_node, T, sigma_init, beta)
        self.sigma_v = self.sigma_init / math.sqrt(self.num_node)
        self.sigma_s = self.sigma_init / math.sqrt(self.num_node)
        self.v_threshold = check_real("v_threshold", v_threshold)
        self.v_reset = _check_v_reset(v_reset)
        self.surrogate_function = checked_surrogate(surrogate_function, Rect)

    def initial_state(self, like: Tensor) -> dict[str, Tensor]:
        """The state at the start of a call (membrane ``"v"`` at ``v_reset``, or 0)."""
        v0 = 0.0 if self.v_reset is None else self.v_reset
        return {"v": torch.full_like(like, v0)}

    def neuronal_charge(self, state: dict[str, Tensor], x: Tensor) -> dict[str, Tensor]:
        """The state after input ``x`` (one step, noise added), before firing."""
        raise NotImplementedError

    def after_spike(self, t: int, out: Tensor) -> Tensor | None:
        """The intra-layer input to step ``t + 1`` from step ``t``'s output (None: none)."""
        return None

    def forward(self, x_seq: Tensor) -> Tensor:
        """The outputs ``[T, B, num_node]`` (spikes, plus the output noise in training
        mode) for ``x_seq`` (``[T, B, num_node]``).

        Raises:
            DTypeError: a non-floating-point input.
            ShapeError: an input that is not ``[T, B, num_node]``; loaded noise for
                another batch size.
            StateError: training mode without noise drawn (``reset_noise``) or loaded,
                or with all drawn steps used.
        """
        x_seq = self._check_input(x_seq)
        noise = self._call_noise(x_seq)
        state = self.initial_state(x_seq[0])
        recurrent: Tensor | None = None
        outputs = []
        for t in range(self.T):
            x = x_seq[t] if recurrent is None else x_seq[t] + recurrent
            if noise is not None:
                x = x + self.sigma_v * noise[0][t]
            state = self.neuronal_charge(state, x)
            v = state["v"]
            spike = self.surrogate_function(v - self.v_threshold)
            if self.v_reset is None:
                state["v"] = v - spike * self.v_threshold
            else:
                state["v"] = (1.0 - spike) * v + spike * self.v_reset
            out = spike if noise is None else spike + self.sigma_s * noise[1][t]
            outputs.append(out)
            recurrent = self.after_spike(t, out)
        return torch.stack(outputs)

    def extra_repr(self) -> str:
        return (
            f"num_node={self.num_node}, T={self.T}, sigma_init={self.sigma_init:g}, "
            f"beta={self.beta:g}, v_threshold={self.v_threshold:g}, v_reset={self.v_reset}"
        )


class _CubaCharge:
    """The current-based charge of the two noisy CUBA neurons (a mixin placed before
    their base): ``C[t] = c_decay C[t-1] + X[t]``, ``H[t] = v_decay V[t-1] + C[t]``,
    ``C`` starting at 0."""

    c_decay: float
    v_decay: float

    def _set_decays(self, c_decay: float, v_decay: float) -> None:
        owner = type(self).__name__
        self.c_decay = check_real(f"{owner}: c_decay", c_decay, 0.0, 1.0)
        self.v_decay = check_real(f"{owner}: v_decay", v_decay, 0.0, 1.0)

    def initial_state(self, like: Tensor) -> dict[str, Tensor]:
        return {**super().initial_state(like), "c": torch.zeros_like(like)}  # type: ignore[misc]

    def neuronal_charge(self, state: dict[str, Tensor], x: Tensor) -> dict[str, Tensor]:
        c = state["c"] * self.c_decay + x
        return {"c": c, "v": state["v"] * self.v_decay + c}

    def extra_repr(self) -> str:
        base = super().extra_repr()  # type: ignore[misc]
        return f"c_decay={self.c_decay:g}, v_decay={self.v_decay:g}, {base}"


class NoisyCubaLIFNode(_CubaCharge, NoisyBaseNode):
    """Noisy current-based LIF (NoisySAN's hidden neuron)::

        C[t] = c_decay C[t-1] + X[t] (+ noise),   H[t] = v_decay V[t-1] + C[t]

    then the fire, reset and output noise of :class:`NoisyBaseNode`; ``C`` starts at 0.
    Without noise (eval mode) it is :class:`~spikeflow.neurons.CubaLIFNode` with
    ``tau_syn = 1/(1 − c_decay)``, ``tau_mem = 1/(1 − v_decay)``,
    ``r = tau_syn tau_mem``.

    Args:
        num_node: the number of neurons.
        c_decay, v_decay: the current's and the membrane's decay per step, in
            ``[0, 1]`` (defaults 0.5, 0.75).
        T, sigma_init, beta, v_threshold, v_reset, surrogate_function: as
            :class:`NoisyBaseNode`'s (θ 0.5, ``Rect`` surrogate).

    Example::

        >>> node = NoisyCubaLIFNode(4, T=5)
        >>> node.reset_noise(num_steps=100)      # one episode
        >>> out = node(torch.rand(5, 1, 4))      # training mode: noisy
        >>> cn = node.get_colored_noise()        # [5, 8], kept with the transition
    """

    def __init__(
        self,
        num_node: int,
        c_decay: float = 0.5,
        v_decay: float = 0.75,
        T: int = 5,
        sigma_init: float = 0.5,
        beta: float = 0.0,
        v_threshold: float = 0.5,
        v_reset: float | None = 0.0,
        surrogate_function: Surrogate | None = None,
    ) -> None:
        super().__init__(num_node, T, sigma_init, beta, v_threshold, v_reset, surrogate_function)
        self._set_decays(c_decay, v_decay)


class NoisyILCBaseNode(NoisyBaseNode):
    """Noisy spiking neurons in ``act_dim`` populations of ``dec_pop_dim`` with
    intra-layer connections (ILC): step ``t``'s outputs of a population (noise
    included) reach its own neurons at step ``t + 1`` through ``conn``, an
    ``nn.Conv1d(act_dim, num_node, dec_pop_dim, groups=act_dim)`` (a dense
    ``dec_pop_dim x dec_pop_dim`` weight and a bias per population; PyTorch's
    initialisation). ``num_node = act_dim * dec_pop_dim``, neuron ``j`` of population
    ``a`` at index ``a dec_pop_dim + j``. ``conn`` and its product are those of the
    noise-free ILC neurons (:mod:`spikeflow.neurons.ilc`). A subclass gives the charge.

    Args:
        act_dim: the number of populations (action dimensions).
        dec_pop_dim: the neurons per population.
        T, sigma_init, beta, v_reset, surrogate_function: as :class:`NoisyBaseNode`'s.
        v_threshold: θ (default 1, SpikingJelly's here).

    Raises:
        ConfigurationError: as :class:`NoisyBaseNode`.
    """

    def __init__(
        self,
        act_dim: int,
        dec_pop_dim: int,
        T: int = 5,
        sigma_init: float = 0.5,
        beta: float = 0.0,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        surrogate_function: Surrogate | None = None,
    ) -> None:
        conn = population_conn(act_dim, dec_pop_dim)  # checks the sizes
        self.act_dim, self.dec_pop_dim = int(act_dim), int(dec_pop_dim)
        num_node = self.act_dim * self.dec_pop_dim
        super().__init__(num_node, T, sigma_init, beta, v_threshold, v_reset, surrogate_function)
        self.conn = conn

    def after_spike(self, t: int, out: Tensor) -> Tensor | None:
        if t + 1 == self.T:
            return None
        return intra_layer_input(self.conn, out, self.act_dim, self.dec_pop_dim)

    def extra_repr(self) -> str:
        return f"act_dim={self.act_dim}, dec_pop_dim={self.dec_pop_dim}, {super().extra_repr()}"


class NoisyILCCubaLIFNode(_CubaCharge, NoisyILCBaseNode):
    """:class:`NoisyILCBaseNode` with the current-based charge of
    :class:`NoisyCubaLIFNode` (NoisySAN's decoder populations).

    Args:
        act_dim, dec_pop_dim: the populations and their size.
        c_decay, v_decay: as :class:`NoisyCubaLIFNode`'s (0.5, 0.75).
        T, sigma_init, beta, v_threshold, v_reset, surrogate_function: as
            :class:`NoisyILCBaseNode`'s (θ 1).
    """

    def __init__(
        self,
        act_dim: int,
        dec_pop_dim: int,
        c_decay: float = 0.5,
        v_decay: float = 0.75,
        T: int = 5,
        sigma_init: float = 0.5,
        beta: float = 0.0,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        surrogate_function: Surrogate | None = None,
    ) -> None:
        super().__init__(
            act_dim, dec_pop_dim, T, sigma_init, beta, v_threshold, v_reset, surrogate_function
        )
        self._set_decays(c_decay, v_decay)


class NoisyNonSpikingBaseNode(_EpisodeNoise):
    """Base class of the noisy non-spiking decoders: ``V[t] = charge(V[t-1], X[t] + σ
    ε[t])`` from 0, with a learnable ``σ`` per neuron (``sigma``, ``[num_node]``,
    initialised to ``sigma_init / sqrt(num_node)``) and noise in training mode only;
    the membranes decoded as :func:`~spikeflow.neurons.nonspiking.decode_membrane`
    says. A subclass gives :meth:`neuronal_charge`.

    Args:
        num_node: the number of neurons (the input's last dimension).
        T: the number of time steps of every call (default 5).
        sigma_init: the initial noise scale (default 0.5).
        beta: the noise's spectral exponent (default 0, white).
        decode: ``None`` (the membranes ``[T, B, num_node]``), ``"max-mem"``,
            ``"max-abs-mem"``, ``"mean-mem"`` or ``"last-mem"`` (``[B, num_node]``).

    Raises:
        ConfigurationError: a size below 1, a negative ``sigma_init``, a non-finite
            number, an unknown ``decode``.
    """

    _noise_names = ("eps_seq",)

    def __init__(
        self,
        num_node: int,
        T: int = 5,
        sigma_init: float = 0.5,
        beta: float = 0.0,
        decode: str | None = None,
    ) -> None:
        super().__init__()
        self._init_noise(num_node, T, sigma_init, beta)
        self.decode = check_decode(decode)
        self.sigma = nn.Parameter(
            torch.full((self.num_node,), self.sigma_init / math.sqrt(self.num_node))
        )

    def neuronal_charge(self, v: Tensor, x: Tensor) -> Tensor:
        """The membrane after input ``x`` (one step, noise added) from ``v``."""
        raise NotImplementedError

    def forward(self, x_seq: Tensor) -> Tensor:
        """The decoded membranes for ``x_seq`` (``[T, B, num_node]``).

        Raises:
            DTypeError: a non-floating-point input.
            ShapeError: an input that is not ``[T, B, num_node]``; loaded noise for
                another batch size.
            StateError: training mode without noise drawn (``reset_noise``) or loaded,
                or with all drawn steps used.
        """
        x_seq = self._check_input(x_seq)
        noise = self._call_noise(x_seq)
        v = torch.zeros_like(x_seq[0])
        membranes = []
        for t in range(self.T):
            x = x_seq[t] if noise is None else x_seq[t] + self.sigma * noise[0][t]
            v = self.neuronal_charge(v, x)
            membranes.append(v)
        return decode_membrane(torch.stack(membranes), self.decode)

    def extra_repr(self) -> str:
        return (
            f"num_node={self.num_node}, T={self.T}, sigma_init={self.sigma_init:g}, "
            f"beta={self.beta:g}, decode={self.decode!r}"
        )


class NoisyNonSpikingIFNode(NoisyNonSpikingBaseNode):
    """Noisy non-spiking IF decoder: ``V[t] = V[t-1] + X[t] + σ ε[t]`` (module
    docstring; the arguments are :class:`NoisyNonSpikingBaseNode`'s).

    Example::

        >>> head = NoisyNonSpikingIFNode(2, T=5, decode="mean-mem").eval()
        >>> head(torch.ones(5, 1, 2))
        tensor([[3., 3.]])
    """

    def neuronal_charge(self, v: Tensor, x: Tensor) -> Tensor:
        return v + x
