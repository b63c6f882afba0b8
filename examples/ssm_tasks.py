"""snnTorch's SSM-neuron tasks (``examples/ssm_neuron_benchmarks``): the NTM copy task and
associative recall, learnt by the same small network with snnTorch's ``StateLeaky``
(``neurons.StateLeakyNode``), its ``AssociativeLeaky`` (``neurons.AssociativeLeaky``)
and, as a baseline, its ``Leaky`` LIF neuron (``neurons.LeakyNode``).

The network is snnTorch's: ``Linear(width+1 → H)``, neuron, a ReLU MLP (two
``Linear(H → H)`` layers for copy, one for recall, as its two scripts), neuron,
``Linear(H → width)``; all neurons get ``[T, B, H]`` at once (``StateLeaky`` with
``beta = 0.9``, ``AssociativeLeaky`` with an ``√H × √H`` state read by its query
projection, ``Leaky`` with ``beta = 0.9``, subtract reset). The loss is the binary
cross-entropy of the output bits at the masked steps only (copy: the recall half;
recall: the query step), AdamW with gradients clipped to norm 1. Reported on a fixed
test set: the bit error rate, the wrong bits per sequence (pytorch-ntm's "cost"), the
NTM paper's cost per sequence (the binary cross-entropy summed over a sequence's output
bits, in bits: log base 2) and the fraction of sequences recalled without an error.

    python examples/ssm_tasks.py                         # both tasks, the three neurons
    python examples/ssm_tasks.py --task recall --neurons associative stateleaky --steps 3000
    python examples/ssm_tasks.py --task recall --neurons lstm --steps 20000  # the control

``--neurons lstm`` puts ``nn.LSTM`` layers in the neurons' place: a non-spiking control
showing what the same network and budget learn without spikes. For recall the run also
prints the bit error of voting (each bit the majority over the stored values, whichever
key is asked), the floor a network reaches without associating.

The datasets are ``spikeflow.data.datasets.sequence_tasks``; results are in
docs/ssm.md ("snnTorch's SSM-neuron tasks").
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from spikeflow import neurons
from spikeflow.data.datasets.sequence_tasks import (
    AssociativeRecall,
    CopyTask,
    collate_sequence_task,
)

NEURONS = ("lif", "stateleaky", "associative")
BASELINES = ("lstm",)  # non-spiking, not run by default
TASKS = ("copy", "recall")


class LSTMLayer(nn.Module):
    """A one-layer ``nn.LSTM(hidden, hidden)`` on ``[T, B, hidden]`` giving its outputs
    only: the non-spiking control in the neurons' place."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(hidden, hidden)

    def forward(self, x: Tensor) -> Tensor:
        return self.lstm(x)[0]


def make_neuron(kind: str, hidden: int, decay: str, threshold: float = 1.0) -> nn.Module:
    """One layer of ``hidden`` neurons of ``kind`` taking and giving ``[T, B, hidden]``;
    ``decay`` and ``threshold`` are ``AssociativeLeaky``'s (the others keep snnTorch's
    threshold 1)."""
    if kind == "lif":
        return neurons.LeakyNode(beta=0.9)
    if kind == "lstm":
        return LSTMLayer(hidden)
    if kind == "stateleaky":
        return neurons.StateLeakyNode(beta=0.9, channels=hidden)
    if kind == "associative":
        return neurons.AssociativeLeaky.from_num_spiking_neurons(
            in_dim=hidden,
            num_spiking_neurons=hidden,
            use_q_projection=True,
            decay=decay,
            threshold=threshold,
        )
    raise ValueError(f"ssm_tasks: neuron must be one of {NEURONS + BASELINES}, got {kind!r}")


class TaskNet(nn.Module):
    """snnTorch's copy / recall network: ``[T, B, width+1]`` → logits ``[T, B, width]``."""

    def __init__(
        self,
        kind: str,
        width: int,
        hidden: int,
        mid_layers: int,
        decay: str = "snntorch",
        threshold: float = 1.0,
    ) -> None:
        super().__init__()
        self.in_proj = nn.Linear(width + 1, hidden)
        self.neuron1 = make_neuron(kind, hidden, decay, threshold)
        self.mid = nn.Sequential(
            *[m for _ in range(mid_layers) for m in (nn.Linear(hidden, hidden), nn.ReLU())]
        )
        self.neuron2 = make_neuron(kind, hidden, decay, threshold)
        self.out_proj = nn.Linear(hidden, width)

    def forward(self, x: Tensor) -> Tensor:
        h = self.neuron1(self.in_proj(x))
        return self.out_proj(self.neuron2(self.mid(h)))


