"""The optimizer a ``spikeflow train`` run builds (training/run_optimizer.py): for a
matrix of runs (Adam, AdamW, SGD with momentum, ``--no-decay-norm-bias``, learnable
delays, DECOLLE's per-layer rates, Grad R, STDS, LATS, e-prop's adaptive feedback, a
model's own groups, a resume) its class and every parameter group (which parameters in
which order, lr, weight_decay and every other hyperparameter) equal the layout derived
here by hand from the options' documented rules, not from the function under test."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from spikeflow.prune import GradRewiring
from spikeflow.training import Trainer, config_for_resume, load_checkpoint
from spikeflow.training.run_optimizer import build_run_optimizer
from train_runs import tiny

pytest.importorskip("sklearn", reason="the digits need scikit-learn")

#: plif_digits' parameters (TINY's sizes), in the model's order, and which of them
#: --no-decay-norm-bias keeps out of weight decay (the batch norms' scales and shifts,
#: the PLIF neurons' w): the convolution and linear weights keep theirs.
PLIF = ["features.0.weight", "features.1.weight", "features.1.bias", "features.2.w",
        "features.3.weight", "features.4.weight", "features.4.bias", "features.5.w",
        "classifier.2.weight", "classifier.3.w", "classifier.5.weight",
        "classifier.6.w"]  # fmt: skip
PLIF_DECAYED = ["features.0.weight", "features.3.weight", "classifier.2.weight",
                "classifier.5.weight"]  # fmt: skip
#: The same model pruned: its four weights reparameterised (the strengths, Grad R's).
PRUNED = [n.replace(".weight", ".parametrizations.weight.original") if n in PLIF_DECAYED
          else n for n in PLIF]  # fmt: skip
STRENGTHS = [n for n in PRUNED if n.endswith("original")]
DELAY_NET = {"model": "delay_snn", "loss": "ce", "model_kwargs": {"hidden": 16, "max_delay": 3}}
DELAYS = ["net.1.delay", "net.6.delay", "net.11.delay"]
DELAY_WEIGHTS = ["net.1.weight", "net.6.weight", "net.11.weight"]
DELAY_NORMS = ["net.2.weight", "net.2.bias", "net.7.weight", "net.7.bias"]
DECOLLE_RUN = {"model": "decolle", "decolle": True, "T": 4, "decolle_burnin": 1,
               "model_kwargs": {"channels": [4], "kernel_size": 3, "hidden": [12],
                                "alpha": 0.5, "beta": 0.5, "alpharp": 0.5}}  # fmt: skip
EPROP_RUN = {"model": "eprop_rsnn", "eprop": "adaptive", "T": 4,
             "model_kwargs": {"n_lif": 16, "n_alif": 16, "tau_out": 3.0}}  # fmt: skip
EPROP = ["input.weight", "recurrent.weight", "output.weight", "output.bias"]
SSM = {"model": "spiking_ssm", "loss": "ce", "T": 64, "train_samples": 64, "test_samples": 32,
       "model_kwargs": {"d_model": 8, "d_state": 4, "n_layers": 1, "ssm_lr": 2e-3}}  # fmt: skip
SSM_OWN = ["core.0.ssm.log_dt", "core.0.ssm.log_a_real", "core.0.ssm.a_imag"]
GRAD_R = {"prune": "grad_r", "prune_kwargs": {"alpha": 0.5, "target_sparsity": 0.9}}


def _defaults(kind: str, **options: Any) -> dict[str, Any]:
    """torch's own defaults of the optimizer class ``kind`` built with ``options``."""
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}[kind]
    return dict(cls([torch.nn.Parameter(torch.zeros(1))], **options).defaults)


def _base(kind: str, lr: float, wd: float, momentum: float = 0.9) -> dict[str, Any]:
    """The hyperparameters every group starts from: the run's lr and weight decay (and
    SGD's momentum), the class's defaults otherwise, and the scheduler's initial_lr."""
    extra = {"momentum": momentum} if kind == "sgd" else {}
    return {**_defaults(kind, lr=lr, weight_decay=wd, **extra), "initial_lr": lr}


