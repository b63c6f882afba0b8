"""NeuroMC's costs and the price of one piece of work on its cores.

Li et al., "A High Energy-Efficiency Multi-core Neuromorphic Architecture for Deep SNN
Training" (arXiv 2412.05302; Nature Communications, doi:10.1038/s41467-026-70586-x)
give each core a forward (FP), a backward (BP) and a weight-gradient (WG) engine. The
constants here are those of the authors' released model (github.com/dayanhn/NeuroMC,
commit 712c66f) as SpikingJelly 2.0 carries them (32 nm, 16-bit values, 1-bit spikes,
32-bit optimizer state): per-access energies of registers, per-core SRAMs, a 2 MB SRAM
(batch-norm statistics) and a 6 MB SRAM (optimizer state), and per-operation energies.

A piece of work (:class:`Work`) is one layer's product on one engine (a forward pass,
the input gradient, the weight gradient), or a layer's elementwise work (a neuron's
soma update or its surrogate-gradient backward, a batch norm forward or backward), or
the optimizer's update of the parameters. :func:`price` maps it onto the memories with
a weight-stationary dataflow that reduces over 16 channels at a time, and returns its
operations and its memory traffic by level and direction (``rh2l``: read from the upper
level toward the compute, ``wl2h``: written back up, ``rl2h``/``wh2l``: the partial
sums' return path inside the registers). DRAM, the network on chip and the SRAMs'
``rl2h``/``wh2l`` traffic are left out, as in the released model's paper energy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

from spikeflow.errors import ConfigurationError

__all__ = [
    "NEUROMC_MAC_J",
    "NEUROMC_MEMORIES",
    "NEUROMC_OP_J",
    "NeuroMCMemory",
    "Priced",
    "Work",
    "check_memories",
    "price",
]

_PJ = 1e-12
#: Joules of one elementwise operation (a mux is 1/16 of an adder).
NEUROMC_OP_J: dict[str, float] = {
    "mux": 0.548 / 16.0 * _PJ,
    "add": 0.548 * _PJ,
    "mul": 0.812 * _PJ,
    "comp": 0.056 * _PJ,
    "sqrt": 0.514 * _PJ,
}
_GATED_ADD = NEUROMC_OP_J["add"] + NEUROMC_OP_J["mux"]  # a spike selects the weight
_MUL_ADD = NEUROMC_OP_J["add"] + NEUROMC_OP_J["mul"]
#: Joules of one multiply-accumulate on each engine: spikes gate an adder (forward,
#: weight gradient fed spikes); real values multiply.
NEUROMC_MAC_J: dict[str, float] = {
    "fp_soma": _GATED_ADD,
    "wg": _GATED_ADD,
    "bp_grad": _MUL_ADD,
    "ann_fe": _MUL_ADD,
    "ann_be": _MUL_ADD,
    "ann_we": _MUL_ADD,
}


@dataclass(frozen=True)
class NeuroMCMemory:
    """One memory of the hierarchy.

    Attributes:
        size_bits: its capacity in bits (a weight SRAM holds a layer's weights when
            ``reuse_weights`` is asked and they fit).
        read_width, write_width: the bits one read or write access moves.
        read_j, write_j: joules of one read or write access.
    """

    size_bits: int
    read_width: int
    write_width: int
    read_j: float
    write_j: float

    def cost(self, bits: int, write: bool) -> float:
        """Joules of moving ``bits`` bits (``bits / width`` accesses, fractional)."""
        if write:
            return bits / self.write_width * self.write_j
        return bits / self.read_width * self.read_j


def _mem(size: int, width: int, read_pj: float, write_pj: float | None = None) -> NeuroMCMemory:
    write = read_pj if write_pj is None else write_pj
    return NeuroMCMemory(size, width, width, read_pj * _PJ, write * _PJ)


_REG_16 = 0.14416 / 7.1 * 2  # pJ per 16-bit register access (scaled to 32 nm)
_CONV_W, _CONV_16, _SOMA_16, _SOMA_1 = 5.302477904, 5.792676768, 92.68282828, 7.176767677
#: The NeuroMC v1 memories (bits, access widths, energies), by the released model's names.
NEUROMC_MEMORIES: dict[str, NeuroMCMemory] = {
    "reg_1b": _mem(1, 1, 0.00901 / 7.1 * 2),
    "reg_16b": _mem(16, 16, _REG_16),
    "reg_32b": _mem(32, 32, 2 * _REG_16),
    "sram_fp_conv_in_s": _mem(18496 * 16, 1, 0.44854798),
    "sram_fp_conv_in_w": _mem(18432 * 256, 16, _CONV_W),
    "sram_fp_conv_out_xi": _mem(65536 * 16, 16, _CONV_16),
    "sram_fp_soma_u": _mem(1048576, 256, _SOMA_16),
    "sram_fp_soma_s": _mem(262144, 16, _SOMA_1),
    "sram_fp_soma_smask": _mem(65536, 16, _SOMA_1),
    "sram_bp_conv_in_du": _mem(73984 * 16, 16, _CONV_16),
    "sram_bp_conv_in_w": _mem(18432 * 256, 16, _CONV_W),
    "sram_bp_conv_out_res": _mem(65536 * 16, 16, _CONV_16),
    "sram_bp_grad_in_u": _mem(1048576, 256, _SOMA_16),
    "sram_bp_grad_in_smask": _mem(65536, 16, _SOMA_1),
    "sram_bp_grad_in_s": _mem(65536, 16, _SOMA_1),
    "sram_bp_grad_out_du": _mem(1048576, 256, _SOMA_16),
    "sram_wg_conv_in_s": _mem(4624 * 16, 1, 0.44854798),
    "sram_wg_conv_in_du": _mem(65536 * 16, 16, _CONV_16),
    "sram_wg_conv_out_dw": _mem(18432 * 256, 16, _CONV_W),
    "sram_2MB": _mem(1048576 * 16, 256, 46.976, 45.96),
    "sram_6MB": _mem(50331648, 256, 458.1830181, 375.0422185),
}

#: (register, input SRAM, weight SRAM, output SRAM) memories of each engine; the
#: registers are ``(input, weight, output)``, a spike input's register 1 bit wide.
_ENGINES: dict[str, tuple[tuple[str, str, str], tuple[str, str, str]]] = {
    "fp_soma": (("reg_1b", "reg_16b", "reg_16b"),
                ("sram_fp_conv_in_s", "sram_fp_conv_in_w", "sram_fp_conv_out_xi")),
    "ann_fe": (("reg_16b",) * 3, ("sram_fp_conv_in_w", "sram_fp_conv_in_w", "sram_fp_conv_out_xi")),
    "bp_grad": (("reg_16b",) * 3,
                ("sram_bp_conv_in_du", "sram_bp_conv_in_w", "sram_bp_conv_out_res")),
    "wg": (("reg_1b", "reg_16b", "reg_16b"),
           ("sram_wg_conv_in_s", "sram_wg_conv_in_du", "sram_wg_conv_out_dw")),
    "ann_we": (("reg_16b",) * 3,
               ("sram_wg_conv_in_du", "sram_wg_conv_in_du", "sram_wg_conv_out_dw")),
}  # fmt: skip
_ENGINES["ann_be"] = _ENGINES["bp_grad"]

# Elementwise work's variables: (name, count, bits, register, SRAM, reads, written).
# Counts: "N" one per element, "CT" one per channel and step. Reads and writes are
# per element, at the register and at the SRAM alike.
_R16 = "reg_16b"
_SOMA_FORWARD = (
    ("x", "N", 16, _R16, "sram_fp_conv_out_xi", 1, True),  # the layer's output, in
    ("u", "N", 16, _R16, "sram_fp_soma_u", 1, True),  # membrane potential
    ("s", "N", 1, "reg_1b", "sram_fp_soma_s", 1, True),  # spike
    ("smask", "N", 1, "reg_1b", "sram_fp_soma_smask", 0, True),  # surrogate mask
)
_SOMA_BACKWARD = (  # written: the gradient to the register, the potential to the SRAM
    ("res", "N", 16, _R16, "sram_bp_conv_out_res", 1, False),
    ("u", "N", 16, _R16, "sram_bp_grad_in_u", 1, "sram"),
    ("s", "N", 1, "reg_1b", "sram_bp_grad_in_s", 1, False),
    ("smask", "N", 1, "reg_1b", "sram_bp_grad_in_smask", 1, False),
    ("du", "N", 16, _R16, "sram_bp_grad_out_du", 1, "reg"),
)
_B = "sram_2MB"
_NORM_FORWARD = (
    ("mean", "CT", 16, _R16, _B, 2, True), ("var", "CT", 16, _R16, _B, 1, True),
    ("n", "N", 16, _R16, _B, 1, True), ("sqrt", "CT", 16, _R16, _B, 1, True),
    ("x_hat", "N", 16, _R16, _B, 1, True), ("gamma", "CT", 16, _R16, _B, 1, False),
    ("beta", "CT", 16, _R16, _B, 1, False),
)  # fmt: skip
_NORM_BACKWARD = (
    ("du_in", "N", 16, _R16, _B, 2, False), ("sqrt", "CT", 16, _R16, _B, 2, False),
    ("gamma", "CT", 16, _R16, _B, 2, False), ("m", "N", 16, _R16, _B, 3, True),
    ("n", "N", 16, _R16, _B, 3, False), ("sum_m", "CT", 16, _R16, _B, 1, True),
    ("sum_n", "CT", 16, _R16, _B, 1, True), ("sum_mn", "CT", 16, _R16, _B, 2, True),
    ("d_gamma", "CT", 16, _R16, _B, 0, True), ("d_beta", "CT", 16, _R16, _B, 0, True),
    ("du_out", "N", 16, _R16, _B, 0, True),
)  # fmt: skip
# Adam per parameter element: the value and its gradient read; the two moments and
# their bias-corrected copies read and written; the new value written.
_ADAM = (
    ("w", "P", 32, "reg_32b", "sram_6MB", 1, False),
    ("dw", "P", 32, "reg_32b", "sram_6MB", 1, False),
    ("m", "P", 32, "reg_32b", "sram_6MB", 1, True),
    ("v", "P", 32, "reg_32b", "sram_6MB", 1, True),
    ("m_hat", "P", 32, "reg_32b", "sram_6MB", 1, True),
    ("v_hat", "P", 32, "reg_32b", "sram_6MB", 1, True),
    ("w_new", "P", 32, "reg_32b", "sram_6MB", 0, True),
)
# AMSGrad's running maximum of the second moment, read and written (spikeflow's).
_AMSGRAD = (*_ADAM, ("v_max", "P", 32, "reg_32b", "sram_6MB", 1, True))


@dataclass(frozen=True)
class Work:
    """One piece of work for :func:`price` (see the module docstring).

    ``kind``: ``"mac"`` (a product on ``engine``), ``"soma"``, ``"norm"``, ``"sgd"``,
    ``"adam"``, ``"trace"``, ``"maxpool"``, ``"avgpool"``, ``"adjavgpool"`` or ``"scale"``. For
    ``"mac"``: ``macs``; ``reduce`` the
    channels summed per output (``C`` forward, ``K`` for the input gradient; for the
    weight gradient ``C`` and ``K``), ``taps`` the kernel's ``FY·FX``, ``weight_numel``
    the weights read,
    ``output_numel`` the outputs written, ``input_bits`` 1 for spikes else 16,
    ``reuse`` whether the weights stay in the weight SRAM; ``groups`` ``G``: a grouped
    convolution is ``G`` independent ones, so the fields above are one group's and the
    price is ``G`` times that group's. For ``"soma"``/``"norm"``:
    ``elements`` and (norm) ``channel_steps``, ``backward``. For the optimizer:
    ``elements`` the parameters updated; SGD's ``momentum``, ``weight_decay``,
    ``momentum_buffer`` (a buffer from an earlier step is read); Adam's ``amsgrad``
    (the running maximum of the second moments: a comparison, read and written). For
    the pools and the scale (spikeflow's convention, :mod:`spikeflow.energy.neuromc_pooling`):
    ``elements`` the outputs, ``window_inputs`` the sum of their windows' real inputs,
    ``input_numel``, ``input_bits`` and ``backward``.
    """

    kind: str
    engine: str = ""
    backward: bool = False
    macs: int = 0
    reduce: tuple[int, int] = (1, 1)
    taps: int = 1
    weight_numel: int = 0
    output_numel: int = 0
    input_bits: int = 16
    reuse: bool = False
    elements: int = 0
    channel_steps: int = 0
    momentum: bool = False
    weight_decay: bool = False
    momentum_buffer: bool = False
    window_inputs: int = 0
    input_numel: int = 0
    groups: int = 1
    amsgrad: bool = False


@dataclass
class Priced:
    """What a :class:`Work` costs: ``macs`` and their joules ``mac_j``; elementwise
    ``ops`` (mux, add, mul, comp, sqrt) and ``ops_j``; memory ``bits`` and joules by
    ``(level, direction)``, the dataflow's (``base``) and the elementwise work's
    (``extra``) apart."""

    macs: int
    mac_j: float
    ops: dict[str, int]
    ops_j: float
    bits: dict[tuple[str, str], int]
    base_j: dict[tuple[str, str], float]
    extra_j: dict[tuple[str, str], float]


class _Traffic:
    """Bits and joules by (level, direction)."""

    def __init__(self, memories: Mapping[str, NeuroMCMemory]) -> None:
        self.memories = memories
        self.bits: dict[tuple[str, str], int] = {}
        self.joules: dict[tuple[str, str], float] = {}

    def add(self, level: str, direction: str, bits: int, memory: str) -> None:
        if bits <= 0:
            return
        key = (level, direction)
        self.bits[key] = self.bits.get(key, 0) + bits
        cost = self.memories[memory].cost(bits, write=direction.startswith("w"))
        self.joules[key] = self.joules.get(key, 0.0) + cost


def _weights_fit(work: Work, memories: Mapping[str, NeuroMCMemory]) -> bool:
    """Whether the layer's weights, all ``groups`` of them, fit in its engine's weight
    SRAM (16 bits each): what ``reuse`` needs to keep them there between passes."""
    sram_w = _ENGINES[work.engine][1][1]
    return work.weight_numel * work.groups * 16 <= memories[sram_w].size_bits


def _dataflow(work: Work, memories: Mapping[str, NeuroMCMemory], flow: _Traffic) -> None:
    """The weight-stationary mapping of a product (``kind == "mac"``)."""
    (reg_i, reg_w, reg_o), (sram_i, sram_w, sram_o) = _ENGINES[work.engine]
    m, out, bits_i = work.macs, work.output_numel, work.input_bits
    if work.engine in ("wg", "ann_we"):  # inputs and gradients meet; dW accumulates
        for direction in ("rh2l", "wh2l"):
            flow.add("reg", direction, m * bits_i, reg_i)
            flow.add("reg", direction, m * 16, reg_w)
        flow.add("reg", "rl2h", out * 16, reg_o)
        flow.add("reg", "rh2l", (m - out) * 16, reg_o)
        flow.add("reg", "wl2h", m * 16, reg_o)
        c, k = work.reduce
        flow.add("sram", "rh2l", math.ceil(m / min(k, 16)) * bits_i, sram_i)
        flow.add("sram", "rh2l", math.ceil(m / min(c, 16)) * 16, sram_w)
        flow.add("sram", "wl2h", out * 16, sram_o)
        return
    chunks = math.ceil(work.reduce[0] / 16) * work.taps  # partial sums per output
    partial, streamed = out * (chunks - 1), out * chunks
    for direction in ("rh2l", "wh2l"):
        flow.add("reg", direction, m * bits_i, reg_i)
    if not (work.reuse and _weights_fit(work, memories)):
        for direction in ("rh2l", "wh2l"):
            flow.add("reg", direction, work.weight_numel * 16, reg_w)
        flow.add("sram", "rh2l", work.weight_numel * 16, sram_w)
    flow.add("reg", "rl2h", m * 16, reg_o)
    flow.add("reg", "rh2l", (m - out) * 16, reg_o)
    flow.add("reg", "wh2l", m * 16, reg_o)
    flow.add("reg", "wl2h", partial * 16, reg_o)
    flow.add("sram", "rh2l", streamed * bits_i, sram_i)
    flow.add("sram", "rh2l", partial * 16, sram_o)
    flow.add("sram", "wl2h", streamed * 16, sram_o)


def _elementwise_ops(work: Work) -> dict[str, int]:
    """Mux, add, mul, comp and sqrt counts of a soma, norm or optimizer work."""
    n, ct = work.elements, work.channel_steps
    if work.kind == "soma":
        if work.backward:  # surrogate gradient and the membrane's chain rule
            return {"mux": n, "add": 2 * n, "mul": 4 * n, "comp": 0, "sqrt": 0}
        return {"mux": n, "add": n, "mul": n, "comp": 3 * n, "sqrt": 0}
    if work.kind == "norm":
        if work.backward:
            return {"mux": 0, "add": 7 * n, "mul": 3 * n + 22 * ct, "comp": 0, "sqrt": 0}
        return {"mux": 0, "add": 3 * n + 2 * ct, "mul": 3 * n + 4 * ct, "comp": 0, "sqrt": ct}
    if work.kind == "adam":  # AMSGrad: the maximum of the second moments, one comparison
        return {"mux": 0, "add": 4 * n, "mul": 11 * n, "comp": n * work.amsgrad, "sqrt": n}
    if work.kind == "trace":  # Q = βQ + g x, P = αP + g Q
        return {"mux": 0, "add": 2 * n, "mul": 4 * n, "comp": 0, "sqrt": 0}
    if work.kind in _POOL_KINDS:  # n outputs; window_inputs - n pairs reduced
        ops = dict.fromkeys(("mux", "add", "mul", "comp", "sqrt"), 0)
        if work.backward:  # route (max) or scale (avg, scale) each output's gradient
            ops["mux" if work.kind == "maxpool" else "mul"] = n
            if work.kind == "adjavgpool":  # a window with spikes? 1 / its count (table)
                ops["comp"], ops["mux"] = n, n
        elif work.kind == "maxpool":
            ops["comp"] = work.window_inputs - n
        else:
            ops["add"], ops["mul"] = work.window_inputs - n, n
        return ops
    steps = 1 + work.weight_decay + (work.momentum and work.momentum_buffer)  # sgd
    return {"mux": 0, "add": steps * n, "mul": steps * n, "comp": 0, "sqrt": 0}


# DECOLLE's presynaptic traces Q and P per input (spikeflow's convention:
# spikeflow.energy.neuromc_modules), beside the soma's potential.
_TRACES = (
    ("q", "N", 16, _R16, "sram_fp_soma_u", 1, True),
    ("p", "N", 16, _R16, "sram_fp_soma_u", 1, True),
)
#: Spikeflow's register-level elementwise work (:mod:`spikeflow.energy.neuromc_pooling`).
_POOL_KINDS = ("maxpool", "avgpool", "adjavgpool", "scale")


def _variables(work: Work) -> tuple[tuple, ...]:
    if work.kind == "soma":
        return _SOMA_BACKWARD if work.backward else _SOMA_FORWARD
    if work.kind == "norm":
        return _NORM_BACKWARD if work.backward else _NORM_FORWARD
    if work.kind == "trace":
        return _TRACES
    return _AMSGRAD if work.amsgrad else _ADAM


def _pool_traffic(work: Work, flow: _Traffic) -> None:
    """A pooling's register reads and writes (no SRAM: see neuromc_pooling)."""
    spike_reg = "reg_1b" if work.input_bits == 1 else _R16
    if work.backward:  # each output's gradient in (and an adjusted pool's mean), every
        reads = 2 if work.kind == "adjavgpool" else 1  # input's gradient out
        flow.add("reg", "rh2l", reads * work.elements * 16, _R16)
        flow.add("reg", "wl2h", work.input_numel * 16, _R16)
        return
    flow.add("reg", "rh2l", work.window_inputs * work.input_bits, spike_reg)
    if work.kind == "maxpool":  # the max of spikes is a spike
        flow.add("reg", "wl2h", work.elements * work.input_bits, spike_reg)
    else:
        flow.add("reg", "wl2h", work.elements * 16, _R16)


def _elementwise_traffic(work: Work, flow: _Traffic) -> None:
    """The elementwise work's reads and writes of its variables."""
    if work.kind in _POOL_KINDS:
        _pool_traffic(work, flow)
        return
    if work.kind == "sgd":  # 32-bit value and gradient in the 6 MB SRAM
        bits = work.elements * 32
        reads = 2 + (work.momentum and work.momentum_buffer)
        flow.add("sram", "rh2l", reads * bits, "sram_6MB")
        flow.add("sram", "wl2h", (1 + work.momentum) * bits, "sram_6MB")
        return
    if work.kind == "trace":  # the input, 1 bit if spikes
        reg = "reg_1b" if work.input_bits == 1 else _R16
        flow.add("reg", "rh2l", work.elements * work.input_bits, reg)
    counts = {"N": work.elements, "CT": work.channel_steps, "P": work.elements}
    for _name, count, width, reg, sram, reads, written in _variables(work):
        bits = counts[count] * width
        for level, memory in (("reg", reg), ("sram", sram)):
            flow.add(level, "rh2l", bits * reads, memory)
            if written is True or written == level:
                flow.add(level, "wl2h", bits, memory)


def check_memories(memories: Mapping[str, NeuroMCMemory] | None) -> Mapping[str, NeuroMCMemory]:
    """``memories`` (default :data:`NEUROMC_MEMORIES`) after checking that every memory
    the model uses is there and is a :class:`NeuroMCMemory`; a ConfigurationError names
    what is missing or wrong."""
    if memories is None:
        return NEUROMC_MEMORIES
    missing = sorted(set(NEUROMC_MEMORIES) - set(memories))
    if missing:
        raise ConfigurationError(f"NeuroMC: memories lacks {missing}")
    for name, memory in memories.items():
        if not isinstance(memory, NeuroMCMemory):
            raise ConfigurationError(
                f"NeuroMC: memories[{name!r}] must be a NeuroMCMemory, got {type(memory).__name__}"
            )
    return memories


def price(work: Work, memories: Mapping[str, NeuroMCMemory] = NEUROMC_MEMORIES) -> Priced:
    """The operations, memory traffic and joules of one :class:`Work`."""
    if work.kind == "mac" and work.groups > 1:  # G identical groups, one after another
        # the weights stay in the SRAM across passes only if all G groups' fit there
        one = replace(work, groups=1, reuse=work.reuse and _weights_fit(work, memories))
        return _times(price(one, memories), work.groups)
    base, extra = _Traffic(memories), _Traffic(memories)
    if work.kind == "mac":
        ops = dict.fromkeys(("mux", "add", "mul", "comp", "sqrt"), 0)
        if work.macs > 0:
            _dataflow(work, memories, base)
        mac_j = work.macs * NEUROMC_MAC_J[work.engine]
    else:
        ops = _elementwise_ops(work)
        _elementwise_traffic(work, extra)
        mac_j = 0.0
    bits = dict(base.bits)
    for key, value in extra.bits.items():
        bits[key] = bits.get(key, 0) + value
    ops_j = sum(count * NEUROMC_OP_J[op] for op, count in ops.items())
    return Priced(work.macs, mac_j, ops, ops_j, bits, base.joules, extra.joules)


def _times(one: Priced, count: int) -> Priced:
    """``count`` copies of the work priced as ``one``."""
    return Priced(
        one.macs * count,
        one.mac_j * count,
        {op: n * count for op, n in one.ops.items()},
        one.ops_j * count,
        {key: n * count for key, n in one.bits.items()},
        {key: j * count for key, j in one.base_j.items()},
        {key: j * count for key, j in one.extra_j.items()},
    )
