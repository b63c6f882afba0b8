"""Exact conversion of quantised Transformers (SpikeZIP-TF, You et al., ICML 2024).

>>> snn, report = convert_transformer(quantised_vit)
>>> out = snn.accumulate(images, steps=64)[-1]   # = quantised_vit(images) once settled

The ANN is written with :class:`~spikeflow.conversion.signed.SymmetricQuant` (or QCFS)
activations where its values should become spikes: after the q/k/v projections (so the
attention products multiply spikes), after the softmax, after layer norms and the MLP's
GELU. :func:`convert_transformer` traces it with ``torch.fx`` and rewrites each call that
depends on the input (a *stream*; parameters and shapes are constants):

* each ``SymmetricQuant``/``QCFS`` becomes a
  :class:`~spikeflow.conversion.signed.SignedIFNeuron` (``converted``);
* ``nn.Linear``/``nn.Conv*d`` send their weights' image of every change and their bias
  once, at the first step (:class:`~spikeflow.conversion.temporal.StepBias`);
* operations that are linear in their one stream and add no constant run unchanged on
  every step (``kept``): views, permutes, indexing, ``cat``/``stack`` and ``+``/``-`` of
  streams only, sums and means, scaling by constants (``x * c``, ``x / c``,
  ``x @ W``), dropout in eval mode, average pooling, flatten;
* the product of two streams (``q @ k.transpose(-2, -1)``, ``attn @ v``, ``x * y``)
  becomes a :class:`~spikeflow.conversion.temporal.SpikeProduct`;
* every other call on a stream (LayerNorm, softmax, GELU, any elementwise function, a
  constant added to a stream — a class token concatenated, a position embedding added,
  a whole ``nn.MultiheadAttention``) becomes its
  :class:`~spikeflow.conversion.temporal.TemporalDifference` (``replaced``). The report
  says, for each, whether its stream inputs are spikes (straight from neurons, through
  views only) or analog values.

The converted network (:class:`DifferenceSNN`) runs the ANN's graph once on the input
sequence folded into the batch (``[T*B, ...]``, as :class:`~spikeflow.conversion.snn.
ConvertedSNN`), and returns the change of the ANN's output at every step: its running
sum after step ``t`` is the ANN's graph on the running sums of every stage, so once
every neuron has settled (each settles within its number of levels of steps after its
input has) it equals the quantised ANN's output exactly, up to float rounding. The
samples of a batch must be independent, as for :func:`~spikeflow.conversion.convert`.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import torch
from torch import Tensor, fx, nn
from torch.utils._pytree import tree_flatten

from spikeflow.base import check_time_major
from spikeflow.conversion.fold import graph_module, set_submodule
from spikeflow.conversion.qcfs import QCFS
from spikeflow.conversion.report import ConversionError, ConversionReport
from spikeflow.conversion.signed import SignedIFNeuron, SymmetricQuant
from spikeflow.conversion.snn import TimeFolded, run_time_folded
from spikeflow.conversion.sta import (
    STA_SITES,
    STAEncoder,
    _check_batch_first,
    calibrate_sta,
    traceable_encoders,
)
from spikeflow.conversion.temporal import SpikeProduct, StepBias, TemporalDifference
from spikeflow.errors import ConfigurationError, ShapeError

__all__ = ["DifferenceSNN", "TransformerConversion", "convert_transformer"]

_QUANTIZERS = (SymmetricQuant, QCFS)
_AFFINE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
#: Modules that are linear in their input and add no constant (eval mode).
_PER_STEP_MODULES = (
    nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.Flatten,
    nn.Unflatten, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
)  # fmt: skip
#: Results that describe a stream's shape or type, not its values.
_META_METHODS = frozenset({"size", "dim", "numel", "nelement", "ndimension", "get_device"})
_META_ATTRS = frozenset({"shape", "dtype", "device", "ndim", "is_cuda", "requires_grad"})
#: Views and rearrangements (a spike stays a spike through them).
_VIEW_METHODS = frozenset({
    "reshape", "view", "permute", "transpose", "flatten", "unflatten", "contiguous",
    "squeeze", "unsqueeze", "chunk", "split", "unbind", "t", "expand", "movedim",
    "swapaxes", "narrow", "select", "clone", "repeat", "flip", "roll", "view_as",
    "reshape_as", "expand_as",
})  # fmt: skip
_VIEW_FUNCTIONS = frozenset({
    operator.getitem, torch.reshape, torch.flatten, torch.transpose, torch.permute,
    torch.squeeze, torch.unsqueeze, torch.chunk, torch.split, torch.unbind, torch.movedim,
    torch.swapaxes, torch.narrow, torch.select, torch.clone, torch.flip, torch.roll, torch.t,
})  # fmt: skip
_VIEW_ATTRS = frozenset({"T", "mT"})
#: Linear in the one stream they are given (the other operands constants).
_SCALING_METHODS = frozenset({"mul", "matmul", "div", "sum", "mean", "neg", "to", "float",
                              "double", "type_as"})  # fmt: skip
_SCALING_FUNCTIONS = frozenset({operator.mul, torch.mul, operator.matmul, torch.matmul,
                                torch.bmm, torch.mm, operator.truediv, torch.div, torch.sum,
                                torch.mean, operator.neg, torch.neg})  # fmt: skip
_DIVISIONS = frozenset({operator.truediv, torch.div, "div"})
#: Linear when every operand is a stream (a constant operand would be added each step).
_SUMS = frozenset({operator.add, operator.sub, torch.add, torch.sub, "add", "sub"})
_JOINS = frozenset({torch.cat, torch.stack, torch.concat})
#: Products of two streams.
_PRODUCTS = {operator.matmul: "matmul", torch.matmul: "matmul", torch.bmm: "matmul",
             torch.mm: "matmul", "matmul": "matmul", operator.mul: "mul", torch.mul: "mul",
             "mul": "mul"}  # fmt: skip


class TransformerConversion(NamedTuple):
    """The result of :func:`convert_transformer`: the spiking network and what was done."""

    snn: DifferenceSNN
    report: ConversionReport


class _Method:
    """``x.name(*args, **kwargs)`` as a function of ``x`` (a traced method call)."""

    def __init__(self, name: str) -> None:
        self.__name__ = name

    def __call__(self, obj: Any, *args: Any, **kwargs: Any) -> Any:
        return getattr(obj, self.__name__)(*args, **kwargs)


class _Tracer(fx.Tracer):
    """Quantisers (and their subclasses) are leaves, as torch's own modules are."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, (*_QUANTIZERS, TimeFolded)) or super().is_leaf_module(m, qualname)


