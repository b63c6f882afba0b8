"""NeuroMC's estimate on real networks (spikeflow.energy.neuromc): pooling by hand and
its windows against a brute-force count, dropout, the zoo's models (their MACs against
torch's FlopCounterMode), the input layout, what the run leaves as it was, and the
errors for what it cannot price."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from spikeflow import layers, neurons
from spikeflow.energy import neuromc_energy_report
from spikeflow.energy.neuromc_pooling import POOLS, pool_windows
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.functional import reset_net

torch.set_num_threads(1)
PJ = 1e-12
REG1, REG16 = 0.00901 / 7.1 * 2, 0.14416 / 7.1 * 2  # pJ per register access


def _spikes(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=g) < 0.3).float()


# ---------------------------------------------------------------- pooling


@pytest.mark.parametrize(
    ("pool", "shape"),
    [
        (nn.MaxPool2d(3, 2, padding=1), (2, 3, 7, 6)),
        (nn.MaxPool2d(2, ceil_mode=True), (1, 2, 5, 7)),
        (nn.MaxPool2d(3, 1, padding=1, dilation=2), (1, 1, 8, 9)),
        (nn.AvgPool2d(3, 2, padding=1), (2, 2, 7, 7)),
        (nn.AvgPool2d((2, 3), (1, 2), padding=(1, 1), ceil_mode=True), (1, 1, 6, 9)),
        (nn.AvgPool1d(4, 3, padding=2), (2, 3, 11)),
        (nn.AdaptiveAvgPool2d((2, 3)), (1, 2, 5, 7)),
        (nn.AdaptiveMaxPool1d(4), (2, 1, 10)),
        (layers.MaxPool2d(2), (3, 2, 1, 4, 6)),
        (layers.VotingLayer(3), (2, 4, 12)),
    ],
)
def test_pool_windows_equal_a_brute_force_count(pool, shape):
    """Σ over outputs of their windows' real inputs: each input position, alone at 1
    among zeros, reaches the outputs whose window holds it."""
    x = torch.rand(*shape)
    pooled = 2 if isinstance(pool, (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)) else 1
    plane = shape[len(shape) - pooled :]
    probes = torch.eye(torch.Size(plane).numel()).reshape(-1, *plane)
    if isinstance(pool, layers.MaxPool2d):
        probes = probes[None, :, None]  # [1, P, 1, H, W]: one step of P images
    reached = int((pool(probes) != 0).sum())
    planes = torch.Size(shape[: len(shape) - pooled]).numel()
    assert pool_windows(pool, x, pool(x)) == reached * planes


def test_max_pool_on_spikes_by_hand():
    """conv 1→2 + LIF + MaxPool2d(2) over [2, 1, 1, 4, 4] spikes: 16 outputs of 4-input
    windows; forward 48 comparisons, 64 spike bits read and 16 written at the 1-bit
    register; backward 16 muxes, 16 gradients read and 64 written (16 bits)."""
    net = nn.Sequential(layers.Conv2d(1, 2, 3, padding=1, bias=False), neurons.LIFNode(),
                        layers.MaxPool2d(2), layers.Flatten(), layers.Linear(8, 3))  # fmt: skip
    report = neuromc_energy_report(net, _spikes(2, 1, 1, 4, 4), torch.rand(2, 1, 3), F.mse_loss)
    forward, backward = [w for w in report.works if w.name == "2"]
    assert (forward.op, forward.engine, forward.process) == ("maxpool.forward", "fp_soma",
                                                             "with_pool")  # fmt: skip
    assert forward.priced.ops == {"mux": 0, "add": 0, "mul": 0, "comp": 48, "sqrt": 0}
    assert forward.priced.bits == {("reg", "rh2l"): 64, ("reg", "wl2h"): 16}
    assert forward.total == pytest.approx((48 * 0.056 + 80 * REG1) * PJ, rel=1e-12)
    assert forward.dims == {"B": 1, "T": 2, "C": 2, "K": 2, "OY": 2, "OX": 2, "FY": 4, "FX": 1}
    assert (backward.op, backward.engine) == ("maxpool.backward", "bp_grad")
    assert backward.priced.ops == {"mux": 16, "add": 0, "mul": 0, "comp": 0, "sqrt": 0}
    assert backward.priced.bits == {("reg", "rh2l"): 16 * 16, ("reg", "wl2h"): 64 * 16}
    assert backward.total == pytest.approx((16 * 0.548 / 16 + 80 * REG16) * PJ, rel=1e-12)
    # the next layer still reads 1-bit spikes
    assert [w.engine for w in report.works if w.op == "linear.forward"] == ["fp_soma"]


def test_adaptive_avg_pool_on_values_by_hand():
    """BN + AdaptiveAvgPool2d((2, 3)) over [1, 2, 3, 5, 7] values: windows of 3 rows
    and 3 columns, Σw = 6·9 per plane, 6 planes: 324 inputs, 36 outputs; forward 288
    additions and 36 multiplications on 16-bit values; backward 36 multiplications."""
    net = nn.Sequential(layers.BatchNorm2d(3), layers.AdaptiveAvgPool2d((2, 3)), neurons.LIFNode())
    report = neuromc_energy_report(net, torch.rand(1, 2, 3, 5, 7), torch.rand(1, 2, 3, 2, 3),
                                   F.mse_loss)  # fmt: skip
    forward, backward = [w for w in report.works if w.name == "1"]
    assert (forward.op, forward.engine) == ("avgpool.forward", "ann_fe")
    assert forward.priced.ops == {"mux": 0, "add": 288, "mul": 36, "comp": 0, "sqrt": 0}
    assert forward.priced.bits == {("reg", "rh2l"): 324 * 16, ("reg", "wl2h"): 36 * 16}
    expected = 288 * 0.548 + 36 * 0.812 + (324 + 36) * REG16
    assert forward.total == pytest.approx(expected * PJ, rel=1e-12)
    assert (backward.op, backward.engine) == ("avgpool.backward", "ann_be")
    assert backward.priced.ops == {"mux": 0, "add": 0, "mul": 36, "comp": 0, "sqrt": 0}
    assert backward.total == pytest.approx((36 * 0.812 + (36 + 210) * REG16) * PJ, rel=1e-12)


def test_pool_on_the_data_has_no_backward():
    """A pool fed the data (no gradient needed) has a forward alone."""
    net = nn.Sequential(layers.AvgPool2d(2), layers.Conv2d(1, 2, 3), neurons.LIFNode())
    report = neuromc_energy_report(net, torch.rand(2, 1, 1, 8, 8), torch.rand(2, 1, 2, 2, 2),
                                   F.mse_loss)  # fmt: skip
    assert [w.phase for w in report.works if w.name == "0"] == ["forward"]


class _PoolCall(nn.Module):
    """A module whose own forward pools its input with ``call``, then a LIF."""

    def __init__(self, call) -> None:
        super().__init__()
        self.call, self.spike = call, neurons.LIFNode()

    def forward(self, x):
        out = self.call(x.flatten(0, 1))
        out = out[0] if isinstance(out, tuple) else out
        return self.spike(out.unflatten(0, x.shape[:2]))


_POOL_CALLS = [
    (lambda x: F.max_pool2d(x, 3, stride=1, padding=1), layers.MaxPool2d(3, 1, 1)),
    (lambda x: F.max_pool2d(x, 2, 2, 0, 1, True, return_indices=True),
     layers.MaxPool2d(2, ceil_mode=True)),
    (lambda x: torch.max_pool2d(x, [3], [], [1], [2]), layers.MaxPool2d(3, 3, 1, 2)),
    (lambda x: F.avg_pool2d(x, 2, padding=1, count_include_pad=False),
     layers.AvgPool2d(2, padding=1, count_include_pad=False)),
    (lambda x: F.adaptive_avg_pool2d(x, (2, 3)), layers.AdaptiveAvgPool2d((2, 3))),
    (lambda x: F.adaptive_max_pool1d(x.flatten(2), 4), None),
]  # fmt: skip


@pytest.mark.parametrize(("call", "module"), _POOL_CALLS)
def test_a_pooling_function_is_priced_as_its_module(call, module):
    """A pooling function a module runs in its own forward (the Spike-driven
    Transformer's DVS erode) is priced as the pooling module with the same arguments,
    forward and backward, under the calling module's name (it was left out)."""
    first = [layers.Conv2d(2, 4, 3, padding=1), neurons.LIFNode()]
    net = nn.Sequential(*first, _PoolCall(call))
    x = _spikes(2, 3, 2, 7, 7)
    with torch.no_grad():
        shape = net(x).shape
    reset_net(net)
    y = torch.rand(shape)
    report = neuromc_energy_report(net, x, y, F.mse_loss)
    pools = [w for w in report.works if "pool" in w.op]
    kind = pools[0].op.split(".")[0]
    assert [(w.name, w.op) for w in pools] == [("2", f"{kind}.forward"), ("2", f"{kind}.backward")]
    assert pools[0].engine == "fp_soma" and pools[0].priced.ops != pools[1].priced.ops
    if module is None:  # the 1-d adaptive max: 7·7 = 49 inputs into 4 windows of 13
        assert pools[0].priced.ops["comp"] == 2 * 3 * 4 * (4 * 13 - 4)
        return
    unflat = _PoolCall(lambda z: z)  # the same LIF after the pooling module
    reference = nn.Sequential(*first, module, unflat)
    theirs = neuromc_energy_report(reference, x, y, F.mse_loss)
    expected = [w for w in theirs.works if "pool" in w.op]
    assert [(w.op, w.engine, w.priced.ops, w.priced.bits) for w in pools] == [
        (w.op, w.engine, w.priced.ops, w.priced.bits) for w in expected
    ]  # (the loop dims: the multi-step module's B, T are the function's B·T rows)
    assert report.total == pytest.approx(theirs.total, rel=1e-12)


def test_dropout_is_free_and_keeps_spikes():
    """Dropout in training scales the kept spikes by 1/(1 − p): free, and the next
    layer still reads 1-bit spikes, so the step costs what it costs without it."""

    def net(drop: bool) -> nn.Sequential:
        torch.manual_seed(0)
        first = layers.Dropout(0.5) if drop else nn.Identity()
        second = nn.Dropout(0.3) if drop else nn.Identity()
        model = nn.Sequential(layers.Linear(20, 16), neurons.LIFNode(), first, layers.Flatten(),
                              second, layers.Linear(16, 4), neurons.LIFNode())  # fmt: skip
        nn.init.uniform_(model[0].weight, 0.0, 1.0)  # the first neurons fire
        return model

    x, y = _spikes(3, 2, 20), torch.rand(3, 2, 4)
    fired = net(True)[:3](x)  # the first dropout's output: spikes scaled to 2
    assert set(fired.unique().tolist()) == {0.0, 2.0}
    with_drop = neuromc_energy_report(net(True), x, y, F.mse_loss)
    without = neuromc_energy_report(net(False), x, y, F.mse_loss)
    assert [(w.name, w.op, w.engine) for w in with_drop.works] == [
        (w.name, w.op, w.engine) for w in without.works
    ]
    assert [w.engine for w in with_drop.works if w.op == "linear.forward"] == ["fp_soma"] * 2
    assert with_drop.total == pytest.approx(without.total, rel=1e-12)


# ---------------------------------------------------------------- the zoo's models


@pytest.mark.parametrize(
    ("name", "kwargs", "shape"),
    [
        ("plif_mnist", {}, (2, 2, 1, 28, 28)),  # max pools, dropout, voting
        ("sew_resnet18", {"num_classes": 10, "base_width": 16}, (2, 2, 3, 32, 32)),
        ("ms_resnet18", {"num_classes": 10, "base_width": 16}, (1, 2, 3, 32, 32)),
        ("spiking_vgg11_bn", {"num_classes": 10, "input_size": 32, "hidden_features": 64},
         (2, 1, 3, 32, 32)),
    ],
)  # fmt: skip
def test_zoo_models_macs_equal_torch_flop_counter(name, kwargs, shape):
    """A zoo model's training step: its forward and backward MACs equal half the FLOPs
    torch's FlopCounterMode counts for the same forward and backward; every pooling
    module is priced."""
    from spikeflow.models import create_model

    torch.manual_seed(0)
    model = create_model(name, **kwargs)
    x, y = _spikes(*shape), torch.randint(0, 10, (shape[1],))

    def loss(out, y):
        return F.cross_entropy(out.mean(0), y)

    report = neuromc_energy_report(model, x, y, loss, torch.optim.SGD(model.parameters(), 0.1))
    macs = {"forward": 0, "backward": 0, "optimizer": 0}
    for work in report.works:
        macs[work.phase] += work.priced.macs
    reset_net(model)
    with FlopCounterMode(display=False) as forward:
        out = loss(model(x), y)
    with FlopCounterMode(display=False) as backward:
        out.backward()
    reset_net(model)
    assert macs == {"forward": forward.get_total_flops() // 2,
                    "backward": backward.get_total_flops() // 2, "optimizer": 0}  # fmt: skip
    pools = {n for n, m in model.named_modules() if isinstance(m, POOLS)}
    assert pools == {w.name for w in report.works if w.op.endswith("pool.forward")}
    assert report.samples == shape[1] and report.by_phase()["optimizer"] > 0


# ---------------------------------------------------------------- layout, state, errors


def _conv_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        layers.Conv2d(2, 4, 3, padding=1), layers.BatchNorm2d(4), neurons.LIFNode(),
        layers.Dropout(0.2), layers.MaxPool2d(2), layers.Flatten(),
        layers.Linear(4 * 3 * 3, 5), neurons.LIFNode(),
    )  # fmt: skip


def test_batch_first_input_and_samples():
    net, x = _conv_net(), _spikes(3, 2, 2, 6, 6)
    time_major = neuromc_energy_report(net, x)
    batch_first = neuromc_energy_report(net, x.transpose(0, 1), batch_first=True)
    assert batch_first.samples == time_major.samples == 2
    assert [(w.name, w.op, w.dims) for w in batch_first.works] == [
        (w.name, w.op, w.dims) for w in time_major.works
    ]
    assert batch_first.total == time_major.total
    assert neuromc_energy_report(net, x, samples=7).samples == 7
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ConfigurationError, match="samples must be a positive integer"):
            neuromc_energy_report(net, x, samples=bad)
    with pytest.raises(ShapeError, match=r"\[B, T, \.\.\.\]"):
        neuromc_energy_report(net, torch.zeros(4), batch_first=True)


