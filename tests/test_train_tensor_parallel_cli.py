"""``spikeflow train --tensor-parallel N`` (training.tensor_parallel_run): gloo CPU
processes started as torchrun starts them (test_train_distributed's harness). Two
processes splitting the channels train the weights of one process on the same global
batch (batch norm, dropout and clipping included), as do 2 x 2 processes (tensor x data
parallel, the last batch short) and 2 data-parallel processes; the checkpoints hold the
unsplit model's state and resume with or without the split, and inside an epoch with
another split (2 x 2 to 4 x 1); what it does not run is refused by name. Every run of
2 and of 4 processes shares one spawn of each (a forked process's first run imports
what the fork server has not: keep them few)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn

from conftest import fork_server_context
from spikeflow.errors import ConfigurationError
from spikeflow.neurons import DHLIFNode, LIFNode
from spikeflow.training import Trainer, config_for_resume, load_checkpoint, resolve
from spikeflow.training.config import TrainConfig, config_from_dict
from spikeflow.training.tensor_parallel import ChannelPair, channel_plan, parallelize_channels
from test_train_distributed import _config, _join, _rows, _spawn, _StopAt

pytest.importorskip("sklearn", reason="the digits need scikit-learn")
pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is absent")


def _plain(output_dir: str) -> dict:
    """The digits PLIF net (two column/row pairs; scalar PLIF ``w``s summed over the
    slices), no batch norm or dropout, 2 epochs of one step of 24, the gradients clipped
    (their norm is ~0.12: the clipping acts): data-parallel copies then take the global
    batch's step too."""
    return {**_config(output_dir), "epochs": 2, "clip_grad_norm": 0.08}


def _split_only(output_dir: str) -> dict:
    """With batch norm (its statistics per channel: a slice has its own exactly) and
    dropout (the whole layer's mask drawn on every process), 3 steps of 8 per epoch:
    one tensor-parallel group computes what one process computes."""
    config = _plain(output_dir)
    kwargs = {**config["model_kwargs"], "batch_norm": True, "dropout": 0.3}
    return {**config, "batch_size": 8, "model_kwargs": kwargs}


def _run(config: dict, callbacks=(), **overrides) -> None:
    Trainer(config_from_dict({**config, **overrides}), log=None, callbacks=callbacks).fit()


def _resume(folder: str, **overrides) -> None:
    payload = load_checkpoint(f"{folder}/last.pt")
    overrides.setdefault("output_dir", folder)
    Trainer(config_for_resume(payload, overrides), resume=payload, resume_dir=folder,
            log=None).fit()  # fmt: skip


def _two_worker(rank: int, world_size: int, port: int, root: str) -> None:
    """In one process group: --tensor-parallel 2 on both configs; a split run stopped by
    process 1 after step 2 of epoch 2, and its resume under the split; one process's
    checkpoint after epoch 1 resumed under the split; a split run's checkpoint after
    epoch 1 (copied for the parent to resume in one process); 2 data-parallel processes."""
    _join(rank, world_size, port)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        _run(_plain(f"{root}/tp2"), tensor_parallel=2, plots="auto")
        _run(_split_only(f"{root}/tp2_bn"), tensor_parallel=2)
        cut = f"{root}/tp2_cut"
        _run(_split_only(cut), [_StopAt(1, 1, 1)], tensor_parallel=2)
        _resume(cut, tensor_parallel=2)
        _resume(
            f"{root}/one_epoch1", tensor_parallel=2, stop_after=2, output_dir=f"{root}/one_to_tp2"
        )
        _run(_plain(f"{root}/tp2_epoch1"), tensor_parallel=2, stop_after=1)
        _run(_plain(f"{root}/dp2"))
        _run(_split_only(f"{root}/dp2_bn"))
    finally:
        dist.destroy_process_group()


def _steps(output_dir: str) -> dict:
    """The plain net with 8 channels (both pairs split over 4 processes too), 22 samples
    in 3 steps of 8 per epoch, the last of 6 (3 per copy of 2): a run stopped inside an
    epoch resumes with another split."""
    config = _plain(output_dir)
    kwargs = {**config["model_kwargs"], "channels": 8}
    return {**config, "train_samples": 22, "batch_size": 8, "model_kwargs": kwargs}


