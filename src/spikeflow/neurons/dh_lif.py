"""The LIF neuron with temporal dendritic heterogeneity (DH-LIF) of Zheng et al.
(Nature Communications 2024).

Each neuron has ``K`` dendritic branches, each fed by its own synaptic current and
filtered with its own learnable timing factor; the soma, a LIF with its own learnable
factor, integrates their sum. The branches never read the soma (no reset, no
back-propagating spike), so one call runs them first over the whole sequence
(:class:`DendriticBranches`, a first-order filter with its own backward), and the soma
after them, on their sum: a declared neuron, whose reference loop and fused C/Triton
kernels (forward, BPTT backward, the gradient of its timing factor) come from the
declaration. The result is the authors' step exactly (docs/neuron_zoo_sequence.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from spikeflow.base import MemoryModule, StepMode
from spikeflow.errors import ShapeError
from spikeflow.kernels import check_backend
from spikeflow.layers._checks import check_int
from spikeflow.neurons.adlif import _check_range, _check_shape
from spikeflow.neurons.base import (
    BaseNode,
    as_sequence,
    check_float_input,
    check_step_shape,
    keep_detached_spike,
    keep_spike,
    membrane_as_charged,
)
from spikeflow.neurons.declaration import NeuronDeclaration, declare
from spikeflow.neurons.dh_lif_kernel import (
    branch_filter_backward,
    branch_filter_forward,
    c_runs,
)
from spikeflow.surrogate import Surrogate

__all__ = ["DHLIFNode", "DendriticBranches"]


def _sum_to(grad: Tensor, shape: torch.Size) -> Tensor:
    """``grad`` summed over the dims a tensor of ``shape`` was broadcast along."""
    lead = grad.dim() - len(shape)
    dims = [*range(lead)] + [
        lead + i for i, n in enumerate(shape) if n == 1 and grad.shape[lead + i] != 1
    ]
    out = grad.sum(dims, keepdim=True) if dims else grad
    return out.reshape(shape)


class _BranchFilter(torch.autograd.Function):
    """``d[t] = beta d[t-1] + (1 - beta) x[t]`` over ``[T, ..., K]``; returns every
    ``d[t]``. Backward: the reverse recurrence ``a[t] = g[t] + beta a[t+1]``, with
    ``dx[t] = (1 - beta) a[t]``, ``dbeta = Σ a[t] (d[t-1] - x[t])``, ``dd0 = beta a[0]``."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, beta: Tensor, d0: Tensor) -> Tensor:
        driven = (1 - beta) * x  # every step's input term at once
        d_seq = torch.empty(torch.broadcast_shapes(driven.shape, d0.shape), dtype=x.dtype,
                            device=x.device)  # fmt: skip
        d = d0
        for t in range(x.shape[0]):  # one fused op per step
            d = torch.addcmul(driven[t], beta, d, out=d_seq[t])
        ctx.save_for_backward(x, beta, d0, d_seq)
        return d_seq

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x, beta, d0, d_seq = ctx.saved_tensors
        acc_seq = torch.empty_like(d_seq)  # a[t]: the gradient reaching d[t]
        acc = torch.zeros_like(d_seq[0])
        for t in range(grad.shape[0] - 1, -1, -1):
            acc = torch.addcmul(grad[t], beta, acc, out=acc_seq[t])
        previous = torch.cat([d0.expand_as(d_seq[0]).unsqueeze(0), d_seq[:-1]])
        grad_beta = (acc_seq * (previous - x)).sum(0)
        grad_d0 = _sum_to(beta * acc_seq[0], d0.shape)
        return (1 - beta) * acc_seq, _sum_to(grad_beta, beta.shape), grad_d0


