"""Training spiking networks: the machinery behind ``spikeflow train`` and ``spikeflow eval``.

* :mod:`~spikeflow.training.config`: :class:`TrainConfig`, config files (TOML/YAML/JSON);
  every name of :mod:`~spikeflow.training.train_config`,
  :mod:`~spikeflow.training.config_checks` and :mod:`~spikeflow.training.config_files`.
* :mod:`~spikeflow.training.data`: the datasets the command line knows.
* :mod:`~spikeflow.training.defaults`: each dataset's default model, T, batch size and
  ``split_by`` (the published recipes).
* :mod:`~spikeflow.training.trainer`: :class:`Trainer` (one process or ``torchrun``), with
  its mixins in ``trainer_setup``, ``trainer_steps``, ``trainer_checkpoints``, ``trainer_plots``.
* :mod:`~spikeflow.training.build`: the zoo model a config names, built for its dataset.
* :mod:`~spikeflow.training.resume`: the configuration a ``--resume`` continues.
* :mod:`~spikeflow.training.monitors`: firing rates, spike counts, membrane statistics.
* :mod:`~spikeflow.training.tbptt`: truncated BPTT in windows of ``K`` steps (``--tbptt``).
* :mod:`~spikeflow.training.forward_forward`: Forward-Forward, a local goodness per layer
  (:class:`~spikeflow.training.forward_forward.ForwardForwardTrainer`; Python only).
* :mod:`~spikeflow.training.checkpoint`: atomic, ``weights_only``-loadable checkpoints.
* :mod:`~spikeflow.training.trained_model`: a run's model back in Python
  (:func:`load_trained_model`), for export, counts or a loop of your own.
* :mod:`~spikeflow.training.plots`: learning curves, firing rates, spike rasters (matplotlib).

See ``docs/training.md``.
"""

from spikeflow.training.checkpoint import load_checkpoint, save_checkpoint
from spikeflow.training.config import TrainConfig, load_config_file, resolve, save_config
from spikeflow.training.monitors import LayerStats, SpikeMonitor, record_spikes
from spikeflow.training.resume import config_for_resume
from spikeflow.training.trained_model import TrainedModel, load_trained_model
from spikeflow.training.trainer import NonFiniteLossError, Trainer, TrainResult, build_model

__all__ = [
    "LayerStats",
    "NonFiniteLossError",
    "SpikeMonitor",
    "TrainConfig",
    "TrainResult",
    "TrainedModel",
    "Trainer",
    "build_model",
    "config_for_resume",
    "load_checkpoint",
    "load_config_file",
    "load_trained_model",
    "record_spikes",
    "resolve",
    "save_checkpoint",
    "save_config",
]
