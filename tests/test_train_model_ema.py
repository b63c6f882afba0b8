"""--model-ema: the moving average of the weights torchvision's reference recipe (and
SpikingJelly's train_classify.py) keeps, checked against torch's own AveragedModel with
get_ema_multi_avg_fn updated at the same steps, through resumes, in the metrics and in
spikeflow eval --ema."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from spikeflow.cli import main
from spikeflow.errors import ConfigurationError
from spikeflow.training import Trainer, config_for_resume, load_checkpoint, load_trained_model
from spikeflow.training.evaluation import evaluate_checkpoint
from spikeflow.training.metric_logs import read_csv
from spikeflow.training.model_ema import ModelEMA, adjusted_ema_decay, ema_start_share
from train_runs import tiny

pytest.importorskip("sklearn", reason="the digits need scikit-learn")

#: 6 steps of 32 per epoch, 3 epochs: updates at steps 0, 2, 4; epoch 1 a warm-up.
EMA = {"model_ema": True, "model_ema_steps": 2, "model_ema_decay": 0.99, "warmup_epochs": 1}


def test_the_decay_is_adjusted_as_torchvisions_recipe_does():
    # adjust = world_size * batch_per_process * steps / epochs = 256 * 32 / 600
    assert adjusted_ema_decay(0.99998, 256, 32, 600) == pytest.approx(
        1 - 0.00002 * 256 * 32 / 600, rel=1e-12
    )
    assert adjusted_ema_decay(0.9, 1024, 32, 10) == 0.0  # alpha capped at 1: a copy
    assert adjusted_ema_decay(1.0, 64, 4, 3) == 1.0
    with pytest.raises(ConfigurationError, match="model_ema_decay"):
        adjusted_ema_decay(1.5, 64, 4, 3)
    with pytest.raises(ConfigurationError, match="model_ema_steps"):
        adjusted_ema_decay(0.9, 64, 0, 3)


def test_the_average_equals_torchs_averaged_model_in_float64():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.BatchNorm1d(7), nn.ReLU(), nn.Linear(7, 3))
    model = model.double()
    decay = 0.8
    ours = ModelEMA(model, decay)
    reference = AveragedModel(
        copy.deepcopy(model), multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for step in range(12):
        x = torch.randn(16, 5, dtype=torch.float64)
        loss = model(x).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 3 == 0:
            warm_up = step < 4
            ours.update(model, copy_only=warm_up)
            reference.update_parameters(model)
            if warm_up:  # the recipe's warm-up: the next update copies again
                reference.n_averaged.fill_(0)
    mine, theirs = ours.module.state_dict(), reference.module.state_dict()
    for key, value in theirs.items():
        if value.is_floating_point():
            torch.testing.assert_close(mine[key], value, rtol=1e-14, atol=0, msg=key)
    # a count is copied, not blended (AveragedModel truncates decay * n + (1 - decay) * m)
    # (the last update was after step 9: the 10th batch)
    assert int(mine["1.num_batches_tracked"]) == 10
    # it averaged: the average is not the last weights
    assert not torch.allclose(mine["0.weight"], model[0].weight)


def test_scheduled_values_are_copied_and_run_time_noise_is_left_alone():
    from spikeflow.layers import DelayedLinear, set_delay_sigma
    from spikeflow.neurons import MaskedPSN, NoisyCubaLIFNode
    from spikeflow.neurons.parallel import set_mask_lambda
    from spikeflow.prune import apply_soft_threshold
    from spikeflow.prune.reparam import set_threshold

    torch.manual_seed(0)
    T = 4
    model = nn.Sequential(
        DelayedLinear(5, 6, max_delay=3), nn.Linear(6, 6), MaskedPSN(2, T),
        NoisyCubaLIFNode(6, T=T),
    )  # fmt: skip
    apply_soft_threshold(model, 0.0, layers=[model[1]])
    ema = ModelEMA(model, 0.9)
    model[3].reset_noise(4, random_state=0)  # per-episode noise: a buffer set as it runs
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for epoch in range(4):  # the trainer's schedules move between epochs
        set_delay_sigma(model, epoch, 4)
        set_mask_lambda(model, min(1.0, 0.4 * epoch))
        set_threshold(model, 0.01 * epoch)
        hidden = model[:2](torch.randn(T, 3, 5))
        loss = hidden.square().mean() + model[2](hidden).mean() + model[3](hidden).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        ema.update(model)
    average = ema.module
    # the schedule's current point, not an average of its past points
    assert float(average[0].sigma) == float(model[0].sigma) == 0.5
    assert float(average[2].mask_lambda) == 1.0
    assert float(average[1].parametrizations.weight[0].threshold) == pytest.approx(0.03)
    # the trained weights are averaged
    assert not torch.equal(average[0].delay, model[0].delay)
    assert not torch.equal(
        average[1].parametrizations.weight.original, model[1].parametrizations.weight.original
    )
    # the noise drawn for the episode is the model's own, not in the average
    assert model[3].eps_v_seq is not None and average[3].eps_v_seq is None
    # what eval --ema loads is what was averaged
    fresh = copy.deepcopy(average)
    fresh.load_state_dict(ema.state_dict()["module"])


def test_the_share_of_the_start_in_the_last_average_is_what_the_updates_leave():
    # a weight of 1 at the first update after the warm-up, 0 at every other: the last
    # average is that update's share
    steps_per_epoch, steps, epochs, warmup, decay = 7, 2, 5, 1, 0.8
    model = nn.Linear(1, 1, bias=False)
    ema = ModelEMA(model, decay)
    first = True
    for epoch in range(epochs):
        for _ in range(0, steps_per_epoch, steps):
            model.weight.data.fill_(1.0 if epoch >= warmup and first else 5.0 * (epoch < warmup))
            first = first and epoch < warmup
            ema.update(model, copy_only=epoch < warmup)
    share = ema_start_share(decay, steps_per_epoch, steps, epochs, warmup)
    assert float(ema.module.weight) == pytest.approx(share, rel=1e-6)
    assert share == pytest.approx(0.8**15, rel=1e-12)  # 4 updates x 4 epochs, the first a copy


def test_a_decay_that_keeps_the_start_is_warned_of(tmp_path):
    lines: list[str] = []
    # d = 0.787 and 6 updates after the warm-up (one epoch run: the warning comes first)
    Trainer(tiny(tmp_path, "slow", **EMA, stop_after=1), log=lines.append).fit()
    warned = [line for line in lines if "warning" in line and "--model-ema-decay" in line]
    assert len(warned) == 1 and "hold 30%" in warned[0], lines
    lines.clear()
    fast = tiny(tmp_path, "fast", **{**EMA, "model_ema_decay": 0.9}, stop_after=1)
    Trainer(fast, log=lines.append).fit()  # d = 0: each update copies
    assert not [line for line in lines if "warning" in line], lines


class _Reference:
    """torch's AveragedModel, updated as the recipe's loop does after each step."""

    def __init__(self, decay: float, steps: int, warmup: int) -> None:
        self.decay, self.steps, self.warmup, self.model = decay, steps, warmup, None

    def on_step_end(self, trainer, epoch, step, loss):
        if self.model is None:
            self.model = AveragedModel(
                copy.deepcopy(trainer.raw_model), use_buffers=True,
                multi_avg_fn=get_ema_multi_avg_fn(self.decay),
            )  # fmt: skip
        if step % self.steps == 0:
            self.model.update_parameters(trainer.raw_model)
            if epoch < self.warmup:
                self.model.n_averaged.fill_(0)


def test_the_trainers_average_equals_averaged_model_at_the_recipes_steps(tmp_path):
    decay = 1 - min(1.0, (1 - 0.99) * 32 * 2 / 3)  # the recipe's adjustment, by hand
    reference = _Reference(decay, 2, 1)
    Trainer(tiny(tmp_path, "run", **EMA), callbacks=[reference], log=None).fit()
    payload = load_checkpoint(tmp_path / "run" / "last.pt")
    saved = payload["model_ema"]["module"]
    expected = reference.model.module.state_dict()
    assert saved.keys() == expected.keys()
    for key, value in expected.items():
        if value.is_floating_point():
            torch.testing.assert_close(saved[key], value, rtol=0, atol=0, msg=key)
    moved = max(float((saved[k] - payload["model"][k]).abs().max())
                for k in saved if saved[k].is_floating_point())  # fmt: skip
    assert moved > 1e-4  # the average lags the weights
    # metrics.csv: the average evaluated each epoch, beside the model
    rows = read_csv(tmp_path / "run" / "metrics.csv")
    assert len(rows) == 3 and all(row["test_acc_ema"] != "" for row in rows)
    # spikeflow eval --ema reads the average: the run's last EMA accuracy and loss
    last = payload["history"][-1]
    result = evaluate_checkpoint(tmp_path / "run" / "last.pt", ema=True)
    assert result["weights"] == "ema"
    assert result["test_acc"] == pytest.approx(last["test_acc_ema"], abs=1e-12)
    assert result["test_loss"] == pytest.approx(last["test_loss_ema"], rel=1e-6)
    # load_trained_model (export's reader) too
    trained = load_trained_model(tmp_path / "run" / "last.pt", ema=True).model.state_dict()
    assert all(torch.equal(trained[key], saved[key]) for key in saved)
    plain = evaluate_checkpoint(tmp_path / "run" / "last.pt")
    assert plain["test_loss"] == pytest.approx(last["test_loss"], rel=1e-6)
    assert plain["test_loss"] != pytest.approx(result["test_loss"], rel=1e-6)


def test_per_window_updates_average_once_per_batch(tmp_path):
    """--tbptt 1 --fptt: T optimizer steps a batch; the average still takes the weights
    after the batch, at every N-th batch (N counts the recipe's iterations, which its
    adjustment assumes), as AveragedModel updated from the step callback."""
    decay = 1 - min(1.0, (1 - 0.99) * 32 * 2 / 3)
    reference = _Reference(decay, 2, 1)
    config = tiny(tmp_path, "fptt", **EMA, tbptt=1, fptt=0.5)
    Trainer(config, callbacks=[reference], log=None).fit()
    payload = load_checkpoint(tmp_path / "fptt" / "last.pt")
    assert payload["model_ema"]["updates"] == 6  # 3 per epoch after the warm-up epoch
    for key, value in reference.model.module.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(payload["model_ema"]["module"][key], value, msg=key)


class _StopAt:
    def __init__(self, epoch: int, step: int) -> None:
        self.epoch, self.step = epoch, step

    def on_step_end(self, trainer, epoch, step, loss):
        if (epoch, step) == (self.epoch, self.step):
            trainer._stop_requested = True


@pytest.mark.parametrize("where", [(1, 3), (0, 1)], ids=["mid-epoch-2", "in-warm-up"])
def test_a_resumed_run_keeps_the_same_average(tmp_path, where):
    Trainer(tiny(tmp_path, "full", **EMA), log=None).fit()
    Trainer(tiny(tmp_path, "cut", **EMA), callbacks=[_StopAt(*where)], log=None).fit()
    payload = load_checkpoint(tmp_path / "cut" / "last.pt")
    assert (payload["epoch"], payload["step"]) == (where[0], where[1] + 1)
    Trainer(config_for_resume(payload, {}), resume=payload, log=None).fit()
    full, cut = (load_checkpoint(tmp_path / n / "last.pt") for n in ("full", "cut"))
    assert full["model_ema"]["updates"] == cut["model_ema"]["updates"] == 6
    for key, value in full["model_ema"]["module"].items():
        assert torch.equal(cut["model_ema"]["module"][key], value), key
    assert [r["test_acc_ema"] for r in full["history"]] == [
        r["test_acc_ema"] for r in cut["history"]
    ]


def test_eval_ema_of_a_run_without_it_is_refused_by_name(tmp_path, capsys):
    Trainer(tiny(tmp_path, "plain", epochs=1), log=None).fit()
    assert "model_ema" not in read_csv(tmp_path / "plain" / "metrics.csv")[0]
    with pytest.raises(ConfigurationError, match="without --model-ema"):
        evaluate_checkpoint(tmp_path / "plain", ema=True)
    assert main(["eval", str(tmp_path / "plain"), "--ema"]) == 2
    assert "without --model-ema" in capsys.readouterr().err


def test_neuromc_pricing_of_the_average_is_refused_by_name(tmp_path, capsys):
    Trainer(tiny(tmp_path, "run", **{**EMA, "epochs": 1, "warmup_epochs": 0}), log=None).fit()
    with pytest.raises(ConfigurationError, match="--energy neuromc with --ema"):
        evaluate_checkpoint(tmp_path / "run", ema=True, energy="neuromc")
    assert main(["eval", str(tmp_path / "run"), "--ema", "--energy", "neuromc"]) == 2
    assert "the moving average is never trained" in capsys.readouterr().err


def test_bad_model_ema_options_are_named(tmp_path, capsys):
    for args, message in ((["--model-ema-decay", "1.5"], "model_ema_decay"),
                          (["--model-ema-steps", "0"], "model_ema_steps")):  # fmt: skip
        code = main(["train", "--model-ema", *args, "--output-dir", str(tmp_path / "x")])
        assert code == 2
        assert message in capsys.readouterr().err


def test_detection_runs_refuse_model_ema_by_name():
    from spikeflow.training import TrainConfig
    from spikeflow.training.detection_task import refuse_classification_options

    config = TrainConfig(dataset="nmnist_detection", model_ema=True)
    with pytest.raises(ConfigurationError, match=r"--model-ema \(not supported for detection"):
        refuse_classification_options(config)


@pytest.mark.parametrize("option, value, switch", [
    ("model_ema_steps", 4, "--model-ema"),
    ("model_ema_decay", 0.99, "--model-ema"),
    ("ra_reps", 2, "--ra-sampler"),
])  # fmt: skip
def test_a_setting_of_an_option_left_off_is_refused(option, value, switch):
    from spikeflow.training import TrainConfig

    with pytest.raises(ConfigurationError, match=f"{option} needs {switch} "):
        TrainConfig(**{option: value}).validate()
    on = {"--model-ema": "model_ema", "--ra-sampler": "ra_sampler"}[switch]
    TrainConfig(**{option: value, on: True}).validate()  # with its switch: accepted
    TrainConfig(**{on: False}).validate()  # the defaults without it: accepted
    assert main(["train", f"--{option.replace('_', '-')}", str(value)]) == 2
