"""``quant.loihi_grid``: training on Loihi's grids, as Lava-DL's blocks train.

References (Lava-DL cannot be installed here; its code was read, ``lava-nc/lava-dl``
``src/lava/lib/dl/slayer``): ``utils/quantize.py`` at ``192996f2e376…`` (``quantize``:
``round(x / step) * step`` with the gradient passed unchanged), ``neuron/base.py`` at
``04189ec1fdc4…`` (``quantize_8bit``: ``quantize(w, 2 / w_scale)`` then ``clamp(-256 /
w_scale, 254 / w_scale)``; the threshold ``int(θ w_scale) / w_scale``; ``weight_exponent
= log2(s_scale // w_scale) - 6 = 0``), ``neuron/cuba.py`` at ``1789ef9bad01…``
(``quantize`` of the decays, ``s_scale = 64 · 64``) and
``neuron/dynamics/leaky_integrator.py`` at ``56a0dcdc8b37…`` (the states in integers of
``1/s_scale``, ``right_shift_to_zero`` decays, the input truncated by ``to(int64)``; the
backward of the float recurrence). The fixed-point side is spikeflow's
``import_netx(export_netx(...))`` and ``LoihiCubaLIFNode``, themselves checked against
Lava's code (``tests/test_loihi_neuron.py``, ``tests/test_loihi_netx.py``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from conftest import load_example, require_shared_data
from lava_checks import netx_dense_synapse, netx_optimize_weight_bits
from spikeflow import functional, layers, neurons
from spikeflow.errors import ConfigurationError, DTypeError
from spikeflow.interop import export_netx, import_netx, lava_dl_weights
from spikeflow.prune import finalize
from spikeflow.quant import (
    LoihiCubaGrid,
    LoihiCubaLIFNode,
    LoihiWeightGrid,
    apply_membrane_quantization,
    apply_weight_quantization,
    integer_weights,
    loihi_cuba_lif,
    loihi_grid,
)
from spikeflow.quant.loihi import cuba_device_params
from spikeflow.quant.loihi_grid import loihi_cuba_charge, loihi_weight_integers


def _cuba(tau_syn=4.0, tau_mem=8.0, threshold=1.0, **kwargs):
    return neurons.CubaLIFNode(
        tau_syn, tau_mem, r="tau_syn*tau_mem", v_threshold=threshold, v_reset=0.0, **kwargs
    )


def _lava_dl_quantize_8bit(w, w_scale=64):
    """Lava-DL's ``quantize_8bit(w)`` (not descaled), transcribed."""
    step = 2 / w_scale
    return (torch.round(w / step) * step).clamp(-256 / w_scale, 254 / w_scale)


def _conv_net(seed=1):
    torch.manual_seed(seed)
    net = nn.Sequential(
        layers.Conv2d(2, 4, 3, stride=2, padding=1, bias=False),
        _cuba(4.0, 8.0, 1.0),
        layers.AxonalDelay(4, 62, init=[0.0, 1.0, 2.0, 3.0], learnable=False, interpolate=False),
        layers.Flatten(),
        layers.Linear(4 * 4 * 4, 6, bias=False),
        _cuba(2.0, 3.0, 0.7),
    )
    with torch.no_grad():
        net[0].weight.normal_(0.1, 0.4)
        net[4].weight.normal_(0.1, 0.5)
    return net


def test_weights_are_what_export_netx_writes_on_several_scales(tmp_path):
    edges = torch.tensor([0.0, 1 / 64, 3 / 64, -1 / 64, 0.01, 3.96875, 3.98, 3.99, -4.0, -4.02,
                          10.0, -10.0])  # fmt: skip
    # halves go to even (1/64 -> 0, 3/64 -> 4/64), the clamp stops at -256 and 254
    want = [0, 0, 4, 0, 0, 254, 254, 254, -256, -256, 254, -256]
    assert loihi_weight_integers(edges).tolist() == want
    for scale in (0.02, 0.3, 1.0, 8.0):  # small (netx shifts them up), mixed, saturated
        torch.manual_seed(int(scale * 100))
        net = nn.Sequential(layers.Linear(30, 7, bias=False), _cuba())
        with torch.no_grad():
            net[0].weight.normal_(0.0, scale)
        raw = net[0].weight.detach().clone()
        loihi_grid(net)
        on_grid = net[0].weight.detach()
        assert torch.equal(on_grid, _lava_dl_quantize_8bit(raw)), scale
        assert torch.equal(on_grid * 64, lava_dl_weights(raw).float()), scale
        path = export_netx(net, tmp_path / f"{scale}.net", (30,))
        import h5py

        with h5py.File(path, "r") as f:
            stored = f["layer/1/weight"][()]
        assert np.array_equal(stored, (on_grid * 64).numpy()), scale
        # netx's exponent choice on the stored integers gives the same synapse back
        shifted, _, exponent = netx_optimize_weight_bits(stored.astype(int))
        assert np.array_equal(shifted * 2.0**exponent, stored), scale
        assert np.array_equal(netx_dense_synapse(stored), stored), scale
    assert loihi_grid.__module__ == "spikeflow.quant.loihi_grid"
    with pytest.raises(DTypeError, match="float tensor"):
        loihi_weight_integers(torch.ones(2, dtype=torch.int64))


