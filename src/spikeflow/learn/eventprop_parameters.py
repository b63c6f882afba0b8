"""The parameters of EventProp's current-based LIF (Norse's ``LIFParameters``), their
checks, and :func:`parameters_from_cuba`, the bridge from a
:class:`~spikeflow.neurons.CubaLIFNode`. The adjoint itself is in
:mod:`spikeflow.learn.eventprop`, which re-exports these names; the other adjoint
modules (:mod:`~spikeflow.learn.adjoint_refrac`, :mod:`~spikeflow.learn.adjoint_layers`,
:mod:`~spikeflow.learn.adjoint_lsnn`) build on them.
"""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor, nn

from spikeflow.errors import ConfigurationError
from spikeflow.learn._adjoint_common import check_euler_fields

__all__ = ["EVENTPROP_JUMPS", "NORSE_DEFAULTS", "LIFAdjointParameters", "parameters_from_cuba"]


#: The adjoints :func:`~spikeflow.learn.eventprop.lif_adjoint` offers (its module docstring).
EVENTPROP_JUMPS = ("eventprop", "norse")


class LIFAdjointParameters(NamedTuple):
    """Norse's ``LIFParameters`` (and its ``dt``) as plain floats; Norse's defaults.

    ``tau_syn_inv``, ``tau_mem_inv``: inverse time constants ``b``, ``a`` (1/s);
    ``v_leak``, ``v_th``, ``v_reset``: voltages; ``dt``: the step (s).
    """

    tau_syn_inv: float = 200.0
    tau_mem_inv: float = 100.0
    v_leak: float = 0.0
    v_th: float = 1.0
    v_reset: float = 0.0
    dt: float = 1e-3


#: Norse's ``LIFParameters()`` defaults with ``dt = 1e-3``.
NORSE_DEFAULTS = LIFAdjointParameters()


def _check_parameters(owner: str, p: object) -> LIFAdjointParameters:
    if not isinstance(p, LIFAdjointParameters):
        raise ConfigurationError(
            f"{owner}: p must be a LIFAdjointParameters, got {type(p).__name__}"
        )
    check_euler_fields(owner, p, ("tau_syn_inv", "tau_mem_inv"))
    return LIFAdjointParameters(*(float(value) for value in p))


def _check_jumps(owner: str, jumps: object) -> str:
    if not isinstance(jumps, str) or jumps not in EVENTPROP_JUMPS:
        raise ConfigurationError(f"{owner}: jumps must be one of {EVENTPROP_JUMPS}, got {jumps!r}")
    return jumps


def parameters_from_cuba(node: nn.Module) -> LIFAdjointParameters:
    """The parameters of a :class:`~spikeflow.neurons.CubaLIFNode` whose dynamics are this
    module's (and Norse's ``LIF``): ``r="tau_syn"``, hard reset, ``strict_firing=True``,
    binary spikes (not ``graded_spike``),
    fixed scalar time constants. The node's time constants are in the units of its
    ``dt``, so ``tau_syn_inv = 1/tau_syn``, ``tau_mem_inv = 1/tau_mem`` and ``dt`` is the
    node's; both then fire on the same steps from the same input currents (the node's
    membrane starts at ``v_reset``, this module's at ``v_leak``: equal when they are).

    Raises:
        ConfigurationError: ``node`` is not a ``CubaLIFNode``, or one of its settings has
            no counterpart here (it names which).
    """
    from spikeflow.neurons import CubaLIFNode

    if not isinstance(node, CubaLIFNode):
        raise ConfigurationError(
            f"parameters_from_cuba takes a CubaLIFNode, got {type(node).__name__}"
        )
    problems = []
    if node.r != "tau_syn":  # type: ignore[comparison-overlap]
        problems.append(f"r={node.r!r} (needs 'tau_syn': the current jumps by the input)")
    if node.v_reset is None:
        problems.append("soft reset (needs a hard reset, v_reset a float)")
    if not node.strict_firing:
        problems.append("strict_firing=False (Norse fires on h > v_th)")
    if getattr(node, "graded_spike", False):
        problems.append("graded_spike=True (EventProp's spikes are 0/1)")
    if getattr(node, "norm", None) is not None:
        problems.append("a norm on the current (EventProp's current is not normalised)")
    values = {}
    for name in ("tau_syn", "tau_mem", "v_leak", "v_threshold"):
        value = getattr(node, name)
        if isinstance(value, Tensor):
            if value.numel() != 1 or isinstance(value, nn.Parameter):
                problems.append(f"{name} a tensor or a learned parameter (needs a number)")
                continue
            value = float(value)
        values[name] = float(value)
    if problems:
        raise ConfigurationError(
            "parameters_from_cuba: this CubaLIFNode has no EventProp counterpart: "
            + "; ".join(problems)
        )
    dt = float(node.dt)
    return LIFAdjointParameters(
        tau_syn_inv=1.0 / values["tau_syn"],
        tau_mem_inv=1.0 / values["tau_mem"],
        v_leak=values["v_leak"],
        v_th=values["v_threshold"],
        v_reset=float(node.v_reset),  # type: ignore[arg-type]
        dt=dt,
    )
