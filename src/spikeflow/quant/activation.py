"""Quantization of the real-valued input a spiking network's first layer takes.

Between spiking layers the activations are spikes (0 or 1: nothing to quantize) and a
neuron's membrane has its own register (:mod:`spikeflow.quant.membrane`). What is left
is the input of the first layer (direct encoding of an image, event counts per frame):
:func:`apply_input_quantization` rounds it to ``bits`` bits before the layer uses it::

    x_q = s·clamp(round(x/s), -Qn, Qp)      Qn = 0, Qp = 2^bits - 1     (unsigned)
                                            Qn = Qp = 2^(bits-1) - 1    (signed)

with a learned step (LSQ, :func:`~spikeflow.quant.lsq.lsq_quantize`: initialised from
the first batch as ``2·mean|x| / sqrt(Qp)``, of all processes' first batches in a
distributed training run, gradient scale ``1/sqrt(N·Qp)`` for ``N``
values per sample and step) or a fixed one (``step=``: ``1/255`` for 8-bit images in
``[0, 1]``, ``1`` for event counts). See ``docs/quantization.md``.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from spikeflow._checks import check_flag
from spikeflow.errors import ConfigurationError
from spikeflow.prune.reparam import prunable_layers
from spikeflow.quant.lsq import MIN_STEP, lsq_quantize
from spikeflow.quant.weights import is_integer_from

__all__ = ["InputQuantizer", "apply_input_quantization", "remove_input_quantization"]

#: Bits an input may have.
MIN_BITS, MAX_BITS = 2, 16


class InputQuantizer(nn.Module):
    """Quantizes a layer's input to ``bits`` bits (module doc).

    Args:
        bits: 2 to 16.
        signed: levels ``-q … q`` (``q = 2^(bits-1) - 1``) instead of ``0 … 2^bits - 1``.
        step: a fixed step; ``None`` (default) learns it (LSQ), initialised from the
            first input it sees (in training or not).
        sequence: the input is ``[T, B, ...]`` (a multi-step layer's): ``N``, the values
            per sample and step, leaves out the first two dims instead of one.

    ``integer_output`` (False): return the levels ``k`` (as floats) instead of ``k·s``,
    as an integer-only network takes them (:func:`~spikeflow.quant.fold_weight_scales`
    sets it on its copy).
    """

    def __init__(self, bits: int, signed: bool = False, step: float | None = None,
                 sequence: bool = True) -> None:  # fmt: skip
        super().__init__()
        if not is_integer_from(bits, MIN_BITS, MAX_BITS):
            raise ConfigurationError(
                f"input quantization: bits must be an integer from {MIN_BITS} to {MAX_BITS}, "
                f"got {bits!r}"
            )
        self.bits = int(bits)
        self.signed = check_flag("InputQuantizer", "signed", signed)
        self.sequence = check_flag("InputQuantizer", "sequence", sequence)
        self.high = 2 ** (self.bits - 1) - 1 if self.signed else 2**self.bits - 1
        self.low = -self.high if self.signed else 0
        self.integer_output = False
        self.learned = step is None
        if step is None:
            self.step = nn.Parameter(torch.tensor(1.0))
            self.register_buffer("initialized", torch.tensor(False))
        else:
            if (
                isinstance(step, (bool, np.bool_))
                or not isinstance(step, numbers.Real)
                or not (math.isfinite(step) and step > 0)
            ):
                raise ConfigurationError(
                    f"input quantization: step must be a positive finite number, got {step!r}"
                )
            # float64, so a float64 model keeps the step as given (module.to casts it).
            self.register_buffer("step", torch.tensor(float(step), dtype=torch.float64))
            self.register_buffer("initialized", torch.tensor(True))

    def _values_per_sample(self, x: Tensor) -> int:
        lead = 2 if self.sequence and x.dim() > 2 else 1
        return max(1, math.prod(x.shape[lead:]))

    @torch.no_grad()
    def _initialise(self, x: Tensor) -> None:
        if not torch.isfinite(x).all():
            raise ConfigurationError(
                "input quantization: the first input (which sets the initial step) has NaN "
                "or infinite values"
            )
        total = torch.stack([x.abs().double().sum(), torch.tensor(float(x.numel()),
                             dtype=torch.float64, device=x.device)])  # fmt: skip
        if self.training and _distributed():
            # Every process starts from the step of all processes' first batches (each
            # from its own would keep the copies' steps apart: DDP averages gradients).
            torch.distributed.all_reduce(total)
        mean = float(total[0] / total[1])
        self.step.fill_(2 * mean / math.sqrt(self.high) if mean > 0 else 1.0)
        self.initialized.fill_(True)

    def integers(self, x: Tensor) -> Tensor:
        """The integer levels (int32) of ``x``: ``x_q == k·step``."""
        step = self.step.detach().clamp(min=MIN_STEP).to(x.dtype)
        return torch.clamp(torch.round(x.detach() / step), self.low, self.high).to(torch.int32)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` quantized (LSQ's gradients to ``x`` and a learned step)."""
        if not x.is_floating_point():
            raise ConfigurationError(
                f"input quantization: the input must be floating point, got dtype {x.dtype}"
            )
        if not bool(self.initialized):
            self._initialise(x)
        if self.integer_output:
            return self.integers(x).to(x.dtype)
        g = 1.0 / math.sqrt(self._values_per_sample(x) * self.high) if self.learned else 1.0
        return lsq_quantize(x, self.step.to(x.dtype), self.low, self.high, g)

    def extra_repr(self) -> str:
        kind = "learned step (LSQ)" if self.learned else f"step={float(self.step)}"
        return f"bits={self.bits}, signed={self.signed}, {kind}"


def _distributed() -> bool:
    """Whether this process is one of several of a torch.distributed group."""
    dist = torch.distributed
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _quantize_input(layer: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """The forward pre-hook: the layer's first argument through its quantizer."""
    return (layer.input_quantizer(args[0]), *args[1:])


def apply_input_quantization(
    model: nn.Module,
    bits: int = 8,
    *,
    layer: nn.Module | None = None,
    signed: bool = False,
    step: float | None = None,
) -> str:
    """Quantize the input of ``layer`` (default: ``model``'s first linear or convolution
    layer, in the order they were registered) to ``bits`` bits; returns its name.

    The quantizer is the layer's child ``input_quantizer`` (its step is in the state
    dict), applied by a forward pre-hook. See :class:`InputQuantizer` for the arguments.

    Raises:
        ConfigurationError: no such layer, or its input quantized already.
    """
    found = list(prunable_layers(model))
    if layer is None:
        if not found:
            raise ConfigurationError("input quantization: the model has no linear or "
                                     "convolution layer")  # fmt: skip
        name, layer = found[0]
    else:
        names = [n for n, m in model.named_modules() if m is layer]
        if not names:
            raise ConfigurationError(
                f"input quantization: {type(layer).__name__} is not a layer of the model"
            )
        name = names[0]
    if layer._modules.get("input_quantizer") is not None:
        raise ConfigurationError(
            f"input quantization: the input of layer {name!r} is quantized already "
            f"({layer.input_quantizer}); remove_input_quantization first"
        )
    sequence = getattr(layer, "step_mode", "s") == "m"
    quantizer = InputQuantizer(bits, signed, step, sequence)
    weight = getattr(layer, "weight", None)
    if isinstance(weight, Tensor):
        quantizer = quantizer.to(device=weight.device, dtype=weight.dtype)
    layer.input_quantizer = quantizer
    layer.register_forward_pre_hook(_quantize_input)
    return name


def remove_input_quantization(model: nn.Module) -> list[str]:
    """Take the input quantizers (and their hooks) off ``model``'s layers; returns the
    layers' names."""
    removed = []
    for name, module in model.named_modules():
        if module._modules.get("input_quantizer") is None:
            continue
        del module.input_quantizer
        for key, hook in list(module._forward_pre_hooks.items()):
            if hook is _quantize_input:
                del module._forward_pre_hooks[key]
        removed.append(name)
    return removed


def input_quantizers(model: nn.Module) -> list[tuple[str, InputQuantizer]]:
    """``(layer name, quantizer)`` of each quantized input of ``model``."""
    return [(name, m.input_quantizer) for name, m in model.named_modules()
            if isinstance(m._modules.get("input_quantizer"), InputQuantizer)]  # fmt: skip
