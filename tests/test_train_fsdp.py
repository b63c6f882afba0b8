"""Sharded data parallelism (``--fsdp``, torch's FSDP2): 2 gloo CPU processes started as
torchrun starts them (test_train_distributed's harness) train the same weights, log the
same metrics and write the same checkpoints as 1 process on the global batch and as
DDP, and a run stopped mid-epoch resumes to the uninterrupted run's weights."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn

from spikeflow.errors import ConfigurationError
from spikeflow.training import Trainer, config_for_resume, load_checkpoint
from spikeflow.training.config import TrainConfig, config_from_dict
from spikeflow.training.detection_trainer import trainer_for
from spikeflow.training.fsdp import shard_units
from test_train_distributed import _config, _join, _rows, _spawn, _StopAt

pytest.importorskip("sklearn", reason="the digits need scikit-learn")
pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is absent")


def _plain(output_dir: str) -> dict:
    """DigitsPLIFNet (its PLIF neurons learn a scalar w each: parameters FSDP cannot
    shard) without batch norm or dropout, 2 epochs of 3 steps, AdamW (two parameter
    groups: biases and scalars without weight decay), clipped
    gradients and EMA: 2 processes' steps are 1 process's on the global batch. 17 test
    samples: process 0 evaluates 3 batches of 4, process 1 only 2 (the lockstep
    forwards)."""
    return {**_config(output_dir), "epochs": 2, "batch_size": 8, "optimizer": "adamw",
            "weight_decay": 0.05, "no_decay_norm_bias": True, "test_samples": 17,
            "lr": 0.01, "clip_grad_norm": 0.5, "model_ema": True, "model_ema_steps": 1,
            "model_ema_decay": 0.9}  # fmt: skip


def _with_bn(output_dir: str) -> dict:
    """With batch norm, whose batch statistics are each process's own (DDP's too); one
    epoch."""
    config = _plain(output_dir)
    return {**config, "epochs": 1, "model_kwargs": {**config["model_kwargs"], "batch_norm": True}}


def _regression(output_dir: str) -> TrainConfig:
    """A regression run (diabetes, the RSNN without batch norm, whose batch statistics
    are each process's own): 2 steps of 8, 17 test samples (process 0 runs 3 test
    batches of 4, process 1 only 2)."""
    return TrainConfig(dataset="diabetes", epochs=1, T=4, batch_size=8, train_samples=16,
                       test_samples=17, device="cpu", progress=False, plots="off",
                       model_kwargs={"batch_norm": False}, output_dir=output_dir)  # fmt: skip


def _fsdp_worker(rank: int, world_size: int, port: int, root: str) -> None:
    """In one process group: the plain model with --fsdp; the batch-norm model under
    DDP and with --fsdp; an --fsdp run process 1 stops after step 1 of epoch 2 and its
    --fsdp resume; a regression run with --fsdp."""
    _join(rank, world_size, port)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        plain = {**_plain(f"{root}/plain"), "fsdp": True, "plots": "auto"}
        Trainer(config_from_dict(plain), log=None).fit()
        Trainer(config_from_dict(_with_bn(f"{root}/ddp_bn")), log=None).fit()
        Trainer(config_from_dict({**_with_bn(f"{root}/bn"), "fsdp": True}), log=None).fit()
        cut = f"{root}/cut"
        Trainer(config_from_dict({**_plain(cut), "fsdp": True}), log=None,
                callbacks=[_StopAt(1, 1, 0)]).fit()  # fmt: skip
        if rank == 0:  # the mid-epoch checkpoint, which the resume replaces
            shutil.copytree(cut, f"{root}/cut_mid")
        dist.barrier()
        payload = load_checkpoint(f"{cut}/last.pt")
        Trainer(config_for_resume(payload, {}), resume=payload, resume_dir=cut, log=None).fit()
        # a one-process run's mid-epoch checkpoint (the fixture's), resumed under --fsdp
        payload = load_checkpoint(f"{root}/one_cut/last.pt")
        Trainer(config_for_resume(payload, {"fsdp": True}), resume=payload,
                resume_dir=f"{root}/one_cut", log=None).fit()  # fmt: skip
        config = dataclasses.replace(_regression(f"{root}/regression"), fsdp=True)
        trainer_for(config, log=None).fit()
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """The 2-process runs of :func:`_fsdp_worker` and one process's plain run (and
    that run stopped after step 1 of epoch 2, which the workers resume)."""
    root = tmp_path_factory.mktemp("fsdp")
    Trainer(config_from_dict(_plain(str(root / "one_cut"))), log=None,
            callbacks=[_StopAt(0, 1, 0)]).fit()  # fmt: skip
    _spawn(_fsdp_worker, str(root))
    Trainer(config_from_dict(_plain(str(root / "one"))), log=None).fit()
    trainer_for(_regression(str(root / "regression_one")), log=None).fit()
    return root


def _assert_same_state(a: dict, b: dict, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    assert list(a) == list(b)
    for key, value in a.items():
        if isinstance(value, torch.Tensor):
            assert b[key].shape == value.shape, key
            torch.testing.assert_close(b[key], value, rtol=rtol, atol=atol, msg=key)


def _assert_same_rows(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b) and [list(r) for r in a] == [list(r) for r in b]
    for row_a, row_b in zip(a, b):
        for key, value in row_a.items():
            try:
                expected = float(value)
            except ValueError:
                assert row_b[key] == value, key
                continue
            assert float(row_b[key]) == pytest.approx(expected, rel=1e-4, abs=1e-6, nan_ok=True), (
                key
            )


def test_fsdp_on_two_processes_trains_as_one_process_on_the_global_batch(runs):
    one, two = load_checkpoint(runs / "one/last.pt"), load_checkpoint(runs / "plain/last.pt")
    assert two["world_size"] == 2 and two["global_step"] == one["global_step"] == 6
    assert two["config"]["fsdp"] is True
    # full tensors in the layout of a one-process run: weights, EMA, Adam's moments
    _assert_same_state(one["model"], two["model"])
    _assert_same_state(one["model_ema"]["module"], two["model_ema"]["module"])
    assert two["model_ema"]["updates"] == one["model_ema"]["updates"] > 0
    assert one["optimizer"]["param_groups"] == two["optimizer"]["param_groups"]
    for index, state in one["optimizer"]["state"].items():
        _assert_same_state(state, two["optimizer"]["state"][index])
    # the PLIF neurons' scalar w (kept whole, its gradients averaged) did move
    scalars = [k for k, v in one["model"].items() if k.endswith(".w") and v.dim() == 0]
    assert scalars and all(abs(float(two["model"][k])) > 0 for k in scalars)
    assert any(abs(float(one["model"][k]) - float(two["model"][k])) < 1e-6 for k in scalars)
    _assert_same_rows(_rows(runs / "one/metrics.csv"), _rows(runs / "plain/metrics.csv"))
    _assert_same_rows(_rows(runs / "one/layers.csv"), _rows(runs / "plain/layers.csv"))


def test_an_fsdp_run_draws_its_plots_but_no_raster(runs):
    """Rank 0 alone cannot run the raster's forward (its weights are sharded): the run
    ends, with the learning curves and firing rates drawn (matplotlib installed)."""
    pytest.importorskip("matplotlib", reason="the plots need matplotlib")
    assert (runs / "plain/learning_curves.png").is_file()
    assert (runs / "plain/firing_rates.png").is_file()
    assert not (runs / "plain/raster.png").exists()


def test_fsdp_keeps_rank_0s_batch_norm_statistics_as_ddp_does(runs):
    ddp, fsdp = load_checkpoint(runs / "ddp_bn/last.pt"), load_checkpoint(runs / "bn/last.pt")
    assert any(k.endswith("running_var") for k in ddp["model"])
    _assert_same_state(ddp["model"], fsdp["model"])
    _assert_same_state(ddp["model_ema"]["module"], fsdp["model_ema"]["module"])
    _assert_same_rows(_rows(runs / "ddp_bn/metrics.csv"), _rows(runs / "bn/metrics.csv"))


def test_an_fsdp_run_stopped_mid_epoch_resumes_to_the_uninterrupted_weights(runs):
    plain, cut = load_checkpoint(runs / "plain/last.pt"), load_checkpoint(runs / "cut/last.pt")
    assert (cut["epoch"], cut["step"], cut["global_step"]) == (2, 0, 6)
    _assert_same_state(plain["model"], cut["model"], rtol=0, atol=0)
    _assert_same_state(plain["model_ema"]["module"], cut["model_ema"]["module"], rtol=0, atol=0)
    for index, state in plain["optimizer"]["state"].items():
        _assert_same_state(state, cut["optimizer"]["state"][index], rtol=0, atol=0)
    _assert_same_rows(_rows(runs / "plain/metrics.csv"), _rows(runs / "cut/metrics.csv"))


def test_an_fsdp_checkpoint_resumes_in_one_process_without_fsdp(runs, tmp_path):
    """The cut run's mid-epoch checkpoint, as 2 FSDP processes wrote it (full tensors,
    a one-process run's layout), resumes in one plain process to the one-process
    run's weights and logs."""
    mid = tmp_path / "mid"
    shutil.copytree(runs / "cut_mid", mid)
    payload = load_checkpoint(mid / "last.pt")
    assert (payload["epoch"], payload["step"], payload["config"]["fsdp"]) == (1, 2, True)
    config = config_for_resume(payload, {"fsdp": False, "output_dir": str(mid)})
    Trainer(config, resume=payload, resume_dir=mid, log=None).fit()
    one, resumed = load_checkpoint(runs / "one/last.pt"), load_checkpoint(mid / "last.pt")
    assert resumed["config"]["fsdp"] is False and resumed["world_size"] == 1
    _assert_same_state(one["model"], resumed["model"])
    for index, state in one["optimizer"]["state"].items():
        _assert_same_state(state, resumed["optimizer"]["state"][index])
    _assert_same_rows(_rows(runs / "one/metrics.csv"), _rows(mid / "metrics.csv"))


