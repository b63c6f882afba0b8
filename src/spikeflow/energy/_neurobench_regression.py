"""NeuroBench's regression metrics (MSE, SMAPE, R2) accumulated batch by batch, for
:class:`~spikeflow.energy.NeuroBenchCounter` (see :mod:`spikeflow.energy.neurobench`)."""

from __future__ import annotations

import torch
from torch import Tensor

from spikeflow.errors import ShapeError


class _RegressionScores:
    """NeuroBench's MSE and SMAPE (per batch, weighted by batch sizes) and R2 (over
    the set: per column, the squared errors and the targets' spread, merged batch by
    batch with Chan et al.'s update), in float64."""

    def __init__(self) -> None:
        self.weight = 0  # the scored batches' sizes
        self.mse = self.smape = 0.0  # per-batch values times the batch size
        self.n = 0  # rows seen by R2
        self.mean: Tensor | None = None  # per column: the targets' mean,
        self.spread = torch.zeros(0, dtype=torch.float64)  # Σ(y − ȳ)²
        self.sse = torch.zeros(0, dtype=torch.float64)  # and Σ(y − p)²

    def add(self, preds: Tensor, targets: Tensor, batch: int) -> None:
        p = preds.detach().to("cpu", torch.float64)
        y = targets.detach().to("cpu", torch.float64)
        rows_p = p.reshape(-1, 1) if p.dim() < 2 else p.reshape(-1, p.shape[-1])
        rows_y = y.reshape(rows_p.shape)
        if self.mean is not None and rows_y.shape[1] != self.mean.numel():
            raise ShapeError(
                f"NeuroBenchCounter.score_regression: {rows_y.shape[1]} output columns, "
                f"the earlier batches had {self.mean.numel()}"
            )
        self.mse += float(((p - y) ** 2).mean()) * batch
        smape = 200 * ((p - y).abs() / (p.abs() + y.abs())).mean()
        self.smape += float(torch.nan_to_num(smape, nan=200.0)) * batch  # 0/0: 200
        self.weight += batch
        m = rows_y.shape[0]
        mean_b = rows_y.mean(0)
        spread_b = ((rows_y - mean_b) ** 2).sum(0)
        if self.mean is None:
            self.mean, self.spread, self.sse = mean_b, spread_b, torch.zeros_like(mean_b)
        else:  # Chan et al.: merge two sets' mean and Σ(y − ȳ)² without the rows
            delta, total = mean_b - self.mean, self.n + m
            self.spread = self.spread + spread_b + delta**2 * (self.n * m / total)
            self.mean = self.mean + delta * (m / total)
        self.sse = self.sse + ((rows_y - rows_p) ** 2).sum(0)
        self.n += m

    def results(self) -> dict[str, float | None]:
        if self.weight == 0:
            return {"mse": None, "smape": None, "r2": None}
        r2 = 1 - self.sse / self.spread  # a constant column: −inf (or nan), as NeuroBench
        return {
            "mse": self.mse / self.weight,
            "smape": self.smape / self.weight,
            "r2": float(r2.mean()),
        }
