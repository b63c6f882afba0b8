"""Forward propagation through time (FPTT): an update at every step, pulled to a running mean.

Truncated BPTT with one step per window (``--tbptt 1``) updates the weights after every
step on that step's loss alone, so the weights chase each step's gradient. FPTT (Kag &
Saligrama, ICML 2021, "Training Recurrent Neural Networks via Forward Propagation
Through Time"; for spiking networks Yin, Corradi & Bohte, Nature Machine Intelligence
2023, arXiv 2112.11231) adds to each step's loss a dynamic regulariser that ties the
weights ``W`` to a running mean ``W̄`` of the weights so far, shifted by an estimate
``λ`` of the previous step's gradient:

    R(W) = (ρ − 1) Σ W·λ + (α/2) Σ (W − W̄)²

and after each optimizer step updates, in this order (β = 1/2 in both papers),

    λ ← λ − α (W − W̄)
    W̄ ← (1 − β) W̄ + β W − (β/α) λ

``W̄`` starts at the initial weights and ``λ`` at zero. This is the form of the
authors' released code (Kag's and Yin's repositories; ρ = 0 there): λ is the
Lagrange multiplier of the constraint ``W = W̄``, so ``(α/2)(W − W̄ − λ/α)²`` is the
paper's Algorithm 1 regulariser up to a constant, with the gradient at the new weights
estimated by the optimality condition of the step rather than by a second forward
pass. SpikingJelly's ``fptt_online_training`` follows Algorithm 1 literally instead:
a second forward of the same input after each update (from the state the first
forward left, then restored), and the penalty averaged over each tensor's entries
(``F.mse_loss``) rather than summed, which weakens it by the tensor's size; neither is
the authors' code, so spikeflow does not follow it.

The steps run as truncated BPTT (:mod:`spikeflow.training.tbptt`): windows of ``K``
steps (``K = 1``: the papers' setting), an optimizer step after every window on that
window's loss plus ``R``, the carried state detached between windows.
``spikeflow train --tbptt K --fptt ALPHA`` trains this way.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

from spikeflow.errors import ConfigurationError
from spikeflow.training.tbptt import TBPTTResult, tbptt_backward

__all__ = ["FPTTRegulariser", "fptt_step"]


def _positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigurationError(f"fptt: {name} must be a finite number, got {value!r}")
    if value <= 0:
        raise ConfigurationError(f"fptt: {name} must be positive, got {value!r}")
    return float(value)


class FPTTRegulariser:
    """FPTT's running mean ``W̄`` and multiplier ``λ`` for a set of parameters, the
    penalty they add to each step's loss and their update after each optimizer step
    (module docstring).

    Args:
        parameters: the trained parameters (those the optimizer steps), in a fixed order.
        alpha: ``α``, the strength of the pull to the running mean (> 0; the papers use
            0.1 to 0.5).
        beta: ``β``, the running mean's step, in ``(0, 1]`` (1/2 in both papers).
        rho: ``ρ``, the weight of the linear term: the penalty holds ``(ρ − 1) W·λ``
            (0 in the authors' code).

    Raises:
        ConfigurationError: a bad ``alpha``, ``beta`` or ``rho``, no parameters, or a
            parameter listed twice.
    """

    def __init__(
        self, parameters: Iterable[nn.Parameter], alpha: float, beta: float = 0.5, rho: float = 0.0
    ) -> None:
        self.alpha = _positive("alpha", alpha)
        self.beta = _positive("beta", beta)
        if self.beta > 1:
            raise ConfigurationError(f"fptt: beta must be at most 1, got {beta!r}")
        if isinstance(rho, bool) or not isinstance(rho, (int, float)) or not math.isfinite(rho):
            raise ConfigurationError(f"fptt: rho must be a finite number, got {rho!r}")
        self.rho = float(rho)
        self.parameters = list(parameters)
        if not self.parameters:
            raise ConfigurationError("fptt: there are no parameters to regularise")
        if len({id(p) for p in self.parameters}) != len(self.parameters):
            raise ConfigurationError("fptt: a parameter is listed twice")
        self.mean = [p.detach().clone() for p in self.parameters]
        self.multiplier = [torch.zeros_like(p, memory_format=torch.preserve_format)
                           for p in self.parameters]  # fmt: skip

    @classmethod
    def for_optimizer(
        cls, optimizer: torch.optim.Optimizer, alpha: float, beta: float = 0.5, rho: float = 0.0
    ) -> FPTTRegulariser:
        """The regulariser of every parameter ``optimizer`` steps, in its groups' order."""
        params = [p for group in optimizer.param_groups for p in group["params"]]
        return cls(params, alpha, beta, rho)

    def penalty(self) -> Tensor:
        """``R(W)``: a scalar in the parameters' dtype, differentiable in them."""
        terms = []
        for w, mean, lam in zip(self.parameters, self.mean, self.multiplier):
            term = 0.5 * self.alpha * (w - mean).square().sum()
            if self.rho != 1.0:
                term = term + (self.rho - 1.0) * (w * lam).sum()
            terms.append(term)
        return torch.stack([t.to(terms[0].dtype) for t in terms]).sum()

    @torch.no_grad()
    def add_gradient(self, scale: float = 1.0) -> None:
        """Add ``scale`` times the gradient of :meth:`penalty`, ``α (W − W̄) + (ρ − 1) λ``,
        to the ``.grad`` of every parameter that requires one (set where it is None).

        The same as backpropagating the penalty with the loss, but outside autograd: under
        DistributedDataParallel the task's gradient is averaged over the processes during
        ``loss.backward()`` and this term, the same on every process, is added after (a
        penalty in the graph reached the parameters a model's forward leaves unused a
        second time, which DDP with ``find_unused_parameters`` refuses). ``scale``: the
        gradient scaler's factor when the loss was scaled (fp16).
        """
        for w, mean, lam in zip(self.parameters, self.mean, self.multiplier):
            if not w.requires_grad:
                continue
            grad = (w - mean).mul_(self.alpha)
            if self.rho != 1.0:
                grad.add_(lam, alpha=self.rho - 1.0)
            if scale != 1.0:
                grad.mul_(scale)
            if w.grad is None:
                w.grad = grad
            else:
                w.grad.add_(grad)

    @torch.no_grad()
    def update(self) -> None:
        """The updates of ``λ`` and ``W̄`` after an optimizer step (module docstring)."""
        for w, mean, lam in zip(self.parameters, self.mean, self.multiplier):
            lam.sub_(self.alpha * (w - mean))
            mean.mul_(1.0 - self.beta).add_(self.beta * w - (self.beta / self.alpha) * lam)

    def state_dict(self) -> dict[str, Any]:
        """``W̄`` and ``λ`` (copies) with the hyperparameters, for a checkpoint."""
        return {
            "alpha": self.alpha, "beta": self.beta, "rho": self.rho,
            "mean": [m.clone() for m in self.mean],
            "multiplier": [m.clone() for m in self.multiplier],
        }  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s tensors; the parameters must match in number and
        shape, the hyperparameters must equal this regulariser's.

        Raises:
            ConfigurationError: a different number of parameters, a shape that differs,
                or other hyperparameters.
        """
        for name in ("alpha", "beta", "rho"):
            if float(state[name]) != getattr(self, name):
                raise ConfigurationError(
                    f"fptt: the saved state has {name} = {state[name]}, this run "
                    f"{getattr(self, name)}"
                )
        for key in ("mean", "multiplier"):
            saved = state[key]
            if len(saved) != len(self.parameters):
                raise ConfigurationError(
                    f"fptt: the saved state holds {len(saved)} tensors in {key!r}, the run "
                    f"trains {len(self.parameters)} parameters"
                )
            for i, (mine, theirs) in enumerate(zip(getattr(self, key), saved)):
                if mine.shape != theirs.shape:
                    raise ConfigurationError(
                        f"fptt: saved {key}[{i}] has shape {tuple(theirs.shape)}, parameter "
                        f"{i} has {tuple(mine.shape)}"
                    )
                mine.copy_(theirs)


def fptt_step(
    model: nn.Module,
    inputs: Tensor,
    target: Tensor,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    regulariser: FPTTRegulariser,
    window: int = 1,
    *,
    target_per_step: bool = False,
) -> TBPTTResult:
    """Train ``model`` on one batch ``inputs`` ``[T, B, ...]`` by FPTT: windows of
    ``window`` steps (1: the papers'), after each an optimizer step on the gradient of
    the window's loss plus ``regulariser.penalty()`` (its gradient added by
    ``regulariser.add_gradient()``), then ``regulariser.update()``.

    The result's losses are the task losses (without the penalty). See
    :func:`spikeflow.training.tbptt.tbptt_backward` for the other arguments and what
    it raises.
    """

    def backward(loss: Tensor) -> None:
        loss.backward()
        regulariser.add_gradient()  # the penalty's gradient

    def after_window(index: int, loss: Tensor) -> None:
        optimizer.step()
        regulariser.update()
        optimizer.zero_grad(set_to_none=True)

    optimizer.zero_grad(set_to_none=True)
    return tbptt_backward(
        model, inputs, target, loss_fn, window,
        step=after_window, backward=backward, target_per_step=target_per_step,
    )  # fmt: skip
