"""What the non-classification tasks (:mod:`spikeflow.training.regression_task`,
:mod:`spikeflow.training.detection_task`) share when they resolve a run's options: the
class-label options both refuse, the error that names every refused option, and the
filling of the task's defaults."""

from __future__ import annotations

from typing import Any

from spikeflow.errors import ConfigurationError
from spikeflow.training.train_config import TrainConfig

__all__ = ["class_label_checks", "fill_defaults", "refuse_given"]


def class_label_checks(config: TrainConfig) -> list[tuple[str, bool, str]]:
    """``(option, set in config, why it is refused)`` for the options that train on class
    labels or a classifier (``--mixup``, ``--cutmix``, label smoothing, ``--decolle``,
    ``--eventprop``, ``--eprop``), which neither a regression nor a detection run takes."""
    d = TrainConfig()
    return [
        ("--mixup", config.mixup != d.mixup, "mixes class labels"),
        ("--cutmix", config.cutmix != d.cutmix, "mixes class labels"),
        ("--loss-kwargs label_smoothing", "label_smoothing" in config.loss_kwargs,
         "smooths class labels"),
        ("--decolle", config.decolle, "DECOLLE's local classification losses"),
        ("--eventprop", config.eventprop is not None, "EventProp's classifier"),
        ("--eprop", config.eprop is not None, "e-prop's recurrent classifier"),
    ]  # fmt: skip


def refuse_given(given: list[tuple[str, str]], dataset: str, kind: str) -> None:
    """Raise one error naming every ``(option, why)`` of ``given`` (nothing when empty).

    Args:
        given: the refused options ``config`` sets, each with why.
        dataset: the run's ``--dataset`` (named in the message).
        kind: the task, e.g. ``"regression"``, ``"detection"``.

    Raises:
        ConfigurationError: ``given`` is not empty.
    """
    if given:
        listed = "; ".join(f"{option} ({why})" for option, why in given)
        raise ConfigurationError(
            f"dataset {dataset!r} is a {kind} task, which does not take {listed}: "
            f"leave {'it' if len(given) == 1 else 'them'} out"
        )


def fill_defaults(values: TrainConfig, defaults: dict[str, Any]) -> None:
    """Set each field of ``values`` named in ``defaults`` that holds None to its default
    (in place; the fields already set are kept)."""
    for key, value in defaults.items():
        if getattr(values, key) is None:
            setattr(values, key, value)
