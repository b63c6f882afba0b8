"""``interop.export_netx`` / ``import_netx``: Lava-DL's ``netx`` HDF5 networks.

Lava-DL cannot be installed here, so the files are checked against what its code reads
and writes, transcribed from reading it:

* the layout netx's ``hdf5.Network`` reads (``lava-nc/lava-dl``
  ``src/lava/lib/dl/netx/hdf5.py`` at ``4919a66aea1c8298e715622b56e626daa6c4f50a``:
  ``get_neuron_params``, ``create_input``, ``create_dense``, ``create_conv``,
  ``_create``) through ``NetDict`` (``netx/utils.py`` at ``cce4b57c56e4…``: ``type`` a
  string dataset read as ``value[0]`` or ``value[()]`` and decoded as ASCII, ``weight``
  and ``bias`` read ``astype(int)``, the other keys as stored), in the datasets and
  dtypes Lava-DL's own blocks write (``slayer/block/base.py`` at ``098249029a39…``:
  ``AbstractDense.export_hdf5``, ``AbstractConv.export_hdf5``: ``type`` as ``(1,)``
  ``S10``, ``neuron/*`` from ``cuba.Neuron.device_params``): ``NETX_SCHEMA`` below;
* netx's weight path into Lava's bit-accurate ``Dense`` and the ``LIF`` it drives
  (``tests/lava_checks.py``): the fixed-point network spikes on real N-MNIST events
  equal that transcription's (shifted by Lava's one step per layer), and the spikes of
  the float network are compared with them.
"""

from __future__ import annotations

import sys

import h5py
import numpy as np
import pytest
import torch

from conftest import require_shared_data
from lava_checks import lava_dense_network, netx_dense_synapse
from spikeflow import layers, neurons
from spikeflow.errors import (
    ConfigurationError,
    DataFormatError,
    DTypeError,
    MissingExtraError,
    ShapeError,
)
from spikeflow.functional import reset_net
from spikeflow.interop import (
    LoihiConv2d,
    LoihiDense,
    NetxNetwork,
    export_netx,
    import_netx,
    lava_dl_weights,
)
from spikeflow.quant import LoihiCubaLIFNode

# What a netx file holds per layer type: dataset -> (dtype kinds, shape or None for
# "any"). Required keys, then optional ones. ``type`` is compared decoded.
_NEURON = {
    "neuron/type": ("O", ()),  # h5py string (NetDict: value[()].decode('ascii'))
    "neuron/iDecay": ("iu", ()),  # netx: du = iDecay - 1
    "neuron/vDecay": ("iu", ()),  # dv = vDecay
    "neuron/vThMant": ("iu", ()),  # vth = vThMant
    "neuron/refDelay": ("iu", ()),  # NetDict array key; not passed to LIF
    "neuron/gradedSpike": ("b", ()),  # written by Lava-DL; netx reads messageBits
}
NETX_SCHEMA = {
    "input": {"type": ("S", (1,)), "shape": ("iu", None)},
    "flatten": {"type": ("S", (1,)), "shape": ("iu", (3,))},
    "dense": {
        "type": ("S", (1,)),
        "shape": ("iu", (1,)),  # netx: (np.prod(shape),)
        "inFeatures": ("iu", ()),
        "outFeatures": ("iu", ()),
        "weight": ("f", None),  # [out, in] (netx reshapes a 1-dim one)
        **_NEURON,
    },
    "conv": {
        "type": ("S", (1,)),
        "shape": ("iu", (3,)),  # [C, H, W]; netx reverses it to (x, y, z) = WHC
        "inChannels": ("iu", ()),
        "outChannels": ("iu", ()),
        "kernelSize": ("iu", (2,)),
        "stride": ("iu", (2,)),  # [H, W]; netx reverses (expand) to (x, y)
        "padding": ("iu", (2,)),
        "dilation": ("iu", (2,)),
        "groups": ("iu", ()),
        "weight": ("f", None),  # [out, in/groups, kH, kW]; netx flips and transposes
        **_NEURON,
    },
}
OPTIONAL = {"bias": ("f", None), "delay": ("f", None)}


