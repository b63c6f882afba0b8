"""Attention over the time steps of a sequence: TA-SNN's and MA-SNN's attention blocks.

Both rescale a layer's input currents before its spiking neurons (``Conv2d -> BN ->
attention -> LIF``) with scores in ``(0, 1)`` computed from the whole sequence, so they
run in multi-step mode only (a step's score depends on the other steps).

* :class:`TemporalWiseAttention` (TA-SNN, Yao et al., ICCV 2021): one score per sample
  and time step, squeeze-and-excitation over the ``T`` axis. With ``X ∈ [T, B, ...]``
  and the statistics of each step ``a[b, t] = mean(X[t, b])``, ``m[b, t] = max(X[t, b])``
  (over every feature of the step),

      ``s[b] = σ(W₂ ReLU(W₁ a[b]) + W₂ ReLU(W₁ m[b]))``,  ``Y[t, b] = s[b, t] · X[t, b]``

  with ``W₁ ∈ [T // r, T]``, ``W₂ ∈ [T, T // r]`` (no biases).
* :class:`MultiDimensionalAttention` (MA-SNN, Yao et al., TPAMI 2023): temporal, then
  channel, then spatial attention on ``[T, B, C, H, W]``, each multiplying its input,
  then a ReLU:

      ``Y₁ = s_t ⊙ X``  (as TA, its shared MLP made of 1x1x1 convolutions),
      ``Y₂ = s_c ⊙ Y₁``, ``s_c[b] = σ(MLP_c(mean Y₁[:, b]) + MLP_c(max Y₁[:, b]))``
      (one score per channel; mean and max over t, h, w),
      ``Y₃ = s_s ⊙ Y₂``, ``s_s[b] = σ(conv_k([mean Y₂[:, b]; max Y₂[:, b]]))``
      (one score per pixel; mean and max over t, c),
      ``Y = ReLU(Y₃)``.

Parameter names and shapes are SpikingJelly 2.0's (``sharedMLP``, ``ta``, ``ca``,
``sa.conv``), so its ``state_dict`` loads unchanged. A max over tied values sends its
gradient to the first of them, as SpikingJelly's adaptive max pooling does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikeflow._checks import check_flag, check_int
from spikeflow.base import SequenceOnly
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError

__all__ = ["MultiDimensionalAttention", "TemporalWiseAttention"]


class _WholeSequence(SequenceOnly):
    """Multi-step only: the scores of a step are computed from the whole sequence."""

    #: A step's output depends on later steps: ``streaming`` and online training refuse it.
    streamable = False
    sequence_reason = "the score of each step is computed from the whole sequence"


def _hidden_size(owner: str, size: int, size_name: str, reduction: int, name: str) -> int:
    check_int(f"{owner}: {size_name}", size, 1)
    check_int(f"{owner}: {name}", reduction, 1)
    if reduction > size:
        raise ConfigurationError(
            f"{owner}: {name} ({reduction}) must be at most {size_name} ({size}): the "
            f"shared MLP has {size_name} // {name} hidden units"
        )
    return size // reduction


def _check_input(owner: str, x: Tensor, layout: str, step_dims: int) -> None:
    if not isinstance(x, Tensor):
        raise DTypeError(f"{owner} expects a tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise DTypeError(f"{owner} expects a floating-point input, got dtype {x.dtype}")
    if x.dim() != step_dims + 1:
        hint = " — missing the time dimension?" if x.dim() == step_dims else ""
        raise ShapeError(
            f"{owner} expects a whole sequence {layout.replace('[B', '[T, B')} "
            f"({step_dims + 1} dims); got shape {tuple(x.shape)}{hint}"
        )


def _step_layout(dims: int) -> str:
    """One step's layout for the messages: ``[B, L]``, ``[B, C, H, W]``, ..."""
    named = {2: "[B, L]", 3: "[B, C, L]", 4: "[B, C, H, W]", 5: "[B, C, D, H, W]"}
    return named.get(dims, "[B, " + ", ".join(f"d{i}" for i in range(1, dims)) + "]")


def _check_size(owner: str, x: Tensor, dim: int, what: str, expected: int) -> None:
    if x.shape[dim] != expected:
        raise ShapeError(
            f"{owner} was built for {what} = {expected}, but the input has {x.shape[dim]} "
            f"(shape {tuple(x.shape)})"
        )


def _avg_and_max(x: Tensor) -> Tensor:
    """``[B, n, R]`` -> ``[2, B, n]``: the mean and the max over the last dim."""
    return torch.stack((x.mean(-1), x.max(-1).values))


