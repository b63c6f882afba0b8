"""Early exit over time steps: each sample stops at the first step whose output is
confident enough (dynamic time steps).

After ``t`` steps the network's accumulated output is ``f_t = (1/t) Σ_{i<=t} O[i]``
(``accumulate="sum"``: the sum, as SEENN's released code accumulates it) and the
class probabilities ``p = softmax(f_t)``. A sample exits at the first step where

* ``"confidence"`` (SEENN-I, Li et al., NeurIPS 2023): ``max_k p_k >= threshold``;
* ``"entropy"`` (DT-SNN, Li et al., DAC 2023, "Input-Aware Dynamic Timestep Spiking
  Neural Networks for Efficient In-Memory Computing"): the normalised entropy
  ``-(1 / log K) Σ_k p_k log p_k <= threshold`` (in ``[0, 1]``);

or at the last step ``T``. Its prediction is ``argmax f_t`` at its exit step.
:func:`early_exit` runs a network step by step and drops the samples that exited,
with their state, so later steps cost only the samples still running;
:func:`exit_from_outputs` reads the same exits off a whole run's outputs after the
fact (what a threshold sweep needs: :mod:`spikeflow.inference.sweep`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from spikeflow._checks import check_real
from spikeflow.base import check_time_major
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.inference.state_rows import SteppedNetwork, check_step_output, selected_input

__all__ = [
    "ACCUMULATE",
    "CRITERIA",
    "EarlyExitResult",
    "ExitRule",
    "early_exit",
    "exit_from_outputs",
    "exit_scores",
]

#: The exit criteria: ``confidence`` (largest class probability, exit at or above the
#: threshold) and ``entropy`` (normalised entropy, exit at or below it).
CRITERIA = ("confidence", "entropy")
#: How the outputs of the steps so far are accumulated: their ``mean`` or ``sum``.
ACCUMULATE = ("mean", "sum")
Criterion = Literal["confidence", "entropy"]
Accumulate = Literal["mean", "sum"]


@dataclass(frozen=True)
class ExitRule:
    """An exit criterion with its threshold (and how outputs are accumulated).

    Raises:
        ConfigurationError: an unknown criterion or accumulation, or a threshold that
            is not a real number in ``[0, 1]``.
    """

    criterion: Criterion
    threshold: float
    accumulate: Accumulate = "mean"

    def __post_init__(self) -> None:
        if self.criterion not in CRITERIA:
            raise ConfigurationError(
                f"early exit: criterion must be one of {', '.join(CRITERIA)}, got "
                f"{self.criterion!r}"
            )
        if self.accumulate not in ACCUMULATE:
            raise ConfigurationError(
                f"early exit: accumulate must be one of {', '.join(ACCUMULATE)}, got "
                f"{self.accumulate!r}"
            )
        value = check_real(f"early exit: the {self.criterion} threshold", self.threshold, 0, 1)
        object.__setattr__(self, "threshold", value)

    @classmethod
    def parse(cls, text: str, accumulate: Accumulate = "mean") -> ExitRule:
        """``"confidence:0.9"`` or ``"entropy:0.1"`` as a rule.

        Raises:
            ConfigurationError: not ``CRITERION:THRESHOLD``, naming what was given.
        """
        criterion, sep, value = str(text).partition(":")
        try:
            threshold = float(value)
        except ValueError:
            threshold = None
        if not sep or threshold is None:
            raise ConfigurationError(
                f"early exit: expected CRITERION:THRESHOLD with CRITERION one of "
                f"{', '.join(CRITERIA)} (e.g. confidence:0.9), got {text!r}"
            )
        return cls(criterion, threshold, accumulate)  # type: ignore[arg-type]

    def passes(self, scores: Tensor) -> Tensor:
        """Whether each score lets its sample exit."""
        if self.criterion == "confidence":
            return scores >= self.threshold
        return scores <= self.threshold

    def __str__(self) -> str:
        return f"{self.criterion}:{self.threshold:g}"


def exit_scores(accumulated: Tensor, criterion: Criterion) -> Tensor:
    """The score of each sample ``[...]`` from its accumulated output ``[..., K]``: the
    largest softmax probability (``"confidence"``) or the entropy of the softmax over
    ``log K`` (``"entropy"``, 0 for a one-hot distribution, 1 for the uniform one)."""
    if criterion not in CRITERIA:
        raise ConfigurationError(
            f"exit_scores: criterion must be one of {', '.join(CRITERIA)}, got {criterion!r}"
        )
    log_p = torch.log_softmax(accumulated, dim=-1)
    if criterion == "confidence":
        return log_p.max(dim=-1).values.exp()
    classes = accumulated.shape[-1]
    if classes < 2:
        raise ShapeError("exit_scores: the entropy criterion needs at least 2 classes")
    # 0 log 0 = 0: a class at -inf (a log-probability output) adds nothing, not NaN.
    terms = torch.where(log_p.isneginf(), 0.0, log_p.exp() * log_p)
    return -terms.sum(dim=-1) / math.log(classes)


def _check_scores(
    scores: Tensor,
    samples: Tensor,
    step: int | None,
    where: str,
    half: torch.dtype | None = None,
) -> None:
    """A ConfigurationError naming the first sample (and step) whose score is NaN:
    its accumulated output holds a NaN or a +inf, and no exit or prediction of it
    would mean anything. ``scores`` ``[b]`` (at step ``step``) or ``[T, B]``
    (``step`` None); ``samples``: the batch index of each column; ``half``: the dtype
    of the step's output when autocast made it float16 or bfloat16 (then named: an
    output past its range is inf)."""
    bad = scores.isnan()
    if not bool(bad.any()):
        return
    if step is None:
        t, b = (int(i) for i in bad.nonzero()[0])
    else:
        t, b = step, int(bad.nonzero()[0, 0])
    overflow = (
        ""
        if half is None
        else f"; it is {half}, whose largest value is "
        f"{torch.finfo(half).max:g}: an output past it is inf (run in float32"
        + (", or bfloat16)" if half == torch.float16 else ")")
    )
    raise ConfigurationError(
        f"{where}: the accumulated output of sample {int(samples[b])} at step {t + 1} "
        f"gives no score (the model's output holds NaN or +inf there{overflow})"
    )


@dataclass(frozen=True)
class EarlyExitResult:
    """Per sample: the predicted class, the steps run (its exit step, 1 to ``T``), the
    accumulated output at its exit ``[B, K]`` and its score there."""

    predictions: Tensor
    exit_steps: Tensor
    outputs: Tensor
    scores: Tensor

    @property
    def mean_steps(self) -> float:
        """The mean number of steps the samples ran."""
        return float(self.exit_steps.double().mean())


def _accumulated(total: Tensor, steps: int, accumulate: str) -> Tensor:
    return total / steps if accumulate == "mean" else total


def exit_from_outputs(out_seq: Tensor, rule: ExitRule) -> EarlyExitResult:
    """The exits of ``rule`` read off a whole run's outputs ``out_seq`` ``[T, B, K]``
    after the fact: for each sample the first step whose accumulated output passes
    (else ``T``). Equals :func:`early_exit` on the same network and input, which only
    runs the steps needed; float16 or bfloat16 outputs (a run under ``torch.autocast``)
    are accumulated in float32, as :func:`early_exit` accumulates them.

    Raises:
        ShapeError: ``out_seq`` is not ``[T, B, K]`` with ``T, B, K >= 1``.
        ConfigurationError: an accumulated output with NaN or +inf (no score).
    """
    _check_outputs(out_seq)
    half = out_seq.dtype if out_seq.dtype in (torch.float16, torch.bfloat16) else None
    if half is not None:
        out_seq = out_seq.float()  # (autocast) sums of half floats lose the small terms
    steps = out_seq.shape[0]
    counts = torch.arange(1, steps + 1, device=out_seq.device, dtype=out_seq.dtype)
    total = out_seq.cumsum(0)
    accumulated = total / counts.view(-1, 1, 1) if rule.accumulate == "mean" else total
    scores = exit_scores(accumulated, rule.criterion)  # [T, B]
    _check_scores(scores, torch.arange(out_seq.shape[1]), None, "exit_from_outputs", half)
    passed = rule.passes(scores)
    passed[-1] = True
    first = passed.to(torch.uint8).argmax(dim=0)  # the first step that passes
    samples = torch.arange(out_seq.shape[1], device=out_seq.device)
    outputs = accumulated[first, samples]
    return EarlyExitResult(outputs.argmax(-1), first + 1, outputs, scores[first, samples])


def _check_outputs(out_seq: Tensor) -> None:
    if not isinstance(out_seq, Tensor) or out_seq.dim() != 3 or 0 in out_seq.shape:
        got = tuple(out_seq.shape) if isinstance(out_seq, Tensor) else type(out_seq).__name__
        raise ShapeError(f"exit_from_outputs: out_seq must be [T, B, K], T, B, K >= 1; got {got}")
    if not out_seq.is_floating_point():
        raise DTypeError(f"exit_from_outputs: out_seq must be floating point, got {out_seq.dtype}")


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """``model`` in eval mode for the block; each module's mode restored after."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def _check_batch_independent(model: nn.Module) -> None:
    """A ConfigurationError naming the first batch norm of ``model`` without running
    statistics: it normalises with the statistics of each call's batch even in eval
    mode, so one step of the samples still running computes something else than the
    whole run (whose statistics span all steps and samples)."""
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.running_mean is None:
            raise ConfigurationError(
                f"early_exit: module {name or type(model).__name__!r} "
                f"({type(module).__name__}) has no running statistics "
                "(track_running_stats=False): it normalises with the statistics of each "
                "call's batch, so a step of the samples still running would not compute "
                "what the whole run does"
            )


