"""Segment sampling of long frame sequences (Temporal Segment Networks, Wang et al., 2016).

A recording of ``T`` frames is cut into ``num_segments`` equal segments and
``frames_per_segment`` consecutive frames are taken from each: at the segment's centre
in test mode, at a random offset inside it in training. This is the sampling of
Lava-DL's ``VideoFrameDataset`` / ``SpikingNTUDataset._get_start_indices``:

- ``T < K·F`` (too short): every frame once, the first one repeated in front to make
  ``K·F`` indices;
- test mode: with ``d = (T − F + 1)/K``, segment ``s`` starts at ``⌊d/2 + d·s⌋``;
- training: with ``m = ⌊(T − F + 1)/K⌋``, segment ``s`` starts at ``s·m + r_s``,
  ``r_s`` drawn uniformly from ``[0, m)``;

and from each start the ``F`` frames ``start, start + 1, ...`` (never past frame
``T − 1``). Use it on frames as a transform (:class:`SegmentSample`), or pick indices
first (:func:`segment_indices`) and compute only those frames
(``to_decay_frames(..., frame_indices=...)``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from spikeflow._checks import check_flag, check_int
from spikeflow.data.frame_transforms import _RandomFrames
from spikeflow.errors import ConfigurationError, ShapeError

__all__ = ["SegmentSample", "segment_indices"]


def segment_indices(
    num_frames: int,
    num_segments: int,
    frames_per_segment: int = 1,
    *,
    test_mode: bool = False,
    generator: torch.Generator | None = None,
) -> np.ndarray:
    """The ``num_segments · frames_per_segment`` frame indices to keep (int64, in order);
    rules in the module docstring.

    Args:
        num_frames: ``T >= 1``, the frames of the recording.
        num_segments: ``K >= 1``.
        frames_per_segment: ``F >= 1`` consecutive frames from each segment.
        test_mode: segment centres (deterministic); False: a random offset in each
            segment from ``generator`` (None: PyTorch's global generator).

    Raises:
        ConfigurationError: a count that is not an integer >= 1, ``test_mode`` not a
            bool, ``generator`` not a ``torch.Generator`` or None.
    """
    T = check_int("segment_indices: num_frames", num_frames, 1)
    K = check_int("segment_indices: num_segments", num_segments, 1)
    F = check_int("segment_indices: frames_per_segment", frames_per_segment, 1)
    test_mode = check_flag("segment_indices", "test_mode", test_mode)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ConfigurationError(
            f"segment_indices: generator must be a torch.Generator or None; got {generator!r}"
        )
    need = K * F
    if T < need:
        return np.concatenate([np.zeros(need - T, dtype=np.int64), np.arange(T)])
    if test_mode:
        spacing = (T - F + 1) / float(K)
        starts = np.array([int(spacing / 2.0 + spacing * s) for s in range(K)], dtype=np.int64)
    else:
        step = (T - F + 1) // K  # >= 1 since T >= K·F
        offsets = torch.randint(0, step, (K,), generator=generator).numpy()
        starts = np.arange(K, dtype=np.int64) * step + offsets.astype(np.int64)
    return np.minimum(starts[:, None] + np.arange(F), T - 1).reshape(-1)


class SegmentSample(_RandomFrames):
    """Keep ``num_segments · frames_per_segment`` frames of a sequence ``[T, ...]`` by
    segment sampling (:func:`segment_indices`): a dataset's ``transform`` on
    ``[T, C, H, W]`` frames (a tensor or a numpy array, as given).

    Args:
        num_segments: ``K`` segments (Lava-DL's NTU loader: 30).
        frames_per_segment: ``F`` consecutive frames from each.
        test_mode: segment centres (deterministic, ``.random`` False); False: random
            offsets, one draw per call.
        generator: a ``torch.Generator`` or an int seed for a reproducible stream;
            None: PyTorch's global generator.

    Example::

        >>> SegmentSample(3, test_mode=True)(np.arange(12)).tolist()
        [2, 6, 10]
    """

    def __init__(
        self,
        num_segments: int,
        frames_per_segment: int = 1,
        test_mode: bool = False,
        generator: torch.Generator | int | None = None,
    ) -> None:
        K = check_int("SegmentSample: num_segments", num_segments, 1)
        F = check_int("SegmentSample: frames_per_segment", frames_per_segment, 1)
        test_mode = check_flag("SegmentSample", "test_mode", test_mode)
        super().__init__(generator, num_segments=K, frames_per_segment=F, test_mode=test_mode)
        self.num_segments, self.frames_per_segment, self.test_mode = K, F, test_mode
        self.random = not test_mode

    def __call__(self, x_seq: Any) -> Any:
        if not isinstance(x_seq, torch.Tensor | np.ndarray) or x_seq.ndim < 1:
            raise ShapeError(
                "SegmentSample takes a tensor or array [T, ...]; got "
                f"{getattr(x_seq, 'shape', type(x_seq).__name__)}"
            )
        keep = segment_indices(
            x_seq.shape[0], self.num_segments, self.frames_per_segment,
            test_mode=self.test_mode, generator=None if self.test_mode else self._stream(),
        )  # fmt: skip
        if isinstance(x_seq, np.ndarray):
            return x_seq[keep]
        return x_seq.index_select(0, torch.from_numpy(keep).to(x_seq.device))
