"""The configuration of a training run: one dataclass, read from and written to files.

A run is described by a :class:`TrainConfig`. Values come, in increasing priority, from
the defaults here, a config file (``.toml``, ``.yaml``/``.yml`` or ``.json``) and the
command line. :func:`resolve` fills the values left to the dataset (model, T, batch
size, ``split_by``: :mod:`spikeflow.training.defaults`); every run writes the resolved
config as ``config.toml`` next to its results, so ``spikeflow train --config
runs/<run>/config.toml`` repeats it (into a new directory).

This module gathers the names of three: :mod:`~spikeflow.training.train_config` (the
dataclass, its validation, :func:`resolve`), :mod:`~spikeflow.training.config_checks`
(the training methods' checks) and :mod:`~spikeflow.training.config_files` (dicts,
TOML/YAML/JSON files).
"""

from __future__ import annotations

# Every name the module held before it was split in three (its imports too), each
# imported ``as`` itself: a re-export.
import dataclasses as dataclasses
import json as json
import math as math
import os as os
import sys as sys
from collections.abc import Mapping as Mapping
from dataclasses import dataclass as dataclass
from dataclasses import field as field
from pathlib import Path as Path
from typing import Any as Any

from spikeflow.data.cache import atomic_write_bytes as atomic_write_bytes
from spikeflow.errors import ConfigurationError as ConfigurationError
from spikeflow.errors import MissingExtraError as MissingExtraError
from spikeflow.losses import loss_key as loss_key
from spikeflow.losses.readout import READOUTS as READOUTS
from spikeflow.training.config_checks import _NOT_WITH_EPROP as _NOT_WITH_EPROP
from spikeflow.training.config_checks import _NOT_WITH_LOCAL as _NOT_WITH_LOCAL
from spikeflow.training.config_checks import _NOT_WITH_TBPTT as _NOT_WITH_TBPTT
from spikeflow.training.config_checks import _check_decolle as _check_decolle
from spikeflow.training.config_checks import _check_eprop as _check_eprop
from spikeflow.training.config_checks import _check_eventprop as _check_eventprop
from spikeflow.training.config_checks import _check_online as _check_online
from spikeflow.training.config_checks import _check_tbptt as _check_tbptt
from spikeflow.training.config_checks import _check_warmup_and_mixing as _check_warmup_and_mixing
from spikeflow.training.config_checks import _choice as _choice
from spikeflow.training.config_checks import _positive_int as _positive_int
from spikeflow.training.config_checks import _settings_in_use as _settings_in_use
from spikeflow.training.config_files import UNSAVED_FIELDS as UNSAVED_FIELDS
from spikeflow.training.config_files import _holds_none as _holds_none
from spikeflow.training.config_files import _toml_key as _toml_key
from spikeflow.training.config_files import _toml_value as _toml_value
from spikeflow.training.config_files import config_from_dict as config_from_dict
from spikeflow.training.config_files import config_to_dict as config_to_dict
from spikeflow.training.config_files import decode_tables as decode_tables
from spikeflow.training.config_files import dump_toml as dump_toml
from spikeflow.training.config_files import load_config_file as load_config_file
from spikeflow.training.config_files import save_config as save_config
from spikeflow.training.config_files import tomllib as tomllib
from spikeflow.training.defaults import DATASET_DEFAULTS as DATASET_DEFAULTS
from spikeflow.training.defaults import RESOLVED_FIELDS as RESOLVED_FIELDS
from spikeflow.training.defaults import default_for as default_for
from spikeflow.training.defaults import no_default_model_message as no_default_model_message
from spikeflow.training.train_config import _FIELDS as _FIELDS
from spikeflow.training.train_config import _FLOAT_FIELDS as _FLOAT_FIELDS
from spikeflow.training.train_config import _OPTIONAL_FIELDS as _OPTIONAL_FIELDS
from spikeflow.training.train_config import AMP_MODES as AMP_MODES
from spikeflow.training.train_config import BOOL_FIELDS as BOOL_FIELDS
from spikeflow.training.train_config import MASK_SCHEDULES as MASK_SCHEDULES
from spikeflow.training.train_config import OPTIMIZERS as OPTIMIZERS
from spikeflow.training.train_config import PATH_FIELDS as PATH_FIELDS
from spikeflow.training.train_config import PLOT_MODES as PLOT_MODES
from spikeflow.training.train_config import READOUT_MODES as READOUT_MODES
from spikeflow.training.train_config import RUNTIME_FIELDS as RUNTIME_FIELDS
from spikeflow.training.train_config import SCHEDULES as SCHEDULES
from spikeflow.training.train_config import SEED_LIMIT as SEED_LIMIT
from spikeflow.training.train_config import STR_FIELDS as STR_FIELDS
from spikeflow.training.train_config import TABLE_FIELDS as TABLE_FIELDS
from spikeflow.training.train_config import TrainConfig as TrainConfig
from spikeflow.training.train_config import resolve as resolve
from spikeflow.training.train_config import resolved_readout as resolved_readout

__all__ = [
    "DATASET_DEFAULTS",
    "RUNTIME_FIELDS",
    "UNSAVED_FIELDS",
    "TrainConfig",
    "config_from_dict",
    "config_to_dict",
    "dump_toml",
    "load_config_file",
    "resolve",
    "save_config",
]
