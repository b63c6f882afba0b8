"""Shared pieces of the model zoo: neuron construction by name and the checks of its
arguments; the builders' helpers (conv-BN units, input checks) live in
:mod:`spikeflow.models.building` and are re-exported here.

Every model takes ``neuron`` (a neuron class, a factory, or a name from
:data:`NEURONS`) and ``neuron_kwargs``; :class:`NeuronFactory` turns them into fresh
multi-step neuron modules, one per layer. Each model also has *default* neuron
arguments (the paper's settings, e.g. ``detach_reset=True`` and ``ATan`` for the PLIF
nets); the defaults the chosen neuron does not accept are dropped, and
``neuron_kwargs`` override the rest.
"""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from spikeflow.base import MemoryModule
from spikeflow.errors import ConfigurationError
from spikeflow.functional import reset_before_call
from spikeflow.models.bool_arguments import (  # LEGACY_BOOL_STRINGS: re-exported
    LEGACY_BOOL_STRINGS,  # noqa: F401
    SavedRunWarning,
    annotated_signature,
    check_bool_arguments,
    reading_saved_run,
)
from spikeflow.models.building import (
    always_firing_input,
    check_dense_net,
    check_input,
    check_pooled_size,
    check_positive_int,
    conv_bn,
    flat_features,
    flat_steps,
    image_sides,
    init_conv_linear,
    output_steps,
    per_stage,
    zero_init_bn,
)
from spikeflow.neurons import (
    PSN,
    AdExLIFNode,
    AdLIFNode,
    ALIFNode,
    AlphaNode,
    BRFNode,
    ComplementaryLIFNode,
    CubaLIFNode,
    DeltaLeakyNode,
    DSRIFNode,
    EIFNode,
    GatedLIFNode,
    IFNode,
    ILIFNode,
    IzhikevichNode,
    KLIFNode,
    LapicqueNode,
    LavaALIFNode,
    LeakyNode,
    LIAFNode,
    LIFNode,
    MaskedPSN,
    NoResetLIFNode,
    ParametricLIFNode,
    QIFNode,
    RAFNode,
    RefractoryAdExLIFNode,
    RefractoryCubaLIFNode,
    RefractoryLIFNode,
    SlidingPSN,
    SynapticNode,
    TCLIFNode,
    TernaryIFNode,
    TernaryLIFNode,
)
from spikeflow.surrogate import Surrogate, get_surrogate, surrogate_class

__all__ = [
    "NEURONS",
    "NOT_IN_ZOO",
    "NeuronFactory",
    "NeuronSpec",
    "SavedRunWarning",
    "always_firing_input",
    "annotated_signature",
    "check_bool_arguments",
    "check_dense_net",
    "check_input",
    "check_pooled_size",
    "check_positive_int",
    "conv_bn",
    "flat_features",
    "flat_steps",
    "image_sides",
    "init_conv_linear",
    "list_neurons",
    "output_steps",
    "per_stage",
    "reading_saved_run",
    "required_kwargs",
    "resolve_neuron",
    "zero_init_bn",
]

#: snnTorch's tutorial constants of ``Lapicque`` (U ← (1 − k) U + k R X, k = time_step /
#: (R C) = 0.2: U ← 0.8 U + X), the zoo's ``"lapicque"`` unless beta, R or C is given.
_LAPICQUE_TUTORIAL = {"R": 5.0, "C": 1e-3, "time_step": 1e-3}


def _zoo_lapicque(**kwargs: Any) -> LapicqueNode:
    """The zoo's ``"lapicque"``: :class:`~spikeflow.neurons.LapicqueNode` with snnTorch's
    tutorial constants (:data:`_LAPICQUE_TUTORIAL`) where ``kwargs`` give none of
    ``beta``, ``R`` and ``C`` (so ``neuron_kwargs={"beta": 0.9}`` replaces them, where a
    partial binding R and C would make it a third constant, an error)."""
    if not {"beta", "R", "C"} & kwargs.keys():
        kwargs = {**_LAPICQUE_TUTORIAL, **kwargs}
    return LapicqueNode(**kwargs)


# The arguments the zoo's NeuronFactory reads it to accept: the class's.
_zoo_lapicque.__signature__ = inspect.signature(LapicqueNode)  # type: ignore[attr-defined]
_zoo_lapicque.__name__ = _zoo_lapicque.__qualname__ = "LapicqueNode"  # (in messages)

