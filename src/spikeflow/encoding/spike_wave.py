"""The input stage of STDP convolutional networks with one spike per neuron
(Kheradpisheh et al. 2018; Mozafari et al. 2019; SpykeTorch's "spike waves").

- :func:`dog_kernel` and :class:`DoGFilter`: difference-of-Gaussians filters (on-centre
  and off-centre), the retina-like edge detectors in front of the first layer.
- :func:`local_normalization`: each value divided by the mean of its neighbourhood.
- :func:`intensity_to_latency`: rank-order coding: the strongest values fire first, in
  ``T`` bins of equal size, each neuron once; the result is a *cumulative* spike wave
  ``[T, B, ...]`` (a neuron that fired at step ``t`` is 1 from ``t`` on), which a
  convolution turns into cumulative potentials (one call for the whole image).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikeflow._checks import check_int, check_real
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError

__all__ = ["DoGFilter", "dog_kernel", "intensity_to_latency", "local_normalization"]


def dog_kernel(window_size: int, sigma1: float, sigma2: float) -> Tensor:
    """A difference-of-Gaussians kernel ``[window_size, window_size]`` (float64).

    ``g(σ) = exp(−(x² + y²)/(2σ²)) / (2πσ²)`` on the integer grid centred on the window,
    ``k = g(σ1) − g(σ2)``, then the mean is subtracted and the result divided by its
    maximum (Kheradpisheh et al. 2018; SpykeTorch's ``DoGKernel``). ``σ1 < σ2``: an
    on-centre filter; ``σ1 > σ2``: off-centre.
    """
    size = check_int("dog_kernel: window_size", window_size, 1)
    if size % 2 == 0:
        raise ConfigurationError(f"dog_kernel: window_size must be odd, got {size}")
    s1 = check_real("dog_kernel: sigma1", sigma1, 0.0, low_open=True)
    s2 = check_real("dog_kernel: sigma2", sigma2, 0.0, low_open=True)
    if s1 == s2:
        raise ConfigurationError(f"dog_kernel: sigma1 and sigma2 must differ, got {s1} twice")
    half = size // 2
    grid = torch.arange(-half, half + 1, dtype=torch.float64)
    r2 = grid[:, None] ** 2 + grid[None, :] ** 2

    def gauss(s: float) -> Tensor:
        return torch.exp(-r2 / (2 * s * s)) / (2 * math.pi * s * s)

    k = gauss(s1) - gauss(s2)
    k = k - k.mean()
    if size == 1 or k.max() <= 0:
        raise ConfigurationError(
            f"dog_kernel: window_size {size} with sigmas {s1}, {s2} gives no positive "
            f"centre (nothing to normalise by)"
        )
    return k / k.max()


class DoGFilter(nn.Module):
    """A bank of difference-of-Gaussians filters over grayscale images.

    Args:
        kernels: ``(window_size, sigma1, sigma2)`` of each filter; smaller windows are
            zero-padded to the largest (centred).
        padding: zero padding of the convolution.
        threshold: outputs below it become 0 (None: none).
        use_abs: the absolute value of the outputs (after the threshold).

    Input ``[B, 1, H, W]`` (or ``[B, H, W]``), output ``[B, len(kernels), H', W']``, in
    the input's dtype (the kernels are kept in float64, :attr:`weight`, and cast to it).
    :meth:`on_off` makes the usual on/off pairs. Kheradpisheh et al. and Mozafari et al.
    use ``DoGFilter.on_off([(3, 3/9, 6/9), (7, 7/9, 14/9), (13, 13/9, 26/9)],
    padding=6, threshold=50)`` on pixels in 0-255.
    """

    weight: Tensor

    def __init__(
        self,
        kernels: Sequence[tuple[int, float, float]],
        padding: int = 0,
        threshold: float | None = None,
        use_abs: bool = False,
    ) -> None:
        super().__init__()
        if len(kernels) == 0:
            raise ConfigurationError("DoGFilter: kernels is empty")
        made = [dog_kernel(*k) for k in kernels]
        size = max(k.shape[-1] for k in made)
        padded = [F.pad(k, [(size - k.shape[-1]) // 2] * 4) for k in made]
        # kept in float64 (dog_kernel's dtype) and cast to the input's dtype in forward:
        # a float32 copy rounded the kernel of float64 inputs to ~1e-7
        self.register_buffer("weight", torch.stack(padded)[:, None])
        self.padding = check_int("DoGFilter: padding", padding, 0)
        self.threshold = (
            None if threshold is None else check_real("DoGFilter: threshold", threshold)
        )
        self.use_abs = bool(use_abs)

    @classmethod
    def on_off(
        cls,
        scales: Sequence[tuple[int, float, float]],
        padding: int = 0,
        threshold: float | None = None,
    ) -> DoGFilter:
        """For each ``(window_size, sigma_centre, sigma_surround)`` an on-centre and an
        off-centre filter (channels ``2s`` and ``2s + 1``)."""
        pairs = [(w, a, b) for w, s1, s2 in scales for a, b in ((s1, s2), (s2, s1))]
        return cls(pairs, padding, threshold)

    def forward(self, x: Tensor) -> Tensor:
        """Images ``[B, 1, H, W]`` or ``[B, H, W]`` -> filtered ``[B, K, H', W']``."""
        if x.dim() == 3:
            x = x[:, None]
        if x.dim() != 4 or x.shape[1] != 1:
            raise ShapeError(
                f"DoGFilter: expects images [B, 1, H, W] or [B, H, W], got {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            raise DTypeError(f"DoGFilter: images must be floating point, got {x.dtype}")
        out = F.conv2d(x, self.weight.to(x.dtype), padding=self.padding)
        if self.threshold is not None:
            out = torch.where(out < self.threshold, torch.zeros_like(out), out)
        return out.abs() if self.use_abs else out

    def extra_repr(self) -> str:
        return (
            f"kernels={self.weight.shape[0]}, size={self.weight.shape[-1]}, "
            f"padding={self.padding}, threshold={self.threshold}, use_abs={self.use_abs}"
        )


def local_normalization(x: Tensor, radius: int, eps: float = 1e-12) -> Tensor:
    """Each value of ``x [B, C, H, W]`` divided by the mean of its channel over the
    ``(2r+1) x (2r+1)`` window around it (zeros outside the image count in the mean),
    plus ``eps`` (SpykeTorch's ``local_normalization``). float16 is computed in float32
    (``eps = 1e-12`` is 0 in float16, so a zero neighbourhood would give 0/0 = NaN)."""
    if x.dim() != 4:
        raise ShapeError(f"local_normalization: expects x [B, C, H, W], got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise DTypeError(f"local_normalization: x must be floating point, got {x.dtype}")
    r = check_int("local_normalization: radius", radius, 0)
    b, c, h, w = x.shape
    dtype = x.dtype
    if dtype == torch.float16:
        x = x.float()
    means = (
        F.avg_pool2d(
            x.reshape(b * c, 1, h, w), 2 * r + 1, stride=1, padding=r, count_include_pad=True
        )
        if r
        else x.reshape(b * c, 1, h, w)
    )
    return (x / (means.reshape(b, c, h, w) + eps)).to(dtype)


def intensity_to_latency(x: Tensor, time_steps: int, to_spike: bool = True) -> Tensor:
    """Rank-order coding of ``x [B, ...]`` (non-negative) into a cumulative spike wave
    ``[T, B, ...]``.

    In each sample the non-zero values are ranked from the largest down (equal values
    in memory order) and cut into ``T`` bins of ``n // T`` values (``n`` the sample's
    non-zero values): rank ``r`` fires at step ``r // (n // T)``; the last ``n mod T``
    (the weakest) never fire, nor do zeros (SpykeTorch's ``Intensity2Latency``). With
    ``n < T`` each non-zero value gets its own step (rank ``r`` at step ``r``), where
    SpykeTorch fails. The wave is cumulative: ``out[t]`` is 1 where the value has fired
    at or before step ``t``. ``to_spike=False`` gives the values themselves where they
    have fired (0 elsewhere).
    """
    steps = check_int("intensity_to_latency: time_steps", time_steps, 1)
    if x.dim() < 1 or x.shape[0] == 0:
        raise ShapeError(
            f"intensity_to_latency: expects x [B, ...] with B >= 1, got {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise DTypeError(f"intensity_to_latency: x must be floating point, got {x.dtype}")
    flat = x.reshape(x.shape[0], -1)
    if bool((flat < 0).any()) or bool(flat.isnan().any()):
        raise ConfigurationError(
            f"intensity_to_latency: x must be non-negative and not NaN, got minimum "
            f"{flat.min().item():g}"
        )
    order = torch.sort(flat, dim=1, descending=True, stable=True).indices
    rank = torch.empty_like(order).scatter_(
        1, order, torch.arange(flat.shape[1], device=x.device).expand_as(order)
    )
    count = (flat != 0).sum(dim=1, keepdim=True)
    bin_size = torch.clamp(count // steps, min=1)
    fires = (flat != 0) & (rank < torch.where(count >= steps, bin_size * steps, count))
    step = torch.where(fires, rank // bin_size, torch.full_like(rank, steps))
    t = torch.arange(steps, device=x.device)[:, None, None]
    wave = (step[None] <= t).to(x.dtype)  # [T, B, N]
    if not to_spike:
        wave = wave * flat[None]
    return wave.reshape(steps, *x.shape)
