"""snnTorch 1.0's spiking LSTMs: ``SLSTM`` (dense) and ``SConv2dLSTM`` (convolutional).

A standard LSTM (smooth sigmoid and tanh gates) whose hidden state ``mem`` is the
membrane of a spiking output: each step fires ``S = Θ(mem - θ)``, and a spike resets
``mem`` one step later. With ``R`` the previous step's firing condition (no gradient),
``W ⋆`` a matrix product (``SLSTM``) or a same-padded 2-D convolution
(``SConv2dLSTM``)::

    R      = Θ(mem[t-1] - θ)                               detached
    i, f, o = σ(W_i ⋆ [x[t], mem[t-1]] + b_i), ...,  g = tanh(W_g ⋆ [x[t], mem[t-1]] + b_g)
    syn[t] = f syn[t-1] + i g                                 (the cell state c)
    mem[t] = o tanh(syn[t])                                   (the hidden state h)
             - θ R           reset_mechanism="subtract"
             - mem[t] R      "zero" (mem[t] set to 0)
                             "none" (the default: a plain LSTM)
    S[t]   = Θ(pool(mem[t]) - θ)                            pool: SConv2dLSTM's option

from ``syn = mem = 0``. This differs from :class:`~spikeflow.layers.SpikingLSTM`
(SpikingJelly's), whose gates are themselves spikes and whose output is ``h``.

The input part ``W ⋆ x`` runs for all steps at once (one matrix product or one
convolution over the folded sequence); only the recurrent part runs per step. The
parameters are snnTorch's (``lstm_cell.*``, an ``nn.LSTMCell``; ``conv.*``, one
``nn.Conv2d`` over the concatenation ``[x, mem]`` whose output channels are the gates
``i, f, o, g``), with its initialisation: they load from its ``state_dict`` by name (its
buffers ``threshold``, ``graded_spikes_factor``, ``reset_mechanism_val`` are arguments
here), and the same seed gives the same weights.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikeflow._checks import check_flag
from spikeflow.base import MemoryModule, StepMode
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.layers._checks import check_int, check_surrogate
from spikeflow.layers._time import STEP_2D, check_step_dims
from spikeflow.surrogate import Sigmoid, Surrogate

__all__ = ["SLSTM", "SConv2dLSTM"]

#: snnTorch's reset mechanisms.
RESET_MECHANISMS = ("none", "subtract", "zero")


def _pair(owner: str, name: str, value: int | Sequence[int], minimum: int) -> tuple[int, int]:
    """An int or a pair of ints, each ``>= minimum``, as a pair."""
    values = [value, value] if not isinstance(value, (tuple, list)) else list(value)
    if len(values) != 2:
        raise ConfigurationError(f"{owner}: {name} must be an int or a pair, got {value!r}")
    first, second = (check_int(f"{owner}: {name}", v, minimum) for v in values)
    return first, second


class _SpikingLSTMBase(MemoryModule):
    """The spiking output, the reset and the time loop shared by :class:`SLSTM` and
    :class:`SConv2dLSTM`. A subclass gives the layout of one step, the input part of the
    gates for a whole sequence, the recurrent part for one step and the state shape."""

    step_layout: str
    step_ndim: tuple[int, int | None]
    _graph_attributes = ("syn_seq", "mem_seq")

    def __init__(
        self,
        v_threshold: float | Tensor,
        surrogate_function: Surrogate | None,
        strict_firing: bool,
        learnable_threshold: bool,
        reset_mechanism: str,
        step_mode: StepMode,
        store_state_seq: bool,
    ) -> None:
        super().__init__(step_mode)
        owner = type(self).__name__
        self._init_threshold(owner, v_threshold, check_flag(owner, "learnable_threshold",
                                                            learnable_threshold))  # fmt: skip
        surrogate_function = Sigmoid() if surrogate_function is None else surrogate_function
        check_surrogate(owner, "surrogate_function", surrogate_function)
        self.surrogate_function = surrogate_function
        self.strict_firing = check_flag(owner, "strict_firing", strict_firing)
        if reset_mechanism not in RESET_MECHANISMS:
            raise ConfigurationError(
                f"{owner}: reset_mechanism must be one of {RESET_MECHANISMS} (snnTorch's), "
                f"got {reset_mechanism!r}"
            )
        self.reset_mechanism = reset_mechanism
        self.store_state_seq = check_flag(owner, "store_state_seq", store_state_seq)
        self.syn_seq: Tensor | None = None
        self.mem_seq: Tensor | None = None

    def _init_threshold(self, owner: str, value: float | Tensor, learnable: bool) -> None:
        """θ as a float attribute, a buffer (a tensor) or a parameter (learnable)."""
        if isinstance(value, Tensor):
            if not value.is_floating_point():
                raise DTypeError(
                    f"{owner}: v_threshold must be a floating-point tensor, got {value.dtype}"
                )
            if not bool(torch.isfinite(value).all()):
                raise ConfigurationError(f"{owner}: v_threshold must be finite, got {value}")
            value = value.detach().clone()
        elif (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise ConfigurationError(
                f"{owner}: v_threshold must be a finite float or a tensor, got {value!r}"
            )
        else:
            value = float(value)
        if learnable:
            self.v_threshold = nn.Parameter(torch.as_tensor(value))
        elif isinstance(value, Tensor):
            self.register_buffer("v_threshold", value)
        else:
            self.v_threshold = value

    # -- what a subclass provides --------------------------------------------------------

    def _check_step(self, x_seq: Tensor) -> None:
        """Raise a ShapeError unless one step ``x_seq[0]`` fits the layer."""
        raise NotImplementedError

    def _input_gates(self, x_seq: Tensor) -> Tensor:
        """The input part of the gate pre-activations for every step ``[T, B, 4*hidden, ...]``."""
        raise NotImplementedError

    def _recurrent_gates(self, mem: Tensor) -> Tensor:
        """The recurrent part for one step ``[B, 4*hidden, ...]``."""
        raise NotImplementedError

    def _split_gates(self, gates: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The pre-activations ``(i, f, g, o)``."""
        raise NotImplementedError

    def _state_shape(self, step: Tensor) -> tuple[int, ...]:
        """The shape of ``syn`` and ``mem`` for an input step ``step``."""
        raise NotImplementedError

    def _pool(self, mem: Tensor) -> Tensor:
        """What fires: ``mem`` itself unless the layer pools it."""
        return mem

    @property
    def _weight(self) -> Tensor:
        raise NotImplementedError

    # -- the shared step -------------------------------------------------------------------

    def _fire(self, x: Tensor) -> Tensor:
        return self.surrogate_function(x, strict=self.strict_firing)

    @property
    def syn(self) -> Tensor | None:
        """The cell state carried to the next call (only while streaming)."""
        return None if self.state is None else self.state["syn"]

    @property
    def mem(self) -> Tensor | None:
        """The hidden state (membrane) carried to the next call (only while streaming)."""
        return None if self.state is None else self.state["mem"]

    def forward(self, x: Tensor) -> Tensor:
        """The output spikes: ``[T, B, ...]`` in multi-step mode, one step ``[B, ...]`` in
        single-step mode (inside streaming)."""
        owner = type(self).__name__
        weight = self._weight
        # Under autocast (--amp) the layers before give bfloat16/float16: allowed.
        autocast = isinstance(x, Tensor) and torch.is_autocast_enabled(x.device.type)
        if not isinstance(x, Tensor) or (x.dtype != weight.dtype and not autocast):
            found = x.dtype if isinstance(x, Tensor) else type(x).__name__
            raise DTypeError(
                f"{owner}: the input must have the weights' dtype {weight.dtype} (outside "
                f"autocast), got {found}"
            )
        check_step_dims(x, owner, self.step_layout, self.step_ndim, self.step_mode)
        multi = self.step_mode == "m"
        if multi and x.shape[0] == 0:
            raise ShapeError(f"{owner} got a sequence of 0 time steps: {tuple(x.shape)}")
        x_seq = x if multi else x.unsqueeze(0)
        self._check_step(x_seq)
        state_shape = self._state_shape(x_seq[0])
        state = self._carried_state(torch.Size(state_shape))  # checked against syn, mem
        if state is None:
            syn = x_seq.new_zeros(state_shape)
            mem = torch.zeros_like(syn)
        else:
            syn, mem = state["syn"], state["mem"]
        theta = self.v_threshold
        spikes, syns, mems = [], [], []
        for x_gates in self._input_gates(x_seq).unbind(0):
            reset = self._fire(mem - theta).detach()
            i, f, g, o = self._split_gates(x_gates + self._recurrent_gates(mem))
            syn = torch.sigmoid(f) * syn + torch.sigmoid(i) * torch.tanh(g)
            mem = torch.sigmoid(o) * torch.tanh(syn)
            if self.reset_mechanism == "subtract":
                mem = mem - reset * theta
            elif self.reset_mechanism == "zero":
                mem = mem - mem * reset
            spikes.append(self._fire(self._pool(mem) - theta))
            if self.store_state_seq:
                syns.append(syn)
                mems.append(mem)
        self._keep_state({"syn": syn, "mem": mem})
        if self.store_state_seq:
            self.syn_seq, self.mem_seq = torch.stack(syns), torch.stack(mems)
        out = torch.stack(spikes)
        return out if multi else out[0]

    def _neuron_repr(self) -> str:
        theta = self.v_threshold
        shown = f"{theta:g}" if isinstance(theta, float) else f"tensor{tuple(theta.shape)}"
        return (
            f"v_threshold={shown}, reset_mechanism={self.reset_mechanism!r}, "
            f"strict_firing={self.strict_firing}, step_mode={self.step_mode!r}"
        )


