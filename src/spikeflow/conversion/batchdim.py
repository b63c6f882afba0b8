"""Calls that act on dimension 0, into which a converted network folds time.

A converted network runs the ANN's graph once on ``[T*B, ...]`` (:mod:`.snn`): every
call must treat dim 0 as "the samples", each on its own. Reductions over dim 0 or over
every dim (``x.sum()``, ``x.mean(0)``), concatenation, stacking and splitting along it
(``torch.cat([a, b])``, ``torch.stack([a, b])``, ``x.chunk(2)``), indexing it
(``x[0]``, ``x[1:]``, ``x.select(0, i)``, ``x[None]``, ``x.unsqueeze(0)``) and reshapes
that merge it with other dims (``x.view(-1)``, ``x.flatten()``), a product that
contracts it (``W @ x`` on a 2-dim ``x``), repeating it (``x.repeat(2, 1)``) and a
transpose or permutation negative dims of which reach it (``x.transpose(-2, -1)`` of a
2-dim tensor) would mix time steps and samples there (where the ANN mixed only the
samples of a batch).

:func:`batch_dim_use` decides this from a call's arguments where they are constants of
the trace (``dim=0``, ``start_dim=1``, ``x.view(x.size(0), -1)``). Where they are not
(a negative dim, whose meaning depends on the rank; a dim computed at run time; a
reshape to ``(-1, 400)``, which keeps the batch only if 400 is one sample's size;
indexing a value that may be a tuple), it returns the check to make at run time:
:class:`BatchDimProbe` runs it on the calibration batches, where every such question
has an answer (the rank, the dim's value, the shapes in and out). The converter runs
them on a second batch size as well: a shape check on one batch size passes by
coincidence where another dim has the batch's size (``x.view(x.size(1), -1)`` with as
many rows as channels).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, Literal

from torch import Tensor, fx, nn

from spikeflow.conversion.classify import _is_shape, _tensor_attribute, signal_nodes

__all__ = [
    "WHY",
    "BatchDimProbe",
    "BatchUse",
    "batch_dim_use",
    "may_act_on_batch_dim",
    "probe_args",
    "signal_nodes",
]

#: Why a call on dim 0 cannot be converted (the end of its report entry).
WHY = (
    "the converted network runs this graph on time folded into dim 0 ([T*B, ...]), so it "
    "would mix time steps and samples (keep dim 0 the batch: reduce, cut and join along "
    "dims >= 1, flatten from dim 1)"
)

#: What a run-time check asks: ``dims``: does one of the dims (negative, or computed)
#: resolve to 0? ``moves``: does a transpose, permute or movedim whose dims are negative
#: or computed move dim 0? ``batch``: does the output keep the input's dim 0 (a
#: reshape)? ``tensor``: is the indexed value a tensor (not a tuple)? ``rank``: is the
#: input's rank so small that the call reaches dim 0 (an index after ``...``, ``W @ x``)?
Check = Literal["dims", "moves", "batch", "tensor", "rank"]

_REDUCTIONS = {
    "sum": "sums",
    "mean": "averages",
    "nansum": "sums",
    "nanmean": "averages",
    "cumsum": "accumulates",
}
_CONCATENATIONS = frozenset({"cat", "concat", "concatenate"})
#: Splits: the position of their dim argument (the input is 0; the dim defaults to 0).
_SPLITS = {"chunk": 2, "split": 2, "tensor_split": 2, "split_with_sizes": 2, "unbind": 1}
_SELECTIONS = frozenset({"select", "narrow", "index_select"})
_TRANSPOSES = frozenset({"transpose", "transpose_", "swapaxes", "swapaxes_", "swapdims",
                         "swapdims_"})  # fmt: skip
_MOVES = frozenset({"movedim", "moveaxis"})
#: Calls on a 1-dim input that act along dim 0 (on more dims, along dim 1 or 2).
_ONE_DIM_ALONG_ZERO = {
    "hstack": "joins along dim 0",
    "hsplit": "splits along dim 0",
    "dstack": "makes it [1, B, 1]: the batch becomes dim 1",
}
#: The calls :func:`batch_dim_use` checks: an untraced forward making one of them is
#: reported as unchecked (:func:`may_act_on_batch_dim`).
_DIM_CALLS = frozenset(
    {*_REDUCTIONS, *_CONCATENATIONS, *_SPLITS, *_SELECTIONS, *_TRANSPOSES, *_MOVES,
     *_ONE_DIM_ALONG_ZERO, "stack", "vstack", "row_stack", "vsplit", "einsum", "unsqueeze",
     "view", "reshape", "flatten", "unflatten", "view_as", "reshape_as", "getitem",
     "permute", "t", "matmul", "mm", "mv", "repeat", "expand", "expand_as", "tile",
     "repeat_interleave"}
)  # fmt: skip
#: Calls returning tuples: indexing their result picks a tensor, not a sample.
_TUPLE_CALLS = frozenset(
    {*_SPLITS, "hsplit", "vsplit", "dsplit", "sort", "topk", "max", "min", "aminmax",
     "kthvalue", "median", "mode", "unique", "frexp", "var_mean", "std_mean"}
)  # fmt: skip


@dataclass(frozen=True)
class BatchUse:
    """What a call does to dim 0.

    Attributes:
        what: the call in words (``"sums over dim -2"``, ``"reshapes to (-1, 8)"``).
        problem: decided at trace time: why it mixes time steps and samples; ``None``
            when only a run can tell (then ``check`` says what to check).
        check: the run-time check (:data:`Check`), or ``None`` when decided.
        dims: the dims to resolve for ``check='dims'`` (ints or nodes).
        offset: 1 where the dims index a result with one more dim (``stack``,
            ``unsqueeze``), else 0.
        trailing: for ``check='rank'``, the largest rank at which the call reaches dim 0
            (how many dims the index after ``...`` takes; 2 for ``W @ x``).
        reaches: for ``check='rank'``, what the call then does to dim 0.
        if_tensor: for ``check='tensor'``, the problem if the indexed value is a tensor.
        first_only: for ``check='moves'``, the dims are a permutation: it moves dim 0
            unless the first resolves to 0 (else: if any of them resolves to 0).
        same_rank: for ``check='batch'``, the output must also keep the input's rank
            (``repeat``, ``expand``, ``tile``: a new leading dim moves the batch).
        operand: the position of the argument that carries the batch (0, or 1 for the
            right operand of ``W @ x``).
    """

    what: str
    problem: str | None = None
    check: Check | None = None
    dims: tuple[Any, ...] = ()
    offset: int = 0
    trailing: int = 0
    reaches: str = "the index after '...' reaches dim 0"
    if_tensor: str = ""
    first_only: bool = False
    same_rank: bool = False
    operand: int = 0


def _name(node: fx.Node) -> str:
    """The bare name of a call (``sum`` for ``x.sum``, ``torch.sum`` and ``Tensor.sum``)."""
    if node.op == "call_method":
        return str(node.target)
    if node.target is operator.getitem:
        return "getitem"
    if node.target is operator.matmul:
        return "matmul"
    module = getattr(node.target, "__module__", None) or ""
    name = getattr(node.target, "__name__", "")
    return name if module.startswith("torch") or not module else ""


def _in(value: Any, signals: set[fx.Node]) -> bool:
    """Whether ``value`` is one of the signal nodes (a list or slice is not)."""
    return isinstance(value, fx.Node) and value in signals


def _arg(node: fx.Node, position: int, names: tuple[str, ...], default: Any) -> Any:
    """Argument ``position`` (counting the input as 0) or its keyword, else ``default``."""
    if len(node.args) > position:
        return node.args[position]
    for name in names:
        if name in node.kwargs:
            return node.kwargs[name]
    return default


def _resolve(dims: Any) -> tuple[str, tuple[Any, ...]] | None:
    """``('zero', dims)`` if a constant dim is 0 or the dims are every dim (``None``,
    ``()``), ``('check', dims)`` if one is negative or computed, ``None`` if all are
    constants >= 1."""
    if dims is None:
        return "zero", (None,)
    entries = tuple(dims) if isinstance(dims, (tuple, list)) else (dims,)
    if not entries:
        return "zero", (None,)
    if any(isinstance(d, int) and d == 0 for d in entries):
        return "zero", entries
    if any(not isinstance(d, int) or d < 0 for d in entries):
        return "check", entries
    return None


def _shown(value: Any) -> str:
    """A constant as written, a node by its name."""
    return value.name if isinstance(value, fx.Node) else repr(value)


def _dims_text(dims: tuple[Any, ...]) -> str:
    if dims == (None,):
        return "every dim"
    shown = [_shown(d) for d in dims]
    return f"dim {shown[0]}" if len(shown) == 1 else f"dims ({', '.join(shown)})"


def _over_dims(phrase: str, dims: Any, offset: int = 0, zero: str | None = None) -> BatchUse | None:
    """The use of a call acting along ``dims`` (``phrase``: ``"sums over"``); ``zero``
    is the problem where dim 0 is one of them, if not ``phrase`` and the dims."""
    resolved = _resolve(dims)
    if resolved is None:
        return None
    kind, entries = resolved
    text = f"{phrase} {_dims_text(entries)}"
    if kind == "zero":
        return BatchUse(text, problem=zero or text)
    return BatchUse(text, check="dims", dims=entries, offset=offset)


def _is_batch_size(node: Any) -> bool:
    """Whether ``node`` is the size of a tensor's dim 0: ``x.size(0)``, ``x.shape[0]``,
    ``x.size()[0]``, ``len(x)``."""
    if not isinstance(node, fx.Node):
        return False
    if node.op == "call_method" and node.target == "size":
        return _arg(node, 1, ("dim",), None) == 0
    if node.op == "call_function" and node.target is len:
        return True
    if node.op == "call_function" and node.target is operator.getitem and node.args[1] == 0:
        whole = node.args[0]
        return isinstance(whole, fx.Node) and (
            (whole.op == "call_method" and whole.target == "size" and len(whole.args) == 1)
            or (whole.op == "call_function" and whole.target is getattr
                and whole.args[1] == "shape")
        )  # fmt: skip
    return False


def _is_whole_shape(node: Any) -> bool:
    """``x.shape`` or ``x.size()``: a shape whose dim 0 is ``x``'s."""
    return isinstance(node, fx.Node) and (
        (node.op == "call_method" and node.target == "size" and len(node.args) == 1)
        or (node.op == "call_function" and node.target is getattr and node.args[1] == "shape")
    )


