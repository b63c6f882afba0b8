"""Do IM-Loss, Real Spike and TCJA help a small SNN on scikit-learn's 8x8 digits?

One network, conv3x3(16)-BN-LIF-conv3x3(32)-BN-LIF-maxpool2-FC(512 -> 10) on the image
repeated over T steps (cross-entropy on the time-mean of the logits, Adam 1e-3 with a
cosine schedule, batch 64), trained from the same seed and data order four ways:

* ``plain``: as above;
* ``im``: plus IM-Loss on the two hidden LIF layers (``losses.im_loss``, the official
  code's ``(rate - 0.5/T)^2`` and weight 0.005, or ``--im-strength`` and
  ``--im-target-rate``);
* ``real_spike``: a ``RealSpike`` after each hidden LIF layer, folded into the next
  layer's weights after training (``conversion.fold_real_spikes``); the test accuracy
  is the folded binary-spike network's, and must equal the unfolded one's;
* ``tcja``: ``TCJA(T, 32, 4, 4)`` after the second LIF layer (the authors' placement
  and kernels in their DVS128 Gesture network).

Prints the final-epoch test accuracy of each variant and seed (360 test images: one
image is 0.28 points), the mean over seeds and the mean firing rate of the hidden layers.

    python examples/training_tricks_digits.py                  # 3 seeds, 15 epochs, T = 4
    python examples/training_tricks_digits.py --seeds 0 1 2 3 4 --epochs 30 -T 2
"""

from __future__ import annotations

import argparse
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


def network(variant: str, steps: int) -> nn.Sequential:
    """The network of ``variant`` (its hidden LIF layers are modules 2 and 6)."""
    extra1 = [RealSpike(16)] if variant == "real_spike" else []
    extra2 = {"real_spike": [RealSpike(32)], "tcja": [TCJA(steps, 32, 4, 4)]}.get(variant, [])
    return nn.Sequential(
        layers.Conv2d(1, 16, 3, padding=1, bias=False),
        layers.BatchNorm2d(16),
        LIFNode(),
        *extra1,
        layers.Conv2d(16, 32, 3, padding=1, bias=False),
        layers.BatchNorm2d(32),
        LIFNode(),
        *extra2,
        layers.MaxPool2d(2),
        layers.Flatten(),
        layers.Linear(32 * 4 * 4, 10),
    )


@torch.no_grad()
def accuracy(net: nn.Module, x: Tensor, y: Tensor, steps: int) -> float:
    net.eval()
    reset_net(net)
    out = net(x.unsqueeze(0).repeat(steps, 1, 1, 1, 1)).mean(0)
    return float((out.argmax(1) == y).float().mean())


def train(variant: str, seed: int, args: argparse.Namespace, data) -> tuple[float, float]:
    """Final test accuracy and mean hidden firing rate of one run."""
    xtr, ytr, xte, yte = data
    torch.manual_seed(seed)
    net = network(variant, args.T)
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
                out = net(xtr[idx].unsqueeze(0).repeat(args.T, 1, 1, 1, 1))
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
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
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
    main()
