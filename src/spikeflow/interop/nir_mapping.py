"""The discretisation that maps NIR's continuous-time neurons to spikeflow's discrete ones.

NIR describes neurons by differential equations in continuous time; spikeflow runs
discrete steps. Both directions use forward Euler with one step of length ``dt`` (in
NIR's time unit; ``dt = 1`` means "time constants are counted in steps")::

    NIR LIF      tau dv/dt = (v_leak - v) + r I
    Euler        v[t] = v[t-1] + (dt / tau) (v_leak - v[t-1] + r I[t])
    spikeflow    H[t] = V[t-1] + (X[t] - (V[t-1] - V_r)) / tau_s       (decay_input=True)
                 H[t] = V[t-1] - (V[t-1] - V_r) / tau_s + X[t]         (decay_input=False)

so ``tau = tau_s * dt``, ``v_leak = V_r`` and ``r = 1`` (decay_input=True) or
``r = tau_s`` (decay_input=False, the input is not divided by ``tau_s``). The IF
neuron (``dv/dt = r I``) needs ``r = 1 / dt``; the current-based LIF and the leaky
integrator follow the same rule (see ``docs/nir.md`` for the full table).

Everything here is plain arithmetic on floats and numpy arrays (no ``nir`` import), so
the maths is testable on its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from spikeflow.errors import ConfigurationError

__all__ = [
    "CONVENTIONS",
    "Convention",
    "LeakyMapping",
    "check_dt",
    "check_time_constant",
    "default_dt",
    "delay_steps",
    "if_gain",
    "if_to_nir",
    "leaky_from_nir",
    "leaky_to_nir",
    "uniform_value",
]

#: How a NIR graph's continuous time is read: the NIR specification with forward Euler
#: (``"nir"``), or the conventions of a peer library's exporter.
Convention = Literal["nir", "snntorch", "norse"]

#: The default ``dt`` of each convention: spikeflow counts time in steps (``dt = 1``);
#: snnTorch's exporter and importer assume ``dt = 1e-4``, Norse's ``dt = 1e-3``.
CONVENTIONS: dict[str, float] = {"nir": 1.0, "snntorch": 1e-4, "norse": 1e-3}

#: Relative tolerance when deciding that two float parameters are the same value (a
#: parameter that went through ``tau_s * dt`` and back differs in the last bits).
_RTOL = 1e-6


def check_dt(dt: object) -> float:
    """``dt`` as a float, if it is a finite number > 0."""
    if (
        isinstance(dt, bool)
        or not isinstance(dt, (int, float))
        or not (math.isfinite(dt) and dt > 0)
    ):
        raise ConfigurationError(f"dt must be a finite number > 0, got {dt!r}")
    return float(dt)


def default_dt(convention: str) -> float:
    """The ``dt`` a convention assumes (raises for an unknown convention)."""
    if convention not in CONVENTIONS:
        raise ConfigurationError(
            f"convention must be one of {sorted(CONVENTIONS)}, got {convention!r}"
        )
    return CONVENTIONS[convention]


def close(a: float, b: float) -> bool:
    """Whether two parameters are equal up to the rounding of a ``* dt`` round trip."""
    return abs(a - b) <= _RTOL * max(abs(a), abs(b), 1e-300) or a == b


def uniform_value(name: str, node: str, values: object) -> float | None:
    """The single value of ``values`` if all its entries are equal, else ``None``."""
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        raise ConfigurationError(f"NIR node '{node}': parameter {name} is empty")
    if not np.all(np.isfinite(array)):
        raise ConfigurationError(f"NIR node '{node}': parameter {name} is not finite")
    first = float(array.reshape(-1)[0])
    return first if bool(np.all(array == first)) else None


def check_time_constant(name: str, node: str, values: object, dt: float) -> None:
    """Raise unless every entry of the time constant ``values`` (NIR's ``tau``,
    ``tau_syn`` or ``tau_mem``, one value or one per neuron) is at least one step ``dt``
    (the message names the node and suggests the dt)."""
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0 or not np.all(np.isfinite(array)):
        uniform_value(name, node, array)  # raises: empty, or not finite
    shortest = float(array.min())
    if shortest >= dt:
        return
    which = "" if np.all(array == shortest) else f" (the shortest of {array.size} values)"
    raise ConfigurationError(
        f"NIR node '{node}': {name} = {shortest:g}{which} is shorter than one step "
        f"dt = {dt:g}; forward Euler would overshoot. Pass the dt the graph was made for "
        "(import_from_nir(..., dt=...)): snnTorch uses 1e-4, Norse 1e-3."
    )


# -- IF ---------------------------------------------------------------------------------


def if_to_nir(dt: float) -> float:
    """NIR ``r`` of spikeflow's IF (``H = V + X``): Euler ``v += dt r I`` needs ``r = 1/dt``."""
    return 1.0 / dt


def if_gain(r: float, dt: float, convention: str) -> float:
    """Factor on the input of an IF neuron imported from NIR (``dt r``; Norse ignores r)."""
    if convention == "norse":
        return 1.0  # Norse's IAF cell integrates v += x whatever r and dt are
    gain = dt * r
    return 1.0 if close(gain, 1.0) else gain


# -- LIF and LI (one leak) ----------------------------------------------------------------


@dataclass(frozen=True)
class LeakyMapping:
    """One leaky neuron in spikeflow's terms.

    ``tau`` is in steps; the neuron computes ``V + (gain X - (V - v_leak)) / tau``
    when ``decay_input`` (``gain`` is 1 unless NIR's ``r`` is neither 1 nor ``tau``),
    else ``V - (V - v_leak) / tau + X``.
    """

    tau: float
    decay_input: bool
    gain: float


def leaky_to_nir(tau: float, decay_input: bool, dt: float) -> tuple[float, float]:
    """NIR ``(tau, r)`` of a spikeflow leak with ``tau`` steps: ``(tau dt, 1 or tau)``."""
    return tau * dt, (1.0 if decay_input else tau)


def leaky_from_nir(tau: float, r: float, dt: float, convention: str, node: str) -> LeakyMapping:
    """spikeflow's ``(tau, decay_input, gain)`` for NIR's ``tau`` and ``r`` (uniform values).

    ``r == 1`` gives ``decay_input=True``; ``r == tau/dt`` gives ``decay_input=False``;
    any other ``r`` multiplies the input (``gain = r``) of a ``decay_input=True``
    neuron. Norse's LIF and LI cells ignore ``r`` (they read it as 1).
    """
    check_time_constant("tau", node, tau, dt)
    steps = tau / dt
    if convention == "norse" or close(r, 1.0):
        return LeakyMapping(steps, True, 1.0)
    if close(r, steps):
        return LeakyMapping(steps, False, 1.0)
    return LeakyMapping(steps, True, r)


# -- Delay --------------------------------------------------------------------------------


def delay_steps(delay: float, dt: float, node: str) -> int:
    """Whole steps of a NIR delay (``delay / dt``), which must be an integer."""
    steps = delay / dt
    k = round(steps)
    if k < 0 or abs(steps - k) > 1e-9 * max(1.0, abs(steps)):
        raise ConfigurationError(
            f"NIR node '{node}': delay {delay:g} is not a whole number of steps of "
            f"dt = {dt:g} ({steps:g} steps); spikeflow delays by whole steps"
        )
    return int(k)
