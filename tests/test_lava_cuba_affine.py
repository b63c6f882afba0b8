"""Lava-DL's non-spiking CUBA read-out, ``slayer.block.cuba.Affine(neuron_params, in,
out, dynamics=True)``, as ``layers.Linear(in, out, bias=False)`` followed by two
``neurons.LINode(tau=1/decay, decay_input=False)`` (current, then voltage): outputs and
gradients equal to Lava-DL's float dynamics transcribed, in float64.

Source (read, not copied): ``lava-nc/lava-dl`` ``src/lava/lib/dl/slayer/block/base.py``
(``AbstractAffine.forward``: ``z = synapse(x)``, then ``neuron.dynamics(z)[1]``, the
voltage), ``block/cuba.py`` (``Affine`` sets the neuron's threshold to -1, which turns
off spike and reset) and ``neuron/cuba.py`` with ``neuron/dynamics/leaky_integrator.py``
(``y[t] = (1 - decay) y[t-1] + x[t]`` from ``y = 0``; no reset for a threshold <= 0).
Its fixed-point grid (states on 1/4096, decays rounded to 1/4096) is dropped, as in
``tests/test_neurons_learnable_tau_peers.py``; the decays used are on that grid.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikeflow import layers, neurons


def _lava_affine(x_nct, weight, current_decay, voltage_decay):
    """``cuba.Affine(dynamics=True)`` over time-last ``x[n, c, t]``: the dense synapse,
    then the current and voltage leaky integrators without reset; the voltage
    ``[N, out, T]``. The decays are per output channel ``[out]`` or scalars."""
    z = torch.einsum("oc,nct->not", weight, x_nct)
    u = torch.zeros_like(z[..., 0])
    v = torch.zeros_like(z[..., 0])
    voltages = []
    for t in range(z.shape[-1]):
        u = (1 - current_decay) * u + z[..., t]
        v = (1 - voltage_decay) * v + u
        voltages.append(v)
    return torch.stack(voltages, -1)


def _spikeflow_affine(weight, current_decay, voltage_decay, learnable=False):
    """The mapping of docs/migration.md's row (time-major ``[T, B, in]``)."""
    linear = layers.Linear(weight.shape[1], weight.shape[0], bias=False).double()
    with torch.no_grad():
        linear.weight.copy_(weight)
    return nn.Sequential(
        linear,
        neurons.LINode(tau=1 / current_decay, decay_input=False, learnable_tau=learnable),
        neurons.LINode(tau=1 / voltage_decay, decay_input=False, learnable_tau=learnable),
    ).double()


@pytest.mark.parametrize("per_channel", [False, True])
def test_affine_voltage_equals_lava_dl_dynamics(per_channel):
    torch.manual_seed(0)
    n, c_in, c_out, steps = 4, 256, 10, 120  # an N-MNIST-sized read-out
    x = (torch.rand(n, c_in, steps, dtype=torch.float64) < 0.1).double()  # spikes
    weight = torch.randn(c_out, c_in, dtype=torch.float64) / 8
    if per_channel:  # shared_param=False: one decay per output channel
        current_decay = torch.randint(200, 4096, (c_out,), dtype=torch.float64) / 4096
        voltage_decay = torch.randint(50, 2000, (c_out,), dtype=torch.float64) / 4096
    else:
        current_decay = torch.tensor(1024 / 4096, dtype=torch.float64)
        voltage_decay = torch.tensor(123 / 4096, dtype=torch.float64)
    expected = _lava_affine(x, weight, current_decay, voltage_decay)
    net = _spikeflow_affine(weight, current_decay, voltage_decay)
    x_tbc = x.permute(2, 0, 1).requires_grad_()
    got = net(x_tbc)
    torch.testing.assert_close(got, expected.permute(2, 0, 1), rtol=1e-12, atol=1e-12)
    # a voltage, not spikes: graded, of both signs, never reset
    assert got.min() < -0.5 and got.max() > 0.5
    assert not torch.all((got == 0) | (got == 1))
    # the same gradients (Lava-DL's backward is the adjoint of this linear recursion)
    g = torch.randn_like(got)
    (got * g).sum().backward()
    x_ref = x.clone().requires_grad_()
    w_ref = weight.clone().requires_grad_()
    ref = _lava_affine(x_ref, w_ref, current_decay, voltage_decay)
    (ref * g.permute(1, 2, 0)).sum().backward()
    torch.testing.assert_close(x_tbc.grad, x_ref.grad.permute(2, 0, 1), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(net[0].weight.grad, w_ref.grad, rtol=1e-12, atol=1e-12)


def test_learned_decays_gradcheck_and_match_the_loop():
    # requires_grad=True: the time constants train; the gradient is autograd's exact one
    torch.manual_seed(1)
    x = torch.rand(6, 2, 5, dtype=torch.float64)
    weight = torch.randn(3, 5, dtype=torch.float64)
    net = _spikeflow_affine(weight, 0.25, 0.0625, learnable=True)
    tau_u, tau_v = net[1].tau, net[2].tau

    def lava(w, tu, tv):
        return _lava_affine(x.permute(1, 2, 0), w, 1 / tu, 1 / tv).permute(2, 0, 1)

    torch.testing.assert_close(net(x), lava(weight, 4.0, 16.0), rtol=1e-12, atol=1e-12)
    torch.autograd.gradcheck(lambda w, tu, tv: lava(w, tu, tv), (weight.requires_grad_(),
                             tau_u.detach().clone().requires_grad_(),
                             tau_v.detach().clone().requires_grad_()))  # fmt: skip
    net(x).sum().backward()
    w2, tu2, tv2 = (t.detach().clone().requires_grad_() for t in (weight, tau_u, tau_v))
    lava(w2, tu2, tv2).sum().backward()
    torch.testing.assert_close(tau_u.grad, tu2.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(tau_v.grad, tv2.grad, rtol=1e-10, atol=1e-12)
