"""The datasets ``spikeflow train`` knows: scikit-learn's digits, spikeflow's static
image datasets (MNIST, Fashion-MNIST, KMNIST, CIFAR-10/100; ImageNet and class-folder
images, read file by file) and its neuromorphic datasets, with what a model needs to
know about them.

Static images (the digits, the image datasets) yield ``[C, H, W]`` and are repeated over T by
:func:`to_time_major`; neuromorphic datasets yield frames ``[T, C, H, W]`` that a
DataLoader batches to ``[B, T, C, H, W]`` and :func:`to_time_major` makes
``[T, B, C, H, W]``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset, Subset, TensorDataset

from spikeflow.errors import ConfigurationError, MissingExtraError, ShapeError
from spikeflow.training.config import TrainConfig
from spikeflow.training.defaults import default_split_by

__all__ = [
    "DataInfo",
    "build_datasets",
    "check_auto_augment",
    "dataset_num_classes",
    "dataset_shape",
    "even_subset",
    "file_dataset_options",
    "list_datasets",
    "static_layout",
    "to_time_major",
]


@dataclass(frozen=True)
class DataInfo:
    """What the model builder and the training loop need to know about a dataset."""

    num_classes: int
    in_channels: int
    input_size: tuple[int, int]
    #: True: samples are static ``[C, H, W]`` images to repeat over T.
    static: bool


def list_datasets() -> list[str]:
    """The ``--dataset`` names: ``digits`` and every spikeflow.data dataset class."""
    return sorted(["digits", *_image_classes(), *_folder_classes(), *_neuromorphic_classes()])


def _dataset_classes(base_name: str, with_base: bool = False) -> dict[str, type]:
    """The classes of ``spikeflow.data.datasets`` derived from its class ``base_name``,
    by lower-case class name (an alias such as SpikingSpeechCommands = SSC is not a
    second one); the base itself only ``with_base``."""
    from spikeflow.data import datasets

    base = getattr(datasets, base_name)
    return {
        obj.__name__.lower(): obj
        for obj in vars(datasets).values()
        if isinstance(obj, type) and issubclass(obj, base) and (with_base or obj is not base)
    }


def _image_classes() -> dict[str, type]:
    return _dataset_classes("ImageDataset")


def _folder_classes() -> dict[str, type]:
    """The datasets read file by file from class folders (ImageFolder, ImageNet)."""
    return _dataset_classes("ImageFolder", with_base=True)


def _neuromorphic_classes() -> dict[str, type]:
    return _dataset_classes("NeuromorphicDataset")


def _not_found(
    exc: Exception, config: TrainConfig, with_train: bool, can_download: bool
) -> Exception:
    """``exc`` (a dataset not found) naming ``--data-dir``, with the command line's way to
    download where the dataset can be downloaded (``spikeflow eval`` cannot): in place
    of the dataset's own advice to pass ``download=True``, else before its message."""
    from spikeflow.data.datasets import DatasetNotFoundError
    from spikeflow.data.datasets._common import DOWNLOAD_ADVICE

    message, prefix = str(exc), f"--data-dir {config.data_dir}"
    if can_download and with_train and not config.download:
        advice, hint = "Pass --download", "from the command line: pass --download to fetch it"
    elif can_download and not with_train:  # spikeflow eval, which has no --download
        advice = "spikeflow eval does not download; run spikeflow train --download"
        hint = "spikeflow eval does not download; spikeflow train --download does"
    else:
        return DatasetNotFoundError(f"{prefix}: {message}")
    if DOWNLOAD_ADVICE in message:
        return DatasetNotFoundError(f"{prefix}: {message.replace(DOWNLOAD_ADVICE, advice)}")
    return DatasetNotFoundError(f"{prefix} ({hint}): {message}")