@torch.no_grad()
def early_exit(
    model: nn.Module,
    x_seq: Tensor,
    rule: ExitRule,
    *,
    on_select: Callable[[Tensor], None] | None = None,
) -> EarlyExitResult:
    """Run ``model`` on ``x_seq`` ``[T, B, ...]`` one time step at a time and stop
    each sample at the first step whose accumulated output passes ``rule``.

    The model runs in eval mode (each module's mode is restored after), without
    gradients, in multi-step mode on one-step chunks ``[1, b, ...]`` with its state
    carried explicitly (:func:`spikeflow.functional.run`): its own carried state and
    streaming flags are left as they were. After each step the samples that exited are
    dropped from the input and from every stateful module's state, so the next step
    runs (and an :class:`~spikeflow.energy.OperationCounter` counts) only the samples
    still running. The model must return every step's output ``[T, B, K]``; a float16
    or bfloat16 output (a model run under ``torch.autocast``) is accumulated in float32.
    ``on_select``, if given, is called with the positions (among the samples that ran
    the step) of the samples kept, each time some exit before the last step: what an
    observer holding per-sample rows needs to drop the same rows
    (:meth:`~spikeflow.energy.NeuroBenchCounter.select`).

    Raises:
        ShapeError: ``x_seq`` is not time-major with at least one step and one sample,
            or the model does not return ``[1, b, K]`` for a step.
        StateError: the model holds a module that cannot carry its state from one step
            to the next (a whole-sequence module, another library's neuron, a plain
            module keeping a state in a tensor attribute), or whose state's samples
            cannot be selected (named).
        ConfigurationError: a step's accumulated output with NaN or +inf (the sample
            and step named), or a batch norm without running statistics (it would
            normalise each step's running samples by themselves).
    """
    if not isinstance(x_seq, Tensor):
        raise DTypeError(f"early_exit: x_seq must be a tensor, got {type(x_seq).__name__}")
    check_time_major(x_seq, "early_exit", single_step=False)
    steps, batch = x_seq.shape[:2]
    if steps == 0 or batch == 0:
        raise ShapeError(f"early_exit: x_seq has no steps or no samples ({tuple(x_seq.shape)})")
    if not isinstance(rule, ExitRule):
        raise ConfigurationError(f"early_exit: rule must be an ExitRule, got {rule!r}")
    _check_batch_independent(model)
    net = SteppedNetwork(model)
    device = x_seq.device
    running = torch.arange(batch, device=device)  # the samples still running
    exit_steps = torch.zeros(batch, dtype=torch.long, device=device)
    outputs: Tensor | None = None
    scores: Tensor | None = None
    state = None
    total: Tensor | None = None
    with _eval_mode(model):
        for t in range(steps):
            out, state = net(selected_input(x_seq[t : t + 1], running if t else None), state)
            out = check_step_output(out, len(running), "early_exit")
            half = out.dtype if out.dtype in (torch.float16, torch.bfloat16) else None
            if half is not None:
                out = out.float()  # (autocast) sums of half floats lose the small terms
            total = out.clone() if total is None else total + out
            accumulated = _accumulated(total, t + 1, rule.accumulate)
            score = exit_scores(accumulated, rule.criterion)
            _check_scores(score, running, t, "early_exit", half)
            done = rule.passes(score) if t + 1 < steps else torch.ones_like(score, dtype=bool)
            if outputs is None or scores is None:
                outputs = accumulated.new_zeros(batch, accumulated.shape[-1])
                scores = score.new_zeros(batch)
            finished = running[done]
            exit_steps[finished] = t + 1
            outputs[finished] = accumulated[done]
            scores[finished] = score[done]
            if bool(done.all()):
                break
            if bool(done.any()):
                keep = (~done).nonzero().flatten()
                state = net.select(state, keep, len(running))
                if on_select is not None:
                    on_select(keep)
                running, total = running[keep], total[keep]
    assert outputs is not None and scores is not None
    return EarlyExitResult(outputs.argmax(-1), exit_steps, outputs, scores)