#: Neuron names accepted by every model (``neuron="plif"``): a neuron class, or a
#: ``functools.partial`` of one binding what the zoo's networks need and the class has
#: no default for (LIAF's ``act`` and ``threshold_related``, which ``neuron_kwargs``
#: may override: ``{"act": "sigmoid", "threshold_related": True}``; snnTorch's decays),
#: or a factory with the class's signature (``"lapicque"``: :func:`_zoo_lapicque`).
NEURONS: dict[str, Callable[..., nn.Module]] = {
    "if": IFNode,
    "lif": LIFNode,
    "plif": ParametricLIFNode,
    "klif": KLIFNode,
    "alif": ALIFNode,
    "qif": QIFNode,
    "eif": EIFNode,
    "izhikevich": IzhikevichNode,
    "cuba_lif": CubaLIFNode,
    "adlif": AdLIFNode,
    # Recent neurons for long sequences (docs/neuron_zoo_sequence.md): learnable
    # per-neuron dynamics (``shape``, which the sequence models pass).
    "tc_lif": TCLIFNode,
    "brf": BRFNode,
    "clif": ComplementaryLIFNode,
    "glif": GatedLIFNode,
    "raf": RAFNode,
    "refractory_lif": RefractoryLIFNode,
    "refractory_cuba_lif": RefractoryCubaLIFNode,
    "adex_lif": AdExLIFNode,
    "refractory_adex_lif": RefractoryAdExLIFNode,
    "alpha": AlphaNode,
    # act(H) with ReLU: with act(H - θ) a layer whose membrane stays below θ (the output
    # layer of a fresh network, often) outputs zeros and passes no gradient at all.
    "liaf": functools.partial(LIAFNode, act="relu", threshold_related=False),
    "noreset_lif": NoResetLIFNode,
    "psn": PSN,
    "masked_psn": MaskedPSN,
    "sliding_psn": SlidingPSN,
    # SpikingJelly 2.0's: signed spikes in {-1, 0, 1}; integer counts in {0, ..., D}
    # (a straight-through gradient, no surrogate); the DSR IF, whose gradient is that of
    # the rate over the whole sequence of exactly T steps (neuron_kwargs T, as a PSN's).
    # (Not DSRLIFNode: see docs/neuron_zoo.md, "Neurons the zoo does not offer by name".)
    "ternary_if": TernaryIFNode,
    "ternary_lif": TernaryLIFNode,
    "ilif": ILIFNode,
    "dsr_if": DSRIFNode,
    # snnTorch's, with the decays of its documentation, which it has no default for:
    # Leaky's beta 0.9; Synaptic's alpha 0.9, beta 0.8; Lapicque's tutorial constants
    # (_zoo_lapicque). Measured on a tiny plif_digits run (docs/neuron_zoo_snntorch.md).
    "leaky": functools.partial(LeakyNode, beta=0.9),
    "synaptic": functools.partial(SynapticNode, alpha=0.9, beta=0.8),
    "lapicque": _zoo_lapicque,
    # DeltaLeaky fires on a change of its membrane by more than delta_threshold (1,
    # snnTorch's default); beta as "leaky"'s.
    "delta_leaky": functools.partial(DeltaLeakyNode, beta=0.9),
    # Lava-DL's ALIF (slayer.neuron.alif), which has no defaults: decays of a few steps
    # (spikeflow's choice; docs/neuron_zoo_lava.md).
    "lava_alif": functools.partial(
        LavaALIFNode,
        threshold=1.0,
        threshold_step=0.25,
        current_decay=0.25,
        voltage_decay=0.03,
        threshold_decay=0.03,
        refractory_decay=0.5,
    ),
}

