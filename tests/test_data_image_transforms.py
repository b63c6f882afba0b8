"""Image transforms (spikeflow.data.image_transforms) against hand-derived values: crop
windows from fixed draws, resize sizes and offsets, bilinear weights worked out by
hand (Pillow's and PyTorch's antialiased filters), exact pixel paths through images
whose pixels encode their own coordinates, and normalisation values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spikeflow.data.image_transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    CenterCrop,
    Compose,
    Normalize,
    RandomHorizontalFlip,
    RandomResizedCrop,
    Resize,
    ToTensor,
    imagenet_eval_transform,
    imagenet_train_transform,
    resize_image,
)
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError

Image = pytest.importorskip("PIL.Image", reason="Pillow is the extra 'images'")


def coordinate_image(height: int, width: int) -> np.ndarray:
    """uint8 [H, W, 3]: R = column % 256, G = row % 256, B = (row + column) % 256, so a
    pixel's value says where it came from."""
    rows, cols = np.mgrid[0:height, 0:width]
    return np.stack([cols % 256, rows % 256, (rows + cols) % 256], axis=-1).astype(np.uint8)


def drawn(transform, values, integers, calls=None):
    """Make ``transform`` draw ``values`` (uniform [0, 1)) and ``integers`` (randint),
    in order; record each randint bound in ``calls``."""
    values, integers = iter(values), iter(integers)
    transform._rand = lambda: next(values)

    def randint(high):
        if calls is not None:
            calls.append(high)
        return next(integers)

    transform._randint = randint
    return transform


# -- RandomResizedCrop ------------------------------------------------------------------


def test_random_resized_crop_window_from_fixed_draws():
    calls: list[int] = []
    crop = drawn(RandomResizedCrop(224), [0.5, 0.5], [7, 100], calls)
    # u = 0.5: area 0.08 + 0.92 / 2 = 0.54 of 200 x 300 = 32,400; log-ratio midway
    # between log(3/4) and log(4/3) is 0: ratio 1, so w = h = sqrt(32,400) = 180.
    assert crop.get_params(200, 300) == (7, 100, 180, 180)
    assert calls == [200 - 180 + 1, 300 - 180 + 1]


def test_random_resized_crop_retries_until_a_window_fits():
    calls: list[int] = []
    crop = drawn(RandomResizedCrop(224), [1.0, 1.0, 0.0, 0.0], [3, 5], calls)
    # Attempt 1: area 60,000, ratio 4/3: w = round(sqrt(80,000)) = 283, h =
    # round(sqrt(45,000)) = 212 > 200, refused. Attempt 2: area 0.08 -> 4,800, ratio
    # 3/4: w = round(sqrt(3,600)) = 60, h = round(sqrt(6,400)) = 80.
    assert crop.get_params(200, 300) == (3, 5, 80, 60)
    assert calls == [121, 241]


@pytest.mark.parametrize(
    ("height", "width", "expected"),
    [
        (200, 300, (0, 16, 200, 267)),  # 1.5 > 4/3: h = 200, w = round(200 * 4/3) = 267
        (300, 100, (83, 0, 133, 100)),  # 1/3 < 3/4: w = 100, h = round(100 / 0.75) = 133
        (200, 240, (0, 0, 200, 240)),  # 1.2 inside the range: the whole image
    ],
)
def test_random_resized_crop_falls_back_to_the_centre_after_ten_attempts(height, width, expected):
    # Every attempt draws the whole area at ratio 4/3 or 3/4: never inside a 3:2 or 1:3
    # image; for the 6:5 image, scale (2, 3) asks for more than the whole area.
    scale = (2.0, 3.0) if expected[2:] == (height, width) else (0.08, 1.0)
    draws = [1.0, 1.0] * 10 if width > height else [1.0, 0.0] * 10
    values = iter([*draws, 0.25])
    crop = drawn(RandomResizedCrop(224, scale=scale), values, [])
    assert crop.get_params(height, width) == expected
    assert next(values) == 0.25  # exactly 10 attempts, two draws each


