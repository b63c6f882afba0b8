"""The IF neuron of converted networks: soft reset, spikes worth the threshold.

The classic recipe (methods.md 7.1) replaces a ReLU of scale ``s`` by ``x·θ/s -> IF(θ)
-> ·s``; with ``θ = s`` this is one IF neuron with threshold ``s`` and soft reset whose
spikes carry the value ``s``, which is what :class:`ConversionIFNode` computes. For QCFS
(methods.md 7.2) ``θ = λ`` and the membrane starts at ``λ/2``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from spikeflow.conversion._checks import (
    check_initial_membrane,
    check_threshold,
    threshold_repr,
)
from spikeflow.errors import ConfigurationError
from spikeflow.neurons.lif import IFNode

__all__ = ["ConversionIFNode", "check_initial_membrane"]


class ConversionIFNode(IFNode):
    """IF neuron with soft reset whose output is ``spike · θ`` (the ReLU's scale).

    ``H[t] = V[t-1] + X[t]``, ``S[t] = Θ(H[t] - θ)``, ``V[t] = H[t] - θ S[t]``, output
    ``θ S[t]``; the membrane starts at ``initial_membrane · θ``.

    Args:
        v_threshold: θ, a float or a tensor broadcastable to one step of the input
            (``[C, 1, 1]`` for per-channel thresholds of ``[B, C, H, W]``).
        initial_membrane: ``V[0] / θ``, in [0, 1) (0: the classic conversion; 0.5: QCFS).
        weighted: output ``θ·S`` (default) or the plain spikes ``S`` (when the next
            layer's weights carry θ, as in a converted network exported to NIR).
        **kwargs: other arguments of :class:`~spikeflow.neurons.IFNode` (``step_mode``,
            ``backend``, ...); ``v_reset`` is always ``None`` (soft reset).
    """

    def __init__(
        self,
        v_threshold: float | Tensor = 1.0,
        initial_membrane: float = 0.0,
        weighted: bool = True,
        **kwargs: object,
    ) -> None:
        if kwargs.get("v_reset", None) is not None:
            raise ConfigurationError("ConversionIFNode always resets by subtraction (v_reset=None)")
        kwargs.pop("v_reset", None)
        v_threshold = check_threshold(v_threshold, "ConversionIFNode")
        super().__init__(v_threshold=v_threshold, v_reset=None, **kwargs)  # type: ignore[arg-type]
        self.initial_membrane = check_initial_membrane(initial_membrane)
        self.weighted = bool(weighted)

    def initial_state(self, like: Tensor) -> dict[str, Tensor]:
        """Membrane ``initial_membrane · θ`` everywhere."""
        v = torch.zeros_like(like)
        if self.initial_membrane:
            v = (v + self.initial_membrane * self.v_threshold).to(like.dtype).contiguous()
        return {"v": v}

    def forward(self, x: Tensor) -> Tensor:
        """``θ · spikes`` (or the spikes, unweighted): ``[T, B, ...]`` in multi-step mode,
        ``[B, ...]`` in single-step."""
        # In the input's dtype, as the other conversion neurons: IFNode's spikes come out
        # promoted to float32 for a float16 input and a float32 per-channel θ (0/1 values,
        # exact in any dtype), and so would their product with θ.
        spikes = super().forward(x).to(x.dtype)
        if not self.weighted:
            return spikes
        return spikes * torch.as_tensor(self.v_threshold, dtype=x.dtype, device=x.device)

    def extra_repr(self) -> str:
        text = super().extra_repr()
        if isinstance(self.v_threshold, Tensor) and self.v_threshold.dim() == 0:
            # a converted network's per-layer θ is a buffer (its state dict holds it)
            text = text.replace(
                "v_threshold=tensor()", f"v_threshold={threshold_repr(self.v_threshold)}", 1
            )
        extra = f", initial_membrane={self.initial_membrane:g}"
        return text + extra + ("" if self.weighted else ", weighted=False")
