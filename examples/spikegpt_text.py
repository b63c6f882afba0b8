"""Byte-level language modelling with SpikeGPT on a real English corpus, on the CPU.

The corpus is Python's own documentation of its syntax and statements,
``pydoc_data.topics.topics`` (shipped with every CPython): the topics concatenated in
sorted-key order and encoded as UTF-8 bytes (466 kB with CPython 3.11). The first 90%
of the bytes are the training split, the last 10% the validation split.

Three models of the same size train for the same number of steps on the same batches:
SpikeGPT (``spike_gpt``), the same network without the binary embedding and the neurons
(RWKV-4, ``spiking=False``) and a 2-layer LSTM with as many parameters. Reported:
validation bits per byte (the mean cross-entropy over every byte of the validation split
in windows of ``--context`` bytes, in bits), the firing rates of SpikeGPT's spikes, a
sample generated from a prompt, and the wall time. ``--l2wrap`` adds RWKV-4's and
SpikeGPT's logits regulariser (:func:`spikeflow.losses.l2wrap`, their factor 1e-4) to
every model's training loss, as SpikeGPT's own training does.

    python examples/spikegpt_text.py                 # all three, the default budget
    python examples/spikegpt_text.py --model spikegpt --steps 50
    python examples/spikegpt_text.py --model spikegpt --l2wrap
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch
from torch import Tensor, nn

from spikeflow.losses import l2wrap
from spikeflow.models import create_model
from spikeflow.monitor import OutputMonitor
from spikeflow.neurons import LIFNode

PROMPT = "The for statement"


def corpus() -> tuple[Tensor, Tensor]:
    """The training and validation bytes (``uint8`` as ``long``), split 90/10."""
    from pydoc_data.topics import topics

    data = "".join(topics[key] for key in sorted(topics)).encode("utf-8")
    ids = torch.tensor(list(data), dtype=torch.long)
    cut = int(0.9 * len(ids))
    return ids[:cut], ids[cut:]


class ByteLSTM(nn.Module):
    """Embedding → ``n_layers`` LSTM → linear head; time-major ``[T, B]`` → logits."""

    def __init__(self, hidden: int, n_layers: int = 2) -> None:
        super().__init__()
        self.emb = nn.Embedding(256, hidden)
        self.lstm = nn.LSTM(hidden, hidden, n_layers)
        self.head = nn.Linear(hidden, 256)

    def forward(self, tokens: Tensor) -> Tensor:
        return self.head(self.lstm(self.emb(tokens))[0])


def lstm_of_size(parameters: int) -> ByteLSTM:
    """The widest 2-layer :class:`ByteLSTM` with at most ``parameters`` parameters."""
    hidden = 8
    while sum(p.numel() for p in ByteLSTM(hidden + 1).parameters()) <= parameters:
        hidden += 1
    return ByteLSTM(hidden)


def build(name: str, args: argparse.Namespace) -> nn.Module:
    size = {"d_model": args.d_model, "n_layers": args.layers, "context": args.context}
    if name == "lstm":
        return lstm_of_size(count(build("rwkv", args)))
    return create_model("spike_gpt", spiking=name == "spikegpt", **size)


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def bits_per_byte(model: nn.Module, val: Tensor, context: int, batch: int) -> float:
    """Mean cross-entropy in bits over every byte of ``val`` after its first, in
    non-overlapping windows of ``context`` predictions (each from a fresh state)."""
    model.eval()
    starts = range(0, len(val) - 1, context)
    full = [s for s in starts if s + context + 1 <= len(val)]
    groups = [full[i : i + batch] for i in range(0, len(full), batch)]
    groups += [[s] for s in starts if s not in full]  # the shorter last window
    total, counted = 0.0, 0
    for group in groups:
        steps = min(context, len(val) - 1 - group[0])
        x = torch.stack([val[s : s + steps] for s in group], 1)
        y = torch.stack([val[s + 1 : s + steps + 1] for s in group], 1)
        loss = nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten(), reduction="sum")
        total += float(loss)
        counted += y.numel()
    model.train()
    return total / counted / math.log(2)


@torch.no_grad()
def firing_rates(model: nn.Module, val: Tensor, context: int) -> dict[str, float]:
    """Mean spikes per neuron and token of each LIF layer, and of the binary embedding,
    on the first ``8 × context`` validation bytes."""
    model.eval()
    x = val[: 8 * context].view(8, context).t()
    with OutputMonitor(model, LIFNode, lambda s: float(s.mean())) as monitor:
        embedded = model.binary_embedding(model.emb(x))
        model(x)
    rates = {"binary_embedding": float(embedded.mean())}
    for name, records in zip(monitor.monitored_layers, monitor.records):
        rates[name] = records[0] if isinstance(records, list) else records
    model.train()
    return rates


def train(name: str, args: argparse.Namespace, train_ids: Tensor, val: Tensor) -> dict:
    torch.manual_seed(args.seed)
    model = build(name, args)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.99))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / args.steps))
    )
    batches = torch.Generator().manual_seed(args.seed)  # the same batches for every model
    start, losses = time.time(), []
    for step in range(args.steps):
        at = torch.randint(0, len(train_ids) - args.context - 1, (args.batch,), generator=batches)
        window = torch.stack([train_ids[s : s + args.context + 1] for s in at.tolist()], 1)
        logits = model(window[:-1])
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), window[1:].flatten())
        if args.l2wrap:  # the same value; the backward also pulls the top logits to 0
            loss = l2wrap(loss, logits)
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if (step + 1) % args.log_every == 0:
            recent = sum(losses[-args.log_every :]) / args.log_every
            print(f"{name} step {step + 1}: train loss {recent:.3f} nats/byte", flush=True)
    seconds = time.time() - start
    result = {
        "model": name,
        "parameters": count(model),
        "steps": args.steps,
        "l2wrap": args.l2wrap,
        "train_seconds": round(seconds, 1),
        "val_bits_per_byte": round(bits_per_byte(model, val, args.context, args.batch), 4),
    }
    if name != "lstm":
        prompt = torch.tensor(list(PROMPT.encode()), dtype=torch.long)[:, None]
        sample = model.generate(
            prompt,
            args.sample_bytes,
            temperature=0.8,
            top_p=0.9,
            beyond_context=True,
            generator=torch.Generator().manual_seed(args.seed),
        )
        text = bytes(prompt[:, 0].tolist() + sample[:, 0].tolist())
        result["sample"] = text.decode("utf-8", errors="replace")
    if name == "spikegpt":
        result["firing_rates"] = {
            k: round(v, 4) for k, v in firing_rates(model, val, args.context).items()
        }
    print(json.dumps(result, indent=1), flush=True)
    return result


def main(argv: list[str] | None = None) -> list[dict]:
    """Train the chosen models (command-line arguments ``argv``); their results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=["spikegpt", "rwkv", "lstm", "all"], default="all")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--context", type=int, default=128)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sample-bytes", type=int, default=300)
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--l2wrap", action="store_true", help="train with L2Wrap (RWKV-4/SpikeGPT's logits term)"
    )
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    train_ids, val = corpus()
    print(f"corpus: {len(train_ids)} training bytes, {len(val)} validation bytes")
    names = ["spikegpt", "rwkv", "lstm"] if args.model == "all" else [args.model]
    results = [train(name, args, train_ids, val) for name in names]
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    return results


if __name__ == "__main__":
    main()
