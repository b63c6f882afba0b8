"""Channel tensor parallelism (training.tensor_parallel) on 2 gloo CPU processes: a
spiking VGG-like net (per-channel PLIF, batch norm, dropout) and a SEW ResNet (scalar
PLIF, the residual branches split) give the unsharded model's outputs, loss, gradients
and, after optimizer steps, weights and batch-norm statistics, in float64."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.distributed as dist
from torch import nn

from spikeflow import layers
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.functional import set_step_mode
from spikeflow.models import create_model
from spikeflow.neurons import LIFNode, ParametricLIFNode
from spikeflow.training.tensor_parallel import ChannelPair, channel_plan, parallelize_channels
from spikeflow.training.tensor_parallel_layers import ChannelShardedConv
from test_train_distributed import _join, _spawn

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is absent")


def _plif(channels: int, *shape: int) -> ParametricLIFNode:
    """PLIF with one time constant per channel, drawn in (1.5, 4)."""
    return ParametricLIFNode(init_tau=(1.5, 4.0), shape=(channels, *shape), v_threshold=0.2)


def _vgg_like() -> nn.Sequential:
    """Three pairs: conv-BN-PLIF-Dropout2d-conv; conv-BN-LIF-Dropout-pool-Flatten-FC
    (the split channels flattened into the Linear's input features); FC-PLIF-FC, with a
    PLIF between the pairs that runs whole. Per-channel time constants throughout."""
    return nn.Sequential(
        layers.Conv2d(2, 8, 3, padding=1), layers.BatchNorm2d(8), _plif(8, 1, 1),
        layers.Dropout2d(0.5),
        layers.Conv2d(8, 8, 3, padding=1), layers.BatchNorm2d(8), _plif(8, 1, 1),
        layers.MaxPool2d(2),
        layers.Conv2d(8, 6, 3, padding=1), layers.BatchNorm2d(6),
        LIFNode(tau=torch.linspace(1.5, 3.0, 6).view(6, 1, 1), v_threshold=0.2),
        layers.Dropout(0.3), layers.AvgPool2d(2), layers.Flatten(),
        layers.Linear(24, 12), _plif(12),
        layers.Linear(12, 10), _plif(10), layers.Linear(10, 5),
    )  # fmt: skip


def _sew_resnet() -> nn.Module:
    return create_model("sew_resnet18", num_classes=5, in_channels=2, base_width=4,
                        stem="cifar", neuron="plif",
                        neuron_kwargs={"v_threshold": 0.2})  # fmt: skip


def _compare(name: str, build, x: torch.Tensor, target: torch.Tensor, steps: int) -> dict:
    """Build the model twice from one seed, split one copy; run ``steps`` SGD steps (momentum) on
    both with the same dropout draws. The largest differences of outputs, losses,
    gathered gradients and gathered state (weights, BN statistics) after the steps."""
    torch.manual_seed(0)
    whole = build().double()
    sharded = copy.deepcopy(whole)
    shards = parallelize_channels(sharded)
    found: dict = {"pairs": shards.pairs, "params": sum(p.numel() for p in sharded.parameters()),
                   "whole_params": sum(p.numel() for p in whole.parameters())}  # fmt: skip
    opts = [torch.optim.SGD(m.parameters(), lr=0.2, momentum=0.9) for m in (whole, sharded)]
    diffs = {"out": 0.0, "loss": 0.0, "grad": 0.0, "state": 0.0}
    for step in range(steps):
        results = []
        for model, opt in zip((whole, sharded), opts):
            torch.manual_seed(100 + step)  # the same dropout masks
            opt.zero_grad()
            out = model(x)
            loss = nn.functional.cross_entropy(out.mean(0), target)
            loss.backward()
            results.append((out.detach(), loss.detach()))
        (out_w, loss_w), (out_s, loss_s) = results
        diffs["out"] = max(diffs["out"], float((out_w - out_s).abs().max()))
        diffs["loss"] = max(diffs["loss"], float((loss_w - loss_s).abs()))
        grads = shards.full_grads(sharded)
        for key, p in whole.named_parameters():
            diffs["grad"] = max(diffs["grad"], float((p.grad - grads[key]).abs().max()))
        if step == 0:
            found["grad_norm"] = sum(float(p.grad.abs().sum()) for p in whole.parameters())
            found["spikes"] = float(out_w.abs().sum())
        for opt in opts:
            opt.step()
    full = shards.full_state_dict(sharded)
    assert list(full) == list(whole.state_dict())
    for key, value in whole.state_dict().items():
        assert full[key].shape == value.shape, key
        if value.is_floating_point():
            diffs["state"] = max(diffs["state"], float((value - full[key]).abs().max()))
    moved = torch.manual_seed(0) and build().double().state_dict()
    found["moved"] = max(float((moved[k] - v).abs().max()) for k, v in whole.state_dict().items()
                         if v.is_floating_point())  # fmt: skip
    found[name] = diffs
    return found


def _against_spikingjelly() -> dict | None:
    """SpikingJelly's ChannelShardConv2d (colwise, rowwise) and ChannelShardBatchNorm2d
    on this rank, and spikeflow's split of the same layers: the largest differences of
    the shards, outputs and weight gradients (None without SpikingJelly)."""
    try:
        from spikingjelly.activation_based.distributed.tensor_parallel import channel
    except ImportError:
        return None
    group, rank = dist.group.WORLD, dist.get_rank()
    torch.manual_seed(2)
    x = torch.rand(3, 2, 8, 6, 6, dtype=torch.float64)
    diffs = {}
    for mode, inputs in (("column", x), ("row", x[:, :, rank * 4 : rank * 4 + 4])):
        conv = layers.Conv2d(8, 6, 3, padding=1).double()
        theirs = channel.ChannelShardConv2d(
            conv, group, "colwise" if mode == "column" else "rowwise"
        )
        ours = ChannelShardedConv(conv, mode, group, "conv")
        outs = [m(inputs) for m in (theirs, ours)]
        for out in outs:
            out.square().sum().backward()
        diffs[mode] = max(float((theirs.weight - ours.weight).abs().max()),
                          float((outs[0] - outs[1]).abs().max()),
                          float((theirs.weight.grad - ours.weight.grad).abs().max()))  # fmt: skip
    bn = layers.BatchNorm2d(8).double()
    net = nn.Sequential(layers.Conv2d(8, 8, 1), bn, layers.Conv2d(8, 8, 1)).double()
    theirs = channel.ChannelShardBatchNorm2d(bn, group)
    parallelize_channels(net)
    part = x[:, :, rank * 4 : rank * 4 + 4]
    diffs["bn"] = float((theirs(part) - net[1](part)).abs().max())
    diffs["bn_stats"] = float((theirs.running_var - net[1].running_var).abs().max())
    return diffs


def _clip_and_reload() -> dict:
    """ChannelShards.clip_grad_norm_ (2-norm and max-norm) against torch's on the whole
    model, and the gathered state loaded back: into a sharded model built from other
    weights (load_full_state_dict) and into an unsharded one."""
    torch.manual_seed(0)
    whole = _vgg_like().double()
    sharded = copy.deepcopy(whole)
    shards = parallelize_channels(sharded)
    x = (torch.rand(4, 2, 2, 8, 8, dtype=torch.float64) < 0.4).double()
    found: dict = {"norm": 0.0, "grad": 0.0, "local_norms": [], "whole_norms": []}
    for norm_type in (2.0, float("inf")):
        for model in (whole, sharded):
            torch.manual_seed(7)
            model.zero_grad()
            model(x).square().mean().backward()
        found["local_norms"].append(
            float(torch.nn.utils.get_total_norm([p.grad for p in sharded.parameters()], norm_type))
        )
        expected = torch.nn.utils.clip_grad_norm_(whole.parameters(), 1e-3, norm_type)
        got = shards.clip_grad_norm_(sharded, 1e-3, norm_type)
        found["whole_norms"].append(float(expected))
        found["norm"] = max(found["norm"], float((expected - got).abs()))
        grads = shards.full_grads(sharded)
        for key, p in whole.named_parameters():
            found["grad"] = max(found["grad"], float((p.grad - grads[key]).abs().max()))
    torch.optim.SGD(sharded.parameters(), lr=0.5).step()
    full = shards.full_state_dict(sharded)
    torch.manual_seed(3)  # other weights, loaded over
    other = _vgg_like().double()
    unsharded = copy.deepcopy(other)
    unsharded.load_state_dict(full)
    reloaded = parallelize_channels(other)
    reloaded.load_full_state_dict(other, full)
    outs = []
    for model in (sharded, other, unsharded):
        torch.manual_seed(8)
        outs.append(model(x).detach())
    found["reload"] = max(float((outs[0] - o).abs().max()) for o in outs[1:])
    found["spikes"] = float(outs[0].abs().sum())
    try:
        reloaded.load_full_state_dict(other, other.state_dict())  # a shard's, not the whole
    except ConfigurationError as exc:
        found["refused"] = str(exc)
    return found


def _optimizer_round_trip() -> dict:
    """Adam's state gathered from the sharded model against the whole model's Adam, and
    a resume: a sharded model from other weights given the gathered model and optimizer
    state, stepped once more beside the whole model."""
    torch.manual_seed(0)
    whole = _vgg_like().double()
    sharded = copy.deepcopy(whole)
    stale = torch.optim.Adam(sharded.parameters())  # made before the split
    shards = parallelize_channels(sharded)
    x = (torch.rand(4, 2, 2, 8, 8, dtype=torch.float64) < 0.4).double()

    def step(model: nn.Module, opt: torch.optim.Optimizer) -> None:
        torch.manual_seed(9)
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()

    opts = [torch.optim.Adam(m.parameters(), lr=0.01) for m in (whole, sharded)]
    for model, opt in zip((whole, sharded), opts):
        step(model, opt)
    full, expected = shards.full_optimizer_state(sharded, opts[1]), opts[0].state_dict()
    found = {"state": max(float((value - full["state"][i][key]).abs().max())
                          for i, entries in expected["state"].items()
                          for key, value in entries.items())}  # fmt: skip
    found["moment"] = float(expected["state"][0]["exp_avg"].abs().sum())
    torch.manual_seed(3)  # other weights and a fresh optimizer, loaded over
    other = _vgg_like().double()
    reloaded = parallelize_channels(other)
    reloaded.load_full_state_dict(other, shards.full_state_dict(sharded))
    opt = torch.optim.Adam(other.parameters(), lr=0.01)
    reloaded.load_full_optimizer_state(other, opt, full)
    step(whole, opts[0])
    step(other, opt)
    resumed = reloaded.full_state_dict(other)
    found["resumed"] = max(float((v - resumed[k]).abs().max())
                           for k, v in whole.state_dict().items()
                           if v.is_floating_point())  # fmt: skip
    try:
        shards.full_optimizer_state(sharded, stale)
    except ConfigurationError as exc:
        found["refused"] = str(exc)
    return found


def _copied() -> dict:
    """A copy (copy.deepcopy) of a sharded net with a scalar PLIF w between split
    channels: the largest gradient difference from the whole net's, and w's gradient."""
    torch.manual_seed(0)
    whole = nn.Sequential(layers.Linear(4, 6), ParametricLIFNode(v_threshold=0.1),
                          layers.Linear(6, 2)).double()  # fmt: skip
    sharded = copy.deepcopy(whole)
    shards = parallelize_channels(sharded)
    copied = copy.deepcopy(sharded)  # new parameters: the tensor hooks stay behind
    x = torch.rand(3, 2, 4, dtype=torch.float64)
    for model in (whole, copied):
        model(x).square().sum().backward()
    grads = shards.full_grads(copied)
    diff = max(float((p.grad - grads[k]).abs().max()) for k, p in whole.named_parameters())
    return {"grad": diff, "w_grad": float(whole[1].w.grad)}


def _worker(rank: int, world_size: int, port: int, root: str) -> None:
    _join(rank, world_size, port)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        torch.manual_seed(1)  # the same batch on every process
        x = (torch.rand(4, 3, 2, 8, 8, dtype=torch.float64) < 0.4).double()
        target = torch.tensor([0, 3, 4])
        out = {"vgg": _compare("vgg", _vgg_like, x, target, steps=3),
               "sew": _compare("sew", _sew_resnet, x, target, steps=2),
               "sj": _against_spikingjelly(), "clip": _clip_and_reload(),
               "copied": _copied(), "adam": _optimizer_round_trip()}  # fmt: skip
        torch.save(out, f"{root}/tp{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> list[dict]:
    root = tmp_path_factory.mktemp("tp")
    _spawn(_worker, str(root), limit_s=120)
    return [torch.load(root / f"tp{rank}.pt", weights_only=False) for rank in (0, 1)]


@pytest.mark.parametrize("model", ["vgg", "sew"])
def test_split_channels_give_the_whole_models_outputs_gradients_and_steps(runs, model):
    for found in runs:
        result = found[model]
        # (the check is not vacuous: spikes flow, gradients are nonzero, weights moved)
        assert result["spikes"] > 0 and result["grad_norm"] > 0 and result["moved"] > 1e-4
        for key, diff in result[model].items():
            assert diff < 1e-10, (model, key, diff)


def test_the_shards_are_spikingjellys_channel_shards(runs):
    """SpikingJelly's ChannelShardConv2d/ChannelShardBatchNorm2d slice the same
    channels and give the same outputs and gradients on each rank."""
    if runs[0]["sj"] is None:
        pytest.skip("SpikingJelly is not installed")
    for found in runs:
        assert set(found["sj"]) == {"column", "row", "bn", "bn_stats"}
        assert all(diff < 1e-12 for diff in found["sj"].values()), found["sj"]


def test_gradient_clipping_takes_the_whole_models_norm_over_the_shards(runs):
    """torch's clip_grad_norm_ on one process's parameters sees its slices only."""
    for found in runs:
        clip = found["clip"]
        # (this process's slices alone: a smaller 2-norm than the whole model's)
        assert 0 < clip["local_norms"][0] < 0.99 * clip["whole_norms"][0]
        assert clip["whole_norms"][1] > 1e-3  # (the clipping scales the gradients)
        assert clip["norm"] < 1e-12 and clip["grad"] < 1e-12, clip
    assert runs[0]["clip"]["local_norms"] != runs[1]["clip"]["local_norms"]


def test_the_gathered_state_loads_into_sharded_and_unsharded_models(runs):
    for found in runs:
        clip = found["clip"]
        assert clip["spikes"] > 0 and clip["reload"] < 1e-12, clip
        message = "'0.weight' has shape (4, 2, 3, 3), the unsharded model's is (8, 2, 3, 3)"
        assert message in clip["refused"]


def test_the_optimizer_state_gathers_and_loads_back_to_resume(runs):
    for found in runs:
        adam = found["adam"]
        assert adam["moment"] > 0 and adam["state"] < 1e-12 and adam["resumed"] < 1e-12, adam
        assert "create the optimizer after parallelize_channels" in adam["refused"]


def test_a_copy_of_the_sharded_model_still_sums_the_shared_gradient(runs):
    for found in runs:
        assert found["copied"]["w_grad"] != 0 and found["copied"]["grad"] < 1e-12, found["copied"]


def test_each_process_holds_a_share_of_the_parameters(runs):
    vgg, sew = runs[0]["vgg"], runs[0]["sew"]
    assert [(p.column, p.row) for p in vgg["pairs"]] == [("0", "4"), ("8", "14"), ("16", "18")]
    assert len(sew["pairs"]) == 8  # one per basic block
    for found in (vgg, sew):
        assert found["params"] < 0.75 * found["whole_params"]
    assert runs[1]["vgg"]["params"] == vgg["params"]


def _three_worker(rank: int, world_size: int, port: int, root: str) -> None:
    """3 processes: a net whose 6 and 12 channels split in 3 (a conv pair, a pair through
    Flatten, a Linear pair): outputs, loss and gathered gradients against the whole."""
    _join(rank, world_size, port)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        build = lambda: nn.Sequential(  # noqa: E731
            layers.Conv2d(2, 6, 3, padding=1), layers.BatchNorm2d(6), _plif(6, 1, 1),
            layers.Dropout2d(0.5), layers.Conv2d(6, 6, 3, padding=1), layers.BatchNorm2d(6),
            ParametricLIFNode(v_threshold=0.2), layers.MaxPool2d(2), layers.Flatten(),
            layers.Linear(96, 12), _plif(12), layers.Linear(12, 5),
        )  # fmt: skip
        torch.manual_seed(1)
        x = (torch.rand(4, 3, 2, 8, 8, dtype=torch.float64) < 0.4).double()
        target = torch.tensor([0, 3, 4])
        found = _compare("three", build, x, target, steps=2)
        torch.save(found, f"{root}/tp3_{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_three_processes_give_the_whole_models_outputs_gradients_and_steps(tmp_path):
    _spawn(_three_worker, str(tmp_path), limit_s=120, world_size=3)
    for rank in range(3):
        found = torch.load(tmp_path / f"tp3_{rank}.pt", weights_only=False)
        assert found["spikes"] > 0 and found["grad_norm"] > 0 and found["moved"] > 1e-4
        assert found["params"] < 0.6 * found["whole_params"]
        assert all(diff < 1e-10 for diff in found["three"].values()), found["three"]


# -- in one process (no process group: one shard holds everything) ----------------------


def test_the_plan_pairs_the_zoos_vgg_and_resnet_layers():
    vgg = create_model("spiking_vgg11_bn", num_classes=10, pool_size=1, hidden_features=64)
    pairs = channel_plan(vgg, world_size=2)
    assert [(p.column, p.row) for p in pairs] == [
        ("features.0", "features.4"), ("features.8", "features.11"),
        ("features.15", "features.18"), ("features.22", "features.25"),
        ("classifier.1", "classifier.4"),
    ]  # fmt: skip
    assert pairs[0].between == ("features.1", "features.2", "features.3")
    resnet = create_model("spiking_resnet34", num_classes=10, base_width=8)
    assert len(channel_plan(resnet, world_size=2)) == 3 + 4 + 6 + 3
    # 5 output channels do not split over 2 processes: that pair is left whole
    odd = nn.Sequential(layers.Linear(4, 5), LIFNode(), layers.Linear(5, 3))
    assert channel_plan(odd, world_size=2) == [] and len(channel_plan(odd, world_size=1)) == 1
    # pooling pairs only over the column layer's spatial dims (else it mixes channels)
    pooled = nn.Sequential(layers.Conv1d(2, 8, 3), nn.MaxPool1d(2), layers.Conv1d(8, 4, 3),
                           nn.AvgPool1d(3, 1, 1), layers.Conv1d(4, 4, 1), layers.Linear(4, 8),
                           nn.MaxPool1d(3, 1, 1), layers.Linear(8, 2))  # fmt: skip
    assert [(p.column, p.between, p.row) for p in channel_plan(pooled, 2)] == [("0", ("1",), "2")]
    # a Linear after a conv reads its last (spatial) dim, not its channels: no pair
    assert channel_plan(nn.Sequential(layers.Conv1d(2, 4, 1), layers.Linear(4, 2)), 2) == []
    # a Sequential with its own forward may not run its children in order: not looked into
    assert channel_plan(_Skipping(layers.Linear(4, 4), LIFNode(), layers.Linear(4, 4)), 2) == []


class _Skipping(nn.Sequential):
    """A Sequential whose forward adds its input to its children's output."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + super().forward(x)


def test_one_process_holds_every_channel_and_gives_the_same_outputs():
    torch.manual_seed(0)
    whole = _vgg_like().double()
    sharded = copy.deepcopy(whole)
    shards = parallelize_channels(sharded)
    assert isinstance(sharded[0], ChannelShardedConv) and sharded[0].mode == "column"
    x = (torch.rand(3, 2, 2, 8, 8, dtype=torch.float64) < 0.4).double()
    torch.manual_seed(1)
    expected = whole(x)
    torch.manual_seed(1)
    torch.testing.assert_close(sharded(x), expected, rtol=0, atol=1e-12)
    assert list(shards.full_state_dict(sharded)) == list(whole.state_dict())
    # a scalar PLIF w between split channels (its gradient hook) in one process
    shared = nn.Sequential(layers.Linear(4, 6), ParametricLIFNode(v_threshold=0.1),
                           layers.Linear(6, 2)).double()  # fmt: skip
    split = copy.deepcopy(shared)
    parallelize_channels(split)
    x = torch.rand(3, 2, 4, dtype=torch.float64)
    for model in (shared, split):
        model(x).sum().backward()
    assert float(shared[1].w.grad) != 0
    torch.testing.assert_close(split[1].w.grad, shared[1].w.grad, rtol=0, atol=1e-12)


def test_a_sharded_layer_names_itself_on_a_wrong_input():
    sharded = copy.deepcopy(_vgg_like())
    parallelize_channels(sharded)
    with pytest.raises(ShapeError, match=r"'0' \(column-sharded, rank 0 of 1\) expects 2 channels"):
        sharded(torch.rand(3, 2, 3, 8, 8))
    with pytest.raises(ShapeError, match=r"'0' in multi-step mode expects \[T, B, C, \.\.\.\]"):
        sharded(torch.rand(2, 2, 8, 8))
    set_step_mode(sharded, "s")  # (the split layers switch with the rest)
    assert sharded[0].step_mode == sharded[4].step_mode == "s"
    assert sharded[0](torch.rand(2, 2, 8, 8)).shape == (2, 8, 8, 8)


@pytest.mark.parametrize(
    ("model", "pair", "message"),
    [
        (nn.Sequential(layers.Conv2d(4, 4, 3), nn.GroupNorm(2, 4), layers.Conv2d(4, 4, 3)),
         ChannelPair("0", ("1",), "2"), r"cannot shard '1' \(GroupNorm\)"),
        (nn.Sequential(layers.Conv2d(4, 4, 3, groups=2), LIFNode(), layers.Conv2d(4, 4, 3)),
         ChannelPair("0", ("1",), "2"), r"cannot shard '0' \(Conv2d\)"),
        (nn.Sequential(layers.Linear(4, 4), nn.Dropout(0.5), layers.Linear(4, 4)),
         ChannelPair("0", ("1",), "2"), r"cannot shard '1' \(Dropout\)"),
        (nn.Sequential(layers.Linear(4, 6), LIFNode(), layers.Linear(4, 4)),
         ChannelPair("0", ("1",), "2"), r"'2' \(4 input channels\) cannot take the output"),
        (nn.Sequential(layers.Linear(4, 4), LIFNode(), layers.Linear(4, 4)),
         ChannelPair("0", ("3",), "2"), r"the model has no module '3'"),
        # pooling that would mix channels: over a Linear's features, over a Conv1d's
        # channels (a MaxPool2d on [B, C, L]), after a Flatten
        (nn.Sequential(layers.Linear(4, 8), nn.AvgPool1d(3, 1, 1), layers.Linear(8, 2)),
         ChannelPair("0", ("1",), "2"), r"cannot shard '1' \(AvgPool1d\)"),
        (nn.Sequential(layers.Conv1d(4, 8, 3), nn.MaxPool2d(3, 1, 1), layers.Conv1d(8, 2, 3)),
         ChannelPair("0", ("1",), "2"), r"cannot shard '1' \(MaxPool2d\)"),
        (nn.Sequential(layers.Conv1d(4, 8, 3), layers.Flatten(), nn.MaxPool1d(1),
                       layers.Linear(16, 2)),
         ChannelPair("0", ("1", "2"), "3"), r"cannot shard '2' \(MaxPool1d\)"),
        # layers that compute more than their plain op, which the split would drop
        (nn.Sequential(layers.WSConv2d(2, 4, 3), LIFNode(), layers.Conv2d(4, 4, 3)),
         ChannelPair("0", ("1",), "2"),
         r"'0' \(WSConv2d\).*\(_WSConv2dStep has a forward of its own\)"),
        (nn.Sequential(layers.Linear(4, 4), LIFNode(),
                       nn.utils.parametrizations.weight_norm(nn.Linear(4, 4))),
         ChannelPair("0", ("1",), "2"), r"'2' \(ParametrizedLinear\).*parametrized"),
    ],
)  # fmt: skip
def test_a_pair_that_cannot_be_split_is_refused_naming_the_module(model, pair, message):
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ConfigurationError, match=message):
        parallelize_channels(model, pairs=[pair])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # unchanged


