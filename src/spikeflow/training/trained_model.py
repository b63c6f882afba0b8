"""A ``spikeflow train`` run's model back in Python: for export (NIR, Lava-DL netx),
operation counts, pruning or quantization after training, or a loop of your own."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from spikeflow.errors import ConfigurationError
from spikeflow.training.train_config import TrainConfig

__all__ = ["TrainedModel", "load_trained_model"]


@dataclass(frozen=True)
class TrainedModel:
    """What :func:`load_trained_model` returns.

    Attributes:
        model: the run's network with the checkpoint's weights, in evaluation mode.
        config: the run's resolved configuration (``T``, ``dataset``, ``model``, ...).
        checkpoint: the file the weights came from.
        test_set: the run's test split (the samples it tested on), one sample as the
            dataset yields it (``[T, C, H, W]`` frames, or a static ``[C, H, W]`` image).
        static: how the trainer feeds a sample to the model (``False``: frames; ``True``:
            a static image repeated over ``T``; ``"columns"``: one image column per step).
        collate: the DataLoader ``collate_fn`` the run's batches go through (None:
            PyTorch's default; a detection run: :func:`spikeflow.detection.collate`,
            its targets a list of ``[K_i, 5]`` boxes).
    """

    model: nn.Module
    config: TrainConfig
    checkpoint: Path
    test_set: Dataset
    static: Any
    collate: Callable[..., Any] | None = None

    def batch(self, size: int = 8) -> tuple[Tensor, Tensor]:
        """The first ``size`` test samples as the model reads them, time-major
        ``[T, B, ...]`` (on the model's device), and their labels (a detection run: the
        list of their targets, as its trainer batches them).

        Raises:
            ConfigurationError: ``size`` is not a positive integer.
        """
        from spikeflow.training.data import to_time_major

        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConfigurationError(f"batch size must be a positive integer, got {size!r}")
        loader = DataLoader(self.test_set, batch_size=size, shuffle=False, collate_fn=self.collate)
        x, y = next(iter(loader))
        device = next(self.model.parameters(), torch.empty(0)).device
        return to_time_major(x.to(device), self.config.T, self.static), y  # type: ignore[arg-type]


def load_trained_model(
    path: str | os.PathLike,
    *,
    data_dir: str | None = None,
    device: str = "cpu",
    ema: bool = False,
) -> TrainedModel:
    """The model a ``spikeflow train`` run saved in ``path``, rebuilt from the
    checkpoint's configuration as ``spikeflow eval`` rebuilds it, with its weights.

    Args:
        path: a ``last.pt`` or ``best.pt``, or a run folder (then its ``best.pt`` if
            there is one, else its ``last.pt``).
        data_dir: where the run's dataset is now (default: the run's ``data_dir``); its
            test split is opened to size the model as the run did (classes, channels,
            frame size).
        device: ``"cpu"`` (default), ``"cuda"``, ``"auto"``, ...
        ema: the moving average of the weights a ``--model-ema`` run kept instead of
            its trained weights.

    Raises:
        ConfigurationError: a missing or foreign checkpoint, weights that do not fit the
            model built from its configuration, or a dataset that cannot be found.
    """
    from spikeflow.models.common import reading_saved_run
    from spikeflow.training.build import build_model
    from spikeflow.training.checkpoint import load_weights
    from spikeflow.training.config import resolve
    from spikeflow.training.data import build_datasets, static_layout
    from spikeflow.training.detection_task import detection_task
    from spikeflow.training.distributed import pick_device
    from spikeflow.training.evaluation import read_run_checkpoint

    file, payload, config = read_run_checkpoint(path, data_dir)
    config = resolve(config)
    from spikeflow.training.regression_task import regression_task

    task = detection_task(config.dataset)
    regression = regression_task(config.dataset)
    if task is not None or regression is not None:  # its task builds the data and model
        owner = task if task is not None else regression
        _, test_set, info = owner.build_datasets(config, with_train=False)  # type: ignore[union-attr]
        with reading_saved_run():
            model = owner.build_model(config, info)  # type: ignore[union-attr]
    else:
        _, test_set, info = build_datasets(config, with_train=False)
        model = build_model(config, info, saved=True)  # read as the run was
    load_weights(model, payload, file, ema=ema)
    model = model.to(pick_device(device)).eval()
    static = static_layout(model, info, config.T)  # type: ignore[arg-type]
    collate = None if task is None else task.collate  # boxes vary in number per sample
    return TrainedModel(model, config, file, test_set, static, collate)
