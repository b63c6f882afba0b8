"""Correlation sensors (Norse 1.1's ``correlation_sensor``, ``lif_correlation`` and
``stdp_sensor``): per-synapse traces of how pre- and postsynaptic spikes follow each
other, an idealised version of the analogue correlation sensors of the BrainScaleS-2
chips, for plasticity rules that read them.

For presynaptic spikes ``z_pre`` ``[B, I]`` and postsynaptic ones ``z_post`` ``[B, O]``
each synapse ``(i, o)`` of a sample keeps three values, ``[B, I, O]`` each:

* ``post_pre``, 1 while the last event at the synapse was a postsynaptic spike (after
  a presynaptic spike, 0): ``post_pre = Θ(post_pre + z_post[o] - z_pre[i])``;
* ``correlation``, raised by ``eta_p`` at each presynaptic spike and decaying with
  ``tau_c`` only while ``post_pre = 0`` (a presynaptic spike not yet answered);
* ``anti_correlation``, raised by ``eta_m`` at each postsynaptic spike and decaying
  with ``tau_ac`` only while ``post_pre = 1``.

Each step first decays the traces (by ``dt/tau``, gated by the ``post_pre`` of the
previous step), then updates ``post_pre`` and adds the spikes, in Norse's order; the
traces are differentiable in the spikes and ``eta``s (``Θ`` has no gradient, as
Norse's ``heaviside``). The sensors here are per sample; Norse's masks broadcast the
batch against the synapse dimensions, which is right for a batch of one only (its
experiment's): another batch size raises in Norse or, where it equals ``O``, mixes the
samples. :class:`CorrelationSensor` runs a sensor over a whole sequence,
:class:`LIFCorrelation` is Norse's recurrent LIF layer with one sensor on its input
synapses and one on its recurrent ones, and :func:`correlation_based_update` Norse's
update of weights from the traces. :func:`stdp_sensor_step` is Norse's simpler
two-trace STDP sensor. All equal Norse in values and float64 gradients
(``tests/test_learn_correlation_sensor.py``; batches of one for the sensors).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from spikeflow._checks import check_int, check_real
from spikeflow.base import MemoryModule, StepMode
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.layers._time import as_float_sequence
from spikeflow.layers.multicompartment import _check_weights_dtype
from spikeflow.neurons.base import checked_surrogate
from spikeflow.surrogate import SuperSpike, Surrogate

__all__ = [
    "CorrelationSensor",
    "CorrelationSensorState",
    "LIFCorrelation",
    "STDPSensorState",
    "correlation_based_update",
    "correlation_sensor_step",
    "stdp_sensor_step",
]


class CorrelationSensorState(NamedTuple):
    """The state of a correlation sensor, each ``[B, I, O]`` (Norse's field names)."""

    post_pre: Tensor
    correlation_trace: Tensor
    anti_correlation_trace: Tensor


class STDPSensorState(NamedTuple):
    """The traces of an STDP sensor: presynaptic ``a_pre``, postsynaptic ``a_post``."""

    a_pre: Tensor
    a_post: Tensor


def _heaviside(x: Tensor) -> Tensor:
    return (x > 0).to(x.dtype)


def correlation_sensor_step(
    z_pre: Tensor,
    z_post: Tensor,
    state: CorrelationSensorState,
    *,
    eta_p: float | Tensor = 1.0,
    eta_m: float | Tensor = 1.0,
    tau_c: float | Tensor = 0.1,
    tau_ac: float | Tensor = 0.1,
    dt: float = 1e-3,
) -> CorrelationSensorState:
    """One step of the correlation sensor (see the module docstring); Norse's
    ``correlation_sensor_step(z_pre, z_post, state, CorrelationSensorParameters(eta_p,
    eta_m, tau_ac_inv=1/tau_ac, tau_c_inv=1/tau_c), dt)``.

    Args:
        z_pre: presynaptic spikes ``[B, I]``.
        z_post: postsynaptic spikes ``[B, O]``.
        state: the previous state, each field ``[B, I, O]`` (zeros at the start).
        eta_p: the correlation trace's increment per presynaptic spike (default 1).
        eta_m: the anti-correlation trace's increment per postsynaptic spike (default 1).
        tau_c: the correlation trace's time constant in seconds (default 0.1).
        tau_ac: the anti-correlation trace's time constant in seconds (default 0.1).
        dt: the time step in seconds (default ``1e-3``).

    Returns:
        The new :class:`CorrelationSensorState`.
    """
    post_pre, corr, anti = state
    corr = corr + (1 - post_pre) * (dt * (1 / tau_c) * (-corr))
    anti = anti + post_pre * (dt * (1 / tau_ac) * (-anti))
    pre_mask = torch.zeros_like(post_pre) + z_pre.unsqueeze(-1)
    post_mask = torch.zeros_like(post_pre) + z_post.unsqueeze(-2)
    return CorrelationSensorState(
        post_pre=_heaviside(post_pre + post_mask - pre_mask),
        correlation_trace=corr + eta_p * pre_mask,
        anti_correlation_trace=anti + eta_m * post_mask,
    )


def stdp_sensor_step(
    z_pre: Tensor,
    z_post: Tensor,
    state: STDPSensorState,
    *,
    eta_p: float | Tensor = 1.0,
    eta_m: float | Tensor = 1.0,
    tau_c: float | Tensor = 0.1,
    dt: float = 1e-3,
) -> STDPSensorState:
    """Norse's ``stdp_sensor_step``: both traces decay with ``tau_c`` (Norse's
    ``tau_c_inv``; its ``tau_ac_inv`` is unused) and jump by ``eta_p z_pre`` and
    ``eta_m z_post``::

        a_pre = a_pre - dt/tau_c a_pre + eta_p z_pre
        a_post = a_post - dt/tau_c a_post + eta_m z_post

    ``z_pre`` / ``z_post`` and the traces have any shapes that broadcast together.
    """
    rate = 1 / tau_c
    a_pre = state.a_pre + dt * (rate * (-state.a_pre)) + z_pre * eta_p
    a_post = state.a_post + dt * (rate * (-state.a_post)) + z_post * eta_m
    return STDPSensorState(a_pre, a_post)


def correlation_based_update(
    ts: int,
    linear_update: nn.Module,
    weights: Tensor,
    correlation_state: CorrelationSensorState,
    learning_rate: float,
    ts_frequency: int,
) -> Tensor:
    """Norse's ``correlation_based_update``: every ``ts_frequency`` steps (when
    ``ts % ts_frequency == 0``) the weights move by ``learning_rate · dw``, ``dw`` the
    output of ``linear_update`` (detached) on the flattened correlation and
    anti-correlation traces, reshaped (not transposed) to ``[O, I]``; the traces are then
    zeroed in place. Other steps return ``weights`` unchanged.

    ``linear_update`` maps ``2 · B·I·O`` values to ``I·O`` (Norse's rule is written for a
    batch of one).

    Raises:
        ConfigurationError: ``ts_frequency`` is not an integer ``>= 1``.
        ShapeError: ``linear_update``'s output does not hold ``I·O`` values.
    """
    frequency = check_int("correlation_based_update: ts_frequency", ts_frequency, 1)
    if ts % frequency != 0:
        return weights
    _, inputs, outputs = correlation_state.correlation_trace.shape
    traces = torch.cat(
        (
            correlation_state.correlation_trace.flatten(),
            correlation_state.anti_correlation_trace.flatten(),
        )
    )
    dw = linear_update(traces).detach()
    if dw.numel() != inputs * outputs:
        raise ShapeError(
            f"correlation_based_update: linear_update must give I·O = {inputs * outputs} "
            f"values for traces of shape {tuple(correlation_state.correlation_trace.shape)}, "
            f"got {dw.numel()}"
        )
    weights = weights + learning_rate * dw.reshape(outputs, inputs)
    correlation_state.correlation_trace.zero_()
    correlation_state.anti_correlation_trace.zero_()
    return weights


def _check_rates(owner: str, values: dict[str, float], dt: float) -> dict[str, float]:
    checked = {}
    for name, value in values.items():
        checked[name] = check_real(f"{owner}: {name}", value, 0.0, low_open=True)
        if name.startswith("tau") and checked[name] < dt:
            raise ConfigurationError(
                f"{owner}: {name} must be >= dt ({dt:g}): forward Euler with dt/{name} > 1 "
                f"overshoots the decay; got {name}={checked[name]:g}"
            )
    return checked


class CorrelationSensor(MemoryModule):
    """A correlation sensor run over whole sequences: ``forward(z_pre, z_post)`` with
    ``z_pre`` ``[T, B, I]`` and ``z_post`` ``[T, B, O]`` returns the
    :class:`CorrelationSensorState` after the last step (each ``[B, I, O]``), started
    from zeros at every multi-step call (carried on while streaming or under
    :func:`spikeflow.functional.run`, as for the neurons). :func:`correlation_sensor_step`
    per step is this module on the sequence.

    Args:
        eta_p, eta_m, tau_c, tau_ac: as :func:`correlation_sensor_step` (> 0; time
            constants ``>= dt``).
        dt: the time step in seconds, > 0 (default ``1e-3``).
        step_mode: ``'m'`` (default) or ``'s'`` (``[B, I]``, ``[B, O]``, streaming).

    Raises:
        ConfigurationError: a parameter out of range.
        DTypeError: spikes that are not floating point.
        ShapeError: spikes that are not ``[T, B, I]`` and ``[T, B, O]`` with the same
            ``T`` and ``B``.
    """

    def __init__(
        self,
        eta_p: float = 1.0,
        eta_m: float = 1.0,
        tau_c: float = 0.1,
        tau_ac: float = 0.1,
        dt: float = 1e-3,
        step_mode: StepMode = "m",
    ) -> None:
        super().__init__(step_mode)
        owner = type(self).__name__
        self.dt = check_real(f"{owner}: dt", dt, 0.0, low_open=True)
        values = {"eta_p": eta_p, "eta_m": eta_m, "tau_c": tau_c, "tau_ac": tau_ac}
        for name, value in _check_rates(owner, values, self.dt).items():
            setattr(self, name, value)

    def _parameters_of_step(self) -> dict[str, float]:
        return dict(eta_p=self.eta_p, eta_m=self.eta_m, tau_c=self.tau_c, tau_ac=self.tau_ac)

    def forward(self, z_pre: Tensor, z_post: Tensor) -> CorrelationSensorState:
        """The sensor's state after the spikes ``z_pre``, ``z_post``."""
        owner = type(self).__name__
        pre = as_float_sequence(z_pre, owner, "floating-point spikes", self.step_mode)
        post = as_float_sequence(z_post, owner, "floating-point spikes", self.step_mode)
        if pre.dim() != 3 or post.dim() != 3 or pre.shape[:2] != post.shape[:2]:
            raise ShapeError(
                f"{owner} expects z_pre [T, B, I] and z_post [T, B, O] with the same T "
                f"and B, got {tuple(z_pre.shape)} and {tuple(z_post.shape)}"
            )
        shape = torch.Size((pre.shape[1], pre.shape[2], post.shape[2]))
        carried = self._carried_state(shape)
        if carried is None:
            zeros = pre.new_zeros(shape)
            state = CorrelationSensorState(zeros, zeros, zeros)
        else:
            state = CorrelationSensorState(**carried)
        for a, b in zip(pre.unbind(0), post.unbind(0)):
            state = correlation_sensor_step(a, b, state, dt=self.dt, **self._parameters_of_step())
        self._keep_state(state._asdict())
        return state

    def extra_repr(self) -> str:
        return (
            f"eta_p={self.eta_p:g}, eta_m={self.eta_m:g}, tau_c={self.tau_c:g}, "
            f"tau_ac={self.tau_ac:g}, dt={self.dt:g}, step_mode={self.step_mode!r}"
        )


class LIFCorrelation(MemoryModule):
    """Norse's ``LIFCorrelation``: a recurrent current-based LIF layer (Norse's
    ``lif_step``: the current jump ``W_in x[t] + W_rec z[t-1]`` first, the reset
    detached) with a correlation sensor on its input synapses (``z_pre = x[t]``) and one
    on its recurrent synapses (``z_pre = z[t-1]``), both with ``z_post = z[t]``.

    ``forward(x)``, ``x`` ``[T, B, input_size]``, returns the spikes ``[T, B,
    hidden_size]``. The sensors' states after the call are :attr:`input_correlation`
    and :attr:`recurrent_correlation` (``[B, input_size, hidden_size]`` and ``[B,
    hidden_size, hidden_size]``), kept while streaming or under
    :func:`spikeflow.functional.run` (whose state holds them too). Norse's online loop
    (``z, s = lif_correlation(x[t], input_weights=W_in, recurrent_weights=W_rec,
    state=s)`` then :func:`correlation_based_update`) is this layer in single-step mode
    inside :func:`spikeflow.functional.streaming`, the weights updated in place in
    ``input_weight`` / ``recurrent_weight``.

    Unlike Norse's, the layer owns its weights (``randn · sqrt(2 / hidden_size)``, as
    Norse's recurrent cells; self-connections allowed, as Norse's ``lif_step``) and starts
    the membrane at ``v_leak`` for every unit (Norse's module starts from the scalar
    ``v_leak``, which broadcasts to the same values).

    Args:
        input_size, hidden_size: the layer's sizes (>= 1).
        tau_syn, tau_mem, v_leak, v_threshold, v_reset, dt, surrogate_function: the LIF
            neuron, as :class:`spikeflow.layers.LIFMCRecurrent` (Norse's defaults).
        input_sensor, recurrent_sensor: dicts of :func:`correlation_sensor_step`'s
            ``eta_p``, ``eta_m``, ``tau_c``, ``tau_ac`` for each sensor (Norse's
            defaults: 1, 1, 0.1, 0.1).
        step_mode: ``'m'`` (default) or ``'s'``.

    Raises:
        ConfigurationError: a parameter out of range, an unknown sensor parameter.
        DTypeError, ShapeError: an input that is not floating ``[T, B, input_size]`` in
            the weights' dtype (any floating dtype under autocast).
    """

    #: The sensors' states after the last call (copies keep their values).
    _graph_attributes = tuple(
        f"last_{prefix}_{field}"
        for prefix in ("input", "recurrent")
        for field in CorrelationSensorState._fields
    )

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        *,
        tau_syn: float = 5e-3,
        tau_mem: float = 1e-2,
        v_leak: float = 0.0,
        v_threshold: float = 1.0,
        v_reset: float = 0.0,
        dt: float = 1e-3,
        surrogate_function: Surrogate | None = None,
        input_sensor: dict[str, float] | None = None,
        recurrent_sensor: dict[str, float] | None = None,
        step_mode: StepMode = "m",
    ) -> None:
        super().__init__(step_mode)
        owner = type(self).__name__
        self.input_size = check_int(f"{owner}: input_size", input_size, 1)
        self.hidden_size = check_int(f"{owner}: hidden_size", hidden_size, 1)
        self.dt = check_real(f"{owner}: dt", dt, 0.0, low_open=True)
        rates = _check_rates(owner, {"tau_syn": tau_syn, "tau_mem": tau_mem}, self.dt)
        self.tau_syn, self.tau_mem = rates["tau_syn"], rates["tau_mem"]
        self.v_leak = check_real(f"{owner}: v_leak", v_leak)
        self.v_threshold = check_real(f"{owner}: v_threshold", v_threshold)
        self.v_reset = check_real(f"{owner}: v_reset", v_reset)
        self.surrogate_function = checked_surrogate(
            surrogate_function, lambda: SuperSpike(alpha=1.0)
        )
        self.input_sensor = self._sensor(owner, "input_sensor", input_sensor)
        self.recurrent_sensor = self._sensor(owner, "recurrent_sensor", recurrent_sensor)
        std = math.sqrt(2.0 / self.hidden_size)
        self.input_weight = nn.Parameter(torch.randn(self.hidden_size, self.input_size) * std)
        self.recurrent_weight = nn.Parameter(torch.randn(self.hidden_size, self.hidden_size) * std)

    def _sensor(self, owner: str, name: str, given: dict[str, float] | None) -> dict[str, float]:
        values = {"eta_p": 1.0, "eta_m": 1.0, "tau_c": 0.1, "tau_ac": 0.1}
        if given is not None:
            if not isinstance(given, dict) or not set(given) <= set(values):
                raise ConfigurationError(
                    f"{owner}: {name} must be a dict with keys among {sorted(values)}, "
                    f"got {given!r}"
                )
            values.update(given)
        return _check_rates(f"{owner}: {name}", values, self.dt)

    def _check_state_fits(
        self, state: Mapping[str, Tensor], step_shape: torch.Size, what: str
    ) -> None:
        """The LIF state against one step ``[B, hidden_size]``; the sensors' states,
        ``[B, ., hidden_size]``, belong to the same batch when it fits."""
        lif = {name: state[name] for name in ("z", "v", "i") if name in state}
        super()._check_state_fits(lif, step_shape, what)

    def _lif_step(self, x: Tensor, z: Tensor, v: Tensor, i: Tensor) -> tuple[Tensor, ...]:
        i = i + F.linear(x, self.input_weight) + F.linear(z, self.recurrent_weight)
        v = v + self.dt * (1.0 / self.tau_mem) * ((self.v_leak - v) + i)
        i = i + (-self.dt * (1.0 / self.tau_syn) * i)
        z = self.surrogate_function(v - self.v_threshold, strict=True)
        held = z.detach()
        return z, (1 - held) * v + held * self.v_reset, i

    def forward(self, x: Tensor) -> Tensor:
        """The spikes of the layer for the input ``x`` (see the class docstring)."""
        owner = type(self).__name__
        seq = as_float_sequence(x, owner, "a floating-point input", self.step_mode)
        _check_weights_dtype(owner, seq, self.input_weight)
        if seq.dim() != 3 or seq.shape[-1] != self.input_size:
            raise ShapeError(
                f"{owner} expects [T, B, {self.input_size}] (or [B, {self.input_size}] in "
                f"single-step mode), got {tuple(x.shape)}"
            )
        batch, n = seq.shape[1], self.hidden_size
        state = self._carried_state(torch.Size((batch, n)))
        if state is None:
            zeros = seq.new_zeros((batch, n))
            state = {"z": zeros, "v": torch.full_like(zeros, self.v_leak), "i": zeros}
            for prefix, size in (("input", self.input_size), ("recurrent", n)):
                sensor = seq.new_zeros((batch, size, n))
                for field in CorrelationSensorState._fields:
                    state[f"{prefix}_{field}"] = sensor
        state = dict(state)
        spikes = []
        for x_t in seq.unbind(0):
            z_prev = state["z"]
            z, v, i = self._lif_step(x_t, z_prev, state["v"], state["i"])
            state.update(z=z, v=v, i=i)
            for prefix, pre, p in (
                ("input", x_t, self.input_sensor),
                ("recurrent", z_prev, self.recurrent_sensor),
            ):
                sensor = self._sensor_state(state, prefix)
                new = correlation_sensor_step(pre, z, sensor, dt=self.dt, **p)
                for field, value in new._asdict().items():
                    state[f"{prefix}_{field}"] = value
            spikes.append(z)
        self._keep_state(state)
        for name in self._graph_attributes:
            setattr(self, name, state[name[len("last_") :]])
        out = torch.stack(spikes)
        return out if self.step_mode == "m" else out[0]

    @staticmethod
    def _sensor_state(state: dict[str, Tensor], prefix: str) -> CorrelationSensorState:
        return CorrelationSensorState(
            *(state[f"{prefix}_{field}"] for field in CorrelationSensorState._fields)
        )

    def _last(self, prefix: str) -> CorrelationSensorState | None:
        values = [self.__dict__.get(f"last_{prefix}_{f}") for f in CorrelationSensorState._fields]
        return None if values[0] is None else CorrelationSensorState(*values)

    @property
    def input_correlation(self) -> CorrelationSensorState | None:
        """The input sensor's state after the last call (``None`` before any call)."""
        return self._last("input")

    @property
    def recurrent_correlation(self) -> CorrelationSensorState | None:
        """The recurrent sensor's state after the last call (``None`` before any call)."""
        return self._last("recurrent")

    def extra_repr(self) -> str:
        return (
            f"input_size={self.input_size}, hidden_size={self.hidden_size}, "
            f"tau_syn={self.tau_syn:g}, tau_mem={self.tau_mem:g}, v_leak={self.v_leak:g}, "
            f"v_threshold={self.v_threshold:g}, v_reset={self.v_reset:g}, dt={self.dt:g}, "
            f"step_mode={self.step_mode!r}"
        )
