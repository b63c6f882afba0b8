"""Which modules and calls a conversion turns into neurons, keeps, or cannot handle.

A converted network runs its non-spiking parts on every time step, and the mean output
over time equals the ANN's only if those parts are affine per sample (convolution,
linear, average pooling, eval-mode batch norm, flatten, additions, views, ...). ReLU and
QCFS become IF neurons, max pooling becomes spike-gated max pooling, and any other
nonlinearity (GELU, sigmoid, softmax, a product of two signals, layer norm, a comparison
of a signal, ...) has no rate-coded equivalent here and is reported as unconverted.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Mapping
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.nn.modules.batchnorm import _BatchNorm

from spikeflow.conversion.loihi_activations import PiecewiseLinearSiLU, ReLU1
from spikeflow.conversion.nonlinear_names import NONLINEAR_WORDS, is_nonlinear_name
from spikeflow.conversion.qcfs import QCFS, qcfs
from spikeflow.conversion.rules import ConversionRule, find_rule, rule_table

__all__ = [
    "KNOWN_MODULES",
    "NONLINEAR_WORDS",
    "SIGMA_DELTA_ACTIVATIONS",
    "Kind",
    "call_name",
    "classify_call",
    "classify_module",
    "is_nonlinear_name",
    "moves_batch_dim",
    "overridden_base",
    "own_forward_text",
    "signal_nodes",
]

#: ``activation``: becomes a neuron; ``maxpool``: becomes a gated max pool; ``affine``:
#: runs unchanged per step (exact); ``unsupported``: a nonlinearity with no spiking
#: version; ``unknown``: kept, not known to be affine; ``container``: recurse into it.
Kind = Literal["activation", "maxpool", "affine", "unsupported", "unknown", "container"]

ACTIVATION_MODULES: tuple[type[nn.Module], ...] = (nn.ReLU, QCFS)
MAXPOOL_MODULES: tuple[type[nn.Module], ...] = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)
#: Linear maps with no constant term (a zero input gives zero): reshapes, average pools,
#: zero padding, upsampling.
LINEAR_MODULES: tuple[type[nn.Module], ...] = (
    nn.Identity,
    nn.Flatten,
    nn.Unflatten,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.ZeroPad1d,
    nn.ZeroPad2d,
    nn.ZeroPad3d,
    nn.Upsample,
)
DROPOUT_MODULES: tuple[type[nn.Module], ...] = (
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
)
AFFINE_MODULES: tuple[type[nn.Module], ...] = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
    nn.Linear,
    *LINEAR_MODULES,
    *DROPOUT_MODULES,
    nn.ConstantPad1d,
    nn.ConstantPad2d,
    nn.ConstantPad3d,
)
CONTAINERS: tuple[type[nn.Module], ...] = (nn.Sequential, nn.ModuleList, nn.ModuleDict)

RELU_CALLS: frozenset[Any] = frozenset({F.relu, F.relu_, torch.relu, torch.relu_, "relu", "relu_"})
#: The QCFS function (a traced forward calls it where it calls ``QCFS.forward``).
QCFS_CALLS: frozenset[Any] = frozenset({qcfs})
#: ``F.max_poolNd`` and the ``torch.max_poolNd`` they dispatch to (same positional order).
MAXPOOL_CALLS: dict[Any, int] = {
    F.max_pool1d: 1,
    F.max_pool2d: 2,
    F.max_pool3d: 3,
    torch.max_pool1d: 1,
    torch.max_pool2d: 2,
    torch.max_pool3d: 3,
}
AFFINE_CALLS: frozenset[Any] = frozenset(
    {
        operator.add,
        operator.sub,
        operator.neg,
        operator.pos,
        operator.getitem,
        getattr,
        len,
        torch.add,
        torch.sub,
        torch.cat,
        torch.concat,
        torch.flatten,
        torch.reshape,
        torch.squeeze,
        torch.unsqueeze,
        torch.permute,
        torch.transpose,
        torch.chunk,
        torch.split,
        F.linear,
        F.conv1d,
        F.conv2d,
        F.conv3d,
        F.conv_transpose1d,
        F.conv_transpose2d,
        F.conv_transpose3d,
        F.interpolate,
        F.avg_pool1d,
        F.avg_pool2d,
        F.avg_pool3d,
        F.adaptive_avg_pool1d,
        F.adaptive_avg_pool2d,
        F.adaptive_avg_pool3d,
        F.dropout,
        F.dropout1d,
        F.dropout2d,
        F.dropout3d,
        F.alpha_dropout,
        F.feature_alpha_dropout,
        F.pad,
        torch.mean,
        torch.sum,
        # Linear along dims >= 1; along dim 0 (or all dims) the converter refuses them
        # (spikeflow.conversion.batchdim), as it does sum, mean, cat, chunk, views, ...
        torch.nansum,
        torch.nanmean,
        torch.cumsum,
        torch.stack,
        torch.concatenate,
        torch.unbind,
        torch.select,
        torch.narrow,
        torch.index_select,
        torch.tensor_split,
        "nansum",
        "nanmean",
        "cumsum",
        "unbind",
        "select",
        "narrow",
        "index_select",
        "tensor_split",
        "add",
        "add_",
        "sub",
        "sub_",
        "neg",
        "view",
        "reshape",
        "flatten",
        "size",
        "dim",
        "mean",
        "sum",
        "permute",
        "transpose",
        "contiguous",
        "unsqueeze",
        "squeeze",
        "chunk",
        "split",
        "view_as",
        "reshape_as",
        "expand",
        "expand_as",
        "unflatten",
        "to",
        "type_as",
        "float",
    }
)
#: Affine only when at most one operand is a signal (the others numbers, parameters,
#: values computed from them, or shapes): ``2 * x``, ``x @ W`` and ``x @ W[0]`` are;
#: ``x * y`` and ``torch.mm(x, y)`` of two signals are not.
SCALING_CALLS: frozenset[Any] = frozenset(
    {
        operator.mul,
        operator.truediv,
        torch.mul,
        torch.div,
        "mul",
        "mul_",
        "div",
        "div_",
        operator.matmul,
        torch.matmul,
        torch.mm,
        torch.mv,
        torch.bmm,
        torch.einsum,
        "matmul",
        "mm",
        "mv",
        "bmm",
    }
)
#: Other products: of two signals they are not affine (refused); of one, whether they
#: contract dim 0 (the batch) is not checked, so they stay unverified.
PRODUCT_CALLS: frozenset[Any] = frozenset(
    {
        torch.dot,
        torch.vdot,
        torch.inner,
        torch.outer,
        torch.ger,
        torch.kron,
        torch.tensordot,
        torch.linalg.matmul,
        torch.linalg.vecdot,
        torch.chain_matmul,
        F.bilinear,
        "dot",
        "vdot",
        "inner",
        "outer",
        "ger",
        "kron",
    }
)


def _callable_name(target: Any) -> str:
    if isinstance(target, str):
        return f"Tensor.{target}"
    module = getattr(target, "__module__", None) or ""
    name = getattr(target, "__name__", repr(target))
    if module in ("torch._C._VariableFunctions", "torch._VariableFunctions") or not module:
        module = "torch"
    if module == "_operator":
        module = "operator"
    return f"{module}.{name}"


def call_name(node: fx.Node) -> str:
    """A readable name for a call node's target (``torch.nn.functional.relu``)."""
    return _callable_name(node.target)


