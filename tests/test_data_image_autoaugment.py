"""AutoAugment and RandAugment (spikeflow.data.image_autoaugment) on the shared Pillow
operations (spikeflow.data.image_augment_ops): the policy tables as transcribed, the
magnitude bins by hand, the order and use of the draws, the operations against Pillow
calls written out by hand on real images (scikit-learn's sample photos and its digits
upscaled), seeded reproducibility, and the refusals.

Reference check, run once against torchvision 0.28.0 (its Python transforms loaded
without its compiled ops; torchvision is not a dependency, so not in CI): the three
tables equal torchvision's ``AutoAugment`` policies entry for entry; 3,194 magnitudes
(RandAugment's and AutoAugment's ranges for 5, 10 and 31 bins on four image sizes,
TrivialAugment-wide's 31 bins) equal bit for bit; every one of the 15 operations on 12
real images (the china/flower photos resized to 64x43 and 32x32 or cropped to 96x80,
six digits upscaled to 32x32 grey), at 14 magnitudes, nearest and bilinear, fill 0 and
another, gave identical pixels (9,216 cases); and with the same global random stream
``AutoAugment`` (imagenet, cifar10, svhn), ``RandAugment`` (2 ops at 9 of 31, 3 at 15
of 31, 1 at 5 of 10) and ``TrivialAugmentWide``, nearest and bilinear, each gave
torchvision's pixels on 300 draws of a PIL image, whether spikeflow was given that PIL
image or its uint8 tensor. That check found one difference, now fixed: torchvision
shears by the angle ``atan(m)`` in degrees, whose factor differs from ``m`` in the last
bits, which moved some bilinear levels by one (``_shear_factor``).

Re-checked independently in review (torchvision 0.28.0, global seeds 1000..1024): the
three AutoAugment policies, RandAugment (2 at 9 of 31, 4 at 30 of 31, 1 at 0 of 31,
3 at 6 of 7, 2 at 1 of 2) and TrivialAugmentWide (31 and 7 bins), nearest and bilinear,
fill 0, 200 and a per-channel one, on non-square photos (53x37, 101x64, 7x129, 1x1) and
grey digits (28x28, 20x28): 9,000 draws, all identical from PIL images and from uint8
tensors; 38,304 magnitudes (2..64 bins, six image sizes) bit for bit. torchvision's own
tensor kernels differ from its PIL path (443 of 1,500 draws on uint8 tensors), so
tensors match torchvision given the PIL image, not torchvision given the tensor.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch

from spikeflow.data.image_augment import TrivialAugmentWide, imagenet_trivial_augment_transform
from spikeflow.data.image_augment_ops import IMAGE_OPERATIONS, apply_image_operation
from spikeflow.data.image_autoaugment import (
    AUTO_AUGMENT_NAMES,
    AUTO_AUGMENT_POLICIES,
    POLICY_OPS,
    AutoAugment,
    RandAugment,
    augment_policy_transform,
    imagenet_policy_transform,
    policy_magnitude,
)
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError

Image = pytest.importorskip("PIL.Image", reason="Pillow is the extra 'images'")
ImageOps = pytest.importorskip("PIL.ImageOps")
ImageEnhance = pytest.importorskip("PIL.ImageEnhance")
datasets = pytest.importorskip("sklearn.datasets", reason="scikit-learn's real images")

NEAREST = Image.Resampling.NEAREST


def photo(size=(48, 40)) -> Image.Image:
    """scikit-learn's china.jpg (a real photo), resized (RGB)."""
    return Image.fromarray(datasets.load_sample_image("china.jpg")).resize(size, Image.BILINEAR)


def digit(index=0, side=32) -> Image.Image:
    """A real 8x8 digit of scikit-learn, levels 0..255, upscaled (grey)."""
    levels = (datasets.load_digits().images[index] * 255 / 16).astype(np.uint8)
    return Image.fromarray(levels).resize((side, side), NEAREST)


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


# -- the tables ---------------------------------------------------------------------------


