"""An exact, event-driven simulation of the continuous-time current-based LIF network
(float64 numpy), the reference for the EventProp gradient checks
(``tests/test_eventprop.py``).

Between events the dynamics ``V' = a (v_leak - V + I)``, ``I' = -b I`` are solved in
closed form; a spike is where ``V`` reaches ``v_th`` (found by bisection to rounding),
then ``V = v_reset`` and the recurrent weights add to the other neurons' currents; input
spike ``k`` of input ``i`` at time ``s_k`` adds ``W_in[:, i]`` to the currents. The loss
is ``∫_0^horizon Σ_n V_n(t)² dt`` (20-point Gauss-Legendre per smooth piece: exact to
rounding). Its derivative by central differences is the continuous system's gradient.
"""

from __future__ import annotations

import numpy as np

_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(20)


def _advance(v, i, tau, a, b, v_leak):
    """The state ``tau`` (scalar or array of times) after ``(v, i)``."""
    decay_a, decay_b = np.exp(-a * tau), np.exp(-b * tau)
    v_new = v_leak + (v - v_leak) * decay_a + i * a / (a - b) * (decay_b - decay_a)
    return v_new, i * decay_b


def _square_integral(v, i, tau, a, b, v_leak):
    """``∫_0^tau Σ V² dt`` from ``(v, i)``, no spike on the way."""
    if tau <= 0:
        return 0.0
    times = (_NODES + 1) * tau / 2
    values, _ = _advance(v[:, None], i[:, None], times[None, :], a, b, v_leak)
    return float(((values**2 - values) @ _WEIGHTS).sum() * tau / 2)


def continuous_loss(input_times, input_ids, w_in, w_rec, horizon, p):
    """``(loss, spike count)`` of one sample: input spikes at ``input_times`` (sorted) from
    inputs ``input_ids``, weights ``w_in [N, I]``, ``w_rec [N, N]`` or None, parameters
    ``p`` (a :class:`spikeflow.learn.LIFAdjointParameters`)."""
    a, b = p.tau_mem_inv, p.tau_syn_inv
    n = w_in.shape[0]
    v, i = np.full(n, p.v_leak), np.zeros(n)
    now, loss, spikes = 0.0, 0.0, 0
    events = [*zip(input_times, input_ids), (horizon, None)]
    for when, source in events:
        while True:  # spikes before the next input event
            span = when - now
            grid = np.linspace(0.0, span, 257)[1:]
            values, _ = _advance(v[:, None], i[:, None], grid[None, :], a, b, p.v_leak)
            above = values >= p.v_th
            if span <= 0 or not above.any():
                break
            first = np.where(above.any(axis=1), above.argmax(axis=1), grid.size)
            cell = int(first.argmin())
            lo = 0.0 if first[cell] == 0 else grid[first[cell] - 1]
            hi = grid[first[cell]]
            for _ in range(80):
                mid = (lo + hi) / 2
                if _advance(v[cell], i[cell], mid, a, b, p.v_leak)[0] >= p.v_th:
                    hi = mid
                else:
                    lo = mid
            loss += _square_integral(v, i, hi, a, b, p.v_leak)
            v, i = _advance(v, i, hi, a, b, p.v_leak)
            now += hi
            v[cell] = p.v_reset
            spikes += 1
            if w_rec is not None:
                i = i + w_rec[:, cell]
        loss += _square_integral(v, i, when - now, a, b, p.v_leak)
        v, i = _advance(v, i, when - now, a, b, p.v_leak)
        now = when
        if source is not None:
            i = i + w_in[:, source]
    return loss, spikes


def continuous_gradient(input_times, input_ids, w_in, w_rec, horizon, p, step=1e-6, masks=None):
    """Central differences of :func:`continuous_loss` in ``w_in`` and ``w_rec`` (each
    entry moved by ``step``; only where ``masks``, a pair of boolean arrays, is True, 0
    elsewhere); raises AssertionError if the spike count changes."""
    base, count = continuous_loss(input_times, input_ids, w_in, w_rec, horizon, p)
    grads = []
    for w, mask in zip((w_in, w_rec), masks or (None, None)):
        if w is None:
            grads.append(None)
            continue
        g = np.zeros_like(w)
        for index in np.ndindex(*w.shape):
            if mask is not None and not mask[index]:
                continue
            values = []
            for sign in (1, -1):
                w[index] += sign * step
                loss, moved = continuous_loss(input_times, input_ids, w_in, w_rec, horizon, p)
                w[index] -= sign * step
                assert moved == count, "the spike count changed: no derivative here"
                values.append(loss)
            g[index] = (values[0] - values[1]) / (2 * step)
        grads.append(g)
    return base, count, grads
