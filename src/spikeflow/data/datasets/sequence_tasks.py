"""Two synthetic memory tasks of the Neural Turing Machine paper (Graves, Wayne and
Danihelka, "Neural Turing Machines", arXiv:1410.5401), in the form snnTorch's
``examples/ssm_neuron_benchmarks`` trains its ``StateLeaky`` and ``AssociativeLeaky``
networks on: the **copy task** and **associative recall**. Both read no files.

Every sample is ``(x, target, mask)``, each step a row:

* ``x``: ``[T, width + 1]`` float32; channels ``0 … width-1`` carry the bits, channel
  ``width`` is the delimiter (1 at the delimiter step, 0 elsewhere);
* ``target``: ``[T, width]`` float32, the bits the network must output, zero where
  nothing is asked;
* ``mask``: ``[T]`` bool, True at the steps the loss and the error are read at.

**Copy** (``CopyTask``): ``L`` random binary vectors (``L`` uniform in
``[min_length, max_length]``, each bit 1 with probability 1/2), the delimiter, then
``L`` blank steps in which the network must give the ``L`` vectors back in order:
``T = 2L + 1``, ``target[L+1+t] = x[t, :width]`` and the mask True on those ``L``
recall steps only.

**Associative recall** (``AssociativeRecall``): ``N`` key/value pairs (``N`` uniform in
``[min_pairs, max_pairs]``), key ``i`` at step ``2i`` and its value at ``2i+1``, the
delimiter at step ``2N``, then one of the ``N`` keys (uniform) as the query at step
``2N+1``: ``T = 2N + 2``; the target is the query's value, read at the query step
(the mask is True there only). Keys are distinct (so every query has one answer) and
values are free.

Samples have different lengths; ``collate_sequence_task`` pads a batch at the end
(zeros, mask False) and makes it time-major. End padding never changes what a causal
network outputs at the masked steps.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from spikeflow._checks import check_int
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError

__all__ = ["AssociativeRecall", "CopyTask", "collate_sequence_task"]

Sample = tuple[Tensor, Tensor, Tensor]
_REDRAWS = 100  # AssociativeRecall: draws of the keys before drawing them without replacement
_PERMUTED_WIDTH = 24  # ... which permutes all 2**width codes, so only up to this width


class _SeededTask(Dataset[Sample]):
    """Shared parts: the size checks, one generator per ``(seed, index)``, indexing."""

    def __init__(self, samples: int, width: int, seed: int) -> None:
        owner = type(self).__name__
        self.samples = check_int(f"{owner}: samples", samples, 1)
        self.width = check_int(f"{owner}: width", width, 1)
        self.seed = check_int(f"{owner}: seed", seed, 0)

    def __len__(self) -> int:
        return self.samples

    def _generator(self, index: int) -> torch.Generator:
        state = np.random.SeedSequence([self.seed, index]).generate_state(1, np.uint64)[0]
        return torch.Generator().manual_seed(int(state))

    def _index(self, index: int) -> int:
        owner = type(self).__name__
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"{owner}: an index must be an integer, got {index!r}")
        if not -self.samples <= index < self.samples:
            raise IndexError(f"{owner}: index {index} out of range for {self.samples} samples")
        return int(index) % self.samples

    def _bits(self, shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
        return torch.randint(0, 2, shape, generator=generator).float()


class CopyTask(_SeededTask):
    """The NTM copy task (see the module docstring): ``L`` random ``width``-bit vectors,
    a delimiter, ``L`` blank steps to recall them in; ``T = 2L + 1``.

    snnTorch's script (``ntm_copytask_eval_stateleaky.py``, after pytorch-ntm's
    generator) uses ``width=8``, ``L`` in ``[1, 20]`` (the defaults here), one ``L``
    per batch, and the loss on the last ``L`` steps; here each sample draws its own
    ``L`` and the mask marks its recall steps.

    Args:
        samples: the number of samples (>= 1).
        width: bits per vector (>= 1, default 8).
        min_length: the shortest sequence (>= 1, default 1).
        max_length: the longest sequence (>= ``min_length``, default 20).
        seed: an integer >= 0; sample ``i`` is drawn from a generator seeded with
            ``(seed, i)``, so it is the same at every read and in every DataLoader
            worker, and PyTorch's global generator is left alone.

    Raises:
        ConfigurationError: an argument out of range.
    """

    def __init__(
        self,
        samples: int,
        width: int = 8,
        min_length: int = 1,
        max_length: int = 20,
        seed: int = 0,
    ) -> None:
        super().__init__(samples, width, seed)
        self.min_length = check_int("CopyTask: min_length", min_length, 1)
        self.max_length = check_int("CopyTask: max_length", max_length, self.min_length)

    def __getitem__(self, index: int) -> Sample:
        """Sample ``index``: ``(x [2L+1, width+1], target [2L+1, width], mask [2L+1])``."""
        generator = self._generator(self._index(index))
        length = int(torch.randint(self.min_length, self.max_length + 1, (1,), generator=generator))
        bits = self._bits((length, self.width), generator)
        steps = 2 * length + 1
        x = torch.zeros(steps, self.width + 1)
        x[:length, : self.width] = bits
        x[length, self.width] = 1.0  # the delimiter: recall starts at the next step
        target = torch.zeros(steps, self.width)
        target[length + 1 :] = bits
        mask = torch.zeros(steps, dtype=torch.bool)
        mask[length + 1 :] = True
        return x, target, mask

    def __repr__(self) -> str:
        return (
            f"CopyTask(samples={self.samples}, width={self.width}, min_length="
            f"{self.min_length}, max_length={self.max_length}, seed={self.seed})"
        )


class AssociativeRecall(_SeededTask):
    """Associative recall (see the module docstring): ``N`` key/value steps, a
    delimiter, a query key; the target is the query's value at the last step,
    ``T = 2N + 2``.

    The sizes are those of snnTorch's scripts (``ntm_associativetask_eval_*.py``:
    ``width=8``, ``N`` in ``[2, 6]``, input ``[2N+2, B, width+1]``, the loss on the
    last step's ``width`` outputs). Their generator (``third_party/tasks/
    associativetask.py``) is not in snnTorch's repository; the step order here is the
    one those shapes leave: pairs, delimiter, query. (The NTM paper's version has items
    of several vectors and asks for the item after the query; ``width`` vectors of one
    step each and a key-to-value answer are snnTorch's simplification.)

    Args:
        samples: the number of samples (>= 1).
        width: bits per key and value (>= 1, default 8); ``2**width >= max_pairs``,
            so that the keys can be distinct.
        min_pairs: the fewest pairs (>= 1, default 2).
        max_pairs: the most pairs (>= ``min_pairs``, default 6).
        seed: as :class:`CopyTask`'s.

    Raises:
        ConfigurationError: an argument out of range, or too few distinct keys.
    """

    def __init__(
        self,
        samples: int,
        width: int = 8,
        min_pairs: int = 2,
        max_pairs: int = 6,
        seed: int = 0,
    ) -> None:
        super().__init__(samples, width, seed)
        self.min_pairs = check_int("AssociativeRecall: min_pairs", min_pairs, 1)
        self.max_pairs = check_int("AssociativeRecall: max_pairs", max_pairs, self.min_pairs)
        if self.width < 63 and 2**self.width < self.max_pairs:
            raise ConfigurationError(
                f"AssociativeRecall: max_pairs={self.max_pairs} distinct keys need "
                f"2**width >= max_pairs, got width={self.width} ({2**self.width} keys)"
            )

    def __getitem__(self, index: int) -> Sample:
        """Sample ``index``: ``(x [2N+2, width+1], target [2N+2, width], mask [2N+2])``."""
        generator = self._generator(self._index(index))
        pairs = int(torch.randint(self.min_pairs, self.max_pairs + 1, (1,), generator=generator))
        keys = self._distinct_keys(pairs, generator)
        values = self._bits((pairs, self.width), generator)
        query = int(torch.randint(0, pairs, (1,), generator=generator))
        steps = 2 * pairs + 2
        x = torch.zeros(steps, self.width + 1)
        x[0 : 2 * pairs : 2, : self.width] = keys
        x[1 : 2 * pairs : 2, : self.width] = values
        x[2 * pairs, self.width] = 1.0  # the delimiter
        x[2 * pairs + 1, : self.width] = keys[query]
        target = torch.zeros(steps, self.width)
        target[-1] = values[query]
        mask = torch.zeros(steps, dtype=torch.bool)
        mask[-1] = True
        return x, target, mask

    def _distinct_keys(self, pairs: int, generator: torch.Generator) -> Tensor:
        """``pairs`` distinct ``width``-bit keys: redrawn while any two are equal, up to
        ``_REDRAWS`` times (at the defaults a redraw is needed 6% of the time), then
        drawn without replacement, since near ``2**width == pairs`` almost every draw
        repeats a key (16 keys of 4 bits: one draw in 10^6 is distinct)."""
        for _ in range(_REDRAWS):
            keys = self._bits((pairs, self.width), generator)
            if len(torch.unique(keys, dim=0)) == pairs:
                return keys
        if self.width > _PERMUTED_WIDTH:  # 2**width codes too many to permute; and
            while len(torch.unique(keys, dim=0)) < pairs:  # collisions stay rare there
                keys = self._bits((pairs, self.width), generator)
            return keys
        codes = torch.randperm(2**self.width, generator=generator)[:pairs]
        return ((codes.unsqueeze(1) >> torch.arange(self.width)) & 1).float()

    def __repr__(self) -> str:
        return (
            f"AssociativeRecall(samples={self.samples}, width={self.width}, min_pairs="
            f"{self.min_pairs}, max_pairs={self.max_pairs}, seed={self.seed})"
        )


def collate_sequence_task(batch: Sequence[Sample]) -> Sample:
    """Pad samples of :class:`CopyTask` or :class:`AssociativeRecall` at the end to the
    longest and stack them time-major: ``(x [T, B, width+1], target [T, B, width],
    mask [T, B])``; padded steps are zeros with the mask False.

    Use it as ``DataLoader(task, batch_size=..., collate_fn=collate_sequence_task)``.

    Raises:
        ConfigurationError: an empty batch.
        ShapeError: a sample that is not ``(x [T, C], target [T, W], mask [T])`` or
            whose widths differ from the first sample's.
        DTypeError: a mask that is not bool, or an ``x`` or ``target`` whose dtype is
            not the first sample's ``x`` dtype (it would be cast silently).
    """
    if len(batch) == 0:
        raise ConfigurationError("collate_sequence_task got an empty batch")
    first_x, first_target = batch[0][0], batch[0][1]
    for i, sample in enumerate(batch):
        if len(sample) != 3:
            raise ShapeError(f"collate_sequence_task: sample {i} is not (x, target, mask)")
        x, target, mask = sample
        if (
            x.dim() != 2
            or target.dim() != 2
            or mask.shape != (x.shape[0],)
            or target.shape[0] != x.shape[0]
            or x.shape[1] != first_x.shape[1]
            or target.shape[1] != first_target.shape[1]
        ):
            raise ShapeError(
                f"collate_sequence_task: sample {i} has x {tuple(x.shape)}, target "
                f"{tuple(target.shape)}, mask {tuple(mask.shape)}; every sample must be "
                f"x [T_i, {first_x.shape[1]}], target [T_i, {first_target.shape[1]}], "
                f"mask [T_i]"
            )
        if mask.dtype != torch.bool or x.dtype != first_x.dtype or target.dtype != first_x.dtype:
            raise DTypeError(
                f"collate_sequence_task: sample {i} has x {x.dtype}, target {target.dtype}, "
                f"mask {mask.dtype}; every sample must have x and target of the first "
                f"sample's x dtype ({first_x.dtype}) and a bool mask"
            )
    steps = max(sample[0].shape[0] for sample in batch)
    size = len(batch)
    x = first_x.new_zeros(steps, size, first_x.shape[1])
    target = first_target.new_zeros(steps, size, first_target.shape[1])
    mask = torch.zeros(steps, size, dtype=torch.bool)
    for i, (xi, ti, mi) in enumerate(batch):
        x[: xi.shape[0], i] = xi
        target[: ti.shape[0], i] = ti
        mask[: mi.shape[0], i] = mi
    return x, target, mask
