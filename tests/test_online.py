"""Online training through time (SLTT, SLTT-K): spikeflow.training.online.

References: a hand-written loop of the LIF equations with the membrane detached at
every step (the method's definition), SpikingJelly 2.0's SLTTLIFNode run step by step
as its authors train it, and BPTT itself where the two must agree (T = 1).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikeflow import layers, neurons
from spikeflow.errors import ConfigurationError, ShapeError, StateError
from spikeflow.losses import get_loss
from spikeflow.training.config import config_from_dict, resolve
from spikeflow.training.online import (
    check_online_model,
    choose_train_steps,
    online_backward,
    peak_saved_bytes,
)

T, B, N_IN, N_HID, N_OUT = 6, 5, 12, 20, 4


def _mlp(v_reset: float | None = 0.0, decay_input: bool = True) -> nn.Sequential:
    torch.manual_seed(0)
    kw = {"tau": 2.0, "v_reset": v_reset, "decay_input": decay_input}
    return nn.Sequential(
        layers.Linear(N_IN, N_HID), neurons.LIFNode(**kw),
        layers.Linear(N_HID, N_OUT), neurons.LIFNode(**kw),
    ).double()  # fmt: skip


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = 2 * torch.rand(T, B, N_IN, generator=g, dtype=torch.float64)
    return x, torch.randint(0, N_OUT, (B,), generator=g)


def _spike(h: torch.Tensor) -> torch.Tensor:
    """Heaviside forward, Sigmoid(alpha=4) surrogate backward (spikeflow's default)."""
    s = torch.sigmoid(4 * (h - 1.0))
    return (h >= 1.0).to(h) + (s - s.detach())


def _hand_sltt(net: nn.Sequential, x, y, steps, v_reset, decay_input, step_loss=None):
    """The method by its definition: the LIF loop with ``v`` detached before every
    charge, loss ``sum over steps of CE(s[t]) / T`` (or ``step_loss(s[t], y)``), one
    backward at the end."""
    step_loss = step_loss or nn.functional.cross_entropy
    w1, b1, w2, b2 = (p.detach().clone().requires_grad_() for p in net.parameters())
    vr = 0.0 if v_reset is None else v_reset
    v = [torch.full((B, N_HID), vr, dtype=x.dtype), torch.full((B, N_OUT), vr, dtype=x.dtype)]
    total = 0.0
    for t in range(T):
        inp = x[t]
        for i, (w, b) in enumerate(((w1, b1), (w2, b2))):
            prev, current = v[i].detach(), inp @ w.T + b
            h = (
                prev + (current - (prev - vr)) / 2
                if decay_input
                else prev - (prev - vr) / 2 + current
            )
            s = _spike(h)
            v[i] = h - s if v_reset is None else h * (1 - s) + vr * s
            inp = s
        if t in steps:
            total = total + step_loss(inp, y) / T
    total.backward()
    return [w1.grad, b1.grad, w2.grad, b2.grad]


@pytest.mark.parametrize("v_reset", [0.0, None])
@pytest.mark.parametrize("decay_input", [True, False])
@pytest.mark.parametrize("k", [None, 2])
def test_gradients_equal_the_lif_loop_with_the_membrane_detached(v_reset, decay_input, k):
    net, (x, y) = _mlp(v_reset, decay_input), _data()
    result = online_backward(
        net, x, y, get_loss("ce"), train_steps=k, generator=torch.Generator().manual_seed(3)
    )
    assert result.train_steps == choose_train_steps(T, k, torch.Generator().manual_seed(3))
    assert len(result.train_steps) == (T if k is None else k)
    expected = _hand_sltt(net, x, y, set(result.train_steps), v_reset, decay_input)
    for (name, p), g in zip(net.named_parameters(), expected):
        assert g.abs().max() > 0, name
        torch.testing.assert_close(p.grad, g, rtol=1e-12, atol=1e-15, msg=name)
    # the loss reported is over every step, trained or not; the output is the network's
    with torch.no_grad():
        out = net(x)
        full = sum(nn.functional.cross_entropy(out[t], y) for t in range(T)) / T
    assert torch.equal(result.output, out)
    torch.testing.assert_close(result.loss, full, rtol=1e-14, atol=0)


def test_one_step_equals_bptt_and_longer_sequences_do_not():
    loss_fn = get_loss("tet")
    for steps, equal in ((1, True), (T, False)):
        net, (x, y) = _mlp(), _data()
        x = x[:steps]
        online_backward(net, x, y, loss_fn)
        online = [p.grad.clone() for p in net.parameters()]
        net.zero_grad()
        loss_fn(net(x), y).backward()
        same = all(torch.allclose(a, p.grad, rtol=1e-12, atol=1e-15)
                   for a, p in zip(online, net.parameters()))  # fmt: skip
        assert same is equal, steps


def test_plif_time_constant_gets_the_spatial_gradient():
    torch.manual_seed(0)
    net = nn.Sequential(layers.Linear(N_IN, N_OUT), neurons.ParametricLIFNode()).double()
    x, y = _data()
    y = y % N_OUT
    online_backward(net, x, y, get_loss("ce"))
    grads = {n: p.grad.clone() for n, p in net.named_parameters()}
    # reference: every step's loss through a network whose state is cut before each step
    net.zero_grad()
    total = 0.0
    w, b, raw = net[0].weight, net[0].bias, net[1].w
    v = torch.zeros(B, N_OUT, dtype=torch.float64)
    for t in range(T):
        h = v.detach() + (x[t] @ w.T + b - v.detach()) * torch.sigmoid(raw)
        s = _spike(h)
        v = h * (1 - s)
        total = total + nn.functional.cross_entropy(s, y) / T
    total.backward()
    assert grads["1.w"].abs() > 0
    for n, p in net.named_parameters():
        torch.testing.assert_close(grads[n], p.grad, rtol=1e-12, atol=1e-15, msg=n)


def test_equals_spikingjelly_sltt_neurons_stepped_by_hand():
    sj = pytest.importorskip("spikingjelly.activation_based")
    from spikingjelly.activation_based import functional as sjf
    from spikingjelly.activation_based import layer as sjl
    from spikingjelly.activation_based import neuron as sjn

    torch.manual_seed(0)
    ours = nn.Sequential(
        layers.Conv2d(2, 6, 3, padding=1), layers.BatchNorm2d(6),
        neurons.LIFNode(tau=2.0, v_threshold=0.5, detach_reset=True), layers.MaxPool2d(2),
        layers.Flatten(), layers.Linear(6 * 4 * 4, 10),
        neurons.LIFNode(tau=2.0, v_threshold=0.5, detach_reset=True),
    ).double()  # fmt: skip
    theirs = nn.Sequential(
        sjl.Conv2d(2, 6, 3, padding=1), sjl.BatchNorm2d(6),
        sjn.SLTTLIFNode(tau=2.0, v_threshold=0.5), sjl.MaxPool2d(2), sjl.Flatten(),
        sjl.Linear(6 * 4 * 4, 10), sjn.SLTTLIFNode(tau=2.0, v_threshold=0.5),
    ).double()  # fmt: skip
    theirs.load_state_dict(ours.state_dict())
    g = torch.Generator().manual_seed(2)
    x = 3 * torch.rand(5, 4, 2, 8, 8, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (4,), generator=g)
    result = online_backward(ours, x, y, get_loss("ce"))
    outs = []
    for t in range(x.shape[0]):  # the authors' loop: one backward per step
        out = theirs(x[t])
        (nn.functional.cross_entropy(out, y) / x.shape[0]).backward()
        outs.append(out.detach())
    sjf.reset_net(theirs)
    assert sj is not None and result.output.sum() > 0
    assert torch.equal(result.output, torch.stack(outs))
    for (name, p), q in zip(ours.named_parameters(), theirs.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-10, atol=1e-13, msg=name)
    # batch norm's running statistics were updated once per step, as the authors' are
    torch.testing.assert_close(ours[1].running_mean, theirs[1].running_mean)


def test_memory_stays_flat_in_T_where_bptt_grows():
    def net() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(
            layers.Conv2d(2, 8, 3, padding=1), layers.BatchNorm2d(8), neurons.LIFNode(),
            layers.Flatten(), layers.Linear(8 * 16 * 16, 10), neurons.LIFNode(),
        )  # fmt: skip

    loss_fn, peaks = get_loss("ce"), {}

    def measure(steps: int) -> None:
        x, y = torch.rand(steps, 8, 2, 16, 16), torch.randint(0, 10, (8,))
        model = net()
        peaks["online", steps] = peak_saved_bytes(lambda: online_backward(model, x, y, loss_fn))[1]
        peaks["bptt", steps] = peak_saved_bytes(lambda: loss_fn(model(x), y).backward())[1]

    measure(4)
    measure(16)
    assert peaks["online", 4] == peaks["online", 16]
    assert peaks["bptt", 16] > 3 * peaks["bptt", 4]
    assert peaks["bptt", 4] > 2 * peaks["online", 4]


def test_peak_saved_bytes_counts_what_the_graph_holds():
    a = torch.ones(1000, requires_grad=True)  # 4000 bytes

    def two_products():
        y = (a * a).sum()  # saves a (once, though twice)
        z = (a.exp()).sum()  # saves exp(a): another 4000 bytes
        return y + z

    out, peak = peak_saved_bytes(two_products)
    assert peak == 8000
    out.backward()
    _, freed = peak_saved_bytes(lambda: [(a * 2).sum().backward() for _ in range(3)])
    assert freed == 0  # multiplying by a constant saves nothing


def test_models_that_need_whole_sequences_are_refused():
    psn = nn.Sequential(layers.Linear(N_IN, N_OUT), neurons.PSN(T=T))
    with pytest.raises(StateError, match="whole sequences"):
        check_online_model(psn)
    x, y = _data()
    with pytest.raises(StateError, match="whole sequences"):
        online_backward(psn, x.float(), y, get_loss("ce"))
    with pytest.raises(ConfigurationError, match="event-driven"):
        check_online_model(_mlp(), takes_target=True)


@pytest.mark.parametrize(
    "module, reason",
    [
        (lambda: layers.Delay(1), "outputs its input 1 step"),
        (lambda: layers.DelayedLinear(N_HID, N_HID, 3), "through delays"),
        (lambda: neurons.RAFNode(), "one step later"),
        (lambda: neurons.MaskedPSN(k=2, T=T), "use sliding_psn"),
    ],
)
def test_modules_reached_only_through_carried_state_are_refused(module, reason):
    # Online training passed them no gradient (RAF, Delay) or about 1% of BPTT's
    # (delay_snn) without a word.
    net = nn.Sequential(layers.Linear(N_IN, N_HID), module(), layers.Linear(N_HID, N_OUT))
    with pytest.raises(
        ConfigurationError, match=rf"module '1' \(\w+\) .*{reason}.*train with BPTT"
    ):
        check_online_model(net)
    x, y = _data()
    with pytest.raises(ConfigurationError, match=reason):
        online_backward(net, x.float(), y, get_loss("ce"))
    check_online_model(nn.Sequential(layers.Delay(0), layers.DelayedLinear(3, 2, 1)))


def test_the_reported_loss_is_the_per_step_loss_evaluation_uses():
    from spikeflow.training.online import per_step_loss

    net, (x, y) = _mlp(), _data()
    for name in ("ce", "mse", "tet"):
        with torch.no_grad():
            result = online_backward(net, x, y, get_loss(name))
            torch.testing.assert_close(per_step_loss(get_loss(name))(net(x), y), result.loss)
    with torch.no_grad():  # not the loss of the time-mean
        assert not torch.allclose(get_loss("ce")(net(x), y), result.loss)


def test_a_model_without_per_step_outputs_is_refused():
    class Mean(nn.Module):
        def forward(self, x):
            return x.mean(0)

    x, y = _data()
    with pytest.raises(ShapeError, match=r"one output per step .*got \(5, 4\) at step 0"):
        online_backward(nn.Sequential(_mlp(), Mean()), x, y, get_loss("ce"))
    with pytest.raises(ShapeError, match=r"time-major input"):
        online_backward(_mlp(), x[0, 0], y, get_loss("ce"))


@pytest.mark.parametrize("k", [0, 7, 2.0, True])
def test_train_steps_out_of_range_are_refused(k):
    with pytest.raises(ConfigurationError, match="online_steps must be an integer from 1 to T = 6"):
        choose_train_steps(T, k)


def test_config_checks_name_the_online_fields():
    with pytest.raises(ConfigurationError, match="needs online training"):
        config_from_dict({"online_steps": 2}).validate()
    with pytest.raises(ConfigurationError, match=r"spike_moid, got 'count'.* no per-step form"):
        config_from_dict({"online": True, "loss": "count"}).validate()
    with pytest.raises(ConfigurationError, match="at most T = 4"):
        resolve(config_from_dict({"online": True, "online_steps": 5}))
    with pytest.raises(ConfigurationError, match="online_steps must be a positive integer"):
        config_from_dict({"online": True, "online_steps": 0}).validate()
    assert resolve(config_from_dict({"online": True, "online_steps": 4, "loss": "tet"})).online


def test_eval_mode_and_no_grad_leave_no_gradients():
    net, (x, y) = _mlp(), _data()
    with torch.no_grad():
        result = online_backward(net, x, y, get_loss("ce"))
    assert all(p.grad is None for p in net.parameters())
    assert torch.equal(result.output, net(x).detach())


# -- through the trainer and the command line ---------------------------------------


def _train_helpers():
    pytest.importorskip("sklearn", reason="the digits need scikit-learn (the 'examples' extra)")
    from train_runs import tiny

    return tiny


def test_sltt_k_learns_the_digits():
    datasets = pytest.importorskip("sklearn.datasets", reason="the digits need scikit-learn")
    images, labels = datasets.load_digits(return_X_y=True)
    x_all, y_all = torch.tensor(images / 16, dtype=torch.float32), torch.tensor(labels)
    torch.manual_seed(0)
    net = nn.Sequential(layers.Linear(64, 64), neurons.LIFNode(), layers.Linear(64, 10),
                        neurons.LIFNode())  # fmt: skip
    optimizer, g = torch.optim.Adam(net.parameters(), 1e-2), torch.Generator().manual_seed(0)
    for _ in range(2):
        order = torch.randperm(1400, generator=g)
        for i in range(0, 1400, 100):
            batch = order[i : i + 100]
            optimizer.zero_grad()
            online_backward(net, x_all[batch].expand(3, -1, -1), y_all[batch], get_loss("tet"),
                            train_steps=1, generator=g)  # fmt: skip
            optimizer.step()
    with torch.no_grad():
        predicted = net(x_all[1400:].expand(3, -1, -1)).mean(0).argmax(1)
    assert (predicted == y_all[1400:]).float().mean() > 0.4  # chance: 0.1


def test_online_training_through_the_trainer_resumes_exactly(tmp_path):
    _train_helpers()  # skips without scikit-learn
    from train_runs import check_resume_is_exact

    # With mixup and CutMix: their draws come from the run's seed and step, as BPTT's.
    online = {"online": True, "online_steps": 1, "loss": "tet", "epochs": 2, "mixup": 0.4,
              "cutmix": 1.0}  # fmt: skip
    payload = check_resume_is_exact(tmp_path, **online)
    assert payload["config"]["online"] and payload["config"]["online_steps"] == 1
    assert payload["config"]["cutmix"] == 1.0


def test_the_command_line_reads_online_and_online_steps(tmp_path, capsys):
    from spikeflow.cli import main
    from spikeflow.training import load_checkpoint

    _train_helpers()
    args = ["train", "--train-samples", "64", "--test-samples", "32", "--batch-size", "32",
            "-T", "2", "--epochs", "1", "--no-progress", "--plots", "off", "--device", "cpu",
            "--model-kwargs", "channels=4", "hidden=16"]  # fmt: skip
    run = str(tmp_path / "run")
    assert (
        main([*args, "--online", "--online-steps", "2", "--loss", "ce", "--output-dir", run]) == 0
    )
    config = load_checkpoint(tmp_path / "run" / "last.pt")["config"]
    assert (config["online"], config["online_steps"]) == (True, 2)
    capsys.readouterr()
    # NeuroMC prices one BPTT step: an online run is refused by name, not priced as one
    assert main(["eval", run, "--energy", "neuromc", "--no-progress"]) == 2
    assert "this run trained with online training (SLTT, --online)" in capsys.readouterr().err
    bad = str(tmp_path / "bad")
    assert main([*args, "--online", "--loss", "count", "--output-dir", bad]) == 2
    assert (
        "loss must be one of mse, ce, tet, mse_membrane, spike_rate, spike_max, spike_moid, got "
        "'count'" in capsys.readouterr().err
    )
    assert main([*args, "--online", "--online-steps", "3", "--output-dir", bad]) == 2
    assert "online_steps must be at most T = 2" in capsys.readouterr().err


def test_a_model_of_parallel_spiking_neurons_is_refused_before_training(tmp_path):
    from spikeflow.training import Trainer

    tiny = _train_helpers()
    config = tiny(tmp_path, "psn", online=True, loss="ce", neuron="psn")
    with pytest.raises(StateError, match=r"\(PSN\) runs whole sequences only"):
        Trainer(config, log=None).fit()
    assert not (tmp_path / "psn" / "last.pt").exists()


def test_spikeflow_eval_scores_an_online_run_with_its_per_step_loss():
    from spikeflow.training.evaluation import _loss

    net, (x, y) = _mlp(), _data()
    with torch.no_grad():
        out = net(x)
        online = _loss(config_from_dict({"online": True, "loss": "ce"}))(out, y)
        bptt = _loss(config_from_dict({"loss": "ce"}))(out, y)
        expected = sum(nn.functional.cross_entropy(out[t], y) for t in range(T)) / T
    torch.testing.assert_close(online, expected)
    torch.testing.assert_close(bptt, nn.functional.cross_entropy(out.mean(0), y))


def test_a_compiled_ddp_model_steps_without_reductions(tmp_path):
    # spikeflow train --online --compile under torchrun: the compiled wrapper hid the
    # DDP module, so every step's backward reduced, and a parameter that a step does not
    # reach (per-step batch norms, SLTT-K) failed the second step (found by review).
    import torch.distributed as dist

    from spikeflow import layers
    from spikeflow.losses import get_loss
    from spikeflow.neurons import LIFNode

    class WithUnused(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(layers.Linear(4, 5), LIFNode(), layers.Linear(5, 2))
            self.unused = torch.nn.Parameter(torch.zeros(3))

        def forward(self, x):
            return self.net(x)

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        model = torch.compile(torch.nn.parallel.DistributedDataParallel(WithUnused()))
        x, y = torch.randn(3, 2, 4) * 2, torch.tensor([0, 1])
        result = online_backward(model, x, y, get_loss("ce"))
        assert result.output.shape == (3, 2, 2)
        net = model._orig_mod.module
        assert all(p.grad is not None for p in net.net.parameters())
        assert net.net[0].weight.grad.abs().sum() > 0  # through the surrogate
        assert torch.equal(net.unused.grad, torch.zeros(3))  # averaged once, as zeros
    finally:
        dist.destroy_process_group()


def test_lava_dl_rate_losses_train_per_step_on_each_steps_rate():
    """spike_rate, spike_max (softmax mode) and spike_moid online: the loss of each step's
    output alone (its rate over that one step), checked against the LIF loop with the
    membrane detached and spike_rate's sum of squared errors written by hand; a moving
    window (the steps before, whose graphs are gone) and spike_max's probability mode
    (infinite wherever the label neuron is silent) are refused, named."""
    rates = {"true_rate": 0.6, "false_rate": 0.1}
    net, (x, y) = _mlp(), _data()
    online_backward(net, x, y, get_loss("spike_rate", **rates))

    def by_hand(s: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        wanted = torch.full_like(s, 0.1).scatter(1, labels[:, None], 0.6)
        return ((s - wanted) ** 2).sum()

    expected = _hand_sltt(_mlp(), x, y, set(range(T)), 0.0, True, step_loss=by_hand)
    for (name, p), g in zip(net.named_parameters(), expected):
        assert g.abs().max() > 0, name
        torch.testing.assert_close(p.grad, g, rtol=1e-12, atol=1e-15, msg=name)

    def config(loss: str, **kwargs) -> object:
        return config_from_dict({"online": True, "loss": loss, "loss_kwargs": kwargs})

    for loss, kwargs in (
        ("spike_rate", rates),
        ("spike_max", {"mode": "softmax"}),
        ("spike_moid", {}),
        ("spike_rate", {**rates, "moving_window": 1}),
    ):
        config(loss, **kwargs).validate()  # fmt: skip
    with pytest.raises(ConfigurationError, match=r"spike_rate to each step's output alone.*"
                       r"moving_window=3 averages the steps before it"):  # fmt: skip
        config("spike_rate", **rates, moving_window=3).validate()
    with pytest.raises(ConfigurationError, match=r"'probability' mode .* infinite .*mode=softmax"):
        config("spike_max").validate()
