"""Weight reparameterisations that prune synapses while training (methods.md 8).

Each prunable layer keeps a hidden parameter θ in place of its weight, and its forward
uses the weight ``w = f(θ)`` that the method defines. The layers stay the PyTorch
layers they were (``torch.nn.utils.parametrize``): ``layer.weight`` is the effective,
sparse weight, ``layer.parametrizations.weight.original`` is θ, and the optimizer trains
θ. :func:`finalize` replaces θ by the effective weight for good (plain layers again).

* :class:`SignedStrength` (Grad R): ``w = s·max(θ, 0)`` with the sign ``s`` fixed from
  the weight it was given and the gradient ``∂L/∂θ := s·∂L/∂w`` (no gate), so a pruned
  synapse (θ ≤ 0) keeps learning and can grow back.
* :class:`SoftThreshold` (STDS, LATS): ``w = sign(θ)·max(|θ| - d, 0)`` with a
  straight-through gradient (``∂L/∂θ := ∂L/∂w``); ``d`` is set by a schedule.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import torch
from torch import Tensor, nn
from torch.nn.modules.conv import _ConvNd
from torch.nn.utils import parametrize

from spikeflow._checks import check_real
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.event_driven.layers import EventDrivenLayer

__all__ = [
    "SignedStrength",
    "SoftThreshold",
    "apply_gradient_rewiring",
    "apply_soft_threshold",
    "finalize",
    "prunable_layers",
    "pruned_layers",
    "set_threshold",
]

#: The layers whose weights are synapses: linear and convolution layers (spikeflow's
#: sequence layers subclass these). Normalisation and neuron parameters are not pruned.
PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, _ConvNd)


class SignedStrength(nn.Module):
    """Grad R's weight: ``w = s·max(θ, 0)``, with the straight-through gradient ``s``.

    ``s`` (the buffer ``sign``) is the sign of the weight this parametrization was given
    (``+1`` where it was exactly zero); θ starts as ``|w|``. Assigning ``layer.weight``
    later sets θ to the new magnitudes and ``s`` to the new signs where they are
    nonzero.
    """

    def __init__(self, shape: torch.Size, dtype: torch.dtype, device: torch.device) -> None:
        super().__init__()
        self.register_buffer("sign", torch.ones(shape, dtype=dtype, device=device))

    def forward(self, strength: Tensor) -> Tensor:
        """The effective weight of the hidden strengths θ."""
        # θ - min(θ, 0) is max(θ, 0) exactly; detaching the min makes dw/dθ = 1 (times s).
        return self.sign * (strength - strength.clamp(max=0).detach())

    @torch.no_grad()
    def right_inverse(self, weight: Tensor) -> Tensor:
        """θ for the weight ``weight``: its magnitudes (its signs become ``s``), in the
        layer's dtype."""
        if weight.shape != self.sign.shape:
            raise ShapeError(
                f"Grad R layer: a weight of shape {tuple(weight.shape)} was assigned to a "
                f"weight of shape {tuple(self.sign.shape)}"
            )
        sign = torch.where(weight < 0, -1.0, torch.where(weight > 0, 1.0, self.sign))
        strength = weight.abs().to(self.sign.dtype)
        self.sign.copy_(sign)
        return strength


class SoftThreshold(nn.Module):
    """Soft thresholding ``w = sign(θ)·max(|θ| - d, 0)``, with a straight-through gradient.

    ``d`` is the buffer ``threshold`` (a 0-d tensor, saved in the state dict); a
    schedule changes it in place (:func:`set_threshold`). Assigning ``layer.weight``
    stores ``θ = w + sign(w)·d``, whose thresholded value is ``w``.
    """

    def __init__(self, threshold: float, dtype: torch.dtype, device: torch.device) -> None:
        super().__init__()
        self.register_buffer("threshold", torch.tensor(_threshold(threshold), dtype=dtype,
                                                       device=device))  # fmt: skip

    def forward(self, hidden: Tensor) -> Tensor:
        """The thresholded weight of the hidden weight θ."""
        d = self.threshold
        # θ - clamp(θ, -d, d) is S_d(θ) exactly (zero inside the band); detaching the
        # clamp passes the gradient straight through.
        return hidden - hidden.clamp(min=-d, max=d).detach()

    @torch.no_grad()
    def right_inverse(self, weight: Tensor) -> Tensor:
        """θ whose thresholded value is ``weight``."""
        return weight + torch.sign(weight) * self.threshold

    def extra_repr(self) -> str:
        return f"threshold={float(self.threshold):g}"


