"""SNASNet (Kim et al., ECCV 2022, "Neural Architecture Search for Spiking Neural
Networks"): a stem, two searched cells with a spiking downsampling block between them,
and a spiking classifier whose outputs are averaged in clusters.

A **cell** has four nodes: ``x_0`` its input, then ``x_j = Σ_{i<j} op[i, j](x_i)``; its
output is ``x_3``. The connection matrix ``con_mat`` (4x4) picks each edge's operation:
0 zero, 1 identity, 2 ``BN(conv1x1(LIF(x)))``, 3 ``BN(conv3x3(LIF(x)))``, 4 a 3x3 average
pool (stride 1). A **backward** cell (``cell_type="backward"``) has edges from later to
earlier nodes too (``op[j, i]``, ``j > i``), carried to the next step: at step ``t``,
``x_i`` receives, added to its input, what the later nodes sent at ``t − 1``.

The network: ``stem = BN(conv3x3(x))`` (stride ``stem_stride``), ``cell1``,
``BN(conv3x3(LIF(BN(·))))`` to twice the channels, a 2x2 average pool, ``cell2``,
``LIF(BN(·))``, a ``second_avgpooling`` average pool, then ``dropout → FC → LIF → FC``
(``classifier_hidden``, then ``num_final_neurons`` outputs) and an average over clusters
of ``num_final_neurons / num_classes`` outputs per class. Output ``[T, B, num_classes]``
per step (SpikingJelly's model returns the mean over time).

SpikingJelly 2.0's ``model.SNASNet(args, con_mat)`` (its ``args.dataset`` presets are the
builders ``snasnet_cifar10``, ``snasnet_cifar100``, ``snasnet_tinyimagenet``) computes the
same function with its weights, which load as they are (the same module names). Like
SpikingJelly's, which runs the network one step at a time, the batch norms normalise
each step by its own statistics (:class:`StepBatchNorm2d`); the stem's too, where
SpikingJelly runs the stem once on a static image (the same normalisation of a static
input, repeated over ``T``; the stem's running statistics then take ``T`` updates per
batch here, one there). The neurons are LIF with ``v_reset=0``, ATan and a detached
reset (SpikingJelly's); their ``tau`` and ``v_threshold`` are SpikingJelly's command-line
arguments, here ``neuron_kwargs`` over the defaults τ = 4/3 and threshold 1.

There is no default architecture in SpikingJelly (``con_mat`` is the search's result);
the default here, :data:`ALL_CONV3X3`, gives every forward edge a 3x3 convolution.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from spikeflow import layers
from spikeflow.base import MemoryModule
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.models.common import (
    NeuronFactory,
    NeuronSpec,
    check_input,
    check_positive_int,
    image_sides,
)
from spikeflow.models.registry import register_model

__all__ = [
    "ALL_CONV3X3",
    "SNASNET_NEURON_DEFAULTS",
    "SNASNet",
    "StepBatchNorm2d",
    "snasnet_cifar10",
    "snasnet_cifar100",
    "snasnet_tinyimagenet",
]

#: The cells' neurons: LIF, hard reset to 0, ATan, reset detached (SpikingJelly's), with
#: τ = 4/3 and threshold 1 (SpikingJelly's model takes both from its ``args``).
SNASNET_NEURON_DEFAULTS: dict[str, Any] = {
    "tau": 4.0 / 3.0,
    "v_threshold": 1.0,
    "v_reset": 0.0,
    "surrogate_function": "atan",
    "detach_reset": True,
}

#: The default connection matrix: a 3x3 convolution on every forward edge.
ALL_CONV3X3: tuple[tuple[int, ...], ...] = ((0, 3, 3, 3), (0, 0, 3, 3), (0, 0, 0, 3), (0, 0, 0, 0))

#: The operations a connection matrix entry names.
OPERATIONS = {0: "zero", 1: "identity", 2: "LIF-conv1x1-BN", 3: "LIF-conv3x3-BN", 4: "avgpool3x3"}


class StepBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` applied to each step of ``[T, B, C, H, W]`` on its own (its
    statistics per step; in training mode the running statistics take one update per
    step, in order), as a network run one step at a time normalises."""

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        """``[T, B, C, H, W]`` -> ``[T, B, C, H, W]``."""
        if x.dim() != 5:
            raise ShapeError(f"StepBatchNorm2d expects [T, B, C, H, W], got shape {tuple(x.shape)}")
        return torch.stack([super(StepBatchNorm2d, self).forward(step) for step in x])


