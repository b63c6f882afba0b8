"""Winner-take-all membranes are state, as a spikeflow neuron's: calls start fresh
unless streaming, streamed chunks and single steps equal the whole sequence, reset_net
restarts them, functional.run carries them explicitly, and STDP learns across chunks;
the Conv1d form equals the Conv2d form on a one-row map."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from spikeflow import functional, layers
from spikeflow.errors import StateError
from spikeflow.learn import ConvWinnerTakeAll, STDPLearner, WinnerTakeAll

CHUNKS = ((0, 2), (2, 3), (3, 7), (7, 9))


def _wtas():
    conv2d = ConvWinnerTakeAll(4, tau=3.0, v_threshold=0.6, k=1, inhibition_radius=1,
                               theta_plus=0.02, theta_decay=0.9).double()  # fmt: skip
    conv1d = ConvWinnerTakeAll(4, tau=3.0, v_threshold=0.6, k=2, inhibition_radius=2,
                               theta_plus=0.02, theta_decay=0.9).double()  # fmt: skip
    dense = WinnerTakeAll(5, tau=3.0, v_threshold=0.45, k=1, theta_plus=0.1,
                          theta_decay=0.9).double()  # fmt: skip
    # a slow membrane (tau 3) under a weak current: a fresh start changes the spikes
    return [(conv2d, (2, 4, 5, 6)), (conv1d, (2, 4, 9)), (dense, (3, 5))]


@pytest.mark.parametrize("which", [0, 1, 2])
def test_streamed_chunks_and_steps_equal_the_whole_sequence(which):
    wta, step_shape = _wtas()[which]
    x = torch.rand(9, *step_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    theta0 = wta.theta.clone()
    whole = wta(x)
    theta_whole = wta.theta.clone()
    assert 0 < whole.mean() < 0.5
    # chunks, while streaming: the membranes (and thresholds) go on
    wta.theta.copy_(theta0)
    with functional.streaming(wta):
        chunked = torch.cat([wta(x[a:b]) for a, b in CHUNKS])
        assert wta.state["v"].shape == step_shape
    torch.testing.assert_close(chunked, whole, rtol=0, atol=0)
    torch.testing.assert_close(wta.theta, theta_whole, rtol=1e-15, atol=1e-15)
    # single steps, while streaming
    wta.theta.copy_(theta0)
    functional.set_step_mode(wta, "s")
    with functional.streaming(wta):
        stepped = torch.stack([wta(x_t) for x_t in x])
    torch.testing.assert_close(stepped, whole, rtol=0, atol=0)
    torch.testing.assert_close(wta.theta, theta_whole, rtol=1e-15, atol=1e-15)
    # explicit state through functional.run, chunk by chunk
    functional.set_step_mode(wta, "m")
    wta.theta.copy_(theta0)
    state, outs = None, []
    for a, b in CHUNKS:
        out, state = functional.run(wta, x[a:b], state)
        outs.append(out)
    torch.testing.assert_close(torch.cat(outs), whole, rtol=0, atol=0)


@pytest.mark.parametrize("which", [0, 1, 2])
def test_calls_start_fresh_unless_streaming_and_reset_restarts(which):
    wta, step_shape = _wtas()[which]
    wta.eval()  # fixed thresholds: the same input, the same spikes when fresh
    x = torch.rand(9, *step_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    whole = wta(x)
    fresh = torch.cat([wta(x[a:b]) for a, b in CHUNKS])  # not streaming: each chunk fresh
    assert wta.state is None
    assert not torch.equal(fresh, whole)  # the difference streaming makes
    by_hand = torch.cat([wta(x[a:b]) for a, b in CHUNKS])
    torch.testing.assert_close(by_hand, fresh, rtol=0, atol=0)
    functional.set_streaming(wta, True)
    wta(x)
    functional.reset_net(wta)  # a new sequence: membranes at zero again
    torch.testing.assert_close(wta(x), whole, rtol=0, atol=0)
    with pytest.raises(StateError, match="carried state"):  # another batch size
        wta(x[:, :1])
    functional.set_streaming(wta, False)
    functional.set_step_mode(wta, "s")
    with pytest.raises(StateError, match="streaming is off"):
        wta(x[0])


def test_the_conv1d_form_is_the_conv2d_form_on_one_row():
    one_d = ConvWinnerTakeAll(3, tau=2.0, v_threshold=0.5, k=2, inhibition_radius=2,
                              theta_plus=0.03, theta_decay=0.95).double()  # fmt: skip
    two_d = ConvWinnerTakeAll(3, tau=2.0, v_threshold=0.5, k=2, inhibition_radius=2,
                              theta_plus=0.03, theta_decay=0.95).double()  # fmt: skip
    x = torch.rand(7, 2, 3, 11, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    got = one_d(x * 1.5)
    assert got.shape == x.shape and 0 < got.mean() < 0.5
    torch.testing.assert_close(got, two_d(x[:, :, :, None] * 1.5)[:, :, :, 0], rtol=0, atol=0)
    torch.testing.assert_close(one_d.theta, two_d.theta, rtol=0, atol=0)


@pytest.mark.parametrize("conv1d", [False, True])
def test_stdp_through_a_streamed_conv_winner_take_all_equals_the_whole_sequence(conv1d):
    torch.manual_seed(4)
    if conv1d:
        conv = layers.Conv1d(2, 5, 3, padding=1, bias=False).double()
        x = (torch.rand(9, 2, 2, 12) < 0.4).double()
    else:
        conv = layers.Conv2d(2, 5, 3, padding=1, bias=False).double()
        x = (torch.rand(9, 2, 2, 6, 6) < 0.4).double()
    wta = ConvWinnerTakeAll(5, tau=4.0, v_threshold=0.4, k=1, inhibition_radius=1).double()
    net = nn.Sequential(conv, wta)
    learner = STDPLearner(conv, wta, tau_pre=3.0, tau_post=3.0)
    with torch.no_grad():
        whole_spikes = net(x)
    whole = learner.step(on_grad=False)
    with functional.streaming(net), torch.no_grad():
        chunks = []
        for a, b in CHUNKS:
            chunks.append(net(x[a:b]))
        streamed = learner.step(on_grad=False)
    torch.testing.assert_close(torch.cat(chunks), whole_spikes, rtol=0, atol=0)
    torch.testing.assert_close(streamed, whole, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("which", [0, 2])
def test_a_module_pickled_before_it_carried_state_loads_and_runs(which):
    # torch.save(model) before WinnerTakeAll became a MemoryModule pickled a dict with
    # neither `streaming` nor `_state` (nor `_step_mode`): unpickled into the new class,
    # every call, reset_net and streaming raised AttributeError
    wta, step = _wtas()[which]
    torch.manual_seed(1)
    x = torch.rand(9, *step, dtype=torch.float64)
    wta.train()
    wta(x)  # a learned theta
    old = {k: v for k, v in wta.__getstate__().items()
           if k not in ("streaming", "_state", "_step_mode", "_carried_shape")}  # fmt: skip
    loaded = type(wta).__new__(type(wta))
    loaded.__setstate__(old)  # what pickle does with the old file's dict
    assert torch.equal(loaded.theta, wta.theta) and loaded.step_mode == "m"
    fresh = copy.deepcopy(wta)
    assert torch.equal(loaded(x), fresh(x)) and torch.equal(loaded.theta, fresh.theta)
    functional.reset_net(loaded)
    with functional.streaming(loaded), functional.streaming(fresh):
        for a, b in CHUNKS:
            assert torch.equal(loaded(x[a:b]), fresh(x[a:b]))


def test_early_exit_of_a_winner_take_all_model_is_its_whole_run_cut():
    # early_exit runs one-step chunks with the state carried explicitly and drops the
    # samples that exit: the membranes must follow, or the exits are not the whole run's
    from spikeflow.inference import ExitRule, early_exit, exit_from_outputs

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(10, 4), WinnerTakeAll(4, tau=2.0, v_threshold=0.2)).eval()
    x = torch.rand(12, 16, 10)
    whole = net(x)
    for threshold in (0.3, 0.5):
        rule = ExitRule.parse(f"confidence:{threshold}", accumulate="sum")
        stepped, cut = early_exit(net, x, rule), exit_from_outputs(whole, rule)
        assert torch.equal(stepped.exit_steps, cut.exit_steps)
        assert torch.equal(stepped.outputs, cut.outputs)
        assert 1 < stepped.exit_steps.float().mean() < 12  # some exit early, not all
