"""DECOLLE in ``spikeflow train`` (``--decolle``): the trainer's step is the rule's with
per-step (or per-batch) optimizer steps and per-layer learning rates, a run resumes
exactly, evaluation reports the loss the run logs, and what DECOLLE cannot take is
refused by name before anything is written."""

from __future__ import annotations

import pytest
import torch

from spikeflow.cli.options import build_parser
from spikeflow.errors import ConfigurationError, ShapeError, StateError
from spikeflow.functional import streaming
from spikeflow.learn import DECOLLE
from spikeflow.learn.decolle import decolle_loss
from spikeflow.models import create_model
from spikeflow.training import Trainer, config_for_resume, load_checkpoint
from spikeflow.training.config import config_from_dict, resolve
from spikeflow.training.data import to_time_major
from spikeflow.training.decolle import DECOLLEClassifier, check_decolle_model
from spikeflow.training.evaluation import _loss
from train_runs import tiny

#: A small DECOLLE run on the digits (8x8 images, the same values at every step).
#: Short time constants (the defaults' P takes ~10 steps to follow its input).
NET = {"channels": [4], "kernel_size": 3, "hidden": [12], "alpha": 0.5, "beta": 0.5,
       "alpharp": 0.5}  # fmt: skip
RUN = {"model": "decolle", "decolle": True, "T": 4, "decolle_burnin": 1, "lr": 1e-2,
       "model_kwargs": NET}  # fmt: skip


def _one_step(tmp_path, name, **changes):
    """The trainer after one training step of a fresh run, its initial weights, the batch."""
    cfg = tiny(tmp_path, name, **{**RUN, **changes}, epochs=1, train_samples=32, batch_size=32)
    trainer = Trainer(cfg, log=None)
    trainer._setup()
    start = {k: v.clone() for k, v in trainer.raw_model.state_dict().items()}
    x, y = next(iter(torch.utils.data.DataLoader(trainer.train_set, batch_size=32)))
    value = trainer._train_step(x, y, 0, 1)
    return trainer, start, x, y, value


def _reference(start, groups_of, update="step", reg_u=0.0, lr=1e-2):
    net = create_model("decolle", num_classes=10, in_channels=1, input_size=8, **NET)
    net.load_state_dict(start)
    optimizer = torch.optim.Adam(groups_of(net), lr=lr)
    return net, DECOLLE(net, burnin=1, update=update, reg_u=reg_u), optimizer


@pytest.mark.parametrize(("update", "reg_u"), [("step", []), ("sequence", [0.0, 2.0])])
def test_the_trainers_step_is_the_rules_run_with_the_optimizer(tmp_path, update, reg_u):
    """One batch of a run equals DECOLLE.run on it (burn-in 1 of T = 4) with Adam stepped
    after every learning step (``update="step"``: 3 updates) or once (``"sequence"``),
    the membrane regularisation per layer included; the logged loss is the last layer's
    local loss averaged over the learning steps."""
    trainer, start, x, y, value = _one_step(
        tmp_path, update, decolle_update=update, decolle_reg_u=reg_u
    )
    net, rule, optimizer = _reference(start, lambda n: n.parameters(), update, reg_u or 0.0)
    result = rule.run(to_time_major(x, 4, True), y, optimizer)
    assert optimizer.state[net.layers[0].synapse.weight]["step"] == (3 if update == "step" else 1)
    for key, weight in net.state_dict().items():
        assert torch.equal(trainer.raw_model.state_dict()[key], weight), key
    assert not torch.equal(start["layers.0.synapse.weight"], net.layers[0].synapse.weight)
    logged = sum(decolle_loss(y_t[-1], y) for y_t in result.y) / 3
    assert value == pytest.approx(float(logged), rel=1e-6)


