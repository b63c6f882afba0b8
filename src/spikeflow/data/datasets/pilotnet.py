"""The PilotNet driving dataset (dashboard images -> steering angle) as Lava-DL's
PilotNet tutorials read it.

On disk (the ``driving_dataset.zip`` the tutorials unpack, not downloaded here)::

    <root>/driving_dataset/data.txt      one line per frame: "<image file> <angle in degrees>"
    <root>/driving_dataset/<image file>  the frames (JPEG), in driving order

As Lava-DL's training dataset (``slayer/pilotnet/pilotnet_dataset.py``): the frames are
cut into runs of ``sequence`` consecutive frames (the last ``len % sequence`` frames
unused), the runs permuted with ``numpy.random.RandomState(42)``, the first
``int(frames / sequence · 0.8)`` for training and the last ``int(frames / sequence · 0.2)``
for testing (fractional runs, as Lava-DL's: 2270 + 567 of the 2837 runs of 16 of the
45406 frames; too few frames for one test run are refused); an angle
of magnitude below 1e-5 that is not the first of its run is a recording glitch, replaced
by the mean of the angles on the lines before and after it (the line before only at the
end of the file); angles are returned in radians. Each image is resized to
``image_size`` (bilinear, as torchvision's ``Resize`` of a PIL image) and scaled from
``[0, 255]`` to ``[-1, 1]`` (the tutorial's ``Normalize((0.5,) * 3, (0.5,) * 3)``).
With ``sequence=1`` the split is the ``netx`` tutorials' per-frame one.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from spikeflow.data.datasets.base import DatasetNotFoundError
from spikeflow.errors import ConfigurationError, MissingExtraError

__all__ = ["PilotNetDriving", "read_pilotnet_angles"]

#: Angles smaller than this (degrees) inside a run are glitches (Lava-DL's rule).
GLITCH = 1e-5


def read_pilotnet_angles(path: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """The image file names and steering angles (degrees) of a PilotNet ``data.txt``.

    Raises:
        DatasetNotFoundError: no such file. ConfigurationError: a line that is not
            ``"<file> <angle>"`` (the message names the file and the line).
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetNotFoundError(f"PilotNetDriving: no angle file {path}")
    names, angles = [], []
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            fields = line.split()
            if not fields:
                continue
            try:
                if len(fields) < 2:
                    raise ValueError("no angle")
                angle = float(fields[1])
                if not np.isfinite(angle):  # ("nan" and "inf" parse as floats)
                    raise ValueError("not a finite angle")
            except ValueError:
                raise ConfigurationError(
                    f"PilotNetDriving: {path} line {number}: expected '<image file> <angle in "
                    f"degrees>' with a finite angle, got {line.strip()!r}"
                ) from None
            names.append(fields[0])
            angles.append(angle)
    if not names:
        raise ConfigurationError(f"PilotNetDriving: {path} lists no frames")
    return names, np.asarray(angles, dtype=np.float64)


class PilotNetDriving(Dataset):
    """The PilotNet driving dataset (module docstring): sample ``i`` is ``(frames [T, 3,
    H, W] float32 in [-1, 1], angles [T] float32 in radians)`` for ``T = sequence``
    consecutive frames.

    Args:
        root: the folder holding ``driving_dataset/`` (Lava-DL's ``path``).
        train: the training runs (80 %) or the test runs (20 %).
        sequence: frames per sample (Lava-DL's training: 16).
        image_size: ``(H, W)`` after resizing (33 x 100 for the SDNN, 66 x 200 for the
            LIF network).

    Raises:
        DatasetNotFoundError: no ``driving_dataset/data.txt`` under ``root``.
        ConfigurationError: a bad argument, fewer frames than one sequence, or a bad line.
        MissingExtraError: Pillow is not installed (extra ``images``).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        train: bool = True,
        sequence: int = 16,
        image_size: tuple[int, int] | list[int] = (33, 100),
    ) -> None:
        if isinstance(sequence, bool) or not isinstance(sequence, int) or sequence < 1:
            raise ConfigurationError(
                f"PilotNetDriving: sequence must be an int >= 1, got {sequence!r}"
            )
        if (
            not isinstance(image_size, (tuple, list))
            or len(image_size) != 2
            or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in image_size)
        ):
            raise ConfigurationError(
                f"PilotNetDriving: image_size must be (H, W) of positive ints, got {image_size!r}"
            )
        self.folder = Path(root) / "driving_dataset"
        self.names, self.degrees = read_pilotnet_angles(self.folder / "data.txt")
        runs = len(self.names) // sequence
        if runs == 0:
            raise ConfigurationError(
                f"PilotNetDriving: {self.folder / 'data.txt'} lists {len(self.names)} frames, "
                f"fewer than one sequence of {sequence}"
            )
        # Lava-DL's shares are of frames / sequence as a float, not of the whole runs:
        # 45406 frames in runs of 16 give 2270 training runs (int(2837.875 * 0.8)), not
        # int(2837 * 0.8) = 2269; the two shares never overlap (their sum <= runs).
        share = len(self.names) / sequence
        n_train, n_test = int(share * 0.8), int(share * 0.2)
        if not train and n_test == 0:
            raise ConfigurationError(
                f"PilotNetDriving: {self.folder / 'data.txt'} lists {len(self.names)} frames: "
                f"{runs} run(s) of {sequence}, too few for a test run (int({share:g} * 0.2) = 0; "
                "Lava-DL's split would then test on every run, the training runs included)"
            )
        order = np.random.RandomState(seed=42).permutation(runs)
        chosen = order[:n_train] if train else order[len(order) - n_test :]
        self.starts = (chosen * sequence).tolist()
        self.train = train
        self.sequence = sequence
        self.image_size = (int(image_size[0]), int(image_size[1]))

    def __len__(self) -> int:
        return len(self.starts)

    def angle(self, line: int, first: bool) -> float:
        """The angle (degrees) of ``line`` (0-based) of ``data.txt``, a glitch (|angle| <
        1e-5 not ``first`` of its run) replaced by its neighbours' mean."""
        value = float(self.degrees[line])
        if abs(value) < GLITCH and not first:
            after = self.degrees[line + 1] if line + 1 < len(self.degrees) else None
            before = self.degrees[line - 1]
            value = float(before if after is None else 0.5 * (before + after))
        return value

    def image(self, line: int) -> Tensor:
        """Frame ``line`` of ``data.txt`` as ``[3, H, W]`` float32 in [-1, 1]."""
        try:
            from PIL import Image
        except ImportError as exc:
            raise MissingExtraError("PilotNetDriving's JPEG frames", "pillow", "images") from exc
        path = self.folder / self.names[line]
        try:
            with Image.open(path) as img:
                height, width = self.image_size
                resized = img.convert("RGB").resize((width, height), Image.BILINEAR)
        except (OSError, ValueError) as exc:
            raise DatasetNotFoundError(f"PilotNetDriving: cannot read frame {path}: {exc}") from exc
        pixels = torch.from_numpy(np.asarray(resized, dtype=np.float32) / 255.0)
        return (pixels.permute(2, 0, 1) - 0.5) / 0.5

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        start = self.starts[index]
        frames = torch.stack([self.image(start + i) for i in range(self.sequence)])
        angles = [self.angle(start + i, first=i == 0) for i in range(self.sequence)]
        return frames, torch.tensor(np.radians(angles), dtype=torch.float32)
