"""ANN-to-SNN conversion (methods.md 7): trace, fold, calibrate, replace, report.

>>> snn, report = convert(ann, calibration_images, norm="percentile", percentile=99.9)
>>> print(report)                                  # what happened to every module and call
>>> rate = snn(constant_input(images, 32)).mean(0) # [T, B, ...] in, mean over T out

Steps:

1. **Trace** the ANN with ``torch.fx``. A (sub)module that does not trace is converted
   module by module instead: its children are converted (each traced if it can be), its
   own ``forward`` is kept, and relu calls made directly in that ``forward`` are caught
   during calibration and reported as unconverted.
2. **Fold** every batch norm that follows a convolution or linear layer into it
   (:mod:`~spikeflow.conversion.fold`), where it normalises that layer's output
   features (a Linear's only on ``[B, F]``: the shapes come from one forward pass on
   the first calibration batch); other eval-mode batch norms run as the per-channel
   affine maps they are, and the report says why each was not folded.
3. **Calibrate**: run the calibration data through the ANN and record, at each ReLU,
   the max or a percentile, per layer or per channel
   (:mod:`~spikeflow.conversion.calibrate`). QCFS layers need no data: λ is the scale.
4. **Replace** each ReLU (``nn.ReLU``, ``F.relu``, ``torch.relu``, ``x.relu()``) and each
   QCFS by an IF neuron with soft reset whose threshold is the scale and whose spikes
   carry it (:class:`~spikeflow.conversion.neuron.ConversionIFNode`), or by a group
   neuron (:class:`~spikeflow.conversion.group.GroupNeuron`, ``group_size=m``); the
   membrane starts at ``initial_membrane·θ`` (default 0 for ReLU, ``φ·λ = λ/2`` for
   QCFS). Max pooling becomes spike-count-gated max pooling
   (:class:`~spikeflow.conversion.pooling.GatedMaxPool`); average pooling, flatten,
   residual additions and the other affine operations run unchanged on every step.
   Calls that reduce, join, cut, index or merge dim 0, into which the SNN folds time,
   are refused by name (:mod:`~spikeflow.conversion.batchdim`; decided on the
   calibration batches where the trace cannot tell).

What a site (an activation, a max pool) becomes is its conversion rule's answer
(:mod:`~spikeflow.conversion.rules`; the built-in ones in
:mod:`~spikeflow.conversion.builtin_rules`, a user's through ``rules=`` or
:func:`~spikeflow.conversion.rules.register_rule`).

This module holds the public API and the orchestration (tracing, module-by-module
conversion, calibration, the spiking parts); the passes over a traced graph are in
:mod:`~spikeflow.conversion.rewrite`, the placeholders they leave in
:mod:`~spikeflow.conversion.site`.
"""

from __future__ import annotations

import copy
import importlib
import warnings
from collections.abc import Iterable, Mapping
from typing import Any, Literal, NamedTuple

from torch import Tensor, fx, nn
from torch.nn.modules.batchnorm import _BatchNorm

from spikeflow._checks import check_flag
from spikeflow.conversion._checks import (
    check_initial_membrane,
    check_positive_int,
)
from spikeflow.conversion.builtin_rules import BUILTIN_RULES, RELU_RULE
from spikeflow.conversion.calibrate import (
    ActivationObserver,
    check_fraction,
    check_include_zeros,
    check_levels,
    check_momentum,
    check_norm,
)
from spikeflow.conversion.calibration_pass import CalibrationPass
from spikeflow.conversion.classify import (
    KNOWN_MODULES,
    MAXPOOL_MODULES,
    SIGMA_DELTA_ACTIVATIONS,
    classify_module,
    overridden_base,
    own_forward_text,
)
from spikeflow.conversion.fold import graph_module, probe_output_shapes, set_submodule
from spikeflow.conversion.qcfs import QCFS, qcfs
from spikeflow.conversion.report import Action, ConversionError, ConversionReport, ReportEntry
from spikeflow.conversion.rewrite import GraphRewriter
from spikeflow.conversion.rules import (
    ConversionRule,
    NeuronOptions,
    Replacement,
    RuleSite,
    find_rule,
    mark_unstreamable,
    rule_detail,
    rule_table,
)
from spikeflow.conversion.site import Site
from spikeflow.conversion.snn import CODINGS, ConvertedSNN, TimeFolded
from spikeflow.errors import ConfigurationError
from spikeflow.prune.reparam import finalize

