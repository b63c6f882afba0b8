"""SpikingJelly's output helpers in ``spikeflow.functional`` (``spikeflow.output_coding``):
``first_spike_index``, ``redundant_one_hot``, ``kernel_dot_product``,
``spike_similar_loss`` and ``set_threshold_margin``.

Each against hand-computed values or a plain loop written from its formula, against
SpikingJelly 2.0 in float64 (outputs and gradients; its time-last layouts through the
``dim`` / ``batch_dim`` arguments), float64 gradcheck where differentiable, and its errors.
"""

from __future__ import annotations

import math

import pytest
import torch

from sj_checks import F64, TIGHT, sj
from spikeflow import functional as F
from spikeflow import neurons
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError

# -- first_spike_index ---------------------------------------------------------------------


def test_first_spike_index_by_hand_and_by_loop():
    s = torch.tensor([[0.0, 1.0, 0.0], [1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])  # [T=3, N=3]
    want = torch.tensor([[False, True, False], [True, False, False], [False, False, False]])
    assert torch.equal(F.first_spike_index(s), want)
    # a loop over neurons, any dim; graded values: the first nonzero is the first spike
    x = (torch.rand(2, 9, 4, 5) > 0.7) * torch.rand(2, 9, 4, 5) * 3  # time at dim 1
    got = F.first_spike_index(x, dim=1)
    want = torch.zeros_like(got)
    for b in range(2):
        for i in range(4):
            for j in range(5):
                steps = x[b, :, i, j].nonzero()
                if len(steps):
                    want[b, steps[0, 0], i, j] = True
    assert torch.equal(got, want) and want.sum() > 20
    assert torch.equal(F.first_spike_index(x.movedim(1, -1), dim=-1), want.movedim(1, -1))


def test_first_spike_index_equals_spikingjelly():
    functional = sj("functional")
    spikes = (torch.rand(6, 10, 16) > 0.8).to(F64)  # SpikingJelly: [*, T]
    want = functional.first_spike_index(spikes)
    assert torch.equal(F.first_spike_index(spikes, dim=-1), want)
    # time-major, spikeflow's default
    assert torch.equal(F.first_spike_index(spikes.movedim(-1, 0)), want.movedim(-1, 0))
    assert want.any(dim=-1).sum() > 40  # most neurons fired


def test_first_spike_index_errors():
    with pytest.raises(ShapeError, match="dim=2"):
        F.first_spike_index(torch.zeros(3, 4), dim=2)
    with pytest.raises(DTypeError, match="tensor"):
        F.first_spike_index([0.0, 1.0])


# -- redundant_one_hot ---------------------------------------------------------------------


def test_redundant_one_hot_by_hand_and_against_spikingjelly(float64):
    got = F.redundant_one_hot(torch.tensor([0, 2]), num_classes=3, n=2)
    assert got.tolist() == [[1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 1, 1]] and got.dtype == F64
    functional = sj("functional")
    labels = torch.randint(0, 10, (32,))
    want = functional.redundant_one_hot(labels, 10, 4)
    got = F.redundant_one_hot(labels, 10, 4)
    assert got.dtype == want.dtype and torch.equal(got, want)
    # VotingLayer(n) reads class c from the same neurons
    from spikeflow.layers import VotingLayer

    assert torch.equal(VotingLayer(4)(got).argmax(-1), labels)
    assert F.redundant_one_hot(labels, 10, 1, dtype=torch.float16).dtype == torch.float16


def test_redundant_one_hot_errors():
    with pytest.raises(DTypeError, match="integer"):
        F.redundant_one_hot(torch.tensor([0.0, 1.0]), 3, 2)
    with pytest.raises(ConfigurationError, match=r"\[0, 2\].*\[0, 3\]"):
        F.redundant_one_hot(torch.tensor([0, 3]), 3, 2)
    with pytest.raises(ConfigurationError, match="n must be an integer >= 1"):
        F.redundant_one_hot(torch.tensor([0]), 3, 0)


# -- kernel_dot_product --------------------------------------------------------------------

KERNEL_CASES = [("linear", None), ("polynomial", 3), ("sigmoid", 0.7), ("gaussian", 1.5)]


def _kernel_loop(x, y, kernel, p):
    out = torch.empty(x.shape[0], y.shape[0], dtype=x.dtype)
    for i in range(x.shape[0]):
        for j in range(y.shape[0]):
            dot = (x[i] * y[j]).sum()
            if kernel == "linear":
                out[i, j] = dot
            elif kernel == "polynomial":
                out[i, j] = dot**p
            elif kernel == "sigmoid":
                out[i, j] = 1 / (1 + torch.exp(-p * dot))
            else:
                out[i, j] = torch.exp(-((x[i] - y[j]) ** 2).sum() / (2 * p * p))
    return out


@pytest.mark.parametrize(("kernel", "param"), KERNEL_CASES)
def test_kernel_dot_product_against_a_loop_and_spikingjelly(kernel, param):
    x, y = torch.rand(5, 7, dtype=F64), torch.rand(5, 7, dtype=F64)
    got = F.kernel_dot_product(x, y, kernel, param)
    torch.testing.assert_close(got, _kernel_loop(x, y, kernel, param), **TIGHT)
    # rows of x and y may differ in number (SpikingJelly's Gaussian needs N = K)
    x3 = torch.rand(3, 7, dtype=F64)
    torch.testing.assert_close(
        F.kernel_dot_product(x3, y, kernel, param), _kernel_loop(x3, y, kernel, param), **TIGHT
    )
    functional = sj("functional")
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    y1, y2 = y.clone().requires_grad_(), y.clone().requires_grad_()
    args = () if param is None else (param,)
    want = functional.kernel_dot_product(x1, y1, kernel, *args)
    got = F.kernel_dot_product(x2, y2, kernel, *args)
    torch.testing.assert_close(got, want, **TIGHT)
    g = torch.randn_like(want)
    for a, b in zip(
        torch.autograd.grad((got * g).sum(), [x2, y2]),
        torch.autograd.grad((want * g).sum(), [x1, y1]),
    ):
        assert a.abs().sum() > 0
        torch.testing.assert_close(a, b, **TIGHT)


@pytest.mark.parametrize(("kernel", "param"), KERNEL_CASES)
def test_kernel_dot_product_gradcheck(kernel, param):
    x = torch.rand(4, 6, dtype=F64, requires_grad=True)
    y = torch.rand(3, 6, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: F.kernel_dot_product(a, b, kernel, param), (x, y))


def test_kernel_dot_product_errors():
    x = torch.rand(3, 4)
    with pytest.raises(ConfigurationError, match="'linear', 'polynomial'"):
        F.kernel_dot_product(x, x, "rbf")
    with pytest.raises(ConfigurationError, match="needs kernel_param \\(sigma\\)"):
        F.kernel_dot_product(x, x, "gaussian")
    with pytest.raises(ConfigurationError, match="sigma"):
        F.kernel_dot_product(x, x, "gaussian", 0.0)
    with pytest.raises(ShapeError, match=r"\(3, 4\) and \(3, 5\)"):
        F.kernel_dot_product(x, torch.rand(3, 5))
    with pytest.raises(DTypeError, match="floating-point"):
        F.kernel_dot_product(x, torch.ones(3, 4, dtype=torch.long))
    with pytest.raises(DTypeError, match=r"float32 on cpu and torch\.float64"):  # was mm's
        F.kernel_dot_product(x, x.double())


# -- spike_similar_loss --------------------------------------------------------------------


def _labels(n=6, classes=4):
    labels = torch.zeros(n, classes)
    labels[torch.arange(n), torch.arange(n) % classes] = 1
    labels[0, classes - 1] = 1  # a multi-label sample, similar to two classes
    return labels


def _similar_loss_loop(spikes_sj, labels, kernel, loss, p):
    """The loss from its definition, pair by pair, on SpikingJelly's layout [N, M, T]."""
    v = spikes_sj.flatten(1)
    n = v.shape[0]
    total = 0.0
    for i in range(n):
        for j in range(n):
            sim = _kernel_loop(v[i : i + 1], v[j : j + 1], kernel, p)[0, 0]
            if kernel == "linear":
                sim = sim / (v[i].norm() * v[j].norm() + 1e-8)
            q = float((labels[i] * labels[j]).sum() > 0)
            if loss == "mse":
                total = total + (sim - q) ** 2
            elif loss == "l1":
                total = total + (sim - q).abs()
            else:
                # torch's BCE clamps the logs at -100 (a Gaussian kernel is 1 at i = j)
                log_p, log_1mp = (torch.log(v).clamp_min(-100) for v in (sim, 1 - sim))
                total = total - (q * log_p + (1 - q) * log_1mp)
    return total / n**2


@pytest.mark.parametrize(
    ("kernel", "param", "loss"),
    [
        ("linear", None, "mse"),
        ("linear", None, "l1"),
        ("linear", None, "bce"),
        ("sigmoid", 0.2, "mse"),
        ("sigmoid", 0.2, "bce"),
        ("gaussian", 3.0, "mse"),
        ("gaussian", 3.0, "l1"),
        ("gaussian", 3.0, "bce"),
    ],
)
def test_spike_similar_loss_against_a_loop_and_spikingjelly(kernel, param, loss):
    functional = sj("functional")
    labels = _labels()
    rates = torch.rand(6, 5, 8, dtype=F64)  # [N, M, T], graded (spike rates): gradients
    args = () if param is None else (param,)
    want_loop = _similar_loss_loop(rates, labels, kernel, loss, param)
    s_sj, s_ours, s_major = (rates.clone().requires_grad_() for _ in range(3))
    rtol = TIGHT
    if loss == "bce":  # SpikingJelly casts the labels to float32: its BCE needs float32
        with pytest.raises(RuntimeError, match="dtype"):
            functional.spike_similar_loss(s_sj, labels, kernel, loss, *args)
        s_sj = rates.float().requires_grad_()
        rtol = dict(rtol=1e-5, atol=1e-6)
    want = functional.spike_similar_loss(s_sj, labels, kernel, loss, *args)
    got = F.spike_similar_loss(s_ours, labels, kernel, loss, *args, batch_dim=0)
    major = F.spike_similar_loss(s_major.permute(2, 0, 1), labels, kernel, loss, *args)
    torch.testing.assert_close(got, want_loop.to(got.dtype), **TIGHT)
    torch.testing.assert_close(got, want.to(F64), **rtol)
    torch.testing.assert_close(major, got, **TIGHT)  # time-major [T, N, M], the default
    (g_sj,) = torch.autograd.grad(want, [s_sj])
    (g_ours,) = torch.autograd.grad(got, [s_ours])
    (g_major,) = torch.autograd.grad(major, [s_major])
    assert g_ours.abs().sum() > 0
    torch.testing.assert_close(g_ours, g_sj.to(F64), **rtol)
    torch.testing.assert_close(g_major, g_ours, **TIGHT)


def test_spike_similar_loss_by_hand_and_gradcheck():
    # two samples with the same label and spike trains: cosine 1, target 1, loss 0;
    # orthogonal trains of different labels: cosine 0, target 0
    spikes = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]], dtype=F64)  # [T=1, N=3, M=2]
    labels = torch.tensor([[1, 0], [1, 0], [0, 1]])
    assert F.spike_similar_loss(spikes, labels).item() == pytest.approx(0.0, abs=1e-15)
    labels = torch.tensor([[1, 0], [0, 1], [0, 1]])  # samples 0, 1: same trains, other labels
    # pairs (0, 1), (1, 0): cosine 1, target 0; (1, 2), (2, 1): cosine 0, target 1
    loss = F.spike_similar_loss(spikes, labels).item()  # (the cosine is 1 / (1 + 1e-8))
    assert loss == pytest.approx(4 / 9, rel=1e-7)
    x = torch.rand(3, 4, 5, dtype=F64, requires_grad=True)
    y = _labels(4, 3)
    for kernel, param in [("linear", None), ("gaussian", 2.0)]:
        assert torch.autograd.gradcheck(
            lambda s, k=kernel, p=param: F.spike_similar_loss(s, y, k, "mse", p), (x,)
        )


