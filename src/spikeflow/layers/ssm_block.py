"""The spiking S4D block: an :class:`~spikeflow.layers.ssm.S4D` layer whose output drives
a spiking neuron, whose spikes a position-wise layer mixes across channels, with a
residual connection and layer normalisation around it.

This is the S4 residual block with S4D's GELU replaced by spiking neurons, as in the
spiking SSM papers' block diagrams (Stan & Rhodes' binary S4D; SpikingSSMs' S4D → LIF):

    z = S4D(x)  →  s = neuron(z)  →  dropout  →  mix(s)  (Linear, or Linear to 2H + GLU)
    x ← norm(x + mix(s))                  (post-norm, S4's default)
    x ← x + mix(s), with z = S4D(norm(x)) (pre-norm)

The mixing layer reads spikes, so its products are additions of weights (the sparse
synaptic computation these papers count); the residual stream and the S4D's input stay
real-valued, as in their architectures.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from spikeflow.base import StepMode, StepModule
from spikeflow.errors import ConfigurationError
from spikeflow.layers.ssm import S4D

__all__ = ["SpikingS4DBlock"]

_MIXERS = ("glu", "linear")


class SpikingS4DBlock(StepModule, nn.Module):
    """S4D → spiking neuron → mixing → residual and LayerNorm (module docstring).

    Input and output ``[T, B, d_model]`` (multi-step) or ``[B, d_model]`` (single-step,
    streaming: the S4D state and the neuron's state are carried).

    Args:
        d_model: channels ``H``.
        neuron: the spiking neuron module (multi-step, shape-agnostic): default a
            :class:`~spikeflow.neurons.LIFNode` (τ = 2, threshold 1, hard reset to 0).
        d_state: the S4D state size ``N``.
        mixer: ``"glu"`` (Linear ``H → 2H`` then GLU, S4's output layer) or ``"linear"``.
        prenorm: normalise the block's input (True) or its output (False, S4's default).
        dropout: dropout on the spikes before mixing.
        ssm_kwargs: more :class:`~spikeflow.layers.ssm.S4D` arguments (``dt_min``,
            ``dt_max``, ``init``, ``lr``).
        step_mode: ``'m'`` (default) or ``'s'``.
    """

    step_mode_parts = ("ssm", "neuron")

    def __init__(
        self,
        d_model: int,
        neuron: nn.Module | None = None,
        d_state: int = 64,
        mixer: Literal["glu", "linear"] = "glu",
        prenorm: bool = False,
        dropout: float = 0.0,
        ssm_kwargs: dict | None = None,
        step_mode: StepMode = "m",
    ) -> None:
        super().__init__()
        if mixer not in _MIXERS:
            raise ConfigurationError(f"mixer must be 'glu' or 'linear'; got {mixer!r}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigurationError(f"dropout must be in [0, 1); got {dropout}")
        if neuron is None:
            from spikeflow.neurons import LIFNode

            neuron = LIFNode()
        if not isinstance(neuron, nn.Module):
            raise ConfigurationError(f"neuron must be an nn.Module, got {type(neuron).__name__}")
        self.ssm = S4D(d_model, d_state, **(ssm_kwargs or {}))
        self.neuron = neuron
        self.dropout = nn.Dropout(dropout)
        if mixer == "glu":
            self.mix: nn.Module = nn.Sequential(nn.Linear(d_model, 2 * d_model), nn.GLU(-1))
        else:
            self.mix = nn.Linear(d_model, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.prenorm = prenorm
        self.step_mode = step_mode

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, d_model]`` (or ``[B, d_model]`` per step) → the same shape."""
        z = self.norm(x) if self.prenorm else x
        spikes = self.neuron(self.ssm(z))
        out = x + self.mix(self.dropout(spikes))
        return out if self.prenorm else self.norm(out)

    def extra_repr(self) -> str:
        return f"prenorm={self.prenorm}, step_mode={self.step_mode}"
