"""What :func:`spikeflow.profiling.profile_layers` reports: a :class:`LayerProfile` per
layer, the :class:`MemoryCategories` of the step and the :class:`ProfileReport` that
holds them, prints them as a table and gives them as plain values.
:mod:`spikeflow.profiling` (which measures them) re-exports the three classes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from spikeflow.errors import ConfigurationError

__all__ = ["LayerProfile", "MemoryCategories", "ProfileReport"]


@dataclass(frozen=True)
class LayerProfile:
    """One layer's share of a training step (see :mod:`spikeflow.profiling`).

    Attributes:
        name: the module's name in ``model.named_modules()`` (``"(other)"``: what no
            profiled layer did; ``"(model)"``: the model itself).
        type: the module's class name.
        calls: forward calls in one step.
        forward_s: seconds of forward per step, the layers inside it included.
        backward_s: seconds of its autograd nodes per step, the layers inside it
            included.
        saved_bytes: bytes autograd keeps for the backward pass from the layer's
            calls (each storage once; parameters and buffers not counted).
        output_bytes: bytes of the tensors its calls return.
        backward_nodes: the names of its own autograd nodes (not those of layers
            inside it), sorted, one entry per node, of the last step.
        depth: how many profiled layers contain it.
    """

    name: str
    type: str
    calls: int
    forward_s: float
    backward_s: float
    saved_bytes: int
    output_bytes: int
    backward_nodes: tuple[str, ...]
    depth: int


@dataclass(frozen=True)
class MemoryCategories:
    """Bytes by category after the backward pass of the last step (SpikingJelly's
    ``CategoryMemoryProfiler``'s categories), each storage counted once.

    Attributes:
        parameters: the model's parameters.
        gradients: their ``.grad`` tensors.
        buffers: the model's buffers (running statistics, ...).
        optimizer_state: the tensors the optimizer keeps for these parameters (0
            without an optimizer, or before its first step).
        saved_activations: what autograd kept for the backward pass (all layers and
            ``(other)``; parameters and buffers not counted).
    """

    parameters: int
    gradients: int
    buffers: int
    optimizer_state: int
    saved_activations: int

    @property
    def total(self) -> int:
        """The sum of the categories."""
        return (
            self.parameters
            + self.gradients
            + self.buffers
            + self.optimizer_state
            + self.saved_activations
        )


@dataclass(frozen=True)
class ProfileReport:
    """What :func:`profile_layers` measured.

    Attributes:
        layers: one :class:`LayerProfile` per profiled layer that ran, in the order
            of their first call, then ``(other)``.
        categories: the memory by category.
        forward_s, backward_s: seconds of the whole forward pass (the loss included)
            and of the whole backward pass, per step.
        repeat, warmup: steps measured and steps run before.
        device: the device the model ran on.
        compiled: whether the model was compiled (one row for the whole model).
    """

    layers: tuple[LayerProfile, ...]
    categories: MemoryCategories
    forward_s: float
    backward_s: float
    repeat: int
    warmup: int
    device: str
    compiled: bool = False

    def layer(self, name: str) -> LayerProfile:
        """The row of the layer ``name``; a ConfigurationError listing the rows if none."""
        for row in self.layers:
            if row.name == name:
                return row
        raise ConfigurationError(
            f"no profiled layer named {name!r}; the rows are {[r.name for r in self.layers]}"
        )

    def to_dict(self) -> dict[str, Any]:
        """The report as plain Python values (JSON-serialisable)."""
        out = asdict(self)
        out["layers"] = [
            {**asdict(r), "backward_nodes": list(r.backward_nodes)} for r in self.layers
        ]
        out["categories"]["total"] = self.categories.total
        return out

    def table(self, sort_by: str | None = None) -> str:
        """A printable table: a row per layer (nested layers indented), the whole step,
        and the categories. ``sort_by`` is a numeric column (``"forward_s"``,
        ``"backward_s"``, ``"saved_bytes"``, ``"output_bytes"``, ``"calls"``), largest
        first; ``None`` keeps the order of the calls."""
        rows = list(self.layers)
        if sort_by is not None:
            keys = ("forward_s", "backward_s", "saved_bytes", "output_bytes", "calls")
            if sort_by not in keys:
                raise ConfigurationError(f"sort_by must be one of {keys}, got {sort_by!r}")
            rows.sort(key=lambda r: getattr(r, sort_by), reverse=True)
        names = [("  " * r.depth if sort_by is None else "") + r.name for r in rows]
        width = max([len(n) for n in names] + [len("layer")])
        tw = max([len(r.type) for r in rows] + [len("type")])
        head = (
            f"{'layer':<{width}}  {'type':<{tw}}  {'calls':>5}  {'forward ms':>10}  "
            f"{'backward ms':>11}  {'saved':>10}  {'output':>10}"
        )
        steps = f"{self.repeat} step{'s' if self.repeat != 1 else ''}"
        lines = [f"layer-wise profile ({self.device}, mean of {steps})", head]
        lines.append("-" * len(head))
        for n, r in zip(names, rows):
            lines.append(
                f"{n:<{width}}  {r.type:<{tw}}  {r.calls:>5}  {r.forward_s * 1e3:>10.3f}  "
                f"{r.backward_s * 1e3:>11.3f}  {_size(r.saved_bytes):>10}  "
                f"{_size(r.output_bytes):>10}"
            )
        lines.append("-" * len(head))
        lines.append(
            f"{'whole step':<{width}}  {'':<{tw}}  {'':>5}  {self.forward_s * 1e3:>10.3f}  "
            f"{self.backward_s * 1e3:>11.3f}  {_size(self.categories.saved_activations):>10}"
        )
        c = self.categories
        lines.append("")
        lines.append("memory by category")
        for label, value in (
            ("parameters", c.parameters),
            ("gradients", c.gradients),
            ("buffers", c.buffers),
            ("optimizer state", c.optimizer_state),
            ("saved activations", c.saved_activations),
            ("total", c.total),
        ):
            lines.append(f"  {label:<18} {_size(value):>10}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _size(n: int) -> str:
    """Bytes in B, KiB, MiB or GiB."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} B"
