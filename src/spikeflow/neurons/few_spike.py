"""Few-spike neurons (FS neurons; Stöckl & Maass, "Optimized spiking neurons can classify
images with high accuracy through temporal coding with two spikes", Nature Machine
Intelligence 2021), with the outlier-aware and hierarchically gated variants of the LAS
paper (arXiv 2505.09659): SpikingJelly 2.0's ``FewSpikeTable``, ``FewSpikeNode``,
``OutlierAwareThresholdNode`` and ``HGNode``.

An FS neuron approximates an activation function of an ANN (for conversion) with at
most ``K`` weighted spikes. From a gate input ``g`` (one step's input, or the sum of a
``[K, ...]`` sequence) it runs ``K`` steps of a coding table ``(θ_k, h_k, d_k)``::

    V = g;   for k = 1..K:   z_k = Θ(V - θ_k);   y_k = d_k z_k;   V ← V - h_k z_k

and outputs ``y = Σ_k y_k`` (single-step) or the sequence ``y_k`` (multi-step). The
tables are fitted to the activation offline (not here).

Why not a declaration: the threshold, reset and output weight change from step to step
(the table), and a declared neuron's parameters are the same at every step; and the
neuron keeps no state from one input to the next. These are plain modules (a loop over
the ``K`` table entries, autograd through it), not :class:`~spikeflow.base.MemoryModule`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn

from spikeflow.base import StepMode, StepModule
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.neurons.loop import check_surrogate
from spikeflow.surrogate import Surrogate

__all__ = ["FewSpikeNode", "FewSpikeTable", "HGNode", "OutlierAwareThresholdNode"]


def _as_vector(name: str, value: Tensor | Sequence[float]) -> Tensor:
    """``value`` as a non-empty 1-D floating-point tensor of finite values (a copy)."""
    try:
        tensor = torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ConfigurationError(f"{name} must be a 1-D tensor or sequence of numbers") from exc
    if tensor.is_complex():
        raise ConfigurationError(f"{name} must be real, got a complex tensor")
    if tensor.dim() != 1 or tensor.numel() == 0:
        raise ConfigurationError(
            f"{name} must be a non-empty 1-D tensor or sequence, got shape {tuple(tensor.shape)}"
        )
    if not tensor.is_floating_point():
        tensor = tensor.to(torch.get_default_dtype())
    if not bool(torch.isfinite(tensor).all()):
        raise ConfigurationError(f"{name} must be finite, got {tensor.tolist()}")
    return tensor.detach().clone()


class FewSpikeTable:
    """The coding table of a few-spike neuron: ``K`` thresholds ``theta``, membrane
    subtractions ``h`` and output weights ``d`` (1-D, the same length; a plain object,
    not a module: the neurons keep copies as buffers).

    Args:
        theta: ``[K]`` thresholds, in the order the steps use them.
        h: ``[K]`` what a spike at step ``k`` subtracts from the membrane.
        d: ``[K]`` what a spike at step ``k`` is worth in the output.

    Raises:
        ConfigurationError: a value that is not a non-empty 1-D real sequence of finite
            numbers, or lengths that differ.
    """

    def __init__(
        self,
        theta: Tensor | Sequence[float],
        h: Tensor | Sequence[float],
        d: Tensor | Sequence[float],
    ) -> None:
        self.theta = _as_vector("theta", theta)
        self.h = _as_vector("h", h)
        self.d = _as_vector("d", d)
        if not self.theta.shape == self.h.shape == self.d.shape:
            raise ConfigurationError(
                f"theta, h and d must have the same length, got {self.theta.numel()}, "
                f"{self.h.numel()}, {self.d.numel()}"
            )

    @property
    def K(self) -> int:
        """The number of steps (entries of the table)."""
        return self.theta.numel()

    def __repr__(self) -> str:
        return f"FewSpikeTable(K={self.K})"


def _check_table(name: str, table: object, K: int | None = None) -> FewSpikeTable:
    if not isinstance(table, FewSpikeTable):
        raise ConfigurationError(f"{name} must be a FewSpikeTable, got {type(table).__name__}")
    if K is not None and table.K != K:
        raise ConfigurationError(f"{name} must have K = {K} entries like the first, got {table.K}")
    return table


class FewSpikeNode(StepModule, nn.Module):
    """The few-spike neuron (see the module docstring), SpikingJelly 2.0's
    ``FewSpikeNode``: the same outputs and gradients.

    Single-step mode: the input ``[B, ...]`` is the gate ``g``; the output is
    ``Σ_k d_k z_k`` (``[B, ...]``). Multi-step mode: the input ``[K, B, ...]`` (exactly
    ``K`` steps) is summed into ``g``; the output is the weighted spikes ``d_k z_k`` of
    every step, ``[K, B, ...]`` (their sum over steps is the single-step output). No
    state is kept between calls.

    Args:
        table: the coding table (its tensors become the buffers ``theta``, ``h``, ``d``).
        surrogate_function: the spike function of every step (default
            ``Sigmoid(alpha=4)``).
        step_mode: ``'m'`` (default; SpikingJelly's is ``'s'``) or ``'s'``.

    Raises:
        ConfigurationError: ``table`` not a :class:`FewSpikeTable`, a bad surrogate or
            step mode.
        DTypeError, ShapeError: (at a call) a non-floating input, a multi-step input
            whose first dimension is not ``K``.
    """

    def __init__(
        self,
        table: FewSpikeTable,
        surrogate_function: Surrogate | None = None,
        step_mode: StepMode = "m",
    ) -> None:
        nn.Module.__init__(self)
        table = _check_table("table", table)
        self.register_buffer("theta", table.theta.clone())
        self.register_buffer("h", table.h.clone())
        self.register_buffer("d", table.d.clone())
        self.surrogate_function = check_surrogate(type(self).__name__, surrogate_function)
        self.step_mode = step_mode

    @property
    def K(self) -> int:
        """The number of steps of the table."""
        return self.theta.numel()

    def _run_table(
        self,
        gate: Tensor,
        theta: Iterable[Tensor],
        h: Iterable[Tensor],
        d: Iterable[Tensor],
        sequence: bool,
    ) -> Tensor:
        """The ``K`` steps from the membrane ``gate``: the weighted spikes ``[K, ...]``
        (``sequence``) or their sum."""
        v = gate
        steps: list[Tensor] = []
        total = torch.zeros_like(gate)
        for theta_k, h_k, d_k in zip(theta, h, d):
            z = self.surrogate_function(v - theta_k)
            if sequence:
                steps.append(d_k * z)
            else:
                total = total + d_k * z
            v = v - h_k * z
        return torch.stack(steps) if sequence else total

    def _from_gate(self, gate: Tensor, sequence: bool) -> Tensor:
        return self._run_table(gate, self.theta, self.h, self.d, sequence)

    def forward(self, x: Tensor) -> Tensor:
        """The output for ``x`` (see the class docstring)."""
        name = type(self).__name__
        if not isinstance(x, Tensor) or not x.is_floating_point():
            what = x.dtype if isinstance(x, Tensor) else type(x).__name__
            raise DTypeError(f"{name} expects a floating-point tensor, got {what}")
        if self.step_mode == "s":
            return self._from_gate(x, sequence=False)
        if x.dim() == 0 or x.shape[0] != self.K:
            raise ShapeError(
                f"{name} in multi-step mode takes exactly K = {self.K} steps [K, B, ...] (the "
                f"table's length), got shape {tuple(x.shape)}"
            )
        return self._from_gate(x.sum(dim=0), sequence=True)

    def extra_repr(self) -> str:
        return f"K={self.K}, step_mode={self.step_mode!r}"


class OutlierAwareThresholdNode(FewSpikeNode):
    """The outlier-aware few-spike neuron of the LAS paper (arXiv 2505.09659), SpikingJelly
    2.0's ``OutlierAwareThresholdNode``: the gate is clamped to ``[-clamp_value,
    clamp_value]`` (if given), split into sign and magnitude; magnitudes up to
    ``split_threshold`` run ``table``, larger ones (the outliers) ``outlier_table``;
    the output takes the sign back (a zero gate gives zero). The sign is detached.

    Args:
        table: the table of the normal range.
        outlier_table: the table of the outliers, with the same ``K``.
        split_threshold: the magnitude that separates them, finite and >= 0.
        clamp_value: the symmetric clamp, finite and >= ``split_threshold`` (and > 0),
            or ``None``.
        surrogate_function, step_mode: as for :class:`FewSpikeNode`.

    Raises:
        ConfigurationError: a table that is not a :class:`FewSpikeTable` or of another
            ``K``, a bad ``split_threshold`` or ``clamp_value``.
    """

    def __init__(
        self,
        table: FewSpikeTable,
        outlier_table: FewSpikeTable,
        split_threshold: float,
        clamp_value: float | None = None,
        surrogate_function: Surrogate | None = None,
        step_mode: StepMode = "m",
    ) -> None:
        table = _check_table("table", table)
        outlier_table = _check_table("outlier_table", outlier_table, table.K)
        owner = type(self).__name__
        if (
            isinstance(split_threshold, bool)
            or not isinstance(split_threshold, numbers.Real)
            or not math.isfinite(split_threshold)
            or split_threshold < 0
        ):
            raise ConfigurationError(
                f"{owner}: split_threshold must be a finite number >= 0, got {split_threshold!r}"
            )
        if clamp_value is not None:
            if (
                isinstance(clamp_value, bool)
                or not isinstance(clamp_value, numbers.Real)
                or not math.isfinite(clamp_value)
                or not clamp_value > 0
                or clamp_value < split_threshold
            ):
                raise ConfigurationError(
                    f"{owner}: clamp_value must be None or a finite number > 0 and >= "
                    f"split_threshold ({split_threshold}), got {clamp_value!r}"
                )
            clamp_value = float(clamp_value)
        super().__init__(table, surrogate_function, step_mode)
        like = table.theta
        for part in ("theta", "h", "d"):
            value = getattr(outlier_table, part).to(dtype=like.dtype, device=like.device)
            self.register_buffer(f"outlier_{part}", value.clone())
        self.split_threshold = float(split_threshold)
        self.clamp_value = clamp_value

    def _from_gate(self, gate: Tensor, sequence: bool) -> Tensor:
        if self.clamp_value is not None:
            gate = gate.clamp(min=-self.clamp_value, max=self.clamp_value)
        signs = torch.sign(gate).detach()
        magnitude = gate.abs()
        normal = magnitude <= self.split_threshold

        def pick(ours: Tensor, outliers: Tensor) -> Iterable[Tensor]:
            return (torch.where(normal, a, b) for a, b in zip(ours, outliers))

        out = self._run_table(magnitude, pick(self.theta, self.outlier_theta),
                              pick(self.h, self.outlier_h), pick(self.d, self.outlier_d),
                              sequence)  # fmt: skip
        return out * (signs.unsqueeze(0) if sequence else signs)

    def extra_repr(self) -> str:
        return (
            super().extra_repr()
            + f", split_threshold={self.split_threshold:g}, clamp_value={self.clamp_value}"
        )


class HGNode(FewSpikeNode):
    """The hierarchically gated few-spike neuron of the LAS paper (arXiv 2505.09659),
    SpikingJelly 2.0's ``HGNode``: ``gate_thresholds`` (ascending) split the gate into
    ``len(tables)`` regions, each with its own table: the first for
    ``g <= gate_thresholds[0]``, table ``i`` for ``gate_thresholds[i-1] < g <=
    gate_thresholds[i]``, the last for ``g > gate_thresholds[-1]``. The buffers are
    ``region_theta``, ``region_h``, ``region_d`` (``[regions, K]``) and
    ``gate_thresholds``.

    Args:
        tables: one table per region (at least one), all with the same ``K``.
        gate_thresholds: ``len(tables) - 1`` strictly increasing finite numbers.
        surrogate_function, step_mode: as for :class:`FewSpikeNode`.

    Raises:
        ConfigurationError: no table, a table that is not a :class:`FewSpikeTable` or of
            another ``K``, thresholds of the wrong count, not finite or not increasing.
    """

    def __init__(
        self,
        tables: Sequence[FewSpikeTable],
        gate_thresholds: Tensor | Sequence[float],
        surrogate_function: Surrogate | None = None,
        step_mode: StepMode = "m",
    ) -> None:
        tables = list(tables)
        if not tables:
            raise ConfigurationError("HGNode: tables must hold at least one FewSpikeTable")
        first = _check_table("tables[0]", tables[0])
        for i, table in enumerate(tables[1:], start=1):
            _check_table(f"tables[{i}]", table, first.K)
        count = len(tables) - 1
        if count:
            thresholds = _as_vector("gate_thresholds", gate_thresholds)
        else:
            thresholds = torch.as_tensor(gate_thresholds, dtype=first.theta.dtype).reshape(-1)
        if thresholds.numel() != count:
            raise ConfigurationError(
                f"HGNode: gate_thresholds must hold len(tables) - 1 = {count} values, got "
                f"{thresholds.numel()}"
            )
        if count > 1 and not bool((thresholds[1:] > thresholds[:-1]).all()):
            raise ConfigurationError(
                f"HGNode: gate_thresholds must be strictly increasing, got {thresholds.tolist()}"
            )
        super().__init__(first, surrogate_function, step_mode)
        del self.theta, self.h, self.d  # the regions' tables replace the one table
        like = first.theta
        for part in ("theta", "h", "d"):
            stacked = torch.stack([getattr(t, part).to(like) for t in tables])
            self.register_buffer(f"region_{part}", stacked)
        self.register_buffer("gate_thresholds", thresholds.to(like))

    @property
    def K(self) -> int:
        return self.region_theta.shape[1]

    def _from_gate(self, gate: Tensor, sequence: bool) -> Tensor:
        region = torch.bucketize(gate.detach(), self.gate_thresholds)
        return self._run_table(gate, (self.region_theta[:, k][region] for k in range(self.K)),
                               (self.region_h[:, k][region] for k in range(self.K)),
                               (self.region_d[:, k][region] for k in range(self.K)),
                               sequence)  # fmt: skip

    def extra_repr(self) -> str:
        thresholds = self.gate_thresholds.tolist()
        regions = self.region_theta.shape[0]
        return super().extra_repr() + f", regions={regions}, gate_thresholds={thresholds}"
