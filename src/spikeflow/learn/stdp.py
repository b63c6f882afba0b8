"""The STDP learner: records a running network through hooks and learns one layer."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from spikeflow._checks import check_flag, check_real
from spikeflow._processes import check_process_group, processes_to_sync
from spikeflow.base import MemoryModule, StepModule
from spikeflow.errors import ConfigurationError, ShapeError, StateError
from spikeflow.layers._time import current_fold
from spikeflow.learn.eligibility import eligibility_stdp_update
from spikeflow.learn.stdp_rule import _identity, check_synapse, stdp_update
from spikeflow.memory.recompute import reruns_forward

__all__ = ["STDPLearner"]


class _Hook:
    """A forward hook calling one method of a learner it does not keep alive.

    A deep copy or a pickle of the model gets an inert hook: the copy does not record
    into (a copy of) the learner.
    """

    def __init__(self, learner: STDPLearner | None, method: str) -> None:
        self._learner = None if learner is None else weakref.ref(learner)
        self._method = method

    def __call__(self, *args: Any) -> None:
        learner = None if self._learner is None else self._learner()
        if learner is not None:
            getattr(learner, self._method)(*args)

    def __deepcopy__(self, memo: dict[int, Any]) -> _Hook:
        return _Hook(None, self._method)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_Hook, (None, self._method))


def _unfolded(x: Tensor, fold: tuple[int, int] | None) -> tuple[Tensor, bool]:
    """``x`` as ``[T, B, ...]`` when it is the ``[T*B, ...]`` of a running fold."""
    if fold is None or x.dim() == 0 or x.shape[0] != fold[0] * fold[1]:
        return x, False
    return x.unflatten(0, fold), True


def _averaged(
    delta: Tensor, recorded: bool, group: dist.ProcessGroup | None
) -> tuple[Tensor, bool]:
    """The processes' mean of ``delta`` (float32 or wider), and whether any recorded."""
    dtype = torch.promote_types(delta.dtype, torch.float32)
    packed = torch.cat([delta.reshape(-1).to(dtype),
                        delta.new_full((1,), float(recorded), dtype=dtype)])  # fmt: skip
    dist.all_reduce(packed, group=group)  # one collective for both
    mean = packed[:-1] / dist.get_world_size(group)
    return mean.reshape(delta.shape).to(delta.dtype), bool(packed[-1] > 0)


