"""A QANN in SpikeZIP-TF's own ViT layout, trained on scikit-learn's digits and imported
with :func:`~spikeflow.conversion.convert_spikezip_qann`.

The model is written as the SpikeZIP-TF code writes its quantised ViT: quantiser modules
carrying ``s``, ``pos_max``, ``neg_min``, ``level`` and ``sym`` (a straight-through floor
and a learnable step, as SpikeZIP-TF trains them), an attention with ``qkv``, ``proj``
and ``quan_q/quan_k/quan_v/attn_quan/after_attn_quan/quan_proj``, and an MLP with a ReLU
before an unsigned quantiser. It is trained (AdamW, cosine schedule), converted without
rewriting, and the test accuracy of the QANN and of the SNN after T = 1, 2, 4, ..., 64
steps is printed (the image is sent once, at the first step; the answer is the running
sum of the output), with the share of test images whose SNN output equals the QANN's
(float64, to 1e-9). With SpikingJelly installed, its ``SpikeZIPTFQANNRecipe`` runs the
same QANN on the first 40 test images and the largest difference of the two SNNs'
outputs over all steps is printed.

    python examples/convert_spikezip_digits.py
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch
from torch import Tensor, nn

from spikeflow.conversion import convert_spikezip_qann, floor_ste, impulse_input

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from convert_digits import accumulated_accuracies, fit, load_digits_split

STEPS = (1, 2, 4, 8, 16, 32, 64)


class Quan(nn.Module):
    """SpikeZIP-TF's quantiser: ``s·clip(floor(x/s + 1/2), neg_min, pos_max)``, ``level``
    integers (signed: ``-level/2..level/2-1``; unsigned: ``0..level-1``)."""

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


class QAttention(nn.Module):
    """SpikeZIP-TF's quantised ViT attention."""

    def __init__(self, dim: int, heads: int, level: int) -> None:
        super().__init__()
        self.num_heads, self.head_dim = heads, dim // heads
        self.scale = self.head_dim**-0.5
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.quan_q, self.quan_k, self.quan_v = Quan(level), Quan(level), Quan(level)
        self.attn_quan = Quan(level, sym=False)  # probabilities: >= 0
        self.after_attn_quan, self.quan_proj = Quan(level), Quan(level)
        self.attn_drop, self.proj_drop = nn.Dropout(0.0), nn.Dropout(0.0)

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k, v = self.quan_q(q), self.quan_k(k), self.quan_v(v)
        attn = self.attn_quan(((q * self.scale) @ k.transpose(-2, -1)).softmax(-1))
        x = self.after_attn_quan(self.attn_drop(attn) @ v).transpose(1, 2).reshape(b, n, c)
        return self.quan_proj(self.proj_drop(self.proj(x)))


class Block(nn.Module):
    """Pre-norm block: quantised norms, the attention, a ReLU MLP, residual sums."""

    def __init__(self, dim: int, heads: int, level: int) -> None:
        super().__init__()
        self.norm1, self.norm1_quan = nn.LayerNorm(dim), Quan(level)
        self.attn = QAttention(dim, heads, level)
        self.norm2, self.norm2_quan = nn.LayerNorm(dim), Quan(level)
        self.fc1, self.act, self.fc1_quan = nn.Linear(dim, 2 * dim), nn.ReLU(), Quan(level, False)
        self.fc2, self.fc2_quan = nn.Linear(2 * dim, dim), Quan(level)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1_quan(self.norm1(x)))
        h = self.fc1_quan(self.act(self.fc1(self.norm2_quan(self.norm2(x)))))
        return x + self.fc2_quan(self.fc2(h))


class QViT(nn.Module):
    """Patches of 2 of the 8x8 digit (16 tokens), class token, position embedding,
    ``depth`` blocks, norm, head on the class token (the forward SpikeZIP-TF's ViT has)."""

    def __init__(self, dim: int, depth: int, level: int) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(1, dim, 2, stride=2)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, 17, dim) * 0.02)
        self.blocks = nn.Sequential(*[Block(dim, 4, level) for _ in range(depth)])
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, 10)

    def forward(self, x: Tensor) -> Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        return self.head(self.norm(self.blocks(x))[:, 0])


