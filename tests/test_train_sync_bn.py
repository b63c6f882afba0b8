"""--sync-bn: under 2 gloo processes, every batch norm of spikeflow's (sequence BN, tdBN,
BNTT, TEBN, FeatureBatchNorm, a momentum=None BN) normalises, updates its running
statistics and backpropagates as one process's batch norm on the concatenated batch
(float64); a run trained so equals one process's run on the global batch."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from torch import nn

from spikeflow.errors import ConfigurationError
from spikeflow.layers import lava_norm, norm, sequence_norm
from spikeflow.layers.attention import FeatureBatchNorm
from spikeflow.training import Trainer, load_checkpoint
from spikeflow.training.config import config_from_dict
from spikeflow.training.sync_bn import SyncedStatistics, convert_sync_batchnorm
from test_train_distributed import _config, _join, _spawn

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is absent")

T, B, C = 3, 8, 4  # B: the global batch, split in halves


def _layers() -> dict[str, tuple[nn.Module, tuple[int, ...]]]:
    """Each batch norm kind and the global input it normalises (float64)."""
    return {
        "sequence_bn2d": (sequence_norm.BatchNorm2d(C), (T, B, C, 5, 5)),
        "tdbn": (norm.ThresholdDependentBatchNorm2d(C, 0.7, 0.5), (T, B, C, 5, 5)),
        "bntt": (norm.BatchNormThroughTime1d(C, T), (T, B, C)),
        "tebn": (norm.TemporalEffectiveBatchNorm2d(C, T), (T, B, C, 3, 3)),
        "feature_bn": (FeatureBatchNorm(C), (T, B, 6, C)),
        "cumulative_bn": (nn.BatchNorm1d(C, momentum=None), (B, C, 7)),
    }  # fmt: skip


def _batch_dim(name: str) -> int:
    return 0 if name == "cumulative_bn" else 1


def _sync_worker(rank: int, world_size: int, port: int) -> None:
    _join(rank, world_size, port)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        for name, (layer, shape) in _layers().items():
            torch.manual_seed(1)
            reference = layer.double()
            with torch.no_grad():  # non-trivial affine parameters
                for p in reference.parameters():
                    p.add_(0.3 * torch.randn_like(p))
            synced = _copy(reference)
            assert convert_sync_batchnorm(synced), name
            x = 2.0 + 3.0 * torch.randn(shape, dtype=torch.float64)  # (mean far from 0)
            weights = torch.randn(shape, dtype=torch.float64)
            half = B // world_size
            mine = slice(rank * half, (rank + 1) * half)
            dim = _batch_dim(name)
            for _ in range(2):  # two batches: the running statistics move twice
                xr = x.clone().requires_grad_(True)
                (reference(xr) * weights).sum().backward()
                xs = x.narrow(dim, mine.start, half).clone().requires_grad_(True)
                ys = synced(xs)
                (ys * weights.narrow(dim, mine.start, half)).sum().backward()
            expected = reference(x.clone()).narrow(dim, mine.start, half)  # (a 3rd batch)
            got = synced(x.narrow(dim, mine.start, half).clone())
            torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12, msg=name)
            torch.testing.assert_close(
                xs.grad, xr.grad.narrow(dim, mine.start, half), rtol=1e-9, atol=1e-12,
                msg=f"{name}: input gradient",
            )  # fmt: skip
            for (key, p), q in zip(synced.named_parameters(), reference.parameters(), strict=True):
                grad = p.grad.clone()
                dist.all_reduce(grad)  # (DDP averages; the sum is the whole batch's)
                torch.testing.assert_close(grad, q.grad, rtol=1e-9, atol=1e-12, msg=f"{name} {key}")
            for (key, b), c in zip(synced.named_buffers(), reference.buffers(), strict=True):
                torch.testing.assert_close(b, c, rtol=1e-12, atol=1e-14, msg=f"{name} {key}")
            synced.eval()  # eval: the running statistics, no communication
            reference.eval()
            torch.testing.assert_close(synced(x), reference(x), rtol=1e-12, atol=1e-12)
        _half_inputs(rank, world_size)
        _uneven_batches(rank)
    finally:
        dist.destroy_process_group()


def _half_inputs(rank: int, world_size: int) -> None:
    """bfloat16/float16 inputs (autocast's): statistics reduced in float32, the output
    in the input's dtype as torch's batch norm gives it (not float32), equal to one
    process's float32 batch norm of the whole batch to the half precision."""
    for dtype in (torch.bfloat16, torch.float16):
        torch.manual_seed(2)
        reference = sequence_norm.BatchNorm2d(C)
        synced = _copy(reference)
        convert_sync_batchnorm(synced)
        x = (1.0 + 2.0 * torch.randn(T, B, C, 4, 4)).to(dtype)
        mine = slice(rank * B // world_size, (rank + 1) * B // world_size)
        got = synced(x[:, mine])
        assert got.dtype == dtype, (dtype, got.dtype)
        expected = reference(x.float())[:, mine]
        torch.testing.assert_close(got.float(), expected, rtol=2e-2, atol=2e-2)
        torch.testing.assert_close(synced.running_var, reference.running_var, rtol=1e-5, atol=1e-6)


def _uneven_batches(rank: int) -> None:
    """A last batch split 3 + 5 (or a process with no sample): the statistics weigh each
    process by its count, as one process's batch norm on the 8 samples (float64)."""
    for sizes in ((3, 5), (0, 8)):
        torch.manual_seed(3)
        reference = sequence_norm.BatchNorm2d(C).double()
        synced = _copy(reference)
        convert_sync_batchnorm(synced)
        x = 1.0 + 2.0 * torch.randn(T, sum(sizes), C, 3, 3, dtype=torch.float64)
        start = sum(sizes[:rank])
        mine = slice(start, start + sizes[rank])
        xs = x[:, mine].clone().requires_grad_(True)
        xr = x.clone().requires_grad_(True)
        weights = torch.randn_like(x)
        (synced(xs) * weights[:, mine]).sum().backward()
        expected = reference(xr)
        (expected * weights).sum().backward()
        torch.testing.assert_close(
            synced(x[:, mine]), reference(x)[:, mine], rtol=1e-10, atol=1e-12
        )
        torch.testing.assert_close(xs.grad, xr.grad[:, mine], rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(synced.running_var, reference.running_var, rtol=1e-12, atol=0)


def _copy(module: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(module)


def test_synced_batch_norms_equal_one_process_on_the_concatenated_batch():
    _spawn(_sync_worker)


def _train_worker(rank: int, world_size: int, port: int, output_dir: str) -> None:
    _join(rank, world_size, port)
    Trainer(config_from_dict(_bn_config(output_dir, sync=True)), log=None).fit()


def _bn_config(output_dir: str, sync: bool) -> dict:
    config = _config(output_dir)
    config["model_kwargs"] = {**config["model_kwargs"], "batch_norm": True}
    # with a model EMA, whose buffers (BN statistics) are the same in every process
    ema = {"model_ema": True, "model_ema_steps": 1, "model_ema_decay": 0.9}
    return {**config, "sync_bn": sync, "epochs": 2, "batch_size": 12, **ema}


def test_a_sync_bn_run_of_two_processes_equals_one_process_on_the_global_batch(tmp_path):
    """(With --model-ema: its average under torchrun equals one process's too.)"""
    one, two = tmp_path / "one", tmp_path / "two"
    Trainer(config_from_dict(_bn_config(str(one), sync=False)), log=None).fit()
    _spawn(_train_worker, str(two))
    a, b = load_checkpoint(one / "last.pt"), load_checkpoint(two / "last.pt")
    assert b["world_size"] == 2 and b["config"]["sync_bn"] is True
    assert any(key.endswith("running_var") for key in a["model"])
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=1e-4, atol=1e-5, msg=key)
    for key, value in a["model_ema"]["module"].items():
        torch.testing.assert_close(
            b["model_ema"]["module"][key], value, rtol=1e-4, atol=1e-5, msg=f"EMA {key}"
        )
    assert a["model_ema"]["updates"] == b["model_ema"]["updates"] == 4  # 2 steps x 2 epochs
    for x, y in zip(a["history"], b["history"], strict=True):
        assert x["test_acc"] == pytest.approx(y["test_acc"], abs=1e-12)
        assert x["test_loss_ema"] == pytest.approx(y["test_loss_ema"], rel=1e-4)
        assert x["train_loss"] == pytest.approx(y["train_loss"], rel=1e-4)


def test_one_process_is_unchanged_and_the_names_stay():
    torch.manual_seed(0)
    model = nn.Sequential(sequence_norm.BatchNorm2d(C), norm.BatchNormThroughTime2d(C, T))
    before = _copy(model)
    names = convert_sync_batchnorm(model)
    assert names == ["0", "1.bn.0", "1.bn.1", "1.bn.2"]
    assert isinstance(model[0], sequence_norm.BatchNorm2d)
    assert isinstance(model[0], SyncedStatistics)
    assert model.state_dict().keys() == before.state_dict().keys()
    x = torch.randn(T, 2, C, 4, 4)
    torch.testing.assert_close(model(x), before(x), rtol=0, atol=0)
    assert convert_sync_batchnorm(model) == []  # converted once


def test_batch_statistics_that_cannot_be_synced_are_refused_by_name():
    class OwnBatchNorm(nn.modules.batchnorm._BatchNorm):
        pass

    model = nn.Sequential(nn.BatchNorm1d(3), lava_norm.MeanOnlyBatchNorm(3))
    with pytest.raises(ConfigurationError, match=r"1 \(MeanOnlyBatchNorm\)"):
        convert_sync_batchnorm(model)
    with pytest.raises(ConfigurationError, match=r"own \(OwnBatchNorm: not a torch"):
        convert_sync_batchnorm(nn.ModuleDict({"own": OwnBatchNorm(3)}))
    assert type(model[0]) is nn.BatchNorm1d  # nothing converted before the refusal
