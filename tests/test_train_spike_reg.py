"""``spikeflow train --spike-reg``: the regulariser of the training forward's own spikes
added to the loss, as a hand-written loop adds it; logged, saved and resumed exactly;
refused where it cannot join the training method."""

from __future__ import annotations

import copy
import os
import signal

import pytest
import torch

import spikeflow.training.trainer as trainer_module
from spikeflow.cli import main
from spikeflow.errors import ConfigurationError
from spikeflow.losses import LayerSpikes, get_loss, im_loss, l1_rate_sparsity, l2_spike_population
from spikeflow.training import Trainer, config_for_resume, load_checkpoint
from spikeflow.training.data import to_time_major
from spikeflow.training.metric_logs import read_csv
from train_runs import tiny

REGULARISERS = {
    "l1_rate_sparsity": (l1_rate_sparsity, {"strength": 1e-3, "reduction": "mean"}),
    "l2_spike_population": (l2_spike_population, {"strength": 1e-4}),
    "im_loss": (im_loss, {"strength": 0.5, "target_rate": 0.3}),
}


def _capture(monkeypatch: pytest.MonkeyPatch) -> dict:
    """Keep the model as built (before any step) and every batch the trainer steps on."""
    seen: dict = {"batches": []}
    build_model, train_step = trainer_module.build_model, Trainer._train_step

    def build_and_keep(*args, **kwargs):
        model = build_model(*args, **kwargs)
        seen["initial"] = copy.deepcopy(model)
        return model

    def step_and_keep(self, x, y, step, steps):
        seen["batches"].append((x.clone(), y.clone()))
        return train_step(self, x, y, step, steps)

    monkeypatch.setattr(trainer_module, "build_model", build_and_keep)
    monkeypatch.setattr(Trainer, "_train_step", step_and_keep)
    return seen


@pytest.mark.parametrize("name", sorted(REGULARISERS))
def test_a_run_equals_a_hand_written_loop_adding_the_term(tmp_path, monkeypatch, name):
    """Same seed, same batches: the weights after every step of the run are those of a
    loop of forward, MSE + the term on LayerSpikes' recording, backward, Adam, bit for
    bit; and metrics.csv's train_spike_reg is the mean of the loop's terms."""
    function, kwargs = REGULARISERS[name]
    seen = _capture(monkeypatch)
    # (IM-Loss's official choice: every spiking layer but the first and the last)
    layers = ["features.5", "classifier.3"] if name == "im_loss" else None
    given = {**kwargs, **({"layers": layers} if layers else {})}
    config = tiny(tmp_path, name, epochs=1, train_samples=96, schedule="none",
                  spike_reg=name, spike_reg_kwargs=given)  # fmt: skip
    trainer = Trainer(config, log=None)
    trainer.fit()
    assert len(seen["batches"]) == 3
    model = seen["initial"]
    torch.manual_seed(0)  # (no dropout: the forward draws nothing)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    loss_fn, terms = get_loss("mse"), []
    model.train()
    with LayerSpikes(model, layers) as recorded:
        for x, y in seen["batches"]:
            out = model(to_time_major(x, config.T, trainer.layout))
            term = function(list(recorded.spikes.values()), **kwargs)
            loss = loss_fn(out.float(), y) + term
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            terms.append(float(term.detach()) * len(y))
    theirs = trainer.raw_model.state_dict()
    assert model.state_dict().keys() == theirs.keys()
    for key, mine in model.state_dict().items():
        assert torch.equal(mine, theirs[key]), key
    assert terms[0] > 0
    row = read_csv(tmp_path / name / "metrics.csv")[0]
    assert float(row["train_spike_reg"]) == pytest.approx(sum(terms) / 96, rel=1e-6)
    # the task loss alone stays in train_loss (the same as a run's test loss would read)
    assert float(row["train_loss"]) != pytest.approx(float(row["train_spike_reg"]))


def test_the_term_changes_the_training(tmp_path):
    """A strong L1 term lowers the firing: the weights differ from an unregularised
    run's, and the trained network fires less."""
    plain = Trainer(tiny(tmp_path, "plain", epochs=2), log=None).fit()
    strong = Trainer(tiny(tmp_path, "l1", epochs=2, spike_reg="l1_rate_sparsity",
                          spike_reg_kwargs={"strength": 1e-2, "reduction": "mean"}),
                     log=None).fit()  # fmt: skip
    assert strong.history[-1]["train_rate"] < plain.history[-1]["train_rate"]


class _CtrlC:
    def __init__(self, epoch: int, step: int) -> None:
        self.epoch, self.step = epoch, step

    def on_step_end(self, trainer, epoch, step, loss):
        if (epoch, step) == (self.epoch, self.step):
            os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.parametrize("where", ["epoch_end", "mid_epoch"])
def test_a_regularised_run_resumes_exactly(tmp_path, where):
    """Stopped after an epoch or by Ctrl-C inside epoch 2, then resumed from the saved
    config (spike_reg and its kwargs come back from it): the same weights and the same
    metrics.csv rows, train_spike_reg included, as the run done at once."""
    changes = {"spike_reg": "im_loss", "spike_reg_kwargs": {"strength": 0.1}, "epochs": 2}
    Trainer(tiny(tmp_path, "full", **changes), log=None).fit()
    if where == "epoch_end":
        Trainer(tiny(tmp_path, "split", stop_after=1, **changes), log=None).fit()
    else:
        result = Trainer(tiny(tmp_path, "split", **changes), callbacks=[_CtrlC(1, 2)],
                         log=None).fit()  # fmt: skip
        assert result.interrupted
    payload = load_checkpoint(tmp_path / "split" / "last.pt")
    resumed = config_for_resume(payload, {})
    assert (resumed.spike_reg, resumed.spike_reg_kwargs) == ("im_loss", {"strength": 0.1})
    Trainer(resumed, resume=payload, log=None).fit()
    full, split = (load_checkpoint(tmp_path / n / "last.pt")["model"] for n in ("full", "split"))
    for key in full:
        assert torch.equal(full[key], split[key]), key
    rows = [read_csv(tmp_path / run / "metrics.csv") for run in ("full", "split")]
    for a, b in zip(*rows, strict=True):
        for column in ("train_loss", "train_acc", "train_spike_reg", "test_acc"):
            assert a[column] == b[column], column


