"""Lava-DL's adaptive and resonator neurons in fixed point, as its netx files describe
them (what :func:`~spikeflow.interop.import_netx` builds from an ``ALIF``, ``RF_PHASE``,
``RF_IZHIKEVICH`` or ``ADRF_PHASE`` neuron group).

Lava's runtime has no process for these neurons (netx reads only CUBA and sigma-delta
groups); the reference is Lava-DL's own fixed-point dynamics, which its blocks run in
training and evaluation: ``slayer/neuron/dynamics/{leaky_integrator, adaptive_threshold,
resonator, adaptive_phase_th}.py`` (their ``_*_fwd`` loops, ``int64``: Lava-DL's CPU
path; its resonator CUDA kernel rounds the rotated sum once instead of each product, see
``docs/loihi.md``), with the spike rules of ``slayer/neuron/{alif, rf, rf_iz, adrf}.py``.
The modules compute in integers: inference only, no gradient. A block's neurons keep
their states ``s_scale = 2^12`` times Lava-DL's float units; with the file's integer
weights ``w`` (float weights ``w / 64``) and binary spikes, a step's input in state
units is ``a << 6`` for the integer synaptic sum ``a``, and a threshold ``θ = vThMant /
64`` is ``vThMant << 6``. With ``rstz(x) = sign(x) (|x| >> 12)`` (``right_shift_to_zero``:
rounds towards 0) each neuron steps from zero state as:

* ``ALIF`` (``iDecay``, ``vDecay``, ``thDecay``, ``refDecay``, ``vThMant``,
  ``vThStep``)::

      u = rstz(u (4096 − iDecay)) + (a << 6)
      v = rstz(v (4096 − vDecay)) + u                        (no reset of v)
      r = rstz(r (4096 − refDecay))
      ϑ = rstz((ϑ − ϑ0) (4096 − thDecay)) + ϑ0,   ϑ0 = vThMant << 6 (ϑ starts at ϑ0)
      s = v >= ϑ + r;  where s: r += 2ϑ, ϑ += vThStep << 6

* ``RF_IZHIKEVICH`` (``sinDecay``, ``cosDecay``, ``vThMant``), on the complex sums
  ``(a_re, a_im)``::

      re' = rstz(cos · re) − rstz(sin · im) + (a_re << 6)
      im' = rstz(sin · re) + rstz(cos · im) + (a_im << 6)
      s = im' >= θ;  where s: re = 0, im = θ − 1;  elsewhere (re, im) = (re', im')

* ``RF_PHASE`` (same fields): the same rotation without a reset; ``s = re >= θ`` and
  ``im`` crossing up through 0 (``im[t−1] < 0 <= im[t]``, ``im[−1] = 0``).
* ``ADRF_PHASE`` (``sinDecay``, ``cosDecay``, ``thDecay``, ``refDecay``, ``vThMant``,
  ``vThStep``): ``RF_PHASE``'s rotation (no reset), ``r`` and ``ϑ`` as ``ALIF``'s, and
  the phase spike against the moving threshold, ``s = re >= ϑ + r`` and ``im`` crossing
  up through 0.

Decays may be one value or one per channel (Lava-DL's ``shared_param=False``), laid on
the channel dim (dim 1 of a step ``[B, C, ...]``) as its CUDA kernels and gradients
take them (its CPU loops broadcast a ``[C]`` decay on the last dim: the same for a
dense layer, not for a convolution's ``[C, H, W]``).
Graded spikes (``gradedSpike`` true) are refused. ``adrf_iz`` (ADRF with Izhikevich
firing) has no ``device_params`` in Lava-DL, so its blocks cannot write a netx file and
there is no type name to read. Lava-DL compares its float32 copies of the states
(``state / 2^12``) in its spike functions; these are exact while the states stay
below ``2^24``, where the integer comparisons here are the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral

import torch
from torch import Tensor, nn

from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.quant.loihi import _decay as _decayed
from spikeflow.quant.loihi import _integers_as_int64

__all__ = [
    "LoihiALIFNode",
    "LoihiAdaptiveResonatorNode",
    "LoihiResonatorNode",
]

#: Lava-DL's states are ``2^12`` times its float units; an input ``a`` enters as ``a << 6``.
_INPUT_SHIFT = 6
_DECAY_ONE = 1 << 12


def _decay(owner: str, name: str, value: Tensor | int, low: int, high: int) -> Tensor:
    """A decay (one or one per channel) as an ``int64`` tensor within [low, high]."""
    tensor = _integers_as_int64(owner, name, torch.as_tensor(value)).reshape(-1)
    if tensor.numel() == 0 or bool(((tensor < low) | (tensor > high)).any()):
        raise ConfigurationError(
            f"{owner}: {name} must be integers in [{low}, {high}], got {tensor.tolist()}"
        )
    return tensor if tensor.numel() > 1 else tensor.reshape(())


def _integer(owner: str, name: str, value: object, low: int) -> int:
    # numbers.Integral: numpy's integers too (what h5py reads)
    if isinstance(value, bool) or not isinstance(value, Integral) or value < low:
        raise ConfigurationError(f"{owner}: {name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _per_channel(decay: Tensor, step_shape: Sequence[int], owner: str) -> Tensor:
    """A decay laid out for one step ``[B, C, ...]``: a scalar, or ``[C]`` on the
    channel dim."""
    if decay.dim() == 0:
        return decay
    if len(step_shape) < 2 or step_shape[1] != decay.numel():
        raise ShapeError(
            f"{owner}: {decay.numel()} per-channel decays for steps of shape "
            f"{tuple(step_shape)} (the channels are dim 1)"
        )
    return decay.reshape(-1, *([1] * (len(step_shape) - 2)))


def _time_major(owner: str, x: Tensor) -> Tensor:
    if not isinstance(x, Tensor) or x.dim() < 2:
        raise ShapeError(
            f"{owner} expects a time-major integer input [T, B, ...], got "
            f"{getattr(x, 'shape', x)!r}"
        )
    return _integers_as_int64(owner, "the input", x)


class _Adaptive(nn.Module):
    """The adaptive threshold and refractory state of ``adaptive_threshold``."""

    def _init_adaptive(
        self, owner: str, th_decay: Tensor | int, ref_decay: Tensor | int, v_th_step: int
    ) -> None:
        self.register_buffer("th_decay", _decay(owner, "thDecay", th_decay, 0, _DECAY_ONE))
        self.register_buffer("ref_decay", _decay(owner, "refDecay", ref_decay, 0, _DECAY_ONE))
        self.v_th_step = _integer(owner, "vThStep", v_th_step, 0)

    def _adapt_start(self, like: Tensor, th0: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        owner = type(self).__name__
        keep_th = _DECAY_ONE - _per_channel(self.th_decay, like.shape, owner)
        keep_ref = _DECAY_ONE - _per_channel(self.ref_decay, like.shape, owner)
        return torch.full_like(like, th0), torch.zeros_like(like), keep_th, keep_ref

    @staticmethod
    def _adapt_decay(
        th: Tensor, ref: Tensor, th0: int, keep_th: Tensor, keep_ref: Tensor
    ) -> tuple[Tensor, Tensor]:
        """One step's decay of the threshold (towards ``th0``) and the refractory state."""
        return _decayed(th - th0, keep_th) + th0, _decayed(ref, keep_ref)

    @staticmethod
    def _adapt_spike(spike: Tensor, th: Tensor, ref: Tensor, step: int) -> tuple[Tensor, Tensor]:
        """After a spike: ``r += 2ϑ`` with the threshold before its step, then ``ϑ += step``."""
        return torch.where(spike, th + step, th), torch.where(spike, ref + 2 * th, ref)


