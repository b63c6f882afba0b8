"""SpikingJelly 2.0's named Spikformer and Spike-driven Transformer builders
(``spikformer_ti``, ``spikformer_s``, ``spikformer_cifar10``, ``sdt_8_384``): spikeflow's
models of the same names against SpikingJelly's with its weights loaded (outputs, input
and parameter gradients, batch-norm statistics, in float64), the full-size builders'
tensors, and the converters' and arguments' errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.models import create_model
from spikeflow.models import spike_driven as sdt
from spikeflow.models import spikformer as spf

F64 = dict(rtol=1e-10, atol=1e-12)


@pytest.fixture(scope="module")
def sj():
    """SpikingJelly's two model modules (the tests using them skip without it)."""
    spikformer = pytest.importorskip(
        "spikingjelly.activation_based.model.spikformer", reason="SpikingJelly is not installed"
    )
    from spikingjelly.activation_based.model import spike_driven_transformer

    return spikformer, spike_driven_transformer


def _firing(model: nn.Module, seed: int) -> None:
    """Batch norms that make the neurons fire at T = 2 (small running variances, positive
    shifts, large ones before Spikformer's Q, K, V neurons so that the attention neuron
    fires too) and non-zero biases on SpikingJelly's convolutions."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) * 0.02 + 0.01)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.rand(n, generator=g) * 1.5 + (2.0 if "qkv" in name else 0.0))
            elif isinstance(m, nn.Conv2d) and m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.3)


def _compare(theirs: nn.Module, ours: nn.Module, convert, x: torch.Tensor, training: bool,
             time_mean: bool) -> None:  # fmt: skip
    """Load SpikingJelly's weights into ours (strictly), run both on ``x`` and compare the
    outputs, the input and parameter gradients and the batch norms' buffers."""
    _firing(theirs, 1)
    theirs.train(training)
    ours.train(training)
    ours.load_state_dict(convert(theirs.state_dict()))
    x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    y1, y2 = theirs(x1), ours(x2)
    if time_mean:  # SpikingJelly's Spike-driven Transformer returns the time-mean
        y2 = y2.mean(0)
    assert y1.std() > 0.01  # neither constant nor empty
    torch.testing.assert_close(y2, y1, **F64)
    g = torch.randn_like(y1)
    (y1 * g).sum().backward()
    (y2 * g).sum().backward()
    torch.testing.assert_close(x2.grad, x1.grad, **F64)
    assert x1.grad.abs().sum() > 0
    expected = convert({k: p.grad for k, p in theirs.named_parameters()})
    added = (".mlp.fc1.bias", ".mlp.fc2.bias") if not time_mean else ()  # Spikformer's zeros
    compared = [name for name, _ in ours.named_parameters() if not name.endswith(added)]
    assert set(compared) <= set(expected)
    for name, p in ours.named_parameters():
        if name in compared:
            torch.testing.assert_close(p.grad, expected[name], **F64, msg=name)
    buffers = convert(theirs.state_dict())  # the running means less SDT's folded biases
    for name, buffer in ours.named_buffers():
        torch.testing.assert_close(buffer, buffers[name], **F64, msg=name)


@pytest.mark.parametrize(
    ("name", "patch", "training", "kwargs"),
    [("spikformer_cifar10", 4, False, {}), ("spikformer_cifar10", 4, True, {}),
     ("spikformer_ti", 16, True, {"v_threshold": 0.8})],
)  # fmt: skip
def test_spikformer_equals_spikingjelly(sj, float64, name, patch, training, kwargs):
    """SpikingJelly's ``Spikformer`` (patch size 4: two pools; 16: four) at a small width,
    ours by SpikingJelly's builder name with the same sizes (its max-pools before the
    SPS neurons): the same outputs, gradients and running statistics."""
    spikformer, _ = sj
    size, pools = (16, 2) if patch == 4 else (32, 4)  # 16 and 4 tokens
    theirs = spikformer.Spikformer(T=2, img_size_h=size, img_size_w=size, patch_size=patch,
                                   num_classes=5, embed_dims=32, num_heads=2, depths=1,
                                   **kwargs)  # fmt: skip
    ours = create_model(name, num_classes=5, embed_dim=32, num_heads=2, depth=1, input_size=size,
                        neuron_kwargs=kwargs)  # fmt: skip
    x = torch.rand(2, 2, 3, size, size) * 2

    def convert(state):
        return spf.convert_spikingjelly_state_dict(state, pools=pools)

    _compare(theirs, ours, convert, x, training, time_mean=False)


