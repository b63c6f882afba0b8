"""spikeflow train --teacher: the step's loss is distillation_loss of the student's
output and the frozen teacher's logits on the same batch (recomputed by hand from the
initial weights), resume stays exact, eval needs no teacher, and every teacher that
cannot be used is refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from spikeflow.cli import main
from spikeflow.errors import ConfigurationError
from spikeflow.losses import distillation_loss, get_loss
from spikeflow.training import Trainer, config_for_resume, load_checkpoint, load_trained_model
from spikeflow.training.build import build_model
from spikeflow.training.config import resolve
from spikeflow.training.data import to_time_major
from spikeflow.training.evaluation import evaluate_checkpoint
from spikeflow.training.teacher import load_teacher
from spikeflow.training.trainer_checkpoints import seed_everything
from train_runs import check_resume_is_exact, tiny

pytest.importorskip("sklearn", reason="the digits need scikit-learn")


def _float_teacher(path: Path, classes: int = 10, seed: int = 5) -> Path:
    """A float CNN on [B, 1, 8, 8] digits, saved whole (torch.save)."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.Flatten(), nn.Dropout(0.5), nn.Linear(4 * 64, classes))  # fmt: skip
    net.train()  # the trainer must put it in eval mode (dropout off, running statistics)
    torch.save(net, path)
    return path


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory) -> Path:
    return _float_teacher(tmp_path_factory.mktemp("teacher") / "cnn.pt")


def test_the_step_loss_is_the_distillation_loss_of_the_batch(tmp_path, teacher_file):
    # one step of 32 samples: the loss the callback sees is computed on the initial
    # weights, which a model built from the same seed has again
    losses = []

    class Record:
        def on_step_end(self, trainer, epoch, step, loss):
            losses.append(loss)

    config = tiny(tmp_path, "kd", train_samples=32, epochs=1, teacher=str(teacher_file),
                  kd_alpha=0.7, kd_temperature=2.0)  # fmt: skip
    trainer = Trainer(config, callbacks=[Record()], log=None)
    trainer.fit()
    cfg = resolve(config)
    seed_everything(cfg.seed)
    student = build_model(cfg, trainer.info).train()
    x, y = zip(*[trainer.train_set[i] for i in range(len(trainer.train_set))])
    x, y = torch.stack(x), torch.tensor(y)
    teacher = torch.load(teacher_file, weights_only=False).eval()
    with torch.no_grad():
        teacher_logits = teacher(x)
    with torch.no_grad():
        out = student(to_time_major(x, cfg.T, True))
    expected = distillation_loss(out, y, teacher_logits, get_loss("mse"), 0.7, 2.0, "rate")
    assert losses == [pytest.approx(float(expected), rel=1e-5)]
    # the teacher was frozen: in eval mode, no gradient, its weights unchanged
    assert not trainer.teacher.module.training
    assert all(not p.requires_grad for p in trainer.teacher.module.parameters())
    saved = torch.load(teacher_file, weights_only=False).state_dict()
    for key, value in trainer.teacher.module.state_dict().items():
        assert torch.equal(value, saved[key]), key


def test_alpha_zero_trains_as_without_a_teacher_and_alpha_one_differs(tmp_path, teacher_file):
    Trainer(tiny(tmp_path, "plain", epochs=1), log=None).fit()
    Trainer(tiny(tmp_path, "zero", epochs=1, teacher=str(teacher_file), kd_alpha=0.0),
            log=None).fit()  # fmt: skip
    Trainer(tiny(tmp_path, "one", epochs=1, teacher=str(teacher_file), kd_alpha=1.0),
            log=None).fit()  # fmt: skip
    plain, zero, one = (load_checkpoint(tmp_path / n / "last.pt")["model"]
                        for n in ("plain", "zero", "one"))  # fmt: skip
    assert all(torch.equal(plain[k], zero[k]) for k in plain)
    assert not all(torch.equal(plain[k], one[k]) for k in plain)


def test_resume_is_exact_and_eval_needs_no_teacher(tmp_path, teacher_file):
    payload = check_resume_is_exact(tmp_path, teacher=str(teacher_file), kd_alpha=0.5)
    assert payload["config"]["teacher"] == str(teacher_file)
    plain = evaluate_checkpoint(tmp_path / "full", device="cpu")  # the student alone
    assert 0 <= plain["test_acc"] <= 1


