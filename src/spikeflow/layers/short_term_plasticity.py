"""Tsodyks-Markram short-term synaptic plasticity (Tsodyks, Pawelzik & Markram, Neural
Comput. 1998; Tsodyks & Markram, PNAS 1997): the efficacy of a synapse depends on its
recent presynaptic spikes, through a utilisation ``u`` (facilitation: each spike raises
it, it relaxes to 0 with ``tau_f``) and the fraction ``x`` of resources available
(depression: each spike uses ``u x`` of them, they recover to 1 with ``tau_d``).

Forward Euler with step ``dt``, for presynaptic spikes ``z[t]``::

    u[t] = u[t-1] - (dt / tau_f) u[t-1] + U (1 - u[t-1]) z[t]
    y[t] = u[t] x[t-1] z[t]                                    (the transmitted efficacy)
    x[t] = x[t-1] + (dt / tau_d) (1 - x[t-1]) - u[t] x[t-1] z[t]

from ``u = 0``, ``x = 1`` (a synapse at rest: the first spike transmits ``U``). The
spike is seen by ``u`` first (the facilitation it causes counts for itself), then the
resources it uses leave ``x``. This is Norse 1.1's ``stp_step`` (``tau_f = 1/tau_f_inv``,
``tau_d = 1/tau_d_inv``, the same ``U`` and ``dt``; tested for its facilitating and
depressing parameter sets); Norse's ``tau_s_inv`` is not used by its step, and the
postsynaptic current it filters is a separate layer here
(:class:`~spikeflow.neurons.LINode` with ``decay_input=False``, see docs/synapses.md).

The update is elementwise and differentiable in the spikes (graded spikes, a surrogate's
output) and in ``U``, ``tau_f`` and ``tau_d``; it runs as a loop over time in PyTorch.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from spikeflow.base import MemoryModule, StepMode, set_constants
from spikeflow.errors import ConfigurationError, DTypeError
from spikeflow.layers._time import as_float_sequence
from spikeflow.neurons.base import check_step_shape

__all__ = ["ShortTermPlasticity", "tsodyks_markram", "tsodyks_markram_step"]


def tsodyks_markram_step(
    z: Tensor,
    u: Tensor | float,
    x: Tensor | float,
    *,
    U: Tensor | float,
    f_decay: Tensor | float,
    d_decay: Tensor | float,
) -> tuple[Tensor, Tensor, Tensor]:
    """One step of the Tsodyks-Markram synapse (see the module docstring).

    Args:
        z: the presynaptic spikes of this step ``[B, ...]``.
        u: the utilisation after the previous step.
        x: the available resources after the previous step.
        U: the utilisation increment per spike.
        f_decay: ``dt / tau_f``, the fraction of ``u`` lost per step.
        d_decay: ``dt / tau_d``, the fraction of ``1 - x`` recovered per step.

    Returns:
        ``(y, u, x)``: the efficacy ``u[t] x[t-1] z[t]`` and the new state.
    """
    u_new = u - f_decay * u + U * (1.0 - u) * z
    used = u_new * x * z
    x_new = x + d_decay * (1.0 - x) - used
    return used, u_new, x_new


def tsodyks_markram(
    z_seq: Tensor,
    *,
    U: Tensor | float,
    f_decay: Tensor | float,
    d_decay: Tensor | float,
    u: Tensor | float = 0.0,
    x: Tensor | float = 1.0,
) -> tuple[Tensor, Tensor, Tensor]:
    """Run :func:`tsodyks_markram_step` over ``z_seq`` (``[T, B, ...]``) from ``(u, x)``
    (default: at rest, 0 and 1).

    Returns:
        ``(y_seq, u, x)``: the efficacies ``[T, B, ...]`` and the final state, shaped as
        one step.
    """
    ys = []
    for z in z_seq.unbind(0):
        y, u, x = tsodyks_markram_step(z, u, x, U=U, f_decay=f_decay, d_decay=d_decay)
        ys.append(y)
    like = z_seq[0]
    final_u = u if isinstance(u, Tensor) else torch.full_like(like, u)
    final_x = x if isinstance(x, Tensor) else torch.full_like(like, x)
    return torch.stack(ys), final_u.expand_as(like), final_x.expand_as(like)


def _check_parameter(owner: str, name: str, value: object) -> float | Tensor:
    """A finite float, or a floating tensor (kept, detached, as a buffer)."""
    if isinstance(value, Tensor):
        if not value.is_floating_point():
            raise DTypeError(f"{owner}: {name} must be a floating-point tensor, got {value.dtype}")
        if not bool(torch.isfinite(value).all()):
            raise ConfigurationError(f"{owner}: {name} must be finite, got {value}")
        return value.detach().clone()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigurationError(
            f"{owner}: {name} must be a finite float or a tensor, got {value!r}"
        )
    return float(value)


class ShortTermPlasticity(MemoryModule):
    """Tsodyks-Markram short-term plasticity of the synapses leaving each input neuron
    (see the module docstring)::

        u[t] = u[t-1] (1 - dt/tau_f) + U (1 - u[t-1]) z[t]
        y[t] = u[t] x[t-1] z[t]
        x[t] = x[t-1] + (dt/tau_d) (1 - x[t-1]) - u[t] x[t-1] z[t]

    Put it between spikes and the weights they drive: ``layers.Linear(n, m)`` after it
    sums the efficacies ``y`` instead of the spikes. One ``(u, x)`` pair per input
    element (per presynaptic neuron, as Norse's), starting at rest (``u = 0``, ``x = 1``)
    at every multi-step call; carried between calls only while streaming (``node.u``,
    ``node.x``), as for the neurons.

    Depressing synapses have ``tau_d >> tau_f`` and a large ``U`` (the defaults:
    Norse's, ``tau_f = 50``, ``tau_d = 750`` steps of 1 ms, ``U = 0.45``); facilitating
    ones ``tau_f >> tau_d`` and a small ``U`` (Norse's: 750, 50, 0.15).

    **Norse**: ``stp_step(z, state, TsodyksMakramParameters(tau_f_inv, tau_s_inv,
    tau_d_inv, U), dt)`` per step is ``ShortTermPlasticity(tau_f=1/tau_f_inv,
    tau_d=1/tau_d_inv, U=U, dt=dt)`` on the whole sequence (its state ``(u, x)`` is
    ``(node.u, node.x)`` while streaming).

    Args:
        tau_f: the facilitation time constant, ``>= dt`` (default 50).
        tau_d: the depression (recovery) time constant, ``>= dt`` (default 750).
        U: the utilisation increment per spike, in ``(0, 1]`` (default 0.45).
        dt: the time step, > 0 (default 1: time constants in steps).
        step_mode: ``'m'`` (``[T, B, ...]``, default) or ``'s'`` (``[B, ...]``).

    ``tau_f``, ``tau_d`` and ``U`` may be tensors broadcastable to one step of the input
    (one value per input neuron).

    Raises:
        ConfigurationError: a time constant below ``dt`` (forward Euler would overshoot),
            ``U`` outside ``(0, 1]``, ``dt <= 0`` or a non-finite value.
        DTypeError: an integer tensor parameter or input.
        ShapeError: a multi-step input without a time dimension, a parameter that does
            not broadcast to the input's steps.
    """

    def __init__(
        self,
        tau_f: float | Tensor = 50.0,
        tau_d: float | Tensor = 750.0,
        U: float | Tensor = 0.45,
        dt: float = 1.0,
        step_mode: StepMode = "m",
    ) -> None:
        super().__init__(step_mode)
        owner = type(self).__name__
        if (
            isinstance(dt, bool)
            or not isinstance(dt, (int, float))
            or not (math.isfinite(dt) and dt > 0)
        ):
            raise ConfigurationError(f"{owner}: dt must be a finite number > 0, got {dt!r}")
        self.dt = float(dt)
        values = {
            "tau_f": _check_parameter(owner, "tau_f", tau_f),
            "tau_d": _check_parameter(owner, "tau_d", tau_d),
            "U": _check_parameter(owner, "U", U),
        }
        for name in ("tau_f", "tau_d"):
            if not bool(torch.all(torch.as_tensor(values[name]) >= self.dt)):
                raise ConfigurationError(
                    f"{owner}: {name} must be >= dt ({self.dt:g}) everywhere: forward Euler "
                    f"with dt/{name} > 1 overshoots the decay; got {name}={values[name]}"
                )
        utilisation = torch.as_tensor(values["U"])
        if not bool(((utilisation > 0) & (utilisation <= 1)).all()):
            raise ConfigurationError(f"{owner}: U must be in (0, 1] everywhere, got U={U}")
        set_constants(self, values)

    @property
    def u(self) -> Tensor | None:
        """The utilisation carried to the next call (only while streaming)."""
        return None if self.state is None else self.state["u"]

    @property
    def x(self) -> Tensor | None:
        """The available resources carried to the next call (only while streaming)."""
        return None if self.state is None else self.state["x"]

    def forward(self, z: Tensor) -> Tensor:
        """The efficacies ``u x z`` of the spikes ``z``: ``[T, B, ...]`` in multi-step
        mode, one step ``[B, ...]`` in single-step mode (inside streaming)."""
        name = type(self).__name__
        z_seq = as_float_sequence(z, name, "floating-point spikes", self.step_mode)
        step_shape = z_seq.shape[1:]
        for param in ("tau_f", "tau_d", "U"):
            check_step_shape(name, param, getattr(self, param), step_shape)
        state = self._carried_state(step_shape)
        start = {"u": 0.0, "x": 1.0} if state is None else state
        y, u, x = tsodyks_markram(
            z_seq, U=self.U, f_decay=self.dt / self.tau_f, d_decay=self.dt / self.tau_d,
            u=start["u"], x=start["x"],
        )  # fmt: skip
        self._keep_state({"u": u, "x": x})
        return y if self.step_mode == "m" else y[0]

    def extra_repr(self) -> str:
        def show(value: float | Tensor) -> str:
            return f"{value:g}" if isinstance(value, float) else f"tensor{tuple(value.shape)}"

        return (
            f"tau_f={show(self.tau_f)}, tau_d={show(self.tau_d)}, U={show(self.U)}, "
            f"dt={self.dt:g}, step_mode={self.step_mode!r}"
        )
