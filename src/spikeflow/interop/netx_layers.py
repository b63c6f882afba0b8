"""The integer layers of a fixed-point Loihi network (what :func:`import_netx` builds).

A Lava ``Dense`` or ``Conv`` process sends each neuron the sum of the integer weights of
the inputs that spiked; these layers compute that sum exactly (in float64, exact for
any sum below ``2^53``, then ``int64``: PyTorch's CPU convolutions have no integer
kernels). :class:`NetxNetwork` chains them with
:class:`~spikeflow.quant.loihi.LoihiCubaLIFNode` populations, flattens and axonal
delays, time-major ``[T, B, ...]`` and in integers throughout.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.interop.netx_neurons import (
    LoihiAdaptiveResonatorNode,
    LoihiALIFNode,
    LoihiResonatorNode,
)
from spikeflow.layers import AxonalDelay, Flatten
from spikeflow.quant.loihi import LoihiCubaLIFNode, _integers_as_int64

__all__ = [
    "SDNN_BIAS_LIMIT",
    "SDNN_MAX_VTH",
    "SDNN_SPIKE_EXP",
    "SDNN_STATE_EXP",
    "SDNN_STATE_LIMIT",
    "LoihiConv2d",
    "LoihiDense",
    "LoihiSigmaDelta",
    "LoihiSigmaDeltaInput",
    "NetxNetwork",
    "StateOverflowError",
    "check_state_bits",
]

#: netx's sigma-delta exponents (``get_neuron_params``: ``spike_exp = state_exp = 6``):
#: a graded spike carries ``2^(6+6)`` units per unit of activation, a state ``2^18``
#: (weights are 64 per unit, so ``w_int · message`` is in the state's units).
SDNN_SPIKE_EXP = 6
SDNN_STATE_EXP = 6
#: Lava's sigma-delta states (``sigma``, ``act``, ``residue``: ``precision=24`` in its
#: fixed-point models) are signed 24-bit: ``[-2^23, 2^23 - 1]``, 32 units of activation.
SDNN_STATE_LIMIT = 1 << 23
#: The largest ``vThMant``: Lava stores ``vth << 12`` in a 24-bit state (``2^11 - 1``,
#: a threshold below 32 units).
SDNN_MAX_VTH = (SDNN_STATE_LIMIT >> (SDNN_SPIKE_EXP + SDNN_STATE_EXP)) - 1
#: The bias mantissa's bound: Lava's ``SigmaDelta`` holds ``bias << 12`` (``process.py``)
#: and its activation is ``sigma + (bias << 12)``, a 24-bit state, which at rest
#: (``sigma = 0``) is the shifted bias itself: ``[-2^11, 2^11 - 1]`` (``|b| < 32``), as
#: ``vThMant``. (The ``precision=16`` of its ``bias`` Var, read on the shifted value,
#: would be narrower still; Lava's Python models do not enforce it.)
SDNN_BIAS_LIMIT = SDNN_STATE_LIMIT >> (SDNN_SPIKE_EXP + SDNN_STATE_EXP)


class StateOverflowError(ConfigurationError):
    """A fixed-point sigma-delta state left Lava's signed 24 bits; :class:`NetxNetwork`
    re-raises it naming the layer."""


def check_state_bits(owner: str, what: str, state: Tensor) -> None:
    """Raise a :class:`StateOverflowError` if ``state`` ``[T, B, ...]`` leaves the signed
    24 bits of Lava's sigma-delta states, naming ``what``, the first step and value."""
    bad = (state < -SDNN_STATE_LIMIT) | (state >= SDNN_STATE_LIMIT)
    if not bool(bad.any()):
        return
    step = int(bad.flatten(1).any(1).nonzero()[0])
    value = int(state[step][bad[step]].flatten()[0])
    raise StateOverflowError(
        f"{owner}: {what} reached {value} at step {step} ({value / (1 << 18):g} units of "
        "activation), beyond Loihi's signed 24-bit states [-2^23, 2^23 - 1] (32 units): "
        "on the chip it would overflow; scale the weights, bias or input down"
    )


