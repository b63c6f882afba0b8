"""``neurons.LavaCubaHoyerNode`` against Lava-DL's CUBA-Hoyer neuron.

Lava-DL cannot be installed here: its code is transcribed into float64 loops in its
time-last layout (``[N, C, T]``, ``[B, C, H, W, T]``) below, read from
``lava-nc/lava-dl`` (not copied):

* ``src/lava/lib/dl/slayer/neuron/cuba_hoyer.py`` at commit
  ``c6ced7145244e30d980f04b6cac2fcdb802982ec`` (``HoyerNeuron.forward``: batch norm on
  time folded into the batch behind a convolution, ``dynamics``, ``cal_hoyer_loss`` of
  the clipped voltage, ``voltage / learnable_thr``, the Hoyer extremum of the clipped,
  detached voltage over every dimension but time (``'sum'``) or per channel
  (``'cw'``), ``nan_to_num(nan=1)``, the running average with momentum 0.9 and its
  ``delay`` shift; the running value in evaluation);
* ``neuron/cuba.py`` at ``1789ef9bad01b25143c92f2545934e86a6314191`` (``dynamics``:
  two leaky integrators, the voltage's with the threshold ``θ + threshold_eps``,
  ``threshold_eps = 0.01 / s_scale``);
* ``neuron/dynamics/leaky_integrator.py`` at ``56a0dcdc8b376675c0ca50c0c314e310b1e4b2db``
  (``_li_dynamics_fwd``: the output before the reset, the state reset where it reaches
  the threshold; ``_li_dynamics_bwd``: ``g_in[n] = k g_in[n+1] + g[n]``, the reset
  ignored, and the decay's gradient ``Σ g_in[n+1] y[n]`` with ``y`` the output before the
  reset, here as the gradient of the kept fraction ``k``: Lava-DL returns that sum as
  the gradient of its parameter ``4096 decay`` unscaled, which the chain rule makes
  ``-1/4096`` of it).

``HoyerSpike`` (``slayer/spike/spike.py`` of Lava-DL's pull request #292) is not in the
stored copies of the repository (the stored ``spike.py``, ``a26f2752``, defines only
``Spike``); the PR's notes say it has ``Spike``'s forward, ``v >= threshold`` with the
Hoyer extremum as the threshold, which the loop uses, with the neuron's surrogate as
the derivative. The fixed-point grid is dropped, as in ``tests/test_neurons_lava_dl.py``.
"""

from __future__ import annotations

import copy
import pickle

import pytest
import torch

from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.neurons import LavaCubaHoyerNode, hoyer_extremum, hoyer_regularizer

F64 = torch.float64


class _LIDynamics(torch.autograd.Function):
    """Lava-DL's leaky integrator in float: forward ``_li_dynamics_fwd``, backward
    ``_li_dynamics_bwd`` (``keep`` is ``1 - decay``: a scalar or one per channel)."""

    @staticmethod
    def forward(ctx, x, keep, threshold):
        out = torch.zeros_like(x)
        old = torch.zeros_like(x[..., 0])
        k = keep.view((1, -1) + (1,) * (x.dim() - 3)) if keep.numel() > 1 else keep
        for n in range(x.shape[-1]):
            new = old * k + x[..., n]
            old = new * (new < threshold) if threshold > 0 else new
            out[..., n] = new
        ctx.save_for_backward(out, keep)
        return out

    @staticmethod
    def backward(ctx, grad):
        out, keep = ctx.saved_tensors
        k = keep.view((1, -1) + (1,) * (out.dim() - 3)) if keep.numel() > 1 else keep
        g_in = torch.zeros_like(grad)
        g_in[..., -1] = grad[..., -1]
        for n in range(grad.shape[-1] - 2, -1, -1):
            g_in[..., n] = k * g_in[..., n + 1] + grad[..., n]
        g_keep = (g_in[..., 1:] * out[..., :-1]).sum(-1).sum(0)
        g_keep = g_keep.reshape(g_keep.shape[0], -1).sum(1) if keep.numel() > 1 else g_keep.sum()
        return g_in, g_keep.reshape(keep.shape), None


def _keep(decay):
    level = decay * 4096
    return 1 - (torch.round(level.detach()) + (level - level.detach())) / 4096


