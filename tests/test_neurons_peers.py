"""spikeflow's IF, LIF and PLIF against SpikingJelly 2.0's, every backend.

SpikingJelly (installed without its dependencies by `scripts/setup.sh test`) uses the
same equations, surrogates and reset rules, so spikes must be identical and the
gradients of the input and of PLIF's ``w`` equal to float tolerance, for hard and soft
reset, detach_reset on and off, decay_input both ways, and sequences that cross the
CPU kernel's checkpoint segments.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from conftest import fused_backends, kernel_device
from spikeflow import neurons as sf
from spikeflow import surrogate as sf_surrogate
from spikeflow.kernels.codegen_c import CHECKPOINT

sj_neuron = pytest.importorskip(
    "spikingjelly.activation_based.neuron",
    reason="SpikingJelly (installed by scripts/setup.sh test) is needed",
)
sj_surrogate = pytest.importorskip("spikingjelly.activation_based.surrogate")

BACKENDS = fused_backends("torch")
SURROGATES = {
    "sigmoid": (lambda: sf_surrogate.Sigmoid(alpha=4.0), lambda: sj_surrogate.Sigmoid(alpha=4.0)),
    "atan": (lambda: sf_surrogate.ATan(alpha=2.0), lambda: sj_surrogate.ATan(alpha=2.0)),
}
CASES = list(
    itertools.product(
        ["if", "lif", "lif_no_decay_input", "plif"],
        [0.0, None],  # v_reset (None: soft reset)
        [False, True],  # detach_reset
    )
)


def _pair(kind: str, v_reset, detach_reset: bool, backend: str, surrogate: str):
    sf_sg, sj_sg = SURROGATES[surrogate]
    common = dict(v_threshold=1.0, v_reset=v_reset, detach_reset=detach_reset)
    sj_common = dict(common, surrogate_function=sj_sg(), step_mode="m")
    sf_common = dict(common, surrogate_function=sf_sg(), backend=backend)
    if kind == "if":
        return sf.IFNode(**sf_common), sj_neuron.IFNode(**sj_common)
    if kind == "lif":
        return sf.LIFNode(tau=2.0, **sf_common), sj_neuron.LIFNode(tau=2.0, **sj_common)
    if kind == "lif_no_decay_input":
        return (
            sf.LIFNode(tau=3.0, decay_input=False, **sf_common),
            sj_neuron.LIFNode(tau=3.0, decay_input=False, **sj_common),
        )
    return (
        sf.ParametricLIFNode(init_tau=2.5, **sf_common),
        sj_neuron.ParametricLIFNode(init_tau=2.5, **sj_common),
    )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("kind", "v_reset", "detach_reset"), CASES)
@pytest.mark.parametrize("surrogate", ["sigmoid", "atan"])
def test_equal_to_spikingjelly(backend, kind, v_reset, detach_reset, surrogate):
    torch.manual_seed(0)
    T = CHECKPOINT + 7  # two checkpoint segments of the CPU kernel
    x = torch.rand(T, 3, 41, dtype=torch.float64) * 2.5 - 0.2
    g = torch.randn_like(x)
    ours, theirs = _pair(kind, v_reset, detach_reset, backend, surrogate)
    device = kernel_device(backend)
    # SpikingJelly runs on the CPU in float64 (its torch path); spikeflow on the device of
    # the backend (Triton: the GPU, or its interpreter on CPU tensors).
    theirs = theirs.double()
    ours = ours.to(device=device, dtype=torch.float64)
    x_sj = x.clone().requires_grad_()
    x_sf = x.to(device).requires_grad_()
    s_sj = theirs(x_sj)
    s_sf = ours(x_sf)
    assert torch.equal(s_sf.cpu(), s_sj.detach()), "spikes differ from SpikingJelly's"
    assert 0.05 < s_sj.mean().item() < 0.95  # both firing and silent steps are exercised
    params_sj = list(theirs.parameters())
    params_sf = list(ours.parameters())
    grads_sj = torch.autograd.grad((s_sj * g).sum(), [x_sj, *params_sj])
    grads_sf = torch.autograd.grad((s_sf * g.to(device)).sum(), [x_sf, *params_sf])
    assert len(grads_sf) == len(grads_sj)
    for a, b in zip(grads_sf, grads_sj):
        torch.testing.assert_close(a.cpu(), b, atol=1e-10, rtol=1e-8)


def _sequence(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    x = torch.rand(CHECKPOINT + 7, 3, 41, dtype=torch.float64) * 2.5 - 0.2
    return x, torch.randn_like(x)


@pytest.mark.parametrize("backend", ["torch", "cpu"])
def test_lif_equal_to_snntorch_leaky(backend):
    # snnTorch's Leaky, U = beta U + I, is spikeflow's LIF with decay_input=False and
    # beta = 1 - 1/tau; it fires on U > threshold (strict) and detaches its reset, so
    # the gradients match spikeflow's with detach_reset=True (its sigmoid surrogate
    # rounds through float32: tolerance 1e-6).
    snntorch = pytest.importorskip("snntorch", reason="snnTorch (test extra) is needed")
    from snntorch import surrogate

    x, g = _sequence()
    leaky = snntorch.Leaky(
        beta=0.5, threshold=1.0, spike_grad=surrogate.sigmoid(slope=4.0), reset_mechanism="zero"
    ).double()
    x_peer = x.clone().requires_grad_()
    mem, out = leaky.reset_mem(), []
    for xt in x_peer.unbind(0):
        spk, mem = leaky(xt, mem)
        out.append(spk)
    s_peer = torch.stack(out)
    ours = sf.LIFNode(tau=2.0, decay_input=False, v_reset=0.0, strict_firing=True,
                      detach_reset=True, backend=backend)  # fmt: skip
    x_sf = x.clone().requires_grad_()
    s_sf = ours(x_sf)
    assert torch.equal(s_sf, s_peer) and 0.05 < s_sf.mean().item() < 0.95
    (g_peer,) = torch.autograd.grad((s_peer * g).sum(), x_peer)
    (g_sf,) = torch.autograd.grad((s_sf * g).sum(), x_sf)
    torch.testing.assert_close(g_sf, g_peer, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("backend", ["torch", "cpu"])
@pytest.mark.parametrize("v_reset", [0.0, None])
def test_lif_spikes_equal_to_norse_lif_box(backend, v_reset):
    # norse's LIFBoxCell (dt = 1, tau_mem_inv = 1/tau) takes the same Euler step; it
    # fires strictly, and its reset_subtract is spikeflow's soft reset. Its SuperSpike
    # backward is g / (|x| + 1)^2 whatever its alpha: spikeflow's SuperSpike(alpha=1),
    # whose input gradients are then the same.
    pytest.importorskip("norse", reason="norse (installed by scripts/setup.sh test) is needed")
    from norse.torch import LIFBoxCell, LIFBoxParameters
    from norse.torch.functional.reset import reset_subtract, reset_value

    f64 = dict(dtype=torch.float64)
    params = LIFBoxParameters(
        tau_mem_inv=torch.tensor(0.5, **f64), v_leak=torch.tensor(0.0, **f64),
        v_th=torch.tensor(1.0, **f64), v_reset=torch.tensor(0.0, **f64), method="super",
        alpha=torch.tensor(100.0, **f64),
        reset_method=reset_value if v_reset is not None else reset_subtract,
    )  # fmt: skip
    x, g = _sequence(1)
    x_peer = x.clone().requires_grad_()
    cell, state, out = LIFBoxCell(params, dt=1.0), None, []
    for xt in x_peer.unbind(0):
        z, state = cell(xt, state)
        out.append(z)
    ours = sf.LIFNode(tau=2.0, v_reset=v_reset, strict_firing=True, backend=backend,
                      surrogate_function=sf_surrogate.SuperSpike(alpha=1.0))  # fmt: skip
    x_sf = x.clone().requires_grad_()
    s_sf, s_peer = ours(x_sf), torch.stack(out)
    assert torch.equal(s_sf, s_peer) and 0.05 < s_sf.mean().item() < 0.95
    (g_peer,) = torch.autograd.grad((s_peer * g).sum(), x_peer)
    (g_sf,) = torch.autograd.grad((s_sf * g).sum(), x_sf)
    torch.testing.assert_close(g_sf, g_peer, atol=1e-12, rtol=1e-12)