def test_per_layer_learning_rates_are_parameter_groups(tmp_path):
    """``--decolle-layer-lr 2,0.5``: layer 0 learns at 2 lr, layer 1 at lr / 2 (the
    reference code's list of learning rates, one optimizer per layer there)."""
    trainer, start, x, y, _ = _one_step(tmp_path, "lr", decolle_layer_lr=[2.0, 0.5])
    assert [g["lr"] for g in trainer.optimizer.param_groups] == [2e-2, 5e-3]

    def groups(net):
        return [{"params": net.layers[0].parameters(), "lr": 2e-2},
                {"params": net.layers[1].parameters(), "lr": 5e-3}]  # fmt: skip

    net, rule, optimizer = _reference(start, groups)
    rule.run(to_time_major(x, 4, True), y, optimizer)
    for key, weight in net.state_dict().items():
        assert torch.equal(trainer.raw_model.state_dict()[key], weight), key
    # one value: every layer at that multiple
    cfg = resolve(tiny(tmp_path, "one", **RUN, decolle_layer_lr=[3.0]))
    trainer = Trainer(cfg, log=None)
    trainer._setup()
    assert [g["lr"] for g in trainer.optimizer.param_groups] == [3e-2, 3e-2]


def test_the_metrics_log_the_runs_learning_rate_with_per_layer_rates(tmp_path):
    """With ``--decolle-layer-lr 2,0.5`` the logged ``lr`` is ``--lr`` as scheduled
    (it was layer 0's, 2 lr), while the layers' groups keep their multiples."""
    cfg = tiny(tmp_path, "lr", **RUN, decolle_layer_lr=[2.0, 0.5], schedule="step",
               step_size=1, gamma=0.5, epochs=2, train_samples=16, test_samples=16,
               batch_size=16)  # fmt: skip
    trainer = Trainer(cfg, log=None)
    history = trainer.fit().history
    assert [row["lr"] for row in history] == pytest.approx([1e-2, 5e-3])
    assert [g["lr"] for g in trainer.optimizer.param_groups] == pytest.approx([5e-3, 1.25e-3])
    logged = (tmp_path / "lr" / "metrics.csv").read_text().splitlines()
    column = logged[0].split(",").index("lr")
    assert [float(line.split(",")[column]) for line in logged[1:]] == pytest.approx([1e-2, 5e-3])


def test_a_decolle_run_learns_and_evaluates_its_logged_loss(tmp_path):
    net = {**NET, "channels": [8], "hidden": [32]}
    cfg = tiny(tmp_path, "learn", **{**RUN, "T": 8, "decolle_burnin": 2, "model_kwargs": net},
               epochs=2, train_samples=256, batch_size=8)  # fmt: skip
    trainer = Trainer(cfg, log=None)
    history = trainer.fit().history
    assert history[-1]["test_acc"] > 0.25  # chance 0.1; 0.35-0.56 on seeds 0-2
    assert 0.0 < history[-1]["train_rate"] < 1.0  # the layers' taps feed the monitors
    # the evaluation's loss is the run's: the last layer's local loss over the steps
    # after the burn-in (the output starts after it)
    model = trainer.raw_model
    assert model.burnin == 2
    x, y = next(iter(torch.utils.data.DataLoader(trainer.test_set, batch_size=96)))
    with torch.no_grad():
        out = model(to_time_major(x, 8, True))
    assert out.shape == (6, 96, 10)
    expected = sum(decolle_loss(o, y) for o in out) / 6
    assert float(_loss(resolve(cfg))(out, y)) == pytest.approx(float(expected), rel=1e-6)
    assert history[-1]["test_loss"] == pytest.approx(float(expected), rel=1e-5)


