"""Hybrid training: a converted network fine-tuned with surrogate gradients through time.

Rathi, Srinivasan, Panda and Roy (ICLR 2020) convert a trained ANN with
threshold balancing and then train the SNN itself for a few epochs with
backpropagation through time at a small T; DIET-SNN (Rathi and Roy 2021) also learns
the thresholds. The conversion gives the starting point, the fine-tuning repairs what
rate coding loses at small T (a max-norm SNN of the digits is at chance at T = 1..4).

:func:`fine_tunable` makes a :class:`~spikeflow.conversion.snn.ConvertedSNN` trainable:
each :class:`~spikeflow.conversion.neuron.ConversionIFNode` becomes a
:class:`TrainableIFNode`, the same IF neuron (soft reset, spikes worth ``θ``, membrane
from ``V0 = initial_membrane·θ``) whose spike has a surrogate derivative taken on the
membrane *relative to the threshold*, ``z = (H − θ)/θ`` (DIET-SNN's normalisation):

    S = Θ(z)        ∂S/∂H = σ'(z)/θ        output θ·S        V ← H − θ·S

so the gradient through a neuron's output, ``∂(θS)/∂H = σ'(z)``, does not depend on the
layer's scale. ``σ'`` is ``Triangle()`` by default, DIET-SNN's ``max(0, 1 − |z|)``.
With ``learnable_threshold=True`` every ``θ`` (per layer or per channel, as
calibrated) is an ``nn.Parameter``, reached through the fire rule, the reset, ``V0``
and the output. The weights train as they are (the body's parameters). The forward
pass is the converted network's, spike for spike; :func:`frozen` turns a fine-tuned
network back into plain ``ConversionIFNode`` s (thresholds as buffers), which the NIR
export and the other conversion tools take. A conversion rule's module (``convert(...,
rules=...)``) is fine-tuned through the ``ConversionIFNode`` s inside it (its own
operations must be differentiable); one with none inside is refused by name.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from spikeflow._checks import check_flag
from spikeflow.conversion._checks import threshold_problem
from spikeflow.conversion.differential import DifferentialMaxPool, DifferentialNeuron
from spikeflow.conversion.fold import set_submodule
from spikeflow.conversion.group import GroupNeuron
from spikeflow.conversion.multi_threshold import MultiThresholdNeuron
from spikeflow.conversion.neuron import ConversionIFNode
from spikeflow.conversion.pooling import GatedMaxPool
from spikeflow.conversion.snn import ConvertedSNN, TimeFolded
from spikeflow.errors import ConfigurationError
from spikeflow.neurons.base import checked_surrogate
from spikeflow.surrogate import Surrogate, Triangle

__all__ = ["TrainableIFNode", "fine_tunable", "frozen"]


def _relative_fire(h: Tensor, theta: Tensor, spike) -> Tensor:
    """The spike of the membrane relative to the threshold, ``Θ((H − θ)/θ)``: the same
    spikes as ``Θ(H − θ)`` for ``θ > 0``, with the surrogate taken on ``z``."""
    return spike((h - theta) / theta)


class TrainableIFNode(ConversionIFNode):
    """A :class:`ConversionIFNode` trained with a surrogate gradient on ``(H − θ)/θ``.

    Args:
        v_threshold: θ, a float or a tensor (``[C, 1, ...]`` per channel).
        initial_membrane: ``V0/θ`` in [0, 1).
        weighted: output ``θ·S`` (default) or ``S``.
        surrogate_function: σ, applied to ``z = (H − θ)/θ`` (default ``Triangle()``:
            ``σ'(z) = max(0, 1 − |z|)``, DIET-SNN's).
        learnable_threshold: θ as an ``nn.Parameter``.
        detach_reset: no surrogate gradient through the spike of the reset ``θ·S``
            (θ itself still gets one there), as DIET-SNN's code resets: the forward is
            the same, only the backward changes.
        **kwargs: ``step_mode``, ``backend`` (of :class:`~spikeflow.neurons.IFNode`).

    Raises:
        ConfigurationError: at a call, a θ is no longer finite and > 0 (a learnt θ
            pushed to 0 or below: ``(H − θ)/θ`` then flips the fire rule).
    """

    fire = staticmethod(_relative_fire)
    #: What the NIR export says when it meets one (spikeflow.interop).
    nir_hint = "a fine-tuned converted neuron: export frozen(snn), its plain form"

    def __init__(
        self,
        v_threshold: float | Tensor = 1.0,
        initial_membrane: float = 0.0,
        weighted: bool = True,
        surrogate_function: Surrogate | None = None,
        learnable_threshold: bool = True,
        detach_reset: bool = False,
        **kwargs: object,
    ) -> None:
        if "strict_firing" in kwargs:
            raise ConfigurationError(
                "TrainableIFNode keeps the converted neuron's strict_firing=False (the "
                "forward must stay the converted network's)"
            )
        super().__init__(
            v_threshold,
            initial_membrane,
            weighted,
            surrogate_function=checked_surrogate(surrogate_function, Triangle),
            learnable_threshold=check_flag(
                "TrainableIFNode", "learnable_threshold", learnable_threshold
            ),
            detach_reset=check_flag("TrainableIFNode", "detach_reset", detach_reset),
            **kwargs,
        )

    def forward(self, x: Tensor) -> Tensor:
        """As :meth:`ConversionIFNode.forward`, after checking that every θ is still
        finite and > 0 (a learnt θ at 0 or below would flip the fire rule silently)."""
        if not torch.compiler.is_compiling():
            theta = self.v_threshold
            problem = threshold_problem(theta.detach() if isinstance(theta, Tensor) else theta)
            if problem is not None:
                raise ConfigurationError(
                    f"TrainableIFNode: threshold {problem}; a learnt θ went to 0 or below "
                    "(the spike Θ((H − θ)/θ) is then not the converted neuron's): lower the "
                    "learning rate, or clamp the thresholds after each step"
                )
        return super().forward(x)

    @classmethod
    def from_neuron(
        cls,
        neuron: ConversionIFNode,
        surrogate_function: Surrogate | None = None,
        learnable_threshold: bool = True,
        detach_reset: bool = False,
    ) -> TrainableIFNode:
        """The trainable form of a converted ``neuron`` (its θ, V0, weighting, step mode
        and backend; θ copied)."""
        theta = neuron.v_threshold
        theta = theta.detach().clone() if isinstance(theta, Tensor) else theta
        return cls(
            theta,
            neuron.initial_membrane,
            neuron.weighted,
            surrogate_function=surrogate_function,
            learnable_threshold=learnable_threshold,
            detach_reset=detach_reset,
            step_mode=neuron.step_mode,
            backend=neuron.backend,
        )


#: convert's own spiking parts that have no surrogate gradient here.
_BUILT_IN = (GroupNeuron, MultiThresholdNeuron, DifferentialNeuron, DifferentialMaxPool)


def _refuse(name: str, module: nn.Module) -> None:
    raise ConfigurationError(
        f"fine_tunable: {name!r} is a {type(module).__name__}; only IF neurons "
        "(ConversionIFNode, the default of convert) are trained with surrogate gradients "
        "here: convert without group_size, multi_threshold or coding='differential'"
    )


def fine_tunable(
    snn: ConvertedSNN,
    surrogate_function: Surrogate | None = None,
    learnable_threshold: bool = True,
    detach_reset: bool = False,
) -> ConvertedSNN:
    """A copy of the converted ``snn`` to fine-tune with surrogate gradients through time.

    Every :class:`ConversionIFNode` becomes a :class:`TrainableIFNode` (same θ, V0 and
    spikes); the weights are the body's parameters, trained as they are. A network
    fine-tuned already gets the arguments given now (its θ kept as trained): e.g.
    ``learnable_threshold=False`` for a second phase with the thresholds fixed. Train it as
    any SNN: ``loss(snn(constant_input(x, T)).mean(0), y).backward()``. Batch norms
    kept from the ANN (those not folded) stay in eval mode, on the ANN's statistics.

    Args:
        snn: a rate-coded network from :func:`~spikeflow.conversion.convert` (not
            modified).
        surrogate_function: σ on ``(H − θ)/θ``; each neuron gets its own copy (default
            ``Triangle()``, DIET-SNN's).
        learnable_threshold: make every θ a trainable parameter (DIET-SNN).
        detach_reset: no surrogate gradient through the spike in the soft reset, as
            DIET-SNN's code (its reset ``θ·(V/θ − 1 > 0)`` is a hard comparison); the
            default keeps it (the reset's spike is differentiated as the output's).

    Raises:
        ConfigurationError: ``snn`` is not a rate-coded ``ConvertedSNN`` of IF neurons
            (group, multi-threshold and differential neurons are named, as a conversion
            rule's module with no ``ConversionIFNode`` inside), or
            ``surrogate_function`` does not spike with the Heaviside step
            (``spiking=False``, a multi-level count, a random draw).
    """
    if not isinstance(snn, ConvertedSNN):
        raise ConfigurationError(
            f"fine_tunable expects a ConvertedSNN (from convert), got {type(snn).__name__}"
        )
    if snn.coding != "rate":
        raise ConfigurationError(
            "fine_tunable: a differentially coded network is not trained here (its neurons "
            "have no surrogate gradient); convert with coding='rate'"
        )
    if surrogate_function is not None and not isinstance(surrogate_function, Surrogate):
        checked_surrogate(surrogate_function)  # raises, naming the type
    if surrogate_function is not None and not (
        surrogate_function.spiking and type(surrogate_function).heaviside_forward
    ):
        what = "spiking=False" if not surrogate_function.spiking else "a forward that is not Θ"
        raise ConfigurationError(
            f"fine_tunable: surrogate_function {surrogate_function!r} has {what}: the "
            "network trained would not be the converted one spike for spike (nor what "
            "frozen() gives back); pass a spiking surrogate with the Heaviside forward"
        )
    learnable = check_flag("fine_tunable", "learnable_threshold", learnable_threshold)
    detached = check_flag("fine_tunable", "detach_reset", detach_reset)
    trainable = copy.deepcopy(snn)
    for name, module in list(trainable.body.named_modules()):
        if not isinstance(module, TimeFolded):
            continue
        inner = module.module
        if isinstance(inner, ConversionIFNode):  # a TrainableIFNode too: rebuilt as asked
            surrogate = copy.deepcopy(surrogate_function)
            module.module = TrainableIFNode.from_neuron(inner, surrogate, learnable, detached)
        elif isinstance(inner, _BUILT_IN):
            _refuse(name, inner)
        elif not isinstance(inner, GatedMaxPool):  # a conversion rule's module
            for path, neuron in _rule_neurons(name, inner):
                surrogate = copy.deepcopy(surrogate_function)
                new = TrainableIFNode.from_neuron(neuron, surrogate, learnable, detached)
                set_submodule(inner, path, new)
    return trainable


def _rule_neurons(name: str, module: nn.Module) -> list[tuple[str, ConversionIFNode]]:
    """The IF neurons inside a conversion rule's ``module`` (at ``name``), by path;
    refused if it has none, or holds another spikeflow neuron (no surrogate here)."""
    neurons = []
    for path, inner in module.named_modules():
        if isinstance(inner, _BUILT_IN):
            _refuse(f"{name}.{path}", inner)
        if path and isinstance(inner, ConversionIFNode):
            neurons.append((path, inner))
    if not neurons:
        raise ConfigurationError(
            f"fine_tunable: {name!r} is a {type(module).__name__} (a conversion rule's "
            "module) with no ConversionIFNode inside: nothing in it would be trained with "
            "surrogate gradients. Build the rule's module of ConversionIFNodes (its own "
            "operations differentiable), or fine-tune a conversion without that rule"
        )
    return neurons


def frozen(snn: ConvertedSNN) -> ConvertedSNN:
    """A copy of a fine-tuned ``snn`` with plain :class:`ConversionIFNode` s (θ as
    buffers, no gradient): the same outputs, for inference, NIR export and the other
    conversion tools."""
    if not isinstance(snn, ConvertedSNN):
        raise ConfigurationError(f"frozen expects a ConvertedSNN, got {type(snn).__name__}")
    plain = copy.deepcopy(snn)
    for name, module in list(plain.body.named_modules()):
        if not isinstance(module, TimeFolded):
            continue
        if isinstance(module.module, TrainableIFNode):
            module.module = _frozen_neuron(name, module.module)
            continue
        for path, inner in list(module.module.named_modules()):  # a conversion rule's
            if path and isinstance(inner, TrainableIFNode):
                set_submodule(module.module, path, _frozen_neuron(f"{name}.{path}", inner))
    return plain


def _frozen_neuron(name: str, neuron: TrainableIFNode) -> ConversionIFNode:
    """The plain IF neuron of a trained one (at ``name``, for the error)."""
    theta = neuron.v_threshold
    theta = theta.detach().clone() if isinstance(theta, Tensor) else theta
    problem = threshold_problem(theta)
    if problem is not None:
        raise ConfigurationError(
            f"frozen: the threshold of {name!r}: {problem} (a learnt θ went to 0 "
            "or below; an IF neuron needs θ > 0)"
        )
    return ConversionIFNode(
        theta,
        neuron.initial_membrane,
        neuron.weighted,
        step_mode=neuron.step_mode,
        backend=neuron.backend,
    )
