"""Encoders built on a spiking neuron: a constant current into a LIF neuron (Norse's
``constant_current_lif_encode`` and ``spike_latency_lif_encode``), and the first-spike
filter (Norse's ``spike_latency_encode``)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from spikeflow._checks import check_flag, check_int
from spikeflow.base import MemoryModule, StepMode, StepModule
from spikeflow.encoding._common import check_float_input, check_no_nan
from spikeflow.errors import ShapeError
from spikeflow.neurons.lif import LIFNode
from spikeflow.surrogate import Surrogate

__all__ = ["ConstantCurrentLIFEncoder", "FirstSpikeFilter"]


class FirstSpikeFilter(MemoryModule):
    """Keep only the first spike of every element; later spikes become 0.

    For spikes ``s [T, *]`` (a spike is any nonzero value)::

        out[t] = s[t]   if s[t'] == 0 for every t' < t,   else 0

    so every element spikes at most once, at its first spike time: a rate code (a
    constant-current neuron, a Poisson train) becomes a time-to-first-spike code (Van
    Rullen & Thorpe 2001). Gradients flow to the kept spikes (the mask of earlier
    spikes is not differentiated).

    Shapes: ``'m'``: ``s [T, *]`` -> ``[T, *]``; ``'s'`` (needs streaming): one step
    ``[*]``, with the "has spiked" mask carried from call to call (state ``fired``, a
    bool tensor of one step's shape); a streaming multi-step call continues it.

    Args:
        step_mode: ``'m'`` (default) or ``'s'``.

    Raises:
        DTypeError: ``s`` is not a floating-point tensor.
        ShapeError: a multi-step input without a time dimension (0-dim).
    """

    def forward(self, s: Tensor) -> Tensor:
        s = check_float_input(s, "FirstSpikeFilter")
        seq = s.unsqueeze(0) if self.step_mode == "s" else s
        if seq.dim() < 1:
            raise ShapeError(
                "FirstSpikeFilter in multi-step mode expects spikes [T, ...] with a time "
                "dimension; got a 0-dim tensor (use step_mode='s' for one step)"
            )
        state = self._carried_state(seq.shape[1:])
        spiking = (seq.detach() != 0).to(torch.int32)
        earlier = spiking.cumsum(0) - spiking > 0  # a spike at an earlier step of this call
        fired = None if state is None else state["fired"]
        if fired is not None:
            earlier = earlier | fired
        out = torch.where(earlier, torch.zeros((), dtype=seq.dtype, device=seq.device), seq)
        if seq.shape[0] > 0:
            last = earlier[-1] | (spiking[-1] > 0)
        else:
            last = torch.zeros(seq.shape[1:], dtype=torch.bool, device=seq.device)
            last = last if fired is None else fired
        self._keep_state({"fired": last})
        return out if self.step_mode == "m" else out[0]

    def extra_repr(self) -> str:
        return f"step_mode={self.step_mode!r}"


class ConstantCurrentLIFEncoder(StepModule, nn.Module):
    """A constant input current into a leaky integrate-and-fire neuron, for ``T`` steps.

    Every element ``x`` of the input is a current held constant over the ``T`` steps of
    a :class:`~spikeflow.neurons.LIFNode` (``decay_input=True``, hard reset to
    ``v_reset`` by default), whose spikes are the code::

        H[t] = V[t-1] + (x - (V[t-1] - V_r)) / tau,    V[-1] = V_r
        S[t] = Θ(H[t] - v_threshold),    V[t] = H[t] (1 - S[t]) + V_r S[t]

    Without reset the membrane approaches ``V_r + x``, so an element fires (periodically)
    only if ``x > v_threshold - V_r`` (``>=`` in the limit with ``strict_firing=False``),
    faster for larger currents: a deterministic rate code of any real input. With
    ``first_spike_only=True`` a :class:`FirstSpikeFilter` keeps each element's first
    spike only: a latency code (large current, early spike; too small a current, no
    spike).

    The output is differentiable with respect to ``x`` through the neuron's surrogate
    gradient, as any spiking layer (it runs the neuron's fused kernel where available).

    **Norse**: ``constant_current_lif_encode(x, T, p, dt)`` (and
    ``spike_latency_lif_encode``) is ``ConstantCurrentLIFEncoder(T, tau=1 / (dt ·
    p.tau_mem_inv), v_threshold=p.v_th, strict_firing=True, first_spike_only=...)`` for
    Norse's default ``v_leak = v_reset = 0``. Here one potential ``V_r`` is the initial
    value, the leak target and the reset; Norse starts from 0, leaks to ``v_leak`` and
    resets to ``v_reset``, so the two differ unless ``v_leak = v_reset = 0``.

    Shapes: ``'m'``: ``x [*]`` -> ``[T, *]``; ``'s'`` (needs streaming): one step ``[*]``
    per call, the membrane (and the first-spike mask) carried from call to call, so the
    ``k``-th call returns step ``k`` (no period: the neuron keeps integrating).

    Args:
        T: number of time steps of a multi-step call (``>= 1``).
        tau: membrane time constant in steps, ``> 1`` (default 2.0; Norse's
            ``LIFParameters`` with ``dt`` is ``tau = 1 / (dt · tau_mem_inv)``, 10 by
            default).
        v_threshold: firing threshold (default 1.0).
        v_reset: reset (and initial) potential (default 0.0); ``None`` for soft reset.
        surrogate_function: the spike function's surrogate (default ``Sigmoid(alpha=4)``).
        strict_firing: fire on ``H > v_threshold`` (Norse) instead of ``>=``.
        first_spike_only: keep only each element's first spike (Norse's
            ``spike_latency_lif_encode``).
        step_mode: ``'m'`` (default) or ``'s'``.
        backend: the neuron's backend, ``'auto'`` (default) or ``'torch'``.

    Raises:
        DTypeError: ``x`` is not a floating-point tensor.
        ShapeError: ``x`` is 0-dim.
        ConfigurationError: a bad argument (named), or a NaN input.
    """

    owns_children_time = True

    step_mode_parts = ("neuron", "first_spike")

    def __init__(
        self,
        T: int,
        tau: float = 2.0,
        v_threshold: float | Tensor = 1.0,
        v_reset: float | None = 0.0,
        surrogate_function: Surrogate | None = None,
        strict_firing: bool = False,
        first_spike_only: bool = False,
        step_mode: StepMode = "m",
        backend: str = "auto",
    ) -> None:
        nn.Module.__init__(self)
        self.T = check_int("T", T, 1)
        self.neuron = LIFNode(
            tau=tau,
            decay_input=True,
            v_threshold=v_threshold,
            v_reset=v_reset,
            surrogate_function=surrogate_function,
            strict_firing=strict_firing,
            backend=backend,
        )
        once = check_flag("ConstantCurrentLIFEncoder", "first_spike_only", first_spike_only)
        self.first_spike = FirstSpikeFilter() if once else None
        self.step_mode = step_mode

    def reset(self) -> None:
        """Forget the membrane and the first-spike mask (as ``reset_net``)."""
        self.neuron.reset()
        if self.first_spike is not None:
            self.first_spike.reset()

    def forward(self, x: Tensor) -> Tensor:
        x = check_float_input(x, "ConstantCurrentLIFEncoder")
        check_no_nan(x, "ConstantCurrentLIFEncoder")
        if x.dim() < 1:
            raise ShapeError(
                "ConstantCurrentLIFEncoder expects currents with at least one dimension "
                "[B, ...] (one per neuron); got a 0-dim tensor: use x.reshape(1)"
            )
        current = x.unsqueeze(0).expand(self.T, *x.shape) if self.step_mode == "m" else x
        spikes = self.neuron(current)
        return spikes if self.first_spike is None else self.first_spike(spikes)

    def extra_repr(self) -> str:
        return (
            f"T={self.T}, first_spike_only={self.first_spike is not None}, "
            f"step_mode={self.step_mode!r}"
        )