def _cuba(tau_syn=4.0, tau_mem=8.0, threshold=1.0):
    return neurons.CubaLIFNode(
        tau_syn, tau_mem, r="tau_syn*tau_mem", v_threshold=threshold, v_reset=0.0
    )


def _conv_net():
    torch.manual_seed(1)
    return torch.nn.Sequential(
        layers.Conv2d(2, 4, 3, stride=(2, 1), padding=(1, 0), bias=False),
        _cuba(),
        layers.AxonalDelay(4, 62, init=[0.0, 1.5, 2.0, 3.7], learnable=False),
        layers.Flatten(),
        layers.Linear(4 * 4 * 6, 5, bias=False),
        _cuba(2.0, 4.0, 0.5),
    )


def _datasets(group):
    found = {}
    group.visititems(
        lambda name, obj: found.update({name: obj}) if isinstance(obj, h5py.Dataset) else None
    )
    return found


def _netdict_type(dataset):
    """NetDict's read of a ``type`` key."""
    value = dataset[0] if len(dataset.shape) > 0 else dataset[()]
    return value.decode("ascii")


def test_file_layout_is_what_netx_reads(tmp_path):
    net = _conv_net()
    path = export_netx(net, tmp_path / "net.h5", (2, 8, 8))
    with h5py.File(path, "r") as f:
        assert list(f) == ["layer"] and list(f["layer"]) == ["0", "1", "2", "3"]
        kinds = [_netdict_type(f[f"layer/{i}/type"]) for i in range(4)]
        assert kinds == ["input", "conv", "flatten", "dense"]
        for i, kind in enumerate(kinds):
            data = _datasets(f[f"layer/{i}"])
            schema = NETX_SCHEMA[kind]
            assert set(schema) <= set(data) <= set(schema) | set(OPTIONAL), (kind, set(data))
            for key, dataset in data.items():
                dtypes, shape = {**schema, **OPTIONAL}[key]
                assert dataset.dtype.kind in dtypes, (kind, key, dataset.dtype)
                assert shape is None or dataset.shape == shape, (kind, key, dataset.shape)
            if "neuron/type" in data:
                assert data["neuron/type"][()].decode("ascii") == "CUBA"
        layer = f["layer/1"]
        assert f["layer/0/shape"][()].tolist() == [2, 8, 8]
        assert layer["shape"][()].tolist() == [4, 4, 6]  # (8 + 2 - 3) // 2 + 1, 8 - 3 + 1
        assert layer["stride"][()].tolist() == [2, 1] and layer["padding"][()].tolist() == [1, 0]
        assert layer["kernelSize"][()].tolist() == [3, 3] and int(layer["groups"][()]) == 1
        expected = lava_dl_weights(net[0].weight).numpy()
        assert np.array_equal(layer["weight"][()].astype(int), expected)
        assert layer["delay"][()].tolist() == [0.0, 1.0, 2.0, 3.0]  # floor, as Lava-DL
        assert int(layer["neuron/iDecay"][()]) == 1024 and int(layer["neuron/vDecay"][()]) == 512
        assert int(layer["neuron/vThMant"][()]) == 64 and int(layer["neuron/refDelay"][()]) == 1
        dense = f["layer/3"]
        assert dense["shape"][()].tolist() == [5] and int(dense["inFeatures"][()]) == 96
        assert int(dense["neuron/vThMant"][()]) == 32 and "delay" not in dense
        assert f["layer/2/shape"][()].tolist() == [96, 1, 1]


