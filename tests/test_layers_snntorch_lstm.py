"""``layers.SLSTM`` and ``layers.SConv2dLSTM``: snnTorch 1.0's spiking LSTMs.

Against snnTorch stepped over a sequence in float64, for the three reset mechanisms
(and the three pooling options of the convolutional one): spikes identical, ``syn`` and
``mem`` equal, gradients of the input and of every parameter (by name) and of a
learnable threshold equal; its parameters loaded by name. A hand-computed step; a loop
of ``torch.nn.LSTMCell`` for sizes where snnTorch drops its states (input_size !=
hidden_size); gradcheck with a smooth surrogate; chunked and single-step streaming equal
to one call, no state between calls; ``SpikingLSTM`` (SpikingJelly's) differs; errors.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from spikeflow import functional as F
from spikeflow import layers
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError, StateError
from spikeflow.layers import SLSTM, SConv2dLSTM, SpikingLSTM
from spikeflow.surrogate import ATan, Sigmoid
from streaming_checks import check_chunked_streaming

F64 = torch.float64
THETA = 0.25  # exact in float32: snnTorch subtracts θ times its float32 reset
GRAD_TOL = dict(rtol=1e-10, atol=1e-12)
F32_TOL = dict(rtol=1e-5, atol=1e-6)


def snn():
    return pytest.importorskip("snntorch", reason="snnTorch is not installed")


@pytest.fixture
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(F64)  # snnTorch makes its threshold in the default dtype
    yield
    torch.set_default_dtype(old)


def snntorch_run(layer, x, state_shape):
    """snnTorch's layer stepped over ``x`` from zero states: spikes, syn, mem."""
    syn, mem = torch.zeros(state_shape, dtype=F64), torch.zeros(state_shape, dtype=F64)
    out = []
    for step in x:
        spk, syn, mem = layer(step, syn, mem)
        out.append((spk.double(), syn, mem))
    return tuple(torch.stack(seq) for seq in zip(*out))


