"""Temporal-difference operators: nonlinear ANN operations on streams of changes.

In a converted Transformer (SpikeZIP-TF, You et al., ICML 2024; SpikingJelly 2.0's
``TDModule`` operators) every stage sends, at step ``t``, the change ``y_t`` of its
output, so that the running sum ``Y_t = y_1 + ... + y_t`` is the stage's output on the
running sums of its inputs, and ``Y_T`` is the ANN's output once the signed neurons
(:class:`~spikeflow.conversion.signed.SignedIFNeuron`) have settled. A linear map ``W``
passes changes through unchanged (``W x_t``, its bias once, at the first step:
:class:`StepBias`); a nonlinear ``f`` becomes its temporal difference
(:class:`TemporalDifference`)::

    y_t = f(X_t) - f(X_{t-1}),   X_t = x_1 + ... + x_t,   f(X_0) := 0

which telescopes: ``Y_t = f(X_t)``. It serves LayerNorm, softmax, GELU, any elementwise
function and any function of several streams (arguments that are not streams, a class
token or a position embedding, enter ``f`` unchanged at every step). The product of
two streams (``Q K^T``, ``attn V``, ``x * y``) is ``A_t B_t - A_{t-1} B_{t-1}``, which
:class:`SpikeProduct` computes in the spike-driven form
``a_t B_{t-1} + A_{t-1} b_t + a_t b_t`` (each term has one factor a spike of ``±θ`` when
both inputs are spikes).

All of them run on whole sequences ``[T, B, ...]`` (time first), or, inside a converted
network (:class:`~spikeflow.conversion.transformer.DifferenceSNN`), on time folded into
the batch ``[T*B, ...]`` with :attr:`steps` set (as
:class:`~spikeflow.conversion.snn.TimeFolded`): ``f`` always sees the ANN's layout,
``[N, ...]`` with the sequence's steps as extra samples, so ``f`` must treat samples
independently (as every per-sample network does). The tests check each operator against
its formula on random streams, and against SpikingJelly 2.0's ``TDLayerNorm``,
``TDSoftmax``, ``TDGELU`` and ``SNNMatrixOperator``.

They stream (:func:`spikeflow.functional.streaming`, :func:`spikeflow.functional.run`):
each carries what the next chunk of a sequence needs, the running sums of its stream
inputs and, for a temporal difference, ``f`` of them (``f(X_{t-1})`` for the chunk's
first step); a :class:`StepBias` remembers that it has sent its bias. Running sums are
taken left to right from the carried ones, so a sequence fed in chunks gives the same
numbers as fed whole (on the CPU, bit for bit).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_flatten, tree_unflatten

from spikeflow.base import MemoryModule
from spikeflow.conversion._checks import check_positive_int
from spikeflow.conversion.snn import TimeFolded
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError, StateError

__all__ = ["SpikeProduct", "StepBias", "TemporalDifference", "impulse_input"]


def impulse_input(x: Tensor, steps: int) -> Tensor:
    """The analog input ``[B, ...]`` sent once: ``[T, B, ...]`` with ``x`` at the first
    step and zeros after (its running sum is ``x`` at every step)."""
    check_positive_int(steps, "steps (T)")
    out = x.new_zeros((steps, *x.shape))
    out[0] = x
    return out


class _Folding(TimeFolded, MemoryModule):
    """Shared by the operators: the sequence layout of their streams (``[T, B, ...]``
    standalone, ``[T*B, ...]`` with :attr:`steps` set inside a converted network), and
    the state they carry while streaming, one tensor per stream or output whose dim 0
    is the samples ``N`` (the batch, times whatever the network folded into it)."""

    def __init__(self, name: str) -> None:
        MemoryModule.__init__(self, "m")
        self.write_back = False
        self.steps: int | None = None
        self.batch: int | None = None
        self._name = name

    def _unfold(self, x: object, what: str) -> Tensor:
        """A stream as ``[T, N, ...]``."""
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise DTypeError(
                f"{self._name}: {what} must be a floating-point tensor (a stream), got "
                f"{type(x).__name__ if not isinstance(x, Tensor) else x.dtype}"
            )
        if self.steps is None:
            if x.dim() < 2:
                raise ShapeError(
                    f"{self._name}: {what} must be a sequence [T, B, ...], got shape "
                    f"{tuple(x.shape)}"
                )
            return x
        self.check_folded(x, self._name, what)
        return x.unflatten(0, (self.steps, -1))

    def _fold(self, seq: Tensor) -> Tensor:
        """``[T, N, ...]`` back to the layout of the inputs."""
        return seq if self.steps is None else seq.flatten(0, 1)

    def _start(self, samples: int) -> dict[str, Tensor] | None:
        """The state this call starts from (None: the sequence's first step)."""
        return self._carried_state(torch.Size([samples]))

    def _check_state_fits(
        self, state: Mapping[str, Tensor], step_shape: torch.Size, what: str
    ) -> None:
        """Every tensor of the state holds one entry per sample on dim 0."""
        for name, value in state.items():
            if value.dim() == 0 or value.shape[0] % step_shape[0]:
                raise StateError(
                    f"{self._name}: {what} '{name}' has shape {tuple(value.shape)}, but this "
                    f"call has {step_shape[0]} samples. A new sequence started: call "
                    "spikeflow.functional.reset_net(net) between sequences."
                )

    def _state_tensor(self, state: Mapping[str, Tensor], key: str, like: Tensor) -> Tensor:
        """``state[key]`` checked against the step it continues, ``like`` ``[N, ...]``."""
        value = state.get(key)
        if value is None or value.shape != like.shape:
            got = "missing" if value is None else f"of shape {tuple(value.shape)}"
            raise StateError(
                f"{self._name}: carried state '{key}' is {got}, but this call's steps have "
                f"shape {tuple(like.shape)}; call spikeflow.functional.reset_net(net) "
                "between sequences"
            )
        return value


def _running_sums(seq: Tensor, start: Tensor | None) -> Tensor:
    """``X_0, ..., X_T`` ``[T + 1, N, ...]`` with ``X_0 = start`` (or 0) and
    ``X_t = X_{t-1} + x_t``, summed left to right, so that a sequence in chunks gives
    the whole sequence's sums: ``[1:]`` are the sums after each step, ``[:-1]`` before."""
    first = torch.zeros_like(seq[:1]) if start is None else start.unsqueeze(0)
    return torch.cat([first, seq]).cumsum(0)


def _difference(values: Tensor, before: Tensor | None) -> Tensor:
    """``[T, N, ...]`` running values -> their changes, the first from ``before`` (the
    value before the first step; None: 0)."""
    first = values[:1] if before is None else values[:1] - before.unsqueeze(0)
    return torch.cat([first, values[1:] - values[:-1]])


class TemporalDifference(_Folding):
    """``y_t = f(X_t) - f(X_{t-1})`` on the running sums ``X`` of the stream arguments
    (see the module docstring).

    Args:
        fn: the ANN's operation (a module, a function, or a method as
            ``lambda x, *a: x.softmax(*a)``); called with the arguments as given, each
            stream replaced by its running sum folded to ``[T*B, ...]``. Its outputs
            (a tensor, or tensors in tuples/lists/dicts) are differenced; other outputs
            (``None``) are passed on.
        streams: which of the call's flattened arguments (positional, then keyword,
            after ``torch.utils._pytree.tree_flatten``) are streams; None: every tensor
            argument.
        name: what error messages call it (default: ``fn``'s name).
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        streams: Sequence[int] | None = None,
        name: str | None = None,
    ) -> None:
        if not callable(fn):
            raise ConfigurationError(f"TemporalDifference needs a callable, got {fn!r}")
        label = name or getattr(fn, "__name__", None) or type(fn).__name__
        super().__init__(f"TemporalDifference({label})")
        self.fn = fn
        self.streams = None if streams is None else tuple(int(i) for i in streams)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The changes of ``fn``'s output, in the layout of the stream arguments."""
        flat, spec = tree_flatten((args, kwargs))
        if self.streams is None:
            positions = [i for i, a in enumerate(flat) if isinstance(a, Tensor)]
        else:
            positions = list(self.streams)
            if positions and max(positions) >= len(flat):
                raise ConfigurationError(
                    f"{self._name}: stream argument {max(positions)} of a call with "
                    f"{len(flat)} arguments"
                )
        if not positions:
            raise ConfigurationError(f"{self._name}: called without a stream argument")
        seqs = {i: self._unfold(flat[i], f"argument {i}") for i in positions}
        steps = seqs[positions[0]].shape[0]
        for seq in seqs.values():
            if seq.shape[0] != steps:
                raise ShapeError(
                    f"{self._name}: the streams have {steps} and {seq.shape[0]} time steps"
                )
        state = self._start(seqs[positions[0]].shape[1])
        kept: dict[str, Tensor] = {}
        for i, seq in seqs.items():
            start = None if state is None else self._state_tensor(state, f"sum{i}", seq[0])
            sums = _running_sums(seq, start)[1:]
            kept[f"sum{i}"] = sums[-1].clone()  # (a view would hold the chunk's sums)
            flat[i] = sums.flatten(0, 1)
        call_args, call_kwargs = tree_unflatten(flat, spec)
        leaves, out_spec = tree_flatten(self.fn(*call_args, **call_kwargs))

        def change(j: int, y: Any) -> Any:
            if not isinstance(y, Tensor):
                return y
            if not y.is_floating_point():
                raise DTypeError(
                    f"{self._name}: its output is {y.dtype}, not a value (an index or a mask "
                    "computed from a stream has no spiking form)"
                )
            unit = steps if self.batch is None or self.steps is None else steps * self.batch
            if y.dim() == 0 or y.shape[0] % unit:
                raise ShapeError(
                    f"{self._name}: its output of shape {tuple(y.shape)} does not keep the "
                    f"samples on dim 0 (time folded in: {steps} steps); the operation must "
                    "treat the samples of a batch independently"
                )
            values = y.unflatten(0, (steps, -1))  # f(X_t), t = 1..T
            before = None if state is None else self._state_tensor(state, f"out{j}", values[0])
            kept[f"out{j}"] = values[-1].clone()
            return self._fold(_difference(values, before))

        changes = [change(j, y) for j, y in enumerate(leaves)]
        self._keep_state(kept)
        return tree_unflatten(changes, out_spec)

    def extra_repr(self) -> str:
        return f"{self._name}, streams={self.streams}"


class SpikeProduct(_Folding):
    """The product of two streams, ``A_t B_t - A_{t-1} B_{t-1}``, computed as
    ``a_t B_{t-1} + A_{t-1} b_t + a_t b_t`` (see the module docstring).

    Args:
        op: ``'matmul'`` (``A @ B``, default) or ``'mul'`` (elementwise), or any
            bilinear function of two tensors.
    """

    def __init__(self, op: str | Callable[[Tensor, Tensor], Tensor] = "matmul") -> None:
        ops = {"matmul": torch.matmul, "mul": torch.mul}
        if isinstance(op, str):
            if op not in ops:
                raise ConfigurationError(f"SpikeProduct op must be 'matmul' or 'mul', got {op!r}")
            fn, label = ops[op], op
        elif callable(op):
            fn, label = op, getattr(op, "__name__", type(op).__name__)
        else:
            raise ConfigurationError(f"SpikeProduct op must be a name or a callable, got {op!r}")
        super().__init__(f"SpikeProduct({label})")
        self.op, self.label = fn, label

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        """The changes of the product, in the layout of the inputs."""
        a_seq, b_seq = self._unfold(a, "the first factor"), self._unfold(b, "the second factor")
        if a_seq.shape[0] != b_seq.shape[0]:
            raise ShapeError(
                f"{self._name}: the factors have {a_seq.shape[0]} and {b_seq.shape[0]} steps"
            )
        state = self._start(a_seq.shape[1])
        starts = [
            None if state is None else self._state_tensor(state, key, seq[0])
            for key, seq in (("sum_a", a_seq), ("sum_b", b_seq))
        ]
        a_sums, b_sums = _running_sums(a_seq, starts[0]), _running_sums(b_seq, starts[1])
        self._keep_state({"sum_a": a_sums[-1].clone(), "sum_b": b_sums[-1].clone()})
        a_before, b_before = a_sums[:-1], b_sums[:-1]  # A_{t-1}, B_{t-1}
        a_f, b_f = a_seq.flatten(0, 1), b_seq.flatten(0, 1)
        out = (
            self.op(a_f, b_before.flatten(0, 1))
            + self.op(a_before.flatten(0, 1), b_f)
            + self.op(a_f, b_f)
        )
        return self._fold(out.unflatten(0, a_seq.shape[:2]))

    def extra_repr(self) -> str:
        return f"op={self.label}"


class StepBias(_Folding):
    """A linear or convolution layer on a stream of changes: the weights at every step,
    the bias once, at the first step (its running sum is the layer's output on the
    running sum of the input).

    Args:
        layer: an ``nn.Linear`` or ``nn.Conv1d/2d/3d`` (its parameters are shared, not
            copied).
    """

    def __init__(self, layer: nn.Module) -> None:
        if not isinstance(layer, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            raise ConfigurationError(
                f"StepBias takes an nn.Linear or nn.Conv1d/2d/3d, got {type(layer).__name__}"
            )
        super().__init__(f"StepBias({type(layer).__name__})")
        self.layer = layer

    def forward(self, x: Tensor) -> Tensor:
        """``W x_t`` at every step, plus the bias at the sequence's first (while
        streaming, only in the first chunk)."""
        seq = self._unfold(x, "the input")
        flat = seq.flatten(0, 1)
        layer = self.layer
        if isinstance(layer, nn.Linear):
            out = torch.nn.functional.linear(flat, layer.weight)
        else:
            out = layer._conv_forward(flat, layer.weight, None)
        out = out.unflatten(0, seq.shape[:2])
        state = self._start(seq.shape[1])
        self._keep_state({"bias_sent": seq.new_ones(seq.shape[1])})
        if layer.bias is not None and state is None:  # the sequence's first step
            shape = (-1,) + (1,) * (out.dim() - 3) if not isinstance(layer, nn.Linear) else (-1,)
            first = out[0] + layer.bias.reshape(shape)
            out = torch.cat([first.unsqueeze(0), out[1:]])
        return self._fold(out)

    def extra_repr(self) -> str:
        return ""