def check_auto_augment(config: TrainConfig) -> None:
    """``--auto-augment`` and ``--random-erase`` are for the static image datasets (those
    of :class:`~spikeflow.data.datasets.ImageDataset` and
    :class:`~spikeflow.data.datasets.ImageFolder`); any other known dataset refuses them.

    Raises:
        ConfigurationError: ``config.auto_augment`` or ``config.random_erase`` set for a
            dataset of events, audio, spikes, touch, features, detection or regression
            (the message names the option, which dataset it is and the image datasets).
    """
    if config.auto_augment is not None:
        option = f"--auto-augment {config.auto_augment}"
        augments = "the policies augment"
    elif config.random_erase is not None:
        option, augments = f"--random-erase {config.random_erase:g}", "random erasing augments"
    else:
        return
    what = _without_images(config.dataset)
    if what is None:
        return
    images = ", ".join(sorted([*_image_classes(), *_folder_classes()]))
    raise ConfigurationError(
        f"{option}: dataset {config.dataset!r} is {what}; {augments} the static image "
        f"datasets ({images})"
    )


def _without_images(dataset: Any) -> str | None:
    """What the known ``--dataset`` ``dataset`` is when its samples are not static
    images (a phrase such as ``"a detection dataset (...)"``); None for an image dataset
    or a name that is not known (resolve() names those)."""
    from spikeflow.training.detection_task import detection_task
    from spikeflow.training.regression_task import regression_task

    if not isinstance(dataset, str):
        return None
    key = dataset.lower()
    if key in _image_classes() or key in _folder_classes():
        return None
    if detection_task(key) is not None:
        return "a detection dataset (event frames and boxes)"
    if regression_task(key) is not None:
        return "a regression dataset, whose samples are not augmented"
    if key == "digits":
        return "scikit-learn's 8x8 digits, held as a tensor and not augmented"
    if key in _neuromorphic_classes():
        return str(_neuromorphic_classes()[key].sample_kind)
    return None


def _training_augment(kwargs: dict[str, Any], cls: type) -> bool | str:
    """Pop ``augment`` from the dataset arguments: the training split's augmentation
    (default on: ``True``, or one of the class's ``augment_policies``); the test split
    is never augmented. Checked as the dataset classes check it
    (:func:`~spikeflow.data.datasets._common.augment_policy`, the same message).

    Raises:
        ConfigurationError: neither a bool nor a policy name of ``cls``.
    """
    from spikeflow.data.datasets._common import augment_policy

    augment = kwargs.pop("augment", True)
    policies = getattr(cls, "augment_policies", ("standard",))
    return augment_policy(f"{cls.__name__} (--dataset-kwargs)", augment, policies) or False


def _auto_augment(config: TrainConfig, augment: bool | str) -> dict[str, Any]:
    """``--auto-augment``'s policy and ``--random-erase``'s probability for the training
    split (its arguments ``auto_augment``, ``random_erase``), which need its augmentation
    on (the policy runs after the crop and flip, the erasing last)."""
    if config.auto_augment is not None and augment is False:
        raise ConfigurationError(
            f"--auto-augment {config.auto_augment} with --dataset-kwargs augment=false: the "
            "policy runs within the training augmentation (after its crop and flip); "
            "leave one of them out"
        )
    if config.random_erase and augment is False:
        raise ConfigurationError(
            f"--random-erase {config.random_erase:g} with --dataset-kwargs augment=false: "
            "the erasing is the training augmentation's last step; leave one of them out"
        )
    return {"auto_augment": config.auto_augment, "random_erase": config.random_erase}


