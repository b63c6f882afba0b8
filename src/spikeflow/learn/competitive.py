"""Competitive neurons for unsupervised STDP: winner-take-all with adaptive thresholds.

:class:`WinnerTakeAll` is a layer of leaky integrate-and-fire neurons that compete:
at each step at most ``k`` neurons of a sample fire (those whose membrane exceeds its
threshold by the most) and every neuron of that sample is then reset (lateral
inhibition, as a strong inhibitory population would do). In training mode each
neuron's threshold rises by ``theta_plus`` at each of its spikes and decays back by
``theta_decay`` per step (homeostasis: a neuron that wins often becomes harder to win,
so that no few neurons take every input). Together with STDP
(:class:`~spikeflow.learn.STDPLearner`, ``pre_offset``) this is a simplified version of
the unsupervised network of Diehl and Cook (2015): a hard winner-take-all resetting
every neuron instead of their inhibitory population, current-based LIF neurons.

:class:`ConvWinnerTakeAll` is its convolutional form: feature maps that compete at each
position (and, optionally, across a neighbourhood of positions).

The layers are for local learning: no surrogate gradient (their output carries none).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from spikeflow._checks import check_flag, check_int, check_real
from spikeflow._processes import check_process_group, processes_to_sync
from spikeflow.base import MemoryModule
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError

__all__ = ["ConvWinnerTakeAll", "WinnerTakeAll"]


class WinnerTakeAll(MemoryModule):
    """LIF neurons with hard winner-take-all and adaptive thresholds.

    Args:
        num_neurons: the neurons ``N``.
        tau: membrane time constant (>= 1): ``v ← v + (x − v)/τ`` per step.
        v_threshold: the base threshold.
        k: at most this many neurons of a sample fire per step (the ``k`` above their
            threshold by the most).
        theta_plus: threshold increase per spike while training (0: fixed thresholds).
        theta_decay: factor (0-1] of the threshold increase kept per step while training.
        sync_processes: under ``torch.distributed`` (``process_group``, or the default
            group when initialised with more than one process), each training call
            all-reduces the threshold rises of the processes, so that every process
            holds the thresholds one process would after the whole global batch (within
            a call each process sees its own samples' spikes only). False: each process
            keeps its own ``theta`` (under DDP with ``broadcast_buffers=True`` rank 0's
            then overwrites the others' at each forward).
        process_group: the group to synchronise over (None: the default group).
        step_mode: ``'m'`` (a call is a sequence ``[T, B, N]``) or ``'s'`` (one step
            ``[B, N]``, which carries the membranes to the next call: streaming only).

    Input currents ``[T, B, N]``, output spikes ``[T, B, N]``. The membranes are state
    as a spikeflow neuron's (a :class:`~spikeflow.base.MemoryModule`): each call starts
    them at zero unless the network is streaming (:func:`spikeflow.functional.streaming`,
    where calls continue one sequence until :func:`~spikeflow.functional.reset_net`) or
    run with an explicit state (:func:`spikeflow.functional.run`, state ``{"v": ...}``).
    ``theta`` (a buffer, saved with the model) is the learned threshold increase of each
    neuron; it changes in training mode only, by the spikes of the whole batch (summed)
    and decays once per step, so the samples of a training batch share it (and the batch
    size sets how many samples one decay spans). ``theta`` is float32 or wider, also
    after ``.half()`` or ``.to(torch.bfloat16)`` of the model. Equal excesses are broken
    by ``torch.topk`` (in no guaranteed order).
    """

    #: The size argument's name in error messages.
    _size_name = "num_neurons"

    def __init__(
        self,
        num_neurons: int,
        tau: float = 8.0,
        v_threshold: float = 1.0,
        k: int = 1,
        theta_plus: float = 0.05,
        theta_decay: float = 0.9995,
        sync_processes: bool = True,
        process_group: dist.ProcessGroup | None = None,
        step_mode: str = "m",
    ) -> None:
        super().__init__(step_mode)
        # errors name the class and its size argument (ConvWinnerTakeAll: channels)
        cls, size = type(self).__name__, self._size_name
        self.num_neurons = check_int(f"{cls}: {size}", num_neurons, 1)
        self.tau = check_real(f"{cls}: tau", tau, 1.0)
        self.v_threshold = check_real(f"{cls}: v_threshold", v_threshold, 0.0, low_open=True)
        self.k = check_int(f"{cls}: k", k, 1)
        if self.k > self.num_neurons:
            raise ConfigurationError(f"{cls}: k ({k}) must not exceed {size} ({num_neurons})")
        self.theta_plus = check_real(f"{cls}: theta_plus", theta_plus, 0.0)
        self.theta_decay = check_real(f"{cls}: theta_decay", theta_decay, 0.0, 1.0,
                                      low_open=True)  # fmt: skip
        self.sync_processes = check_flag(cls, "sync_processes", sync_processes)
        self.process_group = check_process_group(cls, process_group)
        self.register_buffer("theta", torch.zeros(num_neurons))

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        """Currents ``[T, B, N]`` -> spikes ``[T, B, N]`` (one step ``[B, N]`` in
        single-step mode)."""
        x = self._checked(x)
        return self._run(x)

    def _checked(self, x: Tensor) -> Tensor:
        """``x`` as a detached sequence ``[T, B, N]``, or a ShapeError / DTypeError."""
        single = self.step_mode == "s"
        dims = 2 if single else 3
        if (
            not isinstance(x, Tensor)
            or x.dim() != dims
            or x.shape[-1] != self.num_neurons
            or (not single and x.shape[0] == 0)
        ):
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            expected = "one step [B, N]" if single else "currents [T, B, N]"
            raise ShapeError(
                f"WinnerTakeAll (step_mode {self.step_mode!r}): expects {expected} with N = "
                f"{self.num_neurons} and T >= 1, got {shape}"
            )
        if not x.is_floating_point():
            raise DTypeError(f"WinnerTakeAll: currents must be floating point, got {x.dtype}")
        return x.detach()[None] if single else x.detach()

    def _fire(self, v: Tensor, theta: Tensor) -> tuple[Tensor, Tensor]:
        """One step's competition: ``(spikes, membranes after the reset)``."""
        excess = v - (self.v_threshold + theta).to(v.dtype)
        top, index = excess.topk(self.k, dim=-1)
        spikes = torch.zeros_like(v).scatter_(-1, index, (top > 0).to(v.dtype))
        v = torch.where(spikes.any(dim=-1, keepdim=True), torch.zeros_like(v), v)
        return spikes, v

    def _run(self, x: Tensor) -> Tensor:
        """The steps of ``x [T, B, N, ...]`` from the carried (or zero) membranes; the
        last membranes are carried to the next call while streaming (or in
        ``functional.run``), as a spikeflow neuron's."""
        start_state = self._carried_state(x.shape[1:])
        v = torch.zeros_like(x[0]) if start_state is None else start_state["v"].to(x.dtype)
        out = torch.zeros_like(x)
        # thresholds in float32 or wider (a bfloat16 decay of 0.9995 would be 1)
        theta = start = self.theta.to(torch.promote_types(self.theta.dtype, torch.float32))
        per_map = [0, *range(2, x.dim() - 1)]  # a map's spikes: over batch and positions
        for t in range(x.shape[0]):
            v = v + (x[t] - v) / self.tau
            spikes, v = self._fire(v, theta)
            out[t] = spikes
            if self.training and self.theta_plus > 0:
                theta = theta * self.theta_decay + self.theta_plus * spikes.sum(
                    dim=per_map).to(theta.dtype)  # fmt: skip
        if self.training and self.theta_plus > 0:
            self.theta.copy_(self._synced(theta, start, x.shape[0]))
        self._keep_state({"v": v})
        return out[0] if self.step_mode == "s" else out

    def _synced(self, theta: Tensor, start: Tensor, steps: int) -> Tensor:
        """``theta`` after a call of ``steps`` steps from ``start``, with the rises of
        every process (see ``sync_processes``): the decayed start plus the sum of the
        processes' rises."""
        sync, group = processes_to_sync(self.sync_processes, self.process_group)
        if not sync:
            return theta
        decayed = start * self.theta_decay**steps
        rise = theta - decayed
        dist.all_reduce(rise, op=dist.ReduceOp.SUM, group=group)
        return decayed + rise

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickle (``torch.load`` of a whole model), also a module pickled before
        it became a :class:`~spikeflow.base.MemoryModule`: its dict has no carried
        state nor ``streaming`` flag, which then start empty and off."""
        super().__setstate__(state)
        self.__dict__.setdefault("streaming", False)
        self.__dict__.setdefault("_state", None)

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> WinnerTakeAll:
        """As :meth:`torch.nn.Module._apply` (``.to``, ``.half()``, ``.cuda()``, ...), but
        ``theta`` stays in float32 or wider: a conversion to a narrower dtype moves it
        to the new device and keeps its values (a float16 threshold could not take a
        rise of 0.05 on top of 10, nor a decay of 0.9995)."""
        theta = self.theta
        super()._apply(fn, recurse)
        dtype = torch.promote_types(self.theta.dtype, torch.float32)
        if self.theta.dtype != dtype:
            self.theta = theta.to(device=self.theta.device, dtype=dtype)
        return self

    def extra_repr(self) -> str:
        return (
            f"{self.num_neurons}, tau={self.tau:g}, v_threshold={self.v_threshold:g}, "
            f"k={self.k}, theta_plus={self.theta_plus:g}, theta_decay={self.theta_decay:g}"
        )


class ConvWinnerTakeAll(WinnerTakeAll):
    """Convolutional feature maps of LIF neurons that compete at each position.

    At each step and spatial position at most ``k`` feature maps fire, those whose
    membrane exceeds its threshold by the most, and then every map at that position is
    reset (lateral inhibition across maps, Kheradpisheh et al. 2018; Diehl-style
    convolutional STDP networks). With ``inhibition_radius = r > 0`` a position fires
    only if its best excess is the largest within its ``(2r+1) x (2r+1)`` neighbourhood
    (equal excesses: both fire), and a spike resets every map in that neighbourhood
    (Kheradpisheh et al.'s inhibition of the neighbouring positions of a winner, in
    all maps). In training mode a map's threshold rises by ``theta_plus`` at each spike
    of that map (summed over the batch and positions) and relaxes by ``theta_decay``
    per step, as :class:`WinnerTakeAll`'s (its ``theta`` is per map). No surrogate
    gradient: it is for local learning, e.g. after a ``Conv2d`` learned by
    :class:`~spikeflow.learn.STDPLearner`.

    Args:
        channels: the feature maps ``C``.
        tau, v_threshold, k, theta_plus, theta_decay, sync_processes, process_group:
            as :class:`WinnerTakeAll`'s (``k`` maps per position; ``theta_plus`` 0 by
            default: a map spikes at many positions).
        inhibition_radius: ``r`` above (0: competition within a position only).
        step_mode: as :class:`WinnerTakeAll`'s.

    Input currents ``[T, B, C, H, W]`` after a ``Conv2d``, or ``[T, B, C, L]`` after a
    ``Conv1d`` (its neighbourhood is then ``2r+1`` positions), output spikes of the same
    shape; one step ``[B, C, ...]`` in single-step mode. The membranes are carried from
    call to call while streaming, as :class:`WinnerTakeAll`'s.
    """

    _size_name = "channels"

    def __init__(
        self,
        channels: int,
        tau: float = 8.0,
        v_threshold: float = 1.0,
        k: int = 1,
        inhibition_radius: int = 0,
        theta_plus: float = 0.0,
        theta_decay: float = 0.9995,
        sync_processes: bool = True,
        process_group: dist.ProcessGroup | None = None,
        step_mode: str = "m",
    ) -> None:
        super().__init__(channels, tau, v_threshold, k, theta_plus, theta_decay,
                         sync_processes, process_group, step_mode)  # fmt: skip
        self.inhibition_radius = check_int(
            "ConvWinnerTakeAll: inhibition_radius", inhibition_radius, 0)  # fmt: skip

    def _neighbourhood_max(self, x: Tensor) -> Tensor:
        """The maximum of ``x [B, H, W]`` over each position's neighbourhood."""
        r = self.inhibition_radius
        return F.max_pool2d(x[:, None], 2 * r + 1, stride=1, padding=r)[:, 0]

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        """Currents ``[T, B, C, H, W]`` or ``[T, B, C, L]`` -> spikes of the same shape
        (one step ``[B, C, ...]`` in single-step mode)."""
        return self._run(self._checked(x))

    def _checked(self, x: Tensor) -> Tensor:
        """``x`` as a detached sequence ``[T, B, C, ...]``, or a ShapeError / DTypeError."""
        single = self.step_mode == "s"
        lead = 1 if single else 2  # the dims before the channels
        ok = isinstance(x, Tensor) and x.dim() in (lead + 2, lead + 3)
        if not ok or x.shape[lead] != self.num_neurons or 0 in x.shape[lead + 1:] or (
                not single and x.shape[0] == 0):  # fmt: skip
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            expected = "one step [B, C, H, W] or [B, C, L]" if single else (
                "currents [T, B, C, H, W] or [T, B, C, L]")  # fmt: skip
            raise ShapeError(
                f"ConvWinnerTakeAll (step_mode {self.step_mode!r}): expects {expected} with "
                f"C = {self.num_neurons} and T, H, W (L) >= 1, got {shape}"
            )
        if not x.is_floating_point():
            raise DTypeError(f"ConvWinnerTakeAll: currents must be floating point, got {x.dtype}")
        return x.detach()[None] if single else x.detach()

    def _neighbourhood_max(self, x: Tensor) -> Tensor:
        """The maximum of ``x [B, H, W]`` or ``[B, L]`` over each position's
        neighbourhood."""
        r = self.inhibition_radius
        pool = F.max_pool2d if x.dim() == 3 else F.max_pool1d
        return pool(x[:, None], 2 * r + 1, stride=1, padding=r)[:, 0]

    def _fire(self, v: Tensor, theta: Tensor) -> tuple[Tensor, Tensor]:
        """One step's competition across maps at each position: ``(spikes, membranes
        after the reset)``."""
        positions = [1] * (v.dim() - 2)
        excess = v - (self.v_threshold + theta).to(v.dtype).view(-1, *positions)
        top, index = excess.topk(self.k, dim=1)  # the k best maps of each position
        fire = top > 0
        if self.inhibition_radius:
            best = top[:, 0].masked_fill(~fire[:, 0], -torch.inf)
            fire = fire & (best >= self._neighbourhood_max(best))[:, None]
        spikes = torch.zeros_like(v).scatter_(1, index, fire.to(v.dtype))
        fired = fire[:, 0].to(v.dtype)  # a position fired iff its best map did
        if self.inhibition_radius:
            fired = self._neighbourhood_max(fired)
        return spikes, v * (1 - fired[:, None])

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, inhibition_radius={self.inhibition_radius}"