def _reshape(shape: Any) -> BatchUse | None:
    """``x.view(shape)``/``x.reshape(shape)``: dim 0 must stay the batch."""
    entries = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
    if len(entries) == 1 and _is_whole_shape(entries[0]):
        return None  # x.view(y.shape): y's dim 0, the batch
    shown = ", ".join(_shown(e) for e in entries)
    what = f"reshapes to ({shown}{',' if len(entries) == 1 else ''})"
    first = entries[0] if entries else None
    if _is_batch_size(first):
        return None
    if isinstance(first, int) and first != -1:
        return BatchUse(what, problem=f"{what}: it fixes dim 0 to {first}, not the batch")
    if not entries:
        return BatchUse(what, problem=f"{what}: a scalar, no batch")
    return BatchUse(what, check="batch")


def _index(node: fx.Node, gm: fx.GraphModule) -> BatchUse | None:
    """``x[index]``: whatever the index does to dim 0 (when ``x`` is a tensor)."""
    index = node.args[1]
    entries = index if isinstance(index, tuple) else (index,)
    first = entries[0] if entries else slice(None)
    text = _index_text(index)
    if first is Ellipsis:
        trailing = sum(1 for e in entries[1:] if e is not None and e is not Ellipsis)
        if trailing == 0:
            return None
        return BatchUse(f"indexes with [{text}]", check="rank", trailing=trailing)
    if isinstance(first, slice):
        if first == slice(None) or (first.start in (None, 0) and first.stop is None
                                    and first.step in (None, 1)):  # fmt: skip
            return None
        problem = f"slices dim 0 ([{text}]): it keeps some of the rows"
    elif first is None:
        problem = f"inserts a new dim 0 ([{text}]): the batch becomes dim 1"
    else:
        problem = f"indexes dim 0 ([{text}]): it picks rows of the batch"
    use = BatchUse(f"indexes with [{text}]", problem=problem)
    tensor = _tensor_valued(node.args[0], gm)
    if tensor is False:
        return None  # a tuple's element
    return use if tensor else BatchUse(use.what, check="tensor", if_tensor=problem)