def test_weights_are_lava_dl_quantised_and_netx_applies_them_unchanged():
    w = torch.tensor([[0.0, 0.01, 0.0157, 3 / 64, -0.0312, 3.97, 10.0, -10.0, 1 / 64]])
    # step 2/64 (round half to even), clamp to [-256, 254] / 64, times 64
    assert lava_dl_weights(w).tolist() == [[0, 0, 2, 4, -2, 254, 254, -256, 0]]
    torch.manual_seed(0)
    for scale in (0.05, 1.0, 8.0):  # small weights, mixed, most saturated
        stored = lava_dl_weights(torch.randn(7, 30) * scale).numpy()
        assert np.array_equal(netx_dense_synapse(stored), stored)
    # excitatory and inhibitory matrices too
    stored = lava_dl_weights(torch.rand(4, 9) * 4).numpy()
    assert np.array_equal(netx_dense_synapse(stored), stored)
    assert np.array_equal(netx_dense_synapse(-stored - 2), -stored - 2)
    # why the clamp stops at 254: netx's optimize_weight_bits shifts by a negative count
    # beyond it, which numpy turns into zero weights
    assert not netx_dense_synapse(np.array([[256, -2, 4]])).any()
    with pytest.raises(DTypeError, match="float tensor"):
        lava_dl_weights(torch.ones(2, 2, dtype=torch.int64))


def _check_same_file(a, b):
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        da, db = _datasets(fa), _datasets(fb)
        assert set(da) == set(db)
        for key in da:
            assert da[key].dtype == db[key].dtype and np.array_equal(da[key][()], db[key][()]), key


def test_round_trip_builds_the_fixed_point_network(tmp_path):
    net = _conv_net()
    path = export_netx(net, tmp_path / "a.net", (2, 8, 8))
    fixed = import_netx(path)
    assert isinstance(fixed, NetxNetwork) and fixed.input_shape == (2, 8, 8)
    kinds = [type(m) for m in fixed]
    assert kinds == [
        LoihiConv2d,
        LoihiCubaLIFNode,
        layers.AxonalDelay,
        layers.Flatten,
        LoihiDense,
        LoihiCubaLIFNode,
    ]
    assert torch.equal(fixed[0].weight, lava_dl_weights(net[0].weight))
    assert (fixed[0].stride, fixed[0].padding) == ((2, 1), (1, 0))
    assert (fixed[1].du, fixed[1].dv, fixed[1].vth, fixed[1].bias_exp) == (1023, 512, 64, 6)
    assert fixed[2].delay.tolist() == [0.0, 1.0, 2.0, 3.0] and not fixed[2].interpolate
    _check_same_file(path, export_netx(fixed, tmp_path / "b.net", (2, 8, 8)))
    # the network: integer conv, Loihi neurons, whole delays, integer dense, by hand
    x = (torch.rand(9, 3, 2, 8, 8) < 0.4).to(torch.int64)
    a = torch.nn.functional.conv2d(
        x.flatten(0, 1).double(), fixed[0].weight.double(), stride=(2, 1), padding=(1, 0)
    ).long()
    s = fixed[1](a.view(9, 3, 4, 4, 6))
    for c, d in enumerate([0, 1, 2, 3]):
        s[:, :, c] = torch.cat([torch.zeros_like(s[:d, :, c]), s[: 9 - d, :, c]])
    s = fixed[5](s.flatten(2) @ fixed[4].weight.t())
    assert torch.equal(fixed(x), s) and s.dtype == torch.int64
    # a bias (mantissa, exponent 6) is written and read back
    biased = NetxNetwork(
        (96,), LoihiDense(fixed[4].weight), LoihiCubaLIFNode(1023, 5, 20, torch.arange(5) - 2, 6)
    )
    back = import_netx(export_netx(biased, tmp_path / "c.net", (96,)))
    assert back[1].bias_mant.flatten().tolist() == [-2, -1, 0, 1, 2]
    x = (torch.rand(6, 2, 96) < 0.3).long()
    assert torch.equal(back(x), biased(x))
    # one bias for all channels of a convolution is written per channel (netx's rule)
    conv = NetxNetwork((2, 8, 8), fixed[0], LoihiCubaLIFNode(1023, 5, 20, -3, 6))
    back = import_netx(export_netx(conv, tmp_path / "d.net", (2, 8, 8)))
    assert back[1].bias_mant.shape == (4, 1, 1) and back[1].bias_mant.flatten().tolist() == [-3] * 4
    x = (torch.rand(5, 2, 2, 8, 8) < 0.3).long()
    assert torch.equal(back(x), conv(x))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_model_on_the_gpu_is_exported_as_on_the_cpu(tmp_path):
    net = _conv_net()
    biased = NetxNetwork((4,), LoihiDense(torch.ones(3, 4, dtype=torch.int64)),
                         LoihiCubaLIFNode(1023, 5, 20, torch.arange(3) - 1, 6))  # fmt: skip
    for i, model in enumerate((net, biased)):
        shape = (2, 8, 8) if model is net else (4,)
        want = export_netx(model, tmp_path / f"cpu{i}.net", shape)
        _check_same_file(want, export_netx(model.cuda(), tmp_path / f"gpu{i}.net", shape))


