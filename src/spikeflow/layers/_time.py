"""Helpers shared by the layers: folding time into batch, stepping over time, checks.

Folding is the one convention every sequence layer uses: a multi-step tensor
``[T, B, ...]`` is viewed as a batch of ``T*B`` samples (``x.flatten(0, 1)``), the
per-step layer runs once on it, and the result is viewed back as ``[T, B, ...]``
(``y.unflatten(0, (T, B))``). This equals running the layer on each step separately
for every layer whose output for one sample does not depend on the other samples
(convolution, pooling, ...); batch norm in training mode is the exception: it
normalises with statistics over all ``T*B`` samples.

While a fold runs (eagerly), :func:`current_fold` gives its ``(T, B)``, so that a hook
on a module inside it (the STDP learner's) can view the folded ``[T*B, ...]`` it sees
as ``[T, B, ...]`` again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from spikeflow.base import MemoryModule, StepMode, StepModule
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.neurons.base import check_sequence

__all__ = [
    "STEP_1D",
    "STEP_2D",
    "STEP_3D",
    "as_float_sequence",
    "check_inner_modules",
    "check_step_dims",
    "current_fold",
    "fold_time",
    "run_steps",
    "stepping_memory",
]


def fold_time(fn: Callable[[Tensor], Any], x: Tensor) -> Any:
    """Run ``fn`` on ``x`` (``[T, B, ...]``) with time folded into the batch.

    ``fn`` gets ``[T*B, ...]``; its output (a tensor, or a tuple of tensors such as the
    values and indices of a max pool) is unfolded back to ``[T, B, ...]``.
    """
    steps, batch = x.shape[0], x.shape[1]
    if torch.compiler.is_compiling():  # (compiled code runs no Python hooks to tell)
        return _unfold(fn(x.flatten(0, 1)), steps, batch)
    folds = _folds()
    folds.append((steps, batch))
    try:
        y = fn(x.flatten(0, 1))
    finally:
        folds.pop()
    return _unfold(y, steps, batch)


_local = threading.local()


def _folds() -> list[tuple[int, int]]:
    folds = getattr(_local, "folds", None)
    if folds is None:
        folds = _local.folds = []
    return folds


def current_fold() -> tuple[int, int] | None:
    """``(T, B)`` of the innermost :func:`fold_time` running in this thread (eager
    code only), or None: a module called inside it gets ``[T*B, ...]``."""
    folds = _folds()
    return folds[-1] if folds else None


def _unfold(y: Any, steps: int, batch: int) -> Any:
    if isinstance(y, Tensor):
        if y.dim() == 0 or y.shape[0] != steps * batch:
            raise ShapeError(
                f"a module inside a time fold returned shape {tuple(y.shape)}, whose first "
                f"dimension is not T*B = {steps}*{batch}: only modules that keep the batch "
                "dimension can run on a folded sequence"
            )
        return y.unflatten(0, (steps, batch))
    if isinstance(y, tuple):
        return tuple(_unfold(v, steps, batch) for v in y)
    raise TypeError(f"cannot unfold an output of type {type(y).__name__} back to [T, B, ...]")


def run_steps(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """Call ``fn`` on each step ``x[t]`` of ``x`` (``[T, B, ...]``) and stack the outputs.

    Raises:
        ShapeError: ``x`` has no time steps (the per-step modules never run, so the
            output's shape is unknown).
    """
    if x.shape[0] == 0:
        raise ShapeError(
            f"per-step modules run once per time step, but the sequence has 0 time steps "
            f"(input shape {tuple(x.shape)}); a sequence needs T >= 1"
        )
    return torch.stack([fn(x[t]) for t in range(x.shape[0])])


#: One step of a layer over 1, 2 or 3 spatial dims: ``(layout, (min, max) dims)``, the
#: ``step_layout, step_ndim`` a layer declares and :func:`check_step_dims` takes.
STEP_1D: tuple[str, tuple[int, int | None]] = ("[B, C, L]", (3, 3))
STEP_2D: tuple[str, tuple[int, int | None]] = ("[B, C, H, W]", (4, 4))
STEP_3D: tuple[str, tuple[int, int | None]] = ("[B, C, D, H, W]", (5, 5))


def _dims_text(lo: int, hi: int | None) -> str:
    if hi == lo:
        return f"{lo} dims"
    if hi is None:
        return f"at least {lo} dims"
    if hi == lo + 1:
        return f"{lo} or {hi} dims"
    return f"{lo} to {hi} dims"


def check_step_dims(
    x: Tensor,
    owner: str,
    layout: str,
    step_dims: tuple[int, int | None],
    step_mode: StepMode,
) -> None:
    """Raise a :class:`ShapeError` unless ``x`` has the dims ``owner`` expects.

    Args:
        x: the input.
        owner: the layer's name, used in the message.
        layout: one step's layout, e.g. ``"[B, C, H, W]"`` (shown as ``[T, B, C, H, W]``
            in multi-step mode).
        step_dims: ``(min, max)`` dims of one step (``max`` None: no upper bound).
        step_mode: ``'m'`` (``x`` has a leading time dim) or ``'s'``.
    """
    lo, hi = step_dims
    extra = 1 if step_mode == "m" else 0
    n = x.dim()
    if n >= lo + extra and (hi is None or n <= hi + extra):
        return
    if step_mode == "m":
        shown = layout.replace("[B", "[T, B")
        hint = ""
        if n >= lo and (hi is None or n <= hi):
            hint = " — missing the time dimension? (use step_mode='s' for one step)"
        mode = "multi-step"
    else:
        shown = layout
        hint = ""
        if n - 1 >= lo and (hi is None or n - 1 <= hi):
            hint = " — is this a multi-step [T, B, ...] tensor? (use step_mode='m')"
        mode = "single-step"
    dims = _dims_text(lo + extra, None if hi is None else hi + extra)
    raise ShapeError(
        f"{owner} in {mode} mode expects {shown} ({dims}); got shape {tuple(x.shape)}{hint}"
    )


def as_float_sequence(x: object, owner: str, what: str, step_mode: StepMode) -> Tensor:
    """``x`` as a sequence ``[T, B, ...]``: itself in multi-step mode, the one step
    ``[B, ...]`` as ``[1, B, ...]`` in single-step mode.

    Args:
        x: the input of ``owner``'s forward.
        owner: the layer's name, used in the messages.
        what: what ``owner`` expects, in the dtype message (``"a floating-point input"``).
        step_mode: ``'m'`` or ``'s'``.

    Raises:
        DTypeError: ``x`` is not a floating-point tensor.
        ShapeError: in multi-step mode ``x`` is not ``[T >= 1, B, ...]``; in single-step
            mode it is a scalar.
    """
    if not isinstance(x, Tensor) or not x.is_floating_point():
        found = x.dtype if isinstance(x, Tensor) else type(x).__name__
        raise DTypeError(f"{owner} expects {what}, got {found}")
    if step_mode == "m":
        check_sequence(x, owner)
        return x
    if x.dim() == 0:
        raise ShapeError(f"{owner} in single-step mode expects [B, ...], got a scalar")
    return x.unsqueeze(0)


def _walk(modules: Iterable[nn.Module]) -> Iterator[nn.Module]:
    """Yield the modules and their descendants, not descending into StepModules."""
    for m in modules:
        yield m
        if not isinstance(m, StepModule):
            yield from _walk(m.children())


def check_inner_modules(owner: str, modules: Iterable[nn.Module], stateless: bool) -> None:
    """Check the modules inside a container are per-step modules.

    Modules inside a container see one step ``[B, ...]`` (or a folded ``[T*B, ...]``),
    so spikeflow modules there must be in single-step mode; a container that folds time
    (``stateless``) cannot hold modules with carried state.
    """
    modules = list(modules)
    if stateless:  # every module below, also inside a nested container (_walk stops there)
        for m in (sub for root in modules for sub in root.modules()):
            if isinstance(m, MemoryModule):
                raise ConfigurationError(
                    f"{owner} folds time into the batch, which is only correct for stateless "
                    f"modules, but it holds {type(m).__name__}, which carries state from one "
                    "step to the next; use MultiStepContainer (or StepModeContainer with "
                    "stateless=False) for it"
                )
    for m in _walk(modules):
        if isinstance(m, StepModule) and m.step_mode != "s":
            raise ConfigurationError(
                f"{owner} feeds its modules one step [B, ...] at a time, but "
                f"{type(m).__name__} inside it has step_mode={m.step_mode!r}; create it "
                "with step_mode='s' (the container handles the time dimension)"
            )


@contextmanager
def stepping_memory(modules: Iterable[nn.Module]) -> Iterator[None]:
    """Let single-step memory modules run the steps of one multi-step call.

    Memory modules that are not streaming are reset, switched to streaming for the
    duration of the block and reset again afterwards, so the call starts from the
    initial state and leaves nothing behind. Modules that are already streaming keep
    their state across calls (chunked streaming). Each is told the steps begin and end
    (``MemoryModule._begin_steps``): a neuron computes its parameters once for them.
    """
    stepped = [m for root in modules for m in root.modules() if isinstance(m, MemoryModule)]
    temporary = [m for m in stepped if not m.streaming]
    for m in temporary:
        m.reset()
        m.streaming = True
    for m in stepped:
        m._begin_steps()
    try:
        yield
    finally:
        for m in stepped:
            m._end_steps()
        for m in temporary:
            m.streaming = False
            m.reset()