def test_straight_through_gradients():
    w = torch.tensor([0.01, 0.5, 3.96875, 3.98, 3.99, -4.0, -4.02, -7.0], requires_grad=True)
    g = torch.arange(1.0, 9.0)
    LoihiWeightGrid()(w).backward(g)
    # Lava-DL: quantize passes the gradient, the clamp after it stops it where
    # 2 round(32 w) is outside [-256, 254] (3.99 -> 256, -4.02 -> -258)
    assert w.grad.tolist() == [1.0, 2.0, 3.0, 4.0, 0.0, 6.0, 0.0, 0.0]
    # One charge step in float64, by hand: the float recurrence on the decays' grid
    # (round(4096 / 3) = 1365, round(4096 / 7) = 585), the truncations transparent.
    x = torch.tensor([0.3, -0.7], dtype=torch.float64, requires_grad=True)
    v = torch.tensor([0.25, -0.5], dtype=torch.float64, requires_grad=True)
    i = torch.tensor([1.5, 0.125], dtype=torch.float64, requires_grad=True)
    syn = torch.tensor(1 / 3, dtype=torch.float64, requires_grad=True)
    mem = torch.tensor(1 / 7, dtype=torch.float64, requires_grad=True)
    h, u = loihi_cuba_charge(x, v, i, syn_decay=syn, mem_decay=mem, r=21.0, v_leak=0.0)
    a, b = 1 - 1365 / 4096, 1 - 585 / 4096
    for out, weights in ((h, (1.0, 2.0)), (u, (3.0, -1.0))):
        grads = torch.autograd.grad(out, (x, v, i, syn, mem), torch.tensor(weights).double(),
                                    retain_graph=True, materialize_grads=True)  # fmt: skip
        c = torch.tensor(weights).double()
        is_h = out is h
        assert torch.allclose(grads[0], c, rtol=0, atol=1e-15)
        assert torch.allclose(grads[1], c * b if is_h else 0 * c, rtol=0, atol=1e-15)
        assert torch.allclose(grads[2], c * a, rtol=0, atol=1e-15)
        assert torch.allclose(grads[3], -(c * i.detach()).sum(), rtol=0, atol=1e-15)
        want_mem = -(c * v.detach()).sum() if is_h else torch.tensor(0.0).double()
        assert torch.allclose(grads[4], want_mem, rtol=0, atol=1e-15)
    # ... while the values are Loihi's integers (units of 1/4096, truncated decays)
    u_int = [int(np.trunc(1.5 * 4096 * 2731 / 4096)) + int(0.3 * 4096),
             int(np.trunc(0.125 * 4096 * 2731 / 4096)) + int(np.trunc(-0.7 * 4096))]  # fmt: skip
    assert (u.detach() * 4096).tolist() == u_int


