"""The two-compartment LIF neuron (TC-LIF) of Zhang et al. (AAAI 2024).

A dendritic compartment integrates the input and feeds a somatic compartment, which
fires; the two exchange charge with learnable coupling factors. Declared once, like every
spikeflow neuron: the reference loop and the fused CPU and Triton kernels (forward and
backward, the coupling factors' gradients included) come from the declaration.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from spikeflow._checks import check_real
from spikeflow.neurons.adlif import _check_shape, _expand_per_layer_values
from spikeflow.neurons.base import BaseNode
from spikeflow.neurons.declaration import NeuronDeclaration, declare

__all__ = ["TCLIFNode"]


def _tclif_charge(
    x: Tensor, v: Tensor, d: Tensor, *, beta1: Tensor, beta2: Tensor, gamma: float
) -> tuple[Tensor, Tensor]:
    """Dendrite first (``d + X - beta1 V``), then the soma charged from the new dendrite."""
    d_new = d - beta1 * v + x
    return v + beta2 * d_new, d_new


def _tclif_update(h: Tensor, s: Tensor, d: Tensor, *, gamma: float) -> Tensor:
    """The dendrite's own soft reset after a spike: ``d - gamma S``."""
    return d - gamma * s


def _tclif_update_detached(h: Tensor, s: Tensor, d: Tensor, *, gamma: float) -> Tensor:
    """As :func:`_tclif_update` with ``detach_reset``: no gradient through the reset."""
    return d - gamma * s.detach()


class TCLIFNode(BaseNode):
    """Two-compartment LIF (Zhang, Yang, Ma, Wu, Li & Tan, AAAI 2024, "TC-LIF: A
    Two-Compartment Spiking Neuron Model for Long-Term Sequential Modelling")::

        D[t] = D[t-1] - beta1 V[t-1] + X[t]          (dendritic compartment)
        H[t] = V[t-1] + beta2 D[t]                   (somatic compartment, charged)
        S[t] = Θ(H[t] - θ)
        V[t] = H[t] - θ S[t];   D[t] ← D[t] - gamma S[t]     (soft reset, the default)

    ``beta1 = sigmoid(decay[0])`` and ``beta2 = sigmoid(decay[1])`` are learnable (one
    pair per layer, or per neuron with ``shape``), initialised at ``decay_init`` (0: both
    factors 0.5, as the authors' code). Neither compartment leaks: the soma's charge
    drains the dendrite (``- beta1 V``), which is what lets gradients survive long
    sequences. With a hard reset (``v_reset`` a number) only the soma is reset, to
    ``v_reset``, and the dendrite is left as it is (the authors' ``hard_reset=True``).
    ``detach_reset`` detaches the spike in both compartments' resets.

    The authors' SHD/SSC networks use a triangle surrogate (spikeflow's ``Triangle()``)
    and θ = 1.5, their sequential-MNIST ones a multi-Gaussian firing on ``H > θ``
    (``surrogate_function=MultiGaussian(), strict_firing=True``) and θ = 1; here the
    defaults are spikeflow's (Sigmoid, ``H >= θ``, θ = 1). Their soma starts at 0 also
    with a hard reset (here at ``v_reset``), and their scripts share one ``decay``
    tensor among the layers (here each layer or neuron has its own).

    Args:
        shape: the per-neuron factors' shape, broadcast against one step's input
            (``hidden`` for ``[B, hidden]``); ``None``: one pair per layer.
        gamma: the dendrite's reset step after a spike (soft reset only), finite.
        decay_init: the initial value of both ``decay`` logits, finite.
        v_reset: ``None`` (default): the soft reset above; a number: hard reset of the
            soma.
        **kwargs: the other arguments of :class:`~spikeflow.neurons.base.BaseNode`.

    State: ``v`` (the soma) and the dendrite ``d`` (``node.state["d"]`` while
    streaming), both starting at 0 (the soma at ``v_reset`` with a hard reset).

    Raises:
        ConfigurationError: a bad ``shape``, a non-finite ``gamma`` or ``decay_init``,
            or a bad argument of :class:`~spikeflow.neurons.base.BaseNode`.
    """

    charge_returns_aux = True

    def __init__(
        self,
        shape: int | Sequence[int] | None = None,
        gamma: float = 0.5,
        decay_init: float = 0.0,
        v_reset: float | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(v_reset=v_reset, **kwargs)  # type: ignore[arg-type]
        self.shape = _check_shape(shape)
        self.gamma = check_real("gamma", gamma)
        init = check_real("decay_init", decay_init)
        size = (2, *self.shape) if self.shape is not None else (2,)
        self.decay = nn.Parameter(torch.full(size, init))

    def declaration(self) -> NeuronDeclaration:
        update = _tclif_update_detached if self.detach_reset else _tclif_update
        return declare(_tclif_charge, update, type(self).__name__, charge_returns_aux=True)

    def neuron_params(self) -> dict[str, Tensor | float]:
        factors = torch.sigmoid(self.decay)
        # the authors' hard reset leaves the dendrite as it is
        gamma = self.gamma if self.v_reset is None else 0.0
        return {"beta1": factors[0], "beta2": factors[1], "gamma": gamma}

    def initial_values(self) -> dict[str, float]:
        return {**super().initial_values(), "d": 0.0}

    def extra_repr(self) -> str:
        shape = "per layer" if self.shape is None else tuple(self.shape)
        return f"shape={shape}, gamma={self.gamma:g}, " + super().extra_repr()

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # a per-layer checkpoint loads into a per-neuron module (the same neuron)
        _expand_per_layer_values(self, state_dict, prefix, ("decay",))
        super()._load_from_state_dict(state_dict, prefix, *args)