def compare_with_snntorch(theirs, ours, x, state_shape):
    """Spikes, states and gradients (input, parameters by name, threshold)."""
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    spikes, syn, mem = snntorch_run(theirs, x1, state_shape)
    got = ours(x2)
    assert torch.equal(got, spikes)
    assert 0.02 < spikes.mean().item() < 0.9, "too few or too many spikes to compare"
    torch.testing.assert_close(ours.syn_seq, syn, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(ours.mem_seq, mem, rtol=1e-12, atol=1e-13)
    # weights of the spikes exact in float32: snnTorch's spikes are float32 tensors
    g_spk = torch.randn_like(spikes).float().double()
    g_syn, g_mem = torch.randn_like(syn), torch.randn_like(mem)

    def loss(spk, s, m):
        return (spk * g_spk).sum() + (s * g_syn).sum() + (m * g_mem).sum()

    names = [n for n, _ in ours.named_parameters()]
    theirs_params = dict(theirs.named_parameters())
    theirs_params["v_threshold"] = theirs_params.pop("threshold")
    assert sorted(theirs_params) == sorted(names)
    grads_t = torch.autograd.grad(loss(spikes, syn, mem), [x1] + [theirs_params[n] for n in names])
    grads_o = torch.autograd.grad(
        loss(got, ours.syn_seq, ours.mem_seq), [x2] + [p for _, p in ours.named_parameters()]
    )
    for name, a, b in zip(["input", *names], grads_o, grads_t):
        assert b.abs().max() > 0, name
        # snnTorch's "subtract" computes θ R in float32 (R is a float32 tensor), so the
        # gradient reaching θ through it carries float32 rounding
        float32_path = name == "v_threshold" and ours.reset_mechanism == "subtract"
        torch.testing.assert_close(a, b, **(F32_TOL if float32_path else GRAD_TOL))


@pytest.mark.parametrize("reset", ["none", "subtract", "zero"])
def test_slstm_equals_snntorch(float64, reset):
    snntorch = snn()
    torch.manual_seed(0)
    theirs = snntorch.SLSTM(8, 8, threshold=THETA, reset_mechanism=reset, learn_threshold=True)
    torch.manual_seed(0)
    ours = SLSTM(
        8, 8, v_threshold=THETA, surrogate_function=ATan(), strict_firing=True,
        learnable_threshold=True, reset_mechanism=reset, store_state_seq=True,
    )  # fmt: skip
    x = torch.randn(12, 4, 8, dtype=F64) * 2
    compare_with_snntorch(theirs, ours, x, (4, 8))


@pytest.mark.parametrize("reset", ["none", "subtract", "zero"])
@pytest.mark.parametrize(
    "pool", [{}, {"max_pool": 2}, {"avg_pool": 2}], ids=["no-pool", "max", "avg"]
)
def test_sconv2dlstm_equals_snntorch(float64, reset, pool):
    snntorch = snn()
    theta = THETA if "avg_pool" not in pool else 0.0625  # averaged membranes are smaller
    torch.manual_seed(1)
    theirs = snntorch.SConv2dLSTM(
        2, 3, 3, threshold=theta, reset_mechanism=reset, learn_threshold=True, **pool
    )
    torch.manual_seed(1)
    ours = SConv2dLSTM(
        2, 3, 3, v_threshold=theta, surrogate_function=ATan(), strict_firing=True,
        learnable_threshold=True, reset_mechanism=reset, store_state_seq=True, **pool,
    )  # fmt: skip
    x = torch.randn(6, 2, 2, 8, 8, dtype=F64) * 2
    compare_with_snntorch(theirs, ours, x, (2, 3, 8, 8))


def test_parameters_load_from_snntorch(float64):
    snntorch = snn()
    theirs = snntorch.SConv2dLSTM(3, 4, (3, 5), reset_mechanism="subtract")
    ours = SConv2dLSTM(3, 4, (3, 5), reset_mechanism="subtract")
    ours.load_state_dict({k: v for k, v in theirs.state_dict().items() if k.startswith("conv.")})
    assert torch.equal(ours.conv.weight, theirs.conv.weight)
    x = torch.randn(3, 2, 3, 6, 7, dtype=F64)
    theirs.spike_grad = ATan()  # spikeflow's surrogate in snnTorch's layer: same forward
    assert ours(x).shape == (3, 2, 4, 6, 7)
    # docs/layers.md: snnTorch's extra entries are refused by a plain load; the documented
    # filter loads the weights
    theirs, ours = snntorch.SLSTM(5, 6, threshold=0.4), SLSTM(5, 6, v_threshold=0.4)
    with pytest.raises(RuntimeError, match=r"graded_spikes_factor.*reset_mechanism_val"):
        ours.load_state_dict(theirs.state_dict())
    ours.load_state_dict(
        {k: v for k, v in theirs.state_dict().items() if k.startswith(("lstm_cell.", "conv."))}
    )
    assert torch.equal(ours.lstm_cell.weight_hh, theirs.lstm_cell.weight_hh)


def test_hand_computed_step():
    # zero weights: the gates are their biases; from zero states, one step gives
    # syn = σ(b_i) tanh(b_g), mem = σ(b_o) tanh(syn), S = Θ(mem - θ)
    layer = SLSTM(3, 2, v_threshold=0.1, store_state_seq=True).double()
    with torch.no_grad():
        for p in layer.parameters():
            p.zero_()
        bias = torch.tensor([0.5, -1.0, 2.0, 0.0, 1.5, 0.3, 1.0, -2.0], dtype=F64)  # i f g o
        layer.lstm_cell.bias_ih.copy_(bias)
    y = layer(torch.randn(2, 1, 3, dtype=F64))
    sig = torch.sigmoid
    syn0 = sig(bias[0:2]) * torch.tanh(bias[4:6])
    mem0 = sig(bias[6:8]) * torch.tanh(syn0)
    syn1 = sig(bias[2:4]) * syn0 + syn0  # the same i g again, plus f times the old state
    mem1 = sig(bias[6:8]) * torch.tanh(syn1)
    torch.testing.assert_close(layer.syn_seq[:, 0], torch.stack([syn0, syn1]))
    torch.testing.assert_close(layer.mem_seq[:, 0], torch.stack([mem0, mem1]))
    torch.testing.assert_close(y[:, 0], (torch.stack([mem0, mem1]) >= 0.1).double())
    # at mem = θ exactly: a spike by the field's rule, none by snnTorch's (strict)
    theta = layer.mem_seq[0, 0].detach().clone()
    for strict, want in ((False, 1.0), (True, 0.0)):
        layer.v_threshold, layer.strict_firing = theta, strict
        assert layer(torch.zeros(1, 1, 3, dtype=F64)).flatten().tolist() == [want, want]


@pytest.mark.parametrize("reset", ["none", "subtract", "zero"])
def test_slstm_equals_an_lstm_cell_loop_for_unequal_sizes(reset):
    # snnTorch 1.0 replaces its states by zeros at every step when input_size !=
    # hidden_size; the equations (torch's own LSTM cell plus the reset) carry them
    layer = SLSTM(5, 7, v_threshold=0.2, reset_mechanism=reset, store_state_seq=True).double()
    x = torch.randn(9, 3, 5, dtype=F64) * 2
    y = layer(x)
    syn = mem = torch.zeros(3, 7, dtype=F64)
    want = []
    for step in x:
        reset_now = (mem >= 0.2).double()
        mem, syn = layer.lstm_cell(step, (mem, syn))
        mem = {"none": mem, "subtract": mem - 0.2 * reset_now, "zero": mem * (1 - reset_now)}[reset]
        want.append((mem >= 0.2).double())
    assert torch.equal(y, torch.stack(want))
    torch.testing.assert_close(layer.mem_seq[-1], mem, rtol=1e-12, atol=1e-13)
    assert 0.05 < y.mean() < 0.9


def test_conv_equals_a_loop_over_the_concatenation():
    layer = SConv2dLSTM(2, 3, (3, 5), max_pool=(2, 1), store_state_seq=True).double()
    x = torch.randn(4, 2, 2, 6, 6, dtype=F64)
    y = layer(x)
    syn = mem = torch.zeros(2, 3, 6, 6, dtype=F64)
    for step in x:
        i, f, o, g = layer.conv(torch.cat([step, mem], dim=1)).chunk(4, dim=1)
        syn = torch.sigmoid(f) * syn + torch.sigmoid(i) * torch.tanh(g)
        mem = torch.sigmoid(o) * torch.tanh(syn)
    torch.testing.assert_close(layer.mem_seq[-1], mem, rtol=1e-12, atol=1e-13)
    want = (torch.nn.functional.max_pool2d(mem, (2, 1)) >= 1.0).double()
    assert y.shape == (4, 2, 3, 3, 6) and torch.equal(y[-1], want)


def test_gradcheck_with_a_smooth_surrogate():
    smooth = Sigmoid(spiking=False)
    dense = SLSTM(2, 3, v_threshold=0.1, surrogate_function=smooth).double()
    conv = SConv2dLSTM(1, 1, 3, avg_pool=2, v_threshold=0.1, surrogate_function=smooth).double()
    for layer, x in ((dense, torch.randn(3, 2, 2)), (conv, torch.randn(3, 1, 1, 4, 4))):
        params = dict(layer.named_parameters())

        def run(x, *values, layer=layer, names=tuple(params)):
            return torch.func.functional_call(layer, dict(zip(names, values)), (x,))

        inputs = (x.double().requires_grad_(), *(p.detach().clone().requires_grad_()
                                                 for p in params.values()))  # fmt: skip
        assert torch.autograd.gradcheck(run, inputs)


@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_streaming_chunks_and_single_steps_equal_one_call(kind):
    def make(step_mode="m"):
        torch.manual_seed(3)
        kwargs = dict(v_threshold=0.2, learnable_threshold=True, reset_mechanism="subtract")
        if kind == "dense":
            return SLSTM(4, 4, step_mode=step_mode, **kwargs).double()
        return SConv2dLSTM(2, 2, 3, step_mode=step_mode, **kwargs).double()

    shape = (23, 2, 4) if kind == "dense" else (23, 2, 2, 4, 4)
    x = torch.randn(shape, dtype=F64) * 2
    whole, _ = check_chunked_streaming(make, x, "v_threshold")
    assert 0.05 < whole.mean() < 0.9
    single = make("s")
    with F.streaming(single):
        steps = torch.stack([single(step) for step in x])
        assert single.mem.shape == single.syn.shape == ((2, 4) if kind == "dense" else (2, 2, 4, 4))
    assert torch.equal(steps, whole)


def test_no_state_between_calls():
    layer = SLSTM(4, 6).double()
    x = torch.randn(5, 2, 4, dtype=F64) * 3
    assert torch.equal(layer(x), layer(x))
    assert layer.state is None
    with F.streaming(layer):
        layer(x)
        with pytest.raises(StateError, match="new sequence"):
            layer(torch.randn(5, 3, 4, dtype=F64))


def test_differs_from_spikingjelly_spiking_lstm():
    # SpikingJelly's SpikingLSTM (spike gates, output h = o c) is another model: with the
    # same weights its hidden states are binary, SLSTM's membranes are not
    ours = SLSTM(6, 6, v_threshold=0.1, store_state_seq=True).double()
    sj_like = SpikingLSTM(6, 6, 1).double()
    with torch.no_grad():
        cell = sj_like.cells[0]
        cell.linear_ih.weight.copy_(ours.lstm_cell.weight_ih)
        cell.linear_ih.bias.copy_(ours.lstm_cell.bias_ih)
        cell.linear_hh.weight.copy_(ours.lstm_cell.weight_hh)
        cell.linear_hh.bias.copy_(ours.lstm_cell.bias_hh)
    x = torch.randn(8, 3, 6, dtype=F64)
    spikes = ours(x)
    h, _ = sj_like(x)
    assert set(h.unique().tolist()) <= {0.0, 1.0}
    assert ((ours.mem_seq > 0) & (ours.mem_seq < 0.9)).any()
    assert not torch.equal(h, spikes)


@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_runs_under_autocast_after_a_layer_autocast_made_bfloat16(kind):
    # --amp bf16: the layer before gives bfloat16; the dtype check refused that.
    torch.manual_seed(0)
    if kind == "dense":
        front, lstm, x = (
            torch.nn.Linear(5, 5),
            SLSTM(5, 6, store_state_seq=True),
            torch.randn(4, 3, 5),
        )
    else:
        front = torch.nn.Conv2d(2, 2, 3, padding=1)
        lstm, x = SConv2dLSTM(2, 3, 3, store_state_seq=True), torch.randn(4, 3, 2, 6, 6)
    net = torch.nn.Sequential(layers.SeqToANNContainer(front), lstm)
    net(x)
    want = lstm.mem_seq  # reset "none": the membrane does not depend on the spikes
    with torch.autocast("cpu", dtype=torch.bfloat16):
        spikes = net(x)
    assert spikes.shape[:2] == (4, 3) and lstm.mem_seq.dtype == torch.bfloat16
    torch.testing.assert_close(lstm.mem_seq.float(), want, rtol=0.05, atol=0.03)


def test_errors():
    with pytest.raises(ConfigurationError, match="reset_mechanism"):
        SLSTM(2, 3, reset_mechanism="hard")
    with pytest.raises(ConfigurationError, match="odd"):
        SConv2dLSTM(2, 3, 4)
    with pytest.raises(ConfigurationError, match="only one"):
        SConv2dLSTM(2, 3, 3, max_pool=2, avg_pool=2)
    with pytest.raises(ConfigurationError, match="surrogate_function"):
        SLSTM(2, 3, surrogate_function=torch.sigmoid)
    with pytest.raises(ConfigurationError, match="v_threshold"):
        SLSTM(2, 3, v_threshold=float("nan"))
    with pytest.raises(ConfigurationError, match="hidden_size"):
        SLSTM(2, 0)
    with pytest.raises(ShapeError, match="input_size = 2"):
        SLSTM(2, 3)(torch.ones(4, 1, 3))
    with pytest.raises(ShapeError, match="in_channels = 2"):
        SConv2dLSTM(2, 3, 3)(torch.ones(4, 1, 3, 5, 5))
    with pytest.raises(ShapeError, match="time dimension"):
        SConv2dLSTM(2, 3, 3)(torch.ones(1, 2, 5, 5))
    with pytest.raises(DTypeError, match="dtype"):
        SLSTM(2, 3)(torch.ones(4, 1, 2, dtype=F64))
    with pytest.raises(StateError, match="streaming"):
        SLSTM(2, 3, step_mode="s")(torch.ones(1, 2))
    assert "reset_mechanism='none'" in repr(SConv2dLSTM(2, 3, 3, max_pool=2))


def test_docs_example():
    text = (Path(__file__).resolve().parents[1] / "docs" / "layers.md").read_text()
    match = re.search(r"<!-- layers: snntorch-lstm\b.*?-->\s*```python\n(.*?)```", text, re.S)
    assert match, "no snntorch-lstm block in docs/layers.md"
    ns: dict = {}
    exec(compile(match.group(1), "docs/layers.md", "exec"), ns)
    assert ns["spikes"].shape == (10, 4, 8, 16, 16)
    assert ns["out"].shape == ns["lstm"].mem_seq.shape == (10, 4, 10)
