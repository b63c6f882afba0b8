"""SpikeDHS (Che et al., NeurIPS 2022, "Differentiable hierarchical and surrogate gradient
search for spiking neural networks"): the network its search found, and the surrogate
gradient search (DGS) that tunes each spiking unit's surrogate during training.

A **unit** (:class:`DGSUnit`) sums ``BN(conv3x3(x_i))`` over its inputs and fires a
neuron: ``LIF(Σ_i BN_i(conv_i(x_i)))``. A **cell** (:class:`DHSCell`) takes the outputs
of the two cells before it, ``s0`` and ``s1``; it first resamples ``s1`` to its own
level (nearest neighbour: down to ``⌈side / 2⌉``, or up to twice the side, ``2·side − 1``
for an odd one) and ``s0`` to ``s1``'s size, then its nodes each add one unit on two
earlier states (``cell_inputs``; the searched cell: ``n2 = U(s0, s1)``, ``n3 = U(s0,
s1)``, ``n4 = U(n2, n3)``), and it outputs the concatenation of the last
``block_multiplier`` nodes (``3 · C`` channels). The **network**: a unit on the input
(the stem, ``block_multiplier · filter_multiplier`` channels), the cells along the
searched path of levels ``levels`` (level ``l`` has ``filter_multiplier · 2^l`` channels
per node, at ``side / 2^l``), then ``LIF(global average pool)`` and ``BN1d(FC)`` at every
step: output ``[T, B, num_classes]``. An auxiliary head (``LIF(avgpool 5x5, stride 3)``,
``LIF(BN(conv1x1))`` to 128, ``LIF(BN(conv2x2))`` to 768, ``BN1d(FC)``) reads the output
of cell ``auxiliary_after`` (its map must be 8x8 to 10x10: a 32x32 input);
:meth:`SpikeDHS.forward_with_auxiliary` returns its logits beside the network's.

The **surrogate search** (DGS): each unit holds three copies of its convolutions and
batch norms, for its surrogate's temperature ``alpha`` (the Dspike surrogate,
:class:`~spikeflow.surrogate.DSpike`) lowered by ``dgs_step``, as it is, and raised by
``dgs_step``, mixed by the softmax of three architecture weights ``dgs_alpha``.
:meth:`DGSUnit.dgs_init_stage` starts a search stage (the copies take the main
branch's weights, ``dgs_alpha`` restarts at equal values); the stage trains ``dgs_alpha``
(and the copies); :meth:`DGSUnit.dgs_finish_stage` moves the main ``alpha`` one step
in the chosen direction (at least 0.2) and returns to the main branch alone. Outside a
stage the network uses the main branches only. ``surrogate_search=False`` builds the
main branches alone (a third of the parameters), for a network trained without search.

SpikingJelly 2.0's ``model.spike_dhs.SpikeDHS(3, args)`` with ``args.fea_num_layers=8``,
``fea_filter_multiplier=48``, ``fea_block_multiplier=3`` is :func:`spike_dhs` (100
classes): :func:`convert_spikingjelly_state_dict` renames its weights, and for the same
input repeated over its ``T = 6`` steps (it expands a static image itself) the mean
over time of the output is its logits. Neurons: LIF with ``tau = 1.25``, no input decay,
threshold 0.5, hard reset to 0, reset detached and Dspike (alpha 3), SpikingJelly's.
SpikingJelly's cell neurons that its forward never calls, and the pre-spike membrane
means its search neurons store but nothing reads, are not kept.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikeflow import layers
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.models.common import NeuronFactory, NeuronSpec, check_input, check_positive_int
from spikeflow.models.registry import register_model
from spikeflow.models.spike_dhs_search import MIN_ALPHA, DGSUnit, _Branch  # noqa: F401
from spikeflow.surrogate import DSpike

# MIN_ALPHA and _Branch (spike_dhs_search's) stay importable here: SpikeDHS models pickled
# before the search unit had its own module name spikeflow.models.spike_dhs._Branch.

__all__ = [
    "SPIKE_DHS_CELL",
    "SPIKE_DHS_LEVELS",
    "SPIKE_DHS_NEURON_DEFAULTS",
    "DGSUnit",
    "DHSAuxiliaryHead",
    "DHSCell",
    "SpikeDHS",
    "convert_spikingjelly_state_dict",
    "spike_dhs",
]

#: SpikeDHS's neurons (SpikingJelly's ``getSpikingNode``): LIF, τ = 1.25 without input
#: decay, threshold 0.5, hard reset to 0, reset detached, Dspike with alpha 3.
SPIKE_DHS_NEURON_DEFAULTS: dict[str, Any] = {
    "tau": 1.25,
    "decay_input": False,
    "v_threshold": 0.5,
    "v_reset": 0.0,
    "detach_reset": True,
    "surrogate_function": DSpike(alpha=3.0),
}

#: The searched path: each cell's level (0: the input's size, ``filter_multiplier``
#: channels per node; each level halves the side and doubles the channels).
SPIKE_DHS_LEVELS: tuple[int, ...] = (0, 0, 1, 1, 1, 2, 2, 2)

#: The searched cell: the states each node adds one unit on (0: ``s0``, 1: ``s1``, 2 on:
#: the nodes).
SPIKE_DHS_CELL: tuple[tuple[int, ...], ...] = ((0, 1), (0, 1), (2, 3))


def _resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Nearest-neighbour resize of ``[T, B, C, H, W]`` to ``size``."""
    out = F.interpolate(x.flatten(0, 1), list(size), mode="nearest")
    return out.unflatten(0, x.shape[:2])


