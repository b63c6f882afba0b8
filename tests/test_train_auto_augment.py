"""``auto_augment`` of the static image datasets and ``spikeflow train --auto-augment``:
the order of the steps (crop and flip, the policy, to-tensor and normalise, random
erasing), the pixels against the steps applied by hand with the same seed, the training
split only, the run's saved config, and the refusals (event, digits, regression and
detection datasets; the policy without the augmentation; unknown names)."""

from __future__ import annotations

import numpy as np
import pytest
import tomllib
import torch

from spikeflow.cli import main
from spikeflow.data.datasets import CIFAR10, MNIST, ImageFolder
from spikeflow.data.frame_transforms import RandomCropFrames, RandomHorizontalFlipFrames
from spikeflow.data.image_augment import RandomErasing, TrivialAugmentWide
from spikeflow.data.image_autoaugment import AutoAugment, RandAugment
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

Image = pytest.importorskip("PIL.Image", reason="Pillow is the extra 'images'")
datasets = pytest.importorskip("sklearn.datasets", reason="scikit-learn's real images")


def real_photos(count: int, size: int) -> np.ndarray:
    """uint8 [count, size, size, 3]: crops of scikit-learn's two sample photos."""
    out = []
    for k in range(count):
        photo = Image.fromarray(datasets.load_sample_image(("china.jpg", "flower.jpg")[k % 2]))
        left, top = 40 * k, 30 * k
        out.append(np.asarray(photo.crop((left, top, left + 200, top + 200)).resize((size, size))))
    return np.stack(out)


def write_cifar10_binary(root, per_batch: int = 2) -> np.ndarray:
    """CIFAR-10's binary version holding real photos, labels 0, 1, ...: [N, 3, 32, 32]."""
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    images = real_photos(per_batch, 32).transpose(0, 3, 1, 2).reshape(per_batch, -1)
    labels = np.arange(per_batch, dtype=np.uint8)[:, None] % 10
    for name in [*(f"data_batch_{k}.bin" for k in range(1, 6)), "test_batch.bin"]:
        (folder / name).write_bytes(np.hstack([labels, images]).tobytes())
    return images.reshape(per_batch, 3, 32, 32)


def write_mnist(root) -> np.ndarray:
    """MNIST's IDX files holding scikit-learn's real digits upscaled to 28x28."""
    digits = datasets.load_digits()
    levels = [(d * 255 / 16).astype(np.uint8) for d in digits.images[:6]]
    images = np.stack([np.asarray(Image.fromarray(d).resize((28, 28), Image.NEAREST))
                       for d in levels])  # fmt: skip
    labels = digits.target[:6].astype(np.uint8)
    for prefix in ("train", "t10k"):
        header = np.array([0x803, 6, 28, 28], dtype=">u4").tobytes()
        (root / f"{prefix}-images-idx3-ubyte").write_bytes(header + images.tobytes())
        header = np.array([0x801, 6], dtype=">u4").tobytes()
        (root / f"{prefix}-labels-idx1-ubyte").write_bytes(header + labels.tobytes())
    return images


def write_folders(root) -> None:
    """``root/{train,val}/<class>/<image>.png``: real photo crops, two classes."""
    photos = real_photos(4, 48)
    for split in ("train", "val"):
        for k, image in enumerate(photos):
            folder = root / split / f"class{k % 2}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"{k}.png")


# -- the datasets --------------------------------------------------------------------------


def test_cifar_policy_after_crop_and_flip_then_erasing(tmp_path):
    images = write_cifar10_binary(tmp_path)
    data = CIFAR10(tmp_path, augment=True, auto_augment="ra")
    steps = data.augmentation()
    assert [type(s) for s in steps] == [RandomCropFrames, RandomHorizontalFlipFrames,
                                        RandAugment]  # fmt: skip
    psn = CIFAR10(tmp_path, augment="psn", auto_augment="cifar10")
    steps = psn.augmentation()  # the policy in place of psn's TrivialAugment-wide
    assert [type(s) for s in steps] == [RandomCropFrames, RandomHorizontalFlipFrames,
                                        AutoAugment, RandomErasing]  # fmt: skip
    assert steps[2].policy == "cifar10" and steps[2].interpolation == "nearest"
    assert steps[3].p == 0.1
    plain_psn = [type(s) for s in CIFAR10(tmp_path, augment="psn").augmentation()]
    assert plain_psn == [RandomCropFrames, RandomHorizontalFlipFrames, TrivialAugmentWide,
                         RandomErasing]  # fmt: skip
    assert "auto_augment='cifar10'" in repr(psn) and "auto_augment" not in repr(CIFAR10(tmp_path))
    # The pixels: the dataset's sample equals the steps applied by hand, same seeds.
    reference = [RandomCropFrames(32, padding=4), RandomHorizontalFlipFrames(0.5),
                 AutoAugment("cifar10"), RandomErasing(0.1)]  # fmt: skip
    image = torch.from_numpy(images[1]).float() / 255
    changed = 0
    for seed in range(10):
        torch.manual_seed(seed)
        got, label = psn[1]
        torch.manual_seed(seed)
        want = image
        for step in reference:
            want = step(want)
        assert torch.equal(got, want) and label == 1 and got.dtype == torch.float32
        changed += not torch.equal(got, image)
    assert changed >= 8


