"""Sharded data parallelism (``--fsdp``, torch's FSDP2): 2 gloo CPU processes started as
torchrun starts them (test_train_distributed's harness) train the same weights, log the
same metrics and write the same checkpoints as 1 process on the global batch and as
DDP, and a run stopped mid-epoch resumes to the uninterrupted run's weights."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from spikeflow.errors import ConfigurationError
from spikeflow.training import Trainer, config_for_resume, load_checkpoint
from spikeflow.training.config import config_from_dict
from spikeflow.training.fsdp import shard_units
from test_train_distributed import _config, _join, _rows, _spawn, _StopAt

pytest.importorskip("sklearn", reason="the digits need scikit-learn")
pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is absent")


def _plain(output_dir: str) -> dict:
    """DigitsPLIFNet (its PLIF neurons learn a scalar w each: parameters FSDP cannot
    shard) without batch norm or dropout, 2 epochs of 3 steps, Adam, clipped
    gradients and EMA: 2 processes' steps are 1 process's on the global batch. 17 test
    samples: process 0 evaluates 3 batches of 4, process 1 only 2 (the lockstep
    forwards)."""
    return {**_config(output_dir), "epochs": 2, "batch_size": 8, "optimizer": "adam",
            "test_samples": 17,
            "lr": 0.01, "clip_grad_norm": 0.5, "model_ema": True, "model_ema_steps": 1,
            "model_ema_decay": 0.9}  # fmt: skip


def _with_bn(output_dir: str) -> dict:
    """With batch norm, whose batch statistics are each process's own (DDP's too); one
    epoch."""
    config = _plain(output_dir)
    return {**config, "epochs": 1, "model_kwargs": {**config["model_kwargs"], "batch_norm": True}}


def _fsdp_worker(rank: int, world_size: int, port: int, root: str) -> None:
    """In one process group: the plain model with --fsdp; the batch-norm model under
    DDP and with --fsdp; an --fsdp run process 1 stops after step 1 of epoch 2 and its
    --fsdp resume."""
    _join(rank, world_size, port)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        Trainer(config_from_dict({**_plain(f"{root}/plain"), "fsdp": True}), log=None).fit()
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
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """The 2-process runs of :func:`_fsdp_worker` and one process's plain run."""
    root = tmp_path_factory.mktemp("fsdp")
    _spawn(_fsdp_worker, str(root))
    Trainer(config_from_dict(_plain(str(root / "one"))), log=None).fit()
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


def test_shard_units_are_top_level_children_or_the_items_of_a_container():
    from torch import nn

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
    from spikeflow.training.config import TrainConfig
    from spikeflow.training.detection_task import refuse_classification_options

    config = TrainConfig(dataset="nmnist_detection", fsdp=True)
    with pytest.raises(ConfigurationError, match=r"--fsdp \(not supported for detection"):
        refuse_classification_options(config)
    refuse_classification_options(TrainConfig(dataset="nmnist_detection"))  # (without: none)
