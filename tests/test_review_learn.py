"""Review of spikeflow.learn: empty batches and sequences, the e-prop rule's feedback
matrix on the network's device; the STDP learner in time folds, after a pause, under data
parallelism and checkpoint recomputation; winner-take-all thresholds under .half()."""

from __future__ import annotations

import threading

import pytest
import torch
from torch import nn

from spikeflow import functional, layers, neurons
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.learn import (
    EProp,
    EPropRSNN,
    STDPLearner,
    WinnerTakeAll,
    eligibility_stdp_update,
    stdp_update,
)


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_carried_eligibility_of_an_empty_batch(kind: str) -> None:
    """A convolution's per-sample eligibility of a batch of 0 samples stacked an empty
    list (RuntimeError); the linear layer's gave zeros. Both: no change, [0, *w]."""
    if kind == "conv":
        synapse = nn.Conv2d(2, 3, 3, padding=1, bias=False).double()
        pre, post = torch.zeros(4, 0, 2, 5, 5), torch.zeros(4, 0, 3, 5, 5)
    else:
        synapse = nn.Linear(5, 3, bias=False).double()
        pre, post = torch.zeros(4, 0, 5), torch.zeros(4, 0, 3)
    delta, (x, y), z = eligibility_stdp_update(
        synapse, pre.double(), post.double(), 1.0, 2.0, 2.0, 3.0
    )
    assert torch.equal(delta, torch.zeros_like(synapse.weight))
    assert z.shape == (0, *synapse.weight.shape)
    assert x.shape == pre.shape[1:] and y.shape == post.shape[1:]


def test_a_sequence_without_steps_is_named() -> None:
    """T = 0: the network's forward failed with an IndexError and the rule's run with
    "finish(): no step was run"."""
    net = EPropRSNN(3, 2, n_lif=3, n_alif=2)
    with pytest.raises(ShapeError, match=r"T >= 1.*\(0, 2, 3\)"):
        net(torch.zeros(0, 2, 3))
    rule = EProp(net)
    with pytest.raises(ShapeError, match=r"T >= 1.*\(0, 2, 3\)"):
        rule.run(torch.zeros(0, 2, 3), torch.zeros(2, dtype=torch.long))
    assert rule.state_tensors() == {}


@pytest.mark.parametrize("feedback", ["random", "adaptive"])
def test_a_given_feedback_matrix_goes_to_the_networks_device(feedback: str) -> None:
    """A ``feedback_weight`` drawn on the CPU for a network elsewhere stayed on the CPU
    (only its dtype followed the network), so the first learning step failed on a
    device mismatch; the drawn default already followed the device."""
    net = EPropRSNN(3, 2, n_lif=4).to("meta")
    rule = EProp(net, feedback=feedback, feedback_weight=torch.randn(4, 2, dtype=torch.float64))
    assert rule.feedback_weight.device == net.output.weight.device
    assert rule.feedback_weight.dtype == net.output.weight.dtype
    drawn = EProp(net, feedback=feedback)
    assert drawn.feedback_weight.device == net.output.weight.device


# -- the STDP learner: folds, pauses, data parallelism, recomputation --------------------


