"""Forward propagation through time (spikeflow.training.fptt, ``spikeflow train --fptt``).

References: the updates worked out by hand for one weight of a linear read-out with a
squared error (no autograd), and the authors' training loop (Kag & Saligrama's and
Yin et al.'s released code: penalty, optimizer step, then the multiplier and running
mean) written out on test_tbptt's hand-written LIF network, with SGD and with Adam.
"""

from __future__ import annotations

import os
import signal

import pytest
import torch
from torch import nn

from spikeflow.cli import main
from spikeflow.errors import ConfigurationError
from spikeflow.losses import get_loss
from spikeflow.training import Trainer, config_for_resume, load_checkpoint
from spikeflow.training.config import config_from_dict, resolve
from spikeflow.training.fptt import FPTTRegulariser, fptt_step
from test_tbptt import N_HID, N_OUT, B, T, _data, _hand_window, _net
from train_runs import TINY, check_resume_is_exact, tiny


def _by_hand(w, xs, ys, lr, alpha, beta, rho):
    """One weight ``w`` of ``out = w x``, loss mean_b (w x_b - y_b)^2 at each step, an
    SGD step per step on loss + (rho - 1) w lam + alpha/2 (w - mean)^2, then
    lam -= alpha (w - mean); mean = (1 - beta) mean + beta w - beta/alpha lam."""
    mean, lam = w, 0.0
    for x, y in zip(xs, ys):
        grad = sum(2 * (w * a - b) * a for a, b in zip(x, y)) / len(x)
        grad += (rho - 1) * lam + alpha * (w - mean)
        w -= lr * grad
        lam -= alpha * (w - mean)
        mean = (1 - beta) * mean + beta * w - beta / alpha * lam
    return w, mean, lam


@pytest.mark.parametrize(("beta", "rho"), [(0.5, 0.0), (0.25, 0.3)])
def test_one_weight_moves_as_worked_out_by_hand(beta, rho):
    steps, lr, alpha = 6, 0.1, 0.4
    g = torch.Generator().manual_seed(0)
    xs = torch.randn(steps, 3, 1, generator=g, dtype=torch.float64)
    ys = 2 * xs + 0.3 * torch.randn(steps, 3, 1, generator=g, dtype=torch.float64)
    layer = nn.Linear(1, 1, bias=False).double()
    with torch.no_grad():
        layer.weight.fill_(-0.5)
    reg = FPTTRegulariser(layer.parameters(), alpha, beta, rho)
    optimizer = torch.optim.SGD(layer.parameters(), lr=lr)
    mse = lambda out, target: (out - target).square().mean()  # noqa: E731
    result = fptt_step(layer, xs, ys, optimizer, mse, reg, 1, target_per_step=True)
    w, mean, lam = _by_hand(-0.5, xs[..., 0].tolist(), ys[..., 0].tolist(), lr, alpha, beta, rho)
    assert layer.weight.item() == pytest.approx(w, rel=1e-13, abs=1e-15)
    assert reg.mean[0].item() == pytest.approx(mean, rel=1e-13, abs=1e-15)
    assert reg.multiplier[0].item() == pytest.approx(lam, rel=1e-13, abs=1e-15)
    assert len(result.window_losses) == steps and layer.weight.grad is None


def _authors_loop(net, x, y, loss_fn, k, alpha, beta, make_optimizer):
    """The authors' loop on the hand-written network: per window, the state detached,
    loss + penalty backpropagated by autograd, an optimizer step, then the updates."""
    params = [p.detach().clone().requires_grad_() for p in net.parameters()]
    mean = [p.detach().clone() for p in params]
    lam = [torch.zeros_like(p) for p in params]
    optimizer = make_optimizer(params)
    state = tuple(torch.zeros(B, n, dtype=x.dtype) for n in (N_HID, N_OUT, N_HID))
    for start in range(0, T, k):
        state = tuple(s.detach() for s in state)
        out, state = _hand_window(params, state, x[start : start + k])
        penalty = sum(-(p * m).sum() + 0.5 * alpha * (p - s).square().sum()
                      for p, s, m in zip(params, mean, lam))  # fmt: skip
        optimizer.zero_grad()
        (loss_fn(out, y) + penalty).backward()
        optimizer.step()
        with torch.no_grad():
            for p, s, m in zip(params, mean, lam):
                m -= alpha * (p - s)
                s.mul_(1 - beta).add_(beta * p - beta / alpha * m)
    return params, mean, lam


