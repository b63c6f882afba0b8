"""Training sigma-delta networks (SDNN) on Loihi's fixed-point grid.

:func:`~spikeflow.interop.export_netx` writes a sigma-delta network as Lava-DL's SDNN
blocks, and netx runs it as Lava's fixed-point ``Delta`` / ``SigmaDelta`` / ``Sigma``
processes (:class:`~spikeflow.interop.LoihiSigmaDeltaInput`,
:class:`~spikeflow.interop.LoihiSigmaDelta`). Their integers imply a float network with:

* weights on Lava-DL's 8-bit grid, ``clamp(2 round(32 w), -256, 254) / 64`` (the
  :class:`~spikeflow.quant.loihi_grid.LoihiWeightGrid` parametrization);
* biases on ``1/64`` with ``|64 b| < 2^11`` (:class:`LoihiBiasGrid`), thresholds
  ``int(64 θ) / 64`` and the input ``round(64 x) / 64``;
* each hidden unit's graded spike floored to ``2^-12`` (``d >> 6``), while its delta
  reference stays the activation it sent (the floored bits are lost, as in
  ``PySigmaDeltaModelFixed``).

:func:`loihi_sdnn_grid` puts a network on that grid (gradients pass straight through
every rounding), so that its float forward gives ``import_netx(export_netx(net))``'s
outputs exactly, divided by the output scale ``2^18``. See ``docs/loihi.md``.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.kernels.fused import functorch_active
from spikeflow.layers.sigma_delta import DeltaEncoder, DeltaSynapse, SigmaDecoder, SigmaDelta
from spikeflow.quant.loihi import WEIGHT_SCALE
from spikeflow.quant.loihi_grid import LoihiWeightGrid
from spikeflow.quant.weights import WeightQuantizer

__all__ = ["LoihiBiasGrid", "floor_graded_spikes", "loihi_sdnn_grid"]

#: A graded spike carries 2^12 integer units per unit of activation (``spike_exp = 6``
#: on inputs of 64 per unit).
SPIKE_SCALE = float(1 << 12)
#: The bias mantissa ``export_netx`` writes: ``|64 b| < 2^11`` (Lava holds ``bias << 12``
#: in its 24-bit activation state; ``interop.netx_layers.SDNN_BIAS_LIMIT``).
BIAS_LIMIT = (1 << 11) - 1
#: The finest grid of a sum: a weight (1/32) times a graded spike (2^-12).
_SUM_STEP_BITS = 17
#: Float significands: below ``2^(bits - 17)`` a sum on the ``2^-17`` grid is exact.
_SIGNIFICAND = {torch.float32: 24, torch.float64: 53}


class LoihiBiasGrid(nn.Module):
    """Biases on Lava's grid: ``b_q = clamp(round(64 b), -(2^11 - 1), 2^11 - 1) / 64``
    (the mantissa netx stores, ``bias_exp = 6``), gradient straight through the
    rounding and zero where the clamp cuts. A ``parametrize`` parametrization of a
    :class:`~spikeflow.layers.DeltaSynapse`'s ``bias`` (set by :func:`loihi_sdnn_grid`;
    ``parametrize.remove_parametrizations(synapse, "bias", leave_parametrized=True)``
    bakes it)."""

    def forward(self, bias: Tensor) -> Tensor:
        """The bias on the grid (straight-through gradient)."""
        level = torch.round(bias.detach() * WEIGHT_SCALE)
        inside = level.abs() <= BIAS_LIMIT
        grid = level.clamp(-BIAS_LIMIT, BIAS_LIMIT) / WEIGHT_SCALE
        return grid + torch.where(inside, bias - bias.detach(), torch.zeros_like(bias))

    def right_inverse(self, bias: Tensor) -> Tensor:
        """Assigning a bias stores it as it is (it is put on the grid when used)."""
        return bias


def floor_graded_spikes(spikes: Tensor) -> Tensor:
    """``floor(2^12 s) / 2^12``: a hidden unit's graded spikes as Lava's fixed-point
    ``SigmaDelta`` sends them (``d >> 6``), with the straight-through gradient."""
    floored = torch.floor(spikes.detach() * SPIKE_SCALE) / SPIKE_SCALE
    return floored + (spikes - spikes.detach())


def _floor_output(_module: nn.Module, _args: Any, out: Tensor) -> Tensor:
    """Forward hook of a hidden unit's delta encoder (its reference is left as sent)."""
    return floor_graded_spikes(out)


