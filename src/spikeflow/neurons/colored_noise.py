"""Coloured Gaussian noise (power spectrum ``∝ 1/f^β``) for the noisy neurons of
:mod:`spikeflow.neurons.noisy`: :func:`powerlaw_psd_gaussian` (Timmer & Koenig's method,
SpikingJelly's and the ``colorednoise`` package's draws) and one episode's noise per
neuron, :func:`colored_noise`."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import Tensor

from spikeflow._checks import check_int, check_real
from spikeflow.errors import ConfigurationError

__all__ = ["RandomState", "colored_noise", "powerlaw_psd_gaussian"]

#: What a random source may be: a seed, a numpy ``Generator`` or ``RandomState``, or
#: ``None`` (fresh entropy).
RandomState = int | np.integer | np.random.Generator | np.random.RandomState | None


def normal_sampler(random_state: object) -> Callable[..., np.ndarray]:
    """The ``normal`` draw of ``random_state`` (a seed, a numpy ``Generator`` or
    ``RandomState``, or None); anything else (a bool too) is a ConfigurationError."""
    if random_state is None or (
        isinstance(random_state, (numbers.Integral, np.integer))
        and not isinstance(random_state, (bool, np.bool_))
    ):
        return np.random.default_rng(random_state).normal
    if isinstance(random_state, (np.random.Generator, np.random.RandomState)):
        return random_state.normal
    raise ConfigurationError(
        "random_state must be None, an integer seed, a numpy.random.Generator or a "
        f"numpy.random.RandomState; got {type(random_state).__name__}"
    )


def _check_size(size: object) -> list[int]:
    if isinstance(size, (numbers.Integral, np.integer)) and not isinstance(size, bool):
        dims = [size]
    elif isinstance(size, Iterable) and not isinstance(size, (str, bytes)):
        dims = list(size)
    else:
        raise ConfigurationError(f"size must be an int or a sequence of ints, got {size!r}")
    if not dims:
        raise ConfigurationError("size must have at least one dimension (the time axis)")
    out = [check_int("size", d, 1) for d in dims]
    if out[-1] < 2:
        raise ConfigurationError(
            f"size: the last dimension (time) needs at least 2 samples, got {out[-1]}"
        )
    return out


def powerlaw_psd_gaussian(
    exponent: float,
    size: int | Iterable[int],
    fmin: float = 0.0,
    random_state: RandomState = None,
) -> np.ndarray:
    """Gaussian noise with power spectrum ``S(f) ∝ (1/f)^exponent`` (Timmer & Koenig,
    A&A 300, 707, 1995), unit variance in expectation.

    The last axis of ``size`` is time (unit sample rate); the others are independent
    series. Each series is the inverse real FFT of Fourier coefficients whose real and
    imaginary parts are independent normals with standard deviation
    ``f^(-exponent/2)`` (frequencies below ``fmin`` get the value at ``fmin``; the
    coefficients at 0 and, for an even length, at the Nyquist frequency are real, their
    real part scaled by √2), divided by the standard deviation that scaling gives. The
    draws are the real parts of all coefficients, then the imaginary parts, from one
    ``normal`` call each: the same source gives SpikingJelly's ``powerlaw_psd_gaussian``
    (and the ``colorednoise`` package's) numbers. ``exponent`` 0 is white noise, 1
    pink (flicker), 2 brown.

    Args:
        exponent: the spectral exponent ``β`` (a finite real).
        size: the shape of the output; the last dimension (time) at least 2.
        fmin: low-frequency cutoff in ``[0, 0.5]`` (cycles per sample), raised to
            ``1 / size[-1]``; 0.5 (or, for an odd length, anything above the top
            frequency ``(n - 1) / 2n``) gives white noise.
        random_state: a seed, a numpy ``Generator`` or ``RandomState`` (its draws are
            consumed), or None for fresh entropy.

    Returns:
        a float64 array of shape ``size``.

    Raises:
        ConfigurationError: a non-finite exponent, ``fmin`` outside ``[0, 0.5]``, a bad
            ``size`` or ``random_state``.
    """
    exponent = check_real("powerlaw_psd_gaussian: exponent", exponent)
    fmin = check_real("powerlaw_psd_gaussian: fmin", fmin, 0.0, 0.5)
    dims = _check_size(size)
    normal = normal_sampler(random_state)
    n = dims[-1]
    freqs = np.fft.rfftfreq(n)
    cutoff = max(fmin, 1.0 / n)
    below = int(np.sum(freqs < cutoff))  # >= 1: the zero frequency
    # All flat below the cutoff; when it is above every frequency (an odd length, whose
    # top frequency is below 0.5), all of them: white noise. SpikingJelly leaves them
    # there, and 0 ** (-exponent / 2) makes the series inf.
    freqs[:below] = freqs[below] if below < len(freqs) else cutoff
    scale = freqs ** (-exponent / 2.0)
    # The standard deviation of the series this scaling gives (Parseval), to divide by.
    weights = scale[1:].copy()
    weights[-1] *= (1 + n % 2) / 2.0  # the Nyquist term counts once for an even n
    sigma = 2.0 * math.sqrt(float(np.sum(weights**2))) / n
    shape = [*dims[:-1], len(freqs)]
    real = normal(scale=scale, size=shape)
    imag = normal(scale=scale, size=shape)
    if n % 2 == 0:  # the Nyquist coefficient is real
        imag[..., -1] = 0.0
        real[..., -1] *= math.sqrt(2.0)
    imag[..., 0] = 0.0  # so is the mean's
    real[..., 0] *= math.sqrt(2.0)
    return np.fft.irfft(real + 1j * imag, n=n, axis=-1) / sigma


def colored_noise(
    beta: float,
    num_node: int,
    num_steps: int,
    T: int,
    random_state: RandomState = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """One episode's noise for ``num_node`` neurons, ``[num_steps, T, num_node]``: one
    coloured series (:func:`powerlaw_psd_gaussian`, exponent ``beta``) of
    ``num_steps * T`` samples per neuron, step ``k`` of the environment taking samples
    ``k T .. k T + T - 1``. The layout of SpikingJelly's ``reset_noise``.

    Args:
        beta: the spectral exponent.
        num_node, num_steps, T: the sizes (``num_steps * T >= 2``).
        random_state: as :func:`powerlaw_psd_gaussian`'s.
        dtype: the tensor's dtype (default: torch's default dtype).

    Raises:
        ConfigurationError: a size below 1 (or fewer than 2 samples per series), or as
            :func:`powerlaw_psd_gaussian`.
    """
    num_node = check_int("num_node", num_node, 1)
    num_steps = check_int("num_steps", num_steps, 1)
    T = check_int("T", T, 1)
    if num_steps * T < 2:
        raise ConfigurationError(
            f"colored noise needs at least 2 samples per neuron (num_steps * T), got "
            f"num_steps={num_steps}, T={T}: draw the noise for more than one step"
        )
    series = powerlaw_psd_gaussian(beta, [num_node, num_steps * T], random_state=random_state)
    noise = torch.from_numpy(series.reshape(num_node, num_steps, T)).permute(1, 2, 0)
    return noise.to(torch.get_default_dtype() if dtype is None else dtype).contiguous()
