"""The spiking neuron module: a declaration plus shared fire and reset rules."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from spikeflow._checks import broadcasts_to, check_flag
from spikeflow.base import MemoryModule, StepMode, check_time_major
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.kernels import FiringRule, check_backend, resolve_backend
from spikeflow.neurons.declaration import NeuronDeclaration, declare
from spikeflow.surrogate import Sigmoid, Surrogate

__all__ = ["BaseNode", "check_step_shape"]


def _check_finite(name: str, value: float | Tensor) -> None:
    bad = not math.isfinite(value) if isinstance(value, float) else not torch.isfinite(value).all()
    if bad:
        raise ConfigurationError(f"{name} must be finite, got {value}")


def show_float_or_shape(value: float | Tensor) -> str:
    """A neuron parameter for ``extra_repr``: a float by its value (``%g``), a tensor
    (per neuron or channel, or learnt) by its shape, ``tensor(C, 1, 1)``."""
    return f"{value:g}" if isinstance(value, float) else f"tensor{tuple(value.shape)}"


def check_sequence(x: Tensor, owner: str) -> None:
    """Raise a :class:`ShapeError` unless ``x`` is a time-major ``[T >= 1, B, ...]``."""
    check_time_major(x, owner)
    if x.shape[0] == 0:
        raise ShapeError(
            f"{owner} got a sequence of 0 time steps (input shape {tuple(x.shape)}); a "
            "neuron needs at least one step [T >= 1, B, ...]"
        )


def as_sequence(x: Tensor, owner: str, step_mode: StepMode) -> Tensor:
    """``x`` as a time-major sequence: itself in multi-step mode (``step_mode='m'``,
    checked by :func:`check_sequence`), the one step ``[1, B, ...]`` in single-step mode."""
    if step_mode == "m":
        check_sequence(x, owner)
        return x
    return x.unsqueeze(0)


def check_float_input(x: object, owner: str, expected: str = "a floating-point input") -> None:
    """Raise a :class:`DTypeError` naming ``owner`` unless ``x`` is a floating-point
    tensor; ``expected`` says what it takes (``"floating-point drives"``)."""
    if not isinstance(x, Tensor):
        raise DTypeError(f"{owner} expects a tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise DTypeError(f"{owner} expects {expected}, got dtype {x.dtype}")


def checked_surrogate(
    surrogate_function: object, default: Callable[[], Surrogate] = Sigmoid
) -> Surrogate:
    """``surrogate_function``, or a new ``default()`` (``Sigmoid(alpha=4)``, the field's
    default) when it is None.

    Raises:
        ConfigurationError: it is not a :class:`~spikeflow.surrogate.Surrogate` instance.
    """
    surrogate = default() if surrogate_function is None else surrogate_function
    if not isinstance(surrogate, Surrogate):
        raise ConfigurationError(
            "surrogate_function must be a spikeflow.surrogate.Surrogate instance, got "
            f"{type(surrogate).__name__}"
        )
    return surrogate


def check_step_shape(
    owner: str, what: str, value: object, step_shape: torch.Size, hint: str = ""
) -> None:
    """Raise a ShapeError naming ``what`` of ``owner`` if ``value`` is a tensor that does
    not broadcast to ``step_shape`` (one step of the input: the neuron shape)."""
    if not isinstance(value, Tensor) or value.dim() == 0 or value.shape == step_shape:
        return
    if not broadcasts_to(value.shape, step_shape):
        raise ShapeError(
            f"{owner}: {what} of shape {tuple(value.shape)} does not broadcast to the neuron "
            f"shape {tuple(step_shape)} (one step of the input){hint}"
        )


# -- a reset that waits for the next charge ----------------------------------------------
# The declaration pieces of neurons whose charge applies the previous step's reset
# (GLIF, LIAF): ``update`` keeps this step's spike as the state ``spike``, and
# ``reset_membrane`` leaves the charged membrane as it is.


def keep_spike(h: Tensor, s: Tensor, spike: Tensor) -> Tensor:
    """``update``: the spike the next step's reset reads."""
    return s