def test_the_command_line_options_reach_the_run_and_its_config_toml(tmp_path):
    out = tmp_path / "cli"
    code = main(["train", "--epochs", "1", "--train-samples", "64", "--test-samples", "32",
                 "-T", "2", "--plots", "off", "--device", "cpu", "--output-dir", str(out),
                 "--spike-reg", "l2_spike_population", "--spike-reg-kwargs", "strength=1e-5",
                 "layers=['features.2']", "--no-progress"])  # fmt: skip
    assert code == 0
    text = (out / "config.toml").read_text()
    assert 'spike_reg = "l2_spike_population"' in text
    assert 'spike_reg_kwargs = {strength = 1e-05, layers = ["features.2"]}' in text
    assert float(read_csv(out / "metrics.csv")[0]["train_spike_reg"]) > 0


def test_amp_computes_the_term_in_float32(tmp_path, monkeypatch):
    """Under bf16 autocast the layers' spikes are bf16 tensors; the regulariser gets them
    as float32 (exact: 0/1 values) and the logged mean is finite."""
    import spikeflow.training.spike_reg as spike_reg_module

    dtypes: dict[str, set] = {"recorded": set(), "given": set()}
    real_spikes = LayerSpikes.spikes.fget

    def recorded(self):
        spikes = real_spikes(self)
        dtypes["recorded"].update(s.dtype for s in spikes.values())
        return spikes

    def spy(spikes, strength=1e-5, reduction="sum"):  # (validate's dry call: one tensor)
        if not isinstance(spikes, torch.Tensor):
            dtypes["given"].update(s.dtype for s in spikes)
        return l1_rate_sparsity(spikes, strength, reduction)

    monkeypatch.setattr(LayerSpikes, "spikes", property(recorded))
    monkeypatch.setitem(spike_reg_module.SPIKE_REGULARISERS, "l1_rate_sparsity", spy)
    result = Trainer(tiny(tmp_path, "amp", epochs=1, amp="bf16", spike_reg="l1_rate_sparsity",
                          spike_reg_kwargs={"strength": 1e-3}), log=None).fit()  # fmt: skip
    assert torch.bfloat16 in dtypes["recorded"]
    assert dtypes["given"] == {torch.float32}
    value = result.history[-1]["train_spike_reg"]
    assert 0 < value < float("inf")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"spike_reg": "l3"}, "spike_reg must be none or one of l1_rate_sparsity"),
        ({"spike_reg_kwargs": {"strength": 1.0}}, "need a regulariser: add --spike-reg"),
        ({"spike_reg": "im_loss", "spike_reg_kwargs": {"reduction": "sum"}},
         "im_loss takes strength, target_rate (and layers), not reduction"),
        ({"spike_reg": "im_loss", "spike_reg_kwargs": {"target_rate": 2.0}}, "target_rate"),
        ({"spike_reg": "l1_rate_sparsity", "spike_reg_kwargs": {"strength": -1.0}},
         "strength"),
        ({"spike_reg": "l1_rate_sparsity", "spike_reg_kwargs": {"reduction": "max"}},
         "reduction must be one of sum, mean"),
        ({"spike_reg": "l1_rate_sparsity", "spike_reg_kwargs": {"layers": "sn1"}},
         "layers must be a non-empty list of layer names, got 'sn1'"),
        ({"spike_reg": "l1_rate_sparsity", "online": True}, "combined with --online"),
        ({"spike_reg": "l1_rate_sparsity", "tbptt": 1}, "combined with --tbptt"),
        ({"spike_reg": "l1_rate_sparsity", "compile": True}, "combined with --compile"),
        ({"spike_reg": "l1_rate_sparsity", "recompute": True}, "combined with --recompute"),
    ],
)  # fmt: skip
def test_bad_settings_are_named(tmp_path, changes, message):
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        tiny(tmp_path, "bad", **changes).validate()


def test_a_layer_that_is_not_spiking_is_named(tmp_path):
    config = tiny(tmp_path, "bad", spike_reg="l1_rate_sparsity",
                  spike_reg_kwargs={"layers": ["fc9"]})  # fmt: skip
    with pytest.raises(
        ConfigurationError,
        match=r"--spike-reg-kwargs layers: no spiking layer "
        r"named \['fc9'\]; the model has \['features.2'",
    ):
        Trainer(config, log=None).fit()


def test_a_detection_run_refuses_it():
    from spikeflow.training.detection_task import refuse_classification_options
    from spikeflow.training.train_config import TrainConfig

    config = TrainConfig(dataset="nmnist_detection", spike_reg="l1_rate_sparsity")
    with pytest.raises(ConfigurationError, match=r"--spike-reg \(not supported for detection"):
        refuse_classification_options(config)
    refuse_classification_options(TrainConfig(dataset="nmnist_detection"))  # (without: none)
