"""STDP: the exponential window derived by hand, SpikingJelly's learner on the same
spikes (synthetic and real N-MNIST), the learner's records, streaming and errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from conftest import require_shared_data
from spikeflow import functional, layers, neurons
from spikeflow.errors import ConfigurationError, ShapeError, StateError
from spikeflow.learn import STDPLearner, stdp_update


def _ones(weight):
    return torch.ones_like(weight)


def _train(t: int, at: int) -> torch.Tensor:
    x = torch.zeros(t, 1, 1, dtype=torch.float64)
    x[at] = 1.0
    return x


@pytest.mark.parametrize("gap", [0, 1, 3, 6])
def test_the_stdp_window_by_hand(gap):
    syn = nn.Linear(1, 1, bias=False).double()
    tau_pre, tau_post = 2.0, 4.0
    # pre at step 1, post `gap` steps later: potentiation (1 - 1/τ_pre)^gap
    delta, _ = stdp_update(syn, _train(10, 1), _train(10, 1 + gap), tau_pre, tau_post,
                           _ones, _ones)  # fmt: skip
    expected = (1 - 1 / tau_pre) ** gap - (1.0 if gap == 0 else 0.0)  # k = 0: both
    assert float(delta) == pytest.approx(expected, abs=1e-15)
    # the reverse order: depression (1 - 1/τ_post)^gap
    delta, _ = stdp_update(syn, _train(10, 1 + gap), _train(10, 1), tau_pre, tau_post,
                           _ones, _ones)  # fmt: skip
    expected = (1.0 if gap == 0 else 0.0) - (1 - 1 / tau_post) ** gap
    assert float(delta) == pytest.approx(expected, abs=1e-15)


def test_weight_dependence_scales_each_side():
    syn = nn.Linear(1, 1, bias=False).double()
    with torch.no_grad():
        syn.weight.fill_(0.25)
    delta, _ = stdp_update(syn, _train(5, 0), _train(5, 2), 2.0, 2.0, lambda w: 3 * w,
                           lambda w: 1 - w)  # fmt: skip
    assert float(delta) == pytest.approx(0.75 * 0.25)  # f_post(w)·(1/2)^2
    delta, _ = stdp_update(syn, _train(5, 2), _train(5, 0), 2.0, 2.0, lambda w: 3 * w,
                           lambda w: 1 - w)  # fmt: skip
    assert float(delta) == pytest.approx(-0.75 * 0.25)  # -f_pre(w)·(1/2)^2


sj = pytest.importorskip(
    "spikingjelly.activation_based.learning",
    reason="SpikingJelly (installed by scripts/setup.sh test) is needed",
)
sj_layer = pytest.importorskip("spikingjelly.activation_based.layer")
sj_neuron = pytest.importorskip("spikingjelly.activation_based.neuron")

SYNAPSES = {
    "linear": (lambda: sj_layer.Linear(12, 5, bias=False, step_mode="m"), (8, 3, 12)),
    "conv2d_stride_pad": (
        lambda: sj_layer.Conv2d(2, 4, 3, stride=2, padding=1, bias=False, step_mode="m"),
        (8, 3, 2, 9, 9),
    ),
    "conv2d_rect_circular": (
        lambda: sj_layer.Conv2d(2, 3, (3, 2), stride=(1, 2), padding=(1, 0), bias=False,
                                padding_mode="circular", step_mode="m"),
        (6, 2, 2, 7, 8),
    ),
    "conv1d": (
        lambda: sj_layer.Conv1d(3, 4, 3, padding=2, bias=False, step_mode="m"), (7, 2, 3, 11)
    ),
}  # fmt: skip


def _peer_update(synapse, x, f_pre, f_post, tau_pre=2.0, tau_post=4.0):
    neuron = sj_neuron.IFNode(step_mode="m", v_threshold=0.3)
    learner = sj.STDPLearner("m", synapse, neuron, tau_pre=tau_pre, tau_post=tau_post,
                             f_pre=f_pre, f_post=f_post)  # fmt: skip
    with torch.no_grad():
        out = neuron(synapse(x))
    delta = learner.step(on_grad=False)
    learner.close()
    return out, delta


@pytest.mark.parametrize("name", sorted(SYNAPSES))
def test_equal_to_spikingjelly(name):
    torch.manual_seed(1)
    build, shape = SYNAPSES[name]
    synapse = build().double()
    x = (torch.rand(*shape) < 0.4).double()

    def f_pre(w):
        return w.abs() + 0.1

    def f_post(w):
        return 1 - w

    out, expected = _peer_update(synapse, x, f_pre, f_post)
    assert 0 < float(out.mean()) < 1
    delta, _ = stdp_update(synapse, x, out, 2.0, 4.0, f_pre, f_post)
    torch.testing.assert_close(delta, expected, rtol=1e-13, atol=1e-12)


def test_equal_to_spikingjelly_on_real_nmnist_frames():
    from spikeflow.data import NMNIST

    root = require_shared_data("nmnist-small")
    data = NMNIST(root, train=False, data_type="frame", frames_number=10, split_by="number")
    frames = torch.stack([data[i][0] for i in range(8)], 1).double()  # [T=10, B=8, 2, 34, 34]
    spikes = (frames > 0).double()
    torch.manual_seed(2)
    synapse = sj_layer.Conv2d(2, 16, 5, stride=1, padding=2, bias=False, step_mode="m")
    synapse = synapse.double()
    out, expected = _peer_update(synapse, spikes, lambda w: w, lambda w: w, 5.0, 5.0)
    delta, _ = stdp_update(synapse, spikes, out, 5.0, 5.0)
    assert float(out.sum()) > 100
    torch.testing.assert_close(delta, expected, rtol=1e-12, atol=1e-10)


# -- the learner ----------------------------------------------------------------------


def _network(step_mode="m"):
    torch.manual_seed(3)
    conv = layers.Conv2d(2, 4, 3, padding=1, bias=False, step_mode=step_mode).double()
    lif = neurons.LIFNode(tau=2.0, v_threshold=0.5, step_mode=step_mode)
    return nn.Sequential(conv, lif), conv, lif


def test_the_learner_records_a_spikeflow_network_and_fills_the_gradient():
    net, conv, lif = _network()
    learner = STDPLearner(conv, lif, tau_pre=2.0, tau_post=2.0)
    x = (torch.rand(6, 3, 2, 8, 8) < 0.5).double()
    with torch.no_grad():
        out = net(x)
    expected, _ = stdp_update(conv, x, out, 2.0, 2.0)
    assert float(expected.abs().sum()) > 0
    assert torch.equal(learner.step(on_grad=False), expected)
    assert learner.step() is None  # nothing recorded since
    with torch.no_grad():
        net(x)
        net(x)  # a second sequence: its traces start at zero again
    learner.step(scale=0.5)
    torch.testing.assert_close(conv.weight.grad, -expected, rtol=1e-14, atol=1e-14)
    before = conv.weight.detach().clone()
    torch.optim.SGD(conv.parameters(), lr=0.01).step()  # w += 0.01·Δw
    torch.testing.assert_close(conv.weight.detach(), before + 0.01 * expected)
    learner.close()
    with torch.no_grad():
        net(x)
    assert learner.closed
    with pytest.raises(StateError, match="closed"):
        learner.step()


def test_single_steps_continue_the_traces_as_one_sequence():
    x = (torch.rand(6, 3, 2, 8, 8) < 0.5).double()
    net, conv, lif = _network("m")
    learner = STDPLearner(conv, lif, tau_pre=3.0, tau_post=2.0)
    with torch.no_grad():
        net(x)
    whole = learner.step(on_grad=False)
    net, conv, lif = _network("s")
    learner = STDPLearner(conv, lif, tau_pre=3.0, tau_post=2.0)
    with functional.streaming(net), torch.no_grad():
        for t, x_t in enumerate(x):
            net(x_t)
            if t == 2:
                first = learner.step(on_grad=False)  # learn part-way: traces carry
    rest = learner.step(on_grad=False)
    torch.testing.assert_close(first + rest, whole, rtol=1e-14, atol=1e-13)


def test_the_traces_are_spikingjellys_trace_pre_and_trace_post():
    # SpikingJelly's stdp_trace example plots learner.trace_pre / trace_post step by step
    torch.manual_seed(4)
    x = (torch.rand(12, 2, 4) > 0.6).double()
    theirs_fc = sj_layer.Linear(4, 3, bias=False).double()
    nn.init.constant_(theirs_fc.weight, 0.6)
    theirs_sn = sj_neuron.IFNode(v_threshold=0.5)
    theirs = sj.STDPLearner("s", theirs_fc, theirs_sn, tau_pre=2.0, tau_post=3.0)
    fc = layers.Linear(4, 3, bias=False, step_mode="s").double()
    nn.init.constant_(fc.weight, 0.6)
    sn = neurons.IFNode(v_threshold=0.5, step_mode="s")
    net = nn.Sequential(fc, sn)
    learner = STDPLearner(fc, sn, tau_pre=2.0, tau_post=3.0)
    assert learner.trace_pre is None and learner.trace_post is None
    fired = 0.0
    with torch.no_grad(), functional.streaming(net):
        for x_t in x:
            theirs_sn(theirs_fc(x_t))
            theirs.step(on_grad=False)
            fired += float(net(x_t).sum())
            learner.step(on_grad=False)
            assert learner.trace_pre.shape == (2, 4) and learner.trace_post.shape == (2, 3)
            torch.testing.assert_close(learner.trace_pre, theirs.trace_pre, rtol=0, atol=1e-15)
            torch.testing.assert_close(learner.trace_post, theirs.trace_post, rtol=0, atol=1e-15)
    assert fired > 0
    theirs.close()
    learner.reset()
    assert learner.trace_pre is None and learner.trace_post is None


def test_explicit_state_runs_continue_the_traces_as_streaming_does():
    """A step loop of functional.run is one sequence for the learner too (its traces
    restarted at every step: the neurons are not streaming there)."""
    x = (torch.rand(6, 3, 2, 8, 8) < 0.5).double()
    net, conv, lif = _network("m")
    learner = STDPLearner(conv, lif, tau_pre=3.0, tau_post=2.0)
    with torch.no_grad():
        net(x)
    whole = learner.step(on_grad=False)
    net, conv, lif = _network("s")
    learner = STDPLearner(conv, lif, tau_pre=3.0, tau_post=2.0)
    state = None
    with torch.no_grad():
        for x_t in x:
            _, state = functional.run(net, x_t, state)
    torch.testing.assert_close(learner.step(on_grad=False), whole, rtol=1e-14, atol=1e-13)


def _whole_then_chunks(net, learner, x):
    """Δw of ``x`` as one multi-step call, then streamed in two chunks."""
    with torch.no_grad():
        net(x)
    whole = learner.step(on_grad=False)
    with functional.streaming(net), torch.no_grad():
        net(x[:3])
        net(x[3:])
    return whole, learner.step(on_grad=False)


def test_chunks_of_a_streamed_sequence_continue_the_traces():
    x = (torch.rand(8, 2, 2, 6, 6) < 0.5).double()
    net, conv, lif = _network()
    learner = STDPLearner(conv, lif, tau_pre=2.0, tau_post=2.0)
    whole, chunked = _whole_then_chunks(net, learner, x)
    torch.testing.assert_close(chunked, whole, rtol=1e-14, atol=1e-13)
    # a reset between two streamed sequences starts the traces again, as the neurons
    with functional.streaming(net), torch.no_grad():
        net(x)
        functional.reset_net(net)
        net(x)
    torch.testing.assert_close(learner.step(on_grad=False), 2 * whole, rtol=1e-14, atol=1e-13)


def test_refused_layers_and_arguments():
    lif = neurons.LIFNode()
    with pytest.raises(ConfigurationError, match=r"nn\.Linear, nn\.Conv1d and nn\.Conv2d"):
        STDPLearner(nn.Conv3d(1, 1, 3), lif, 2.0, 2.0)
    for bad in (0.5, math.nan, "2"):
        with pytest.raises(ConfigurationError, match="tau_pre"):
            STDPLearner(nn.Linear(2, 2), lif, bad, 2.0)
    syn = nn.Linear(3, 2)
    with pytest.raises(ShapeError, match=r"\[T, B, \.\.\.\]"):
        stdp_update(syn, torch.zeros(4, 3), torch.zeros(4, 2), 2.0, 2.0)
    conv = nn.Conv2d(1, 1, 3)
    with pytest.raises(ShapeError, match="must be the layer's output"):
        stdp_update(conv, torch.zeros(2, 1, 1, 5, 5), torch.zeros(2, 1, 1, 5, 5), 2.0, 2.0)


def test_the_synapse_and_the_neuron_must_run_together():
    _, conv, lif = _network()
    learner = STDPLearner(conv, lif, tau_pre=2.0, tau_post=2.0)
    with torch.no_grad():
        conv(torch.zeros(2, 1, 2, 4, 4, dtype=torch.float64))
    with pytest.raises(StateError, match="synapse ran 1 times and the neuron 0 times"):
        learner.step()
    learner.reset()
    assert learner.step() is None


# -- found in review ------------------------------------------------------------------


def test_linear_steps_with_extra_dims_fold_them_into_the_batch():
    torch.manual_seed(4)
    x = (torch.rand(6, 2, 3, 5) < 0.5).double()  # [T, B, N, in]

    def build(mode):
        torch.manual_seed(5)
        fc = layers.Linear(5, 4, bias=False, step_mode=mode).double()
        lif = neurons.LIFNode(tau=2.0, v_threshold=0.4, step_mode=mode)
        return nn.Sequential(fc, lif), fc, lif

    net, fc, lif = build("m")
    learner = STDPLearner(fc, lif, tau_pre=2.0, tau_post=3.0)
    with torch.no_grad():
        out = net(x)
    whole = learner.step(on_grad=False)
    flat, _ = stdp_update(fc, x.reshape(6, 6, 5), out.reshape(6, 6, 4), 2.0, 3.0)
    torch.testing.assert_close(whole, flat, rtol=1e-14, atol=1e-14)
    assert float(out.sum()) > 0
    net, fc, lif = build("s")
    learner = STDPLearner(fc, lif, tau_pre=2.0, tau_post=3.0)
    with functional.streaming(net), torch.no_grad():
        for x_t in x:  # steps [B, N, in]: one step each, not a sequence of B steps
            net(x_t)
    torch.testing.assert_close(learner.step(on_grad=False), whole, rtol=1e-14, atol=1e-14)


def test_a_neuron_container_with_a_stateless_module_still_streams():
    x = (torch.rand(8, 2, 2, 6, 6) < 0.5).double()
    torch.manual_seed(3)
    conv = layers.Conv2d(2, 4, 3, padding=1, bias=False).double()
    block = nn.Sequential(neurons.LIFNode(tau=2.0, v_threshold=0.5), layers.Dropout(0.2))
    net = nn.Sequential(conv, block).eval()  # dropout keeps no state in eval mode
    learner = STDPLearner(conv, block, tau_pre=2.0, tau_post=2.0)
    whole, chunked = _whole_then_chunks(net, learner, x)
    torch.testing.assert_close(chunked, whole, rtol=1e-14, atol=1e-13)


def test_sums_run_in_float32_or_wider_outside_autocast():
    torch.manual_seed(6)
    syn = nn.Linear(64, 32, bias=False)
    pre = (torch.rand(20, 16, 64) < 0.3).float()
    post = (torch.rand(20, 16, 32) < 0.3).float()
    reference, _ = stdp_update(syn.double(), pre.double(), post.double(), 2.0, 2.0)
    syn.float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        delta, _ = stdp_update(syn, pre, post, 2.0, 2.0)
    torch.testing.assert_close(delta.double(), reference, rtol=1e-5, atol=1e-5)
    # float16 weights: sums of 300 x 256 coincident spikes would overflow float16
    half = nn.Linear(1, 1, bias=False).half()
    ones = torch.ones(300, 256, 1, dtype=torch.float16)
    delta, _ = stdp_update(half, ones, ones, 2.0, 2.0, lambda w: 1.0, lambda w: 1.0)
    assert delta.dtype == torch.float16 and float(delta) == 0.0


def test_dilation_and_reflect_padding_against_a_loop_over_positions():
    torch.manual_seed(7)
    conv = nn.Conv2d(2, 3, 3, stride=2, padding=2, dilation=2, padding_mode="reflect",
                     bias=False).double()  # fmt: skip
    pre = (torch.rand(4, 2, 2, 9, 8) < 0.4).double()
    with torch.no_grad():
        post = (conv(pre.flatten(0, 1)).unflatten(0, (4, 2)) > 0.2).double()
    delta, _ = stdp_update(conv, pre, post, 2.0, 3.0, _ones, _ones)
    # brute force: every output position pairs with the input pixels its kernel taps
    x = torch.zeros_like(pre)
    y = torch.zeros_like(post)
    expected = torch.zeros_like(conv.weight)
    padded_pre = torch.nn.functional.pad(pre.flatten(0, 1), (2, 2, 2, 2), mode="reflect")
    for t in range(4):
        x[t] = (x[t - 1] * 0.5 if t else 0) + pre[t]
        y[t] = (y[t - 1] * (2 / 3) if t else 0) + post[t]
    padded_x = torch.nn.functional.pad(x.flatten(0, 1), (2, 2, 2, 2), mode="reflect")
    s_post, y_all = post.flatten(0, 1), y.flatten(0, 1)
    for n in range(s_post.shape[0]):
        for i in range(s_post.shape[2]):
            for j in range(s_post.shape[3]):
                rows = slice(2 * i, 2 * i + 5, 2)
                cols = slice(2 * j, 2 * j + 5, 2)
                patch_x = padded_x[n, :, rows, cols]
                patch_s = padded_pre[n, :, rows, cols]
                expected += s_post[n, :, i, j, None, None, None] * patch_x
                expected -= y_all[n, :, i, j, None, None, None] * patch_s
    torch.testing.assert_close(delta, expected, rtol=1e-13, atol=1e-12)


def test_spikes_that_do_not_fit_are_refused_by_name():
    fc = nn.Linear(4, 3)
    with pytest.raises(ShapeError, match=r"same leading dims with 3 features"):
        stdp_update(fc, torch.zeros(5, 2, 4), torch.zeros(5, 1, 3), 2.0, 2.0)
    with pytest.raises(ShapeError, match="T >= 1"):
        stdp_update(fc, torch.zeros(0, 2, 4), torch.zeros(0, 2, 3), 2.0, 2.0)
    with pytest.raises(ShapeError, match="carried presynaptic trace"):
        stdp_update(fc, torch.zeros(5, 2, 4), torch.zeros(5, 2, 3), 2.0, 2.0,
                    traces=(torch.zeros(1, 4), None))  # fmt: skip
    conv = nn.Conv2d(1, 2, 3)
    with pytest.raises(ShapeError, match=r"\(2, 1, 2, 4, 4\); got \(2, 1, 2, 2, 8\)"):
        stdp_update(conv, torch.zeros(2, 1, 1, 6, 6), torch.zeros(2, 1, 2, 2, 8), 2.0, 2.0)
    with pytest.raises(ShapeError, match="1 input channels"):
        stdp_update(conv, torch.zeros(2, 1, 3, 6, 6), torch.zeros(2, 1, 2, 4, 4), 2.0, 2.0)


class _TwoOutputs(nn.Module):
    def forward(self, x):
        return (x > 0).to(x.dtype), x


def test_a_neuron_returning_a_tuple_is_named():
    fc = nn.Linear(3, 2)
    learner = STDPLearner(fc, _TwoOutputs(), 2.0, 2.0)
    with pytest.raises(ConfigurationError, match="_TwoOutputs returned tuple"):
        learner.neuron(fc(torch.zeros(1, 3)))
    del learner


def test_copies_do_not_record_pause_and_failed_steps_keep_the_records():
    import copy
    import pickle

    net, conv, lif = _network()
    learner = STDPLearner(conv, lif, 2.0, 2.0, f_pre=lambda w: w, f_post=lambda w: 1 - w)
    twin = copy.deepcopy(net)
    x = (torch.rand(3, 1, 2, 5, 5) < 0.5).double()
    with torch.no_grad():
        twin(x)
    assert learner.step() is None  # the copy's forward was not recorded
    pickle.loads(pickle.dumps(net))  # the hooks pickle (inert), the lambdas stay out
    learner.recording = False
    with torch.no_grad():
        net(x)
    assert learner.step() is None
    learner.recording = True
    with torch.no_grad():
        net(x)
    learner.f_pre = lambda w: 1 / 0
    with pytest.raises(ZeroDivisionError):
        learner.step()
    learner.f_pre = lambda w: w
    assert learner.step(on_grad=False) is not None  # the records were kept
