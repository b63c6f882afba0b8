"""The LIF neuron without reset, computed in parallel over time (methods.md 4.1).

Without reset, the LIF recurrence ``H[t] = a H[t-1] + c X[t]`` (``a = 1 - 1/tau``;
``c = 1/tau``, or 1 with ``decay_input=False``) is linear, so all T steps can be
computed at once:

* ``"gemm"``: ``H = Λ X`` with the lower-triangular Toeplitz ``Λ[t][i] = c a^(t-i)``
  (:func:`lif_no_reset_matrix`), one GEMM of ``[T, T]`` by ``[T, N]``: O(T² N) work,
  no sequential dependence.
* ``"scan"``: an associative scan by recursive doubling (:func:`linear_scan`):
  ``ceil(log2 T)`` elementwise passes over ``[T, N]``, O(T N log T) work.

Both equal the sequential loop (tested).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from spikeflow._checks import check_flag
from spikeflow.base import MemoryModule, StepMode
from spikeflow.errors import ConfigurationError, DTypeError
from spikeflow.neurons.base import as_sequence, checked_surrogate
from spikeflow.neurons.lif import _check_tau
from spikeflow.surrogate import Surrogate

__all__ = ["NoResetLIFNode", "lif_no_reset_matrix", "linear_scan"]


def lif_no_reset_matrix(
    T: int,
    decay: float,
    scale: float,
    dtype: torch.dtype | None = None,
    device: torch.device | None = None,
) -> Tensor:
    """``Λ`` (``[T, T]``) with ``Λ[t][i] = scale * decay^(t - i)`` for ``i <= t``, else 0.

    ``(Λ X)[t] = sum_{i<=t} scale decay^(t-i) X[i]``: the recurrence
    ``H[t] = decay H[t-1] + scale X[t]`` from ``H[-1] = 0``.
    """
    idx = torch.arange(T, device=device)
    lag = (idx.view(T, 1) - idx.view(1, T)).to(torch.float64)
    powers = torch.where(lag >= 0, scale * torch.pow(decay, lag.clamp_min(0)), 0.0)
    return powers.to(dtype or torch.get_default_dtype())


def linear_scan(b: Tensor, decay: float, h0: Tensor | None = None) -> Tensor:
    """``H[t] = decay H[t-1] + b[t]`` for all t at once (``b``: ``[T, ...]``, ``H[-1] = h0``).

    Recursive doubling (Hillis-Steele): after the pass with offset ``d``, ``H[t]`` holds
    the sum over the last ``2d`` terms; ``ceil(log2 T)`` passes, each elementwise over
    ``[T, ...]`` and differentiable.
    """
    h = b
    if h0 is not None:
        h = torch.cat([(decay * h0 + b[0]).unsqueeze(0), b[1:]])
    T = h.shape[0]
    d = 1
    while d < T:
        nxt = h.clone()
        nxt[d:].add_(h[:-d], alpha=decay**d)
        h = nxt
        d *= 2
    return h


class NoResetLIFNode(MemoryModule):
    """LIF neuron **without reset**, computed in parallel over time (methods.md 4.1)::

        H[t] = (1 - 1/tau) H[t-1] + X[t] / tau        (decay_input=True; X[t] if False)
        S[t] = Θ(H[t] - v_threshold)

    The membrane is never reset (a spike does not change ``H``), which is what makes the
    recurrence linear and parallel: ``method="gemm"`` multiplies by the ``[T, T]``
    Toeplitz ``Λ``, ``method="scan"`` runs a log-depth associative scan; both equal the
    sequential loop. ``H[-1] = 0``. Single-step mode and chunked streaming carry ``H``
    (``node.state["h"]``) and give the output of one call over the whole sequence.

    Args:
        tau: membrane time constant, > 1 (default 2).
        decay_input: whether the input is divided by ``tau`` (default True).
        v_threshold: the firing threshold θ (default 1).
        surrogate_function: default ``Sigmoid(alpha=4)`` (the field's default).
        method: ``"gemm"`` (default) or ``"scan"``.
        step_mode: ``'m'`` (``[T, B, ...]``, default) or ``'s'`` (``[B, ...]``).
    """

    def __init__(
        self,
        tau: float = 2.0,
        decay_input: bool = True,
        v_threshold: float = 1.0,
        surrogate_function: Surrogate | None = None,
        method: str = "gemm",
        step_mode: StepMode = "m",
    ) -> None:
        super().__init__(step_mode)
        self.tau = _check_tau("tau", tau)
        self.decay_input = check_flag(type(self).__name__, "decay_input", decay_input)
        if isinstance(v_threshold, bool) or not isinstance(v_threshold, (int, float)):
            raise ConfigurationError(f"v_threshold must be a float, got {v_threshold!r}")
        if not math.isfinite(v_threshold):
            raise ConfigurationError(f"v_threshold must be finite, got {v_threshold}")
        self.v_threshold = float(v_threshold)
        if method not in ("gemm", "scan"):
            raise ConfigurationError(f"method must be 'gemm' or 'scan', got {method!r}")
        self.method = method
        self.surrogate_function = checked_surrogate(surrogate_function)

    @property
    def decay(self) -> float:
        """``a = 1 - 1/tau``, the fraction of ``H`` kept each step."""
        return 1.0 - 1.0 / self.tau

    @property
    def input_scale(self) -> float:
        """``1/tau`` with ``decay_input``, else 1."""
        return 1.0 / self.tau if self.decay_input else 1.0

    def membrane(self, x_seq: Tensor, h0: Tensor | None = None) -> Tensor:
        """``H`` (``[T, B, ...]``) for ``x_seq`` (``[T, B, ...]``) from ``H[-1] = h0``
        (``None``: 0)."""
        a, c = self.decay, self.input_scale
        if self.method == "scan":
            return linear_scan(x_seq * c, a, h0)
        T = x_seq.shape[0]
        lam = lif_no_reset_matrix(T, a, c, x_seq.dtype, x_seq.device)
        h = (lam @ x_seq.reshape(T, -1)).view(x_seq.shape)
        if h0 is not None:  # + a^(t+1) h0
            carry = torch.pow(a, torch.arange(1, T + 1, dtype=torch.float64))
            carry = carry.to(x_seq.dtype).view(T, *([1] * (x_seq.dim() - 1)))
            h = h + carry * h0
        return h

    def forward(self, x: Tensor) -> Tensor:
        """Spikes for ``x``: ``[T, B, ...]`` (multi-step) or one step ``[B, ...]``."""
        name = type(self).__name__
        if not isinstance(x, Tensor) or not x.is_floating_point():
            what = x.dtype if isinstance(x, Tensor) else type(x).__name__
            raise DTypeError(f"{name} expects a floating-point tensor, got {what}")
        x_seq = as_sequence(x, name, self.step_mode)
        state = self._carried_state(x_seq.shape[1:])
        h = self.membrane(x_seq, None if state is None else state["h"])
        self._keep_state({"h": h[-1]})
        spikes = self.surrogate_function(h - self.v_threshold)
        return spikes if self.step_mode == "m" else spikes[0]

    def extra_repr(self) -> str:
        return (
            f"tau={self.tau:g}, decay_input={self.decay_input}, "
            f"v_threshold={self.v_threshold:g}, method={self.method!r}, "
            f"step_mode={self.step_mode}"
        )
