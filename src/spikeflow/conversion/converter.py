"""The machinery of one :func:`~spikeflow.conversion.convert` run: the ``torch.fx``
tracer that keeps sites, rules' modules and known layers as leaves (:func:`_trace`), and
:class:`_Converter`, which walks the model (traced where it can be, module by module
where not), folds batch norms, places the calibration sites and, once calibrated,
replaces each site by its neuron and records every decision in the report. The steps
and the options are documented on :func:`~spikeflow.conversion.convert`.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Mapping
from typing import Literal

from torch import fx, nn
from torch.nn.modules.batchnorm import _BatchNorm

from spikeflow._checks import check_flag
from spikeflow.conversion._checks import (
    check_initial_membrane,
    check_positive_int,
)
from spikeflow.conversion.builtin_rules import BUILTIN_RULES
from spikeflow.conversion.calibrate import ActivationObserver, set_calibration_options
from spikeflow.conversion.calibration_pass import CalibrationPass
from spikeflow.conversion.classify import (
    KNOWN_MODULES,
    MAXPOOL_MODULES,
    SIGMA_DELTA_ACTIVATIONS,
    classify_module,
    overridden_base,
    own_forward_text,
)
from spikeflow.conversion.fold import graph_module, set_submodule
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
from spikeflow.conversion.snn import CODINGS, TimeFolded
from spikeflow.errors import ConfigurationError

__all__: list[str] = []

MaxPoolMode = Literal["gated", "keep"]
TraceMode = Literal["auto", "fx", "modules"]


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
        set_calibration_options(self, norm, percentile, per_channel, include_zeros, levels,
                                fraction, momentum)  # fmt: skip
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
