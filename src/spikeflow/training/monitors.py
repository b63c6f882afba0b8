"""Monitors: forward hooks that record what the spiking layers of a network do.

:class:`SpikeMonitor` hooks every spiking layer (spikeflow's neurons and parallel
neurons, and the :class:`~spikeflow.neurons.SpikeTap` through which a network that
computes its spikes itself passes them) and accumulates, per layer, the number of
spikes (the sum of the outputs' magnitudes: a ternary neuron's ``-1`` is a spike), the
number of neuron-steps (so the firing rate is ``spikes / neuron-steps``) and, with
``membrane=True``, the sum and sum of squares of the membrane potential after reset of
every step (for neurons that can record it, :data:`MEMBRANE_LAYER_TYPES`:
:class:`~spikeflow.neurons.BaseNode` and :class:`~spikeflow.neurons.LoopNode`). It keeps
running sums as detached 0-dim tensors, never the layers' outputs, so its memory does
not grow with the number of batches and it holds no reference to any activation or
autograd graph.

A layer's spikes are its output, except for a neuron with an analog output
(``output_is_spikes`` False: :class:`~spikeflow.neurons.LIAFNode`, whose output is
``act(H)``): its spikes are its spike decision ``S = Θ(H − θ)``, which it records in
``spike_seq`` while a monitor holds its ``store_spike_seq`` on (:func:`spike_source`).
An analog-output layer that records no spikes is not watched.

Example::

    with SpikeMonitor(net) as monitor:
        for x, y in loader:
            net(x)
        for stats in monitor.summary():
            print(stats.name, stats.firing_rate)
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from spikeflow.base import MemoryModule
from spikeflow.errors import ConfigurationError
from spikeflow.event_driven.layers import EventDrivenLayer
from spikeflow.memory.recompute import reruns_forward
from spikeflow.neurons import (
    PSN,
    BaseNode,
    DSRIFNode,
    LoopNode,
    MaskedPSN,
    NoResetLIFNode,
    SlidingPSN,
    SpikeTap,
)
from spikeflow.training.monitor_sums import (
    Float64Scratch,
    magnitude_sum_c,
    spike_magnitude_sum,
)

__all__ = [
    "MEMBRANE_LAYER_TYPES",
    "SPIKING_LAYER_TYPES",
    "LayerStats",
    "SpikeMonitor",
    "output_spikes",
    "record_spikes",
    "select_layers",
    "spike_layers",
    "spike_source",
    "spiking_layers",
]

#: The module types a monitor hooks by default (:class:`~spikeflow.neurons.SpikeTap`: the
#: spikes a network computes in its own loop, e.g. EPropRSNN's LIF/ALIF neurons; the DSR
#: neurons, whose spikes are worth θ: :func:`output_spikes`).
SPIKING_LAYER_TYPES: tuple[type[nn.Module], ...] = (
    BaseNode, LoopNode, PSN, MaskedPSN, SlidingPSN, NoResetLIFNode, EventDrivenLayer, SpikeTap,
    DSRIFNode,
)  # fmt: skip

#: The spiking layers that record their membrane after reset in ``v_seq`` while
#: ``store_v_seq`` is on (the declared neurons and those stepped by a loop).
MEMBRANE_LAYER_TYPES: tuple[type[nn.Module], ...] = (BaseNode, LoopNode)


def spiking_layers(
    model: nn.Module, types: tuple[type[nn.Module], ...] = SPIKING_LAYER_TYPES
) -> dict[str, nn.Module]:
    """The named submodules of ``model`` that are spiking layers, in module order."""
    return {name or "(root)": m for name, m in model.named_modules() if isinstance(m, types)}


def select_layers(model: nn.Module, layers: Iterable[str] | str | None) -> dict[str, nn.Module]:
    """The spiking layers named ``layers`` (a name or names; default every spiking layer),
    in the order given, or a ConfigurationError naming the missing ones and the choices."""
    found = spiking_layers(model)
    if layers is None:
        return found
    wanted = [layers] if isinstance(layers, str) else list(layers)
    missing = [name for name in wanted if name not in found]
    if missing:
        raise ConfigurationError(f"no spiking layer named {missing}; the model has {list(found)}")
    return {name: found[name] for name in wanted}


@dataclass(frozen=True)
class LayerStats:
    """What one spiking layer did since the last reset of the monitor."""

    name: str
    #: spikes / neuron-steps.
    firing_rate: float
    #: total spikes: the sum of the outputs' magnitudes (a ternary neuron's -1 is one
    #: spike; an I-LIF count of 3 is three).
    spikes: float
    #: total spikes / samples seen (per sample and whole sequence). A streamed sequence
    #: (single-step calls, or multi-step chunks) counts its samples once, at its first
    #: call, or at the first call after the monitor was created or reset.
    spikes_per_sample: float
    #: neurons of the layer (per sample and step).
    neurons: int
    #: mean and standard deviation of the membrane after reset (NaN if not recorded).
    v_mean: float
    v_std: float


def sum_dtype(device: torch.device) -> torch.dtype:
    """The dtype of the monitors' running sums on ``device``: float64, except on Apple's
    MPS, which has no float64 (float32 there: spike counts stay exact to 2^24 per sum)."""
    return torch.float32 if torch.device(device).type == "mps" else torch.float64


class _Accumulator:
    """Running sums of one layer: 0-dim tensors (float64 sums, :func:`sum_dtype`; int64
    counts) on the device given, from the start, so that a hook traced by
    ``torch.compile`` adds to them in the graph: a Python number read in a hook would be
    a constant that Dynamo guards on, recompiling the model at every step (and a number
    that becomes a tensor at the first call, once)."""

    __slots__ = ("elements", "neurons", "samples", "spikes", "v_count", "v_sum", "v_sumsq")

    def __init__(self, device: torch.device) -> None:
        sums = {"dtype": sum_dtype(device), "device": device}
        counts = {"dtype": torch.int64, "device": device}
        self.spikes = torch.zeros((), **sums)
        self.v_sum = torch.zeros((), **sums)
        self.v_sumsq = torch.zeros((), **sums)
        self.elements = torch.zeros((), **counts)
        self.samples = torch.zeros((), **counts)
        self.v_count = torch.zeros((), **counts)
        self.neurons = 0  # (written by the hooks, never read there)

    def move_to(self, device: torch.device) -> None:
        """Move the sums and counts to ``device`` (a model moved after its monitor)."""
        for key in self.__slots__:
            value = getattr(self, key)
            if isinstance(value, Tensor):
                dtype = sum_dtype(device) if value.is_floating_point() else value.dtype
                setattr(self, key, value.to(device, dtype))

    def load(self, values: dict[str, float | int]) -> None:
        """Set the sums and counts given (plain numbers, as :meth:`SpikeMonitor.state_dict`
        gives them), each in its tensor's dtype and device."""
        for key, value in values.items():
            if key == "neurons":
                self.neurons = int(value)
            else:
                old = getattr(self, key)
                setattr(self, key, torch.tensor(value, dtype=old.dtype, device=old.device))


