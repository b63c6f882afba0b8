"""STDP on grouped and depthwise convolutions: the pair rule, MSTDP-ET and the
triplet rule against a loop over groups of ungrouped convolutions and against the
linear rule on each group's unfolded patches (float64); learners streamed in chunks
equal to whole sequences."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spikeflow import functional, layers, neurons
from spikeflow.errors import ShapeError
from spikeflow.learn import (
    STDPLearner,
    TripletSTDPLearner,
    stdp_update,
    triplet_stdp_update,
)
from spikeflow.learn.eligibility import eligibility_stdp_update

TRIPLET = dict(tau_plus=3.0, tau_minus=5.0, tau_x=7.0, tau_y=4.0,
               a2_plus=0.5, a3_plus=0.3, a2_minus=0.4, a3_minus=0.2)  # fmt: skip

# (in, out, groups): grouped, depthwise, depthwise with a channel multiplier of 2
CASES = [(4, 6, 2), (3, 3, 3), (2, 4, 2)]


def _sigmoid(w):
    return torch.sigmoid(w)


def _grouped(conv_type, cin, cout, groups, seed):
    torch.manual_seed(seed)
    kw = dict(kernel_size=3, stride=2, padding=1, dilation=1, groups=groups, bias=False)
    if conv_type is nn.Conv2d:
        kw.update(kernel_size=(3, 2), dilation=(1, 2), padding_mode="reflect")
    return conv_type(cin, cout, **kw).double()


def _spikes(conv, steps, batch, size, seed):
    g = torch.Generator().manual_seed(seed)
    pre = (torch.rand(steps, batch, conv.in_channels, *size, generator=g) < 0.35).double()
    with torch.no_grad():
        out = conv(pre.flatten(0, 1)).shape[2:]
    post = (torch.rand(steps, batch, conv.out_channels, *out, generator=g) < 0.35).double()
    return pre, post


def _group_convs(conv):
    """One ungrouped convolution per group, holding that group's slice of the weight."""
    g = conv.groups
    cin, cout = conv.in_channels // g, conv.out_channels // g
    convs = []
    for i in range(g):
        one = type(conv)(cin, cout, conv.kernel_size, stride=conv.stride,
                         padding=conv.padding, dilation=conv.dilation, bias=False,
                         padding_mode=conv.padding_mode).double()  # fmt: skip
        with torch.no_grad():
            one.weight.copy_(conv.weight[i * cout : (i + 1) * cout])
        convs.append((one, slice(i * cin, (i + 1) * cin), slice(i * cout, (i + 1) * cout)))
    return convs


def _per_group(conv, pre, post, rule):
    """The rule on each group's ungrouped convolution, weights stacked back."""
    return torch.cat([rule(one, pre[:, :, ins], post[:, :, outs])
                      for one, ins, outs in _group_convs(conv)])  # fmt: skip


@pytest.mark.parametrize("conv_type", [nn.Conv1d, nn.Conv2d])
@pytest.mark.parametrize(("cin", "cout", "groups"), CASES)
def test_pair_rule_is_the_loop_over_groups(conv_type, cin, cout, groups):
    conv = _grouped(conv_type, cin, cout, groups, seed=cin + cout)
    size = (11,) if conv_type is nn.Conv1d else (7, 8)
    pre, post = _spikes(conv, 6, 2, size, seed=groups)

    def rule(syn, a, b):
        return stdp_update(syn, a, b, 2.0, 3.0, _sigmoid, _sigmoid, pre_offset=0.1)[0]

    delta = rule(conv, pre, post)
    assert delta.shape == conv.weight.shape and delta.abs().sum() > 0
    expected = _per_group(conv, pre, post, rule)
    torch.testing.assert_close(delta, expected, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize(("cin", "cout", "groups"), CASES)
def test_pair_rule_is_the_linear_rule_on_each_groups_patches(cin, cout, groups):
    conv = nn.Conv2d(cin, cout, 3, stride=(1, 2), padding=1, groups=groups,
                     bias=False).double()  # fmt: skip
    steps, batch = 5, 2
    pre, post = _spikes(conv, steps, batch, (6, 7), seed=11)
    delta, _ = stdp_update(conv, pre, post, 2.0, 3.0)
    gin, gout = cin // groups, cout // groups
    patches = F.unfold(pre.flatten(0, 1), 3, padding=1, stride=(1, 2))  # [T·B, C·9, L]
    patches = patches.unflatten(0, (steps, batch)).transpose(2, 3)  # [T, B, L, C·9]
    positions = patches.shape[2]
    outs = post.flatten(3).transpose(2, 3)  # [T, B, L, cout]
    for g in range(groups):
        lin = nn.Linear(gin * 9, gout, bias=False).double()
        with torch.no_grad():
            lin.weight.copy_(conv.weight[g * gout : (g + 1) * gout].reshape(gout, -1))
        lin_pre = patches[..., g * gin * 9:(g + 1) * gin * 9].reshape(steps, batch * positions,
                                                                       gin * 9)  # fmt: skip
        lin_post = outs[..., g * gout : (g + 1) * gout].reshape(steps, batch * positions, gout)
        expected, _ = stdp_update(lin, lin_pre, lin_post, 2.0, 3.0)
        got = delta[g * gout : (g + 1) * gout].reshape(gout, -1)
        torch.testing.assert_close(got, expected, rtol=1e-13, atol=1e-13)


def test_eligibility_rule_is_the_loop_over_groups():
    conv = _grouped(nn.Conv2d, 4, 4, 4, seed=2)  # depthwise
    pre, post = _spikes(conv, 5, 3, (6, 6), seed=3)
    reward = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))

    def rule(syn, a, b):
        return eligibility_stdp_update(syn, a, b, reward, 2.0, 3.0, 4.0,
                                       _sigmoid, _sigmoid)[0]  # fmt: skip

    torch.testing.assert_close(rule(conv, pre, post), _per_group(conv, pre, post, rule),
                               rtol=1e-13, atol=1e-13)  # fmt: skip