def _threshold(value: object, name: str = "threshold", owner: str = "soft threshold") -> float:
    return check_real(f"{owner}: {name}", value, 0.0)


def prunable_layers(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """``(name, layer)`` for every linear or convolution layer of ``model`` with a weight
    (a reparameterised one too: weight norm, pruning; it is not computed here)."""
    for name, module in model.named_modules():
        if isinstance(module, PRUNABLE_TYPES) and (
            parametrize.is_parametrized(module, "weight")
            or isinstance(getattr(module, "weight", None), Tensor)
        ):
            yield name, module


def chosen_layers(
    model: nn.Module,
    layers: Iterable[nn.Module] | None,
    *,
    what: str = "prune",
    stack: bool = False,
) -> list[tuple[str, nn.Module]]:
    """``(name, layer)`` of the linear and convolution layers of ``model`` (those in
    ``layers`` if given) for a reparameterisation: ``what`` names it in errors;
    ``stack`` allows layers whose weight is reparameterised already.

    Raises:
        ConfigurationError: a layer not in the model, none at all, an event-driven
            layer, or (unless ``stack``) a weight that is already parametrized.
    """
    found = list(prunable_layers(model))
    if layers is not None:
        wanted = list(layers)
        ids = {id(layer) for _, layer in found}
        for layer in wanted:
            if id(layer) not in ids:
                raise ConfigurationError(
                    f"{type(layer).__name__} is not a linear or convolution layer of the model"
                )
        wanted_ids = {id(layer) for layer in wanted}
        found = [(name, layer) for name, layer in found if id(layer) in wanted_ids]
    if not found:
        raise ConfigurationError(f"the model has no linear or convolution layer to {what}")
    for name, layer in found:
        if isinstance(layer, EventDrivenLayer) or callable(
            getattr(layer, "standardized_weight", None)
        ):  # event-driven and WSConv2d/WSLinear layers
            kind = (
                "an event-driven"
                if isinstance(layer, EventDrivenLayer)
                else "a weight-standardised"
            )
            raise ConfigurationError(
                f"layer {name or type(layer).__name__!r} is {kind} layer: it "
                f"standardises its weights per output channel, so a {what}d raw weight "
                "would not give a sparse or quantized effective weight; leave it out "
                "(exclude it, or pass the layers)"
            )
        if not stack and parametrize.is_parametrized(layer, "weight"):
            raise ConfigurationError(
                f"layer {name or type(layer).__name__!r}: its weight is already "
                f"parametrized by {_parametrized_by(layer)}"
            )
    return found


def _parametrized_by(layer: nn.Module) -> str:
    """What a layer's weight is parametrized by, and what to do about it (for the error
    of :func:`chosen_layers`)."""
    from spikeflow.quant.weights import WeightQuantizer  # it imports this module

    chain = list(layer.parametrizations.weight)
    names = ", ".join(type(p).__name__ for p in chain)
    if any(isinstance(p, WeightQuantizer) and p.bits == 1 for p in chain):
        return (
            "binary weight quantization (bits=1, spikeflow.quant): binary weights have no "
            "zero level, so they cannot be pruned in either order; quantize with 2 bits or "
            "more to prune"
        )
    if any(isinstance(p, WeightQuantizer) for p in chain):
        return (
            "weight quantization (spikeflow.quant): apply pruning first, then quantization "
            "(the pruned weight is quantized and pruned synapses stay zero); quantizing "
            "first is not supported"
        )
    if any(isinstance(p, (SignedStrength, SoftThreshold)) for p in chain):
        return f"pruning ({names}): pruning applied twice?"
    return (
        f"{names}: pruning reparameterises a plain weight (remove that parametrization "
        "first, or leave this layer out)"
    )


def apply_gradient_rewiring(
    model: nn.Module, layers: Iterable[nn.Module] | None = None
) -> list[str]:
    """Reparameterise the weights of ``model`` for Gradient Rewiring (Grad R).

    Every linear and convolution layer (or those in ``layers``) gets a
    :class:`SignedStrength`; the model computes what it computed before. Train it with
    :class:`~spikeflow.prune.GradRewiring`. Returns the names of the layers.

    Raises:
        ConfigurationError: no such layer, a layer not in the model, or a weight that
            is already parametrized.
    """
    return reparameterise(
        chosen_layers(model, layers),
        lambda layer: SignedStrength(layer.weight.shape, layer.weight.dtype, layer.weight.device),
    )


def apply_soft_threshold(
    model: nn.Module, threshold: float = 0.0, layers: Iterable[nn.Module] | None = None
) -> list[str]:
    """Reparameterise the weights of ``model`` by soft thresholding (STDS, LATS).

    Every linear and convolution layer (or those in ``layers``) gets a
    :class:`SoftThreshold` with threshold ``threshold``; θ starts at ``w + sign(w)·d``,
    so the model computes what it computed before. Change ``d`` with
    :class:`~spikeflow.prune.ThresholdSchedule`, :class:`~spikeflow.prune.LATSThreshold`
    or :func:`set_threshold`. Returns the names of the layers.

    Raises:
        ConfigurationError: a negative or non-finite threshold, no such layer, a layer
            not in the model, or a weight that is already parametrized.
    """
    d = _threshold(threshold)
    return reparameterise(
        chosen_layers(model, layers),
        lambda layer: SoftThreshold(d, layer.weight.dtype, layer.weight.device),
    )


def reparameterise(
    chosen: list[tuple[str, nn.Module]], make: Callable[[nn.Module], nn.Module]
) -> list[str]:
    """Register ``make(layer)`` on the weight of each ``(name, layer)`` of ``chosen``
    (from :func:`chosen_layers`); return the names."""
    for _, layer in chosen:
        parametrize.register_parametrization(layer, "weight", make(layer))
    return [name for name, _ in chosen]


def pruned_layers(
    model: nn.Module, kind: type[nn.Module] | None = None
) -> Iterator[tuple[str, nn.Module, nn.Module]]:
    """``(name, layer, parametrization)`` for each layer reparameterised by spikeflow
    (pruning or quantization; only of class ``kind`` if given)."""
    for name, module in model.named_modules():
        if not parametrize.is_parametrized(module, "weight"):
            continue
        for reparam in module.parametrizations.weight:
            if isinstance(reparam, kind or tuple(REPARAMETERISATIONS)):
                yield name, module, reparam


#: spikeflow's weight reparameterisations (:func:`finalize` bakes them; quantization
#: adds its own).
REPARAMETERISATIONS: list[type[nn.Module]] = [SignedStrength, SoftThreshold]


def set_threshold(model: nn.Module, threshold: float) -> int:
    """Set the soft threshold ``d`` of every :class:`SoftThreshold` layer of ``model``;
    return how many layers there are.

    Raises:
        ConfigurationError: a negative or non-finite threshold, or no such layer.
    """
    d = _threshold(threshold)
    found = soft_threshold_layers(model)
    for _, _, reparam in found:
        reparam.threshold.fill_(d)
    return len(found)


def soft_threshold_layers(model: nn.Module) -> list[tuple[str, nn.Module, SoftThreshold]]:
    """``(name, layer, parametrization)`` of the :class:`SoftThreshold` layers.

    Raises:
        ConfigurationError: there is none (apply_soft_threshold was not called).
    """
    found = list(pruned_layers(model, SoftThreshold))
    if not found:
        raise ConfigurationError(
            "the model has no soft-threshold layer: call "
            "spikeflow.prune.apply_soft_threshold(model) first"
        )
    return found  # type: ignore[return-value]


def finalize(model: nn.Module) -> list[str]:
    """Replace spikeflow's weight reparameterisations of ``model`` (pruning, and
    :mod:`spikeflow.quant`'s quantization) by the effective weight.

    The layers become plain layers again with the sparse (quantized) weights as
    parameters (their state dicts load into a model built without them). Returns the
    layer names.
    """
    names, seen = [], set()
    for name, module, _ in list(pruned_layers(model)):
        if id(module) in seen:  # several reparameterisations (pruned and quantized)
            continue
        seen.add(id(module))
        bake_weight(module)
        names.append(name)
    return names


def bake_weight(module: nn.Module) -> None:
    """Replace ``module``'s parametrized weight by its current value (a plain
    parameter), leaving any deep copy of ``module`` parametrized."""
    # torch removes the ``weight`` property from the layer's class, which a deep copy
    # shares with its original: give this layer a class of its own first.
    cls = type(module)
    own = {k: v for k, v in vars(cls).items() if k not in ("__dict__", "__weakref__")}
    module.__class__ = type(cls.__name__, cls.__bases__, own)
    parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
