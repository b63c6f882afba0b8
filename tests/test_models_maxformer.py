"""Max-Former: against SpikingJelly 2.0's ``model.MaxFormer`` (ImageNet and CIFAR) with
its weights loaded (outputs, input and parameter gradients, batch-norm statistics), its
parameter counts and tensor order, the stages' sizes, argument and input errors, and a
`spikeflow train` run."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.models import create_model
from spikeflow.models.maxformer import CifarAttention, MaxFormer, convert_spikingjelly_state_dict
from spikeflow.neurons import ParametricLIFNode

F64 = dict(rtol=1e-10, atol=1e-12)
TINY = {"embed_dim": 32, "depths": 1, "num_classes": 5}


@pytest.fixture(scope="module")
def sj():
    """SpikingJelly's Max-Former module and functional (the tests using it skip without it)."""
    model = pytest.importorskip(
        "spikingjelly.activation_based.model.maxformer", reason="SpikingJelly is not installed"
    )
    from spikingjelly.activation_based import functional

    return model, functional


def _firing_norms(model: nn.Module, seed: int) -> None:
    """Batch norms that make the neurons fire at T = 2: small running variances (eval),
    positive shifts, and large ones before the stage-3 Q, K, V neurons, whose product
    over 4 tokens must reach the attention neuron's threshold in training mode too."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) * 0.02 + 0.01)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                low = 2.0 if "qkv" in name else 0.0
                m.bias.copy_(torch.rand(n, generator=g) * 1.5 + low)


@pytest.mark.parametrize(("cifar", "training"), [(False, False), (False, True), (True, True)])
def test_equals_spikingjelly_with_its_weights(sj, float64, cifar, training):
    """SpikingJelly's model (with ``detach_reset=True``: the authors' neurons and
    spikeflow's) with its random weights, loaded here through
    ``convert_spikingjelly_state_dict`` by name: the same outputs (the time-mean of ours),
    input gradients, parameter gradients and, in training mode, running statistics; the
    stage-3 attention neuron fires (4 tokens: 32x32 ImageNet, 8x8 CIFAR inputs)."""
    model, functional = sj
    theirs = model.MaxFormer(T=2, num_classes=5, embed_dims=32, depths=(1, 1, 1),
                             cifar=cifar, detach_reset=True)  # fmt: skip
    ours = create_model("maxformer_cifar" if cifar else "maxformer_10_384", **TINY)
    _firing_norms(theirs, 1)
    theirs.train(training)
    ours.train(training)
    ours.load_state_dict(convert_spikingjelly_state_dict(theirs.state_dict()))  # strict
    functional.reset_net(theirs)
    spikes = []
    ours.stage3[0].attn.attention_neuron.register_forward_hook(
        lambda m, args, out: spikes.append(float(out.detach().sum()))
    )
    size = 8 if cifar else 32
    x = torch.rand(2, 2, 3, size, size) * 2
    x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    y1, y2 = theirs(x1), ours(x2)
    assert y2.shape == (2, 2, 5) and spikes[0] > 0
    torch.testing.assert_close(y2.mean(0), y1, **F64)
    g = torch.randn_like(y1)
    (y1 * g).sum().backward()
    (y2.mean(0) * g).sum().backward()
    torch.testing.assert_close(x2.grad, x1.grad, **F64)
    expected = convert_spikingjelly_state_dict({k: p.grad for k, p in theirs.named_parameters()})
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, expected[name], **F64, msg=name)
        assert p.grad.abs().sum() > 0, name  # the case reaches every layer
    buffers = convert_spikingjelly_state_dict(dict(theirs.named_buffers()))
    for name, buffer in ours.named_buffers():
        torch.testing.assert_close(buffer, buffers[name], **F64, msg=name)


def test_parameter_counts_and_tensors_are_spikingjellys(sj):
    """Max-Former-10-384 (16.24M) and the CIFAR Max-Former-4-384 (6.60M, 100 classes) have
    SpikingJelly's tensors, in its order once converted (built on the meta device)."""
    model, _ = sj
    for name, count in (("maxformer_10_384", 16_236_616), ("maxformer_cifar", 6_602_932)):
        with torch.device("meta"):
            ours, theirs = create_model(name), getattr(model, name)()
        assert sum(p.numel() for p in ours.parameters()) == count, name
        assert sum(p.numel() for p in theirs.parameters()) == count, name
        converted, state = convert_spikingjelly_state_dict(theirs.state_dict()), ours.state_dict()
        assert list(converted) == list(state), name
        assert all(converted[k].shape == v.shape for k, v in state.items()), name
    with torch.device("meta"):
        imagenet, cifar = create_model("maxformer_10_384"), create_model("maxformer_cifar")
    assert imagenet.stage3[0].attn.num_heads == 6 and cifar.stage3[0].attn.num_heads == 8
    assert [len(s) for s in (imagenet.stage1, imagenet.stage2, imagenet.stage3)] == [1, 2, 7]
    assert [len(s) for s in (cifar.stage1, cifar.stage2, cifar.stage3)] == [1, 1, 2]
    assert imagenet.stage1[0].dwconv.kernel_size == (7, 7)
    assert imagenet.stage2[0].dwconv.kernel_size == (5, 5)
    assert cifar.stage2[0].dwconv.kernel_size == (3, 3) and cifar.num_classes == 100


