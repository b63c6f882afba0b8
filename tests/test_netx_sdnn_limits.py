"""The bit limits of netx's sigma-delta layers (Lava's fixed-point ``proc/sdn``).

Read from ``lava-nc/lava`` ``proc/sdn/process.py`` and ``models.py``
(``PySigmaDeltaModelFixed``): ``vth`` and ``bias`` are stored shifted left by
``spike_exp + state_exp = 12``, and ``sigma``, ``act``, ``residue`` are
``precision=24`` (signed 24 bits, ``[-2^23, 2^23 - 1]``); the activation is
``sigma + (bias << 12)``, so at rest (``sigma = 0``) the shifted bias must fit 24 bits,
as ``vth << 12`` must: both mantissas in ``[-2^11, 2^11 - 1]`` (``bias``'s own
``precision=16``, read on the shifted value, would be narrower; Lava's Python models do
not enforce it). Lava's Python models compute in int32 and never wrap at 24 bits; the
chip would. So export refuses what cannot be stored, and the imported network refuses
a state that leaves 24 bits, naming the layer.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikeflow import layers
from spikeflow.errors import ConfigurationError
from spikeflow.interop import (
    LoihiSigmaDelta,
    LoihiSigmaDeltaInput,
    StateOverflowError,
    export_netx,
    import_netx,
)

pytest.importorskip("h5py")

LIMIT = 1 << 23


def _sdnn(bias: float, theta: float = 1 / 64) -> nn.Sequential:
    """A delta encoder, a 2-4 layer with ``bias`` on every unit, ReLU sigma-delta units
    of threshold ``theta`` and a 4-1 output: weights on Lava-DL's 8-bit grid."""
    hidden = nn.Linear(2, 4)
    out = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        hidden.weight.copy_(torch.tensor([[2.0, -1.0], [1.0, 1.0], [-2.0, 0.5], [0.25, 0.25]]))
        hidden.bias.fill_(bias)
        out.weight.copy_(torch.tensor([[1.0, 0.5, -0.5, 2.0]]))
    return nn.Sequential(
        layers.DeltaEncoder(1 / 64),
        layers.DeltaSynapse(hidden),
        layers.SigmaDelta(nn.ReLU(), theta),
        layers.DeltaSynapse(out),
        layers.SigmaDecoder(),
    )


def test_the_bias_mantissa_fits_24_bits_after_the_shift(tmp_path) -> None:
    # -32 * 64 = -2^11: bias << 12 = -2^23 fits the activation state; the network runs
    # at rest (sigma = 0, the activation is the bias alone)
    net = import_netx(export_netx(_sdnn(-32.0), tmp_path / "low.net", (2,)))
    assert int(net[2].bias.min()) == -(1 << 11) and int(net[2].bias.max()) == -(1 << 11)
    net(torch.zeros(4, 1, 2, dtype=torch.long))
    top = import_netx(export_netx(_sdnn(31.984375), tmp_path / "top.net", (2,)))  # 2^11 - 1
    rest = top[2](torch.zeros(4, 1, 4, dtype=torch.long))  # the unit itself, at rest
    assert int(rest.sum()) == 4 * (((1 << 11) - 1) << 6)  # its activation sent once
    # one more either way: refused at export, where it used to be written and then
    # overflow at rest (the 16 bits of the unshifted mantissa allowed up to 2^15)
    for bias, low, high in (
        (32.0, 2048, 2048),
        (-32.015625, -2049, -2049),
        (-512.0, -32768, -32768),
    ):
        with pytest.raises(
            ConfigurationError, match=rf"\[-2\^11, 2\^11 - 1\].*from {low} to {high}"
        ):
            export_netx(_sdnn(bias), tmp_path / "high.net", (2,))
    assert not (tmp_path / "high.net").exists()
    LoihiSigmaDelta(1, torch.tensor([-(1 << 11), (1 << 11) - 1]))
    for bad in (1 << 11, -(1 << 11) - 1):
        with pytest.raises(ConfigurationError, match=r"bias must be in \[-2\^11, 2\^11 - 1\]"):
            LoihiSigmaDelta(1, torch.tensor([0, bad]))


def test_the_threshold_mantissa_fits_24_bits_after_the_shift() -> None:
    # vth << 12 is a 24-bit state: vThMant <= 2^11 - 1
    assert LoihiSigmaDelta(2047).vth == 2047 and LoihiSigmaDeltaInput(2047).vth == 2047
    for module in (LoihiSigmaDelta, LoihiSigmaDeltaInput):
        with pytest.raises(ConfigurationError, match=r"vth must be an integer in \[0, 2047\]"):
            module(2048)


