"""Do IM-Loss, Real Spike and TCJA help a small SNN on the 8x8 digits or N-MNIST?

One network, conv3x3(16)-BN-LIF-conv3x3(32)-BN-LIF-maxpool2-FC(512 -> 10) on the image
repeated over T steps (cross-entropy on the time-mean of the logits, Adam 1e-3 with a
cosine schedule, batch 64), trained from the same seed and data order four ways
(``--dataset nmnist``: the real N-MNIST subset as T frames, a max-pool after the first
LIF layer too):

* ``plain``: as above;
* ``im``: plus IM-Loss on the two hidden LIF layers (``losses.im_loss``, the official
  code's ``(rate - 0.5/T)^2`` and weight 0.005, or ``--im-strength`` and
  ``--im-target-rate``);
* ``real_spike``: a ``RealSpike`` after each hidden LIF layer (after its max-pool),
  folded into the next layer's weights after training
  (``conversion.fold_real_spikes``); the test accuracy is the folded binary-spike
  network's (a difference from the unfolded one's is printed);
* ``tcja``: ``TCJA(T, 32, 4, 4)`` after the second LIF layer (the authors' placement
  and kernels in their DVS128 Gesture network).

Prints the final-epoch test accuracy of each variant and seed (digits: 360 test images,
one image is 0.28 points), the mean over seeds and the mean firing rate of the hidden
layers.

    python examples/training_tricks_digits.py                  # 3 seeds, 15 epochs, T = 4
    python examples/training_tricks_digits.py --seeds 0 1 2 3 4 --epochs 30 -T 2
    python examples/training_tricks_digits.py --dataset nmnist \\
        --root ../shared/data/nmnist-small -T 10 --epochs 8
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
from torch import Tensor, nn

from spikeflow import layers
from spikeflow.conversion import fold_real_spikes
from spikeflow.functional import reset_net
from spikeflow.layers import TCJA, RealSpike
from spikeflow.losses import LayerSpikes, im_loss
from spikeflow.neurons import LIFNode

VARIANTS = ("plain", "im", "real_spike", "tcja")


def digits(seed: int = 0) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The 8x8 digits in [0, 1], a fixed stratified 80/20 split (1437 / 360)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
    y = torch.tensor(y)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=360, stratify=y, random_state=seed)
    return xtr, ytr, xte, yte


def nmnist(root: str, steps: int, cache_dir: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The real N-MNIST subset (1,000 / 100 recordings) as ``steps`` frames of equal
    event counts ``[N, T, 2, 34, 34]``."""
    from spikeflow.data import NMNIST

    kw = {"data_type": "frame", "frames_number": steps, "split_by": "number",
          "cache_dir": cache_dir}  # fmt: skip
    parts = []
    for train in (True, False):
        frames, labels = zip(*NMNIST(root, train=train, **kw))
        parts += [torch.stack([torch.as_tensor(f, dtype=torch.float32) for f in frames]),
                  torch.as_tensor(labels)]  # fmt: skip
    return tuple(parts)  # type: ignore[return-value]


def network(variant: str, steps: int, in_channels: int = 1, size: int = 8) -> nn.Sequential:
    """The network of ``variant``; a ``size`` above 8 (N-MNIST) gets a max-pool after
    the first LIF layer too. Each RealSpike comes after the max-pool of its layer (the
    pool of binary spikes is binary), so a negative amplitude still folds."""
    first_pool = [layers.MaxPool2d(2)] if size > 8 else []
    side = size // 2 // 2 if first_pool else size // 2
    return nn.Sequential(
        layers.Conv2d(in_channels, 16, 3, padding=1, bias=False),
        layers.BatchNorm2d(16),
        LIFNode(),
        *first_pool,
        *([RealSpike(16)] if variant == "real_spike" else []),
        layers.Conv2d(16, 32, 3, padding=1, bias=False),
        layers.BatchNorm2d(32),
        LIFNode(),
        *([TCJA(steps, 32, 4, 4)] if variant == "tcja" else []),
        layers.MaxPool2d(2),
        *([RealSpike(32)] if variant == "real_spike" else []),
        layers.Flatten(),
        layers.Linear(32 * side * side, 10),
    )


