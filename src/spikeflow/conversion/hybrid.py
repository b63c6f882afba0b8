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

``learnable_leak=True`` adds DIET-SNN's membrane leak, one ``λ`` per layer in
``H = λ·V + X`` (from 1, run as ``min(λ, 1)``); ``surrogate_function="stdb"`` (or an
:class:`~spikeflow.conversion.stdb.STDB`) differentiates each spike by the time since
the neuron's last one, ``α·exp(−β·Δt)`` (Rathi et al. 2020): see
:mod:`spikeflow.conversion.stdb`. ``frozen`` refuses a leak below 1 by name.
"""

from __future__ import annotations

import copy
import math

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
from spikeflow.conversion.stdb import (
    NEVER_FIRED,
    STDB,
    leaky_charge,
    stdb_charge,
    stdb_fire,
    stdb_update,
)
from spikeflow.errors import ConfigurationError, DTypeError
from spikeflow.neurons.base import checked_surrogate
from spikeflow.neurons.declaration import NeuronDeclaration, declare
from spikeflow.surrogate import NorseTriangle, Surrogate, Triangle

__all__ = ["DIET_DAMPING", "STDB", "TrainableIFNode", "fine_tunable", "frozen"]

#: DIET-SNN's damping of its piecewise-linear surrogate (``LinearSpike.gamma`` in Rathi
#: and Roy's code): ``surrogate_function="diet"`` is ``0.3·max(0, 1 − |z|)``.
DIET_DAMPING = 0.3


def _named_surrogate(surrogate: object, owner: str) -> object:
    """``surrogate``, or for a name: ``"stdb"`` :class:`STDB` (the authors' α, β),
    ``"diet"`` DIET-SNN's ``LinearSpike``, ``NorseTriangle(0.3)`` (its derivative
    ``0.3·max(0, 1 − |z|)``)."""
    if not isinstance(surrogate, str):
        return surrogate
    if surrogate.lower() == "stdb":
        return STDB()
    if surrogate.lower() == "diet":
        return NorseTriangle(alpha=DIET_DAMPING)
    raise ConfigurationError(
        f"{owner}: surrogate_function must be a spikeflow.surrogate.Surrogate instance, "
        f"STDB(), 'stdb' or 'diet' (the names taken), got {surrogate!r}"
    )


def _stdb_or_none(surrogate: object, owner: str) -> STDB | None:
    """``surrogate`` (or its name) as an :class:`STDB`, or ``None`` for anything else
    (checked as a membrane surrogate by the caller)."""
    surrogate = _named_surrogate(surrogate, owner)
    return surrogate if isinstance(surrogate, STDB) else None


def _checked_leak(leak: object, learnable: bool, theta: float | Tensor) -> float | Tensor:
    """A checked leak λ in (0, 1]: a float, or if ``learnable`` a 0-dim ``nn.Parameter``
    (a tensor's dtype, else θ's, else the default dtype; on θ's device, where the
    neuron's other parameters are)."""
    if isinstance(leak, Tensor):
        if not leak.is_floating_point():
            raise DTypeError(f"TrainableIFNode: leak must be floating-point, got {leak.dtype}")
        if leak.dim() != 0:
            raise ConfigurationError(
                "TrainableIFNode: leak must be one number per layer (a float or a 0-dim "
                f"tensor), got shape {tuple(leak.shape)}"
            )
        value = float(leak)
    elif isinstance(leak, bool) or not isinstance(leak, (int, float)):
        raise ConfigurationError(f"TrainableIFNode: leak must be a number in (0, 1], got {leak!r}")
    else:
        value = float(leak)
    if not (math.isfinite(value) and 0.0 < value <= 1.0):
        raise ConfigurationError(
            f"TrainableIFNode: leak must be in (0, 1] (1: the converted IF neuron), got {value}"
        )
    if not learnable:
        return value
    dtype = leak.dtype if isinstance(leak, Tensor) else None
    if dtype is None and isinstance(theta, Tensor):
        dtype = theta.dtype
    device = theta.device if isinstance(theta, Tensor) else None
    if device is None and isinstance(leak, Tensor):
        device = leak.device
    return nn.Parameter(
        torch.tensor(value, dtype=dtype or torch.get_default_dtype(), device=device)
    )


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
            ``σ'(z) = max(0, 1 − |z|)``, DIET-SNN's); or :class:`STDB` / ``"stdb"``:
            ``∂S/∂z = α·exp(−β·Δt)``, Δt the steps since the last spike (then the
            reference loop runs it: ``backend`` ``'auto'`` or ``'torch'``, kept in
            :attr:`kept_backend`, which :func:`frozen` gives back); or ``"diet"``:
            DIET-SNN's ``0.3·max(0, 1 − |z|)`` (``NorseTriangle(0.3)``).
        learnable_threshold: θ as an ``nn.Parameter``.
        detach_reset: no surrogate gradient through the spike of the reset ``θ·S``
            (θ itself still gets one there), as DIET-SNN's code resets: the forward is
            the same, only the backward changes.
        leak: λ in (0, 1] of the charge ``H = λ·V + X`` (one per layer: a float or a
            0-dim tensor; 1, the default, is the IF neuron).
        learnable_leak: λ as a 0-dim ``nn.Parameter`` (DIET-SNN), used as ``min(λ, 1)``
            with the gradient passed straight through.
        **kwargs: ``step_mode``, ``backend`` (of :class:`~spikeflow.neurons.IFNode`).

    Raises:
        ConfigurationError: a leak outside (0, 1] or not one number, a string
            surrogate other than ``"stdb"``, STDB with a fused backend; at a call, a θ
            or a learnt λ no longer finite and > 0 (pushed to 0 or below: ``(H − θ)/θ``
            then flips the fire rule).
        DTypeError: a leak tensor that is not floating-point.
    """

    fire = staticmethod(_relative_fire)
    #: What the NIR export says when it meets one (spikeflow.interop).
    nir_hint = "a fine-tuned converted neuron: export frozen(snn), its plain form"

    def __init__(
        self,
        v_threshold: float | Tensor = 1.0,
        initial_membrane: float = 0.0,
        weighted: bool = True,
        surrogate_function: Surrogate | STDB | str | None = None,
        learnable_threshold: bool = True,
        detach_reset: bool = False,
        leak: float | Tensor = 1.0,
        learnable_leak: bool = False,
        **kwargs: object,
    ) -> None:
        if "strict_firing" in kwargs:
            raise ConfigurationError(
                "TrainableIFNode keeps the converted neuron's strict_firing=False (the "
                "forward must stay the converted network's)"
            )
        surrogate_function = _named_surrogate(surrogate_function, "TrainableIFNode")  # type: ignore[assignment]
        stdb = _stdb_or_none(surrogate_function, "TrainableIFNode")
        super().__init__(
            v_threshold,
            initial_membrane,
            weighted,
            surrogate_function=None if stdb else checked_surrogate(surrogate_function, Triangle),
            learnable_threshold=check_flag(
                "TrainableIFNode", "learnable_threshold", learnable_threshold
            ),
            detach_reset=check_flag("TrainableIFNode", "detach_reset", detach_reset),
            **kwargs,
        )
        if stdb is not None:
            if self.backend not in ("auto", "torch"):
                raise ConfigurationError(
                    f"TrainableIFNode: backend {self.backend!r} with the STDB surrogate; its "
                    "spike is differentiated by spike times (a custom autograd function), "
                    "which only the reference loop runs: use backend='torch' or 'auto'"
                )
        #: The backend asked for, which :func:`frozen` gives back: an STDB neuron runs
        #: on the reference loop whatever it is (``fine_tunable`` sets a fused one here).
        self.kept_backend = self.backend
        if stdb is not None:
            self.backend = "torch"
            self.surrogate_function = stdb  # its α, β go to the fire rule (neuron_params)
        self.leak = _checked_leak(leak, check_flag("TrainableIFNode", "learnable_leak",
                                                   learnable_leak), self.v_threshold)  # fmt: skip

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
            leak = self.leak
            if isinstance(leak, Tensor) and not bool(torch.isfinite(leak.detach()) & (leak > 0)):
                raise ConfigurationError(
                    f"TrainableIFNode: leak {float(leak.detach()):.6g} is not finite and > 0 "
                    "(a learnt λ went to 0 or below): lower the learning rate, or clamp the "
                    "leaks after each step"
                )
        return super().forward(x)

    @property
    def stdb(self) -> STDB | None:
        """The STDB surrogate this neuron fires with, or ``None`` (a membrane surrogate)."""
        surrogate = self.surrogate_function
        return surrogate if isinstance(surrogate, STDB) else None

    @property
    def leaky(self) -> bool:
        """Whether the charge is ``λ·V + X`` (a learnable leak, or a fixed one below 1)."""
        return isinstance(self.leak, Tensor) or self.leak != 1.0

    def used_leak(self) -> Tensor | float:
        """The λ the charge uses: ``min(λ, 1)``, the gradient passed straight through
        above 1 (a leak pushed past 1 keeps a gradient: it can come back below 1)."""
        leak = self.leak
        if not isinstance(leak, Tensor):
            return leak
        return leak - (leak.detach() - 1.0).clamp(min=0.0)

    def declaration(self) -> NeuronDeclaration:
        """IF with the fire rule on ``(H − θ)/θ``; ``H = λ·V + X`` when leaky; with STDB
        also ``Δt``, the steps since the last spike (:mod:`spikeflow.conversion.stdb`)."""
        if self.stdb is not None:
            return declare(stdb_charge, stdb_update, "TrainableIFNode(stdb)", True,
                           None, None, stdb_fire)  # fmt: skip
        if self.leaky:
            return declare(leaky_charge, None, "TrainableIFNode(leak)", False, None, None,
                           _relative_fire)  # fmt: skip
        return super().declaration()

    def neuron_params(self) -> dict[str, Tensor | float]:
        """``leak`` (and STDB's α, β) when the declaration takes them."""
        stdb = self.stdb
        if stdb is not None:
            return {"leak": self.used_leak(), "stdb_alpha": stdb.alpha, "stdb_beta": stdb.beta}
        return {"leak": self.used_leak()} if self.leaky else {}

    def initial_state(self, like: Tensor) -> dict[str, Tensor]:
        """As the converted neuron's; with STDB also ``Δt`` of a neuron that has not fired
        (a step count: float32 at least, as bfloat16 stops counting at 256)."""
        state = super().initial_state(like)
        if self.stdb is not None:
            dtype = torch.promote_types(like.dtype, torch.float32)
            state["since"] = torch.full_like(like, NEVER_FIRED, dtype=dtype)
        return state

    def extra_repr(self) -> str:
        text = super().extra_repr()
        leak = self.leak
        if isinstance(leak, Tensor):
            return text + f", leak={float(leak.detach()):g}, learnable_leak=True"
        return text + (f", leak={leak:g}" if leak != 1.0 else "")

    @classmethod
    def from_neuron(
        cls,
        neuron: ConversionIFNode,
        surrogate_function: Surrogate | STDB | str | None = None,
        learnable_threshold: bool = True,
        detach_reset: bool = False,
        learnable_leak: bool = False,
    ) -> TrainableIFNode:
        """The trainable form of a converted ``neuron`` (its θ, V0, weighting, step mode
        and backend; θ copied; a fine-tuned neuron's leak kept, else 1). With STDB, a
        fused backend (``'cpu'``, ``'triton'``) runs as ``'torch'``, kept in
        :attr:`kept_backend`."""
        theta = neuron.v_threshold
        theta = theta.detach().clone() if isinstance(theta, Tensor) else theta
        leak = getattr(neuron, "leak", 1.0) if isinstance(neuron, TrainableIFNode) else 1.0
        # (a learnt λ past 1 runs as 1: kept as the 1 it runs as)
        leak = leak.detach().clamp(max=1.0) if isinstance(leak, Tensor) else min(leak, 1.0)
        kept = neuron.kept_backend if isinstance(neuron, TrainableIFNode) else neuron.backend
        stdb = _stdb_or_none(surrogate_function, "TrainableIFNode") is not None
        new = cls(
            theta,
            neuron.initial_membrane,
            neuron.weighted,
            surrogate_function=surrogate_function,
            learnable_threshold=learnable_threshold,
            detach_reset=detach_reset,
            leak=leak,
            learnable_leak=learnable_leak,
            step_mode=neuron.step_mode,
            backend="torch" if stdb and kept not in ("auto", "torch") else kept,
        )
        new.kept_backend = kept  # the user's, not STDB's reference loop
        return new


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
    surrogate_function: Surrogate | STDB | str | None = None,
    learnable_threshold: bool = True,
    detach_reset: bool = False,
    learnable_leak: bool = False,
) -> ConvertedSNN:
    """A copy of the converted ``snn`` to fine-tune with surrogate gradients through time.

    Every :class:`ConversionIFNode` becomes a :class:`TrainableIFNode` (same θ, V0 and
    spikes); the weights are the body's parameters, trained as they are. A network
    fine-tuned already gets the arguments given now (its θ and λ kept as trained): e.g.
    ``learnable_threshold=False`` for a second phase with the thresholds fixed. Train it as
    any SNN: ``loss(snn(constant_input(x, T)).mean(0), y).backward()``. Batch norms
    kept from the ANN (those not folded) stay in eval mode, on the ANN's statistics.

    Args:
        snn: a rate-coded network from :func:`~spikeflow.conversion.convert` (not
            modified).
        surrogate_function: σ on ``(H − θ)/θ``; each neuron gets its own copy (default
            ``Triangle()``, DIET-SNN's); or :class:`STDB` / ``"stdb"``: STDB's
            spike-time surrogate ``α·exp(−β·Δt)`` (Rathi et al. 2020; the reference
            loop runs it: neurons set to a fused backend run on ``'torch'`` while
            fine-tuned, and :func:`frozen` gives their backend back). The authors put
            the loss on the output summed over the T steps, not its mean; STDB needs
            that here (docs/conversion.md measures it). ``"diet"``: DIET-SNN's
            ``LinearSpike``, the triangle damped by :data:`DIET_DAMPING`,
            ``0.3·max(0, 1 − |z|)`` (``NorseTriangle(0.3)``).
        learnable_threshold: make every θ a trainable parameter (DIET-SNN).
        detach_reset: no surrogate gradient through the spike in the soft reset, as
            DIET-SNN's code (its reset ``θ·(V/θ − 1 > 0)`` is a hard comparison); the
            default keeps it (the reset's spike is differentiated as the output's).
        learnable_leak: DIET-SNN's membrane leak, one ``λ`` per layer, ``H = λ·V + X``,
            trained with the rest (from 1: the converted IF neuron, spike for spike);
            the charge uses ``min(λ, 1)`` (gradient passed straight through above 1),
            and a λ at 0 or below raises at the next call.

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
    surrogate_function = _named_surrogate(surrogate_function, "fine_tunable")  # type: ignore[assignment]
    stdb = _stdb_or_none(surrogate_function, "fine_tunable")
    if stdb is not None:
        surrogate_function = stdb
    elif surrogate_function is not None and not isinstance(surrogate_function, Surrogate):
        checked_surrogate(surrogate_function)  # raises, naming the type
    if (
        stdb is None
        and surrogate_function is not None
        and not (surrogate_function.spiking and type(surrogate_function).heaviside_forward)
    ):
        what = "spiking=False" if not surrogate_function.spiking else "a forward that is not Θ"
        raise ConfigurationError(
            f"fine_tunable: surrogate_function {surrogate_function!r} has {what}: the "
            "network trained would not be the converted one spike for spike (nor what "
            "frozen() gives back); pass a spiking surrogate with the Heaviside forward"
        )
    learnable = check_flag("fine_tunable", "learnable_threshold", learnable_threshold)
    detached = check_flag("fine_tunable", "detach_reset", detach_reset)
    leaky = check_flag("fine_tunable", "learnable_leak", learnable_leak)
    trainable = copy.deepcopy(snn)
    for name, module in list(trainable.body.named_modules()):
        if not isinstance(module, TimeFolded):
            continue
        inner = module.module
        if isinstance(inner, ConversionIFNode):  # a TrainableIFNode too: rebuilt as asked
            surrogate = copy.deepcopy(surrogate_function)
            module.module = TrainableIFNode.from_neuron(
                inner, surrogate, learnable, detached, leaky
            )
        elif isinstance(inner, _BUILT_IN):
            _refuse(name, inner)
        elif not isinstance(inner, GatedMaxPool):  # a conversion rule's module
            for path, neuron in _rule_neurons(name, inner):
                surrogate = copy.deepcopy(surrogate_function)
                new = TrainableIFNode.from_neuron(neuron, surrogate, learnable, detached, leaky)
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
    conversion tools. An STDB neuron becomes a plain one too (STDB changes only the
    backward), with the backend it had before STDB ran it on the reference loop.

    Raises:
        ConfigurationError: a learnt θ not finite and > 0, or a neuron whose leak is
            below 1 (named, with λ): a leaky neuron is not an IF neuron, and the
            conversion tools and the NIR export take IF neurons only; run the
            fine-tuned network itself (under ``torch.no_grad()``) instead.
    """
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
    leak = neuron.used_leak()
    leak = float(leak.detach()) if isinstance(leak, Tensor) else leak
    if leak != 1.0:
        raise ConfigurationError(
            f"frozen: {name!r} has a membrane leak λ = {leak:.6g} < 1 (learnable_leak): "
            "it is a leaky neuron, not the converted IF neuron the conversion tools and "
            "the NIR export take; run the fine-tuned network itself under torch.no_grad(), "
            "or fine-tune without learnable_leak"
        )
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
        backend=neuron.kept_backend,  # not STDB's reference loop
    )