class STDPLearner:
    """Learns one synapse layer by STDP from the spikes of a running network.

    Hooks record the layer's input spikes and the output spikes of ``neuron`` (the
    neurons the layer drives) at each forward; :meth:`step` turns what was recorded into
    the weight change (:func:`~spikeflow.learn.stdp_update`) and by default subtracts
    it from ``weight.grad``, so that an optimizer (``torch.optim.SGD(lr=η)``) applies
    ``w += η·Δw``; it never changes the weight itself.

    The traces follow the neurons' state: a call from which spikeflow neurons start
    fresh (a multi-step ``[T, B, ...]`` call, or the first call while streaming after a
    reset) starts them at zero; streamed calls (single steps ``[B, ...]``, chunks of a
    sequence) continue them. For other neurons a call is one step when its input has a
    step's dims (``[B, in]``, ``[B, C, L]``, ``[B, C, H, W]``) and continues the traces
    until :meth:`reset`; otherwise it is a fresh sequence. A plain layer that runs
    with time folded into the batch by spikeflow (``SeqToANNContainer``,
    ``seq_to_ann_forward``; eager mode) is recorded as ``[T, B, ...]``; folded by other
    code, :meth:`step` raises a ShapeError saying so.

    Setting :attr:`recording` to False pauses the recording; if the network ran while
    paused, the first call recorded after it starts fresh traces (the steps in between
    were not seen, so spikes before and after the pause are not paired).

    Recomputed forwards are not recorded (the forward call was): spikeflow's
    :class:`~spikeflow.memory.Recomputed` and ``torch.utils.checkpoint``'s, and any
    forward run inside a backward pass. Under ``torch.distributed`` with several
    processes, :meth:`step` averages the update over the processes (as DDP averages
    gradients): each must call it as often as the others. ``nn.DataParallel`` is
    refused (its replicas run the hooks in several threads).

    Records are the tensors the network passed (detached, not copied): do not refill
    an input buffer in place before :meth:`step`. Attach the learner before
    ``torch.compile`` runs the model (compiled code ignores hooks added later). The
    learner holds the hooks' only reference to itself: keep it.

    Args:
        synapse: an ``nn.Linear``, ``nn.Conv1d`` or ``nn.Conv2d`` (any stride,
            padding, dilation and groups, depthwise included), or spikeflow's sequence
            version of one.
        neuron: the module whose output spikes (a tensor) are the synapse's
            postsynaptic spikes.
        tau_pre, tau_post: trace time constants in steps (>= 1).
        f_pre, f_post: weight dependence of depression and potentiation (see
            :func:`~spikeflow.learn.stdp_update`).
        tau_eligibility: MSTDP-ET: each sample keeps an eligibility trace with this time
            constant (>= 1), carried from call to call like the spike traces (a fresh
            sequence starts it at zero), and :meth:`step` needs the rewards; ``None``:
            STDP, or MSTDP when :meth:`step` gets a reward.
        pre_offset: ``x_tar`` subtracted from the presynaptic trace in potentiation
            (see :func:`~spikeflow.learn.stdp_update`; plain STDP and MSTDP only).
        average_processes: under ``torch.distributed`` (``process_group``, or the
            default group when initialised with more than one process), :meth:`step`
            all-reduces the update and divides it by the number of processes, so that
            the copies of a DistributedDataParallel model keep the same weights. False:
            each process keeps its own update (the processes learn different models).
        process_group: the group to average over (None: the default group).

    Raises:
        ConfigurationError: another layer type, a pruned weight, a
            ``neuron`` that is no module, a time constant below 1, or a
            ``process_group`` that is not one.
    """

    #: The carried traces before any step (one None per trace of the rule).
    _no_traces: tuple[None, ...] = (None, None)

    def __init__(
        self,
        synapse: nn.Module,
        neuron: nn.Module,
        tau_pre: float,
        tau_post: float,
        f_pre: Callable[[Tensor], Tensor] = _identity,
        f_post: Callable[[Tensor], Tensor] = _identity,
        tau_eligibility: float | None = None,
        pre_offset: float = 0.0,
        average_processes: bool = True,
        process_group: dist.ProcessGroup | None = None,
    ) -> None:
        self._dims = check_synapse(synapse)
        if not isinstance(neuron, nn.Module):
            raise ConfigurationError(
                f"STDPLearner: neuron must be a torch.nn.Module, got {type(neuron).__name__}"
            )
        for name, f in (("f_pre", f_pre), ("f_post", f_post)):
            if not callable(f):
                raise ConfigurationError(f"STDPLearner: {name} must be callable, got {f!r}")
        self.tau_pre = check_real("STDP: tau_pre", tau_pre, 1.0)
        self.tau_post = check_real("STDP: tau_post", tau_post, 1.0)
        self.tau_eligibility = None if tau_eligibility is None else check_real(
            "STDP: tau_eligibility", tau_eligibility, 1.0)  # fmt: skip
        self._eligibility: Tensor | None = None
        self.pre_offset = check_real("STDP: pre_offset", pre_offset)
        if self.pre_offset and self.tau_eligibility is not None:
            raise ConfigurationError(
                "STDPLearner: pre_offset is for STDP and MSTDP; it does not combine with "
                "tau_eligibility (MSTDP-ET)"
            )
        self.average_processes = check_flag("STDPLearner", "average_processes",
                                            average_processes)  # fmt: skip
        self.process_group = check_process_group("STDPLearner", process_group)
        self.synapse, self.neuron = synapse, neuron
        self.f_pre, self.f_post = f_pre, f_post
        #: Whether forwards are recorded (False pauses it, e.g. for evaluation; a call
        #: run while paused makes the next recorded one start fresh traces).
        self.recording = True
        self._missed = False  # the network ran while paused
        self._pre: list[Tensor] = []
        #: (post spikes, is one step, starts a new sequence)
        self._post: list[tuple[Tensor, bool, bool]] = []
        self._call: tuple[bool, bool, tuple[int, int] | None] = (False, True, None)
        self._traces: tuple[Tensor | None, ...] = self._no_traces
        self._handles = [
            synapse.register_forward_pre_hook(_Hook(self, "_record_pre")),
            neuron.register_forward_pre_hook(_Hook(self, "_before_neuron")),
            neuron.register_forward_hook(_Hook(self, "_record_post")),
        ]

    # -- recording ----------------------------------------------------------------------

    def _skipped(self, module: nn.Module, own: nn.Module) -> bool:
        """Whether a hook call records nothing: recomputed, or paused (noted)."""
        if reruns_forward():
            return True
        if not self.recording:
            self._missed = True
            return True
        if module is not own:
            role = "synapse" if own is self.synapse else "neuron"
            raise ConfigurationError(
                f"STDPLearner: a copy of the {role} ({type(own).__name__}) ran, not the "
                "module the learner watches: nn.DataParallel's replicas are such copies, "
                "and their hooks run in several threads, which mixes the records. Run one "
                "process per device (DistributedDataParallel: step() averages the "
                "updates) or one device; reset() drops the records"
            )
        return False

    def _record_pre(self, module: nn.Module, args: tuple) -> None:
        if not self._skipped(module, self.synapse):
            self._pre.append(_unfolded(args[0].detach(), current_fold())[0])

    def _before_neuron(self, module: nn.Module, args: tuple) -> None:
        if self._skipped(module, self.neuron):
            return
        x = args[0] if args else None
        fold = current_fold()
        if isinstance(x, Tensor) and _unfolded(x, fold)[1]:
            # a stateless neuron inside a fold (SeqToANNContainer): a whole sequence
            single, fresh = False, True
        else:
            fold = None
            memory = [m for m in module.modules() if isinstance(m, MemoryModule)]
            modes = {m.step_mode for m in module.modules() if isinstance(m, StepModule)}
            if len(modes) == 1:  # spikeflow modules say whether this call is one step
                single = modes == {"s"}
            else:
                single = isinstance(x, Tensor) and x.dim() == self._dims
            if memory:
                # Fresh when the neurons start from their initial state: not carrying
                # state (neither streaming nor in functional.run), or carrying none yet
                # (right after a reset, the first call of a run without a state).
                fresh = any(not m._carrying for m in memory) or not any(
                    m.continues_sequence() for m in memory)  # fmt: skip
            else:
                fresh = not single
        # after a pause in which the network ran, the carried traces are stale
        self._call = (single, fresh or self._missed, fold)
        self._missed = False

    def _record_post(self, module: nn.Module, args: tuple, output: Any) -> None:
        if self._skipped(module, self.neuron):
            return
        if not isinstance(output, Tensor):
            raise ConfigurationError(
                f"STDPLearner: the neuron module {type(module).__name__} returned "
                f"{type(output).__name__}, not a tensor of spikes; pass the module whose "
                "output is the spikes"
            )
        single, fresh, fold = self._call
        self._post.append((_unfolded(output.detach(), fold)[0], single, fresh))

    # -- learning -----------------------------------------------------------------------

    @torch.no_grad()
    def step(
        self, on_grad: bool = True, scale: float = 1.0, reward: Tensor | float | None = None
    ) -> Tensor | None:
        """Turn the recorded spikes into the weight change ``scale·Δw`` and forget them.

        ``on_grad``: subtract it from ``synapse.weight.grad`` (created if missing) and
        return None; else return it. With nothing recorded: None, and nothing changes.
        If it raises, the records and traces are kept as they were.

        Under ``torch.distributed`` (see ``average_processes``) the update is the mean
        of the processes' updates, each from its own records: a collective call that
        every process of the group must make, also one that recorded nothing (None
        comes back where no process recorded anything). An error raised in one process
        before the collective leaves the others waiting in it, as an error before a
        DDP backward does.

        ``reward`` makes it reward-modulated STDP (MSTDP): each recorded step's pair
        terms are weighted by its reward, a scalar, ``[B]`` or ``[1, B]`` (one per
        sample; a 1-d reward is per sample even when its length is also ``S``), or
        ``[S, 1]`` / ``[S, B]`` with ``S`` the steps recorded since the last
        :meth:`step` (a streamed single step counts one, a ``[T, B, ...]`` call ``T``).
        The reward weighs the step it is given for (call ``step(reward=r)`` after the
        forward that earned it).

        Raises:
            StateError: closed, or the layer and the neuron did not run the same
                number of times (call :meth:`reset` to drop the records).
            ShapeError: recorded spikes that do not fit the layer, or whose time was
                folded into the batch where the learner does not see it.
        """
        on_grad = check_flag("STDPLearner.step", "on_grad", on_grad)
        scale = check_real("STDPLearner.step: scale", scale)
        if self.closed:
            raise StateError("STDPLearner: closed (create a new learner to learn again)")
        if len(self._pre) != len(self._post):
            raise StateError(
                f"STDPLearner: the synapse ran {len(self._pre)} times and the neuron "
                f"{len(self._post)} times since the last step(); each synapse call must "
                "drive one neuron call (reset() drops the records)"
            )
        averaging, group = self._averaging()
        if not self._pre and not averaging:
            return None
        if self._pre and self.tau_eligibility is not None and reward is None:
            raise ConfigurationError(
                "STDPLearner.step: a learner with tau_eligibility (MSTDP-ET) needs the "
                "rewards of the recorded steps (reward=...)"
            )
        self._check_unseen_folds()
        delta = torch.zeros_like(self.synapse.weight)
        traces, eligibility = self._traces, self._eligibility
        rewards = self._rewards_per_record(reward)
        for (pre, (post, single, fresh)), r in zip(
            zip(self._pre, self._post, strict=True), rewards, strict=True
        ):
            if single:
                pre, post = pre.unsqueeze(0), post.unsqueeze(0)
            if fresh:
                traces, eligibility = self._no_traces, None
            change, traces, eligibility = self._rule(pre, post, r, traces, eligibility)
            delta += change
        recorded = bool(self._pre)
        if averaging:  # every process comes here, also one that recorded nothing
            delta, recorded = _averaged(delta, recorded, group)
        self._traces, self._eligibility = traces, eligibility
        self._pre.clear()
        self._post.clear()
        if not recorded:
            return None
        if scale != 1.0:
            delta *= scale
        if not on_grad:
            return delta
        weight = self.synapse.weight
        weight.grad = -delta if weight.grad is None else weight.grad - delta
        return None

    def _rule(
        self,
        pre: Tensor,
        post: Tensor,
        reward: Any,
        traces: tuple[Tensor | None, ...],
        eligibility: Tensor | None,
    ) -> tuple[Tensor, tuple[Tensor | None, ...], Tensor | None]:
        """One record's ``Δw``, its final traces and eligibility (a subclass's rule
        replaces this: :class:`~spikeflow.learn.TripletSTDPLearner`)."""
        if self.tau_eligibility is None:
            change, traces = stdp_update(
                self.synapse, pre, post, self.tau_pre, self.tau_post, self.f_pre,
                self.f_post, traces, reward=reward, pre_offset=self.pre_offset,
            )  # fmt: skip
            return change, traces, eligibility
        return eligibility_stdp_update(
            self.synapse, pre, post, reward, self.tau_pre, self.tau_post,
            self.tau_eligibility, self.f_pre, self.f_post, traces, eligibility,
        )  # fmt: skip

    def _averaging(self) -> tuple[bool, dist.ProcessGroup | None]:
        """Whether :meth:`step` averages over processes, and the group (None: default)."""
        return processes_to_sync(self.average_processes, self.process_group)

    def _check_unseen_folds(self) -> None:
        """A ShapeError for records whose time was folded into the batch by code the
        learner does not see (the rule would only say that the shapes do not fit)."""
        for pre, (post, _, _) in zip(self._pre, self._post, strict=True):
            for folded, other in ((pre, post), (post, pre)):
                if not (folded.dim() + 1 == other.dim() >= 3
                        and folded.shape[0] == other.shape[0] * other.shape[1]):  # fmt: skip
                    continue
                which = "synapse's input" if folded is pre else "neuron's output"
                raise ShapeError(
                    f"STDPLearner: the {which} has shape {tuple(folded.shape)} where the "
                    f"other side is a sequence {tuple(other.shape)}: time is folded into "
                    f"the batch ([T*B, ...], {other.shape[0]}*{other.shape[1]} = "
                    f"{folded.shape[0]}) by code the learner does not see (a reshape of "
                    "your own, or torch.compile, in which spikeflow's folds are not seen), "
                    "so it cannot pair the steps. Run the synapse as spikeflow's sequence "
                    "layer (layers.Linear, layers.Conv2d, ...) or, in eager mode, inside "
                    "SeqToANNContainer / seq_to_ann_forward, whose folds it undoes; "
                    "reset() drops these records"
                )

    def _rewards_per_record(self, reward: Tensor | float | None) -> list[Any]:
        """``reward`` split over the records: per-step rows for ``[S, ...]`` rewards."""
        if reward is None:
            return [None] * len(self._pre)
        value = torch.as_tensor(reward)
        if value.dim() < 2 or (value.dim() == 2 and value.shape[0] == 1):
            return [value] * len(self._pre)  # one reward for every step (per sample or not)
        lengths = [1 if single else int(pre.shape[0])
                   for pre, (_, single, _) in zip(self._pre, self._post, strict=True)]  # fmt: skip
        if value.dim() != 2 or value.shape[0] != sum(lengths):
            raise ShapeError(
                f"STDPLearner.step: reward of shape {tuple(value.shape)}; per-step rewards "
                f"must be [S, 1] or [S, B] with S = {sum(lengths)}, the steps recorded"
            )
        return list(torch.split(value, lengths))

    def reset(self) -> None:
        """Forget the recorded spikes and the carried (spike and eligibility) traces
        (the weight is kept)."""
        self._pre.clear()
        self._post.clear()
        self._traces = self._no_traces
        self._eligibility = None
        self._missed = False

    @property
    def trace_pre(self) -> Tensor | None:
        """The presynaptic trace ``x`` after the last step that :meth:`step` learned
        from (SpikingJelly's ``trace_pre``): ``[B, *input step]`` (for a convolution the
        unpadded input, SpikingJelly's is padded); None before the first
        :meth:`step` and after :meth:`reset`. Read-only: the next streamed call
        continues from it."""
        return self._traces[0]

    @property
    def trace_post(self) -> Tensor | None:
        """The postsynaptic trace ``y`` after the last step that :meth:`step` learned
        from (SpikingJelly's ``trace_post``): ``[B, *output step]``; None before the
        first :meth:`step` and after :meth:`reset`."""
        return self._traces[1]

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
