"""Calls on dim 0 (time folded into the batch) that the dim-0 check used to miss.

Each case here converted silently before (or, for the permutations that keep dim 0,
was refused): negative transpose dims, ``W @ x``, ``hstack``/``hsplit``/``vsplit``,
``repeat``/``expand``, and a reshape that passed its run-time check only because the
calibration batch had as many rows as the tensor had channels.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spikeflow.conversion import QCFS, ConversionError, convert

X = torch.randn(32, 4, generator=torch.Generator().manual_seed(1))
STEPS = 64


class _Op(nn.Module):
    """``l1 → relu → op → l2``; ``op(h, m)`` gets ``h`` ``[B, 8]`` and the module (its
    weights ``w`` [32, 32], ``v`` [8, 8], ``u`` [32])."""

    def __init__(self, op, features: int = 8) -> None:
        super().__init__()
        self.op = op
        self.l1, self.l2 = nn.Linear(4, 8), nn.Linear(features, 3)
        self.w = nn.Parameter(torch.randn(32, 32) / 8)
        self.v = nn.Parameter(torch.randn(8, 8) / 3)
        self.u = nn.Parameter(torch.randn(32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.l2(self.op(F.relu(self.l1(x)), self))


# op, features of its output, what the error says it does
_REFUSED = {
    "transpose(-2, -1) of 2 dims": (
        lambda h, m: h.transpose(-2, -1),
        32,
        r"transposes dims \(-2, -1\): dim -2 is dim 0 of its input \(2 dims\), so it moves",
    ),
    "transpose(-4, -3) of 4 dims": (
        lambda h, m: h.view(h.size(0), 2, 2, 2).transpose(-4, -3).flatten(2).flatten(1),
        128,
        r"transposes dims \(-4, -3\): dim -4 is dim 0 of its input \(4 dims\)",
    ),
    "transpose by a computed dim": (
        lambda h, m: h.transpose(h.dim() - 2, 1),
        32,
        r"transposes dims \(sub, 1\): dim sub = 0 is dim 0 of its input",
    ),
    "swapaxes(-1, -2)": (lambda h, m: torch.swapaxes(h, -1, -2), 32, r"moves the batch"),
    "movedim(-1, -2)": (lambda h, m: torch.movedim(h, -1, -2), 32, r"movedim of dims"),
    ".mT of 2 dims": (lambda h, m: h.mT, 32, r"transposes its last two dims \(\.mT\)"),
    "permute by a computed dim": (
        lambda h, m: h.permute(h.dim() - 1, 0),
        32,
        r"permutes to dims \(sub, 0\): dim sub = 1 is not dim 0 of its input \(2 dims\)",
    ),
    "permute(-1, -2)": (lambda h, m: h.permute(-1, -2), 32, r"moves the batch dimension"),
    "W @ x": (lambda h, m: m.w @ h, 8, r"matmul\(w, <signal>\): on a 2-dim tensor it sums over"),
    "torch.matmul(W, x)": (lambda h, m: torch.matmul(m.w, h), 8, r"on a 2-dim tensor it sums"),
    "W.matmul(x)": (lambda h, m: m.w.matmul(h), 8, r"on a 2-dim tensor it sums over its dim 0"),
    "torch.mm(W, x)": (lambda h, m: torch.mm(m.w, h), 8, r"mm\(w, <signal>\) sums over dim 0"),
    "torch.mv(W, x)": (
        lambda h, m: torch.mv(m.w, h[:, 0]).unsqueeze(1) * h,
        8,
        r"mv\(w, <signal>\) sums over dim 0 of its right operand",
    ),
    "x @ u of 1 dim": (
        lambda h, m: (h[:, 0] @ m.u) * h,
        8,
        r"matmul\(<signal>, u\): on a 1-dim tensor it sums over its dim 0",
    ),
    "vstack": (lambda h, m: torch.vstack([h, h]), 8, r"vstack joins along dim 0"),
    "hstack of 1 dim": (
        lambda h, m: torch.hstack([h[:, 0], h[:, 1]]).view(h.size(0), 2),
        2,
        r"hstack: on a 1-dim tensor it joins along dim 0",
    ),
    "hsplit of 1 dim": (
        lambda h, m: torch.hsplit(h[:, 0], 2)[0].unsqueeze(1),
        1,
        r"hsplit: on a 1-dim tensor it splits along dim 0",
    ),
    "vsplit": (lambda h, m: torch.vsplit(h, 2)[0], 8, r"vsplit splits along dim 0"),
    "dstack of 1 dim": (
        lambda h, m: torch.dstack([h[:, 0], h[:, 1]]).flatten(1),
        64,
        r"dstack: on a 1-dim tensor it makes it \[1, B, 1\]",
    ),
    "repeat(2, 1)": (lambda h, m: h.repeat(2, 1), 8, r"repeat\(2, 1\) repeats dim 0 2 times"),
    "repeat(1, 1, 1)": (
        lambda h, m: h.repeat(1, 1, 1).flatten(1),
        256,
        r"repeat\(1, 1, 1\): it turned \(32, 8\) into \(1, 32, 8\), whose dim 0 is not",
    ),
    "expand(2, -1, -1)": (
        lambda h, m: h.expand(2, -1, -1).flatten(1),
        256,
        r"expand\(2, -1, -1\) fixes dim 0 to 2",
    ),
    "expand(size(0), -1, -1)": (
        lambda h, m: h.expand(h.size(0), -1, -1).sum(1),
        8,
        r"expand\(size, -1, -1\): it turned \(32, 8\) into \(32, 32, 8\)",
    ),
    "tile((2, 1))": (lambda h, m: h.tile((2, 1)), 8, r"tile\(2, 1\): it turned \(32, 8\) into"),
    "repeat_interleave(2, 0)": (
        lambda h, m: h.repeat_interleave(2, dim=0),
        8,
        r"repeats along dim 0",
    ),
}


@pytest.mark.parametrize("op", list(_REFUSED))
def test_a_call_on_dim_0_that_was_missed_is_refused_by_name(op):
    function, features, says = _REFUSED[op]
    net = _Op(function, features).eval()
    with pytest.raises(ConversionError, match=says) as error:
        convert(net, X)
    assert "moves the batch dimension" in str(error.value) or "mix time steps" in str(error.value)


_KEPT = {
    "transpose(-2, -1) of 3 dims": (
        lambda h, m: h.unsqueeze(-1).transpose(-2, -1).flatten(1),
        8,
    ),
    "transpose by a computed dim >= 1": (
        lambda h, m: h.unsqueeze(-1).transpose(h.dim() - 1, 2).flatten(1),
        8,
    ),
    "permute(-3, -1, -2)": (lambda h, m: h.unsqueeze(-1).permute(-3, -1, -2).flatten(1), 8),
    "permute by a computed dim": (
        lambda h, m: h.unsqueeze(-1).permute(h.dim() - 2, 2, 1).flatten(1),
        8,
    ),
    ".mT of 3 dims": (lambda h, m: h.unsqueeze(-1).mT.flatten(1), 8),
    "x @ V": (lambda h, m: h @ m.v, 8),
    "V @ x of 3 dims": (lambda h, m: (m.v @ h.unsqueeze(-1)).flatten(1), 8),
    "hstack of 2 dims": (lambda h, m: torch.hstack([h[:, 4:], h[:, :4]]), 8),
    "hsplit of 2 dims": (lambda h, m: torch.hsplit(h, 2)[1].repeat(1, 2), 8),
    "repeat(1, 2)": (lambda h, m: h.repeat(1, 2), 16),
    "expand(-1, 2, -1)": (lambda h, m: h.unsqueeze(1).expand(-1, 2, -1).flatten(1), 16),
    "tile((2,))": (lambda h, m: h.tile((2,)), 16),
    "repeat_interleave(2, 1)": (lambda h, m: h.repeat_interleave(2, dim=1), 16),
}


@pytest.mark.parametrize("op", list(_KEPT))
def test_the_same_calls_off_dim_0_convert_exactly(op):
    """The batch-keeping forms stay (the refusals above are not blanket ones): the SNN's
    rate is within the IF neurons' θ/T error of the ANN, propagated through ``l2``."""
    function, features = _KEPT[op]
    torch.manual_seed(0)
    net = _Op(function, features).eval()
    snn, report = convert(net, X)
    assert not report.unconverted, report
    (theta,) = [float(m.v_threshold) for m in snn.modules() if hasattr(m, "v_threshold")]
    with torch.no_grad():
        err = float((snn.rate(X, STEPS) - net(X)).abs().max())
    v = net.v.detach().abs()
    gain = float(net.l2.weight.detach().abs().sum(1).max()) * max(
        1.0, float(v.sum(0).max()), float(v.sum(1).max())
    )
    assert err <= gain * theta / STEPS + 1e-5, (err, gain * theta / STEPS)