def test_mnist_takes_a_policy_on_its_grey_digits(tmp_path):
    digits = write_mnist(tmp_path)
    data = MNIST(tmp_path, augment=True, auto_augment="svhn")
    assert [type(s) for s in data.augmentation()] == [AutoAugment]  # no crop or flip
    torch.manual_seed(0)
    got, _ = data[2]
    torch.manual_seed(0)
    want = AutoAugment("svhn")(Image.fromarray(digits[2]))
    assert torch.equal(got, torch.from_numpy(np.asarray(want).copy())[None].float() / 255)
    assert MNIST(tmp_path, augment=True).augmentation() == []


def test_image_folder_pipeline_order(tmp_path):
    write_folders(tmp_path)
    data = ImageFolder(tmp_path, train=True, augment=True, auto_augment="imagenet",
                       image_size=32)  # fmt: skip
    steps = data.pipeline.transforms
    assert [type(s) for s in steps] == [RandomResizedCrop, RandomHorizontalFlip, AutoAugment,
                                        ToTensor, Normalize]  # fmt: skip
    assert steps[2].interpolation == "bilinear"  # the reference recipe's
    psn = ImageFolder(tmp_path, train=True, augment="psn", auto_augment="ra", image_size=32)
    assert [type(s) for s in psn.pipeline.transforms] == [
        RandomResizedCrop,
        RandomHorizontalFlip,
        RandAugment,
        ToTensor,
        Normalize,
        RandomErasing,
    ]
    x, label = psn[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and label == 0
    assert "auto_augment='ra'" in repr(psn)
    # Without a policy, psn's pipeline is unchanged: TrivialAugment-wide (bilinear).
    plain = ImageFolder(tmp_path, train=True, augment="psn", image_size=32).pipeline.transforms
    assert type(plain[2]) is TrivialAugmentWide and plain[2].interpolation == "bilinear"


def test_ta_wide_is_psn_own_policy(tmp_path):
    # auto_augment="ta_wide" with psn is psn itself (TrivialAugment-wide in the same place,
    # nearest for CIFAR, bilinear for the folders): the same samples for the same seed.
    write_cifar10_binary(tmp_path / "cifar")
    write_folders(tmp_path / "folders")
    pairs = [
        (CIFAR10(tmp_path / "cifar", augment="psn", auto_augment="ta_wide"),
         CIFAR10(tmp_path / "cifar", augment="psn")),
        (ImageFolder(tmp_path / "folders", train=True, augment="psn", auto_augment="ta_wide",
                     image_size=24),
         ImageFolder(tmp_path / "folders", train=True, augment="psn", image_size=24)),
    ]  # fmt: skip
    for policy, psn in pairs:
        for seed in range(40):  # erasing (p = 0.1) happens in some
            torch.manual_seed(seed)
            got = policy[seed % 2][0]
            torch.manual_seed(seed)
            assert torch.equal(got, psn[seed % 2][0]), (type(psn).__name__, seed)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"auto_augment": "ra"}, r"auto_augment='ra' runs within the training augmentation"),
        ({"augment": True, "auto_augment": "RA"}, r"auto_augment must be None or one of 'ra'"),
        ({"augment": True, "auto_augment": 1}, "auto_augment must be None or one of"),
    ],
)
def test_dataset_refusals(tmp_path, kwargs, message):
    write_cifar10_binary(tmp_path / "cifar")
    write_folders(tmp_path / "folders")
    with pytest.raises(ConfigurationError, match="CIFAR10: " + message):
        CIFAR10(tmp_path / "cifar", **kwargs)
    with pytest.raises(ConfigurationError, match="ImageFolder: " + message):
        ImageFolder(tmp_path / "folders", train=True, **kwargs)


def test_policy_draws_repeat_with_the_seed_in_dataloader_workers(tmp_path):
    # The policies draw from torch's global generator, which each DataLoader worker
    # seeds from the loader's seed: the same seed repeats the batches with 2 workers,
    # the workers' draws differ, and another seed gives others.
    write_mnist(tmp_path)
    data = MNIST(tmp_path, augment=True, auto_augment="ra")  # the policy is the only step

    def epoch(seed: int, workers: int) -> torch.Tensor:
        loader = torch.utils.data.DataLoader(
            torch.utils.data.ConcatDataset([data] * 4), batch_size=6, num_workers=workers,
            generator=torch.Generator().manual_seed(seed),
        )  # fmt: skip
        return torch.stack([x for x, _ in loader])

    first = epoch(0, 2)
    assert torch.equal(first, epoch(0, 2))
    assert not torch.equal(first[0], first[1])  # the two workers' first batches: same images
    assert not torch.equal(first, epoch(1, 2))


