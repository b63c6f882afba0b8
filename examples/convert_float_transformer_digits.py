"""A float (not quantised) Transformer converted without training (STA) on the digits.

Each 8x8 digit is a sequence of 8 row tokens of 8 pixels. The model: a linear token
embedding (dim 32) plus a learned position embedding, an ``nn.TransformerEncoder`` of 2
pre-norm layers (4-head attention, GELU MLP of 64), a final LayerNorm, mean over tokens
and a linear head, trained in float32 with AdamW. It is then converted with
``convert_transformer(model, encoders="sta", calibration=..., steps=T)`` for each T
(both threshold rules; calibration: 4 batches of 64 training images) and with
``encoders="none"`` (no spikes: the running sums equal the float model at every step).
The image is sent once at the first step; the SNN's answer is the running sum of its
output after T steps.

    python examples/convert_float_transformer_digits.py
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from convert_digits import load_digits_split

from spikeflow.conversion import convert_transformer


class RowTransformer(nn.Module):
    """Rows of an 8x8 image as tokens, a float nn.TransformerEncoder, a linear head."""

    def __init__(self, dim: int = 32, heads: int = 4, layers: int = 2) -> None:
        super().__init__()
        self.embed = nn.Linear(8, dim)
        self.pos = nn.Parameter(torch.zeros(1, 8, dim))
        layer = nn.TransformerEncoderLayer(
            dim, heads, 2 * dim, dropout=0.0, activation="gelu", batch_first=True,
            norm_first=True,
        )  # fmt: skip
        self.encoder = nn.TransformerEncoder(
            layer, layers, norm=nn.LayerNorm(dim), enable_nested_tensor=False
        )
        self.head = nn.Linear(dim, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(x.flatten(0, -3).reshape(x.shape[0], 8, 8)) + self.pos
        return self.head(self.encoder(tokens).mean(1))


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return 100.0 * (logits.argmax(1) == labels).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    start = time.time()
    x_tr, y_tr, x_te, y_te = load_digits_split(args.seed)
    model = RowTransformer()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.epochs)
    for _ in range(args.epochs):
        model.train()
        for idx in torch.randperm(len(x_tr)).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x_tr[idx]), y_tr[idx]).backward()
            opt.step()
        sched.step()
    model.eval()
    with torch.no_grad():
        ann = accuracy(model(x_te), y_te)
    print(f"float model: {ann:.2f} % on {len(x_te)} test images")
    calibration = [x_tr[i * 64 : (i + 1) * 64] for i in range(4)]
    snn, _ = convert_transformer(model, encoders="none")
    sums = snn.accumulate(x_te, 4)
    print(f"encoders='none' T=1..4: {[round(accuracy(s, y_te), 2) for s in sums]}")
    header = "| STA | float | " + " | ".join(f"T={t}" for t in args.steps) + " |"
    print(header)
    print("|---" * (len(args.steps) + 2) + "|")
    for rule in ("mse", "max"):
        row = []
        for steps in args.steps:
            snn, _ = convert_transformer(
                model, encoders="sta", calibration=calibration, steps=steps, threshold=rule
            )
            row.append(accuracy(snn.accumulate(x_te, steps)[-1], y_te))
        print(f"| threshold={rule} | {ann:.2f} | " + " | ".join(f"{a:.2f}" for a in row) + " |")
    print(f"({time.time() - start:.0f} s)")


if __name__ == "__main__":
    main()
