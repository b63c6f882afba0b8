"""What a training run checks of its loss, model and dataset together before it starts,
and what it says when its loss becomes non-finite (:func:`non_finite_advice`).

Before it starts (:func:`run_loss`): the settings that the first forward or the first
loss would refuse, checked exactly and without running the model, so that a refused
run has written nothing and, with ``--overwrite``, removed nothing
(:class:`~spikeflow.training.Trainer` removes the earlier run only after these checks):

- The loss's arguments that depend on the number of steps of the model's output
  (:func:`spikeflow.losses.check_loss_fits`: ``spike_rate``'s, ``spike_max``'s and
  ``spike_moid``'s ``moving_window``, ``mse_temporal``'s target steps) against the steps the model
  outputs for ``T`` (:func:`spikeflow.models.common.output_steps`), and what cannot take
  the trainer's class labels (``mse_temporal``'s ``target_is_time``).
- The model's ``num_classes`` (``--model-kwargs``) against the dataset's classes: no
  fewer (a label with no output), and equal with ``--mixup``/``--cutmix`` (their mixed
  labels have one entry per dataset class).
- The neurons built for a fixed number of steps (PSN, masked PSN, GLIF, DSR: their
  ``check_steps``) against the steps their layer sees: ``T``, in a model that keeps the
  steps of its input, or what the model's ``layer_steps`` says (``delay_snn``).

And, with ``--loss stcl`` (:func:`check_two_view_data`), the dataset's batch shape
against what its two views can shift (not audio features ``[B, T, F]``).

The loss a run logs and is evaluated with (:func:`logged_loss`), for its trainer and
``spikeflow eval`` alike.
"""

from __future__ import annotations

import functools
from typing import Any

from torch import Tensor, nn

from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.losses import (
    LossFn,
    check_loss_fits,
    get_loss,
    loss_sums_batch,
    non_finite_loss_cause,
)
from spikeflow.models.common import output_steps
from spikeflow.training.config import TrainConfig
from spikeflow.training.data import DataInfo, dataset_shape
from spikeflow.training.views import check_two_view_batch

__all__ = [
    "check_classes",
    "check_neuron_steps",
    "check_pixel_steps",
    "check_tbptt_run",
    "check_two_view_data",
    "logged_loss",
    "loss_is_summed",
    "non_finite_advice",
    "run_loss",
]


def run_loss(config: TrainConfig, model: nn.Module, info: DataInfo) -> LossFn:
    """The run's loss, :func:`~spikeflow.losses.get_loss` of ``config.loss`` and
    ``config.loss_kwargs``, once the loss, ``model`` (built for the run) and the
    dataset described by ``info`` are checked together (module docstring).

    Raises:
        ConfigurationError: what the first training step would refuse; the message
            names the argument, its value and ``T`` (or the classes).
    """
    assert config.loss is not None and config.T is not None  # resolved
    steps = output_steps(model, config.T)
    extra = "" if steps == config.T else f" ({config.model}'s for T = {config.T})"
    check_loss_fits(config.loss, steps, config.loss_kwargs, f"the model's output{extra}")
    check_classes(config, info)
    check_neuron_steps(config, model)
    check_pixel_steps(config, model, info)
    return get_loss(config.loss, **config.loss_kwargs)


def logged_loss(config: TrainConfig, loss: LossFn) -> LossFn:
    """The loss a run of ``config`` logs and is evaluated with, from its loss function
    ``loss`` (:func:`run_loss`'s): a DECOLLE run's last layer's local loss
    (:func:`~spikeflow.training.decolle.decolle_output_loss`), a truncated-BPTT run's
    ``loss`` per window (:func:`~spikeflow.training.tbptt.windowed_loss`), an online or
    e-prop run's ``loss`` per step (:func:`~spikeflow.training.online.per_step_loss`),
    else ``loss`` itself. The trainer's evaluation and ``spikeflow eval`` both use it.
    With ``--loss-kwargs reduction=sum`` it is divided by the batch size: the logs hold
    a loss per sample, as for a batch mean, whatever the batch size."""
    from spikeflow.training.decolle import decolle_output_loss
    from spikeflow.training.online import per_step_loss, trains_per_step
    from spikeflow.training.tbptt import windowed_loss

    if getattr(config, "decolle", False):
        return decolle_output_loss(config.decolle_loss)
    if loss_is_summed(config):
        loss = functools.partial(_per_sample, loss)
    if getattr(config, "tbptt", None) is not None:
        return windowed_loss(loss, config.tbptt)
    return per_step_loss(loss) if trains_per_step(config) else loss


