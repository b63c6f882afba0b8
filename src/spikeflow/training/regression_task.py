"""Regression as a ``spikeflow train`` task: datasets with continuous targets, the
losses on the decoded output, the per-epoch metrics (MSE, MAE, R²) and what a
regression run refuses (docs/training.md, "Regression").

Datasets:

* ``diabetes``: scikit-learn's bundled diabetes data (442 patients, 10 features, the
  disease progression after a year; extra ``examples``), a fixed 80/20 split
  (``random_state=0``: 353 / 89), features and target standardised with the training
  split's mean and standard deviation; each sample is a static vector repeated over T,
  as the digits' images are.
* ``pilotnet``: :class:`~spikeflow.data.datasets.pilotnet.PilotNetDriving` (``--data-dir``
  holds ``driving_dataset/``), ``T`` consecutive frames per sample and a steering angle
  (radians) per frame: a target per step.

The output ``[T, B, D]`` is decoded by ``--regression-readout``: ``mean`` (its mean over
time: the firing rate of spiking outputs, the mean membrane of a non-spiking read-out),
``last`` (its last step: the membrane of an integrating read-out at the end) or
``per_step`` (every step against the target, or against the step's own target; the
loss is then the mean of the per-step losses, Lava-DL's PilotNet loss). The loss
(``--loss``) is ``mse``, ``l1`` or ``huber`` (``--loss-kwargs delta=...``) of the decoded
output and the target; the metrics count every decoded value (every step's with
``per_step``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, TensorDataset
from tqdm import tqdm

from spikeflow.errors import ConfigurationError, DTypeError, MissingExtraError, ShapeError
from spikeflow.training.config import TrainConfig
from spikeflow.training.data import (
    DataInfo,
    StaticLayout,
    even_subset,
    file_dataset_options,
    to_time_major,
)
from spikeflow.training.distributed import DistContext
from spikeflow.training.loop import (
    EpochSums,
    autocast_context,
    missing_forwards,
    monitor_results,
)
from spikeflow.training.monitors import LayerStats, SpikeMonitor
from spikeflow.training.task_options import class_label_checks, fill_defaults, refuse_given
from spikeflow.training.train_config import REGRESSION_READOUTS

__all__ = [
    "REGRESSION_DATASETS",
    "REGRESSION_LOSSES",
    "REGRESSION_READOUTS",
    "RegressionLoss",
    "RegressionSums",
    "RegressionTask",
    "regression_pairs",
    "regression_task",
]

#: ``--loss`` of a regression run: torch's losses of the decoded output and the target.
REGRESSION_LOSSES: dict[str, Callable[..., Tensor]] = {
    "mse": F.mse_loss,
    "l1": F.l1_loss,
    "huber": F.huber_loss,
}


@dataclass(frozen=True)
class _RegressionSpec:
    """A regression dataset's defaults."""

    model: str
    T: int
    batch_size: int
    lr: float
    #: True: a target per step (``[B, T]``), read out ``per_step`` only.
    per_step_targets: bool
    description: str


#: The ``spikeflow train --dataset`` names of the regression datasets.
REGRESSION_DATASETS: dict[str, _RegressionSpec] = {
    "diabetes": _RegressionSpec(
        "rsnn", 16, 32, 1e-2, False, "scikit-learn's diabetes data (10 features, 1 target)"
    ),
    "pilotnet": _RegressionSpec(
        "pilotnet_sdnn", 16, 8, 1e-3, True, "PilotNet driving frames -> steering angle"
    ),
}


def regression_task(dataset: Any) -> RegressionTask | None:
    """The :class:`RegressionTask` of ``--dataset`` ``dataset``, or None for another."""
    if isinstance(dataset, str) and dataset.lower() in REGRESSION_DATASETS:
        return RegressionTask(dataset.lower())
    return None


