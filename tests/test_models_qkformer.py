"""QKFormer: against SpikingJelly 2.0's ``model.QKFormer`` with its weights loaded
(outputs, input and parameter gradients, batch-norm statistics), the paper's parameter
counts, the stages' sizes, argument and input errors, and a `spikeflow train` run."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.models import create_model
from spikeflow.models.qkformer import QKFormer, convert_spikingjelly_state_dict
from spikeflow.neurons import ParametricLIFNode

F64 = dict(rtol=1e-10, atol=1e-12)
TINY = {"embed_dim": 32, "num_heads": (2, 2, 1), "depths": (1, 1, 1), "num_classes": 5}


@pytest.fixture(scope="module")
def sj():
    """SpikingJelly's QKFormer module and functional (the tests using it skip without it)."""
    model = pytest.importorskip(
        "spikingjelly.activation_based.model.qkformer", reason="SpikingJelly is not installed"
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


@pytest.mark.parametrize(
    ("qka_type", "training"), [("token", False), ("token", True), ("channel", True)]
)
def test_equals_spikingjelly_with_its_weights(sj, float64, qka_type, training):
    """SpikingJelly's model (its default neurons with ``detach_reset=True``, the authors'
    and spikeflow's) with its random weights, loaded here through
    ``convert_spikingjelly_state_dict`` by name: the same outputs (the time-mean of ours),
    input gradients, parameter gradients and, in training mode, running statistics."""
    model, functional = sj
    theirs = model.QKFormer(T=2, num_classes=5, embed_dims=32, num_heads=(2, 2, 1),
                            depths=(1, 1, 1), qka_type=qka_type, detach_reset=True)  # fmt: skip
    ours = create_model("qkformer_10_384", qka_type=qka_type, **TINY)
    _firing_norms(theirs, 1)
    theirs.train(training)
    ours.train(training)
    ours.load_state_dict(convert_spikingjelly_state_dict(theirs.state_dict()))  # strict
    functional.reset_net(theirs)
    x = torch.rand(2, 2, 3, 32, 32) * 2
    x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    y1, y2 = theirs(x1), ours(x2)
    assert y2.shape == (2, 2, 5)
    torch.testing.assert_close(y2.mean(0), y1, **F64)
    g = torch.randn_like(y1)
    (y1 * g).sum().backward()
    (y2.mean(0) * g).sum().backward()
    torch.testing.assert_close(x2.grad, x1.grad, **F64)
    expected = convert_spikingjelly_state_dict({k: p.grad for k, p in theirs.named_parameters()})
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, expected[name], **F64, msg=name)
        # the case reaches every layer (a batch norm's shift before another one excepted)
        assert p.grad.abs().sum() > 0 or (training and name.endswith(".bias")), name
    buffers = convert_spikingjelly_state_dict(dict(theirs.named_buffers()))
    for name, buffer in ours.named_buffers():
        torch.testing.assert_close(buffer, buffers[name], **F64, msg=name)


def test_the_papers_parameter_counts_and_spikingjellys(sj):
    """QKFormer-10-384/512/768 have the paper's 16.47M, 29.08M, 64.96M parameters, and
    10-384 the tensors of SpikingJelly's, in its order once converted (built on the meta
    device: no memory, no initialisation)."""
    model, _ = sj
    with torch.device("meta"):
        built = {d: create_model(f"qkformer_10_{d}") for d in (384, 512, 768)}
        theirs = model.qkformer_10_384()
    counts = {d: round(sum(p.numel() for p in m.parameters()) / 1e6, 2) for d, m in built.items()}
    assert counts == {384: 16.47, 512: 29.08, 768: 64.96}
    attention = [b.attn for b in built[512].stage2] + [b.attn for b in built[512].stage3]
    assert [a.num_heads for a in attention] == [8] * 9 and len(built[768].stage1) == 1
    converted = convert_spikingjelly_state_dict(theirs.state_dict())
    ours = built[384].state_dict()
    assert list(converted) == list(ours)
    assert all(converted[k].shape == v.shape for k, v in ours.items())