def loss_is_summed(config: TrainConfig) -> bool:
    """Whether the run's loss sums over the batch (``--loss-kwargs reduction=sum`` on a
    loss of :mod:`spikeflow.losses.weighting`'s rules): the epoch's loss sums then take
    it as the batch's, not as a mean per sample. (Lava-DL's losses, a sum by default, are
    logged as before: not counted.)"""
    return config.loss is not None and loss_sums_batch(config.loss, config.loss_kwargs)


def _per_sample(loss: LossFn, out: Tensor, target: Tensor, *args: Any, **kwargs: Any) -> Tensor:
    """``loss`` (a sum over the batch) divided by the batch size of ``out`` ``[T, B, ...]``."""
    return loss(out, target, *args, **kwargs) / out.shape[1]


def check_two_view_data(config: TrainConfig, info: DataInfo, batch: int) -> None:
    """Raise the ShapeError the first ``--loss stcl`` step would (its two views,
    :func:`~spikeflow.training.views.check_two_view_batch`) for the batches of
    ``batch`` samples of the dataset: ``[B, *step]`` for static images, else frames
    ``[B, T, *step]`` (the step shape from
    :func:`~spikeflow.training.data.dataset_shape`, at ``--train-crop-size`` where
    given; no file is opened)."""
    from spikeflow.training.image_sizes import training_dataset_kwargs

    _, step = dataset_shape(config.dataset, training_dataset_kwargs(config))
    check_two_view_batch((batch, *step) if info.static else (batch, config.T, *step))


def check_pixel_steps(config: TrainConfig, model: nn.Module, info: DataInfo) -> None:
    """Raise a ConfigurationError when ``model`` reads one pixel per step
    (``input_mode == "pixels"``: step t reads pixel t of frame t) and ``config.T`` is not
    the ``H·W`` pixels of the dataset's ``H x W`` frames, which its forward would refuse."""
    if getattr(model, "input_mode", None) != "pixels":
        return
    height, width = info.input_size
    if config.T != height * width:
        raise ConfigurationError(
            f"model {config.model!r} reads the input one pixel per step "
            f"(input_mode='pixels'): T must be H·W = {height * width} for the "
            f"{height}x{width} frames of {config.dataset!r}; got T = {config.T} (pass "
            f"-T {height * width}, or --model-kwargs input_mode=frames for one frame per step)"
        )


def check_classes(config: TrainConfig, info: DataInfo) -> None:
    """Raise a ConfigurationError when the model's ``num_classes`` (``--model-kwargs``)
    cannot take the dataset's labels: fewer than its classes, or, with mixup/CutMix,
    not exactly as many; when ``--loss-kwargs weight`` (one per class) is not one
    value per output, which the first step would refuse; or with ``population_code``,
    which the run's readout does not read (it would report a wrong accuracy)."""
    classes = config.model_kwargs.get("num_classes", info.num_classes)
    if not isinstance(classes, int) or isinstance(classes, bool):
        return  # the model's own check names it
    dataset = f"the {info.num_classes} classes of dataset {config.dataset}"
    if classes < info.num_classes:
        raise ConfigurationError(
            f"model_kwargs num_classes ({classes}) is fewer than {dataset} (labels 0 to "
            f"{info.num_classes - 1}): labels from {classes} up have no output; leave "
            f"num_classes out (the dataset's) or give at least {info.num_classes}"
        )
    if (config.mixup or config.cutmix) and classes != info.num_classes:
        raise ConfigurationError(
            f"mixup/cutmix mix one-hot labels of {dataset}, but model_kwargs num_classes "
            f"is {classes}: the loss needs one output per class; leave num_classes out"
        )
    if config.loss_kwargs.get("population_code") is True:
        raise ConfigurationError(
            f"--loss-kwargs population_code=true: the loss {config.loss!r} would sum groups "
            "of outputs, but the run's accuracy, best checkpoint and spikeflow eval read one "
            "output per class; give the model one output per class (a zoo model's voting "
            "layer: --model-kwargs voting_size=G) and leave population_code out"
        )
    weight = config.loss_kwargs.get("weight")
    if isinstance(weight, (list, tuple)):  # the loss's class weights, one per output class
        if len(weight) != classes:
            raise ConfigurationError(
                f"--loss-kwargs weight has {len(weight)} values; the loss {config.loss!r} "
                f"needs one per class, {classes} (the model's outputs for {dataset})"
            )


