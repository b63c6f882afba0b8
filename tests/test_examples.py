"""The README's main job (examples/train_digits.py, = `spikeflow train` with no
arguments) reaches the accuracy the issue asks for, as the README runs it."""

from __future__ import annotations

import time

import pytest

from conftest import load_example, require_shared_data


def test_digits_example_with_its_defaults_reaches_95_percent(capsys, tmp_path):
    pytest.importorskip("sklearn", reason="scikit-learn (the 'examples' extra) is needed")
    module = load_example("train_digits")
    start = time.perf_counter()
    acc = module.main(["--output-dir", str(tmp_path)])  # the defaults: 40 epochs, T=4
    elapsed = time.perf_counter() - start
    assert acc >= 0.95, f"the default run reached only {acc:.4f} test accuracy"
    out = capsys.readouterr().out
    assert f"test accuracy: {acc:.4f}" in out
    print(f"default digits run: {acc:.4f} in {elapsed:.0f} s")


def test_the_tutorials_hand_written_loop_learns_the_real_nmnist_subset(capsys, tmp_path):
    """examples/nmnist_loop.py (docs/tutorial.md): the raw .bin files to a trained SNN,
    firing rates, a saved and reloaded model that streams step by step from an
    explicit state and equals one call (the script asserts it)."""
    root = require_shared_data("nmnist-small")
    module = load_example("nmnist_loop")
    acc = module.main(["--root", str(root), "--epochs", "1", "--train-samples", "600",
                       "--cache-dir", str(tmp_path / "cache"),
                       "--output", str(tmp_path / "net.pt")])  # fmt: skip
    assert acc >= 0.3, f"one epoch on 600 samples reached only {acc:.2f} (chance: 0.1)"
    out = capsys.readouterr().out
    assert "epoch 1: loss" in out and "firing rate" in out
    assert (tmp_path / "net.pt").exists()


def test_lava_dl_slayer_nmnist_port_learns_the_real_subset(capsys):
    """examples/lava_slayer_nmnist.py (Lava-DL's SLAYER N-MNIST tutorial, ported as
    docs/migration.md maps it): its input is Lava-DL's binned spikes, and a short run on
    the real subset learns (chance: 0.1)."""
    root = require_shared_data("nmnist-small")
    module = load_example("lava_slayer_nmnist")
    x = module.LavaInput(300)(module.NMNIST(root, train=False)[0][0])
    assert x.shape == (300, 2 * 34 * 34) and set(x.unique().tolist()) == {0.0, 1.0}
    # (without the tutorial's shift-and-rotate: one epoch on 320 samples is too short
    # for an augmented run to be tested against a fixed bar)
    acc = module.main(["--root", str(root), "--epochs", "1", "--train-samples", "320",
                       "--hidden", "64", "--no-augment"])  # fmt: skip
    assert acc >= 0.2, f"one epoch on 320 samples reached only {acc:.2f}"
    assert "event rates" in capsys.readouterr().out


def test_training_tricks_example_trains_each_variant(capsys):
    """examples/training_tricks_digits.py (docs/training_tricks.md): every variant learns
    the digits in two epochs; Real Spike's accuracy is its folded binary network's."""
    pytest.importorskip("sklearn", reason="scikit-learn (the 'examples' extra) is needed")
    module = load_example("training_tricks_digits")
    results = module.main(["--seeds", "0", "--epochs", "2"])
    assert set(results) == {"plain", "im", "real_spike", "tcja"}
    for variant, (acc,) in results.items():
        assert acc >= 0.6, f"{variant} reached only {acc:.2f} in two epochs (chance: 0.1)"
    assert "folded" not in capsys.readouterr().out  # the folded net agreed
