"""``random_erase`` of the static image datasets and ``spikeflow train --random-erase P``
(torchvision's and SpikingJelly's ``train_classify.py --random-erase``): RandomErasing(P)
as the last training step (after ``Normalize`` for the folders), replacing ``"psn"``'s
0.1; the pixels against the steps applied by hand with the same seed; the training
split only; the run's saved config; and the refusals (datasets without images, the
erasing without the augmentation, probabilities outside [0, 1])."""

from __future__ import annotations

import pytest
import tomllib
import torch

from spikeflow.cli import main
from spikeflow.data.datasets import CIFAR10, MNIST, ImageFolder
from spikeflow.data.frame_transforms import RandomCropFrames, RandomHorizontalFlipFrames
from spikeflow.data.image_augment import RandomErasing, TrivialAugmentWide
from spikeflow.data.image_autoaugment import RandAugment
from spikeflow.data.image_transforms import (
    Normalize,
    RandomHorizontalFlip,
    RandomResizedCrop,
    ToTensor,
)
from spikeflow.errors import ConfigurationError
from spikeflow.training.config import TrainConfig
from spikeflow.training.data import build_datasets
from spikeflow.training.train_config import resolve

pytest.importorskip("PIL.Image", reason="Pillow is the extra 'images'")
pytest.importorskip("sklearn.datasets", reason="scikit-learn's real images")

from test_train_auto_augment import write_cifar10_binary, write_folders, write_mnist


def kinds(steps) -> list[type]:
    return [type(s) for s in steps]


# -- the datasets --------------------------------------------------------------------------


def test_cifar_erasing_is_the_last_step_and_replaces_psn_own(tmp_path):
    images = write_cifar10_binary(tmp_path)
    crop_flip = [RandomCropFrames, RandomHorizontalFlipFrames]
    data = CIFAR10(tmp_path, augment=True, random_erase=0.3)
    steps = data.augmentation()
    assert kinds(steps) == [*crop_flip, RandomErasing] and steps[-1].p == 0.3
    assert data.random_erase == 0.3 and "random_erase=0.3)" in repr(data)
    psn = CIFAR10(tmp_path, augment="psn", random_erase=0.5).augmentation()
    assert kinds(psn) == [*crop_flip, TrivialAugmentWide, RandomErasing] and psn[-1].p == 0.5
    with_policy = CIFAR10(tmp_path, augment="psn", auto_augment="ra", random_erase=0.7)
    steps = with_policy.augmentation()
    assert kinds(steps) == [*crop_flip, RandAugment, RandomErasing] and steps[-1].p == 0.7
    off = CIFAR10(tmp_path, augment="psn", random_erase=0).augmentation()
    assert kinds(off) == [*crop_flip, TrivialAugmentWide]  # 0: no erasing, psn's included
    assert CIFAR10(tmp_path, augment="psn").augmentation()[-1].p == 0.1  # None: psn's own
    assert kinds(CIFAR10(tmp_path, augment=True).augmentation()) == crop_flip
    # The pixels: the dataset's sample equals the steps applied by hand, same seeds.
    data = CIFAR10(tmp_path, augment=True, random_erase=0.6)
    reference = [RandomCropFrames(32, padding=4), RandomHorizontalFlipFrames(0.5),
                 RandomErasing(0.6)]  # fmt: skip
    image = torch.from_numpy(images[0]).float() / 255
    erased = 0
    for seed in range(20):
        torch.manual_seed(seed)
        got, label = data[0]
        torch.manual_seed(seed)
        want = image
        for step in reference:
            want = step(want)
        assert torch.equal(got, want) and label == 0
        torch.manual_seed(seed)
        crop_flipped = reference[1](reference[0](image))
        erased += not torch.equal(got, crop_flipped)
    assert 6 <= erased <= 18  # about 0.6 of 20


