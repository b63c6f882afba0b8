"""layers.MaxUnpool1d/2d/3d: SpikingJelly 2.0's multi-step MaxUnpool, the inverse of a
spikeflow MaxPool with return_indices=True, equal to SpikingJelly's and to torch's
applied to each step, gradients included; bad input raises naming what was wrong."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sj_checks import sj
from spikeflow import layers
from spikeflow.errors import DTypeError, ShapeError

F64 = torch.float64
CASES = [
    (1, layers.MaxPool1d, layers.MaxUnpool1d, nn.MaxUnpool1d, (3, 2, 4, 9)),
    (2, layers.MaxPool2d, layers.MaxUnpool2d, nn.MaxUnpool2d, (3, 2, 4, 7, 9)),
    (3, layers.MaxPool3d, layers.MaxUnpool3d, nn.MaxUnpool3d, (2, 2, 3, 5, 4, 6)),
]


@pytest.mark.parametrize(("d", "pool_cls", "unpool_cls", "torch_cls", "shape"), CASES)
def test_unpool_equals_spikingjelly_and_torch_per_step(d, pool_cls, unpool_cls, torch_cls, shape):
    sj_layer = sj("layer")
    g = torch.Generator().manual_seed(d)
    x = torch.rand(shape, generator=g, dtype=F64)
    values, indices = pool_cls(2, return_indices=True)(x)
    assert values.shape[:2] == x.shape[:2]
    values = values.detach().requires_grad_()
    spatial = x.shape[-d:]
    out = unpool_cls(2)(values, indices, output_size=spatial)
    assert out.shape == x.shape
    # SpikingJelly's multi-step MaxUnpool (pooled by its own MaxPool: the same indices).
    sj_values, sj_indices = getattr(sj_layer, f"MaxPool{d}d")(2, return_indices=True,
                                                           step_mode="m")(x)  # fmt: skip
    assert torch.equal(sj_indices, indices)
    theirs = getattr(sj_layer, f"MaxUnpool{d}d")(2, step_mode="m")(sj_values, sj_indices,
                                                                   spatial)  # fmt: skip
    assert torch.equal(out, theirs)
    # torch's, one step at a time; and the gradient picks the pooled positions back.
    per_step = torch.stack([torch_cls(2)(values[t], indices[t], spatial) for t in range(len(x))])
    assert torch.equal(out, per_step)
    grad = torch.randn(out.shape, generator=g, dtype=F64)
    (got,) = torch.autograd.grad((out * grad).sum(), values)
    assert torch.equal(got, grad.flatten(-d).gather(-1, indices.flatten(-d)).view_as(values))
    # A step's or the sequence's shape as output_size; single-step mode on one step.
    assert torch.equal(unpool_cls(2)(values, indices, x.shape), out)
    assert torch.equal(unpool_cls(2)(values, indices, x.shape[1:]), out)
    one = unpool_cls(2, step_mode="s")(values[1], indices[1], spatial)
    assert torch.equal(one, out[1])


def test_unpool_refuses_bad_input():
    x = torch.rand(2, 3, 4, 8, 8)
    values, indices = layers.MaxPool2d(2, return_indices=True)(x)
    unpool = layers.MaxUnpool2d(2)
    with pytest.raises(ShapeError, match=r"indices must have the shape of x"):
        unpool(values, indices[:1])
    with pytest.raises(DTypeError, match="int64"):
        unpool(values, indices.int())
    with pytest.raises(DTypeError, match="int64"):
        unpool(values, None)
    with pytest.raises(ShapeError, match="missing the time dimension"):
        unpool(values[0], indices[0])
    with pytest.raises(ShapeError, match=r"output_size must be the 2 spatial sizes"):
        unpool(values, indices, (8, 8, 8))
    assert "step_mode=m" in repr(unpool)
