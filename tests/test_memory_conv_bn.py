"""memory.pack_conv_bn: adjacent sequence Conv/BatchNorm pairs run with one fold of time.
Against the unpacked network (bit for bit) and SpikingJelly 2.0's
functional.conv_bn_fusion.pack_conv_bn_train_modules on the same network (float64):
outputs, running statistics and gradients; the pair really runs packed; state_dict,
hooks, undo and refusals."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from spikeflow import layers
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.memory import has_packed_conv_bn, pack_conv_bn, unpack_conv_bn
from spikeflow.neurons import IFNode

f64 = torch.float64


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(
        layers.Conv2d(2, 6, 3, padding=1), layers.BatchNorm2d(6), IFNode(),
        layers.MaxPool2d(2),
        nn.Sequential(layers.Conv2d(6, 4, 3, padding=1, bias=False), layers.BatchNorm2d(4)),
        IFNode(), layers.Flatten(), layers.Linear(4 * 16, 3),
    ).double()  # fmt: skip
    with torch.no_grad():
        for bn in (net[1], net[4][1]):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(0.0, 0.5)
    return net.train()


def _run(net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict, dict]:
    x = x.clone().requires_grad_()
    out = net(x)
    (out * torch.linspace(-1, 1, out.shape[-1], dtype=f64)).sum().backward()
    grads = {name: p.grad.clone() for name, p in net.named_parameters()}
    grads["input"] = x.grad.clone()
    return out.detach(), grads, {k: v.clone() for k, v in net.state_dict().items()}


def _input() -> torch.Tensor:
    return 2 * torch.rand(5, 3, 2, 8, 8, generator=torch.Generator().manual_seed(1), dtype=f64)


def test_packed_equals_unpacked_bit_for_bit_and_keeps_the_state_dict():
    plain, packed = _net(), _net()
    names = pack_conv_bn(packed)
    assert names == ["0+1", "4.0+4.1"] and has_packed_conv_bn(packed)
    assert list(packed.state_dict()) == list(plain.state_dict())
    x = _input()
    for _ in range(2):  # the running statistics of two steps
        a, b = _run(plain, x), _run(packed, x)
        assert torch.equal(a[0], b[0])
        for key in a[1]:
            assert torch.equal(a[1][key], b[1][key]), key
        for key in a[2]:
            assert torch.equal(a[2][key], b[2][key]), key
        plain.zero_grad()
        packed.zero_grad()
    packed.eval()
    plain.eval()
    assert torch.equal(packed(x), plain(x))
    assert unpack_conv_bn(packed) == 2 and not has_packed_conv_bn(packed)
    assert type(packed) is nn.Sequential and type(packed[4]) is nn.Sequential


def test_the_pairs_run_with_one_fold(monkeypatch):
    calls = []
    original = layers.Conv2d.forward

    def counted(self, x, *args, **kwargs):
        calls.append(type(self).__name__)
        return original(self, x, *args, **kwargs)

    monkeypatch.setattr(layers.Conv2d, "forward", counted)
    net = _net()
    pack_conv_bn(net)
    net(_input())
    assert calls == []  # neither conv ran through its sequence wrapper
    unpack_conv_bn(net)
    net(_input())
    assert calls == ["Conv2d", "Conv2d"]


def test_equal_to_spikingjellys_packed_network_in_float64():
    sj_layer = pytest.importorskip("spikingjelly.activation_based.layer")
    from spikingjelly.activation_based import functional as sj_functional
    from spikingjelly.activation_based import neuron as sj_neuron
    from spikingjelly.activation_based.functional.conv_bn_fusion import (
        pack_conv_bn_train_modules,
    )

    ours = _net()
    theirs = nn.Sequential(
        sj_layer.Conv2d(2, 6, 3, padding=1), sj_layer.BatchNorm2d(6), sj_neuron.IFNode(),
        sj_layer.MaxPool2d(2),
        nn.Sequential(sj_layer.Conv2d(6, 4, 3, padding=1, bias=False), sj_layer.BatchNorm2d(4)),
        sj_neuron.IFNode(), sj_layer.Flatten(), sj_layer.Linear(4 * 16, 3),
    ).double()  # fmt: skip
    sj_functional.set_step_mode(theirs, "m")
    theirs.load_state_dict(ours.state_dict())
    theirs.train()
    theirs = pack_conv_bn_train_modules(theirs)
    assert pack_conv_bn(ours) == ["0+1", "4.0+4.1"]
    x = _input()
    a, b = _run(ours, x), _run(theirs, x)
    sj_functional.reset_net(theirs)
    torch.testing.assert_close(a[0], b[0], rtol=0, atol=1e-12)
    assert a[0].abs().sum() > 0  # the output neurons fired
    # SJ's packed modules are named <conv>.conv / <conv>.bn
    renamed = {"0.": "0.conv.", "1.": "0.bn.", "4.0.": "4.0.conv.", "4.1.": "4.0.bn."}

    def theirs_name(name: str) -> str:
        for old, new in sorted(renamed.items(), key=lambda kv: -len(kv[0])):
            if name.startswith(old):
                return new + name[len(old) :]
        return name

    for key in a[1]:
        other = b[1]["input" if key == "input" else theirs_name(key)]
        torch.testing.assert_close(a[1][key], other, rtol=0, atol=1e-12, msg=key)
    for key in a[2]:
        torch.testing.assert_close(a[2][key], b[2][theirs_name(key)], rtol=0, atol=1e-12)


def test_hooks_still_see_the_layers_and_errors_are_named():
    net = _net()
    pack_conv_bn(net)
    seen = []
    handle = net[1].register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape)))
    net(_input())
    assert seen == [(5, 3, 6, 8, 8)]  # with a hook the pair runs as two modules
    handle.remove()
    with pytest.raises(ShapeError, match=r"Conv2d in multi-step mode expects \[T, B, C, H, W\]"):
        net(_input()[0])
    with pytest.raises(DTypeError, match="float64"):  # the conv's own dtype message
        net(_input().float())
    with pytest.raises(ConfigurationError, match=r"expects an nn\.Module, got str"):
        pack_conv_bn("net")  # type: ignore[arg-type]


def test_what_is_not_packed():
    net = nn.Sequential(
        layers.Conv2d(2, 4, 3), layers.BatchNorm2d(4, step_mode="s"),  # step modes differ
        layers.Conv2d(4, 4, 3), layers.ThresholdDependentBatchNorm2d(4),  # tdBN: its own
        nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4),  # torch's: run on a folded batch already
    )  # fmt: skip
    assert pack_conv_bn(net) == [] and not has_packed_conv_bn(net)
    single = nn.Sequential(layers.Conv2d(2, 4, 3, step_mode="s"),
                           layers.BatchNorm2d(4, step_mode="s")).double()  # fmt: skip
    reference = copy.deepcopy(single)
    assert pack_conv_bn(single) == ["0+1"]
    x = torch.rand(3, 2, 6, 6, dtype=f64)
    assert torch.equal(single(x), reference(x))


def test_a_pair_used_twice_is_reported_twice():
    # the same conv and batch norm under two names run twice (the forward takes every
    # entry); the list named the first pair only (named_children skips a repeat)
    conv, bn = layers.Conv2d(2, 2, 3, padding=1), layers.BatchNorm2d(2)
    net = nn.Sequential(conv, bn, IFNode(), conv, bn).double()
    reference = copy.deepcopy(net)
    assert pack_conv_bn(net) == ["0+1", "3+4"]
    x = _input()
    assert torch.equal(net(x), reference(x))
    assert torch.equal(bn.running_mean, reference[1].running_mean)  # updated twice alike


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize(
    "bn_kwargs", [{}, {"momentum": None}, {"track_running_stats": False}, {"affine": False}]
)
def test_every_dimension_and_batch_norm_setting_in_train_and_eval(dims, bn_kwargs):
    # a cumulative average (momentum None), batch statistics in eval mode too (no running
    # statistics), no affine parameters: whatever torch's batch norm does, packed or not
    conv = {1: layers.Conv1d, 2: layers.Conv2d, 3: layers.Conv3d}[dims]
    bn = {1: layers.BatchNorm1d, 2: layers.BatchNorm2d, 3: layers.BatchNorm3d}[dims]
    torch.manual_seed(0)
    plain = nn.Sequential(conv(2, 3, 3, padding=1), bn(3, **bn_kwargs), IFNode()).double()
    packed = copy.deepcopy(plain)
    assert pack_conv_bn(packed) == ["0+1"]
    x = 2 * torch.rand(4, 2, 2, *[5] * dims, generator=torch.Generator().manual_seed(1),
                       dtype=f64)  # fmt: skip
    for train in (True, True, False):  # two steps' running statistics, then eval mode
        plain.train(train)
        packed.train(train)
        a, b = _run(plain, x), _run(packed, x)
        for left, right in zip(a, b, strict=True):
            if isinstance(left, dict):
                assert left.keys() == right.keys()
                assert all(torch.equal(left[k], right[k]) for k in left)
            else:
                assert torch.equal(left, right)
        plain.zero_grad()
        packed.zero_grad()


def test_an_error_other_than_a_dtype_mismatch_is_raised_without_rerunning_the_pair(monkeypatch):
    calls = []
    original = layers.Conv2d.forward

    def counted(self, x, *args, **kwargs):
        calls.append(type(self).__name__)
        return original(self, x, *args, **kwargs)

    def out_of_memory(self, x):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(layers.Conv2d, "forward", counted)
    net = _net()
    pack_conv_bn(net)
    with monkeypatch.context() as patch:
        patch.setattr(nn.modules.batchnorm._BatchNorm, "forward", out_of_memory)
        with pytest.raises(torch.OutOfMemoryError, match="simulated"):
            net(_input())
    assert calls == []  # the pair was not run again through its modules
    with pytest.raises(RuntimeError, match="to have 2 channels"):  # torch's own message
        net(_input()[:, :, :1])
    assert calls == []
    with pytest.raises(DTypeError, match="float64"):  # the dtype fallback still names it
        net(_input().float())
    assert calls == ["Conv2d"]