class DifferenceSNN(nn.Module):
    """A Transformer converted by :func:`convert_transformer`.

    ``forward`` takes the input sequence ``[T, B, ...]`` (the ANN's input sent once:
    :func:`~spikeflow.conversion.temporal.impulse_input`; any sequence whose running
    sum is the input works) and returns the change of the output at each step
    ``[T, B, ...]``; its running sum is the SNN's answer (:meth:`accumulate`).

    Each call starts from the initial state; under
    :func:`spikeflow.functional.streaming` (or :func:`spikeflow.functional.run` with
    the state passed on) a sequence may come in chunks, which give the whole sequence's
    numbers.

    The network is inference only: its body stays in eval mode whatever
    :meth:`train` is told (a batch norm or dropout inside must act as the ANN's did in
    eval mode, and batch statistics of running sums would overwrite the ANN's).

    Attributes:
        body: the converted ``torch.fx.GraphModule``.
        report: the :class:`~spikeflow.conversion.report.ConversionReport`.
    """

    def __init__(self, body: nn.Module, report: ConversionReport) -> None:
        super().__init__()
        self.body = body.eval()
        self.report = report

    def train(self, mode: bool = True) -> DifferenceSNN:
        """Set :attr:`training` (as ``nn.Module.train``), the body kept in eval mode."""
        super().train(mode)
        self.body.eval()
        return self

    def forward(self, x_seq: Tensor) -> Tensor:
        """The output's change at each step ``[T, B, ...]`` for the input ``[T, B, ...]``."""
        check_time_major(x_seq, "DifferenceSNN", single_step=False)
        if x_seq.shape[0] == 0:
            raise ShapeError(
                f"DifferenceSNN needs at least one time step, got {tuple(x_seq.shape)}"
            )
        return run_time_folded(self.body, x_seq)

    @torch.no_grad()
    def accumulate(self, x: Tensor, steps: int) -> Tensor:
        """The running sum of the output after each of ``1..steps`` steps,
        ``[steps, B, ...]``, for the analog input ``x`` ``[B, ...]`` sent at the first
        step; the last entry is the SNN's answer after ``steps`` steps."""
        from spikeflow.conversion.temporal import impulse_input

        return self(impulse_input(x, steps)).cumsum(0)


