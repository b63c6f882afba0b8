"""EfficientNet B0-B7 (Tan & Le 2019) as a float network and as a sigma-delta network,
the pair Lava-DL's ``slayer.image_classification`` trains for Loihi by distillation.

Both take ``[T, B, C, H, W]`` and return ``[T, B, num_classes]``:

* :class:`EfficientNet` (``efficientnet_b0`` ... ``_b7``), the float (ANN) twin, run on
  every step with time folded into the batch: torchvision's ``efficientnet_b*`` layout
  module for module (so its state dict loads by
  :func:`~spikeflow.models.load_torchvision_weights`), SiLU and sigmoid gates by
  default; a distillation teacher (``spikeflow train --teacher RUN``).
* :class:`EfficientNetSDNN` (``efficientnet_b0_sdnn`` ... ``_b7_sdnn``): the same
  network run on changes. The input is delta-encoded; every convolution (and the
  classifier) is a :class:`~spikeflow.layers.DeltaSynapse` fed graded spikes; each batch
  norm and activation sits in a :class:`~spikeflow.layers.SigmaDelta` unit (sigma of the
  synapse's deltas, norm, activation, delta encoder), the projection's unit has the norm
  only (Lava-DL's identity activation); the squeeze-and-excitation is a unit of its own
  whose function is the whole gate (pool, two 1x1 convs, gate, product) on the
  accumulated activation, since a product of two signals is not linear in their
  changes; residual sums and the global average pool run on the deltas (linear).
  Defaults are Lava-DL's Loihi activations: PiecewiseLinearSiLU, ReLU1 gates, θ = 0.
  With θ = 0 its output at every step is the ANN twin's on that step's input.

Stages (torchvision's ``_efficientnet_conf``): (expand, kernel, stride, in, out, blocks)
rows of :data:`EFFICIENTNET_STAGES`, channels times ``width_mult`` rounded to 8
(``make_divisible``), blocks times ``depth_mult`` rounded up; the head conv has 4x the
last stage's channels. Squeeze channels: a quarter of the block's *input* channels.
Stochastic depth: block ``i`` of ``n`` drops its residual branch with probability
``0.2 i / n`` (per sample, the same at every step; only blocks with a residual).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from spikeflow import layers
from spikeflow.conversion.loihi_activations import PiecewiseLinearSiLU, ReLU1
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.layers._time import current_fold, fold_time
from spikeflow.layers.sigma_delta import DeltaEncoder, DeltaSynapse, SigmaDecoder, SigmaDelta
from spikeflow.models.common import check_input, check_positive_int
from spikeflow.models.mobilenet import make_divisible
from spikeflow.models.registry import register_builder

__all__ = [
    "EFFICIENTNET_ACTIVATIONS",
    "EFFICIENTNET_GATES",
    "EFFICIENTNET_STAGES",
    "EFFICIENTNET_VARIANTS",
    "EfficientNet",
    "EfficientNetSDNN",
    "MBConv",
    "SqueezeExcitation",
    "StochasticDepth",
]

#: (expand ratio, kernel, stride, input channels, output channels, blocks) of B0.
EFFICIENTNET_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
)

#: The paper's compound scaling: variant -> (width, depth, resolution, dropout).
EFFICIENTNET_VARIANTS: dict[str, tuple[float, float, int, float]] = {
    "b0": (1.0, 1.0, 224, 0.2),
    "b1": (1.0, 1.1, 240, 0.2),
    "b2": (1.1, 1.2, 260, 0.3),
    "b3": (1.2, 1.4, 300, 0.3),
    "b4": (1.4, 1.8, 380, 0.4),
    "b5": (1.6, 2.2, 456, 0.4),
    "b6": (1.8, 2.6, 528, 0.5),
    "b7": (2.0, 3.1, 600, 0.5),
}

#: Variants whose batch norms use torchvision's ``eps=1e-3, momentum=0.01`` (its B5-B7).
EFFICIENTNET_TF_NORM = ("b5", "b6", "b7")

#: ``activation=``: the conv units' function (Lava-DL trains ``pl_silu`` for Loihi).
EFFICIENTNET_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "silu": nn.SiLU,
    "pl_silu": PiecewiseLinearSiLU,
    "relu": nn.ReLU,
}
#: ``gate=``: the squeeze-and-excitation's gate (Lava-DL's ``ReLU1`` for ``sigmoid``;
#: ``hardsigmoid``, ``clamp(x / 6 + 0.5, 0, 1)``, is also piecewise linear but, unlike
#: ReLU1, 0.5 at 0 as a sigmoid, so a sigmoid-trained network's gates keep their values).
EFFICIENTNET_GATES: dict[str, type[nn.Module]] = {
    "sigmoid": nn.Sigmoid,
    "relu1": ReLU1,
    "hardsigmoid": nn.Hardsigmoid,
}


class SqueezeExcitation(nn.Module):
    """``x * gate(fc2(act(fc1(mean_hw(x)))))`` on one step ``[N, C, H, W]`` (torchvision's
    module names: ``avgpool``, ``fc1``, ``fc2``, ``activation``, ``scale_activation``)."""

    def __init__(
        self, channels: int, squeeze: int, activation: type[nn.Module], gate: type[nn.Module]
    ) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.activation = activation()
        self.scale_activation = gate()

    def forward(self, x: Tensor) -> Tensor:
        """The gated ``x``, same shape."""
        scale = self.fc2(self.activation(self.fc1(self.avgpool(x))))
        return x * self.scale_activation(scale)


class StochasticDepth(nn.Module):
    """Drop a residual branch per sample with probability ``p`` while training (the
    survivors scaled by ``1 / (1 - p)``), the same sample at every time step.

    Args:
        p: the drop probability, in ``[0, 1)``.
        time_major: the input is ``[T, B, ...]`` (mask ``[1, B, 1, ...]``); else
            ``[N, ...]`` with time folded in by :func:`~spikeflow.layers._time.fold_time`
            (one mask per sample, repeated over the steps).
    """

    def __init__(self, p: float, time_major: bool) -> None:
        super().__init__()
        self.p = float(p)
        self.time_major = time_major
        #: steps folded into the batch, set by :meth:`EfficientNet.forward` while it runs
        #: (the thread's fold is not visible in compiled code); else the current fold.
        self.steps: int | None = None

    def forward(self, x: Tensor) -> Tensor:
        """``x`` (evaluation, ``p = 0``), or ``x`` with dropped samples zeroed."""
        if not self.training or self.p == 0.0:
            return x
        if self.time_major:
            shape = (1, x.shape[1]) + (1,) * (x.dim() - 2)
            mask = x.new_empty(shape).bernoulli_(1.0 - self.p)
        else:
            steps = self.steps
            if steps is None:
                fold = current_fold()
                steps = fold[0] if fold and fold[0] * fold[1] == x.shape[0] else 1
            batch = x.shape[0] // steps
            mask = x.new_empty((1, batch)).bernoulli_(1.0 - self.p).expand(steps, batch)
            mask = mask.reshape((x.shape[0],) + (1,) * (x.dim() - 1))
        return x * mask / (1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p:g}"


class _Units:
    """Makes the conv-norm-activation units of one network: ANN ``(conv, bn, act)``, or
    sigma-delta ``(DeltaSynapse(conv), SigmaDelta((bn, act)))``; the same names after
    mapping (``_torchvision_name``)."""

    def __init__(
        self,
        activation: type[nn.Module],
        gate: type[nn.Module],
        delta: dict | None,
        norm: dict[str, float],
    ) -> None:
        self.activation, self.gate, self.delta, self.norm = activation, gate, delta, norm

    def conv(
        self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True
    ) -> nn.Sequential:
        conv = nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False)
        after = [nn.BatchNorm2d(cout, **self.norm)] + ([self.activation()] if act else [])
        if self.delta is None:
            return nn.Sequential(conv, *after)
        return nn.Sequential(DeltaSynapse(conv), SigmaDelta(nn.Sequential(*after), **self.delta))

    def excitation(self, channels: int, squeeze: int) -> nn.Module:
        se = SqueezeExcitation(channels, squeeze, self.activation, self.gate)
        return se if self.delta is None else SigmaDelta(se, **self.delta)


class MBConv(nn.Module):
    """EfficientNet's mobile inverted bottleneck: expand 1x1 (when ``expand`` > 1),
    depthwise ``kernel`` x ``kernel`` (stride), squeeze-and-excitation, linear 1x1
    projection; plus the input (branch under stochastic depth) when the stride is 1,
    the channels match and ``residual`` is on. ``block`` holds them in torchvision's order.
    """

    def __init__(
        self,
        cin: int,
        cout: int,
        expand: int,
        kernel: int,
        stride: int,
        drop: float,
        units: _Units,
        residual: bool,
    ) -> None:
        super().__init__()
        hidden = make_divisible(cin * expand, 8)
        parts: list[nn.Module] = []
        if hidden != cin:
            parts.append(units.conv(cin, hidden, 1))
        parts += [
            units.conv(hidden, hidden, kernel, stride, groups=hidden),
            units.excitation(hidden, max(1, cin // 4)),
            units.conv(hidden, cout, 1, act=False),
        ]
        self.block = nn.Sequential(*parts)
        self.use_residual = residual and stride == 1 and cin == cout
        self.stochastic_depth = StochasticDepth(drop, time_major=units.delta is not None)

    def forward(self, x: Tensor) -> Tensor:
        """The block's output (deltas in, deltas out in a sigma-delta network)."""
        out = self.block(x)
        return self.stochastic_depth(out) + x if self.use_residual else out


