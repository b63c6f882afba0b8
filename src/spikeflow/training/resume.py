"""Which configuration ``spikeflow train --resume`` continues: the checkpoint's, with
only the runtime fields (device, workers, output, ...) open to change."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from spikeflow.errors import ConfigurationError
from spikeflow.models.common import LEGACY_BOOL_STRINGS
from spikeflow.training.config import RUNTIME_FIELDS, TABLE_FIELDS, TrainConfig, config_from_dict
from spikeflow.training.defaults import RESOLVED_FIELDS, default_for

__all__ = ["checkpoint_position", "config_for_resume", "describe_position"]


def checkpoint_position(payload: dict[str, Any]) -> tuple[int, int]:
    """Where a checkpoint stands: (epochs completed, steps done in the next epoch)."""
    return int(payload["epoch"]), int(payload["step"])


def describe_position(position: tuple[int, int]) -> str:
    """``(2, 0)`` -> ``"after epoch 2"``, ``(2, 3)`` -> ``"epoch 3, after step 3"``."""
    epoch, step = position
    return f"after epoch {epoch}" if step == 0 else f"epoch {epoch + 1}, after step {step}"


def config_for_resume(payload: dict[str, Any], overrides: dict[str, Any]) -> TrainConfig:
    """The checkpoint's config with ``overrides`` of the runtime fields only.

    An override of None for a field the dataset decides (``model``, ``T``,
    ``batch_size``, ``split_by``: "the dataset's default", e.g. ``split_by: null`` in a
    YAML config file) repeats the checkpoint's value when that is the dataset's default.
    The checkpoint's own values are kept as they are: a run saved with
    ``split_by = "number"`` for an audio dataset (whose default is now ``"time"``)
    continues with ``"number"``.

    Raises:
        ConfigurationError: an override changes what the run computes (not a runtime
            field) to a value other than the checkpoint's.
    """
    saved = config_from_dict(payload["config"])
    overrides = {
        key: _dataset_default(saved, key) if value is None and key in RESOLVED_FIELDS else value
        for key, value in overrides.items()
    }
    if "teacher" in overrides and (overrides["teacher"] is None) != (saved.teacher is None):
        had = (
            "trained without a teacher"
            if saved.teacher is None
            else f"distils from {saved.teacher}, which cannot be left out"
        )
        raise ConfigurationError(
            f"--resume: --teacher gives the run's teacher a new place (a moved file); the run "
            f"{had}: start a new run to change that"
        )
    changed = sorted(
        key for key, value in overrides.items()
        if key not in RUNTIME_FIELDS and not _repeats(getattr(saved, key), value, key)
    )  # fmt: skip
    if changed:
        strings = [
            f"{name}: {key} = {text!r}, which the run used as {bool(text)}"
            for name in changed
            if name in TABLE_FIELDS
            for key, text in _saved_strings(getattr(saved, name), overrides[name])
        ]
        hint = (
            f" (the checkpoint holds {'; '.join(strings)}: a string an older spikeflow "
            "saved for a K=V option such as detach_reset=False, used by its truth value, "
            "a non-empty string being true; leave the option out, or give the value the "
            "run used)"
            if strings
            else ""
        )
        raise ConfigurationError(
            f"--resume continues the checkpoint's run, which fixed {changed}; only "
            f"{', '.join(RUNTIME_FIELDS)} may change (start a new run to change the "
            f"others){hint}"
        )
    # stop_after belongs to the invocation that gave it: a resume runs to the end unless
    # it gives its own.
    saved = replace(saved, stop_after=None, overwrite=False)
    return config_from_dict({k: v for k, v in overrides.items() if k in RUNTIME_FIELDS}, saved)


def _dataset_default(saved: TrainConfig, key: str) -> Any:
    """What None resolves to for ``key`` on the checkpoint's dataset (None where that
    dataset has no default, or the checkpoint's dataset is unknown)."""
    try:
        return default_for(saved.dataset, saved.model, key, saved.optimizer)
    except ConfigurationError:
        return None


def _repeats(saved: Any, given: Any, field_name: str) -> bool:
    """Whether a resume's ``given`` value of a config field repeats the checkpoint's
    ``saved`` one. Inside a table (``neuron_kwargs``), a bool repeats a string an older
    spikeflow saved for it (``detach_reset = "False"``) when it is what the run used:
    the string's truth value."""
    if field_name not in TABLE_FIELDS:
        return bool(saved == given)
    return _same_entry(saved, given)


def _same_entry(saved: Any, given: Any) -> bool:
    if isinstance(saved, dict) and isinstance(given, dict):
        return saved.keys() == given.keys() and all(
            _same_entry(saved[key], given[key]) for key in saved
        )
    if saved in LEGACY_BOOL_STRINGS and isinstance(given, bool):
        return bool(saved) == given
    return bool(saved == given)


def _saved_strings(saved: Any, given: Any, prefix: str = "") -> list[tuple[str, str]]:
    """The ``(key, string)`` entries of the table ``saved`` that ``given`` gives a bool
    other than the string's truth value for, with nested keys dotted
    (``surrogate_function.spiking``)."""
    found: list[tuple[str, str]] = []
    if isinstance(saved, dict) and isinstance(given, dict):
        for key in saved.keys() & given.keys():
            value, other = saved[key], given[key]
            if value in LEGACY_BOOL_STRINGS and isinstance(other, bool):
                if bool(value) != other:
                    found.append((prefix + str(key), value))
            else:
                found += _saved_strings(value, other, f"{prefix}{key}.")
    return sorted(found)
