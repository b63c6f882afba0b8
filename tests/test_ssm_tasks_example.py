"""examples/ssm_tasks.py (snnTorch's SSM-neuron tasks): the metrics by hand, each
network learns a fixed batch, and a seeded run is reproducible. The accuracies of full
runs are in docs/ssm.md."""

from __future__ import annotations

import math

import torch

from conftest import load_example
from spikeflow.data.datasets.sequence_tasks import (
    AssociativeRecall,
    CopyTask,
    collate_sequence_task,
)


def test_metrics_read_the_masked_steps_only():
    module = load_example("ssm_tasks")
    target = torch.zeros(3, 2, 2)  # [T, B, W]
    mask = torch.tensor([[False, False], [True, True], [True, False]])
    logits = torch.full((3, 2, 2), -1.0)  # predicts 0 everywhere: right
    logits[0] = 1.0  # wrong, but unmasked: not counted
    logits[1, 0, 0] = logits[2, 0, 1] = 1.0  # two wrong bits, both of sequence 0
    logits[2, 1] = 1.0  # wrong, but sequence 1's step 2 is padding
    m = module.masked_metrics(logits, target, mask)
    assert m["bit_error"] == 2 / 6 and m["wrong_bits_per_sequence"] == 1.0
    assert m["sequence_accuracy"] == 0.5
    # the BCE of a logit z: -log2 sigmoid(z) for a 1, -log2 sigmoid(-z) for a 0
    wrong_nats, right_nats = -math.log(1 / (1 + math.e)), -math.log(1 / (1 + math.e**-1))
    torch.testing.assert_close(m["loss"].item(), (2 * wrong_nats + 4 * right_nats) / 6)
    # the NTM paper's cost: summed over the sequences' 6 masked bits, in bits, per sequence
    cost_bits = (2 * wrong_nats + 4 * right_nats) / math.log(2) / 2
    torch.testing.assert_close(m["cost_bits_per_sequence"].item(), cost_bits)


def test_each_network_learns_a_fixed_batch():
    module = load_example("ssm_tasks")
    tasks = {"copy": CopyTask(8, width=4, max_length=4, seed=0),
             "recall": AssociativeRecall(8, width=4, max_pairs=3, seed=0)}  # fmt: skip
    for task, data in tasks.items():
        x, target, mask = collate_sequence_task([data[i] for i in range(8)])
        for kind in module.NEURONS + module.BASELINES:
            torch.manual_seed(0)
            net = module.TaskNet(kind, 4, 16, 2 if task == "copy" else 1)
            assert net(x).shape == target.shape
            optimizer = torch.optim.AdamW(net.parameters(), lr=3e-2)
            losses = []
            for _ in range(40):
                loss = module.masked_metrics(net(x), target, mask)["loss"]
                losses.append(loss.item())
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            assert losses[-1] < 0.85 * losses[0], (task, kind, losses[0], losses[-1])


def test_a_seeded_run_is_reproducible(capsys):
    module = load_example("ssm_tasks")
    tiny = ["--steps", "4", "--eval-every", "2", "--hidden", "9", "--test-samples", "16",
            "--batch-size", "4", "--max-length", "3", "--max-pairs", "3",
            "--width", "4"]  # fmt: skip
    first = module.main(tiny)
    again = module.main(tiny)
    assert [r["curve"] for r in first] == [r["curve"] for r in again]
    assert [(r["task"], r["neuron"]) for r in first] == [
        (t, n) for t in module.TASKS for n in module.NEURONS
    ]
    assert [p["step"] for p in first[0]["curve"]] == [0, 2, 4]
    assert all(r["curve"][-1]["loss"] != r["curve"][0]["loss"] for r in first)  # it trained
    other = module.main([*tiny, "--seed", "1", "--task", "copy", "--neurons", "lif"])
    assert other[0]["curve"] != first[0]["curve"]
    out = capsys.readouterr().out
    assert "copy   lif         step     2" in out and "cost/seq" in out


def test_end_padding_leaves_each_sample_unchanged():
    module = load_example("ssm_tasks")
    data = AssociativeRecall(6, width=4, max_pairs=5, seed=1)
    x, _, _ = collate_sequence_task([data[i] for i in range(6)])
    for kind in module.NEURONS + module.BASELINES:
        torch.manual_seed(0)
        net = module.TaskNet(kind, 4, 16, 1, threshold=0.1).double()
        batch = net(x.double())
        for i in range(6):
            alone = net(data[i][0].double().unsqueeze(1))[:, 0]
            torch.testing.assert_close(batch[: alone.shape[0], i], alone)


def test_the_voting_floor_by_hand():
    module = load_example("ssm_tasks")
    # N = 3 values 101, 100, 001 → majority 101; N = 2 values 11, 01 → 1 then a tie
    three = AssociativeRecall(1, width=3, min_pairs=3, max_pairs=3, seed=0)[0]
    x, target, mask = (t.clone() for t in three)
    x[1:6:2, :3] = torch.tensor([[1.0, 0, 1], [1, 0, 0], [0, 0, 1]])
    target[-1] = torch.tensor([1.0, 0, 0])  # the query's value: majority wrong on bit 2
    two = AssociativeRecall(1, width=2, min_pairs=2, max_pairs=2, seed=0)[0]
    y, y_target, y_mask = (t.clone() for t in two)
    y[1:4:2, :2] = torch.tensor([[1.0, 1], [0, 1]])
    y_target[-1] = torch.tensor([0.0, 1])  # bit 0 a tie: half an error
    batches = [
        collate_sequence_task([(x, target, mask)]),
        collate_sequence_task([(y, y_target, y_mask)]),
    ]
    assert module.voting_bit_error(batches) == (1 + 0.5) / (3 + 2)
    # on generated data it approaches the hand-derived mean of 1/4, 1/4, 5/16, 5/16, 11/32
    for pairs, floor in ((2, 1 / 4), (3, 1 / 4), (4, 5 / 16), (6, 11 / 32)):
        data = AssociativeRecall(400, width=8, min_pairs=pairs, max_pairs=pairs, seed=pairs)
        batch = collate_sequence_task([data[i] for i in range(400)])
        assert abs(module.voting_bit_error([batch]) - floor) < 0.03, pairs  # 400 × 8 bits
