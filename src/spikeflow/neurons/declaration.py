"""The declaration of a neuron model: its equations, written once.

A neuron model is declared by plain Python functions of elementwise ``torch`` code:

``charge(x, v, *aux, **params)``
    The charge equation. ``x`` is the input of one step, ``v`` the membrane potential
    after the previous reset, ``aux`` any further state variables (for example an
    adaptation current). Returns ``H`` (the charged membrane), or ``(H, *aux_new)`` when
    it also advances the auxiliary state before firing (for example a synaptic current).
    Parameters are keyword-only arguments, so every one of them has a name.

``update(h, s, *aux, **params)`` (optional)
    Advances the auxiliary state after firing, given the charged membrane ``h`` and the
    spikes ``s`` (for example Izhikevich's ``W += b * S``). Returns the new ``aux``
    (one tensor, or a tuple in the order of ``aux``).

``threshold(theta, *aux, **params)`` (optional)
    The effective threshold of this step, for neurons whose threshold depends on their
    auxiliary state (for example an adaptive LIF's ``theta + beta * a``). ``theta`` is
    the module's ``v_threshold`` and ``aux`` the auxiliary state as the fire rule sees
    it (after ``charge``, before ``update``). The result replaces ``θ`` in the fire rule
    *and* in the soft reset (``V = H - θ_eff S``).

``reset_membrane(h, s, theta, *aux, **params)`` (optional)
    The membrane after firing, for neurons whose reset is neither of the shared rules
    (for example CLIF's ``V = H - S (θ + sigmoid(M))``, whose complementary potential
    ``M`` already counts this step's spike). ``theta`` is the effective threshold of
    the step, ``aux`` the auxiliary state *after* ``update`` (the state the step ends
    with) and ``s`` the spike, detached when the module's ``detach_reset`` is set. The
    result replaces both shared reset rules; ``v_reset`` then only sets where the
    membrane starts.

``fire(h, theta, spike, *aux, **params)`` (optional)
    The firing rule, for neurons that do not fire by one ``Θ(H - θ)``: returns the
    output ``S`` of the step from the charged membrane ``h``, the step's threshold
    ``theta`` (after ``threshold``) and ``aux`` (as ``threshold`` sees it). ``spike(u)``
    is the module's spike function, ``Θ(u)`` with the surrogate's derivative (``Θ(0)``
    is 1, or 0 with ``strict_firing``; the surrogate's smooth primitive when it is built
    with ``spiking=False``), which it may call on any number of expressions, each
    differentiated by the surrogate at its own argument: a ternary neuron's
    ``spike(h - theta) - spike(-h - theta)``. It may return ``(S, R)``: ``R`` is the
    hard reset's event (``V = H (1 - R) + V_r R``), when that is not ``S`` itself (the
    ternary neuron's ``|S|``, with the gradient of both events). The soft reset
    subtracts ``θ S``; ``detach_reset`` detaches the event a reset uses; ``update`` and
    ``reset_membrane`` receive ``S`` (a declaration with ``reset_membrane`` returns
    ``S`` alone: its reset is its own).

Firing (``S = Θ(H - θ)`` with a surrogate gradient) and reset (hard to ``v_reset`` or
soft by subtraction) are shared rules configured on the module, not re-declared
(unless a neuron declares ``fire`` or ``reset_membrane``).

Only elementwise arithmetic and ``torch`` math functions may appear in these functions
(no in-place ops, no reductions, no data-dependent Python branching), which is what lets
a code generator trace them symbolically and emit fused CPU/GPU kernels from the same
source the reference loop runs.
"""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

from spikeflow.errors import ConfigurationError

__all__ = ["NeuronDeclaration", "declare"]


