"""Training memory: recompute blocks in the backward pass (gradient checkpointing made
exact for spiking networks) and keep spike tensors at one bit per element.

See ``docs/memory.md``.
"""

from spikeflow.memory.packing import PackedSpikes, is_binary, pack_spikes, unpack_spikes
from spikeflow.memory.recompute import (
    Recomputed,
    has_recomputed_blocks,
    is_recomputing,
    recompute_blocks,
    reruns_forward,
    undo_recompute,
)

__all__ = [
    "PackedSpikes",
    "Recomputed",
    "has_recomputed_blocks",
    "is_binary",
    "is_recomputing",
    "pack_spikes",
    "recompute_blocks",
    "reruns_forward",
    "undo_recompute",
    "unpack_spikes",
]