def masked_metrics(logits: Tensor, target: Tensor, mask: Tensor) -> dict[str, Tensor]:
    """The loss (mean BCE over the masked bits) and the errors of a batch ``[T, B, W]``:
    ``bit_error`` (fraction of masked bits wrong), ``wrong_bits_per_sequence``,
    ``cost_bits_per_sequence`` (the NTM paper's cost: the BCE summed over a sequence's
    masked bits, in bits) and ``sequence_accuracy`` (sequences with no wrong masked bit)."""
    picked = mask.unsqueeze(-1).expand_as(target)
    summed = nn.functional.binary_cross_entropy_with_logits(
        logits[picked], target[picked], reduction="sum"
    )
    wrong = ((logits > 0).float() != target) & picked
    per_sequence = wrong.sum(dim=(0, 2))  # [B]
    return {
        "loss": summed / picked.sum(),
        "bit_error": wrong.sum() / picked.sum(),
        "wrong_bits_per_sequence": per_sequence.float().mean(),
        "cost_bits_per_sequence": summed / math.log(2) / target.shape[1],
        "sequence_accuracy": (per_sequence == 0).float().mean(),
    }


def make_task(args: argparse.Namespace, task: str, samples: int, seed: int):
    if task == "copy":
        return CopyTask(samples, args.width, args.min_length, args.max_length, seed=seed)
    return AssociativeRecall(samples, args.width, args.min_pairs, args.max_pairs, seed=seed)