def _embedding_shapes(model: MaxFormer, x: torch.Tensor) -> list[tuple[int, ...]]:
    """The shapes of the three patch embeddings' outputs for ``x``."""
    seen = []
    for part in (model.patch_embed1, model.patch_embed2, model.patch_embed3):
        part.register_forward_hook(lambda m, args, out: seen.append(tuple(out.shape)))
    model.forward_features(x)
    return seen


@torch.no_grad()
def test_stages_shrink_the_maps_and_double_the_features():
    """The ImageNet stem takes any size to a quarter (rounded up), the CIFAR stem keeps
    it, each later stage halves it; the head sees a spike per step of the mean over the
    last stage's positions."""
    for name, expected in (
        ("maxformer_10_384", [(3, 2, 8, 6, 3), (3, 2, 16, 3, 2), (3, 2, 32, 2, 1)]),
        ("maxformer_cifar", [(3, 2, 8, 23, 9), (3, 2, 16, 12, 5), (3, 2, 32, 6, 3)]),
    ):
        model = create_model(name, **TINY).eval()
        x = torch.rand(3, 2, 3, 23, 9)
        assert _embedding_shapes(model, x) == expected, name
        maps = model.forward_features(x)
        spikes = model.head_lif(maps.flatten(3).mean(-1))
        torch.testing.assert_close(model(x), spikes @ model.head.weight.T + model.head.bias)
        assert isinstance(model, MaxFormer)
    cifar_head = create_model("maxformer_cifar", embed_dim=64, depths=1, num_classes=200).head
    assert not cifar_head.bias.any()  # the authors' CIFAR head
    assert float(cifar_head.weight.std()) == pytest.approx(0.02, 0.05)


def test_mlp_ratio_one_adds_the_middle_shortcut():
    """With ``mlp_ratio=1`` the MLP adds its input after the first layer too (as the
    authors'): with the second layer's batch norm zeroed it gives ``BN1(...) + x``, where
    ``mlp_ratio=4`` gives ``x``."""
    model = create_model("maxformer_10_384", mlp_ratio=1.0, **TINY).eval()
    mlp = model.stage1[0].mlp
    with torch.no_grad():
        mlp.bn2.weight.zero_()
        mlp.bn2.bias.zero_()
    x = torch.rand(2, 1, 8, 3, 3)
    first = mlp.bn1(mlp.fc1(mlp.lif1(x)))
    torch.testing.assert_close(mlp(x), first + x)
    assert first.abs().sum() > 0 and mlp.residual
    wide = create_model("maxformer_10_384", **TINY).stage1[0].mlp.eval()
    with torch.no_grad():
        wide.bn2.weight.zero_()
        wide.bn2.bias.zero_()
    assert not wide.residual and torch.equal(wide(x), x)


def test_neurons_are_chosen_by_name_and_v_threshold_sets_the_attentions_too():
    kwargs = {"neuron": "plif", "neuron_kwargs": {"init_tau": 3.0, "v_threshold": 0.75}}
    # patch embeddings 2 + 2 + 2, the head 1; ImageNet: 3 per depth-wise block (its own
    # and the MLP's 2), 5 in the SSA and 2 in stage 3's MLP; CIFAR: 2 in stage 1's MLP,
    # 3 in the depth-wise block, 5 in the attention (input, Q, K, V, attention), 2
    for name, count in (("maxformer_10_384", 7 + 3 + 3 + 7), ("maxformer_cifar", 7 + 2 + 3 + 7)):
        model = create_model(name, **kwargs, **TINY)
        neurons = [m for m in model.modules() if isinstance(m, ParametricLIFNode)]
        assert len(neurons) == count, name
        assert all(n.detach_reset and n.tau == pytest.approx(3.0) for n in neurons)
        assert all(n.v_threshold == 0.75 for n in neurons), name  # SpikingJelly's keyword's


