"""The checks of :class:`~spikeflow.training.train_config.TrainConfig`'s fields that
belong to a training method (online, e-prop, truncated BPTT, DECOLLE, EventProp) or to
warm-up and batch mixing: each field against the others, ``T`` and the loss.
:meth:`TrainConfig.validate <spikeflow.training.train_config.TrainConfig.validate>`
runs them; the checks that need the model run with it
(:mod:`spikeflow.training.run_checks` and the methods' modules).
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

from spikeflow.errors import ConfigurationError
from spikeflow.losses import loss_key

if TYPE_CHECKING:
    from spikeflow.training.train_config import TrainConfig


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


def _check_optimizer_and_schedule(config: TrainConfig) -> None:
    """``nesterov`` against the optimizer and momentum; ``lr_min`` against the schedule
    and ``lr``; the warm-up's method and factor against each other; ``gamma`` of the
    exponential schedule (what torch's classes would refuse later, or silently ignore)."""
    if config.nesterov and config.optimizer != "sgd":
        raise ConfigurationError(
            f"nesterov is SGD's Nesterov momentum: optimizer must be 'sgd', got "
            f"{config.optimizer!r}"
        )
    if config.nesterov and config.momentum <= 0:
        raise ConfigurationError(
            f"nesterov needs a momentum > 0 (torch's SGD refuses it), got momentum "
            f"{config.momentum}"
        )
    if config.lr_min and config.schedule != "cosine":
        raise ConfigurationError(
            f"lr_min is the floor of the 'cosine' schedule; schedule is {config.schedule!r}"
        )
    if config.lr_min and config.lr is not None and config.lr_min >= config.lr:
        raise ConfigurationError(
            f"lr_min ({config.lr_min}) must be below lr ({config.lr}): the cosine "
            "schedule falls from lr to lr_min"
        )
    if config.warmup_method != "ramp" and not config.warmup_epochs:
        raise ConfigurationError(
            f"warmup_method {config.warmup_method!r} needs warmup_epochs > 0 (the epochs it "
            "warms up over)"
        )
    if config.warmup_factor is not None:
        if config.warmup_method == "ramp":
            raise ConfigurationError(
                "warmup_factor is the 'linear' or 'constant' warm-up's factor of lr: set "
                "warmup_method to one of those (the 'ramp' warm-up has no factor)"
            )
        if not 0 < config.warmup_factor <= 1:
            raise ConfigurationError(f"warmup_factor must be in (0, 1], got {config.warmup_factor}")
    if config.schedule == "exponential" and config.gamma <= 0:
        raise ConfigurationError(
            f"gamma must be > 0 with schedule 'exponential' (the rate times gamma per "
            f"epoch), got {config.gamma}"
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
    from spikeflow.training.online import PER_STEP_LOSSES, RATE_LOSSES

    key = loss_key(config.loss)
    if key not in PER_STEP_LOSSES:
        raise ConfigurationError(
            f"online training optimises a per-step loss: loss must be one of "
            f"{', '.join(PER_STEP_LOSSES)}, got {config.loss!r} (a loss of the whole spike "
            "train has no per-step form: spike counts and first-spike times need every "
            "step's output, ce_max_membrane the maximum over all steps, tcl the pairs of "
            "steps, and each step's graph is gone before the next step runs)"
        )
    if key in RATE_LOSSES:
        window = config.loss_kwargs.get("moving_window")
        if window is not None and window != 1:
            raise ConfigurationError(
                f"online training applies {key} to each step's output alone (the rate over "
                f"that one step): moving_window={window!r} averages the steps before it, "
                "whose graphs are gone; drop moving_window, or train with BPTT or "
                "--tbptt K (K at least the window)"
            )
        if key == "spike_max" and config.loss_kwargs.get("mode", "probability") == "probability":
            raise ConfigurationError(
                "online training applies spike_max to each step's output alone: its "
                "'probability' mode (the default, Lava-DL's) is infinite at every step where "
                "the label neuron is silent; add --loss-kwargs mode=softmax"
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
    ("membrane_bits", "--membrane-bits"), ("input_bits", "--input-bits"),
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
    ignored = sorted(set(config.loss_kwargs) - {"label_smoothing"})
    if ignored:  # e-prop's own cross-entropy takes ce's label_smoothing, nothing else
        raise ConfigurationError(
            f"e-prop (--eprop) descends its own unweighted, batch-mean cross-entropy: "
            f"--loss-kwargs takes label_smoothing only, got {', '.join(ignored)}"
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
        if config.fptt is not None:
            raise ConfigurationError(
                "fptt runs as truncated BPTT with an update after every window: add "
                "--tbptt K (K = 1: an update at every step, as the FPTT papers)"
            )
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
    if config.fptt is not None:
        if config.tbptt_update != "window":
            raise ConfigurationError(
                "fptt updates the weights after every window: it cannot take --tbptt-update batch"
            )
        from spikeflow.training.fptt import _positive

        _positive("alpha (--fptt)", config.fptt)
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
    ("membrane_bits", "--membrane-bits"), ("input_bits", "--input-bits"),
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
    if config.loss_kwargs:  # the loss is unused, so would its arguments be
        raise ConfigurationError(
            f"DECOLLE trains each layer on its local loss (--decolle-loss), which takes no "
            f"--loss-kwargs: leave them out, got {', '.join(sorted(config.loss_kwargs))}"
        )


def _check_recipe_options(config: TrainConfig) -> None:
    """``--model-ema-steps/-decay`` without ``--model-ema`` and ``--ra-reps`` without
    ``--ra-sampler`` are refused (they were ignored without a word)."""
    defaults = {field.name: field.default for field in dataclasses.fields(config)}
    pairs = (("model_ema", "model_ema_steps"), ("model_ema", "model_ema_decay"),
             ("ra_sampler", "ra_reps"))  # fmt: skip
    for switch, name in pairs:
        if not getattr(config, switch) and getattr(config, name) != defaults[name]:
            flag = switch.replace("_", "-")
            raise ConfigurationError(
                f"{name} needs --{flag} ({switch} = true): add it, or leave {name} out"
            )


def _check_distillation(config: TrainConfig) -> None:
    """``--kd-alpha``/``--kd-temperature`` in range and only with ``--teacher``; a
    teacher only with training by BPTT on one view of each batch (the teacher itself is
    loaded and checked against the data by the trainer: ``spikeflow.training.teacher``)."""
    from spikeflow.losses.distillation import check_distillation_arguments

    check_distillation_arguments(config.kd_alpha, config.kd_temperature)
    if config.teacher is None:
        defaults = {field.name: field.default for field in dataclasses.fields(config)}
        for name in ("kd_alpha", "kd_temperature", "teacher_ema"):
            if getattr(config, name) != defaults[name]:
                raise ConfigurationError(
                    f"{name} needs --teacher (teacher = PATH): add it, or leave {name} out"
                )
        return
    used = _settings_in_use(config, "teacher")
    used = [flag for flag in used if flag.split()[0] in ("--online", "--tbptt", "--eprop",
                                                           "--decolle", "--eventprop")]  # fmt: skip
    if used:
        raise ConfigurationError(
            f"--teacher distils into the loss of a whole-sequence (BPTT) step: it cannot be "
            f"combined with {', '.join(used)}"
        )
    if config.loss is not None and loss_key(config.loss) == "stcl":
        raise ConfigurationError(
            "--teacher cannot be combined with --loss stcl (two views of each batch): use "
            "another loss"
        )
    if config.loss_kwargs.get("reduction") == "sum":  # kd_alpha weighs two batch means
        raise ConfigurationError(
            "--teacher mixes the loss with the distillation term, a batch mean, by kd_alpha: "
            "--loss-kwargs reduction=sum would scale the loss's share by the batch size; "
            "leave reduction out (mean)"
        )
    if config.loss is not None:
        from spikeflow.losses import loss_readout
        from spikeflow.losses.distillation import DISTILLATION_READOUTS

        readout = config.readout if config.readout != "auto" else loss_readout(config.loss)
        if readout not in DISTILLATION_READOUTS:
            raise ConfigurationError(
                f"--teacher reads the student's class scores as logits; readout {readout!r} "
                f"(--loss {config.loss}) has none: use a loss or --readout of "
                f"{', '.join(DISTILLATION_READOUTS)}"
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