def test_random_resized_crop_windows_stay_in_range():
    crop = RandomResizedCrop(224, generator=0)
    for _ in range(300):
        top, left, h, w = crop.get_params(375, 500)
        assert 0 <= top <= 375 - h and 0 <= left <= 500 - w
        assert 0.08 * 375 * 500 * 0.95 <= h * w <= 375 * 500
        assert 3 / 4 * 0.95 <= w / h <= 4 / 3 * 1.05
    same = [RandomResizedCrop(224, generator=7).get_params(375, 500) for _ in range(2)]
    assert same[0] == same[1]


@pytest.mark.parametrize("as_tensor", [False, True])
def test_random_resized_crop_takes_the_window_pixel_for_pixel(as_tensor):
    array = coordinate_image(200, 300)
    crop = RandomResizedCrop((50, 60))
    crop.get_params = lambda height, width: (30, 70, 50, 60)  # same size: no resampling
    image = torch.from_numpy(array).permute(2, 0, 1) if as_tensor else Image.fromarray(array)
    out = crop(image)
    got = out.permute(1, 2, 0).numpy() if as_tensor else np.asarray(out)
    np.testing.assert_array_equal(got, array[30:80, 70:130])
    assert got[0, 0].tolist() == [70, 30, 100] and got[49, 59].tolist() == [129, 79, 208]


def test_random_resized_crop_resizes_the_window_bilinearly():
    array = coordinate_image(200, 300)
    crop = RandomResizedCrop(40)
    crop.get_params = lambda height, width: (10, 20, 80, 80)  # halved
    out = np.asarray(crop(Image.fromarray(array))).astype(np.float64)
    # A 2:1 reduction of a linear ramp: each output pixel is the mean of its weights'
    # centre, (left + 2j + 0.5); the edges average fewer pixels (clamped filter).
    expected_r = 20 + 2 * np.arange(40) + 0.5
    np.testing.assert_allclose(out[20, 1:-1, 0], expected_r[1:-1], atol=0.51)
    weights = np.array([0.75, 0.75, 0.25])  # column 0: pixels 20, 21, 22 (22 at distance 1.5)
    assert abs(out[20, 0, 0] - (weights @ [20, 21, 22]) / weights.sum()) <= 0.5


# -- Resize, bilinear weights ------------------------------------------------------------


@pytest.mark.parametrize(
    ("width", "height", "expected"),
    [(300, 200, (256, 384)), (200, 300, (384, 256)), (333, 500, (384, 256)),
     (256, 100, (256, 655)), (300, 199, (256, 385)), (256, 256, (256, 256))],
)  # fmt: skip
def test_resize_sets_the_shorter_side(width, height, expected):
    # expected (h, w); longer = int(256 * long / short): 256 * 500 / 333 = 384.4 -> 384,
    # 256 * 256 / 100 = 655.36 -> 655, 256 * 300 / 199 = 385.9 -> 385 (truncated).
    assert Resize(256).output_size(height, width) == expected
    image = Image.new("RGB", (width, height))
    assert Resize(256)(image).size == expected[::-1]
    assert Resize((100, 50))(image).size == (50, 100)


def test_resize_of_the_right_size_is_the_image_itself():
    image = Image.new("RGB", (300, 256))
    assert Resize(256)(image) is image


