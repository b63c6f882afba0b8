"""``CubaLIFNode(norm=...)``: Lava-DL's CUBA neuron with a normalised current.

Lava-DL is not installed here; its computation is transcribed from reading
``lava-nc/lava-dl`` into the float64 loops below, in its layout ``[N, C, ..., T]``:

* ``src/lava/lib/dl/slayer/neuron/cuba.py`` at ``1789ef9b`` (``Neuron.dynamics``: the
  current is ``leaky_integrator.dynamics`` of the input over the whole sequence, then
  ``current = self.norm(current)``, then the voltage is the leaky integrator of that
  current with the threshold ``θ + 0.01 / s_scale``; ``spike``: ``Spike.apply``);
* ``neuron/base.py`` (``self.norm = norm(num_features=num_neurons)`` and its
  ``pre_hook_fx`` set to the neuron's ``quantize_8bit``: here ``quant.LoihiWeightGrid``);
* ``neuron/norm.py`` (``MeanOnlyBatchNorm``, ``WgtScaleBatchNorm``: the transcription of
  ``tests/test_layers_lava_norm.py``, with the hook on the mean);
* ``neuron/dynamics/leaky_integrator.py`` (float: ``y[t] = k y[t-1] + x[t]``, the
  carried state zeroed where ``y >= θ``, the backward ignoring that reset) and
  ``spike/spike.py`` (graded: ``v [v >= θ]``, derivative ``scale_rho exp(min(v - θ, 0)
  / tau_rho)``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from conftest import fused_backends
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.functional import streaming
from spikeflow.layers import MeanOnlyBatchNorm, WgtScaleBatchNorm
from spikeflow.neurons import CubaLIFNode
from spikeflow.quant import LoihiWeightGrid, loihi_grid

F64 = torch.float64
A_U, A_V, TH = 0.25, 0.125, 0.3
TH_EPS = TH + 0.01 / 4096
TAU_RHO, SCALE_RHO = 100 * 1.5 * TH, 0.1 * 0.7  # tau_grad 1.5, scale_grad 0.7


class _HookedLavaNorm:
    """Lava-DL's ``MeanOnlyBatchNorm`` (``bits=None``) or ``WgtScaleBatchNorm`` as its
    neuron builds it (the mean through ``quantize_8bit``), on ``[N, C, ..., T]``."""

    def __init__(self, momentum, eps=None, bits=None):
        self.momentum, self.eps, self.bits = momentum, eps, bits
        self.running_mean = torch.zeros(1, dtype=F64)
        self.running_var = torch.zeros(1, dtype=F64)

    def __call__(self, inp, training):
        if training:
            mean, var = _channel_mean(inp), torch.var(inp, unbiased=False)
            n, m = inp.numel() / inp.shape[1], self.momentum
            with torch.no_grad():
                self.running_mean = (1 - m) * self.running_mean + m * mean
                self.running_var = (1 - m) * self.running_var + m * var * n / (n + 1)
        else:
            mean, var = self.running_mean, self.running_var
        out = inp - LoihiWeightGrid()(mean.view((1, -1) + (1,) * (inp.dim() - 2)))
        if self.bits is None:  # MeanOnlyBatchNorm
            return out
        exponent = torch.ceil(torch.log2(torch.sqrt(var + self.eps)))
        return out / 2.0 ** exponent.clamp(-self.bits, self.bits)


def _channel_mean(inp):
    return torch.mean(inp.reshape(inp.shape[0], inp.shape[1], -1), dim=[0, 2])


class _GradedSpike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, v):
        ctx.save_for_backward(v)
        return (v >= TH_EPS).to(v.dtype) * v

    @staticmethod
    def backward(ctx, grad):
        (v,) = ctx.saved_tensors
        return grad * SCALE_RHO * torch.exp(torch.clamp(v - TH_EPS, max=0) / TAU_RHO)


def _lava_cuba_norm(x, current_decay, norm, training, graded):
    """Lava-DL's ``cuba.Neuron(norm=...)`` forward on ``x[N, C, ..., T]``: the spikes and
    the voltage (before the reset, as ``dynamics`` returns it)."""
    u = torch.zeros_like(x[..., 0])
    currents = []
    for t in range(x.shape[-1]):
        u = (1 - current_decay) * u + x[..., t]
        currents.append(u)
    current = norm(torch.stack(currents, -1), training)
    v = torch.zeros_like(x[..., 0])
    spikes, voltages = [], []
    for t in range(x.shape[-1]):
        charged = (1 - A_V) * v + current[..., t]
        fired = (charged >= TH_EPS).to(x.dtype)
        spikes.append(_GradedSpike.apply(charged) if graded else fired)
        voltages.append(charged)
        v = charged - (charged * fired).detach()  # the reset, ignored by the backward
    return torch.stack(spikes, -1), torch.stack(voltages, -1)


def _node(norm, graded, **kwargs):
    extra = dict(graded_spike=True, tau_rho=TAU_RHO, scale_rho=SCALE_RHO) if graded else {}
    return CubaLIFNode(
        tau_syn=1 / A_U,
        tau_mem=1 / A_V,
        r="tau_syn*tau_mem",
        v_threshold=TH_EPS,
        v_reset=0.0,
        detach_reset=True,
        norm=norm,
        store_v_seq=True,
        **extra,
        **kwargs,
    ).double()


def _time_last(x):
    return x.permute(*range(1, x.dim()), 0)


def _time_major(x):
    return x.permute(-1, *range(x.dim() - 1))


@pytest.mark.parametrize("backend", fused_backends("torch"))
def test_mean_only_norm_equals_lava_dl_over_training_and_evaluation(backend) -> None:
    """Graded spikes (Lava-DL's derivative, reproduced): spikes, voltages, the running
    mean, the input's and the learned current decay's gradients equal Lava-DL's."""
    generator = torch.Generator().manual_seed(0)
    norm = MeanOnlyBatchNorm(5, momentum=0.5, pre_hook_fx=LoihiWeightGrid())
    node = _node(norm, True, backend=backend, learnable_tau_syn=True)
    lava_norm = _HookedLavaNorm(0.5)
    decay = torch.tensor(A_U, dtype=F64, requires_grad=True)
    fired = []
    for call, training in enumerate((True, True, False)):
        node.train(training)
        x = (torch.rand(24, 3, 5, dtype=F64, generator=generator) + 0.1 * call).requires_grad_()
        spikes = node(x)
        x_l = _time_last(x.detach()).clone().requires_grad_()
        want, voltage = _lava_cuba_norm(x_l, decay, lava_norm, training, graded=True)
        torch.testing.assert_close(spikes, _time_major(want), rtol=0, atol=1e-12)
        torch.testing.assert_close(
            node.v_seq, _time_major(voltage) * (_time_major(want) == 0), rtol=0, atol=1e-12
        )  # v_seq: after the reset
        torch.testing.assert_close(
            node.norm.running_mean, lava_norm.running_mean, rtol=0, atol=1e-12
        )
        weights = torch.randn(spikes.shape, dtype=F64, generator=generator)
        grads = torch.autograd.grad((spikes * weights).sum(), (x, node.tau_syn))
        want_grads = torch.autograd.grad((want * _time_last(weights)).sum(), (x_l, decay))
        torch.testing.assert_close(grads[0], _time_major(want_grads[0]), rtol=1e-10, atol=1e-12)
        # tau_syn = 1 / decay: dL/dtau = -decay^2 dL/ddecay
        torch.testing.assert_close(grads[1], -(A_U**2) * want_grads[1], rtol=1e-10, atol=1e-12)
        fired.append((spikes != 0).double().mean().item())
    assert all(0.05 < f < 0.9 for f in fired), fired  # both branches exercised
    assert node.norm.running_mean.abs().min() > 0.1  # a mean of a real size was removed


def test_scale_norm_sees_lava_dl_current_on_images() -> None:
    """``WgtScaleBatchNorm`` divides by a power of two of the current's spread: it must
    see Lava-DL's current ``u`` (gain 1 on the input), not spikeflow's ``I = u / tau_syn``;
    binary spikes on ``[T, B, C, H, W]``, training then evaluation."""
    generator = torch.Generator().manual_seed(1)
    norm = WgtScaleBatchNorm(3, momentum=1.0, weight_exp_bits=3, pre_hook_fx=LoihiWeightGrid())
    node = _node(norm, False)
    lava_norm = _HookedLavaNorm(1.0, eps=1e-5, bits=3)
    for training in (True, False):
        node.train(training)
        x = torch.randn(16, 2, 3, 4, 4, dtype=F64, generator=generator) * 2 + 0.5
        spikes = node(x)
        want, voltage = _lava_cuba_norm(_time_last(x), A_U, lava_norm, training, graded=False)
        assert torch.equal(spikes, _time_major(want))
        torch.testing.assert_close(
            node.v_seq, _time_major(voltage) * (1 - _time_major(want)), rtol=0, atol=1e-12
        )
        assert 0.05 < spikes.mean() < 0.6
    # the exponent of u's spread (that of I = A_U u would be 2 less)
    torch.testing.assert_close(norm.running_var, lava_norm.running_var, rtol=1e-12, atol=0)
    assert norm.weight_exp.item() >= 2.0


@pytest.mark.parametrize("backend", fused_backends())
def test_fused_kernels_equal_the_reference_with_binary_spikes(backend) -> None:
    # binary spikes take spikeflow's surrogate: the fused voltage kernels match the loop,
    # gradients of the input and both learned time constants included
    generator = torch.Generator().manual_seed(2)
    x = torch.rand(20, 4, 6, dtype=F64, generator=generator) * 0.8
    results = []
    for name in ("torch", backend):
        node = _node(
            MeanOnlyBatchNorm(6),
            False,
            backend=name,
            learnable_tau_syn=True,
            learnable_tau_mem=True,
        )
        xi = x.clone().requires_grad_()
        spikes = node(xi)
        grads = torch.autograd.grad((spikes * x).sum(), (xi, node.tau_syn, node.tau_mem))
        results.append((spikes, node.v_seq, *grads))
        assert 0.05 < spikes.mean() < 0.7
    for got, want in zip(results[1], results[0]):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_streaming_carries_the_current_before_the_norm() -> None:
    # in evaluation the norm is per element (the running mean): chunks equal one call
    generator = torch.Generator().manual_seed(3)
    norm = MeanOnlyBatchNorm(4)
    norm.running_mean = torch.tensor([0.3, -0.2, 0.5, 0.0])
    node = _node(norm, False).eval()
    x = torch.rand(18, 2, 4, dtype=F64, generator=generator)
    whole = node(x)
    with streaming(node):
        parts = torch.cat([node(x[:7]), node(x[7:11]), node(x[11:])])
        carried = node.i
    assert torch.equal(parts, whole) and whole.sum() > 5
    u = torch.zeros(2, 4, dtype=F64)
    for x_t in x:
        u = (1 - A_U) * u + x_t
    torch.testing.assert_close(carried, A_U * u, rtol=0, atol=1e-12)  # I = u / tau_syn
    single = _node(norm, False, step_mode="s").eval()  # one step at a time
    with streaming(single):
        assert torch.equal(torch.stack([single(x_t) for x_t in x]), whole)


def test_a_trained_norm_without_num_features_resumes_from_its_state_dict(tmp_path) -> None:
    # Lava-DL's default num_features=None sizes the norm at its first input; a fresh
    # neuron must load the trained one's state (a resumed run), and then compute as it
    x = torch.rand(10, 3, 5, dtype=F64, generator=torch.Generator().manual_seed(6))
    trained = _node(MeanOnlyBatchNorm(momentum=0.5), False)
    trained(x)
    torch.save(trained.state_dict(), tmp_path / "node.pt")
    fresh = _node(MeanOnlyBatchNorm(momentum=0.5), False)
    fresh.load_state_dict(torch.load(tmp_path / "node.pt"))
    assert fresh.norm.num_features == 5
    assert torch.equal(fresh.norm.running_mean, trained.norm.running_mean)
    assert torch.equal(fresh.eval()(x), trained.eval()(x)) and trained(x).sum() > 0
    with pytest.raises(ShapeError, match="num_features is 5"):
        fresh(torch.rand(4, 3, 6, dtype=F64))  # sized now: other channels are refused
    sized = _node(MeanOnlyBatchNorm(4), False)  # a given num_features is kept: a mismatch
    with pytest.raises(RuntimeError, match=r"size mismatch for norm\.running_mean"):
        sized.load_state_dict(trained.state_dict())


def test_a_norm_by_name_from_the_command_line() -> None:
    # --neuron cuba_lif --neuron-kwargs norm=mean_only: Lava-DL's norm as its neuron
    # builds it (the mean through quantize_8bit), a fresh one per neuron
    from spikeflow.cli.kwargs import parse_kwargs
    from spikeflow.models.common import NeuronFactory

    factory = NeuronFactory("cuba_lif", parse_kwargs(["norm=mean_only"], "--neuron-kwargs"))
    first, second = factory(), factory()
    assert type(first.norm) is MeanOnlyBatchNorm and first.norm is not second.norm
    assert isinstance(first.norm.pre_hook_fx, LoihiWeightGrid)
    assert type(CubaLIFNode(norm="wgt_scale").norm) is WgtScaleBatchNorm
    x = torch.rand(12, 3, 5, dtype=F64, generator=torch.Generator().manual_seed(7)) + 0.3
    named = _node("mean_only", False)
    given = _node(MeanOnlyBatchNorm(pre_hook_fx=LoihiWeightGrid()), False)
    spikes = named(x)
    assert torch.equal(spikes, given(x)) and spikes.sum() > 0
    assert torch.equal(named.norm.running_mean, given.norm.running_mean)
    with pytest.raises(ConfigurationError, match=r"'mean_only', 'wgt_scale'.*got 'batch'"):
        CubaLIFNode(norm="batch")


def test_identity_norm_is_the_plain_neuron() -> None:
    x = torch.rand(12, 3, 5, dtype=F64, generator=torch.Generator().manual_seed(4))
    for r in ("tau_syn*tau_mem", 0.7):
        plain = CubaLIFNode(tau_syn=3.0, tau_mem=2.5, r=r, v_threshold=0.2).double()
        normed = CubaLIFNode(
            tau_syn=3.0, tau_mem=2.5, r=r, v_threshold=0.2, norm=nn.Identity()
        ).double()
        assert torch.equal(normed(x), plain(x)) and plain(x).sum() > 0


def test_errors() -> None:
    with pytest.raises(ConfigurationError, match=r"norm must be an nn\.Module"):
        CubaLIFNode(norm=lambda u: u)
    from spikeflow.neurons import AdExLIFNode, RefractoryCubaLIFNode

    for build in (AdExLIFNode, lambda **k: RefractoryCubaLIFNode(refractory_steps=2, **k)):
        with pytest.raises(ConfigurationError, match="has equations of its own"):
            build(norm=nn.Identity())  # equations of their own
        later = build()  # a norm set after construction is refused at the call too
        later.norm = MeanOnlyBatchNorm(3)
        with pytest.raises(ConfigurationError, match="has equations of its own"):
            later(torch.rand(4, 2, 3))
    plain = CubaLIFNode()
    plain.norm = "mean"  # not a module: an attribute set after construction
    with pytest.raises(ConfigurationError, match=r"norm must be an nn\.Module.*got str"):
        plain(torch.rand(4, 2, 3))
    node = CubaLIFNode(norm=nn.Flatten(0, 1))
    with pytest.raises(ShapeError, match=r"norm must return the current's shape \(4, 2, 3\)"):
        node(torch.rand(4, 2, 3))
    net = nn.Sequential(nn.Linear(3, 2, bias=False), _node(MeanOnlyBatchNorm(2), False)).double()
    with pytest.raises(ConfigurationError, match=r"with norm.*whole sequence"):
        net[1].equations(net[1].neuron_params(), 1.0, F64)  # AOT kernels, operation counts
    from spikeflow.learn.eventprop import parameters_from_cuba

    with pytest.raises(ConfigurationError, match="a norm on the current"):
        parameters_from_cuba(CubaLIFNode(r="tau_syn", strict_firing=True, norm=nn.Identity()))
    with pytest.raises(ConfigurationError, match=r"loihi_grid: '1' has a norm on its current"):
        loihi_grid(net)
    from spikeflow.quant.loihi import LoihiCubaLIFNode

    with pytest.raises(ConfigurationError, match=r"from_cuba: .*MeanOnlyBatchNorm.*drop"):
        LoihiCubaLIFNode.from_cuba(net[1])  # it built the neuron without the mean
    net[1].norm = None
    assert LoihiCubaLIFNode.from_cuba(net[1]).vth == int(64 * TH_EPS)
    net[1].norm = MeanOnlyBatchNorm(2).double()
    from spikeflow.quant import apply_membrane_quantization

    net[1].v_threshold = 0.25  # on the membrane grid
    apply_membrane_quantization(net, bits=16, step=1 / 256)
    with pytest.raises(ConfigurationError, match=r"membrane quantizer.*norm"):
        net(torch.rand(4, 1, 3, dtype=F64))


def test_netx_round_trip_writes_the_norm_as_lava_dl_bias(tmp_path) -> None:
    """Lava-DL's block export writes ``norm.bias = -quantize_8bit(running_mean,
    descale=True)`` as the layer's bias; netx builds it as the LIF's ``bias_mant``
    (``bias_exp = 6``): in evaluation a mean-only norm of the current is that bias."""
    h5py = pytest.importorskip("h5py")
    from lava_checks import (
        lava_dense_accumulate,
        lava_dense_weights,
        lava_lif_bitacc,
        netx_optimize_weight_bits,
    )
    from spikeflow.interop import export_netx, import_netx

    generator = torch.Generator().manual_seed(5)
    linear = nn.Linear(200, 30, bias=False).double()
    with torch.no_grad():  # weights on Lava-DL's 8-bit grid, positive on average
        linear.weight.copy_(
            torch.round((torch.rand(30, 200, generator=generator, dtype=F64) * 0.1 - 0.02) * 32)
            / 32
        )
    norm = MeanOnlyBatchNorm(30, momentum=0.5, pre_hook_fx=LoihiWeightGrid())
    node = CubaLIFNode(
        tau_syn=4.0, tau_mem=8.0, r="tau_syn*tau_mem", v_threshold=1.0 + 1 / 4096, norm=norm
    )
    net = nn.Sequential(linear, node).double()
    spikes = (torch.rand(40, 8, 200, generator=generator) < 0.1).double()
    for _ in range(4):
        net(spikes)  # training calls set the running mean of the current
    net.eval()
    path = export_netx(net, tmp_path / "norm.net", (200,))
    with h5py.File(path, "r") as f:
        bias = f["layer/1/bias"][()]
        neuron = {
            "du": int(f["layer/1/neuron/iDecay"][()]) - 1,
            "dv": int(f["layer/1/neuron/vDecay"][()]),
            "vth": int(f["layer/1/neuron/vThMant"][()]),
            "bias_mant": bias.astype(int),
            "bias_exp": 6,
        }
        stored = f["layer/1/weight"][()]
    lava_bias = -torch.clamp(2 * torch.round(32 * norm.running_mean), -256, 254)
    assert torch.equal(torch.from_numpy(bias).double(), lava_bias.double())
    assert (lava_bias <= -64).all() and (lava_bias > -256).all()  # inside the clamp
    fixed = import_netx(path)
    out = fixed(spikes.long())
    weight, bits, exponent = netx_optimize_weight_bits(stored)
    weights = lava_dense_weights(weight, bits, exponent)
    for b in range(2):  # Lava's Dense sums (delivered in the step, as NetxNetwork) + LIF
        a_in = [lava_dense_accumulate(weights, exponent, s) for s in spikes[:, b].long().numpy()]
        lava, _, _ = lava_lif_bitacc(np.stack(a_in), **neuron)
        assert torch.equal(torch.from_numpy(lava), out[:, b])
    with torch.no_grad():
        agree = (net(spikes) == out).double().mean().item()
        norm.running_mean.zero_()
        without = (net(spikes) == out).double().mean().item()
    assert 0.1 < out.double().mean() < 0.6
    assert agree > 0.97 and without < 0.8, (agree, without)
    # a norm that netx cannot carry is refused, naming the module
    node.norm = WgtScaleBatchNorm(30)
    with pytest.raises(ConfigurationError, match=r"module 1: .*WgtScaleBatchNorm.*weight_exp"):
        export_netx(net, tmp_path / "w.net", (200,))


def test_nir_export_refuses_the_norm() -> None:
    pytest.importorskip("nir")
    from spikeflow.interop import export_to_nir

    net = nn.Sequential(nn.Linear(4, 3, bias=False), CubaLIFNode(norm=MeanOnlyBatchNorm(3)))
    with pytest.raises(ConfigurationError, match=r"norm on its current.*NIR's CubaLIF"):
        export_to_nir(net, torch.zeros(2, 1, 4))
