"""Bad input to the conversion: every error names what was wrong (and nothing is ignored)."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spikeflow.conversion import (
    QCFS,
    ActivationObserver,
    ConversionError,
    GatedMaxPool,
    constant_input,
    convert,
    unevenness,
)
from spikeflow.errors import ConfigurationError, ShapeError


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)
    ).eval()


X = torch.rand(16, 1, 8, 8)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"norm": "robust"}, r"norm must be 'max' .* got 'robust'"),
        ({"norm": "percentile", "percentile": 0}, r"percentile must be in \(0, 100\].* got 0"),
        ({"norm": "percentile", "percentile": 100.5}, r"percentile .* got 100.5"),
        ({"norm": "percentile", "percentile": float("nan")}, r"percentile .* got nan"),
        ({"norm": "percentile", "percentile": "99.9%"}, r"percentile must be a number .*'99.9%'"),
        ({"norm": "percentile", "percentile": True}, r"percentile must be a number .*True"),
        # A percentile without norm='percentile' used to be ignored silently (max-norm).
        ({"percentile": 99.99}, r"percentile=99.99 is only used by the robust norm"),
        ({"norm": "max", "include_zeros": True}, r"include_zeros=True .* norm='max'"),
        ({"group_size": 0}, r"group_size must be None or an integer >= 1, got 0"),
        ({"group_size": 2.0}, r"group_size .* got 2.0"),
        ({"initial_membrane": 1.0}, r"initial_membrane .* \[0, 1\), got 1.0"),
        ({"initial_membrane": -0.1}, r"initial_membrane .* got -0.1"),
        ({"max_pool": "avg"}, r"max_pool must be 'gated' or 'keep', got 'avg'"),
        ({"trace": "jit"}, r"trace must be 'auto', 'fx' or 'modules', got 'jit'"),
    ],
)
def test_bad_convert_options_are_named(options, message):
    with pytest.raises(ConfigurationError, match=message):
        convert(_cnn(), X, **options)


def test_default_percentile_is_99_9_and_a_fraction_warns():
    default = ActivationObserver("percentile")
    explicit = ActivationObserver("percentile", percentile=99.9)
    y = torch.rand(4, 1000)
    default(y)
    explicit(y)
    assert default.percentile == 99.9
    assert torch.equal(default.scale(), explicit.scale())
    # 0.999 is a valid percentage, but almost certainly meant 99.9: warn (once, not
    # again for each observer), and use it.
    with pytest.warns(UserWarning, match=r"percentile=0.999 is a percentage.*99.9") as caught:
        snn, _ = convert(_cnn(), X, norm="percentile", percentile=0.999)
    assert snn.body is not None
    assert len([w for w in caught if "is a percentage" in str(w.message)]) == 1
    with pytest.raises(ConfigurationError, match=r"include_zeros=True .* norm='max'"):
        ActivationObserver("max", include_zeros=True)


def test_converted_snn_needs_the_time_dimension_and_one_step():
    snn, _ = convert(_cnn(), X)
    assert snn.input_dim == 4
    with pytest.raises(
        ShapeError, match=r"5 dimensions .* got shape \(16, 1, 8, 8\).*constant_inp"
    ):
        snn(X)  # the image batch itself, without [T, ...]
    with pytest.raises(ShapeError, match=r"at least one time step .* T = 0"):
        snn(torch.zeros(0, 16, 1, 8, 8))
    with pytest.raises(ConfigurationError, match=r"steps \(T\) must be an integer >= 1, got 0"):
        constant_input(X, 0)
    with pytest.raises(ConfigurationError, match=r"steps \(T\) .* got -3"):
        snn.running_rate(X, -3)
    with pytest.raises(ConfigurationError, match=r"steps \(T\) .* got 2.5"):
        unevenness(snn, X, 2.5)
    assert snn(constant_input(X, 3)).shape == (3, 16, 3)


def test_calibration_batches_must_agree_in_dimensions():
    batches = [X[:8], X[8:].flatten(1)]
    with pytest.raises(ShapeError, match=r"calibration batch 1 has 2 dimensions .* first had 4"):
        convert(_cnn(), batches)


class _TorchMaxPool(nn.Module):
    """The same network written with ``F.max_pool2d`` or with ``torch.max_pool2d``."""

    def __init__(self, pool) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.fc = nn.Linear(3 * 4 * 4, 2)
        self.pool = pool

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(F.relu(self.conv(x)), 2), 1))


def test_torch_max_pool_is_gated_like_functional_max_pool():
    """``torch.max_pool2d`` used to be kept as an unverified call (a per-step max)."""
    x = torch.rand(6, 1, 8, 8)
    functional, _ = convert(_TorchMaxPool(F.max_pool2d), x)
    direct, report = convert(_TorchMaxPool(torch.max_pool2d), x)
    pools = [e for e in report.entries if e.source == "torch.max_pool2d"]
    assert [e.action for e in pools] == ["replaced"]
    assert any(isinstance(m, GatedMaxPool) for m in direct.modules())
    seq = constant_input(x, 16)
    torch.testing.assert_close(direct(seq), functional(seq), rtol=0, atol=0)
    per_step, _ = convert(_TorchMaxPool(torch.max_pool2d), x, max_pool="keep")
    assert not torch.equal(per_step(seq), direct(seq))  # the gating matters on this input


class _Calls(nn.Module):
    def __init__(self, call) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.call = call

    def forward(self, x):
        return self.call(F.relu(self.conv(x)))


class _Untraced(_Calls):
    def forward(self, x):
        y = F.relu(self.conv(x))
        if bool(y.sum() > -1):  # data-dependent control flow: torch.fx cannot trace this
            y = self.call(y)
        return y


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda y: F.adaptive_max_pool2d(y, 1), "adaptive_max_pool2d"),
        (lambda y: F.lp_pool2d(y, 2, 2), "lp_pool2d"),
        (lambda y: torch.floor(y), "floor"),
        (lambda y: torch.round(y), "round"),
        (lambda y: torch.sign(y), "sign"),
        (lambda y: torch.sin(y), "sin"),
        (lambda y: torch.square(y), "square"),
        (lambda y: torch.rsqrt(y + 1), "rsqrt"),
        (lambda y: torch.reciprocal(y + 1), "reciprocal"),
        (lambda y: torch.erf(y), "erf"),
        (lambda y: torch.amax(y, 1, keepdim=True).expand_as(y), "amax"),
    ],
)
@pytest.mark.parametrize("module", [_Calls, _Untraced])
def test_nonlinear_calls_are_named_not_kept(call, name, module):
    """These used to be 'unverified' (kept, no error) when traced and missed when not."""
    with pytest.raises(ConversionError, match=rf"\({name}|{name} \(|\.{name}\)"):
        convert(module(call), X)
    _, report = convert(module(call), X, strict=False)
    assert any(name in e.source and e.action == "unconverted" for e in report.entries)


@pytest.mark.parametrize(
    ("call", "source"),
    [
        (lambda y: F.log_softmax(y, 1), r"log_softmax"),
        (lambda y: torch.log_softmax(y, 1), r"log_softmax"),
        (lambda y: torch.clamp_min(y, 0.2), r"clamp_min"),
        (lambda y: torch.clamp_max(y, 0.2), r"clamp_max"),
        (F.logsigmoid, r"log_sigmoid"),
        (torch.special.expit, r"special_expit"),
        (lambda y: torch.special.erf(y), r"special_erf"),
        (lambda y: y // 0.3, r"floordiv"),
        (lambda y: y % 0.3, r"mod|remainder"),
        (lambda y: torch.remainder(y, 0.3), r"remainder"),
        (lambda y: torch.fmax(y, torch.full_like(y, 0.3)), r"fmax"),
        (lambda y: torch.fmin(y, torch.full_like(y, 0.3)), r"fmin"),
        (lambda y: torch.prod(y, 1, keepdim=True).expand_as(y), r"prod"),
        (lambda y: torch.cumprod(y, 1), r"cumprod"),
        (lambda y: 2**y, r"pow"),
    ],
)
@pytest.mark.parametrize("module", [_Calls, _Untraced])
def test_nonlinear_functions_are_refused_like_their_method_forms(call, source, module):
    # As functions these used to be kept as 'unverified' under strict=True (their
    # method forms, x.log_softmax(1), x.clamp_min(0), were refused); the SNN then
    # applied them to every step's spiky value and its rate missed the ANN's.
    with pytest.raises(ConversionError, match=source):
        convert(module(call), X)
    _, report = convert(module(call), X, strict=False)
    assert any(re.search(source, e.source) for e in report.unconverted)


@pytest.mark.parametrize(
    ("call", "named"),
    [
        (lambda y: torch.where(y > 0.5, y, 0.0), r"gt \(operator.gt\).*where \(torch.where\)"),
        (lambda y: (y >= 0.5).float(), r"ge \(operator.ge\)"),
        (lambda y: y.masked_fill(y.lt(0.1), 0.0), r"lt \(Tensor.lt\).*masked_fill"),
        (lambda y: torch.div(y, 2, rounding_mode="floor"), r"div \(torch.div\)"),
    ],
)
def test_comparisons_selections_and_rounding_divisions_of_a_signal_are_refused(call, named):
    # Step functions of the signal (torch.where(y > 0.5, y, 0) is a shifted ReLU): these
    # used to be kept as 'unverified'.
    with pytest.raises(ConversionError, match=named):
        convert(_Calls(call), X)


@pytest.mark.parametrize(
    "call",
    [
        lambda y: y / 2,
        lambda y: 3 * y - y,
        lambda y: torch.cat([y, y], 1),
        lambda y: y.view(y.shape[0], -1).reshape(y.shape),
        lambda y: torch.flatten(y, 1).unflatten(1, (3, 8, 8)),
        lambda y: y.mean((2, 3), keepdim=True).expand_as(y) + y,
        lambda y: -y + torch.add(y, y),
    ],
    ids=["div-constant", "scale-sub", "cat-channels", "views", "flatten", "mean", "add-neg"],
)
def test_affine_calls_still_convert(call):
    _, report = convert(_Calls(call), X)
    assert not report.unconverted and not report.by_action("unverified")


class _ShapeChecked(nn.Module):
    """torchvision's pattern: ``torch._assert`` on ``x.shape[1]`` before the layers."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8 * 8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch._assert(x.shape[1] == 1, "one channel")
        return F.relu(self.fc(torch.flatten(x, 1)))