def test_decays_round_as_the_export_rounds_them():
    """The decay levels of the charge are ``cuba_device_params``' ``iDecay`` / ``vDecay``
    (``torch.round`` of a float32 ``4096 / tau``: halves to even), for fixed (Python
    float) and learned (tensor) decays alike."""
    from spikeflow.quant.loihi_grid import _decay_level

    for level in (1365.5, 1364.5, 0.5, 1.5, 4095.5, 1024.0, 1000.25, 2730.75):
        want = float(torch.round(torch.tensor(level, dtype=torch.float32)))
        assert _decay_level(level / 4096)[0] == want, level
        assert float(_decay_level(torch.tensor(level / 4096))[0]) == want, level
    for tau in (1.0, 1.5, 3.0, 4.0, 7.3, 100.0, 5000.0):
        node = _cuba(tau, tau + 1.0)
        params = cuba_device_params(node)
        assert _decay_level(1.0 / tau)[0] == params["i_decay"], tau
        assert float(_decay_level(1.0 / torch.tensor(tau))[0]) == params["i_decay"], tau


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_population_equals_lavas_bit_accurate_lif(dtype):
    torch.manual_seed(5)
    big = 1 << 17  # exact below 2^17 weight units; larger inputs are refused
    for tau_syn, tau_mem, theta in ((4.0, 8.0, 1.0), (1.0, 1.0, 0.3), (3.0, 700.0, 40.0),
                                    (2.5, 1.6, 2047.0)):  # fmt: skip
        a = torch.randint(-300, 400, (40, 3, 25))
        a[5:9, 0] = torch.randint(-big, big, (4, 25))  # wraps the current, saturates v
        node = _cuba(tau_syn, tau_mem, theta, store_v_seq=True)
        loihi_grid(nn.Sequential(layers.Linear(1, 1, bias=False), node))
        lava = LoihiCubaLIFNode.from_cuba(node)
        s_ref, u_ref, v_ref = loihi_cuba_lif(a, du=lava.du, dv=lava.dv, vth=lava.vth)
        # the fused kernel (generated from the charge) in float32: the dtype it trains in
        for backend in ("torch", "auto") if dtype == torch.float32 else ("torch",):
            node.backend = backend
            with functional.streaming(node):
                s = node(a.to(dtype) / 64)
                u_last = node.i
            functional.reset_net(node)
            assert torch.equal(s.long(), s_ref), (tau_syn, backend)
            assert torch.equal((node.v_seq * 4096).long(), v_ref), (tau_syn, backend)
            assert torch.equal((u_last * 4096).long(), u_ref[-1]), (tau_syn, backend)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the interpreter's masked-off lanes
def test_the_triton_kernel_computes_lavas_integers_too():
    """The GPU kernel generated from the charge (on CPU tensors through Triton's
    interpreter, tests/conftest.py): the same spikes and voltages, and the reference
    loop's gradient."""
    from spikeflow.kernels.triton_backend import triton_available

    if not triton_available():
        pytest.skip("triton (the 'triton' extra) is not installed")
    torch.manual_seed(6)
    a = torch.randint(-300, 400, (16, 2, 12))
    a[3:9, 0] = torch.randint(-(1 << 16), 1 << 16, (6, 12))  # large slowly decaying states
    node = _cuba(40.0, 30.0, 3.0, store_v_seq=True, backend="triton")
    loihi_grid(nn.Sequential(layers.Linear(1, 1, bias=False), node))
    lava = LoihiCubaLIFNode.from_cuba(node)
    s_ref, _, v_ref = loihi_cuba_lif(a, du=lava.du, dv=lava.dv, vth=lava.vth)
    x = (a.float() / 64).requires_grad_()
    s = node(x)
    assert torch.equal(s.long(), s_ref) and torch.equal((node.v_seq * 4096).long(), v_ref)
    (grad,) = torch.autograd.grad(s.sum(), x)
    node.backend = "torch"
    (want,) = torch.autograd.grad(node(x).sum(), x)
    assert torch.allclose(grad, want, rtol=1e-5, atol=1e-6)


def test_streaming_continues_as_lavas_state():
    torch.manual_seed(2)
    node = _cuba(4.0, 8.0, 0.5, backend="torch")
    loihi_grid(nn.Sequential(layers.Linear(1, 1, bias=False), node))
    lava = LoihiCubaLIFNode.from_cuba(node)
    a = torch.randint(-60, 100, (20, 2, 9))
    s_ref, _, _ = loihi_cuba_lif(a, du=lava.du, dv=lava.dv, vth=lava.vth)
    with functional.streaming(node):  # Lava-DL's persistent_state
        s = torch.cat([node(a[:7].float() / 64), node(a[7:].float() / 64)])
    assert torch.equal(s.long(), s_ref)