__all__ = ["Conversion", "convert"]

MaxPoolMode = Literal["gated", "keep"]
TraceMode = Literal["auto", "fx", "modules"]


class Conversion(NamedTuple):
    """The result of :func:`convert`: the spiking network and what was done."""

    snn: ConvertedSNN
    report: ConversionReport


class _Tracer(fx.Tracer):
    """Sites, converted parts, QCFS layers and subclasses of ReLU, QCFS, the max pools
    and the affine layers that keep their parent's forward are leaves (converted, or
    kept, as their parent); one with a forward of its own is traced (a parametrized one
    too, which torch.fx would take for a torch leaf), and the
    :func:`~spikeflow.conversion.qcfs.qcfs` its forward reaches (``super().forward(z)``)
    is one call, which becomes a neuron, as a relu or max pool call does; the parent's
    ``F.linear``/``F.conv2d``/... call in it stays the affine op it is."""

    def __init__(self, rules: Mapping[type[nn.Module], ConversionRule] | None = None) -> None:
        super().__init__(autowrap_functions=(qcfs,))
        # (torch.fx builds one with no arguments to unpickle a traced module)
        self.rules = rule_table() if rules is None else rules
        # autowrap_functions wraps qcfs where a module's forward names it; QCFS.forward
        # called through super() is no module call, so qcfs.py is searched too.
        self._autowrap_search.append(importlib.import_module(qcfs.__module__))

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if isinstance(m, (Site, TimeFolded)) or find_rule(m, self.rules) is not None:
            return True
        if isinstance(m, KNOWN_MODULES):
            return overridden_base(m) is None
        return super().is_leaf_module(m, qualname)


def _trace(
    module: nn.Module, rules: Mapping[type[nn.Module], ConversionRule] | None = None
) -> fx.GraphModule:
    """``module`` traced, the modules a rule applies to (built-in ones if no ``rules``)
    kept as leaves."""
    tracer = _Tracer(rules)
    graph = tracer.trace(module)
    return graph_module(tracer.root, graph, type(module).__name__)