def test_a_moved_teacher_is_given_on_resume_and_another_is_refused(tmp_path):
    # The teacher's path is in the checkpoint's config: once the file moved, the run
    # could not be resumed (--teacher was no runtime option a resume may change).
    teacher = _float_teacher(tmp_path / "cnn.pt")
    Trainer(tiny(tmp_path, "full", teacher=str(teacher)), log=None).fit()
    Trainer(tiny(tmp_path, "split", teacher=str(teacher), stop_after=1), log=None).fit()
    payload = load_checkpoint(tmp_path / "split" / "last.pt")
    moved = teacher.rename(tmp_path / "moved.pt")
    with pytest.raises(ConfigurationError, match=r"cnn\.pt \(from its checkpoint\) does not exist"):
        Trainer(config_for_resume(payload, {}), resume=payload, log=None).fit()
    other = _float_teacher(tmp_path / "other.pt", seed=6)  # the same network, other weights
    with pytest.raises(ConfigurationError, match=r"other\.pt \(module .*\) is not the run's"):
        Trainer(config_for_resume(payload, {"teacher": str(other)}), resume=payload, log=None).fit()
    config = {k: v for k, v in payload["config"].items() if k != "teacher"}
    for base, change in ((payload, None), ({**payload, "config": config}, str(moved))):
        with pytest.raises(ConfigurationError, match="start a new run to change that"):
            config_for_resume(base, {"teacher": change})  # leaving it out, adding one
    Trainer(config_for_resume(payload, {"teacher": str(moved)}), resume=payload, log=None).fit()
    full, split = (load_checkpoint(tmp_path / n / "last.pt") for n in ("full", "split"))
    assert split["config"]["teacher"] == str(moved)
    for key, value in full["model"].items():
        assert torch.equal(value, split["model"][key]), key


def test_a_teacher_in_the_runs_own_output_folder_is_refused_and_kept(tmp_path):
    # --output-dir runs/a --teacher runs/a --overwrite deleted the teacher run and trained
    # the student over it (the teacher was already in memory)
    Trainer(tiny(tmp_path, "a", epochs=1), log=None).fit()
    before = load_checkpoint(tmp_path / "a" / "last.pt")["model"]
    for teacher in (tmp_path / "a", tmp_path / "a" / "best.pt"):
        with pytest.raises(ConfigurationError, match="is this run's own output folder"):
            Trainer(tiny(tmp_path, "a", epochs=1, teacher=str(teacher), overwrite=True),
                    log=None).fit()  # fmt: skip
    after = load_checkpoint(tmp_path / "a" / "last.pt")["model"]
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_teacher_ema_reads_the_teacher_runs_model_ema(tmp_path, teacher_file):
    # A --model-ema teacher run was read with its trained weights only (no way to
    # distil from the average that spikeflow eval --ema evaluates). Decay 0.999 adjusted
    # to the run (32 x 1 / 1 epoch): 0.968, the average apart from the weights.
    Trainer(tiny(tmp_path, "ema", epochs=1, model_ema=True, model_ema_steps=1,
                 model_ema_decay=0.999), log=None).fit()  # fmt: skip
    config = resolve(tiny(tmp_path, "student", teacher=str(tmp_path / "ema"), teacher_ema=True))
    cpu = torch.device("cpu")
    for path in (tmp_path / "ema", tmp_path / "ema" / "last.pt"):
        teacher = load_teacher(path, config, cpu)
        assert teacher.source.endswith("(its model EMA)")
        state = teacher.module.state_dict()
        for ema, same in ((True, True), (False, False)):
            held = load_trained_model(path, ema=ema).model.state_dict()
            assert all(torch.equal(state[k], held[k]) for k in held) is same
    with pytest.raises(ConfigurationError, match=r"cnn\.pt is no run folder or checkpoint"):
        load_teacher(teacher_file, config, cpu)
    Trainer(tiny(tmp_path, "plain", epochs=1), log=None).fit()
    with pytest.raises(ConfigurationError, match="trained without --model-ema"):
        load_teacher(tmp_path / "plain", config, cpu)
    with pytest.raises(ConfigurationError, match="teacher_ema needs --teacher"):
        resolve(tiny(tmp_path, "alone", teacher_ema=True))