def test_a_permutation_is_resolved_by_its_length_without_a_run():
    """``permute(-1, -2)`` moves dim 0 of a 2-dim tensor and ``permute(-2, -1)`` keeps
    it: the permutation's length is the rank, so no calibration data is needed (a QCFS
    network). A negative transpose dim stays open without data: unverified."""

    class Net(nn.Module):
        def __init__(self, op) -> None:
            super().__init__()
            self.op, self.l1, self.act = op, nn.Linear(4, 8), QCFS(4, 2.0)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.op(self.act(self.l1(x)))

    with pytest.raises(ConversionError, match="moves the batch dimension"):
        convert(Net(lambda h: h.permute(-1, -2)).eval())
    _, report = convert(Net(lambda h: h.permute(-2, -1)).eval())
    assert report.by_action("unverified") == [] and not report.unconverted
    _, report = convert(Net(lambda h: h.transpose(-2, -1)).eval())
    (entry,) = report.by_action("unverified")
    assert entry.detail.startswith("transposes dims (-2, -1): whether it moves dim 0")
    assert "pass calibration_data" in entry.detail


class _ViewByChannels(nn.Module):
    """``h.view(h.size(1), -1)``: it keeps the batch only where B = channels."""

    def __init__(self) -> None:
        super().__init__()
        self.l1, self.l2 = nn.Linear(4, 8), nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.l1(x))
        return self.l2(h.view(h.size(1), -1))


