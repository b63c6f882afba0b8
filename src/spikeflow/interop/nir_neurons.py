"""NIR neuron nodes (IF, LIF, CubaLIF, LI) to and from spikeflow neurons.

Export writes the NIR fields by the discretisation of :mod:`.nir_mapping` and keeps the
spikeflow constructor arguments in the node's metadata (``spikeflow_class``,
``spikeflow_kwargs``). Import rebuilds the exact spikeflow neuron from that metadata
when the metadata still agrees with the NIR fields (the graph was not edited since);
otherwise, and for graphs made by other tools, it reads the NIR fields.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from spikeflow.conversion.neuron import ConversionIFNode
from spikeflow.errors import ConfigurationError
from spikeflow.interop.nir_mapping import (
    check_time_constant,
    close,
    delay_steps,
    if_gain,
    if_to_nir,
    leaky_from_nir,
    leaky_to_nir,
    uniform_value,
)
from spikeflow.interop.nir_modules import Scale
from spikeflow.neurons import CubaLIFNode, IFNode, LIFNode, LINode, ParametricLIFNode
from spikeflow.neurons.base import BaseNode

__all__ = [
    "NEURON_TYPES",
    "full_array",
    "neuron_from_metadata",
    "neuron_from_nir",
    "neuron_to_nir",
]

#: The spikeflow neuron classes NIR can express (exact types: a subclass may change the
#: charge equation, so it is not exported as its parent).
NEURON_TYPES: dict[type, str] = {
    IFNode: "IF",
    # IF with soft reset and an initial membrane (conversion): soft_reset='metadata' only,
    # and unweighted (spikes 0/1; the next layer's weights carry θ).
    ConversionIFNode: "IF",
    LIFNode: "LIF",
    ParametricLIFNode: "LIF",
    CubaLIFNode: "CubaLIF",
    LINode: "LI",
}
_BY_NAME = {cls.__name__: cls for cls in NEURON_TYPES}
_MATCH_RTOL = 1e-6


def _numpy(value: float | Tensor) -> np.ndarray:
    if isinstance(value, Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


def full_array(value: float | Tensor, shape: tuple[int, ...]) -> np.ndarray:
    """``value`` (a number or a tensor) broadcast to ``shape``, as a new numpy array."""
    return np.array(np.broadcast_to(_numpy(value), shape))


def _in_use(module: nn.Module, name: str, low: float) -> float | Tensor:
    """Time constant ``name`` of ``module`` as its calls use it (detached): a learned one
    (an ``nn.Parameter``) clamped to ``>= low``, as the neuron clamps it at each call."""
    value = getattr(module, name)
    if name in module._parameters:
        return torch.clamp(value.detach(), min=low)
    return value.detach() if isinstance(value, Tensor) else value


def _meta_value(value: float | Tensor | bool) -> Any:
    """A value for the metadata (HDF5 cannot store 0-d arrays with compression)."""
    if isinstance(value, Tensor):
        return float(value.detach()) if value.dim() == 0 else value.detach().cpu().numpy()
    return value


def _base_kwargs(module: BaseNode) -> dict[str, Any]:
    theta = module.v_threshold
    return {
        "v_threshold": _meta_value(theta),
        "learnable_threshold": isinstance(theta, nn.Parameter),
        "soft_reset": module.v_reset is None,
        "v_reset": 0.0 if module.v_reset is None else module.v_reset,
        "strict_firing": module.strict_firing,
        "detach_reset": module.detach_reset,
    }


def neuron_to_nir(
    nir: ModuleType,
    module: nn.Module,
    shape: tuple[int, ...],
    dt: float,
    soft_reset: str,
    name: str,
) -> Any:
    """The NIR node of a spikeflow neuron whose per-sample shape is ``shape``."""
    cls = type(module)
    if cls not in NEURON_TYPES:  # before the reset check: no reset makes it expressible
        hint = getattr(module, "nir_hint", "")  # a class's own advice (TrainableIFNode's)
        raise ConfigurationError(
            f"'{name}': {cls.__name__} is not a neuron NIR can express"
            + (f" ({hint})" if hint else "")
        )
    if isinstance(module, BaseNode) and module.v_reset is None and soft_reset != "metadata":
        raise ConfigurationError(
            f"{cls.__name__} at '{name}' uses soft reset (v_reset=None), which NIR cannot "
            "express: NIR neurons reset to v_reset. Use a hard reset, or pass "
            "soft_reset='metadata' to keep it as spikeflow metadata (read back only by "
            "spikeflow; other tools will reset to 0)"
        )
    if getattr(module, "graded_spike", False):
        raise ConfigurationError(
            f"{cls.__name__} at '{name}' has graded_spike=True (Lava-DL's graded spikes, "
            "the membrane's value), which NIR's CubaLIF cannot express: its neurons emit "
            "0/1 spikes"
        )
    if getattr(module, "norm", None) is not None:
        raise ConfigurationError(
            f"{cls.__name__} at '{name}' has a norm on its current (Lava-DL's norm=), which "
            "NIR's CubaLIF cannot express (it has no normalisation between its current and "
            "its voltage)"
        )
    kwargs: dict[str, Any] = _base_kwargs(module) if isinstance(module, BaseNode) else {}
    if isinstance(module, BaseNode):
        theta = full_array(module.v_threshold, shape)
        v_reset = np.full(shape, kwargs["v_reset"], dtype=np.float64)
    if cls is ConversionIFNode and module.weighted:
        raise ConfigurationError(
            f"ConversionIFNode at '{name}' outputs spikes worth θ, NIR neurons output 0/1: "
            "export the whole ConvertedSNN (export_to_nir folds θ into the next layer), or "
            "use weighted=False with θ in the next layer's weights"
        )
    if cls is ConversionIFNode:
        kwargs.pop("v_reset")
        kwargs.update(initial_membrane=module.initial_membrane, weighted=False)
    if cls in (IFNode, ConversionIFNode):
        node = nir.IF(r=np.full(shape, if_to_nir(dt)), v_threshold=theta, v_reset=v_reset)
    elif cls in (LIFNode, ParametricLIFNode):
        # (a tensor tau: one per neuron or channel, learned or not)
        # (a learned tau as the neuron uses it: clamped to >= 1)
        tau = module.current_tau if cls is ParametricLIFNode else _in_use(module, "tau", 1.0)
        if cls is ParametricLIFNode:
            kwargs.update(init_tau=_meta_value(tau), w=_meta_value(module.w))
        else:
            kwargs["tau"] = _meta_value(tau)
            if "tau" in module._parameters:
                kwargs["learnable_tau"] = True
        kwargs["decay_input"] = module.decay_input
        tau_c, r = leaky_to_nir(tau, module.decay_input, dt)  # type: ignore[arg-type]
        node = nir.LIF(
            tau=full_array(tau_c, shape),
            r=full_array(r, shape),
            v_leak=v_reset.copy(),
            v_threshold=theta,
            v_reset=v_reset,
        )
    elif cls is CubaLIFNode:
        scale = dt / module.dt
        taus = {k: _in_use(module, k, module.dt) for k in ("tau_syn", "tau_mem")}
        kwargs.update(
            {k: _meta_value(value) for k, value in taus.items()},
            **{k: _meta_value(getattr(module, k)) for k in ("r", "v_leak")},
            dt=module.dt,
        )
        kwargs.update({f"learnable_{k}": True for k in ("tau_syn", "tau_mem")
                       if k in module._parameters})  # fmt: skip
        node = nir.CubaLIF(
            tau_syn=full_array(taus["tau_syn"], shape) * scale,
            tau_mem=full_array(taus["tau_mem"], shape) * scale,
            r=full_array(module.current_r, shape),  # r tied to the taus: its value
            v_leak=full_array(module.v_leak, shape),
            v_threshold=theta,
            v_reset=v_reset,
        )
    elif cls is LINode:
        li_tau = _in_use(module, "tau", 1.0)
        kwargs.update(
            tau=_meta_value(li_tau),
            decay_input=module.decay_input,
            v_leak=_meta_value(module.v_leak),
        )
        if "tau" in module._parameters:
            kwargs["learnable_tau"] = True
        tau = full_array(li_tau, shape)
        node = nir.LI(
            tau=tau * dt,
            r=np.ones(shape) if module.decay_input else tau.copy(),
            v_leak=full_array(module.v_leak, shape),
        )
    else:
        raise ConfigurationError(f"'{name}': {cls.__name__} is not a neuron NIR can express")
    node.metadata = {"spikeflow_class": cls.__name__, "spikeflow_kwargs": kwargs}
    return node


def _decode(value: Any) -> Any:
    """A metadata value read back from NIR (numpy scalars, arrays, bytes) as Python/torch."""
    if isinstance(value, bytes):
        return value.decode("utf8")
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, np.ndarray):
        if value.ndim == 0:
            return _decode(value[()])
        return torch.from_numpy(np.array(value))
    if isinstance(value, (np.floating, np.integer, int, float)):
        return float(value)
    return value


def neuron_from_metadata(
    nir: ModuleType, node: Any, shape: tuple[int, ...], dt: float, name: str
) -> nn.Module | None:
    """The exact spikeflow neuron stored in ``node.metadata``, if it matches the node."""
    meta = getattr(node, "metadata", None) or {}
    cls = _BY_NAME.get(str(_decode(meta.get("spikeflow_class", ""))))
    raw = meta.get("spikeflow_kwargs")
    if cls is None or not isinstance(raw, dict) or NEURON_TYPES[cls] != type(node).__name__:
        return None
    kwargs = {key: _decode(value) for key, value in raw.items()}
    soft = bool(kwargs.pop("soft_reset", False))
    w = kwargs.pop("w", None)
    if soft:
        kwargs["v_reset"] = None
    if cls is LINode:
        kwargs.pop("v_reset", None)
    try:
        module = cls(**kwargs)
    except (TypeError, ValueError):
        return None
    if w is not None:
        with torch.no_grad():
            module.w.copy_(torch.as_tensor(w))  # one w per layer, or per element
    again = neuron_to_nir(nir, module, shape, dt, "metadata", name)
    for field in ("tau", "tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset"):
        if hasattr(node, field) and getattr(node, field) is not None:
            ours = np.asarray(getattr(again, field), dtype=np.float64)
            theirs = np.asarray(getattr(node, field), dtype=np.float64)
            if ours.shape != theirs.shape or not np.allclose(
                ours, theirs, rtol=_MATCH_RTOL, atol=1e-12
            ):
                return None
    return module


def _value(values: Any, name: str, field: str, dtype: torch.dtype) -> float | Tensor:
    """A uniform parameter as a float, a per-neuron one as a tensor."""
    single = uniform_value(field, name, values)
    if single is not None:
        return single
    return torch.as_tensor(np.asarray(values, dtype=np.float64), dtype=dtype)


def _time(values: Any, dt: float, convention: str) -> np.ndarray:
    """NIR time constants in seconds. Norse's exporter writes ``dt / tau_inv = tau dt``."""
    array = np.asarray(values, dtype=np.float64)
    return array / dt if convention == "norse" else array