def regression_pairs(
    out: Tensor, target: Tensor, readout: str, per_step_targets: bool = False
) -> tuple[Tensor, Tensor]:
    """The prediction and the target it is scored against, of the same shape.

    ``out`` is ``[T, B, ...]`` (``D`` values per step after flattening); ``target`` is
    ``[B, ...]`` with ``D`` values per sample, or with ``per_step_targets`` ``[B, T,
    ...]``. ``mean``: ``(out.mean(0), target)``, ``last``: ``(out[-1], target)``, both
    ``[B, D]``; ``per_step``: ``(out, target)`` as ``[T, B, D]`` (a per-sample target
    repeated over the steps).

    Raises:
        ConfigurationError: an unknown readout, per-step targets without ``per_step``, or
            NaN / infinite targets. DTypeError: bool or complex targets (or not a tensor).
        ShapeError: a target whose size does not match the output's.
    """
    if readout not in REGRESSION_READOUTS:
        raise ConfigurationError(
            f"unknown regression readout {readout!r}; available: {', '.join(REGRESSION_READOUTS)}"
        )
    if out.dim() < 2:
        raise ShapeError(f"regression output must be [T, B, ...], got shape {tuple(out.shape)}")
    steps, batch = out.shape[:2]
    out = out.reshape(steps, batch, -1).float()
    width = out.shape[-1]
    if not isinstance(target, Tensor) or target.dtype == torch.bool or target.is_complex():
        what = target.dtype if isinstance(target, Tensor) else type(target).__name__
        raise DTypeError(f"regression targets must be a real-valued tensor, got {what}")
    target = target.to(out.device, torch.float32)
    bad = int((~torch.isfinite(target)).sum())
    if bad:  # (else the loss turns NaN and the run stops blaming the learning rate)
        raise ConfigurationError(
            f"regression targets hold {bad} NaN or infinite value(s) of {target.numel()} "
            f"(targets of shape {tuple(target.shape)}): check the dataset"
        )
    if per_step_targets:
        if readout != "per_step":
            raise ConfigurationError(
                f"regression readout {readout!r}: the targets are one per step; use per_step"
            )
        if target.numel() != steps * batch * width or target.shape[:2] != (batch, steps):
            raise ShapeError(
                f"per-step targets must be [B, T, ...] = [{batch}, {steps}, ...] with {width} "
                f"value(s) per step, got shape {tuple(target.shape)}"
            )
        return out, target.reshape(batch, steps, width).transpose(0, 1)
    if target.dim() == 0 or target.shape[0] != batch:
        samples = f"of {len(target)} sample(s)" if target.dim() else "one scalar"
        raise ShapeError(
            f"regression output {tuple(out.shape)} is read as [T, B, ...] = [{steps}, "
            f"{batch}, ...], but the targets {tuple(target.shape)} are {samples}: the output "
            "must be time first (a model that averages over time itself returns [B, ...]: "
            "return every step and let --regression-readout decode them)"
        )
    if target.numel() != batch * width:
        raise ShapeError(
            f"targets of shape {tuple(target.shape)} do not give the {width} value(s) per "
            f"sample of the output {tuple(out.shape)} (batch {batch})"
        )
    target = target.reshape(batch, width)
    if readout == "mean":
        return out.mean(0), target
    if readout == "last":
        return out[-1], target
    return out, target.unsqueeze(0).expand(steps, batch, width)