#: case -> (run options, optimizer class, [(names, hyperparameters over the base)]).
#: lr 1e-2 and weight decay 1e-3 unless a case says otherwise. A group with a learning
#: rate of its own (delays, DECOLLE's layers, a model's groups) records its multiple of
#: the run's as lr_scale (the rate the metrics log).
CASES: dict[str, tuple[dict[str, Any], type, list[tuple[list[str], dict[str, Any]]]]] = {
    "adam": ({}, torch.optim.Adam, [(PLIF, {})]),
    "adamw": ({"optimizer": "adamw"}, torch.optim.AdamW, [(PLIF, {})]),
    "sgd momentum": ({"optimizer": "sgd"}, torch.optim.SGD, [(PLIF, {})]),
    "no decay on norms, biases, neurons": (
        {"optimizer": "sgd", "no_decay_norm_bias": True}, torch.optim.SGD,
        [(PLIF_DECAYED, {}), ([n for n in PLIF if n not in PLIF_DECAYED], {"weight_decay": 0.0})],
    ),
    "delays": (
        {**DELAY_NET, "optimizer": "sgd", "delay_lr_scale": 50.0}, torch.optim.SGD,
        [(["net.1.weight", "net.2.weight", "net.2.bias", "net.6.weight", "net.7.weight",
           "net.7.bias", "net.11.weight"], {}),
         (DELAYS, {"lr": 0.5, "initial_lr": 0.5, "weight_decay": 0.0, "lr_scale": 50.0})],
    ),
    "delays without decay on norms": (
        {**DELAY_NET, "optimizer": "adamw", "no_decay_norm_bias": True}, torch.optim.AdamW,
        [(DELAY_WEIGHTS, {}), (DELAY_NORMS, {"weight_decay": 0.0}),
         (DELAYS, {"lr": 1.0, "initial_lr": 1.0, "weight_decay": 0.0, "lr_scale": 100.0})],
    ),
    "decolle per-layer rates": (
        {**DECOLLE_RUN, "decolle_layer_lr": [2.0, 0.5]}, torch.optim.Adam,
        [(["layers.0.synapse.weight", "layers.0.synapse.bias"],
          {"lr": 2e-2, "initial_lr": 2e-2, "lr_scale": 2.0}),
         (["layers.1.synapse.weight", "layers.1.synapse.bias"],
          {"lr": 5e-3, "initial_lr": 5e-3, "lr_scale": 0.5})],
    ),
    "grad_r": (
        GRAD_R, GradRewiring,
        [(STRENGTHS, {"alpha": 0.5, "target_sparsity": 0.9}),
         ([n for n in PRUNED if n not in STRENGTHS], {"alpha": 0.0, "target_sparsity": 0.9})],
    ),
    "grad_r without decay on norms": (
        {**GRAD_R, "no_decay_norm_bias": True}, GradRewiring,
        [(STRENGTHS, {"alpha": 0.5, "target_sparsity": 0.9}),
         ([n for n in PRUNED if n not in STRENGTHS],
          {"alpha": 0.0, "target_sparsity": 0.9, "weight_decay": 0.0})],
    ),
    "stds": ({"prune": "stds", "prune_kwargs": {"final_threshold": 0.05}}, torch.optim.Adam,
             [(PRUNED, {})]),
    "lats": ({"prune": "lats", "prune_kwargs": {"l1": 20.0}}, torch.optim.Adam, [(PRUNED, {})]),
    "eprop adaptive feedback": (EPROP_RUN, torch.optim.Adam, [([*EPROP, "B"], {})]),
    "eprop feedback without decay on biases": (
        {**EPROP_RUN, "optimizer": "sgd", "no_decay_norm_bias": True}, torch.optim.SGD,
        [(["input.weight", "recurrent.weight", "output.weight", "B"], {}),
         (["output.bias"], {"weight_decay": 0.0})],
    ),
    "a model's own groups": (
        {**SSM, "optimizer": "adamw", "no_decay_norm_bias": True}, torch.optim.AdamW,
        [(["embed.weight", "classifier.weight", "core.0.ssm.c", "core.0.ssm.d",
           "core.0.mix.0.weight"], {"lr_scale": 1.0}),
         (["embed.bias", "classifier.bias", "core.0.mix.0.bias", "core.0.norm.weight",
           "core.0.norm.bias"], {"weight_decay": 0.0, "lr_scale": 1.0}),
         (SSM_OWN, {"lr": 2e-3, "initial_lr": 2e-3, "weight_decay": 0.0,
                    "lr_scale": 2e-3 / 1e-2})],
    ),
}  # fmt: skip


