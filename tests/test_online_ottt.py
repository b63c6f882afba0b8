"""OTTT (online_backward(trace_decay=...), spikeflow.training.traces): the weights learn
from presynaptic traces, checked against the hand-derived sum over steps of the
per-step output gradient times the trace, for linear and convolution layers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikeflow import layers, neurons
from spikeflow.errors import ConfigurationError
from spikeflow.losses import get_loss
from spikeflow.training.online import online_backward
from spikeflow.training.traces import PresynapticTraces


def lif() -> nn.Module:
    return neurons.LIFNode(tau=2.0, v_threshold=0.5, detach_reset=True)


def dense_net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(layers.Linear(5, 7), lif(), layers.Linear(7, 3), lif()).double()
    with torch.no_grad():
        net[2].weight.mul_(3.0)
    return net


def conv_net() -> nn.Module:
    torch.manual_seed(1)
    net = nn.Sequential(
        layers.Conv2d(2, 3, 3, padding=1), lif(), layers.Flatten(), layers.Linear(3 * 16, 4), lif()
    ).double()
    with torch.no_grad():
        net[3].weight.mul_(4.0)
    return net


def sltt_with_layer_gradients(net: nn.Module, x: torch.Tensor, y: torch.Tensor, steps=None):
    """Plain SLTT, recording each synaptic layer's input and output gradient per step."""
    synaptic = [m for m in net.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    inputs: dict[nn.Module, list] = {m: [] for m in synaptic}
    grads: dict[nn.Module, dict[int, torch.Tensor]] = {m: {} for m in synaptic}
    step = {"t": 0}

    def record(module, args, out):
        inputs[module].append(args[0].detach().clone())
        if out.requires_grad:
            t = step["t"]
            out.register_hook(lambda g, t=t: grads[module].__setitem__(t, g.detach().clone()))

    handles = [m.register_forward_hook(record) for m in synaptic]

    class Counting(nn.Module):  # advances the step counter after every call
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x):
            out = self.net(x)
            step["t"] += 1
            return out

    wrapper = Counting()
    try:
        result = online_backward(wrapper, x, y, get_loss("ce"), train_steps=steps,
                                 generator=torch.Generator().manual_seed(3))  # fmt: skip
    finally:
        for h in handles:
            h.remove()
    return result, inputs, grads


def traces(seq: list[torch.Tensor], decay: float) -> list[torch.Tensor]:
    out, acc = [], None
    for a in seq:
        acc = a.clone() if acc is None else decay * acc + a
        out.append(acc)
    return out


def expected_weight_grad(module, inputs, grads, decay):
    hat = traces(inputs, decay)
    total = torch.zeros_like(module.weight)
    for t, g in grads.items():
        if isinstance(module, nn.Linear):
            total += g.reshape(-1, g.shape[-1]).T @ hat[t].reshape(-1, hat[t].shape[-1])
        else:
            a = hat[t].flatten(0, 1)
            total += torch.nn.grad.conv2d_weight(a, module.weight.shape, g.flatten(0, 1),
                                                 padding=module.padding)  # fmt: skip
    return total


@pytest.mark.parametrize(("make", "decay"), [(dense_net, 0.5), (dense_net, 0.9), (conv_net, 0.5)])
def test_weights_learn_from_presynaptic_traces(make, decay):
    torch.manual_seed(2)
    shape = (6, 3, 5) if make is dense_net else (6, 3, 2, 4, 4)
    x = torch.rand(shape, dtype=torch.float64) * 2.0
    y = torch.randint(0, 3, (3,))
    reference = make()
    sltt, inputs, grads = sltt_with_layer_gradients(reference, x, y)
    net = make()
    ottt = online_backward(net, x, y, get_loss("ce"), trace_decay=decay)
    # The outputs and losses are SLTT's: only the weights' gradients change.
    assert torch.equal(ottt.output, sltt.output) and torch.equal(ottt.loss, sltt.loss)
    assert ottt.output.sum() > 0
    pairs = [(a, b) for a, b in zip(reference.modules(), net.modules(), strict=True)
             if isinstance(a, (nn.Linear, nn.Conv2d))]  # fmt: skip
    for ref_module, module in pairs:
        want = expected_weight_grad(ref_module, inputs[ref_module], grads[ref_module], decay)
        assert want.abs().sum() > 0
        torch.testing.assert_close(module.weight.grad, want, rtol=1e-10, atol=1e-12)
        # A bias sees no input: its gradient is SLTT's.
        torch.testing.assert_close(module.bias.grad, ref_module.bias.grad, rtol=1e-12, atol=0)
        assert not torch.allclose(module.weight.grad, ref_module.weight.grad)


