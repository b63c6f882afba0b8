"""Monitors: forward hooks that record what the spiking layers of a network do.

:class:`SpikeMonitor` hooks every spiking layer (spikeflow's neurons and parallel
neurons) and accumulates, per layer, the number of spikes, the number of neuron-steps
(so the firing rate is ``spikes / neuron-steps``) and, with ``membrane=True``, the sum
and sum of squares of the membrane potential after reset of every step (for neurons
that can record it, :class:`~spikeflow.neurons.BaseNode`). It keeps running sums as
detached 0-dim tensors, never the layers' outputs, so its memory does not grow with the
number of batches and it holds no reference to any activation or autograd graph.

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
from spikeflow.memory.recompute import is_recomputing
from spikeflow.neurons import PSN, BaseNode, MaskedPSN, NoResetLIFNode, SlidingPSN

__all__ = [
    "SPIKING_LAYER_TYPES",
    "LayerStats",
    "SpikeMonitor",
    "record_spikes",
    "select_layers",
    "spiking_layers",
]

#: The module types a monitor hooks by default.
SPIKING_LAYER_TYPES: tuple[type[nn.Module], ...] = (
    BaseNode, PSN, MaskedPSN, SlidingPSN, NoResetLIFNode, EventDrivenLayer,
)  # fmt: skip


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
    #: total spikes.
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


class _Accumulator:
    """Running sums of one layer (0-dim float64 tensors, created on first use)."""

    __slots__ = ("elements", "neurons", "samples", "spikes", "v_count", "v_sum", "v_sumsq")

    def __init__(self) -> None:
        self.spikes: Tensor | float = 0.0
        self.v_sum: Tensor | float = 0.0
        self.v_sumsq: Tensor | float = 0.0
        self.elements = 0
        self.samples = 0
        self.neurons = 0
        self.v_count = 0


class _MembraneClaim:
    """The monitors that turned one layer's ``store_v_seq`` on, the layer's own setting
    before the first of them, and the hook that drops ``v_seq`` after them all."""

    __slots__ = ("drop_handle", "monitors", "own_setting")

    def __init__(self, own_setting: bool) -> None:
        self.own_setting = own_setting
        self.monitors = 0
        self.drop_handle: Any = None


#: Layers whose ``store_v_seq`` some monitor holds on (shared by every monitor).
_CLAIMS: weakref.WeakKeyDictionary[nn.Module, _MembraneClaim] = weakref.WeakKeyDictionary()


def _drop_v_seq(module: nn.Module, inputs: Any, output: Any) -> None:
    """Forward hook after every monitor's: drop the membrane only monitors asked for."""
    claim = _CLAIMS.get(module)
    if claim is None or not claim.own_setting:  # None: a copy of a monitored layer
        module.v_seq = None  # type: ignore[assignment]


def _claim_membrane(module: BaseNode) -> None:
    """Turn ``store_v_seq`` on for one more monitor (whose hook is already registered)."""
    claim = _CLAIMS.get(module)
    if claim is None:
        claim = _CLAIMS[module] = _MembraneClaim(module.store_v_seq)
    else:
        claim.drop_handle.remove()
    claim.monitors += 1
    # Registered again, so it runs after the hooks of every monitor on the layer.
    claim.drop_handle = module.register_forward_hook(_drop_v_seq)
    module.store_v_seq = True


def _release_membrane(module: BaseNode) -> None:
    """One monitor less; the last one restores the layer's own ``store_v_seq``."""
    claim = _CLAIMS.get(module)
    if claim is None:
        return
    claim.monitors -= 1
    if claim.monitors > 0:
        return
    claim.drop_handle.remove()
    del _CLAIMS[module]
    module.store_v_seq = claim.own_setting
    if not claim.own_setting:
        module.v_seq = None