def keep_detached_spike(h: Tensor, s: Tensor, spike: Tensor) -> Tensor:
    """As :func:`keep_spike`, no gradient through the reset (``detach_reset``)."""
    return s.detach()


def membrane_as_charged(h: Tensor, s: Tensor, theta: Tensor | float, spike: Tensor) -> Tensor:
    """``reset_membrane``: the membrane after firing is the charged one (the reset waits
    for the next charge)."""
    return h


def refuse_state_inputs(module: nn.Module, state: tuple[object, ...]) -> None:
    """Raise a ConfigurationError if a neuron was called with inputs after ``x``
    (snnTorch's ``lif(x, mem)``): spikeflow's neurons carry their state themselves."""
    if state:
        raise ConfigurationError(
            f"{type(module).__name__}: called with {len(state)} input(s) after x; a "
            "spikeflow neuron takes one input and carries its state itself "
            "(snnTorch's lif(x, mem) is out, state = lif.run(x, state), or a loop "
            "inside functional.streaming(lif): docs/migration.md)"
        )


class BaseNode(MemoryModule):
    """Base class of spiking neurons declared by a charge equation.

    A subclass provides the declaration as static methods ``charge`` (and optionally
    ``update``) and returns their parameter values from :meth:`neuron_params`; see
    :mod:`spikeflow.neurons.declaration`. Firing and reset follow methods.md 1.1::

        H[t] = charge(X[t], V[t-1], ...)
        S[t] = Θ(H[t] - θ)                        (Θ(0) = 1, or 0 if strict_firing)
        V[t] = H[t] (1 - S[t]) + V_r S[t]         (hard reset, v_reset a float)
        V[t] = H[t] - θ S[t]                      (soft reset, v_reset None)

    Args:
        v_threshold: θ, a float or a tensor broadcastable to the neuron shape (e.g.
            ``[C, 1, 1]`` for one threshold per channel of ``[B, C, H, W]``). Default 1.
        v_reset: V_r for hard reset (default 0.0), or ``None`` for soft reset. The
            membrane starts at ``v_reset`` (hard) or 0 (soft).
        surrogate_function: the spike function (default ``Sigmoid(alpha=4)``).
        detach_reset: if True, no gradient flows through the reset branch.
        strict_firing: fire on ``H > θ`` instead of ``H >= θ`` (STBP, MS-ResNet, TET).
        learnable_threshold: make θ a trainable parameter (same shape as given).
        step_mode: ``'m'`` (input ``[T, B, ...]``, default) or ``'s'`` (``[B, ...]``).
        backend: ``'auto'`` (fastest available) or ``'torch'`` (the reference loop).
        store_v_seq: keep the membrane after reset of every step of the last call in
            ``self.v_seq`` (``[1, B, ...]`` in single-step mode).
    """

    charge: ClassVar[staticmethod]
    update: ClassVar[staticmethod | None] = None
    _graph_attributes = ("v_seq",)  # copies keep the recorded membrane's values
    #: Optional ``threshold(theta, *aux, **params)``: a state-dependent effective
    #: threshold, used by the fire rule and the soft reset.
    threshold: ClassVar[staticmethod | None] = None
    #: Optional ``reset_membrane(h, s, theta, *aux, **params)``: the membrane after
    #: firing, in place of the shared hard/soft reset (``aux`` as after ``update``).
    reset_membrane: ClassVar[staticmethod | None] = None
    #: Optional ``fire(h, theta, spike, *aux, **params)``: the step's output (and the
    #: hard reset's event) in place of the shared ``Θ(H - θ)``; see
    #: :mod:`spikeflow.neurons.declaration`.
    fire: ClassVar[staticmethod | None] = None
    #: Whether ``charge`` returns ``(H, *aux)`` (auxiliary state advanced before firing).
    charge_returns_aux: ClassVar[bool] = False
    #: Whether the output is the spikes. False for a neuron with an analog output
    #: (:class:`~spikeflow.neurons.LIAFNode`), which records its spike decision in
    #: ``spike_seq`` while ``store_spike_seq`` is on: what the monitors, spike rasters,
    #: spike regularisers and operation counts read for it instead of the output.
    output_is_spikes: ClassVar[bool] = True

    def __init__(
        self,
        v_threshold: float | Tensor = 1.0,
        v_reset: float | None = 0.0,
        surrogate_function: Surrogate | None = None,
        detach_reset: bool = False,
        strict_firing: bool = False,
        learnable_threshold: bool = False,
        step_mode: StepMode = "m",
        backend: str = "auto",
        store_v_seq: bool = False,
    ) -> None:
        super().__init__(step_mode)
        self._init_threshold(v_threshold, learnable_threshold)
        if v_reset is not None:
            if isinstance(v_reset, bool) or not isinstance(v_reset, (int, float)):
                raise ConfigurationError(
                    f"v_reset must be a float (hard reset) or None (soft reset), got {v_reset!r}"
                )
            v_reset = float(v_reset)
            _check_finite("v_reset", v_reset)
            theta = self.v_threshold
            # Python floats compare in Python (no tensor: a model may be built under
            # ``torch.device("meta")``, where tensors have no values to compare).
            if not isinstance(theta, Tensor):
                too_low = theta <= v_reset
            else:
                too_low = not theta.is_meta and bool((theta <= v_reset).any())
            if too_low:
                raise ConfigurationError(
                    f"v_threshold ({self.v_threshold}) must be above v_reset ({v_reset}): "
                    "otherwise a neuron fires again from its reset value"
                )
        self.v_reset = v_reset
        self.surrogate_function = checked_surrogate(surrogate_function)
        self.detach_reset = check_flag(type(self).__name__, "detach_reset", detach_reset)
        self.strict_firing = check_flag(type(self).__name__, "strict_firing", strict_firing)
        self.backend = check_backend(backend)
        self.store_v_seq = check_flag(type(self).__name__, "store_v_seq", store_v_seq)
        self.v_seq: Tensor | None = None

    # -- configuration ---------------------------------------------------------------

    def _init_threshold(self, v_threshold: float | Tensor, learnable: bool) -> None:
        if isinstance(v_threshold, bool) or not isinstance(v_threshold, (int, float, Tensor)):
            raise ConfigurationError(
                f"v_threshold must be a float or a tensor, got {type(v_threshold).__name__}"
            )
        if isinstance(v_threshold, Tensor):
            if not v_threshold.is_floating_point():
                raise DTypeError(
                    f"v_threshold must be a floating-point tensor, got dtype {v_threshold.dtype}"
                )
            _check_finite("v_threshold", v_threshold)
            value = v_threshold.detach().clone()
        else:
            value = float(v_threshold)
            _check_finite("v_threshold", value)
        if learnable:
            # A tensor keeps its dtype (a float64 threshold is not rounded); a float
            # becomes a tensor of the default dtype.
            tensor = value if isinstance(value, Tensor) else torch.tensor(value)
            self.v_threshold = nn.Parameter(tensor)
        elif isinstance(value, Tensor):
            self.register_buffer("v_threshold", value)
        else:
            self.v_threshold = value

    def declaration(self) -> NeuronDeclaration:
        """The equations this neuron runs (built once per class and cached)."""
        cls = type(self)
        return declare(
            cls.charge, cls.update, cls.__name__, cls.charge_returns_aux, cls.threshold,
            cls.reset_membrane, cls.fire,
        )  # fmt: skip

    def neuron_params(self) -> dict[str, Tensor | float]:
        """Values of the declaration's named parameters for this forward pass."""
        return {}

    def initial_values(self) -> dict[str, float]:
        """The state at t = 0 as one number per state variable, the same for every neuron.

        The membrane starts at ``v_reset`` (hard reset) or 0 (soft reset); subclasses
        with auxiliary state that starts at one value override this and add theirs
        (``{**super().initial_values(), "w": 0.0}``). The fused kernels read these
        numbers as scalars: a fresh neuron's call fills no state tensor.
        """
        return {"v": 0.0 if self.v_reset is None else self.v_reset}

    def initial_state(self, like: Tensor) -> dict[str, Tensor]:
        """The state at t = 0 for one step shaped like ``like``: :meth:`initial_values`
        as tensors. Override it (adding to ``super().initial_state(like)``) for a state
        that is not one number for every neuron."""
        return {name: torch.full_like(like, v) for name, v in self.initial_values().items()}

    def start_state(self, like: Tensor) -> dict[str, Tensor | float]:
        """What a fresh call starts from: :meth:`initial_values` (numbers, which the
        backends read as scalars) unless a subclass overrides :meth:`initial_state`,
        whose tensors are then used."""
        # (the bound method: an override set on the instance counts too)
        if getattr(self.initial_state, "__func__", None) is BaseNode.initial_state:
            state: dict[str, Tensor | float] = dict(self.initial_values())
            where = "initial_values()"
        else:
            state, where = self.initial_state(like), "initial_state(like)"
        missing = [name for name in self.declaration().state_names if name not in state]
        if missing:
            raise ConfigurationError(
                f"{type(self).__name__}.{where} gives no starting value for the state "
                f"{missing} its equations declare: add it, e.g. return "
                f"{{**super().{where}, {missing[0]!r}: 0.0}}"
            )
        return state

    @property
    def firing_rule(self) -> FiringRule:
        """The shared fire/reset configuration handed to the backend."""
        return FiringRule(
            surrogate=self.surrogate_function,
            v_reset=self.v_reset,
            detach_reset=self.detach_reset,
            strict=self.strict_firing,
        )

    @property
    def v(self) -> Tensor | None:
        """Membrane potential carried to the next call (only while streaming)."""
        return None if self.state is None else self.state["v"]

    # -- execution -------------------------------------------------------------------

    def _check_input(self, x: Tensor) -> Tensor:
        """Return ``x`` as a ``[T, ...]`` sequence, validating dtype and shape."""
        owner = type(self).__name__
        check_float_input(x, owner, "a floating-point input (the synaptic current)")
        return as_sequence(x, owner, self.step_mode)

    def firing_threshold(self, step_shape: torch.Size) -> float | Tensor:
        """θ as the fire rule receives it for steps of ``step_shape``: ``v_threshold``,
        checked to broadcast to the step. A neuron whose threshold is a function of its
        parameters overrides it (:class:`~spikeflow.neurons.GatedLIFNode`: the sigmoid
        of a per-channel parameter); the result is differentiable like any tensor.

        Raises:
            ShapeError: a tensor threshold that does not broadcast to ``step_shape``.
        """
        check_step_shape(
            type(self).__name__, "v_threshold", self.v_threshold, step_shape,
            "; per-channel thresholds of [B, C, H, W] need shape [C, 1, 1]",
        )  # fmt: skip
        return self.v_threshold

    def forward(self, x: Tensor, *state: object) -> Tensor:
        """Spikes for ``x``: ``[T, B, ...]`` in multi-step mode, ``[B, ...]`` in single-step.

        Raises:
            ConfigurationError: a state passed after ``x`` (snnTorch's ``lif(x, mem)``):
                the neuron carries its state itself; :meth:`run` takes and returns it.
        """
        refuse_state_inputs(self, state)
        x_seq = self._check_input(x)
        spikes, v_seq = self._run_steps(x_seq, self.store_v_seq)
        if self.store_v_seq:
            self.v_seq = v_seq
        return spikes if self.step_mode == "m" else spikes[0]

    def _run_steps(self, x_seq: Tensor, record_v: bool) -> tuple[Tensor, Tensor | None]:
        """Run the declaration over the checked sequence ``x_seq`` (``[T, B, ...]``) from
        the carried (or initial) state, and keep the final state: the spikes and, if
        ``record_v``, the membrane after reset of every step (else ``None``). What
        :meth:`forward` calls; a neuron whose output is not the spikes (LIAF) or whose
        steps are not the input's (a pair of inputs per step) calls it itself."""
        theta = self.firing_threshold(x_seq.shape[1:])
        state = self._carried_state(x_seq.shape[1:])
        if state is None:
            state = self.start_state(x_seq[0])
        stepped = self.__dict__.get("_step_params") is not None  # inside a container
        run = resolve_backend(self.backend, x_seq, stepped)
        decl, params = self.equations(self._call_params(x_seq.shape[1:]), theta, x_seq.dtype)
        missing = [n for n in decl.param_names if n not in params]
        if missing:
            raise ConfigurationError(
                f"{type(self).__name__}.neuron_params() must return a value for every "
                f"parameter its equations declare {decl.param_names}; missing {missing}"
            )
        spikes, state, v_seq = run(decl, x_seq, state, params, theta, self.firing_rule, record_v)
        self._keep_state(state)
        return spikes, v_seq

    def equations(
        self, params: dict[str, Tensor | float], theta: float | Tensor, dtype: torch.dtype
    ) -> tuple[NeuronDeclaration, dict[str, Tensor | float]]:
        """The declaration a call on inputs of ``dtype`` runs and its parameter values,
        given those of :meth:`neuron_params` and the threshold: :meth:`declaration`, or
        with a ``membrane_quantizer`` (:mod:`spikeflow.quant`) the declaration whose
        charge rounds the membrane to its grid, and the grid's values.

        Raises:
            ConfigurationError: a quantized membrane's register does not fit ``dtype``,
                or the declaration has a fire rule of its own (``fire``), which the
                quantized declaration does not carry yet.
        """
        decl = self.declaration()
        quantizer = self._modules.get("membrane_quantizer")
        if quantizer is not None:  # the membrane on a fixed-point grid (spikeflow.quant)
            if decl.fire is not None:
                raise ConfigurationError(
                    f"membrane quantization of {type(self).__name__}: its declaration fires "
                    "by a rule of its own (fire), which the quantized declaration would "
                    "drop (it would fire by Θ(H - θ)); remove_membrane_quantization, or "
                    "run it unquantized"
                )
            quantizer.check_dtype(dtype, type(self).__name__)
            decl = quantizer.quantized(decl)
            params = {**params, **quantizer.grid(theta)}
        return decl, params

    def _begin_steps(self) -> None:
        # Inside one container call the parameters are the same at every step: they
        # are computed (and expanded to the step shape) once, at the first step.
        self._steps_depth = self.__dict__.get("_steps_depth", 0) + 1
        if self._steps_depth == 1:
            self._step_params: dict[str, Any] | None = {}

    def _end_steps(self) -> None:
        self._steps_depth -= 1
        if self._steps_depth == 0:
            self._step_params = None

    def _call_params(self, step_shape: torch.Size) -> dict[str, Tensor | float]:
        """:meth:`neuron_params`, checked against the step shape; between
        :meth:`_begin_steps` and :meth:`_end_steps`, computed once and kept (tensors
        expanded to the step shape: the kernels then copy nothing per step, and a
        parameter's gradient is reduced once, not at every step)."""
        cache = self.__dict__.get("_step_params")
        if cache and cache["shape"] == step_shape:
            return cache["params"]
        params = self.neuron_params()
        for name, value in params.items():
            check_step_shape(type(self).__name__, f"parameter {name!r}", value, step_shape)
        if cache is not None:
            params = {
                name: value.expand(step_shape).contiguous()
                if isinstance(value, Tensor) and value.dim() > 0
                else value
                for name, value in params.items()
            }
            cache.update(shape=step_shape, params=params)
        return params

    def _mode_repr(self) -> list[str]:
        """The repr's ``step_mode`` and ``backend``, and ``strict_firing=True`` when set."""
        parts = [f"step_mode={self.step_mode!r}", f"backend={self.backend!r}"]
        if self.strict_firing:
            parts.append("strict_firing=True")
        return parts

    def extra_repr(self) -> str:
        theta = self.v_threshold
        parts = [
            f"v_threshold={show_float_or_shape(theta)}",
            f"v_reset={self.v_reset}",
            f"detach_reset={self.detach_reset}",
            *self._mode_repr(),
        ]
        if isinstance(theta, nn.Parameter):
            parts.append("learnable_threshold=True")
        return ", ".join(parts)
