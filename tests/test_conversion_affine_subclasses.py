"""Subclasses of affine layers, and products with indexed weights.

A subclass of ``nn.Linear``, a convolution, a batch norm, ... whose forward is not the
parent's used to be kept as the affine layer it derives from, so a converted network
could be silently wrong (a clamp or gate dropped from its rate). Now it is converted by
its forward where that is traced (the parent's ``F.linear``/``F.conv*`` call in it stays
the affine op) and refused, naming the class, where it is not. Subclasses keeping the
parent's forward (attributes, parametrized weights, spikeflow's sequence wrappers and
weight-standardised layers) stay affine layers.

The accepted networks put a QCFS layer between two affine parts: at T = L a QCFS neuron
(V0 = λ/2) reproduces QCFS exactly, so the SNN's rate equals the ANN's output.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm

from spikeflow.conversion import QCFS, ConversionError, convert
from spikeflow.layers import Linear as SequenceLinear
from spikeflow.layers import ThresholdDependentBatchNorm1d, WSConv2d, WSLinear
from spikeflow.quant import apply_weight_quantization

X = torch.randn(16, 4, generator=torch.Generator().manual_seed(1))


class _ClippedLinear(nn.Linear):
    """``min(Wx + b, 1)``: its forward adds a nonlinearity to the parent's."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).clamp(max=1.0)


class _GatedLinear(nn.Linear):
    """``y·sigmoid(y)`` of ``y = Wx + b``: scaled by a factor computed from the signal."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        return y * torch.sigmoid(y)


class _LearnedScaleLinear(nn.Linear):
    """``(Wx + b)·sigmoid(g)``: a learned factor computed from a parameter only, a
    constant of the forward, so still affine in ``x``."""

    def __init__(self, *args: int) -> None:
        super().__init__(*args)
        self.gate = nn.Parameter(torch.full((self.out_features,), -1.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * torch.sigmoid(self.gate)


class _TaggedLinear(nn.Linear):
    """Keeps the parent's forward."""

    tag = "hidden"


class _Square(nn.Module):
    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w * w


