"""``CubaLIFNode(graded_spike=True)``: Lava-DL's CUBA neuron with graded spikes.

Lava-DL is not installed here; its formulas are transcribed from reading
``lava-nc/lava-dl`` (``slayer/spike/spike.py``: ``Spike.forward`` with
``graded_spike=True`` returns ``(v >= θ) v / scale`` and CUBA passes ``scale = 1``;
``_spike_backward`` returns ``scale_rho exp(clamp(v - θ, max=0) / tau_rho)``;
``neuron/cuba.py``: ``tau_rho * TAU_RHO_MULT`` (100), ``scale_rho * SCALE_RHO_MULT``
(0.1), ``θ + 0.01 / s_scale``; ``neuron/dynamics/leaky_integrator.py``: the voltage
output is the charged value, the reset zeroes the carried state, the backward ignores
the reset) into the float64 loop below.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import fused_backends, kernel_device
from spikeflow.errors import ConfigurationError
from spikeflow.functional import streaming
from spikeflow.interop import export_netx
from spikeflow.neurons import CubaLIFNode
from spikeflow.quant import loihi_grid

A_U, A_V, TH = 0.25, 0.1, 0.5
TH_EPS = TH + 0.01 / 4096  # Lava-DL's threshold_eps at scale 64
TAU_RHO, SCALE_RHO = 100 * 1.0 * TH, 0.1 * 1.0  # tau_grad = scale_grad = 1


class _LavaGradedSpike(torch.autograd.Function):
    """Lava-DL's ``Spike`` with ``graded_spike=True`` (scale 1), transcribed."""

    @staticmethod
    def forward(ctx, v):
        ctx.save_for_backward(v)
        return (v >= TH_EPS).to(v.dtype) * v

    @staticmethod
    def backward(ctx, grad):
        (v,) = ctx.saved_tensors
        return grad * SCALE_RHO * torch.exp(torch.clamp(v - TH_EPS, max=0) / TAU_RHO)