class _BranchCurrent(torch.autograd.Function):
    """:class:`_BranchFilter` and the sum over the branches in the C kernel: returns
    ``Σ_k d_k[t]`` (``[T, ..., N]``) and ``d[T-1]`` (``[..., N, K]``, the carried
    state), one pass forward and one backward, no ``[T, ..., N, K]`` sum or broadcast
    around them (CPU float32/float64; the same arithmetic as the torch loop)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, beta: Tensor, d0: Tensor) -> tuple[Tensor, Tensor]:
        ctx.set_materialize_grads(False)
        beta_e = beta.expand(x.shape[1:]).contiguous()
        d0_e = d0.expand(x.shape[1:]).contiguous()
        d_seq, total = branch_filter_forward(x, beta_e, d0_e)
        ctx.save_for_backward(x, beta, d0, d_seq, beta_e, d0_e)
        return total, d_seq[-1].clone()

    @staticmethod
    @once_differentiable
    def backward(
        ctx: Any, grad_total: Tensor | None, grad_last: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        x, beta, d0, d_seq, beta_e, d0_e = ctx.saved_tensors
        if grad_total is None:
            grad_total = x.new_zeros(x.shape[:-1])
        dx, dbeta, dd0 = branch_filter_backward(grad_total, grad_last, x, beta_e, d0_e, d_seq)
        return dx, _sum_to(dbeta, beta.shape), _sum_to(dd0, d0.shape)


class DendriticBranches(MemoryModule):
    """The dendritic branches of DH-LIF: ``K`` leaky filters per neuron, summed::

        d_k[t] = beta_k d_k[t-1] + (1 - beta_k) X_k[t],   I[t] = Σ_k d_k[t]

    ``beta = sigmoid(tau_n)`` (learnable, one per branch of each neuron with ``shape``,
    else one per branch of the layer). The input's last dim is the branches:
    ``[T, B, ..., N, K]`` in multi-step mode (``[B, ..., N, K]`` in single-step); the
    output drops it (``[T, B, ..., N]``). The backward is the filter's reverse
    recurrence (no autograd graph of T steps).

    Args:
        branches: ``K``, a positive integer.
        shape: the neurons' shape (``N``), or ``None`` (one factor per branch).
        tau_n_range: the initial ``tau_n`` are drawn uniformly in this range (the
            authors' default ``(0, 4)``: ``beta`` in [0.5, 0.98]).
        step_mode: ``'m'`` or ``'s'``.
        backend: ``'auto'`` (default): the fused C kernel (one pass forward, one
            backward) on CPU float32/float64 where a C compiler is found, else the torch
            loop; ``'cpu'``: the C kernel or an error; ``'torch'`` and ``'triton'``: the
            torch loop. The same results (the kernel's rounding is the loop's but for
            the order of the sum over time in the gradient of ``tau_n``).

    State: the branch currents ``d`` (``node.state["d"]`` while streaming), from 0.

    Raises:
        ConfigurationError: a bad ``branches``, ``shape`` or range.
        ShapeError: an input whose last dim is not ``K``, or whose neurons do not
            broadcast with ``shape``.
    """

    def __init__(
        self,
        branches: int,
        shape: int | Sequence[int] | None = None,
        tau_n_range: tuple[float, float] = (0.0, 4.0),
        step_mode: StepMode = "m",
        backend: str = "auto",
    ) -> None:
        super().__init__(step_mode)
        self.backend = check_backend(backend)
        self.branches = check_int("branches", branches, 1)
        self.shape = _check_shape(shape)
        self.tau_n_range = _check_range("tau_n_range", tau_n_range, positive=False)
        size = (*(self.shape or ()), self.branches)
        self.tau_n = nn.Parameter(torch.empty(size).uniform_(*self.tau_n_range))

    def forward(self, x: Tensor) -> Tensor:
        """The summed branch currents of ``x`` (see the class docstring)."""
        owner = type(self).__name__
        check_float_input(x, owner, "a floating-point input (the branch currents)")
        x_seq = as_sequence(x, owner, self.step_mode)
        if x_seq.dim() < 3 or x_seq.shape[-1] != self.branches:
            raise ShapeError(
                f"{owner}(branches={self.branches}) takes [T, B, ..., N, {self.branches}] "
                f"(one current per branch, last), got shape {tuple(x.shape)}"
            )
        step_shape = x_seq.shape[1:]
        check_step_shape(owner, "tau_n", self.tau_n, step_shape)
        state = self._carried_state(step_shape)
        d0 = x_seq.new_zeros(step_shape) if state is None else state["d"]
        beta = torch.sigmoid(self.tau_n)
        if beta.dtype == x_seq.dtype == d0.dtype and c_runs(self.backend, x_seq):
            total, d_last = _BranchCurrent.apply(x_seq, beta, d0)
        else:
            d_seq = _BranchFilter.apply(x_seq, beta, d0)
            total, d_last = d_seq.sum(-1), d_seq[-1]
        self._keep_state({"d": d_last})
        return total if self.step_mode == "m" else total[0]

    def extra_repr(self) -> str:
        shape = "per layer" if self.shape is None else tuple(self.shape)
        return (
            f"branches={self.branches}, shape={shape}, step_mode={self.step_mode!r}, "
            f"backend={self.backend!r}"
        )


def _dh_soma_charge(x: Tensor, v: Tensor, spike: Tensor, *, alpha: Tensor, v_th: Tensor) -> Tensor:
    """The authors' soma: ``H = alpha V + (1 - alpha) I - θ S'``, ``S'`` the previous
    step's spike (their reset subtracts θ at the next charge, undecayed)."""
    return v * alpha + (1 - alpha) * x - v_th * spike


class DHLIFNode(BaseNode):
    """LIF with temporal dendritic heterogeneity (Zheng, Zheng, Ding, Tang, Wu, Liu &
    Li, Nature Communications 2024, "Temporal dendritic heterogeneity incorporated with
    spiking neural networks for learning multi-timescale dynamics")::

        d_k[t] = beta_k d_k[t-1] + (1 - beta_k) X_k[t]     (K branches, no reset)
        H[t] = alpha H[t-1] + (1 - alpha) Σ_k d_k[t] - θ S[t-1]
        S[t] = Θ(H[t] - θ)

    ``beta = sigmoid(dendrites.tau_n)`` and ``alpha = sigmoid(tau_m)`` are learnable
    (per neuron with ``shape``, else per layer); the soft reset subtracts θ at the next
    step, outside the decay (the authors' ``mem_update_pra``), so the recorded membrane
    is theirs. The input is one current per branch, last: ``[T, B, ..., N, K]``
    (``[B, ..., N, K]`` in single-step mode), produced by
    :class:`~spikeflow.layers.DendriticLinear` (or
    :class:`~spikeflow.layers.DendriticRecurrent`); the output is ``[T, B, ..., N]``.

    The authors' networks use a multi-Gaussian surrogate firing on ``H > θ``
    (``surrogate_function=MultiGaussian(), strict_firing=True``); here the default is
    spikeflow's (Sigmoid, ``H >= θ``). Their layers start the membrane and the previous
    spike at random values (``set_neuron_state``); here at 0.

    Args:
        branches: ``K``, the dendritic branches per neuron.
        shape: the neurons' shape (``N``), for per-neuron factors; ``None``: per layer.
        tau_m_range, tau_n_range: the initial ``tau_m`` and ``tau_n`` are drawn
            uniformly in these ranges (the authors' defaults ``(0, 4)``; their SHD
            scripts draw ``tau_n`` in ``(2, 6)``).
        v_threshold, surrogate_function, detach_reset, strict_firing,
            learnable_threshold, step_mode, backend, store_v_seq: as
            :class:`~spikeflow.neurons.base.BaseNode` (the reset is soft: no ``v_reset``);
            ``backend`` also picks the branches' filter (:class:`DendriticBranches`: the
            C kernel with ``'auto'``/``'cpu'`` on CPU, else the torch loop).

    State: the soma ``v`` and the previous spike ``spike`` (``node.state``), and the
    branch currents in ``node.dendrites.state["d"]``, all from 0.

    Raises:
        ConfigurationError: a bad ``branches``, ``shape`` or range, or a bad argument
            of :class:`~spikeflow.neurons.base.BaseNode`.
        ShapeError: an input whose last dim is not ``K``.
    """

    def __init__(
        self,
        branches: int = 4,
        shape: int | Sequence[int] | None = None,
        tau_m_range: tuple[float, float] = (0.0, 4.0),
        tau_n_range: tuple[float, float] = (0.0, 4.0),
        v_threshold: float | Tensor = 1.0,
        surrogate_function: Surrogate | None = None,
        detach_reset: bool = False,
        strict_firing: bool = False,
        learnable_threshold: bool = False,
        step_mode: StepMode = "m",
        backend: str = "auto",
        store_v_seq: bool = False,
    ) -> None:
        super().__init__(
            v_threshold=v_threshold, v_reset=None, surrogate_function=surrogate_function,
            detach_reset=detach_reset, strict_firing=strict_firing,
            learnable_threshold=learnable_threshold, step_mode=step_mode, backend=backend,
            store_v_seq=store_v_seq,
        )  # fmt: skip
        self.shape = _check_shape(shape)
        self.tau_m_range = _check_range("tau_m_range", tau_m_range, positive=False)
        self.dendrites = DendriticBranches(branches, shape, tau_n_range, step_mode, backend)
        size = self.shape if self.shape is not None else ()
        self.tau_m = nn.Parameter(torch.empty(size).uniform_(*self.tau_m_range))

    @property
    def branches(self) -> int:
        """``K``, the dendritic branches per neuron."""
        return self.dendrites.branches

    def declaration(self) -> NeuronDeclaration:
        keep = keep_detached_spike if self.detach_reset else keep_spike
        return declare(_dh_soma_charge, keep, type(self).__name__,
                       reset_membrane=membrane_as_charged)  # fmt: skip

    def neuron_params(self) -> dict[str, Tensor | float]:
        return {"alpha": torch.sigmoid(self.tau_m), "v_th": self.v_threshold}

    def initial_values(self) -> dict[str, float]:
        return {**super().initial_values(), "spike": 0.0}

    def reset(self) -> None:
        """Forget the carried state: the soma's and the branch currents'."""
        super().reset()
        self.dendrites.reset()

    def detach(self) -> None:
        """Cut the autograd graph of the carried state, the branch currents' included."""
        super().detach()
        self.dendrites.detach()

    def forward(self, x: Tensor, *state: object) -> Tensor:
        """Spikes ``[T, B, ..., N]`` for the branch currents ``[T, B, ..., N, K]``
        (single-step: ``[B, ..., N]`` for ``[B, ..., N, K]``)."""
        if state:
            return super().forward(x, *state)  # refused there, with the reason
        if isinstance(x, Tensor) and x.dim() and x.shape[-1] != self.branches:
            raise ShapeError(
                f"{type(self).__name__}(branches={self.branches}) takes one current per "
                f"dendritic branch, last: [T, B, ..., N, {self.branches}]; got shape "
                f"{tuple(x.shape)} (DendriticLinear(in, N, branches={self.branches}) "
                "gives it)"
            )
        return super().forward(self.dendrites(x))

    def extra_repr(self) -> str:
        shape = "per layer" if self.shape is None else tuple(self.shape)
        return f"branches={self.branches}, shape={shape}, " + super().extra_repr()
