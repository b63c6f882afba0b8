"""docs/migration.md "From Norse": a whole Norse training loop ported (the ``norse-loop``
and ``norse-port`` blocks, run as printed), and the encoder modules' rows, checked
against Norse 1.1 in float64 with the same weights and input."""

from __future__ import annotations

import pytest
import torch

from migration_checks import F64_RTOL, block, grads, run
from spikeflow import encoding


def norse():
    return pytest.importorskip("norse.torch", reason="Norse is not installed")


def _float64_parameters(*modules: torch.nn.Module) -> None:
    """Norse's default parameter tuples hold tensors made when Norse was first imported,
    in the default dtype of that moment (float32 if another test imported it first):
    give the modules' ``p`` float64 tensors, so the comparison is float64 throughout."""
    for module in modules:
        for sub in module.modules():
            p = getattr(sub, "p", None)
            if isinstance(p, tuple) and hasattr(p, "_replace"):
                fields = {k: v.double() for k, v in p._asdict().items()
                          if isinstance(v, torch.Tensor) and v.is_floating_point()}  # fmt: skip
                sub.p = p._replace(**fields)


def test_norse_mnist_loop_port_gives_norses_voltages_and_gradients(float64):
    norse()
    torch.manual_seed(0)
    theirs = run(block("norse-loop"), "Norse loop")
    _float64_parameters(theirs["encoder"], theirs["model"])
    ours = run(block("norse-port"), "spikeflow port")
    model, net = theirs["model"], ours["net"]
    with torch.no_grad():  # a trained net's hidden layer fires; PyTorch's init barely
        model[0].weight.mul_(8)
    net[0].load_state_dict(model[0].state_dict())
    net[2].load_state_dict(model[2].state_dict())
    x = torch.rand(6, 64) * 4  # sklearn-digits-sized input currents
    x_n, x_s = x.clone().requires_grad_(), x.clone().requires_grad_()
    want = theirs["forward"](x_n)
    spikes_in = ours["encoder"](x_s)
    got = net(spikes_in)
    assert got.shape == want.shape == (32, 6, 10)
    hidden = net[1](net[0](spikes_in)).detach()
    assert 0.02 < spikes_in.mean() < 0.9 and 0.02 < hidden.mean() < 0.9
    torch.testing.assert_close(got, want, **F64_RTOL)
    torch.testing.assert_close(got.max(0).values, want.max(0).values, **F64_RTOL)
    g = torch.randn_like(want)
    ps_n = [x_n, model[0].weight, model[0].bias, model[2].weight, model[2].bias]
    ps_s = [x_s, net[0].weight, net[0].bias, net[2].weight, net[2].bias]
    for a, b in zip(grads(got, ps_s, g), grads(want, ps_n, g)):
        assert a.abs().sum() > 0
        torch.testing.assert_close(a, b, **F64_RTOL)


def test_norse_poisson_encoder_module_row_gives_the_same_draws():
    n = norse()
    x = torch.rand(4, 64)
    torch.manual_seed(3)
    want = n.PoissonEncoder(20, f_max=300.0, dt=1e-3)(x)
    torch.manual_seed(3)
    got = encoding.PoissonEncoder(20)(x * 1e-3 * 300.0)
    assert got.shape == want.shape == (20, 4, 64)
    assert 0.05 < want.mean() < 0.5
    assert torch.equal(got, want)


def test_norse_constant_current_encoder_module_row_gives_the_same_spikes(float64):
    n = norse()
    x = torch.rand(5, 30) * 3
    want = n.ConstantCurrentLIFEncoder(32)(x)
    ours = run(block("norse-port"), "spikeflow port")
    got = ours["encoder"](x)
    assert 0.02 < want.mean() < 0.9
    assert torch.equal(got.double(), want.double())