def test_a_spiking_run_teacher_reads_the_batch_as_its_run_did(tmp_path):
    Trainer(tiny(tmp_path, "snn", epochs=1, T=3), log=None).fit()
    config = resolve(tiny(tmp_path, "student", T=2))
    teacher = load_teacher(tmp_path / "snn", config, torch.device("cpu"))
    assert teacher.source.startswith("run ") and teacher.source.endswith("best.pt")
    trained = load_trained_model(tmp_path / "snn")
    x = torch.stack([trained.test_set[i][0] for i in range(4)])
    with torch.no_grad():  # its own T (3) and readout (rate: the time-mean)
        expected = trained.model(to_time_major(x, 3, True)).mean(0)
    torch.testing.assert_close(teacher(x), expected)
    # its checkpoint file is taken too; another dataset is refused by name
    assert load_teacher(tmp_path / "snn" / "last.pt", config, torch.device("cpu"))
    other = resolve(tiny(tmp_path, "other", dataset="mnist", model="plif_digits"))
    with pytest.raises(
        ConfigurationError, match="trained on dataset 'digits', this run trains on 'mnist'"
    ):
        load_teacher(tmp_path / "snn", other, torch.device("cpu"))


def test_unusable_teachers_are_refused_by_name(tmp_path, teacher_file):
    config = resolve(tiny(tmp_path, "s"))
    cpu = torch.device("cpu")
    with pytest.raises(ConfigurationError, match=r"nothing\.pt does not exist"):
        load_teacher(tmp_path / "nothing.pt", config, cpu)
    torch.save(torch.load(teacher_file, weights_only=False).state_dict(), tmp_path / "sd.pt")
    with pytest.raises(ConfigurationError, match=r"sd.pt holds a state_dict \(weights without"):
        load_teacher(tmp_path / "sd.pt", config, cpu)
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ConfigurationError, match=r"junk\.pt cannot be loaded as a checkpoint"):
        load_teacher(tmp_path / "junk.pt", config, cpu)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigurationError, match=r"without best\.pt or last\.pt"):
        load_teacher(tmp_path / "empty", config, cpu)
    # a teacher of other inputs (28 x 28 images) is named with the batch's shape, not
    # left to its first layer's error (it was torch's "mat1 and mat2 shapes cannot ...")
    torch.save(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), tmp_path / "mnist.pt")
    with pytest.raises(ConfigurationError, match=r"\(module .*mnist\.pt\) cannot read this "
                       r"run's batches \(two samples: shape \(2, 1, 8, 8\)"):  # fmt: skip
        Trainer(tiny(tmp_path, "mnist", teacher=str(tmp_path / "mnist.pt")), log=None).fit()
    # logits for 5 classes, and a spiking output [T, B, K], are named at the start
    five = _float_teacher(tmp_path / "five.pt", classes=5)
    with pytest.raises(
        ConfigurationError, match=r"shape \(2, 5\) for 2 samples; this run's dataset has 10"
    ):
        Trainer(tiny(tmp_path, "five", teacher=str(five)), log=None).fit()
    torch.save(nn.Sequential(nn.Flatten(), nn.Linear(64, 10), nn.Unflatten(0, (1, 2))),
               tmp_path / "seq.pt")  # fmt: skip
    with pytest.raises(
        ConfigurationError, match=r"returned shape \(1, 2, 10\); a module teacher must"
    ):
        Trainer(tiny(tmp_path, "seq", teacher=str(tmp_path / "seq.pt")), log=None).fit()
    assert not (tmp_path / "five").exists() and not (tmp_path / "seq").exists()


def test_a_torchscript_teacher_is_loaded(tmp_path, teacher_file):
    module = torch.load(teacher_file, weights_only=False).eval()
    torch.jit.save(torch.jit.script(module), tmp_path / "ts.pt")
    teacher = load_teacher(tmp_path / "ts.pt", resolve(tiny(tmp_path, "s")), torch.device("cpu"))
    assert teacher.source.startswith("TorchScript")
    x = torch.rand(3, 1, 8, 8)
    torch.testing.assert_close(teacher(x), module(x).detach())


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"kd_alpha": 0.3}, "kd_alpha needs --teacher"),
        ({"kd_temperature": 2.0}, "kd_temperature needs --teacher"),
        ({"teacher": "t.pt", "kd_alpha": 2.0}, r"kd_alpha must be a number in \[0, 1\]"),
        ({"teacher": "t.pt", "kd_temperature": 0.0}, "kd_temperature must be a finite number > 0"),
        ({"teacher": "t.pt", "online": True}, "cannot be combined with --online"),
        ({"teacher": "t.pt", "tbptt": 1}, "cannot be combined with --tbptt"),
        ({"teacher": "t.pt", "loss": "stcl"}, "--loss stcl"),
        (
            {"teacher": "t.pt", "loss": "ce_count", "loss_kwargs": {"reduction": "sum"}},
            "reduction=sum would scale the loss's share by the batch size",
        ),
        ({"teacher": "t.pt", "loss": "ttfs", "model": "plif_digits"}, "readout 'first_spike'"),
    ],
)
def test_settings_distillation_cannot_take_are_refused(tmp_path, changes, message):
    with pytest.raises(ConfigurationError, match=message):
        resolve(tiny(tmp_path, "r", **changes))


