"""Data-parallel training: 2 processes (gloo, CPU) take the same step as 1 process on the
same global batch. The processes are started the way torchrun starts them: environment
variables RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT, with the rendezvous
store held by the parent (torchrun's agent store: TORCHELASTIC_USE_AGENT_STORE)."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from conftest import fork_server_context
from spikeflow.training import Trainer, build_model, config_for_resume, load_checkpoint, resolve
from spikeflow.training import checkpoint as ckpt
from spikeflow.training.config import config_from_dict
from spikeflow.training.data import build_datasets
from spikeflow.training.metric_logs import read_csv
from spikeflow.training.trainer_checkpoints import seed_everything

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
    """What torchrun gives each process: its place in the group, the agent's store (held
    by the test process, see _spawn), one thread."""
    os.environ.update({
        "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world_size),
        "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
        "TORCHELASTIC_USE_AGENT_STORE": "True",
        "TORCHELASTIC_RESTART_COUNT": "0",  # torch < 2.6 reads it with the agent store
    })  # fmt: skip
    torch.set_num_threads(1)


def _worker(rank: int, world_size: int, port: int, output_dir: str) -> None:
    _join(rank, world_size, port)
    Trainer(config_from_dict(_config(output_dir)), log=None).fit()


def _recompute_worker(rank: int, world_size: int, port: int, output_dir: str) -> None:
    _join(rank, world_size, port)
    Trainer(config_from_dict({**_config(output_dir), "recompute": True}), log=None).fit()


#: --spike-reg with a batch-mean term: each process's term on its half of the batch,
#: averaged by DDP as the loss is, is the term of the whole batch.
_SPIKE_REG = {"spike_reg": "l1_rate_sparsity",
              "spike_reg_kwargs": {"strength": 0.01, "reduction": "mean"}}  # fmt: skip


def _spike_reg_worker(rank: int, world_size: int, port: int, output_dir: str) -> None:
    _join(rank, world_size, port)
    Trainer(config_from_dict({**_config(output_dir), **_SPIKE_REG}), log=None).fit()


#: Learned steps (LSQ) of the weights and of the input, whose initial step is taken from
#: the first batch.
_LSQ = {"weight_bits": 3, "weight_quant": "lsq", "input_bits": 4}


def _lsq_worker(rank: int, world_size: int, port: int, output_dir: str) -> None:
    _join(rank, world_size, port)
    Trainer(config_from_dict({**_config(output_dir), **_LSQ}), log=None).fit()


def _online_config(output_dir: str, trace_decay: float | None) -> dict:
    return {**_config(output_dir), "online": True, "online_steps": 2, "epochs": 2,
            "batch_size": 8, "online_trace_decay": trace_decay}  # fmt: skip


def _online_worker(
    rank: int, world_size: int, port: int, output_dir: str, trace_decay: float | None
) -> None:
    _join(rank, world_size, port)
    Trainer(config_from_dict(_online_config(output_dir, trace_decay)), log=None).fit()


def _online_bntt_worker(rank: int, world_size: int, port: int, root: str) -> None:
    """online_backward through DDP on a net whose steps use different parameters (one
    BN per step), SLTT-K too; saves the DDP gradients and this process's own ones."""
    from torch import nn

    from spikeflow import layers, neurons
    from spikeflow.losses import get_loss
    from spikeflow.training.online import online_backward

    _join(rank, world_size, port)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        torch.manual_seed(0)
        net = nn.Sequential(layers.Linear(4, 8), layers.BatchNormThroughTime1d(8, 3),
                            neurons.LIFNode(v_threshold=0.2), layers.Linear(8, 3))  # fmt: skip
        ddp = nn.parallel.DistributedDataParallel(net)
        g = torch.Generator().manual_seed(rank)
        saved = {}
        for it, k in enumerate((None, 1, None)):
            x, y = torch.rand(3, 5, 4, generator=g), torch.randint(0, 3, (5,), generator=g)
            for name, model in (("ddp", ddp), ("own", net)):
                net.zero_grad()
                online_backward(model, x, y, get_loss("tet"), train_steps=k,
                                generator=torch.Generator().manual_seed(it))  # fmt: skip
                saved[name, it] = [p.grad.clone() if p.grad is not None else None
                                   for p in net.parameters()]  # fmt: skip
        torch.save(saved, f"{root}/{rank}.pt")
    finally:
        dist.destroy_process_group()