def test_spikformers_own_pool_order_is_not_spikingjellys(sj, float64):
    """``spikformer`` (the authors' ``conv-BN-SN-pool``) loads the same weights but gives
    other outputs than SpikingJelly's ``conv-BN-pool-SN``: the SpikingJelly names need
    ``pool_first``."""
    spikformer, _ = sj
    theirs = spikformer.Spikformer(T=2, img_size_h=16, img_size_w=16, patch_size=4,
                                   num_classes=5, embed_dims=32, num_heads=2, depths=1)  # fmt: skip
    _firing(theirs, 1)
    ours = create_model("spikformer", num_classes=5, embed_dim=32, num_heads=2, depth=1)
    ours.load_state_dict(spf.convert_spikingjelly_state_dict(theirs.state_dict(), pools=2))
    x = torch.rand(2, 2, 3, 16, 16) * 2
    assert (ours.eval()(x) - theirs.eval()(x)).abs().max() > 1e-3
    sj_named = create_model("spikformer_cifar10", embed_dim=32, num_heads=2, depth=1)
    # the third stage: conv 6, BN 7, then the pool and the neuron in either order
    assert [type(m).__name__ for m in sj_named.patch_split[8:10]] == ["MaxPool2d", "LIFNode"]
    assert [type(m).__name__ for m in ours.patch_split[8:10]] == ["LIFNode", "MaxPool2d"]


@pytest.mark.parametrize(
    ("stat", "training", "kwargs"),
    [("1111", False, {"detach_reset": True}), ("1111", True, {"detach_reset": True}),
     ("0011", True, {"detach_reset": False, "v_threshold": 0.8})],
)  # fmt: skip
def test_spike_driven_transformer_equals_spikingjelly(sj, float64, stat, training, kwargs):
    """SpikingJelly's ``SpikeDrivenTransformer`` (``pooling_stat`` 1111: four pools; 0011:
    two) at a small width, ours as ``sdt_8_384`` with the same sizes and neuron keywords
    (its convolution biases folded into the batch norms): the same time-mean outputs,
    gradients and running statistics."""
    _, spike_driven = sj
    pools = stat.count("1")
    size = 16 if pools == 2 else 32  # 16 and 4 tokens
    theirs = spike_driven.SpikeDrivenTransformer(T=2, num_classes=5, embed_dims=32, num_heads=2,
                                                 depths=2, pooling_stat=stat, **kwargs)  # fmt: skip
    ours = create_model("sdt_8_384", num_classes=5, embed_dim=32, num_heads=2, depth=2,
                        input_size=size, pools=pools, neuron_kwargs=kwargs)  # fmt: skip
    x = torch.rand(2, 2, 3, size, size) * 2

    def convert(state):
        return sdt.convert_spikingjelly_state_dict(state, pools=pools)

    _compare(theirs, ours, convert, x, training, time_mean=True)


@pytest.mark.parametrize("name", ["spikformer_ti", "spikformer_s", "spikformer_cifar10",
                                  "sdt_8_384"])  # fmt: skip
