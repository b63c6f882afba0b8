"""Learned step size quantization (LSQ; Esser et al., "Learned Step Size
Quantization", ICLR 2020) of synaptic weights.

A weight ``v`` is quantized to the integer level ``k = clamp(round(v/s), -Qn, Qp)`` with
a step ``s`` that is a trained parameter (per layer or per output channel)::

    v_q = s·k                       (forward)
    ∂v_q/∂v = 1 if -Qn < v/s < Qp, else 0            (straight-through, clip-aware)
    ∂v_q/∂s = k - v/s  inside,  -Qn or Qp outside    (times the gradient scale g)

with ``g = 1/sqrt(N·Qp)`` (``N`` the weights one step covers, ``Qp = 2^(bits-1) - 1``)
and the paper's initial step ``s = 2·mean|v| / sqrt(Qp)``. Symmetric levels are
``-q … q`` (``q = 2^(bits-1) - 1``: zero is a level, 2 bits is ternary, as the fixed
scales of :class:`~spikeflow.quant.WeightQuantizer`); asymmetric ones use all ``2^bits``
codes ``u = k + z`` around an integer zero point ``z`` (levels ``-z … 2^bits - 1 - z``),
fixed at initialisation from where the weights lie.

Binary (``bits=1``): ``v_q = s·sign(v)`` with ``sign(0) = +1``, the gradient to ``v``
straight through where ``|v| < s`` (LSQ's clip-aware rule with ``Qn = Qp = 1``), zero
beyond, ``∂v_q/∂s = sign(v)`` times ``g = 1/sqrt(N)`` (no rounding-error term: the
level does not depend on ``s``), and the initial step ``s = mean|v|`` (XNOR-Net's
optimal scale; no asymmetric levels).

The rounding and the gradient scale are written so the forward value is ``k·s``
exactly (``layer.weight == k·s``, as :func:`~spikeflow.quant.integer_weights` returns).
See ``docs/quantization.md``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from spikeflow._checks import check_flag
from spikeflow.errors import ConfigurationError
from spikeflow.quant.weights import WeightQuantizer, binary_levels

__all__ = ["LSQWeightQuantizer", "grad_scale", "lsq_binary", "lsq_quantize", "round_pass"]

#: The smallest step the forward uses (a step trained to zero or below would divide by
#: zero; it is clamped, with no gradient, until it grows again).
MIN_STEP = 1e-12


def grad_scale(x: Tensor, g: float | Tensor) -> Tensor:
    """``x`` in the forward, ``g·∂L/∂x`` in the backward (the value is ``x`` exactly)."""
    scaled = x * g
    return x.detach() + (scaled - scaled.detach())


def round_pass(x: Tensor) -> Tensor:
    """``round(x)`` (half to even) in the forward, the identity's gradient in the
    backward (the value is the rounded one exactly)."""
    return torch.round(x).detach() + (x - x.detach())


def lsq_quantize(v: Tensor, step: Tensor, low: float | Tensor, high: float | Tensor,
                 g: float | Tensor) -> Tensor:  # fmt: skip
    """``step·clamp(round(v/step), low, high)`` with LSQ's gradients (module doc):
    straight through the rounding, zero for ``v`` outside the clip range, and the step's
    gradient scaled by ``g``. ``low``, ``high`` are whole numbers; ``step > 0``
    broadcasts against ``v``."""
    s = grad_scale(step.clamp(min=MIN_STEP), g)
    return round_pass(torch.clamp(v / s, low, high)) * s


def lsq_binary(v: Tensor, step: Tensor, g: float | Tensor, levels: Tensor | None = None) -> Tensor:
    """``step·sign(v)`` (``sign(0) = +1``) with the binary LSQ gradients (module doc):
    ``1`` to ``v`` where ``|v| < step``, ``sign(v)·g`` to the step. ``levels``: the
    ±1 (or 0) to use instead of ``sign(v)``."""
    s = grad_scale(step.clamp(min=MIN_STEP), g)
    sign = torch.where(v.detach() >= 0, 1.0, -1.0) if levels is None else levels
    sign = sign.to(v.dtype)
    inside = torch.where((v.detach() / s.detach()).abs() < 1, v, v.detach())
    return sign * s + (inside - inside.detach())


def _per_step(weight: Tensor, per_channel: bool, channel_dim: int) -> tuple[int, ...]:
    """The dims a step is shared over: all (per layer) or all but ``channel_dim``."""
    if not per_channel or weight.dim() < 2:
        return tuple(range(weight.dim()))
    return tuple(d for d in range(weight.dim()) if d != channel_dim)


class LSQWeightQuantizer(WeightQuantizer):
    """LSQ of a weight to ``bits`` bits (module doc): a :class:`WeightQuantizer` whose
    step is the trained parameter ``step`` instead of ``max|w|/q``.

    Args:
        bits: 1 (binary) to 16.
        weight: the weight to initialise the step (and the zero point) from.
        per_channel: a step per output channel (``channel_dim``) or one per layer.
        channel_dim: 0 (linear, convolution) or 1 (transposed convolution).
        groups: a transposed convolution's groups (per-channel steps need 1).
        asymmetric: all ``2^bits`` codes around an integer zero point (the buffer
            ``zero_point``) instead of ``-q … q``.
    """

    def __init__(
        self,
        bits: int,
        weight: Tensor,
        per_channel: bool = True,
        channel_dim: int = 0,
        groups: int = 1,
        asymmetric: bool = False,
    ) -> None:
        self.asymmetric = check_flag("LSQWeightQuantizer", "asymmetric", asymmetric)
        if self.asymmetric and bits == 1:
            raise ConfigurationError(
                "LSQ weight quantization: binary weights (bits=1) are symmetric (±s); "
                "asymmetric levels need 2 bits or more"
            )
        super().__init__(bits, per_channel, channel_dim, groups)
        if self.per_channel and groups > 1 and weight.dim() >= 2:
            raise ConfigurationError(
                "LSQ weight quantization: per-channel steps of a grouped transposed "
                f"convolution (groups={groups}) are not supported; use per_channel=False"
            )
        w = weight.detach()
        if not torch.isfinite(w).all():
            raise ConfigurationError(
                "LSQ weight quantization: the weight to initialise the step from has "
                "NaN or infinite entries"
            )
        dims = _per_step(w, self.per_channel, channel_dim)
        wide = w.to(torch.promote_types(w.dtype, torch.float32))
        q = self.levels
        # The paper's initial step: 2·mean|w| / sqrt(Qp) (1 for a channel of zeros).
        mean = wide.abs().mean(dim=dims, keepdim=True)
        step = torch.where(mean > 0, 2 * mean / math.sqrt(q), torch.ones_like(mean))
        if self.bits == 1:  # XNOR-Net's scale: mean|w| (the paper's 2·mean|w| is LSQ's)
            step = torch.where(mean > 0, mean, torch.ones_like(mean))
        if self.asymmetric:
            # Zero point: the share of the 2^bits - 1 steps below zero, as the weights lie.
            low = wide.amin(dim=dims, keepdim=True).clamp(max=0)
            span = wide.amax(dim=dims, keepdim=True).clamp(min=0) - low
            share = torch.where(span > 0, -low / span, torch.full_like(span, 0.5))
            zero = torch.round(share * (2**self.bits - 1))
        else:
            zero = torch.full_like(step, float(q))
        if not self.per_channel or w.dim() < 2:  # one step: a 0-d parameter
            step, zero = step.reshape(()), zero.reshape(())
        self.step = nn.Parameter(step.to(w.dtype).to(w.device))
        # An integer (a model's .half() leaves it be: a 16-bit zero point is exact).
        self.register_buffer("zero_point", zero.to(device=w.device, dtype=torch.int64))
        per = w.numel() // max(self.step.numel(), 1)
        self.gradient_scale = 1.0 / math.sqrt(per * q)

    # -- settings (saved with the weights) ----------------------------------------

    def _settings(self) -> Tensor:
        asymmetric = getattr(self, "asymmetric", False)
        return torch.tensor([self.bits, int(self.per_channel), self.channel_dim, self.groups,
                             1, int(asymmetric)])  # fmt: skip

    # -- the grid -----------------------------------------------------------------

    def bounds(self) -> tuple[Tensor, Tensor]:
        """``(-Qn, Qp)``: the lowest and highest level (``-z`` and ``2^bits - 1 - z``,
        or ``-q`` and ``q``), broadcasting like the step."""
        if self.asymmetric:
            return -self.zero_point, (2**self.bits - 1) - self.zero_point
        return -self.zero_point, self.zero_point

    def scale(self, weight: Tensor) -> Tensor:
        """The learned step (detached, at least :data:`MIN_STEP`), broadcasting against
        ``weight``."""
        step = self.step.detach().clamp(min=MIN_STEP)
        return step.to(torch.promote_types(step.dtype, torch.float32))

    def integers(self, weight: Tensor) -> tuple[Tensor, Tensor]:
        """``(k, s)``: the integer levels (int32) and the step, ``w_q = k·s``."""
        s = self.scale(weight)
        if self.bits == 1:
            return binary_levels(weight.detach(), self), s
        low, high = (b.to(s.dtype) for b in self.bounds())
        k = torch.clamp(torch.round(weight.detach().to(s.dtype) / s), low, high)
        return k.to(torch.int32), s

    def forward(self, weight: Tensor) -> Tensor:
        """The quantized weight, with LSQ's gradients to ``weight`` and ``step``.

        Computed in float32 or wider, as :meth:`integers` (a float16/bfloat16 quotient
        ``w/s`` would round to other levels), then rounded to the weight's dtype."""
        wide = torch.promote_types(weight.dtype, torch.float32)
        if self.bits == 1:
            levels = binary_levels(weight.detach(), self)  # (a channel of zeros: 0)
            binary = lsq_binary(weight.to(wide), self.step.to(wide), self.gradient_scale,
                                levels)  # fmt: skip
            return binary.to(weight.dtype)
        low, high = (b.to(wide) for b in self.bounds())
        quantized = lsq_quantize(weight.to(wide), self.step.to(wide), low, high,
                                 self.gradient_scale)  # fmt: skip
        return quantized.to(weight.dtype)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, learned step (LSQ), asymmetric={self.asymmetric}"


def settings_described(settings: Tensor) -> dict[str, Any]:
    """The quantizer settings a ``settings`` buffer holds (fixed or LSQ)."""
    values = settings.tolist()
    described = {"bits": int(values[0]), "per_channel": bool(values[1]),
                 "channel_dim": int(values[2]), "groups": int(values[3]),
                 "method": "fixed", "asymmetric": False}  # fmt: skip
    if len(values) == 6:
        described["method"] = "lsq" if values[4] else "fixed"
        described["asymmetric"] = bool(values[5])
    return described
