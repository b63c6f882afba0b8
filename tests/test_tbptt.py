"""Truncated BPTT (spikeflow.training.tbptt, ``spikeflow train --tbptt``).

References: BPTT itself (``K = T``), autograd on a hand-written LIF loop (feed-forward
and with a recurrent layer) whose state is detached at the window boundaries, with SGD
steps per window or accumulated, and snnTorch 1.0's ``snntorch.backprop.TBPTT`` on the
same network and data.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from conftest import fused_backends
from spikeflow import layers, neurons
from spikeflow.cli import main
from spikeflow.errors import ConfigurationError, ShapeError, StateError
from spikeflow.losses import get_loss, ttfs_loss
from spikeflow.models.spiking_ssm import RecurrentLIFSequenceNet
from spikeflow.training import Trainer, load_checkpoint
from spikeflow.training.config import config_from_dict, resolve
from spikeflow.training.evaluation import _loss
from spikeflow.training.tbptt import (
    check_tbptt_model,
    tbptt_backward,
    tbptt_step,
    tbptt_windows,
    windowed_loss,
)
from train_runs import TINY, check_resume_is_exact, tiny

T, B, N_IN, N_HID, N_OUT = 5, 4, 6, 10, 3
LR = 0.5


def _net(recurrent: bool = False, backend: str = "torch") -> nn.Sequential:
    torch.manual_seed(0)
    hidden: nn.Module = (
        layers.Recurrent(neurons.LIFNode(step_mode="s"), N_HID)
        if recurrent
        else neurons.LIFNode(backend=backend)
    )
    net = nn.Sequential(
        layers.Linear(N_IN, N_HID), hidden, layers.Linear(N_HID, N_OUT),
        neurons.LIFNode(backend=backend),
    ).double()  # fmt: skip
    with torch.no_grad():  # the hidden layer fires (the recurrent weights get a gradient)
        net[0].weight.mul_(4)
        net[2].weight.mul_(4)
    return net


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = 2 * torch.rand(T, B, N_IN, generator=g, dtype=torch.float64)
    return x, torch.randint(0, N_OUT, (B,), generator=g)


def _spike(h: torch.Tensor) -> torch.Tensor:
    """Heaviside forward, Sigmoid(alpha=4) surrogate backward (LIFNode's default)."""
    s = torch.sigmoid(4 * (h - 1.0))
    return (h >= 1.0).to(h) + (s - s.detach())


def _lif(v: torch.Tensor, current: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """LIFNode's defaults: tau 2, decay_input, hard reset to 0, threshold 1."""
    h = v + (current - v) / 2
    s = _spike(h)
    return s, h * (1 - s)


def _hand_window(params, state, x):
    """The network's equations over the steps of ``x`` from ``state`` (v1, v2, y1)."""
    recurrent = len(params) == 5
    w1, b1, *wr, w2, b2 = params
    v1, v2, y1 = state
    outs = []
    for t in range(x.shape[0]):
        current = x[t] @ w1.T + b1 + (y1 @ wr[0].T if recurrent else 0)
        y1, v1 = _lif(v1, current)
        s2, v2 = _lif(v2, y1 @ w2.T + b2)
        outs.append(s2)
    return torch.stack(outs), (v1, v2, y1)


def _hand_tbptt(net, x, y, loss_fn, k, per_window):
    """The method by its definition: the loop above, its state detached at each window
    boundary; per window an SGD step on the window's loss, or the windows' gradients
    (each loss weighted by len/T) summed. Returns the parameters and their gradients."""
    params = [p.detach().clone().requires_grad_() for p in net.parameters()]
    zeros = [torch.zeros(B, n, dtype=x.dtype) for n in (N_HID, N_OUT, N_HID)]
    state = tuple(zeros)
    for start in range(0, T, k):
        stop = min(start + k, T)
        state = tuple(s.detach() for s in state)
        out, state = _hand_window(params, state, x[start:stop])
        loss = loss_fn(out, y)
        if per_window:
            grads = torch.autograd.grad(loss, params)
            with torch.no_grad():
                for p, g in zip(params, grads):
                    p -= LR * g
        else:
            (loss * (stop - start) / T).backward()
    return params


def _close(a, b, name=""):
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14, msg=name)


def test_windows_cover_the_sequence_and_the_last_is_shorter():
    assert tbptt_windows(5, 2) == ((0, 2), (2, 4), (4, 5))
    assert tbptt_windows(4, 4) == ((0, 4),)
    for bad in (0, 6, 2.0, True):
        with pytest.raises(ConfigurationError, match="window K must be an integer from 1"):
            tbptt_windows(5, bad)


@pytest.mark.parametrize("update", ["window", "batch"])
@pytest.mark.parametrize("recurrent", [False, True])
def test_one_window_of_all_steps_is_bptt(update, recurrent):
    loss_fn = get_loss("ce")
    (x, y), ref = _data(), _net(recurrent)
    bptt_loss = loss_fn(ref(x), y)
    bptt_loss.backward()
    grads = [p.grad.clone() for p in ref.parameters()]
    torch.optim.SGD(ref.parameters(), lr=LR).step()
    net = _net(recurrent)
    result = tbptt_backward(net, x, y, loss_fn, T)
    for (name, p), g in zip(net.named_parameters(), grads):
        assert g.abs().max() > 0, name
        _close(p.grad, g, name)
    _close(result.loss, bptt_loss.detach())
    net = _net(recurrent)
    tbptt_step(net, x, y, torch.optim.SGD(net.parameters(), lr=LR), loss_fn, T, update=update)
    for (name, p), q in zip(net.named_parameters(), ref.parameters()):
        _close(p, q, name)


@pytest.mark.parametrize(
    ("recurrent", "backend"),
    [(False, "torch"), *((False, b) for b in fused_backends()[:1]), (True, "torch")],
)
@pytest.mark.parametrize("loss", ["ce", "tet"])
def test_window_gradients_equal_the_hand_loop_detached_at_the_boundaries(recurrent, backend, loss):
    loss_fn = get_loss(loss)
    net, (x, y) = _net(recurrent, backend), _data()
    result = tbptt_backward(net, x, y, loss_fn, 2)
    expected = _hand_tbptt(net, x, y, loss_fn, 2, per_window=False)
    for (name, p), q in zip(net.named_parameters(), expected):
        assert q.grad.abs().max() > 0, name
        _close(p.grad, q.grad, name)
    # the truncation matters: BPTT's gradient is another
    full = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    loss_fn(net(x), y).backward()
    assert not all(torch.allclose(a, p.grad) for a, p in zip(full, net.parameters()))
    # the output is the whole sequence's, the loss the windows' weighted by length
    with torch.no_grad():
        out = net(x)
    assert torch.equal(result.output, out)
    _close(result.loss, windowed_loss(loss_fn, 2)(out, y))
    assert len(result.window_losses) == 3


@pytest.mark.parametrize("recurrent", [False, True])
def test_per_window_updates_equal_sgd_steps_on_the_hand_loop(recurrent):
    loss_fn = get_loss("mse")
    net, (x, y) = _net(recurrent), _data()
    expected = _hand_tbptt(net, x, y, loss_fn, 2, per_window=True)
    result = tbptt_step(net, x, y, torch.optim.SGD(net.parameters(), lr=LR), loss_fn, 2)
    moved = False
    for (name, p), q, p0 in zip(net.named_parameters(), expected, _net(recurrent).parameters()):
        _close(p, q, name)
        moved |= not torch.equal(p, p0)
    assert moved and all(p.grad is None for p in net.parameters())
    assert result.windows == ((0, 2), (2, 4), (4, 5))


def test_per_step_targets_are_sliced_with_the_windows():
    loss_fn = get_loss("mse_membrane")
    net, (x, _) = _net(), _data()
    y = torch.randint(0, N_OUT, (T, B), generator=torch.Generator().manual_seed(4))
    result = tbptt_backward(net, x, y, loss_fn, 2, target_per_step=True)
    expected = sum(((b - a) / T) * loss_fn(result.output[a:b], y[a:b]) for a, b in result.windows)
    _close(result.loss, expected)
    _close(result.loss, loss_fn(result.output, y))  # a mean over steps: the whole loss
    with pytest.raises(ShapeError, match=r"target \[T, \.\.\.\] with T = 5"):
        tbptt_backward(net, x, y[:4], loss_fn, 2, target_per_step=True)


def test_what_cannot_run_in_windows_is_refused():
    net, (x, y) = _net(), _data()
    for loss in (ttfs_loss, get_loss("ttfs", silent_value=-2.0), get_loss("count")):
        with pytest.raises(ConfigurationError, match=r"needs (first-spike times|spike counts)"):
            tbptt_backward(net, x, y, loss, 2)
    with pytest.raises(StateError, match=r"module '1' \(PSN\)"):
        tbptt_backward(nn.Sequential(layers.Linear(N_IN, N_HID), neurons.PSN(T)).double(),
                       x, y, get_loss("ce"), 2)  # fmt: skip
    delayed = nn.Sequential(layers.Linear(N_IN, N_OUT), layers.Delay(1), neurons.LIFNode())
    with pytest.raises(ConfigurationError, match=r"module '1' \(Delay\).*use K >= 2"):
        tbptt_backward(delayed.double(), x, y, get_loss("ce"), 1)
    tbptt_backward(delayed.double(), x, y, get_loss("ce"), 2)  # within windows it learns
    assert delayed[0].weight.grad.abs().max() > 0
    # a sequence classifier: one output per call, so windows of one step only; with
    # input_mode='pixels' none (it reads pixel t of frame t from the whole input)
    frames = RecurrentLIFSequenceNet(3, 1, input_size=4, input_mode="frames", hidden=4)
    check_tbptt_model(frames, 1)
    with pytest.raises(ConfigurationError, match=r"one output per call.*K = 2 steps"):
        check_tbptt_model(frames, 2)
    pixels = RecurrentLIFSequenceNet(3, 1, input_size=4, hidden=4)
    with pytest.raises(ConfigurationError, match="input_mode='pixels' builds its sequence"):
        check_tbptt_model(pixels, 1)
    with pytest.raises(ShapeError, match="time-major input"):
        tbptt_backward(net, x[0, 0], y, get_loss("ce"), 1)
    with pytest.raises(ConfigurationError, match="update must be one of window, batch"):
        tbptt_step(net, x, y, torch.optim.SGD(net.parameters(), lr=LR), get_loss("ce"), 2,
                   update="step")  # fmt: skip


def test_equals_snntorch_tbptt_over_an_epoch():
    """snnTorch's Leaky layers (init_hidden) trained by its backprop.TBPTT, and
    LeakyNode layers with the same weights by tbptt_step, one epoch of a DataLoader
    with SGD and windows of 2 of 5 steps: the same final weights."""
    snn = pytest.importorskip("snntorch", reason="snnTorch is not installed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        backprop = pytest.importorskip("snntorch.backprop")
    import snntorch.functional as SF

    from snntorch_checks import atan64, f64

    torch.manual_seed(0)
    theirs = nn.Sequential(
        nn.Linear(N_IN, N_HID), snn.Leaky(beta=f64(0.8), spike_grad=atan64, init_hidden=True),
        nn.Linear(N_HID, N_OUT),
        snn.Leaky(beta=f64(0.8), spike_grad=atan64, init_hidden=True, output=True),
    ).double()  # fmt: skip
    ours = nn.Sequential(
        layers.Linear(N_IN, N_HID), neurons.LeakyNode(f64(0.8)), layers.Linear(N_HID, N_OUT),
        neurons.LeakyNode(f64(0.8)),
    ).double()  # fmt: skip
    with torch.no_grad():
        for i in (0, 2):
            theirs[i].weight.mul_(4)  # the hidden layer fires
            ours[i].weight.copy_(theirs[i].weight)
            ours[i].bias.copy_(theirs[i].bias)
    g = torch.Generator().manual_seed(2)
    data = torch.utils.data.TensorDataset(
        1.5 * torch.rand(12, N_IN, generator=g, dtype=torch.float64),
        torch.randint(0, N_OUT, (12,), generator=g),
    )
    loader = torch.utils.data.DataLoader(data, batch_size=4)
    criterion = SF.ce_rate_loss()
    # Static inputs, the same at every step: snnTorch 1.0's time-varying path with an
    # integer K stops at an unbound local (K_flag) before its first step.
    backprop.TBPTT(theirs, loader, torch.optim.SGD(theirs.parameters(), lr=LR), criterion,
                   num_steps=T, time_var=False, K=2)  # fmt: skip
    optimizer = torch.optim.SGD(ours.parameters(), lr=LR)
    start = [p.detach().clone() for p in ours.parameters()]
    for inputs, target in loader:
        steps = inputs.unsqueeze(0).expand(T, *inputs.shape)
        tbptt_step(ours, steps, target, optimizer, criterion, 2)
    for (name, p), q, p0 in zip(ours.named_parameters(), theirs.parameters(), start):
        assert not torch.equal(p, p0), name
        _close(p, q, name)


# -- spikeflow train --tbptt ----------------------------------------------------------


def test_a_tbptt_run_resumes_exactly(tmp_path):
    check_resume_is_exact(tmp_path, tbptt=1, epochs=2, train_samples=32, test_samples=16)


def test_a_stop_asked_between_windows_saves_a_checkpoint_that_resumes_exactly(tmp_path):
    """Ctrl-C (the stop flag) arriving between the per-window updates of a batch stops
    the run after that batch, and the checkpoint's random states are those the next
    batch starts from: resumed, the run equals an uninterrupted one bit for bit, with
    dropout drawing from the global generator in every window (and FPTT's state)."""
    from spikeflow.training import config_for_resume

    net = {**TINY["model_kwargs"], "dropout": 0.5}
    changes = {"tbptt": 1, "fptt": 0.1, "epochs": 2, "train_samples": 96,
               "test_samples": 16, "model_kwargs": net}  # fmt: skip
    Trainer(tiny(tmp_path, "full", **changes), log=None).fit()
    trainer = Trainer(tiny(tmp_path, "split", **changes), log=None)
    windows = trainer._window_update

    def stop_inside_batch_2(step: int, steps: int):
        after = windows(step, steps)

        def after_window(index: int, loss: torch.Tensor) -> None:
            after(index, loss)
            if trainer.epoch == 0 and step == 1 and index == 0:  # the first of 2 windows
                trainer._stop_requested = True

        return after_window

    trainer._window_update = stop_inside_batch_2
    assert trainer.fit().interrupted
    payload = load_checkpoint(tmp_path / "split" / "last.pt")
    assert (payload["epoch"], payload["step"]) == (0, 2)  # after the whole batch
    Trainer(config_for_resume(payload, {}), resume=payload, log=None).fit()
    full, split = (load_checkpoint(tmp_path / n / "last.pt") for n in ("full", "split"))
    for key, value in full["model"].items():
        assert torch.equal(value, split["model"][key]), key
    for row, again in zip(full["history"], split["history"], strict=True):
        row.pop("epoch_time_s"), again.pop("epoch_time_s")
        assert row == again


def test_the_trainers_step_is_tbptt_step(tmp_path):
    """One batch of a run (SGD, per-window updates, K = 1 of T = 2) moves the weights as
    tbptt_step with the same loss moves a copy of the model."""
    cfg = tiny(tmp_path, "one", tbptt=1, optimizer="sgd", momentum=0.0, train_samples=32,
               model_kwargs={**TINY["model_kwargs"], "dropout": 0.0})  # fmt: skip
    trainer = Trainer(cfg, log=None)
    trainer._setup()
    x, y = next(iter(torch.utils.data.DataLoader(trainer.train_set, batch_size=32)))
    copy = resolve(cfg)
    from spikeflow.training.build import build_model
    from spikeflow.training.data import to_time_major

    torch.manual_seed(0)
    model = build_model(copy, trainer.info)
    model.load_state_dict(trainer.raw_model.state_dict())
    model.train()
    xt = to_time_major(x, cfg.T, trainer.layout)
    tbptt_step(model, xt, y, torch.optim.SGD(model.parameters(), lr=cfg.lr), trainer.loss_fn, 1)
    trainer._train_step(x, y, 0, 1)
    for (name, p), q in zip(trainer.raw_model.named_parameters(), model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7, msg=name)
    # the run is evaluated (and spikeflow eval evaluates it) with the windows' loss
    assert trainer.eval_loss_fn.__name__ == "windowed(rate_mse_loss, K=1)"
    assert _loss(trainer.config).__name__ == "windowed(rate_mse_loss, K=1)"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"online": True, "loss": "ce"}, "cannot be combined with --online"),
        ({"recompute": True}, "cannot be combined with --recompute"),
        ({"loss": "ttfs"}, "loss 'ttfs' needs first-spike times"),
        ({"loss": "count"}, "loss 'count' needs spike counts for all T steps"),
        ({"tbptt": 3}, r"tbptt \(the window K\) must be at most T = 2"),
        ({"tbptt": None, "tbptt_update": "batch"}, "tbptt_update needs truncated BPTT"),
        ({"tbptt_update": "step"}, "tbptt_update must be one of window, batch"),
    ],
)
def test_what_tbptt_cannot_take_is_refused_by_name(changes, message):
    values = {**TINY, "dataset": "digits", "tbptt": 1, **changes}
    with pytest.raises(ConfigurationError, match=message):
        resolve(config_from_dict(values))


