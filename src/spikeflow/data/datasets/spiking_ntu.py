"""Lava-DL's spiking NTU RGB+D action-recognition set: Prophesee ``.dat`` recordings
listed in an annotation file, as decay frames sampled by segments.

The layout is Lava-DL's (``slayer.action_recognition.SpikingNTUDataset``): a text file
with one ``<path to .dat> <label>`` line per recording, labels 1 to 120 (NTU's action
classes). The recordings themselves are not published in a fixed layout, so the tests
build such a file around real Prophesee ``.dat`` recordings.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from os import PathLike
from pathlib import Path

import torch

from spikeflow._checks import check_flag
from spikeflow.data.datasets.base import DatasetNotFoundError
from spikeflow.data.decay_frames import ToDecayFrames, decay_frame_count, to_decay_frames
from spikeflow.data.io import read_dat
from spikeflow.data.segment_sampling import SegmentSample, segment_indices
from spikeflow.errors import ConfigurationError, DataFormatError

__all__ = ["SpikingNTU"]


class SpikingNTU(torch.utils.data.Dataset):
    """Samples ``(frames [K·F, 1, H, W] float32, label)`` from Lava-DL's annotation file.

    Each recording is read with :func:`~spikeflow.data.io.read_dat`; its decay frames
    (:func:`~spikeflow.data.to_decay_frames`, windows of ``duration`` µs from t = 0,
    counts clipped at 15, decay ``exp(-duration/tau)``) are computed only at the indices
    :func:`~spikeflow.data.segment_indices` picks (segment centres with
    ``test_mode=True``, random offsets otherwise).

    Args:
        annotation_file: lines ``<path> <label>``; a relative path is taken from the
            annotation file's folder (Lava-DL: from the working directory).
        num_segments: ``K`` (Lava-DL: 30). frames_per_segment: ``F`` (1).
        test_mode: segment centres; False: random offsets from ``generator``.
        classify_labels: ``"all"``: label ``l`` becomes ``l − 1`` (120 classes); a list
            of labels: the ``i``-th becomes ``i + 1`` and every other label 0.
        duration, tau: the decay frames' window and time constant (µs; Lava-DL's
            ``1e6/150`` truncated to 6666 and ``5 × 6666``).
        generator: a ``torch.Generator`` or an int seed (see :class:`SegmentSample`).

    Raises:
        DatasetNotFoundError: no annotation file, or a listed recording that is not
            there (naming the annotation file, line and path).
        DataFormatError: a line that is not ``<path> <integer label>`` (naming the file
            and line), a label ``"all"`` cannot map (outside 1..120), a file with no
            recordings.
        ConfigurationError: ``classify_labels`` neither ``"all"`` nor a non-empty list
            of distinct int labels.
    """

    def __init__(
        self,
        annotation_file: str | PathLike,
        num_segments: int = 30,
        frames_per_segment: int = 1,
        test_mode: bool = False,
        classify_labels: str | Sequence[int] = "all",
        duration: int = 6666,
        tau: float = 5 * 6666,
        generator: torch.Generator | int | None = None,
    ) -> None:
        path = Path(annotation_file)
        if not path.is_file():
            raise DatasetNotFoundError(
                f"SpikingNTU: annotation file {path} not found (one '<path to .dat> <label>' "
                "line per recording, Lava-DL's layout)"
            )
        self.test_mode = check_flag("SpikingNTU", "test_mode", test_mode)
        self._sampler = SegmentSample(num_segments, frames_per_segment, self.test_mode, generator)
        if classify_labels == "all":
            self.label_map = {i + 1: i for i in range(120)}
        elif isinstance(classify_labels, str):
            raise ConfigurationError(
                "SpikingNTU: classify_labels must be 'all' or a list of labels; "
                f"got {classify_labels!r}"
            )
        else:
            listed = list(classify_labels)
            if not listed or not all(
                isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in listed
            ):
                raise ConfigurationError(
                    "SpikingNTU: classify_labels must be 'all' or a non-empty list of int "
                    f"labels; got {classify_labels!r}"
                )
            if len(set(listed)) != len(listed):
                raise ConfigurationError(
                    f"SpikingNTU: classify_labels lists a label twice: {classify_labels!r}"
                )
            self.label_map = {int(v): i + 1 for i, v in enumerate(listed)}
        self.classify_labels = classify_labels
        ToDecayFrames(duration, tau, t_start=0)  # raises on a bad duration or tau
        self.duration, self.tau = int(duration), float(tau)
        self.files: list[Path] = []
        self.labels: list[int] = []
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                raise DataFormatError(
                    f"{path}: line {number} is not '<path> <integer label>': {line!r}"
                )
            label = int(parts[1])
            if classify_labels == "all" and label not in self.label_map:
                raise DataFormatError(f"{path}: line {number}: label {label} is not in 1..120")
            file = Path(parts[0])
            file = file if file.is_absolute() else path.parent / file
            if not file.is_file():
                raise DatasetNotFoundError(
                    f"{path}: line {number}: recording {file} not found (a relative path is "
                    "taken from the annotation file's folder)"
                )
            self.files.append(file)
            self.labels.append(self.label_map.get(label, 0))
        if not self.files:
            raise DataFormatError(f"{path}: lists no recordings ('<path> <label>' lines)")

    @property
    def num_classes(self) -> int:
        """120 with ``classify_labels="all"``, else the listed labels plus class 0."""
        return len(self.label_map) + (0 if self.classify_labels == "all" else 1)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        rec = read_dat(self.files[index])
        count = decay_frame_count(rec, self.duration, t_start=0)
        s = self._sampler
        idx = segment_indices(
            count, s.num_segments, s.frames_per_segment, test_mode=s.test_mode,
            generator=None if s.test_mode else s._stream(),
        )  # fmt: skip
        frames = to_decay_frames(rec, self.duration, self.tau, t_start=0, frame_indices=idx)
        return torch.from_numpy(frames), self.labels[index]