def test_export_refuses_a_threshold_beyond_the_state(tmp_path) -> None:
    export_netx(_sdnn(0.0, theta=2047 / 64), tmp_path / "ok.net", (2,))
    with pytest.raises(ConfigurationError, match=r"vThMant=2048.*vThMant <= 2047"):
        export_netx(_sdnn(0.0, theta=32.0), tmp_path / "no.net", (2,))


def test_sigma_leaving_24_bits_is_refused_at_its_step() -> None:
    unit = LoihiSigmaDelta(0)
    # the sums 2^22, 2^23 - 1 fit; a further 1 reaches 2^23 at step 2
    inside = torch.tensor([[[1 << 22]], [[(1 << 22) - 1]]])
    assert unit(inside).shape == (2, 1, 1)
    with pytest.raises(StateOverflowError, match=r"sigma reached 8388608 at step 2"):
        unit(torch.cat([inside, torch.tensor([[[1]]])]))
    # -2^23 fits, one less does not (the output Sigma too)
    low = torch.tensor([[[-(1 << 22)]], [[-(1 << 22)]]])
    assert torch.equal(LoihiSigmaDelta(0, sigma_output=True)(low)[-1], torch.tensor([[-LIMIT]]))
    with pytest.raises(StateOverflowError, match=r"sigma reached -8388609 at step 2"):
        LoihiSigmaDelta(0, sigma_output=True)(torch.cat([low, torch.tensor([[[-1]]])]))
    # the synaptic input itself (Lava's a_in port, precision=24): sigma swings from
    # -2^23 + 1 to 2^23 - 1 inside 24 bits, but the step's input 2^24 - 2 does not fit
    swing = torch.tensor([[[-LIMIT + 1]], [[2 * LIMIT - 2]]])
    with pytest.raises(StateOverflowError, match=r"a_in reached 16777214 at step 1"):
        LoihiSigmaDelta(0)(swing)
    LoihiSigmaDelta(0)(torch.tensor([[[-LIMIT]], [[LIMIT - 1]], [[LIMIT - 1]]]))  # both ends
    # the bias counts: bias 1024 is 1024 << 12 = 2^22 in the state
    with pytest.raises(StateOverflowError, match=r"sigma \+ bias reached 8388608 at step 0"):
        LoihiSigmaDelta(0, torch.tensor([1024]))(torch.tensor([[[1 << 22]]]))
    # the input layer: q << 12 must fit (|q| < 2^11, an input below 32)
    assert LoihiSigmaDeltaInput(0)(torch.tensor([[[2047]]])).item() == 2047 << 6
    with pytest.raises(StateOverflowError, match=r"q << 12 reached 8388608 at step 0"):
        LoihiSigmaDeltaInput(0)(torch.tensor([[[2048]]]))
    assert LoihiSigmaDeltaInput(0)(torch.tensor([[[-2048]]])).item() == -2048 << 6
    with pytest.raises(StateOverflowError, match=r"q << 12 reached -8392704 at step 0"):
        LoihiSigmaDeltaInput(0)(torch.tensor([[[-2049]]]))
    # an input so large that its int64 shift would wrap back inside 24 bits
    with pytest.raises(StateOverflowError, match=r"q << 12 reached .* at step 0"):
        LoihiSigmaDeltaInput(0)(torch.tensor([[[1 << 52]]]))  # (1 << 52) << 12 wraps to 0


def test_the_imported_network_names_the_layer_that_overflows(tmp_path) -> None:
    net = import_netx(export_netx(_sdnn(0.5), tmp_path / "n.net", (2,)))
    x = torch.full((6, 1, 2), 1.0)
    net(torch.round(x * 64).long())  # an input of 1: far inside
    # an input of 31 keeps the input layer inside; the hidden unit (2 x1 - x2) reaches
    # 31 units plus 0.5 from the bias, and the second (x1 + x2) 62: beyond 32 units
    with pytest.raises(StateOverflowError, match=r"NetxNetwork layer 2: LoihiSigmaDelta: sigma "):
        net(torch.round(x * 31 * 64).long())
    with pytest.raises(StateOverflowError, match=r"NetxNetwork layer 0: LoihiSigmaDeltaInput"):
        net(torch.round(x * 32 * 64).long())