#: Lava-DL's Loihi activations (PiecewiseLinearSiLU, ReLU1, in this order): named whole
#: by ``convert``, which has no rate-coded neuron for them; ``to_sigma_delta`` runs them.
SIGMA_DELTA_ACTIVATIONS: tuple[type[nn.Module], ...] = (PiecewiseLinearSiLU, ReLU1)


#: The modules a subclass is taken for while it keeps their forward.
KNOWN_MODULES: tuple[type[nn.Module], ...] = (
    *ACTIVATION_MODULES,
    *MAXPOOL_MODULES,
    *AFFINE_MODULES,
    _BatchNorm,
)


@functools.cache
def _spikeflow_affine_forwards() -> tuple[frozenset[Any], frozenset[Any]]:
    """spikeflow's own forwards on top of affine torch layers: ``(pass-through, affine)``.

    A pass-through forward is affine where the forward it wraps is: the sequence
    wrappers' (:class:`~spikeflow.layers.SequenceLayerMixin`: the layer per step, on
    time folded into the batch) and tdBN's (batch norm times a constant). An affine one
    computes its weight from its parameters only and applies it as the layer does
    (weight-standardised ``WSConv2d``/``WSLinear``). Imported on first use: the layers
    do not import the conversion, but importing them here at load time would make the
    conversion load every layer.
    """
    from spikeflow.layers.norm import _ThresholdDependentMixin
    from spikeflow.layers.sequence import SequenceLayerMixin
    from spikeflow.layers.weight_standardization import _WSConv2dStep, _WSLinearStep

    passing = frozenset({SequenceLayerMixin.forward, _ThresholdDependentMixin.forward})
    return passing, frozenset({_WSConv2dStep.forward, _WSLinearStep.forward})


