"""E-prop in ``spikeflow train`` (``--eprop``): the trainer's step is the rule's, the
run learns, resumes exactly (feedback included), and what e-prop cannot combine with is
refused by name."""

from __future__ import annotations

import math

import pytest
import torch

from spikeflow.errors import ConfigurationError, StateError
from spikeflow.learn import EProp, EPropRSNN
from spikeflow.models import create_model
from spikeflow.training import SpikeMonitor, Trainer, config_for_resume, load_checkpoint
from spikeflow.training.config import config_from_dict, resolve
from spikeflow.training.data import to_time_major
from spikeflow.training.evaluation import _loss
from spikeflow.training.metric_logs import read_csv
from train_runs import tiny

#: A small e-prop run on the digits (8x8 images, constant current over T steps).
EPROP = {
    "model": "eprop_rsnn", "eprop": "random", "T": 4, "lr": 3e-2,
    "model_kwargs": {"n_lif": 16, "n_alif": 16, "tau_out": 3.0, "v_threshold": 0.5},
}  # fmt: skip


@pytest.mark.parametrize("smoothing", [0.0, 0.3])
def test_the_trainers_step_is_the_rules_run_then_the_optimizer(tmp_path, smoothing):
    """One step of a run equals building the network, EProp.run on the same batch with
    weight 1/T per step, and one Adam step (same seed, same feedback draw); with
    ``--loss-kwargs label_smoothing=S`` the rule learns the smoothed targets, and the
    step's loss is the evaluation's (per-step ce with that smoothing)."""
    cfg = tiny(tmp_path, "one", **EPROP, stop_after=None, epochs=1, train_samples=32,
               batch_size=32, loss_kwargs={"label_smoothing": smoothing})  # fmt: skip
    trainer = Trainer(cfg, log=None)
    trainer._setup()
    start = {k: v.clone() for k, v in trainer.raw_model.state_dict().items()}
    feedback = trainer.eprop.feedback_weight.clone()
    x, y = next(iter(torch.utils.data.DataLoader(trainer.train_set, batch_size=32)))
    value = trainer._train_step(x, y, 0, 1)

    torch.manual_seed(0)
    net = create_model("eprop_rsnn", num_classes=10, in_channels=1, input_size=8,
                       **EPROP["model_kwargs"])  # fmt: skip
    net.load_state_dict(start)
    rule = EProp(net, "random", "ce", generator=torch.Generator().manual_seed(cfg.seed))
    assert torch.equal(rule.feedback_weight, feedback)  # drawn from the run's seed
    optimizer = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    xs = x.to(torch.float32).reshape(x.shape[0], 1, -1).expand(-1, 4, -1).transpose(0, 1)
    target = (1 - smoothing) * torch.nn.functional.one_hot(y, 10) + smoothing / 10
    with torch.no_grad():
        readout = net(xs.contiguous())
        spikes = EPropRSNN.forward(net, xs.reshape(4, 32, -1)).spikes  # the hidden ones
    with SpikeMonitor(net) as reference:
        result = rule.run(xs.contiguous(), target, 0.25)
    optimizer.step()
    # the training monitor saw the step's hidden spikes: their mean is the rate
    assert trainer.train_monitor.state_dict() == reference.state_dict()
    (stats,) = trainer.train_monitor.summary()
    assert stats.name == "neurons" and stats.spikes == float(spikes.sum()) > 0
    assert stats.firing_rate == pytest.approx(float(spikes.double().mean()), rel=1e-12)
    for key, weight in net.state_dict().items():
        assert torch.allclose(trainer.raw_model.state_dict()[key], weight, atol=1e-6), key
    assert math.isfinite(float(result.loss))
    assert value == pytest.approx(float(result.loss), rel=1e-5)
    assert value == pytest.approx(float(_loss(resolve(cfg))(readout, y)), rel=1e-5)


def test_an_eprop_run_learns_and_reports_the_per_step_loss(tmp_path):
    cfg = tiny(tmp_path, "learn", **EPROP, epochs=3, train_samples=256, batch_size=32)
    history = Trainer(cfg, log=None).fit().history
    assert history[-1]["test_acc"] > 0.3  # chance 0.1; 0.44-0.68 on seeds 0-3
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    # evaluation reports what the run trained: the per-step cross-entropy's mean
    loss = _loss(resolve(cfg))
    out = torch.randn(3, 2, 10)
    label = torch.tensor([1, 7])
    per_step = sum(torch.nn.functional.cross_entropy(o, label) for o in out) / 3
    assert torch.allclose(loss(out, label), per_step)