def test_a_stopped_and_resumed_run_equals_an_uninterrupted_one(tmp_path):
    changes = {**RUN, "epochs": 2, "train_samples": 64,
               "model_kwargs": {**NET, "dropout": 0.5}}  # fmt: skip
    Trainer(tiny(tmp_path, "full", **changes), log=None).fit()
    Trainer(tiny(tmp_path, "split", stop_after=1, **changes), log=None).fit()
    payload = load_checkpoint(tmp_path / "split" / "last.pt")
    Trainer(config_for_resume(payload, {}), resume=payload, log=None).fit()
    full, split = (load_checkpoint(tmp_path / n / "last.pt") for n in ("full", "split"))
    for key, value in full["model"].items():
        assert torch.equal(value, split["model"][key]), key
    for row, again in zip(full["history"], split["history"], strict=True):
        row.pop("epoch_time_s"), again.pop("epoch_time_s")
        assert row == again


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"online": True}, "--online"),
        ({"tbptt": 2}, "--tbptt"),
        ({"eprop": "symmetric"}, "--eprop"),
        ({"eventprop": "eventprop"}, "--eventprop"),
        ({"mixup": 0.2}, "--mixup"),
        ({"amp": "bf16"}, "--amp bf16"),
        ({"prune": "stds"}, "--prune stds"),
        ({"loss": "ce"}, "leave --loss out"),
        ({"loss_kwargs": {"weight": [2.0] * 10}}, "takes no --loss-kwargs: .* got weight"),
        ({"decolle_loss": "l1"}, "decolle_loss must be one of"),
        ({"decolle_update": "epoch"}, "decolle_update must be one of"),
        ({"decolle_burnin": 4}, r"decolle_burnin \(4\) must be below T = 4"),
        ({"decolle_reg_u": [-1.0]}, "decolle_reg_u must be >= 0"),
        ({"decolle_layer_lr": [0.0]}, "decolle_layer_lr must be > 0"),
        ({"decolle": False}, "decolle_burnin needs DECOLLE training: add --decolle"),
    ],
)
def test_what_decolle_cannot_take_is_refused_by_name(changes, message):
    values = {"dataset": "digits", **RUN, **changes}
    with pytest.raises(ConfigurationError, match=message.replace("-", r"\-")):
        resolve(config_from_dict(values))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"model": "plif_digits", "model_kwargs": {}}, "use --model decolle"),
        ({"decolle_reg_u": [1.0, 1.0, 1.0]}, "network has 2 DECOLLE layers, got 3 values"),
    ],
)
def test_the_model_and_per_layer_lists_are_checked_before_anything_is_written(
    tmp_path, changes, message
):
    earlier = tiny(tmp_path, "run", epochs=1, train_samples=32, test_samples=32)
    Trainer(earlier, log=None).fit()
    before = sorted(p.name for p in (tmp_path / "run").iterdir())
    cfg = tiny(tmp_path, "run", **{**RUN, **changes}, overwrite=True)
    with pytest.raises(ConfigurationError, match=message):
        Trainer(cfg, log=None).fit()
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == before  # kept
    with pytest.raises(ConfigurationError, match=message):
        Trainer(tiny(tmp_path, "new", **{**RUN, **changes}), log=None).fit()
    assert not (tmp_path / "new").exists()


def test_the_command_line_options():
    line = ("train --model decolle --decolle --decolle-burnin 5 --decolle-reg-u 0,1e-2 "
            "--decolle-layer-lr 1,0.5 --decolle-update sequence --decolle-loss mse")  # fmt: skip
    args = build_parser().parse_args(line.split())
    assert (args.decolle, args.decolle_burnin, args.decolle_update, args.decolle_loss) == (
        True,
        5,
        "sequence",
        "mse",
    )
    assert args.decolle_reg_u == [0.0, 1e-2] and args.decolle_layer_lr == [1.0, 0.5]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--decolle-reg-u", "0,x"])


