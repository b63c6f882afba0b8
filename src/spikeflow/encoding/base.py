"""Public bases for encoders of your own (SpikingJelly's ``StatelessEncoder`` and
``StatefulEncoder``), with spikeflow's step modes, checks and streaming."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from spikeflow._checks import check_int
from spikeflow.base import StepMode, StepModule
from spikeflow.encoding._common import CountingEncoder
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError

__all__ = ["StatefulEncoder", "StatelessEncoder"]


class StatelessEncoder(StepModule, nn.Module):
    """Base of an encoder whose every step is computed afresh from the input (no state
    from step to step, so single-step calls need no streaming). Implement
    :meth:`encode_step`, one step ``[*x.shape]`` from ``x``::

        class Threshold(StatelessEncoder):
            def encode_step(self, x):
                return (x > 0.5).to(x.dtype)

    Shapes: ``'s'``: ``forward(x)`` is ``encode_step(x)``; ``'m'``: ``[T, *x.shape]``,
    ``T`` calls of ``encode_step`` stacked (a random code draws each step afresh).
    SpikingJelly's ``StatelessEncoder(step_mode)`` has no ``T``: its subclasses
    override ``forward`` (which still works here: ``forward`` is then yours).

    Args:
        T: steps of a multi-step call (``>= 1``); required for ``step_mode='m'``.
        step_mode: ``'m'`` (default) or ``'s'``.

    Raises:
        ConfigurationError: ``T`` not an integer ``>= 1``, or a multi-step call without
            ``T``.
    """

    def __init__(self, T: int | None = None, step_mode: StepMode = "m") -> None:
        super().__init__()
        self.T = None if T is None else check_int("T", T, 1)
        self.step_mode = step_mode

    def encode_step(self, x: Tensor) -> Tensor:
        """One time step of spikes for ``x`` (to be implemented by the subclass)."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement encode_step(x) (one step of spikes)"
        )

    def forward(self, x: Tensor) -> Tensor:
        """``encode_step(x)`` (``'s'``), or ``T`` of them stacked (``'m'``)."""
        if self.step_mode == "s":
            return self.encode_step(x)
        if self.T is None:
            raise ConfigurationError(
                f"{type(self).__name__} in multi-step mode needs T (the number of steps): "
                f"pass T=... to the constructor, or use step_mode='s'"
            )
        return torch.stack([self.encode_step(x) for _ in range(self.T)])

    def extra_repr(self) -> str:
        return f"T={self.T}, step_mode={self.step_mode!r}"


class StatefulEncoder(CountingEncoder):
    """Base of an encoder whose output at step ``t`` is step ``t mod T`` of a spike train
    ``[T, *]`` computed from the input (SpikingJelly's ``StatefulEncoder``). Implement
    :meth:`encode`, the whole train::

        class Latency(StatefulEncoder):
            def encode(self, x):
                t_f = ((self.T - 1) * (1 - x)).round()
                steps = torch.arange(self.T, device=x.device).view(-1, *[1] * x.dim())
                return (steps == t_f).to(x.dtype)

    Shapes: ``'m'``: ``encode(x)``, ``[T, *]``; ``'s'`` (needs streaming, as every
    encoder with state): the ``k``-th call returns step ``k mod T`` of the train of that
    call's ``x``, the counter carried as ``{'t': k mod T}`` (``reset()`` goes back to
    step 0; a streaming call with another input shape raises a StateError). SpikingJelly
    encodes the first call's ``x`` and replays it, ignoring later inputs until
    ``reset()``; here every call's own input is encoded (``encode`` runs once per
    single-step call).

    Args:
        T: the period, steps of a multi-step call (``>= 1``).
        step_mode: ``'m'`` (default) or ``'s'``.

    Raises:
        ConfigurationError: ``T`` not an integer ``>= 1``.
        ShapeError: (when called) ``encode`` returned no ``[T, ...]`` tensor.
        DTypeError: (when called) the input is not a tensor.
    """

    def __init__(self, T: int, step_mode: StepMode = "m") -> None:
        super().__init__(step_mode)
        self.T = check_int("T", T, 1)

    def encode(self, x: Tensor) -> Tensor:
        """The whole spike train ``[T, *]`` for ``x`` (to be implemented by the subclass)."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement encode(x) (the train [T, ...])"
        )

    def _check_input(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor):
            raise DTypeError(f"{type(self).__name__} expects a torch.Tensor; got {type(x)}")
        return x

    def _encode(self, x: Tensor, steps: Tensor) -> Tensor:
        train = self.encode(x)
        if not isinstance(train, Tensor) or train.dim() < 1 or train.shape[0] != self.T:
            got = tuple(train.shape) if isinstance(train, Tensor) else type(train).__name__
            raise ShapeError(
                f"{type(self).__name__}.encode must return the train [T, ...] with "
                f"T = {self.T}, got {got}"
            )
        return train[steps.to(train.device)]

    def extra_repr(self) -> str:
        return f"T={self.T}, step_mode={self.step_mode!r}"
