"""The STDP rule with exponential traces, as a function of two spike sequences.

Each synapse keeps a presynaptic trace ``x`` and each neuron a postsynaptic trace
``y``, decaying by ``1 - 1/τ`` per step and raised by 1 at each spike (traces updated
before the weights, as SpikingJelly's learner):

    x[t] = x[t-1]·(1 - 1/τ_pre) + s_pre[t]        y[t] = y[t-1]·(1 - 1/τ_post) + s_post[t]
    Δw  = f_post(w)·Σ s_post[t]·x[t]  -  f_pre(w)·Σ y[t]·s_pre[t]

summed over time, batch and (for a convolution) output positions: a presynaptic spike
followed k steps later by a postsynaptic one strengthens the synapse by
``f_post(w)·(1 - 1/τ_pre)^k`` (potentiation), the reverse order weakens it by
``f_pre(w)·(1 - 1/τ_post)^k`` (depression), and both count at k = 0.

Reward-modulated STDP (Florian 2007) weighs each step's pair terms by a reward
``r[t, b]``: ``Δw = Σ_{t,b} r[t,b]·(f_post(w)·s_post ⊗ x - f_pre(w)·y ⊗ s_pre)[t,b]``
(MSTDP). With an eligibility trace ``z[t] = z[t-1]·(1 - 1/τ_z) + ζ[t]/τ_z`` and
``Δw = Σ_t r[t]·z[t]`` (MSTDP-ET), the sum over a sequence is MSTDP with the reward
filtered backwards in time, :func:`eligibility_reward`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

from spikeflow._checks import check_real
from spikeflow.errors import ConfigurationError, ShapeError

__all__ = ["check_synapse", "eligibility_reward", "stdp_update"]

#: Dims of one step of each layer's input ([B, in] for Linear: more leading dims fold
#: into the batch).
STEP_DIMS: dict[type[nn.Module], int] = {nn.Linear: 2, nn.Conv1d: 3, nn.Conv2d: 4}


def _identity(weight: Tensor) -> Tensor:
    return weight


def check_synapse(synapse: nn.Module) -> int:
    """The dims of one step of ``synapse``'s input, or a ConfigurationError."""
    dims = next((d for kind, d in STEP_DIMS.items() if isinstance(synapse, kind)), None)
    if dims is None:
        raise ConfigurationError(
            f"STDP learns the weights of nn.Linear, nn.Conv1d and nn.Conv2d layers (and "
            f"spikeflow's sequence versions), got {type(synapse).__name__}"
        )
    if parametrize.is_parametrized(synapse, "weight"):
        raise ConfigurationError(
            f"STDP: the {type(synapse).__name__}'s weight is reparameterised (pruned?); "
            "STDP updates plain weights"
        )
    return dims


def _traces(spikes: Tensor, decay: float, start: Tensor | None) -> Tensor:
    """``x[t] = x[t-1]·decay + s[t]`` for a sequence ``[T, ...]`` (``x[-1] = start``)."""
    out = torch.empty_like(spikes)
    trace = torch.zeros_like(spikes[0]) if start is None else start.to(spikes.dtype)
    for t in range(spikes.shape[0]):
        trace = trace * decay + spikes[t]
        out[t] = trace
    return out


def _padded(synapse: nn.Conv1d | nn.Conv2d, x: Tensor) -> Tensor:
    """``x`` padded as the convolution pads its input (any padding mode)."""
    padding = synapse._reversed_padding_repeated_twice
    if not any(padding):
        return x
    mode = "constant" if synapse.padding_mode == "zeros" else synapse.padding_mode
    return F.pad(x, padding, mode=mode)


def _conv_output_size(synapse: nn.Conv1d | nn.Conv2d, padded: torch.Size) -> tuple[int, ...]:
    return tuple(
        (size - dilation * (kernel - 1) - 1) // stride + 1
        for size, kernel, stride, dilation in zip(
            padded, synapse.kernel_size, synapse.stride, synapse.dilation, strict=True
        )
    )