def test_the_run_leaves_buffers_grads_optimizer_and_rng_as_they_were():
    """Batch norm's running statistics, the gradients, the optimizer's momentum buffers
    and the random number generator (dropout draws a mask) are as before; a second call
    prices the same."""
    net, x, y = _conv_net(), _spikes(3, 2, 2, 6, 6), torch.rand(3, 2, 5)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    F.mse_loss(net(x), y).backward()
    opt.step()  # momentum buffers exist; the gradients stay set
    reset_net(net)
    state, opt_state = copy.deepcopy(net.state_dict()), copy.deepcopy(opt.state_dict())
    grads = [p.grad.clone() for p in net.parameters()]
    rng = torch.get_rng_state()
    first = neuromc_energy_report(net, x, y, F.mse_loss, opt)
    second = neuromc_energy_report(net, x, y, F.mse_loss, opt)
    assert first.total == second.total
    assert torch.equal(torch.get_rng_state(), rng)
    after = net.state_dict()
    assert after.keys() == state.keys()
    assert all(torch.equal(after[k], state[k]) for k in state)
    assert all(torch.equal(p.grad, g) for p, g in zip(net.parameters(), grads, strict=True))
    assert repr(opt.state_dict()) == repr(opt_state)


def test_optimizer_prices_only_the_models_parameters_that_got_a_gradient():
    """Param groups with their own lr and weight decay; a parameter of another model
    with a stale gradient is not part of this step's update."""
    net, x, y = _conv_net(), _spikes(2, 2, 2, 6, 6), torch.rand(2, 2, 5)
    other = nn.Linear(30, 30)
    other.weight.grad = torch.ones_like(other.weight)
    params = list(net.parameters())
    groups = [{"params": params[:2], "lr": 0.01, "weight_decay": 1e-4},
              {"params": params[2:], "lr": 0.1}]  # fmt: skip
    plain = neuromc_energy_report(net, x, y, F.mse_loss, torch.optim.SGD(groups, lr=0.1))
    mixed = torch.optim.SGD([*groups, {"params": other.parameters(), "lr": 1.0}], lr=0.1)
    report = neuromc_energy_report(net, x, y, F.mse_loss, mixed)
    updates = [w for w in report.works if w.phase == "optimizer"]
    assert sum(w.dims["FX"] for w in updates) == sum(p.numel() for p in params)
    assert report.total == plain.total
    decayed = [w for w in updates if w.priced.ops["add"] == 2 * w.dims["FX"]]
    assert [w.dims["FX"] for w in decayed] == [params[0].numel() + params[1].numel()]


