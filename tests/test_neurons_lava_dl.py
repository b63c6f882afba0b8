"""Lava-DL's SLAYER neurons (``spikeflow.neurons.lava_dl``) against Lava-DL's dynamics.

Lava-DL cannot be installed here (not on PyPI, incompatible torch): its dynamics are
transcribed into float64 loops in Lava-DL's time-last layout ``[N, C, T]`` below, read
from ``lava-nc/lava-dl`` (not copied):

* ``src/lava/lib/dl/slayer/neuron/alif.py`` at commit
  ``1b57cba7eb53fe74f7703b383d692b5e08bfcb14`` (``Neuron.dynamics``: two leaky
  integrators then ``adaptive_threshold.dynamics``; ``Neuron.spike``: ``Spike.apply(
  voltage, threshold + refractory, ...)``; the decays ``quantize``-d 4096ths, the
  threshold step ``int(threshold_step * w_scale) / w_scale``);
* ``dynamics/leaky_integrator.py`` at ``56a0dcdc8b376675c0ca50c0c314e310b1e4b2db``
  (``_li_dynamics_fwd`` without a threshold: ``y[t] = (1 - decay) y[t-1] + x[t]``, its
  backward the float recurrence);
* ``dynamics/adaptive_threshold.py`` at ``766ef5ef219e603cc451a014f61a699428cc0fa9``
  (``_ath_dynamics_fwd``: ``θ_new = (θ - θ0)(1 - α_θ) + θ0``, ``r_new = r (1 - α_r)``,
  ``s = v >= θ_new + r_new``, then ``θ = θ_new + θ_step s``, ``r = r_new + 2 θ_new s``;
  its backward returns ``None``: no gradient through the threshold);
* ``slayer/spike/spike.py`` at ``1fd064712f56a9c82c62098dedc0fe9e2e30317c``
  (``spikes = voltage >= threshold``);
* ``slayer/utils/quantize.py`` at ``192996f2e376148ef1f5f61e55bfd70665b508a2``
  (``torch.round``, straight-through).

The loops run Lava-DL's floating-point dynamics (its fixed-point grid dropped, as for
the CUBA mapping in ``tests/test_neurons_learnable_tau_peers.py``) with the neuron's
surrogate in place of Lava-DL's exponential spike derivative.
"""

from __future__ import annotations

import pytest
import torch

from conftest import fused_backends, kernel_device
from gradchecks import gradcheck_backend
from spikeflow import functional as F
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.losses import get_loss
from spikeflow.models import create_model, list_neurons
from spikeflow.neurons import (
    LavaADRFIzNode,
    LavaADRFNode,
    LavaALIFNode,
    LavaRFIzNode,
    LavaRFNode,
    lava_decay_keep,
)
from spikeflow.surrogate import Sigmoid

BACKENDS = fused_backends("torch")
F64 = torch.float64


def _quantize_keep(decay):
    """``1 - quantize(4096 decay) / 4096`` (Lava-DL stores ``p_scale * decay``)."""
    decay = torch.as_tensor(decay, dtype=F64)
    level = decay * 4096
    return 1 - (torch.round(level.detach()) + (level - level.detach())) / 4096


def lava_alif(
    x,
    current_decay,
    voltage_decay,
    threshold_decay,
    refractory_decay,
    threshold,
    threshold_step,
    spike,
    scale=64,
    detach=True,
):
    """``alif.Neuron`` over ``x[n, c, t]`` from its initial state, float dynamics;
    per-channel decays ``[C]`` (or scalars). Returns spikes, current, voltage, threshold
    and refractory state per step (``[N, C, T]``, the states after the spike's update
    for the threshold and refractory state, as ``persistent_state`` keeps them)."""
    th0 = int(threshold * scale) / scale
    th_step = int(threshold_step * scale) / scale
    k_u, k_v, k_th, k_r = (
        _quantize_keep(d) for d in (current_decay, voltage_decay, threshold_decay, refractory_decay)
    )
    if detach:  # Lava-DL's adaptive threshold has no backward
        k_th, k_r = k_th.detach(), k_r.detach()
    u = torch.zeros_like(x[..., 0])
    v = torch.zeros_like(x[..., 0])
    th = torch.full_like(x[..., 0], th0)
    r = torch.zeros_like(x[..., 0])
    out = {"s": [], "u": [], "v": [], "th": [], "r": []}
    for t in range(x.shape[-1]):
        u = k_u * u + x[..., t]
        v = k_v * v + u
        th_new = (th - th0) * k_th + th0
        r_new = r * k_r
        s = spike(v - (th_new + r_new))
        fired = s.detach() if detach else s
        th = th_new + th_step * fired
        r = r_new + 2 * th_new * fired
        for name, value in zip(out, (s, u, v, th, r)):
            out[name].append(value)
    return {name: torch.stack(values, -1) for name, values in out.items()}


def _time_major(y):
    return y.permute(2, 0, 1)


