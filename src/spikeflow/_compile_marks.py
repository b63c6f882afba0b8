"""``torch.compile`` marks that do not import Dynamo when spikeflow is imported.

``torch.compiler.assume_constant_result`` and ``torch.compiler.disable`` import
``torch._dynamo`` (about 1.3 s, most of ``import spikeflow``) the moment they decorate a
function. Dynamo only reads the marks while it traces, and it is imported before it
traces anything, so spikeflow applies the real marks when ``torch._dynamo`` is imported
(a one-shot import hook, removed once it has fired), or at once where it already is:

* :func:`assume_constant_result` marks the function object itself, as torch's does;
* :func:`eager_under_compile` returns a stable wrapper that calls
  ``torch.compiler.disable(fn)`` once Dynamo is loaded (the function itself before:
  nothing can be compiling then). Dynamo inlines the wrapper and breaks the graph at
  the disabled call, as it does for a function decorated with ``torch.compiler.disable``.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import threading
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any, TypeVar

import torch

__all__ = ["assume_constant_result", "dynamo_loaded", "eager_under_compile"]

F = TypeVar("F", bound=Callable[..., Any])

_DYNAMO = "torch._dynamo"
# (kept by importlib.reload: the marks made before it still wait in the same list)
_lock: threading.RLock = globals().get("_lock") or threading.RLock()
#: Marks waiting for Dynamo: each applies one of them.
_pending: list[Callable[[], None]] = globals().get("_pending", [])
#: Set once Dynamo's module has run and the pending marks were applied (before the
#: import machinery marks the module initialised, which dynamo_loaded() waits for).
_fired: list[bool] = globals().get("_fired", [])


def dynamo_loaded() -> bool:
    """Whether ``torch._dynamo`` is imported (and done importing)."""
    module = sys.modules.get(_DYNAMO)
    spec = getattr(module, "__spec__", None)
    return module is not None and not getattr(spec, "_initializing", False)


def assume_constant_result(fn: F) -> F:
    """``torch.compiler.assume_constant_result(fn)`` (Dynamo runs ``fn`` while it traces
    and keeps its result as a constant of the graph), applied once Dynamo is loaded.
    Returns ``fn`` itself, as torch's does."""
    _when_dynamo_loads(lambda: torch.compiler.assume_constant_result(fn))
    return fn


def eager_under_compile(fn: F) -> F:
    """``torch.compiler.disable(fn)`` (``fn`` runs eagerly, a graph break under
    ``torch.compile``) without importing Dynamo now: a wrapper that calls ``fn``
    itself until Dynamo is loaded, its disabled version after."""
    target: list[Callable[..., Any]] = [fn]

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        return target[0](*args, **kwargs)

    def disable() -> None:
        target[0] = torch.compiler.disable(fn)

    _when_dynamo_loads(disable)
    return call  # type: ignore[return-value]


def _when_dynamo_loads(mark: Callable[[], None]) -> None:
    with _lock:
        if _fired or dynamo_loaded():
            mark()
            return
        _pending.append(mark)
        _arm()


def _is_hook(finder: object) -> bool:
    # (by name: a hook made before an importlib.reload is of the class it replaced)
    return getattr(type(finder), "_spikeflow_dynamo_hook", False)


def _arm() -> None:
    """Put the import hook at the front of ``sys.meta_path`` unless one is there."""
    with _lock:
        if not any(_is_hook(finder) for finder in sys.meta_path):
            sys.meta_path.insert(0, _DynamoImportHook())


def _apply_pending() -> None:
    with _lock:
        _fired.append(True)
        marks = list(_pending)
        _pending.clear()
    for mark in marks:
        mark()


class _DynamoImportHook(importlib.abc.MetaPathFinder):
    """Finds ``torch._dynamo`` through the other finders and applies the pending marks
    once its module has run; then leaves ``sys.meta_path`` (and comes back if that
    import fails, for the next one)."""

    _spikeflow_dynamo_hook = True

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != _DYNAMO:
            return None
        with _lock:
            for finder in [f for f in sys.meta_path if _is_hook(f)]:
                sys.meta_path.remove(finder)
        spec = importlib.util.find_spec(fullname)
        loader = None if spec is None else spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            _arm()  # (nothing to wait on: try again at the next import)
            return spec
        run_module = loader.exec_module

        def exec_then_mark(module: ModuleType) -> None:
            try:
                run_module(module)
            except BaseException:
                _arm()  # the import failed: the marks wait for the next one
                raise
            finally:
                if vars(loader).get("exec_module") is exec_then_mark:
                    del loader.exec_module  # (the instance attribute set below)
            _apply_pending()

        loader.exec_module = exec_then_mark  # type: ignore[method-assign]
        return spec
