"""The argument parser of the ``spikeflow`` command (``train``, ``eval`` and ``export`` options)."""

from __future__ import annotations

import argparse
from typing import Any

from spikeflow.cli.optimisation_options import add_optimisation_options
from spikeflow.data.image_autoaugment import AUTO_AUGMENT_NAMES
from spikeflow.data.image_transforms import INTERPOLATIONS

__all__ = ["build_parser"]


def _add_train_options(p: argparse.ArgumentParser) -> None:
    s = argparse.SUPPRESS  # options not given stay out of the namespace
    p.add_argument(
        "--config",
        default=s,
        metavar="FILE",
        help="read options from a .toml, .yaml/.yml or .json file (the options "
        "given here override it)",
    )
    p.add_argument(
        "--resume",
        default=s,
        metavar="CHECKPOINT",
        help="continue a run from its last.pt (or the run directory); only "
        "runtime options (device, workers, output, logging, a moved --teacher's place) may "
        "change",
    )
    d = p.add_argument_group("data")
    d.add_argument(
        "--dataset",
        default=s,
        help="digits (default, no download), nmnist, or any spikeflow.data dataset class name",
    )
    d.add_argument("--data-dir", default=s, help="folder of a neuromorphic dataset")
    d.add_argument(
        "-T",
        "--T",
        dest="T",
        type=int,
        default=s,
        help="time steps (frames per sample); default: the dataset's (4 digits, 10 N-MNIST, "
        "20 DVS128 Gesture and CIFAR10-DVS, 100 SHD/SSC/SpeechCommands, 25 FSDD, else 10; "
        "docs/training.md)",
    )
    d.add_argument(
        "--split-by",
        default=s,
        choices=["number", "time"],
        help="how events are split into T frames: equal event counts (number) or equal "
        "durations (time); default: the dataset's, time for the audio datasets (SHD, SSC, "
        "FSDD, SpeechCommands), number otherwise",
    )
    d.add_argument(
        "--cache-dir",
        default=s,
        help="cache frames on disk here ('auto' for the user cache folder)",
    )
    d.add_argument(
        "--download",
        action="store_true",
        default=s,
        help="download a missing dataset into --data-dir (MD5-checked, resumable) where its "
        "host allows it",
    )
    d.add_argument(
        "--train-samples",
        type=int,
        default=s,
        help="use only this many training samples (spread over the set)",
    )
    d.add_argument("--test-samples", type=int, default=s, help="same for the test split")
    d.add_argument(
        "--dataset-kwargs",
        nargs="+",
        default=s,
        metavar="KEY=VALUE",
        help="more dataset arguments, e.g. version=v0.01 or "
        "audio_to_events='{n_mels = 64, threshold_db = 3}'",
    )
    d.add_argument(
        "--auto-augment",
        default=s,
        choices=AUTO_AUGMENT_NAMES,
        help="an augmentation policy for the training images of a static image dataset, "
        "after its crop and flip: ra (RandAugment), ta_wide (TrivialAugment-wide), or "
        "AutoAugment's imagenet, cifar10 or svhn policy (docs/training.md)",
    )
    d.add_argument(
        "--random-erase",
        type=float,
        default=s,
        metavar="P",
        help="random erasing with probability P as the last training step of a static image "
        "dataset (after the normalisation for imagenet/imagefolder); default: the dataset's "
        "(0.1 with --dataset-kwargs augment=psn, else none); 0: none (docs/training.md)",
    )
    d.add_argument(
        "--train-crop-size",
        type=int,
        default=s,
        metavar="N",
        help="imagenet/imagefolder: the training split's random resized crop is N x N "
        "(default: the dataset's image_size, 224)",
    )
    d.add_argument(
        "--val-resize-size",
        type=int,
        default=s,
        metavar="N",
        help="imagenet/imagefolder: the evaluation resizes the shorter side to N before its "
        "centre crop (default: the crop's 8/7, 256 for 224)",
    )
    d.add_argument(
        "--val-crop-size",
        type=int,
        default=s,
        metavar="N",
        help="imagenet/imagefolder: the evaluation's centre crop is N x N (default: the "
        "dataset's image_size, 224)",
    )
    d.add_argument(
        "--interpolation",
        default=s,
        choices=INTERPOLATIONS,
        help="imagenet/imagefolder: how the training crop and the evaluation resize resample "
        "(default: bilinear)",
    )
    m = p.add_argument_group("model")
    m.add_argument(
        "--model",
        default=s,
        help="a spikeflow.models name (default: the dataset's, e.g. plif_digits, plif_nmnist, "
        "plif_dvsgesture, rsnn for SHD; docs/training.md lists them)",
    )
    m.add_argument(
        "--model-kwargs",
        nargs="+",
        default=s,
        metavar="KEY=VALUE",
        help="model arguments, e.g. channels=64 dropout=0.3",
    )
    m.add_argument(
        "--neuron",
        default=s,
        help="neuron name (default: the model's, plif "
        "for the PLIF nets): if, lif, plif, klif, alif, liaf, psn, ...",
    )
    m.add_argument(
        "--neuron-kwargs",
        nargs="+",
        default=s,
        metavar="KEY=VALUE",
        help="neuron arguments, e.g. init_tau=2.0 surrogate_function=atan",
    )
    o = p.add_argument_group("optimisation")
    add_optimisation_options(o, s)
    r = p.add_argument_group("run")
    r.add_argument("--device", default=s, help="auto (default), cpu, cuda, cuda:1, ...")
    r.add_argument("--workers", type=int, default=s, help="DataLoader worker processes (default 0)")
    r.add_argument(
        "--threads",
        type=int,
        default=s,
        metavar="N",
        help="torch CPU threads for the run (default: torch's; on a busy shared CPU 1 is "
        "often fastest)",
    )
    r.add_argument("--output-dir", default=s, help="default runs/<dataset>-<date-time>")
    r.add_argument(
        "--overwrite",
        action="store_true",
        default=s,
        help="let this run replace an earlier run's files in --output-dir (else an error)",
    )
    r.add_argument(
        "--no-progress", dest="progress", action="store_false", default=s, help="no progress bars"
    )
    r.add_argument(
        "--compile",
        action="store_true",
        default=s,
        help="train through torch.compile(model): faster steps after a compilation of tens "
        "of seconds (most for recurrent layers; docs/training.md)",
    )
    r.add_argument(
        "--tensorboard",
        action="store_true",
        default=s,
        help="also write TensorBoard logs (needs the 'tensorboard' extra)",
    )
    r.add_argument(
        "--plots",
        nargs="?",
        const="on",
        default=s,
        choices=["auto", "on", "off"],
        help="PNG plots after the run: auto (default: if matplotlib is installed), "
        "on (--plots; error without matplotlib) or off",
    )
    r.add_argument(
        "--stop-after",
        type=int,
        default=s,
        metavar="N",
        help="stop once N epochs are done (the schedule still spans --epochs); "
        "continue later with --resume",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``spikeflow`` command."""
    parser = argparse.ArgumentParser(
        prog="spikeflow",
        description="Train, evaluate and export spiking networks (docs/training.md).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser(
        "train",
        help="train a spiking network (default: 8x8 digits)",
        description="Train a spiking network; see docs/training.md.",
    )
    _add_train_options(train)
    ev = sub.add_parser("eval", help="evaluate a checkpoint on its dataset's test split")
    # The run as `spikeflow export RUN` takes it, or as --checkpoint (one of the two).
    which = ev.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "run", nargs="?", default=None, metavar="RUN", help="the same as --checkpoint RUN"
    )
    which.add_argument(
        "--checkpoint",
        help="a last.pt or best.pt of a run, or its run folder (then its best.pt if there "
        "is one, else its last.pt)",
    )
    ev.add_argument(
        "--data-dir",
        default=None,
        help="where the run's dataset is now (default: the run's --data-dir)",
    )
    ev.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:1, ...")
    ev.add_argument("--batch-size", type=int, default=None, help="default: the run's")
    ev.add_argument(
        "--workers", type=int, default=0, help="DataLoader worker processes (default 0)"
    )
    ev.add_argument(
        "--test-samples",
        default=None,
        type=_samples,
        metavar="N|all",
        help="test on N samples spread over the split, or 'all' (default: the "
        "samples the run tested on)",
    )
    ev.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    ev.add_argument(
        "--operations",
        action="store_true",
        help="also count each layer's synaptic operations (ACs for spike inputs, MACs "
        "for real-valued ones) and the products between activations (attention), estimate "
        "the energy per sample, and count the neurons' state updates apart (docs/energy.md)",
    )
    ev.add_argument(
        "--neurobench",
        action="store_true",
        help="also compute NeuroBench's metrics (parameter count, footprint, connection and "
        "activation sparsity, membrane updates, synaptic operations: docs/energy.md)",
    )
    ev.add_argument(
        "--energy",
        default=None,
        choices=("neuromc",),
        help="also price one training step (forward, backward, the run's optimizer update) "
        "of the model on the first batch of the test samples on NeuroMC's training "
        "accelerator (docs/energy.md)",
    )
    ev.add_argument(
        "--spike-counts",
        action="store_true",
        help="with --operations: read whole-number inputs (sums of spikes on a residual "
        "stream, event counts) as that many spikes (ACs) instead of real values (MACs)",
    )
    ev.add_argument(
        "--early-exit",
        default=None,
        metavar="CRITERION:THRESHOLD[,...]",
        help="also run the test samples with early exit over time steps, each sample "
        "stopping at the first step whose time-mean output passes: confidence:0.9 (largest "
        "softmax probability >= 0.9, SEENN-I) or entropy:0.1 (normalised entropy <= 0.1, "
        "DT-SNN); several thresholds separated by commas; with --operations, the "
        "operations of the steps run (docs/training.md)",
    )
    ev.add_argument(
        "--early-exit-accumulate",
        default="mean",
        choices=("mean", "sum"),
        help="with --early-exit: decide on the mean (default, as the papers) or the sum (as "
        "SEENN's code) of the outputs of the steps so far",
    )
    ev.add_argument(
        "--ema",
        action="store_true",
        help="evaluate the moving average of the weights a --model-ema run kept",
    )
    ev.add_argument(
        "--json",
        default=None,
        metavar="FILE",
        help="also write the results here (its folder must exist; written atomically)",
    )
    _add_export_options(sub)
    return parser


def _add_export_options(sub: Any) -> None:
    """``spikeflow export RUN --to nir|netx --out FILE``."""
    ex = sub.add_parser(
        "export",
        help="export a trained run's network to NIR or Lava-DL netx (docs/nir.md)",
        description="Export a run's network (batch norm folded, dropout removed, voting as "
        "a linear map) to NIR or Lava-DL's netx; see docs/nir.md and docs/loihi.md.",
    )
    ex.add_argument(
        "run",
        metavar="RUN",
        help="a run folder (its best.pt if there is one, else its last.pt) or a checkpoint",
    )
    ex.add_argument("--to", required=True, choices=("nir", "netx"), help="the format: nir or netx")
    ex.add_argument(
        "--out", required=True, metavar="FILE", help="the file to write (its folder must exist)"
    )
    ex.add_argument(
        "--data-dir",
        default=None,
        help="where the run's dataset is now (default: the run's --data-dir)",
    )
    ex.add_argument(
        "--dt",
        type=float,
        default=1.0,
        help="NIR's time step: time constants are written as tau_steps * dt (default 1.0: "
        "time in steps; 1e-4 for snnTorch, 1e-3 for Norse)",
    )
    ex.add_argument(
        "--ema",
        action="store_true",
        help="export the moving average of the weights a --model-ema run kept",
    )
    ex.add_argument(
        "--float64",
        action="store_true",
        help="NIR: write float64 weights, the folded batch norm without float32 rounding "
        "(default: float32, the run's)",
    )


def _samples(text: str) -> int | str:
    """``--test-samples`` of ``spikeflow eval``: a positive integer or ``all``."""
    if text.strip().lower() == "all":
        return "all"
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'all', got {text!r}")
    return value