DECAYS = {  # per channel, [C] = [3]; 0.1 and 0.3 are not whole 4096ths
    "current_decay": torch.tensor([0.1, 0.25, 0.5], dtype=F64),
    "voltage_decay": torch.tensor([0.05, 0.3, 0.0], dtype=F64),
    "threshold_decay": torch.tensor([0.02, 0.1, 0.2], dtype=F64),
    "refractory_decay": torch.tensor([0.3, 0.15, 0.5], dtype=F64),
}


def _input(steps=24, batch=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(steps, batch, 3, dtype=F64, generator=generator) * 0.8 - 0.1


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("detach", [True, False])
def test_alif_equals_lava_dl_loop_in_spikes_states_and_gradients(backend, detach):
    device = kernel_device(backend)
    node = LavaALIFNode(
        1.01,
        0.52,
        **DECAYS,
        shared_param=False,
        requires_grad=True,
        detach_adaptation=detach,
        backend=backend,
        store_v_seq=True,
    )
    node = node.double().to(device)
    x = _input().to(device).requires_grad_()
    with F.streaming(node):
        s = node(x)
        state = {k: v.detach().cpu() for k, v in node.state.items()}
    grads = torch.autograd.grad(
        (s * torch.linspace(-1, 1, s.numel(), dtype=F64, device=device).view_as(s)).sum(),
        [x, node.current_decay, node.voltage_decay, node.threshold_decay, node.refractory_decay],
        allow_unused=True,
    )

    decays = {k: v.clone().requires_grad_() for k, v in DECAYS.items()}
    x_lava = x.detach().cpu().permute(1, 2, 0).clone().requires_grad_()
    ref = lava_alif(x_lava, *decays.values(), 1.01, 0.52, node.surrogate_function, detach=detach)
    g = torch.linspace(-1, 1, s.numel(), dtype=F64).view(s.shape)
    want = torch.autograd.grad(
        (_time_major(ref["s"]) * g).sum(), [x_lava, *decays.values()], allow_unused=True
    )

    assert torch.equal(s.detach().cpu(), _time_major(ref["s"]).detach())
    assert 0.05 < s.mean() < 0.6 and ref["r"].max() > 0
    torch.testing.assert_close(node.v_seq.cpu(), _time_major(ref["v"]).detach(), atol=1e-12, rtol=0)
    for name, key in (("i", "u"), ("v", "v"), ("th", "th"), ("r", "r")):
        torch.testing.assert_close(state[name], ref[key][..., -1].detach(), atol=1e-12, rtol=0)
    torch.testing.assert_close(grads[0].cpu(), want[0].permute(2, 0, 1), atol=1e-12, rtol=1e-10)
    for name, a, b in zip(DECAYS, grads[1:], want[1:]):
        if b is None or (detach and name in ("threshold_decay", "refractory_decay")):
            assert b is None or not b.any(), name
            assert a is None or not a.any(), name
            continue
        assert b.abs().sum() > 0, name
        torch.testing.assert_close(a.cpu(), b, atol=1e-11, rtol=1e-10, msg=name)


def test_alif_by_hand_threshold_and_refractory_after_a_spike():
    # decays 0 except the refractory's (1/2); θ0 = 1, θ_step = 0.5:
    # t0: u = 1.2, v = 1.2 >= 1 fires; θ = 1.5, r = 2
    # t1: u = 1.2, v = 2.4, r = 1, 2.4 < 1.5 + 1 silent
    # t2: u = 1.2, v = 3.6, r = 0.5, 3.6 >= 2.0 fires; θ = 2.0, r = 0.5 + 3
    node = LavaALIFNode(1.0, 0.5, 0.0, 0.0, 0.0, 0.5, store_v_seq=True, backend="torch")
    with F.streaming(node):
        s = node(torch.tensor([[1.2], [0.0], [0.0]], dtype=F64))
        assert s.view(-1).tolist() == [1.0, 0.0, 1.0]
        assert node.v_seq.view(-1).tolist() == pytest.approx([1.2, 2.4, 3.6], abs=1e-12)
        assert node.state["th"].item() == pytest.approx(2.0, abs=1e-12)
        assert node.state["r"].item() == pytest.approx(3.5, abs=1e-12)


def test_decays_are_rounded_to_4096ths_and_threshold_to_the_weight_grid():
    assert lava_decay_keep(0.1) == 1 - 410 / 4096
    assert lava_decay_keep(0.5 / 4096) == 1.0  # half to even: 0.5 -> 0
    decay = torch.tensor(0.1, dtype=F64, requires_grad=True)
    keep = lava_decay_keep(decay)
    assert keep.item() == 1 - 410 / 4096
    (grad,) = torch.autograd.grad(keep, decay)
    assert grad.item() == -1.0  # straight through
    node = LavaALIFNode(1.0199, 0.2999, 0.1, 0.1, 0.1, 0.1)
    assert float(node.v_threshold) == 65 / 64 and node.threshold_step == 19 / 64
    node = LavaALIFNode(1.0199, 0.2999, 0.1, 0.1, 0.1, 0.1, scale=1 << 8)
    assert float(node.v_threshold) == 261 / 256


@pytest.mark.parametrize("backend", fused_backends())
def test_alif_fused_kernel_float64_gradcheck(backend):
    # A smooth surrogate forward (spiking=False) and full BPTT (detach_adaptation=False:
    # a detached adaptation is not the derivative of the forward, which gradcheck
    # needs; its gradients on the fused kernels are checked against Lava-DL's above).
    # The input's gradient only: the decays are rounded to 4096ths (straight-through).
    device = kernel_device(backend)
    x = (_input(steps=6, batch=1, seed=1) * 1.5).to(device).requires_grad_()

    def run(which):
        node = (
            LavaALIFNode(
                0.5,
                0.25,
                0.1,
                0.2,
                0.1,
                0.3,
                detach_adaptation=False,
                surrogate_function=Sigmoid(alpha=2.0, spiking=False),
                backend=which,
                store_v_seq=True,
            )
            .double()
            .to(device)
        )

        def fn(x):
            return torch.cat([node(x), node.v_seq])

        return fn

    gradcheck_backend(backend, run(backend), (x,), run("torch"))


def test_alif_errors_name_the_argument():
    with pytest.raises(ConfigurationError, match="current_decay"):
        LavaALIFNode(1.0, 0.5, 1.5, 0.1, 0.1, 0.1)
    with pytest.raises(ConfigurationError, match="shared_param"):
        LavaALIFNode(1.0, 0.5, torch.tensor([0.1, 0.2]), 0.1, 0.1, 0.1)
    with pytest.raises(DTypeError, match="voltage_decay"):
        LavaALIFNode(1.0, 0.5, 0.1, torch.tensor([0, 1]), 0.1, 0.1, shared_param=False)
    with pytest.raises(ConfigurationError, match="threshold must be > 0"):
        LavaALIFNode(0.01, 0.5, 0.1, 0.1, 0.1, 0.1)  # int(0.64) = 0 on the grid
    with pytest.raises(ConfigurationError, match="threshold_step"):
        LavaALIFNode(1.0, -0.5, 0.1, 0.1, 0.1, 0.1)
    with pytest.raises(ConfigurationError, match="scale"):
        LavaALIFNode(1.0, 0.5, 0.1, 0.1, 0.1, 0.1, scale=0)
    with pytest.raises(ConfigurationError, match="v_reset is set by the class"):
        LavaALIFNode(1.0, 0.5, 0.1, 0.1, 0.1, 0.1, v_reset=None)
    with pytest.raises(ConfigurationError, match="strict_firing is set by the class"):
        LavaALIFNode(1.0, 0.5, 0.1, 0.1, 0.1, 0.1, strict_firing=True)
    assert float(LavaALIFNode(1.0, 0.5, 0.1, 0.1, 0.1, 0.1, v_threshold=0.5).v_threshold) == 0.5
    with pytest.raises(ConfigurationError, match="persistent_state"):
        LavaALIFNode(1.0, 0.5, 0.1, 0.1, 0.1, 0.1, persistent_state="yes")
    node = LavaALIFNode(1.0, 0.5, torch.tensor([0.1, 0.2]), 0.1, 0.1, 0.1, shared_param=False)
    with pytest.raises(ShapeError, match="current_decay"):
        node(torch.zeros(2, 1, 3))


def test_persistent_state_carries_the_state_between_calls():
    x = _input(steps=10, batch=1)
    whole = LavaALIFNode(0.5, 0.25, 0.1, 0.2, 0.1, 0.3, persistent_state=True).double()
    assert whole.streaming
    s_whole = whole(x)
    chunked = LavaALIFNode(0.5, 0.25, 0.1, 0.2, 0.1, 0.3, persistent_state=True).double()
    s_chunks = torch.cat([chunked(x[:4]), chunked(x[4:])])
    assert torch.equal(s_whole, s_chunks) and s_whole.any()
    once = LavaALIFNode(0.5, 0.25, 0.1, 0.2, 0.1, 0.3).double()
    assert torch.equal(once(x[4:]), once(x[4:]))  # not persistent: each call starts fresh


# -- RF-IZ -------------------------------------------------------------------------------
# ``src/lava/lib/dl/slayer/neuron/rf_iz.py`` at ``550de8e558f25813ca8c27b04458ed7076627d52``
# (``sin_decay = sin(2π/period)(1 - decay)`` and ``cos_decay`` as 4096ths, ``clamp()``,
# ``dynamics``: ``resonator.dynamics(..., self.threshold)``, ``spike``:
# ``Spike.apply(imag, threshold)``) and ``dynamics/resonator.py`` at
# ``592acf716bbd368b92527e70d1476d73a58e9933`` (``_res_dynamics_fwd`` with its
# Izhikevich reset ``real = 0, imag = threshold - 1`` in state units of ``1 / s_scale``;
# ``_res_dynamics_bwd``: the linear recurrence, no reset, the decays' gradient from the
# saved pre-reset states).

S_SCALE = 64 * 64  # s_scale = scale * (1 << 6) at the default scale


class _LavaResonator(torch.autograd.Function):
    """``_ResDynamics`` in float64: forward with the reset, Lava-DL's backward."""

    @staticmethod
    def forward(ctx, real_input, imag_input, sin_decay, cos_decay, threshold):
        real_old = torch.zeros_like(real_input[..., 0])
        imag_old = torch.zeros_like(real_input[..., 0])
        real, imag = torch.zeros_like(real_input), torch.zeros_like(imag_input)
        for n in range(real_input.shape[-1]):
            real_new = cos_decay * real_old - sin_decay * imag_old + real_input[..., n]
            imag_new = sin_decay * real_old + cos_decay * imag_old + imag_input[..., n]
            if threshold is None:  # no reset (RF)
                real_old, imag_old = real_new, imag_new
            else:
                spike_new = (imag_new >= threshold).to(real.dtype)
                real_old = (1 - spike_new) * real_new
                imag_old = spike_new * (threshold - 1 / S_SCALE) + (1 - spike_new) * imag_new
            real[..., n], imag[..., n] = real_new, imag_new
        ctx.save_for_backward(real, imag, sin_decay, cos_decay)
        return real, imag

    @staticmethod
    def backward(ctx, grad_real, grad_imag):
        real, imag, sin_decay, cos_decay = ctx.saved_tensors
        g_re, g_im = torch.zeros_like(grad_real), torch.zeros_like(grad_imag)
        steps = grad_real.shape[-1]
        g_re[..., -1], g_im[..., -1] = grad_real[..., -1], grad_imag[..., -1]
        for n in range(steps - 1)[::-1]:
            g_re[..., n] = (
                cos_decay * g_re[..., n + 1] + sin_decay * g_im[..., n + 1] + grad_real[..., n]
            )
            g_im[..., n] = (
                -sin_decay * g_re[..., n + 1] + cos_decay * g_im[..., n + 1] + grad_imag[..., n]
            )
        g_sin = -g_re[..., 1:] * imag[..., :-1] + g_im[..., 1:] * real[..., :-1]
        g_cos = g_re[..., 1:] * real[..., :-1] + g_im[..., 1:] * imag[..., :-1]
        return g_re, g_im, g_sin.sum(dim=[0, -1]), g_cos.sum(dim=[0, -1]), None


def lava_rf_iz(real_input, imag_input, sin_decay, cos_decay, threshold, spike, scale=64):
    """``rf_iz.Neuron`` over ``[N, C, T]`` inputs with per-channel decays (fractions,
    ``[C]``, clamped): the spikes and the pre-reset real and imaginary states."""
    theta = int(threshold * scale) / scale
    sin_q = (
        torch.round(sin_decay.detach() * 4096) + (sin_decay - sin_decay.detach()) * 4096
    ) / 4096
    cos_q = (
        torch.round(cos_decay.detach() * 4096) + (cos_decay - cos_decay.detach()) * 4096
    ) / 4096
    real, imag = _LavaResonator.apply(real_input, imag_input, sin_q, cos_q, theta)
    return spike(imag - theta), real, imag


def _lava_clamped(period, decay):
    """``rf_iz.Neuron.__init__`` then ``clamp()``: the decays as fractions."""
    sin_p = torch.sin(2 * torch.pi / period) * (1 - decay) * 4096
    cos_p = torch.cos(2 * torch.pi / period) * (1 - decay) * 4096
    gain = torch.sqrt(sin_p**2 + cos_p**2)
    factor = gain.clamp(0, 4095) / gain
    return (sin_p * factor).clamp(min=1) / 4096, (cos_p * factor).clamp(min=0) / 4096


PERIODS = torch.tensor([5.0, 8.0, 12.5], dtype=F64)
RF_DECAYS = torch.tensor([0.1, 0.0, 0.05], dtype=F64)  # 0.0: the gain clamp acts


def test_rf_iz_equals_lava_dl_loop_in_spikes_states_and_gradients():
    default = torch.get_default_dtype()
    torch.set_default_dtype(F64)  # the decays computed and clamped in float64
    try:
        node = LavaRFIzNode(
            0.3, PERIODS, RF_DECAYS, shared_param=False, requires_grad=True, store_v_seq=True
        )
    finally:
        torch.set_default_dtype(default)
    generator = torch.Generator().manual_seed(3)
    real = (torch.rand(30, 2, 3, dtype=F64, generator=generator) - 0.45).requires_grad_()
    imag = (torch.rand(30, 2, 3, dtype=F64, generator=generator) - 0.45).requires_grad_()
    with F.streaming(node):
        s = node((real, imag))
        state = {k: v.detach() for k, v in node.state.items()}
    g = torch.linspace(-1, 1, s.numel(), dtype=F64).view(s.shape)
    loss = (s * g).sum() + 0.1 * node.v_seq.sum()
    grads = torch.autograd.grad(loss, [real, imag, node.sin_decay, node.cos_decay])

    sin_ref, cos_ref = (d.clone().requires_grad_() for d in _lava_clamped(PERIODS, RF_DECAYS))
    torch.testing.assert_close(node.sin_decay.detach(), sin_ref.detach(), atol=1e-15, rtol=0)
    torch.testing.assert_close(node.cos_decay.detach(), cos_ref.detach(), atol=1e-15, rtol=0)
    re_l, im_l = (t.detach().permute(1, 2, 0).clone().requires_grad_() for t in (real, imag))
    s_l, real_l, imag_l = lava_rf_iz(re_l, im_l, sin_ref, cos_ref, 0.3, node.surrogate_function)
    fired = s_l.detach()
    v_after = fired * (0.296875 - 1 / S_SCALE) + (1 - fired) * imag_l  # θ on the grid
    assert torch.equal(s.detach(), s_l.detach().permute(2, 0, 1))
    assert 0.05 < s.mean() < 0.5
    torch.testing.assert_close(
        node.v_seq.detach(), v_after.detach().permute(2, 0, 1), atol=1e-12, rtol=0
    )
    torch.testing.assert_close(
        state["u"], (real_l * (1 - fired))[..., -1].detach(), atol=1e-12, rtol=0
    )
    # Lava-DL's backward does not see the reset: the membrane loss passes as on imag_l
    loss_l = (s_l * g.permute(1, 2, 0)).sum() + 0.1 * (imag_l + (v_after - imag_l).detach()).sum()
    want = torch.autograd.grad(loss_l, [re_l, im_l, sin_ref, cos_ref])
    for name, a, b in zip(["real", "imag", "sin_decay", "cos_decay"], grads, want):
        b = b.permute(2, 0, 1) if b.dim() == 3 else b
        assert b.abs().sum() > 0, name
        torch.testing.assert_close(a, b, atol=1e-11, rtol=1e-10, msg=name)


def test_rf_iz_real_input_and_chunks():
    x = torch.rand(12, 1, 3, dtype=F64) - 0.2
    node = LavaRFIzNode(0.2, 6.0, 0.1, persistent_state=True).double()
    whole = node(x)
    node.reset()
    chunks = torch.cat([node(x[:5]), node((x[5:], torch.zeros_like(x[5:])))])
    assert torch.equal(whole, chunks) and whole.any()
    single = LavaRFIzNode(0.2, 6.0, 0.1, step_mode="s", persistent_state=True).double()
    assert torch.equal(torch.stack([single(x_t) for x_t in x]), whole)


def test_rf_iz_errors_name_the_argument():
    with pytest.raises(ConfigurationError, match="period"):
        LavaRFIzNode(0.5, 3.0, 0.1)
    with pytest.raises(ConfigurationError, match="decay"):
        LavaRFIzNode(0.5, 8.0, -0.1)
    with pytest.raises(ConfigurationError, match="shared_param"):
        LavaRFIzNode(0.5, torch.tensor([8.0, 9.0]), 0.1)
    with pytest.raises(ConfigurationError, match="threshold"):
        LavaRFIzNode(0.001, 8.0, 0.1)
    node = LavaRFIzNode(0.5, 8.0, 0.1)
    with pytest.raises(ShapeError, match="imaginary input"):
        node((torch.zeros(3, 1, 2), torch.zeros(3, 1, 3)))
    with pytest.raises(DTypeError, match="real input"):
        node(torch.zeros(3, 1, 2, dtype=torch.int64))
    node = LavaRFIzNode(0.5, torch.tensor([8.0, 9.0]), 0.1, shared_param=False)
    with pytest.raises(ShapeError, match="sin_decay"):
        node(torch.zeros(3, 1, 3))


def test_lava_alif_by_name_trains_a_step_of_a_zoo_network():
    torch.manual_seed(0)
    model = create_model(
        "plif_digits", num_classes=4, neuron="lava_alif", channels=4, hidden=8, dropout=0.0
    )
    layers = [m for m in model.modules() if isinstance(m, LavaALIFNode)]
    assert len(layers) == 4 and "lava_alif" in list_neurons()
    assert layers[0].threshold_step == 0.25 and layers[0].refractory_decay == 0.5
    x, y = torch.rand(6, 8, 1, 8, 8) * 3.0, torch.arange(8) % 4
    get_loss("ce")(model(x), y).backward()
    for n, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, n


# -- RF (phase spike) ----------------------------------------------------------------
# ``src/lava/lib/dl/slayer/neuron/rf.py`` at ``56a0dcdc8b376675c0ca50c0c314e310b1e4b2db``
# (``resonator.dynamics`` without a threshold; ``complex.Spike.apply(real, imag,
# threshold, tau_rho * 0.5, scale_rho * 10, ...)``, ``tau_rho = tau_grad * threshold``
# from ``neuron/base.py``) and ``slayer/spike/complex.py`` at
# ``9800bc79686c76ddd3f618c58c2bb5be330bf246``.


class _LavaComplexSpike(torch.autograd.Function):
    """``complex.Spike`` (not graded) over ``[N, C, T]``, the imaginary part before the
    first step 0."""

    @staticmethod
    def forward(ctx, real, imag, threshold, tau_rho, scale_rho):
        imag_del = torch.zeros_like(imag)
        imag_del[..., 1:] = imag[..., :-1]
        ctx.save_for_backward(real, imag)
        ctx.constants = threshold, tau_rho, scale_rho
        return ((real >= threshold) * (imag_del < 0) * (imag >= 0)).to(real.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        real, imag = ctx.saved_tensors
        threshold, tau_rho, scale_rho = ctx.constants
        delta_real = 1 / 2 / tau_rho * torch.exp(-torch.abs(real - threshold) / tau_rho)
        delta_imag = 1 / 2 / tau_rho * torch.exp(-torch.abs(imag) / tau_rho)
        step_real = 1 / 2 * (1 + torch.sign(real - threshold) * (1 - 2 * tau_rho * delta_real))
        grad_real = scale_rho * delta_real * delta_imag
        grad_imag = -scale_rho / tau_rho * torch.sign(imag) * delta_imag * step_real
        return grad_output * grad_real, grad_output * grad_imag, None, None, None


def test_rf_equals_lava_dl_loop_in_spikes_states_and_gradients():
    default = torch.get_default_dtype()
    torch.set_default_dtype(F64)
    try:
        node = LavaRFNode(
            0.25,
            PERIODS,
            RF_DECAYS,
            tau_grad=1.5,
            scale_grad=0.5,
            shared_param=False,
            requires_grad=True,
            store_v_seq=True,
        )
    finally:
        torch.set_default_dtype(default)
    generator = torch.Generator().manual_seed(5)
    real = (torch.rand(40, 2, 3, dtype=F64, generator=generator) - 0.4).requires_grad_()
    imag = (torch.rand(40, 2, 3, dtype=F64, generator=generator) - 0.4).requires_grad_()
    with F.streaming(node):
        s = node((real, imag))
        state = {k: v.detach() for k, v in node.state.items()}
    g = torch.linspace(-1, 1, s.numel(), dtype=F64).view(s.shape)
    grads = torch.autograd.grad((s * g).sum(), [real, imag, node.sin_decay, node.cos_decay])

    sin_ref, cos_ref = (d.clone().requires_grad_() for d in _lava_clamped(PERIODS, RF_DECAYS))
    re_l, im_l = (t.detach().permute(1, 2, 0).clone().requires_grad_() for t in (real, imag))
    sin_q = (torch.round(sin_ref.detach() * 4096) + (sin_ref - sin_ref.detach()) * 4096) / 4096
    cos_q = (torch.round(cos_ref.detach() * 4096) + (cos_ref - cos_ref.detach()) * 4096) / 4096
    real_l, imag_l = _LavaResonator.apply(re_l, im_l, sin_q, cos_q, None)
    theta = 0.25  # on the grid
    s_l = _LavaComplexSpike.apply(real_l, imag_l, theta, 1.5 * theta * 0.5, 0.5 * 10)
    assert torch.equal(s.detach(), s_l.detach().permute(2, 0, 1))
    assert 0.02 < s.mean() < 0.3
    torch.testing.assert_close(
        node.v_seq.detach(), imag_l.detach().permute(2, 0, 1), atol=1e-12, rtol=0
    )
    torch.testing.assert_close(state["u"], real_l[..., -1].detach(), atol=1e-12, rtol=0)
    want = torch.autograd.grad((s_l * g.permute(1, 2, 0)).sum(), [re_l, im_l, sin_ref, cos_ref])
    for name, a, b in zip(["real", "imag", "sin_decay", "cos_decay"], grads, want):
        b = b.permute(2, 0, 1) if b.dim() == 3 else b
        assert b.abs().sum() > 0, name
        torch.testing.assert_close(a, b, atol=1e-11, rtol=1e-10, msg=name)


def test_rf_errors_name_the_argument():
    with pytest.raises(ConfigurationError, match="tau_grad"):
        LavaRFNode(0.5, 8.0, 0.1, tau_grad=0.0)
    with pytest.raises(ConfigurationError, match="scale_grad"):
        LavaRFNode(0.5, 8.0, 0.1, scale_grad=-1.0)
    with pytest.raises(ConfigurationError, match="period"):
        LavaRFNode(0.5, 2.0, 0.1)


# -- ADRF-IZ -----------------------------------------------------------------------------
# ``src/lava/lib/dl/slayer/neuron/adrf_iz.py`` at ``9800bc79686c76ddd3f618c58c2bb5be330bf246``
# (``dynamics``: ``adaptive_resonator.dynamics``; ``spike``: ``Spike.apply(imag,
# threshold + refractory)``) and ``dynamics/adaptive_resonator.py`` at
# ``192996f2e376148ef1f5f61e55bfd70665b508a2`` (``_AdResDynamicsFwd``: the resonator
# never reset, ALIF's threshold and refractory dynamics on ``imag``;
# ``_AdResDynamicsBwd``: the resonator's backward, none for the threshold and refractory
# state).


class _LavaAdaptiveResonator(torch.autograd.Function):
    @staticmethod
    def forward(ctx, real_input, imag_input, sin_decay, cos_decay, ref_keep, th_keep, th_step, th0):
        real_old = torch.zeros_like(real_input[..., 0])
        imag_old = torch.zeros_like(real_input[..., 0])
        threshold_old = torch.full_like(real_input[..., 0], th0)
        refractory_old = torch.zeros_like(real_input[..., 0])
        real, imag = torch.zeros_like(real_input), torch.zeros_like(imag_input)
        threshold, refractory = torch.zeros_like(real_input), torch.zeros_like(real_input)
        for n in range(real_input.shape[-1]):
            refractory_new = refractory_old * ref_keep
            threshold_new = (threshold_old - th0) * th_keep + th0
            real_new = cos_decay * real_old - sin_decay * imag_old + real_input[..., n]
            imag_new = sin_decay * real_old + cos_decay * imag_old + imag_input[..., n]
            spike_new = (imag_new >= threshold_new + refractory_new).to(real.dtype)
            real_old, imag_old = real_new, imag_new
            threshold_old = threshold_new + th_step * spike_new
            refractory_old = refractory_new + 2 * threshold_new * spike_new
            real[..., n], imag[..., n] = real_new, imag_new
            threshold[..., n], refractory[..., n] = threshold_new, refractory_new
        ctx.save_for_backward(real, imag, sin_decay, cos_decay)
        return real, imag, threshold, refractory

    @staticmethod
    def backward(ctx, grad_real, grad_imag, *_):
        # the resonator's backward (_AdResDynamicsBwd is _res_dynamics_bwd)
        real, imag, sin_decay, cos_decay = ctx.saved_tensors
        ctx_res = type("Ctx", (), {"saved_tensors": (real, imag, sin_decay, cos_decay)})
        grads = _LavaResonator.backward(ctx_res, grad_real, grad_imag)
        return (*grads[:4], None, None, None, None)


def test_adrf_iz_equals_lava_dl_loop_in_spikes_states_and_gradients():
    default = torch.get_default_dtype()
    torch.set_default_dtype(F64)
    try:
        node = LavaADRFIzNode(
            0.2,
            0.1,
            PERIODS,
            RF_DECAYS,
            DECAYS["threshold_decay"],
            DECAYS["refractory_decay"],
            shared_param=False,
            requires_grad=True,
            store_v_seq=True,
        )
    finally:
        torch.set_default_dtype(default)
    generator = torch.Generator().manual_seed(7)
    real = (torch.rand(30, 2, 3, dtype=F64, generator=generator) - 0.35).requires_grad_()
    imag = (torch.rand(30, 2, 3, dtype=F64, generator=generator) - 0.35).requires_grad_()
    with F.streaming(node):
        s = node((real, imag))
        state = {k: v.detach() for k, v in node.state.items()}
    g = torch.linspace(-1, 1, s.numel(), dtype=F64).view(s.shape)
    grads = torch.autograd.grad((s * g).sum(), [real, imag, node.sin_decay, node.cos_decay])

    sin_ref, cos_ref = (d.clone().requires_grad_() for d in _lava_clamped(PERIODS, RF_DECAYS))
    re_l, im_l = (t.detach().permute(1, 2, 0).clone().requires_grad_() for t in (real, imag))
    sin_q = (torch.round(sin_ref.detach() * 4096) + (sin_ref - sin_ref.detach()) * 4096) / 4096
    cos_q = (torch.round(cos_ref.detach() * 4096) + (cos_ref - cos_ref.detach()) * 4096) / 4096
    real_l, imag_l, th_l, ref_l = _LavaAdaptiveResonator.apply(
        re_l,
        im_l,
        sin_q,
        cos_q,
        _quantize_keep(DECAYS["refractory_decay"]),
        _quantize_keep(DECAYS["threshold_decay"]),
        6 / 64,
        0.2 * 64 // 1 / 64,
    )
    s_l = node.surrogate_function(imag_l - (th_l + ref_l))
    assert torch.equal(s.detach(), s_l.detach().permute(2, 0, 1))
    assert 0.05 < s.mean() < 0.5 and ref_l.max() > 0 and th_l.max() > 0.2
    torch.testing.assert_close(
        node.v_seq.detach(), imag_l.detach().permute(2, 0, 1), atol=1e-12, rtol=0
    )
    torch.testing.assert_close(state["u"], real_l[..., -1].detach(), atol=1e-12, rtol=0)
    fired = s_l.detach()[..., -1]
    torch.testing.assert_close(state["th"], th_l[..., -1] + 6 / 64 * fired, atol=1e-12, rtol=0)
    torch.testing.assert_close(
        state["r"], ref_l[..., -1] + 2 * th_l[..., -1] * fired, atol=1e-12, rtol=0
    )
    want = torch.autograd.grad((s_l * g.permute(1, 2, 0)).sum(), [re_l, im_l, sin_ref, cos_ref])
    for name, a, b in zip(["real", "imag", "sin_decay", "cos_decay"], grads, want):
        b = b.permute(2, 0, 1) if b.dim() == 3 else b
        assert b.abs().sum() > 0, name
        torch.testing.assert_close(a, b, atol=1e-11, rtol=1e-10, msg=name)


def test_adrf_iz_errors_name_the_argument():
    with pytest.raises(ConfigurationError, match="threshold_step"):
        LavaADRFIzNode(0.5, -0.1, 8.0, 0.1, 0.1, 0.1)
    with pytest.raises(ConfigurationError, match="refractory_decay"):
        LavaADRFIzNode(0.5, 0.1, 8.0, 0.1, 0.1, 2.0)
    node = LavaADRFIzNode(0.5, 0.1, 8.0, 0.1, torch.tensor([0.1, 0.2]), 0.1, shared_param=False)
    with pytest.raises(ShapeError, match="threshold_decay"):
        node(torch.zeros(3, 1, 3))


# -- ADRF (phase spike) ------------------------------------------------------------------
# ``src/lava/lib/dl/slayer/neuron/adrf.py`` at ``37ce65dacc10176db77f16f0a55d6421bdc36498``
# (``resonator.dynamics`` without reset, ``adaptive_phase_th.dynamics``, ``complex.Spike(
# real, imag, threshold + refractory, tau_rho * 100, scale_rho * 0.1, ...)``) and
# ``dynamics/adaptive_phase_th.py`` at ``56a0dcdc8b376675c0ca50c0c314e310b1e4b2db``
# (``_APTHDynamicsFwd``; its backward returns ``None``).


def lava_adaptive_phase_th(real, imag, ref_keep, th_keep, th_step, th0):
    """``_APTHDynamicsFwd`` in float: the threshold and refractory state per step."""
    threshold_old = torch.full_like(real[..., 0], th0)
    refractory_old = torch.zeros_like(real[..., 0])
    im_old = torch.zeros_like(imag[..., 0])
    threshold, refractory = torch.zeros_like(real), torch.zeros_like(real)
    for n in range(real.shape[-1]):
        refractory_new = refractory_old * ref_keep
        threshold_new = (threshold_old - th0) * th_keep + th0
        spike_new = (
            (real[..., n] >= threshold_new + refractory_new) * (imag[..., n] >= 0) * (im_old < 0)
        ).to(real.dtype)
        threshold_old = threshold_new + th_step * spike_new
        refractory_old = refractory_new + 2 * threshold_new * spike_new
        threshold[..., n], refractory[..., n] = threshold_new, refractory_new
        im_old = imag[..., n]
    return threshold, refractory


def test_adrf_equals_lava_dl_loop_in_spikes_states_and_gradients():
    default = torch.get_default_dtype()
    torch.set_default_dtype(F64)
    try:
        node = LavaADRFNode(
            0.25,
            0.1,
            PERIODS,
            RF_DECAYS,
            DECAYS["threshold_decay"],
            DECAYS["refractory_decay"],
            tau_grad=0.02,
            scale_grad=3.0,
            shared_param=False,
            requires_grad=True,
            store_v_seq=True,
        )
    finally:
        torch.set_default_dtype(default)
    generator = torch.Generator().manual_seed(11)
    real = (torch.rand(40, 2, 3, dtype=F64, generator=generator) - 0.3).requires_grad_()
    imag = (torch.rand(40, 2, 3, dtype=F64, generator=generator) - 0.3).requires_grad_()
    with F.streaming(node):
        s = node((real, imag))
        state = {k: v.detach() for k, v in node.state.items()}
    g = torch.linspace(-1, 1, s.numel(), dtype=F64).view(s.shape)
    grads = torch.autograd.grad((s * g).sum(), [real, imag, node.sin_decay, node.cos_decay])

    sin_ref, cos_ref = (d.clone().requires_grad_() for d in _lava_clamped(PERIODS, RF_DECAYS))
    re_l, im_l = (t.detach().permute(1, 2, 0).clone().requires_grad_() for t in (real, imag))
    sin_q = (torch.round(sin_ref.detach() * 4096) + (sin_ref - sin_ref.detach()) * 4096) / 4096
    cos_q = (torch.round(cos_ref.detach() * 4096) + (cos_ref - cos_ref.detach()) * 4096) / 4096
    real_l, imag_l = _LavaResonator.apply(re_l, im_l, sin_q, cos_q, None)
    th_l, ref_l = lava_adaptive_phase_th(
        real_l.detach(),
        imag_l.detach(),
        _quantize_keep(DECAYS["refractory_decay"]),
        _quantize_keep(DECAYS["threshold_decay"]),
        6 / 64,
        0.25,
    )
    s_l = _LavaComplexSpike.apply(real_l, imag_l, th_l + ref_l, 0.02 * 0.25 * 100, 3.0 * 0.1)
    assert torch.equal(s.detach(), s_l.detach().permute(2, 0, 1))
    assert 0.02 < s.mean() < 0.3 and ref_l.max() > 0
    torch.testing.assert_close(
        node.v_seq.detach(), imag_l.detach().permute(2, 0, 1), atol=1e-12, rtol=0
    )
    torch.testing.assert_close(state["u"], real_l[..., -1].detach(), atol=1e-12, rtol=0)
    fired = s_l.detach()[..., -1]
    torch.testing.assert_close(state["th"], th_l[..., -1] + 6 / 64 * fired, atol=1e-12, rtol=0)
    torch.testing.assert_close(
        state["r"], ref_l[..., -1] + 2 * th_l[..., -1] * fired, atol=1e-12, rtol=0
    )
    want = torch.autograd.grad((s_l * g.permute(1, 2, 0)).sum(), [re_l, im_l, sin_ref, cos_ref])
    for name, a, b in zip(["real", "imag", "sin_decay", "cos_decay"], grads, want):
        b = b.permute(2, 0, 1) if b.dim() == 3 else b
        assert b.abs().sum() > 0, name
        torch.testing.assert_close(a, b, atol=1e-11, rtol=1e-10, msg=name)
