"""Early exit with NeuroBench's metrics and under autocast: the metrics of the steps
actually run against per-sample runs of each sample's steps alone (a plain loop); a
stepped batch that exits nothing equals the full run's metrics; ``spikeflow eval
--early-exit --neurobench`` on a trained run; an ``--amp`` run's early exit runs under
its autocast."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from spikeflow import functional, layers
from spikeflow.energy import NeuroBenchCounter
from spikeflow.errors import ConfigurationError
from spikeflow.inference import ExitRule, early_exit
from spikeflow.neurons import LIFNode
from spikeflow.training.distributed import DistContext
from spikeflow.training.early_exit_eval import evaluate_early_exit
from spikeflow.training.loop import autocast_context
from test_inference_early_exit import calibrate, reference_exits, spread_threshold
from train_runs import tiny


def _net() -> nn.Module:
    """Two LIF layers between linear layers, scaled so that every layer fires."""
    torch.manual_seed(0)
    net = nn.Sequential(
        layers.Flatten(), layers.Linear(64, 48), LIFNode(tau=2.0),
        layers.Linear(48, 32), LIFNode(tau=2.0), layers.Linear(32, 10),
    )  # fmt: skip
    calibrate(net, _input())
    functional.reset_net(net)
    return net.eval()


def _input(steps: int = 6, batch: int = 12) -> torch.Tensor:
    """Real values with zeros (NeuroBench's MACs skip them) for the first layer."""
    g = torch.Generator().manual_seed(1)
    x = 3 * torch.rand(steps, batch, 1, 8, 8, generator=g)
    return x * (torch.rand(x.shape, generator=g) < 0.6)


def _per_sample_reference(net: nn.Module, x: torch.Tensor, steps: list[int]) -> dict:
    """Each sample run alone for its own steps, counted by a plain NeuroBenchCounter:
    the workload summed over the samples, and the zeros and entries of the activations."""
    sums = dict.fromkeys(("macs", "acs", "dense", "membrane", "zero", "total"), 0)
    by_layer: dict[str, list[int]] = {}
    for b, s in enumerate(steps):
        functional.reset_net(net)
        with torch.no_grad(), NeuroBenchCounter(net) as ref:
            net(x[:s, b : b + 1])
        sums["macs"] += ref.macs
        sums["acs"] += ref.acs
        sums["dense"] += ref.dense
        sums["membrane"] += sum(ref.membrane.values())
        for name, total in ref.layer_total.items():
            zero = total - ref.layer_nonzero[name]
            sums["zero"] += zero
            sums["total"] += total
            into = by_layer.setdefault(name, [0, 0])
            into[0] += zero
            into[1] += total
    sums["by_layer"] = {name: z / t for name, (z, t) in by_layer.items()}
    return sums


@pytest.mark.parametrize("accumulate", ["mean", "sum"])
def test_neurobench_of_the_steps_run_equals_per_sample_runs(accumulate):
    net, x = _net(), _input()
    with torch.no_grad():
        functional.reset_net(net)
        out_seq = net(x)
    threshold = spread_threshold(out_seq, "confidence", accumulate)
    rule = ExitRule("confidence", threshold, accumulate)
    steps, predictions, _ = reference_exits(out_seq, rule)
    assert len(set(steps)) >= 3, "the samples should exit at different steps"
    labels = torch.arange(x.shape[1]) % 10
    with NeuroBenchCounter(net) as nb:
        with nb.stepped(x.shape[1]):
            result = early_exit(net, x, rule, on_select=nb.select)
        nb.score(result.predictions, labels)
    assert result.exit_steps.tolist() == steps
    got = nb.results()
    ref = _per_sample_reference(net, x, steps)
    batch = x.shape[1]
    assert got.samples == batch
    assert got.effective_macs == ref["macs"] / batch and ref["macs"] > 0
    assert got.effective_acs == ref["acs"] / batch and ref["acs"] > 0
    assert got.dense == ref["dense"] / batch
    assert got.membrane_updates == ref["membrane"] / batch
    # one batch: its zeros over its entries, all the steps the samples ran
    assert got.activation_sparsity == pytest.approx(ref["zero"] / ref["total"], abs=1e-12)
    assert got.activation_sparsity_by_layer == pytest.approx(ref["by_layer"], abs=1e-12)
    expected_acc = sum(p == int(y) for p, y in zip(predictions, labels, strict=True)) / batch
    assert got.classification_accuracy == expected_acc


def test_a_stepped_batch_without_exits_equals_the_full_run():
    """No sample exits early (threshold 1 on the confidence is never reached before T):
    the steps one at a time count what the whole run counts."""
    net, x = _net(), _input(steps=5, batch=7)
    with NeuroBenchCounter(net) as full, torch.no_grad():
        functional.reset_net(net)
        net(x)
    with NeuroBenchCounter(net) as nb, nb.stepped(x.shape[1]):
        result = early_exit(net, x, ExitRule("confidence", 1.0), on_select=nb.select)
    assert result.exit_steps.tolist() == [5] * 7
    a, b = full.results(), nb.results()
    for field in ("samples", "effective_macs", "effective_acs", "dense", "membrane_updates"):
        assert getattr(a, field) == getattr(b, field), field
    assert a.activation_sparsity == pytest.approx(b.activation_sparsity, abs=1e-12)


def test_stepped_misuse_is_named():
    net = _net()
    nb = NeuroBenchCounter(net)
    with pytest.raises(ConfigurationError, match="batch must be a positive integer, got 0"):
        with nb.stepped(0):
            pass
    with pytest.raises(ConfigurationError, match="only inside stepped"):
        nb.select(torch.tensor([0]))
    with pytest.raises(ConfigurationError, match="already open"):
        with nb.stepped(2), nb.stepped(2):
            pass


def test_eval_early_exit_with_neurobench(tmp_path, capsys):
    """``spikeflow eval --early-exit ... --neurobench``: per threshold, NeuroBench's
    metrics of the steps run; a threshold never reached runs every step, and its
    metrics are then those of the full evaluation (same batches)."""
    from spikeflow.cli import main
    from spikeflow.training import Trainer

    Trainer(tiny(tmp_path, "run", T=4), log=None).fit()
    out = tmp_path / "eval.json"
    assert main(["eval", "--checkpoint", str(tmp_path / "run" / "last.pt"), "--no-progress",
                 "--neurobench", "--early-exit", "confidence:0.11,1", "--json",
                 str(out)]) == 0  # fmt: skip
    text = capsys.readouterr().out
    result = json.loads(out.read_text())
    early, never = result["early_exit"]
    full = result["neurobench"]
    assert never["mean_steps"] == 4 and early["mean_steps"] < 4
    for key in ("MembraneUpdates", "SynapticOperations", "ActivationSparsityByLayer"):
        assert never["neurobench"][key] == pytest.approx(full[key], rel=1e-12), key
    assert never["neurobench"]["ActivationSparsity"] == pytest.approx(
        full["ActivationSparsity"], abs=1e-12
    )
    for point in (early, never):
        assert point["neurobench"]["ClassificationAccuracy"] == point["accuracy"]
    # fewer steps: fewer membrane updates and synaptic operations per sample
    assert early["neurobench"]["MembraneUpdates"] < full["MembraneUpdates"]
    ops, full_ops = early["neurobench"]["SynapticOperations"], full["SynapticOperations"]
    assert ops["Dense"] == pytest.approx(full_ops["Dense"] * early["mean_steps"] / 4)
    assert "NeuroBench's workload metrics of the steps actually run" in text


def test_early_exit_runs_under_the_runs_autocast():
    """``amp="bf16"``: the layers compute in bfloat16, as the full evaluation's, and
    the exits are those of the autocast run's outputs (accumulated in float32)."""
    net, x = _net(), _input(steps=4, batch=10)
    dtypes = set()
    net[1].register_forward_hook(lambda m, a, out: dtypes.add(out.dtype))
    with torch.no_grad(), autocast_context(torch.device("cpu"), "bf16"):
        functional.reset_net(net)
        out_seq = net(x).float()
    rule = ExitRule("confidence", spread_threshold(out_seq, "confidence"))
    steps, predictions, outputs = reference_exits(out_seq, rule)
    with autocast_context(torch.device("cpu"), "bf16"):
        result = early_exit(net, x, rule)
    # accumulated in float32, as the reference (bfloat16 sums would be off by ~1e-2)
    assert result.outputs.dtype == torch.float32
    torch.testing.assert_close(result.outputs, outputs, rtol=1e-6, atol=1e-6)
    labels = torch.tensor(predictions)  # every prediction as the reference's: accuracy 1
    dataset = torch.utils.data.TensorDataset(x.transpose(0, 1), labels)
    dtypes.clear()
    [entry] = evaluate_early_exit(
        net, dataset, [rule], T=4, static=False, batch_size=10,
        ctx=DistContext(device=torch.device("cpu")), amp="bf16",
    )  # fmt: skip
    assert dtypes == {torch.bfloat16}
    assert entry["accuracy"] == 1.0
    assert entry["exits"] == [steps.count(t) for t in range(1, 5)]


def test_eval_of_an_amp_run_says_so(tmp_path, capsys):
    from spikeflow.cli import main
    from spikeflow.training import Trainer

    Trainer(tiny(tmp_path, "run", epochs=1, amp="bf16"), log=None).fit()
    out = tmp_path / "eval.json"
    assert main(["eval", "--checkpoint", str(tmp_path / "run"), "--no-progress",
                 "--early-exit", "confidence:1", "--json", str(out)]) == 0  # fmt: skip
    text = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["amp"] == "bf16"
    assert "under bf16 autocast, as the run trained (--amp bf16)" in text
    # every step run: the early exit's predictions are the full evaluation's
    assert result["early_exit"][0]["accuracy"] == result["test_acc"]


@pytest.mark.parametrize(("operations", "neurobench", "named"), [
    (True, False, "operations would"), (False, True, "neurobench would"),
    (True, True, "operations and neurobench would"),
])  # fmt: skip
def test_counts_in_several_processes_are_refused(operations, neurobench, named):
    """Rank 1 of 2: the accuracy and steps are reduced over the processes, the counters
    are not, so their per-sample numbers would be one process's: refused by name
    (before any process group is needed)."""
    net, x = _net(), _input(steps=4, batch=4)
    dataset = torch.utils.data.TensorDataset(x.transpose(0, 1), torch.zeros(4, dtype=torch.long))
    ctx = DistContext(rank=1, world_size=2, device=torch.device("cpu"))
    with pytest.raises(ConfigurationError, match=f"{named} count this process's samples only"):
        evaluate_early_exit(net, dataset, [ExitRule("confidence", 0.5)], T=4, static=False,
                            batch_size=2, ctx=ctx, operations=operations,
                            neurobench=neurobench)  # fmt: skip


def test_a_float16_overflow_is_named():
    """Under float16 autocast (CPU autocast supports it) an output past 65504 is inf:
    the error names the float16 output and its range; in float32 the same model runs."""
    net = _net()
    with torch.no_grad():
        net[5].weight.mul_(1e5)  # outputs of order 1e5
    x = _input(steps=3, batch=4)
    with pytest.raises(ConfigurationError, match=r"it is torch.float16, whose largest "
                       r"value is 65504: an output past it is inf \(run in float32, or "
                       r"bfloat16\)"):  # fmt: skip
        with autocast_context(torch.device("cpu"), "fp16"):
            early_exit(net, x, ExitRule("confidence", 0.5))
    result = early_exit(net, x, ExitRule("confidence", 0.5))
    assert result.outputs.abs().max() > 65504 and result.outputs.isfinite().all()


def test_thresholds_in_one_pass_count_as_alone():
    """Several thresholds in one ``evaluate_early_exit``: each threshold's operations
    and NeuroBench metrics equal those of a call with that threshold alone (no counter
    state carried from one threshold to the next); the all-at-step-1 and never-exiting
    thresholds included, in batches of 5, 5 and 2."""
    net, x = _net(), _input(steps=6, batch=12)
    dataset = torch.utils.data.TensorDataset(x.transpose(0, 1), torch.arange(12) % 10)
    ctx = DistContext(device=torch.device("cpu"))
    rules = [ExitRule("confidence", t) for t in (0.0, 0.15, 1.0)]
    kwargs = dict(T=6, static=False, batch_size=5, ctx=ctx, operations=True, neurobench=True)
    together = evaluate_early_exit(net, dataset, rules, **kwargs)
    assert [e["mean_steps"] for e in together][::2] == [1.0, 6.0]
    for rule, entry in zip(rules, together, strict=True):
        [alone] = evaluate_early_exit(net, dataset, [rule], **kwargs)
        assert entry["neurobench"] == alone["neurobench"]
        assert entry["operations"] == alone["operations"]
    assert together[0]["neurobench"]["MembraneUpdates"] < together[2]["neurobench"][
        "MembraneUpdates"]  # fmt: skip


@pytest.mark.parametrize("accumulate", ["mean", "sum"])
def test_exits_read_off_a_bfloat16_run_equal_the_early_exit(accumulate):
    """``exit_from_outputs`` (and ``ThresholdSweep``) on the bfloat16 outputs of a run
    under autocast accumulate in float32, as ``early_exit`` under the same autocast
    does: the same exits, outputs and scores (in bfloat16 the running sums drift by
    ~2e-2 and, summed, some exits move)."""
    from spikeflow.inference import ThresholdSweep, exit_from_outputs

    net, x = _net(), _input(steps=6, batch=40)
    with torch.no_grad(), autocast_context(torch.device("cpu"), "bf16"):
        functional.reset_net(net)
        out_seq = net(x)
    assert out_seq.dtype == torch.bfloat16
    middle = spread_threshold(out_seq.float(), "confidence", accumulate)
    rules = [ExitRule("confidence", min(0.99, middle * f), accumulate) for f in (0.9, 1, 1.1)]
    for rule in rules:
        with autocast_context(torch.device("cpu"), "bf16"):
            stepped = early_exit(net, x, rule)
        read = exit_from_outputs(out_seq, rule)
        assert read.outputs.dtype == torch.float32
        assert torch.equal(read.exit_steps, stepped.exit_steps)
        torch.testing.assert_close(read.outputs, stepped.outputs, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(read.scores, stepped.scores, rtol=1e-6, atol=1e-6)
    labels = out_seq.float().mean(0).argmax(-1)
    sweep = ThresholdSweep("confidence", [r.threshold for r in rules], accumulate)
    sweep.update(out_seq, labels)
    for point, rule in zip(sweep.points(), rules, strict=True):
        expected = exit_from_outputs(out_seq.float(), rule)
        assert point.mean_steps == expected.mean_steps
