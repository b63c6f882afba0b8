"""The ``spikeflow`` command: ``spikeflow train`` and ``spikeflow eval``.

``spikeflow train`` with no arguments trains the PLIF network on scikit-learn's 8x8
digits (no download). Values come from the defaults, then ``--config FILE`` (TOML,
YAML or JSON), then the options given; the resolved config is written next to the
results as ``config.toml``. See ``docs/training.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from spikeflow.errors import ConfigurationError, SpikeflowError
from spikeflow.training.config import READOUT_MODES, TABLE_FIELDS
from spikeflow.training.resume import checkpoint_position, describe_position

__all__ = ["build_parser", "main", "parse_kwargs"]


def parse_kwargs(items: Sequence[str], option: str) -> dict[str, Any]:
    """``["tau=2.0", "detach_reset=False", "v_reset=None", "surrogate_function=atan"]`` ->
    a dict.

    Each value is read as a TOML value (numbers, ``true``/``false``, ``"strings"``,
    ``[lists]``, ``{inline = "tables"}``); Python's ``True``, ``False`` and ``None`` (and
    JSON's ``null``) are those constants, as the whole value and as a value inside a list
    or table (``{name = "atan", spiking = False}``, ``[32, None]``; never inside a quoted
    string, nor as a key); a bare name such as ``atan`` or ``torch.float16`` is taken as a
    string, and anything else (``2.O``) is an error. A single item that is a JSON object
    is also accepted.
    """
    from spikeflow.training.config import tomllib

    if len(items) == 1 and items[0].lstrip().startswith("{"):
        try:
            value = json.loads(items[0])
        except json.JSONDecodeError as exc:
            raise ConfigurationError(f"{option}: not a JSON object: {exc}") from exc
        if not isinstance(value, dict):
            raise ConfigurationError(f"{option}: expected a JSON object, got {items[0]!r}")
        return value
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigurationError(f"{option}: expected KEY=VALUE, got {item!r}")
        text = text.strip()
        if text in _CONSTANTS:
            out[key.strip()] = _CONSTANTS[text]
            continue
        try:
            out[key.strip()] = _toml_value(text)
        except tomllib.TOMLDecodeError as exc:
            if not _BARE_NAME.fullmatch(text):
                raise ConfigurationError(
                    f"{option}: {item!r} is neither a TOML value (number, true/false, "
                    f'"string", [list], {{table}}; Python\'s True, False and None are '
                    f"read in lists and tables too) nor a bare name: "
                    f"{_located(str(exc), text)}"
                ) from exc
            out[key.strip()] = text
    return out


_BARE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
#: The constants as Python (and JSON, for null) spell them; TOML's true/false are TOML
#: values. Without this, ``batch_norm=False`` would be the (truthy) string 'False'.
_CONSTANTS: dict[str, Any] = {"True": True, "False": False, "None": None, "null": None}
#: A run of TOML bare-word characters (keys, numbers, dates, true/false, inf, nan).
_WORD = re.compile(r"[A-Za-z0-9_+\-.:]+")


def _toml_value(text: str) -> Any:
    """The TOML value ``text``, with Python's True/False/None (and null) read as the
    constants where a value goes inside a list or an inline table.

    Raises:
        tomllib.TOMLDecodeError: ``text`` is no TOML value, even so.
    """
    from spikeflow.training.config import tomllib

    # None stands in TOML (which has no null) as a string no input holds: it is made anew
    # for each value, and a command line cannot hold its NUL character.
    mark = _none_mark(secrets.token_hex(8))
    value = tomllib.loads(_PREFIX + _python_constants_as_toml(text, mark)[0])["v"]
    return _restore_none(value, mark)


_PREFIX = "v = "


def _none_mark(token: str) -> str:
    """The string that stands for None in the TOML the parser sees (``token``: 16 hex
    digits, new for each value; :func:`_located` needs only its length)."""
    return f"\x00spikeflow-none-{token}"


_POSITION = re.compile(r"\(at line 1, column (\d+)\)")


def _located(message: str, text: str) -> str:
    """The TOML parser's ``message`` about ``text`` with its first-line column counted
    in ``text`` as typed: the parser saw it after :data:`_PREFIX` and with Python's
    constants rewritten (None as a long marker string)."""
    match = _POSITION.search(message)
    if match is None:
        return message
    _, rewrites = _python_constants_as_toml(text, _none_mark("0" * 16))  # its length only
    at, shift = int(match.group(1)) - 1 - len(_PREFIX), 0
    for start, old_len, new_len in rewrites:  # in order: map back through each rewrite
        if at < start + shift:
            break
        if at < start + shift + new_len:  # inside a rewritten word: at its start
            at = start + shift
            break
        shift += new_len - old_len
    return f"{message[: match.start()]}(at column {max(at - shift, 0) + 1} of the value)"


def _python_constants_as_toml(text: str, mark: str) -> tuple[str, list[tuple[int, int, int]]]:
    """``text`` with each bare ``True``/``False``/``None``/``null`` that stands where a
    value goes (not inside a quoted string, not before ``=`` or ``.`` as a key) written
    as TOML: ``true``, ``false``, and None as the string ``mark``; and each rewrite's
    (start in ``text``, old length, new length). Comments (``#`` outside strings) are
    kept as they are."""
    out: list[str] = []
    rewrites: list[tuple[int, int, int]] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char in "\"'":
            end = _string_end(text, i)
            out.append(text[i:end])
            i = end
        elif char == "#":  # a comment runs to the end of the line
            end = text.find("\n", i)
            end = n if end < 0 else end
            out.append(text[i:end])
            i = end
        else:
            match = _WORD.match(text, i)
            if match is None:
                out.append(char)
                i += 1
                continue
            word, i = match.group(), match.end()
            rest = text[i:].lstrip(" \t")
            if word in _CONSTANTS and not rest.startswith(("=", ".")):
                value = _CONSTANTS[word]
                new = json.dumps(mark) if value is None else str(value).lower()
                rewrites.append((match.start(), len(word), len(new)))
                word = new
            out.append(word)
    return "".join(out), rewrites


def _string_end(text: str, start: int) -> int:
    """The index just past the TOML string starting at ``start`` (basic ``"..."`` with
    escapes, literal ``'...'``, or either tripled); the end of ``text`` if unclosed (the
    TOML parser then names the error)."""
    quote = text[start]
    delimiter = quote * 3 if text.startswith(quote * 3, start) else quote
    i = start + len(delimiter)
    while i < len(text):
        if quote == '"' and text[i] == "\\":
            i += 2
            continue
        if text.startswith(delimiter, i):
            end = i + len(delimiter)
            while delimiter != quote and text.startswith(quote, end) and end - i < 5:
                end += 1  # a multi-line string may end with up to two more quotes
            return end
        i += 1
    return len(text)


def _restore_none(value: Any, mark: str) -> Any:
    """``value`` with every string ``mark``, in lists and tables too, None."""
    if isinstance(value, str):
        return None if value == mark else value
    if isinstance(value, list):
        return [_restore_none(v, mark) for v in value]
    if isinstance(value, dict):
        return {k: _restore_none(v, mark) for k, v in value.items()}
    return value


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
        "runtime options (device, workers, output, logging) may change",
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
    o.add_argument(
        "--loss",
        default=s,
        help="mse (rate vs one-hot), ce, tet, tcl, count; time-based (event-driven nets): "
        "count+, sum0, ce+, ttfs; snnTorch's: mse_membrane, ce_max_membrane, ce_count, "
        "mse_count, mse_temporal, ce_temporal; Lava-DL's: spike_rate (needs --loss-kwargs "
        "true_rate=R false_rate=R), spike_max. Default: the dataset's recipe with its "
        "default model (ce for rsnn on the audio datasets), else mse",
    )
    o.add_argument(
        "--loss-kwargs",
        nargs="+",
        default=s,
        metavar="KEY=VALUE",
        help="loss arguments, e.g. lamb=0.05 for tet",
    )
    o.add_argument(
        "--readout",
        default=s,
        choices=list(READOUT_MODES),
        help="how accuracy reads the predicted class: auto (default: the loss's), rate "
        "(time-mean), count (most spikes, ties to the earlier), first_spike, max (largest "
        "maximum over time, a membrane readout)",
    )
    o.add_argument("--optimizer", default=s, choices=["sgd", "adam", "adamw"])
    o.add_argument(
        "--lr",
        type=float,
        default=s,
        help="learning rate (default: the dataset's recipe with its default model, 1e-2 "
        "for rsnn on the audio datasets; else 1e-3)",
    )
    o.add_argument("--weight-decay", type=float, default=s)
    o.add_argument("--momentum", type=float, default=s, help="for sgd (default 0.9)")
    o.add_argument(
        "--schedule",
        default=s,
        choices=["cosine", "step", "none"],
        help="learning-rate schedule per epoch (default cosine over --epochs)",
    )
    o.add_argument("--step-size", type=int, default=s, help="epochs per step of 'step'")
    o.add_argument("--gamma", type=float, default=s, help="factor of each 'step'")
    o.add_argument("--epochs", type=int, default=s, help="default 40")
    o.add_argument(
        "--warmup-epochs",
        type=int,
        default=s,
        metavar="N",
        help="linear learning-rate warm-up over the first N epochs (epoch k at lr (k+1)/(N+1)), "
        "then --schedule over the rest (default 0)",
    )
    o.add_argument(
        "--clip-grad-norm",
        type=float,
        default=s,
        metavar="MAX",
        help="clip the gradients' global L2 norm to MAX before each update",
    )
    o.add_argument(
        "--mixup",
        type=float,
        default=s,
        metavar="ALPHA",
        help="mixup of each training batch, λ ~ Beta(ALPHA, ALPHA) (e.g. 0.2; a loss that "
        "takes class distributions: mse, ce, tet, mse_membrane, ce_max_membrane, ce_count, "
        "mse_count)",
    )
    o.add_argument(
        "--cutmix",
        type=float,
        default=s,
        metavar="ALPHA",
        help="CutMix of each training batch (e.g. 1.0); with --mixup, one of the two per batch",
    )
    o.add_argument(
        "--batch-size",
        type=int,
        default=s,
        help="global batch (split over the processes); default: the dataset's (32 digits, "
        "128 SHD/SSC/SpeechCommands, else 16)",
    )
    o.add_argument(
        "--amp",
        default=s,
        choices=["off", "bf16", "fp16"],
        help="autocast: bf16 (CPU or GPU) or fp16 (GPU, with gradient scaling)",
    )
    o.add_argument(
        "--mask-schedule",
        default=s,
        choices=["paper", "linear", "none"],
        help="masked PSN's progressive mask per epoch: paper (default; fully on after "
        "1/8 of the epochs), linear, none (keep lambda_init)",
    )
    o.add_argument(
        "--prune",
        default=s,
        choices=["none", "grad_r", "stds", "lats"],
        help="prune synapses while training (docs/pruning.md): grad_r (Gradient Rewiring, "
        "Adam), stds (soft threshold, sine/linear/slats schedule), lats (threshold grows "
        "with the learning rate); default none",
    )
    o.add_argument(
        "--prune-kwargs",
        nargs="+",
        default=s,
        metavar="KEY=VALUE",
        help="pruning arguments: grad_r alpha=1e-3 target_sparsity=0.95; stds "
        "final_threshold=D shape=sine start_epoch=0; lats l1=LAMBDA start_epoch=0; "
        'any of them exclude=["features.0"] (layers left dense)',
    )
    o.add_argument(
        "--weight-bits",
        type=int,
        default=s,
        help="train with linear and convolution weights quantized to this many bits "
        "(2-16, symmetric, per output channel; docs/quantization.md)",
    )
    o.add_argument(
        "--membrane-bits",
        type=int,
        default=s,
        help="train with every neuron's membrane held in a signed fixed-point register of "
        "this many bits (2-24; docs/quantization.md)",
    )
    o.add_argument(
        "--membrane-fraction-bits",
        type=int,
        default=s,
        help="with --membrane-bits: the threshold is the register's level 2^F "
        "(default bits - 2: the register spans [-2 threshold, 2 threshold))",
    )
    o.add_argument(
        "--recompute",
        action="store_true",
        default=s,
        help="recompute the network's blocks in the backward pass instead of keeping their "
        "activations, spikes packed at one bit: less memory, one more forward pass, the "
        "same training (docs/memory.md)",
    )
    o.add_argument(
        "--online",
        action="store_true",
        default=s,
        help="online training (SLTT): one step at a time, a backward pass per step, no "
        "gradient through the neurons' carried state; memory independent of T (loss "
        "mse, ce, tet or mse_membrane, applied per step; docs/training.md)",
    )
    o.add_argument(
        "--online-steps",
        type=int,
        default=s,
        metavar="K",
        help="with --online: backpropagate only K randomly drawn steps per batch (SLTT-K)",
    )
    o.add_argument(
        "--online-trace-decay",
        type=float,
        default=s,
        metavar="LAMBDA",
        help="with --online: OTTT, the linear and convolution weights learn from presynaptic "
        "traces decaying by LAMBDA per step (1 - 1/tau of the neurons, 0.5 for tau = 2)",
    )
    o.add_argument(
        "--eprop",
        default=s,
        choices=["symmetric", "random", "adaptive"],
        metavar="FEEDBACK",
        help="train --model eprop_rsnn by e-prop (Bellec et al. 2020): gradients forward in "
        "time, memory independent of T, with symmetric, random or adaptive feedback "
        "(loss ce per step; docs/training.md)",
    )
    o.add_argument(
        "--eprop-rate-target",
        type=float,
        default=s,
        metavar="RATE",
        help="with --eprop: the firing-rate regularisation's target in spikes per step "
        "(default 0.01)",
    )
    o.add_argument(
        "--eprop-rate-strength",
        type=float,
        default=s,
        metavar="C",
        help="with --eprop: the firing-rate regularisation's strength (default 0: off)",
    )
    o.add_argument(
        "--eprop-feedback-decay",
        type=float,
        default=s,
        metavar="DECAY",
        help="with --eprop adaptive: weight decay of W_out and B (default 0)",
    )
    o.add_argument(
        "--delay-lr-scale",
        type=float,
        default=s,
        help="learning rate of the synaptic delays (DelayedLinear, model delay_snn) as a "
        "multiple of --lr (default 100, the authors'; no weight decay on delays)",
    )
    o.add_argument("--seed", type=int, default=s)
    r = p.add_argument_group("run")
    r.add_argument("--device", default=s, help="auto (default), cpu, cuda, cuda:1, ...")
    r.add_argument("--workers", type=int, default=s, help="DataLoader worker processes")
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
        prog="spikeflow", description="Train and evaluate spiking networks (docs/training.md)."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser(
        "train",
        help="train a spiking network (default: 8x8 digits)",
        description="Train a spiking network; see docs/training.md.",
    )
    _add_train_options(train)
    ev = sub.add_parser("eval", help="evaluate a checkpoint on its dataset's test split")
    ev.add_argument(
        "--checkpoint",
        required=True,
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
    ev.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
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
        "for real-valued ones) and estimate the energy per sample (docs/energy.md)",
    )
    ev.add_argument(
        "--spike-counts",
        action="store_true",
        help="with --operations: read whole-number inputs (sums of spikes on a residual "
        "stream, event counts) as that many spikes (ACs) instead of real values (MACs)",
    )
    ev.add_argument(
        "--json",
        default=None,
        metavar="FILE",
        help="also write the results here (its folder must exist; written atomically)",
    )
    return parser


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


_KWARG_OPTIONS = TABLE_FIELDS


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    values = {k: v for k, v in vars(args).items() if k not in ("command", "config", "resume")}
    for key in _KWARG_OPTIONS:
        if key in values:
            values[key] = parse_kwargs(values[key], "--" + key.replace("_", "-"))
    return values


def _train(args: argparse.Namespace) -> int:
    from spikeflow.training import checkpoint as ckpt
    from spikeflow.training.config import config_from_dict, decode_tables, load_config_file
    from spikeflow.training.trainer import Trainer, config_for_resume

    overrides = _overrides(args)
    from_file = decode_tables(load_config_file(args.config)) if hasattr(args, "config") else {}
    # The file's keys are checked first, for a resume too ("unknown config key(s) ...").
    file_config = config_from_dict(from_file) if from_file else None
    for key in _KWARG_OPTIONS:  # K=V options add to the file's tables, key by key
        if key in overrides and isinstance(from_file.get(key), dict):
            overrides[key] = {**from_file[key], **overrides[key]}
    payload, path = None, None
    if hasattr(args, "resume"):
        path = Path(args.resume)
        path = path / "last.pt" if path.is_dir() else path
        payload = ckpt.load_checkpoint(path)
    restarted = _elastic_restart_checkpoint(path, payload, overrides, file_config)
    if restarted is not None:
        path, payload = restarted
    if payload is not None and path is not None:
        resume_dir = path.parent
        # The file's values are checked like the flags' (the command line first); K=V
        # tables add to the checkpoint's, so repeating a key with its value is no change.
        overrides = {**from_file, **overrides}
        saved = decode_tables(payload["config"])
        for key in _KWARG_OPTIONS:
            if isinstance(overrides.get(key), dict) and isinstance(saved.get(key), dict):
                overrides[key] = {**saved[key], **overrides[key]}
        overrides.setdefault("output_dir", str(resume_dir))
        config = config_for_resume(payload, overrides)
        _refuse_rewind(path, payload, Path(config.output_dir), config.overwrite)
    else:
        resume_dir = None
        config = config_from_dict(overrides, file_config)
    result = Trainer(config, resume=payload, resume_dir=resume_dir).fit()
    if result.interrupted:
        return 130
    if result.history and int(os.environ.get("RANK", "0")) == 0:
        last = result.history[-1]
        print(
            f"test accuracy: {last['test_acc']:.4f} (epoch {last['epoch']}; best "
            f"{result.best_test_acc:.4f} at epoch {result.best_epoch}); results in "
            f"{result.output_dir}"
        )
    return 0


def _elastic_restart_checkpoint(
    resume: Path | None,
    payload: dict[str, Any] | None,
    overrides: dict[str, Any],
    file_config: Any,
) -> tuple[Path, dict[str, Any]] | None:
    """On a torchrun restart (``TORCHELASTIC_RESTART_COUNT > 0``, e.g. after a node
    failure with ``--max-restarts``), the ``last.pt`` (path and payload) the first
    attempt wrote into ``--output-dir``, so the group continues the run instead of
    starting it again.

    Where the launch has an identity (its rendezvous id,
    :func:`~spikeflow.training.run_folder.launch_identity`), that ``last.pt`` is taken
    only where this launch wrote it: one already there (a run ``--overwrite`` replaces,
    the source of a rewind) is not. With a static rendezvous (no identity), a command
    with ``--resume`` takes it where it continues the resumed run further
    (:func:`_continues`), one without takes it as it is. Otherwise it is ``None``, and
    the command runs as given (a folder the first attempt of an identified launch
    claimed but wrote no checkpoint into is then its own to replace).
    """
    from spikeflow.training.checkpoint import load_checkpoint
    from spikeflow.training.run_folder import is_torchrun_restart, launch_identity

    if not is_torchrun_restart():
        return None
    out = overrides.get("output_dir") or getattr(file_config, "output_dir", None)
    if out is None and resume is not None:  # a resume writes into its checkpoint's folder
        out = resume.parent
    last = None if out is None else Path(out) / "last.pt"
    if last is None or not last.is_file():
        return None
    if resume is not None and os.path.samefile(resume, last):
        return None  # the checkpoint given is that last.pt
    try:
        written = load_checkpoint(last)
    except ConfigurationError:
        if payload is not None:  # the --resume checkpoint stands
            return None
        raise
    launch = launch_identity()
    if launch is not None and written.get("launch") != launch:
        return None  # not this launch's: the command runs as given
    if launch is None and payload is not None and not _continues(written, payload):
        return None
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"torchrun restart: continuing from {last}", file=sys.stderr)
    return last, written


def _continues(later: dict[str, Any], earlier: dict[str, Any]) -> bool:
    """Whether checkpoint ``later`` continues the run of checkpoint ``earlier`` further:
    a later (epoch, step), the same config up to the runtime options (both read as
    configs, so a key a newer spikeflow added with its default matches), and
    ``earlier``'s history as the start of its own."""
    from spikeflow.training.config import RUNTIME_FIELDS, config_from_dict, config_to_dict

    def run_config(payload: dict[str, Any]) -> dict[str, Any]:
        config = config_to_dict(config_from_dict(payload["config"]))  # stored values as they are
        return {k: v for k, v in config.items() if k not in RUNTIME_FIELDS}

    rows = list(earlier["history"])
    try:
        same_config = run_config(later) == run_config(earlier)
    except ConfigurationError:  # a config this spikeflow cannot read: another run's
        return False
    return (
        checkpoint_position(later) > checkpoint_position(earlier)
        and same_config
        and repr(list(later["history"])[: len(rows)]) == repr(rows)  # repr: NaN == NaN
    )


def _refuse_rewind(
    checkpoint: Path, payload: dict[str, Any], output_dir: Path, overwrite: bool
) -> None:
    """A resume from an older checkpoint of a run (its ``best.pt`` of an earlier epoch)
    into that run's own folder would replace its newer ``last.pt`` and cut its logs
    back: refused unless ``--overwrite``. "Newer" compares the epoch and step the two
    checkpoints hold (a ``best.pt`` of the last epoch is no rewind); a resume into
    another folder is checked by the trainer."""
    from spikeflow.training.checkpoint import load_checkpoint

    last = output_dir / "last.pt"
    if overwrite or not last.is_file() or output_dir.resolve() != checkpoint.parent.resolve():
        return
    if os.path.samefile(last, checkpoint):
        return
    resumed_at = checkpoint_position(payload)
    try:
        last_at: tuple[int, int] | None = checkpoint_position(load_checkpoint(last))
    except ConfigurationError:  # unreadable: it may be newer, so it is kept
        last_at = None
    if last_at is not None and last_at <= resumed_at:
        return
    newer = f"newer {last}" + ("" if last_at is None else f" ({describe_position(last_at)})")
    raise ConfigurationError(
        f"--resume {checkpoint} ({describe_position(resumed_at)}) would continue in "
        f"{output_dir}, replacing its {newer} and cutting its logs back to "
        f"{checkpoint.name}'s epoch; pass another --output-dir to branch off, or "
        "--overwrite to rewind the run"
    )


def _eval(args: argparse.Namespace) -> int:
    from spikeflow.training.evaluation import (
        check_json_destination,
        evaluate_checkpoint,
        format_evaluation,
        write_json_atomic,
    )

    if args.json:  # before the evaluation, which may take long
        check_json_destination(args.json, "--json")
    result = evaluate_checkpoint(
        args.checkpoint, data_dir=args.data_dir, device=args.device,
        batch_size=args.batch_size, workers=args.workers, test_samples=args.test_samples,
        progress=args.progress, operations=args.operations, spike_counts=args.spike_counts,
    )  # fmt: skip
    print(format_evaluation(result))
    if args.json:
        write_json_atomic(result, args.json, "--json")
    return 0


@contextlib.contextmanager
def _saved_run_warnings(command: str) -> Iterator[None]:
    """Show each :class:`~spikeflow.models.common.SavedRunWarning` (a saved run's value
    read as the run read it) as ``spikeflow eval: warning: ...``, once, on rank 0."""
    from spikeflow.models.common import SavedRunWarning

    with warnings.catch_warnings():
        show = warnings.showwarning

        def shown(message: Any, category: Any, *args: Any, **kwargs: Any) -> None:
            if not issubclass(category, SavedRunWarning):
                show(message, category, *args, **kwargs)
            elif int(os.environ.get("RANK", "0")) == 0:
                print(f"spikeflow {command}: warning: {message}", file=sys.stderr)

        warnings.showwarning = shown
        yield


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 diverged, 2 bad input,
    130 stopped by Ctrl-C after saving a checkpoint)."""
    args = build_parser().parse_args(argv)
    from spikeflow.training.trainer import NonFiniteLossError

    try:
        with _saved_run_warnings(args.command):
            return _train(args) if args.command == "train" else _eval(args)
    except NonFiniteLossError as exc:
        print(f"spikeflow {args.command}: {exc}", file=sys.stderr)
        return 1
    except SpikeflowError as exc:
        print(f"spikeflow {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
