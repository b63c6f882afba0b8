"""The configuration of a training run: one dataclass, read from and written to files.

A run is described by a :class:`TrainConfig`. Values come, in increasing priority, from
the defaults here, a config file (``.toml``, ``.yaml``/``.yml`` or ``.json``) and the
command line. :func:`resolve` fills the values left to the dataset (model, T, batch
size, ``split_by``: :mod:`spikeflow.training.defaults`); every run writes the resolved
config as ``config.toml`` next to its results, so ``spikeflow train --config
runs/<run>/config.toml`` repeats it (into a new directory).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spikeflow.data.cache import atomic_write_bytes
from spikeflow.errors import ConfigurationError, MissingExtraError
from spikeflow.losses import loss_key
from spikeflow.losses.readout import READOUTS
from spikeflow.training.defaults import (
    DATASET_DEFAULTS,
    RESOLVED_FIELDS,
    default_for,
    no_default_model_message,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "DATASET_DEFAULTS",
    "RUNTIME_FIELDS",
    "UNSAVED_FIELDS",
    "TrainConfig",
    "config_from_dict",
    "config_to_dict",
    "dump_toml",
    "load_config_file",
    "resolve",
    "save_config",
]

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("cosine", "step", "none")
AMP_MODES = ("off", "bf16", "fp16")
PLOT_MODES = ("auto", "on", "off")
MASK_SCHEDULES = ("paper", "linear", "none")
READOUT_MODES = ("auto", *READOUTS)

#: Fields that say how a run is executed, not what it computes: these may differ
#: between a run and its ``--resume`` (everything else comes from the checkpoint).
RUNTIME_FIELDS = (
    "device", "workers", "progress", "tensorboard", "plots", "stop_after", "output_dir",
    "overwrite", "data_dir", "cache_dir", "download", "compile", "recompute", "threads",
)  # fmt: skip


@dataclass
class TrainConfig:
    """Everything that defines a training run (``spikeflow train --help`` lists them).

    ``None`` means "the dataset's default" for ``model``, ``T``, ``batch_size`` and
    ``split_by`` (filled in by :func:`resolve` from
    :data:`~spikeflow.training.defaults.DATASET_DEFAULTS`), "the model's default" for
    ``neuron``, and "none" or "automatic" elsewhere.
    """

    # data
    dataset: str = "digits"
    data_dir: str | None = None
    T: int | None = None
    #: How events are cut into the T frames: "number" (equal event counts) or "time"
    #: (equal durations); None: the dataset's, "time" for the audio datasets (SHD, SSC,
    #: FSDD, SpeechCommands), "number" for the others.
    split_by: str | None = None
    cache_dir: str | None = None
    download: bool = False
    train_samples: int | None = None
    test_samples: int | None = None
    #: Further arguments of the dataset class (e.g. FSDD's ``speakers``, a speech
    #: dataset's ``audio_to_events`` settings, NAVGesture's ``variant``).
    dataset_kwargs: dict[str, Any] = field(default_factory=dict)
    # model
    model: str | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    neuron: str | None = None
    neuron_kwargs: dict[str, Any] = field(default_factory=dict)
    # objective and optimisation
    #: None: the recipe's where the model is the dataset's default one (``ce`` for
    #: ``rsnn`` on the audio datasets), else ``mse`` (rate vs one-hot).
    loss: str | None = None
    loss_kwargs: dict[str, Any] = field(default_factory=dict)
    #: How the predicted class is read from the output (accuracy): "auto" (the loss's:
    #: spikeflow.losses.loss_readout), "rate", "count", "first_spike" or "max".
    readout: str = "auto"
    optimizer: str = "adam"
    #: None: the recipe's with the dataset's default model (1e-2 for ``rsnn`` on the
    #: audio datasets), else 1e-3.
    lr: float | None = None
    weight_decay: float = 0.0
    momentum: float = 0.9
    schedule: str = "cosine"
    step_size: int = 30
    gamma: float = 0.1
    epochs: int = 40
    batch_size: int | None = None
    amp: str = "off"
    #: Linear learning-rate warm-up: epoch ``k < warmup_epochs`` trains at ``lr (k + 1) /
    #: (warmup_epochs + 1)``, then ``schedule`` runs over the remaining epochs.
    warmup_epochs: int = 0
    #: Clip the gradients' global L2 norm to this value before each update; None: off.
    clip_grad_norm: float | None = None
    #: Mixup / CutMix of each training batch with α of their Beta(α, α) (0: off; both
    #: set: one of the two per batch); the loss must take class distributions.
    mixup: float = 0.0
    cutmix: float = 0.0
    #: The masked PSN's progressive mask λ per epoch (models with MaskedPSN neurons):
    #: "paper" min(1, 8 epoch / (epochs - 1)), "linear" (epoch + 1) / epochs, "none".
    mask_schedule: str = "paper"
    #: Pruning while training (methods.md 8): "none", "grad_r", "stds" or "lats", with
    #: its arguments in ``prune_kwargs`` (docs/pruning.md).
    prune: str = "none"
    prune_kwargs: dict[str, Any] = field(default_factory=dict)
    #: Quantization-aware training of the linear and convolution weights to this many
    #: bits (2-16, per output channel; docs/quantization.md); None: float weights.
    weight_bits: int | None = None
    #: Quantization-aware training of the neurons' membranes: a signed register of this
    #: many bits (2-24) whose level 2^membrane_fraction_bits is the threshold (default
    #: bits - 2: the register spans [-2θ, 2θ)); docs/quantization.md. None: float.
    membrane_bits: int | None = None
    membrane_fraction_bits: int | None = None
    #: Online training (docs/training_methods.md): one step at a time, a backward pass per step,
    #: no gradient through the carried state (SLTT), memory independent of T.
    online: bool = False
    #: Recompute the network's blocks in the backward pass instead of keeping their
    #: activations (``spikeflow.memory.recompute_blocks(model)``; docs/memory.md): the
    #: same training, bit for bit, in less memory and more time.
    recompute: bool = False
    #: With ``online``: backpropagate only this many randomly drawn steps per batch
    #: (SLTT-K); None: every step.
    online_steps: int | None = None
    #: With ``online``: OTTT, the Linear and Conv weights learn from presynaptic traces
    #: with this decay (1 - 1/tau of the network's neurons, 0.5 for tau = 2); None: SLTT.
    online_trace_decay: float | None = None
    #: Truncated BPTT (docs/training_methods.md): each batch runs in windows of this many steps,
    #: the carried state detached between them (memory of K steps); None: BPTT.
    tbptt: int | None = None
    #: With ``tbptt``: "window" (an optimizer step after every window, snnTorch's TBPTT)
    #: or "batch" (the windows' gradients accumulated, one optimizer step per batch).
    tbptt_update: str = "window"
    #: E-prop (Bellec et al. 2020; docs/training_methods.md): train ``--model eprop_rsnn``
    #: forward in time with this feedback, "symmetric", "random" or "adaptive" (memory
    #: independent of T); None: backpropagation through time.
    eprop: str | None = None
    #: With ``eprop``: the firing-rate regularisation's target (spikes per step) and
    #: strength (0: off), and adaptive feedback's weight decay.
    eprop_rate_target: float = 0.01
    eprop_rate_strength: float = 0.0
    eprop_feedback_decay: float = 0.0
    #: DECOLLE (Kaiser et al. 2020; docs/training_methods.md): train ``--model decolle``
    #: by its local rule, every layer on its own readout's loss at every step.
    decolle: bool = False
    #: With ``decolle``: the local loss ("smooth_l1" or "mse"), the steps run before
    #: learning starts, when the optimizer steps ("step": after every step; "sequence":
    #: once per batch), the reference code's membrane regularisation (one strength for
    #: all layers or one per layer; empty: off) and per-layer learning rates (multiples
    #: of ``lr``, one for all layers or one per layer; empty: all at ``lr``).
    decolle_loss: str = "smooth_l1"
    decolle_burnin: int = 0
    decolle_update: str = "step"
    decolle_reg_u: list[float] = field(default_factory=list)
    decolle_layer_lr: list[float] = field(default_factory=list)
    #: EventProp (Wunderlich & Pehle 2021; docs/training_methods.md): differentiate
    #: ``--model eventprop_snn`` by the adjoint method with these jumps, "eventprop" or
    #: "norse"; None: BPTT with a surrogate gradient.
    eventprop: str | None = None
    #: The learning rate of the synaptic delays of DelayedLinear layers, as a multiple
    #: of ``lr`` (the authors' 100; no weight decay on delays).
    delay_lr_scale: float = 100.0
    seed: int = 0
    # execution
    device: str = "auto"
    workers: int = 0
    #: torch's CPU threads for the run (``torch.set_num_threads``, restored after it);
    #: None: torch's default. On a busy shared CPU one thread is often fastest.
    threads: int | None = None
    output_dir: str | None = None
    #: Let a new run replace the files of an earlier run in ``output_dir`` (else an error).
    overwrite: bool = False
    progress: bool = True
    tensorboard: bool = False
    plots: str = "auto"
    stop_after: int | None = None
    #: Train through ``torch.compile(model)`` (evaluation runs the model as it is):
    #: faster steps after a compilation of tens of seconds, most for recurrent layers.
    compile: bool = False

    def validate(self) -> TrainConfig:
        """Raise a ConfigurationError naming the first invalid value; return ``self``.

        Every field is type-checked (a config file's ``overwrite = "false"`` is an
        error, not true; ``lr = true`` is not a number), then its range: ``seed`` in
        ``[0, 2**32)``, ``momentum`` in ``[0, 1)``, ``lr > 0``, ...
        """
        for name in BOOL_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise ConfigurationError(f"{name} must be true or false, got {value!r}")
        for name in STR_FIELDS:
            value = getattr(self, name)
            if value is None and name in _OPTIONAL_FIELDS:
                continue
            if name in PATH_FIELDS and isinstance(value, os.PathLike):
                continue
            if not isinstance(value, str):
                raise ConfigurationError(f"{name} must be a string, got {value!r}")
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("amp", self.amp, AMP_MODES)
        _choice("plots", self.plots, PLOT_MODES)
        _choice("mask_schedule", self.mask_schedule, MASK_SCHEDULES)
        if self.split_by is not None:
            _choice("split_by", self.split_by, ("number", "time"))
        _choice("readout", self.readout, READOUT_MODES)
        for name in ("epochs", "step_size"):
            _positive_int(name, getattr(self, name))
        for name in ("T", "batch_size", "train_samples", "test_samples", "stop_after",
                     "online_steps", "tbptt", "threads"):  # fmt: skip
            if getattr(self, name) is not None:
                _positive_int(name, getattr(self, name))
        _check_online(self)
        _check_eprop(self)
        _check_tbptt(self)
        _check_decolle(self)
        _check_eventprop(self)
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 0:
            raise ConfigurationError(f"workers must be an integer >= 0, got {self.workers!r}")
        if (
            isinstance(self.seed, bool)
            or not isinstance(self.seed, int)
            or not 0 <= self.seed < SEED_LIMIT
        ):
            raise ConfigurationError(
                f"seed must be an integer from 0 to 2**32 - 1 ({SEED_LIMIT - 1}), got {self.seed!r}"
            )
        for name in sorted(_FLOAT_FIELDS):
            value = getattr(self, name)
            if value is None and name in _OPTIONAL_FIELDS:
                continue
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or value < 0
            ):
                raise ConfigurationError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.clip_grad_norm is not None and self.clip_grad_norm <= 0:
            raise ConfigurationError(f"clip_grad_norm must be > 0, got {self.clip_grad_norm}")
        _check_warmup_and_mixing(self)
        if self.lr is not None and self.lr <= 0:
            raise ConfigurationError(f"lr must be > 0, got {self.lr}")
        if self.momentum >= 1:
            raise ConfigurationError(f"momentum must be >= 0 and < 1, got {self.momentum}")
        for name in TABLE_FIELDS:
            if not isinstance(getattr(self, name), dict):
                value = getattr(self, name)
                raise ConfigurationError(f"{name} must be a table (dict), got {value!r}")
        from spikeflow.training.pruning import prune_settings

        prune_settings(self.prune, self.prune_kwargs, self.optimizer, self.epochs)
        if self.weight_bits is not None:
            from spikeflow.quant.weights import check_bits

            check_bits(self.weight_bits)
        if self.membrane_fraction_bits is not None and self.membrane_bits is None:
            raise ConfigurationError(
                "membrane_fraction_bits needs membrane quantization: add --membrane-bits"
            )
        if self.membrane_bits is not None:
            from spikeflow.quant.membrane import MembraneQuantizer

            MembraneQuantizer(self.membrane_bits, self.membrane_fraction_bits)  # checks both
        return self


def resolve(config: TrainConfig) -> TrainConfig:
    """A copy of ``config`` with the dataset's defaults (model, ``T``, batch size,
    ``split_by``: :data:`~spikeflow.training.defaults.DATASET_DEFAULTS`) filled in where
    it holds None, validated.

    Raises:
        ConfigurationError: an unknown dataset, no model for a dataset without a default
            one (the message names the zoo models that build for its frames), or an
            invalid value.
    """
    from spikeflow.training.data import list_datasets
    from spikeflow.training.detection_task import detection_task

    values = dataclasses.replace(config)
    for name in PATH_FIELDS:  # a pathlib.Path from the Python API: written as a string
        if isinstance(getattr(values, name), os.PathLike):
            setattr(values, name, os.fspath(getattr(values, name)))
    task = detection_task(values.dataset)
    if task is not None:  # a detection dataset: the task's defaults and refusals
        return task.resolve(values)
    if not isinstance(values.dataset, str) or values.dataset.lower() not in list_datasets():
        raise ConfigurationError(
            f"unknown dataset {values.dataset!r}; available: {', '.join(list_datasets())}"
        )
    if values.eprop is not None and values.loss is None:
        values.loss = "ce"  # the per-step cross-entropy, the loss e-prop descends
    if values.decolle is True and values.loss is None:
        values.loss = "mse"  # unused: each layer learns its local loss (decolle_loss)
    if values.eventprop is not None and values.loss is None:
        values.loss = "ce_max_membrane"  # the readout's maximum over time, as the paper
    for name in RESOLVED_FIELDS:  # model first: the loss and lr follow it
        if getattr(values, name) is None:
            setattr(values, name, default_for(values.dataset, values.model, name,
                                              values.optimizer))  # fmt: skip
    if values.model is None:
        raise ConfigurationError(no_default_model_message(values.dataset, values.dataset_kwargs))
    return values.validate()


def _check_warmup_and_mixing(config: TrainConfig) -> None:
    """``warmup_epochs`` against ``epochs``; mixup/CutMix against the loss."""
    warmup = config.warmup_epochs
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ConfigurationError(f"warmup_epochs must be an integer >= 0, got {warmup!r}")
    if warmup >= config.epochs:
        raise ConfigurationError(
            f"warmup_epochs ({warmup}) must be fewer than epochs ({config.epochs}): the "
            "schedule runs over the epochs after the warm-up"
        )
    if not (config.mixup or config.cutmix):
        return
    # With --online the mixed target feeds each step's loss as it feeds BPTT's: every
    # per-step loss (PER_STEP_LOSSES) is one of MIXABLE_LOSSES.
    from spikeflow.training.mixing import MIXABLE_LOSSES

    if config.loss is not None and loss_key(config.loss) not in MIXABLE_LOSSES:
        raise ConfigurationError(
            f"mixup/cutmix train on class distributions: loss must be one of "
            f"{', '.join(MIXABLE_LOSSES)}, got {config.loss!r}"
        )


def _check_online(config: TrainConfig) -> None:
    """The online-training fields against each other, the loss and ``T``."""
    if config.online and config.recompute:
        raise ConfigurationError(
            "recompute cannot be combined with online training: an online step keeps only "
            "that step's graph, so there is nothing to recompute (and OTTT's trace hooks "
            "cannot run twice)"
        )
    if config.online_steps is not None and not config.online:
        raise ConfigurationError("online_steps (SLTT-K) needs online training: add --online")
    if config.online_trace_decay is not None:
        if not config.online:
            raise ConfigurationError(
                "online_trace_decay (OTTT) needs online training: add --online"
            )
        from spikeflow.training.traces import check_trace_decay

        check_trace_decay(config.online_trace_decay)
        if config.compile:
            raise ConfigurationError(
                "online_trace_decay (OTTT) cannot be combined with compile: its trace hooks "
                "are installed for every batch, which would recompile the model each time"
            )
    if not config.online or config.loss is None:  # None: checked once resolved
        return
    from spikeflow.training.online import PER_STEP_LOSSES

    if loss_key(config.loss) not in PER_STEP_LOSSES:
        raise ConfigurationError(
            f"online training optimises a per-step loss: loss must be one of "
            f"{', '.join(PER_STEP_LOSSES)}, got {config.loss!r} (a loss of the whole spike "
            "train has no per-step form: spike counts and first-spike times need every "
            "step's output, ce_max_membrane the maximum over all steps, tcl the pairs of "
            "steps, and each step's graph is gone before the next step runs)"
        )
    if config.T is not None and config.online_steps is not None and config.online_steps > config.T:
        raise ConfigurationError(
            f"online_steps must be at most T = {config.T} (the steps of a sample), "
            f"got {config.online_steps}"
        )


#: The settings e-prop's forward-in-time rule does not combine with (config name, flag).
_NOT_WITH_EPROP = (
    ("online", "--online"), ("recompute", "--recompute"), ("compile", "--compile"),
    ("mixup", "--mixup"), ("cutmix", "--cutmix"), ("weight_bits", "--weight-bits"),
    ("membrane_bits", "--membrane-bits"),
)  # fmt: skip


def _check_eprop(config: TrainConfig) -> None:
    """The e-prop fields against each other and against the settings it cannot take."""
    if config.eprop is None:
        for name in ("eprop_rate_strength", "eprop_feedback_decay"):
            if getattr(config, name):
                raise ConfigurationError(f"{name} needs e-prop training: add --eprop")
        return
    from spikeflow.learn.eprop import FEEDBACKS

    _choice("eprop", config.eprop, FEEDBACKS)
    if config.eprop_feedback_decay and config.eprop != "adaptive":
        raise ConfigurationError(
            f"eprop_feedback_decay is adaptive feedback's weight decay: it needs --eprop "
            f"adaptive, got --eprop {config.eprop}"
        )
    used = [flag for name, flag in _NOT_WITH_EPROP if getattr(config, name) not in (None, False, 0)]
    if config.amp != "off":
        used.append(f"--amp {config.amp}")
    if config.prune != "none":
        used.append(f"--prune {config.prune}")
    if used:
        raise ConfigurationError(
            f"e-prop (--eprop) computes the gradients forward in time, without autograd, "
            f"for the plain float network: it cannot be combined with {', '.join(used)}"
        )
    if config.loss is not None and loss_key(config.loss) != "ce":
        raise ConfigurationError(
            f"e-prop descends the per-step cross-entropy of the readout (Bellec et al.'s "
            f"classification loss): loss must be ce, got {config.loss!r}"
        )


#: The settings truncated BPTT does not combine with (config name, flag, why).
_NOT_WITH_TBPTT = (
    ("online", "--online", "online training is its own truncation, at every step"),
    ("eprop", "--eprop", "e-prop computes its gradients forward in time, without windows"),
    ("recompute", "--recompute", "a window's graph is freed after its backward already"),
)


def _check_tbptt(config: TrainConfig) -> None:
    """The truncated-BPTT fields against each other, the other training modes, ``T``
    and the loss (the loss's window arguments are checked with the model, in
    :func:`spikeflow.training.run_checks.check_tbptt_run`)."""
    if config.tbptt is None:
        if config.tbptt_update != "window":
            raise ConfigurationError("tbptt_update needs truncated BPTT: add --tbptt K")
        return
    from spikeflow.training.tbptt import UPDATES, check_window_loss

    _choice("tbptt_update", config.tbptt_update, UPDATES)
    used = [(flag, why) for name, flag, why in _NOT_WITH_TBPTT
            if getattr(config, name) not in (None, False)]  # fmt: skip
    if used:
        flags = ", ".join(flag for flag, _ in used)
        raise ConfigurationError(
            f"truncated BPTT (--tbptt) cannot be combined with {flags}: "
            + "; ".join(f"{flag}: {why}" for flag, why in used)
        )
    if config.T is not None and config.tbptt > config.T:
        raise ConfigurationError(
            f"tbptt (the window K) must be at most T = {config.T} (the steps of a sample; "
            f"K = T is BPTT), got {config.tbptt}"
        )
    if config.loss is not None:  # None: checked once resolved
        check_window_loss(config.loss)


#: The settings DECOLLE and EventProp do not combine with (config name, flag).
_NOT_WITH_LOCAL = (
    ("online", "--online"), ("tbptt", "--tbptt"), ("eprop", "--eprop"),
    ("decolle", "--decolle"), ("eventprop", "--eventprop"), ("recompute", "--recompute"),
    ("compile", "--compile"), ("weight_bits", "--weight-bits"),
    ("membrane_bits", "--membrane-bits"),
)  # fmt: skip


def _settings_in_use(config: TrainConfig, own: str, extra: tuple[str, ...] = ()) -> list[str]:
    """The flags of :data:`_NOT_WITH_LOCAL` (and ``extra``) that ``config`` sets, but
    ``own``'s."""
    used = [flag for name, flag in _NOT_WITH_LOCAL
            if name != own and getattr(config, name) not in (None, False, 0)]  # fmt: skip
    used += [flag for flag in extra if getattr(config, flag[2:].replace("-", "_"))]
    if config.amp != "off":
        used.append(f"--amp {config.amp}")
    if config.prune != "none":
        used.append(f"--prune {config.prune}")
    return used


