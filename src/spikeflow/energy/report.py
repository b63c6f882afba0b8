"""What an operation count reports: per layer, per neuron layer, totals and energy."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "E_AC",
    "E_MAC",
    "E_MUL",
    "LayerOperations",
    "NeuronOperations",
    "OperationReport",
]

#: Energy of one 32-bit float accumulate, multiply-accumulate and multiplication at
#: 45 nm, in joules (Horowitz, ISSCC 2014: add 0.9 pJ, multiply 3.7 pJ).
E_AC = 0.9e-12
E_MAC = 4.6e-12
E_MUL = 3.7e-12


@dataclass
class LayerOperations:
    """The operations one layer did, summed over the calls counted.

    ``kind`` is the layer's class name, or ``"products"`` for the products between
    activations a module's own forward computed (its row is named
    ``<module> (activation products)``); ``input_elements`` and ``input_nonzero`` then
    sum over both operands of each product. ``bias_reads``: the output entries of the
    calls of a layer with a bias (one bias read each, :func:`~spikeflow.energy.simple_energy`).
    ``weight_bits``: the bits of the layer's quantized weight
    (:func:`spikeflow.quant.weight_bits`; ``None``: not quantized, a float word).
    """

    name: str
    kind: str
    calls: int = 0
    spike_calls: int = 0
    count_calls: int = 0
    graded_calls: int = 0
    acs: int = 0
    macs: int = 0
    input_elements: int = 0
    input_nonzero: int = 0
    bias_reads: int = 0
    weight_bits: int | None = None

    @property
    def input_density(self) -> float:
        """Share of the layer's input entries that were nonzero."""
        return self.input_nonzero / self.input_elements if self.input_elements else 0.0

    @property
    def input_kind(self) -> str:
        """What the calls read: ``spikes``, ``counts``, ``graded``, ``real`` or
        ``mixed``."""
        if self.graded_calls == self.calls:
            return "graded"
        if self.spike_calls == self.calls:
            return "spikes"
        if self.count_calls == self.calls:
            return "counts"
        event = self.spike_calls + self.count_calls + self.graded_calls
        return "real" if event == 0 else "mixed"


@dataclass
class NeuronOperations:
    """The state updates of one layer of declared neurons, summed over the calls counted.

    Per neuron and step: the additions, multiplications and comparisons of its charge
    equation (and of a declared threshold, fire, update or reset rule), counted from the
    declaration; the shared firing rule ``Θ(H - θ)`` is one comparison. The shared
    reset acts per spike (``resets``, the output's nonzero entries): a soft reset
    ``H - θ`` is one addition each, a hard reset an assignment (no arithmetic).
    ``other`` counts the operations of other kinds (``exp``, ``sigmoid``, ``where``,
    ...) by name: listed, not priced. ``state_words``: the state variables the updates
    read (and write back), per neuron and step (the membrane, and a declared neuron's
    auxiliary states: ``CubaLIFNode``'s current too).
    """

    name: str
    kind: str
    calls: int = 0
    neuron_steps: int = 0
    resets: int = 0
    additions: int = 0
    multiplications: int = 0
    comparisons: int = 0
    other: dict[str, int] = field(default_factory=dict)
    state_words: int = 0

    def energy(self, e_add: float = E_AC, e_mul: float = E_MUL) -> float:
        """Joules of the counted updates (all calls): ``e_add`` per addition and per
        comparison (a comparator is a subtractor), ``e_mul`` per multiplication."""
        return e_add * (self.additions + self.comparisons) + e_mul * self.multiplications