def _class_base(cls: type) -> tuple[type, type | None]:
    """``(base, own)``: the torch class (or QCFS) ``cls`` derives from among the known
    ones, and ``cls``'s forward if it replaces that base's with one of its own (else
    None; also where the forwards in between are spikeflow's affine ones on an affine
    base)."""
    base = next(k for k in cls.__mro__ if k is QCFS or k.__module__.startswith("torch.nn.modules"))
    affine = issubclass(base, (*AFFINE_MODULES, _BatchNorm))
    passing, own_affine = _spikeflow_affine_forwards() if affine else (frozenset(), frozenset())
    for klass in cls.__mro__:
        if klass is base:
            return base, None
        forward = klass.__dict__.get("forward")
        if forward is None or forward in passing:
            continue
        return base, (None if forward in own_affine else klass)
    return base, None  # pragma: no cover - base is in the MRO


def overridden_base(module: nn.Module) -> type[nn.Module] | None:
    """The class among ``nn.ReLU``, ``QCFS``, ``nn.MaxPool1d/2d/3d`` and the affine
    layers (convolutions, ``nn.Linear``, average pools, batch norms, dropout, padding,
    reshapes, ...) whose ``forward`` ``module``'s class replaces with one of its own
    (``class Clipped(nn.Linear)`` whose forward clamps the parent's output), or None:
    not a subclass of them, or one that keeps their forward (adding attributes, a
    parametrized weight, or one of spikeflow's affine forwards on an affine layer: the
    sequence wrappers, ``WSConv2d``/``WSLinear``, tdBN)."""
    if not isinstance(module, KNOWN_MODULES):
        return None
    base, own = _class_base(type(module))
    return base if own is not None else None


def own_forward_text(cls: type) -> str | None:
    """What a report entry about a call in the forward of ``cls`` names, for a class
    :func:`overridden_base` finds ("the forward of C, a subclass of B with a forward of
    its own"); None for any other class."""
    if not issubclass(cls, KNOWN_MODULES):
        return None
    base, own = _class_base(cls)
    if own is None:
        return None
    return f"the forward of {cls.__name__}, a subclass of {base.__name__} with a forward of its own"


def classify_module(
    module: nn.Module, rules: Mapping[type[nn.Module], ConversionRule] | None = None
) -> Kind:
    """The conversion kind of a module (leaf torch modules, QCFS, or containers).

    ``rules``: the conversion's rule table (:func:`~spikeflow.conversion.rules.
    rule_table`; the built-in rules if None). A module a rule applies to
    (:func:`~spikeflow.conversion.rules.find_rule`) is a site: ``maxpool`` for a max
    pool (``unsupported`` if it returns indices), else ``activation``.

    A subclass of ``nn.ReLU``, ``QCFS``, ``nn.MaxPoolNd`` or an affine layer
    (``nn.Linear``, a convolution, a batch norm, ...) is one of them only if it keeps
    their forward (:func:`overridden_base`: one that adds attributes, say); one with a
    forward of its own is whatever that forward computes, so it is a ``container``:
    traced like any custom module (its relu, QCFS and max-pool calls become neurons and
    gated pools, the parent's call in it stays the affine op, the rest is classified as
    usual), or, untraced, reported by what it calls.
    """
    if find_rule(module, rule_table() if rules is None else rules) is not None:
        if isinstance(module, MAXPOOL_MODULES):
            return "unsupported" if module.return_indices else "maxpool"
        return "activation"
    if overridden_base(module) is not None:
        return "container"
    if isinstance(module, SIGMA_DELTA_ACTIVATIONS):
        return "unsupported"  # named as a whole, not traced into clamp calls
    if isinstance(module, _BatchNorm):
        # Eval mode with running statistics is a per-channel affine map.
        return "affine" if module.running_mean is not None else "unsupported"
    if isinstance(module, AFFINE_MODULES):
        return "affine"
    if isinstance(module, CONTAINERS):
        return "container"
    if type(module).__module__.startswith("torch.nn"):
        return "unsupported"  # a torch leaf that is not affine (GELU, LayerNorm, LSTM, ...)
    return "container"