def _rescaled(side: int, change: int) -> int:
    """A side one level down (``change = 1``: ``⌈side / 2⌉``) or up (``-1``: twice,
    ``2·side − 1`` for an odd side), as SpikingJelly's cells scale it."""
    if change == 1:
        return (side + 1) // 2
    return 2 * side - 1 if side % 2 else 2 * side


class DHSCell(nn.Module):
    """A SpikeDHS cell (module docstring): ``(s0, s1)`` → the concatenation of its last
    ``block_multiplier`` nodes, ``[T, B, block_multiplier · channels, H', W']``.

    Args:
        prev_prev_channels, prev_channels: the channels of ``s0`` and ``s1``.
        channels: each node's channels.
        change: the level change from ``s1``: 1 down (halves), 0 none, -1 up.
        cell_inputs: for each node, the states it adds (0 ``s0``, 1 ``s1``, then nodes).
        block_multiplier: how many of the last nodes make the output.
        make_neuron, search, dgs_step: as for :class:`DGSUnit`.
    """

    def __init__(
        self,
        prev_prev_channels: int,
        prev_channels: int,
        channels: int,
        change: int,
        cell_inputs: Sequence[Sequence[int]],
        block_multiplier: int,
        make_neuron: NeuronFactory,
        search: bool = True,
        dgs_step: float = 0.2,
    ) -> None:
        super().__init__()
        states = [prev_prev_channels, prev_channels] + [channels] * len(cell_inputs)
        self.cell_inputs = tuple(tuple(node) for node in cell_inputs)
        self.nodes = nn.ModuleList(
            DGSUnit([states[i] for i in node], channels, make_neuron, search, dgs_step)
            for node in self.cell_inputs
        )
        self.change, self.block_multiplier = change, block_multiplier

    def forward(self, s0: Tensor, s1: Tensor) -> Tensor:
        """``s0``, ``s1`` ``[T, B, C, H, W]`` → ``[T, B, block_multiplier · channels, H', W']``."""
        if self.change:
            s1 = _resize(
                s1, (_rescaled(s1.shape[3], self.change), _rescaled(s1.shape[4], self.change))
            )
        if s0.shape[3:] != s1.shape[3:]:
            s0 = _resize(s0, (s1.shape[3], s1.shape[4]))
        states = [s0, s1]
        for node, inputs in zip(self.nodes, self.cell_inputs, strict=True):
            states.append(node(*(states[i] for i in inputs)))
        return torch.cat(states[-self.block_multiplier :], dim=2)

    def extra_repr(self) -> str:
        return f"change={self.change}, cell_inputs={self.cell_inputs}"