@dataclass
class OperationReport:
    """Operations per layer, with totals and energy per sample.

    ``layers``: the synaptic operations (ACs, MACs) of each layer and the products
    between activations; ``neurons``: the neurons' own state updates, reported apart
    (they are not synaptic operations) and left out of :meth:`energy` unless asked.
    ``not_counted`` lists modules whose weights were not counted,
    ``neurons_not_counted`` spiking layers whose updates were not, each with the
    reason.
    """

    layers: list[LayerOperations]
    samples: int
    not_counted: list[str] = field(default_factory=list)
    neurons: list[NeuronOperations] = field(default_factory=list)
    neurons_not_counted: list[str] = field(default_factory=list)

    @property
    def acs(self) -> float:
        """Accumulates per sample (spike-driven synaptic operations, SOPs)."""
        return sum(layer.acs for layer in self.layers) / self.samples

    @property
    def macs(self) -> float:
        """Multiply-accumulates per sample (layers fed real values)."""
        return sum(layer.macs for layer in self.layers) / self.samples

    @property
    def neuron_additions(self) -> float:
        """The neurons' additions per sample (soft resets included)."""
        return sum(n.additions for n in self.neurons) / self.samples

    @property
    def neuron_multiplications(self) -> float:
        """The neurons' multiplications per sample."""
        return sum(n.multiplications for n in self.neurons) / self.samples

    @property
    def neuron_comparisons(self) -> float:
        """The neurons' comparisons per sample (firing decisions)."""
        return sum(n.comparisons for n in self.neurons) / self.samples

    def neuron_energy(self, e_add: float = E_AC, e_mul: float = E_MUL) -> float:
        """The neurons' state updates in joules per sample (see
        :meth:`NeuronOperations.energy`)."""
        return sum(n.energy(e_add, e_mul) for n in self.neurons) / self.samples

    def energy(
        self,
        e_ac: float = E_AC,
        e_mac: float = E_MAC,
        neurons: bool = False,
        e_mul: float = E_MUL,
    ) -> float:
        """Estimated energy per sample in joules: ``e_ac × ACs + e_mac × MACs``; with
        ``neurons=True`` plus the neurons' updates (``e_ac`` per addition and
        comparison, ``e_mul`` per multiplication)."""
        synaptic = e_ac * self.acs + e_mac * self.macs
        return synaptic + (self.neuron_energy(e_ac, e_mul) if neurons else 0.0)

    def __str__(self) -> str:
        width = max([len("layer"), *(len(layer.name) for layer in self.layers)])
        lines = [
            f"{'layer':<{width}} {'kind':<10} {'input':>7} {'ACs/sample':>14} {'MACs/sample':>14}",
        ]
        for layer in self.layers:
            lines.append(
                f"{layer.name:<{width}} {layer.kind:<10} {layer.input_kind:>7} "
                f"{layer.acs / self.samples:>14,.0f} {layer.macs / self.samples:>14,.0f}"
            )
        lines.append(
            f"total: {self.acs:,.0f} ACs and {self.macs:,.0f} MACs per sample; "
            f"energy {self.energy() * 1e6:.4g} µJ per sample "
            f"(AC {E_AC * 1e12:g} pJ, MAC {E_MAC * 1e12:g} pJ)"
        )
        if self.not_counted:
            lines.append(f"not counted: {', '.join(self.not_counted)}")
        if self.neurons:
            lines += ["", *format_neurons(self.neurons, self.samples)]
            lines.append(
                f"neuron updates: {self.neuron_energy() * 1e6:.4g} µJ per sample "
                f"(add/compare {E_AC * 1e12:g} pJ, multiply {E_MUL * 1e12:g} pJ), not in the "
                "energy above (energy(neurons=True) adds them)"
            )
        if self.neurons_not_counted:
            lines.append(f"neuron updates not counted: {', '.join(self.neurons_not_counted)}")
        return "\n".join(lines)


def format_neurons(neurons: list[NeuronOperations], samples: int, indent: str = "") -> list[str]:
    """The table of the neurons' updates per sample (``spikeflow eval`` prints it too)."""
    width = max([len("neuron layer"), *(len(n.name) for n in neurons)])
    lines = [
        f"{indent}{'neuron layer':<{width}} {'kind':<16} {'adds/sample':>13} "
        f"{'muls/sample':>13} {'cmps/sample':>13} {'resets/sample':>13}"
    ]
    for n in neurons:
        other = ", ".join(f"{op} {count / samples:,.0f}" for op, count in sorted(n.other.items()))
        lines.append(
            f"{indent}{n.name:<{width}} {n.kind:<16} {n.additions / samples:>13,.0f} "
            f"{n.multiplications / samples:>13,.0f} {n.comparisons / samples:>13,.0f} "
            f"{n.resets / samples:>13,.0f}" + (f"  other: {other}" if other else "")
        )
    return lines
