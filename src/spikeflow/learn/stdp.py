"""Spike-timing-dependent plasticity (STDP) with exponential traces.

Each synapse keeps a presynaptic trace ``x`` and each neuron a postsynaptic trace
``y``, decaying by ``1 - 1/τ`` per step and raised by 1 at each spike (traces updated
before the weights, as SpikingJelly's learner):

    x[t] = x[t-1]·(1 - 1/τ_pre) + s_pre[t]        y[t] = y[t-1]·(1 - 1/τ_post) + s_post[t]
    Δw  = f_post(w)·Σ s_post[t]·x[t]  -  f_pre(w)·Σ y[t]·s_pre[t]

summed over time, batch and (for a convolution) output positions: a presynaptic spike
followed k steps later by a postsynaptic one strengthens the synapse by
``f_post(w)·(1 - 1/τ_pre)^k`` (potentiation), the reverse order weakens it by
``f_pre(w)·(1 - 1/τ_post)^k`` (depression), and both count at k = 0.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

from spikeflow._checks import check_real
from spikeflow.base import MemoryModule
from spikeflow.errors import ConfigurationError, ShapeError, StateError

__all__ = ["STDPLearner", "stdp_update"]

_STEP_DIMS = {nn.Linear: 2, nn.Conv1d: 3, nn.Conv2d: 4}


def _identity(weight: Tensor) -> Tensor:
    return weight


def _check_synapse(synapse: nn.Module) -> int:
    """The dims of one step of the synapse's input (``[B, in]``, ``[B, C, L]``, ...)."""
    dims = next((d for kind, d in _STEP_DIMS.items() if isinstance(synapse, kind)), None)
    if dims is None:
        raise ConfigurationError(
            f"STDP learns the weights of nn.Linear, nn.Conv1d and nn.Conv2d layers (and "
            f"spikeflow's sequence versions), got {type(synapse).__name__}"
        )
    if parametrize.is_parametrized(synapse, "weight"):
        raise ConfigurationError(
            f"STDP: the {type(synapse).__name__}'s weight is reparameterised (pruned?); "
            "STDP updates plain weights"
        )
    if isinstance(synapse, nn.Conv1d | nn.Conv2d) and synapse.groups != 1:
        raise ConfigurationError(f"STDP: convolutions with groups=1 only, got {synapse.groups}")
    return dims


def _traces(spikes: Tensor, decay: float, start: Tensor | None) -> Tensor:
    """``x[t] = x[t-1]·decay + s[t]`` for a sequence ``[T, ...]`` (``x[-1] = start``)."""
    out = torch.empty_like(spikes)
    trace = torch.zeros_like(spikes[0]) if start is None else start
    for t in range(spikes.shape[0]):
        trace = trace * decay + spikes[t]
        out[t] = trace
    return out


def _conv_columns(synapse: nn.Conv1d | nn.Conv2d, x: Tensor) -> Tensor:
    """``x`` ``[N, C, ...]`` as the convolution's input columns ``[N, C·k, L]``."""
    if isinstance(synapse, nn.Conv1d):
        x = x.unsqueeze(2)
        kernel, stride = (1, *synapse.kernel_size), (1, *synapse.stride)
        dilation = (1, *synapse.dilation)
    else:
        kernel, stride, dilation = synapse.kernel_size, synapse.stride, synapse.dilation
    padding = synapse._reversed_padding_repeated_twice
    if isinstance(synapse, nn.Conv1d):
        padding = [*padding, 0, 0]
    if any(padding):
        mode = "constant" if synapse.padding_mode == "zeros" else synapse.padding_mode
        x = F.pad(x, padding, mode=mode)
    return F.unfold(x, kernel, dilation=dilation, stride=stride)


