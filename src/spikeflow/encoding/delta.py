"""Delta modulation: a spike where a signal changed by at least a threshold since the
previous step (snnTorch's ``spikegen.delta``)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from spikeflow._checks import broadcasts_to, check_flag
from spikeflow.base import MemoryModule, StepMode
from spikeflow.encoding._common import check_float_input, check_no_nan
from spikeflow.errors import ConfigurationError, ShapeError

__all__ = ["DeltaModulationEncoder", "delta_modulation"]


def _check_threshold(value: float | Tensor) -> float | Tensor:
    """θ: a finite number ``> 0`` (as a float) or a floating tensor whose entries all are."""
    if isinstance(value, Tensor):
        if not value.is_floating_point():
            raise ConfigurationError(
                f"delta modulation: threshold must be a floating-point tensor, got {value.dtype}"
            )
        bad = ~(value.isfinite() & (value > 0))
        if bool(bad.any()):
            shown = ", ".join(f"{float(v):g}" for v in value[bad].reshape(-1)[:3])
            raise ConfigurationError(
                f"delta modulation: threshold must be finite and > 0 everywhere; "
                f"{int(bad.sum())} of {value.numel()} entries are not ({shown})"
            )
        return value.detach().clone()
    if isinstance(value, (bool, str, bytes)) or not isinstance(value, (int, float)):
        raise ConfigurationError(
            f"delta modulation: threshold must be a number > 0 or a tensor, got {value!r}"
        )
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ConfigurationError(
            f"delta modulation: threshold must be finite and > 0 (with 0 an unchanged "
            f"input would spike at every step), got {value!r}"
        )
    return value


def _delta_spikes(
    x: Tensor, previous: Tensor, threshold: float | Tensor, off_spike: bool
) -> Tensor:
    """Spikes of ``x [T, *]`` given the value before its first step, ``previous [*]``."""
    before = torch.cat((previous.unsqueeze(0), x[:-1]))
    change = x - before
    # A tensor θ keeps its dtype: compared with type promotion (as snnTorch does), a
    # float32 θ is not rounded to a float16 signal's precision.
    theta = threshold if isinstance(threshold, float) else threshold.to(x.device)
    spikes = (change >= theta).to(x.dtype)
    if off_spike:
        spikes = spikes - (change <= -theta).to(x.dtype)
    return spikes


def _check_signal(x: object, threshold: float | Tensor, who: str) -> Tensor:
    """A floating, NaN-free sequence ``[T, *]`` whose steps θ broadcasts to."""
    x = check_float_input(x, who)
    if x.dim() < 1:
        raise ShapeError(
            f"{who} expects a sequence [T, ...] with a time dimension; got a 0-dim tensor"
        )
    check_no_nan(x, who)
    if isinstance(threshold, Tensor) and not broadcasts_to(threshold.shape, x.shape[1:]):
        raise ShapeError(
            f"{who}: the threshold's shape {tuple(threshold.shape)} does not broadcast to "
            f"one step of the input, {tuple(x.shape[1:])}"
        )
    return x.detach()


def delta_modulation(
    x: Tensor,
    threshold: float | Tensor = 0.1,
    padding: bool = False,
    off_spike: bool = False,
) -> Tensor:
    """Delta modulation of a sequence ``x [T, *]`` (snnTorch's ``spikegen.delta``).

    With ``d[t] = x[t] - x[t-1]`` (see ``padding`` for ``x[-1]``)::

        s[t] = 1[d[t] >= θ]                          off_spike=False
        s[t] = 1[d[t] >= θ] - 1[d[t] <= -θ]          off_spike=True  (in {-1, 0, 1})

    Only the change since the previous step counts: a drift slower than ``θ`` per step
    never spikes (:class:`spikeflow.layers.DeltaEncoder` accumulates the change instead).

    Args:
        x: the signal, time-major ``[T, *]``, floating point.
        threshold: θ, a number ``> 0`` (snnTorch's default 0.1) or a tensor of positive
            values broadcastable to one step (per channel: ``[C, 1, 1]``), compared with
            PyTorch's type promotion as snnTorch does (a float32 θ is not rounded to a
            float16 signal's precision).
        padding: ``x[-1] = x[0]`` (the first step never spikes) if True; ``x[-1] = 0``
            (the first step spikes where ``x[0] >= θ``) if False.
        off_spike: also emit ``-1`` spikes for decreases of at least θ.

    Returns:
        The spikes, ``[T, *]`` in ``x``'s dtype (not differentiable).

    Raises:
        DTypeError: ``x`` is not floating point.
        ShapeError: ``x`` has no time dimension, or θ does not broadcast to one step.
        ConfigurationError: a bad threshold or flag, or a NaN in ``x``.
    """
    theta = _check_threshold(threshold)
    pad = check_flag("delta_modulation", "padding", padding)
    off = check_flag("delta_modulation", "off_spike", off_spike)
    x = _check_signal(x, theta, "delta_modulation")
    if x.shape[0] == 0:
        return x.clone()
    previous = x[0] if pad else torch.zeros_like(x[0])
    return _delta_spikes(x, previous, theta, off)


class DeltaModulationEncoder(MemoryModule):
    """Delta modulation (snnTorch's ``spikegen.delta``) as a module; see
    :func:`delta_modulation` for the code.

    Unlike the other encoders, the input is already a sequence (a sensor stream, a
    video, an audio envelope): ``'m'``: ``x [T, *]`` -> ``[T, *]``; ``'s'`` (needs
    streaming): one step ``x [*]`` -> ``[*]`` per call, with the previous step's input
    carried from call to call (state ``last``). The first step of a sequence (after a
    reset) compares with 0, or with itself if ``padding``; a streaming multi-step call
    continues from the previous chunk's last step, so chunks give the spikes of the
    whole sequence.

    Args:
        threshold: θ, a number ``> 0`` (default 0.1) or a tensor of positive values
            broadcastable to one step (a buffer, not learned).
        padding: the first step compares with itself (never spikes) instead of 0.
        off_spike: also emit ``-1`` spikes for decreases of at least θ.
        step_mode: ``'m'`` (default) or ``'s'``.
    """

    def __init__(
        self,
        threshold: float | Tensor = 0.1,
        padding: bool = False,
        off_spike: bool = False,
        step_mode: StepMode = "m",
    ) -> None:
        super().__init__(step_mode)
        theta = _check_threshold(threshold)
        if isinstance(theta, Tensor):
            self.register_buffer("threshold", theta)
        else:
            self.threshold = theta
        self.padding = check_flag("DeltaModulationEncoder", "padding", padding)
        self.off_spike = check_flag("DeltaModulationEncoder", "off_spike", off_spike)

    def forward(self, x: Tensor) -> Tensor:
        x = check_float_input(x, "DeltaModulationEncoder")
        seq = x.unsqueeze(0) if self.step_mode == "s" else x
        seq = _check_signal(seq, self.threshold, "DeltaModulationEncoder")
        state = self._carried_state(seq.shape[1:])
        if seq.shape[0] == 0:
            return seq.clone()
        if state is not None:
            previous = state["last"]
        else:
            previous = seq[0] if self.padding else torch.zeros_like(seq[0])
        out = _delta_spikes(seq, previous, self.threshold, self.off_spike)
        # A copy: a view would change with the caller's tensor (a reused frame buffer).
        self._keep_state({"last": seq[-1].clone()})
        return out if self.step_mode == "m" else out[0]

    def extra_repr(self) -> str:
        theta = self.threshold
        shown = f"{theta:g}" if isinstance(theta, float) else f"tensor{tuple(theta.shape)}"
        return (
            f"threshold={shown}, padding={self.padding}, off_spike={self.off_spike}, "
            f"step_mode={self.step_mode!r}"
        )