def dataset_shape(
    name: str, dataset_kwargs: dict[str, Any] | None = None
) -> tuple[int | None, tuple[int, ...]]:
    """``(classes, shape of one time step of a sample)`` of the ``--dataset`` ``name``
    built with ``dataset_kwargs`` (``--dataset-kwargs``), read from its class (no file
    is opened). ``classes`` comes from the class's ``classes_for(**dataset_kwargs)``
    where it has one (an argument that changes the classes: CIFAR-100's
    ``label="coarse"``, 20 superclasses; Speech Commands' ``version="v0.01"``, 30
    words), else its ``classes`` list, else its ``num_classes``, else None. The step
    shape is ``(1, 8, 8)`` for the digits (repeated over T), ``(700,)`` for SHD and SSC
    (frames ``[T, 700]``), ``(64,)`` for N-TIDIGITS18, ``(C, H, W)`` for the image
    datasets (repeated over T; ImageNet and ImageFolder ``(3, *image_size)``, 224 x 224
    unless ``image_size`` is given, ImageFolder's classes None: its folders decide), and
    the sensor's ``(P, H, W)`` for the others (frames ``[T, P, H, W]``; FSDD and Speech
    Commands ``(2, 1, n_mels)``, 40 mel bands unless ``audio_to_events`` sets them:
    the class's ``sensor_size_for(**dataset_kwargs)`` where it has one). A DataLoader batches
    frames to ``[B, T, ...]``, which the trainer makes ``[T, B, ...]``
    (:func:`to_time_major`).

    Raises:
        ConfigurationError: an unknown name (the message lists them), a
            ``dataset_kwargs`` key the class does not take or another option sets, or a
            value its ``classes_for`` refuses.
    """
    from spikeflow.data.datasets.audio import ChannelFrames
    from spikeflow.data.frame_transforms import int_pair

    key = name.lower() if isinstance(name, str) else None
    if key == "digits":
        if dataset_kwargs:
            raise ConfigurationError(
                "--dataset-kwargs: the 'digits' dataset ships with scikit-learn and takes none"
            )
        return 10, (1, 8, 8)
    classes = {**_image_classes(), **_folder_classes(), **_neuromorphic_classes()}
    if key not in classes:
        raise ConfigurationError(
            f"unknown dataset {name!r}; available: {', '.join(list_datasets())}"
        )
    cls = classes[key]
    kwargs = _check_dataset_kwargs(dict(dataset_kwargs or {}), cls)
    count = _class_count(cls, kwargs)
    if key in _image_classes():
        return count, (cls.channels, *cls.image_size)
    if key in _folder_classes():
        size = kwargs.get("image_size") or cls.default_image_size
        return count, (cls.channels, *int_pair(size, f"{cls.__name__}: image_size", "(h, w)"))
    sensor_size_for = getattr(cls, "sensor_size_for", None)
    sensor = sensor_size_for(**kwargs) if sensor_size_for is not None else cls.sensor_size
    width, height, polarities = sensor
    if issubclass(cls, ChannelFrames):  # frames [T, C] (SHD, SSC, N-TIDIGITS18)
        return count, (width * height * polarities,)
    return count, (polarities, height, width)


def _class_count(cls: type, kwargs: dict[str, Any]) -> int | None:
    """The classes of ``cls`` built with ``kwargs``: ``classes_for(**kwargs)`` where
    the class has it, else its ``classes`` list, else its ``num_classes`` (or None)."""
    classes_for = getattr(cls, "classes_for", None)
    names = classes_for(**kwargs) if classes_for is not None else getattr(cls, "classes", None)
    return len(names) if names else getattr(cls, "num_classes", None)


def even_subset(dataset: Dataset, count: int | None) -> Dataset:
    """The first of every ``len/count`` samples (all classes of a label-sorted set)."""
    size = len(dataset)  # type: ignore[arg-type]
    if count is None or count >= size:
        return dataset
    indices = np.linspace(0, size, num=count, endpoint=False).astype(np.int64)
    return Subset(dataset, indices.tolist())


def file_dataset_options(config: TrainConfig) -> list[str]:
    """The options of ``config`` (each as given, e.g. ``--data-dir /x``) that only a
    dataset read from files takes: ``--data-dir``, ``--cache-dir``, ``--split-by`` other
    than ``number``, ``--download`` and ``--dataset-kwargs``. A dataset that ships with
    scikit-learn (digits, diabetes) refuses each of them."""
    return [
        option
        for option, used in (
            (f"--data-dir {config.data_dir}", config.data_dir is not None),
            (f"--cache-dir {config.cache_dir}", config.cache_dir is not None),
            (f"--split-by {config.split_by}", config.split_by not in (None, "number")),
            ("--download", config.download),
            ("--dataset-kwargs", bool(config.dataset_kwargs)),
        )
        if used
    ]


