"""Training on Loihi's grids: Lava-DL's quantization-aware training of CUBA networks.

Lava-DL's SLAYER blocks train with everything the chip holds already on the chip's
grids (``lava-nc/lava-dl``, ``src/lava/lib/dl/slayer``): the synapse's ``pre_hook_fx``
is the neuron's ``quantize_8bit`` (``quantize(w, step=2/64)`` clamped to ``[-256, 254] /
64``, a rounding with a straight-through gradient, ``utils/quantize.py``), the decays
are ``quantize``-d to whole 4096ths (``neuron/cuba.py``), the threshold is truncated to
``int(64 θ) / 64`` when the neuron is built (``neuron/base.py``) and the states are
computed in integers, ``1/4096`` of a float unit each, with Loihi's truncating decays
(``neuron/dynamics/leaky_integrator.py``); the backward is the float recurrence.
:func:`loihi_grid` does the same to a spikeflow network of ``Linear`` / ``Conv2d`` and
:class:`~spikeflow.neurons.CubaLIFNode` (Lava-DL's CUBA: ``r="tau_syn*tau_mem"``,
``v_reset=0``):

* each synapse's weight gets a :class:`LoihiWeightGrid` parametrization, ``w_q =
  clamp(2 round(32 w), -256, 254) / 64``: exactly the integers
  :func:`~spikeflow.interop.export_netx` writes, divided by its weight scale 64 (weight
  exponent 0); the gradient passes straight through the rounding and is zero where the
  clamp cuts (as Lava-DL's ``clamp`` after ``quantize``);
* each neuron gets a :class:`LoihiCubaGrid` (in its ``membrane_quantizer`` slot, where
  :class:`~spikeflow.neurons.base.BaseNode` takes a quantized charge equation): the
  decays become ``iDecay / 4096`` and ``vDecay / 4096`` with ``iDecay = round(4096 /
  tau_syn)`` as the export computes it (a learned time constant keeps learning through
  a straight-through gradient), the threshold is set to ``vThMant / 64`` with
  ``vThMant = int(64 θ)`` and the neuron fires on ``v > θ`` (Loihi's strict
  comparison). With ``fixed_point=True`` (default) the charge computes Loihi's integer
  states exactly (see :func:`loihi_cuba_charge`): the network's float forward gives the
  spikes of ``import_netx(export_netx(net))``, bit for bit.

See ``docs/loihi.md``.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from spikeflow.errors import ConfigurationError
from spikeflow.kernels.fused import functorch_active
from spikeflow.neurons.base import BaseNode
from spikeflow.neurons.declaration import NeuronDeclaration, declare
from spikeflow.prune.reparam import PRUNABLE_TYPES, REPARAMETERISATIONS
from spikeflow.quant.loihi import (
    STATE_SCALE,
    UV_LIMIT,
    WEIGHT_MAX,
    WEIGHT_MIN,
    WEIGHT_SCALE,
    cuba_device_params,
    lava_weight_integers,
)
from spikeflow.quant.weights import WeightQuantizer

__all__ = [
    "LoihiCubaGrid",
    "LoihiWeightGrid",
    "loihi_cuba_charge",
    "loihi_grid",
    "loihi_weight_integers",
]

_UNITS = float(STATE_SCALE)  # a float unit of state is 4096 Loihi units
_INV_UNITS = 1.0 / _UNITS  # exact: a power of two
_LIMIT = float(UV_LIMIT)


def loihi_weight_integers(weight: Tensor) -> Tensor:
    """The integers Lava-DL's ``quantize_8bit(w, descale=True)`` gives (its export and
    :func:`~spikeflow.interop.export_netx`'s): ``clamp(2 round(32 w), -256, 254)`` as
    ``int64``, ``torch.round`` (halves to even).

    Raises:
        DTypeError: ``weight`` is not a floating-point tensor.
    """
    return lava_weight_integers(weight, "loihi_weight_integers")


class LoihiWeightGrid(nn.Module):
    """Weights on Lava-DL's 8-bit grid: ``w_q = clamp(2 round(32 w), -256, 254) / 64``
    (steps of ``1/32``, from ``-4`` to ``3.96875``), with the gradient of Lava-DL's
    ``quantize`` then ``clamp``: ``∂w_q/∂w = 1`` where ``2 round(32 w)`` is in
    ``[-256, 254]``, else 0.

    Computed in the weight's dtype (exact: the scalings are powers of two). Held as a
    ``torch.nn.utils.parametrize`` parametrization of a layer's ``weight`` (set by
    :func:`loihi_grid`); :func:`spikeflow.prune.finalize` bakes it into a plain layer.
    """

    def forward(self, weight: Tensor) -> Tensor:
        """The weight on the grid (straight-through gradient)."""
        level = torch.round(weight.detach() * (WEIGHT_SCALE / 2)) * 2
        inside = (level >= WEIGHT_MIN) & (level <= WEIGHT_MAX)
        grid = level.clamp(WEIGHT_MIN, WEIGHT_MAX) / WEIGHT_SCALE
        # weight - weight.detach() is exactly zero (for finite weights) and carries dw.
        return grid + torch.where(inside, weight - weight.detach(), torch.zeros_like(weight))

    def integers(self, weight: Tensor) -> Tensor:
        """The chip's integer weights (``int64``): ``64 w_q``."""
        return loihi_weight_integers(weight)

    def right_inverse(self, weight: Tensor) -> Tensor:
        """Assigning a weight stores it as it is (it is put on the grid when used)."""
        return weight