@pytest.mark.parametrize("as_tensor", [False, True])
def test_bilinear_weights_by_hand(as_tensor):
    row = np.array([[10, 200, 40, 90]], np.uint8)
    # Reduction 4 -> 2: the triangle filter widens to 2 pixels; output 0 centred at 1.0
    # weighs pixels 0, 1, 2 (centres 0.5, 1.5, 2.5) by 1 - |d| / 2 = 0.75, 0.75, 0.25.
    down = [
        (0.75 * 10 + 0.75 * 200 + 0.25 * 40) / 1.75,
        (0.25 * 200 + 0.75 * 40 + 0.75 * 90) / 1.75,
    ]
    # Enlargement 2 -> 4 of [10, 200]: centres 0.25, 0.75, 1.25, 1.75 (clamped at the edges).
    up = [10, 0.75 * 10 + 0.25 * 200, 0.25 * 10 + 0.75 * 200, 200]
    if as_tensor:
        as_float = torch.tensor(row, dtype=torch.float64)[None]
        torch.testing.assert_close(resize_image(as_float, (1, 2))[0, 0],
                                   torch.tensor(down, dtype=torch.float64))  # fmt: skip
        small = torch.tensor([[[10.0, 200.0]]], dtype=torch.float64)
        torch.testing.assert_close(resize_image(small, (1, 4))[0, 0],
                                   torch.tensor(up, dtype=torch.float64))  # fmt: skip
        assert resize_image(torch.tensor(row)[None], (1, 2)).dtype == torch.uint8
    else:  # Pillow computes in fixed point and rounds to uint8
        got = np.asarray(resize_image(Image.fromarray(row), (1, 2)), np.float64)[0]
        np.testing.assert_allclose(got, down, atol=0.5 + 1e-9)
        got = np.asarray(resize_image(Image.fromarray(row[:, :2].copy()), (1, 4)), np.float64)[0]
        np.testing.assert_allclose(got, up, atol=0.5 + 1e-9)


@pytest.mark.parametrize("size", [(256, 384), (100, 150), (37, 50), (400, 600)])
def test_tensor_and_pil_resizes_agree_within_one_grey_level(size):
    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[0:200, 0:300]
    smooth = 128 + 60 * np.sin(cols / 7) + 60 * np.cos(rows / 5)
    array = (smooth[..., None] + rng.integers(-20, 20, (200, 300, 3))).clip(0, 255)
    array = array.astype(np.uint8)
    pil = np.asarray(resize_image(Image.fromarray(array), size)).astype(int)
    tensor = resize_image(torch.from_numpy(array).permute(2, 0, 1), size)
    assert tensor.shape == (3, *size)
    diff = np.abs(pil - tensor.permute(1, 2, 0).numpy().astype(int))
    assert diff.max() <= 1 and diff.mean() < 0.3


# -- CenterCrop, flips, ToTensor, Normalize ----------------------------------------------


@pytest.mark.parametrize(
    ("height", "width", "top", "left"),
    [(256, 384, 16, 80), (257, 224, 16, 0), (259, 225, 18, 0), (224, 227, 0, 2)],
)
def test_center_crop_offsets_round_halves_to_even(height, width, top, left):
    # (257 - 224) / 2 = 16.5 -> 16; (259 - 224) / 2 = 17.5 -> 18; (227 - 224) / 2 -> 2.
    array = coordinate_image(height, width)
    out = np.asarray(CenterCrop(224)(Image.fromarray(array)))
    np.testing.assert_array_equal(out, array[top : top + 224, left : left + 224])
    tensor = CenterCrop(224)(torch.from_numpy(array).permute(2, 0, 1))
    np.testing.assert_array_equal(tensor.permute(1, 2, 0).numpy(), out)


