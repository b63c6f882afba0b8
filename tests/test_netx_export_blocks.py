"""``export_netx`` of Lava-DL's pool / unpool / convT / average layers, complex synapses
and ALIF / RF / RF-IZ / ADRF neurons: the round trips ``import(export(net))`` (the same
spikes at every step, the same integer parameters) and ``export(import(file))`` (the
same datasets as the Lava-DL-layout files of ``test_netx_import_blocks.py``), and the
errors for what netx cannot hold."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from spikeflow.errors import ConfigurationError, DataFormatError, ShapeError
from spikeflow.interop import (
    LoihiAdaptiveResonatorNode,
    LoihiALIFNode,
    LoihiAverage,
    LoihiComplexSynapse,
    LoihiConv2d,
    LoihiConvTranspose2d,
    LoihiDense,
    LoihiResonatorNode,
    LoihiSumPool,
    LoihiUnpool,
    export_netx,
    import_netx,
)
from spikeflow.interop.netx_layers import NetxNetwork
from spikeflow.layers import AxonalDelay, Flatten
from spikeflow.quant import LoihiCubaLIFNode
from test_netx_import_blocks import _nmnist_spikes, blocks_file, resonator_file


def _datasets(path):
    """Every dataset of a file by name, as numpy values (strings decoded)."""
    found = {}

    def visit(name, item):
        if isinstance(item, h5py.Dataset):
            value = item[()]
            if isinstance(value, np.ndarray) and value.dtype.kind == "S":
                value = value.reshape(-1)[0]
            if isinstance(value, bytes):
                value = value.decode("ascii")
            found[name] = value

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return found


def _assert_same_datasets(written, built):
    a, b = _datasets(written), _datasets(built)
    assert sorted(a) == sorted(b)
    for name in a:
        if isinstance(a[name], str) or isinstance(b[name], str):
            assert a[name] == b[name], name
        else:
            x, y = np.asarray(a[name]), np.asarray(b[name])
            assert x.shape == y.shape and np.array_equal(x, y), name


def _buffers(net):
    """The integer parameters (buffers) and settings of every module, by name."""
    out = {name: value for name, value in net.named_buffers()}
    for name, module in net.named_modules():
        for key in ("stride", "padding", "dilation", "groups", "v_th_mant", "v_th_step"):
            if hasattr(module, key):
                out[f"{name}.{key}"] = getattr(module, key)
    return out


def _assert_same_network(a, b):
    assert [type(m) for m in a] == [type(m) for m in b]
    assert a.input_shape == b.input_shape
    pa, pb = _buffers(a), _buffers(b)
    assert sorted(pa) == sorted(pb)
    for name in pa:
        if isinstance(pa[name], torch.Tensor):
            assert torch.equal(pa[name], pb[name]), name
        else:
            assert pa[name] == pb[name], name


def _steps(net, x):
    """Each module's output for time-major integer input (a prefix at a time)."""
    outputs = []
    for upto in range(1, len(net) + 1):
        out = net[:upto](x)
        outputs.append(out)
    return outputs


def _assert_same_spikes(a, b, x):
    for index, (got, want) in enumerate(zip(_steps(a, x), _steps(b, x))):
        if isinstance(want, tuple):
            assert all(torch.equal(g, w) for g, w in zip(got, want)), f"module {index}"
        else:
            assert torch.equal(got, want), f"module {index}"


def test_export_of_imported_block_file_writes_the_same_datasets(tmp_path):
    """conv CUBA, pool ALIF, unpool CUBA, convT ALIF (per-channel decays), average:
    export(import(file)) holds the file's datasets, value by value."""
    built = tmp_path / "blocks.net"
    blocks_file(built)
    written = export_netx(import_netx(built), tmp_path / "again.net", (2, 34, 34))
    _assert_same_datasets(written, built)


@pytest.mark.parametrize("kind", ["RF_IZHIKEVICH", "RF_PHASE", "ADRF_PHASE"])
def test_export_of_imported_resonator_file_writes_the_same_datasets(tmp_path, kind):
    """complex conv -> resonators -> flatten -> complex dense (per-neuron decays)."""
    built = tmp_path / "rf.net"
    resonator_file(built, kind)
    written = export_netx(import_netx(built), tmp_path / "again.net", (2, 34, 34))
    _assert_same_datasets(written, built)


