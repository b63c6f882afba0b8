"""The PNG plots a :class:`~spikeflow.training.trainer.Trainer` run draws at its end:
learning curves, firing rates per epoch and a raster of one test sample."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from spikeflow.training.data import to_time_major
from spikeflow.training.fsdp import is_sharded
from spikeflow.training.metric_logs import read_csv
from spikeflow.training.monitors import record_spikes

__all__ = ["PlotsMixin"]


class PlotsMixin:
    """The :class:`~spikeflow.training.trainer.Trainer`'s plot methods (they read its
    attributes)."""

    def _plots(self) -> list[Path]:
        cfg = self.config
        if not self.ctx.is_main or cfg.plots == "off" or not self.history:
            return []
        from spikeflow.training import plots

        try:
            plots.check_matplotlib()
        except ImportError:
            if cfg.plots == "on":
                raise
            self.log("no plots: matplotlib is not installed (pip install 'spikeflow[plot]')")
            return []
        out = self.output_dir
        written: list[Path] = []
        try:
            written.append(plots.plot_learning_curves(self.history, out / "learning_curves.png"))
            if self.train_monitor.layers:
                self._activity_plots(plots, out, written)
            else:  # a model without spikeflow spiking layers (or SpikeTap): empty axes
                self.log("no firing-rate plot or raster: the model has no spikeflow spiking "
                         "layer to record (its firing rates read nan)")  # fmt: skip
        except OSError as exc:  # the run is complete and saved: a plot is not worth failing it
            self.log(f"warning: plots not written ({exc}); the run's results are saved in {out}")
        if written:
            self.log("plots: " + ", ".join(str(p) for p in written))
        return written

    def _activity_plots(self, plots: Any, out: Path, written: list[Path]) -> None:
        """The firing rates per epoch and the raster of test sample 0, each added to
        ``written`` once drawn."""
        cfg = self.config
        rows = read_csv(out / "layers.csv")
        written.append(plots.plot_firing_rates(rows, out / "firing_rates.png"))
        split = getattr(self, "tp", None) is not None
        if is_sharded(self.raw_model) or split:  # its forward joins every process (weights
            # gathered, or the split channels summed), which have finished: rank 0 alone
            # cannot run the raster's sample
            flag = "--tensor-parallel" if split else "--fsdp"
            self.log(f"no raster under {flag}: rank 0 cannot run a forward alone "
                     "(spikeflow eval reads the checkpoint)")  # fmt: skip
            return
        counts = {row["layer"]: int(row["neurons"]) for row in rows if row.get("neurons")}
        x, y = self.test_set[0]
        x = to_time_major(torch.as_tensor(x).unsqueeze(0).to(self.ctx.device), cfg.T,  # type: ignore[arg-type]
                          self.layout)  # fmt: skip
        self.raw_model.eval()
        spikes = record_spikes(self.raw_model, x)
        written.append(plots.plot_raster(spikes, out / "raster.png",
                                         title=f"test sample 0 (label {int(y)})",
                                         neuron_counts=counts))  # fmt: skip