@dataclass(frozen=True)
class NeuronDeclaration:
    """The equations of one neuron model (see the module docstring).

    Attributes:
        name: a readable name (used in generated code and error messages).
        charge: the charge function.
        update: the post-spike update of auxiliary state, or ``None``.
        state_names: the state variables, membrane ``v`` first.
        charge_params: names of the keyword parameters of ``charge``.
        update_params: names of the keyword parameters of ``update``.
        charge_returns_aux: whether ``charge`` returns ``(H, *aux)`` instead of ``H``.
        threshold: the effective-threshold function, or ``None`` (the threshold is
            ``v_threshold`` itself).
        threshold_params: names of the keyword parameters of ``threshold``.
        reset_membrane: the reset function, or ``None`` (the shared hard/soft rule).
        reset_params: names of the keyword parameters of ``reset_membrane``.
        fire: the firing rule, or ``None`` (the shared ``S = Θ(H - θ)``).
        fire_params: names of the keyword parameters of ``fire``.
        aux_names: the state variables other than the membrane ``v`` (derived).
        param_names: every parameter the functions take (charge, update, threshold,
            fire, reset_membrane), in first-use order (derived).
    """

    name: str
    charge: Callable[..., object]
    update: Callable[..., object] | None
    state_names: tuple[str, ...]
    charge_params: tuple[str, ...]
    update_params: tuple[str, ...]
    charge_returns_aux: bool = False
    threshold: Callable[..., object] | None = None
    threshold_params: tuple[str, ...] = ()
    reset_membrane: Callable[..., object] | None = None
    reset_params: tuple[str, ...] = ()
    fire: Callable[..., object] | None = None
    fire_params: tuple[str, ...] = ()
    # Derived fields, not properties: under torch.compile a declaration is a constant
    # of the graph, whose plain attributes Dynamo reads but whose properties it cannot.
    aux_names: tuple[str, ...] = field(init=False, repr=False, compare=False)
    param_names: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = list(self.charge_params)
        groups = (self.update_params, self.threshold_params, self.fire_params,
                  self.reset_params)  # fmt: skip
        for group in groups:
            names += [p for p in group if p not in names]
        object.__setattr__(self, "aux_names", self.state_names[1:])
        object.__setattr__(self, "param_names", tuple(names))

    def charged(self, out: object) -> tuple[object, tuple | None]:
        """``charge``'s result as ``(H, aux)``: ``aux`` the new auxiliary state when
        ``charge_returns_aux`` (checked: one value per auxiliary state), else ``None``."""
        if not self.charge_returns_aux:
            if isinstance(out, (tuple, list)):
                raise ConfigurationError(
                    f"{self.name}.charge returned {len(out)} values, but the neuron does not "
                    "set charge_returns_aux = True: return H alone, or set the class "
                    "attribute charge_returns_aux = True and return (H, "
                    f"{', '.join(self.aux_names) or '*aux'}), the auxiliary state after charge"
                )
            return out, None
        values = _as_values(out)
        if len(values) != 1 + len(self.aux_names):
            raise ConfigurationError(
                f"{self.name}.charge returns (H, *aux) (charge_returns_aux) and must return "
                f"{1 + len(self.aux_names)} values (H, {', '.join(self.aux_names)}); it "
                f"returned {len(values)}"
            )
        return values[0], values[1:]

    def fired(self, out: object) -> tuple[object, object | None]:
        """``fire``'s result as ``(S, R)``: ``R`` the hard reset's event, or ``None``
        when ``fire`` returned ``S`` alone (checked: one or two values, two only without
        ``reset_membrane``)."""
        values = _as_values(out)
        if len(values) not in (1, 2):
            raise ConfigurationError(
                f"{self.name}.fire must return the output S, or (S, R) with R the hard "
                f"reset's event; it returned {len(values)} values"
            )
        if len(values) == 2 and self.reset_membrane is not None:
            raise ConfigurationError(
                f"{self.name}.fire returns a reset event (S, R), but the neuron declares "
                "reset_membrane, which receives S and resets by its own rule: return S "
                "alone"
            )
        return values[0], (values[1] if len(values) == 2 else None)

    def updated(self, out: object) -> tuple:
        """``update``'s result as the new auxiliary state (checked: one value per
        auxiliary state; a single one may be returned bare)."""
        values = _as_values(out)
        if len(values) != len(self.aux_names):
            raise ConfigurationError(
                f"{self.name}.update must return the new auxiliary state "
                f"({', '.join(self.aux_names)}): {len(self.aux_names)} value(s); it "
                f"returned {len(values)}"
            )
        return values