#: Neurons of :mod:`spikeflow.neurons` the zoo does not offer by name, and why: models
#: in physical units (mV, ms) whose input is scaled for those units, so the zoo's
#: batch-normalised inputs (about ±1 per step, a few steps) leave them silent, without
#: spikes or gradient (measured on ``plif_digits``). The class itself may still be
#: passed (``neuron=CobaLIFNode``) with ``neuron_kwargs`` that rescale it. And DH-LIF,
#: whose input is one current per dendritic branch (``[..., N, K]``), which only a
#: dendritic layer gives: the zoo's networks feed ``[..., N]``. And Norse's AdaLIF, whose
#: time constants in steps (its input delayed and scaled by ``dt / tau_mem``) leave the
#: zoo's layers as silent.
NOT_IN_ZOO: dict[str, str] = {
    "ada_lif": (
        "AdaLIFNode is Norse's ada_lif_step with its time constants in steps (tau_syn 5, "
        "tau_mem 10, tau_adapt 800): the input reaches the membrane one step late, through "
        "a synaptic current, scaled by dt / tau_mem = 0.1, so in the zoo's few steps of "
        "batch-normalised input its layers stay all but silent (plif_digits, T = 6: 1% of "
        "the first layer fires, none of the others, and the classifier's weights get no "
        "gradient); use 'cuba_lif' or 'alif', or pass the class "
        "(neuron=spikeflow.neurons.AdaLIFNode) from Python with neuron_kwargs that suit "
        "the network (tau_syn, tau_mem, dt)"
    ),
    "dh_lif": (
        "DHLIFNode takes one current per dendritic branch ([T, B, N, K]), which only a "
        "dendritic layer gives (layers.DendriticLinear, layers.DendriticRecurrent); the "
        "zoo's networks feed one current per neuron. Train the DH-SRNN sequence model "
        "instead (--model dh_srnn_seq, --model-kwargs branches=4; its DH-LIF arguments "
        "through --neuron-kwargs), or build the layers from Python "
        "(docs/neuron_zoo_sequence.md)"
    ),
    "coba_lif": (
        "CobaLIFNode is Norse's conductance-based LIF in mV (rest -20, threshold -10, "
        "reversal potentials 60 and -100, dt = 1e-3, c_m = 0.2): an input opens a "
        "conductance through relu, and an input of 1 moves the membrane by 0.4 mV "
        "(dt / c_m x 80 mV), 10 mV below its threshold, so in the zoo's few steps of "
        "batch-normalised input (about ±1) its layers stay all but silent and pass no "
        "gradient (plif_digits: none reaches any weight); use 'cuba_lif' or 'lif', or pass "
        "the class (neuron=spikeflow.neurons.CobaLIFNode) from Python with neuron_kwargs "
        "that rescale it (dt, c_m, v_threshold)"
    ),
    "izhikevich2003": (
        "Izhikevich2003Node is the published Izhikevich (2003) model in mV and ms (rest "
        "-65 mV, spike cut at 30 mV, dt = 0.25 ms): a constant input below about 4 never "
        "makes it fire, 4 fires first after 51 steps and 10 after 14, so the zoo's "
        "batch-normalised inputs (about ±1 per step, a few steps) leave it silent, 95 mV "
        "below the threshold where the surrogate passes no gradient; 'izhikevich' is "
        "SpikingJelly's dimensionless variant (threshold 1), which the zoo takes, or pass "
        "the class (neuron=spikeflow.neurons.Izhikevich2003Node) from Python with an "
        "input scaled for it"
    ),
}

NeuronSpec = str | type[nn.Module] | Callable[..., nn.Module]


def list_neurons() -> list[str]:
    """The neuron names models accept, sorted."""
    return sorted(NEURONS)


def resolve_neuron(neuron: NeuronSpec) -> Callable[..., nn.Module]:
    """A neuron class/factory from a name (``"if"``, ``"lif"``, ``"plif"``, ...) or itself.

    Names are case-insensitive; ``-`` and ``_`` are the same.

    Raises:
        ConfigurationError: an unknown name (the message lists the names), the name of a
            neuron the zoo does not offer (:data:`NOT_IN_ZOO`; the message says why), or
            an object that is neither a name nor callable.
    """
    if isinstance(neuron, str):
        key = neuron.strip().lower().replace("-", "_")
        if key in NOT_IN_ZOO:
            raise ConfigurationError(
                f"neuron {neuron!r} is not offered to the model zoo's networks: {NOT_IN_ZOO[key]}"
            )
        if key not in NEURONS:
            raise ConfigurationError(
                f"unknown neuron {neuron!r}; available: {', '.join(list_neurons())}"
            )
        return NEURONS[key]
    if callable(neuron):
        return neuron
    raise ConfigurationError(
        f"neuron must be a name ({', '.join(list_neurons())}), a neuron class or a factory, "
        f"got {type(neuron).__name__}"
    )


