"""The surrogate base class, the spike function and the helpers the family shares."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.autograd import forward_ad

from spikeflow._checks import check_flag
from spikeflow._second_order_flag import refuse_compiled_second_order
from spikeflow.errors import ConfigurationError


def heaviside(x: Tensor, strict: bool = False) -> Tensor:
    """The spike function: ``1[x >= 0]`` (or ``1[x > 0]`` if ``strict``), in ``x``'s dtype."""
    return (x > 0).to(x.dtype) if strict else (x >= 0).to(x.dtype)


class _SurrogateSpike(torch.autograd.Function):
    """Heaviside forward; ``grad * derivative(x)`` backward (and forward-mode tangent).

    Written with a separate ``setup_context`` and plain tensor ops so that the
    ``torch.func`` transforms (grad, vmap, jacrev, ...) work through it.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, derivative: Callable[..., Tensor], params: dict, strict: bool) -> Tensor:
        return heaviside(x, strict)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
        x, derivative, params, _ = inputs
        ctx.save_for_backward(x)
        ctx.derivative = derivative
        ctx.params = params

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, None, None, None]:
        if not ctx.needs_input_grad[0]:
            return None, None, None, None
        (x,) = ctx.saved_tensors
        return grad_output * ctx.derivative(x, **ctx.params), None, None, None


def forward_ad_active() -> bool:
    """Whether a ``torch.autograd.forward_ad.dual_level`` is open (outside one, no
    tensor carries a tangent). The forward-mode tests fail if torch renames the level."""
    return getattr(forward_ad, "_current_level", -1) >= 0


class _SurrogateSpikeWithTangent(_SurrogateSpike):
    """:class:`_SurrogateSpike` with forward-mode AD (``torch.autograd.forward_ad``):
    the tangent times the same pseudo-derivative the backward uses. A separate class,
    used only inside a ``dual_level``: ``torch.compile`` cannot trace a custom ``jvp``."""

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
        _SurrogateSpike.setup_context(ctx, inputs, output)
        ctx.save_for_forward(inputs[0])

    @staticmethod
    def jvp(ctx: Any, x_tangent: Tensor | None, *_: Any) -> Tensor | None:
        if x_tangent is None:
            return None
        (x,) = ctx.saved_tensors
        return x_tangent * ctx.derivative(x, **ctx.params)


class Surrogate(nn.Module):
    """Base class of surrogate spike functions.

    Args:
        spiking: if True (default) the forward is the Heaviside step and the backward
            uses :meth:`derivative`; if False the forward is the smooth
            :meth:`primitive` and autograd differentiates it.
        **params: the named parameters passed to :meth:`derivative` and
            :meth:`primitive` (e.g. ``alpha``); each becomes an attribute.
    """

    #: Whether :meth:`primitive` is defined (``spiking=False`` needs it). Unless a subclass
    #: sets it explicitly, it is True exactly when :meth:`primitive` is overridden.
    has_primitive: ClassVar[bool] = True
    #: Whether the spiking forward is the Heaviside step ``1[x >= 0]``, as the fused
    #: kernels compute it (:class:`MultiLevelSpikeCount`'s is a count: a declared neuron
    #: with it runs on the reference loop).
    heaviside_forward: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "has_primitive" not in cls.__dict__:
            cls.has_primitive = cls.primitive is not Surrogate.primitive

    def __init__(self, spiking: bool = True, **params: float) -> None:
        super().__init__()
        self.spiking = check_flag(type(self).__name__, "spiking", spiking)
        for name, value in params.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigurationError(
                    f"{type(self).__name__}: parameter {name} must be a number, got {value!r}"
                )
            if not math.isfinite(value):
                raise ConfigurationError(
                    f"{type(self).__name__}: parameter {name} must be finite, got {value}"
                )
        self._param_names = tuple(params)
        for name, value in params.items():
            setattr(self, name, float(value))
        if not spiking and not type(self).has_primitive:
            raise ConfigurationError(
                f"{type(self).__name__} defines only a pseudo-derivative, no smooth "
                "primitive, so spiking=False is not available for it"
            )

    def set_spiking_mode(self, spiking: bool) -> None:
        """Switch between spikes (``True``: the Heaviside step, surrogate backward) and
        the smooth primitive (``False``) after construction (SpikingJelly's name).

        Raises:
            ConfigurationError: ``spiking`` is not a bool, or ``False`` for a surrogate
                with no primitive.
        """
        spiking = check_flag(f"{type(self).__name__}.set_spiking_mode", "spiking", spiking)
        if not spiking and not type(self).has_primitive:
            raise ConfigurationError(
                f"{type(self).__name__} defines only a pseudo-derivative, no smooth "
                "primitive, so spiking=False is not available for it"
            )
        self.spiking = spiking

    @property
    def params(self) -> dict[str, float]:
        """The named parameters, as passed to :meth:`derivative` and :meth:`primitive`."""
        return {name: getattr(self, name) for name in self._param_names}

    @staticmethod
    def derivative(x: Tensor, **params: float) -> Tensor:
        """The pseudo-derivative at ``x`` (elementwise)."""
        raise NotImplementedError

    @staticmethod
    def primitive(x: Tensor, **params: float) -> Tensor:
        """The smooth step whose derivative is :meth:`derivative` (elementwise)."""
        raise NotImplementedError

    def forward(self, x: Tensor, strict: bool = False) -> Tensor:
        """Spikes ``1[x >= 0]`` (``1[x > 0]`` if ``strict``), or the primitive."""
        if not self.spiking:
            return type(self).primitive(x, **self.params)
        spike = _SurrogateSpikeWithTangent if forward_ad_active() else _SurrogateSpike
        params = self.params
        if torch.compiler.is_compiling():
            refuse_compiled_second_order()  # (its traced backward drops their terms)
            # Specialised: torch.compile makes a float that changed since an earlier
            # compilation (a second model's alpha) symbolic, and then fails to trace
            # the backward's arithmetic on it ("lift_tracked_freevar_to_input").
            params = {name: float(value) for name, value in params.items()}
        return spike.apply(x, type(self).derivative, params, strict)

    def extra_repr(self) -> str:
        parts = [f"{k}={v:g}" for k, v in self.params.items()]
        if not self.spiking:
            parts.append("spiking=False")
        return ", ".join(parts)


# --------------------------------------------------------------------------------------
# Helpers shared by the family (plain elementwise torch, traceable by the code generator).


def _sign(x: Tensor) -> Tensor:
    """``+1`` where ``x >= 0``, ``-1`` elsewhere, in ``x``'s dtype (no gradient).

    ``_sign(x) * x`` is ``|x|`` but, unlike ``torch.abs``, differentiates to ``+1`` at
    ``x = 0`` (the right derivative, matching the ``x >= 0`` branch of the primitives).
    """
    return (x >= 0).to(x.dtype) * 2 - 1


def _mask(cond: Tensor, x: Tensor) -> Tensor:
    """A boolean condition as ``0/1`` in ``x``'s dtype."""
    return cond.to(x.dtype)


def _require(surrogate: Surrogate, name: str, ok: bool, condition: str) -> None:
    """Raise :class:`ConfigurationError` naming the class, parameter and value unless ``ok``."""
    if not ok:
        raise ConfigurationError(
            f"{type(surrogate).__name__}: parameter {name} must be {condition}, got "
            f"{getattr(surrogate, name):g}"
        )


def _require_positive(surrogate: Surrogate, *names: str) -> None:
    for name in names:
        _require(surrogate, name, getattr(surrogate, name) > 0, "> 0")