def _grid(generator, shape, low, high):
    """Integer weights on Lava-DL's 8-bit grid (even values in [low, high))."""
    return 2 * torch.randint(low // 2, high // 2, shape, generator=generator)


def test_block_network_round_trips_with_the_same_spikes_on_real_nmnist(tmp_path):
    """A network built from the modules (other settings than the import test's: a pool
    with stride 1 and padding, a dilated unpool, a grouped convT with stride 2, a delay
    after the ALIF pool) round-trips: the same integer parameters, the same spikes at
    every step of every layer on real N-MNIST."""
    g = torch.Generator().manual_seed(5)
    alif = LoihiALIFNode(torch.tensor([300, 900, 1500, 2500, 800, 100]), 700, 200, 600, 40, 30)
    net = NetxNetwork(
        (2, 34, 34),
        LoihiConv2d(_grid(g, (6, 2, 3, 3), -30, 110), stride=1, padding=1),
        LoihiCubaLIFNode.from_netx(1024, 256, 80, bias=torch.arange(6).reshape(6, 1, 1) * 4),
        LoihiSumPool(torch.tensor([[28, 20], [20, 28]]), stride=2),
        alif,
        AxonalDelay(
            6, 62, init=torch.tensor([0.0, 1, 2, 3, 5, 8]), learnable=False, interpolate=False
        ),
        LoihiUnpool(torch.tensor([[40, 30], [30, 40]]), stride=2, dilation=1),
        LoihiCubaLIFNode.from_netx(2048, 512, 70),
        LoihiConvTranspose2d(_grid(g, (6, 4, 3, 3), -80, 90), stride=2, padding=1, groups=2),
        LoihiALIFNode(1024, torch.arange(1, 9) * 400, 300, 800, 50, 20),
        LoihiAverage(4),
    )
    path = export_netx(net, tmp_path / "net.net", (2, 34, 34))
    back = import_netx(path)
    _assert_same_network(back, net)
    x = _nmnist_spikes(steps=10).movedim(-1, 0).to(torch.int64)  # [T, N, 2, 34, 34]
    _assert_same_spikes(back, net, x)
    spikes = net[:9](x)
    assert 0 < float(spikes.float().mean()) < 0.5  # the last layer spikes, not saturated


@pytest.mark.parametrize("kind", ["RF_IZHIKEVICH", "RF_PHASE", "ADRF_PHASE"])
def test_resonator_network_round_trips_with_the_same_spikes_on_real_nmnist(tmp_path, kind):
    """complex conv -> resonators -> complex pool -> resonators (per-channel decays)
    -> flatten -> complex dense -> resonators: import(export(net)) equals net."""
    g = torch.Generator().manual_seed(6)

    def node(sin, cos, theta):
        if kind == "ADRF_PHASE":
            return LoihiAdaptiveResonatorNode(sin, cos, 400, 700, theta, 150)
        return LoihiResonatorNode(sin, cos, theta, izhikevich=kind == "RF_IZHIKEVICH")

    theta = 2 if kind == "RF_IZHIKEVICH" else 1

    def complex_(make):
        return LoihiComplexSynapse(make(), make())

    net = NetxNetwork(
        (2, 34, 34),
        complex_(lambda: LoihiConv2d(_grid(g, (6, 2, 5, 5), -60, 110), stride=2)),
        node(2838, 2838, 90 * theta),
        complex_(lambda: LoihiSumPool(_grid(g, (3, 3), 10, 60))),
        node(torch.randint(1500, 3000, (6,), generator=g), 2000, 100 * theta),
        Flatten(),
        complex_(lambda: LoihiDense(_grid(g, (20, 6 * 5 * 5), -30, 40))),
        node(torch.randint(1500, 3000, (20,), generator=g), 1800, 60 * theta**3),
    )
    path = export_netx(net, tmp_path / "rf.net", (2, 34, 34))
    back = import_netx(path)
    _assert_same_network(back, net)
    x = _nmnist_spikes(steps=16).movedim(-1, 0).to(torch.int64)
    _assert_same_spikes(back, net, x)
    for upto in (2, 4, 7):  # every resonator layer spikes, none saturates
        assert 0 < float(net[:upto](x).float().mean()) < 0.6, upto


def test_float_conv_transpose_exports_as_lava_dl_quantises_it(tmp_path):
    """A float nn.ConvTranspose2d (bias-free, no output padding) is written with
    Lava-DL's export weights clamp(2 round(32 w), -256, 254); the imported convT sums
    are 64 times PyTorch's on those weights."""
    torch.manual_seed(0)
    conv_t = torch.nn.ConvTranspose2d(3, 5, 3, stride=2, padding=1, dilation=1, bias=False)
    with torch.no_grad():
        conv_t.weight.uniform_(-3, 3)  # some beyond the 8-bit range: clamped
    model = torch.nn.Sequential(conv_t, LoihiCubaLIFNode.from_netx(4096, 4096, 100))
    back = import_netx(export_netx(model, tmp_path / "t.net", (3, 9, 9)))
    want = torch.clamp(2 * torch.round(32 * conv_t.weight.detach()), -256, 254)
    assert torch.equal(back[0].weight, want.to(torch.int64))
    assert back[0].stride == (2, 2) and back[0].padding == (1, 1)
    x = (torch.rand(4, 2, 3, 9, 9) < 0.5).to(torch.int64)
    ref = F.conv_transpose2d(x.flatten(0, 1).double(), want.double() / 64, stride=2, padding=1)
    assert torch.equal(back[0](x).double(), 64 * ref.reshape(4, 2, 5, 17, 17))


def test_float_avg_pool_exports_as_the_lava_dl_pool_that_computes_it(tmp_path):
    """conv -> CUBA -> nn.AvgPool2d(2) -> CUBA on 2x34x34: the pool is written as Lava-DL's
    pool with the kernel 64/4 = 16 (the mean 1/4 on its weight grid), whose sums on
    real N-MNIST spikes are 64 times PyTorch's average pooling; export(import(file))
    writes the same file."""
    torch.manual_seed(3)
    conv = torch.nn.Conv2d(2, 4, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.randint(-20, 40, conv.weight.shape) / 32)

    def cuba():
        return LoihiCubaLIFNode.from_netx(1024, 256, 80)

    model = torch.nn.Sequential(conv, cuba(), torch.nn.AvgPool2d(2), cuba())
    path = export_netx(model, tmp_path / "avg.net", (2, 34, 34))
    back = import_netx(path)
    assert isinstance(back[2], LoihiSumPool) and back[2].stride == (2, 2)
    assert torch.equal(back[2].weight, torch.full((2, 2), 16))
    x = _nmnist_spikes(steps=8).movedim(-1, 0).to(torch.int64)  # [T, N, 2, 34, 34]
    spikes = back[:2](x)
    assert 0 < float(spikes.float().mean()) < 0.5
    want = 64 * F.avg_pool2d(spikes.flatten(0, 1).double(), 2)
    assert torch.equal(back[2](spikes).double(), want.reshape(*spikes.shape[:3], 17, 17))
    _assert_same_datasets(export_netx(back, tmp_path / "again.net", (2, 34, 34)), path)
    for pool, shape, match in (
        (torch.nn.AvgPool2d(3), (2, 9, 9), r"the window mean 1/9 is not on Lava-DL's weight"),
        (torch.nn.AvgPool2d(2), (2, 9, 8), r"\[2, 9, 8\] whose height and width are not"),
        (torch.nn.AvgPool2d(2, stride=1), (2, 8, 8), r"stride=\(1, 1\).*stride = kernel"),
        (torch.nn.AvgPool2d(2, padding=1), (2, 8, 8), r"padding=1.*no padding"),
        (torch.nn.AvgPool2d(2, divisor_override=2), (2, 8, 8), r"divisor_override=2"),
        (torch.nn.AvgPool2d(8), (2, 8, 8), r"the window mean 1/64 is not on Lava-DL's weight"),
    ):
        with pytest.raises(ConfigurationError, match=r"module 0 \(AvgPool2d\).*" + match):
            export_netx(torch.nn.Sequential(pool, cuba()), tmp_path / "bad.net", shape)


def test_float_net_with_avg_pool_gives_its_own_spikes_through_the_file(tmp_path):
    """The factor 64 of the pool's kernel is the weights' scale, undone by the
    thresholds' (vThMant = 64 θ): a float conv -> IF -> AvgPool2d(2) -> IF (or LIF at
    tau = 2), on Lava-DL's grid, gives through the file the float network's own spikes
    at both neuron layers, spike for spike, on real N-MNIST."""
    from spikeflow import layers, neurons
    from spikeflow.functional import reset_net

    torch.manual_seed(4)
    conv = layers.Conv2d(2, 4, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.randint(-20, 40, conv.weight.shape) / 32)  # on the grid
    x = _nmnist_spikes(steps=8).movedim(-1, 0)  # [T, N, 2, 34, 34]
    for last in (
        neurons.IFNode(v_threshold=0.75, strict_firing=True),
        neurons.LIFNode(tau=2.0, decay_input=False, v_threshold=0.5, strict_firing=True),
    ):
        net = torch.nn.Sequential(
            conv, neurons.IFNode(v_threshold=1.0, strict_firing=True), layers.AvgPool2d(2), last
        ).double()
        back = import_netx(export_netx(net, tmp_path / "float_avg.net", (2, 34, 34)))
        assert torch.equal(back[2].weight, torch.full((2, 2), 16))
        for upto in (2, 4):
            reset_net(net)
            with torch.no_grad():
                want = net[:upto](x)
            assert 0.02 < float(want.mean()) < 0.5
            assert torch.equal(back[:upto](x.to(torch.int64)).double(), want), (last, upto)


def test_what_netx_cannot_hold_is_refused_naming_the_module(tmp_path):
    path = tmp_path / "bad.net"
    dense = LoihiDense(torch.full((4, 6), 2, dtype=torch.int64))
    alif = LoihiALIFNode(1024, 512, 0, 0, 60, 20)
    rf = LoihiResonatorNode(2000, 2000, 60, izhikevich=False)
    cuba = LoihiCubaLIFNode.from_netx(1024, 256, 80)
    cases = [
        (
            NetxNetwork((6,), dense, alif, LoihiAverage(2), Flatten()),
            ConfigurationError,
            r"module 2 \(LoihiAverage\) must be the last module",
        ),
        (
            NetxNetwork((6,), LoihiAverage(2)),
            ConfigurationError,
            "average layer before any synapse",
        ),
        (NetxNetwork((6,), dense, rf), ConfigurationError, r"a real synapse before module 1"),
        (
            NetxNetwork((6,), LoihiComplexSynapse(dense, dense), cuba),
            ConfigurationError,
            r"a complex synapse before module 1 \(LoihiCubaLIFNode\)",
        ),
        (
            NetxNetwork(
                (6,),
                LoihiComplexSynapse(
                    LoihiComplexSynapse(dense, dense), LoihiComplexSynapse(dense, dense)
                ),
                rf,
            ),
            ConfigurationError,
            r"module 0 \(LoihiComplexSynapse\): a complex synapse of complex synapses",
        ),
        (
            NetxNetwork((6,), LoihiDense(torch.full((4, 6), (1 << 24) + 1)), cuba),
            ConfigurationError,
            r"module 0 \(LoihiDense\).*2\^24",
        ),
        (
            NetxNetwork((6,), dense, LoihiALIFNode(torch.arange(3), 512, 0, 0, 60, 20)),
            ConfigurationError,
            r"module 1: 3 iDecay values for a layer of 4 channels",
        ),
        (
            NetxNetwork((2, 3, 4), LoihiSumPool(torch.ones(2, 2, dtype=torch.int64), 1), alif),
            ShapeError,
            r"module 0 \(LoihiSumPool\).*do not split into channels",
        ),
        (
            torch.nn.Sequential(torch.nn.ConvTranspose2d(2, 3, 3, 2, output_padding=1), cuba),
            ConfigurationError,
            r"module 0 \(ConvTranspose2d\).*a bias.*output_padding=\(1, 1\)",
        ),
        (
            NetxNetwork((6,), dense, alif, LoihiSumPool(torch.ones(2, 2, dtype=torch.int64))),
            ShapeError,
            r"module 2 \(LoihiSumPool\).*\[C, H, W\]",
        ),
    ]
    for model, error, match in cases:
        shape = model.input_shape if isinstance(model, NetxNetwork) else (2, 6, 6)
        with pytest.raises(error, match=match):
            export_netx(model, path, shape)
        assert not path.exists()


def test_concat_stays_refused_with_netx_s_reason(tmp_path):
    """netx's hdf5 reader raises NotImplementedError for 'concat' and its layer list
    names no inputs: the import refuses it naming the file and the field."""
    path = tmp_path / "concat.net"
    with h5py.File(path, "w") as f:
        g = f.create_group("layer/0")
        g.create_dataset("type", (1,), "S10", [b"concat"])
        g.create_dataset("shape", data=np.array([4]))
    match = r"concat.net.*layer/0/type.*NotImplementedError.*names no inputs"
    with pytest.raises(DataFormatError, match=match):
        import_netx(path)