def test_layers_with_a_computation_of_their_own_are_left_out_of_the_plan():
    """Weight-standardised and event-driven layers (the zoo's event_driven_* nets): a
    split layer would compute their plain op (and drop their gains): no pair."""
    from spikeflow.models import create_model

    ws = nn.Sequential(layers.WSLinear(4, 6), LIFNode(), layers.WSLinear(6, 2))
    assert channel_plan(ws, 2) == []
    assert channel_plan(create_model("event_driven_dvsgesture"), 2) == []
    plain = nn.Sequential(layers.Linear(4, 6), LIFNode(), layers.Linear(6, 2))
    assert channel_plan(plain, 2) == [ChannelPair("0", ("1",), "2")]


def test_a_model_without_pairs_and_a_neuron_with_a_foreign_shape_are_refused():
    with pytest.raises(ConfigurationError, match="found no column/row pair in Sequential"):
        parallelize_channels(nn.Sequential(layers.Linear(4, 4), nn.LayerNorm(4)))
    odd = nn.Sequential(layers.Linear(4, 6), _plif(3, 2), layers.Linear(6, 2))
    with pytest.raises(ConfigurationError, match=r"cannot shard 1\.w of shape \(3, 2\)"):
        parallelize_channels(odd, pairs=[ChannelPair("0", ("1",), "2")])


