"""The zoo model a training run's config names, built for its dataset."""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable

from torch import nn

from spikeflow.errors import ConfigurationError
from spikeflow.models.bool_arguments import is_reading_saved_run
from spikeflow.models.common import reading_saved_run
from spikeflow.training.config import TrainConfig
from spikeflow.training.data import DataInfo
from spikeflow.training.pruning import reparameterise_weights

__all__ = ["build_model"]


def build_model(config: TrainConfig, info: DataInfo, *, saved: bool = False) -> nn.Module:
    """The zoo model of ``config`` for a dataset described by ``info``.

    ``num_classes``, ``in_channels`` and, for models that take it, ``input_size`` come
    from the dataset, and ``T`` (a model built for a number of steps: MA-SNN) from
    ``config.T``, unless ``model_kwargs`` sets them; a neuron chosen by name that is
    built for a fixed number of steps ``T`` (one without a default for it, PSN and
    masked PSN, and one whose ``check_steps`` refuses other numbers, GLIF and DSR, whose
    default of 20 fits only ``--T 20``) gets ``T = config.T`` unless ``neuron_kwargs``
    sets it.

    ``saved``: ``config`` is read back from an existing run (a checkpoint's, for
    ``spikeflow eval`` and ``--resume``). A string where a model, neuron or surrogate
    argument takes True or False (``detach_reset = "False"``, which an older spikeflow
    saved for ``--neuron-kwargs detach_reset=False``) is then read as that run read it,
    by its truth value (so ``"False"`` is True), with a
    :class:`~spikeflow.models.common.SavedRunWarning` naming it; new input
    (``saved=False``) is refused there. A saved run's ``pretrained`` (torchvision's
    weights file) is left out: its checkpoint's weights replace them.
    """
    with reading_saved_run() if saved else contextlib.nullcontext():
        return _build_model(config, info)


def _built_for_steps(factory: Callable[..., nn.Module]) -> bool:
    """Whether the neuron class or factory ``factory`` takes the number of steps ``T``
    it is built for: it has no default for ``T``, or its class checks the steps of a
    sequence against it (``check_steps``; a ``functools.partial``'s class included)."""
    from spikeflow.models.common import required_kwargs

    if "T" in required_kwargs(factory):
        return True
    cls = factory.func if isinstance(factory, functools.partial) else factory
    try:
        takes_t = "T" in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False
    return takes_t and callable(getattr(cls, "check_steps", None))


def _set_training_method(model: nn.Module, config: TrainConfig) -> None:
    """What the run's training method sets in its model: a DECOLLE network's burn-in
    (``--decolle-burnin``: its output starts after it), an EventProp network's gradient
    (``--eventprop JUMPS``, else BPTT). Refuses what these networks cannot take when
    they train by BPTT (with their own rules the config refuses it already).

    Raises:
        ConfigurationError: ``--recompute`` (their layers run step by step in their own
            loop: :func:`~spikeflow.memory.recompute_blocks` finds only their spike taps,
            and a DECOLLE network failed on them), ``--amp`` with a DECOLLE network (its
            layers take inputs in their weights' dtype only).
    """
    from spikeflow.training.decolle import DECOLLEClassifier
    from spikeflow.training.eventprop import EventPropClassifier

    if isinstance(model, (DECOLLEClassifier, EventPropClassifier)) and config.recompute:
        raise ConfigurationError(
            f"--recompute: model {config.model!r} runs its layers step by step in its own "
            "loop, with no block to recompute (only its spike taps, which hold no "
            "activations): leave --recompute out"
        )
    if isinstance(model, DECOLLEClassifier) and config.amp != "off":
        raise ConfigurationError(
            f"--amp {config.amp}: the DECOLLE layers of model {config.model!r} take inputs "
            "in their weights' dtype only (autocast hands the next layer half-precision "
            "spikes): leave --amp out"
        )
    if isinstance(model, DECOLLEClassifier) and config.decolle:
        model.burnin = config.decolle_burnin
    if isinstance(model, EventPropClassifier):
        model.set_gradient(config.eventprop or "bptt")


def _build_model(config: TrainConfig, info: DataInfo) -> nn.Module:
    from spikeflow.models import create_model, model_arguments, resolve_neuron

    assert config.model is not None
    kwargs = dict(config.model_kwargs)
    if is_reading_saved_run():
        # The checkpoint holds the trained weights: torchvision's file is not read again
        # (nor needed where the run is evaluated or resumed).
        kwargs.pop("pretrained", None)
        kwargs.pop("pretrained_classifier", None)
    kwargs.setdefault("num_classes", info.num_classes)
    kwargs.setdefault("in_channels", info.in_channels)
    accepted = model_arguments(config.model) or []
    if "input_size" in accepted and "input_size" not in kwargs:
        height, width = info.input_size
        kwargs["input_size"] = height if height == width else (height, width)
    if "T" in accepted and "T" not in kwargs:  # a model built for a number of steps
        kwargs["T"] = config.T
    if config.neuron is not None:
        kwargs.setdefault("neuron", config.neuron)
    neuron_kwargs = dict(config.neuron_kwargs)
    neuron = kwargs.get("neuron")
    if neuron is not None and "T" not in neuron_kwargs and _built_for_steps(resolve_neuron(neuron)):
        neuron_kwargs["T"] = config.T
    if neuron_kwargs:
        kwargs.setdefault("neuron_kwargs", neuron_kwargs)
    try:
        model = create_model(config.model, **kwargs)
    except ConfigurationError as exc:
        size = kwargs.get("input_size")
        if (
            isinstance(size, tuple)
            and "input_size" in str(exc)
            and "input_size" not in config.model_kwargs
        ):
            why = (  # a model taking (H, W) but needing larger frames, or one side only
                "cannot take them; resize them with the dataset's options "
                "(--dataset-kwargs, e.g. pilotnet's image_size=[66,200]) if it has any"
                if "too small" in str(exc)
                else "is built for square inputs only"
            )
            raise ConfigurationError(
                f"{exc}: the {config.dataset} frames are {size[0]}x{size[1]} (H x W), and "
                f"model {config.model!r} {why}"
            ) from exc
        raise
    except (TypeError, ValueError, RuntimeError) as exc:  # a bad value for the constructor
        detail = " ".join(str(exc).split())[:300]
        raise ConfigurationError(
            f"model {config.model!r} cannot be built with model_kwargs {config.model_kwargs} "
            f"and neuron_kwargs {config.neuron_kwargs}: {type(exc).__name__}: {detail}"
        ) from exc
    _set_training_method(model, config)
    reparameterise_weights(model, config)
    if config.input_bits is not None:
        from spikeflow.quant.activation import apply_input_quantization

        apply_input_quantization(model, config.input_bits)
    if config.membrane_bits is not None:
        from spikeflow.quant.membrane import apply_membrane_quantization

        apply_membrane_quantization(model, config.membrane_bits, config.membrane_fraction_bits)
    if config.recompute:
        from spikeflow.memory import recompute_blocks

        recompute_blocks(model)
    return model