def _index_text(index: Any) -> str:
    def one(e: Any) -> str:
        if isinstance(e, slice):
            parts = ["" if p is None else _shown(p) for p in (e.start, e.stop, e.step)]
            return ":".join(parts[:2]) + (f":{parts[2]}" if parts[2] else "")
        if e is Ellipsis:
            return "..."
        return _shown(e)

    return ", ".join(one(e) for e in (index if isinstance(index, tuple) else (index,)))


def _tensor_valued(node: Any, gm: fx.GraphModule) -> bool | None:
    """Whether ``node`` gives a tensor (True), a tuple (False), or may give either."""
    if not isinstance(node, fx.Node):
        return None
    if node.op == "call_module":  # a leaf: a torch module, or a converted site
        module = gm.get_submodule(str(node.target))
        tuples = isinstance(module, (nn.RNNBase, nn.MultiheadAttention))
        return not (tuples or getattr(module, "return_indices", False))
    if node.op in ("call_function", "call_method"):
        name = _name(node)
        if node.target is getattr:  # x.mT, x.data: tensors; x.shape: a tuple
            return _tensor_attribute(node) or None
        if name in _TUPLE_CALLS or _is_shape(node):
            return False
        if name == "getitem":
            return None
        return True if name else None
    return None


def _einsum(node: fx.Node, signals: set[fx.Node]) -> BatchUse | None:
    """``torch.einsum(eq, x, w)``: ``x``'s first index must lead the output."""
    if not node.args or not isinstance(node.args[0], str):
        return None
    equation = node.args[0].replace(" ", "")
    operands = node.args[1:]
    if len(operands) == 1 and isinstance(operands[0], (tuple, list)):
        operands = tuple(operands[0])
    inputs, _, output = equation.partition("->")
    terms = inputs.split(",")
    if "->" not in equation:  # implicit output: "..." first, then the single labels
        labels = inputs.replace(",", "").replace("...", "")
        output = ("..." if "..." in inputs else "") + "".join(
            sorted(c for c in set(labels) if labels.count(c) == 1)
        )
    for term, operand in zip(terms, operands):
        if not _in(operand, signals) or not term:
            continue
        lead = "..." if term.startswith("...") else term[0]
        if not output.startswith(lead):
            where = "sums over" if lead not in output else "moves"
            what = f"einsum {node.args[0]!r}"
            return BatchUse(
                what, problem=f"{what} {where} the batch index {lead!r} (dim 0 of its input)"
            )
    return None