def _as_values(out: object) -> tuple:
    """An equation's result as a tuple of values (a single value may be returned bare)."""
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def _split_signature(
    fn: Callable[..., object], leading: tuple[str, ...], where: str
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Return (positional names after ``leading``, keyword-only names) of ``fn``."""
    sig = inspect.signature(fn)
    positional: list[str] = []
    keyword: list[str] = []
    for p in sig.parameters.values():
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            positional.append(p.name)
        elif p.kind is p.KEYWORD_ONLY:
            keyword.append(p.name)
        else:
            raise ConfigurationError(
                f"{where}: *args/**kwargs are not allowed; declare every state variable "
                f"as a positional argument and every parameter as keyword-only "
                f"(after a bare *), got signature {sig}"
            )
    if tuple(positional[: len(leading)]) != leading:
        raise ConfigurationError(
            f"{where} must start with the positional arguments {leading}; got signature {sig}"
        )
    return tuple(positional[len(leading) :]), tuple(keyword)


#: At most this many objects are unwrapped per function (a cycle of ``__wrapped__``
#: attributes ends there).
_MAX_WRAPPERS = 256


def functions_behind(fn: object) -> Iterator[types.FunctionType]:
    """The Python functions behind ``fn``: a bound method's, a ``functools.partial``'s
    and a decorated function's (``__wrapped__``) too."""
    # Functions are deduplicated by id; a bound method is not (it is a new object at
    # each attribute read, which Dynamo, guarding on its id, would never match again).
    seen: set[int] = set()
    stack = [fn]
    for _ in range(_MAX_WRAPPERS):
        if not stack:
            return
        f = stack.pop()
        if f is None:
            continue
        if isinstance(f, types.FunctionType):
            if id(f) in seen:
                continue
            seen.add(id(f))
            yield f
        stack += [getattr(f, "__func__", None), getattr(f, "__wrapped__", None)]
        if isinstance(f, functools.partial):
            stack.append(f.func)


#: Keyed by the functions; each entry keeps the code objects it was built from, so a
#: function whose ``__code__`` was replaced in place (IPython's autoreload), which may
#: change its signature, is declared again.
_DECLARATIONS: dict[tuple, tuple[tuple, NeuronDeclaration]] = {}


def declare(
    charge: Callable[..., object],
    update: Callable[..., object] | None = None,
    name: str | None = None,
    charge_returns_aux: bool = False,
    threshold: Callable[..., object] | None = None,
    reset_membrane: Callable[..., object] | None = None,
    fire: Callable[..., object] | None = None,
) -> NeuronDeclaration:
    """Build (and cache) the :class:`NeuronDeclaration` of a charge/update pair.

    The state variables are read from ``charge``'s positional arguments after ``x``
    (the first must be ``v``); parameters from its keyword-only arguments. ``threshold``
    (optional) gives the effective threshold from ``theta`` and the auxiliary state;
    ``reset_membrane`` (optional) the membrane after firing, in place of the shared
    reset rules; ``fire`` (optional) the output from the charged membrane, in place of
    the shared ``Θ(H - θ)`` (see the module docstring).

    Raises:
        ConfigurationError: a function whose signature does not follow the declaration
            rules (the message names it).
    """
    if torch.compiler.is_compiling():
        # Dynamo traces the build (reading signatures), not the cache: a dict filled
        # while tracing would differ between its analysis passes.
        return _build(charge, update, name, charge_returns_aux, threshold, reset_membrane, fire)
    return cached_declaration(charge, update, name, charge_returns_aux, threshold, reset_membrane,
                              fire)  # fmt: skip


def cached_declaration(
    charge: Callable[..., object],
    update: Callable[..., object] | None = None,
    name: str | None = None,
    charge_returns_aux: bool = False,
    threshold: Callable[..., object] | None = None,
    reset_membrane: Callable[..., object] | None = None,
    fire: Callable[..., object] | None = None,
) -> NeuronDeclaration:
    """:func:`declare`'s cache itself, also for code that runs while Dynamo traces."""
    key = (charge, update, name, charge_returns_aux, threshold, reset_membrane, fire)
    codes = _codes((charge, update, threshold, reset_membrane, fire))
    cached = _DECLARATIONS.get(key)
    if (
        cached is None
        or len(cached[0]) != len(codes)
        or any(a is not b for a, b in zip(cached[0], codes))
    ):
        cached = _DECLARATIONS[key] = (codes, _build(*key))
    return cached[1]


def _codes(fns: tuple[Callable[..., object] | None, ...]) -> tuple[types.CodeType, ...]:
    """The code of every function behind ``fns`` (a partial's, a decorated one's)."""
    codes: list[types.CodeType] = []
    for fn in fns:
        if type(fn) is types.FunctionType and "__wrapped__" not in fn.__dict__:
            codes.append(fn.__code__)  # the common case, without the walk
        elif fn is not None:
            codes.extend(f.__code__ for f in functions_behind(fn))
    return tuple(codes)


def _build(
    charge: Callable[..., object],
    update: Callable[..., object] | None,
    name: str | None,
    charge_returns_aux: bool,
    threshold: Callable[..., object] | None,
    reset_membrane: Callable[..., object] | None = None,
    fire: Callable[..., object] | None = None,
) -> NeuronDeclaration:
    label = name or getattr(charge, "__qualname__", "charge")
    aux_and_v, charge_params = _split_signature(charge, ("x", "v"), f"{label}: charge")
    state_names = ("v", *aux_and_v)
    update_params: tuple[str, ...] = ()
    if update is not None:
        upd_aux, update_params = _split_signature(update, ("h", "s"), f"{label}: update")
        if upd_aux != state_names[1:]:
            raise ConfigurationError(
                f"{label}: update must take the auxiliary state {state_names[1:]} after "
                f"(h, s), in the order charge declares it; got {upd_aux}"
            )
    elif len(state_names) > 1 and not charge_returns_aux:
        raise ConfigurationError(
            f"{label}: auxiliary state {state_names[1:]} is never advanced: give an "
            "update function or let charge return (H, *aux)"
        )
    threshold_params: tuple[str, ...] = ()
    if threshold is not None:
        thr_aux, threshold_params = _split_signature(threshold, ("theta",), f"{label}: threshold")
        if thr_aux != state_names[1:]:
            raise ConfigurationError(
                f"{label}: threshold must take the auxiliary state {state_names[1:]} after "
                f"theta, in the order charge declares it; got {thr_aux}"
            )
    reset_params: tuple[str, ...] = ()
    if reset_membrane is not None:
        where = f"{label}: reset_membrane"
        rst_aux, reset_params = _split_signature(reset_membrane, ("h", "s", "theta"), where)
        if rst_aux != state_names[1:]:
            raise ConfigurationError(
                f"{label}: reset_membrane must take the auxiliary state {state_names[1:]} "
                f"after (h, s, theta), in the order charge declares it; got {rst_aux}"
            )
    fire_params: tuple[str, ...] = ()
    if fire is not None:
        fire_aux, fire_params = _split_signature(fire, ("h", "theta", "spike"), f"{label}: fire")
        if fire_aux != state_names[1:]:
            raise ConfigurationError(
                f"{label}: fire must take the auxiliary state {state_names[1:]} after "
                f"(h, theta, spike), in the order charge declares it; got {fire_aux}"
            )
    return NeuronDeclaration(
        name=label,
        charge=charge,
        update=update,
        state_names=state_names,
        charge_params=charge_params,
        update_params=update_params,
        charge_returns_aux=charge_returns_aux,
        threshold=threshold,
        threshold_params=threshold_params,
        reset_membrane=reset_membrane,
        reset_params=reset_params,
        fire=fire,
        fire_params=fire_params,
    )
