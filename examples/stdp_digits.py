"""Unsupervised STDP on scikit-learn's 8x8 digits: winner-take-all neurons learn digit
prototypes without labels (a simplified version of Diehl and Cook's 2015 network).

Pixels are Poisson spike trains (rate ``0.5·pixel`` per step, T steps); a linear layer
(64 → N, weights in [0, 1], each neuron's weights normalised to sum to ``6``) drives
:class:`~spikeflow.learn.WinnerTakeAll` neurons (one winner per step, lateral
inhibition, adaptive thresholds). STDP (:class:`~spikeflow.learn.STDPLearner`) with the
rule ``Δw = Σ s_post ⊗ (x_pre − 0.2)`` (potentiation only, ``pre_offset=0.2``) moves each
winner's weights towards the inputs that fired before it. No label is used to learn;
afterwards each neuron is labelled with the class it answered most on average on the
training set, and a test image gets the class whose neurons fired most on average
(Diehl and Cook's readout; no spikes or a tie count as wrong).

    python examples/stdp_digits.py                 # 400 neurons, 5 epochs, ~5 s
    python examples/stdp_digits.py --neurons 100 --epochs 2
    python examples/stdp_digits.py --reward-epochs 5  # then a readout learned by reward
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import Tensor, nn

from spikeflow.learn import STDPLearner, WinnerTakeAll


def load(seed: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The digits in [0, 1], shuffled, split 1437 / 360 (as ``spikeflow train``'s)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    y = torch.tensor(digits.target)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    x, y = x[order], y[order]
    return x[:1437], y[:1437], x[1437:], y[1437:]


def classify(train_counts: Tensor, train_labels: Tensor, test_counts: Tensor) -> Tensor:
    """Diehl and Cook's readout: each neuron takes the class it answered most on
    average (neurons that never fired take none), and a sample gets the class whose
    neurons fired most on average; a sample without spikes, or with a tie, gets -1
    (counted wrong)."""
    classes = int(train_labels.max()) + 1
    sums = torch.zeros(train_counts.shape[1], classes).index_add_(1, train_labels, train_counts.T)
    per_class = sums / torch.bincount(train_labels, minlength=classes)
    assigned = per_class.argmax(1)
    fired = train_counts.sum(0) > 0
    votes = torch.zeros(len(test_counts), classes)
    for c in range(classes):
        members = fired & (assigned == c)
        if members.any():
            votes[:, c] = test_counts[:, members].mean(1)
    best = votes.max(1)
    unique = (votes == best.values.unsqueeze(1)).sum(1) == 1
    return torch.where(unique & (best.values > 0), best.indices, -1)


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Learn; print and return the test accuracy after each epoch."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--neurons", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("-T", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--train-samples", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reward-epochs", type=int, default=0,
                        help="then train a 10-neuron output layer by reward-modulated STDP "
                        "for this many epochs (reward +1 if its winner is the label, -1 if "
                        "not)")  # fmt: skip
    parser.add_argument("--reward-lr", type=float, default=0.2)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    x_train, y_train, x_test, y_test = load(args.seed)
    x_train, y_train = x_train[: args.train_samples], y_train[: args.train_samples]
    synapses = nn.Linear(64, args.neurons, bias=False)
    nn.init.uniform_(synapses.weight, 0.0, 0.3)
    neurons = WinnerTakeAll(args.neurons, tau=8.0, theta_plus=0.05, theta_decay=0.9995)
    learner = STDPLearner(synapses, neurons, tau_pre=4.0, tau_post=4.0,
                          f_pre=lambda w: 0.0, f_post=lambda w: 1.0, pre_offset=0.2)  # fmt: skip
    optimizer = torch.optim.SGD(synapses.parameters(), lr=args.lr)

    def encode(x: Tensor) -> Tensor:
        return (torch.rand(args.T, *x.shape) < 0.5 * x).float()

    @torch.no_grad()
    def counts(x: Tensor) -> Tensor:  # spike counts [samples, N], without learning
        neurons.eval()
        learner.recording = False
        out = neurons(synapses(encode(x))).sum(0)
        neurons.train()
        learner.recording = True
        return out

    results = {}
    start = time.perf_counter()
    for epoch in range(args.epochs):
        for i in range(0, len(x_train), args.batch_size):
            with torch.no_grad():
                neurons(synapses(encode(x_train[i : i + args.batch_size])))
            optimizer.zero_grad()
            learner.step()  # weight.grad = -Δw
            optimizer.step()  # w += lr·Δw
            with torch.no_grad():
                synapses.weight.clamp_(0.0, 1.0)
                synapses.weight.mul_(6.0 / synapses.weight.sum(1, keepdim=True).clamp(min=1e-9))
        accuracy = float((classify(counts(x_train), y_train, counts(x_test)) == y_test)
                         .float().mean())  # fmt: skip
        results[f"epoch {epoch + 1}"] = accuracy
        print(f"epoch {epoch + 1}/{args.epochs}: test accuracy {100 * accuracy:.2f}% "
              f"({time.perf_counter() - start:.1f} s)", flush=True)  # fmt: skip
    if args.reward_epochs:
        learner.close()
        neurons.eval()  # the learned features stay as they are
        features = lambda x: neurons(synapses(encode(x)))  # noqa: E731
        results.update(reward_readout(features, x_train, y_train, x_test, y_test, args))
    return results


def reward_readout(features, x_train: Tensor, y_train: Tensor, x_test: Tensor,
                   y_test: Tensor, args: argparse.Namespace) -> dict[str, float]:  # fmt: skip
    """A 10-neuron winner-take-all output layer learns by reward-modulated STDP
    (MSTDP): reward +1 for a sample whose most-firing output neuron is its label, -1
    otherwise, 0 if none fired. Labels only enter through the reward."""
    readout = nn.Linear(features(x_train[:1]).shape[-1], 10, bias=False)
    nn.init.uniform_(readout.weight, 0.0, 0.1)
    outputs = WinnerTakeAll(10, tau=2.0, v_threshold=0.02, theta_plus=0.0)
    learner = STDPLearner(readout, outputs, tau_pre=4.0, tau_post=4.0,
                          f_pre=lambda w: 0.0, f_post=lambda w: 1.0)  # fmt: skip
    optimizer = torch.optim.SGD(readout.parameters(), lr=args.reward_lr)
    results = {}
    for epoch in range(args.reward_epochs):
        for i in range(0, len(x_train), args.batch_size):
            with torch.no_grad():
                counts = outputs(readout(features(x_train[i : i + args.batch_size]))).sum(0)
            right = counts.argmax(1) == y_train[i : i + args.batch_size]
            reward = torch.where(counts.sum(1) == 0, 0.0, torch.where(right, 1.0, -1.0))
            optimizer.zero_grad()
            learner.step(reward=reward)  # one reward per sample, for all its steps
            optimizer.step()
            with torch.no_grad():
                readout.weight.clamp_(0.0, 1.0)
        learner.recording = False
        with torch.no_grad():
            counts = outputs(readout(features(x_test))).sum(0)
        learner.recording = True
        fired = counts.sum(1) > 0
        accuracy = float(((counts.argmax(1) == y_test) & fired).float().mean())
        results[f"reward epoch {epoch + 1}"] = accuracy
        print(f"reward-modulated readout, epoch {epoch + 1}/{args.reward_epochs}: test "
              f"accuracy {100 * accuracy:.2f}% (no spike counts as wrong)", flush=True)  # fmt: skip
    return results


if __name__ == "__main__":
    main()