class _Converter(GraphRewriter, CalibrationPass):
    def __init__(
        self,
        *,
        norm: str,
        percentile: float | None,
        per_channel: bool,
        include_zeros: bool,
        levels: int | None,
        fraction: float | None,
        momentum: float | None,
        initial_membrane: float | None,
        group_size: int | None,
        multi_threshold: int | None,
        negative_spikes: bool,
        coding: str,
        max_pool: MaxPoolMode,
        trace: TraceMode,
        rules: Mapping[type[nn.Module], ConversionRule] | None = None,
    ) -> None:
        self.rules = rule_table(rules)
        self.norm, self.percentile = check_norm(norm, percentile)
        check_include_zeros(self.norm, include_zeros)
        self.levels = check_levels(self.norm, levels)
        self.fraction = check_fraction(self.norm, fraction)
        self.momentum = check_momentum(self.norm, momentum)
        self.per_channel = bool(per_channel)
        self.include_zeros = bool(include_zeros)
        self.initial_membrane = (
            None if initial_membrane is None else check_initial_membrane(initial_membrane)
        )
        self.group_size = check_positive_int(group_size, "group_size", allow_none=True)
        self.multi_threshold = check_positive_int(
            multi_threshold, "multi_threshold", allow_none=True
        )
        if self.group_size is not None and self.multi_threshold is not None:
            raise ConfigurationError(
                "group_size and multi_threshold choose two different neurons: pass one"
            )
        if self.multi_threshold is not None and self.initial_membrane:
            raise ConfigurationError(
                "a multi-threshold neuron starts at V0 = 0 (as the authors'): leave "
                "initial_membrane unset with multi_threshold"
            )
        self.negative_spikes = check_flag("convert", "negative_spikes", negative_spikes)
        if coding not in CODINGS:
            raise ConfigurationError(f"coding must be one of {CODINGS}, got {coding!r}")
        self.coding = coding
        if coding == "differential":
            options = {"group_size": group_size, "initial_membrane": initial_membrane,
                       "negative_spikes": negative_spikes or None}  # fmt: skip
            given = [name for name, value in options.items() if value is not None]
            if given:
                raise ConfigurationError(
                    f"coding='differential' has its own neurons (one threshold, or "
                    f"multi_threshold=k; negative spikes always, V0 fixed): drop {given}"
                )
        if self.negative_spikes and self.multi_threshold is None:
            raise ConfigurationError(
                "negative_spikes=True is an option of the multi-threshold neuron: pass "
                "multi_threshold=k with it"
            )
        if max_pool not in ("gated", "keep"):
            raise ConfigurationError(f"max_pool must be 'gated' or 'keep', got {max_pool!r}")
        self.max_pool = max_pool
        if trace not in ("auto", "fx", "modules"):
            raise ConfigurationError(f"trace must be 'auto', 'fx' or 'modules', got {trace!r}")
        self.trace = trace
        self.options = NeuronOptions(
            self.norm_name(), self.initial_membrane, self.group_size, self.multi_threshold,
            self.negative_spikes, self.coding, self.max_pool,
        )  # fmt: skip
        self.report = ConversionReport()
        self.untraced: dict[int, str] = {}
        #: Untraced forwards of ReLU, QCFS and max-pool subclasses: name -> what they are.
        self.own_forward: dict[str, str] = {}
        #: id(child) -> (child, its replacement), for children listed at several places.
        self.replaced: dict[int, tuple[nn.Module, nn.Module]] = {}
        #: Report entries of batch-dim checks that passed (removed at the end).
        self.dropped: set[int] = set()
        self.input_dim: int | None = None  # dims of a calibration batch [B, ...]
        self.calibration_batches = 0  # how many ran (0: no calibration)
        #: The foldable layers' output shapes in a forward pass (BN folding checks them).
        self.output_shapes: dict[nn.Module, tuple[int, ...]] = {}

    # -- building the ANN with placeholders ---------------------------------------------

    def site(
        self, kind: str, name: str, source: str, ann: nn.Module, untraced: bool = False
    ) -> Site:
        """The placeholder of an activation or max pool; ``untraced``: it is called by an
        untraced forward (an in-place relu there writes its result back into its input)."""
        rule = find_rule(ann, self.rules)
        assert rule is not None  # a site is made where a rule applies
        if self.coding not in rule.codings:
            raise ConfigurationError(
                f"coding={self.coding!r} is not among the codings rule {rule.name!r} at "
                f"{name!r} ({source}) declares ({', '.join(rule.codings)}): the codings "
                "feed a site different signals (differential: differences of running means "
                "after a bias step), on which its module would compute something else. "
                "Follow site.options.coding in replace (a DifferentialNeuron for "
                "'differential') and list both codings, or convert with "
                f"coding={rule.codings[0]!r}"
            )
        observer = None
        if rule.observe is not None:
            if callable(rule.observe) and self.norm in ("gaussian", "ltb"):
                raise ConfigurationError(
                    f"norm={self.norm!r} calibrates what an activation outputs, and rule "
                    f"{rule.name!r} at {name!r} ({source}) observes a function of it: use "
                    "norm='max' or 'percentile' with it (or observe='output')"
                )
            percentile = self.percentile if self.norm == "percentile" else None
            with warnings.catch_warnings():
                # check_norm warned about a percentile <= 1 once, in __init__.
                warnings.filterwarnings("ignore", r"percentile=.* is a percentage", UserWarning)
                observer = ActivationObserver(
                    self.norm, percentile, self.per_channel, self.include_zeros, self.levels,
                    owner=f"{name!r} ({source})", fraction=self.fraction,
                    momentum=self.momentum,
                )  # fmt: skip
        write_back = untraced and isinstance(ann, nn.ReLU) and ann.inplace
        site = Site(kind, name, source, ann, observer, write_back, rule)
        site.report_index = len(self.report.entries)  # filled in by neuron(), in graph order
        self.report.add(name, source, "unconverted", "pending")
        return site

    def leaf(
        self, module: nn.Module, name: str, not_folded: str | None = None, untraced: bool = False
    ) -> nn.Module | None:
        """The replacement of a leaf module (itself if kept), or None for a container;
        ``not_folded`` says why a batch norm after a foldable layer stays; ``untraced``:
        the module is called by an untraced forward."""
        kind = classify_module(module, self.rules)
        source = type(module).__name__
        source = (
            f"QCFS(L={module.levels})"
            if isinstance(module, QCFS)
            else f"nn.{source}"
            if type(module).__module__.startswith("torch.nn")
            else source
        )
        if kind in ("activation", "maxpool"):
            return self.site(kind, name, source, module, untraced)
        if kind == "affine":
            if not_folded is not None:
                detail = f"eval-mode affine, not folded: {not_folded}"
            elif "BatchNorm" in source:
                detail = "eval-mode affine (not after a foldable layer)"
            else:
                detail = "runs on every step"
            self.report.add(name, source, "kept", detail)
            return module
        if kind == "unsupported":
            if isinstance(module, _BatchNorm):
                detail = (
                    "no running statistics (track_running_stats=False): it normalises with "
                    "batch statistics, not a fixed affine map"
                )
            elif isinstance(module, MAXPOOL_MODULES):
                detail = "max pool with return_indices=True"
            elif isinstance(module, SIGMA_DELTA_ACTIVATIONS):
                clip = isinstance(module, SIGMA_DELTA_ACTIVATIONS[1])  # ReLU1
                what = "fixed clip at 1" if clip else "negative dip"
                detail = (
                    f"a Loihi activation (its {what}) for sigma-delta networks, with no "
                    "rate-coded neuron here: convert with to_sigma_delta (docs/sigma_delta.md)"
                )
            else:
                detail = (
                    "not affine and has no spiking equivalent (only ReLU and QCFS become neurons)"
                )
            self.report.add(name, source, "unconverted", detail)
            return module
        return None

    def convert_tree(self, module: nn.Module, name: str) -> nn.Module:
        replaced = self.leaf(module, name or "<root>", untraced=True)
        if replaced is not None:
            return replaced
        has_forward = type(module).forward is not nn.Module.forward
        if self.trace != "modules" and has_forward:
            try:
                gm = _trace(module, self.rules)
            except Exception as err:
                if self.trace == "fx":
                    raise ConversionError(
                        f"torch.fx could not trace {name or '<root>'} ({type(module).__name__}): "
                        f"{err}"
                    ) from err
                reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
                self.report.add(
                    name or "<root>",
                    type(module).__name__,
                    "untraced",
                    f"converted module by module ({reason[:120]})",
                )
            else:
                self.rewrite_graph(gm, name)
                return gm
        if has_forward:
            self.untraced[id(module)] = name or "<root>"
            own = own_forward_text(type(module))
            if own is not None:
                self.own_forward[name or "<root>"] = own
        # Every place a child is listed (named_children skips repeats): a module listed
        # twice (one ReLU at two places of a Sequential) gets one replacement, shared
        # like a module an untraced forward calls twice.
        for child_name, child in list(module._modules.items()):
            if child is None:
                continue
            if id(child) not in self.replaced:
                path = f"{name}.{child_name}" if name else child_name
                self.replaced[id(child)] = (child, self.convert_tree(child, path))
            new = self.replaced[id(child)][1]
            if new is not child:
                setattr(module, child_name, new)
        return module

    # -- the spiking network ----------------------------------------------------------

    def neuron(self, site: Site) -> nn.Module:
        """The spiking part of ``site``, as its rule gives it; its report entry settled."""
        if self.calibration_batches and site.calls == 0 and site.observer is not None:
            self.settle(site, "kept", "never called by the calibration forward passes")
            return site.ann
        rule = site.rule
        assert rule is not None
        scale = site.observer.scale() if site.observer is not None else None
        silent = site.observer.silent_channels if site.observer is not None else 0
        context = RuleSite(site.ann, site.site_name, scale, self.options, silent, site.shared)
        builtin = any(rule is known for known in BUILTIN_RULES.values())
        if builtin:
            result = rule.replace(context)
        else:
            try:
                result = rule.replace(context)
            except Exception as error:
                raise ConversionError(
                    f"rule {rule.name!r} failed at '{site.site_name}' ({site.source}): "
                    f"{type(error).__name__}: {error}"
                ) from error
        if isinstance(result, nn.Module):
            result = Replacement(result)
        elif not isinstance(result, Replacement):
            raise ConversionError(
                f"rule {rule.name!r} at '{site.site_name}' ({site.source}) returned "
                f"{type(result).__name__}: a rule's replace must return an nn.Module (the "
                "spiking part, [T, B, ...] in and out) or a Replacement"
            )
        detail = result.detail
        if not builtin:
            detail = rule_detail(rule, result, scale, self.norm_name(), silent, site.shared)
        self.settle(site, result.action, detail)
        if result.action in ("kept", "unconverted") or result.steps == "folded":
            return result.module
        if not builtin:
            mark_unstreamable(result.module)
        return TimeFolded(result.module, site.write_back, site.input_name)

    def settle(self, site: Site, action: Action, detail: str) -> None:
        """Fill in the report entry reserved for ``site``."""
        self.report.entries[site.report_index] = ReportEntry(
            site.site_name, site.source, action, detail
        )

    def norm_name(self) -> str:
        if self.norm == "gaussian":
            return f"gaussian(levels={self.levels})"
        if self.norm == "ltb":
            return "ltb"
        name = "max" if self.norm == "max" else f"p{self.percentile:g}"
        if self.fraction is not None:
            name = f"{self.fraction:g}·max"
        return name if self.momentum is None else f"{name} (EMA {self.momentum:g})"

    def finalize(self, body: nn.Module) -> nn.Module:
        built: dict[int, nn.Module] = {}
        if isinstance(body, Site):
            return self.neuron(body)
        for path, module in list(body.named_modules(remove_duplicate=False)):
            if isinstance(module, Site):
                if id(module) not in built:
                    built[id(module)] = self.neuron(module)
                set_submodule(body, path, built[id(module)])
        return body


