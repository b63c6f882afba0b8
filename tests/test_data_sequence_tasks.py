"""data.datasets.sequence_tasks: the NTM copy and associative-recall tasks of snnTorch's
SSM-neuron benchmarks; the layouts checked step by step, seeding, padding, errors."""

from __future__ import annotations

import pytest
import torch

from spikeflow.data.datasets.sequence_tasks import (
    AssociativeRecall,
    CopyTask,
    collate_sequence_task,
)
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError


def test_copy_layout_by_hand():
    data = CopyTask(20, width=5, min_length=1, max_length=6, seed=3)
    lengths = set()
    for i in range(len(data)):
        x, target, mask = data[i]
        steps = x.shape[0]
        length = (steps - 1) // 2
        lengths.add(length)
        assert steps == 2 * length + 1 and 1 <= length <= 6
        assert x.shape == (steps, 6) and target.shape == (steps, 5) and mask.shape == (steps,)
        assert x.dtype == target.dtype == torch.float32 and mask.dtype == torch.bool
        # the bits, then the delimiter alone on its own channel, then blanks
        assert set(x[:length, :5].unique().tolist()) <= {0.0, 1.0}
        assert x[:length, 5].eq(0).all()
        assert x[length].tolist() == [0.0] * 5 + [1.0]
        assert x[length + 1 :].eq(0).all()
        # the target repeats the bits in order in the recall half, where the mask is
        assert torch.equal(target[length + 1 :], x[:length, :5])
        assert target[: length + 1].eq(0).all()
        assert mask.tolist() == [False] * (length + 1) + [True] * length
    assert lengths == set(range(1, 7))  # every length of the range is drawn


def test_recall_layout_by_hand():
    data = AssociativeRecall(80, width=4, min_pairs=2, max_pairs=5, seed=1)
    counts, positions = set(), set()
    for i in range(len(data)):
        x, target, mask = data[i]
        steps = x.shape[0]
        pairs = (steps - 2) // 2
        counts.add(pairs)
        assert steps == 2 * pairs + 2 and 2 <= pairs <= 5
        keys, values = x[0 : 2 * pairs : 2, :4], x[1 : 2 * pairs : 2, :4]
        assert len(torch.unique(keys, dim=0)) == pairs  # distinct keys
        assert x[: 2 * pairs, 4].eq(0).all() and x[-1, 4] == 0
        assert x[2 * pairs].tolist() == [0.0] * 4 + [1.0]  # the delimiter step
        query = x[-1, :4]
        hits = [k for k in range(pairs) if torch.equal(keys[k], query)]
        assert len(hits) == 1  # the query is one of the keys
        positions.add(hits[0])
        assert torch.equal(target[-1], values[hits[0]])  # ... and the answer its value
        assert target[:-1].eq(0).all()
        assert mask.tolist() == [False] * (steps - 1) + [True]
    assert counts == set(range(2, 6)) and positions == set(range(5))


def test_samples_are_fixed_per_index_and_seed():
    for cls in (CopyTask, AssociativeRecall):
        data = cls(8, seed=5)
        state = torch.get_rng_state()
        first = data[3]
        assert torch.equal(torch.get_rng_state(), state), "a read moved the global RNG"
        assert all(torch.equal(a, b) for a, b in zip(first, data[3]))
        assert all(torch.equal(a, b) for a, b in zip(first, data[-5]))
        assert all(torch.equal(a, b) for a, b in zip(first, cls(100, seed=5)[3]))
        assert not torch.equal(data[2][0], first[0])
        assert not torch.equal(cls(8, seed=6)[3][0], first[0])


def test_collate_pads_at_the_end_time_major():
    data = CopyTask(4, width=3, min_length=1, max_length=5, seed=0)
    samples = [data[i] for i in range(4)]
    x, target, mask = collate_sequence_task(samples)
    steps = max(s[0].shape[0] for s in samples)
    assert x.shape == (steps, 4, 4) and target.shape == (steps, 4, 3) and mask.shape == (steps, 4)
    for i, (xi, ti, mi) in enumerate(samples):
        n = xi.shape[0]
        assert torch.equal(x[:n, i], xi) and torch.equal(target[:n, i], ti)
        assert torch.equal(mask[:n, i], mi)
        assert x[n:, i].eq(0).all() and target[n:, i].eq(0).all() and not mask[n:, i].any()
    assert int(mask.sum()) == sum(int(s[2].sum()) for s in samples)