REPARAMETERISATIONS.append(LoihiWeightGrid)


# -- the neuron -------------------------------------------------------------------------


def _decay_level(decay: Tensor | float) -> tuple[Tensor | float, Tensor | float]:
    """``(level, fraction)`` of a decay ``dt / tau``: ``level = round(4096 decay)`` (half
    to even, as ``torch.round`` in the export, of ``4096 decay`` rounded to float32 as
    the export rounds it, whatever the network's dtype; no gradient) and ``fraction =
    level / 4096`` with the straight-through gradient of ``decay``."""
    if not isinstance(decay, Tensor) and not hasattr(decay, "detach"):
        # A fixed time constant: rounded as the export rounds it (float32, half to even).
        level = float(np.round(np.float32(decay * _UNITS)))
        return level, level * _INV_UNITS
    # A learned one: in float32 too (a float64 4096/tau just below a half rounds to the
    # half in float32, which the export then rounds to even).
    scaled = (decay * _UNITS).detach().to(torch.float32)
    level = torch.floor(scaled + 0.5)
    tie = (level - scaled) == 0.5
    odd = (level - 2.0 * torch.floor(level * 0.5)) == 1.0
    level = torch.where(tie & odd, level - 1.0, level)
    return level, level * _INV_UNITS + (decay - decay.detach())


def _truncated_decay(units: Tensor, keep: Tensor | float) -> Tensor:
    """``sign(p) (|p| >> 12)`` of ``p = units · keep`` (Lava's decay, rounding towards
    zero), exact in float32 for integer ``|units| < 2^24`` and ``keep <= 4096``: ``|units|``
    is split into ``hi · 4096 + lo`` so that no product needs more than 24 bits."""
    magnitude = torch.abs(units)
    hi = torch.floor(magnitude * _INV_UNITS)
    lo = magnitude - hi * _UNITS
    return torch.sign(units) * (hi * keep + torch.floor(lo * keep * _INV_UNITS))


