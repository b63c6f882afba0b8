"""The compute dtype of a fused neuron call, and the mixed precision the kernels refuse.

The reference loop computes every operation of every step in the dtype PyTorch promotes
its operands to. A neuron whose parameters, threshold or states are wider than its
float32 input (a float64 per-neuron parameter, an initial membrane loaded from numpy)
therefore runs in *mixed* precision there: an auxiliary trace fed by a float64 parameter
becomes float64 while the membrane and the spikes stay float32, and a float64 parameter
entering through an adaptation state leaves step 0 in float32 and makes the later steps
float64. One fused kernel computes in one type and cannot reproduce that, so the fused
backends refuse such a call (:class:`MixedPrecisionError`); ``backend="auto"`` runs the
reference loop instead, with a warning.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor

from spikeflow.errors import ConfigurationError
from spikeflow.kernels.expr import TraceError

__all__ = [
    "HostScalarError",
    "MixedPrecisionError",
    "ScalarPrecisionError",
    "device_advice",
    "operand_tag",
    "promoted_input",
    "rounded_start",
]

#: Input dtypes the kernels compute in as they are (never promoted).
_EXACT = (torch.float32, torch.float64)


class MixedPrecisionError(ConfigurationError):
    """A parameter, the threshold or a state is a tensor (of one or more dimensions) of a
    wider floating dtype than the float32/float64 input, which the reference loop would
    compute in mixed precision, step by step, and one fused kernel cannot. An explicit
    fused backend raises it; ``backend="auto"`` runs the reference loop instead.

    Attributes:
        value: what is wider: ``"parameter 'name'"``, ``"the threshold"`` or
            ``"state 'name'"``.
        dtype: its dtype.
        shape: its shape.
        input_dtype: the input's dtype.
    """

    #: What the neuron does that the kernels cannot, as ``auto``'s fallback warning says.
    summary = "mixes precisions"

    def __init__(
        self, value: str, dtype: torch.dtype, shape: tuple[int, ...], input_dtype: torch.dtype
    ) -> None:
        self.value = value
        self.dtype = dtype
        self.shape = shape
        self.input_dtype = input_dtype
        super().__init__(f"the fused backends cannot run this neuron: {self.reason}")

    @property
    def reason(self) -> str:
        """What is wrong, why, and what to do (the message without its prefix)."""
        return (
            f"{self.value} is a {self.dtype} tensor of shape {self.shape} but the input is "
            f"{self.input_dtype}; the reference loop computes such a neuron in mixed precision "
            f"(each operation of each step in the dtype PyTorch promotes its operands to, so "
            f"some values and steps are {self.input_dtype} and others {self.dtype}), which one "
            f"fused kernel cannot reproduce. Give the neuron (its parameters, threshold and "
            f"initial state) and its input one dtype, e.g. neuron.to(x.dtype) or "
            f"x.to({self.dtype}), or use backend='torch'"
        )


class HostScalarError(MixedPrecisionError):
    """A 0-dim CPU tensor (a parameter, the threshold or a state) beside an input on
    another device. PyTorch's CUDA kernels read such a tensor on the host as a scalar,
    and divide by it as a multiplication by its reciprocal, which the Triton kernels,
    reading it on the device, do not reproduce. An explicit fused backend raises it;
    ``backend="auto"`` runs the reference loop instead, with a warning.

    Attributes: as :class:`MixedPrecisionError` (``shape`` is ``()``), and ``device``:
    the input's device.
    """

    def __init__(self, value: str, dtype: torch.dtype, input_dtype: torch.dtype, device: str):
        self.device = device
        super().__init__(value, dtype, (), input_dtype)

    summary = "takes a 0-dim CPU tensor as a host scalar"

    @property
    def reason(self) -> str:
        return (
            f"{self.value} is a 0-dim CPU tensor ({self.dtype}) beside an input on "
            f"{self.device}; PyTorch reads such a tensor on the host as a scalar (and "
            f"divides by it as a multiplication by its reciprocal), which the fused "
            f"kernels, reading it on the device, do not reproduce; "
            f"{device_advice(self.value)}, or use backend='torch'"
        )


def device_advice(what: str) -> str:
    """What to do about ``what`` (``"state 'v'"``, ``"the threshold"``, ...) being on
    another device than the input."""
    if what.startswith("state"):
        return (
            "a carried (streaming) state stays on the device it was computed on: reset "
            "the neuron (spikeflow.functional.reset_net(net)) after moving it"
        )
    return (
        "move the neuron and its input to the same device (neuron.to(x.device); keep a "
        "tensor as a buffer or parameter so that .to() moves it)"
    )


class ScalarPrecisionError(MixedPrecisionError, TraceError):
    """A sub-expression of parameters and constants alone (no input or state), such as
    ``a * a``, which the reference loop computes in a dtype the kernels do not compute
    in: float16/bfloat16 (a 0-dim half parameter, a per-neuron half array with a
    float32 input) or an integer one. Raised when the kernels are specialised (the
    equations' types are known then); also a :class:`~spikeflow.kernels.expr.TraceError`
    so that ``torch.compile`` reports it as it reports equations it cannot compile.
    ``backend="auto"`` runs the reference loop instead, with a warning.

    Attributes: as :class:`MixedPrecisionError` (``shape`` is ``()`` for a 0-dim
    tensor, ``(-1,)`` for a per-neuron one; ``input_dtype`` is the kernels' compute
    dtype), and ``expression``: the sub-expression, as the tracer prints it.
    """

    def __init__(
        self,
        value: str,
        dtype: torch.dtype,
        shape: tuple[int, ...],
        input_dtype: torch.dtype,
        expression: str,
        computed: torch.dtype,
    ) -> None:
        self.expression = expression
        self.computed = computed
        self.value = value
        self.dtype = dtype
        self.shape = shape
        self.input_dtype = input_dtype
        ConfigurationError.__init__(
            self, f"the fused backends cannot run this neuron: {self.reason}"
        )

    @property
    def reason(self) -> str:
        kind = "0-dim" if self.shape == () else "per-neuron"
        return (
            f"{self.value} is a {kind} {self.dtype} tensor that enters {self.expression}, a "
            f"sub-expression of parameters and constants alone, which the reference loop "
            f"computes in {self.computed} (PyTorch's promotion rules), while the fused "
            f"kernels compute in float32 or float64 ({self.input_dtype} here) and cannot "
            f"round each operation as {self.computed} does. Give the parameter the input's "
            f"dtype (e.g. neuron.to(x.dtype)), or use backend='torch'"
        )


#: The floating dtypes in which the fused kernels can compute a value exactly.
_KERNEL_DTYPES = (torch.float32, torch.float64)


def operand_tag(v: Tensor, input_dtype: torch.dtype) -> tuple[torch.dtype, bool]:
    """What the kernels' types depend on of a tensor parameter or threshold ``v``: its
    dtype and whether it is 0-dim. For a float16/bfloat16 input (which the Triton kernels
    compute in float32 throughout, not reproducing half arithmetic) a half tensor counts
    as float32."""
    dtype = v.dtype
    if input_dtype not in _EXACT and dtype in (torch.float16, torch.bfloat16):
        dtype = torch.float32
    return dtype, v.dim() == 0


def promoted_input(
    x_seq: Tensor,
    params: dict[str, Tensor | float],
    threshold: Tensor | float,
    state: dict[str, Tensor] | None = None,
) -> Tensor:
    """``x_seq`` in the dtype the fused kernels compute in.

    A float32 or float64 input is returned as it is; a floating parameter or threshold
    tensor of one or more dimensions with a wider dtype, or a floating state of any other
    dtype, raises :class:`MixedPrecisionError` (0-dim parameters and Python floats never
    promote, by PyTorch's rule, and are accepted). A half input (float16/bfloat16, which the Triton
    kernels compute in float32) is promoted to the widest such tensor's dtype, as PyTorch
    would promote it. Runs on every call: one pass over the values, no allocation.
    """
    dtype = x_seq.dtype
    exact = dtype in _EXACT
    if exact:
        for name, v in (state or {}).items():
            # A narrower state (a float32 membrane beside a float64 input) too: the
            # reference computes its first step, and a state the input never reaches at
            # every step, in its dtype; the kernels would cast it.
            if isinstance(v, Tensor) and v.is_floating_point() and v.dtype != dtype:
                raise MixedPrecisionError(f"state {name!r}", v.dtype, tuple(v.shape), dtype)
    for group, values in (("parameter", params), ("state", state or {})):
        for name, v in values.items():
            if isinstance(v, Tensor) and v.dim() > 0 and v.is_floating_point():
                dtype = _wider(dtype, v, exact, x_seq.dtype, f"{group} {name!r}")
    if isinstance(threshold, Tensor) and threshold.dim() > 0 and threshold.is_floating_point():
        dtype = _wider(dtype, threshold, exact, x_seq.dtype, "the threshold")
    return x_seq if dtype == x_seq.dtype else x_seq.to(dtype)


def _wider(
    dtype: torch.dtype, v: Tensor, exact: bool, input_dtype: torch.dtype, what: str
) -> torch.dtype:
    """``dtype`` promoted with ``v``'s; for an ``exact`` input, a refusal instead."""
    promoted = torch.promote_types(dtype, v.dtype)
    if exact and promoted != dtype:
        raise MixedPrecisionError(what, v.dtype, tuple(v.shape), input_dtype)
    return promoted


#: (significand bits, smallest normal exponent, largest finite value) of the half types.
_HALF_FORMATS = {
    torch.float16: (11, -14, 65504.0),
    torch.bfloat16: (8, -126, 3.3895313892515355e38),
}
_FLOAT32_FORMAT = (24, -126, 3.4028234663852886e38)


def _round_to(value: float, bits: int, min_exp: int, largest: float) -> float:
    """``value`` rounded to the binary format with ``bits`` significand bits, smallest
    normal exponent ``min_exp`` and largest finite value ``largest``: to nearest, ties
    to even, subnormals included; an OverflowError beyond ``largest``."""
    if value == 0.0 or not math.isfinite(value):
        return value
    exponent = math.frexp(value)[1]  # value in [2**(exponent-1), 2**exponent)
    ulp = max(exponent, min_exp + 1) - bits  # the unit in the last place, as a power of 2
    rounded = math.ldexp(round(math.ldexp(value, -ulp)), ulp)  # exact scaling; half-even
    if abs(rounded) > largest:
        raise OverflowError(f"{value!r} is out of range")
    return math.copysign(rounded, value)  # an underflow to zero keeps its sign


def _round_half(value: float, dtype: torch.dtype) -> float:
    """``value`` as ``full_like`` of a ``dtype`` (float16/bfloat16) tensor holds it: the
    number goes to float32 first, then to ``dtype`` (c10's conversion, two roundings).
    In Python arithmetic: no tensor, so nothing for torch.compile to break its graph on.

    Raises:
        OverflowError: the value is beyond the type's largest finite value.
    """
    if math.isfinite(value) and abs(value) > _HALF_FORMATS[dtype][2]:
        # c10's checked conversion (full_like's) compares the double with the range
        raise OverflowError(f"{value!r} is out of the range of {dtype}")
    return _round_to(_round_to(value, *_FLOAT32_FORMAT), *_HALF_FORMATS[dtype])


def rounded_start(
    state: dict[str, Tensor | float], input_dtype: torch.dtype
) -> dict[str, Tensor | float]:
    """``state`` with its numbers (a fresh neuron's initial values, which the kernels read
    as scalars) checked, and for a float16/bfloat16 input rounded to it: the reference
    loop starts from ``full_like`` of a step of the input, so from the half value, also
    where a wider parameter promotes the kernels' input to float32.

    Raises:
        ConfigurationError: a number state that is not a real number, or one the input's
            half type cannot hold.
    """
    out = dict(state)
    for name, value in state.items():
        if isinstance(value, Tensor):
            continue
        if not isinstance(value, numbers.Real):
            raise ConfigurationError(
                f"state {name!r} starts at {value!r}: an initial value is a tensor or a real number"
            )
        if input_dtype in _HALF_FORMATS:
            try:
                out[name] = _round_half(float(value), input_dtype)
            except OverflowError:
                raise ConfigurationError(
                    f"state {name!r} starts at {value!r}, which the input's {input_dtype} "
                    "cannot hold"
                ) from None
    return out