def _integer_input(owner: str, x: Tensor, step_dims: int, layout: str) -> Tensor:
    if not isinstance(x, Tensor) or x.dim() != step_dims + 1:
        raise ShapeError(
            f"{owner} expects a time-major input {layout} ({step_dims + 1} dims); got "
            f"shape {tuple(getattr(x, 'shape', ()))}"
        )
    if not x.is_floating_point() and not x.is_complex():
        return _integers_as_int64(owner, "the input", x)
    raise DTypeError(
        f"{owner}: the input must be an integer tensor of spikes (any signed or unsigned "
        f"integer dtype, or bool), got dtype {x.dtype}; a fixed-point network computes in "
        "integers"
    )


def _integer_weight(owner: str, weight: Tensor, dims: int) -> Tensor:
    if not isinstance(weight, Tensor) or weight.dim() != dims:
        raise ShapeError(f"{owner}: weight must be a {dims}-dim tensor, got {weight!r}")
    return _integers_as_int64(owner, "weight", weight)


class LoihiDense(nn.Module):
    """An integer dense synapse: ``y[t] = W x[t]`` over ``[T, B, in]`` (Lava's ``Dense``
    process on binary spikes, without its one-step output buffer).

    Args:
        weight: the integer weights ``[out, in]``.

    Raises:
        ShapeError, DTypeError: a weight that is not a 2-dim integer tensor (and, at the
            call, an input that is not ``[T, B, in]`` integers).
    """

    def __init__(self, weight: Tensor) -> None:
        super().__init__()
        self.register_buffer("weight", _integer_weight(type(self).__name__, weight, 2))

    def forward(self, x: Tensor) -> Tensor:
        """The integer synaptic sums ``[T, B, out]``."""
        x = _integer_input(type(self).__name__, x, 2, "[T, B, in]")
        if x.shape[-1] != self.weight.shape[1]:
            raise ShapeError(
                f"LoihiDense expects {self.weight.shape[1]} input features, got {x.shape[-1]}"
            )
        return torch.matmul(x.to(torch.float64), self.weight.to(torch.float64).t()).to(torch.int64)

    def extra_repr(self) -> str:
        return f"in_features={self.weight.shape[1]}, out_features={self.weight.shape[0]}"


def _pair(owner: str, name: str, value: int | Sequence[int], low: int) -> tuple[int, int]:
    values = (value, value) if isinstance(value, int) else tuple(value)
    if len(values) != 2 or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= low for v in values
    ):
        raise ConfigurationError(
            f"{owner}: {name} must be an integer >= {low} or two of them, got {value!r}"
        )
    return values  # type: ignore[return-value]


def _init_convolution(
    module: nn.Module,
    weight: Tensor,
    stride: int | Sequence[int],
    padding: int | Sequence[int],
    dilation: int | Sequence[int],
    groups: int,
    grouped: str,
) -> None:
    """Checks and sets an integer convolution's ``weight`` buffer (4-dim) and its
    ``stride``, ``padding``, ``dilation`` pairs and ``groups``, which must divide the
    weight's first dimension (its ``grouped`` channels: "output" or "input")."""
    owner = type(module).__name__
    module.register_buffer("weight", _integer_weight(owner, weight, 4))
    module.stride = _pair(owner, "stride", stride, 1)
    module.padding = _pair(owner, "padding", padding, 0)
    module.dilation = _pair(owner, "dilation", dilation, 1)
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ConfigurationError(f"{owner}: groups must be an integer >= 1, got {groups!r}")
    channels = module.weight.shape[0]
    if channels % groups:
        raise ConfigurationError(
            f"{owner}: {channels} {grouped} channels do not split into {groups} groups"
        )
    module.groups = groups


def _integer_convolution(
    module: nn.Module, op: Callable[..., Tensor], x: Tensor, in_channels: int
) -> Tensor:
    """``op`` (``F.conv2d`` or ``F.conv_transpose2d``) with ``module``'s integer weight
    and geometry on the integer ``x [T, B, in_channels, H, W]``, exactly (in float64),
    returned as int64 ``[T, B, C', H', W']``."""
    owner = type(module).__name__
    x = _integer_input(owner, x, 4, "[T, B, C, H, W]")
    if x.shape[2] != in_channels:
        raise ShapeError(f"{owner} expects {in_channels} input channels, got {x.shape[2]}")
    T, B = x.shape[:2]
    y = op(
        x.reshape(T * B, *x.shape[2:]).to(torch.float64),
        module.weight.to(torch.float64),
        stride=module.stride,
        padding=module.padding,
        dilation=module.dilation,
        groups=module.groups,
    )
    return y.to(torch.int64).reshape(T, B, *y.shape[1:])


