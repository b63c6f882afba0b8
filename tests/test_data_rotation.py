"""Rotations of frames and events, and Lava-DL's N-MNIST shift-and-rotate augmentation.

References: quarter turns derived by hand (``torch.rot90``, counter-clockwise on screen
like torchvision's positive angles); any angle against torchvision's tensor path
transcribed as ``affine_grid`` + ``grid_sample(mode="nearest", align_corners=False)``;
Lava-DL's ``augment(event)`` transcribed, fed the same draws.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import require_shared_data
from spikeflow.data import NMNIST, EventRecording
from spikeflow.data import transforms as T
from spikeflow.errors import ConfigurationError, ShapeError


def _torchvision_rotate(x: torch.Tensor, degrees: float) -> torch.Tensor:
    """torchvision's F.rotate on a float tensor [..., H, W] (fill 0), via affine_grid:
    its inverse matrix for ``-degrees`` in pixels, rescaled to normalised coordinates."""
    H, W = x.shape[-2:]
    a = math.radians(degrees)
    theta = torch.tensor(
        [[[math.cos(a), -math.sin(a) * H / W, 0.0], [math.sin(a) * W / H, math.cos(a), 0.0]]],
        dtype=x.dtype,
    )
    flat = x.reshape(1, -1, H, W)
    grid = F.affine_grid(theta, list(flat.shape), align_corners=False)
    out = F.grid_sample(flat, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return out.reshape(x.shape)


@pytest.mark.parametrize("size", [(34, 34), (9, 9), (8, 8)])
def test_quarter_turns_are_rot90_exactly(size):
    x = torch.rand(3, 2, *size, generator=torch.Generator().manual_seed(0))
    for k in range(-2, 5):
        assert torch.equal(T.rotate_frames(x, 90.0 * k), torch.rot90(x, k, dims=(-2, -1)))


def test_half_turn_of_a_non_square_frame_flips_both_axes():
    x = torch.rand(2, 5, 12, generator=torch.Generator().manual_seed(1))
    assert torch.equal(T.rotate_frames(x, 180.0), x.flip(-1, -2))


@pytest.mark.parametrize("size", [(34, 34), (20, 31)])
@pytest.mark.parametrize("degrees", [7.5, -10.0, 33.3, 123.0, -151.2])
def test_any_angle_matches_torchvision_through_affine_grid(size, degrees):
    x = torch.rand(4, 2, *size, generator=torch.Generator().manual_seed(2)) + 0.5
    ours = T.rotate_frames(x, degrees)
    assert torch.equal(ours, _torchvision_rotate(x, degrees))
    assert (ours == 0).any() and (ours > 0).sum() > 0.5 * ours[0, 0].numel()  # corners filled


def test_fill_and_integer_frames():
    x = torch.randint(1, 9, (2, 34, 34), generator=torch.Generator().manual_seed(3))
    out = T.rotate_frames(x, 30.0, fill=-1.0)
    assert out.dtype == x.dtype
    expected = _torchvision_rotate(x.double(), 30.0).long()
    outside = _torchvision_rotate(torch.ones(1, 34, 34, dtype=torch.float64), 30.0)[0] == 0
    expected[:, outside] = -1
    assert outside.any() and torch.equal(out, expected)


def test_random_rotation_frames_draws_as_torchvision_and_shares_the_angle():
    x = torch.rand(5, 2, 34, 34, generator=torch.Generator().manual_seed(4))
    aug = T.RandomRotationFrames(10, generator=7)
    g = torch.Generator().manual_seed(7)
    for _ in range(3):
        angle = float(torch.empty(1).uniform_(-10.0, 10.0, generator=g).item())
        out = aug(x)
        assert torch.equal(out, T.rotate_frames(x, angle))
        for t in range(5):  # every step of the sample turned by the same angle
            assert torch.equal(out[t], T.rotate_frames(x[t], angle))
    assert torch.equal(T.RandomRotationFrames((5, 20), generator=1)(x),
                       T.RandomRotationFrames((5, 20), generator=1)(x))  # fmt: skip
    assert T.RandomRotationFrames(10, generator=3).cache_key() == {
        "name": "RandomRotationFrames", "degrees": [-10.0, 10.0], "fill": 0.0}  # fmt: skip


@pytest.mark.parametrize(
    "kwargs, match",
    [({"degrees": -3}, "one number must be >= 0"), ({"degrees": (5, 1)}, "low <= high"),
     ({"degrees": "10"}, "number or \\(low, high\\)"), ({"degrees": 5, "fill": None}, "fill"),
     ({"degrees": 5, "generator": 1.5}, "generator")],
)  # fmt: skip
def test_random_rotation_frames_bad_arguments(kwargs, match):
    with pytest.raises(ConfigurationError, match=match):
        T.RandomRotationFrames(**kwargs)


def test_rotate_frames_bad_input():
    with pytest.raises(ShapeError, match="rotate_frames"):
        T.rotate_frames(torch.zeros(5), 10.0)
    with pytest.raises(ConfigurationError, match="finite"):
        T.rotate_frames(torch.zeros(3, 3), float("nan"))


def _recording(n=3000, size=(34, 34, 2), seed=0):
    rng = np.random.default_rng(seed)
    dtype = np.dtype([("x", "<u2"), ("y", "<u2"), ("t", "<i8"), ("p", "u1")])
    ev = np.zeros(n, dtype)
    ev["x"], ev["y"] = rng.integers(0, size[0], n), rng.integers(0, size[1], n)
    ev["t"], ev["p"] = np.sort(rng.integers(0, 300_000, n)), rng.integers(0, 2, n)
    return EventRecording(ev, size)


def _count_image(rec):
    W, H, _ = rec.sensor_size
    img = np.zeros((H, W))
    np.add.at(img, (rec.events["y"].astype(int), rec.events["x"].astype(int)), 1)
    return torch.from_numpy(img)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_event_quarter_turns_agree_with_frame_rotation(k):
    rec = _recording()
    out = T.RotateEvents(90.0 * k)(rec)
    assert len(out.events) == len(rec.events)  # a square sensor loses nothing
    assert torch.equal(_count_image(out), T.rotate_frames(_count_image(rec), 90.0 * k))
    assert np.array_equal(out.events["t"], rec.events["t"])


def test_event_rotation_by_any_angle_against_a_reference_loop():
    rec = _recording(500, size=(40, 30, 2))
    out = T.RotateEvents(-23.0)(rec)
    a, cx, cy = math.radians(-23.0), 19.5, 14.5
    kept = []
    for e in rec.events:
        dx, dy = float(e["x"]) - cx, float(e["y"]) - cy
        x = round(cx + math.cos(a) * dx + math.sin(a) * dy)
        y = round(cy - math.sin(a) * dx + math.cos(a) * dy)
        if 0 <= x < 40 and 0 <= y < 30:
            kept.append((x, y, e["t"], e["p"]))
    assert 0 < len(kept) < 500
    got = list(zip(*(out.events[f].tolist() for f in "xytp"), strict=True))
    assert got == kept


def test_random_rotation_events_seeded():
    rec = _recording()
    aug = T.RandomRotationEvents(15, seed=5)
    angle = np.random.default_rng(5).uniform(-15, 15)
    assert np.array_equal(aug(rec).events, T.RotateEvents(angle)(rec).events)
    again = T.RandomRotationEvents(15, seed=5)(rec).events
    assert np.array_equal(again, T.RotateEvents(angle)(rec).events)
    with pytest.raises(ConfigurationError, match="RandomRotationEvents: degrees"):
        T.RandomRotationEvents((10, 2))
    with pytest.raises(ConfigurationError, match="one number must be >= 0"):
        T.RandomRotationEvents(-10)
    assert aug.random and not T.RotateEvents(30).random
    assert not T.Compose([T.RotateEvents(30)]).random and T.Compose([aug]).random
    assert T.RotateEvents(30).cache_key() == {"name": "RotateEvents", "degrees": 30.0}
    assert T.RotateEvents(30).cache_key() != T.RotateEvents(31).cache_key()
    with pytest.raises(ConfigurationError, match="needs the sensor size"):
        T.RotateEvents(10)(rec.events)


def _lava_augment(x, y, xjitter, yjitter, ajitter):
    """Lava-DL's augment(event) transcribed, with its draws given: event.x is assigned
    first, so the y line reads the moved x."""
    sin_theta, cos_theta = np.sin(ajitter), np.cos(ajitter)
    x = x * cos_theta - y * sin_theta + xjitter
    y = x * sin_theta + y * cos_theta + yjitter
    return x, y


@pytest.mark.parametrize("lava_y", [True, False])
def test_lava_shift_rotate_matches_lava_on_real_nmnist(lava_y):
    recording, _ = NMNIST(require_shared_data("nmnist-small"), train=False)[0]
    aug = T.LavaShiftRotate(seed=11, lava_y=lava_y)
    rng = np.random.default_rng(11)
    for _ in range(4):
        xj, yj = rng.integers(8) - 4, rng.integers(8) - 4  # np.random.randint(2 * 4) - 4
        aj = (rng.random() - 0.5) * 10 / 180 * math.pi
        x = recording.events["x"].astype(np.float64)
        y = recording.events["y"].astype(np.float64)
        if lava_y:
            x, y = _lava_augment(x, y, xj, yj, aj)
        else:
            x, y = x * np.cos(aj) - y * np.sin(aj) + xj, x * np.sin(aj) + y * np.cos(aj) + yj
        x, y = np.rint(x), np.rint(y)
        keep = (x >= 0) & (x < 34) & (y >= 0) & (y < 34)
        out = aug(recording)
        assert 0.5 * len(x) < len(out.events) <= len(x)
        assert np.array_equal(out.events["x"], x[keep]) and np.array_equal(out.events["y"], y[keep])
        assert np.array_equal(out.events["t"], recording.events["t"][keep])
        assert out.sensor_size == recording.sensor_size


def test_lava_shift_rotate_shift_range_and_arguments():
    rec = _recording(50)
    aug = T.LavaShiftRotate(max_shift=3, theta=0.0, seed=0)
    rng = np.random.default_rng(0)
    for _ in range(20):
        shift = aug.draw(rng)
        assert -3 <= shift[0] <= 2 and -3 <= shift[1] <= 2 and shift[2] == 0.0
    assert np.array_equal(T.LavaShiftRotate(0, 0.0)(rec).events, rec.events)
    for kwargs, match in [({"max_shift": -1}, "max_shift"), ({"theta": -5}, "theta"),
                          ({"lava_y": "yes"}, "lava_y")]:  # fmt: skip
        with pytest.raises(ConfigurationError, match=match):
            T.LavaShiftRotate(**kwargs)
