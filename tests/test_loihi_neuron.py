"""``quant.LoihiCubaLIFNode``: Loihi's fixed-point CUBA neuron, bit for bit against
Lava's ``PyLifModelBitAcc`` transcribed in numpy int32 (``tests/lava_checks.py``, with
the file and commit it was read from) on random integer inputs, the wrap of the current,
the saturation of the voltage and inputs that overflow Lava's int32 arithmetic; the
edge cases also by hand; and its relation to the float ``neurons.CubaLIFNode`` (states
``2^12`` times the float ones, within the truncation of the decays)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lava_checks import lava_lif_bitacc
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.neurons import CubaLIFNode
from spikeflow.quant import LoihiCubaLIFNode, LoihiCubaState, loihi_cuba_lif
from spikeflow.quant.loihi import STATE_SCALE, UV_LIMIT, cuba_device_params

M = UV_LIMIT


def _run(x, **params):
    s, u, v = loihi_cuba_lif(torch.as_tensor(x, dtype=torch.int64), **params)
    return s.numpy(), u.numpy(), v.numpy()


def _check_against_lava(x, **params):
    ours = _run(x, **params)
    ref = lava_lif_bitacc(np.asarray(x), **params)
    for name, a, b in zip(("spikes", "u", "v"), ours, ref):
        assert np.array_equal(a, b), f"{name} differs at {np.argwhere(a != b)[:5]} ({params})"
    return ours


@pytest.mark.parametrize("seed", range(6))
def test_random_inputs_and_parameters_match_lava_bit_for_bit(seed):
    rng = np.random.default_rng(seed)
    params = {
        "du": int(rng.choice([-1, 0, 1, int(rng.integers(0, 4096)), 4095])),
        "dv": int(rng.choice([0, 1, int(rng.integers(0, 4097)), 4095, 4096])),
        "vth": int(rng.choice([0, int(rng.integers(1, 1 << 12)), 1 << 17])),
        "bias_mant": rng.integers(-4096, 4096, size=(40,)),
        "bias_exp": int(rng.integers(-7, 8)),
    }
    scale = [2**6, 2**12, 2**17, 2**24, 2**31][seed % 5]  # the last ones wrap and overflow
    x = rng.integers(-scale, scale, size=(25, 3, 40), dtype=np.int64).clip(-(2**31), 2**31 - 1)
    params["bias_mant"] = torch.as_tensor(params["bias_mant"])
    spikes, _, _ = _check_against_lava(x, **params)
    if seed == 1:  # moderate inputs: the neuron fires, not always
        assert 0 < spikes.mean() < 1


def test_the_current_wraps_once_and_the_voltage_saturates_by_hand():
    # du = 4095 keeps no current: u is the shifted input, 2^17 << 6 = 2^23 = M.
    a = [2**17, 2**17 + 1, -(2**17), -(2**17) - 1]
    s, u, v = _check_against_lava(np.array(a)[:, None], du=4095, dv=4096, vth=1 << 17)
    assert u[:, 0].tolist() == [M, M + 64 - 2 * M, -M + 2 * M, -M - 64 + 2 * M]
    # dv = 4096 keeps no voltage: v = u, saturated at ±(M − 1); never above vth << 6 = M.
    assert v[:, 0].tolist() == [M - 1, -M + 64, M - 1, M - 64]
    assert s.sum() == 0
    # An input beyond 24 bits is wrapped once only, as Lava's code does (not modulo).
    _, u, _ = _check_against_lava(np.array([[2**20]]), du=4095, dv=0, vth=0)
    assert int(u[0, 0]) == 2**26 - 2 * M


def test_decays_round_towards_zero_and_the_offsets_by_hand():
    # du = 2047: u keeps 4096 − 2048 = 2048/4096 (Lava's ds_offset = 1); 5/2 → 2, −5/2 → −2.
    x = np.array([[1, -1], [0, 0], [0, 0]])
    _, u, _ = _check_against_lava(x, du=2047, dv=0, vth=1000)
    assert u[:, 0].tolist() == [64, 32, 16] and u[:, 1].tolist() == [-64, -32, -16]
    s, u, v = _run(np.array([[1]]), du=-1, dv=0, vth=0)  # du = −1 keeps u whole
    assert int(u[0, 0]) == 64 and int(s[0, 0]) == 1  # 64 > 0 << 6: fires, strictly
    _, u, _ = _run(np.array([[1], [0]]), du=-1, dv=0, vth=1)
    assert u[:, 0].tolist() == [64, 64]
    # the truncation of a negative product: −5 · 2048 / 4096 = −2.5 → −2 (Lava: sign · |p| >> 12)
    state = LoihiCubaState(torch.tensor([-5]), torch.tensor([-5]))
    _, u, v = loihi_cuba_lif(
        torch.zeros(1, 1, dtype=torch.int64), du=2047, dv=2048, vth=9, state=state
    )
    assert int(u) == -2 and int(v) == -2 + -2


def test_threshold_is_strict_and_bias_shifts_by_hand():
    # v == vth << 6 does not fire; one more does. bias_mant 3 << 2 = 12 per step.
    s, _, v = _check_against_lava(np.zeros((3, 1)), du=4095, dv=0, vth=0, bias_mant=0)
    assert s.sum() == 0
    s, _, v = _check_against_lava(np.zeros((5, 1)), du=4095, dv=0, vth=0, bias_mant=3, bias_exp=2)
    assert s[:, 0].tolist() == [1, 1, 1, 1, 1] and v.sum() == 0
    s, _, v = _check_against_lava(np.zeros((6, 1)), du=4095, dv=0, vth=1, bias_mant=3, bias_exp=2)
    assert v[:, 0].tolist() == [12, 24, 36, 48, 60, 0] and s[:, 0].tolist() == [0] * 5 + [1]
    # a negative exponent shifts right, arithmetically: −5 >> 1 = −3
    _, _, v = _check_against_lava(np.zeros((1, 1)), du=4095, dv=0, vth=1, bias_mant=-5, bias_exp=-1)
    assert int(v[0, 0]) == -3


def test_module_matches_the_function_and_netx_parameters():
    node = LoihiCubaLIFNode.from_netx(i_decay=1024, v_decay=128, v_th_mant=80, bias=2)
    assert (node.du, node.dv, node.vth, int(node.bias_mant), node.bias_exp) == (1023, 128, 80, 2, 6)
    assert (node.i_decay, node.v_decay) == (1024, 128)
    x = torch.randint(-50, 200, (12, 2, 7))
    spikes, u, _ = lava_lif_bitacc(x.numpy(), du=1023, dv=128, vth=80, bias_mant=2, bias_exp=6)
    assert np.array_equal(node(x).numpy(), spikes)
    assert np.array_equal(node.last_state.u.numpy(), u[-1])
    assert np.array_equal(node(x).numpy(), spikes)  # each call starts from zero state


def test_relation_to_the_float_cuba_neuron():
    """With weights w_int / 64 and decays iDecay / 4096, Loihi's states are 2^12 times
    Lava-DL's float CUBA states (current = tau_syn · i of CubaLIFNode), off by the
    truncation of each decay product: below t units in u and t(t+3)/2 in v after t
    steps (a threshold no state reaches: no reset)."""
    torch.manual_seed(0)
    tau_syn, tau_mem = 4096 / 700, 4096 / 300  # iDecay 700, vDecay 300 exactly
    w_int = torch.randint(-256, 255, (30, 16)) // 2 * 2
    spikes_in = (torch.rand(20, 2, 16) < 0.4).to(torch.int64)
    a = spikes_in @ w_int.t()
    float_node = CubaLIFNode(
        tau_syn, tau_mem, r="tau_syn*tau_mem", v_threshold=1e6, v_reset=0.0, store_v_seq=True
    )
    i, v = torch.zeros(2, 30, dtype=torch.float64), torch.zeros(2, 30, dtype=torch.float64)
    i_seq, v_seq = [], []
    for x in a.to(torch.float64) / 64:  # CubaLIFNode.charge, the float neuron's equation
        v, i = CubaLIFNode.charge(
            x, v, i, syn_decay=1 / tau_syn, mem_decay=1 / tau_mem, r=tau_syn * tau_mem, v_leak=0.0
        )
        i_seq.append(i * tau_syn)
        v_seq.append(v)
    v_float = float_node(a.to(torch.float64) / 64)
    assert v_float.sum() == 0 and torch.allclose(float_node.v_seq, torch.stack(v_seq))
    _, u_fx, v_fx = loihi_cuba_lif(a, du=699, dv=300, vth=1 << 17)
    t = torch.arange(1, 21, dtype=torch.float64).view(20, 1, 1)
    du = (u_fx - STATE_SCALE * torch.stack(i_seq)).abs()
    dv = (v_fx - STATE_SCALE * torch.stack(v_seq)).abs()
    assert bool((du <= t).all()) and bool((dv <= t * (t + 3) / 2).all())
    assert float(du.max()) > 0  # the truncation is there (states of ~10^5 units)
    assert float((STATE_SCALE * torch.stack(v_seq)).abs().max()) > 1e5


def test_float_neuron_to_netx_parameters():
    node = CubaLIFNode(
        tau_syn=4.0, tau_mem=2.0**12 / 3, r="tau_syn*tau_mem", v_threshold=1.25, v_reset=0.0
    )
    assert cuba_device_params(node) == {"i_decay": 1024, "v_decay": 3, "v_th_mant": 80}
    # Lava-DL's int() truncates the threshold mantissa: 64 · 0.999 = 63.9 → 63
    node = CubaLIFNode(
        tau_syn=2.0, tau_mem=2.0, r="tau_syn*tau_mem", v_threshold=0.999, v_reset=0.0
    )
    assert cuba_device_params(node)["v_th_mant"] == 63
    assert LoihiCubaLIFNode.from_cuba(node).vth == 63
    for bad, match in [
        (CubaLIFNode(2.0, 2.0, r=1.0, v_reset=0.0), "r='tau_syn\\*tau_mem'"),
        (CubaLIFNode(2.0, 2.0, r="tau_syn*tau_mem", v_reset=None), "resets the voltage"),
        (CubaLIFNode(torch.tensor([2.0, 3.0]), 2.0, r="tau_syn*tau_mem"), "one value"),
        (CubaLIFNode(2.0, 2.0, r="tau_syn*tau_mem", v_threshold=1e-3), "17-bit"),
    ]:
        with pytest.raises(ConfigurationError, match=match):
            LoihiCubaLIFNode.from_cuba(bad)


def test_errors_name_the_problem():
    with pytest.raises(ConfigurationError, match="du must be an integer from -1 to 4095"):
        LoihiCubaLIFNode(du=4096, dv=0, vth=1)
    with pytest.raises(ConfigurationError, match="dv must be an integer"):
        LoihiCubaLIFNode(du=0, dv=0.5, vth=1)
    with pytest.raises(ConfigurationError, match="bias_mant must hold values from -4096"):
        LoihiCubaLIFNode(du=0, dv=0, vth=1, bias_mant=torch.tensor([5000]))
    with pytest.raises(DTypeError, match="integer tensor"):
        LoihiCubaLIFNode(du=0, dv=0, vth=1)(torch.rand(3, 2))
    with pytest.raises(ConfigurationError, match=r"x must hold values from .* to 2147483647"):
        loihi_cuba_lif(torch.tensor([[2**31]]), du=0, dv=0, vth=1)
    with pytest.raises(ShapeError, match=r"\[T, B, ...\]"):
        LoihiCubaLIFNode(du=0, dv=0, vth=1)(torch.tensor([1, 2]))
    with pytest.raises(ShapeError, match="one step's shape"):
        state = LoihiCubaState(torch.zeros(3, dtype=torch.int64), torch.zeros(3))
        loihi_cuba_lif(torch.zeros(2, 4, dtype=torch.int64), du=0, dv=0, vth=1, state=state)
    with pytest.raises(ShapeError, match=r"bias_mant of shape \(3,\) does not broadcast"):
        LoihiCubaLIFNode(du=0, dv=0, vth=1, bias_mant=torch.tensor([1, 2, 3]))(
            torch.zeros(2, 1, 4, dtype=torch.int64)
        )


def test_unsigned_integer_inputs_are_integers():
    # PyTorch's wide unsigned dtypes (uint16/32/64) are integers: they are accepted and
    # give the int64 result; only floats get the "integer tensor" error
    node = LoihiCubaLIFNode(du=100, dv=200, vth=5000, bias_mant=3, bias_exp=2)
    x = torch.randint(0, 3000, (6, 2, 5))
    expected = node(x)
    assert expected.any() and not expected.all()
    for dtype in (torch.uint8, torch.uint16, torch.uint32, torch.uint64):
        small = x.clamp(max=255) if dtype == torch.uint8 else x
        assert torch.equal(node(small.to(dtype)), node(small)), dtype
    with pytest.raises(ConfigurationError, match="uint64 values of 2"):
        node(torch.tensor([[2**63 + 5]], dtype=torch.uint64))
    with pytest.raises(DTypeError, match=r"integer tensor.*signed or unsigned.*torch.float16"):
        node(x.half())