class TemporalWiseAttention(_WholeSequence, nn.Module):
    """Temporal-wise attention of TA-SNN (Yao et al., ICCV 2021): one score per step.

    ``s[b] = σ(W₂ ReLU(W₁ mean[b]) + W₂ ReLU(W₁ max[b]))`` where ``mean[b, t]`` and
    ``max[b, t]`` are over all features of step ``t`` of sample ``b``; the output is
    ``s[b, t] · X[t, b]``. Place it between a layer and its neurons
    (``Conv2d -> TemporalWiseAttention -> LIF``).

    SpikingJelly 2.0's ``layer.TemporalWiseAttention``: same arguments, parameters
    (``sharedMLP.0.weight`` ``[T // reduction, T]``, ``sharedMLP.2.weight``) and
    outputs. Its ``dimension`` takes 2 or 4; here any number of dims of one step works.
    Like SpikingJelly's (and MA-SNN's temporal attention), it pools by mean and max and
    its MLP has no biases; the TA-SNN authors' code pools by mean only, with biases.

    Args:
        T: the number of time steps the input has.
        reduction: ``r``; the MLP's hidden layer has ``T // r`` units (``r <= T``).
            Default 16, SpikingJelly's: it needs ``T >= 16``.
        dimension: dims of one step ``[B, ...]``: 4 for ``[T, B, C, H, W]`` input, 2 for
            ``[T, B, L]`` (any number >= 2).

    Input and output ``[T, B, ...]`` (real values).

    Raises:
        ConfigurationError: a non-integer or non-positive argument, ``reduction > T``,
            or a single-step mode asked for.
        ShapeError: the input does not have ``dimension + 1`` dims or ``T`` steps.
    """

    def __init__(self, T: int, reduction: int = 16, dimension: int = 4) -> None:
        super().__init__()
        owner = "TemporalWiseAttention"
        hidden = _hidden_size(owner, T, "T", reduction, "reduction")
        self.T, self.reduction = T, reduction
        self.dimension = check_int(f"{owner}: dimension", dimension, 2)
        self.sharedMLP = nn.Sequential(
            nn.Linear(T, hidden, bias=False), nn.ReLU(), nn.Linear(hidden, T, bias=False)
        )

    def scores(self, x_seq: Tensor) -> Tensor:
        """The scores ``s`` ``[B, T]`` for ``x_seq`` (``[T, B, ...]``)."""
        _check_input("TemporalWiseAttention", x_seq, _step_layout(self.dimension), self.dimension)
        _check_size("TemporalWiseAttention", x_seq, 0, "T (steps)", self.T)
        steps, batch = x_seq.shape[:2]
        pooled = _avg_and_max(x_seq.reshape(steps, batch, -1).transpose(0, 1))  # [2, B, T]
        return torch.sigmoid(self.sharedMLP(pooled).sum(0))

    def forward(self, x_seq: Tensor) -> Tensor:
        """``[T, B, ...]`` -> ``[T, B, ...]``: each step times its score."""
        s = self.scores(x_seq).T  # [T, B]
        return x_seq * s.reshape(*s.shape, *(1,) * (x_seq.dim() - 2))

    def extra_repr(self) -> str:
        return f"T={self.T}, reduction={self.reduction}, dimension={self.dimension}"


