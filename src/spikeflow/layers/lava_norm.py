"""Lava-DL's neuron normalisations (``slayer.neuron.norm``) on time-major input.

Lava-DL normalises a neuron's input (its ``norm`` argument) with statistics taken over
the batch, time and space of each channel, kept as running estimates for evaluation:
the mean becomes a negative bias of the neuron on the chip, and
:class:`WgtScaleBatchNorm`'s scale a power of two (a weight exponent). Here they are
layers placed before the neuron, on ``[T, B, C, ...]`` (Lava-DL's ``[N, C, ..., T]``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from spikeflow._checks import check_real
from spikeflow.errors import ConfigurationError, ShapeError

__all__ = ["MeanOnlyBatchNorm", "WgtScaleBatchNorm"]


def _check_input(owner: str, x: object, num_features: int | None) -> Tensor:
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise ShapeError(f"{owner} expects a floating-point tensor [T, B, C, ...], got {x!r}")
    if x.dim() < 3:
        raise ShapeError(f"{owner} expects time-major input [T, B, C, ...], got {tuple(x.shape)}")
    if num_features is not None and x.shape[2] != num_features:
        raise ShapeError(
            f"{owner}: num_features is {num_features} but the input [T, B, C, ...] has "
            f"{x.shape[2]} channels (shape {tuple(x.shape)})"
        )
    return x


def _channel_mean(x: Tensor) -> Tensor:
    """The mean of each channel over time, batch and space."""
    return x.transpose(0, 2).reshape(x.shape[2], -1).mean(dim=1)


def _per_channel(value: Tensor, x: Tensor) -> Tensor:
    return value.view(1, 1, -1, *([1] * (x.dim() - 3)))


def _check_common(owner: str, num_features: object, momentum: object) -> tuple[int | None, float]:
    if num_features is not None and (
        isinstance(num_features, bool) or not isinstance(num_features, int) or num_features < 1
    ):
        raise ConfigurationError(
            f"{owner}: num_features must be an int >= 1 or None, got {num_features!r}"
        )
    return num_features, check_real(f"{owner}: momentum", momentum, 0.0, 1.0)


class MeanOnlyBatchNorm(nn.Module):
    """Lava-DL's ``slayer.neuron.norm.MeanOnlyBatchNorm``: subtract each channel's mean.

    In training, ``m`` is the mean of each channel over time, batch and space of this
    input (gradient through it), and ``running_mean ← (1 − momentum) running_mean +
    momentum m``; in evaluation (or with ``update = False``) ``m`` is ``running_mean``.
    The output is ``x − pre_hook_fx(m)``. ``bias`` is the neuron bias it stands for,
    ``−running_mean``.

    Args:
        num_features: the channels ``C`` of ``[T, B, C, ...]``; ``None`` (Lava-DL's
            default) takes them from the first input.
        momentum: of the running mean, in [0, 1] (default 0.1).
        pre_hook_fx: applied to the mean before it is subtracted (Lava-DL's hook for
            a quantisation), or ``None``.

    Raises:
        ConfigurationError: a bad ``num_features`` or ``momentum``.
        ShapeError (at the call): input that is not ``[T, B, C, ...]`` or whose ``C``
            is not ``num_features``.
    """

    def __init__(
        self,
        num_features: int | None = None,
        momentum: float = 0.1,
        pre_hook_fx: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        super().__init__()
        self.num_features, self.momentum = _check_common(
            type(self).__name__, num_features, momentum
        )
        self.pre_hook_fx = pre_hook_fx
        self.register_buffer("running_mean", torch.zeros(num_features or 1))
        self.update = True

    def _hook(self, mean: Tensor) -> Tensor:
        return mean if self.pre_hook_fx is None else self.pre_hook_fx(mean)

    @property
    def bias(self) -> Tensor:
        """The neuron bias it stands for: ``−running_mean``."""
        return -self.running_mean

    def _subtract_mean(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The checked input and ``x − pre_hook_fx(mean)``: this input's channel means
        (``running_mean`` updated) in training with ``update``, else ``running_mean``."""
        x = _check_input(type(self).__name__, x, self.num_features)
        if self.num_features is None:
            self.num_features = x.shape[2]
        if self.training and self.update:
            mean = _channel_mean(x)
            with torch.no_grad():
                self.running_mean = (1 - self.momentum) * self.running_mean + self.momentum * mean
        else:
            mean = self.running_mean
        return x, x - _per_channel(self._hook(mean), x)

    def forward(self, x: Tensor) -> Tensor:
        """``x − pre_hook_fx(mean)`` per channel (see the class docstring)."""
        return self._subtract_mean(x)[1]

    def _load_from_state_dict(
        self, state_dict: dict[str, object], prefix: str, *args: object, **kwargs: object
    ) -> None:
        """As ``nn.Module``'s; a norm built with ``num_features=None`` (Lava-DL's default)
        and not yet called takes its channels from the saved ``running_mean``, as its
        first input would have given them (else a saved, trained norm would not load)."""
        saved = state_dict.get(prefix + "running_mean")
        if (
            self.num_features is None
            and isinstance(saved, Tensor)
            and saved.dim() == 1
            and saved.shape != self.running_mean.shape
        ):
            self.running_mean = self.running_mean.new_zeros(saved.shape)
            self.num_features = saved.numel()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)  # type: ignore[arg-type]

    def extra_repr(self) -> str:
        return f"num_features={self.num_features}, momentum={self.momentum:g}"