def voting_bit_error(batches: list[tuple[Tensor, Tensor, Tensor]]) -> float:
    """Recall's floor without association: the bit error of predicting each bit as the
    majority over the sample's stored values (steps 1, 3, …, before the delimiter), a
    tie counted as half an error, whichever key is asked."""
    wrong = bits = 0.0
    for x, target, mask in batches:
        width = target.shape[-1]
        for b in range(x.shape[1]):
            delimiter = int(x[:, b, width].argmax())  # the step 2N
            ones = x[1:delimiter:2, b, :width].sum(dim=0)
            guess = torch.where(2 * ones > delimiter // 2, 1.0, 0.0)
            guess[2 * ones == delimiter // 2] = 0.5
            wrong += float((guess - target[mask[:, b], b]).abs().sum())
            bits += width * int(mask[:, b].sum())
    return wrong / bits


def evaluate(net: nn.Module, batches: list[tuple[Tensor, Tensor, Tensor]]) -> dict[str, float]:
    """Metrics over the whole test set (each batch weighted by its bits / sequences)."""
    net.eval()
    totals = {"loss": 0.0, "wrong": 0.0, "bits": 0.0, "exact": 0.0, "sequences": 0.0}
    with torch.no_grad():
        for x, target, mask in batches:
            m = masked_metrics(net(x), target, mask)
            bits = float(mask.sum()) * target.shape[-1]
            totals["loss"] += float(m["loss"]) * bits
            totals["wrong"] += float(m["bit_error"]) * bits
            totals["bits"] += bits
            totals["exact"] += float(m["sequence_accuracy"]) * x.shape[1]
            totals["sequences"] += x.shape[1]
    net.train()
    return {
        "loss": totals["loss"] / totals["bits"],
        "bit_error": totals["wrong"] / totals["bits"],
        "wrong_bits_per_sequence": totals["wrong"] / totals["sequences"],
        "cost_bits_per_sequence": totals["loss"] / math.log(2) / totals["sequences"],
        "sequence_accuracy": totals["exact"] / totals["sequences"],
    }


def train_one(args: argparse.Namespace, task: str, kind: str) -> dict:
    """Train one network on one task; returns its curve and its final test metrics."""
    torch.manual_seed(args.seed)
    width = args.width
    mid_layers = 2 if task == "copy" else 1
    net = TaskNet(kind, width, args.hidden, mid_layers, args.associative_decay,
                  args.associative_threshold)  # fmt: skip
    optimizer = torch.optim.AdamW(net.parameters(), lr=args.lr)
    train = make_task(args, task, args.steps * args.batch_size, args.seed)
    test = make_task(args, task, args.test_samples, args.seed + 1_000_003)
    test_batches = list(DataLoader(test, batch_size=256, collate_fn=collate_sequence_task))
    loader = DataLoader(train, batch_size=args.batch_size, collate_fn=collate_sequence_task)
    curve = [{"step": 0, **evaluate(net, test_batches)}]
    start = time.time()
    for step, (x, target, mask) in enumerate(loader, start=1):
        loss = masked_metrics(net(x), target, mask)["loss"]
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizer.step()
        if step % args.eval_every == 0 or step == args.steps:
            point = {"step": step, **evaluate(net, test_batches)}
            curve.append(point)
            print(f"{task:6s} {kind:11s} step {step:5d}  loss {point['loss']:.4f}  bit error "
                  f"{point['bit_error']:.4f}  wrong/seq {point['wrong_bits_per_sequence']:.2f}  "
                  f"cost/seq {point['cost_bits_per_sequence']:.2f} bits  "
                  f"exact {point['sequence_accuracy']:.3f}  ({time.time() - start:.0f} s)",
                  flush=True)  # fmt: skip
    size = sum(p.numel() for p in net.parameters())
    result = {"task": task, "neuron": kind, "parameters": size, "seconds": time.time() - start,
              "curve": curve, "final": curve[-1]}  # fmt: skip
    if task == "recall":
        result["voting_bit_error"] = voting_bit_error(test_batches)
        print(f"recall: voting over the stored values errs on "
              f"{result['voting_bit_error']:.4f} of this test set's bits")  # fmt: skip
    return result


def main(argv: list[str] | None = None) -> list[dict]:
    """Train every requested (task, neuron) pair; returns their results in that order."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument("--neurons", nargs="+", choices=NEURONS + BASELINES,
                        default=list(NEURONS),
                        help="lstm: nn.LSTM layers in the neurons' place (a control)")  # fmt: skip
    parser.add_argument("--width", type=int, default=8, help="bits per vector")
    parser.add_argument("--min-length", type=int, default=1, help="copy: shortest sequence")
    parser.add_argument("--max-length", type=int, default=10, help="copy: longest (snnTorch: 20)")
    parser.add_argument("--min-pairs", type=int, default=2, help="recall: fewest pairs")
    parser.add_argument("--max-pairs", type=int, default=6, help="recall: most pairs")
    parser.add_argument("--hidden", type=int, default=64, help="a square (snnTorch: 256)")
    parser.add_argument("--steps", type=int, default=600, help="training steps per network")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--test-samples", type=int, default=512)
    parser.add_argument("--associative-decay", choices=("snntorch", "exact"), default="snntorch")
    parser.add_argument("--associative-threshold", type=float, default=1.0,
                        help="AssociativeLeaky's threshold (snnTorch's default: 1)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="write the results (curves included) to this file")
    args = parser.parse_args(argv)
    root = math.isqrt(args.hidden)
    if "associative" in args.neurons and root * root != args.hidden:
        parser.error(f"--hidden must be a square for AssociativeLeaky, got {args.hidden}")
    if args.steps < 1 or args.eval_every < 1:
        parser.error("--steps and --eval-every must be >= 1")
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        results = [train_one(args, task, kind) for task in args.task for kind in args.neurons]
    finally:
        torch.set_num_threads(threads)  # main() may be called from a larger program
    print("task    neuron       params  bit error  wrong/seq  cost/seq  exact   seconds")
    for r in results:
        f = r["final"]
        print(f"{r['task']:7s} {r['neuron']:11s} {r['parameters']:7d}  {f['bit_error']:9.4f}  "
              f"{f['wrong_bits_per_sequence']:9.2f}  {f['cost_bits_per_sequence']:8.2f}  "
              f"{f['sequence_accuracy']:.3f}  "
              f"{r['seconds']:7.1f}")  # fmt: skip
    if args.json:
        with open(args.json, "w") as file:
            json.dump(results, file, indent=1)
    return results


if __name__ == "__main__":
    main()