def test_policy_tables_as_transcribed():
    assert AUTO_AUGMENT_NAMES == ("ra", "ta_wide", "imagenet", "cifar10", "svhn")
    # Per table: the operations' counts, the sum of the probabilities and of the bins
    # (recorded from torchvision 0.28's tables).
    expected = {
        "imagenet": ({"AutoContrast": 2, "Color": 6, "Contrast": 2, "Equalize": 17,
                      "Invert": 3, "Posterize": 5, "Rotate": 6, "Sharpness": 1, "ShearX": 1,
                      "Solarize": 7}, 31.0, 159),
        "cifar10": ({"AutoContrast": 7, "Brightness": 4, "Color": 5, "Contrast": 2,
                     "Equalize": 9, "Invert": 3, "Posterize": 1, "Rotate": 1, "Sharpness": 5,
                     "ShearY": 2, "Solarize": 4, "TranslateX": 2, "TranslateY": 5}, 26.5, 187),
        "svhn": ({"AutoContrast": 3, "Contrast": 1, "Equalize": 6, "Invert": 12, "Rotate": 4,
                  "ShearX": 6, "ShearY": 8, "Solarize": 5, "TranslateX": 1,
                  "TranslateY": 4}, 32.9, 143),
    }  # fmt: skip
    for name, (ops, total_p, total_bins) in expected.items():
        table = AUTO_AUGMENT_POLICIES[name]
        steps = [step for sub in table for step in sub]
        assert len(table) == 25 and all(len(sub) == 2 for sub in table)
        assert Counter(op for op, _, _ in steps) == ops, name
        assert sum(p for _, p, _ in steps) == pytest.approx(total_p), name
        assert sum(b or 0 for _, _, b in steps) == total_bins, name
        for op, p, b in steps:  # a bin exactly where the operation has a range
            assert 0.0 <= p <= 1.0 and (b is None) == (POLICY_OPS[op][0] is None), (name, op)
            assert b is None or 0 <= b <= 9
    # First and last sub-policies of each table (Cubuk et al. 2019, appendix).
    first_last = {
        "imagenet": ((("Posterize", 0.4, 8), ("Rotate", 0.6, 9)),
                     (("Equalize", 0.8, None), ("Equalize", 0.6, None))),
        "cifar10": ((("Invert", 0.1, None), ("Contrast", 0.2, 6)),
                    (("TranslateY", 0.7, 9), ("AutoContrast", 0.9, None))),
        "svhn": ((("ShearX", 0.9, 4), ("Invert", 0.2, None)),
                 (("ShearX", 0.7, 2), ("Invert", 0.1, None))),
    }  # fmt: skip
    for name, (first, last) in first_last.items():
        assert AUTO_AUGMENT_POLICIES[name][0] == first
        assert AUTO_AUGMENT_POLICIES[name][-1] == last
    assert AUTO_AUGMENT_POLICIES["cifar10"][1] == (("Rotate", 0.7, 2), ("TranslateX", 0.3, 9))
    assert AUTO_AUGMENT_POLICIES["svhn"][15] == (("Invert", 0.8, None), ("TranslateY", 0.0, 2))


