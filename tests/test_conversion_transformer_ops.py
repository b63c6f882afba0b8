"""The parts of a converted Transformer: the signed bounded IF neuron and its quantiser
(spikeflow.conversion.signed), the temporal-difference operators
(spikeflow.conversion.temporal), each against a loop or formula written from its rule
and against SpikingJelly 2.0's STBIFNode and TD operators."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spikeflow.conversion import QCFS
from spikeflow.conversion.signed import SignedIFNeuron, SymmetricQuant, symmetric_quant
from spikeflow.conversion.temporal import (
    SpikeProduct,
    StepBias,
    TemporalDifference,
    impulse_input,
)
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.functional import streaming

F64 = torch.float64


def signed_if_loop(x_seq, theta, low, high, shift=0.5):
    """The ST-BIF rule, one neuron at a time in plain Python floats (the membrane counted
    in thresholds, as SpikeZIP-TF's and SpikingJelly's: ``x/θ + φ``, then ``+ x/θ``)."""
    out = torch.zeros_like(x_seq)
    for index in range(x_seq[0].numel()):
        u, count = 0.0, 0
        for t in range(x_seq.shape[0]):
            x = float(x_seq[t].reshape(-1)[index])
            u = x / theta + shift if t == 0 else u + x / theta
            spike = 1 if (u >= 1 and count < high) else -1 if (u < 0 and count > low) else 0
            u -= spike
            count += spike
            out[t].reshape(-1)[index] = spike * theta
    return out


def running(seq):
    """``X_t`` and ``X_{t-1}`` of a stream ``[T, ...]``."""
    now = seq.cumsum(0)
    return now, now - seq


@pytest.mark.parametrize(("low", "high"), [(-3, 3), (0, 5), (-2, 4)])
def test_signed_if_neuron_follows_its_rule(low, high):
    torch.manual_seed(0)
    x = torch.randn(12, 3, 5, dtype=F64) * 0.8
    neuron = SignedIFNeuron(0.37, levels=high, min_level=low)
    out = neuron(x)
    torch.testing.assert_close(out, signed_if_loop(x, 0.37, low, high), rtol=0, atol=1e-15)
    # the same steps one at a time, streamed
    with streaming(neuron):
        neuron.step_mode = "s"
        steps = torch.stack([neuron(x_t) for x_t in x])
    torch.testing.assert_close(steps, out, rtol=0, atol=0)


def test_signed_if_neuron_settles_on_the_quantised_value():
    torch.manual_seed(1)
    x = torch.randn(4, 50, dtype=F64) * 2
    quantiser = SymmetricQuant(levels=4, scale=0.29)
    neuron = SignedIFNeuron.from_quantizer(quantiser)
    total = neuron(impulse_input(x, 10)).cumsum(0)
    expected = quantiser(x).detach()
    torch.testing.assert_close(total[-1], expected, rtol=0, atol=1e-12)
    assert (total[0] - expected).abs().max() > 0.5  # one spike a step: not there at t = 1
    # a stream whose running sum wanders before it settles ends the same way
    wander = torch.randn(6, 4, 50, dtype=F64)
    wander = torch.cat([wander, (x - wander.sum(0)).unsqueeze(0), x.new_zeros(10, 4, 50)])
    torch.testing.assert_close(neuron(wander).sum(0), expected, rtol=0, atol=1e-12)


def test_signed_if_neuron_rounds_ties_as_the_quantiser():
    # x/θ + 1/2 exactly an integer n (dyadic values: no rounding): floor gives n, so at
    # v = 0 the neuron must not fire a negative spike
    x = torch.tensor([[-0.75, -0.25, 0.0, 0.25, 0.75, 1.25]], dtype=F64)
    total = SignedIFNeuron(0.5, levels=4)(impulse_input(x, 8)).sum(0)
    expected = symmetric_quant(x, 0.5, 4)
    torch.testing.assert_close(total, expected, rtol=0, atol=0)
    torch.testing.assert_close(expected, torch.tensor([[-0.5, 0.0, 0.0, 0.5, 1.0, 1.5]], dtype=F64))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_signed_if_neuron_rounds_as_the_quantiser_within_an_ulp_of_ties(dtype):
    """A step that the dtype cannot hold (0.1) and inputs at, and one ulp either side
    of, each tie ``(k + 1/2)·s``: sent at one step, the neuron's count is the
    quantiser's ``floor(x/s + 1/2)`` however the rounding falls (SpikingJelly's
    ``STBIFNode``, which also counts in thresholds, agrees in float32)."""
    s = torch.tensor(0.1, dtype=dtype)
    ties = (torch.arange(-9, 9, dtype=dtype) + 0.5) * s
    x = torch.cat([ties, torch.nextafter(ties, ties + 1), torch.nextafter(ties, ties - 1)])
    spikes = SignedIFNeuron(s, levels=8, min_level=-9)(impulse_input(x, 20))
    counts = (spikes / s).round().sum(0)
    expected = torch.clamp(torch.floor(x / s + 0.5), -9, 8)
    torch.testing.assert_close(counts, expected, rtol=0, atol=0)
    assert len(set(expected.tolist())) == 18  # every level reached


def test_a_negative_learned_scale_acts_as_its_magnitude():
    quantiser = SymmetricQuant(levels=3, scale=0.3).double()
    with torch.no_grad():
        quantiser.scale.neg_()  # where training may push it
    x = torch.linspace(-1.37, 1.41, 11, dtype=F64)
    expected = symmetric_quant(x, -quantiser.scale.detach(), 3)
    torch.testing.assert_close(quantiser(x).detach(), expected, rtol=0, atol=0)
    assert expected.abs().max() > 0.8
    neuron = SignedIFNeuron.from_quantizer(quantiser)
    assert float(neuron.v_threshold) == pytest.approx(0.3)


def test_qcfs_neuron_reproduces_qcfs():
    torch.manual_seed(2)
    x = torch.randn(3, 40, dtype=F64) * 3
    layer = QCFS(levels=6, threshold=2.3).double()
    total = SignedIFNeuron.from_quantizer(layer)(impulse_input(x, 9)).sum(0)
    torch.testing.assert_close(total, layer(x).detach(), rtol=0, atol=1e-12)


def test_symmetric_quant_values_and_scale_gradient():
    x = torch.tensor([-3.0, -0.7, -0.1, 0.0, 0.2, 0.5, 1.1, 9.0], dtype=F64)
    scale = torch.tensor(0.4, dtype=F64, requires_grad=True)
    y = symmetric_quant(x, scale, 3)
    # floor(x/0.4 + 1/2) = -7, -2, 0, 0, 1, 1, 3, 23 -> clipped to [-3, 3]
    expected = torch.tensor([-3, -2, 0, 0, 1, 1, 3, 3], dtype=F64) * 0.4
    torch.testing.assert_close(y.detach(), expected, rtol=0, atol=1e-15)
    (grad,) = torch.autograd.grad(y.sum(), scale)
    # inside the range d/ds = n - x/s (straight-through floor), at a bound the bound
    inside = torch.tensor([False, True, True, True, True, True, True, False])
    n = expected / 0.4
    by_hand = torch.where(inside, n - x / 0.4, n).sum()
    torch.testing.assert_close(grad, by_hand, rtol=1e-12, atol=1e-12)
    # unsigned: floor(x/0.5 + 1/2) = -6, -1, 0, 0, 0, 1, 2, 18 -> clipped to [0, 2]
    unsigned = SymmetricQuant(levels=2, scale=0.5, min_level=0)(x).detach()
    expected = torch.tensor([0, 0, 0, 0, 0, 1, 2, 2], dtype=torch.get_default_dtype()) * 0.5
    torch.testing.assert_close(unsigned, expected.to(unsigned.dtype), rtol=0, atol=1e-7)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: SymmetricQuant(levels=0), "levels"),
        (lambda: SymmetricQuant(min_level=1), "min_level"),
        (lambda: SymmetricQuant(shift=1.0), "shift"),
        (lambda: SymmetricQuant(scale=-1.0), "scale"),
        (lambda: SignedIFNeuron(0.0), "threshold"),
        (lambda: SignedIFNeuron.from_quantizer(nn.ReLU()), "ReLU"),
        (lambda: SpikeProduct("add"), "op"),
        (lambda: StepBias(nn.LayerNorm(3)), "LayerNorm"),
        (lambda: TemporalDifference(3), "callable"),
    ],
)
def test_bad_arguments_are_named(make, message):
    with pytest.raises(ConfigurationError, match=message):
        make()


def test_bad_streams_are_named():
    with pytest.raises(ShapeError, match=r"\[T, B, \.\.\.\]"):
        TemporalDifference(torch.tanh)(torch.ones(3))
    with pytest.raises(ShapeError, match="time steps"):
        TemporalDifference(torch.add)(torch.ones(3, 2), torch.ones(4, 2))
    with pytest.raises(ConfigurationError, match="without a stream"):
        TemporalDifference(torch.tanh, streams=())(torch.ones(3, 2))
    with pytest.raises(DTypeError, match="an index or a mask"):
        TemporalDifference(lambda x: x.argmax(-1))(torch.randn(3, 2, 4))
    with pytest.raises(DTypeError, match="floating-point"):
        SpikeProduct()(torch.ones(2, 2, 2, dtype=torch.long), torch.ones(2, 2, 2))


@pytest.mark.parametrize(
    "fn",
    [
        nn.LayerNorm(6, dtype=F64),
        nn.Softmax(-1),
        nn.GELU(),
        torch.tanh,
    ],
)
def test_temporal_difference_is_the_change_of_f_on_running_sums(fn):
    torch.manual_seed(3)
    x = torch.randn(7, 2, 4, 6, dtype=F64)
    if isinstance(fn, nn.LayerNorm):
        with torch.no_grad():
            fn.weight.normal_()
            fn.bias.normal_()
    out = TemporalDifference(fn)(x)
    now, before = running(x)
    f = lambda s: fn(s.flatten(0, 1)).unflatten(0, s.shape[:2])  # noqa: E731
    expected = f(now) - f(before)
    expected[0] = f(now)[0]
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out.sum(0), f(now)[-1], rtol=1e-12, atol=1e-12)


def test_temporal_difference_passes_constants_unchanged():
    torch.manual_seed(4)
    x = torch.randn(5, 3, 2, 4, dtype=F64)
    token = torch.randn(1, 1, 4, dtype=F64).expand(15, 1, 4)  # [T*B, 1, C], as a graph has
    op = TemporalDifference(lambda t, s: torch.cat([t, s], dim=1), streams=[1])
    out = op(token, x)  # the class token once, then the changes of x
    assert out.shape == (5, 3, 3, 4)
    torch.testing.assert_close(out[0, :, :1], token[:3], rtol=0, atol=0)
    torch.testing.assert_close(out[1:, :, :1], torch.zeros(4, 3, 1, 4, dtype=F64))
    torch.testing.assert_close(out[:, :, 1:], x, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("op", "shapes"), [("matmul", ((3, 4), (4, 2))), ("mul", ((3, 4),) * 2)])
def test_spike_product_is_the_change_of_the_product(op, shapes):
    torch.manual_seed(5)
    a = torch.randint(-1, 2, (6, 2, *shapes[0])).to(F64) * 0.3  # spikes of ±θ
    b = torch.randn(6, 2, *shapes[1], dtype=F64)
    out = SpikeProduct(op)(a, b)
    fn = torch.matmul if op == "matmul" else torch.mul
    (a_now, a_before), (b_now, b_before) = running(a), running(b)
    expected = fn(a_now, b_now) - fn(a_before, b_before)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "layer", [nn.Linear(5, 3, dtype=F64), nn.Conv2d(2, 3, 3, padding=1, dtype=F64)]
)
def test_step_bias_sums_to_the_layer_on_the_running_sum(layer):
    torch.manual_seed(6)
    shape = (4, 2, 5) if isinstance(layer, nn.Linear) else (4, 2, 2, 5, 5)
    x = torch.randn(*shape, dtype=F64)
    out = StepBias(layer)(x).detach()
    expected = layer(x.cumsum(0).flatten(0, 1)).unflatten(0, x.shape[:2]).detach()
    torch.testing.assert_close(out.cumsum(0), expected, rtol=1e-12, atol=1e-12)
    # no bias after the first step
    no_bias = layer.bias.reshape((-1,) + (1,) * (x.dim() - 3) if x.dim() > 3 else (-1,))
    torch.testing.assert_close(out[1:], (layer(x[1:].flatten(0, 1)).detach() - no_bias)
                               .unflatten(0, (3, 2)), rtol=1e-12, atol=1e-12)  # fmt: skip


# -- SpikingJelly 2.0 ----------------------------------------------------------------


def test_signed_if_neuron_matches_spikingjelly_stbif():
    sj = pytest.importorskip(
        "spikingjelly.activation_based.neuron", reason="SpikingJelly is a test-only peer"
    )
    torch.manual_seed(7)
    x = torch.randn(15, 3, 8) * 0.7
    theirs = sj.STBIFNode(0.3, level=8, sym=True, step_mode="m")  # counts -4..3
    ours = SignedIFNeuron(0.3, levels=3, min_level=-4)
    with torch.no_grad():
        expected = theirs(x)
    torch.testing.assert_close(ours(x), expected, rtol=0, atol=1e-6)
    assert expected.abs().sum() > 0 and (expected < 0).any()


def test_temporal_difference_matches_spikingjelly_td_operators():
    ops = pytest.importorskip(
        "spikingjelly.activation_based.ann2snn.operators", reason="SpikingJelly is a test-only peer"
    )
    torch.manual_seed(8)
    x = torch.randn(6, 2, 3, 5, dtype=F64)
    y = torch.randn(6, 2, 5, 4, dtype=F64)
    norm = nn.LayerNorm(5, dtype=F64)
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    sj_norm = ops.TDLayerNorm(5).double()
    sj_norm.load_state_dict(norm.state_dict(), strict=False)
    pairs = [
        (TemporalDifference(norm)(x), sj_norm(x)),
        (TemporalDifference(nn.Softmax(-1))(x), ops.TDSoftmax(-1)(x)),
        (TemporalDifference(nn.GELU())(x), ops.TDGELU()(x)),
        (SpikeProduct("matmul")(x, y), ops.SNNMatrixOperator()(x, y)),
    ]
    for ours, theirs in pairs:
        torch.testing.assert_close(ours.detach(), theirs.detach(), rtol=1e-12, atol=1e-12)
    assert F.gelu(x).abs().sum() > 0
