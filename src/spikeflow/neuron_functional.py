"""Stateless neuron functions: one step or a whole sequence of a declared neuron as a
pure function of its input, state and parameters (SpikingJelly's
``functional.lif_step`` / ``*_multi_step``, Norse's ``functional.*_step``).

Each call builds the neuron module from its arguments and runs it through
:meth:`~spikeflow.base.MemoryModule.run` under :func:`torch.func.functional_call`: the
equations are the module's declaration (no second copy here), ``multi_step`` uses the
fused kernels wherever the module would (the same ``backend`` selection), and a tensor
given for one of the module's parameters or tensor buffers (``tau``, ``w``,
``v_threshold``, ...) is swapped in as it is, so gradients flow to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from spikeflow.base import MemoryModule
from spikeflow.errors import ConfigurationError, ShapeError

__all__ = [
    "if_multi_step",
    "if_step",
    "lif_feed_forward_step",
    "lif_multi_step",
    "lif_step",
    "neuron_multi_step",
    "neuron_step",
    "plif_multi_step",
    "plif_step",
]


def _neuron_class(neuron: str | type[nn.Module]) -> Any:
    """The class (or factory) ``neuron`` names: a zoo name (``"lif"``, ``"plif"``, as in
    ``--neuron``) or a class name of :mod:`spikeflow.neurons` (``"LIFNode"``)."""
    if not isinstance(neuron, str):
        return neuron
    from spikeflow import neurons
    from spikeflow.models.common import NEURONS

    if neuron in NEURONS:
        return NEURONS[neuron]
    found = getattr(neurons, neuron, None)
    if isinstance(found, type) and issubclass(found, MemoryModule):
        return found
    raise ConfigurationError(
        f"neuron {neuron!r} is neither a zoo name ({', '.join(sorted(NEURONS))}) nor a "
        "neuron class of spikeflow.neurons (e.g. 'LIFNode')"
    )


def _build(factory: Any, params: dict[str, Any]) -> tuple[Any, list[str]]:
    """``factory(**params)``, leaving out the tensors it takes no argument for (PLIF's
    ``w``, a parameter the constructor initialises: only swapped in), and their names.
    Any other argument the constructor rejects raises :class:`ConfigurationError`."""
    kwargs = dict(params)
    while True:
        try:
            return factory(**kwargs), [k for k in params if k not in kwargs]
        except TypeError as error:
            rejected = [
                k
                for k, v in kwargs.items()
                if isinstance(v, Tensor) and f"unexpected keyword argument '{k}'" in str(error)
            ]
            if not rejected:  # a misspelt or missing argument (PSN's T): name the neuron
                name = getattr(factory, "__name__", repr(factory))
                raise ConfigurationError(
                    f"{name} could not be built from params {sorted(kwargs)}: {error}"
                ) from error
            del kwargs[rejected[0]]


def neuron_module(
    neuron: str | type[nn.Module] | MemoryModule, **params: Any
) -> tuple[MemoryModule, dict[str, Tensor]]:
    """The module a functional call runs, and the tensors to swap into it.

    ``neuron`` is a module (used as it is; ``params`` then only swap its parameters and
    tensor buffers), a neuron class, or a name (:func:`_neuron_class`). For a class or
    name, ``params`` are its constructor's arguments, and those given as tensors that
    the module keeps as a parameter or tensor buffer of the same name (``tau``,
    ``v_threshold``, ``tau_syn``, ...) are swapped in as given (the constructor keeps a
    detached copy), so the gradient reaches the caller's tensor.

    Raises:
        ConfigurationError: an unknown name, a ``params`` key that names neither a
            parameter nor a tensor buffer of a given module, a tensor the constructor
            takes no argument for and the module keeps under no such name, or a tensor
            requiring a gradient the module keeps under no such name (``init_tau``).
    """
    if isinstance(neuron, nn.Module):
        if not isinstance(neuron, MemoryModule):
            raise ConfigurationError(
                f"neuron must be a spikeflow neuron module, got {type(neuron).__name__}"
            )
        tensors = dict(neuron.named_parameters()) | dict(neuron.named_buffers())
        unknown = [k for k in params if k not in tensors or not isinstance(params[k], Tensor)]
        if unknown:
            raise ConfigurationError(
                f"{type(neuron).__name__}: params {unknown} are not tensors for its "
                f"parameters or buffers ({', '.join(tensors) or 'none'}); pass a class or "
                "name to set constructor arguments"
            )
        return neuron, dict(params)
    factory = _neuron_class(neuron)
    rng_before = torch.random.get_rng_state()
    module, left_out = _build(factory, params)
    if not isinstance(module, MemoryModule):
        raise ConfigurationError(
            f"neuron {neuron!r} built a {type(module).__name__}, not a stateful spikeflow "
            "neuron (MemoryModule): a parallel or sequence-only neuron (PSN, DSR-IF) carries "
            "no state between calls; call the module on the whole sequence"
        )
    tensors = dict(module.named_parameters(recurse=False)) | dict(
        module.named_buffers(recurse=False)
    )
    swapped = {k: v for k, v in params.items() if isinstance(v, Tensor) and k in tensors}
    if not torch.equal(rng_before, torch.random.get_rng_state()):
        _refuse_redrawn(factory, params, module, swapped)
    lost = [k for k, v in params.items() if isinstance(v, Tensor) and v.requires_grad]
    lost = [k for k in lost + left_out if k not in swapped]
    if lost:
        raise ConfigurationError(
            f"{type(module).__name__}: params {lost} are neither constructor arguments "
            "nor, for tensors requiring a gradient, a parameter or tensor buffer of that "
            f"name to swap them in for (it has {', '.join(tensors) or 'none'})"
        )
    return module, swapped


def _refuse_redrawn(
    factory: Any, params: dict[str, Any], module: MemoryModule, swapped: dict[str, Tensor]
) -> None:
    """Raise if the constructor drew tensors at random (AdLIF's ``alpha``, BRF's
    ``omega``) that are not swapped in: each call builds a fresh module, so they would be
    redrawn every call. Found by building once more from another generator state."""
    with torch.random.fork_rng(devices=[]):  # the caller's generator is left as it is
        other, _ = _build(factory, params)
    mine = dict(module.named_parameters()) | dict(module.named_buffers())
    theirs = dict(other.named_parameters()) | dict(other.named_buffers())
    drawn = [k for k, t in mine.items() if k not in swapped and not torch.equal(t, theirs[k])]
    if drawn:
        raise ConfigurationError(
            f"{type(module).__name__} draws {drawn} at random when built, and each "
            "functional call builds a fresh module, so they would be redrawn every call: "
            "pass them as tensors, or pass a module instance (its tensors are kept)"
        )


class _Runner(nn.Module):
    """Holds the neuron as a child so that :func:`torch.func.functional_call` can swap
    its tensors for one ``run`` call (the module keeps its own)."""

    def __init__(self, neuron: MemoryModule) -> None:
        super().__init__()
        self.neuron = neuron

    def forward(
        self, x: Tensor, state: Mapping[str, Tensor] | None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        return self.neuron.run(x, state)


def _swap_call(
    module: MemoryModule,
    swapped: dict[str, Tensor],
    x: Tensor,
    state: Mapping[str, Tensor] | None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """``module.run(x, state)`` with ``swapped`` in place of its tensors of those names."""
    if not swapped:
        return module.run(x, state)
    runner = _Runner(module)
    named = {f"neuron.{k}": v for k, v in swapped.items()}
    return torch.func.functional_call(runner, named, (x, state), strict=False)


def step(
    neuron: str | type[nn.Module] | MemoryModule,
    x: Tensor,
    state: Mapping[str, Tensor] | None = None,
    **params: Any,
) -> tuple[Tensor, dict[str, Tensor]]:
    """One time step of a neuron as a pure function: ``(spikes, new_state)``.

    Args:
        neuron: a zoo name (``"lif"``), a class of :mod:`spikeflow.neurons`, or a
            neuron module.
        x: the input of one step, ``[B, ...]``.
        state: the state by name (``{"v": v}``; ``{"v": v, "i": i}`` for a current-based
            neuron), or None for the initial state. Left unchanged.
        **params: the constructor's arguments (tensors allowed, and differentiable,
            where the module takes them), or for a module the tensors to swap in.

    Returns:
        The step's output and the state after it (what the next step takes).

    Raises:
        ConfigurationError: a bad neuron, parameter or state (the message names it).
        ShapeError: ``step_mode`` given other than ``"s"`` (use :func:`multi_step`). A
            ``[T, B, ...]`` tensor cannot be told from a ``[B, ...]`` one: it runs as one
            step over a larger batch.
    """
    if not isinstance(x, Tensor):
        raise ConfigurationError(f"step: x must be a tensor, got {type(x).__name__}")
    module, swapped = neuron_module(neuron, **params)
    if "step_mode" in params and params["step_mode"] != "s":
        raise ShapeError("step runs one step: leave step_mode out (multi_step for sequences)")
    previous = module.step_mode
    module.step_mode = "s"
    try:
        return _swap_call(module, swapped, x, state)
    finally:
        module.step_mode = previous


def multi_step(
    neuron: str | type[nn.Module] | MemoryModule,
    x_seq: Tensor,
    state: Mapping[str, Tensor] | None = None,
    **params: Any,
) -> tuple[Tensor, dict[str, Tensor]]:
    """A whole sequence ``[T, B, ...]`` through a neuron as a pure function:
    ``(spikes_seq, final_state)``, on the fused kernels wherever the module would run
    them (``backend=`` as the module's). Arguments as :func:`step`.

    Raises:
        ConfigurationError: a bad neuron, parameter or state.
        ShapeError: ``x_seq`` without a time dimension.
    """
    if not isinstance(x_seq, Tensor):
        raise ConfigurationError(f"multi_step: x_seq must be a tensor, got {type(x_seq).__name__}")
    if x_seq.dim() < 2:
        raise ShapeError(
            f"multi_step: x_seq must be [T, B, ...] (at least 2 dims), got shape "
            f"{tuple(x_seq.shape)}"
        )
    module, swapped = neuron_module(neuron, **params)
    previous = module.step_mode
    module.step_mode = "m"
    try:
        return _swap_call(module, swapped, x_seq, state)
    finally:
        module.step_mode = previous


# -- SpikingJelly's names and argument order (spikingjelly.activation_based.functional) --


def _initial_v(v: Tensor | float, like: Tensor, owner: str) -> dict[str, Tensor]:
    if isinstance(v, Tensor):
        return {"v": v}
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConfigurationError(f"{owner}: v must be a tensor or a number, got {v!r}")
    return {"v": torch.full_like(like, float(v))}


def _sj_step(
    neuron: str, x: Tensor, v: Tensor | float, params: dict[str, Any], owner: str
) -> tuple[Tensor, Tensor]:
    spike, new = step(neuron, x, _initial_v(v, x, owner), **params)
    return spike, new["v"]


def _sj_multi_step(
    neuron: str,
    x_seq: Tensor,
    v: Tensor | float,
    params: dict[str, Any],
    store_v_seq: bool,
    owner: str,
) -> tuple[Tensor, Tensor, Tensor | None]:
    if not isinstance(x_seq, Tensor) or x_seq.dim() < 2:
        raise ShapeError(f"{owner}: x_seq must be a tensor [T, B, ...]")
    module, swapped = neuron_module(neuron, store_v_seq=store_v_seq, **params)
    spikes, final = multi_step(module, x_seq, _initial_v(v, x_seq[0], owner), **swapped)
    return spikes, final["v"], (module.v_seq if store_v_seq else None)


def if_step(
    x: Tensor,
    v: Tensor | float,
    v_threshold: float | Tensor,
    v_reset: float | None,
    surrogate_function: Any = None,
    detach_reset: bool = False,
) -> tuple[Tensor, Tensor]:
    """SpikingJelly's ``if_step``: one IF step, ``(spike, v_next)`` (``IFNode``)."""
    params = {"v_threshold": v_threshold, "v_reset": v_reset, "detach_reset": detach_reset}
    params["surrogate_function"] = surrogate_function
    return _sj_step("if", x, v, params, "if_step")


def lif_step(
    x: Tensor,
    v: Tensor | float,
    tau: float | Tensor,
    decay_input: bool,
    v_threshold: float | Tensor,
    v_reset: float | None,
    surrogate_function: Any = None,
    detach_reset: bool = False,
) -> tuple[Tensor, Tensor]:
    """SpikingJelly's ``lif_step``: one LIF step, ``(spike, v_next)`` (``LIFNode``)."""
    params = {
        "tau": tau, "decay_input": decay_input, "v_threshold": v_threshold,
        "v_reset": v_reset, "surrogate_function": surrogate_function,
        "detach_reset": detach_reset,
    }  # fmt: skip
    return _sj_step("lif", x, v, params, "lif_step")


def plif_step(
    x: Tensor,
    v: Tensor | float,
    w: Tensor,
    decay_input: bool,
    v_threshold: float | Tensor,
    v_reset: float | None,
    surrogate_function: Any = None,
    detach_reset: bool = False,
) -> tuple[Tensor, Tensor]:
    """SpikingJelly's ``plif_step``: one parametric-LIF step with ``1/tau = sigmoid(w)``,
    ``(spike, v_next)`` (``ParametricLIFNode`` with ``w`` swapped in)."""
    module, swapped = neuron_module(
        "plif", decay_input=decay_input, v_threshold=v_threshold, v_reset=v_reset,
        surrogate_function=surrogate_function, detach_reset=detach_reset,
    )  # fmt: skip
    spike, new = step(module, x, _initial_v(v, x, "plif_step"), w=w, **swapped)
    return spike, new["v"]


def if_multi_step(
    x_seq: Tensor,
    v: Tensor | float,
    v_threshold: float | Tensor = 1.0,
    v_reset: float | None = 0.0,
    surrogate_function: Any = None,
    detach_reset: bool = False,
    store_v_seq: bool = False,
    *,
    backend: str = "auto",
) -> tuple[Tensor, Tensor, Tensor | None]:
    """SpikingJelly's ``if_multi_step``: ``(spike_seq, v_final, v_seq or None)``."""
    params = {
        "v_threshold": v_threshold, "v_reset": v_reset,
        "surrogate_function": surrogate_function, "detach_reset": detach_reset,
        "backend": backend,
    }  # fmt: skip
    return _sj_multi_step("if", x_seq, v, params, store_v_seq, "if_multi_step")


def lif_multi_step(
    x_seq: Tensor,
    v: Tensor | float,
    tau: float | Tensor = 2.0,
    decay_input: bool = True,
    v_threshold: float | Tensor = 1.0,
    v_reset: float | None = 0.0,
    surrogate_function: Any = None,
    detach_reset: bool = False,
    store_v_seq: bool = False,
    *,
    backend: str = "auto",
) -> tuple[Tensor, Tensor, Tensor | None]:
    """SpikingJelly's ``lif_multi_step``: ``(spike_seq, v_final, v_seq or None)``."""
    params = {
        "tau": tau, "decay_input": decay_input, "v_threshold": v_threshold,
        "v_reset": v_reset, "surrogate_function": surrogate_function,
        "detach_reset": detach_reset, "backend": backend,
    }  # fmt: skip
    return _sj_multi_step("lif", x_seq, v, params, store_v_seq, "lif_multi_step")


def plif_multi_step(
    x_seq: Tensor,
    v: Tensor | float,
    w: Tensor,
    decay_input: bool = True,
    v_threshold: float | Tensor = 1.0,
    v_reset: float | None = 0.0,
    surrogate_function: Any = None,
    detach_reset: bool = False,
    store_v_seq: bool = False,
    *,
    backend: str = "auto",
) -> tuple[Tensor, Tensor, Tensor | None]:
    """SpikingJelly's ``plif_multi_step`` (``1/tau = sigmoid(w)``):
    ``(spike_seq, v_final, v_seq or None)``."""
    params = {
        "w": w, "decay_input": decay_input, "v_threshold": v_threshold,
        "v_reset": v_reset, "surrogate_function": surrogate_function,
        "detach_reset": detach_reset, "backend": backend,
    }  # fmt: skip
    return _sj_multi_step("plif", x_seq, v, params, store_v_seq, "plif_multi_step")


# -- Norse's lif_feed_forward_step (norse.torch.functional.lif) ---------------------------

#: Norse's ``method`` names and the surrogate each one is (docs/migration.md, Norse).
_NORSE_METHODS = {
    "super": "SuperSpike",
    "tanh": "HeaviTanh",
    "triangle": "NorseTriangle",
    "heavi_erfc": "HeaviErfc",
    "circ": "HeaviCirc",
}


def _norse_surrogate(method: str, alpha: Any) -> Any:
    from spikeflow import surrogate

    if method not in _NORSE_METHODS:
        raise ConfigurationError(
            f"lif_feed_forward_step: p.method {method!r} has no surrogate here; use one of "
            f"{', '.join(_NORSE_METHODS)}"
        )
    if method == "super":  # Norse's SuperSpike backward is 1/(|x| + 1)^2 whatever alpha
        return surrogate.SuperSpike(alpha=1.0)
    return getattr(surrogate, _NORSE_METHODS[method])(alpha=float(alpha))


def _field(obj: Any, name: str, owner: str) -> Any:
    if isinstance(obj, Mapping):
        if name in obj:
            return obj[name]
    elif hasattr(obj, name):
        return getattr(obj, name)
    raise ConfigurationError(f"lif_feed_forward_step: {owner} has no field {name!r}")


def lif_feed_forward_step(
    input_tensor: Tensor, state: Any, p: Any, dt: float = 1e-3
) -> tuple[Tensor, dict[str, Tensor]]:
    """Norse's ``lif_feed_forward_step(input_tensor, state, p, dt)``: one step of its
    current-based LIF, ``(z, {"v": v, "i": i})`` in Norse's units, run by
    ``CubaLIFNode(tau_syn=1/p.tau_syn_inv, tau_mem=1/p.tau_mem_inv, r="tau_syn", ...,
    strict_firing=True)``.

    ``state`` has Norse's fields ``v`` and ``i`` (its ``LIFFeedForwardState``, or a
    mapping); ``p`` has ``LIFParameters``' fields (``tau_syn_inv``, ``tau_mem_inv``,
    ``v_leak``, ``v_th``, ``v_reset``, ``method``, ``alpha``). Tensors among
    ``tau_syn_inv``, ``tau_mem_inv`` and ``v_th`` that require a gradient get one.
    Norse's stored current is spikeflow's ``i`` times ``(1 - k) / k``, ``k = dt·tau_syn_inv``.

    Raises:
        ConfigurationError: a missing field, an unknown ``method``, ``k >= 1``, or a
            ``v_reset`` tensor of several elements or requiring a gradient.
    """
    k = _field(p, "tau_syn_inv", "p") * dt
    if bool(torch.as_tensor(k >= 1.0).any()):
        raise ConfigurationError(
            "lif_feed_forward_step: dt * p.tau_syn_inv must be < 1 (Norse's current decays "
            f"by 1 - dt * tau_syn_inv each step), got {k}"
        )
    v_reset = _field(p, "v_reset", "p")
    if isinstance(v_reset, Tensor) and (v_reset.numel() != 1 or v_reset.requires_grad):
        raise ConfigurationError(
            "lif_feed_forward_step: p.v_reset must be one number here (the neuron's reset "
            f"is a float, with no gradient), got a tensor of shape {tuple(v_reset.shape)}"
            f"{' requiring a gradient' if v_reset.requires_grad else ''}"
        )
    params = {
        "tau_syn": 1.0 / _field(p, "tau_syn_inv", "p"),
        "tau_mem": 1.0 / _field(p, "tau_mem_inv", "p"),
        "r": "tau_syn",
        "v_leak": _field(p, "v_leak", "p"),
        "dt": float(dt),
        "v_threshold": _field(p, "v_th", "p"),
        "v_reset": float(v_reset),
        "strict_firing": True,
        "surrogate_function": _norse_surrogate(_field(p, "method", "p"), _field(p, "alpha", "p")),
    }
    v, i = _field(state, "v", "state"), _field(state, "i", "state")
    z, new = step("cuba_lif", input_tensor, {"v": v, "i": i * k / (1.0 - k)}, **params)
    return z, {"v": new["v"], "i": new["i"] * (1.0 - k) / k}


#: The names :mod:`spikeflow.functional` re-exports them under.
neuron_step = step
neuron_multi_step = multi_step