def batch_dim_use(node: fx.Node, gm: fx.GraphModule, signals: set[fx.Node]) -> BatchUse | None:
    """What ``node`` (a call on a signal in ``gm``'s graph) does to dim 0: ``None`` if it
    keeps dim 0 the batch, else a :class:`BatchUse` (a problem, or a run-time check)."""
    if node.op == "call_module":
        return _module_use(gm.get_submodule(str(node.target)))
    if node.op not in ("call_function", "call_method"):
        return None
    name = _name(node)
    first = node.args[0] if node.args else None
    if node.target is getattr and node.args[1] in ("mT", "mH") and _in(first, signals):
        return _moves(f"transposes its last two dims (.{node.args[1]}): dims", (-2, -1))
    if name in _CONCATENATIONS or name in ("stack", "vstack", "row_stack", "hstack", "dstack"):
        tensors = first if isinstance(first, (tuple, list)) else (first,)  # or a tuple node
        if not any(_in(t, signals) for t in tensors):
            return None
        if name in ("vstack", "row_stack"):
            return BatchUse(name, problem=f"{name} joins along dim 0")
        if name in _ONE_DIM_ALONG_ZERO:
            return _on_one_dim(name)
        dim = _arg(node, 1, ("dim", "axis"), 0)
        if name == "stack":
            return _over_dims("stacks along a new", dim, offset=1,
                              zero="stacks along a new dim 0: the batch becomes dim 1")  # fmt: skip
        return _over_dims("concatenates along", dim)
    if name == "einsum":
        return _einsum(node, signals)
    if name in ("matmul", "mm", "mv"):
        return _product(node, name, signals)
    if not _in(first, signals):
        return None
    if name in _TRANSPOSES:
        dims = node.args[1:3] or (node.kwargs.get("dim0"), node.kwargs.get("dim1"))
        return _moves("transposes dims", dims)
    if name == "permute":
        dims = node.args[1:]
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = dims[0]
        return _moves("permutes to dims", dims or node.kwargs.get("dims", ()), first_only=True)
    if name in _MOVES:
        ends = [*node.args[1:3], node.kwargs.get("source"), node.kwargs.get("destination")]
        return _moves(f"{name} of dims", ends)
    if name == "vsplit":
        return BatchUse(name, problem="vsplit splits along dim 0")
    if name == "hsplit":
        return _on_one_dim(name)
    if name in ("repeat", "expand", "tile"):
        sizes = node.args[1:]
        if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
            sizes = sizes[0]
        sizes = tuple(sizes or _arg(node, 1, ("sizes", "repeats", "dims", "size"), ()))
        return _repeat(name, sizes)
    if name == "expand_as":
        if _in(_arg(node, 1, ("other",), None), signals):
            return None
        return BatchUse(f"{name} a constant's shape", check="batch", same_rank=True)
    if name == "repeat_interleave":
        return _over_dims("repeats along", _arg(node, 2, ("dim",), None))
    if name in _REDUCTIONS:
        default = None if name != "cumsum" else 0
        return _over_dims(f"{_REDUCTIONS[name]} over", _arg(node, 1, ("dim", "axis"), default))
    if name in _SPLITS:
        return _over_dims("splits along", _arg(node, _SPLITS[name], ("dim",), 0))
    if name in _SELECTIONS:
        return _over_dims(f"{name}s along", _arg(node, 1, ("dim",), 0))
    if name == "unsqueeze":
        zero = "inserts a new dim 0 (unsqueeze(0)): the batch becomes dim 1"
        return _over_dims("inserts a dim at", _arg(node, 1, ("dim",), 0), offset=1, zero=zero)
    if name in ("view", "reshape"):
        shape = node.args[1:] if node.op == "call_method" else node.args[1:2]
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = shape[0]
        if not shape:
            shape = node.kwargs.get("shape", node.kwargs.get("size", ()))
        return _reshape(shape)
    if name == "flatten":
        start = _arg(node, 1, ("start_dim",), 0)
        end = _arg(node, 2, ("end_dim",), -1)
        if (isinstance(start, int) and start > 0) or (start == 0 and end == 0):
            return None
        return BatchUse(f"flattens from dim {_shown(start)}", check="batch")
    if name == "unflatten":
        dim = _arg(node, 1, ("dim",), 0)
        if isinstance(dim, int) and dim > 0:
            return None
        return BatchUse(f"unflattens dim {_shown(dim)}", check="batch")
    if name in ("view_as", "reshape_as"):
        if _in(_arg(node, 1, ("other",), None), signals):
            return None
        return BatchUse(f"{name} a constant's shape", check="batch")
    if name == "getitem":
        return _index(node, gm)
    return None


