"""Parameter groups in ``spikeflow train``: a model's ``optimizer_parameter_groups``
and ``--no-decay-norm-bias`` (the groups, the steps they give, resume, refusals)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from spikeflow.cli.options import build_parser
from spikeflow.errors import ConfigurationError
from spikeflow.models.spiking_ssm import SpikingSSM
from spikeflow.neurons import LIFNode, ParametricLIFNode
from spikeflow.neurons.ilc import ILCLIFNode
from spikeflow.neurons.parallel import PSN
from spikeflow.prune import GradRewiring
from spikeflow.training import Trainer, config_for_resume
from spikeflow.training.config import config_from_dict
from spikeflow.training.param_groups import (
    check_parameter_groups,
    no_decay_parameters,
    without_decay,
)
from train_runs import check_resume_is_exact, tiny

#: A small spiking_ssm run on the digits read as 64-pixel sequences (a fraction of a
#: second per epoch), its S4D layers' SSM parameters at 2e-3.
SSM = {"model": "spiking_ssm", "loss": "ce", "T": 64, "train_samples": 64, "test_samples": 32,
       "model_kwargs": {"d_model": 8, "d_state": 4, "n_layers": 1, "ssm_lr": 2e-3}}  # fmt: skip
SSM_NAMES = ["core.0.ssm.log_dt", "core.0.ssm.log_a_real", "core.0.ssm.a_imag"]


def _named_groups(trainer):
    names = {id(p): n for n, p in trainer.raw_model.named_parameters()}
    return [
        (sorted(names[id(p)] for p in g["params"]), g["lr"], g["weight_decay"])
        for g in trainer.optimizer.param_groups
    ]


def _set_up(tmp_path, name, **changes):
    trainer = Trainer(tiny(tmp_path, name, **changes), log=None)
    trainer._setup()
    return trainer


# -- the checks and the no-decay rule ------------------------------------------------


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 4)
        self.bn = nn.BatchNorm1d(4)
        self.plif = ParametricLIFNode()
        self.lif = LIFNode(tau=2.0, learnable_tau=True)
        self.norm = nn.LayerNorm(4)
        self.conv = nn.Conv1d(4, 4, 1, bias=False)
        self.psn = PSN(T=3)
        self.ilc = ILCLIFNode(act_dim=2, dec_pop_dim=2)  # its connections are synapses
        self.out = nn.Linear(4, 2)
        self.frozen = nn.Parameter(torch.zeros(2), requires_grad=False)


def test_no_decay_parameters_are_the_norms_the_biases_and_the_neurons():
    net = _Net()
    parametrize.register_parametrization(net.out, "bias", nn.Identity())
    found = {n for n, p in net.named_parameters() if id(p) in no_decay_parameters(net)}
    assert found == {
        "fc.bias", "bn.weight", "bn.bias", "plif.w", "lif.tau", "norm.weight", "norm.bias",
        "psn.bias", "ilc.conn.bias", "out.parametrizations.bias.original",
    }  # fmt: skip


def test_learned_quantization_steps_are_out_of_decay_and_the_weights_in():
    # (the steps decayed with --no-decay-norm-bias, pulling every quantized weight and
    # input toward zero as a norm's decayed gain would)
    from spikeflow import quant

    net = nn.Sequential(nn.Linear(4, 3, bias=False), nn.Linear(3, 2, bias=False))
    quant.apply_weight_quantization(net, 4, method="lsq", layers=[net[0]])
    quant.apply_weight_quantization(net, 4, layers=[net[1]])  # fixed scales: no step
    quant.apply_input_quantization(net, 4)
    found = {n for n, p in net.named_parameters() if id(p) in no_decay_parameters(net)}
    assert found == {"0.parametrizations.weight.0.step", "0.input_quantizer.step"}


def test_without_decay_splits_each_decayed_group_after_itself():
    net = _Net()
    weights = [net.fc.weight, net.fc.bias]
    fixed = [net.out.weight, net.out.bias]
    groups = [{"params": weights, "lr": 0.5}, {"params": fixed, "weight_decay": 0.0}]
    split = without_decay(groups, no_decay_parameters(net), 0.1)
    assert [(g["params"], g.get("lr"), g.get("weight_decay")) for g in split] == [
        ([net.fc.weight], 0.5, None),
        ([net.fc.bias], 0.5, 0.0),
        (fixed, None, 0.0),  # no decay already: as it was
    ]


def _groups(net, case):
    everything = [p for p in net.parameters() if p.requires_grad]
    rest = [p for p in everything if p is not net.fc.weight]
    return {
        "twice": [{"params": everything}, {"params": [net.fc.weight]}],
        "missing": [{"params": rest}],
        "tensor": [{"params": [*everything, torch.zeros(3)]}],
        "foreign": [{"params": [*everything, nn.Parameter(torch.zeros(5))]}],
        "no params": [{"lr": 0.1}],
        "not a list": {"params": everything},
        "one parameter": [{"params": net.fc.weight}],
        "negative lr": [{"params": everything, "lr": -1.0}],
        "nan decay": [{"params": everything, "weight_decay": float("nan")}],
    }[case]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("twice", r"parameter 'fc.weight' is in group 0 and in group 1"),
        ("missing", r"the trainable parameters 'fc.weight' are in no group"),
        ("tensor", r"group 0: params\[\d+\] is a Tensor of shape \(3,\), not an nn.Parameter"),
        ("foreign", r"group 0: params\[\d+\] \(shape \(5,\)\) is not a parameter of _Net"),
        ("no params", r"group 0 must be a dict with 'params', got a dict"),
        ("not a list", r"must return a list of dicts .* got dict"),
        ("one parameter", r"group 0: 'params' must be a list of parameters, got a Parameter"),
        ("negative lr", r"group 0: lr must be a finite number >= 0, got -1.0"),
        ("nan decay", r"group 0: weight_decay must be a finite number >= 0, got nan"),
    ],
)
def test_bad_groups_are_refused_by_name(case, message):
    net = _Net()
    with pytest.raises(ConfigurationError, match="net groups:? " + message):
        check_parameter_groups(net, _groups(net, case), "net groups")


def test_good_groups_pass_with_frozen_parameters_left_out_and_empty_groups_dropped():
    net = _Net()
    everything = [p for p in net.parameters() if p.requires_grad]
    groups = [{"params": everything[:3], "lr": 0.1}, {"params": []}, {"params": everything[3:]}]
    checked = check_parameter_groups(net, groups)
    assert [g["params"] for g in checked] == [everything[:3], everything[3:]]
    assert checked[0]["lr"] == 0.1 and checked[0] is not groups[0]


# -- through the trainer -------------------------------------------------------------


def test_spiking_ssm_trains_with_s4s_groups_and_the_option_splits_them(tmp_path):
    pytest.importorskip("sklearn", reason="the digits need scikit-learn")
    trainer = _set_up(tmp_path, "s4", **SSM, lr=1e-2, weight_decay=0.05, optimizer="adamw")
    named = _named_groups(trainer)
    assert [(lr, wd) for _, lr, wd in named] == [(1e-2, 0.05), (2e-3, 0.0)]
    assert named[1][0] == sorted(SSM_NAMES)
    assert trainer._run_lr() == pytest.approx(1e-2)
    split = _set_up(tmp_path, "split", **SSM, lr=1e-2, weight_decay=0.05,
                    no_decay_norm_bias=True)  # fmt: skip
    assert _named_groups(split) == [
        (["classifier.weight", "core.0.mix.0.weight", "core.0.ssm.c", "core.0.ssm.d",
          "embed.weight"], 1e-2, 0.05),
        (["classifier.bias", "core.0.mix.0.bias", "core.0.norm.bias", "core.0.norm.weight",
          "embed.bias"], 1e-2, 0.0),
        (sorted(SSM_NAMES), 2e-3, 0.0),
    ]  # fmt: skip


def test_a_step_moves_each_parameter_as_its_group_says(tmp_path):
    # AdamW with a zero gradient: Adam's step is 0, so a decayed parameter becomes
    # p (1 - lr wd) exactly and one without decay stays put.
    pytest.importorskip("sklearn", reason="the digits need scikit-learn")
    lr, wd = 1e-2, 0.5
    trainer = _set_up(tmp_path, "plif", optimizer="adamw", lr=lr, weight_decay=wd,
                      no_decay_norm_bias=True)  # fmt: skip
    ssm = _set_up(tmp_path, "ssm", **SSM, optimizer="adamw", lr=lr, weight_decay=wd)
    for run, free in ((trainer, {"w", "bias", "features.1.weight", "features.4.weight"}),
                      (ssm, set(SSM_NAMES))):  # fmt: skip
        named = dict(run.raw_model.named_parameters())
        before = {n: p.detach().clone() for n, p in named.items()}
        for p in named.values():
            p.grad = torch.zeros_like(p)
        run.optimizer.step()
        kept = [n for n in named if n in free or n.rsplit(".", 1)[-1] in free]
        assert kept and len(kept) < len(named)
        for name, p in named.items():
            expected = before[name] if name in kept else before[name] * (1 - lr * wd)
            torch.testing.assert_close(p.detach(), expected, rtol=1e-6, atol=0, msg=name)


def test_a_resume_with_groups_is_exact(tmp_path):
    pytest.importorskip("sklearn", reason="the digits need scikit-learn")
    payload = check_resume_is_exact(
        tmp_path, **SSM, lr=1e-2, optimizer="adamw", weight_decay=0.05, warmup_epochs=2,
        no_decay_norm_bias=True,
    )  # fmt: skip
    groups = payload["optimizer"]["param_groups"]
    assert [g["weight_decay"] for g in groups] == [0.05, 0.0, 0.0]
    # in the warm-up's second epoch (2/3 of lr): each group at its own rate times 2/3
    assert [g["lr"] for g in groups] == pytest.approx([2e-2 / 3, 2e-2 / 3, 4e-3 / 3])
    assert payload["epoch"] == 1


def test_grad_r_takes_the_groups_with_its_prior_on_the_strengths_only(tmp_path):
    pytest.importorskip("sklearn", reason="the digits need scikit-learn")
    trainer = _set_up(tmp_path, "grad_r", prune="grad_r", weight_decay=0.1, lr=1e-2,
                      prune_kwargs={"alpha": 0.5, "target_sparsity": 0.9},
                      no_decay_norm_bias=True)  # fmt: skip
    assert isinstance(trainer.optimizer, GradRewiring)
    named = _named_groups(trainer)
    alphas = [g["alpha"] for g in trainer.optimizer.param_groups]
    assert [(wd, alpha) for (_, _, wd), alpha in zip(named, alphas)] == [
        (0.1, 0.5), (0.0, 0.0)
    ]  # fmt: skip
    assert all(n.endswith("parametrizations.weight.original") for n in named[0][0])
    assert len(named[0][0]) == 4 and all(not n.endswith("original") for n in named[1][0])


def test_a_models_bad_groups_are_refused_before_training(tmp_path, monkeypatch):
    pytest.importorskip("sklearn", reason="the digits need scikit-learn")

    def twice(self, lr, weight_decay):
        return [{"params": list(self.parameters())}, {"params": [self.embed.weight]}]

    monkeypatch.setattr(SpikingSSM, "optimizer_parameter_groups", twice)
    with pytest.raises(ConfigurationError, match=r"SpikingSSM.optimizer_parameter_groups: "
                       r"parameter 'embed.weight' is in group 0 and in group 1"):  # fmt: skip
        Trainer(tiny(tmp_path, "bad", **SSM), log=None).fit()
    assert not (tmp_path / "bad").exists()


def test_the_command_line_option_trains_stops_and_resumes(tmp_path):
    pytest.importorskip("sklearn", reason="the digits need scikit-learn")
    from spikeflow.cli import main
    from spikeflow.training import load_checkpoint

    assert not hasattr(build_parser().parse_args(["train"]), "no_decay_norm_bias")
    with pytest.raises(ConfigurationError, match="no_decay_norm_bias must be true or false"):
        config_from_dict({"no_decay_norm_bias": "yes"}).validate()
    run = tmp_path / "run"
    line = (
        "train --model spiking_ssm --model-kwargs d_model=8 d_state=4 n_layers=1 -T 64 "
        "--loss ce --train-samples 64 --test-samples 32 --epochs 2 --optimizer adamw "
        "--weight-decay 0.1 --no-decay-norm-bias --no-progress --plots off"
    ).split()
    assert main([*line, "--output-dir", str(run), "--stop-after", "1"]) == 0
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    payload = load_checkpoint(run / "last.pt")
    assert payload["epoch"] == 2 and payload["config"]["no_decay_norm_bias"] is True
    groups = payload["optimizer"]["param_groups"]
    assert [(len(g["params"]), g["weight_decay"]) for g in groups] == [(5, 0.1), (5, 0.0), (3, 0.0)]
    # a resume without the option would train another run: refused by name
    with pytest.raises(ConfigurationError, match=r"fixed \['no_decay_norm_bias'\]"):
        config_for_resume(payload, {"no_decay_norm_bias": False})


def test_the_logged_learning_rate_is_the_runs_whichever_group_comes_first(tmp_path, monkeypatch):
    pytest.importorskip("sklearn", reason="the digits need scikit-learn")

    def ssm_first(self, lr, weight_decay):
        ssm = [p for n, p in self.named_parameters() if n in SSM_NAMES]
        rest = [p for n, p in self.named_parameters() if n not in SSM_NAMES]
        return [{"params": ssm, "lr": 2e-3, "weight_decay": 0.0}, {"params": rest}]

    monkeypatch.setattr(SpikingSSM, "optimizer_parameter_groups", ssm_first)
    trainer = _set_up(tmp_path, "first", **SSM, lr=1e-2, schedule="step", step_size=1,
                      gamma=0.5)  # fmt: skip
    assert [g["lr"] for g in trainer.optimizer.param_groups] == [2e-3, 1e-2]
    assert trainer._run_lr() == pytest.approx(1e-2)
    trainer.optimizer.step()
    trainer.scheduler.step()
    assert trainer._run_lr() == pytest.approx(5e-3)


def test_s4_groups_at_one_rate_without_decay_train_as_one_group(tmp_path, monkeypatch):
    # docs/ssm.md: ssm_lr=None repeats the measurements' one-group training exactly.
    pytest.importorskip("sklearn", reason="the digits need scikit-learn")
    from spikeflow.training import load_checkpoint

    same = {**SSM, "model_kwargs": {**SSM["model_kwargs"], "ssm_lr": None}, "epochs": 2}
    Trainer(tiny(tmp_path, "groups", **same, lr=1e-2), log=None).fit()
    monkeypatch.delattr(SpikingSSM, "optimizer_parameter_groups")
    Trainer(tiny(tmp_path, "one", **same, lr=1e-2), log=None).fit()
    groups, one = (load_checkpoint(tmp_path / n / "last.pt") for n in ("groups", "one"))
    assert len(groups["optimizer"]["param_groups"]) == 2
    assert len(one["optimizer"]["param_groups"]) == 1
    for key, value in one["model"].items():
        assert torch.equal(groups["model"][key], value), key


def test_a_decolle_run_refuses_per_layer_rates_over_a_models_own_groups(tmp_path, monkeypatch):
    pytest.importorskip("sklearn", reason="the digits need scikit-learn")
    from spikeflow.training.decolle import DECOLLEClassifier

    def own(self, lr, weight_decay):
        return [{"params": list(self.parameters())}]

    monkeypatch.setattr(DECOLLEClassifier, "optimizer_parameter_groups", own, raising=False)
    net = {"channels": [4], "kernel_size": 3, "hidden": [12]}
    config = tiny(tmp_path, "decolle", model="decolle", decolle=True, T=4, model_kwargs=net,
                  decolle_layer_lr=[2.0, 0.5])  # fmt: skip
    with pytest.raises(ConfigurationError, match="which --decolle-layer-lr would replace"):
        Trainer(config, log=None).fit()


def test_the_option_without_weight_decay_says_it_changes_nothing(tmp_path):
    pytest.importorskip("sklearn", reason="the digits need scikit-learn")
    messages: list[str] = []
    trainer = Trainer(tiny(tmp_path, "none", **SSM, no_decay_norm_bias=True), log=messages.append)
    trainer._setup()
    assert any("--no-decay-norm-bias changes nothing" in m for m in messages)
    assert [g["weight_decay"] for g in trainer.optimizer.param_groups] == [0.0, 0.0]


def test_a_resume_whose_groups_differ_says_so(tmp_path):
    # A run of LSQ with --no-decay-norm-bias saved before the steps left the decayed
    # group: torch's bare ValueError about group sizes.
    pytest.importorskip("sklearn", reason="the digits need scikit-learn")
    from spikeflow.training import load_checkpoint

    options = {"weight_bits": 3, "weight_quant": "lsq", "weight_decay": 0.1,
               "no_decay_norm_bias": True, "epochs": 1}  # fmt: skip
    Trainer(tiny(tmp_path, "run", **options), log=None).fit()
    payload = load_checkpoint(tmp_path / "run" / "last.pt")
    decayed, free = payload["optimizer"]["param_groups"]
    decayed["params"].append(free["params"].pop())  # (as the run before saved them)
    with pytest.raises(ConfigurationError, match=r"groups of sizes \[\d+, \d+\], this run"):
        Trainer(config_for_resume(payload, {}), resume=payload,
                resume_dir=str(tmp_path / "run"), log=None).fit()  # fmt: skip
