"""A name -> builder registry for spikeflow's models (used by ``spikeflow train``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from spikeflow.errors import ConfigurationError

__all__ = ["create_model", "list_models", "register_model"]

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


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name`` with the builder's keyword arguments.

    Every builder accepts ``num_classes``, ``in_channels``, ``neuron`` (a neuron class or
    a name such as ``"lif"``/``"plif"``/``"if"``) and ``neuron_kwargs`` (a dict), plus its
    own arguments.

    Raises:
        ConfigurationError: no model has that name (the message lists them).
    """
    key = _normalise(name)
    if key not in _REGISTRY:
        raise ConfigurationError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    return _REGISTRY[key](**kwargs)
