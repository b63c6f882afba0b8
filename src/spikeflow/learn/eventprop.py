"""EventProp: the adjoint method for current-based LIF neurons (Wunderlich & Pehle,
Scientific Reports 2021, "Event-based backpropagation can compute exact gradients for
spiking neural networks"), on the time grid of Norse's ``LIF`` (``method="adjoint"``).

The forward pass is Norse's forward-Euler current-based LIF (``LIFParameters``:
``a = tau_mem_inv``, ``b = tau_syn_inv``, ``v_leak``, ``v_th``, ``v_reset``, step ``dt``),
with ``v[0] = v_leak``, ``i[0] = 0``, ``z[0] = 0``::

    J[t] = i[t-1] + c[t] (+ W_rec z[t-1])       c[t]: the input current (W_in x[t])
    h[t] = v[t-1] + dt a (v_leak - v[t-1] + J[t])
    z[t] = H(h[t] - v_th)                        (H(0) = 0, as Norse)
    v[t] = v_reset where z[t] else h[t],   i[t] = J[t] (1 - dt b)

The backward pass runs an adjoint system from ``t = T`` down to 1 and touches nothing
but the spike flags and two numbers per spike, the membrane's slope just before and just
after it (``V̇⁻``, ``V̇⁺``); no autograd graph is built over time. ``jumps`` picks the
adjoint:

``"eventprop"`` (default): between spikes the exact adjoint of the discretised
dynamics (``λJ = dt a λh + (1 - dt b) λi``, ``λv[t-1] = (1 - dt a) λh + ∂L/∂v[t-1]``),
and at a spike of neuron ``n`` Wunderlich & Pehle's jump, which carries the shift of the
spike time that the grid cannot represent::

    λh_n = (V̇⁺/V̇⁻) λv_n + G_n / V̇⁻,    V̇⁻ = a (v_leak - v[t-1] + J[t]),
                                         V̇⁺ = a (v_leak - v_reset + J[t])
    G_n = ∂L/∂z_n[t] + Σ_i W_rec[i, n] (a λh_i[t+1] - b λJ_i[t+1])

(``λh_n = 0`` at the first step's spike of a neuron that starts above threshold,
``v_leak > v_th``: it fires whatever its input, and its slope may be 0.)

``G`` is minus the loss's derivative with respect to the spike time: through the
recurrent weights exactly (a spike that comes earlier moves the current jump it causes
in neuron ``i``), and for a loss on the spike flags, ``∂L/∂z`` stands for
``-∂L/∂t_spike`` (a spike that comes earlier counts as more), as in Norse. Between
layers, ``spike_input=True`` makes a layer hand the one before ``x ⊙ W_inᵀ (a λh − b λJ)``,
the same spike-time derivative for its input spikes (EventProp across layers), instead
of the count derivative ``W_inᵀ λJ``.

``"norse"``: Norse 1.1's adjoint, equation for equation (``LIFAdjointFunction``,
``LIFFeedForwardAdjointFunction``): ``λJ = λi + dt b (λv - λi)`` (the synaptic rate
``b`` where the dynamics have ``a``: in the continuum, without spikes, its input
gradients are ``tau_mem/tau_syn`` times the derivative), the jump taken after the leak
with ``V̇⁻ = a (v_leak - v[t-1] + i[t-1])`` and ``V̇⁺ = a (v_leak - v_reset + i[t-1])``
(the current before this step's input), the recurrent spike's effect as the count
term ``Σ_i W_rec[i, n] λJ_i[t+1]``, and the input weights' gradient
``Σ_t λJ[t+1]ᵀ x[t]`` (one step later than the current ``W_in x[t]`` enters; its
input gradient uses ``λJ[t]``). Kept to compare with, and for Norse users.

Both loops run as fused C kernels on CPU float32/float64 tensors (``backend="auto"``,
the default, or ``"c"``; :data:`EVENTPROP_BACKENDS`, ``_eventprop.c``), the same
arithmetic as the PyTorch loops here (``backend="torch"``, the reference, on any device
and dtype) but for the recurrent sums, which the C kernels take over the spikes (in
another order: a membrane within rounding of ``v_th`` may fire in one and not the
other).

The parameters (:class:`LIFAdjointParameters`, :func:`parameters_from_cuba`) are in
:mod:`spikeflow.learn.eventprop_parameters`, re-exported here.

See ``docs/learning.md`` (EventProp) for what was checked against what.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from spikeflow._checks import check_flag, check_int
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.learn._adjoint_common import (
    check_sequence,
    check_weight,
    layer_weights,
    load_layer,
    save_layer,
)
from spikeflow.learn.eventprop_parameters import (
    EVENTPROP_JUMPS,
    NORSE_DEFAULTS,
    LIFAdjointParameters,
    _check_jumps,
    _check_parameters,
    parameters_from_cuba,
)
from spikeflow.memory.packing import PackedSpikes, is_binary, pack_spikes, unpack_spikes

__all__ = [
    "EVENTPROP_BACKENDS",
    "EVENTPROP_JUMPS",
    "NORSE_DEFAULTS",
    "EventPropLIF",
    "LIFAdjointParameters",
    "lif_adjoint",
    "lif_recurrent_adjoint",
    "parameters_from_cuba",
]

#: Where :func:`lif_adjoint` runs: ``"auto"`` (default), the C kernels for CPU
#: float32/float64 tensors when a C compiler is found (a failed build warns once and
#: runs the PyTorch loop), else the PyTorch loop; ``"c"``: the C kernels or an error
#: (no compiler: :class:`~spikeflow.kernels.cpu.CompilerNotFoundError`; another device
#: or dtype: :class:`~spikeflow.errors.ConfigurationError`); ``"torch"``: the PyTorch
#: loop (the reference) on any device and dtype.
EVENTPROP_BACKENDS = ("auto", "c", "torch")
_WARNED: set[str] = set()


def _check_backend(owner: str, backend: object) -> str:
    if not isinstance(backend, str) or backend not in EVENTPROP_BACKENDS:
        raise ConfigurationError(
            f"{owner}: backend must be one of {EVENTPROP_BACKENDS}, got {backend!r}"
        )
    return backend


def _use_c(owner: str, x: Tensor, backend: str) -> bool:
    """Whether ``backend`` runs the C kernels on ``x`` (see :data:`EVENTPROP_BACKENDS`)."""
    from spikeflow._cbuild import use_c_kernels
    from spikeflow.learn import _eventprop_c

    return use_c_kernels(
        backend,
        _eventprop_c.supports(x),
        _eventprop_c._library,
        lambda: (
            f"{owner}(backend='c') runs on CPU float32/float64 tensors, got {x.dtype} "
            f"on {x.device}; use backend='auto' or 'torch'"
        ),
        "EventProp's C kernels could not be built, so it runs as a PyTorch loop; fix the "
        "compiler set-up ($CC) or choose backend='torch'",
        _WARNED,
        stacklevel=3,  # the warning names the line that called lif_adjoint (or the layer)
    )


class _Saved(NamedTuple):
    spikes: PackedSpikes  # z[t], bits
    counts: list[int]  # spikes per step
    slope_minus: Tensor  # V̇⁻ at each spike, in time order
    slope_plus: Tensor  # V̇⁺ at each spike


class _LIFAdjoint(torch.autograd.Function):
    """The whole sequence in one node of the autograd graph (module docstring)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: Tensor,
        w_in: Tensor | None,
        w_rec: Tensor | None,
        p: LIFAdjointParameters,
        jumps: str,
        spike_input: bool,
        use_c: bool,
    ) -> tuple[Tensor, Tensor]:
        a, b, dt = p.tau_mem_inv, p.tau_syn_inv, p.dt
        current = x if w_in is None else torch.matmul(x, w_in.t())
        ctx.p, ctx.jumps, ctx.spike_input, ctx.use_c = p, jumps, spike_input, use_c
        ctx.set_materialize_grads(False)  # an unused output's gradient stays None
        save_layer(ctx, x, w_in, w_rec)
        if use_c:
            return _c_forward(ctx, current, w_rec, p, jumps)
        steps, batch, n = current.shape
        v = current.new_full((batch, n), p.v_leak)
        i = current.new_zeros(batch, n)
        z = current.new_zeros(batch, n)
        spikes = current.new_empty(steps, batch, n)
        voltage = current.new_empty(steps, batch, n)
        # the current each step's slopes use (J[t]; Norse: i[t-1]), kept until the loop
        # ends, then read at the spikes only
        base = current.new_empty(steps, batch, n)
        charge, leak = dt * a, -dt * b  # Norse's products, in Norse's order
        for t in range(steps):
            j = i + current[t]
            if w_rec is not None:
                j = j + torch.matmul(z, w_rec.t())
            base[t] = i if jumps == "norse" else j
            h = v + charge * ((p.v_leak - v) + j)
            fired = h > p.v_th  # Norse's H(h - v_th): the same comparison
            v = torch.where(fired, p.v_reset, h)  # Norse's (1 - z) h + z v_reset
            i = j + leak * j
            spikes[t] = fired
            voltage[t] = v
            if w_rec is not None:
                z = fired.to(h.dtype)
        fired = spikes.bool()
        before = torch.cat([current.new_full((1, batch, n), p.v_leak), voltage[:-1]])
        slope_minus = a * ((p.v_leak - before[fired]) + base[fired])  # in time order
        if jumps == "eventprop":  # started above threshold: a spike at t = 0 that cannot move
            slope_minus = torch.where(before[fired] > p.v_th, torch.inf, slope_minus)
        ctx.saved = _Saved(
            pack_spikes(fired),
            fired.sum(dim=(1, 2)).tolist(),
            slope_minus,
            a * ((p.v_leak - p.v_reset) + base[fired]),
        )
        return spikes, voltage

    @staticmethod
    @once_differentiable
    def backward(  # type: ignore[override]
        ctx: Any, grad_spikes: Tensor | None, grad_voltage: Tensor | None
    ) -> tuple[Tensor | None, ...]:
        saved: _Saved = ctx.saved
        p: LIFAdjointParameters = ctx.p
        a, b, dt = p.tau_mem_inv, p.tau_syn_inv, p.dt
        x, w_in, w_rec = load_layer(ctx)
        if ctx.use_c:
            d_current, d_time, d_rec = _c_backward(ctx, grad_spikes, grad_voltage, w_rec)
            return (*_input_gradients(ctx, x, w_in, d_current, d_time), d_rec, None, None,
                    None, None)  # fmt: skip
        z_all = unpack_spikes(saved.spikes)
        if grad_spikes is None or grad_voltage is None:
            given = grad_spikes if grad_spikes is not None else grad_voltage
            zeros = torch.zeros_like(given)  # type: ignore[arg-type]
            grad_spikes = zeros if grad_spikes is None else grad_spikes
            grad_voltage = zeros if grad_voltage is None else grad_voltage
        steps, batch, n = z_all.shape
        norse = ctx.jumps == "norse"
        lam_v = grad_spikes.new_zeros(batch, n)
        lam_i = grad_spikes.new_zeros(batch, n)
        g_rec = grad_spikes.new_zeros(batch, n)  # the recurrent part of G for step t
        d_current = grad_spikes.new_empty(steps, batch, n)
        # λh of every step, for the spike-time gradient of spike inputs
        d_h = grad_spikes.new_empty(steps, batch, n) if ctx.spike_input else None
        d_rec = None if w_rec is None else torch.zeros_like(w_rec)
        end = saved.slope_minus.numel()
        for t in range(steps - 1, -1, -1):
            lam_v = lam_v + grad_voltage[t]
            fired = z_all[t]
            count = saved.counts[t]
            start = end - count
            if norse:
                if d_rec is not None:
                    d_rec += lam_i.t().mm(z_all[t].to(lam_i.dtype))
                lam_j = lam_i + dt * b * (lam_v - lam_i)
                lam_h = lam_v - a * dt * lam_v
            else:
                lam_h = lam_v
            lam_pre = lam_h  # λ where the jump applies (Norse: after the leak)
            if count:
                s_minus = saved.slope_minus[start:end]
                s_plus = saved.slope_plus[start:end]
                g = (grad_spikes[t] + g_rec)[fired]
                lam_h = lam_h.clone()
                lam_h[fired] = lam_pre[fired] * (s_plus / s_minus) + g / s_minus
            end = start
            if norse:
                lam_v = lam_h
                g_rec = lam_j.mm(w_rec) if w_rec is not None else g_rec
            else:
                lam_j = dt * a * lam_h + (1 - dt * b) * lam_i
                lam_v = (1 - dt * a) * lam_h
                if w_rec is not None:
                    if t > 0:
                        d_rec += lam_j.t().mm(z_all[t - 1].to(lam_j.dtype))
                    g_rec = (a * lam_h - b * lam_j).mm(w_rec)
            d_current[t] = lam_j
            if d_h is not None:
                d_h[t] = lam_h
            lam_i = lam_j
        d_time = None if d_h is None else a * d_h - b * d_current
        return (*_input_gradients(ctx, x, w_in, d_current, d_time), d_rec, None, None, None,
                None)  # fmt: skip