def _check_shapes(synapse: nn.Module, pre: Tensor, post: Tensor, dims: int) -> None:
    name = type(synapse).__name__
    weight = synapse.weight
    if pre.dim() < 3 or pre.shape[0] == 0:
        raise ShapeError(
            f"STDP on a {name}: pre spikes must be a sequence [T, B, ...] with T >= 1, got "
            f"shape {tuple(pre.shape)}"
        )
    if isinstance(synapse, nn.Linear):
        expected_post = (*pre.shape[:-1], weight.shape[0])
        ok = pre.shape[-1] == weight.shape[1] and tuple(post.shape) == expected_post
        if not ok:
            raise ShapeError(
                f"STDP on Linear({weight.shape[1]}, {weight.shape[0]}): pre spikes [T, B, "
                f"..., {weight.shape[1]}] and post spikes of the same leading dims with "
                f"{weight.shape[0]} features, got {tuple(pre.shape)} and {tuple(post.shape)}"
            )
        return
    channels = weight.shape[1] * synapse.groups
    if pre.dim() != dims + 1 or pre.shape[2] != channels:
        # a grouped weight holds one group's channels: name the whole count and the split
        split = f" ({synapse.groups} groups of {weight.shape[1]})" if synapse.groups > 1 else ""
        raise ShapeError(
            f"STDP on a {name} with {channels} input channels{split}: pre spikes must be "
            f"[T, B, C, ...] with C = {channels} and {dims + 1} dims, got {tuple(pre.shape)}"
        )
    # _reversed_padding_repeated_twice holds (before, after) pairs, last dim first.
    padding, n = synapse._reversed_padding_repeated_twice, dims - 2
    padded = tuple(
        size + padding[2 * (n - 1 - i)] + padding[2 * (n - 1 - i) + 1]
        for i, size in enumerate(pre.shape[3:])
    )
    expected_post = (*pre.shape[:2], weight.shape[0], *_conv_output_size(synapse, padded))
    if tuple(post.shape) != expected_post:
        raise ShapeError(
            f"STDP on a {name}: post spikes must be the layer's output for the pre spikes "
            f"{tuple(pre.shape)}, {expected_post}; got {tuple(post.shape)}"
        )


def _check_trace(name: str, trace: Tensor | None, step_shape: torch.Size) -> None:
    if trace is not None and trace.shape != step_shape:
        raise ShapeError(
            f"STDP: the carried {name} trace has shape {tuple(trace.shape)}, one step of the "
            f"spikes {tuple(step_shape)} (reset the learner when the batch size changes)"
        )


def _pair_sums(synapse: nn.Module, pre: Tensor, post: Tensor) -> Tensor:
    """``Σ post ⊗ pre`` over time, batch and positions, in the weight's layout."""
    weight = synapse.weight
    if isinstance(synapse, nn.Linear):
        return post.reshape(-1, weight.shape[0]).T @ pre.reshape(-1, weight.shape[1])
    steps = pre.shape[0] * pre.shape[1]
    pre = _padded(synapse, pre.reshape(steps, *pre.shape[2:]))
    post = post.reshape(steps, *post.shape[2:])
    # The weight gradient of a convolution is exactly this sum (no unfolded copies); a
    # grouped one pairs each group's inputs with its own outputs only.
    grad = torch.nn.grad.conv1d_weight if isinstance(synapse, nn.Conv1d) else (
        torch.nn.grad.conv2d_weight)  # fmt: skip
    return grad(pre, weight.shape, post, stride=synapse.stride, padding=0,
                dilation=synapse.dilation, groups=synapse.groups)  # fmt: skip


def _reward_steps(reward: Tensor | float, steps: int, batch: int, like: Tensor) -> Tensor:
    """``reward`` broadcast to ``[T, B]`` (a scalar, ``[B]``, ``[T, 1]``, ``[T, B]``)."""
    value = torch.as_tensor(reward, dtype=like.dtype, device=like.device)
    if value.is_complex() or not torch.isfinite(value).all():
        raise ConfigurationError("STDP: reward must be finite real numbers")
    try:
        return torch.broadcast_to(value, (steps, batch))
    except RuntimeError:
        raise ShapeError(
            f"STDP: reward of shape {tuple(value.shape)} does not broadcast to [T, B] = "
            f"[{steps}, {batch}] (a scalar, [B], [T, 1] or [T, B])"
        ) from None


def eligibility_reward(reward: Tensor, tau: float) -> Tensor:
    """The reward MSTDP-ET gives each step's eligibility over a sequence.

    With the eligibility trace ``z[t] = z[t-1]·(1 - 1/τ) + ζ[t]/τ`` (``z[-1] = 0``) and
    the update ``Σ_t r[t]·z[t]``, step ``k``'s eligibility ``ζ[k]`` is weighted by
    ``R[k] = (1/τ)·Σ_{t≥k} r[t]·(1 - 1/τ)^(t-k)``: pass ``R`` as the ``reward`` of
    :func:`stdp_update`. ``reward`` is ``[T, ...]`` (time first; any dtype, summed in
    float32 or wider); ``τ >= 1``.
    """
    tau = check_real("eligibility_reward: tau", tau, 1.0)
    if not isinstance(reward, Tensor) or reward.dim() == 0 or reward.shape[0] == 0:
        raise ShapeError("eligibility_reward: reward must be a [T, ...] tensor with T >= 1")
    decay = 1.0 - 1.0 / tau
    dtype = torch.promote_types(reward.dtype, torch.float32) if reward.is_floating_point() else (
        torch.float32)  # fmt: skip
    reward = reward.to(dtype)  # integer/bool rewards (pred == label) and bf16 sum in float
    out = torch.empty_like(reward)
    running = torch.zeros_like(reward[0])
    for t in range(reward.shape[0] - 1, -1, -1):
        running = running * decay + reward[t]
        out[t] = running
    return out / tau