@torch.no_grad()
def init_steps(model: nn.Module, x: Tensor) -> None:
    """Each quantiser's ``s``: the 99th percentile of ``|input|`` over ``pos_max``."""
    handles = []
    for module in model.modules():
        if isinstance(module, Quan):

            def hook(m: Quan, args: tuple[Tensor]) -> None:
                top = torch.quantile(args[0].abs().flatten()[:100_000], 0.99)
                m.s.fill_(max(float(top) / float(m.pos_max), 1e-3))

            handles.append(module.register_forward_pre_hook(hook))
    model(x)
    for handle in handles:
        handle.remove()


def train(model: nn.Module, x: Tensor, y: Tensor, epochs: int) -> None:
    """AdamW (lr 2e-3, weight decay 0.01), cosine schedule, batches of 64."""
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    fit(model, x, y, opt, epochs, 64)


def spikingjelly_difference(qann: nn.Module, snn: nn.Module, x: Tensor, steps: int) -> float:
    """The largest difference between SpikingJelly's recipe and ``snn`` over ``steps``
    steps on ``x`` (nan without SpikingJelly)."""
    try:
        from spikingjelly.activation_based import functional
        from spikingjelly.activation_based.ann2snn import ModuleConverter, SpikeZIPTFQANNRecipe
    except ImportError:
        return float("nan")
    recipe = SpikeZIPTFQANNRecipe(time_steps=steps, model_family="vit")
    theirs = ModuleConverter(recipe=recipe).convert(qann).eval()
    functional.set_step_mode(theirs, "s")
    functional.reset_net(theirs)
    with torch.no_grad():
        ref = torch.stack([theirs(x if t == 0 else torch.zeros_like(x)) for t in range(steps)])
        ours = snn(impulse_input(x, steps))
    return float((ref - ours).abs().max())


def main(argv: list[str] | None = None) -> dict[str, object]:
    """Train, convert, print the table; returns what it printed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--level", type=int, default=16, help="levels of a quantiser")
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--test-samples", type=int, default=None, help="first N (all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)  # small tensors: more threads only contend
    torch.manual_seed(args.seed)
    start = time.time()
    x_tr, y_tr, x_te, y_te = load_digits_split(args.seed)
    x_te, y_te = x_te[: args.test_samples], y_te[: args.test_samples]
    model = QViT(args.dim, args.depth, args.level)
    init_steps(model, x_tr[:256])
    train(model, x_tr, y_tr, args.epochs)
    qann = model.double().eval()
    x_te = x_te.double()
    with torch.no_grad():
        qann_out = qann(x_te)
    qann_acc = float((qann_out.argmax(1) == y_te).double().mean())
    snn, report = convert_spikezip_qann(qann, family="vit")
    accs, exact = accumulated_accuracies(snn, x_te, y_te, qann_out, STEPS, 60)
    versus = spikingjelly_difference(qann, snn, x_te[:40], 32)
    print(f"digits: {len(x_tr)} train / {len(x_te)} test, {len(report.converted)} neurons")
    print("| | QANN | " + " | ".join(f"T={t}" for t in STEPS) + " |")
    print(
        f"| accuracy | {100 * qann_acc:.2f} | " + " | ".join(f"{100 * a:.2f}" for a in accs) + " |"
    )
    print("| SNN = QANN (% of images) | | " + " | ".join(f"{100 * e:.1f}" for e in exact) + " |")
    print(
        f"SpikingJelly's SpikeZIPTFQANNRecipe, 40 images x 32 steps: max |difference| {versus:.3g}"
    )
    print(f"{time.time() - start:.0f} s")
    return {"qann": qann_acc, "snn": accs, "exact": exact, "spikingjelly": versus}


if __name__ == "__main__":
    main()
