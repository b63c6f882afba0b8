"""Spiking neurons with intra-layer connections (ILC; Chen et al., "Fully Spiking Actor
Network with Intra-layer Connections for Reinforcement Learning", TNNLS 2024), SpikingJelly
2.0's ``ILCBaseNode``, ``ILCIFNode``, ``ILCLIFNode`` and ``ILCCUBALIFNode``.

The ``num_node = act_dim * dec_pop_dim`` neurons form ``act_dim`` populations of
``dec_pop_dim`` (neuron ``j`` of population ``a`` at index ``a dec_pop_dim + j``); the
spikes of a population at step ``t`` reach its own neurons at step ``t + 1`` through
``conn``, an ``nn.Conv1d(act_dim, num_node, dec_pop_dim, groups=act_dim)`` (a dense
``dec_pop_dim x dec_pop_dim`` weight and a bias per population)::

    H[t] = charge(V[t-1], X[t] + R[t])
    S[t] = Θ(H[t] − θ);   V[t] = reset(H[t], S[t])
    R[t+1] = conn(S[t]),   R[0] = 0

The intra-layer input ``R`` is part of the state (``"r"``), so single-step calls while
streaming equal one multi-step call. The noisy ILC neurons
(:mod:`spikeflow.neurons.noisy`) feed ``conn`` their noisy outputs through the same
:func:`intra_layer_input`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from spikeflow._checks import check_int, check_real
from spikeflow.base import StepMode
from spikeflow.errors import ShapeError
from spikeflow.neurons.base import checked_surrogate
from spikeflow.neurons.loop import LoopNode
from spikeflow.surrogate import Rect, Surrogate

__all__ = [
    "ILCBaseNode",
    "ILCCubaLIFNode",
    "ILCIFNode",
    "ILCLIFNode",
    "intra_layer_input",
    "population_conn",
]


def population_conn(act_dim: int, dec_pop_dim: int) -> nn.Conv1d:
    """The intra-layer connection of ``act_dim`` populations of ``dec_pop_dim`` neurons:
    ``nn.Conv1d(act_dim, act_dim * dec_pop_dim, dec_pop_dim, groups=act_dim)`` with
    PyTorch's initialisation (SpikingJelly's ``conn``; its state dict loads).

    Raises:
        ConfigurationError: a size that is not an integer >= 1.
    """
    act = check_int("act_dim", act_dim, 1)
    pop = check_int("dec_pop_dim", dec_pop_dim, 1)
    return nn.Conv1d(act, act * pop, pop, groups=act)


def intra_layer_input(conn: nn.Conv1d, out: Tensor, act_dim: int, dec_pop_dim: int) -> Tensor:
    """``conn`` applied to each population of ``out`` (``[..., act_dim * dec_pop_dim]``):
    the intra-layer input of the next step, the shape of ``out``.

    Computed as a batched product (a ``[pop, pop]`` matrix per population), which is the
    grouped convolution without the CPU's slow float64 convolution path; ``conn``'s
    weights are cast to ``out``'s dtype.
    """
    act, pop = act_dim, dec_pop_dim
    weight = conn.weight.to(out.dtype).view(act, pop, pop)  # [group, out, in]
    grouped = out.reshape(-1, act, pop)
    recurrent = torch.einsum("bgi,goi->bgo", grouped, weight).reshape(out.shape)
    return recurrent + conn.bias.to(out.dtype)


def _check_decay(owner: str, name: str, value: object) -> float:
    return check_real(f"{owner}: {name}", value, 0.0, 1.0)


class ILCBaseNode(LoopNode):
    """Base of the spiking neurons with intra-layer connections (module docstring); a
    subclass gives the charge (:meth:`charge`) and its extra state
    (:meth:`initial_values`).

    Args:
        act_dim: the number of populations (action dimensions).
        dec_pop_dim: the neurons per population; the input's last dimension is
            ``num_node = act_dim * dec_pop_dim``.
        v_threshold: θ (default 1).
        v_reset: the membrane after a spike and at the start (default 0); None for a
            soft reset, ``V = H − S θ``, from 0.
        surrogate_function: default ``Rect(alpha=1)`` (SpikingJelly's here).
        step_mode: ``'m'`` (``[T, ..., num_node]``, default) or ``'s'``
            (``[..., num_node]``, one step; needs streaming).
        store_v_seq: keep the membrane after reset of every step in ``self.v_seq``.

    The state is ``"v"`` (membrane after reset), ``"r"`` (the intra-layer input of the
    next step) and a subclass's own variables.

    Raises:
        ConfigurationError: a size below 1, a non-finite threshold or reset, a surrogate
            that is not a spikeflow one.
        ShapeError: (at a call) an input whose last dimension is not ``num_node``.
    """

    def __init__(
        self,
        act_dim: int,
        dec_pop_dim: int,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        surrogate_function: Surrogate | None = None,
        step_mode: StepMode = "m",
        store_v_seq: bool = False,
    ) -> None:
        super().__init__(step_mode, store_v_seq)
        owner = type(self).__name__
        self.conn = population_conn(act_dim, dec_pop_dim)
        self.act_dim, self.dec_pop_dim = int(act_dim), int(dec_pop_dim)
        self.num_node = self.act_dim * self.dec_pop_dim
        self.v_threshold = check_real(f"{owner}: v_threshold", v_threshold)
        self.v_reset = None if v_reset is None else check_real(f"{owner}: v_reset", v_reset)
        self.surrogate_function = checked_surrogate(surrogate_function, Rect)

    @property
    def out_pop_dim(self) -> int:
        """SpikingJelly's name for ``num_node``."""
        return self.num_node

    def initial_values(self) -> dict[str, float]:
        """The membrane at ``v_reset`` (0 for a soft reset), no intra-layer input."""
        return {"v": 0.0 if self.v_reset is None else self.v_reset, "r": 0.0}

    def charge(self, x: Tensor, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """The charged state (``"v"``: ``H[t]``, and a subclass's variables) for input
        ``x`` (the intra-layer input already added) from ``state``."""
        raise NotImplementedError

    def _check_input(self, x: object) -> Tensor:
        x_seq = super()._check_input(x)
        if x_seq.shape[-1] != self.num_node:
            raise ShapeError(
                f"{type(self).__name__}: the input's last dimension must be num_node = "
                f"act_dim x dec_pop_dim = {self.act_dim} x {self.dec_pop_dim} = "
                f"{self.num_node}, got shape {tuple(x_seq.shape)}"
            )
        return x_seq

    def step(self, x: Tensor, state: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """One step: the spikes for input ``x`` and the state after them."""
        charged = self.charge(x + state["r"], state)
        h = charged["v"]
        spike = self.surrogate_function(h - self.v_threshold)
        if self.v_reset is None:
            v = h - spike * self.v_threshold
        else:
            v = (1.0 - spike) * h + spike * self.v_reset
        r = intra_layer_input(self.conn, spike, self.act_dim, self.dec_pop_dim)
        return spike, {**charged, "v": v, "r": r}

    def extra_repr(self) -> str:
        return (
            f"act_dim={self.act_dim}, dec_pop_dim={self.dec_pop_dim}, "
            f"v_threshold={self.v_threshold:g}, v_reset={self.v_reset}, "
            f"step_mode={self.step_mode!r}"
        )


class ILCIFNode(ILCBaseNode):
    """ILC integrate-and-fire neuron: ``H[t] = V[t-1] + X[t] + R[t]``. The arguments
    are :class:`ILCBaseNode`'s (θ 1)."""

    def charge(self, x: Tensor, state: dict[str, Tensor]) -> dict[str, Tensor]:
        return {"v": state["v"] + x}


class ILCLIFNode(ILCBaseNode):
    """ILC leaky integrate-and-fire neuron: ``H[t] = v_decay V[t-1] + X[t] + R[t]``.

    Args:
        act_dim, dec_pop_dim: the populations and their size.
        v_decay: the membrane's decay per step, in ``[0, 1]`` (default 0.75).
        v_threshold, v_reset, surrogate_function, step_mode, store_v_seq: as
            :class:`ILCBaseNode`'s (θ 1).
    """

    def __init__(
        self,
        act_dim: int,
        dec_pop_dim: int,
        v_decay: float = 0.75,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        surrogate_function: Surrogate | None = None,
        step_mode: StepMode = "m",
        store_v_seq: bool = False,
    ) -> None:
        super().__init__(
            act_dim, dec_pop_dim, v_threshold, v_reset, surrogate_function, step_mode, store_v_seq
        )
        self.v_decay = _check_decay(type(self).__name__, "v_decay", v_decay)

    def charge(self, x: Tensor, state: dict[str, Tensor]) -> dict[str, Tensor]:
        return {"v": state["v"] * self.v_decay + x}

    def extra_repr(self) -> str:
        return f"v_decay={self.v_decay:g}, {super().extra_repr()}"


class ILCCubaLIFNode(ILCBaseNode):
    """ILC current-based LIF neuron (the output populations of the ILC-SAN actor)::

        C[t] = c_decay C[t-1] + X[t] + R[t],   H[t] = v_decay V[t-1] + C[t]

    ``C`` (state ``"c"``) from 0. Without ``conn`` (its weights and bias zero) it is
    :class:`~spikeflow.neurons.CubaLIFNode` with ``tau_syn = 1/(1 − c_decay)``,
    ``tau_mem = 1/(1 − v_decay)``, ``r = tau_syn tau_mem``.

    Args:
        act_dim, dec_pop_dim: the populations and their size.
        c_decay, v_decay: the current's and the membrane's decay per step, in
            ``[0, 1]`` (defaults 0.5, 0.75).
        v_threshold: θ (default 0.5, SpikingJelly's for this neuron).
        v_reset, surrogate_function, step_mode, store_v_seq: as :class:`ILCBaseNode`'s.

    Example::

        >>> node = ILCCubaLIFNode(act_dim=2, dec_pop_dim=5)
        >>> node(torch.rand(4, 3, 10)).shape        # [T, B, act_dim * dec_pop_dim]
        torch.Size([4, 3, 10])
    """

    def __init__(
        self,
        act_dim: int,
        dec_pop_dim: int,
        c_decay: float = 0.5,
        v_decay: float = 0.75,
        v_threshold: float = 0.5,
        v_reset: float | None = 0.0,
        surrogate_function: Surrogate | None = None,
        step_mode: StepMode = "m",
        store_v_seq: bool = False,
    ) -> None:
        super().__init__(
            act_dim, dec_pop_dim, v_threshold, v_reset, surrogate_function, step_mode, store_v_seq
        )
        owner = type(self).__name__
        self.c_decay = _check_decay(owner, "c_decay", c_decay)
        self.v_decay = _check_decay(owner, "v_decay", v_decay)

    def initial_values(self) -> dict[str, float]:
        return {**super().initial_values(), "c": 0.0}

    def charge(self, x: Tensor, state: dict[str, Tensor]) -> dict[str, Tensor]:
        c = state["c"] * self.c_decay + x
        return {"v": state["v"] * self.v_decay + c, "c": c}

    def extra_repr(self) -> str:
        return f"c_decay={self.c_decay:g}, v_decay={self.v_decay:g}, {super().extra_repr()}"