def _digits(config: TrainConfig, with_train: bool = True) -> tuple[Dataset, Dataset, DataInfo]:
    # Options of event datasets would be ignored: an error, as they suggest another
    # dataset. ``with_train=False`` (spikeflow eval, which has no --dataset): the run's.
    given = file_dataset_options(config)
    if given:
        them = "it" if len(given) == 1 else "them"
        advice = (
            "; for a neuromorphic dataset also pass --dataset (e.g. --dataset nmnist)"
            if with_train
            else f" (the run trained on the digits: leave {them} out)"
        )
        raise ConfigurationError(
            f"{', '.join(given)} {'was' if len(given) == 1 else 'were'} given, but the "
            "'digits' dataset ships with scikit-learn: it reads no folder, caches no frames "
            f"and has no events to split{advice}"
        )
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as exc:
        raise MissingExtraError("the 8x8 digits dataset", "scikit-learn", "examples") from exc
    data = load_digits()
    images = (data.images / 16.0).astype(np.float32)[:, None]
    # A fixed split (random_state 0) so that every run, whatever its seed, tests on the
    # same 360 images: 80/20, stratified by class.
    x_tr, x_te, y_tr, y_te = train_test_split(
        images, data.target, test_size=0.2, random_state=0, stratify=data.target
    )
    train = TensorDataset(torch.from_numpy(x_tr), torch.from_numpy(y_tr).long())
    test = TensorDataset(torch.from_numpy(x_te), torch.from_numpy(y_te).long())
    return train, test, DataInfo(10, 1, (8, 8), static=True)


def _images(config: TrainConfig, with_train: bool) -> tuple[Dataset | None, Dataset, DataInfo]:
    from spikeflow.data.datasets import DatasetNotFoundError

    cls = _image_classes()[config.dataset.lower()]
    name = cls.__name__
    if config.data_dir is None:
        raise ConfigurationError(
            f"dataset {config.dataset!r} needs --data-dir (the folder that holds it)"
        )
    given = [
        option
        for option, used in (
            (f"--cache-dir {config.cache_dir}", config.cache_dir is not None),
            (f"--split-by {config.split_by}", config.split_by not in (None, "number")),
        )
        if used
    ]
    if given:
        raise ConfigurationError(
            f"{', '.join(given)}: {name} holds static images (read into memory, repeated over "
            "T): there are no events to split and no frames to cache; leave "
            f"{'it' if len(given) == 1 else 'them'} out"
        )
    kwargs = _dataset_kwargs(config, cls)
    augment = _training_augment(kwargs, cls)
    policy = _auto_augment(config, augment)
    try:
        train = None
        if with_train:
            train = cls(config.data_dir, train=True, download=config.download, augment=augment,
                        **policy, **kwargs)  # fmt: skip
        test = cls(config.data_dir, train=False, download=config.download and with_train,
                   **kwargs)  # fmt: skip
    except DatasetNotFoundError as exc:
        raise _not_found(exc, config, with_train, cls.downloadable) from exc
    split = train if train is not None else test
    height, width = cls.image_size
    return train, test, DataInfo(len(split.classes), cls.channels, (height, width), static=True)


def _image_folders(
    config: TrainConfig, with_train: bool
) -> tuple[Dataset | None, Dataset, DataInfo]:
    """ImageNet or ImageFolder (``<data-dir>/train``, ``<data-dir>/val``): images decoded
    per sample; ``--cache-dir`` caches the file listing."""
    from spikeflow.data.datasets import DatasetNotFoundError

    cls = _folder_classes()[config.dataset.lower()]
    name = cls.__name__
    if config.data_dir is None:
        raise ConfigurationError(
            f"dataset {config.dataset!r} needs --data-dir (the folder that holds train/ and val/)"
        )
    if config.split_by not in (None, "number"):
        raise ConfigurationError(
            f"--split-by {config.split_by}: {name} holds static images (repeated over T): "
            "there are no events to split; leave it out"
        )
    if config.download:
        raise ConfigurationError(
            f"--download: {name} cannot be downloaded automatically"
            + (
                " (image-net.org needs a login; see help(spikeflow.data.ImageNet))"
                if name == "ImageNet"
                else " (it reads your own folders)"
            )
        )
    kwargs = _dataset_kwargs(config, cls)
    augment = _training_augment(kwargs, cls)
    policy = _auto_augment(config, augment)
    kwargs["cache_dir"] = config.cache_dir
    from spikeflow.training.image_sizes import crop_and_resize

    train_sizes, test_sizes = crop_and_resize(config, cls, kwargs)
    try:
        train = (
            cls(config.data_dir, train=True, augment=augment, **policy, **kwargs, **train_sizes)
            if with_train
            else None
        )
        test = cls(config.data_dir, train=False, **kwargs, **test_sizes)
    except DatasetNotFoundError as exc:
        raise _not_found(exc, config, with_train, can_download=False) from exc
    split = train if train is not None else test
    # The model's input is the training crop's size (also for an evaluation alone).
    from spikeflow.data.frame_transforms import int_pair

    size = int_pair(train_sizes.get("image_size", cls.default_image_size), "image_size", "(h, w)")
    return train, test, DataInfo(len(split.classes), cls.channels, size, static=True)