class LoihiALIFNode(_Adaptive):
    """Lava-DL's adaptive LIF neuron (``slayer.neuron.alif``) in fixed point, as its
    ``ALIF`` device parameters describe it (see the module's docstring): integer
    synaptic sums ``[T, B, ...]`` in, spikes (``int64`` 0/1) out, from zero state.

    Args:
        i_decay, v_decay, th_decay, ref_decay: the 12-bit decays (``iDecay`` ...), one
            value or one per channel, in [0, 4096].
        v_th_mant: the base threshold ``vThMant`` (>= 0).
        v_th_step: the threshold's step per spike ``vThStep`` (>= 0).

    Raises:
        ConfigurationError: a parameter out of range or not an integer.
    """

    def __init__(
        self,
        i_decay: Tensor | int,
        v_decay: Tensor | int,
        th_decay: Tensor | int,
        ref_decay: Tensor | int,
        v_th_mant: int,
        v_th_step: int,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.register_buffer("i_decay", _decay(owner, "iDecay", i_decay, 0, _DECAY_ONE))
        self.register_buffer("v_decay", _decay(owner, "vDecay", v_decay, 0, _DECAY_ONE))
        self._init_adaptive(owner, th_decay, ref_decay, v_th_step)
        self.v_th_mant = _integer(owner, "vThMant", v_th_mant, 0)

    def forward(self, x: Tensor) -> Tensor:
        """The spikes ``[T, B, ...]`` for the integer synaptic sums ``x``."""
        owner = type(self).__name__
        x = _time_major(owner, x)
        if len(x) == 0:
            return x.clone()
        th0 = self.v_th_mant << _INPUT_SHIFT
        step = self.v_th_step << _INPUT_SHIFT
        keep_u = _DECAY_ONE - _per_channel(self.i_decay, x.shape[1:], owner)
        keep_v = _DECAY_ONE - _per_channel(self.v_decay, x.shape[1:], owner)
        th, ref, keep_th, keep_ref = self._adapt_start(x[0], th0)
        u = torch.zeros_like(x[0])
        v = torch.zeros_like(x[0])
        out = []
        for a in x.unbind(0):
            u = _decayed(u, keep_u) + (a << _INPUT_SHIFT)
            v = _decayed(v, keep_v) + u
            th, ref = self._adapt_decay(th, ref, th0, keep_th, keep_ref)
            spike = v >= th + ref
            th, ref = self._adapt_spike(spike, th, ref, step)
            out.append(spike.to(torch.int64))
        return torch.stack(out)

    def extra_repr(self) -> str:
        return f"v_th_mant={self.v_th_mant}, v_th_step={self.v_th_step}"


def _complex_input(owner: str, x: object) -> tuple[Tensor, Tensor]:
    if not isinstance(x, (tuple, list)) or len(x) != 2:
        raise ShapeError(
            f"{owner} takes the complex synaptic sums (real, imag) of a complex synapse "
            f"(weight/real and weight/imag), got {type(x).__name__}"
        )
    real, imag = (_time_major(owner, part) for part in x)
    if real.shape != imag.shape:
        raise ShapeError(
            f"{owner}: real sums {tuple(real.shape)} and imaginary sums "
            f"{tuple(imag.shape)} differ in shape"
        )
    return real, imag


class _Rotation(nn.Module):
    """The sin / cos decays of a resonator."""

    def _init_rotation(self, owner: str, sin_decay: Tensor | int, cos_decay: Tensor | int) -> None:
        # Lava-DL keeps |(sin, cos)| below 4096 (its clamp); the range check is wider
        self.register_buffer("sin_decay", _decay(owner, "sinDecay", sin_decay, 0, _DECAY_ONE))
        self.register_buffer("cos_decay", _decay(owner, "cosDecay", cos_decay, 0, _DECAY_ONE))

    @staticmethod
    def _rotate(
        re: Tensor, im: Tensor, sin: Tensor, cos: Tensor, a_re: Tensor, a_im: Tensor
    ) -> tuple[Tensor, Tensor]:
        """One step of the resonator (``_res_dynamics_fwd``: each product rounded towards
        0 on its own) plus the step's input."""
        return (
            _decayed(re, cos) - _decayed(im, sin) + (a_re << _INPUT_SHIFT),
            _decayed(re, sin) + _decayed(im, cos) + (a_im << _INPUT_SHIFT),
        )

    def _laid_out(self, like: Tensor) -> tuple[Tensor, Tensor]:
        owner = type(self).__name__
        return (
            _per_channel(self.sin_decay, like.shape, owner),
            _per_channel(self.cos_decay, like.shape, owner),
        )


class LoihiResonatorNode(_Rotation):
    """Lava-DL's resonate-and-fire neuron in fixed point: ``RF_IZHIKEVICH``
    (``slayer.neuron.rf_iz``, ``izhikevich=True``) or ``RF_PHASE`` (``slayer.neuron.rf``,
    the phase spike), on the complex synaptic sums ``(real, imag)`` ``[T, B, ...]``
    (see the module's docstring).

    Args:
        sin_decay, cos_decay: ``sinDecay`` / ``cosDecay`` (4096ths), one value or one per
            channel, in [0, 4096].
        v_th_mant: the threshold ``vThMant`` (>= 0).
        izhikevich: the Izhikevich spike and reset (``RF_IZHIKEVICH``) instead of the
            phase spike (``RF_PHASE``).
    """

    def __init__(
        self,
        sin_decay: Tensor | int,
        cos_decay: Tensor | int,
        v_th_mant: int,
        izhikevich: bool,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self._init_rotation(owner, sin_decay, cos_decay)
        self.v_th_mant = _integer(owner, "vThMant", v_th_mant, 0)
        if not isinstance(izhikevich, bool):
            raise ConfigurationError(f"{owner}: izhikevich must be a bool, got {izhikevich!r}")
        self.izhikevich = izhikevich

    def forward(self, x: tuple[Tensor, Tensor]) -> Tensor:
        """The spikes ``[T, B, ...]`` for the complex sums ``(real, imag)``."""
        real_in, imag_in = _complex_input(type(self).__name__, x)
        if len(real_in) == 0:
            return real_in.clone()
        sin, cos = self._laid_out(real_in[0])
        threshold = self.v_th_mant << _INPUT_SHIFT
        re = torch.zeros_like(real_in[0])
        im = torch.zeros_like(real_in[0])
        out = []
        for a_re, a_im in zip(real_in.unbind(0), imag_in.unbind(0)):
            re_new, im_new = self._rotate(re, im, sin, cos, a_re, a_im)
            if self.izhikevich:
                spike = im_new >= threshold
                re = torch.where(spike, 0, re_new)
                im = torch.where(spike, threshold - 1, im_new)
            else:
                spike = (re_new >= threshold) & (im < 0) & (im_new >= 0)
                re, im = re_new, im_new
            out.append(spike.to(torch.int64))
        return torch.stack(out)

    def extra_repr(self) -> str:
        kind = "RF_IZHIKEVICH" if self.izhikevich else "RF_PHASE"
        return f"{kind}, v_th_mant={self.v_th_mant}"


class LoihiAdaptiveResonatorNode(_Rotation, _Adaptive):
    """Lava-DL's adaptive resonate-and-fire neuron with the phase spike
    (``slayer.neuron.adrf``, ``ADRF_PHASE``) in fixed point, on the complex synaptic
    sums ``(real, imag)`` (see the module's docstring).

    Args:
        sin_decay, cos_decay, th_decay, ref_decay: the 12-bit decays, one value or one
            per channel, in [0, 4096].
        v_th_mant: the base threshold ``vThMant`` (>= 0).
        v_th_step: the threshold's step per spike ``vThStep`` (>= 0).
    """

    def __init__(
        self,
        sin_decay: Tensor | int,
        cos_decay: Tensor | int,
        th_decay: Tensor | int,
        ref_decay: Tensor | int,
        v_th_mant: int,
        v_th_step: int,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self._init_rotation(owner, sin_decay, cos_decay)
        self._init_adaptive(owner, th_decay, ref_decay, v_th_step)
        self.v_th_mant = _integer(owner, "vThMant", v_th_mant, 0)

    def forward(self, x: tuple[Tensor, Tensor]) -> Tensor:
        """The spikes ``[T, B, ...]`` for the complex sums ``(real, imag)``."""
        real_in, imag_in = _complex_input(type(self).__name__, x)
        if len(real_in) == 0:
            return real_in.clone()
        sin, cos = self._laid_out(real_in[0])
        th0 = self.v_th_mant << _INPUT_SHIFT
        step = self.v_th_step << _INPUT_SHIFT
        th, ref, keep_th, keep_ref = self._adapt_start(real_in[0], th0)
        re = torch.zeros_like(real_in[0])
        im = torch.zeros_like(real_in[0])
        out = []
        for a_re, a_im in zip(real_in.unbind(0), imag_in.unbind(0)):
            re_new, im_new = self._rotate(re, im, sin, cos, a_re, a_im)
            th, ref = self._adapt_decay(th, ref, th0, keep_th, keep_ref)
            spike = (re_new >= th + ref) & (im < 0) & (im_new >= 0)
            th, ref = self._adapt_spike(spike, th, ref, step)
            re, im = re_new, im_new
            out.append(spike.to(torch.int64))
        return torch.stack(out)

    def extra_repr(self) -> str:
        return f"ADRF_PHASE, v_th_mant={self.v_th_mant}, v_th_step={self.v_th_step}"
