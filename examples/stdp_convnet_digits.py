"""Kheradpisheh et al. (2018) and Mozafari et al. (2019) on scikit-learn's digits: a
convolutional layer learned by one-spike-per-neuron STDP, read out by logistic
regression (Kheradpisheh's SVM stage) and by an R-STDP decision layer (Mozafari's),
against the same layer with its random initial weights frozen.

Input stage: the 8x8 digits (0-16) scaled to 0-255 and upsampled to 24x24 (bilinear),
on/off difference-of-Gaussians at two scales (3x3 and 7x7, SpykeTorch's sigmas),
values under ``--dog-threshold`` dropped, local normalisation (radius 4), rank-order
coding into ``T = 15`` cumulative spike waves. Layer 1: ``Conv2d(4, 30, 5)`` (input
padded by 2, no bias, weights ``N(0.8, 0.05)``), threshold ``--threshold``, one spike
per neuron, one map per position (pointwise inhibition), 5 winners per image at least
3 positions apart learn by the simplified STDP ``a± · w(1 − w)`` with Kheradpisheh's
schedule (``a+`` from 0.004 doubling every 500 images up to 0.15, ``a− = −0.75 a+``),
one image at a time, ``--epochs`` passes. Pooling by first spike (2x2, then 3x3 to 4x4).

``--dataset nmnist``: the real N-MNIST subset (``--nmnist-root``, 1,000 / 100
recordings) instead, each recording's events counted per pixel (both polarities) into
one 34x34 image scaled to 0-255, then the same stages (pooled to 30 x 5 x 5).

Read-outs: (a) logistic regression on each pooled neuron's earliness (``T − t_first``,
480 features), standardised; (b) a decision layer ``Conv2d(30, 100, 4)`` (10 neurons
per class, weights ``N(0.8, 0.05)``, infinite threshold: the neuron with the largest
final potential decides) learned by R-STDP (reward: STDP 0.004 / −0.003; punishment:
anti-STDP −0.004 / 0.0005; weights in [0.2, 0.8]; Mozafari's adaptive rates per
100-image batch), ``--rl-epochs`` passes. The control runs the same read-outs on the
layer with its initial weights (STDP with rate 0). Digits split 1437 / 360 (shuffled).

    python examples/stdp_convnet_digits.py --seed 0
    python examples/stdp_convnet_digits.py --dataset nmnist  # ../shared/data/nmnist-small
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import Tensor

from spikeflow.encoding import DoGFilter, intensity_to_latency, local_normalization
from spikeflow.learn import (
    adaptive_rstdp_rates,
    decide,
    fire_once,
    first_spike_stdp,
    k_winners,
    kheradpisheh_rates,
    pointwise_inhibition,
    reward_stdp,
)

STEPS = 15


def to_waves(images: Tensor, dog_threshold: float) -> Tensor:
    """Grayscale images ``[N, 1, H, W]`` (0-255) -> cumulative waves ``[T, N, 4, H, W]``."""
    dog = DoGFilter.on_off([(3, 3 / 9, 6 / 9), (7, 7 / 9, 14 / 9)], padding=3,
                           threshold=dog_threshold)  # fmt: skip
    return intensity_to_latency(local_normalization(dog(images), 4), STEPS)


def load_digits_images(seed: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The digits (0-255) upsampled to 24x24, shuffled, split 1437 / 360."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32)[:, None] * (255 / 16)
    x = F.interpolate(x, size=(24, 24), mode="bilinear", align_corners=False)
    y = torch.tensor(digits.target)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    x, y = x[order], y[order]
    return x[:1437], y[:1437], x[1437:], y[1437:]


def load_nmnist_images(root: str, seed: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """N-MNIST recordings accumulated to one 34x34 image each (events of both
    polarities counted per pixel, scaled to 0-255 per image); training order shuffled."""
    from spikeflow.data.datasets import NMNIST

    def split(train: bool) -> tuple[Tensor, Tensor]:
        data = NMNIST(root, train=train, data_type="frame", frames_number=1,
                      split_by="number")  # fmt: skip
        xs, ys = zip(*(data[i] for i in range(len(data))))
        counts = torch.stack([torch.as_tensor(f).float() for f in xs]).sum(dim=(1, 2))
        peak = counts.amax(dim=(1, 2), keepdim=True).clamp(min=1)
        return (255 * counts / peak)[:, None], torch.tensor(ys)

    x_tr, y_tr = split(True)
    order = torch.randperm(len(y_tr), generator=torch.Generator().manual_seed(seed))
    return (x_tr[order], y_tr[order], *split(False))


def load_waves(seed: int, dog_threshold: float, nmnist_root: str | None = None
               ) -> tuple[Tensor, Tensor, Tensor, Tensor]:  # fmt: skip
    """Training and test waves ``[T, N, 4, H, W]`` and labels (digits, or N-MNIST)."""
    if nmnist_root is None:
        x_tr, y_tr, x_te, y_te = load_digits_images(seed)
    else:
        x_tr, y_tr, x_te, y_te = load_nmnist_images(nmnist_root, seed)
    return to_waves(x_tr, dog_threshold), y_tr, to_waves(x_te, dog_threshold), y_te


def layer1(weight: Tensor, waves: Tensor, threshold: float) -> tuple[Tensor, Tensor, Tensor]:
    """Padded input, inhibited potentials and spikes of layer 1."""
    pre = F.pad(waves, (2, 2, 2, 2))
    pot = F.conv2d(pre.flatten(0, 1), weight).unflatten(0, pre.shape[:2])
    _, kept = fire_once(pot, threshold)
    kept = pointwise_inhibition(kept)
    return pre, kept, kept.sign()


def train_layer1(weight: Tensor, waves: Tensor, threshold: float, epochs: int) -> Tensor:
    """Kheradpisheh's STDP, one image at a time."""
    seen = 0
    for _ in range(epochs):
        for i in range(waves.shape[1]):
            seen += 1
            pre, kept, spikes = layer1(weight, waves[:, i : i + 1], threshold)
            winners, valid = k_winners(kept, spikes, k=5, inhibition_radius=3)
            a_plus, a_minus = kheradpisheh_rates(seen)
            weight = first_spike_stdp(weight, pre, spikes, winners, valid, a_plus, a_minus)
    return weight


