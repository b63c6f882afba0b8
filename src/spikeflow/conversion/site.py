"""The placeholder a conversion puts where the SNN will differ from the ANN.

While the ANN is traced, rewritten and calibrated, each activation and max pool to be
replaced is a :class:`Site`: it runs the ANN's part (and records its activations for
the threshold), and :func:`~spikeflow.conversion.convert` then swaps it for the spiking
part.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from spikeflow.conversion._checks import input_name_of, single_input
from spikeflow.conversion.calibrate import ActivationObserver
from spikeflow.conversion.report import ConversionError
from spikeflow.conversion.rules import ConversionRule

__all__ = ["Site"]


class Site(nn.Module):
    """Placeholder for a part that changes in the SNN; runs the ANN part meanwhile.

    Args:
        kind: ``'activation'`` or ``'maxpool'``.
        name: the report name of the part (module path, or ``<module>.<node>``).
        source: what it was (``nn.ReLU``, ``torch.nn.functional.relu``, ...).
        ann: the ANN's module it runs until replaced (an ``nn.ReLU``, or a subclass
            that keeps its forward, runs as ``clamp_min(x, 0)``, which leaves an
            in-place ReLU's input alone; a subclass with a forward of its own, which a
            rule keyed on it makes a site, runs that forward).
        observer: records the activations for the threshold (None for QCFS and pools).
        write_back: write the result into the input, as an in-place relu of an untraced
            forward did (what reads the input afterwards sees the rectified values).
        rule: the :class:`~spikeflow.conversion.rules.ConversionRule` that replaces it;
            a callable ``rule.observe`` gives what the observer records.
    """

    def __init__(
        self,
        kind: str,
        name: str,
        source: str,
        ann: nn.Module,
        observer: ActivationObserver | None,
        write_back: bool = False,
        rule: ConversionRule | None = None,
    ) -> None:
        super().__init__()
        self.kind, self.site_name, self.source = kind, name, source
        self.report_index = -1
        self.ann = ann
        self.observer = observer
        self.rule = rule
        self.calls = 0  # during calibration
        self.shared = 1  # calls per forward pass (more than 1: a module called twice)
        #: An in-place relu in an untraced forward, which may read its input afterwards:
        #: the result is written into the input, as the ANN's relu did.
        self.write_back = write_back
        #: False while a run only checks the graph (no counting, no recording).
        self.observing = True
        #: The keyword the ANN module takes its input by (``act(input=h)``).
        self.input_name = input_name_of(ann)

    def forward(self, *inputs: object, **keywords: object) -> Tensor:
        """The ANN part's output (recorded by the observer), counted in :attr:`calls`.
        The input is given positionally or by the ANN module's keyword
        (:attr:`input_name`, ``input`` for torch's activations).

        Raises:
            ConversionError: the module is called with other than its one input (a rule
                is for a one-input activation; its spiking part gets one signal).
        """
        x = single_input(inputs, keywords, self.input_name)
        if not isinstance(x, Tensor):
            self.refuse_inputs(len(inputs), list(keywords))
        assert isinstance(x, Tensor)
        relu = type(self.ann).forward is nn.ReLU.forward
        y = torch.clamp_min(x, 0.0) if relu else self.ann(x)
        if self.observing:
            self.calls += 1
            observe = self.rule.observe if self.rule is not None else "output"
            if self.observer is not None and callable(observe):
                self.observer(self._observed(observe, x, y), x)
            elif self.observer is not None:
                y = self.observer(y, x)
        return x.copy_(y) if self.write_back else y

    def refuse_inputs(self, positional: int, keywords: list[str]) -> None:
        """Raise: the module is called with ``positional`` inputs and ``keywords``, not
        the one tensor input a site (and its spiking part) takes."""
        rule = f"rule {self.rule.name!r} at " if self.rule is not None else ""
        given = [f"{positional} positional"] + [f"{k}=" for k in keywords]
        raise ConversionError(
            f"{rule}'{self.site_name}' ({self.source}): the module is called with "
            f"{', '.join(given)} argument(s); a conversion rule is for an activation "
            f"of one tensor input, given positionally or as {self.input_name}= (its "
            "spiking part gets one signal): compute the other inputs' part in modules "
            "of their own, or give that module no rule"
        )

    def _observed(
        self, observe: Callable[[Tensor, Tensor], Tensor], x: Tensor, y: Tensor
    ) -> Tensor:
        """What a rule's ``observe(x, y)`` gives, checked to be a tensor."""
        assert self.rule is not None
        values = observe(x, y)
        if not isinstance(values, Tensor):
            raise ConversionError(
                f"rule {self.rule.name!r} at '{self.site_name}' ({self.source}): observe(x, y) "
                f"returned {type(values).__name__}, not a tensor of the values to calibrate on"
            )
        return values