#: recurrent_lif_seq (default input_mode='pixels') on the digits
_SEQ = ["--model", "recurrent_lif_seq", "--loss", "ce", "--model-kwargs", "hidden=8"]


def test_cli_trains_with_tbptt_and_refuses_before_overwriting(tmp_path, capsys):
    args = ["train", "--train-samples", "64", "--test-samples", "32", "--batch-size", "32",
            "-T", "2", "--epochs", "1", "--model-kwargs", "channels=8", "hidden=32",
            "dropout=0.0", "--neuron-kwargs", "v_threshold=0.25", "--no-progress",
            "--plots", "off", "--device", "cpu", "--output-dir", str(tmp_path / "run")]  # fmt: skip
    assert main([*args, "--tbptt", "1", "--tbptt-update", "batch"]) == 0
    payload = load_checkpoint(tmp_path / "run" / "last.pt")
    assert (payload["config"]["tbptt"], payload["config"]["tbptt_update"]) == (1, "batch")
    capsys.readouterr()
    # refused with the flags named, the earlier run kept although --overwrite is given
    cases = [
        (["--tbptt", "1", "--online", "--loss", "ce"], "cannot be combined with --online"),
        (["-T", "3", "--tbptt", "2", "--loss", "spike_rate", "--loss-kwargs", "true_rate=0.5",
          "false_rate=0.1", "moving_window=2"], "the shortest TBPTT window (1 of the T = 3"),
        (["--tbptt", "1", "--neuron", "psn", "--neuron-kwargs", "T=2"], "whole sequences"),
        # a sequence classifier that builds its sequence from the whole input (it failed
        # at the first window), or reads out one output per call for K >= 2
        ([*_SEQ, "-T", "64", "--tbptt", "8"], "model 'recurrent_lif_seq': module "
         "'RecurrentLIFSequenceNet' (RecurrentLIFSequenceNet) with input_mode='pixels' "
         "builds its sequence from the whole input"),
        ([*_SEQ, "-T", "64", "--online"], "input_mode='pixels' builds its sequence from "
         "the whole input (step t reads pixel t of frame t: the T = H·W frames in one "
         "call): online training calls it one step at a time"),
        ([*_SEQ, "input_mode=frames", "-T", "4", "--tbptt", "2"], "reads out the mean over "
         "all the steps of a call: one output per call, and truncated BPTT takes each "
         "window's loss on an output per step: windows of K = 2 steps cannot be trained"),
    ]  # fmt: skip
    for extra, message in cases:
        assert main([*args, "--overwrite", *extra]) == 2, extra
        assert message in capsys.readouterr().err, extra
        assert load_checkpoint(tmp_path / "run" / "last.pt")["config"]["tbptt"] == 1
