"""snnTorch 1.0's ``LeakyParallel``, ``StateLeaky``, ``LinearLeaky`` and ``GradedSpikes``
as ``neurons.LeakyParallel``, ``neurons.StateLeakyNode``, ``neurons.LinearLeaky`` and
``layers.GradedSpikes``.

Spikes, membranes and float64 gradients (input, weights, ``W_hh``'s diagonal, ``tau``,
threshold) equal to snnTorch's given its weights (its ``state_dict`` loaded by name);
the defaults in float32 with snnTorch's own surrogate; hand-computed membranes (the
ReLU's clip, ``exp(-(1 - β))`` per step, the truncated filter); ``W_hh`` diagonal from
``beta`` and kept diagonal in training; float64 gradcheck of the filter; the errors.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from snntorch_checks import atan64, f64
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.layers import GradedSpikes
from spikeflow.neurons import LeakyParallel, LinearLeaky, StateLeakyNode
from spikeflow.neurons.snntorch_parallel import causal_exponential_filter

F64 = torch.float64
snn = pytest.importorskip("snntorch", reason="snnTorch is not installed")


def _input(shape, scale=2.0, seed=1):
    torch.manual_seed(seed)
    return (torch.rand(*shape, dtype=F64) * scale - 0.2).requires_grad_()


def _same_grads(loss, loss_ref, ours, theirs):
    got = torch.autograd.grad(loss, ours)
    want = torch.autograd.grad(loss_ref, theirs)
    for i, (a, b) in enumerate(zip(got, want)):
        assert b.abs().sum() > 0, f"gradient {i} is zero"
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10, msg=f"gradient {i}")


# -- LeakyParallel ---------------------------------------------------------------------------


@pytest.mark.parametrize("weight_hh_enable", [False, True])
def test_leaky_parallel_equals_snntorch(weight_hh_enable):
    torch.manual_seed(0)
    dense = weight_hh_enable
    theirs = snn.LeakyParallel(4, 5, beta=0.7, learn_beta=True, learn_threshold=True,
                               spike_grad=atan64, weight_hh_enable=dense).double()  # fmt: skip
    ours = LeakyParallel(4, 5, beta=0.7, learn_beta=True, learn_threshold=True,
                         weight_hh_enable=dense, store_v_seq=True).double()  # fmt: skip
    ours.load_state_dict(theirs.state_dict())
    x = _input((7, 3, 4))
    want = theirs(x)
    xx = x.detach().clone().requires_grad_()
    got = ours(xx)
    assert torch.equal(got, want) and 0.05 < want.mean().item() < 0.9
    torch.testing.assert_close(ours.v_seq, theirs.rnn(x)[0], atol=0, rtol=0)
    assert bool((ours.v_seq == 0).any())  # the ReLU clipped some membranes
    g = torch.randn_like(want)
    names = ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
    _same_grads(
        (got * g).sum(), (want * g).sum(),
        [xx, ours.threshold, *(getattr(ours.rnn, n) for n in names)],
        [x, theirs.threshold, *(getattr(theirs.rnn, n) for n in names)],
    )  # fmt: skip
    off_diagonal = ~torch.eye(5, dtype=torch.bool)
    weight = ours.rnn.weight_hh_l0
    grad = torch.autograd.grad(ours(xx).sum(), weight)[0]
    assert bool((grad[off_diagonal] != 0).any()) == weight_hh_enable
    assert bool((weight[off_diagonal] != 0).any()) == weight_hh_enable


def test_leaky_parallel_defaults_are_snntorchs_in_float32():
    torch.manual_seed(0)
    theirs = snn.LeakyParallel(3, 4)  # random diagonal W_hh, frozen; its own ATan
    ours = LeakyParallel(3, 4)
    ours.load_state_dict(theirs.state_dict())
    assert not ours.rnn.weight_hh_l0.requires_grad and ours.beta is None
    x = (torch.rand(6, 2, 3) * 10).requires_grad_()
    want, got = theirs(x), ours(x)
    assert torch.equal(got, want) and 0.05 < want.mean().item() < 0.9
    a = torch.autograd.grad(got.sum(), [x, ours.rnn.weight_ih_l0])
    b = torch.autograd.grad(want.sum(), [x, theirs.rnn.weight_ih_l0])
    for u, w in zip(a, b):
        torch.testing.assert_close(u, w)


def test_leaky_parallel_by_hand():
    # W_ih = I, no bias: U[t] = ReLU(X[t] + β U[t-1]), β per neuron on the diagonal.
    node = LeakyParallel(2, 2, beta=f64([0.5, 0.25]), bias=False, store_v_seq=True).double()
    assert torch.equal(node.rnn.weight_hh_l0, torch.diag(f64([0.5, 0.25])))
    with torch.no_grad():
        node.rnn.weight_ih_l0.copy_(torch.eye(2))
    x = torch.tensor([[[1.0, 2.0]], [[0.75, -3.0]], [[0.0, 0.5]]], dtype=F64)
    spikes = node(x)
    want = [[1.0, 2.0], [1.25, 0.0], [0.625, 0.5]]  # 0.5 - 3 < 0: clipped to 0
    assert node.v_seq.view(3, 2).tolist() == want
    assert spikes.view(3, 2).tolist() == [[0, 1], [1, 0], [0, 0]]  # fires on U > 1
    assert LeakyParallel(2, 3, beta=0.5).rnn.weight_hh_l0.equal(0.5 * torch.eye(3))


@pytest.mark.parametrize("copy_of", ["deepcopy", "pickle"])
def test_leaky_parallel_copies_keep_w_hh_diagonal_in_training(copy_of):
    """The off-diagonal gradient of a learnt W_hh is masked in a copied layer too (an EMA
    model, a best-epoch copy, torch.save of the module): one step of the copy leaves
    W_hh diagonal with its diagonal moved."""
    import copy
    import pickle

    torch.manual_seed(0)
    layer = LeakyParallel(3, 4, beta=0.5, learn_beta=True)
    twin = copy.deepcopy(layer) if copy_of == "deepcopy" else pickle.loads(pickle.dumps(layer))
    twin.rnn(_input((6, 2, 3), 3.0).float())[0].sum().backward()
    grad = twin.rnn.weight_hh_l0.grad
    assert grad.diagonal().abs().sum() > 0 and grad.abs().sum() > 0
    assert torch.equal(grad, torch.diag(grad.diagonal()))
    frozen = copy.deepcopy(LeakyParallel(3, 4, beta=0.5))  # nothing to mask
    assert not frozen.rnn.weight_hh_l0.requires_grad


# -- StateLeaky, LinearLeaky -----------------------------------------------------------------


@pytest.mark.parametrize("truncation", [None, 3])
def test_state_leaky_equals_snntorch(truncation):
    beta = f64([0.9, 0.5, 0.2])
    theirs = snn.StateLeaky(beta=beta, channels=3, learn_beta=True, learn_threshold=True,
                            threshold=f64(0.8), spike_grad=atan64,
                            kernel_truncation_steps=truncation)  # fmt: skip
    theirs.graded_spikes_factor = f64(1.0)
    ours = StateLeakyNode(beta, 3, learn_beta=True, learn_threshold=True, store_v_seq=True,
                          kernel_truncation_steps=truncation).double()  # fmt: skip
    ours.load_state_dict(theirs.state_dict())  # its beta, reset_mechanism_val: dropped
    x = _input((9, 2, 3), 1.0)
    spk, mem = theirs(x)
    xx = x.detach().clone().requires_grad_()
    got = ours(xx)
    assert torch.equal(got, spk) and 0.05 < spk.mean().item() < 0.9
    torch.testing.assert_close(ours.v_seq, mem, atol=1e-14, rtol=0)
    g = torch.randn_like(spk)
    _same_grads((got * g).sum() + ours.v_seq.sum(), (spk * g).sum() + mem.sum(),
                [xx, ours.tau, ours.threshold], [x, theirs.tau, theirs.threshold])  # fmt: skip
    torch.testing.assert_close(ours.beta, beta)


def test_state_leaky_by_hand_and_snntorchs_double_factor():
    # beta 1 - ln 2: the leak per step is exp(-(1 - β)) = 1/2 (not β); truncated to 2 taps.
    node = StateLeakyNode(1 - math.log(2), 1, kernel_truncation_steps=2).double()
    x = torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=F64).view(4, 1, 1)
    torch.testing.assert_close(node.membrane(x).view(-1), f64([1.0, 1.5, 0.5, 0.0]))
    full = StateLeakyNode(1 - math.log(2), 1).double().membrane(x).view(-1)
    torch.testing.assert_close(full, f64([1.0, 1.5, 0.75, 0.375]))
    # graded_spikes_factor 2: snnTorch 1.0 scales by it twice (fire() and forward()).
    ours = StateLeakyNode(0.5, 1, graded_spikes_factor=2.0)
    theirs = snn.StateLeaky(beta=0.5, channels=1, graded_spikes_factor=2.0)
    x = torch.full((2, 1, 1), 3.0)
    assert ours(x).view(-1).tolist() == [2.0, 2.0] and theirs(x)[0].view(-1).tolist() == [4, 4]


def test_linear_leaky_equals_snntorch():
    torch.manual_seed(0)
    theirs = snn.LinearLeaky(beta=0.8, in_features=4, out_features=3, spike_grad=atan64,
                             threshold=-1.0, kernel_truncation_steps=4).double()  # fmt: skip
    ours = LinearLeaky(0.8, 4, 3, threshold=-1.0, kernel_truncation_steps=4).double()
    ours.load_state_dict(theirs.state_dict())
    x = _input((6, 2, 4), 1.0)
    spk, mem = theirs(x)
    xx = x.detach().clone().requires_grad_()
    got = ours(xx)
    assert torch.equal(got, spk) and 0.05 < spk.mean().item() < 0.9
    torch.testing.assert_close(ours.membrane(xx), mem, atol=1e-14, rtol=0)
    g = torch.randn_like(spk)
    _same_grads((got * g).sum(), (spk * g).sum(), [xx, ours.linear.weight, ours.linear.bias],
                [x, theirs.linear.weight, theirs.linear.bias])  # fmt: skip


def test_filter_gradcheck():
    x = _input((4, 1, 2), 1.0)
    tau = torch.tensor([2.0, 1.5], dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda a, t: causal_exponential_filter(a, t, 3), (x, tau), fast_mode=True
    )


def test_filter_in_the_inputs_dtype_by_hand():
    """A float32 τ (a StateLeakyNode's default buffer) filters a float64 input in float64
    (U[t] = Σ_k exp(-k/τ) x[t-k] written out); τ's gradient flows through the cast."""
    x = _input((4, 2, 3), 1.0)
    tau = torch.tensor(2.0, requires_grad=True)
    got = causal_exponential_filter(x, tau, 2)
    decay = math.exp(-1 / 2.0)
    want = x.clone()
    want[1:] += decay * x[:-1]
    assert got.dtype == F64
    torch.testing.assert_close(got, want, atol=1e-15, rtol=0)
    node = StateLeakyNode(0.5, 3, learn_beta=True)  # float32 tau
    node.membrane(x).sum().backward()
    assert node.tau.grad is not None and node.tau.grad.dtype == torch.float32


def test_device_places_every_buffer_with_the_weights():
    """``device=`` (snnTorch's argument) puts the per-neuron threshold, factor and tau
    where the RNN's or Linear's weights are (the meta device stands for an
    accelerator: a buffer left on the CPU fails the call there, "Tensor on device cpu is
    not on the expected device"; the call itself is not run here, as the first meta
    convolution of a process loads its meta kernels, seconds)."""
    per_neuron = {"threshold": torch.full((3,), 0.9), "graded_spikes_factor": torch.ones(3)}
    layers = (  # (a dense W_hh: making it diagonal on meta loads those kernels too)
        LeakyParallel(4, 3, weight_hh_enable=True, device="meta", **per_neuron),
        LinearLeaky(torch.full((3,), 0.8), 4, 3, device="meta", **per_neuron),
    )
    for layer in layers:
        assert {t.device.type for t in (*layer.parameters(), *layer.buffers())} == {"meta"}


# -- GradedSpikes ----------------------------------------------------------------------------


def test_graded_spikes_equal_snntorch():
    torch.manual_seed(4)
    theirs = snn.GradedSpikes(3, None)
    torch.manual_seed(4)
    ours = GradedSpikes(3)  # U(0.5, 1.5): the same draw
    assert torch.equal(ours.weights, theirs.weights)
    theirs.double(), ours.double()
    spikes = (torch.rand(4, 2, 3) > 0.5).to(F64)
    # dim=-2 is snnTorch's own broadcast ([size, 1] against [..., size, K]).
    as_theirs = GradedSpikes(3, 1.0, dim=-2).double()
    as_theirs.load_state_dict(theirs.state_dict())
    column = spikes.transpose(1, 2)  # [4, 3, 2]
    torch.testing.assert_close(as_theirs(column), theirs(column), atol=0, rtol=0)
    # dim=-1: the neurons of [T, B, N] (snnTorch's on [T, B, N, 1]).
    got, want = ours(spikes), theirs(spikes.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(got, want, atol=0, rtol=0)
    g = torch.randn_like(spikes)
    _same_grads((got * g).sum(), (want * g).sum(), [ours.weights], [theirs.weights])
    # channels of [T, B, C, H, W]
    conv = GradedSpikes(3, 2.0, dim=-3)(torch.ones(1, 1, 3, 2, 2))
    assert conv.shape == (1, 1, 3, 2, 2) and bool((conv == 2).all())


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: LeakyParallel(4, 3, beta=1.5), ConfigurationError, r"beta must be in \[0, 1\]"),
        (lambda: LeakyParallel(4, 3, beta=f64([0.5, 0.2])), ConfigurationError, "hidden_size=3"),
        (lambda: LeakyParallel(0, 3), ConfigurationError, "input_size must be an int >= 1"),
        (lambda: LeakyParallel(4, 3)(torch.zeros(2, 4)), ShapeError, r"\[T >= 1, B, input_size"),
        (lambda: LeakyParallel(4, 3)(torch.zeros(2, 1, 4, dtype=torch.int64)), DTypeError, "int64"),
        (lambda: StateLeakyNode(0.5, 3)(torch.zeros(2, 1, 4)), ShapeError, "channels=3"),
        (lambda: StateLeakyNode(0.5, 3, threshold=torch.ones(2))(torch.zeros(2, 1, 3)), ShapeError,
         r"threshold of shape \(2,\) does not broadcast"),
        (lambda: LeakyParallel(4, 3, graded_spikes_factor=torch.ones(4))(torch.zeros(2, 1, 4)),
         ShapeError, "graded_spikes_factor of shape"),
        (lambda: StateLeakyNode(f64([0.5, 0.2]), 3), ConfigurationError, "channels=3 values"),
        (lambda: StateLeakyNode(0.5, 3, kernel_truncation_steps=0), ConfigurationError,
         "kernel_truncation_steps must be None or an int >= 1"),
        (lambda: LinearLeaky(0.5, 4, 3)(torch.zeros(2, 1, 3)), ShapeError, "in_features=4"),
        (lambda: GradedSpikes(3, dim=1), ConfigurationError, "dim must be a negative int"),
        (lambda: GradedSpikes(3)(torch.zeros(2, 4)), ShapeError, "size=3"),
        (lambda: GradedSpikes(3, float("nan")), ConfigurationError, "finite"),
        (lambda: causal_exponential_filter(torch.zeros(3, 1, 2), torch.ones(1), 0),
         ConfigurationError, "steps must be None or an int >= 1, got 0"),
        (lambda: causal_exponential_filter(torch.zeros(3, 1, 2), 2.0), DTypeError,
         "tau must be a floating-point tensor, got float"),
        (lambda: causal_exponential_filter(torch.zeros(3, 1, 2, dtype=torch.int64),
                                           torch.ones(1)), DTypeError, "x must be a floating"),
        (lambda: causal_exponential_filter(torch.zeros(3, 1, 0), torch.ones(1)), ShapeError,
         r"x of shape \[T >= 1, B, C >= 1\], got \(3, 1, 0\)"),
    ],
)  # fmt: skip
def test_bad_arguments_are_named(make, error, match):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(error, match=match):
            make()
