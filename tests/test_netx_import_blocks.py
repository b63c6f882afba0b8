"""``import_netx`` of Lava-DL's pool / unpool / convT / average layers, complex synapses
and ALIF / RF / RF-IZ / ADRF neurons.

The files are written here with h5py in the layout Lava-DL's blocks write
(``slayer/block/base.py`` ``export_hdf5`` of ``AbstractPool``, ``AbstractUnpool``,
``AbstractConvT``, ``AbstractAverage``; the neurons' ``device_params``). The imported
network's spikes are compared, step by step, with a float64 reference transcribed from
Lava-DL's own code, in its layout ``[N, C, H, W, T]`` and its float units (weights
``w / 64``, states ``2^12`` times finer): the synapses' ``forward`` (``synapse/layer.py``:
``Pool``, ``Unpool``, ``ConvTranspose`` as 3-d ops), ``_li_dynamics_fwd``,
``_ath_dynamics_fwd``, ``_res_dynamics_fwd``, ``_APTHDynamicsFwd`` and the spike rules
of ``neuron/{alif, rf, rf_iz, adrf}.py`` (``spike/complex.py``). CUBA layers use
``LoihiCubaLIFNode`` (checked against Lava's ``LIF`` in ``test_loihi_netx.py``).
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import require_shared_data
from spikeflow.errors import ConfigurationError, DataFormatError, DTypeError, ShapeError
from spikeflow.interop import (
    LoihiAdaptiveResonatorNode,
    LoihiALIFNode,
    LoihiAverage,
    LoihiComplexSynapse,
    LoihiConv2d,
    LoihiDense,
    LoihiResonatorNode,
    LoihiSumPool,
    import_netx,
)
from spikeflow.quant import LoihiCubaLIFNode

W_SCALE = 1 << 12  # a block's neuron s_scale: scale (64) * 64


# ---- Lava-DL's code, transcribed (NCHWT, float64 values in its units) ----------------


def rstz(x):
    """``int_utils.right_shift_to_zero(x, 12)``."""
    x_sign = 2 * (x > 0).to(x.dtype) - 1
    return x_sign * ((x_sign * x) >> 12)


def lava_pool(x, w, stride, padding, dilation):
    """``synapse.Pool.forward`` (weight ``[1, 1, kH, kW, 1]``)."""
    kh, kw = w.shape
    if x.shape[2] % kh != 0:
        x = torch.cat((x, torch.zeros(*x.shape[:2], x.shape[2] % kh, *x.shape[3:])), 2)
    if x.shape[3] % kw != 0:
        x = torch.cat((x, torch.zeros(*x.shape[:3], x.shape[3] % kw, x.shape[4])), 3)
    s = x.shape
    r = F.conv3d(
        x.reshape(s[0], 1, s[1] * s[2], s[3], s[4]),
        w.reshape(1, 1, kh, kw, 1),
        None,
        (*stride, 1),
        (*padding, 0),
        (*dilation, 1),
    )
    return r.reshape(r.shape[0], s[1], -1, r.shape[3], r.shape[4])


def lava_unpool(x, w, stride, padding, dilation):
    """``synapse.Unpool.forward``."""
    s = x.shape
    r = F.conv_transpose3d(
        x.reshape(s[0], 1, -1, s[3], s[4]),
        w.reshape(1, 1, *w.shape, 1),
        None,
        (*stride, 1),
        (*padding, 0),
        0,
        1,
        (*dilation, 1),
    )
    return r.reshape(r.shape[0], s[1], -1, r.shape[3], r.shape[4])


def lava_conv_t(x, w, stride, padding, dilation, groups):
    """``synapse.ConvTranspose.forward`` (weight ``[in, out/groups, kH, kW, 1]``)."""
    return F.conv_transpose3d(
        x, w[..., None], None, (*stride, 1), (*padding, 0), 0, groups, (*dilation, 1)
    )


def lava_conv(x, w, stride=(1, 1), padding=(0, 0)):
    return F.conv3d(x, w[..., None], None, (*stride, 1), (*padding, 0))


def li_fwd(inp, decay):
    """``_li_dynamics_fwd`` without a threshold (ALIF's current and voltage)."""
    old = torch.zeros(inp.shape[:-1], dtype=torch.int64)
    keep = (1 << 12) - decay
    out = torch.zeros_like(inp)
    for n in range(inp.shape[-1]):
        new = rstz(old * keep) + (W_SCALE * inp[..., n]).to(torch.int64)
        old = new
        out[..., n] = new / W_SCALE
    return out


def ath_fwd(inp, ref_decay, th_decay, th_step, th0):
    """``_ath_dynamics_fwd`` from the initial state (threshold θ0, refractory 0)."""
    th_old = torch.full(inp.shape[:-1], int(th0 * W_SCALE), dtype=torch.int64)
    ref_old = torch.zeros(inp.shape[:-1], dtype=torch.int64)
    th_keep, ref_keep = (1 << 12) - th_decay, (1 << 12) - ref_decay
    threshold, refractory = torch.zeros_like(inp), torch.zeros_like(inp)
    th_scale, th0 = int(th_step * W_SCALE), int(th0 * W_SCALE)
    for n in range(inp.shape[-1]):
        ref_new = rstz(ref_old * ref_keep)
        th_new = rstz((th_old - th0) * th_keep) + th0
        out_new = (W_SCALE * inp[..., n]).to(torch.int64)
        spike = out_new >= th_new + ref_new
        th_old = th_new + th_scale * spike
        ref_old = ref_new + 2 * th_new * spike
        threshold[..., n] = th_new / W_SCALE
        refractory[..., n] = ref_new / W_SCALE
    return threshold, refractory


def alif_ref(z, p, channel_shape):
    """``alif.Neuron.forward``: dynamics, then ``Spike(voltage, threshold + refractory)``."""

    def d(name):
        value = torch.as_tensor(p[name])
        return value.reshape(channel_shape) if value.numel() > 1 else value

    theta, step = p["vThMant"] / 64, p["vThStep"] / 64  # neuron_params(): / scale
    current = li_fwd(z, d("iDecay"))
    voltage = li_fwd(current, d("vDecay"))
    threshold, refractory = ath_fwd(voltage, d("refDecay"), d("thDecay"), step, theta)
    return (voltage >= threshold + refractory).to(torch.float64)


def res_fwd(re_in, im_in, sin, cos, threshold):
    """``_res_dynamics_fwd`` (``threshold < 0``: no reset)."""
    re_old = torch.zeros(re_in.shape[:-1], dtype=torch.int64)
    im_old = torch.zeros_like(re_old)
    real, imag = torch.zeros_like(re_in), torch.zeros_like(im_in)
    threshold = threshold * W_SCALE
    for n in range(re_in.shape[-1]):
        re_new = rstz(cos * re_old) - rstz(sin * im_old) + (W_SCALE * re_in[..., n]).to(torch.int64)
        im_new = rstz(sin * re_old) + rstz(cos * im_old) + (W_SCALE * im_in[..., n]).to(torch.int64)
        if threshold >= 0:
            spike = (im_new >= threshold).to(torch.int64)
            re_old = (1 - spike) * re_new
            im_old = spike * (int(threshold) - 1) + (1 - spike) * im_new
        else:
            re_old, im_old = re_new, im_new
        real[..., n] = re_new / W_SCALE
        imag[..., n] = im_new / W_SCALE
    return real, imag


def phase_spike(real, imag, threshold):
    """``spike.complex.Spike.forward`` (binary, ``imag_last = 0``)."""
    imag_del = torch.zeros_like(imag)
    imag_del[..., 1:] = imag[..., :-1]
    return ((real >= threshold) * (imag_del < 0) * (imag >= 0)).to(torch.float64)


def apth_fwd(re_in, im_in, ref_decay, th_decay, th_step, th0):
    """``_APTHDynamicsFwd`` (ADRF's threshold), ``im_state = 0``."""
    th_old = torch.full(re_in.shape[:-1], int(th0 * W_SCALE), dtype=torch.int64)
    ref_old = torch.zeros_like(th_old)
    th_keep, ref_keep = (1 << 12) - th_decay, (1 << 12) - ref_decay
    threshold, refractory = torch.zeros_like(re_in), torch.zeros_like(re_in)
    th_scale, th0 = int(th_step * W_SCALE), int(th0 * W_SCALE)
    im_old = torch.zeros_like(th_old)
    for n in range(re_in.shape[-1]):
        ref_new = rstz(ref_old * ref_keep)
        th_new = rstz((th_old - th0) * th_keep) + th0
        real_new = (W_SCALE * re_in[..., n]).to(torch.int64)
        im_new = (W_SCALE * im_in[..., n]).to(torch.int64)
        spike = (real_new >= th_new + ref_new) * (im_new >= 0) * (im_old < 0)
        th_old = th_new + th_scale * spike
        ref_old = ref_new + 2 * th_new * spike
        threshold[..., n] = th_new / W_SCALE
        refractory[..., n] = ref_new / W_SCALE
        im_old = (W_SCALE * im_in[..., n]).to(torch.int64)
    return threshold, refractory


def rf_ref(z_re, z_im, p, kind):
    """``rf`` / ``rf_iz`` / ``adrf`` ``Neuron.forward`` on the complex synapse's sums."""
    theta = p["vThMant"] / 64
    sin, cos = torch.as_tensor(p["sinDecay"]), torch.as_tensor(p["cosDecay"])
    if kind == "RF_IZHIKEVICH":
        _, imag = res_fwd(z_re, z_im, sin, cos, theta)
        return (imag >= theta).to(torch.float64)  # spike.Spike on imag
    real, imag = res_fwd(z_re, z_im, sin, cos, -1)
    if kind == "RF_PHASE":
        return phase_spike(real, imag, theta)
    th, ref = apth_fwd(real, imag, p["refDecay"], p["thDecay"], p["vThStep"] / 64, theta)
    return phase_spike(real, imag, th + ref)


def cuba_ref(z, p):
    """A CUBA layer as netx builds it (Lava's LIF, ``LoihiCubaLIFNode``): NCHWT."""
    node = LoihiCubaLIFNode.from_netx(p["iDecay"], p["vDecay"], p["vThMant"])
    a = (z * 64).round().to(torch.int64).movedim(-1, 0)
    return node(a).movedim(0, -1).to(torch.float64)


# ---- writing files in Lava-DL's layout --------------------------------------------------


def _type(group, kind):
    group.create_dataset("type", (1,), "S10", [kind.encode("ascii")])


def _neuron(group, params):
    for key, value in params.items():
        group.create_dataset(f"neuron/{key}", data=value)


CUBA = {"type": "CUBA", "iDecay": 1024, "vDecay": 256, "vThMant": 80, "refDelay": 1}
CUBA.update(gradedSpike=False)


def _kernel_layer(group, kind, shape, weight, stride, padding, dilation, neuron, extra=()):
    _type(group, kind)
    group.create_dataset("shape", data=np.array(shape))
    kernel = (weight[0] if isinstance(weight, tuple) else weight).shape[-2:]
    group.create_dataset("kernelSize", data=np.array(kernel))
    for name, value in (("stride", stride), ("padding", padding), ("dilation", dilation)):
        group.create_dataset(name, data=np.array(value))
    for name, value in extra:
        group.create_dataset(name, data=value)
    if isinstance(weight, tuple):
        group.create_dataset("weight/real", data=weight[0])
        group.create_dataset("weight/imag", data=weight[1])
    else:
        group.create_dataset("weight", data=weight)
    _neuron(group, neuron)


def _grid(rng, shape, low=-96, high=128):
    """Integer weights on Lava-DL's 8-bit grid (even values)."""
    return 2 * rng.integers(low // 2, high // 2, size=shape)


def _nmnist_spikes(steps=12, samples=2):
    """Real N-MNIST test samples as binary spikes ``[N, 2, 34, 34, T]`` (float64)."""
    from spikeflow.data import to_frames
    from spikeflow.data.io.atis_bin import read_atis_bin

    root = require_shared_data("nmnist-small", "Test")
    files = sorted(root.glob("*/*.bin"))[:samples]
    frames = np.stack([to_frames(read_atis_bin(f), steps) for f in files])  # [N, T, 2, H, W]
    return torch.as_tensor(frames > 0, dtype=torch.float64).permute(0, 2, 3, 4, 1)


def _run(net, spikes_nchwt):
    """The imported network on ``[N, C, H, W, T]`` spikes, back in NC..T."""
    out = net(spikes_nchwt.movedim(-1, 0).to(torch.int64))
    return out.movedim(0, -1)


ALIF = {
    "type": "ALIF",
    "iDecay": 1024,
    "vDecay": 512,
    "thDecay": 300,
    "refDecay": 800,
    "vThMant": 60,
    "vThStep": 20,
    "refDelay": 1,
    "gradedSpike": False,
}


def blocks_file(path):
    """The file of the conv / pool / unpool / convT / average test (Lava-DL's layout);
    returns its integer weights and the convT layer's per-channel ALIF parameters."""
    rng = np.random.default_rng(0)
    w_conv = _grid(rng, (8, 2, 3, 3), -40, 120)
    w_pool = np.full((1, 1, 2, 2), 2 * 13)  # Lava-DL's pool weight: weight_scale on its grid
    w_unpool = np.full((1, 1, 2, 2), 2 * 20)
    w_conv_t = _grid(rng, (8, 4, 3, 3), -90, 70)
    alif_ch = dict(
        ALIF, iDecay=np.array([500, 1024, 2048, 4096]), thDecay=np.array([0, 100, 300, 4096])
    )
    with h5py.File(path, "w") as f:
        layer = f.create_group("layer")
        _type(layer.create_group("0"), "input")
        layer["0"].create_dataset("shape", data=np.array([2, 34, 34]))
        _kernel_layer(
            layer.create_group("1"),
            "conv",
            [8, 34, 34],
            w_conv,
            [1, 1],
            [1, 1],
            [1, 1],
            CUBA,
            extra=(("groups", 1), ("inChannels", 2), ("outChannels", 8)),
        )
        _kernel_layer(
            layer.create_group("2"), "pool", [8, 17, 17], w_pool, [2, 2], [0, 0], [1, 1], ALIF
        )
        _kernel_layer(
            layer.create_group("3"), "unpool", [8, 34, 34], w_unpool, [2, 2], [0, 0], [1, 1], CUBA
        )
        _kernel_layer(
            layer.create_group("4"),
            "convT",
            [4, 34, 34],
            w_conv_t,
            [1, 1],
            [1, 1],
            [1, 1],
            alif_ch,
            extra=(("groups", 1), ("inChannels", 8), ("outChannels", 4)),
        )
        _type(layer.create_group("5"), "average")
        layer["5"].create_dataset("shape", data=np.array([4, 1, 1]))
    return w_conv, w_pool, w_unpool, w_conv_t, alif_ch


def test_conv_pool_unpool_conv_t_average_on_real_nmnist_equal_lava_dl(tmp_path):
    """2x34x34 N-MNIST -> conv 8 CUBA -> sum pool 2x2 ALIF -> unpool 2x2 CUBA -> convT 4
    ALIF (per-channel decays) -> average over 4 groups: every layer's spikes equal the
    transcription's."""
    x = _nmnist_spikes()
    path = tmp_path / "blocks.net"
    w_conv, w_pool, w_unpool, w_conv_t, alif_ch = blocks_file(path)
    net = import_netx(path)
    assert isinstance(net[3], LoihiALIFNode) and isinstance(net[-1], LoihiAverage)

    t = lambda w: torch.as_tensor(w, dtype=torch.float64) / 64  # noqa: E731 (float weights)
    s1 = cuba_ref(lava_conv(x, t(w_conv), padding=(1, 1)), CUBA)
    s2 = alif_ref(lava_pool(s1, t(w_pool[0, 0]), (2, 2), (0, 0), (1, 1)), ALIF, (-1, 1, 1))
    s3 = cuba_ref(lava_unpool(s2, t(w_unpool[0, 0]), (2, 2), (0, 0), (1, 1)), CUBA)
    z4 = lava_conv_t(s3, t(w_conv_t), (1, 1), (1, 1), (1, 1), 1)
    s4 = alif_ref(z4, alif_ch, (-1, 1, 1))
    average = torch.mean(s4.reshape(s4.shape[0], 4, -1, s4.shape[-1]), dim=2)  # AbstractAverage

    for upto, want in ((2, s1), (4, s2), (6, s3), (8, s4)):
        got = _run(net[:upto], x)
        assert torch.equal(got.to(torch.float64), want), f"layers [:{upto}]"
        assert 0 < float(want.mean()) < 0.5, f"layers [:{upto}] must spike, not saturate"
    got = _run(net, x)
    assert got.dtype == torch.float64 and torch.equal(got, average)


def _complex_file(path, layers):
    with h5py.File(path, "w") as f:
        group = f.create_group("layer")
        _type(group.create_group("0"), "input")
        group["0"].create_dataset("shape", data=np.array([2, 34, 34]))
        for index, build in enumerate(layers, start=1):
            build(group.create_group(str(index)))


def resonator_file(path, kind):
    """The file of the complex conv -> flatten -> complex dense resonator test (Lava-DL's
    layout); returns the (real, imag) weights and the two layers' neuron fields."""
    rng = np.random.default_rng(1)
    conv = (_grid(rng, (6, 2, 5, 5), -40, 110), _grid(rng, (6, 2, 5, 5), -90, 90))
    dense = (_grid(rng, (20, 6 * 15 * 15), -20, 30), _grid(rng, (20, 6 * 15 * 15), -26, 26))
    # a period of 8 steps, 2% decay per step: 4096 * 0.98 * (sin, cos)(2π / 8)
    base = {"type": kind, "sinDecay": 2838, "cosDecay": 2838, "vThMant": 90, "gradedSpike": False}
    if kind == "RF_IZHIKEVICH":
        base["vThMant"] = 200
    if kind == "ADRF_PHASE":
        base.update(thDecay=400, refDecay=700, vThStep=150)
    first = dict(base)
    second = dict(
        base, sinDecay=rng.integers(1500, 3000, 20), cosDecay=rng.integers(1000, 2800, 20)
    )
    second["vThMant"] = 100 if kind != "RF_IZHIKEVICH" else 400

    def conv_layer(g):
        _kernel_layer(
            g,
            "conv",
            [6, 15, 15],
            conv,
            [2, 2],
            [0, 0],
            [1, 1],
            first,
            extra=(("groups", 1), ("inChannels", 2), ("outChannels", 6)),
        )

    def flatten(g):
        _type(g, "flatten")
        g.create_dataset("shape", data=np.array([6 * 15 * 15, 1, 1]))

    def dense_layer(g):
        _type(g, "dense")
        g.create_dataset("shape", data=np.array([20]))
        g.create_dataset("inFeatures", data=6 * 15 * 15)  # as Lava-DL's dense blocks
        g.create_dataset("outFeatures", data=20)
        g.create_dataset("weight/real", data=dense[0])
        g.create_dataset("weight/imag", data=dense[1])
        _neuron(g, second)

    _complex_file(path, [conv_layer, flatten, dense_layer])
    return conv, dense, first, second


@pytest.mark.parametrize("kind", ["RF_IZHIKEVICH", "RF_PHASE", "ADRF_PHASE"])
def test_complex_conv_and_dense_resonators_on_real_nmnist_equal_lava_dl(tmp_path, kind):
    """Complex conv (weight/real, weight/imag) -> resonators -> flatten -> complex dense
    (per-neuron decays) -> resonators, on real N-MNIST, equal the transcription."""
    x = _nmnist_spikes(steps=16)
    path = tmp_path / "rf.net"
    conv, dense, first, second = resonator_file(path, kind)
    net = import_netx(path)
    cls = LoihiAdaptiveResonatorNode if kind == "ADRF_PHASE" else LoihiResonatorNode
    assert isinstance(net[1], cls)

    t = lambda w: torch.as_tensor(w, dtype=torch.float64) / 64  # noqa: E731
    z = [lava_conv(x, t(w), stride=(2, 2)) for w in conv]
    s1 = rf_ref(*z, first, kind)
    flat = s1.reshape(s1.shape[0], -1, s1.shape[-1])
    z = [torch.einsum("oi,nit->not", t(w), flat) for w in dense]
    s2 = rf_ref(*z, second, kind)
    got1 = _run(net[:2], x)
    assert torch.equal(got1.to(torch.float64), s1)
    assert net[2:].input_shape == (6, 15, 15)  # a slice after the complex layer
    got2 = net(x.movedim(-1, 0).to(torch.int64)).movedim(0, -1)
    assert torch.equal(got2.to(torch.float64), s2)
    assert float(s1.sum()) > 0 and float(s2.sum()) > 0
    assert float(s1.mean()) < 0.5


def test_alif_threshold_adapts_as_lava_dl_on_a_dense_layer(tmp_path):
    """A dense ALIF layer with one decay per neuron (Lava-DL's shared_param=False) on a
    constant drive: the spikes thin out as the threshold and refractory grow."""
    rng = np.random.default_rng(2)
    weight = _grid(rng, (16, 40), -30, 40)
    params = dict(ALIF, vDecay=rng.integers(200, 900, 16), refDecay=rng.integers(100, 600, 16))
    params.update(vThMant=150, vThStep=120, thDecay=100)
    path = tmp_path / "alif.net"
    with h5py.File(path, "w") as f:
        g = f.create_group("layer/0")
        _type(g, "dense")
        g.create_dataset("shape", data=np.array([16]))
        g.create_dataset("weight", data=weight)
        _neuron(g, params)
    net = import_netx(path)
    x = torch.as_tensor(rng.random((3, 40, 60)) < 0.3, dtype=torch.float64)  # [N, in, T]
    z = torch.einsum("oi,nit->not", torch.as_tensor(weight, dtype=torch.float64) / 64, x)
    want = alif_ref(z, params, (-1,))
    got = net(x.movedim(-1, 0).to(torch.int64)).movedim(0, -1)
    assert torch.equal(got.to(torch.float64), want)
    early, late = float(want[..., :10].mean()), float(want[..., -10:].mean())
    assert 0 < late < early  # the adaptation is at work


def test_pool_keeps_lava_dls_stacked_layout_for_odd_sizes_and_overlapping_windows(tmp_path):
    """An odd height (Lava-DL appends H mod k rows) and a stride below the kernel (the
    windows straddle channels in Lava-DL's [C·H, W] stacking): as Lava-DL computes."""
    rng = np.random.default_rng(3)
    x = torch.as_tensor(rng.random((2, 3, 9, 10, 6)) < 0.4, dtype=torch.float64)
    cases = [((2, 3), (2, 3), (0, 0), [3, 5, 3]), ((3, 2), (1, 2), (1, 0), [3, 9, 5])]
    for kernel, stride, padding, shape in cases:
        w = 2 * rng.integers(1, 64, size=(1, 1, *kernel))
        path = tmp_path / "pool.net"
        with h5py.File(path, "w") as f:
            layer = f.create_group("layer")
            _type(layer.create_group("0"), "input")
            layer["0"].create_dataset("shape", data=np.array([3, 9, 10]))
            _kernel_layer(layer.create_group("1"), "pool", shape, w, stride, padding, [1, 1], CUBA)
        net = import_netx(path)
        z = lava_pool(
            x, torch.as_tensor(w[0, 0], dtype=torch.float64) / 64, stride, padding, (1, 1)
        )
        assert list(z.shape[1:4]) == shape
        got = net[0](x.movedim(-1, 0).to(torch.int64)).movedim(0, -1)
        assert torch.equal(got.to(torch.float64), z * 64)


def _one_layer_file(path, edit=None):
    """A valid 1-layer pool + ALIF file, then ``edit(f)``."""
    with h5py.File(path, "w") as f:
        layer = f.create_group("layer")
        _type(layer.create_group("0"), "input")
        layer["0"].create_dataset("shape", data=np.array([2, 8, 8]))
        w = np.full((1, 1, 2, 2), 64)
        _kernel_layer(layer.create_group("1"), "pool", [2, 4, 4], w, [2, 2], [0, 0], [1, 1], ALIF)
        if edit is not None:
            edit(f)
    return path


def test_bad_fields_raise_errors_naming_the_file_layer_and_field(tmp_path):
    import_netx(_one_layer_file(tmp_path / "ok.net"))

    def set_(key, value):
        def edit(f):
            del f[key]
            f.create_dataset(key, data=value)

        return edit

    def add(key, value):
        return lambda f: f.create_dataset(key, data=value)

    def retype(kind):
        def edit(f):
            del f["layer/1/neuron/type"]
            f["layer/1/neuron"].create_dataset("type", data=kind)

        return edit

    def average_then_pool(f):
        g = f["layer"].create_group("2")
        _type(g, "average")
        g.create_dataset("shape", data=np.array([2, 1, 1]))
        f["layer"].copy(f["layer/1"], "3")

    cases = [
        (lambda f: f.__delitem__("layer/1/neuron/thDecay"), "layer/1/neuron/thDecay'.*missing"),
        (set_("layer/1/neuron/refDecay", 5000), "layer/1/neuron.*refDecay must be"),
        (set_("layer/1/neuron/iDecay", np.array([1, 2, 3])), "layer/1/neuron/iDecay.*3 values"),
        (set_("layer/1/neuron/gradedSpike", True), "layer/1/neuron/gradedSpike.*graded"),
        (
            set_("layer/1/weight", np.full((2, 1, 2, 2), 64)),
            "layer/1/weight.*one \\[1, 1, kH, kW\\]",
        ),
        (set_("layer/1/kernelSize", np.array([3, 3])), "layer/1/kernelSize.*differs"),
        (set_("layer/1/shape", np.array([2, 5, 4])), "layer/1/shape.*not the pool layer's output"),
        (add("layer/1/bias", np.array([1, 2])), "layer/1/bias.*before ALIF"),
        (set_("layer/1/weight", np.full((1, 1, 2, 2), 1e20)), "layer/1/weight.*within int64"),
        (
            set_("layer/1/neuron/vDecay", np.array(2**63 + 5, dtype=np.uint64)),
            "layer/1/neuron/vDecay.*within int64",
        ),
        (retype("RF_PHASE"), "layer/1/weight.*real weight for 'RF_PHASE'"),
        (retype("ADRF_IZHIKEVICH"), "neuron/type.*'ADRF_IZHIKEVICH' is not supported"),
        (average_then_pool, "layer/3.*after an average layer"),
    ]
    for index, (edit, match) in enumerate(cases):
        path = _one_layer_file(tmp_path / f"bad{index}.net", edit)
        with pytest.raises(DataFormatError, match=match) as info:
            import_netx(path)
        assert f"bad{index}.net" in str(info.value)


def test_rf_izhikevich_resets_one_unit_below_threshold_as_lava_dl(tmp_path):
    """No rotation or decay (``sinDecay = 0``, ``cosDecay = 4096``): after a spike the
    imaginary state rests at θ − 1 (Lava-DL's reset) and does not fire again."""
    params = {"type": "RF_IZHIKEVICH", "sinDecay": 0, "cosDecay": 4096, "vThMant": 3}
    path = tmp_path / "rfiz.net"
    with h5py.File(path, "w") as f:
        g = f.create_group("layer/0")
        _type(g, "dense")
        g.create_dataset("shape", data=np.array([2]))
        g.create_dataset("weight/real", data=np.array([[2], [0]]))
        g.create_dataset("weight/imag", data=np.array([[4], [2]]))
        _neuron(g, params)
    net = import_netx(path)
    x = torch.zeros(1, 1, 8, dtype=torch.float64)
    x[..., 0] = 1
    z = [torch.tensor(w, dtype=torch.float64)[None, :, None] / 64 * x for w in ([2, 0], [4, 2])]
    want = rf_ref(*z, params, "RF_IZHIKEVICH")
    got = net(x.movedim(-1, 0).to(torch.int64)).movedim(0, -1)
    assert torch.equal(got.to(torch.float64), want)
    assert want[0, 0].tolist() == [1, 0, 0, 0, 0, 0, 0, 0] and want[0, 1].sum() == 0


def test_the_modules_refuse_bad_arguments_by_name():
    with pytest.raises(ConfigurationError, match="thDecay must be integers in"):
        LoihiALIFNode(1024, 512, -1, 0, 60, 20)
    with pytest.raises(ConfigurationError, match="vThStep must be an integer"):
        LoihiALIFNode(1024, 512, 0, 0, 60, 2.5)
    alif = LoihiALIFNode(torch.tensor([1, 2, 3]), 512, 0, 0, 60, 20)
    with pytest.raises(ShapeError, match="3 per-channel decays"):
        alif(torch.zeros(2, 1, 4, dtype=torch.int64))
    with pytest.raises(ShapeError, match=r"takes the complex synaptic sums \(real, imag\)"):
        LoihiResonatorNode(100, 4000, 10, izhikevich=True)(torch.zeros(2, 1, 3, dtype=torch.int64))
    with pytest.raises(ConfigurationError, match="must be of one kind"):
        LoihiComplexSynapse(
            LoihiDense(torch.ones(2, 3, dtype=torch.int64)),
            LoihiConv2d(torch.ones(1, 1, 1, 1, dtype=torch.int64)),
        )
    with pytest.raises(ShapeError, match="do not split into 3 equal groups"):
        LoihiAverage(3)(torch.zeros(2, 1, 4))
    with pytest.raises(ShapeError, match="do not split into 2 channels"):
        LoihiSumPool(torch.ones(2, 1, dtype=torch.int64), stride=1)(
            torch.zeros(1, 1, 2, 3, 2, dtype=torch.int64)
        )


def test_empty_steps_numpy_integers_and_mismatched_parts_are_handled():
    """T = 0 or B = 0 through the average (no reshape error), numpy integers as the
    thresholds (what h5py reads), and a complex synapse whose parts differ refused."""
    for shape in ((0, 3, 4), (2, 0, 4)):
        out = LoihiAverage(2)(torch.zeros(shape, dtype=torch.int64))
        assert out.shape == (*shape[:2], 2) and out.dtype == torch.float64
    x = torch.randint(0, 40, (6, 2, 3))
    alif = LoihiALIFNode(1024, 512, 0, 0, np.int64(60), np.int32(20))
    assert alif.v_th_mant == 60 and type(alif.v_th_mant) is int
    assert torch.equal(alif(x), LoihiALIFNode(1024, 512, 0, 0, 60, 20)(x))
    with pytest.raises(DTypeError, match="integer"):  # inference on integers only
        alif(x.float().requires_grad_())
    with pytest.raises(ShapeError, match=r"real synapse .* must have one shape"):
        LoihiComplexSynapse(
            LoihiDense(torch.ones(3, 7, dtype=torch.int64)),
            LoihiDense(torch.ones(4, 7, dtype=torch.int64)),
        )
    with pytest.raises(ShapeError, match="must have one shape and setting"):
        LoihiComplexSynapse(
            LoihiConv2d(torch.ones(2, 1, 3, 3, dtype=torch.int64), stride=1),
            LoihiConv2d(torch.ones(2, 1, 3, 3, dtype=torch.int64), stride=2),
        )
    with pytest.raises(ConfigurationError, match="kernel must be at least 1x1"):
        LoihiSumPool(torch.ones(0, 2, dtype=torch.int64))


@pytest.mark.parametrize("imag_shape", [(4, 40), (10, 20)])
def test_complex_weights_of_different_shapes_name_the_field(tmp_path, imag_shape):
    """weight/imag [4, 40] (not a multiple of the layer's 5 neurons) or [10, 20] (the
    same count, another shape) next to weight/real [5, 40]: a DataFormatError naming
    the layer's weight, not a reshape error or a silent reshape."""
    rf = {"type": "RF_PHASE", "sinDecay": 2838, "cosDecay": 2838, "vThMant": 90}
    path = tmp_path / "rf.net"
    with h5py.File(path, "w") as f:
        g = f.create_group("layer/0")
        _type(g, "dense")
        g.create_dataset("shape", data=np.array([5]))
        g.create_dataset("weight/real", data=np.ones((5, 40), dtype=np.int64))
        g.create_dataset("weight/imag", data=np.ones(imag_shape, dtype=np.int64))
        _neuron(g, rf)
    with pytest.raises(DataFormatError, match=r"layer/0/weight'.*differ in shape"):
        import_netx(path)
    with h5py.File(path, "a") as f:  # a real dense layer of the wrong size
        del f["layer/0/weight"], f["layer/0/neuron"]
        f["layer/0"].create_dataset("weight", data=np.ones((4, 40), dtype=np.int64))
        _neuron(f["layer/0"], CUBA)
    with pytest.raises(DataFormatError, match=r"layer/0/weight'.*does not form \[5, in\]"):
        import_netx(path)