def _plain(value: Any) -> Any:
    """fx's immutable containers as plain lists, tuples and dicts."""
    if isinstance(value, (list, tuple)):
        items = [_plain(v) for v in value]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _source(node: fx.Node, gm: fx.GraphModule) -> str:
    if node.op == "call_module":
        return _source_of(gm.get_submodule(node.target))
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    target = node.target
    module = getattr(target, "__module__", None) or ""
    return f"{module}.{getattr(target, '__name__', repr(target))}".lstrip(".")


def convert_transformer(
    model: nn.Module,
    *,
    encoders: str | None = None,
    calibration: Iterable[Any] | None = None,
    steps: int | None = None,
    threshold: str = "mse",
    threshold_scale: float = 1.0,
    momentum: float = 0.1,
    calibration_batches: int | None = None,
) -> TransformerConversion:
    """Convert a quantised Transformer (or any traceable per-sample network) into a
    spiking network whose summed output equals the ANN's exactly once settled (see the
    module docstring).

    Args:
        model: the trained ANN (not modified; a copy is converted in eval mode). It must
            trace with ``torch.fx``; its quantisers are
            :class:`~spikeflow.conversion.signed.SymmetricQuant` or
            :class:`~spikeflow.conversion.qcfs.QCFS` modules.
        encoders: None (default): spikes come from the model's quantisers, which it
            must have. ``"sta"``: a float model (no quantisers needed) gets a calibrated
            :class:`~spikeflow.conversion.sta.STAEncoder` after every ``nn.LayerNorm``,
            ``nn.GELU`` and ``nn.MultiheadAttention`` output called on the input's
            stream (Spatio-Temporal Approximation; SpikingJelly's
            ``STATransformerRecipe(mode="spiking_encoder")``). ``"none"``: no spikes
            at all, the accumulate-difference network whose running sums are the
            float model's output at every step (SpikingJelly's ``mode="equivalent"``).
            With either, ``nn.TransformerEncoder(Layer)`` modules are traced through
            (called without masks).
        calibration: ``encoders="sta"``: batches of inputs (tensors, or tuples whose
            first item is the input) on which the float model's activations are seen.
        steps: ``encoders="sta"``: the time steps ``T`` the SNN will run (thresholds
            are ``∝ 1/T``).
        threshold: ``"mse"`` or ``"max"`` (:func:`~spikeflow.conversion.sta.sta_threshold`).
        threshold_scale: multiplies every STA threshold (> 0).
        momentum: weight of each new batch in the running mean of thresholds, in [0, 1].
        calibration_batches: use at most this many calibration batches (None: all).

    Returns:
        ``(snn, report)``: the :class:`DifferenceSNN` and the report (``converted``:
        quantisers made neurons; ``replaced``: temporal-difference operators, products
        and step-bias layers; ``kept``: linear operations run on every step).

    Raises:
        ConversionError: the model does not trace, has no quantiser (with
            ``encoders=None``), changes a stream in place, or returns something other
            than one stream.
        ConfigurationError: a bad STA option (unknown ``encoders`` or ``threshold``,
            ``steps`` missing or not positive, no ``calibration``).
    """
    import copy

    _check_sta_options(
        encoders, calibration, steps, threshold, threshold_scale, momentum, calibration_batches
    )
    ann = copy.deepcopy(model).eval()
    if encoders is not None:
        ann = traceable_encoders(ann).eval()
    thresholds: dict[str, Tensor] = {}
    if encoders == "sta":
        sites = [n for n, m in ann.named_modules() if isinstance(m, STA_SITES)]
        if not sites:
            raise ConversionError(
                f"{type(model).__name__} has no nn.LayerNorm, nn.GELU or "
                "nn.MultiheadAttention: encoders='sta' would put no encoder"
            )
        assert calibration is not None and steps is not None
        thresholds = calibrate_sta(
            ann, sites, calibration, steps, threshold, momentum, calibration_batches
        )
        thresholds = {k: v * threshold_scale for k, v in thresholds.items()}
    try:
        tracer = _Tracer()
        graph = tracer.trace(ann)
    except Exception as err:
        raise ConversionError(
            f"torch.fx could not trace {type(model).__name__}: {type(err).__name__}: {err}"
        ) from err
    gm = graph_module(tracer.root, graph, type(model).__name__)
    for node in gm.graph.nodes:
        if node.op == "call_module":
            _check_batch_first(gm.get_submodule(node.target), node.target)
    report = ConversionReport()
    streams: set[fx.Node] = set()
    spikes: set[fx.Node] = set()  # streams of spikes (neuron outputs, through views)
    replaced: dict[str, bool] = {}  # module target -> whether called on a stream
    originals: dict[str, nn.Module] = {}  # replaced by a stateful module: the ANN's
    count = 0

    def add_module(prefix: str, module: nn.Module) -> str:
        nonlocal count
        name = f"{prefix}_{count}"
        while hasattr(gm, name):  # never replace one of the model's own
            count += 1
            name = f"{prefix}_{count}"
        count += 1
        gm.add_submodule(name, module)
        return name

    for node in list(gm.graph.nodes):
        if node.op == "placeholder":
            streams.add(node)
            continue
        if node.op in ("get_attr", "output"):
            continue
        args = _plain((tuple(node.args), dict(node.kwargs)))
        flat, _ = tree_flatten(args)
        positions = [i for i, a in enumerate(flat) if isinstance(a, fx.Node) and a in streams]
        if node.op == "call_module" and node.target in replaced:
            if replaced[node.target] != bool(positions):
                raise ConversionError(
                    f"{node.target} is called on the input's stream at one place and on "
                    "constants at another: give each call its own module"
                )
            if positions:
                streams.add(node)
                target = node.target
                original = originals.get(target)
                if original is not None:  # stateful: this call gets its own copy
                    source = _source_of(original)
                    spiking = all(flat[i] in spikes for i in positions)
                    copy, action, detail = _replacement(
                        original, positions, source, spiking, target
                    )
                    copy_name = add_module(target.replace(".", "_"), copy)
                    _call_module(gm, node, copy_name, tuple(node.args), dict(node.kwargs))
                    report.add(copy_name, source, action, f"{detail} (another call of {target})")
                if target in thresholds:
                    _add_encoder(
                        gm,
                        node,
                        thresholds[target],
                        add_module,
                        streams,
                        spikes,
                        report,
                        isinstance(originals[target], nn.MultiheadAttention),
                    )
                if type(gm.get_submodule(node.target)) is TimeFolded:  # a neuron
                    spikes.add(node)
            continue
        if not positions:
            if node.op == "call_module":  # a later call on a stream must not rewrite it
                replaced[node.target] = False
            continue  # a constant: computed alike at every step
        name = node.name
        source = _source(node, gm)
        stream_args = [flat[i] for i in positions]
        spiking = all(a in spikes for a in stream_args)
        key = node.target if node.op != "call_method" else str(node.target)
        is_meta = (node.op == "call_method" and node.target in _META_METHODS) or (
            node.op == "call_function"
            and node.target is getattr
            and len(node.args) > 1
            and node.args[1] in _META_ATTRS
        )
        if is_meta:
            continue  # a shape or dtype, not a stream
        streams.add(node)
        if node.op == "call_method" and str(node.target).endswith("_"):
            raise ConversionError(
                f"{name} ({source}) changes a stream in place: the converted network "
                "cannot (write it out of place)"
            )
        if node.op == "call_module":
            module = gm.get_submodule(node.target)
            replaced[node.target] = True
            if isinstance(module, _PER_STEP_MODULES) and not isinstance(module, _QUANTIZERS):
                if spiking and isinstance(module, (nn.Identity, nn.Dropout, nn.Flatten)):
                    spikes.add(node)
                report.add(node.target, source, "kept", "linear: runs on every step")
                continue
            replacement, action, detail = _replacement(
                module, positions, source, spiking, node.target
            )
            originals[node.target] = module
            set_submodule(gm, node.target, replacement)
            if type(replacement) is TimeFolded:  # a neuron
                spikes.add(node)
            report.add(node.target, source, action, detail)
            if node.target in thresholds:
                _add_encoder(
                    gm,
                    node,
                    thresholds[node.target],
                    add_module,
                    streams,
                    spikes,
                    report,
                    isinstance(module, nn.MultiheadAttention),
                )
            continue
        if node.op == "call_function" and node.target is getattr:
            if node.args[1] not in _VIEW_ATTRS:
                raise ConversionError(
                    f"{name}: attribute {node.args[1]!r} of a stream has no spiking form"
                )
            if spiking:
                spikes.add(node)
            continue
        only_first = positions == [0] and node.args and node.args[0] in streams
        if (key in _VIEW_METHODS or key in _VIEW_FUNCTIONS) and only_first:
            if spiking:
                spikes.add(node)
            report.add(name, source, "kept", "view: runs on every step")
            continue
        operands = _factors(node) if key in _SUMS or key in _PRODUCTS else None
        if key in _SUMS and operands is not None and all(a in streams for a in operands):
            report.add(name, source, "kept", "sum of streams: runs on every step")
            continue
        if key in _JOINS and _all_streams(node.args[0] if node.args else (), streams):
            if spiking:
                spikes.add(node)
            report.add(name, source, "kept", "join of streams: runs on every step")
            continue
        if key in _PRODUCTS and len(positions) == 2 and len(flat) >= 2:
            if operands is not None and all(a in streams for a in operands):
                module_name = add_module("product", SpikeProduct(_PRODUCTS[key]))
                _call_module(gm, node, module_name, operands, {})
                report.add(
                    name, source, "replaced",
                    "product of two streams (a_t·B_(t-1) + A_(t-1)·b_t + a_t·b_t); inputs: "
                    + ("spikes" if spiking else "not all spikes (no quantiser before it)"),
                )  # fmt: skip
                continue
        if key in _SCALING_METHODS or key in _SCALING_FUNCTIONS:
            first = node.args[0] if node.args else node.kwargs.get("input")
            first_is_stream = isinstance(first, fx.Node) and first in streams
            division = key in _DIVISIONS
            if (
                len(positions) == 1
                and (first_is_stream or not division)
                and not (division and node.kwargs.get("rounding_mode") is not None)
            ):
                report.add(name, source, "kept", "linear in its stream: runs on every step")
                continue
        if any(kw is True for k, kw in node.kwargs.items() if k == "inplace"):
            raise ConversionError(f"{name} ({source}) changes a stream in place (inplace=True)")
        fn: Callable[..., Any] = _Method(node.target) if node.op == "call_method" else node.target
        module_name = add_module("td", TemporalDifference(fn, positions, source))
        _call_module(gm, node, module_name, tuple(node.args), dict(node.kwargs))
        report.add(name, source, "replaced", _td_detail(spiking))
    output = next(n for n in gm.graph.nodes if n.op == "output")
    result = output.args[0]
    if not (isinstance(result, fx.Node) and result in streams):
        raise ConversionError(
            f"{type(model).__name__} must return one tensor computed from its input, got {result!r}"
        )
    if not report.converted and encoders is None:
        raise ConversionError(
            f"{type(model).__name__} has no SymmetricQuant or QCFS activation: nothing would "
            "spike (put quantisers where the values should become spikes)"
        )
    gm.graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return TransformerConversion(DifferenceSNN(gm, report), report)


