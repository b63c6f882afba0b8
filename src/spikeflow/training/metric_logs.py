"""Where a run's numbers go: ``metrics.csv`` (one row per epoch), ``layers.csv`` (one row
per epoch, split and spiking layer) and, optionally, TensorBoard event files."""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from spikeflow.data.cache import atomic_write_bytes
from spikeflow.errors import MissingExtraError
from spikeflow.training.monitors import LayerStats

__all__ = [
    "EMA_COLUMNS",
    "EPOCH_COLUMNS",
    "LAYER_COLUMNS",
    "PRUNE_COLUMNS",
    "SPIKE_REG_COLUMNS",
    "CSVLogger",
    "TensorBoardLogger",
    "check_tensorboard",
    "epoch_columns",
    "read_csv",
]

EPOCH_COLUMNS = (
    "epoch", "lr", "train_loss", "train_acc", "train_rate", "test_loss", "test_acc",
    "test_rate", "epoch_time_s",
)  # fmt: skip
#: The columns a run that prunes adds: the share of zero linear/convolution weights.
PRUNE_COLUMNS = ("sparsity",)
#: The column a run with ``--spike-reg`` adds: the regulariser's mean term per sample.
SPIKE_REG_COLUMNS = ("train_spike_reg",)
#: The model EMA's evaluation (``--model-ema``).
EMA_COLUMNS = ("test_loss_ema", "test_acc_ema", "test_rate_ema")
LAYER_COLUMNS = (
    "epoch", "split", "layer", "firing_rate", "spikes_per_sample", "neurons", "v_mean", "v_std",
)  # fmt: skip


def epoch_columns(pruning: bool, spike_reg: bool = False, ema: bool = False) -> tuple[str, ...]:
    """The columns of ``metrics.csv`` for a run that prunes or does not, with a spike
    regulariser or without, with a model EMA or without."""
    return (EPOCH_COLUMNS + (PRUNE_COLUMNS if pruning else ())
            + (SPIKE_REG_COLUMNS if spike_reg else ()) + (EMA_COLUMNS if ema else ()))  # fmt: skip


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value)
    return value


def _csv_text(columns: Sequence[str], rows: Sequence[Mapping[str, Any]], header: bool) -> str:
    """``rows`` as CSV lines (after a header line when ``header``)."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(columns))
    if header:
        writer.writeheader()
    for row in rows:
        writer.writerow({key: _fmt(row[key]) for key in columns})
    return text.getvalue()


def _append(path: Path, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
    new = not path.exists() or path.stat().st_size == 0
    with open(path, "a", newline="", encoding="utf-8") as handle:
        handle.write(_csv_text(columns, rows, header=new))
        handle.flush()
        os.fsync(handle.fileno())


def read_csv(path: str | os.PathLike) -> list[dict[str, str]]:
    """The rows of a CSV file written here (values as strings)."""
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _rows_up_to(path: Path, epoch: int) -> list[dict[str, str]]:
    """The rows of ``path`` for epochs <= ``epoch``, in order. Reading stops at the
    first row that is not a whole row of an epoch (the torn tail of a write cut off by
    a crash or a power loss: half a row, or NUL bytes), since rows are appended in
    epoch order."""
    kept: list[dict[str, str]] = []
    with open(path, newline="", errors="replace") as handle:
        reader = csv.DictReader(line.replace("\0", "") for line in handle)
        try:
            for row in reader:
                if None in row.values() or None in row:  # too few or too many fields
                    break
                try:
                    row_epoch = int(row["epoch"])
                except (KeyError, TypeError, ValueError):
                    break
                if row_epoch <= epoch:
                    kept.append(row)
        except csv.Error:
            pass
    return kept


def _rewrite(path: Path, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
    """Replace ``path`` by ``rows`` atomically (a temporary file, then a rename)."""
    atomic_write_bytes(path, _csv_text(columns, rows, header=True).encode("utf-8"))


class CSVLogger:
    """Appends per-epoch rows to ``metrics.csv`` and ``layers.csv`` in ``directory``.

    On a resume, rows of epochs after the checkpoint (written by the interrupted run
    after its last checkpoint) and a torn last row are dropped first, rewriting each file
    atomically, so the files end up as an uninterrupted run's; without a ``metrics.csv``
    it starts from ``history`` (the checkpoint's rows).
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        resume_epoch: int | None = None,
        history: Sequence[Mapping[str, Any]] = (),
        columns: Sequence[str] = EPOCH_COLUMNS,
    ) -> None:
        self.directory = Path(directory)
        self.columns = tuple(columns)
        self.metrics_path = self.directory / "metrics.csv"
        self.layers_path = self.directory / "layers.csv"
        if resume_epoch is None:
            for path in (self.metrics_path, self.layers_path):
                path.unlink(missing_ok=True)
        else:
            if not self.metrics_path.exists() and history:
                # A resume into a folder without the run's log: the checkpoint's rows.
                _rewrite(self.metrics_path, self.columns,
                         [r for r in history if int(r["epoch"]) <= resume_epoch])  # fmt: skip
            for path, kept in ((self.metrics_path, self.columns),
                               (self.layers_path, LAYER_COLUMNS)):  # fmt: skip
                if path.exists():
                    _rewrite(path, kept, _rows_up_to(path, resume_epoch))

    def log_epoch(self, row: Mapping[str, Any], layers: Mapping[str, list[LayerStats]]) -> None:
        """Append the epoch's row and its per-layer statistics (``{split: stats}``)."""
        _append(self.metrics_path, self.columns, [row])
        layer_rows = [
            {
                "epoch": row["epoch"], "split": split, "layer": s.name,
                "firing_rate": s.firing_rate, "spikes_per_sample": s.spikes_per_sample,
                "neurons": s.neurons, "v_mean": s.v_mean, "v_std": s.v_std,
            }
            for split, stats in layers.items()
            for s in stats
        ]  # fmt: skip
        _append(self.layers_path, LAYER_COLUMNS, layer_rows)