def test_policy_magnitudes_by_hand():
    size = (64, 43)  # (width, height)
    # AutoAugment: 10 bins, bin k is k/9 of the range.
    assert policy_magnitude("ShearX", 9, 10, size) == pytest.approx(0.3)
    assert policy_magnitude("ShearY", 3, 10, size) == pytest.approx(0.1)
    assert policy_magnitude("Rotate", 3, 10, size) == pytest.approx(10.0)
    assert policy_magnitude("Color", 8, 10, size) == pytest.approx(0.8)
    assert policy_magnitude("TranslateX", 9, 10, size) == pytest.approx(150 / 331 * 64)
    assert policy_magnitude("TranslateY", 9, 10, size) == pytest.approx(150 / 331 * 43)
    assert policy_magnitude("Solarize", 5, 10, size) == pytest.approx(255 * 4 / 9)
    # Posterize keeps 8 - round(k / 2.25) bits: 8 down to 4.
    bits = [policy_magnitude("Posterize", k, 10, size) for k in range(10)]
    assert bits == [8, 8, 7, 7, 6, 6, 5, 5, 4, 4]
    assert policy_magnitude("Invert", 4, 10, size) == 0.0
    # RandAugment's default bin 9 of 31 is 9/30 of each range.
    assert policy_magnitude("Rotate", 9, 31, size) == pytest.approx(9.0)
    assert policy_magnitude("Brightness", 9, 31, size) == pytest.approx(0.27)
    assert policy_magnitude("Posterize", 9, 31, size) == 7  # 8 - round(9 / 7.5)
    assert policy_magnitude("Solarize", 9, 31, size) == pytest.approx(178.5)
    assert policy_magnitude("TranslateY", 9, 31, size) == pytest.approx(150 / 331 * 43 * 0.3)
    # The bins are float32, as torchvision's tables.
    assert policy_magnitude("ShearX", 1, 10, size) == float(np.float32(0.3 / 9))


# -- the draws ---------------------------------------------------------------------------


def test_autoaugment_draws_a_sub_policy_then_its_steps():
    calls: list[int] = []
    # svhn sub-policy 0: ShearX 0.9 bin 4, Invert 0.2. u = (0.9, 0.2): both run (u <= p);
    # sign draw 0 negates the signed ShearX.
    t = drawn(AutoAugment("svhn"), [0.9, 0.2], [0, 0, 1], calls)
    assert t.get_params((32, 32)) == [("ShearX", pytest.approx(-0.4 / 3)), ("Invert", 0.0)]
    assert calls == [25, 2, 2]  # the sub-policy, then both signs, whatever runs
    t = drawn(AutoAugment("svhn"), [0.91, 0.21], [0, 1, 1])
    assert t.get_params((32, 32)) == []  # u > p: neither runs
    t = drawn(AutoAugment("svhn"), [0.5, 0.5], [0, 1, 0])
    assert t.get_params((32, 32)) == [("ShearX", pytest.approx(0.4 / 3))]
    # imagenet 0: Posterize 0.4 bin 8 (4 bits), Rotate 0.6 bin 9 (30 degrees).
    t = drawn(AutoAugment(), [0.0, 0.6], [0, 0, 1])
    assert t.get_params((32, 32)) == [("Posterize", 4.0), ("Rotate", pytest.approx(30.0))]
    # cifar10 21: TranslateY 0.9 bin 9 twice, on a 40-pixel-high image.
    t = drawn(AutoAugment("cifar10"), [0.1, 0.1], [21, 1, 0])
    shift = 150 / 331 * 40
    assert t.get_params((48, 40)) == [("TranslateY", pytest.approx(shift)),
                                      ("TranslateY", pytest.approx(-shift))]  # fmt: skip


def test_randaugment_draws_op_then_sign_per_step():
    calls: list[int] = []
    t = drawn(RandAugment(), [], [5, 1, 13], calls)  # Rotate, negative; Equalize
    assert t.get_params((32, 32)) == [("Rotate", pytest.approx(-9.0)), ("Equalize", 0.0)]
    assert calls == [14, 2, 14]  # no sign draw for an unsigned operation
    t = drawn(RandAugment(num_ops=3, magnitude=30), [], [10, 11, 3, 0])
    assert t.get_params((32, 32)) == [("Posterize", 4.0), ("Solarize", 0.0),
                                      ("TranslateX", pytest.approx(150 / 331 * 32))]  # fmt: skip
    assert drawn(RandAugment(num_ops=0), [], []).get_params((8, 8)) == []


