"""The field's simple energy estimate, with the memory traffic of parameters and states.

Most SNN papers price a network's synaptic operations at Horowitz's 45 nm 32-bit float
figures (ISSCC 2014): ``E = E_AC·ACs + E_MAC·MACs`` with 0.9 pJ and 4.6 pJ
(:meth:`OperationReport.energy`). SpikingJelly 2.0's ``estimate_simple_energy`` adds
the logical memory traffic of a neuromorphic inference (as the STEP benchmark does,
3.12 pJ per bit: 24.96 pJ per byte):

* a weight read per synaptic operation (each AC or MAC of a linear or convolution
  layer multiplies one weight), a bias read per output entry of a layer with a bias;
* per neuron and step, one read and one write of each state variable (the membrane,
  and a declared neuron's auxiliary states);

each a word of ``word_bytes`` bytes (4: float32), except the weights of a quantized
layer (:func:`spikeflow.quant.weight_bits`: ``--weight-bits``, Loihi's grid), each read at
its ``bits / 8`` bytes (a 4-bit weight: half a byte; its biases and the neurons' states
stay words)::

    E = E_AC·ACs + E_MAC·MACs + e_byte·(Σ_layers weight reads·bytes per weight
        + word_bytes·(bias reads + 2·state words))

:func:`simple_energy` computes it from an :class:`~spikeflow.energy.OperationReport`
(what :func:`~spikeflow.energy.count_operations` or an
:class:`~spikeflow.energy.OperationCounter` gives), per sample. Inputs, outputs,
spike queues, addressing and intermediate tensors are outside this model (Lemaire et
al.'s :func:`~spikeflow.energy.memory_energy_report` prices them).
"""

from __future__ import annotations

from dataclasses import dataclass

from spikeflow.energy._shared import check_joules
from spikeflow.energy.report import E_AC, E_MAC, E_MUL, OperationReport
from spikeflow.errors import ConfigurationError

__all__ = ["E_MEMORY_BYTE", "SimpleEnergy", "simple_energy"]

#: Joules per byte moved to or from memory: 3.12 pJ per bit, the figure the STEP
#: benchmark (and SpikingJelly's ``SimpleEnergyCostConfig``) uses.
E_MEMORY_BYTE = 24.96e-12


@dataclass(frozen=True)
class SimpleEnergy:
    """The simple estimate per sample (see :mod:`spikeflow.energy.simple`).

    Attributes:
        mac, ac: joules of the MACs and the ACs (synaptic operations and products
            between activations).
        neurons: joules of the neurons' own updates (0 unless asked for,
            :meth:`OperationReport.neuron_energy`).
        parameters: joules of the weight and bias reads.
        neuron_states: joules of the state reads and writes.
        weight_reads, bias_reads: words read per sample (a quantized weight counts
            as one read).
        state_words: state words read per sample (as many are written).
        weight_bytes: bytes of the weight reads per sample (a quantized layer's at its
            bits, the others' at ``word_bytes``).
    """

    mac: float
    ac: float
    neurons: float
    parameters: float
    neuron_states: float
    weight_reads: float
    bias_reads: float
    state_words: float
    weight_bytes: float = 0.0

    @property
    def compute(self) -> float:
        """Joules of the arithmetic: MACs, ACs (and the neurons' updates when asked)."""
        return self.mac + self.ac + self.neurons

    @property
    def memory(self) -> float:
        """Joules of the memory traffic: parameters and neuron states."""
        return self.parameters + self.neuron_states

    @property
    def total(self) -> float:
        """Joules per sample, arithmetic and memory."""
        return self.compute + self.memory


def simple_energy(
    report: OperationReport,
    e_ac: float = E_AC,
    e_mac: float = E_MAC,
    e_byte: float = E_MEMORY_BYTE,
    word_bytes: int = 4,
    neurons: bool = False,
    e_mul: float = E_MUL,
) -> SimpleEnergy:
    """The simple energy estimate of ``report``, per sample (see
    :mod:`spikeflow.energy.simple`).

    Args:
        report: an operation count (:func:`~spikeflow.energy.count_operations`).
        e_ac, e_mac: joules per accumulate and multiply-accumulate (Horowitz 45 nm
            float32: 0.9 and 4.6 pJ; SpikingJelly's fp16 preset is 0.4 and 1.5 pJ, its
            int8 preset 0.03 and 0.23 pJ).
        e_byte: joules per byte of memory traffic (:data:`E_MEMORY_BYTE`).
        word_bytes: bytes of a weight, a bias and a state variable (4: float32); a
            quantized layer's weight takes its ``weight_bits / 8`` bytes instead.
        neurons: add the neurons' updates (additions and comparisons at ``e_ac``,
            multiplications at ``e_mul``), as ``report.energy(neurons=True)``.

    Raises:
        ConfigurationError: ``report`` is no :class:`OperationReport`, a cost is not a
            finite number >= 0 or ``word_bytes`` not a positive integer.
    """
    if not isinstance(report, OperationReport):
        raise ConfigurationError(
            f"simple_energy: report must be an OperationReport (count_operations), got "
            f"{type(report).__name__}"
        )
    e_ac, e_mac, e_byte, e_mul = (check_joules("simple_energy", n, v) for n, v in
                                  (("e_ac", e_ac), ("e_mac", e_mac), ("e_byte", e_byte),
                                   ("e_mul", e_mul)))  # fmt: skip
    if isinstance(word_bytes, bool) or not isinstance(word_bytes, int) or word_bytes < 1:
        raise ConfigurationError(
            f"simple_energy: word_bytes must be a positive integer, got {word_bytes!r}"
        )
    if not isinstance(neurons, bool):
        raise ConfigurationError(f"simple_energy: neurons must be a bool, got {neurons!r}")
    samples = report.samples
    # Each synaptic operation of a layer reads its weight; products between
    # activations read none.
    synaptic = [r for r in report.layers if r.kind != "products"]
    weights = sum(r.acs + r.macs for r in synaptic) / samples
    # A quantized layer's weight is read at its own bits (a 4-bit weight: half a byte).
    weight_bytes = sum((r.acs + r.macs) * (word_bytes if r.weight_bits is None
                                           else r.weight_bits / 8)
                       for r in synaptic) / samples  # fmt: skip
    biases = sum(r.bias_reads for r in report.layers) / samples
    states = sum(n.state_words for n in report.neurons) / samples
    word = e_byte * word_bytes
    return SimpleEnergy(
        mac=e_mac * report.macs,
        ac=e_ac * report.acs,
        neurons=report.neuron_energy(e_ac, e_mul) if neurons else 0.0,
        parameters=e_byte * weight_bytes + word * biases,
        neuron_states=word * 2 * states,
        weight_reads=weights,
        bias_reads=biases,
        state_words=states,
        weight_bytes=weight_bytes,
    )