class _Threshold(nn.Module):
    """A stateless spike function (no spikeflow module): spikes where the input > 0.3."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x > 0.3).to(x.dtype)


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_a_plain_layer_in_a_time_fold_is_recorded_as_a_sequence(kind: str) -> None:
    """A plain nn.Linear/nn.Conv2d in SeqToANNContainer sees [T*B, ...]: step() raised a
    ShapeError about the spikes not fitting. The fold is undone in the record."""
    torch.manual_seed(11)
    if kind == "linear":
        synapse = nn.Linear(5, 4, bias=False).double()
        x = (torch.rand(6, 3, 5) < 0.5).double()
    else:
        synapse = nn.Conv2d(2, 3, 3, padding=1, bias=False).double()
        x = (torch.rand(6, 3, 2, 5, 5) < 0.5).double()
    lif = neurons.LIFNode(tau=2.0, v_threshold=0.3)
    net = nn.Sequential(layers.SeqToANNContainer(synapse), lif)
    learner = STDPLearner(synapse, lif, tau_pre=2.0, tau_post=3.0)
    with torch.no_grad():
        out = net(x)
    assert 0 < float(out.mean()) < 0.9
    expected, _ = stdp_update(synapse, x, out, 2.0, 3.0)
    torch.testing.assert_close(learner.step(on_grad=False), expected, rtol=1e-14, atol=1e-14)
    # a stateless neuron inside the fold: each call is a whole sequence, fresh traces
    spike = _Threshold()
    learner.close()
    learner = STDPLearner(synapse, spike, tau_pre=2.0, tau_post=3.0)
    with torch.no_grad():
        out = functional.seq_to_ann_forward(x, nn.Sequential(synapse, spike))
        functional.seq_to_ann_forward(x, nn.Sequential(synapse, spike))
    expected, _ = stdp_update(synapse, x, out, 2.0, 3.0)
    torch.testing.assert_close(learner.step(on_grad=False), 2 * expected, rtol=1e-14,
                               atol=1e-13)  # fmt: skip


def test_time_folded_where_the_learner_cannot_see_it_is_named() -> None:
    fc = nn.Linear(5, 4, bias=False)
    lif = neurons.LIFNode(tau=2.0)
    learner = STDPLearner(fc, lif, tau_pre=2.0, tau_post=2.0)
    x = torch.ones(6, 3, 5)
    with torch.no_grad():
        lif(fc(x.flatten(0, 1)).unflatten(0, (6, 3)))  # a fold of the user's own
    with pytest.raises(ShapeError, match=r"synapse's input has shape \(18, 5\).*folded"):
        learner.step()
    assert len(learner._pre) == 1  # kept


def _streamed(steps: torch.Tensor, pause: range, toggle_only: bool = False):
    """Δw of a streamed LIF layer with recording off for the steps in ``pause``, and
    the layer's output spikes."""
    torch.manual_seed(12)
    fc = layers.Linear(5, 4, bias=False, step_mode="s").double()
    lif = neurons.LIFNode(tau=2.0, v_threshold=0.3, step_mode="s")
    net = nn.Sequential(fc, lif)
    learner = STDPLearner(fc, lif, tau_pre=3.0, tau_post=2.0)
    outs = []
    with functional.streaming(net), torch.no_grad():
        for t, x_t in enumerate(steps):
            learner.recording = t not in pause
            if toggle_only:  # paused and resumed with no call in between
                learner.recording = False
                learner.recording = True
            outs.append(net(x_t))
    return learner.step(on_grad=False), torch.stack(outs), fc


def test_recording_resumed_after_a_pause_starts_fresh_traces() -> None:
    """Steps run while paused were not seen: the traces the learner carried were
    continued across them as if the steps after the pause followed those before it."""
    x = (torch.rand(9, 3, 5, generator=torch.Generator().manual_seed(1)) < 0.5).double()
    got, out, fc = _streamed(x, range(3, 5))
    assert 0 < float(out.mean()) < 0.9
    before, _ = stdp_update(fc, x[:3], out[:3], 3.0, 2.0)
    after, _ = stdp_update(fc, x[5:], out[5:], 3.0, 2.0)
    torch.testing.assert_close(got, before + after, rtol=1e-14, atol=1e-13)
    continued, _ = stdp_update(fc, torch.cat([x[:3], x[5:]]), torch.cat([out[:3], out[5:]]),
                               3.0, 2.0)  # fmt: skip
    assert not torch.allclose(got, continued)
    # a pause in which the network did not run misses nothing: the traces carry on
    got, out, fc = _streamed(x, range(0), toggle_only=True)
    whole, _ = stdp_update(fc, x, out, 3.0, 2.0)
    torch.testing.assert_close(got, whole, rtol=1e-14, atol=1e-13)


