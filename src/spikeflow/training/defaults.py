"""What ``spikeflow train`` uses for a dataset when the run leaves it open: the model,
``T``, the batch size and how events are cut into frames (``split_by``).

A dataset has a default model where the model zoo holds the network a paper trained on
it, or the zoo's nearest network to the one a published recipe for the dataset
trained (N-Caltech101, N-CARS: the zoo's VGG-11 for theirs), or, for FSDD, ST-MNIST
and N-TIDIGITS18, the network built for such data (the recurrent network of SHD);
``T``, the batch size, the loss and the learning rate are then that recipe's (a
learning rate for SGD, ImageNet's 0.1, only when the run also uses the recipe's
optimiser: ``--optimizer`` is the run's, Adam unless it says).
``split_by`` is ``"time"`` for the audio and tactile datasets, whose time axis frames
of equal event counts would warp (a loud syllable would take many frames and a quiet
one few), and for N-CARS, whose recipe bins its 100 ms samples by time; ``"number"``
for the other event cameras, as the PLIF and SEW recipes cut them (methods.md 11.2,
3.3). A dataset without a default model names the zoo models that build for its
frames instead. docs/training.md tables all of it with the sources, and says where
spikeflow's run differs from each recipe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from spikeflow.errors import ConfigurationError

__all__ = [
    "DATASET_DEFAULTS",
    "GENERIC",
    "RESOLVED_FIELDS",
    "DatasetDefaults",
    "dataset_defaults",
    "default_for",
    "default_split_by",
    "no_default_model_message",
]

#: The config fields whose ``None`` means "the dataset's" (filled by ``resolve``);
#: ``loss`` and ``lr`` are the recipe's only with the recipe's model (:func:`default_for`).
RESOLVED_FIELDS = ("model", "T", "batch_size", "split_by", "loss", "lr")
#: The loss and learning rate of a run whose model is not its dataset's recipe's.
GLOBAL_LOSS, GLOBAL_LR = "mse", 1e-3


@dataclass(frozen=True)
class DatasetDefaults:
    """A dataset's defaults (see the module docstring)."""

    #: ``"number"`` (equal event counts per frame) or ``"time"`` (equal durations).
    split_by: str
    #: The zoo model trained by default; None: the run must pass one (``--model``).
    model: str | None = None
    T: int = 10
    batch_size: int = 16
    #: Where the model, ``T`` and batch size come from.
    source: str = ""
    #: The recipe's loss and learning rate (used with its model only).
    loss: str = GLOBAL_LOSS
    lr: float = GLOBAL_LR
    #: Without a default model: zoo models that build for the dataset's frames and
    #: classes, which the error names (tests/test_train_defaults.py builds each).
    alternatives: tuple[str, ...] = ()
    #: The optimiser ``lr`` belongs to (None: any). The optimiser itself is the run's
    #: (``--optimizer``, default Adam); with another, ``lr`` is the global 1e-3.
    optimizer: str | None = None


_PLIF = "PLIF paper, Fang et al. ICCV 2021 (methods.md 11.2)"
_SPARCH = "Bittar & Garner 2022, their code idiap/sparch@ac49b5b"
_NDA = "NDA, Li et al. ECCV 2022, their code Intelligent-Computing-Lab-Yale/NDA_SNN@d355bcb"
_CORDONE = (
    "Cordone et al. IJCNN 2022, their code "
    "loiccordone/object-detection-with-spiking-neural-networks (classification.py)"
)
#: Zoo networks that take any frame size of at least 16x16 (an adaptive average pool
#: before the classifier): the choice for sensors no zoo network was built for.
_ANY_SIZE = ("sew_resnet18", "spiking_resnet18", "ms_resnet18")
_SEW = "SEW ResNet, Fang et al. NeurIPS 2021 (methods.md 3.3)"

