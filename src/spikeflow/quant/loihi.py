"""Loihi's fixed-point CUBA LIF neuron, bit for bit as Lava's ``PyLifModelBitAcc``.

Lava (``lava-nc/lava``, ``src/lava/proc/lif/models.py``: ``AbstractPyLifModelFixed``
and ``PyLifModelBitAcc``) simulates Loihi's current-based LIF compartment in integers.
With ``M = 2^23`` (24-bit states), one step on the input ``a`` (the synaptic sum a
``Dense`` or ``Conv`` process sends) is::

    decay(x, d) = sign(x (4096 − d)) · (|x (4096 − d)| >> 12)      (rounds towards 0)
    u ← decay(u, du + 1) + (a << 6)                    then wrapped once into (−M, M]
    v ← clip(decay(v, dv) + u + bias, −(M − 1), M − 1) (saturates)
    s = v > (vth << 6),   v ← 0 where s

with ``bias = bias_mant << bias_exp`` (``>> −bias_exp`` for a negative exponent). The
current **wraps** (one conditional ``∓ 2^24``: ``u > M`` becomes ``u − 2^24`` and
``u <= −M`` becomes ``u + 2^24``), the voltage **saturates**; there is no refractory
period (Lava's docstring lists it as missing from the bit-accurate model) and the
threshold compares strictly. Lava computes in numpy ``int32``; spikeflow computes in
``int64`` and wraps to ``int32`` where Lava's arithmetic can overflow (the shifted input
and its sum with the decayed current), so an input large enough to overflow Lava's
``int32`` arithmetic gives Lava's (wrapped) numbers too.

The current decay ``du`` has Lava's offset of one (``ds_offset = 1``: ``du = 4095``
clears the current, ``du = −1`` keeps it); Lava-DL's ``netx`` loader passes
``du = iDecay − 1`` and ``dv = vDecay`` (:meth:`LoihiCubaLIFNode.from_netx`), so both
decays are ``iDecay / 4096`` and ``vDecay / 4096`` of a step, as in Lava-DL's
floating-point CUBA neuron.

Relation to the float neuron: with weights on Lava-DL's grid (integers ``w_int`` for
float weights ``w_int / 64``) and ``vThMant = 64 θ``, every state is ``2^12`` times
:class:`~spikeflow.neurons.CubaLIFNode`'s (``r="tau_syn*tau_mem"``, ``v_reset=0``,
current scaled by ``tau_syn``), up to the truncation of each decay product (less than
one state unit, ``2^-12`` in float units, per decay) and the strict ``>`` of the
threshold. See ``docs/loihi.md``.
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import torch
from torch import Tensor, nn

from spikeflow.errors import ConfigurationError, DTypeError, ShapeError

__all__ = [
    "ACT_SHIFT",
    "DECAY_SHIFT",
    "STATE_SCALE",
    "UV_LIMIT",
    "VTH_SHIFT",
    "LoihiCubaLIFNode",
    "LoihiCubaState",
    "cuba_device_params",
    "effective_bias",
    "loihi_cuba_lif",
    "loihi_cuba_step",
]

#: Decays are fractions of ``2^12`` (12-bit ``du``, ``dv``).
DECAY_SHIFT = 12
_DECAY_UNITY = 1 << DECAY_SHIFT
#: The synaptic input and the threshold are shifted left by 6 bits (MSB alignment).
ACT_SHIFT = 6
VTH_SHIFT = 6
#: ``2^23``: states are 24-bit; the current wraps into ``(−UV_LIMIT, UV_LIMIT]``, the
#: voltage saturates at ``±(UV_LIMIT − 1)``.
UV_LIMIT = 1 << 23
#: A Loihi state in units of Lava-DL's float state: weight scale 64 times the 6-bit
#: input shift.
STATE_SCALE = 1 << 12
#: Lava-DL's weight scale for CUBA blocks (``scale = 1 << 6``): a float weight ``w`` is
#: the integer ``64 w`` on the chip (weight exponent 0).
WEIGHT_SCALE = 64
#: The integers of Lava-DL's ``quantize_8bit``: even values from -256 to 254.
WEIGHT_MIN, WEIGHT_MAX = -256, 254

_INT32_MIN, _INT32_MAX = -(1 << 31), (1 << 31) - 1
_INTEGER_DTYPES = (torch.int8, torch.uint8, torch.int16, torch.int32, torch.int64, torch.bool)
#: PyTorch's wide unsigned dtypes have almost no arithmetic (not even ``min``), so they
#: are converted to ``int64`` first (exact up to ``2^63 - 1``).
_WIDE_UNSIGNED_DTYPES = (torch.uint16, torch.uint32, torch.uint64)


def _integers_as_int64(owner: str, name: str, value: Tensor) -> Tensor:
    """``value`` as an ``int64`` tensor if it holds integers (any signed or unsigned
    integer dtype, or bool).

    Raises:
        DTypeError: a floating-point or complex ``value`` (named ``name`` of ``owner``).
        ConfigurationError: a ``uint64`` value of ``2^63`` or more (not an ``int64``).
    """
    if value.dtype in _WIDE_UNSIGNED_DTYPES:
        converted = value.to(torch.int64)
        # uint64 values >= 2^63 wrap to negative int64: no unsigned value is negative.
        if value.dtype == torch.uint64 and bool((converted < 0).any()):
            raise ConfigurationError(
                f"{owner}: {name} holds uint64 values of 2^63 or more, which do not fit in "
                "int64 (Loihi's states are 24-bit)"
            )
        return converted
    if value.dtype not in _INTEGER_DTYPES:
        raise DTypeError(
            f"{owner}: {name} must be an integer tensor (any signed or unsigned integer "
            f"dtype, or bool: Loihi computes in integers), got dtype {value.dtype}; round "
            "and convert it first (e.g. x.round().long())"
        )
    return value.to(torch.int64)


class LoihiCubaState(NamedTuple):
    """The integer state of a population: current ``u`` and voltage ``v`` (``int64``
    tensors holding Lava's ``int32`` values)."""

    u: Tensor
    v: Tensor


def _wrap32(x: Tensor) -> Tensor:
    """``x`` (int64) wrapped into int32, as numpy's int32 arithmetic does."""
    return ((x - _INT32_MIN) & 0xFFFFFFFF) + _INT32_MIN


def _decay(x: Tensor, keep: int | Tensor) -> Tensor:
    """``x · keep / 4096`` rounded towards zero (Lava: ``sign(p) · (|p| >> 12)``)."""
    product = x * keep
    return torch.sign(product) * (product.abs() >> DECAY_SHIFT)


def loihi_cuba_step(
    a_in: Tensor,
    state: LoihiCubaState,
    *,
    du: int,
    dv: int,
    vth: int,
    bias: Tensor | int = 0,
) -> tuple[Tensor, LoihiCubaState]:
    """One step of Lava's bit-accurate LIF (see the module docstring).

    Args:
        a_in: the synaptic input, an ``int64`` tensor of int32 values.
        state: ``(u, v)`` before the step (``int64``).
        du, dv: the decays as Lava's ``LIF`` takes them (checked by the callers).
        vth: the threshold mantissa (compared with ``v`` after ``<< 6``).
        bias: the effective bias ``bias_mant << bias_exp`` (int32 values).

    Returns:
        ``(spikes, new_state)``: spikes as ``int64`` 0/1, the state after the reset.
    """
    decayed = _decay(state.u, _DECAY_UNITY - (du + 1))
    current = _wrap32(decayed + _wrap32(a_in << ACT_SHIFT))
    wrapped = torch.where(current > UV_LIMIT, _wrap32(current - 2 * UV_LIMIT), current)
    u = torch.where(wrapped <= -UV_LIMIT, _wrap32(current + 2 * UV_LIMIT), wrapped)
    # No int32 overflow is possible from here: |u| <= 2^31 − 2^24 after the wrap,
    # |decayed v| < 2^23, |bias| <= 2^19 and vth << 6 <= 2^23.
    v = (_decay(state.v, _DECAY_UNITY - dv) + u + bias).clamp(-UV_LIMIT + 1, UV_LIMIT - 1)
    spikes = v > (vth << VTH_SHIFT)
    v = torch.where(spikes, torch.zeros_like(v), v)
    return spikes.to(torch.int64), LoihiCubaState(u, v)


def _check_int(owner: str, name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigurationError(f"{owner}: {name} must be an integer, got {value!r}")
    if not low <= int(value) <= high:
        raise ConfigurationError(
            f"{owner}: {name} must be an integer from {low} to {high}, got {value}"
        )
    return int(value)


def _integer_tensor(owner: str, name: str, value: Tensor, low: int, high: int) -> Tensor:
    """``value`` as ``int64`` if it is an integer tensor with values in ``[low, high]``."""
    value = _integers_as_int64(owner, name, value)
    if value.numel() and not (int(value.min()) >= low and int(value.max()) <= high):
        raise ConfigurationError(
            f"{owner}: {name} must hold values from {low} to {high}, got values from "
            f"{int(value.min())} to {int(value.max())}"
        )
    return value


def _bias_tensor(owner: str, bias_mant: object) -> Tensor:
    if isinstance(bias_mant, Tensor):
        return _integer_tensor(owner, "bias_mant", bias_mant, -4096, 4095)
    return torch.tensor(_check_int(owner, "bias_mant", bias_mant, -4096, 4095))


def effective_bias(bias_mant: Tensor, bias_exp: int) -> Tensor:
    """Lava's ``scale_bias``: ``bias_mant << bias_exp`` in int32 (``>> -bias_exp`` for a
    negative exponent, arithmetic)."""
    mant = bias_mant.to(torch.int64)  # 13 bits << at most 7: no int32 overflow
    return mant << bias_exp if bias_exp >= 0 else mant >> (-bias_exp)


def loihi_cuba_lif(
    x: Tensor,
    *,
    du: int,
    dv: int,
    vth: int,
    bias_mant: Tensor | int = 0,
    bias_exp: int = 0,
    state: LoihiCubaState | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Run Lava's bit-accurate LIF over a time-major integer input.

    Args:
        x: the synaptic input ``[T, ...]`` (an integer tensor of int32 values: the sums
            Lava's ``Dense`` and ``Conv`` processes send).
        du: current decay, ``-1`` to ``4095`` (Lava adds one: ``4096 − du − 1`` of
            ``4096`` is kept per step).
        dv: voltage decay, ``0`` to ``4096`` (``4096 − dv`` of ``4096`` is kept).
        vth: threshold mantissa, ``0`` to ``2^17`` (the voltage is compared with
            ``vth << 6``).
        bias_mant: bias mantissa, ``-4096`` to ``4095``: an int or an integer tensor
            broadcastable to one step.
        bias_exp: bias exponent, ``-7`` to ``7`` (Lava-DL's ``netx`` uses 6).
        state: ``(u, v)`` to start from; ``None`` (default) starts from zero, as
            Lava's ``LIF`` does.

    Returns:
        ``(spikes, u, v)``, each ``[T, ...]`` ``int64``: the spikes (0/1), the current
        and the voltage after each step (the voltage after the reset).

    Raises:
        DTypeError: a floating-point ``x`` or ``bias_mant``.
        ConfigurationError: a parameter outside its range, or ``x`` outside int32.
        ShapeError: ``x`` without a time dimension, a state of another shape, or a
            ``bias_mant`` that does not broadcast to one step.
    """
    owner = "loihi_cuba_lif"
    du = _check_int(owner, "du", du, -1, _DECAY_UNITY - 1)
    dv = _check_int(owner, "dv", dv, 0, _DECAY_UNITY)
    vth = _check_int(owner, "vth", vth, 0, 1 << 17)
    bias_exp = _check_int(owner, "bias_exp", bias_exp, -7, 7)
    bias = effective_bias(_bias_tensor(owner, bias_mant), bias_exp)
    if not isinstance(x, Tensor) or x.dim() < 1:
        raise ShapeError(f"{owner}: x must be a time-major tensor [T, ...], got {x!r}")
    x = _integer_tensor(owner, "x", x, _INT32_MIN, _INT32_MAX)
    step_shape = x.shape[1:]
    try:
        fits = torch.broadcast_shapes(bias.shape, step_shape) == step_shape
    except RuntimeError:
        fits = False
    if not fits:
        raise ShapeError(
            f"{owner}: bias_mant of shape {tuple(bias.shape)} does not broadcast to one "
            f"step of the input {tuple(step_shape)}"
        )
    if state is None:
        zeros = torch.zeros(step_shape, dtype=torch.int64, device=x.device)
        state = LoihiCubaState(zeros, zeros.clone())
    elif tuple(state.u.shape) != tuple(step_shape) or tuple(state.v.shape) != tuple(step_shape):
        raise ShapeError(
            f"{owner}: the state must have one step's shape {tuple(step_shape)}, got "
            f"u {tuple(state.u.shape)} and v {tuple(state.v.shape)}"
        )
    else:
        state = LoihiCubaState(state.u.to(torch.int64), state.v.to(torch.int64))
    spikes, us, vs = [], [], []
    for a in x:
        s, state = loihi_cuba_step(a, state, du=du, dv=dv, vth=vth, bias=bias)
        spikes.append(s)
        us.append(state.u)
        vs.append(state.v)
    if not spikes:
        empty = x.new_zeros(x.shape)
        return empty, empty.clone(), empty.clone()
    return torch.stack(spikes), torch.stack(us), torch.stack(vs)


class LoihiCubaLIFNode(nn.Module):
    """Loihi's CUBA LIF in fixed point, bit for bit as Lava's ``PyLifModelBitAcc``.

    Integer inference only (no gradient): the input is the integer synaptic sum
    ``[T, B, ...]``, the output the spikes (``int64`` 0/1). Each call starts from zero
    state (``u = v = 0``), as a fresh Lava ``LIF`` process does; ``last_state`` holds
    ``(u, v)`` after the call. The parameters are Lava's ``LIF(du, dv, vth, bias_mant,
    bias_exp)``; :meth:`from_netx` takes Lava-DL's ``netx`` ones and :meth:`from_cuba`
    converts a float :class:`~spikeflow.neurons.CubaLIFNode`.

    Args:
        du: current decay, ``-1`` to ``4095`` (``4096 − du − 1`` of ``4096`` kept).
        dv: voltage decay, ``0`` to ``4096`` (``4096 − dv`` of ``4096`` kept).
        vth: threshold mantissa, ``0`` to ``2^17`` (fires on ``v > vth << 6``).
        bias_mant: bias mantissa, ``-4096`` to ``4095`` (int or integer tensor).
        bias_exp: bias exponent, ``-7`` to ``7``.

    Raises:
        ConfigurationError: a parameter outside its range or not an integer.
        DTypeError: a floating-point ``bias_mant`` (or input, at the call).

    Example::

        >>> node = LoihiCubaLIFNode.from_netx(i_decay=1024, v_decay=128, v_th_mant=80)
        >>> node(torch.full((4, 1, 1), 64)).flatten().tolist()   # weight 64 each step
        [0, 1, 1, 1]
    """

    def __init__(
        self,
        du: int,
        dv: int,
        vth: int,
        bias_mant: Tensor | int = 0,
        bias_exp: int = 0,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.du = _check_int(owner, "du", du, -1, _DECAY_UNITY - 1)
        self.dv = _check_int(owner, "dv", dv, 0, _DECAY_UNITY)
        self.vth = _check_int(owner, "vth", vth, 0, 1 << 17)
        self.bias_exp = _check_int(owner, "bias_exp", bias_exp, -7, 7)
        self.register_buffer("bias_mant", _bias_tensor(owner, bias_mant))
        self.last_state: LoihiCubaState | None = None

    @classmethod
    def from_netx(
        cls,
        i_decay: int,
        v_decay: int,
        v_th_mant: int,
        bias: Tensor | int = 0,
    ) -> LoihiCubaLIFNode:
        """The neuron Lava-DL's ``netx`` builds from a ``CUBA`` neuron group:
        ``du = iDecay − 1``, ``dv = vDecay``, ``vth = vThMant`` and the layer's
        ``bias`` as ``bias_mant`` with ``bias_exp = 6`` (``netx/hdf5.py``,
        ``get_neuron_params``)."""
        owner = f"{cls.__name__}.from_netx"
        i_decay = _check_int(owner, "iDecay", i_decay, 0, _DECAY_UNITY)
        return cls(du=i_decay - 1, dv=v_decay, vth=v_th_mant, bias_mant=bias, bias_exp=6)

    @classmethod
    def from_cuba(cls, node: nn.Module, weight_scale: int = 64) -> LoihiCubaLIFNode:
        """The fixed-point neuron of a float :class:`~spikeflow.neurons.CubaLIFNode`, as
        Lava-DL exports its CUBA neuron: ``iDecay = round(4096 / tau_syn)``,
        ``vDecay = round(4096 / tau_mem)``, ``vThMant = int(weight_scale · θ)``.

        The float neuron must be Lava-DL's CUBA: ``r="tau_syn*tau_mem"``, ``dt=1``,
        ``v_leak=0``, hard reset to 0, one time constant and one threshold for all
        neurons (Lava's ``LIF`` has scalar decays).

        A neuron with a ``norm`` (``CubaLIFNode(norm=...)``) is refused: its mean would
        be the fixed-point neuron's bias, one per channel, whose layout (``[C]`` after a
        dense layer, ``[C, 1, 1]`` after a convolution) the neuron alone does not give;
        :func:`~spikeflow.interop.export_netx` writes it as the layer's bias.

        Raises:
            ConfigurationError: a neuron that is not such a ``CubaLIFNode``, or one with
                a ``norm``.
        """
        if getattr(node, "norm", None) is not None:
            raise ConfigurationError(
                f"{cls.__name__}.from_cuba: the CubaLIFNode has a norm on its current "
                f"({type(node.norm).__name__}), which the fixed-point neuron would drop: "
                "its mean is a per-channel bias_mant whose layout the neuron alone does "
                "not give; export the network with interop.export_netx (the bias "
                "-running_mean), or build LoihiCubaLIFNode(du, dv, vth, bias_mant, 6)"
            )
        return cls.from_netx(**cuba_device_params(node, weight_scale))

    @property
    def i_decay(self) -> int:
        """``iDecay`` as ``netx`` stores it (``du + 1``)."""
        return self.du + 1

    @property
    def v_decay(self) -> int:
        """``vDecay`` as ``netx`` stores it (``dv``)."""
        return self.dv

    def forward(self, x: Tensor) -> Tensor:
        """The spikes ``[T, B, ...]`` (``int64`` 0/1) for the integer input ``x``."""
        if not isinstance(x, Tensor) or x.dim() < 2:
            raise ShapeError(
                f"{type(self).__name__} expects a time-major integer input [T, B, ...], got "
                f"{getattr(x, 'shape', x)!r}"
            )
        spikes, u, v = loihi_cuba_lif(
            x,
            du=self.du,
            dv=self.dv,
            vth=self.vth,
            bias_mant=self.bias_mant,
            bias_exp=self.bias_exp,
        )
        if len(x):
            self.last_state = LoihiCubaState(u[-1], v[-1])
        return spikes

    def extra_repr(self) -> str:
        bias = (
            f"{int(self.bias_mant)}"
            if self.bias_mant.dim() == 0
            else f"tensor{tuple(self.bias_mant.shape)}"
        )
        return (
            f"du={self.du}, dv={self.dv}, vth={self.vth}, bias_mant={bias}, "
            f"bias_exp={self.bias_exp}"
        )


def _scalar(owner: str, name: str, value: object) -> float:
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ConfigurationError(
                f"{owner}: {name} must be one value for all neurons (Lava's LIF has scalar "
                f"decays and threshold), got a tensor of shape {tuple(value.shape)}"
            )
        return float(value.detach().reshape(()))
    return float(value)  # type: ignore[arg-type]


def lava_weight_integers(weight: Tensor, owner: str) -> Tensor:
    """Lava-DL's ``quantize_8bit(w, descale=True)`` integers of float weights:
    ``clamp(2 round(32 w), -256, 254)`` as ``int64`` (``torch.round``: halves to even),
    what ``netx`` stores; ``owner`` names the caller in the error.

    Raises:
        DTypeError: ``weight`` is not a floating-point tensor.
    """
    if not isinstance(weight, Tensor) or not weight.is_floating_point():
        raise DTypeError(f"{owner} expects a float tensor, got {weight!r}")
    scaled = torch.round(weight.detach().to(torch.float64) * (WEIGHT_SCALE / 2)) * 2
    return scaled.clamp(WEIGHT_MIN, WEIGHT_MAX).to(torch.int64)


def cuba_device_params(node: nn.Module, weight_scale: int = 64) -> dict[str, int]:
    """``iDecay``, ``vDecay`` and ``vThMant`` of a float CUBA neuron, as Lava-DL's
    ``cuba.Neuron.device_params`` computes them (``torch.round`` of ``4096 / tau`` in
    float32, ``int(weight_scale · θ)``, which truncates); the keys are the arguments of
    :meth:`LoihiCubaLIFNode.from_netx` (``i_decay``, ``v_decay``, ``v_th_mant``). A
    learned time constant is taken as the neuron's forward takes it, clamped to ``>= dt``
    (so the decays stay within ``[0, 4096]``).

    Raises:
        ConfigurationError: ``node`` is not a Lava-DL-style ``CubaLIFNode`` (see
            :meth:`LoihiCubaLIFNode.from_cuba`).
    """
    from spikeflow.neurons import CubaLIFNode

    owner = "Loihi CUBA export"
    if not isinstance(node, CubaLIFNode):
        raise ConfigurationError(
            f"{owner}: expected a neurons.CubaLIFNode, got {type(node).__name__}"
        )
    if getattr(node, "graded_spike", False):
        raise ConfigurationError(
            f"{owner}: the CubaLIFNode has graded_spike=True, which netx cannot carry: "
            "netx builds a CUBA layer as Lava's LIF process from iDecay, vDecay and "
            "vThMant with binary spikes (it does not read the gradedSpike that Lava-DL "
            "writes); export graded activations as a sigma-delta network instead"
        )
    problems = []
    if node.r != "tau_syn*tau_mem":
        problems.append(f"r={node.r!r} (Loihi's CUBA needs r='tau_syn*tau_mem')")
    if node.dt != 1.0:
        problems.append(f"dt={node.dt} (Loihi steps are dt=1)")
    if _scalar(owner, "v_leak", node.v_leak) != 0.0:
        problems.append("v_leak != 0 (Loihi has no leak voltage)")
    if node.v_reset != 0.0:
        problems.append(f"v_reset={node.v_reset} (Loihi resets the voltage to 0)")
    if problems:
        raise ConfigurationError(
            f"{owner}: the CubaLIFNode is not Lava-DL's CUBA neuron: " + "; ".join(problems)
        )
    # As the forward uses them: a learned time constant pushed below dt acts as dt.
    tau_syn = _scalar(owner, "tau_syn", node._time_constant("tau_syn"))
    tau_mem = _scalar(owner, "tau_mem", node._time_constant("tau_mem"))
    theta = _scalar(owner, "v_threshold", node.v_threshold)
    if not 1 <= theta * weight_scale < (1 << 17) + 1:
        raise ConfigurationError(
            f"{owner}: v_threshold={theta:g} gives vThMant={theta * weight_scale:g}, outside "
            f"Loihi's 17-bit threshold (0, {1 << 17}]"
        )

    def rounded(value: float) -> int:  # Lava-DL: a float32 parameter, torch.round
        return int(torch.round(torch.tensor([value], dtype=torch.float32)))

    return {
        "i_decay": rounded(_DECAY_UNITY / tau_syn),
        "v_decay": rounded(_DECAY_UNITY / tau_mem),
        "v_th_mant": int(theta * weight_scale),  # Lava-DL's int(): towards zero
    }