def test_float_states_drift_by_the_truncation():
    """``fixed_point=False``: the decays and threshold on their grid, float states. Below
    the threshold the states then differ from Loihi's by the truncations only: less
    than ``t`` units of ``1/4096`` in ``u`` and ``t (t + 3) / 2`` in ``v`` after ``t``
    steps (docs/loihi.md), and not at all with ``fixed_point=True``."""
    torch.manual_seed(4)
    a = torch.randint(-200, 300, (30, 4, 16))
    steps = torch.arange(1, 31, dtype=torch.float64).view(30, 1, 1)
    for fixed_point in (True, False):
        node = _cuba(
            3.0, 7.0, 1900.0, store_v_seq=True, backend="torch"
        )  # far above the states: no spike
        loihi_grid(nn.Sequential(layers.Linear(1, 1, bias=False), node), fixed_point=fixed_point)
        lava = LoihiCubaLIFNode.from_cuba(node)
        s_ref, u_ref, v_ref = loihi_cuba_lif(a, du=lava.du, dv=lava.dv, vth=lava.vth)
        with functional.streaming(node):
            s = node(a.double() / 64)
            u_error = (node.i * 4096 - u_ref[-1]).abs()
        v_error = (node.v_seq * 4096 - v_ref).abs()
        assert not s.any() and not s_ref.any()
        if fixed_point:
            assert not u_error.any() and not v_error.any()
        else:
            assert 0 < u_error.max() < 30 and (v_error < steps * (steps + 3) / 2).all()
            assert v_error.max() > 10  # the truncations add up over the steps
            # ... and they are Lava-DL's float CUBA on the decays' grid (1365, 585), by hand
            u = v = torch.zeros(4, 16, dtype=torch.float64)
            for t in range(30):
                u = (1 - 1365 / 4096) * u + a[t].double() / 64
                v = (1 - 585 / 4096) * v + u
                assert torch.allclose(node.v_seq[t], v, rtol=1e-13, atol=0), t


def _equal_per_layer(net, fixed, x):
    """Whether every neuron layer's spikes of the float network equal the netx one's."""
    with torch.no_grad():
        float_in, fixed_in = x.to(torch.get_default_dtype()), x.long()
        for float_layer, fixed_layer in zip(net, fixed):
            float_in, fixed_in = float_layer(float_in), fixed_layer(fixed_in)
            if isinstance(float_layer, neurons.CubaLIFNode):
                assert float_in.any() and not float_in.all()
                if not torch.equal(float_in.long(), fixed_in):
                    return False
    return True


