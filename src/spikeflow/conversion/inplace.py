"""In-place relus in traced graphs: which tensors share their input's memory.

An in-place relu (``h.relu_()``, ``F.relu(h, inplace=True)``, ``nn.ReLU(inplace=True)``)
rectifies the memory of ``h``: what reads that memory afterwards sees rectified values,
through ``h`` and through every view of it (``v = h.view(...)`` taken before the relu,
the tensor ``h`` itself views, its other slices). The converted network replaces the
relu by a neuron that returns a new tensor; reads of ``h`` after it are redirected to
that tensor (``rewrite._read_rectified``), but a view read afterwards is another node.
Whether a tensor is a view is decided at run time (``reshape``, ``flatten``,
``contiguous`` and ``to`` copy or not depending on strides and dtypes), so instead of
following views through the graph the neuron writes its output back into ``h`` wherever
another node may share its memory (:func:`may_share_memory`): every view then reads what
the ANN's views read, as in the ANN, decided by the tensors themselves. This costs one
copy per such relu.
"""

from __future__ import annotations

import operator

from torch import fx

__all__ = ["alias_root", "clone_input", "is_view_like", "may_share_memory"]

#: Calls whose result may share memory with their (first) input: views, reshapes that
#: view when they can, no-op conversions that return the input itself, and splits.
VIEW_NAMES = frozenset(
    {
        "view",
        "view_as",
        "reshape",
        "reshape_as",
        "flatten",
        "unflatten",
        "ravel",
        "transpose",
        "swapaxes",
        "swapdims",
        "permute",
        "movedim",
        "moveaxis",
        "t",
        "adjoint",
        "squeeze",
        "unsqueeze",
        "narrow",
        "select",
        "expand",
        "expand_as",
        "diagonal",
        "as_strided",
        "unfold",
        "contiguous",
        "detach",
        "alias",
        "real",
        "view_as_real",
        "to",
        "type",
        "type_as",
        "float",
        "chunk",
        "split",
        "split_with_sizes",
        "tensor_split",
        "hsplit",
        "vsplit",
        "dsplit",
        "unbind",
        "atleast_1d",
        "atleast_2d",
        "atleast_3d",
    }
)
#: Attributes that are views: ``x.T``, ``x.mT``, ``x.data``, ...
VIEW_ATTRIBUTES = frozenset({"T", "mT", "H", "mH", "data", "real"})
#: ``h += 1`` and the like return ``h`` itself.
_INPLACE_OPERATORS = frozenset({operator.iadd, operator.isub, operator.imul, operator.itruediv})


def is_view_like(node: fx.Node) -> bool:
    """Whether ``node``'s result may share memory with its first argument: a view, a
    call that returns a view when it can, a split, indexing, or an in-place method
    (which returns its input)."""
    if node.op == "call_method":
        name = str(node.target)
        in_place = name.endswith("_") and not name.startswith("__")
        return name in VIEW_NAMES or in_place
    if node.op != "call_function":
        return False
    if node.target is operator.getitem:
        return True
    if node.target is getattr:
        return len(node.args) > 1 and node.args[1] in VIEW_ATTRIBUTES
    if node.target in _INPLACE_OPERATORS:
        return True
    module = getattr(node.target, "__module__", None) or ""
    name = getattr(node.target, "__name__", "")
    is_torch = module.startswith("torch") or module == ""
    return is_torch and (name in VIEW_NAMES or (name.endswith("_") and not name.startswith("_")))


def _source(node: fx.Node) -> fx.Node | None:
    """The tensor a view-like call views (its first argument), if it is a node."""
    source = node.args[0] if node.args else next(iter(node.kwargs.values()), None)
    return source if isinstance(source, fx.Node) else None


def alias_root(x: fx.Node) -> fx.Node:
    """The node whose memory ``x`` may view: up through view-like calls."""
    while is_view_like(x) and (source := _source(x)) is not None:
        x = source
    return x


def may_share_memory(x: fx.Node, relu: fx.Node, order: dict[fx.Node, int], root: bool) -> bool:
    """Whether a node other than ``x`` (and the nodes reading ``x`` after ``relu``) may
    read ``x``'s memory after the in-place relu ``relu`` rectified it: ``x`` is (maybe) a
    view of another tensor, a view of ``x`` (maybe) was taken before the relu, or ``x``
    is an input of a graph that is not the whole network (the caller may read it
    afterwards, as an untraced forward that calls this traced module). The root graph's
    input is the converted network's own."""
    if is_view_like(x) or (x.op == "placeholder" and not root):
        return True
    position = order.get(relu, len(order))
    return any(
        user is not relu and order.get(user, -1) < position and is_view_like(user)
        for user in x.users
    )


def clone_input(graph: fx.Graph, placeholder: fx.Node) -> fx.Node:
    """Make every reader of ``placeholder`` read a clone of it (once per placeholder):
    an in-place relu whose neuron writes back into the network's input then leaves the
    caller's tensor as it was."""
    for user in placeholder.users:
        if user.op == "call_method" and user.target == "clone" and user.meta.get("input_copy"):
            return user
    with graph.inserting_after(placeholder):
        copy = graph.call_method("clone", (placeholder,))
    copy.meta["input_copy"] = True
    placeholder.replace_all_uses_with(copy, delete_user_cb=lambda user: user is not copy)
    return copy
