"""The store-recall memory task (Norse 1.1's ``MemoryStoreRecallDataset``, after Bellec
et al., "Biologically inspired alternatives to backpropagation through time for learning
in recurrent neural nets", arXiv:1901.09049): a stream of random bits, a "store" command
in one period and a "recall" command in a later one; at the recall the network must
give the bit that was shown at the store.

A sample is ``seq_repetitions`` repetitions of ``seq_periods`` periods of ``seq_length``
steps. In each period one of two bits is shown (a random one-hot pair); in a repetition
the store command comes in one period of the first half, the recall in one of the
second half (where no bit is shown). Each of the four channels (bit 0, bit 1, store,
recall) is a population of ``population_size`` Poisson neurons, firing at
``poisson_rate`` Hz while its bit is on and the commands at half that rate. The sample
is ``(x, labels)``:

* ``x``: ``[T, 4 · population_size]`` float32 spikes, ``T = seq_repetitions ·
  seq_periods · seq_length``, channels in the order bit 0, bit 1, store, recall (each
  ``population_size`` neurons);
* ``labels``: ``[seq_repetitions · seq_periods, 2]`` uint8, one row per period: the
  stored bit one-hot in the recall period, zeros elsewhere (``labels.sum(-1) > 0``
  marks the recall periods, ``labels.argmax(-1)`` there is the bit).

The DataLoader batches them to ``[B, T, C]`` and ``[B, P, 2]``; ``x.transpose(0, 1)``
makes the input time-major. ``examples/store_recall_alif.py`` trains an adaptive
recurrent SNN on it (docs/datasets.md, "Store-recall").
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from spikeflow._checks import check_int, check_real
from spikeflow.errors import ConfigurationError

__all__ = ["StoreRecall"]


class StoreRecall(Dataset[tuple[Tensor, Tensor]]):
    """The store-recall task (see the module docstring); Norse's
    ``MemoryStoreRecallDataset`` with the same arguments.

    With ``seed=None`` every random number comes from PyTorch's global generator, in
    Norse's order: after the same ``torch.manual_seed``, the dataset and each sample
    read afterwards equal Norse's, bit for bit (a sample is drawn afresh at each read,
    as Norse's). With an integer ``seed`` the store and recall periods come from a
    generator seeded with it and each sample from one seeded with ``(seed, index)``: a
    sample is the same at every read and in every worker, and the global generator is
    left alone (Norse's ``seed`` reseeds the global generator instead, and its samples
    still change from read to read).

    Args:
        samples: the number of samples (>= 1).
        seq_length: steps per period (>= 1, default 100).
        seq_periods: periods per repetition (>= 2, default 12).
        seq_repetitions: store-recall pairs per sample (>= 1, default 4).
        population_size: neurons per channel (>= 1, default 5).
        poisson_rate: the bits' firing rate in Hz (the commands fire at half of it,
            rounded down, as Norse's); ``dt · poisson_rate <= 1`` (default 100).
        dt: the step in seconds (> 0, default ``1e-3``).
        seed: ``None`` (the global generator, Norse's stream) or an integer >= 0.

    Raises:
        ConfigurationError: an argument out of range.
    """

    def __init__(
        self,
        samples: int,
        seq_length: int = 100,
        seq_periods: int = 12,
        seq_repetitions: int = 4,
        population_size: int = 5,
        poisson_rate: int = 100,
        dt: float = 0.001,
        seed: int | None = None,
    ) -> None:
        owner = type(self).__name__
        self.samples = check_int(f"{owner}: samples", samples, 1)
        self.seq_length = check_int(f"{owner}: seq_length", seq_length, 1)
        self.seq_periods = check_int(f"{owner}: seq_periods", seq_periods, 2)
        self.seq_repetitions = check_int(f"{owner}: seq_repetitions", seq_repetitions, 1)
        self.population_size = check_int(f"{owner}: population_size", population_size, 1)
        self.dt = check_real(f"{owner}: dt", dt, 0.0, low_open=True)
        self.poisson_rate = check_int(f"{owner}: poisson_rate", poisson_rate, 0)
        if self.dt * self.poisson_rate > 1:
            raise ConfigurationError(
                f"{owner}: dt · poisson_rate is a firing probability per step and must be "
                f"<= 1, got {self.dt:g} · {self.poisson_rate} = {self.dt * self.poisson_rate:g}"
            )
        self.seed = None if seed is None else check_int(f"{owner}: seed", seed, 0)
        generator = None if self.seed is None else torch.Generator().manual_seed(self.seed)
        half, shape = self.seq_periods // 2, (self.samples, self.seq_repetitions)
        self.store_indices = torch.randint(0, half, shape, generator=generator)
        self.recall_indices = torch.randint(half, self.seq_periods, shape, generator=generator)

    def __len__(self) -> int:
        return self.samples

    def _generator(self, index: int) -> torch.Generator | None:
        if self.seed is None:
            return None
        state = np.random.SeedSequence([self.seed, index]).generate_state(1, np.uint64)[0]
        return torch.Generator().manual_seed(int(state))

    def _encode(self, pattern: Tensor, rate: int, generator: torch.Generator | None) -> Tensor:
        """Norse's ``poisson_encode`` of ``pattern`` ``[P, k]`` repeated per neuron:
        ``[seq_length, P, k · population_size]``."""
        rates = pattern.repeat_interleave(self.population_size, dim=1)
        draws = torch.rand(self.seq_length, *rates.shape, generator=generator)
        return (draws < self.dt * rate * rates).float()

    def _repetition(
        self, index: int, repetition: int, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor]:
        periods = self.seq_periods
        bits = torch.stack([torch.randperm(2, generator=generator) for _ in range(periods)])
        bits = bits.to(torch.uint8)
        store = int(self.store_indices[index, repetition])
        recall = int(self.recall_indices[index, repetition])
        commands = torch.zeros(periods, 2, dtype=torch.uint8)
        commands[store, 0] = 1
        commands[recall, 1] = 1
        labels = torch.zeros(periods, 2, dtype=torch.uint8)
        labels[recall] = bits[store]
        bits[recall] = 0
        shown = self._encode(bits, self.poisson_rate, generator)
        told = self._encode(commands, self.poisson_rate // 2, generator)
        spikes = torch.cat((shown, told), dim=2)  # [seq_length, periods, channels]
        return spikes.transpose(0, 1).reshape(periods * self.seq_length, -1), labels

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        """Sample ``index``: ``(x [T, 4 · population_size], labels [P, 2])``."""
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"StoreRecall: an index must be an integer, got {index!r}")
        if not -self.samples <= index < self.samples:
            raise IndexError(f"StoreRecall: index {index} out of range for {self.samples}")
        index = int(index) % self.samples
        generator = self._generator(index)
        parts = [self._repetition(index, r, generator) for r in range(self.seq_repetitions)]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def __repr__(self) -> str:
        return (
            f"StoreRecall(samples={self.samples}, seq_length={self.seq_length}, "
            f"seq_periods={self.seq_periods}, seq_repetitions={self.seq_repetitions}, "
            f"population_size={self.population_size}, poisson_rate={self.poisson_rate}, "
            f"dt={self.dt:g}, seed={self.seed})"
        )
