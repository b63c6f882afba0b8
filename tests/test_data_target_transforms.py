"""The target transform Repeat (spikeflow.data.target_transforms): against Tonic's
transforms.Repeat and by hand, in a DataLoader."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spikeflow.data import transforms as T
from spikeflow.errors import ConfigurationError
from tonic_events import tonic_transforms


def test_repeat_equals_tonic():
    tt = tonic_transforms()
    one_hot = np.eye(10)[3]
    for n in (1, 4, 25):
        np.testing.assert_array_equal(T.Repeat(n)(one_hot), tt.Repeat(n)(one_hot))
        assert T.Repeat(n)(one_hot).dtype == one_hot.dtype
        for label in (7, np.int64(2), 0.5):  # Tonic: [n, 1]
            np.testing.assert_array_equal(T.Repeat(n)(label)[:, None], tt.Repeat(n)(label))


def test_repeat_by_hand_tensors_and_dataloader():
    y = torch.tensor([1, 0, 2], dtype=torch.int16)
    out = T.Repeat(3)(y)
    assert out.dtype == torch.int16 and out.tolist() == [[1, 0, 2]] * 3
    out[0, 0] = 9  # a copy: the label is not changed
    assert y.tolist() == [1, 0, 2]
    assert T.Repeat(2)(np.arange(6).reshape(2, 3)).tolist() == [[[0, 1, 2], [3, 4, 5]]] * 2
    assert T.Repeat(4)(5).tolist() == [5, 5, 5, 5] and T.Repeat(4)(5).shape == (4,)
    data = [(torch.zeros(2), label) for label in (3, 1, 4)]
    loader = torch.utils.data.DataLoader(
        [(x, T.Repeat(5)(label)) for x, label in data], batch_size=3
    )
    _, targets = next(iter(loader))
    assert targets.shape == (3, 5) and targets.transpose(0, 1)[2].tolist() == [3, 1, 4]
    assert T.Repeat(5).cache_key() == {"name": "Repeat", "n_repeat": 5}
    assert repr(T.Repeat(5)) == "Repeat(n_repeat=5)" and not T.Repeat(5).random


def test_repeat_bad_input():
    with pytest.raises(ConfigurationError, match="n_repeat must be an integer >= 1"):
        T.Repeat(0)
    with pytest.raises(ConfigurationError, match="n_repeat"):
        T.Repeat(2.0)
    with pytest.raises(ConfigurationError, match="got str"):
        T.Repeat(2)("cat")
    with pytest.raises(ConfigurationError, match="Python objects"):
        T.Repeat(2)([1, "a", None])
