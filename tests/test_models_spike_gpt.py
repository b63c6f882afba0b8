"""SpikeGPT (spikeflow.models.spike_gpt): SpikeGPT's layout (binary embedding, LIF
neurons equal to SpikingJelly's as SpikeGPT configures them), streaming equal to the
whole sequence, generation from the carried state (N tokens, N steps, the logits of the
full forward), top-p sampling, training on a real corpus, presets and errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from spikeflow import functional as F
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.models import create_model
from spikeflow.models.spike_gpt import SpikeGPT, sample_next
from spikeflow.neurons import LIFNode
from spikeflow.surrogate import ATan


def _model(**kwargs) -> SpikeGPT:
    torch.manual_seed(0)
    size = {"d_model": 16, "n_layers": 2, "context": 48, **kwargs}
    model = create_model("spike_gpt", **size).double()
    with torch.no_grad():  # at initialisation the neurons are silent: make them fire
        for block in model.blocks:
            block.att.output.weight.mul_(30.0)
            block.ffn.value.weight.mul_(30.0)
    return model


def _tokens(steps: int, batch: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (steps, batch), generator=torch.Generator().manual_seed(seed))


def test_layout_is_spikegpts():
    model = _model()
    neurons = [m for m in model.modules() if isinstance(m, LIFNode)]
    assert len(neurons) == 4  # one per branch, two branches per block
    for neuron in neurons:
        assert (neuron.tau, neuron.v_threshold, neuron.v_reset) == (2.0, 1.0, 0.0)
        assert isinstance(neuron.surrogate_function, ATan)
        assert neuron.surrogate_function.alpha == 2.0
    x = _tokens(20)
    embedded = model.binary_embedding(model.emb(x))
    assert set(embedded.unique().tolist()) == {0.0, 1.0}  # the blocks read spikes
    outputs = []
    for neuron in neurons:
        neuron.register_forward_hook(lambda m, args, out: outputs.append(out.detach()))
    model(x)
    for spikes in outputs:  # binary, and neither silent nor saturated
        assert set(spikes.unique().tolist()) <= {0.0, 1.0}
        assert 0.01 < float(spikes.mean()) < 0.99
    rwkv = _model(spiking=False)
    assert not any(isinstance(m, LIFNode) for m in rwkv.modules())
    torch.testing.assert_close(rwkv.binary_embedding(rwkv.emb(x)), rwkv.emb(x))
    # same parameters, same count: the baseline differs only by the spikes
    assert [n for n, _ in rwkv.named_parameters()] == [n for n, _ in model.named_parameters()]


def test_neurons_equal_spikingjellys_multistep_lif_with_atan():
    sj_neuron = pytest.importorskip("spikingjelly.activation_based.neuron")
    sj_surrogate = pytest.importorskip("spikingjelly.activation_based.surrogate")
    model = _model()
    ours = model.blocks[0].neuron_att
    theirs = sj_neuron.LIFNode(
        tau=2.0, surrogate_function=sj_surrogate.ATan(alpha=2.0), step_mode="m"
    ).double()
    drive = (torch.randn(30, 3, 16, dtype=torch.float64) * 2).requires_grad_()
    a, b = ours(drive), theirs(drive)
    torch.testing.assert_close(a, b)
    assert 0 < float(a.detach().mean()) < 1
    cotangent = torch.randn_like(a)
    (ga,) = torch.autograd.grad(a, drive, cotangent)
    (gb,) = torch.autograd.grad(b, drive, cotangent)
    torch.testing.assert_close(ga, gb)


@pytest.mark.parametrize("spiking", [True, False])
def test_chunks_with_carried_state_equal_the_whole_sequence(spiking):
    model = _model(spiking=spiking)
    x = _tokens(40)
    whole = model(x)
    first, state = F.run(model, x[:13])
    second, state = F.run(model, x[13:14], state)
    third, _ = F.run(model, x[14:], state)
    torch.testing.assert_close(torch.cat([first, second, third]), whole, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(model(x), whole)  # and no state leaks into a plain call
    fresh, _ = F.run(model, x[14:])
    assert (fresh - third).abs().amax() > 0.1  # the carried state matters
    # gradients flow through the carried state: chunked backward equals the whole one
    whole.square().mean().backward()
    expected = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    first, state = F.run(model, x[:13])
    rest, _ = F.run(model, x[13:], state)
    torch.cat([first, rest]).square().mean().backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, expected[name], rtol=1e-9, atol=1e-12, msg=name)


def test_generation_streams_n_steps_and_matches_the_full_forward():
    model = _model()
    prompt = _tokens(10, batch=2)
    processed = []
    model.emb.register_forward_hook(lambda m, args, out: processed.append(args[0].shape[0]))
    generator = torch.Generator().manual_seed(1)
    new, logits = model.generate(prompt, 25, 0.9, 0.95, generator, return_logits=True)
    assert new.shape == (25, 2) and logits.shape == (25, 2, 256)
    assert processed == [10] + [1] * 24  # the prompt once, then one token per step
    full = model(torch.cat([prompt, new]))
    torch.testing.assert_close(logits, full[9:34], rtol=1e-10, atol=1e-10)
    assert (model(new[-1:]) - full[33]).abs().amax() > 0.1  # not the last token alone
    assert model.training  # the mode is given back
    # greedy decoding picks each step's argmax of the full forward
    greedy = model.generate(prompt, 8, temperature=0.0)
    full = model(torch.cat([prompt, greedy]))
    assert torch.equal(greedy, full[9:17].argmax(-1))


def test_top_p_keeps_the_smallest_likely_set():
    logits = torch.log(torch.tensor([[0.1, 0.4, 0.2, 0.3]]))
    generator = torch.Generator().manual_seed(0)
    draws = torch.stack([sample_next(logits, 1.0, 0.5, generator) for _ in range(3000)])
    # 0.4 alone is below 0.5: the set is {0.4, 0.3}, renormalised to 4/7 and 3/7
    counts = torch.bincount(draws.flatten(), minlength=4).double() / draws.numel()
    assert counts[0] == counts[2] == 0
    assert abs(float(counts[1]) - 4 / 7) < 0.03
    assert torch.equal(sample_next(logits, 1.0, 0.3, generator), torch.tensor([1]))
    assert torch.equal(sample_next(logits, 0.0), torch.tensor([1]))
    # temperature flattens: at 100 the four draws are close to uniform
    draws = torch.stack([sample_next(logits, 100.0, 1.0, generator) for _ in range(4000)])
    counts = torch.bincount(draws.flatten(), minlength=4).double() / draws.numel()
    assert (counts - 0.25).abs().max() < 0.03


def test_banned_tokens_are_never_sampled_and_leave_the_others_odds():
    # SpikeGPT's run.py never samples token 0 (<|endoftext|>): the ban's use
    logits = torch.log(torch.tensor([[0.5, 0.1, 0.2, 0.2], [0.1, 0.6, 0.1, 0.2]]))
    before = logits.clone()
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([sample_next(logits, 1.0, 1.0, g, [0]) for _ in range(4000)])
    assert torch.equal(logits, before)  # the ban works on a copy
    # row 0 without token 0: 0.1, 0.2, 0.2 renormalised to 1/5, 2/5, 2/5; row 1: 2/3, 1/9, 2/9
    expected = torch.tensor([[0.0, 0.2, 0.4, 0.4], [0.0, 6 / 9, 1 / 9, 2 / 9]], dtype=torch.float64)
    for row in range(2):
        counts = torch.bincount(draws[:, row], minlength=4).double() / draws.shape[0]
        assert counts[0] == 0
        assert (counts - expected[row]).abs().max() < 0.03
    # before top-p: without token 0, {0.2, 0.2} of 0.5 are the nucleus of row 0 at 0.6
    draws = torch.stack([sample_next(logits, 1.0, 0.6, g, torch.tensor([0])) for _ in range(500)])
    assert set(draws[:, 0].tolist()) == {2, 3}
    assert torch.equal(sample_next(logits, 0.0, banned_tokens=[0, 1]), torch.tensor([2, 3]))
    assert torch.equal(sample_next(logits, 1e-320, banned_tokens=[0, 3]), torch.tensor([2, 1]))
    # generate: the model's likely tokens banned, never drawn; the logits it returns are
    # the model's (the full forward's), the ban applied in the sampling only
    model = _model()
    prompt = _tokens(10, batch=2)
    free = model.generate(prompt, 30, 2.0, generator=torch.Generator().manual_seed(1))
    banned = torch.bincount(free.flatten(), minlength=256).topk(3).indices.tolist()
    g = torch.Generator().manual_seed(1)
    new, seen = model.generate(
        prompt, 30, 2.0, generator=g, return_logits=True, banned_tokens=banned
    )
    assert not torch.isin(new, torch.tensor(banned)).any()
    full = model(torch.cat([prompt, new]))
    torch.testing.assert_close(seen, full[9:39], rtol=1e-10, atol=1e-10)
    assert torch.isfinite(seen).all()
    greedy = model.generate(prompt, 8, temperature=0.0, banned_tokens=banned)
    full = model(torch.cat([prompt, greedy]))[9:17].index_fill(-1, torch.tensor(banned), -1e9)
    assert torch.equal(greedy, full.argmax(-1))
    # an empty ban is no ban: the same draws as without one
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    assert torch.equal(
        model.generate(prompt, 6, generator=g1),
        model.generate(prompt, 6, generator=g2, banned_tokens=[]),
    )


@pytest.mark.parametrize(
    "banned, message",
    [
        ([256], r"id 256 is outside the vocabulary \[0, 256\)"),
        ([3, -1], r"id -1 is outside the vocabulary"),
        ([1.0], r"int token ids; got 1\.0 \(float\)"),
        ([True], r"int token ids; got True \(bool\)"),
        (torch.tensor([1.0]), r"integer token ids; got a torch\.float32 tensor"),
        (torch.ones(2, 2, dtype=torch.long), r"1-D integer tensor.*shape \(2, 2\)"),
        (5, r"sequence of int token ids.*got int"),
        (list(range(256)), r"bans all 256 tokens"),
        (torch.arange(256).repeat(2), r"bans all 256 tokens"),
    ],
)
def test_banned_tokens_errors(banned, message):
    model = _model(n_layers=1)
    with pytest.raises(ConfigurationError, match=message):
        model.generate(_tokens(4), 2, banned_tokens=banned)
    with pytest.raises(ConfigurationError, match=message):
        sample_next(torch.zeros(1, 256), banned_tokens=banned)


def test_generation_edges_context_dtypes_and_long_prompts():
    model = _model()
    prompt = _tokens(48, batch=2)
    # the last token sampled is never read: a full-context prompt can take one more
    new, logits = model.generate(prompt, 1, temperature=0.0, return_logits=True)
    torch.testing.assert_close(logits[0], model(prompt)[-1])
    # any integer dtype of ids (bytes as uint8) gives the long ids' logits and samples
    expected = model(prompt[:20])
    for dtype in (torch.uint8, torch.int16, torch.int32):
        torch.testing.assert_close(model(prompt[:20].to(dtype)), expected)
        g = torch.Generator().manual_seed(3)
        same = model.generate(prompt[:20].to(dtype), 4, generator=g)
        assert torch.equal(same, model.generate(prompt[:20], 4, generator=g.manual_seed(3)))
    # beyond_context: a prompt longer than the context runs in pieces, state carried
    long_prompt = _tokens(70, batch=2, seed=5)
    new, logits = model.generate(
        long_prompt, 5, temperature=0.0, beyond_context=True, return_logits=True
    )
    _, state = F.run(model, long_prompt[:48])
    rest, _ = F.run(model, torch.cat([long_prompt[48:], new[:-1]]), state)
    torch.testing.assert_close(logits, rest[-5:], rtol=1e-10, atol=1e-10)
    assert torch.equal(new, rest[-5:].argmax(-1))
    with pytest.raises(ShapeError, match="70 tokens in one call"):
        model.generate(long_prompt, 1)


def test_sampling_edges_tiny_temperature_ties_and_top_p_one(monkeypatch):
    logits = torch.tensor([[0.5, 2.0, -1.0, 1.9]])
    # a temperature so small that logits / temperature overflow is still the argmax
    assert torch.equal(sample_next(logits, 1e-320), torch.tensor([1]))
    # ties enter the nucleus lowest id first: 64 equal tokens, top_p 0.5 keeps ids 0..31
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([sample_next(torch.zeros(4, 64), 1.0, 0.5, g) for _ in range(200)])
    assert int(draws.max()) == 31 and int(draws.min()) == 0
    # top_p = 1 keeps every token, even one whose probability the running sum rounds away
    weights = []
    real = torch.multinomial

    def spy(input, *args, **kwargs):
        weights.append(input.clone())
        return real(input, *args, **kwargs)

    monkeypatch.setattr(torch, "multinomial", spy)
    sample_next(torch.tensor([[0.0, -38.0]]), 1.0, 1.0)
    assert (weights[-1] > 0).all()
    with pytest.raises(ConfigurationError, match="temperature must be a number >= 0; got True"):
        sample_next(logits, True)


def test_trains_on_the_real_corpus():
    from pydoc_data.topics import topics

    data = "".join(topics[key] for key in sorted(topics)).encode("utf-8")
    ids = torch.tensor(list(data[:200_000]), dtype=torch.long)
    torch.manual_seed(0)
    model = create_model("spike_gpt", d_model=32, n_layers=1, context=32)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(150):
        starts = torch.randint(0, len(ids) - 33, (8,), generator=g).tolist()
        window = torch.stack([ids[s : s + 33] for s in starts], 1)
        loss = nn.functional.cross_entropy(model(window[:-1]).flatten(0, 1), window[1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    first, last = sum(losses[:15]) / 15, sum(losses[-15:]) / 15
    assert first > math.log(256) - 0.5  # starts near chance (5.55 nats)
    assert last < first - 1.5, (first, last)  # learnt the bytes' statistics


def test_presets():
    with torch.device("meta"):
        medium = create_model("spike_gpt", preset="medium", vocab_size=50277)
        small = create_model("spike_gpt", preset="small", context=64)
    # the paper's 216M model: 18 blocks of width 768 with GPT-NeoX's vocabulary
    assert round(sum(p.numel() for p in medium.parameters()) / 1e6) == 215
    assert (small.d_model, small.n_layers, small.context) == (512, 12, 64)
    with pytest.raises(ConfigurationError, match="unknown SpikeGPT preset 'large'"):
        create_model("spike_gpt", preset="large")


def test_errors_name_the_bad_argument():
    model = _model()
    with pytest.raises(ShapeError, match="49 tokens in one call, but the model's context is 48"):
        model(_tokens(49))
    assert model(_tokens(48)).shape == (48, 3, 256)  # the whole context is fine
    with pytest.raises(DTypeError, match=r"integer token ids \(torch\.long\), got torch\.float32"):
        model(torch.zeros(4, 2))
    with pytest.raises(DTypeError, match=r"got torch\.bool"):
        model(torch.zeros(4, 2, dtype=torch.bool))
    with pytest.raises(ShapeError, match=r"token ids \[T, B\]; got shape \(4,\)"):
        model(torch.zeros(4, dtype=torch.long))
    with pytest.raises(ConfigurationError, match=r"in \[0, 256\); got values from 0 to 256"):
        model(torch.tensor([[0], [256]]))
    with pytest.raises(ShapeError, match=r"prompt \(40\) \+ n_tokens \(10\) - 1 = 49 tokens"):
        model.generate(_tokens(40), 10)
    assert model.generate(_tokens(40), 10, beyond_context=True).shape == (10, 3)
    with pytest.raises(ConfigurationError, match="n_tokens must be"):
        model.generate(_tokens(4), 0)
    with pytest.raises(ConfigurationError, match=r"top_p must be in \(0, 1\]; got 0"):
        model.generate(_tokens(4), 2, top_p=0)
    with pytest.raises(ConfigurationError, match="temperature must be a number >= 0; got -1"):
        model.generate(_tokens(4), 2, temperature=-1)
    with pytest.raises(ConfigurationError, match="spiking must be True or False"):
        SpikeGPT(spiking="yes")
