"""The fields of a training run: :class:`TrainConfig`, its validation and
:func:`resolve`, which fills the values left to the dataset (model, T, batch size,
``split_by``: :mod:`spikeflow.training.defaults`).

The checks of the training methods' fields are in
:mod:`spikeflow.training.config_checks`; reading and writing config files in
:mod:`spikeflow.training.config_files`. :mod:`spikeflow.training.config` holds every
name of the three.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any

from spikeflow.errors import ConfigurationError
from spikeflow.losses.readout import READOUTS
from spikeflow.training.config_checks import (
    _check_decolle,
    _check_distillation,
    _check_eprop,
    _check_eventprop,
    _check_online,
    _check_optimizer_and_schedule,
    _check_recipe_options,
    _check_tbptt,
    _check_warmup_and_mixing,
    _choice,
    _positive_int,
)
from spikeflow.training.defaults import RESOLVED_FIELDS, default_for, no_default_model_message
from spikeflow.training.fsdp import check_fsdp_config
from spikeflow.training.tensor_parallel_run import check_tensor_parallel_config

__all__ = [
    "BOOL_FIELDS", "PATH_FIELDS", "READOUT_MODES", "REGRESSION_READOUTS", "RUNTIME_FIELDS",
    "SEED_LIMIT", "STR_FIELDS", "TABLE_FIELDS", "TrainConfig", "resolve", "resolved_readout",
    "warn_exponential_default",
]  # fmt: skip

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
SCHEDULES = ("cosine", "step", "exponential", "none")
#: How the first ``warmup_epochs`` epochs warm up (spikeflow.training.loop.make_lr_scheduler).
WARMUP_METHODS = ("ramp", "linear", "constant")
AMP_MODES = ("off", "bf16", "fp16")
PLOT_MODES = ("auto", "on", "off")
MASK_SCHEDULES = ("paper", "linear", "none")
READOUT_MODES = ("auto", *READOUTS)
#: How a regression run decodes its output (spikeflow.training.regression_task).
REGRESSION_READOUTS = ("mean", "last", "per_step")

#: Fields that say how a run is executed, not what it computes: these may differ
#: between a run and its ``--resume`` (everything else comes from the checkpoint).
RUNTIME_FIELDS = (
    "device", "workers", "progress", "tensorboard", "plots", "stop_after", "output_dir",
    "overwrite", "data_dir", "cache_dir", "download", "compile", "recompute", "threads",
    "fsdp", "teacher", "tensor_parallel",
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
    #: An augmentation policy for the training split of a static image dataset (the
    #: reference recipes' ``--auto-augment``): "ra", "ta_wide", "imagenet", "cifar10" or
    #: "svhn", after the dataset's crop and flip (``spikeflow.data.image_autoaugment``);
    #: None: none.
    auto_augment: str | None = None
    #: The probability of random erasing as the last training step of a static image
    #: dataset (the reference recipes' ``--random-erase``; after the normalisation for
    #: ImageNet/ImageFolder); None: the dataset's own (``augment="psn"``'s 0.1, else
    #: none), 0: none.
    random_erase: float | None = None
    #: ImageNet/ImageFolder only (the reference recipes' options of the same names): the
    #: training split's ``RandomResizedCrop`` size, the evaluation's shorter side before
    #: its centre crop and that crop's size; None: the dataset's (``image_size``, 224;
    #: the resize ``8/7`` of the crop, 256).
    train_crop_size: int | None = None
    val_resize_size: int | None = None
    val_crop_size: int | None = None
    #: How those crops and resizes resample: "bilinear", "bicubic" or "nearest"; None:
    #: the dataset's (bilinear).
    interpolation: str | None = None
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
    #: A spike regulariser added to the loss ("none": off; ``l1_rate_sparsity``,
    #: ``l2_spike_population``, ``im_loss``) on the spiking layers' outputs of the same
    #: forward, with its arguments (and ``layers``: the names of the layers it sees).
    spike_reg: str = "none"
    spike_reg_kwargs: dict[str, Any] = field(default_factory=dict)
    #: How the predicted class is read from the output (accuracy): "auto" (the loss's:
    #: spikeflow.losses.loss_readout), "rate", "count", "first_spike" or "max".
    readout: str = "auto"
    #: A regression run's (``--dataset diabetes``, ``pilotnet``) decoding of the output
    #: ``[T, B, D]``: "mean" over time (a rate, a mean membrane), "last" step (an
    #: integrating read-out's final membrane), "per_step" (each step vs the target).
    #: None: the dataset's ("mean"; "per_step" where the target is one per step).
    regression_readout: str | None = None
    optimizer: str = "adam"
    #: None: the recipe's with the dataset's default model (1e-2 for ``rsnn`` on the
    #: audio datasets), else 1e-3.
    lr: float | None = None
    weight_decay: float = 0.0
    #: Keep the normalisation layers' parameters, the biases and the neurons' parameters
    #: (learnable time constants, thresholds) out of weight decay, in every parameter
    #: group (the model's own too: ``optimizer_parameter_groups``; docs/training.md).
    no_decay_norm_bias: bool = False
    momentum: float = 0.9
    schedule: str = "cosine"
    step_size: int = 30
    gamma: float = 0.1
    epochs: int = 40
    batch_size: int | None = None
    amp: str = "off"
    #: Learning-rate warm-up over the first ``warmup_epochs`` epochs (``warmup_method``;
    #: the default "ramp": epoch ``k`` trains at ``lr (k + 1) / (warmup_epochs + 1)``),
    #: then ``schedule`` runs over the remaining epochs.
    warmup_epochs: int = 0
    #: The warm-up's shape: "ramp" (above), or SpikingJelly's / torchvision's "linear"
    #: (torch's LinearLR from ``warmup_factor`` up to 1 over ``warmup_epochs``) and
    #: "constant" (ConstantLR: ``warmup_factor`` times ``lr`` throughout).
    warmup_method: str = "ramp"
    #: The "linear" / "constant" warm-up's factor of ``lr`` (SJ's ``--lr-warmup-decay``);
    #: None: 0.01 (SJ's default).
    warmup_factor: float | None = None
    #: The floor of the "cosine" schedule (CosineAnnealingLR's ``eta_min`` for the
    #: groups at ``lr``; a group at ``s · lr`` falls to ``s · lr_min``).
    lr_min: float = 0.0
    #: SGD with Nesterov momentum (SJ's ``--opt sgd_nesterov``).
    nesterov: bool = False
    #: Clip the gradients' global L2 norm to this value before each update; None: off.
    clip_grad_norm: float | None = None
    #: Mixup / CutMix of each training batch with α of their Beta(α, α) (0: off; both
    #: set: one of the two per batch); the loss must take class distributions.
    mixup: float = 0.0
    cutmix: float = 0.0
    #: Model EMA (torchvision's reference recipe; docs/training.md): keep an exponential
    #: moving average of the weights and buffers, updated after every
    #: ``model_ema_steps``-th batch of an epoch with ``model_ema_decay`` adjusted to the
    #: run (``spikeflow.training.model_ema``), evaluated each epoch (``test_acc_ema``).
    model_ema: bool = False
    model_ema_steps: int = 32
    model_ema_decay: float = 0.99998
    #: Under torchrun: batch norms with statistics over the global batch (every
    #: process's samples), ``spikeflow.training.sync_bn``; one process: no change.
    sync_bn: bool = False
    #: Under torchrun: shard the weights, gradients and optimizer state over the
    #: processes (torch's FSDP2, ``spikeflow.training.fsdp``) instead of DDP's whole
    #: copies; one process: no change.
    fsdp: bool = False
    #: Under torchrun: split each model's channels over groups of this many processes
    #: (channel tensor parallelism, ``spikeflow.training.tensor_parallel_run``), the
    #: groups data-parallel among themselves; 1: no split.
    tensor_parallel: int = 1
    #: Knowledge distillation (docs/training.md): a trained teacher, a ``spikeflow
    #: train`` run folder or checkpoint, TorchScript or a ``torch.save``d module
    #: (``spikeflow.training.teacher``); the loss becomes ``kd_alpha`` times Hinton's
    #: soft-target KL at ``kd_temperature`` plus ``1 - kd_alpha`` times ``loss``
    #: (``spikeflow.losses.distillation_loss``). None: no teacher.
    teacher: str | None = None
    kd_alpha: float = 0.5
    kd_temperature: float = 4.0
    #: A run teacher's model EMA (its checkpoint's ``model_ema``, what ``spikeflow eval
    #: --ema`` reads) instead of its trained weights.
    teacher_ema: bool = False
    #: Repeated augmentation (DeiT's RASampler, the recipe's ``--ra-sampler``): each
    #: sample ``ra_reps`` times per epoch, the copies on different processes, an epoch
    #: of ``len // 256 * 256`` draws (``spikeflow.training.ra_sampler``).
    ra_sampler: bool = False
    ra_reps: int = 3
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
    #: How the weight scales are set: "fixed" (max|w|/q of the current weights) or
    #: "lsq" (learned steps, Esser et al. 2020); docs/quantization.md.
    weight_quant: str = "fixed"
    #: Quantize the real-valued input of the first layer to this many bits (unsigned,
    #: learned step, LSQ); None: float input. docs/quantization.md.
    input_bits: int | None = None
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
    #: With ``tbptt`` (per-window updates): FPTT (docs/training_methods.md), each window's
    #: loss plus a pull of this strength alpha towards a running mean of the weights;
    #: None: plain truncated BPTT.
    fptt: float | None = None
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
        _choice("warmup_method", self.warmup_method, WARMUP_METHODS)
        _choice("amp", self.amp, AMP_MODES)
        _choice("plots", self.plots, PLOT_MODES)
        _choice("mask_schedule", self.mask_schedule, MASK_SCHEDULES)
        if self.split_by is not None:
            _choice("split_by", self.split_by, ("number", "time"))
        if self.auto_augment is not None:
            from spikeflow.data.image_autoaugment import AUTO_AUGMENT_NAMES

            _choice("auto_augment", self.auto_augment, AUTO_AUGMENT_NAMES)
        if self.interpolation is not None:
            from spikeflow.data.image_transforms import INTERPOLATIONS

            _choice("interpolation", self.interpolation, INTERPOLATIONS)
        _choice("readout", self.readout, READOUT_MODES)
        if self.regression_readout is not None:
            _choice("regression_readout", self.regression_readout, REGRESSION_READOUTS)
        for name in ("epochs", "step_size", "model_ema_steps", "ra_reps"):
            _positive_int(name, getattr(self, name))
        for name in ("T", "batch_size", "train_samples", "test_samples", "stop_after",
                     "online_steps", "tbptt", "threads", "train_crop_size", "val_resize_size",
                     "val_crop_size"):  # fmt: skip
            if getattr(self, name) is not None:
                _positive_int(name, getattr(self, name))
        _check_online(self)
        _check_eprop(self)
        _check_tbptt(self)
        _check_decolle(self)
        _check_eventprop(self)
        check_fsdp_config(self)
        check_tensor_parallel_config(self)
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
        if self.random_erase is not None and self.random_erase > 1:
            raise ConfigurationError(
                f"random_erase is a probability: it must be in [0, 1], got {self.random_erase}"
            )
        if self.clip_grad_norm is not None and self.clip_grad_norm <= 0:
            raise ConfigurationError(f"clip_grad_norm must be > 0, got {self.clip_grad_norm}")
        _check_warmup_and_mixing(self)
        _check_optimizer_and_schedule(self)
        if self.model_ema_decay > 1:
            raise ConfigurationError(
                f"model_ema_decay must be in [0, 1], got {self.model_ema_decay}"
            )
        _check_recipe_options(self)
        _check_distillation(self)
        if self.lr is not None and self.lr <= 0:
            raise ConfigurationError(f"lr must be > 0, got {self.lr}")
        if self.momentum >= 1:
            raise ConfigurationError(f"momentum must be >= 0 and < 1, got {self.momentum}")
        for name in TABLE_FIELDS:
            if not isinstance(getattr(self, name), dict):
                value = getattr(self, name)
                raise ConfigurationError(f"{name} must be a table (dict), got {value!r}")
        from spikeflow.training.pruning import prune_settings
        from spikeflow.training.spike_reg import check_spike_reg

        check_spike_reg(self)

        prune_settings(self.prune, self.prune_kwargs, self.optimizer, self.epochs)
        if self.weight_bits is not None:
            from spikeflow.quant.weights import check_bits

            check_bits(self.weight_bits)
        from spikeflow.quant.weights import WEIGHT_METHODS

        if self.weight_quant not in WEIGHT_METHODS:
            raise ConfigurationError(
                f"weight_quant must be one of {WEIGHT_METHODS}, got {self.weight_quant!r}"
            )
        if self.weight_quant != "fixed" and self.weight_bits is None:
            raise ConfigurationError(
                f"weight_quant={self.weight_quant!r} needs weight quantization: add --weight-bits"
            )
        if self.input_bits is not None:
            from spikeflow.quant.activation import InputQuantizer

            InputQuantizer(self.input_bits)  # checks the bits
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
    from spikeflow.training.data import check_auto_augment, list_datasets
    from spikeflow.training.detection_task import (
        DETECTION_DATASETS,
        DETECTION_MODELS,
        detection_task,
    )
    from spikeflow.training.image_sizes import check_image_size_options, training_dataset_kwargs

    values = dataclasses.replace(config)
    for name in PATH_FIELDS:  # a pathlib.Path from the Python API: written as a string
        if isinstance(getattr(values, name), os.PathLike):
            setattr(values, name, os.fspath(getattr(values, name)))
    check_auto_augment(values)
    check_image_size_options(values)
    task = detection_task(values.dataset)
    if task is not None:  # a detection dataset: the task's defaults and refusals
        return task.resolve(values)
    if values.model in DETECTION_MODELS:  # a detector asked of a class/value dataset
        raise ConfigurationError(
            f"--model {values.model} is a detector (it outputs boxes): it trains on the "
            f"detection datasets ({', '.join(DETECTION_DATASETS)}), not on dataset "
            f"{values.dataset!r}"
        )
    from spikeflow.training.regression_task import regression_task

    regression = regression_task(values.dataset)
    if regression is not None:  # a regression dataset: the task's defaults and refusals
        return regression.resolve(values)
    if values.regression_readout is not None:
        raise ConfigurationError(
            f"--regression-readout {values.regression_readout}: dataset {values.dataset!r} is "
            "not a regression dataset (diabetes, pilotnet); a class is read by --readout"
        )
    if values.loss in ("l1", "huber"):  # (mse is also a classification loss: one-hot rates)
        raise ConfigurationError(
            f"--loss {values.loss} is a regression loss (datasets diabetes, pilotnet); dataset "
            f"{values.dataset!r} is a classification task: leave --loss out for its default "
            "or pick a classification loss (spikeflow.losses.list_losses())"
        )
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
        kwargs = training_dataset_kwargs(values)  # the shape the model would be built for
        raise ConfigurationError(no_default_model_message(values.dataset, kwargs))
    return values.validate()


def warn_exponential_default(config: TrainConfig) -> None:
    """A UserWarning for a run (the trainer calls it; an evaluation does not) with
    ``schedule="exponential"``, the default ``gamma`` (0.1, the step schedule's factor)
    and more than one epoch: the rate then falls tenfold every epoch, as with
    SpikingJelly's ``--lr-scheduler exp`` and its default ``--lr-gamma`` 0.1, which
    spikeflow keeps; a run that means a gentler decay passes ``gamma``."""
    default = _FIELDS["gamma"].default
    if config.schedule != "exponential" or config.gamma != default or config.epochs < 2:
        return
    import warnings

    last = float(default) ** (config.epochs - 1)
    warnings.warn(
        f"--schedule exponential with the default --gamma {default} multiplies the rate by "
        f"{default} every epoch: it falls tenfold every epoch, to {last:.0e} of lr in the "
        f"last epoch ({config.epochs}) (SpikingJelly's --lr-scheduler exp with its default "
        "--lr-gamma 0.1 does the same); pass --gamma, e.g. 0.95, for a gentler decay",
        UserWarning,
        stacklevel=3,
    )


# -- the fields by kind -----------------------------------------------------------------

_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
_FLOAT_FIELDS = {
    "lr", "weight_decay", "momentum", "gamma", "delay_lr_scale", "clip_grad_norm", "mixup",
    "cutmix", "model_ema_decay", "kd_alpha", "kd_temperature", "eprop_rate_target",
    "eprop_rate_strength", "eprop_feedback_decay", "random_erase",
    "warmup_factor", "lr_min",
}  # fmt: skip
#: The fields whose value is True or False (read from the annotations).
BOOL_FIELDS = tuple(name for name, f in _FIELDS.items() if f.type == "bool")
#: The fields whose value is a string (``None`` allowed where the annotation says so).
STR_FIELDS = tuple(name for name, f in _FIELDS.items() if f.type in ("str", "str | None"))
_OPTIONAL_FIELDS = frozenset(name for name, f in _FIELDS.items() if "None" in str(f.type))
#: The string fields that are paths: the Python API also takes ``os.PathLike`` there.
PATH_FIELDS = ("data_dir", "cache_dir", "output_dir", "teacher")
#: Seeds are below 2**32 (numpy's range; the trainer's derived seeds stay below 2**64).
SEED_LIMIT = 2**32

#: The fields that are tables (dicts) of keyword arguments.
TABLE_FIELDS = (
    "dataset_kwargs", "model_kwargs", "neuron_kwargs", "loss_kwargs", "spike_reg_kwargs",
    "prune_kwargs",
)  # fmt: skip


def resolved_readout(config: TrainConfig) -> str:
    """``config.readout``, or for ``"auto"`` the readout matching ``config.loss``."""
    if config.readout != "auto":
        return config.readout
    from spikeflow.losses import loss_readout

    return loss_readout(config.loss)
