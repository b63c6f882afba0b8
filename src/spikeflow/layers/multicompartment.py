"""Multicompartment LIF neurons (Norse 1.1's ``lif_mc`` and ``lif_mc_refrac``): the
``N`` current-based LIF units of a layer are the compartments of coupled neurons, and
each step the membranes exchange charge through a conductance matrix ``G``
(``g_coupling``, ``[N, N]``)::

    v <- v + dt · G v          (every compartment's membrane feels every other one's)

The coupling mixes the units of a step, so the neuron is not elementwise: these are
layers that run a loop over time in PyTorch (the reference path), not declared neurons
with fused kernels. Each step is Norse's, in Norse's order, so spikes, states and
float64 gradients equal Norse's (``tests/test_layers_multicompartment.py``):

* :class:`LIFMC` (``lif_mc_feed_forward_step``): couple ``v``, then the LIF step of
  Norse's ``lif_feed_forward_step`` on the input current ``x[t]``::

      v = v + dt G v;  i = i + x[t]
      v = v + dt/tau_mem (v_leak - v + i);  i = i - dt/tau_syn i
      z = Θ(v - v_th);  v = (1 - z) v + z v_reset

* :class:`LIFMCRecurrent` (``LIFMCRecurrentCell``, ``lif_mc_step``): the LIF step of
  Norse's ``lif_step`` with input and recurrent weights (the current jump
  ``W_in x[t] + W_rec z[t-1]`` first, the reset detached), then the coupling of the
  reset membrane.
* :class:`LIFMCRefrac`, :class:`LIFMCRefracRecurrent` (``lif_mc_refrac_feed_forward_step``,
  ``LIFMCRefracRecurrentCell``): with an absolute refractory period of ``rho_reset``
  steps (the counter ``rho``; the membrane does not integrate while ``rho > 0``). In
  Norse's refractory step the coupling is ``v @ G^T`` **without** ``dt`` (``G`` per
  step, not per second), the reset is not detached and the input current enters after
  the spike (it reaches the membrane one step later than in :class:`LIFMC`); these
  layers do the same. ``Θ(rho)`` is taken through the surrogate too, so gradients also
  flow through the counter, as in Norse.

Spikes fire on ``v > v_th`` through ``surrogate_function`` (default
``SuperSpike(alpha=1.0)``, Norse's ``method="super"``, whose derivative
``1/(1 + |x|)²`` ignores Norse's ``alpha``). The membranes start at ``v_leak``, the
currents (and spikes, counters) at 0, at every multi-step call; state carries on only
while streaming or under :func:`spikeflow.functional.run`, as for the neurons.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from spikeflow._checks import check_flag, check_int, check_real
from spikeflow.base import MemoryModule, StepMode
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.layers._time import as_float_sequence
from spikeflow.neurons.base import checked_surrogate
from spikeflow.surrogate import SuperSpike, Surrogate

__all__ = ["LIFMC", "LIFMCRecurrent", "LIFMCRefrac", "LIFMCRefracRecurrent"]


def _norse_superspike() -> Surrogate:
    return SuperSpike(alpha=1.0)


def _square_parameter(owner: str, name: str, value: Tensor | None, n: int, scale: float) -> Tensor:
    """A ``[n, n]`` float parameter: ``value`` (copied) or Norse's ``randn(n, n) · scale``."""
    if value is None:
        return nn.Parameter(torch.randn(n, n) * scale)
    if not isinstance(value, Tensor) or not value.is_floating_point():
        found = value.dtype if isinstance(value, Tensor) else type(value).__name__
        raise DTypeError(f"{owner}: {name} must be a floating-point tensor, got {found}")
    if tuple(value.shape) != (n, n):
        raise ShapeError(f"{owner}: {name} must have shape ({n}, {n}), got {tuple(value.shape)}")
    return nn.Parameter(value.detach().clone())


