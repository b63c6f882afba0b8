"""The MPBN neurons (``MPBNLIFNode``, ``MPBNBaseNode``) against SpikingJelly 2.0.

Spikes, membranes, float64 gradients (input, BN affine, learnt threshold) and the
running statistics equal to SpikingJelly's ``MPBNLIFNode`` after a linear layer and a
convolution, hard and soft reset, ``detach_reset`` and ``decay_input`` both ways, in
training and eval mode, and after the threshold re-parameterisation (eval, and the
test-time adaptation in training mode with and without running statistics and residual
normalisation); single-step equal to SpikingJelly's single-step; the folded threshold
fires where the normalised membrane does; gradcheck; the errors.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikeflow import functional as F
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.neurons import MPBNBaseNode, MPBNLIFNode
from spikeflow.surrogate import Sigmoid

sj_neuron = pytest.importorskip(
    "spikingjelly.activation_based.neuron", reason="SpikingJelly is needed for the comparisons"
)
sj_functional = pytest.importorskip("spikingjelly.activation_based.functional")

TIGHT = dict(rtol=1e-10, atol=1e-12)


def _pair(conv, step_mode="m", **kwargs):
    kwargs["out_channels" if conv else "out_features"] = 3
    ours = MPBNLIFNode(step_mode=step_mode, store_v_seq=True, **kwargs)
    theirs = sj_neuron.MPBNLIFNode(step_mode=step_mode, store_v_seq=True, **kwargs)
    with torch.no_grad():  # an affine that is not the identity
        theirs.vbn.weight.copy_(torch.tensor([1.2, 0.8, 1.5]))
        theirs.vbn.bias.copy_(torch.tensor([0.3, 0.1, -0.2]))
        if kwargs.get("learnable_vth"):
            theirs.a.copy_(torch.tensor([0.1, -0.2, 0.3]))
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def _input(conv, scale=1.0):
    return (torch.randn(6, 8, 3, *((4, 4) if conv else ())) + 0.5) * scale


def _check(ours, theirs, x, step_mode="m"):
    """One call of each from the initial state: the same spikes, membranes, gradients
    of the input and of every parameter, and the same state dict afterwards."""
    sj_functional.reset_net(theirs)
    theirs.v_seq = None
    g, gv = torch.randn_like(x), torch.randn_like(x)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    if step_mode == "m":
        s1, v1, s2, v2 = ours(x1), ours.v_seq, theirs(x2), theirs.v_seq
    else:
        with F.streaming(ours):
            s1, v1 = zip(*[(ours(x_t), ours.v) for x_t in x1])
        s2, v2 = zip(*[(theirs(x_t), theirs.v) for x_t in x2])
        s1, v1, s2, v2 = map(torch.stack, (s1, v1, s2, v2))
    assert torch.equal(s1, s2)
    assert 0.02 < s1.mean() < 0.9
    torch.testing.assert_close(v1, v2, **TIGHT)
    p1, p2 = list(ours.parameters()), list(theirs.parameters())
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    got = torch.autograd.grad((s1 * g).sum() + (v1 * gv).sum(), [x1, *p1])
    want = torch.autograd.grad((s2 * g).sum() + (v2 * gv).sum(), [x2, *p2])
    assert got[0].abs().sum() > 0
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, **TIGHT)
    mine, sjs = ours.state_dict(), theirs.state_dict()
    if ours.fold_bn and isinstance(ours.v_threshold, torch.Tensor):
        del mine["v_threshold"]  # a folded learnt threshold: SpikingJelly does not save it
    assert list(mine) == list(sjs)
    for name in mine:
        torch.testing.assert_close(mine[name], sjs[name], **TIGHT, msg=name)


@pytest.mark.parametrize("conv", [False, True])
@pytest.mark.parametrize("v_reset", [0.0, None])
def test_equal_to_spikingjelly(float64, conv, v_reset):
    """Training and eval mode with the normalisation, then folded (eval, and test-time
    adaptation in training mode, each option), for both ``detach_reset`` and
    ``decay_input``, and a learnt threshold."""
    torch.manual_seed(3)
    for detach_reset, decay_input, learnable_vth in [(False, False, False),
                                                     (True, True, True)]:  # fmt: skip
        kwargs = dict(v_reset=v_reset, detach_reset=detach_reset, decay_input=decay_input,
                      learnable_vth=learnable_vth)  # fmt: skip
        ours, theirs = _pair(conv, **kwargs)
        x = _input(conv)
        _check(ours, theirs, x)  # training: batch statistics, running ones updated
        ours.eval(), theirs.eval()
        _check(ours, theirs, x)  # eval: the running statistics
        if learnable_vth and v_reset is None and conv:
            continue  # SpikingJelly's soft reset then subtracts a [C] threshold from the
            # last dim of [B, C, H, W]: spikeflow subtracts it per channel (tested below)
        for normalize_residual, running_stats in [(False, False), (True, True)]:
            ours.re_parameterize_v_threshold(normalize_residual, running_stats)
            theirs.re_parameterize_v_threshold(normalize_residual, running_stats)
            ours.eval(), theirs.eval()
            _check(ours, theirs, x)
            ours.train(), theirs.train()  # test-time adaptation, twice
            _check(ours, theirs, x)
            _check(ours, theirs, _input(conv, 1.3))
            assert ours.bn_momentum == theirs.bn_momentum
            ours, theirs = _pair(conv, **kwargs)
            ours.eval(), theirs.eval()


@pytest.mark.parametrize("conv", [False, True])
def test_single_step_equal_to_spikingjelly(float64, conv):
    ours, theirs = _pair(conv, "s", v_reset=None)
    _check(ours, theirs, _input(conv), "s")
    ours.eval(), theirs.eval()
    _check(ours, theirs, _input(conv), "s")


def test_folded_learnt_threshold_survives_a_state_dict_round_trip():
    """A folded learnt threshold ``exp(a)`` is in the state dict: a fresh folded node
    that loads it fires as the saved one (SpikingJelly keeps it out: it was lost)."""
    saved = MPBNLIFNode(out_features=3, learnable_vth=True).eval()
    with torch.no_grad():
        saved.a.copy_(torch.tensor([0.7, -0.9, 0.2]))
    saved.re_parameterize_v_threshold()
    fresh = MPBNLIFNode(out_features=3, learnable_vth=True).eval()
    fresh.re_parameterize_v_threshold()
    fresh.load_state_dict(saved.state_dict())
    torch.testing.assert_close(fresh.v_threshold, torch.tensor([0.7, -0.9, 0.2]).exp())
    x = torch.rand(4, 5, 3) * 3
    assert torch.equal(fresh(x), saved(x))


def test_folded_threshold_fires_where_the_normalised_membrane_does(float64):
    """One step in eval mode: ``BN(H) >= θ`` exactly where ``H >= θ~``, also with a
    learnt threshold (whose soft reset is then subtracted per channel)."""
    node = MPBNLIFNode(v_reset=None, out_channels=3, learnable_vth=True, store_v_seq=True)
    with torch.no_grad():
        node.vbn.running_mean.copy_(torch.tensor([0.2, -0.1, 0.4]))
        node.vbn.running_var.copy_(torch.tensor([0.5, 2.0, 1.5]))
        node.vbn.weight.copy_(torch.tensor([1.2, 0.8, 1.5]))
        node.a.copy_(torch.tensor([0.1, -0.2, 0.3]))
    node.eval()
    x = torch.randn(1, 16, 3, 4, 4)
    before = node(x)
    node.re_parameterize_v_threshold()
    assert torch.equal(node(x), before) and 0.1 < before.mean() < 0.9
    theta = torch.exp(torch.tensor([0.1, -0.2, 0.3])).view(1, 3, 1, 1)
    torch.testing.assert_close(node.v_seq[0], x[0] - before[0] * theta, **TIGHT)
    assert "a" not in dict(node.named_parameters()) and "fold_bn=True" in repr(node)


def test_gradcheck_float64():
    """Through the loop, the batch normalisation of every step and the reset, on a
    smooth surrogate: the input, the affine and the learnt threshold."""
    torch.manual_seed(0)
    node = MPBNLIFNode(out_features=3, learnable_vth=True, store_v_seq=True,
                       surrogate_function=Sigmoid(alpha=2.0, spiking=False)).double()  # fmt: skip
    x = (torch.randn(4, 5, 3, dtype=torch.float64) + 0.5).requires_grad_()

    def outputs(x, weight, bias, a):
        out = torch.func.functional_call(node, {"vbn.weight": weight, "vbn.bias": bias, "a": a},
                                         (x,))  # fmt: skip
        return out, node.v_seq

    params = [p.detach().clone().requires_grad_() for p in (node.vbn.weight, node.vbn.bias, node.a)]
    assert torch.autograd.gradcheck(outputs, (x, *params))


def test_plain_neuron_and_a_base_of_ones_own():
    """``mpbn=False`` is the plain LIF (SpikingJelly's too); a subclass of the base
    brings its own charge."""
    x = torch.rand(5, 4, 3) * 2
    plain = MPBNLIFNode(tau=2.0, decay_input=True, mpbn=False, out_features=3)
    from spikeflow.neurons import LIFNode

    assert torch.equal(plain(x), LIFNode(tau=2.0, backend="torch")(x))
    plain.re_parameterize_v_threshold()  # nothing to fold
    assert not plain.fold_bn and isinstance(plain.vbn, nn.Identity)

    class MPBNIF(MPBNBaseNode):
        def charge(self, x, v):
            return v + x

    node = MPBNIF(out_features=3, mpbn=False)
    from spikeflow.neurons import IFNode

    assert torch.equal(node(x), IFNode(backend="torch")(x))
    with pytest.raises(NotImplementedError):
        MPBNBaseNode(out_features=3)(x)


def test_bad_arguments_and_inputs_are_named():
    with pytest.raises(ConfigurationError, match="give exactly one of out_features"):
        MPBNLIFNode()
    with pytest.raises(ConfigurationError, match="give exactly one of out_features"):
        MPBNLIFNode(out_features=3, out_channels=3)
    with pytest.raises(ConfigurationError, match="out_channels must be an integer >= 1"):
        MPBNLIFNode(out_channels=0)
    with pytest.raises(
        ConfigurationError, match=r"bn_momentum must be a finite real number in \[0, 1\]"
    ):
        MPBNLIFNode(out_features=3, bn_momentum=1.5)
    with pytest.raises(ConfigurationError, match="must be above v_reset"):
        MPBNLIFNode(out_features=3, v_threshold=0.0)
    with pytest.raises(ConfigurationError, match="tau must be a finite number > 1"):
        MPBNLIFNode(0.5, out_features=3)
    with pytest.raises(ConfigurationError, match="learnable_vth must be True or False"):
        MPBNLIFNode(out_features=3, learnable_vth=1)
    with pytest.raises(ConfigurationError, match="normalize_residual must be True or False"):
        MPBNLIFNode(out_features=3).re_parameterize_v_threshold("yes")
    with pytest.raises(ShapeError, match=r"each step must be \[B, 3, \.\.\.\] with 4 dimensions"):
        MPBNLIFNode(out_channels=3)(torch.rand(2, 4, 3))
    with pytest.raises(ShapeError, match=r"got a step of shape \(4, 5\)"):
        MPBNLIFNode(out_features=3)(torch.rand(2, 4, 5))
