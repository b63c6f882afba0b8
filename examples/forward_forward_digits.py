"""Forward-Forward (Hinton 2022) on the 8x8 digits, float and spiking, against backprop.

Each hidden layer learns on its own (``spikeflow.training.forward_forward``): positive
data is the image with its true label overlaid on its first 10 pixels, negative data the
same image with a wrong label; a layer's goodness is its mean squared activity, its loss
``softplus(θ − G_pos) + softplus(G_neg − θ)``, and no gradient crosses layers. The
prediction overlays each label in turn and picks the one with the largest goodness
summed over the layers.

Layers (``--layers``, default the tutorial's 2 x 500, no bias):

* ``relu``: ``Linear`` then ReLU (the tutorial's ANN variant);
* ``lif1``: the tutorial's "LIF" layer: one step of snnTorch's ``Leaky`` (β = 0.8) from
  rest, its membrane read as the activity;
* ``lif``: ``Linear`` then :class:`~spikeflow.neurons.LeakyNode` (β = 0.8) over
  ``--T`` steps of the image as a constant current, the goodness from spike counts,
  the next layer fed the spikes.

Two schedules:

* ``--schedule tutorial`` (snnTorch's tutorial_forward_forward): one batch of 128
  training images, each layer trained 1,000 times in turn (Adam 0.03, θ = 5, the
  negatives' labels the batch's labels permuted); accuracy on that batch ("train") and
  on the 360 test digits.
* ``--schedule epochs`` (default): every layer updated once per mini-batch
  (``ForwardForwardTrainer.step``) for ``--epochs`` over the 1,437 training digits,
  wrong labels drawn uniformly, θ = 2, Adam 0.03, batch 32, the initial weights
  PyTorch's times ``--gain 5`` (with PyTorch's own the goodness starts far below θ and
  the loss sits at log 2 for epochs; a silent spiking layer has no gradient at all, the
  goodness's derivative ``2 c`` being zero at a spike count ``c = 0``); then the same
  network (same initial weights) with a linear readout trained end to end by backprop
  (cross-entropy, Adam 1e-3, surrogate gradients for ``lif``) for as many updates.

``--dataset nmnist``: the N-MNIST recordings under ``--nmnist-root`` (the subset in
``../shared/data/nmnist-small``), events downsampled 4x (2 x 9 x 9 pixels), ``--T``
frames of equal event counts, a pixel 1 where it had an event; the label is overlaid on
the first 10 inputs of every frame. Only ``lif`` reads the frames as a sequence; the
others see the frames' mean.

    python examples/forward_forward_digits.py                      # relu lif1 lif, epochs
    python examples/forward_forward_digits.py --schedule tutorial
    python examples/forward_forward_digits.py --dataset nmnist --layers lif
"""

from __future__ import annotations

import argparse
import itertools
import time

import torch
from torch import Tensor, nn

from spikeflow.neurons import LeakyNode
from spikeflow.training.forward_forward import ForwardForwardTrainer, NeuronMembrane

LAYERS = ("relu", "lif1", "lif")


