"""EventProp (the adjoint method) trains a spiking network on scikit-learn's 8x8 digits.

Each digit (64 pixels / 16) is a constant input current for ``--steps`` steps of 1 ms
into ``EventPropLIF(64, hidden)`` (Norse's LIF parameters: tau_syn 5 ms, tau_mem 10 ms,
threshold 1), whose spikes drive a non-spiking leaky readout ``y[t] = κ y[t-1] + W z[t]``
(κ = exp(-1/10)); the class score is the readout's maximum over time, trained by the
cross-entropy with Adam. The hidden layer's gradients come from the adjoint
(``--jumps eventprop`` or ``norse``), the readout's from autograd. Split 1437 / 360.

    python examples/eventprop_digits.py --seed 0 --jumps eventprop
    python examples/eventprop_digits.py --seed 0 --jumps norse
    python examples/eventprop_digits.py --seed 0 --freeze-hidden   # control: readout only
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from torch import Tensor, nn

from spikeflow.learn import EventPropLIF


def load_digits_currents(seed: int, steps: int) -> tuple[Tensor, ...]:
    """The digits as constant currents ``[steps, samples, 64]``, shuffled and split."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    y = torch.tensor(digits.target)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    x = x[order][None].expand(steps, -1, -1)
    y = y[order]
    return x[:, :1437], y[:1437], x[:, 1437:], y[1437:]


class Network(nn.Module):
    """EventPropLIF hidden layer and a leaky non-spiking readout (module docstring)."""

    def __init__(self, hidden: int, jumps: str) -> None:
        super().__init__()
        self.hidden = EventPropLIF(64, hidden, jumps=jumps)
        self.readout = nn.Linear(hidden, 10, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        z = self.hidden(x)
        u = self.readout(z)
        kappa, y, ys = math.exp(-0.1), torch.zeros_like(u[0]), []
        for t in range(u.shape[0]):
            y = kappa * y + u[t]
            ys.append(y)
        return torch.stack(ys).amax(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jumps", choices=["eventprop", "norse"], default="eventprop")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--hidden", type=int, default=100)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument(
        "--freeze-hidden", action="store_true", help="control: train the readout alone"
    )
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    x_train, y_train, x_test, y_test = load_digits_currents(args.seed, args.steps)
    net = Network(args.hidden, args.jumps)
    if args.freeze_hidden:
        net.hidden.input_weights.requires_grad_(False)
    trained = [q for q in net.parameters() if q.requires_grad]
    optimizer = torch.optim.Adam(trained, lr=args.lr)
    start = time.time()
    for epoch in range(1, args.epochs + 1):
        order = torch.randperm(y_train.numel())
        for first in range(0, order.numel(), 32):
            batch = order[first : first + 32]
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(net(x_train[:, batch]), y_train[batch])
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            test = float((net(x_test).argmax(1) == y_test).float().mean())
            rate = float(net.hidden(x_test).mean())
        print(
            f"epoch {epoch}: loss {loss.item():.3f}  test accuracy {100 * test:.1f}%  "
            f"hidden spikes/step {rate:.3f}  ({time.time() - start:.0f} s)"
        )


if __name__ == "__main__":
    main()