def _accepted_parameters(factory: Callable[..., Any]) -> dict[str, inspect.Parameter] | None:
    """The keyword parameters ``factory`` accepts, by name (following ``**kwargs`` up the
    MRO; a subclass's parameter wins over its base's); None: any."""
    targets: list[Callable[..., Any]]
    if isinstance(factory, functools.partial) and isinstance(factory.func, type):
        factory = factory.func  # a partial of a neuron class takes that class's arguments
    if isinstance(factory, type):
        targets = [
            klass.__dict__["__init__"]
            for klass in factory.__mro__
            if "__init__" in klass.__dict__ and klass not in (nn.Module, object)
        ]
    else:
        targets = [factory]
    accepted: dict[str, inspect.Parameter] = {}
    for target in targets:
        try:
            params = annotated_signature(target).parameters.values()
        except (TypeError, ValueError):
            return None
        for p in params:
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                accepted.setdefault(p.name, p)
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    else:
        return None
    accepted.pop("self", None)
    if "init_tau" in accepted:  # ParametricLIFNode sets LIFNode's ``tau`` itself
        accepted.pop("tau", None)
    return accepted


def required_kwargs(factory: Callable[..., Any]) -> list[str]:
    """The arguments ``factory`` (a neuron class or factory) cannot be called without,
    in signature order (``[]`` when its signature cannot be read)."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return []
    return [
        p.name
        for p in params
        if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]


def _build_surrogate(value: Any) -> Surrogate:
    if isinstance(value, Mapping):
        spec = dict(value)
        if "name" not in spec:
            raise ConfigurationError(
                f"a surrogate given as a dict needs a 'name' key, got {sorted(spec)}"
            )
        name = spec.pop("name")
        cls = surrogate_class(name)  # whose arguments ``spec`` holds, checked before it is built
        spec = check_bool_arguments(annotated_signature(cls).parameters, spec, cls.__name__)
        return get_surrogate(name, **spec)
    return get_surrogate(value)


#: Neuron arguments of the peers under another name here (for the error hint).
PEER_NEURON_ARGUMENTS = {
    "spike_grad": "surrogate_function",  # snnTorch
    "threshold": "v_threshold",  # snnTorch, Lava-DL
}


def _neuron_name(resolved: Any) -> str:
    """The name errors give a neuron: its class's (through a ``functools.partial``, as
    the registry's ``leaky`` is), else its repr."""
    target = resolved.func if isinstance(resolved, functools.partial) else resolved
    return getattr(target, "__name__", repr(target))


