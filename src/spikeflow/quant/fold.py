"""Integer-only deployment: fold the weight scales into the neurons' thresholds.

A quantized layer computes ``X = s·(k ∗ n)`` from integer levels ``k`` (weights) and
integer inputs ``n`` (spikes, event counts, or the levels of a quantized input of step
``s_x``, which joins ``s``). The IF and LIF neurons after it are linear in ``(V, X)``
with a reset to zero, so dividing ``X``, the membrane and the threshold by ``s`` leaves
every spike as it was::

    H/s ≥ θ  ⇔  H' ≥ θ/s         (H' the membrane charged from the integer sums)

For an IF neuron (hard reset to 0) the membrane ``H'`` is an integer, so the threshold
``θ/s`` may be rounded up to the integer ``⌈θ/s⌉`` (``⌊θ/s⌋`` for a strict ``>``): the
network then runs in integers only. A soft reset subtracts the threshold and needs
``θ/s`` whole. A LIF neuron's leak (``1/τ``) makes ``H'`` a fraction: its threshold is
``θ/s`` and its membrane stays a number (the chip's fixed-point decay is not modelled).

:func:`fold_weight_scales` refuses by name where this is not exact: a batch norm (or any
module but dropout, max pooling, flatten) between a layer and its neuron, a nonzero
``v_reset``, a bias off the grid ``s·ℤ``, a neuron whose dynamics are not IF/LIF's, a
layer whose input is not integers, a quantized layer with no neuron after it, a step
of the model's forward (a residual addition, a scaling) between a layer and its neuron.
See ``docs/quantization.md``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor, nn
from torch.nn.modules.dropout import _DropoutNd
from torch.nn.modules.pooling import _MaxPoolNd
from torch.nn.utils import parametrize

from spikeflow.errors import ConfigurationError
from spikeflow.layers.dropout import _SequenceDropout
from spikeflow.neurons.base import BaseNode
from spikeflow.neurons.lif import IFNode, LIFNode, ParametricLIFNode
from spikeflow.prune.reparam import PRUNABLE_TYPES, bake_weight
from spikeflow.quant.activation import InputQuantizer
from spikeflow.quant.weights import WeightQuantizer, integer_weights

__all__ = ["FoldedLayer", "fold_weight_scales"]

#: Modules that keep integers integers and commute with a positive scale (per channel).
_PASS_THROUGH = (nn.Identity, _DropoutNd, _SequenceDropout, _MaxPoolNd, nn.Flatten)
#: The neurons a scale folds through: linear charge, reset to zero.
_FOLDABLE_NEURONS = (IFNode, LIFNode, ParametricLIFNode)


@dataclass(frozen=True)
class FoldedLayer:
    """One folded layer: its name, its neuron's, the scale of one unit of the integer
    sums (``input_scale · weight step``, per channel or one), the neuron's new threshold
    and whether its membrane is an integer (IF) or a number (LIF's leak)."""

    layer: str
    neuron: str
    scale: Tensor
    threshold: Tensor | float
    integer_membrane: bool


def _units(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The weight layers, neurons and other leaf modules of ``model`` (not their
    insides: a layer's parametrizations and input quantizer, a neuron's surrogate)."""
    found: list[tuple[str, nn.Module]] = []

    def walk(prefix: str, module: nn.Module) -> None:
        if isinstance(module, (*PRUNABLE_TYPES, BaseNode)) or not module._modules:
            found.append((prefix, module))
            return
        for name, child in module.named_children():
            walk(f"{prefix}.{name}" if prefix else name, child)

    walk("", model)
    return found


@dataclass
class _Call:
    """One call of a unit in the example's forward: its name, the module, the tensor it
    took (after its input quantizer) and the one it gave, with copies of their values
    then (a later in-place step changes the tensors, not the copies)."""

    name: str
    module: nn.Module
    taken: object = None
    given: object = None
    taken_values: Tensor | None = None
    given_values: Tensor | None = None

    def feeds(self, then: _Call) -> bool:
        """Whether call ``then`` took this call's output as it was given (the same
        storage, a view or reshape of it, and the same values: no step between)."""
        given, taken = self.given, then.taken
        ours, theirs = self.given_values, then.taken_values
        return (
            isinstance(taken, Tensor)
            and isinstance(given, Tensor)
            and ours is not None
            and theirs is not None
            and taken.untyped_storage().data_ptr() == given.untyped_storage().data_ptr()
            and ours.numel() == theirs.numel()
            and torch.equal(ours.reshape(-1), theirs.reshape(-1))
        )


def _call_order(model: nn.Module, example: Tensor) -> list[_Call]:
    """The units of ``model`` in the order one forward of ``example`` calls them, with the
    tensors each took and gave (to see what flows between them)."""
    units = _units(model)
    calls: list[_Call] = []

    def before(module: nn.Module, args: tuple, *, name: str) -> None:
        taken = args[0] if args else None
        values = taken.detach().clone() if isinstance(taken, Tensor) else None
        calls.append(_Call(name, module, taken, taken_values=values))

    def after(module: nn.Module, args: tuple, output: object) -> None:
        call = next(c for c in reversed(calls) if c.module is module)
        call.given = output
        if isinstance(output, Tensor):
            call.given_values = output.detach().clone()

    handles = []
    for name, module in units:
        # (registered last, so it sees the input after an input quantizer's pre-hook)
        handles.append(module.register_forward_pre_hook(partial(before, name=name)))
        handles.append(module.register_forward_hook(after))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    names = [call.name for call in calls]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ConfigurationError(
            f"fold_weight_scales: {repeated} run more than once in a forward (a recurrent "
            "or shared module, or single-step mode): folding needs a feed-forward chain "
            "of multi-step modules"
        )
    return calls


def _quantizer(layer: nn.Module, name: str) -> WeightQuantizer:
    if parametrize.is_parametrized(layer, "weight"):
        last = layer.parametrizations.weight[-1]
        if isinstance(last, WeightQuantizer):
            return last
    raise ConfigurationError(
        f"fold_weight_scales: layer {name!r} ({type(layer).__name__}) is not quantized "
        "(apply_weight_quantization): an integer-only network needs integer weights in "
        "every layer"
    )


def _channel_scale(scale: Tensor, weight_dims: int, quantizer: WeightQuantizer) -> Tensor:
    """The step per output channel shaped for the neuron's step (``[C, 1, 1]`` after a
    2-d convolution, ``[C]`` after a linear layer), or a 0-d tensor."""
    if not quantizer.per_channel or scale.numel() == 1:
        return scale.reshape(())
    return scale.reshape(-1, *([1] * (weight_dims - 2)))


def _check_neuron(neuron: nn.Module, name: str, layer: str) -> BaseNode:
    if type(neuron) not in _FOLDABLE_NEURONS:
        raise ConfigurationError(
            f"fold_weight_scales: {name!r} after layer {layer!r} is a "
            f"{type(neuron).__name__}: only IFNode, LIFNode and ParametricLIFNode (linear "
            "charge, reset to zero) let a scale fold into the threshold exactly"
        )
    assert isinstance(neuron, BaseNode)
    if neuron.v_reset not in (None, 0.0):
        raise ConfigurationError(
            f"fold_weight_scales: neuron {name!r} resets to v_reset={neuron.v_reset}: with "
            f"layer {layer!r}'s scale s the reset value would be v_reset/s, not an integer "
            "on the chip and not the same dynamics; use v_reset=0 or None (soft reset)"
        )
    if neuron._modules.get("membrane_quantizer") is not None:
        raise ConfigurationError(
            f"fold_weight_scales: neuron {name!r} has a quantized membrane; fold a network "
            "without membrane quantization (remove_membrane_quantization)"
        )
    return neuron


def _new_threshold(neuron: BaseNode, name: str, scale: Tensor) -> tuple[Tensor | float, bool]:
    """The threshold ``θ/s`` in the integer units (rounded for IF), and whether the
    membrane is an integer."""
    theta = neuron.v_threshold
    theta = theta.detach().double() if isinstance(theta, Tensor) else float(theta)
    ratio = theta / scale.double()
    if type(neuron) is not IFNode:
        return ratio, False
    if neuron.v_reset is None:  # soft reset: subtracts the threshold itself
        whole = torch.round(ratio)
        if not torch.equal(whole, ratio):
            raise ConfigurationError(
                f"fold_weight_scales: neuron {name!r} has a soft reset, which subtracts the "
                f"threshold θ/s = {ratio.flatten()[:4].tolist()} (not whole numbers) from an "
                "integer membrane; use v_reset=0, or a threshold that is a multiple of s"
            )
        return whole, True
    return (torch.floor(ratio) if neuron.strict_firing else torch.ceil(ratio)), True


def _integer_bias(layer: nn.Module, name: str, scale: Tensor) -> Tensor | None:
    bias = getattr(layer, "bias", None)
    if bias is None:
        return None
    levels = bias.detach().double() / scale.double().flatten()
    whole = torch.round(levels)
    if (levels - whole).abs().max() > 1e-6:
        raise ConfigurationError(
            f"fold_weight_scales: layer {name!r}'s bias is not on the grid of its integer "
            f"sums (multiples of the scale {scale.flatten()[:4].tolist()}): a bias of "
            f"{levels.flatten()[:4].tolist()} units is no integer; train with bias=False"
        )
    return whole


def _set_threshold(neuron: BaseNode, value: Tensor | float, dtype: torch.dtype) -> None:
    neuron._parameters.pop("v_threshold", None)
    neuron._buffers.pop("v_threshold", None)
    neuron.__dict__.pop("v_threshold", None)
    if isinstance(value, Tensor) and value.dim() > 0:
        neuron.register_buffer("v_threshold", value.to(dtype))
    else:
        neuron.v_threshold = float(value)


def _input_scale(call: _Call, target: nn.Module, flowing: Tensor | None) -> Tensor:
    """The scale of one unit of layer ``call``'s integer input: its input quantizer's
    step (``target``'s, the folded copy's), else that of the integers flowing in
    (``flowing``: 1 after a neuron), checked whole on the example: a step in the model's
    forward (an average pooling, a scaling) may have made them fractions."""
    quantizer = target._modules.get("input_quantizer")
    if isinstance(quantizer, InputQuantizer):
        if not bool(quantizer.initialized):
            raise ConfigurationError(
                f"fold_weight_scales: the input quantizer of layer {call.name!r} has not "
                "seen an input yet (its step is set from the first batch): run or train "
                "the model first"
            )
        return quantizer.step.detach().double().reshape(())
    taken = call.taken_values
    if flowing is None or taken is None or not torch.equal(taken, taken.round()):
        raise ConfigurationError(
            f"fold_weight_scales: the input of layer {call.name!r} is not integers: "
            "quantize the network's input (apply_input_quantization), or pass "
            "integer_input=True for spikes or event counts; between neurons and layers "
            "only steps that keep spikes whole numbers fold (no average pooling, scaling)"
        )
    return flowing


def fold_weight_scales(
    model: nn.Module, example: Tensor, *, integer_input: bool = False, verify: bool = True
) -> tuple[nn.Module, list[FoldedLayer]]:
    """An integer-weight copy of ``model`` (in eval mode) that fires the same spikes.

    Each quantized layer's weights become its integer levels ``k`` and its bias
    ``b/s``; the IF/LIF neuron after it gets the threshold ``θ/s`` (``⌈θ/s⌉`` for IF),
    ``s`` the scale of one unit of the layer's integer sums (module doc). A quantized
    input (:func:`~spikeflow.quant.apply_input_quantization`) gives its levels instead.

    Args:
        model: a feed-forward chain of modules (``nn.Sequential`` and the model zoo's
            plain conv nets), every linear and convolution layer quantized. Steps of
            its forward between modules are checked on ``example``: a neuron must take
            its layer's output as it is, and every layer's input must be integers.
        example: an input the model takes; one forward of it (on a copy) gives the
            order the modules run in.
        integer_input: the input is integers already (spikes, event counts), of scale
            1, when the first layer's input is not quantized.
        verify: run the folded copy on ``example`` and refuse it if a neuron fires
            other spikes than in ``model`` (a membrane within float rounding of the
            threshold, a tie the float network decides by its rounding error); False
            keeps the fold, exact in real arithmetic.

    Returns:
        ``(folded model, [FoldedLayer, ...])``.

    Raises:
        ConfigurationError: naming the layer or neuron where folding is not exact.
    """
    order = _call_order(copy.deepcopy(model).eval(), example)
    folded = copy.deepcopy(model).eval()
    modules = dict(folded.named_modules())
    report: list[FoldedLayer] = []
    input_scale: Tensor | None = None  # the scale of the integers flowing, None: not integers
    if integer_input:
        if not torch.equal(example, torch.round(example)):
            raise ConfigurationError(
                "fold_weight_scales: integer_input=True, but the example input has values "
                "that are not whole numbers: quantize it (apply_input_quantization)"
            )
        input_scale = torch.ones((), dtype=torch.float64)
    pending: tuple[str, nn.Module, Tensor, WeightQuantizer, bool] | None = None
    for index, call in enumerate(order):
        name, module = call.name, call.module
        if pending is not None and not order[index - 1].feeds(call):
            raise ConfigurationError(
                f"fold_weight_scales: {type(module).__name__} {name!r} does not take the "
                f"output of {order[index - 1].name!r} as it is: a step in the model's "
                f"forward (a residual addition, a scaling, ...) between layer {pending[0]!r} "
                "and its neuron, which the scale does not fold through"
            )
        if isinstance(module, PRUNABLE_TYPES):
            if pending is not None:
                raise ConfigurationError(
                    f"fold_weight_scales: layer {pending[0]!r} feeds layer {name!r} with no "
                    "neuron between them: its scale has no threshold to fold into"
                )
            quantizer = _quantizer(module, name)
            input_scale = _input_scale(call, modules[name], input_scale)
            _, step = integer_weights(module, name=name)
            scale = input_scale * _channel_scale(step.double(), module.weight.dim(), quantizer)
            pending = (name, module, scale, quantizer, False)
        elif isinstance(module, BaseNode):
            if pending is None:
                raise ConfigurationError(
                    f"fold_weight_scales: neuron {name!r} takes no quantized layer's "
                    "output (its input is not a folded integer sum)"
                )
            layer_name, layer, scale, quantizer, flattened = pending
            if flattened and scale.dim() > 0:
                raise ConfigurationError(
                    f"fold_weight_scales: layer {layer_name!r} has a scale per channel and "
                    f"a flatten before neuron {name!r}: quantize it per layer"
                )
            neuron = _check_neuron(module, name, layer_name)
            threshold, integer = _new_threshold(neuron, name, scale)
            report.append(FoldedLayer(layer_name, name, scale, threshold, integer))
            _fold_layer(modules[layer_name], layer, layer_name, scale)
            dtype = layer.weight.dtype
            _set_threshold(modules[name], threshold, dtype)  # type: ignore[arg-type]
            pending, input_scale = None, torch.ones((), dtype=torch.float64)
        elif isinstance(module, _PASS_THROUGH):
            if pending is not None and isinstance(module, nn.Flatten):
                pending = (*pending[:4], True)
        elif pending is not None:
            raise ConfigurationError(
                f"fold_weight_scales: {type(module).__name__} {name!r} sits between layer "
                f"{pending[0]!r} and its neuron; only dropout, max pooling and flatten "
                "commute with the scale (a batch norm must be folded into the weights "
                "before they are quantized)"
            )
        else:
            input_scale = None  # e.g. average pooling of spikes: no integers any more
    if pending is not None:
        raise ConfigurationError(
            f"fold_weight_scales: no spiking neuron follows layer {pending[0]!r}, so its "
            "scale has no threshold to fold into (a readout): leave it unquantized and "
            "outside the integer network"
        )
    for _, module in folded.named_modules():
        quantizer = module._modules.get("input_quantizer")
        if isinstance(quantizer, InputQuantizer):
            quantizer.integer_output = True
    if verify:
        _verify(order, folded, example, report)
    return folded, report


def _verify(order: list[_Call], folded: nn.Module, example: Tensor,
            report: list[FoldedLayer]) -> None:  # fmt: skip
    """Refuse ``folded`` if a neuron of it fires other spikes on ``example`` than it did
    in the forward that gave ``order`` (run on a copy: ``folded`` keeps its state)."""
    probe = copy.deepcopy(folded)
    fired: dict[str, object] = {}
    modules = dict(probe.named_modules())
    handles = [modules[r.neuron].register_forward_hook(
                   lambda m, i, out, name=r.neuron: fired.__setitem__(name, out))
               for r in report]  # fmt: skip
    try:
        with torch.no_grad():
            probe(example)
    finally:
        for handle in handles:
            handle.remove()
    given = {call.name: call.given for call in order}
    for r in report:
        theirs, ours = given[r.neuron], fired.get(r.neuron)
        if isinstance(theirs, Tensor) and isinstance(ours, Tensor) and torch.equal(theirs, ours):
            continue
        differ = int((theirs != ours).sum()) if isinstance(ours, Tensor) else -1
        total = theirs.numel() if isinstance(theirs, Tensor) else 0
        ratio = torch.as_tensor(r.threshold).flatten()[:3].tolist()
        raise ConfigurationError(
            f"fold_weight_scales: on the example, neuron {r.neuron!r} fires {differ} of "
            f"{total} spikes otherwise once folded (threshold {ratio} units of layer "
            f"{r.layer!r}'s sums): a membrane within float rounding of the threshold (a "
            "threshold that is a whole number of steps) is decided by the float "
            "network's rounding error; move the threshold off the grid of the steps, or "
            "pass verify=False to keep the fold (exact in real arithmetic)"
        )


def _fold_layer(target: nn.Module, source: nn.Module, name: str, scale: Tensor) -> None:
    """``target`` (the copy of ``source``) with plain integer weights and bias."""
    levels, _ = integer_weights(source, name=name)
    bias = _integer_bias(source, name, scale)
    bake_weight(target)
    with torch.no_grad():
        target.weight.copy_(levels.to(target.weight.dtype))
        if bias is not None:
            target.bias.copy_(bias.to(target.bias.dtype))
