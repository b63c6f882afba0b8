"""Bellec et al.'s LIF/ALIF network (:class:`~spikeflow.learn.EPropRSNN`) as a zoo model
for ``spikeflow train``: ``--model eprop_rsnn`` trains it by BPTT, ``--eprop FEEDBACK``
by e-prop (:class:`~spikeflow.learn.EProp`, forward in time; docs/training_methods.md).

Its input ``[T, B, ...]`` is flattened per step, and its output is the readout ``y``
of every step ``[T, B, num_classes]`` (the spikes are not returned: the network's
``forward`` returns both, this model the readout alone).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from spikeflow.learn.eprop_network import EPropRSNN
from spikeflow.models.common import flat_features, flat_steps
from spikeflow.models.registry import register_model

__all__ = ["EPropRSNNClassifier", "eprop_rsnn"]


class EPropRSNNClassifier(EPropRSNN):
    """:class:`~spikeflow.learn.EPropRSNN` read as a classifier (module docstring).

    Args:
        num_classes: readouts ``K``.
        in_channels, input_size: the per-step input shape ``[C, H, W]`` when
            ``in_features`` is not given (``C·H·W`` features).
        in_features: inputs per step.
        n_lif, n_alif, tau, tau_adapt, beta, v_threshold, tau_out, gamma_pd,
            refractory, decay_input: as :class:`~spikeflow.learn.EPropRSNN` (here 100
            LIF and 100 ALIF neurons by default, Bellec's TIMIT-sized network halved).
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        input_size: int | tuple[int, int] | list[int] | None = None,
        in_features: int | None = None,
        n_lif: int = 100,
        n_alif: int = 100,
        tau: float = 20.0,
        tau_adapt: float = 200.0,
        beta: float = 0.07,
        v_threshold: float = 1.0,
        tau_out: float = 20.0,
        gamma_pd: float = 0.3,
        refractory: int = 0,
        decay_input: bool = False,
    ) -> None:
        features = flat_features("eprop_rsnn", in_features, in_channels, input_size)
        super().__init__(
            features, num_classes, n_lif, n_alif, tau=tau, tau_adapt=tau_adapt, beta=beta,
            v_threshold=v_threshold, tau_out=tau_out, gamma_pd=gamma_pd,
            refractory=refractory, decay_input=decay_input,
        )  # fmt: skip

    def flat_input(self, x: Tensor) -> Tensor:
        """``x`` ``[T, B, ...]`` as ``[T, B, in_features]`` (a ShapeError if it does not fit)."""
        return flat_steps("eprop_rsnn", x, self.in_features)

    def forward(  # type: ignore[override]
        self, x: Tensor, *, detach_recurrent: bool = False, detach_reset: bool = False
    ) -> Tensor:
        """The readout ``[T, B, num_classes]`` of ``x`` ``[T, B, ...]`` (flags: as
        :meth:`spikeflow.learn.EPropRSNN.forward`)."""
        flags = {"detach_recurrent": detach_recurrent, "detach_reset": detach_reset}
        return super().forward(self.flat_input(x), **flags).y


@register_model("eprop_rsnn")
def eprop_rsnn(num_classes: int = 10, **kwargs: Any) -> EPropRSNNClassifier:
    """Bellec et al.'s LIF/ALIF network as a classifier (:class:`EPropRSNNClassifier`);
    ``kwargs`` are its arguments."""
    return EPropRSNNClassifier(num_classes=num_classes, **kwargs)