#: Every ``spikeflow train --dataset`` name (tests check that none is missing).
DATASET_DEFAULTS: dict[str, DatasetDefaults] = {
    # 8x8 images: no events, so nothing to split; "number" is what every run recorded.
    "digits": DatasetDefaults(
        "number", "plif_digits", 4, 32, "spikeflow's PLIF CSNN for the 8x8 digits (docs/models.md)"
    ),
    "nmnist": DatasetDefaults("number", "plif_nmnist", 10, 16, _PLIF),
    # Static images (repeated over T; nothing to split: "number" is unused). The PLIF
    # recipe: T = 8, batch 16, MSE of the rates, Adam 1e-3.
    "mnist": DatasetDefaults("number", "plif_mnist", 8, 16, _PLIF),
    "fashionmnist": DatasetDefaults("number", "plif_fashion_mnist", 8, 16, _PLIF),
    "cifar10": DatasetDefaults("number", "plif_cifar10", 8, 16, _PLIF),
    # No published SNN recipe: MNIST's network and recipe (same 28x28 grey images).
    "kmnist": DatasetDefaults(
        "number", "plif_mnist", 8, 16, "PLIF MNIST network and recipe (methods.md 11.2)"
    ),
    "cifar100": DatasetDefaults(
        "number", T=8, alternatives=("plif_cifar10", "spiking_vgg11_bn", *_ANY_SIZE)
    ),
    # SEW's ImageNet recipe: T = 4, CE, SGD 0.1 (momentum 0.9, no weight decay, cosine
    # over 320 epochs), 32 images on each of 8 GPUs: a global batch of 256.
    "imagenet": DatasetDefaults("number", "sew_resnet18", 4, 256, _SEW, "ce", 0.1, optimizer="sgd"),
    # A user's class folders: no recipe; the models that take any image size.
    "imagefolder": DatasetDefaults("number", T=4, batch_size=32, alternatives=_ANY_SIZE),
    "dvs128gesture": DatasetDefaults("number", "plif_dvsgesture", 20, 16, _PLIF),
    "cifar10dvs": DatasetDefaults("number", "plif_cifar10dvs", 20, 16, _PLIF),
    # 100 steps and batch 128 (sparch's nb_steps and batch_size); sparch bins a fixed
    # 1.4 s window, spikeflow each sample's own span from its first to its last spike.
    # Their loss: cross-entropy of the read-out membrane (rsnn outputs no spikes); Adam 1e-2.
    "shd": DatasetDefaults("time", "rsnn", 100, 128, _SPARCH, "ce", 1e-2),
    "ssc": DatasetDefaults("time", "rsnn", 100, 128, _SPARCH, "ce", 1e-2),
    # Their Speech Commands set-up: 40 mel bands in 10 ms frames of the 1 s clips
    # (about 100 steps), batch 128; here the bands' ON/OFF events (docs/audio.md).
    "speechcommands": DatasetDefaults(
        "time", "rsnn", 100, 128, _SPARCH + ", Speech Commands", "ce", 1e-2
    ),
    # No published recipe: rsnn (built for spoken words) at docs/audio.md's T = 25,
    # 20 ms frames of FSDD's 0.5 s clips.
    "fsdd": DatasetDefaults(
        "time", "rsnn", 25, 16, "spikeflow's example (docs/audio.md)", "ce", 1e-2
    ),
    # No published rsnn recipe for these two: SHD's (the network built for spike trains
    # of a few dozen to hundreds of channels), 100 steps of each sample's span.
    "ntidigits18": DatasetDefaults(
        "time", "rsnn", 100, 128, _SPARCH + ", as SHD (64 cochlea channels)", "ce", 1e-2
    ),
    # Tonic's spiking MNIST: 99 neurons firing as the digit's rows are scanned, 1-D
    # spike trains as SHD's: the rsnn and SHD's recipe (no published SNN recipe for it).
    "smnist": DatasetDefaults(
        "time", "rsnn", 100, 128, _SPARCH + ", as SHD (99 input neurons)", "ce", 1e-2
    ),
    "stmnist": DatasetDefaults(
        "time", "rsnn", 100, 128, _SPARCH + ", as SHD (100 taxels x 2 polarities)", "ce", 1e-2
    ),
    # NDA: VGG-11, T = 10 frames by event count, CE of the time-mean output, Adam at
    # 1e-3 * batch / 256 (their code's rule) with batch 256 on frames resized to 48x48.
    # spikeflow keeps the full 180x240 frames (about 19x the pixels): batch 16, so the
    # rule gives 6.25e-5.
    "ncaltech101": DatasetDefaults("number", "spiking_vgg11_bn", 10, 16, _NDA, "ce", 6.25e-5),
    # Cordone et al.: VGG-11, T = 5 bins of 20 ms over the 100 ms samples, batch 64,
    # AdamW 5e-3 with a cosine schedule, CE of the summed output.
    "ncars": DatasetDefaults("time", "spiking_vgg11_bn", 5, 64, _CORDONE, "ce", 5e-3),
    # No published SNN recipe found for ASL-DVS or POKER-DVS; DVS-Lip's (Dampfhoffer &
    # Mesquida 2024) needs a spiking GRU back end the zoo does not hold (docs/training.md).
    "asldvs": DatasetDefaults("number", alternatives=_ANY_SIZE),
    "navgesture": DatasetDefaults("number", alternatives=_ANY_SIZE),
    "hardvs": DatasetDefaults("number", alternatives=_ANY_SIZE),
    "esimagenet": DatasetDefaults("number", alternatives=_ANY_SIZE),
    # 128x128 DVS frames as DVS128 Gesture's, but 100 words: the Gesture nets build.
    "dvslip": DatasetDefaults(
        "number",
        alternatives=("plif_dvsgesture", "sew_dvsgesture", "spikformer_dvs", "sew_resnet18"),
    ),
    # 35x35: the N-MNIST-sized network builds for it.
    "pokerdvs": DatasetDefaults("number", alternatives=("plif_nmnist", "sew_resnet18")),
    # No published SNN recipe in the zoo: Bullying10K's authors benchmark video networks
    # (C3D, R(2+1)D, ...) on 48x48 resized frames; N-Omniglot's few-shot baselines (SCNN,
    # SMAML, Siamese) are not zoo networks. Both are DAVIS346 frames, 2x260x346.
    "bullying10k": DatasetDefaults("number", alternatives=_ANY_SIZE),
    "nomniglot": DatasetDefaults("number", alternatives=_ANY_SIZE),
}