def test_spike_similar_loss_errors():
    spikes = torch.rand(8, 6, 5)  # [T, N, M]
    with pytest.raises(ShapeError, match="N = 6 samples"):
        F.spike_similar_loss(spikes, _labels(5))
    with pytest.raises(ShapeError, match="N = 8"):  # SpikingJelly's layout without batch_dim
        F.spike_similar_loss(spikes, _labels(6), batch_dim=0)
    with pytest.raises(ConfigurationError, match="loss_type"):
        F.spike_similar_loss(spikes, _labels(), loss_type="ce")
    with pytest.raises(ConfigurationError, match="needs kernel_param"):
        F.spike_similar_loss(spikes, _labels(), "sigmoid")
    with pytest.raises(ShapeError, match="batch_dim=3"):
        F.spike_similar_loss(spikes, _labels(), batch_dim=3)
    with pytest.raises(ShapeError, match="no samples"):  # was reshape's RuntimeError
        F.spike_similar_loss(spikes[:, :0], torch.zeros(0, 4))


# -- set_threshold_margin ------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["torch", "auto"])
def test_set_threshold_margin_equals_spikingjelly(float64, backend):
    sj_neuron = pytest.importorskip("spikingjelly.activation_based.neuron")
    functional = sj("functional")
    labels = torch.nn.functional.one_hot(torch.tensor([0, 2, 1, 3, 2]), 4)
    theirs = sj_neuron.LIFNode(tau=2.0, step_mode="m")
    ours = neurons.LIFNode(tau=2.0, backend=backend)
    for node, fn in ((theirs, functional.set_threshold_margin), (ours, F.set_threshold_margin)):
        fn(node, labels, eval_threshold=1.0, threshold0=0.8, threshold1=1.3)
    assert ours.v_threshold.shape == (5, 4) and ours.v_threshold.dtype == F64
    torch.testing.assert_close(ours.v_threshold, theirs.v_threshold)
    assert ours.v_threshold[1, 2] == 1.3 and ours.v_threshold[1, 0] == 0.8
    x = torch.rand(12, 5, 4) * 1.8
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    want, got = theirs(x1), ours(x2)
    assert torch.equal(got, want) and 0.1 < got.mean() < 0.9
    # the margin changed the spikes: the right class fires less than with threshold 1
    assert not torch.equal(got, neurons.LIFNode(tau=2.0)(x))
    g = torch.randn_like(want)
    torch.testing.assert_close(
        torch.autograd.grad((got * g).sum(), x2)[0], torch.autograd.grad((want * g).sum(), x1)[0]
    )
    ours.eval()
    F.set_threshold_margin(ours, labels, eval_threshold=0.95)
    assert ours.v_threshold == 0.95
    assert torch.equal(ours(x), neurons.LIFNode(tau=2.0, v_threshold=0.95)(x))