def _choice(name: str, value: object, table: dict[str, Any]) -> Any:
    if not isinstance(value, str) or value not in table:
        raise ConfigurationError(f"{name} must be one of {', '.join(table)}, got {value!r}")
    return table[value]


def _number(name: str, value: object, low: float, high: float, closed: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"{name} must be a number, got {value!r}")
    ok = (low <= value < high) if closed else (low < value < high)
    if not (ok and math.isfinite(value)):
        span = f"[{low:g}, {high:g})" if closed else f"({low:g}, {high:g})"
        raise ConfigurationError(f"{name} must be in {span}, got {value!r}")
    return float(value)


def _check_frames(model: nn.Module, x: Tensor, min_steps: int) -> None:
    """``x`` is a float ``[T, B, C, H, W]`` with the model's channels, ``H, W >= 1`` and
    ``T >= min_steps``, else a ShapeError / DTypeError naming the shape."""
    name = type(model).__name__
    check_input(x, name, "[T, B, C, H, W]", 5, model.in_channels)
    if x.shape[3] < 1 or x.shape[4] < 1 or x.shape[0] < min_steps:
        steps = f"T >= {min_steps}, " if min_steps else ""
        raise ShapeError(f"{name} needs {steps}H >= 1 and W >= 1, got shape {tuple(x.shape)}")