def test_feature_batch_norm_reads_its_channels_from_the_last_dim():
    """Spikformer's FeatureBatchNorm(D) over tokens [T, B, N, D]: D channels (D square
    roots), priced as a BatchNorm1d(D) over the same values as rows [T·B·N, D]."""
    from spikeflow.layers.attention import FeatureBatchNorm

    x = torch.rand(3, 2, 5, 16)
    tokens = neuromc_energy_report(nn.Sequential(FeatureBatchNorm(16), neurons.LIFNode()), x)
    rows = neuromc_energy_report(nn.Sequential(nn.BatchNorm1d(16), neurons.LIFNode()),
                                 x.reshape(-1, 16), samples=2)  # fmt: skip
    bn = tokens.works[0]
    assert bn.priced.ops["sqrt"] == 16 and bn.dims["C"] == 16
    assert bn.priced.ops["mul"] == 3 * x.numel() + 4 * 16
    assert bn.total == pytest.approx(rows.works[0].total, rel=1e-12)


@pytest.mark.parametrize("shape", [(3, 2, 16, 16), (4, 16, 16), (2, 3, 4, 5, 16)])
def test_feature_batch_norm_has_one_statistic_per_feature_by_hand(shape):
    """FeatureBatchNorm(D) takes each feature's mean and variance over every other entry
    (all steps together: one [rows, D] batch), so D statistics, never D·T, whatever the
    other dims (here N = D and B = D, which look like a [T, B, C, L] sequence), forward
    and backward: by hand, N entries, D channel-steps."""
    from spikeflow.layers.attention import FeatureBatchNorm

    bn = FeatureBatchNorm(16)
    x = torch.rand(*shape, requires_grad=True)
    flat = x.detach().reshape(-1, 16)  # what the module normalises: D stats over the rows
    assert torch.allclose(bn(x).detach().reshape(-1, 16),
                          F.batch_norm(flat, None, None, training=True), atol=1e-5)  # fmt: skip
    report = neuromc_energy_report(bn, x, 0.0, lambda out, y: out.square().mean())
    n, d = x.numel(), 16
    forward, backward = report.works
    assert forward.priced.ops == {"mux": 0, "add": 3 * n + 2 * d, "mul": 3 * n + 4 * d,
                                  "comp": 0, "sqrt": d}  # fmt: skip
    assert backward.priced.ops == {"mux": 0, "add": 7 * n, "mul": 3 * n + 22 * d,
                                   "comp": 0, "sqrt": 0}  # fmt: skip
    # the 2 MB SRAM's 16-bit reads: per entry n, x_hat; per channel the mean twice, the
    # variance, the square root, gamma, beta
    assert forward.priced.bits[("sram", "rh2l")] == 16 * (2 * n + 6 * d)
    assert forward.dims == {"B": n // d, "T": 1, "C": d, "K": d, "OY": 1, "OX": 1, "FY": 1,
                            "FX": 1}  # fmt: skip