def _lava_cuba_graded(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Lava-DL's float CUBA dynamics with graded spikes on time-major ``x``: the spikes
    and the carried voltage; the reset zeroes the state without a gradient."""
    u = torch.zeros_like(x[0])
    v = torch.zeros_like(x[0])
    spikes = []
    for x_t in x:
        u = (1 - A_U) * u + x_t
        charged = (1 - A_V) * v + u
        fired = (charged >= TH_EPS).to(x.dtype)
        spikes.append(_LavaGradedSpike.apply(charged))
        v = charged - (charged * fired).detach()
    return torch.stack(spikes), v


def _node(**kwargs: object) -> CubaLIFNode:
    return CubaLIFNode(
        tau_syn=1 / A_U, tau_mem=1 / A_V, r="tau_syn*tau_mem", v_threshold=TH_EPS,
        v_reset=0.0, graded_spike=True, tau_rho=TAU_RHO, scale_rho=SCALE_RHO,
        **kwargs,
    )  # fmt: skip


@pytest.mark.parametrize("backend", fused_backends("torch"))
def test_graded_spikes_states_and_gradients_equal_lava_dl(backend: str) -> None:
    torch.manual_seed(0)
    device = kernel_device(backend)
    x_cpu = torch.randn(16, 3, 7, dtype=torch.float64) * 0.4
    x = x_cpu.to(device).requires_grad_()
    spikes = _node(backend=backend).to(device)(x)
    ref_x = x_cpu.clone().requires_grad_()
    ref, ref_v = _lava_cuba_graded(ref_x)
    assert _node(backend=backend).declaration().fire is not None  # the declared fire rule
    spikes = spikes.cpu()
    torch.testing.assert_close(spikes, ref, rtol=0, atol=1e-12)
    fired = spikes != 0
    assert 0.05 < fired.double().mean() < 0.6  # both branches are exercised
    # a graded spike is the charged membrane: not all spikes have one value
    assert spikes[fired].unique().numel() > 10
    weights = torch.randn_like(spikes)
    (grad,) = torch.autograd.grad((spikes * weights).sum(), x)
    grad = grad.cpu()
    (ref_grad,) = torch.autograd.grad((ref * weights).sum(), ref_x)
    torch.testing.assert_close(grad, ref_grad, rtol=0, atol=1e-12)
    # the carried state: streamed step by step, the final membrane is Lava-DL's
    stream = _node(backend=backend, step_mode="s").to(device)
    with torch.no_grad(), streaming(stream):
        for x_t in x.detach():
            stream(x_t)
        torch.testing.assert_close(stream.v.cpu(), ref_v.detach(), rtol=0, atol=1e-12)


def test_graded_gradient_is_lava_dl_derivative_not_product_rule() -> None:
    # one step, one neuron: dS/dH must be scale_rho exp(min(H - θ, 0) / tau_rho)
    node = CubaLIFNode(tau_syn=1.0, tau_mem=1.0, r="tau_syn*tau_mem", v_threshold=1.0,
                       graded_spike=True, tau_rho=0.5, scale_rho=0.3, backend="torch")  # fmt: skip
    h = torch.tensor([0.2, 0.9, 1.0, 1.7, 3.0], dtype=torch.float64)
    x = h.reshape(1, 1, 5).clone().requires_grad_()  # tau = 1: H = X on the first step
    s = node(x)
    torch.testing.assert_close(s.reshape(-1), torch.where(h >= 1.0, h, 0.0))
    (grad,) = torch.autograd.grad(s.sum(), x)
    expected = 0.3 * torch.exp(torch.clamp(h - 1.0, max=0) / 0.5)
    torch.testing.assert_close(grad.reshape(-1), expected, rtol=0, atol=1e-15)


def test_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match=r"v_reset must be 0\.0"):
        CubaLIFNode(graded_spike=True, v_reset=None)
    with pytest.raises(ConfigurationError, match="tau_rho"):
        CubaLIFNode(graded_spike=True, tau_rho=0.0)
    with pytest.raises(ConfigurationError, match="graded_spike must be True or False"):
        CubaLIFNode(graded_spike=1)
    # Lava-DL's graded spike gives the threshold no gradient (Spike.backward returns
    # None for it): a learnable threshold is refused, not silently given -dS/dH
    with pytest.raises(ConfigurationError, match=r"learnable_threshold=True.*no gradient"):
        CubaLIFNode(graded_spike=True, learnable_threshold=True)
    CubaLIFNode(graded_spike=False, learnable_threshold=True)  # binary spikes learn θ
    for norm in (None, nn.Identity()):  # a threshold made learnable later: at the call
        node = CubaLIFNode(graded_spike=True, norm=norm)
        node.v_threshold = nn.Parameter(torch.tensor(0.5))
        with pytest.raises(ConfigurationError, match=r"learnable_threshold=True.*no gradient"):
            node(torch.rand(3, 2, 4))


def test_netx_export_and_loihi_grid_refuse_graded_spikes(tmp_path) -> None:
    net = torch.nn.Sequential(torch.nn.Linear(4, 3, bias=False), _node())
    with pytest.raises(ConfigurationError, match=r"graded_spike=True.*netx cannot carry"):
        export_netx(net, tmp_path / "g.net", (4,))
    with pytest.raises(ConfigurationError, match="graded_spike=True"):
        loihi_grid(net)
    assert not (tmp_path / "g.net").exists()


def test_nir_export_refuses_graded_spikes() -> None:
    pytest.importorskip("nir")
    from spikeflow.interop import export_to_nir

    net = torch.nn.Sequential(torch.nn.Linear(4, 3, bias=False), _node())
    with pytest.raises(ConfigurationError, match=r"graded_spike=True.*NIR's CubaLIF"):
        export_to_nir(net, torch.zeros(2, 1, 4))