def _four_worker(rank: int, world_size: int, port: int, root: str) -> None:
    """2 model copies, each split over 2 processes (ranks 0-1 and 2-3), on the 3-step and
    the batch norm configs; the first stopped by process 3 after step 2 of epoch 2 and
    resumed as 1 copy split over 4 (--tensor-parallel 4: TP=4 x DP=1)."""
    _join(rank, world_size, port)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        _run(_steps(f"{root}/tp2_dp2"), tensor_parallel=2)
        _run(_split_only(f"{root}/tp2_dp2_bn"), tensor_parallel=2)
        cut = f"{root}/tp2_dp2_to_tp4"
        _run(_steps(cut), [_StopAt(3, 1, 1)], tensor_parallel=2)
        _resume(cut, tensor_parallel=4)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    from multiprocessing import forkserver

    root = tmp_path_factory.mktemp("tp_cli")
    # the fork server imports (torch, spikeflow, Dynamo) while this process trains
    if fork_server_context().get_start_method() == "forkserver":
        forkserver.ensure_running()
    _run(_plain(str(root / "one")))
    _run(_split_only(str(root / "one_bn")))
    _run(_steps(str(root / "one_steps")))
    _run(_plain(str(root / "one_epoch1")), stop_after=1)
    _spawn(_two_worker, str(root), limit_s=180)
    _spawn(_four_worker, str(root), limit_s=180, world_size=4)
    shutil.copytree(root / "tp2_epoch1", root / "tp2_to_one")
    _resume(str(root / "tp2_to_one"), stop_after=2)  # a split run's checkpoint, in one process
    return root


def _state(folder: Path) -> dict:
    return load_checkpoint(folder / "last.pt")


