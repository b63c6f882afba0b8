"""Review fixes for the SpikingJelly converters of ``models.spike_driven``.

The Spike-driven Transformer's converter folds SpikingJelly's convolution biases into
the following batch norms' running means: that must not depend on the order of the
state dict's keys (a sorted one puts ``proj_bn.running_mean`` before ``proj_conv.bias``).
"""

from __future__ import annotations

import pytest
import torch

from spikeflow.models import create_model
from spikeflow.models import spike_driven as sdt

F64 = {"rtol": 1e-10, "atol": 1e-10}


def test_sdt_converter_folds_biases_whatever_the_key_order():
    spike_driven = pytest.importorskip(
        "spikingjelly.activation_based.model.spike_driven_transformer",
        reason="SpikingJelly is not installed",
    )
    torch.manual_seed(0)
    theirs = spike_driven.SpikeDrivenTransformer(
        T=2, num_classes=3, embed_dims=16, num_heads=2, depths=1, pooling_stat="0011",
        detach_reset=True,
    ).double().eval()  # fmt: skip
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():  # biases that matter; BN statistics that make neurons fire
        for m in theirs.modules():
            if isinstance(m, torch.nn.Conv2d) and m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=g, dtype=torch.float64))
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_var.fill_(0.05)
                m.bias.fill_(0.5)
    state = theirs.state_dict()
    natural = sdt.convert_spikingjelly_state_dict(state, pools=2)
    for keys in (sorted(state), list(reversed(list(state)))):
        converted = sdt.convert_spikingjelly_state_dict({k: state[k] for k in keys}, pools=2)
        assert converted.keys() == natural.keys()
        for name, value in natural.items():
            torch.testing.assert_close(converted[name], value, **F64, msg=name)
    ours = create_model(
        "sdt_8_384", num_classes=3, embed_dim=16, num_heads=2, depth=1, input_size=16, pools=2,
        neuron_kwargs={"detach_reset": True},
    ).double().eval()  # fmt: skip
    ours.load_state_dict(sdt.convert_spikingjelly_state_dict(dict(sorted(state.items())), pools=2))
    x = torch.rand(2, 2, 3, 16, 16, dtype=torch.float64, generator=g) * 2
    expected = theirs(x)
    assert expected.std() > 0.01
    torch.testing.assert_close(ours(x).mean(0), expected, **F64)