def _unused_parameters_worker(rank: int, world_size: int, port: int, output_dir: str) -> None:
    """SpikeDHS with its surrogate-search copies: a plain step leaves them without
    gradients (DDP stopped at the second step before the model could say so)."""
    _join(rank, world_size, port)
    config = {**_config(output_dir), "model": "spike_dhs", "batch_size": 12, "loss": "ce",
              "model_kwargs": {"filter_multiplier": 2, "auxiliary_after": None}}  # fmt: skip
    Trainer(config_from_dict(config), log=None).fit()


#: FPTT (--tbptt 1 --fptt): the penalty's gradient is the same on every process
_FPTT = {"tbptt": 1, "fptt": 0.3}


def _fptt_configs(root: str) -> dict[str, dict]:
    """The plain network (one process on the global batch takes the same steps) and
    SpikeDHS (parameters its forward leaves unused: DDP with find_unused_parameters)."""
    dhs = {"model": "spike_dhs", "loss": "ce",
           "model_kwargs": {"filter_multiplier": 2, "auxiliary_after": None}}  # fmt: skip
    return {"plain": {**_config(f"{root}/plain"), **_FPTT},
            "dhs": {**_config(f"{root}/dhs"), **dhs, **_FPTT}}  # fmt: skip


def _fptt_worker(rank: int, world_size: int, port: int, root: str) -> None:
    """Both FPTT runs; each process saves its running means and multipliers."""
    _join(rank, world_size, port)
    for name, config in _fptt_configs(root).items():
        trainer = Trainer(config_from_dict(config), log=None)
        trainer.fit()
        torch.save(trainer.fptt.state_dict(), f"{root}/{name}/fptt{rank}.pt")


def _three_runs_worker(rank: int, world_size: int, port: int, root: str) -> None:
    """Three runs one after the other in the same job (one script training a sweep)."""
    _join(rank, world_size, port)
    for run in range(3):
        Trainer(config_from_dict({**_config(f"{root}/run{run}"), "T": 2}), log=None).fit()


def _logging_worker(rank: int, world_size: int, port: int, output_dir: str) -> None:
    """A run on 23 samples (not a multiple of 2) whose messages go to messages.txt."""
    _join(rank, world_size, port)
    messages: list[str] = []
    Trainer(config_from_dict({**_config(output_dir), "train_samples": 23}),
            log=messages.append).fit()  # fmt: skip
    if rank == 0:
        Path(output_dir, "messages.txt").write_text("\n".join(messages))


def _record_views(output_dir: str, name: str) -> None:
    """Save every batch the model gets (before the time-major transpose) to
    ``output_dir/name``, at the end of the run."""
    from spikeflow.training import trainer_steps

    seen: list[torch.Tensor] = []
    original = trainer_steps.to_time_major

    def recording(x, *args):
        seen.append(x.clone())
        return original(x, *args)

    trainer_steps.to_time_major = recording
    try:
        Trainer(config_from_dict({**_config(output_dir), "loss": "stcl"}), log=None).fit()
    finally:
        trainer_steps.to_time_major = original
    torch.save(seen, Path(output_dir, name))


def _stcl_views_worker(rank: int, world_size: int, port: int, output_dir: str) -> None:
    _join(rank, world_size, port)
    _record_views(output_dir, f"views{rank}.pt")


class _StopAt:
    """Process ``rank`` is asked to stop (Ctrl-C, SIGTERM) after step ``step`` of epoch
    ``epoch``, or, with ``step=None``, during that epoch's evaluation."""

    def __init__(self, rank: int, epoch: int, step: int | None) -> None:
        self.rank, self.epoch, self.step = rank, epoch, step

    def on_step_end(self, trainer, epoch, step, loss):
        if trainer.ctx.rank == self.rank and (epoch, step) == (self.epoch, self.step):
            trainer._stop_requested = True

    def on_epoch_end(self, trainer, epoch, row):
        if trainer.ctx.rank == self.rank and self.step is None and epoch == self.epoch:
            trainer._stop_requested = True


