"""``spikeflow eval RUN --energy neuromc``: a trained digits run's training step priced on
NeuroMC, equal to neuromc_energy_report called by hand on the run's model, first test
batch, loss and optimizer; bad uses named."""

from __future__ import annotations

import json

import pytest
import torch

from spikeflow.cli import main
from spikeflow.errors import ConfigurationError
from train_runs import tiny


def _by_hand(checkpoint, optimizer: str):
    """neuromc_energy_report on the run's model (train mode), its first 32 test samples
    as the trainer feeds them, its loss, and a fresh optimizer of its kind (SGD: after
    one real step, so that the momentum buffers exist)."""
    from spikeflow.energy import neuromc_energy_report
    from spikeflow.losses import get_loss
    from spikeflow.training import load_trained_model

    run = load_trained_model(checkpoint)
    model = run.model.train()
    x, y = run.batch(32)
    loss = get_loss(run.config.loss)
    if optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9)
        loss(model(x), y).backward()
        opt.step()
        opt.zero_grad()
    else:
        opt = torch.optim.Adam(model.parameters())
    return neuromc_energy_report(model, x, y, loss, opt)


def _eval_and_by_hand(run_dir, trainer):
    """``eval --energy neuromc``'s step for the run in ``run_dir``, and the report of the
    trainer's own model and optimizer by hand on the batch eval prices (with what that
    call took: model, batch, loss)."""
    from spikeflow.energy import neuromc_energy_report
    from spikeflow.losses import get_loss
    from spikeflow.training import load_trained_model
    from spikeflow.training.evaluation import evaluate_checkpoint

    checkpoint = run_dir / "last.pt"
    step = evaluate_checkpoint(checkpoint, energy="neuromc")["neuromc"]
    run = load_trained_model(checkpoint)
    x, y = run.batch(32)
    loss = get_loss(run.config.loss)
    model = trainer.raw_model.train()
    return step, model, x, y, loss, neuromc_energy_report(model, x, y, loss, trainer.optimizer)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_eval_energy_neuromc_equals_the_report_by_hand(tmp_path, capsys, optimizer):
    from spikeflow.training import Trainer

    Trainer(tiny(tmp_path, "run", optimizer=optimizer, epochs=1), log=None).fit()
    checkpoint = tmp_path / "run" / "last.pt"
    out = tmp_path / "eval.json"
    assert main(["eval", "--checkpoint", str(checkpoint), "--no-progress",
                 "--energy", "neuromc", "--json", str(out)]) == 0  # fmt: skip
    text = capsys.readouterr().out
    step = json.loads(out.read_text())["neuromc"]
    expected = _by_hand(checkpoint, optimizer)
    assert step["samples"] == expected.samples == 32
    assert step["total_j"] == pytest.approx(expected.total, rel=1e-12)
    assert step["by_phase_j"] == pytest.approx(expected.by_phase(), rel=1e-12)
    assert step["per_sample_j"] == pytest.approx(expected.total / 32, rel=1e-12)
    names = {(row["name"], row["phase"]) for row in step["layers"]}
    assert names == {(w.name, w.phase) for w in expected.works}
    assert f"NeuroMC training step on 32 test samples: {expected.total * 1e6:.4g} µJ" in text


def test_eval_energy_refuses_other_models(tmp_path):
    from spikeflow.training.evaluation import evaluate_checkpoint

    with pytest.raises(SystemExit):
        main(["eval", "--checkpoint", str(tmp_path), "--energy", "spikesim"])
    with pytest.raises(ConfigurationError, match=r"energy \(--energy\) must be one of neuromc"):
        evaluate_checkpoint(tmp_path, energy="spikesim")


def _sgd_update_j(elements: int, decay: bool) -> float:
    """NeuroMC's joules of an SGD update (momentum, its buffer read) of ``elements``
    parameters, with or without weight decay, priced as one piece of work."""
    from spikeflow.energy.neuromc_costs import NEUROMC_MEMORIES, Work, price

    work = Work("sgd", "bp_grad_opt", elements=elements, momentum=True, weight_decay=decay,
                momentum_buffer=True)  # fmt: skip
    priced = price(work, NEUROMC_MEMORIES)
    return priced.mac_j + priced.ops_j + sum(priced.base_j.values()) + sum(priced.extra_j.values())


