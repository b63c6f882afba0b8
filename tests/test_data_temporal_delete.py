"""``RandomTemporalDelete`` / ``random_temporal_delete``: SpikingJelly's random temporal
delete (``spikingjelly.datasets.transform``), a frame transform keeping ``T_remain``
random time steps in order.

SpikingJelly's ``datasets`` package imports torchvision, which is not installed here, so
its ``transform.py`` (numpy and torch only) is loaded on its own from the installed
package. Its ``np.random.choice`` is fed the steps spikeflow draws, and the outputs must
be equal; the draw itself is checked by its statistics and its seeding; the errors.
"""

from __future__ import annotations

import importlib.util
import math
from itertools import combinations, pairwise
from pathlib import Path

import numpy as np
import pytest
import torch

from spikeflow import data
from spikeflow.data import frame_transforms
from spikeflow.data import transforms as T
from spikeflow.data.frame_transforms import RandomTemporalDelete, random_temporal_delete
from spikeflow.errors import ConfigurationError, ShapeError


@pytest.fixture(scope="module")
def sj_transform():
    """SpikingJelly 2.0's ``datasets/transform.py``, loaded without its package."""
    spec = importlib.util.find_spec("spikingjelly")
    if spec is None or spec.origin is None:
        pytest.skip("SpikingJelly is not installed")
    path = Path(spec.origin).parent / "datasets" / "transform.py"
    module_spec = importlib.util.spec_from_file_location("_sj_datasets_transform", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def _our_draw(steps: int, remain: int, seed: int) -> np.ndarray:
    """The steps a fresh ``RandomTemporalDelete(remain, generator=seed)`` keeps, in the
    order drawn (``np.random.choice`` returns them unsorted; both sort them)."""
    return torch.randperm(steps, generator=torch.Generator().manual_seed(seed))[:remain].numpy()


def _feed(monkeypatch, draw: np.ndarray, steps: int, remain: int) -> list[tuple]:
    calls: list[tuple] = []

    def choice(a, size=None, replace=True, p=None):
        calls.append((a, size, replace, p))
        assert (a, size, replace, p) == (steps, remain, False, None)
        return draw.copy()

    monkeypatch.setattr(np.random, "choice", choice)
    return calls


@pytest.mark.parametrize(
    ("shape", "batch_first", "remain"),
    [
        ((8, 2, 5, 4), False, 5),  # a sample [T, C, H, W]
        ((8, 3, 2, 5, 4), False, 3),  # a time-major batch [T, B, C, H, W]: one draw
        ((3, 8, 2, 5, 4), True, 6),  # a DataLoader batch [B, T, C, H, W]
        ((4, 8), True, 8),  # SpikingJelly's docstring example, every step kept
        ((8,), False, 1),
    ],
)
def test_equals_spikingjelly_with_the_same_draw(
    sj_transform, monkeypatch, shape, batch_first, remain
):
    steps = shape[1] if batch_first else shape[0]
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    for seed in range(3):
        ours = RandomTemporalDelete(remain, batch_first, generator=seed)(x)
        ours_fn = random_temporal_delete(
            x.numpy(), remain, batch_first, torch.Generator().manual_seed(seed)
        )
        calls = _feed(monkeypatch, _our_draw(steps, remain, seed), steps, remain)
        theirs = sj_transform.random_temporal_delete(x, remain, batch_first)
        theirs_np = sj_transform.RandomTemporalDelete(remain, batch_first)(x.numpy())
        assert len(calls) == 2
        assert torch.equal(ours, theirs) and ours.shape == theirs.shape
        assert isinstance(ours_fn, np.ndarray) and np.array_equal(ours_fn, theirs_np)
        monkeypatch.undo()


def test_keeps_distinct_steps_in_order_drawn_uniformly():
    # steps numbered by value: the kept values are the kept steps
    x = torch.arange(6.0).view(6, 1, 1).expand(6, 2, 3)
    delete = RandomTemporalDelete(3, generator=0)
    seen: dict[tuple[int, ...], int] = {}
    for _ in range(600):
        out = delete(x)
        kept = tuple(int(v) for v in out[:, 0, 0])
        assert out.shape == (3, 2, 3) and torch.equal(out, out[:, :1, :1].expand(3, 2, 3))
        assert all(a < b for a, b in pairwise(kept))  # distinct, in order
        seen[kept] = seen.get(kept, 0) + 1
    assert set(seen) == set(combinations(range(6), 3))  # all C(6, 3) = 20 subsets
    # each subset has probability 1/20: 30 expected of 600, binomial sd ≈ 5.3
    assert all(abs(n - 30) < 5 * math.sqrt(600 * (1 / 20) * (19 / 20)) for n in seen.values())


def test_seeding_and_the_global_generator():
    x = torch.arange(10.0).view(10, 1)
    first = [RandomTemporalDelete(4, generator=7)(x) for _ in range(2)]
    assert torch.equal(first[0], first[1])  # the same seed, the same first draw
    delete = RandomTemporalDelete(4, generator=7)
    draws = {tuple(delete(x).view(-1).tolist()) for _ in range(20)}
    assert len(draws) > 10  # a stream: each call draws anew
    torch.manual_seed(3)
    a = [RandomTemporalDelete(4)(x) for _ in range(3)]
    torch.manual_seed(3)
    b = [random_temporal_delete(x, 4) for _ in range(3)]
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert len({tuple(u.view(-1).tolist()) for u in a}) > 1


def test_copies_keeps_type_dtype_and_marks_itself_random():
    x = torch.arange(12, dtype=torch.int16).view(4, 3)
    out = RandomTemporalDelete(4, generator=0)(x)
    assert torch.equal(out, x) and out.dtype == torch.int16
    out[0, 0] = 99
    assert x[0, 0] == 0  # a copy, not a view
    delete = RandomTemporalDelete(2, batch_first=True, generator=0)
    assert delete.random is True and T.Compose([delete]).random is True
    assert delete.cache_key() == {"name": "RandomTemporalDelete", "T_remain": 2,
                                  "batch_first": True}  # fmt: skip
    assert repr(delete) == "RandomTemporalDelete(T_remain=2, batch_first=True)"
    assert RandomTemporalDelete(np.int64(2)).T_remain == 2
    assert data.RandomTemporalDelete is T.RandomTemporalDelete is RandomTemporalDelete
    assert data.random_temporal_delete is T.random_temporal_delete is random_temporal_delete
    assert "RandomTemporalDelete" in frame_transforms.__all__


def test_bad_arguments_are_refused_by_name():
    x = torch.zeros(5, 2, 3)
    for bad in (-1, 0, 2.0, 2.5, True, np.bool_(True), "3", None):
        with pytest.raises(ConfigurationError, match="RandomTemporalDelete: T_remain"):
            RandomTemporalDelete(bad)
        with pytest.raises(ConfigurationError, match="random_temporal_delete: T_remain"):
            random_temporal_delete(x, bad)
    with pytest.raises(ConfigurationError, match=r"T_remain = 6 is more than the input's 5"):
        RandomTemporalDelete(6)(x)
    with pytest.raises(ConfigurationError, match=r"T_remain = 3 is more than the input's 2"):
        random_temporal_delete(x, 3, batch_first=True)
    with pytest.raises(ConfigurationError, match="batch_first"):
        RandomTemporalDelete(2, batch_first="no")
    with pytest.raises(ConfigurationError, match="generator"):
        random_temporal_delete(x, 2, generator=3)
    with pytest.raises(ConfigurationError, match="generator"):
        RandomTemporalDelete(2, generator=2.5)
    with pytest.raises(ShapeError, match=r"tensor or array \[T, \.\.\.\]; got list"):
        RandomTemporalDelete(2)([[1, 2], [3, 4]])
    with pytest.raises(ShapeError, match=r"\[B, T, \.\.\.\]; got shape \(5,\)"):
        RandomTemporalDelete(2, batch_first=True)(torch.zeros(5))