def test_seeded_draw_statistics():
    t = AutoAugment("imagenet", generator=0)
    runs = [len(t.get_params((32, 32))) for _ in range(4000)]
    # Each of the 50 steps is drawn at rate 1/25 of its sub-policy: 31.0 / 50 run.
    assert np.mean(runs) / 2 == pytest.approx(31.0 / 50, abs=0.02)
    r = RandAugment(num_ops=1, generator=0)
    ops = Counter(r.get_params((32, 32))[0][0] for _ in range(7000))
    assert set(ops) == set(RandAugment.ops) and "Invert" not in ops
    assert all(abs(n - 500) < 90 for n in ops.values()), ops
    rotations = [m for _ in range(3000) for op, m in r.get_params((32, 32)) if op == "Rotate"]
    assert {abs(m) for m in rotations} == {9.0}  # bin 9 of 31 of 30 degrees, exact
    assert np.mean([m < 0 for m in rotations]) == pytest.approx(0.5, abs=0.12)


# -- the operations, by hand on real images ----------------------------------------------


def test_operations_equal_pillow_calls_written_out():
    rgb, grey = photo(), digit(3)
    for image in (rgb, grey):
        fill = 9 if image.mode == "L" else (9, 8, 7)
        hand = {
            ("ShearX", 0.25): image.transform(image.size, Image.Transform.AFFINE,
                                              (1, 0.25, 0, 0, 1, 0), NEAREST, fillcolor=fill),
            ("ShearY", -0.3): image.transform(image.size, Image.Transform.AFFINE,
                                              (1, 0, 0, -0.3, 1, 0), NEAREST, fillcolor=fill),
            ("TranslateX", 7.9): image.transform(image.size, Image.Transform.AFFINE,
                                                 (1, 0, -7, 0, 1, 0), NEAREST, fillcolor=fill),
            ("TranslateY", -3.2): image.transform(image.size, Image.Transform.AFFINE,
                                                  (1, 0, 0, 0, 1, 3), NEAREST, fillcolor=fill),
            ("Rotate", 20.0): image.rotate(20.0, NEAREST, fillcolor=fill),
            ("Brightness", 0.4): ImageEnhance.Brightness(image).enhance(1.4),
            ("Color", -0.5): ImageEnhance.Color(image).enhance(0.5),
            ("Contrast", 0.9): ImageEnhance.Contrast(image).enhance(1.9),
            ("Sharpness", -0.8): ImageEnhance.Sharpness(image).enhance(0.2),
            ("Posterize", 5.0): ImageOps.posterize(image, 5),
            ("Solarize", 100.0): ImageOps.solarize(image, 100.0),
            ("AutoContrast", 0.0): ImageOps.autocontrast(image),
            ("Equalize", 0.0): ImageOps.equalize(image),
            ("Identity", 0.0): image,
        }  # fmt: skip
        assert {op for op, _ in hand} | {"Invert"} == set(IMAGE_OPERATIONS)
        for (op, m), want in hand.items():
            got = apply_image_operation(image, op, m, "nearest", (fill,) if image.mode == "L"
                                        else fill)  # fmt: skip
            assert np.array_equal(np.asarray(got), np.asarray(want)), (image.mode, op)
        inverted = apply_image_operation(image, "Invert", 0.0)
        assert np.array_equal(np.asarray(inverted), 255 - np.asarray(image))
    # The photo changes under each of them (not the identity by accident).
    strength = {"Rotate": 30.0, "Posterize": 3.0, "Solarize": 128.0}
    for op in ("ShearX", "Rotate", "Color", "Posterize", "Solarize", "Equalize", "Invert"):
        out = apply_image_operation(rgb, op, strength.get(op, 0.3))
        assert not np.array_equal(np.asarray(out), np.asarray(rgb)), op


def test_shear_factor_is_the_tangent_of_the_angle():
    # A factor off in its last bits moves bilinear levels; at 0.99 Pillow gets
    # tan(radians(degrees(atan(0.99)))) (x) and sin / cos of that angle (y).
    image = photo((64, 43))
    angle = math.radians(math.degrees(math.atan(0.99)))
    for op, data in (("ShearX", (1, math.tan(angle), 0, 0, 1, 0)),
                     ("ShearY", (1, 0, 0, math.sin(angle) / math.cos(angle), 1, 0))):  # fmt: skip
        want = image.transform(image.size, Image.Transform.AFFINE, data, Image.BILINEAR)
        got = apply_image_operation(image, op, 0.99, "bilinear")
        assert np.array_equal(np.asarray(got), np.asarray(want)), op