class LoihiConv2d(nn.Module):
    """An integer 2-d convolution (PyTorch's cross-correlation, ``[out, in/groups, kH,
    kW]`` weights) over ``[T, B, C, H, W]``.

    Args:
        weight: the integer kernel ``[out, in/groups, kH, kW]``.
        stride, padding, dilation: ints or ``(H, W)`` pairs, as ``nn.Conv2d``.
        groups: the number of groups.

    Raises:
        ConfigurationError: a stride, padding, dilation or groups that is not valid.
        ShapeError, DTypeError: a weight that is not a 4-dim integer tensor.
    """

    def __init__(
        self,
        weight: Tensor,
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] = 0,
        dilation: int | Sequence[int] = 1,
        groups: int = 1,
    ) -> None:
        super().__init__()
        _init_convolution(self, weight, stride, padding, dilation, groups, "output")

    @property
    def in_channels(self) -> int:
        """The number of input channels."""
        return int(self.weight.shape[1]) * self.groups

    def output_shape(self, shape: Sequence[int]) -> tuple[int, int, int]:
        """The ``(C, H, W)`` output of one step for a ``(C, H, W)`` input."""
        size = []
        for i in range(2):
            span = self.dilation[i] * (self.weight.shape[2 + i] - 1) + 1
            size.append((shape[1 + i] + 2 * self.padding[i] - span) // self.stride[i] + 1)
        return int(self.weight.shape[0]), size[0], size[1]

    def forward(self, x: Tensor) -> Tensor:
        """The integer synaptic sums ``[T, B, out, H', W']``."""
        return _integer_convolution(self, F.conv2d, x, self.in_channels)

    def extra_repr(self) -> str:
        out, per_group, kh, kw = self.weight.shape
        return (
            f"{per_group * self.groups}, {out}, kernel_size=({kh}, {kw}), stride={self.stride}, "
            f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}"
        )


