"""Recurrent containers: a per-step module whose output is fed back into its input.

* :class:`ElementWiseRecurrentContainer`: ``y[t] = m(f(x[t], y[t-1]))`` with an
  elementwise ``f`` (e.g. ``torch.add``), ``y[-1] = 0``.
* :class:`LinearRecurrentContainer`: ``y[t] = m(W_x x[t] + W_y y[t-1] + b)``, ``y[-1] = 0``.

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

__all__ = ["ElementWiseRecurrentContainer", "LinearRecurrentContainer"]


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
        raise NotImplementedError

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
        raise NotImplementedError

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

    def _initial_output(self, x_t: Tensor) -> Tensor:
        return torch.zeros_like(x_t)

    def _step(self, drive: Tensor, y: Tensor) -> Tensor:
        return self.element_wise_function(drive, y)

    def _check_output(self, y: Tensor, x_t: Tensor) -> None:
        if not isinstance(y, Tensor) or y.shape != x_t.shape:
            shape = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
            raise ShapeError(
                f"{type(self).__name__}: the sub-module's output {shape} must have the shape "
                f"of one input step {tuple(x_t.shape)} to be fed back elementwise"
            )

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