def check_neuron_steps(config: TrainConfig, model: nn.Module) -> None:
    """Raise a ConfigurationError when a neuron of ``model`` built for a fixed number of
    steps (one with ``check_steps``: PSN, masked PSN, GLIF, DSR) cannot run the steps
    its layer sees: ``T`` in a model that keeps the steps of its input, the steps of
    ``model.layer_steps(T)`` (by layer name) in one that changes them (``delay_snn``
    pads each layer's input). A model that changes the steps (``output_steps``) and does
    not say how per layer (no ``layer_steps``) is not checked."""
    assert config.T is not None  # resolved
    changes = callable(getattr(model, "output_steps", None))
    per_layer = getattr(model, "layer_steps", None)
    if changes and not callable(per_layer):
        return
    seen = per_layer(config.T) if changes else {}
    fixed = [(name, module, _steps_of(name, seen, config.T))
             for name, module in model.named_modules()
             if callable(getattr(module, "check_steps", None))]  # fmt: skip
    for name, module, steps in fixed:
        try:
            module.check_steps(steps)
        except ShapeError as exc:
            if steps == config.T:
                raise ConfigurationError(
                    f"model {config.model!r}, layer {name!r}: {exc}, the T = {config.T} "
                    f"steps of every sample: pass --neuron-kwargs T={config.T} (or another "
                    f"--T)"
                ) from exc
            counts = sorted({s for _, _, s in fixed})
            keep = ("--model-kwargs that keep T steps in every layer (delay_snn: "
                    "extend_time=false)")  # fmt: skip
            fits = (f"pass --neuron-kwargs T={steps}, or give {keep}" if len(counts) == 1
                    else f"one --neuron-kwargs T cannot fit its layers' {counts} steps: "
                    f"give {keep}")  # fmt: skip
            raise ConfigurationError(
                f"model {config.model!r}, layer {name!r}: {exc}: the {steps} steps this "
                f"layer sees for T = {config.T} ({config.model} adds steps between layers; "
                f"its output has {output_steps(model, config.T)}): {fits}"
            ) from exc


def _steps_of(name: str, seen: dict[str, int], steps: int) -> int:
    """The steps layer ``name`` sees: those of the longest name in ``seen`` that is it
    or holds it (``"net.3"`` for ``"net.3.inner"``), else ``steps``."""
    holders = [key for key in seen if name == key or name.startswith(key + ".")]
    return seen[max(holders, key=len)] if holders else steps


def check_tbptt_run(config: TrainConfig, model: nn.Module, takes_target: bool = False) -> None:
    """With ``config.tbptt`` (truncated BPTT in windows of K steps), raise when
    ``model`` or the loss cannot run in those windows (nothing for other runs): a model
    that cannot stream (StateError, naming the module), supervises its output from the
    target (``takes_target``) or, for K = 1, passes its input on only through carried
    state, needs the whole sequence in one call, or returns one output per call for
    K >= 2 (:func:`spikeflow.training.tbptt.check_tbptt_model`); a model whose output
    has other steps than its input; a loss argument that the shortest window (``T mod
    K`` steps, else K) cannot take (a ``moving_window`` longer than it).

    Raises:
        ConfigurationError, StateError: as above; the message names the module, the
            argument or the steps.
    """
    if config.tbptt is None:
        return
    from spikeflow.training.tbptt import check_tbptt_model

    assert config.loss is not None and config.T is not None  # resolved
    try:
        check_tbptt_model(model, config.tbptt, takes_target)
    except ConfigurationError as exc:  # named by the run's --model
        raise ConfigurationError(f"model {config.model!r}: {exc}") from None
    if output_steps(model, config.T) != config.T:
        raise ConfigurationError(
            f"model {config.model!r} outputs {output_steps(model, config.T)} steps for "
            f"T = {config.T}: truncated BPTT (--tbptt) needs a model with an output per "
            "input step, to take each window's loss on that window's outputs"
        )
    shortest = config.T % config.tbptt or config.tbptt
    where = f"the shortest TBPTT window ({shortest} of the T = {config.T} steps)"
    check_loss_fits(config.loss, shortest, config.loss_kwargs, where)


def non_finite_advice(config: TrainConfig, value: float, lr: float) -> str:
    """What a message about the non-finite loss ``value`` of a run tells the user to do:
    the loss's own cause where it explains it (``spike_max`` in probability mode is
    infinite while a label neuron is silent:
    :func:`~spikeflow.losses.non_finite_loss_cause`), else to lower the learning rate
    (now ``lr``) or check the data (a divergence)."""
    assert config.loss is not None  # resolved
    cause = non_finite_loss_cause(config.loss, config.loss_kwargs, value)
    return cause or f"Lower the learning rate (now {lr:g}) or check the data"
