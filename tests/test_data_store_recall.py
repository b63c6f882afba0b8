"""data.datasets.store_recall.StoreRecall: Norse 1.1's MemoryStoreRecallDataset bit for
bit after the same global seed, the task's structure read back from the spikes, the
per-sample seeding, and bad arguments. The Norse test skips without Norse."""

from __future__ import annotations

import pytest
import torch

from spikeflow.data.datasets.store_recall import StoreRecall
from spikeflow.errors import ConfigurationError

ARGS = dict(seq_length=6, seq_periods=6, seq_repetitions=2, population_size=3)


def test_equals_norse():
    pytest.importorskip("norse", reason="Norse is not installed")
    from norse.dataset.memory import MemoryStoreRecallDataset

    torch.manual_seed(0)
    theirs = MemoryStoreRecallDataset(5, poisson_rate=300, **ARGS)
    torch.manual_seed(0)
    ours = StoreRecall(5, poisson_rate=300, **ARGS)
    assert torch.equal(ours.store_indices, theirs.store_indices)
    assert torch.equal(ours.recall_indices, theirs.recall_indices)
    for index in (0, 3):
        torch.manual_seed(10 + index)
        want = theirs[index]
        torch.manual_seed(10 + index)
        got = ours[index]
        for a, b in zip(got, want):
            assert a.dtype == b.dtype and torch.equal(a, b)
        assert 0.05 < got[0].mean() < 0.5


def test_structure_by_hand():
    """At 1000 Hz with dt = 1 ms a shown bit fires every step: each period's bits, the
    commands' periods and the labels can be read back from the spikes."""
    pop, length, periods = 2, 4, 8
    data = StoreRecall(3, length, periods, 3, pop, poisson_rate=1000, seed=7)
    x, labels = data[1]
    assert x.shape == (3 * periods * length, 4 * pop) and labels.shape == (3 * periods, 2)
    per_period = x.view(3 * periods, length, 4, pop)
    for r in range(3):
        store, recall = int(data.store_indices[1, r]), int(data.recall_indices[1, r])
        assert store < periods // 2 <= recall
        rows = slice(r * periods, (r + 1) * periods)
        bits, commands = per_period[rows, :, :2], per_period[rows, :, 2:]
        # one bit per period, always on at this rate; none in the recall period
        on = bits.amax(dim=(1, 3))
        for p in range(periods):
            if p == recall:
                assert bits[p].sum() == 0
            else:
                assert on[p].sum() == 1 and bits[p].sum() == length * pop
        # commands only in their periods (500 Hz: at least one spike in 8 draws is likely)
        fired = commands.amax(dim=(1, 3))
        assert fired[:, 0].nonzero().flatten().tolist() in ([store], [])
        assert fired[:, 1].nonzero().flatten().tolist() in ([recall], [])
        # the label: the bit of the store period, in the recall period only
        want = torch.zeros(periods, 2, dtype=torch.uint8)
        want[recall] = on[store].to(torch.uint8)
        assert torch.equal(labels[rows], want)


def test_seeded_samples_are_fixed():
    data = StoreRecall(4, seq_length=5, seed=3)
    state = torch.get_rng_state()
    first = data[2]
    assert torch.equal(torch.get_rng_state(), state), "a seeded read moved the global RNG"
    again = data[2]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    # each sample draws its own bits and spikes, not only its own command periods:
    # compare the bit channels in a period that is no recall period of either sample
    data = StoreRecall(4, seq_length=5, seq_periods=6, seq_repetitions=1, seed=3)
    free = set(range(6)) - {int(data.recall_indices[1, 0]), int(data.recall_indices[2, 0])}
    bits = [data[i][0].view(6, 5, 4, 5)[sorted(free), :, :2] for i in (1, 2)]
    assert not torch.equal(bits[0], bits[1])
    other = StoreRecall(4, seq_length=5, seed=4)
    assert not torch.equal(other[2][0], first[0])


def test_bad_arguments_are_named():
    with pytest.raises(ConfigurationError, match="seq_periods"):
        StoreRecall(2, seq_periods=1)
    with pytest.raises(ConfigurationError, match="dt · poisson_rate"):
        StoreRecall(2, poisson_rate=2000)
    with pytest.raises(ConfigurationError, match="samples"):
        StoreRecall(0)
    with pytest.raises(IndexError, match="out of range"):
        StoreRecall(2, seq_length=2)[2]
