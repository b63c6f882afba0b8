"""Neuromorphic datasets (a base class and the datasets built on it) and the static image
datasets of directly encoded SNNs, ImageNet and class-folder images among them
(docs/datasets.md).

The datasets whose target is not a class (3ET eye tracking, EBSSA, the DSEC and TUM-VIE
event recordings) are imported from their modules (``spikeflow.data.datasets.eyetracking``,
``.ebssa``, ``.dsec``, ``.tumvie``): every class exported here is a ``spikeflow train``
dataset with a training recipe (``spikeflow.training.defaults``)."""

from spikeflow.data.datasets.audio import (
    NTIDIGITS18,
    SHD,
    SSC,
    SpikingHeidelbergDigits,
    SpikingSpeechCommands,
)
from spikeflow.data.datasets.base import DatasetNotFoundError, NeuromorphicDataset
from spikeflow.data.datasets.bullying10k import Bullying10K, read_bullying10k
from spikeflow.data.datasets.dvs_misc import ASLDVS, NCARS, POKERDVS, read_pokerdvs
from spikeflow.data.datasets.gesture import DVS128Gesture, NAVGesture, read_navgesture_dat
from spikeflow.data.datasets.image_folder import ImageFolder
from spikeflow.data.datasets.imagenet import ImageNet
from spikeflow.data.datasets.images import KMNIST, MNIST, FashionMNIST, ImageDataset
from spikeflow.data.datasets.images_cifar import CIFAR10, CIFAR100, CIFAR100_COARSE_CLASSES
from spikeflow.data.datasets.nmnist import NMNIST
from spikeflow.data.datasets.nomniglot import NOMNIGLOT_CLASSES, NOmniglot
from spikeflow.data.datasets.numpy_sets import HARDVS, DVSLip, ESImageNet
from spikeflow.data.datasets.smnist import SMNIST
from spikeflow.data.datasets.speech import FSDD, SpeechCommands, SpeechCommandsWaveforms
from spikeflow.data.datasets.tactile import STMNIST
from spikeflow.data.datasets.vision import CIFAR10DVS, CIFAR10DVS_CLASSES, NCaltech101

__all__ = [
    "ASLDVS",
    "CIFAR10",
    "CIFAR10DVS",
    "CIFAR10DVS_CLASSES",
    "CIFAR100",
    "CIFAR100_COARSE_CLASSES",
    "FSDD",
    "HARDVS",
    "KMNIST",
    "MNIST",
    "NCARS",
    "NMNIST",
    "NOMNIGLOT_CLASSES",
    "NTIDIGITS18",
    "POKERDVS",
    "SHD",
    "SMNIST",
    "SSC",
    "STMNIST",
    "Bullying10K",
    "DVS128Gesture",
    "DVSLip",
    "DatasetNotFoundError",
    "ESImageNet",
    "FashionMNIST",
    "ImageDataset",
    "ImageFolder",
    "ImageNet",
    "NAVGesture",
    "NCaltech101",
    "NOmniglot",
    "NeuromorphicDataset",
    "SpeechCommands",
    "SpeechCommandsWaveforms",
    "SpikingHeidelbergDigits",
    "SpikingSpeechCommands",
    "read_bullying10k",
    "read_navgesture_dat",
    "read_pokerdvs",
]