def test_policies_apply_their_draws_in_order():
    image = photo()
    # cifar10 1: Rotate 0.7 bin 2 (+20/3 degrees), TranslateX 0.3 bin 9 (int(21.75) = 21).
    t = drawn(AutoAugment("cifar10", fill=(1, 2, 3)), [0.7, 0.3], [1, 1, 1])
    want = image.rotate(20 / 3, NEAREST, fillcolor=(1, 2, 3))
    want = want.transform(want.size, Image.Transform.AFFINE, (1, 0, -21, 0, 1, 0), NEAREST,
                          fillcolor=(1, 2, 3))  # fmt: skip
    assert np.array_equal(np.asarray(t(image)), np.asarray(want))
    # RandAugment on a grey digit: Rotate -9, then Equalize.
    grey = digit(5)
    want = ImageOps.equalize(grey.rotate(-9.0, NEAREST, fillcolor=0))
    out = drawn(RandAugment(), [], [5, 1, 13])(grey)
    assert np.array_equal(np.asarray(out), np.asarray(want))
    # imagenet 13: Invert 0.6, Equalize 1.0 (bilinear matters to neither).
    out = drawn(AutoAugment(interpolation="bilinear"), [0.2, 0.2], [13, 0, 0])(image)
    assert np.array_equal(np.asarray(out), np.asarray(ImageOps.equalize(ImageOps.invert(image))))


def test_tensors_go_through_the_same_draws_and_seeds_reproduce():
    image = photo((40, 30))
    uint8 = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)
    for make in (lambda g: AutoAugment("svhn", generator=g), lambda g: RandAugment(generator=g)):
        pil_out = [np.asarray(x) for x in map(make(7), [image] * 12)]
        t = make(7)
        tensor_out = [t(uint8).permute(1, 2, 0).numpy() for _ in range(12)]
        assert all(np.array_equal(a, b) for a, b in zip(pil_out, tensor_out))
        floats = make(7)(uint8.float() / 255)
        assert floats.dtype == torch.float32
        assert torch.equal((floats * 255).round().to(torch.uint8).permute(1, 2, 0),
                           torch.from_numpy(pil_out[0].copy()))  # fmt: skip
        again = make(torch.Generator().manual_seed(7))
        assert all(np.array_equal(np.asarray(again(image)), x) for x in pil_out)
        other = [np.asarray(x) for x in map(make(8), [image] * 12)]
        assert not all(np.array_equal(a, b) for a, b in zip(pil_out, other))
        assert len({x.tobytes() for x in pil_out}) > 3  # the draws vary
        torch.manual_seed(3)
        shared = [np.asarray(make(None)(image)) for _ in range(6)]
        torch.manual_seed(3)
        assert all(np.array_equal(np.asarray(make(None)(image)), x) for x in shared)


def test_policy_names_build_their_transforms():
    assert type(augment_policy_transform("ra")) is RandAugment
    assert type(augment_policy_transform("ta_wide")) is TrivialAugmentWide
    aa = augment_policy_transform("svhn", interpolation="bilinear", fill=4)
    assert type(aa) is AutoAugment and aa.policy == "svhn"
    assert aa.interpolation == "bilinear" and aa.fill == (4,)
    ra = RandAugment()
    assert (ra.num_ops, ra.magnitude, ra.num_magnitude_bins) == (2, 9, 31)
    assert repr(aa) == "AutoAugment(policy='svhn', interpolation='bilinear', fill=(4,))"