def loihi_cuba_charge(
    x: Tensor,
    v: Tensor,
    i: Tensor,
    *,
    syn_decay: Tensor | float,
    mem_decay: Tensor | float,
    r: Tensor | float,
    v_leak: Tensor | float,
) -> tuple[Tensor, Tensor]:
    """Lava-DL's CUBA step on Loihi's integers (the charge of a :class:`LoihiCubaGrid`
    neuron; ``r`` and ``v_leak`` are the ``CubaLIFNode``'s, ``"tau_syn*tau_mem"`` and 0,
    and not read).

    In Loihi units (``1/4096`` of a float unit), with ``keep_u = 4096 − iDecay``, ``keep_v
    = 4096 − vDecay`` (``iDecay = round(4096 · syn_decay)``)::

        a = trunc(4096 x)                       (Lava-DL's input; exact on the weight grid)
        u = sign(u·keep_u) (|u·keep_u| >> 12) + a,   wrapped once into (−2^23, 2^23]
        h = clip(sign(v·keep_v) (|v·keep_v| >> 12) + u, −(2^23 − 1), 2^23 − 1)

    which is Lava's ``PyLifModelBitAcc`` with ``a`` the synaptic sum shifted by 6. The
    values are exact in float32 while ``|u|`` before the wrap stays below ``2^24`` (any
    synaptic sum below ``2^17`` weight units). The gradient is that of the float
    recurrence ``u = (1 − iDecay/4096) u + x``, ``h = (1 − vDecay/4096) v + u`` (Lava-DL's
    backward for the input; for the decays the derivative, where Lava-DL's differs, see
    ``docs/loihi.md``), through the truncations as if they were not there. ``i`` holds ``u``
    (Lava-DL's current, ``tau_syn`` times the ``CubaLIFNode``'s ``I``).
    """
    du, alpha = _decay_level(syn_decay)
    dv, beta = _decay_level(mem_decay)
    i_float = i * (1.0 - alpha) + x
    h_float = v * (1.0 - beta) + i_float
    scaled = x.detach() * _UNITS
    a = torch.sign(scaled) * torch.floor(torch.abs(scaled))
    current = _truncated_decay(i.detach() * _UNITS, _UNITS - du) + a
    wrapped = torch.where(current > _LIMIT, current - 2 * _LIMIT, current)
    u = torch.where(wrapped <= -_LIMIT, current + 2 * _LIMIT, wrapped)
    charged = _truncated_decay(v.detach() * _UNITS, _UNITS - dv) + u
    charged = torch.clamp(charged, -_LIMIT + 1, _LIMIT - 1)
    # value + (f - f.detach()): the exact value, with the float recurrence's gradient.
    return (
        charged * _INV_UNITS + (h_float - h_float.detach()),
        u * _INV_UNITS + (i_float - i_float.detach()),
    )


def loihi_cuba_grid_charge(
    x: Tensor,
    v: Tensor,
    i: Tensor,
    *,
    syn_decay: Tensor | float,
    mem_decay: Tensor | float,
    r: Tensor | float,
    v_leak: Tensor | float,
) -> tuple[Tensor, Tensor]:
    """Lava-DL's float CUBA step with the decays on their 12-bit grid (a
    :class:`LoihiCubaGrid` with ``fixed_point=False``): ``u = (1 − iDecay/4096) u + x``,
    ``h = (1 − vDecay/4096) v + u``, states in float (no truncation). ``i`` holds ``u``."""
    _, alpha = _decay_level(syn_decay)
    _, beta = _decay_level(mem_decay)
    u = i * (1.0 - alpha) + x
    return v * (1.0 - beta) + u, u


#: The float dtypes whose significand holds Loihi's 24-bit states.
_STATE_DTYPES = (torch.float32, torch.float64)
#: The largest synaptic input (float units) for which the fixed-point charge is Loihi's:
#: a sum below ``2^17`` weight units (``2^23`` state units), so that the current before
#: its one wrap stays below ``2^24`` (exact in float32; no int32 overflow in Lava).
INPUT_LIMIT = float(1 << 11)