@pytest.mark.parametrize("interaction", ["all_to_all", "nearest"])
@pytest.mark.parametrize(("cin", "cout", "groups"), CASES)
def test_triplet_rule_is_the_loop_over_groups(interaction, cin, cout, groups):
    conv = _grouped(nn.Conv2d, cin, cout, groups, seed=5)
    pre, post = _spikes(conv, 8, 2, (7, 6), seed=cout)

    def rule(syn, a, b):
        return triplet_stdp_update(syn, a, b, **TRIPLET, interaction=interaction)[0]

    delta = rule(conv, pre, post)
    assert delta.abs().sum() > 0
    torch.testing.assert_close(delta, _per_group(conv, pre, post, rule),
                               rtol=1e-13, atol=1e-13)  # fmt: skip


def _depthwise_network(step_mode="m"):
    torch.manual_seed(9)
    conv = layers.Conv2d(3, 6, 3, padding=1, groups=3, bias=False, step_mode=step_mode)
    lif = neurons.LIFNode(tau=2.0, v_threshold=0.3, step_mode=step_mode)
    return nn.Sequential(conv.double(), lif), conv, lif


@pytest.mark.parametrize("triplet", [False, True])
def test_learners_stream_grouped_convolutions_in_chunks_as_whole_sequences(triplet):
    net, conv, lif = _depthwise_network()
    if triplet:
        learner = TripletSTDPLearner(conv, lif, **TRIPLET)
    else:
        learner = STDPLearner(conv, lif, tau_pre=2.0, tau_post=3.0)
    x = (torch.rand(9, 2, 3, 6, 6) < 0.4).double()
    with torch.no_grad():
        post = net(x)
    assert 0 < post.mean() < 1
    whole = learner.step(on_grad=False)
    if triplet:
        expected = triplet_stdp_update(conv, x, post, **TRIPLET)[0]
    else:
        expected = stdp_update(conv, x, post, 2.0, 3.0)[0]
    torch.testing.assert_close(whole, expected, rtol=0, atol=0)
    functional.reset_net(net)
    learner.reset()
    total = torch.zeros_like(whole)
    with functional.streaming(net), torch.no_grad():
        for chunk in (x[:2], x[2:3], x[3:7], x[7:]):
            net(chunk)
            total += learner.step(on_grad=False)
    torch.testing.assert_close(total, whole, rtol=1e-13, atol=1e-13)


def test_grouped_spikes_that_do_not_fit_name_the_channels():
    conv = nn.Conv2d(4, 6, 3, groups=2)
    with pytest.raises(ShapeError, match=r"4 input channels \(2 groups of 2\).*C = 4"):
        stdp_update(conv, torch.zeros(2, 1, 2, 5, 5), torch.zeros(2, 1, 6, 3, 3), 2.0, 2.0)
    with pytest.raises(ShapeError, match="4 input channels"):
        triplet_stdp_update(conv, torch.zeros(2, 1, 2, 5, 5), torch.zeros(2, 1, 6, 3, 3),
                            **TRIPLET)  # fmt: skip
