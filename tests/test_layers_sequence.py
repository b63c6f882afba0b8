"""Sequence versions of torch layers: folding time into the batch equals per-step use."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
from torch import nn

import spikeflow.layers as L
from spikeflow.errors import DTypeError, ShapeError

# (factory, one step's shape, expected multi-step layout, bad multi-step shape,
#  bad single-step shape)
CASES: list[tuple[str, Callable[[], nn.Module], tuple, str, tuple, tuple]] = [
    ("conv1d", lambda: L.Conv1d(2, 3, 3), (4, 2, 9), "[T, B, C, L]", (4, 2, 9), (1, 4, 2, 9)),
    (
        "conv2d",
        lambda: L.Conv2d(2, 3, 3, padding=1),
        (4, 2, 6, 6),
        "[T, B, C, H, W]",
        (4, 2, 6, 6),
        (1, 4, 2, 6, 6),
    ),
    (
        "conv3d",
        lambda: L.Conv3d(2, 3, 3),
        (2, 2, 4, 4, 4),
        "[T, B, C, D, H, W]",
        (2, 2, 4, 4, 4),
        (1, 2, 2, 4, 4, 4),
    ),
    (
        "convT2d",
        lambda: L.ConvTranspose2d(2, 3, 3, stride=2),
        (4, 2, 5, 5),
        "[T, B, C, H, W]",
        (4, 2, 5, 5),
        (2, 4, 2, 5, 5),
    ),
    ("linear", lambda: L.Linear(6, 3), (4, 6), "[T, B, ..., 6]", (4, 6), (6,)),
    ("linear3d", lambda: L.Linear(6, 3), (4, 5, 6), "[T, B, ..., 6]", (4, 6), (6,)),
    ("bn1d", lambda: L.BatchNorm1d(3), (4, 3), "[T, B, C] or [T, B, C, L]", (4, 3), (3,)),
    ("bn1d_L", lambda: L.BatchNorm1d(3), (4, 3, 5), "[T, B, C, L]", (3,), (1, 4, 3, 5)),
    ("bn2d", lambda: L.BatchNorm2d(3), (4, 3, 5, 5), "[T, B, C, H, W]", (4, 3, 5, 5), (3, 5, 5)),
    (
        "bn3d",
        lambda: L.BatchNorm3d(3),
        (4, 3, 3, 3, 3),
        "[T, B, C, D, H, W]",
        (4, 3, 3, 3, 3),
        (3, 3, 3, 3),
    ),
    ("groupnorm", lambda: L.GroupNorm(2, 4), (4, 4, 3, 3), "[T, B, C, ...]", (4,), (4,)),
    ("layernorm", lambda: L.LayerNorm([3, 4]), (5, 3, 4), "[T, B, ..., 3, 4]", (5, 3, 4), (3, 4)),
    ("maxpool1d", lambda: L.MaxPool1d(2), (4, 2, 8), "[T, B, C, L]", (4, 2, 8), (1, 4, 2, 8)),
    (
        "maxpool2d",
        lambda: L.MaxPool2d(2),
        (4, 2, 6, 6),
        "[T, B, C, H, W]",
        (4, 2, 6, 6),
        (1, 4, 2, 6, 6),
    ),
    (
        "maxpool3d",
        lambda: L.MaxPool3d(2),
        (2, 2, 4, 4, 4),
        "[T, B, C, D, H, W]",
        (2, 2, 4, 4, 4),
        (2, 4, 4, 4),
    ),
    ("avgpool1d", lambda: L.AvgPool1d(2), (4, 2, 8), "[T, B, C, L]", (4, 2, 8), (2, 8)),
    ("avgpool2d", lambda: L.AvgPool2d(2), (4, 2, 6, 6), "[T, B, C, H, W]", (4, 2, 6, 6), (2, 6, 6)),
    (
        "avgpool3d",
        lambda: L.AvgPool3d(2),
        (2, 2, 4, 4, 4),
        "[T, B, C, D, H, W]",
        (2, 2, 4, 4, 4),
        (2, 4, 4, 4),
    ),
    ("adapt1d", lambda: L.AdaptiveAvgPool1d(3), (4, 2, 8), "[T, B, C, L]", (4, 2, 8), (2, 8)),
    (
        "adapt2d",
        lambda: L.AdaptiveAvgPool2d((2, 3)),
        (4, 2, 6, 6),
        "[T, B, C, H, W]",
        (4, 2, 6, 6),
        (2, 6, 6),
    ),
    (
        "adapt3d",
        lambda: L.AdaptiveAvgPool3d(2),
        (2, 2, 4, 4, 4),
        "[T, B, C, D, H, W]",
        (2, 2, 4, 4, 4),
        (2, 4, 4, 4),
    ),
    ("flatten", lambda: L.Flatten(), (4, 2, 3, 3), "[T, B, ...]", (4,), (4,)),
    ("flatten0", lambda: L.Flatten(0), (4, 2, 3, 3), "[T, B, ...]", (4,), ()),
    ("flatten2", lambda: L.Flatten(2), (4, 2, 3, 3), "[T, B, ...]", (4, 2), (4, 2)),
    (
        "upsample_nearest",
        lambda: L.Upsample(scale_factor=2),
        (4, 2, 3, 3),
        "[T, B, C, *spatial]",
        (4, 2),
        (4, 2),
    ),
    (
        "upsample_bilinear",
        lambda: L.Upsample(size=(5, 7), mode="bilinear"),
        (4, 2, 3, 3),
        "[T, B, C, H, W]",
        (4, 2, 3, 3),
        (1, 4, 2, 3, 3),
    ),
]
IDS = [c[0] for c in CASES]
T = 3


def torch_forward(layer: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """The torch base class's forward, bound to a copy of ``layer`` (the reference)."""
    base = next(c for c in type(layer).__mro__ if c.__module__.startswith("torch.nn"))
    ref = copy.deepcopy(layer)
    return lambda x: base.forward(ref, x)