def test_a_module_used_twice_is_planned_in_run_order_and_refused_in_a_pair():
    # a softmax over the features used twice: its second use (between "2" and "4")
    # mixes the channels, so no pair may run across it
    softmax = nn.Softmax(dim=-1)
    net = nn.Sequential(layers.Linear(4, 4), softmax, layers.Linear(4, 6), softmax,
                        layers.Linear(6, 2))  # fmt: skip
    assert channel_plan(net, world_size=2) == []
    # a scalar PLIF w used inside a pair and outside (whole): its gradient hook would sum
    # the outside use over the processes; a per-channel one's slice would not fit it
    for neuron in (ParametricLIFNode(), _plif(6)):
        net = nn.Sequential(layers.Linear(4, 6), neuron, layers.Linear(6, 6), neuron,
                            layers.Linear(6, 2))  # fmt: skip
        before = copy.deepcopy(net.state_dict())
        with pytest.raises(ConfigurationError, match=r"cannot shard '1' \(ParametricLIFNode\): "
                           r"its 'w' is also used as '3\.w'"):  # fmt: skip
            parallelize_channels(net)
        assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    # a weight tied between a row layer and a layer outside the pairs
    net = nn.Sequential(layers.Linear(4, 6), LIFNode(), layers.Linear(6, 6), LIFNode(),
                        layers.Linear(6, 6))  # fmt: skip
    net[4].weight = net[2].weight
    with pytest.raises(ConfigurationError, match=r"'2' \(Linear\): its 'weight' is also used"):
        parallelize_channels(net)


def test_uneven_channels_are_refused_naming_the_layer():
    from spikeflow.training.tensor_parallel_layers import shard_range

    with pytest.raises(ConfigurationError, match="conv1: 6 channels do not split evenly over 4"):
        shard_range(6, 0, 4, "conv1")


def test_a_state_with_missing_or_foreign_keys_is_refused_naming_them():
    net = nn.Sequential(layers.Linear(4, 6), LIFNode(), layers.Linear(6, 2))
    shards = parallelize_channels(net)
    state = shards.full_state_dict(net)
    state["9.weight"] = state.pop("0.bias")
    with pytest.raises(ConfigurationError, match=r"missing from the state: \['0\.bias'\]; "
                       r"keys the model does not have: \['9\.weight'\]"):  # fmt: skip
        shards.load_full_state_dict(net, state)