def _replacement(
    module: nn.Module, positions: list[int], source: str, spiking: bool, where: str
) -> tuple[nn.Module, str, str]:
    """The spiking form of a module called on a stream: ``(module, action, detail)``
    for the report (a neuron, a :class:`StepBias` or a :class:`TemporalDifference`)."""
    if isinstance(module, _QUANTIZERS):
        try:
            neuron = SignedIFNeuron.from_quantizer(module)
        except ConfigurationError as err:
            raise ConversionError(f"{where} ({source}): {err}") from err
        detail = (
            f"SignedIFNeuron(θ={float(torch.as_tensor(neuron.v_threshold)):.4g}, "
            f"counts {neuron.min_level}..{neuron.levels}, V0={neuron.shift:g}·θ)"
        )
        return TimeFolded(neuron), "converted", detail
    if isinstance(module, _AFFINE):
        return StepBias(module), "replaced", "weights every step, bias once"
    return TemporalDifference(module, positions, source), "replaced", _td_detail(spiking)


def _source_of(module: nn.Module) -> str:
    """A module's type as the report names it."""
    kind = type(module)
    return ("nn." if kind.__module__.startswith("torch.nn") else "") + kind.__name__


def _td_detail(spiking: bool) -> str:
    inputs = "spikes" if spiking else "not all spikes (no quantiser before it)"
    return f"temporal difference f(X_t) - f(X_(t-1)); inputs: {inputs}"