def test_bad_sizes_are_named():
    with pytest.raises(ConfigurationError, match="max_length"):
        CopyTask(4, min_length=5, max_length=4)
    with pytest.raises(ConfigurationError, match="min_length"):
        CopyTask(4, min_length=0)
    with pytest.raises(ConfigurationError, match="width"):
        CopyTask(4, width=0)
    with pytest.raises(ConfigurationError, match="samples"):
        AssociativeRecall(0)
    with pytest.raises(ConfigurationError, match="max_pairs"):
        AssociativeRecall(4, min_pairs=3, max_pairs=2)
    with pytest.raises(ConfigurationError, match="2\\*\\*width"):
        AssociativeRecall(4, width=2, max_pairs=5)
    with pytest.raises(ConfigurationError, match="seed"):
        CopyTask(4, seed=-1)
    with pytest.raises(IndexError, match="out of range"):
        CopyTask(4)[4]
    with pytest.raises(TypeError, match="integer"):
        AssociativeRecall(4)[1.0]
    with pytest.raises(ConfigurationError, match="empty"):
        collate_sequence_task([])
    x, target, mask = CopyTask(2, width=3)[0]
    with pytest.raises(ShapeError, match="sample 1"):
        collate_sequence_task([(x, target, mask), (x[:, :2], target, mask)])


def test_keys_at_the_bound_are_all_distinct_without_endless_redraws(monkeypatch):
    draws = []
    bits = AssociativeRecall._bits

    def counted(self, shape, generator):
        draws.append(shape)
        assert len(draws) < 1000, "AssociativeRecall keeps redrawing its keys"
        return bits(self, shape, generator)

    monkeypatch.setattr(AssociativeRecall, "_bits", counted)
    # 16 keys of 4 bits: a draw of 16 is distinct once in ~10^6; 2 keys of 1 bit: 1 in 2
    for width, pairs in ((4, 16), (1, 2), (3, 8)):
        data = AssociativeRecall(6, width=width, min_pairs=pairs, max_pairs=pairs, seed=2)
        for i in range(len(data)):
            draws.clear()
            x, target, mask = data[i]
            keys, values = x[0 : 2 * pairs : 2, :width], x[1 : 2 * pairs : 2, :width]
            assert x.shape == (2 * pairs + 2, width + 1)
            assert len(torch.unique(keys, dim=0)) == pairs == 2**width  # every code once
            assert set(keys.unique().tolist()) <= {0.0, 1.0}
            hits = [k for k in range(pairs) if torch.equal(keys[k], x[-1, :width])]
            assert len(hits) == 1 and torch.equal(target[-1], values[hits[0]])
            assert all(torch.equal(a, b) for a, b in zip((x, target, mask), data[i]))


def test_the_smallest_tasks_and_a_batch_of_one():
    x, target, mask = CopyTask(1, width=1, min_length=1, max_length=1, seed=4)[0]
    assert x.shape == (3, 2) and mask.tolist() == [False, False, True]
    assert x[1].tolist() == [0.0, 1.0] and target[2, 0] == x[0, 0] and x[2].eq(0).all()
    x, target, mask = AssociativeRecall(1, width=1, min_pairs=1, max_pairs=1, seed=4)[0]
    assert x.shape == (4, 2) and mask.tolist() == [False, False, False, True]
    assert torch.equal(x[3, :1], x[0, :1]) and torch.equal(target[3], x[1, :1])  # N = 1
    bx, btarget, bmask = collate_sequence_task([(x, target, mask)])
    assert bx.shape == (4, 1, 2) and torch.equal(bx[:, 0], x)
    assert torch.equal(btarget[:, 0], target) and torch.equal(bmask[:, 0], mask)


def test_dataloader_workers_give_the_indexed_samples():
    data = AssociativeRecall(12, width=5, seed=9)
    batches = torch.utils.data.DataLoader(
        data, batch_size=4, num_workers=2, collate_fn=collate_sequence_task
    )
    for b, (x, target, mask) in enumerate(batches):
        expected = collate_sequence_task([data[i] for i in range(4 * b, 4 * b + 4)])
        assert all(torch.equal(a, e) for a, e in zip((x, target, mask), expected))


def test_collate_refuses_mixed_dtypes_and_a_non_bool_mask():
    x, target, mask = CopyTask(2, width=3)[0]
    double = collate_sequence_task([(x.double(), target.double(), mask)])
    assert double[0].dtype == double[1].dtype == torch.float64
    with pytest.raises(DTypeError, match=r"sample 1 .*float64"):
        collate_sequence_task([(x, target, mask), (x.double(), target.double(), mask)])
    with pytest.raises(DTypeError, match=r"mask torch\.float32"):
        collate_sequence_task([(x, target, mask.float())])
