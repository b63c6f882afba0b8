"""The checks of arguments that take True or False: :func:`check_bool_arguments`
refuses a string such as ``'False'`` (which would count as true) where a parameter's
annotation (read from the type or, unevaluated, from its text) or its default says
bool; inside :func:`reading_saved_run`, a saved run's such value is read as that run
read it, with a :class:`SavedRunWarning`. :mod:`spikeflow.models.common` re-exports
these names.
"""

from __future__ import annotations

import ast
import contextlib
import contextvars
import inspect
import types
import typing
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from spikeflow.errors import ConfigurationError

__all__ = [
    "LEGACY_BOOL_STRINGS",
    "SavedRunWarning",
    "annotated_signature",
    "check_bool_arguments",
    "is_reading_saved_run",
    "reading_saved_run",
]


def annotated_signature(obj: Callable[..., Any]) -> inspect.Signature:
    """``inspect.signature(obj)`` with its string annotations (``from __future__ import
    annotations``) evaluated where they can be; where one cannot (a name imported only
    for type checking), every annotation stays a string, which :func:`_bool_annotation`
    reads by its syntax.

    Raises:
        TypeError, ValueError: as :func:`inspect.signature` (no signature to be had).
    """
    try:
        return inspect.signature(obj, eval_str=True)
    except Exception:  # a NameError, SyntaxError, TypeError, ... of an annotation
        return inspect.signature(obj)


#: What an annotation may be made of for :func:`_bool_annotation` to call it a bool.
_BOOL, _NONE = "bool", "None"


def _bool_annotation(parameter: inspect.Parameter) -> str | None:
    """``"bool"`` or ``"bool | None"`` when ``parameter`` takes True/False (its annotation
    says so, or it has no annotation and a bool default), else None.

    The annotation may be the type (``bool``, ``Optional[bool]``, ``Union[bool, None]``,
    ``bool | None``, ``Optional['bool']``, ``Annotated[bool, ...]``) or its text, as
    ``from __future__ import annotations`` leaves it (``'t.Optional[bool]'``, quoted
    again: ``"'None | bool'"``)."""
    annotation = parameter.annotation
    if annotation is parameter.empty:
        return "bool" if isinstance(parameter.default, bool) else None
    parts = _annotation_parts(annotation, depth=0)
    if parts == {_BOOL}:
        return "bool"
    if parts == {_BOOL, _NONE}:
        return "bool | None"
    return None


def _annotation_parts(annotation: Any, depth: int) -> set[str] | None:
    """The members of the union ``annotation`` stands for, when each is bool or None
    (``{"bool", "None"}``); None when any is something else."""
    if depth > 8:  # a string that keeps quoting itself
        return None
    if annotation is bool:
        return {_BOOL}
    if annotation is None or annotation is type(None):
        return {_NONE}
    if isinstance(annotation, str):
        return _text_parts(annotation, depth + 1)
    if isinstance(annotation, typing.ForwardRef):
        return _text_parts(annotation.__forward_arg__, depth + 1)
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _annotation_parts(typing.get_args(annotation)[0], depth + 1)
    if origin is typing.Union or origin is types.UnionType:
        args = typing.get_args(annotation)
        return _union_parts(_annotation_parts(arg, depth + 1) for arg in args)
    return None


def _union_parts(members: Iterable[set[str] | None]) -> set[str] | None:
    out: set[str] = set()
    for member in members:
        if member is None:
            return None
        out |= member
    return out


def _text_parts(text: str, depth: int) -> set[str] | None:
    """:func:`_annotation_parts` of an annotation's text, read by its syntax (nothing is
    evaluated): names are taken by their last part, so ``typing.Optional`` and
    ``t.Optional`` are ``Optional``."""
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        return None
    return _node_parts(node, depth)