@pytest.mark.parametrize(
    ("size", "rows", "cols"),
    # (rows, cols): ("pad", before, after) or ("crop", start)
    [
        ((5, 4), ("pad", 1, 1), ("crop", 0)),  # 3 -> 5: 1 and 1; 5 -> 4 from round(0.5) = 0
        ((6, 8), ("pad", 1, 2), ("pad", 1, 2)),  # 3 -> 6: 1 above, 2 below (the odd one)
        ((2, 7), ("crop", 0), ("pad", 1, 1)),  # 3 -> 2 from round(0.5) = 0
    ],
)
def test_center_crop_pads_with_zeros_where_the_window_is_larger(size, rows, cols):
    """torchvision's CenterCrop pads a small image, (crop - side) // 2 before and the
    rest after, then crops: PIL images and tensors (uint8 and float) alike."""
    want = coordinate_image(3, 5) + 1  # no zero pixel of its own
    source = want.copy()
    for axis, (how, *where) in enumerate((rows, cols)):
        if how == "pad":
            widths = [(0, 0)] * 3
            widths[axis] = tuple(where)
            want = np.pad(want, widths)
        else:
            want = np.take(want, range(where[0], where[0] + size[axis]), axis=axis)
    assert want.shape[:2] == size
    np.testing.assert_array_equal(np.asarray(CenterCrop(size)(Image.fromarray(source))), want)
    tensor = torch.from_numpy(source).permute(2, 0, 1)
    np.testing.assert_array_equal(CenterCrop(size)(tensor).permute(1, 2, 0).numpy(), want)
    scaled = CenterCrop(size)(tensor.double() / 255)
    assert scaled.dtype == torch.float64
    np.testing.assert_array_equal((scaled * 255).round().permute(1, 2, 0).numpy(), want)


def test_horizontal_flip_mirrors_pil_and_tensors_alike():
    array = coordinate_image(20, 30)
    flipped = np.asarray(RandomHorizontalFlip(1.0)(Image.fromarray(array)))
    np.testing.assert_array_equal(flipped, array[:, ::-1])
    tensor = RandomHorizontalFlip(1.0)(torch.from_numpy(array).permute(2, 0, 1))
    np.testing.assert_array_equal(tensor.permute(1, 2, 0).numpy(), flipped)
    assert RandomHorizontalFlip(0.0)(Image.fromarray(array)).tobytes() == array.tobytes()
    draws = [RandomHorizontalFlip(0.5, generator=3)._rand() for _ in range(2)]
    flip = drawn(RandomHorizontalFlip(0.5), [0.49, 0.5], [])
    image = Image.fromarray(array)
    assert np.asarray(flip(image))[0, 0, 0] == 29 and flip(image) is image
    assert draws[0] == draws[1]


def test_to_tensor_scales_to_unit_range_channel_first():
    array = np.array([[[255, 51, 0], [0, 102, 255]]], np.uint8)  # 1 x 2 RGB
    out = ToTensor()(Image.fromarray(array))
    assert out.dtype == torch.float32 and out.shape == (3, 1, 2)
    torch.testing.assert_close(out[:, 0, 0], torch.tensor([1.0, 0.2, 0.0]))
    torch.testing.assert_close(out[:, 0, 1], torch.tensor([0.0, 0.4, 1.0]))
    grey = ToTensor()(Image.fromarray(np.array([[0, 255]], np.uint8)))
    assert grey.shape == (1, 1, 2) and grey.tolist() == [[[0.0, 1.0]]]
    torch.testing.assert_close(ToTensor()(array), out)
    with pytest.raises(DTypeError, match="mode 'P'"):
        ToTensor()(Image.new("P", (4, 4)))
    with pytest.raises(DTypeError, match="uint8 array"):
        ToTensor()(array.astype(np.float32))


def test_normalize_values_by_hand():
    x = torch.full((3, 2, 2), 0.5)
    out = Normalize(IMAGENET_MEAN, IMAGENET_STD)(x)
    expected = [(0.5 - 0.485) / 0.229, (0.5 - 0.456) / 0.224, (0.5 - 0.406) / 0.225]
    torch.testing.assert_close(out[:, 1, 1], torch.tensor(expected))
    assert torch.equal(x, torch.full((3, 2, 2), 0.5))  # the input is not changed
    assert Normalize([0.5], [0.25])(torch.ones(4, 1, 2, 2)).unique().tolist() == [2.0]
    with pytest.raises(ShapeError, match="3 channel"):
        Normalize(IMAGENET_MEAN, IMAGENET_STD)(torch.ones(1, 4, 4))
    with pytest.raises(DTypeError, match="float tensor"):
        Normalize(IMAGENET_MEAN, IMAGENET_STD)(torch.ones(3, 4, 4, dtype=torch.uint8))
    with pytest.raises(ConfigurationError, match="std must be a finite real number in"):
        Normalize([0.5], [0.0])
    with pytest.raises(ConfigurationError, match="the same count"):
        Normalize([0.5, 0.5], [0.2])


