"""Bootstrap training: train a rate-coded SNN fast through an ANN fitted to it.

Lava-DL's ``lava.lib.dl.bootstrap`` (Shrestha et al.): each spiking block measures its
own input-rate → output-rate relation while the network runs as an SNN, fits a
piecewise-linear activation to those points, and most training steps then run the
network as an ANN (one step, the fitted activations in place of the neurons), which is
much cheaper than backpropagation through time. A schedule re-samples and re-fits every
few epochs so the ANN keeps tracking the SNN, and a *crossover* keeps the first blocks
spiking (hybrid training). Four modes (:class:`Mode`):

* ``SNN``: the block runs its synapse and spiking neuron over ``[T, B, ...]``.
* ``SAMPLE``: as ``SNN``, and the block's :class:`AnnSampler` records, per neuron and
  sample, the time-mean of the neuron's input ``z`` and of its spikes ``a``.
* ``FIT``: the sampler fits the piecewise-linear activation to its points
  (:meth:`AnnSampler.fit`), drops a random half of them, and the block runs as ``ANN``.
* ``ANN``: the block's synapse, then the fitted activation, on rates ``[1, B, ...]``.

Pieces: :class:`AnnSampler` (points, fit, activation), :func:`piecewise_linear` (the
activation as a pure function, with Lava-DL's gradient), :class:`BootstrapBlock`
(synapse + neuron + sampler), :class:`BootstrapSequential` (a network whose blocks take
their modes from a :class:`LayerMode`, and which turns spikes into rates where the
first ANN block starts), :class:`Scheduler` (the mode of each training and evaluation
iteration). Where this differs from Lava-DL, and why, is in ``docs/bootstrap.md``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from spikeflow.base import check_time_major
from spikeflow.errors import ConfigurationError, StateError

__all__ = [
    "AnnSampler",
    "BootstrapBlock",
    "BootstrapSequential",
    "LayerMode",
    "Mode",
    "Scheduler",
    "piecewise_linear",
]


class Mode(enum.Enum):
    """A bootstrap block's mode of operation (Lava-DL's ``bootstrap.Mode``)."""

    SNN = 0
    ANN = 1
    SAMPLE = 2
    FIT = 3


def _check_int(owner: str, name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigurationError(f"{owner}: {name} must be an int >= {low}, got {value!r}")
    return value


def _check_float(owner: str, name: str, value: object, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"{owner}: {name} must be a number, got {value!r}")
    if not low <= float(value) <= high:
        raise ConfigurationError(f"{owner}: {name} must be in [{low}, {high}], got {value!r}")
    return float(value)


class _PiecewiseLinear(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, z: Tensor, centers: Tensor, slopes: Tensor, a_max: float, eps: float
    ) -> Tensor:
        knots = centers.to(z.dtype)
        slope = slopes.to(z.dtype)
        a = torch.zeros_like(z)
        for i in range(knots.shape[0] - 1):  # later segments win, as in Lava-DL
            inside = (z > knots[i, 0]) & (z <= knots[i + 1, 0])
            a = torch.where(inside, knots[i, 1] + slope[i] * (z - knots[i, 0]), a)
        a = torch.where(z > knots[-1, 0], a + a_max, a)
        ctx.save_for_backward(z, knots, slope)
        ctx.eps = eps
        return a

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, None, None, None, None]:
        z, knots, slope = ctx.saved_tensors
        grad = torch.zeros_like(z)
        for i in range(knots.shape[0] - 1):
            inside = (z > knots[i, 0]) & (z <= knots[i + 1, 0])
            grad = torch.where(inside, slope[i], grad)
        grad = grad * (knots[-1, 0] / knots[-1, 1]) + ctx.eps
        return grad * grad_output, None, None, None, None


def piecewise_linear(
    z: Tensor, centers: Tensor, slopes: Tensor, a_max: float, eps: float = 1e-5
) -> Tensor:
    """The bootstrap ANN activation: a piecewise-linear function through ``centers``.

    ``centers`` is ``[K, 2]`` (points ``(z_k, a_k)``), ``slopes`` ``[K - 1]``. For ``z``
    in ``(z_k, z_{k+1}]`` the output is ``a_k + slopes[k] (z - z_k)``; it is 0 for
    ``z <= z_0`` and ``a_max`` for ``z > z_{K-1}``. The gradient is Lava-DL's: on segment
    ``k`` it is ``slopes[k] · z_{K-1} / a_{K-1} + eps`` and ``eps`` outside the segments
    (the factor ``z_{K-1} / a_{K-1}`` undoes the rate scale of the fit, so a layer's
    gradient has the magnitude it would have with a unit-slope ReLU; ``eps`` keeps dead
    and saturated units trainable). The knots should increase in ``z`` (an
    :class:`AnnSampler` fit gives them so when the rate rises with the input); where they
    do not, a later segment overrides an earlier one, as in Lava-DL.

    Raises:
        ConfigurationError: ``centers`` not ``[K, 2]`` with ``K >= 2``, or ``slopes`` not
            ``[K - 1]``.
    """
    if centers.dim() != 2 or centers.shape[1] != 2 or centers.shape[0] < 2:
        raise ConfigurationError(
            f"piecewise_linear: centers must be [K, 2] with K >= 2, got {tuple(centers.shape)}"
        )
    if slopes.shape != (centers.shape[0] - 1,):
        raise ConfigurationError(
            f"piecewise_linear: slopes must be [{centers.shape[0] - 1}] for "
            f"{centers.shape[0]} centers, got {tuple(slopes.shape)}"
        )
    return _PiecewiseLinear.apply(z, centers, slopes, float(a_max), float(eps))


class AnnSampler(nn.Module):
    """The points ``(z, a)`` a spiking block produces, and the ANN activation fitted to them.

    :meth:`append` records, per neuron and sample, the time-mean input ``z = <z[t]>`` and
    the firing rate ``a = <s[t]>`` of a time-major ``[T, B, ...]`` call. :meth:`fit`
    (Lava-DL's ``AnnSampler.fit``):

    1. ``a_max`` = the mean of the rates above ``sample_range[1] · max(a)``, at least
       ``min_max`` (Lava-DL's 0.8; if no point fired at all, ``min_max``);
    2. the rate range ``[sample_range[0], sample_range[1]] · a_max`` is cut into
       ``num_centers`` equal bins ``(lo, hi]``; each bin with points gives a center at the
       medians of its ``z`` and ``a``; after the first fit, a bin that also holds a
       previous center moves it by ``alpha`` towards the new medians (an exponential
       average), and a bin with no new points keeps its previous centers' mean;
    3. no center gives the unit slope through ``(0, 0)`` and ``(1, 1)``, one center the
       line through ``(0, 0)`` and it;
    4. slopes join consecutive centers (absolute values), the first and last are
       repeated, and the curve is extended down to ``a = 0`` and up to ``a = a_max``
       along them.

    :meth:`soft_clear` then drops a random half of the points, so the next fit sees
    old and new. Calling the sampler applies :func:`piecewise_linear` with the fit.
    ``centers``, ``slopes`` and ``a_max`` are buffers (saved in the state dict); the
    points are not.

    Args:
        num_centers: bins of the rate range (default 5; keep it below ``T / 2`` so each
            bin can hold a distinct rate).
        sample_range: the fraction of ``a_max`` the bins cover, ``0 <= lo < hi <= 1``
            (default ``(0.1, 0.9)``).
        eps: gradient floor of the activation (default 1e-5).
        alpha: weight of new medians against previous centers (default 0.1).
        min_max: the least ``a_max`` (default 0.8).

    Raises:
        ConfigurationError: an argument out of range.
        StateError: :meth:`fit` with no points, or a call before the first fit.
    """

    centers: Tensor
    slopes: Tensor
    a_max: Tensor

    def __init__(
        self,
        num_centers: int = 5,
        sample_range: tuple[float, float] = (0.1, 0.9),
        eps: float = 1e-5,
        alpha: float = 0.1,
        min_max: float = 0.8,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.num_centers = _check_int(owner, "num_centers", num_centers, 1)
        if not isinstance(sample_range, (tuple, list)) or len(sample_range) != 2:
            raise ConfigurationError(
                f"{owner}: sample_range must be (lo, hi), got {sample_range!r}"
            )
        lo = _check_float(owner, "sample_range[0]", sample_range[0], 0.0, 1.0)
        hi = _check_float(owner, "sample_range[1]", sample_range[1], 0.0, 1.0)
        if not lo < hi:
            raise ConfigurationError(
                f"{owner}: sample_range must have lo < hi, got {sample_range!r}"
            )
        self.sample_range = (lo, hi)
        self.eps = _check_float(owner, "eps", eps, 0.0, float("inf"))
        self.alpha = _check_float(owner, "alpha", alpha, 0.0, 1.0)
        self.min_max = _check_float(owner, "min_max", min_max, 0.0, float("inf"))
        self.z: np.ndarray = np.zeros(0)
        self.a: np.ndarray = np.zeros(0)
        self.register_buffer("centers", torch.zeros(0, 2, dtype=torch.float64))
        self.register_buffer("slopes", torch.zeros(0, dtype=torch.float64))
        self.register_buffer("a_max", torch.tensor(1.0, dtype=torch.float64))

    @property
    def fitted(self) -> bool:
        """Whether :meth:`fit` has run (or a fitted state dict was loaded)."""
        return self.centers.shape[0] >= 2

    @property
    def num_points(self) -> int:
        """How many ``(z, a)`` points are held."""
        return int(self.z.size)

    def append(self, spikes: Tensor, z: Tensor) -> None:
        """Record the time-means of ``spikes`` and ``z`` (both ``[T, B, ...]``, the same
        shape), one point per neuron and sample."""
        check_time_major(spikes, "AnnSampler.append", single_step=False)
        if spikes.shape != z.shape:
            raise ConfigurationError(
                f"AnnSampler.append: spikes {tuple(spikes.shape)} and input z "
                f"{tuple(z.shape)} must have the same shape"
            )
        a_rate = spikes.detach().mean(0).flatten().double().cpu().numpy()
        z_rate = z.detach().mean(0).flatten().double().cpu().numpy()
        self.a = np.concatenate([self.a, a_rate])
        self.z = np.concatenate([self.z, z_rate])

    def clear(self) -> None:
        """Drop all points."""
        self.z, self.a = np.zeros(0), np.zeros(0)

    def soft_clear(self, generator: torch.Generator | None = None) -> None:
        """Drop a random half (``len // 2``) of the points, keeping some history."""
        drop = torch.randperm(self.num_points, generator=generator)[: self.num_points // 2]
        keep = np.ones(self.num_points, dtype=bool)
        keep[drop.numpy()] = False
        self.z, self.a = self.z[keep], self.a[keep]

    def fit(self) -> None:
        """Fit the piecewise-linear activation to the points (see the class docstring)."""
        if self.num_points == 0:
            raise StateError(
                "AnnSampler.fit: no sampled points; run the block in Mode.SAMPLE first"
            )
        z, a = self.z, self.a
        lo, hi = self.sample_range
        top = a[a > hi * a.max()]
        a_max = max(float(top.mean()) if top.size else 0.0, self.min_max)
        edges = np.linspace(lo * a_max, hi * a_max, self.num_centers + 1)
        old = self.centers.numpy() if self.fitted else None
        centers: list[list[float]] = []
        for i in range(self.num_centers):
            new = (a > edges[i]) & (a <= edges[i + 1])
            prev = None
            if old is not None:
                in_bin = (old[:, 1] > edges[i]) & (old[:, 1] <= edges[i + 1])
                prev = old[in_bin] if in_bin.any() else None
            if new.any() and prev is not None:
                w = self.alpha
                centers.append([
                    w * float(np.median(z[new])) + (1 - w) * float(prev[:, 0].mean()),
                    w * float(np.median(a[new])) + (1 - w) * float(prev[:, 1].mean()),
                ])  # fmt: skip
            elif new.any():
                centers.append([float(np.median(z[new])), float(np.median(a[new]))])
            elif prev is not None:
                centers.append([float(prev[:, 0].mean()), float(prev[:, 1].mean())])
        if not centers:
            centers = [[0.0, 0.0], [1.0, 1.0]]
        elif len(centers) == 1:
            centers = [[0.0, 0.0], centers[0]]
        c = np.asarray(centers, dtype=np.float64)
        inner = np.abs((c[1:, 1] - c[:-1, 1]) / (c[1:, 0] - c[:-1, 0]))
        slopes = np.concatenate([inner[:1], inner, inner[-1:]])
        first = [c[0, 0] - c[0, 1] / slopes[0], 0.0]
        last = [c[-1, 0] + (a_max - c[-1, 1]) / slopes[-1], a_max]
        knots = np.vstack([first, c, last])
        if not np.all(np.isfinite(knots)) or not np.all(np.isfinite(slopes)):
            raise StateError(
                f"AnnSampler.fit: the fit is not finite (centers {c.tolist()}, slopes "
                f"{slopes.tolist()}): two centers share their input rate z"
            )
        self.centers = torch.from_numpy(knots).to(self.centers.device)
        self.slopes = torch.from_numpy(slopes).to(self.slopes.device)
        self.a_max = torch.tensor(a_max, dtype=torch.float64, device=self.a_max.device)

    @property
    def scale(self) -> float:
        """``z / a`` at the top of the fit: the input rate that saturates, per unit rate."""
        if not self.fitted:
            raise StateError("AnnSampler.scale: not fitted yet; call fit() first")
        return float(self.centers[-1, 0] / self.centers[-1, 1])

    def forward(self, z: Tensor) -> Tensor:
        """The fitted activation of ``z`` (:func:`piecewise_linear`)."""
        if not self.fitted:
            raise StateError(
                "AnnSampler: no activation fitted yet; sample (Mode.SAMPLE) and fit "
                "(Mode.FIT or fit()) before running in Mode.ANN"
            )
        return piecewise_linear(z, self.centers, self.slopes, float(self.a_max), self.eps)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        for name in ("centers", "slopes"):  # a fitted state dict resizes the empty buffers
            key = prefix + name
            if key in state_dict:
                setattr(self, name, torch.empty_like(state_dict[key]))
        super()._load_from_state_dict(state_dict, prefix, *args)

    def extra_repr(self) -> str:
        return (
            f"num_centers={self.num_centers}, sample_range={self.sample_range}, "
            f"eps={self.eps:g}, alpha={self.alpha:g}, fitted={self.fitted}"
        )


class BootstrapBlock(nn.Module):
    """A spiking block that also runs as its fitted ANN (Lava-DL's ``bootstrap.block``).

    ``synapse`` (a multi-step layer: :class:`spikeflow.layers.Linear`, ``Conv2d``, or a
    sequential of them) maps the input to the neuron's input ``z``; ``neuron`` (any
    multi-step spiking neuron, e.g. :class:`~spikeflow.neurons.CubaLIFNode`) spikes on
    it. ``forward(x, mode)``: ``SNN`` returns the spikes, ``SAMPLE`` also records
    ``(z, spikes)`` in ``sampler``, ``FIT`` fits the sampler, drops half its points and
    runs as ``ANN``, ``ANN`` returns ``sampler(synapse(x))`` (``x`` a rate, ``[1, B,
    ...]`` as :class:`BootstrapSequential` passes it).

    Args:
        synapse: the layer (or layers) before the neuron.
        neuron: the spiking neuron.
        sampler: the :class:`AnnSampler` (default: a new one with its defaults).
    """

    def __init__(
        self, synapse: nn.Module, neuron: nn.Module, sampler: AnnSampler | None = None
    ) -> None:
        super().__init__()
        for name, value in (("synapse", synapse), ("neuron", neuron)):
            if not isinstance(value, nn.Module):
                raise ConfigurationError(
                    f"BootstrapBlock: {name} must be an nn.Module, got {type(value).__name__}"
                )
        if sampler is not None and not isinstance(sampler, AnnSampler):
            raise ConfigurationError(
                f"BootstrapBlock: sampler must be an AnnSampler, got {type(sampler).__name__}"
            )
        self.synapse = synapse
        self.neuron = neuron
        self.sampler = AnnSampler() if sampler is None else sampler

    def forward(self, x: Tensor, mode: Mode = Mode.ANN) -> Tensor:
        """Run in ``mode`` (see the class docstring); ``x`` is ``[T, B, ...]``."""
        if not isinstance(mode, Mode):
            raise ConfigurationError(f"BootstrapBlock: mode must be a Mode, got {mode!r}")
        z = self.synapse(x)
        if mode in (Mode.ANN, Mode.FIT):
            if mode is Mode.FIT:
                self.sampler.fit()
                self.sampler.soft_clear()
            return self.sampler(z)
        spikes = self.neuron(z)
        if mode is Mode.SAMPLE:
            self.sampler.append(spikes, z)
        return spikes


@dataclass(frozen=True)
class LayerMode:
    """The modes of a network's bootstrap blocks for one iteration (Lava-DL's
    ``routine.LayerMode``): iterating gives ``SAMPLE`` for every block when
    ``base_mode`` is ``SAMPLE``, else ``SNN`` for the first ``crossover`` blocks and
    ``base_mode`` for the rest. Each iteration starts again from the first block."""

    crossover: int
    base_mode: Mode

    def __post_init__(self) -> None:
        _check_int("LayerMode", "crossover", self.crossover, 0)
        if not isinstance(self.base_mode, Mode):
            raise ConfigurationError(f"LayerMode: base_mode must be a Mode, got {self.base_mode!r}")

    def __iter__(self) -> Iterator[Mode]:
        count = 0
        while True:
            if self.base_mode is Mode.SAMPLE:
                yield Mode.SAMPLE
            else:
                yield Mode.SNN if count < self.crossover else self.base_mode
            count += 1


class BootstrapSequential(nn.Sequential):
    """A sequential network of :class:`BootstrapBlock` and plain multi-step modules.

    ``forward(x, mode)`` gives each block the next mode of ``mode`` (a
    :class:`LayerMode`, or a :class:`Mode` for every block); other modules (flatten,
    pooling, a readout Linear) run as they are. ``x`` is ``[T, B, ...]``. At the first
    block in ``ANN`` or ``FIT`` mode the activity is replaced by its time-mean
    ``[1, B, ...]`` (the rates the fitted activations map), so an all-ANN call costs one
    step; an ``SNN`` or ``SAMPLE`` block after an ANN one is refused. The output is
    ``[T, B, ...]`` or ``[1, B, ...]``: take its mean over time as the rate.
    """

    def forward(self, x: Tensor, mode: LayerMode | Mode = Mode.SNN) -> Tensor:  # type: ignore[override]
        """Run the network in ``mode`` (see the class docstring)."""
        check_time_major(x, "BootstrapSequential", single_step=False)
        if isinstance(mode, Mode):
            mode = LayerMode(0, mode)
        if not isinstance(mode, LayerMode):
            raise ConfigurationError(
                f"BootstrapSequential: mode must be a LayerMode or a Mode, got {mode!r}"
            )
        modes = iter(mode)
        rates = False
        for index, module in enumerate(self):
            if not isinstance(module, BootstrapBlock):
                x = module(x)
                continue
            block_mode = next(modes)
            if block_mode in (Mode.ANN, Mode.FIT):
                if not rates:
                    x = x.mean(0, keepdim=True)
                    rates = True
            elif rates:
                raise ConfigurationError(
                    f"BootstrapSequential: block {index} runs in {block_mode.name} mode after "
                    f"an ANN block; spiking blocks must come before the ANN ones (crossover)"
                )
            x = module(x, block_mode)
        return x


class Scheduler:
    """Which mode each iteration runs in (Lava-DL's ``routine.Scheduler``).

    In training, every ``sample_period``-th epoch (epoch 0 included) starts with
    ``num_sample_iter`` iterations in ``SAMPLE``, then one in ``FIT``; all other
    iterations are ``ANN``. In evaluation, those epochs run as ``SNN`` (the network as
    deployed), the others as ``ANN``. The crossover (blocks kept spiking) is the number
    of ``crossover_epochs`` that are ``<= epoch``.

    Args:
        num_sample_iter: sampling iterations per sampling epoch (default 10).
        sample_period: epochs between samplings (default 10).
        crossover_epochs: epochs at which the crossover moves one block deeper (default
            none).
    """

    def __init__(
        self,
        num_sample_iter: int = 10,
        sample_period: int = 10,
        crossover_epochs: Sequence[int] | None = None,
    ) -> None:
        self.num_sample_iter = _check_int("Scheduler", "num_sample_iter", num_sample_iter, 0)
        self.sample_period = _check_int("Scheduler", "sample_period", sample_period, 1)
        epochs = () if crossover_epochs is None else tuple(crossover_epochs)
        for epoch in epochs:
            _check_int("Scheduler", "crossover_epochs entry", epoch, 0)
        self.crossover_epochs = epochs

    def crossover(self, epoch: int) -> int:
        """The number of leading blocks kept in ``SNN`` mode at ``epoch``."""
        return sum(1 for e in self.crossover_epochs if e <= epoch)

    def mode(self, epoch: int, iteration: int, train: bool = True) -> LayerMode:
        """The :class:`LayerMode` of ``iteration`` (from 0) of ``epoch`` (from 0)."""
        _check_int("Scheduler.mode", "epoch", epoch, 0)
        _check_int("Scheduler.mode", "iteration", iteration, 0)
        crossover = self.crossover(epoch)
        sampling = epoch % self.sample_period == 0
        if not train:
            return LayerMode(crossover, Mode.SNN if sampling else Mode.ANN)
        if sampling and iteration < self.num_sample_iter:
            return LayerMode(crossover, Mode.SAMPLE)
        if sampling and iteration == self.num_sample_iter:
            return LayerMode(crossover, Mode.FIT)
        return LayerMode(crossover, Mode.ANN)
