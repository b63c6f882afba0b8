"""A Hugging Face RoBERTa classifier quantised in SpikeZIP-TF's layout, trained on real
text and converted in one call with :func:`~spikeflow.conversion.convert_spikezip_qann`.

The task: which of four modules of CPython's own standard library (``argparse``,
``tarfile``, ``_pydecimal``, ``turtle``, read from the running Python's ``Lib``) a line
of source comes from. Lines of 8 characters or more (stripped), each kept once (a line
found twice anywhere is dropped), at most ``--lines`` per module, 80 % train / 20 % test;
each is its first 32 bytes as tokens (byte + 3; ``<s>`` = 0 first, padding = 1), so a
batch has sequences of different lengths and an attention mask.

The model: a ``transformers`` ``RobertaForSequenceClassification`` (hidden 32, 2 layers
of 4 heads, MLP 64), each layer's ``attention.self`` replaced by SpikeZIP-TF's quantised
self-attention (``query_quan``, ``key_quan``, ``value_quan``, ``attn_quan``,
``after_attn_quan``: straight-through floor, learnable step, ``--level`` levels) and its
MLP activation by a ReLU then an unsigned quantiser. Quantisation-aware training from
scratch (AdamW, ``--train-steps`` batches of 64, default 800), the steps first set to the 99th
percentile of |input| / ``pos_max``. The trained QANN is converted as it is (no wrapper
written by hand) and run in float64: the QANN's accuracy on every test line, then on the
first ``--test-lines`` (the test lines are shuffled) the accuracy of the QANN and of the
SNN after T steps (ids and mask sent once, the answer the running sum of the logits), and
the share of those lines whose SNN logits equal the QANN's to 1e-9.

    python examples/convert_spikezip_roberta_text.py
"""

from __future__ import annotations

import argparse
import sysconfig
import time
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from spikeflow.conversion import convert_spikezip_qann, floor_ste

MODULES = ("argparse.py", "tarfile.py", "_pydecimal.py", "turtle.py")
STEPS = (1, 2, 4, 8, 16, 32, 64, 96)
BOS, PAD, OFFSET = 0, 1, 3


def load_lines(per_module: int, max_bytes: int, seed: int) -> tuple[Tensor, ...]:
    """Train and test ``(ids, mask, labels)``: lines of :data:`MODULES` as byte tokens."""
    lib = Path(sysconfig.get_paths()["stdlib"])
    lines = {m: [s.strip() for s in (lib / m).read_text("utf-8").splitlines()] for m in MODULES}
    counts: dict[str, int] = {}
    for module_lines in lines.values():
        for line in module_lines:
            counts[line] = counts.get(line, 0) + 1
    gen = torch.Generator().manual_seed(seed)
    train, test = [], []
    for label, module in enumerate(MODULES):
        kept = [s for s in lines[module] if len(s) >= 8 and counts[s] == 1]
        order = torch.randperm(len(kept), generator=gen)[:per_module].tolist()
        chosen = [(kept[i], label) for i in order]
        cut = int(0.8 * len(chosen))
        train += chosen[:cut]
        test += chosen[cut:]
    test = [test[i] for i in torch.randperm(len(test), generator=gen).tolist()]  # mixed
    return (*_encode(train, max_bytes), *_encode(test, max_bytes))


def _encode(rows: list[tuple[str, int]], max_bytes: int) -> tuple[Tensor, Tensor, Tensor]:
    ids = torch.full((len(rows), max_bytes + 1), PAD, dtype=torch.long)
    for i, (line, _) in enumerate(rows):
        data = list(line.encode("utf-8")[:max_bytes])
        ids[i, : len(data) + 1] = torch.tensor([BOS] + [b + OFFSET for b in data])
    labels = torch.tensor([label for _, label in rows])
    return ids, (ids != PAD).long(), labels