def test_reads_lava_dl_exports_without_input_layer_and_netx_defaults(tmp_path):
    path = tmp_path / "lava_dl.net"
    weight = np.arange(-6, 6, dtype=np.float32).reshape(3, 4) * 2
    with h5py.File(path, "w") as f:  # as Lava-DL's Network export: blocks from '0'
        g = f.create_group("layer/0")
        g.create_dataset("type", (1,), "S10", [b"dense"])
        g.create_dataset("shape", data=np.array([3]))
        g.create_dataset("weight", data=weight)
        g.create_dataset("neuron/type", data="CUBA")
        for key, value in {"iDecay": 1024, "vDecay": 128, "vThMant": 80, "refDelay": 1}.items():
            g.create_dataset(f"neuron/{key}", data=value)
        g.create_dataset("neuron/gradedSpike", data=False)
        g = f.create_group("layer/1")  # a dense layer without neurons: netx's integrator
        g.create_dataset("type", (1,), "S10", [b"dense"])
        g.create_dataset("shape", data=np.array([2]))
        g.create_dataset("weight", data=np.ones((2, 3), np.float32).reshape(-1))
    net = import_netx(path)
    assert net.input_shape == (4,) and torch.equal(net[0].weight, torch.from_numpy(weight).long())
    assert (net[1].du, net[1].dv, net[1].vth) == (1023, 128, 80)
    assert (net[3].du, net[3].dv, net[3].vth) == (-1, 4096, 1 << 17)  # iDecay 0, vDecay 4096


@pytest.fixture(scope="module")
def nmnist_spikes():
    from spikeflow.data import NMNIST

    ds = NMNIST(
        require_shared_data("nmnist-small"),
        train=False,
        data_type="frame",
        frames_number=12,
        split_by="number",
    )
    frames = torch.stack([ds[i][0] for i in range(0, 100, 17)])  # 6 digits
    return (frames > 0).transpose(0, 1).flatten(2).to(torch.int64)  # [T, B, 2312]