def test_a_reshape_that_keeps_dim_0_only_at_the_calibration_batch_size_is_refused():
    """With 8 calibration rows and 8 channels, ``view(8, -1)`` turned (8, 8) into (8, 8)
    and the run-time check passed; a second run on another batch size tells them apart."""
    net = _ViewByChannels().eval()
    with pytest.raises(ConversionError, match=r"reshapes to \(size, -1\): it turned") as error:
        convert(net, torch.randn(8, 4))
    assert "(4, 8) into (8, 4)" in str(error.value)
    assert "on 4 rows made from the first calibration batch of 8" in str(error.value)
    (entry,) = convert(net, torch.randn(8, 4), strict=False).report.unconverted
    assert entry.name == "view"  # one entry: the failing forward adds none


@pytest.mark.parametrize("rows", [1, 8])
def test_the_run_on_a_second_batch_size_only_checks(rows):
    """The run on the other batch size only checks: a probed reshape (``view(-1, 8)``)
    leaves the percentile thresholds exactly as a decided one (``view(size(0), 8)``)
    does (one row: the other batch is that row twice)."""
    torch.manual_seed(0)
    data = torch.randn(rows, 4) * 3
    probed = _Op(lambda h, m: F.relu(h.view(-1, 8) - 0.1)).eval()
    decided = _Op(lambda h, m: F.relu(h.view(h.size(0), 8) - 0.1)).eval()
    decided.load_state_dict(probed.state_dict())
    thresholds = []
    for net in (probed, decided):
        snn, report = convert(net, data, norm="percentile", percentile=90.0)
        assert len(report.converted) == 2 and report.by_action("unverified") == []
        thresholds.append(
            [float(m.v_threshold) for m in snn.modules() if hasattr(m, "v_threshold")]
        )
    assert thresholds[0] == thresholds[1]


class _Untraced(nn.Module):
    """A forward torch.fx cannot trace (data-dependent control flow) and its call."""

    def __init__(self, call) -> None:
        super().__init__()
        self.call = call
        self.l1, self.act, self.l2 = nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.l1(x))
        if bool((x == x).all()):  # a branch on values: torch.fx cannot trace it
            h = self.call(h)
        return self.l2(h)


def test_an_untraced_forward_s_calls_on_dims_are_reported_unverified():
    """The dim-0 check reads a traced graph; the calls an untraced forward made (here
    ``x - x.mean(0)``, which mixes time steps in the SNN) went unreported."""
    net = _Untraced(lambda h: h - torch.cat([h[:16], h[16:]]).mean(0)).eval()
    _, report = convert(net, X)
    assert report.by_action("untraced")[0].name == "<root>"
    (entry,) = report.by_action("unverified")
    assert entry.name == "<root> (forward)" and entry.source == "forward"
    assert entry.detail.startswith(
        "calls Tensor.__getitem__, torch.cat, Tensor.mean in an untraced forward: whether "
        "they keep dim 0 the batch (into which the SNN folds time) is not checked there"
    )
    _, report = convert(_Untraced(lambda h: 2 * h - 1).eval(), X)
    assert report.by_action("unverified") == []  # no call that may act on dim 0
