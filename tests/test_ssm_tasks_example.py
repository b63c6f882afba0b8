"""examples/ssm_tasks.py (snnTorch's SSM-neuron tasks): the metrics by hand, each
network learns a fixed batch, and a seeded run is reproducible. The accuracies of full
runs are in docs/ssm.md."""

from __future__ import annotations

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
    assert m["bit_error"] == 2 / 6 and m["bits_per_sequence"] == 1.0
    assert m["sequence_accuracy"] == 0.5
    softplus = (
        torch.nn.functional.softplus(torch.tensor(1.0)),
        torch.nn.functional.softplus(torch.tensor(-1.0)),
    )
    torch.testing.assert_close(m["loss"], (2 * softplus[0] + 4 * softplus[1]) / 6)


def test_each_network_learns_a_fixed_batch():
    module = load_example("ssm_tasks")
    tasks = {"copy": CopyTask(8, width=4, max_length=4, seed=0),
             "recall": AssociativeRecall(8, width=4, max_pairs=3, seed=0)}  # fmt: skip
    for task, data in tasks.items():
        x, target, mask = collate_sequence_task([data[i] for i in range(8)])
        for kind in module.NEURONS:
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
    assert "copy   lif         step     2" in out and "bits/seq" in out
