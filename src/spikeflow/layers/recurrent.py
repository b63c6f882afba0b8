"""Recurrent containers: a per-step module whose output is fed back into its input.

* :class:`ElementWiseRecurrentContainer`: ``y[t] = m(f(x[t], y[t-1]))`` with an
  elementwise ``f`` (e.g. ``torch.add``), ``y[-1] = 0``.
* :class:`LinearRecurrentContainer`: ``y[t] = m(W_x x[t] + W_y y[t-1] + b)``, ``y[-1] = 0``.
* :class:`Recurrent`: ``y[t] = m(x[t] + W y[t-1])``, ``y[-1] = 0``: the layer-wise
  recurrent connections of a recurrent spiking layer (RSNN), ``x`` its feed-forward
  input current.

The wrapped module ``m`` is a per-step module (spikeflow modules inside are created with
``step_mode='s'``): the container owns the time dimension. Like every spikeflow memory
module, a multi-step call starts from ``y[-1] = 0`` and fresh inner state; while
streaming (:func:`spikeflow.functional.streaming`) the last output and the inner state
carry over, so single-step calls and chunked sequences give the output of one call over
the whole sequence.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

from spikeflow.base import MemoryModule, StepMode, check_time_major
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.layers._checks import check_int
from spikeflow.layers._time import check_inner_modules, stepping_memory

__all__ = ["ElementWiseRecurrentContainer", "LinearRecurrentContainer", "Recurrent"]


class _RecurrentContainer(MemoryModule):
    """Shared: the time loop, the carried output ``y`` and the inner module's state."""

    owns_children_time = True

    def __init__(self, sub_module: nn.Module, step_mode: StepMode) -> None:
        super().__init__(step_mode)
        if not isinstance(sub_module, nn.Module):
            raise ConfigurationError(
                f"sub_module must be a torch.nn.Module, got {type(sub_module).__name__}"
            )
        self.sub_module = sub_module
        check_inner_modules(type(self).__name__, [sub_module], stateless=False)

    def _initial_output(self, x_t: Tensor) -> Tensor:
        """``y[-1]``: zeros of one input step's shape (a shape-keeping sub-module)."""
        return torch.zeros_like(x_t)

    def _output_shape(self, step_shape: torch.Size) -> torch.Size:
        """The shape of one step of the output (the fed-back state), for an input step."""
        return step_shape

    def _step(self, drive: Tensor, y: Tensor) -> Tensor:
        """The sub-module's input for one step, from its drive and the previous output."""
        raise NotImplementedError

    def _drive(self, x_seq: Tensor) -> Tensor:
        """The part of the input that does not depend on the feedback, for all steps."""
        return x_seq

    def _check_output(self, y: Tensor, x_t: Tensor) -> None:
        """Refuse an output that cannot be fed back: here, one of another shape."""
        if not isinstance(y, Tensor) or y.shape != x_t.shape:
            shape = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
            raise ShapeError(
                f"{type(self).__name__}: the sub-module's output {shape} must have the shape "
                f"of one input step {tuple(x_t.shape)} to be fed back"
            )

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, ...]`` (multi-step) or one step ``[B, ...]`` through the recurrence."""
        name = type(self).__name__
        if not isinstance(x, Tensor) or not x.is_floating_point():
            what = x.dtype if isinstance(x, Tensor) else type(x).__name__
            raise DTypeError(f"{name} expects a floating-point tensor, got {what}")
        check_inner_modules(name, [self.sub_module], stateless=False)
        if self.step_mode == "m":
            check_time_major(x, name)
            x_seq = x
        else:
            x_seq = x.unsqueeze(0)
        state = self._carried_state(self._output_shape(x_seq.shape[1:]))
        y = self._initial_output(x_seq[0]) if state is None else state["y"]
        # Multi-step: the inner memory modules run the T steps of this call (fresh unless
        # streaming). Single-step: they must already be streaming, as this container is.
        scope = stepping_memory([self.sub_module]) if self.step_mode == "m" else nullcontext()
        # A reparameterised weight (a pruned layer) is computed once for the T steps.
        reparameterised = any(parametrize.is_parametrized(m) for m in self.modules())
        cache = parametrize.cached() if reparameterised else nullcontext()
        outputs = []
        with scope, cache:
            drive = self._drive(x_seq)
            for drive_t in drive.unbind(0):
                y = self.sub_module(self._step(drive_t, y))
                self._check_output(y, x_seq[0])
                outputs.append(y)
        self._keep_state({"y": y})
        return torch.stack(outputs) if self.step_mode == "m" else outputs[0]


class ElementWiseRecurrentContainer(_RecurrentContainer):
    """``y[t] = sub_module(f(x[t], y[t-1]))`` with ``y[-1] = 0``.

    ``f`` is an elementwise function of two tensors (e.g. ``torch.add`` or
    ``lambda x, y: x * (1 - y)``); the sub-module must keep the shape of its input, so
    that its output can be fed back.

    Args:
        sub_module: a per-step module (spikeflow modules inside with ``step_mode='s'``).
        element_wise_function: ``f(x_t, y_prev) -> input of the sub-module``.
        step_mode: ``'m'`` (``[T, B, ...]``, default) or ``'s'`` (``[B, ...]``).

    Raises:
        ConfigurationError: ``f`` is not callable, or a spikeflow module inside is not in
            single-step mode.
        ShapeError: the sub-module changes the shape (its output cannot be fed back).

    Example::

        >>> net = ElementWiseRecurrentContainer(IFNode(step_mode="s"), torch.add)
        >>> net(torch.tensor([[0.6], [0.5], [0.0], [0.0]])).view(-1)  # IF(x[t] + y[t-1])
        tensor([0., 1., 1., 1.])
    """

    def __init__(
        self,
        sub_module: nn.Module,
        element_wise_function: Callable[[Tensor, Tensor], Tensor],
        step_mode: StepMode = "m",
    ) -> None:
        super().__init__(sub_module, step_mode)
        if not callable(element_wise_function):
            raise ConfigurationError(
                "element_wise_function must be callable as f(x_t, y_prev), got "
                f"{type(element_wise_function).__name__}"
            )
        self.element_wise_function = element_wise_function

    def _step(self, drive: Tensor, y: Tensor) -> Tensor:
        return self.element_wise_function(drive, y)

    def extra_repr(self) -> str:
        fn = getattr(self.element_wise_function, "__name__", repr(self.element_wise_function))
        return f"element_wise_function={fn}, step_mode={self.step_mode}"


class LinearRecurrentContainer(_RecurrentContainer):
    """``y[t] = sub_module(W_x x[t] + W_y y[t-1] + b)`` with ``y[-1] = 0``.

    ``[W_x, W_y]`` is one ``nn.Linear(in_features + out_features, in_features)``
    (``self.rc``, PyTorch's default init; as SpikingJelly's container): the sub-module
    gets ``in_features`` values per step and returns ``out_features``. The input part
    ``W_x x[t] + b`` is computed for all steps in one GEMM before the time loop; only
    ``W_y y[t-1]`` runs per step.

    Args:
        sub_module: a per-step module mapping ``[..., in_features]`` to
            ``[..., out_features]`` (e.g. a spiking neuron with ``step_mode='s'`` when the
            two are equal, or ``nn.Sequential(nn.Linear(...), LIFNode(step_mode='s'))``).
        in_features: size of the last input dim.
        out_features: size of the sub-module's last output dim.
        bias: whether ``rc`` has a bias (default True).
        step_mode: ``'m'`` (``[T, B, ..., in]``, default) or ``'s'`` (``[B, ..., in]``).

    Raises:
        ConfigurationError: a size is not a positive integer.
        ShapeError: the input's last dim is not ``in_features``, or the sub-module's last
            output dim is not ``out_features``.
    """

    def __init__(
        self,
        sub_module: nn.Module,
        in_features: int,
        out_features: int,
        bias: bool = True,
        step_mode: StepMode = "m",
    ) -> None:
        super().__init__(sub_module, step_mode)
        self.in_features = check_int("in_features", in_features, 1)
        self.out_features = check_int("out_features", out_features, 1)
        self.rc = nn.Linear(self.in_features + self.out_features, self.in_features, bias=bias)

    def _drive(self, x_seq: Tensor) -> Tensor:
        if x_seq.shape[-1] != self.in_features:
            raise ShapeError(
                f"{type(self).__name__}(in_features={self.in_features}) got an input whose "
                f"last dim is {x_seq.shape[-1]} (shape {tuple(x_seq.shape)})"
            )
        return F.linear(x_seq, self.rc.weight[:, : self.in_features], self.rc.bias)

    def _initial_output(self, x_t: Tensor) -> Tensor:
        return x_t.new_zeros((*x_t.shape[:-1], self.out_features))

    def _output_shape(self, step_shape: torch.Size) -> torch.Size:
        return torch.Size((*step_shape[:-1], self.out_features))

    def _step(self, drive: Tensor, y: Tensor) -> Tensor:
        return drive + F.linear(y, self.rc.weight[:, self.in_features :])

    def _check_output(self, y: Tensor, x_t: Tensor) -> None:
        expected = (*x_t.shape[:-1], self.out_features)
        if not isinstance(y, Tensor) or tuple(y.shape) != expected:
            shape = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
            raise ShapeError(
                f"{type(self).__name__}(out_features={self.out_features}): the sub-module "
                f"returned {shape} for one step, expected {expected}"
            )

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.rc.bias is not None}, step_mode={self.step_mode}"
        )


class Recurrent(_RecurrentContainer):
    """``y[t] = sub_module(x[t] + W y[t-1])`` with ``y[-1] = 0``: recurrent connections
    within a layer.

    The input ``x`` is the layer's feed-forward current (the output of a Linear, and a
    normalisation, over the whole sequence at once); only ``W y[t-1]`` runs per step.
    This is the recurrent layer of RSNNs (snnTorch's ``RLeaky``, Norse's
    ``LIFRecurrent``, the RLIF/RadLIF layers of Bittar & Garner 2022):
    ``nn.Sequential(layers.Linear(n_in, n), layers.BatchNorm1d(n),
    Recurrent(LIFNode(step_mode="s"), n))``. ``W`` is initialised orthogonal (as Bittar
    & Garner's), so that the feedback neither grows nor fades at the start.

    Args:
        sub_module: a per-step module keeping the shape ``[..., features]`` (a spiking
            neuron with ``step_mode='s'``).
        features: the size of the last dim.
        bias: whether ``W y[t-1]`` has a bias (default False: the feed-forward part
            has one, or a normalisation).
        self_connections: whether a neuron feeds its own spikes back (the diagonal of
            ``W``; default True). ``False`` masks the diagonal at every call (its
            weights get no gradient), as Bittar & Garner do: the neuron's own reset
            already reads its spikes.
        step_mode: ``'m'`` (``[T, B, ..., features]``, default) or ``'s'``.

    Raises:
        ConfigurationError: ``features`` is not a positive integer, or a spikeflow
            module inside is not in single-step mode.
        ShapeError: the input's last dim is not ``features``, or the sub-module changes
            the shape.
    """

    def __init__(
        self,
        sub_module: nn.Module,
        features: int,
        bias: bool = False,
        self_connections: bool = True,
        step_mode: StepMode = "m",
    ) -> None:
        super().__init__(sub_module, step_mode)
        self.features = check_int("features", features, 1)
        if not isinstance(self_connections, bool):
            raise ConfigurationError(
                f"self_connections must be True or False, got {self_connections!r}"
            )
        self.self_connections = self_connections
        self.recurrent = nn.Linear(self.features, self.features, bias=bias)
        nn.init.orthogonal_(self.recurrent.weight)
        if bias:
            nn.init.zeros_(self.recurrent.bias)
        if not self_connections:
            self.register_buffer("off_diagonal", 1.0 - torch.eye(self.features), persistent=False)

    def _drive(self, x_seq: Tensor) -> Tensor:
        if x_seq.shape[-1] != self.features:
            raise ShapeError(
                f"Recurrent(features={self.features}) got an input whose last dim is "
                f"{x_seq.shape[-1]} (shape {tuple(x_seq.shape)})"
            )
        return x_seq

    def feedback_weight(self) -> Tensor:
        """``W`` as the layer applies it: the diagonal zeroed without self-connections."""
        weight = self.recurrent.weight
        return weight if self.self_connections else weight * self.off_diagonal

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, ..., features]`` (multi-step) or one step ``[B, ..., features]``."""
        # The weight of this call, masked once for all its steps (not kept after it).
        self._weight = self.feedback_weight()
        try:
            return super().forward(x)
        finally:
            del self._weight

    def _step(self, drive: Tensor, y: Tensor) -> Tensor:
        return drive + F.linear(y, self._weight, self.recurrent.bias)

    def extra_repr(self) -> str:
        return (
            f"features={self.features}, bias={self.recurrent.bias is not None}, "
            f"self_connections={self.self_connections}, step_mode={self.step_mode}"
        )