def _tau(
    values: Any, name: str, field: str, dt: float, convention: str, dtype: torch.dtype
) -> float | Tensor:
    """A time constant in seconds (a float, or a per-neuron tensor), each entry >= ``dt``
    (the error names the node and suggests the dt)."""
    seconds = _time(values, dt, convention)
    check_time_constant(field, name, seconds, dt)
    return _value(seconds, name, field, dtype)


def _gain(gain: float | Tensor) -> list[nn.Module]:
    if isinstance(gain, float) and close(gain, 1.0):
        return []
    return [Scale(gain)]


def _sequence(modules: list[nn.Module]) -> nn.Module:
    return modules[0] if len(modules) == 1 else nn.Sequential(*modules)


def neuron_from_nir(
    node: Any, name: str, dt: float, convention: str, dtype: torch.dtype
) -> nn.Module:
    """A spikeflow module that runs the NIR neuron ``node`` with step ``dt``.

    Firing is strict (``v > v_threshold``), as NIR specifies. A gain on the input
    (``r`` that is neither 1 nor ``tau/dt``, CubaLIF's ``w_in``) becomes a
    :class:`~spikeflow.interop.nir_modules.Scale` in front of the neuron.
    """
    kind = type(node).__name__
    firing: dict[str, Any] = {}
    if kind in ("IF", "LIF", "CubaLIF"):
        v_reset = uniform_value("v_reset", name, node.v_reset)
        if v_reset is None:
            raise ConfigurationError(
                f"NIR node '{name}' ({kind}): per-neuron v_reset values are not supported "
                "(spikeflow neurons share one reset value)"
            )
        firing = {
            "v_threshold": _value(node.v_threshold, name, "v_threshold", dtype),
            "v_reset": v_reset,
            "strict_firing": True,
        }
    if kind == "IF":
        r = _value(node.r, name, "r", dtype)
        gain = if_gain(r, dt, convention) if isinstance(r, float) else r * dt
        if convention == "norse":
            gain = 1.0
        return _sequence([*_gain(gain), IFNode(**firing)])
    if kind == "CubaLIF":
        w_in = _value(node.w_in, name, "w_in", dtype)
        tau_syn = _tau(node.tau_syn, name, "tau_syn", dt, convention, dtype)
        gain = w_in * (tau_syn / dt) if convention == "norse" else w_in
        neuron = CubaLIFNode(
            tau_syn=tau_syn,
            tau_mem=_tau(node.tau_mem, name, "tau_mem", dt, convention, dtype),
            r=_value(node.r, name, "r", dtype),
            v_leak=_value(node.v_leak, name, "v_leak", dtype),
            dt=dt,
            **firing,
        )
        return _sequence([*_gain(gain), neuron])
    if kind in ("LIF", "LI"):
        tau_t = _tau(node.tau, name, "tau", dt, convention, dtype)
        tau = tau_t if isinstance(tau_t, float) else None
        r = uniform_value("r", name, node.r)
        v_leak = uniform_value("v_leak", name, node.v_leak)
        if convention == "norse":
            r = 1.0
        leak_matches = kind == "LI" or (v_leak is not None and v_leak == firing["v_reset"])
        if tau is not None and r is not None and v_leak is not None and leak_matches:
            mapping = leaky_from_nir(tau, r, dt, convention, name)
            if kind == "LI":
                neuron: nn.Module = LINode(mapping.tau, mapping.decay_input, v_leak)
                return _sequence([*_gain(mapping.gain), neuron])
            if mapping.tau > 1.0:
                neuron = LIFNode(mapping.tau, mapping.decay_input, **firing)
                return _sequence([*_gain(mapping.gain), neuron])
        # Per-neuron values, or a leak target other than the reset value: the Euler step
        # v + (dt/tau)(v_leak - v + r I) is CubaLIFNode's membrane with an instantaneous
        # synapse (tau_syn = dt), or LINode with per-neuron tensors.
        r_t = 1.0 if convention == "norse" else _value(node.r, name, "r", dtype)
        leak_t = _value(node.v_leak, name, "v_leak", dtype)
        if kind == "LI":
            return _sequence([*_gain(r_t), LINode(tau_t / dt, True, leak_t)])
        return CubaLIFNode(tau_syn=dt, tau_mem=tau_t, r=r_t, v_leak=leak_t, dt=dt, **firing)
    raise ConfigurationError(f"NIR node '{name}': {kind} is not a neuron spikeflow can import")


def delay_from_nir(node: Any, name: str, dt: float) -> int:
    """Whole steps of a NIR ``Delay`` node (one delay shared by all neurons)."""
    value = uniform_value("delay", name, node.delay)
    if value is None:
        raise ConfigurationError(
            f"NIR node '{name}' (Delay): per-neuron delays are not supported "
            "(spikeflow.layers.Delay delays all neurons by the same number of steps)"
        )
    return delay_steps(value, dt, name)
