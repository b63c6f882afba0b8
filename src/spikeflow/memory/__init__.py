"""Training memory: recompute blocks in the backward pass (gradient checkpointing made
exact for spiking networks) and keep spike tensors at one bit per element; SpikingJelly's
bit packing (``bit_*``) and Linear on packed or binary spikes (``packed_spike_linear``,
``sparse_linear``); :func:`optimize` chooses the blocks to recompute for a memory budget
by measurement; :func:`pack_conv_bn` runs adjacent sequence Conv/BatchNorm pairs with one
fold of time into the batch.

See ``docs/memory.md``.
"""

from spikeflow.memory.blocks import has_recomputed_blocks, recompute_blocks, undo_recompute
from spikeflow.memory.conv_bn import (
    has_packed_conv_bn,
    pack_conv_bn,
    packable_conv_bn,
    unpack_conv_bn,
)
from spikeflow.memory.optimize import BlockCost, MemoryPlan, optimize, step_peak_memory
from spikeflow.memory.packing import (
    PackedSpikes,
    is_binary,
    pack_counts,
    pack_spikes,
    unpack_spikes,
)
from spikeflow.memory.recompute import Recomputed, is_recomputing, reruns_forward
from spikeflow.memory.spike_linear import (
    bit_pack_spike_dense,
    bit_spike_compress,
    bit_spike_decompress,
    packed_spike_linear,
    sparse_linear,
)

__all__ = [
    "BlockCost",
    "MemoryPlan",
    "PackedSpikes",
    "Recomputed",
    "bit_pack_spike_dense",
    "bit_spike_compress",
    "bit_spike_decompress",
    "has_packed_conv_bn",
    "has_recomputed_blocks",
    "is_binary",
    "is_recomputing",
    "optimize",
    "pack_conv_bn",
    "pack_counts",
    "pack_spikes",
    "packable_conv_bn",
    "packed_spike_linear",
    "recompute_blocks",
    "reruns_forward",
    "sparse_linear",
    "step_peak_memory",
    "undo_recompute",
    "unpack_conv_bn",
    "unpack_spikes",
]