def _factors(node: fx.Node) -> tuple[fx.Node, fx.Node] | None:
    """The two operands of a product or sum call, positional or by keyword (``input``,
    ``other`` / ``mat2``), or None when it has other arguments (``alpha``) or an
    operand is not a node (a number)."""
    args, kwargs = list(node.args), dict(node.kwargs)
    if len(args) < 1 and "input" in kwargs:
        args.append(kwargs.pop("input"))
    if len(args) < 2:
        for name in ("other", "mat2"):
            if name in kwargs:
                args.append(kwargs.pop(name))
                break
    if len(args) != 2 or kwargs or not all(isinstance(a, fx.Node) for a in args):
        return None
    return args[0], args[1]


def _all_streams(args: Any, streams: set[fx.Node]) -> bool:
    items = list(args) if isinstance(args, (list, tuple)) else [args]
    return bool(items) and all(isinstance(a, fx.Node) and a in streams for a in items)


def _call_module(gm: fx.GraphModule, node: fx.Node, target: str, args: tuple, kwargs: dict) -> None:
    """Make ``node`` a call of the submodule ``target`` with these arguments."""
    node.op, node.target = "call_module", target
    node.args, node.kwargs = args, kwargs


def _check_sta_options(
    encoders: str | None,
    calibration: Iterable[Any] | None,
    steps: int | None,
    threshold: str,
    threshold_scale: float,
    momentum: float,
    calibration_batches: int | None,
) -> None:
    if encoders not in (None, "sta", "none"):
        raise ConfigurationError(f"encoders must be None, 'sta' or 'none', got {encoders!r}")
    if encoders != "sta":
        return
    if calibration is None:
        raise ConfigurationError("encoders='sta' needs calibration= (batches of inputs)")
    if isinstance(calibration, Tensor):  # would be iterated sample by sample
        raise ConfigurationError(
            f"calibration must be an iterable of batches, got one tensor of shape "
            f"{tuple(calibration.shape)} (pass [tensor], or a DataLoader)"
        )
    if calibration_batches is not None and (
        not isinstance(calibration_batches, int)
        or isinstance(calibration_batches, bool)
        or calibration_batches < 1
    ):
        raise ConfigurationError(
            f"calibration_batches must be None or a positive int, got {calibration_batches!r}"
        )
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ConfigurationError(f"encoders='sta' needs steps= a positive int, got {steps!r}")
    if threshold not in ("mse", "max"):
        raise ConfigurationError(f"threshold must be 'mse' or 'max', got {threshold!r}")
    if not (isinstance(threshold_scale, (int, float)) and 0 < threshold_scale < float("inf")):
        raise ConfigurationError(f"threshold_scale must be positive, got {threshold_scale!r}")
    if not (isinstance(momentum, (int, float)) and 0 <= momentum <= 1):
        raise ConfigurationError(f"momentum must be in [0, 1], got {momentum!r}")


def _add_encoder(
    gm: fx.GraphModule,
    node: fx.Node,
    threshold: Tensor,
    add_module: Callable[[str, nn.Module], str],
    streams: set[fx.Node],
    spikes: set[fx.Node],
    report: ConversionReport,
    attention: bool,
) -> None:
    """An :class:`STAEncoder` on ``node``'s output (an attention's: on its first
    output, ``node[0]``), every later use of it reading the encoder's spikes."""
    site = node
    if attention:
        firsts = [u for u in node.users if u.target is operator.getitem and u.args[1] == 0]
        if not firsts:
            raise ConversionError(f"{node.name}: its attention output is never read")
        site = firsts[0]
        for other in firsts[1:]:
            other.replace_all_uses_with(site)
    name = add_module(f"{node.name}_sta", STAEncoder(threshold))
    with gm.graph.inserting_after(site):
        encoded = gm.graph.call_module(name, (site,))
    site.replace_all_uses_with(encoded, delete_user_cb=lambda user: user is not encoded)
    streams.add(site)
    streams.add(encoded)
    spikes.add(encoded)
    report.add(name, "STAEncoder", "converted", f"STA encoder on {node.name}, θ per channel")
