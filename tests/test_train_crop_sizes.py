"""``spikeflow train --train-crop-size``, ``--val-resize-size``, ``--val-crop-size`` and
``--interpolation`` (the reference recipe's options): the ImageNet / ImageFolder
pipelines they build, their pixels against torchvision's transforms written out with
Pillow (and against torchvision itself where it is installed), the model's input size,
and the refusals (datasets without a resized crop, options given twice, a resize
smaller than its crop, unknown values)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spikeflow.cli import main
from spikeflow.data.datasets import ImageFolder
from spikeflow.data.image_autoaugment import RandAugment
from spikeflow.data.image_transforms import (
    CenterCrop,
    RandomResizedCrop,
    Resize,
    imagenet_eval_transform,
    imagenet_train_transform,
)
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.training.config import TrainConfig
from spikeflow.training.data import build_datasets
from spikeflow.training.train_config import resolve

Image = pytest.importorskip("PIL.Image", reason="Pillow is the extra 'images'")
datasets = pytest.importorskip("sklearn.datasets", reason="scikit-learn's real photos")

RESAMPLE = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}


def photo() -> Image.Image:
    """A real photo, 427 x 640 (height x width): scikit-learn's china.jpg."""
    return Image.fromarray(datasets.load_sample_image("china.jpg"))


def torchvision_eval(image: Image.Image, resize: int, crop: int, mode: str) -> np.ndarray:
    """torchvision's ``Resize(resize)`` then ``CenterCrop(crop)`` of a PIL image, as its
    functional code does them: the shorter side to ``resize``, the longer
    ``int(resize · long / short)``, Pillow's ``resize``; the crop at
    ``round((H - crop) / 2)``."""
    width, height = image.size
    if height <= width:
        size = (int(resize * width / height), resize)
    else:
        size = (resize, int(resize * height / width))
    resized = image.resize(size, RESAMPLE[mode])
    top = round((size[1] - crop) / 2.0)
    left = round((size[0] - crop) / 2.0)
    return np.asarray(resized.crop((left, top, left + crop, top + crop)))


def write_folders(root, count: int = 4) -> None:
    """``root/{train,val}/<class>/<k>.png``: crops of the real photo, two classes."""
    image = photo()
    for split in ("train", "val"):
        for k in range(count):
            folder = root / split / f"class{k % 2}"
            folder.mkdir(parents=True, exist_ok=True)
            image.crop((30 * k, 20 * k, 30 * k + 160, 20 * k + 120)).save(folder / f"{k}.png")


@pytest.mark.parametrize("mode", ["bilinear", "bicubic", "nearest"])
def test_eval_pixels_are_torchvisions(mode):
    image = photo()
    pipeline = imagenet_eval_transform(224, 232, None, None, interpolation=mode)
    got = pipeline(image)
    want = torchvision_eval(image, 232, 224, mode)
    assert got.shape == (3, 224, 224)
    assert torch.equal(got, torch.from_numpy(want.copy()).permute(2, 0, 1).float() / 255)
    resize = pipeline.transforms[0]
    assert type(resize) is Resize and resize.interpolation == mode and resize.size == 232


@pytest.mark.parametrize("mode", ["bilinear", "bicubic", "nearest"])
def test_train_crop_pixels_are_torchvisions(mode):
    # The window comes from the transform's own draw (its get_params); the pixels are
    # torchvision's resized_crop of that window: Pillow's crop then resize.
    image = photo()
    pipeline = imagenet_train_transform(176, None, None, generator=5, interpolation=mode)
    crop = pipeline.transforms[0]
    assert type(crop) is RandomResizedCrop and crop.interpolation == mode
    twin = RandomResizedCrop(176, interpolation=mode, generator=5)
    for _ in range(3):
        top, left, h, w = twin.get_params(427, 640)
        want = image.crop((left, top, left + w, top + h)).resize((176, 176), RESAMPLE[mode])
        assert np.array_equal(np.asarray(crop(image)), np.asarray(want))


def test_against_torchvision_itself():
    tv = pytest.importorskip("torchvision.transforms", reason="torchvision is not a dependency")
    image = photo()
    for mode, tv_mode in (("bicubic", tv.InterpolationMode.BICUBIC),
                          ("nearest", tv.InterpolationMode.NEAREST)):  # fmt: skip
        ours = imagenet_eval_transform(224, 232, None, None, interpolation=mode)(image)
        theirs = tv.Compose([tv.Resize(232, interpolation=tv_mode), tv.CenterCrop(224),
                             tv.PILToTensor()])(image)  # fmt: skip
        assert torch.equal(ours, theirs.float() / 255)