def _stop_worker(rank: int, world_size: int, port: int, root: str, step: int | None) -> None:
    """In one process group: with ``step`` set, an uninterrupted run (``full``), a run
    process 1 stops after step ``step`` of epoch 2 (``cut``) and its resume; without,
    a run process 1 stops during epoch 1's evaluation."""
    _join(rank, world_size, port)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        # 3 steps of 4 samples per process and epoch
        config = {**_config(""), "epochs": 2, "batch_size": 8}
        if step is not None:
            Trainer(config_from_dict({**config, "output_dir": f"{root}/full"}), log=None).fit()
        cut = f"{root}/cut"
        Trainer(config_from_dict({**config, "output_dir": cut}), log=None,
                callbacks=[_StopAt(1, 0 if step is None else 1, step)]).fit()  # fmt: skip
        if step is not None:
            payload = load_checkpoint(f"{cut}/last.pt")
            Trainer(config_for_resume(payload, {}), resume=payload, resume_dir=cut,
                    log=None).fit()  # fmt: skip
    finally:
        dist.destroy_process_group()


def _spawn(worker, *args: object, limit_s: float = 300, world_size: int = 2) -> None:
    """Run ``worker(rank, world_size, port, *args)`` in ``world_size`` processes (2 by
    default); fail on an error or a hang (``limit_s`` seconds).

    The rendezvous store is created here, on a port the system picks, and lives until
    both processes are done (as torchrun's agent holds it): picking a free port and
    binding it later in a child raced with other jobs on the machine (once, two runs'
    processes met in one store and hung).

    The processes fork from the session's fork server (conftest.fork_server_context):
    new processes, as torchrun's, without two fresh interpreters' imports in every test.
    The trainer seeds every generator; the workers set their own environment."""
    start_method = fork_server_context().get_start_method()
    store = dist.TCPStore("127.0.0.1", 0, world_size + 1, is_master=True,
                          wait_for_workers=False)  # fmt: skip
    procs = mp.start_processes(worker, args=(world_size, store.port, *args), nprocs=world_size,
                               join=False, start_method=start_method)  # fmt: skip
    deadline = time.monotonic() + limit_s
    while not procs.join(timeout=2):  # raises if a process failed
        if time.monotonic() > deadline:  # a hang must fail the test, not stall the suite
            for proc in procs.processes:
                proc.kill()
            pytest.fail(f"the {world_size} gloo processes did not finish within {limit_s} s")
    del store


def _regression_worker(rank: int, world_size: int, port: int, output_dir: str) -> None:
    """A regression run on uneven splits (63 training samples, 33 test samples: 17 and
    16 per process) with a model EMA."""
    from spikeflow.training import TrainConfig
    from spikeflow.training.detection_trainer import trainer_for

    _join(rank, world_size, port)
    config = TrainConfig(dataset="diabetes", epochs=1, T=3, train_samples=63, test_samples=33,
                         batch_size=16, model_ema=True, model_ema_steps=1, device="cpu",
                         progress=False, output_dir=output_dir)  # fmt: skip
    trainer_for(config, log=None).fit()


def test_a_regression_run_of_two_processes_sums_its_metrics_over_both(tmp_path):
    """Two processes evaluate 17 and 16 of the 33 test samples: the logged test loss,
    MSE, MAE and R² (and the EMA's) are those of the whole split, as one process's
    spikeflow eval of the checkpoint computes them (R² is not a mean of per-process
    R²s)."""
    from spikeflow.training.evaluation import evaluate_checkpoint

    _spawn(_regression_worker, str(tmp_path / "run"))
    row = read_csv(tmp_path / "run" / "metrics.csv")[-1]
    for ema, suffix in ((False, ""), (True, "_ema")):
        alone = evaluate_checkpoint(tmp_path / "run" / "last.pt", ema=ema, progress=False)
        assert alone["samples"] == 33
        for key in ("test_loss", "test_mse", "test_mae", "test_r2"):
            assert float(row[key + suffix]) == pytest.approx(alone[key], rel=1e-6), key + suffix


def _rows(path: Path) -> list[dict[str, str]]:
    return [{k: v for k, v in row.items() if k != "epoch_time_s"} for row in read_csv(path)]


def test_a_mid_epoch_resume_of_two_processes_keeps_each_processs_running_sums(tmp_path):
    # Only process 0's sums were saved, and every process loaded them: the resumed
    # epoch's train metrics counted process 0's steps twice and process 1's never.
    _spawn(_stop_worker, str(tmp_path), 0)
    cut = tmp_path / "cut"
    assert (load_checkpoint(cut / "last.pt")["epoch"], len(_rows(cut / "metrics.csv"))) == (2, 2)
    assert _rows(cut / "metrics.csv") == _rows(tmp_path / "full" / "metrics.csv")
    assert _rows(cut / "layers.csv") == _rows(tmp_path / "full" / "layers.csv")


