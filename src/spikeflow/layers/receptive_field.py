"""Scale-space receptive fields (Lindeberg's normative theory; Norse's receptive fields).

Spatial fields are anisotropic Gaussian kernels and their directional derivatives,
generated from a few numbers per field (scale, angle, ratio and the derivative orders
``dx``, ``dy``) and recomputed from them at every call, so the numbers can be learned
(Pedersen et al. 2024, "Covariant spatio-temporal receptive fields for neuromorphic
computing"). For a field with scale ``s``, angle ``φ`` and ratio ``r``:

- the covariance is ``s · R(φ) diag(r², 1/r²) R(φ)ᵀ``;
- the kernel is the Gaussian density of that covariance sampled on a ``size x size``
  grid spanning ``[-domain, domain]`` in both axes, then divided by its sum;
- each derivative order applies the directional difference
  ``cos(ψ) ∂/∂row + sin(ψ) ∂/∂column`` (``torch.gradient``: central differences inside,
  one-sided at the border, unit spacing) times the scale normalisation ``s``
  (Lindeberg's ``t^{γ/2}`` with ``t = s²``, ``γ = 1``), with ``ψ = φ`` for ``dx`` and
  ``φ + π/2`` for ``dy``, alternating ``dx`` and ``dy`` while either is left.

These are Norse 1.1's definitions (``norse.torch.functional.receptive_field``): the
kernels and their gradients equal Norse's (``tests/test_layers_receptive_field.py``).

Temporal fields (:class:`TemporalReceptiveField`) run the input through leaky
integrators at ``n_scales`` time scales distributed as in Lindeberg (2016).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikeflow._checks import check_flag, check_int, check_real
from spikeflow.base import MemoryModule, StepMode, StepModule
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.layers._time import STEP_2D, as_float_sequence, check_step_dims, fold_time

__all__ = [
    "SpatialReceptiveField2d",
    "TemporalReceptiveField",
    "covariance_matrix",
    "gaussian_kernel",
    "spatial_parameters",
    "spatial_receptive_field",
    "spatial_receptive_fields",
    "temporal_scale_distribution",
]

Derivatives = int | Sequence[tuple[int, int]]


def covariance_matrix(
    sigma1: Tensor | float, sigma2: Tensor | float, angle: Tensor | float
) -> Tensor:
    """The 2 x 2 covariance with standard deviations ``sigma1`` along the direction
    ``angle`` (radians) and ``sigma2`` across it: ``R diag(σ1², σ2²) Rᵀ``."""
    l1, l2 = torch.as_tensor(sigma1) ** 2, torch.as_tensor(sigma2) ** 2
    phi = torch.as_tensor(angle)
    cos, sin = phi.cos(), phi.sin()
    cxy = (l1 - l2) * cos * sin
    row0 = torch.stack([l1 * cos * cos + l2 * sin * sin, cxy])
    row1 = torch.stack([cxy, l1 * sin * sin + l2 * cos * cos])
    return torch.stack([row0, row1])


def gaussian_kernel(size: int, covariance: Tensor, domain: float = 8.0) -> Tensor:
    """The Gaussian density of a 2 x 2 ``covariance`` on a ``size x size`` grid over
    ``[-domain, domain]²`` (rows follow y, columns x), differentiable in ``covariance``."""
    size = check_int("size", size, 1)
    inverse = torch.linalg.inv(covariance)
    axis = torch.linspace(-domain, domain, size, dtype=covariance.dtype, device=covariance.device)
    ys, xs = torch.meshgrid(axis, axis, indexing="ij")
    points = torch.stack([xs, ys], dim=-1)  # [size, size, 2]: (x, y) of every pixel
    quadratic = torch.einsum("...i,ij,...j->...", points, inverse, points)
    norm = 1 / (2 * math.pi * torch.sqrt(torch.linalg.det(covariance)))
    return norm * torch.exp(-quadratic / 2)


def _directional_derivative(kernel: Tensor, angle: Tensor) -> Tensor:
    return (
        torch.gradient(kernel, dim=0)[0] * angle.cos()
        + torch.gradient(kernel, dim=1)[0] * angle.sin()
    )


def spatial_receptive_field(
    scale: Tensor | float,
    angle: Tensor | float,
    ratio: Tensor | float,
    size: int,
    dx: int = 0,
    dy: int = 0,
    domain: float = 10.0,
) -> Tensor:
    """One ``[size, size]`` field: the normalised Gaussian of ``scale``, ``angle`` and
    ``ratio`` (eccentricity; 1 is round) and its ``dx``-th / ``dy``-th directional
    derivatives (module docstring). Norse's ``spatial_receptive_field``."""
    scale, angle, ratio = (torch.as_tensor(v) for v in (scale, angle, ratio))
    dx, dy = int(dx), int(dy)
    if dx < 0 or dy < 0:
        raise ConfigurationError(f"derivative orders must be >= 0; got dx={dx}, dy={dy}")
    dtype = torch.promote_types(torch.promote_types(scale.dtype, angle.dtype), ratio.dtype)
    if not dtype.is_floating_point:
        dtype = torch.get_default_dtype()
    scale, angle, ratio = scale.to(dtype), angle.to(dtype), ratio.to(dtype)
    field = gaussian_kernel(size, covariance_matrix(ratio, 1 / ratio, angle) * scale, domain)
    field = field / field.sum()
    while dx > 0 or dy > 0:
        if dx > 0:
            field = _directional_derivative(field, angle) * scale
            dx -= 1
        if dy > 0:
            field = _directional_derivative(field, angle + math.pi / 2) * scale
            dy -= 1
    return field


