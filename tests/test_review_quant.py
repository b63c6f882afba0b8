"""Quantization bugs found in review: each test failed before its fix."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torch import nn

from spikeflow import quant
from spikeflow.errors import ConfigurationError
from spikeflow.neurons import LIFNode


def test_numpy_integers_are_bits():
    """``bits=np.int64(4)`` (a sweep over ``np.arange``) was refused: "bits must be an
    integer ..., got np.int64(4)"."""
    layer = nn.Linear(3, 2)
    quant.apply_weight_quantization(layer, bits=np.int64(3))
    k, _ = quant.integer_weights(layer)
    assert int(k.abs().max()) == 3  # q = 2^(3-1) - 1, the largest weight's level
    net = nn.Sequential(LIFNode())
    quant.apply_membrane_quantization(net, bits=np.int32(6), fraction_bits=np.int64(3))
    quantizer = net[0].membrane_quantizer
    assert (quantizer.bits, quantizer.fraction_bits) == (6, 3)
    assert type(quantizer.bits) is int and type(quantizer.fraction_bits) is int
    assert quant.MembraneQuantizer(4, step=np.float32(0.5)).step == 0.5


@pytest.mark.parametrize("bad", [np.bool_(True), 4.0, "4"])
def test_non_integer_bits_are_still_refused(bad):
    with pytest.raises(ConfigurationError, match="bits must be an integer"):
        quant.apply_weight_quantization(nn.Linear(3, 2), bits=bad)
    with pytest.raises(ConfigurationError, match="bits must be an integer"):
        quant.MembraneQuantizer(bad)


def test_a_numpy_bits_quantizer_saves_like_a_python_one():
    """Its settings buffer is the same, so state dicts load across."""
    a, b = nn.Linear(3, 2), nn.Linear(3, 2)
    quant.apply_weight_quantization(a, bits=np.int64(4))
    quant.apply_weight_quantization(b, bits=4)
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(b.weight, a.weight, rtol=0, atol=0)


def _quantized(layer: nn.Module) -> nn.Module:
    quant.apply_weight_quantization(layer, bits=4)
    return layer


# Three layers whose weights have one shape, [4, 2, 3, 3], and whose quantizers differ:
# a convolution's outputs are dim 0 of its weight, a transposed convolution's dim 1,
# and a grouped transposed convolution's each group's slice of dim 1.
def _conv():
    return nn.Conv2d(2, 4, 3, bias=False)


def _transposed():
    return nn.ConvTranspose2d(4, 2, 3, bias=False)


def _grouped():
    return nn.ConvTranspose2d(4, 4, 3, groups=2, bias=False)


@pytest.mark.parametrize(
    ("saved", "loaded", "differ"),
    [
        (_conv, _transposed, r"channel_dim=0\).*channel_dim=1\): they differ in channel_dim$"),
        (_grouped, _transposed, r"groups=2\).*groups=1\): they differ in groups$"),
        (
            _conv,
            _grouped,
            r"channel_dim=0, groups=1\).*channel_dim=1, groups=2\): they "
            r"differ in channel_dim, groups$",
        ),
    ],
)
def test_a_settings_mismatch_names_the_settings_that_differ(saved, loaded, differ):
    """The message named only bits and per_channel ("quantized to 4 bits
    (per_channel=True), this layer quantizes to 4 bits (per_channel=True)"), which were
    the same: the difference was in channel_dim or groups."""
    state = _quantized(saved()).state_dict()
    layer = _quantized(loaded())
    with pytest.raises(RuntimeError) as error:
        layer.load_state_dict(state)
    (line,) = [s.strip() for s in str(error.value).splitlines() if "settings" in s]
    assert re.search(r"quantized to 4 bits \(per_channel=True, " + differ, line), line


def test_a_bits_mismatch_still_names_the_bits():
    state = _quantized(nn.Linear(3, 2)).state_dict()
    layer = nn.Linear(3, 2)
    quant.apply_weight_quantization(layer, bits=6)
    with pytest.raises(
        RuntimeError,
        match=r"4 bits \(per_channel=True\), this layer quantizes "
        r"to 6 bits \(per_channel=True\): they differ in bits",
    ):
        layer.load_state_dict(state)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_integer_weights_of_non_finite_weights_name_the_layer_and_the_count(dtype):
    """NaN weights gave int32 levels of -2^31 (the cast of NaN) and inf weights a
    scale of inf with every level 0 or garbage, silently."""
    net = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 2)).to(dtype)
    quant.apply_weight_quantization(net, bits=4)
    with torch.no_grad():
        original = net[1].parametrizations.weight.original
        original[0, 0] = float("nan")
        original[1, 1] = float("inf")
    k, _ = quant.integer_weights(net[0])  # a finite layer is fine
    assert int(k.abs().max()) == 7
    with pytest.raises(
        ConfigurationError,
        match=r"Linear \(weight \[2, 2\]\): 2 of 4 weights "
        r"are not finite \(1 NaN, 1 inf\)",
    ):
        quant.integer_weights(net[1])
    with pytest.raises(ConfigurationError, match=r"^layer '1': 2 of 4 weights are not finite"):
        quant.integer_weights(net[1], name="1")