class Quan(nn.Module):
    """SpikeZIP-TF's quantiser ``s·clip(floor(x/s + 1/2), neg_min, pos_max)`` with a
    straight-through floor and a learnable step."""

    def __init__(self, level: int, sym: bool = True) -> None:
        super().__init__()
        self.level, self.sym = level, sym
        self.s = nn.Parameter(torch.tensor(0.1))
        pos, neg = (level // 2 - 1, -(level // 2)) if sym else (level - 1, 0)
        self.register_buffer("pos_max", torch.tensor(float(pos)))
        self.register_buffer("neg_min", torch.tensor(float(neg)))

    def forward(self, x: Tensor) -> Tensor:
        q = floor_ste(x / self.s + 0.5).clamp(float(self.neg_min), float(self.pos_max))
        return q * self.s


class QSelfAttention(nn.Module):
    """SpikeZIP-TF's quantised RoBERTa self-attention, called as Hugging Face 5 calls
    ``attention.self`` (returns ``(output, weights)``); the layer's own query, key,
    value and dropout."""

    def __init__(self, own: nn.Module, level: int) -> None:
        super().__init__()
        self.num_attention_heads = own.num_attention_heads
        self.attention_head_size = own.attention_head_size
        self.all_head_size = own.all_head_size
        self.query, self.key, self.value, self.dropout = own.query, own.key, own.value, own.dropout
        self.query_quan, self.key_quan, self.value_quan = Quan(level), Quan(level), Quan(level)
        self.attn_quan, self.after_attn_quan = Quan(level, sym=False), Quan(level)

    def heads(self, x: Tensor) -> Tensor:
        shape = x.size()[:-1] + (self.num_attention_heads, self.attention_head_size)  # noqa: RUF005
        return x.view(shape).permute(0, 2, 1, 3)

    def forward(self, hidden_states: Tensor, attention_mask: Tensor | None = None, **kwargs):
        q = self.heads(self.query_quan(self.query(hidden_states)))
        k = self.heads(self.key_quan(self.key(hidden_states)))
        v = self.heads(self.value_quan(self.value(hidden_states)))
        scores = q @ k.transpose(-1, -2) / self.attention_head_size**0.5
        if attention_mask is not None:
            scores = scores + attention_mask
        probs = self.attn_quan(self.dropout(scores.softmax(-1)))
        context = self.after_attn_quan(probs @ v).permute(0, 2, 1, 3).contiguous()
        return context.view(context.size()[:-2] + (self.all_head_size,)), None  # noqa: RUF005


def build(level: int, length: int) -> nn.Module:
    """The quantised ``RobertaForSequenceClassification``."""
    from transformers import RobertaConfig, RobertaForSequenceClassification

    config = RobertaConfig(
        vocab_size=256 + OFFSET, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=length + PAD + 1, hidden_act="relu",
        num_labels=len(MODULES), pad_token_id=PAD, bos_token_id=BOS, eos_token_id=2,
        attn_implementation="eager", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    model = RobertaForSequenceClassification(config)
    for layer in model.roberta.encoder.layer:
        layer.attention.self = QSelfAttention(layer.attention.self, level)
        layer.intermediate.intermediate_act_fn = nn.Sequential(nn.ReLU(), Quan(level, sym=False))
    return model


@torch.no_grad()
def init_steps(model: nn.Module, ids: Tensor, mask: Tensor) -> None:
    """Each quantiser's ``s``: the 99th percentile of ``|input|`` over ``pos_max``."""

    def hook(m: Quan, args: tuple[Tensor]) -> None:
        top = torch.quantile(args[0].abs().flatten()[:100_000], 0.99)
        m.s.fill_(max(float(top) / float(m.pos_max), 1e-3))

    handles = [m.register_forward_pre_hook(hook) for m in model.modules() if isinstance(m, Quan)]
    model(ids, attention_mask=mask)
    for handle in handles:
        handle.remove()


def train(model: nn.Module, data: tuple[Tensor, Tensor, Tensor], steps: int, seed: int) -> None:
    """AdamW (lr 3e-3, cosine), batches of 64 drawn at random; each step kept >= 1e-4."""
    ids, mask, labels = data
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    model.train()
    for step in range(steps):
        batch = torch.randint(0, len(ids), (64,), generator=gen)
        logits = model(ids[batch], attention_mask=mask[batch]).logits
        loss = F.cross_entropy(logits, labels[batch])
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
        with torch.no_grad():  # a step stays positive (weight decay and the gradient may not)
            for m in model.modules():
                if isinstance(m, Quan):
                    m.s.clamp_(min=1e-4)
        if step % 100 == 0 or step == steps - 1:
            print(f"step {step}: loss {loss.item():.3f}")
    model.eval()


def main(argv: list[str] | None = None) -> dict[str, object]:
    """Train, convert, print the table; returns what it printed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-steps", type=int, default=800)
    parser.add_argument("--lines", type=int, default=1000, help="lines per module")
    parser.add_argument("--level", type=int, default=16, help="levels of a quantiser")
    parser.add_argument("--max-bytes", type=int, default=32)
    parser.add_argument("--test-lines", type=int, default=200, help="the SNN on the first N")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    start = time.time()
    tr_ids, tr_mask, tr_y, te_ids, te_mask, te_y = load_lines(args.lines, args.max_bytes, args.seed)
    model = build(args.level, args.max_bytes + 1)
    init_steps(model, tr_ids[:256], tr_mask[:256])
    train(model, (tr_ids, tr_mask, tr_y), args.train_steps, args.seed)
    qann = model.double().eval()
    with torch.no_grad():
        qann_out = qann(te_ids, attention_mask=te_mask).logits
    qann_acc, all_lines = float((qann_out.argmax(1) == te_y).double().mean()), len(te_ids)
    te_ids, te_mask, te_y, qann_out = (
        t[: args.test_lines] for t in (te_ids, te_mask, te_y, qann_out)
    )
    qann_first = float((qann_out.argmax(1) == te_y).double().mean())
    snn, report = convert_spikezip_qann(qann, "roberta", mask_argument="attention_mask")
    steps = list(STEPS)
    sums = torch.cat([
        snn.accumulate(te_ids[i : i + 50], max(steps), mask=te_mask[i : i + 50])
        for i in range(0, len(te_ids), 50)
    ], 1)  # fmt: skip
    accs = [float((sums[t - 1].argmax(1) == te_y).double().mean()) for t in steps]
    gap = [(sums[t - 1] - qann_out).abs().amax(1) for t in steps]
    exact = [float((g <= 1e-9).double().mean()) for g in gap]
    print(
        f"{len(tr_ids)} train / {all_lines} test lines, {len(report.converted)} neuron layers, "
        f"chance {100 / len(MODULES):.0f} %"
    )
    print(f"QANN test accuracy (all {all_lines} test lines): {100 * qann_acc:.2f} %")
    print(f"the first {len(te_ids)} test lines:")
    print("| | QANN | " + " | ".join(f"T={t}" for t in steps) + " |")
    row = " | ".join(f"{100 * a:.2f}" for a in accs)
    print(f"| accuracy | {100 * qann_first:.2f} | {row} |")
    print("| SNN = QANN (% of lines) | | " + " | ".join(f"{100 * e:.1f}" for e in exact) + " |")
    print(f"{time.time() - start:.0f} s")
    return {"qann_all": qann_acc, "qann": qann_first, "snn": accs, "exact": exact, "steps": steps}


if __name__ == "__main__":
    main()
