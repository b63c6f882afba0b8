"""convert_causal_lm's ``mode="qcfs_sg"``: the quantised model with a surrogate gradient.

References: SpikingJelly 2.0's ``Qwen2SNNModel`` in ``encoding_mode="qcfs_sg"`` (the
same calibration: logits, and the gradients of one loss on every weight), the rule of
the quantiser's surrogate worked out by hand (slope 1 where ``0 < |x| <= T·θ``), and a
float64 ``gradcheck`` of the path the gradient takes around the quantisers.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from spikeflow.conversion import calibrate_causal_lm, convert_causal_lm
from spikeflow.conversion.llm_encode import signed_quantize, signed_quantize_sg
from spikeflow.errors import ConfigurationError

transformers = pytest.importorskip("transformers")

from test_conversion_llm import _batches, _ids, _model, _spikingjelly  # noqa: E402


def _loss(logits, target):
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))


def test_quantiser_forward_and_surrogate_slope_by_hand():
    theta = torch.tensor([0.5, 0.25], dtype=torch.float64)
    steps = 4
    # per channel: 0, inside, a tie (round to even), exactly T·θ, beyond T·θ, negative
    x = torch.tensor(
        [[0.0, 0.0], [0.6, -0.3], [0.75, -0.375], [2.0, -1.0], [2.3, -1.2], [-0.9, 0.1]],
        dtype=torch.float64,
        requires_grad=True,
    )
    y = signed_quantize_sg(x, theta, steps)
    assert torch.equal(y, signed_quantize(x.detach(), theta, steps))
    assert y[2].tolist() == [1.0, -0.5]  # ±1.5 counts: round to the even 2
    y.backward(torch.arange(1.0, 13.0, dtype=torch.float64).reshape(6, 2))
    inside = (x.detach() != 0) & (x.detach().abs() <= steps * theta)
    expected = torch.arange(1.0, 13.0, dtype=torch.float64).reshape(6, 2) * inside
    assert torch.equal(x.grad, expected)
    assert x.grad[0].tolist() == [0.0, 0.0] and x.grad[4].tolist() == [0.0, 0.0]
    assert x.grad[3].tolist() == [7.0, 8.0]  # at T·θ: still inside
    qcfs = pytest.importorskip("spikingjelly.activation_based.ann2snn.qcfs")
    theirs = x.detach().clone().requires_grad_(True)
    out = qcfs.SignedQCFSSequenceEncoder(theta, steps).reconstruct(theirs)
    out.backward(torch.arange(1.0, 13.0, dtype=torch.float64).reshape(6, 2))
    assert torch.equal(out, y) and torch.equal(theirs.grad, x.grad)


def test_logits_and_weight_gradients_equal_spikingjelly_qcfs_sg():
    from spikingjelly.activation_based import functional as sjf

    model, steps = _model(), 8
    theirs, _ = _spikingjelly(model, steps)
    ours = convert_causal_lm(model, steps=steps, calibration=_batches())
    ids, target = _ids(), _ids(seed=5)
    sjf.reset_net(theirs)
    their_logits = theirs(ids, encoding_mode="qcfs_sg").logits
    mine = ours(ids, mode="qcfs_sg", per_step=True)
    # SpikingJelly runs the attention and the logits in float32
    torch.testing.assert_close(mine.logits, their_logits.double(), rtol=0, atol=1e-6)
    torch.testing.assert_close(mine.logits, ours(ids, mode="quantized").logits, rtol=0, atol=0)
    assert mine.step_logits.shape == (steps, *mine.logits.shape)
    for step in mine.step_logits:  # the quantised values arrive at once: every step
        assert torch.equal(step, mine.logits)
    _loss(their_logits.double(), target).backward()
    _loss(mine.logits, target).backward()
    their_grads = dict(theirs.named_parameters())
    compared = 0
    for name, p in model.named_parameters():
        key = name.removeprefix("model.").replace("self_attn.", "").replace("mlp.", "")
        reference = their_grads[key].grad.double()
        scale = float(reference.abs().max())
        assert scale > 0, name
        torch.testing.assert_close(p.grad, reference, rtol=0, atol=1e-6 * scale, msg=name)
        compared += 1
    assert compared == len(their_grads)


def test_fewer_levels_than_steps_and_left_padding_equal_spikingjelly():
    """L = 3 < T = 5, another model seed, three prompts two of them left-padded: the
    logits and the gradients of a loss on the real tokens, against SpikingJelly's."""
    pytest.importorskip("spikingjelly.activation_based.ann2snn.recipes.qwen2")
    from spikingjelly.activation_based import functional as sjf
    from spikingjelly.activation_based.ann2snn import ModuleConverter
    from spikingjelly.activation_based.ann2snn.recipes import qwen2 as sj

    model, steps, levels = _model(seed=3), 5, 3
    config = sj.Qwen2SNNConfig(time_steps=steps, calibration_levels=levels)
    recipe = sj.Qwen2SNNRecipe(sj.calibrate_qwen2_snn(model, _batches(), config), config)
    theirs = ModuleConverter(recipe).convert(model)
    ours = convert_causal_lm(model, steps=steps, calibration=_batches(), levels=levels)
    ids, target = _ids(seed=7, shape=(3, 6)), _ids(seed=5, shape=(3, 6))
    mask = torch.ones_like(ids)
    mask[1, :2] = 0
    mask[2, :4] = 0
    real = mask.bool()
    sjf.reset_net(theirs)
    their_logits = theirs(ids, attention_mask=mask, encoding_mode="qcfs_sg").logits.double()
    mine = ours(ids, mask, mode="qcfs_sg").logits
    torch.testing.assert_close(mine[real], their_logits[real], rtol=0, atol=1e-6)
    _loss(their_logits[real], target[real]).backward()
    _loss(mine[real], target[real]).backward()
    their_grads = dict(theirs.named_parameters())
    for name, p in model.named_parameters():
        key = name.removeprefix("model.").replace("self_attn.", "").replace("mlp.", "")
        reference = their_grads[key].grad.double()
        scale = float(reference.abs().max())
        assert scale > 0, name
        torch.testing.assert_close(p.grad, reference, rtol=0, atol=1e-6 * scale, msg=name)


