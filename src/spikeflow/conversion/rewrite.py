"""The torch.fx graph passes of a conversion: a traced ANN graph rewritten for the SNN.

:class:`GraphRewriter` walks one traced (sub)module's graph (:meth:`~GraphRewriter.
rewrite_graph`): it folds batch norms into the layers before them, puts a
:class:`~spikeflow.conversion.site.Site` in place of every relu (``nn.ReLU``,
``F.relu``, ``torch.relu``, ``x.relu()``, in place or not), QCFS and max pool (call or
module; a module called more than once gets one site per call), makes the reads after
an in-place relu see its rectified output (:mod:`~spikeflow.conversion.inplace`),
reports every other call by what it computes (:mod:`~spikeflow.conversion.classify`),
and refuses calls on dim 0, into which the SNN folds time
(:mod:`~spikeflow.conversion.batchdim`), or inserts a probe where only the calibration
batches can tell (:meth:`~GraphRewriter.settle_probes` reads and removes them).
:func:`~spikeflow.conversion.convert` builds on it: it decides what each module
becomes (:meth:`~GraphRewriter.leaf`) and makes the sites (:meth:`~GraphRewriter.site`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from spikeflow.conversion.batchdim import (
    WHY,
    BatchDimProbe,
    BatchUse,
    batch_dim_use,
    probe_args,
    signal_nodes,
)
from spikeflow.conversion.classify import (
    MAXPOOL_CALLS,
    QCFS_CALLS,
    call_name,
    classify_call,
    moves_batch_dim,
    own_forward_text,
)
from spikeflow.conversion.fold import fold_batchnorm_in_graph, module_call_counts, set_submodule
from spikeflow.conversion.inplace import alias_root, clone_input, may_share_memory
from spikeflow.conversion.qcfs import QCFS
from spikeflow.conversion.report import ConversionReport, ReportEntry
from spikeflow.conversion.rules import ConversionRule, find_rule, ruled_base_text
from spikeflow.conversion.site import Site
from spikeflow.conversion.snn import TimeFolded

__all__ = ["GraphRewriter"]

_MAXPOOL_ARGS = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
_INPLACE_RELU_CALLS = frozenset({F.relu_, torch.relu_, Tensor.relu_, "relu_"})
#: What a batch-dim check (:mod:`~spikeflow.conversion.batchdim`) leaves open until run.
_UNDECIDED = {
    "dims": "whether that is dim 0 (the batch, into which the SNN folds time) is",
    "batch": "whether dim 0 stays the batch (into which the SNN folds time) is",
    "tensor": "whether this indexes a tensor's dim 0 (or picks from a tuple) is",
    "moves": "whether it moves dim 0 (the batch, into which the SNN folds time) is",
    "rank": "whether it reaches dim 0 (the batch; that depends on the input's rank) is",
}


#: torch's activation calls whose module takes the call's arguments after the input, by
#: the same names: a rule for the module type applies to the call (not in place).
_CALL_MODULES: dict[Any, type[nn.Module]] = {
    F.relu6: nn.ReLU6, F.hardtanh: nn.Hardtanh, F.leaky_relu: nn.LeakyReLU, F.elu: nn.ELU,
    F.selu: nn.SELU, F.celu: nn.CELU, F.gelu: nn.GELU, F.silu: nn.SiLU, F.mish: nn.Mish,
    F.hardswish: nn.Hardswish, F.hardsigmoid: nn.Hardsigmoid, F.softplus: nn.Softplus,
    torch.sigmoid: nn.Sigmoid, F.sigmoid: nn.Sigmoid, "sigmoid": nn.Sigmoid,
    torch.tanh: nn.Tanh, F.tanh: nn.Tanh, "tanh": nn.Tanh,
}  # fmt: skip


def _ruled_call(node: fx.Node, rules: Mapping[type[nn.Module], ConversionRule]) -> nn.Module | None:
    """The module of a torch activation call (``F.hardtanh(x, 0, 6)`` ->
    ``nn.Hardtanh(0, 6)``) if a rule applies to it, its arguments constants and it does
    not act in place; else None."""
    try:
        module_type = _CALL_MODULES.get(node.target)
    except TypeError:  # an unhashable target
        return None
    if module_type is None or node.op not in ("call_function", "call_method"):
        return None
    extra = dict(node.kwargs)
    extra.pop("input", None)
    values = [*node.args[1:], *extra.values()]
    if any(isinstance(v, fx.Node) for v in values):
        return None
    try:
        module = module_type(*node.args[1:], **extra)
    except TypeError:
        return None
    if getattr(module, "inplace", False) is not False:  # by keyword or position
        return None
    return module if find_rule(module, rules) is not None else None


def _in_signals(arg: Any, signals: set[fx.Node]) -> bool:
    return isinstance(arg, fx.Node) and arg in signals


def _owner(node: fx.Node, rules: Mapping[type[nn.Module], ConversionRule]) -> str:
    """`` (in the forward of C, a subclass of B with a forward of its own)`` for a call
    that the forward of such a subclass (of ReLU, QCFS, a max pool, an affine layer or
    a type with a conversion rule) makes, traced (the innermost module whose forward the
    trace went through), else ``""``."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    entry = list(stack.values())[-1]
    cls = entry[1] if isinstance(entry, tuple) and len(entry) > 1 else None
    if not isinstance(cls, type):
        return ""
    text = own_forward_text(cls) or ruled_base_text(cls, rules)
    return f" (in {text})" if text else ""