def _moves(what: str, dims: Any, first_only: bool = False) -> BatchUse | None:
    """A transpose/permute/movedim along ``dims`` whose constant dims do not move dim 0
    (those that do, :func:`~spikeflow.conversion.classify.moves_batch_dim` refuses):
    ``None`` if they are all constants, else the run-time check of the negative or
    computed ones (``first_only``: a permutation, which keeps dim 0 only where its first
    dim is 0)."""
    entries = tuple(d for e in dims for d in (e if isinstance(e, (tuple, list)) else (e,)))
    entries = tuple(d for d in entries if d is not None)
    if not entries or all(isinstance(d, int) and (d >= 0 or first_only) for d in entries):
        return None  # a permute of constants is decided by its length (classify)
    shown = ", ".join(_shown(d) for d in entries)
    return BatchUse(f"{what} ({shown})", check="moves", dims=entries, first_only=first_only)


def _on_one_dim(name: str) -> BatchUse:
    """``hstack``/``hsplit``/``dstack``: along dim 0 where the input has one dim."""
    return BatchUse(name, check="rank", trailing=1, reaches=f"it {_ONE_DIM_ALONG_ZERO[name]}")


def _product(node: fx.Node, name: str, signals: set[fx.Node]) -> BatchUse | None:
    """``W @ x``, ``torch.matmul(W, x)``, ``torch.mm(W, x)``, ``torch.mv(W, x)``: a
    signal on the right is contracted along dim -2 (``matmul``: dim 0 where it has at
    most 2 dims; ``mm``, ``mv``: always dim 0). On the left only a 1-dim signal is."""
    left = _arg(node, 0, ("input",), None)
    right = _arg(node, 1, ("other", "mat2", "vec"), None)
    if _in(right, signals) and not _in(left, signals):
        what = f"{name}({_shown(left)}, <signal>)"
        if name in ("mm", "mv"):
            return BatchUse(what, problem=f"{what} sums over dim 0 of its right operand")
        reaches = "it sums over its dim 0 (the right operand of W @ x is contracted along dim -2)"
        return BatchUse(what, check="rank", trailing=2, reaches=reaches, operand=1)
    if _in(left, signals) and not _in(right, signals) and name == "matmul":
        what = f"{name}(<signal>, {_shown(right)})"
        return BatchUse(what, check="rank", trailing=1, reaches="it sums over its dim 0")
    return None