def _assert_same_weights(a: Path, b: Path, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    """The same keys, shapes and values (model and optimizer state) in two runs' last.pt."""
    first, second = _state(a), _state(b)
    assert list(first["model"]) == list(second["model"])
    for key, value in first["model"].items():
        assert second["model"][key].shape == value.shape, key
        torch.testing.assert_close(second["model"][key], value, rtol=rtol, atol=atol, msg=key)
    for index, entries in first["optimizer"]["state"].items():
        for key, value in entries.items():
            torch.testing.assert_close(second["optimizer"]["state"][index][key], value,
                                       rtol=rtol, atol=atol, msg=f"{index}.{key}")  # fmt: skip


def _assert_same_rows(a: Path, b: Path) -> None:
    rows_a, rows_b = _rows(a / "metrics.csv"), _rows(b / "metrics.csv")
    assert len(rows_a) == len(rows_b) == 2
    for row_a, row_b in zip(rows_a, rows_b):
        assert list(row_a) == list(row_b)
        for key, value in row_a.items():
            assert float(row_b[key]) == pytest.approx(float(value), rel=1e-4, abs=1e-6), key


def test_weights_moved(runs):
    """(The comparisons below compare trained weights: the runs moved them.)"""
    from spikeflow.training import build_model
    from spikeflow.training.data import build_datasets
    from spikeflow.training.trainer_checkpoints import seed_everything

    config = resolve(config_from_dict(_plain(str(runs / "unused"))))
    seed_everything(config.seed)
    start = build_model(config, build_datasets(config)[2]).state_dict()
    trained = _state(runs / "tp2")["model"]
    for key in ("features.0.weight", "classifier.2.weight", "classifier.5.weight"):
        assert float((trained[key] - start[key]).abs().max()) > 2e-4, key


@pytest.mark.parametrize(
    "name, alone", [("tp2", "one"), ("tp2_bn", "one_bn"), ("tp2_dp2", "one_steps")]
)
def test_split_runs_train_one_processs_weights_and_log_its_metrics(runs, name, alone):
    """2 processes splitting the channels (and 4: two copies split over two each) end
    with one process's weights and optimizer state on the same global batch, in its
    checkpoint's keys and shapes; the metrics (loss, accuracy, firing rates, each
    sample counted once) are one process's."""
    _assert_same_weights(runs / alone, runs / name)
    _assert_same_rows(runs / alone, runs / name)


def test_a_split_run_plots_its_curves_but_no_raster(runs):
    """Rank 0 alone cannot run the raster's forward (the split layers' all-reduces need
    every process, which have left): it plots the learning curves and rates only."""
    pytest.importorskip("matplotlib")
    assert (runs / "tp2" / "learning_curves.png").is_file()
    assert (runs / "tp2" / "firing_rates.png").is_file()
    assert not (runs / "tp2" / "raster.png").exists()


def test_a_split_run_matches_a_data_parallel_one(runs):
    """TP=2 x DP=1 and TP=1 x DP=2 on 2 processes: the same weights. With batch norm
    (statistics per process) and dropout (masks per process), TP=2 x DP=2 on 4 processes
    ends as TP=1 x DP=2 on 2: the same batch statistics, masks, weights and running
    statistics (each copy's first process's, given to the other copy slice by slice)."""
    _assert_same_weights(runs / "dp2", runs / "tp2")
    _assert_same_weights(runs / "dp2_bn", runs / "tp2_dp2_bn")
    _assert_same_rows(runs / "dp2_bn", runs / "tp2_dp2_bn")


def test_a_split_run_stopped_mid_epoch_resumes_to_the_uninterrupted_run(runs):
    """Stopped by process 1 after step 2 of epoch 2 and resumed under the split (dropout
    streams restored): the uninterrupted split run's weights and metrics (train sums of
    the steps before the stop included once)."""
    payload = _state(runs / "tp2_cut")
    assert (payload["epoch"], payload["step"]) == (2, 0)  # (resumed to the end)
    _assert_same_weights(runs / "tp2_bn", runs / "tp2_cut", rtol=1e-6, atol=1e-7)
    _assert_same_rows(runs / "tp2_bn", runs / "tp2_cut")


def test_a_run_stopped_mid_epoch_resumes_with_another_split(runs):
    """TP=2 x DP=2 stopped by process 3 after step 2 of epoch 2, resumed as TP=4 x DP=1
    on the same 4 processes (each copy's running sums to the one copy, the random
    streams from the seed): the uninterrupted run's weights and metrics, one process's."""
    payload = _state(runs / "tp2_dp2_to_tp4")
    assert (payload["epoch"], payload["step"], payload["tensor_parallel"]) == (2, 0, 4)
    _assert_same_weights(runs / "tp2_dp2", runs / "tp2_dp2_to_tp4")
    _assert_same_rows(runs / "tp2_dp2", runs / "tp2_dp2_to_tp4")
    _assert_same_weights(runs / "one_steps", runs / "tp2_dp2_to_tp4")


def test_checkpoints_resume_across_the_split(runs):
    """One process's epoch-1 checkpoint resumed with --tensor-parallel 2, and a split
    run's epoch-1 checkpoint resumed in one process: the uninterrupted run's weights.
    The split run's checkpoint records no tensor_parallel in its config (a resume takes
    its own) and holds the unsplit model's keys and shapes."""
    _assert_same_weights(runs / "one", runs / "one_to_tp2")
    _assert_same_weights(runs / "one", runs / "tp2_to_one")
    payload = _state(runs / "tp2_epoch1")
    assert "tensor_parallel" not in payload["config"] and payload["tensor_parallel"] == 2
    assert payload["model"]["features.0.weight"].shape == (6, 1, 3, 3)


def test_spikeflow_eval_reads_a_split_runs_checkpoint(runs):
    """``spikeflow eval`` (one process, no split) of the split run's checkpoint gives its
    logged test accuracy and loss."""
    from spikeflow.training.evaluation import evaluate_checkpoint

    alone = evaluate_checkpoint(runs / "tp2" / "last.pt", progress=False)
    row = _rows(runs / "tp2" / "metrics.csv")[-1]
    assert alone["test_acc"] == pytest.approx(float(row["test_acc"]), abs=1e-9)
    assert alone["test_loss"] == pytest.approx(float(row["test_loss"]), rel=1e-5)


@pytest.mark.parametrize(
    "option, flag",
    [({"fsdp": True}, "--fsdp"), ({"sync_bn": True}, "--sync-bn"),
     ({"compile": True}, "--compile"), ({"model_ema": True}, "--model-ema"),
     ({"prune": "magnitude"}, "--prune"), ({"online": True}, "--online"),
     ({"tbptt": 2}, "--tbptt"), ({"amp": "bf16"}, "--amp"), ({"mixup": 0.2}, "--mixup"),
     ({"loss": "stcl"}, "--loss stcl")],
)  # fmt: skip
def test_what_the_split_does_not_run_is_refused_by_name(option, flag):
    message = f"--tensor-parallel 2 cannot be combined with {flag}"
    with pytest.raises(ConfigurationError, match=message):
        resolve(TrainConfig(tensor_parallel=2, **option))


@pytest.mark.parametrize("value", [0, -1, True, 1.5])
def test_a_bad_tensor_parallel_value_is_refused(value):
    with pytest.raises(ConfigurationError, match=r"tensor_parallel \(--tensor-parallel\)"):
        resolve(TrainConfig(tensor_parallel=value))


def test_a_world_size_the_split_does_not_divide_is_refused_naming_both(tmp_path, capsys):
    """One process (world size 1) with --tensor-parallel 2, from the command line; and a
    regression run (its trainer does not split)."""
    from spikeflow.cli import main

    args = ["train", "--dataset", "digits", "--tensor-parallel", "2", "--device", "cpu",
            "--epochs", "1", "--train-samples", "8", "--test-samples", "8",
            "--output-dir", str(tmp_path / "run"), "--plots", "off", "--no-progress"]  # fmt: skip
    assert main(args) == 2
    assert (
        "--tensor-parallel 2: the world size (1 process(es) under torchrun) is not a "
        "multiple of 2" in " ".join(capsys.readouterr().err.split())
    )
    assert not (tmp_path / "run").exists()
    from spikeflow.training.detection_trainer import trainer_for

    config = TrainConfig(dataset="diabetes", tensor_parallel=2, device="cpu", plots="off",
                         progress=False, output_dir=str(tmp_path / "reg"))  # fmt: skip
    with pytest.raises(ConfigurationError, match="regression trainer does not split"):
        trainer_for(config, log=None).fit()


def _dendritic() -> nn.Sequential:
    from spikeflow import layers

    return nn.Sequential(layers.Linear(4, 8), DHLIFNode(branches=1, shape=8), layers.Linear(8, 3))


def test_a_neuron_with_nested_per_channel_parameters_is_refused_by_name():
    """DH-LIF's ``dendrites.tau_n`` (``[N, K]``, the branch currents after the channels):
    planned outside any pair, and refused naming it when a pair names it; a LIF there
    is split."""
    model = _dendritic()
    assert channel_plan(model, 2) == []
    pair = ChannelPair("0", ("1",), "2")
    message = r"'1' \(DHLIFNode\).*'dendrites.tau_n' of shape \(8, 1\)"
    with pytest.raises(ConfigurationError, match=message):
        parallelize_channels(model, pairs=[pair])
    plain = nn.Sequential(nn.Linear(4, 8), LIFNode(), nn.Linear(8, 3))
    assert channel_plan(plain, 2) == [pair]


def test_a_zoo_model_without_pairs_is_refused_naming_it_and_the_flag():
    """(parallelize_channels' own message advises its pairs= argument, which the command
    line has not.)"""
    from spikeflow.models import create_model
    from spikeflow.training.tensor_parallel_run import TensorParallelRun

    run = TensorParallelRun(2, 0, None, 0, 1, None)
    message = r"--tensor-parallel 2: SEWDVSNet has no column/row layer pair.*without --tensor"
    with pytest.raises(ConfigurationError, match=message):
        run.shard(create_model("sew_dvsgesture"))