def test_nmnist_fixed_point_equals_lava_and_agrees_with_float(tmp_path, nmnist_spikes):
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        layers.Linear(2312, 40, bias=False),
        _cuba(4.0, 8.0, 1.0),
        layers.Linear(40, 10, bias=False),
        _cuba(2.0, 4.0, 1.0),
    )
    with torch.no_grad():
        net[0].weight.normal_(0.0, 0.05)
        net[2].weight.normal_(0.1, 0.3)
    x = nmnist_spikes
    fixed = import_netx(export_netx(net, tmp_path / "nmnist.net", (2312,)))
    out = fixed(x)
    hidden = fixed[:2](x)
    assert 0.05 < hidden.float().mean() < 0.5 and 0.05 < out.float().mean() < 0.9
    # Lava: each Dense sends the previous step's sums: its spikes come two steps later
    with h5py.File(tmp_path / "nmnist.net", "r") as f:
        blocks = [
            (
                f[f"layer/{i}/weight"][()].astype(int),
                {
                    "du": int(f[f"layer/{i}/neuron/iDecay"][()]) - 1,
                    "dv": int(f[f"layer/{i}/neuron/vDecay"][()]),
                    "vth": int(f[f"layer/{i}/neuron/vThMant"][()]),
                },
            )
            for i in (1, 2)
        ]
    for b in range(x.shape[1]):
        lava = lava_dense_network(x[:, b].numpy(), blocks)
        assert not lava[:2].any() and np.array_equal(lava[2:], out[:-2, b].numpy())
    # The float network on the same spikes (docs/loihi.md reports these agreements): with
    # its own weights (random ones, far from the grid of 1/32) and with the weights on
    # the grid, which leaves the decays' truncation and the strict threshold.
    net.double()
    with torch.no_grad():
        agree = [
            (net[:2](x.double()) == hidden).double().mean(),
            (net(x.double()) == out).double().mean(),
        ]
        for i in (0, 2):
            net[i].weight.copy_(lava_dl_weights(net[i].weight) / 64)
        agree += [
            (net[:2](x.double()) == hidden).double().mean(),
            (net(x.double()) == out).double().mean(),
        ]
    assert min(agree[:2]) > 0.8 and min(agree[2:]) > 0.98, agree


def test_if_and_lif_export_as_the_cuba_neuron_spikingjelly_maps_them_to(tmp_path):
    # SpikingJelly's lava_exchange: IF / LIF (decay_input=False, hard reset to 0) as CUBA
    # with current_decay = 1 (the voltage adds each step's input) and voltage_decay = 1/tau
    torch.manual_seed(5)
    weight = torch.randint(-8, 12, (6, 10)).double() / 32  # on Lava-DL's 8-bit grid
    x = torch.rand(30, 4, 10) < 0.4
    cases = [
        (neurons.IFNode(v_threshold=0.75, strict_firing=True), 0),
        (neurons.LIFNode(tau=2.0, decay_input=False, v_threshold=0.75, strict_firing=True), 2048),
    ]
    for node, v_decay in cases:
        fc = layers.Linear(10, 6, bias=False).double()
        fc.weight.data.copy_(weight)
        fixed = import_netx(export_netx(torch.nn.Sequential(fc, node), tmp_path / "n.net", (10,)))
        assert (fixed[1].du, fixed[1].dv, fixed[1].vth) == (4095, v_decay, 48)
        with torch.no_grad():
            spikes = node(fc(x.double()))
        assert 0.05 < float(spikes.mean()) < 0.5
        # Loihi fires on v > vth: the float neuron with strict firing, spike for spike
        assert torch.equal(fixed(x.long()).double(), spikes)


def test_a_layer_bias_before_if_or_lif_neurons_is_their_voltage_bias(tmp_path):
    # the neuron's current decays fully each step, so W x + b reaches the voltage as
    # Loihi's current W x plus its voltage bias round(64 b) (bias_exp 6)
    torch.manual_seed(6)
    weight = torch.randint(-8, 12, (6, 10)).double() / 32
    bias = torch.tensor([-0.5, -3 / 64, 0.0, 5 / 64, 0.25, 1.0], dtype=torch.float64)
    x = torch.rand(30, 4, 10) < 0.4
    for node in (
        neurons.IFNode(v_threshold=0.75, strict_firing=True),
        neurons.LIFNode(tau=2.0, decay_input=False, v_threshold=0.75, strict_firing=True),
    ):
        fc = layers.Linear(10, 6).double()
        fc.weight.data.copy_(weight)
        fc.bias.data.copy_(bias)
        fixed = import_netx(export_netx(torch.nn.Sequential(fc, node), tmp_path / "b.net", (10,)))
        assert fixed[1].bias_mant.flatten().tolist() == [-32, -3, 0, 5, 16, 64]
        with torch.no_grad():
            spikes = node(fc(x.double()))
        assert 0.05 < float(spikes.mean()) < 0.6
        assert torch.equal(fixed(x.long()).double(), spikes)
    fc.bias.data[0] = -64.01  # round(64 b) = -4097: beyond the 13-bit mantissa
    with pytest.raises(ConfigurationError, match=r"bias mantissa round\(64 b\) holds"):
        export_netx(torch.nn.Sequential(fc, neurons.IFNode()), tmp_path / "c.net", (10,))