def load_digits_split(seed: int) -> tuple[Tensor, ...]:
    """The digits ``[N, 64]`` in [0, 1], shuffled and split 1437 / 360."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    y = torch.tensor(digits.target)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    x, y = x[order], y[order]
    return x[:1437], y[:1437], x[1437:], y[1437:]


def load_nmnist_split(root: str, frames: int) -> tuple[Tensor, ...]:
    """N-MNIST as spike frames ``[N, frames, 162]`` (module docstring)."""
    from spikeflow.data.datasets import NMNIST
    from spikeflow.data.transforms import Downsample

    def split(train: bool) -> tuple[Tensor, Tensor]:
        data = NMNIST(root, train=train, data_type="frame", frames_number=frames,
                      split_by="number", event_transform=Downsample(0.25))  # fmt: skip
        xs, ys = zip(*(data[i] for i in range(len(data))))
        x = torch.stack([torch.as_tensor(f) for f in xs]).flatten(2)
        return (x > 0).float(), torch.tensor(ys)

    return (*split(True), *split(False))


def build_layers(kind: str, sizes: list[int], seed: int, gain: float = 1.0) -> nn.Sequential:
    """The hidden layers (no bias, as the tutorial's), from ``seed``, their weights
    PyTorch's initial ones times ``gain``."""
    torch.manual_seed(seed)
    layers = []
    for a, b in itertools.pairwise(sizes):
        linear = nn.Linear(a, b, bias=False)
        with torch.no_grad():
            linear.weight.mul_(gain)
        if kind == "relu":
            layers.append(nn.Sequential(linear, nn.ReLU()))
        elif kind == "lif1":
            layers.append(nn.Sequential(linear, NeuronMembrane(LeakyNode(beta=0.8))))
        else:
            layers.append(nn.Sequential(linear, LeakyNode(beta=0.8)))
    return nn.Sequential(*layers)


def trainer_for(kind: str, layers: nn.Sequential, args: argparse.Namespace,
                negative: str) -> ForwardForwardTrainer:  # fmt: skip
    spiking = kind == "lif"
    return ForwardForwardTrainer(
        layers,
        num_classes=10,
        theta=args.theta,
        optimizer=lambda p: torch.optim.Adam(p, lr=args.lr),
        time_steps=args.T if spiking else (1 if kind == "lif1" else None),
        over_time="count" if spiking else "rate",
        negative=negative,
        generator=torch.Generator().manual_seed(args.seed),
    )


def as_input(kind: str, x: Tensor) -> Tensor:
    """``[N, F]`` images, or ``[N, T, F]`` frames made time-major for ``lif`` (the
    frames' mean for the others)."""
    if x.ndim == 2:
        return x
    return x.transpose(0, 1) if kind == "lif" else x.mean(1)


def accuracy(trainer: ForwardForwardTrainer, kind: str, x: Tensor, y: Tensor) -> float:
    hits = 0
    for start in range(0, len(y), 256):
        xb = x[start : start + 256]
        hits += int((trainer.predict(as_input(kind, xb)) == y[start : start + 256]).sum())
    return hits / len(y)


def run_tutorial(kind: str, data: tuple[Tensor, ...], args: argparse.Namespace) -> dict:
    """snnTorch's schedule on one batch of 128 (module docstring)."""
    x_train, y_train, x_test, y_test = data
    x, y = x_train[:128], y_train[:128]
    layers = build_layers(kind, [x.shape[-1], *args.hidden], args.seed, args.gain)
    trainer = trainer_for(kind, layers, args, negative="permute")
    x_pos, x_neg = trainer.make_pairs(as_input(kind, x), y)
    losses = trainer.train_layerwise(x_pos, x_neg, args.iterations)
    return {
        "train": accuracy(trainer, kind, x, y),
        "test": accuracy(trainer, kind, x_test, y_test),
        "final_losses": losses[:, -1].tolist(),
    }


def run_epochs(kind: str, data: tuple[Tensor, ...], args: argparse.Namespace) -> dict:
    """Forward-Forward for ``--epochs`` over the training set (one update per batch)."""
    x_train, y_train, x_test, y_test = data
    layers = build_layers(kind, [x_train.shape[-1], *args.hidden], args.seed, args.gain)
    trainer = trainer_for(kind, layers, args, negative="wrong")
    order_gen = torch.Generator().manual_seed(args.seed)
    for _ in range(args.epochs):
        order = torch.randperm(len(y_train), generator=order_gen)
        for start in range(0, len(order), args.batch_size):
            idx = order[start : start + args.batch_size]
            trainer.step(*trainer.make_pairs(as_input(kind, x_train[idx]), y_train[idx]))
    return {"train": accuracy(trainer, kind, x_train, y_train),
            "test": accuracy(trainer, kind, x_test, y_test)}  # fmt: skip


def run_backprop(kind: str, data: tuple[Tensor, ...], args: argparse.Namespace) -> dict:
    """The same hidden layers (same initial weights) and a linear readout trained end
    to end on the cross-entropy, the plain images as input, for as many updates."""
    x_train, y_train, x_test, y_test = data
    layers = build_layers(kind, [x_train.shape[-1], *args.hidden], args.seed, args.gain)
    readout = nn.Linear(args.hidden[-1], 10)
    params = [*layers.parameters(), *readout.parameters()]
    opt = torch.optim.Adam(params, lr=args.bp_lr)

    def logits(x: Tensor) -> Tensor:
        h = as_input(kind, x)
        if kind == "lif" and h.ndim == 2:
            h = h.unsqueeze(0).expand(args.T, *h.shape)
        elif kind == "lif1":
            h = h.unsqueeze(0)
        out = readout(layers(h))
        return out.mean(0) if out.ndim == 3 else out

    order_gen = torch.Generator().manual_seed(args.seed)
    for _ in range(args.epochs):
        order = torch.randperm(len(y_train), generator=order_gen)
        for start in range(0, len(order), args.batch_size):
            idx = order[start : start + args.batch_size]
            loss = nn.functional.cross_entropy(logits(x_train[idx]), y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        acc = [float((logits(x).argmax(-1) == y).float().mean())
               for x, y in ((x_train, y_train), (x_test, y_test))]  # fmt: skip
    return {"train": acc[0], "test": acc[1]}


def main(argv: list[str] | None = None) -> dict[str, dict]:
    """Run each ``--layers`` kind; print and return the accuracies."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=("digits", "nmnist"), default="digits")
    parser.add_argument("--nmnist-root", default="../shared/data/nmnist-small")
    parser.add_argument("--layers", nargs="+", choices=LAYERS, default=list(LAYERS))
    parser.add_argument("--schedule", choices=("epochs", "tutorial"), default="epochs")
    parser.add_argument("--hidden", type=int, nargs="+", default=[500, 500])
    parser.add_argument("--T", type=int, default=8, help="steps of the lif layers")
    parser.add_argument("--theta", type=float, default=None,
                        help="θ (default 5 with --schedule tutorial, 2 with epochs)")  # fmt: skip
    parser.add_argument("--gain", type=float, default=None,
                        help="initial weights x gain (default 1 tutorial, 5 epochs)")  # fmt: skip
    parser.add_argument("--lr", type=float, default=0.03)
    parser.add_argument("--iterations", type=int, default=1000, help="tutorial: per layer")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--backprop", action=argparse.BooleanOptionalAction, default=True,
                        help="epochs: also train the same net by backprop")  # fmt: skip
    parser.add_argument("--bp-lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    tutorial = args.schedule == "tutorial"
    if args.theta is None:
        args.theta = 5.0 if tutorial else 2.0
    if args.gain is None:
        args.gain = 1.0 if tutorial else 5.0
    torch.set_num_threads(args.threads)
    if args.dataset == "digits":
        data = load_digits_split(args.seed)
    else:
        data = load_nmnist_split(args.nmnist_root, args.T)
    print(f"{args.dataset}: {len(data[1])} train / {len(data[3])} test, schedule "
          f"{args.schedule}", flush=True)  # fmt: skip
    results = {}
    for kind in args.layers:
        start = time.perf_counter()
        run = run_tutorial if args.schedule == "tutorial" else run_epochs
        result = {"ff": run(kind, data, args)}
        if args.schedule == "epochs" and args.backprop:
            result["backprop"] = run_backprop(kind, data, args)
        results[kind] = result
        line = ", ".join(f"{method} train {r['train']:.2%} test {r['test']:.2%}"
                         for method, r in result.items())  # fmt: skip
        print(f"{kind}: {line} ({time.perf_counter() - start:.1f} s)", flush=True)
    return results


if __name__ == "__main__":
    from spikeflow.data import exit_on_missing_data

    exit_on_missing_data(main, root_option="--nmnist-root")
