"""DropConnect (Wan et al., ICML 2013): a linear layer that drops connections, not units.

In training each sample ``b`` gets its own random mask ``M_b`` over the weights (and
``m_b`` over the bias), every entry kept with probability ``1 - p``, and::

    y_b = a((M_b ⊙ W) x_b + m_b ⊙ bias)

with ``a`` the layer's ``activation``. As SpikingJelly 2.0's ``layer.DropConnectLinear``
the kept weights are not rescaled: the expected pre-activation is ``(1 - p)(W x + b)``.

**Masks over time.** With ``invariant=True`` (the default here, spikeflow's convention
for dropout in SNNs) one mask per sample is drawn per sequence and shared by all its
steps: a multi-step call draws it once; while streaming it is carried state until a
reset. With ``invariant=False`` every step draws a new mask (SpikingJelly's default).

**Inference** (eval mode) follows the paper's Algorithm 2, as SpikingJelly does: the
pre-activation ``u`` of each output is approximated by a Gaussian matching its mean and
variance over the masks::

    E[u] = (1 - p)(W x + b),    Var[u] = p (1 - p)(W² x² + b²)

``samples_num`` values are drawn from it, passed through the activation and averaged
(the result carries no gradient, as SpikingJelly's). ``samples_num=0`` skips the
sampling and returns ``a(E[u])`` (deterministic and differentiable; exact when ``a`` is
None or linear).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikeflow._checks import check_flag
from spikeflow.base import MemoryModule, StepMode
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.layers._checks import check_int, check_real
from spikeflow.layers._time import check_step_dims

__all__ = ["DropConnectLinear"]

#: The signature's default activation: replaced by a new ``nn.ReLU()`` in each layer (one
#: module shared by every layer made with the default was listed under the first layer
#: only by ``named_modules()``, and a hook on it fired for all of them).
_DEFAULT_ACTIVATION = nn.ReLU()


class DropConnectLinear(MemoryModule):
    """A linear layer with DropConnect and an activation (see the module docstring).

    Each step is ``[B, ..., in_features]``; each sample (first dim of a step) has its own
    masks, so a batch of ``B`` holds ``B`` masked copies of the weight in training
    (``B * out_features * in_features`` values: the price of per-sample DropConnect).

    **SpikingJelly**: ``layer.DropConnectLinear(in_features, out_features, bias, p,
    samples_num, invariant, activation, step_mode)`` takes the same arguments (same
    order, same defaults except ``invariant`` and ``step_mode``), has the same
    parameters (``weight``, ``bias``: its ``state_dict`` loads) and initialisation (the
    same seed gives the same weights), draws the same masks and eval samples for the
    same seed, so outputs and gradients are equal: multi-step ``invariant=True`` equals
    its single-step loop with ``invariant=True`` from a reset, ``invariant=False`` its
    loop with ``invariant=False``. SpikingJelly's sampling fails when a variance is 0
    (an all-zero input without bias); here that output is its mean. In float16 and
    bfloat16 the masks' uniforms are drawn in float32 (SpikingJelly draws them in the
    weight's dtype, whose coarse grid moves the keep rate), so the masks differ there.

    Args:
        in_features: features of the input.
        out_features: features of the output.
        bias: learn an additive bias (dropped like the weights).
        p: the probability of dropping a connection, in ``[0, 1)`` (default 0.5).
        samples_num: Gaussian samples per output in eval mode (default 1024: eval draws
            ``samples_num * B * out_features`` values per step); 0 for the deterministic
            ``activation(E[u])``.
        invariant: one mask per sequence (default True) or a new mask at every step.
        activation: a stateless module applied to the pre-activation, inside the
            layer because inference averages it over the samples (default: a new
            ``nn.ReLU()`` for each layer, SpikingJelly's function; its layers share one
            module); ``None`` for none. Put spiking neurons after the layer, with
            ``activation=None``.
        step_mode: ``'m'`` (``[T, B, ..., in_features]``, default) or ``'s'``.

    Raises:
        ConfigurationError: a size that is not a positive integer, ``p`` outside
            ``[0, 1)``, a negative ``samples_num``, an ``activation`` that is not a
            module or carries state.
        ShapeError: an input whose last dim is not ``in_features`` or that lacks the
            batch (or, in multi-step mode, time) dim.
        DTypeError: an input whose dtype is not the weight's (outside autocast).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        p: float = 0.5,
        samples_num: int = 1024,
        invariant: bool = True,
        activation: nn.Module | None = _DEFAULT_ACTIVATION,
        step_mode: StepMode = "m",
    ) -> None:
        super().__init__(step_mode)
        owner = type(self).__name__
        self.in_features = check_int(f"{owner}: in_features", in_features, 1)
        self.out_features = check_int(f"{owner}: out_features", out_features, 1)
        self.p = check_real(f"{owner}: p", p, 0.0, 1.0, high_open=True)
        self.samples_num = check_int(f"{owner}: samples_num", samples_num, 0)
        self.invariant = check_flag(owner, "invariant", invariant)
        if activation is not None and not isinstance(activation, nn.Module):
            raise ConfigurationError(
                f"{owner}: activation must be a torch.nn.Module or None, got "
                f"{type(activation).__name__}"
            )
        if activation is not None and any(
            isinstance(m, MemoryModule) for m in activation.modules()
        ):
            raise ConfigurationError(
                f"{owner}: activation {type(activation).__name__} carries state; inference "
                "averages the activation over samples, which a stateful module cannot take. "
                "Use activation=None and put the neuron after the layer"
            )
        self.activation = nn.ReLU() if activation is _DEFAULT_ACTIVATION else activation
        self.weight = nn.Parameter(torch.empty(self.out_features, self.in_features))
        has_bias = check_flag(owner, "bias", bias)
        self.bias = nn.Parameter(torch.empty(self.out_features)) if has_bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``nn.Linear``'s initialisation (the same draws as SpikingJelly's layer)."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.in_features)
            nn.init.uniform_(self.bias, -bound, bound)

    def draw_masks(self, batch: int) -> tuple[Tensor, Tensor | None]:
        """Keep-masks for ``batch`` samples: ``[B, out, in]`` and ``[B, out]`` (or None),
        True with probability ``1 - p`` (the weight mask drawn first).

        The uniforms are drawn in the weight's dtype (SpikingJelly's draws, for the same
        seed), but in at least float32: half-precision uniforms are rounded to a coarse
        grid, which moved the keep rate (``p = 0.1`` kept 89.8% in bfloat16)."""
        dtype = self.weight.dtype
        if dtype in (torch.float16, torch.bfloat16):
            dtype = torch.float32
        device = self.weight.device
        weight_mask = torch.rand(batch, *self.weight.shape, dtype=dtype, device=device) >= self.p
        if self.bias is None:
            return weight_mask, None
        bias_mask = torch.rand(batch, self.out_features, dtype=dtype, device=device) >= self.p
        return weight_mask, bias_mask

    def _activate(self, u: Tensor) -> Tensor:
        return u if self.activation is None else self.activation(u)

    def _masked_linear(self, x: Tensor, masks: tuple[Tensor, Tensor | None]) -> Tensor:
        """``(M_b ⊙ W) x_b + m_b ⊙ bias`` for ``x`` ``[B, N, in]`` → ``[B, N, out]``."""
        weight_mask, bias_mask = masks
        weights = self.weight * weight_mask  # [B, out, in]
        u = torch.bmm(x, weights.transpose(1, 2))
        if self.bias is not None:
            u = u + (self.bias * bias_mask).unsqueeze(1)
        return u

    def _sampled(self, x: Tensor) -> Tensor:
        """The eval output of one step ``x`` ``[B, ..., in]`` (Gaussian moment matching)."""
        mean = (1.0 - self.p) * F.linear(x, self.weight, self.bias)
        if self.samples_num == 0:
            return self._activate(mean)
        bias_sq = None if self.bias is None else self.bias.square()
        var = self.p * (1.0 - self.p) * F.linear(x.square(), self.weight.square(), bias_sq)
        shape = (self.samples_num, *mean.shape)
        with torch.no_grad():  # no gradient through the draws (SpikingJelly's neither)
            samples = torch.normal(mean.expand(shape), var.sqrt().expand(shape))
            return self._activate(samples).mean(dim=0)

    def forward(self, x: Tensor) -> Tensor:
        """The layer on ``[T, B, ..., in_features]`` (multi-step) or one step ``[B, ...,
        in_features]``: masked in training, sampled (or the mean) in eval mode."""
        owner = type(self).__name__
        # Under autocast (--amp) the layers before give bfloat16/float16: allowed.
        autocast = isinstance(x, Tensor) and torch.is_autocast_enabled(x.device.type)
        if not isinstance(x, Tensor) or (x.dtype != self.weight.dtype and not autocast):
            found = x.dtype if isinstance(x, Tensor) else type(x).__name__
            raise DTypeError(f"{owner}: the input must have the weight's dtype "
                             f"{self.weight.dtype} (outside autocast), got {found}")  # fmt: skip
        check_step_dims(x, owner, "[B, ..., in_features]", (2, None), self.step_mode)
        if x.shape[-1] != self.in_features:
            raise ShapeError(
                f"{owner}: the input's last dim must be in_features = {self.in_features}, "
                f"got shape {tuple(x.shape)}"
            )
        multi = self.step_mode == "m"
        if multi and x.shape[0] == 0:
            raise ShapeError(f"{owner} got a sequence of 0 time steps: {tuple(x.shape)}")
        x_seq = x if multi else x.unsqueeze(0)
        batch = x_seq.shape[1]
        # the carried masks are [B, out, in] and [B, out, 1]: checked against that shape
        state = self._carried_state(torch.Size((batch, self.out_features, self.in_features)))
        if not self.training:
            y = torch.stack([self._sampled(step) for step in x_seq.unbind(0)])
            return y if multi else y[0]
        steps = x_seq.shape[0]
        inner = x_seq.shape[2:-1]
        rows = math.prod(inner)  # vectors per sample and step
        if self.invariant:
            if state is None:
                masks = self.draw_masks(batch)
            else:
                bias_mask = state.get("bias_mask")
                masks = (state["weight_mask"], None if bias_mask is None else bias_mask[..., 0])
            # [T, B, ..., in] -> [B, T*..., in]: one batched product for all steps (the
            # sizes spelled out: with B = 0 a -1 would be ambiguous)
            flat = x_seq.movedim(0, 1).reshape(batch, steps * rows, self.in_features)
            u = self._masked_linear(flat, masks).reshape(batch, steps, *inner, self.out_features)
            u = u.movedim(1, 0)
            kept = {"weight_mask": masks[0]}
            if masks[1] is not None:
                kept["bias_mask"] = masks[1].unsqueeze(-1)
            self._keep_state(kept)
        else:
            out = []
            for step in x_seq.unbind(0):
                masks = self.draw_masks(batch)
                flat = step.reshape(batch, rows, self.in_features)
                out.append(
                    self._masked_linear(flat, masks).reshape(batch, *inner, self.out_features)
                )
            u = torch.stack(out)
        y = self._activate(u)
        return y if multi else y[0]

    @property
    def weight_mask(self) -> Tensor | None:
        """The weight keep-mask ``[B, out, in]`` carried to the next call (while
        streaming with ``invariant=True``; otherwise None)."""
        return None if self.state is None else self.state["weight_mask"]

    @property
    def bias_mask(self) -> Tensor | None:
        """The bias keep-mask ``[B, out]`` carried to the next call (as ``weight_mask``)."""
        state = self.state
        return None if state is None or "bias_mask" not in state else state["bias_mask"][..., 0]

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, p={self.p}, samples_num={self.samples_num}, "
            f"invariant={self.invariant}, step_mode={self.step_mode!r}"
        )
