"""The weight change against pairing frequency (Pfister and Gerstner 2006, fitted to
the visual cortex data of Sjöström et al. 2001), which pair STDP cannot produce.

Protocol: 60 pairings of one presynaptic and one postsynaptic spike, the post spike
``Δt = +10 ms`` after the pre (pre-post) or ``-10 ms`` before it (post-pre), repeated
at 0.1 to 50 Hz. The synapse learns by :func:`~spikeflow.learn.triplet_stdp_update` in
steps of ``--dt`` ms (time constants ``τ/dt`` steps); its traces are carried from one
pairing to the next. Where a pairing period is longer than 300 ms, the silent rest of it
is skipped by decaying the carried traces by ``(1 - 1/τ)^steps``, exactly what the
step-by-step run computes over silent steps (no spike, no weight change), so 0.1 Hz does
not take 600 s of steps. Each row also prints the continuous-time value of the paper's
equations (an event loop over the spike times with ``exp(-Δt/τ)``), the reference.
Weight changes in % of an initial weight of 1 (the rule is additive).

    python examples/triplet_stdp_frequency.py             # dt = 0.1 ms, ~2 min
    python examples/triplet_stdp_frequency.py --dt 0.5
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from torch import nn

from spikeflow.learn import TRIPLET_PRESETS, triplet_preset, triplet_stdp_update

FREQUENCIES = (0.1, 10.0, 20.0, 40.0, 50.0)
LAGS = (10.0, -10.0)
PAIRS = 60
SIMULATED_MS = 300.0  # of each period; the rest is silent and skipped exactly


def continuous(pre_ms: list[float], post_ms: list[float], params: dict, nearest: bool) -> float:
    """Δw of the paper's continuous-time rule, by summing over the spike times."""

    def trace(times: list[float], t: float, tau: float | None, strict: bool) -> float:
        earlier = [s for s in times if (s < t if strict else s <= t)]
        if tau is None or not earlier:
            return 0.0
        if nearest:
            return math.exp(-(t - max(earlier)) / tau)
        return sum(math.exp(-(t - s) / tau) for s in earlier)

    dw = 0.0
    for t in post_ms:
        o2 = trace(post_ms, t, params["tau_y"], True)
        dw += trace(pre_ms, t, params["tau_plus"], False) * (
            params["a2_plus"] + params["a3_plus"] * o2)  # fmt: skip
    for t in pre_ms:
        r2 = trace(pre_ms, t, params["tau_x"], True)
        dw -= trace(post_ms, t, params["tau_minus"], False) * (
            params["a2_minus"] + params["a3_minus"] * r2)  # fmt: skip
    return dw


def _onset(lag: float) -> float:
    """The pre spike's time in its period (ms): 0, or ``-lag`` when the post leads."""
    return max(0.0, -lag)


def simulated(freq: float, params: dict, dt: float) -> tuple[float, float]:
    """Δw of the pre-post and of the post-pre protocol, in steps of ``dt`` ms: one
    ``Linear(2, 2)`` holds both (synapse 0→0 pre-post, 1→1 post-pre)."""
    period = 1000.0 / freq
    window = min(period, SIMULATED_MS)
    steps, rest = round(window / dt), round((period - window) / dt)
    pre = torch.zeros(steps, 1, 2, dtype=torch.float64)
    post = torch.zeros(steps, 1, 2, dtype=torch.float64)
    for i, lag in enumerate(LAGS):  # the first spike of a pairing starts its period
        pre[round(_onset(lag) / dt), 0, i] = 1.0
        post[round((_onset(lag) + lag) / dt), 0, i] = 1.0
    syn = nn.Linear(2, 2, bias=False).double()
    taus = (params["tau_plus"], params["tau_x"], params["tau_minus"], params["tau_y"])
    total, traces = torch.zeros(2, 2, dtype=torch.float64), (None, None, None, None)
    for _ in range(PAIRS):
        delta, traces = triplet_stdp_update(syn, pre, post, **params, traces=traces)
        total += delta
        if rest:  # the silent rest of the period: the traces decay, nothing is learned
            traces = tuple(None if x is None else x * (1 - 1 / tau) ** rest
                           for x, tau in zip(traces, taus, strict=True))  # fmt: skip
    return float(total[0, 0]), float(total[1, 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dt", type=float, default=0.1, help="ms per step")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rules = {name: triplet_preset(name, args.dt) for name in (
        "visual_cortex_all_to_all_minimal", "visual_cortex_all_to_all_full",
        "visual_cortex_nearest_minimal", "visual_cortex_nearest_full")}  # fmt: skip
    # pair STDP: the all-to-all full set without triplet terms, its A3+ as the pair's A2+
    pair = dict(rules["visual_cortex_all_to_all_full"], a2_plus=6.2e-3, a3_plus=0.0, a3_minus=0.0)
    rules["pair rule (A2+ = 6.2e-3, A2- = 7e-3, A3 = 0)"] = pair
    start = time.perf_counter()
    print(f"Δw in % after {PAIRS} pairings, dt = {args.dt} ms: spikeflow (continuous time)")
    for name, params in rules.items():
        print(f"\n{name}")
        print("  freq (Hz) |  pre-post +10 ms   |  post-pre -10 ms")
        cont_params = dict(params)
        preset = TRIPLET_PRESETS.get(name)
        if preset is not None:
            cont_params.update(tau_plus=preset.tau_plus, tau_minus=preset.tau_minus,
                               tau_x=preset.tau_x, tau_y=preset.tau_y)  # fmt: skip
        else:
            cont_params.update({k: None if v is None else v * args.dt for k, v in params.items()
                                if k.startswith("tau")})  # fmt: skip
        for freq in FREQUENCIES:
            sim = simulated(freq, params, args.dt)
            period = 1000.0 / freq
            cells = []
            for value, lag in zip(sim, LAGS, strict=True):
                pre_ms = [_onset(lag) + k * period for k in range(PAIRS)]
                post_ms = [t + lag for t in pre_ms]
                exact = continuous(pre_ms, post_ms, cont_params, params["interaction"] == "nearest")
                cells.append(f"{100 * value:+7.1f} ({100 * exact:+7.1f})")
            print(f"  {freq:9g} | {cells[0]:>18} | {cells[1]:>18}")
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