def test_a_stop_during_the_evaluation_stops_every_process_after_the_epoch(tmp_path):
    # Process 1 is asked to stop while epoch 1 (of 2) is evaluated: every process used
    # to train one more step of epoch 2 before it stopped, as one process does not.
    _spawn(_stop_worker, str(tmp_path), None)
    payload = load_checkpoint(tmp_path / "cut" / "last.pt")
    assert (payload["epoch"], payload["step"]) == (1, 0)


def test_a_checkpoints_running_sums_go_to_each_process_or_all_to_process_0():
    def state(n: float) -> dict:
        layer = {"spikes": n, "v_sum": n, "v_sumsq": n, "elements": 4, "samples": 2,
                 "neurons": 2, "v_count": 4}  # fmt: skip
        return {"epoch_sums": {"loss": n, "correct": n, "count": 2.0}, "monitor": {"l": layer}}

    payload = {"epoch_sums": {}, **ckpt.epoch_state_payload([state(1.0), state(2.0)])}
    assert payload["epoch_sums"] == {"loss": 3.0, "correct": 3.0, "count": 4.0}
    assert payload["monitor"]["l"] == {"spikes": 3.0, "v_sum": 3.0, "v_sumsq": 3.0,
                                       "elements": 8, "samples": 4, "neurons": 2,
                                       "v_count": 8}  # fmt: skip
    # as many processes: each its own
    assert ckpt.epoch_state_for_rank(payload, 1, 2) == (state(2.0)["epoch_sums"],
                                                        state(2.0)["monitor"])  # fmt: skip
    # another count: the totals on process 0, zeros elsewhere (the reduction adds them)
    for world in (1, 3):
        assert ckpt.epoch_state_for_rank(payload, 0, world) == (payload["epoch_sums"],
                                                                payload["monitor"])  # fmt: skip
    assert ckpt.epoch_state_for_rank(payload, 2, 3) == ({}, {})
    # a checkpoint of an older spikeflow (no per-process entries) loads on process 0
    old = {"epoch_sums": state(1.0)["epoch_sums"], "monitor": state(1.0)["monitor"]}
    assert ckpt.epoch_state_for_rank(old, 0, 2) == (old["epoch_sums"], old["monitor"])
    assert ckpt.epoch_state_for_rank(old, 1, 2) == ({}, {})
    assert ckpt.epoch_state_for_rank({"epoch_sums": {}}, 0, 2) is None  # a complete epoch


def test_two_gloo_processes_equal_one_process_on_the_global_batch(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    Trainer(config_from_dict(_config(str(one))), log=None).fit()
    _spawn(_worker, str(two))
    a, b = load_checkpoint(one / "last.pt"), load_checkpoint(two / "last.pt")
    assert b["world_size"] == 2 and len(b["rng"]) == 2 and b["global_step"] == 1
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=1e-5, atol=1e-6, msg=key)
    # the step did move the weights (from the seeded initial ones)
    config = resolve(config_from_dict(_config(str(tmp_path / "x"))))
    seed_everything(config.seed)
    initial = build_model(config, build_datasets(config)[2]).state_dict()
    for key in initial:
        assert (initial[key] - a["model"][key]).abs().max() > 1e-5, f"{key} did not move"
    # the evaluation splits the test set without counting any sample twice
    assert a["history"][0]["test_acc"] == pytest.approx(b["history"][0]["test_acc"], abs=1e-12)
    assert a["history"][0]["train_loss"] == pytest.approx(b["history"][0]["train_loss"], rel=1e-5)


def test_learned_steps_under_two_gloo_processes_equal_one_process(tmp_path):
    """The input's step starts from the first batch: each process took it from its own
    half, and the copies kept different steps (DDP averages gradients only)."""
    one, two = tmp_path / "one", tmp_path / "two"
    Trainer(config_from_dict({**_config(str(one)), **_LSQ}), log=None).fit()
    _spawn(_lsq_worker, str(two))
    a, b = load_checkpoint(one / "last.pt"), load_checkpoint(two / "last.pt")
    assert b["world_size"] == 2 and "features.0.input_quantizer.step" in a["model"]
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=1e-5, atol=1e-6, msg=key)


