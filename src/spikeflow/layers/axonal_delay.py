"""Learnable axonal delays: one trainable, real-valued delay per neuron (or channel), as
Lava-DL's ``slayer.axon.Delay`` and the ``delay=True`` option of its blocks (Shrestha
and Orchard, NeurIPS 2018, "SLAYER: Spike Layer Error Reassignment in Time").

Neuron ``i`` sends its input on ``d_i`` steps later, ``d_i`` in ``[0, max_delay]``.
Write ``d = n + f`` with ``n = ⌊d⌋`` and ``0 <= f < 1``; with ``x[s] = 0`` before the
first step:

* ``interpolate=True`` (default): linear interpolation between the two neighbouring
  whole delays, ``y[t] = (1 − f) x[t − n] + f x[t − n − 1]``, differentiable in ``d``
  with ``∂y[t]/∂d = x[t − n − 1] − x[t − n]`` (a one-sided slope at whole ``d``).
* ``interpolate=False``: Lava-DL's forward, ``y[t] = x[t − n]`` (spikes stay spikes; what
  a chip runs, Lava-DL exports ``⌊d⌋``), with the same delay gradient
  ``x[t − n − 1] − x[t − n]``: Lava-DL's ``-(y[t] − y[t − 1])``, the backward difference
  of the delayed output, which is the slope of that interpolation. The input's gradient
  is the output's, shifted back by ``n``.

Lava-DL truncates ``d`` to ``n`` in training and inference alike and clamps the
parameter into ``[0, max_delay]`` in place at every call. Here a call reads the delays
clamped (the parameter is left alone, so a graph of an earlier call stays valid) and
:func:`~spikeflow.layers.clamp_delays` clamps the parameters after an optimizer step
(``spikeflow train`` does), which together give Lava-DL's numbers.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from spikeflow._checks import check_flag, check_int, check_real
from spikeflow.base import MemoryModule, StepMode
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.layers._time import check_step_dims

__all__ = ["AxonalDelay", "axonal_delay"]

DelayInit = float | Sequence[float] | Tensor | Callable[[Tensor], object] | None


def axonal_delay(
    x: Tensor,
    delay: Tensor,
    max_delay: int,
    interpolate: bool = True,
    history: Tensor | None = None,
) -> Tensor:
    """``x`` (``[T, B, *delay.shape, ...]``) with step ``t`` of neuron ``i`` read from
    ``t − d_i`` (see the module docstring; ``d`` clamped into ``[0, max_delay]``).

    Args:
        x: the input sequence, time-major.
        delay: the delays in steps, one per neuron or channel; its shape must equal the
            dims of ``x`` after ``[T, B]`` that it covers (the rest share its delays).
        max_delay: the largest delay.
        interpolate: interpolate linearly between whole delays (else Lava-DL's
            truncation with its delay gradient).
        history: the last ``max_delay + 1`` steps before ``x`` (``[max_delay + 1, B,
            ...]``); ``None``: zeros.

    Raises:
        ConfigurationError: ``max_delay`` is not an integer ``>= 0``.
        ShapeError: ``x`` does not have the delays' dims after ``[T, B]``, or a
            ``history`` of the wrong shape.
    """
    max_delay = check_int("axonal_delay: max_delay", max_delay, 0)
    steps = x.shape[0]
    if x.dim() < 2 + delay.dim() or tuple(x.shape[2 : 2 + delay.dim()]) != tuple(delay.shape):
        raise ShapeError(
            f"axonal_delay: delays of shape {tuple(delay.shape)} need an input "
            f"[T, B, {', '.join(map(str, delay.shape))}, ...]; got shape {tuple(x.shape)}"
        )
    depth = max_delay + 1
    if history is None:
        history = x.new_zeros(depth, *x.shape[1:])
    elif tuple(history.shape) != (depth, *x.shape[1:]):
        raise ShapeError(
            f"axonal_delay: history must have shape {(depth, *x.shape[1:])}, got "
            f"{tuple(history.shape)}"
        )
    padded = torch.cat([history, x])
    d = delay.clamp(0, max_delay)
    whole = d.detach().floor()
    frac = (d - whole).to(x.dtype)  # ∂frac/∂d = 1
    view = (1, 1, *delay.shape) + (1,) * (x.dim() - 2 - delay.dim())
    t = torch.arange(depth, depth + steps, device=x.device).view(-1, *(1,) * (x.dim() - 1))
    index = t - whole.long().view(view)  # padded position of x[t − n]
    near = padded.gather(0, index.expand_as(x))
    far = padded.gather(0, (index - 1).expand_as(x))  # x[t − n − 1]
    frac = frac.view(view)
    if not interpolate:  # value 0, gradient 1: y = x[t − n], ∂y/∂d = far − near
        frac = frac - frac.detach()
    return near + frac * (far - near)


class AxonalDelay(MemoryModule):
    """A learnable delay per neuron or channel (see the module docstring).

    Input ``[T, B, *shape, ...]`` (multi-step) or ``[B, *shape, ...]`` (single-step):
    ``shape`` covers the dims after the batch it names, the dims after it share its
    delays (``AxonalDelay(C, ...)`` on ``[T, B, C, H, W]`` has one delay per channel, as
    Lava-DL's on ``NCHWT``; ``AxonalDelay((C, H, W), ...)`` one per neuron). The last
    ``max_delay + 1`` inputs are carried state: while streaming, single steps and chunks
    continue the sequence exactly as one long call; otherwise each multi-step call
    starts from zero inputs (``spikeflow.functional.reset_net`` forgets them).

    Args:
        shape: the number of channels, or the shape of the delays.
        max_delay: the largest delay in steps (Lava-DL's blocks use 62).
        init: the initial delays: ``None`` (default) uniform in ``[0, 1)`` as Lava-DL; a
            number or an array broadcast to ``shape``, in ``[0, max_delay]``; or a
            function that fills the delay tensor in place (``nn.init.uniform_``...).
        learnable: train the delays (a parameter); ``False`` keeps them as a buffer.
        interpolate: ``True`` (default) interpolates linearly between whole delays;
            ``False`` is Lava-DL's forward (truncated delays, binary spikes stay binary)
            with the same delay gradient.
        grad_scale: Lava-DL's ``grad_scale``, a factor on the delays' gradient.
        step_mode: ``'m'`` (default) or ``'s'``.

    Attributes:
        delay: the delays ``[*shape]`` in steps, read clamped into ``[0, max_delay]``;
            :func:`~spikeflow.layers.clamp_delays` clamps them in place.

    Raises:
        ConfigurationError: a ``shape`` that is not positive integers, ``max_delay``
            not an integer ``>= 0``, an initial delay outside ``[0, max_delay]`` or of
            the wrong shape, a non-finite ``grad_scale``, flags that are not bools.

    Example::

        >>> layer = AxonalDelay(2, max_delay=4, init=[1.0, 2.5])   # two channels
        >>> x = torch.tensor([[1.0, 1.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
        >>> layer(x.unsqueeze(1)).squeeze(1).tolist()   # [T=4, B=1, C=2]
        [[0.0, 0.0], [1.0, 0.0], [0.0, 0.5], [0.0, 0.5]]
    """

    def __init__(
        self,
        shape: int | Sequence[int],
        max_delay: int,
        init: DelayInit = None,
        learnable: bool = True,
        interpolate: bool = True,
        grad_scale: float = 1.0,
        step_mode: StepMode = "m",
    ) -> None:
        super().__init__(step_mode)
        self.shape = _check_shape(shape)
        self.max_delay = check_int("AxonalDelay: max_delay", max_delay, 0)
        self.learnable = check_flag("AxonalDelay", "learnable", learnable)
        self.interpolate = check_flag("AxonalDelay", "interpolate", interpolate)
        self.grad_scale = check_real("AxonalDelay: grad_scale", grad_scale)
        delay = _initial_delays(init, self.shape, self.max_delay)
        if self.learnable:
            self.delay = nn.Parameter(delay)
        else:
            self.register_buffer("delay", delay)

    @property
    def temporal_only(self) -> str:
        """Why the input reaches the output (mostly) through carried state ('' if it
        does not): online training (SLTT) drops those gradient paths."""
        if self.max_delay:
            return f"reaches its output through delays of up to {self.max_delay} steps"
        return ""

    def clamp_(self) -> None:
        """Clamp the delays into ``[0, max_delay]`` in place (after an optimizer step;
        :func:`~spikeflow.layers.clamp_delays` does it for a whole network)."""
        with torch.no_grad():
            self.delay.clamp_(0, self.max_delay)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` delayed neuron by neuron (``[T, B, *shape, ...]``, or ``[B, *shape,
        ...]`` per step)."""
        layout = f"[B, {', '.join(map(str, self.shape))}, ...]"
        check_step_dims(x, type(self).__name__, layout, (1 + len(self.shape), None), self.step_mode)
        seq = x if self.step_mode == "m" else x.unsqueeze(0)
        if tuple(seq.shape[2 : 2 + len(self.shape)]) != self.shape:
            raise ShapeError(
                f"{type(self).__name__} has delays of shape {self.shape}: it expects "
                f"{layout if self.step_mode == 's' else layout.replace('[B', '[T, B')}; "
                f"got shape {tuple(x.shape)}"
            )
        state = self._carried_state(seq.shape[1:])
        history = None if state is None else state["history"]
        delay = self.delay
        if self.grad_scale != 1.0:  # value unchanged, gradient times grad_scale
            delay = delay + (self.grad_scale - 1.0) * (delay - delay.detach())
        y = axonal_delay(seq, delay, self.max_delay, self.interpolate, history)
        if self._carrying:
            if history is None:
                history = seq.new_zeros(self.max_delay + 1, *seq.shape[1:])
            self._keep_state({"history": torch.cat([history, seq])[seq.shape[0] :]})
        return y if self.step_mode == "m" else y[0]

    def extra_repr(self) -> str:
        return (
            f"shape={self.shape}, max_delay={self.max_delay}, learnable={self.learnable}, "
            f"interpolate={self.interpolate}, grad_scale={self.grad_scale:g}, "
            f"step_mode={self.step_mode}"
        )


def _check_shape(shape: int | Sequence[int]) -> tuple[int, ...]:
    dims = (shape,) if isinstance(shape, numbers.Integral) else shape
    if (
        isinstance(dims, (str, bytes))
        or not isinstance(dims, Sequence | torch.Size)
        or not dims
        or not all(
            isinstance(n, numbers.Integral) and not isinstance(n, bool) and n >= 1 for n in dims
        )
    ):
        raise ConfigurationError(
            "AxonalDelay: shape must be a number of channels or a shape of integers >= 1, "
            f"got {shape!r}"
        )
    return tuple(int(n) for n in dims)


def _initial_delays(init: DelayInit, shape: tuple[int, ...], max_delay: int) -> Tensor:
    delay = torch.empty(shape)
    if init is None:  # Lava-DL's torch.rand
        return nn.init.uniform_(delay, 0.0, 1.0)
    if callable(init) and not isinstance(init, Tensor):
        with torch.no_grad():
            init(delay)
        return delay
    try:
        values = torch.as_tensor(init, dtype=torch.get_default_dtype())
        values = values.broadcast_to(shape).clone()
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ConfigurationError(
            f"AxonalDelay: init must be a number, an array that broadcasts to the shape "
            f"{shape}, or a function filling the delays; got {init!r}"
        ) from exc
    bad = ~(values.isfinite() & (values >= 0) & (values <= max_delay))
    if bad.any():
        raise ConfigurationError(
            f"AxonalDelay: init delays must lie in [0, max_delay = {max_delay}], got "
            f"{values[bad][0].item():g}"
        )
    return values
