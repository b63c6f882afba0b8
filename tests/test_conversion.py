"""ANN-to-SNN conversion building blocks: BN folding, calibration, QCFS, neurons (methods.md 7)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from spikeflow.conversion import (
    QCFS,
    ActivationObserver,
    ConversionIFNode,
    GatedMaxPool,
    GroupNeuron,
    convert,
    fold_batchnorm,
    qcfs,
    quantile,
)
from spikeflow.errors import ConfigurationError, StateError
from spikeflow.functional import streaming

# -- batch-norm folding -------------------------------------------------------------------


def _random_bn(bn: nn.modules.batchnorm._BatchNorm) -> None:
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.2, 3)
        if bn.affine:
            bn.weight.uniform_(-2, 2)
            bn.bias.uniform_(-1, 1)
    bn.eval()


@pytest.mark.parametrize(
    ("layer", "bn", "shape"),
    [
        (lambda: nn.Conv2d(3, 5, 3, padding=1), lambda: nn.BatchNorm2d(5), (4, 3, 6, 6)),
        (
            lambda: nn.Conv2d(3, 5, 3, bias=False),
            lambda: nn.BatchNorm2d(5, affine=False),
            (4, 3, 6, 6),
        ),
        (lambda: nn.Conv1d(2, 4, 3), lambda: nn.BatchNorm1d(4), (4, 2, 9)),
        (lambda: nn.Conv3d(2, 3, 2), lambda: nn.BatchNorm3d(3, eps=1e-3), (2, 2, 4, 4, 4)),
        (lambda: nn.Linear(7, 6), lambda: nn.BatchNorm1d(6), (5, 7)),
    ],
)
def test_bn_folding_is_exact_in_float64(layer, bn, shape):
    lin, norm = layer().double(), bn().double()
    _random_bn(norm)
    x = torch.randn(*shape, dtype=torch.float64)
    fused = fold_batchnorm(lin, norm)
    torch.testing.assert_close(fused(x), norm(lin(x)), rtol=1e-12, atol=1e-12)
    assert fused is not lin and lin.weight.shape == fused.weight.shape


def test_bn_folding_refuses_batch_statistics():
    with pytest.raises(ConfigurationError, match="running statistics"):
        fold_batchnorm(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2, track_running_stats=False))


# -- calibration --------------------------------------------------------------------------


def test_quantile_matches_numpy_linear_interpolation():
    values = torch.rand(3, 101, dtype=torch.float64)
    values[1, 50:] = float("nan")  # ignored
    for q in (0.0, 0.5, 0.999, 0.9999, 1.0):
        got = quantile(values, q).numpy()
        want = [
            np.quantile(values[0].numpy(), q),
            np.quantile(values[1, :50].numpy(), q),
            np.quantile(values[2].numpy(), q),
        ]
        np.testing.assert_allclose(got, want, rtol=1e-12)
    assert torch.isnan(quantile(torch.full((1, 4), float("nan")), 0.5)).all()


def test_max_norm_per_layer_and_per_channel_by_hand():
    b1 = torch.tensor([[0.0, 2.0, 1.0], [3.0, 0.5, 0.0]])
    b2 = torch.tensor([[1.0, 4.0, 0.0], [0.0, 0.0, 0.0]])
    layer = ActivationObserver("max")
    channel = ActivationObserver("max", per_channel=True)
    for batch in (b1, b2):
        layer(batch)
        channel(batch)
    assert float(layer.scale()) == 4.0
    # channel 2 saw max 1.0; every channel positive, none silent
    assert channel.scale().tolist() == [3.0, 4.0, 1.0]
    # a silent channel takes its layer's largest scale
    silent = ActivationObserver("max", per_channel=True)
    silent(torch.tensor([[0.0, 2.0], [0.0, 1.0]]))
    assert silent.scale().tolist() == [2.0, 2.0] and silent.silent_channels == 1


def test_percentile_norm_by_hand():
    # positive values 1..10 (zeros are ignored): the 90th percentile of [1..10] with
    # linear interpolation is 1 + 0.9 * 9 = 9.1; the second batch [2, 4] gives 2 + 0.9*2.
    b1 = torch.tensor([[0.0, 1, 2, 3, 4], [5, 6, 7, 8, 0], [9, 10, 0, 0, 0]])
    b2 = torch.tensor([[0.0, 2.0], [4.0, 0.0]])
    obs = ActivationObserver("percentile", percentile=90.0)
    obs(b1)
    assert float(obs.scale()) == pytest.approx(9.1)
    obs(b2)  # batches are averaged with equal weight
    assert float(obs.scale()) == pytest.approx((9.1 + 3.8) / 2)
    # with the 5 zeros counted (SpikingJelly): 15 values, position 0.9 * 14 = 12.6
    # between the sorted values 8 and 9 -> 8.6
    with_zeros = ActivationObserver("percentile", percentile=90.0, include_zeros=True)
    with_zeros(b1)
    assert float(with_zeros.scale()) == pytest.approx(8.6)


def test_percentile_per_channel_conv_shape_by_hand():
    y = torch.zeros(2, 2, 2, 2)
    y[:, 0] = torch.tensor([1.0, 2.0, 3.0, 4.0]).reshape(2, 2)  # channel 0: 1,2,3,4 twice
    y[0, 1, 0, 0] = 5.0  # channel 1: a single positive value
    obs = ActivationObserver("percentile", percentile=50.0, per_channel=True)
    obs(y)
    scale = obs.scale()
    assert scale.shape == (2, 1, 1)
    assert scale.flatten().tolist() == pytest.approx([2.5, 5.0])


def test_fraction_and_moving_average_by_hand():
    b1 = torch.tensor([[0.0, 2.0, 1.0], [3.0, 0.5, 0.0]])  # max 3; channel maxima 3, 2, 1
    b2 = torch.tensor([[1.0, 4.0, 0.0], [0.0, 0.0, 0.0]])  # max 4; channel maxima 1, 4, 0
    half = ActivationObserver("max", fraction=0.5)
    ema = ActivationObserver("max", momentum=0.25)
    channel = ActivationObserver("max", per_channel=True, momentum=0.25)
    for batch in (b1, b2):
        half(batch)
        ema(batch)
        channel(batch)
    assert float(half.scale()) == 2.0  # 0.5 of the max over both batches
    assert float(ema.scale()) == pytest.approx(0.75 * 3 + 0.25 * 4)
    # a channel silent in one batch takes that batch's 0 into its average (SpikingJelly)
    assert channel.scale().tolist() == pytest.approx([2.5, 2.5, 0.75])
    # percentile: a channel with no positive value in a batch keeps its average
    b3 = torch.tensor([[2.0, 0.0], [4.0, 0.0]])  # channel 1 silent
    b4 = torch.tensor([[6.0, 1.0], [6.0, 3.0]])
    pct = ActivationObserver("percentile", percentile=50.0, per_channel=True, momentum=0.5)
    pct(b3)
    pct(b4)
    assert pct.scale().tolist() == pytest.approx([0.5 * 3.0 + 0.5 * 6.0, 2.0])
    with pytest.raises(ConfigurationError, match=r"fraction=0\.5 scales the max-norm"):
        ActivationObserver("percentile", fraction=0.5)
    with pytest.raises(ConfigurationError, match=r"fraction .* number in \(0, 1\]"):
        ActivationObserver("max", fraction=1.5)
    with pytest.raises(ConfigurationError, match=r"momentum=0\.1 averages the max or percentile"):
        ActivationObserver("ltb", momentum=0.1)
    with pytest.raises(ConfigurationError, match=r"momentum .* number in \(0, 1\]"):
        ActivationObserver("max", momentum=0.0)
    # a QCFS-only network has no ReLU scale to shape: the options would be ignored
    qcfs_only = nn.Sequential(nn.Linear(4, 6), QCFS(4), nn.Linear(6, 2)).eval()
    for options in ({"fraction": 0.5}, {"momentum": 0.1}):
        with pytest.raises(ConfigurationError, match="no ReLU to calibrate"):
            convert(qcfs_only, torch.rand(8, 4), **options)
        with pytest.raises(ConfigurationError, match="no ReLU to calibrate"):
            convert(qcfs_only, **options)
    mixed = nn.Sequential(nn.Linear(4, 6), QCFS(4), nn.Linear(6, 6), nn.ReLU()).eval()
    convert(mixed, torch.rand(8, 4), fraction=0.5, momentum=0.1)  # the ReLU takes them


def test_observer_without_data_and_bad_settings():
    with pytest.raises(StateError, match="no calibration data"):
        ActivationObserver().scale()
    with pytest.raises(ConfigurationError, match="norm"):
        ActivationObserver("mean")
    with pytest.raises(ConfigurationError, match="percentile"):
        ActivationObserver("percentile", percentile=120)


# -- QCFS ---------------------------------------------------------------------------------


def _qcfs_by_hand(z: float, lam: float, levels: int, shift: float) -> float:
    return lam * min(max(np.floor(z * levels / lam + shift) / levels, 0.0), 1.0)


def test_qcfs_forward_equals_the_formula():
    z = torch.linspace(-3, 12, 1001, dtype=torch.float64)
    for levels, lam, shift in ((8, 8.0, 0.5), (4, 2.5, 0.5), (16, 1.0, 0.0)):
        layer = QCFS(levels, lam, shift).double()
        got = layer(z)
        want = torch.tensor(
            [_qcfs_by_hand(float(v), lam, levels, shift) for v in z], dtype=torch.float64
        )
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
        # L+1 output values 0, λ/L, ..., λ
        assert set(torch.round(got * levels / lam).tolist()) <= set(range(levels + 1))


def test_qcfs_gradient_wrt_lambda_and_input():
    levels = 4
    lam = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    z = torch.tensor([-1.0, 0.05, 0.3, 0.9, 1.6, 2.6, 5.0], dtype=torch.float64, requires_grad=True)
    out = qcfs(z, lam, levels)
    grad_z, grad_lam = torch.autograd.grad(out.sum(), (z, lam))
    level = torch.floor(z.detach() * levels / lam.detach() + 0.5)
    inside = (level >= 0) & (level <= levels)  # torch.clamp passes gradient at its bounds
    h = out.detach()
    want_lam = torch.where(
        inside,
        h / lam.detach() - z.detach() / lam.detach(),
        torch.where(level > levels, 1.0, 0.0).double(),
    )
    # methods.md 7.2: h/λ - z/λ inside, 1 above the range, 0 below it
    torch.testing.assert_close(grad_lam, want_lam.sum())
    torch.testing.assert_close(grad_z, inside.double())
    # Where the function is differentiable in the classical sense (saturated regions,
    # floor constant), autograd equals the numerical derivative: gradcheck it there.
    for zs in ([-1.0, -0.7], [5.0, 7.5]):
        zt = torch.tensor(zs, dtype=torch.float64, requires_grad=True)
        lt = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda a, b: qcfs(a, b, levels), (zt, lt))


def test_qcfs_trains_lambda_and_validates():
    layer = QCFS(levels=4, threshold=1.0)
    layer(torch.full((3,), 5.0)).sum().backward()
    assert layer.threshold.grad == pytest.approx(3.0)  # above the range: ∂h/∂λ = 1
    assert "levels=4" in repr(layer)
    with pytest.raises(ConfigurationError, match="levels"):
        QCFS(levels=0)
    with pytest.raises(ConfigurationError, match="threshold"):
        QCFS(threshold=-1.0)
    assert not isinstance(QCFS(learnable=False).threshold, nn.Parameter)


# -- the conversion neurons ---------------------------------------------------------------


@pytest.mark.parametrize("levels", [1, 2, 4, 8, 16])
def test_qcfs_theorem_one_layer_exact(levels):
    """θ = λ, V0 = λ/2, soft reset, T = L: the mean output is QCFS exactly (methods.md 7.2)."""
    lam = 1.7
    z = torch.rand(2000, dtype=torch.float64) * 3.5 - 1.0
    neuron = ConversionIFNode(lam, initial_membrane=0.5, backend="torch")
    rate = neuron(z.unsqueeze(0).expand(levels, -1)).mean(0)
    torch.testing.assert_close(rate, qcfs(z, lam, levels), rtol=0, atol=1e-12)


def test_conversion_if_node_matches_hand_trace_and_fused_backend():
    # θ = 2, V0 = 0: inputs 1.5, 1.5, 0.5, 3.0 -> v 1.5 | 3.0 fire -> 1.0 | 1.5 | 4.5 fire -> 2.5
    x = torch.tensor([[1.5], [1.5], [0.5], [3.0]], dtype=torch.float64)
    neuron = ConversionIFNode(2.0, backend="torch")
    assert neuron(x).flatten().tolist() == [0.0, 2.0, 0.0, 2.0]
    theta = torch.tensor([[1.0], [0.5]])  # per-channel of [B, C, 1]
    data = torch.rand(16, 3, 2, 1)
    ref = ConversionIFNode(theta, 0.5, backend="torch")(data)
    auto = ConversionIFNode(theta, 0.5, backend="auto")(data)
    torch.testing.assert_close(auto, ref)
    with pytest.raises(ConfigurationError):
        ConversionIFNode(2.0, initial_membrane=1.5)
    with pytest.raises(ConfigurationError):
        ConversionIFNode(2.0, v_reset=0.0)


def test_group_neuron_hand_computed_example():
    # θ = 1, m = 4: unit 0.25, V0 = 0.125. x = 0.6, 0.6, 0.1
    # t1: v = 0.725 -> members at 0.25, 0.5 fire (c=2), v = 0.225, out 0.5
    # t2: v = 0.825 -> c=3 (0.25, 0.5, 0.75), v = 0.075, out 0.75
    # t3: v = 0.175 -> c=0, out 0
    neuron = GroupNeuron(1.0, members=4)
    x = torch.tensor([0.6, 0.6, 0.1], dtype=torch.float64).reshape(3, 1)
    torch.testing.assert_close(
        neuron(x).flatten(), torch.tensor([0.5, 0.75, 0.0], dtype=torch.float64)
    )
    # at most m spikes per step: a huge input gives c = m every step
    assert neuron(torch.full((3, 1), 10.0)).flatten().tolist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize(("members", "steps"), [(1, 8), (4, 2), (4, 4), (6, 3)])
def test_group_neuron_is_qcfs_with_t_times_m_levels(members, steps):
    lam = 1.3
    # random points: a point exactly on a level boundary is decided by rounding
    z = torch.rand(2000, dtype=torch.float64) * 2.5 - 0.5
    neuron = GroupNeuron(lam, members=members)
    rate = neuron(z.unsqueeze(0).expand(steps, -1)).mean(0)
    torch.testing.assert_close(rate, qcfs(z, lam, steps * members), rtol=0, atol=1e-12)
    if members == 1:  # a group of one is the IF neuron with V0 = θ/2
        ifn = ConversionIFNode(lam, 0.5, backend="torch")(z.unsqueeze(0).expand(steps, -1))
        torch.testing.assert_close(neuron(z.unsqueeze(0).expand(steps, -1)), ifn)


def test_group_neuron_streaming_equals_whole_sequence():
    neuron = GroupNeuron(torch.tensor([[1.0], [2.0]]), members=3)
    x = torch.rand(6, 4, 2, 1) * 2
    whole = neuron(x)
    with streaming(neuron):
        parts = torch.cat([neuron(x[:2]), neuron(x[2:])])
    torch.testing.assert_close(parts, whole)


def test_gated_max_pool_passes_the_highest_count():
    # window of 2 inputs: a fires at t=0,2 ; b fires at t=1,2,3 -> counts a:1,1,2,2  b:0,1,2,3
    a = torch.tensor([1.0, 0.0, 1.0, 0.0])
    b = torch.tensor([0.0, 1.0, 1.0, 1.0])
    x = torch.stack([a, b], dim=-1).reshape(4, 1, 1, 2)  # [T, B, C, L]
    out = GatedMaxPool(2, spatial_dims=1)(x).flatten()
    # t0: a leads (1>0) -> a=1; t1: tie 1,1 -> first (a) -> 0; t2: tie 2,2 -> a -> 1; t3: b
    assert out.tolist() == [1.0, 0.0, 1.0, 1.0]
    # the rate converges to the larger input rate; a plain max of spikes overestimates it
    torch.manual_seed(0)
    rates = torch.tensor([0.3, 0.6, 0.45, 0.1])
    spikes = (torch.rand(4000, 1, 1, 4) < rates).float()
    pooled = GatedMaxPool(4, spatial_dims=1)(spikes).mean(0).item()
    assert abs(pooled - 0.6) < 0.03
    assert spikes.amax(-1).mean().item() > 0.75


# -- one check per kind of argument, shared by every class ------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda t: ConversionIFNode(t),
        lambda t: GroupNeuron(t, 4),
        lambda t: QCFS(threshold=t),
    ],
    ids=["ConversionIFNode", "GroupNeuron", "QCFS"],
)
@pytest.mark.parametrize("bad", [0.0, -1.0, float("inf"), float("nan"), "1", True])
def test_thresholds_are_checked_alike(make, bad):
    """Every class rejects the same thresholds with the same message (infinite ones too)."""
    with pytest.raises(ConfigurationError, match="threshold"):
        make(bad)


@pytest.mark.parametrize("make", [lambda t: ConversionIFNode(t), lambda t: GroupNeuron(t, 2)])
def test_tensor_thresholds_are_checked_alike(make):
    make(torch.tensor([[1.0], [2.0]]))
    for bad in (torch.tensor([1.0, 0.0]), torch.tensor([1.0, float("inf")])):
        with pytest.raises(ConfigurationError, match="thresholds must be finite and > 0"):
            make(bad)


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "3"])
def test_counts_are_checked_alike(bad):
    from spikeflow.conversion import constant_input, convert

    checks = [
        (lambda: GroupNeuron(1.0, bad), "members \\(m\\) must be an integer >= 1"),
        (lambda: QCFS(levels=bad), "levels \\(L\\) must be an integer >= 1"),
        (lambda: constant_input(torch.ones(2), bad), "steps \\(T\\) must be an integer >= 1"),
        (
            lambda: convert(nn.Sequential(QCFS()), group_size=bad),
            "group_size must be None or an integer >= 1",
        ),
    ]
    for make, message in checks:
        with pytest.raises(ConfigurationError, match=message):
            make()


def test_graph_helpers_are_public_and_shared():
    import importlib

    from torch import fx

    from spikeflow.conversion import classify, fold

    convert_module = importlib.import_module("spikeflow.conversion.convert")

    assert classify.is_nonlinear_name("torch.nn.functional.gelu")
    assert classify.is_nonlinear_name("tanh_") and not classify.is_nonlinear_name("relu")
    assert "sigmoid" in classify.NONLINEAR_WORDS
    # convert.py uses the public names (no private import across modules, no copies)
    for private in ("_NONLINEAR_WORDS", "_set_path"):
        assert not hasattr(convert_module, private)
    assert not hasattr(fold, "_set_submodule")

    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.block = nn.Sequential(nn.Linear(2, 2), nn.ReLU())

        def forward(self, x):
            return self.block(self.block(x))

    gm = fx.symbolic_trace(Twice())
    assert fold.module_call_counts(gm) == {"block.0": 2, "block.1": 2}
    fold.set_submodule(gm, "block.1", nn.Identity())
    assert isinstance(gm.get_submodule("block.1"), nn.Identity)