def _refuse_inexact_input(name: str, neuron: nn.Module, args: tuple[Any, ...]) -> None:
    """A forward pre-hook that :func:`loihi_grid` puts on each neuron: a ConfigurationError
    naming the neuron for a synaptic input of ``|x| >= 2048`` (or NaN) while its charge
    computes Loihi's integers, where the float forward would silently differ from the
    chip. Skipped inside ``torch.compile``, ``torch.func`` transforms and tracing (no
    value to read there)."""
    grid = neuron._modules.get("membrane_quantizer")
    x = args[0] if args else None
    if (
        not isinstance(grid, LoihiCubaGrid)
        or not grid.fixed_point
        or not isinstance(x, Tensor)
        or not x.is_floating_point()
        or x.numel() == 0
        or torch.compiler.is_compiling()
        or torch.jit.is_tracing()
        or functorch_active()
    ):
        return
    peak = float(x.detach().abs().amax())
    if not peak < INPUT_LIMIT:  # (NaN too)
        raise ConfigurationError(
            f"loihi_grid: {name!r} receives a synaptic input of {peak:g} (|x| must stay "
            f"below {INPUT_LIMIT:g}, a sum of 2^17 weight units): beyond it the float charge "
            "no longer computes Loihi's integers exactly (float32 rounds the current, Lava's "
            "int32 arithmetic overflows); scale the weights or the input down"
        )


def _refuse_off_grid_threshold(name: str, neuron: nn.Module, args: tuple[Any, ...]) -> None:
    """A forward pre-hook that :func:`loihi_grid` puts on each neuron: a
    ConfigurationError naming the neuron when its ``v_threshold`` was changed after
    :func:`loihi_grid` to a value off Loihi's grid (``64 θ`` an integer in ``[1, 2^17]``),
    to a per-neuron tensor or to a learnable one. Cheap: a threshold already checked (the
    same float, or the same tensor at the same in-place version) is not read again; a
    tensor threshold is skipped inside ``torch.func`` transforms and tracing (no value
    to read there), any inside ``torch.compile``; an inference tensor (no in-place
    version) is read at every call."""
    grid = neuron._modules.get("membrane_quantizer")
    theta = neuron.v_threshold
    if not isinstance(grid, LoihiCubaGrid) or torch.compiler.is_compiling():
        return
    if isinstance(theta, Tensor):
        # an inference tensor (built or moved under torch.inference_mode) has no version
        # counter: it is checked at every call
        version = None if theta.is_inference() else theta._version
        key: Any = (theta, version)
        checked = grid.checked_threshold
        same = isinstance(checked, tuple) and checked[0] is theta and checked[1] == version
        if same and version is not None:
            return
        if torch.jit.is_tracing() or functorch_active():
            return
    elif theta == grid.checked_threshold:
        return
    else:
        key = theta
    owner = f"loihi_grid: {name!r}"
    if isinstance(theta, nn.Parameter):
        raise ConfigurationError(
            f"{owner}: its v_threshold became a learnable parameter after loihi_grid; "
            "Lava-DL's CUBA threshold is fixed on Loihi's grid"
        )
    if isinstance(theta, Tensor) and theta.numel() != 1:
        raise ConfigurationError(
            f"{owner}: its v_threshold became a tensor of shape {tuple(theta.shape)} after "
            "loihi_grid; Loihi's LIF takes one threshold for all neurons"
        )
    value = float(theta.detach().reshape(())) if isinstance(theta, Tensor) else float(theta)
    mantissa = value * WEIGHT_SCALE
    if not (math.isfinite(mantissa) and mantissa == int(mantissa) and 1 <= mantissa <= 1 << 17):
        nearest = (
            f"; int(64 θ) / 64 = {int(mantissa) / WEIGHT_SCALE:g}"
            if math.isfinite(mantissa)
            else ""
        )
        raise ConfigurationError(
            f"{owner}: v_threshold={value:g} (changed after loihi_grid) is off Loihi's "
            f"threshold grid: 64 θ must be an integer vThMant in [1, {1 << 17}]{nearest}; "
            "set it to a multiple of 1/64"
        )
    grid.checked_threshold = key