def lava_hoyer(x, current_decay, voltage_decay, threshold, thr, running, spike, **options):
    """``HoyerNeuron.forward`` over ``x`` (time last) from its initial state. Returns
    the spikes, the voltage, the Hoyer loss and the running extremum after the call."""
    training = options.get("training", True)
    cw, delay, bn = options.get("cw", False), options.get("delay", False), options.get("bn")
    scale = 64
    th = int(threshold * scale) / scale + 0.01 / (scale * 64)
    if bn is not None:
        b, c, h, w, t = x.shape
        folded = x.permute(4, 0, 1, 2, 3).reshape(t * b, c, h, w)
        x = bn(folded).reshape(t, b, c, h, w).permute(1, 2, 3, 4, 0)
    current = _LIDynamics.apply(x, _keep(current_decay), -1)
    voltage = _LIDynamics.apply(current, _keep(voltage_decay), th)
    hoyer_loss = torch.clamp(voltage.clone(), 0.0, 1.0)
    hoyer_loss = hoyer_loss.abs().sum() ** 2 / ((hoyer_loss**2).sum() + 1e-9)
    voltage = voltage / thr
    if training:
        clamped = torch.clamp(voltage.detach(), 0.0, 1.0)
        if cw:
            dims = (0, 2, 3)
            ext = (clamped**2).sum(dims, keepdim=True) / clamped.abs().sum(dims, keepdim=True)
        else:
            dims = tuple(range(clamped.dim() - 1))
            ext = (clamped**2).sum(dims) / clamped.abs().sum(dims)
        ext = torch.nan_to_num(ext, nan=1.0)
        running = running.clone()
        if delay:
            running[..., 0] = 0
            running = torch.roll(running, shifts=-1, dims=-1)
        running = 0.9 * ext + 0.1 * running
    else:
        ext = running
    return spike(voltage - ext), voltage * thr, hoyer_loss, running


def _time_last(y):
    return y.movedim(0, -1)


def _grads(out, inputs):
    weight = torch.linspace(-1, 1, out.numel(), dtype=F64).view_as(out)
    return torch.autograd.grad((out * weight).sum(), inputs)


def test_dense_hoyer_neuron_equals_lava_dl_in_spikes_voltage_statistics_and_gradients():
    decays = {"current_decay": torch.tensor([0.1, 0.25, 0.5, 0.0], dtype=F64)}
    decays["voltage_decay"] = torch.tensor([0.05, 0.3, 0.0, 0.2], dtype=F64)
    node = LavaCubaHoyerNode(
        1.3, **decays, T=10, shared_param=False, requires_grad=True, store_v_seq=True
    ).double()
    generator = torch.Generator().manual_seed(0)
    inputs = [torch.rand(10, 3, 4, dtype=F64, generator=generator) * 0.6 for _ in range(2)]
    running = torch.zeros(1, 1, 10, dtype=F64)
    thr = torch.tensor([1.296875], dtype=F64, requires_grad=True)  # int(64 · 1.3) / 64
    for x in inputs:  # two training calls: the running extremum of both
        x = x.clone().requires_grad_()
        s = node(x)
        got = _grads(s, [x, node.learnable_thr, node.current_decay, node.voltage_decay])
        ref_decays = {k: v.clone().requires_grad_() for k, v in decays.items()}
        x_lava = _time_last(x.detach()).clone().requires_grad_()
        ref = lava_hoyer(x_lava, *ref_decays.values(), 1.3, thr, running, node.surrogate_function)
        running = ref[3]
        want = _grads(ref[0].movedim(-1, 0), [x_lava, thr, *ref_decays.values()])
        assert torch.equal(s.detach(), ref[0].detach().movedim(-1, 0))
        assert 0.1 < float(s.detach().mean()) < 0.9
        torch.testing.assert_close(node.v_seq.detach(), ref[1].detach().movedim(-1, 0))
        torch.testing.assert_close(node.hoyer_loss.detach(), ref[2].detach())
        torch.testing.assert_close(node.running_hoyer_ext, running.view(10), atol=1e-12, rtol=0)
        torch.testing.assert_close(got[0], want[0].movedim(-1, 0), atol=1e-12, rtol=1e-10)
        for a, b in zip(got[1:], want[1:]):
            assert b.abs().sum() > 0
            torch.testing.assert_close(a, b, atol=1e-11, rtol=1e-10)
    node.eval()  # evaluation fires against the running extremum
    before = node.running_hoyer_ext.clone()
    s = node(inputs[0])
    ref = lava_hoyer(
        _time_last(inputs[0]),
        *decays.values(),
        1.3,
        thr,
        running,
        node.surrogate_function,
        training=False,
    )
    assert torch.equal(s, ref[0].movedim(-1, 0).detach())
    assert node.running_hoyer_ext.equal(before)  # not updated in evaluation