def test_mnist_erases_its_digits_with_probability_one(tmp_path):
    digits = write_mnist(tmp_path)
    data = MNIST(tmp_path, augment=True, random_erase=1.0)
    assert kinds(data.augmentation()) == [RandomErasing]  # MNIST has no crop or flip
    image = torch.from_numpy(digits[3]).float()[None] / 255
    for seed in range(5):
        torch.manual_seed(seed)
        got, _ = data[3]
        torch.manual_seed(seed)
        assert torch.equal(got, RandomErasing(1.0)(image))
        changed = got != image
        assert changed.any() and (got[changed] == 0).all()  # a box set to 0
    assert MNIST(tmp_path, augment=True).augmentation() == []


def test_image_folder_erases_after_the_normalisation(tmp_path):
    write_folders(tmp_path)
    plain = [RandomResizedCrop, RandomHorizontalFlip, ToTensor, Normalize]
    data = ImageFolder(tmp_path, train=True, augment=True, random_erase=0.25, image_size=32)
    steps = data.pipeline.transforms
    assert kinds(steps) == [*plain, RandomErasing] and steps[-1].p == 0.25
    assert "random_erase=0.25)" in repr(data)
    x, label = data[2]  # class0/{0,2}.png, then class1/{1,3}.png
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and label == 1
    policy = ImageFolder(tmp_path, train=True, augment=True, auto_augment="ra",
                         random_erase=0.4, image_size=32).pipeline.transforms  # fmt: skip
    assert kinds(policy) == [RandomResizedCrop, RandomHorizontalFlip, RandAugment, ToTensor,
                             Normalize, RandomErasing] and policy[-1].p == 0.4  # fmt: skip
    psn = ImageFolder(tmp_path, train=True, augment="psn", random_erase=0, image_size=32)
    assert RandomErasing not in kinds(psn.pipeline.transforms)
    psn = ImageFolder(tmp_path, train=True, augment="psn", image_size=32)
    assert psn.pipeline.transforms[-1].p == 0.1
    standard = ImageFolder(tmp_path, train=True, augment=True, image_size=32)
    assert kinds(standard.pipeline.transforms) == plain
    # The same sample as the plain pipeline's, then the erasing, for the same draws.
    reference = ImageFolder(tmp_path, train=True, augment=True, image_size=32)
    for seed in range(6):
        torch.manual_seed(seed)
        got = data[seed % 4][0]
        torch.manual_seed(seed)
        want = RandomErasing(0.25)(reference[seed % 4][0])
        assert torch.equal(got, want)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"random_erase": 0.2}, r"random_erase=0.2 runs within the training augmentation"),
        ({"augment": True, "random_erase": 1.5}, r"random_erase must be .* in \[0, 1\], got 1.5"),
        ({"augment": True, "random_erase": -0.1}, r"random_erase must be .* got -0.1"),
        ({"augment": True, "random_erase": "0.1"}, r"random_erase must be .* got '0.1'"),
        ({"augment": True, "random_erase": True}, r"random_erase must be .* got True"),
    ],
)
def test_dataset_refusals(tmp_path, kwargs, message):
    write_cifar10_binary(tmp_path / "cifar")
    write_folders(tmp_path / "folders")
    with pytest.raises(ConfigurationError, match="CIFAR10: " + message):
        CIFAR10(tmp_path / "cifar", **kwargs)
    with pytest.raises(ConfigurationError, match="ImageFolder: " + message):
        ImageFolder(tmp_path / "folders", train=True, **kwargs)


def test_zero_needs_no_augmentation(tmp_path):
    write_cifar10_binary(tmp_path)
    data = CIFAR10(tmp_path, random_erase=0.0)  # nothing to erase: no augmentation needed
    assert not data.augment and data.random_erase == 0.0


# -- spikeflow train -----------------------------------------------------------------------