def _check_weights_dtype(owner: str, x: Tensor, weight: Tensor) -> None:
    """Raise a DTypeError naming ``owner`` unless ``x`` has ``weight``'s dtype (any
    floating dtype under autocast, which casts the products)."""
    if x.dtype != weight.dtype and not torch.is_autocast_enabled(x.device.type):
        raise DTypeError(
            f"{owner}: the input must have the weights' dtype {weight.dtype} (outside "
            f"autocast; convert the layer with .to({x.dtype}) or the input), got {x.dtype}"
        )


class _LIFMCBase(MemoryModule):
    """The parameters, checks and time loop shared by the four layers."""

    # set by the subclasses with these parts (_RecurrentLIFMC, _RefractoryLIFMC)
    _recurrent = False
    _refractory = False

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        g_coupling: Tensor | None,
        tau_syn: float,
        tau_mem: float,
        v_leak: float,
        v_threshold: float,
        v_reset: float,
        dt: float,
        surrogate_function: Surrogate | None,
        step_mode: StepMode,
        autapses: bool = False,
        rho_reset: int = 5,
    ) -> None:
        super().__init__(step_mode)
        owner = type(self).__name__
        self.input_size = check_int(f"{owner}: input_size", input_size, 1)
        self.hidden_size = check_int(f"{owner}: hidden_size", hidden_size, 1)
        self.dt = check_real(f"{owner}: dt", dt, 0.0, low_open=True)
        for name, tau in (("tau_syn", tau_syn), ("tau_mem", tau_mem)):
            value = check_real(f"{owner}: {name}", tau, 0.0, low_open=True)
            if value < self.dt:
                raise ConfigurationError(
                    f"{owner}: {name} must be >= dt ({self.dt:g}): forward Euler with "
                    f"dt/{name} > 1 overshoots the decay; got {name}={value:g}"
                )
            setattr(self, name, value)
        self.v_leak = check_real(f"{owner}: v_leak", v_leak)
        self.v_threshold = check_real(f"{owner}: v_threshold", v_threshold)
        self.v_reset = check_real(f"{owner}: v_reset", v_reset)
        self.surrogate_function = checked_surrogate(surrogate_function, _norse_superspike)
        n = self.hidden_size
        self.g_coupling = _square_parameter(owner, "g_coupling", g_coupling, n, 1 / math.sqrt(n))
        if self._recurrent:
            self.autapses = check_flag(owner, "autapses", autapses)
            std = math.sqrt(2.0 / n)  # Norse's SNNRecurrentCell init, input weights first
            # In g_coupling's dtype and device (a given one sets them, as a factory's
            # dtype/device do for torch's layers): one dtype for all the parameters.
            like = {"dtype": self.g_coupling.dtype, "device": self.g_coupling.device}
            self.input_weight = nn.Parameter(torch.randn(n, self.input_size, **like) * std)
            self.recurrent_weight = nn.Parameter(torch.randn(n, n, **like) * std)
            if not self.autapses:
                with torch.no_grad():
                    self.recurrent_weight.fill_diagonal_(0.0)
        if self._refractory:
            self.rho_reset = check_int(f"{owner}: rho_reset", rho_reset, 0)

    def _rates(self) -> tuple[float, float]:
        """Norse's ``dt · tau_syn_inv`` and ``dt · tau_mem_inv``."""
        return self.dt * (1.0 / self.tau_syn), self.dt * (1.0 / self.tau_mem)

    def _spike(self, x: Tensor) -> Tensor:
        return self.surrogate_function(x, strict=True)

    def _recurrent_matrix(self) -> Tensor:
        """``W_rec`` with its diagonal masked when ``autapses=False`` (no output and no
        gradient through self-connections, as Norse's zeroed diagonal and hook)."""
        w = self.recurrent_weight
        if self.autapses:
            return w
        return w * (1.0 - torch.eye(w.shape[0], dtype=w.dtype, device=w.device))

    def _initial_state(self, like: Tensor, batch: int) -> dict[str, Tensor]:
        shape = (batch, self.hidden_size)
        state = {
            "v": torch.full(shape, self.v_leak, dtype=like.dtype, device=like.device),
            "i": like.new_zeros(shape),
        }
        if self._recurrent:
            state["z"] = like.new_zeros(shape)
        if self._refractory:
            state["rho"] = like.new_zeros(shape)
        return state

    def _step(self, x: Tensor, state: dict[str, Tensor]) -> dict[str, Tensor]:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        """The spikes of the layer: ``[T, B, input_size]`` in, ``[T, B, hidden_size]``
        out in multi-step mode (one step ``[B, ...]`` in single-step mode, inside
        streaming)."""
        owner = type(self).__name__
        what = "a floating-point input"
        seq = as_float_sequence(x, owner, what, self.step_mode)
        _check_weights_dtype(owner, seq, self.g_coupling)
        if seq.dim() != 3 or seq.shape[-1] != self.input_size:
            raise ShapeError(
                f"{owner} expects [T, B, {self.input_size}] (or [B, {self.input_size}] in "
                f"single-step mode), got {tuple(x.shape)}"
            )
        batch = seq.shape[1]
        state = self._carried_state(torch.Size((batch, self.hidden_size)))
        if state is None:
            state = self._initial_state(seq, batch)
        spikes = []
        for x_t in seq.unbind(0):
            state = self._step(x_t, state)
            spikes.append(state["z"])
        self._keep_state(state)
        out = torch.stack(spikes)
        return out if self.step_mode == "m" else out[0]

    def _state_value(self, name: str) -> Tensor | None:
        return None if self.state is None else self.state[name]

    @property
    def v(self) -> Tensor | None:
        """The membranes carried to the next call (only while streaming)."""
        return self._state_value("v")

    @property
    def i(self) -> Tensor | None:
        """The synaptic currents carried to the next call (only while streaming)."""
        return self._state_value("i")

    def extra_repr(self) -> str:
        parts = [f"input_size={self.input_size}"] if self._recurrent else []
        parts += [
            f"hidden_size={self.hidden_size}",
            f"tau_syn={self.tau_syn:g}, tau_mem={self.tau_mem:g}, v_leak={self.v_leak:g}",
            f"v_threshold={self.v_threshold:g}, v_reset={self.v_reset:g}, dt={self.dt:g}",
        ]
        if self._recurrent:
            parts.append(f"autapses={self.autapses}")
        if self._refractory:
            parts.append(f"rho_reset={self.rho_reset}")
        parts.append(f"step_mode={self.step_mode!r}")
        return ", ".join(parts)


