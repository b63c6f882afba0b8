"""examples/store_recall_alif.py runs end to end on a tiny store-recall task (the
accuracies of full runs are in docs/datasets.md); the ALIF and LIF networks differ."""

from __future__ import annotations

import math

from conftest import load_example


def test_the_example_runs_and_reports(capsys):
    module = load_example("store_recall_alif")
    tiny = ["--epochs", "1", "--train-samples", "32", "--test-samples", "16", "--seq-length",
            "4", "--seq-periods", "2", "--hidden", "8", "--batch-size", "16"]  # fmt: skip
    alif = module.main(tiny)
    lif = module.main([*tiny, "--neuron", "lif"])
    for result in (alif, lif):
        assert set(result) == {"loss", "accuracy", "rate"}
        assert math.isfinite(result["loss"]) and 0.0 <= result["accuracy"] <= 1.0
        assert 0.0 <= result["rate"] <= 1.0
    assert alif != lif  # beta = 0 is another network
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("alif:") and "T = 8 steps" in lines[0]
    assert lines[1].split()[:2] == ["epoch", "1"]


def test_the_loss_reads_the_recall_periods_only():
    """evaluate's loss and accuracy: the cross-entropy and hits of each recall period's
    mean readout, by hand from the network's readout."""
    import argparse

    import torch

    module = load_example("store_recall_alif")
    args = argparse.Namespace(neuron="alif", beta=1.8, tau=20.0, tau_adapt=800.0,
                              v_threshold=0.5, hidden=8, tau_out=5.0)  # fmt: skip
    torch.manual_seed(0)
    net = module.build(args, 8)
    x = (torch.rand(3, 12, 8) < 0.4).float()  # [B, T = 4 periods of 3 steps, C]
    labels = torch.zeros(3, 4, 2, dtype=torch.uint8)
    labels[0, 2, 1] = labels[1, 3, 0] = labels[2, 2, 0] = 1
    loss, accuracy, _ = module.evaluate(net, x, labels, 3)
    means = net(x.transpose(0, 1)).view(4, 3, 3, 2).mean(1)  # [P, B, 2]
    picked = torch.stack([means[2, 0], means[3, 1], means[2, 2]])
    target = torch.tensor([1, 0, 0])
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(picked, target))
    assert accuracy == (picked.argmax(-1) == target).float().mean()