class _BatchStatsNorm(nn.BatchNorm1d):
    """A batch norm normalising with the batch's statistics, behind a forward of its own."""

    def __init__(self, features: int) -> None:
        super().__init__(features, track_running_stats=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2.0 * super().forward(x)


def _net(first: nn.Module, last: nn.Module | None = None) -> nn.Module:
    """``first → QCFS(L=4, λ=2) → last``."""
    torch.manual_seed(0)
    return nn.Sequential(first, QCFS(levels=4, threshold=2.0), last or nn.Linear(8, 3)).eval()


def _matches_ann(net: nn.Module, x: torch.Tensor = X, **options: object) -> None:
    """Converted with ``x`` as calibration data (QCFS needs none; the run-time checks
    and an untraced forward's inspection do), nothing left unconverted or unverified."""
    snn, report = convert(net, x, **options)
    assert not report.by_action("unconverted") + report.by_action("unverified"), str(report)
    with torch.no_grad():
        assert torch.allclose(snn.rate(x, 4), net(x), atol=1e-5)


def test_a_clamp_in_an_affine_subclass_forward_is_refused_naming_the_class():
    """Traced, the clamp is refused as the call it is, in the class's forward; module by
    module (where it used to be kept as an nn.Linear) its forward's clamp is caught."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), _ClippedLinear(8, 3)).eval()
    owner = "the forward of _ClippedLinear, a subclass of Linear with a forward of its own"
    with pytest.raises(ConversionError) as error:
        convert(net, X)
    assert f"clamp (Tensor.clamp): not affine, no spiking equivalent (in {owner})" in str(
        error.value
    )
    with pytest.raises(ConversionError) as error:
        convert(net, X, trace="modules")
    assert f"2 (forward) (Tensor.clamp): nonlinear call in an untraced forward ({owner})" in str(
        error.value
    )


@pytest.mark.parametrize("trace", ["auto", "modules"])
def test_an_affine_subclass_scaled_by_its_own_signal_is_refused(trace):
    net = _net(nn.Linear(4, 8), _GatedLinear(8, 3))
    with pytest.raises(ConversionError, match=r"_GatedLinear, a subclass of Linear"):
        convert(net, trace=trace)


def test_an_affine_subclass_scaled_by_a_learned_factor_is_converted_by_its_forward():
    """``sigmoid(gate)`` is a constant of the forward: traced, the layer stays affine
    and the SNN matches the ANN, factor included (a sigmoid of a parameter used to be
    refused as a nonlinearity, and the layer kept as an nn.Linear, without the factor,
    where its forward was not traced)."""
    net = _net(_LearnedScaleLinear(4, 8))
    with torch.no_grad():
        plain = net[2](net[1](nn.Linear.forward(net[0], X)))
        assert float((net(X) - plain).abs().max()) > 0.1  # the factor matters
    _matches_ann(net)
    # Untraced, its forward is run as is and not inspected without calibration data.
    with pytest.raises(ConversionError, match=r"the forward of _LearnedScaleLinear, a subclass"):
        convert(net, trace="modules")


def test_a_batch_norm_subclass_normalising_with_batch_statistics_is_refused():
    """Untraceable (its parent checks the input's rank), it runs module by module; its
    batch norm with the batch's statistics is caught, naming the class."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), _BatchStatsNorm(8), nn.ReLU(), nn.Linear(8, 3)).eval()
    with pytest.raises(ConversionError) as error:
        convert(net, X)
    assert (
        "1 (forward) (torch.nn.functional.batch_norm): nonlinear call in an untraced forward "
        "(the forward of _BatchStatsNorm, a subclass of BatchNorm1d with a forward of its own)"
    ) in str(error.value)


def _parametrized(layer: nn.Linear) -> nn.Linear:
    parametrize.register_parametrization(layer, "weight", _Square())
    return layer


def _quantized(layer: nn.Linear) -> nn.Linear:
    apply_weight_quantization(nn.Sequential(layer), bits=4)
    return layer


_KEEPING = {
    "subclass": lambda: _TaggedLinear(4, 8),
    "weight_norm": lambda: weight_norm(nn.Linear(4, 8)),
    "parametrized": lambda: _parametrized(nn.Linear(4, 8)),
    "quantized": lambda: _quantized(nn.Linear(4, 8)),
    "sequence": lambda: SequenceLinear(4, 8, step_mode="s"),
    "ws": lambda: WSLinear(4, 8, step_mode="s"),
}


@pytest.mark.parametrize("trace", ["auto", "modules"])
@pytest.mark.parametrize("make", list(_KEEPING.values()), ids=list(_KEEPING))
def test_affine_layers_keeping_their_parents_forward_are_kept(make, trace):
    """Parametrized weights, spikeflow's sequence wrapper and weight-standardised layer
    have forwards (or classes) of their own that are still the affine layer: kept,
    whole, and the SNN matches the ANN."""
    net = _net(make())
    _, report = convert(net, X, trace=trace)
    assert [(e.name, e.action) for e in report.entries if e.name == "0"] == [("0", "kept")]
    _matches_ann(net, trace=trace)


def test_weight_standardised_conv_and_tdbn_are_kept():
    """``WSConv2d`` computes its weight with a variance and a square root (of the weight
    only); tdBN's forward scales spikeflow's sequence batch norm: both affine."""
    torch.manual_seed(0)
    net = nn.Sequential(
        WSConv2d(1, 2, 2, step_mode="s"),
        nn.Flatten(),
        ThresholdDependentBatchNorm1d(2, affine=False, step_mode="s"),
        QCFS(levels=4, threshold=2.0),
        nn.Linear(2, 3),
    ).eval()
    net[2].running_mean.fill_(0.5)
    x = X.view(16, 1, 2, 2)
    _, report = convert(net)
    assert [(e.name, e.action) for e in report.entries if e.name in ("0", "2")] == [
        ("0", "kept"),
        ("2", "kept"),
    ]
    _matches_ann(net, x)


class _IndexedWeights(nn.Module):
    """``h @ w[0] + F.linear(h, w[1].t())``: slices of one parameter, constants."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(2, 8, 3) / 3)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h @ self.w[0] + F.linear(h, self.w[1].t())


def test_a_product_with_an_indexed_weight_is_affine():
    """``self.w[0]`` was counted as a second signal (``x @ w[0]`` refused as not affine)
    and ``self.w[1].t()`` as a transpose of the batch."""
    net = _net(nn.Linear(4, 8), _IndexedWeights())
    _matches_ann(net)


class _Product(nn.Module):
    def __init__(self, how: str) -> None:
        super().__init__()
        self.a, self.b, self.how = nn.Linear(8, 3), nn.Linear(8, 3), how

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        a, b = self.a(h), self.b(h).t()  # [B, 3], [3, B] (.t() is refused on its own)
        if self.how == "Tensor.mm":
            return a.mm(b)
        if self.how == "torch.mm":
            return torch.mm(a, b)
        return torch.outer(a[:, 0], b[0])  # [B, B]


@pytest.mark.parametrize("how", ["torch.mm", "Tensor.mm", "torch.outer"])
def test_a_product_of_two_signals_is_refused_as_not_affine(how):
    """It was reported unverified ("not known to be affine")."""
    _, report = convert(_net(nn.Linear(4, 8), _Product(how)), strict=False)
    name = how.rsplit(".", 1)[-1]
    assert [(e.name, e.source, e.action, e.detail) for e in report.entries if e.name == name] == [
        (name, how, "unconverted", "not affine, no spiking equivalent")
    ]