class DHSAuxiliaryHead(nn.Module):
    """SpikeDHS's auxiliary classifier: ``LIF(avgpool 5x5 / 3)``, ``LIF(BN(conv1x1))`` to
    128, ``LIF(BN(conv2x2))`` to 768, ``BN1d(FC)``: ``[T, B, C, H, W]`` with ``H, W`` in
    8-10 (pooled to 2x2, convolved to 1x1) → ``[T, B, num_classes]``."""

    def __init__(self, in_channels: int, num_classes: int, make_neuron: NeuronFactory) -> None:
        super().__init__()
        self.pool = layers.AvgPool2d(5, 3, 0, count_include_pad=False)
        self.pool_neuron = make_neuron()
        self.conv1 = nn.Sequential(
            layers.Conv2d(in_channels, 128, 1, 1, 0), layers.BatchNorm2d(128)
        )
        self.neuron1 = make_neuron()
        self.conv2 = nn.Sequential(layers.Conv2d(128, 768, 2, 1, 0), layers.BatchNorm2d(768))
        self.neuron2 = make_neuron()
        self.classifier = nn.Sequential(
            layers.Linear(768, num_classes), layers.BatchNorm1d(num_classes)
        )

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, C, H, W]`` (``H, W`` in 8-10) → ``[T, B, num_classes]``."""
        if not all(8 <= side <= 10 for side in x.shape[3:]):
            raise ShapeError(
                "SpikeDHS's auxiliary head reads a map of 8x8 to 10x10 (pooled to 2x2, then "
                f"a 2x2 convolution to 1x1; a 32x32 input), got shape {tuple(x.shape)}"
            )
        x = self.pool_neuron(self.pool(x))
        x = self.neuron2(self.conv2(self.neuron1(self.conv1(x))))
        return self.classifier(x.flatten(2))


def _check_levels(levels: Any) -> tuple[int, ...]:
    ok = isinstance(levels, Sequence) and not isinstance(levels, (str, bytes)) and len(levels) > 0
    if ok:
        ok = all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in levels)
    if not ok:
        raise ConfigurationError(
            f"SpikeDHS: levels must be a non-empty sequence of levels 0, 1, 2, ..., got {levels!r}"
        )
    steps = [b - a for a, b in zip((0, *levels), levels)]
    if any(abs(step) > 1 for step in steps):
        raise ConfigurationError(
            f"SpikeDHS: levels {tuple(levels)} must start at 0 or 1 and change by at most "
            "one level from cell to cell"
        )
    return tuple(levels)


def _check_cell(cell_inputs: Any, block_multiplier: int) -> tuple[tuple[int, ...], ...]:
    nodes = cell_inputs if isinstance(cell_inputs, Sequence) else None
    if not nodes or isinstance(cell_inputs, (str, bytes)):
        raise ConfigurationError(
            f"SpikeDHS: cell_inputs must give each node's input states, got {cell_inputs!r}"
        )
    for j, node in enumerate(nodes):
        ok = isinstance(node, Sequence) and len(node) > 0
        ok = ok and all(isinstance(i, int) and not isinstance(i, bool) for i in node)
        if not ok or not all(0 <= i < 2 + j for i in node):
            raise ConfigurationError(
                f"SpikeDHS: cell_inputs[{j}] must name states before node {j} (0 s0, 1 s1, "
                f"2.. the nodes: 0 to {1 + j}), got {node!r}"
            )
    if block_multiplier > len(nodes):
        raise ConfigurationError(
            f"SpikeDHS: a cell outputs its last block_multiplier ({block_multiplier}) nodes, "
            f"but cell_inputs gives it {len(nodes)}"
        )
    return tuple(tuple(node) for node in nodes)


class SpikeDHS(nn.Module):
    """SpikeDHS (module docstring): ``[T, B, C, H, W]`` → ``[T, B, num_classes]``.

    Args:
        num_classes: output classes (100, SpikingJelly's).
        in_channels: input channels (3).
        levels: each cell's level (:data:`SPIKE_DHS_LEVELS`): starts at 0 or 1 and
            changes by at most one from cell to cell.
        filter_multiplier: the channels of a node at level 0 (48).
        block_multiplier: the nodes a cell outputs (3; the stem has
            ``block_multiplier · filter_multiplier`` channels).
        cell_inputs: each node's input states (:data:`SPIKE_DHS_CELL`).
        auxiliary_after: the cell whose output the auxiliary head reads (5, the sixth;
            None: no auxiliary head).
        surrogate_search: build the units' search copies (module docstring).
        dgs_step: the search's step on the surrogate's ``alpha`` (0.2).
        neuron, neuron_kwargs: the spiking neurons, over :data:`SPIKE_DHS_NEURON_DEFAULTS`.
        zero_init_residual: refused (no residual blocks).

    Raises:
        ConfigurationError: bad ``levels`` or ``cell_inputs``, a ``block_multiplier``
            above the nodes of a cell, an ``auxiliary_after`` that is no cell, a
            ``dgs_step`` that is not a positive number, a size that is not a positive
            integer, or ``zero_init_residual=True``.
    """

    def __init__(
        self,
        num_classes: int = 100,
        in_channels: int = 3,
        levels: Sequence[int] = SPIKE_DHS_LEVELS,
        filter_multiplier: int = 48,
        block_multiplier: int = 3,
        cell_inputs: Sequence[Sequence[int]] = SPIKE_DHS_CELL,
        auxiliary_after: int | None = 5,
        surrogate_search: bool = True,
        dgs_step: float = 0.2,
        neuron: NeuronSpec = "lif",
        neuron_kwargs: Mapping[str, Any] | None = None,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if zero_init_residual:
            raise ConfigurationError("SpikeDHS has no residual blocks to zero-init")
        for name, value in (("num_classes", num_classes), ("in_channels", in_channels),
                            ("filter_multiplier", filter_multiplier),
                            ("block_multiplier", block_multiplier)):  # fmt: skip
            check_positive_int(f"SpikeDHS: {name}", value)
        path = _check_levels(levels)
        nodes = _check_cell(cell_inputs, block_multiplier)
        if auxiliary_after is not None and (
            isinstance(auxiliary_after, bool)
            or not isinstance(auxiliary_after, int)
            or not 0 <= auxiliary_after < len(path)
        ):
            raise ConfigurationError(
                f"SpikeDHS: auxiliary_after must be a cell's index (0 to {len(path) - 1}) or "
                f"None, got {auxiliary_after!r}"
            )
        ok = isinstance(dgs_step, (int, float)) and not isinstance(dgs_step, bool)
        if not ok or not 0 < dgs_step < float("inf"):
            raise ConfigurationError(
                f"SpikeDHS: dgs_step must be a positive number, got {dgs_step!r}"
            )
        if not isinstance(surrogate_search, bool):
            raise ConfigurationError(
                f"SpikeDHS: surrogate_search must be True or False, got {surrogate_search!r}"
            )
        make = NeuronFactory(neuron, neuron_kwargs, SPIKE_DHS_NEURON_DEFAULTS)
        search, step = surrogate_search, float(dgs_step)
        self.in_channels, self.num_classes, self.levels = in_channels, num_classes, path
        self.auxiliary_after = auxiliary_after
        stem = block_multiplier * filter_multiplier
        self.stem = DGSUnit([in_channels], stem, make, search, step)
        out = [stem, stem]  # the outputs' channels, the stem's counted twice (s0 = s1)
        previous = 0
        cells = []
        for level in path:
            channels = filter_multiplier * 2**level
            cells.append(DHSCell(out[-2], out[-1], channels, level - previous, nodes,
                                 block_multiplier, make, search, step))  # fmt: skip
            out.append(block_multiplier * channels)
            previous = level
        self.cells = nn.ModuleList(cells)
        if auxiliary_after is not None:
            self.auxiliary = DHSAuxiliaryHead(out[2 + auxiliary_after], num_classes, make)
        # a plain step leaves the search copies and the auxiliary head without gradients
        self.ddp_find_unused_parameters = search or auxiliary_after is not None
        self.head_pool = layers.AdaptiveAvgPool2d(1)
        self.head_neuron = make()
        self.head = nn.Sequential(
            layers.Linear(out[-1], num_classes), layers.BatchNorm1d(num_classes)
        )

    def units(self) -> list[DGSUnit]:
        """The searched units (the stem's, then the cells' nodes in order)."""
        return [m for m in self.modules() if isinstance(m, DGSUnit)]

    def architecture_parameters(self) -> list[nn.Parameter]:
        """The units' ``dgs_alpha`` (the surrogate search's weights)."""
        return [unit.dgs_alpha for unit in self.units() if unit.search]

    def weight_parameters(self) -> list[nn.Parameter]:
        """Every parameter but :meth:`architecture_parameters`."""
        arch = {id(p) for p in self.architecture_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    def dgs_init_stage(self) -> None:
        """:meth:`DGSUnit.dgs_init_stage` of every unit, each checked before any starts
        (a refused call starts none).

        Raises:
            ConfigurationError: as the units' (naming the unit's index).
        """
        units = self.units()
        for i, unit in enumerate(units):
            try:
                unit._lower_alpha()
            except ConfigurationError as exc:
                raise ConfigurationError(f"unit {i} of {len(units)}: {exc}") from exc
        for unit in units:
            unit.dgs_init_stage()

    def dgs_finish_stage(self, directions: Sequence[int] | None = None) -> None:
        """:meth:`DGSUnit.dgs_finish_stage` of every unit, with its direction from
        ``directions`` (one per unit, :meth:`units` order) or, when None, its own
        largest weight. Every unit's is checked before any changes (a refused call
        leaves the stage running).

        Raises:
            ConfigurationError: ``directions`` not one per unit, or as the units' (naming
                the unit's index).
        """
        units = self.units()
        if directions is not None and len(directions) != len(units):
            raise ConfigurationError(
                f"SpikeDHS: directions must give one direction per unit ({len(units)}), "
                f"got {len(directions)}"
            )
        chosen = []
        for i, unit in enumerate(units):
            try:
                chosen.append(unit._stage_direction(None if directions is None else directions[i]))
            except ConfigurationError as exc:
                raise ConfigurationError(f"unit {i} of {len(units)}: {exc}") from exc
        for unit, direction in zip(units, chosen, strict=True):
            unit.dgs_finish_stage(direction)

    def dgs_freeze_weights(self) -> None:
        """No parameter requires a gradient (SpikingJelly's ``dgs_freeze_weights``: then
        :meth:`dgs_init_stage` lets the units' parameters learn again)."""
        for p in self.parameters():
            p.requires_grad_(False)

    def dgs_unfreeze_weights(self) -> None:
        """Every parameter requires a gradient again."""
        for p in self.parameters():
            p.requires_grad_(True)

    def _features(self, x: Tensor, auxiliary: bool) -> tuple[Tensor, Tensor | None]:
        check_input(x, "SpikeDHS", "[T, B, C, H, W]", 5, self.in_channels)
        prev_prev = prev = self.stem(x)
        aux = None
        for i, cell in enumerate(self.cells):
            prev_prev, prev = prev, cell(prev_prev, prev)
            if auxiliary and i == self.auxiliary_after:
                aux = self.auxiliary(prev)
        out = self.head(self.head_neuron(self.head_pool(prev)).flatten(2))
        return out, aux

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, C, H, W]`` → ``[T, B, num_classes]`` (the auxiliary head is not run)."""
        return self._features(x, False)[0]

    def forward_with_auxiliary(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``[T, B, C, H, W]`` → the logits and the auxiliary head's, each
        ``[T, B, num_classes]`` (SpikingJelly's training-mode output, before its mean
        over time).

        Raises:
            ConfigurationError: a model built with ``auxiliary_after=None``.
            ShapeError: an input whose map at the auxiliary head is not 8x8 to 10x10.
        """
        if self.auxiliary_after is None:
            raise ConfigurationError("SpikeDHS was built without an auxiliary head")
        out, aux = self._features(x, True)
        assert aux is not None
        return out, aux


