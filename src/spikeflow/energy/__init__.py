"""Synaptic operations, neuron updates and energy estimates of a spiking network.

An SNN's linear and convolution layers do work only where an input spiked: each
(nonzero input, nonzero weight) pair that reaches an output is one accumulate (AC). A
layer fed real values (the first layer on images, a layer after average pooling or
voting) does a multiply-accumulate (MAC) for every (input, nonzero weight) pair. The
field's energy estimate (Horowitz, ISSCC 2014, 45 nm, 32-bit float) prices an AC at
0.9 pJ and a MAC at 4.6 pJ::

    from spikeflow.energy import count_operations
    report = count_operations(model, x)          # x: [T, B, ...], one forward, no_grad
    print(report)                                # per layer: ACs, MACs, input kind
    report.energy()                              # joules per sample
    report.energy(neurons=True)                  # plus the neurons' state updates

or, over many batches, ``with OperationCounter(model) as counter: ...`` and
``counter.report(samples)``.

**Layers.** Counts are exact: they are computed with the layer's own convolution
(stride, padding mode, dilation, groups) on 0/1 masks of the input and of the weight,
so products with zero padding and with pruned (zero) weights are not counted. An input
is read as spikes when all its nonzero entries have the same magnitude (``{0, 1}``,
signed ``{0, ±1}``, or spikes scaled by one constant); other inputs are real-valued.
Biases, batch norm, pooling and residual additions are not counted (as in most papers'
estimates). Layers counted: ``nn.Linear``, ``nn.Conv1d/2d/3d``,
``nn.ConvTranspose1d/2d/3d`` and their subclasses (spikeflow's sequence layers, the
event-driven layers, with the standardised weight they compute with);
``nn.MultiheadAttention`` from its inputs (its input projections ``<name>.in_proj``, the
products ``Q Kᵀ`` and ``A V`` of real values, ``2 L S E`` MACs per sample, and
``<name>.out_proj`` over the attended values), on its fused and its ``bmm`` path alike;
other modules with weights of their own (matrices or kernels: LSTMs, embeddings, PSN
neurons) and counted layers whose forward never ran (a module applying its inner
layer's weight directly) are listed as not counted. The recurrent layers that
apply their weights with ``F.linear`` are counted from their inputs and the outputs
they feed back: ``layers.Recurrent`` (as ``<name>.recurrent``) and
``LinearRecurrentContainer`` (``<name>.rc`` for the input part, ``<name>.rc
(recurrent)`` for the feedback). So is Bellec et al.'s
:class:`~spikeflow.learn.EPropRSNN` (the zoo's ``eprop_rsnn``), whose loop applies
``W^in`` and the masked ``W^rec`` with ``F.linear``: ``<name>.input`` from its input,
``<name>.recurrent`` from the spikes ``z[t-1]`` its neurons fed back (read from its
:class:`~spikeflow.neurons.SpikeTap`; no self-connections), per forward call, and per
:meth:`~spikeflow.learn.EPropRSNN.step` call for its one step. Weights
are taken as stored sparse (a zero weight costs nothing); inputs arrive at run time, so
a layer fed real values multiplies its zero inputs too, while a spike input is
event-driven. A sigma-delta network's layers (the layer inside a
:class:`~spikeflow.layers.sigma_delta.DeltaSynapse`) are fed graded spikes, the changes
of their input: event-driven like spikes, but each carries a value, so each (nonzero
delta, nonzero weight) pair is a MAC (Loihi 2's graded spikes) and zero deltas cost
nothing; their rows read ``graded``.

**Products between activations** (spiking self-attention's ``Q Kᵀ V``, ``K ⊙ V``,
QKFormer's ``A ⊙ K``): counted while the model runs by a ``TorchFunctionMode``
(:mod:`spikeflow.energy.products`), exactly on masks, in a row
``<module> (activation products)`` of kind ``products`` for the module whose forward
ran them: with a spike operand one AC per (nonzero spike, entry of the other operand)
pair that meets in an output (zeros of a real-valued operand included, as a layer fed
real values), between two real-valued operands one MAC per pair.

**Neuron updates** (:mod:`spikeflow.energy.neuron_updates`): per neuron and step, the
additions, multiplications and comparisons of a declared neuron's charge equation,
counted from its declaration for its parameter values, one comparison for firing, and
per spike a soft reset's addition (a hard reset is an assignment). They are not
synaptic operations: reported apart (``report.neurons``) and left out of
:meth:`OperationReport.energy` unless ``neurons=True``. Spiking layers of other kinds
are listed in ``report.neurons_not_counted`` with the reason.

**Analog outputs.** A neuron with an analog output (``output_is_spikes`` False:
:class:`~spikeflow.neurons.LIAFNode`, which outputs ``act(H)``) feeds real values, so a
layer it feeds does a MAC per (input, nonzero weight) pair, zeros included, whatever
values it happens to output (all zeros, or one magnitude, which would read as spikes).
For a model holding such neurons the same mode follows what is computed from their
outputs (pooling, flattening, normalisation, residual sums of them stay real-valued) up
to the next spiking neuron, whose output is spikes again; the other inputs are read by
value as above.

**Memory accesses** (:mod:`spikeflow.energy.memory_model`,
:func:`memory_energy_report`): Lemaire et al.'s (ICONIP 2022) analytical model, which
adds to the operations the addressing and the memory reads and writes of weights,
membrane potentials, inputs and outputs, priced by memory size, for the spiking network
and the formal network of the same architecture.

**The simple estimate with memory traffic** (:mod:`spikeflow.energy.simple`,
:func:`simple_energy`): the ACs and MACs priced as above plus a weight read per synaptic
operation, a bias read per output entry and a read and a write of each neuron state
per neuron and step, at 24.96 pJ per byte (SpikingJelly 2.0's
``estimate_simple_energy``), computed from an :class:`OperationReport`.

**SpikeSim** (:mod:`spikeflow.energy.spikesim`, :func:`spikesim_energy_report`): Moitra
et al.'s (TCAD 2023) compute-in-memory crossbar model of the ``Conv2d`` layers, dense
(the released model) or event-driven (SpikingJelly 2.0's reading).

**NeuroMC** (:mod:`spikeflow.energy.neuromc`, :func:`neuromc_energy_report`): Li et
al.'s multi-core SNN training accelerator's energy of a forward pass, its backward and
the optimizer's update, through registers and SRAMs (SpikingJelly 2.0's
``estimate_neuromc_runtime_energy``).

**NeuroBench** (:mod:`spikeflow.energy.neurobench`, :func:`neurobench_metrics`):
NeuroBench 2.3.0's static and workload metrics under its own definitions.
"""