def test_zero_decay_is_sltt_and_traces_run_through_untrained_steps():
    torch.manual_seed(4)
    x = torch.rand(7, 2, 5, dtype=torch.float64) * 2.0
    y = torch.randint(0, 3, (2,))
    a, b = dense_net(), dense_net()
    online_backward(a, x, y, get_loss("ce"))
    online_backward(b, x, y, get_loss("ce"), trace_decay=0.0)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p.grad, q.grad)
    # SLTT-K: the untrained steps still add to the traces the trained steps learn from.
    reference, net = dense_net(), dense_net()
    _, inputs, grads = sltt_with_layer_gradients(reference, x, y, steps=3)
    result = online_backward(net, x, y, get_loss("ce"), train_steps=3, trace_decay=0.7,
                             generator=torch.Generator().manual_seed(3))  # fmt: skip
    assert len(result.train_steps) == 3 and set(grads[reference[0]]) == set(result.train_steps)
    want = expected_weight_grad(reference[0], inputs[reference[0]], grads[reference[0]], 0.7)
    torch.testing.assert_close(net[0].weight.grad, want, rtol=1e-10, atol=1e-12)


def test_hooks_are_removed_and_a_shared_weight_is_refused():
    net = dense_net()
    x, y = torch.rand(3, 2, 5, dtype=torch.float64), torch.tensor([0, 1])
    online_backward(net, x, y, get_loss("ce"), trace_decay=0.5)
    for m in net.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks
    shared = layers.Linear(4, 4).double()
    twice = nn.Sequential(shared, lif(), shared, lif())
    with pytest.raises(ConfigurationError, match="ran twice in one step"):
        online_backward(twice, torch.rand(3, 2, 4, dtype=torch.float64), y, get_loss("ce"),
                        trace_decay=0.5)  # fmt: skip
    with pytest.raises(ConfigurationError, match=r"in \[0, 1\]"):
        PresynapticTraces(net, 1.5)
    with pytest.raises(ConfigurationError, match="no Linear or Conv layer"):
        PresynapticTraces(nn.Sequential(lif()), 0.5)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--online-trace-decay", "0.5"], "needs online training: add --online"),
        (["--online", "--online-trace-decay", "1.5"], "in [0, 1]"),
        (["--online", "--online-trace-decay", "0.5", "--compile"], "cannot be combined"),
    ],
)
def test_command_line_checks_the_trace_decay(tmp_path, capsys, extra, message):
    from spikeflow.cli import main

    args = ["train", "--epochs", "1", "--loss", "tet", "--output-dir", str(tmp_path / "r"),
            "--no-progress", "--plots", "off", *extra]  # fmt: skip
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_command_line_trains_with_ottt(tmp_path):
    pytest.importorskip("sklearn", reason="the digits need scikit-learn")
    from spikeflow.cli import main
    from spikeflow.training import load_config_file
    from spikeflow.training.metric_logs import read_csv

    out = tmp_path / "run"
    args = ["train", "--epochs", "1", "--loss", "tet", "--online", "--online-trace-decay",
            "0.5", "--train-samples", "128", "--test-samples", "64", "--output-dir", str(out),
            "--no-progress", "--plots", "off", "--device", "cpu"]  # fmt: skip
    assert main(args) == 0
    assert load_config_file(out / "config.toml")["online_trace_decay"] == 0.5
    assert len(read_csv(out / "metrics.csv")) == 1


def test_equals_spikingjelly_ottt_past_the_first_layer():
    # SpikingJelly 2.0's OTTTLIFNode passes a trace on with its spikes, and its
    # OTTTSequential lets the next weight learn from it. It does not trace the network's
    # input, so the first layer's weight is the one that differs (it learns from the
    # input at each step there, from the input's trace here).
    pytest.importorskip("spikingjelly.activation_based")
    from spikingjelly.activation_based import functional as sjf
    from spikingjelly.activation_based import layer as sjl
    from spikingjelly.activation_based import neuron as sjn

    lif_args = {"tau": 2.0, "decay_input": False, "v_threshold": 0.5, "v_reset": None}
    torch.manual_seed(0)
    ours = nn.Sequential(
        layers.Conv2d(2, 6, 3, padding=1), layers.BatchNorm2d(6),
        neurons.LIFNode(**lif_args, detach_reset=True), layers.Flatten(),
        layers.Linear(6 * 8 * 8, 10), neurons.LIFNode(**lif_args, detach_reset=True),
    ).double()  # fmt: skip
    theirs = sjl.OTTTSequential(
        sjl.Conv2d(2, 6, 3, padding=1), sjl.BatchNorm2d(6), sjn.OTTTLIFNode(**lif_args),
        sjl.Flatten(), sjl.Linear(6 * 8 * 8, 10), sjn.OTTTLIFNode(**lif_args),
    ).double()  # fmt: skip
    theirs.load_state_dict(ours.state_dict())
    g = torch.Generator().manual_seed(2)
    x = 3 * torch.rand(5, 4, 2, 8, 8, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (4,), generator=g)
    result = online_backward(ours, x, y, get_loss("ce"), trace_decay=0.5)
    outs = []
    for t in range(x.shape[0]):  # the authors' loop: one backward per step
        out = theirs(x[t])
        out = out[0] if isinstance(out, list) else out  # [spikes, trace] while training
        (nn.functional.cross_entropy(out, y) / x.shape[0]).backward()
        outs.append(out.detach())
    sjf.reset_net(theirs)
    assert result.output.sum() > 0
    assert torch.equal(result.output, torch.stack(outs))
    for (name, p), q in zip(ours.named_parameters(), theirs.parameters(), strict=True):
        if name == "0.weight":
            assert not torch.allclose(p.grad, q.grad)
        else:
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-10, atol=1e-13, msg=name)
