"""Loihi-friendly activations of Lava-DL's sigma-delta EfficientNet
(``lava.lib.dl.slayer.image_classification``): a piecewise-linear SiLU and ReLU1.

Lava-DL trains an EfficientNet whose SiLU and sigmoid gates are replaced by these
(distilled from the float network: its features layer by layer, then its softmax, which
:func:`spikeflow.losses.distillation_loss` at alpha 1 and temperature 1 is), then runs
it as a sigma-delta network on Loihi, where an activation is a function applied to the
accumulated value of a :class:`~spikeflow.layers.SigmaDelta` unit and piecewise-linear
functions are what the chip computes cheaply. :func:`~spikeflow.conversion.to_sigma_delta`
puts both modules inside such units, like ReLU.

* ``piecewise_linear_silu(x)``: ``x`` for ``x >= -0.5``; ``-0.1 (x + 5)`` for
  ``-5 <= x < -0.5`` (from 0 at -5 down to -0.45); ``0`` below ``-5``. SiLU's negative
  dip made of two lines; like Lava-DL's, it jumps from -0.45 to -0.5 at ``x = -0.5``.
  Gradient: 1, -0.1 and 0 on the three pieces.
* ``relu1(x)``: ``clamp(x, 0, 1)``, a bounded ReLU for the squeeze-and-excitation
  gates where the network had a sigmoid.

The modules take ``inplace`` as Lava-DL's take it through their ``*args, **kwargs``
(torchvision's EfficientNet builds its activations as ``activation_layer(inplace=True)``)
and, as theirs, always return a new tensor; any other argument is refused by name.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from spikeflow.errors import ConfigurationError, DTypeError

__all__ = ["PiecewiseLinearSiLU", "ReLU1", "piecewise_linear_silu", "relu1"]

#: Where the negative piece starts and ends, and its slope (Lava-DL's constants).
PL_SILU_FLOOR, PL_SILU_KNEE, PL_SILU_SLOPE = -5.0, -0.5, -0.1


def _check_float(x: object, name: str) -> None:
    if not isinstance(x, Tensor) or not x.is_floating_point():
        got = x.dtype if isinstance(x, Tensor) else type(x).__name__
        raise DTypeError(f"{name} expects a floating-point tensor, got {got}")


def piecewise_linear_silu(x: Tensor) -> Tensor:
    """Lava-DL's piecewise-linear SiLU of ``x`` (module docstring), elementwise; not in
    place.

    Raises:
        DTypeError: ``x`` is not a floating-point tensor.
    """
    _check_float(x, "piecewise_linear_silu")
    floored = x.clamp(min=PL_SILU_FLOOR)
    negative = PL_SILU_SLOPE * (floored - PL_SILU_FLOOR)
    return torch.where(x < PL_SILU_KNEE, negative, x)


def relu1(x: Tensor) -> Tensor:
    """``clamp(x, 0, 1)`` elementwise (Lava-DL's ReLU1).

    Raises:
        DTypeError: ``x`` is not a floating-point tensor.
    """
    _check_float(x, "relu1")
    return x.clamp(0.0, 1.0)


def _check_inplace(inplace: object, owner: str) -> bool:
    if not isinstance(inplace, bool):
        raise ConfigurationError(
            f"{owner}: inplace must be a bool (accepted as Lava-DL's and torchvision's "
            f"activations take it; the output is always a new tensor), got {inplace!r}"
        )
    return inplace


class PiecewiseLinearSiLU(nn.Module):
    """:func:`piecewise_linear_silu` as a module (Lava-DL's ``PiecewiseLinearSiLU``).

    Args:
        inplace: accepted for ``activation_layer(inplace=True)`` callers, as Lava-DL's
            accepts it; as there, the input is left alone and a new tensor returned.

    Raises:
        ConfigurationError: ``inplace`` is not a bool.
    """

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = _check_inplace(inplace, "PiecewiseLinearSiLU")

    def forward(self, x: Tensor) -> Tensor:
        """The activation of ``x``, any shape."""
        return piecewise_linear_silu(x)

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class ReLU1(nn.Module):
    """:func:`relu1` as a module (Lava-DL's ``ReLU1``).

    Args:
        inplace: accepted for ``activation_layer(inplace=True)`` callers, as
            :class:`PiecewiseLinearSiLU`; the input is left alone and a new tensor
            returned.

    Raises:
        ConfigurationError: ``inplace`` is not a bool.
    """

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = _check_inplace(inplace, "ReLU1")

    def forward(self, x: Tensor) -> Tensor:
        """The activation of ``x``, any shape."""
        return relu1(x)

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""