def _check_decolle(config: TrainConfig) -> None:
    """The DECOLLE fields against each other, ``T``, the loss and the settings DECOLLE
    cannot take (the model and the per-layer lists' lengths: with the model, in
    :func:`spikeflow.training.decolle.check_decolle_model`)."""
    for name in ("decolle_reg_u", "decolle_layer_lr"):
        values = getattr(config, name)
        if not isinstance(values, (list, tuple)) or any(
            isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
            for v in values
        ):
            raise ConfigurationError(f"{name} must be a list of finite numbers, got {values!r}")
    if any(v < 0 for v in config.decolle_reg_u):
        raise ConfigurationError(f"decolle_reg_u must be >= 0, got {config.decolle_reg_u}")
    if any(v <= 0 for v in config.decolle_layer_lr):
        raise ConfigurationError(f"decolle_layer_lr must be > 0, got {config.decolle_layer_lr}")
    burnin = config.decolle_burnin
    if isinstance(burnin, bool) or not isinstance(burnin, int) or burnin < 0:
        raise ConfigurationError(f"decolle_burnin must be an integer >= 0, got {burnin!r}")
    if not config.decolle:
        changed = [name for name, default in (
            ("decolle_loss", "smooth_l1"), ("decolle_burnin", 0), ("decolle_update", "step"),
            ("decolle_reg_u", []), ("decolle_layer_lr", []),
        ) if getattr(config, name) != default]  # fmt: skip
        if changed:
            raise ConfigurationError(f"{', '.join(changed)} needs DECOLLE training: add --decolle")
        return
    from spikeflow.learn.decolle import DECOLLE_LOSSES, DECOLLE_UPDATES

    _choice("decolle_loss", config.decolle_loss, DECOLLE_LOSSES)
    _choice("decolle_update", config.decolle_update, DECOLLE_UPDATES)
    used = _settings_in_use(config, "decolle", ("--mixup", "--cutmix"))
    if used:
        raise ConfigurationError(
            f"DECOLLE (--decolle) trains every layer on its own readout's loss, one step "
            f"at a time, for the plain float network: it cannot be combined with "
            f"{', '.join(used)}"
        )
    if config.readout == "first_spike":
        raise ConfigurationError(
            "--readout first_spike cannot be combined with --decolle: DECOLLE's output is "
            "its last layer's real-valued readout, which has no spikes to time (use "
            "rate, count or max)"
        )
    if config.T is not None and burnin >= config.T:
        raise ConfigurationError(
            f"decolle_burnin ({burnin}) must be below T = {config.T}: DECOLLE learns from "
            "the steps after the burn-in"
        )
    if config.loss is not None and loss_key(config.loss) != "mse":
        raise ConfigurationError(
            f"DECOLLE trains each layer on its local loss, chosen with --decolle-loss "
            f"(smooth_l1 or mse): leave --loss out, got {config.loss!r}"
        )