class _RecurrentLIFMC(_LIFMCBase):
    """Input and recurrent weights; the last spikes ``z`` are part of the state."""

    _recurrent = True

    @property
    def z(self) -> Tensor | None:
        """The last spikes carried to the next call (only while streaming)."""
        return self._state_value("z")


class _RefractoryLIFMC(_LIFMCBase):
    """An absolute refractory period; the counters ``rho`` are part of the state."""

    _refractory = True

    @property
    def rho(self) -> Tensor | None:
        """The refractory counters carried to the next call (only while streaming)."""
        return self._state_value("rho")


_ARGS_DOC = """
        tau_syn: the synaptic time constant in seconds, ``>= dt`` (default ``5e-3``:
            Norse's ``tau_syn_inv = 200``).
        tau_mem: the membrane time constant in seconds, ``>= dt`` (default ``1e-2``:
            Norse's ``tau_mem_inv = 100``).
        v_leak: the resting potential, and the membranes' initial value (default 0).
        v_threshold: spikes fire where ``v > v_threshold`` (default 1).
        v_reset: the membrane after a spike (default 0).
        dt: the time step in seconds, > 0 (default ``1e-3``).
        surrogate_function: the spike function and its gradient (default
            ``SuperSpike(alpha=1.0)``, Norse's ``method="super"``).
        step_mode: ``'m'`` (``[T, B, ...]``, default) or ``'s'`` (one step, streaming).

    Raises:
        ConfigurationError: a size below 1, a non-finite or non-positive ``dt`` or time
            constant, a time constant below ``dt``, a negative ``rho_reset``, a
            ``surrogate_function`` that is not a Surrogate.
        DTypeError: ``g_coupling`` or the input is not a floating-point tensor, or the
            input is not in the weights' dtype (outside autocast).
        ShapeError: ``g_coupling`` is not ``[hidden_size, hidden_size]``; the input is not
            ``[T, B, input_size]``.
"""


