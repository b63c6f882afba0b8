"""Train a parametric-LIF convolutional SNN on scikit-learn's 8x8 handwritten digits.

This is what ``spikeflow train`` runs with no arguments, written with the Python API.
The digits (1,797 real scans, 10 classes) ship inside scikit-learn, so this needs no
download. The network (``spikeflow.models.digits``, registered as ``plif_digits``)
follows the PLIF paper's recipe (methods.md 11.2) at a small scale: conv-BN, PLIF
neurons (init_tau 2, detach_reset, ATan surrogate), dropout masks shared across time,
a voting output layer, and MSE between the output firing rate and the one-hot label.

    python examples/train_digits.py --epochs 40 --T 4
"""

from __future__ import annotations

import argparse

from spikeflow.training import TrainConfig, Trainer


def main(argv: list[str] | None = None) -> float:
    """Train and evaluate; returns the test accuracy after the last epoch."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--T", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--output-dir", default=None, help="default runs/digits-<date-time>, new each run"
    )
    args = parser.parse_args(argv)

    # Everything else is TrainConfig's default, the same as `spikeflow train`'s: the
    # plif_digits net, Adam, cosine schedule, rate MSE against one-hot.
    config = TrainConfig(
        T=args.T, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
        output_dir=args.output_dir, progress=False, plots="off",
    )  # fmt: skip
    result = Trainer(config).fit()
    print(f"test accuracy: {result.final_test_acc:.4f}")
    return result.final_test_acc


if __name__ == "__main__":
    main()