class _EfficientNetBase(nn.Module):
    """The construction shared by the float and the sigma-delta EfficientNet."""

    builder_fixed_arguments = ("variant",)

    def _build(
        self,
        variant: str,
        num_classes: int,
        in_channels: int,
        width_mult: float | None,
        depth_mult: float | None,
        dropout: float | None,
        stochastic_depth_prob: float,
        activation: str,
        gate: str,
        residual: bool,
        stem: str,
        delta: dict | None,
    ) -> None:
        width, depth, self.resolution, drop_default = _choice(
            "variant", variant, EFFICIENTNET_VARIANTS
        )
        self.variant = variant
        self.num_classes = check_positive_int("num_classes", num_classes)
        self.in_channels = check_positive_int("in_channels", in_channels)
        width = width if width_mult is None else _number("width_mult", width_mult, 0, 16)
        depth = depth if depth_mult is None else _number("depth_mult", depth_mult, 0, 16)
        dropout = drop_default if dropout is None else dropout
        dropout = _number("dropout", dropout, 0.0, 1.0, closed=True)
        sd_prob = _number("stochastic_depth_prob", stochastic_depth_prob, 0.0, 1.0, closed=True)
        if not isinstance(residual, bool):
            raise ConfigurationError(f"residual must be true or false, got {residual!r}")
        stride = {"imagenet": 2, "cifar": 1}.get(stem) if isinstance(stem, str) else None
        if stride is None:
            raise ConfigurationError(f"stem must be 'imagenet' or 'cifar', got {stem!r}")
        units = _Units(
            _choice("activation", activation, EFFICIENTNET_ACTIVATIONS),
            _choice("gate", gate, EFFICIENTNET_GATES),
            delta,
            {"eps": 1e-3, "momentum": 0.01} if variant in EFFICIENTNET_TF_NORM else {},
        )
        stages = [
            (
                e,
                k,
                s,
                make_divisible(i * width, 8),
                make_divisible(o * width, 8),
                math.ceil(n * depth),
            )
            for e, k, s, i, o, n in EFFICIENTNET_STAGES
        ]
        total = sum(row[-1] for row in stages)
        feats: list[nn.Module] = [units.conv(in_channels, stages[0][3], 3, stride)]
        index = 0
        for expand, kernel, s, cin, cout, blocks in stages:
            stage = []
            for j in range(blocks):
                first = j == 0
                drop = sd_prob * index / total
                block_in, stride = (cin, s) if first else (cout, 1)
                stage.append(MBConv(block_in, cout, expand, kernel, stride, drop, units, residual))
                index += 1
            feats.append(nn.Sequential(*stage))
        self.last_channel = 4 * stages[-1][4]
        feats.append(units.conv(stages[-1][4], self.last_channel, 1))
        self.features = nn.Sequential(*feats)
        linear = nn.Linear(self.last_channel, num_classes)
        if delta is None:
            self.avgpool: nn.Module = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Sequential(nn.Dropout(dropout), linear)
        else:
            self.avgpool = layers.AdaptiveAvgPool2d(1)
            self.classifier = nn.Sequential(layers.Dropout(dropout), DeltaSynapse(linear))
        self._init_weights()

    def _init_weights(self) -> None:
        """torchvision's initialisation (He fan-out convs, uniform ±1/√out linear)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                bound = 1.0 / math.sqrt(m.out_features)
                nn.init.uniform_(m.weight, -bound, bound)
            elif isinstance(m, DeltaSynapse) and m.bias is not None:
                nn.init.zeros_(m.bias)
        last = self.classifier[-1]
        if isinstance(last, nn.Linear):
            nn.init.zeros_(last.bias)
        for m in self.modules():  # a ReLU1 gate starts at 0.5 (a sigmoid's value at 0),
            if isinstance(m, SqueezeExcitation) and isinstance(m.scale_activation, ReLU1):
                nn.init.zeros_(m.fc2.weight)  # inside its linear range: He-initialised, a
                nn.init.constant_(m.fc2.bias, 0.5)  # third of the gates start clamped


class EfficientNet(_EfficientNetBase):
    """The float EfficientNet (the ANN twin), ``[T, B, C, H, W]`` → ``[T, B, num_classes]``,
    each step on its own (time folded into the batch; stochastic depth drops a sample at
    every step alike).

    Args:
        variant: ``"b0"`` ... ``"b7"`` (:data:`EFFICIENTNET_VARIANTS`; the builders fix it).
        num_classes, in_channels: 1000 and 3 by default.
        width_mult, depth_mult: override the variant's scaling (small test networks).
        dropout: before the classifier; default the variant's (0.2 ... 0.5).
        stochastic_depth_prob: of the last block (0.2; block ``i`` of ``n``: ``0.2 i / n``).
        activation: ``"silu"`` (torchvision's), ``"pl_silu"`` (Lava-DL's Loihi
            PiecewiseLinearSiLU) or ``"relu"``.
        gate: the excitation's gate: ``"sigmoid"`` (torchvision's), ``"relu1"``
            (Lava-DL's, ``clamp(x, 0, 1)``) or ``"hardsigmoid"`` (``clamp(x/6 + 0.5, 0, 1)``).
        residual: add the blocks' residuals (Lava-DL's ``use_res``).
        stem: ``"imagenet"`` (stride-2 stem) or ``"cifar"`` (stride 1, small images).

    Raises:
        ConfigurationError: a bad argument (named).
    """

    def __init__(
        self,
        variant: str = "b0",
        num_classes: int = 1000,
        in_channels: int = 3,
        width_mult: float | None = None,
        depth_mult: float | None = None,
        dropout: float | None = None,
        stochastic_depth_prob: float = 0.2,
        activation: str = "silu",
        gate: str = "sigmoid",
        residual: bool = True,
        stem: str = "imagenet",
    ) -> None:
        super().__init__()
        self._build(variant, num_classes, in_channels, width_mult, depth_mult, dropout,
                    stochastic_depth_prob, activation, gate, residual, stem, None)  # fmt: skip

    def forward_step(self, x: Tensor) -> Tensor:
        """One step ``[N, C, H, W]`` → ``[N, num_classes]`` (torchvision's forward)."""
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, C, H, W]`` → ``[T, B, num_classes]``."""
        _check_frames(self, x, 0)
        if not self.training:
            return fold_time(self.forward_step, x)
        drops = [m for m in self.modules() if isinstance(m, StochasticDepth)]
        for m in drops:  # one mask per sample for all its steps, compiled or not
            m.steps = x.shape[0]
        try:
            return fold_time(self.forward_step, x)
        finally:
            for m in drops:
                m.steps = None


class EfficientNetSDNN(_EfficientNetBase):
    """The sigma-delta EfficientNet (module docstring): ``[T, B, C, H, W]`` →
    ``[T, B, num_classes]``, the accumulated classifier output (with θ = 0 the ANN
    twin's output on each step).

    Args:
        variant ... stem: as :class:`EfficientNet`, but ``activation`` defaults to
            ``"pl_silu"`` and ``gate`` to ``"relu1"`` (Lava-DL's distilled student).
        threshold: θ of every unit's delta encoder (Lava-DL's EfficientNet: 0, exact).
        input_threshold: θ of the input's delta encoder (default ``threshold``).
        learn_threshold: learn each unit's θ (Lava-DL's ``requires_grad``; θ > 0 then).
        tau_grad, scale_grad: the learned θ's gradient relaxation (Lava-DL's 0.1, 0.1).

    Raises:
        ConfigurationError: a bad argument (named).
    """

    def __init__(
        self,
        variant: str = "b0",
        num_classes: int = 1000,
        in_channels: int = 3,
        width_mult: float | None = None,
        depth_mult: float | None = None,
        dropout: float | None = None,
        stochastic_depth_prob: float = 0.2,
        activation: str = "pl_silu",
        gate: str = "relu1",
        residual: bool = True,
        stem: str = "imagenet",
        threshold: float = 0.0,
        input_threshold: float | None = None,
        learn_threshold: bool = False,
        tau_grad: float = 0.1,
        scale_grad: float = 0.1,
    ) -> None:
        super().__init__()
        if not isinstance(learn_threshold, bool):
            raise ConfigurationError(
                f"learn_threshold must be true or false, got {learn_threshold!r}"
            )
        delta: dict[str, Any] = {"threshold": threshold, "requires_grad": learn_threshold}
        if learn_threshold:
            delta.update(tau_grad=tau_grad, scale_grad=scale_grad)
        theta_in = threshold if input_threshold is None else input_threshold
        self.input = DeltaEncoder(theta_in, **{k: v for k, v in delta.items() if k != "threshold"})
        self._build(variant, num_classes, in_channels, width_mult, depth_mult, dropout,
                    stochastic_depth_prob, activation, gate, residual, stem, delta)  # fmt: skip
        self.flatten = layers.Flatten()
        self.output = SigmaDecoder()

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, C, H, W]`` → ``[T, B, num_classes]`` (accumulated)."""
        _check_frames(self, x, 1)  # (a delta encoder needs a first step)
        deltas = self.features(self.input(x))
        return self.output(self.classifier(self.flatten(self.avgpool(deltas))))