class _AxisAttention(nn.Module):
    """Scores along one axis (time or channels), squeeze-and-excitation by mean and max,
    the shared MLP made of 1x1x1 convolutions (SpikingJelly's parameter shapes)."""

    def __init__(self, size: int, hidden: int) -> None:
        super().__init__()
        self.sharedMLP = nn.Sequential(
            nn.Conv3d(size, hidden, 1, bias=False),
            nn.ReLU(),
            nn.Conv3d(hidden, size, 1, bias=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        """``[B, n, R]`` -> scores ``[B, n]``."""
        pooled = _avg_and_max(x)  # [2, B, n]
        out = self.sharedMLP(pooled.reshape(-1, pooled.shape[-1], 1, 1, 1))
        return torch.sigmoid(out.reshape(pooled.shape).sum(0))


class _SpatialAttention(nn.Module):
    """One score per pixel: a ``k x k`` convolution of the mean and max over time and
    channels."""

    def __init__(self, kernel_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, C, H, W]`` -> scores ``[B, H, W]``."""
        per_sample = x.transpose(0, 1).flatten(1, 2)  # [B, T*C, H, W]
        stats = torch.stack((per_sample.mean(1), per_sample.max(1).values), dim=1)
        return torch.sigmoid(self.conv(stats))[:, 0]


class MultiDimensionalAttention(_WholeSequence, nn.Module):
    """Multi-dimensional attention of MA-SNN (Yao et al., TPAMI 2023).

    Temporal, channel and spatial attention in that order on ``[T, B, C, H, W]``, each
    multiplying its input by its scores (one per step, per channel, per pixel; the
    same for all steps but the temporal ones), then a ReLU (the authors' code and
    SpikingJelly's end with it). Place it between a layer and its neurons.

    SpikingJelly 2.0's ``layer.MultiDimensionalAttention``: same arguments, parameters
    (``ta.sharedMLP.*``, ``ca.sharedMLP.*``: 1x1x1 convolutions; ``sa.conv.weight``
    ``[1, 2, k, k]``; a disabled part holds ``None``) and outputs. SpikingJelly takes
    ``kernel_size`` 3 or 7; here any odd size works.

    Args:
        T: the number of time steps the input has.
        C: its channels.
        reduction_t, reduction_c: the temporal and channel MLPs have ``T // reduction_t``
            and ``C // reduction_c`` hidden units (default 16 each: ``T >= 16`` is needed
            with temporal attention on).
        kernel_size: the spatial attention's convolution, an odd size (3).
        use_temporal, use_channel, use_spatial: which parts to use (at least one); a
            part turned off is not checked against the input (``T`` or ``C``).

    Input and output ``[T, B, C, H, W]`` (the output is non-negative).

    Raises:
        ConfigurationError: a bad size or reduction, an even ``kernel_size``, no part
            used, or a single-step mode asked for.
        ShapeError: the input is not ``[T, B, C, H, W]`` with the ``T`` and ``C`` given.
    """

    def __init__(
        self,
        T: int,
        C: int,
        reduction_t: int = 16,
        reduction_c: int = 16,
        kernel_size: int = 3,
        use_temporal: bool = True,
        use_channel: bool = True,
        use_spatial: bool = True,
    ) -> None:
        super().__init__()
        owner = "MultiDimensionalAttention"
        used = [check_flag(owner, name, value) for name, value in (
            ("use_temporal", use_temporal), ("use_channel", use_channel),
            ("use_spatial", use_spatial))]  # fmt: skip
        if not any(used):
            raise ConfigurationError(
                f"{owner}: at least one of use_temporal, use_channel and use_spatial must be True"
            )
        kernel_size = check_int(f"{owner}: kernel_size", kernel_size, 1)
        if kernel_size % 2 == 0:
            raise ConfigurationError(
                f"{owner}: kernel_size must be odd (the scores keep the input's H x W), "
                f"got {kernel_size}"
            )
        self.T, self.C, self.kernel_size = T, C, kernel_size
        self.ta = (
            _AxisAttention(T, _hidden_size(owner, T, "T", reduction_t, "reduction_t"))
            if used[0]
            else None
        )
        self.ca = (
            _AxisAttention(C, _hidden_size(owner, C, "C", reduction_c, "reduction_c"))
            if used[1]
            else None
        )
        self.sa = _SpatialAttention(kernel_size) if used[2] else None

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, C, H, W]`` -> ``[T, B, C, H, W]``."""
        owner = "MultiDimensionalAttention"
        _check_input(owner, x, "[B, C, H, W]", 4)
        if self.ta is not None:
            _check_size(owner, x, 0, "T (steps)", self.T)
        if self.ca is not None:
            _check_size(owner, x, 2, "C (channels)", self.C)
        steps, batch, channels, height, width = x.shape
        out = x
        if self.ta is not None:  # pooled over C, H, W
            s = self.ta(out.transpose(0, 1).reshape(batch, steps, -1))  # [B, T]
            out = out * s.T.reshape(steps, batch, 1, 1, 1)
        if self.ca is not None:  # pooled over T, H, W
            s = self.ca(out.permute(1, 2, 0, 3, 4).reshape(batch, channels, -1))  # [B, C]
            out = out * s.reshape(1, batch, channels, 1, 1)
        if self.sa is not None:  # pooled over T, C
            out = out * self.sa(out).reshape(1, batch, 1, height, width)
        return F.relu(out)

    def extra_repr(self) -> str:
        parts = [name for name, m in (("temporal", self.ta), ("channel", self.ca),
                                      ("spatial", self.sa)) if m is not None]  # fmt: skip
        return f"T={self.T}, C={self.C}, kernel_size={self.kernel_size}, uses={'+'.join(parts)}"