@torch.no_grad()
def test_stages_halve_the_maps_and_double_the_features():
    """The stem takes any size to a quarter (rounded up), each later stage halves it;
    the head sees the mean of the last stage's tokens, per step."""
    model = create_model("qkformer_10_384", **TINY).eval()
    seen = []
    for part in (model.patch_embed1, model.patch_embed2, model.patch_embed3):
        part.register_forward_hook(lambda m, args, out: seen.append(tuple(out.shape)))
    x = torch.rand(3, 2, 3, 23, 9)
    tokens = model.forward_features(x)
    assert seen == [(3, 2, 8, 6, 3), (3, 2, 16, 3, 2), (3, 2, 32, 2, 1)]
    assert tokens.shape == (3, 2, 2, 32)
    torch.testing.assert_close(model(x), tokens.mean(2) @ model.head.weight.T + model.head.bias)
    assert isinstance(model, QKFormer) and not model.head.bias.any()  # the authors' head
    assert float(create_model("qkformer_10_384").head.weight.std()) == pytest.approx(0.02, 0.05)


def test_neurons_are_chosen_by_name_and_v_threshold_sets_the_attentions_too():
    model = create_model("qkformer_10_384", neuron="plif",
                         neuron_kwargs={"init_tau": 3.0, "v_threshold": 0.75}, **TINY)  # fmt: skip
    neurons = [m for m in model.modules() if isinstance(m, ParametricLIFNode)]
    # the embeddings' 4 + 3 + 3, 2 per MLP, 3 per Q-K attention, 5 in the stage-3 SSA
    assert len(neurons) == 10 + 3 * 2 + 2 * 3 + 5
    assert all(n.detach_reset and n.tau == pytest.approx(3.0) for n in neurons)
    assert all(n.v_threshold == 0.75 for n in neurons)  # SpikingJelly's keyword's


@pytest.mark.parametrize("neuron_kwargs", [{}, {"v_threshold": 0.75}])
def test_every_neurons_threshold_is_spikingjellys(sj, neuron_kwargs):
    """Each neuron (by SpikingJelly's module name, converted) has the threshold of
    SpikingJelly's: the attentions' 0.5 and the others' 1 by default; ``v_threshold``
    in the keywords sets them all, the attentions' too."""
    model, _ = sj
    theirs = model.QKFormer(T=2, num_classes=5, embed_dims=32, num_heads=(2, 2, 1),
                            depths=(1, 1, 1), **neuron_kwargs)  # fmt: skip
    ours = create_model("qkformer_10_384", neuron_kwargs=neuron_kwargs, **TINY)
    found = {name: float(m.v_threshold) for name, m in ours.named_modules()
             if hasattr(m, "v_threshold")}  # fmt: skip
    theirs_found = {f"{name}.v": torch.tensor(float(m.v_threshold))
                    for name, m in theirs.named_modules() if hasattr(m, "v_threshold")}  # fmt: skip
    converted = convert_spikingjelly_state_dict(theirs_found)
    assert found == {key.removesuffix(".v"): float(v) for key, v in converted.items()}
    assert sorted(set(found.values())) == ([0.75] if neuron_kwargs else [0.5, 1.0])