class WgtScaleBatchNorm(MeanOnlyBatchNorm):
    """Lava-DL's ``slayer.neuron.norm.WgtScaleBatchNorm``: subtract each channel's mean
    and divide by a power of two.

    As :class:`MeanOnlyBatchNorm` for the mean; the scale is one for the whole layer:
    in training ``v`` is the variance of the whole input (all channels, biased) and
    ``running_var ← (1 − momentum) running_var + momentum v n / (n + 1)`` with ``n`` the
    elements per channel (Lava-DL's update); in evaluation ``v = running_var``. The
    output is ``(x − pre_hook_fx(m)) / 2^e`` with ``e = clamp(ceil(log2 sqrt(v + eps)),
    −weight_exp_bits, weight_exp_bits)`` (no gradient through ``e``); ``weight_exp`` is
    ``ceil(log2 sqrt(running_var + eps))`` (unclamped, as Lava-DL's property).

    Lava-DL computes ``2^e`` as ``torch.ones(1) << e`` on float tensors, which recent
    PyTorch refuses (and which would not give fractions for ``e < 0``); this is the
    power of two it stands for.

    Args:
        num_features, momentum, pre_hook_fx: as :class:`MeanOnlyBatchNorm`.
        weight_exp_bits: the largest exponent magnitude, an int >= 0 (default 3).
        eps: added to the variance, > 0 (default 1e-5).

    Raises:
        ConfigurationError: as :class:`MeanOnlyBatchNorm`, or a bad
            ``weight_exp_bits`` or ``eps``.
    """

    def __init__(
        self,
        num_features: int | None = None,
        momentum: float = 0.1,
        weight_exp_bits: int = 3,
        eps: float = 1e-5,
        pre_hook_fx: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        super().__init__(num_features, momentum, pre_hook_fx)
        owner = type(self).__name__
        if (
            isinstance(weight_exp_bits, bool)
            or not isinstance(weight_exp_bits, int)
            or weight_exp_bits < 0
        ):
            raise ConfigurationError(
                f"{owner}: weight_exp_bits must be an int >= 0, got {weight_exp_bits!r}"
            )
        self.weight_exp_bits = weight_exp_bits
        self.eps = check_real(f"{owner}: eps", eps, 0.0, low_open=True)
        self.register_buffer("running_var", torch.zeros(1))

    def std(self, var: Tensor) -> Tensor:
        """The power of two the input is divided by for variance ``var``."""
        exponent = torch.ceil(torch.log2(torch.sqrt(var + self.eps)))
        return 2.0 ** exponent.clamp(-self.weight_exp_bits, self.weight_exp_bits)

    @property
    def weight_exp(self) -> Tensor:
        """``ceil(log2 sqrt(running_var + eps))``."""
        return torch.ceil(torch.log2(torch.sqrt(self.running_var + self.eps)))

    def forward(self, x: Tensor) -> Tensor:
        """``(x − pre_hook_fx(mean)) / 2^e`` (see the class docstring)."""
        x, centred = self._subtract_mean(x)
        if self.training and self.update:
            var = torch.var(x, unbiased=False)
            n = x.numel() / x.shape[2]
            with torch.no_grad():
                self.running_var = (
                    1 - self.momentum
                ) * self.running_var + self.momentum * var * n / (n + 1)
        else:
            var = self.running_var
        return centred / self.std(var.detach())

    def extra_repr(self) -> str:
        return super().extra_repr() + f", weight_exp_bits={self.weight_exp_bits}, eps={self.eps:g}"