def _derivative_list(derivatives: Derivatives) -> list[tuple[int, int]]:
    if isinstance(derivatives, bool):
        raise ConfigurationError(
            f"derivatives must be an int or (dx, dy) pairs; got {derivatives!r}"
        )
    if isinstance(derivatives, int):
        order = check_int("derivatives", derivatives, 0)
        return [(dx, dy) for dx in range(order + 1) for dy in range(order + 1)]
    pairs = [tuple(int(v) for v in pair) for pair in derivatives]
    if not pairs or any(len(p) != 2 or min(p) < 0 for p in pairs):
        raise ConfigurationError(
            f"derivatives must be an int >= 0 or a non-empty list of (dx, dy) pairs >= 0; "
            f"got {derivatives!r}"
        )
    return pairs  # type: ignore[return-value]


def spatial_parameters(
    scales: Tensor,
    angles: Tensor,
    ratios: Tensor,
    derivatives: Derivatives,
    include_replicas: bool = False,
) -> Tensor:
    """``[n, 5]`` rows ``(scale, angle, ratio, dx, dy)``: the Cartesian product of the
    values given, each row repeated for every derivative pair (an int ``k`` means every
    ``(dx, dy)`` with both ``<= k``). Round fields (ratio 1) come last; they are kept at
    every angle only with ``include_replicas`` (Norse's ``spatial_parameters``: it keeps
    them all as well, so ``include_replicas`` changes only the row order)."""
    scales, angles, ratios = (torch.as_tensor(v).reshape(-1) for v in (scales, angles, ratios))
    if include_replicas or not bool((ratios == 1).any()):
        grid = torch.cartesian_prod(scales, angles, ratios)
    else:
        round_ = ratios == 1
        grid = torch.cat([torch.cartesian_prod(scales, angles, ratios[~round_]),
                          torch.cartesian_prod(scales, angles, ratios[round_])])  # fmt: skip
    pairs = torch.tensor(_derivative_list(derivatives), dtype=grid.dtype, device=grid.device)
    return torch.cat([grid.repeat_interleave(len(pairs), 0), pairs.repeat(len(grid), 1)], 1)


def spatial_receptive_fields(parameters: Tensor, size: int, domain: float = 1.0) -> Tensor:
    """``[n, size, size]`` fields, one per ``(scale, angle, ratio, dx, dy)`` row."""
    if parameters.ndim != 2 or parameters.shape[1] != 5:
        raise ShapeError(
            "parameters must be [n, 5] rows (scale, angle, ratio, dx, dy); "
            f"got shape {tuple(parameters.shape)}"
        )
    return torch.stack([
        spatial_receptive_field(p[0], p[1], p[2], size, int(p[3]), int(p[4]), domain)
        for p in parameters
    ])  # fmt: skip


def temporal_scale_distribution(
    n_scales: int, min_scale: float = 1.0, max_scale: float | None = None, c: float = 1.41421
) -> Tensor:
    """``n_scales`` temporal scales ``sqrt(τ_k)``, ``τ_k = c^{2(k − K)} τ_max`` for
    ``k = 1..K`` (Lindeberg 2016), increasing from ``τ_1 = min_scale``: with ``c``
    (default √2) ``τ_max = c^{2(K−1)} min_scale`` (Norse's default path, equal to it);
    with ``max_scale``, ``c = (max_scale/min_scale)^{1/(2(K−1))}`` so that ``τ`` spans
    ``[min_scale, max_scale]`` exactly. (Norse's ``max_scale`` path inverts ``c`` and
    spans ``[max_scale, max_scale²/min_scale]``, decreasing: not followed.)"""
    n_scales = check_int("n_scales", n_scales, 1)
    min_scale = check_real("min_scale", min_scale, 0.0, low_open=True)
    if max_scale is not None:
        max_scale = check_real("max_scale", max_scale, min_scale)
        if n_scales == 1:
            return torch.tensor([min_scale]).sqrt()
        c = (max_scale / min_scale) ** (1 / (2 * (n_scales - 1)))
    else:
        c = check_real("c", c, 1.0, low_open=True)
        max_scale = c ** (2 * (n_scales - 1)) * min_scale
    k = torch.linspace(1, n_scales, n_scales)
    return (c ** (2 * (k - n_scales)) * max_scale).sqrt()