def test_build_datasets_sets_each_split(tmp_path):
    write_folders(tmp_path)
    config = TrainConfig(dataset="imagefolder", data_dir=str(tmp_path), train_crop_size=40,
                         val_resize_size=60, val_crop_size=56, interpolation="bicubic")  # fmt: skip
    train, test, info = build_datasets(resolve_data(config))
    crop = train.pipeline.transforms[0]
    assert type(crop) is RandomResizedCrop and crop.size == (40, 40)
    assert crop.interpolation == "bicubic" and train.interpolation == "bicubic"
    resize, center = test.pipeline.transforms[:2]
    assert type(resize) is Resize and resize.size == 60 and resize.interpolation == "bicubic"
    assert type(center) is CenterCrop and center.size == (56, 56)
    assert train[0][0].shape == (3, 40, 40) and test[0][0].shape == (3, 56, 56)
    assert info.input_size == (40, 40)
    # The evaluation's pixels: torchvision's Resize + CenterCrop of the PNG, normalised.
    image = Image.open(test.path(0)).convert("RGB")
    want = torch.from_numpy(torchvision_eval(image, 60, 56, "bicubic").copy())
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    assert torch.allclose(test[0][0], (want.permute(2, 0, 1).float() / 255 - mean) / std)
    # An evaluation alone (no training split) builds the model for the training crop.
    _, _, alone = build_datasets(resolve_data(config), with_train=False)
    assert alone.input_size == (40, 40)
    # With --auto-augment the policy's geometric operations resample the same way (the
    # recipe passes its --interpolation to the policy).
    config.auto_augment = "ra"
    policy = build_datasets(resolve_data(config))[0].pipeline.transforms[2]
    assert type(policy) is RandAugment and policy.interpolation == "bicubic"
    assert "interpolation='bicubic'" in repr(test) and "interpolation" not in repr(
        ImageFolder(tmp_path, train=False)
    )


def test_options_left_out_keep_the_datasets_pipelines(tmp_path):
    write_folders(tmp_path)
    base = TrainConfig(dataset="imagefolder", data_dir=str(tmp_path),
                       dataset_kwargs={"image_size": 48})  # fmt: skip
    train, test, info = build_datasets(resolve_data(base))
    assert train.pipeline.transforms[0].size == (48, 48) and info.input_size == (48, 48)
    assert train.pipeline.transforms[0].interpolation == "bilinear"
    assert test.pipeline.transforms[0].size == 48 * 8 // 7 and test.image_size == (48, 48)
    # One crop size given: the other split keeps --dataset-kwargs image_size.
    only = TrainConfig(dataset="imagefolder", data_dir=str(tmp_path), train_crop_size=32,
                       dataset_kwargs={"image_size": 48})  # fmt: skip
    train, test, info = build_datasets(resolve_data(only))
    assert train.image_size == (32, 32) and test.image_size == (48, 48)
    assert info.input_size == (32, 32)


def resolve_data(config: TrainConfig) -> TrainConfig:
    """``config`` after resolve()'s dataset checks (imagefolder has no default model)."""
    config.model = "sew_resnet18"
    return resolve(config)


@pytest.mark.parametrize(
    ("dataset", "what"),
    [
        ("cifar10", "static 32x32 images used at their own size"),
        ("mnist", "static 28x28 images used at their own size"),
        ("nmnist", "a neuromorphic dataset: its samples are event-camera frames"),
        ("shd", "an audio dataset"),
        ("digits", "scikit-learn's 8x8 digits"),
        ("diabetes", "a regression dataset"),
        ("nmnist_detection", "a detection dataset"),
    ],
)
def test_refused_where_there_is_no_resized_crop(dataset, what):
    config = TrainConfig(dataset=dataset, train_crop_size=176, interpolation="bicubic")
    with pytest.raises(ConfigurationError) as info:
        resolve(config)
    message = str(info.value)
    assert message.startswith(f"--train-crop-size 176, --interpolation bicubic: dataset "
                              f"{dataset!r} is {what}")  # fmt: skip
    assert "(imagefolder, imagenet); leave them out" in message