@torch.no_grad()
def stdp_update(
    synapse: nn.Linear | nn.Conv1d | nn.Conv2d,
    pre: Tensor,
    post: Tensor,
    tau_pre: float,
    tau_post: float,
    f_pre: Callable[[Tensor], Tensor] = _identity,
    f_post: Callable[[Tensor], Tensor] = _identity,
    traces: tuple[Tensor | None, Tensor | None] = (None, None),
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """The STDP weight change of ``synapse`` for one sequence, and the final traces.

    Args:
        synapse: the layer whose weight learns.
        pre: its input spikes ``[T, B, ...]`` (one step of it is the layer's input).
        post: the spikes of the neurons it drives ``[T, B, ...]`` (one step of it is the
            layer's output shape).
        tau_pre, tau_post: trace time constants in steps (>= 1).
        f_pre, f_post: weight dependence of depression and potentiation (identity:
            additive STDP scaled by w; ``lambda w: 1`` gives plain additive STDP).
        traces: the traces at the step before ``pre[0]`` (``None``: zero).

    Returns:
        ``(Δw, (x, y))``: the change (the weight's shape; not applied) and the traces
        after the last step.
    """
    dims = _check_synapse(synapse)
    tau_pre = check_real("STDP: tau_pre", tau_pre, 1.0)
    tau_post = check_real("STDP: tau_post", tau_post, 1.0)
    if pre.dim() != dims + 1 or post.dim() != dims + 1 or pre.shape[0] != post.shape[0]:
        raise ShapeError(
            f"STDP on a {type(synapse).__name__}: pre and post spikes must be sequences "
            f"[T, B, ...] with {dims + 1} dims and the same T, got {tuple(pre.shape)} and "
            f"{tuple(post.shape)}"
        )
    pre = pre.to(synapse.weight.dtype)
    post = post.to(synapse.weight.dtype)
    x = _traces(pre, 1.0 - 1.0 / tau_pre, traces[0])
    y = _traces(post, 1.0 - 1.0 / tau_post, traces[1])
    weight = synapse.weight.detach()
    if isinstance(synapse, nn.Linear):
        n_in, n_out = weight.shape[1], weight.shape[0]
        potentiation = post.reshape(-1, n_out).T @ x.reshape(-1, n_in)
        depression = y.reshape(-1, n_out).T @ pre.reshape(-1, n_in)
    else:
        steps = pre.shape[0] * pre.shape[1]
        n_out = weight.shape[0]
        post_cols = post.reshape(steps, n_out, -1)
        trace_cols = y.reshape(steps, n_out, -1)
        x_cols = _conv_columns(synapse, x.reshape(steps, *x.shape[2:]))
        pre_cols = _conv_columns(synapse, pre.reshape(steps, *pre.shape[2:]))
        if x_cols.shape[-1] != post_cols.shape[-1]:
            raise ShapeError(
                f"STDP: the post spikes {tuple(post.shape)} are not the output of the "
                f"{type(synapse).__name__} for the pre spikes {tuple(pre.shape)}"
            )
        potentiation = torch.einsum("nol,nkl->ok", post_cols, x_cols).reshape(weight.shape)
        depression = torch.einsum("nol,nkl->ok", trace_cols, pre_cols).reshape(weight.shape)
    delta = f_post(weight) * potentiation - f_pre(weight) * depression
    return delta, (x[-1], y[-1])


class STDPLearner:
    """Learns one synapse layer by STDP from the spikes of a running network.

    Hooks record the layer's input spikes and the output spikes of ``neuron`` (the
    neurons the layer drives) at each forward; :meth:`step` turns what was recorded into
    the weight change and (by default) subtracts it from ``weight.grad``, so that an
    optimizer (``torch.optim.SGD(lr=η)``) applies ``w += η·Δw``; it never changes the
    weight itself.

    The traces follow the neurons' state: a call from which spikeflow neurons start
    fresh (a multi-step ``[T, B, ...]`` call, or the first call while streaming after a
    reset) starts them at zero; streamed calls (single steps ``[B, ...]``, chunks of a
    sequence) continue them. Single steps of other neurons continue until
    :meth:`reset`.

    Args:
        synapse: an ``nn.Linear``, ``nn.Conv1d`` or ``nn.Conv2d`` (groups=1; any
            stride, padding, dilation), or spikeflow's sequence version of one.
        neuron: the module whose output spikes are the synapse's postsynaptic spikes.
        tau_pre, tau_post: trace time constants in steps (>= 1).
        f_pre, f_post: weight dependence of depression and potentiation (see
            :func:`stdp_update`).

    Raises:
        ConfigurationError: another layer type, grouped convolution, a pruned weight or
            a time constant below 1.
    """

    def __init__(
        self,
        synapse: nn.Module,
        neuron: nn.Module,
        tau_pre: float,
        tau_post: float,
        f_pre: Callable[[Tensor], Tensor] = _identity,
        f_post: Callable[[Tensor], Tensor] = _identity,
    ) -> None:
        self._dims = _check_synapse(synapse)
        self.tau_pre = check_real("STDP: tau_pre", tau_pre, 1.0)
        self.tau_post = check_real("STDP: tau_post", tau_post, 1.0)
        self.synapse, self.neuron = synapse, neuron
        self.f_pre, self.f_post = f_pre, f_post
        self._pre: list[Tensor] = []
        #: (post spikes, whether that call started a new sequence)
        self._post: list[tuple[Tensor, bool]] = []
        self._fresh = True
        self._traces: tuple[Tensor | None, Tensor | None] = (None, None)
        self._handles = [
            synapse.register_forward_pre_hook(self._record_pre),
            neuron.register_forward_pre_hook(self._before_neuron),
            neuron.register_forward_hook(self._record_post),
        ]

    def _record_pre(self, module: nn.Module, args: tuple) -> None:
        self._pre.append(args[0].detach())

    def _before_neuron(self, module: nn.Module, args: tuple) -> None:
        # A call starts a new sequence when the neurons start from their initial state:
        # not streaming, or streaming right after a reset. Single steps of neurons that
        # are not spikeflow's continue until reset().
        memory = [m for m in module.modules() if isinstance(m, MemoryModule)]
        single = args[0].dim() == self._dims if isinstance(args[0], Tensor) else False
        if memory:
            self._fresh = any(not m.streaming or m.state is None for m in memory)
        else:
            self._fresh = not single

    def _record_post(self, module: nn.Module, args: tuple, output: Tensor) -> None:
        self._post.append((output.detach(), self._fresh))

    def _as_sequence(self, record: Tensor) -> Tensor:
        return record.unsqueeze(0) if record.dim() == self._dims else record

    @torch.no_grad()
    def step(self, on_grad: bool = True, scale: float = 1.0) -> Tensor | None:
        """Turn the recorded spikes into the weight change ``scale·Δw`` and forget them.

        ``on_grad``: subtract it from ``synapse.weight.grad`` (created if missing) and
        return None; else return it. With nothing recorded: None, and nothing changes.

        Raises:
            StateError: the layer and the neuron did not run the same number of times.
            ShapeError: recorded spikes that do not fit the layer.
        """
        if self.closed:
            raise StateError("STDPLearner: closed (create a new learner to learn again)")
        if len(self._pre) != len(self._post):
            raise StateError(
                f"STDPLearner: the synapse ran {len(self._pre)} times and the neuron "
                f"{len(self._post)} times since the last step(); they must run together"
            )
        if not self._pre:
            return None
        delta = torch.zeros_like(self.synapse.weight)
        for pre, (post, fresh) in zip(self._pre, self._post, strict=True):
            change, self._traces = stdp_update(
                self.synapse, self._as_sequence(pre), self._as_sequence(post), self.tau_pre,
                self.tau_post, self.f_pre, self.f_post, (None, None) if fresh else self._traces,
            )  # fmt: skip
            delta += change
        self._pre.clear()
        self._post.clear()
        if scale != 1.0:
            delta *= scale
        if not on_grad:
            return delta
        weight = self.synapse.weight
        weight.grad = -delta if weight.grad is None else weight.grad - delta
        return None

    def reset(self) -> None:
        """Forget the recorded spikes and the carried traces (the weight is kept)."""
        self._pre.clear()
        self._post.clear()
        self._traces = (None, None)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` removed the hooks."""
        return not self._handles

    def close(self) -> None:
        """Remove the hooks and forget everything recorded."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.reset()

    def __repr__(self) -> str:
        return (f"STDPLearner({type(self.synapse).__name__}, tau_pre={self.tau_pre:g}, "
                f"tau_post={self.tau_post:g})")  # fmt: skip
