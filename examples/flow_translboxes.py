"""Train a spiking optical-flow network self-supervised on a real event recording, on the CPU.

The recording is a DAVIS240C moving past boxes (``IMU_translBoxes.aedat``, 2 s, 163k
events, in ../shared/data/event-files/aedat2). Its events are cut into windows of
``--num-events`` events (Hagenaars et al. 2021) at half resolution (120x90); the first
70 % of the windows train a small LIF-FireNet (:class:`~spikeflow.flow.SpikingFireNet`,
8 channels, initial threshold 0.5 so that its deep layers spike from the start), the
last 30 % are held out. Training streams the windows in order, ``--chunk`` windows per
loss (the contrast-maximisation loss, :func:`~spikeflow.flow.contrast_maximization_loss`),
carrying the network's state from chunk to chunk with the graph cut in between
(truncated BPTT); the batch is the recording and its copy flipped horizontally (with
polarities swapped). Held-out windows are scored with the metrics that need no ground truth: the
contrast loss, FWL (> 1: warped events sharper than the raw ones) and RSAT (< 1: better
aligned), against zero flow and the best constant flow found by a grid search.

    python examples/flow_translboxes.py                 # about 4 minutes on one thread
    python examples/flow_translboxes.py --minutes 1     # a quick look

Measured numbers are in docs/flow.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from spikeflow import functional as SF
from spikeflow.data.io import read_events
from spikeflow.flow import (
    EventWindows,
    SpikingFireNet,
    contrast_maximization_loss,
    flow_warp_loss,
    rsat,
    stack_recordings,
    windows_from_events,
)

DEFAULT_FILE = (
    Path(__file__).resolve().parents[1].parent
    / "shared" / "data" / "event-files" / "aedat2" / "IMU_translBoxes.aedat"
)  # fmt: skip


def load_windows(path: Path, num_events: int, downsample: int, copies: int) -> list[EventWindows]:
    """The recording at ``1/downsample`` resolution and ``copies - 1`` of its flips
    (x and polarity, y, both), each cut into windows: :class:`EventWindows` with ``B = 1``."""
    recording = read_events(path)
    width, height = (s // downsample for s in recording.sensor_size[:2])
    events = recording.events.copy()
    events["x"] //= downsample
    events["y"] //= downsample
    variants = []
    for flip_x, flip_y, flip_p in ((0, 0, 0), (1, 0, 1), (0, 1, 0), (1, 1, 1))[:copies]:
        e = events.copy()
        if flip_x:
            e["x"] = width - 1 - e["x"]
        if flip_y:
            e["y"] = height - 1 - e["y"]
        if flip_p:
            e["p"] = 1 - e["p"]
        variants.append(windows_from_events(e, (width, height), num_events=num_events))
    return variants


def chunks(windows: EventWindows, start: int, stop: int, size: int) -> list[EventWindows]:
    """Consecutive chunks of ``size`` windows in ``[start, stop)``."""
    return [windows.window_slice(s, s + size) for s in range(start, stop - size + 1, size)]


def evaluate(net: SpikingFireNet, held_out: list[EventWindows]) -> dict[str, float]:
    """Mean contrast loss, FWL and RSAT of the network's flow on the held-out chunks,
    streamed in order from rest."""
    net.eval()
    loss, fwl, ratio = [], [], []
    with torch.no_grad(), SF.streaming(net):
        for chunk in held_out:
            flow = net(chunk.counts())
            loss.append(float(contrast_maximization_loss(flow, chunk, 0.0)))
            fwl.append(float(flow_warp_loss(flow, chunk).mean()))
            ratio.append(float(rsat(flow, chunk).mean()))
    net.train()
    return {"loss": float(np.mean(loss)), "fwl": float(np.mean(fwl)), "rsat": float(np.mean(ratio))}


def constant_flow(chunk: EventWindows, fx: float, fy: float) -> torch.Tensor:
    """One flow ``(fx, fy)`` pixels per window everywhere."""
    flow = torch.zeros(chunk.num_windows, chunk.batch_size, 2, chunk.height, chunk.width)
    flow[:, :, 0], flow[:, :, 1] = fx, fy
    return flow


def constant_flow_loss(held_out: list[EventWindows], fx: float, fy: float) -> float:
    """Mean contrast loss of a constant flow on the held-out chunks."""
    return float(
        np.mean(
            [float(contrast_maximization_loss(constant_flow(c, fx, fy), c, 0.0)) for c in held_out]
        )
    )


def constant_flow_scores(held_out: list[EventWindows], fx: float, fy: float) -> dict[str, float]:
    """Contrast loss, FWL and RSAT of a constant flow on the held-out chunks."""
    loss, fwl, ratio = [], [], []
    for chunk in held_out:
        flow = constant_flow(chunk, fx, fy)
        loss.append(float(contrast_maximization_loss(flow, chunk, 0.0)))
        fwl.append(float(flow_warp_loss(flow, chunk).mean()))
        ratio.append(float(rsat(flow, chunk).mean()))
    return {"loss": float(np.mean(loss)), "fwl": float(np.mean(fwl)), "rsat": float(np.mean(ratio))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--file", type=Path, default=DEFAULT_FILE)
    parser.add_argument("--num-events", type=int, default=1000, help="events per window")
    parser.add_argument("--chunk", type=int, default=10, help="windows per loss (truncated BPTT)")
    parser.add_argument("--downsample", type=int, default=2)
    parser.add_argument("--channels", type=int, default=8, help="the paper: 32")
    parser.add_argument("--threshold", type=float, default=0.5, help="the paper: 0.8")
    parser.add_argument("--copies", type=int, default=2, help="batch: the recording and flips")
    parser.add_argument("--max-flow", type=float, default=4.0, help="px per window at saturation")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--smoothness", type=float, default=0.1)
    parser.add_argument("--clip-grad", type=float, default=0.0, help="max grad norm (0: off)")
    parser.add_argument("--minutes", type=float, default=4.0, help="training time budget")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not args.file.is_file():  # one line and status 2, not a traceback from the reader
        where = (
            args.file
            if args.file.is_absolute()
            else f"{args.file} (absolute: {args.file.resolve()})"
        )
        print(
            f"{parser.prog}: error: recording not found: {where}; pass --file with the path "
            "of IMU_translBoxes.aedat (in shared/data/event-files/aedat2 beside the repository)",
            file=sys.stderr,
        )
        raise SystemExit(2)
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)

    variants = load_windows(args.file, args.num_events, args.downsample, args.copies)
    total = variants[0].num_windows
    split = int(0.7 * total)
    train = stack_recordings([v.window_slice(0, split) for v in variants])
    held_out = chunks(variants[0], split, total, args.chunk)  # unflipped, never trained on
    train_chunks = chunks(train, 0, split, args.chunk)
    print(f"{total} windows of {args.num_events} events at {train.width}x{train.height}: "
          f"{len(train_chunks)} training chunks x {train.batch_size} (flips), "
          f"{len(held_out)} held-out chunks of {args.chunk}")  # fmt: skip

    grid = [-0.5, -0.25, 0.0, 0.25, 0.5]
    constant = {(fx, fy): constant_flow_loss(held_out, fx, fy) for fx in grid for fy in grid}
    best = min(constant, key=lambda k: constant[k])
    net = SpikingFireNet(channels=args.channels, max_flow=args.max_flow, threshold=args.threshold)
    before = evaluate(net, held_out)
    optimizer = torch.optim.Adam(net.parameters(), lr=args.lr)
    start, epoch, curve = time.time(), 0, []
    while time.time() - start < 60 * args.minutes:
        losses = []
        with SF.streaming(net):  # state carried through the recording, from rest
            for chunk in train_chunks:
                loss = contrast_maximization_loss(
                    net(chunk.counts()), chunk, args.smoothness, mask=chunk.mask()
                )
                optimizer.zero_grad()
                loss.backward()
                if args.clip_grad > 0:
                    torch.nn.utils.clip_grad_norm_(net.parameters(), args.clip_grad)
                optimizer.step()
                SF.detach_net(net)
                losses.append(loss.item())
        epoch += 1
        curve.append(float(np.mean(losses)))
        print(
            f"epoch {epoch:2d}  train loss {curve[-1]:.4f}  ({time.time() - start:.0f} s)",
            flush=True,
        )
    after = evaluate(net, held_out)

    print(f"\ntrain loss: epoch 1 {curve[0]:.4f} -> epoch {epoch} {curve[-1]:.4f}")
    print("held-out windows        contrast loss   FWL (>1 sharper)   RSAT (<1 aligned)")
    rows = [("zero flow", constant_flow_scores(held_out, 0.0, 0.0)),
            (f"best constant {best}", constant_flow_scores(held_out, *best)),
            ("untrained LIF-FireNet", before), ("trained LIF-FireNet", after)]  # fmt: skip
    for name, s in rows:
        print(f"{name:24s} {s['loss']:12.4f} {s['fwl']:16.3f} {s['rsat']:18.3f}")


if __name__ == "__main__":
    main()
