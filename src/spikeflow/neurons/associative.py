"""snnTorch 1.0's ``AssociativeLeaky`` (``snntorch/_neurons/associative.py``, read from its
code): an associative-memory state-space neuron whose state is a matrix.

At each step the input ``x[t]`` (``[B, in_dim]``) is projected to a value ``v[t]``
(``d_value``), a key ``k[t]`` and a decay ``α[t] = σ(W_α x[t] + b_α)`` (both ``d_key``),
and the ``d_value × d_key`` state is written by an outer product and decays per key
column::

    S[t] = S[t-1] · diag(α[t]) + v[t] k[t]ᵀ               (S[-1] = 0)
    Z[t] = Θ(S[t] - θ) · g                                each entry a spiking neuron
    y[t] = Z[t] Q[t],  Q[t] = W_q x[t] + b_q as d_key × d_value    (use_q_projection)
    y[t] = Z[t] flattened                                 (otherwise)

snnTorch computes the whole sequence at once with cumulative products
``P[t] = Π_{s≤t} α[s]``: ``S[t] = P[t] Σ_{s≤t} v[s] k[s]ᵀ / (P[s] + 1e-8)`` (``α``
clamped below at ``1e-8`` first). The ``1e-8`` makes that differ from the recurrence
once ``P`` comes near it (after a few tens of steps of ``α ≈ 1/2``, the sum's early
terms are scaled by up to ``P/(P + 1e-8)``, and then by nothing as ``P`` underflows).
``decay="snntorch"`` (the default) computes snnTorch's formula, so that a snnTorch layer's
weights give its outputs (in float32 for a float16 or bfloat16 input, where snnTorch's
gives NaN membranes once ``P`` underflows); ``decay="exact"`` steps the recurrence above
(a loop over time on the ``[B, d_value, d_key]`` state), which long sequences need.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.surrogate import ATan, Surrogate

__all__ = ["AssociativeLeaky"]

#: snnTorch's floor of ``α`` and offset of ``1/P`` in its cumulative-product form.
_EPS = 1e-8


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigurationError(f"AssociativeLeaky: {name} must be a positive int, got {value!r}")
    return value


class AssociativeLeaky(nn.Module):
    """The associative-memory neuron of snnTorch 1.0 (see the module docstring).

    ``snn.AssociativeLeaky(in_dim, d_value, d_key, num_spiking_neurons,
    use_q_projection)`` is ``neurons.AssociativeLeaky(in_dim, d_value, d_key,
    num_spiking_neurons, use_q_projection)``; ``load_state_dict`` of snnTorch's state
    dict (``to_v``, ``to_k``, ``to_alpha``, ``to_q``, ``threshold``,
    ``graded_spikes_factor``) gives its outputs and gradients.

    Args:
        in_dim: the input features per step.
        d_value: the rows of the state (``v``'s size).
        d_key: the columns (``k``'s and ``α``'s size).
        num_spiking_neurons: ``d_value * d_key`` (or ``None`` for it), as snnTorch
            checks.
        use_q_projection: read the spikes out through ``Q[t]`` (output
            ``d_value * d_value`` per step), or return them flattened
            (``d_value * d_key``).
        threshold: θ of every entry (default 1, snnTorch's).
        surrogate_function: the spike function (default ``ATan(alpha=2)``, snnTorch's
            ``atan()``); it fires on ``S > θ`` (snnTorch's) unless
            ``strict_firing=False``.
        strict_firing: fire on ``S > θ`` (default) or ``S >= θ``.
        graded_spikes_factor: the spikes' amplitude (default 1).
        decay: ``"snntorch"`` (snnTorch's cumulative-product form, default) or
            ``"exact"`` (the recurrence).

    Input ``[T, B, in_dim]``; output ``[T, B, d_value * d_value]`` (with the
    projection) or ``[T, B, d_value * d_key]``. Each call starts from ``S = 0``.

    Raises:
        ConfigurationError: a size that is not a positive int, ``num_spiking_neurons``
            other than ``d_value * d_key``, an unknown ``decay``.
    """

    def __init__(
        self,
        in_dim: int,
        d_value: int,
        d_key: int,
        num_spiking_neurons: int | None = None,
        use_q_projection: bool = True,
        *,
        threshold: float = 1.0,
        surrogate_function: Surrogate | None = None,
        strict_firing: bool = True,
        graded_spikes_factor: float = 1.0,
        decay: str = "snntorch",
    ) -> None:
        super().__init__()
        in_dim = _positive_int("in_dim", in_dim)
        self.d_value = _positive_int("d_value", d_value)
        self.d_key = _positive_int("d_key", d_key)
        neurons = self.d_value * self.d_key
        if num_spiking_neurons is not None and num_spiking_neurons != neurons:
            raise ConfigurationError(
                f"AssociativeLeaky: num_spiking_neurons={num_spiking_neurons} must equal "
                f"d_value * d_key = {neurons} (one neuron per entry of the state)"
            )
        if decay not in ("snntorch", "exact"):
            raise ConfigurationError(
                f"AssociativeLeaky: decay must be 'snntorch' or 'exact', got {decay!r}"
            )
        if surrogate_function is not None and not isinstance(surrogate_function, Surrogate):
            raise ConfigurationError(
                "AssociativeLeaky: surrogate_function must be a spikeflow.surrogate.Surrogate, "
                f"got {type(surrogate_function).__name__}"
            )
        self.num_spiking_neurons = neurons
        self.use_q_projection = bool(use_q_projection)
        self.decay = decay
        self.strict_firing = bool(strict_firing)
        self.surrogate_function = ATan() if surrogate_function is None else surrogate_function
        self.to_v = nn.Linear(in_dim, self.d_value)
        self.to_k = nn.Linear(in_dim, self.d_key)
        self.to_alpha = nn.Linear(in_dim, self.d_key)
        self.to_q = nn.Linear(in_dim, neurons) if self.use_q_projection else None
        for name, value in (
            ("threshold", threshold),
            ("graded_spikes_factor", graded_spikes_factor),
        ):
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
            ):
                raise ConfigurationError(
                    f"AssociativeLeaky: {name} must be a finite float, got {value!r}"
                )
            self.register_buffer(name, torch.tensor(float(value)))

    @classmethod
    def from_num_spiking_neurons(
        cls, in_dim: int, num_spiking_neurons: int, use_q_projection: bool = True, **kwargs: Any
    ) -> AssociativeLeaky:
        """A square state, ``d_value = d_key = sqrt(num_spiking_neurons)`` (snnTorch's
        constructor of the same name; a number that is not a square is refused)."""
        count = _positive_int("num_spiking_neurons", num_spiking_neurons)
        side = math.isqrt(count)
        if side * side != count:
            raise ConfigurationError(
                f"AssociativeLeaky: num_spiking_neurons={count} must be a perfect square "
                "(d_value = d_key = its square root)"
            )
        return cls(in_dim, side, side, count, use_q_projection, **kwargs)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # snnTorch's SpikingNeuron saves a reset mechanism this neuron has no use for.
        state_dict.pop(prefix + "reset_mechanism_val", None)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def membrane(self, x: Tensor) -> Tensor:
        """The state ``S[t]`` of every step, flattened: ``[T, B, d_value * d_key]``."""
        if x.dim() != 3 or x.shape[-1] != self.to_v.in_features:
            raise ShapeError(
                f"AssociativeLeaky takes [T, B, in_dim={self.to_v.in_features}], got "
                f"{tuple(x.shape)}"
            )
        steps, batch = x.shape[:2]
        v, k = self.to_v(x), self.to_k(x)
        alpha = torch.sigmoid(self.to_alpha(x))  # [T, B, n], decay of each key column
        writes = v.unsqueeze(-1) * k.unsqueeze(-2)  # [T, B, d, n]
        if self.decay == "snntorch":
            # In float32 at least: 1/P spans more than half precision holds (float16's
            # 1e-8 is 0, so P underflowing to 0 gave 0 · inf = NaN membranes within a
            # dozen steps, silent in the spikes: NaN > θ is False).
            work = torch.promote_types(writes.dtype, torch.float32)
            writes_w, alpha_w = writes.to(work), alpha.to(work)
            prefix = torch.cumsum(alpha_w.clamp_min(_EPS).log(), dim=0).exp().unsqueeze(2)
            states = (torch.cumsum(writes_w / (prefix + _EPS), dim=0) * prefix).to(writes.dtype)
        else:
            state = writes.new_zeros(writes.shape[1:])
            steps_out = []
            for t in range(steps):
                state = state * alpha[t].unsqueeze(1) + writes[t]
                steps_out.append(state)
            states = torch.stack(steps_out)
        return states.reshape(steps, batch, self.num_spiking_neurons)

    def forward(self, x: Tensor) -> Tensor:
        """The readout of the spiking state for ``x`` (``[T, B, in_dim]``)."""
        spikes = self.surrogate_function(self.membrane(x) - self.threshold, self.strict_firing)
        spikes = spikes * self.graded_spikes_factor
        if self.to_q is None:
            return spikes
        steps, batch = x.shape[:2]
        d, n = self.d_value, self.d_key
        q = self.to_q(x).reshape(steps * batch, n, d)
        return torch.bmm(spikes.reshape(steps * batch, d, n), q).reshape(steps, batch, d * d)

    def extra_repr(self) -> str:
        return (
            f"in_dim={self.to_v.in_features}, d_value={self.d_value}, d_key={self.d_key}, "
            f"use_q_projection={self.use_q_projection}, decay={self.decay!r}"
        )
