"""Hostile-review fixes (round 6): bad arguments named by a ConfigurationError."""

from __future__ import annotations

import pytest
import torch

from spikeflow.errors import ConfigurationError


def test_decolle_regularisation_refuses_what_is_not_a_sequence_by_name():
    """None, a string or a non-tensor membrane: a ConfigurationError naming the argument
    (None was a bare TypeError 'not iterable', a string went character by character)."""
    from spikeflow.learn import DECOLLE
    from spikeflow.learn.decolle import decolle_u_regularisation
    from spikeflow.models import create_model

    u = [torch.zeros(2, 3)]
    for bad in (None, "0.1"):
        with pytest.raises(ConfigurationError, match=r"strength must be a sequence.*got"):
            decolle_u_regularisation(u, bad)
    with pytest.raises(ConfigurationError, match=r"u_t must be a sequence.*got None"):
        decolle_u_regularisation(None, [1.0])
    with pytest.raises(ConfigurationError, match=r"u_t must hold tensors, got \['list'\]"):
        decolle_u_regularisation([[0.0, 1.0]], [1.0])
    # (the values these checks let through are unchanged: U = 0 gives 0.01 λ)
    torch.testing.assert_close(decolle_u_regularisation((torch.zeros(2, 3),), (3.0,)),
                               torch.tensor(0.03))  # fmt: skip
    net = create_model("decolle", num_classes=10, in_channels=1, input_size=8,
                       channels=[4], kernel_size=3, hidden=[12])  # fmt: skip
    for bad in (None, "0.1"):
        with pytest.raises(ConfigurationError, match=r"DECOLLE: reg_u must be a sequence"):
            DECOLLE(net, reg_u=bad)
    assert DECOLLE(net, reg_u=(0.5, 0.25)).reg_u == (0.5, 0.25)