class SpatialReceptiveField2d(StepModule, nn.Module):
    """A 2-D convolution whose kernels are scale-space receptive fields, regenerated
    from their parameters at every call (so the parameters can be learned).

    Args:
        in_channels: input channels ``C``.
        size: the kernel's side in pixels.
        parameters: ``[n, 5]`` rows ``(scale, angle, ratio, dx, dy)``
            (:func:`spatial_parameters` builds them from lists).
        learn: which of ``"scale"``, ``"angle"``, ``"ratio"`` are trained, per field
            (the derivative orders never are). Norse's ``SpatialReceptiveField2d``
            learns all three (``optimize_fields=True``), its
            ``ParameterizedSpatialReceptiveField2d`` the ones it is told.
        aggregate: ``True``: each field sums over every input channel (``n`` outputs);
            ``False``: each field sees each channel alone (``n·C`` outputs, channel
            ``c``'s ``n`` fields together).
        domain: the grid spans ``[-domain, domain]`` (Norse's module default, 8).
        stride, padding, dilation: as in :func:`torch.nn.functional.conv2d`.
        step_mode: ``"m"`` for ``[T, B, C, H, W]`` input, ``"s"`` for ``[B, C, H, W]``.
    """

    def __init__(
        self,
        in_channels: int,
        size: int,
        parameters: Tensor,
        *,
        learn: Sequence[str] = ("scale", "angle", "ratio"),
        aggregate: bool = True,
        domain: float = 8.0,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        step_mode: StepMode = "m",
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.in_channels = check_int("in_channels", in_channels, 1)
        self.size = check_int("size", size, 1)
        parameters = torch.as_tensor(parameters)
        if parameters.ndim != 2 or parameters.shape[1] != 5 or not parameters.is_floating_point():
            raise ShapeError(
                f"{owner}: parameters must be floating-point [n, 5] rows "
                "(scale, angle, ratio, dx, dy); "
                f"got {tuple(parameters.shape)} {parameters.dtype}"
            )
        if not isinstance(learn, str):
            learn = tuple(learn)  # read once: a generator would be used up by the check
        unknown = set(learn) - {"scale", "angle", "ratio"}
        if unknown or isinstance(learn, str):
            raise ConfigurationError(
                f"{owner}: learn must name some of 'scale', 'angle', 'ratio'; got {learn!r}"
            )
        self.aggregate = check_flag(owner, "aggregate", aggregate)
        self.domain = check_real("domain", domain)
        self.conv_kwargs: dict[str, Any] = {
            "stride": stride,
            "padding": padding,
            "dilation": dilation,
        }
        for k, name in enumerate(("scale", "angle", "ratio")):
            value = parameters[:, k].detach().clone()
            if name in learn:
                setattr(self, name, nn.Parameter(value))
            else:
                self.register_buffer(name, value)
        self.register_buffer("derivatives", parameters[:, 3:].detach().round().to(torch.long))
        self.step_mode = step_mode

    @property
    def out_channels(self) -> int:
        """``n`` with ``aggregate``, else ``n · in_channels``."""
        n = len(self.derivatives)
        return n if self.aggregate else n * self.in_channels

    @property
    def parameters_table(self) -> Tensor:
        """The current ``[n, 5]`` rows ``(scale, angle, ratio, dx, dy)``."""
        return torch.cat([torch.stack([self.scale, self.angle, self.ratio], 1),
                          self.derivatives.to(self.scale.dtype)], 1)  # fmt: skip

    def fields(self) -> Tensor:
        """The ``[n, size, size]`` kernels of the current parameters (differentiable)."""
        return torch.stack([
            spatial_receptive_field(s, a, r, self.size, int(d[0]), int(d[1]), self.domain)
            for s, a, r, d in zip(self.scale, self.angle, self.ratio, self.derivatives.tolist())
        ])  # fmt: skip

    def weight(self) -> Tensor:
        """The convolution weight: ``[n, C, size, size]`` (aggregate) or
        ``[n·C, 1, size, size]`` applied with ``groups=C``."""
        kernels = self.fields()
        if self.aggregate:
            return kernels.unsqueeze(1).expand(-1, self.in_channels, -1, -1)
        return kernels.unsqueeze(1).repeat(self.in_channels, 1, 1, 1)

    def _step(self, x: Tensor, weight: Tensor) -> Tensor:
        groups = 1 if self.aggregate else self.in_channels
        if x.shape[1] != self.in_channels:
            raise ShapeError(
                f"{type(self).__name__}: expected {self.in_channels} input channels; "
                f"got shape {tuple(x.shape)}"
            )
        return F.conv2d(x, weight.to(x.dtype), groups=groups, **self.conv_kwargs)

    def forward(self, x: Tensor) -> Tensor:
        """Convolve ``x`` (``[T, B, C, H, W]``, or ``[B, C, H, W]`` in step mode ``"s"``)."""
        layout, dims = STEP_2D
        check_step_dims(x, type(self).__name__, layout, dims, self.step_mode)
        weight = self.weight()
        if self.step_mode == "s":
            return self._step(x, weight)
        return fold_time(lambda y: self._step(y, weight), x)

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, fields={len(self.derivatives)}, size={self.size}, "
            f"aggregate={self.aggregate}, domain={self.domain}, step_mode={self.step_mode}"
        )


