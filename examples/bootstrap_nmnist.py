"""Bootstrap training (spikeflow.learn.bootstrap) against plain BPTT on real N-MNIST,
for the same CPU-time budget of training each (docs/bootstrap.md).

The network: events downsampled 2x in space (2 x 17 x 17), ``--frames`` frames of
equal event counts, a pixel with an event in a frame a spike; two CUBA blocks
(Linear 578 → ``--hidden`` → ``--hidden``, each followed by Lava-DL's CUBA neuron:
current decay 1, voltage decay ``1 / --tau-mem``, threshold 1, hard reset) and a Linear
readout to 10 classes whose time-mean is the logit (cross-entropy), as Lava-DL's
bootstrap MNIST tutorial. Both methods start from the same weights (``--seed``) and
train with Adam, batch 32: BPTT runs the SNN with surrogate gradients at every
iteration; bootstrap follows :class:`~spikeflow.learn.bootstrap.Scheduler` (sample
``--sample-iter`` iterations as SNN, fit, then ANN iterations of one step; resample
every ``--sample-period`` epochs; ``--crossover-epochs 0`` keeps the first block spiking
throughout: hybrid training). After each epoch the SNN (always the spiking
network) is tested on the test recordings. The budget is CPU seconds of training (the
process's CPU time on one thread, evaluation not counted): on a machine shared with other
jobs, wall-clock time would also measure them; the wall-clock seconds are printed too.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import Tensor

from spikeflow import layers
from spikeflow.learn.bootstrap import BootstrapBlock, BootstrapSequential, Mode, Scheduler
from spikeflow.neurons import CubaLIFNode


def load_nmnist(root: str, frames: int) -> tuple[Tensor, ...]:
    """N-MNIST as spike frames ``[frames, samples, 578]`` and labels."""
    from spikeflow.data.datasets import NMNIST
    from spikeflow.data.transforms import Downsample

    def split(train: bool) -> tuple[Tensor, Tensor]:
        data = NMNIST(root, train=train, data_type="frame", frames_number=frames,
                      split_by="number", event_transform=Downsample(0.5))  # fmt: skip
        xs, ys = zip(*(data[i] for i in range(len(data))))
        x = torch.stack([torch.as_tensor(f) for f in xs])  # [N, T, 2, 17, 17]
        x = (x > 0).float().flatten(2).transpose(0, 1).contiguous()
        return x, torch.tensor(ys)

    return (*split(True), *split(False))


def build(seed: int, hidden: int, tau_mem: float) -> BootstrapSequential:
    """The network of the module docstring, from ``seed``."""
    torch.manual_seed(seed)

    def neuron() -> CubaLIFNode:
        return CubaLIFNode(tau_syn=1.0, tau_mem=tau_mem, r="tau_syn*tau_mem")

    return BootstrapSequential(
        BootstrapBlock(layers.Linear(2 * 17 * 17, hidden), neuron()),
        BootstrapBlock(layers.Linear(hidden, hidden), neuron()),
        layers.Linear(hidden, 10),
    )


def snn_accuracy(net: BootstrapSequential, x: Tensor, y: Tensor) -> float:
    """Test accuracy (%) of the spiking network."""
    with torch.no_grad():
        out = torch.cat(
            [net(x[:, i : i + 100], Mode.SNN).mean(0) for i in range(0, x.shape[1], 100)]
        )
    return 100.0 * float((out.argmax(1) == y).float().mean())


def train(method: str, data: tuple[Tensor, ...], args: argparse.Namespace) -> list[tuple]:
    """Train for ``args.budget`` CPU seconds; ``(CPU seconds, wall seconds, epoch, SNN
    test accuracy %, ANN iterations, SNN iterations)`` after each epoch."""
    x_train, y_train, x_test, y_test = data
    net = build(args.seed, args.hidden, args.tau_mem)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    scheduler = Scheduler(args.sample_iter, args.sample_period, args.crossover_epochs)
    gen = torch.Generator().manual_seed(args.seed)
    clock, wall, epoch, counts, history = 0.0, 0.0, 0, {"ANN": 0, "SNN": 0}, []
    while clock < args.budget:
        start, start_wall = time.process_time(), time.perf_counter()
        order = torch.randperm(x_train.shape[1], generator=gen)
        for it, i in enumerate(range(0, len(order), args.batch)):
            idx = order[i : i + args.batch]
            mode = scheduler.mode(epoch, it) if method == "bootstrap" else Mode.SNN
            base = mode if isinstance(mode, Mode) else mode.base_mode
            counts["ANN" if base in (Mode.ANN, Mode.FIT) else "SNN"] += 1
            out = net(x_train[:, idx], mode).mean(0)
            loss = F.cross_entropy(out, y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        clock += time.process_time() - start
        wall += time.perf_counter() - start_wall
        epoch += 1
        acc = round(snn_accuracy(net, x_test, y_test), 1)
        history.append((round(clock, 1), round(wall, 1), epoch, acc, counts["ANN"], counts["SNN"]))
        print(method, *history[-1], flush=True)
    return history


def main(argv: list[str] | None = None) -> dict[str, list[tuple]]:
    """Run the comparison (see the module docstring); print one line per epoch."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nmnist-root", default="../shared/data/nmnist-small")
    parser.add_argument("--methods", nargs="+", default=["bootstrap", "bptt"])
    parser.add_argument("--budget", type=float, default=150.0, help="training CPU seconds each")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--tau-mem", type=float, default=1 / 0.03)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--sample-iter", type=int, default=5)
    parser.add_argument("--sample-period", type=int, default=2)
    parser.add_argument("--crossover-epochs", type=int, nargs="*", default=None,
                        help="bootstrap: epochs at which one more block stays spiking")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = load_nmnist(args.nmnist_root, args.frames)
    return {method: train(method, data, args) for method in args.methods}


if __name__ == "__main__":
    from spikeflow.data import exit_on_missing_data

    exit_on_missing_data(main, root_option="--nmnist-root")
