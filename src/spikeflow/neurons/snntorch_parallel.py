"""snnTorch 1.0's leaky layers computed over the whole sequence at once: ``LeakyParallel``
(a one-layer ``nn.RNN`` with ReLU and a diagonal recurrent matrix), ``StateLeaky`` (a
causal exponential filter, no reset) and ``LinearLeaky`` (``StateLeaky`` after a
``Linear``). Their equations and arguments are snnTorch's, read from its code; the
names of their state-dict entries are snnTorch's, so its trained layers load.

``LeakyParallel`` (input ``[T, B, I]``, ``W_ih``, ``b_ih``, ``W_hh``, ``b_hh`` of its
``nn.RNN``, ``U[-1] = 0``)::

    U[t] = ReLU(W_ih X[t] + b_ih + W_hh U[t-1] + b_hh)
    S[t] = Θ(U[t] - θ) · g                      (fires on U > θ; atan() surrogate)

``W_hh`` is diagonal (its diagonal is ``beta`` when given, else PyTorch's random
initialisation) unless ``weight_hh_enable=True``; there is no reset, and the ReLU
clips the membrane at 0.

``StateLeakyNode`` (``StateLeaky``; input ``[T, B, C]``)::

    U[t] = Σ_{k=0}^{K-1} exp(-k / τ) X[t - k],   τ = 1 / (1 - β + 1e-12)
    S[t] = Θ(U[t] - θ) · g

with ``K = T``, or ``min(kernel_truncation_steps, T)``: the leak per step is
``exp(-(1 - β))``, not ``β`` (snnTorch's choice), and there is no reset.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from spikeflow._checks import check_flag
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.neurons.base import check_step_shape, checked_surrogate
from spikeflow.neurons.snntorch_base import show_value, snntorch_factor
from spikeflow.surrogate import ATan, Surrogate

__all__ = ["LeakyParallel", "LinearLeaky", "StateLeakyNode", "causal_exponential_filter"]


def _check_sequence(owner: str, x: object, features: int, what: str) -> Tensor:
    """``x`` as a checked floating ``[T, B, features]`` tensor."""
    if not isinstance(x, Tensor):
        raise DTypeError(f"{owner} expects a tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise DTypeError(f"{owner} expects a floating-point input, got dtype {x.dtype}")
    if x.dim() != 3 or x.shape[2] != features or x.shape[0] == 0:
        raise ShapeError(
            f"{owner} expects a time-major input [T >= 1, B, {what}={features}], got shape "
            f"{tuple(x.shape)}"
        )
    return x


def _init_firing(
    module: nn.Module,
    owner: str,
    threshold: float | Tensor,
    learn_threshold: bool,
    graded_spikes_factor: float | Tensor,
    learn_graded_spikes_factor: bool,
    surrogate_function: Surrogate | None,
    store_v_seq: bool,
) -> None:
    """Set up what fires the membrane (:func:`_record_and_fire`): ``threshold`` and
    ``graded_spikes_factor`` under snnTorch's names, as buffers or (``learn_*``)
    parameters, the surrogate (default ``ATan()``) and ``store_v_seq``."""
    for name, value, learn in (
        ("threshold", threshold, learn_threshold),
        ("graded_spikes_factor", graded_spikes_factor, learn_graded_spikes_factor),
    ):
        tensor = snntorch_factor(owner, name, value)
        if check_flag(owner, f"learn_{name}", learn):
            setattr(module, name, nn.Parameter(tensor))
        else:
            module.register_buffer(name, tensor)
    module.surrogate_function = checked_surrogate(surrogate_function, ATan)
    module.store_v_seq = check_flag(owner, "store_v_seq", store_v_seq)
    module.v_seq = None


def _record_and_fire(module: nn.Module, mem: Tensor) -> Tensor:
    """``Θ(U - θ) · g`` (fires on ``U > θ``, snnTorch's), θ and ``g`` checked to
    broadcast to one step of ``mem``; the membrane kept in ``v_seq`` first if
    ``store_v_seq``."""
    if module.store_v_seq:
        module.v_seq = mem
    owner = type(module).__name__
    for name in ("threshold", "graded_spikes_factor"):
        check_step_shape(owner, name, getattr(module, name), mem.shape[1:])
    spikes = module.surrogate_function(mem - module.threshold, strict=True)
    return spikes * module.graded_spikes_factor


def _drop_snntorch_only(state_dict: dict[str, Any], prefix: str, names: tuple[str, ...]) -> None:
    """Remove what snnTorch saves that has no meaning here (``reset_mechanism_val`` of a
    layer without reset, a ``beta`` derived from ``tau``)."""
    for name in names:
        state_dict.pop(prefix + name, None)


class LeakyParallel(nn.Module):
    """snnTorch's ``LeakyParallel``: a leaky layer with its input weights, all steps at
    once through ``torch.nn.RNN`` (see the module docstring for the equations).

    ``snn.LeakyParallel(input_size, hidden_size, beta=b, ...)`` is
    ``LeakyParallel(input_size, hidden_size, beta=b, ...)``: the same spikes and
    gradients given the same weights (``load_state_dict`` of snnTorch's: ``rnn.*``,
    ``beta``, ``threshold``, ``graded_spikes_factor`` by the same names).

    Args:
        input_size: the input features ``I``.
        hidden_size: the neurons ``H``.
        beta: the diagonal of ``W_hh`` at construction, in ``[0, 1]`` (snnTorch clamps
            a value outside silently; here it is an error): a float, or a tensor of one
            value or ``H`` values (one per neuron; snnTorch 1.0 leaves ``W_hh`` random
            for an ``H``-valued tensor). None (default): PyTorch's random ``W_hh``,
            made diagonal. ``beta`` is used once; the decay is then ``W_hh``.
        bias: whether the RNN has ``b_ih`` and ``b_hh`` (default True).
        threshold: θ, a float or a tensor broadcastable to ``[H]`` (default 1).
        surrogate_function: the spike function (default ``ATan()``, snnTorch's
            ``atan()``; fires on ``U > θ``); snnTorch's ``surrogate_disable=True`` is
            ``LeakyKReLU(leak=0.0, k=0.0)``.
        learn_beta: train ``W_hh`` (its off-diagonal gradient masked to 0 unless
            ``weight_hh_enable``, in copies of the layer too: ``copy.deepcopy``,
            pickling); False freezes it (``requires_grad=False``).
        learn_threshold, learn_graded_spikes_factor: make θ, ``g`` parameters.
        graded_spikes_factor: ``g``, the spikes' amplitude (default 1).
        weight_hh_enable: keep ``W_hh`` dense (an ordinary ReLU RNN), as snnTorch's.
        store_v_seq: keep the membrane ``U`` of the last call in ``self.v_seq``.
        device, dtype: of the RNN's weights (``device`` also places the threshold,
            factor and ``beta`` buffers).

    snnTorch's ``dropout`` (given to a one-layer ``nn.RNN``, where PyTorch ignores it)
    is not offered. Each call starts from ``U = 0`` (as snnTorch's). The input is batched
    (snnTorch's also takes an unbatched ``[T, I]``: add the batch dimension).

    Raises:
        ConfigurationError: ``beta`` outside ``[0, 1]`` or of a length other than 1 or
            ``H``, a non-finite value, a flag that is not a bool.
        ShapeError: an input that is not ``[T, B, input_size]``, a threshold or factor
            that does not broadcast to ``[B, H]`` (in :meth:`forward`).
    """

    v_seq: Tensor | None  # the membrane of the last call, with store_v_seq

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        beta: float | Tensor | None = None,
        bias: bool = True,
        threshold: float | Tensor = 1.0,
        surrogate_function: Surrogate | None = None,
        learn_beta: bool = False,
        learn_threshold: bool = False,
        graded_spikes_factor: float | Tensor = 1.0,
        learn_graded_spikes_factor: bool = False,
        weight_hh_enable: bool = False,
        store_v_seq: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        for name, size in (("input_size", input_size), ("hidden_size", hidden_size)):
            if isinstance(size, bool) or not isinstance(size, int) or size < 1:
                raise ConfigurationError(f"{owner}: {name} must be an int >= 1, got {size!r}")
        self.hidden_size = hidden_size
        has_bias = check_flag(owner, "bias", bias)
        self.rnn = nn.RNN(input_size, hidden_size, num_layers=1, nonlinearity="relu",
                          bias=has_bias, device=device, dtype=dtype)  # fmt: skip
        decay = None
        if beta is not None:
            decay = snntorch_factor(owner, "beta", beta, 0.0, 1.0).reshape(-1)
            if decay.numel() not in (1, hidden_size):
                raise ConfigurationError(
                    f"{owner}: beta must be one value or hidden_size={hidden_size} values, "
                    f"got {decay.numel()}"
                )
        self.register_buffer("beta", decay)
        self.weight_hh_enable = check_flag(owner, "weight_hh_enable", weight_hh_enable)
        learn_beta = check_flag(owner, "learn_beta", learn_beta)
        weight = self.rnn.weight_hh_l0
        with torch.no_grad():
            if decay is not None:
                weight.copy_(decay.to(weight).reshape(-1, 1).expand_as(weight))
            if not self.weight_hh_enable:
                weight.mul_(torch.eye(hidden_size, dtype=weight.dtype, device=weight.device))
        weight.requires_grad_(learn_beta)
        self._keep_diagonal()
        _init_firing(
            self, owner, threshold, learn_threshold, graded_spikes_factor,
            learn_graded_spikes_factor, surrogate_function, store_v_seq,
        )  # fmt: skip
        if device is not None:  # θ, g and beta with the RNN (not left on the CPU)
            self.to(device)

    def _keep_diagonal(self) -> None:
        """Mask a trained ``W_hh``'s off-diagonal gradient (unless ``weight_hh_enable``): a
        hook on the tensor, which a copy of the module (``copy.deepcopy``, pickling,
        ``torch.save`` of the module) does not carry, so :meth:`__setstate__` sets it
        again on the copy's ``W_hh``."""
        weight = self.rnn.weight_hh_l0
        hooks = getattr(weight, "_backward_hooks", None) or {}
        trained = weight.requires_grad and not self.weight_hh_enable
        if trained and _diagonal_only not in hooks.values():
            weight.register_hook(_diagonal_only)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._keep_diagonal()

    def forward(self, x: Tensor) -> Tensor:
        """The spikes ``[T, B, H]`` (times ``graded_spikes_factor``) of ``x``
        (``[T, B, input_size]``)."""
        x = _check_sequence(type(self).__name__, x, self.rnn.input_size, "input_size")
        mem, _ = self.rnn(x)
        return _record_and_fire(self, mem)

    def extra_repr(self) -> str:
        beta = "None" if self.beta is None else show_value(self.beta.reshape(-1)[0])
        if self.beta is not None and self.beta.numel() > 1:
            beta = f"tensor({self.beta.numel()})"
        parts = [
            f"{self.rnn.input_size}, {self.hidden_size}, beta={beta}",
            f"threshold={show_value(self.threshold)}",
        ]
        if self.weight_hh_enable:
            parts.append("weight_hh_enable=True")
        return ", ".join(parts)


def _diagonal_only(grad: Tensor) -> Tensor:
    """``W_hh``'s gradient with its off-diagonal entries zeroed (snnTorch's hook)."""
    return grad * torch.eye(grad.shape[0], dtype=grad.dtype, device=grad.device)


def causal_exponential_filter(x: Tensor, tau: Tensor, steps: int | None = None) -> Tensor:
    """``U[t] = Σ_{k<K} exp(-k / τ) x[t - k]`` for ``x`` of shape ``[T, B, C]`` and ``τ``
    of one or ``C`` values, with ``K = T`` or ``min(steps, T)``: snnTorch's
    ``StateLeaky`` state, one depthwise causal ``conv1d`` over time. The kernel is
    computed in ``x``'s dtype (a float32 ``τ`` filters a float64 ``x`` in float64;
    ``τ``'s gradient flows through the cast).

    Raises:
        DTypeError: ``x`` or ``τ`` is not a floating-point tensor.
        ShapeError: ``x`` is not ``[T >= 1, B, C >= 1]`` or ``τ`` has neither 1 nor
            ``C`` values.
        ConfigurationError: ``steps`` is neither None nor an int >= 1.
    """
    owner = "causal_exponential_filter"
    for name, value in (("x", x), ("tau", tau)):
        if not isinstance(value, Tensor) or not value.is_floating_point():
            what = f"dtype {value.dtype}" if isinstance(value, Tensor) else type(value).__name__
            raise DTypeError(f"{owner}: {name} must be a floating-point tensor, got {what}")
    if x.dim() != 3 or x.shape[0] == 0 or x.shape[2] == 0:
        raise ShapeError(f"{owner} takes x of shape [T >= 1, B, C >= 1], got {tuple(x.shape)}")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise ConfigurationError(f"{owner}: steps must be None or an int >= 1, got {steps!r}")
    num_steps, _, channels = x.shape
    if tau.numel() not in (1, channels):
        raise ShapeError(f"{owner}: tau has {tau.numel()} values for {channels} channels")
    size = num_steps if steps is None else min(steps, num_steps)
    lags = torch.arange(size, device=x.device, dtype=x.dtype).view(1, 1, size)
    kernel = torch.exp(-lags / tau.to(x.dtype).reshape(-1, 1, 1)).expand(channels, 1, size)
    signal = F.pad(x.permute(1, 2, 0), (size - 1, 0))  # [B, C, T], causal: left only
    out = F.conv1d(signal, torch.flip(kernel, dims=[-1]), groups=channels)
    return out.permute(2, 0, 1)


class StateLeakyNode(nn.Module):
    """snnTorch's ``StateLeaky``: a leaky membrane without reset, computed as a causal
    exponential filter of the whole ``[T, B, C]`` input at once (see the module
    docstring: the leak per step is ``exp(-(1 - β))``).

    ``spk, mem = snn.StateLeaky(beta, channels, ...)(x)`` is ``spk = node(x)`` with
    ``mem`` from :meth:`membrane` (or ``node.v_seq`` with ``store_v_seq=True``); its
    ``output=False`` (the membrane alone) is :meth:`membrane`. The same spikes,
    membranes and gradients as snnTorch's, and its ``state_dict`` loads (``tau``,
    ``threshold``, ``graded_spikes_factor``; the derived ``beta`` and the unused
    ``reset_mechanism_val`` it also saves are dropped).

    Args:
        beta: in ``[0, 1]``; a float or a tensor of one value or ``channels`` values.
            Kept as ``tau = 1 / (1 - beta + 1e-12)``, snnTorch's.
        channels: ``C``, the neurons (the input's last dimension).
        threshold: θ, a float or a tensor broadcastable to ``[C]`` (default 1).
        surrogate_function: default ``ATan()`` (snnTorch's ``atan()``; fires on U > θ).
        learn_beta: make ``tau`` a trainable parameter (snnTorch's: the gradient is
            ``tau``'s, not ``beta``'s).
        learn_threshold, learn_graded_spikes_factor: make θ, ``g`` parameters.
        graded_spikes_factor: ``g``, the spikes' amplitude (default 1). snnTorch 1.0
            multiplies its spikes by ``g`` twice (``g²``); here once.
        kernel_truncation_steps: ``K``, the steps of the filter (default: all).
        store_v_seq: keep the membrane of the last call in ``self.v_seq``.

    Raises:
        ConfigurationError: ``beta`` outside ``[0, 1]`` or of the wrong length, a
            ``kernel_truncation_steps`` that is not an int >= 1, a flag not a bool.
        ShapeError: an input that is not ``[T, B, channels]`` (in :meth:`forward`).
    """

    v_seq: Tensor | None  # the membrane of the last call, with store_v_seq

    def __init__(
        self,
        beta: float | Tensor,
        channels: int,
        threshold: float | Tensor = 1.0,
        surrogate_function: Surrogate | None = None,
        learn_beta: bool = False,
        learn_threshold: bool = False,
        graded_spikes_factor: float | Tensor = 1.0,
        learn_graded_spikes_factor: bool = False,
        kernel_truncation_steps: int | None = None,
        store_v_seq: bool = False,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ConfigurationError(f"{owner}: channels must be an int >= 1, got {channels!r}")
        steps = kernel_truncation_steps
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int)
                                  or steps < 1):  # fmt: skip
            raise ConfigurationError(
                f"{owner}: kernel_truncation_steps must be None or an int >= 1, got {steps!r}"
            )
        self.channels = channels
        self.kernel_truncation_steps = steps
        decay = snntorch_factor(owner, "beta", beta, 0.0, 1.0)
        if decay.numel() not in (1, channels) or decay.dim() > 1:
            raise ConfigurationError(
                f"{owner}: beta must be one value or channels={channels} values (shape "
                f"[{channels}]), got shape {tuple(decay.shape)}"
            )
        tau = 1 / (1 - decay + 1e-12)
        if check_flag(owner, "learn_beta", learn_beta):
            self.tau = nn.Parameter(tau)
        else:
            self.register_buffer("tau", tau)
        _init_firing(
            self, owner, threshold, learn_threshold, graded_spikes_factor,
            learn_graded_spikes_factor, surrogate_function, store_v_seq,
        )  # fmt: skip

    @property
    def beta(self) -> Tensor:
        """``(tau - 1) / tau``: the ``beta`` the layer was built with (up to the 1e-12)."""
        return (self.tau - 1) / self.tau

    def membrane(self, x: Tensor) -> Tensor:
        """The membrane ``U`` (``[T, B, C]``) of ``x`` (``[T, B, C]``): snnTorch's
        ``output=False``."""
        x = _check_sequence(type(self).__name__, x, self.channels, "channels")
        return causal_exponential_filter(x, self.tau, self.kernel_truncation_steps)

    def forward(self, x: Tensor) -> Tensor:
        """The spikes ``[T, B, C]`` (times ``graded_spikes_factor``) of ``x``."""
        return _record_and_fire(self, self.membrane(x))

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        _drop_snntorch_only(state_dict, prefix, ("beta", "reset_mechanism_val"))
        super()._load_from_state_dict(state_dict, prefix, *args)

    def extra_repr(self) -> str:
        parts = [f"channels={self.channels}", f"beta={show_value(self.beta.detach())}",
                 f"threshold={show_value(self.threshold)}"]  # fmt: skip
        if self.kernel_truncation_steps is not None:
            parts.append(f"kernel_truncation_steps={self.kernel_truncation_steps}")
        return ", ".join(parts)


class LinearLeaky(StateLeakyNode):
    """snnTorch's ``LinearLeaky``: ``nn.Linear(in_features, out_features)`` at every
    step, then :class:`StateLeakyNode` with ``channels=out_features``.

    ``snn.LinearLeaky(beta, in_features, out_features, ...)`` is ``LinearLeaky(beta,
    in_features, out_features, ...)``; its ``linear.weight`` and ``linear.bias`` load by
    name with the rest of its ``state_dict``.

    Args:
        beta: as :class:`StateLeakyNode`'s.
        in_features, out_features: the Linear's sizes (``out_features`` the neurons).
        bias: whether the Linear has a bias (default True).
        device, dtype: of the Linear's weights (``device`` also places ``tau``, the
            threshold and the factor).
        threshold, surrogate_function, learn_beta, learn_threshold,
            graded_spikes_factor, learn_graded_spikes_factor, kernel_truncation_steps,
            store_v_seq: as :class:`StateLeakyNode`.

    Raises:
        ConfigurationError, ShapeError: as :class:`StateLeakyNode` (the input is
            ``[T, B, in_features]``).
    """

    def __init__(
        self,
        beta: float | Tensor,
        in_features: int,
        out_features: int,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        threshold: float | Tensor = 1.0,
        surrogate_function: Surrogate | None = None,
        learn_beta: bool = False,
        learn_threshold: bool = False,
        graded_spikes_factor: float | Tensor = 1.0,
        learn_graded_spikes_factor: bool = False,
        kernel_truncation_steps: int | None = None,
        store_v_seq: bool = False,
    ) -> None:
        super().__init__(
            beta, out_features, threshold, surrogate_function, learn_beta, learn_threshold,
            graded_spikes_factor, learn_graded_spikes_factor, kernel_truncation_steps,
            store_v_seq,
        )  # fmt: skip
        if isinstance(in_features, bool) or not isinstance(in_features, int) or in_features < 1:
            raise ConfigurationError(
                f"{type(self).__name__}: in_features must be an int >= 1, got {in_features!r}"
            )
        self.linear = nn.Linear(
            in_features, out_features, bias=check_flag(type(self).__name__, "bias", bias),
            device=device, dtype=dtype,
        )  # fmt: skip
        if device is not None:  # tau, θ and g with the Linear (not left on the CPU)
            self.to(device)

    def membrane(self, x: Tensor) -> Tensor:
        """The membrane (``[T, B, out_features]``) of ``x`` (``[T, B, in_features]``)."""
        x = _check_sequence(type(self).__name__, x, self.linear.in_features, "in_features")
        return super().membrane(self.linear(x))