def check_tensorboard() -> None:
    """Raise :class:`MissingExtraError` unless TensorBoard logging can work."""
    try:
        import tensorboard  # noqa: F401
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError as exc:
        raise MissingExtraError("TensorBoard logging (--tensorboard)", "tensorboard",
                                "tensorboard") from exc  # fmt: skip


class TensorBoardLogger:
    """Writes the per-epoch numbers as TensorBoard scalars under ``directory/tensorboard``."""

    def __init__(self, directory: str | os.PathLike) -> None:
        check_tensorboard()
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(Path(directory) / "tensorboard"))

    def log_epoch(
        self,
        row: Mapping[str, Any],
        layers: Mapping[str, list[LayerStats]],
        layer_sparsity: Mapping[str, float] | None = None,
    ) -> None:
        """Scalars ``loss/train``, ``accuracy/test``, ``firing_rate/<layer>``, ... at the
        epoch (a regression run's ``mse/<split>``, ``mae/<split>``, ``r2/<split>`` in
        place of the accuracy); with pruning or quantization ``sparsity`` and
        ``sparsity_layer/<layer>`` (``layer_sparsity``: each linear or convolution
        layer's share of zero weights); with a model EMA ``loss_ema/test``, ...."""
        epoch = int(row["epoch"])
        for split in ("train", "test"):
            self.writer.add_scalar(f"loss/{split}", row[f"{split}_loss"], epoch)
            for key, tag in (("acc", "accuracy"), ("mse", "mse"), ("mae", "mae"), ("r2", "r2")):
                if f"{split}_{key}" in row:
                    self.writer.add_scalar(f"{tag}/{split}", row[f"{split}_{key}"], epoch)
            self.writer.add_scalar(f"firing_rate/{split}", row[f"{split}_rate"], epoch)
        for key in ("loss", "acc", "mse", "mae", "r2"):
            if f"test_{key}_ema" in row:  # (--model-ema)
                tag = "accuracy" if key == "acc" else key
                self.writer.add_scalar(f"{tag}_ema/test", row[f"test_{key}_ema"], epoch)
        self.writer.add_scalar("lr", row["lr"], epoch)
        if "sparsity" in row:
            self.writer.add_scalar("sparsity", row["sparsity"], epoch)
        if "train_spike_reg" in row:
            self.writer.add_scalar("spike_reg/train", row["train_spike_reg"], epoch)
        for name, value in (layer_sparsity or {}).items():
            self.writer.add_scalar(f"sparsity_layer/{name}", value, epoch)
        for split, stats in layers.items():
            for s in stats:
                self.writer.add_scalar(f"layer_rate_{split}/{s.name}", s.firing_rate, epoch)
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self.writer.close()