# -- the ImageNet pipelines ---------------------------------------------------------------


def test_eval_pipeline_is_resize_256_centre_crop_224_normalised():
    array = coordinate_image(200, 300)
    image = Image.fromarray(array)
    out = imagenet_eval_transform()(image)
    # 300 x 200 -> 384 x 256 (Pillow's bilinear), then rows 16..240 and columns 80..304.
    resized = np.asarray(image.resize((384, 256), Image.Resampling.BILINEAR))
    window = torch.from_numpy(resized[16:240, 80:304].astype(np.float32) / 255).permute(2, 0, 1)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    torch.testing.assert_close(out, (window - mean) / std)
    raw = imagenet_eval_transform(64, resize=64, mean=None, std=None)(image.resize((96, 64)))
    assert raw.shape == (3, 64, 64) and 0.0 <= raw.min() and raw.max() <= 1.0
    with pytest.raises(ConfigurationError, match="resize must be an integer >= the crop's"):
        imagenet_eval_transform((224, 300), resize=200)
    with pytest.raises(ConfigurationError, match="mean and std go together"):
        imagenet_eval_transform(mean=None)


def test_train_pipeline_is_seeded_crop_flip_and_normalised():
    image = Image.fromarray(coordinate_image(200, 300))
    first = imagenet_train_transform(224, generator=5)
    outs = [first(image), first(image)]
    again = imagenet_train_transform(224, generator=5)
    assert torch.equal(again(image), outs[0]) and torch.equal(again(image), outs[1])
    assert outs[0].shape == (3, 224, 224) and not torch.equal(outs[0], outs[1])
    assert isinstance(first, Compose) and first.random
    steps = [type(t).__name__ for t in first.transforms]
    assert steps == ["RandomResizedCrop", "RandomHorizontalFlip", "ToTensor", "Normalize"]
    # The normalisation brings [0, 1] to [-mean / std, (1 - mean) / std].
    low = min(-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD))
    assert outs[0].min() >= low - 1e-6


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: RandomResizedCrop(0), "size must be an int or"),
        (lambda: RandomResizedCrop(224, scale=(0.5, 0.1)), "scale must satisfy"),
        (lambda: RandomResizedCrop(224, ratio=(0.0, 1.0)), "ratio must satisfy 0 < low"),
        (lambda: RandomResizedCrop(224, ratio=(1.0, math.inf)), "ratio must be a pair"),
        (lambda: RandomResizedCrop(224, interpolation="lanczos"), "interpolation must be"),
        (lambda: RandomResizedCrop(224, generator="seed"), "generator must be"),
        (lambda: Resize(-3), "size must be >= 1"),
        (lambda: RandomHorizontalFlip(1.5), r"p must be a finite real number in \[0, 1\]"),
    ],
)
def test_bad_arguments_are_named(build, message):
    with pytest.raises(ConfigurationError, match=message):
        build()


def test_bad_images_are_named():
    with pytest.raises(ShapeError, match="PIL image or a tensor"):
        Resize(8)(np.zeros((4, 4)))
    with pytest.raises(ShapeError, match=r"got shape \(4,\)"):
        CenterCrop(2)(torch.zeros(4))
    with pytest.raises(DTypeError, match="float or uint8 tensor"):
        Resize(2)(torch.zeros(1, 4, 4, dtype=torch.int32))