def test_the_converter_splits_and_renames_only_stage_3s_attention():
    """A learnable neuron's tensor (any shape) of SpikingJelly's one Q, K, V neuron goes
    to each of the three; the Q-K attention of stages 1 and 2 keeps SpikingJelly's names."""
    w, proj = torch.tensor(0.3), torch.ones(4, 4, 1)
    out = convert_spikingjelly_state_dict({
        "stage3.1.attn.qkv_lif.w": w.reshape(1), "stage3.1.attn.attn_lif.w": w,
        "stage3.1.attn.proj_conv_bn.0.weight": proj, "stage2.0.attn.attn_lif.w": w,
        "stage2.0.attn.proj_conv_bn.0.weight": proj,
    })  # fmt: skip
    assert list(out) == [
        "stage3.1.attn.qkv.neuron.0.w", "stage3.1.attn.qkv.neuron.1.w",
        "stage3.1.attn.qkv.neuron.2.w", "stage3.1.attn.attention_neuron.w",
        "stage3.1.attn.proj.weight", "stage2.0.attn.attn_lif.w",
        "stage2.0.attn.proj_conv_bn.0.weight",
    ]  # fmt: skip
    assert out["stage3.1.attn.proj.weight"].shape == (4, 4)
    assert all(out[f"stage3.1.attn.qkv.neuron.{i}.w"].shape == (1,) for i in range(3))
    assert out["stage2.0.attn.proj_conv_bn.0.weight"].shape == (4, 4, 1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"embed_dim": 36, "num_heads": 2}, r"stage 1 has 9 features, not a multiple of its "
                                            r"num_heads \(2\)"),
        ({"embed_dim": 30}, r"embed_dim \(30\) must be a multiple of 4 and at least 8"),
        ({"embed_dim": 4, "num_heads": 1}, r"embed_dim \(4\) must be a multiple of 4 and at "
                                           "least 8"),
        ({"depths": (1, 2)}, r"depths must be one positive integer or 3 \(one per stage\)"),
        ({"depths": [1, 0, 1]}, r"QKFormer: depths\[1\] must be a positive integer, got 0"),
        ({"num_heads": "6"}, "num_heads must be one positive integer or 3"),
        ({"qka_type": "spatial"}, "qka_type must be 'token' or 'channel', got 'spatial'"),
        ({"mlp_ratio": 0.005}, "leaves stage 1's MLP .96 features. no hidden feature"),
        ({"attention_scale": -1.0}, "attention_scale must be a finite real number"),
        ({"zero_init_residual": True}, "zero_init_residual is not supported"),
    ],
)  # fmt: skip
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ConfigurationError, match=message):
        create_model("qkformer_10_384", **kwargs)


def test_bad_inputs_are_named_with_their_shape():
    model = create_model("qkformer_10_384", **TINY)
    with pytest.raises(ShapeError, match=r"\[T, B, C, H, W\]; got shape \(2, 3, 32, 32\) "
                                         r"\(missing the time dimension\?\)"):  # fmt: skip
        model(torch.rand(2, 3, 32, 32))
    with pytest.raises(ShapeError, match=r"\[T, B, C, H, W\]; got shape \(4, 2, 700\)"):
        model(torch.rand(4, 2, 700))  # SHD-like features
    with pytest.raises(ShapeError, match=r"built for 3 input channels .* got 2 in shape"):
        model(torch.rand(2, 1, 2, 34, 34))  # N-MNIST frames
    with pytest.raises(ShapeError, match=r"H, W >= 1, got shape \(2, 1, 3, 0, 8\)"):
        model(torch.rand(2, 1, 3, 0, 8))
    with pytest.raises(ShapeError, match=r"qkv_conv_bn.0.weight: .* multiple of 3, got shape "
                                         r"\(8, 4, 1\)"):  # fmt: skip
        convert_spikingjelly_state_dict({"stage3.0.attn.qkv_conv_bn.0.weight": torch.ones(8, 4, 1)})


def test_spikeflow_train_runs_it_on_the_digits(tmp_path):
    """`spikeflow train --model qkformer_10_384` with small sizes: the digits' one
    channel reaches the stem (8x8 frames: 2x2, 1x1 and 1x1 maps), one epoch runs, the
    loss is finite and the parameters change."""
    pytest.importorskip("sklearn", reason="scikit-learn (the 'examples' extra) is needed")
    from spikeflow.training import Trainer
    from spikeflow.training.build import build_model
    from train_runs import tiny

    config = tiny(tmp_path, "run", model="qkformer_10_384", loss="ce", epochs=1, lr=3e-3,
                  train_samples=32, test_samples=16, batch_size=16, T=2,
                  model_kwargs={"embed_dim": 16, "num_heads": 2, "depths": 1})  # fmt: skip
    trainer = Trainer(config, log=None)
    result = trainer.fit()
    model = trainer.raw_model
    assert model.patch_embed1.conv1.in_channels == 1
    assert all(torch.isfinite(torch.tensor(row["train_loss"])) for row in result.history)
    torch.manual_seed(config.seed)  # as the trainer seeds before building the model
    initial = build_model(config, trainer.info).state_dict()
    assert initial.keys() == model.state_dict().keys()
    for key in ("patch_embed1.conv1.weight", "stage3.0.mlp.fc1.weight", "head.weight"):
        assert not torch.equal(model.state_dict()[key], initial[key]), key
