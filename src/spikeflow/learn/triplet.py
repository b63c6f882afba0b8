"""Triplet STDP (Pfister and Gerstner, J. Neurosci. 26(38), 2006) with traces.

Each input keeps two presynaptic traces ``r1`` (time constant ``τ+``) and ``r2``
(``τx``), each neuron two postsynaptic traces ``o1`` (``τ-``) and ``o2`` (``τy``). In
steps, with the traces updated first and then used (as the pair rule,
:func:`~spikeflow.learn.stdp_update`)::

    all-to-all:    r[t] = r[t-1]·(1 - 1/τ) + s[t]          (every earlier spike counts)
    nearest-spike: r[t] = r[t-1]·(1 - 1/τ)·(1 - s[t]) + s[t]   (a spike sets it to 1)

    Δw = f_post(w)·Σ_t s_post[t]·(A2+ + A3+·o2⁻[t]) ⊗ r1[t]
       − f_pre(w)·Σ_t o1[t] ⊗ s_pre[t]·(A2- + A3-·r2⁻[t])

where ``o2⁻[t] = o2[t-1]·(1 - 1/τy)`` and ``r2⁻[t] = r2[t-1]·(1 - 1/τx)`` are the
second traces just before the step's own spike (the paper's ``t - ε``). With
``A3± = 0`` this is the pair rule with ``f_post = A2+``, ``f_pre = A2-``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from spikeflow._checks import check_real
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.learn.stdp import STDPLearner
from spikeflow.learn.stdp_rule import _check_shapes, _check_trace, _pair_sums, check_synapse

__all__ = [
    "TRIPLET_PRESETS",
    "TripletParameters",
    "TripletSTDPLearner",
    "triplet_preset",
    "triplet_stdp_update",
]

INTERACTIONS = ("all_to_all", "nearest")


@dataclass(frozen=True)
class TripletParameters:
    """One parameter set of the triplet rule; time constants in milliseconds.

    ``tau_x`` / ``tau_y`` are None where the set's ``a3_minus`` / ``a3_plus`` is 0 (the
    minimal models, whose second trace is unused).
    """

    tau_plus: float
    tau_minus: float
    tau_x: float | None
    tau_y: float | None
    a2_plus: float
    a3_plus: float
    a2_minus: float
    a3_minus: float
    interaction: str


def _set(interaction: str, tau_x, tau_y, a2p, a3p, a2m, a3m) -> TripletParameters:
    # τ+ = 16.8 ms and τ- = 33.7 ms (Bi and Poo 2001) in every fitted set of the paper
    return TripletParameters(16.8, 33.7, tau_x, tau_y, a2p, a3p, a2m, a3m, interaction)


#: The fitted sets of Pfister and Gerstner (2006) (visual cortex: Sjöström et al. 2001;
#: hippocampal cultures: Wang et al. 2005), by data set, spike interaction and model
#: (full: the four amplitudes; minimal: the fewest that fit). See docs/learning.md for
#: the sources the values were checked against and where they disagree.
TRIPLET_PRESETS: dict[str, TripletParameters] = {
    "visual_cortex_all_to_all_full": _set("all_to_all", 101.0, 125.0, 5e-10, 6.2e-3, 7e-3, 2.3e-4),
    "visual_cortex_all_to_all_minimal": _set("all_to_all", None, 114.0, 0.0, 6.5e-3, 7.1e-3, 0.0),
    "visual_cortex_nearest_full": _set("nearest", 714.0, 40.0, 8.8e-11, 5.3e-2, 6.6e-3, 3.1e-3),
    "visual_cortex_nearest_minimal": _set("nearest", None, 40.0, 0.0, 5e-2, 8e-3, 0.0),
    "hippocampal_all_to_all_full": _set("all_to_all", 946.0, 27.0, 6.1e-3, 6.7e-3, 1.6e-3, 1.4e-3),
    "hippocampal_all_to_all_minimal": _set("all_to_all", None, 40.0, 5.3e-3, 8e-3, 3.5e-3, 0.0),
    "hippocampal_nearest_full": _set("nearest", 575.0, 47.0, 4.6e-3, 9.1e-3, 3e-3, 7.5e-9),
    "hippocampal_nearest_minimal": _set("nearest", None, 48.0, 4.6e-3, 9.1e-3, 3e-3, 0.0),
}  # fmt: skip


def triplet_preset(name: str, dt: float = 1.0) -> dict[str, Any]:
    """The keyword arguments of :func:`triplet_stdp_update` / :class:`TripletSTDPLearner`
    for one of :data:`TRIPLET_PRESETS`, with the time constants in steps of ``dt`` ms.

    Raises:
        ConfigurationError: an unknown name, or ``dt`` not positive.
    """
    if name not in TRIPLET_PRESETS:
        raise ConfigurationError(
            f"triplet_preset: unknown preset {name!r}; known: {', '.join(TRIPLET_PRESETS)}"
        )
    dt = check_real("triplet_preset: dt", dt, 0.0, low_open=True)
    p = TRIPLET_PRESETS[name]

    def steps(tau: float | None) -> float | None:
        return None if tau is None else tau / dt

    return dict(
        tau_plus=steps(p.tau_plus), tau_minus=steps(p.tau_minus), tau_x=steps(p.tau_x),
        tau_y=steps(p.tau_y), a2_plus=p.a2_plus, a3_plus=p.a3_plus, a2_minus=p.a2_minus,
        a3_minus=p.a3_minus, interaction=p.interaction,
    )  # fmt: skip


def _check_params(
    tau_x: float | None, tau_y: float | None, amplitudes: dict[str, float], interaction: str
) -> tuple[float | None, float | None, dict[str, float]]:
    if interaction not in INTERACTIONS:
        raise ConfigurationError(
            f"triplet STDP: interaction must be 'all_to_all' or 'nearest', got {interaction!r}"
        )
    amps = {k: check_real(f"triplet STDP: {k}", v) for k, v in amplitudes.items()}
    taus = []
    for name, tau, amp in (("tau_x", tau_x, "a3_minus"), ("tau_y", tau_y, "a3_plus")):
        if tau is None:
            if amps[amp] != 0:
                raise ConfigurationError(f"triplet STDP: {amp} != 0 needs {name} (got None)")
            taus.append(None)
        else:
            taus.append(check_real(f"triplet STDP: {name}", tau, 1.0))
    return taus[0], taus[1], amps


def _trace(spikes: Tensor, tau: float, start: Tensor | None, nearest: bool) -> Tensor:
    """The trace of ``spikes [T, ...]`` after each step (``start``: the step before)."""
    decay = 1.0 - 1.0 / tau
    out = torch.empty_like(spikes)
    trace = torch.zeros_like(spikes[0]) if start is None else start.to(spikes.dtype)
    for t in range(spikes.shape[0]):
        s = spikes[t]
        trace = (trace * decay * (1 - s) if nearest else trace * decay) + s
        out[t] = trace
    return out


def _before(trace: Tensor, tau: float, start: Tensor | None) -> Tensor:
    """``trace[t-1]·(1 - 1/τ)``: the trace just before each step's own spike."""
    first = torch.zeros_like(trace[:1]) if start is None else start.to(trace.dtype)[None]
    return torch.cat([first, trace[:-1]]) * (1.0 - 1.0 / tau)


