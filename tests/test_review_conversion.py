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


@pytest.mark.parametrize("kind", ["group", "if"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_neuron_with_per_channel_float32_thresholds_answers_in_the_input_dtype(kind, dtype):
    """A float16 input with a float32 per-channel θ gave a float32 output (the product
    with θ promoted it); a 0-d θ did not. Every value here (θ, inputs, charges) is a
    multiple of 1/16 below 8, exact in both dtypes, so the output must equal the float64
    computation exactly."""
    from spikeflow.conversion import ConversionIFNode, GroupNeuron

    theta = torch.tensor([[1.0], [2.0], [0.5]])  # [C, 1] for [T, B, C, L]
    x = torch.randint(0, 24, (5, 2, 3, 4), generator=torch.Generator().manual_seed(0)) / 16
    make = (lambda: GroupNeuron(theta, 4)) if kind == "group" else (lambda: ConversionIFNode(theta))
    with torch.no_grad():
        out = make()(x.to(dtype))
        expected = make().double()(x.double())
    assert out.dtype == dtype
    torch.testing.assert_close(out.double(), expected, rtol=0, atol=0)


class _ReusedRelu(nn.Module):
    """One ReLU module applied to 8 and then 6 channels, in an untraceable forward."""

    def __init__(self) -> None:
        super().__init__()
        self.l1, self.l2, self.out = nn.Linear(4, 8), nn.Linear(8, 6), nn.Linear(6, 3)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.l1(x))
        if h.sum() > -1e9:  # data-dependent control flow: converted module by module
            h = self.act(self.l2(h))
        return self.out(h)


@pytest.mark.parametrize("norm", [{"norm": "max"}, {"norm": "gaussian", "levels": 8}])
def test_per_channel_calibration_of_a_relu_reused_on_other_channel_counts_names_it(norm):
    """It failed with "The size of tensor a (8) must match the size of tensor b (6) at
    non-singleton dimension 0" from inside the observer. One shared neuron cannot hold
    a threshold per channel for both calls."""
    from spikeflow.errors import ShapeError

    net = _ReusedRelu().eval()
    with pytest.raises(
        ShapeError,
        match=r"per-channel calibration of 'act' \(nn\.ReLU\): it "
        r"ran on \(32, 8\) \(8 channels\), then on \(32, 6\) \(6 channels\)",
    ):
        convert(net, X, per_channel=True, **norm)
    with pytest.warns(RuntimeWarning, match="'act' .* ran 2 times"):
        _, report = convert(net, X)  # per layer: one θ for both calls, as documented
    assert "shared by 2 calls" in report.converted[0].detail


def test_per_channel_calibration_of_a_relu_reused_on_another_rank_names_it():
    """[B, 4] and then [B, 4, 4]: θ shaped [4] for the first broadcast along the last dim
    of the second, silently (the second call's channels got the first's thresholds in
    the wrong places)."""
    from spikeflow.errors import ShapeError

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.l1, self.act = nn.Linear(4, 4), nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.act(self.l1(x))
            if h.sum() > -1e9:
                h = self.act(h.unsqueeze(-1).expand(-1, -1, 4) * torch.arange(4.0)).mean(-1)
            return h

    with pytest.raises(
        ShapeError,
        match=r"'act' \(nn\.ReLU\): it ran on \(32, 4\) .*then on "
        r"\(32, 4, 4\) \(4 channels, 3 dims\)",
    ):
        convert(Net().eval(), X, per_channel=True)


def test_a_module_listed_twice_in_a_container_is_converted_at_both_places():
    """Converted module by module, a ReLU listed twice in a Sequential became a neuron at
    its first place only: the second place stayed a ReLU (named_children skips repeats),
    and the report said nothing."""
    torch.manual_seed(0)
    act = nn.ReLU()
    net = nn.Sequential(nn.Linear(4, 8), act, nn.Linear(8, 8), act, nn.Linear(8, 3)).eval()
    with pytest.warns(RuntimeWarning, match="ran 2 times in each forward pass"):
        snn, report = convert(net, X, trace="modules")
    assert snn.body[1] is snn.body[3] and not isinstance(snn.body[3], nn.ReLU)
    assert "shared by 2 calls" in report.converted[0].detail


class _DoubleRelu(nn.ReLU):
    """An ``nn.ReLU`` subclass with its own forward: ``2·relu(x)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2.0 * F.relu(x)


class _TaggedRelu(nn.ReLU):
    """An ``nn.ReLU`` subclass that only adds an attribute: still a ReLU."""

    def __init__(self, tag: str) -> None:
        super().__init__()
        self.tag = tag


class _Untraceable(nn.Module):
    def __init__(self, act: nn.Module) -> None:
        super().__init__()
        self.l1, self.act, self.l2 = nn.Linear(4, 8), act, nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.l1(x)
        if h.sum() > -1e9:  # converted module by module
            h = self.act(h)
        return self.l2(h)


@pytest.mark.parametrize("root", [False, True])
def test_a_relu_subclass_with_its_own_forward_is_converted_by_its_forward(root):
    """Module by module (and as the whole model) the subclass was taken for a plain ReLU:
    calibration and the SNN ran ``clamp_min(x, 0)``, so the SNN lost the factor 2."""
    torch.manual_seed(0)
    net = (_DoubleRelu() if root else _Untraceable(_DoubleRelu())).eval()
    snn, report = convert(net, X)
    assert len(report.converted) == 1, report
    with torch.no_grad():
        expected = net(X)
        err = float((snn.rate(X, STEPS) - expected).abs().max())
    (theta,) = [float(m.v_threshold) for m in snn.modules() if hasattr(m, "v_threshold")]
    if root:  # the SNN is 2·IF(x): within 2θ/T of 2·relu(x)
        assert theta == pytest.approx(float(X.clamp_min(0).max()))
        assert err <= 2 * theta / STEPS + 1e-6, err
    else:
        bound = 2 * float(net.l2.weight.detach().abs().sum(1).max()) * theta / STEPS
        assert err <= bound + 1e-5, (err, bound)
        assert err < 0.1 * float(expected.abs().max())  # not the factor-2 error


def test_a_relu_subclass_with_its_own_forward_is_not_taken_for_a_relu_untraced():
    """With trace='modules' its forward is not traced: the relu it calls is reported."""
    from spikeflow.conversion import ConversionError

    net = _Untraceable(_DoubleRelu()).eval()
    with pytest.raises(
        ConversionError,
        match=r"act \(forward\) \(torch\.nn\.functional\.relu"
        r"\): relu called directly in an untraced forward",
    ):
        convert(net, X, trace="modules")


@pytest.mark.parametrize("trace", ["auto", "modules"])
def test_a_relu_subclass_that_only_adds_attributes_is_a_relu(trace):
    torch.manual_seed(0)
    net = _Untraceable(_TaggedRelu("hidden")).eval()
    snn, report = convert(net, X, trace=trace)
    assert [e.name for e in report.converted] == ["act"], report
    err, bound = _rate_error_bound(net, snn)
    assert err <= bound + 1e-5, (err, bound)


class _AliasedInplaceRelu(nn.Module):
    """An in-place relu of ``h`` (or of a view of it) with another view of the same
    memory read afterwards: the ANN reads rectified values through it."""

    def __init__(self, form: str) -> None:
        super().__init__()
        self.form = form
        self.l1, self.l2 = nn.Linear(4, 8), nn.Linear(8, 3)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.l1(x)
        if self.form == "view":  # a view taken before, read after
            v = h.view(h.size(0), 2, 4)
            h.relu_()
            return self.l2(v.flatten(1))
        if self.form == "reshape":  # reshape of a contiguous tensor: a view as well
            v = h.reshape(-1, 2, 4)
            F.relu(h, inplace=True)
            return self.l2(v.reshape(h.size(0), -1))
        if self.form == "slices":  # two slices, through chunk and getitem
            a, b = h.chunk(2, 1)
            c = h[:, 4:]
            self.act(h)
            return self.l2(torch.cat([a, b + c - c], 1))
        if self.form == "view_chain":  # a view of a view of a view ...
            v = h.view(h.size(0), 2, 4).transpose(1, 2).transpose(1, 2).flatten(1)
            torch.relu_(h)
            return self.l2(v)
        if self.form == "of_a_view":  # the relu rectifies part of h through a view
            h[:, :4].relu_()
            return self.l2(h)
        if self.form == "chunk_sibling":  # ... and a chunk of h is read after it
            a, b = h.chunk(2, 1)
            a.relu_()
            return self.l2(torch.cat([a, b], 1))
        if self.form == "copy":  # a copy taken before keeps the unrectified values
            v = h.clone().view(h.size(0), 2, 4)
            h.relu_()
            return self.l2(v.flatten(1)) + self.l2(h)
        raise AssertionError(self.form)


@pytest.mark.parametrize(
    "form",
    ["view", "reshape", "slices", "view_chain", "of_a_view", "chunk_sibling", "copy"],
)
def test_an_inplace_relu_rectifies_every_view_of_its_memory(form):
    """The SNN read the un-rectified values through a view taken before the relu (or,
    for a relu of a view, through the tensor it views), while reporting the relu
    converted."""
    torch.manual_seed(0)
    net = _AliasedInplaceRelu(form).eval()
    snn, report = convert(net, X)
    assert len(report.converted) == 1, report
    (theta,) = [float(m.v_threshold) for m in snn.modules() if hasattr(m, "v_threshold")]
    with torch.no_grad():
        expected = net(X.clone())
        err = float((snn.rate(X, STEPS) - expected).abs().max())
        unrectified = float((net.l2(net.l1(X)) - expected).abs().max())
    reads = 2 if form == "copy" else 1  # l2 applied to h (and to the copy)
    bound = reads * float(net.l2.weight.detach().abs().sum(1).max()) * theta / STEPS
    assert err <= bound + 1e-5, (err, bound)
    assert unrectified > 10 * bound or form == "copy"  # the relu matters


def test_an_inplace_relu_of_the_input_leaves_the_callers_sequence_alone():
    """A relu of the network's input, through a view of it: the SNN rectifies its own
    copy (it would otherwise write spikes into the caller's tensor)."""

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.l1 = nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            v = x.view(x.size(0), 2, 2)
            x.relu_()
            return self.l1(v.flatten(1))

    torch.manual_seed(0)
    net = Net().eval()
    snn, _ = convert(net, X.clone())
    x_seq = constant_input(X, STEPS).contiguous()
    before = x_seq.clone()
    with torch.no_grad():
        out = snn(x_seq).mean(0)
        expected = net(X.clone())
    assert torch.equal(x_seq, before)
    (theta,) = [float(m.v_threshold) for m in snn.modules() if hasattr(m, "v_threshold")]
    bound = float(net.l1.weight.detach().abs().sum(1).max()) * theta / STEPS
    assert float((out - expected).abs().max()) <= bound + 1e-5


class _OnDimZero(nn.Module):
    """``l1 → relu → op → l2``, the op given as a function of ``h`` ``[B, 8]``."""

    def __init__(self, op, features: int = 8) -> None:
        super().__init__()
        self.op = op
        self.l1, self.l2 = nn.Linear(4, 8), nn.Linear(features, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.l2(self.op(F.relu(self.l1(x))))


# The op, and what the error says it does (after "<node> (<source>): ").
_MIXING = {
    "sum": (lambda h: h.sum() + h, r"Tensor\.sum\): sums over every dim"),
    "mean": (lambda h: h - h.mean(), r"Tensor\.mean\): averages over every dim"),
    "torch.sum over 0": (lambda h: torch.sum(h, 0) + h, r"torch\.sum\): sums over dim 0"),
    "mean over (0, 1)": (lambda h: h - h.mean(dim=(0, 1)), r"averages over dims \(0, 1\)"),
    "sum over -2": (lambda h: h - h.sum(-2), r"sums over dim -2: dim -2 is dim 0 of its input"),
    "sum over a computed dim": (
        lambda h: h - h.sum(h.dim() - 2),
        r"sums over dim sub: dim sub = 0 is dim 0 of its input \(2 dims\)",
    ),
    "cat": (lambda h: torch.cat([h, h], 0), r"torch\.cat\): concatenates along dim 0"),
    "cat by default": (lambda h: torch.cat([h, h]), r"concatenates along dim 0"),
    "cat of chunks": (lambda h: torch.cat(h.chunk(2, 1)), r"concatenates along dim 0"),
    "stack": (lambda h: torch.stack([h, h], 0), r"stacks along a new dim 0"),
    "stack by default": (lambda h: torch.stack([h, h]), r"stacks along a new dim 0"),
    "index": (lambda h: h[0] + h, r"getitem\): indexes dim 0 \(\[0\]\)"),
    "slice": (lambda h: h[1:], r"slices dim 0 \(\[1:\]\)"),
    "None": (lambda h: h[None], r"inserts a new dim 0 \(\[None\]\)"),
    "unsqueeze": (lambda h: h.unsqueeze(0), r"inserts a new dim 0 \(unsqueeze\(0\)\)"),
    "chunk": (lambda h: torch.cat(h.chunk(2), 1), r"Tensor\.chunk\): splits along dim 0"),
    "unbind": (lambda h: torch.stack(h.unbind(0), 1), r"Tensor\.unbind\): splits along dim 0"),
    "select": (lambda h: h.select(0, 1) + h, r"selects along dim 0"),
    "index_select": (
        lambda h: h.index_select(0, torch.tensor([1, 0])),
        r"index_selects along dim 0",
    ),
    "flatten": (
        lambda h: h.flatten(),
        r"Tensor\.flatten\): flattens from dim 0: it turned \(32, 8\) into \(256,\)",
    ),
    "view(-1)": (
        lambda h: h.view(-1),
        r"reshapes to \(-1,\): it turned \(32, 8\) into \(256,\), whose dim 0 is not",
    ),
    "reshape(-1)": (lambda h: h.reshape(-1), r"Tensor\.reshape\): reshapes to \(-1,\): it"),
    "view(-1, 4)": (lambda h: h.view(-1, 4), r"reshapes to \(-1, 4\): it turned"),
    "nn.Flatten(0)": (nn.Flatten(0), r"op \(nn\.Flatten\): flattens from dim 0: it turned"),
    "view(32, -1)": (lambda h: h.view(32, -1), r"reshapes to \(32, -1\): it fixes dim 0 to 32"),
    "einsum": (
        lambda h: torch.einsum("bi->i", h) + h,
        r"einsum 'bi->i' sums over the batch index 'b' \(dim 0 of its input\)",
    ),
}


_FEATURES = {
    "flatten": 256,
    "view(-1)": 256,
    "reshape(-1)": 256,
    "view(-1, 4)": 4,
    "unbind": 32,
    "chunk": 16,
    "cat of chunks": 4,
    "nn.Flatten(0)": 256,
}


@pytest.mark.parametrize("op", list(_MIXING))
def test_a_call_on_the_batch_dim_is_refused_by_name(op):
    """These ran "unchanged on every step" on the [T*B, ...] the SNN folds time into,
    mixing time steps and samples, and the conversion reported nothing."""
    from spikeflow.conversion import ConversionError

    function, says = _MIXING[op]
    net = _OnDimZero(function, _FEATURES.get(op, 8)).eval()
    with pytest.raises(ConversionError, match=says) as error:
        convert(net, X)
    assert "it would mix time steps and samples" in str(error.value)
    _, report = convert(net, X, strict=False)
    (entry,) = report.unconverted  # named by its node, with what it calls
    assert f"{entry.name} ({entry.source}): {entry.detail}" in str(error.value)
    assert entry.name in {node.name for node in torch.fx.symbolic_trace(net).graph.nodes}


_KEEPING = {
    "flatten(1)": lambda h: h.unflatten(1, (2, 4)).flatten(1),
    "torch.flatten(h, 1)": lambda h: torch.flatten(h.view(h.size(0), 2, 4), 1),
    "view(size(0), -1)": lambda h: h.view(h.size(0), 2, 4).view(h.size(0), -1),
    "reshape(shape[0], -1)": lambda h: h.reshape(h.shape[0], 2, -1).reshape(h.size()[0], -1),
    "view(-1, 8)": lambda h: h.view(-1, 2, 4).view(-1, 8),
    "view(-1) of [B, 1]": lambda h: h[:, :1].view(-1).unsqueeze(1) + h,
    "sum(1)": lambda h: h.sum(1, keepdim=True) - h,
    "mean(-1)": lambda h: h - h.mean(-1, keepdim=True),
    "mean over dims >= 1": lambda h: h.view(h.size(0), 2, 4).mean(dim=(1, 2)).unsqueeze(1) + h,
    "cat(1)": lambda h: torch.cat([h[:, :4], h[:, 4:]], 1),
    "cat(-1)": lambda h: torch.cat([h[:, :4], h[:, 4:]], dim=-1),
    "cat(-1) of chunks": lambda h: torch.cat(h.chunk(2, 1), dim=-1),
    "stack(1)": lambda h: torch.stack([h, h], 1).sum(1),
    "stack(-1)": lambda h: torch.stack([h, h], -1).sum(-1),
    "chunk(2, 1)": lambda h: torch.cat(h.chunk(2, 1)[::-1], 1),
    "index [:, 0]": lambda h: h[:, 0:1] * 2 + h,
    "index [..., :4]": lambda h: torch.cat([h[..., :4], h[..., 4:]], 1),
    "unsqueeze(1)": lambda h: h.unsqueeze(1)[:, 0],
    "nn.Flatten, nn.Unflatten": nn.Sequential(nn.Unflatten(1, (2, 4)), nn.Flatten()),
    "einsum": lambda h: torch.einsum("bi->bi", h),
    "implicit einsum": lambda h: torch.einsum("ai", h),
}


@pytest.mark.parametrize("op", list(_KEEPING))
def test_calls_that_keep_the_batch_dim_are_converted_exactly(op):
    """Batch-preserving calls stay as they were, reported as nothing (and the probes
    that checked some of them on the calibration batch are gone from the graph)."""
    from spikeflow.conversion.batchdim import BatchDimProbe

    torch.manual_seed(0)
    net = _OnDimZero(_KEEPING[op]).eval()
    snn, report = convert(net, X)
    assert [e.action for e in report.entries if e.action not in ("kept", "converted")] == []
    assert not any(isinstance(m, BatchDimProbe) for m in snn.modules())
    err, bound = _rate_error_bound(net, snn)
    assert err <= 2 * bound + 1e-5, (err, bound)  # ops that add h twice: 2·bound


def test_without_calibration_data_a_run_time_check_is_reported_unverified():
    """A QCFS network needs no data, so a dim that only a run resolves stays open: the
    report says so (it does not guess), and a constant dim 0 is still refused."""
    from spikeflow.conversion import QCFS, ConversionError

    class Net(nn.Module):
        def __init__(self, op) -> None:
            super().__init__()
            self.op, self.l1, self.act = op, nn.Linear(4, 8), QCFS(4, 2.0)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.op(self.act(self.l1(x)))

    _, report = convert(Net(lambda h: h - h.sum(-1, keepdim=True)).eval())
    (entry,) = report.by_action("unverified")
    assert entry.source == "Tensor.sum"
    assert entry.detail.startswith("sums over dim -1: whether that is dim 0 (the batch")
    assert "pass calibration_data to have it checked" in entry.detail
    _, report = convert(Net(lambda h: h - h.sum(-1, keepdim=True)).eval(), X)
    assert report.by_action("unverified") == []
    with pytest.raises(ConversionError, match=r"sums over dim 0"):
        convert(Net(lambda h: h - h.sum(0)).eval())
    with pytest.raises(ConversionError, match=r"indexes dim 0 \(\[0\]\)"):
        convert(Net(lambda h: h - h[0]).eval())  # the neuron's output: a tensor
    with pytest.raises(ConversionError, match=r"indexes dim 0 \(\[0\]\)"):
        convert(Net(lambda h: h - h.mT.mT[0]).eval())
    _, report = convert(Net(lambda h: h - h.chunk(2, 1)[0].repeat(1, 2)).eval(), strict=False)
    assert report.unconverted == []  # [0] of a tuple of chunks picks a chunk