def test_train_builds_the_erasing_into_the_training_split_only(tmp_path):
    write_cifar10_binary(tmp_path)
    config = TrainConfig(dataset="cifar10", data_dir=str(tmp_path), random_erase=0.4)
    train, test, _ = build_datasets(config)
    assert train.random_erase == 0.4 and train.augmentation()[-1].p == 0.4
    assert test.random_erase is None and not test.augment
    write_folders(tmp_path / "folders")
    config = TrainConfig(dataset="imagefolder", data_dir=str(tmp_path / "folders"),
                         random_erase=0.3, dataset_kwargs={"image_size": 32})  # fmt: skip
    train, test, _ = build_datasets(config)
    assert type(train.pipeline.transforms[-1]) is RandomErasing
    assert train.pipeline.transforms[-1].p == 0.3
    assert RandomErasing not in kinds(test.pipeline.transforms)
    config = TrainConfig(dataset="cifar10", data_dir=str(tmp_path), random_erase=0.2,
                         dataset_kwargs={"augment": False})  # fmt: skip
    message = "--random-erase 0.2 with --dataset-kwargs augment=false: the erasing is"
    with pytest.raises(ConfigurationError, match=message):
        build_datasets(config)
    config = TrainConfig(dataset="cifar10", data_dir=str(tmp_path),
                         dataset_kwargs={"random_erase": 0.2})  # fmt: skip
    with pytest.raises(ConfigurationError, match=r"random_erase=\.\.\.: set by --random-erase"):
        build_datasets(config)


@pytest.mark.parametrize(
    ("dataset", "what"),
    [
        ("nmnist", "a neuromorphic dataset: its samples are event-camera frames, not images"),
        ("shd", "an audio dataset: its samples are cochlear spike trains per channel"),
        ("speechcommands", "an audio dataset: speech recordings turned into cochlear events"),
        ("smnist", "a spike-train dataset: MNIST digits read pixel by pixel as spikes"),
        ("stmnist", "a tactile dataset: its samples are touch-sensor events"),
        ("digits", "scikit-learn's 8x8 digits"),
        ("diabetes", "a regression dataset"),
        ("nmnist_detection", "a detection dataset"),
    ],
)
def test_train_refuses_datasets_without_images(dataset, what):
    with pytest.raises(ConfigurationError) as info:
        resolve(TrainConfig(dataset=dataset, random_erase=0.1))
    message = str(info.value)
    assert message.startswith(f"--random-erase 0.1: dataset {dataset!r} is {what}")
    assert "random erasing augments the static image datasets (cifar10, cifar100" in message


def test_train_option_is_checked_and_saved(tmp_path, capsys):
    for bad in (1.5, -0.5, float("nan"), True, "0.1"):
        with pytest.raises(ConfigurationError, match="random_erase"):
            TrainConfig(random_erase=bad).validate()
    with pytest.raises(ConfigurationError, match=r"random_erase is a probability: .* got 2"):
        TrainConfig(random_erase=2).validate()
    TrainConfig(random_erase=0).validate()
    with pytest.raises(SystemExit):
        main(["train", "--random-erase", "often"])
    assert "invalid float value: 'often'" in capsys.readouterr().err
    write_cifar10_binary(tmp_path / "data", per_batch=4)
    out = tmp_path / "run"
    code = main(["train", "--dataset", "cifar10", "--data-dir", str(tmp_path / "data"),
                 "--random-erase", "0.5", "--model", "plif_cifar10", "--model-kwargs",
                 "channels=4", "-T", "1", "--epochs", "1", "--batch-size", "10",
                 "--output-dir", str(out), "--no-progress", "--plots", "off"])  # fmt: skip
    assert code == 0
    saved = tomllib.loads((out / "config.toml").read_text())
    assert saved["random_erase"] == 0.5
    # What the run computes: a resume may not change it.
    capsys.readouterr()
    assert main(["train", "--resume", str(out / "last.pt"), "--random-erase", "0.2"]) == 2
    assert "--resume continues the checkpoint's run, which fixed ['random_erase']" in (
        capsys.readouterr().err
    )
