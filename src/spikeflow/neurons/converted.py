"""IF neurons for ANN-to-SNN conversion, SpikingJelly 2.0's ``HalfThresholdIFNode`` and
``ActivationAwareIFNode``. Both are declared (``H[t] = V[t-1] + X[t]``), so the fused C
and Triton kernels run them.

* :class:`HalfThresholdIFNode`: the soft-reset IF whose membrane starts at ``θ/2``, the
  neuron that makes a rate-coded IF round its input to the nearest level instead of
  down (QCFS's shift ``φ = 1/2``, Bu et al., ICLR 2022). It is what
  :func:`spikeflow.conversion.convert` builds for a QCFS network
  (``ConversionIFNode(θ, initial_membrane=0.5)``), with plain spikes instead of
  ``θ``-weighted ones: ``ConversionIFNode(θ, 0.5, weighted=False)`` gives its spikes.
* :class:`ActivationAwareIFNode`: an IF that fires on ``H + O ≥ θ`` with a membrane
  offset ``O`` and a threshold ``θ``, each a scalar or one value per channel, as the
  activation-aware redistribution of converted networks sets them (SpikingJelly's
  "AAR-style minimal vertical slice"). The conversion does not build it; set ``θ`` and
  ``O`` from calibration statistics yourself.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor

from spikeflow.base import StepMode
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.neurons.base import BaseNode
from spikeflow.neurons.declaration import NeuronDeclaration, declare
from spikeflow.neurons.lif import IFNode
from spikeflow.surrogate import Surrogate

__all__ = ["ActivationAwareIFNode", "HalfThresholdIFNode"]


def _check_positive_threshold(owner: str, theta: float | Tensor) -> None:
    positive = theta > 0 if isinstance(theta, float) else bool((theta > 0).all())
    if not positive:
        raise ConfigurationError(f"{owner}: v_threshold must be > 0 everywhere, got {theta}")


class HalfThresholdIFNode(IFNode):
    """Soft-reset IF neuron whose membrane starts at half its threshold, SpikingJelly
    2.0's ``HalfThresholdIFNode`` (the same spikes, membranes and gradients)::

        V[0] = θ/2;   H[t] = V[t-1] + X[t];   S[t] = Θ(H[t] - θ);   V[t] = H[t] - θ S[t]

    Over ``T`` steps of a constant input ``x`` in ``[0, θ]`` it fires
    ``floor(T x/θ + 1/2)`` times (rounded, where a membrane starting at 0 floors).

    Args:
        v_threshold: θ > 0, a float or a tensor broadcastable to the neuron shape
            (default 1). The start ``θ/2`` is a constant (a learnt θ moves the
            threshold, not the start).
        surrogate_function: the spike function (default ``Sigmoid(alpha=4)``).
        detach_reset: detach the spike in the reset.
        step_mode: ``'m'`` (``[T, B, ...]``, default; SpikingJelly's is ``'s'``) or
            ``'s'``.
        store_v_seq: keep the membrane after reset of every step in ``self.v_seq``.
        backend, strict_firing, learnable_threshold: as for
            :class:`~spikeflow.neurons.base.BaseNode` (keyword only: the positional
            arguments are SpikingJelly's).

    Raises:
        ConfigurationError: a threshold that is not finite and > 0.
    """

    def __init__(
        self,
        v_threshold: float | Tensor = 1.0,
        surrogate_function: Surrogate | None = None,
        detach_reset: bool = False,
        step_mode: StepMode = "m",
        store_v_seq: bool = False,
        *,
        backend: str = "auto",
        strict_firing: bool = False,
        learnable_threshold: bool = False,
    ) -> None:
        super().__init__(v_threshold=v_threshold, v_reset=None,
                         surrogate_function=surrogate_function, detach_reset=detach_reset,
                         strict_firing=strict_firing, learnable_threshold=learnable_threshold,
                         step_mode=step_mode, backend=backend, store_v_seq=store_v_seq)  # fmt: skip
        _check_positive_threshold(type(self).__name__, self.v_threshold)

    def initial_values(self) -> dict[str, float]:
        theta = self.v_threshold
        if isinstance(theta, Tensor):
            raise ConfigurationError(
                f"{type(self).__name__} with a tensor threshold starts from θ/2 per "
                "neuron, not one number: use initial_state(like)"
            )
        return {"v": theta / 2.0}

    def initial_state(self, like: Tensor) -> dict[str, Tensor]:
        half = self.v_threshold
        half = half.detach() / 2.0 if isinstance(half, Tensor) else half / 2.0
        return {"v": torch.zeros_like(like) + half}

    def start_state(self, like: Tensor) -> dict[str, Tensor | float]:
        # A number (read as a scalar by the kernels) unless the threshold is a tensor.
        if isinstance(self.v_threshold, Tensor):
            return self.initial_state(like)
        return dict(self.initial_values())


def _if_charge(x: Tensor, v: Tensor) -> Tensor:
    """``H = V + X``."""
    return v + x


def _soft_reset(h: Tensor, s: Tensor, theta: Tensor | float, *, v_th: Tensor | float) -> Tensor:
    """``V = H - S θ``: the threshold, not the firing level ``θ - O``."""
    return h - s * v_th


def _hard_reset(h: Tensor, s: Tensor, theta: Tensor | float, *, v_reset: float) -> Tensor:
    """``V = S V_r + (1 - S) H`` (SpikingJelly's order)."""
    return s * v_reset + (1.0 - s) * h


def _per_channel(owner: str, name: str, value: object) -> float | Tensor:
    """A scalar (float) or a 1-D tensor of finite values."""
    if isinstance(value, Tensor):
        if not value.is_floating_point():
            value = value.to(torch.get_default_dtype())
        if value.dim() > 1:
            raise ConfigurationError(
                f"{owner}: {name} must be a scalar or a 1-D tensor (one value per channel), "
                f"got shape {tuple(value.shape)}"
            )
        if not bool(torch.isfinite(value).all()):
            raise ConfigurationError(f"{owner}: {name} must be finite, got {value}")
        return value.detach().clone() if value.dim() == 1 else float(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ConfigurationError(
            f"{owner}: {name} must be a finite number or a 1-D tensor, got {value!r}"
        )
    return float(value)


class ActivationAwareIFNode(BaseNode):
    """IF neuron with a membrane offset, SpikingJelly 2.0's ``ActivationAwareIFNode``::

        H[t] = V[t-1] + X[t]
        S[t] = Θ(H[t] + O - θ)
        V[t] = H[t] - θ S[t]                   (soft reset, v_reset=None, the default)
        V[t] = S[t] V_r + (1 - S[t]) H[t]      (hard reset)

    ``θ`` (``v_threshold``) and ``O`` (``v_offset``) are each a scalar or a 1-D tensor of
    one value per channel, the channels at ``channel_dim`` of a step (``-1``, the last,
    by default; ``1`` for ``[B, C, H, W]`` steps). The fire rule compares ``H`` with
    ``θ - O`` (SpikingJelly: ``H + O`` with ``θ``; the two differ only where rounding
    the last bit of ``θ - O`` decides a spike); the soft reset subtracts ``θ``.
    Declared: the fused kernels run it. The state dict has SpikingJelly's buffers
    ``v_threshold`` and ``v_offset``.

    Args:
        v_threshold: θ > 0, a float or a 1-D tensor (default 1).
        v_offset: O, a float or a 1-D tensor (default 0).
        channel_dim: the dimension of a step that 1-D values run along (default -1).
        v_reset: hard-reset value, or ``None`` for soft reset (the default, as
            SpikingJelly's). The membrane starts at ``v_reset`` (0 with soft reset).
        surrogate_function: the spike function (default ``Sigmoid(alpha=4)``).
        detach_reset: detach the spike in the reset.
        step_mode: ``'m'`` (``[T, B, ...]``, default; SpikingJelly's is ``'s'``) or
            ``'s'``.
        store_v_seq: keep the membrane after reset of every step in ``self.v_seq``.
        backend, strict_firing: as for :class:`~spikeflow.neurons.base.BaseNode`
            (keyword only).

    Raises:
        ConfigurationError: a threshold that is not finite and > 0, an offset that is
            not finite, either of more than one dimension, a ``channel_dim`` that is not
            an integer, ``v_threshold <= v_reset`` with hard reset.
        ShapeError: (at a call) a 1-D value whose length is not the number of channels
            at ``channel_dim``, or a ``channel_dim`` out of range.
    """

    def __init__(
        self,
        v_threshold: float | Tensor = 1.0,
        v_offset: float | Tensor = 0.0,
        channel_dim: int = -1,
        v_reset: float | None = None,
        surrogate_function: Surrogate | None = None,
        detach_reset: bool = False,
        step_mode: StepMode = "m",
        store_v_seq: bool = False,
        *,
        backend: str = "auto",
        strict_firing: bool = False,
    ) -> None:
        owner = type(self).__name__
        theta = _per_channel(owner, "v_threshold", v_threshold)
        if not isinstance(theta, Tensor):  # a buffer always, as SpikingJelly's
            theta = torch.tensor(theta)
        super().__init__(v_threshold=theta, v_reset=v_reset,
                         surrogate_function=surrogate_function, detach_reset=detach_reset,
                         strict_firing=strict_firing, step_mode=step_mode, backend=backend,
                         store_v_seq=store_v_seq)  # fmt: skip
        _check_positive_threshold(owner, self.v_threshold)
        offset = _per_channel(owner, "v_offset", v_offset)
        if isinstance(offset, Tensor):
            self.register_buffer("v_offset", offset)
        else:
            self.register_buffer("v_offset", torch.tensor(offset))
        if isinstance(channel_dim, bool) or not isinstance(channel_dim, int):
            raise ConfigurationError(f"{owner}: channel_dim must be an int, got {channel_dim!r}")
        self.channel_dim = channel_dim
        self._step_dims = 1

    def declaration(self) -> NeuronDeclaration:
        hard = self.v_reset is not None
        reset = _hard_reset if hard else _soft_reset
        name = f"{type(self).__name__}(reset={'hard' if hard else 'soft'})"
        return declare(_if_charge, None, name, reset_membrane=reset)

    def _along_channels(self, value: float | Tensor) -> float | Tensor:
        """``value`` shaped to broadcast along ``channel_dim`` of a step (a 1-D tensor
        becomes ``[C, 1, ..., 1]``)."""
        if not isinstance(value, Tensor) or value.dim() == 0:
            return value
        dims = self._step_dims
        dim = self.channel_dim + dims if self.channel_dim < 0 else self.channel_dim
        if not 0 <= dim < dims:
            raise ShapeError(
                f"{type(self).__name__}: channel_dim={self.channel_dim} is out of range for "
                f"steps with {dims} dimensions"
            )
        return value.view(-1, *([1] * (dims - 1 - dim)))

    def firing_threshold(self, step_shape: torch.Size) -> float | Tensor:
        """The firing level ``θ - O``, per channel when either is."""
        theta = self._along_channels(self.v_threshold)
        offset = self._along_channels(self.v_offset)
        for name, value in (("v_threshold", theta), ("v_offset", offset)):
            if isinstance(value, Tensor) and value.dim() > 0:
                dim = len(step_shape) - value.dim()
                if value.shape[0] != step_shape[dim]:
                    raise ShapeError(
                        f"{type(self).__name__}: {name} has {value.shape[0]} values but the "
                        f"steps {tuple(step_shape)} have {step_shape[dim]} channels at "
                        f"channel_dim={self.channel_dim}"
                    )
        return theta - offset

    def neuron_params(self) -> dict[str, Tensor | float]:
        if self.v_reset is not None:
            return {"v_reset": self.v_reset}
        return {"v_th": self._along_channels(self.v_threshold)}

    def forward(self, x: Tensor) -> Tensor:
        """Spikes for ``x``: ``[T, B, ...]`` in multi-step mode, ``[B, ...]`` in single-step."""
        if isinstance(x, Tensor):
            self._step_dims = max(x.dim() - (1 if self.step_mode == "m" else 0), 1)
        return super().forward(x)

    def extra_repr(self) -> str:
        offset = self.v_offset
        shown = f"{float(offset):g}" if offset.dim() == 0 else f"tensor{tuple(offset.shape)}"
        return f"v_offset={shown}, channel_dim={self.channel_dim}, " + super().extra_repr()