def _is_inplace_relu_call(node: fx.Node) -> bool:
    """Whether a relu call node rectifies its input in place (``x.relu_()``,
    ``torch.relu_(x)``, ``F.relu(x, inplace=True)``)."""
    if node.target in _INPLACE_RELU_CALLS:
        return True
    if node.target is F.relu:
        inplace = node.args[1] if len(node.args) > 1 else node.kwargs.get("inplace", False)
        return inplace is True
    return False


def _read_rectified(x: Any, node: fx.Node, result: fx.Node, order: dict[fx.Node, int]) -> None:
    """An in-place relu at ``node`` rectified ``x``: make the nodes after it that read
    ``x`` read ``result`` (its spiking replacement's output, a new tensor) instead, as
    the ANN's later reads of ``x`` saw the rectified values (also where the relu's own
    result is not used: ``x.relu_()`` on a line of its own)."""
    if not isinstance(x, fx.Node):
        return
    for user in list(x.users):
        if user is not result and order.get(user, -1) > order[node]:
            user.replace_input_with(x, result)


def _qcfs_layer(gm: fx.GraphModule, node: fx.Node) -> QCFS | str:
    """The QCFS layer of a traced call ``qcfs(z, threshold, levels, shift)`` (where a
    QCFS subclass's forward calls ``QCFS.forward``), or why there is none: its threshold
    must be a parameter, buffer or number (one λ), its levels and shift constants."""
    names = ("z", "threshold", "levels", "shift")
    args = dict(zip(names, node.args))
    args.update(node.kwargs)
    threshold, levels, shift = args.get("threshold"), args.get("levels"), args.get("shift", 0.5)
    if isinstance(threshold, fx.Node) and threshold.op == "get_attr":
        value = gm
        for part in str(threshold.target).split("."):
            value = getattr(value, part)
        threshold = value
    if not isinstance(threshold, (Tensor, float, int)) or isinstance(threshold, bool):
        return "qcfs with a computed threshold λ: only a parameter, buffer or number is one λ"
    if isinstance(threshold, Tensor) and threshold.numel() != 1:
        return f"qcfs with {threshold.numel()} thresholds: one λ per layer becomes the neuron's"
    if not isinstance(levels, int) or not isinstance(shift, (float, int)):
        return "qcfs with computed levels or shift: they must be constants of the forward"
    layer = QCFS(levels, 1.0, float(shift), learnable=False)
    # λ as it is (a bad one is reported at its site, as a QCFS layer's is)
    layer.threshold.copy_(torch.as_tensor(threshold).detach().reshape(()))
    return layer


