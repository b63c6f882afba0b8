"""Lava-DL's ``slayer.block.cuba.KWTA`` and ``TimeDecimation`` as ``layers.KWTA`` (then
``layers.Delay(1)``) and ``layers.TimeDecimation``: spikes and gradients equal to Lava-DL's
code transcribed, in float64.

Source (read, not copied): ``lava-nc/lava-dl`` ``src/lava/lib/dl/slayer/block/base.py``
at ``0174ac5c8feca7b99b86f44209e567d216caef66``: ``AbstractKWTA.forward`` (``z =
synapse(x)``; ``clamp()`` puts ``a`` in [0, 1]; ``R = (1 + a) I - 1`` and the bias
``threshold (N - 2K) / N / w_scale``, both through ``neuron.quantize_8bit``; per step the
neuron, persistent within the call, on ``z[t] + R s[t-1] + bias`` from ``s = 0``; then
``delay(x, 1)``) and ``AbstractTimeDecimation.forward`` (zero padding to a multiple of the
factor, then the mean of each run). Its CUBA neuron is written with its floating-point
dynamics (``u = (1 - du) u + in``, ``v = (1 - dv) v + u``, spike where ``v >= θ``, then
``v = 0`` there), as ``tests/test_neurons_learnable_tau_peers.py`` checks spikeflow's
``CubaLIFNode`` against it; the spike's gradient is the spikeflow node's surrogate, so that
the gradients can be compared.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from spikeflow import functional, layers, neurons
from spikeflow.errors import ConfigurationError, ShapeError

THETA = 1.25  # on Lava-DL's threshold grid int(64 θ) / 64
DU, DV = 0.25, 0.125  # on its 1/4096 decay grid


def _node() -> neurons.CubaLIFNode:
    """The ``cuba.Neuron(threshold=THETA, current_decay=DU, voltage_decay=DV)`` mapping."""
    return neurons.CubaLIFNode(
        tau_syn=1 / DU,
        tau_mem=1 / DV,
        r="tau_syn*tau_mem",
        v_threshold=THETA + 0.01 / 4096,
        v_reset=0.0,
        detach_reset=True,
        step_mode="s",
    )


def _q8(x: torch.Tensor, w_scale: int = 64) -> torch.Tensor:
    """Lava-DL's ``quantize_8bit``: round to steps of ``2 / w_scale`` (straight through),
    then ``clamp(-256 / w_scale, 254 / w_scale)`` (``neuron/base.py``)."""
    step = 2 / w_scale
    q = x + (torch.round(x.detach() / step) * step - x.detach())
    return torch.clamp(q, -256 / w_scale, 254 / w_scale)


def _lava_kwta(x_nct, weight, a, num_winners, surrogate, v_th, quantize=True, detach=True):
    """Lava-DL's KWTA block over time-last ``x[n, c, t]`` with a float CUBA neuron;
    returns the delayed spikes ``[N, out, T]``. The neuron runs one step per call with
    ``persistent_state=True``, which it stores under ``no_grad`` (``neuron/cuba.py``;
    ``_LIDynamics.backward`` gives the state no gradient): ``detach`` cuts ``u`` and
    ``v`` between steps as it does (``False``: full BPTT, spikeflow's option)."""
    n_out = weight.shape[0]
    z = torch.einsum("oc,nct->not", weight, x_nct)
    a = a.clamp(0, 1)  # clamp() acts on .data: the gradient is a's own
    rec_w = (1 + a) * torch.eye(n_out, dtype=z.dtype) - 1
    theta = int(THETA * 64) / 64  # neuron.threshold, on its 1/w_scale grid
    rec_b = torch.tensor(theta * (n_out - 2 * num_winners) / n_out / 64, dtype=z.dtype)
    if quantize:
        rec_w, rec_b = _q8(rec_w), _q8(rec_b)
    u = torch.zeros_like(z[..., 0])
    v = torch.zeros_like(z[..., 0])
    s = torch.zeros_like(z[..., 0])
    out = []
    for t in range(z.shape[-1]):
        inp = z[..., t] + s @ rec_w.T + rec_b
        if detach:
            u, v = u.detach(), v.detach()
        u = (1 - DU) * u + inp
        v = (1 - DV) * v + u
        soft = surrogate(v - v_th)
        s = (v >= THETA).to(z.dtype) + (soft - soft.detach())
        v = v * (1 - s.detach())
        out.append(s)
    x = torch.stack(out, -1)
    return torch.nn.functional.pad(x, (1, 0))[..., :-1]  # delay(x, 1)


def _spikeflow_kwta(weight, a, num_winners, quantize=True, detach=True):
    kwta = layers.KWTA(
        _node(),
        weight.shape[1],
        weight.shape[0],
        num_winners,
        self_excitation=a,
        threshold=THETA,
        quantize=quantize,
        detach_neuron_state=detach,
    ).double()
    with torch.no_grad():
        kwta.synapse.weight.copy_(weight)
    return kwta


@pytest.mark.parametrize(
    "quantize,detach", [(True, True), (False, True), (True, False), (False, False)]
)
@pytest.mark.parametrize("a0,k", [(0.5, 2), (0.3, 5), (0.8, 1)])
def test_kwta_spikes_and_gradients_equal_lava(quantize, detach, a0, k):
    torch.manual_seed(k)
    n_in, n_out, steps, batch = 24, 12, 40, 3
    weight = torch.randn(n_out, n_in, dtype=torch.float64) * 0.6
    x = (torch.rand(steps, batch, n_in, dtype=torch.float64) < 0.3).double()

    net = nn.Sequential(_spikeflow_kwta(weight, a0, k, quantize, detach), layers.Delay(1))
    y = net(x)
    kwta = net[0]
    w_ref = weight.clone().requires_grad_(True)
    # a0 as the module holds it (a float32 parameter made float64 by .double())
    a_ref = kwta.self_excitation.detach().clone().requires_grad_(True)
    node = kwta.sub_module
    ref = _lava_kwta(
        x.permute(1, 2, 0),
        w_ref,
        a_ref,
        k,
        node.surrogate_function,
        node.v_threshold,
        quantize,
        detach,
    )
    ref = ref.permute(2, 0, 1)
    assert y.sum() > 10, "the check needs spikes"
    assert torch.equal(y, ref)

    g = torch.randn_like(y)
    (y * g).sum().backward()
    (ref * g).sum().backward()
    assert kwta.self_excitation.grad.abs() > 0
    torch.testing.assert_close(kwta.synapse.weight.grad, w_ref.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(kwta.self_excitation.grad, a_ref.grad, rtol=1e-10, atol=1e-12)


def test_kwta_clamps_self_excitation_as_lava():
    """Lava-DL's clamp(): an ``a`` pushed outside [0, 1] by a step is put back."""
    torch.manual_seed(0)
    weight = torch.randn(6, 8, dtype=torch.float64)
    kwta = _spikeflow_kwta(weight, 0.5, 2)
    with torch.no_grad():
        kwta.self_excitation.fill_(1.7)
    x = (torch.rand(10, 2, 8, dtype=torch.float64) < 0.5).double()
    y = kwta(x)
    assert kwta.self_excitation.item() == 1.0
    ref = _lava_kwta(
        x.permute(1, 2, 0),
        weight,
        torch.tensor(1.0, dtype=torch.float64),
        2,
        kwta.sub_module.surrogate_function,
        kwta.sub_module.v_threshold,
    )
    assert torch.equal(torch.cat([y.new_zeros(1, 2, 6), y[:-1]]), ref.permute(2, 0, 1))


@pytest.mark.parametrize("k", [1, 2, 4])
def test_kwta_winners_on_a_constant_input(k):
    """A steady input with ranked drives: after a transient only the few most driven
    neurons keep firing (the others are held down by their spikes), where without the
    recurrence every neuron fires. How many win is set by the drive and ``a``: ``K``
    enters only through the bias θ(N - 2K)/(N w_scale), here 1/32 for K = 1 and 0 on the
    8-bit grid otherwise (Lava-DL's formula; see docs/neuron_zoo_lava.md)."""
    n = 16
    torch.manual_seed(k)
    kwta = layers.KWTA(_node(), n, n, k, self_excitation=0.5, threshold=THETA).double()
    with torch.no_grad():
        kwta.synapse.weight.copy_(torch.eye(n, dtype=torch.float64))
    drive = torch.linspace(1.0, 2.0, n, dtype=torch.float64)[torch.randperm(n)]
    x = drive.expand(300, 1, n).clone()
    with torch.no_grad():
        y = kwta(x)
    active = (y[150:].sum(0) > 0).squeeze(0)
    winners = int(active.sum())
    assert 1 <= winners <= 4
    top = torch.topk(drive, winners).indices
    assert set(active.nonzero().flatten().tolist()) == set(top.tolist())
    free = _node().double()
    with torch.no_grad(), functional.streaming(free):
        alone = torch.stack([free(x[t]) for t in range(150)])
    assert bool((alone.sum(0) > 0).all())


def test_kwta_recurrent_weight_and_bias_by_hand():
    """R = (1 + a) I - 1 and b = θ (N - 2K) / N / w_scale, on the grid of 1/32."""
    kwta = layers.KWTA(_node(), 3, 4, 1, self_excitation=0.3, threshold=2.5).double()
    r = kwta.recurrent_weight()
    assert torch.equal(torch.diagonal(r), torch.full((4,), 10 / 32, dtype=torch.float64))
    assert torch.equal(r[~torch.eye(4, dtype=torch.bool)], -torch.ones(12, dtype=torch.float64))
    assert kwta.recurrent_bias().item() == 1 / 32  # 2.5 * 2 / 4 / 64 = 0.0195 -> 1/32
    kwta.quantize = False
    assert kwta.recurrent_bias().item() == pytest.approx(2.5 * 2 / 4 / 64, rel=1e-15)
    assert kwta.recurrent_weight()[0, 0].item() == pytest.approx(0.3, rel=1e-6)


def test_kwta_bias_truncates_threshold_as_lava():
    """Lava-DL's neuron keeps ``int(θ w_scale) / w_scale`` (``neuron/base.py``), which its
    KWTA's bias reads: θ = 1.0205 is 65/64 there, so with N = 100, K = 1 the bias
    0.98 θ / 64 falls below the half step 1/64 of the grid and rounds to 0 (1/32 for the
    untruncated θ)."""
    kwta = layers.KWTA(_node(), 3, 100, 1, threshold=1.0205).double()
    assert kwta.recurrent_bias().item() == 0.0
    kwta.quantize = False
    assert kwta.recurrent_bias().item() == (65 / 64) * 98 / 100 / 64
    # the default θ, the CUBA mapping's v_threshold = θ + 0.01/4096, gives θ's bias
    default = layers.KWTA(_node(), 3, 4, 1, quantize=False).double()
    explicit = layers.KWTA(_node(), 3, 4, 1, threshold=THETA, quantize=False).double()
    assert default.recurrent_bias().item() == explicit.recurrent_bias().item()


def test_kwta_streaming_matches_one_call():
    torch.manual_seed(1)
    weight = torch.randn(8, 10, dtype=torch.float64)
    kwta = _spikeflow_kwta(weight, 0.5, 3)
    x = (torch.rand(20, 2, 10, dtype=torch.float64) < 0.4).double()
    whole = kwta(x)
    with functional.streaming(kwta):
        parts = torch.cat([kwta(x[:7]), kwta(x[7:])])
    assert torch.equal(whole, parts)
    single = layers.KWTA(_node(), 10, 8, 3, step_mode="s", threshold=THETA).double()
    single.load_state_dict(kwta.state_dict())
    with functional.streaming(single):
        steps = torch.stack([single(x[t]) for t in range(20)])
    assert torch.equal(whole, steps)


def test_kwta_bad_arguments():
    with pytest.raises(ConfigurationError, match="num_winners"):
        layers.KWTA(_node(), 4, 4, 5, threshold=1.0)
    with pytest.raises(ConfigurationError, match="self_excitation"):
        layers.KWTA(_node(), 4, 4, 2, self_excitation=1.5)
    with pytest.raises(ConfigurationError, match="threshold"):
        layers.KWTA(nn.Identity(), 4, 4, 2)
    with pytest.raises(ConfigurationError, match="quantize"):
        layers.KWTA(_node(), 4, 4, 2, quantize=1)
    with pytest.raises(ShapeError, match="in_features=4"):
        layers.KWTA(_node(), 4, 4, 2)(torch.zeros(3, 1, 5))
    # Lava-DL's KWTA on NCHWT is dense over C*H*W with one competition: an image
    # input must be flattened, not compete along its last dim only
    with pytest.raises(ShapeError, match=r"\[T, B, in_features\].*flatten"):
        layers.KWTA(_node(), 4, 4, 2)(torch.zeros(3, 1, 2, 3, 4))
    single = layers.KWTA(_node(), 4, 4, 2, step_mode="s")
    with (
        pytest.raises(ShapeError, match=r"\[B, in_features\], got \(1, 3, 4\)"),
        functional.streaming(single),
    ):
        single(torch.zeros(1, 3, 4))


def _lava_time_decimation(x, factor):
    """``AbstractTimeDecimation.forward`` on time-last ``x[..., T]``."""
    pad = int(math.ceil(x.shape[-1] / factor) * factor - x.shape[-1])
    x = torch.nn.functional.pad(x, (0, pad))
    shape = list(x.shape)
    shape[-1] = x.shape[-1] // factor
    return x.reshape(-1, x.shape[-1] // factor, factor).mean(-1).reshape(shape)


@pytest.mark.parametrize("factor,steps", [(1, 5), (2, 8), (4, 13), (8, 3), (3, 10)])
def test_time_decimation_equals_lava(factor, steps):
    torch.manual_seed(steps)
    x = torch.randn(steps, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    y = layers.TimeDecimation(factor)(x)
    ref = _lava_time_decimation(x.permute(1, 2, 3, 0), factor).permute(3, 0, 1, 2)
    assert y.shape == (math.ceil(steps / factor), 2, 3, 4)
    torch.testing.assert_close(y, ref, rtol=0, atol=1e-15)
    g = torch.randn_like(y)
    (gx,) = torch.autograd.grad((y * g).sum(), x)
    (gr,) = torch.autograd.grad((ref * g).sum(), x)
    torch.testing.assert_close(gx, gr, rtol=0, atol=1e-15)


def test_time_decimation_bad_input():
    with pytest.raises(ConfigurationError, match="factor"):
        layers.TimeDecimation(0)
    with pytest.raises(ShapeError, match="TimeDecimation"):
        layers.TimeDecimation(2)(torch.zeros(4))


def test_lava_quantize_8bit_grid_and_gradient():
    """Steps of 2/64, clamped to [-256/64, 254/64] (Lava-DL's ``neuron/base.py``: its
    8-bit weights are the even integers -256..254); halves to even; straight-through
    inside, 0 outside."""
    w = torch.tensor(
        [0.3, -0.02, 0.0159, 5.0, -5.0, 3.98, 1 / 64, 3 / 64],
        dtype=torch.float64,
        requires_grad=True,
    )
    q = layers.lava_quantize_8bit(w)
    expected = torch.tensor(
        [10 / 32, -1 / 32, 1 / 32, 254 / 64, -4.0, 254 / 64, 0.0, 2 / 32], dtype=torch.float64
    )
    assert torch.equal(q.detach(), expected)
    q.sum().backward()
    assert torch.equal(w.grad, torch.tensor([1.0, 1, 1, 0, 0, 1, 1, 1], dtype=torch.float64))
    # on the grid of quant.loihi_grid's integers (64 q even, in [-256, 254])
    big = torch.linspace(-6, 6, 1001, dtype=torch.float64)
    ints = layers.lava_quantize_8bit(big) * 64
    assert torch.equal(ints, torch.round(ints)) and bool((ints % 2 == 0).all())
    assert ints.max().item() == 254.0 and ints.min().item() == -256.0
