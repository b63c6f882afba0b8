"""Quantization bugs found in review: each test failed before its fix."""

from __future__ import annotations

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
