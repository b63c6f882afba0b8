"""Neuromorphic datasets (a base class and the datasets built on it) and the static image
datasets of directly encoded SNNs, ImageNet and class-folder images among them
(docs/datasets.md)."""

from spikeflow.data.datasets.audio import (
    NTIDIGITS18,
    SHD,
    SSC,
    SpikingHeidelbergDigits,
    SpikingSpeechCommands,
)
from spikeflow.data.datasets.base import DatasetNotFoundError, NeuromorphicDataset
from spikeflow.data.datasets.bullying10k import Bullying10K, read_bullying10k
from spikeflow.data.datasets.dsec import DSEC_RECORDINGS, DSECEvents
from spikeflow.data.datasets.dvs_misc import ASLDVS, NCARS, POKERDVS, read_pokerdvs
from spikeflow.data.datasets.ebssa import EBSSA
from spikeflow.data.datasets.eyetracking import ThreeETEyetracking
from spikeflow.data.datasets.gesture import DVS128Gesture, NAVGesture, read_navgesture_dat
from spikeflow.data.datasets.image_folder import ImageFolder
from spikeflow.data.datasets.imagenet import ImageNet
from spikeflow.data.datasets.images import KMNIST, MNIST, FashionMNIST, ImageDataset
from spikeflow.data.datasets.images_cifar import CIFAR10, CIFAR100, CIFAR100_COARSE_CLASSES
from spikeflow.data.datasets.nmnist import NMNIST
from spikeflow.data.datasets.nomniglot import NOMNIGLOT_CLASSES, NOmniglot
from spikeflow.data.datasets.numpy_sets import HARDVS, DVSLip, ESImageNet
from spikeflow.data.datasets.smnist import SMNIST, smnist_encode
from spikeflow.data.datasets.speech import FSDD, SpeechCommands
from spikeflow.data.datasets.tactile import STMNIST
from spikeflow.data.datasets.tumvie import TUMVIE, TUMVIE_RECORDINGS
from spikeflow.data.datasets.vision import CIFAR10DVS, CIFAR10DVS_CLASSES, NCaltech101

__all__ = [
    "ASLDVS",
    "CIFAR10",
    "CIFAR10DVS",
    "CIFAR10DVS_CLASSES",
    "CIFAR100",
    "CIFAR100_COARSE_CLASSES",
    "DSEC_RECORDINGS",
    "EBSSA",
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
    "TUMVIE",
    "TUMVIE_RECORDINGS",
    "Bullying10K",
    "DSECEvents",
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
    "SpikingHeidelbergDigits",
    "SpikingSpeechCommands",
    "ThreeETEyetracking",
    "read_bullying10k",
    "read_navgesture_dat",
    "read_pokerdvs",
    "smnist_encode",
]
