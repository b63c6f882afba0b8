"""Data-parallel training: 2 processes (gloo, CPU) take the same step as 1 process on the
same global batch. The processes are started the way torchrun starts them: environment
variables RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from spikeflow.training import Trainer, build_model, load_checkpoint, resolve
from spikeflow.training.config import config_from_dict
from spikeflow.training.data import build_datasets
from spikeflow.training.trainer import _seed_everything

pytest.importorskip("sklearn", reason="the digits need scikit-learn")
pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is absent")


def _config(output_dir: str) -> dict:
    # SGD (its step is linear in the gradient), no dropout (its masks are per process)
    # and no batch norm (its batch statistics are per process): the global-batch step
    # is then the same computation however the batch is split.
    return {
        "train_samples": 24, "test_samples": 20, "batch_size": 24, "epochs": 1, "T": 3,
        "optimizer": "sgd", "lr": 0.5, "momentum": 0.9, "schedule": "none",
        "model_kwargs": {"channels": 6, "hidden": 16, "dropout": 0.0, "batch_norm": False},
        # a low threshold keeps every layer firing (rate ~0.3), so every weight moves
        "neuron_kwargs": {"surrogate_function": "sigmoid", "v_threshold": 0.1}, "loss": "ce",
        "device": "cpu", "progress": False, "plots": "off", "output_dir": output_dir,
    }  # fmt: skip


def _join(rank: int, world_size: int, port: int) -> None:
    """What torchrun gives each process: its place in the group, one thread."""
    os.environ.update({
        "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world_size),
        "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
    })  # fmt: skip
    torch.set_num_threads(1)


def _worker(rank: int, world_size: int, port: int, output_dir: str) -> None:
    _join(rank, world_size, port)
    Trainer(config_from_dict(_config(output_dir)), log=None).fit()


def _logging_worker(rank: int, world_size: int, port: int, output_dir: str) -> None:
    """A run on 23 samples (not a multiple of 2) whose messages go to messages.txt."""
    _join(rank, world_size, port)
    messages: list[str] = []
    Trainer(config_from_dict({**_config(output_dir), "train_samples": 23}),
            log=messages.append).fit()  # fmt: skip
    if rank == 0:
        Path(output_dir, "messages.txt").write_text("\n".join(messages))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_equal_one_process_on_the_global_batch(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    Trainer(config_from_dict(_config(str(one))), log=None).fit()
    procs = mp.spawn(_worker, args=(2, _free_port(), str(two)), nprocs=2, join=False)
    deadline = time.monotonic() + 300
    while not procs.join(timeout=5):  # raises if a process failed
        if time.monotonic() > deadline:  # a hang must fail the test, not stall the suite
            for proc in procs.processes:
                proc.kill()
            pytest.fail("the two gloo processes did not finish within 300 s")
    a, b = load_checkpoint(one / "last.pt"), load_checkpoint(two / "last.pt")
    assert b["world_size"] == 2 and len(b["rng"]) == 2 and b["global_step"] == 1
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=1e-5, atol=1e-6, msg=key)
    # the step did move the weights (from the seeded initial ones)
    config = resolve(config_from_dict(_config(str(tmp_path / "x"))))
    _seed_everything(config.seed)
    initial = build_model(config, build_datasets(config)[2]).state_dict()
    for key in initial:
        assert (initial[key] - a["model"][key]).abs().max() > 1e-5, f"{key} did not move"
    # the evaluation splits the test set without counting any sample twice
    assert a["history"][0]["test_acc"] == pytest.approx(b["history"][0]["test_acc"], abs=1e-12)
    assert a["history"][0]["train_loss"] == pytest.approx(b["history"][0]["train_loss"], rel=1e-5)


def test_an_uneven_training_set_is_noted(tmp_path):
    procs = mp.spawn(_logging_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2,
                     join=False)  # fmt: skip
    deadline = time.monotonic() + 300
    while not procs.join(timeout=5):
        if time.monotonic() > deadline:
            for proc in procs.processes:
                proc.kill()
            pytest.fail("the two gloo processes did not finish within 300 s")
    text = (tmp_path / "messages.txt").read_text()
    assert "23 training samples do not split evenly over 2 processes" in text
    assert "repeats 1 of them" in text