def test_recompute_under_two_gloo_processes_equals_one_plain_process(tmp_path):
    """DDP over recomputed blocks (each process recomputes its own half of the batch)
    reduces the same gradients as one process without recomputation."""
    one, two = tmp_path / "one", tmp_path / "two"
    Trainer(config_from_dict(_config(str(one))), log=None).fit()
    _spawn(_recompute_worker, str(two))
    a, b = load_checkpoint(one / "last.pt"), load_checkpoint(two / "last.pt")
    assert b["world_size"] == 2 and b["config"]["recompute"] is True
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=1e-5, atol=1e-6, msg=key)


def test_a_spike_regulariser_under_two_gloo_processes_equals_one_process(tmp_path):
    """--spike-reg under DDP: the same step as one process on the global batch (and a
    different one from the run without the term), the same logged term."""
    one, two, plain = tmp_path / "one", tmp_path / "two", tmp_path / "plain"
    Trainer(config_from_dict({**_config(str(one)), **_SPIKE_REG}), log=None).fit()
    Trainer(config_from_dict(_config(str(plain))), log=None).fit()
    _spawn(_spike_reg_worker, str(two))
    a, b = load_checkpoint(one / "last.pt"), load_checkpoint(two / "last.pt")
    unregularised = load_checkpoint(plain / "last.pt")["model"]
    assert b["world_size"] == 2
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=1e-5, atol=1e-6, msg=key)
    assert any((unregularised[k] - v).abs().max() > 1e-4 for k, v in a["model"].items())
    terms = [load_checkpoint(p / "last.pt")["history"][0]["train_spike_reg"] for p in (one, two)]
    assert terms[0] > 0 and terms[1] == pytest.approx(terms[0], rel=1e-5)


@pytest.mark.parametrize("trace_decay", [None, 0.5], ids=["sltt", "ottt"])
def test_online_training_of_two_gloo_processes_equals_one_process(tmp_path, trace_decay):
    # The processes must draw the same SLTT-K steps (else their backward passes do not
    # pair up); the gradients are reduced once, at the last trained step (no_sync). With
    # OTTT the trace hooks sit on the layers inside the DDP wrapper.
    one, two = tmp_path / "one", tmp_path / "two"
    Trainer(config_from_dict(_online_config(str(one), trace_decay)), log=None).fit()
    _spawn(_online_worker, str(two), trace_decay)
    a, b = load_checkpoint(one / "last.pt"), load_checkpoint(two / "last.pt")
    assert b["world_size"] == 2 and b["global_step"] == a["global_step"] == 6
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=1e-5, atol=1e-6, msg=key)
    assert a["history"][1]["train_loss"] == pytest.approx(b["history"][1]["train_loss"], rel=1e-5)


def test_online_ddp_averages_gradients_that_some_steps_do_not_reach(tmp_path):
    # Only the last trained step's backward used to reduce the gradients: parameters
    # outside its graph (BN of other steps, SLTT-K) kept per-process values, and DDP
    # failed at the next iteration.
    _spawn(_online_bntt_worker, str(tmp_path))
    first, second = (torch.load(tmp_path / f"{r}.pt") for r in (0, 1))
    for it in range(3):
        for a, b, own_a, own_b in zip(first["ddp", it], second["ddp", it], first["own", it],
                                      second["own", it]):  # fmt: skip
            assert torch.equal(a, b)
            zero = torch.zeros_like(a)
            mean = (
                (own_a if own_a is not None else zero) + (own_b if own_b is not None else zero)
            ) / 2
            torch.testing.assert_close(a, mean)


def test_an_uneven_training_set_is_noted(tmp_path):
    _spawn(_logging_worker, str(tmp_path))
    text = (tmp_path / "messages.txt").read_text()
    assert "23 training samples do not split evenly over 2 processes" in text
    assert "repeats 1 of them" in text


def _calibration_net() -> torch.nn.Module:
    from spikeflow.event_driven import AdjustedAvgPool2d, EventDrivenConv2d, EventDrivenLinear

    torch.manual_seed(0)
    return torch.nn.Sequential(
        EventDrivenConv2d(2, 4, 3), AdjustedAvgPool2d(2), EventDrivenLinear(4 * 3 * 3, 5)
    )


