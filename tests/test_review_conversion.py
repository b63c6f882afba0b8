"""Conversion bugs found in review: each test failed before its fix."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spikeflow.conversion import constant_input, convert, quantile
from spikeflow.errors import ConfigurationError

X = torch.randn(32, 4, generator=torch.Generator().manual_seed(1))
STEPS = 64


class _InplaceRelu(nn.Module):
    """``l2`` reads ``h`` after an in-place relu of ``h`` whose result is not used."""

    def __init__(self, form: str) -> None:
        super().__init__()
        self.form = form
        self.l1 = nn.Linear(4, 8)
        self.l2 = nn.Linear(8, 3)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.l1(x)
        if self.form == "method":
            h.relu_()
        elif self.form == "functional":
            F.relu(h, inplace=True)
        elif self.form == "functional_":
            F.relu_(h)
        elif self.form == "torch":
            torch.relu_(h)
        elif self.form == "module":
            self.act(h)
        elif self.form == "untraced":  # data-dependent control flow: not traceable
            if h.sum() > -1e9:
                self.act(h)
        elif self.form == "read_before":  # what reads h before the relu sees it unrectified
            before = self.l2(h)
            h.relu_()
            return self.l2(h) + before
        return self.l2(h)


def _rate_error_bound(net: _InplaceRelu, snn: nn.Module) -> tuple[float, float]:
    """(max |SNN rate - ANN|, its bound): with constant input and V0 = 0 each IF neuron's
    rate is within θ/T below relu(z) (max-norm: z <= θ), so the read-out is within
    Σ|W2|·θ/T."""
    (theta,) = [float(m.v_threshold) for m in snn.modules() if hasattr(m, "v_threshold")]
    with torch.no_grad():
        err = float((snn.rate(X, STEPS) - net(X.clone())).abs().max())
    bound = float(net.l2.weight.detach().abs().sum(1).max()) * theta / STEPS
    return err, bound


@pytest.mark.parametrize(
    "form", ["method", "functional", "functional_", "torch", "module", "untraced", "read_before"]
)
def test_an_inplace_relu_whose_result_is_unused_still_acts(form):
    """The ANN relies on the relu's mutation of ``h``; the converted network used to
    drop it (the later layer read the un-rectified ``h``) while reporting it converted."""
    torch.manual_seed(0)
    net = _InplaceRelu(form).eval()
    with torch.no_grad():
        assert not torch.allclose(net(X.clone()), net.l2(net.l1(X)))  # the relu matters
    snn, report = convert(net, X)
    assert len(report.converted) == 1, report
    err, bound = _rate_error_bound(net, snn)
    assert err <= bound + 1e-5, (err, bound)


class _InplaceThenRelu(_InplaceRelu):
    """``_InplaceRelu`` with a second relu (calibrated on what the first one left) after
    ``l2``."""

    def __init__(self, form: str) -> None:
        super().__init__(form)
        self.out = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(super().forward(x))


@pytest.mark.parametrize("form", ["method", "functional", "module", "untraced"])
def test_a_relu_after_an_unused_inplace_relu_is_calibrated_on_rectified_values(form):
    torch.manual_seed(0)
    net = _InplaceThenRelu(form).eval()
    _, report = convert(net, X)
    assert len(report.converted) == 2, report
    with torch.no_grad():
        expected = float(net(X.clone()).max())
        unrectified = float(net.l2(net.l1(X)).max())
    assert expected != pytest.approx(unrectified)
    thresholds = [e.detail for e in report.converted]
    assert f"max θ={expected:.4g}" in thresholds[1], thresholds


def test_an_assigned_inplace_relu_is_unchanged():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(inplace=True), nn.Linear(8, 3)).eval()
    snn, _ = convert(net, X)
    with torch.no_grad():
        err = float((snn.rate(X, STEPS) - net(X.clone())).abs().max())
    theta = float(snn.body.get_submodule("1").module.v_threshold)
    assert err <= float(net[2].weight.detach().abs().sum(1).max()) * theta / STEPS + 1e-5


@pytest.mark.parametrize("options", [{}, {"coding": "differential"}])
@pytest.mark.parametrize("pool", [nn.MaxPool1d(2), nn.MaxPool2d(2), nn.MaxPool3d(2)])
def test_a_converted_network_with_max_pooling_saves_whole(pool, options):
    """torch.save of the whole SNN failed: the max pools kept ``F.max_poolNd`` (a local
    function of torch's boolean_dispatch) as an attribute, which pickle cannot store."""
    dims = {nn.MaxPool1d: 1, nn.MaxPool2d: 2, nn.MaxPool3d: 3}[type(pool)]
    conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dims]
    net = nn.Sequential(conv(2, 3, 1), nn.ReLU(), pool, nn.Flatten(), nn.Linear(3 * 2**dims, 2))
    x = torch.rand(4, 2, *(4,) * dims)
    snn, _ = convert(net.eval(), x, **options)
    buffer = io.BytesIO()
    torch.save(snn, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    x_seq = constant_input(x, 5)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x_seq), snn(x_seq), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("q", [1.0, 0.999, 0.5])