@register_model("spike_dhs")
def spike_dhs(**kwargs: Any) -> SpikeDHS:
    """SpikeDHS's searched CIFAR network (SpikingJelly 2.0's ``model.spike_dhs.SpikeDHS``
    with its paper's ``args``: 8 cells on levels 0, 0, 1, 1, 1, 2, 2, 2, 48 channels per
    node at level 0, cells of 3 nodes, 100 classes, the auxiliary head after the sixth
    cell, the surrogate search's copies); kwargs of :class:`SpikeDHS`."""
    return SpikeDHS(**kwargs)


_UNIT = re.compile(  # the stem's conv_m, ..., a cell unit's conv1_m / conv2_m, ...
    r"(?:feature\.stem0\.(conv|bn)|feature\.cells\.(\d+)\._ops\.(\d+)\.(conv|bn)([12]))"
    r"_([msb])\.(.+)"
)
_ALPHA = re.compile(r"(?:feature\.stem0|feature\.cells\.(\d+)\._ops\.(\d+))\.dgs_alpha")
_HEAD = {
    "feature.auxiliary_head.conv1.conv.": "auxiliary.conv1.0.",
    "feature.auxiliary_head.conv1.bn.": "auxiliary.conv1.1.",
    "feature.auxiliary_head.conv2.conv.": "auxiliary.conv2.0.",
    "feature.auxiliary_head.conv2.bn.": "auxiliary.conv2.1.",
    "feature.auxiliary_head.classifier.linear.": "auxiliary.classifier.0.",
    "feature.auxiliary_head.classifier.bn.0.": "auxiliary.classifier.1.",
    "classifier.linear.": "head.0.",
    "classifier.bn.0.": "head.1.",
}
_BRANCH = {"m": 0, "s": 1, "b": 2}


