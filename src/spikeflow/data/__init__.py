"""Neuromorphic data: readers for sensor files, datasets, representations, transforms.

Datasets yield one sample as ``[T, C, H, W]`` frames (or an EventRecording) plus a
label; a DataLoader batches to ``[B, T, C, H, W]``; spikeflow's layers are time-major,
so make a batch ``[T, B, C, H, W]`` with ``x = x.transpose(0, 1)``.
"""

from spikeflow.data.audio import AudioToEvents, level_crossings, mel_filterbank, mel_spectrogram
from spikeflow.data.cache import ArrayCache, default_cache_dir, file_identity, parallel_map
from spikeflow.data.datasets import (
    ASLDVS,
    CIFAR10DVS,
    FSDD,
    HARDVS,
    NCARS,
    NMNIST,
    POKERDVS,
    SHD,
    SSC,
    DatasetNotFoundError,
    DVS128Gesture,
    DVSLip,
    ESImageNet,
    NAVGesture,
    NCaltech101,
    NeuromorphicDataset,
    SpeechCommands,
    SpikingHeidelbergDigits,
    SpikingSpeechCommands,
)
from spikeflow.data.download import DownloadError, UnsafeArchiveError, download_url, extract_archive
from spikeflow.data.events import EVENT_DTYPE, EventRecording, format_error, make_events
from spikeflow.data.frames import pad_collate, segment_index, to_frames, to_frames_by_duration
from spikeflow.data.representations import (
    CustomRepresentation,
    Representation,
    ToFrame,
    ToFrameByDuration,
    ToTimeSurface,
    ToVoxelGrid,
    to_time_surfaces,
    to_voxel_grid,
)
from spikeflow.data.transforms import Compose

__all__ = [
    "ASLDVS",
    "CIFAR10DVS",
    "EVENT_DTYPE",
    "FSDD",
    "HARDVS",
    "NCARS",
    "NMNIST",
    "POKERDVS",
    "SHD",
    "SSC",
    "ArrayCache",
    "AudioToEvents",
    "Compose",
    "CustomRepresentation",
    "DVS128Gesture",
    "DVSLip",
    "DatasetNotFoundError",
    "DownloadError",
    "ESImageNet",
    "EventRecording",
    "NAVGesture",
    "NCaltech101",
    "NeuromorphicDataset",
    "Representation",
    "SpeechCommands",
    "SpikingHeidelbergDigits",
    "SpikingSpeechCommands",
    "ToFrame",
    "ToFrameByDuration",
    "ToTimeSurface",
    "ToVoxelGrid",
    "UnsafeArchiveError",
    "default_cache_dir",
    "download_url",
    "extract_archive",
    "file_identity",
    "format_error",
    "level_crossings",
    "make_events",
    "mel_filterbank",
    "mel_spectrogram",
    "pad_collate",
    "parallel_map",
    "segment_index",
    "to_frames",
    "to_frames_by_duration",
    "to_time_surfaces",
    "to_voxel_grid",
]