def test_a_comparison_of_a_shape_entry_is_not_a_signal_comparison():
    # x.shape[1] (a getitem of the shape) counted as a signal: the model was refused.
    _, report = convert(_ShapeChecked(), X)
    assert not report.unconverted


def test_a_signal_in_the_divisor_is_not_affine():
    # 1 / (x + 1) is a reciprocal of the signal; x / 2 stays affine.
    with pytest.raises(ConversionError, match="truediv"):
        convert(_Calls(lambda y: 1 / (y + 1)), X)
    convert(_Calls(lambda y: y / 2), X)


def test_batch_norm_without_running_statistics_says_why():
    net = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4, track_running_stats=False), nn.ReLU())
    with pytest.raises(ConversionError, match=r"'?1'? \(nn.BatchNorm1d\): no running statistics"):
        convert(net, torch.rand(8, 4))


class _UntracedWithSpareRelu(nn.Module):
    """Untraceable (data-dependent branch); owns a ReLU its forward never calls."""

    def __init__(self) -> None:
        super().__init__()
        self.fc, self.act, self.spare = nn.Linear(4, 4), nn.ReLU(), nn.ReLU()

    def forward(self, x):
        y = self.act(self.fc(x))
        if bool(y.sum() > -1):
            y = y * 2
        return y