def pooled(weight: Tensor, waves: Tensor, threshold: float) -> Tensor:
    """Layer 1's spikes pooled by first spike (2x2, then 3x3: ``[T, N, 30, 4, 4]`` for
    the digits, ``[T, N, 30, 5, 5]`` for N-MNIST)."""
    out = []
    for chunk in waves.split(200, dim=1):
        spikes = layer1(weight, chunk, threshold)[2]
        s = F.max_pool2d(spikes.flatten(0, 1), 2, 2)
        out.append(F.max_pool2d(s, 3, 3).unflatten(0, spikes.shape[:2]))
    return torch.cat(out, dim=1)


def logistic_score(f_train: Tensor, y_train: Tensor, f_test: Tensor, y_test: Tensor) -> float:
    """Test accuracy (%) of logistic regression on standardised features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))
    clf.fit(f_train.numpy(), y_train.numpy())
    return 100.0 * clf.score(f_test.numpy(), y_test.numpy())


def rstdp_score(p_train: Tensor, y_train: Tensor, p_test: Tensor, y_test: Tensor,
                seed: int, epochs: int) -> float:  # fmt: skip
    """Test accuracy (%) of Mozafari's R-STDP decision layer (silence counts wrong)."""
    g = torch.Generator().manual_seed(seed + 1)
    size = tuple(p_train.shape[-2:])  # one decision neuron per map covers the whole layer
    weight = (0.8 + 0.05 * torch.randn(100, 30, *size, generator=g)).clamp(0.2, 0.8)
    decision_map = torch.arange(10).repeat_interleave(10)
    rates = adaptive_rstdp_rates(0.1, 0.9)  # Mozafari's start: chance hit rate
    for _ in range(epochs):
        for start in range(0, p_train.shape[1], 100):
            hits = misses = 0
            stop = min(start + 100, p_train.shape[1])
            for i in range(start, stop):
                pre = p_train[:, i : i + 1]
                pot = F.conv2d(pre.flatten(0, 1), weight).unflatten(0, (STEPS, 1))
                cls, spikes, winners, valid = decide(pot, decision_map)
                if cls.item() < 0:
                    continue
                right = cls.item() == y_train[i].item()
                hits, misses = hits + right, misses + (not right)
                reward = torch.tensor([1 if right else -1])
                weight = reward_stdp(weight, pre, spikes, winners, valid, reward, *rates)
            rates = adaptive_rstdp_rates(hits / (stop - start), misses / (stop - start))
    pot = F.conv2d(p_test.flatten(0, 1), weight).unflatten(0, p_test.shape[:2])
    cls = decide(pot, decision_map)[0]
    return 100.0 * (cls == y_test).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=("digits", "nmnist"), default="digits")
    parser.add_argument("--nmnist-root", default="../shared/data/nmnist-small")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=1, help="STDP passes of layer 1")
    parser.add_argument("--rl-epochs", type=int, default=5, help="R-STDP passes")
    parser.add_argument("--threshold", type=float, default=15.0, help="layer 1 threshold")
    parser.add_argument("--dog-threshold", type=float, default=15.0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    root = args.nmnist_root if args.dataset == "nmnist" else None
    x_tr, y_tr, x_te, y_te = load_waves(args.seed, args.dog_threshold, root)
    g = torch.Generator().manual_seed(args.seed)
    initial = (0.8 + 0.05 * torch.randn(30, 4, 5, 5, generator=g)).clamp(0, 1)
    start = time.perf_counter()
    learned = train_layer1(initial, x_tr, args.threshold, args.epochs)
    took = time.perf_counter() - start
    print(f"layer 1 STDP: {args.epochs} pass(es) in {took:.1f} s; mean |dw| "
          f"{(learned - initial).abs().mean():.3f}")  # fmt: skip
    for name, weight in (("random frozen", initial), ("STDP", learned)):
        p_tr, p_te = pooled(weight, x_tr, args.threshold), pooled(weight, x_te, args.threshold)
        f_tr, f_te = p_tr.sum(0).flatten(1), p_te.sum(0).flatten(1)
        lr = logistic_score(f_tr, y_tr, f_te, y_te)
        rl = rstdp_score(p_tr, y_tr, p_te, y_te, args.seed, args.rl_epochs)
        active = (f_tr > 0).float().mean().item()
        print(f"{name:>13}: logistic {lr:.1f} %, R-STDP decision layer {rl:.1f} % "
              f"(pooled neurons active {100 * active:.0f} %)")  # fmt: skip


if __name__ == "__main__":
    from spikeflow.data import exit_on_missing_data

    exit_on_missing_data(main, root_option="--nmnist-root")