def test_data_parallel_replicas_are_refused() -> None:
    """nn.DataParallel runs shallow copies of the modules (sharing the hooks) in one
    thread per device: their records interleave. The copy's call is refused."""
    fc = layers.Linear(5, 4, bias=False)
    lif = neurons.LIFNode(tau=2.0)
    learner = STDPLearner(fc, lif, tau_pre=2.0, tau_post=2.0)
    replica = fc._replicate_for_data_parallel()  # what nn.parallel.replicate makes
    with pytest.raises(ConfigurationError, match=r"copy of the synapse.*DataParallel"):
        replica(torch.ones(2, 3, 5))
    replica = lif._replicate_for_data_parallel()
    with pytest.raises(ConfigurationError, match=r"copy of the neuron.*DataParallel"):
        replica(torch.ones(2, 3, 4))
    learner.recording = False  # paused: a replica's evaluation is no concern of it
    replica(torch.ones(2, 3, 4))


#: The gloo ranks below are threads sharing torch's global generator: without this lock
#: one rank's draws could fall between the other's seeding and drawing.
_GLOBAL_RNG = threading.Lock()


def _learn_in_thread(rank: int, store, x: torch.Tensor | None, out: dict, **kwargs) -> None:
    import torch.distributed as dist

    group = dist.ProcessGroupGloo(store, rank, 2)
    with _GLOBAL_RNG:  # the ranks are threads: one seeds and draws at a time
        torch.manual_seed(13)
        fc = layers.Linear(5, 4, bias=False).double()
    lif = neurons.LIFNode(tau=2.0, v_threshold=0.3)
    learner = STDPLearner(fc, lif, tau_pre=2.0, tau_post=3.0, process_group=group, **kwargs)
    if x is not None:
        with torch.no_grad():
            nn.Sequential(fc, lif)(x)
    out[rank] = learner.step(on_grad=False)


def _gloo_ranks(target, per_rank: list, **kwargs) -> dict:
    """Run ``target(rank, store, per_rank[rank], out, **kwargs)`` as gloo ranks (threads
    of this process, each making its group from the shared store); ``out`` by rank."""
    import threading

    import torch.distributed as dist

    store, out = dist.HashStore(), {}
    threads = [threading.Thread(target=target, args=(rank, store, item, out), kwargs=kwargs)
               for rank, item in enumerate(per_rank)]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(out) == len(per_rank), "a rank failed"
    return out


def _two_processes(shards: list, **kwargs) -> dict:
    """Two gloo ranks step a learner, each on its shard."""
    return _gloo_ranks(_learn_in_thread, shards, **kwargs)


def test_processes_average_their_updates_as_ddp_averages_gradients() -> None:
    """Under DDP each process stepped its own update into .grad: the copies diverged."""
    import torch.distributed as dist

    if not dist.is_available():
        pytest.skip("torch.distributed is absent")
    x = (torch.rand(6, 4, 5, generator=torch.Generator().manual_seed(2)) < 0.5).double()
    torch.manual_seed(13)
    fc = layers.Linear(5, 4, bias=False).double()
    lif = neurons.LIFNode(tau=2.0, v_threshold=0.3)
    with torch.no_grad():
        out = nn.Sequential(fc, lif)(x)
    own = [stdp_update(fc, x[:, s], out[:, s], 2.0, 3.0)[0] for s in (slice(0, 2), slice(2, 4))]
    assert not torch.allclose(own[0], own[1])
    got = _two_processes([x[:, :2], x[:, 2:]])
    for rank in (0, 1):  # the mean: the global batch's sum divided by the processes
        torch.testing.assert_close(got[rank], (own[0] + own[1]) / 2, rtol=1e-14, atol=1e-14)
    # a process that recorded nothing still takes part (and gets the mean)
    got = _two_processes([x[:, :2], None])
    torch.testing.assert_close(got[1], own[0] / 2, rtol=1e-14, atol=1e-14)
    assert _two_processes([None, None]) == {0: None, 1: None}
    got = _two_processes([x[:, :2], x[:, 2:]], average_processes=False)
    for rank in (0, 1):
        torch.testing.assert_close(got[rank], own[rank], rtol=1e-14, atol=1e-14)
    with pytest.raises(ConfigurationError, match=r"process_group.*got str"):
        STDPLearner(fc, lif, 2.0, 2.0, process_group="gloo")