def test_conv_hoyer_neuron_channelwise_delayed_with_batch_norm_equals_lava_dl():
    node = LavaCubaHoyerNode(
        0.6, 0.2, 0.1, T=5, num_features=3, hoyer_type="cw", delay=True, requires_grad=True
    ).double()
    with torch.no_grad():
        node.bn.weight.copy_(torch.tensor([0.5, 1.0, 0.8]))
        node.bn.bias.copy_(torch.tensor([0.2, 0.0, 0.1]))
        node.running_hoyer_ext.copy_(torch.rand(5, 3, generator=torch.Generator().manual_seed(3)))
    bn = copy.deepcopy(node.bn)
    running = node.running_hoyer_ext.T.reshape(1, 3, 1, 1, 5).clone()
    x = torch.rand(5, 2, 3, 4, 4, dtype=F64, generator=torch.Generator().manual_seed(1))
    x = (x - 0.3).requires_grad_()
    s = node(x)
    got = _grads(s, [x, node.bn.weight, node.learnable_thr])
    thr = torch.tensor([0.59375], dtype=F64, requires_grad=True)
    x_lava = _time_last(x.detach()).clone().requires_grad_()
    ref = lava_hoyer(
        x_lava,
        torch.tensor(0.2, dtype=F64),
        torch.tensor(0.1, dtype=F64),
        0.6,
        thr,
        running,
        node.surrogate_function,
        cw=True,
        delay=True,
        bn=bn,
    )
    want = _grads(ref[0].movedim(-1, 0), [x_lava, bn.weight, thr])
    assert torch.equal(s.detach(), ref[0].detach().movedim(-1, 0))
    assert 0.05 < float(s.detach().mean()) < 0.95
    want_running = ref[3].reshape(3, 5).T
    torch.testing.assert_close(node.running_hoyer_ext, want_running, atol=1e-12, rtol=0)
    torch.testing.assert_close(node.bn.running_mean, bn.running_mean)
    torch.testing.assert_close(got[0], want[0].movedim(-1, 0), atol=1e-12, rtol=1e-10)
    for a, b in zip(got[1:], want[1:]):
        assert b.abs().sum() > 0
        torch.testing.assert_close(a, b, atol=1e-11, rtol=1e-10)


def test_hoyer_extremum_and_regulariser_by_hand():
    # step 0: c = [0.5, 1, 1, 0] -> Σc² / Σc = 2.25 / 2.5 = 0.9; step 1: nothing positive -> 1
    v = torch.tensor([[[0.5, 1.0], [2.0, -1.0]], [[-0.5, 0.0], [-2.0, -1.0]]], dtype=F64)
    assert hoyer_extremum(v).tolist() == pytest.approx([0.9, 1.0], abs=1e-15)
    # (Σc)² / Σc² = 2.5² / 2.25
    assert float(hoyer_regularizer(v)) == pytest.approx(6.25 / (2.25 + 1e-9), rel=1e-12)
    images = torch.zeros(1, 2, 2, 1, 1, dtype=F64)
    images[0, 0, 0] = 0.5  # channel 0: 0.25 / 0.5; channel 1: no positive value
    assert hoyer_extremum(images, channelwise=True).view(-1).tolist() == [0.5, 1.0]


def test_plain_mode_resets_at_the_fixed_threshold_and_learnable_threshold_is_clamped():
    node = LavaCubaHoyerNode(1.0, 0.0, 0.0, T=3, hoyer_mode=False, store_v_seq=True).double()
    s = node(torch.tensor([[[0.6]], [[0.0]], [[0.5]]], dtype=F64))
    # u = 0.6, 0.6, 1.1; v = 0.6, 1.2 (fires, resets), 1.1 (fires)
    assert s.view(-1).tolist() == [0.0, 1.0, 1.0]
    assert node.v_seq.view(-1).tolist() == pytest.approx([0.6, 1.2, 1.1], abs=1e-12)
    # exactly θ does not fire (Lava-DL's threshold_eps = 0.01 / (64 scale)): u = 1, 0, 0
    node = LavaCubaHoyerNode(1.0, 1.0, 0.0, T=3, hoyer_mode=False, store_v_seq=True).double()
    s = node(torch.tensor([[[1.0]], [[0.0]], [[0.0]]], dtype=F64))
    assert s.view(-1).tolist() == [0.0, 0.0, 0.0]
    assert node.v_seq.view(-1).tolist() == [1.0, 1.0, 1.0]
    hoyer = LavaCubaHoyerNode(1.0, 0.0, 0.0, T=3, requires_grad=True).double()
    with torch.no_grad():
        hoyer.learnable_thr.fill_(-1.0)
    hoyer(torch.rand(3, 2, 2, dtype=F64))
    assert float(hoyer.learnable_thr.detach()) == 1 / 64


