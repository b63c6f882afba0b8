"""Step modes, explicit streaming state and the no-state-leak property."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikeflow import functional as F
from spikeflow.errors import StateError
from spikeflow.neurons import IFNode, LIFNode, ParametricLIFNode


def neurons():
    return [
        IFNode(),
        IFNode(v_reset=None),
        LIFNode(tau=2.0),
        LIFNode(tau=3.0, decay_input=False, v_reset=None, detach_reset=True),
        ParametricLIFNode(init_tau=2.5),
    ]


@pytest.mark.parametrize("node", neurons(), ids=lambda n: type(n).__name__)
def test_multistep_equals_loop_of_single_steps(node):
    x = torch.rand(9, 4, 5) * 1.5
    multi = node(x)
    F.set_step_mode(node, "s")
    with F.streaming(node):
        single = torch.stack([node(x[t]) for t in range(x.shape[0])])
    assert torch.equal(multi, single)


@pytest.mark.parametrize("node", neurons(), ids=lambda n: type(n).__name__)
def test_streaming_chunks_equal_one_call(node):
    x = torch.rand(20, 3, 6) * 1.5
    node.store_v_seq = True
    whole = node(x)
    v_whole = node.v_seq
    with F.streaming(node):
        parts = [node(chunk) for chunk in x.split([7, 1, 12])]
        final_v = node.v.clone()
    assert torch.equal(torch.cat(parts), whole)
    torch.testing.assert_close(final_v, v_whole[-1])
    assert node.state is None  # reset on exit


def test_streaming_gradients_equal_one_call():
    x = torch.rand(12, 4, 3) * 1.5
    x1 = x.clone().requires_grad_()
    node = LIFNode()
    node(x1).sum().backward()
    x2 = x.clone().requires_grad_()
    with F.streaming(node):
        out = torch.cat([node(c) for c in x2.split(5)])
    out.sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad)


def test_two_batches_need_no_reset():
    """Design principle 3: the second batch is not influenced by the first."""
    net = nn.Sequential(nn.Linear(5, 8), LIFNode(), nn.Linear(8, 3), LIFNode())
    a = torch.rand(6, 4, 5) * 3
    b = torch.rand(6, 2, 5) * 3  # a different batch size as well
    out_b_fresh = net(b)
    net(a).sum().backward()  # a training step on a
    out_b_after = net(b)
    assert torch.equal(out_b_fresh, out_b_after)
    # ...and a second backward does not hit "backward through the graph a second time".
    net(a).sum().backward()


def test_single_step_without_streaming_is_an_error():
    node = LIFNode(step_mode="s")
    with pytest.raises(StateError, match="streaming"):
        node(torch.rand(4, 3))


def test_streaming_with_a_new_batch_shape_asks_for_reset():
    node = LIFNode()
    F.set_streaming(node, True)
    node(torch.rand(3, 4, 5))
    with pytest.raises(StateError, match="reset_net"):
        node(torch.rand(3, 2, 5))
    F.reset_net(node)
    node(torch.rand(3, 2, 5))  # fine after a reset
    F.set_streaming(node, False)
    assert node.state is None


def test_streaming_state_of_batch_one_is_not_broadcast_to_a_larger_batch():
    # A carried [1, N] state would broadcast over [3, N]: it belongs to an earlier
    # sequence and must be refused, not spread over the new samples.
    node = LIFNode(step_mode="s")
    with F.streaming(node):
        node(torch.rand(1, 5))
        with pytest.raises(StateError, match="reset_net"):
            node(torch.rand(3, 5))


def test_reset_net_restarts_the_stream():
    x = torch.rand(5, 2, 3) * 2
    node = IFNode(v_reset=None)
    with F.streaming(node):
        first = node(x)
        F.reset_net(node)
        again = node(x)
    assert torch.equal(first, again)


def test_detach_net_truncates_bptt():
    x = (torch.rand(10, 2, 3) * 2).requires_grad_()
    node = LIFNode()
    with F.streaming(node):
        y1 = node(x[:5])
        F.detach_net(node)
        y2 = node(x[5:])
        y2.sum().backward()
    assert x.grad[:5].abs().sum() == 0  # no gradient crosses the cut
    assert x.grad[5:].abs().sum() > 0
    assert y1.shape == y2.shape


def test_set_step_mode_and_streaming_reach_nested_modules():
    net = nn.Sequential(nn.Linear(3, 3), nn.Sequential(LIFNode(), IFNode()))
    F.set_step_mode(net, "s")
    assert [m.step_mode for m in F.memory_modules(net)] == ["s", "s"]
    with F.streaming(net):
        assert all(m.streaming for m in F.memory_modules(net))
        net(torch.rand(2, 3))
        assert all(m.state is not None for m in F.memory_modules(net))
    assert all(not m.streaming and m.state is None for m in F.memory_modules(net))


def test_streaming_context_restores_previous_flags():
    node = LIFNode()
    F.set_streaming(node, True)
    with F.streaming(node):
        pass
    assert node.streaming is True


def test_store_v_seq_records_membrane_after_reset():
    node = IFNode(store_v_seq=True)
    node(torch.tensor([[0.6], [0.6], [0.1]]))
    torch.testing.assert_close(node.v_seq.view(-1), torch.tensor([0.6, 0.0, 0.1]))


def test_set_step_mode_leaves_container_children_per_step():
    from spikeflow import layers

    inner = LIFNode(step_mode="s")
    net = nn.Sequential(
        layers.SeqToANNContainer(nn.Linear(3, 3)),
        layers.MultiStepContainer(inner),
        layers.StepModeContainer(nn.Linear(3, 3), stateless=True),
        LIFNode(),
    )
    F.set_step_mode(net, "s")
    assert inner.step_mode == "s" and net[3].step_mode == "s" and net[2].step_mode == "s"
    assert net[0].step_mode == "m" and net[1].step_mode == "m"
    F.set_step_mode(net, "m")
    assert inner.step_mode == "s" and net[3].step_mode == "m" and net[2].step_mode == "m"


@pytest.mark.parametrize("backend", ["torch", "cpu"])
def test_a_model_copied_after_a_training_step_keeps_values_without_the_graph(backend):
    """copy.deepcopy (an EMA, the NIR export) of a net whose neuron recorded a
    differentiable v_seq and carries a differentiable streaming state: PyTorch cannot
    deep-copy non-leaf tensors, so the copy takes their values, detached."""
    import copy

    net = nn.Sequential(nn.Linear(4, 3), LIFNode(store_v_seq=True, backend=backend))
    x = torch.rand(5, 2, 4) * 2
    with F.streaming(net):
        out = net(x)
        (out.sum() + net[1].v_seq.pow(2).sum()).backward()
        twin = copy.deepcopy(net)
        assert net[1].v_seq.grad_fn is not None  # the original is untouched
        assert net[1].state["v"].grad_fn is not None
        assert twin[1].v_seq.grad_fn is None and torch.equal(twin[1].v_seq, net[1].v_seq)
        assert torch.equal(twin[1].state["v"], net[1].state["v"])
        # The copy streams on from the same state as the original.
        with torch.no_grad():
            assert torch.equal(twin(x), net(x))


def test_a_parametrized_neuron_is_deep_copied_after_a_training_step():
    """torch.nn.utils.parametrize gives a module its own __deepcopy__ unless its class
    has one, which would bypass MemoryModule.__getstate__: MemoryModule defines it."""
    import copy

    from torch.nn.utils import parametrize

    class Doubled(nn.Module):
        def forward(self, w):
            return 2 * w

    node = ParametricLIFNode(store_v_seq=True)
    parametrize.register_parametrization(node, "w", Doubled())
    x = torch.rand(5, 2, 3) * 2
    (node(x).sum() + node.v_seq.sum()).backward()
    twin = copy.deepcopy(node)
    assert twin.v_seq.grad_fn is None and torch.equal(twin.v_seq, node.v_seq)
    assert torch.equal(twin.w, node.w) and twin.parametrizations.w is not node.parametrizations.w
    with torch.no_grad():
        assert torch.equal(twin(x), node(x))


def test_a_deep_copy_keeps_other_references_to_the_recorded_tensors_shared():
    """The detached copies of a neuron's v_seq and carried state are registered in
    deepcopy's memo: a holder of the same tensor (a monitor) shares the one copy."""
    import copy

    node = LIFNode(store_v_seq=True)
    holder = nn.Module()
    x = torch.rand(4, 2, 3, requires_grad=True)
    with F.streaming(node):
        node(x).sum().backward()
        holder.v_seq, holder.v = node.v_seq, node.state["v"]
        net_copy, holder_copy = copy.deepcopy((node, holder))
        assert net_copy.v_seq is holder_copy.v_seq and net_copy.state["v"] is holder_copy.v
        assert net_copy.v_seq.grad_fn is None
