"""Event transforms that move events by a rotation and a shift.

:class:`RotateEvents` and :class:`RandomRotationEvents` turn each event's ``(x, y)``
about the sensor centre, counter-clockwise on screen for a positive angle (y points
down), the same mapping as :func:`~spikeflow.data.frame_transforms.rotate_frames` and
torchvision's ``RandomRotation`` on frames. :class:`LavaShiftRotate` is the random
shift-and-rotate augmentation of Lava-DL's SLAYER N-MNIST tutorial (its
``augment(event)``). All round the moved coordinates to the nearest pixel (half to
even, ``numpy.rint``) and drop the events that land off the sensor. They follow
:mod:`spikeflow.data.transforms`' conventions: the input is never modified, the sensor
size comes from the :class:`~spikeflow.data.EventRecording`, random ones take ``seed``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from spikeflow._checks import check_flag, check_int, check_real
from spikeflow.data.transforms import EventTransform, Size
from spikeflow.data.transforms_extra import _real_or_range, move_events
from spikeflow.errors import ConfigurationError

__all__ = ["LavaShiftRotate", "RandomRotationEvents", "RotateEvents"]

Seed = int | np.random.Generator | None


def rotate_event_coordinates(
    x: np.ndarray, y: np.ndarray, degrees: float, sensor_size: Size
) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` turned by ``degrees`` about the centre ``((W-1)/2, (H-1)/2)`` of the
    pixel grid, counter-clockwise on screen for a positive angle (float64, unrounded).

    Relative to the centre, ``x' = cos·x + sin·y`` and ``y' = -sin·x + cos·y``: the
    inverse of the map torchvision's ``F.rotate`` samples frames with.
    """
    rad = math.radians(degrees)
    cos, sin = math.cos(rad), math.sin(rad)
    cx, cy = (sensor_size[0] - 1) / 2.0, (sensor_size[1] - 1) / 2.0
    dx = np.asarray(x, dtype=np.float64) - cx
    dy = np.asarray(y, dtype=np.float64) - cy
    return cx + cos * dx + sin * dy, cy - sin * dx + cos * dy


class RotateEvents(EventTransform):
    """Rotate every event by ``degrees`` about the sensor centre (counter-clockwise on
    screen for a positive angle), round to the pixel grid, drop events off the sensor.

    A multiple of 90° on a square sensor moves every pixel onto a pixel and drops
    nothing; other angles drop the corners and may send two pixels to one.
    """

    needs_sensor = True

    def __init__(self, degrees: float) -> None:
        degrees = check_real("RotateEvents: degrees", degrees)
        super().__init__(None, degrees=degrees)
        self.degrees = degrees

    def apply(self, events: np.ndarray, sensor_size: Size) -> tuple[np.ndarray, Any]:
        x, y = rotate_event_coordinates(events["x"], events["y"], self.degrees, sensor_size)
        return move_events(events, sensor_size, x, y), sensor_size


class RandomRotationEvents(EventTransform):
    """:class:`RotateEvents` by an angle drawn uniformly from ``degrees`` once per call
    (one angle for the whole recording): ``degrees`` is ``d`` for ``(-d, d)`` or a
    ``(low, high)`` range, as torchvision's ``RandomRotation(degrees)``.
    """

    needs_sensor = True

    def __init__(self, degrees: float | tuple[float, float], seed: Seed = None) -> None:
        rng = _real_or_range("RandomRotationEvents: degrees", degrees, -360.0, 360.0)
        if not isinstance(rng, tuple):
            if rng < 0:
                raise ConfigurationError(
                    f"RandomRotationEvents: degrees as one number must be >= 0; got {degrees!r}"
                )
            rng = (-rng, rng)
        super().__init__(seed, degrees=list(rng))
        self.degrees = rng

    @property
    def random(self) -> bool:
        return self.degrees[0] != self.degrees[1]

    def apply(self, events: np.ndarray, sensor_size: Size) -> tuple[np.ndarray, Any]:
        angle = float(self.rng().uniform(self.degrees[0], self.degrees[1]))
        x, y = rotate_event_coordinates(events["x"], events["y"], angle, sensor_size)
        return move_events(events, sensor_size, x, y), sensor_size


class LavaShiftRotate(EventTransform):
    """Lava-DL's N-MNIST augmentation (``augment(event)`` of its SLAYER N-MNIST
    tutorial): a random integer shift and a small random rotation about the origin.

    Per call, in this order: ``dx = integers(2·max_shift) - max_shift`` and
    ``dy`` likewise (so in ``[-max_shift, max_shift - 1]``, as ``np.random.randint``
    draws), then ``a = (random() - 0.5)·theta`` degrees (within ``±theta/2``). Then
    ``x' = x·cos a - y·sin a + dx`` and, as Lava-DL writes it, ``y' = x'·sin a +
    y·cos a + dy`` with the already-moved ``x'`` (``lava_y=True``, the default, to
    reproduce its results); ``lava_y=False`` uses the original ``x``, a true rotation.
    The rotation is about pixel ``(0, 0)``, the sensor's corner, as in Lava-DL. Lava-DL
    leaves float coordinates for its ``fill_tensor`` to round and drop when off the
    grid; here they are rounded (``numpy.rint``) and the events off the sensor dropped.

    Args:
        max_shift: the shift bound in pixels, an int >= 0 (Lava-DL's 4); 0 draws no shift.
        theta: the width of the angle range in degrees, >= 0 (Lava-DL's 10).
        lava_y: compute ``y'`` from the moved ``x'``, as Lava-DL does.
        seed: an int, a ``numpy.random.Generator`` or None (PyTorch's global generator).
    """

    needs_sensor = True

    def __init__(
        self, max_shift: int = 4, theta: float = 10.0, lava_y: bool = True, seed: Seed = None
    ) -> None:
        max_shift = check_int("LavaShiftRotate: max_shift", max_shift, 0)
        theta = check_real("LavaShiftRotate: theta", theta, 0.0, 360.0)
        lava_y = check_flag("LavaShiftRotate", "lava_y", lava_y)
        super().__init__(seed, max_shift=max_shift, theta=theta, lava_y=lava_y)
        self.max_shift, self.theta, self.lava_y = max_shift, theta, lava_y

    @property
    def random(self) -> bool:
        return self.max_shift > 0 or self.theta > 0

    def draw(self, rng: np.random.Generator) -> tuple[int, int, float]:
        """The shifts ``(dx, dy)`` and the angle in radians of one call, from ``rng``."""
        s = self.max_shift
        dx = int(rng.integers(2 * s)) - s if s else 0
        dy = int(rng.integers(2 * s)) - s if s else 0
        angle = (float(rng.random()) - 0.5) * math.radians(self.theta)
        return dx, dy, angle

    def apply(self, events: np.ndarray, sensor_size: Size) -> tuple[np.ndarray, Any]:
        if not self.random:
            return events.copy(), sensor_size
        dx, dy, angle = self.draw(self.rng())
        cos, sin = math.cos(angle), math.sin(angle)
        x = events["x"].astype(np.float64)
        y = events["y"].astype(np.float64)
        new_x = x * cos - y * sin + dx
        new_y = (new_x if self.lava_y else x) * sin + y * cos + dy
        return move_events(events, sensor_size, new_x, new_y), sensor_size