def dataset_num_classes(dataset: Dataset, name: str = "the dataset") -> int:
    """The number of classes of ``dataset``: ``len(dataset.classes)`` when it has a
    ``classes`` list (the instance's, else its class's), else its ``num_classes``, else
    one more than the largest label in ``dataset.targets``.

    Raises:
        ConfigurationError: none of the three is available (or they say 0 classes).
    """
    classes = getattr(dataset, "classes", None)
    if classes is not None and len(classes) > 0:
        return len(classes)
    count = getattr(dataset, "num_classes", None)
    if isinstance(count, int) and not isinstance(count, bool) and count > 0:
        return count
    targets = getattr(dataset, "targets", None)
    if targets is not None and len(targets) > 0:
        return 1 + int(max(int(t) for t in targets))
    raise ConfigurationError(
        f"cannot tell how many classes {name} has: it has no `classes`, no `num_classes` and "
        "no labels (`targets`); pass num_classes in --model-kwargs"
    )


def _neuromorphic(
    config: TrainConfig, with_train: bool
) -> tuple[Dataset | None, Dataset, DataInfo]:
    from spikeflow.data.datasets import DatasetNotFoundError

    classes = _neuromorphic_classes()
    cls = classes[config.dataset.lower()]
    if config.data_dir is None:
        raise ConfigurationError(
            f"dataset {config.dataset!r} needs --data-dir (the folder that holds it)"
        )
    kwargs: dict[str, Any] = {
        "data_type": "frame",
        "frames_number": config.T,
        # The resolved value (the dataset's unless the run chose): it is in the cache key.
        "split_by": config.split_by or default_split_by(config.dataset),
        "cache_dir": config.cache_dir,
    }
    # What the class declares: a class may take a ``download`` argument it cannot use.
    can_download = bool(getattr(cls, "downloadable", False))
    if config.download:
        if not can_download:
            raise ConfigurationError(
                f"--download: {cls.__name__} cannot be downloaded automatically (its host needs "
                f"a manual download); see `help(spikeflow.data.{cls.__name__})`"
            )
        kwargs["download"] = True
    kwargs.update(_dataset_kwargs(config, cls))
    try:
        train = cls(config.data_dir, train=True, **kwargs) if with_train else None
        test = cls(config.data_dir, train=False, **kwargs)
    except DatasetNotFoundError as exc:
        raise _not_found(exc, config, with_train, can_download) from exc
    for split in (train, test):
        labels = getattr(split, "targets", None) or []
        if labels and not isinstance(labels[0], (int, np.integer)):
            raise ConfigurationError(
                f"{cls.__name__}: labels such as {labels[0]!r} are not class numbers, and "
                "spikeflow train classifies (e.g. N-TIDIGITS18 needs single_digits=True)"
            )
    # The instance's: a dataset's encoder can set it (the speech datasets' mel bands).
    width, height, channels = (train if train is not None else test).sensor_size
    num_classes = dataset_num_classes(train if train is not None else test, cls.__name__)
    return train, test, DataInfo(num_classes, channels, (height, width), static=False)


#: Dataset arguments that other options set (--dataset-kwargs may not).
_SET_ELSEWHERE = {
    "root": "set by --data-dir", "train": "set by the run (both splits)",
    "split": "set by the run (both splits)", "data_type": "set by the run (frames)",
    "frames_number": "set by --T", "split_by": "set by --split-by",
    "cache_dir": "set by --cache-dir", "download": "set by --download",
    "duration": "set by --T (frames per sample)",
    "custom_integrate_function": "set by --T (frames)",
    "transform": "Python only (a function)", "event_transform": "Python only (a function)",
    "image_transform": "Python only (a function)",
    "auto_augment": "set by --auto-augment", "random_erase": "set by --random-erase",
    "interpolation": "set by --interpolation",
    "target_transform": "Python only (a function)",
}  # fmt: skip


def _dataset_kwargs(config: TrainConfig, cls: type) -> dict[str, Any]:
    """``config.dataset_kwargs``, checked against what ``cls`` accepts
    (:func:`_check_dataset_kwargs`)."""
    return _check_dataset_kwargs(dict(config.dataset_kwargs), cls)