class _UntracedReusedRelu(_UntracedWithSpareRelu):
    def forward(self, x):
        y = self.act(self.fc(x))
        if bool(y.sum() > -1):
            y = self.act(self.fc(y))  # the same ReLU module, a second call site
        return y


def test_an_unused_relu_is_kept_and_reported_not_an_error():
    snn, report = convert(_UntracedWithSpareRelu(), torch.rand(8, 4))
    assert snn(torch.rand(5, 8, 4)).shape == (5, 8, 4)  # [T, B, ...]
    entry = next(e for e in report.entries if e.name.endswith("spare"))
    assert entry.action == "kept" and "never called" in entry.detail
    assert any(e.name.endswith("act") and e.action == "converted" for e in report.entries)


def test_a_relu_called_twice_in_an_untraced_forward_is_named():
    # Its calls share one neuron (one threshold; streaming would carry its state from
    # one call to the other): a warning and the report say so.
    with pytest.warns(RuntimeWarning, match=r"'act' \(nn\.ReLU\) ran 2 times"):
        snn, report = convert(_UntracedReusedRelu(), torch.rand(8, 4))
    entry = next(e for e in report.entries if e.name.endswith("act"))
    assert entry.action == "converted" and "shared by 2 calls" in entry.detail
    assert snn(torch.rand(5, 8, 4)).shape == (5, 8, 4)


