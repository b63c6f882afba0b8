"""E-prop against BPTT: a recurrent network of LIF and ALIF neurons (Bellec et al.,
Nature Communications 2020) classifies digits presented as sequences.

``--dataset digits`` (default): scikit-learn's 8x8 digits, one row of 8 pixels (values
in [0, 1] as input currents) per ``--steps-per-row`` steps, top row first: the network
must remember the rows it has seen. ``--dataset nmnist``: the N-MNIST recordings under
``--nmnist-root`` (the real subset in ``../shared/data/nmnist-small``: 1,000 train / 100
test), their events downsampled 4x in space (``Downsample(0.25)``: 2 x 9 x 9 pixels)
and cut into ``--frames`` frames of equal event counts, each pixel a spike (1) when it
had an event in the frame.

The same network (same seed, same initial weights) is trained by e-prop
(:class:`~spikeflow.learn.EProp`, one step at a time, memory independent of T) and by
BPTT (autograd through the whole sequence) with Adam, on the cross-entropy of the
readout at each step of the second half of the sequence (its sum over those steps is
the prediction), plus Bellec's firing-rate regularisation.

    python examples/eprop_digits.py                   # both methods, digits, 10 epochs
    python examples/eprop_digits.py --methods eprop --feedback random
    python examples/eprop_digits.py --dataset nmnist  # ../shared/data/nmnist-small
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import Tensor

from spikeflow.learn import EProp, EPropRSNN, eprop_loss, rate_regularization

METHODS = ("eprop", "bptt")


def load_digits_sequences(seed: int, steps_per_row: int) -> tuple[Tensor, ...]:
    """The digits as row sequences ``[T = 8·steps_per_row, samples, 8]``, shuffled and
    split 1437 / 360 (as ``spikeflow train``'s)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32).reshape(-1, 8, 8) / 16.0
    y = torch.tensor(digits.target)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    x = x[order].repeat_interleave(steps_per_row, dim=1).transpose(0, 1)  # [T, N, 8]
    y = y[order]
    return x[:, :1437], y[:1437], x[:, 1437:], y[1437:]


def load_nmnist_sequences(root: str, frames: int) -> tuple[Tensor, ...]:
    """N-MNIST as spike sequences ``[frames, samples, 2·9·9]`` (module docstring)."""
    from spikeflow.data.datasets import NMNIST
    from spikeflow.data.transforms import Downsample

    def split(train: bool) -> tuple[Tensor, Tensor]:
        data = NMNIST(root, train=train, data_type="frame", frames_number=frames,
                      split_by="number", event_transform=Downsample(0.25))  # fmt: skip
        xs, ys = zip(*(data[i] for i in range(len(data))))
        x = torch.stack([torch.as_tensor(f) for f in xs]).flatten(2)  # [N, T, 162]
        return (x > 0).float().transpose(0, 1), torch.tensor(ys)

    return (*split(True), *split(False))


def accuracy(net: EPropRSNN, x: Tensor, y: Tensor, weight: Tensor) -> float:
    """Test accuracy: the class of the largest readout summed over the loss steps."""
    with torch.no_grad():
        scores = (net(x).y * weight[:, None, None]).sum(0)
    return float((scores.argmax(1) == y).float().mean())


def train(method: str, data: tuple[Tensor, ...], args: argparse.Namespace) -> list[float]:
    """Train one network by ``method``; return the test accuracy after each epoch."""
    x_train, y_train, x_test, y_test = data
    steps = x_train.shape[0]
    torch.manual_seed(args.seed)
    net = EPropRSNN(x_train.shape[2], 10, args.lif, args.alif, tau=args.tau,
                    tau_adapt=args.tau_adapt, beta=args.beta, tau_out=args.tau_out,
                    v_threshold=args.v_threshold, refractory=args.refractory)  # fmt: skip
    rule = EProp(net, args.feedback, "ce", rate_target=args.rate_target,
                 rate_strength=args.rate_strength, feedback_decay=args.feedback_decay,
                 generator=torch.Generator().manual_seed(args.seed))  # fmt: skip
    weight = torch.zeros(steps)
    weight[steps // 2 :] = 1.0 / (steps - steps // 2)  # the second half of the steps
    optimizer = torch.optim.Adam([*net.parameters(), *rule.parameters()], lr=args.lr)
    order = torch.Generator().manual_seed(args.seed)
    results = []
    start = time.perf_counter()
    for epoch in range(args.epochs):
        perm = torch.randperm(x_train.shape[1], generator=order)
        for i in range(0, len(perm), args.batch_size):
            batch = perm[i : i + args.batch_size]
            x, label = x_train[:, batch], y_train[batch]
            optimizer.zero_grad()
            if method == "eprop":
                rule.run(x, label, weight)  # the gradients, forward in time, into .grad
            else:
                out = net(x)
                loss = eprop_loss(out.y, label, "ce", weight)
                loss = loss + rate_regularization(out.spikes, args.rate_target, args.rate_strength)
                loss.backward()
            optimizer.step()
        results.append(accuracy(net, x_test, y_test, weight))
        elapsed = time.perf_counter() - start
        print(f"{method:5s} epoch {epoch + 1}/{args.epochs}: test accuracy "
              f"{100 * results[-1]:.2f}% ({elapsed:.1f} s)", flush=True)  # fmt: skip
    return results


def main(argv: list[str] | None = None) -> dict[str, list[float]]:
    """Train by each method; print and return the test accuracies per epoch."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=("digits", "nmnist"), default="digits")
    parser.add_argument("--nmnist-root", default="../shared/data/nmnist-small")
    parser.add_argument("--frames", type=int, default=20, help="N-MNIST: steps per sample")
    parser.add_argument("--steps-per-row", type=int, default=3, help="digits: steps per row")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--feedback", choices=("symmetric", "random", "adaptive"),
                        default="symmetric")  # fmt: skip
    parser.add_argument("--feedback-decay", type=float, default=0.0)
    parser.add_argument("--lif", type=int, default=100)
    parser.add_argument("--alif", type=int, default=100)
    parser.add_argument("--tau", type=float, default=20.0)
    parser.add_argument("--tau-adapt", type=float, default=50.0)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--tau-out", type=float, default=10.0)
    parser.add_argument("--v-threshold", type=float, default=1.0)
    parser.add_argument("--refractory", type=int, default=0)
    parser.add_argument("--rate-target", type=float, default=0.05)
    parser.add_argument("--rate-strength", type=float, default=1.0)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--train-samples", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.dataset == "digits":
        data = load_digits_sequences(args.seed, args.steps_per_row)
    else:
        data = load_nmnist_sequences(args.nmnist_root, args.frames)
    x_train, y_train, x_test, y_test = data
    x_train, y_train = x_train[:, : args.train_samples], y_train[: args.train_samples]
    print(f"{args.dataset}: {x_train.shape[1]} train / {x_test.shape[1]} test sequences of "
          f"{x_train.shape[0]} steps x {x_train.shape[2]} inputs", flush=True)  # fmt: skip
    return {m: train(m, (x_train, y_train, x_test, y_test), args) for m in args.methods}


if __name__ == "__main__":
    from spikeflow.data import exit_on_missing_data

    exit_on_missing_data(main, root_option="--nmnist-root")
