"""A fully connected SNN with a learnable delay per synapse: the network of Hammouamri,
Khalfaoui-Hassani and Masquelier (ICLR 2024) for the Spiking Heidelberg Digits.

``hidden_layers`` x [DelayedLinear - BatchNorm1d - LIF - Dropout], then a DelayedLinear
to the classes read by a leaky integrator (no spikes): the output is the per-step
membrane ``[T, B, num_classes]``. The defaults are the authors' SHD settings: 256
neurons per layer, 2 hidden layers, delays up to 25 steps (250 ms at their 10 ms
steps), dropout 0.4, batch norm, no biases, LIF with ``tau = 1.005`` (10.05 ms in 10 ms
steps), no input decay, ATan surrogate with ``alpha = 5``, ``detach_reset``, and a
read-out of the same time constant. Their inputs are the 700 SHD channels binned by 5
(``in_features = 140``); any input ``[T, B, ...]`` is flattened per step. As in their
code, each DelayedLinear's input is extended by ``(K - 1) // 2`` zero steps, so that
inputs delayed past the end still reach the output: the output has
``T + (hidden_layers + 1) · (K - 1) // 2`` steps (``extend_time=False`` keeps ``T``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from spikeflow import layers
from spikeflow.errors import ConfigurationError
from spikeflow.models.common import (
    NeuronFactory,
    NeuronSpec,
    annotated_signature,
    check_bool_arguments,
    check_dense_net,
    check_positive_int,
    flat_steps,
)
from spikeflow.models.registry import register_model
from spikeflow.neurons import LINode

__all__ = ["DELAY_NEURON_DEFAULTS", "DelaySNN", "PadTime", "delay_snn"]

#: The authors' hidden neuron on SHD.
DELAY_NEURON_DEFAULTS: dict[str, Any] = {
    "tau": 1.005,
    "decay_input": False,
    "detach_reset": True,
    "surrogate_function": {"name": "atan", "alpha": 5.0},
}


class PadTime(nn.Module):
    """Append ``steps`` all-zero steps to a sequence ``[T, B, ...]`` (``0``: the
    identity). With steps, whole sequences only: streamed chunks would each get their
    own padding."""

    def __init__(self, steps: int) -> None:
        super().__init__()
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ConfigurationError(f"steps must be an integer >= 0, got {steps!r}")
        self.steps = steps

    @property
    def streamable(self) -> bool:
        """Whether chunks may stream through (only without padding)."""
        return self.steps == 0

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, ...]`` -> ``[T + steps, B, ...]``."""
        if self.steps == 0:
            return x
        return torch.cat([x, x.new_zeros(self.steps, *x.shape[1:])])

    def extra_repr(self) -> str:
        return f"steps={self.steps}"


