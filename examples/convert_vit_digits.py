"""A quantised ViT converted to a spiking network (SpikeZIP-TF) on scikit-learn's digits.

Trains a small Vision Transformer whose activations are signed quantisers
(:class:`~spikeflow.conversion.SymmetricQuant`: after the q/k/v projections, the softmax,
the attention output, the layer norms, the GELU and the residual sums), converts it with
:func:`~spikeflow.conversion.convert_transformer` (signed bounded IF neurons,
temporal-difference LayerNorm/softmax/GELU, spike products for ``Q K^T`` and
``attn V``) and prints the test accuracy of the ANN and of the SNN after T = 1, 2, 4,
8, ..., 256 steps (the image is sent once, at the first step; the answer is the
running sum of the output), and at each T the share of test images whose SNN output
equals the ANN's (float64, to 1e-9): every neuron has settled.

    python examples/convert_vit_digits.py                    # the 8x8 digits
    python examples/convert_vit_digits.py --dataset nmnist   # the N-MNIST subset in ../shared

``--dataset nmnist`` uses each recording's events summed into one two-channel 34x34
count image (as examples/convert_digits.py), cropped to 32x32 and halved by an average
pool.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch
from torch import Tensor, nn

from spikeflow.conversion import SymmetricQuant, convert_transformer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from convert_digits import accumulated_accuracies, fit, load_digits_split, load_nmnist_counts

STEPS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Attention(nn.Module):
    """Multi-head self-attention with quantisers before both products."""

    def __init__(self, dim: int, heads: int, levels: int) -> None:
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.q_quant, self.k_quant = SymmetricQuant(levels), SymmetricQuant(levels)
        self.v_quant, self.out_quant = SymmetricQuant(levels), SymmetricQuant(levels)
        self.attn_quant = SymmetricQuant(levels, min_level=0)  # probabilities: >= 0
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        d = c // self.heads

        def split(t: Tensor) -> Tensor:
            return t.reshape(b, n, self.heads, d).transpose(1, 2)

        q, k = split(self.q_quant(self.q(x))), split(self.k_quant(self.k(x)))
        v = split(self.v_quant(self.v(x)))
        attn = self.attn_quant((q @ k.transpose(-2, -1) * d**-0.5).softmax(dim=-1))
        return self.proj(self.out_quant(attn @ v).transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    """Pre-norm Transformer block: attention and a GELU MLP, each in a residual."""

    def __init__(self, dim: int, heads: int, levels: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.norm1_quant, self.norm2_quant = SymmetricQuant(levels), SymmetricQuant(levels)
        self.attn = Attention(dim, heads, levels)
        self.fc1, self.act, self.fc2 = nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim)
        self.mlp_quant = SymmetricQuant(levels)
        self.res1_quant, self.res2_quant = SymmetricQuant(levels), SymmetricQuant(levels)

    def forward(self, x: Tensor) -> Tensor:
        x = self.res1_quant(x + self.attn(self.norm1_quant(self.norm1(x))))
        h = self.fc2(self.mlp_quant(self.act(self.fc1(self.norm2_quant(self.norm2(x))))))
        return self.res2_quant(x + h)


class QuantViT(nn.Module):
    """Convolutional patch embedding, class token, position embedding, ``depth``
    blocks, final norm, class-token head. N-MNIST frames (2x34x34) are cropped to 32x32
    and halved by an average pool first."""

    def __init__(
        self, channels: int, size: int, patch: int, dim: int, depth: int, heads: int,
        levels: int, classes: int = 10, pool_first: bool = False,
    ) -> None:  # fmt: skip
        super().__init__()
        self.pool_first = pool_first
        self.pool = nn.AvgPool2d(2) if pool_first else nn.Identity()
        self.embed = nn.Conv2d(channels, dim, patch, stride=patch)
        tokens = (size // patch) ** 2
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, tokens + 1, dim) * 0.02)
        self.in_quant = SymmetricQuant(levels)
        self.blocks = nn.Sequential(*[Block(dim, heads, levels) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: Tensor) -> Tensor:
        if self.pool_first:
            x = self.pool(x[:, :, 1:33, 1:33])
        x = self.embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        x = self.blocks(self.in_quant(x))
        return self.head(self.norm(x)[:, 0])


@torch.no_grad()
def init_scales(model: nn.Module, x: Tensor) -> None:
    """Each quantiser's step from its inputs on ``x``: the 99th percentile of ``|input|``
    over its positive levels."""
    handles = []
    for module in model.modules():
        if isinstance(module, SymmetricQuant):

            def hook(m: SymmetricQuant, args: tuple[Tensor]) -> None:
                top = torch.quantile(args[0].abs().flatten()[:100_000], 0.99)
                m.scale.fill_(max(float(top) / m.levels, 1e-3))

            handles.append(module.register_forward_pre_hook(hook))
    model(x)
    for handle in handles:
        handle.remove()


def train(model: nn.Module, x: Tensor, y: Tensor, epochs: int, lr: float) -> None:
    """AdamW, cosine schedule, batches of 64."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    fit(model, x, y, opt, epochs, 64)


def main(argv: list[str] | None = None) -> dict[str, object]:
    """Train, convert, print the table; returns what it printed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=("digits", "nmnist"), default="digits")
    parser.add_argument("--nmnist-root", default="../shared/data/nmnist-small")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--levels", type=int, default=8, help="positive levels n_max")
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)  # small tensors: more threads only contend
    torch.manual_seed(args.seed)
    start = time.time()
    if args.dataset == "digits":
        x_tr, y_tr, x_te, y_te = load_digits_split(args.seed)
        model = QuantViT(1, 8, 2, args.dim, args.depth, 4, args.levels)
    else:
        x_tr, y_tr, x_te, y_te = load_nmnist_counts(args.nmnist_root)
        model = QuantViT(2, 16, 4, args.dim, args.depth, 4, args.levels, pool_first=True)
    init_scales(model, x_tr[:256])
    train(model, x_tr, y_tr, args.epochs, 2e-3)
    ann = model.double().eval()
    x_te = x_te.double()
    with torch.no_grad():
        ann_out = ann(x_te)
    ann_acc = float((ann_out.argmax(1) == y_te).double().mean())
    snn, report = convert_transformer(ann)
    accs, exact = accumulated_accuracies(snn, x_te, y_te, ann_out, STEPS, 20)
    print(f"{args.dataset}: {len(x_tr)} train / {len(x_te)} test, {len(report.converted)} neurons")
    print("| | ANN | " + " | ".join(f"T={t}" for t in STEPS) + " |")
    print(
        f"| accuracy | {100 * ann_acc:.2f} | " + " | ".join(f"{100 * a:.2f}" for a in accs) + " |"
    )
    print("| SNN = ANN | | " + " | ".join(f"{100 * e:.1f}" for e in exact) + " |")
    print(f"{time.time() - start:.0f} s")
    return {"ann": ann_acc, "snn": accs, "exact": exact}


if __name__ == "__main__":
    from spikeflow.data import exit_on_missing_data

    exit_on_missing_data(main, root_option="--nmnist-root")