class NeuronFactory:
    """Builds a fresh neuron module per call: ``factory()`` → ``neuron(**kwargs)``.

    Args:
        neuron: a name from :data:`NEURONS`, a neuron class or a factory.
        neuron_kwargs: arguments for every neuron; they override ``defaults``. A
            ``surrogate_function`` may be a name (``"atan"``) or a dict
            (``{"name": "atan", "alpha": 2.0}``).
        defaults: the model's default arguments; those the neuron does not accept are
            dropped silently (so ``neuron="if"`` on a PLIF net drops ``init_tau``), as
            are those the neuron class lists in ``model_defaults_ignored`` (a name
            that means something else there). A factory whose accepted arguments cannot
            be read (``**kwargs``) gets none.

    Raises:
        ConfigurationError: unknown neuron name, or a ``neuron_kwargs`` key the neuron
            does not accept (the message lists the accepted ones).
    """

    def __init__(
        self,
        neuron: NeuronSpec,
        neuron_kwargs: Mapping[str, Any] | None = None,
        defaults: Mapping[str, Any] | None = None,
    ) -> None:
        self.neuron = resolve_neuron(neuron)
        self.name = _neuron_name(self.neuron)
        if neuron_kwargs is not None and not isinstance(neuron_kwargs, Mapping):
            raise ConfigurationError(
                f"neuron_kwargs must be a dict, got {type(neuron_kwargs).__name__}"
            )
        parameters = _accepted_parameters(self.neuron)
        accepted = None if parameters is None else set(parameters)
        user = dict(neuron_kwargs or {})
        name = self.name
        if accepted is not None:
            unknown = sorted(set(user) - accepted)
            if unknown:
                hint = "".join(
                    f" ({peer}: spikeflow's {ours})"
                    for peer, ours in PEER_NEURON_ARGUMENTS.items()
                    if peer in unknown and ours in accepted
                )
                raise ConfigurationError(
                    f"neuron {name} does not accept {unknown}; it accepts {sorted(accepted)}{hint}"
                )
        # Defaults go only where they are known to be accepted (a factory taking
        # ``**kwargs`` of unknown use gets ``neuron_kwargs`` alone), and not over what a
        # partial binds: the user's choice, as neuron_kwargs are.
        bound = _partial_bound(self.neuron)
        keywords = self.neuron.keywords if isinstance(self.neuron, functools.partial) else {}
        rebound = sorted((bound - set(keywords)) & set(user))  # positional: no override
        if rebound:
            raise ConfigurationError(
                f"neuron_kwargs {rebound} are bound by position in the functools.partial "
                f"given as the neuron ({self.neuron!r}): bind them by keyword there to "
                "override them, or set them in one place"
            )
        # A neuron may refuse some defaults by name: an argument whose name a model's
        # defaults share but whose meaning differs (GatedLIFNode's ``init_tau`` is a
        # decay factor in (0, 1), the PLIF nets' a time constant of 2).
        target = self.neuron.func if isinstance(self.neuron, functools.partial) else self.neuron
        refused = set(getattr(target, "model_defaults_ignored", ()))
        kwargs = {
            key: value
            for key, value in {**(defaults or {}), "step_mode": "m"}.items()
            if accepted is not None and key in accepted and key not in bound | refused
        }
        kwargs.update(user)
        kwargs = check_bool_arguments(parameters or {}, kwargs, f"neuron {name}")
        if kwargs.get("step_mode", "m") != "m":
            raise ConfigurationError(
                "the models run their neurons in multi-step mode; drop step_mode from "
                f"neuron_kwargs (got {kwargs['step_mode']!r})"
            )
        if "surrogate_function" in kwargs and not isinstance(
            kwargs["surrogate_function"], Surrogate
        ):
            kwargs["surrogate_function"] = _build_surrogate(kwargs["surrogate_function"])
        missing = sorted(set(required_kwargs(self.neuron)) - set(kwargs))
        if missing:
            example = " ".join(f"{key}=..." for key in missing)
            raise ConfigurationError(
                f"neuron {name} needs the argument(s) {missing}, which have no default: pass "
                f"them in neuron_kwargs (on the command line: --neuron-kwargs {example})"
            )
        self.kwargs = kwargs
        self._accepted = accepted
        self._chosen = set(user) | bound

    def __call__(self, **layer_kwargs: Any) -> nn.Module:
        """A new neuron (each layer gets its own; surrogates are copied, not shared, also
        those a partial binds).

        ``layer_kwargs`` are what the model knows of this layer (``shape``: the
        per-neuron parameters' shape, for :class:`~spikeflow.neurons.AdLIFNode`); each
        goes to a neuron that accepts it, unless ``neuron_kwargs`` or a partial set it.
        """
        bound = self.neuron.keywords if isinstance(self.neuron, functools.partial) else {}
        per_layer = {
            key: value
            for key, value in layer_kwargs.items()
            if self._accepted is not None and key in self._accepted and key not in self._chosen
        }
        kwargs = {
            key: _copy_module(value) if isinstance(value, nn.Module) else value
            for key, value in {**bound, **self.kwargs, **per_layer}.items()
        }
        neuron = self.neuron(**kwargs)
        mode = getattr(neuron, "step_mode", "m")
        if mode != "m":  # a class defaulting to 's' (SpikingJelly's) or a partial binding it
            raise ConfigurationError(
                f"neuron {self.name} was built in step_mode={mode!r}; the models run their "
                "neurons in multi-step mode ([T, B, ...] input): build it with "
                "step_mode='m'"
            )
        if not isinstance(neuron, MemoryModule) and callable(getattr(neuron, "reset", None)):
            # Another library's stateful neuron (SpikingJelly's) keeps its membrane from
            # one call to the next; here each call is a whole sequence, as for ours.
            neuron.register_forward_pre_hook(reset_before_call)
        return neuron

    def __repr__(self) -> str:
        name = getattr(self.neuron, "__name__", repr(self.neuron))
        return f"NeuronFactory({name}, {self.kwargs})"


def _partial_bound(factory: Callable[..., Any]) -> set[str]:
    """The argument names a ``functools.partial`` binds, by keyword or by position."""
    if not isinstance(factory, functools.partial):
        return set()
    try:
        signature = inspect.signature(factory.func)
        arguments = signature.bind_partial(*factory.args, **factory.keywords).arguments
    except (TypeError, ValueError):  # no readable signature, or arguments it refuses
        return set(factory.keywords)
    names: set[str] = set()
    for name, value in arguments.items():
        kind = signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_KEYWORD:  # passed on by **kwargs, by name
            names.update(value)
        elif kind is not inspect.Parameter.VAR_POSITIONAL:
            names.add(name)
    return names | set(factory.keywords)


def _copy_module(module: nn.Module) -> nn.Module:
    return copy.deepcopy(module)