class DelaySNN(nn.Module):
    """See the module docstring.

    Args:
        num_classes: output classes (20 for SHD).
        in_channels, input_size: the input's per-step shape ``[C, H, W]`` when
            ``in_features`` is not given (``C·H·W`` features).
        in_features: the number of input features per step (140 for binned SHD).
        hidden: neurons per hidden layer.
        hidden_layers: how many hidden layers.
        max_delay: the longest delay plus one, in steps (kernel length).
        sigma: the delay Gaussians' initial width (default ``max_delay // 2``).
        dropout: dropout after each hidden layer's spikes (mask shared over time).
        batch_norm: batch norm after each hidden DelayedLinear (else a bias there).
        readout_tau: the output leaky integrator's time constant (default: the hidden
            neurons' ``tau`` where they have one, else 1.005).
        extend_time: extend each DelayedLinear's input by ``(K - 1) // 2`` zero steps
            (the authors'; the network then runs on whole sequences only).
        neuron, neuron_kwargs: the hidden neurons, over :data:`DELAY_NEURON_DEFAULTS`.

    Raises:
        ConfigurationError: a bad argument (named), such as a ``batch_norm`` that is not
            True or False (the message of ``create_model("delay_snn", ...)``).
    """

    def __init__(
        self,
        num_classes: int = 20,
        in_channels: int = 1,
        input_size: int | tuple[int, int] | list[int] | None = None,
        in_features: int | None = None,
        hidden: int = 256,
        hidden_layers: int = 2,
        max_delay: int = 25,
        sigma: float | None = None,
        dropout: float = 0.4,
        batch_norm: bool = True,
        readout_tau: float | None = None,
        extend_time: bool = True,
        neuron: NeuronSpec = "lif",
        neuron_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.in_features = check_dense_net(
            "DelaySNN", num_classes, hidden, hidden_layers, dropout, in_features, in_channels,
            input_size,
        )  # fmt: skip
        # As create_model checks it, with its message (a string such as "False" is true).
        parameter = {"batch_norm": annotated_signature(DelaySNN).parameters["batch_norm"]}
        batch_norm = check_bool_arguments(
            parameter, {"batch_norm": batch_norm}, "model 'delay_snn'"
        )["batch_norm"]
        spiking = NeuronFactory(neuron, neuron_kwargs, defaults=DELAY_NEURON_DEFAULTS)
        if readout_tau is None:
            readout_tau = float((neuron_kwargs or {}).get("tau", DELAY_NEURON_DEFAULTS["tau"]))
        check_positive_int("max_delay", max_delay)
        if not isinstance(extend_time, bool):
            raise ConfigurationError(f"extend_time must be true or false; got {extend_time!r}")
        tail = (max_delay - 1) // 2 if extend_time else 0

        blocks: list[nn.Module] = []
        size = self.in_features
        for _ in range(hidden_layers):
            blocks += [
                PadTime(tail),  # (also without padding: the same state_dict keys)
                layers.DelayedLinear(size, hidden, max_delay, bias=not batch_norm, sigma=sigma),
                layers.BatchNorm1d(hidden) if batch_norm else nn.Identity(),
                spiking(),
                layers.Dropout(dropout) if dropout > 0 else nn.Identity(),
            ]
            size = hidden
        blocks += [
            PadTime(tail),
            layers.DelayedLinear(size, num_classes, max_delay, sigma=sigma),
            LINode(tau=readout_tau, decay_input=False),
        ]
        self.net = nn.Sequential(*blocks)
        for module in self.net.modules():  # the authors' initialisation of the weights
            if isinstance(module, layers.DelayedLinear):
                nn.init.kaiming_uniform_(module.weight, nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, ...]`` (``in_features`` values per step) -> ``[T', B, num_classes]``,
        ``T' = T + (hidden_layers + 1) · (K - 1) // 2`` (``T`` without ``extend_time``)."""
        return self.net(flat_steps("DelaySNN", x, self.in_features))

    def layer_steps(self, steps: int) -> dict[str, int]:
        """The number of steps of the input of each layer of ``net`` for an input of
        ``steps`` steps, by its name in ``named_modules()`` (``"net.3"``): ``steps`` plus
        the zero steps of the :class:`PadTime` layers before it. What ``spikeflow
        train`` checks a neuron built for a fixed number of steps against."""
        seen, out = steps, {}
        for index, module in enumerate(self.net):
            out[f"net.{index}"] = seen
            if isinstance(module, PadTime):
                seen += module.steps
        return out

    def output_steps(self, steps: int) -> int:
        """``T'``, the steps of the output for an input of ``steps`` steps (forward):
        ``steps`` plus the zero steps each :class:`PadTime` appends."""
        return steps + sum(m.steps for m in self.net if isinstance(m, PadTime))


@register_model("delay_snn")
def delay_snn(num_classes: int = 20, **kwargs: Any) -> DelaySNN:
    """The learnable-delay network (:class:`DelaySNN`); ``kwargs`` are its arguments."""
    return DelaySNN(num_classes=num_classes, **kwargs)