def moves_batch_dim(node: fx.Node, signals: set[fx.Node] | None = None) -> bool:
    """Whether a call moves dimension 0 of a signal (the batch, which the SNN folds time
    into): ``transpose``/``swapaxes`` with 0, ``permute`` whose first dim is not 0
    (a negative one is resolved by the permutation's length: ``permute(-3, 2, 1)`` keeps
    it), ``movedim`` of 0, ``t``, ``.T``. Later layers would then split another
    dimension as if it were time. A negative dim of a transpose or movedim
    (``x.transpose(-4, -3)``) depends on the rank, which the graph does not carry: it is
    checked on the calibration batches (:mod:`~spikeflow.conversion.batchdim`).
    ``signals``: the graph's :func:`signal_nodes` (computed if not given)."""
    signals = signal_nodes(node.graph) if signals is None else signals
    moved = node.args[0] if node.args else node.kwargs.get("input")
    if not _in(moved, signals):  # a weight's transpose (F.linear(h, w.t())) moves no batch
        return False
    if node.op == "call_function" and node.target is getattr:
        return node.args[1] == "T"  # x.T reverses every dim
    name = str(node.target) if node.op == "call_method" else call_name(node).rsplit(".", 1)[-1]
    args = list(node.args[1:])
    if name in ("t", "t_"):
        return True
    if name in ("transpose", "transpose_", "swapaxes", "swapdims"):
        dims = args[:2] or [node.kwargs.get("dim0"), node.kwargs.get("dim1")]
        return 0 in dims
    if name == "permute":
        dims = args[0] if len(args) == 1 and isinstance(args[0], (tuple, list)) else args
        dims = dims or node.kwargs.get("dims", ())
        if not dims or not all(isinstance(d, int) for d in dims):
            return False  # a computed dim: checked at run time (batchdim)
        return dims[0] % len(dims) != 0
    if name in ("movedim", "moveaxis"):
        ends = [*args[:2], node.kwargs.get("source"), node.kwargs.get("destination")]
        flat = [d for e in ends for d in (e if isinstance(e, (tuple, list)) else (e,))]
        return 0 in flat
    return False


def classify_call(node: fx.Node, signals: set[fx.Node] | None = None) -> Kind:
    """The conversion kind of a ``call_function`` or ``call_method`` node.

    ``signals``: the nodes computed from the graph's input (:func:`signal_nodes`;
    computed from ``node``'s graph if not given). A call none of whose arguments is one
    computes a constant of the forward (``torch.sigmoid(self.gate)``, ``self.w[0]``,
    a standardised weight): ``affine``, whatever the function.
    """
    signals = signal_nodes(node.graph) if signals is None else signals
    target = node.target
    operands = _operands(node)
    if not any(a in signals for a in operands):
        return "affine"  # a constant: the same on every step
    if moves_batch_dim(node, signals):
        return "unsupported"
    if target in RELU_CALLS or target in QCFS_CALLS:
        return "activation"
    if target in MAXPOOL_CALLS:
        return "maxpool"
    if target in AFFINE_CALLS:
        return "affine"
    if target is F.batch_norm:
        return _batch_norm_kind(node, signals)
    if target in SCALING_CALLS:
        if target in _DIVISIONS and _in(node.args[1] if len(node.args) > 1 else None, signals):
            return "unsupported"  # c / x: a reciprocal of the signal
        if target in _DIVISIONS and node.kwargs.get("rounding_mode") is not None:
            return "unsupported"  # x // c: floor or truncation
        # x * y, x @ y of two signals (x * x too) is not affine; x @ W, x @ W[0] are.
        return "affine" if sum(a in signals for a in operands) <= 1 else "unsupported"
    if target in PRODUCT_CALLS and sum(a in signals for a in operands) > 1:
        return "unsupported"
    if is_nonlinear_name(call_name(node)) or _selects_by_signal(node, signals):
        return "unsupported"
    return "unknown"


def _operands(node: fx.Node) -> list[fx.Node]:
    """The nodes among a call's arguments, in lists and tuples too, each as often as it
    is passed (``x * x`` has two)."""
    found: list[fx.Node] = []

    def visit(value: Any) -> None:
        if isinstance(value, fx.Node):
            found.append(value)
        elif isinstance(value, (tuple, list)):
            for item in value:
                visit(item)
        elif isinstance(value, dict):
            for item in value.values():
                visit(item)

    visit(node.args)
    visit(node.kwargs)
    return found