@pytest.mark.parametrize("label_dtype", [torch.float64, torch.bfloat16])
def test_set_threshold_margin_does_not_take_the_labels_dtype(label_dtype):
    # float64 labels (numpy's) made a float32 network's spikes float64; bfloat16 labels
    # rounded the thresholds to 0.8984 and 1.1016
    labels = torch.nn.functional.one_hot(torch.tensor([0, 2]), 3).to(label_dtype)
    node = neurons.LIFNode(tau=2.0, backend="torch")
    F.set_threshold_margin(node, labels)
    assert node.v_threshold.dtype == torch.float32
    assert node.v_threshold[0, 0].item() == torch.tensor(1.1).item()
    assert node.v_threshold[0, 1].item() == torch.tensor(0.9).item()
    assert node(torch.rand(3, 2, 3)).dtype == torch.float32


def test_set_threshold_margin_by_hand():
    # IF neuron, one step: input 1.0 fires under threshold0 = 0.9 but not threshold1 = 1.1
    node = neurons.IFNode()
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    F.set_threshold_margin(node, labels)
    out = node(torch.ones(1, 2, 2))
    assert out[0].tolist() == [[0.0, 1.0], [1.0, 0.0]]


def test_set_threshold_margin_errors():
    labels = torch.eye(3)
    with pytest.raises(ConfigurationError, match="parameter"):
        F.set_threshold_margin(neurons.LIFNode(learnable_threshold=True), labels)
    with pytest.raises(ConfigurationError, match="buffer"):
        F.set_threshold_margin(neurons.LIFNode(v_threshold=torch.ones(3)), labels)
    with pytest.raises(ConfigurationError, match="spikeflow neuron"):
        F.set_threshold_margin(torch.nn.ReLU(), labels)
    with pytest.raises(ConfigurationError, match=r"threshold0 \(0.0\) must be above"):
        F.set_threshold_margin(neurons.LIFNode(), labels, threshold0=0.0)
    with pytest.raises(ConfigurationError, match="threshold1"):
        F.set_threshold_margin(neurons.LIFNode(), labels, threshold1=math.nan)
    with pytest.raises(DTypeError, match="label_one_hot"):
        F.set_threshold_margin(neurons.LIFNode(), [[1, 0]])