def _model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter or buffer (the CPU without any)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


#: What a monitor may turn on for a layer: the attribute a forward records, by the
#: layer's flag that turns it on.
_RECORD_FLAGS = {"v_seq": "store_v_seq", "spike_seq": "store_spike_seq"}


class _RecordClaim:
    """The monitors that turned one layer's flag (``store_v_seq``, ``store_spike_seq``)
    on, the layer's own setting before the first of them, and the hook that drops the
    record after them all."""

    __slots__ = ("drop_handle", "monitors", "own_setting")

    def __init__(self, own_setting: bool) -> None:
        self.own_setting = own_setting
        self.monitors = 0
        self.drop_handle: Any = None


#: Per recorded attribute, the layers whose flag some monitor holds on (shared by every
#: monitor).
_CLAIMS: dict[str, weakref.WeakKeyDictionary[nn.Module, _RecordClaim]] = {
    attribute: weakref.WeakKeyDictionary() for attribute in _RECORD_FLAGS
}


def _dropper(attribute: str) -> Any:
    def drop(module: nn.Module, inputs: Any, output: Any) -> None:
        """Forward hook after every monitor's: drop the record only monitors asked for."""
        claim = _CLAIMS[attribute].get(module)
        if claim is None or not claim.own_setting:  # None: a copy of a monitored layer
            setattr(module, attribute, None)

    return drop