def test_a_one_process_checkpoint_resumes_under_fsdp(runs):
    """A one-process run's mid-epoch checkpoint (AdamW's two parameter groups, whole
    moments) resumed on 2 processes with --fsdp ends at the one-process run's
    weights and optimizer state."""
    one, resumed = load_checkpoint(runs / "one/last.pt"), load_checkpoint(runs / "one_cut/last.pt")
    assert resumed["config"]["fsdp"] is True and resumed["world_size"] == 2
    assert [len(g["params"]) for g in resumed["optimizer"]["param_groups"]] == [
        len(g["params"]) for g in one["optimizer"]["param_groups"]
    ]
    assert len(one["optimizer"]["param_groups"]) == 2
    _assert_same_state(one["model"], resumed["model"])
    for index, state in one["optimizer"]["state"].items():
        _assert_same_state(state, resumed["optimizer"]["state"][index])


def test_an_fsdp_regression_run_trains_and_evaluates_as_one_process(runs):
    # (its evaluation did not run the missing forwards: gloo aborted process 1)
    one = load_checkpoint(runs / "regression_one/last.pt")
    two = load_checkpoint(runs / "regression/last.pt")
    assert two["config"]["fsdp"] is True and two["world_size"] == 2
    _assert_same_state(one["model"], two["model"])
    rows = _rows(runs / "regression/metrics.csv")
    assert "test_r2" in rows[0]
    _assert_same_rows(_rows(runs / "regression_one/metrics.csv"), rows)