def test_netx_parts_fold_pooling_and_cut_the_host_parts():
    from spikeflow.interop.export_run import netx_parts, netx_problems

    torch.manual_seed(7)
    net = torch.nn.Sequential(
        layers.Conv2d(1, 3, 3, padding=1),
        neurons.IFNode(v_threshold=0.5, strict_firing=True),
        layers.AvgPool2d(2, 2),  # 7x7 -> 3x3: the last row and column are dropped
        layers.Flatten(),
        layers.Linear(27, 8),
        neurons.IFNode(v_threshold=0.5, strict_firing=True),
        layers.Linear(8, 2, bias=False),
    ).double()
    parts = netx_parts(net, (1, 7, 7), spiking_input=False)
    assert [type(m).__name__ for m in parts.encoder] == ["Conv2d", "IFNode"]
    assert [type(m).__name__ for m in parts.chip] == ["Flatten", "Linear", "IFNode"]
    assert [type(m).__name__ for m in parts.readout] == ["Linear"]
    assert parts.input_shape == (3, 7, 7) and parts.chip[1].in_features == 147
    assert netx_problems(parts.chip) == []
    x = torch.rand(5, 4, 1, 7, 7, dtype=torch.float64)
    with torch.no_grad():
        expected = net(x)
        reset_net(net)
        got = parts.readout(parts.chip(parts.encoder(x)))
    assert expected.abs().sum() > 0
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
    # spikes in: the first layer goes to the chip too
    assert [type(m).__name__ for m in netx_parts(net, (1, 7, 7), True).chip][:2] == [
        "Conv2d",
        "IFNode",
    ]


