"""Explicit-state calls (:meth:`spikeflow.base.MemoryModule.run`,
:func:`spikeflow.functional.run`): run modules from a given state and collect the state
each kept, without touching their own carried state."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from torch import Tensor

from spikeflow.errors import ConfigurationError, StateError

if TYPE_CHECKING:
    from spikeflow.base import MemoryModule


class _ExplicitState:
    """A module's state during an explicit-state call (:meth:`MemoryModule.run`,
    :func:`spikeflow.functional.run`): where its calls start (the given state, then
    each call's end, as streaming would carry it), what the last call kept, and the
    shape of one step its last call checked the state against (``step_shape``: the
    state's trailing dims, the batch first, as :meth:`MemoryModule._check_state_fits`
    reads them)."""

    __slots__ = ("current", "final", "step_shape")

    def __init__(self, given: dict[str, Tensor] | None) -> None:
        self.current = given
        self.final: dict[str, Tensor] | None = None
        self.step_shape: tuple[int, ...] | None = None


def check_state_device(state: Mapping[str, Tensor] | None, x: Any, what: str) -> None:
    """A StateError starting with ``what`` naming the first tensor of ``state`` on
    another device than ``x`` (when ``x`` is a tensor)."""
    if state is None or not isinstance(x, Tensor):
        return
    for name, value in state.items():
        if value.device != x.device:
            raise StateError(
                f"{what} '{name}' is on device {value.device} but the input is on "
                f"{x.device}: move the state with the input (.to(device))"
            )


def check_state(state: object, what: str) -> dict[str, Tensor] | None:
    """``state`` (None, or a mapping of names to tensors) as a dict, else a
    ConfigurationError starting with ``what``."""
    if state is None:
        return None
    if not (
        isinstance(state, Mapping)
        and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items())
    ):
        raise ConfigurationError(
            f"{what} must be None or a mapping of names to tensors (what the last run "
            f"returned), got {type(state).__name__}"
        )
    return dict(state)


def run_explicit(
    modules: dict[str, MemoryModule],
    given: dict[str, dict[str, Tensor] | None],
    call: Callable[[], Any],
    step_shapes: dict[str, tuple[int, ...] | None] | None = None,
) -> tuple[Any, dict[str, dict[str, Tensor]]]:
    """Run ``call()`` with each of ``modules`` starting from its ``given`` state (None:
    the initial one) and carrying it from call to call, without touching the modules'
    own carried state: the output and the state each module kept (by name).
    ``step_shapes``, a dict, receives for each module that kept a state the shape of
    one step of its last call (None where the module did not say), which places the
    samples in its state tensors (:mod:`spikeflow.inference`).

    Raises:
        StateError: a module already in an explicit-state call, a given state missing
            or adding a variable to the module's.
    """
    busy = [name or type(m).__name__ for name, m in modules.items() if m.__dict__.get("_explicit")]
    if busy:
        raise StateError(f"run: {', '.join(busy)} called inside its own run()")
    slots = {name: _ExplicitState(given.get(name)) for name in modules}
    for name, module in modules.items():
        module.__dict__["_explicit"] = slots[name]
    try:
        output = call()
    except KeyError as exc:
        key = exc.args[0] if exc.args else None
        for name, state in given.items():
            if state is not None and key not in state:
                label = name or type(modules[name]).__name__
                raise StateError(
                    f"run: the state given for {label} has {sorted(state)} but not "
                    f"{key!r}, which its state holds"
                ) from exc
        raise
    finally:
        for module in modules.values():
            module.__dict__.pop("_explicit", None)
    final = {name: slot.final for name, slot in slots.items() if slot.final is not None}
    if step_shapes is not None:
        step_shapes.update({name: slots[name].step_shape for name in final})
    for name, state in given.items():
        kept = final.get(name)
        label = name or type(modules[name]).__name__
        if state and kept is None:
            raise StateError(
                f"run: {label} was given a state but kept none (it was not called, or "
                "this call keeps no state, as dropout in eval mode)"
            )
        if state is not None and kept is not None and set(state) != set(kept):
            raise StateError(
                f"run: the state given for {label} has {sorted(state)}, its state {sorted(kept)}"
            )
    return output, final