from spikeflow.energy.counter import OperationCounter, count_operations
from spikeflow.energy.memory_access import MemoryAccessCounter, count_memory_access
from spikeflow.energy.memory_model import (
    HOROWITZ_45NM,
    HOROWITZ_SRAM_45NM,
    AccessCounts,
    EnergyComponents,
    LayerGeometry,
    Technology,
    ann_counts,
    snn_counts,
)
from spikeflow.energy.memory_report import (
    LayerMemoryEnergy,
    MemoryEnergyReport,
    memory_energy_report,
)
from spikeflow.energy.neurobench import (
    NeuroBenchCounter,
    NeuroBenchResults,
    format_neurobench,
    neurobench_metrics,
    neurobench_static,
)
from spikeflow.energy.neuromc import NeuroMCReport, NeuroMCWork, neuromc_energy_report
from spikeflow.energy.neuromc_costs import NEUROMC_MEMORIES, NeuroMCMemory
from spikeflow.energy.neuron_updates import StepOperations, step_operations
from spikeflow.energy.report import (
    E_AC,
    E_MAC,
    E_MUL,
    LayerOperations,
    NeuronOperations,
    OperationReport,
)
from spikeflow.energy.simple import E_MEMORY_BYTE, SimpleEnergy, simple_energy
from spikeflow.energy.spikesim import (
    SpikeSimCosts,
    SpikeSimLayer,
    SpikeSimReport,
    spikesim_energy_report,
)

__all__ = [
    "E_AC",
    "E_MAC",
    "E_MEMORY_BYTE",
    "E_MUL",
    "HOROWITZ_45NM",
    "HOROWITZ_SRAM_45NM",
    "NEUROMC_MEMORIES",
    "AccessCounts",
    "EnergyComponents",
    "LayerGeometry",
    "LayerMemoryEnergy",
    "LayerOperations",
    "MemoryAccessCounter",
    "MemoryEnergyReport",
    "NeuroBenchCounter",
    "NeuroBenchResults",
    "NeuroMCMemory",
    "NeuroMCReport",
    "NeuroMCWork",
    "NeuronOperations",
    "OperationCounter",
    "OperationReport",
    "SimpleEnergy",
    "SpikeSimCosts",
    "SpikeSimLayer",
    "SpikeSimReport",
    "StepOperations",
    "Technology",
    "ann_counts",
    "count_memory_access",
    "count_operations",
    "format_neurobench",
    "memory_energy_report",
    "neurobench_metrics",
    "neurobench_static",
    "neuromc_energy_report",
    "simple_energy",
    "snn_counts",
    "spikesim_energy_report",
    "step_operations",
]
