"""A :class:`~spikeflow.training.train_config.TrainConfig` as a dict and in files:
TOML, YAML or JSON read (:func:`load_config_file`), TOML or JSON written
(:func:`save_config`, :func:`dump_toml`), tables of keyword arguments decoded
(:func:`decode_tables`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from spikeflow.data.cache import atomic_write_bytes
from spikeflow.errors import ConfigurationError, MissingExtraError
from spikeflow.training.train_config import _FIELDS, _FLOAT_FIELDS, TABLE_FIELDS, TrainConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "UNSAVED_FIELDS", "config_from_dict", "config_to_dict", "decode_tables", "dump_toml",
    "load_config_file", "save_config", "tomllib",
]  # fmt: skip


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    """The config as a plain dict (``None`` values included)."""
    return dataclasses.asdict(config)


def decode_tables(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` with each table given as a JSON object in a string (how TOML files
    hold a table with nulls) read into a dict.

    Raises:
        ConfigurationError: such a string is not JSON.
    """
    updates = dict(values)
    for name in TABLE_FIELDS:
        text = updates.get(name)
        if isinstance(text, str):
            try:
                updates[name] = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ConfigurationError(f"{name}: not a table or a JSON object: {exc}") from exc
    return updates


def config_from_dict(values: Mapping[str, Any], base: TrainConfig | None = None) -> TrainConfig:
    """``base`` (default: the defaults) updated with ``values``.

    Raises:
        ConfigurationError: a key that is no config field (the message lists them).
    """
    unknown = sorted(set(values) - set(_FIELDS))
    if unknown:
        raise ConfigurationError(
            f"unknown config key(s) {unknown}; valid keys: {', '.join(sorted(_FIELDS))}"
        )
    updates = decode_tables(values)
    for name in _FLOAT_FIELDS & set(updates):
        if isinstance(updates[name], int) and not isinstance(updates[name], bool):
            updates[name] = float(updates[name])
    return dataclasses.replace(base or TrainConfig(), **updates)


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a ``.toml``, ``.yaml``/``.yml`` or ``.json`` config file into a dict.

    Raises:
        ConfigurationError: unreadable file, text that is not UTF-8 (naming the byte
            offset), unknown suffix, or not a table at the top.
        MissingExtraError: a YAML file without PyYAML installed (extra ``yaml``).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigurationError(f"config file {path} does not exist")
    suffix = path.suffix.lower()
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigurationError(
            f"config file {path} is not UTF-8 text: byte offset {exc.start} "
            f"({raw[exc.start : exc.start + 4]!r}): {exc.reason}"
        ) from None
    try:
        if suffix == ".toml":
            data = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError as exc:
                raise MissingExtraError("YAML config files", "pyyaml", "yaml") from exc
            data = yaml.safe_load(text)
        elif suffix == ".json":
            data = json.loads(text)
        else:
            raise ConfigurationError(
                f"config file {path}: unknown suffix {suffix!r}; use .toml, .yaml, .yml or .json"
            )
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, ValueError) as exc:
        if isinstance(exc, ConfigurationError):
            raise
        raise ConfigurationError(f"config file {path} is not valid {suffix[1:]}: {exc}") from exc
    except Exception as exc:  # yaml.YAMLError has no common base with the above
        if isinstance(exc, (ConfigurationError, MissingExtraError)):
            raise
        raise ConfigurationError(f"config file {path} is not valid {suffix[1:]}: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigurationError(f"config file {path} must hold a table of keys at the top")
    return data


def _toml_value(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        # A JSON string is a valid TOML basic string, except for surrogate-pair escapes
        # of non-BMP characters (an emoji): write those as UTF-8.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v, where) for v in value) + "]"
    if isinstance(value, Mapping):
        if _holds_none(value):
            # TOML has no null: the table as a JSON object in a string, which
            # config_from_dict reads back (v_reset = None means a soft reset).
            return json.dumps(json.dumps(value, ensure_ascii=False), ensure_ascii=False)
        items = [f"{_toml_key(k)} = {_toml_value(v, where)}" for k, v in value.items()]
        return "{" + ", ".join(items) + "}"
    raise ConfigurationError(f"{where}: cannot write {value!r} ({type(value).__name__}) to TOML")


def _holds_none(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, Mapping):
        return any(_holds_none(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_holds_none(v) for v in value)
    return False


def _toml_key(key: str) -> str:
    bare = key.replace("_", "").replace("-", "").isalnum() and key.isascii()
    return key if bare else json.dumps(key, ensure_ascii=False)


def dump_toml(values: Mapping[str, Any], header: str = "") -> str:
    """``values`` as TOML: one ``key = value`` line each, dicts as inline tables.

    ``None`` values are left out (TOML has no null; every field whose default is None
    reads back as None); a table holding a ``None`` (``neuron_kwargs = {v_reset =
    None}``) is written as a JSON object in a string, which :func:`config_from_dict`
    reads back.
    """
    lines = [f"# {line}" for line in header.splitlines()]
    for key, value in values.items():
        if value is not None:
            lines.append(f"{_toml_key(key)} = {_toml_value(value, key)}")
    return "\n".join(lines) + "\n"


#: The fields :func:`save_config` leaves out: a rerun from the file writes into a new
#: directory, and ``overwrite`` and ``stop_after`` belong to the invocation that gave them.
UNSAVED_FIELDS = ("output_dir", "overwrite", "stop_after")


def save_config(config: TrainConfig, path: str | os.PathLike) -> Path:
    """Write ``config`` to ``path`` (``.toml`` or ``.json``) without the
    :data:`UNSAVED_FIELDS`: ``output_dir`` (a rerun from the file writes into a new
    directory), ``overwrite`` and ``stop_after`` (they belong to the invocation that
    gave them, so a rerun from the file trains every epoch).

    The text is written atomically (:func:`~spikeflow.data.cache.atomic_write_bytes`:
    a temporary file moved into place); a write that fails removes it and raises.

    Raises:
        ConfigurationError: a value TOML cannot hold.
        OSError: the file cannot be written.
    """
    path = Path(path)
    values = config_to_dict(config)
    out_dir = values.get("output_dir")
    for name in UNSAVED_FIELDS:
        values.pop(name)
    if path.suffix == ".json":
        text = json.dumps(values, indent=2) + "\n"
    else:
        header = (
            "The resolved configuration of a spikeflow training run"
            + (f" (written into {out_dir})" if out_dir else "")
            + ".\nRepeat it with:  spikeflow train --config <this file>"
        )
        text = dump_toml(values, header)
    atomic_write_bytes(path, text.encode("utf-8"))
    return path