def test_the_zoo_network():
    net = create_model("decolle", num_classes=3, in_channels=2, input_size=(12, 10),
                       channels=[4, 6], kernel_size=3, hidden=[7])  # fmt: skip
    assert isinstance(net, DECOLLEClassifier) and len(net.layers) == 3
    assert net.layers[2].synapse.in_features == 6 * 3 * 2
    x = (torch.rand(5, 2, 2, 12, 10) < 0.3).float()
    assert net(x).shape == (5, 2, 3)
    net.burnin = 2
    assert net(x).shape == (3, 2, 3)
    net.burnin = 5
    with pytest.raises(ShapeError, match=r"T = 5 steps, not more than the burn-in \(5\)"):
        net(x)
    # event counts as spikes, max-pooled 2x2: a block with any event is a spike
    net = create_model("decolle", in_channels=1, input_size=5, channels=[2], kernel_size=3,
                       hidden=[3], binary_input=True, input_pool=2)  # fmt: skip
    assert net.input_shape == (1, 2, 2)
    counts = torch.zeros(1, 1, 1, 5, 5)
    counts[..., 0, 1], counts[..., 3, 3], counts[..., 4, 4] = 3.0, 0.5, 7.0
    expected = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # row and column 4 dropped
    assert torch.equal(net.prepare_input(counts)[0, 0, 0], expected)
    assert net(counts).shape == (1, 1, 10)
    with pytest.raises(ConfigurationError, match="kernel_size must be odd"):
        create_model("decolle", kernel_size=4)
    with pytest.raises(ConfigurationError, match="too small for 2 max pools"):
        create_model("decolle", input_size=3)
    with pytest.raises(ConfigurationError, match="both empty"):
        create_model("decolle", channels=[], hidden=[])


def test_decolle_runs_in_one_process():
    """Its per-step updates happen outside DDP's backward: torchrun is refused."""
    cfg = resolve(config_from_dict({"dataset": "digits", **RUN}))
    net = create_model("decolle", num_classes=10, in_channels=1, input_size=8, **NET)
    check_decolle_model(cfg, net, distributed=False)
    with pytest.raises(ConfigurationError, match="--decolle runs in one process"):
        check_decolle_model(cfg, net, distributed=True)


@pytest.mark.parametrize("changes", [{"online": True}, {"tbptt": 2}])
def test_bptt_runs_that_stream_the_network_are_refused(tmp_path, changes):
    """Without ``--decolle`` the network trains by BPTT; ``--online`` and ``--tbptt``
    call it on one step (window) at a time, and each call started again from rest (the
    run trained silently on a network without memory): it says it cannot stream."""
    net = create_model("decolle", num_classes=10, in_channels=1, input_size=8, **NET)
    with pytest.raises(StateError, match=r"DECOLLEClassifier.*runs whole sequences only"):
        with streaming(net):
            pass
    values = {k: v for k, v in RUN.items() if k not in ("decolle", "decolle_burnin")}
    cfg = tiny(tmp_path, "stream", **values, **changes, epochs=1, train_samples=16)
    with pytest.raises(StateError, match="runs whole sequences only"):
        Trainer(cfg, log=None).fit()
    assert not (tmp_path / "stream").exists()


@pytest.mark.parametrize(
    ("changes", "message"),
    [({"recompute": True}, "--recompute: model 'decolle' runs its layers step by step"),
     ({"amp": "bf16"}, "--amp bf16: the DECOLLE layers")],
)  # fmt: skip
def test_bptt_runs_refuse_what_the_network_cannot_take_by_name(tmp_path, changes, message):
    """Without ``--decolle``: ``--recompute`` failed at the first step with an
    AttributeError ('Recomputed' object has no attribute 'pass_step': it wrapped the
    spike taps), ``--amp`` with a DTypeError, each after the run's folder was written."""
    values = {k: v for k, v in RUN.items() if k not in ("decolle", "decolle_burnin")}
    cfg = tiny(tmp_path, "bptt", **values, **changes, epochs=1, train_samples=16)
    with pytest.raises(ConfigurationError, match=message):
        Trainer(cfg, log=None).fit()
    assert not (tmp_path / "bptt").exists()