def test_fsdp_in_one_process_says_it_shards_nothing(tmp_path):
    messages: list[str] = []
    config = {**_config(str(tmp_path)), "fsdp": True}
    Trainer(config_from_dict(config), log=messages.append).fit()
    assert any("--fsdp with one process: nothing to shard" in m for m in messages)
    assert load_checkpoint(tmp_path / "last.pt")["config"]["fsdp"] is True


def test_shard_units_are_top_level_children_or_the_items_of_a_container():
    def block() -> nn.Module:
        return nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2))

    net = nn.Sequential()
    net.add_module("stem", nn.Conv2d(1, 2, 3))
    net.add_module("stages", nn.Sequential(block(), nn.ReLU(), block()))  # blocks: each
    net.add_module("head", nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 3)))
    net.add_module("act", nn.ReLU())
    names = ["stem", "stages.0", "stages.2", "head"]
    assert [name for name, _ in shard_units(net)] == names


@pytest.mark.parametrize(
    ("setting", "flag"),
    [({"sync_bn": True}, "--sync-bn"), ({"online": True}, "--online"),
     ({"eprop": "symmetric"}, "--eprop"), ({"tbptt": 1}, "--tbptt"),
     ({"prune": "grad_r"}, "--prune"), ({"weight_bits": 4}, "--weight-bits")],
)  # fmt: skip
def test_fsdp_refuses_what_it_cannot_run_by_name(tmp_path, setting, flag):
    with pytest.raises(ConfigurationError, match=f"--fsdp .* cannot be combined with {flag}"):
        config_from_dict({**_plain(str(tmp_path)), "fsdp": True, **setting}).validate()


