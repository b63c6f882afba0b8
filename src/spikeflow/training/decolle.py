"""DECOLLE in ``spikeflow train`` (``--decolle``; docs/training_methods.md).

The run's model is the zoo's ``decolle`` (:class:`DECOLLEClassifier`: convolutional
then dense :class:`~spikeflow.learn.DECOLLELayer` s, each with its fixed random
readout). With ``--decolle`` every batch runs through :meth:`spikeflow.learn.DECOLLE.run`:
after the burn-in, each step's local losses (every layer's readout against the one-hot
label, plus the reference code's membrane regularisation with ``--decolle-reg-u``) are
back-propagated through that step's graph alone, each into its own layer's weights, and
the optimizer steps after every step (``--decolle-update step``, the paper's) or once
per batch (``sequence``). Without ``--decolle`` the same network trains by BPTT through
layers and time on its last layer's readout, like any zoo model.

The model's output is the last layer's readout ``[T − burnin, B, K]`` (the steps after
the burn-in), the prediction its sum over the steps (``rate``), as the reference code's
accuracy. The loss a DECOLLE run logs, for training and test alike, is the last layer's
local loss averaged over those steps (:func:`decolle_output_loss`); the rule descends the
sum over all layers' losses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.learn.decolle import (
    DECOLLE,
    DECOLLE_LOSSES,
    decolle_loss,
)
from spikeflow.models.decolle_net import DECOLLEClassifier, decolle

__all__ = [
    "DECOLLEClassifier",
    "check_decolle_model",
    "decolle",
    "decolle_output_loss",
    "decolle_parameter_groups",
    "decolle_rule",
    "decolle_train_step",
]


def check_decolle_model(config: Any, model: nn.Module, distributed: bool) -> None:
    """Raise unless a ``--decolle`` run can train ``model``: a
    :class:`DECOLLEClassifier` (the zoo's ``decolle``), in one process, with one
    regularisation strength and learning-rate scale per layer where lists are given.

    Raises:
        ConfigurationError: naming the model, option or count at fault.
    """
    if not getattr(config, "decolle", False):
        return
    if not isinstance(model, DECOLLEClassifier):
        raise ConfigurationError(
            f"--decolle trains a network of DECOLLE layers with their local readouts: use "
            f"--model decolle (got {config.model!r}, a {type(model).__name__})"
        )
    if distributed:
        raise ConfigurationError(
            "--decolle runs in one process: its per-step updates are taken outside the "
            "backward pass that averages gradients over torchrun's processes"
        )
    layers = len(model.layers)
    for name, flag in (("decolle_reg_u", "--decolle-reg-u"),
                       ("decolle_layer_lr", "--decolle-layer-lr")):  # fmt: skip
        values = list(getattr(config, name))
        if len(values) not in (0, 1, layers):
            raise ConfigurationError(
                f"{flag}: one value for every layer or one per layer; the network has "
                f"{layers} DECOLLE layers, got {len(values)} values {values}"
            )


def _per_layer(values: Sequence[float], layers: int, default: float) -> list[float]:
    values = list(values)
    if not values:
        return [default] * layers
    return values * layers if len(values) == 1 else values


def decolle_rule(config: Any, model: nn.Module) -> DECOLLE | None:
    """The DECOLLE rule of a run (``None`` without ``config.decolle``); the model is
    checked already (:func:`check_decolle_model`)."""
    if not getattr(config, "decolle", False):
        return None
    assert isinstance(model, DECOLLEClassifier)
    layers = len(model.layers)
    return DECOLLE(
        model, loss=config.decolle_loss, burnin=config.decolle_burnin,
        update=config.decolle_update, reg_u=_per_layer(config.decolle_reg_u, layers, 0.0),
    )  # fmt: skip


def decolle_parameter_groups(config: Any, model: nn.Module) -> list[dict[str, Any]] | None:
    """The optimizer's parameter groups of a run with ``--decolle-layer-lr``: layer
    ``l``'s weights at ``lr · scale_l`` (the reference code's per-layer learning rates,
    one Adamax per layer there), trainable readouts at ``lr``; ``None`` without it.
    Each group keeps its multiple of ``lr`` as ``"lr_scale"`` (the run's own learning
    rate, which the metrics log, is a group's ``lr / lr_scale``)."""
    scales = list(getattr(config, "decolle_layer_lr", []) or [])
    if not scales or not isinstance(model, DECOLLEClassifier):
        return None
    scales = _per_layer(scales, len(model.layers), 1.0)
    groups: list[dict[str, Any]] = [
        {"params": list(layer.parameters()), "lr": config.lr * scale, "lr_scale": scale}
        for layer, scale in zip(model.layers, scales)
    ]
    readouts = [p for p in model.readouts.parameters() if p.requires_grad]
    if readouts:
        groups.append({"params": readouts, "lr": config.lr, "lr_scale": 1.0})
    return groups


def decolle_output_loss(kind: str) -> Callable[[Tensor, Tensor], Tensor]:
    """The loss a DECOLLE run logs: the last layer's local loss ``kind``
    (:func:`~spikeflow.learn.decolle_loss`) against the one-hot labels (or class
    distributions ``[B, K]``), averaged over the steps of ``out`` ``[T', B, K]``.

    Raises:
        ConfigurationError: an unknown ``kind``.
    """
    if kind not in DECOLLE_LOSSES:
        raise ConfigurationError(f"decolle_loss must be one of {DECOLLE_LOSSES}, got {kind!r}")

    def loss(out: Tensor, target: Tensor) -> Tensor:
        if not isinstance(out, Tensor) or out.dim() != 3 or out.shape[0] == 0:
            shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ShapeError(f"decolle output loss: out must be [T, B, K] with T >= 1, got {shape}")
        return sum(decolle_loss(o, target, kind) for o in out) / out.shape[0]  # type: ignore[return-value]

    return loss


def decolle_train_step(
    rule: DECOLLE,
    x: Tensor,
    target: Tensor,
    after_step: Callable[[int, Tensor], None] | None = None,
) -> tuple[Tensor, Tensor]:
    """One batch ``x`` ``[T, B, C, H, W]`` through :meth:`~spikeflow.learn.DECOLLE.run`
    (the gradients into ``.grad``; ``after_step(t, loss)`` after every learning step's
    backward: per-step updates). Returns the last layer's readout ``[T − burnin, B, K]``
    and the logged loss (:func:`decolle_output_loss` of it), both detached."""
    network = rule.network
    weight = network.layers[0].synapse.weight
    if isinstance(network, DECOLLEClassifier):
        x = network.prepare_input(x)
    result = rule.run(x.to(weight.dtype), target, after_step=after_step)
    out = result.y[:, -1]
    with torch.no_grad():
        loss = decolle_output_loss(rule.loss)(out, target)
    return out, loss