@pytest.mark.parametrize("reentrant", [False, True])
def test_torch_checkpoint_recomputation_is_not_recorded(reentrant: bool) -> None:
    """torch.utils.checkpoint runs the forward again in the backward: the learner
    recorded it as a second call (twice the update, or a mismatch of counts)."""
    from torch.utils.checkpoint import checkpoint

    torch.manual_seed(14)
    fc = layers.Linear(5, 4, bias=False).double()
    lif = neurons.LIFNode(tau=2.0, v_threshold=0.3)
    net = nn.Sequential(fc, lif)
    learner = STDPLearner(fc, lif, tau_pre=2.0, tau_post=3.0)
    x = (torch.rand(6, 3, 5) < 0.5).double().requires_grad_()
    out = checkpoint(net, x, use_reentrant=reentrant)
    out.sum().backward()  # a surrogate-gradient step beside the STDP one
    assert fc.weight.grad is not None and float(fc.weight.grad.abs().sum()) > 0
    expected, _ = stdp_update(fc, x.detach(), out.detach(), 2.0, 3.0)
    assert float(expected.abs().sum()) > 0
    torch.testing.assert_close(learner.step(on_grad=False), expected, rtol=1e-14, atol=1e-14)


def test_winner_take_all_thresholds_stay_float32_under_half() -> None:
    """model.half() turned ``theta`` into float16 (the docs: float32 or wider), which
    rounds a threshold of 10.03 to 10.03125 and cannot take a rise of 0.002 on it."""
    wta = WinnerTakeAll(3, theta_plus=0.002, theta_decay=1.0)
    net = nn.Sequential(nn.Linear(2, 3), wta)
    theta = torch.tensor([10.03, 0.1, 3.3])
    wta.theta.copy_(theta)
    for convert, dtype in ((lambda m: m.half(), torch.float32),
                           (lambda m: m.to(torch.bfloat16), torch.float32),
                           (lambda m: m.double(), torch.float64)):  # fmt: skip
        convert(net)
        assert wta.theta.dtype == dtype
        assert torch.equal(wta.theta, theta.to(dtype))
        assert "theta" in dict(wta.named_buffers())
    net.half()
    assert net[0].weight.dtype == torch.float16
    currents = torch.zeros(1, 1, 3, dtype=torch.float16)
    currents[0, 0, 0] = 100.0  # neuron 0 fires once and its threshold rises
    assert torch.equal(wta(currents)[0, 0], torch.tensor([1.0, 0, 0], dtype=torch.float16))
    assert wta.theta.dtype == torch.float32
    torch.testing.assert_close(wta.theta, theta + torch.tensor([0.002, 0, 0]))


def _wta_in_thread(rank: int, store, calls: list, out: dict, **kwargs) -> None:
    import torch.distributed as dist

    group = dist.ProcessGroupGloo(store, rank, 2)
    wta = WinnerTakeAll(4, tau=1.0, v_threshold=0.2, theta_plus=0.3, theta_decay=0.9,
                        process_group=group, **kwargs).double()  # fmt: skip
    for x in calls:
        wta(x[:, rank * 3 : rank * 3 + 3])
    out[rank] = wta.theta.clone()


def test_winner_take_all_processes_sum_their_threshold_rises() -> None:
    """Under torch.distributed each process raised theta by its own spikes only (and
    DDP's buffer broadcast then kept rank 0's): one step per call, synchronised
    processes hold exactly the thresholds of one process on the global batch."""
    import torch.distributed as dist

    if not dist.is_available():
        pytest.skip("torch.distributed is absent")
    gen = torch.Generator().manual_seed(5)
    calls = [torch.rand(1, 6, 4, generator=gen, dtype=torch.float64) for _ in range(4)]
    one = WinnerTakeAll(4, tau=1.0, v_threshold=0.2, theta_plus=0.3, theta_decay=0.9).double()
    for x in calls:
        one(x)

    def run(**kwargs) -> dict:
        return _gloo_ranks(_wta_in_thread, [calls, calls], **kwargs)

    synced = run()
    for rank in (0, 1):
        torch.testing.assert_close(synced[rank], one.theta, rtol=1e-12, atol=1e-12)
    apart = run(sync_processes=False)
    assert not torch.allclose(apart[0], apart[1])
    assert not torch.allclose(apart[0], one.theta)
    with pytest.raises(ConfigurationError, match=r"WinnerTakeAll: process_group.*got str"):
        WinnerTakeAll(3, process_group="gloo")
