"""EventProp (the adjoint method) against BPTT: a spiking network classifies digits.

``--dataset digits`` (default): scikit-learn's 8x8 digits, each a constant input current
(64 pixels / 16) for ``--steps`` steps, split 1437 / 360. ``--dataset nmnist``: the
N-MNIST recordings under ``--nmnist-root`` (the real subset in
``../shared/data/nmnist-small``: 1,000 train / 100 test) as ``--frames`` frames of 2 x 9
x 9 spikes, exactly as ``examples/eprop_digits.py`` makes them.

The network: ``EventPropLIF(inputs, hidden)`` (Norse's LIF parameters: tau_syn 5 ms,
tau_mem 10 ms, threshold 1, steps of 1 ms), whose spikes drive a non-spiking leaky
readout ``y[t] = κ y[t-1] + W z[t]`` (κ = exp(-1/10)); the class score is the readout's
maximum over time, trained by the cross-entropy with Adam. ``--method`` picks the hidden
layer's gradient: ``eventprop`` or ``norse`` (the adjoint, ``jumps=``), or ``bptt``: the
same layer as ``Linear`` + ``CubaLIFNode`` (the same spikes: ``parameters_from_cuba``)
through autograd with spikeflow's default surrogate (Sigmoid, alpha 4); same seed, same
initial weights. ``--freeze-hidden``: train the readout alone (a control).

    python examples/eventprop_digits.py --seed 0 --method eventprop
    python examples/eventprop_digits.py --seed 0 --method bptt
    python examples/eventprop_digits.py --seed 0 --dataset nmnist --method eventprop
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from torch import Tensor, nn

from spikeflow.learn import EventPropLIF
from spikeflow.learn.eventprop import parameters_from_cuba
from spikeflow.neurons import CubaLIFNode


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
    """The hidden spiking layer and a leaky non-spiking readout (module docstring)."""

    def __init__(self, inputs: int, hidden: int, method: str) -> None:
        super().__init__()
        jumps = "eventprop" if method == "bptt" else method
        self.hidden = EventPropLIF(inputs, hidden, jumps=jumps)
        self.readout = nn.Linear(hidden, 10, bias=False)
        self.cuba = None
        if method == "bptt":  # the same neuron, differentiated by autograd
            self.cuba = CubaLIFNode(
                tau_syn=5e-3, tau_mem=1e-2, r="tau_syn", dt=1e-3, v_reset=0.0,
                strict_firing=True, step_mode="m",
            )  # fmt: skip
            assert parameters_from_cuba(self.cuba) == self.hidden.p

    def spikes(self, x: Tensor) -> Tensor:
        if self.cuba is None:
            return self.hidden(x)
        return self.cuba(x @ self.hidden.input_weights.t())

    def forward(self, x: Tensor) -> Tensor:
        u = self.readout(self.spikes(x))
        kappa, y, ys = math.exp(-0.1), torch.zeros_like(u[0]), []
        for t in range(u.shape[0]):
            y = kappa * y + u[t]
            ys.append(y)
        return torch.stack(ys).amax(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--method", choices=["eventprop", "norse", "bptt"], default="eventprop")
    parser.add_argument("--dataset", choices=["digits", "nmnist"], default="digits")
    parser.add_argument("--nmnist-root", default="../shared/data/nmnist-small")
    parser.add_argument("--frames", type=int, default=20, help="N-MNIST: steps per sample")
    parser.add_argument("--steps", type=int, default=30, help="digits: steps per sample")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--hidden", type=int, default=100)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument(
        "--freeze-hidden", action="store_true", help="control: train the readout alone"
    )
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    if args.dataset == "digits":
        x_train, y_train, x_test, y_test = load_digits_currents(args.seed, args.steps)
    else:
        from eprop_digits import load_nmnist_sequences  # beside this script

        x_train, y_train, x_test, y_test = load_nmnist_sequences(args.nmnist_root, args.frames)
    net = Network(x_train.shape[2], args.hidden, args.method)
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
            rate = float(net.spikes(x_test).mean())
        print(
            f"epoch {epoch}: loss {loss.item():.3f}  test accuracy {100 * test:.1f}%  "
            f"hidden spikes/step {rate:.3f}  ({time.time() - start:.0f} s)",
            flush=True,
        )


if __name__ == "__main__":
    from spikeflow.data import exit_on_missing_data

    exit_on_missing_data(main, root_option="--nmnist-root")
