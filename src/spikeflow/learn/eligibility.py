"""MSTDP-ET with an eligibility trace that carries over from one call to the next.

Each sample keeps an eligibility trace ``z_b`` (the weight's shape):
``z_b[t] = z_b[t-1]·(1 - 1/τ_z) + ζ_b[t]/τ_z`` with ``ζ_b[t]`` the step's STDP terms,
and the update is ``Δw = Σ_t Σ_b r[t,b]·z_b[t]``. Over a call of ``T`` steps this is
(with ``λ = 1 - 1/τ_z``)::

    Δw = Σ_b (Σ_t r[t,b]·λ^(t+1))·z_b[-1]  +  Σ_{k,b} R[k,b]·ζ_b[k]
    z_b[T-1] = λ^T·z_b[-1] + Σ_k (λ^(T-1-k)/τ_z)·ζ_b[k]

where ``R`` is :func:`~spikeflow.learn.eligibility_reward` of ``r``: the carried trace
meets the call's rewards, the call's own eligibilities meet the rewards after them, and
the trace is brought forward. A reward arriving in a later call thus still reaches the
eligibility of this one (online reinforcement learning, one step per call).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from spikeflow._checks import check_real
from spikeflow.errors import ShapeError
from spikeflow.learn.stdp_rule import (
    _identity,
    _pair_sums,
    _reward_steps,
    _steps_weighted,
    eligibility_reward,
    traced_spikes,
)

__all__ = ["eligibility_stdp_update"]


def _per_sample_pair_sums(synapse: nn.Module, a: Tensor, b: Tensor) -> Tensor:
    """``Σ_t b ⊗ a`` per sample: ``[B, *weight.shape]``."""
    weight = synapse.weight
    steps, batch = a.shape[:2]
    if batch == 0:  # (no samples: nothing to stack, and no size to infer)
        return a.new_zeros((0, *weight.shape))
    if isinstance(synapse, nn.Linear):
        a = a.reshape(steps, batch, -1, weight.shape[1])
        b = b.reshape(steps, batch, -1, weight.shape[0])
        return torch.einsum("tbno,tbni->boi", b, a)
    return torch.stack([_pair_sums(synapse, a[:, i:i + 1], b[:, i:i + 1])
                        for i in range(a.shape[1])])  # fmt: skip


@torch.no_grad()
def eligibility_stdp_update(
    synapse: nn.Linear | nn.Conv1d | nn.Conv2d,
    pre: Tensor,
    post: Tensor,
    reward: Tensor | float,
    tau_pre: float,
    tau_post: float,
    tau_eligibility: float,
    f_pre: Callable[[Tensor], Tensor] = _identity,
    f_post: Callable[[Tensor], Tensor] = _identity,
    traces: tuple[Tensor | None, Tensor | None] = (None, None),
    eligibility: Tensor | None = None,
) -> tuple[Tensor, tuple[Tensor, Tensor], Tensor]:
    """MSTDP-ET for one call, continuing the eligibility traces of the calls before.

    Args:
        synapse, pre, post, tau_pre, tau_post, f_pre, f_post, traces: as
            :func:`~spikeflow.learn.stdp_update`.
        reward: the rewards of this call's steps, broadcast to ``[T, B]``.
        tau_eligibility: τ_z (>= 1).
        eligibility: the per-sample eligibility traces ``[B, *weight.shape]`` after the
            previous call (``None``: zero).

    Returns:
        ``(Δw, (x, y), z)``: the change, the spike traces and the eligibility traces
        after the last step.

    Raises:
        ShapeError: as :func:`~spikeflow.learn.stdp_update`, or carried eligibility
            traces of another shape (another batch size: reset).
    """
    tau = check_real("STDP: tau_eligibility", tau_eligibility, 1.0)
    weight = synapse.weight.detach()
    with torch.autocast(weight.device.type, enabled=False):
        pre, post, x, y = traced_spikes(synapse, pre, post, tau_pre, tau_post, traces)
        steps, batch = pre.shape[:2]
        shape = (batch, *weight.shape)
        if eligibility is not None and tuple(eligibility.shape) != shape:
            raise ShapeError(
                f"STDP: the carried eligibility traces have shape {tuple(eligibility.shape)}, "
                f"not [B, *weight] = {shape} (reset the learner when the batch size changes)"
            )
        r = _reward_steps(reward, steps, batch, like=pre)
        decay = 1.0 - 1.0 / tau
        w = weight.to(pre.dtype)
        filtered = eligibility_reward(r, tau)
        # this call's eligibilities, each weighted by the rewards from its step on
        delta = f_post(w) * _pair_sums(synapse, x, _steps_weighted(post, filtered)) - (
            f_pre(w) * _pair_sums(synapse, _steps_weighted(pre, filtered), y))  # fmt: skip
        powers = decay ** torch.arange(1, steps + 1, dtype=pre.dtype, device=pre.device)
        # the carried traces, weighted by this call's rewards
        z = torch.zeros(shape, dtype=pre.dtype, device=pre.device) if eligibility is None else (
            eligibility.to(pre.dtype))  # fmt: skip
        carried = (r * powers.unsqueeze(1)).sum(dim=0)  # [B]
        delta += torch.tensordot(carried, z, dims=1)
        # the traces brought forward to the last step
        ages = decay ** torch.arange(steps - 1, -1, -1, dtype=pre.dtype, device=pre.device)
        ages = (ages / tau).unsqueeze(1).expand(steps, batch)  # λ^(T-1-k)/τ
        new = f_post(w) * _per_sample_pair_sums(synapse, x, _steps_weighted(post, ages)) - (
            f_pre(w) * _per_sample_pair_sums(synapse, _steps_weighted(pre, ages), y))  # fmt: skip
        z = z * decay**steps + new
    return delta.to(weight.dtype), (x[-1], y[-1]), z
