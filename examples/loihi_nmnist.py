"""Training for Loihi on N-MNIST: a float CUBA network against the same network trained
on Loihi's grids (``spikeflow.quant.loihi_grid``, Lava-DL's quantization-aware
training), each run in integers as Lava runs it (``import_netx(export_netx(net))``).

The script trains a 2312-64-10 network of Lava-DL CUBA neurons (``tau_syn = 4``,
``tau_mem = 8``, ``θ = 1``) on binarised N-MNIST frames three times from the same
initial weights: in float; on the grids with Loihi's integer states
(``loihi_grid(net)``); and on the grids with float states (``fixed_point=False``). For
each it reports the test accuracy of the float simulation and of the fixed-point
network, and how many predictions and hidden / output spikes the two share.
docs/loihi.md shows the numbers of the default run.

    python examples/loihi_nmnist.py                       # ../shared/data/nmnist-small
    python examples/loihi_nmnist.py --epochs 3 --train-samples 200
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from torch import nn

from spikeflow import layers, losses, neurons
from spikeflow.data import NMNIST
from spikeflow.interop import export_netx, import_netx
from spikeflow.quant import loihi_grid

DEFAULT_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nmnist-small"
INPUTS = 2 * 34 * 34


def build_network(hidden: int = 64, seed: int = 0) -> nn.Sequential:
    """Dense 2312-hidden-10 with Lava-DL's CUBA neurons (docs/loihi.md's mapping)."""
    torch.manual_seed(seed)

    def cuba() -> nn.Module:
        return neurons.CubaLIFNode(tau_syn=4.0, tau_mem=8.0, r="tau_syn*tau_mem",
                                   v_threshold=1.0, v_reset=0.0)  # fmt: skip

    net = nn.Sequential(
        layers.Linear(INPUTS, hidden, bias=False), cuba(),
        layers.Linear(hidden, 10, bias=False), cuba(),
    )  # fmt: skip
    with torch.no_grad():  # enough input to fire from the start
        net[0].weight.normal_(0.0, 0.1)
        net[2].weight.normal_(0.0, 0.5)
    return net


def load_spikes(root: Path, train: bool, samples: int | None, T: int) -> tuple[torch.Tensor, ...]:
    """Binary input spikes ``[T, N, 2312]`` (frames with any event) and the labels."""
    ds = NMNIST(root, train=train, data_type="frame", frames_number=T, split_by="number")
    count = len(ds) if samples is None else min(samples, len(ds))
    picked = torch.randperm(len(ds), generator=torch.Generator().manual_seed(1))[:count]
    frames = torch.stack([ds[int(i)][0] for i in picked])
    labels = torch.tensor([int(ds[int(i)][1]) for i in picked])
    return (frames > 0).transpose(0, 1).flatten(2).float(), labels


def train(net: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, lr: float,
          batch_size: int) -> None:  # fmt: skip
    """Adam on the cross-entropy of the output firing rates."""
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    order = torch.Generator().manual_seed(2)
    for _ in range(epochs):
        for batch in torch.randperm(x.shape[1], generator=order).split(batch_size):
            loss = losses.ce_mean_loss(net(x[:, batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


def compare(net: nn.Module, x: torch.Tensor, y: torch.Tensor, folder: Path) -> dict[str, float]:
    """Accuracies of the float simulation and of the exported fixed-point network, and
    their agreement (fractions)."""
    fixed = import_netx(export_netx(net, folder / "net.net", (INPUTS,)))
    spikes = x.to(torch.int64)
    with torch.no_grad():
        hidden, out = net[:2](x), net(x)
    hidden_int, out_int = fixed[:2](spikes), fixed(spikes)
    pred, pred_int = out.sum(0).argmax(1), out_int.sum(0).argmax(1)
    return {
        "float_accuracy": float((pred == y).float().mean()),
        "fixed_accuracy": float((pred_int == y).float().mean()),
        "same_prediction": float((pred == pred_int).float().mean()),
        "hidden_spikes_equal": float((hidden == hidden_int).float().mean()),
        "output_spikes_equal": float((out == out_int).float().mean()),
    }


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Train the three networks; print and return their comparisons."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--T", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--train-samples", type=int, default=None, help="default: all")
    parser.add_argument("--test-samples", type=int, default=None, help="default: all")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        x_train, y_train = load_spikes(args.root, True, args.train_samples, args.T)
        x_test, y_test = load_spikes(args.root, False, args.test_samples, args.T)
        runs = {"float": None, "grid (fixed-point states)": True, "grid (float states)": False}
        results = {}
        with tempfile.TemporaryDirectory() as folder:
            for name, fixed_point in runs.items():
                net = build_network(args.hidden, args.seed)
                if fixed_point is not None:
                    loihi_grid(net, fixed_point=fixed_point)
                train(net, x_train, y_train, args.epochs, args.lr, args.batch_size)
                results[name] = compare(net.eval(), x_test, y_test, Path(folder))
                shown = ", ".join(f"{k} {v:.4f}" for k, v in results[name].items())
                print(f"{name}: {shown}")
        return results
    finally:
        torch.set_num_threads(threads)


if __name__ == "__main__":
    from spikeflow.data import exit_on_missing_data

    exit_on_missing_data(main, root_option="--root")