@pytest.mark.parametrize("cifar", [False, True])
@pytest.mark.parametrize("neuron_kwargs", [{}, {"v_threshold": 0.75}])
def test_every_neurons_threshold_is_spikingjellys(sj, cifar, neuron_kwargs):
    """Each neuron (by SpikingJelly's module name, converted) has the threshold of
    SpikingJelly's: the attention's 0.5 and the others' 1 by default; ``v_threshold``
    in the keywords sets them all, the attention's too."""
    model, _ = sj
    theirs = model.MaxFormer(T=2, num_classes=5, embed_dims=32, depths=(1, 1, 1), cifar=cifar,
                             **neuron_kwargs)  # fmt: skip
    ours = create_model("maxformer_cifar" if cifar else "maxformer_10_384",
                        neuron_kwargs=neuron_kwargs, **TINY)  # fmt: skip
    assert _thresholds(ours) == _thresholds(theirs, convert_spikingjelly_state_dict)
    assert sorted(set(_thresholds(ours).values())) == ([0.75] if neuron_kwargs else [0.5, 1.0])


def _thresholds(model: nn.Module, convert=None) -> dict[str, float]:
    """The thresholds of ``model``'s neurons by module name (``convert``: a state-dict
    converter, applied to the names, which maps SpikingJelly's fused Q, K, V neuron to
    spikeflow's three)."""
    found = {name: float(m.v_threshold) for name, m in model.named_modules()
             if hasattr(m, "v_threshold")}  # fmt: skip
    if convert is None:
        return found
    named = convert({f"{name}.v": torch.tensor(v) for name, v in found.items()})
    return {key.removesuffix(".v"): float(v) for key, v in named.items()}


def test_the_converter_renames_only_stage_3s_attention():
    """The CIFAR attention's ``input_lif``, fused ``qkv`` and ``proj`` (with a bias) get
    spikeflow's names; stage 2's depth-wise block and the MLPs keep SpikingJelly's."""
    w, qkv, proj = torch.tensor(0.3), torch.ones(12, 4, 1), torch.ones(4, 4, 1)
    out = convert_spikingjelly_state_dict({
        "stage3.1.attn.input_lif.w": w, "stage3.1.attn.qkv.0.weight": qkv,
        "stage3.1.attn.qkv_lif.w": w, "stage3.1.attn.proj.0.weight": proj,
        "stage3.1.attn.proj.0.bias": torch.ones(4), "stage3.1.attn.proj.1.running_var": w,
        "stage3.1.mlp.fc1.weight": torch.ones(8, 4, 1, 1), "stage2.0.lif.w": w,
    })  # fmt: skip
    assert list(out) == [
        "stage3.1.attn.input_neuron.w", "stage3.1.attn.qkv.linear.0.weight",
        "stage3.1.attn.qkv.linear.1.weight", "stage3.1.attn.qkv.linear.2.weight",
        "stage3.1.attn.qkv.neuron.0.w", "stage3.1.attn.qkv.neuron.1.w",
        "stage3.1.attn.qkv.neuron.2.w", "stage3.1.attn.proj.weight", "stage3.1.attn.proj.bias",
        "stage3.1.attn.proj_norm.running_var", "stage3.1.mlp.fc1.weight", "stage2.0.lif.w",
    ]  # fmt: skip
    assert out["stage3.1.attn.qkv.linear.2.weight"].shape == (4, 4)
    assert out["stage3.1.attn.proj.weight"].shape == (4, 4)
    assert out["stage3.1.mlp.fc1.weight"].shape == (8, 4, 1, 1)


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("maxformer_10_384", {"embed_dim": 30}, r"embed_dim \(30\) must be a multiple of 4 "
                                                "and at least 8"),
        ("maxformer_10_384", {"embed_dim": 4, "num_heads": 1}, r"embed_dim \(4\) must be a "
                                                               "multiple of 4 and at least 8"),
        ("maxformer_10_384", {"embed_dim": 32, "num_heads": 3}, r"embed_dim \(32\) must be a "
                                                                r"multiple of num_heads \(3\)"),
        ("maxformer_cifar", {"embed_dim": 36}, r"embed_dim \(36\) must be a multiple of "
                                               r"num_heads \(8\)"),
        ("maxformer_10_384", {"num_heads": 0}, r"num_heads must be a positive integer, got 0"),
        ("maxformer_10_384", {"depths": (1, 2)}, r"depths must be one positive integer or 3"),
        ("maxformer_10_384", {"depths": [1, 0, 1]}, r"depths\[1\] must be a positive integer"),
        ("maxformer_10_384", {"mlp_ratio": 0.005}, r"leaves stage 1's MLP \(96 features\)"),
        ("maxformer_10_384", {"attention_scale": -1.0}, "attention_scale must be a finite real"),
        ("maxformer_10_384", {"cifar": 1}, "argument cifar must be true or false, got 1"),
        ("maxformer_cifar", {"cifar": False}, "cifar is fixed to True"),
        ("maxformer_cifar", {"zero_init_residual": True}, "zero_init_residual is not supported"),
    ],
)  # fmt: skip
def test_bad_arguments_are_named(name, kwargs, message):
    with pytest.raises(ConfigurationError, match=message):
        create_model(name, **kwargs)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((10, 3), r"^CifarAttention: dim \(10\) must be a multiple of num_heads \(3\)$"),
        ((0, 2), r"^CifarAttention: dim must be a positive integer, got 0$"),
        ((8, True), r"^CifarAttention: num_heads must be a positive integer, got True$"),
    ],
)
def test_cifar_attention_bad_sizes_are_named(args, message):
    with pytest.raises(ConfigurationError, match=message):
        CifarAttention(*args)


