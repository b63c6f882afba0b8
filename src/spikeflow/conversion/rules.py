"""Conversion rules: what :func:`~spikeflow.conversion.convert` does at an activation.

A rule says, for one module type, what statistic of the ANN's activations the
calibration pass records there (``observe``) and which spiking module replaces the
site afterwards (``replace``). ``nn.ReLU``, ``QCFS`` and the max pools have built-in
rules (:mod:`~spikeflow.conversion.builtin_rules`); a user adds one for a module of
their own with :func:`register_rule` (every later conversion) or
``convert(..., rules={MyAct: rule})`` (one conversion, which may also override a built-in
rule) or ``with using_rules({MyAct: rule}):`` (every conversion the block runs, in this
thread or asyncio task only: for code that calls convert itself). All of them go
through the same path: a site is made where the rule's module type is found,
calibrated by convert's own observer (``norm``, ``percentile``, ``per_channel``, ...),
and replaced by what ``rule.replace`` returns; the report names the rule.

A rule for class ``C`` applies to ``C`` and to its subclasses that keep ``C``'s
``forward``; a subclass with a forward of its own computes something else, and is
traced through (as a subclass of ``nn.ReLU`` with its own forward is).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal

from torch import Tensor, nn

from spikeflow.base import MemoryModule
from spikeflow.conversion.snn import CODINGS
from spikeflow.errors import ConfigurationError

__all__ = [
    "ConversionRule",
    "NeuronOptions",
    "Replacement",
    "RuleSite",
    "find_rule",
    "mark_unstreamable",
    "register_rule",
    "registered_rules",
    "rule_detail",
    "rule_table",
    "ruled_base_text",
    "unregister_rule",
    "using_rules",
]

#: ``"output"``: the activation's output (as a ReLU's; every ``norm`` works);
#: a callable ``observe(x, y) -> Tensor`` of the site's input ``x`` and output ``y``:
#: the values whose statistic (``norm='max'`` or ``'percentile'``) becomes the scale;
#: ``None``: no calibration (the rule takes its scale from the module).
Observe = Literal["output"] | Callable[[Tensor, Tensor], Tensor] | None
ReplacementAction = Literal["converted", "replaced", "kept", "unconverted"]
_ACTIONS = ("converted", "replaced", "kept", "unconverted")
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


@dataclass(frozen=True)
class NeuronOptions:
    """The options of :func:`~spikeflow.conversion.convert` that shape its neurons
    (a rule may follow them or not).

    Attributes:
        norm: how the scales were calibrated, as the report writes it (``'max'``,
            ``'p99.9'``, ``'0.5·max'``, ...).
        initial_membrane: ``V0/θ`` given to convert (None: each rule's default).
        group_size: convert's ``group_size`` (None: not asked for).
        multi_threshold: convert's ``multi_threshold`` (None: not asked for).
        negative_spikes: convert's ``negative_spikes``.
        coding: ``'rate'`` or ``'differential'``.
        max_pool: ``'gated'`` or ``'keep'``.
    """

    norm: str
    initial_membrane: float | None
    group_size: int | None
    multi_threshold: int | None
    negative_spikes: bool
    coding: str
    max_pool: str


@dataclass(frozen=True)
class RuleSite:
    """What a rule's ``replace`` is given about one site.

    Attributes:
        module: the ANN's module there (an ``nn.ReLU()``, a max pool or ``QCFS`` layer
            for a traced call; the batch norms before it already folded).
        name: the site's report name (module path, or ``<module>.<node>``).
        scale: the calibrated statistic of what the rule observes (shape ``[]`` per
            layer, ``[C, 1, ..., 1]`` per channel), or None where it observes nothing.
        options: convert's neuron options.
        silent_channels: per channel, how many channels the calibration never saw
            above 0 (they got the layer's largest scale).
        shared: how many calls per forward pass share this site (1 unless an untraced
            forward calls one module several times).
    """

    module: nn.Module
    name: str
    scale: Tensor | None
    options: NeuronOptions
    silent_channels: int = 0
    shared: int = 1


@dataclass(frozen=True)
class Replacement:
    """A rule's answer with more than a module: what the report says, and how it runs.

    Attributes:
        module: the spiking part (or the ANN's module itself, with ``action='kept'``
            or ``'unconverted'``).
        detail: the report's detail (convert prefixes a user rule's name).
        action: ``'converted'`` (a neuron), ``'replaced'`` (another spiking part),
            ``'kept'`` (the ANN's module, exact on every step) or ``'unconverted'``
            (the ANN's module, left although the SNN differs there: a strict
            conversion refuses it, naming ``detail``).
        steps: ``'sequence'``: the module takes and returns ``[T, B, ...]`` (convert
            runs it on the time-folded signal through a
            :class:`~spikeflow.conversion.snn.TimeFolded`); ``'folded'``: a stateless
            module run on the folded ``[T*B, ...]`` as the layers around it.
    """

    module: nn.Module
    detail: str = ""
    action: ReplacementAction = "converted"
    steps: Literal["sequence", "folded"] = "sequence"

    def __post_init__(self) -> None:
        if not isinstance(self.module, nn.Module):
            raise ConfigurationError(
                f"Replacement.module must be an nn.Module, got {type(self.module).__name__}"
            )
        if self.action not in _ACTIONS:
            raise ConfigurationError(
                f"Replacement.action must be one of {_ACTIONS}, got {self.action!r}"
            )
        if self.steps not in ("sequence", "folded"):
            raise ConfigurationError(
                f"Replacement.steps must be 'sequence' or 'folded', got {self.steps!r}"
            )
        if not isinstance(self.detail, str):
            raise ConfigurationError(
                f"Replacement.detail must be a str, got {type(self.detail).__name__}"
            )


@dataclass(frozen=True)
class ConversionRule:
    """How an activation module type becomes a spiking part.

    Args:
        replace: ``replace(site: RuleSite) -> nn.Module | Replacement``: the spiking
            module for one site (a plain module: ``'converted'``, taking and returning
            ``[T, B, ...]``).
        observe: what the calibration pass records at the site (see :data:`Observe`):
            ``'output'`` (default), a callable ``observe(x, y) -> Tensor``, or None.
        name: the name the report gives the rule (default: ``replace``'s name).
        codings: the ``coding`` options of convert whose signal the modules ``replace``
            gives compute on (default ``('rate',)``). Differential coding sends each
            layer the differences of running means after a bias step, on which a rate
            neuron computes something else: a rule that follows ``site.options.coding``
            (a :class:`~spikeflow.conversion.differential.DifferentialNeuron` there)
            says ``codings=('rate', 'differential')``; convert refuses the others.
    """

    replace: Callable[[RuleSite], nn.Module | Replacement]
    observe: Observe = "output"
    name: str = ""
    codings: tuple[str, ...] = ("rate",)

    def __post_init__(self) -> None:
        if not callable(self.replace):
            raise ConfigurationError(
                f"ConversionRule.replace must be callable (site -> nn.Module), got "
                f"{type(self.replace).__name__}"
            )
        if not (self.observe is None or self.observe == "output" or callable(self.observe)):
            raise ConfigurationError(
                f"ConversionRule.observe must be 'output', a callable (x, y) -> Tensor or "
                f"None, got {self.observe!r}"
            )
        if not isinstance(self.name, str):
            raise ConfigurationError(
                f"ConversionRule.name must be a str, got {type(self.name).__name__}"
            )
        if not self.name:
            object.__setattr__(self, "name", getattr(self.replace, "__name__", "rule"))
        codings = (self.codings,) if isinstance(self.codings, str) else self.codings
        if (
            not isinstance(codings, (tuple, list))
            or not codings
            or any(coding not in CODINGS for coding in codings)
        ):
            raise ConfigurationError(
                f"ConversionRule.codings must be a non-empty tuple of {CODINGS}, got "
                f"{self.codings!r}"
            )
        object.__setattr__(self, "codings", tuple(codings))


_REGISTERED: dict[type[nn.Module], ConversionRule] = {}
_REGISTRY_LOCK = threading.Lock()  # register_rule's check and set, one thread at a time
#: The rules of the enclosing ``using_rules`` blocks (a context variable: each thread
#: and asyncio task sees its own).
_SCOPED: ContextVar[Mapping[type[nn.Module], ConversionRule] | None] = ContextVar(
    "spikeflow_conversion_rules", default=None
)


def _builtin() -> dict[type[nn.Module], ConversionRule]:
    # Imported on first use: the built-in rules import the conversion's neurons.
    from spikeflow.conversion.builtin_rules import BUILTIN_RULES

    return BUILTIN_RULES


def _check_entry(module_type: object, rule: object, where: str) -> None:
    """``module_type`` is an ``nn.Module`` subclass a rule can apply to, ``rule`` a
    :class:`ConversionRule`."""
    if not (isinstance(module_type, type) and issubclass(module_type, nn.Module)):
        raise ConfigurationError(
            f"{where}: a rule's key must be an nn.Module subclass (the activation's type), "
            f"got {module_type!r}"
        )
    if module_type is nn.Module or issubclass(module_type, _CONTAINERS):
        raise ConfigurationError(
            f"{where}: {module_type.__name__} holds other modules; a rule is for the "
            "type of one activation module"
        )
    if not isinstance(rule, ConversionRule):
        hint = " (wrap it: ConversionRule(replace=...))" if callable(rule) else ""
        raise ConfigurationError(
            f"{where}: the rule for {module_type.__name__} must be a ConversionRule, got "
            f"{type(rule).__name__}{hint}"
        )


def register_rule(
    module_type: type[nn.Module], rule: ConversionRule, *, replace: bool = False
) -> None:
    """Use ``rule`` for ``module_type`` (and its subclasses that keep its forward) in
    every later :func:`~spikeflow.conversion.convert`.

    Args:
        module_type: the activation's class.
        rule: the :class:`ConversionRule`.
        replace: allow replacing a rule registered for this type before.

    Raises:
        ConfigurationError: a bad key or rule; ``module_type`` already has a registered
            rule (and not ``replace``) or a built-in one (``nn.ReLU``, ``QCFS``, the max
            pools: pass ``rules={...}`` to convert to use another for one conversion).
    """
    _check_entry(module_type, rule, "register_rule")
    builtin = _builtin().get(module_type)
    if builtin is not None:
        raise ConfigurationError(
            f"register_rule: {module_type.__name__} has the built-in rule {builtin.name!r}; "
            f"to use {rule.name!r} for one conversion pass "
            f"convert(..., rules={{{module_type.__name__}: rule}}) (using_rules for a block)"
        )
    with _REGISTRY_LOCK:
        old = _REGISTERED.get(module_type)
        if old is not None and old is not rule and not replace:
            raise ConfigurationError(
                f"register_rule: {module_type.__name__} already has the rule {old.name!r}; "
                f"registering {rule.name!r} too would conflict (pass replace=True, or "
                "unregister_rule first)"
            )
        _REGISTERED[module_type] = rule


def unregister_rule(module_type: type[nn.Module]) -> ConversionRule:
    """Remove the rule :func:`register_rule` gave ``module_type``; return it."""
    with _REGISTRY_LOCK:
        if module_type not in _REGISTERED:
            name = getattr(module_type, "__name__", repr(module_type))
            raise ConfigurationError(f"unregister_rule: no rule is registered for {name}")
        return _REGISTERED.pop(module_type)


def registered_rules() -> dict[type[nn.Module], ConversionRule]:
    """The rules :func:`register_rule` added (a copy; the built-in ones not included)."""
    with _REGISTRY_LOCK:
        return dict(_REGISTERED)


@contextmanager
def using_rules(rules: Mapping[type[nn.Module], ConversionRule]) -> Iterator[None]:
    """Use ``rules`` in every :func:`~spikeflow.conversion.convert` run inside the
    ``with`` block, in this thread (or asyncio task) only; the rules in effect before
    come back when it ends, also on an error.

    They override the built-in and registered rules for the same type (as
    ``convert(rules=...)`` does, which overrides them in turn); an inner block's
    override an outer one's. Unlike :func:`register_rule`, nothing outlives the block,
    and other threads (a thread started inside the block too) do not see them.

    Raises:
        ConfigurationError: ``rules`` is not a mapping of module types to
            :class:`ConversionRule` s (the bad entry named).
    """
    if not isinstance(rules, Mapping):
        raise ConfigurationError(
            f"using_rules expects a mapping {{module type: ConversionRule}}, got "
            f"{type(rules).__name__}"
        )
    for module_type, rule in rules.items():
        _check_entry(module_type, rule, "using_rules")
    token = _SCOPED.set({**(_SCOPED.get() or {}), **rules})
    try:
        yield
    finally:
        _SCOPED.reset(token)


def rule_table(
    rules: Mapping[type[nn.Module], ConversionRule] | None = None,
) -> dict[type[nn.Module], ConversionRule]:
    """The rules of one conversion: built-in, then registered, then those of the
    enclosing :func:`using_rules` blocks, then ``rules`` (each overriding the ones
    before for the same type)."""
    if rules is not None and not isinstance(rules, Mapping):
        raise ConfigurationError(
            f"rules must be a mapping {{module type: ConversionRule}}, got {type(rules).__name__}"
        )
    for module_type, rule in (rules or {}).items():
        _check_entry(module_type, rule, "convert(rules=...)")
    return {**_builtin(), **registered_rules(), **(_SCOPED.get() or {}), **(rules or {})}


def find_rule(
    module: nn.Module, table: Mapping[type[nn.Module], ConversionRule]
) -> ConversionRule | None:
    """The rule of ``module``: that of the first class in its MRO with one, unless a
    class before it has a forward of its own (then None: the module is traced).

    Raises:
        ConfigurationError: two unrelated classes of ``module`` have different rules
            (``class Act(ActA, ActB)``): which one applies is not clear.
    """
    mro = type(module).__mro__
    found = [klass for klass in mro if klass in table]
    if not found:
        return None
    first = found[0]
    for klass in mro:
        if klass is first:
            break
        if "forward" in klass.__dict__:
            return None  # a forward of its own: not what the rule was written for
    for other in found[1:]:
        if not issubclass(first, other) and table[other] is not table[first]:
            raise ConfigurationError(
                f"{type(module).__name__} derives from {first.__name__} (rule "
                f"{table[first].name!r}) and {other.__name__} (rule {table[other].name!r}), "
                f"neither a subclass of the other: give {type(module).__name__} a rule of "
                "its own"
            )
    return table[first]


def ruled_base_text(cls: type, table: Mapping[type[nn.Module], ConversionRule]) -> str | None:
    """Why a rule of a base of ``cls`` does not apply to it (``cls`` or a class between
    them has a forward of its own: traced through), for the report of its calls; None
    if no base of ``cls`` has a rule."""
    if cls in table:
        return None
    for index, base in enumerate(cls.__mro__[1:], start=1):
        if base in table:
            if not any("forward" in k.__dict__ for k in cls.__mro__[:index]):
                return None  # the rule applies (the module was not traced)
            return (
                f"the forward of {cls.__name__}, a subclass of {base.__name__} with a "
                f"forward of its own: rule {table[base].name!r} for {base.__name__} does "
                f"not apply to it; give {cls.__name__} a rule of its own"
            )
    return None


def rule_detail(
    rule: ConversionRule,
    result: Replacement,
    scale: Tensor | None,
    norm: str,
    silent_channels: int = 0,
    shared: int = 1,
) -> str:
    """The report detail of a user rule's site: ``rule '<name>': `` and the rule's own
    detail, by default the module it gave and the scale calibrated with ``norm``."""
    detail = result.detail
    if not detail:
        detail = type(result.module).__name__
        if scale is not None and scale.dim() == 0:
            detail += f", {norm} scale={float(scale):.4g}"
        elif scale is not None:
            detail += f", {norm} per-channel scale[{scale.numel()}]"
        if silent_channels:
            detail += f", {silent_channels} silent in calibration"
    if shared > 1:
        detail += f", shared by {shared} calls per forward (do not stream)"
    return f"rule {rule.name!r}: {detail}"


def mark_unstreamable(module: nn.Module) -> None:
    """A user rule's sequence module with no spikeflow neuron in it (whose state
    :func:`~spikeflow.functional.streaming` could carry) and no ``streamable`` of its
    own gets ``streamable = False``: streaming refuses it instead of restarting it at
    every chunk. A module that carries its state itself, or has none, says
    ``streamable = True``."""
    if hasattr(module, "streamable"):
        return
    if not any(isinstance(m, MemoryModule) for m in module.modules()):
        module.streamable = False