def test_a_grid_trained_network_runs_as_its_netx_export(tmp_path):
    net = _conv_net()
    net[1].tau_syn = nn.Parameter(torch.tensor(4.0))  # a learned time constant
    names = loihi_grid(net)
    assert names == ["0", "1", "4", "5"]
    for m in (net[1], net[5]):
        m.backend = "torch"
    x = (torch.rand(10, 5, 2, 8, 8) < 0.35).float()
    optimizer = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(3):  # a few steps: the weights and tau_syn move on their grids
        loss = net(x).mean(0).sub(0.3).pow(2).sum()
        optimizer.zero_grad()
        loss.backward()
        assert net[1].tau_syn.grad.abs() > 0 and net[0].parametrizations.weight.original.grad.any()
        optimizer.step()
    assert float(net[1].tau_syn.detach()) != 4.0
    fixed = import_netx(export_netx(net, tmp_path / "g.net", (2, 8, 8)))
    for backend in ("torch", "auto"):
        for m in (net[1], net[5]):
            m.backend = backend
        assert _equal_per_layer(net, fixed, x), backend
        assert _equal_per_layer(net, fixed, (torch.rand(10, 5, 2, 8, 8) < 0.6).float()), backend
    # the fused kernel's gradients are the reference loop's
    grads = []
    for backend in ("torch", "auto"):
        for m in (net[1], net[5]):
            m.backend = backend
        net.zero_grad()
        net(x).sum().backward()
        grads.append([p.grad.clone() for p in net.parameters()])
    for ref, fused in zip(*grads):
        assert torch.allclose(ref, fused, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def nmnist_spikes():
    from spikeflow.data import NMNIST

    ds = NMNIST(require_shared_data("nmnist-small"), train=False, data_type="frame",
                frames_number=12, split_by="number")  # fmt: skip
    frames = torch.stack([ds[i][0] for i in range(0, 100, 17)])  # 6 digits
    return (frames > 0).transpose(0, 1).flatten(2).float()  # [T, B, 2312]


def test_nmnist_fixed_point_states_give_the_netx_spikes(tmp_path, nmnist_spikes):
    torch.manual_seed(0)
    net = nn.Sequential(layers.Linear(2312, 40, bias=False), _cuba(4.0, 8.0, 1.0),
                        layers.Linear(40, 10, bias=False), _cuba(2.0, 4.0, 1.0))  # fmt: skip
    with torch.no_grad():
        net[0].weight.normal_(0.0, 0.05)
        net[2].weight.normal_(0.1, 0.3)
    loihi_grid(net)
    fixed = import_netx(export_netx(net, tmp_path / "n.net", (2312,)))
    assert _equal_per_layer(net, fixed, nmnist_spikes)
    # float states (the decays' truncation left out): on these digits no spike differs
    # (the states differ by a few 1/4096 units: test_float_states_drift_by_the_truncation)
    for m in (net[1], net[3]):
        m.membrane_quantizer = LoihiCubaGrid(fixed_point=False)
    with torch.no_grad():
        agree = (net(nmnist_spikes).long() == fixed(nmnist_spikes.long())).double().mean()
    assert agree >= 0.999, agree


def test_refuses_what_the_chip_cannot_hold():
    def net(*modules):
        return nn.Sequential(*modules)

    cases = [
        (net(layers.Linear(4, 3), _cuba()), "'0': the layer has a bias"),
        (net(layers.Linear(4, 3, bias=False), neurons.LIFNode()), "'1' is a LIFNode"),
        (net(layers.Linear(4, 3, bias=False), neurons.CubaLIFNode(2.0, 2.0)),
         "'1': .*r='tau_syn\\*tau_mem'"),
        (net(layers.Linear(4, 3, bias=False), _cuba(threshold=3000.0)), "outside Loihi's 17-bit"),
        (net(layers.Linear(4, 3, bias=False), _cuba(learnable_threshold=True)),
         "learnable threshold"),
        (net(layers.Linear(4, 3, bias=False), _cuba(tau_syn=torch.tensor([2.0, 3.0, 4.0]))),
         "tau_syn must be one value"),
        (net(layers.Linear(4, 3, bias=False), _cuba(threshold=torch.tensor([1.0, 2.0, 1.0]))),
         "v_threshold must be one value"),
        (net(layers.Conv1d(2, 3, 3, bias=False), _cuba()), "'0' is a Conv1d"),
        (net(layers.Conv2d(2, 3, 3, bias=False, padding="same"), _cuba()), "pad with zeros"),
        (net(layers.Linear(4, 3, bias=False), _cuba(), layers.MaxPool1d(2)),
         "'2' \\(MaxPool1d\\) has no counterpart"),
        (net(layers.Linear(4, 3, bias=False), _cuba(), layers.AxonalDelay(3, 5)),
         "'2' \\(AxonalDelay\\) interpolates"),
        # delays the export would refuse after the training: learnable beyond netx's 62,
        # fixed beyond it, one per neuron instead of one per channel
        (net(layers.Linear(4, 3, bias=False), _cuba(),
             layers.AxonalDelay(3, 100, init=1.0, interpolate=False)),
         "'2' \\(AxonalDelay\\) may learn delays up to max_delay=100 steps; netx .* 62"),
        (net(layers.Linear(4, 3, bias=False), _cuba(),
             layers.AxonalDelay(3, 100, init=63.0, learnable=False, interpolate=False)),
         "'2' \\(AxonalDelay\\) has delays up to 63 steps"),
        (net(layers.Conv2d(2, 3, 3, bias=False), _cuba(),
             layers.AxonalDelay((3, 2, 2), 5, interpolate=False)),
         "'2' \\(AxonalDelay\\) has delays of shape \\(3, 2, 2\\); netx stores one delay per"),
        (net(layers.Linear(4, 3, bias=False)), "no CubaLIFNode"),
        (net(_cuba()), "no Linear or Conv2d"),
    ]  # fmt: skip
    for model, match in cases:
        with pytest.raises(ConfigurationError, match=match):
            loihi_grid(model)
        assert not any(isinstance(m, (LoihiWeightGrid, LoihiCubaGrid)) for m in model.modules())
    zero_bias = net(layers.Linear(4, 3), _cuba())
    with torch.no_grad():
        zero_bias[0].bias.zero_()
    # a zero bias that trains would move (and export_netx refuse the trained network)
    with pytest.raises(ConfigurationError, match="'0': the layer has a bias \\(a trainable"):
        loihi_grid(zero_bias)
    zero_bias[0].bias.requires_grad_(False)  # a frozen zero bias is no bias
    loihi_grid(zero_bias)
    fixed_delay = layers.AxonalDelay(3, 100, init=62.9, learnable=False, interpolate=False)
    loihi_grid(net(layers.Linear(4, 3, bias=False), _cuba(), fixed_delay))  # exported as 62
    twice = net(layers.Linear(4, 3, bias=False), _cuba())
    loihi_grid(twice)
    with pytest.raises(ConfigurationError, match="'1': its membrane is quantized already"):
        loihi_grid(twice)
    other = net(layers.Linear(4, 3, bias=False), _cuba())
    apply_weight_quantization(other, bits=4)
    with pytest.raises(ConfigurationError, match="'0': its weight is quantized already"):
        loihi_grid(other)
    with pytest.raises(ConfigurationError, match=r"membrane.*quantized already"):
        apply_membrane_quantization(twice)
    # nor a second weight quantizer on the grid (its levels would leave Loihi's grid)
    with pytest.raises(ConfigurationError, match=r"'0': its weight is quantized already \(Loihi"):
        apply_weight_quantization(twice, bits=4)
    assert len(twice[0].parametrizations.weight) == 1
    with pytest.raises(ConfigurationError, match=r"on Loihi's grid .*loihi_weight_integers"):
        integer_weights(twice[0])  # (not "apply_weight_quantization" only)
    with pytest.raises(ConfigurationError, match="fixed_point must be a bool"):
        loihi_grid(net(layers.Linear(4, 3, bias=False), _cuba()), fixed_point=1)
    with pytest.raises(ConfigurationError, match=r"24-bit states do not fit a torch\.float16"):
        twice[1](torch.zeros(3, 2, 3, dtype=torch.float16))


def test_threshold_and_firing_on_the_grid():
    node = _cuba(1.0, 1.0, threshold=0.70, backend="torch")  # decays of 4096: v = x at each step
    loihi_grid(nn.Sequential(layers.Linear(1, 1, bias=False), node))
    assert node.v_threshold == 44 / 64 and node.strict_firing  # int(64 · 0.7) = 44
    # v reaching the threshold exactly does not fire (Loihi: v > vth << 6)
    x = torch.tensor([[[44 / 64]], [[45 / 64]], [[44 / 64]], [[0.7]]])
    assert node(x).flatten().tolist() == [0.0, 1.0, 0.0, 1.0]


def test_a_threshold_changed_after_gridding_is_checked_at_the_next_call():
    """Lava-DL truncates the threshold to ``int(64 θ) / 64`` when the neuron is built;
    one set after ``loihi_grid`` (a float, a scalar tensor, the tensor changed in
    place, a state dict loaded) is checked by the next call: on the grid it runs and
    fires on ``v > θ``, off it (or per neuron, or learnable) the call is refused."""
    for fixed_point in (True, False):
        node = _cuba(1.0, 1.0, threshold=0.7, backend="torch")  # v = x at each step
        loihi_grid(nn.Sequential(layers.Linear(1, 1, bias=False), node), fixed_point)
        x = torch.tensor([[[44 / 64]], [[48 / 64]], [[49 / 64]]])
        assert node(x).flatten().tolist() == [0.0, 1.0, 1.0]
        node.v_threshold = 48 / 64
        assert node(x).flatten().tolist() == [0.0, 0.0, 1.0]
        off = r"'1': v_threshold=0\.7 \(changed after loihi_grid\) is off Loihi's threshold grid"
        for bad, message in (
            (
                0.7,
                off
                + r": 64 θ must be an integer vThMant in \[1, 131072\]; int\(64 θ\) / 64 = 0\.6875",
            ),
            (0.0, r"v_threshold=0 \(changed after loihi_grid\) is off"),
            (2049.0, r"v_threshold=2049 .* is off"),
            (float("nan"), r"v_threshold=nan .* is off"),
            (torch.tensor(0.7), off),
            (torch.full((3,), 0.75), r"'1': its v_threshold became a tensor of shape \(3,\)"),
        ):
            node.v_threshold = bad
            with pytest.raises(ConfigurationError, match=message):
                node(x)
        node.v_threshold = torch.tensor(48 / 64)
        assert node(x).flatten().tolist() == [0.0, 0.0, 1.0]
        node.v_threshold.fill_(0.7)  # in place: the same tensor, a new version
        with pytest.raises(ConfigurationError, match=off):
            node(x)
        node.v_threshold = nn.Parameter(torch.tensor(0.75))
        with pytest.raises(ConfigurationError, match=r"'1': its v_threshold became a learnable"):
            node(x)


def test_a_gridded_net_built_or_moved_under_inference_mode_runs():
    """An inference tensor has no in-place version: a tensor threshold built (or moved
    by ``.to``) under ``torch.inference_mode`` runs as the same net outside it (was a
    RuntimeError from the threshold check), and an off-grid value written in place
    there is still refused at the next call."""

    def build():
        node = _cuba(1.0, 1.0, threshold=torch.tensor(0.7), backend="torch")
        loihi_grid(nn.Sequential(layers.Linear(1, 1, bias=False), node))
        return node

    x = torch.tensor([[[44 / 64]], [[45 / 64]], [[49 / 64]]])
    expected = build()(x).flatten().tolist()
    assert expected == [0.0, 1.0, 1.0]  # θ = int(64 · 0.7) / 64 = 44/64, fired on v > θ
    with torch.inference_mode():
        node = build()
        assert node.v_threshold.is_inference()
        assert node(x).flatten().tolist() == expected
        assert node(x).flatten().tolist() == expected
        node.v_threshold.fill_(0.7)
        with pytest.raises(ConfigurationError, match=r"v_threshold=0\.7 .* is off"):
            node(x)
    node = build()
    with torch.inference_mode():
        node.to(torch.float64)
        assert node(x.double()).flatten().tolist() == expected


def test_state_dict_round_trip_and_finalize(tmp_path):
    net = _conv_net()
    loihi_grid(net)
    x = (torch.rand(8, 3, 2, 8, 8) < 0.4).float()
    with torch.no_grad():
        net[4].parametrizations.weight.original.add_(0.013)
        want = net(x)
    torch.save(net.state_dict(), tmp_path / "grid.pt")
    state = torch.load(tmp_path / "grid.pt", weights_only=True)
    assert int(state["1.membrane_quantizer.settings"][0]) == 1
    restored = _conv_net(seed=7)
    loihi_grid(restored)
    restored.load_state_dict(state)
    assert torch.equal(restored(x), want)
    floating = _conv_net(seed=7)
    loihi_grid(floating, fixed_point=False)
    with pytest.raises(RuntimeError, match="fixed_point=True, this one with fixed_point=False"):
        floating.load_state_dict(state)
    assert finalize(restored) == ["0", "4"]  # plain layers holding the grid weights
    assert torch.equal(restored[4].weight * 64, lava_dl_weights(restored[4].weight).float())
    assert torch.equal(restored(x), want)


def test_the_example_runs_the_grid_network_as_its_export(capsys):
    """examples/loihi_nmnist.py (docs/loihi.md's table), a tiny run: the grid-trained
    network's float simulation and its netx export share every spike."""
    module = load_example("loihi_nmnist")
    root = require_shared_data("nmnist-small")
    results = module.main(["--root", str(root), "--epochs", "1", "--train-samples", "24",
                           "--test-samples", "12", "--hidden", "8", "--T", "6"])  # fmt: skip
    grid = results["grid (fixed-point states)"]
    assert grid["same_prediction"] == grid["hidden_spikes_equal"] == 1.0
    assert grid["output_spikes_equal"] == 1.0
    assert grid["float_accuracy"] == grid["fixed_accuracy"]
    assert set(results) == {"float", "grid (fixed-point states)", "grid (float states)"}
    assert "grid (float states): float_accuracy" in capsys.readouterr().out


def test_learned_time_constants_pushed_below_dt_export_as_the_forward_clamps_them(tmp_path):
    """Training may push a learned time constant below ``dt``; the forward clamps it to
    ``dt`` (decay 4096/4096), and the export must write that decay, not ``4096 / tau``
    (beyond netx's 12 bits: ``iDecay = 5120`` for ``tau = 0.8``)."""
    torch.manual_seed(3)
    net = nn.Sequential(layers.Linear(6, 5, bias=False), _cuba(4.0, 8.0, 0.5, backend="torch"))
    net[1].tau_syn = nn.Parameter(torch.tensor(0.8))
    net[1].tau_mem = nn.Parameter(torch.tensor(0.5))
    loihi_grid(net)
    with torch.no_grad():
        net[0].parametrizations.weight.original.normal_(0.3, 0.5)
    params = cuba_device_params(net[1])
    assert (params["i_decay"], params["v_decay"]) == (4096, 4096)
    x = (torch.rand(9, 3, 6) < 0.5).float()
    fixed = import_netx(export_netx(net, tmp_path / "c.net", (6,)))
    with torch.no_grad():
        s = net(x)
    assert s.any() and not s.all()
    assert torch.equal(s.long(), fixed(x.long()))


def test_float64_learned_decays_round_in_float32_as_the_export():
    """A float64 network's learned ``4096 / tau`` just below a half (``1365.5 − 1e-9``)
    is ``1365.5`` in float32, which the export rounds to 1366; the charge must use 1366
    too (float64's own rounding gives 1365)."""
    tau = 4096 / (1365.5 - 1e-9)
    node = _cuba(4.0, 8.0, 0.5, store_v_seq=True)
    node.tau_syn = nn.Parameter(torch.tensor(tau, dtype=torch.float64))
    loihi_grid(nn.Sequential(layers.Linear(1, 1, bias=False), node))
    lava = LoihiCubaLIFNode.from_cuba(node)
    assert lava.i_decay == 1366
    torch.manual_seed(8)
    a = torch.randint(-2000, 2000, (12, 2, 5))
    a[0] = 1 << 14  # a large current: the two decays differ by a unit after a step
    s_ref, _, v_ref = loihi_cuba_lif(a, du=lava.du, dv=lava.dv, vth=lava.vth)
    for backend in ("torch", "auto"):
        node.backend = backend
        s = node(a.double() / 64)
        assert torch.equal(s.long(), s_ref), backend
        assert torch.equal((node.v_seq * 4096).long(), v_ref), backend


def test_nir_export_names_the_loihi_grid():
    """NIR cannot express Loihi's integer states: the refusal names the grid (not
    apply_membrane_quantization, which was not called) and the export that can."""
    pytest.importorskip("nir", reason="the nir extra is not installed")
    from spikeflow.interop import export_to_nir

    net = nn.Sequential(layers.Linear(4, 3, bias=False), _cuba())
    loihi_grid(net)
    with pytest.raises(ConfigurationError, match=r"membranes of 1 are quantized \(LoihiCubaGrid: "
                       r"spikeflow\.quant\.loihi_grid\).*interop\.export_netx"):  # fmt: skip
        export_to_nir(net, torch.zeros(2, 1, 4))


def test_inputs_beyond_the_exact_range_are_refused():
    """Beyond a synaptic sum of ``2^17`` weight units (``|x| >= 2048``) the float32
    charge rounds and Lava's int32 arithmetic overflows: the states silently left
    Lava's (by hundreds of units after a few such steps); now the call is refused,
    naming the neuron (just below it the population test above holds)."""
    for dtype in (torch.float32, torch.float64):
        net = nn.Sequential(
            layers.Linear(1, 1, bias=False), _cuba(40.0, 30.0, 3.0, backend="torch")
        )
        loihi_grid(net)
        below = torch.full((3, 1, 1), (2**17 - 1) / 64, dtype=dtype)
        net[1](below)
        for bad in (2048.0, -2048.0, 5000.0, float("nan")):
            x = below.clone()
            x[1, 0, 0] = bad
            with pytest.raises(ConfigurationError, match=r"'1' receives a synaptic input of "):
                net[1](x)
    # float states have no such limit
    net = nn.Sequential(layers.Linear(1, 1, bias=False), _cuba(40.0, 30.0, 3.0, backend="torch"))
    loihi_grid(net, fixed_point=False)
    net[1](torch.full((3, 1, 1), 5000.0))


def test_what_loihi_grid_takes_export_netx_writes(tmp_path):
    """loihi_grid trains nested Sequentials, Dropout and Identity; export_netx refused
    them (after the training): it unrolls the one and leaves the others out (no-ops at
    inference), naming a refused module by its dotted name."""
    torch.manual_seed(9)
    net = nn.Sequential(
        nn.Sequential(layers.Linear(6, 5, bias=False), _cuba(2.0, 3.0, 0.3), nn.Dropout(0.2)),
        nn.Identity(),
        nn.Sequential(layers.Linear(5, 4, bias=False), _cuba(2.0, 2.0, 0.2)),
    )
    assert loihi_grid(net) == ["0.0", "0.1", "2.0", "2.1"]
    with torch.no_grad():
        for layer in (net[0][0], net[2][0]):
            layer.parametrizations.weight.original.normal_(0.4, 0.5)
    fixed = import_netx(export_netx(net.eval(), tmp_path / "n.net", (6,)))
    assert len(fixed) == 4
    x = (torch.rand(8, 3, 6) < 0.5).float()
    with torch.no_grad():
        s = net(x)
    assert s.any() and torch.equal(s.long(), fixed(x.long()))
    net[2].append(layers.MaxPool1d(2))
    with pytest.raises(ConfigurationError, match=r"module 2\.2 \(MaxPool1d\)"):
        export_netx(net, tmp_path / "m.net", (6,))