#: A dataset class without an entry (one of a user's, added to spikeflow.data.datasets):
#: no default model, T = 10, batch 16, frames by event count.
GENERIC = DatasetDefaults("number")


def dataset_defaults(dataset: str) -> DatasetDefaults:
    """The defaults of ``dataset`` (case-insensitive; :data:`GENERIC` for a name without
    an entry).

    Raises:
        ConfigurationError: ``dataset`` is not a string.
    """
    if not isinstance(dataset, str):
        raise ConfigurationError(f"dataset must be a string, got {dataset!r}")
    return DATASET_DEFAULTS.get(dataset.lower(), GENERIC)


def default_for(dataset: str, model: str | None, name: str, optimizer: str | None = None) -> object:
    """What a ``None`` of the config field ``name`` (one of :data:`RESOLVED_FIELDS`)
    means for a run of ``model`` on ``dataset``: the dataset's default, where the loss
    and learning rate are the recipe's only when ``model`` is the recipe's model (an
    ``rsnn`` read-out is a membrane, trained with cross-entropy; a PLIF network's
    firing rates with MSE), else ``mse`` and 1e-3; and the learning rate only when
    ``optimizer`` (the run's; None: not known) is the recipe's where the recipe names
    one (ImageNet's SGD 0.1 would wreck an Adam run), else 1e-3."""
    defaults = dataset_defaults(dataset)
    if name in ("loss", "lr") and (model is None or model != defaults.model):
        return GLOBAL_LOSS if name == "loss" else GLOBAL_LR
    if name == "lr" and optimizer not in (None, defaults.optimizer or optimizer):
        return GLOBAL_LR
    return getattr(defaults, name)


def default_split_by(dataset: str) -> str:
    """How ``dataset``'s events are cut into frames unless the run says: ``"time"`` for
    the audio and tactile datasets (SHD, SSC, FSDD, Speech Commands, N-TIDIGITS18,
    ST-MNIST) and N-CARS, ``"number"`` otherwise."""
    return dataset_defaults(dataset).split_by


def no_default_model_message(dataset: str, dataset_kwargs: dict[str, Any] | None = None) -> str:
    """The error for a run on ``dataset`` (built with ``dataset_kwargs``) without
    ``--model``, which names the zoo models that build for its frames
    (:attr:`DatasetDefaults.alternatives`) if any, and its step shape and classes."""
    from spikeflow.training.data import dataset_shape

    classes, step_shape = dataset_shape(dataset, dataset_kwargs)
    frames = "x".join(str(n) for n in step_shape)
    shape = f"its frames are {frames} per step"
    if classes is not None:
        shape += f", {classes} classes"
    alternatives = dataset_defaults(dataset).alternatives
    if alternatives:
        advice = (
            f"pass --model, e.g. {_or(alternatives)}, which build for these frames (docs/models.md)"
        )
    else:
        advice = "pass --model (spikeflow.models.list_models() lists them)"
    return (
        f"dataset {dataset!r} has no default model (the model zoo holds no network "
        f"published for it; {shape}): {advice}"
    )


def _or(names: tuple[str, ...]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