# -- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: AutoAugment("Cifar10"), r"policy must be one of 'imagenet', 'cifar10', 'svhn'"),
        (lambda: AutoAugment(interpolation="lanczos"), "AutoAugment: interpolation"),
        (lambda: AutoAugment(fill=300), "AutoAugment: fill"),
        (lambda: RandAugment(magnitude=31), "RandAugment: magnitude must be an integer from 0"),
        (lambda: RandAugment(magnitude=31), "magnitude must be an integer from 0 to 30, got 31"),
        (lambda: RandAugment(magnitude=-1), "magnitude must be an integer from 0 to 30, got -1"),
        (lambda: RandAugment(num_magnitude_bins=5, magnitude=5), "from 0 to 4, got 5"),
        (lambda: RandAugment(magnitude=True), "an integer from 0 to 30, got True"),
        (lambda: RandAugment(magnitude=9.0), "magnitude must be an integer from 0 to 30, got 9.0"),
        (lambda: RandAugment(num_ops=-1), "RandAugment: num_ops must be an integer >= 0, got -1"),
        (lambda: RandAugment(num_magnitude_bins=1), "num_magnitude_bins must be an integer >= 2"),
        (lambda: RandAugment(generator="seed"), "generator"),
        (lambda: augment_policy_transform("rand"), r"'ra', 'ta_wide', 'imagenet', 'cifar10'"),
        (lambda: AutoAugment(["svhn"]), r"policy must be one of .*; got \['svhn'\]"),
        # A probability out of [0, 1] is refused, not read as "no erasing".
        (
            lambda: imagenet_policy_transform(32, "ra", erasing=-0.1),
            r"imagenet_policy_transform: erasing must be a finite real number "
            r"in \[0, 1\], got -0\.1",
        ),
        (lambda: imagenet_policy_transform(32, "ra", erasing=float("nan")), "erasing must be"),
        (
            lambda: imagenet_trivial_augment_transform(32, erasing=-1.0),
            "imagenet_trivial_augment_transform: erasing must be",
        ),
    ],
)
def test_bad_arguments_are_named(make, message):
    with pytest.raises(ConfigurationError, match=message):
        make()


def test_rand_augment_takes_numpy_integers_at_the_bounds():
    # The shared check_int (bounds inclusive), as the constructor's own check did.
    ra = RandAugment(num_ops=np.int64(0), magnitude=np.int32(4), num_magnitude_bins=np.int64(5))
    assert (ra.num_ops, ra.magnitude, ra.num_magnitude_bins) == (0, 4, 5)
    assert all(type(v) is int for v in (ra.num_ops, ra.magnitude, ra.num_magnitude_bins))