def _check_dataset_kwargs(given: dict[str, Any], cls: type) -> dict[str, Any]:
    """``given`` (``--dataset-kwargs``), checked against what ``cls`` accepts.

    Raises:
        ConfigurationError: a key another option sets, or one the class does not take
            (the message lists the ones it does).
    """
    for key in given:
        if key in _SET_ELSEWHERE:
            raise ConfigurationError(f"--dataset-kwargs {key}=...: {_SET_ELSEWHERE[key]}, not here")
    accepted: set[str] = set()
    for klass in cls.__mro__:  # the subclasses forward **kwargs to the base class
        init = vars(klass).get("__init__")
        if init is not None and klass is not object:
            params = list(inspect.signature(init).parameters.values())[1:]
            accepted |= {p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    unknown = sorted(set(given) - accepted)
    if unknown:
        options = sorted(accepted - set(_SET_ELSEWHERE))
        raise ConfigurationError(
            f"--dataset-kwargs: {cls.__name__} takes no argument {unknown}; "
            f"it takes {', '.join(options)}"
        )
    return given


def build_datasets(
    config: TrainConfig, with_train: bool = True
) -> tuple[Dataset | None, Dataset, DataInfo]:
    """The train and test splits of ``config.dataset`` (subsets when
    ``train_samples``/``test_samples`` are set) and their :class:`DataInfo`;
    ``with_train=False`` (evaluation) does not open the training split (``None``), so
    it need not be on disk, and a dataset that is not found is not met with the advice
    to pass ``--download`` (``spikeflow eval`` has no such option).

    Raises:
        ConfigurationError: an unknown dataset name (the message lists them).
    """
    name = config.dataset.lower()
    if name == "digits":
        train, test, info = _digits(config, with_train)
    elif name in _image_classes():
        train, test, info = _images(config, with_train)
    elif name in _folder_classes():
        train, test, info = _image_folders(config, with_train)
    elif name in _neuromorphic_classes():
        train, test, info = _neuromorphic(config, with_train)
    else:
        raise ConfigurationError(
            f"unknown dataset {config.dataset!r}; available: {', '.join(list_datasets())}"
        )
    train = even_subset(train, config.train_samples) if train is not None else None
    return train, even_subset(test, config.test_samples), info


#: How a batch becomes the time-major input: ``False`` frames ``[B, T, ...]``, ``True``
#: an image repeated over T, ``"columns"`` an image read one column per step.
StaticLayout = bool | Literal["columns"]


def static_layout(model: nn.Module, info: DataInfo, T: int) -> StaticLayout:
    """How :func:`to_time_major` feeds ``model`` the dataset's samples: frames
    (``False``), a static image repeated over ``T`` (``True``), or, for a model whose
    ``static_input`` is ``"columns"`` (the PSN paper's sequential-CIFAR network), the
    image one column per step (``"columns"``; ``T`` must be the image width).

    Raises:
        ConfigurationError: a column-reading model on frames, or ``T`` not the width.
    """
    if getattr(model, "static_input", "repeat") != "columns":
        return info.static
    name = type(model).__name__
    if not info.static:
        raise ConfigurationError(
            f"{name} reads static images one column per step; the dataset yields frames"
        )
    width = info.input_size[1]
    if T != width:
        raise ConfigurationError(
            f"{name} reads the image one column per step (sequential images): T must be the "
            f"image width, {width}; got T={T} (pass -T {width})"
        )
    return "columns"


def to_time_major(x: Tensor, T: int, static: StaticLayout) -> Tensor:
    """A batch as the time-major ``[T, B, ...]`` sequence a model takes.

    Static images ``[B, C, H, W]`` are repeated over ``T`` steps (a view, no copy), or
    with ``static="columns"`` read one column per step (``[W, B, C, H]``); frames
    ``[B, T, C, H, W]`` are transposed.
    """
    if static == "columns":
        return x.permute(3, 0, 1, 2)
    if static:
        return x.unsqueeze(0).expand(T, *x.shape)
    if x.dim() < 3:
        raise ShapeError(f"expected frames [B, T, ...], got shape {tuple(x.shape)}")
    return x.transpose(0, 1)