class TemporalReceptiveField(MemoryModule):
    """Temporal scale space: the input through leaky integrators at ``n_scales`` time
    scales, ``v[t] = v[t−1] + k (x[t] − v[t−1])`` from ``v = 0`` with ``k = 1/√τ_k``
    (``τ_k`` from :func:`temporal_scale_distribution`), learnable per scale and channel.
    ``[T, B, C, ...]`` in, ``[T, B, n_scales, C, ...]`` out. Norse's
    ``TemporalReceptiveField`` (leaky "box" integrators with
    ``tau_mem_inv = (1/dt)/√τ_k``, one call per step) on a whole sequence.

    Args:
        shape: one sample's shape ``(C, ...)`` (the rate has shape ``[n_scales, C, 1...]``).
        n_scales, min_scale, max_scale, c: as in :func:`temporal_scale_distribution`.
        rates: ``[n_scales, C, 1...]`` rates ``k`` to start from instead (Norse's
            ``time_constants`` times ``dt``).
        learnable: train the rates.
    """

    def __init__(
        self,
        shape: Sequence[int],
        n_scales: int = 4,
        min_scale: float = 1.0,
        max_scale: float | None = None,
        c: float = 1.41421,
        *,
        rates: Tensor | None = None,
        learnable: bool = True,
        step_mode: StepMode = "m",
    ) -> None:
        super().__init__(step_mode)
        owner = type(self).__name__
        self.shape = tuple(check_int("shape", s, 1) for s in shape)
        if not self.shape:
            raise ConfigurationError(f"{owner}: shape must name at least the channels")
        self.n_scales = check_int("n_scales", n_scales, 1)
        ones = [1] * (len(self.shape) - 1)
        if rates is None:
            k = 1 / temporal_scale_distribution(n_scales, min_scale, max_scale, c)
            rates = k.reshape(-1, 1, *ones).expand(-1, self.shape[0], *ones).clone()
        rates = torch.as_tensor(rates, dtype=torch.get_default_dtype())
        if rates.shape != (self.n_scales, self.shape[0], *ones):
            raise ShapeError(
                f"{owner}: rates must have shape {(self.n_scales, self.shape[0], *ones)}; "
                f"got {tuple(rates.shape)}"
            )
        if check_flag(owner, "learnable", learnable):
            self.rate = nn.Parameter(rates)
        else:
            self.register_buffer("rate", rates)

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, C, ...]`` -> ``[T, B, n_scales, C, ...]`` (one step ``[B, C, ...]`` ->
        ``[B, n_scales, C, ...]`` in single-step mode, inside streaming)."""
        owner = type(self).__name__
        x_seq = as_float_sequence(x, owner, "a floating-point input", self.step_mode)
        if tuple(x_seq.shape[2:]) != self.shape:
            raise ShapeError(
                f"{owner}: expected steps of shape [B, {', '.join(map(str, self.shape))}]; "
                f"got steps of shape {tuple(x_seq.shape[1:])}"
            )
        x_seq = x_seq.unsqueeze(2)  # [T, B, 1, C, ...]
        state = self._carried_state(torch.Size([x_seq.shape[1], self.n_scales, *self.shape]))
        v = torch.zeros_like(x_seq[0]) if state is None else state["v"]
        rate = self.rate.to(x_seq.dtype)
        out = []
        for x_t in x_seq:
            v = v + rate * (x_t - v)
            out.append(v)
        self._keep_state({"v": v})
        seq = torch.stack(out)
        return seq if self.step_mode == "m" else seq[0]

    def extra_repr(self) -> str:
        return f"shape={self.shape}, n_scales={self.n_scales}, step_mode={self.step_mode!r}"