def test_export_errors_name_the_module(tmp_path):
    path = tmp_path / "x.net"
    cases = [
        (torch.nn.Sequential(layers.Linear(4, 3), _cuba()), "has a bias"),
        (
            torch.nn.Sequential(layers.Flatten(), layers.Linear(4, 3, bias=False), _cuba()),
            "starts with a Flatten",
        ),
        (torch.nn.Sequential(layers.Linear(4, 3, bias=False)), "must be followed by"),
        (
            torch.nn.Sequential(
                layers.Linear(4, 3, bias=False),
                neurons.ParametricLIFNode(init_tau=(1.5, 8.0), shape=3),
            ),
            r"module 1 \(ParametricLIFNode\): 3 learned time constants",
        ),
        (
            torch.nn.Sequential(
                layers.Linear(4, 3, bias=False), neurons.ParametricLIFNode(v_reset=None)
            ),
            r"module 1 \(ParametricLIFNode\): v_reset=None \(Loihi resets the voltage to 0\)",
        ),
        (
            torch.nn.Sequential(layers.Linear(4, 3, bias=False), neurons.LIFNode()),
            "module 1: this LIFNode has no CUBA equivalent: decay_input=True",
        ),
        (
            torch.nn.Sequential(layers.Linear(4, 3, bias=False), neurons.IFNode(v_reset=None)),
            "module 1: this IFNode has no CUBA equivalent: v_reset=None",
        ),
        (
            torch.nn.Sequential(layers.Linear(4, 3, bias=False), neurons.IFNode(v_threshold=0.01)),
            "module 1: v_threshold=0.01 gives vThMant=0.64",
        ),
        (
            torch.nn.Sequential(layers.Linear(4, 3, bias=False)),
            "must be followed by .*got nothing",
        ),
        (
            torch.nn.Sequential(layers.Linear(4, 3, bias=False), neurons.CubaLIFNode(2.0, 2.0)),
            "module 1: .*r='tau_syn\\*tau_mem'",
        ),
        (
            torch.nn.Sequential(layers.MaxPool2d(2)),
            r"module 0 .*Linear or Conv2d.*AvgPool2d.*got MaxPool2d \(netx has no max pooling\)",
        ),
        (
            torch.nn.Sequential(
                layers.Linear(4, 3, bias=False), _cuba(), layers.AxonalDelay(3, 80, init=70.0)
            ),
            "at most 62",
        ),
    ]
    for model, match in cases:
        with pytest.raises(ConfigurationError, match=match):
            export_netx(model, path, (4,))
    with pytest.raises(ShapeError, match="takes 4 inputs, the previous layer gives 5"):
        export_netx(torch.nn.Sequential(layers.Linear(4, 3, bias=False), _cuba()), path, (5,))
    with pytest.raises(ShapeError, match="put a Flatten before it"):
        model = torch.nn.Sequential(
            layers.Conv2d(1, 2, 3, bias=False), _cuba(), layers.Linear(8, 3, bias=False), _cuba()
        )
        export_netx(model, path, (1, 4, 4))
    with pytest.raises(ConfigurationError, match="input_shape must be"):
        export_netx(torch.nn.Sequential(layers.Linear(4, 3, bias=False), _cuba()), path, (2, 2))
    assert not path.exists() and not list(tmp_path.iterdir())
    with pytest.raises(FileNotFoundError, match=r"cannot write .*a\.net: the folder .*none"):
        export_netx(_conv_net(), tmp_path / "none" / "a.net", (2, 8, 8))


def test_export_is_atomic_and_needs_h5py(tmp_path, monkeypatch):
    path = tmp_path / "x.net"
    path.write_bytes(b"earlier")
    net = torch.nn.Sequential(layers.Linear(4, 3, bias=False), _cuba())
    import spikeflow.interop.netx as netx

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(netx, "_write_group", fail)
    with pytest.raises(OSError, match="disk full"):
        export_netx(net, path, (4,))
    assert path.read_bytes() == b"earlier" and [p.name for p in tmp_path.iterdir()] == ["x.net"]
    monkeypatch.undo()
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(MissingExtraError, match=r"spikeflow\[loihi\]"):
        export_netx(net, path, (4,))
    with pytest.raises(MissingExtraError, match="h5py"):
        import_netx(path)


def test_import_errors_name_the_file_and_dataset(tmp_path):
    net = torch.nn.Sequential(layers.Linear(4, 3, bias=False), _cuba())
    good = export_netx(net, tmp_path / "good.net", (4,))

    def broken(edit):
        path = tmp_path / "bad.net"
        path.write_bytes(good.read_bytes())
        with h5py.File(path, "a") as f:
            edit(f)
        return path

    def retype(kind):
        def edit(f):
            del f["layer/1/type"]
            f["layer/1"].create_dataset("type", (1,), "S10", [kind])

        return edit

    cases = [
        (retype(b"concat"), "layer/1/type.*'concat' is not supported"),
        (retype(b"pool"), "layer/1.*pool layer on an input of shape"),
        (lambda f: f["layer/1/weight"].__setitem__((0, 0), 0.5), "layer/1/weight.*integers"),
        (lambda f: f.__delitem__("layer/1/neuron/iDecay"), "neuron/iDecay'.*missing"),
        (lambda f: f["layer/1/neuron/vThMant"].write_direct(np.array(-1)), "vth must be"),
        (lambda f: f.__delitem__("layer/0"), "layer/0'.*missing"),
        (lambda f: f["layer/1/neuron"].create_dataset("messageBits", data=3), "graded"),
    ]
    for edit, match in cases:
        with pytest.raises(DataFormatError, match=match) as info:
            import_netx(broken(edit))
        assert "bad.net" in str(info.value)
    (tmp_path / "junk.net").write_bytes(b"not hdf5")
    with pytest.raises(DataFormatError, match=r"junk\.net: not a readable HDF5"):
        import_netx(tmp_path / "junk.net")