def _batch_norm_kind(node: fx.Node, signals: set[fx.Node]) -> Kind:
    """``F.batch_norm(x, mean, var, weight, bias, training, ...)`` (a batch norm's
    forward, traced): affine with running statistics (``training=False``), not with the
    batch's (``training=True``, or statistics computed from the signal)."""
    names = ("input", "running_mean", "running_var", "weight", "bias", "training")
    args = dict(zip(names, node.args))
    args.update({k: v for k, v in node.kwargs.items() if k in names})
    if args.get("training", False) is not False:
        return "unsupported"
    if any(_in(args.get(n), signals) for n in names[1:5]):
        return "unsupported"
    return "affine"


def signal_nodes(graph: fx.Graph) -> set[fx.Node]:
    """The nodes computed from the graph's inputs (not constants, attributes, shapes, or
    values computed from those alone: ``self.w[0]``, ``self.w.t()``, ``x.size(1) * 2``)."""
    signals: set[fx.Node] = set()
    for node in graph.nodes:
        if node.op == "placeholder":
            signals.add(node)
        elif node.op not in ("get_attr", "output") and (
            not _is_shape(node) or _tensor_attribute(node)
        ):
            if any(arg in signals for arg in node.all_input_nodes):
                signals.add(node)
    return signals


#: Attributes of a tensor that are tensors (``x.shape`` is not).
TENSOR_ATTRIBUTES = frozenset({"T", "mT", "H", "mH", "data", "real", "imag"})


def _tensor_attribute(node: fx.Node) -> bool:
    """``x.T``, ``x.mT``, ``x.data``, ...: attributes that are tensors (``x.shape`` is not)."""
    attribute = node.args[1] if node.target is getattr and len(node.args) > 1 else None
    return attribute in TENSOR_ATTRIBUTES


def _in(value: object, signals: set[fx.Node]) -> bool:
    """Whether ``value`` is one of the signal nodes (a list, a number or a constant's
    node is not)."""
    return isinstance(value, fx.Node) and value in signals


_DIVISIONS = frozenset({operator.truediv, torch.div, "div", "div_"})
_OPERATOR_COMPARISONS = ("gt", "lt", "ge", "le", "eq", "ne")
_TORCH_COMPARISONS = (
    *_OPERATOR_COMPARISONS,
    "greater",
    "less",
    "greater_equal",
    "less_equal",
    "not_equal",
    "isclose",
)
#: Comparisons (``x > 0``, ``torch.gt``, ``x.gt``): step functions of a signal.
_COMPARISONS = frozenset(
    {
        *_TORCH_COMPARISONS,
        *(getattr(torch, n) for n in _TORCH_COMPARISONS),
        *(getattr(operator, n) for n in _OPERATOR_COMPARISONS),
    }
)
#: Calls that pick values by a condition, and where the condition is: torch.where(c, x, y),
#: x.where(c, y), x.masked_fill(c, v), torch.masked_fill(x, c, v).
_SELECTIONS: dict[tuple[str, Any], int] = {
    ("call_function", torch.where): 0,
    ("call_method", "where"): 1,
    ("call_function", torch.masked_fill): 1,
    ("call_method", "masked_fill"): 1,
    ("call_method", "masked_fill_"): 1,
}


def _selects_by_signal(node: fx.Node, signals: set[fx.Node]) -> bool:
    """Whether ``node`` compares a signal (``x > 0``) or picks values by a condition
    computed from one (``torch.where(x > 0, x, 0)`` is a ReLU): not affine."""
    if node.target in _COMPARISONS:
        return any(_in(a, signals) for a in (*node.args, *node.kwargs.values()))
    position = _SELECTIONS.get((node.op, node.target))
    if position is None:
        return False
    condition = node.args[position] if len(node.args) > position else None
    condition = node.kwargs.get("condition", node.kwargs.get("mask", condition))
    return _in(condition, signals)


def _is_shape(node: fx.Node) -> bool:
    """Whether ``node`` is a shape or part of one (``x.size(1)``, ``x.shape[1]``)."""
    if node.op == "call_function" and node.target is operator.getitem:
        return isinstance(node.args[0], fx.Node) and _is_shape(node.args[0])
    return (node.op == "call_method" and node.target in ("size", "dim")) or (
        node.op == "call_function" and node.target in (getattr, len)
    )
