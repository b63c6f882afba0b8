"""``spikeflow train --train-crop-size``, ``--val-resize-size``, ``--val-crop-size`` and
``--interpolation`` (the reference classification recipe's options): the arguments they
give ImageNet / ImageFolder for each split, and their refusal for the datasets that have
no resized crop or resize."""

from __future__ import annotations

from typing import Any

from spikeflow.errors import ConfigurationError
from spikeflow.training.config import TrainConfig
from spikeflow.training.data import _folder_classes, _image_classes, _without_images

__all__ = ["check_image_size_options", "crop_and_resize", "training_dataset_kwargs"]


def _image_size_options(config: TrainConfig) -> list[str]:
    """``--train-crop-size``, ``--val-resize-size``, ``--val-crop-size`` and
    ``--interpolation`` as given (e.g. ``--train-crop-size 176``), those set."""
    return [
        f"--{name.replace('_', '-')} {getattr(config, name)}"
        for name in ("train_crop_size", "val_resize_size", "val_crop_size", "interpolation")
        if getattr(config, name) is not None
    ]


def check_image_size_options(config: TrainConfig) -> None:
    """``--train-crop-size``, ``--val-resize-size``, ``--val-crop-size`` and
    ``--interpolation`` set the random resized crop and the evaluation's resize and
    centre crop of the datasets read from class folders (ImageNet, ImageFolder); every
    other known dataset refuses them: it has no such transform.

    Raises:
        ConfigurationError: one of them set for another dataset (the message names the
            options, what the dataset is and the datasets that take them).
    """
    given = _image_size_options(config)
    if not given or not isinstance(config.dataset, str):
        return
    key = config.dataset.lower()
    if key in _folder_classes():
        return
    if key in _image_classes():
        cls = _image_classes()[key]
        height, width = cls.image_size
        what = (
            f"static {height}x{width} images used at their own size (their augmentation "
            "crops without resizing)"
        )
    else:
        found = _without_images(config.dataset)
        if found is None:
            return  # an unknown name: resolve() says so, listing the datasets
        what = found
    folders = ", ".join(sorted(_folder_classes()))
    raise ConfigurationError(
        f"{', '.join(given)}: dataset {config.dataset!r} is {what}; a resized crop and "
        f"resize are the image-file datasets' ({folders}); leave "
        f"{'it' if len(given) == 1 else 'them'} out"
    )


def crop_and_resize(
    config: TrainConfig, cls: type, kwargs: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The arguments of ImageNet / ImageFolder that ``--train-crop-size``,
    ``--val-resize-size``, ``--val-crop-size`` and ``--interpolation`` set, for the
    training and the test split (``image_size``, ``resize_size``, ``interpolation``);
    each crop size replaces ``--dataset-kwargs image_size`` for its split.

    Raises:
        ConfigurationError: ``--dataset-kwargs`` gives ``image_size`` with both crop
            sizes or ``resize_size`` with ``--val-resize-size``; the evaluation's resize
            is smaller than its crop.
    """
    name = cls.__name__
    both = config.train_crop_size is not None and config.val_crop_size is not None
    if "image_size" in kwargs and both:
        raise ConfigurationError(
            f"--dataset-kwargs image_size=... with --train-crop-size and --val-crop-size: {name}'s "
            "crop sizes are given twice; leave image_size out"
        )
    if "resize_size" in kwargs and config.val_resize_size is not None:
        raise ConfigurationError(
            f"--dataset-kwargs resize_size=... with --val-resize-size: {name}'s evaluation "
            "resize is given twice; leave one of them out"
        )
    interpolation = {} if config.interpolation is None else {"interpolation": config.interpolation}
    base = kwargs.pop("image_size", None)  # both splits', where an option does not set it
    train: dict[str, Any] = dict(interpolation)
    test: dict[str, Any] = dict(interpolation)
    for sizes, option in ((train, config.train_crop_size), (test, config.val_crop_size)):
        if option is not None or base is not None:
            sizes["image_size"] = option if option is not None else base
    if config.val_resize_size is not None:
        from spikeflow.data.frame_transforms import int_pair

        crop = test.get("image_size", cls.default_image_size)
        shorter = min(int_pair(crop, f"{name}: image_size", "(h, w)"))
        if config.val_resize_size < shorter:
            raise ConfigurationError(
                f"--val-resize-size {config.val_resize_size}: {name}'s evaluation resizes the "
                f"shorter side before its centre crop of {shorter}; it must be >= {shorter}"
            )
        test["resize_size"] = config.val_resize_size
    return train, test


def training_dataset_kwargs(config: TrainConfig) -> dict[str, Any]:
    """``config.dataset_kwargs`` with ``image_size`` set to ``--train-crop-size`` where
    that is given: the training split's crop, which the model is built for, for what
    reads the dataset's step shape from its class (``dataset_shape``) without opening it."""
    folders = isinstance(config.dataset, str) and config.dataset.lower() in _folder_classes()
    if config.train_crop_size is None or not folders:
        return config.dataset_kwargs
    return {**config.dataset_kwargs, "image_size": config.train_crop_size}
