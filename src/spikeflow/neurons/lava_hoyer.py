"""Lava-DL's CUBA neuron with Hoyer spiking (``slayer.neuron.cuba_hoyer.HoyerNeuron``).

Hoyer-regularised training (Datta et al., "Hoyer regularizer is all you need for
ultra low-latency spiking neural networks") fires a CUBA neuron where its voltage,
divided by a learnable threshold, reaches the *Hoyer extremum* of the layer's clipped
voltages at that step, ``E = Σ c² / Σ |c|`` with ``c = clamp(v / θ_l, 0, 1)``: a
threshold in (0, 1] that follows the statistics of the layer. Training uses each
batch's extremum and keeps a running average of it per time step (momentum 0.9);
evaluation uses the running average, as a batch norm does. The neuron also records
the Hoyer regulariser ``(Σ |c|)² / Σ c²`` of its clipped voltage (``hoyer_loss``) for
the training loss, and (behind a convolution) batch-normalises its input.

The classes keep Lava-DL's parameter names on spikeflow's time-major input ``[T, B, ...]``
(Lava-DL's is time-last: ``x.permute(-1, 0, ...)``). What is reproduced is Lava-DL's
floating-point dynamics, as for :mod:`spikeflow.neurons.lava_dl`: its fixed-point grid
is not, and the spike derivative is the module's ``surrogate_function``.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from spikeflow._checks import check_flag, check_int, check_real
from spikeflow.base import MemoryModule, StepMode
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.neurons.base import check_sequence, checked_surrogate
from spikeflow.neurons.lava_dl import lava_decay_keep, store_decays

__all__ = ["LavaCubaHoyerNode", "hoyer_extremum", "hoyer_regularizer"]


def hoyer_extremum(v: Tensor, channelwise: bool = False) -> Tensor:
    """The Hoyer extremum of ``v`` ``[T, B, ...]`` per time step: with
    ``c = clamp(v, 0, 1)``, ``Σ c² / Σ |c|`` over every dimension but time (``[T]``),
    or (``channelwise``, ``v`` ``[T, B, C, H, W]``) over the batch and the pixels
    (``[T, 1, C, 1, 1]``). A step (channel) with no positive value gives 1 (Lava-DL's
    ``nan_to_num(nan=1)``). No gradient: the extremum is a statistic.

    Raises:
        DTypeError: ``v`` not a floating-point tensor.
        ShapeError: ``v`` with fewer than 2 dimensions (its sum over no dimension
            would be over everything), or ``channelwise`` with ``v`` not 5-D.
    """
    if not isinstance(v, Tensor) or not v.is_floating_point():
        got = v.dtype if isinstance(v, Tensor) else type(v).__name__
        raise DTypeError(f"hoyer_extremum: v must be a floating-point tensor, got {got}")
    if v.dim() < 2:
        raise ShapeError(
            f"hoyer_extremum: v must be [T, B, ...] (at least 2-D), got shape {tuple(v.shape)}"
        )
    c = torch.clamp(v.detach(), 0.0, 1.0)
    if channelwise:
        if c.dim() != 5:
            raise ShapeError(
                f"hoyer_extremum: channelwise needs [T, B, C, H, W], got shape {tuple(c.shape)}"
            )
        dims: tuple[int, ...] = (1, 3, 4)
        keep = True
    else:
        dims, keep = tuple(range(1, c.dim())), False
    ext = (c * c).sum(dims, keepdim=keep) / c.abs().sum(dims, keepdim=keep)
    return torch.nan_to_num(ext, nan=1.0)


def hoyer_regularizer(v: Tensor) -> Tensor:
    """Lava-DL's Hoyer loss of a voltage: ``(Σ |c|)² / (Σ c² + 1e-9)`` with
    ``c = clamp(v, 0, 1)`` over the whole tensor (differentiable)."""
    c = torch.clamp(v, 0.0, 1.0)
    return c.abs().sum() ** 2 / ((c * c).sum() + 1e-9)


class LavaCubaHoyerNode(MemoryModule):
    """Lava-DL's CUBA neuron with Hoyer spiking (``slayer.neuron.cuba_hoyer.HoyerNeuron``)::

        u[t] = (1 - α_u) u[t-1] + x[t]                    (current)
        v[t] = (1 - α_v) v'[t-1] + u[t]                   (voltage)
        v'[t] = 0 where v[t] >= θ + ε, else v[t]          (reset at the fixed threshold)
        s[t] = v[t] / θ_l >= E[t]                         (Hoyer spike)

    with ``α = round(4096 decay) / 4096`` (:func:`~spikeflow.neurons.lava_decay_keep`),
    ``θ = int(scale threshold) / scale``, ``ε = 0.01 / (64 scale)`` (Lava-DL's
    ``threshold_eps``), ``θ_l`` the learnable threshold ``learnable_thr`` (starts at
    θ, clamped in place to ``>= 1 / scale`` at each call, as Lava-DL's ``thr_clamp``) and
    ``E[t]`` the Hoyer extremum (:func:`hoyer_extremum`) of ``v / θ_l`` at step t: of
    the batch in training, whose running average ``running_hoyer_ext`` (one per step,
    ``E_run = m E + (1 - m) E_run``) is used in evaluation. As in Lava-DL the voltage
    resets where it reaches the fixed θ, whatever the Hoyer spike does.

    Behind a convolution (``num_features > 1``) the input ``[T, B, C, H, W]`` first
    goes through ``bn``, a ``BatchNorm2d(num_features)`` on time folded into the batch.
    ``hoyer_type='cw'`` takes the extremum per channel (``[T, B, C, H, W]`` input only).
    Each training or evaluation call stores ``hoyer_loss``,
    :func:`hoyer_regularizer` of the voltage (before the division by ``θ_l``), to be
    added to the loss. ``hoyer_mode=False`` is the plain CUBA neuron (spikes where
    ``v >= θ + ε``; no extremum, no batch norm).

    **Gradient** (Lava-DL's ``_li_dynamics_bwd``): the reset passes the gradient through
    unchanged, and a decay's gradient takes the voltage before the reset; the spike's
    derivative is ``surrogate_function`` at ``v / θ_l - E`` (``E`` is a constant), so
    ``learnable_thr`` gets the gradient of ``v / θ_l``.

    Mapping (Lava-DL ``HoyerNeuron(threshold, current_decay, voltage_decay,
    tau_grad=1, scale_grad=1, scale=1 << 6, norm=None, dropout=None, shared_param=True,
    persistent_state=False, requires_grad=False, graded_spike=False, num_features=1,
    hoyer_mode=True, T=1, hoyer_type='sum', momentum=0.9, delay=False)``): the same
    names. ``momentum`` is used (Lava-DL stores 0.9 whatever is passed: the default
    gives its behaviour). ``delay=True`` shifts the running extremum one step left
    before the average (the last step's entry starts from 0), as Lava-DL does.
    ``requires_grad=True`` makes ``learnable_thr`` and the two decays (fractions,
    rounded to 4096ths with a straight-through gradient) ``nn.Parameter``\\ s.
    ``shared_param=False`` takes per-channel decay tensors (broadcastable to one step).
    ``persistent_state=True`` carries ``i`` and ``v`` (after the reset at θ) between
    calls. Not taken: ``tau_grad``/``scale_grad`` (the surrogate replaces Lava-DL's
    exponential derivative), ``graded_spike``, ``norm``, ``dropout``, and the unused
    ``bias`` parameter Lava-DL creates behind a convolution.

    Args:
        threshold: θ, the reset threshold and the start of ``learnable_thr`` (> 0).
        current_decay: α_u in [0, 1].
        voltage_decay: α_v in [0, 1].
        scale: Lava-DL's weight scale (default ``1 << 6``).
        num_features: channels behind a convolution (> 1: batch norm, 5-D input);
            1 behind a dense layer (default).
        T: the number of time steps (the running extremum has one entry per step;
            every call must have ``T`` steps).
        hoyer_type: ``'sum'`` (one extremum per step, default) or ``'cw'``
            (per channel).
        hoyer_mode: Hoyer spiking (default True) or plain CUBA.
        momentum: weight of the batch's extremum in the running average (default 0.9).
        delay: shift the running extremum before the average (default False).
        shared_param: one decay for every neuron (default True).
        persistent_state: carry the state between calls (default False).
        requires_grad: learn the threshold and the decays (default False).
        surrogate_function: the spike derivative (default ``Sigmoid(alpha=4)``).
        step_mode: ``'m'`` (``[T, B, ...]``, default) or ``'s'`` (one step, ``T`` must be 1).
        store_v_seq: keep the voltage (before the reset) of the last call in ``v_seq``.

    Raises:
        ConfigurationError: a value outside its range, a tensor decay with
            ``shared_param=True``, an unknown ``hoyer_type``, or ``'cw'`` with
            ``num_features == 1``.
        ShapeError (at the call): a sequence of other than ``T`` steps, or an input
            that does not fit ``num_features``.
    """

    output_is_spikes: ClassVar[bool] = True
    _graph_attributes = ("v_seq", "hoyer_loss")
    #: Why it cannot run its sequence in parts (time chunks, truncated BPTT): a call
    #: must have the T steps it was built for, and ``hoyer_loss`` is over all of them.
    whole_sequence: ClassVar[str] = (
        "runs calls of exactly its T steps, its Hoyer loss over all of them"
    )

    def __init__(
        self,
        threshold: float,
        current_decay: float | Tensor,
        voltage_decay: float | Tensor,
        scale: int = 1 << 6,
        *,
        num_features: int = 1,
        T: int = 1,
        hoyer_type: str = "sum",
        hoyer_mode: bool = True,
        momentum: float = 0.9,
        delay: bool = False,
        shared_param: bool = True,
        persistent_state: bool = False,
        requires_grad: bool = False,
        surrogate_function: object = None,
        step_mode: StepMode = "m",
        store_v_seq: bool = False,
    ) -> None:
        super().__init__(step_mode)
        owner = type(self).__name__
        self.scale = check_int(f"{owner}: scale", scale, 1)
        theta = check_real(f"{owner}: threshold", threshold)
        self.threshold = int(theta * self.scale) / self.scale
        if not self.threshold > 0:
            raise ConfigurationError(
                f"{owner}: threshold must be > 0 on the grid int(scale θ)/scale, got "
                f"{threshold!r} (scale {self.scale})"
            )
        self.threshold_eps = 0.01 / (self.scale * 64)
        self.num_features = check_int(f"{owner}: num_features", num_features, 1)
        self.T = check_int(f"{owner}: T", T, 1)
        if hoyer_type not in ("sum", "cw"):
            raise ConfigurationError(
                f"{owner}: hoyer_type must be 'sum' or 'cw', got {hoyer_type!r}"
            )
        if hoyer_type == "cw" and self.num_features == 1:
            raise ConfigurationError(
                f"{owner}: hoyer_type='cw' takes the extremum per channel behind a "
                "convolution: give num_features > 1"
            )
        self.hoyer_type = hoyer_type
        self.hoyer_mode = check_flag(owner, "hoyer_mode", hoyer_mode)
        self.momentum = check_real(f"{owner}: momentum", momentum, 0.0, 1.0)
        self.delay = check_flag(owner, "delay", delay)
        self.shared_param = check_flag(owner, "shared_param", shared_param)
        self.persistent_state = check_flag(owner, "persistent_state", persistent_state)
        self.requires_grad = check_flag(owner, "requires_grad", requires_grad)
        self.store_v_seq = check_flag(owner, "store_v_seq", store_v_seq)
        self.surrogate_function = checked_surrogate(surrogate_function)
        decays = {"current_decay": current_decay, "voltage_decay": voltage_decay}
        store_decays(self, owner, decays, self.shared_param, self.requires_grad)
        self.learnable_thr = nn.Parameter(
            torch.tensor([self.threshold], dtype=torch.get_default_dtype()),
            requires_grad=self.requires_grad,
        )
        shape = (self.T, self.num_features) if hoyer_type == "cw" else (self.T,)
        self.register_buffer("running_hoyer_ext", torch.zeros(shape))
        self.bn = (
            nn.BatchNorm2d(self.num_features) if self.num_features > 1 and hoyer_mode else None
        )
        self.hoyer_loss: Tensor | None = None
        self.v_seq: Tensor | None = None
        if self.persistent_state:
            self.streaming = True

    def _keep(self, name: str) -> Tensor | float:
        value = getattr(self, name)
        if isinstance(value, nn.Parameter):
            value = torch.clamp(value, 0.0, 1.0)
        return lava_decay_keep(value)

    def _check_input(self, x: object) -> Tensor:
        owner = type(self).__name__
        if not isinstance(x, Tensor):
            raise DTypeError(f"{owner} expects a tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise DTypeError(f"{owner} expects a floating-point input, got dtype {x.dtype}")
        if self.step_mode == "m":
            check_sequence(x, owner)
        else:
            x = x.unsqueeze(0)
        if x.shape[0] != self.T:
            raise ShapeError(
                f"{owner}: the input has {x.shape[0]} time steps, but the neuron was built "
                f"with T={self.T} (its running Hoyer extremum has one entry per step)"
            )
        if self.num_features > 1 and (x.dim() != 5 or x.shape[2] != self.num_features):
            raise ShapeError(
                f"{owner}: num_features={self.num_features} takes [T, B, C, H, W] input "
                f"with C = {self.num_features}, got shape {tuple(x.shape)}"
            )
        return x

    def _voltage(self, x_seq: Tensor) -> Tensor:
        """The voltage ``[T, B, ...]`` before each step's reset (Lava-DL's
        ``dynamics``), carrying the state while streaming."""
        k_u, k_v = self._keep("current_decay"), self._keep("voltage_decay")
        k_v_const = k_v.detach() if isinstance(k_v, Tensor) else k_v
        state = self._carried_state(x_seq.shape[1:])
        if state is None:
            i = torch.zeros_like(x_seq[0])
            v_after = torch.zeros_like(x_seq[0])
            v_before = v_after
        else:
            i, v_after = state["i"], state["v"]
            v_before = v_after
        reset_at = self.threshold + self.threshold_eps
        voltages = []
        for x_t in x_seq.unbind(0):
            i = k_u * i + x_t
            # the decay's gradient takes the voltage before the reset (Lava-DL's backward)
            v = k_v_const * v_after + (k_v - k_v_const) * v_before + i
            fired = (v >= reset_at).to(v.dtype)
            v_after = v - (v * fired).detach()  # reset, gradient passed through
            v_before = v
            voltages.append(v)
        self._keep_state({"i": i, "v": v_after})
        return torch.stack(voltages)

    def forward(self, x: Tensor) -> Tensor:
        """The spikes: ``[T, B, ...]`` (multi-step) or ``[B, ...]`` (single-step)."""
        x_seq = self._check_input(x)
        for name in ("current_decay", "voltage_decay"):
            value = getattr(self, name)
            if isinstance(value, Tensor):
                try:
                    torch.broadcast_shapes(value.shape, x_seq.shape[1:])
                except RuntimeError:
                    raise ShapeError(
                        f"{type(self).__name__}: {name} of shape {tuple(value.shape)} does "
                        f"not broadcast to one step of shape {tuple(x_seq.shape[1:])}"
                    ) from None
        if not self.hoyer_mode:
            v = self._voltage(x_seq)
            spikes = self.surrogate_function(v - (self.threshold + self.threshold_eps))
            return self._result(v, spikes)
        if self.bn is not None:
            steps, batch = x_seq.shape[:2]
            x_seq = self.bn(x_seq.flatten(0, 1)).unflatten(0, (steps, batch))
        v = self._voltage(x_seq)
        self.hoyer_loss = hoyer_regularizer(v)
        # through .data, as Lava-DL's clamp: an in-place clamp of the parameter itself
        # would bump its version and break backward() through an earlier call's graph
        # (the node called twice, or stepped, before one backward)
        self.learnable_thr.data.clamp_(min=1.0 / self.scale)
        v_norm = v / self.learnable_thr
        channelwise = self.hoyer_type == "cw"
        if self.training:
            ext = hoyer_extremum(v_norm, channelwise)
            flat = ext.reshape(self.running_hoyer_ext.shape).to(self.running_hoyer_ext)
            with torch.no_grad():
                running = self.running_hoyer_ext
                if self.delay:
                    running = torch.cat((running[1:], torch.zeros_like(running[:1])))
                self.running_hoyer_ext.copy_(self.momentum * flat + (1.0 - self.momentum) * running)
        else:
            ext = self.running_hoyer_ext.to(v_norm)
            ext = ext.view(self.T, 1, self.num_features, 1, 1) if channelwise else ext
        if not channelwise:
            ext = ext.view((self.T,) + (1,) * (v_norm.dim() - 1))
        spikes = self.surrogate_function(v_norm - ext)
        return self._result(v, spikes)

    def _result(self, v: Tensor, spikes: Tensor) -> Tensor:
        self.v_seq = v if self.store_v_seq else None
        return spikes if self.step_mode == "m" else spikes[0]

    def extra_repr(self) -> str:
        def show(value: float | Tensor) -> str:
            if isinstance(value, nn.Parameter) and value.numel() == 1:
                return f"{float(value):g}"
            return f"{value:g}" if isinstance(value, float) else f"tensor{tuple(value.shape)}"

        return (
            f"threshold={self.threshold:g}, current_decay={show(self.current_decay)}, "
            f"voltage_decay={show(self.voltage_decay)}, scale={self.scale}, "
            f"num_features={self.num_features}, T={self.T}, hoyer_type={self.hoyer_type!r}, "
            f"hoyer_mode={self.hoyer_mode}, momentum={self.momentum:g}, delay={self.delay}, "
            f"requires_grad={self.requires_grad}"
        )