def convert(
    model: nn.Module,
    calibration_data: Tensor | Iterable[Any] | None = None,
    *,
    norm: str = "max",
    percentile: float | None = None,
    per_channel: bool = False,
    include_zeros: bool = False,
    levels: int | None = None,
    fraction: float | None = None,
    momentum: float | None = None,
    initial_membrane: float | None = None,
    group_size: int | None = None,
    multi_threshold: int | None = None,
    negative_spikes: bool = False,
    coding: str = "rate",
    max_pool: MaxPoolMode = "gated",
    strict: bool = True,
    trace: TraceMode = "auto",
    rules: Mapping[type[nn.Module], ConversionRule] | None = None,
) -> Conversion:
    """Convert a trained ReLU (or QCFS) network into a spiking network of IF neurons.

    Args:
        model: the trained ANN (not modified; a copy is converted in eval mode).
        calibration_data: a tensor batch, or an iterable of batches or of
            ``(input, label)`` pairs (a DataLoader); needed unless every activation is QCFS.
        norm: ``'max'`` (max-norm, Diehl 2015), ``'percentile'`` (robust norm,
            Rueckauer 2017) or ``'gaussian'`` (the threshold minimising the expected error
            of a ``levels``-level clipped ReLU for Gaussian pre-activations; Huang, Fang
            et al. 2025) or ``'ltb'`` (local threshold balancing, Bu et al. 2025:
            calibrated layer by layer on the clipped network, as SpikingJelly's
            ``LocalThresholdBalancingRecipe``, which is ``norm='ltb', per_channel=True,
            initial_membrane=0.5``) for the ReLU scales.
        percentile: p of the robust norm, a percentage in (0, 100] (99.9 or 99.99
            typically; default 99.9). Only with ``norm='percentile'``: given with
            ``norm='max'`` it raises instead of being ignored.
        per_channel: one scale per channel instead of one per layer.
        include_zeros: robust norm over all activations, zeros included (SpikingJelly),
            instead of over the positive ones (Rueckauer's SNN toolbox, the default).
            Only with ``norm='percentile'``.
        levels: the output levels the converted neurons resolve (``T`` for IF neurons
            run ``T`` steps, ``T·group_size`` for group neurons); needed by, and only
            used with, ``norm='gaussian'``.
        fraction: with ``norm='max'``, the scale is this share (in (0, 1]) of the
            largest activation (SpikingJelly's ``RateCodingRecipe(mode=0.5)``).
        momentum: with ``norm='max'`` or ``'percentile'``, the scale is a moving
            average over the batches of each batch's statistic, ``s ← (1 − m)·s +
            m·s_batch`` from the first batch's (SpikingJelly's, ``m = 0.1``), instead of
            the maximum over all batches (max) or their plain mean (percentile).
        initial_membrane: the membrane at t = 0 in units of the threshold; default 0 for
            ReLU sites and ``φ`` (1/2) for QCFS sites.
        group_size: replace every neuron by a group neuron of this many members
            (methods.md 7.3; the paper uses 4); None for plain IF neurons.
        multi_threshold: replace every neuron by a multi-threshold neuron with this many
            thresholds θ/2^j (methods.md 7.4; the authors use 8); not with group_size.
        negative_spikes: the multi-threshold neurons may also fire negative spikes to
            undo an overshoot (the authors' ``MTH_with_neg``).
        coding: ``'rate'`` (default) or ``'differential'`` (methods.md 7.4: the network
            sends differences of running means and runs a bias step first; its neurons
            are :class:`~spikeflow.conversion.differential.DifferentialNeuron`, with
            ``multi_threshold`` thresholds if given; max pooling only with
            non-overlapping windows; no group neurons, no streaming).
        max_pool: ``'gated'`` (spike-count gated max pool, default) or ``'keep'`` (max of
            each step's values, which overestimates).
        strict: raise :class:`~spikeflow.conversion.report.ConversionError` naming
            everything that could not be converted (otherwise only report it).
        trace: ``'auto'`` (torch.fx, module by module where tracing fails), ``'fx'``
            (tracing must succeed) or ``'modules'`` (module by module only).
        rules: ``{module type: ConversionRule}`` for this conversion, on top of the
            built-in rules (``nn.ReLU``, ``QCFS``, the max pools; one given here
            overrides them) and those :func:`~spikeflow.conversion.rules.register_rule`
            added (:mod:`~spikeflow.conversion.rules`): each site of such a type is
            calibrated as its rule observes and replaced by what its rule gives. A rule
            for ``nn.ReLU``, a max pool or a torch activation (``nn.Hardtanh``, ...)
            applies to its calls too (``F.hardtanh(x, 0, 6)``: constant arguments, not
            in place).

    Returns:
        ``(snn, report)``: the :class:`~spikeflow.conversion.snn.ConvertedSNN` (input
        ``[T, B, ...]``, output ``[T, B, ...]``; average it over T) and the report.
    """
    if not isinstance(model, nn.Module):
        raise ConfigurationError(f"convert expects a torch.nn.Module, got {type(model).__name__}")
    if any(isinstance(m, (ConvertedSNN, TimeFolded)) for m in model.modules()):
        raise ConfigurationError(
            f"convert expects the ANN; {type(model).__name__} is (or holds) a network "
            "convert made already: convert the ANN it came from instead"
        )
    converter = _Converter(
        norm=norm,
        percentile=percentile,
        per_channel=per_channel,
        include_zeros=include_zeros,
        levels=levels,
        fraction=fraction,
        momentum=momentum,
        initial_membrane=initial_membrane,
        group_size=group_size,
        multi_threshold=multi_threshold,
        negative_spikes=negative_spikes,
        coding=coding,
        max_pool=max_pool,
        trace=trace,
        rules=rules,
    )
    ann = copy.deepcopy(model).eval()
    finalize(ann)  # pruned layers (spikeflow.prune) as plain layers holding the sparse weights
    if calibration_data is not None and trace != "modules":
        converter.output_shapes, calibration_data = probe_output_shapes(ann, calibration_data)
    body = converter.convert_tree(ann, "")
    sites = [m for m in body.modules() if isinstance(m, Site)]
    needs_data = any(s.observer is not None for s in sites)
    if not needs_data and (fraction is not None or momentum is not None):
        given = "fraction" if fraction is not None else "momentum"
        raise ConfigurationError(
            f"{given}={fraction if fraction is not None else momentum!r} shapes the "
            "calibrated ReLU scales, and this model has no ReLU to calibrate (QCFS "
            "activations keep their trained λ): it would be ignored; leave it out"
        )
    if calibration_data is None:
        if needs_data:
            observed = [s for s in sites if s.observer is not None]
            names = ", ".join(s.site_name for s in observed)
            if any(s.rule is not RELU_RULE for s in observed):
                names = ", ".join(
                    f"{s.site_name} (rule {s.rule.name!r})" for s in observed if s.rule
                )
                raise ConfigurationError(
                    f"calibration_data is needed for the sites whose rules observe "
                    f"activations ({names}); only QCFS activations and rules with "
                    "observe=None convert without it"
                )
            raise ConfigurationError(
                f"calibration_data is needed to scale the ReLUs ({names}); only QCFS "
                "activations convert without it"
            )
        if converter.untraced:
            converter.report.add(
                ", ".join(converter.untraced.values()),
                "forward",
                "unverified",
                "untraced forward not inspected for relu calls or calls on dim 0 (no data)",
            )
        for where, what in converter.own_forward.items():  # not inspected: not converted
            converter.report.add(
                f"{where} (forward)",
                "forward",
                "unconverted",
                f"{what}, not traced: without calibration data its calls are not inspected "
                "(pass calibration_data, or let torch.fx trace it to convert it by its forward)",
            )
    else:
        converter.calibrate(body, calibration_data)
    converter.settle_probes(body)
    if not sites:
        ruled = sorted(t.__name__ for t in converter.rules if t not in BUILTIN_RULES)
        found = (
            f"no ReLU, QCFS or ruled activation ({', '.join(ruled)})"
            if ruled
            else "no ReLU or QCFS activation"
        )
        converter.report.add("<model>", type(model).__name__, "unconverted", f"{found} found")
    body = converter.finalize(body)
    report = converter.report
    report.entries = [e for i, e in enumerate(report.entries) if i not in converter.dropped]
    if strict:
        report.refuse_unconverted(
            type(model).__name__, "spiking form", "Replace them (ReLU/QCFS activations, affine "
            "layers) or pass strict=False to get the partial conversion and its report.",
        )  # fmt: skip
    snn = ConvertedSNN(body, report, converter.input_dim, coding=converter.coding)
    return Conversion(snn, report)