def _check_eventprop(config: TrainConfig) -> None:
    """The EventProp field against the settings the adjoint cannot take (the model: in
    :func:`spikeflow.training.eventprop.check_eventprop_model`)."""
    if config.eventprop is None:
        return
    from spikeflow.learn.eventprop import EVENTPROP_JUMPS

    _choice("eventprop", config.eventprop, EVENTPROP_JUMPS)
    used = _settings_in_use(config, "eventprop")
    if used:
        raise ConfigurationError(
            f"EventProp (--eventprop) differentiates whole float sequences by the adjoint "
            f"method: it cannot be combined with {', '.join(used)}"
        )


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigurationError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{name} must be a positive integer, got {value!r}")


# -- dict and file conversion ----------------------------------------------------------

_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
_FLOAT_FIELDS = {
    "lr", "weight_decay", "momentum", "gamma", "delay_lr_scale", "clip_grad_norm", "mixup",
    "cutmix", "eprop_rate_target", "eprop_rate_strength", "eprop_feedback_decay",
}  # fmt: skip
#: The fields whose value is True or False (read from the annotations).
BOOL_FIELDS = tuple(name for name, f in _FIELDS.items() if f.type == "bool")
#: The fields whose value is a string (``None`` allowed where the annotation says so).
STR_FIELDS = tuple(name for name, f in _FIELDS.items() if f.type in ("str", "str | None"))
_OPTIONAL_FIELDS = frozenset(name for name, f in _FIELDS.items() if "None" in str(f.type))
#: The string fields that are paths: the Python API also takes ``os.PathLike`` there.
PATH_FIELDS = ("data_dir", "cache_dir", "output_dir")
#: Seeds are below 2**32 (numpy's range; the trainer's derived seeds stay below 2**64).
SEED_LIMIT = 2**32


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    """The config as a plain dict (``None`` values included)."""
    return dataclasses.asdict(config)