class SLSTM(_SpikingLSTMBase):
    """snnTorch's spiking LSTM ``snntorch.SLSTM`` over a sequence (module docstring)::

        i, f, g, o = σ, σ, tanh, σ(W_ih x[t] + b_ih + W_hh mem[t-1] + b_hh)
        syn[t] = f syn[t-1] + i g,   mem[t] = o tanh(syn[t]) (- reset),
        S[t] = Θ(mem[t] - θ)

    Input ``[T, B, input_size]`` (multi-step) or ``[B, input_size]`` (single-step,
    streaming); output spikes of the same layout with ``hidden_size`` features. The
    states start at 0 at every multi-step call and are carried (``layer.syn``,
    ``layer.mem``) only while streaming; ``store_state_seq=True`` keeps every step's
    ``syn_seq`` and ``mem_seq`` (``[T, B, hidden_size]``) of the last call.

    **snnTorch**: ``snn.SLSTM(input_size, hidden_size, bias, threshold=θ,
    spike_grad=sg, reset_mechanism=m, learn_threshold=l)`` stepped over a sequence is
    ``SLSTM(input_size, hidden_size, bias, v_threshold=θ, surrogate_function=sg',
    strict_firing=True, reset_mechanism=m, learnable_threshold=l)`` in spikes, ``syn``,
    ``mem`` and gradients (``sg'`` the matching spikeflow surrogate: snnTorch's default
    ``atan()`` is ``ATan()``). snnTorch 1.0 replaces the states it is given by float32
    zeros at every step when ``input_size != hidden_size`` (it compares them with the
    input's shape), which makes its layer memoryless there; here the states are always
    carried. Its ``inhibition`` (unused by its ``SLSTM``) and ``state_quant`` have no
    counterpart. The field's defaults hold otherwise: fire on ``mem >= θ``
    (``strict_firing=False``) and the Sigmoid(α=4) surrogate.

    Args:
        input_size: features of the input.
        hidden_size: features of the states and of the output.
        bias: the LSTM's biases ``b_ih``, ``b_hh``.
        v_threshold: the firing threshold θ (default 1.0); a float or a tensor
            broadcastable to ``[B, hidden_size]``.
        surrogate_function: the spike function (default ``Sigmoid()``).
        strict_firing: fire on ``mem > θ`` (snnTorch's) instead of ``>=``.
        learnable_threshold: make θ a trainable parameter.
        reset_mechanism: ``"none"`` (default, snnTorch's for its LSTMs), ``"subtract"``
            or ``"zero"``.
        step_mode: ``'m'`` (default) or ``'s'``.
        store_state_seq: record ``syn_seq`` and ``mem_seq`` of the last call.

    Raises:
        ConfigurationError: a size that is not a positive integer, an unknown
            ``reset_mechanism``, a surrogate that is not a spikeflow ``Surrogate``.
        ShapeError: an input whose last dim is not ``input_size``.
        DTypeError: an input whose dtype is not the weights' (outside autocast).
    """

    step_layout, step_ndim = "[B, input_size]", (2, 2)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        v_threshold: float | Tensor = 1.0,
        surrogate_function: Surrogate | None = None,
        strict_firing: bool = False,
        learnable_threshold: bool = False,
        reset_mechanism: str = "none",
        step_mode: StepMode = "m",
        store_state_seq: bool = False,
    ) -> None:
        super().__init__(
            v_threshold, surrogate_function, strict_firing, learnable_threshold,
            reset_mechanism, step_mode, store_state_seq,
        )  # fmt: skip
        owner = type(self).__name__
        self.input_size = check_int(f"{owner}: input_size", input_size, 1)
        self.hidden_size = check_int(f"{owner}: hidden_size", hidden_size, 1)
        self.bias = check_flag(owner, "bias", bias)
        self.lstm_cell = nn.LSTMCell(self.input_size, self.hidden_size, bias=self.bias)

    @property
    def _weight(self) -> Tensor:
        return self.lstm_cell.weight_ih

    def _check_step(self, x_seq: Tensor) -> None:
        if x_seq.shape[-1] != self.input_size:
            raise ShapeError(
                f"{type(self).__name__}: the input's last dim must be input_size = "
                f"{self.input_size}, got shape {tuple(x_seq.shape)}"
            )

    def _input_gates(self, x_seq: Tensor) -> Tensor:
        return F.linear(x_seq, self.lstm_cell.weight_ih, self.lstm_cell.bias_ih)

    def _recurrent_gates(self, mem: Tensor) -> Tensor:
        return F.linear(mem, self.lstm_cell.weight_hh, self.lstm_cell.bias_hh)

    def _split_gates(self, gates: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        i, f, g, o = gates.chunk(4, dim=-1)  # torch.nn.LSTMCell's order
        return i, f, g, o

    def _state_shape(self, step: Tensor) -> tuple[int, ...]:
        return (step.shape[0], self.hidden_size)

    def extra_repr(self) -> str:
        return (
            f"input_size={self.input_size}, hidden_size={self.hidden_size}, bias={self.bias}, "
            + self._neuron_repr()
        )


class SConv2dLSTM(_SpikingLSTMBase):
    """snnTorch's spiking convolutional LSTM ``snntorch.SConv2dLSTM`` over a sequence
    (module docstring)::

        i, f, o, g = σ, σ, σ, tanh(conv([x[t], mem[t-1]]))     same padding, stride 1
        syn[t] = f syn[t-1] + i g,   mem[t] = o tanh(syn[t]) (- reset),
        S[t] = Θ(pool(mem[t]) - θ)

    Input ``[T, B, in_channels, H, W]`` (multi-step) or ``[B, in_channels, H, W]``
    (single-step, streaming). The states are ``[B, out_channels, H, W]``; the spikes
    are ``[B, out_channels, H/p, W/p]`` with ``max_pool`` or ``avg_pool`` ``p`` applied
    to ``mem`` before firing (snnTorch's: pooling the membrane, not the spikes, avoids
    ties between spikes), full size without. The reset reads the unpooled ``mem``.
    One convolution ``conv`` maps ``in_channels + out_channels`` to the four gates
    (``4 * out_channels``, in the order ``i, f, o, g``); its input part runs over all
    steps at once. States as :class:`SLSTM` (``syn_seq``, ``mem_seq`` ``[T, B,
    out_channels, H, W]`` with ``store_state_seq=True``).

    **snnTorch**: ``snn.SConv2dLSTM(in_channels, out_channels, kernel_size, bias,
    max_pool, avg_pool, threshold=θ, spike_grad=sg, reset_mechanism=m,
    learn_threshold=l)`` stepped over a sequence is ``SConv2dLSTM(in_channels,
    out_channels, kernel_size, bias, max_pool, avg_pool, v_threshold=θ,
    surrogate_function=sg', strict_firing=True, reset_mechanism=m,
    learnable_threshold=l)`` in spikes, ``syn``, ``mem`` and gradients. Its
    ``inhibition`` (unused there) and ``state_quant`` have no counterpart; the field's
    defaults hold otherwise (fire on ``>=``, the Sigmoid(α=4) surrogate).

    Args:
        in_channels: channels of the input.
        out_channels: channels of the states (and of the spikes).
        kernel_size: an odd int or a pair of odd ints (the padding ``k // 2`` keeps
            ``H x W``; snnTorch's even kernels change the state's size and fail).
        bias: the convolution's bias.
        max_pool: max-pool ``mem`` with this kernel (and stride) before firing; 0 for
            none (default).
        avg_pool: average-pool likewise (at most one of the two).
        v_threshold, surrogate_function, strict_firing, learnable_threshold,
            reset_mechanism, step_mode, store_state_seq: as :class:`SLSTM`.

    Raises:
        ConfigurationError: a size that is not a positive integer, an even kernel, both
            poolings, an unknown ``reset_mechanism``, a surrogate that is not a
            spikeflow ``Surrogate``.
        ShapeError: an input with other than ``in_channels`` channels or of the wrong
            number of dims.
        DTypeError: an input whose dtype is not the weights' (outside autocast).
    """

    step_layout, step_ndim = STEP_2D

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        bias: bool = True,
        max_pool: int | tuple[int, int] = 0,
        avg_pool: int | tuple[int, int] = 0,
        v_threshold: float | Tensor = 1.0,
        surrogate_function: Surrogate | None = None,
        strict_firing: bool = False,
        learnable_threshold: bool = False,
        reset_mechanism: str = "none",
        step_mode: StepMode = "m",
        store_state_seq: bool = False,
    ) -> None:
        super().__init__(
            v_threshold, surrogate_function, strict_firing, learnable_threshold,
            reset_mechanism, step_mode, store_state_seq,
        )  # fmt: skip
        owner = type(self).__name__
        self.in_channels = check_int(f"{owner}: in_channels", in_channels, 1)
        self.out_channels = check_int(f"{owner}: out_channels", out_channels, 1)
        self.kernel_size = _pair(owner, "kernel_size", kernel_size, 1)
        if any(k % 2 == 0 for k in self.kernel_size):
            raise ConfigurationError(
                f"{owner}: kernel_size must be odd (padding k // 2 keeps H x W of the "
                f"states), got {kernel_size!r}"
            )
        self.max_pool = _pair(owner, "max_pool", max_pool, 0)
        self.avg_pool = _pair(owner, "avg_pool", avg_pool, 0)
        for name in ("max_pool", "avg_pool"):
            pool = getattr(self, name)
            if (0 in pool) and pool != (0, 0):
                raise ConfigurationError(f"{owner}: {name} must be 0 or positive, got {pool}")
        if self.max_pool != (0, 0) and self.avg_pool != (0, 0):
            raise ConfigurationError(
                f"{owner}: only one of max_pool and avg_pool may be given, got "
                f"max_pool={max_pool!r}, avg_pool={avg_pool!r}"
            )
        self.padding = (self.kernel_size[0] // 2, self.kernel_size[1] // 2)
        self.bias = check_flag(owner, "bias", bias)
        self.conv = nn.Conv2d(
            self.in_channels + self.out_channels, 4 * self.out_channels, self.kernel_size,
            padding=self.padding, bias=self.bias,
        )  # fmt: skip

    @property
    def _weight(self) -> Tensor:
        return self.conv.weight

    def _check_step(self, x_seq: Tensor) -> None:
        if x_seq.shape[2] != self.in_channels:
            raise ShapeError(
                f"{type(self).__name__}: the input must have in_channels = "
                f"{self.in_channels} channels (dim 2 of [T, B, C, H, W], dim 1 of a step), "
                f"got shape {tuple(x_seq.shape)}"
            )

    def _input_gates(self, x_seq: Tensor) -> Tensor:
        weight = self.conv.weight[:, : self.in_channels]
        folded = F.conv2d(x_seq.flatten(0, 1), weight, self.conv.bias, padding=self.padding)
        return folded.unflatten(0, x_seq.shape[:2])

    def _recurrent_gates(self, mem: Tensor) -> Tensor:
        weight = self.conv.weight[:, self.in_channels :]
        return F.conv2d(mem, weight, None, padding=self.padding)

    def _split_gates(self, gates: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        i, f, o, g = gates.chunk(4, dim=1)  # snnTorch's order
        return i, f, g, o

    def _state_shape(self, step: Tensor) -> tuple[int, ...]:
        return (step.shape[0], self.out_channels, step.shape[2], step.shape[3])

    def _pool(self, mem: Tensor) -> Tensor:
        if self.max_pool != (0, 0):
            return F.max_pool2d(mem, self.max_pool)
        if self.avg_pool != (0, 0):
            return F.avg_pool2d(mem, self.avg_pool)
        return mem

    def extra_repr(self) -> str:
        pool = ""
        if self.max_pool != (0, 0):
            pool = f", max_pool={self.max_pool}"
        elif self.avg_pool != (0, 0):
            pool = f", avg_pool={self.avg_pool}"
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"bias={self.bias}{pool}, " + self._neuron_repr()
        )