def test_bad_inputs_are_named_with_their_shape():
    model = create_model("maxformer_cifar", **TINY)
    with pytest.raises(ShapeError, match=r"\[T, B, C, H, W\]; got shape \(2, 3, 32, 32\) "
                                         r"\(missing the time dimension\?\)"):  # fmt: skip
        model(torch.rand(2, 3, 32, 32))
    with pytest.raises(ShapeError, match=r"built for 3 input channels .* got 2 in shape"):
        model(torch.rand(2, 1, 2, 34, 34))  # N-MNIST frames
    with pytest.raises(ShapeError, match=r"H, W >= 1, got shape \(2, 1, 3, 0, 8\)"):
        model(torch.rand(2, 1, 3, 0, 8))
    with pytest.raises(ShapeError, match=r"CifarAttention: expects tokens \[T, B, N, D\] with "
                                         r"D = 8, got \(2, 3, 4\)"):  # fmt: skip
        CifarAttention(8, 2)(torch.rand(2, 3, 4))
    with pytest.raises(ShapeError, match=r"qkv.0.weight: .* multiple of 3, got shape "
                                         r"\(8, 4, 1\)"):  # fmt: skip
        convert_spikingjelly_state_dict({"stage3.0.attn.qkv.0.weight": torch.ones(8, 4, 1)})


def test_spikeflow_train_runs_it_on_the_digits(tmp_path):
    """`spikeflow train --model maxformer_cifar` with small sizes: the digits' one
    channel reaches the stem (8x8 frames: 8x8, 4x4 and 2x2 maps), one epoch runs, the
    loss is finite and the parameters change."""
    pytest.importorskip("sklearn", reason="scikit-learn (the 'examples' extra) is needed")
    from spikeflow.training import Trainer
    from spikeflow.training.build import build_model
    from train_runs import tiny

    config = tiny(tmp_path, "run", model="maxformer_cifar", loss="ce", epochs=1, lr=3e-3,
                  train_samples=32, test_samples=16, batch_size=16, T=2,
                  model_kwargs={"embed_dim": 16, "num_heads": 2, "depths": 1})  # fmt: skip
    trainer = Trainer(config, log=None)
    result = trainer.fit()
    model = trainer.raw_model
    assert model.patch_embed1.conv.in_channels == 1 and model.num_classes == 10
    assert all(torch.isfinite(torch.tensor(row["train_loss"])) for row in result.history)
    torch.manual_seed(config.seed)  # as the trainer seeds before building the model
    initial = build_model(config, trainer.info).state_dict()
    assert initial.keys() == model.state_dict().keys()
    for key in ("patch_embed1.conv.weight", "stage3.0.attn.qkv.linear.0.weight", "head.weight"):
        assert not torch.equal(model.state_dict()[key], initial[key]), key
