"""Threshold schedules for soft-threshold pruning (STDS, LATS; methods.md 8.2-8.3).

Both keep their position in ``state_dict()`` so a resumed run continues the schedule.

* :class:`ThresholdSchedule`: ``d = D·g(x)`` with ``x = (step - start)/(total - start)``
  clipped to ``[0, 1]``; ``g`` is ``"sine"`` ``(1 + sin(π(x - 1/2)))/2`` or ``"linear"``
  ``x`` (STDS), ``"slats"`` ``x + sin(πx)/π`` (S-LATS: LATS under a cosine learning
  rate, in closed form), or ``"pgh"`` (LATS whose L1 strength grows as ``β^x`` under a
  cosine learning rate: ``∫_0^x β^u (1 + cos πu) du``, normalised; the paper's PGH).
  Call its ``step()`` once after each optimizer step.
* :class:`LATSThreshold`: LATS itself, ``d ← d + λ·η`` with η the learning rate the
  optimizer just used, for any learning-rate schedule (an L1 penalty of constant
  strength λ, solved by ISTA). It moves by itself after each ``optimizer.step()``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from spikeflow._checks import check_int, check_real
from spikeflow.errors import ConfigurationError
from spikeflow.prune.reparam import SoftThreshold, _threshold, soft_threshold_layers

__all__ = ["SHAPES", "LATSThreshold", "ThresholdSchedule", "threshold_at"]

SHAPES = ("sine", "linear", "slats", "pgh")


def threshold_at(shape: str, x: float, final: float, beta: float | None = None) -> float:
    """The threshold of the schedule ``shape`` at progress ``x`` in ``[0, 1]``, ending at
    ``final`` (>= 0) (``beta``: the PGH homotopy's growth factor, for ``shape="pgh"``
    only).

    Raises:
        ConfigurationError: an unknown shape, ``x`` outside ``[0, 1]``, a negative
            ``final``, or ``beta`` missing (pgh), not > 0, or given for another shape.
    """
    x = check_real("threshold_at: x (the progress)", x, 0.0, 1.0)
    final = check_real("threshold_at: final", final, 0.0)
    if shape == "pgh":
        if beta is None:
            raise ConfigurationError("threshold shape 'pgh' needs beta (> 0)")
        log_beta = math.log(check_real("threshold_at: beta", beta, 0.0, low_open=True))
        return final * _homotopy_integral(log_beta, x) / _homotopy_integral(log_beta, 1.0)
    if beta is not None:
        raise ConfigurationError(f"beta is for the 'pgh' shape only; shape is {shape!r}")
    if shape == "sine":
        return final * (1.0 + math.sin(math.pi * (x - 0.5))) / 2.0
    if shape == "linear":
        return final * x
    if shape == "slats":
        return final * (x + math.sin(math.pi * x) / math.pi)
    raise ConfigurationError(f"threshold shape must be one of {', '.join(SHAPES)}; got {shape!r}")


def _homotopy_integral(log_beta: float, x: float) -> float:
    """``∫_0^x β^u (1 + cos πu) du`` with ``log_beta = ln β``: the threshold LATS reaches
    when its L1 strength grows as ``β^u`` under a cosine learning rate (PGH); at β = 1
    it is S-LATS's ``x + sin(πx)/π``. For ``ln β > 1`` it is returned divided by β
    (a common factor of the ratio PGH takes), which keeps it finite for any float β."""
    l, pi = log_beta, math.pi
    if l > 1.0:  # the integral / β: e^(l(x-1)) instead of e^(lx), no overflow
        grown, start = math.exp(l * (x - 1.0)), math.exp(-l)
        wave = grown * (l * math.cos(pi * x) + pi * math.sin(pi * x)) - l * start
        return (grown - start) / l + wave / (l * l + pi * pi)
    growth = x if l == 0.0 else math.expm1(l * x) / l
    wave = math.exp(l * x) * (l * math.cos(pi * x) + pi * math.sin(pi * x)) - l
    return growth + wave / (l * l + pi * pi)


def _check_beta(shape: str, beta: object, owner: str) -> float | None:
    if shape != "pgh":
        if beta is not None:
            raise ConfigurationError(f"{owner}: beta is for shape 'pgh' only; shape is {shape!r}")
        return None
    if beta is None:
        raise ConfigurationError(f"{owner}: shape 'pgh' needs beta (> 0; < 1 prunes early)")
    return check_real(f"{owner}: beta", beta, 0.0, low_open=True)


class ThresholdSchedule:
    """The STDS / S-LATS threshold ``d``: 0 up to ``start_step``, ``final_threshold``
    from ``total_steps`` on.

    Args:
        model: a model prepared by :func:`~spikeflow.prune.apply_soft_threshold`.
        final_threshold: D, the threshold at the end.
        total_steps: the optimizer steps of the whole run (epochs × batches per epoch).
        shape: ``"sine"`` (STDS's default), ``"linear"``, ``"slats"`` or ``"pgh"``.
        start_step: the step at which pruning starts.
        beta: for ``"pgh"`` (required there): the L1 strength grows by this factor
            over the run; below 1 most of the pruning happens early.

    The threshold is set when the schedule is built (step 0) and after each ``step()``.
    """

    def __init__(
        self,
        model: nn.Module,
        final_threshold: float,
        total_steps: int,
        shape: str = "sine",
        start_step: int = 0,
        beta: float | None = None,
    ) -> None:
        self.final_threshold = _threshold(final_threshold, "final_threshold", "ThresholdSchedule")
        self.total_steps = check_int("total_steps", total_steps, 1)
        self.start_step = check_int("start_step", start_step, 0)
        if self.start_step >= self.total_steps:
            raise ConfigurationError(
                f"start_step ({start_step}) must be below total_steps ({total_steps})"
            )
        self.beta = _check_beta(shape, beta, "ThresholdSchedule")
        threshold_at(shape, 0.0, 0.0, self.beta)  # checks the name
        self.shape = shape
        # The parametrizations, not their buffers: model.to(dtype or device) replaces
        # the buffers, and the schedule must set the ones the model uses.
        self._reparams = [reparam for _, _, reparam in soft_threshold_layers(model)]
        self.step_count = 0
        self._apply()

    @property
    def threshold(self) -> float:
        """The threshold at the current step."""
        x = (self.step_count - self.start_step) / (self.total_steps - self.start_step)
        return threshold_at(self.shape, min(max(x, 0.0), 1.0), self.final_threshold, self.beta)

    def _apply(self) -> None:
        d = self.threshold
        for reparam in self._reparams:
            reparam.threshold.fill_(d)

    def step(self) -> float:
        """Advance one optimizer step; return the new threshold."""
        self.step_count += 1
        self._apply()
        return self.threshold

    def state_dict(self) -> dict[str, Any]:
        """The schedule's position (its settings come from the constructor)."""
        return {"step_count": self.step_count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a saved position."""
        self.step_count = check_int("step_count", state["step_count"], 0)
        self._apply()


class LATSThreshold:
    """LATS: each layer's threshold grows by ``l1 × (its learning rate)`` per optimizer step.

    The threshold moves by itself, from a hook that runs after every ``optimizer.step()``
    (so a step a gradient scaler skips does not move it, and a learning-rate scheduler
    stepped every iteration is read before it changes the rate); there is no ``step()``
    to call. :meth:`remove` detaches the hook.

    Args:
        model: a model prepared by :func:`~spikeflow.prune.apply_soft_threshold`.
        optimizer: the optimizer training it (each layer reads the learning rate of the
            parameter group holding its hidden weight).
        l1: λ, the strength of the implied L1 penalty ``λ·‖w‖₁``.
        start_step: the optimizer steps before the threshold starts to grow.

    The thresholds are summed in double precision, so a low-precision model still
    reaches ``λ·Σ η``.

    Raises:
        ConfigurationError: ``l1`` negative or not finite, or a soft-threshold layer
            whose hidden weight the optimizer does not train.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, l1: float,
                 start_step: int = 0) -> None:  # fmt: skip
        self.l1 = _threshold(l1, "l1", "LATSThreshold")
        self.start_step = check_int("start_step", start_step, 0)
        self.optimizer = optimizer
        self.step_count = 0
        group_of = {id(p): i for i, g in enumerate(optimizer.param_groups) for p in g["params"]}
        self._layers: list[tuple[SoftThreshold, int]] = []
        for name, layer, reparam in soft_threshold_layers(model):
            hidden = layer.parametrizations.weight.original
            if id(hidden) not in group_of:
                raise ConfigurationError(
                    f"layer {name!r}: the optimizer does not train its hidden weight "
                    "(build the optimizer after apply_soft_threshold)"
                )
            self._layers.append((reparam, group_of[id(hidden)]))
        self._sums = [float(reparam.threshold) for reparam, _ in self._layers]
        self._hook = optimizer.register_step_post_hook(self._after_step)

    def _after_step(self, optimizer: torch.optim.Optimizer, *args: Any) -> None:
        self.step_count += 1
        if self.step_count <= self.start_step:
            return
        for index, (reparam, group) in enumerate(self._layers):
            self._sums[index] += self.l1 * float(optimizer.param_groups[group]["lr"])
            reparam.threshold.fill_(self._sums[index])

    @property
    def thresholds(self) -> list[float]:
        """Each layer's threshold (in double precision)."""
        return list(self._sums)

    def remove(self) -> None:
        """Stop moving the thresholds (detach the optimizer hook)."""
        self._hook.remove()

    def state_dict(self) -> dict[str, Any]:
        """The steps counted and the thresholds reached (in double precision)."""
        return {"step_count": self.step_count, "thresholds": list(self._sums)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a saved position."""
        self.step_count = check_int("step_count", state.get("step_count", 0), 0)
        if "thresholds" not in state:  # the position only: the thresholds as they are
            return
        values = state["thresholds"]
        if len(values) != len(self._layers):
            raise ConfigurationError(
                f"LATSThreshold state holds {len(values)} thresholds; the model has "
                f"{len(self._layers)} soft-threshold layers"
            )
        self._sums = [_threshold(v, "threshold", "LATSThreshold state") for v in values]
        for (reparam, _), value in zip(self._layers, self._sums, strict=True):
            reparam.threshold.fill_(value)