def test_a_slice_of_the_network_takes_the_shape_its_first_layer_receives():
    torch.manual_seed(3)
    fixed = NetxNetwork(
        (2, 8, 8),
        LoihiConv2d(torch.randint(-40, 60, (4, 2, 3, 3)), stride=(2, 1), padding=(1, 0)),
        LoihiCubaLIFNode(1023, 512, 20),
        layers.AxonalDelay(4, 62, init=[0.0, 1.0, 2.0, 3.0], learnable=False, interpolate=False),
        layers.Flatten(),
        LoihiDense(torch.randint(-30, 50, (5, 96))),
        LoihiCubaLIFNode(1023, 512, 30),
    )
    x = (torch.rand(9, 3, 2, 8, 8) < 0.4).to(torch.int64)
    inputs = [x]
    for layer in fixed:
        inputs.append(layer(inputs[-1]))
    assert inputs[-1].any()
    for a in range(len(fixed)):
        tail = fixed[a:]
        assert tail.input_shape == tuple(inputs[a].shape[2:]), a
        assert torch.equal(tail(inputs[a]), inputs[-1]), a
        assert torch.equal(fixed[: a + 1](x), inputs[a + 1]), a
    # wide unsigned spikes are integers: the same output as int64
    for dtype in (torch.uint16, torch.uint32, torch.uint64):
        assert torch.equal(fixed(x.to(dtype)), inputs[-1]), dtype
    with pytest.raises(DTypeError, match=r"integer tensor of spikes.*unsigned.*float32"):
        fixed(x.float())
    with pytest.raises(ConfigurationError, match="step 1"):
        fixed[::2]
    with pytest.raises(ConfigurationError, match="cannot slice after a ReLU"):
        NetxNetwork((4,), torch.nn.ReLU(), LoihiDense(torch.ones(2, 4, dtype=torch.int64)))[1:]


def test_quantized_weights_export_only_on_lavas_grid_and_quantized_inputs_not(tmp_path):
    # Both were exported without a word: the input unrounded, and LSQ's levels k·s
    # rounded again onto Lava's grid (159 of 200 weights moved to other values).
    from spikeflow import quant

    torch.manual_seed(5)
    x = torch.rand(30, 4, 10) < 0.4

    def net() -> torch.nn.Sequential:
        fc = layers.Linear(10, 6, bias=False).double()
        return torch.nn.Sequential(fc, neurons.IFNode(v_threshold=0.75, strict_firing=True))

    off = net()
    quant.apply_weight_quantization(off, 4, method="lsq")
    with pytest.raises(ConfigurationError, match=r"module 0 .*\d+ of 60 are not on Lava's grid"):
        export_netx(off, tmp_path / "n.net", (10,))
    quant.apply_input_quantization(off, 4, step=1.0)
    with pytest.raises(ConfigurationError, match="the inputs of 0 are quantized"):
        export_netx(off, tmp_path / "n.net", (10,))
    on = net()  # a step of 2/64: the levels k·s are Lava's integers, exported as they are
    quant.apply_weight_quantization(on, 4, method="lsq", per_channel=False)
    on[0].parametrizations.weight[0].step.data.fill_(1 / 16)
    fixed = import_netx(export_netx(on, tmp_path / "n.net", (10,)))
    k, _ = quant.integer_weights(on[0])
    assert torch.equal(torch.as_tensor(fixed[0].weight).long(), 4 * k.long())
    with torch.no_grad():
        spikes = on(x.double())
    assert 0.05 < float(spikes.mean()) < 0.5
    assert torch.equal(fixed(x.long()).double(), spikes)