class LIFMC(_LIFMCBase):
    """Multicompartment LIF on input currents (Norse's ``lif_mc_feed_forward_step``)::

        v = v + dt G v;  i = i + x[t]
        v = v + dt/tau_mem (v_leak - v + i);  i = i - dt/tau_syn i
        z = Θ(v - v_th);  v = (1 - z) v + z v_reset

    ``x`` is ``[T, B, size]`` (a ``layers.Linear``'s output, say), the spikes too. The
    reset is not detached (Norse's feed-forward LIF). Norse has no module for this step:
    ``lif_mc_feed_forward_step(x, LIFFeedForwardState(v, i), g_coupling,
    LIFParameters(tau_syn_inv, tau_mem_inv, v_leak, v_th, v_reset), dt)`` per step is
    ``LIFMC(size, g_coupling, tau_syn=1/tau_syn_inv, tau_mem=1/tau_mem_inv, v_leak=v_leak,
    v_threshold=v_th, v_reset=v_reset, dt=dt)`` on the whole sequence.

    Args:
        size: the number of compartments ``N`` (input and output features).
        g_coupling: the conductances ``[N, N]`` (copied into the learnable parameter
            ``g_coupling``); default Norse's ``randn(N, N) / sqrt(N)``.
    """

    __doc__ = (__doc__ or "") + _ARGS_DOC

    def __init__(
        self,
        size: int,
        g_coupling: Tensor | None = None,
        *,
        tau_syn: float = 5e-3,
        tau_mem: float = 1e-2,
        v_leak: float = 0.0,
        v_threshold: float = 1.0,
        v_reset: float = 0.0,
        dt: float = 1e-3,
        surrogate_function: Surrogate | None = None,
        step_mode: StepMode = "m",
    ) -> None:
        super().__init__(
            size, size, g_coupling, tau_syn, tau_mem, v_leak, v_threshold, v_reset, dt,
            surrogate_function, step_mode,
        )  # fmt: skip

    def _step(self, x: Tensor, state: dict[str, Tensor]) -> dict[str, Tensor]:
        syn, mem = self._rates()
        v = state["v"] + self.dt * F.linear(state["v"], self.g_coupling)
        i = state["i"] + x
        v = v + mem * ((self.v_leak - v) + i)
        i = i + (-syn * i)
        z = self._spike(v - self.v_threshold)
        v = (1 - z) * v + z * self.v_reset
        return {"v": v, "i": i, "z": z}