_DOC = (
    "EfficientNet-{v} ({kind}; width {w}, depth {d}, {r}x{r} images in the paper): "
    ":class:`{cls}` with ``variant='{v}'``; ``kwargs`` are its arguments. "
    "``pretrained``: the path of a torchvision ``efficientnet_{v}`` state dict file (or "
    "of a trained twin's state dict, the same keys) loaded by "
    ":func:`~spikeflow.models.load_torchvision_weights` with ``pretrained_classifier``."
)


def _pretrained(model: _EfficientNetBase, pretrained: Any, classifier: str) -> Any:
    from spikeflow.models.torchvision_weights import load_pretrained  # (it imports this)

    return load_pretrained(model, pretrained, classifier)


def _register(variant: str, sdnn: bool) -> Callable[..., _EfficientNetBase]:
    """Register ``efficientnet_<variant>`` (or ``..._sdnn``)."""
    width, depth, res, _ = EFFICIENTNET_VARIANTS[variant]
    if sdnn:

        def build(
            pretrained: str | None = None, pretrained_classifier: str = "load", **kwargs: Any
        ) -> EfficientNetSDNN:
            model = EfficientNetSDNN(variant=variant, **kwargs)
            return _pretrained(model, pretrained, pretrained_classifier)

    else:

        def build(  # type: ignore[misc]
            pretrained: str | None = None, pretrained_classifier: str = "load", **kwargs: Any
        ) -> EfficientNet:
            model = EfficientNet(variant=variant, **kwargs)
            return _pretrained(model, pretrained, pretrained_classifier)

    name = f"efficientnet_{variant}{'_sdnn' if sdnn else ''}"
    cls = "EfficientNetSDNN" if sdnn else "EfficientNet"
    kind = "sigma-delta" if sdnn else "float ANN twin"
    doc = _DOC.format(v=variant, kind=kind, w=width, d=depth, r=res, cls=cls)
    return register_builder(name, build, doc)


efficientnet_b0 = _register("b0", False)
efficientnet_b1 = _register("b1", False)
efficientnet_b2 = _register("b2", False)
efficientnet_b3 = _register("b3", False)
efficientnet_b4 = _register("b4", False)
efficientnet_b5 = _register("b5", False)
efficientnet_b6 = _register("b6", False)
efficientnet_b7 = _register("b7", False)
efficientnet_b0_sdnn = _register("b0", True)
efficientnet_b1_sdnn = _register("b1", True)
efficientnet_b2_sdnn = _register("b2", True)
efficientnet_b3_sdnn = _register("b3", True)
efficientnet_b4_sdnn = _register("b4", True)
efficientnet_b5_sdnn = _register("b5", True)
efficientnet_b6_sdnn = _register("b6", True)
efficientnet_b7_sdnn = _register("b7", True)