@pytest.mark.parametrize(("k", "optimizer"), [(1, "sgd"), (2, "adam")])
def test_a_lif_network_trains_as_the_authors_loop(k, optimizer):
    def make_optimizer(params):
        if optimizer == "sgd":
            return torch.optim.SGD(params, lr=0.5, momentum=0.9)
        return torch.optim.Adam(params, lr=0.05)

    alpha, beta = 0.3, 0.5
    net, (x, y) = _net(), _data()
    loss_fn = get_loss("mse")
    params, mean, lam = _authors_loop(_net(), x, y, loss_fn, k, alpha, beta, make_optimizer)
    opt = make_optimizer(net.parameters())
    reg = FPTTRegulariser.for_optimizer(opt, alpha, beta)
    fptt_step(net, x, y, opt, loss_fn, reg, k)
    moved = False
    ours = zip(net.named_parameters(), reg.mean, reg.multiplier, _net().parameters())
    for ((name, p), s2, m2, p0), q, s, m in zip(ours, params, mean, lam):
        torch.testing.assert_close(p, q, rtol=1e-11, atol=1e-13, msg=name)
        torch.testing.assert_close(s2, s, rtol=1e-11, atol=1e-13, msg=name)
        torch.testing.assert_close(m2, m, rtol=1e-11, atol=1e-13, msg=name)
        moved |= not torch.equal(p, p0)
    assert moved
    # the pull matters: plain truncated BPTT ends elsewhere
    plain = _authors_loop(_net(), x, y, loss_fn, k, 1e-12, beta, make_optimizer)[0]
    assert not torch.allclose(plain[0], params[0], rtol=1e-6, atol=1e-8)


def test_the_added_gradient_is_the_penaltys_autograd_gradient():
    """add_gradient (outside autograd, so that DDP does not see the penalty) adds, scaled,
    the gradient autograd takes of penalty(); a frozen parameter gets none."""
    g = torch.Generator().manual_seed(3)
    net = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2)).double()
    net[1].bias.requires_grad_(False)
    reg = FPTTRegulariser(net.parameters(), 0.3, 0.5, rho=0.4)
    with torch.no_grad():
        for p, lam in zip(net.parameters(), reg.multiplier):
            p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype))
            lam.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype))
    trained = [p for p in net.parameters() if p.requires_grad]
    expected = torch.autograd.grad(reg.penalty(), trained)
    net[0].weight.grad = torch.ones_like(net[0].weight)  # a task gradient already there
    reg.add_gradient(scale=8.0)
    torch.testing.assert_close(net[0].weight.grad, 1 + 8 * expected[0], rtol=1e-14, atol=0)
    for p, e in zip(trained[1:], expected[1:]):
        torch.testing.assert_close(p.grad, 8 * e, rtol=1e-14, atol=0)
    assert net[1].bias.grad is None and all(e.abs().sum() > 0 for e in expected)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alpha": 0.0}, "alpha must be positive"),
        ({"alpha": float("nan")}, "alpha must be a finite number"),
        ({"alpha": 0.1, "beta": 1.5}, "beta must be at most 1"),
        ({"alpha": 0.1, "rho": float("inf")}, "rho must be a finite number"),
    ],
)
def test_bad_settings_are_refused_by_name(kwargs, message):
    with pytest.raises(ConfigurationError, match=message):
        FPTTRegulariser(nn.Linear(2, 2).parameters(), **kwargs)
    weight = nn.Parameter(torch.zeros(2))
    with pytest.raises(ConfigurationError, match="listed twice"):
        FPTTRegulariser([weight, weight], 0.1)