class _Zero(nn.Module):
    """``x · 0`` (SpikingJelly's ``ScaleLayer`` with its scale 0)."""

    def forward(self, x: Tensor) -> Tensor:
        return x * 0.0


def _operation(op: int, channels: int, make_neuron: NeuronFactory) -> nn.Module:
    if op == 0:
        return _Zero()
    if op == 1:
        return nn.Identity()
    if op == 4:
        return layers.AvgPool2d(3, 1, 1)
    kernel = 1 if op == 2 else 3
    conv = layers.Conv2d(channels, channels, kernel, 1, kernel // 2, bias=False)
    return nn.Sequential(make_neuron(), conv, StepBatchNorm2d(channels))


def _check_con_mat(con_mat: Any) -> list[list[int]]:
    """``con_mat`` as a 4x4 list of operation codes 0-4."""
    rows = con_mat.tolist() if hasattr(con_mat, "tolist") else con_mat
    ok = (
        isinstance(rows, Sequence)
        and len(rows) == 4
        and all(isinstance(r, Sequence) and len(r) == 4 for r in rows)
    )
    if not ok:
        raise ConfigurationError(f"SNASNet: con_mat must be a 4x4 matrix, got {con_mat!r}")
    for row in rows:
        for op in row:
            if isinstance(op, bool) or not isinstance(op, int) or op not in OPERATIONS:
                raise ConfigurationError(
                    f"SNASNet: con_mat entries must be operation codes 0-4 "
                    f"({', '.join(f'{k} {v}' for k, v in OPERATIONS.items())}), got {op!r}"
                )
    return [list(r) for r in rows]


class SNASCell(nn.Module):
    """A SNASNet cell on ``[T, B, C, H, W]`` (same shape out): the forward edges
    ``cell_architecture`` (``op[0,1]``, ``op[0,2]``, ``op[1,2]``, ``op[0,3]``, ``op[1,3]``,
    ``op[2,3]``), and for a backward cell the edges ``cell_architecture_back``
    (``op[1,0]``, ``op[2,0]``, ``op[3,0]``, ``op[2,1]``, ``op[3,1]``, ``op[3,2]``) carried
    to the next step.

    A backward cell runs its steps one by one (its neurons streaming within the call);
    it cannot itself be streamed step by step from outside (online training).
    """

    def __init__(
        self, channels: int, con_mat: list[list[int]], backward: bool, make_neuron: NeuronFactory
    ) -> None:
        super().__init__()
        self.backward = backward
        forward_edges = [(row, col) for col in range(1, 4) for row in range(col)]
        self.cell_architecture = nn.ModuleList(
            _operation(con_mat[r][c], channels, make_neuron) for r, c in forward_edges
        )
        if backward:
            back_edges = [(row, col) for col in range(3) for row in range(col + 1, 4)]
            self.cell_architecture_back = nn.ModuleList(
                _operation(con_mat[r][c], channels, make_neuron) for r, c in back_edges
            )

    def _nodes(self, x: Tensor, last: tuple[Any, Any, Any]) -> tuple[Tensor, Tensor, Tensor]:
        op = self.cell_architecture
        x0 = x + last[0]
        x1 = op[0](x0)
        x1l = x1 + last[1]
        x2 = op[1](x0) + op[2](x1l)
        x3 = op[3](x0) + op[4](x1l) + op[5](x2 + last[2])
        return x1l, x2 + last[2], x3

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, C, H, W]`` -> ``[T, B, C, H, W]``."""
        if not self.backward:
            return self._nodes(x, (0.0, 0.0, 0.0))[2]
        neurons = [m for m in self.modules() if isinstance(m, MemoryModule)]
        if any(m.streaming for m in neurons):
            raise ConfigurationError(
                "SNASNet: a backward cell runs whole sequences (it loops over the steps "
                "itself); it cannot be streamed one step per call (online training)"
            )
        back = self.cell_architecture_back
        last: tuple[Any, Any, Any] = (0.0, 0.0, 0.0)
        outputs = []
        for m in neurons:
            m.streaming = True
            m.reset()
        try:
            for step in x.split(1):
                x1, x2, x3 = self._nodes(step, last)
                last = (back[0](x1) + back[1](x2) + back[2](x3), back[3](x2) + back[4](x3),
                        back[5](x3))  # fmt: skip
                outputs.append(x3)
        finally:
            for m in neurons:
                m.streaming = False
                m.reset()
        return torch.cat(outputs)


class SNASNet(nn.Module):
    """SNASNet (module docstring): ``[T, B, C, H, W]`` → ``[T, B, num_classes]``.

    Args:
        con_mat: the cells' 4x4 connection matrix (a nested list, numpy array or
            tensor of operation codes 0-4; :data:`ALL_CONV3X3` by default).
        cell_type: ``"forward"`` or ``"backward"``.
        num_classes: output classes (``num_final_neurons`` a multiple of it).
        in_channels: input channels (3).
        input_size: the input's side or ``(H, W)`` (32; 64 for Tiny ImageNet): fixes
            the classifier's input width (``spikeflow train`` passes its dataset's).
        first_channels: the stem's and first cell's channels (SpikingJelly's
            ``first_out_channel · channel_ratio``: 256 for CIFAR-10, 128 otherwise);
            the second cell has twice as many.
        stem_stride: the stem convolution's stride (1; 2 for Tiny ImageNet).
        second_avgpooling: the pool after the second cell (2).
        classifier_hidden: the classifier's hidden width (1024; 4096 Tiny ImageNet).
        num_final_neurons: the classifier's outputs (averaged per class in clusters).
        dropout: the classifier's dropout (0.5; the mask is shared over the steps).
        neuron, neuron_kwargs: the spiking neurons, over :data:`SNASNET_NEURON_DEFAULTS`.
        zero_init_residual: refused (no residual blocks).

    Raises:
        ConfigurationError: a bad ``con_mat`` or ``cell_type``, a size that is not a
            positive integer, ``num_final_neurons`` not a multiple of ``num_classes``, an
            ``input_size`` the pools leave nothing of, or ``zero_init_residual=True``.
    """

    def __init__(
        self,
        con_mat: Any = ALL_CONV3X3,
        cell_type: str = "forward",
        num_classes: int = 10,
        in_channels: int = 3,
        input_size: int | tuple[int, int] | list[int] = 32,
        first_channels: int = 256,
        stem_stride: int = 1,
        second_avgpooling: int = 2,
        classifier_hidden: int = 1024,
        num_final_neurons: int = 100,
        dropout: float = 0.5,
        neuron: NeuronSpec = "lif",
        neuron_kwargs: Mapping[str, Any] | None = None,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if zero_init_residual:
            raise ConfigurationError("SNASNet has no residual blocks to zero-init")
        matrix = _check_con_mat(con_mat)
        if cell_type not in ("forward", "backward"):
            raise ConfigurationError(
                f"SNASNet: cell_type must be 'forward' or 'backward', got {cell_type!r}"
            )
        for name, value in (("num_classes", num_classes), ("in_channels", in_channels),
                            ("first_channels", first_channels),
                            ("stem_stride", stem_stride),
                            ("second_avgpooling", second_avgpooling),
                            ("classifier_hidden", classifier_hidden),
                            ("num_final_neurons", num_final_neurons)):  # fmt: skip
            check_positive_int(f"SNASNet: {name}", value)
        if num_final_neurons % num_classes:
            raise ConfigurationError(
                f"SNASNet: num_final_neurons ({num_final_neurons}) must be a multiple of "
                f"num_classes ({num_classes}): each class averages a cluster of them"
            )
        sides = image_sides("SNASNet", input_size, "SNASNet: input_size")
        # the stem's convolution (3x3, padding 1) gives ⌈side / stride⌉, then the pools
        # 2 and second_avgpooling floor: an odd side under stride 2 keeps its last row
        pooled = [((side - 1) // stem_stride + 1) // 2 // second_avgpooling for side in sides]
        if min(pooled) < 1:
            raise ConfigurationError(
                f"SNASNet: input_size {input_size} leaves nothing after the stem's stride "
                f"{stem_stride} and the pools 2 and {second_avgpooling}"
            )
        make = NeuronFactory(neuron, neuron_kwargs, SNASNET_NEURON_DEFAULTS)
        backward = cell_type == "backward"
        wide = 2 * first_channels
        self.in_channels, self.num_classes, self.cell_type = in_channels, num_classes, cell_type
        self.input_size = sides
        self.stem = nn.Sequential(
            layers.Conv2d(in_channels, first_channels, 3, stem_stride, 1, bias=False),
            StepBatchNorm2d(first_channels),
        )
        self.cell1 = SNASCell(first_channels, matrix, backward, make)
        self.downconv1 = nn.Sequential(
            StepBatchNorm2d(first_channels),
            make(),
            layers.Conv2d(first_channels, wide, 3, 1, 1, bias=False),
            StepBatchNorm2d(wide),
        )
        self.resdownsample1 = layers.AvgPool2d(2, 2)
        self.cell2 = SNASCell(wide, matrix, backward, make)
        self.last_act = nn.Sequential(StepBatchNorm2d(wide), make())
        self.resdownsample2 = layers.AvgPool2d(second_avgpooling, second_avgpooling)
        self.classifier = nn.Sequential(
            layers.Dropout(dropout),
            layers.Linear(wide * pooled[0] * pooled[1], classifier_hidden, bias=False),
            make(),
            layers.Linear(classifier_hidden, num_final_neurons),
        )
        self.cluster = num_final_neurons // num_classes
        for m in self.modules():  # SpikingJelly's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=2)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, C, H, W]`` → ``[T, B, num_classes]``."""
        check_input(x, "SNASNet", "[T, B, C, H, W]", 5, self.in_channels)
        if tuple(x.shape[-2:]) != self.input_size:
            raise ShapeError(
                f"SNASNet was built for {self.input_size[0]}x{self.input_size[1]} inputs "
                f"(input_size), got shape {tuple(x.shape)}"
            )
        x = self.downconv1(self.cell1(self.stem(x)))
        x = self.resdownsample2(self.last_act(self.cell2(self.resdownsample1(x))))
        out = self.classifier(x.flatten(2))
        return out.unflatten(-1, (self.num_classes, self.cluster)).mean(-1)