def test_queries_and_keys_learn_only_through_the_surrogate():
    model = _model()
    snn = convert_causal_lm(model, steps=8, calibration=_batches())
    ids, target = _ids(), _ids(seed=5)
    q_weight = model.model.layers[0].self_attn.q_proj.weight
    grads = {}
    for mode in ("quantized", "qcfs_sg"):
        model.zero_grad()
        _loss(snn(ids, mode=mode).logits, target).backward()
        grads[mode] = q_weight.grad.clone()
    assert torch.count_nonzero(grads["quantized"]) == 0  # round has slope 0
    assert torch.count_nonzero(grads["qcfs_sg"]) > 0.9 * q_weight.numel()
    # the converted model holds the source's parameters and nothing else to train
    assert {id(p) for p in snn.parameters()} == {id(p) for p in model.parameters()}


def _float64_norm(old):
    """torch's RMSNorm with ``old``'s weight: Hugging Face's computes in float32, too
    coarse for finite differences."""
    new = torch.nn.RMSNorm(old.weight.shape[0], eps=1e-6, dtype=torch.float64)
    with torch.no_grad():
        new.weight.copy_(old.weight)
    return new


def test_gradcheck_of_the_path_around_the_quantisers():
    """float64, 1 layer of hidden 8: the stream operators (norms, projections, rotary,
    attention, gated product) a qcfs_sg gradient runs through, against finite
    differences, with respect to a weight and the token embeddings."""
    torch.manual_seed(0)
    config = transformers.Qwen2Config(
        vocab_size=8, hidden_size=8, intermediate_size=12, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=False,
    )  # fmt: skip
    model = transformers.Qwen2ForCausalLM(config).double().eval()
    layer = model.model.layers[0]
    layer.input_layernorm = _float64_norm(layer.input_layernorm)
    layer.post_attention_layernorm = _float64_norm(layer.post_attention_layernorm)
    model.model.norm = _float64_norm(model.model.norm)
    snn = convert_causal_lm(model, steps=3)
    ids = torch.tensor([[0, 1, 2, 3], [4, 5, 6, 7]])
    weight = layer.mlp.gate_proj.weight.detach().clone().requires_grad_(True)
    table = model.model.embed_tokens.weight.detach().clone().requires_grad_(True)

    def run(w, emb):
        names = {"layers.0.gate_proj.layer.weight": w, "embed_tokens.weight": emb}
        with torch.nn.utils.stateless._reparametrize_module(snn, names):
            return snn(ids, mode="exact").logits

    assert torch.autograd.gradcheck(run, (weight, table))


def test_a_few_fine_tuning_steps_lower_the_loss_of_the_quantised_model():
    model = _model()
    snn = convert_causal_lm(model, steps=4, calibration=calibrate_causal_lm(model, _batches(), 4))
    ids = torch.cat([b["input_ids"] for b in _batches()])
    opt = torch.optim.AdamW(snn.parameters(), lr=1e-2)
    losses = []
    for _ in range(5):
        loss = _loss(snn(ids[:, :-1], mode="qcfs_sg").logits, ids[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    with torch.no_grad():
        after = float(_loss(snn(ids[:, :-1]).logits, ids[:, 1:]))  # the spikes
    assert after < losses[0] - 0.05
    with pytest.raises(ConfigurationError, match="needs a calibration"):
        convert_causal_lm(model, steps=4)(ids, mode="qcfs_sg")