def _input_on_grid(_module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """Forward pre-hook of the input encoder: ``round(64 x) / 64`` (netx's ``Quantize``),
    straight through."""
    x = args[0] if args else None
    if not isinstance(x, Tensor) or not x.is_floating_point():
        return None  # the encoder's own check names the problem
    grid = torch.round(x.detach() * WEIGHT_SCALE) / WEIGHT_SCALE
    return (grid + (x - x.detach()), *args[1:])


def _refuse_inexact_sum(name: str, _module: nn.Module, _args: Any, out: Tensor) -> None:
    """Forward hook of each sigma: a ConfigurationError naming it where its sums (on the
    ``2^-17`` grid) are too large for the float dtype to hold them exactly, or the dtype
    cannot hold them at all (float16, bfloat16). Skipped where no value can be read."""
    if (
        not isinstance(out, Tensor)
        or out.numel() == 0
        or torch.compiler.is_compiling()
        or torch.jit.is_tracing()
        or functorch_active()
    ):
        return
    bits = _SIGNIFICAND.get(out.dtype)
    if bits is None:
        raise ConfigurationError(
            f"loihi_sdnn_grid: {name!r} sums in {out.dtype}, which cannot hold Loihi's "
            "sigma-delta states exactly: run the network in float32 or float64"
        )
    limit = float(1 << (bits - _SUM_STEP_BITS))
    peak = float(out.detach().abs().amax())
    if not peak < limit:  # (NaN too)
        raise ConfigurationError(
            f"loihi_sdnn_grid: {name!r} holds a sum of {peak:g}; in {out.dtype} sums on "
            f"Loihi's 2^-17 grid are exact only below {limit:g}: run in float64 or scale "
            "the weights or the input down"
        )


def _unit_theta(name: str, encoder: DeltaEncoder) -> None:
    """Refusals of a delta encoder the grid cannot hold (beyond the export's)."""
    if encoder.requires_grad:
        raise ConfigurationError(
            f"loihi_sdnn_grid: {name!r} learns its threshold, which would leave Loihi's "
            "grid (int(64 θ) / 64): build it with requires_grad=False"
        )


def _set_theta(encoder: DeltaEncoder, mantissa: int) -> None:
    theta = mantissa / WEIGHT_SCALE
    if isinstance(encoder.threshold, Tensor):
        encoder.threshold.fill_(theta)
    else:
        encoder.threshold = theta


def _check_synapse(name: str, module: nn.Module) -> nn.Module:
    """The weight layer of a synapse; refuses one quantized already."""
    layer = module.layer if isinstance(module, DeltaSynapse) else module
    for owner, key in ((layer, "weight"), (module, "bias")):
        if isinstance(owner, nn.Module) and parametrize.is_parametrized(owner, key):
            chain = list(getattr(owner.parametrizations, key))
            if any(isinstance(p, (LoihiWeightGrid, LoihiBiasGrid, WeightQuantizer)) for p in chain):
                kinds = ", ".join(type(p).__name__ for p in chain)
                raise ConfigurationError(
                    f"loihi_sdnn_grid: {name!r}: its {key} is quantized already ({kinds})"
                )
    return layer


def loihi_sdnn_grid(model: nn.Module, input_shape: tuple[int, ...] | None = None) -> list[str]:
    """Put a sigma-delta network on Loihi's fixed-point grid (see the module docstring);
    returns the names of the modules changed.

    The network is what :func:`~spikeflow.interop.export_netx` takes: an
    ``nn.Sequential`` (nested ones unrolled) ``DeltaEncoder`` → ``DeltaSynapse(Linear /
    Conv2d)`` (or the layer without bias) → ReLU ``SigmaDelta`` → … (``Flatten``
    between) → a last synapse without bias → ``SigmaDecoder``, as
    :func:`~spikeflow.conversion.to_sigma_delta` builds. Every check the export makes is
    made now, so a trained network always exports. Afterwards each weight has a
    :class:`~spikeflow.quant.loihi_grid.LoihiWeightGrid`, each bias a
    :class:`LoihiBiasGrid`, each threshold is ``int(64 θ) / 64``, the input is put on
    ``1/64`` and each hidden unit's graded spikes are floored to ``2^-12``, all with
    straight-through gradients; the float output times ``2^18`` is the fixed-point
    network's, exactly, while every sum stays below ``2^7`` in float32 (``2^36`` in
    float64; checked at each call on each sigma, naming it).

    Args:
        model: the sigma-delta network.
        input_shape: one sample's shape (``[C, H, W]`` or ``[K]``), as given to
            ``export_netx``; by default the first layer's ``(in_features,)`` (required
            when the first synapse is a convolution).

    Raises:
        ConfigurationError: what ``export_netx`` refuses (``cum_error``, per-neuron
            thresholds, a vThMant beyond 2^11 - 1, an activation other than ReLU, a bias on
            the output layer or one beyond |64 b| < 2^11, a module netx does not hold,
            a network not ending with a ``SigmaDecoder``, ...), a learned threshold, a
            layer already quantized, a convolution first without ``input_shape``.
    """
    from spikeflow.interop.netx import _blocks
    from spikeflow.interop.netx_sdnn import is_sdnn, sdnn_layers, sdnn_threshold_mantissa

    if not isinstance(model, nn.Sequential):
        raise ConfigurationError(
            f"loihi_sdnn_grid expects an nn.Sequential (as export_netx), got {type(model).__name__}"
        )
    names, modules = _blocks(model)
    if not is_sdnn(modules) or not isinstance(modules[0], DeltaEncoder):
        raise ConfigurationError(
            "loihi_sdnn_grid: a sigma-delta network starts with a DeltaEncoder (the netx "
            "input layer); for CUBA networks use quant.loihi_grid"
        )
    if input_shape is None:
        first = next((m for m in modules[1:] if not isinstance(m, SigmaDecoder)), None)
        inner = first.layer if isinstance(first, DeltaSynapse) else first
        if not isinstance(inner, nn.Linear):
            raise ConfigurationError(
                "loihi_sdnn_grid: the first synapse is not a Linear layer: give input_shape "
                "(one sample's [C, H, W]), as to export_netx"
            )
        input_shape = (inner.in_features,)
    shape_ok = isinstance(input_shape, (tuple, list)) and len(input_shape) in (1, 3)
    if not shape_ok or not all(
        isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in input_shape
    ):
        raise ConfigurationError(
            f"loihi_sdnn_grid: input_shape must be one sample's [K] or [C, H, W] as "
            f"positive ints, got {input_shape!r}"
        )
    encoders = [(names[0], modules[0])] + [
        (f"{n}.delta", m.delta)
        for n, m in zip(names, modules, strict=True)
        if isinstance(m, SigmaDelta)
    ]
    for name, encoder in encoders:
        _unit_theta(name, encoder)
    try:
        sdnn_layers(names, modules, tuple(input_shape))
    except (ConfigurationError, ShapeError) as error:
        raise ConfigurationError(
            f"loihi_sdnn_grid: export_netx would refuse this network (input_shape "
            f"{tuple(input_shape)}): {error}"
        ) from error
    synapses = [
        (n, m)
        for n, m in zip(names, modules, strict=True)
        if isinstance(m, (DeltaSynapse, nn.Linear, nn.Conv2d))
    ]
    layers = [(n, _check_synapse(n, m), m) for n, m in synapses]
    mantissas = {name: sdnn_threshold_mantissa(enc, name) for name, enc in encoders}
    changed: list[str] = []
    for name, layer, synapse in layers:
        parametrize.register_parametrization(layer, "weight", LoihiWeightGrid())
        if isinstance(synapse, DeltaSynapse) and synapse.bias is not None:
            parametrize.register_parametrization(synapse, "bias", LoihiBiasGrid())
        changed.append(name)
    for name, encoder in encoders:
        _set_theta(encoder, mantissas[name])
    modules[0].register_forward_pre_hook(_input_on_grid)
    changed.append(names[0])
    for name, module in zip(names, modules, strict=True):
        if isinstance(module, SigmaDelta):
            module.delta.register_forward_hook(_floor_output)
            module.sigma.register_forward_hook(functools.partial(_refuse_inexact_sum, name))
            changed.append(name)
        elif isinstance(module, SigmaDecoder):
            module.register_forward_hook(functools.partial(_refuse_inexact_sum, name))
            changed.append(name)
    return changed
