"""--ra-sampler: the training order of DeiT's RASampler, checked index for index against
SpikingJelly's copy (examples/common/tv_ref_classify/sampler.py), and the trainer's
epochs drawn from it."""

from __future__ import annotations

import itertools

import pytest

from spikeflow.errors import ConfigurationError
from spikeflow.training import Trainer, config_for_resume, load_checkpoint
from spikeflow.training.ra_sampler import (
    repeated_augmentation_indices,
    repeated_augmentation_length,
)
from train_runs import tiny


def _sj_indices(size: int, world: int, rank: int, seed: int, epoch: int, reps: int) -> list:
    sampler_module = pytest.importorskip(
        "spikingjelly.activation_based.examples.common.tv_ref_classify.sampler"
    )
    sampler = sampler_module.RASampler(
        range(size), num_replicas=world, rank=rank, seed=seed, repetitions=reps
    )
    sampler.set_epoch(epoch)
    return list(sampler)


def test_the_indices_are_spikingjellys_rasamplers():
    cases = itertools.product([256, 601], [1, 2, 3, 8], [0, 7], [0, 5], [1, 3])
    for size, world, seed, epoch, reps in cases:
        for rank in range(world):
            ours = repeated_augmentation_indices(size, world, rank, seed, epoch, reps)
            assert ours == _sj_indices(size, world, rank, seed, epoch, reps), (
                size, world, rank, seed, epoch, reps,
            )  # fmt: skip
    # each sample's copies go to different processes
    shares = [repeated_augmentation_indices(600, 3, r, 0, 0, 3) for r in range(3)]
    assert all(len(set(share)) == len(share) for share in shares)
    assert repeated_augmentation_length(600, 3) == 512 // 3


def test_too_few_samples_and_bad_reps_are_refused():
    with pytest.raises(ConfigurationError, match="255 samples"):
        repeated_augmentation_indices(255, 1, 0, 0, 0, 3)
    with pytest.raises(ConfigurationError, match="ra_reps"):
        repeated_augmentation_indices(300, 1, 0, 0, 0, 0)


def test_the_trainer_draws_its_epochs_from_it(tmp_path, monkeypatch):
    import spikeflow.training.trainer_steps as steps_module

    seen = []
    real_loader = steps_module.DataLoader

    def recording_loader(dataset, **kwargs):
        seen.append(list(kwargs["sampler"]))
        return real_loader(dataset, **kwargs)

    monkeypatch.setattr(steps_module, "DataLoader", recording_loader)
    config = tiny(tmp_path, "ra", train_samples=300, epochs=2, ra_sampler=True, ra_reps=3)
    Trainer(config, log=None).fit()
    # 300 samples: 256 draws per epoch, 8 steps of 32 (a plain epoch: 10 steps)
    assert seen == [repeated_augmentation_indices(300, 1, 0, 0, e, 3) for e in (0, 1)]
    assert load_checkpoint(tmp_path / "ra" / "last.pt")["global_step"] == 16
    with pytest.raises(ConfigurationError, match="at least 256"):
        Trainer(tiny(tmp_path, "few", ra_sampler=True), log=None).fit()


class _StopAt:
    def __init__(self, epoch: int, step: int) -> None:
        self.epoch, self.step = epoch, step

    def on_step_end(self, trainer, epoch, step, loss):
        if (epoch, step) == (self.epoch, self.step):
            trainer._stop_requested = True


def test_a_run_resumed_inside_an_epoch_trains_on_the_same_order(tmp_path):
    import torch

    ra = {"train_samples": 300, "epochs": 2, "ra_sampler": True, "ra_reps": 3}
    Trainer(tiny(tmp_path, "full", **ra), log=None).fit()
    Trainer(tiny(tmp_path, "cut", **ra), callbacks=[_StopAt(1, 2)], log=None).fit()
    payload = load_checkpoint(tmp_path / "cut" / "last.pt")
    assert (payload["epoch"], payload["step"]) == (1, 3)
    Trainer(config_for_resume(payload, {}), resume=payload, log=None).fit()
    full, cut = (load_checkpoint(tmp_path / n / "last.pt") for n in ("full", "cut"))
    assert full["global_step"] == cut["global_step"] == 16
    for key, value in full["model"].items():
        assert torch.equal(cut["model"][key], value), key