class LoihiCubaGrid(nn.Module):
    """A :class:`~spikeflow.neurons.CubaLIFNode` on Loihi's grids (set by
    :func:`loihi_grid` as the neuron's ``membrane_quantizer``): its charge equation
    becomes :func:`loihi_cuba_charge` (``fixed_point=True``: Loihi's integer states,
    exactly) or :func:`loihi_cuba_grid_charge` (``fixed_point=False``: the decays on
    their grid, float states). The fused kernels are generated from it as from any
    charge. The setting is saved in the state dict (a state dict of the other setting
    is refused on load, naming both).

    Args:
        fixed_point: compute the states in Loihi's integers (default True).
    """

    def __init__(self, fixed_point: bool = True) -> None:
        super().__init__()
        if not isinstance(fixed_point, bool):
            raise ConfigurationError(
                f"LoihiCubaGrid: fixed_point must be a bool, got {fixed_point!r}"
            )
        self.fixed_point = fixed_point
        self.register_buffer("settings", torch.tensor([int(fixed_point)]))
        #: the neuron's threshold last found on the grid (its float, or its tensor and
        #: in-place version): :func:`loihi_grid`'s pre-hook does not check it again
        self.checked_threshold: Any = None

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        saved = state_dict.get(prefix + "settings")
        if isinstance(saved, Tensor) and saved.shape == (1,) and bool(saved[0]) != self.fixed_point:
            args[-1].append(
                f"{prefix}settings: the state dict's neuron ran on Loihi's grid with "
                f"fixed_point={bool(saved[0])}, this one with fixed_point={self.fixed_point}"
            )
            return
        super()._load_from_state_dict(state_dict, prefix, *args)

    def check_dtype(self, dtype: torch.dtype, owner: str) -> None:
        """Raise a ConfigurationError naming ``owner`` for a dtype that cannot hold
        Loihi's 24-bit states (float16, bfloat16: autocast, ``--amp``)."""
        if self.fixed_point and dtype not in _STATE_DTYPES:
            raise ConfigurationError(
                f"{owner}: Loihi's 24-bit states do not fit a {dtype} membrane (autocast and "
                "--amp compute the neurons in it): run the neurons in float32 or float64"
            )

    def grid(self, theta: Tensor | float) -> dict[str, Tensor | float]:
        """The charge's added parameters: none (the grid's constants are in it)."""
        return {}

    def quantized(self, decl: NeuronDeclaration) -> NeuronDeclaration:
        """The declaration with the Loihi charge in place of ``decl``'s (a
        ``CubaLIFNode``'s)."""
        charge = loihi_cuba_charge if self.fixed_point else loihi_cuba_grid_charge
        return declare(
            charge, decl.update, f"{decl.name}_loihi", True, decl.threshold, decl.reset_membrane
        )

    def extra_repr(self) -> str:
        return f"fixed_point={self.fixed_point}"


# -- applying it ------------------------------------------------------------------------


def _check_neuron(name: str, neuron: BaseNode) -> int:
    """``vThMant`` of a neuron the grid can take; a ConfigurationError naming it if not."""
    from spikeflow.neurons import CubaLIFNode

    owner = f"loihi_grid: {name!r}"
    if not isinstance(neuron, CubaLIFNode):
        raise ConfigurationError(
            f"{owner} is a {type(neuron).__name__}: Loihi's neuron (netx's CUBA) is a "
            "neurons.CubaLIFNode(r='tau_syn*tau_mem', v_reset=0.0)"
        )
    if neuron._modules.get("membrane_quantizer") is not None:
        raise ConfigurationError(
            f"{owner}: its membrane is quantized already ({neuron.membrane_quantizer})"
        )
    if neuron.norm is not None:
        raise ConfigurationError(
            f"{owner} has a norm on its current (Lava-DL's norm=): the grid's membrane "
            "charge has no normalisation between the current and the voltage"
        )
    if isinstance(neuron.v_threshold, nn.Parameter):
        raise ConfigurationError(
            f"{owner}: a learnable threshold would leave Loihi's threshold grid (Lava-DL's "
            "CUBA threshold is fixed): build it with learnable_threshold=False"
        )
    try:
        params = cuba_device_params(neuron)
    except ConfigurationError as error:
        raise ConfigurationError(f"{owner}: {error}") from error
    return params["v_th_mant"]


