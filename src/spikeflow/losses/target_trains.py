"""The time-based losses on target spike trains (Zhu et al., NeurIPS 2023): "timing"
and "kernel", as the authors' code (``SNN-temporal-training-losses``) defines them.

Both compare the output spikes ``O`` ``[T, B, K]`` with target trains built from the
labels (:func:`desired_spike_train`): the label neuron should fire at every step but
the first (``T < 20``) or at every other step (``T >= 20``), the others never.

- :func:`spike_kernel_loss` ("kernel"): the squared error of the two trains after a
  first-order synaptic filter (PSP, time constant ``tau_s``); an ordinary
  differentiable function of ``O``.
- :func:`spike_timing_loss` ("timing"): per neuron, the ``j``-th output spike is paired
  with the ``j``-th target spike; a designed gradient moves the label neuron's late
  spikes earlier and the other neurons' spikes later, and reaches output spikes only.

Conventions as :mod:`spikeflow.losses.time_based`: values are batch means (the authors'
sum over the batch: their values and gradients are ``B`` times these); the gradient on
a spike is the gradient with respect to its presence (the event-driven layers read it
as minus the gradient with respect to its time, which is what the authors' code
returns); the backward multiplies by the incoming gradient.
Half-precision outputs (float16, bfloat16: under autocast) are computed on in float32,
and the value is float32 (as autocast runs PyTorch's own losses): a float16 sum of
``T·B·K`` squared errors overflows, and bfloat16 cannot hold ``t + 1/2`` past ``t = 128``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from spikeflow._checks import check_int
from spikeflow.errors import ConfigurationError
from spikeflow.losses.rate import _check_labels_only, _real

__all__ = ["desired_spike_train", "spike_kernel_loss", "spike_timing_loss"]

#: From this many steps on, the label neuron's target fires every other step.
_ALTERNATE_FROM = 20


def desired_spike_train(steps: int, dtype: torch.dtype = torch.float32,
                        device: torch.device | str | None = None) -> Tensor:  # fmt: skip
    """The label neuron's target train ``[steps]`` of the authors' "timing" and "kernel"
    losses: ``0, 1, 1, ..., 1`` (every step but the first) for ``steps < 20``; from 20
    steps, ``0, 1, 0, 1, ...`` (an odd ``steps`` starts with one more 0)."""
    steps = check_int("desired_spike_train: steps", steps, 1)
    train = torch.zeros(steps, dtype=dtype, device=device)
    if steps < _ALTERNATE_FROM:
        train[1:] = 1.0
    else:
        train[steps % 2 + 1 :: 2] = 1.0
    return train


def _compute_dtype(out_seq: Tensor) -> torch.dtype:
    """float32 for half-precision outputs, else their own dtype (float32, float64)."""
    return torch.promote_types(out_seq.dtype, torch.float32)


def _target_trains(out_seq: Tensor, target: Tensor) -> Tensor:
    """The target trains ``[T, B, K]``: the desired train on each label neuron, zeros
    elsewhere."""
    steps, _, classes = out_seq.shape
    label = F.one_hot(target.long(), classes).to(out_seq.dtype)  # [B, K]
    train = desired_spike_train(steps, out_seq.dtype, out_seq.device)
    return train.view(steps, 1, 1) * label.unsqueeze(0)


def _psp(x: Tensor, tau_s: float) -> Tensor:
    """The synaptic filter along dim 0: ``s_t = s_{t-1} (1 - 1/tau_s) + x_t``, out
    ``s_t / tau_s`` (``s_{-1} = 0``)."""
    decay = 1.0 - 1.0 / tau_s
    state = torch.zeros_like(x[0])
    out = []
    for step in x:
        state = state * decay + step
        out.append(state / tau_s)
    return torch.stack(out)


def spike_kernel_loss(out_seq: Tensor, target: Tensor, tau_s: float = 3.0) -> Tensor:
    """The "kernel" loss: ``mean_b 1/2 Σ_{t,k} PSP(O - Y)[t, b, k]^2``.

    ``Y`` is the target trains (:func:`desired_spike_train` on each sample's label
    neuron, zeros elsewhere), ``PSP`` the synaptic filter
    ``s_t = s_{t-1} (1 - 1/tau_s) + x_t``, ``PSP_t = s_t / tau_s``. Gradients are
    autograd's (every step of every neuron gets one; the event-driven layers use them
    where a spike is). The authors sum over the batch (``B`` times this). ``target``
    must be integer labels ``[B]``.
    """
    _check_labels_only(out_seq, target, "spike_kernel_loss")
    tau_s = _kernel_arguments(tau_s)
    out_seq = out_seq.to(_compute_dtype(out_seq))  # (a float16 sum overflows)
    filtered = _psp(out_seq - _target_trains(out_seq, target), tau_s)
    return 0.5 * filtered.pow(2).sum() / out_seq.shape[1]


def _slot_times(trains: Tensor) -> Tensor:
    """``[T, B, K]`` spikes -> ``[B, K, T]`` their steps (1-based) in order, then
    ``T + 1`` for the slots without a spike."""
    steps = trains.shape[0]
    when = torch.arange(1, steps + 1, device=trains.device).view(steps, 1, 1)
    times = torch.where(trains != 0, when, steps + 1)
    return times.permute(1, 2, 0).sort(dim=-1).values


class _Timing(torch.autograd.Function):
    @staticmethod
    def forward(ctx, out_seq, target):  # type: ignore[override]
        steps, batch, classes = out_seq.shape
        dtype = _compute_dtype(out_seq)
        out_times = _slot_times(out_seq)
        target_times = _slot_times(_target_trains(out_seq, target))
        delta = (out_times - target_times).to(dtype).add(0.5).div(steps)  # [B, K, T]
        is_label = F.one_hot(target.long(), classes).to(torch.bool).unsqueeze(-1)
        # The label neuron: only spikes later than their targets (or missing) count;
        # the others: a spike (earlier than "never") counts -1/sqrt(K), none counts 0
        # (constants in delta's dtype: a bare Python float would be float32's).
        early = delta.new_tensor(-1.0 / math.sqrt(classes))
        delta = torch.where(is_label, delta.clamp(min=0.0),
                            torch.where(delta < 0, early, delta.new_zeros(())))  # fmt: skip
        value = 0.5 * delta.pow(2).sum() / batch
        fired = out_times <= steps
        # d value / d time of the j-th spike is delta / B; its presence gradient is minus that
        slot_grad = torch.where(fired, -delta / batch, delta.new_zeros(()))
        spike_grad = torch.zeros(batch, classes, steps, dtype=dtype, device=out_seq.device)
        spike_grad.scatter_add_(-1, (out_times - 1).clamp(max=steps - 1), slot_grad)
        ctx.save_for_backward(spike_grad.permute(2, 0, 1))
        ctx.out_dtype = out_seq.dtype
        return value

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        (spike_grad,) = ctx.saved_tensors
        return (grad * spike_grad).to(ctx.out_dtype), None


def spike_timing_loss(out_seq: Tensor, target: Tensor) -> Tensor:
    """The "timing" loss: output spike times against the target trains' (the authors').

    Per neuron, the output spike steps ``t_1 < t_2 < ...`` (1-based; ``T + 1`` fills
    the slots past the last spike) are paired slot by slot with the target train's
    (:func:`desired_spike_train` on the label neuron; none, so all ``T + 1``, on the
    others): ``δ_j = (t_j - t*_j + 1/2) / T``. For the label neuron ``δ_j`` is kept where
    it is positive (a spike late, or missing) and zeroed where negative; for the others
    a spike gets ``δ_j = -1/sqrt(K)`` and a missing one 0. The value is
    ``mean_b 1/2 Σ_{k,j} δ_j^2``; the gradient is designed, not the value's derivative:
    the ``j``-th spike of a neuron gets ``-δ_j / B`` (a presence gradient: ``δ_j / B``
    with respect to its time), slots without an output spike give none. Note that a
    label spike exactly on its target still has ``δ = 1/(2T)``, as the authors'. The
    output must be spikes (0 or 1); ``target`` integer labels ``[B]``. Predict with the
    ``count`` readout.
    """
    _check_labels_only(out_seq, target, "spike_timing_loss")
    if bool(((out_seq != 0) & (out_seq != 1)).any()):
        raise ConfigurationError(
            "spike_timing_loss: out_seq must be spikes (0 or 1 at each step); it pairs "
            "the k-th output spike with the k-th target spike"
        )
    return _Timing.apply(out_seq, target)


def _kernel_arguments(tau_s: object) -> float:
    tau_s = _real("spike_kernel_loss", "tau_s", tau_s)
    if tau_s < 1.0:
        raise ConfigurationError(
            f"spike_kernel_loss: tau_s must be >= 1 (the filter keeps 1 - 1/tau_s of its "
            f"state each step), got {tau_s:g}"
        )
    return tau_s


def _timing_arguments() -> None:
    """``timing`` takes no argument."""