def test_conflicts_and_bad_values(tmp_path):
    write_folders(tmp_path)
    folder = {"dataset": "imagefolder", "data_dir": str(tmp_path)}
    cases = [
        (dict(train_crop_size=32, val_crop_size=40, dataset_kwargs={"image_size": 48}),
         "image_size=... with --train-crop-size and --val-crop-size"),
        (dict(val_resize_size=60, dataset_kwargs={"resize_size": 64}),
         "resize_size=... with --val-resize-size"),
        (dict(val_resize_size=50, val_crop_size=56),
         "--val-resize-size 50: ImageFolder's evaluation resizes .* must be >= 56"),
        (dict(dataset_kwargs={"interpolation": "nearest"}),
         r"interpolation=\.\.\.: set by --interpolation"),
    ]  # fmt: skip
    for fields, message in cases:
        with pytest.raises(ConfigurationError, match=message):
            build_datasets(resolve_data(TrainConfig(**folder, **fields)))
    with pytest.raises(ConfigurationError, match="interpolation must be one of bilinear"):
        TrainConfig(interpolation="lanczos").validate()
    with pytest.raises(ConfigurationError, match="val_crop_size must be a positive integer"):
        TrainConfig(val_crop_size=0).validate()
    with pytest.raises(ConfigurationError, match="ImageFolder: interpolation must be one of"):
        ImageFolder(tmp_path, train=True, interpolation="area")


def test_shape_checks_read_the_training_crop(tmp_path):
    # What reads the step shape from the class (no file opened) sees the training crop,
    # which the model is built for: the error of a run without --model, stcl's check.
    from spikeflow.training.data import DataInfo
    from spikeflow.training.run_checks import check_two_view_data

    with pytest.raises(ConfigurationError, match="its frames are 3x176x176 per step"):
        resolve(TrainConfig(dataset="imagefolder", data_dir=str(tmp_path), train_crop_size=176))
    config = TrainConfig(dataset="imagefolder", data_dir=str(tmp_path), train_crop_size=6,
                         dataset_kwargs={"image_size": 48})  # fmt: skip
    with pytest.raises(ShapeError, match="H x W = 6 x 6"):
        check_two_view_data(config, DataInfo(2, 3, (6, 6), static=True), 4)
    config.train_crop_size = None
    check_two_view_data(config, DataInfo(2, 3, (48, 48), static=True), 4)


def test_command_line(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--interpolation", "area"])
    assert "invalid choice: 'area'" in capsys.readouterr().err
    code = main(["train", "--dataset", "cifar10", "--data-dir", "x", "--val-crop-size", "28"])
    assert code == 2
    assert "--val-crop-size 28: dataset 'cifar10' is static 32x32" in capsys.readouterr().err


def test_a_run_saves_the_options_evaluates_and_keeps_them_on_resume(tmp_path, capsys):
    # Trained on 32 x 32 crops, evaluated on 40 x 40 centre crops of a 48 resize (a
    # ResNet pools globally, so both sizes run); the options are the run's, saved.
    tomllib = pytest.importorskip("tomllib")
    write_folders(tmp_path / "data")
    out = tmp_path / "run"
    code = main(["train", "--dataset", "imagefolder", "--data-dir", str(tmp_path / "data"),
                 "--model", "sew_resnet18", "--model-kwargs", "num_classes=2", "base_width=8",
                 "-T", "1",
                 "--epochs", "1", "--batch-size", "4", "--train-crop-size", "32",
                 "--val-crop-size", "40", "--val-resize-size", "48", "--interpolation",
                 "bicubic", "--output-dir", str(out), "--no-progress",
                 "--plots", "off"])  # fmt: skip
    assert code == 0
    saved = tomllib.loads((out / "config.toml").read_text())
    assert (saved["train_crop_size"], saved["val_resize_size"], saved["val_crop_size"],
            saved["interpolation"]) == (32, 48, 40, "bicubic")  # fmt: skip
    capsys.readouterr()
    assert main(["eval", str(out), "--data-dir", str(tmp_path / "data"), "--no-progress"]) == 0
    assert main(["train", "--resume", str(out / "last.pt"), "--val-crop-size", "36"]) == 2
    assert "which fixed ['val_crop_size']" in capsys.readouterr().err