def test_quantile_of_low_precision_values_picks_the_right_order_statistics(dtype, q):
    """The rank ``q·(n - 1)`` was computed in the values' dtype: in float16 q = 1 over
    2052 values indexed past the end (an IndexError), in bfloat16 it picked the 2049th
    value in order, not the largest (and q = 0.999 one 8 ranks off). The answer is
    numpy's (in float64, on the same values) rounded once to the dtype."""
    values = torch.rand(2052, generator=torch.Generator().manual_seed(0)).to(dtype)
    expected = torch.tensor(np.quantile(values.double().numpy(), q)).to(dtype)
    got = quantile(values, q)
    assert got.dtype == dtype and float(got) == float(expected)


def test_numpy_numbers_are_accepted_where_python_ones_are():
    """``steps``, ``group_size`` and ``initial_membrane`` from numpy were refused ("must
    be an integer >= 1, got np.int64(8)", "must be a number, got np.float32(0.5)")."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    snn, report = convert(net, X, group_size=np.int64(2), initial_membrane=np.float32(0.5))
    assert "GroupNeuron(m=2)" in report.converted[0].detail
    x_seq = constant_input(X, np.int64(4))
    assert x_seq.shape[0] == 4
    with torch.no_grad():
        torch.testing.assert_close(snn.rate(X, np.int64(4)), snn(x_seq).mean(0))


@pytest.mark.parametrize(
    "options",
    [{}, {"group_size": 2}, {"multi_threshold": 3}, {"coding": "differential"}],
)
def test_the_state_dict_of_a_converted_network_holds_its_per_layer_thresholds(options):
    """A per-layer θ was a float attribute, outside the state dict: loading a saved SNN
    into one converted again (for its structure) kept the new calibration's θ silently
    (per-channel θ, a buffer, did load)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    saved, _ = convert(net, X, **options)
    other, _ = convert(net, 0.3 * X, **options)  # smaller activations: smaller θ
    other.load_state_dict(saved.state_dict())
    x_seq = constant_input(X, 8)
    with torch.no_grad():
        torch.testing.assert_close(other(x_seq), saved(x_seq), rtol=0, atol=0)


def test_a_qcfs_threshold_travels_with_the_state_dict():
    from spikeflow.conversion import QCFS

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), QCFS(4, 2.0), nn.Linear(8, 3)).eval()
    saved, _ = convert(net)
    with torch.no_grad():
        net[1].threshold.fill_(0.5)
    other, _ = convert(net)
    other.load_state_dict(saved.state_dict())
    x_seq = constant_input(X, 4)
    with torch.no_grad():
        torch.testing.assert_close(other(x_seq), saved(x_seq), rtol=0, atol=0)


@pytest.mark.parametrize("x", [X, constant_input(X, 4)])
def test_converting_a_converted_network_says_so(x):
    """It ran the SNN on the calibration batch (a ShapeError pointing to constant_input)
    or reported that the SNN had no ReLU."""
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    snn, _ = convert(net, X)
    for model in (snn, nn.Sequential(snn.body)):
        with pytest.raises(ConfigurationError, match="a network convert made already"):
            convert(model, x)