def test_the_command_line_options(tmp_path, teacher_file, capsys):
    out = tmp_path / "cli"
    code = main([
        "train", "--epochs", "1", "--train-samples", "64", "--test-samples", "32", "--T", "2",
        "--no-progress", "--plots", "off", "--output-dir", str(out), "--teacher",
        str(teacher_file), "--kd-alpha", "0.25", "--kd-temperature", "3",
    ])  # fmt: skip
    assert code == 0
    saved = load_checkpoint(out / "last.pt")["config"]
    assert (saved["teacher"], saved["kd_alpha"], saved["kd_temperature"]) == (
        str(teacher_file), 0.25, 3.0)  # fmt: skip
    assert "--teacher: module" in capsys.readouterr().out


def test_a_frames_teacher_must_read_the_students_frames(tmp_path, monkeypatch):
    # a run teacher fed frames [B, T, ...] needs the student's T and split_by; the digits
    # are static, so the loaded run is presented as a frames run
    import dataclasses

    from spikeflow.training import trained_model

    Trainer(tiny(tmp_path, "snn", epochs=1), log=None).fit()
    real = trained_model.load_trained_model

    def as_frames(path, **kwargs):
        trained = real(path, **kwargs)
        config = dataclasses.replace(trained.config, T=5, split_by="time")
        return dataclasses.replace(trained, static=False, config=config)

    monkeypatch.setattr(trained_model, "load_trained_model", as_frames)
    cpu = torch.device("cpu")
    student = resolve(tiny(tmp_path, "student", T=2))
    with pytest.raises(
        ConfigurationError, match="reads frames with T = 5, this run makes them with T = 2"
    ):
        load_teacher(tmp_path / "snn", student, cpu)
    student = resolve(tiny(tmp_path, "student", T=5, split_by="number"))
    with pytest.raises(
        ConfigurationError, match="split_by = 'time', this run makes them with split_by = 'number'"
    ):
        load_teacher(tmp_path / "snn", student, cpu)
    teacher = load_teacher(
        tmp_path / "snn", resolve(tiny(tmp_path, "s", T=5, split_by="time")), cpu
    )
    frames = torch.rand(3, 5, 1, 8, 8)  # [B, T, C, H, W]: transposed, not repeated
    with torch.no_grad():
        expected = teacher.module(frames.transpose(0, 1)).mean(0)
    torch.testing.assert_close(teacher(frames), expected)


def _ddp_worker(rank: int, world_size: int, port: int, root: str, teacher: str) -> None:
    """One process of a 2-process (gloo) --teacher run: each loads the teacher and
    distils its half of the global batch."""
    import torch.distributed as dist

    from spikeflow.training.config import config_from_dict
    from test_train_distributed import _config, _join

    _join(rank, world_size, port)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        Trainer(config_from_dict({**_config(f"{root}/ddp"), "teacher": teacher}), log=None).fit()
    finally:
        dist.destroy_process_group()


def test_two_processes_distil_as_one_on_the_global_batch(tmp_path):
    # The soft-target KL is averaged over each process's half batch and DDP averages the
    # halves' gradients: the step is one process's on the whole batch (each process runs
    # its own teacher, in eval mode: its batch norm uses running statistics).
    import torch.distributed as dist

    if not dist.is_available():
        pytest.skip("torch.distributed is absent")
    from spikeflow.training.config import config_from_dict
    from test_train_distributed import _config, _spawn

    teacher = str(_float_teacher(tmp_path / "cnn.pt"))
    _spawn(_ddp_worker, str(tmp_path), teacher)
    Trainer(config_from_dict({**_config(str(tmp_path / "one")), "teacher": teacher}),
            log=None).fit()  # fmt: skip
    one, two = (load_checkpoint(tmp_path / n / "last.pt") for n in ("one", "ddp"))
    assert two["world_size"] == 2 and one["world_size"] == 1
    for key, value in one["model"].items():
        torch.testing.assert_close(two["model"][key], value, rtol=1e-5, atol=1e-6, msg=key)
    assert two["history"][0]["train_loss"] == pytest.approx(one["history"][0]["train_loss"])
