"""examples/detect_nmnist.py runs end to end on the real N-MNIST subset (a tiny run: the
learning itself is measured in docs/detection.md, too long for the suite)."""

from __future__ import annotations

from conftest import load_example, require_shared_data


def test_the_detection_example_trains_and_reports_coco_and_voc(capsys):
    import torch

    threads = torch.get_num_threads()
    root = require_shared_data("nmnist-small")
    module = load_example("detect_nmnist")
    result = module.main(["--root", str(root), "--train-samples", "4", "--test-samples", "2",
                          "--epochs", "1", "--batch-size", "4", "--test-batch-size", "4",
                          "--widths", "4", "8", "--T", "1",
                          # not the default 1: under xdist a worker may run on 1 already
                          "--threads", str(threads + 1)])  # fmt: skip
    assert torch.get_num_threads() == threads  # --threads does not leak out of main()
    out = capsys.readouterr().out
    for line in ("oracle boxes, no class", "untrained network", "trained network", "epoch 1"):
        assert line in out
    assert {"map", "map_50", "map_voc50", "mar_100"} <= set(result)
    assert all(0.0 <= result[k] <= 1.0 for k in ("map", "map_50", "map_voc50", "mar_100"))
