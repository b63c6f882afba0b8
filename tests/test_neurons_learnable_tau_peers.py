"""Learned per-neuron time constants against the peers, float64, every backend:

- snnTorch's ``Leaky(beta=tensor, learn_beta=True, reset_mechanism="zero",
  reset_delay=False)`` is ``LIFNode(tau=1/(1 - beta), decay_input=False,
  learnable_tau=True, strict_firing=True)``: the same spikes, its input gradient, and
  its ``beta`` gradient through ``dbeta/dtau = 1/tau^2``;
- snnTorch's ``Synaptic(alpha=tensor, beta=tensor, learn_alpha=True, learn_beta=True,
  reset_mechanism="zero", reset_delay=False)`` is ``CubaLIFNode(1/(1 - alpha),
  1/(1 - beta), r="tau_syn*tau_mem", learnable_tau_syn=True, learnable_tau_mem=True,
  strict_firing=True)``;
- Norse's ``LIF(LIFParameters(tau_syn_inv=nn.Parameter(...),
  tau_mem_inv=nn.Parameter(...)))`` is ``CubaLIFNode(tau_syn=1/tau_syn_inv,
  tau_mem=1/tau_mem_inv, r="tau_syn", dt=dt, learnable_tau_syn=True,
  learnable_tau_mem=True, strict_firing=True)``: the same spikes and gradients, the
  rates' through ``dtau/dtau_inv = -tau^2``;
- Lava-DL's CUBA neuron (``slayer.neuron.cuba.Neuron``, per-channel decays as with
  ``shared_param=False, requires_grad=True``), its float dynamics written out in its
  time-last layout ``[N, C, T]``: Lava-DL is not installable here; the loop follows its
  ``neuron/cuba.py`` and ``neuron/dynamics/leaky_integrator.py`` (docs/neurons.md,
  "Heterogeneous and learned time constants").
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import fused_backends, kernel_device
from spikeflow.neurons import CubaLIFNode, LIFNode
from spikeflow.surrogate import ATan, SuperSpike

BACKENDS = fused_backends("torch")
F64 = torch.float64


@pytest.mark.parametrize("backend", BACKENDS)
def test_per_neuron_learned_tau_equals_snntorch_leaky_learn_beta(backend):
    # snnTorch's reset_delay=False resets in the step that fires, by the spike with its
    # gradient (not detached); its ATan spikes are float32, through which the gradients
    # round: tolerance 1e-6 (as test_neurons_peers' snnTorch test).
    snntorch = pytest.importorskip("snntorch", reason="snnTorch (test extra) is needed")
    from snntorch import surrogate

    device = kernel_device(backend)
    torch.manual_seed(0)
    beta = torch.rand(6, dtype=F64) * 0.8 + 0.1
    x = torch.rand(20, 3, 6, dtype=F64) * 1.2
    g = torch.randn(20, 3, 6, dtype=F64)
    leaky = snntorch.Leaky(
        beta=beta.clone(),
        learn_beta=True,
        threshold=1.0,
        spike_grad=surrogate.atan(alpha=2.0),
        reset_mechanism="zero",
        reset_delay=False,
    ).double()
    x_peer = x.clone().requires_grad_()
    mem, out = leaky.reset_mem(), []
    for x_t in x_peer.unbind(0):
        spk, mem = leaky(x_t, mem)
        out.append(spk)
    s_peer = torch.stack(out)
    gx_peer, gbeta = torch.autograd.grad((s_peer * g).sum(), [x_peer, leaky.beta])

    tau = 1.0 / (1.0 - beta)
    ours = LIFNode(
        tau,
        decay_input=False,
        learnable_tau=True,
        strict_firing=True,
        surrogate_function=ATan(alpha=2.0),
        backend=backend,
    ).to(device)
    x_sf = x.clone().to(device).requires_grad_()
    s = ours(x_sf)
    gx, gtau = torch.autograd.grad((s * g.to(device)).sum(), [x_sf, ours.tau])
    assert torch.equal(s.cpu(), s_peer.to(F64)) and 0.1 < s.mean() < 0.9
    torch.testing.assert_close(gx.cpu(), gx_peer, atol=1e-6, rtol=1e-6)
    # beta = 1 - 1/tau: dL/dtau = dL/dbeta / tau^2
    assert (gbeta != 0).all()
    torch.testing.assert_close(gtau.cpu(), gbeta / tau**2, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_learned_time_constants_equal_snntorch_synaptic_learn_alpha_beta(backend):
    # snnTorch's Synaptic, I = alpha I + X, U = beta U + I: r = tau_syn tau_mem, tied to
    # the learned time constants (r="tau_syn*tau_mem"); tolerances as above.
    snntorch = pytest.importorskip("snntorch", reason="snnTorch (test extra) is needed")
    from snntorch import surrogate

    device = kernel_device(backend)
    torch.manual_seed(0)
    alpha = torch.rand(6, dtype=F64) * 0.6 + 0.2
    beta = torch.rand(6, dtype=F64) * 0.6 + 0.2
    x = torch.rand(20, 3, 6, dtype=F64) * 0.5
    g = torch.randn(20, 3, 6, dtype=F64)
    synaptic = snntorch.Synaptic(
        alpha=alpha.clone(),
        beta=beta.clone(),
        learn_alpha=True,
        learn_beta=True,
        threshold=1.0,
        spike_grad=surrogate.atan(alpha=2.0),
        reset_mechanism="zero",
        reset_delay=False,
    ).double()
    x_peer = x.clone().requires_grad_()
    (syn, mem), out = synaptic.reset_mem(), []
    for x_t in x_peer.unbind(0):
        spk, syn, mem = synaptic(x_t, syn, mem)
        out.append(spk)
    s_peer = torch.stack(out)
    want = torch.autograd.grad((s_peer * g).sum(), [x_peer, synaptic.alpha, synaptic.beta])

    tau_syn, tau_mem = 1.0 / (1.0 - alpha), 1.0 / (1.0 - beta)
    ours = CubaLIFNode(
        tau_syn,
        tau_mem,
        r="tau_syn*tau_mem",
        learnable_tau_syn=True,
        learnable_tau_mem=True,
        strict_firing=True,
        surrogate_function=ATan(alpha=2.0),
        backend=backend,
    ).to(device)
    x_sf = x.clone().to(device).requires_grad_()
    s = ours(x_sf)
    gx, gsyn, gmem = torch.autograd.grad(
        (s * g.to(device)).sum(), [x_sf, ours.tau_syn, ours.tau_mem]
    )
    assert torch.equal(s.cpu(), s_peer.to(F64)) and 0.1 < s.mean() < 0.9
    # alpha = 1 - 1/tau_syn, beta = 1 - 1/tau_mem: dL/dtau = dL/d(alpha or beta) / tau^2
    got = [gx.cpu(), gsyn.cpu() * tau_syn**2, gmem.cpu() * tau_mem**2]
    for name, a, b in zip(["x", "alpha", "beta"], got, want):
        assert (b != 0).any(), name
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6, msg=name)


@pytest.mark.parametrize("backend", BACKENDS)
def test_learned_time_constants_equal_norse_lif_with_parameter_rates(backend):
    # Norse's LIF: i += x; v += dt tau_mem_inv (v_leak - v + i); i -= dt tau_syn_inv i.
    # Its current is CubaLIFNode's times r = tau_syn/dt, which r="tau_syn" keeps tied to
    # the learned tau_syn. Norse starts at v_leak (0 here, as v_reset). Its SuperSpike
    # backward is g / (|x| + 1)^2 whatever its alpha: spikeflow's SuperSpike(alpha=1).
    norse = pytest.importorskip("norse.torch", reason="Norse is not installed")
    device = kernel_device(backend)
    dt = 1e-3
    torch.manual_seed(0)
    tau_syn_inv = torch.rand(5, dtype=F64) * 150 + 50  # 1/s
    tau_mem_inv = torch.rand(5, dtype=F64) * 100 + 50
    zero = torch.tensor(0.0, dtype=F64)
    p = norse.LIFParameters(
        tau_syn_inv=nn.Parameter(tau_syn_inv.clone()),
        tau_mem_inv=nn.Parameter(tau_mem_inv.clone()),
        v_leak=zero,
        v_th=torch.tensor(1.0, dtype=F64),
        v_reset=zero,
    )
    x = torch.rand(40, 3, 5, dtype=F64) * 2.0
    g = torch.randn(40, 3, 5, dtype=F64)
    x_peer = x.clone().requires_grad_()
    z, _ = norse.LIF(p, dt=dt)(x_peer)
    want = torch.autograd.grad((z * g).sum(), [x_peer, p.tau_syn_inv, p.tau_mem_inv])

    tau_syn, tau_mem = 1.0 / tau_syn_inv, 1.0 / tau_mem_inv
    ours = CubaLIFNode(
        tau_syn,
        tau_mem,
        r="tau_syn",
        dt=dt,
        learnable_tau_syn=True,
        learnable_tau_mem=True,
        strict_firing=True,
        surrogate_function=SuperSpike(alpha=1.0),
        backend=backend,
    )
    ours = ours.to(device)
    x_sf = x.clone().to(device).requires_grad_()
    s = ours(x_sf)
    gx, gsyn, gmem = torch.autograd.grad(
        (s * g.to(device)).sum(), [x_sf, ours.tau_syn, ours.tau_mem]
    )
    assert torch.equal(s.cpu(), z) and 0.1 < s.mean() < 0.9
    # tau = 1/tau_inv: dL/dtau_inv = -tau^2 dL/dtau
    got = [gx.cpu(), -gsyn.cpu() * tau_syn**2, -gmem.cpu() * tau_mem**2]
    for name, a, b in zip(["x", "tau_syn_inv", "tau_mem_inv"], got, want):
        assert b.abs().sum() > 0, name
        torch.testing.assert_close(a, b, atol=1e-14, rtol=1e-10, msg=name)


# ---- Lava-DL's CUBA neuron, float dynamics, time-last [N, C, T] ----------------------

LAVA_S_SCALE = 1 << 12  # s_scale = scale * (1 << 6), scale = 1 << 6 (the default)


def _lava_cuba(x, current_decay, voltage_decay, threshold, spike):
    """slayer.neuron.cuba.Neuron's dynamics over ``x[n, c, t]`` with per-channel decays
    ``[C]``, in float (its fixed-point grid dropped): ``u[t] = (1 - a_u) u[t-1] + x[t]``,
    ``v[t] = (1 - a_v) v[t-1] + u[t]``, spike where ``v >= threshold + threshold_eps``
    (``threshold_eps = 0.01 / s_scale``: Loihi fires on ``v > threshold``), then ``v``
    reset to 0 (Lava-DL's backward does not see the reset: detached here). Returns the
    spikes and the voltage after the reset, ``[N, C, T]``. ``spike(z)`` is the step with
    the surrogate's derivative."""
    eps = 0.01 / LAVA_S_SCALE
    u = torch.zeros_like(x[..., 0])
    v = torch.zeros_like(x[..., 0])
    spikes, voltages = [], []
    for t in range(x.shape[-1]):
        u = (1 - current_decay) * u + x[..., t]
        v = (1 - voltage_decay) * v + u
        s = spike(v - (threshold + eps))
        v = v * (1 - s.detach())
        spikes.append(s)
        voltages.append(v)
    return torch.stack(spikes, -1), torch.stack(voltages, -1)


def _lava_mapped(current_decay, voltage_decay, threshold, backend, **kw):
    """Lava-DL's CUBA as CubaLIFNode: tau = 1/decay, r = tau_syn tau_mem (its current
    and voltage add their inputs unscaled), threshold + threshold_eps fired on >=."""
    return CubaLIFNode(
        tau_syn=1.0 / current_decay,
        tau_mem=1.0 / voltage_decay,
        r="tau_syn*tau_mem",
        v_threshold=threshold + 0.01 / LAVA_S_SCALE,
        v_reset=0.0,
        detach_reset=True,
        backend=backend,
        **kw,
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_cuba_with_learned_per_channel_decays_equals_lava_dl_cuba(backend):
    device = kernel_device(backend)
    torch.manual_seed(0)
    channels, threshold = 4, 1.25  # on Lava-DL's threshold grid (1/64)
    # shared_param=False draws one decay per channel in (min, max)
    current_decay = torch.empty(channels, dtype=F64).uniform_(0.1, 0.5)
    voltage_decay = torch.empty(channels, dtype=F64).uniform_(0.05, 0.3)
    x = torch.rand(30, 2, channels, dtype=F64) * 0.5  # time-major [T, N, C]
    g = torch.randn(30, 2, channels, dtype=F64)
    node = _lava_mapped(
        current_decay,
        voltage_decay,
        threshold,
        backend,
        store_v_seq=True,
        learnable_tau_syn=True,
        learnable_tau_mem=True,
    ).to(device)
    x_sf = x.clone().to(device).requires_grad_()
    s = node(x_sf)
    got = torch.autograd.grad((s * g.to(device)).sum(), [x_sf, node.tau_syn, node.tau_mem])

    decays = [current_decay.clone().requires_grad_(), voltage_decay.clone().requires_grad_()]
    x_lava = x.permute(1, 2, 0).clone().requires_grad_()  # [N, C, T]
    s_lava, v_lava = _lava_cuba(x_lava, *decays, threshold, node.surrogate_function)
    want = torch.autograd.grad((s_lava * g.permute(1, 2, 0)).sum(), [x_lava, *decays])
    assert torch.equal(s.cpu(), s_lava.permute(2, 0, 1)) and 0.1 < s.mean() < 0.9
    torch.testing.assert_close(node.v_seq.cpu(), v_lava.permute(2, 0, 1), atol=1e-12, rtol=0)
    # tau = 1/decay: dL/ddecay = -tau^2 dL/dtau
    torch.testing.assert_close(got[0].cpu(), want[0].permute(2, 0, 1), atol=1e-12, rtol=1e-10)
    for name, g_tau, tau, g_decay in zip(
        ["current_decay", "voltage_decay"], got[1:], [node.tau_syn, node.tau_mem], want[1:]
    ):
        assert (g_decay != 0).all(), name
        torch.testing.assert_close(
            (-g_tau * tau.detach() ** 2).cpu(), g_decay, atol=1e-12, rtol=1e-10, msg=name
        )


def test_lava_dl_threshold_eps_keeps_loihis_strict_firing():
    # With both decays 1 the voltage is the input: reaching the threshold exactly does
    # not fire (Loihi: v > threshold), anything above the eps does.
    threshold = 1.25
    node = _lava_mapped(torch.tensor(1.0), torch.tensor(1.0), threshold, "torch")
    x = torch.tensor([threshold, threshold + 1e-3, 0.0, threshold], dtype=F64).view(4, 1, 1)
    assert node(x).view(-1).tolist() == [0.0, 1.0, 0.0, 0.0]
    lava, _ = _lava_cuba(x.view(1, 1, 4), 1.0, 1.0, threshold, lambda z: (z >= 0).to(z.dtype))
    assert lava.view(-1).tolist() == [0.0, 1.0, 0.0, 0.0]
