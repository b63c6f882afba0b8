"""The multi-level spike count (SpikingJelly 2.0's ``MultiLevelSpikeCount``): a count forward."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from spikeflow._second_order_flag import refuse_compiled_second_order
from spikeflow.errors import ConfigurationError
from spikeflow.surrogate.base import (
    Surrogate,
    _mask,
    _SurrogateSpike,
    _SurrogateSpikeWithTangent,
    forward_ad_active,
)


def _spike_count(x: Tensor, params: dict) -> Tensor:
    """``round(clip(x, 0, D))`` (ties to even, as ``torch.round``), in ``x``'s dtype."""
    return torch.round(torch.clamp(x, 0.0, params["max_spike_count"]))


class _SpikeCount(_SurrogateSpike):
    """:class:`_SurrogateSpike` with the count forward of :class:`MultiLevelSpikeCount`."""

    @staticmethod
    def forward(x: Tensor, derivative: Callable[..., Tensor], params: dict, strict: bool) -> Tensor:
        return _spike_count(x, params)


class _SpikeCountWithTangent(_SurrogateSpikeWithTangent):
    """:class:`_SurrogateSpikeWithTangent` with the count forward (forward-mode AD)."""

    @staticmethod
    def forward(x: Tensor, derivative: Callable[..., Tensor], params: dict, strict: bool) -> Tensor:
        return _spike_count(x, params)


class MultiLevelSpikeCount(Surrogate):
    """Multi-level spike count (SpikingJelly 2.0's ``MultiLevelSpikeCount``): forward
    ``round(clip(x, 0, D))``, a count in ``{0, 1, ..., D}`` (ties to even, as
    ``torch.round``), not a Heaviside step; backward a rectangular straight-through
    estimator, derivative ``1[lower <= x <= upper]``; primitive ``clip(x, 0, D)``
    (``spiking=False``). The integer LIF applies it to ``H/θ``
    (:class:`~spikeflow.neurons.ILIFNode`, whose ``max_spike_count`` and ``grad_window``
    are these). Given to a declared neuron (``LIFNode(surrogate_function=...)``) it
    counts ``H - θ``, as in SpikingJelly, on the reference loop: the fused kernels fire
    by a Heaviside step (``backend="auto"`` falls back with a warning; ``"cpu"`` and
    ``"triton"`` refuse it).

    Args:
        max_spike_count: ``D``, the largest count, an integer >= 1 (default 4, I-LIF's;
            SpikingJelly has none).
        spiking: the count forward (default), or the primitive ``clip(x, 0, D)``.
        grad_window: ``(lower, upper)``, where the gradient passes, with
            ``lower <= upper`` (default ``(0, D)``); stored as the parameters
            ``grad_min`` and ``grad_max``.

    Raises:
        ConfigurationError: ``max_spike_count`` not an integer >= 1, a ``grad_window``
            that is not two finite numbers with ``lower <= upper``, ``strict=True`` at a
            call (a count has no strict form).
    """

    heaviside_forward = False

    def __init__(
        self,
        max_spike_count: int = 4,
        spiking: bool = True,
        grad_window: tuple[float, float] | None = None,
    ) -> None:
        name = type(self).__name__
        if (
            isinstance(max_spike_count, bool)
            or not isinstance(max_spike_count, int)
            or max_spike_count < 1
        ):
            raise ConfigurationError(
                f"{name}: max_spike_count must be an integer >= 1, got {max_spike_count!r}"
            )
        if grad_window is None:
            grad_window = (0.0, float(max_spike_count))
        if not isinstance(grad_window, (tuple, list)) or len(grad_window) != 2:
            raise ConfigurationError(
                f"{name}: grad_window must be (lower, upper), got {grad_window!r}"
            )
        super().__init__(spiking=spiking, max_spike_count=max_spike_count,
                         grad_min=grad_window[0], grad_max=grad_window[1])  # fmt: skip
        if not self.grad_min <= self.grad_max:
            raise ConfigurationError(
                f"{name}: grad_window must have lower <= upper, got "
                f"({self.grad_min:g}, {self.grad_max:g})"
            )

    @staticmethod
    def derivative(x: Tensor, max_spike_count: float, grad_min: float, grad_max: float) -> Tensor:
        return _mask((x >= grad_min) & (x <= grad_max), x)

    @staticmethod
    def primitive(x: Tensor, max_spike_count: float, grad_min: float, grad_max: float) -> Tensor:
        return torch.clamp(x, 0.0, max_spike_count)

    def forward(self, x: Tensor, strict: bool = False) -> Tensor:
        """Counts ``round(clip(x, 0, D))`` with the straight-through gradient, or the
        primitive (``spiking=False``)."""
        if strict:
            raise ConfigurationError(
                f"{type(self).__name__} counts round(clip(x, 0, D)): it has no strict form "
                "(strict_firing=True)"
            )
        if not self.spiking:
            return type(self).primitive(x, **self.params)
        count = _SpikeCountWithTangent if forward_ad_active() else _SpikeCount
        params = self.params
        if torch.compiler.is_compiling():  # specialised, as Surrogate.forward's
            refuse_compiled_second_order()
            params = {name: float(value) for name, value in params.items()}
        return count.apply(x, type(self).derivative, params, strict)

    def extra_repr(self) -> str:
        parts = [
            f"max_spike_count={int(self.max_spike_count)}",
            f"grad_window=({self.grad_min:g}, {self.grad_max:g})",
        ]
        if not self.spiking:
            parts.append("spiking=False")
        return ", ".join(parts)
