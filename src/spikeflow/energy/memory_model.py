"""Lemaire et al.'s analytical energy model: operations *and* memory accesses.

Lemaire, Cordone, Castagnetti, Novac, Courtois, Miramond, "An Analytical Estimation of
Spiking Neural Networks Energy Efficiency" (ICONIP 2022, arXiv 2210.13107) price one
inference of a layer, for the spiking network (SNN) and for the formal network (ANN) of
the same architecture, as the sum of

* **operations**: multiply-accumulates (a multiplication and an addition each) and
  accumulates (an addition each), for the synapses, the biases, the leak and the reset;
* **addressing**: the additions (and, for a convolution fed events, multiplications)
  that compute where in memory the weights and potentials an event touches lie;
* **memory accesses**: reads of the inputs, the parameters (weights and biases) and
  (SNN) the membrane potentials, writes of the potentials and the outputs, each access
  priced by the size of the memory it goes to (a larger SRAM costs more per access).

Per layer and inference, with ``θ_in`` the input spikes of the whole inference (all
steps), ``θ_out`` the output spikes, ``T`` the steps the layer ran and, for a
convolution, ``C_in, C_out`` channels, ``g`` groups, ``K`` the kernel's taps, ``K_s =
Π⌈k_d/s_d⌉`` the output positions one input reaches along each stride, ``I`` and ``O``
the input and output positions (for a linear layer ``N_in``, ``N_out`` and ``P``
positions: 1, or the tokens of a sequence), ``N = C_out·O`` (``P·N_out``) outputs:

* formal network (ANN), once per inference: MACs ``C_out·O·(C_in/g)·K``
  (``P·N_in·N_out``); accumulates ``N`` with a bias; addressing additions ``C_in·I +
  C_out·O + C_out·K`` (``P·(N_in + N_out)``); input reads ``C_out·O·(C_in/g)·K``
  (``P·N_in``); weight reads as the MACs, bias reads ``N`` with a bias; no potentials;
  output writes ``N``;
* spiking network (SNN) fed spikes: MACs ``T·N`` for a leak (0 for IF neurons);
  accumulates ``θ_in·(C_out/g)·K_s`` (``θ_in·N_out``) for the synapses, ``T·N`` with a
  bias, ``θ_out`` for the resets; addressing MACs ``2·θ_in`` (where a spike's first
  output lies) and additions ``θ_in·(C_out/g)·K`` (additions ``θ_in·N_out``); input
  reads ``θ_in``; weight reads ``θ_in·(C_out/g)·K`` (``θ_in·N_out``); bias reads
  ``T·N`` with a bias; potential reads, and as many writes, ``θ_in·(C_out/g)·K``
  (``θ_in·N_out``) for the synapses plus ``T·N`` for the neurons' updates; output
  writes ``θ_out``. A layer that feeds no neurons (a read-out) has no leak, no resets
  and no ``T·N`` potential updates; one whose ``N'`` neurons run after a pooling has
  ``T·N'`` leak MACs and updates, the updates in a potential memory of ``N'`` words;
* a SNN layer fed real values (the first layer on images; frames of event counts
  without ``spike_counts``) does the ANN's dense work at each of its ``T`` steps and
  the SNN's neuron terms; it writes ``θ_out`` spikes. One fed real values at some
  steps and spikes at others (a shared layer; counts that are 0/1 at some steps)
  reads the real values from the input map and the spikes from its queue.

These are the formulas of SpikingJelly 2.0's Lemaire profiler
(``spikingjelly.activation_based.op_counter.estimate_lemaire_energy``), which spikeflow's
tests match layer by layer, and of the authors' lab's implementation (Qualia's
``EnergyEstimationMetric``) except where that differs: it counts the ``T·N``
accumulates and potential updates whether or not the layer has a bias or neurons, the
dense linear layer's addressing as ``N_in·N_out`` additions, and its SRAM cost as a
line (1.09e-5 pJ per bit of memory plus 13.2 pJ per access). Both read the SNN linear
layer's synapses as ``θ_in·N_out`` where the paper's equation 2 multiplies by
``N_in`` once more. The paper's own text was not available here; the tests check this
module against the formulas above derived by hand and against SpikingJelly.

Costs (:class:`Technology`): an addition ``e_add`` and a multiplication ``e_mul`` (their
format's figure in Horowitz, ISSCC 2014, 45 nm: :data:`HOROWITZ_45NM`; default 32-bit
integer); a memory access moves one ``bits``-bit word, at an energy per bit that grows
with the memory's size, interpolated linearly through Horowitz's 45 nm SRAM figures
(:data:`HOROWITZ_SRAM_45NM`: 10 pJ at 8 KiB, 20 pJ at 32 KiB, 100 pJ at 1 MiB, read
as 32-bit accesses as SpikingJelly does, from 0 at 0 bytes, and extended along its last
segment past 1 MiB where SpikingJelly holds the 1 MiB figure). The SNN's input and
output spikes go through queues (Lemaire's FIFOs) of ``fifo_words`` words, 1,000 by
default (SpikingJelly's default, the paper's setting by its account). Every constant is
an argument.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, fields

from spikeflow.energy._shared import check_joules
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

#: Horowitz (ISSCC 2014), 45 nm: energy of one SRAM access by memory size, as (bytes,
#: joules); Horowitz's table gives them for 64-bit cache reads, Lemaire's model (in
#: SpikingJelly's reading) prices a 32-bit access with them (``Technology.sram_width``).
HOROWITZ_SRAM_45NM: tuple[tuple[int, float], ...] = (
    (8 * 1024, 10e-12),
    (32 * 1024, 20e-12),
    (1024 * 1024, 100e-12),
)


def _check_int(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(
            f"Technology: {name} must be an integer >= {minimum}, got {value!r}"
        )
    return value


@dataclass(frozen=True)
class Technology:
    """The costs of the model (see :mod:`spikeflow.energy.memory_model`), in joules.

    Attributes:
        e_add: one addition (an accumulate). Default: Horowitz's 32-bit integer, 0.1 pJ.
        e_mul: one multiplication (a multiply-accumulate is ``e_mul + e_add``).
            Default: Horowitz's 32-bit integer, 3.1 pJ.
        bits: bits of one memory word (weights, biases, potentials, activations).
        sram: ``(bytes, joules)``: the energy of one ``sram_width``-bit access to an
            SRAM of that many bytes, at increasing sizes; between them (and from 0 at 0
            bytes) the energy per bit is interpolated linearly, past the last along its
            last segment. Default :data:`HOROWITZ_SRAM_45NM`.
        sram_width: the bits of the accesses ``sram`` prices (32).
        fifo_words: the words of each SNN layer's input and output spike queue (1000).
    """

    e_add: float = HOROWITZ_45NM["int32"][0]
    e_mul: float = HOROWITZ_45NM["int32"][1]
    bits: int = 32
    sram: tuple[tuple[int, float], ...] = HOROWITZ_SRAM_45NM
    sram_width: int = 32
    fifo_words: int = 1000

    def __post_init__(self) -> None:
        check_joules("Technology", "e_add", self.e_add)
        check_joules("Technology", "e_mul", self.e_mul)
        _check_int("bits", self.bits)
        _check_int("sram_width", self.sram_width)
        _check_int("fifo_words", self.fifo_words)
        points = tuple(self.sram) if isinstance(self.sram, (tuple, list)) else ()
        if not points or any(not isinstance(p, (tuple, list)) or len(p) != 2 for p in points):
            raise ConfigurationError(
                f"Technology: sram must be (bytes, joules) pairs, got {self.sram!r}"
            )
        sizes = [p[0] for p in points]
        for size, energy in points:
            check_joules("Technology", "sram energy", energy)
            if isinstance(size, bool) or not isinstance(size, (int, float)) or size <= 0:
                raise ConfigurationError(f"Technology: sram sizes must be > 0, got {size!r}")
        if any(b <= a for a, b in itertools.pairwise(sizes)):
            raise ConfigurationError(f"Technology: sram sizes must increase, got {sizes}")

    @classmethod
    def horowitz_45nm(cls, number: str = "int32", bits: int | None = None) -> Technology:
        """Horowitz's 45 nm addition and multiplication for ``number`` (a key of
        :data:`HOROWITZ_45NM`), words of ``bits`` bits (default: the format's width)."""
        if number not in HOROWITZ_45NM:
            raise ConfigurationError(
                f"Technology.horowitz_45nm: number must be one of {sorted(HOROWITZ_45NM)}, "
                f"got {number!r}"
            )
        e_add, e_mul = HOROWITZ_45NM[number]
        width = int(number.lstrip("intfp")) if bits is None else bits
        return cls(e_add=e_add, e_mul=e_mul, bits=width)

    def access(self, words: float) -> float:
        """Joules of one read or write of a ``bits``-bit word in a memory of ``words``
        words (0 words: none)."""
        return self.access_bits(words * self.bits / 8, self.bits)

    def access_bits(self, size: float, bits: float) -> float:
        """Joules of one read or write of ``bits`` bits in a memory of ``size`` bytes
        (0 bytes: none): the energy per bit at that size times ``bits`` (a quantized
        weight narrower than the words)."""
        if size <= 0:
            return 0.0
        points = ((0.0, 0.0), *((float(b), float(e)) for b, e in self.sram))
        upper = next((i for i in range(1, len(points)) if size <= points[i][0]),
                     len(points) - 1)  # fmt: skip
        (x0, y0), (x1, y1) = points[upper - 1], points[upper]
        energy = y0 + (y1 - y0) * (size - x0) / (x1 - x0)
        return energy * bits / self.sram_width


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
            output_writes: memory accesses, one word each.
        input_words, parameter_words, potential_words, output_words: the size of the
            memory each access goes to (weights and biases share one).
        neuron_updates: of the potential reads (and as many of the writes), the
            neurons' own updates (``T·N'``); they go to the neurons' potential memory,
            of ``neuron_words`` words (0: ``potential_words``), which differs from the
            layer's when pooling lies between the layer and the neurons it feeds.
        queue_reads: of the input reads, the spikes ``θ_in`` read from the input queue,
            of ``queue_words`` words (0: ``input_words``), which differs from the input
            map's when the layer is fed real values at some steps and spikes at others.
        weight_bits: the bits of each weight of a quantized layer (0: a word of the
            technology's ``bits``); of the parameter memory's ``parameter_words``
            entries, ``bias_words`` are biases, which stay words. The parameter memory
            then holds ``(parameter_words - bias_words)·weight_bits + bias_words·bits``
            bits, and a weight read moves ``weight_bits`` of them.
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
    parameter_words: int = 0
    potential_words: int = 0
    output_words: int = 0
    neuron_updates: float = 0.0
    neuron_words: int = 0
    queue_reads: float = 0.0
    queue_words: int = 0
    weight_bits: int = 0
    bias_words: int = 0

    def energy(self, technology: Technology | None = None) -> EnergyComponents:
        """The joules of these counts at ``technology`` (default: :class:`Technology`)."""
        tech = Technology() if technology is None else technology
        mac = tech.e_mul + tech.e_add
        parameter = weight = tech.access(self.parameter_words)
        if self.weight_bits and self.weight_bits != tech.bits:  # quantized weights
            weights = self.parameter_words - self.bias_words
            size = (weights * self.weight_bits + self.bias_words * tech.bits) / 8
            parameter = tech.access_bits(size, tech.bits)
            weight = tech.access_bits(size, self.weight_bits)
        potential = tech.access(self.potential_words)
        accesses = self.potential_reads + self.potential_writes
        if self.neuron_words in (0, self.potential_words):
            potentials = accesses * potential
        else:  # the neurons' updates go to a memory of another size
            updates = 2 * self.neuron_updates
            potentials = (accesses - updates) * potential + updates * tech.access(self.neuron_words)
        inputs = self.input_reads * tech.access(self.input_words)
        if self.queue_words not in (0, self.input_words):  # spikes from the queue
            dense = self.input_reads - self.queue_reads
            inputs = dense * tech.access(self.input_words)
            inputs += self.queue_reads * tech.access(self.queue_words)
        return EnergyComponents(
            operations=self.macs * mac + self.accumulates * tech.e_add,
            addressing=self.address_macs * mac + self.address_adds * tech.e_add,
            inputs=inputs,
            weights=self.weight_reads * weight,
            biases=self.bias_reads * parameter,
            potentials=potentials,
            outputs=self.output_writes * tech.access(self.output_words),
        )


def _parameter_words(g: LayerGeometry) -> int:
    return g.weights + (g.out_channels if g.bias else 0)


def ann_counts(geometry: LayerGeometry) -> AccessCounts:
    """The formal network's layer, once per inference (the ANN formulas of
    :mod:`spikeflow.energy.memory_model`)."""
    g = geometry
    if g.kind == "conv":
        address = g.inputs + g.neurons + g.out_channels * g.taps
    else:
        address = g.inputs + g.neurons
    return AccessCounts(
        macs=g.synapses,
        accumulates=g.neurons if g.bias else 0,
        address_adds=address,
        input_reads=g.synapses if g.kind == "conv" else g.inputs,
        weight_reads=g.synapses,
        bias_reads=g.neurons if g.bias else 0,
        output_writes=g.neurons,
        input_words=g.inputs,
        parameter_words=_parameter_words(g),
        output_words=g.neurons,
    )


def snn_counts(
    geometry: LayerGeometry,
    steps: float,
    input_spikes: float,
    output_spikes: float,
    leak: bool,
    real_steps: float = 0.0,
    neurons: bool = True,
    fifo_words: int = 1000,
    neuron_count: int | None = None,
) -> AccessCounts:
    """The spiking layer over one inference (the SNN formulas of
    :mod:`spikeflow.energy.memory_model`).

    Args:
        geometry: the layer.
        steps: ``T``, the steps it ran per inference.
        input_spikes: ``θ_in``, the input spikes per inference over its steps fed spikes.
        output_spikes: ``θ_out``, the spikes of the neurons it feeds.
        leak: whether those neurons leak (a multiplication per neuron and step).
        real_steps: of the ``steps``, those fed real values (dense work, as the ANN's,
            its inputs read from the input map; the spikes of the other steps from the
            queue).
        neurons: whether the layer feeds neurons (``False`` for a read-out: no leak,
            resets or neuron updates).
        fifo_words: the words of the input and output spike queues.
        neuron_count: ``N'``, the neurons per step of the spiking layer it feeds when
            they are not its ``N`` outputs (pooling between them): their updates and
            leak count ``T·N'``, in a potential memory of ``N'`` words (SpikingJelly's
            reading: each neuron layer prices its own updates); ``None``: ``N``.
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
    if not neurons and (leak or output_spikes):
        raise ConfigurationError("snn_counts: a layer without neurons has no leak and no spikes")
    if neuron_count is not None and (
        isinstance(neuron_count, bool) or not isinstance(neuron_count, int) or neuron_count < 1
    ):
        raise ConfigurationError(
            f"snn_counts: neuron_count must be a positive integer or None, got {neuron_count!r}"
        )
    if neuron_count is not None and not neurons:
        raise ConfigurationError("snn_counts: a layer without neurons has no neuron_count")
    count = g.neurons if neuron_count is None else neuron_count
    neuron_steps = steps * g.neurons  # the layer's outputs (its biases)
    updates = steps * count if neurons else 0.0
    event = input_spikes * g.fan_out  # weights (and potentials) the spikes touch
    if g.kind == "conv":
        event_adds = input_spikes * (g.out_channels // g.groups) * g.reach
        address_macs = 2 * input_spikes
    else:
        event_adds, address_macs = event, 0.0
    dense = ann_counts(g)
    r = real_steps
    return AccessCounts(
        macs=(updates if leak else 0.0) + r * dense.macs,
        accumulates=event_adds + (neuron_steps if g.bias else 0.0) + output_spikes,
        address_macs=address_macs,
        address_adds=event + r * dense.address_adds,
        input_reads=input_spikes + r * dense.input_reads,
        weight_reads=event + r * dense.weight_reads,
        bias_reads=neuron_steps if g.bias else 0.0,
        potential_reads=event + updates,
        potential_writes=event + updates,
        output_writes=output_spikes,
        input_words=g.inputs if r > 0 else fifo_words,
        parameter_words=_parameter_words(g),
        potential_words=g.neurons,
        output_words=fifo_words,
        neuron_updates=updates,
        neuron_words=count if neurons else 0,
        queue_reads=input_spikes,
        queue_words=fifo_words,
    )