def _checked_spikes(
    synapse: nn.Module, pre: Tensor, post: Tensor, starts: tuple[Tensor | None, Tensor | None]
) -> tuple[Tensor, Tensor]:
    """``pre``, ``post`` checked against the layer (and the carried ``r1``, ``o1``), in
    float32 or wider."""
    dims = check_synapse(synapse)
    if not isinstance(pre, Tensor) or not isinstance(post, Tensor):
        raise ShapeError("triplet STDP: pre and post spikes must be tensors")
    _check_shapes(synapse, pre, post, dims)
    _check_trace("r1 (presynaptic)", starts[0], pre.shape[1:])
    _check_trace("o1 (postsynaptic)", starts[1], post.shape[1:])
    compute = torch.promote_types(synapse.weight.dtype, torch.float32)
    return pre.to(compute), post.to(compute)


def _check_binary(pre: Tensor, post: Tensor) -> None:
    for name, s in (("pre", pre), ("post", post)):
        if not ((s == 0) | (s == 1)).all():
            raise ConfigurationError(
                f"triplet STDP: nearest-spike interaction needs 0/1 spikes; the {name} "
                "spikes hold other values"
            )


@torch.no_grad()
def triplet_stdp_update(
    synapse: nn.Linear | nn.Conv1d | nn.Conv2d,
    pre: Tensor,
    post: Tensor,
    tau_plus: float,
    tau_minus: float,
    tau_x: float | None,
    tau_y: float | None,
    a2_plus: float,
    a3_plus: float,
    a2_minus: float,
    a3_minus: float,
    interaction: str = "all_to_all",
    f_pre: Callable[[Tensor], Tensor] | None = None,
    f_post: Callable[[Tensor], Tensor] | None = None,
    traces: tuple[Tensor | None, ...] = (None, None, None, None),
) -> tuple[Tensor, tuple[Tensor, Tensor | None, Tensor, Tensor | None]]:
    """The triplet STDP weight change of ``synapse`` for one sequence (module docstring).

    Args:
        synapse: the layer whose weight learns (``nn.Linear``, ``nn.Conv1d``,
            ``nn.Conv2d`` with any stride, padding, dilation and groups).
        pre: its input spikes ``[T, B, ...]``; post: the spikes of the neurons it
            drives (the layer's output shape per step), as for
            :func:`~spikeflow.learn.stdp_update`.
        tau_plus, tau_minus: the time constants (steps, >= 1) of ``r1`` and ``o1``.
        tau_x, tau_y: those of ``r2`` and ``o2``; None where ``a3_minus`` /
            ``a3_plus`` is 0 (the trace is then not kept).
        a2_plus, a3_plus, a2_minus, a3_minus: the pair and triplet amplitudes.
        interaction: ``"all_to_all"`` (every earlier spike counts) or ``"nearest"``
            (a spike resets the trace to 1; spikes must be 0 or 1).
        f_pre, f_post: optional weight dependence multiplying depression and
            potentiation (None: additive, as in the paper).
        traces: ``(r1, r2, o1, o2)`` at the step before ``pre[0]`` (None: zero).

    Returns:
        ``(Δw, (r1, r2, o1, o2))``: the change (the weight's shape and dtype, not
        applied) and the traces after the last step (None for an unused one). Sums run
        in float32 or wider, outside autocast.

    Raises:
        ShapeError: spikes that do not fit the layer or each other, traces of another
            shape or a wrong number of traces.
        ConfigurationError: a time constant below 1, a triplet amplitude without its
            time constant, an unknown interaction, non-binary spikes for ``"nearest"``.
    """
    amplitudes = dict(a2_plus=a2_plus, a3_plus=a3_plus, a2_minus=a2_minus, a3_minus=a3_minus)
    tau_x, tau_y, amps = _check_params(tau_x, tau_y, amplitudes, interaction)
    if not isinstance(traces, tuple) or len(traces) != 4:
        raise ShapeError("triplet STDP: traces must be a tuple (r1, r2, o1, o2)")
    r1_0, r2_0, o1_0, o2_0 = traces
    nearest = interaction == "nearest"
    weight = synapse.weight.detach()
    with torch.autocast(weight.device.type, enabled=False):
        pre, post = _checked_spikes(synapse, pre, post, (r1_0, o1_0))
        tau_plus = check_real("triplet STDP: tau_plus", tau_plus, 1.0)
        tau_minus = check_real("triplet STDP: tau_minus", tau_minus, 1.0)
        for name, start, like in (("r2", r2_0, pre), ("o2", o2_0, post)):
            if start is not None and start.shape != like.shape[1:]:
                raise ShapeError(
                    f"triplet STDP: the carried {name} trace has shape {tuple(start.shape)}, "
                    f"one step of the spikes {tuple(like.shape[1:])} (reset the learner when "
                    "the batch size changes)"
                )
        if nearest:
            _check_binary(pre, post)
        r1 = _trace(pre, tau_plus, r1_0, nearest)
        o1 = _trace(post, tau_minus, o1_0, nearest)
        r2 = None if tau_x is None else _trace(pre, tau_x, r2_0, nearest)
        o2 = None if tau_y is None else _trace(post, tau_y, o2_0, nearest)
        # the pair amplitude plus the triplet term of the trace just before the spike
        gain_post = amps["a2_plus"]
        if o2 is not None:
            gain_post = gain_post + amps["a3_plus"] * _before(o2, tau_y, o2_0)
        gain_pre = amps["a2_minus"]
        if r2 is not None:
            gain_pre = gain_pre + amps["a3_minus"] * _before(r2, tau_x, r2_0)
        potentiation = _pair_sums(synapse, r1, post * gain_post)
        depression = _pair_sums(synapse, pre * gain_pre, o1)
        w = weight.to(pre.dtype)
        if f_post is not None:
            potentiation = f_post(w) * potentiation
        if f_pre is not None:
            depression = f_pre(w) * depression
        delta = potentiation - depression
    last = (r1[-1], None if r2 is None else r2[-1], o1[-1], None if o2 is None else o2[-1])
    return delta.to(weight.dtype), last