def _steps_weighted(spikes: Tensor, reward: Tensor | None) -> Tensor:
    if reward is None:
        return spikes
    return spikes * reward.reshape(*reward.shape, *([1] * (spikes.dim() - 2)))


@torch.no_grad()
def stdp_update(
    synapse: nn.Linear | nn.Conv1d | nn.Conv2d,
    pre: Tensor,
    post: Tensor,
    tau_pre: float,
    tau_post: float,
    f_pre: Callable[[Tensor], Tensor] = _identity,
    f_post: Callable[[Tensor], Tensor] = _identity,
    traces: tuple[Tensor | None, Tensor | None] = (None, None),
    reward: Tensor | float | None = None,
    pre_offset: float = 0.0,
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """The STDP weight change of ``synapse`` for one sequence, and the final traces.

    Args:
        synapse: the layer whose weight learns.
        pre: its input spikes ``[T, B, ...]`` (one step of it is the layer's input; a
            linear layer's leading dims after T fold into the batch).
        post: the spikes of the neurons it drives, the layer's output shape per step.
        tau_pre, tau_post: trace time constants in steps (>= 1).
        f_pre, f_post: weight dependence of depression and potentiation, applied to the
            whole weight (identity: scaled by w; ``lambda w: 1.0`` gives additive STDP).
        traces: the traces at the step before ``pre[0]`` (``None``: zero), one step's
            shape each.
        reward: reward-modulated STDP (MSTDP): each step's and sample's pair terms
            weighted by ``reward`` broadcast to ``[T, B]`` (a scalar, ``[B]``,
            ``[T, 1]`` or ``[T, B]``); for MSTDP-ET pass :func:`eligibility_reward` of
            the rewards. ``None``: plain STDP.
        pre_offset: ``x_tar`` subtracted from the presynaptic trace in potentiation,
            ``f_post(w)·Σ s_post ⊗ (x − x_tar)`` (Diehl and Cook's rule: an input
            that was silent before a postsynaptic spike is weakened). For a
            convolution, positions in the zero padding keep trace 0.

    Returns:
        ``(Δw, (x, y))``: the change (the weight's shape and dtype; not applied) and the
        traces after the last step. Sums run in float32 or wider, outside autocast.

    Raises:
        ShapeError: spikes that do not fit the layer or each other, T = 0, traces of
            another shape, or a reward that does not broadcast to ``[T, B]``.
        ConfigurationError: a time constant below 1, or a layer STDP does not cover.
    """
    weight = synapse.weight.detach()
    with torch.autocast(weight.device.type, enabled=False):
        pre, post, x, y = traced_spikes(synapse, pre, post, tau_pre, tau_post, traces)
        r = None if reward is None else _reward_steps(reward, *pre.shape[:2], like=pre)
        offset = check_real("STDP: pre_offset", pre_offset)
        shifted = x - offset if offset else x
        potentiation = _pair_sums(synapse, shifted, _steps_weighted(post, r))  # Σ r·s_post ⊗ x
        depression = _pair_sums(synapse, _steps_weighted(pre, r), y)  # Σ y ⊗ r·s_pre
        w = weight.to(pre.dtype)
        delta = f_post(w) * potentiation - f_pre(w) * depression
    return delta.to(weight.dtype), (x[-1], y[-1])


def traced_spikes(
    synapse: nn.Module,
    pre: Tensor,
    post: Tensor,
    tau_pre: float,
    tau_post: float,
    traces: tuple[Tensor | None, Tensor | None],
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Checked ``pre``, ``post`` in float32 or wider, and their traces ``x``, ``y``
    (call outside autocast)."""
    dims = check_synapse(synapse)
    tau_pre = check_real("STDP: tau_pre", tau_pre, 1.0)
    tau_post = check_real("STDP: tau_post", tau_post, 1.0)
    if not isinstance(pre, Tensor) or not isinstance(post, Tensor):
        raise ShapeError("STDP: pre and post spikes must be tensors")
    _check_shapes(synapse, pre, post, dims)
    _check_trace("presynaptic", traces[0], pre.shape[1:])
    _check_trace("postsynaptic", traces[1], post.shape[1:])
    compute = torch.promote_types(synapse.weight.dtype, torch.float32)
    pre, post = pre.to(compute), post.to(compute)
    x = _traces(pre, 1.0 - 1.0 / tau_pre, traces[0])
    y = _traces(post, 1.0 - 1.0 / tau_post, traces[1])
    return pre, post, x, y
