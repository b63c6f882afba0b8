"""QCFS and max-pool subclasses with a forward of their own, as ReLU subclasses are.

Such a subclass used to be taken for its parent: the SNN reproduced ``QCFS.forward`` or
a plain max pool and dropped what the subclass's forward adds. Now it is converted by
its forward where that is traced, and refused, naming the class, where it is not.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikeflow.conversion import QCFS, ConversionError, convert, qcfs

X = torch.randn(32, 4, generator=torch.Generator().manual_seed(1))


class _DoubledQCFS(QCFS):
    """``2·QCFS(z)``: its forward calls the parent's."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return 2.0 * super().forward(z)


class _TaggedQCFS(QCFS):
    """Only adds an attribute: still a QCFS layer."""

    tag = "hidden"


class _AbsThresholdQCFS(QCFS):
    """Calls :func:`qcfs` with a threshold computed in the forward."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return qcfs(z, self.threshold.abs(), self.levels, self.shift)


class _DoubledPool(nn.MaxPool1d):
    """``2·maxpool(x)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2.0 * super().forward(x)


class _TaggedPool(nn.MaxPool1d):
    tag = "hidden"


class _Untraceable(nn.Module):
    """``l1 → act → l2`` with a branch on values: converted module by module."""

    def __init__(self, act: nn.Module, features: int = 8) -> None:
        super().__init__()
        self.l1, self.act, self.l2 = nn.Linear(4, 8), act, nn.Linear(features, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.l1(x)
        if bool((h == h).all()):
            h = self.act(h)
        return self.l2(h)


def _qcfs_net(act: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), act, nn.Linear(8, 3)).eval()


@pytest.mark.parametrize("root", [False, True])
def test_a_qcfs_subclass_with_its_own_forward_is_converted_by_its_forward(root):
    """At T = L a QCFS neuron reproduces QCFS exactly (constant input, V0 = λ/2), so the
    SNN equals the ANN: ``2·QCFS``, where it used to give ``QCFS`` (the factor lost)."""
    act = _DoubledQCFS(levels=4, threshold=2.0)
    net = act.eval() if root else _qcfs_net(act)
    snn, report = convert(net)
    (entry,) = report.converted
    assert entry.source == "qcfs(L=4)" and "λ=2" in entry.detail
    with torch.no_grad():
        expected = net(X)
        plain = QCFS.forward(act, X) if root else net[2](QCFS.forward(act, net[0](X)))
        assert float((expected - plain).abs().max()) > 0.1  # the subclass matters
        assert torch.allclose(snn.rate(X, 4), expected, atol=1e-5)


def test_a_qcfs_subclass_that_only_adds_attributes_is_a_qcfs_layer():
    net = _qcfs_net(_TaggedQCFS(levels=4, threshold=2.0))
    snn, report = convert(net)
    assert [(e.name, e.source) for e in report.converted] == [("1", "QCFS(L=4)")]
    with torch.no_grad():
        assert torch.allclose(snn.rate(X, 4), net(X), atol=1e-5)


def test_a_qcfs_call_with_a_computed_threshold_is_refused():
    """One λ per layer becomes the neuron's threshold; ``|λ|`` computed in the forward
    is no parameter to read it from."""
    with pytest.raises(ConversionError, match=r"qcfs with a computed threshold λ"):
        convert(_qcfs_net(_AbsThresholdQCFS(levels=4, threshold=2.0)))


def test_an_untraced_qcfs_subclass_is_refused_naming_its_class():
    """Module by module its forward runs as is: the floor and clamp it calls during
    calibration are reported, with the class whose forward made them; without data
    (which a QCFS network does not need) the forward itself is refused, by class."""
    net = _Untraceable(_DoubledQCFS(levels=4, threshold=2.0)).eval()
    with pytest.raises(ConversionError) as error:
        convert(net, X, trace="modules")
    assert (
        "act (forward) (torch.floor): nonlinear call in an untraced forward (the forward of "
        "_DoubledQCFS, a subclass of QCFS with a forward of its own): not converted"
    ) in str(error.value)
    with pytest.raises(ConversionError) as error:
        convert(net, trace="modules")
    assert (
        "act (forward) (forward): the forward of _DoubledQCFS, a subclass of QCFS with a "
        "forward of its own, not traced: without calibration data its calls are not inspected"
    ) in str(error.value)


def _pool_net(pool: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(4, 8), nn.ReLU(), nn.Unflatten(1, (1, 8)), pool, nn.Flatten(), nn.Linear(4, 3)
    ).eval()


def test_a_max_pool_subclass_with_its_own_forward_is_converted_by_its_forward():
    """``2·maxpool``: traced, its max pool becomes a gated pool and the factor 2 stays
    (the pool was replaced as a plain ``nn.MaxPool1d`` and the SNN was off by 2)."""
    net = _pool_net(_DoubledPool(2))
    _, report = convert(net, X)
    assert [(e.name, e.action) for e in report.entries if "pool" in e.name] == [
        ("max_pool1d", "replaced")
    ]
    with torch.no_grad():
        snn = convert(net, X).snn
        expected = net(X)
        plain = net[5](net[4](nn.MaxPool1d(2)(net[2](net[1](net[0](X))))))
        # the rate of a gated pool of IF neurons converges to 2·max of the relu rates
        err = float((snn.rate(X, 256) - expected).abs().max())
        assert err < 0.25 * float((expected - plain).abs().max()), err


def test_a_max_pool_subclass_that_only_adds_attributes_is_a_max_pool():
    """Traced it is one module, named in the report; module by module (where its
    class used to be looked up in a table of the three torch classes: KeyError) too."""
    _, report = convert(_pool_net(_TaggedPool(2)), X)
    assert [(e.name, e.source, e.action) for e in report.entries if e.name == "3"] == [
        ("3", "_TaggedPool", "replaced")
    ]
    pool = nn.Sequential(nn.Unflatten(1, (1, 8)), _TaggedPool(2), nn.Flatten())
    _, report = convert(_Untraceable(pool, 4).eval(), X)
    assert [(e.name, e.action) for e in report.entries if e.source == "_TaggedPool"] == [
        ("act.1", "replaced")
    ]


def test_an_untraced_max_pool_subclass_is_refused_naming_its_class():
    net = _Untraceable(nn.Sequential(nn.Unflatten(1, (1, 8)), _DoubledPool(2), nn.Flatten()), 4)
    with pytest.raises(ConversionError) as error:
        convert(net.eval(), X, trace="modules")
    assert (
        "act.1 (forward) (torch.nn.functional.max_pool1d): nonlinear call in an untraced "
        "forward (the forward of _DoubledPool, a subclass of MaxPool1d with a forward of its "
        "own): not converted"
    ) in str(error.value)
