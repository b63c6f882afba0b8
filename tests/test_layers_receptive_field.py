"""Scale-space receptive fields: equal to Norse 1.1's (kernels, parameter tables,
convolutions and the gradients of scale/angle/ratio; temporal fields step by step),
to hand formulas, and float64 gradcheck."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from spikeflow import functional
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.layers import (
    SpatialReceptiveField2d,
    TemporalReceptiveField,
    spatial_parameters,
    spatial_receptive_field,
    spatial_receptive_fields,
    temporal_scale_distribution,
)


def norse_rf():
    pytest.importorskip("norse", reason="Norse is not installed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from norse.torch.functional import receptive_field as functional_rf
        from norse.torch.module import receptive_field as module_rf
    return functional_rf, module_rf


FIELDS = [
    (1.0, 0.0, 1.0, 0, 0),
    (2.5, 0.7, 0.5, 1, 0),
    (1.5, 1.2, 2.0, 1, 2),
    (3.0, -0.3, 0.8, 2, 1),
]


@pytest.mark.parametrize(("scale", "angle", "ratio", "dx", "dy"), FIELDS)
def test_fields_equal_norse(scale, angle, ratio, dx, dy):
    nrf, _ = norse_rf()
    args = [torch.tensor(v) for v in (scale, angle, ratio)]  # Norse samples in float32
    want = nrf.spatial_receptive_field(*args, 11, dx, dy, domain=6)
    got = spatial_receptive_field(*args, 11, dx, dy, domain=6)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
    as64 = spatial_receptive_field(*(a.double() for a in args), 11, dx, dy, domain=6)
    assert as64.dtype == torch.float64
    torch.testing.assert_close(as64.float(), want, rtol=1e-5, atol=1e-6)


def test_round_gaussian_by_hand():
    # scale s, ratio 1: covariance s·I, the normalised exp(-(x² + y²)/(2s)) on the grid
    field = spatial_receptive_field(2.0, 0.3, 1.0, 7, domain=3.0)
    axis = torch.linspace(-3.0, 3.0, 7)
    ys, xs = torch.meshgrid(axis, axis, indexing="ij")
    want = torch.exp(-(xs**2 + ys**2) / 4.0)
    torch.testing.assert_close(field, want / want.sum())
    # first derivative along angle 0: the difference down the rows times the scale
    d = spatial_receptive_field(2.0, 0.0, 1.0, 7, dx=1, domain=3.0)
    torch.testing.assert_close(d, torch.gradient(want / want.sum(), dim=0)[0] * 2.0)


def test_parameter_tables_and_scale_distribution_equal_norse():
    nrf, _ = norse_rf()
    s, a, r = torch.tensor([1.0, 2.0]), torch.tensor([0.0, 1.0]), torch.tensor([0.5, 1.0])
    for derivatives in (0, 1, [(0, 0), (2, 1)]):
        want = nrf.spatial_parameters(s, a, r, derivatives)
        assert torch.equal(spatial_parameters(s, a, r, derivatives), want)
    torch.testing.assert_close(temporal_scale_distribution(5), nrf.temporal_scale_distribution(5))
    table = spatial_parameters(s, a, r, 1)
    want = nrf.spatial_receptive_fields_with_derivatives(table, 9, domain=4)
    torch.testing.assert_close(spatial_receptive_fields(table, 9, domain=4), want)


def test_max_scale_spans_the_range_given():
    taus = temporal_scale_distribution(4, min_scale=1.0, max_scale=8.0) ** 2
    torch.testing.assert_close(taus, torch.tensor([1.0, 2.0, 4.0, 8.0]))
    assert temporal_scale_distribution(1, 3.0, 9.0).item() == pytest.approx(math.sqrt(3.0))


@pytest.mark.filterwarnings("ignore:Full backward hook")  # Norse's own hook
def test_convolution_and_parameter_gradients_equal_norse():
    _, mrf = norse_rf()
    torch.manual_seed(0)
    table = spatial_parameters(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 1.0]),
                               torch.tensor([0.5, 1.0]), 1)  # fmt: skip
    theirs = mrf.SpatialReceptiveField2d(2, 9, table.clone(), domain=8, padding=2)
    ours = SpatialReceptiveField2d(2, 9, table.clone(), padding=2, step_mode="s")
    x = torch.rand(3, 2, 16, 16)  # float32: Norse's kernels are
    want, got = theirs(x), ours(x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert ours.out_channels == got.shape[1] == 32
    (want * torch.linspace(0, 1, want.numel()).view_as(want)).sum().backward()
    (got * torch.linspace(0, 1, got.numel()).view_as(got)).sum().backward()
    grad = theirs.rf_parameters.grad
    for column, name in enumerate(("scale", "angle", "ratio")):
        torch.testing.assert_close(getattr(ours, name).grad, grad[:, column], rtol=1e-4, atol=1e-4)


def test_per_channel_fields_and_multi_step_folding():
    table = torch.tensor([[1.0, 0.0, 1.0, 0, 0], [2.0, 0.5, 0.7, 1, 0]])
    m = SpatialReceptiveField2d(3, 5, table, aggregate=False, learn=(), padding=2)
    assert not list(m.parameters())
    x = torch.rand(4, 2, 3, 8, 8)  # [T, B, C, H, W]
    y = m(x)
    assert y.shape == (4, 2, 6, 8, 8)
    fields = m.fields()
    for c in range(3):  # channel c's two fields are outputs 2c, 2c + 1
        for k in range(2):
            want = F.conv2d(x[:, :, c : c + 1].flatten(0, 1), fields[k][None, None], padding=2)
            torch.testing.assert_close(y[:, :, 2 * c + k], want.view(4, 2, 8, 8))


def test_learn_may_be_any_iterable():
    table = torch.tensor([[1.0, 0.0, 1.0, 0, 0]])
    m = SpatialReceptiveField2d(1, 3, table, learn=(n for n in ("scale", "ratio")))
    assert sorted(name for name, _ in m.named_parameters()) == ["ratio", "scale"]


def test_gradcheck_of_the_field_parameters():
    params = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in (1.7, 0.4, 0.6)]
    assert torch.autograd.gradcheck(
        lambda s, a, r: spatial_receptive_field(s, a, r, 7, dx=1, dy=1, domain=4), params
    )


def test_temporal_fields_equal_norse_step_by_step():
    _, mrf = norse_rf()
    torch.manual_seed(1)
    theirs = mrf.TemporalReceptiveField((2, 3, 3), n_scales=3)
    ours = TemporalReceptiveField((2, 3, 3), 3)
    x = torch.rand(6, 4, 2, 3, 3)
    state, steps = None, []
    for x_t in x:
        out, state = theirs(x_t, state)
        steps.append(out)
    want = torch.stack(steps)
    got = ours(x)
    assert got.shape == (6, 4, 3, 2, 3, 3)
    torch.testing.assert_close(got, want)
    # the recursion by hand: v[t] = v[t-1] + k (x[t] - v[t-1]), k = 1/sqrt(tau_k)
    k = 1 / temporal_scale_distribution(3)
    v = torch.zeros(4, 3, 2, 3, 3)
    for t in range(6):
        v = v + k.view(1, 3, 1, 1, 1) * (x[t].unsqueeze(1) - v)
        torch.testing.assert_close(got[t], v)


def test_temporal_fields_stream_and_learn():
    m = TemporalReceptiveField((2,), 2)
    x = torch.rand(8, 3, 2)
    whole = m(x)
    with functional.streaming(m):
        halves = torch.cat([m(x[:3]), m(x[3:])])
    torch.testing.assert_close(halves, whole)
    whole.sum().backward()
    assert m.rate.grad is not None and m.rate.grad.shape == (2, 2)


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda: SpatialReceptiveField2d(2, 5, torch.ones(3, 4)), ShapeError, r"\[n, 5\] rows"),
        (lambda: SpatialReceptiveField2d(2, 5, torch.ones(1, 5), learn="scale"), ConfigurationError,
         "learn must name"),
        (lambda: SpatialReceptiveField2d(2, 5, torch.ones(1, 5))(torch.rand(1, 1, 3, 8, 8)),
         ShapeError, "expected 2 input channels"),
        (lambda: spatial_parameters(torch.ones(1), torch.ones(1), torch.ones(1), [(1, -1)]),
         ConfigurationError, "derivatives must be"),
        (lambda: temporal_scale_distribution(3, 4.0, 2.0), ConfigurationError, "max_scale"),
        (lambda: TemporalReceptiveField((2, 3), 2)(torch.rand(4, 1, 3, 3)), ShapeError,
         r"expected steps of shape \[B, 2, 3\]"),
        (lambda: TemporalReceptiveField((2,), 2, rates=torch.ones(3, 2)), ShapeError,
         r"rates must have shape \(2, 2\)"),
    ],
)  # fmt: skip
def test_bad_arguments_are_named(build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_docs_example_runs_as_printed():
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "layers.md").read_text()
    block = re.search(r"<!-- layers: receptive-field\b.*?-->\s*```python\n(.*?)```", text, re.S)
    namespace: dict = {}
    exec(compile(block.group(1), "docs/layers.md receptive-field", "exec"), namespace)
    assert namespace["rf"].out_channels == 32
    assert sum(p.numel() for p in namespace["rf"].parameters()) == 96