def test_a_detection_run_refuses_fsdp():
    from spikeflow.training.detection_task import refuse_classification_options

    config = TrainConfig(dataset="nmnist_detection", fsdp=True)
    with pytest.raises(ConfigurationError, match=r"--fsdp \(not supported for detection"):
        refuse_classification_options(config)
    refuse_classification_options(TrainConfig(dataset="nmnist_detection"))  # (without: none)


# -- sharding units on 2 processes, without a trainer: rank 0's weights, the shared NaN
# check, view outputs, tied weights, layers called from a ModuleList -----------------


class _Tied(nn.Module):
    """An input layer and an output layer sharing one weight, each a top-level child."""

    def __init__(self) -> None:
        super().__init__()
        self.embed, self.mid, self.out = nn.Linear(6, 6), nn.Linear(6, 6), nn.Linear(6, 6)
        self.out.weight = self.embed.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.mid(self.embed(x))))


class _Listed(nn.Module):
    """Layers in a ModuleList (no forward of its own), called one by one."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(6, 6) for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = torch.tanh(layer(x))
        return x


class _ViewThenInPlace(nn.Module):
    """A unit whose output is a view (a sequence layer's [T, B, ...] of [T * B, ...]),
    which the next unit changes in place."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Sequential(nn.Linear(6, 6)), nn.Sequential(nn.Linear(6, 6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.a(x.flatten(0, 1)).unflatten(0, x.shape[:2])
        h += 1.0  # in place, on the view
        return self.b(h)


def _sharded_grads(model: nn.Module, x: torch.Tensor, rank: int) -> dict:
    """Shard a copy of ``model`` (weights identical on every process), run ``x`` on
    every process; the whole gradients of the copy and of ``model`` unsharded, and the
    FSDP2 warnings raised."""
    import copy
    import warnings

    from spikeflow.training.fsdp import shard_model

    sharded = copy.deepcopy(model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        shard_model(sharded)
        sharded(x).square().sum().backward()
    model(x).square().sum().backward()
    grads = {n: getattr(p.grad, "full_tensor", p.grad.clone)()  # (scalars: whole)
             for n, p in sharded.named_parameters()}  # fmt: skip
    return {"sharded": grads, "whole": {n: p.grad for n, p in model.named_parameters()},
            "warnings": [str(w.message) for w in caught if "FSDP" in str(w.message)]}  # fmt: skip


def _scaler_step_with_one_overflow(rank: int) -> dict:
    """--amp fp16's scaler (the trainer's torch.amp.GradScaler, not FSDP1's
    ShardedGradScaler) on sharded gradients, process 1's shard holding an Inf: whether
    this process's weights moved, and the scale after the update."""
    from spikeflow.training.fsdp import local_part, shard_model

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    shard_model(net)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=8.0)
    scaler.scale(net(torch.randn(4, 6)).sum()).backward()
    if rank == 1:
        local_part(net[0].weight.grad).view(-1)[0] = float("inf")
    before = [local_part(p).clone() for p in net.parameters()]
    scaler.unscale_(optimizer)  # (as the trainer's clipping does)
    scaler.step(optimizer)
    scaler.update()
    moved = any(not torch.equal(b, local_part(p)) for b, p in zip(before, net.parameters()))
    return {"moved": moved, "scale": float(scaler.get_scale())}


def _units_worker(rank: int, world_size: int, port: int, root: str) -> None:
    from types import SimpleNamespace

    from spikeflow.models.digits import DigitsPLIFNet
    from spikeflow.training.distributed import DistContext
    from spikeflow.training.fsdp import full_model_state, local_part, shard_model
    from spikeflow.training.trainer_steps import NonFiniteLossError, StepsMixin

    _join(rank, world_size, port)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    out: dict = {}
    try:
        # each process initialises its own weights (seeds differ): the shards are rank 0's
        torch.manual_seed(100 + rank)
        net = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
        out["own"] = {k: v.clone() for k, v in net.state_dict().items()}
        shard_model(net)
        out["full"] = full_model_state(net, keep=True)
        # a NaN in process 1's shard only: every process refuses to go on, naming it
        with torch.no_grad():
            if rank == 1:
                local_part(net[2].weight).view(-1)[0] = float("nan")
        ctx = DistContext(rank, world_size, initialized=False)
        checker = SimpleNamespace(raw_model=net, ctx=ctx, epoch=0, _checkpoint=None,
                                  resume_dir=None, _run_lr=lambda: 0.1)  # fmt: skip
        checker._last_good_checkpoint = lambda: StepsMixin._last_good_checkpoint(checker)
        try:
            StepsMixin._check_finite_model(checker)
            out["nan"] = None
        except NonFiniteLossError as exc:
            out["nan"] = str(exc)
        torch.manual_seed(0)  # the same weights and batch on every process from here
        digits = DigitsPLIFNet(channels=4, hidden=16, dropout=0.0, batch_norm=False,
                               neuron_kwargs={"v_threshold": 0.1})  # fmt: skip
        x = torch.rand(3, 2, 1, 8, 8)
        out["digits"] = _sharded_grads(digits, x, rank)
        seq = torch.randn(3, 2, 6)
        out["view"] = _sharded_grads(_ViewThenInPlace(), seq, rank)
        out["tied"] = _sharded_grads(_Tied(), seq, rank)
        out["listed"] = _sharded_grads(_Listed(), seq, rank)
        out["scaler"] = _scaler_step_with_one_overflow(rank)
        iterating = _Iterating()
        shard_model(iterating)
        try:
            iterating(seq)
            out["iterating"] = None
        except ConfigurationError as exc:
            out["iterating"] = str(exc)
        torch.save(out, f"{root}/units{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def units(tmp_path_factory) -> list[dict]:
    """What :func:`_units_worker` found on each of the 2 processes."""
    root = tmp_path_factory.mktemp("fsdp_units")
    _spawn(_units_worker, str(root), limit_s=120)
    return [torch.load(root / f"units{rank}.pt", weights_only=False) for rank in (0, 1)]


def test_shard_model_starts_every_process_from_rank_0s_weights(units):
    # (the processes drew different weights: without the broadcast the shards mix them)
    assert not torch.equal(units[0]["own"]["0.weight"], units[1]["own"]["0.weight"])
    for found in units:
        _assert_same_state(units[0]["own"], found["full"], rtol=0, atol=0)


def test_a_nan_in_one_processs_shard_stops_every_process_naming_the_weight(units):
    for found in units:
        assert found["nan"] is not None and "NaN/Inf values in 2.weight" in found["nan"]
        assert "0.weight" not in found["nan"]


@pytest.mark.parametrize("model", ["digits", "view", "tied", "listed"])
def test_sharded_gradients_are_the_whole_models(units, model):
    """DigitsPLIFNet (a pooling layer's view output), a view output changed in place
    downstream, weights tied across top-level children, layers called from a
    ModuleList: the gradients equal the unsharded model's, without FSDP2's warnings."""
    for found in units:
        result = found[model]
        assert result["warnings"] == []
        _assert_same_state(result["whole"], result["sharded"])


def test_an_overflow_in_one_processs_shard_skips_the_fp16_step_on_every_process(units):
    # (a process that stepped while the other skipped would hold other weights)
    assert [found["scaler"] for found in units] == [{"moved": False, "scale": 4.0}] * 2


def test_a_model_running_a_units_layers_itself_is_refused_naming_them(units):
    # (torch failed inside the first Linear: 'got mixed torch.Tensor and DTensor')
    for found in units:
        assert "_Iterating runs its layer 'body.0' without calling 'body'" in found["iterating"]


def test_shard_units_leave_tied_weights_to_the_root_and_split_module_lists():
    assert [name for name, _ in shard_units(_Tied())] == ["mid"]
    assert [name for name, _ in shard_units(_Listed())] == ["layers.0", "layers.1", "layers.2"]


class _Iterating(nn.Module):
    """Runs the layers of a Sequential (one unit) one by one, bypassing its forward."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(6, 6), nn.Tanh(), nn.Linear(6, 6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.body:
            x = layer(x)
        return x