def test_the_full_size_builders_have_spikingjellys_tensors(sj, name):
    """At full size (on the meta device: no memory, no initialisation) each builder has
    SpikingJelly's tensors, in its order and shapes once converted; the parameter counts
    differ only by the biases: Spikformer's MLP ones (spikeflow's, zero from SpikingJelly)
    and SDT's convolutions' before a batch norm (SpikingJelly's, folded)."""
    spikformer, spike_driven = sj
    module, convert = (spike_driven, sdt) if name == "sdt_8_384" else (spikformer, spf)
    pools = 2 if name == "spikformer_cifar10" else 4
    with torch.device("meta"):
        theirs = getattr(module, name)()
        ours = create_model(name)
    converted = convert.convert_spikingjelly_state_dict(theirs.state_dict(), pools=pools)
    state = ours.state_dict()
    # SpikingJelly's Q, K, V modules are q_conv, q_bn, q_lif, k_conv, ...; ours linear 0-2,
    # norm 0-2, neuron 0-2: the same tensors in another order
    order = sorted if name == "sdt_8_384" else list
    assert order(converted) == order(state)
    assert all(converted[k].shape == v.shape for k, v in state.items())
    count = {m: sum(p.numel() for p in m.parameters()) for m in (theirs, ours)}
    blocks = len(ours.blocks)
    dim = ours.head.in_features
    if name == "sdt_8_384":  # 4 stage convolutions' and each block's proj's biases
        extra = -(dim // 8 + dim // 4 + dim // 2 + dim + blocks * dim)
    else:  # each block's fc1 (4D) and fc2 (D) biases
        extra = blocks * 5 * dim
    assert count[ours] - count[theirs] == extra
    assert ours.head.out_features == (10 if name == "spikformer_cifar10" else 1000)


def test_bad_arguments_and_tensors_are_named():
    with pytest.raises(ConfigurationError, match="pools must be an integer from 0 to 4, got 5"):
        spf.convert_spikingjelly_state_dict({}, pools=5)
    with pytest.raises(ConfigurationError, match="pools must be an integer from 0 to 4, got '4'"):
        sdt.convert_spikingjelly_state_dict({}, pools="4")
    with pytest.raises(ShapeError, match=r"qkv_conv_bn.0.weight: .* multiple of 3, got shape "
                                         r"\(8, 4, 1\)"):  # fmt: skip
        spf.convert_spikingjelly_state_dict(
            {"blocks.0.attn.qkv_conv_bn.0.weight": torch.ones(8, 4, 1)}, pools=2
        )
    with pytest.raises(ConfigurationError, match="pool_first must be True or False, got 'yes'"):
        spf.Spikformer(pool_first="yes")


def test_the_converters_place_learnable_neurons_tensors():
    """A learnable neuron's tensor (``w``) goes to the neuron at its place in spikeflow's
    layers: after the pool in a pooled SPS stage, into each of Spikformer's Q, K, V
    neurons, to the SDT's position-embedding, attention and head neurons."""
    w = torch.tensor(0.3)
    out = spf.convert_spikingjelly_state_dict({
        "patch_embed.stages.1.neuron.w": w, "patch_embed.stages.2.neuron.w": w,
        "patch_embed.stages.3.neuron.w": w, "patch_embed.positional_encoding.neuron.w": w,
        "blocks.0.attn.qkv_lif.w": w, "blocks.0.attn.attn_lif.w": w,
        "blocks.0.mlp.neuron2.w": w,
    }, pools=2)  # fmt: skip
    assert list(out) == [
        "patch_split.5.w", "patch_split.9.w", "patch_split.13.w", "position.2.w",
        "blocks.0.attention.qkv.neuron.0.w", "blocks.0.attention.qkv.neuron.1.w",
        "blocks.0.attention.qkv.neuron.2.w", "blocks.0.attention.attention_neuron.w",
        "blocks.0.mlp.neuron2.w",
    ]  # fmt: skip
    model = create_model("spikformer_cifar10", embed_dim=32, num_heads=2, depth=1, neuron="plif")
    assert set(out) <= set(model.state_dict())
    own = {"patch_embed.stages.2.neuron.w": w, "patch_embed.stages.3.neuron.w": w}
    out = spf.convert_spikingjelly_state_dict(own, pools=2, pool_first=False)
    assert list(out) == ["patch_split.8.w", "patch_split.12.w"]  # neuron, then pool
    model = create_model("spikformer", embed_dim=32, num_heads=2, depth=1, neuron="plif")
    assert set(out) <= set(model.state_dict())
    out = sdt.convert_spikingjelly_state_dict({
        "patch_embed.stages.0.2.w": w, "patch_embed.stages.2.2.w": w,
        "patch_embed.final_lif.w": w, "blocks.1.attn.shortcut_lif.w": w,
        "blocks.1.attn.q_lif.w": w, "blocks.1.attn.k_lif.w": w, "blocks.1.attn.v_lif.w": w,
        "blocks.1.attn.attn_lif.w": w, "head_lif.w": w,
    }, pools=2)  # fmt: skip
    assert list(out) == [
        "patch_split.2.w", "patch_split.8.w", "position.0.w", "blocks.1.attention.input_neuron.w",
        *(f"blocks.1.attention.qkv.neuron.{i}.w" for i in range(3)),
        "blocks.1.attention.kv_neuron.w", "head_neuron.w",
    ]  # fmt: skip
    model = create_model("sdt_8_384", embed_dim=32, num_heads=2, depth=2, pools=2, neuron="plif")
    assert set(out) <= set(model.state_dict())


@torch.no_grad()
def test_any_input_size_runs():
    """The token count follows the input: the builders' ``input_size`` is informative."""
    for name in ("spikformer_ti", "sdt_8_384"):
        model = create_model(name, num_classes=3, embed_dim=16, num_heads=2, depth=1).eval()
        assert model(torch.rand(2, 1, 3, 5, 7)).shape == (2, 1, 3)