class RegressionLoss(nn.Module):
    """``loss(decoded output, target)`` (:func:`regression_pairs`), torch's ``mse``,
    ``l1`` or ``huber`` (its ``delta`` in ``kwargs``), mean over the values.

    Raises:
        ConfigurationError: an unknown loss or readout, or an argument the loss does
            not take.
    """

    def __init__(
        self, loss: str, readout: str, per_step_targets: bool = False, **kwargs: Any
    ) -> None:
        super().__init__()
        if loss not in REGRESSION_LOSSES:
            raise ConfigurationError(
                f"--loss {loss}: a regression run trains {', '.join(REGRESSION_LOSSES)} "
                "(of the decoded output and the target)"
            )
        accepted = {"huber": {"delta"}}.get(loss, set())
        unknown = sorted(set(kwargs) - accepted)
        if unknown:
            raise ConfigurationError(
                f"--loss-kwargs {unknown}: the {loss} loss takes "
                + (", ".join(sorted(accepted)) if accepted else "no arguments")
            )
        if readout not in REGRESSION_READOUTS:
            regression_pairs(torch.zeros(1, 1), torch.zeros(1), readout)  # raises
        self.loss, self.readout, self.per_step_targets = loss, readout, per_step_targets
        self.kwargs = kwargs

    def pairs(self, out: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """The decoded output and its target (:func:`regression_pairs`)."""
        return regression_pairs(out, target, self.readout, self.per_step_targets)

    def forward(self, out: Tensor, target: Tensor) -> Tensor:
        pred, tgt = self.pairs(out, target)
        return REGRESSION_LOSSES[self.loss](pred, tgt, **self.kwargs)


@dataclass
class RegressionSums(EpochSums):
    """:class:`~spikeflow.training.loop.EpochSums` (loss x samples, samples) with the
    sums behind the metrics, over every decoded value: squared and absolute errors,
    the targets and their squares, and how many values; and per output (the pairs'
    last dimension) the squared errors, the targets and their squares, for R², with how
    many values they cover (``output_values``: fewer than ``values`` after a resume from
    a checkpoint written before the per-output sums, where R² falls back to pooled)."""

    sse: float = 0.0
    sae: float = 0.0
    y: float = 0.0
    y2: float = 0.0
    values: float = 0.0
    output_values: float = 0.0
    output_sse: list[float] = dataclasses.field(default_factory=list)
    output_y: list[float] = dataclasses.field(default_factory=list)
    output_y2: list[float] = dataclasses.field(default_factory=list)

    def add_pairs(
        self, loss: float, pred: Tensor, target: Tensor, count: int, spike_reg: float = 0.0
    ) -> None:
        """Add one batch of ``count`` samples: its mean loss, its decoded pairs (``[...,
        D]``, ``D`` outputs; 1-D: one output) and the spike regulariser's term
        (``--spike-reg``; not in the loss).

        Raises:
            ShapeError: pairs of different shapes, or another number of outputs than
                the batches before.
        """
        if pred.shape != target.shape:
            raise ShapeError(
                f"regression pairs differ in shape: prediction {tuple(pred.shape)}, "
                f"target {tuple(target.shape)}"
            )
        width = int(target.shape[-1]) if target.dim() >= 2 else 1
        if self.output_sse and len(self.output_sse) != width:
            raise ShapeError(
                f"regression pairs with {width} output(s) after {len(self.output_sse)}"
            )
        self.add(loss * count, 0.0, count, spike_reg * count)
        error = pred.detach().double().reshape(-1, width) - target.double().reshape(-1, width)
        y = target.double().reshape(-1, width)
        self.sse += float((error * error).sum())
        self.sae += float(error.abs().sum())
        self.y += float(y.sum())
        self.y2 += float((y * y).sum())
        self.values += float(y.numel())
        self.output_values += float(y.numel())
        for name, column_sums in (
            ("output_sse", (error * error).sum(0)),
            ("output_y", y.sum(0)),
            ("output_y2", (y * y).sum(0)),
        ):
            old = getattr(self, name) or [0.0] * width
            setattr(self, name, [a + float(b) for a, b in zip(old, column_sums)])

    def reduced(self, ctx: DistContext) -> RegressionSums:
        """The sums over all processes (a process that saw no pairs adds nothing)."""
        scalars = [getattr(self, f.name) for f in dataclasses.fields(self)][:-3]
        total = type(self)(*ctx.all_reduce_sum(scalars))
        lists = ctx.all_gather_object((self.output_sse, self.output_y, self.output_y2))
        for i, name in enumerate(("output_sse", "output_y", "output_y2")):
            columns = [part[i] for part in lists if part[i]]
            setattr(total, name, [sum(c) for c in zip(*columns)] if columns else [])
        return total

    @property
    def accuracy(self) -> float:
        return math.nan  # no class accuracy in regression

    def metrics(self) -> dict[str, float]:
        """``mse`` (mean squared error) and ``mae`` (mean absolute error) over every
        value, and ``r2``: per output ``1 - SSE / Σ (y - ȳ)²`` (0 for the predictor of
        that output's mean), then the mean over the outputs (scikit-learn's
        ``r2_score``, ``multioutput="uniform_average"``); an output whose targets are
        constant has no R² and is left out (NaN if all are; scikit-learn's default
        scores it 0 and keeps it). Pooled (one mean over all outputs) where the
        per-output sums cover fewer values than the epoch (a resume from a checkpoint
        written before them)."""
        n = self.values
        if not n:
            return {"mse": math.nan, "mae": math.nan, "r2": math.nan}
        if self.output_sse and self.output_values == n:
            rows = n / len(self.output_sse)
            scores = [
                _r2(sse, y, y2, rows)
                for sse, y, y2 in zip(self.output_sse, self.output_y, self.output_y2)
            ]
            scores = [r for r in scores if not math.isnan(r)]
            r2 = sum(scores) / len(scores) if scores else math.nan
        else:  # some of the epoch's sums come from a checkpoint without per-output ones
            r2 = _r2(self.sse, self.y, self.y2, n)
        return {"mse": self.sse / n, "mae": self.sae / n, "r2": r2}


def _r2(sse: float, y: float, y2: float, n: float) -> float:
    """``1 - SSE / Σ (y - ȳ)²`` from the sums over ``n`` values; NaN for constant targets."""
    spread = y2 - y * y / n
    return 1.0 - sse / spread if spread > 1e-12 * max(y2, 1.0) else math.nan


def _given(config: TrainConfig) -> list[tuple[str, str]]:
    """``(option, why)`` for each option ``config`` sets that a regression run refuses."""
    d = TrainConfig()
    yet = "not supported for regression yet"
    checks = [
        ("--readout", config.readout != d.readout,
         "reads a class; a regression run decodes with --regression-readout"),
        *class_label_checks(config),
        ("--teacher", config.teacher is not None, "distils class scores"),
        ("--online", config.online, yet),
        ("--tbptt", config.tbptt is not None, yet),
        ("--plots on", config.plots == "on", "no plots for regression runs yet"),
    ]  # fmt: skip
    return [(option, why) for option, used, why in checks if used]


class RegressionTask:
    """What a regression run needs beyond the classification trainer: its datasets,
    model, loss and evaluation (module docstring).

    Args:
        dataset: one of :data:`REGRESSION_DATASETS`.
    """

    def __init__(self, dataset: str) -> None:
        if dataset not in REGRESSION_DATASETS:
            raise ConfigurationError(
                f"unknown regression dataset {dataset!r}; available: "
                f"{', '.join(REGRESSION_DATASETS)}"
            )
        self.dataset = dataset
        self.spec = REGRESSION_DATASETS[dataset]

    def resolve(self, config: TrainConfig) -> TrainConfig:
        """``config`` (a copy) with the dataset's defaults where it holds None (model,
        ``T``, batch size, learning rate, loss ``mse``, ``split_by="number"``) and, for
        a dataset with a target per step, ``--regression-readout per_step``; validated,
        after refusing the options a regression run cannot take (named in the error).

        Raises:
            ConfigurationError: such an option, a loss other than mse/l1/huber, or a
                readout the targets do not fit.
        """
        refuse_given(_given(config), self.dataset, "regression")
        if config.loss is not None and config.loss not in REGRESSION_LOSSES:
            raise ConfigurationError(
                f"--loss {config.loss}: dataset {self.dataset!r} is a regression task, trained "
                f"with --loss {', '.join(REGRESSION_LOSSES)} (of the decoded output; "
                "--regression-readout decodes it)"
            )
        values = dataclasses.replace(config, dataset=self.dataset)
        spec = self.spec
        defaults = {"model": spec.model, "loss": "mse", "T": spec.T,
                    "batch_size": spec.batch_size, "lr": spec.lr, "split_by": "number"}  # fmt: skip
        fill_defaults(values, defaults)
        if values.regression_readout is None:  # the only fitting one, else a rate
            values.regression_readout = "per_step" if spec.per_step_targets else "mean"
        if spec.per_step_targets and values.regression_readout != "per_step":
            raise ConfigurationError(
                f"--regression-readout {values.regression_readout}: dataset {self.dataset!r} "
                "has a target per step (one steering angle per frame): use per_step"
            )
        return values.validate()

    # -- data -------------------------------------------------------------------------

    def build_datasets(
        self, config: TrainConfig, with_train: bool = True
    ) -> tuple[Dataset | None, Dataset, DataInfo]:
        """The train split (None unless ``with_train``), the test split (subsets with
        ``--train-samples`` / ``--test-samples``) and their
        :class:`~spikeflow.training.data.DataInfo` (``num_classes``: values per target).

        Raises:
            ConfigurationError: an option the dataset has no use for, or a bad
                ``--dataset-kwargs``; MissingExtraError: scikit-learn (diabetes) or
                Pillow (pilotnet) missing; DatasetNotFoundError: no PilotNet files.
        """
        if self.dataset == "diabetes":
            train, test, info = _diabetes(config)
        else:
            train, test, info = _pilotnet(config, with_train)
        if train is not None and with_train:
            train = even_subset(train, config.train_samples)
        return (train if with_train else None), even_subset(test, config.test_samples), info

    # -- model and loss ---------------------------------------------------------------

    def build_model(self, config: TrainConfig, info: DataInfo) -> nn.Module:
        """The zoo model of ``config`` with ``num_classes`` = the values per target."""
        from spikeflow.training.build import build_model

        return build_model(config, info)

    def make_loss(self, config: TrainConfig) -> RegressionLoss:
        """The run's :class:`RegressionLoss`."""
        return RegressionLoss(config.loss, config.regression_readout,  # type: ignore[arg-type]
                              self.spec.per_step_targets, **config.loss_kwargs)  # fmt: skip

    # -- evaluation -------------------------------------------------------------------

    @torch.no_grad()
    def evaluate(
        self,
        model: nn.Module,
        dataset: Dataset,
        loss_fn: RegressionLoss,
        *,
        T: int,
        static: StaticLayout,
        batch_size: int,
        ctx: DistContext,
        amp: str = "off",
        workers: int = 0,
        progress: bool = False,
    ) -> tuple[RegressionSums, float, list[LayerStats]]:
        """The loss and metric sums (over every process), mean firing rate and per-layer
        statistics of ``model`` (in eval mode) on ``dataset``; each process runs every
        ``world_size``-th sample (an FSDP-sharded ``model``: a process with fewer
        batches runs its first again, uncounted, as many times as it has fewer)."""
        was_training = model.training
        model.eval()
        indices = list(range(ctx.rank, len(dataset), ctx.world_size))  # type: ignore[arg-type]
        loader = DataLoader(dataset, batch_size=batch_size, sampler=indices, num_workers=workers)
        sums = RegressionSums()
        monitor = SpikeMonitor(model)
        bar = tqdm(total=len(loader), desc="test", disable=not (progress and ctx.is_main),
                   leave=False, dynamic_ncols=True)  # fmt: skip
        missing, first = missing_forwards(model, ctx, len(loader)), None
        try:
            for x, y in loader:
                first = x if first is None else first
                x = to_time_major(x.to(ctx.device), T, static)
                with autocast_context(ctx.device, amp):
                    out = model(x)
                pred, target = loss_fn.pairs(out, y)
                loss = REGRESSION_LOSSES[loss_fn.loss](pred, target, **loss_fn.kwargs)
                sums.add_pairs(float(loss), pred, target, len(y))
                bar.update(1)
            layer_stats, rate = monitor_results(model, dataset, first, missing, monitor, ctx,
                                                T, static, amp)  # fmt: skip
        finally:
            bar.close()
            monitor.remove()
            model.train(was_training)
        return sums.reduced(ctx), rate, layer_stats


def _diabetes(config: TrainConfig) -> tuple[Dataset, Dataset, DataInfo]:
    """scikit-learn's diabetes data, split and standardised (module docstring)."""
    given = file_dataset_options(config)
    if given:
        raise ConfigurationError(
            f"{', '.join(given)}: the 'diabetes' dataset ships with scikit-learn: it reads "
            "no folder, caches nothing, has no events to split and takes no arguments; "
            f"leave {'it' if len(given) == 1 else 'them'} out"
        )
    try:
        from sklearn.datasets import load_diabetes
        from sklearn.model_selection import train_test_split
    except ImportError as exc:
        raise MissingExtraError("the diabetes dataset", "scikit-learn", "examples") from exc
    data = load_diabetes()
    x_tr, x_te, y_tr, y_te = train_test_split(data.data, data.target, test_size=0.2, random_state=0)
    x_mean, x_std = x_tr.mean(0), x_tr.std(0)
    y_mean, y_std = y_tr.mean(), y_tr.std()

    def split(x: Any, y: Any) -> TensorDataset:
        features = torch.as_tensor((x - x_mean) / x_std, dtype=torch.float32)
        target = torch.as_tensor((y - y_mean) / y_std, dtype=torch.float32).unsqueeze(1)
        return TensorDataset(features, target)

    return split(x_tr, y_tr), split(x_te, y_te), DataInfo(1, x_tr.shape[1], (1, 1), static=True)


def _pilotnet(config: TrainConfig, with_train: bool) -> tuple[Dataset | None, Dataset, DataInfo]:
    """PilotNetDriving's splits: ``T`` frames per sample, ``--dataset-kwargs image_size``."""
    from spikeflow.data.datasets.pilotnet import PilotNetDriving

    if config.data_dir is None:
        raise ConfigurationError(
            "dataset 'pilotnet' needs --data-dir (the folder holding driving_dataset/)"
        )
    given = [
        option
        for option, used in (
            (f"--cache-dir {config.cache_dir}", config.cache_dir is not None),
            (f"--split-by {config.split_by}", config.split_by not in (None, "number")),
            ("--download", config.download),
        )
        if used
    ]
    if given:
        raise ConfigurationError(
            f"{', '.join(given)}: dataset 'pilotnet' reads its frames from --data-dir (no "
            "download: its host needs a browser), caches nothing and has no events to "
            f"split; leave {'it' if len(given) == 1 else 'them'} out"
        )
    kwargs = dict(config.dataset_kwargs)
    for key in kwargs:
        if key == "sequence":
            raise ConfigurationError("--dataset-kwargs sequence=...: set by --T, not here")
        if key != "image_size":
            raise ConfigurationError(
                f"--dataset-kwargs: PilotNetDriving takes no argument {key!r}; it takes image_size"
            )
    size = tuple(kwargs.get("image_size", (33, 100)))
    train = PilotNetDriving(config.data_dir, True, config.T, size) if with_train else None  # type: ignore[arg-type]
    test = PilotNetDriving(config.data_dir, False, config.T, size)  # type: ignore[arg-type]
    return train, test, DataInfo(1, 3, test.image_size, static=False)