class SpikeMonitor:
    """Records firing rates, spike counts and membrane statistics of spiking layers.

    Args:
        model: the network (hooks go on its spiking submodules; for a DDP-wrapped model,
            pass the wrapped module or the wrapper, both work).
        layers: names of the layers to watch (default: every spiking layer, see
            :data:`SPIKING_LAYER_TYPES`).
        membrane: also record the membrane statistics; this turns on ``store_v_seq`` of
            the watched :class:`~spikeflow.neurons.BaseNode` layers while attached (each
            forward then also records the membrane, which the hooks read and drop, unless
            the layer's ``store_v_seq`` was already on: then ``v_seq`` stays for the
            model to use).

    The monitor is attached on construction; :meth:`remove` (or leaving a ``with``
    block) detaches the hooks and, once no other monitor needs it, restores
    ``store_v_seq``. Several monitors may watch one model. ``enabled = False`` pauses
    recording without removing the hooks.
    """

    def __init__(
        self, model: nn.Module, layers: Iterable[str] | None = None, membrane: bool = False
    ) -> None:
        found = select_layers(model, layers)
        self.layers: dict[str, nn.Module] = found
        self.membrane = bool(membrane)
        self.enabled = True
        self._acc = {name: _Accumulator() for name in found}
        self._handles: list[Any] = []
        self._claimed: list[BaseNode] = []
        # Layers whose current sequence's samples are not counted yet (set by the
        # pre-hook at a sequence's first call; kept through calls made while paused).
        self._uncounted: dict[str, bool] = {}
        for name, module in found.items():
            self._handles.append(module.register_forward_pre_hook(self._make_pre_hook(name)))
            self._handles.append(module.register_forward_hook(self._make_hook(name)))
            if self.membrane and isinstance(module, BaseNode):
                _claim_membrane(module)
                self._claimed.append(module)

    # -- recording ----------------------------------------------------------------------

    def _make_pre_hook(self, name: str) -> Any:
        def pre_hook(module: nn.Module, inputs: Any) -> None:
            if is_recomputing():  # the backward pass running the forward again
                return
            # A call continues a sequence when the module carries state into it.
            carried = isinstance(module, MemoryModule) and module.streaming
            if not (carried and module.state is not None):
                self._uncounted[name] = True  # until a recorded call counts its samples

        return pre_hook

    def _make_hook(self, name: str) -> Any:
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            if not self.enabled or not isinstance(output, Tensor) or is_recomputing():
                return
            acc = self._acc[name]
            spikes = output.detach()
            multi = getattr(module, "step_mode", "m") == "m" and spikes.dim() >= 2
            batch = spikes.shape[1] if multi else spikes.shape[0]
            acc.spikes = acc.spikes + spikes.sum(dtype=torch.float64)
            acc.elements += spikes.numel()
            if self._uncounted.pop(name, False) or not acc.samples:
                acc.samples += batch  # once per sequence, not per step or chunk
            # (from the shape: an empty batch has no element to index)
            acc.neurons = math.prod(spikes.shape[2:] if multi else spikes.shape[1:])
            if self.membrane and isinstance(module, BaseNode) and module.v_seq is not None:
                # Read only: _drop_v_seq drops it after every monitor has read it.
                v = module.v_seq.detach()
                acc.v_sum = acc.v_sum + v.sum(dtype=torch.float64)
                acc.v_sumsq = acc.v_sumsq + v.double().square().sum()
                acc.v_count += v.numel()

        return hook

    # -- results ------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget everything recorded so far (the hooks stay)."""
        self._acc = {name: _Accumulator() for name in self.layers}

    def summary(self) -> list[LayerStats]:
        """One :class:`LayerStats` per watched layer, in module order."""
        out = []
        for name, acc in self._acc.items():
            spikes = float(acc.spikes)
            rate = spikes / acc.elements if acc.elements else math.nan
            if acc.v_count:
                mean = float(acc.v_sum) / acc.v_count
                var = max(float(acc.v_sumsq) / acc.v_count - mean * mean, 0.0)
                v_mean, v_std = mean, math.sqrt(var)
            else:
                v_mean = v_std = math.nan
            per_sample = spikes / acc.samples if acc.samples else math.nan
            out.append(LayerStats(name, rate, spikes, per_sample, acc.neurons, v_mean, v_std))
        return out

    def mean_firing_rate(self) -> float:
        """Spikes of all watched layers / their neuron-steps (NaN before any forward)."""
        elements = sum(acc.elements for acc in self._acc.values())
        if not elements:
            return math.nan
        return float(sum(float(acc.spikes) for acc in self._acc.values())) / elements

    def state_dict(self) -> dict[str, dict[str, float | int]]:
        """The running sums as plain numbers (to resume an epoch exactly)."""
        return {
            name: {
                "spikes": float(acc.spikes), "v_sum": float(acc.v_sum),
                "v_sumsq": float(acc.v_sumsq), "elements": acc.elements,
                "samples": acc.samples, "neurons": acc.neurons, "v_count": acc.v_count,
            }
            for name, acc in self._acc.items()
        }  # fmt: skip

    def load_state_dict(self, state: dict[str, dict[str, float | int]]) -> None:
        """Restore :meth:`state_dict`."""
        self.reset()
        for name, values in state.items():
            if name in self._acc:
                acc = self._acc[name]
                for key, value in values.items():
                    setattr(acc, key, value)

    # -- lifetime -----------------------------------------------------------------------

    def remove(self) -> None:
        """Remove the hooks and, where no other monitor still needs it, restore the
        layers' ``store_v_seq`` (calling it again does nothing)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for module in self._claimed:
            _release_membrane(module)
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
    steps stacked. The hooks are :func:`spikeflow.plot.record`'s."""
    from spikeflow.plot.recording import record  # (that module imports this one)

    recorded = record(model, x[:, :1], membrane=False)
    return {
        name: r.spikes[:, 0].reshape(r.spikes.shape[0], -1)[:, :max_neurons].float()
        for name, r in recorded.items()
    }