class LIFMCRecurrent(_RecurrentLIFMC):
    """Recurrent multicompartment LIF (Norse's ``LIFMCRecurrentCell``, ``lif_mc_step``)::

        i = i + W_in x[t] + W_rec z[t-1]
        v = v + dt/tau_mem (v_leak - v + i);  i = i - dt/tau_syn i
        z[t] = Θ(v - v_th);  v = (1 - sg(z)) v + sg(z) v_reset   (sg: detached)
        v = v + dt G v

    ``x`` is ``[T, B, input_size]``, the spikes ``[T, B, hidden_size]``. Norse's
    ``LIFMCRecurrentCell(input_size, hidden_size, LIFParameters(tau_syn_inv,
    tau_mem_inv, v_leak, v_th, v_reset), g_coupling, autapses=False, dt=dt)`` per step is
    ``LIFMCRecurrent(input_size, hidden_size, g_coupling, tau_syn=1/tau_syn_inv, ...)``
    with Norse's ``input_weights`` / ``recurrent_weights`` copied into ``input_weight``
    / ``recurrent_weight``.

    Args:
        input_size: the input features.
        hidden_size: the number of compartments ``N``.
        g_coupling: the conductances ``[N, N]`` (copied into the learnable parameter
            ``g_coupling``); default Norse's ``randn(N, N) / sqrt(N)``. A given one's
            dtype and device are the layer's: the input and recurrent weights are made
            in them (e.g. a float64 ``g_coupling`` makes a float64 layer).
        autapses: allow self-connections in ``recurrent_weight`` (default False: its
            diagonal is masked, with no output and no gradient).

    The weights start as Norse's: ``randn · sqrt(2 / hidden_size)``, input weights
    first, then the recurrent ones, then ``g_coupling``.
    """

    __doc__ = (__doc__ or "") + _ARGS_DOC

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        g_coupling: Tensor | None = None,
        *,
        autapses: bool = False,
        tau_syn: float = 5e-3,
        tau_mem: float = 1e-2,
        v_leak: float = 0.0,
        v_threshold: float = 1.0,
        v_reset: float = 0.0,
        dt: float = 1e-3,
        surrogate_function: Surrogate | None = None,
        step_mode: StepMode = "m",
    ) -> None:
        super().__init__(
            input_size, hidden_size, g_coupling, tau_syn, tau_mem, v_leak, v_threshold,
            v_reset, dt, surrogate_function, step_mode, autapses=autapses,
        )  # fmt: skip

    def _step(self, x: Tensor, state: dict[str, Tensor]) -> dict[str, Tensor]:
        syn, mem = self._rates()
        i = (
            state["i"]
            + F.linear(x, self.input_weight)
            + F.linear(state["z"], self._recurrent_matrix())
        )
        v = state["v"] + mem * ((self.v_leak - state["v"]) + i)
        i = i + (-syn * i)
        z = self._spike(v - self.v_threshold)
        held = z.detach()
        v = (1 - held) * v + held * self.v_reset
        v = v + self.dt * F.linear(v, self.g_coupling)
        return {"v": v, "i": i, "z": z}


