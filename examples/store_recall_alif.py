"""The store-recall memory task (Norse's ``MemoryStoreRecallDataset``, as
:class:`spikeflow.data.datasets.store_recall.StoreRecall`) learnt by an adaptive
recurrent SNN (an LSNN: Bellec et al., NeurIPS 2018), trained by BPTT.

The network: ``Linear(4·population → hidden)``, then a recurrent layer of ALIF neurons
(``layers.Recurrent(neurons.ALIFNode(...))``: adaptive thresholds whose slow decay,
``--tau-adapt`` steps, carries the stored bit across periods), then a ``Linear(hidden
→ 2)`` readout filtered by a leaky integrator (``neurons.LINode``). The readout's mean
over each period is its prediction for that period; the loss is the cross-entropy at
the recall periods only (plus a small firing-rate regulariser), and the accuracy the
fraction of recall periods whose larger readout is the stored bit (chance: 0.5).
``--neuron lif`` trains the same network without adaptation (``beta = 0``) for
comparison.

    python examples/store_recall_alif.py                  # ALIF
    python examples/store_recall_alif.py --neuron lif     # no adaptation

The defaults are a short task, so that a run takes minutes on one CPU thread: 4
periods of 20 steps (store in period 0 or 1, recall in 2 or 3), one repetition, 200 Hz
bits, 2,048 training and 256 test samples (each seeded), 30 epochs of Adam; Norse's
own defaults are ``--seq-length 100 --seq-periods 12 --seq-repetitions 4
--poisson-rate 100``.

Results are in docs/datasets.md ("Store-recall").
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from spikeflow import layers, neurons, surrogate
from spikeflow.data.datasets.store_recall import StoreRecall


def build(args: argparse.Namespace, inputs: int) -> nn.Sequential:
    """``[T, B, inputs]`` spikes in, the readout's membrane ``[T, B, 2]`` out."""
    beta = args.beta if args.neuron == "alif" else 0.0
    cell = neurons.ALIFNode(
        tau=args.tau, tau_adapt=args.tau_adapt, beta=beta, v_threshold=args.v_threshold,
        decay_input=False, detach_reset=True, surrogate_function=surrogate.SuperSpike(),
        step_mode="s",
    )  # fmt: skip
    return nn.Sequential(
        layers.Linear(inputs, args.hidden),
        layers.Recurrent(cell, args.hidden, self_connections=False),
        layers.Linear(args.hidden, 2),
        neurons.LINode(tau=args.tau_out),
    )


def period_logits(readout: Tensor, period_steps: int) -> Tensor:
    """``[T, B, 2]`` → the mean over each period, ``[B, P, 2]``."""
    steps, batch, _ = readout.shape
    return readout.view(steps // period_steps, period_steps, batch, 2).mean(1).transpose(0, 1)


def evaluate(
    net: nn.Sequential, x: Tensor, labels: Tensor, period_steps: int
) -> tuple[Tensor, Tensor, Tensor]:
    """(loss, accuracy, mean firing rate) of ``net`` on a batch ``x`` ``[B, T, C]``."""
    spikes = []
    hook = net[1].register_forward_hook(lambda m, i, out: spikes.append(out))
    try:
        readout = net(x.transpose(0, 1))
    finally:
        hook.remove()
    logits = period_logits(readout, period_steps)
    recall = labels.sum(-1) > 0
    target = labels.argmax(-1)[recall]
    loss = nn.functional.cross_entropy(logits[recall], target)
    accuracy = (logits[recall].argmax(-1) == target).float().mean()
    return loss, accuracy, spikes[0].mean()


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Train and test; returns the last epoch's test ``loss``, ``accuracy`` and ``rate``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--neuron", choices=("alif", "lif"), default="alif")
    parser.add_argument("--train-samples", type=int, default=2048)
    parser.add_argument("--test-samples", type=int, default=256)
    parser.add_argument("--seq-length", type=int, default=20, help="steps per period")
    parser.add_argument("--seq-periods", type=int, default=4)
    parser.add_argument("--seq-repetitions", type=int, default=1)
    parser.add_argument("--population-size", type=int, default=5)
    parser.add_argument("--poisson-rate", type=int, default=200, help="Hz, dt = 1 ms")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--tau", type=float, default=20.0, help="membrane, steps")
    parser.add_argument("--tau-adapt", type=float, default=800.0, help="adaptation, steps")
    parser.add_argument("--beta", type=float, default=1.8, help="threshold raise per spike")
    parser.add_argument("--v-threshold", type=float, default=0.5)
    parser.add_argument("--tau-out", type=float, default=5.0, help="readout, steps")
    parser.add_argument("--rate-target", type=float, default=0.02)
    parser.add_argument("--rate-weight", type=float, default=1.0)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return run(args)
    finally:
        torch.set_num_threads(threads)  # main() may be called from a larger program


def run(args: argparse.Namespace) -> dict[str, float]:
    """Train and test the network the parsed ``args`` of :func:`main` describe; returns
    the last epoch's test loss, accuracy and firing rate."""
    torch.manual_seed(args.seed)

    task = dict(
        seq_length=args.seq_length, seq_periods=args.seq_periods,
        seq_repetitions=args.seq_repetitions, population_size=args.population_size,
        poisson_rate=args.poisson_rate,
    )  # fmt: skip
    train = StoreRecall(args.train_samples, seed=args.seed, **task)
    test = StoreRecall(args.test_samples, seed=args.seed + 1, **task)
    x_test, y_test = next(iter(DataLoader(test, batch_size=len(test))))
    net = build(args, 4 * args.population_size)
    optimizer = torch.optim.Adam(net.parameters(), lr=args.lr)
    loader = DataLoader(train, batch_size=args.batch_size, shuffle=True)
    size = sum(p.numel() for p in net.parameters())
    print(f"{args.neuron}: {size} parameters, T = {x_test.shape[1]} steps, "
          f"{len(train)} train / {len(test)} test samples")  # fmt: skip
    start = time.time()
    result: dict[str, float] = {}
    for epoch in range(1, args.epochs + 1):
        net.train()
        for x, y in loader:
            loss, _, rate = evaluate(net, x, y, args.seq_length)
            loss = loss + args.rate_weight * (rate - args.rate_target) ** 2
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        net.eval()
        with torch.no_grad():
            loss, accuracy, rate = evaluate(net, x_test, y_test, args.seq_length)
        print(f"epoch {epoch:3d}  test loss {loss.item():.4f}  accuracy {accuracy.item():.4f}  "
              f"rate {rate.item():.4f}  ({time.time() - start:.0f} s)", flush=True)  # fmt: skip
        result = {"loss": loss.item(), "accuracy": accuracy.item(), "rate": rate.item()}
    return result


if __name__ == "__main__":
    main()