# -- spikeflow train -----------------------------------------------------------------------


def test_train_builds_the_policy_into_the_training_split_only(tmp_path):
    write_cifar10_binary(tmp_path)
    config = TrainConfig(dataset="cifar10", data_dir=str(tmp_path), auto_augment="svhn")
    train, test, _ = build_datasets(config)
    assert train.auto_augment == "svhn" and train.augment_policy == "standard"
    assert test.auto_augment is None and not test.augment
    write_folders(tmp_path / "folders")
    config = TrainConfig(dataset="imagefolder", data_dir=str(tmp_path / "folders"),
                         auto_augment="imagenet", dataset_kwargs={"image_size": 32})  # fmt: skip
    train, test, _ = build_datasets(config)
    assert train.auto_augment == "imagenet" and type(train.pipeline.transforms[2]) is AutoAugment
    assert test.auto_augment is None and not test.augment
    config = TrainConfig(dataset="cifar10", data_dir=str(tmp_path), auto_augment="ra",
                         dataset_kwargs={"augment": False})  # fmt: skip
    message = "--auto-augment ra with --dataset-kwargs augment=false: the policy runs within"
    with pytest.raises(ConfigurationError, match=message):
        build_datasets(config)
    config = TrainConfig(dataset="cifar10", data_dir=str(tmp_path),
                         dataset_kwargs={"auto_augment": "ra"})  # fmt: skip
    with pytest.raises(ConfigurationError, match=r"auto_augment=\.\.\.: set by --auto-augment"):
        build_datasets(config)


@pytest.mark.parametrize(
    ("dataset", "what"),
    [
        ("nmnist", "a neuromorphic dataset: its samples are event-camera frames, not images"),
        ("cifar10dvs", "a neuromorphic dataset: its samples are event-camera frames"),
        ("shd", "an audio dataset: its samples are cochlear spike trains per channel"),
        ("ssc", "an audio dataset: its samples are cochlear spike trains per channel"),
        ("ntidigits18", "an audio dataset: its samples are cochlear spike trains"),
        ("fsdd", "an audio dataset: speech recordings turned into cochlear events"),
        ("speechcommands", "an audio dataset: speech recordings turned into cochlear events"),
        ("smnist", "a spike-train dataset: MNIST digits read pixel by pixel as spikes"),
        ("stmnist", "a tactile dataset: its samples are touch-sensor events"),
        ("digits", "scikit-learn's 8x8 digits"),
        ("diabetes", "a regression dataset"),
        ("nmnist_detection", "a detection dataset"),
    ],
)
def test_train_refuses_datasets_without_images(dataset, what):
    config = TrainConfig(dataset=dataset, auto_augment="imagenet")
    with pytest.raises(ConfigurationError) as info:
        resolve(config)
    message = str(info.value)
    assert message.startswith(f"--auto-augment imagenet: dataset {dataset!r} is {what}")
    assert "cifar10, cifar100" in message and "imagenet" in message


def test_train_option_is_checked_and_saved(tmp_path, capsys):
    with pytest.raises(ConfigurationError, match="auto_augment must be one of ra, ta_wide"):
        TrainConfig(auto_augment="autoaugment").validate()
    with pytest.raises(SystemExit):
        main(["train", "--auto-augment", "cifar"])
    assert "invalid choice: 'cifar'" in capsys.readouterr().err
    write_cifar10_binary(tmp_path / "data", per_batch=4)
    out = tmp_path / "run"
    code = main(["train", "--dataset", "cifar10", "--data-dir", str(tmp_path / "data"),
                 "--auto-augment", "ra", "--model", "plif_cifar10", "--model-kwargs",
                 "channels=4", "-T", "1", "--epochs", "1", "--batch-size", "10",
                 "--output-dir", str(out), "--no-progress", "--plots", "off"])  # fmt: skip
    assert code == 0
    saved = tomllib.loads((out / "config.toml").read_text())
    assert saved["auto_augment"] == "ra"
    # What the run computes: a resume may not change it (nor drop it for another value).
    capsys.readouterr()
    assert main(["train", "--resume", str(out / "last.pt"), "--auto-augment", "svhn"]) == 2
    assert "--resume continues the checkpoint's run, which fixed ['auto_augment']" in (
        capsys.readouterr().err
    )
