"""A single layer of continuous-event Tempotrons on the 8x8 digits (scikit-learn).

SpikingJelly 2.0's ``timing_based/examples/tempotron_mnist.py`` setting on a dataset
that ships with scikit-learn: every pixel (scaled to [0, 1]) is coded by ``m = 16``
Gaussian receptive fields into event times in ``[0, duration = 100)``
(:class:`~spikeflow.timing.GaussianTuning`), one Tempotron per class (tau 15,
tau_s 3.75, threshold 1, weights N(0, 0.001²)) reads all ``64 · 16`` inputs, and SGD
trains it on :func:`~spikeflow.timing.tempotron_classification_loss` (cross-entropy of
``5 v_max / θ`` plus the Tempotron rule's firing error); the prediction is
``v_max.argmax``. The split is spikeflow's usual one for the digits: 80/20, stratified,
``random_state=0`` (360 test images).

    python examples/tempotron_digits.py                    # 40 epochs, lr 0.1
    python examples/tempotron_digits.py --epochs 5 --lr 0.05 --batch-size 32
"""

from __future__ import annotations

import argparse
import time

import torch

from spikeflow.timing import GaussianTuning, Tempotron, tempotron_classification_loss


def load_digits_split() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x_train [N, 64], y_train, x_test, y_test)``, pixels in [0, 1], float64."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x_tr, x_te, y_tr, y_te = train_test_split(
        data.data / 16.0, data.target, test_size=0.2, random_state=0, stratify=data.target
    )
    as_x = lambda a: torch.from_numpy(a).double()  # noqa: E731
    as_y = lambda a: torch.from_numpy(a).long()  # noqa: E731
    return as_x(x_tr), as_y(y_tr), as_x(x_te), as_y(y_te)


def accuracy(net: Tempotron, encoder: GaussianTuning, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of ``x`` whose largest ``v_max`` is at the label."""
    correct = 0
    with torch.no_grad():
        for start in range(0, len(x), 256):
            v_max, _, _ = net(*encoder(x[start : start + 256, None, :], net.duration))
            correct += int((v_max.argmax(1) == y[start : start + 256]).sum())
    return correct / len(x)


def main(argv: list[str] | None = None) -> float:
    """Train; print the accuracies per epoch; return the final test accuracy."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("-m", type=int, default=16, help="receptive fields per pixel")
    parser.add_argument("--duration", type=float, default=100.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    x_tr, y_tr, x_te, y_te = load_digits_split()
    encoder = GaussianTuning(1, args.m, 0.0, 1.0).double()
    net = Tempotron(64 * args.m, 10, args.duration).double()
    opt = torch.optim.SGD(net.parameters(), lr=args.lr)
    test_acc = 0.0
    for epoch in range(args.epochs):
        began = time.time()
        order = torch.randperm(len(x_tr))
        correct = 0
        for start in range(0, len(x_tr) - args.batch_size + 1, args.batch_size):
            pick = order[start : start + args.batch_size]
            v_max, _, t_spike = net(*encoder(x_tr[pick, None, :], args.duration))
            loss = tempotron_classification_loss(v_max, t_spike, y_tr[pick], net.v_threshold)
            opt.zero_grad()
            loss.backward()
            opt.step()
            correct += int((v_max.argmax(1) == y_tr[pick]).sum())
        test_acc = accuracy(net, encoder, x_te, y_te)
        print(
            f"epoch {epoch}: train acc {correct / len(x_tr):.4f} (running), test acc "
            f"{test_acc:.4f}, {time.time() - began:.1f} s",
            flush=True,
        )
    return test_acc


if __name__ == "__main__":
    main()
