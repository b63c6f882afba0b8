"""Lava-DL's k-winners-take-all block and time decimation, time-major.

* :class:`KWTA`: Lava-DL's ``slayer.block.*.KWTA`` (``AbstractKWTA``), a recurrent
  layer whose lateral weights ``R = (1 + a) I - 1`` (self-excitation ``a`` on the
  diagonal, ``-1`` elsewhere) and bias ``θ (N - 2K) / (N w_scale)`` let about ``K`` of
  the ``N`` neurons fire, trained with the neuron's surrogate gradient.
* :class:`TimeDecimation`: Lava-DL's ``block.*.TimeDecimation(factor)``, the mean of each
  run of ``factor`` steps (zero-padded at the end).

Lava-DL's blocks are time-last (``[N, C, T]``); these take spikeflow's ``[T, B, C]``.
Lava-DL's blocks also shift their output one step later (``delay_shift=True``): as for
spikeflow's other Lava-DL blocks, follow :class:`KWTA` with ``layers.Delay(1)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikeflow.base import MemoryModule, SequenceOnly, StepMode, check_time_major
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.layers._checks import check_int, check_real
from spikeflow.layers.recurrent import _RecurrentContainer

__all__ = ["KWTA", "TimeDecimation", "lava_quantize_8bit"]


def lava_quantize_8bit(value: Tensor, weight_scale: int = 64) -> Tensor:
    """Lava-DL's ``neuron.quantize_8bit``: ``clamp(round(w / s) s, -256 / w_scale,
    254 / w_scale)`` with ``s = 2 / w_scale`` (``torch.round``: halves to even), a
    straight-through gradient inside the clamp range and 0 outside it
    (``torch.clamp``'s). The bounds are the even integers -256 and 254 of its 8-bit
    weights, as ``quant.loihi_grid``'s."""
    step = 2.0 / weight_scale
    rounded = value + (torch.round(value.detach() / step) * step - value.detach())
    return rounded.clamp(-256.0 / weight_scale, 254.0 / weight_scale)


class KWTA(_RecurrentContainer):
    """Lava-DL's k-winners-take-all block (``slayer.block.cuba.KWTA``)::

        s[t] = f(W x[t] + R s[t-1] + b),   s[-1] = 0
        R = (1 + a) I - 1                   (a on the diagonal, -1 elsewhere)
        b = θ (N - 2K) / N / w_scale,       θ = int(threshold w_scale) / w_scale

    with ``f`` the spiking neuron (stepped once per step, its state carried), ``W`` a
    bias-free ``nn.Linear(in_features, out_features)`` (``self.synapse``), ``N =
    out_features`` neurons, ``K = num_winners`` and ``a`` the self-excitation, a
    parameter clamped to ``[0, 1]`` in place at every call (Lava-DL's ``clamp()``) and
    learned when ``requires_grad``. A neuron that fires inhibits the others by 1 and
    excites itself by ``a``, so on a steady input the neurons with the largest drive
    keep firing while the rest are held down. As in Lava-DL, the gradient through time
    flows through the fed-back spikes only (``detach_neuron_state``).

    Mapping (Lava-DL ``cuba.KWTA(neuron_params, in_neurons, out_neurons, num_winners,
    self_excitation=0.5, requires_grad=True)``): ``nn.Sequential(KWTA(CubaLIFNode(...,
    step_mode="s"), in_neurons, out_neurons, num_winners, self_excitation,
    threshold=θ), layers.Delay(1))`` with the ``CubaLIFNode`` of ``neuron_params`` (the
    ``cuba.Neuron`` row of docs/migration.md) and ``θ`` its ``threshold``; the
    ``Delay(1)`` is Lava-DL's ``delay_shift=True``. ``quantize=True`` (default) puts
    ``R`` and ``b`` on Lava-DL's 8-bit grid (:func:`lava_quantize_8bit`, as its block
    always does); ``W`` is not (``quant.loihi_grid(net)`` does that, as for ``Dense``).
    Differences: each multi-step call starts from ``s[-1] = 0`` and a fresh neuron
    (Lava-DL's neuron keeps its state from one batch to the next:
    ``functional.streaming`` carries it here, with ``s``); Lava-DL's fixed-point
    neuron forward and its spike derivative are not reproduced (the neuron's).

    Args:
        neuron: a per-step spiking neuron (``step_mode='s'``) on ``[B, out_features]``.
        in_features: size of the input's last dim.
        out_features: ``N``, the number of neurons.
        num_winners: ``K`` in ``[1, N]``.
        self_excitation: ``a``'s initial value in ``[0, 1]`` (default 0.5).
        threshold: ``θ`` of the bias; default the neuron's ``v_threshold`` (a float).
            Truncated to a multiple of ``1 / w_scale`` in ``b``, as Lava-DL's neuron
            keeps its threshold (so the CUBA mapping's ``θ + 0.01/4096`` gives ``θ``).
        weight_scale: Lava-DL's ``w_scale`` (default 64): the bias's divisor and the
            8-bit grid's scale.
        quantize: ``R`` and ``b`` on the 8-bit grid (default True).
        requires_grad: learn ``a`` (default True).
        detach_neuron_state: cut the gradient through the neuron's state from one step
            to the next (default True, Lava-DL's: its KWTA calls the neuron once per
            step, and the neuron stores its persistent state under ``no_grad``), so the
            gradient through time flows only through the fed-back spikes ``R s[t-1]``;
            ``False``: full BPTT through the neuron's state as well.
        step_mode: ``'m'`` (``[T, B, in_features]``, default) or ``'s'``.

    Raises:
        ConfigurationError: a size that is not a positive integer, ``num_winners``
            outside ``[1, out_features]``, ``self_excitation`` outside ``[0, 1]``, no
            float ``threshold`` to be found, or a flag that is not a bool.
        ShapeError: (at the call) an input that is not ``[T, B, in_features]`` (or
            ``[B, in_features]`` in single-step mode): flatten a ``[T, B, C, H, W]``
            input first, as Lava-DL's dense synapse covers ``C*H*W`` on NCHWT.
    """

    def __init__(
        self,
        neuron: nn.Module,
        in_features: int,
        out_features: int,
        num_winners: int,
        self_excitation: float = 0.5,
        threshold: float | None = None,
        weight_scale: int = 64,
        quantize: bool = True,
        requires_grad: bool = True,
        detach_neuron_state: bool = True,
        step_mode: StepMode = "m",
    ) -> None:
        super().__init__(neuron, step_mode)
        self.in_features = check_int("KWTA: in_features", in_features, 1)
        self.out_features = check_int("KWTA: out_features", out_features, 1)
        self.num_winners = check_int("KWTA: num_winners", num_winners, 1)
        if self.num_winners > self.out_features:
            raise ConfigurationError(
                f"KWTA: num_winners must be <= out_features ({self.out_features}), got "
                f"{num_winners}"
            )
        excitation = check_real("KWTA: self_excitation", self_excitation, 0.0, 1.0)
        self.weight_scale = check_int("KWTA: weight_scale", weight_scale, 1)
        if threshold is None:
            threshold = getattr(neuron, "v_threshold", None)
            if isinstance(threshold, Tensor) or threshold is None:
                raise ConfigurationError(
                    "KWTA: pass threshold (Lava-DL's neuron threshold θ of the bias): the "
                    f"neuron {type(neuron).__name__} has no float v_threshold"
                )
        self.threshold = check_real("KWTA: threshold", threshold)
        flags = (
            ("quantize", quantize),
            ("requires_grad", requires_grad),
            ("detach_neuron_state", detach_neuron_state),
        )
        for name, flag in flags:
            if not isinstance(flag, bool):
                raise ConfigurationError(f"KWTA: {name} must be True or False, got {flag!r}")
        self.quantize = quantize
        self.detach_neuron_state = detach_neuron_state
        self.synapse = nn.Linear(self.in_features, self.out_features, bias=False)
        self.self_excitation = nn.Parameter(
            torch.tensor(excitation, dtype=torch.get_default_dtype()),
            requires_grad=requires_grad,
        )
        self.register_buffer("eye", torch.eye(self.out_features), persistent=False)

    def recurrent_weight(self) -> Tensor:
        """``R = (1 + a) I - 1`` as this call applies it (on the grid if ``quantize``)."""
        weight = (1.0 + self.self_excitation) * self.eye.to(self.self_excitation.dtype) - 1.0
        return lava_quantize_8bit(weight, self.weight_scale) if self.quantize else weight

    def recurrent_bias(self) -> Tensor:
        """``b = θ (N - 2K) / N / w_scale`` (on the grid if ``quantize``), with ``θ``
        truncated to a multiple of ``1 / w_scale`` as Lava-DL's neuron stores its
        threshold (``int(θ w_scale) / w_scale``)."""
        n, k, scale = self.out_features, self.num_winners, self.weight_scale
        theta = math.trunc(self.threshold * scale) / scale
        value = theta * (n - 2 * k) / n / scale
        bias = torch.tensor(value, dtype=self.self_excitation.dtype, device=self.eye.device)
        return lava_quantize_8bit(bias, self.weight_scale) if self.quantize else bias

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, in_features]`` (multi-step) or one step ``[B, in_features]`` to the
        spikes ``[T, B, out_features]`` (or ``[B, out_features]``)."""
        with torch.no_grad():  # Lava-DL's clamp(): a stays in [0, 1]
            self.self_excitation.clamp_(0.0, 1.0)
        self._weight = self.recurrent_weight()
        self._bias = self.recurrent_bias()
        try:
            return super().forward(x)
        finally:
            del self._weight, self._bias

    def _drive(self, x_seq: Tensor) -> Tensor:
        if x_seq.dim() != 3:  # one competition over all N neurons, as Lava-DL's
            expected = "[T, B, in_features]" if self.step_mode == "m" else "[B, in_features]"
            shape = tuple(x_seq.shape if self.step_mode == "m" else x_seq.shape[1:])
            raise ShapeError(
                f"KWTA expects {expected}, got {shape}: flatten the feature dims first "
                "(nn.Flatten(2) on [T, B, C, H, W]); Lava-DL's KWTA on NCHWT is dense "
                "over C*H*W, with one competition among its out_neurons"
            )
        if x_seq.shape[-1] != self.in_features:
            raise ShapeError(
                f"KWTA(in_features={self.in_features}) got an input whose last dim is "
                f"{x_seq.shape[-1]} (shape {tuple(x_seq.shape)})"
            )
        return self.synapse(x_seq)

    def _initial_output(self, x_t: Tensor) -> Tensor:
        return x_t.new_zeros((*x_t.shape[:-1], self.out_features))

    def _output_shape(self, step_shape: torch.Size) -> torch.Size:
        return torch.Size((*step_shape[:-1], self.out_features))

    def _step(self, drive: Tensor, y: Tensor) -> Tensor:
        if self.detach_neuron_state:  # Lava-DL's state from the last step: no gradient
            for module in self.sub_module.modules():
                if isinstance(module, MemoryModule):
                    module.detach()
        return drive + F.linear(y, self._weight) + self._bias

    def _check_output(self, y: Tensor, x_t: Tensor) -> None:
        expected = (*x_t.shape[:-1], self.out_features)
        if not isinstance(y, Tensor) or tuple(y.shape) != expected:
            shape = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
            raise ShapeError(
                f"KWTA(out_features={self.out_features}): the neuron returned {shape} for "
                f"one step, expected {expected}"
            )

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"num_winners={self.num_winners}, threshold={self.threshold}, "
            f"weight_scale={self.weight_scale}, quantize={self.quantize}, "
            f"detach_neuron_state={self.detach_neuron_state}, "
            f"step_mode={self.step_mode}"
        )


class TimeDecimation(SequenceOnly, nn.Module):
    """Lava-DL's ``block.*.TimeDecimation(factor)``: the mean of each run of ``factor``
    steps, ``[T, B, ...]`` → ``[ceil(T / factor), B, ...]``.

    Output step ``i`` is ``(x[i f] + ... + x[i f + f - 1]) / f``; an incomplete last run
    is padded with zeros (and still divided by ``f``), as Lava-DL's. Lava-DL asks for a
    power of two; any ``factor >= 1`` is taken here. For sums instead of means:
    :class:`~spikeflow.layers.TemporalBinSum`.

    Args:
        factor: steps per output step (an int >= 1).

    Raises:
        ConfigurationError: ``factor`` is not an int >= 1.
        DTypeError, ShapeError: (at the call) an input that is not a floating-point
            ``[T, B, ...]`` tensor with ``T >= 1``.
    """

    sequence_reason = "it changes the number of time steps"

    def __init__(self, factor: int) -> None:
        super().__init__()
        self.factor = check_int("TimeDecimation: factor", factor, 1)

    def forward(self, x_seq: Tensor) -> Tensor:
        """The means ``[ceil(T / factor), B, ...]``."""
        if not isinstance(x_seq, Tensor) or not x_seq.is_floating_point():
            what = x_seq.dtype if isinstance(x_seq, Tensor) else type(x_seq).__name__
            raise DTypeError(f"TimeDecimation expects a floating-point tensor, got {what}")
        check_time_major(x_seq, "TimeDecimation", single_step=False)
        if x_seq.shape[0] == 0:
            raise ShapeError(f"TimeDecimation: the input has no time steps {tuple(x_seq.shape)}")
        missing = -x_seq.shape[0] % self.factor
        if missing:
            x_seq = torch.cat([x_seq, x_seq.new_zeros(missing, *x_seq.shape[1:])])
        return x_seq.unflatten(0, (-1, self.factor)).mean(dim=1)

    def extra_repr(self) -> str:
        return f"factor={self.factor}"
