"""A name -> builder registry for spikeflow's models (used by ``spikeflow train``)."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Any

from torch import nn

from spikeflow.errors import ConfigurationError
from spikeflow.models.common import annotated_signature, check_bool_arguments

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


def register_builder(name: str, builder: ModelBuilder, doc: str) -> ModelBuilder:
    """Register ``builder`` under ``name``, giving it that name (``__name__`` and
    ``__qualname__``) and the docstring ``doc``: for the builders of a family's variants,
    made by one function (``sew_resnet18`` ... ``sew_resnet152``)."""
    builder.__name__ = builder.__qualname__ = name
    builder.__doc__ = doc
    return register_model(name)(builder)


def list_models() -> list[str]:
    """The names :func:`create_model` accepts, sorted."""
    return sorted(_REGISTRY)


def _builder(name: str) -> ModelBuilder:
    key = _normalise(name) if isinstance(name, str) else name
    if key not in _REGISTRY:
        raise ConfigurationError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    return _REGISTRY[key]


def _keyword_parameters(
    fn: Callable[..., Any], skip: tuple[str, ...] = ()
) -> tuple[dict[str, inspect.Parameter], bool]:
    """The keyword-usable parameters of ``fn`` by name, and whether it takes ``**kwargs``."""
    params = annotated_signature(fn).parameters.values()
    named = {
        p.name: p
        for p in params
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in skip
    }
    return named, any(p.kind is p.VAR_KEYWORD for p in params)


def _model_parameters(name: str) -> tuple[dict[str, inspect.Parameter], bool]:
    """The keyword parameters :func:`create_model` passes on for the model ``name`` (the
    builder's, then those of the model class it passes ``**kwargs`` on to), and whether
    that list is complete."""
    builder = _builder(name)
    try:
        parameters, open_ended = _keyword_parameters(builder)
        if not open_ended:
            return parameters, True
        target = typing.get_type_hints(builder).get("return")
        if not isinstance(target, type):
            return parameters, False
        fixed = tuple(getattr(target, "builder_fixed_arguments", ()))
        more, still_open = _keyword_parameters(target, skip=("self", *fixed))
    except (TypeError, ValueError, NameError):
        return {}, False
    return {**more, **parameters}, not still_open


def model_arguments(name: str) -> list[str] | None:
    """The keyword arguments :func:`create_model` accepts for the model ``name``, sorted;
    None when they cannot be read.

    A builder that passes ``**kwargs`` on to its model class (its return annotation)
    accepts that class's arguments too, except those the builder fixes itself (the
    class's ``builder_fixed_arguments``, e.g. a ResNet's ``block`` and ``depths``).

    Raises:
        ConfigurationError: no model has that name (the message lists them).
    """
    parameters, complete = _model_parameters(name)
    return sorted(parameters) if complete else None


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name`` with the builder's keyword arguments.

    Every builder accepts ``num_classes``, ``in_channels``, ``neuron`` (a neuron class or
    a name such as ``"lif"``/``"plif"``/``"if"``), ``neuron_kwargs`` (a dict) and
    ``zero_init_residual``, plus its own arguments (:func:`model_arguments` lists them).

    Raises:
        ConfigurationError: no model has that name, an argument the model does not take
            (the messages list the names and the arguments), or a value that is not
            True or False for an argument annotated ``bool`` (``batch_norm="False"``).
    """
    builder = _builder(name)
    parameters, complete = _model_parameters(name)
    accepted = sorted(parameters) if complete else None
    if accepted is not None:
        unknown = sorted(set(kwargs) - set(accepted))
        if unknown:
            raise ConfigurationError(
                f"model {name!r} does not accept the argument(s) {unknown}; it accepts "
                f"{', '.join(accepted)}"
            )
    kwargs = check_bool_arguments(parameters, kwargs, f"model {name!r}")
    try:
        return builder(**kwargs)
    except TypeError as exc:
        # A builder whose arguments cannot be read beforehand (``**kwargs`` passed on to
        # an unannotated callee): its own complaint, as a ConfigurationError naming it.
        if accepted is None and "unexpected keyword argument" in str(exc):
            raise ConfigurationError(f"model {name!r}: {exc}") from exc
        raise
