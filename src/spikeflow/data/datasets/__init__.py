"""Neuromorphic datasets: a base class and the datasets built on it."""

from spikeflow.data.datasets.base import DatasetNotFoundError, NeuromorphicDataset
from spikeflow.data.datasets.nmnist import NMNIST

__all__ = ["NMNIST", "DatasetNotFoundError", "NeuromorphicDataset"]