def test_adaptive_feedback_resumes_exactly(tmp_path):
    changes = {**EPROP, "eprop": "adaptive", "eprop_feedback_decay": 1e-3,
               "eprop_rate_strength": 0.1, "epochs": 2, "train_samples": 96}  # fmt: skip
    Trainer(tiny(tmp_path, "full", **changes), log=None).fit()
    Trainer(tiny(tmp_path, "split", stop_after=1, **changes), log=None).fit()
    payload = load_checkpoint(tmp_path / "split" / "last.pt")
    Trainer(config_for_resume(payload, {}), resume=payload, log=None).fit()
    full, split = (load_checkpoint(tmp_path / n / "last.pt") for n in ("full", "split"))
    assert set(full["eprop"]) == {"feedback_weight"}
    start = torch.load(tmp_path / "split" / "last.pt", weights_only=False)
    assert start["eprop"]["feedback_weight"].shape == (32, 10)
    for part in ("model", "eprop"):
        for key, value in full[part].items():
            assert torch.equal(value, split[part][key]), (part, key)
    # B learnt (adaptive): not the draw it started from
    fresh = Trainer(tiny(tmp_path, "fresh", **changes), log=None)
    fresh._setup()
    first = fresh.eprop
    assert not torch.equal(first.feedback_weight, full["eprop"]["feedback_weight"])


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"online": True}, "--online"),
        ({"mixup": 0.2}, "--mixup"),
        ({"amp": "bf16"}, "--amp bf16"),
        ({"prune": "stds"}, "--prune stds"),
        ({"weight_bits": 4}, "--weight-bits"),
        ({"loss": "mse"}, "loss must be ce"),
        ({"loss_kwargs": {"weight": [1.0] * 10}}, "takes label_smoothing only, got weight"),
        ({"loss_kwargs": {"reduction": "sum"}}, "takes label_smoothing only, got reduction"),
        ({"eprop": "hebbian"}, "eprop must be one of"),
        ({"eprop": "random", "eprop_feedback_decay": 0.1}, "needs --eprop adaptive"),
        ({"eprop": None, "eprop_rate_strength": 0.1}, "needs e-prop training"),
        ({"eprop_rate_target": -0.1}, "eprop_rate_target must be a finite number >= 0"),
    ],
)
def test_what_eprop_cannot_take_is_refused_by_name(changes, message):
    values = {"dataset": "digits", **EPROP, **changes}
    with pytest.raises(ConfigurationError, match=message.replace("-", r"\-")):
        resolve(config_from_dict(values))


def test_eprop_needs_its_network(tmp_path):
    cfg = tiny(tmp_path, "plif", eprop="symmetric", loss="ce")
    with pytest.raises(ConfigurationError, match="--model eprop_rsnn"):
        Trainer(cfg, log=None)._setup()


def test_the_default_loss_of_an_eprop_run_is_ce():
    assert resolve(config_from_dict({"model": "eprop_rsnn", "eprop": "symmetric"})).loss == "ce"
    assert resolve(config_from_dict({"model": "eprop_rsnn"})).loss == "mse"  # BPTT: zoo's


def test_gradient_clipping_keeps_adaptive_feedback_with_the_readout(tmp_path):
    """Adaptive feedback gives B the increments of W^out (transposed): a clipped step
    must scale both, or B drifts from W^outᵀ (plain SGD: equal updates)."""
    changes = {**EPROP, "eprop": "adaptive", "optimizer": "sgd", "momentum": 0.0}
    cfg = tiny(tmp_path, "clip", **changes, clip_grad_norm=1e-3, train_samples=32,
               batch_size=32)  # fmt: skip
    trainer = Trainer(cfg, log=None)
    trainer._setup()
    readout, feedback = trainer.raw_model.output.weight, trainer.eprop.feedback_weight
    before = readout.detach().clone(), feedback.detach().clone()
    x, y = next(iter(torch.utils.data.DataLoader(trainer.train_set, batch_size=32)))
    trainer._train_step(x, y, 0, 1)
    moved_readout, moved_feedback = readout.detach() - before[0], feedback.detach() - before[1]
    assert moved_readout.abs().max() > 0
    torch.testing.assert_close(moved_feedback, moved_readout.T)
    grads = [*trainer.raw_model.parameters(), feedback]
    assert torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in grads])) <= 1.001e-3


def test_eprop_rsnn_cannot_be_streamed(tmp_path):
    """Its forward starts every call from the initial state: online training (one call
    per step) would restart the network at each step."""
    cfg = tiny(tmp_path, "online", model="eprop_rsnn", online=True, loss="ce", T=4,
               model_kwargs=EPROP["model_kwargs"])  # fmt: skip
    with pytest.raises(StateError, match="runs whole sequences only"):
        Trainer(cfg, log=None).fit()
    assert not (tmp_path / "online").exists()  # refused before the run folder stays


def test_an_eprop_run_logs_its_neurons_rates_and_draws_their_plots(tmp_path):
    """The e-prop network computes its spikes itself, passing them through its layer
    ``neurons``: the run logs their firing rate (was nan) and draws the firing-rate plot
    and the raster; the test rate is the mean of the hidden spikes on the test set."""
    pytest.importorskip("matplotlib", reason="plots need matplotlib (the 'plot' extra)")
    cfg = tiny(tmp_path, "plots", **EPROP, epochs=1, train_samples=32, test_samples=16,
               plots="on")  # fmt: skip
    trainer = Trainer(cfg, log=None)
    result = trainer.fit()
    assert [p.name for p in result.plots] == ["learning_curves.png", "firing_rates.png",
                                              "raster.png"]  # fmt: skip
    row = result.history[-1]
    assert 0.0 < row["train_rate"] < 1.0
    x, _ = next(iter(torch.utils.data.DataLoader(trainer.test_set, batch_size=16)))
    net = trainer.raw_model
    with torch.no_grad():
        spikes = EPropRSNN.forward(net, net.flat_input(to_time_major(x, 4, True))).spikes
    assert row["test_rate"] == pytest.approx(float(spikes.double().mean()), rel=1e-12)
    layers = read_csv(tmp_path / "plots" / "layers.csv")
    assert {(r["split"], r["layer"]) for r in layers} == {("train", "neurons"),
                                                         ("test", "neurons")}  # fmt: skip