def test_bad_inputs_are_named():
    with pytest.raises(ShapeError, match=r"AutoAugment takes a tensor \[C, H, W\] with C = 1"):
        AutoAugment()(torch.zeros(2, 4, 4))
    with pytest.raises(DTypeError, match="RandAugment takes a uint8 or float tensor; got torch"):
        RandAugment()(torch.zeros(3, 4, 4, dtype=torch.int16))
    with pytest.raises(DTypeError, match="AutoAugment takes a PIL image of mode L or RGB"):
        AutoAugment()(Image.new("CMYK", (4, 4)))
    with pytest.raises(ConfigurationError, match="RandAugment: unknown operation 'Invert'"):
        RandAugment().apply(digit(), "Invert", 0.0)
    with pytest.raises(ConfigurationError, match="unknown operation 'Blur'"):
        apply_image_operation(digit(), "Blur", 1.0)
    with pytest.raises(ConfigurationError, match="fill has 3 values for an image of 1"):
        AutoAugment(fill=(1, 2, 3)).apply(digit(), "Rotate", 5.0)
    # On every call, not only when a geometric operation is drawn: here none runs
    # (u > p), Equalize is drawn, or Invert and Equalize.
    for policy in (drawn(AutoAugment(fill=(1, 2, 3)), [0.9, 0.9], [0, 0, 0]),
                   drawn(TrivialAugmentWide(fill=(1, 2, 3)), [], [13]),
                   drawn(RandAugment(num_ops=0, fill=(1, 2)), [], [])):  # fmt: skip
        with pytest.raises(ConfigurationError, match=r"fill has \d values for an image of 1"):
            policy(digit())
        with pytest.raises(ConfigurationError, match=r"fill has \d values for an image of 1"):
            policy(torch.zeros(1, 4, 4, dtype=torch.uint8))
    # A float image outside [0, 1] (normalised, or NaN) would be clipped to 256 levels.
    normalised = (torch.from_numpy(np.asarray(photo()).copy()).permute(2, 0, 1) / 255 - 0.5) / 0.25
    for make in (AutoAugment, RandAugment, TrivialAugmentWide):
        message = rf"{make.__name__} takes a float tensor in \[0, 1\] .*got values in \[-1.969, 2\]"
        with pytest.raises(ConfigurationError, match=message + ": apply it before Normalize"):
            make(generator=0)(normalised)
    with pytest.raises(ConfigurationError, match=r"got values in \[nan, nan\]"):
        RandAugment()(torch.full((1, 4, 4), float("nan")))
    # Rounding noise within half a level is taken: 1 + 1e-4 is level 255, -1e-4 level 0.
    grey = torch.from_numpy(np.asarray(digit()).copy())[None]
    grey[0, 0, :2] = torch.tensor([0, 255], dtype=torch.uint8)
    noisy = grey.double() / 255 + 1e-4 * (grey == 255) - 1e-4 * (grey == 0)
    assert noisy.max() > 1 and noisy.min() < 0
    out = RandAugment(generator=3)(noisy)
    assert out.dtype == torch.float64
    assert torch.equal((out * 255).round().to(torch.uint8), RandAugment(generator=3)(grey))
    # apply_image_operation checks what the policies check for it, with the same messages.
    image = photo()
    with pytest.raises(ConfigurationError, match="interpolation must be 'nearest', 'bilinear' "
                       "or 'bicubic'; got 'lanczos'"):  # fmt: skip
        apply_image_operation(image, "Rotate", 5.0, "lanczos")
    # bicubic (the recipe's --interpolation bicubic): Pillow's BICUBIC filter, by hand.
    shear = math.tan(math.radians(math.degrees(math.atan(0.3))))  # torchvision's angle trip
    for op, magnitude, by_hand in [
        ("Rotate", 20.0, lambda im: im.rotate(20.0, Image.BICUBIC, fillcolor=(0, 0, 0))),
        ("ShearX", 0.3, lambda im: im.transform(im.size, Image.AFFINE,
                                                (1, shear, 0, 0, 1, 0),
                                                Image.BICUBIC, fillcolor=(0, 0, 0))),
    ]:  # fmt: skip
        got = apply_image_operation(image, op, magnitude, "bicubic")
        assert np.array_equal(np.asarray(got), np.asarray(by_hand(image)))
        assert not np.array_equal(np.asarray(got),
                                  np.asarray(apply_image_operation(image, op, magnitude,
                                                                   "bilinear")))  # fmt: skip
    with pytest.raises(ConfigurationError, match=r"fill must be a grey level 0\.\.255 .*\(300,\)"):
        apply_image_operation(image, "Rotate", 5.0, "nearest", (300,))
    with pytest.raises(DTypeError, match="apply_image_operation takes a PIL image of mode L or "
                       "RGB; got mode 'CMYK'"):  # fmt: skip
        apply_image_operation(Image.new("CMYK", (4, 4)), "Rotate", 5.0)
    with pytest.raises(DTypeError, match="takes a PIL image of mode L or RGB; got Tensor"):
        apply_image_operation(torch.zeros(3, 4, 4), "Rotate", 5.0)
    # One grey level as an int, as the policies take it.
    assert np.array_equal(np.asarray(apply_image_operation(image, "Rotate", 30.0, fill=7)),
                          np.asarray(image.rotate(30.0, NEAREST, fillcolor=(7, 7, 7))))  # fmt: skip