def _claim_record(module: nn.Module, attribute: str) -> None:
    """Turn the flag that records ``attribute`` (``"v_seq"``, ``"spike_seq"``) on for one
    more monitor (whose hook is already registered)."""
    claims, flag = _CLAIMS[attribute], _RECORD_FLAGS[attribute]
    claim = claims.get(module)
    if claim is None:
        claim = claims[module] = _RecordClaim(getattr(module, flag))
    else:
        claim.drop_handle.remove()
    claim.monitors += 1
    # Registered again, so it runs after the hooks of every monitor on the layer.
    claim.drop_handle = module.register_forward_hook(_dropper(attribute))
    setattr(module, flag, True)


def _release_record(module: nn.Module, attribute: str) -> None:
    """One monitor less; the last one restores the layer's own setting of the flag."""
    claims = _CLAIMS[attribute]
    claim = claims.get(module)
    if claim is None:
        return
    claim.monitors -= 1
    if claim.monitors > 0:
        return
    claim.drop_handle.remove()
    del claims[module]
    setattr(module, _RECORD_FLAGS[attribute], claim.own_setting)
    if not claim.own_setting:
        setattr(module, attribute, None)


def _claim_membrane(module: BaseNode) -> None:
    """Turn ``store_v_seq`` on for one more monitor (:func:`_claim_record`)."""
    _claim_record(module, "v_seq")


def _release_membrane(module: BaseNode) -> None:
    """One monitor less on ``store_v_seq`` (:func:`_release_record`)."""
    _release_record(module, "v_seq")


def spike_source(module: nn.Module) -> str:
    """Where the spikes of a spiking layer are: ``"output"`` (it returns them; every
    layer whose ``output_is_spikes`` is not False), ``"spike_seq"`` (an analog output,
    :class:`~spikeflow.neurons.LIAFNode`'s, and the spike decision recorded in
    ``module.spike_seq`` while ``store_spike_seq`` is on), or ``"none"`` (an analog
    output and no record of spikes: nothing to count)."""
    if getattr(module, "output_is_spikes", True):
        return "output"
    return "spike_seq" if hasattr(module, "store_spike_seq") else "none"


def output_spikes(module: nn.Module, output: Tensor) -> Tensor:
    """The spikes in ``output``, the output of the spiking layer ``module`` (one whose
    :func:`spike_source` is ``"output"``): the output itself, or, for a layer whose
    spikes are worth another value (the DSR neurons': θ, θ/Δt), its ``count_spikes``
    of it, 0 or 1 per entry (gradient included)."""
    count = getattr(module, "count_spikes", None)
    return count(output) if callable(count) else output


def spike_layers(
    model: nn.Module, layers: Iterable[str] | str | None, owner: str
) -> dict[str, nn.Module]:
    """:func:`select_layers`, keeping the layers that have spikes to count
    (:func:`spike_source` not ``"none"``): by default the others are left out; one named
    in ``layers`` is an error.

    Raises:
        ConfigurationError: as :func:`select_layers`, or a named layer with an analog
            output and no record of its spikes.
    """
    found = select_layers(model, layers)
    silent = [name for name, m in found.items() if spike_source(m) == "none"]
    if silent and layers is not None:
        raise ConfigurationError(
            f"{owner}: the layers {silent} output analog values (output_is_spikes is False) "
            "and record no spikes (no store_spike_seq): there are no spikes to count"
        )
    return {name: m for name, m in found.items() if name not in silent}