def _check_synapse(name: str, layer: nn.Module) -> None:
    owner = f"loihi_grid: {name!r}"
    if not isinstance(layer, (nn.Linear, nn.Conv2d)):
        raise ConfigurationError(
            f"{owner} is a {type(layer).__name__}: Loihi's synapses (netx) are dense or 2-d "
            "convolutions (Linear, Conv2d)"
        )
    bias = getattr(layer, "bias", None)
    # A zero bias that trains would leave zero at the first step (and the export then
    # refuses the trained network): only a frozen zero bias is the chip's.
    if bias is not None and (bias.requires_grad or bool(bias.ne(0).any())):
        trainable = " (a trainable one, zero or not)" if bias.requires_grad else ""
        raise ConfigurationError(
            f"{owner}: the layer has a bias{trainable}; Loihi adds a bias to the voltage, "
            "not to the current: build it with bias=False"
        )
    if isinstance(layer, nn.Conv2d) and (
        layer.padding_mode != "zeros" or isinstance(layer.padding, str)
    ):
        raise ConfigurationError(
            f"{owner}: netx convolutions pad with zeros given as numbers, got "
            f"padding={layer.padding!r}, padding_mode={layer.padding_mode!r}"
        )
    if parametrize.is_parametrized(layer, "weight"):
        chain = list(layer.parametrizations.weight)
        if any(isinstance(p, (LoihiWeightGrid, WeightQuantizer)) for p in chain):
            names = ", ".join(type(p).__name__ for p in chain)
            raise ConfigurationError(f"{owner}: its weight is quantized already ({names})")


def _walk(module: nn.Module, prefix: str, found: list[tuple[str, nn.Module]]) -> None:
    """The neurons and synapses under ``module``; refuses what the chip cannot hold."""
    from spikeflow.interop.netx import NETX_MAX_DELAY
    from spikeflow.layers import AxonalDelay, Flatten
    from spikeflow.layers.sigma_delta import DeltaEncoder, DeltaSynapse, SigmaDecoder, SigmaDelta

    for child_name, child in module.named_children():
        name = f"{prefix}.{child_name}" if prefix else child_name
        if isinstance(child, (BaseNode, *PRUNABLE_TYPES)):
            found.append((name, child))
        elif isinstance(child, AxonalDelay):
            if child.interpolate:
                raise ConfigurationError(
                    f"loihi_grid: {name!r} (AxonalDelay) interpolates between whole delays; "
                    "Loihi's delays are whole steps (the export floors them): build it with "
                    "interpolate=False"
                )
            # What export_netx writes, checked now rather than after the training.
            if len(child.shape) != 1:
                raise ConfigurationError(
                    f"loihi_grid: {name!r} (AxonalDelay) has delays of shape {child.shape}; "
                    "netx stores one delay per channel: build it with AxonalDelay(channels, ...)"
                )
            if child.learnable:
                reach = f"may learn delays up to max_delay={child.max_delay}"
                beyond = child.max_delay > NETX_MAX_DELAY
            else:
                largest = float(child.delay.detach().clamp(0, child.max_delay).max())
                reach, beyond = f"has delays up to {largest:g}", largest >= NETX_MAX_DELAY + 1
            if beyond:
                raise ConfigurationError(
                    f"loihi_grid: {name!r} (AxonalDelay) {reach} steps; netx accepts at most "
                    f"{NETX_MAX_DELAY}: build it with max_delay <= {NETX_MAX_DELAY}"
                )
        elif isinstance(child, (Flatten, nn.Flatten, nn.Dropout, nn.Identity)):
            continue
        elif isinstance(child, (DeltaEncoder, SigmaDelta, SigmaDecoder, DeltaSynapse)):
            raise ConfigurationError(
                f"loihi_grid: {name!r} ({type(child).__name__}) belongs to a sigma-delta "
                "network: put it on Loihi's grid with quant.loihi_sdnn_grid"
            )
        elif len(child._modules):
            _walk(child, name, found)
        else:
            raise ConfigurationError(
                f"loihi_grid: {name!r} ({type(child).__name__}) has no counterpart on Loihi "
                "(netx networks hold Linear / Conv2d synapses, CubaLIFNode neurons, "
                "AxonalDelay and Flatten)"
            )