#: The fields that are tables (dicts) of keyword arguments.
TABLE_FIELDS = ("dataset_kwargs", "model_kwargs", "neuron_kwargs", "loss_kwargs", "prune_kwargs")


def decode_tables(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` with each table given as a JSON object in a string (how TOML files
    hold a table with nulls) read into a dict.

    Raises:
        ConfigurationError: such a string is not JSON.
    """
    updates = dict(values)
    for name in TABLE_FIELDS:
        text = updates.get(name)
        if isinstance(text, str):
            try:
                updates[name] = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ConfigurationError(f"{name}: not a table or a JSON object: {exc}") from exc
    return updates


def config_from_dict(values: Mapping[str, Any], base: TrainConfig | None = None) -> TrainConfig:
    """``base`` (default: the defaults) updated with ``values``.

    Raises:
        ConfigurationError: a key that is no config field (the message lists them).
    """
    unknown = sorted(set(values) - set(_FIELDS))
    if unknown:
        raise ConfigurationError(
            f"unknown config key(s) {unknown}; valid keys: {', '.join(sorted(_FIELDS))}"
        )
    updates = decode_tables(values)
    for name in _FLOAT_FIELDS & set(updates):
        if isinstance(updates[name], int) and not isinstance(updates[name], bool):
            updates[name] = float(updates[name])
    return dataclasses.replace(base or TrainConfig(), **updates)


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a ``.toml``, ``.yaml``/``.yml`` or ``.json`` config file into a dict.

    Raises:
        ConfigurationError: unreadable file, unknown suffix, or not a table at the top.
        MissingExtraError: a YAML file without PyYAML installed (extra ``yaml``).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigurationError(f"config file {path} does not exist")
    suffix = path.suffix.lower()
    text = path.read_text(encoding="utf-8")
    try:
        if suffix == ".toml":
            data = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError as exc:
                raise MissingExtraError("YAML config files", "pyyaml", "yaml") from exc
            data = yaml.safe_load(text)
        elif suffix == ".json":
            data = json.loads(text)
        else:
            raise ConfigurationError(
                f"config file {path}: unknown suffix {suffix!r}; use .toml, .yaml, .yml or .json"
            )
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, ValueError) as exc:
        if isinstance(exc, ConfigurationError):
            raise
        raise ConfigurationError(f"config file {path} is not valid {suffix[1:]}: {exc}") from exc
    except Exception as exc:  # yaml.YAMLError has no common base with the above
        if isinstance(exc, (ConfigurationError, MissingExtraError)):
            raise
        raise ConfigurationError(f"config file {path} is not valid {suffix[1:]}: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigurationError(f"config file {path} must hold a table of keys at the top")
    return data


def _toml_value(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        # A JSON string is a valid TOML basic string, except for surrogate-pair escapes
        # of non-BMP characters (an emoji): write those as UTF-8.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v, where) for v in value) + "]"
    if isinstance(value, Mapping):
        if _holds_none(value):
            # TOML has no null: the table as a JSON object in a string, which
            # config_from_dict reads back (v_reset = None means a soft reset).
            return json.dumps(json.dumps(value, ensure_ascii=False), ensure_ascii=False)
        items = [f"{_toml_key(k)} = {_toml_value(v, where)}" for k, v in value.items()]
        return "{" + ", ".join(items) + "}"
    raise ConfigurationError(f"{where}: cannot write {value!r} ({type(value).__name__}) to TOML")


def _holds_none(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, Mapping):
        return any(_holds_none(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_holds_none(v) for v in value)
    return False


def _toml_key(key: str) -> str:
    bare = key.replace("_", "").replace("-", "").isalnum() and key.isascii()
    return key if bare else json.dumps(key, ensure_ascii=False)


def dump_toml(values: Mapping[str, Any], header: str = "") -> str:
    """``values`` as TOML: one ``key = value`` line each, dicts as inline tables.

    ``None`` values are left out (TOML has no null; every field whose default is None
    reads back as None); a table holding a ``None`` (``neuron_kwargs = {v_reset =
    None}``) is written as a JSON object in a string, which :func:`config_from_dict`
    reads back.
    """
    lines = [f"# {line}" for line in header.splitlines()]
    for key, value in values.items():
        if value is not None:
            lines.append(f"{_toml_key(key)} = {_toml_value(value, key)}")
    return "\n".join(lines) + "\n"


#: The fields :func:`save_config` leaves out: a rerun from the file writes into a new
#: directory, and ``overwrite`` and ``stop_after`` belong to the invocation that gave them.
UNSAVED_FIELDS = ("output_dir", "overwrite", "stop_after")


def save_config(config: TrainConfig, path: str | os.PathLike) -> Path:
    """Write ``config`` to ``path`` (``.toml`` or ``.json``) without the
    :data:`UNSAVED_FIELDS`: ``output_dir`` (a rerun from the file writes into a new
    directory), ``overwrite`` and ``stop_after`` (they belong to the invocation that
    gave them, so a rerun from the file trains every epoch).

    The text is written atomically (:func:`~spikeflow.data.cache.atomic_write_bytes`:
    a temporary file moved into place); a write that fails removes it and raises.

    Raises:
        ConfigurationError: a value TOML cannot hold.
        OSError: the file cannot be written.
    """
    path = Path(path)
    values = config_to_dict(config)
    out_dir = values.get("output_dir")
    for name in UNSAVED_FIELDS:
        values.pop(name)
    if path.suffix == ".json":
        text = json.dumps(values, indent=2) + "\n"
    else:
        header = (
            "The resolved configuration of a spikeflow training run"
            + (f" (written into {out_dir})" if out_dir else "")
            + ".\nRepeat it with:  spikeflow train --config <this file>"
        )
        text = dump_toml(values, header)
    atomic_write_bytes(path, text.encode("utf-8"))
    return path


def resolved_readout(config: TrainConfig) -> str:
    """``config.readout``, or for ``"auto"`` the readout matching ``config.loss``."""
    if config.readout != "auto":
        return config.readout
    from spikeflow.losses import loss_readout

    return loss_readout(config.loss)
