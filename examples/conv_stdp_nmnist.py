"""Unsupervised convolutional STDP on real N-MNIST: features learned without labels,
measured by a linear read-out against the same layer with its random initial weights.

Data: the real N-MNIST subset (``../shared/data/nmnist-small``: 1,000 training and 100
test recordings), events downsampled 2x in space (2 x 17 x 17), ``--frames`` frames of
equal event counts, a pixel with an event in a frame a spike. Layer: a ``layers.Conv2d(2,
16, 5, padding=2)`` without bias into :class:`~spikeflow.learn.ConvWinnerTakeAll` (one map
per position, ``--radius`` 0: no inhibition across positions; adaptive thresholds per
map while training, ``--theta-plus``).
Weights start at ``N(0.8, 0.05)`` (Kheradpisheh et al. 2018) and learn by
:class:`~spikeflow.learn.STDPLearner` with the weight dependence ``w(1 - w)`` on both
sides (their soft bound), ``a- / a+ = 0.75``, applied by SGD and clipped to [0, 1], one
pass over the training recordings, no labels. Features: each map's spike count, summed
over time and pooled to 4 x 4 positions (256 values). Read-out: scikit-learn's
logistic regression on standardised features, scored by 5-fold cross-validation on the
1,000 training recordings and on the 100 test recordings. The control is the same
layer, thresholds and read-out with the initial (random) weights frozen.

    python examples/conv_stdp_nmnist.py --nmnist-root ../shared/data/nmnist-small
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikeflow import layers
from spikeflow.learn import ConvWinnerTakeAll, STDPLearner


def load_nmnist(root: str, frames: int) -> tuple[Tensor, ...]:
    """N-MNIST as spike frames ``[frames, samples, 2, 17, 17]`` and labels."""
    from spikeflow.data.datasets import NMNIST
    from spikeflow.data.transforms import Downsample

    def split(train: bool) -> tuple[Tensor, Tensor]:
        data = NMNIST(root, train=train, data_type="frame", frames_number=frames,
                      split_by="number", event_transform=Downsample(0.5))  # fmt: skip
        xs, ys = zip(*(data[i] for i in range(len(data))))
        x = torch.stack([torch.as_tensor(f) for f in xs])  # [N, T, 2, 17, 17]
        return (x > 0).float().transpose(0, 1).contiguous(), torch.tensor(ys)

    return (*split(True), *split(False))


def build(
    seed: int, threshold: float, radius: int, theta_plus: float
) -> tuple[nn.Conv2d, ConvWinnerTakeAll]:
    """The layer and its competing maps, initial weights from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    conv = layers.Conv2d(2, 16, 5, padding=2, bias=False)  # runs a sequence [T, B, ...]
    with torch.no_grad():
        conv.weight.copy_((0.8 + 0.05 * torch.randn(conv.weight.shape, generator=g)).clamp(0, 1))
    wta = ConvWinnerTakeAll(16, tau=2.0, v_threshold=threshold, k=1, inhibition_radius=radius,
                            theta_plus=theta_plus, theta_decay=0.999)  # fmt: skip
    return conv, wta


def run(conv: nn.Conv2d, wta: ConvWinnerTakeAll, x: Tensor) -> Tensor:
    """Spikes ``[T, B, 16, 17, 17]`` of a sequence ``x [T, B, 2, 17, 17]``."""
    return wta(conv(x))


def features(conv: nn.Conv2d, wta: ConvWinnerTakeAll, x: Tensor, batch: int = 100) -> Tensor:
    """Spike counts per map pooled to 4 x 4 positions: ``[N, 256]`` (eval mode)."""
    wta.eval()
    out = []
    with torch.no_grad():
        for i in range(0, x.shape[1], batch):
            counts = run(conv, wta, x[:, i : i + batch]).sum(0)
            out.append(F.adaptive_avg_pool2d(counts, 4).flatten(1))
    return torch.cat(out)


def batches(x: Tensor, args: argparse.Namespace) -> list[Tensor]:
    """The recordings of ``x`` in one shuffled pass (``args.seed``), ``args.batch`` at a
    time: the same order for the learned layer and the frozen control."""
    order = torch.randperm(x.shape[1], generator=torch.Generator().manual_seed(args.seed))
    return [order[i : i + args.batch] for i in range(0, x.shape[1], args.batch)]


def train(conv: nn.Conv2d, wta: ConvWinnerTakeAll, x: Tensor, args: argparse.Namespace) -> None:
    """One unsupervised pass of STDP over ``x`` (no labels)."""

    def soft_bound(w: Tensor) -> Tensor:
        return w * (1 - w)

    learner = STDPLearner(conv, wta, tau_pre=2.0, tau_post=2.0,
                          f_pre=lambda w: 0.75 * soft_bound(w), f_post=soft_bound)  # fmt: skip
    optimizer = torch.optim.SGD(conv.parameters(), lr=args.lr)
    wta.train()
    for batch in batches(x, args):
        with torch.no_grad():
            run(conv, wta, x[:, batch])
        optimizer.zero_grad()
        learner.step()
        optimizer.step()
        with torch.no_grad():
            conv.weight.clamp_(0, 1)
    learner.close()


def frozen_pass(
    conv: nn.Conv2d, wta: ConvWinnerTakeAll, x: Tensor, args: argparse.Namespace
) -> None:
    """The control: :func:`train`'s pass (same batches, same order, thresholds adapting)
    with the weights left as they are."""
    wta.train()
    with torch.no_grad():
        for batch in batches(x, args):
            run(conv, wta, x[:, batch])


def score(train_f: Tensor, y_train: Tensor, test_f: Tensor, y_test: Tensor) -> tuple[float, float]:
    """5-fold cross-validated accuracy on the training set, and test accuracy (%)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def model():
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=0.1))

    cv = cross_val_score(model(), train_f.numpy(), y_train.numpy(), cv=5).mean()
    test = model().fit(train_f.numpy(), y_train.numpy()).score(test_f.numpy(), y_test.numpy())
    return 100 * float(cv), 100 * float(test)


def main(argv: list[str] | None = None) -> dict[str, tuple[float, float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nmnist-root", default="../shared/data/nmnist-small")
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threshold", type=float, default=6.0)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--radius", type=int, default=0, help="inhibition radius")
    parser.add_argument("--theta-plus", type=float, default=5e-4)
    parser.add_argument("--batch", type=int, default=10)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    x_train, y_train, x_test, y_test = load_nmnist(args.nmnist_root, args.frames)
    results = {}
    for name in ("random (frozen)", "STDP"):
        start = time.perf_counter()
        conv, wta = build(args.seed, args.threshold, args.radius, args.theta_plus)
        if name == "STDP":
            train(conv, wta, x_train, args)
        else:
            frozen_pass(conv, wta, x_train, args)
        f_train, f_test = features(conv, wta, x_train), features(conv, wta, x_test)
        rate = float(f_train.mean()) / args.frames * 16  # maps firing per position and step
        results[name] = score(f_train, y_train, f_test, y_test)
        print(f"{name:16s} cv {results[name][0]:5.1f}%  test {results[name][1]:5.1f}%  "
              f"(maps firing per position and step {rate:.3f}; "
              f"{time.perf_counter() - start:.0f} s)")  # fmt: skip
    return results


if __name__ == "__main__":
    from spikeflow.data import exit_on_missing_data

    exit_on_missing_data(main, root_option="--nmnist-root")