class SpikeMonitor:
    """Records firing rates, spike counts and membrane statistics of spiking layers.

    Args:
        model: the network (hooks go on its spiking submodules; for a DDP-wrapped model,
            pass the wrapped module or the wrapper, both work).
        layers: names of the layers to watch (default: every spiking layer, see
            :data:`SPIKING_LAYER_TYPES`, that has spikes to count).
        membrane: also record the membrane statistics; this turns on ``store_v_seq`` of
            the watched :data:`MEMBRANE_LAYER_TYPES` layers while attached (each
            forward then also records the membrane, which the hooks read and drop, unless
            the layer's ``store_v_seq`` was already on: then ``v_seq`` stays for the
            model to use).

    The spikes of a neuron with an analog output (LIAF) are its spike decision, not its
    output (the module docstring): the monitor turns its ``store_spike_seq`` on while
    attached, reads ``spike_seq`` and drops it (unless the layer kept it itself). A
    layer with an analog output and no record of spikes is left out by default (and is
    an error when named in ``layers``).

    The monitor is attached on construction; :meth:`remove` (or leaving a ``with``
    block) detaches the hooks and, once no other monitor needs them, restores
    ``store_v_seq`` and ``store_spike_seq``. Several monitors may watch one model.
    ``enabled = False`` pauses recording without removing the hooks.

    Raises:
        ConfigurationError: a name in ``layers`` that is not a spiking layer, or one
            with an analog output and no record of its spikes.
    """

    def __init__(
        self, model: nn.Module, layers: Iterable[str] | None = None, membrane: bool = False
    ) -> None:
        found = spike_layers(model, layers, type(self).__name__)
        self.layers: dict[str, nn.Module] = found
        self.membrane = bool(membrane)
        self.enabled = True
        self._device = _model_device(model)
        self._acc = {name: _Accumulator(self._device) for name in found}
        self._handles: list[Any] = []
        self._claimed: list[tuple[nn.Module, str]] = []
        # Layers whose current sequence's samples are not counted yet (set by the
        # pre-hook at a sequence's first call; kept through calls made while paused).
        self._uncounted: dict[str, bool] = {}
        # The float64 buffer the membrane's sums convert into (membrane=True).
        self._scratch = Float64Scratch()
        for name, module in found.items():
            self._handles.append(module.register_forward_pre_hook(self._make_pre_hook(name)))
            self._handles.append(module.register_forward_hook(self._make_hook(name)))
            if spike_source(module) == "spike_seq":
                _claim_record(module, "spike_seq")
                self._claimed.append((module, "spike_seq"))
            if self.membrane and isinstance(module, MEMBRANE_LAYER_TYPES):
                _claim_record(module, "v_seq")
                self._claimed.append((module, "v_seq"))

    # -- recording ----------------------------------------------------------------------

    def _make_pre_hook(self, name: str) -> Any:
        def pre_hook(module: nn.Module, inputs: Any) -> None:
            if reruns_forward():  # the backward pass running the forward again
                return
            # A call continues a sequence when the module carries state into it (or a
            # SpikeTap passes a later step of its owner's sequence).
            if not (isinstance(module, (MemoryModule, SpikeTap)) and module.continues_sequence()):
                self._uncounted[name] = True  # until a recorded call counts its samples

        return pre_hook

    def _make_hook(self, name: str) -> Any:
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            if not self.enabled or not isinstance(output, Tensor) or reruns_forward():
                return
            acc = self._acc[name]
            if spike_source(module) == "spike_seq":  # [T, B, ...] ([1, B, ...]: one step)
                recorded = module.spike_seq
                if recorded is None:
                    return
                spikes = recorded.detach()
                if getattr(module, "step_mode", "m") != "m":
                    spikes = spikes[0]
            else:
                spikes = output_spikes(module, output.detach())
            if acc.spikes.device != spikes.device:  # the model moved after the monitor
                acc.move_to(spikes.device)
                self._device = spikes.device
            multi = getattr(module, "step_mode", "m") == "m" and spikes.dim() >= 2
            batch = spikes.shape[1] if multi else spikes.shape[0]
            # Eager on the CPU: plain numbers where they are exact, added to the sums
            # (the same float64 additions); traced or on another device: all in tensors.
            eager_cpu = spikes.device.type == "cpu" and not torch.compiler.is_compiling()
            # Magnitudes: a ternary neuron's -1 spikes are events too, not negative ones.
            exact = None
            if eager_cpu and spikes.dtype == torch.float32 and spikes.is_contiguous():
                exact = magnitude_sum_c(spikes) if acc.spikes.dtype == torch.float64 else None
            if exact is None:
                acc.spikes = acc.spikes + spike_magnitude_sum(spikes, acc.spikes.dtype)
            else:  # (binary, ternary, counts: one pass of the C loop, exact)
                acc.spikes = acc.spikes + exact
            acc.elements = acc.elements + spikes.numel()
            # Once per sequence, not per step or chunk: at its first call, or at the
            # first call recorded at all (a monitor attached or reset mid-sequence).
            if self._uncounted.pop(name, False):
                acc.samples = acc.samples + batch
            elif eager_cpu:
                if int(acc.samples) == 0:
                    acc.samples = acc.samples + batch
            else:  # (in the tensors: a test of a Python number would be a guard)
                acc.samples = torch.where(acc.samples == 0, acc.samples + batch, acc.samples)
            # (from the shape: an empty batch has no element to index)
            acc.neurons = math.prod(spikes.shape[2:] if multi else spikes.shape[1:])
            if (
                self.membrane
                and isinstance(module, MEMBRANE_LAYER_TYPES)
                and module.v_seq is not None
            ):
                # Read only: the claim's hook drops it after every monitor has read it.
                v = module.v_seq.detach()
                if acc.v_sum.dtype == torch.float64:  # (the definitions, bit for bit)
                    v_sum, v_sumsq = self._scratch.sums(v)
                else:  # (float32 sums: MPS)
                    v_sum = v.sum(dtype=acc.v_sum.dtype)
                    v_sumsq = v.to(acc.v_sumsq.dtype).square().sum()
                acc.v_sum = acc.v_sum + v_sum
                acc.v_sumsq = acc.v_sumsq + v_sumsq
                acc.v_count = acc.v_count + v.numel()

        return hook

    # -- results ------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget everything recorded so far (the hooks stay)."""
        self._acc = {name: _Accumulator(self._device) for name in self.layers}

    def summary(self) -> list[LayerStats]:
        """One :class:`LayerStats` per watched layer, in module order."""
        out = []
        for name, acc in self._acc.items():
            spikes = float(acc.spikes)
            elements, samples, v_count = int(acc.elements), int(acc.samples), int(acc.v_count)
            rate = spikes / elements if elements else math.nan
            if v_count:
                mean = float(acc.v_sum) / v_count
                var = max(float(acc.v_sumsq) / v_count - mean * mean, 0.0)
                v_mean, v_std = mean, math.sqrt(var)
            else:
                v_mean = v_std = math.nan
            per_sample = spikes / samples if samples else math.nan
            out.append(LayerStats(name, rate, spikes, per_sample, acc.neurons, v_mean, v_std))
        return out

    def mean_firing_rate(self) -> float:
        """Spikes of all watched layers / their neuron-steps (NaN before any forward)."""
        elements = sum(int(acc.elements) for acc in self._acc.values())
        if not elements:
            return math.nan
        return float(sum(float(acc.spikes) for acc in self._acc.values())) / elements

    def state_dict(self) -> dict[str, dict[str, float | int]]:
        """The running sums as plain numbers (to resume an epoch exactly)."""
        return {
            name: {
                "spikes": float(acc.spikes), "v_sum": float(acc.v_sum),
                "v_sumsq": float(acc.v_sumsq), "elements": int(acc.elements),
                "samples": int(acc.samples), "neurons": acc.neurons,
                "v_count": int(acc.v_count),
            }
            for name, acc in self._acc.items()
        }  # fmt: skip

    def load_state_dict(self, state: dict[str, dict[str, float | int]]) -> None:
        """Restore :meth:`state_dict`."""
        self.reset()
        for name, values in state.items():
            if name in self._acc:
                self._acc[name].load(values)

    # -- lifetime -----------------------------------------------------------------------

    def remove(self) -> None:
        """Remove the hooks and, where no other monitor still needs them, restore the
        layers' ``store_v_seq`` and ``store_spike_seq`` (calling it again does nothing)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._scratch.release()
        for module, attribute in self._claimed:
            _release_record(module, attribute)
        self._claimed.clear()

    def __enter__(self) -> SpikeMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def record_spikes(model: nn.Module, x: Tensor, max_neurons: int = 256) -> dict[str, Tensor]:
    """The spikes of every spiking layer for the first sample of ``x`` (``[T, B, ...]``):
    ``{layer: [T, N]}`` float on the CPU, at most ``max_neurons`` neurons (the first
    ones) per layer. For a spike raster; the model runs in its current train/eval mode.
    A layer called once per step (single-step neurons inside a recurrent layer) gets its
    steps stacked; a neuron with an analog output (LIAF) gives its spike decision, and
    one that records no spikes is left out. The hooks are :func:`spikeflow.plot.record`'s."""
    from spikeflow.plot.recording import record  # (that module imports this one)

    recorded = record(model, x[:, :1], membrane=False)
    return {
        name: r.spikes[:, 0].reshape(r.spikes.shape[0], -1)[:, :max_neurons].float()
        for name, r in recorded.items()
    }
