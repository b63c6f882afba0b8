"""Spike-time surrogate and leaky charge of hybrid training (STDB, DIET-SNN).

STDB (Rathi, Srinivasan, Panda and Roy, ICLR 2020, "spike-timing-dependent
backpropagation") differentiates a spike by how long ago the neuron last fired, not by
how near its membrane is to the threshold:

    ∂S/∂z = α·exp(−β·Δt)        Δt = steps since the neuron's last spike

with ``z = (H − θ)/θ`` (the authors' ``mem/θ − 1``) and ``α = 0.3``, ``β = 0.01`` (their
defaults). A neuron that has not fired yet has ``Δt = 999`` at the first step, one more
at each step after, as in the authors' code (their last-spike times start at −1000 and
they count ``Δt = t − 1 − last``, a spike at step ``t`` storing ``t − 1``). DIET-SNN (Rathi
and Roy 2021) also learns a membrane leak ``λ`` per layer: ``H = λ·V + X``.

**A learnt θ.** Neither paper trains θ with this surrogate: STDB's thresholds are
fixed by the conversion (plain floats in the authors' code), and DIET-SNN, which learns
θ, uses the windowed ``0.3·max(0, 1 − |z|)``. Differentiated through ``z = H/θ − 1`` as
written, the spike would give ``∂S/∂θ = −α·exp(−β·Δt)·H/θ²``: with a surrogate that,
unlike the triangle (zero outside ``0 < H < 2θ``, so ``|∂S/∂θ| ≤ 2/θ``), has no window
in ``z``, that grows with ``|H|`` without bound (a membrane far below or above θ). But
``Θ((H − θ)/θ) = Θ(H − θ)`` for ``θ > 0``: the division only scales the surrogate's
argument. So θ enters the STDB spike as the membrane does, with the opposite sign,
``∂S/∂θ = −∂S/∂H = −α·exp(−β·Δt)/θ`` (the 1/θ of the normalisation taken as a
constant): bounded by ``α/θ``, whatever ``H``.

These are the equations :class:`~spikeflow.conversion.hybrid.TrainableIFNode` declares
when it has a leak or an STDB surrogate; the STDB spike is a custom autograd function,
so such a neuron runs on the reference loop (backend ``'torch'``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from spikeflow._checks import check_real

__all__ = ["NEVER_FIRED", "STDB"]

#: Steps since the last spike of a neuron that has not fired, before its first step
#: (the authors' last-spike time −1000 and ``Δt = t − 1 − last``: Δt = 999 at step 0).
NEVER_FIRED = 998.0


class _STDBSpike(torch.autograd.Function):
    """``Θ(z)`` forward (``Θ(0) = 1``, the converted neuron's), ``α·exp(−β·Δt)`` backward."""

    @staticmethod
    def forward(ctx, z: Tensor, dt: Tensor, alpha: float, beta: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(dt)
        ctx.alpha, ctx.beta = alpha, beta
        return (z >= 0).to(z.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None, None]:  # type: ignore[override]
        (dt,) = ctx.saved_tensors
        return grad * (ctx.alpha * torch.exp(-ctx.beta * dt)).to(grad.dtype), None, None, None


class STDB(nn.Module):
    """STDB's spike-time surrogate: ``∂S/∂z = α·exp(−β·Δt)`` (Rathi et al. 2020).

    Pass it (or ``"stdb"``) as ``surrogate_function`` of
    :func:`~spikeflow.conversion.fine_tunable`; it is not a membrane surrogate (its
    gradient is a function of the neuron's spike history), so it is called with
    ``z = (H − θ)/θ`` and ``Δt`` together.

    Args:
        alpha: α > 0, the gradient right after a spike (default 0.3, the authors').
        beta: β ≥ 0, its decay per step since the last spike (default 0.01).

    Raises:
        ConfigurationError: α not a finite real > 0, or β not a finite real ≥ 0 (Python
            or numpy numbers; bools and strings are refused).
    """

    def __init__(self, alpha: float = 0.3, beta: float = 0.01) -> None:
        super().__init__()
        self.alpha = check_real("STDB: alpha", alpha, 0.0, low_open=True)
        self.beta = check_real("STDB: beta", beta, 0.0)

    def derivative(self, dt: Tensor) -> Tensor:
        """``α·exp(−β·Δt)``: the gradient of a spike ``Δt`` steps after the last one."""
        return self.alpha * torch.exp(-self.beta * dt)

    def forward(self, z: Tensor, dt: Tensor) -> Tensor:
        """The spikes ``Θ(z)`` whose gradient in ``z`` is :meth:`derivative` of ``dt``."""
        return _STDBSpike.apply(z, dt, self.alpha, self.beta)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha:g}, beta={self.beta:g}"


# -- the declarations TrainableIFNode runs with a leak or STDB (see hybrid.py) ---------


def leaky_charge(x: Tensor, v: Tensor, *, leak: Tensor | float) -> Tensor:
    """DIET-SNN's charge ``H = λ·V + X``."""
    return leak * v + x


def stdb_charge(
    x: Tensor, v: Tensor, since: Tensor, *, leak: Tensor | float
) -> tuple[Tensor, Tensor]:
    """``H = λ·V + X`` and ``Δt`` of this step (one more than the last step's)."""
    return leak * v + x, since + 1.0


def stdb_fire(
    h: Tensor, theta: Tensor, spike, since: Tensor, *, stdb_alpha: float, stdb_beta: float
) -> Tensor:
    """``Θ((H − θ)/θ)`` with STDB's gradient ``α·exp(−β·Δt)`` in ``z``; the θ dividing
    is the normalisation's constant, so ``∂S/∂θ = −∂S/∂H = −α·exp(−β·Δt)/θ``, bounded
    (module docstring). ``spike``, the module's membrane surrogate, is not used."""
    scale = theta.detach() if isinstance(theta, Tensor) else theta
    return _STDBSpike.apply((h - theta) / scale, since, stdb_alpha, stdb_beta)


def stdb_update(h: Tensor, s: Tensor, since: Tensor) -> Tensor:
    """``Δt`` restarts at 0 where the neuron fired (no gradient: a spike-time count)."""
    return torch.where(s.detach() > 0, torch.zeros_like(since), since)
