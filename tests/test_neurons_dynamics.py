"""Hand-computed membrane and spike sequences for IF, LIF and PLIF."""

from __future__ import annotations

import pytest
import torch

from spikeflow.neurons import IFNode, LIFNode, ParametricLIFNode


def run(node, xs):
    node.store_v_seq = True
    x = torch.tensor(xs, dtype=torch.float64).view(-1, 1)
    s = node(x)
    return s.view(-1).tolist(), node.v_seq.view(-1).tolist()


def test_if_hard_reset():
    s, v = run(IFNode(), [0.5, 0.6, 0.2, 1.0])
    assert s == [0, 1, 0, 1]
    assert v == pytest.approx([0.5, 0.0, 0.2, 0.0])


def test_if_soft_reset():
    s, v = run(IFNode(v_reset=None), [0.5, 0.6, 0.2, 1.0])
    assert s == [0, 1, 0, 1]
    assert v == pytest.approx([0.5, 0.1, 0.3, 0.3])


def test_if_threshold_and_reset_values():
    # theta 2, hard reset to -1: V0 = -1.
    s, v = run(IFNode(v_threshold=2.0, v_reset=-1.0), [1.5, 1.5, 1.0, 0.5])
    # H: 0.5, 2.0 (fire) -> -1, 0.0, 0.5
    assert s == [0, 1, 0, 0]
    assert v == pytest.approx([0.5, -1.0, 0.0, 0.5])


def test_strict_firing_only_above_threshold():
    assert run(IFNode(), [1.0])[0] == [1]
    assert run(IFNode(strict_firing=True), [1.0])[0] == [0]
    assert run(IFNode(strict_firing=True), [1.0 + 1e-9])[0] == [1]


def test_lif_decay_input_true():
    # H = V + (X - V)/2
    s, v = run(LIFNode(tau=2.0), [1.0, 1.0, 1.0, 2.0])
    assert s == [0, 0, 0, 1]
    assert v == pytest.approx([0.5, 0.75, 0.875, 0.0])


def test_lif_decay_input_false():
    # H = V - V/2 + X
    s, v = run(LIFNode(tau=2.0, decay_input=False), [0.6, 0.6, 0.6, 0.1])
    assert s == [0, 0, 1, 0]
    assert v == pytest.approx([0.6, 0.9, 0.0, 0.1])


def test_lif_leaks_towards_v_reset():
    # V0 = V_r = -0.5; H = V + (X - (V - V_r))/4 ; with X = 0 the membrane stays at V_r.
    s, v = run(LIFNode(tau=4.0, v_reset=-0.5), [0.0, 2.0, 0.0])
    # step 2: H = -0.5 + 2/4 = 0.0 ; step 3: H = 0 + (0 - 0.5)/4 = -0.125
    assert s == [0, 0, 0]
    assert v == pytest.approx([-0.5, 0.0, -0.125])


def test_lif_soft_reset_leaks_towards_zero():
    s, v = run(LIFNode(tau=2.0, v_reset=None), [3.0, 0.0])
    # H1 = 1.5 -> fire, V = 0.5 ; H2 = 0.5 - 0.25 = 0.25
    assert s == [1, 0]
    assert v == pytest.approx([0.5, 0.25])


@pytest.mark.parametrize("decay_input", [True, False])
def test_plif_matches_lif_at_init_tau(decay_input):
    x = torch.rand(16, 3, 5, dtype=torch.float64) * 1.5
    for tau in (2.0, 3.0, 10.0):
        lif = LIFNode(tau=tau, decay_input=decay_input)
        plif = ParametricLIFNode(init_tau=tau, decay_input=decay_input).double()
        lif.store_v_seq = plif.store_v_seq = True
        assert torch.equal(lif(x), plif(x))
        torch.testing.assert_close(lif.v_seq, plif.v_seq)
        assert plif.current_tau == pytest.approx(tau)


def test_plif_hand_computed_tau_4():
    # 1/tau = 0.25 ; H = V + (X - V)/4
    s, v = run(ParametricLIFNode(init_tau=4.0).double(), [2.0, 2.0, 2.0])
    # H: 0.5, 0.5 + 0.375 = 0.875, 0.875 + 0.28125 = 1.15625 -> fire
    assert s == [0, 0, 1]
    assert v == pytest.approx([0.5, 0.875, 0.0])


def test_plif_has_one_scalar_parameter_per_layer():
    plif = ParametricLIFNode(init_tau=2.0)
    params = dict(plif.named_parameters())
    assert list(params) == ["w"]
    assert params["w"].shape == ()
    assert params["w"].item() == pytest.approx(0.0)


def test_per_channel_threshold_equals_separate_neurons():
    theta = torch.tensor([0.5, 1.0, 2.0]).view(3, 1, 1)
    x = torch.rand(6, 2, 3, 4, 4) * 1.2
    out = LIFNode(v_threshold=theta)(x)
    for c in range(3):
        ref = LIFNode(v_threshold=float(theta[c]))(x[:, :, c])
        assert torch.equal(out[:, :, c], ref)


def test_output_is_binary_and_keeps_dtype():
    for dtype in (torch.float32, torch.float64, torch.bfloat16, torch.float16):
        x = (torch.rand(5, 3, 7) * 2).to(dtype)
        s = LIFNode()(x)
        assert s.dtype == dtype
        assert set(s.unique().tolist()) <= {0.0, 1.0}
