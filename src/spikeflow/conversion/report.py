"""What a conversion did to each module and call: the report and the conversion error."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from spikeflow.errors import ConfigurationError

__all__ = ["Action", "ConversionError", "ConversionReport", "ReportEntry"]

#: ``converted``: an activation became a spiking neuron; ``folded``: a batch norm was
#: folded into the layer before it; ``replaced``: a module was swapped for its spiking
#: counterpart (max pool); ``kept``: runs unchanged on every time step (exact for
#: per-sample affine maps); ``unverified``: kept, but spikeflow does not know whether it
#: is affine; ``unconverted``: left as is although the SNN needs it converted (the SNN
#: is wrong there); ``untraced``: torch.fx could not trace it, its children were
#: converted one by one.
Action = Literal["converted", "folded", "replaced", "kept", "unverified", "unconverted", "untraced"]


class ConversionError(ConfigurationError):
    """The network has parts that cannot be converted; the message names them."""


@dataclass(frozen=True)
class ReportEntry:
    """One module or call of the network and what the conversion did with it.

    Attributes:
        name: qualified module name, or ``<module>.<node>`` for a traced function call.
        source: what it was (``nn.ReLU``, ``torch.nn.functional.relu``, ``QCFS(L=8)``...).
        action: see :data:`Action`.
        detail: what it became, or why not.
    """

    name: str
    source: str
    action: Action
    detail: str = ""


@dataclass
class ConversionReport:
    """Every decision of one conversion, in graph order."""

    entries: list[ReportEntry] = field(default_factory=list)

    def add(self, name: str, source: str, action: Action, detail: str = "") -> None:
        """Record one decision."""
        self.entries.append(ReportEntry(name, source, action, detail))

    def by_action(self, action: Action) -> list[ReportEntry]:
        """The entries with this action."""
        return [e for e in self.entries if e.action == action]

    @property
    def converted(self) -> list[ReportEntry]:
        """Activations turned into spiking neurons."""
        return self.by_action("converted")

    @property
    def unconverted(self) -> list[ReportEntry]:
        """Parts left as they were although the SNN needs them converted."""
        return self.by_action("unconverted")

    @property
    def ok(self) -> bool:
        """True when nothing was left unconverted."""
        return not self.unconverted

    def refuse_unconverted(self, model: str, target: str, advice: str) -> None:
        """Raise a :class:`ConversionError` listing the parts of ``model`` (its class
        name) left unconverted, if any: "cannot convert N part(s) of <model> to
        <target>: ... <advice>"."""
        if self.unconverted:
            listed = "; ".join(f"{e.name} ({e.source}): {e.detail}" for e in self.unconverted)
            raise ConversionError(
                f"cannot convert {len(self.unconverted)} part(s) of {model} to {target}: "
                f"{listed}. {advice}"
            )

    def __str__(self) -> str:
        width_name = max([len(e.name) for e in self.entries] + [4])
        width_src = max([len(e.source) for e in self.entries] + [6])
        lines = [f"{'name':<{width_name}}  {'source':<{width_src}}  {'action':<11}  detail"]
        for e in self.entries:
            lines.append(
                f"{e.name:<{width_name}}  {e.source:<{width_src}}  {e.action:<11}  {e.detail}"
            )
        counts = {}
        for e in self.entries:
            counts[e.action] = counts.get(e.action, 0) + 1
        lines.append(", ".join(f"{n} {a}" for a, n in counts.items()))
        return "\n".join(lines)
