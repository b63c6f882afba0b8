"""Non-spiking read-out neurons whose membrane over the whole sequence is decoded to one
value per neuron (SpikingJelly 2.0's ``NonSpikingBaseNode``, ``NonSpikingIFNode``,
``NonSpikingLIFNode``).

The membrane starts at 0 and integrates the input without firing::

    IF:   V[t] = V[t-1] + X[t]
    LIF:  V[t] = V[t-1] + (X[t] - V[t-1]) / tau

and ``decode`` turns the membranes ``V[0..T-1]`` (``[T, B, ...]``) into the output:

* ``None``: the membranes themselves, ``[T, B, ...]`` (SpikingJelly: a list of steps);
* ``"max-mem"``: ``max_t V[t]``;
* ``"max-abs-mem"``: whichever of ``max_t V[t]`` and ``min_t V[t]`` has the larger
  magnitude (the minimum on a tie);
* ``"mean-mem"``: ``mean_t V[t]``;
* ``"last-mem"``: ``V[T-1]``.

They are the decoders of population-coded actor networks in spiking reinforcement
learning (PopSAN, NoisySAN: :mod:`spikeflow.neurons.noisy`). The non-spiking LIF with
``decode=None`` is :class:`~spikeflow.neurons.LINode` (which also streams).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from spikeflow.base import SequenceOnly
from spikeflow.errors import ConfigurationError
from spikeflow.neurons.base import as_sequence, check_float_input
from spikeflow.neurons.current import _check_value

__all__ = [
    "DECODES",
    "NonSpikingBaseNode",
    "NonSpikingIFNode",
    "NonSpikingLIFNode",
    "check_decode",
    "decode_membrane",
]

#: The decodings of a non-spiking neuron's membrane sequence (besides ``None``).
DECODES = ("max-mem", "max-abs-mem", "mean-mem", "last-mem")
# SpikingJelly's spellings of "last-mem": NonSpikingBaseNode's and the noisy decoder's.
_ALIASES = {"last_mem": "last-mem", "last-me": "last-mem"}


def check_decode(decode: object) -> str | None:
    """``decode`` (``None`` or one of :data:`DECODES`; SpikingJelly's ``"last_mem"`` and
    ``"last-me"`` are taken for ``"last-mem"``), checked.

    Raises:
        ConfigurationError: any other value (SpikingJelly returns the membranes then).
    """
    if decode is None:
        return None
    if isinstance(decode, str):
        decode = _ALIASES.get(decode, decode)
        if decode in DECODES:
            return decode
    raise ConfigurationError(f"decode must be None or one of {', '.join(DECODES)}; got {decode!r}")


def decode_membrane(v_seq: Tensor, decode: str | None) -> Tensor:
    """The membranes ``v_seq`` (``[T, B, ...]``) decoded over time as ``decode`` says
    (module docstring); ``None`` returns ``v_seq``.

    Raises:
        ConfigurationError: an unknown ``decode``.
    """
    decode = check_decode(decode)
    if decode is None:
        return v_seq
    if decode == "max-mem":
        return v_seq.max(0).values
    if decode == "max-abs-mem":
        high, low = v_seq.max(0).values, v_seq.min(0).values
        return torch.where(high.abs() > low.abs(), high, low)
    if decode == "mean-mem":
        return v_seq.mean(0)
    return v_seq[-1]


class NonSpikingBaseNode(SequenceOnly, nn.Module):
    """Base class of the non-spiking decoders: a subclass gives :meth:`neuronal_charge`
    (the next membrane from the previous one and the input).

    Args:
        decode: how the membranes are decoded (module docstring); default ``None``.

    Raises:
        ConfigurationError: an unknown ``decode``.
    """

    sequence_reason = "its output is decoded from the membranes of the whole sequence"

    def __init__(self, decode: str | None = None) -> None:
        super().__init__()
        self.decode = check_decode(decode)

    def neuronal_charge(self, v: Tensor, x: Tensor) -> Tensor:
        """The membrane after input ``x`` (one step) from the previous membrane ``v``."""
        raise NotImplementedError

    def forward(self, x_seq: Tensor) -> Tensor:
        """The decoded membranes of ``x_seq`` (``[T, B, ...]``): ``[B, ...]``, or the
        membranes ``[T, B, ...]`` when ``decode`` is None.

        Raises:
            DTypeError: the input is not a floating-point tensor.
            ShapeError: it is not a time-major sequence with at least one step.
        """
        owner = type(self).__name__
        check_float_input(x_seq, owner)
        x_seq = as_sequence(x_seq, owner, "m")
        v = torch.zeros_like(x_seq[0])
        membranes = []
        for x_t in x_seq.unbind(0):
            v = self.neuronal_charge(v, x_t)
            membranes.append(v)
        return decode_membrane(torch.stack(membranes), self.decode)

    def extra_repr(self) -> str:
        return f"decode={self.decode!r}"


class NonSpikingIFNode(NonSpikingBaseNode):
    """Non-spiking IF: ``V[t] = V[t-1] + X[t]`` from 0, decoded (module docstring).

    Example::

        >>> NonSpikingIFNode(decode="max-mem")(torch.tensor([[1.0], [-2.0], [0.5]]))
        tensor([1.])
    """

    def neuronal_charge(self, v: Tensor, x: Tensor) -> Tensor:
        return v + x


class NonSpikingLIFNode(NonSpikingBaseNode):
    """Non-spiking LIF: ``V[t] = V[t-1] + (X[t] - V[t-1]) / tau`` from 0, decoded
    (module docstring).

    Args:
        tau: membrane time constant in steps, ``>= 1`` (default 2).
        decode: see the module docstring (default ``None``: the membranes).

    Raises:
        ConfigurationError: ``tau < 1`` or not finite, an unknown ``decode``.
    """

    def __init__(self, tau: float = 2.0, decode: str | None = None) -> None:
        super().__init__(decode)
        tau = _check_value("tau", tau, 1.0)
        if isinstance(tau, Tensor):
            raise ConfigurationError("NonSpikingLIFNode: tau must be a float, got a tensor")
        self.tau = tau

    def neuronal_charge(self, v: Tensor, x: Tensor) -> Tensor:
        return v + (x - v) / self.tau

    def extra_repr(self) -> str:
        return f"tau={self.tau:g}, decode={self.decode!r}"