def test_a_saved_state_restores_exactly_and_a_mismatch_is_named():
    net = nn.Linear(3, 2)
    reg = FPTTRegulariser(net.parameters(), 0.2)
    with torch.no_grad():
        net.weight.add_(1.0)
    reg.update()
    other = FPTTRegulariser(nn.Linear(3, 2).parameters(), 0.2)
    other.load_state_dict(reg.state_dict())
    for a, b in zip(reg.mean + reg.multiplier, other.mean + other.multiplier):
        assert torch.equal(a, b)
    with pytest.raises(ConfigurationError, match=r"saved mean\[0\] has shape \(2, 3\)"):
        FPTTRegulariser(nn.Linear(4, 2).parameters(), 0.2).load_state_dict(reg.state_dict())
    with pytest.raises(ConfigurationError, match=r"saved state has alpha = 0\.2"):
        FPTTRegulariser(net.parameters(), 0.3).load_state_dict(reg.state_dict())


def test_the_trainers_step_is_fptt_step(tmp_path):
    """One batch of a run (SGD, K = 1 of T = 2) moves the weights, and FPTT's mean and
    multiplier, as fptt_step moves a copy of the model."""
    cfg = tiny(tmp_path, "one", tbptt=1, fptt=20.0, optimizer="sgd", momentum=0.0,
               train_samples=32, model_kwargs={**TINY["model_kwargs"], "dropout": 0.0})  # fmt: skip
    trainer = Trainer(cfg, log=None)
    trainer._setup()
    x, y = next(iter(torch.utils.data.DataLoader(trainer.train_set, batch_size=32)))
    from spikeflow.training.build import build_model
    from spikeflow.training.data import to_time_major

    model = build_model(resolve(cfg), trainer.info)
    model.load_state_dict(trainer.raw_model.state_dict())
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)
    reg = FPTTRegulariser.for_optimizer(opt, 20.0)
    fptt_step(model, to_time_major(x, cfg.T, trainer.layout), y, opt, trainer.loss_fn, reg, 1)
    trainer._train_step(x, y, 0, 1)
    for (name, p), q in zip(trainer.raw_model.named_parameters(), model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7, msg=name)
    for a, b in zip(trainer.fptt.mean + trainer.fptt.multiplier, reg.mean + reg.multiplier):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    assert any(m.abs().sum() > 0 for m in trainer.fptt.multiplier)


def test_the_trainer_scales_the_penaltys_gradient_with_the_loss(tmp_path):
    """Under fp16's gradient scaler the window's loss is scaled: the penalty's gradient,
    added after the backward, is scaled alike (then unscaled with it before the step)."""
    cfg = tiny(tmp_path, "one", tbptt=1, fptt=0.5, train_samples=32)
    trainer = Trainer(cfg, log=None)
    trainer._setup()
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    params = trainer.fptt.parameters
    with torch.no_grad():
        for p, lam in zip(params, trainer.fptt.multiplier):
            p.add_(0.1)
            lam.fill_(0.2)
    loss = sum((p * (i + 1)).sum() for i, p in enumerate(params))
    expected = torch.autograd.grad(loss + trainer.fptt.penalty(), params, retain_graph=True)
    trainer.optimizer.zero_grad(set_to_none=True)
    trainer._window_backward(loss)
    for p, e in zip(params, expected):
        torch.testing.assert_close(p.grad, 1024.0 * e, rtol=1e-6, atol=1e-6)


def test_a_step_the_fp16_scaler_skips_moves_no_mean_and_a_grown_scale_does(tmp_path):
    """After each window: a step with an overflow (skipped, the scale halved) leaves the
    weights, the running means and the multipliers; a good step that grows the scale
    (growth interval 1) moves all three."""
    cfg = tiny(tmp_path, "one", tbptt=1, fptt=0.5, train_samples=32)
    trainer = Trainer(cfg, log=None)
    trainer._setup()
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=256.0, growth_interval=1)
    trainer.scaler.scale(torch.ones(()))  # (the scale is created at the first use)
    after_window = trainer._window_update(0, 1)
    params, reg = trainer.fptt.parameters, trainer.fptt
    for lam in reg.multiplier:  # (at the start W = W̄ and λ = 0: an update moves nothing)
        lam.fill_(0.1)

    def snapshot():
        return [t.clone() for t in [*params, *reg.mean, *reg.multiplier]]

    for overflow, scale in ((True, 128.0), (False, 256.0)):
        before = snapshot()
        for i, p in enumerate(params):
            p.grad = torch.full_like(p, 256.0 * (i + 1))
        if overflow:
            params[0].grad[0] = float("inf")
        after_window(0, torch.tensor(0.5))
        assert trainer.scaler.get_scale() == scale
        moved = [not torch.equal(a, b) for a, b in zip(before, snapshot())]
        n = len(params)
        assert (any(moved[:n]), any(moved[n : 2 * n]), any(moved[2 * n :])) == (
            (False, False, False) if overflow else (True, True, True)
        )