def _layout(trainer: Trainer) -> list[tuple[list[str], dict[str, Any]]]:
    """The trainer's optimizer groups: parameter names (e-prop's feedback as ``B``), in
    the group's order, and every other entry of the group."""
    names = {id(p): n for n, p in trainer.raw_model.named_parameters()}
    if trainer.eprop is not None:
        names.update({id(p): "B" for p in trainer.eprop.parameters()})
    return [
        ([names[id(p)] for p in g["params"]], {k: v for k, v in g.items() if k != "params"})
        for g in trainer.optimizer.param_groups
    ]


def _expected(options: dict[str, Any], groups: list[tuple[list[str], dict[str, Any]]]):
    kind = options.get("optimizer", "adam")
    base = _base(kind, options.get("lr", 1e-2), options.get("weight_decay", 1e-3))
    return [(names, {**base, **extra}) for names, extra in groups]


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_trainers_optimizer_is_the_layout_its_options_give(tmp_path, case):
    options, cls, groups = CASES[case]
    options = {"lr": 1e-2, "weight_decay": 1e-3, **options}
    trainer = Trainer(tiny(tmp_path, "run", **options), log=None)
    trainer._setup()
    try:
        assert type(trainer.optimizer) is cls
        assert _layout(trainer) == _expected(options, groups)
        # the function on its own (eval's path) builds the same groups, hyperparameters
        # as the trainer's before its scheduler adds initial_lr
        alone = build_run_optimizer(trainer.config, trainer.raw_model, eprop=trainer.eprop)
        assert type(alone) is cls
        assert [[id(p) for p in g["params"]] for g in alone.param_groups] == [
            [id(p) for p in g["params"]] for g in trainer.optimizer.param_groups
        ]
        assert [{k: v for k, v in g.items() if k != "params"} for g in alone.param_groups] == [
            {k: v for k, v in g.items() if k not in ("params", "initial_lr")}
            for g in trainer.optimizer.param_groups
        ]
    finally:
        trainer._release_run_lock()


def test_a_resumed_run_has_the_groups_and_state_it_saved(tmp_path):
    """SGD with momentum and --no-decay-norm-bias stopped after an epoch and resumed: the
    layout by hand, the hyperparameters (lr as scheduled) and momentum buffers saved."""
    options = {"optimizer": "sgd", "no_decay_norm_bias": True, "lr": 1e-2,
               "weight_decay": 1e-3, "epochs": 2, "stop_after": 1}  # fmt: skip
    Trainer(tiny(tmp_path, "run", **options), log=None).fit()
    payload = load_checkpoint(tmp_path / "run" / "last.pt")
    saved = payload["optimizer"]
    trainer = Trainer(config_for_resume(payload, {"stop_after": None}), resume=payload, log=None)
    trainer._setup()
    try:
        layout = _layout(trainer)
        expected = _expected(options, CASES["no decay on norms, biases, neurons"][2])
        assert [names for names, _ in layout] == [names for names, _ in expected]
        # after the first epoch of a 2-epoch cosine: lr / 2 in both groups
        assert [h["lr"] for _, h in layout] == pytest.approx([5e-3, 5e-3])
        assert [h for _, h in layout] == [
            {k: v for k, v in g.items() if k != "params"} for g in saved["param_groups"]
        ]
        assert [{**h, "lr": 1e-2} for _, h in layout] == [h for _, h in expected]
        state = trainer.optimizer.state_dict()["state"]
        assert sorted(state) == list(range(len(PLIF)))
        for index, entry in saved["state"].items():
            assert torch.equal(state[index]["momentum_buffer"], entry["momentum_buffer"])
    finally:
        trainer._release_run_lock()


def test_eprop_feedback_joins_a_models_own_groups_at_the_runs_rate(tmp_path, monkeypatch):
    """A model giving its own groups (here e-prop's network, given one at lr / 2): B
    comes after them in a group of its own, at the run's lr and weight decay."""
    from spikeflow.learn import EPropRSNN

    def halves(self, lr, weight_decay):
        return [{"params": list(self.parameters()), "lr": lr / 2}]

    monkeypatch.setattr(EPropRSNN, "optimizer_parameter_groups", halves, raising=False)
    options = {**EPROP_RUN, "lr": 1e-2, "weight_decay": 1e-3}
    trainer = Trainer(tiny(tmp_path, "run", **options), log=None)
    trainer._setup()
    try:
        assert _layout(trainer) == _expected(
            options, [(EPROP, {"lr": 5e-3, "initial_lr": 5e-3, "lr_scale": 0.5}), (["B"], {})]
        )
    finally:
        trainer._release_run_lock()