def _check_mantissa(owner: str, name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigurationError(
            f"{owner}: {name} must be an integer in [{low}, {high}], got {value!r}"
        )
    return value


class LoihiSigmaDeltaInput(nn.Module):
    """netx's sigma-delta input layer (Lava's ``Delta`` process, fixed point, as
    ``get_neuron_params(input=True)`` builds it): the input integers ``q`` (the float
    input times 64: netx's ``Quantize(exp=6)``) are delta encoded, a change sent where
    ``|q - ref| >= vThMant``, as the graded spike ``(q - ref) · 2^6`` (``(q << 12) >> 6``),
    and ``ref`` set to ``q`` there (Lava's residue: the unsent changes stay in it).

    Args:
        vth: ``vThMant``, the threshold in input units (``int(64 θ)``), in
            [0, 2^11 - 1] (Lava keeps ``vth << 12`` in a 24-bit state).
    """

    def __init__(self, vth: int) -> None:
        super().__init__()
        self.vth = _check_mantissa(type(self).__name__, "vth", vth, 0, SDNN_MAX_VTH)

    def forward(self, x: Tensor) -> Tensor:
        """The graded spikes ``[T, B, ...]`` (``int64``) of integer inputs ``[T, B, ...]``."""
        if not isinstance(x, Tensor) or x.dim() < 2:
            raise ShapeError(f"LoihiSigmaDeltaInput expects [T, B, ...], got {x!r}")
        x = _integers_as_int64(type(self).__name__, "the input", x)
        # (in float64: an int64 shift of a huge input would wrap back inside 24 bits)
        scale = float(1 << (SDNN_SPIKE_EXP + SDNN_STATE_EXP))
        check_state_bits(type(self).__name__, "the input's state q << 12", x.double() * scale)
        ref = torch.zeros_like(x[0])
        out = []
        for q in x.unbind(0):
            delta = q - ref
            send = delta.abs() >= self.vth
            out.append(torch.where(send, delta << SDNN_SPIKE_EXP, 0))
            ref = torch.where(send, q, ref)
        return torch.stack(out)

    def extra_repr(self) -> str:
        return f"vth={self.vth}"


class LoihiSigmaDelta(nn.Module):
    """netx's sigma-delta neurons (Lava's ``SigmaDelta`` process, fixed point, with
    ``spike_exp = state_exp = 6`` and ReLU), or with ``sigma_output`` its ``Sigma``
    output layer, on the integer synaptic input ``a[t]`` ``[T, B, ...]``::

        sigma += a[t]                          (2^18 units per unit of activation)
        act    = max(sigma + bias << 12, 0)
        d      = act - ref
        s[t]   = (d >> 6) where |d| >= vThMant << 12, else 0
        ref    = act where sent

    (``PySigmaDeltaModelFixed``, the ``fixed_pt`` model Lava's run configs select for
    ``SigmaDelta``, written with its ``act`` and ``residue`` as ``ref``: the bits the
    ``>> 6`` floors away are lost, not carried; ``PySigmaDeltaModelFixedCorrected``
    would carry them). A ``Sigma`` output returns ``sigma`` itself.

    Args:
        vth: ``vThMant`` (``int(64 θ)``), in [0, 2^11 - 1] (``vth << 12`` in 24 bits).
        bias: the bias mantissa (64 per unit), a number or one per channel (``[C]``, or
            ``[C, 1, 1]`` for a convolution's ``[C, H, W]``), in [-2^11, 2^11 - 1]
            (``bias << 12`` in the 24-bit activation state).
        sigma_output: a ``Sigma`` process (the network's output layer).
    """

    def __init__(self, vth: int, bias: Tensor | int = 0, sigma_output: bool = False) -> None:
        super().__init__()
        owner = type(self).__name__
        self.vth = _check_mantissa(owner, "vth", vth, 0, SDNN_MAX_VTH)
        bias_t = torch.as_tensor(bias)
        bias_t = _integers_as_int64(owner, "bias", bias_t)
        if bool(((bias_t < -SDNN_BIAS_LIMIT) | (bias_t >= SDNN_BIAS_LIMIT)).any()):
            raise ConfigurationError(
                f"{owner}: bias must be in [-2^11, 2^11 - 1] (Lava holds bias << 12, and "
                "sigma + (bias << 12) is a signed 24-bit state: at rest the bias alone), "
                f"got values from {int(bias_t.min())} to {int(bias_t.max())}"
            )
        self.register_buffer("bias", bias_t)
        if not isinstance(sigma_output, bool):
            raise ConfigurationError(f"{owner}: sigma_output must be a bool, got {sigma_output!r}")
        self.sigma_output = sigma_output

    def forward(self, x: Tensor) -> Tensor:
        """The graded spikes (or, ``sigma_output``, the sums) ``[T, B, ...]``, ``int64``."""
        if not isinstance(x, Tensor) or x.dim() < 2:
            raise ShapeError(f"LoihiSigmaDelta expects [T, B, ...], got {x!r}")
        x = _integers_as_int64(type(self).__name__, "the input", x)
        owner = type(self).__name__
        sigma = torch.cumsum(x, dim=0)
        check_state_bits(owner, "sigma", sigma)
        # Lava's a_in port is 24-bit too: a swing of sigma by more than 32 units in one
        # step overflows it even where sigma stays inside
        check_state_bits(owner, "the synaptic input a_in", x)
        if self.sigma_output:
            return sigma
        shift = SDNN_SPIKE_EXP + SDNN_STATE_EXP
        act = sigma + (self.bias << shift)
        check_state_bits(owner, "sigma + bias", act)
        act = torch.clamp(act, min=0)
        ref = torch.zeros_like(x[0])
        vth = self.vth << shift
        out = []
        for a in act.unbind(0):
            d = a - ref
            send = d.abs() >= vth
            out.append(torch.where(send, d >> SDNN_STATE_EXP, 0))
            ref = torch.where(send, a, ref)
        return torch.stack(out)

    def extra_repr(self) -> str:
        bias = int(self.bias) if self.bias.numel() == 1 else f"tensor{tuple(self.bias.shape)}"
        return f"vth={self.vth}, bias={bias}, sigma_output={self.sigma_output}"


def _layer_output_shape(layer: nn.Module, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The sample shape ``layer`` of a :class:`NetxNetwork` makes from ``shape``."""
    if isinstance(layer, LoihiDense):
        return (int(layer.weight.shape[0]),)
    if isinstance(layer, LoihiConv2d) or callable(getattr(layer, "output_shape", None)):
        # (also the pool / unpool / convT / average / complex synapses of netx_pool)
        return tuple(layer.output_shape(shape))
    if isinstance(layer, Flatten):
        # nn.Flatten's dims count from the batch dim: flatten a meta sample batch.
        sample = torch.empty((1, *shape), device="meta")
        return tuple(sample.flatten(layer.start_dim, layer.end_dim).shape[1:])
    if isinstance(layer, (LoihiCubaLIFNode, AxonalDelay, LoihiSigmaDelta, LoihiSigmaDeltaInput)):
        return shape
    if isinstance(layer, (LoihiALIFNode, LoihiResonatorNode, LoihiAdaptiveResonatorNode)):
        return shape
    raise ConfigurationError(
        f"NetxNetwork: cannot slice after a {type(layer).__name__} layer, whose output "
        "shape is not known (only the layers import_netx builds, Flatten and AxonalDelay "
        "have one)"
    )


class NetxNetwork(nn.Sequential):
    """A fixed-point Loihi network: integer synapses, Loihi CUBA populations (or
    sigma-delta units: :class:`LoihiSigmaDeltaInput`, :class:`LoihiSigmaDelta`), flattens
    and axonal delays in order, on time-major integers ``[T, B, *input_shape]``.

    Each call starts from zero neuron state. The layers run in the same time step (Lava
    delays each layer's output by one step: see ``docs/loihi.md``).

    Args:
        input_shape: the shape of one input sample (``(C, H, W)`` or ``(K,)``).
        *modules: the layers, in order.
    """

    def __init__(self, input_shape: Sequence[int], *modules: nn.Module) -> None:
        super().__init__(*modules)
        self.input_shape = tuple(int(n) for n in input_shape)

    def __getitem__(self, index: int | slice) -> nn.Module:  # type: ignore[override]
        """A layer, or (a slice ``[a:b]``) the network of those layers, whose input shape
        is the shape the layers before ``a`` produce from :attr:`input_shape`.

        Raises:
            ConfigurationError: a slice with a step other than 1, or one that starts after
                a layer whose output shape is not known (not one of the layers
                :func:`~spikeflow.interop.import_netx` builds, a ``Flatten`` or an
                ``AxonalDelay``).
        """
        if not isinstance(index, slice):
            return super().__getitem__(index)
        layers = list(self._modules.values())
        start, _, step = index.indices(len(layers))
        if step != 1:
            raise ConfigurationError(
                f"NetxNetwork: a slice of the network must have step 1 (the layers form a "
                f"chain), got step {step}"
            )
        shape = self.input_shape
        for layer in layers[:start]:
            shape = _layer_output_shape(layer, shape)
        return NetxNetwork(shape, *layers[index])

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        """The output spikes ``[T, B, ...]`` (``int64``) for binary input spikes (the
        group means, float64, when the last layer is a ``LoihiAverage``)."""
        x = _integer_input(
            type(self).__name__, x, len(self.input_shape) + 1, f"[T, B, {self.input_shape}]"
        )
        if tuple(x.shape[2:]) != self.input_shape:
            raise ShapeError(
                f"NetxNetwork expects samples of shape {self.input_shape}, got "
                f"{tuple(x.shape[2:])} (input [T, B, ...] {tuple(x.shape)})"
            )
        for name, module in self.named_children():
            try:
                x = module(x)
            except StateOverflowError as error:
                raise StateOverflowError(f"NetxNetwork layer {name}: {error}") from error
        return x

    def extra_repr(self) -> str:
        return f"input_shape={self.input_shape}"