_PRESETS = {
    # SpikingJelly's args.dataset presets: classes, image side, first channels
    # (first_out_channel x channel_ratio), stem stride, classifier width, final neurons.
    "cifar10": (10, 32, 256, 1, 1024, 100),
    "cifar100": (100, 32, 128, 1, 1024, 500),
    "tinyimagenet": (200, 64, 128, 2, 4096, 1000),
}


def _preset(dataset: str, kwargs: dict[str, Any]) -> SNASNet:
    classes, size, channels, stride, hidden, final = _PRESETS[dataset]
    settings = {"num_classes": classes, "input_size": size, "first_channels": channels,
                "stem_stride": stride, "classifier_hidden": hidden,
                "num_final_neurons": final, **kwargs}  # fmt: skip
    return SNASNet(**settings)


@register_model("snasnet_cifar10")
def snasnet_cifar10(**kwargs: Any) -> SNASNet:
    """SNASNet for CIFAR-10 (SpikingJelly's ``args.dataset="cifar10"``): 256 and 512
    channels, 1024 hidden, 100 final neurons in clusters of 10; kwargs of :class:`SNASNet`
    (``con_mat``, ``cell_type``, ``second_avgpooling``, ...)."""
    return _preset("cifar10", kwargs)


@register_model("snasnet_cifar100")
def snasnet_cifar100(**kwargs: Any) -> SNASNet:
    """SNASNet for CIFAR-100 (``args.dataset="cifar100"``): 128 and 256 channels, 1024
    hidden, 500 final neurons in clusters of 5; kwargs of :class:`SNASNet`."""
    return _preset("cifar100", kwargs)


@register_model("snasnet_tinyimagenet")
def snasnet_tinyimagenet(**kwargs: Any) -> SNASNet:
    """SNASNet for Tiny ImageNet (``args.dataset="tinyimagenet"``): 64x64 inputs, a stem
    of stride 2, 128 and 256 channels, 4096 hidden, 1000 final neurons in clusters of
    5; kwargs of :class:`SNASNet`."""
    return _preset("tinyimagenet", kwargs)
