"""SpikingJelly 2.0's LogTailedReLU, DeterministicPass and PoissonPass surrogates:
the same spikes, gradients and primitives as SpikingJelly's (float64), the random
PoissonPass refused by the fused kernels and left out of SURROGATES. (The formulas are
also checked point by point, with the rest of the family, in test_surrogate.py.)"""

from __future__ import annotations

import warnings

import pytest
import torch

from sj_checks import TIGHT, sj
from spikeflow import neurons
from spikeflow.errors import ConfigurationError
from spikeflow.kernels.expr import TraceError
from spikeflow.surrogate import (
    SURROGATES,
    DeterministicPass,
    LogTailedReLU,
    PoissonPass,
    get_surrogate,
)

F64 = torch.float64
# Exact 0 and 1 (the kinks), both sides of them and far points.
GRID = torch.cat([torch.linspace(-3, 3, 601, dtype=F64), torch.tensor([1e-9, 1 + 1e-9, 40.0])])


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("LogTailedReLU", {}), ("LogTailedReLU", {"alpha": 0.3}), ("DeterministicPass", {})],
)
def test_same_as_spikingjelly(name, kwargs):
    sj_surrogate = sj("surrogate")
    theirs, ours = getattr(sj_surrogate, name)(**kwargs), get_surrogate(name, **kwargs)
    assert type(ours) is SURROGATES[name]
    x_sj, x_sf = GRID.clone().requires_grad_(), GRID.clone().requires_grad_()
    y_sj, y_sf = theirs(x_sj), ours(x_sf)
    assert torch.equal(y_sf, y_sj) and torch.equal(y_sf, (GRID >= 0).to(F64))
    g = torch.randn_like(GRID)
    (y_sj * g).sum().backward()
    (y_sf * g).sum().backward()
    torch.testing.assert_close(x_sf.grad, x_sj.grad, **TIGHT)
    p_sj = getattr(sj_surrogate, name)(**kwargs, spiking=False)(GRID)
    p_sf = get_surrogate(name, **kwargs, spiking=False)(GRID)
    torch.testing.assert_close(p_sf, p_sj, **TIGHT)


def test_log_tailed_relu_by_hand_and_its_alpha():
    x = torch.tensor([-2.0, 0.0, 0.5, 1.0, 4.0], dtype=F64)
    d = LogTailedReLU.derivative(x, alpha=0.1)
    torch.testing.assert_close(d, torch.tensor([0.1, 0.1, 1.0, 1.0, 0.25], dtype=F64))
    p = LogTailedReLU(alpha=0.1, spiking=False)(x)
    want = torch.tensor([-0.2, 0.0, 0.5, 1.0, 1 + torch.log(torch.tensor(4.0)).item()])
    torch.testing.assert_close(p, want.to(F64))
    with pytest.raises(ConfigurationError, match=r"LogTailedReLU.*alpha.*>= 0.*-1"):
        LogTailedReLU(alpha=-1.0)


def test_deterministic_pass_in_a_fused_neuron_equals_the_reference_loop():
    x = torch.rand(6, 2, 5, dtype=F64) * 2.5
    g = torch.randn_like(x)
    grads = []
    for backend in ("torch", "cpu"):
        xr = x.clone().requires_grad_()
        node = neurons.LIFNode(surrogate_function=DeterministicPass(), backend=backend)
        ((node(xr)) * g).sum().backward()
        grads.append(xr.grad)
    torch.testing.assert_close(grads[0], grads[1], **TIGHT)


def test_poisson_pass_draws_as_spikingjelly_and_passes_the_gradient():
    sj_surrogate = sj("surrogate")
    p = torch.rand(2000, dtype=F64)
    p[:3] = torch.tensor([0.0, 1.0, 0.5])
    torch.manual_seed(7)
    x_sj = p.clone().requires_grad_()
    theirs = sj_surrogate.PoissonPass()(x_sj)
    torch.manual_seed(7)
    x_sf = p.clone().requires_grad_()
    ours = PoissonPass()(x_sf)
    assert ours.dtype == F64 and theirs.dtype == torch.float32  # theirs: always float32
    assert torch.equal(ours, theirs.to(F64))
    assert ours[0] == 0 and ours[1] == 1
    assert abs(ours.mean().item() - p.mean().item()) < 0.05
    g = torch.randn_like(p)
    (ours * g).sum().backward()
    assert torch.equal(x_sf.grad, g)  # straight through
    assert PoissonPass(spiking=False)(p) is p
    with pytest.raises(ConfigurationError, match=r"\[0, 1\]; got x in \[-0\.5, 1\]"):
        PoissonPass()(torch.tensor([-0.5, 1.0]))
    with pytest.raises(ConfigurationError, match="NaN"):
        PoissonPass()(torch.tensor([float("nan"), 0.5]))
    with pytest.raises(ConfigurationError, match="no strict form"):
        PoissonPass()(p, strict=True)


def test_poisson_pass_neuron_equals_spikingjellys_and_is_refused_by_the_fused_kernels():
    sj_neuron, sj_surrogate = sj("neuron"), sj("surrogate")
    # v in [-0.5, 0.75] and H - threshold in [0, 1] at every step: a probability.
    x = torch.rand(8, 3, 5, dtype=F64) * 0.5 + 0.5
    args = dict(v_threshold=-0.25, v_reset=-0.5)
    torch.manual_seed(3)
    x_sj = x.clone().requires_grad_()
    theirs = sj_neuron.LIFNode(surrogate_function=sj_surrogate.PoissonPass(), step_mode="m",
                               **args)(x_sj)  # fmt: skip
    torch.manual_seed(3)
    x_sf = x.clone().requires_grad_()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ours = neurons.LIFNode(surrogate_function=PoissonPass(), **args)(x_sf)  # auto
    assert any("reference loop" in str(w.message) for w in caught)
    assert torch.equal(ours, theirs.to(F64)) and 0 < ours.mean() < 1
    g = torch.randn_like(x)
    (theirs * g).sum().backward()
    (ours * g).sum().backward()
    # (SpikingJelly's spikes are float32, so its gradient passes through float32.)
    torch.testing.assert_close(x_sf.grad, x_sj.grad, rtol=1e-6, atol=1e-6)
    with pytest.raises(TraceError, match=r"PoissonPass.*random draw"):
        neurons.LIFNode(surrogate_function=PoissonPass(), backend="cpu", **args)(x)
    assert "PoissonPass" not in SURROGATES
    with pytest.raises(ConfigurationError, match="unknown surrogate 'poisson_pass'"):
        get_surrogate("poisson_pass")
    assert type(get_surrogate(PoissonPass)) is PoissonPass
