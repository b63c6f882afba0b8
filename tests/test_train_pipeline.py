"""Pipeline parallelism (training.pipeline, torch's GPipe schedule) on 2 gloo CPU
processes: a spiking conv net (per-channel PLIF, batch norm, LIF) cut into 2 stages
gives the whole network's micro-batch losses, gradients and, after SGD steps, weights
and batch-norm statistics, in float64."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.distributed as dist
from torch import nn

from spikeflow import layers
from spikeflow.errors import ConfigurationError
from spikeflow.functional import set_streaming
from spikeflow.neurons import LIFNode, ParametricLIFNode
from spikeflow.training.pipeline import _checked_loss, pipeline, stage_bounds
from test_train_distributed import _join, _spawn

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is absent")


def _net() -> nn.Sequential:
    return nn.Sequential(
        layers.Conv2d(2, 8, 3, padding=1), layers.BatchNorm2d(8),
        ParametricLIFNode(init_tau=(1.5, 4.0), shape=(8, 1, 1), v_threshold=0.2),
        layers.MaxPool2d(2),
        layers.Conv2d(8, 8, 3, padding=1), layers.BatchNorm2d(8), LIFNode(v_threshold=0.2),
        layers.Flatten(), layers.Linear(8 * 16, 5),
    )  # fmt: skip


def _loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(out.mean(0), target)


def _worker(rank: int, world_size: int, port: int, root: str) -> None:
    """2 SGD steps of the pipeline (2 stages, 3 micro-batches of 2) and of the whole
    net on each micro-batch in turn (the mean of their losses)."""
    _join(rank, world_size, port)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        torch.manual_seed(0)
        whole = _net().double()
        run = pipeline(copy.deepcopy(whole), _loss, microbatches=3)
        opts = [torch.optim.SGD(m.parameters(), lr=0.5, momentum=0.9) for m in (whole, run.stage)]
        found: dict = {"names": list(run.stage.state_dict()), "losses": [], "grad": 0.0}
        for step in range(2):
            torch.manual_seed(10 + step)
            x = (torch.rand(4, 6, 2, 8, 8, dtype=torch.float64) < 0.4).double()
            target = torch.randint(0, 5, (6,))
            for opt in opts:
                opt.zero_grad()
            losses = run.step(x if run.is_first else None, target if run.is_last else None)
            chunks = [_loss(whole(x[:, i : i + 2]), target[i : i + 2]) for i in (0, 2, 4)]
            (sum(chunks) / 3).backward()
            found["losses"].append(
                ([float(v) for v in losses], [float(v.detach()) for v in chunks])
            )
            params = dict(whole.named_parameters())
            for name, p in run.stage.named_parameters():
                found["grad"] = max(found["grad"], float((p.grad - params[name].grad).abs().max()))
            found.setdefault(
                "grad_norm", sum(float(p.grad.abs().sum()) for p in whole.parameters())
            )
            for opt in opts:
                opt.step()
        state = whole.state_dict()
        found["state"] = max(float((v.double() - state[k].double()).abs().max())
                             for k, v in run.stage.state_dict().items())  # fmt: skip
        found["params"] = sum(p.numel() for p in run.stage.parameters())
        torch.save(found, f"{root}/pp{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> list[dict]:
    root = tmp_path_factory.mktemp("pp")
    _spawn(_worker, str(root), limit_s=120)
    return [torch.load(root / f"pp{rank}.pt", weights_only=False) for rank in (0, 1)]


def test_two_stages_give_the_whole_nets_losses_gradients_and_steps(runs):
    first, last = runs
    # the stages split the net (modules 0-4 and 5-8: 760 and 661 parameters)
    assert first["names"][0] == "0.weight" and last["names"][-1] == "8.bias"
    assert not set(first["names"]) & set(last["names"])
    assert first["params"] + last["params"] == sum(p.numel() for p in _net().parameters())
    for got, expected in last["losses"]:
        assert got == pytest.approx(expected, rel=1e-12, abs=1e-12)
    assert first["losses"][0][0] == []  # (the losses are the last stage's)
    for found in runs:
        assert found["grad_norm"] > 0 and found["grad"] < 1e-12 and found["state"] < 1e-12


def test_stage_bounds_balance_parameters_and_refuse_bad_cuts():
    net = _net()
    assert stage_bounds(net, 2) == [0, 5, 9]
    assert stage_bounds(net, 1) == [0, 9]
    assert stage_bounds(net, 9) == list(range(10))
    with pytest.raises(ConfigurationError, match="9 modules cannot make 10 stages"):
        stage_bounds(net, 10)
    with pytest.raises(ConfigurationError, match=r"cuts an nn\.Sequential into stages, got Module"):
        pipeline(nn.Module(), _loss, microbatches=2)
    with pytest.raises(ConfigurationError, match=r"bounds \[0, 4\] must run from 0 to 9"):
        pipeline(net, _loss, microbatches=2, bounds=[0, 4])
    assert not dist.is_initialized()  # one process, no group: named, not torch's ValueError
    with pytest.raises(ConfigurationError, match="no process group is initialised"):
        pipeline(net, _loss, microbatches=2)


def test_a_streaming_model_and_a_loss_that_is_no_tensor_are_refused():
    net = _net()
    set_streaming(net, True)  # would carry one micro-batch's state into the next
    with pytest.raises(ConfigurationError, match=r"'2' is streaming"):
        pipeline(net, _loss, microbatches=2)
    out, target = torch.rand(3, 2, 5, requires_grad=True), torch.tensor([1, 4])
    assert _checked_loss(_loss)(out, target) == _loss(out, target)
    with pytest.raises(ConfigurationError, match=r"one-element tensor .* got float"):
        _checked_loss(lambda o, t: _loss(o, t).item())(out, target)
    per_sample = _checked_loss(
        lambda o, t: nn.functional.cross_entropy(o.mean(0), t, reduction="none")
    )
    with pytest.raises(ConfigurationError, match=r"got a tensor of shape \(2,\)"):
        per_sample(out, target)