def _repeat(name: str, sizes: tuple[Any, ...]) -> BatchUse:
    """``x.repeat(sizes)``, ``x.expand(sizes)``, ``x.tile(dims)``: dim 0 must stay (its
    entry 1, or -1 for ``expand``) and no dim may come before it."""
    shown = ", ".join(_shown(e) for e in sizes)
    what = f"{name}({shown})"
    first = sizes[0] if sizes else None
    if name == "repeat" and isinstance(first, int) and first != 1:
        return BatchUse(
            what, problem=f"{what} repeats dim 0 {first} times (or adds a dim before it)"
        )
    if name == "expand" and isinstance(first, int) and first != -1:
        return BatchUse(what, problem=f"{what} fixes dim 0 to {first} (or adds a dim before it)")
    return BatchUse(what, check="batch", same_rank=True)


def may_act_on_batch_dim(name: str) -> bool:
    """Whether a function called by an untraced forward (``torch.sum``, ``Tensor.view``,
    ``Tensor.__getitem__``) is one of the calls whose use of dim 0 :func:`batch_dim_use`
    decides in a traced graph (an untraced forward makes them unchecked)."""
    short = name.rsplit(".", 1)[-1]
    short = {"__getitem__": "getitem", "__matmul__": "matmul", "__rmatmul__": "matmul"}.get(
        short, short
    )
    return short in _DIM_CALLS


def _module_use(module: nn.Module) -> BatchUse | None:
    """``nn.Flatten`` and ``nn.Unflatten`` called in a traced graph."""
    if isinstance(module, nn.Flatten):
        start, end = module.start_dim, module.end_dim
        if start > 0 or (start == 0 and end == 0):
            return None
        return BatchUse(f"flattens from dim {start}", check="batch")
    if isinstance(module, nn.Unflatten) and isinstance(module.dim, int) and module.dim <= 0:
        return BatchUse(f"unflattens dim {module.dim}", check="batch")
    return None


