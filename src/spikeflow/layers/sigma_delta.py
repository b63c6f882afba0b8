"""Sigma-delta layers: networks whose layers send only the changes of their activations.

A sigma-delta neural network (SDNN; Lava-DL's ``slayer`` sigma-delta blocks, Shrestha et
al. 2023) is an ANN run over a sequence whose layers communicate *changes*: each
activation is sent as graded spikes (real-valued deltas), and a receiver adds them up
again. A slowly changing input (video, a sensor stream) then costs work only where
something changed. Three pieces (``[T, B, ...]`` in multi-step mode):

* :class:`DeltaEncoder` (θ ≥ 0) keeps ``ref``, what the receiver has accumulated so far
  (0 at the start). Each step ``d = a[t] - ref``; it sends ``s[t] = d`` where
  ``|d| >= θ`` (0 elsewhere) and sets ``ref = a[t]`` there. So the receiver's sum
  ``Σ s`` is ``ref``, and ``|a[t] - ref[t]| < θ`` at every step (0 where sent); θ = 0
  sends every change exactly.
* :class:`SigmaDecoder` accumulates what arrives: ``Σ_{t' <= t} s[t']``. A linear layer
  commutes with the sum, so ``Σ W s = W Σ s``: a linear layer on deltas followed by a
  sigma is the linear layer on the accumulated activation.
* :class:`SigmaDelta`, the neuron: sigma (of its synaptic input deltas), an activation
  (ReLU by default; any function of one step), delta encoder.

A linear layer's **bias** must not reach the sigma at every step (it would be summed T
times). :class:`DeltaSynapse` wraps a Linear or convolution: its weight applies to
every step, its bias is added once, at a sequence's first step, so the next sigma
holds ``W·a + b``. Lava-DL adds the bias in the neuron after its sigma instead
(``Σ W s + b``); the two are the same sum, and the bias-once form also holds through
the linear operations that may sit between a layer and the next unit (pooling,
flatten) without knowing their shapes. The synapse also tells
:mod:`spikeflow.energy` that its input is graded spikes (a MAC per nonzero delta).

Training: the delta quantisation passes its gradient straight through (as Lava-DL's
``Delta``): in the backward pass ``s[t]`` is ``a[t] - a[t-1]`` (the carried-in
reference is a constant), so with θ = 0 the outputs *and* gradients of an SDNN equal
the ANN's applied to each step's input, and with θ > 0 training sees the ANN's
gradient at the quantised activations.

Every module follows spikeflow's carried-state protocol (:mod:`spikeflow.base`): a
multi-step call starts from zero state; inside :func:`spikeflow.functional.streaming`
the state (sigma's sum, delta's reference, the synapse's "bias sent") carries over,
so chunks and single steps give the output of one call. See ``docs/sigma_delta.md``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.conv import _ConvNd

from spikeflow.base import MemoryModule, StepMode, StepModule, check_time_major
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.layers._time import check_inner_modules, fold_time

__all__ = [
    "DeltaEncoder",
    "DeltaSynapse",
    "SigmaDecoder",
    "SigmaDelta",
    "check_delta_threshold",
    "delta_activity",
    "delta_encode",
    "delta_encode_cumulative",
    "delta_threshold_grad",
    "sigma_decode",
]


def check_delta_threshold(value: float | Tensor, owner: str) -> float | Tensor:
    """θ of a delta encoder: a finite number ``>= 0`` (as a float) or a tensor whose
    entries all are; otherwise a :class:`ConfigurationError` naming ``owner``'s
    ``threshold`` and the value."""
    if isinstance(value, Tensor):
        if not value.is_floating_point():
            raise ConfigurationError(
                f"{owner}: threshold must be a floating-point tensor, got {value.dtype}"
            )
        bad = ~(value.isfinite() & (value >= 0))
        if bool(bad.any()):
            shown = ", ".join(f"{float(v):g}" for v in value[bad].reshape(-1)[:3])
            raise ConfigurationError(
                f"{owner}: threshold must be finite and >= 0 everywhere; {int(bad.sum())} "
                f"of {value.numel()} entries are not ({shown})"
            )
        return value.detach().clone()
    if isinstance(value, (bool, str, bytes)) or not isinstance(value, (int, float)):
        raise ConfigurationError(
            f"{owner}: threshold must be a number >= 0 or a tensor, got {value!r}"
        )
    value = float(value)
    if not (math.isfinite(value) and value >= 0):
        raise ConfigurationError(f"{owner}: threshold must be finite and >= 0, got {value}")
    return value


def _check_float(x: object, owner: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise DTypeError(
            f"{owner} expects a floating-point tensor as input, got {type(x).__name__}"
        )
    if not x.is_floating_point():
        raise DTypeError(
            f"{owner} expects a floating-point input tensor, got {x.dtype} (convert it "
            "with x.float(); deltas of integers are not graded spikes)"
        )
    return x


def _check_positive(owner: str, name: str, value: object) -> float:
    """A finite number > 0, or a ConfigurationError naming ``owner``'s ``name``."""
    if isinstance(value, (bool, str, bytes)) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"{owner}: {name} must be a number > 0, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ConfigurationError(f"{owner}: {name} must be finite and > 0, got {value!r}")
    return float(value)