def _refractory_update(
    layer: _RefractoryLIFMC, state: dict[str, Tensor]
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Norse's refractory multicompartment step up to the spike: ``(z, v, i, rho)``, the
    current decayed but without this step's input."""
    syn, mem = layer._rates()
    v, i, rho = state["v"], state["i"], state["rho"]
    refractory = layer._spike(rho)
    dv = (1 - refractory) * mem * ((layer.v_leak - v) + i) + F.linear(v, layer.g_coupling)
    v = v + dv
    i = i + (-syn * i)
    z = layer._spike(v - layer.v_threshold)
    v = (1 - z) * v + z * layer.v_reset
    rho = (1 - z) * torch.relu(rho - refractory) + z * layer.rho_reset
    return z, v, i, rho


class LIFMCRefrac(_RefractoryLIFMC):
    """Multicompartment LIF with an absolute refractory period, on input currents
    (Norse's ``lif_mc_refrac_feed_forward_step``)::

        r = Θ(rho)                                    (refractory: no integration)
        v = v + (1 - r) dt/tau_mem (v_leak - v + i) + G v      (no dt on the coupling)
        i = i - dt/tau_syn i
        z[t] = Θ(v - v_th);  v = (1 - z) v + z v_reset
        i = i + x[t]                                  (after the spike)
        rho = (1 - z) relu(rho - r) + z rho_reset

    Norse's step per step (``LIFRefracFeedForwardState``, ``LIFRefracParameters(lif,
    rho_reset)``) is ``LIFMCRefrac(size, g_coupling, rho_reset=rho_reset, <the LIF
    arguments of LIFMC>)`` on the whole sequence.

    Args:
        size: the number of compartments ``N``.
        g_coupling: the conductances ``[N, N]`` per step (no ``dt``: Norse's; copied
            into the learnable parameter); default ``randn(N, N) / sqrt(N)``.
        rho_reset: the refractory steps after a spike, an integer ``>= 0`` (default 5,
            Norse's).
    """

    __doc__ = (__doc__ or "") + _ARGS_DOC

    def __init__(
        self,
        size: int,
        g_coupling: Tensor | None = None,
        *,
        rho_reset: int = 5,
        tau_syn: float = 5e-3,
        tau_mem: float = 1e-2,
        v_leak: float = 0.0,
        v_threshold: float = 1.0,
        v_reset: float = 0.0,
        dt: float = 1e-3,
        surrogate_function: Surrogate | None = None,
        step_mode: StepMode = "m",
    ) -> None:
        super().__init__(
            size, size, g_coupling, tau_syn, tau_mem, v_leak, v_threshold, v_reset, dt,
            surrogate_function, step_mode, rho_reset=rho_reset,
        )  # fmt: skip

    def _step(self, x: Tensor, state: dict[str, Tensor]) -> dict[str, Tensor]:
        z, v, i, rho = _refractory_update(self, state)
        return {"v": v, "i": i + x, "rho": rho, "z": z}


class LIFMCRefracRecurrent(_RecurrentLIFMC, _RefractoryLIFMC):
    """Recurrent multicompartment LIF with an absolute refractory period (Norse's
    ``LIFMCRefracRecurrentCell``, ``lif_mc_refrac_step``): :class:`LIFMCRefrac`'s step
    with the current jump ``W_in x[t] + W_rec z[t-1]`` after the spike (``z[t-1]`` the
    previous step's spikes).

    Norse's ``LIFMCRefracRecurrentCell(input_size, hidden_size, LIFRefracParameters(
    LIFParameters(...), rho_reset), g_coupling, autapses=False, dt=dt)`` per step is
    ``LIFMCRefracRecurrent(input_size, hidden_size, g_coupling, rho_reset=rho_reset,
    ...)`` with Norse's weights copied into ``input_weight`` / ``recurrent_weight``.

    Args:
        input_size: the input features.
        hidden_size: the number of compartments ``N``.
        g_coupling: the conductances ``[N, N]`` per step (no ``dt``: Norse's); a given
            one's dtype and device are the layer's (as :class:`LIFMCRecurrent`'s).
        autapses: allow self-connections (default False: the diagonal is masked).
        rho_reset: the refractory steps after a spike, an integer ``>= 0`` (default 5).
    """

    __doc__ = (__doc__ or "") + _ARGS_DOC

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        g_coupling: Tensor | None = None,
        *,
        autapses: bool = False,
        rho_reset: int = 5,
        tau_syn: float = 5e-3,
        tau_mem: float = 1e-2,
        v_leak: float = 0.0,
        v_threshold: float = 1.0,
        v_reset: float = 0.0,
        dt: float = 1e-3,
        surrogate_function: Surrogate | None = None,
        step_mode: StepMode = "m",
    ) -> None:
        super().__init__(
            input_size, hidden_size, g_coupling, tau_syn, tau_mem, v_leak, v_threshold,
            v_reset, dt, surrogate_function, step_mode, autapses=autapses, rho_reset=rho_reset,
        )  # fmt: skip

    def _step(self, x: Tensor, state: dict[str, Tensor]) -> dict[str, Tensor]:
        z, v, i, rho = _refractory_update(self, state)
        i = i + F.linear(x, self.input_weight) + F.linear(state["z"], self._recurrent_matrix())
        return {"v": v, "i": i, "rho": rho, "z": z}