def per_step(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    fwd = torch_forward(layer)
    return torch.stack([fwd(x[t]) for t in range(x.shape[0])])


def is_bn(layer: nn.Module) -> bool:
    return isinstance(layer, nn.modules.batchnorm._BatchNorm)


@pytest.mark.parametrize(("name", "make", "step", "layout", "bad_m", "bad_s"), CASES, ids=IDS)
def test_multi_step_equals_per_step(name, make, step, layout, bad_m, bad_s):
    layer = make()
    if is_bn(layer):
        layer.eval()
        layer.running_mean.uniform_(-1, 1)
        layer.running_var.uniform_(0.5, 2)
    x = torch.randn(T, *step)
    y = layer(x)
    expected = per_step(layer, x)
    assert y.shape == expected.shape
    torch.testing.assert_close(y, expected)


@pytest.mark.parametrize(("name", "make", "step", "layout", "bad_m", "bad_s"), CASES, ids=IDS)
def test_single_step_equals_torch_layer(name, make, step, layout, bad_m, bad_s):
    layer = make()
    layer.step_mode = "s"
    x = torch.randn(*step)
    torch.testing.assert_close(layer(x), torch_forward(layer)(x))
    assert "step_mode=s" in repr(layer)


@pytest.mark.parametrize(("name", "make", "step", "layout", "bad_m", "bad_s"), CASES, ids=IDS)
def test_gradients_flow(name, make, step, layout, bad_m, bad_s):
    layer = make()
    x = torch.randn(T, *step, requires_grad=True)
    y = layer(x)
    (y * torch.randn_like(y)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for p in layer.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()


@pytest.mark.parametrize(("name", "make", "step", "layout", "bad_m", "bad_s"), CASES, ids=IDS)
def test_wrong_dims_raise_shape_error(name, make, step, layout, bad_m, bad_s):
    layer = make()
    with pytest.raises(ShapeError, match="multi-step") as info:
        layer(torch.randn(*bad_m) if bad_m else torch.tensor(1.0))
    assert layout in str(info.value)
    layer.step_mode = "s"
    with pytest.raises(ShapeError, match="single-step") as info:
        layer(torch.randn(*bad_s) if bad_s else torch.tensor(1.0))
    assert layout.replace("[T, ", "[") in str(info.value)


def test_missing_time_message():
    with pytest.raises(ShapeError) as info:
        L.Conv2d(3, 8, 3)(torch.rand(8, 3, 32, 32))
    msg = str(info.value)
    assert "Conv2d in multi-step mode expects [T, B, C, H, W] (5 dims)" in msg
    assert "(8, 3, 32, 32)" in msg and "missing the time dimension" in msg


@pytest.mark.parametrize("step_mode", ["m", "s"])
def test_a_dtype_that_does_not_match_the_weight_is_named(step_mode):
    """A float64 or integer input to a float32 layer is a DTypeError saying how to match
    them, where torch says "mat1 and mat2 must have the same dtype"."""
    shape = (4, 3, 2, 8, 8) if step_mode == "m" else (3, 2, 8, 8)
    conv, linear = L.Conv2d(2, 4, 3, step_mode=step_mode), L.Linear(8, 5, step_mode=step_mode)
    with pytest.raises(
        DTypeError,
        match=r"Conv2d's weight is torch.float32 but its input is torch.float64.*"
        r"x.to\(torch.float32\).*net.to\(torch.float64\)",
    ):
        conv(torch.rand(shape, dtype=torch.float64))
    with pytest.raises(
        DTypeError,
        match=r"Linear expects a floating-point input.*got dtype torch.int64.*x.float\(\)",
    ):
        linear(torch.ones(shape, dtype=torch.long))
    with pytest.raises(DTypeError, match=r"input is torch.complex64: convert the input"):
        linear(torch.rand(shape, dtype=torch.complex64))  # not "x.float()": it drops x.imag
    with pytest.raises(TypeError):  # DTypeError is a TypeError, as the README says
        linear(torch.rand(shape, dtype=torch.float64))
    # matching dtypes run, float64 too, and autocast keeps casting by itself
    assert conv.double()(torch.rand(shape, dtype=torch.float64)).dtype == torch.float64
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert linear(torch.rand(shape, dtype=torch.bfloat16)).dtype == torch.bfloat16
    assert (
        L.MaxPool2d(2, step_mode=step_mode)(torch.rand(shape, dtype=torch.float64)).dtype
        == torch.float64
    )
    # batch norm takes a bfloat16 input with float32 weights: left to torch
    norm = L.BatchNorm2d(2, step_mode=step_mode)
    assert norm(torch.rand(shape, dtype=torch.bfloat16)).dtype == torch.bfloat16
    # a float64 input it refuses ("mixed dtype") is named as the linear layers' is
    with pytest.raises(DTypeError, match=r"BatchNorm2d's weight is torch\.float32 but its in"):
        norm(torch.rand(shape, dtype=torch.float64))


class _CountingIdentity(torch.nn.Module):
    """A weight parametrization that counts how often the weight is computed."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, weight):
        self.calls += 1
        return weight


@pytest.mark.parametrize("step_mode", ["m", "s"])
def test_the_dtype_check_costs_nothing_when_the_dtypes_match(step_mode):
    """The dtype check runs only when torch refuses the input: a parametrized (pruned,
    quantized) layer computes its weight once per call, not once more for the check;
    a torch error with matching dtypes (a wrong feature count) stays torch's."""
    from torch.nn.utils import parametrize

    linear = L.Linear(8, 5, step_mode=step_mode)
    counter = _CountingIdentity()
    parametrize.register_parametrization(linear, "weight", counter)
    shape = (4, 3, 8) if step_mode == "m" else (3, 8)
    counter.calls = 0  # registering computes it once
    linear(torch.rand(shape))
    assert counter.calls == 1
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied") as info:
        linear(torch.rand((*shape[:-1], 7)))
    assert not isinstance(info.value, DTypeError)
    with pytest.raises(DTypeError, match=r"weight is torch\.float32 but its input"):
        linear(torch.rand(shape, dtype=torch.float64))


def test_the_dtype_error_is_named_under_torch_compile():
    """Compiled, torch's error comes from tracing, where no except clause sees it: the
    check runs while tracing instead (once; the dtypes become guards), and a matching
    input compiles into one graph."""
    linear = L.Linear(8, 5)
    compiled = torch.compile(linear, backend="eager")
    with pytest.raises(DTypeError, match=r"weight is torch\.float32 but its input"):
        compiled(torch.rand(4, 3, 8, dtype=torch.float64))
    x = torch.rand(4, 3, 8)
    full = torch.compile(linear, backend="eager", fullgraph=True)
    torch.testing.assert_close(full(x), linear(x), rtol=0, atol=0)


@pytest.mark.parametrize("make", [lambda: L.BatchNorm1d(3), lambda: L.BatchNorm2d(3)])
def test_batchnorm_train_mode_uses_folded_batch(make):
    layer = make()
    x = torch.randn(T, 4, 3, 5, 5) if isinstance(layer, nn.BatchNorm2d) else torch.randn(T, 4, 3)
    ref = copy.deepcopy(layer)
    y = layer(x)
    expected = nn.modules.batchnorm._BatchNorm.forward(ref, x.flatten(0, 1)).unflatten(0, (T, 4))
    torch.testing.assert_close(y, expected)
    torch.testing.assert_close(layer.running_mean, ref.running_mean)
    torch.testing.assert_close(layer.running_var, ref.running_var)
    assert int(layer.num_batches_tracked) == 1
    # training statistics are over T*B samples, so per-step BN would differ
    assert not torch.allclose(y, per_step(make(), x))


def test_maxpool_return_indices_unfolds_both():
    layer = L.MaxPool2d(2, return_indices=True)
    x = torch.randn(T, 2, 3, 4, 4)
    values, indices = layer(x)
    assert values.shape == indices.shape == (T, 2, 3, 2, 2)
    for t in range(T):
        v, i = nn.functional.max_pool2d(x[t], 2, return_indices=True)
        torch.testing.assert_close(values[t], v)
        assert torch.equal(indices[t], i)


def test_conv_transpose_output_size():
    layer = L.ConvTranspose2d(2, 3, 3, stride=2)
    x = torch.randn(T, 2, 2, 5, 5)
    y = layer(x, output_size=(12, 12))
    assert y.shape == (T, 2, 3, 12, 12)
    torch.testing.assert_close(y[1], nn.ConvTranspose2d.forward(layer, x[1], output_size=(12, 12)))


def test_flatten_shapes():
    x = torch.randn(T, 2, 3, 4, 5)
    assert L.Flatten()(x).shape == (T, 2, 60)
    assert L.Flatten(0)(x).shape == (T, 120)
    assert L.Flatten(1, 2)(x).shape == (T, 2, 12, 5)


def test_state_dict_matches_torch_layer():
    torch_conv = nn.Conv2d(2, 3, 3)
    conv = L.Conv2d(2, 3, 3)
    conv.load_state_dict(torch_conv.state_dict())
    x = torch.randn(T, 4, 2, 6, 6)
    torch.testing.assert_close(conv(x), torch.stack([torch_conv(s) for s in x]))


def test_step_mode_validated_and_in_repr():
    layer = L.Linear(4, 2, step_mode="s")
    assert layer.step_mode == "s"
    assert "step_mode=s" in repr(layer)
    with pytest.raises(ValueError):
        L.Linear(4, 2, step_mode="x")
    assert repr(L.Flatten()).endswith("step_mode=m)")