def test_eval_energy_neuromc_prices_the_runs_own_parameter_groups(tmp_path):
    """An SGD run with --no-decay-norm-bias: the update priced is its trainer's optimizer
    (no weight-decay work on the batch norms, biases and PLIF w), equal to the report by
    hand with the trainer's own optimizer, and cheaper than the one group the eval
    priced before (weight decay on every parameter)."""
    from spikeflow.energy import neuromc_energy_report
    from spikeflow.training import Trainer

    trainer = Trainer(tiny(tmp_path, "run", optimizer="sgd", weight_decay=1e-3, epochs=1,
                           no_decay_norm_bias=True), log=None)  # fmt: skip
    trainer.fit()
    step, model, x, y, loss, mine = _eval_and_by_hand(tmp_path / "run", trainer)
    assert step["total_j"] == pytest.approx(mine.total, rel=1e-12)
    assert step["by_phase_j"] == pytest.approx(mine.by_phase(), rel=1e-12)
    # the update by hand: the conv/linear weights with decay, the rest without
    named = dict(model.named_parameters())
    weights = ("features.0.weight", "features.3.weight", "classifier.2.weight",
               "classifier.5.weight")  # fmt: skip
    decayed = sum(named[n].numel() for n in weights)
    free = sum(p.numel() for p in model.parameters()) - decayed
    assert 0 < free < decayed
    expected = _sgd_update_j(decayed, True) + _sgd_update_j(free, False)
    assert step["by_phase_j"]["optimizer"] == pytest.approx(expected, rel=1e-12)
    # what the eval priced before: one group, every parameter decayed
    one = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9, weight_decay=1e-3)
    for p in model.parameters():
        one.state[p]["momentum_buffer"] = torch.zeros_like(p)
    before = neuromc_energy_report(model, x, y, loss, one)
    assert before.by_phase()["optimizer"] == pytest.approx(_sgd_update_j(decayed + free, True))
    assert step["by_phase_j"]["optimizer"] < before.by_phase()["optimizer"]
    assert step["by_phase_j"]["forward"] == pytest.approx(before.by_phase()["forward"], rel=1e-12)


def test_eval_energy_neuromc_prices_a_grad_r_run_as_its_adam(tmp_path):
    """A Grad R run trains with GradRewiring (Adam with a prior on the strengths): the
    eval prices that optimizer, as the report with the trainer's own does, and its
    update as Adam's over the same parameters (the prior's step is not priced; an Adam
    subclass was priced as SGD without momentum before)."""
    from spikeflow.energy import neuromc_energy_report
    from spikeflow.prune import GradRewiring
    from spikeflow.training import Trainer

    grad_r = {"prune": "grad_r", "prune_kwargs": {"alpha": 0.5, "target_sparsity": 0.9}}
    trainer = Trainer(tiny(tmp_path, "run", epochs=1, **grad_r), log=None)
    trainer.fit()
    assert type(trainer.optimizer) is GradRewiring
    step, model, x, y, loss, mine = _eval_and_by_hand(tmp_path / "run", trainer)
    assert step["total_j"] == pytest.approx(mine.total, rel=1e-12)
    adam = neuromc_energy_report(model, x, y, loss, torch.optim.Adam(model.parameters()))
    assert step["by_phase_j"] == pytest.approx(adam.by_phase(), rel=1e-12)
    assert {w.op for w in mine.works if w.phase == "optimizer"} == {"adam"}


def test_eval_energy_neuromc_refuses_a_checkpoint_whose_optimizer_differs(tmp_path):
    """A checkpoint whose optimizer has other groups than the run's options build (as an
    older spikeflow's might): refused by name, not priced as something else."""
    from spikeflow.training import Trainer, load_checkpoint, save_checkpoint
    from spikeflow.training.evaluation import evaluate_checkpoint

    Trainer(tiny(tmp_path, "run", optimizer="sgd", epochs=1, no_decay_norm_bias=True,
                 weight_decay=1e-3), log=None).fit()  # fmt: skip
    payload = load_checkpoint(tmp_path / "run" / "last.pt")
    groups = payload["optimizer"]["param_groups"]
    merged = {**groups[0], "params": [i for g in groups for i in g["params"]]}
    payload["optimizer"]["param_groups"] = [merged]
    save_checkpoint(payload, tmp_path / "run" / "last.pt")
    with pytest.raises(ConfigurationError, match=r"the optimizer in .*last.pt has parameter "
                       r"groups of sizes \[12\], the run's options build groups of "
                       r"sizes \[4, 8\]"):  # fmt: skip
        evaluate_checkpoint(tmp_path / "run" / "last.pt", energy="neuromc")


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"online": True}, r"online training \(SLTT, --online\): a backward per time step"),
        ({"online": True, "online_trace_decay": 0.5},
         r"online training \(OTTT, --online --online-trace-decay\).*presynaptic traces"),
        ({"model": "eprop_rsnn", "eprop": "random", "loss": "ce"},
         r"e-prop \(--eprop random\): eligibility traces"),
        ({"model": "eventprop_snn", "eventprop": "eventprop", "loss": "ce"},
         r"EventProp \(--eventprop eventprop\): the adjoint's backward"),
        ({"model": "decolle", "decolle": True},
         r"DECOLLE \(--decolle, --decolle-update step\): every layer's local readout loss"),
    ],
)  # fmt: skip
def test_eval_energy_neuromc_refuses_runs_not_trained_by_bptt(tmp_path, changes, named):
    """Online (SLTT, OTTT), e-prop, EventProp and DECOLLE runs do not take one BPTT step: refused by
    name rather than priced as one; a BPTT run of the same options passes."""
    from spikeflow.training.neuromc_eval import refuse_unpriced_training

    with pytest.raises(ConfigurationError, match="prices one BPTT step.*" + named):
        refuse_unpriced_training(tiny(tmp_path, "run", **changes))
    dropped = ("online", "eprop", "decolle", "eventprop")
    plain = {k: v for k, v in changes.items() if k not in dropped}
    plain.pop("online_trace_decay", None)
    refuse_unpriced_training(tiny(tmp_path, "run", **plain))  # BPTT: priced
