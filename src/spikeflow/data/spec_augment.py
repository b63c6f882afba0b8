"""SpecAugment masks and SpikingJelly's ``MelScaleDelta`` features on spectrograms.

* :func:`mask_along_axis`, :class:`FrequencyMasking`, :class:`TimeMasking`: torchaudio's
  masks (Norse's ``task/speech_commands`` uses ``FrequencyMasking(15)`` and
  ``TimeMasking(35)``) on ``[..., F, T]`` tensors or arrays. A mask's width is
  ``floor(u1 * max_width)`` and its start ``floor(u2 * (size - u1 * max_width))`` with
  ``u1, u2`` uniform in [0, 1) drawn by ``torch.rand`` in torchaudio's order, so a
  ``torch.Generator`` seeded as torch's global one gives torchaudio's masks.
* :func:`mel_scale_delta`, :class:`MelScaleDelta`: SpikingJelly's speech-commands
  features (``examples/speech_commands.py``): a power spectrogram through its mel
  filterbank, ``log1p(mel / max|mel|)``, and Savitzky-Golay derivatives (window 9,
  polynomial order ``k`` for the ``k``-th) along time, computed here without scipy.

The transforms take ``seed`` as the other spikeflow transforms (an int, a numpy
``Generator`` or None for torch's global generator); in DataLoader workers each worker
gets its own reproducible stream (see :class:`~spikeflow.data.transforms.SeededTransform`).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import torch

from spikeflow._checks import check_int, check_real
from spikeflow.data.audio import hz_to_mel, mel_to_hz
from spikeflow.data.transforms import SeededTransform
from spikeflow.errors import ConfigurationError, ShapeError

__all__ = [
    "FrequencyMasking",
    "MelScaleDelta",
    "TimeMasking",
    "cached_mel_filterbank",
    "mask_along_axis",
    "mel_scale_delta",
    "savgol_derivative",
    "sj_mel_filterbank",
]

Spectrogram = torch.Tensor | np.ndarray


def _as_tensor(spec: Any, owner: str) -> tuple[torch.Tensor, bool]:
    """``spec`` as a tensor and whether it was a numpy array."""
    is_numpy = isinstance(spec, np.ndarray)
    if is_numpy and spec.dtype.kind not in "fc":
        raise ConfigurationError(
            f"{owner}: the spectrogram must be floating; got numpy dtype {spec.dtype}"
        )
    if is_numpy:  # torch.from_numpy refuses negative strides and non-native byte order
        spec = np.ascontiguousarray(spec, dtype=spec.dtype.newbyteorder("="))
    x = torch.from_numpy(spec) if is_numpy else spec
    if not isinstance(x, torch.Tensor):
        raise ConfigurationError(
            f"{owner}: the spectrogram must be a torch.Tensor or numpy array; got "
            f"{type(spec).__name__}"
        )
    if not (x.is_floating_point() or x.is_complex()):
        raise ConfigurationError(f"{owner}: the spectrogram must be floating; got dtype {x.dtype}")
    if x.dim() < 2:
        raise ShapeError(
            f"{owner}: the spectrogram must be [..., F, T]; got shape {tuple(x.shape)}"
        )
    return x, is_numpy


def mask_along_axis(
    spec: Spectrogram,
    max_width: int,
    axis: int,
    *,
    mask_value: float = 0.0,
    p: float = 1.0,
    iid_masks: bool = False,
    generator: torch.Generator | None = None,
) -> Spectrogram:
    """``spec`` ``[..., F, T]`` with one band of ``axis`` (-2: frequency, -1: time) set
    to ``mask_value`` (torchaudio's ``mask_along_axis``, or ``mask_along_axis_iid``
    with ``iid_masks``: one mask per leading index of a ``[..., C, F, T]`` input).

    The largest width is ``max_width``, or ``min(max_width, int(p * size))`` when
    ``p < 1``; the width ``floor(u1 * max_width)`` is in ``[0, max_width)`` and the start
    ``floor(u2 * (size - u1 * max_width))``, ``u1`` then ``u2`` drawn by
    ``torch.rand(..., generator=generator)`` (shape ``spec.shape[:-2]`` in ``spec``'s
    dtype with ``iid_masks``, else one each in torch's default dtype, as torchaudio).
    A new tensor (or array) is returned.
    """
    x, is_numpy = _as_tensor(spec, "mask_along_axis")
    width = check_int("mask_along_axis: max_width", max_width, 0)
    prob = check_real("mask_along_axis: p", p, 0.0, 1.0)
    if axis not in (-2, -1, x.dim() - 2, x.dim() - 1):
        raise ShapeError(f"mask_along_axis: axis must be -2 (frequency) or -1 (time); got {axis!r}")
    if iid_masks and x.dim() < 3:
        raise ShapeError(
            f"mask_along_axis: iid_masks needs [..., C, F, T] (3 or more axes); got shape "
            f"{tuple(x.shape)}"
        )
    axis = axis % x.dim()
    size = x.shape[axis]
    if prob < 1.0:
        width = min(width, int(size * prob))
    if width < 1:
        return spec.copy() if is_numpy else x.clone()
    # torchaudio draws the iid masks in the spectrogram's dtype but the shared mask with
    # a bare torch.rand(1), in torch's default dtype (float32 draws differ from float64's)
    real = x.real.dtype if x.is_complex() else x.dtype
    draw_dtype = real if iid_masks else torch.get_default_dtype()
    draw_shape = x.shape[:-2] if iid_masks else (1,)
    u1 = torch.rand(draw_shape, generator=generator, dtype=draw_dtype) * width
    u2 = torch.rand(draw_shape, generator=generator, dtype=draw_dtype) * (size - u1)
    start = u2.long()
    end = start + u1.long()
    if not iid_masks:
        start, end = start.reshape(()), end.reshape(())
    index = torch.arange(size, device=x.device)
    mask = (index >= start[..., None].to(x.device)) & (index < end[..., None].to(x.device))
    if axis == x.dim() - 2:
        mask = mask[..., None]
    else:
        mask = mask[..., None, :]
    out = x.masked_fill(mask, mask_value)
    return out.numpy() if is_numpy else out


class _AxisMasking(SeededTransform):
    axis: int = -1

    def __init__(
        self, max_width: int, iid_masks: bool, p: float, mask_value: float, seed: Any
    ) -> None:
        name = type(self).__name__
        self.max_width = check_int(f"{name}: max_width", max_width, 0)
        self.p = check_real(f"{name}: p", p, 0.0, 1.0)
        self.mask_value = check_real(f"{name}: mask_value", mask_value)
        self.iid_masks = bool(iid_masks)
        super().__init__(seed, max_width=self.max_width, iid_masks=self.iid_masks, p=self.p,
                         mask_value=self.mask_value)  # fmt: skip

    @property
    def random(self) -> bool:
        return True

    def __call__(self, spec: Spectrogram) -> Spectrogram:
        gen = torch.Generator().manual_seed(int(self.rng().integers(2**62)))
        return mask_along_axis(spec, self.max_width, self.axis, mask_value=self.mask_value,
                               p=self.p, iid_masks=self.iid_masks, generator=gen)  # fmt: skip


class FrequencyMasking(_AxisMasking):
    """Mask a band of frequencies of a ``[..., F, T]`` spectrogram (torchaudio's
    ``FrequencyMasking(freq_mask_param=max_width, iid_masks)``); see
    :func:`mask_along_axis`. Each call draws from its own ``torch.Generator`` seeded
    from ``seed``'s stream."""

    axis = -2

    def __init__(
        self,
        max_width: int,
        iid_masks: bool = False,
        mask_value: float = 0.0,
        seed: int | np.random.Generator | None = None,
    ) -> None:
        super().__init__(max_width, iid_masks, 1.0, mask_value, seed)


class TimeMasking(_AxisMasking):
    """Mask a stretch of frames of a ``[..., F, T]`` spectrogram (torchaudio's
    ``TimeMasking(time_mask_param=max_width, iid_masks, p)``: the width is at most
    ``p * T``); see :func:`mask_along_axis` and :class:`FrequencyMasking`."""

    axis = -1

    def __init__(
        self,
        max_width: int,
        iid_masks: bool = False,
        p: float = 1.0,
        mask_value: float = 0.0,
        seed: int | np.random.Generator | None = None,
    ) -> None:
        super().__init__(max_width, iid_masks, p, mask_value, seed)


def sj_mel_filterbank(
    n_freqs: int,
    f_min: float,
    f_max: float,
    n_mels: int,
    sample_rate: int,
    scale: str = "slaney",
) -> np.ndarray:
    """SpikingJelly's ``create_fb_matrix``: float64 ``[n_freqs, n_mels]`` triangles on
    ``n_freqs`` bins from 0 to ``sample_rate // 2`` Hz, between ``n_mels + 2`` points
    evenly spaced in mel (``"htk"`` or ``"slaney"``; Slaney's are area-normalised)."""
    if scale not in ("htk", "slaney"):
        raise ConfigurationError(f"scale must be 'htk' or 'slaney'; got {scale!r}")
    all_freqs = np.linspace(0.0, sample_rate // 2, n_freqs)
    mel_pts = np.linspace(hz_to_mel(f_min, scale), hz_to_mel(f_max, scale), n_mels + 2)
    f_pts = mel_to_hz(mel_pts, scale)
    f_diff = np.diff(f_pts)
    slopes = f_pts[None, :] - all_freqs[:, None]
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    fb = np.maximum(0.0, np.minimum(down, up))
    if scale == "slaney":
        fb = fb * (2.0 / (f_pts[2 : n_mels + 2] - f_pts[:n_mels]))[None, :]
    return fb


@functools.lru_cache(maxsize=64)
def cached_mel_filterbank(
    n_freqs: int,
    f_min: float,
    f_max: float,
    n_mels: int,
    sample_rate: int,
    scale: str = "slaney",
) -> np.ndarray:
    """:func:`sj_mel_filterbank`, built once per setting and shared (read-only), as
    SpikingJelly's ``MelScaleDelta`` keeps its ``fb`` buffer after the first call (the
    features are computed in float64 on the CPU, so device and dtype are not part of the
    key)."""
    fb = sj_mel_filterbank(n_freqs, f_min, f_max, n_mels, sample_rate, scale)
    fb.flags.writeable = False
    return fb


def _savgol_weights(window: int, order: int, deriv: int, at: int) -> np.ndarray:
    """Least-squares weights giving the ``deriv``-th derivative, at offset ``at`` from
    the centre, of the degree-``order`` polynomial fitted to ``window`` samples."""
    half = window // 2
    z = np.arange(-half, half + 1, dtype=np.float64)
    design = z[:, None] ** np.arange(order + 1)[None, :]
    d = np.zeros(order + 1)
    for i in range(deriv, order + 1):
        d[i] = math.factorial(i) / math.factorial(i - deriv) * float(at) ** (i - deriv)
    return np.linalg.pinv(design).T @ d


def savgol_derivative(x: np.ndarray, order: int, window: int = 9) -> np.ndarray:
    """The ``order``-th Savitzky-Golay derivative of ``x`` along its last axis
    (polynomial order ``order``, odd ``window``, unit spacing), with scipy's
    ``mode="interp"`` at the ends: the first and last ``window // 2`` values come from the
    polynomial fitted to the first (last) ``window`` samples
    (``scipy.signal.savgol_filter(x, window, order, deriv=order, mode="interp")``)."""
    x = np.asarray(x, dtype=np.float64)
    window = check_int("savgol_derivative: window", window, 1)
    order = check_int("savgol_derivative: order", order, 0)
    if window % 2 == 0 or order >= window:
        raise ConfigurationError(
            f"savgol_derivative: window must be odd and above order; got window={window}, "
            f"order={order}"
        )
    n = x.shape[-1]
    if n < window:
        raise ShapeError(
            f"savgol_derivative: the last axis has {n} samples, fewer than window={window}"
        )
    half = window // 2
    frames = np.lib.stride_tricks.sliding_window_view(x, window, axis=-1)
    out = np.empty_like(x)
    out[..., half : n - half] = frames @ _savgol_weights(window, order, order, 0)
    for k in range(half):
        out[..., k] = x[..., :window] @ _savgol_weights(window, order, order, k - half)
        out[..., n - half + k] = x[..., n - window :] @ _savgol_weights(window, order, order, k + 1)
    return out


def mel_scale_delta(
    spec: Spectrogram,
    order: int,
    n_mels: int = 128,
    sample_rate: int = 16000,
    f_min: float = 0.0,
    f_max: float | None = None,
    scale: str = "slaney",
) -> torch.Tensor:
    """SpikingJelly's ``MelScaleDelta(order, n_mels, sample_rate, f_min, f_max,
    dct_type=scale)`` of a power spectrogram ``spec`` ``[F, T]`` (or ``[1, F, T]``):
    ``feat = log1p(mel / max|mel|)`` (``mel`` unchanged if all zero) with
    ``mel = spec^T @`` :func:`sj_mel_filterbank`, then ``feat`` and its Savitzky-Golay
    derivatives of order ``1..order`` along time (:func:`savgol_derivative`, window 9).

    Returns:
        float64 ``[order + 1, T, n_mels]`` (SpikingJelly adds a leading axis of 1 that
        its ``collate_fn`` concatenates; a default collate stacks these to the same batch).
    """
    x, _ = _as_tensor(spec, "mel_scale_delta")
    if x.dim() == 3 and x.shape[0] == 1:
        x = x[0]
    if x.dim() != 2 or x.is_complex():
        raise ShapeError(
            f"mel_scale_delta: spec must be a real power spectrogram [F, T] or [1, F, T]; got "
            f"shape {tuple(x.shape)}, dtype {x.dtype}"
        )
    order = check_int("mel_scale_delta: order", order, 0)
    n_mels = check_int("mel_scale_delta: n_mels", n_mels, 1)
    sample_rate = check_int("mel_scale_delta: sample_rate", sample_rate, 1)
    top = float(sample_rate // 2) if f_max is None else check_real("mel_scale_delta: f_max", f_max)
    low = check_real("mel_scale_delta: f_min", f_min, 0.0)
    if low > top:
        raise ConfigurationError(f"mel_scale_delta: f_min={low:g} is above f_max={top:g}")
    if scale not in ("htk", "slaney"):  # before the cache, which needs hashable keys
        raise ConfigurationError(f"mel_scale_delta: scale must be 'htk' or 'slaney'; got {scale!r}")
    power = x.detach().cpu().to(torch.float64).numpy()
    fb = cached_mel_filterbank(power.shape[0], low, top, n_mels, sample_rate, scale)
    mel = fb.T @ power  # [n_mels, T]
    peak = np.abs(mel).max(initial=0.0)
    feat = np.log1p(mel / peak) if peak > 0 else mel
    feats = [feat.T] + [savgol_derivative(feat, k).T for k in range(1, order + 1)]
    return torch.from_numpy(np.ascontiguousarray(np.stack(feats)))


class MelScaleDelta(SeededTransform):
    """:func:`mel_scale_delta` as a transform (SpikingJelly's ``MelScaleDelta`` of
    ``examples/speech_commands.py``; ``scale`` is its ``dct_type``)."""

    def __init__(
        self,
        order: int,
        n_mels: int = 128,
        sample_rate: int = 16000,
        f_min: float = 0.0,
        f_max: float | None = None,
        scale: str = "slaney",
    ) -> None:
        if scale not in ("htk", "slaney"):
            raise ConfigurationError(
                f"MelScaleDelta: scale must be 'htk' or 'slaney'; got {scale!r}"
            )
        super().__init__(None, order=check_int("MelScaleDelta: order", order, 0),
                         n_mels=check_int("MelScaleDelta: n_mels", n_mels, 1),
                         sample_rate=check_int("MelScaleDelta: sample_rate", sample_rate, 1),
                         f_min=f_min, f_max=f_max, scale=scale)  # fmt: skip

    def __call__(self, spec: Spectrogram) -> torch.Tensor:
        return mel_scale_delta(spec, **self._params)