def _calibration_batch(rank: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(100 + rank)
    return (torch.rand(12, 4, 2, 8, 8, generator=generator) < 0.3 * (rank + 1)).float()


def _calibration_worker(rank: int, world_size: int, port: int, root: str) -> None:
    from spikeflow.event_driven import calibrate_event_driven

    _join(rank, world_size, port)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        net = _calibration_net()
        scales = calibrate_event_driven(net, _calibration_batch(rank), 0.5)
        torch.save({"scales": scales, "state": net.state_dict()}, f"{root}/{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_event_driven_calibration_averages_the_processes_scales(tmp_path):
    from spikeflow.event_driven import calibrate_event_driven

    _spawn(_calibration_worker, str(tmp_path))
    first, second = (torch.load(tmp_path / f"{r}.pt") for r in (0, 1))
    assert first["scales"] == second["scales"]
    for key, value in first["state"].items():
        assert torch.equal(value, second["state"][key]), key
    # the first layer's scale is the geometric mean of what each process found alone
    alone = [calibrate_event_driven(_calibration_net(), _calibration_batch(r), 0.5)["0"]
             for r in (0, 1)]  # fmt: skip
    assert alone[0] != pytest.approx(alone[1], rel=0.05)
    assert first["scales"]["0"] == pytest.approx(math.sqrt(alone[0] * alone[1]), rel=1e-9)


def test_a_model_with_parameters_a_step_does_not_reach_trains_under_ddp(tmp_path):
    _spawn(_unused_parameters_worker, str(tmp_path))
    checkpoint = load_checkpoint(tmp_path / "last.pt")
    assert checkpoint["world_size"] == 2 and checkpoint["global_step"] == 2


def test_fptt_under_two_gloo_processes_equals_one_process(tmp_path):
    """--fptt under DDP: the same weights, running means and multipliers on both
    processes as one process on the global batch; SpikeDHS, whose forward leaves
    parameters unused, trains too (the penalty backpropagated with the loss reached
    them a second time, which DDP refused at the first window)."""
    one = Trainer(config_from_dict(_fptt_configs(str(tmp_path / "one"))["plain"]), log=None)
    one.fit()
    _spawn(_fptt_worker, str(tmp_path / "two"))
    a, b = (
        load_checkpoint(tmp_path / "one/plain/last.pt"),
        load_checkpoint(tmp_path / "two/plain/last.pt"),
    )
    assert b["world_size"] == 2 and b["global_step"] == 1
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=1e-5, atol=1e-6, msg=key)
    for name in ("plain", "dhs"):
        first, second = (torch.load(tmp_path / f"two/{name}/fptt{r}.pt") for r in (0, 1))
        for key in ("mean", "multiplier"):
            for x, y in zip(first[key], second[key]):
                assert torch.equal(x, y), (name, key)
    ours = torch.load(tmp_path / "two/plain/fptt0.pt")
    for key in ("mean", "multiplier"):
        for x, y in zip(ours[key], one.fptt.state_dict()[key]):
            torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-7)
    assert any(m.abs().sum() > 0 for m in ours["multiplier"])
    assert load_checkpoint(tmp_path / "two/dhs/last.pt")["global_step"] == 1


def test_runs_one_after_another_in_one_torchrun_job_join_a_group_each(tmp_path):
    """torchrun's store outlives a process group and torch names a new default group as
    it named the destroyed one: the second run found the first group's keys, one process
    went on with them and the other waited for ever (about every other try)."""
    _spawn(_three_runs_worker, str(tmp_path), limit_s=120)
    for run in range(3):
        assert load_checkpoint(tmp_path / f"run{run}/last.pt")["world_size"] == 2


def test_stcl_views_of_two_processes_are_one_process_views_of_the_global_batch(tmp_path):
    """--loss stcl under DDP: each process's two views of its samples are those one
    process makes of the global batch (no two processes shift their samples alike)."""
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    _record_views(str(one), "views.pt")
    _spawn(_stcl_views_worker, str(two))
    (whole,) = torch.load(one / "views.pt")  # one step: [2 x 24, 1, 8, 8]
    assert whole.shape[0] == 48
    for rank in range(2):
        (share,) = torch.load(two / f"views{rank}.pt")
        torch.testing.assert_close(share[:12], whole[:24][rank::2], rtol=0, atol=0)
        torch.testing.assert_close(share[12:], whole[24:][rank::2], rtol=0, atol=0)
