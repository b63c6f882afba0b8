"""Learnable synaptic delays: a fully connected layer whose every synapse has its own
trainable delay (Hammouamri, Khalfaoui-Hassani and Masquelier, ICLR 2024, "Learning
Delays in Spiking Neural Networks using Dilated Convolutions with Learnable Spacings").

Synapse ``i -> o`` has a weight ``w[o, i]`` and a real delay ``d[o, i]`` in
``[0, max_delay - 1]`` steps. It acts as a temporal kernel over the last ``max_delay``
inputs: a Gaussian of width ``σ`` centred on ``d``, normalised to sum 1 and scaled by
``w``, so the output is

    y[t, o] = b[o] + Σ_i Σ_k w[o, i] g_σ(k - d[o, i]) x[t - k, i]

(inputs before the first step are zero). A wide Gaussian lets the gradient reach delays
far from where they start; ``σ`` is then narrowed during training (the authors' kernels
go from ``K // 2 + 0.27`` to 0.5 over the first quarter of the epochs,
:func:`delay_sigma`), and for inference the delays may be rounded to whole steps with
``σ = 0`` (:func:`round_delays`), when each synapse is a pure shift by ``d`` steps.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from spikeflow._checks import check_int
from spikeflow.base import MemoryModule, StepMode
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.layers.axonal_delay import AxonalDelay

__all__ = ["DelayedLinear", "clamp_delays", "delay_sigma", "round_delays", "set_delay_sigma"]

#: The authors' Gaussians are ``|s| + 0.27`` wide, ``s`` decayed from ``K // 2`` to 0.23:
#: widths from ``K // 2 + 0.27`` to 0.5 (DCLS's Gaussian kernel).
SIGMA_OFFSET = 0.27
FINAL_SIGMA = 0.23 + SIGMA_OFFSET


class DelayedLinear(MemoryModule):
    """A linear layer with a learnable delay per synapse (see the module docstring).

    Input ``[T, B, in_features]`` (multi-step) or ``[B, in_features]`` (single-step,
    streaming); output of the same form with ``out_features``. The last
    ``max_delay - 1`` inputs are carried state: while streaming, single steps and
    chunks continue the sequence exactly as one long call; otherwise each multi-step
    call starts from zero inputs.

    The kernel reads the delays clamped to ``[0, max_delay - 1]``; call
    :func:`clamp_delays` after each optimizer step (``spikeflow train`` does, as the
    authors do) so that a delay pushed past an end stays at that end, free to come back.

    Args:
        in_features: input size.
        out_features: output size.
        max_delay: the kernel length ``K``: delays range over ``[0, K - 1]`` steps.
        bias: add a learnable bias (the authors use none, with batch norm after).
        sigma: the initial width of the delay Gaussians in steps; default
            ``K // 2 + 0.27`` (the authors'). ``0`` gives hard integer delays
            (``round(d)``), through which no gradient reaches the delays.
        step_mode: ``'m'`` (default) or ``'s'``.

    Attributes:
        weight: ``[out_features, in_features]``, Kaiming-uniform as ``nn.Linear``.
        delay: ``[out_features, in_features]`` delays in steps, uniform over
            ``[0, K - 1]`` at initialisation.
        sigma: the current width (a buffer: checkpoints carry it).

    Raises:
        ConfigurationError: a size or ``max_delay`` below 1, a negative or non-finite
            ``sigma``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        max_delay: int,
        bias: bool = False,
        sigma: float | None = None,
        step_mode: StepMode = "m",
    ) -> None:
        super().__init__(step_mode)
        self.in_features = check_int("in_features", in_features, 1)
        self.out_features = check_int("out_features", out_features, 1)
        self.max_delay = check_int("max_delay", max_delay, 1)
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.delay = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        initial = max_delay // 2 + SIGMA_OFFSET if sigma is None else _check_sigma(sigma)
        self.register_buffer("sigma", torch.tensor(initial))
        self.initial_sigma = initial
        self.reset_parameters()

    @property
    def temporal_only(self) -> str:
        """Why the input reaches the output (mostly) through carried state ('' if it
        does not): online training (SLTT) drops those gradient paths."""
        if self.max_delay > 1:
            return "reaches its output mostly through delays of one or more steps"
        return ""

    def reset_parameters(self) -> None:
        """Weights (and bias) as ``nn.Linear`` initialises them; delays uniform."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features)
            nn.init.uniform_(self.bias, -bound, bound)
        nn.init.uniform_(self.delay, 0.0, float(self.max_delay - 1))

    def kernel(self) -> Tensor:
        """The synapses' temporal kernels ``[out, in, K]``: entry ``k`` weighs the input
        ``k`` steps back."""
        K = self.max_delay
        steps = torch.arange(K, dtype=self.delay.dtype, device=self.delay.device)
        delay = self.delay.clamp(0, K - 1)
        # σ stays a tensor (no host sync, no graph break under torch.compile): σ = 0 takes
        # the one-hot of the rounded delay, σ > 0 the normalised Gaussian.
        sigma = self.sigma.to(delay.dtype)
        soft = sigma > 0
        width = torch.where(soft, sigma, torch.ones_like(sigma))
        gauss = torch.exp(-0.5 * ((steps - delay.unsqueeze(-1)) / width) ** 2)
        gauss = gauss / (gauss.sum(-1, keepdim=True) + 1e-7)
        hard = nn.functional.one_hot(delay.detach().round().long(), K).to(gauss.dtype)
        return self.weight.unsqueeze(-1) * torch.where(soft, gauss, hard)

    def forward(self, x: Tensor) -> Tensor:
        """The delayed weighted sum of ``x`` (``[T, B, in]``, or ``[B, in]`` per step)."""
        seq = x if self.step_mode == "m" else x.unsqueeze(0)
        if seq.dim() != 3 or seq.shape[-1] != self.in_features:
            form = "[T, B, in_features]" if self.step_mode == "m" else "[B, in_features]"
            raise ShapeError(
                f"{type(self).__name__} expects {form} with in_features = "
                f"{self.in_features}; got shape {tuple(x.shape)}"
            )
        K, n = self.max_delay, seq.shape[0]
        state = self._carried_state(seq.shape[1:])
        history = seq.new_zeros(K - 1, *seq.shape[1:]) if state is None else state["history"]
        padded = torch.cat([history, seq])  # [K - 1 + T, B, in]
        self._keep_state({"history": padded[n:]})
        # conv1d correlates: tap j of the flipped kernel reads the input K - 1 - j back
        weight = self.kernel().flip(-1)
        y = nn.functional.conv1d(padded.permute(1, 2, 0), weight, self.bias)  # [B, out, T]
        y = y.permute(2, 0, 1)
        return y if self.step_mode == "m" else y[0]

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"max_delay={self.max_delay}, bias={self.bias is not None}, "
            f"sigma={float(self.sigma):g}, step_mode={self.step_mode}"
        )


def _check_sigma(sigma: float) -> float:
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)):
        raise ConfigurationError(f"sigma must be a number >= 0, got {sigma!r}")
    if not math.isfinite(sigma) or sigma < 0:
        raise ConfigurationError(f"sigma must be a finite number >= 0, got {sigma!r}")
    return float(sigma)


def delay_sigma(
    epoch: int,
    epochs: int,
    initial: float,
    final: float = FINAL_SIGMA,
    fraction: float = 0.25,
    offset: float = SIGMA_OFFSET,
) -> float:
    """The authors' width of the delay Gaussians at ``epoch`` (0-based) of ``epochs``.

    The width is ``offset + s``, with ``s`` decayed exponentially from
    ``initial - offset`` to ``final - offset`` over the first ``fraction`` of the
    epochs (``E = fraction · epochs`` rounded down, at least 1), then constant: with
    the defaults, ``K // 2 + 0.27`` to 0.5 as the authors' DCLS kernels (their ``s``
    goes from ``K // 2`` to 0.23 and the kernel adds 0.27). A layer already narrower
    than ``final`` keeps its width.

    Raises:
        ConfigurationError: ``epochs < 1``, ``epoch < 0``, ``final`` not above
            ``offset >= 0``, ``fraction`` outside ``(0, 1]``.
    """
    check_int("epochs", epochs, 1)
    check_int("epoch", epoch, 0)
    if not (math.isfinite(offset) and offset >= 0 and math.isfinite(final) and final > offset):
        raise ConfigurationError(
            f"final sigma must be above offset >= 0, got final={final}, offset={offset}"
        )
    if not 0 < fraction <= 1:
        raise ConfigurationError(f"fraction must be in (0, 1], got {fraction}")
    if not initial > final:
        return float(initial)
    decay_epochs = max(1, int(fraction * epochs))
    ratio = (final - offset) / (initial - offset)
    return float(offset + (initial - offset) * ratio ** (min(epoch, decay_epochs) / decay_epochs))


def set_delay_sigma(net: nn.Module, epoch: int, epochs: int) -> int:
    """Set every :class:`DelayedLinear` in ``net`` to its :func:`delay_sigma` for
    ``epoch`` of ``epochs`` (from its own initial width); return how many were set."""
    count = 0
    for module in net.modules():
        if isinstance(module, DelayedLinear):
            # (hard delays, initial width 0, stay hard: delay_sigma keeps a narrow start)
            module.sigma.fill_(delay_sigma(epoch, epochs, module.initial_sigma))
            count += 1
    return count


def clamp_delays(net: nn.Module) -> int:
    """Clamp the delays of every :class:`DelayedLinear` in ``net`` into
    ``[0, max_delay - 1]`` in place (after an optimizer step, as the authors do before
    each batch), and those of every :class:`~spikeflow.layers.AxonalDelay` into
    ``[0, max_delay]`` (as Lava-DL at each call); return how many layers were clamped."""
    count = 0
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, DelayedLinear):
                module.delay.clamp_(0, module.max_delay - 1)
                count += 1
            elif isinstance(module, AxonalDelay):
                module.clamp_()
                count += 1
    return count


def round_delays(net: nn.Module) -> int:
    """Round the delays of every :class:`DelayedLinear` in ``net`` to whole steps and
    set ``σ = 0`` (pure shifts, for inference); return how many layers were rounded."""
    count = 0
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, DelayedLinear):
                module.delay.clamp_(0, module.max_delay - 1).round_()
                module.sigma.fill_(0.0)
                count += 1
    return count
