"""Helpers the zoo's model builders share: argument and input checks, conv-BN units,
initialisation, flattening of time-major inputs (re-exported by
:mod:`spikeflow.models.common`)."""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from spikeflow import layers
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError

__all__ = [
    "always_firing_input",
    "check_dense_net",
    "check_input",
    "check_pooled_size",
    "check_positive_int",
    "conv_bn",
    "flat_features",
    "flat_steps",
    "image_sides",
    "init_conv_linear",
    "output_steps",
    "per_stage",
    "pooling_2x2",
    "zero_init_bn",
]


def check_positive_int(name: str, value: Any) -> int:
    """``value`` as an int ≥ 1, or a ConfigurationError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{name} must be a positive integer, got {value!r}")
    return value


def image_sides(
    owner: str, input_size: int | Sequence[int], side_name: str = "input_size"
) -> tuple[int, int]:
    """``input_size``, one side or ``(H, W)``, as ``(H, W)``: a ConfigurationError naming
    ``owner`` unless it has two sides, one naming ``side_name`` for a side that is not a
    positive integer."""
    sides = [input_size] * 2 if isinstance(input_size, int) else list(input_size)
    if len(sides) != 2:
        raise ConfigurationError(
            f"{owner}: input_size must be a side or (H, W), got {input_size!r}"
        )
    height, width = (check_positive_int(side_name, side) for side in sides)
    return height, width


def check_pooled_size(owner: str, input_size: int | Sequence[int], pools: int) -> None:
    """Raise a ConfigurationError naming ``owner`` when an input of ``input_size`` (a
    side or ``(H, W)``) leaves nothing after ``pools`` 2x2 pools (max or average)."""
    sides = image_sides(owner, input_size)
    if min(sides) < 2**pools:
        raise ConfigurationError(
            f"{owner}: input_size {input_size} is too small for its {pools} 2x2 pools "
            f"(each halves the input: a side of at least {2**pools} is needed)"
        )


def per_stage(owner: str, name: str, value: int | Sequence[int], stages: int) -> tuple[int, ...]:
    """``value`` for each of ``stages`` stages (one int for all, or one per stage), each a
    positive int; else a ConfigurationError naming ``owner`` and ``name``."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,) * stages
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) \
            or len(value) != stages:  # fmt: skip
        raise ConfigurationError(
            f"{owner}: {name} must be one positive integer or {stages} (one per stage), "
            f"got {value!r}"
        )
    return tuple(check_positive_int(f"{owner}: {name}[{i}]", v) for i, v in enumerate(value))


def check_input(x: Tensor, owner: str, layout: str, ndim: int, channels: int) -> None:
    """Raise unless ``x`` is a float ``[T, B, C, ...]`` of ``ndim`` dims with ``C = channels``."""
    if not isinstance(x, Tensor):
        raise DTypeError(f"{owner} expects a tensor, got {type(x).__name__}")
    if x.dim() != ndim:
        hint = " (missing the time dimension?)" if x.dim() == ndim - 1 else ""
        raise ShapeError(f"{owner} expects {layout}; got shape {tuple(x.shape)}{hint}")
    if x.shape[2] != channels:
        raise ShapeError(
            f"{owner} was built for {channels} input channels (layout {layout}), "
            f"got {x.shape[2]} in shape {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise DTypeError(f"{owner} expects a floating-point input, got {x.dtype}")


def conv_bn(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int = 1,
    padding: int | None = None,
    bn: bool = True,
) -> list[nn.Module]:
    """``[layers.Conv2d(bias=not bn), layers.BatchNorm2d]`` (multi-step, time folded)."""
    pad = kernel_size // 2 if padding is None else padding
    mods: list[nn.Module] = [
        layers.Conv2d(in_channels, out_channels, kernel_size, stride, pad, bias=not bn)
    ]
    if bn:
        mods.append(layers.BatchNorm2d(out_channels))
    return mods


def init_conv_linear(model: nn.Module) -> None:
    """Kaiming-normal (fan-out) conv weights, BN γ=1/β=0 (torchvision's ResNet init)."""
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) and m.affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def always_firing_input(neuron: nn.Module, steps: int = 512) -> float:
    """The smallest of 1, 2, 4, ..., 1024 that, as a constant input, makes ``neuron``
    fire at every one of ``steps`` steps from rest (``T`` for a neuron built for T
    steps): the β of a zero-initialised BN before a SEW ``AND`` branch's neuron (1 for
    IF with θ = 1; 2 for a LIF or PLIF with τ = 2 and ``decay_input``, which charges to
    ``β / τ`` from rest; 16 for ALIF, whose threshold rises for tens of steps).

    Raises:
        ConfigurationError: no such input up to 1024.
    """
    probe = copy.deepcopy(neuron).cpu()
    if hasattr(probe, "step_mode") and not isinstance(type(probe).step_mode, property):
        probe.step_mode = "m"
    if hasattr(probe, "streaming"):
        probe.streaming = False
    if hasattr(probe, "backend"):
        probe.backend = "torch"  # the reference loop: runs anywhere
    fixed_steps = getattr(probe, "T", None)  # a parallel spiking neuron built for T steps
    fixed = isinstance(fixed_steps, int) and fixed_steps > 0
    if fixed:
        steps = fixed_steps
    dtype = next((p.dtype for p in probe.parameters()), torch.float32)

    def fires_throughout(value: float, horizon: int) -> bool:
        if hasattr(probe, "reset"):
            probe.reset()
        return bool((probe(torch.full((horizon, 1), value, dtype=dtype)) > 0).all())

    with torch.no_grad():
        for k in range(11):
            value = float(2**k)
            # A short probe first; an adaptive neuron's threshold keeps rising for tens
            # of steps (ALIF fires at every step of 8 with 8, misses steps after 26).
            short = steps if fixed else min(steps, 8)  # a PSN takes its own T only
            if fires_throughout(value, short) and fires_throughout(value, steps):
                return value
    raise ConfigurationError(
        f"{type(neuron).__name__} does not fire at every step for any constant input up "
        "to 1024: a SEW AND block cannot start as its identity with it (zero_init_residual "
        "with cnf='ADD' or 'IAND' needs A = 0, which any neuron gives)"
    )


