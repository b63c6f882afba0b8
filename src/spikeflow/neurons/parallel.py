"""Parallel spiking neurons (Fang et al., NeurIPS 2023; methods.md 4).

A neuron without reset is a linear filter over time, so all T steps are computed at
once: one GEMM of a ``[T, T]`` matrix with the input flattened to ``[T, N]``, then the
Heaviside step (ATan(alpha=2) surrogate) on ``H = W X + b`` (the threshold is absorbed
into the bias ``b = -θ``, initialised to -1).

* :class:`PSN`: dense learnable ``W`` (``[T, T]``) and ``b`` (``[T, 1]``); fixed T,
  multi-step only (step t sees future inputs).
* :class:`MaskedPSN`: ``W`` masked to a causal band of width ``k``, with a progressive
  mask ``M(λ) = λ M_k + (1 - λ) J`` during training; single-step when ``λ = 1``.
* :class:`SlidingPSN`: ``k`` weights shared over time (a causal convolution), any T,
  single-step and chunked streaming too.

The LIF without reset (the linear-filter view of methods.md 4.1) is
:class:`~spikeflow.neurons.parallel_lif.NoResetLIFNode`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikeflow._checks import check_flag, check_int
from spikeflow.base import MemoryModule, SequenceOnly, StepMode, check_time_major
from spikeflow.errors import ConfigurationError, ShapeError, StateError
from spikeflow.neurons.base import as_sequence, check_float_input, checked_surrogate
from spikeflow.surrogate import ATan, Surrogate

__all__ = [
    "PSN",
    "MaskedPSN",
    "SlidingPSN",
    "band_mask",
    "mask_lambda",
    "set_mask_lambda",
    "sliding_toeplitz",
]


def _check_order(k: object, T: int | None) -> int:
    k = check_int("k", k, 1)
    if T is not None and k > T:
        raise ConfigurationError(
            f"the order k ({k}) must not exceed the number of time steps T ({T})"
        )
    return k


def _check_lambda(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"lambda_ must be a number in [0, 1], got {value!r}")
    value = float(value)
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ConfigurationError(f"lambda_ must be in [0, 1], got {value}")
    return value


def _check_bias_init(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigurationError(f"bias_init must be a finite number, got {value!r}")
    return float(value)


def _check_sequence(owner: str, x: Tensor, T: int) -> None:
    """``x`` must be ``[T, B, ...]`` with exactly the ``T`` steps the weight was built for."""
    check_float_input(x, owner)
    check_time_major(x, owner)
    _check_steps(owner, T, x.shape[0], f" (shape {tuple(x.shape)})")


def _check_steps(owner: str, T: int, steps: int, shape: str = "") -> None:
    """A sequence of ``steps`` steps must have the ``T`` the weight was built for."""
    if steps != T:
        raise ShapeError(
            f"{owner} was built for T={T} time steps (its weight is [{T}, {T}]) but the "
            f"input has {steps} steps{shape}"
        )


def band_mask(T: int, k: int, device: torch.device | None = None) -> Tensor:
    """The causal band mask ``M_k`` (``[T, T]``): ``M[i][j] = 1`` iff ``j <= i <= j + k - 1``.

    Row ``i`` (step ``i``) sees inputs ``i - k + 1 .. i``.
    """
    T = check_int("T", T, 1)
    k = _check_order(k, T)
    idx = torch.arange(T, device=device)
    lag = idx.view(T, 1) - idx.view(1, T)  # i - j
    return ((lag >= 0) & (lag < k)).to(torch.get_default_dtype())


def sliding_toeplitz(weight: Tensor, T: int) -> Tensor:
    """The banded lower-triangular Toeplitz matrix of a sliding PSN (``[T, T]``).

    ``M[t][j] = weight[k - 1 - (t - j)]`` for ``0 <= t - j <= k - 1`` and 0 elsewhere, so
    ``(M X)[t] = sum_i weight[i] X[t - k + 1 + i]`` (zeros before step 0). Differentiable
    in ``weight``.
    """
    k = weight.shape[0]
    idx = torch.arange(T, device=weight.device)
    lag = idx.view(T, 1) - idx.view(1, T)  # t - j
    inside = (lag >= 0) & (lag < k)
    taps = weight[(k - 1 - lag).clamp(0, k - 1)]
    return torch.where(inside, taps, torch.zeros((), dtype=weight.dtype, device=weight.device))


def mask_lambda(epoch: int, epochs: int, schedule: str = "paper") -> float:
    """The progressive-mask ``λ`` of a masked PSN at ``epoch`` (0-based) of ``epochs``.

    * ``"paper"``: ``min(1, 8 epoch / (epochs - 1))``, the schedule of the PSN paper's
      code (the mask is fully on after the first eighth of training).
    * ``"linear"``: ``(epoch + 1) / epochs``, SpikingJelly's README example.

    Raises:
        ConfigurationError: ``epochs < 1``, ``epoch`` outside ``[0, epochs)`` or an
            unknown schedule.
    """
    epochs = check_int("epochs", epochs, 1)
    epoch = check_int("epoch", epoch, 0)
    if epoch >= epochs:
        raise ConfigurationError(f"epoch must be in [0, epochs={epochs}), got {epoch}")
    if schedule == "paper":
        return 1.0 if epochs == 1 else min(1.0, 8.0 * epoch / (epochs - 1))
    if schedule == "linear":
        return (epoch + 1) / epochs
    raise ConfigurationError(f"schedule must be 'paper' or 'linear', got {schedule!r}")


def set_mask_lambda(net: nn.Module, value: float) -> int:
    """Set ``lambda_`` of every :class:`MaskedPSN` in ``net``; return how many were set."""
    value = _check_lambda(value)
    count = 0
    for module in net.modules():
        if isinstance(module, MaskedPSN):
            module.lambda_ = value
            count += 1
    return count


def _bias_repr(bias_init: float) -> str:
    return "" if bias_init == -1.0 else f", bias_init={bias_init:g}"


class _SequenceOnly(SequenceOnly):
    """Multi-step only: the weight mixes all T steps of the sequence."""

    sequence_reason = "step t depends on the whole sequence"
    sequence_hint = "MaskedPSN (with lambda_=1) and SlidingPSN run step by step."


class _TxTPSN(nn.Module):
    """Shared by PSN and MaskedPSN: a ``[T, T]`` weight, a ``[T, 1]`` bias, a surrogate."""

    def _init_weights(self, T: int, surrogate: Surrogate | None, bias_init: float) -> None:
        self.T = check_int("T", T, 1)
        self.bias_init = _check_bias_init(bias_init)
        self.weight = nn.Parameter(torch.empty(self.T, self.T))
        self.bias = nn.Parameter(torch.empty(self.T, 1))
        self.surrogate_function = checked_surrogate(surrogate, ATan)
        self.reset_parameters()

    def check_steps(self, steps: int) -> None:
        """Raise the ShapeError a whole sequence of ``steps`` steps would raise: any
        number but ``T`` (before running one: ``spikeflow train`` asks)."""
        _check_steps(type(self).__name__, self.T, steps)

    def reset_parameters(self) -> None:
        """Kaiming-uniform(a=√5) weight (``nn.Linear(T, T)``'s default) and the bias
        ``bias_init`` (-1, the paper's: threshold 1)."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        nn.init.constant_(self.bias, self.bias_init)

    def _gemm(self, weight: Tensor, x_seq: Tensor) -> Tensor:
        # In the input's dtype, as SlidingPSN and the neurons compute (autocast aside).
        dtype = x_seq.dtype
        h = torch.addmm(self.bias.to(dtype), weight.to(dtype), x_seq.reshape(self.T, -1))
        return h.view(x_seq.shape)


class PSN(_SequenceOnly, _TxTPSN):
    """Parallel spiking neuron: ``H = W X + b``, ``S = Θ(H)`` over a whole sequence.

    ``X`` is the input flattened to ``[T, N]``; ``W`` (``[T, T]``, Kaiming-uniform with
    ``a=√5`` like ``nn.Linear(T, T)``) and ``b`` (``[T, 1]``, initialised to -1, i.e.
    threshold 1) are learnable. One GEMM, O(T² N) multiply-adds, no sequential
    dependence; step t uses future inputs, so it cannot run online (multi-step only).

    Args:
        T: the number of time steps (fixed).
        surrogate_function: default ``ATan(alpha=2)``.
        bias_init: the initial bias ``b`` (default -1, the paper's; keyword only).

    Raises:
        ShapeError: the input is not ``[T, B, ...]`` with the ``T`` given here.
        ConfigurationError: ``bias_init`` not a finite number.
    """

    #: Step t reads later inputs: ``streaming`` and online training refuse it.
    streamable = False

    def __init__(
        self, T: int, surrogate_function: Surrogate | None = None, *, bias_init: float = -1.0
    ) -> None:
        super().__init__()
        self._init_weights(T, surrogate_function, bias_init)

    def membrane(self, x_seq: Tensor) -> Tensor:
        """``H = W X + b`` for ``x_seq`` (``[T, B, ...]``)."""
        _check_sequence(type(self).__name__, x_seq, self.T)
        return self._gemm(self.weight, x_seq)

    def forward(self, x_seq: Tensor) -> Tensor:
        """Spikes ``[T, B, ...]`` for ``x_seq`` (``[T, B, ...]``)."""
        return self.surrogate_function(self.membrane(x_seq))

    def extra_repr(self) -> str:
        return f"T={self.T}" + _bias_repr(self.bias_init)


class MaskedPSN(MemoryModule, _TxTPSN):
    """Masked PSN of order ``k``: ``H = (W ⊙ M(λ)) X + b``, ``S = Θ(H)``.

    ``M(λ) = λ M_k + (1 - λ) J`` with the causal band mask ``M_k`` (:func:`band_mask`;
    step i sees inputs i-k+1..i) and the all-ones ``J``. Train with ``λ`` rising from 0
    to 1 (:func:`mask_lambda`, :func:`set_mask_lambda`); at ``λ = 1`` the neuron is
    causal with a window of ``k`` steps and can run in single-step mode, keeping a queue
    of the last ``k`` inputs and the step index (streaming state), with the same output
    as the multi-step call. Weight and bias are initialised as in :class:`PSN`.

    Args:
        k: the order (window length), ``1 <= k <= T``.
        T: the number of time steps (fixed).
        lambda_init: the initial ``λ`` in ``[0, 1]`` (default 0: no mask).
        surrogate_function: default ``ATan(alpha=2)``.
        step_mode: ``'m'`` (whole sequences, default) or ``'s'`` (needs ``λ = 1``).
        bias_init: the initial bias ``b`` (default -1, the paper's; keyword only). With a
            small ``k`` only ``k`` inputs, each weighted at most ``1/√T``, face the -1:
            few neurons fire at the start (docs/neuron_zoo_parallel.md measures -0.5).

    Raises:
        ConfigurationError: ``k > T``, ``λ`` outside ``[0, 1]``, single-step with ``λ < 1``,
            ``bias_init`` not a finite number.
        ShapeError: a multi-step input without exactly ``T`` steps.
        StateError: more than ``T`` single steps without a reset.
    """

    #: Online training (one step per multi-step call) cannot run it.
    temporal_only = "mixes the steps of a whole sequence (use sliding_psn to train online)"

    def __init__(
        self,
        k: int,
        T: int,
        lambda_init: float = 0.0,
        surrogate_function: Surrogate | None = None,
        step_mode: StepMode = "m",
        *,
        bias_init: float = -1.0,
    ) -> None:
        super().__init__(step_mode)
        self._init_weights(T, surrogate_function, bias_init)
        self.k = _check_order(k, self.T)
        self.register_buffer("mask_k", band_mask(self.T, self.k), persistent=False)
        self.register_buffer("mask_lambda", torch.tensor(_check_lambda(lambda_init)))
        self._t = 0

    @property
    def lambda_(self) -> float:
        """The progressive-mask ``λ`` in ``[0, 1]`` (1: the band mask fully applied)."""
        return float(self.mask_lambda)

    @lambda_.setter
    def lambda_(self, value: float) -> None:
        self.mask_lambda.fill_(_check_lambda(value))

    def masked_weight(self) -> Tensor:
        """``W ⊙ M(λ)``, ``M(λ) = λ M_k + (1 - λ) J`` (``M_k`` exactly at ``λ = 1``).

        ``λ`` stays a tensor (the buffer), so a compiled model reads its value at run
        time: the schedule's new ``λ`` each epoch compiles nothing."""
        lam = self.mask_lambda.to(self.weight.dtype)
        return self.weight * (self.mask_k.to(self.weight.dtype) * lam + (1.0 - lam))

    def reset(self) -> None:
        super().reset()
        self._t = 0

    def forward(self, x: Tensor) -> Tensor:
        """Spikes for ``x``: ``[T, B, ...]`` (multi-step) or one step ``[B, ...]``."""
        name = type(self).__name__
        if self.step_mode == "m":
            _check_sequence(name, x, self.T)
            return self.surrogate_function(self._gemm(self.masked_weight(), x))
        check_float_input(x, name)
        if self.lambda_ != 1.0:
            raise ConfigurationError(
                f"{name} runs step by step only with the mask fully applied (lambda_=1, "
                f"causal with a window of k={self.k}); got lambda_={self.lambda_}"
            )
        state = self._carried_state(x.shape)
        explicit = self._explicit_call()  # run(x, state): the step index is in the state
        if state is None:
            t, queue = 0, x.new_zeros((self.k, *x.shape))
        else:
            t, queue = (int(state["t"]) if explicit else self._t), state["queue"]
        if t >= self.T:
            raise StateError(
                f"{name} was built for T={self.T} steps and has already run {t} single "
                "steps: call spikeflow.functional.reset_net(net) between sequences"
            )
        queue = torch.cat([queue[1:], x.unsqueeze(0)])  # inputs t-k+1 .. t
        # Row t of the masked weight restricted to columns t-k+1 .. t (zeros before 0).
        row = F.pad(self.masked_weight()[t], (self.k - 1, 0))[t : t + self.k]
        h = torch.tensordot(row.to(x.dtype), queue, dims=1) + self.bias[t, 0]
        if explicit:  # handed back with the state, the module's own count left alone
            self._keep_state({"queue": queue, "t": torch.tensor(t + 1)})
        else:
            self._keep_state({"queue": queue})
            self._t = t + 1
        return self.surrogate_function(h)

    def extra_repr(self) -> str:
        return (
            f"k={self.k}, T={self.T}, lambda_={self.lambda_:g}, step_mode={self.step_mode}"
            + _bias_repr(self.bias_init)
        )


class SlidingPSN(MemoryModule):
    """Sliding PSN of order ``k``: weights shared over time, a causal filter of length k::

        H[t] = sum_{i=0}^{k-1} w_i X[t - k + 1 + i] + b      (X[j] = 0 for j < 0)
        S[t] = Θ(H[t])

    Works for any T. ``exp_init=True`` (default): ``w_{k-1} = 1``, ``w_i = w_{i+1} / 2``
    (older inputs decay geometrically); otherwise Kaiming-uniform with fan-in ``k``
    (``U(-1/√k, 1/√k)``, as ``nn.Linear(k, 1)``). ``b`` is a scalar initialised to -1.

    Two equal implementations (``backend``): ``"gemm"`` multiplies by the generated
    ``[T, T]`` banded Toeplitz matrix (:func:`sliding_toeplitz`); ``"conv"`` is a causal
    ``conv1d`` over time (left padding ``k - 1``). Single-step mode and chunked streaming
    keep the last ``k - 1`` inputs as carried state and give the output of one call over
    the whole sequence.

    Args:
        k: the order, >= 1.
        exp_init: the geometric initialisation (default) or Kaiming-uniform.
        surrogate_function: default ``ATan(alpha=2)``.
        backend: ``"gemm"`` (default) or ``"conv"``.
        step_mode: ``'m'`` (``[T, B, ...]``, default) or ``'s'`` (``[B, ...]``).
    """

    def __init__(
        self,
        k: int,
        exp_init: bool = True,
        surrogate_function: Surrogate | None = None,
        backend: str = "gemm",
        step_mode: StepMode = "m",
    ) -> None:
        super().__init__(step_mode)
        self.k = _check_order(k, None)
        if backend not in ("gemm", "conv"):
            raise ConfigurationError(f"backend must be 'gemm' or 'conv', got {backend!r}")
        self.backend = backend
        self.exp_init = check_flag(type(self).__name__, "exp_init", exp_init)
        self.weight = nn.Parameter(torch.empty(self.k))
        self.bias = nn.Parameter(torch.empty(()))
        self.surrogate_function = checked_surrogate(surrogate_function, ATan)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``exp_init``: ``w = [2^-(k-1), ..., 1/2, 1]``; else ``U(-1/√k, 1/√k)``; ``b = -1``."""
        with torch.no_grad():
            if self.exp_init:
                powers = torch.arange(self.k - 1, -1, -1, dtype=self.weight.dtype)
                self.weight.copy_(torch.pow(0.5, powers))
            else:
                bound = 1.0 / math.sqrt(self.k)
                self.weight.uniform_(-bound, bound)
            self.bias.fill_(-1.0)

    def membrane(self, x_seq: Tensor, history: Tensor | None = None) -> Tensor:
        """``H`` for ``x_seq`` (``[T, B, ...]``), after ``history`` (the ``k - 1`` previous
        inputs, ``[k-1, B, ...]``; ``None``: zeros)."""
        T = x_seq.shape[0]
        w = self.weight.to(x_seq.dtype)
        if history is not None and self.k > 1:
            x_ext = torch.cat([history, x_seq])
        else:
            x_ext, history = x_seq, None
        flat = x_ext.reshape(x_ext.shape[0], -1)
        bias = self.bias.to(x_seq.dtype)
        if self.backend == "conv" and flat.shape[1] > 0:  # (conv1d refuses groups=0)
            # Depthwise: every neuron is a channel of one [1, N, time] signal, all sharing
            # the kernel w (on CPU ~8x faster than N one-channel signals).
            n = flat.shape[1]
            signal = flat.t().unsqueeze(0)
            if history is None:
                signal = F.pad(signal, (self.k - 1, 0))
            kernel = w.view(1, 1, self.k).expand(n, 1, self.k)
            h = (F.conv1d(signal, kernel, groups=n)[0] + bias).t()
        else:
            if history is None:
                toeplitz = sliding_toeplitz(w, T)
            else:  # the last T rows of the extended sequence's [T+k-1, T+k-1] matrix
                toeplitz = sliding_toeplitz(w, T + self.k - 1)[self.k - 1 :]
            h = torch.addmm(bias.expand(T, 1), toeplitz, flat)
        return h.reshape(x_seq.shape)

    def forward(self, x: Tensor) -> Tensor:
        """Spikes for ``x``: ``[T, B, ...]`` (multi-step) or one step ``[B, ...]``."""
        name = type(self).__name__
        check_float_input(x, name)
        x_seq = as_sequence(x, name, self.step_mode)
        state = self._carried_state(x_seq.shape[1:])
        history = None if state is None else state["history"]
        if self._carrying and history is None:
            history = x_seq.new_zeros((self.k - 1, *x_seq.shape[1:]))
        h = self.membrane(x_seq, history)
        if self._carrying:  # streaming or run(x, state)
            assert history is not None
            self._keep_state({"history": torch.cat([history, x_seq])[x_seq.shape[0] :]})
        spikes = self.surrogate_function(h)
        return spikes if self.step_mode == "m" else spikes[0]

    def extra_repr(self) -> str:
        return (
            f"k={self.k}, exp_init={self.exp_init}, backend={self.backend!r}, "
            f"step_mode={self.step_mode}"
        )