class BatchDimProbe(nn.Module):
    """Runs a :class:`BatchUse`'s check on the calibration batches (a pass-through).

    Called as ``probe(value, out, dims)`` (the call's input, its output, and the dims
    to resolve, which may be computed by the graph), it records :attr:`problem`, the
    first failure, and counts its :attr:`calls`; the converter reads both and then
    removes the probe from the graph.
    """

    def __init__(self, use: BatchUse, report_index: int, shared_entry: bool = False) -> None:
        super().__init__()
        self.use = use
        #: The report entry of the answer; ``shared_entry``: it is the module's own
        #: entry (``kept``), which stays if the check passes.
        self.report_index = report_index
        self.shared_entry = shared_entry
        self.calls = 0
        self.problem: str | None = None
        #: Appended to a problem found now (set for the run on a second batch size).
        self.note = ""

    def forward(self, value: Any, out: Any, dims: tuple[Any, ...] = ()) -> Any:
        """Check ``value`` (the call's input) and ``out`` (its output); return ``out``."""
        self.calls += 1
        if self.problem is None:
            problem = self._problem(value, out, dims)
            self.problem = None if problem is None else problem + self.note
        return out

    def _problem(self, value: Any, out: Any, dims: tuple[Any, ...]) -> str | None:
        use = self.use
        if use.check == "tensor":
            return use.if_tensor if isinstance(value, Tensor) else None
        if isinstance(value, (tuple, list)) and use.check == "dims":  # cat's tensors
            value = next((v for v in value if isinstance(v, Tensor)), None)
        if not isinstance(value, Tensor):
            return None
        if use.check == "rank":
            if value.dim() <= use.trailing:
                return f"{use.what}: on a {value.dim()}-dim tensor {use.reaches}"
            return None
        if use.check == "batch":
            if not isinstance(out, Tensor):
                return None
            rank_changed = use.same_rank and out.dim() != value.dim()
            if out.dim() == 0 or out.shape[0] != value.shape[0] or rank_changed:
                return (
                    f"{use.what}: it turned {tuple(value.shape)} into {tuple(out.shape)}, "
                    "whose dim 0 is not the batch"
                )
            return None
        rank = value.dim() + use.offset
        if use.check == "moves":
            return self._moves(value.dim(), dims)
        for given, resolved in zip(use.dims, dims):
            if resolved is None:
                return f"{use.what}: that is every dim"
            if isinstance(resolved, int) and rank > 0 and resolved % rank == 0:
                shown = f"{given.name} = {resolved}" if isinstance(given, fx.Node) else given
                where = "its input" if use.offset == 0 else "the result"
                return f"{use.what}: dim {shown} is dim 0 of {where} ({rank} dims)"
        return None

    def _moves(self, rank: int, dims: tuple[Any, ...]) -> str | None:
        """Whether a transpose, permute or movedim of ``dims`` (resolved) moves dim 0."""
        use = self.use
        if rank == 0 or not all(isinstance(d, int) for d in dims):
            return None
        resolved = [d % rank for d in dims]
        if use.first_only:
            moved = resolved[0] != 0
        else:  # transpose(-2, -2) and movedim(-2, 0) of a 2-dim tensor keep it
            moved = 0 in resolved and not (len(resolved) == 2 and resolved[0] == resolved[1])
        if not moved:
            return None
        given = use.dims[0] if use.first_only else use.dims[resolved.index(0)]
        value = dims[0] if use.first_only else dims[resolved.index(0)]
        shown = f"{given.name} = {value}" if isinstance(given, fx.Node) else given
        which = "is not" if use.first_only else "is"
        return (
            f"{use.what}: dim {shown} {which} dim 0 of its input ({rank} dims), so it moves "
            "the batch dimension (dim 0), into which the SNN folds time"
        )


def probe_args(node: fx.Node, use: BatchUse) -> tuple[Any, ...]:
    """The arguments of the probe of ``node``: its input (the first tensor of a list;
    the right operand of ``W @ x``), itself, and the dims to resolve."""
    names = ("input",) if use.operand == 0 else ("other", "mat2", "vec")
    value = _arg(node, use.operand, names, None)
    if isinstance(value, (tuple, list)):
        value = next((v for v in value if isinstance(v, fx.Node)), None)
    return (value, node, tuple(use.dims) if use.check in ("dims", "moves") else ())
