"""RWKV's WKV recurrence (spikeflow.layers.wkv) and the spiking RWKV block
(spikeflow.layers.rwkv) against their definitions: the WKV written as its double sum in
float64, the recurrent form against the chunked parallel form, gradcheck in float64
(keys, values, the decay w, the bonus u and a given state), large keys (the running
maximum), the mixers' token shift by hand, streaming chunk by chunk and token by token,
and errors."""

from __future__ import annotations

import math

import pytest
import torch

from spikeflow import functional as F
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError, StateError
from spikeflow.layers import RWKVChannelMix, RWKVTimeMix, SpikingRWKVBlock
from spikeflow.layers.wkv import wkv_recurrent, wkv_sequence, wkv_step
from spikeflow.neurons import LIFNode

T, B, C = 13, 2, 3


def _inputs(steps: int = T, scale: float = 2.0, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    decay = torch.rand(C, generator=g, dtype=torch.float64) * 1.5 + 0.05
    bonus = torch.randn(C, generator=g, dtype=torch.float64)
    k = torch.randn(steps, B, C, generator=g, dtype=torch.float64) * scale
    v = torch.randn(steps, B, C, generator=g, dtype=torch.float64)
    return decay, bonus, k, v


def _by_definition(decay, bonus, k, v, start=None):
    """wkv_t = (Σ_{i<t} e^{-(t-1-i)w + k_i} v_i + e^{u+k_t} v_t) / (same with v = 1),
    plus a starting state's A_0 e^{-t w} (numerator) and B_0 e^{-t w} (denominator)."""
    out = torch.empty_like(k)
    for t in range(k.shape[0]):
        num = torch.exp(bonus + k[t]) * v[t]
        den = torch.exp(bonus + k[t])
        for i in range(t):
            weight = torch.exp(-(t - 1 - i) * decay + k[i])
            num, den = num + weight * v[i], den + weight
        if start is not None:
            a, b, p = start
            num = num + a * torch.exp(p - t * decay)
            den = den + b * torch.exp(p - t * decay)
        out[t] = num / den
    return out


def _state(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(B, C, generator=g, dtype=torch.float64)
    b = torch.rand(B, C, generator=g, dtype=torch.float64) + 0.5
    return a, b, torch.randn(B, C, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("chunk", [1, 4, 5, 32])
def test_recurrent_and_parallel_forms_equal_the_definition(chunk):
    decay, bonus, k, v = _inputs()
    expected = _by_definition(decay, bonus, k, v)
    loop, loop_state = wkv_recurrent(decay, bonus, k, v)
    parallel, parallel_state = wkv_sequence(decay, bonus, k, v, chunk=chunk)
    torch.testing.assert_close(loop, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(parallel, expected, rtol=1e-12, atol=1e-12)
    # the states stand for the same sums A = a e^p, B = b e^p
    for (x, p), (y, q) in zip(
        [(loop_state[0], loop_state[2]), (loop_state[1], loop_state[2])],
        [(parallel_state[0], parallel_state[2]), (parallel_state[1], parallel_state[2])],
    ):
        torch.testing.assert_close(x * torch.exp(p), y * torch.exp(q), rtol=1e-12, atol=1e-12)


def test_a_given_state_counts_as_earlier_tokens():
    decay, bonus, k, v = _inputs()
    start = _state()
    expected = _by_definition(decay, bonus, k, v, start)
    torch.testing.assert_close(wkv_recurrent(decay, bonus, k, v, start)[0], expected)
    torch.testing.assert_close(wkv_sequence(decay, bonus, k, v, start, chunk=4)[0], expected)
    # splitting the sequence and carrying the state is the whole sequence
    first, state = wkv_sequence(decay, bonus, k[:6], v[:6], chunk=4)
    rest, _ = wkv_sequence(decay, bonus, k[6:], v[6:], state, chunk=3)
    torch.testing.assert_close(torch.cat([first, rest]), _by_definition(decay, bonus, k, v))


def test_one_step_by_hand():
    # From the empty state: wkv_0 = v_0 (a single token); the state is then
    # A = e^{k_0} v_0, B = e^{k_0}, and wkv_1 = (A + e^{u+k_1} v_1) / (B + e^{u+k_1}).
    decay, bonus, k, v = _inputs(2)
    out0, state = wkv_step(decay, bonus, k[0], v[0])
    torch.testing.assert_close(out0, v[0])
    a, b, p = state
    torch.testing.assert_close(a * torch.exp(p), torch.exp(k[0]) * v[0])
    torch.testing.assert_close(b * torch.exp(p), torch.exp(k[0]))
    out1, _ = wkv_step(decay, bonus, k[1], v[1], state)
    now = torch.exp(bonus + k[1])
    expected = (torch.exp(k[0]) * v[0] + now * v[1]) / (torch.exp(k[0]) + now)
    torch.testing.assert_close(out1, expected)


def test_large_keys_stay_finite_and_equal():
    # keys of ±300: e^k overflows float64 past 709 and float32 past 88; the running
    # maximum keeps both forms finite, and equal to the float64 definition computed
    # with the keys shifted (wkv is invariant to adding a constant to every key).
    decay, bonus, k, v = _inputs(scale=100.0)
    shift = k.amax()
    expected = _by_definition(decay, bonus - 0.0, k - shift, v)
    for fn in (wkv_recurrent, wkv_sequence):
        out, _ = fn(decay, bonus, k, v)
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out, expected)
        out32, _ = fn(*(x.float() for x in (decay, bonus, k, v)))
        assert torch.isfinite(out32).all()
        torch.testing.assert_close(out32.double(), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("chunk", [1, 4, 32])
def test_decay_overflowing_to_inf_stays_finite(chunk):
    # time_decay above ~88.7 makes w = exp(time_decay) inf in float32 (SpikeGPT's kernel
    # takes -exp(time_decay) as it is): each token then sees only the one before it and
    # itself. Both forms must stay finite, equal to the definition with w = 1e30 in
    # float64 (0 · w = 0 for the previous token, every older one weighs e^{-w} = 0).
    _, bonus, k, v = _inputs()
    decay = torch.exp(torch.tensor([100.0, 90.0, 1.0], dtype=torch.float32))
    assert torch.isinf(decay[:2]).all()
    finite = torch.tensor([1e30, 1e30, math.e], dtype=torch.float64)
    expected = _by_definition(finite, bonus, k, v)
    args = (decay, bonus.float(), k.float(), v.float())
    for out, _ in (wkv_recurrent(*args), wkv_sequence(*args, chunk=chunk)):
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)
    first, state = wkv_sequence(*(x[:5] if x.dim() == 3 else x for x in args), chunk=chunk)
    assert all(torch.isfinite(part).all() for part in state[:2])
    rest, _ = wkv_sequence(decay, bonus.float(), k[5:].float(), v[5:].float(), state, chunk)
    torch.testing.assert_close(torch.cat([first, rest]).double(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("form", ["sequence", "recurrent"])
def test_gradcheck_float64_including_decay_bonus_and_state(form):
    decay, bonus, k, v = _inputs(7, scale=1.0)
    start = _state()
    inputs = tuple(x.clone().requires_grad_() for x in (decay, bonus, k, v, *start))

    def fn(decay, bonus, k, v, a, b, p):
        state = (a, b, p)
        if form == "sequence":
            out, end = wkv_sequence(decay, bonus, k, v, state, chunk=3)
        else:
            out, end = wkv_recurrent(decay, bonus, k, v, state)
        # the end state as the sums it stands for (a, b alone depend on the maximum)
        return out, end[0] * torch.exp(end[2]), end[1] * torch.exp(end[2])

    assert torch.autograd.gradcheck(fn, inputs)


def test_wkv_errors():
    decay, bonus, k, v = _inputs()
    with pytest.raises(ShapeError, match=r"decay must have one value per channel, shape \(3,\)"):
        wkv_sequence(decay[:2], bonus, k, v)
    with pytest.raises(ShapeError, match=r"k and v must both be \[T, B, C\]"):
        wkv_sequence(decay, bonus, k, v[:, :1])
    with pytest.raises(DTypeError, match=r"v is torch\.float32 but k is torch\.float64"):
        wkv_sequence(decay, bonus, k, v.float())
    with pytest.raises(DTypeError, match="k must be floating-point"):
        wkv_sequence(decay, bonus, k.long(), v)
    with pytest.raises(StateError, match=r"state a must have one token's shape \(2, 3\)"):
        wkv_sequence(decay, bonus, k, v, (k[0, :1], k[0], k[0]))
    with pytest.raises(ShapeError, match=r"T = 0"):
        wkv_sequence(decay, bonus, k[:0], v[:0])


# -- the mixers and the block ---------------------------------------------------------------


def test_time_mix_by_hand():
    torch.manual_seed(0)
    mix = RWKVTimeMix(C, layer_id=1, n_layers=3).double()
    x = torch.randn(T, B, C, dtype=torch.float64)
    prev = torch.cat([torch.zeros(1, B, C, dtype=torch.float64), x[:-1]])

    def shifted(mu):
        return x * mu + prev * (1 - mu)

    k, v = mix.key(shifted(mix.time_mix_k)), mix.value(shifted(mix.time_mix_v))
    r = torch.sigmoid(mix.receptance(shifted(mix.time_mix_r)))
    wkv = _by_definition(torch.exp(mix.time_decay), mix.time_first, k, v)
    torch.testing.assert_close(mix(x), mix.output(r * wkv))
    # RWKV's initial decays span exp(-5) .. exp(3) over the channels
    torch.testing.assert_close(mix.time_decay[[0, -1]].detach(), torch.tensor([-5.0, 3.0]).double())


def test_channel_mix_by_hand():
    torch.manual_seed(0)
    mix = RWKVChannelMix(C, ffn_mult=2).double()
    x = torch.randn(T, B, C, dtype=torch.float64)
    prev = torch.cat([torch.zeros(1, B, C, dtype=torch.float64), x[:-1]])
    xk = x * mix.time_mix_k + prev * (1 - mix.time_mix_k)
    xr = x * mix.time_mix_r + prev * (1 - mix.time_mix_r)
    expected = torch.sigmoid(mix.receptance(xr)) * mix.value(torch.relu(mix.key(xk)) ** 2)
    torch.testing.assert_close(mix(x), expected)
    assert mix.key.out_features == 2 * C


def _block() -> SpikingRWKVBlock:
    torch.manual_seed(0)
    block = SpikingRWKVBlock(8, 0, 2, LIFNode(), LIFNode(), chunk=4).double()
    with torch.no_grad():  # branch outputs large enough to make the neurons fire
        block.att.output.weight.mul_(6.0)
        block.ffn.value.weight.mul_(6.0)
    return block


def test_block_streams_chunk_by_chunk_and_token_by_token():
    block = _block()
    x = torch.randn(T, B, 8, dtype=torch.float64)
    whole = block(x)
    spikes = whole - block.ln0(x)  # what the branches added: sums of binary spikes
    assert ((spikes == 0) | (spikes == 1) | (spikes == 2)).float().mean() > 0.99
    assert 0 < spikes.abs().mean() < 2  # the neurons fire, not always
    out1, state = F.run(block, x[:5])
    out2, _ = F.run(block, x[5:], state)
    torch.testing.assert_close(torch.cat([out1, out2]), whole, rtol=1e-12, atol=1e-12)
    with F.streaming(block):
        tokens = torch.cat([block(x[t : t + 1]) for t in range(T)])
    torch.testing.assert_close(tokens, whole, rtol=1e-12, atol=1e-12)
    # no state leaks: a plain call starts from the empty state again
    torch.testing.assert_close(block(x), whole)


@pytest.mark.parametrize("mixer", [RWKVTimeMix, RWKVChannelMix])
def test_mixers_carry_the_previous_token_and_wkv_state(mixer):
    torch.manual_seed(0)
    mix = mixer(C).double()
    x = torch.randn(T, B, C, dtype=torch.float64)
    whole = mix(x)
    first, state = mix.run(x[:4])
    torch.testing.assert_close(state["shift"], x[3])
    second, state = mix.run(x[4:9], state)
    third, _ = mix.run(x[9:], state)
    torch.testing.assert_close(torch.cat([first, second, third]), whole, rtol=1e-12, atol=1e-12)


def test_single_step_mixers_need_streaming():
    mix = RWKVTimeMix(C, step_mode="s")
    with pytest.raises(StateError, match="streaming is off"):
        mix(torch.randn(B, C))
    x = torch.randn(T, B, C)
    multi = RWKVTimeMix(C)
    multi.load_state_dict(mix.state_dict())
    expected = multi(x)
    with F.streaming(mix):
        steps = torch.stack([mix(x_t) for x_t in x])
    torch.testing.assert_close(steps, expected, rtol=1e-5, atol=1e-6)


def test_block_and_mixer_errors():
    with pytest.raises(ConfigurationError, match="give both neurons"):
        SpikingRWKVBlock(4, neuron_att=LIFNode())
    with pytest.raises(ConfigurationError, match=r"layer_id must be in \[0, 2\)"):
        RWKVTimeMix(4, layer_id=2, n_layers=2)
    with pytest.raises(ShapeError, match=r"expects a non-empty \[T, B, d_model\] with d_model = 4"):
        RWKVTimeMix(4)(torch.randn(3, 2, 5))
    with pytest.raises(DTypeError, match=r"floating-point tensor, got torch\.int64"):
        RWKVChannelMix(4)(torch.ones(3, 2, 4, dtype=torch.long))
    with torch.no_grad():
        assert math.isfinite(float(RWKVTimeMix(4)(torch.randn(3, 2, 4)).sum()))


def test_time_mix_under_bfloat16_autocast_runs_the_wkv_in_float32():
    # Under CPU autocast the projections give bfloat16 keys and values while the decay
    # and bonus stay float32 parameters: the WKV takes them all in float32 (SpikeGPT's
    # kernel casts to float too), the output is autocast's bfloat16, close to float32's,
    # and the carried WKV state stays float32 across chunks.
    torch.manual_seed(0)
    mix = RWKVTimeMix(16, layer_id=1, n_layers=3)
    x = torch.randn(T, B, 16)
    reference = mix(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = mix(x)
        with F.streaming(mix):
            first, rest = mix(x[:5]), mix(x[5:])
            assert mix.state["num"].dtype == torch.float32
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), reference, rtol=0.05, atol=0.02)
    torch.testing.assert_close(torch.cat([first, rest]), low, rtol=0.02, atol=0.01)
