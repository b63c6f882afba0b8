"""PLIF neurons on Loihi: a trained PLIF layer is a LIF layer with a fixed decay.

A :class:`~spikeflow.neurons.ParametricLIFNode` learns ``1/tau = sigmoid(w)``; once
trained, ``w`` is fixed and the layer is a LIF layer. Loihi's CUBA neuron holds the
voltage decay as a 12-bit integer, ``vDecay = round(4096 sigmoid(w))`` (decay per step
``vDecay / 4096``), one per layer (Lava's LIF process has one ``dv`` for the whole
population, and netx writes one ``vDecay`` per layer). So the PLIF layer is exported
as ``LIFNode(tau = 4096 / vDecay, decay_input=False)`` (``IFNode`` for ``vDecay = 0``)
with the current decaying fully each step (``iDecay = 4096``), the mapping
:mod:`spikeflow.interop.netx` uses for LIF. With ``decay_input=True`` (PLIF's default)
the input is divided by ``tau`` before it reaches the voltage; Loihi adds it undivided,
so the trained factor ``1/tau = sigmoid(w)`` is folded into the synapse before (its
weight and bias, in float64), which is then quantised to Lava-DL's weight grid as any
other. Lava's CUBA neuron has no input decay (its current adds the synaptic input as it
is), so nothing ties the fold to the 12-bit decay: the grid forces only the leak to
``vDecay / 4096``, and the input keeps the trained scale. (Folding ``vDecay / 4096``
instead would scale the input by ``vDecay / (4096 sigmoid(w))``: by up to 1.5 for a
long ``tau`` with ``vDecay = 1``, and by 0, a layer that never gets input, for
``tau > 8192``, where ``vDecay`` rounds to 0.)

A PLIF with one ``w`` per channel or per neuron exports only where every ``vDecay``
is the same integer; otherwise it is refused by name (netx cannot hold it).

``vDecay = 4096`` (``tau`` within 1.00013 of 1) is Loihi's full leak: the voltage
keeps nothing of the last step and is the step's input alone, LIF's charge at
``tau = 1``. A very long ``tau`` with ``decay_input=True`` folds so small a factor into
the synapse that its weights may all round to 0 on the weight grid: refused, naming
the layer and its ``tau`` (:func:`plif_fold_problem`).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from spikeflow.errors import ConfigurationError
from spikeflow.neurons import IFNode, LIFNode, ParametricLIFNode
from spikeflow.quant.loihi import lava_weight_integers

__all__ = ["plif_as_lif", "plif_fold_problem", "plif_problem", "plif_v_decay"]

#: Loihi's decays are 12-bit fractions of this.
_DECAY_ONE = 4096


def _decays(module: ParametricLIFNode) -> torch.Tensor:
    """``round(4096 sigmoid(w))`` per element of ``w`` (float64, halves to even)."""
    return torch.round(_DECAY_ONE * torch.sigmoid(module.w.detach().cpu().to(torch.float64)))


def plif_problem(module: ParametricLIFNode) -> str | None:
    """Why ``module`` has no netx form (None: it has one)."""
    if module.v_reset is None or float(module.v_reset) != 0.0:
        return f"v_reset={module.v_reset} (Loihi resets the voltage to 0)"
    theta = module.v_threshold
    if isinstance(theta, torch.Tensor) and theta.numel() != 1:
        return (
            f"a threshold of shape {tuple(theta.shape)}; netx holds one vThMant per layer "
            "(Lava's LIF has one vth for a population)"
        )
    decays = _decays(module).unique()
    if decays.numel() != 1:
        return (
            f"{module.w.numel()} learned time constants (w of shape {tuple(module.w.shape)}) "
            f"give {decays.numel()} different 12-bit decays round(4096 sigmoid(w)) from "
            f"{int(decays.min())} to {int(decays.max())}; netx holds one vDecay per layer "
            "(Lava's LIF has one dv per population): train PLIF with one tau per layer "
            "(shape=None)"
        )
    return None


def plif_fold_problem(synapse: nn.Module, module: ParametricLIFNode) -> str | None:
    """Why folding ``module``'s trained ``1/tau`` into ``synapse`` (the Linear / Conv2d
    before a ``decay_input=True`` PLIF) leaves no input: every weight that is not 0 on
    Lava-DL's grid rounds to 0 once scaled (None: some weight survives, or there is no
    fold)."""
    if not module.decay_input or not isinstance(synapse, (nn.Linear, nn.Conv2d)):
        return None
    weight = synapse.weight.detach().to(torch.float64)
    factor = _input_factor(module)
    if not bool(lava_weight_integers(weight, "export_netx").ne(0).any()):
        return None  # nothing on the grid before the fold either: not the fold's doing
    if bool(lava_weight_integers(weight * factor, "export_netx").ne(0).any()):
        return None
    largest = float(weight.abs().max())
    # the bias, folded too, is the neurons' bias mantissa round(64 b) (netx._voltage_bias)
    bias = synapse.bias
    mant = torch.zeros(0) if bias is None else torch.round(bias.detach().double() * factor * 64)
    kept = int(mant.ne(0).sum())
    outcome = (
        "the layer would never get input"
        if kept == 0
        else f"the layer would get no input from the layer before it, only the constant "
        f"drive of its bias ({kept} of {mant.numel()} bias values survive the fold)"
    )
    return (
        f"its trained tau = {1 / factor:.6g} steps (decay_input=True: the input is "
        f"divided by tau) scales the weights of the synapse before it by 1/tau = "
        f"{factor:.3g}, and every one rounds to 0 on Lava-DL's weight grid (steps of 1/32; "
        f"the largest, {largest:.3g}, becomes {largest * factor:.3g}): {outcome}. Train it "
        "with decay_input=False, a shorter tau or larger weights"
    )


def plif_v_decay(module: ParametricLIFNode, where: str) -> int:
    """Loihi's ``vDecay`` of a trained PLIF layer, ``round(4096 sigmoid(w))``.

    Raises:
        ConfigurationError: (naming ``where``) the layer's ``w`` gives more than one
            decay, or it does not reset to 0, or it has more than one threshold.
    """
    problem = plif_problem(module)
    if problem is not None:
        raise ConfigurationError(f"export_netx: {where} (ParametricLIFNode): {problem}")
    return int(_decays(module).reshape(-1)[0])


def _fixed_neuron(module: ParametricLIFNode, v_decay: int) -> nn.Module:
    """The LIF (or, for ``v_decay = 0``, IF) neuron with PLIF's settings and the
    decay ``v_decay / 4096``, adding its input undivided."""
    common = {
        "v_threshold": module.v_threshold,
        "v_reset": module.v_reset,
        "surrogate_function": copy.deepcopy(module.surrogate_function),
        "detach_reset": module.detach_reset,
        "strict_firing": module.strict_firing,
        "step_mode": module.step_mode,
    }
    if v_decay == 0:
        return IFNode(**common)
    if v_decay == _DECAY_ONE:
        # Loihi's vDecay = 4096 is a full leak, decay(v) = v·(4096 − 4096) >> 12 = 0: the
        # voltage is each step's input alone. That is LIF's charge with 1/tau = 1,
        # H = V − (V − 0)·1 + X = X, exactly; LIFNode's constructor takes tau > 1 (a
        # leak that keeps something), so tau = 1 is set after it (its forward takes it).
        neuron = LIFNode(tau=2.0, decay_input=False, **common)
        neuron.tau = 1.0
        return neuron
    return LIFNode(tau=_DECAY_ONE / v_decay, decay_input=False, **common)


def _input_factor(module: ParametricLIFNode) -> float:
    """PLIF's input factor ``1/tau = sigmoid(w)`` in float64 (one ``w``, or several giving
    one decay: their mean, within ``1/8192`` of each)."""
    return float(torch.sigmoid(module.w.detach().cpu().to(torch.float64)).mean())


def _scaled_synapse(layer: nn.Module, factor: float) -> nn.Module:
    """A float64 copy of ``layer`` (Linear / Conv2d) with weight and bias times ``factor``."""
    scaled = copy.deepcopy(layer).to(torch.float64)
    with torch.no_grad():
        scaled.weight.mul_(factor)
        if scaled.bias is not None:
            scaled.bias.mul_(factor)
    return scaled


def plif_as_lif(names: list[str], modules: list[nn.Module]) -> list[nn.Module]:
    """``modules`` (a flat chain, named by ``names``) with each PLIF layer replaced by the
    LIF layer it is on Loihi's decay grid, and the synapse before a ``decay_input=True``
    PLIF scaled by its trained ``1/tau = sigmoid(w)`` (see the module's docstring);
    other modules as they are.

    Raises:
        ConfigurationError: a PLIF with no single decay (:func:`plif_problem`), or a
            ``decay_input=True`` PLIF with no Linear / Conv2d right before it or whose
            fold rounds every weight of that synapse to 0 (:func:`plif_fold_problem`),
            or a PLIF whose reset is not a hard reset to 0.
    """
    out = list(modules)
    for index, module in enumerate(modules):
        if type(module) is not ParametricLIFNode:
            continue
        v_decay = plif_v_decay(module, f"module {names[index]}")
        out[index] = _fixed_neuron(module, v_decay)
        # the trained 1/tau (one value: plif_v_decay checked that w gives one decay)
        if not module.decay_input:
            continue
        before = modules[index - 1] if index > 0 else None
        if not isinstance(before, (nn.Linear, nn.Conv2d)):
            found = "nothing" if before is None else type(before).__name__
            raise ConfigurationError(
                f"export_netx: module {names[index]} (ParametricLIFNode) divides its input "
                f"by tau (decay_input=True), which Loihi does through the synapse's "
                f"weights; it needs a Linear or Conv2d right before it, found {found}"
            )
        problem = plif_fold_problem(before, module)
        if problem is not None:
            raise ConfigurationError(
                f"export_netx: module {names[index]} (ParametricLIFNode) after module "
                f"{names[index - 1]} ({type(before).__name__}): {problem}"
            )
        out[index - 1] = _scaled_synapse(before, _input_factor(module))
    return out