def test_loss_must_be_a_scalar_with_a_gradient():
    net, x, y = _conv_net(), _spikes(2, 2, 2, 6, 6), torch.rand(2, 2, 5)
    with pytest.raises(ShapeError, match=r"scalar tensor .* got shape \(2, 2, 5\)"):
        neuromc_energy_report(net, x, y, lambda out, t: (out - t) ** 2)
    net.requires_grad_(False)
    with pytest.raises(ConfigurationError, match="no backward to price"):
        neuromc_energy_report(net, x, y, F.mse_loss)


class _Scores(nn.Module):
    """Spike Q and K and ``baddbmm`` of them in the module's own forward."""

    def __init__(self, dim: int = 8) -> None:
        super().__init__()
        self.q, self.k = layers.Linear(dim, dim), layers.Linear(dim, dim)

    def forward(self, x):
        q, k = self.q(x).flatten(0, 1), self.k(x).flatten(0, 1)
        return torch.baddbmm(torch.zeros(()), q, k.transpose(-2, -1))


def test_products_outside_the_priced_layers_are_refused():
    """A product NeuroMC has no cost for (not matmul, mm or bmm: those are priced,
    tests/test_energy_neuromc_attention.py) is named, not left out."""
    net = nn.Sequential(layers.Linear(8, 8), neurons.LIFNode(), _Scores(), neurons.LIFNode())
    with pytest.raises(ConfigurationError, match=r"2 \(_Scores\): baddbmm x1"):
        neuromc_energy_report(net, _spikes(2, 3, 5, 8))


