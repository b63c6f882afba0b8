"""``spikeflow train --spike-reg NAME --spike-reg-kwargs K=V``: a spike regulariser of
:mod:`spikeflow.losses.regularisers` added to the training loss.

The spiking layers' outputs of the training forward itself are recorded
(:class:`~spikeflow.losses.LayerSpikes`: no second forward), the term is computed on
them in float32 (under ``--amp`` too) and added to the loss before the backward pass.
``layers`` in the kwargs picks the recorded layers by name (IM-Loss's official code
leaves out the first and the last); the other keys are the regulariser's arguments.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from spikeflow.errors import ConfigurationError
from spikeflow.losses.regularisers import (
    LayerSpikes,
    event_rate,
    im_loss,
    l1_rate_sparsity,
    l2_spike_population,
)

__all__ = ["SPIKE_REGULARISERS", "SpikeRegulariser", "check_spike_reg"]

#: The ``--spike-reg`` names and their functions (``none``: off).
SPIKE_REGULARISERS: dict[str, Callable[..., Tensor]] = {
    "l1_rate_sparsity": l1_rate_sparsity,
    "l2_spike_population": l2_spike_population,
    "im_loss": im_loss,
    "event_rate": event_rate,
}

#: The training methods that run their own backward passes (per step, per window, by
#: a local rule or an adjoint): the term of one whole forward cannot join them.
_REFUSED = (
    ("online", "--online", "each step is backpropagated alone"),
    ("tbptt", "--tbptt", "each window is backpropagated alone"),
    ("eprop", "--eprop", "e-prop computes its gradients forward in time (it has its own "
     "rate regulariser: --eprop-rate-strength)"),
    ("decolle", "--decolle", "each layer learns a local loss"),
    ("eventprop", "--eventprop", "the adjoint gradients reach no hidden layer's spikes"),
    ("recompute", "--recompute", "recomputed blocks' recorded spikes carry no graph"),
    ("compile", "--compile", "the recording hooks keep autograd graphs, which "
     "torch.compile does not trace"),
)  # fmt: skip


def _split(kwargs: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
    """``(layers, the regulariser's own arguments)``."""
    rest = dict(kwargs)
    return rest.pop("layers", None), rest


def check_spike_reg(config: Any) -> None:
    """Raise a ConfigurationError naming what is wrong with ``config.spike_reg`` and
    ``config.spike_reg_kwargs``: an unknown name, kwargs without a regulariser, an
    argument the regulariser does not take or refuses, ``layers`` not a list of names,
    or a training method it cannot join."""
    name, kwargs = config.spike_reg, config.spike_reg_kwargs
    if name == "none":
        if kwargs:
            raise ConfigurationError(
                f"spike_reg_kwargs {kwargs} need a regulariser: add --spike-reg "
                f"({', '.join(SPIKE_REGULARISERS)})"
            )
        return
    if name not in SPIKE_REGULARISERS:
        raise ConfigurationError(
            f"spike_reg must be none or one of {', '.join(SPIKE_REGULARISERS)}; got {name!r}"
        )
    if not isinstance(kwargs, dict):
        raise ConfigurationError(f"spike_reg_kwargs must be a table (dict), got {kwargs!r}")
    layers, arguments = _split(kwargs)
    if layers is not None and (
        not isinstance(layers, list) or not layers or not all(isinstance(n, str) for n in layers)
    ):
        raise ConfigurationError(
            f"spike_reg_kwargs: layers must be a non-empty list of layer names, got {layers!r}"
        )
    function = SPIKE_REGULARISERS[name]
    taken = [p for p in inspect.signature(function).parameters if p != "spikes"]
    unknown = sorted(set(arguments) - set(taken))
    if unknown:
        raise ConfigurationError(
            f"spike_reg_kwargs: {name} takes {', '.join(taken)} (and layers), not "
            f"{', '.join(unknown)}"
        )
    function(torch.zeros(1, 1), **arguments)  # its own checks of the values, named
    for field, option, why in _REFUSED:
        value = getattr(config, field)
        if value not in (None, False):
            raise ConfigurationError(f"--spike-reg cannot be combined with {option}: {why}")


class SpikeRegulariser:
    """The term of ``config.spike_reg`` on the spikes ``model``'s last forward recorded.

    Args:
        model: the network trained (not a DDP or compiled wrapper: its layers are hooked).
        name: a :data:`SPIKE_REGULARISERS` name.
        kwargs: its arguments, with ``layers`` (names of the layers to record) if given.

    Raises:
        ConfigurationError: a name in ``layers`` that is not a spiking layer, or a model
            without spiking layers.
    """

    def __init__(self, model: nn.Module, name: str, kwargs: Mapping[str, Any]) -> None:
        layers, self.arguments = _split(kwargs)
        self.function = SPIKE_REGULARISERS[name]
        try:
            # event_rate budgets events of any size: sigma-delta units' graded deltas too
            self.recorder = LayerSpikes(model, layers, deltas=name == "event_rate")
        except ConfigurationError as exc:
            raise ConfigurationError(f"--spike-reg-kwargs layers: {exc}") from exc

    def __call__(self) -> Tensor:
        """The term on the spikes of the forward that just ran (float32); the recording
        is dropped after."""
        spikes = [s.float() for s in self.recorder.spikes.values()]
        self.recorder.clear()
        if not spikes:
            raise ConfigurationError(
                "--spike-reg: no recorded spiking layer ran in the training forward"
            )
        return self.function(spikes, **self.arguments)

    def clear(self) -> None:
        """Drop what the evaluation's forwards recorded."""
        self.recorder.clear()

    def remove(self) -> None:
        """Take the recording hooks off."""
        self.recorder.remove()