class _Reshuffled(nn.Module):
    def __init__(self, call) -> None:
        super().__init__()
        self.fc, self.call = nn.Linear(6, 6), call

    def forward(self, x):  # x: [B, L, 6]
        return F.relu(self.fc(self.call(x))).sum(-1)


@pytest.mark.parametrize(
    "call",
    [
        lambda x: x.transpose(0, 1),
        lambda x: x.permute(1, 0, 2),
        lambda x: torch.movedim(x, 0, 1),
        lambda x: torch.swapaxes(x, 1, 0),
    ],
)
def test_moving_the_batch_dimension_is_refused(call):
    # The SNN folds time into dim 0; a layer that moves it would make later neurons
    # split another dimension as if it were time (silently wrong before).
    with pytest.raises(ConversionError, match="moves the batch dimension"):
        convert(_Reshuffled(call), torch.rand(16, 8, 6))


@pytest.mark.parametrize(
    "call",
    [lambda x: x.transpose(1, 2).transpose(1, 2), lambda x: x.permute(0, 2, 1).permute(0, 2, 1)],
)
def test_moving_other_dimensions_is_affine(call):
    convert(_Reshuffled(call), torch.rand(16, 8, 6))


class _TiedDecoder(nn.Module):
    """A decoder using the encoder's transposed weight: no batch dimension moves."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Linear(6, 4)
        self.bias = nn.Parameter(torch.zeros(6))

    def forward(self, x):
        return F.linear(F.relu(self.enc(x)), self.enc.weight.t(), self.bias)


def test_transposing_a_weight_is_affine():
    snn, report = convert(_TiedDecoder(), torch.rand(16, 6))
    assert not [e for e in report.entries if e.action == "unconverted"]
    assert snn(torch.rand(5, 16, 6)).shape == (5, 16, 6)


def test_bad_qcfs_thresholds_are_named_with_their_values_in_one_error():
    # λ is a free parameter that training can drive to <= 0; the error used to come from
    # the IF neuron's constructor and name neither the layer nor λ.
    ann = nn.Sequential(
        nn.Linear(4, 8), QCFS(), nn.Linear(8, 8), QCFS(), nn.Linear(8, 8), QCFS(), nn.Linear(8, 2)
    )
    with torch.no_grad():
        ann[3].threshold.fill_(-0.05)
        ann[5].threshold.fill_(float("nan"))
    with pytest.raises(ConversionError, match=r"2 part\(s\)") as info:
        convert(ann)
    message = str(info.value)
    assert re.search(r"\b3 \(QCFS\(L=8\)\): λ = -0\.05 is not finite and > 0", message)
    assert re.search(r"\b5 \(QCFS\(L=8\)\): λ = nan is not finite", message)
    assert "1 (QCFS" not in message
    snn, report = convert(ann, strict=False)
    assert [e.name for e in report.unconverted] == ["3", "5"]
    assert [e.name for e in report.converted] == ["1"]
    assert snn(torch.rand(4, 2, 4)).shape == (4, 2, 2)


def test_a_non_finite_calibrated_scale_is_named():
    net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    data = torch.rand(8, 4)
    data[0, 0] = float("inf")
    with torch.no_grad():
        for layer in (net[0], net[2]):
            layer.weight.fill_(0.5)
            layer.bias.zero_()
    with pytest.raises(ConversionError, match=r"\b1 \(nn.ReLU\): calibrated θ = inf is not finite"):
        convert(net, data)
