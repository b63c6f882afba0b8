"""Train a spiking object detector on canvases of real N-MNIST digits, on the CPU.

Each canvas (96x96 by default) holds 1-3 real N-MNIST recordings at random,
non-overlapping places (:class:`~spikeflow.data.datasets.nmnist_detection.NMNISTDetection`);
the detector (:func:`~spikeflow.detection.spiking_detector`: three strided spiking conv
units of 16, 32 and 64 channels and the anchor-free spiking head on a 12x12 grid) learns where each
digit is and which digit it is. Held-out canvases (digits from N-MNIST's test split) are
scored with COCO mAP@[.5:.95], mAP@0.5 and VOC AP@0.5 (docs/detection.md), next to two
references: the untrained network, and "oracle boxes, no class": every true box given
once per class at equal score, i.e. perfect localisation with chance classification.

    python examples/detect_nmnist.py                        # ../shared/data/nmnist-small
    python examples/detect_nmnist.py --epochs 1 --train-samples 200   # a quick look

Measured numbers and the reference points are in docs/detection.md.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from spikeflow.data.datasets.nmnist_detection import NMNISTDetection
from spikeflow.detection import (
    DetectionLoss,
    Detections,
    MeanAveragePrecision,
    SpikingDetector,
    collate,
    spiking_detector,
)

DEFAULT_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nmnist-small"
REPORTED = ("map", "map_50", "map_75", "map_voc50", "mar_100")


def evaluate(net: SpikingDetector, loader: DataLoader) -> dict[str, Any]:
    """COCO and VOC metrics of ``net`` on ``loader`` (frames ``[B, T, ...]``)."""
    net.eval()
    metric = MeanAveragePrecision()
    with torch.no_grad():
        for frames, targets in loader:
            metric.update(net.detect(frames.transpose(0, 1)), targets)
    return metric.compute()


def oracle_boxes_without_classes(loader: DataLoader, num_classes: int) -> dict[str, Any]:
    """The reference a detector must beat to show it classifies: every ground-truth box
    reported once for each class, all with score 1."""
    metric = MeanAveragePrecision()
    for _, targets in loader:
        preds = []
        for t in targets:
            k = t.shape[0]
            preds.append(
                Detections(
                    t[:, 1:].repeat_interleave(num_classes, 0),
                    torch.ones(k * num_classes),
                    torch.arange(num_classes).repeat(k),
                )
            )
        metric.update(preds, targets)
    return metric.compute()


def line(name: str, result: dict[str, Any]) -> str:
    return f"{name:<34}" + "  ".join(f"{k} {result[k]:.4f}" for k in REPORTED)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Train, evaluate and print; returns the held-out metrics of the trained network."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--train-samples", type=int, default=2000)
    parser.add_argument("--test-samples", type=int, default=300)
    parser.add_argument("--test-batch-size", type=int, default=64)
    parser.add_argument("--canvas", type=int, default=96)
    parser.add_argument("--T", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--extra-units", type=int, default=0)
    # One thread: on a shared, busy CPU, several OpenMP threads wait on each other.
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return run(args)
    finally:
        torch.set_num_threads(threads)  # main() may be called from a larger program


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The training and evaluation :func:`main` describes, on parsed arguments."""
    torch.manual_seed(args.seed)

    common = dict(canvas_size=args.canvas, frames_number=args.T)
    train = NMNISTDetection(
        args.root, True, num_samples=args.train_samples, seed=args.seed, **common
    )
    test_seed = 10_000 + args.seed
    test = NMNISTDetection(
        args.root, False, num_samples=args.test_samples, seed=test_seed, **common
    )
    train_loader = DataLoader(train, args.batch_size, shuffle=True, collate_fn=collate)
    test_loader = DataLoader(test, args.test_batch_size, collate_fn=collate)

    net = spiking_detector(10, 2, widths=args.widths, extra_units=args.extra_units)
    criterion = DetectionLoss(10, net.stride)
    optimizer = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    steps = args.epochs * len(train_loader)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, args.lr, total_steps=steps)
    print(f"train: {train}\ntest:  {test}")
    print(line("oracle boxes, no class (held-out)", oracle_boxes_without_classes(test_loader, 10)))
    print(line("untrained network (held-out)", evaluate(net, test_loader)))

    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        net.train()
        total = n = 0.0
        for frames, targets in train_loader:
            loss, _ = criterion(net(frames.transpose(0, 1)), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += float(loss.detach()) * len(targets)
            n += len(targets)
        elapsed = time.perf_counter() - start
        print(f"epoch {epoch}: loss {total / n:.4f}  ({elapsed:.0f} s)")
    result = evaluate(net, test_loader)
    print(line("trained network (held-out)", result))
    per_class = "  ".join(f"{c}: {ap:.2f}" for c, ap in result["map_50_per_class"].items())
    print(f"AP@0.5 per digit: {per_class}")
    print(f"training time: {time.perf_counter() - start:.0f} s on {args.threads} threads")
    return result


if __name__ == "__main__":
    from spikeflow.data import exit_on_missing_data

    exit_on_missing_data(main, root_option="--root")