def _c_forward(
    ctx: Any, current: Tensor, w_rec: Tensor | None, p: LIFAdjointParameters, jumps: str
) -> tuple[Tensor, Tensor]:
    """:meth:`_LIFAdjoint.forward`'s loop by the C kernel; fills ``ctx.saved``."""
    from spikeflow.learn import _eventprop_c

    a, b, dt = p.tau_mem_inv, p.tau_syn_inv, p.dt
    constants = (a, dt * a, -dt * b, p.v_leak, p.v_th, p.v_reset, p.v_leak - p.v_reset)
    spikes, voltage, slope_minus, slope_plus, counts = _eventprop_c.c_forward(
        current.contiguous(), w_rec, constants, jumps == "norse"
    )
    ctx.saved = _Saved(
        PackedSpikes(_eventprop_c.c_pack(spikes), spikes.shape, torch.bool),
        counts.sum(1).tolist(),
        slope_minus,
        slope_plus,
    )
    ctx.chunk_counts = counts  # the spikes of each chunk of each step
    return spikes, voltage


def _c_backward(
    ctx: Any, grad_spikes: Tensor | None, grad_voltage: Tensor | None, w_rec: Tensor | None
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """``(λJ, a λh − b λJ or None, ∂L/∂W_rec or None)`` by the C kernel."""
    from spikeflow.learn import _eventprop_c

    saved: _Saved = ctx.saved
    p: LIFAdjointParameters = ctx.p
    a, b, dt = p.tau_mem_inv, p.tau_syn_inv, p.dt
    norse = ctx.jumps == "norse"
    # the reference loop's scalar products, in its order
    constants = (a, b, dt * b, a * dt, 0.0) if norse else (a, b, dt * a, 1 - dt * b, 1 - dt * a)
    return _eventprop_c.c_backward(
        tuple(saved.spikes.shape),  # type: ignore[arg-type]
        saved.spikes.bits,
        ctx.chunk_counts,
        saved.slope_minus,
        saved.slope_plus,
        None if grad_spikes is None else grad_spikes.contiguous(),
        None if grad_voltage is None else grad_voltage.contiguous(),
        w_rec,
        constants,
        norse,
        ctx.spike_input,
    )


def _input_gradients(
    ctx: Any, x: Tensor | None, w_in: Tensor | None, d_current: Tensor, d_time: Tensor | None
) -> tuple[Tensor | None, Tensor | None]:
    """The gradients of ``x`` (or of the current, without ``W_in``) and of ``W_in`` from
    ``λJ`` (``d_current``) and, with ``spike_input``, ``a λh − b λJ`` (``d_time``)."""
    if w_in is None or x is None:
        return d_current, None
    d_x = d_in = None
    if ctx.needs_input_grad[0] and d_time is not None:  # spike_input
        d_x = x * torch.matmul(d_time, w_in)
    elif ctx.needs_input_grad[0]:
        d_x = torch.matmul(d_current, w_in)
    if ctx.needs_input_grad[1]:
        paired = d_current
        if ctx.jumps == "norse":  # Norse pairs x[t] with λJ[t+1]
            paired = torch.cat([d_current[1:], torch.zeros_like(d_current[:1])])
        # Σ_t λJᵀ x as one [N, T·B] x [T·B, I] product (einsum took a batched path
        # with copies of both operands: 2x slower)
        rows = x.shape[0] * x.shape[1]  # not -1: a layer of 0 neurons or 0 inputs
        d_in = torch.mm(paired.reshape(rows, paired.shape[-1]).t(), x.reshape(rows, x.shape[-1]))
    return d_x, d_in


def lif_adjoint(
    current: Tensor,
    p: LIFAdjointParameters = NORSE_DEFAULTS,
    jumps: str = "eventprop",
    backend: str = "auto",
) -> tuple[Tensor, Tensor]:
    """Feed-forward current-based LIF over a whole sequence, differentiated by the
    adjoint method (module docstring): Norse's ``lif_feed_forward_adjoint_step`` over
    every step.

    Args:
        current: the input current ``c[t]`` added to the synaptic current, ``[T, B, N]``.
        p: the neuron's parameters (default Norse's).
        jumps: ``"eventprop"`` (default) or ``"norse"`` (module docstring).
        backend: ``"auto"`` (default), ``"c"`` or ``"torch"`` (:data:`EVENTPROP_BACKENDS`).

    Returns:
        ``(spikes, v)``, both ``[T, B, N]``: the spikes ``z[t]`` and the membrane after
        the reset ``v[t]``; a loss may use either.

    Raises:
        ConfigurationError: bad parameters, ``jumps`` or ``backend``; a NaN or infinite
            ``current`` (the entry named); ``backend="c"`` on a tensor that is not a CPU
            float32/float64 one.
        CompilerNotFoundError, BuildError: ``backend="c"`` without a C compiler, or its
            build failed.
        ShapeError: ``current`` is not ``[T, B, N]`` with ``T >= 1``.
        DTypeError: ``current`` is not floating-point.
    """
    owner = "lif_adjoint"
    p = _check_parameters(owner, p)
    jumps = _check_jumps(owner, jumps)
    backend = _check_backend(owner, backend)
    current = check_sequence(owner, "current", current)
    use_c = _use_c(owner, current, backend)
    spikes, v = _LIFAdjoint.apply(current, None, None, p, jumps, False, use_c)
    return spikes, v


def lif_recurrent_adjoint(
    x: Tensor,
    input_weights: Tensor,
    recurrent_weights: Tensor | None,
    p: LIFAdjointParameters = NORSE_DEFAULTS,
    jumps: str = "eventprop",
    spike_input: bool = False,
    backend: str = "auto",
) -> tuple[Tensor, Tensor]:
    """A Linear -> LIF layer (optionally recurrent) over a whole sequence, differentiated
    by the adjoint method: Norse's ``lif_adjoint_step`` over every step. The input current
    is ``W_in x[t]`` (+ ``W_rec z[t-1]``); gradients reach ``x``, ``input_weights`` and
    ``recurrent_weights``.

    Args:
        x: inputs ``[T, B, I]``.
        input_weights: ``W_in``, ``[N, I]``.
        recurrent_weights: ``W_rec``, ``[N, N]`` (row: receiving neuron), or None.
        p: the neuron's parameters (default Norse's).
        jumps: ``"eventprop"`` (default) or ``"norse"`` (module docstring).
        spike_input: ``x`` are spikes (0 or 1) of another EventProp layer: the gradient
            returned for ``x`` is then ``x ⊙ W_inᵀ (a λh[t] − b λJ[t])``, minus the loss's
            derivative with respect to each input spike's time (what the layer before
            needs for its jumps: exact EventProp across layers), instead of ``∂L/∂x``.
            ``jumps="eventprop"`` only (default False).
        backend: ``"auto"`` (default), ``"c"`` or ``"torch"`` (:data:`EVENTPROP_BACKENDS`).

    Returns:
        ``(spikes, v)``, both ``[T, B, N]``.

    Raises:
        ConfigurationError: bad parameters, ``jumps`` or ``backend``, a weight that is not
            a tensor; a NaN or infinite ``x`` or weight (the entry named); ``backend="c"``
            on a tensor that is not a CPU float32/float64 one.
        CompilerNotFoundError, BuildError: ``backend="c"`` without a C compiler, or its
            build failed.
        ShapeError: a shape that does not fit.
        DTypeError: weights of another dtype or device than ``x``, integer ``x``.
    """
    owner = "lif_recurrent_adjoint"
    p = _check_parameters(owner, p)
    jumps = _check_jumps(owner, jumps)
    spike_input = check_flag(owner, "spike_input", spike_input)
    backend = _check_backend(owner, backend)
    if spike_input and jumps != "eventprop":
        raise ConfigurationError(
            f"{owner}: spike_input=True needs jumps='eventprop' (Norse's adjoint passes "
            f"the count derivative between layers), got jumps={jumps!r}"
        )
    if not isinstance(input_weights, Tensor) or input_weights.dim() != 2:
        raise ShapeError(
            f"{owner}: input_weights must be a [N, I] tensor, got "
            + (
                f"shape {tuple(input_weights.shape)}"
                if isinstance(input_weights, Tensor)
                else repr(input_weights)
            )
        )
    n, width = input_weights.shape
    x = check_sequence(owner, "x", x, width)
    check_weight(owner, "input_weights", input_weights, (n, width), x)
    if recurrent_weights is not None:
        check_weight(owner, "recurrent_weights", recurrent_weights, (n, n), x)
    if spike_input and not is_binary(x):
        raise ConfigurationError(f"{owner}: spike_input=True but x holds values other than 0 and 1")
    use_c = _use_c(owner, x, backend)
    spikes, v = _LIFAdjoint.apply(x, input_weights, recurrent_weights, p, jumps, spike_input, use_c)
    return spikes, v


class EventPropLIF(nn.Module):
    """A Linear -> current-based LIF layer trained by EventProp (the adjoint method):
    Norse's ``LIF``/``LIFRecurrent`` with ``method="adjoint"`` as one spikeflow module
    over the whole sequence ``[T, B, in_features] -> [T, B, out_features]``.

    Training memory: the layer keeps its input, the spike flags as bits and two numbers
    per spike, whatever ``T`` (BPTT keeps the states of every step).

    Args:
        in_features: inputs per step.
        out_features: neurons.
        recurrent: add recurrent weights ``W_rec`` (``z[t-1]`` reaches ``J[t]``; default False).
        p: the neurons' parameters (default Norse's ``LIFParameters()`` with ``dt = 1e-3``).
        jumps: ``"eventprop"`` (default) or ``"norse"`` (see :mod:`spikeflow.learn.eventprop`).
        weight_scale: the weights are drawn from ``N(0, weight_scale² · 2/in_features)``
            (``W_rec``: ``2/out_features``); default 1.
        spike_input: the input is the spikes of another EventProp layer; pass it the
            spike-time gradient (see :func:`lif_recurrent_adjoint`; default False).
        backend: ``"auto"`` (default: the C kernels on CPU float32/float64 tensors),
            ``"c"`` or ``"torch"`` (the PyTorch loop; :data:`EVENTPROP_BACKENDS`).

    ``forward(x)`` returns the spikes; ``forward(x, return_voltage=True)`` the spikes and the
    membrane ``v`` (a loss may use either; both backpropagate by the adjoint).

    Raises:
        ConfigurationError: a count below 1, bad parameters, ``jumps`` or ``backend``.
    """

    #: ``forward`` always starts from the resting state (``v = v_leak``, no current).
    streamable = False

    def __init__(
        self,
        in_features: int,
        out_features: int,
        recurrent: bool = False,
        p: LIFAdjointParameters = NORSE_DEFAULTS,
        jumps: str = "eventprop",
        weight_scale: float = 1.0,
        spike_input: bool = False,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.in_features = check_int(f"{owner}: in_features", in_features, 1)
        self.out_features = check_int(f"{owner}: out_features", out_features, 1)
        self.recurrent = check_flag(owner, "recurrent", recurrent)
        self.p = _check_parameters(owner, p)
        self.jumps = _check_jumps(owner, jumps)
        self.spike_input = check_flag(owner, "spike_input", spike_input)
        self.backend = _check_backend(owner, backend)
        if self.spike_input and self.jumps != "eventprop":
            raise ConfigurationError(f"{owner}: spike_input=True needs jumps='eventprop'")
        self.input_weights, self.recurrent_weights = layer_weights(
            owner, in_features, out_features, self.recurrent, weight_scale
        )

    def forward(self, x: Tensor, return_voltage: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """Spikes ``[T, B, out_features]`` of ``x`` ``[T, B, in_features]`` (and ``v``)."""
        spikes, v = lif_recurrent_adjoint(
            x,
            self.input_weights,
            self.recurrent_weights,
            self.p,
            self.jumps,
            self.spike_input,
            self.backend,
        )
        return (spikes, v) if return_voltage else spikes

    def extra_repr(self) -> str:
        p = self.p
        return (
            f"{self.in_features}, {self.out_features}, recurrent={self.recurrent}, "
            f"jumps={self.jumps!r}, spike_input={self.spike_input}, backend={self.backend!r}, "
            f"tau_syn_inv={p.tau_syn_inv}, tau_mem_inv={p.tau_mem_inv}, "
            f"v_leak={p.v_leak}, v_th={p.v_th}, v_reset={p.v_reset}, dt={p.dt}"
        )