@torch.no_grad()
def zero_init_bn(bn: nn.Module, bias: float = 0.0) -> None:
    """Set a batch norm's γ to 0 and β to ``bias`` (output ``bias`` at init)."""
    if not isinstance(bn, nn.modules.batchnorm._BatchNorm) or not bn.affine:
        raise ConfigurationError(f"zero-init needs an affine batch norm, got {type(bn).__name__}")
    bn.weight.zero_()
    bn.bias.fill_(bias)


def check_dense_net(
    model: str,
    num_classes: int,
    hidden: int,
    hidden_layers: int,
    dropout: float,
    in_features: int | None,
    in_channels: int,
    input_size: int | tuple[int, int] | list[int] | None,
) -> int:
    """Check the arguments fully connected models (``delay_snn``, ``rsnn``) share and
    return their number of input values per step (:func:`flat_features`)."""
    for name, value in (("num_classes", num_classes), ("hidden", hidden),
                        ("hidden_layers", hidden_layers)):  # fmt: skip
        check_positive_int(name, value)
    features = flat_features(model, in_features, in_channels, input_size)
    if not 0.0 <= dropout < 1.0:
        raise ConfigurationError(f"dropout must be in [0, 1); got {dropout}")
    return features


def output_steps(model: nn.Module, steps: int) -> int:
    """The number of time steps of ``model``'s output for an input of ``steps`` steps:
    ``model.output_steps(steps)`` for a model that adds or drops steps (the zoo's
    ``delay_snn`` with ``extend_time``: it pads each layer's input), else ``steps``.
    A model whose output has another number of steps than its input says so with such
    a method, so that ``spikeflow train`` checks a loss's windows against it."""
    method = getattr(model, "output_steps", None)
    return int(method(steps)) if callable(method) else steps


def flat_steps(model: str, x: Tensor, in_features: int) -> Tensor:
    """A time-major input ``[T, B, ...]`` flattened per step to ``[T, B, in_features]``.

    Raises:
        ShapeError: ``x`` is not ``[T, B, ...]`` with ``in_features`` values per step.
    """
    if x.dim() < 3 or math.prod(x.shape[2:]) != in_features:
        raise ShapeError(
            f"{model} expects [T, B, ...] with {in_features} values per step, "
            f"got shape {tuple(x.shape)}"
        )
    return x.flatten(2)


def flat_features(
    model: str,
    in_features: int | None,
    in_channels: int,
    input_size: int | tuple[int, int] | list[int] | None,
) -> int:
    """The number of input values per step of a fully connected model: ``in_features``
    when given, else ``in_channels · H · W`` from ``input_size`` (one side or two)."""
    if in_features is not None:
        return check_positive_int("in_features", in_features)
    if input_size is None:
        raise ConfigurationError(f"{model} needs in_features, or in_channels and input_size")
    sides = [input_size, input_size] if isinstance(input_size, int) else list(input_size)
    return check_positive_int("in_channels", in_channels) * math.prod(
        check_positive_int("input_size", s) for s in sides
    )


#: The 2x2 poolings a zoo model's ``pooling`` argument names: max (the papers'), and
#: average and sum, which NIR expresses (AvgPool2d, SumPool2d) where max pooling has no node.
POOLINGS_2X2 = ("max", "avg", "sum")


def pooling_2x2(pooling: object) -> Any:
    """A factory of the 2x2, stride-2 pooling named ``pooling`` (``"max"``, ``"avg"``,
    ``"sum"``: average pooling times 4), or a ConfigurationError naming the argument."""
    if pooling == "max":
        return lambda: layers.MaxPool2d(2, 2)
    if pooling == "avg":
        return lambda: layers.AvgPool2d(2, 2)
    if pooling == "sum":
        return lambda: layers.AvgPool2d(2, 2, divisor_override=1)
    raise ConfigurationError(f"pooling must be one of {POOLINGS_2X2}, got {pooling!r}")
