"""TrivialAugmentWide and RandomErasing (spikeflow.data.image_augment) against
hand-derived values: each operation on small images whose pixels are known, the
magnitude bins and the order of the draws, draw statistics from a seeded generator,
erasing boxes, per-worker streams, and CIFAR's ``augment="psn"``."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch

from spikeflow.data.datasets import CIFAR10, MNIST
from spikeflow.data.frame_transforms import RandomCropFrames, RandomHorizontalFlipFrames
from spikeflow.data.image_augment import (
    TRIVIAL_AUGMENT_WIDE_OPS,
    RandomErasing,
    TrivialAugmentWide,
)
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.training.config import TrainConfig
from spikeflow.training.data import build_datasets

Image = pytest.importorskip("PIL.Image", reason="Pillow is the extra 'images'")

OPS = list(TRIVIAL_AUGMENT_WIDE_OPS)


def drawn(transform, values, integers, calls=None):
    """Make ``transform`` draw ``values`` (uniform [0, 1)) and ``integers`` (randint)."""
    values, integers = iter(values), iter(integers)
    transform._rand = lambda: next(values)

    def randint(high):
        if calls is not None:
            calls.append(high)
        return next(integers)

    transform._randint = randint
    return transform


def grey(values) -> Image.Image:
    return Image.fromarray(np.asarray(values, dtype=np.uint8))


def coordinate_image(height: int, width: int) -> np.ndarray:
    """uint8 [H, W, 3]: R = 1 + column, G = 1 + row, B = 7 (no pixel equals the fill)."""
    rows, cols = np.mgrid[0:height, 0:width]
    return np.stack([1 + cols, 1 + rows, np.full_like(rows, 7)], axis=-1).astype(np.uint8)


def apply(op, magnitude, image, **kwargs):
    return np.asarray(TrivialAugmentWide(**kwargs).apply(image, op, magnitude))


# -- the op set, the bins and the draws ----------------------------------------------


def test_magnitude_bins_are_the_wide_ranges():
    t = TrivialAugmentWide()
    assert OPS == ["Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate",
                   "Brightness", "Color", "Contrast", "Sharpness", "Posterize", "Solarize",
                   "AutoContrast", "Equalize"]  # fmt: skip
    assert [t.magnitude("ShearX", k) for k in (0, 15, 30)] == pytest.approx([0, 0.495, 0.99])
    assert [t.magnitude("TranslateY", k) for k in (0, 15, 30)] == pytest.approx([0, 16, 32])
    assert [t.magnitude("Rotate", k) for k in (1, 30)] == pytest.approx([4.5, 135])
    assert t.magnitude("Contrast", 10) == pytest.approx(0.33)
    # 8 - round(k / 5): bits 8 (k = 0..2), 7 (3..7), ..., 2 (28..30).
    bits = [t.magnitude("Posterize", k) for k in range(31)]
    assert bits == [8] * 3 + [7] * 5 + [6] * 5 + [5] * 5 + [4] * 5 + [3] * 5 + [2] * 3
    assert [t.magnitude("Solarize", k) for k in (0, 15, 30)] == pytest.approx([255, 127.5, 0])
    assert t.magnitude("Equalize", 7) == 0.0


def test_draws_come_in_torchvisions_order():
    calls: list[int] = []
    t = drawn(TrivialAugmentWide(), [], [5, 30, 1], calls)
    assert t.get_params() == ("Rotate", -135.0)  # op, bin, sign (1: negative)
    assert calls == [14, 31, 2]
    calls.clear()
    t = drawn(TrivialAugmentWide(), [], [3, 15, 0], calls)
    assert t.get_params() == ("TranslateX", pytest.approx(16.0))
    calls.clear()
    t = drawn(TrivialAugmentWide(), [], [10, 29], calls)  # unsigned: no sign draw
    assert t.get_params() == ("Posterize", 2.0) and calls == [14, 31]
    calls.clear()
    t = drawn(TrivialAugmentWide(), [], [13], calls)  # no magnitude: one draw
    assert t.get_params() == ("Equalize", 0.0) and calls == [14]


def test_op_magnitude_and_sign_distribution_from_a_seeded_generator():
    t = TrivialAugmentWide(generator=0)
    draws = [t.get_params() for _ in range(7000)]
    ops = Counter(op for op, _ in draws)
    assert set(ops) == set(OPS)
    assert all(abs(n - 500) < 90 for n in ops.values()), ops  # 500 each, sd ~21
    rotate = [m for op, m in draws if op == "Rotate"]
    bins = {round(abs(m) / 4.5) for m in rotate}
    assert bins == set(range(31))
    assert all(abs(abs(m) / 4.5 - round(abs(m) / 4.5)) < 1e-9 for m in rotate)
    signed = [m for op, m in draws if TRIVIAL_AUGMENT_WIDE_OPS[op][1] and m != 0]
    assert abs(sum(m < 0 for m in signed) / len(signed) - 0.5) < 0.03
    assert all(m >= 0 for op, m in draws if not TRIVIAL_AUGMENT_WIDE_OPS[op][1])
    assert np.mean([abs(m) for m in rotate]) == pytest.approx(67.5, rel=0.1)


# -- the operations, by hand -------------------------------------------------------------


def test_posterize_solarize_autocontrast_equalize_values():
    image = grey([[0, 37, 127, 128, 200, 255]])
    assert apply("Posterize", 2, image).tolist() == [[0, 0, 64, 128, 192, 192]]
    assert apply("Posterize", 8, image).tolist() == [[0, 37, 127, 128, 200, 255]]
    # Levels >= the threshold become 255 - level.
    assert apply("Solarize", 128.0, image).tolist() == [[0, 37, 127, 127, 55, 0]]
    assert apply("Solarize", 127.5, image).tolist() == [[0, 37, 127, 127, 55, 0]]
    assert apply("Solarize", 0.0, image).tolist() == [[255, 218, 128, 127, 55, 0]]
    # AutoContrast stretches [50, 150] to [0, 255]: int((v - 50) * 2.55).
    assert apply("AutoContrast", 0, grey([[50, 100, 150, 60]])).tolist() == [[0, 127, 255, 25]]
    # Equalize (Pillow's): 255 pixels of 10, 255 of 20, 510 of 30; step = (1020 - 510)
    # // 255 = 2; the map is the running count from step // 2 = 1, divided by 2.
    levels = np.array([10] * 255 + [20] * 255 + [30] * 510).reshape(20, 51)
    out = apply("Equalize", 0, grey(levels))
    assert {int(v): int(out[levels == v][0]) for v in (10, 20, 30)} == {10: 0, 20: 128, 30: 255}
    assert all(len(np.unique(out[levels == v])) == 1 for v in (10, 20, 30))


def test_enhancers_scale_towards_their_degenerate_images():
    image = grey([[0, 40, 100, 200]])
    assert apply("Brightness", -0.5, image).tolist() == [[0, 20, 50, 100]]  # factor 0.5
    # Factor 1.99: Pillow's blend truncates (79.6 -> 79) and clips (398 -> 255).
    assert apply("Brightness", 0.99, image).tolist() == [[0, 79, 199, 255]]
    # Contrast factor 0 is the mean grey: int(85 + 0.5).
    assert apply("Contrast", -1.0, image).tolist() == [[85, 85, 85, 85]]
    # Color factor 0 is greyscale (ITU-R 601 luma); factor 1 the image itself.
    rgb = Image.fromarray(np.array([[[200, 100, 0], [0, 0, 250]]], dtype=np.uint8))
    lum = [round(200 * 0.299 + 100 * 0.587), round(250 * 0.114)]
    assert apply("Color", -1.0, rgb).tolist() == [[[lum[0]] * 3, [lum[1]] * 3]]
    assert np.array_equal(apply("Color", 0.0, rgb), np.asarray(rgb))
    # Sharpness factor 0 is Pillow's SMOOTH (1 1 1 / 1 5 1 / 1 1 1, / 13) inside the border.
    spot = np.zeros((5, 5), dtype=np.uint8)
    spot[2, 2] = 130
    out = apply("Sharpness", -1.0, grey(spot))
    assert out[2, 2] == 50 and out[1, 2] == 10 and out[1, 1] == 10 and out[0, 0] == 0
    assert np.array_equal(apply("Sharpness", 0.0, grey(spot)), spot)


def test_translate_moves_known_pixels_and_fills():
    image = coordinate_image(6, 8)
    pil = Image.fromarray(image)
    out = apply("TranslateX", 3.7, pil, fill=(9, 8, 6))  # int(3.7) = 3 pixels right
    assert np.array_equal(out[:, 3:], image[:, :5])
    assert (out[:, :3] == [9, 8, 6]).all()
    out = apply("TranslateX", -3.7, pil)  # 3 pixels left
    assert np.array_equal(out[:, :5], image[:, 3:]) and (out[:, 5:] == 0).all()
    out = apply("TranslateY", 2.0, pil, fill=4)
    assert np.array_equal(out[2:], image[:4]) and (out[:2] == 4).all()
    out = apply("TranslateY", 32.0, pil)  # the wide range moves it out of a small image
    assert (out == 0).all()


def test_shear_takes_the_input_at_x_plus_m_y_about_the_corner():
    image = coordinate_image(6, 6)
    for m in (0.5, -0.5, 0.99):
        out = apply("ShearX", m, Image.fromarray(image), fill=200)
        out_y = apply("ShearY", m, Image.fromarray(image), fill=200)
        for y in range(6):
            for x in range(6):
                # Nearest: Pillow samples at pixel centres, (x + 0.5) + m (y + 0.5), floor.
                xs = math.floor(x + 0.5 + m * (y + 0.5))
                want = image[y, xs] if 0 <= xs < 6 else [200, 200, 200]
                assert out[y, x].tolist() == list(want), (m, y, x)
                ys = math.floor(y + 0.5 + m * (x + 0.5))
                want = image[ys, x] if 0 <= ys < 6 else [200, 200, 200]
                assert out_y[y, x].tolist() == list(want), (m, y, x)


def test_rotate_counter_clockwise_about_the_centre_with_fill():
    image = coordinate_image(8, 8)
    out = apply("Rotate", 90.0, Image.fromarray(image))
    assert np.array_equal(out, np.rot90(image))  # counter-clockwise
    out = apply("Rotate", -90.0, Image.fromarray(image))
    assert np.array_equal(out, np.rot90(image, -1))
    out = apply("Rotate", 45.0, Image.fromarray(image), fill=(0, 0, 250))
    assert out[0, 0].tolist() == [0, 0, 250] and out[7, 7].tolist() == [0, 0, 250]
    centre = out[3:5, 3:5].reshape(-1, 3)
    assert (centre[:, 2] == 7).all()  # the middle stays inside the image
    assert np.array_equal(apply("Identity", 0.0, Image.fromarray(image)), image)


def test_tensors_go_through_the_same_pil_ops():
    rng = np.random.default_rng(0)
    hwc = rng.integers(0, 256, (9, 7, 3), dtype=np.uint8)
    pil = Image.fromarray(hwc)
    as_uint8 = torch.from_numpy(hwc).permute(2, 0, 1).contiguous()
    as_float = as_uint8.double() / 255
    for k, op in enumerate(OPS):
        want = np.array(drawn(TrivialAugmentWide(), [], [k, 20, 1])(pil))
        got = drawn(TrivialAugmentWide(), [], [k, 20, 1])(as_uint8)
        assert got.dtype == torch.uint8 and got.shape == (3, 9, 7)
        assert np.array_equal(got.permute(1, 2, 0).numpy(), want), op
        got = drawn(TrivialAugmentWide(), [], [k, 20, 1])(as_float)
        assert got.dtype == torch.float64
        assert torch.allclose(got * 255, torch.from_numpy(want).permute(2, 0, 1).double()), op
    one = torch.from_numpy(hwc[:, :, 0])[None]
    out = drawn(TrivialAugmentWide(), [], [10, 30])(one)  # posterize to 2 bits
    assert torch.equal(out, one & 0b11000000)
    # A float image between the 256 levels is rounded to them.
    out = drawn(TrivialAugmentWide(), [], [0])(torch.full((1, 2, 2), 0.5))
    assert torch.allclose(out, torch.full((1, 2, 2), 128 / 255))


def test_seeded_generators_reproduce_and_differ():
    images = [torch.from_numpy(coordinate_image(16, 16)).permute(2, 0, 1) for _ in range(30)]
    seeded = TrivialAugmentWide(generator=3)
    a = [seeded(x) for x in images]
    again = TrivialAugmentWide(generator=torch.Generator().manual_seed(3))
    assert all(torch.equal(x, again(y)) for x, y in zip(a, images))
    other = TrivialAugmentWide(generator=4)
    assert not all(torch.equal(x, other(y)) for x, y in zip(a, images))
    torch.manual_seed(1)
    b = [TrivialAugmentWide()(x) for x in images[:10]]
    torch.manual_seed(1)
    shared = TrivialAugmentWide()
    assert all(torch.equal(x, shared(y)) for x, y in zip(b, images))


class _Same(torch.utils.data.Dataset):
    """One image eight times, through seeded transforms: differences are draws."""

    def __init__(self) -> None:
        self.image = torch.from_numpy(coordinate_image(32, 32)).permute(2, 0, 1).float() / 255
        self.augment = TrivialAugmentWide(generator=0)
        self.erase = RandomErasing(1.0, generator=0)

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.augment(self.image), self.erase(self.image)


def test_each_worker_and_epoch_draws_its_own_stream():
    torch.manual_seed(0)
    loader = torch.utils.data.DataLoader(_Same(), batch_size=1, num_workers=2)
    first, second = [list(zip(*loader)) for _ in range(2)]
    erased = [torch.cat(e[1]) for e in (first, second)]
    assert len({x.numpy().tobytes() for x in erased[0]}) == 8  # no two workers alike
    assert not torch.equal(erased[0], erased[1])
    assert not torch.equal(torch.cat(first[0]), torch.cat(second[0]))
    torch.manual_seed(0)
    again = list(zip(*loader))
    assert torch.equal(torch.cat(again[0]), torch.cat(first[0]))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_magnitude_bins": 1}, "num_magnitude_bins"),
        ({"num_magnitude_bins": 3.0}, "num_magnitude_bins"),
        ({"interpolation": "lanczos"}, "interpolation"),
        ({"fill": 256}, "fill"),
        ({"fill": 1.5}, "fill"),
        ({"fill": ()}, "fill"),
        ({"generator": "seed"}, "generator"),
    ],
)
def test_bad_trivial_augment_arguments_are_named(kwargs, message):
    with pytest.raises(ConfigurationError, match=message):
        TrivialAugmentWide(**kwargs)


def test_bad_trivial_augment_inputs_are_named():
    t = TrivialAugmentWide()
    with pytest.raises(ShapeError, match=r"C = 1 or 3; got shape \(2, 4, 4\)"):
        t(torch.zeros(2, 4, 4))
    with pytest.raises(ShapeError, match="C, H, W"):
        t(torch.zeros(1, 3, 4, 4))
    with pytest.raises(DTypeError, match="int32"):
        t(torch.zeros(3, 4, 4, dtype=torch.int32))
    with pytest.raises(DTypeError, match="ndarray"):
        t(np.zeros((4, 4, 3), dtype=np.uint8))
    with pytest.raises(DTypeError, match="mode 'RGBA'"):
        t(Image.new("RGBA", (4, 4)))
    with pytest.raises(ConfigurationError, match="fill has 3 values"):
        TrivialAugmentWide(fill=(1, 2, 3)).apply(grey([[1]]), "Rotate", 10.0)
    with pytest.raises(ConfigurationError, match="unknown operation 'Invert'"):
        t.apply(grey([[1]]), "Invert", 0.0)


# -- RandomErasing -------------------------------------------------------------------------


def test_erasing_box_from_fixed_draws():
    calls: list[int] = []
    erase = drawn(RandomErasing(1.0), [0.0, 0.5, 0.5], [3, 5], calls)
    x = torch.rand(2, 3, 40, 50)
    out = erase(x)
    # u = 0.5: area (0.02 + 0.31 / 2) · 2,000 = 350; log-ratio midway between log 0.3
    # and log 3.3: r = sqrt(0.99), so h = round(sqrt(350 r)) = 19, w = round(sqrt(350 / r)) = 19.
    assert calls == [40 - 19 + 1, 50 - 19 + 1]
    mask = torch.zeros(40, 50, dtype=torch.bool)
    mask[3:22, 5:24] = True
    assert (out[..., mask] == 0).all() and torch.equal(out[..., ~mask], x[..., ~mask])
    assert not (x[..., mask] == 0).all()  # the input is not changed
    # p: a first draw at or above p erases nothing.
    assert drawn(RandomErasing(0.3), [0.3], [])(x) is x


def test_erasing_retries_then_gives_up():
    # Attempt 1: the whole area at ratio 3.3 gives h = round(sqrt(0.33·400·3.3)) = 21 >= 20.
    calls: list[int] = []
    erase = drawn(RandomErasing(1.0), [1.0, 1.0, 0.0, 0.5], [0, 0], calls)
    assert erase.get_params(20, 20) == (0, 0, 3, 3)  # area 8: h = w = round(sqrt(8)) = 3
    assert calls == [18, 18]
    never = drawn(RandomErasing(1.0, scale=(1.0, 1.0)), [0.0] + [0.5] * 20, [])
    x = torch.rand(3, 8, 8)
    assert torch.equal(never(x), x)


def test_erasing_statistics_from_a_seeded_generator():
    erase = RandomErasing(0.5, generator=0)
    height, width = 60, 80
    boxes = [erase.get_params(height, width) for _ in range(3000)]
    assert all(box is not None for box in boxes)
    areas = np.array([h * w / (height * width) for _, _, h, w in boxes])
    ratios = np.array([h / w for _, _, h, w in boxes])
    assert areas.min() > 0.015 and areas.max() < 0.36  # scale, up to rounding
    assert ratios.min() > 0.25 and ratios.max() < 3.6
    assert np.mean(np.log(ratios)) == pytest.approx(0.0, abs=0.1)  # log-uniform, symmetric
    lows = [top / (height - h) for top, _, h, _ in boxes]
    assert np.mean(lows) == pytest.approx(0.5, abs=0.03)  # uniform position
    hits = [not torch.equal(erase(torch.ones(1, 8, 8)), torch.ones(1, 8, 8)) for _ in range(2000)]
    assert np.mean(hits) == pytest.approx(0.5, abs=0.04)


def test_erasing_values_per_channel_and_noise():
    x = torch.ones(2, 3, 16, 16)
    out = drawn(RandomErasing(1.0, value=(0.1, 0.2, 0.3)), [0.0, 0.5, 0.5], [0, 0])(x)
    inside = out[..., :5, :5]  # area 0.175·256 = 44.8, ratio ~1: h = w = 7
    assert torch.allclose(inside, torch.tensor([0.1, 0.2, 0.3]).view(3, 1, 1).expand(2, 3, 5, 5))
    assert (out[..., 7:, :] == 1).all() and not (out[..., 6, 6] == 1).any()
    noisy = RandomErasing(1.0, scale=(0.3, 0.3), ratio=(1, 1), value="random", generator=0)
    out = noisy(torch.full((3, 100, 100), 7.0))
    patch = out[out != 7.0]
    assert patch.numel() == 3 * 55 * 55
    assert float(patch.mean()) == pytest.approx(0.0, abs=0.05)
    assert float(patch.std()) == pytest.approx(1.0, abs=0.05)
    assert drawn(RandomErasing(1.0, value=9), [0.0, 0.5, 0.5], [0, 0])(
        torch.zeros(1, 4, 4, dtype=torch.uint8)).max() == 9  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"p": 1.5}, "p"),
        ({"scale": (0.5, 0.1)}, "scale"),
        ({"scale": (0.5, 2.0)}, "scale"),
        ({"ratio": (0.0, 1.0)}, "ratio"),
        ({"value": "noise"}, "value"),
        ({"value": ()}, "value"),
        ({"value": float("nan")}, "value"),
    ],
)
def test_bad_erasing_arguments_are_named(kwargs, message):
    with pytest.raises(ConfigurationError, match=message):
        RandomErasing(**kwargs)


def test_bad_erasing_inputs_are_named():
    with pytest.raises(ShapeError, match=r"\[\.\.\., C, H, W\]; got \(4, 4\)"):
        RandomErasing()(torch.zeros(4, 4))
    with pytest.raises(ShapeError, match="value has 2 entries for 3 channel"):
        RandomErasing(value=(0, 1))(torch.zeros(3, 4, 4))
    with pytest.raises(DTypeError, match="uint8"):
        RandomErasing(value="random")(torch.zeros(3, 4, 4, dtype=torch.uint8))


# -- CIFAR augment="psn" ---------------------------------------------------------------


def write_cifar10_binary(root) -> np.ndarray:
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 3072), dtype=np.uint8)
    for name in [*(f"data_batch_{k}.bin" for k in range(1, 6)), "test_batch.bin"]:
        records = np.hstack([np.array([[3], [4]], dtype=np.uint8), images])
        (folder / name).write_bytes(records.tobytes())
    return images.reshape(2, 3, 32, 32)


def test_cifar_psn_augmentation_is_crop_flip_trivialaugment_erasing(tmp_path):
    images = write_cifar10_binary(tmp_path)
    data = CIFAR10(tmp_path, augment="psn")
    assert data.augment and data.augment_policy == "psn"
    steps = data.augmentation()
    assert [type(s) for s in steps] == [RandomCropFrames, RandomHorizontalFlipFrames,
                                        TrivialAugmentWide, RandomErasing]  # fmt: skip
    assert steps[0].padding == 4 and steps[1].p == 0.5 and steps[3].p == 0.1
    assert "augment='psn'" in repr(data)
    reference = [RandomCropFrames(32, padding=4), RandomHorizontalFlipFrames(0.5),
                 TrivialAugmentWide(), RandomErasing(0.1)]  # fmt: skip
    image = torch.from_numpy(images[1]).float() / 255
    changed = 0
    for seed in range(12):
        torch.manual_seed(seed)
        got, label = data[1]
        torch.manual_seed(seed)
        want = image
        for step in reference:
            want = step(want)
        assert torch.equal(got, want) and label == 4
        assert got.dtype == torch.float32 and got.shape == (3, 32, 32)
        changed += not torch.equal(got, image)
    assert changed >= 10
    plain = CIFAR10(tmp_path, augment="standard")
    assert plain.augment_policy == "standard" and len(plain.augmentation()) == 2
    assert CIFAR10(tmp_path, augment=True).augment_policy == "standard"
    assert CIFAR10(tmp_path).augment_policy is None and not CIFAR10(tmp_path).augment


def test_augment_names_are_checked(tmp_path):
    write_cifar10_binary(tmp_path)
    with pytest.raises(ConfigurationError, match=r"'standard', 'psn'; got 'trivial'"):
        CIFAR10(tmp_path, augment="trivial")
    with pytest.raises(ConfigurationError, match="augment must be True, False"):
        CIFAR10(tmp_path, augment=1)
    with pytest.raises(ConfigurationError, match=r"one of 'standard'; got 'psn'"):
        MNIST(tmp_path, augment="psn")


def test_spikeflow_train_passes_the_policy_name(tmp_path):
    write_cifar10_binary(tmp_path)
    config = TrainConfig(dataset="cifar10", data_dir=str(tmp_path),
                         dataset_kwargs={"augment": "psn"})  # fmt: skip
    train, test, _ = build_datasets(config)
    assert train.augment_policy == "psn" and not test.augment
    config = TrainConfig(dataset="cifar10", data_dir=str(tmp_path),
                         dataset_kwargs={"augment": "autoaugment"})  # fmt: skip
    # The dataset class's wording, naming the option.
    message = (r"CIFAR10 \(--dataset-kwargs\): augment must be True, False \(true, false on "
               r"the command line\) or one of 'standard', 'psn'; got 'autoaugment'")  # fmt: skip
    with pytest.raises(ConfigurationError, match=message):
        build_datasets(config)
    with pytest.raises(ConfigurationError, match=message.replace(r" \(--dataset-kwargs\)", "")):
        CIFAR10(tmp_path, augment="autoaugment")
