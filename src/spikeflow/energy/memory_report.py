"""Lemaire et al.'s memory-access energy model run on a model: per layer, SNN and ANN.

:func:`memory_energy_report` runs the model once on a time-major input and measures,
per linear layer and convolution, what :mod:`spikeflow.energy.memory_model` needs: its
geometry for one step, the steps it ran, the input spikes it read (``θ_in``), the
steps it was fed real values, and the spikes of the neurons it feeds (``θ_out``, with
whether they leak). From these it prices the spiking network and the formal network
of the same architecture (each layer once per inference, dense; a module the model
calls twice per step, twice).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import torch
from torch import Tensor, nn

from spikeflow._checks import check_flag
from spikeflow.energy._pairs import is_counts, is_spikes, layer_weight
from spikeflow.energy._shared import hooked_forward
from spikeflow.energy.memory_model import (
    AccessCounts,
    EnergyComponents,
    LayerGeometry,
    Technology,
    ann_counts,
    snn_counts,
)
from spikeflow.energy.neuron_updates import counted_neuron, step_operations
from spikeflow.errors import ConfigurationError, ShapeError

__all__ = ["LayerMemoryEnergy", "MemoryEnergyReport", "memory_energy_report"]

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass
class LayerMemoryEnergy:
    """One layer's measured activity and its counts under Lemaire's model, per sample.

    Attributes:
        name, kind: the module's name in the model and its class name.
        geometry: the layer for one step of one sample.
        steps: the steps it ran (``T``; 1 for a layer run once per sample).
        real_steps: of those, the steps it was fed real values (dense work).
        input_spikes: ``θ_in``, the nonzero entries of its spike inputs.
        output_spikes: ``θ_out``, the spikes of the neurons it feeds (0 for none).
        neurons: the name of the spiking layer it feeds, or ``None``.
        leak: whether those neurons leak (a multiplication per neuron and step).
        snn, ann: the operations and accesses of the spiking layer and of the same
            layer in the formal network (``ann_passes`` times).
        ann_passes: the calls of the layer per inference in the formal network: its
            steps per input step, at least 1 (2 for a module the model calls twice per
            step; 1 for a layer run once per sample, after the steps).
    """

    name: str
    kind: str
    geometry: LayerGeometry
    steps: float
    real_steps: float
    input_spikes: float
    output_spikes: float
    neurons: str | None
    leak: bool
    snn: AccessCounts
    ann: AccessCounts
    ann_passes: float = 1.0

    @property
    def input_rate(self) -> float:
        """``θ_in`` per input entry and spike-fed step (the input's firing rate)."""
        spike_steps = self.steps - self.real_steps
        entries = spike_steps * self.geometry.inputs
        return self.input_spikes / entries if entries else 0.0


@dataclass
class MemoryEnergyReport:
    """Lemaire et al.'s energy per sample, per layer and in total, for the spiking
    network and the formal network of the same architecture.

    ``technology`` prices the counts unless a method is given another; ``not_counted``
    lists the modules with weights the model does not cover, and the spiking layers
    whose leak was assumed, with the reason.
    """

    layers: list[LayerMemoryEnergy]
    samples: int
    technology: Technology = field(default_factory=Technology)
    not_counted: list[str] = field(default_factory=list)

    def _tech(self, technology: Technology | None) -> Technology:
        return self.technology if technology is None else technology

    def snn_energy(self, technology: Technology | None = None) -> EnergyComponents:
        """The spiking network's joules per sample, by component."""
        tech = self._tech(technology)
        return sum((layer.snn.energy(tech) for layer in self.layers), EnergyComponents())

    def ann_energy(self, technology: Technology | None = None) -> EnergyComponents:
        """The formal network's joules per sample, by component."""
        tech = self._tech(technology)
        return sum((layer.ann.energy(tech) for layer in self.layers), EnergyComponents())

    def ratio(self, technology: Technology | None = None) -> float:
        """ANN energy over SNN energy (above 1: the spiking network spends less)."""
        snn = self.snn_energy(technology).total
        return self.ann_energy(technology).total / snn if snn else float("inf")

    def __str__(self) -> str:
        tech = self.technology
        width = max([len("layer"), *(len(layer.name) for layer in self.layers)])
        head = (f"{'layer':<{width}} {'input':>6} {'θ_in':>11} {'θ_out':>11} "
                f"{'ops nJ':>11} {'addr nJ':>11} {'memory nJ':>11} {'SNN nJ':>11} "
                f"{'ANN nJ':>11}")  # fmt: skip
        lines = ["Lemaire et al. (2022) energy per sample", head]
        for layer in self.layers:
            snn, ann = layer.snn.energy(tech), layer.ann.energy(tech)
            kind = "real" if layer.real_steps else "spikes"
            lines.append(
                f"{layer.name:<{width}} {kind:>6} {layer.input_spikes:>11,.1f} "
                f"{layer.output_spikes:>11,.1f} {snn.operations * 1e9:>11,.2f} "
                f"{snn.addressing * 1e9:>11,.2f} {snn.memory * 1e9:>11,.2f} "
                f"{snn.total * 1e9:>11,.2f} {ann.total * 1e9:>11,.2f}"
            )
        lines.append("")
        for label, total in (("SNN", self.snn_energy()), ("ANN", self.ann_energy())):
            nj = {f.name: getattr(total, f.name) * 1e9 for f in fields(total)}
            lines.append(
                f"{label}: {total.total * 1e9:,.2f} nJ = operations {nj['operations']:,.2f} + "
                f"addressing {nj['addressing']:,.2f} + memory {total.memory * 1e9:,.2f} "
                f"(inputs {nj['inputs']:,.2f}, weights {nj['weights']:,.2f}, biases "
                f"{nj['biases']:,.2f}, potentials {nj['potentials']:,.2f}, outputs "
                f"{nj['outputs']:,.2f})"
            )
        lines.append(
            f"ANN / SNN: {self.ratio():.3g} (add {tech.e_add * 1e12:g} pJ, multiply "
            f"{tech.e_mul * 1e12:g} pJ, {tech.bits}-bit words)"
        )
        if self.not_counted:
            lines.append(f"not counted: {', '.join(self.not_counted)}")
        return "\n".join(lines)


@dataclass
class _Record:
    """A layer's activity summed over its calls (totals over the batch)."""

    name: str
    module: nn.Module
    geometry: LayerGeometry | None = None
    steps: float = 0.0
    real_steps: float = 0.0
    input_spikes: float = 0.0
    output_spikes: float = 0.0
    neurons: str | None = None
    leak: bool = False
    neuron_count: int | None = None  # N' of neurons after a pooling (None: N)


def _geometry(module: nn.Module, x: Tensor, out: Tensor, positions: int) -> LayerGeometry:
    """The layer for one step of one sample (``positions``: a linear layer's ``P``)."""
    weight = layer_weight(module)
    bias = getattr(module, "bias", None) is not None
    if isinstance(module, nn.Linear):
        return LayerGeometry("linear", module.in_features, module.out_features,
                             in_size=positions, out_size=positions, weights=weight.numel(),
                             bias=bias)  # fmt: skip
    spatial = weight.dim() - 2
    return LayerGeometry(
        "conv", module.in_channels, module.out_channels, tuple(module.kernel_size),
        tuple(module.stride), in_size=int(torch.Size(x.shape[-spatial:]).numel()),
        out_size=int(torch.Size(out.shape[-spatial:]).numel()), groups=module.groups,
        weights=weight.numel(), bias=bias,
    )  # fmt: skip


def _steps(
    name: str, module: nn.Module, x: Tensor, samples: int, timesteps: int
) -> tuple[int, int]:
    """(steps of one sample this call ran, positions per step) of a layer's call."""
    # [T, B, ..., F]: multi-step; [T·B, L, F]: the steps folded into the batch
    steps_first = x.dim() >= 3 and x.shape[0] in (timesteps, timesteps * samples)
    if isinstance(module, nn.Linear):
        rows, per = x.numel() // module.in_features, samples
        if steps_first:
            per = timesteps * samples
    else:
        spatial = module.weight.dim() - 2
        rows, per = x.numel() // x.shape[-(spatial + 1) :].numel(), samples
    if rows % per:
        raise ShapeError(
            f"memory_energy_report: layer {name}'s input {tuple(x.shape)} does not split "
            f"into {samples} samples (of {timesteps} steps); pass samples"
        )
    if isinstance(module, nn.Linear):
        if steps_first:
            return timesteps, rows // per
        if x.dim() == 2:  # [B, F] one step, or [T·B, F] steps folded
            return rows // per, 1
        return 1, rows // per  # [B, L, F]: one step of L positions
    return rows // per, 1


def _repeated(counts: AccessCounts, times: float) -> AccessCounts:
    """``counts`` of ``times`` runs: every count multiplied, the memories' sizes (and
    the weights' bits) kept."""
    return replace(counts, **{
        f.name: getattr(counts, f.name) * times
        for f in fields(counts) if not f.name.endswith(("_words", "_bits"))
    })  # fmt: skip


def _leak(module: nn.Module, step: torch.Size, dtype: torch.dtype) -> bool | None:
    """Whether a spiking layer leaks (its declared charge multiplies) for steps of shape
    ``step``, ``None`` when it is not a declared neuron."""
    if counted_neuron(module) is not None:
        return None
    try:
        ops = step_operations(module, step, dtype)  # type: ignore[arg-type]
    except (ConfigurationError, AttributeError, TypeError, ValueError, IndexError):
        return None
    return ops.multiplications > 0


def memory_energy_report(
    model: nn.Module,
    x: Tensor,
    technology: Technology | None = None,
    samples: int | None = None,
    spike_counts: bool = False,
) -> MemoryEnergyReport:
    """Run ``model(x)`` once (no gradients) and price it with Lemaire et al.'s model.

    ``x`` is time-major ``[T, B, ...]``; ``samples`` defaults to ``B``. Counted:
    ``nn.Linear`` and ``nn.Conv1d/2d/3d`` (and subclasses), each call read as spikes
    when its nonzero entries share one magnitude (``θ_in`` is their count), otherwise
    as real values (dense work at that step); with ``spike_counts``, an input of whole
    numbers (event counts per pixel, sums of spike trains) is read as that many spikes
    (``θ_in`` sums their magnitudes), as :class:`~spikeflow.energy.OperationCounter`'s
    option. A layer's neurons are the spiking layer
    that next runs on an output of the same size before another counted layer runs
    (batch norm and dropout between are fine), else, when pooling changes the size
    between them, the spiking layer that next runs after the last counted layer: its
    ``N'`` neurons are priced with their own count (``neuron_count`` of
    :func:`~spikeflow.energy.snn_counts`, as SpikingJelly prices each neuron layer). A
    spiking layer that runs before any counted layer since the last spiking layer (on
    the model's input, after an attention product) is fed by none: it is not priced
    and is listed in ``not_counted``, as is a counted layer whose forward never ran
    (a model that computes with its weights, ``F.linear(x, self.fc.weight)``). Neurons
    leak when their declared charge has a multiplication (``LIFNode``,
    ``ParametricLIFNode``; not ``IFNode``); spiking layers that are not declared neurons
    are taken to leak and listed in ``not_counted``.
    The model's state is reset before and after; its train/eval mode is kept.

    Raises:
        ShapeError: ``x`` has fewer than 2 dims, a layer's input does not split into
            ``samples``, a layer ran on two geometries or fed neurons of two sizes.
        ConfigurationError: ``samples`` is not a positive integer.
    """
    from spikeflow.training.monitors import SPIKING_LAYER_TYPES  # (imports layers)

    if not isinstance(x, Tensor) or x.dim() < 2:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ShapeError(f"memory_energy_report: x must be time-major [T, B, ...], got {shape}")
    timesteps = x.shape[0]
    if samples is None:
        samples = x.shape[1]
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ConfigurationError(f"samples must be a positive integer, got {samples!r}")
    spike_counts = check_flag("memory_energy_report", "spike_counts", spike_counts)
    tech = Technology() if technology is None else technology
    if not isinstance(tech, Technology):
        raise ConfigurationError(
            f"memory_energy_report: technology must be a Technology, got {type(tech).__name__}"
        )

    records: dict[nn.Module, _Record] = {}
    # In the order the calls ended: ("layer", (record, output entries)) and
    # ("neuron", (module, output entries, spikes, one step's shape, dtype)).
    events: list[tuple[str, tuple]] = []
    not_counted: list[str] = []
    handles = []

    def layer_hook(module: nn.Module, args: tuple, out: object) -> None:
        if not args or not isinstance(args[0], Tensor) or not isinstance(out, Tensor):
            return
        x_in, record = args[0], records[module]
        steps, positions = _steps(record.name, module, x_in, samples, timesteps)
        geometry = _geometry(module, x_in, out, positions)
        if record.geometry is not None and record.geometry != geometry:
            raise ShapeError(
                f"memory_energy_report: layer {record.name} ran on two geometries "
                f"({record.geometry} and {geometry}); the model prices one"
            )
        record.geometry = geometry
        record.steps += steps * samples
        if is_spikes(x_in):
            record.input_spikes += int((x_in != 0).sum())
        elif spike_counts and is_counts(x_in):
            record.input_spikes += float(x_in.abs().sum(dtype=torch.float64))
        else:
            record.real_steps += steps * samples
        events.append(("layer", (record, out.numel())))

    def neuron_hook(module: nn.Module, args: tuple, out: object) -> None:
        if isinstance(out, Tensor):
            step = out.shape[1:] if out.dim() > 1 else out.shape
            events.append(("neuron", (module, out.numel(), int((out != 0).sum()), step,
                                      out.dtype)))  # fmt: skip

    names = {module: name or "(model)" for name, module in model.named_modules()}
    for module, name in names.items():
        if isinstance(module, (nn.Linear, *_CONVS)):
            records[module] = _Record(name, module)
            handles.append(module.register_forward_hook(layer_hook))
        elif isinstance(module, SPIKING_LAYER_TYPES):
            handles.append(module.register_forward_hook(neuron_hook))
        elif any(p.dim() >= 2 for p in module.parameters(recurse=False)):
            not_counted.append(f"{name} ({type(module).__name__} is not a counted layer)")
    hooked_forward(model, x, handles)

    assumed: set[str] = set()
    unfed: set[str] = set()
    pending: list[tuple[_Record, int]] = []
    for kind, payload in events:
        if kind == "layer":
            pending.append(payload)
            continue
        module, numel, spikes, step, dtype = payload
        match = next((p for p in reversed(pending) if p[1] == numel), None)
        count = None
        if match is None and pending:  # pooling between: N' neurons of their own
            last, layer_numel = pending[-1]
            assert last.geometry is not None
            per_step = last.geometry.neurons * numel
            if per_step % layer_numel == 0 and per_step // layer_numel > 0:
                match, count = pending[-1], per_step // layer_numel
        pending = []
        if match is None:
            unfed.add(f"{names[module]} ({type(module).__name__}: fed by no counted layer; "
                      "its updates and spikes are not priced)")  # fmt: skip
            continue
        record = match[0]
        if record.neurons is not None and record.neuron_count != count:
            assert record.geometry is not None
            n = record.geometry.neurons
            raise ShapeError(
                f"memory_energy_report: layer {record.name} feeds neurons of two sizes "
                f"({record.neuron_count or n} and {count or n} per step); the model prices one"
            )
        record.neuron_count = count
        record.output_spikes += spikes
        record.neurons = names[module]
        leak = _leak(module, step, dtype)
        if leak is None:
            leak = True
            assumed.add(f"{names[module]} ({type(module).__name__}: leak assumed)")
        record.leak = leak
    not_counted += sorted(assumed) + sorted(unfed)

    from spikeflow.quant.weights import weight_bits  # (quant imports the layers)

    layers = []
    for record in records.values():
        if record.geometry is None:  # its weights may still be used (F.linear in a loop)
            not_counted.append(f"{record.name} ({type(record.module).__name__}: its forward "
                               "never ran; weights used otherwise are not priced)")  # fmt: skip
            continue
        per = 1.0 / samples
        steps, real = record.steps * per, record.real_steps * per
        theta_in, theta_out = record.input_spikes * per, record.output_spikes * per
        passes = max(1.0, steps / timesteps)  # a module called twice per step: twice
        g = record.geometry
        # A quantized layer's weights at their bits, in the SNN and the formal network
        wb = weight_bits(record.module)
        bits = {} if wb is None else {"weight_bits": wb,
                                      "bias_words": g.out_channels if g.bias else 0}  # fmt: skip
        layers.append(LayerMemoryEnergy(
            record.name, type(record.module).__name__, g, steps, real,
            theta_in, theta_out, record.neurons, record.leak,
            replace(snn_counts(g, steps, theta_in, theta_out, record.leak, real,
                               record.neurons is not None, tech.fifo_words,
                               record.neuron_count), **bits),
            replace(_repeated(ann_counts(g), passes), **bits), passes,
        ))  # fmt: skip
    return MemoryEnergyReport(layers, samples, tech, not_counted)