def _node_parts(node: ast.expr, depth: int) -> set[str] | None:
    if depth > 8:
        return None
    if isinstance(node, ast.Constant):
        if node.value is None:
            return {_NONE}
        return _text_parts(node.value, depth + 1) if isinstance(node.value, str) else None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _union_parts((_node_parts(node.left, depth + 1), _node_parts(node.right, depth + 1)))
    name = _node_name(node)
    if name == "bool":
        return {_BOOL}
    if name in ("None", "NoneType"):
        return {_NONE}
    if isinstance(node, ast.Subscript):
        base = _node_name(node.value)
        args = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        if base == "Optional" and len(args) == 1:
            return _union_parts((_node_parts(args[0], depth + 1), {_NONE}))
        if base == "Union" and args:
            return _union_parts(_node_parts(arg, depth + 1) for arg in args)
        if base == "Annotated" and args:
            return _node_parts(args[0], depth + 1)
    return None


def _node_name(node: ast.expr) -> str | None:
    """``bool`` of ``bool``, ``Optional`` of ``typing.Optional``; None for other nodes."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


#: The strings an older spikeflow saved for a bool given as K=V on the command line
#: (``detach_reset=False``): its parser kept the bare words as text.
LEGACY_BOOL_STRINGS = ("True", "False")


class SavedRunWarning(UserWarning):
    """A saved run (a checkpoint's config) holds a value that is read as the run read it
    rather than refused: a string where True or False is expected, which an older
    spikeflow saved for ``--neuron-kwargs detach_reset=False`` and used as True."""


_READING_SAVED_RUN: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "spikeflow_reading_saved_run", default=False
)


@contextlib.contextmanager
def reading_saved_run() -> Iterator[None]:
    """Within this block, :func:`check_bool_arguments` reads a string or a number given
    for a bool argument as the run that saved it did: by its truth value (a non-empty
    string, ``'False'`` included, is True), with a :class:`SavedRunWarning` naming the
    argument and the value used, instead of refusing it. For configurations read back
    from an existing run (``spikeflow eval``, ``--resume``), whose values cannot be
    changed; new input stays strict."""
    token = _READING_SAVED_RUN.set(True)
    try:
        yield
    finally:
        _READING_SAVED_RUN.reset(token)


def is_reading_saved_run() -> bool:
    """Whether the caller is inside :func:`reading_saved_run` (a run read back)."""
    return _READING_SAVED_RUN.get()


def check_bool_arguments(
    parameters: Mapping[str, inspect.Parameter], values: Mapping[str, Any], owner: str
) -> dict[str, Any]:
    """Raise unless each of ``values`` whose parameter takes True or False (annotated
    ``bool``, or unannotated with a bool default) is a bool (or None where the annotation
    allows it): a string such as ``'False'`` would otherwise count as true.

    Inside :func:`reading_saved_run`, a string or number there is taken by its truth
    value instead, with a :class:`SavedRunWarning`.

    Returns:
        ``values`` as a new dict, with those values replaced by bools.

    Raises:
        ConfigurationError: naming ``owner``, the argument and the value.
    """
    out = dict(values)
    for key, value in values.items():
        parameter = parameters.get(key)
        kind = None if parameter is None else _bool_annotation(parameter)
        if kind is None or isinstance(value, bool) or (value is None and kind == "bool | None"):
            continue
        if _READING_SAVED_RUN.get() and isinstance(value, (str, int, float)):
            out[key] = bool(value)
            if isinstance(value, str):
                what = (
                    f"the string {value!r}, which is ambiguous where true or false is "
                    f"expected (an older spikeflow saved {key}=False given on the command "
                    f"line as the string 'False'); using {out[key]}, what the run used: "
                    "the string's truth value (true unless empty)"
                )
            else:
                what = (
                    f"the {type(value).__name__} {value!r} where true or false is expected; "
                    f"using {out[key]}, what the run used (its truth value)"
                )
            warnings.warn(
                f"{owner}: in the saved run, argument {key} is {what}",
                SavedRunWarning,
                stacklevel=2,
            )
            continue
        allowed = "true or false" + (" (or None)" if kind == "bool | None" else "")
        hint = (
            f" (a config saved by an older spikeflow may hold such a string, written for "
            f"{key}=False or True: that run used it as {bool(value)}, a non-empty string "
            "being true)"
            if value in LEGACY_BOOL_STRINGS
            else ""
        )
        raise ConfigurationError(
            f"{owner}: argument {key} must be {allowed}, got {value!r} "
            f"({type(value).__name__}){hint}"
        )
    return out