def _unit_prefix(cell: str | None, op: str | None) -> str:
    return "stem" if cell is None else f"cells.{cell}.nodes.{op}"


def convert_spikingjelly_state_dict(
    state: Mapping[str, Tensor], surrogate_search: bool = True
) -> dict[str, Tensor]:
    """SpikingJelly 2.0's ``model.spike_dhs.SpikeDHS`` state dict (or any mapping of its
    names to tensors, such as its gradients) under :class:`SpikeDHS`'s names.

    A unit's ``conv{i}_{k}`` / ``bn{i}_{k}`` (the stem's ``conv_{k}`` / ``bn_{k}``) become
    ``branches.{K}.convs.{i-1}`` / ``branches.{K}.norms.{i-1}``, with ``K`` 0 for the
    main branch ``m``, 1 for ``s`` (alpha lowered) and 2 for ``b`` (raised); a cell's
    ``_ops.{j}`` is ``cells.{c}.nodes.{j}``; ``dgs_alpha`` keeps its name (and order);
    the auxiliary head's and the classifier's ``conv``/``linear`` and ``bn`` become the
    ``0`` and ``1`` of their sequences. With ``surrogate_search=False`` the search copies
    and ``dgs_alpha`` are left out (for a model built so).

    Raises:
        ConfigurationError: a name that is not SpikingJelly's SpikeDHS's.
    """
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        unit = _UNIT.fullmatch(key)
        alpha = _ALPHA.fullmatch(key)
        if unit is not None:
            stem_kind, cell, op, cell_kind, index, branch, rest = unit.groups()
            if branch != "m" and not surrogate_search:
                continue
            part = "convs" if (stem_kind or cell_kind) == "conv" else "norms"
            slot = int(index) - 1 if index else 0
            new = f"{_unit_prefix(cell, op)}.branches.{_BRANCH[branch]}.{part}.{slot}.{rest}"
        elif alpha is not None:
            if not surrogate_search:
                continue
            new = f"{_unit_prefix(*alpha.groups())}.dgs_alpha"
        else:
            old = next((o for o in _HEAD if key.startswith(o)), None)
            if old is None:
                raise ConfigurationError(
                    f"convert_spikingjelly_state_dict: {key!r} is not a name of SpikingJelly's "
                    "model.spike_dhs.SpikeDHS"
                )
            new = _HEAD[old] + key.removeprefix(old)
        out[new] = value
    return out