def test_an_fptt_run_resumes_exactly(tmp_path):
    payload = check_resume_is_exact(tmp_path, tbptt=1, fptt=0.1, epochs=2, train_samples=32,
                                    test_samples=16)  # fmt: skip
    assert payload["fptt"]["alpha"] == 0.1 and len(payload["fptt"]["mean"]) > 0


class _CtrlC:
    """Press Ctrl-C after step ``step`` of epoch ``epoch`` (0-based)."""

    def __init__(self, epoch: int, step: int) -> None:
        self.epoch, self.step = epoch, step

    def on_step_end(self, trainer, epoch, step, loss):
        if (epoch, step) == (self.epoch, self.step):
            os.kill(os.getpid(), signal.SIGINT)


def test_an_fptt_run_stopped_mid_epoch_resumes_exactly(tmp_path):
    """Ctrl-C inside epoch 2 saves the running means and multipliers with the weights
    of that step: the resumed run ends where the uninterrupted one does (weights, means,
    multipliers), the train loss of epoch 2 too."""
    changes = {"tbptt": 1, "fptt": 0.2, "epochs": 2, "train_samples": 96, "test_samples": 16}
    Trainer(tiny(tmp_path, "full", **changes), log=None).fit()
    cut = Trainer(tiny(tmp_path, "cut", **changes), callbacks=[_CtrlC(1, 0)], log=None).fit()
    assert cut.interrupted
    payload = load_checkpoint(tmp_path / "cut" / "last.pt")
    assert (payload["epoch"], payload["step"]) == (1, 1)
    Trainer(config_for_resume(payload, {}), resume=payload, log=None).fit()
    full, split = (load_checkpoint(tmp_path / n / "last.pt") for n in ("full", "cut"))
    for key in full["model"]:
        assert torch.equal(full["model"][key], split["model"][key]), key
    for key in ("mean", "multiplier"):
        for a, b in zip(full["fptt"][key], split["fptt"][key], strict=True):
            assert torch.equal(a, b), key
    assert full["history"][-1]["train_loss"] == split["history"][-1]["train_loss"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"tbptt": None}, "fptt runs as truncated BPTT with an update after every window"),
        ({"tbptt_update": "batch"}, "cannot take --tbptt-update batch"),
        ({"fptt": -0.1}, r"alpha \(--fptt\) must be positive"),
    ],
)
def test_what_fptt_cannot_take_is_refused_by_name(changes, message):
    values = {**TINY, "dataset": "digits", "tbptt": 1, "fptt": 0.1, **changes}
    with pytest.raises(ConfigurationError, match=message):
        resolve(config_from_dict(values))


def test_cli_trains_with_fptt(tmp_path, capsys):
    args = ["train", "--train-samples", "64", "--test-samples", "32", "--batch-size", "32",
            "-T", "2", "--epochs", "1", "--model-kwargs", "channels=8", "hidden=32",
            "dropout=0.0", "--neuron-kwargs", "v_threshold=0.25", "--no-progress",
            "--plots", "off", "--device", "cpu", "--output-dir", str(tmp_path / "run"),
            "--tbptt", "1", "--fptt", "0.1"]  # fmt: skip
    assert main(args) == 0
    payload = load_checkpoint(tmp_path / "run" / "last.pt")
    assert payload["config"]["fptt"] == 0.1
    assert payload["fptt"]["beta"] == 0.5
    # evaluated as any run; NeuroMC's price of a BPTT step is refused, not misstated
    assert main(["eval", str(tmp_path / "run"), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "run"), "--energy", "neuromc", "--no-progress"]) == 2
    assert ("this run trained with truncated BPTT (--tbptt 1, --fptt 0.1, --tbptt-update "
            "window): a backward per window of K steps, an update after each and FPTT's "
            "penalty") in capsys.readouterr().err  # fmt: skip