def _is_zero(theta: float | Tensor) -> bool:
    return bool((theta == 0).all()) if isinstance(theta, Tensor) else theta == 0.0


class _Delta(torch.autograd.Function):
    """The delta encoder's loop in the forward pass, straight-through in the backward:
    ``∂s[t]/∂a[t] = 1``, ``∂s[t]/∂a[t-1] = -1`` (the carried-in reference: none).
    ``error`` (Lava-DL's ``cum_error``): the running sum of the unsent changes, which
    decides the sending instead of the change itself; ``None`` when off. A threshold
    that requires grad gets Lava-DL's relaxed gradient (:func:`delta_threshold_grad`)
    with ``tau_grad`` and ``scale_grad``."""

    @staticmethod
    def forward(
        ctx: Any,
        a: Tensor,
        theta: Tensor,
        ref: Tensor,
        error: Tensor | None,
        tau_grad: float = 1.0,
        scale_grad: float = 1.0,
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        learn = ctx.needs_input_grad[1]
        if bool((theta == 0).all()):  # every change is sent: s = a[t] - a[t-1], ref = a
            out = a - torch.cat((ref.unsqueeze(0), a[:-1]))
            changes = out
            ref = a[-1].clone()
            if error is not None:  # |e| >= 0 everywhere: sent, and the error cleared
                error = torch.zeros_like(error)
        else:
            out = torch.empty_like(a)
            changes = torch.empty_like(a) if learn else out
            for t in range(a.shape[0]):
                d = a[t] - ref
                if learn:
                    changes[t] = d
                if error is None:
                    send = ~(d.abs() < theta)  # |d| >= θ (a NaN is sent, so it shows)
                else:
                    error = error + d
                    send = ~(error.abs() < theta)
                    error = torch.where(send, torch.zeros_like(error), error)
                out[t] = torch.where(send, d, torch.zeros_like(d))
                ref = torch.where(send, a[t], ref)
        ctx.mark_non_differentiable(ref)
        if error is not None:
            ctx.mark_non_differentiable(error)
        if learn:
            ctx.save_for_backward(changes, theta)
            ctx.relax = (tau_grad, scale_grad)
        return out, ref, error

    @staticmethod
    def backward(
        ctx: Any, grad: Tensor, _grad_ref: Tensor, _grad_error: Tensor | None
    ) -> tuple[Tensor, Tensor | None, None, None, None, None]:
        shifted = torch.cat((grad[1:], torch.zeros_like(grad[:1])))
        grad_theta = None
        if ctx.needs_input_grad[1]:
            changes, theta = ctx.saved_tensors
            local = delta_threshold_grad(changes, theta, *ctx.relax)
            grad_theta = (local * grad).sum_to_size(theta.shape)
        return grad - shifted, grad_theta, None, None, None, None


def delta_threshold_grad(
    changes: Tensor, threshold: Tensor, tau_grad: float = 1.0, scale_grad: float = 1.0
) -> Tensor:
    """Lava-DL's derivative of a sent delta with respect to its threshold θ
    (``axon/delta.py``, ``_DeltaUnit.backward``), elementwise for the changes
    ``d = a[t] - ref`` the encoder saw: with ``e = |d| - θ``,
    ``-d · scale_grad · exp(-|e| / tau_grad) / θ`` where ``e > 0`` (a sent change: the
    exponential relaxation of the jump at ``|d| = θ``) and ``-sign(d)`` elsewhere.
    The threshold's gradient is this times the output's gradient, summed over what θ
    broadcasts over.
    """
    excess = changes.abs() - threshold
    relaxed = -changes * scale_grad * torch.exp(-excess.abs() / tau_grad) / threshold
    return torch.where(excess > 0, relaxed, -torch.sign(changes))


def delta_encode(
    x: Tensor, threshold: float | Tensor = 0.0, reference: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Delta-encode the sequence ``x`` ``[T, B, ...]`` with threshold θ.

    Returns ``(s, ref)``: the graded spikes ``[T, B, ...]`` (``s[t] = a[t] - ref`` where
    ``|a[t] - ref| >= θ``, else 0) and the reference after the last step (what a receiver
    has accumulated: ``Σ s`` plus the ``reference`` carried in, zeros by default). The
    gradient passes straight through the threshold (see the module docstring).
    """
    _check_float(x, "delta_encode")
    theta = check_delta_threshold(threshold, "delta_encode")
    check_time_major(x, "delta_encode", min_dims=1, single_step=False)
    ref = torch.zeros_like(x[0]) if reference is None else reference.detach().to(x.dtype)
    theta_t = torch.as_tensor(theta, dtype=x.dtype, device=x.device)
    out, ref, _ = _Delta.apply(x, theta_t, ref, None)
    return out, ref


def delta_encode_cumulative(
    x: Tensor,
    threshold: float | Tensor = 0.0,
    reference: Tensor | None = None,
    error: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Delta-encode ``x`` ``[T, B, ...]`` with Lava-DL's cumulative error (``cum_error``).

    Each step the unsent change ``d = a[t] - ref`` is added to an error ``e``; the change
    is sent (``s[t] = d``, ``ref = a[t]``) where ``|e| >= θ``, and ``e`` is cleared there.
    So a change held back below θ still gets sent once it has stood long enough (its
    running sum reaches θ), where :func:`delta_encode` waits for the change itself to
    reach θ. Returns ``(s, ref, e)``, the last two after the last step (``reference``
    and ``error`` carried in, zeros by default). Straight-through gradient as
    :func:`delta_encode`.
    """
    _check_float(x, "delta_encode_cumulative")
    theta = check_delta_threshold(threshold, "delta_encode_cumulative")
    check_time_major(x, "delta_encode_cumulative", min_dims=1, single_step=False)
    ref = torch.zeros_like(x[0]) if reference is None else reference.detach().to(x.dtype)
    err = torch.zeros_like(x[0]) if error is None else error.detach().to(x.dtype)
    theta_t = torch.as_tensor(theta, dtype=x.dtype, device=x.device)
    return _Delta.apply(x, theta_t, ref, err)


def sigma_decode(x: Tensor, accumulator: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The running sum of ``x`` ``[T, B, ...]`` over time, added to ``accumulator`` (the
    sum carried in, zeros by default), and the sum after the last step."""
    _check_float(x, "sigma_decode")
    check_time_major(x, "sigma_decode", min_dims=1, single_step=False)
    if accumulator is None:
        total = torch.cumsum(x, dim=0)
    else:  # left to right, as single steps add: ((acc + x0) + x1) + ...
        total = torch.cumsum(torch.cat((accumulator.unsqueeze(0).to(x.dtype), x)), dim=0)[1:]
    return total, total[-1]


def _sequence(module: StepModule, x: object) -> Tensor:
    """The input as ``[T, ...]``: as is in multi-step mode, one step made a sequence of one."""
    owner = type(module).__name__
    x = _check_float(x, owner)
    if module.step_mode == "s":
        return x.unsqueeze(0)
    check_time_major(x, owner)
    return x


def _result(module: StepModule, y: Tensor) -> Tensor:
    return y if module.step_mode == "m" else y[0]


class DeltaEncoder(MemoryModule):
    """Send the changes of its input as graded spikes (see the module docstring).

    Args:
        threshold: θ >= 0, a number or a tensor broadcastable to one step (per channel:
            ``[C, 1, 1]``); a change smaller than θ in magnitude is held back until the
            change accumulated since the last one sent reaches it. Default 0: every
            change is sent exactly. A buffer when a tensor; a parameter with
            ``requires_grad``.
        step_mode: ``'m'`` (``[T, B, ...]``, default) or ``'s'`` (``[B, ...]``, streaming).
        cum_error: Lava-DL's cumulative error: send where the running sum of the unsent
            changes reaches θ, not the change itself (:func:`delta_encode_cumulative`).
            Default False.
        requires_grad: learn θ (Lava-DL's ``Delta(requires_grad=True)``): ``threshold``
            becomes an ``nn.Parameter`` (a 0-d one for a number), clamped in place to
            ``>= min_threshold`` at each call, whose gradient is Lava-DL's relaxed one
            (:func:`delta_threshold_grad`). Default False.
        tau_grad: the relaxation's width (Lava-DL's ``tau_grad``, default 1).
        scale_grad: the relaxation's scale (Lava-DL's ``scale_grad``, default 1).
        min_threshold: the least learned θ (> 0; default ``1 / 4096``, Lava-DL's
            ``1 / scale`` for a sigma-delta neuron's delta at its default scale).

    State: ``ref``, the accumulated output (what the receiver holds); with
    ``cum_error``, also ``error``, the running sum of the unsent changes.

    Raises:
        ConfigurationError: a threshold that is negative, not finite or not a number
            (with ``requires_grad``: below ``min_threshold``), a flag that is not a bool,
            or ``tau_grad``/``scale_grad``/``min_threshold`` not a number > 0.
        ShapeError (at the call): a tensor threshold that does not broadcast to one
            step of the input (its shape kept).
    """

    def __init__(
        self,
        threshold: float | Tensor = 0.0,
        step_mode: StepMode = "m",
        cum_error: bool = False,
        *,
        requires_grad: bool = False,
        tau_grad: float = 1.0,
        scale_grad: float = 1.0,
        min_threshold: float = 1.0 / 4096,
    ) -> None:
        super().__init__(step_mode)
        owner = type(self).__name__
        theta = check_delta_threshold(threshold, owner)
        for name, flag in (("cum_error", cum_error), ("requires_grad", requires_grad)):
            if not isinstance(flag, bool):
                raise ConfigurationError(f"{owner}: {name} must be a bool, got {flag!r}")
        self.cum_error = cum_error
        self.requires_grad = requires_grad
        self.tau_grad = _check_positive(owner, "tau_grad", tau_grad)
        self.scale_grad = _check_positive(owner, "scale_grad", scale_grad)
        self.min_threshold = _check_positive(owner, "min_threshold", min_threshold)
        if requires_grad:
            # (a number as a number: a tensor of it may be on the meta device, valueless)
            low = theta < self.min_threshold if isinstance(theta, float) else None
            if low if low is not None else bool((theta < self.min_threshold).any()):
                shown = f"{theta:g}" if isinstance(theta, float) else "a tensor below it"
                raise ConfigurationError(
                    f"{owner}: a learned threshold must be >= min_threshold "
                    f"({self.min_threshold:g}) everywhere (its gradient divides by it), got "
                    f"{shown}"
                )
            dtype = theta.dtype if isinstance(theta, Tensor) else torch.get_default_dtype()
            self.threshold = nn.Parameter(torch.as_tensor(theta, dtype=dtype).clone())
        elif isinstance(theta, Tensor):
            self.register_buffer("threshold", theta)
        else:
            self.threshold = theta

    def forward(self, x: Tensor) -> Tensor:
        """The graded spikes: ``[T, B, ...]`` (multi-step) or ``[B, ...]`` (single-step)."""
        x_seq = _sequence(self, x)
        theta = self.threshold
        if isinstance(theta, Tensor):
            step = x_seq.shape[1:]
            shape = list(theta.shape)
            while len(shape) > len(step) and shape[0] == 1:
                shape.pop(0)  # leading ones: the output keeps the step's shape
            try:
                fits = torch.broadcast_shapes(tuple(shape), step) == step
            except RuntimeError:
                fits = False
            if not fits:
                raise ShapeError(
                    f"{type(self).__name__}: threshold of shape {tuple(theta.shape)} does not "
                    f"broadcast to one step of the input, of shape {tuple(step)} (a per-channel "
                    "θ behind a convolution is [C, 1, 1])"
                )
        state = self._carried_state(x_seq.shape[1:])
        if self.requires_grad:
            return self._learned(x_seq, state)
        ref = None if state is None else state["ref"]
        if self.cum_error:
            error = None if state is None else state["error"]
            out, ref, error = delta_encode_cumulative(x_seq, self.threshold, ref, error)
            self._keep_state({"ref": ref, "error": error})
        else:
            out, ref = delta_encode(x_seq, self.threshold, ref)
            self._keep_state({"ref": ref})
        return _result(self, out)

    def _learned(self, x_seq: Tensor, state: dict[str, Tensor] | None) -> Tensor:
        """The forward pass with θ a parameter (clamped in place, as Lava-DL's ``clamp``)."""
        theta = self.threshold
        assert isinstance(theta, Tensor)
        # through .data, as Lava-DL's clamp: an in-place clamp of the parameter itself
        # would bump its version and break backward() through an earlier call's graph
        # (single steps, or the encoder called twice, before one backward)
        theta.data.clamp_(min=self.min_threshold)
        zeros = torch.zeros_like(x_seq[0])
        ref = zeros if state is None else state["ref"].detach().to(x_seq.dtype)
        error = None
        if self.cum_error:
            error = zeros if state is None else state["error"].detach().to(x_seq.dtype)
        out, ref, error = _Delta.apply(
            x_seq, theta.to(x_seq.dtype), ref, error, self.tau_grad, self.scale_grad
        )
        self._keep_state({"ref": ref} if error is None else {"ref": ref, "error": error})
        return _result(self, out)

    def extra_repr(self) -> str:
        theta = self.threshold
        if isinstance(theta, Tensor):
            shown = (
                f"{float(theta.detach()):g}" if theta.dim() == 0 else f"tensor{tuple(theta.shape)}"
            )
        else:
            shown = f"{theta:g}"
        extra = ", cum_error=True" if self.cum_error else ""
        if self.requires_grad:
            extra += f", requires_grad=True, tau_grad={self.tau_grad:g}"
            extra += f", scale_grad={self.scale_grad:g}"
        return f"threshold={shown}, step_mode={self.step_mode!r}{extra}"


class SigmaDecoder(MemoryModule):
    """Accumulate graded spikes: output ``Σ_{t' <= t} x[t']`` (the sum carried in while
    streaming). The read-out of an SDNN: its last layer's accumulated output.

    Args:
        step_mode: ``'m'`` (``[T, B, ...]``, default) or ``'s'`` (``[B, ...]``, streaming).

    State: ``acc``, the sum so far.
    """

    def forward(self, x: Tensor) -> Tensor:
        """The running sums: ``[T, B, ...]`` (multi-step) or ``[B, ...]`` (single-step)."""
        x_seq = _sequence(self, x)
        state = self._carried_state(x_seq.shape[1:])
        total, last = sigma_decode(x_seq, None if state is None else state["acc"])
        self._keep_state({"acc": last})
        return _result(self, total)

    def extra_repr(self) -> str:
        return f"step_mode={self.step_mode!r}"


class SigmaDelta(StepModule, nn.Module):
    """A sigma-delta unit: sigma → activation → delta encoder.

    ``y[t] = Δ_θ( f( Σ_{t' <= t} x[t'] ) )``: it accumulates its synaptic input deltas
    (:attr:`sigma`, a :class:`SigmaDecoder`), applies ``f`` to the accumulated value of
    each step, and sends the changes of the result (:attr:`delta`, a
    :class:`DeltaEncoder`). With θ = 0 the accumulated output is exactly ``f`` of the
    accumulated input.

    Args:
        activation: ``f``, a module or function of one step ``[B, ...]`` that treats
            samples independently (it runs once on time folded into the batch):
            elementwise (ReLU, the default, GELU, QCFS, ...) or not (max pooling, ReLU
            followed by max pooling). Spikeflow modules inside must be stateless and in
            single-step mode.
        threshold: θ of the delta encoder (see :class:`DeltaEncoder`), default 0.
        step_mode: ``'m'`` (``[T, B, ...]``, default) or ``'s'`` (``[B, ...]``, streaming);
            setting it sets the sigma's and the delta's.
        **delta_options: ``cum_error``, ``requires_grad`` (learn θ: Lava-DL's
            sigma-delta neuron's ``requires_grad``), ``tau_grad``, ``scale_grad`` and
            ``min_threshold`` of the :class:`DeltaEncoder`.

    State (in the children): the sigma's sum and the delta's reference.
    """

    owns_children_time = True

    step_mode_parts = ("sigma", "delta")

    def __init__(
        self,
        activation: nn.Module | Callable[[Tensor], Tensor] | None = None,
        threshold: float | Tensor = 0.0,
        step_mode: StepMode = "m",
        **delta_options: Any,
    ) -> None:
        nn.Module.__init__(self)
        if activation is None:
            activation = nn.ReLU()
        if not callable(activation):
            raise ConfigurationError(
                f"SigmaDelta: activation must be a module or a function of one step, got "
                f"{activation!r}"
            )
        if isinstance(activation, nn.Module):
            check_inner_modules("SigmaDelta", [activation], stateless=True)
        self.activation = activation
        self.sigma = SigmaDecoder(step_mode)
        known = {"cum_error", "requires_grad", "tau_grad", "scale_grad", "min_threshold"}
        unknown = sorted(set(delta_options) - known)
        if unknown:
            raise ConfigurationError(
                f"SigmaDelta: unknown option(s) {unknown}; the delta encoder takes {sorted(known)}"
            )
        self.delta = DeltaEncoder(threshold, step_mode, **delta_options)
        self.step_mode = step_mode

    @property
    def threshold(self) -> float | Tensor:
        """θ of the delta encoder."""
        return self.delta.threshold

    def reset(self) -> None:
        """Forget the sum and the reference (as :func:`spikeflow.functional.reset_net`)."""
        self.sigma.reset()
        self.delta.reset()

    def forward(self, x: Tensor) -> Tensor:
        """The graded output spikes: ``[T, B, ...]`` or, single-step, ``[B, ...]``."""
        if isinstance(self.activation, nn.Module):
            check_inner_modules("SigmaDelta", [self.activation], stateless=True)
        total = self.sigma(x)
        if self.step_mode == "s":
            return self.delta(self.activation(total))
        return self.delta(fold_time(self.activation, total))

    def extra_repr(self) -> str:
        return f"step_mode={self.step_mode!r}"


def _bias_shape(layer: nn.Module) -> tuple[int, ...]:
    """How a layer's bias broadcasts over one output step: the last dim of a Linear's
    output, dim 1 of a convolution's ``[B, C, *spatial]``."""
    if isinstance(layer, nn.Linear):
        return (-1,)
    return (-1,) + (1,) * (layer.weight.dim() - 2)


class DeltaSynapse(MemoryModule):
    """A Linear or convolution layer fed graded spikes (deltas).

    The weight applies to every step; the layer's bias is added once, at a sequence's
    first step (see the module docstring), so the sigma of the next unit accumulates
    ``W·a + b``. The bias is moved out of ``layer`` (which then has ``bias = None``)
    into :attr:`bias`, the same parameter object (an optimizer holding it still
    trains it).

    Args:
        layer: a ``torch.nn.Linear``, ``Conv1d/2d/3d`` or ``ConvTranspose1d/2d/3d`` (or a
            subclass: spikeflow's sequence layers in single-step mode).
        step_mode: ``'m'`` (``[T, B, ...]``, default) or ``'s'`` (``[B, ...]``, streaming).

    State: whether the bias was sent (while streaming).
    """

    def __init__(self, layer: nn.Module, step_mode: StepMode = "m") -> None:
        super().__init__(step_mode)
        if not isinstance(layer, (nn.Linear, _ConvNd)):
            raise ConfigurationError(
                "DeltaSynapse: layer must be a torch.nn.Linear, Conv1d/2d/3d or "
                f"ConvTranspose1d/2d/3d, got {type(layer).__name__}"
            )
        check_inner_modules("DeltaSynapse", [layer], stateless=True)
        bias = layer.bias
        layer.bias = None  # the same Parameter object moves to the synapse
        self.layer = layer
        self.bias = bias
        self._bias_shape = _bias_shape(layer)

    def forward(self, x: Tensor) -> Tensor:
        """``W x`` at every step, plus the bias at the first step of a sequence."""
        x_seq = _sequence(self, x)
        check_inner_modules("DeltaSynapse", [self.layer], stateless=True)
        state = self._carried_state(x_seq.shape[1:])
        y = fold_time(self.layer, x_seq)
        if self.bias is not None and state is None:  # this call begins the sequence
            first = y[0] + self.bias.reshape(self._bias_shape)
            y = torch.cat((first.unsqueeze(0), y[1:]))
        self._keep_state({"bias_sent": torch.ones((), dtype=torch.bool, device=y.device)})
        return _result(self, y)

    def extra_repr(self) -> str:
        return f"bias={self.bias is not None}, step_mode={self.step_mode!r}"


@torch.no_grad()
def delta_activity(net: nn.Module, x: Tensor) -> dict[str, float]:
    """Run ``net(x)`` once (no gradients, state reset before and after) and return, for
    each :class:`DeltaEncoder` in it (by module name; a unit's is ``<unit>.delta``), the
    share of its outputs that were nonzero: the graded spikes it sent per value per step.
    """
    from spikeflow.functional import reset_net

    found: dict[str, list[int]] = {}
    handles = []
    for name, module in net.named_modules():
        if isinstance(module, DeltaEncoder):
            counts = found.setdefault(name or "(net)", [0, 0])

            def hook(_m: nn.Module, _a: Any, out: Tensor, counts: list[int] = counts) -> None:
                counts[0] += int((out != 0).sum())
                counts[1] += out.numel()

            handles.append(module.register_forward_hook(hook))
    reset_net(net)
    try:
        net(x)
    finally:
        for handle in handles:
            handle.remove()
        reset_net(net)
    return {name: sent / total if total else 0.0 for name, (sent, total) in found.items()}
