"""A convolutional spiking autoencoder (snnTorch's ``tutorial_sae``) against an identical
float autoencoder and the per-pixel training mean.

Data: scikit-learn's 8x8 digits (1,797 real scans, no download; shuffled with ``--seed``
and split 1437 / 360 as ``spikeflow train``'s) fed as a constant input current for
``--T`` steps; or, with ``--dataset nmnist``, the recordings under ``--nmnist-root`` (the
real subset in ``../shared/data/nmnist-small``: 1,000 train / 100 test), events
downsampled 2x in space (2 x 17 x 17), ``--T`` frames of equal event counts, a pixel with
an event in a frame a spike. The target is the image itself (for N-MNIST its per-pixel
spike rate over the frames).

Network: encoder ``Conv2d(C, 16, 3, stride 2) -> LIF -> Conv2d(16, 32, 3, stride 2) ->
LIF -> Linear(-, latent) -> LIF`` (the latent spikes), decoder ``Linear(latent, -) -> LIF
-> ConvTranspose2d(32, 16) -> LIF -> ConvTranspose2d(16, C)``; the reconstruction is the
last layer's output averaged over the steps (a non-spiking readout, as the tutorial reads
a membrane that never fires). LIF: tau 2, threshold 1, hard reset, ATan surrogate
gradient, trained through time (BPTT) with Adam on the reconstruction MSE. The float
reference is the same network with ReLU in place of every LIF, run once on the image
(the rate image for N-MNIST), same seed, optimiser and steps.

    python examples/spiking_autoencoder.py   # about 25 s on one CPU thread
    python examples/spiking_autoencoder.py --dataset nmnist --epochs 40   # about 20 s
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import Tensor, nn

from spikeflow import layers
from spikeflow.neurons import LIFNode
from spikeflow.surrogate import ATan


def load_digits_images(seed: int) -> tuple[Tensor, Tensor]:
    """The digits as images ``[N, 1, 8, 8]`` in [0, 1], shuffled, split 1437 / 360."""
    from sklearn.datasets import load_digits

    x = torch.tensor(load_digits().data, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
    x = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))]
    return x[:1437], x[1437:]


def load_nmnist_frames(root: str, frames: int) -> tuple[Tensor, Tensor]:
    """N-MNIST as spike frames ``[frames, N, 2, 17, 17]`` (module docstring)."""
    from spikeflow.data.datasets import NMNIST
    from spikeflow.data.transforms import Downsample

    def split(train: bool) -> Tensor:
        data = NMNIST(root, train=train, data_type="frame", frames_number=frames,
                      split_by="number", event_transform=Downsample(0.5))  # fmt: skip
        x = torch.stack([torch.as_tensor(data[i][0]) for i in range(len(data))])
        return (x > 0).float().transpose(0, 1).contiguous()  # [T, N, 2, 17, 17]

    return split(True), split(False)


class Autoencoder(nn.Module):
    """The module docstring's network on ``[T, B, C, H, W]`` (spiking) or ``[B, C, H,
    W]`` (float: ``spiking=False``, ReLU for every LIF).

    Args:
        channels: input channels (1 for the digits, 2 for N-MNIST's polarities).
        size: input height = width.
        latent: latent units.
        spiking: LIF neurons (multi-step) or ReLU.
    """

    def __init__(self, channels: int, size: int, latent: int, spiking: bool) -> None:
        super().__init__()
        self.spiking = spiking
        self.size = size
        self.mid = (size + 1) // 2  # after one stride-2 conv (kernel 3, padding 1)
        self.low = (self.mid + 1) // 2  # after two
        flat = 32 * self.low * self.low

        def act() -> nn.Module:
            if spiking:
                return LIFNode(tau=2.0, decay_input=False, surrogate_function=ATan(), step_mode="m")
            return nn.ReLU()

        self.conv1 = layers.Conv2d(channels, 16, 3, stride=2, padding=1, step_mode="m")
        self.act1 = act()
        self.conv2 = layers.Conv2d(16, 32, 3, stride=2, padding=1, step_mode="m")
        self.act2 = act()
        self.encode = layers.Linear(flat, latent, step_mode="m")
        self.latent = act()
        self.decode = layers.Linear(latent, flat, step_mode="m")
        self.act3 = act()
        self.deconv1 = layers.ConvTranspose2d(32, 16, 3, stride=2, padding=1, step_mode="m")
        self.act4 = act()
        self.deconv2 = layers.ConvTranspose2d(16, channels, 3, stride=2, padding=1,
                                              step_mode="m")  # fmt: skip

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(reconstruction [B, C, H, W], latent activity [T, B, latent])``; the float
        network's input gets a time axis of one step. Each call starts from rest (a
        multi-step call that does not stream begins at the neurons' reset values)."""
        if not self.spiking:
            x = x.unsqueeze(0)
        steps, batch = x.shape[:2]
        h = self.act1(self.conv1(x))
        h = self.act2(self.conv2(h))
        z = self.latent(self.encode(h.flatten(2)))
        h = self.act3(self.decode(z)).reshape(steps, batch, 32, self.low, self.low)
        h = self.act4(self.deconv1(h, output_size=(self.mid, self.mid)))
        out = self.deconv2(h, output_size=(self.size, self.size))
        return out.mean(0), z


def split_batches(x: Tensor, spiking_input: bool, batch: int) -> list[Tensor]:
    """``x`` cut along its sample axis (1 for a ``[T, N, ...]`` sequence, else 0)."""
    return list(torch.split(x, batch, dim=1 if spiking_input else 0))


def train(net: Autoencoder, inputs: Tensor, targets: Tensor, args: argparse.Namespace,
          sequence: bool) -> list[float]:  # fmt: skip
    """Adam on the reconstruction MSE; ``inputs`` ``[T, N, ...]`` when ``sequence``.
    Returns the mean training loss of each epoch."""
    optimizer = torch.optim.Adam(net.parameters(), lr=args.lr)
    generator = torch.Generator().manual_seed(args.seed)
    losses = []
    samples = targets.shape[0]
    for _ in range(args.epochs):
        order = torch.randperm(samples, generator=generator)
        total = 0.0
        for first in range(0, samples, args.batch_size):
            index = order[first : first + args.batch_size]
            x = inputs[:, index] if sequence else inputs[index]
            optimizer.zero_grad()
            loss = nn.functional.mse_loss(net(x)[0], targets[index])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(index)
        losses.append(total / samples)
    return losses


@torch.no_grad()
def test_mse(net: Autoencoder, inputs: Tensor, targets: Tensor, sequence: bool,
             batch: int = 256) -> tuple[float, Tensor | None]:  # fmt: skip
    """Test reconstruction MSE (per pixel) and, for the spiking net, its latent spikes
    ``[T, N, latent]``."""
    errors, latents = [], []
    for x, y in zip(split_batches(inputs, sequence, batch), split_batches(targets, False, batch)):
        out, z = net(x)
        errors.append(((out - y) ** 2).sum())
        latents.append(z)
    mse = float(torch.stack(errors).sum()) / targets.numel()
    return mse, torch.cat(latents, dim=1) if net.spiking else None


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Train both autoencoders; print and return the test MSEs and the latent activity."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=("digits", "nmnist"), default="digits")
    parser.add_argument("--nmnist-root", default="../shared/data/nmnist-small")
    parser.add_argument("--T", type=int, default=8, help="time steps (N-MNIST: frames)")
    parser.add_argument("--latent", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    if args.dataset == "digits":
        train_img, test_img = load_digits_images(args.seed)
        # a constant input current for T steps, as the tutorial feeds its images
        train_seq = train_img.unsqueeze(0).expand(args.T, *train_img.shape)
        test_seq = test_img.unsqueeze(0).expand(args.T, *test_img.shape)
    else:
        train_seq, test_seq = load_nmnist_frames(args.nmnist_root, args.T)
        train_img, test_img = train_seq.mean(0), test_seq.mean(0)  # per-pixel spike rate
    channels, size = train_img.shape[1], train_img.shape[-1]

    results = {"trivial": float(((test_img - train_img.mean(0)) ** 2).mean())}
    for name, spiking in (("float", False), ("spiking", True)):
        torch.manual_seed(args.seed)
        net = Autoencoder(channels, size, args.latent, spiking)
        inputs, test_inputs = (train_seq, test_seq) if spiking else (train_img, test_img)
        start = time.perf_counter()
        losses = train(net, inputs, train_img, args, sequence=spiking)
        results[name], latent = test_mse(net, test_inputs, test_img, sequence=spiking)
        print(f"{name} autoencoder: train MSE {losses[0]:.4f} -> {losses[-1]:.4f}, "
              f"test MSE {results[name]:.4f} ({time.perf_counter() - start:.0f} s)",
              flush=True)  # fmt: skip
        if latent is not None:
            results["latent_rate"] = float(latent.mean())
            results["latent_silent"] = float((latent.sum(0) == 0).float().mean())
            print(
                f"latent: firing rate {results['latent_rate']:.3f} spikes/step, "
                f"{100 * results['latent_silent']:.1f}% of (sample, unit) pairs silent"
            )
    print(f"trivial predictor (per-pixel training mean): test MSE {results['trivial']:.4f}")
    return results


if __name__ == "__main__":
    from spikeflow.data import exit_on_missing_data

    exit_on_missing_data(main, root_option="--nmnist-root")