def loihi_grid(model: nn.Module, fixed_point: bool = True) -> list[str]:
    """Train ``model`` on Loihi's grids, as Lava-DL's blocks train (see the module
    docstring); returns the names of the synapses and neurons put on them.

    Every ``Linear`` / ``Conv2d`` gets a :class:`LoihiWeightGrid` (after any
    parametrization it has: weight norm, pruning), every ``CubaLIFNode`` a
    :class:`LoihiCubaGrid`, its threshold set to ``int(64 θ) / 64`` and its firing made
    strict. :func:`~spikeflow.interop.export_netx` writes the network's grid weights
    unchanged; with ``fixed_point=True`` the float forward gives the spikes of
    ``import_netx(export_netx(model, ...))`` exactly (each call from zero state; Lava's
    one-step delay per layer aside, see ``docs/loihi.md``).

    Args:
        model: a network of ``Linear`` / ``Conv2d`` (no bias), Lava-DL-style
            ``CubaLIFNode`` (``r="tau_syn*tau_mem"``, ``dt=1``, ``v_leak=0``,
            ``v_reset=0``, one decay and one threshold for all neurons; the time
            constants may be learnable), ``AxonalDelay(interpolate=False)``,
            ``Flatten``, ``Dropout``, ``Identity`` and containers of these.
        fixed_point: compute the neuron states in Loihi's integers (default True);
            False keeps float states with the decays and threshold on their grid.

    Raises:
        ConfigurationError: a module the chip cannot hold (named): another neuron or
            layer type, a layer bias (a trainable zero one too), a learnable or
            per-neuron threshold, per-neuron decays, a neuron that is not Lava-DL's CUBA,
            a threshold outside Loihi's 17 bits, an interpolating delay, delays netx
            cannot store (per neuron, beyond 62 steps, or learnable up to a
            ``max_delay`` beyond), a layer or neuron already quantized; or no synapse or
            neuron at all. Later, at a call with ``fixed_point=True``: a
            synaptic input of ``|x| >= 2048`` (a sum of ``2^17`` weight units) or NaN,
            where the float charge would no longer be Loihi's arithmetic (a forward
            pre-hook on each neuron, naming it).
    """
    if not isinstance(fixed_point, bool):
        raise ConfigurationError(f"loihi_grid: fixed_point must be a bool, got {fixed_point!r}")
    found: list[tuple[str, nn.Module]] = []
    if isinstance(model, (BaseNode, *PRUNABLE_TYPES)):
        found.append((type(model).__name__, model))
    else:
        _walk(model, "", found)
    neurons = [(n, m) for n, m in found if isinstance(m, BaseNode)]
    synapses = [(n, m) for n, m in found if not isinstance(m, BaseNode)]
    if not neurons or not synapses:
        raise ConfigurationError(
            f"loihi_grid: {type(model).__name__} has no "
            + ("CubaLIFNode" if not neurons else "Linear or Conv2d layer")
            + " to put on Loihi's grid"
        )
    mantissas = {name: _check_neuron(name, neuron) for name, neuron in neurons}
    for name, layer in synapses:
        _check_synapse(name, layer)
    for _, layer in synapses:
        parametrize.register_parametrization(layer, "weight", LoihiWeightGrid())
    for name, neuron in neurons:
        theta = mantissas[name] / WEIGHT_SCALE
        if isinstance(neuron.v_threshold, Tensor):
            neuron.v_threshold.fill_(theta)
        else:
            neuron.v_threshold = theta
        neuron.strict_firing = True
        tensors = [*neuron.parameters(), *neuron.buffers()]
        grid = LoihiCubaGrid(fixed_point)
        neuron.membrane_quantizer = grid.to(tensors[0].device) if tensors else grid
        neuron.register_forward_pre_hook(functools.partial(_refuse_inexact_input, name))
        neuron.register_forward_pre_hook(functools.partial(_refuse_off_grid_threshold, name))
    return [name for name, _ in found]
