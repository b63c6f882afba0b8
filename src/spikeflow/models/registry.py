"""A name -> builder registry for spikeflow's models (used by ``spikeflow train``)."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Any

from torch import nn

from spikeflow.errors import ConfigurationError

__all__ = ["create_model", "list_models", "model_arguments", "register_model"]

ModelBuilder = Callable[..., nn.Module]
_REGISTRY: dict[str, ModelBuilder] = {}


def _normalise(name: str) -> str:
    return name.lower().replace("-", "_")


def register_model(name: str) -> Callable[[ModelBuilder], ModelBuilder]:
    """Decorator: register ``builder`` under ``name`` (case-insensitive, ``-`` = ``_``)."""

    def decorate(builder: ModelBuilder) -> ModelBuilder:
        key = _normalise(name)
        if key in _REGISTRY and _REGISTRY[key] is not builder:
            raise ConfigurationError(f"a model named {name!r} is already registered")
        _REGISTRY[key] = builder
        return builder

    return decorate


def list_models() -> list[str]:
    """The names :func:`create_model` accepts, sorted."""
    return sorted(_REGISTRY)


def _builder(name: str) -> ModelBuilder:
    key = _normalise(name) if isinstance(name, str) else name
    if key not in _REGISTRY:
        raise ConfigurationError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    return _REGISTRY[key]


def _named_parameters(fn: Callable[..., Any], skip: tuple[str, ...] = ()) -> tuple[set[str], bool]:
    """The keyword-usable parameter names of ``fn`` and whether it takes ``**kwargs``."""
    params = inspect.signature(fn).parameters.values()
    names = {
        p.name
        for p in params
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in skip
    }
    return names, any(p.kind is p.VAR_KEYWORD for p in params)


def model_arguments(name: str) -> list[str] | None:
    """The keyword arguments :func:`create_model` accepts for the model ``name``, sorted;
    None when they cannot be read.

    A builder that passes ``**kwargs`` on to its model class (its return annotation)
    accepts that class's arguments too, except those the builder fixes itself (the
    class's ``builder_fixed_arguments``, e.g. a ResNet's ``block`` and ``depths``).

    Raises:
        ConfigurationError: no model has that name (the message lists them).
    """
    builder = _builder(name)
    try:
        names, open_ended = _named_parameters(builder)
        if open_ended:
            target = typing.get_type_hints(builder).get("return")
            if not isinstance(target, type):
                return None
            fixed = tuple(getattr(target, "builder_fixed_arguments", ()))
            more, still_open = _named_parameters(target, skip=("self", *fixed))
            if still_open:
                return None
            names |= more
    except (TypeError, ValueError, NameError):
        return None
    return sorted(names)


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name`` with the builder's keyword arguments.

    Every builder accepts ``num_classes``, ``in_channels``, ``neuron`` (a neuron class or
    a name such as ``"lif"``/``"plif"``/``"if"``), ``neuron_kwargs`` (a dict) and
    ``zero_init_residual``, plus its own arguments (:func:`model_arguments` lists them).

    Raises:
        ConfigurationError: no model has that name, or an argument the model does not
            take (the messages list the names and the arguments).
    """
    builder = _builder(name)
    accepted = model_arguments(name)
    if accepted is not None:
        unknown = sorted(set(kwargs) - set(accepted))
        if unknown:
            raise ConfigurationError(
                f"model {name!r} does not accept the argument(s) {unknown}; it accepts "
                f"{', '.join(accepted)}"
            )
    try:
        return builder(**kwargs)
    except TypeError as exc:
        # A builder whose arguments cannot be read beforehand (``**kwargs`` passed on to
        # an unannotated callee): its own complaint, as a ConfigurationError naming it.
        if accepted is None and "unexpected keyword argument" in str(exc):
            raise ConfigurationError(f"model {name!r}: {exc}") from exc
        raise
