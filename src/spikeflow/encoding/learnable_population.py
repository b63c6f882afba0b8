"""Population coding with learnable Gaussian receptive fields (Tang et al. 2020, PopSAN):
SpikingJelly's ``PopSpikeEncoderDeterministic``, ``PopSpikeEncoderRandom`` and
``PopEncoder`` in one module."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from spikeflow._checks import check_int, check_real
from spikeflow.base import StepMode, StepModule
from spikeflow.encoding._common import (
    check_float_input,
    check_generator,
    check_generator_device,
)
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.neurons.lif import IFNode
from spikeflow.surrogate import LeakyKReLU

__all__ = ["LearnablePopulationEncoder"]

_MODES = ("deterministic", "random", "current")


class _BernoulliStraightThrough(torch.autograd.Function):
    """Forward: a Bernoulli(p) draw per element; backward: the gradient as is."""

    @staticmethod
    def forward(p: Tensor, generator: torch.Generator | None) -> Tensor:
        return torch.bernoulli(p, generator=generator)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
        pass

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad, None


class LearnablePopulationEncoder(StepModule, nn.Module):
    """Population coding with learnable Gaussian receptive fields (Tang et al. 2020).

    Each of the ``obs_dim`` features of an observation is seen by ``pop_dim`` neurons,
    neuron ``j`` of feature ``i`` with a learnable centre ``μ_ij`` and width ``σ_ij``::

        a_ij(x) = exp(-(x_i - μ_ij)² / (2 σ_ij²))   in (0, 1]

    ``μ_i`` starts evenly spaced over ``mean_range`` and ``σ`` at ``std``; both are
    :class:`torch.nn.Parameter` s of shape ``[1, obs_dim, pop_dim]`` (named ``mean`` and
    ``std``, as SpikingJelly's, so its state dicts load). The activity ``a``, flattened
    to ``obs_dim · pop_dim`` values (neuron ``i · pop_dim + j``), is then turned into
    ``T`` steps according to ``mode``:

    - ``'deterministic'`` (default): ``a`` is the constant input of an IF neuron with
      threshold ``v_threshold`` (0.999) and soft reset, so ``a ≈ 1`` fires every step and
      smaller activities fire regularly at rate ≈ ``a``;
    - ``'random'``: ``s[t] ~ Bernoulli(a)``, independently at every step;
    - ``'current'``: no spikes, ``a`` itself at every step (an input current for the
      first spiking layer).

    Gradients reach ``x``, ``mean`` and ``std`` through a straight-through estimator: the
    spikes' pseudo-derivative with respect to their input (the IF neuron's membrane, or
    ``a`` for Bernoulli draws) is 1. The neuron's reset is detached (as in
    SpikingJelly).

    Shapes: ``'m'``: ``x [*, obs_dim]`` -> ``[T, *, obs_dim · pop_dim]``; ``'s'``: one
    step ``[*, obs_dim · pop_dim]`` per call. ``'random'`` and ``'current'`` are
    stateless; ``'deterministic'`` carries the IF membrane, so its single-step calls need
    streaming (:func:`spikeflow.functional.streaming`).

    Args:
        obs_dim: features per observation (the input's last dimension), ``>= 1``.
        pop_dim: neurons per feature, ``>= 1``.
        T: number of time steps of a multi-step call, ``>= 1`` (SpikingJelly's
            ``spike_ts``).
        mean_range: ``(low, high)``, the initial centres ``linspace(low, high, pop_dim)``.
        std: the initial width, a finite number ``> 0``.
        mode: ``'deterministic'``, ``'random'`` or ``'current'``.
        v_threshold: the IF neuron's threshold (``'deterministic'``), default 0.999.
        generator: a :class:`torch.Generator` for the ``'random'`` draws; ``None`` uses
            torch's global generator.
        step_mode: ``'m'`` (default) or ``'s'``.
        backend: the IF neuron's backend, ``'auto'`` (default) or ``'torch'``.

    Raises:
        DTypeError: ``x`` is not a floating-point tensor.
        ShapeError: ``x``'s last dimension is not ``obs_dim``.
        ConfigurationError: a bad argument (named).
    """

    owns_children_time = True

    step_mode_parts = ("neuron",)

    def __init__(
        self,
        obs_dim: int,
        pop_dim: int,
        T: int,
        mean_range: Sequence[float],
        std: float,
        mode: str = "deterministic",
        v_threshold: float = 0.999,
        generator: torch.Generator | None = None,
        step_mode: StepMode = "m",
        backend: str = "auto",
    ) -> None:
        nn.Module.__init__(self)
        self.obs_dim = check_int("obs_dim", obs_dim, 1)
        self.pop_dim = check_int("pop_dim", pop_dim, 1)
        self.T = check_int("T", T, 1)
        if mode not in _MODES:
            raise ConfigurationError(f"mode must be one of {_MODES}; got {mode!r}")
        self.mode = mode
        if isinstance(mean_range, (str, bytes)) or not isinstance(mean_range, Sequence):
            raise ConfigurationError(f"mean_range must be a pair (low, high); got {mean_range!r}")
        if len(mean_range) != 2:
            raise ConfigurationError(f"mean_range must be a pair (low, high); got {mean_range!r}")
        low = check_real("mean_range[0]", mean_range[0])
        high = check_real("mean_range[1]", mean_range[1])
        width = check_real("std", std, 0.0, low_open=True)
        centres = torch.linspace(low, high, self.pop_dim).expand(1, self.obs_dim, -1)
        self.mean = nn.Parameter(centres.clone())
        self.std = nn.Parameter(torch.full_like(centres, width))
        self.generator = check_generator(generator, "LearnablePopulationEncoder")
        self.neuron = (
            IFNode(
                v_threshold=v_threshold,
                v_reset=None,
                surrogate_function=LeakyKReLU(leak=1.0, k=1.0),  # straight-through
                detach_reset=True,
                backend=backend,
            )
            if mode == "deterministic"
            else None
        )
        self.step_mode = step_mode

    @property
    def out_features(self) -> int:
        """``obs_dim · pop_dim``, the size of the output's last dimension."""
        return self.obs_dim * self.pop_dim

    def reset(self) -> None:
        """Forget the IF membrane (``'deterministic'``; as ``reset_net``)."""
        if self.neuron is not None:
            self.neuron.reset()

    def activity(self, x: Tensor) -> Tensor:
        """The receptive-field activities ``a``, ``[*, obs_dim · pop_dim]``, differentiable
        with respect to ``x``, ``mean`` and ``std``."""
        x = check_float_input(x, "LearnablePopulationEncoder")
        if x.dim() < 1 or x.shape[-1] != self.obs_dim:
            raise ShapeError(
                f"LearnablePopulationEncoder expects observations [..., obs_dim={self.obs_dim}]"
                f"; got shape {tuple(x.shape)}"
            )
        z = (x.unsqueeze(-1) - self.mean[0]) / self.std[0]
        return torch.exp(-0.5 * z.square()).flatten(-2)

    def forward(self, x: Tensor) -> Tensor:
        a = self.activity(x)
        steps = a.unsqueeze(0).expand(self.T, *a.shape) if self.step_mode == "m" else a
        if self.mode == "current":
            return steps.contiguous() if self.step_mode == "m" else steps
        if self.mode == "random":
            check_generator_device(self.generator, a, "LearnablePopulationEncoder")
            return _BernoulliStraightThrough.apply(steps, self.generator)
        return self.neuron(steps)

    def extra_repr(self) -> str:
        return (
            f"obs_dim={self.obs_dim}, pop_dim={self.pop_dim}, T={self.T}, "
            f"mode={self.mode!r}, step_mode={self.step_mode!r}"
        )
