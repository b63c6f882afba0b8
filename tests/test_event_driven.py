"""Event-driven backpropagation (methods.md 10): the neuron's forward against the kernel
sum, its backward against a per-spike derivation and autograd, the layers' plumbing,
adjusted pooling, calibration and the zoo networks."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.event_driven import (
    AdjustedAvgPool2d,
    EventDrivenConv2d,
    EventDrivenLinear,
    EventDrivenNeuron,
    adjusted_avg_pool2d,
    calibrate_event_driven,
    spike_backward,
    spike_forward,
)
from spikeflow.event_driven.layers import _SpikeLayerFunction
from spikeflow.models import create_model

NEURONS = [
    EventDrivenNeuron(),
    EventDrivenNeuron(tau_m=8.0, tau_s=4.0, tau_grad=3.0, threshold=0.7, gradient="exact"),
    EventDrivenNeuron(tau_m=3.0, tau_s=6.0, gradient="nonnegative", max_dt_du=2.0),
]


def _kernel_membrane(current: torch.Tensor, neuron: EventDrivenNeuron) -> tuple[list, list]:
    """Spikes and membranes of one neuron from the kernel sum over the inputs since the
    last spike (an independent form of the forward)."""
    eps = neuron.kernel(len(current))
    spikes, membranes, last = [], [], -1
    for t in range(len(current)):
        u = sum(float(current[k]) * eps[t - k] for k in range(last + 1, t + 1))
        fired = u >= neuron.threshold
        spikes.append(float(fired))
        membranes.append(u)
        if fired:
            last = t
    return spikes, membranes


@pytest.mark.parametrize("neuron", NEURONS, ids=["exponential", "exact", "nonnegative"])
def test_forward_is_the_kernel_sum_since_the_last_spike(neuron: EventDrivenNeuron) -> None:
    torch.manual_seed(0)
    current = torch.rand(25, 40, dtype=torch.float64) * 0.8 - 0.1
    spikes, rise, _ = spike_forward(current, neuron)
    assert 0 < spikes.mean() < 0.5
    for n in range(current.shape[1]):
        expected, membranes = _kernel_membrane(current[:, n], neuron)
        assert spikes[:, n].tolist() == expected
        # Δu is the rise from the previous step's membrane, 0 after a spike.
        previous = [0.0, *[0.0 if s else u for s, u in zip(expected, membranes)][:-1]]
        want = torch.tensor(membranes, dtype=torch.float64) - torch.tensor(previous)
        torch.testing.assert_close(rise[:, n], want.to(torch.float64))


def test_kernel_is_the_dual_exponential() -> None:
    neuron = EventDrivenNeuron(tau_m=7.0, tau_s=4.0)
    eps = neuron.kernel(12)
    tm, ts = 1 / 7, 1 / 4
    for d, value in enumerate(eps):
        assert value == pytest.approx(((1 - tm) ** (d + 1) - (1 - ts) ** (d + 1)) * ts / (ts - tm))
    # A single unit input is the kernel itself (below threshold).
    current = torch.zeros(12, 1, dtype=torch.float64)
    current[0] = 1.0
    spikes, rise, _ = spike_forward(current, EventDrivenNeuron(threshold=10.0))
    assert spikes.sum() == 0
    torch.testing.assert_close(rise.cumsum(0)[:, 0], torch.tensor(eps, dtype=torch.float64))
    exp = EventDrivenNeuron(tau_grad=3.5).kernel_slope(5)
    assert exp == pytest.approx([(1 - 1 / 3.5) ** (d + 1) for d in range(5)])
    exact = EventDrivenNeuron(gradient="exact").kernel_slope(12)
    assert exact == pytest.approx([eps[0]] + [eps[d] - eps[d - 1] for d in range(1, 12)])
    assert min(exact) < 0  # the "reverse gradient" the exponential kernel avoids
    assert min(EventDrivenNeuron(gradient="nonnegative").kernel_slope(12)) == 0.0


def _per_spike_backward(grad_time, spikes, rise, slope, neuron):
    """The backward written per output spike: each spike's gradient goes to the inputs
    since the previous spike, through the kernel (weights) and its slope (input times)."""
    steps, width = spikes.shape
    eps, slope_kernel = neuron.kernel(steps), neuron.kernel_slope(steps)
    for_input = torch.zeros_like(spikes)
    for_weight = torch.zeros_like(spikes)
    for n in range(width):
        fired = [t for t in range(steps) if spikes[t, n] > 0]
        previous = -1
        for t_out in fired:
            dt_du = min(max(-1.0 / float(rise[t_out, n]), -neuron.max_dt_du), 0.0)
            dt_du_in = min(max(-1.0 / float(slope[t_out, n]), -neuron.max_dt_du_input), 0.0)
            g = float(grad_time[t_out, n])
            for k in range(previous + 1, t_out + 1):
                for_weight[k, n] = g * dt_du * eps[t_out - k]
                for_input[k, n] = g * dt_du_in * -slope_kernel[t_out - k]
            previous = t_out
    return for_input, for_weight


@pytest.mark.parametrize("neuron", NEURONS, ids=["exponential", "exact", "nonnegative"])
def test_backward_matches_the_per_spike_derivation(neuron: EventDrivenNeuron) -> None:
    torch.manual_seed(1)
    current = torch.rand(20, 30, dtype=torch.float64) * 0.9 - 0.15
    spikes, rise, slope = spike_forward(current, neuron)
    grad_time = torch.randn_like(current) * spikes
    got = spike_backward(grad_time, spikes, rise, slope, neuron)
    want = _per_spike_backward(grad_time, spikes, rise, slope, neuron)
    torch.testing.assert_close(got[0], want[0])
    torch.testing.assert_close(got[1], want[1])
    # inputs after the last spike get nothing
    last = [max((t for t in range(20) if spikes[t, n]), default=-1) for n in range(30)]
    for n, t_last in enumerate(last):
        assert got[1][t_last + 1 :, n].abs().sum() == 0


def test_weight_gradient_is_du_dw_at_each_spike_times_dt_du() -> None:
    """Autograd of the membrane at each output spike w.r.t. the (standardised) weights,
    with the spike pattern held fixed, times -g·∂t/∂u and summed over the spikes, is
    the layer's weight gradient (-g: the layer reads a spike's gradient as minus the
    gradient of its time)."""
    torch.manual_seed(2)
    neuron = EventDrivenNeuron(tau_m=7.0, tau_s=4.0, threshold=1.0)
    layer = EventDrivenLinear(6, 3, neuron=neuron, weight_clip=None).double()
    x = (torch.rand(16, 4, 6, dtype=torch.float64) < 0.5).double()
    with torch.no_grad():
        layer.gain.fill_(1.2)
    weight = layer.standardized_weight().detach().requires_grad_()
    spikes = _SpikeLayerFunction.apply(x, weight, layer, None)
    assert spikes.sum() > 5
    g_spikes = torch.randn_like(spikes)
    (got,) = torch.autograd.grad(spikes, weight, g_spikes)

    current = x @ weight.t()
    _, rise, _ = spike_forward(current.detach(), neuron)
    eps = neuron.kernel(16)
    total = torch.zeros((), dtype=torch.float64)
    for b in range(4):
        for j in range(3):
            previous = -1
            for t in range(16):
                if spikes[t, b, j] > 0:
                    u = sum(current[k, b, j] * eps[t - k] for k in range(previous + 1, t + 1))
                    assert float(u.detach()) >= 1.0
                    dt_du = min(max(-1.0 / float(rise[t, b, j]), -4.0), 0.0)
                    total = total + float(-g_spikes[t, b, j]) * dt_du * u
                    previous = t
    (want,) = torch.autograd.grad(total, weight)
    torch.testing.assert_close(got, want)


def test_gradients_exist_only_at_spikes() -> None:
    torch.manual_seed(3)
    layer = EventDrivenLinear(20, 5, weight_clip=None).double()
    x = (torch.rand(12, 8, 20, dtype=torch.float64) < 0.3).double().requires_grad_()
    with torch.no_grad():
        layer.gain.fill_(3.0)
    out = layer(x)
    assert 0 < out.mean() < 0.5
    # a gradient at steps without an output spike reaches nothing
    silent = torch.randn_like(out) * (1 - out)
    gx, gw = torch.autograd.grad(out, (x, layer.weight), silent, retain_graph=True)
    assert gx.abs().sum() == 0 and gw.abs().sum() == 0
    # inputs get gradient only at their own spikes, scaled by input_grad_scale
    g = torch.randn_like(out)
    gx, gw = torch.autograd.grad(out, (x, layer.weight), g)
    assert gx.abs().sum() > 0 and gw.abs().sum() > 0
    assert (gx[x.detach() == 0] == 0).all()
    layer.input_grad_scale = 0.45
    gx_half, gw_same = torch.autograd.grad(layer(x), (x, layer.weight), g)
    torch.testing.assert_close(gx_half, gx / 2)
    torch.testing.assert_close(gw_same, gw)


def test_descending_the_count_loss_raises_the_label_count() -> None:
    from spikeflow.losses import spike_count_loss

    torch.manual_seed(4)
    layer = EventDrivenLinear(50, 4, input_grad_scale=0.9)
    x = (torch.rand(20, 16, 50) < 0.2).float()
    labels = torch.arange(16) % 4
    calibrate_event_driven(torch.nn.Sequential(layer), x, 2.0)
    opt = torch.optim.Adam(layer.parameters(), lr=0.01)
    losses = []
    for _ in range(60):
        out = layer(x)
        loss = spike_count_loss(out, labels, desired_count=8, undesired_count=1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]
    counts = layer(x).sum(0)
    assert (counts.argmax(1) == labels).float().mean() > 0.9


@pytest.mark.parametrize("stride,padding,dilation", [(1, 1, 1), (2, 0, 1), (1, 2, 2)])
def test_convolution_equals_the_linear_layer_on_unfolded_patches(stride, padding, dilation):
    torch.manual_seed(5)
    conv = EventDrivenConv2d(3, 4, 3, stride=stride, padding=padding, dilation=dilation,
                             weight_clip=None).double()  # fmt: skip
    with torch.no_grad():
        conv.gain.fill_(2.5)
    steps, batch, size = 10, 2, 9
    x = (torch.rand(steps, batch, 3, size, size, dtype=torch.float64) < 0.3).double()
    x.requires_grad_()
    weight = conv.standardized_weight().detach().requires_grad_()
    out = _SpikeLayerFunction.apply(x, weight, conv, None)
    assert out.mean() > 0.02
    g = torch.randn_like(out)
    gx, gw = torch.autograd.grad(out, (x, weight), g)

    linear = EventDrivenLinear(27, 4, weight_clip=None).double()
    args = {"kernel_size": 3, "dilation": dilation, "padding": padding, "stride": stride}
    patches = F.unfold(x.detach().flatten(0, 1), **args)  # [TB, 27, L]
    length = patches.shape[-1]
    patches = patches.transpose(1, 2).reshape(steps, batch * length, 27).requires_grad_()
    flat_w = weight.detach().reshape(4, 27).requires_grad_()
    lin_out = _SpikeLayerFunction.apply(patches, flat_w, linear, None)
    side = out.shape[-1]
    as_conv = lin_out.reshape(steps, batch, side, side, 4).permute(0, 1, 4, 2, 3)
    torch.testing.assert_close(as_conv, out)
    g_lin = g.permute(0, 1, 3, 4, 2).reshape(steps, batch * length, 4)
    gp, gw_lin = torch.autograd.grad(lin_out, (patches, flat_w), g_lin)
    folded = F.fold(
        gp.reshape(steps * batch, length, 27).transpose(1, 2), (size, size), **args
    ).reshape(x.shape)
    torch.testing.assert_close(gw, gw_lin.reshape(weight.shape))
    torch.testing.assert_close(gx, folded)


def test_weight_standardisation() -> None:
    torch.manual_seed(6)
    conv = EventDrivenConv2d(4, 6, 3)
    with torch.no_grad():
        conv.gain.copy_(torch.arange(1.0, 7.0))
        conv.shift.copy_(torch.linspace(-1, 1, 6))
    w = conv.standardized_weight().reshape(6, -1)
    var = conv.weight.detach().reshape(6, -1).var(1)
    torch.testing.assert_close(w.mean(1), torch.linspace(-1, 1, 6))
    torch.testing.assert_close(w.std(1), torch.arange(1.0, 7.0) * (var / (var + 1e-5)).sqrt())
    # the gain and shift learn through autograd, like the weights
    x = (torch.rand(6, 2, 4, 8, 8) < 0.4).float()
    with torch.no_grad():
        conv.gain.mul_(3)
    conv(x).sum().backward()
    assert conv.gain.grad.abs().sum() > 0 and conv.shift.grad.abs().sum() > 0


def test_weights_are_clipped_in_training_only() -> None:
    layer = EventDrivenLinear(4, 2)
    with torch.no_grad():
        layer.weight.fill_(9.0)
        layer.weight[0, 0] = -9.0
    layer.eval()
    layer(torch.zeros(3, 1, 4))
    assert layer.weight.abs().max() == 9.0
    layer.train()
    layer(torch.zeros(3, 1, 4))
    assert layer.weight.max() == 4.0 and layer.weight.min() == -4.0


def test_adjusted_pooling_splits_the_gradient_among_input_spikes() -> None:
    torch.manual_seed(7)
    x = (torch.rand(5, 3, 2, 6, 6) < 0.4).float().requires_grad_()
    y = adjusted_avg_pool2d(x, 2)
    torch.testing.assert_close(y, F.avg_pool2d(x.detach().flatten(0, 1), 2).reshape(y.shape))
    g = torch.randn_like(y)
    (gx,) = torch.autograd.grad(y, x, g)
    counts = y.detach() * 4
    expected = torch.where(counts > 0, g / counts.clamp(min=1), 0.0)
    up = expected.repeat_interleave(2, -1).repeat_interleave(2, -2)
    torch.testing.assert_close(gx, up)
    # what reaches the input spikes sums to the gradient of every non-empty window
    torch.testing.assert_close((gx * x.detach()).sum(), (g * (counts > 0)).sum())
    assert AdjustedAvgPool2d(2)(x).shape == (5, 3, 2, 3, 3)


def test_calibration_brings_the_firing_near_the_target() -> None:
    torch.manual_seed(8)
    net = torch.nn.Sequential(
        EventDrivenConv2d(2, 8, 3, padding=1), AdjustedAvgPool2d(2), EventDrivenLinear(8 * 16, 10)
    )
    x = (torch.rand(30, 16, 2, 8, 8) < 0.05).float()
    scales = calibrate_event_driven(net, x, spikes_per_neuron=2.0)
    assert list(scales) == ["0", "2"]
    with torch.no_grad():
        h = net[0](x)
        out = net[2](net[1](h))
    for spikes in (h, out):
        # the last third of the steps holds about a third of 2 spikes (30% slack, 1% steps)
        late = float(spikes[20:].sum()) / spikes[0].numel()
        assert 0.3 < late <= 2 / 3 * 1.3 * 1.02
    with pytest.raises(ConfigurationError, match="no event-driven layer"):
        calibrate_event_driven(torch.nn.Linear(2, 2), x)
    with pytest.raises(ConfigurationError, match="spikes_per_neuron"):
        calibrate_event_driven(net, x, spikes_per_neuron=0)


def test_teacher_spike_fires_the_label_neuron() -> None:
    torch.manual_seed(9)
    layer = EventDrivenLinear(30, 5)
    with torch.no_grad():
        layer.gain.fill_(0.05)  # nearly silent
    x = (torch.rand(12, 6, 30) < 0.3).float()
    target = torch.tensor([0, 1, 2, 3, 4, 0])
    plain = layer(x)
    taught = layer(x, target)
    diff = taught - plain
    assert (diff >= 0).all() and diff.sum() <= 6
    fired = taught.sum(0)[torch.arange(6), target]
    assert (fired >= 1).all()
    # the teacher spike sits at the label neuron's last membrane rise above 0.05
    current = x @ layer.standardized_weight().detach().t()
    _, rise, _ = spike_forward(current, layer.neuron)
    for b, label in enumerate(target.tolist()):
        rising = [t for t in range(12) if rise[t, b, label] > 0.05]
        if plain[:, b, label].sum() == 0:
            assert diff[:, b, label].nonzero().flatten().tolist() == rising[-1:] or not rising
    with pytest.raises(ConfigurationError, match="labels must lie in"):
        layer(x, target + 5)
    with pytest.raises(ShapeError, match="class labels must have shape"):
        layer(x, target[:3])
    with pytest.raises(ConfigurationError, match="only an output"):
        EventDrivenConv2d(2, 3, 3)(torch.zeros(2, 1, 2, 5, 5), torch.tensor([0]))


def test_bad_settings_and_shapes_are_named() -> None:
    with pytest.raises(ConfigurationError, match="tau_m and tau_s must differ"):
        EventDrivenNeuron(tau_m=4.0, tau_s=4.0)
    with pytest.raises(ConfigurationError, match="tau_grad"):
        EventDrivenNeuron(tau_grad=1.0)
    with pytest.raises(ConfigurationError, match="gradient must be one of"):
        EventDrivenNeuron(gradient="surrogate")
    with pytest.raises(ConfigurationError, match="threshold"):
        EventDrivenNeuron(threshold=0)
    with pytest.raises(ConfigurationError, match="fan-in"):
        EventDrivenLinear(1, 3)
    with pytest.raises(ConfigurationError, match="EventDrivenNeuron"):
        EventDrivenLinear(4, 3, neuron="lif")  # type: ignore[arg-type]
    with pytest.raises(ShapeError, match=r"\[T, B, 4\]"):
        EventDrivenLinear(4, 3)(torch.zeros(2, 5))
    with pytest.raises(ShapeError, match=r"\[T, B, 2, H, W\]"):
        EventDrivenConv2d(2, 3, 3)(torch.zeros(2, 1, 3, 5, 5))
    with pytest.raises(ShapeError, match="smaller than"):
        adjusted_avg_pool2d(torch.zeros(1, 1, 1, 1), 2)
    with pytest.raises(ShapeError, match="no time steps"):
        EventDrivenLinear(4, 2)(torch.zeros(0, 3, 4))


def test_zoo_networks_calibrate_once_and_keep_it() -> None:
    torch.manual_seed(10)
    net = create_model("event_driven_nmnist", input_size=20)
    assert [type(m).__name__ for m in net.body] == [
        "EventDrivenConv2d", "AdjustedAvgPool2d", "EventDrivenConv2d", "AdjustedAvgPool2d",
        "EventDrivenLinear",
    ]  # fmt: skip
    x = (torch.rand(8, 4, 2, 20, 20) < 0.1).float()
    net.eval()
    net(x)
    assert not net.calibrated
    gains = net.body[0].gain.detach().clone()
    net.train()
    out = net(x, target=torch.tensor([1, 2, 3, 4]))
    assert out.shape == (8, 4, 10) and net.calibrated
    assert not torch.equal(net.body[0].gain.detach(), gains)
    gains = net.body[0].gain.detach().clone()
    net(x)
    assert torch.equal(net.body[0].gain.detach(), gains)
    fresh = create_model("event_driven_nmnist", input_size=20)
    fresh.load_state_dict(net.state_dict())
    assert fresh.calibrated
    vgg = create_model("event_driven_cifar10", num_classes=100)
    assert sum(isinstance(m, EventDrivenConv2d) for m in vgg.modules()) == 8
    assert vgg.body[-1].out_features == 100
    with pytest.raises(ConfigurationError, match="neuron"):
        create_model("event_driven_nmnist", neuron="lif")
    with pytest.raises(ConfigurationError, match="too small"):
        create_model("event_driven_nmnist", input_size=8)
    exact = create_model("event_driven_nmnist", neuron_kwargs={"gradient": "exact"})
    assert exact.body[0].neuron.gradient == "exact"


@pytest.mark.parametrize(
    ("name", "size", "convs", "drops", "classes", "taus"),
    [
        ("event_driven_dvsgesture", 64, 6, 8, 11, (7.5, 4.0, 3.5)),
        ("event_driven_cifar10dvs", 48, 6, 8, 10, (8.0, 4.5, 4.0)),
    ],
)
def test_the_dvs_networks_follow_the_authors_plans(name, size, convs, drops, classes, taus):
    torch.manual_seed(19)
    net = create_model(name, input_size=size).eval()
    kinds = [type(m).__name__ for m in net.body]
    assert kinds.count("EventDrivenConv2d") == convs
    assert kinds.count("Dropout2d") + kinds.count("Dropout") == drops
    assert net.body[-1].out_features == classes
    neuron = net.body[0].neuron
    assert (neuron.tau_m, neuron.tau_s, neuron.tau_grad) == taus
    x = (torch.rand(2, 1, 2, size, size) < 0.1).float()
    assert net(x).shape == (2, 1, classes)


def test_nmnist_subset_trains_and_resumes_through_the_command_line(tmp_path, capsys):
    from conftest import require_shared_data
    from spikeflow.cli import main
    from spikeflow.training.checkpoint import load_checkpoint
    from spikeflow.training.metric_logs import read_csv

    root = require_shared_data("nmnist-small")
    out = tmp_path / "ed"
    args = [
        "train", "--dataset", "nmnist", "--data-dir", str(root), "--train-samples", "400",
        "--test-samples", "100", "-T", "10", "--batch-size", "50",
        "--model", "event_driven_nmnist", "--optimizer", "adamw", "--lr", "1e-3",
        "--loss", "count", "--loss-kwargs", "desired_count=6", "undesired_count=1",
        "--output-dir", str(out), "--no-progress", "--plots", "off",
    ]  # fmt: skip
    assert main([*args, "--epochs", "3", "--stop-after", "2"]) == 0
    state = load_checkpoint(out / "last.pt")["model"]
    assert bool(state["calibrated"])
    gains = state["body.0.gain"].clone()
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    rows = read_csv(out / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    # learned well above chance (10%) on real N-MNIST in 24 steps of 50 samples (seed 0:
    # 0.52-0.54; seeds 1, 2, 3 gave 0.54, 0.34, 0.55; a learning rate of 1e-9: 0.16)
    assert float(rows[-1]["test_acc"]) >= 0.4, rows
    assert float(rows[-1]["train_rate"]) > 0
    assert not torch.equal(load_checkpoint(out / "last.pt")["model"]["body.0.gain"], gains)
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(out / "last.pt"), "--no-progress"]) == 0
    assert f"test accuracy: {float(rows[-1]['test_acc']):.4f}" in capsys.readouterr().out


def test_autocast_and_half_inputs_run_in_float32() -> None:
    torch.manual_seed(11)
    layer = EventDrivenLinear(16, 4)
    with torch.no_grad():
        layer.gain.fill_(3.0)
    x = (torch.rand(8, 3, 16) < 0.4).float()
    want = layer(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = layer(x)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want)
    half = layer(x.to(torch.bfloat16))
    assert half.dtype == torch.float32
    torch.testing.assert_close(half, want)


def test_pruning_and_quantization_refuse_event_driven_layers() -> None:
    from spikeflow.prune import apply_gradient_rewiring, apply_soft_threshold
    from spikeflow.quant import apply_weight_quantization

    net = create_model("event_driven_nmnist")
    for apply, word in ((apply_gradient_rewiring, "pruned"), (apply_soft_threshold, "pruned"),
                        (lambda m: apply_weight_quantization(m, 4), "quantized")):  # fmt: skip
        with pytest.raises(ConfigurationError, match=f"'body.0' is an event-driven.*{word}"):
            apply(net)


@pytest.mark.parametrize("gradient", ["exponential", "exact"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_c_kernels_equal_the_pytorch_loops_bit_for_bit(gradient, dtype) -> None:
    import dataclasses

    from spikeflow.kernels.cpu import CompilerNotFoundError, compiler

    try:
        compiler()
    except CompilerNotFoundError:
        pytest.skip("no C compiler")
    neuron_c = EventDrivenNeuron(tau_m=8.0, tau_s=4.0, tau_grad=3.0, gradient=gradient,
                                 max_dt_du_input=50.0, backend="c")  # fmt: skip
    neuron_t = dataclasses.replace(neuron_c, backend="torch")
    torch.manual_seed(12)
    # 777 neurons: three blocks of 256 and a partial one
    current = (torch.randn(17, 3, 259) * 0.6 + 0.15).to(dtype)
    current[4, 0, :5] = 0.0  # rises of exactly 0
    got, want = spike_forward(current, neuron_c), spike_forward(current, neuron_t)
    for a, b in zip(got, want):
        assert torch.equal(a, b)
    assert 0.02 < float(got[0].mean()) < 0.5
    grad_time = torch.randn_like(current) * got[0]
    got_b = spike_backward(grad_time, *got, neuron_c)
    want_b = spike_backward(grad_time, *want, neuron_t)
    for a, b in zip(got_b, want_b):
        assert torch.equal(a, b)
    # non-contiguous input
    strided = current.transpose(1, 2).contiguous().transpose(1, 2)
    assert torch.equal(spike_forward(strided, neuron_c)[0], got[0])
    # a whole layer step: the same output and gradients
    layers = []
    for neuron in (neuron_c, neuron_t):
        torch.manual_seed(13)
        layer = EventDrivenConv2d(2, 6, 3, padding=1, neuron=neuron).to(dtype)
        x = (torch.rand(9, 2, 2, 10, 10) < 0.3).to(dtype).requires_grad_()
        out = layer(x, None)
        (out * torch.linspace(-1, 1, out.numel(), dtype=dtype).view_as(out)).sum().backward()
        layers.append((out, x.grad, layer.weight.grad, layer.gain.grad))
    for a, b in zip(*layers):
        assert torch.equal(a, b)


def test_backend_choice_is_checked() -> None:
    with pytest.raises(ConfigurationError, match="backend must be one of"):
        EventDrivenNeuron(backend="cuda")
    with pytest.raises(ConfigurationError, match="CPU float32/float64"):
        spike_forward(torch.zeros(3, 2, dtype=torch.bfloat16), EventDrivenNeuron(backend="c"))
    spikes, _, _ = spike_forward(torch.ones(3, 2, dtype=torch.bfloat16), EventDrivenNeuron())
    assert spikes.dtype == torch.bfloat16 and spikes.sum() > 0


def test_a_compiled_network_equals_the_eager_one() -> None:
    from spikeflow.losses import spike_count_loss

    torch.manual_seed(14)
    net = create_model("event_driven_nmnist", input_size=20)
    eager = create_model("event_driven_nmnist", input_size=20)
    eager.load_state_dict(net.state_dict())
    x = (torch.rand(6, 4, 2, 20, 20) < 0.2).float()
    y = torch.arange(4)
    compiled = torch.compile(net)
    outs = []
    for model in (compiled, eager):  # the first training forward calibrates, compiled too
        out = model(x, target=y)
        spike_count_loss(out, y, desired_count=6).backward()  # (at most T = 6)
        outs.append(out)
    assert torch.equal(outs[0], outs[1])
    for a, b in zip(net.parameters(), eager.parameters()):
        assert torch.equal(a.grad, b.grad)


@pytest.mark.parametrize("gradient", ["exponential", "exact"])
def test_input_time_gradients_of_a_spike_sum_to_its_gradient(gradient) -> None:
    """Shifting every input by δ shifts an output spike by δ: the input-time gradients of
    one output spike sum to its own gradient (the paper's sum preservation)."""
    torch.manual_seed(15)
    neuron = EventDrivenNeuron(gradient=gradient)
    layer = EventDrivenLinear(40, 3, neuron=neuron, input_grad_scale=1.0).double()
    x = (torch.rand(16, 4, 40, dtype=torch.float64) < 0.3).double().requires_grad_()
    with torch.no_grad():
        layer.gain.fill_(1.5)
    out = layer(x)
    fired = out.nonzero().tolist()
    assert len(fired) > 10
    for t, b, j in fired[:: max(1, len(fired) // 10)]:
        g = torch.zeros_like(out)
        g[t, b, j] = 0.7
        (gx,) = torch.autograd.grad(out, x, g, retain_graph=True)
        assert float(gx.sum()) == pytest.approx(0.7, rel=1e-9), (t, b, j)


def test_two_training_forwards_then_one_backward() -> None:
    layer = EventDrivenLinear(20, 4)
    with torch.no_grad():
        layer.weight.mul_(20)  # beyond the clip: the clamp runs on both forwards
        layer.gain.fill_(3.0)
    x1, x2 = ((torch.rand(6, 3, 20) < 0.4).float() for _ in range(2))
    (layer(x1).sum() + layer(x2).sum()).backward()
    assert layer.weight.abs().max() <= 4.0 and layer.weight.grad is not None


def test_a_spike_monitor_does_not_see_the_calibration_pass() -> None:
    from spikeflow.training.monitors import SpikeMonitor

    torch.manual_seed(16)
    net = create_model("event_driven_nmnist", input_size=20)
    x = (torch.rand(6, 5, 2, 20, 20) < 0.2).float()
    monitor = SpikeMonitor(net)
    seen: list[torch.Tensor] = []
    hook = net.body[0].register_forward_hook(lambda _m, _i, out: seen.append(out.detach()))
    net(x)  # calibrates first, then the training forward
    hook.remove()
    assert len(seen) == 1 and bool(net.calibrated)
    stats = {s.name: s for s in monitor.summary()}["body.0"]
    assert stats.spikes == float(seen[0].sum())
    assert stats.spikes_per_sample == pytest.approx(float(seen[0].sum()) / 5)
    monitor.remove()


def _triton_or_skip() -> torch.device:
    from conftest import kernel_device
    from spikeflow.kernels.triton_backend import triton_available

    if not triton_available():
        pytest.skip("triton (the 'triton' extra) is not installed")
    return kernel_device("triton")


@pytest.mark.parametrize("gradient", ["exponential", "exact"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_triton_kernels_equal_the_pytorch_loops_bit_for_bit(gradient, dtype) -> None:
    import dataclasses

    device = _triton_or_skip()  # the GPU, else Triton's interpreter on the CPU
    neuron_g = EventDrivenNeuron(tau_m=8.0, tau_s=4.0, tau_grad=3.0, gradient=gradient,
                                 max_dt_du_input=50.0, backend="triton")  # fmt: skip
    neuron_t = dataclasses.replace(neuron_g, backend="torch")
    torch.manual_seed(17)
    current = (torch.randn(13, 3, 259) * 0.6 + 0.15).to(dtype)  # 3 blocks of 256 and a bit
    current[4, 0, :5] = 0.0
    current = current.to(device)
    got, want = spike_forward(current, neuron_g), spike_forward(current, neuron_t)
    for a, b in zip(got, want):
        assert torch.equal(a, b)
    grad_time = torch.randn(current.shape, dtype=dtype).to(device) * got[0]
    for a, b in zip(spike_backward(grad_time, *got, neuron_g),
                    spike_backward(grad_time, *want, neuron_t)):  # fmt: skip
        assert torch.equal(a, b)


def test_a_triton_layer_equals_the_loop() -> None:
    import dataclasses

    device = _triton_or_skip()
    grads = []
    for backend in ("triton", "torch"):
        torch.manual_seed(18)
        neuron = dataclasses.replace(EventDrivenNeuron(), backend=backend)
        layer = EventDrivenConv2d(2, 4, 3, padding=1, neuron=neuron).to(device)
        x = (torch.rand(7, 2, 2, 8, 8) < 0.3).float().to(device).requires_grad_()
        out = layer(x)
        (out * torch.linspace(-1, 1, out.numel(), device=device).view_as(out)).sum().backward()
        grads.append((out, x.grad, layer.weight.grad))
    for a, b in zip(*grads):
        assert torch.equal(a, b)


def test_triton_backend_names_what_it_cannot_run() -> None:
    from spikeflow.kernels.triton_backend import interpreting, triton_available

    if not triton_available():
        pytest.skip("triton (the 'triton' extra) is not installed")
    neuron = EventDrivenNeuron(backend="triton")
    with pytest.raises(ConfigurationError, match="float32/float64"):
        spike_forward(torch.zeros(3, 4, dtype=torch.bfloat16), neuron)
    if not interpreting() and not torch.cuda.is_available():
        with pytest.raises(ConfigurationError, match="CUDA tensors"):
            spike_forward(torch.zeros(3, 4), neuron)


CHILD = """
import json, sys, torch
sys.path.insert(0, TESTS)
from spikeflow.event_driven.gpu import compile_for_gpu
out = {}
for dtype in (torch.float32, torch.float64):
    kernels = compile_for_gpu(dtype, arch=90)
    ptx = {name: k.asm["ptx"] for name, k in kernels.items()}
    out[str(dtype)] = {
        "fma": any("fma." in text for text in ptx.values()),
        "div_rn": "div.rn" in ptx["backward"],
        "sizes": {name: len(text) for name, text in ptx.items()},
    }
print(json.dumps(out))
"""


def test_triton_kernels_compile_for_sm90_without_fused_multiply_adds() -> None:
    from conftest import run_compiler_child
    from spikeflow.kernels.triton_backend import triton_available

    if not triton_available():
        pytest.skip("triton (the 'triton' extra) is not installed")
    result = run_compiler_child(CHILD)
    for dtype, found in result.items():
        assert not found["fma"], dtype  # products rounded as in the loop
        assert found["div_rn"], dtype  # correctly rounded -1/Δu
        assert all(size > 1000 for size in found["sizes"].values())


def test_a_nan_current_gives_nan_gradients_on_every_backend() -> None:
    import dataclasses

    from spikeflow.kernels.cpu import CompilerNotFoundError, compiler
    from spikeflow.kernels.triton_backend import triton_available

    backends = ["torch"]
    try:
        compiler()
        backends.append("c")
    except CompilerNotFoundError:
        pass
    if triton_available():
        backends.append("triton")
    current = torch.full((6, 4), 0.6, dtype=torch.float64)
    current[2, 1] = math.nan
    results = {}
    for backend in backends:
        device = torch.device("cpu")
        if backend == "triton":
            from conftest import kernel_device

            device = kernel_device("triton")
        neuron = dataclasses.replace(EventDrivenNeuron(gradient="exact"), backend=backend)
        out = spike_forward(current.to(device), neuron)
        grads = spike_backward(torch.ones_like(out[0]) * out[0], *out, neuron)
        results[backend] = [t.cpu() for t in (*out, *grads)]
    for backend, tensors in results.items():
        for got, want in zip(tensors, results["torch"]):
            assert torch.equal(got.isnan(), want.isnan()), backend
            assert torch.equal(got.nan_to_num(), want.nan_to_num()), backend
    assert results["torch"][4][:, 1].isnan().any()  # the diverged neuron shows


def test_standardisation_can_be_frozen_as_calibrated() -> None:
    """``train_standardisation=False`` (the authors' ``norm_grad: 0``, the CIFAR-10
    net's default): calibration still sets the gains, training leaves gains and shifts."""
    torch.manual_seed(12)
    net = create_model("event_driven_nmnist", train_standardisation=False).train()
    assert not create_model("event_driven_cifar10").body[0].gain.requires_grad
    assert create_model("event_driven_nmnist").body[0].gain.requires_grad
    x = (torch.rand(6, 4, 2, 34, 34) < 0.2).float()
    before = net.body[0].gain.detach().clone()
    out = net(x, torch.tensor([0, 1, 2, 3]))
    calibrated = net.body[0].gain.detach().clone()
    assert not torch.equal(before, calibrated)  # the calibration scaled it
    out.sum().backward()
    assert all(layer.gain.grad is None and layer.shift.grad is None
               for layer in net.body if hasattr(layer, "gain"))  # fmt: skip
    assert net.body[0].weight.grad is not None
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
    opt.step()
    assert torch.equal(net.body[0].gain.detach(), calibrated)