def _time_major(x: Tensor, steps: int) -> Tensor:
    """Images ``[B, C, H, W]`` repeated over the steps; frames ``[B, T, ...]`` moved."""
    return x.unsqueeze(0).repeat(steps, 1, 1, 1, 1) if x.dim() == 4 else x.transpose(0, 1)


@torch.no_grad()
def accuracy(net: nn.Module, x: Tensor, y: Tensor, steps: int) -> float:
    net.eval()
    reset_net(net)
    out = torch.cat([net(_time_major(part, steps)).mean(0) for part in x.split(200)])
    return float((out.argmax(1) == y).float().mean())


def train(variant: str, seed: int, args: argparse.Namespace, data) -> tuple[float, float]:
    """Final test accuracy and mean hidden firing rate of one run."""
    xtr, ytr, xte, yte = data
    torch.manual_seed(seed)
    net = network(variant, args.T, xtr.shape[-3], xtr.shape[-1])
    hidden = [name for name, m in net.named_children() if isinstance(m, LIFNode)]
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.epochs)
    ce = nn.CrossEntropyLoss()
    order = torch.Generator().manual_seed(seed)
    with LayerSpikes(net, layers=hidden) as recorded:
        for _ in range(args.epochs):
            net.train()
            for idx in torch.randperm(len(xtr), generator=order).split(64):
                reset_net(net)
                out = net(_time_major(xtr[idx], args.T))
                loss = ce(out.mean(0), ytr[idx])
                if variant == "im":
                    spikes = recorded.spikes.values()
                    loss = loss + im_loss(spikes, args.im_strength, args.im_target_rate)
                opt.zero_grad()
                loss.backward()
                opt.step()
            sched.step()
        acc = accuracy(net, xte, yte, args.T)
        rate = sum(float(s.mean()) for s in recorded.spikes.values()) / len(hidden)
    if variant == "real_spike":  # the binary-spike network it becomes for inference
        folded_acc = accuracy(fold_real_spikes(net), xte, yte, args.T)
        if folded_acc != acc:  # (float32 rounding could flip a near-tie)
            print(f"  seed {seed}: folded {folded_acc:.4f}, unfolded {acc:.4f}")
        acc = folded_acc
    return acc, rate


def main(argv: list[str] | None = None) -> dict[str, list[float]]:
    """Train every variant with every seed; print and return ``{variant: [acc]}``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("-T", type=int, default=4)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--im-strength", type=float, default=0.005)
    parser.add_argument("--im-target-rate", type=float, default=None,
                        help="IM-Loss's target rate (default: the official 0.5 / T)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dataset", choices=("digits", "nmnist"), default="digits")
    parser.add_argument("--root", default=None, help="N-MNIST's folder (Train/, Test/)")
    parser.add_argument("--cache-dir", default=None, help="N-MNIST frame cache")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.dataset == "nmnist":
        if args.root is None:
            parser.error("--dataset nmnist needs --root (e.g. ../shared/data/nmnist-small)")
        with tempfile.TemporaryDirectory() as scratch:
            data = nmnist(args.root, args.T, args.cache_dir or scratch)
    else:
        data = digits()
    results: dict[str, list[float]] = {}
    for variant in args.variants:
        start = time.perf_counter()
        accs, rates = zip(*(train(variant, seed, args, data) for seed in args.seeds))
        results[variant] = list(accs)
        mean = sum(accs) / len(accs)
        print(f"{variant:<11} " + " ".join(f"{100 * a:6.2f}" for a in accs)
              + f"   mean {100 * mean:6.2f}%   hidden rate {sum(rates) / len(rates):.3f}"
              + f"   {time.perf_counter() - start:5.0f} s", flush=True)  # fmt: skip
    return results


if __name__ == "__main__":
    from spikeflow.data import exit_on_missing_data

    exit_on_missing_data(main, root_option="--root")