def test_bad_arguments_and_inputs_are_named():
    with pytest.raises(ConfigurationError, match="hoyer_type"):
        LavaCubaHoyerNode(1.0, 0.1, 0.1, hoyer_type="max")
    with pytest.raises(ConfigurationError, match="num_features > 1"):
        LavaCubaHoyerNode(1.0, 0.1, 0.1, hoyer_type="cw")
    with pytest.raises(ConfigurationError, match="threshold must be > 0"):
        LavaCubaHoyerNode(0.01, 0.1, 0.1)
    with pytest.raises(ConfigurationError, match="voltage_decay"):
        LavaCubaHoyerNode(1.0, 0.1, 1.5)
    with pytest.raises(ShapeError, match="T=4"):
        LavaCubaHoyerNode(1.0, 0.1, 0.1, T=4)(torch.rand(3, 2, 5))
    with pytest.raises(ShapeError, match="num_features=3"):
        LavaCubaHoyerNode(1.0, 0.1, 0.1, T=2, num_features=3)(torch.rand(2, 1, 4, 2, 2))
    with pytest.raises(ShapeError, match="channelwise"):
        hoyer_extremum(torch.rand(2, 3, 4), channelwise=True)


def test_learnable_threshold_survives_two_calls_before_one_backward():
    # the clamp must not bump learnable_thr's version: a node used twice builds one
    # graph over two calls, whose gradient is the sum of the two calls' gradients
    node = LavaCubaHoyerNode(1.0, 0.2, 0.1, T=3, requires_grad=True).double().eval()
    generator = torch.Generator().manual_seed(5)
    node.running_hoyer_ext.fill_(0.5)
    first, second = torch.rand(2, 3, 2, 4, dtype=F64, generator=generator) * 2
    parts = [torch.autograd.grad(node(x).sum(), node.learnable_thr)[0] for x in (first, second)]
    (grad,) = torch.autograd.grad(node(first).sum() + node(second).sum(), node.learnable_thr)
    torch.testing.assert_close(grad, parts[0] + parts[1], atol=1e-12, rtol=0)
    assert grad.abs().item() > 0


def test_copies_after_a_training_call_keep_the_running_extremum_and_hoyer_loss():
    node = LavaCubaHoyerNode(1.0, 0.2, 0.1, T=2, num_features=2, hoyer_type="cw")
    node = node.double()
    x = torch.rand(2, 3, 2, 2, 2, dtype=F64, generator=torch.Generator().manual_seed(6))
    node(x)  # hoyer_loss is part of this call's graph (through the batch norm)
    replica = copy.deepcopy(node)  # an EMA copy, the NIR export
    assert replica.hoyer_loss.grad_fn is None
    assert replica.hoyer_loss.item() == node.hoyer_loss.item()
    restored = LavaCubaHoyerNode(1.0, 0.2, 0.1, T=2, num_features=2, hoyer_type="cw")
    restored.double().load_state_dict(node.state_dict())
    for other in (replica, restored, pickle.loads(pickle.dumps(node))):
        assert torch.equal(other.running_hoyer_ext, node.running_hoyer_ext)
        torch.testing.assert_close(other.eval()(x), node.eval()(x), atol=0, rtol=0)


def test_hoyer_extremum_refuses_a_vector_and_integers():
    # a 1-D v would be summed over everything: one number, not one per step
    with pytest.raises(ShapeError, match=r"at least 2-D.*\(3,\)"):
        hoyer_extremum(torch.tensor([0.5, 1.0, 0.2]))
    with pytest.raises(DTypeError, match=r"floating-point.*torch.int64"):
        hoyer_extremum(torch.tensor([[1], [2]]))
    assert hoyer_extremum(torch.tensor([[0.5], [1.0], [0.25]])).tolist() == [0.5, 1.0, 0.25]