class TripletSTDPLearner(STDPLearner):
    """Learns one synapse layer by triplet STDP (:func:`triplet_stdp_update`) from the
    spikes of a running network: :class:`~spikeflow.learn.STDPLearner`'s hooks,
    records, streaming, pause, folds and process averaging, with the triplet rule.

    ``TripletSTDPLearner.from_preset(synapse, neuron, "visual_cortex_all_to_all_minimal",
    dt=1.0)`` takes one of :data:`TRIPLET_PRESETS` (time constants in steps of ``dt``
    ms). :meth:`step` takes no reward. :attr:`trace_pre` / :attr:`trace_post` are
    ``r1`` / ``o1``; :attr:`triplet_traces` all four.

    Args:
        synapse, neuron: as for :class:`~spikeflow.learn.STDPLearner`.
        tau_plus, tau_minus, tau_x, tau_y, a2_plus, a3_plus, a2_minus, a3_minus,
            interaction, f_pre, f_post: the rule's (:func:`triplet_stdp_update`).
        average_processes, process_group: as for :class:`~spikeflow.learn.STDPLearner`.
    """

    _no_traces = (None, None, None, None)

    def __init__(
        self,
        synapse: nn.Module,
        neuron: nn.Module,
        tau_plus: float,
        tau_minus: float,
        tau_x: float | None,
        tau_y: float | None,
        a2_plus: float,
        a3_plus: float,
        a2_minus: float,
        a3_minus: float,
        interaction: str = "all_to_all",
        f_pre: Callable[[Tensor], Tensor] | None = None,
        f_post: Callable[[Tensor], Tensor] | None = None,
        average_processes: bool = True,
        process_group: Any = None,
    ) -> None:
        for name, f in (("f_pre", f_pre), ("f_post", f_post)):
            if f is not None and not callable(f):
                raise ConfigurationError(f"TripletSTDPLearner: {name} must be callable, got {f!r}")
        for name, tau in (("tau_plus", tau_plus), ("tau_minus", tau_minus)):
            check_real(f"TripletSTDPLearner: {name}", tau, 1.0)
        self.tau_x, self.tau_y, amps = _check_params(tau_x, tau_y, dict(
            a2_plus=a2_plus, a3_plus=a3_plus, a2_minus=a2_minus, a3_minus=a3_minus),
            interaction)  # fmt: skip
        self.a2_plus, self.a3_plus = amps["a2_plus"], amps["a3_plus"]
        self.a2_minus, self.a3_minus = amps["a2_minus"], amps["a3_minus"]
        self.interaction = interaction
        super().__init__(
            synapse, neuron, tau_plus, tau_minus,
            average_processes=average_processes, process_group=process_group,
        )  # fmt: skip
        self.f_pre, self.f_post = f_pre, f_post  # type: ignore[assignment]

    @classmethod
    def from_preset(
        cls, synapse: nn.Module, neuron: nn.Module, name: str, dt: float = 1.0, **kwargs: Any
    ) -> TripletSTDPLearner:
        """A learner with the parameters of ``TRIPLET_PRESETS[name]``, steps of ``dt`` ms;
        ``kwargs``: the learner's other arguments (``f_pre``, ``f_post``,
        ``average_processes``, ``process_group``).

        Raises:
            ConfigurationError: an unknown preset, or a ``kwargs`` entry the preset sets.
        """
        params = triplet_preset(name, dt)
        overlap = sorted(set(kwargs) & set(params))
        if overlap:
            raise ConfigurationError(
                f"TripletSTDPLearner.from_preset: {', '.join(overlap)} set by the preset "
                f"{name!r} (a fitted set is one package); to change them, pass "
                "TripletSTDPLearner(synapse, neuron, **{**triplet_preset(name, dt), ...})"
            )
        return cls(synapse, neuron, **params, **kwargs)

    @property
    def tau_plus(self) -> float:
        return self.tau_pre

    @property
    def tau_minus(self) -> float:
        return self.tau_post

    def _rule(
        self,
        pre: Tensor,
        post: Tensor,
        reward: Any,
        traces: tuple[Tensor | None, ...],
        eligibility: Tensor | None,
    ) -> tuple[Tensor, tuple[Tensor | None, ...], Tensor | None]:
        if reward is not None:
            raise ConfigurationError("TripletSTDPLearner.step: the triplet rule takes no reward")
        change, traces = triplet_stdp_update(
            self.synapse, pre, post, self.tau_pre, self.tau_post, self.tau_x, self.tau_y,
            self.a2_plus, self.a3_plus, self.a2_minus, self.a3_minus, self.interaction,
            self.f_pre, self.f_post, traces,
        )  # fmt: skip
        return change, traces, None

    @property
    def trace_post(self) -> Tensor | None:
        """The postsynaptic trace ``o1`` after the last step that :meth:`step` learned
        from (``[B, *output step]``; None before it and after :meth:`reset`)."""
        return self._traces[2]

    @property
    def triplet_traces(self) -> tuple[Tensor | None, ...]:
        """``(r1, r2, o1, o2)`` after the last step that :meth:`step` learned from
        (None before it, after :meth:`reset`, and for an unused second trace)."""
        return self._traces

    def __repr__(self) -> str:
        return (f"TripletSTDPLearner({type(self.synapse).__name__}, {self.interaction}, "
                f"tau_plus={self.tau_pre:g}, tau_minus={self.tau_post:g})")  # fmt: skip