def test_a_batch_norm_fed_a_whole_sequence_has_statistics_per_step():
    """snasnet's StepBatchNorm2d (an nn.BatchNorm2d over each step of [T, B, C, H, W])
    is priced as spikeflow's multi-step BatchNorm2d: C·T channel-steps."""
    from spikeflow.models.snasnet import StepBatchNorm2d

    x = torch.rand(3, 2, 4, 5, 5)
    step = neuromc_energy_report(nn.Sequential(StepBatchNorm2d(4), neurons.LIFNode()), x)
    multi = neuromc_energy_report(nn.Sequential(layers.BatchNorm2d(4), neurons.LIFNode()), x)
    assert step.works[0].priced.ops["sqrt"] == 4 * 3
    assert step.works[0].dims == multi.works[0].dims
    assert step.total == pytest.approx(multi.total, rel=1e-12)


class _Attend(nn.Module):
    """A projection, then torch's fused attention in the module's own forward."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = layers.Linear(8, 8)

    def forward(self, x):
        q = self.proj(x)
        return F.scaled_dot_product_attention(q, q, q)


def test_fused_attention_is_refused():
    net = nn.Sequential(layers.Linear(8, 8), neurons.LIFNode(), _Attend(), neurons.LIFNode())
    with pytest.raises(ConfigurationError, match=r"2 \(_Attend\): scaled_dot_product_attention"):
        neuromc_energy_report(net, _spikes(2, 3, 5, 8))


def test_a_compiled_model_is_priced_as_the_eager_one():
    """torch.compile(model): the run is eager (no compilation), priced the same."""
    net, x, y = _conv_net(), _spikes(2, 2, 2, 6, 6), torch.rand(2, 2, 5)
    eager = neuromc_energy_report(net, x, y, F.mse_loss)
    compiled = neuromc_energy_report(torch.compile(net), x, y, F.mse_loss)
    assert [(w.name, w.op) for w in compiled.works] == [
        (f"_orig_mod.{w.name}", w.op) for w in eager.works
    ]
    assert compiled.total == pytest.approx(eager.total, rel=1e-12)


class _Checkpointed(nn.Module):
    """A spiking layer, then two more run through ``torch.utils.checkpoint`` (or not),
    then a readout."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Sequential(layers.Linear(8, 8), neurons.LIFNode())
        self.block = nn.Sequential(layers.Linear(8, 8), neurons.LIFNode(),
                                   layers.Linear(8, 8), neurons.LIFNode())  # fmt: skip
        self.readout = layers.Linear(8, 4)
        self.reentrant: bool | None = None

    def forward(self, x):
        from torch.utils.checkpoint import checkpoint

        x = self.first(x)
        if self.reentrant is not None:
            x = checkpoint(self.block, x, use_reentrant=self.reentrant)
        else:
            x = self.block(x)
        return self.readout(x)


@pytest.mark.parametrize("reentrant", [True, False])
def test_a_checkpointed_block_is_priced_once(reentrant):
    """The backward's recomputation of a checkpointed block is not priced again: the
    same works and joules as without the checkpoint (its layers' forward was priced
    twice; a reentrant checkpoint's first run is gradient-free, so its backward hooks
    come from the recomputation)."""
    torch.manual_seed(0)
    net = _Checkpointed()
    x, y = _spikes(2, 3, 8), torch.rand(2, 3, 4)
    plain = neuromc_energy_report(net, x, y, F.mse_loss)
    net.reentrant = reentrant
    checkpointed = neuromc_energy_report(net, x, y, F.mse_loss)
    assert [(w.name, w.op) for w in checkpointed.works] == [(w.name, w.op) for w in plain.works]
    assert checkpointed.total == pytest.approx(plain.total, rel=1e-12)
    assert sum(w.name.startswith("block") for w in plain.works) == 10