class GraphRewriter(ABC):
    """The graph passes of a conversion (the converter is a subclass).

    A subclass provides :meth:`leaf` and :meth:`site`, and sets :attr:`report`,
    :attr:`output_shapes`, :attr:`dropped` and :attr:`calibration_batches`.
    """

    report: ConversionReport
    #: The foldable layers' output shapes in a forward pass (BN folding checks them).
    output_shapes: dict[nn.Module, tuple[int, ...]]
    #: Report entries of batch-dim checks that passed (removed at the end).
    dropped: set[int]
    calibration_batches: int  # how many ran (0: no calibration)
    #: The conversion's rules (:func:`~spikeflow.conversion.rules.rule_table`).
    rules: Mapping[type[nn.Module], ConversionRule]

    @abstractmethod
    def site(
        self, kind: str, name: str, source: str, ann: nn.Module, untraced: bool = False
    ) -> Site:
        """The placeholder of an activation or max pool (``kind``) named ``name``."""

    @abstractmethod
    def leaf(
        self, module: nn.Module, name: str, not_folded: str | None = None, untraced: bool = False
    ) -> nn.Module | None:
        """The replacement of a leaf module (itself if kept), or None for a container."""

    def rewrite_graph(self, gm: fx.GraphModule, prefix: str) -> None:
        def qualified(target: str) -> str:
            return f"{prefix}.{target}" if prefix else target

        not_folded: dict[str, str] = {}

        def ruled(module: nn.Module) -> bool:  # a batch norm a rule is for: the rule's
            return find_rule(module, self.rules) is not None

        for bn_name, layer_name in fold_batchnorm_in_graph(
            gm, self.output_shapes, not_folded, keep=ruled
        ):
            self.report.add(
                qualified(bn_name), "BatchNorm", "folded", f"into {qualified(layer_name)}"
            )
        calls = module_call_counts(gm)
        seen: dict[str, int] = {}
        order = {node: index for index, node in enumerate(gm.graph.nodes)}
        signals = signal_nodes(gm.graph)
        probes: list[tuple[fx.Node, BatchUse, int, bool]] = []
        for node in list(gm.graph.nodes):
            if node.op == "call_module":
                module = gm.get_submodule(node.target)
                if isinstance(module, (Site, TimeFolded)):
                    continue
                new = self.leaf(module, qualified(node.target), not_folded.get(node.target))
                if isinstance(new, Site) and len(node.args) + len(node.kwargs) > 1:
                    new.refuse_inputs(len(node.args), list(node.kwargs))  # raises
                if new is module and node.args and _in_signals(node.args[0], signals):
                    # nn.Flatten(0), nn.Unflatten(0, ...): checked on the calibration
                    # batches; the answer replaces the entry leaf() made ("kept").
                    source = self.report.entries[-1].source
                    self.check_batch_dim(gm, node, qualified(node.target), source, signals,
                                         probes, entry=len(self.report.entries) - 1)  # fmt: skip
                if new is None:  # a non-torch leaf module: run as is
                    self.report.add(
                        qualified(node.target),
                        type(module).__name__,
                        "unverified",
                        "kept; not known to be affine",
                    )
                elif new is not module:
                    if calls[node.target] == 1:
                        set_submodule(gm, node.target, new)
                    else:  # a module called more than once gets one stateful site per call
                        k = seen.get(node.target, 0)
                        seen[node.target] = k + 1
                        target = f"{node.target.replace('.', '_')}_call{k}"
                        new.site_name = qualified(target)  # type: ignore[union-attr]
                        gm.add_submodule(target, new)
                        node.target = target
                    if isinstance(module, nn.ReLU) and module.inplace:
                        x = node.args[0] if node.args else node.kwargs.get("input")
                        x = self.write_back(gm, node, x, new, order, root=not prefix)
                        _read_rectified(x, node, node, order)
            elif node.op in ("call_function", "call_method"):
                if self.check_batch_dim(
                    gm, node, qualified(node.name), call_name(node), signals, probes
                ):
                    continue
                new = self.rewrite_call(
                    gm, node, qualified(node.name), order, root=not prefix, signals=signals
                )
                if new is not None:  # a site: a signal for the calls after it
                    signals.add(new)
        for node, use, index, shared in probes:  # run on the calibration batches, then removed
            target = f"{node.name}_batch_probe"
            gm.add_submodule(target, BatchDimProbe(use, index, shared))
            with gm.graph.inserting_after(node):
                gm.graph.call_module(target, probe_args(node, use))
        gm.delete_all_unused_submodules()
        gm.recompile()

    def check_batch_dim(
        self,
        gm: fx.GraphModule,
        node: fx.Node,
        name: str,
        source: str,
        signals: set[fx.Node],
        probes: list[tuple[fx.Node, BatchUse, int, bool]],
        entry: int | None = None,
    ) -> bool:
        """Whether ``node`` acts on dim 0 (:mod:`~spikeflow.conversion.batchdim`), as the
        trace shows: then it is reported unconverted (True). Where only a run can tell,
        its check joins ``probes``, with a report entry for its answer: a new one, or
        ``entry`` (the module's own, which stays if the check passes)."""
        if node.op != "call_module" and classify_call(node, signals) not in ("affine", "unknown"):
            return False  # converted, or reported unconverted for what it computes
        use = batch_dim_use(node, gm, signals)
        if use is None:
            return False
        if use.problem is not None:
            self.report.add(name, source, "unconverted", f"{use.problem}; {WHY}")
            return True
        if entry is None:
            probes.append((node, use, len(self.report.entries), False))
            self.report.add(name, source, "unverified", "pending a run-time check")
        else:
            probes.append((node, use, entry, True))
        return False

    def settle_probes(self, body: nn.Module) -> None:
        """Read the batch-dim probes' answers into the report (a call on dim 0:
        ``unconverted``; no answer: ``unverified``; fine: no entry) and remove them."""
        for gm in [m for m in body.modules() if isinstance(m, fx.GraphModule)]:
            found = False
            for node in list(gm.graph.nodes):
                probe = gm.get_submodule(node.target) if node.op == "call_module" else None
                if not isinstance(probe, BatchDimProbe):
                    continue
                found = True
                entry = self.report.entries[probe.report_index]
                if probe.problem is not None:
                    detail, action = f"{probe.problem}; {WHY}", "unconverted"
                elif probe.calls == 0:
                    action = "unverified"
                    detail = f"{probe.use.what}: {_UNDECIDED[probe.use.check or 'dims']} " + (
                        "decided at run time, and no calibration batch reached it"
                        if self.calibration_batches
                        else "decided at run time: pass calibration_data to have it checked"
                    )
                else:  # keeps dim 0 the batch
                    if not probe.shared_entry:
                        self.dropped.add(probe.report_index)
                    gm.graph.erase_node(node)
                    continue
                self.report.entries[probe.report_index] = ReportEntry(
                    entry.name,
                    entry.source,
                    action,
                    detail,  # type: ignore[arg-type]
                )
                gm.graph.erase_node(node)
            if found:
                gm.delete_all_unused_submodules()
                gm.recompile()

    @staticmethod
    def write_back(
        gm: fx.GraphModule,
        relu: fx.Node,
        x: Any,
        site: nn.Module,
        order: dict[fx.Node, int],
        root: bool,
    ) -> Any:
        """An in-place relu ``relu`` of ``x`` in a traced graph: where other nodes may read
        ``x``'s memory afterwards (views), its neuron writes its output into ``x``, as the
        ANN's relu rectified it (:mod:`~spikeflow.conversion.inplace`); the network's own
        input is copied first. Returns ``x`` (the copy, if it was the input)."""
        if not isinstance(x, fx.Node) or not may_share_memory(x, relu, order, root):
            return x
        assert isinstance(site, Site)
        site.write_back = True
        base = alias_root(x)
        if root and base.op == "placeholder":
            copy = clone_input(gm.graph, base)
            if x is base:
                return copy
        return x

    def rewrite_call(
        self,
        gm: fx.GraphModule,
        node: fx.Node,
        name: str,
        order: dict[fx.Node, int],
        root: bool = False,
        signals: set[fx.Node] | None = None,
    ) -> fx.Node | None:
        """Convert, or report, one call; return the node of its site if it got one.
        ``signals``: the graph's nodes computed from its input (found if not given)."""
        signals = signal_nodes(gm.graph) if signals is None else signals
        kind = classify_call(node, signals)
        source = call_name(node)
        ruled = None
        if kind in ("unsupported", "unknown") and not moves_batch_dim(node, signals):
            ruled = _ruled_call(node, self.rules)  # an activation call a user rule is for
            kind = "activation" if ruled is not None else kind
        if kind == "affine":
            return None  # additions, views, ...: run on every step (not listed one by one)
        if kind == "unsupported":
            detail = (
                "moves the batch dimension (dim 0), into which the SNN folds time"
                if moves_batch_dim(node, signals)
                else "not affine, no spiking equivalent"
            )
            self.report.add(name, source, "unconverted", detail + _owner(node, self.rules))
            return None
        if kind == "unknown":
            detail = "kept; not known to be affine"
            self.report.add(name, source, "unverified", detail + _owner(node, self.rules))
            return None
        x = node.args[0] if node.args else node.kwargs.get("input")
        if ruled is not None:
            ann: nn.Module = ruled
        elif kind == "activation" and node.target in QCFS_CALLS:
            x = node.args[0] if node.args else node.kwargs.get("z")
            layer = _qcfs_layer(gm, node)
            if isinstance(layer, str):
                self.report.add(name, source, "unconverted", layer)
                return None
            ann = layer
            source = f"qcfs(L={layer.levels})"
        elif kind == "activation":
            ann = nn.ReLU()
        else:
            options = dict(zip(_MAXPOOL_ARGS, node.args[1:]))
            options.update({k: v for k, v in node.kwargs.items() if k != "input"})
            traced_args = any(isinstance(v, fx.Node) for v in options.values())
            if options.get("return_indices") or traced_args:
                self.report.add(
                    name, source, "unconverted", "max pool with indices or traced arguments"
                )
                return None
            options.pop("return_indices", None)
            dims = MAXPOOL_CALLS[node.target]
            ann = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}[dims](**options)
        target = f"{node.name}_site"
        site = self.site(kind, name, source, ann)
        gm.add_submodule(target, site)
        if kind == "activation" and _is_inplace_relu_call(node):
            x = self.write_back(gm, node, x, site, order, root)
        with gm.graph.inserting_before(node):
            new = gm.graph.call_module(target, (x,))
        node.replace_all_uses_with(new)
        if kind == "activation" and _is_inplace_relu_call(node):
            _read_rectified(x, node, new, order)
        gm.graph.erase_node(node)
        return new
