"""Spiking LSTMs on text: surnames by language, and a character-level language model.

``names``: SpikingJelly's ``spiking_lstm_text.py`` task. Each surname of the PyTorch
char-RNN tutorial's data (``root/names/<Language>.txt``, 18 languages;
:class:`spikeflow.data.NamesByLanguage`) is a sequence of one-hot letters ``[L, 57]``;
a :class:`spikeflow.layers.SpikingLSTM` reads it and a linear layer classifies its
output at the name's last letter (the batch is padded by
:func:`spikeflow.data.pad_collate`; a forward LSTM's output there does not see the
padding). Reported: test accuracy, against chance (one over the languages) and the
share of the largest language.

``charlm``: the same layer as a character-level language model on a real corpus that
ships with Python, ``pydoc_data.topics.topics`` (the topics in sorted-key order, as
``examples/spikegpt_text.py`` reads them; first 90% of the characters train, last 10%
validate). Each character is one-hot over the corpus's characters; the spiking LSTM and
a float ``torch.nn.LSTM`` of the same size (the same parameter count) train for the
same steps on the same batches. The spiking LSTM's gates spike with :class:`DampedErf`
(``--damping``, default 0.1): with the undamped ``Erf`` its gradient explodes through
time and it learns hardly more than the character frequencies (docs/layers.md).
Reported: validation bits per character (every
validation character after the first, in windows of ``--context`` from a zero state:
``spikegpt_text.bits_per_byte``) against the character frequencies alone
(:func:`unigram_bits`, no context), the largest gradient norm before clipping, the
spiking LSTM's firing rate, the wall time.

    python examples/spiking_lstm_text.py charlm                  # both models
    python examples/spiking_lstm_text.py charlm --model spiking --steps 200
    python examples/spiking_lstm_text.py charlm --model spiking --damping 1  # plain Erf
    python examples/spiking_lstm_text.py names --root data       # data/names/*.txt
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from functools import partial

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from spikegpt_text import bits_per_byte

from spikeflow.data import NAME_LETTERS, NamesByLanguage, pad_collate
from spikeflow.errors import ConfigurationError
from spikeflow.layers import SpikingLSTM
from spikeflow.surrogate import Erf, Surrogate

KINDS = ("spiking", "lstm")


class DampedErf(Surrogate):
    """SpikingJelly's ``Erf`` spike (the layer's default) with its surrogate derivative
    multiplied by ``damping``: ``damping (alpha / sqrt(pi)) exp(-alpha^2 x^2)``.

    The dampening factor of Bellec et al. 2018 (LSNN, their 0.3): through time the
    gradient of a spiking LSTM passes one gate derivative per step, so a factor below 1
    shrinks the contribution of a step ``k`` steps back by ``damping ** k``. With the
    undamped Erf (peak 1.13) the backpropagated gradient of 128-step windows explodes
    (norms up to 1e13 before clipping) and the clipped update follows the longest
    paths. ``damping = 1`` is exactly :class:`~spikeflow.surrogate.Erf`.
    """

    def __init__(self, alpha: float = 2.0, damping: float = 0.1) -> None:
        if not 0.0 < damping <= 1.0:
            raise ConfigurationError(f"DampedErf: damping must be in (0, 1], got {damping!r}")
        super().__init__(spiking=True, alpha=alpha, damping=damping)

    @staticmethod
    def derivative(x: Tensor, alpha: float, damping: float) -> Tensor:
        return damping * Erf.derivative(x, alpha)


def make_rnn(
    kind: str, input_size: int, hidden: int, layers: int, damping: float = 1.0
) -> nn.Module:
    """A :class:`~spikeflow.layers.SpikingLSTM` (``"spiking"``, gates spiking with
    :class:`DampedErf` of ``damping``; 1: the layer's default ``Erf``) or a
    ``torch.nn.LSTM`` (``"lstm"``): the same parameter count, both time-major."""
    if kind == "spiking":
        return SpikingLSTM(input_size, hidden, layers, surrogate_function1=DampedErf(2.0, damping))
    return nn.LSTM(input_size, hidden, layers)


def last_steps(y: Tensor, mask: Tensor) -> Tensor:
    """Each sample's output at its last real step: ``y`` ``[T, B, F]``, ``mask``
    ``[T, B]`` (True on real steps, a prefix of each column) -> ``[B, F]``."""
    lengths = mask.sum(0)
    return y[lengths - 1, torch.arange(y.shape[1])]


class NameClassifier(nn.Module):
    """One-hot letters ``[T, B, 57]`` (padded) and their mask -> language logits."""

    def __init__(self, kind: str, hidden: int, languages: int, layers: int = 1) -> None:
        super().__init__()
        self.rnn = make_rnn(kind, len(NAME_LETTERS), hidden, layers)
        self.head = nn.Linear(hidden, languages)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return self.head(last_steps(self.rnn(x)[0], mask))


class CharLM(nn.Module):
    """Character ids ``[T, B]`` -> one-hot -> LSTM -> next-character logits ``[T, B, V]``."""

    def __init__(
        self, kind: str, vocab: int, hidden: int, layers: int = 1, damping: float = 1.0
    ) -> None:
        super().__init__()
        self.vocab = vocab
        self.rnn = make_rnn(kind, vocab, hidden, layers, damping)
        self.head = nn.Linear(hidden, vocab)

    def hidden_outputs(self, ids: Tensor) -> Tensor:
        """The last layer's output at every step (spikes for the spiking LSTM)."""
        return self.rnn(F.one_hot(ids, self.vocab).to(self.head.weight.dtype))[0]

    def forward(self, ids: Tensor) -> Tensor:
        return self.head(self.hidden_outputs(ids))


def corpus(chars: int | None = None) -> tuple[Tensor, Tensor, str]:
    """Python's topics documentation as character ids: the training ids (first 90%),
    the validation ids (last 10%) and the vocabulary (the text's characters, sorted).
    ``chars``: only the first ``chars`` characters of the text (a quick run)."""
    from pydoc_data.topics import topics

    text = "".join(topics[key] for key in sorted(topics))[:chars]
    vocabulary = "".join(sorted(set(text)))
    index = {c: i for i, c in enumerate(vocabulary)}
    ids = torch.tensor([index[c] for c in text], dtype=torch.long)
    cut = int(0.9 * len(ids))
    return ids[:cut], ids[cut:], vocabulary


def unigram_bits(train: Tensor, val: Tensor, vocab: int) -> float:
    """Bits per character of the context-free baseline: every validation character after
    the first (the characters ``bits_per_byte`` scores) coded with the training split's
    character frequencies (add-one smoothed, so a character unseen in training costs a
    finite number of bits). A language model that beats it uses context."""
    counts = torch.bincount(train, minlength=vocab).double() + 1.0
    log_p = (counts / counts.sum()).log2()
    return float(-log_p[val[1:]].mean())


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def train_charlm(kind: str, args: argparse.Namespace, train: Tensor, val: Tensor, vocab: int):
    """Train one language model (the same batches for either kind); its results."""
    torch.manual_seed(args.seed)
    model = CharLM(kind, vocab, args.hidden, args.layers, args.damping)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / args.steps))
    )
    batches = torch.Generator().manual_seed(args.seed)
    start, losses, norms = time.time(), [], []
    for step in range(args.steps):
        at = torch.randint(0, len(train) - args.context - 1, (args.batch,), generator=batches)
        window = torch.stack([train[s : s + args.context + 1] for s in at.tolist()], 1)
        loss = F.cross_entropy(model(window[:-1]).flatten(0, 1), window[1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        norms.append(float(nn.utils.clip_grad_norm_(model.parameters(), 1.0)))
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if (step + 1) % args.log_every == 0:
            recent = sum(losses[-args.log_every :]) / args.log_every
            print(
                f"{kind} step {step + 1}: train loss {recent / math.log(2):.3f} bits/char, "
                f"largest gradient norm (before clipping) {max(norms[-args.log_every :]):.3g}"
            )
    result = {
        "model": kind,
        "hidden": args.hidden,
        "layers": args.layers,
        "parameters": count(model),
        "steps": args.steps,
        "train_seconds": round(time.time() - start, 1),
        "max_grad_norm": float(f"{max(norms):.3g}"),
        "val_bits_per_char": round(bits_per_byte(model, val, args.context, args.batch), 4),
    }
    if kind == "spiking":
        result["damping"] = args.damping
        with torch.no_grad():
            n = min(len(val) // args.context, args.batch)
            ids = val[: n * args.context].view(n, args.context).t()
            result["firing_rate"] = round(float(model.hidden_outputs(ids).mean()), 4)
    print(json.dumps(result), flush=True)
    return result


@torch.no_grad()
def accuracy(model: NameClassifier, loader: DataLoader) -> float:
    model.eval()
    correct = total = 0
    for x, labels, mask in loader:
        correct += int((model(x, mask).argmax(1) == labels).sum())
        total += len(labels)
    model.train()
    return correct / total


def train_names(kind: str, args: argparse.Namespace) -> dict:
    """Train one name classifier on ``args.root``; its results."""
    train_set = NamesByLanguage(args.root, "train", seed=args.seed)
    test_set = NamesByLanguage(args.root, "test", seed=args.seed)
    collate = partial(pad_collate, time_major=True)
    torch.manual_seed(args.seed)
    loader = DataLoader(train_set, args.batch, shuffle=True, collate_fn=collate)
    test_loader = DataLoader(test_set, 256, collate_fn=collate)
    model = NameClassifier(kind, args.hidden, len(train_set.classes), args.layers)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    start = time.time()
    for epoch in range(args.epochs):
        total = 0.0
        for x, labels, mask in loader:
            loss = F.cross_entropy(model(x, mask), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(labels)
        acc = accuracy(model, test_loader)
        print(f"{kind} epoch {epoch + 1}: loss {total / len(train_set):.3f}, test acc {acc:.4f}")
    largest = max(test_set.targets.count(c) for c in range(len(test_set.classes)))
    result = {
        "model": kind,
        "languages": len(train_set.classes),
        "train_names": len(train_set),
        "test_names": len(test_set),
        "epochs": args.epochs,
        "train_seconds": round(time.time() - start, 1),
        "test_accuracy": round(acc, 4),
        "chance": round(1 / len(test_set.classes), 4),
        "largest_language_share": round(largest / len(test_set), 4),
    }
    print(json.dumps(result), flush=True)
    return result


def main(argv: list[str] | None = None) -> list[dict]:
    """Run the task the command line names (``argv``); the results of each model."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    tasks = parser.add_subparsers(dest="task", required=True)
    names = tasks.add_parser("names", help="classify surnames by language")
    names.add_argument("--root", required=True, help="the folder that holds names/*.txt")
    names.add_argument("--epochs", type=int, default=5)
    names.add_argument("--batch", type=int, default=64)
    names.add_argument("--lr", type=float, default=1e-3)
    lm = tasks.add_parser("charlm", help="a character-level language model on pydoc_data")
    lm.add_argument("--steps", type=int, default=2000)
    lm.add_argument("--batch", type=int, default=32)
    lm.add_argument("--context", type=int, default=128)
    lm.add_argument("--lr", type=float, default=2e-3)
    lm.add_argument("--chars", type=int, help="use only the text's first CHARS characters")
    lm.add_argument("--log-every", type=int, default=100)
    lm.add_argument(
        "--damping",
        type=float,
        default=0.1,
        help="the spiking LSTM's surrogate-gradient dampening (DampedErf; 1: plain Erf)",
    )
    for task in (names, lm):
        task.add_argument("--model", choices=[*KINDS, "both"], default="both")
        task.add_argument("--hidden", type=int, default=256)
        task.add_argument("--layers", type=int, default=1)
        task.add_argument("--seed", type=int, default=0)
        task.add_argument("--threads", type=int, default=1)
        task.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    kinds = KINDS if args.model == "both" else (args.model,)
    if args.task == "names":
        results = [train_names(kind, args) for kind in kinds]
    else:
        train, val, vocabulary = corpus(args.chars)
        print(f"corpus: {len(train)} training and {len(val)} validation characters, "
              f"{len(vocabulary)} distinct")  # fmt: skip
        unigram = round(unigram_bits(train, val, len(vocabulary)), 4)
        print(f"character frequencies alone (no context): {unigram} bits/char")
        results = [train_charlm(kind, args, train, val, len(vocabulary)) for kind in kinds]
        for result in results:
            result["unigram_val_bits_per_char"] = unigram
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    return results


if __name__ == "__main__":
    from spikeflow.data import exit_on_missing_data

    exit_on_missing_data(main, root_option="--root", dataset="the names data")
