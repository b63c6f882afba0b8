"""Lemaire et al.'s analytical energy model: operations *and* memory accesses.

Lemaire, Cordone, Castagnetti, Novac, Courtois, Miramond, "An Analytical Estimation of
Spiking Neural Networks Energy Efficiency" (ICONIP 2022, arXiv 2210.13107) price one
inference of a layer, for the spiking network (SNN) and for the formal network (ANN) of
the same architecture, as the sum of

* **operations**: multiply-accumulates (a multiplication and an addition each) and
  accumulates (an addition each), for the synapses, the biases, the leak and the reset;
* **addressing**: the additions (and, for a convolution fed events, multiplications)
  that compute where in memory the weights and potentials an event touches lie;
* **memory accesses**: reads of the inputs, the weights, the biases and (SNN) the
  membrane potentials, writes of the potentials and the outputs, each access priced by
  the size of the memory it goes to (a larger SRAM costs more per access).

Per layer and inference, with ``θ_in`` the input spikes of the whole inference (all
steps), ``θ_out`` the output spikes, ``T`` the steps the layer ran and, for a
convolution, ``C_in, C_out`` channels, ``g`` groups, ``K`` the kernel's taps, ``K_s =
Π⌈k_d/s_d⌉`` the output positions one input reaches along each stride, ``I`` and ``O``
the input and output positions (for a linear layer ``N_in``, ``N_out`` and ``P``
positions: 1, or the tokens of a sequence):

* formal network (ANN), once per inference, ``N = C_out·O`` (``P·N_out``) outputs:
  MACs ``C_out·O·(C_in/g)·K`` (``P·N_in·N_out``); accumulates ``N``; addressing
  additions ``C_in·I + C_out·O + C_out·K`` (``P·N_in·N_out``); input reads
  ``C_out·O·(C_in/g)·K`` (``P·N_in``); weight reads as the MACs; bias reads ``N``
  (with a bias); no potentials; output writes ``N``;
* spiking network (SNN) fed spikes: MACs ``T·N`` for a leak (0 for IF neurons);
  accumulates ``θ_in·(C_out/g)·K_s + T·N + θ_out`` (``θ_in·N_out + T·N + θ_out``:
  synapses, a bias or leak term per neuron and step, a reset per spike); addressing
  MACs ``2·θ_in`` and additions ``θ_in·(C_out/g)·K`` (additions ``θ_in·N_out``);
  input reads ``θ_in``; weight reads ``θ_in·(C_out/g)·K`` (``θ_in·N_out``); bias
  reads ``T·N`` (with a bias); potential reads, and as many writes,
  ``θ_in·(C_out/g)·K + T·N`` (``θ_in·N_out + T·N``); output writes ``θ_out``.

(Lemaire's equations 1-17 as their lab's public implementation, Qualia's
``EnergyEstimationMetric``, states them, for ``g = 1`` and ``P = 1``; two of its notes
are followed: the SNN linear layer's accumulates are ``θ_in·N_out`` (each input spike
reaches ``N_out`` neurons, where the printed equation 2.4 has ``θ_in·N_in·N_out``) and
the reset adds ``θ_out`` accumulates; the convolution's event addressing is
``θ_in·C_out·K`` additions as its equation 16.3 is cited there, where its code computes
``θ_in·K``; its SRAM line is 1.09e-5 pJ per bit plus 13.2 pJ, from a notebook not
public, against the fit below. The paper's text could not be read for this module: the
equations are restated from that implementation's docstrings, and the tests check this
module against them derived by hand.) A SNN layer fed real values (the first layer on
images or frames of counts in spikeflow's value rule, see :mod:`spikeflow.energy`) does
the ANN's dense work at each of its ``T`` steps, writes ``θ_out`` spikes, reads and
writes each potential once per step, and adds the leak and the reset (spikeflow's
reading; the ANN's ``N`` output writes become the ``θ_out`` spikes).

Costs (:class:`Technology`): an addition ``e_add`` and a multiplication ``e_mul`` (their
width's figure in Horowitz, ISSCC 2014, 45 nm: :data:`HOROWITZ_45NM`); one memory access
to a memory of ``W`` words of ``bits`` bits costs ``sram_per_bit · W · bits +
sram_base``, the least-squares line through Horowitz's three 45 nm SRAM figures (64-bit
access to 8 KiB: 10 pJ, 32 KiB: 20 pJ, 1 MiB: 100 pJ), 1.035e-5 pJ per bit of memory
plus 13.26 pJ. The SNN's input and output spikes go through queues (``fifo_words``,
Lemaire's FIFOs; by default as large as one step's input or output map). Every
constant is an argument.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from spikeflow.errors import ConfigurationError

__all__ = [
    "HOROWITZ_45NM",
    "HOROWITZ_SRAM_45NM",
    "AccessCounts",
    "EnergyComponents",
    "LayerGeometry",
    "Technology",
    "ann_counts",
    "snn_counts",
]

#: Horowitz (ISSCC 2014), 45 nm, 0.9 V: (addition, multiplication) energy in joules per
#: operation, by number format.
HOROWITZ_45NM: dict[str, tuple[float, float]] = {
    "int8": (0.03e-12, 0.2e-12),
    "int32": (0.1e-12, 3.1e-12),
    "fp16": (0.4e-12, 1.1e-12),
    "fp32": (0.9e-12, 3.7e-12),
}

#: Horowitz (ISSCC 2014), 45 nm: energy of one 64-bit SRAM (cache) access by memory
#: size, as (bytes, joules).
HOROWITZ_SRAM_45NM: tuple[tuple[int, float], ...] = (
    (8 * 1024, 10e-12),
    (32 * 1024, 20e-12),
    (1024 * 1024, 100e-12),
)


def _sram_line() -> tuple[float, float]:
    """The least-squares line ``energy = a · memory bits + b`` through
    :data:`HOROWITZ_SRAM_45NM`: (a in joules per bit of memory, b in joules)."""
    xs = [8.0 * size for size, _ in HOROWITZ_SRAM_45NM]
    ys = [energy for _, energy in HOROWITZ_SRAM_45NM]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mean_x) ** 2 for x in xs
    )
    return slope, mean_y - slope * mean_x


_SRAM_PER_BIT, _SRAM_BASE = _sram_line()


def _check_energy(name: str, value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        raise ConfigurationError(
            f"Technology: {name} must be a finite number of joules >= 0, got {value!r}"
        )
    return float(value)


@dataclass(frozen=True)
class Technology:
    """The costs of the model (see :mod:`spikeflow.energy.memory_model`), in joules.

    Attributes:
        e_add: one addition (an accumulate). Default: Horowitz's 32-bit integer, 0.1 pJ.
        e_mul: one multiplication (a multiply-accumulate is ``e_mul + e_add``).
            Default: Horowitz's 32-bit integer, 3.1 pJ.
        bits: bits of one memory word (weights, potentials, activations).
        sram_per_bit: joules per access and per bit of the memory accessed.
        sram_base: joules per access of any memory.
        fifo_words: the words of the SNN's input and output spike queues; ``None`` (the
            default): a queue as large as the layer's input (output) map for one step.
    """

    e_add: float = HOROWITZ_45NM["int32"][0]
    e_mul: float = HOROWITZ_45NM["int32"][1]
    bits: int = 32
    sram_per_bit: float = _SRAM_PER_BIT
    sram_base: float = _SRAM_BASE
    fifo_words: int | None = None

    def __post_init__(self) -> None:
        for name in ("e_add", "e_mul", "sram_per_bit", "sram_base"):
            _check_energy(name, getattr(self, name))
        if isinstance(self.bits, bool) or not isinstance(self.bits, int) or self.bits < 1:
            raise ConfigurationError(f"Technology: bits must be an integer >= 1, got {self.bits!r}")
        fifo = self.fifo_words
        if fifo is not None and (isinstance(fifo, bool) or not isinstance(fifo, int) or fifo < 1):
            raise ConfigurationError(
                f"Technology: fifo_words must be None or an integer >= 1, got {fifo!r}"
            )

    @classmethod
    def horowitz_45nm(
        cls, number: str = "int32", bits: int | None = None, fifo_words: int | None = None
    ) -> Technology:
        """Horowitz's 45 nm addition and multiplication for ``number`` (a key of
        :data:`HOROWITZ_45NM`), words of ``bits`` bits (default: the format's width)."""
        if number not in HOROWITZ_45NM:
            raise ConfigurationError(
                f"Technology.horowitz_45nm: number must be one of {sorted(HOROWITZ_45NM)}, "
                f"got {number!r}"
            )
        e_add, e_mul = HOROWITZ_45NM[number]
        width = int(number.lstrip("intfp")) if bits is None else bits
        return cls(e_add=e_add, e_mul=e_mul, bits=width, fifo_words=fifo_words)

    def access(self, words: float) -> float:
        """Joules of one read or write of a memory of ``words`` words (0 words: none)."""
        if words <= 0:
            return 0.0
        return self.sram_per_bit * words * self.bits + self.sram_base


@dataclass(frozen=True)
class LayerGeometry:
    """What the model needs of a linear layer or a convolution, for one step of one
    sample.

    Attributes:
        kind: ``"linear"`` or ``"conv"``.
        in_channels, out_channels: ``N_in``, ``N_out`` of a linear layer; ``C_in``,
            ``C_out`` of a convolution.
        kernel, stride: the convolution's kernel and stride per spatial dim (``()`` for
            a linear layer).
        in_size, out_size: input and output positions (``I``, ``O``) of a convolution
            (products of the spatial sizes); for a linear layer its positions ``P`` per
            step (both the same: 1, or the tokens of a sequence).
        groups: the convolution's groups (1 for a linear layer).
        weights: entries of the weight tensor; bias: whether the layer has a bias.
    """

    kind: str
    in_channels: int
    out_channels: int
    kernel: tuple[int, ...] = ()
    stride: tuple[int, ...] = ()
    in_size: int = 1
    out_size: int = 1
    groups: int = 1
    weights: int = 0
    bias: bool = False

    def __post_init__(self) -> None:
        if self.kind not in ("linear", "conv"):
            raise ConfigurationError(
                f"LayerGeometry: kind must be 'linear' or 'conv', got {self.kind!r}"
            )
        if len(self.kernel) != len(self.stride):
            raise ConfigurationError(
                f"LayerGeometry: kernel {self.kernel} and stride {self.stride} differ in length"
            )
        sizes = (self.in_channels, self.out_channels, self.in_size, self.out_size, self.groups)
        if min(sizes) < 1 or min((*self.kernel, *self.stride), default=1) < 1:
            raise ConfigurationError(f"LayerGeometry: sizes must be >= 1, got {self}")
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ConfigurationError(
                f"LayerGeometry: groups {self.groups} must divide the channels "
                f"({self.in_channels} in, {self.out_channels} out)"
            )

    @property
    def taps(self) -> int:
        """``K``: the kernel's taps (1 for a linear layer)."""
        return math.prod(self.kernel)

    @property
    def reach(self) -> int:
        """``K_s = Π⌈k_d/s_d⌉``: the output positions per channel one input reaches."""
        return math.prod(math.ceil(k / s) for k, s in zip(self.kernel, self.stride, strict=True))

    @property
    def neurons(self) -> int:
        """``N``: the outputs (neurons) per step: ``C_out·O`` or ``P·N_out``."""
        return self.out_channels * self.out_size

    @property
    def inputs(self) -> int:
        """Input entries per step: ``C_in·I`` or ``P·N_in``."""
        return self.in_channels * self.in_size

    @property
    def synapses(self) -> int:
        """Dense (input, weight) products per step: ``C_out·O·(C_in/g)·K`` or
        ``P·N_in·N_out``."""
        return self.neurons * (self.in_channels // self.groups) * self.taps

    @property
    def fan_out(self) -> int:
        """Weights one input entry meets: ``(C_out/g)·K`` or ``N_out``."""
        return (self.out_channels // self.groups) * self.taps


@dataclass(frozen=True)
class EnergyComponents:
    """Joules of one layer (or a network) per inference, by component."""

    operations: float = 0.0
    addressing: float = 0.0
    inputs: float = 0.0
    weights: float = 0.0
    biases: float = 0.0
    potentials: float = 0.0
    outputs: float = 0.0

    @property
    def memory(self) -> float:
        """All memory accesses: inputs, weights, biases, potentials and outputs."""
        return self.inputs + self.weights + self.biases + self.potentials + self.outputs

    @property
    def total(self) -> float:
        """Operations, addressing and memory."""
        return self.operations + self.addressing + self.memory

    def __add__(self, other: EnergyComponents) -> EnergyComponents:
        return EnergyComponents(*(getattr(self, f.name) + getattr(other, f.name)
                                  for f in fields(self)))  # fmt: skip


@dataclass(frozen=True)
class AccessCounts:
    """The operations and memory accesses of one layer per inference (averages: a
    spike count per sample need not be whole), and the words of each memory.

    Attributes:
        macs, accumulates: operations (synapses, biases, leak, reset).
        address_macs, address_adds: the addressing arithmetic.
        input_reads, weight_reads, bias_reads, potential_reads, potential_writes,
            output_writes: memory accesses.
        input_words, weight_words, bias_words, potential_words, output_words: the size
            of the memory each access goes to.
    """

    macs: float = 0.0
    accumulates: float = 0.0
    address_macs: float = 0.0
    address_adds: float = 0.0
    input_reads: float = 0.0
    weight_reads: float = 0.0
    bias_reads: float = 0.0
    potential_reads: float = 0.0
    potential_writes: float = 0.0
    output_writes: float = 0.0
    input_words: int = 0
    weight_words: int = 0
    bias_words: int = 0
    potential_words: int = 0
    output_words: int = 0

    def energy(self, technology: Technology | None = None) -> EnergyComponents:
        """The joules of these counts at ``technology`` (default: :class:`Technology`)."""
        tech = Technology() if technology is None else technology
        mac = tech.e_mul + tech.e_add
        potentials = (self.potential_reads + self.potential_writes) * tech.access(
            self.potential_words
        )
        return EnergyComponents(
            operations=self.macs * mac + self.accumulates * tech.e_add,
            addressing=self.address_macs * mac + self.address_adds * tech.e_add,
            inputs=self.input_reads * tech.access(self.input_words),
            weights=self.weight_reads * tech.access(self.weight_words),
            biases=self.bias_reads * tech.access(self.bias_words),
            potentials=potentials,
            outputs=self.output_writes * tech.access(self.output_words),
        )


def ann_counts(geometry: LayerGeometry) -> AccessCounts:
    """The formal network's layer, once per inference (the table in
    :mod:`spikeflow.energy.memory_model`, ANN column)."""
    g = geometry
    if g.kind == "conv":
        address = g.inputs + g.neurons + g.out_channels * g.taps
    else:
        address = g.synapses
    return AccessCounts(
        macs=g.synapses,
        accumulates=g.neurons,
        address_adds=address,
        input_reads=g.synapses if g.kind == "conv" else g.inputs,
        weight_reads=g.synapses,
        bias_reads=g.neurons if g.bias else 0,
        output_writes=g.neurons,
        input_words=g.inputs,
        weight_words=g.weights,
        bias_words=g.out_channels if g.bias else 0,
        output_words=g.neurons,
    )


def snn_counts(
    geometry: LayerGeometry,
    steps: float,
    input_spikes: float,
    output_spikes: float,
    leak: bool,
    real_steps: float = 0.0,
    fifo_words: int | None = None,
) -> AccessCounts:
    """The spiking layer over one inference (the table in
    :mod:`spikeflow.energy.memory_model`, SNN column).

    Args:
        geometry: the layer.
        steps: ``T``, the steps it ran per inference.
        input_spikes: ``θ_in``, the input spikes per inference over its steps fed spikes.
        output_spikes: ``θ_out``, the spikes of the neurons it feeds (0 for none).
        leak: whether the neurons leak (a multiplication per neuron and step).
        real_steps: of the ``steps``, those fed real values (dense work, as the ANN's).
        fifo_words: the words of the input and output spike queues (``None``: the
            layer's input or output map for one step). A layer fed real values reads
            them from its input map.
    """
    g = geometry
    for name, value in (("steps", steps), ("input_spikes", input_spikes),
                        ("output_spikes", output_spikes), ("real_steps", real_steps)):  # fmt: skip
        if not math.isfinite(value) or value < 0:
            raise ConfigurationError(f"snn_counts: {name} must be finite and >= 0, got {value!r}")
    if real_steps > steps:
        raise ConfigurationError(
            f"snn_counts: real_steps ({real_steps}) cannot exceed steps ({steps})"
        )
    neuron_steps = steps * g.neurons
    event = input_spikes * g.fan_out  # weights (and potentials) the spikes touch
    if g.kind == "conv":
        event_adds = input_spikes * (g.out_channels // g.groups) * g.reach
        address_macs, address_adds = 2 * input_spikes, event
    else:
        event_adds, address_macs, address_adds = event, 0.0, event
    dense = ann_counts(g)
    r = real_steps
    return AccessCounts(
        macs=(neuron_steps if leak else 0.0) + r * dense.macs,
        accumulates=event_adds + neuron_steps + output_spikes,
        address_macs=address_macs,
        address_adds=address_adds + r * dense.address_adds,
        input_reads=input_spikes + r * dense.input_reads,
        weight_reads=event + r * dense.weight_reads,
        bias_reads=neuron_steps if g.bias else 0.0,
        potential_reads=event + neuron_steps,
        potential_writes=event + neuron_steps,
        output_writes=output_spikes,
        input_words=g.inputs if fifo_words is None or r > 0 else fifo_words,
        weight_words=g.weights,
        bias_words=g.out_channels if g.bias else 0,
        potential_words=g.neurons,
        output_words=g.neurons if fifo_words is None else fifo_words,
    )
