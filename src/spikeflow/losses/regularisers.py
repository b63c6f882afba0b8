"""Activity regularisers: terms on spikes to add to a training loss.

- :func:`l1_rate_sparsity`: ``strength`` times the number of spikes (snnTorch's
  ``l1_rate_sparsity``), which lowers the firing of every neuron alike;
- :func:`l2_spike_population`: ``strength`` times the sum of squared spike counts of
  each sample's neurons, which lowers the busiest neurons most;
- :func:`im_loss`: IM-Loss (Guo et al., NeurIPS 2022), the squared distance of each
  layer's mean firing from a target, averaged over the layers (it raises firing in
  silent layers and lowers it in saturated ones, towards the most informative rate);
- :func:`event_rate`: Lava-DL's event-rate loss of its PilotNet SDNN tutorial, the
  squared excess of each layer's mean event magnitude over ``max_rate``, summed over
  the layers (graded sigma-delta events too: ``LayerSpikes(net, deltas=True)``).

Each takes one spike tensor ``[T, B, ...]`` or several (a list, or the ``.values()`` of
:attr:`LayerSpikes.spikes`, one per layer) and sums the term over them. ``reduction``
is ``"sum"`` over the batch (snnTorch's convention: the term grows with the batch size)
or ``"mean"`` (divided by ``B``, the scale of spikeflow's batch-mean losses)::

    with LayerSpikes(net) as recorded:
        for x, y in loader:
            out = net(x)
            loss = get_loss("ce")(out, y) + l1_rate_sparsity(
                recorded.spikes.values(), strength=1e-4, reduction="mean"
            )
            loss.backward()
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from spikeflow._checks import check_flag, check_real
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError

__all__ = [
    "REDUCTIONS",
    "LayerSpikes",
    "event_rate",
    "im_loss",
    "l1_rate_sparsity",
    "l2_spike_population",
]

#: ``sum``: over the batch; ``mean``: over the batch, divided by its size.
REDUCTIONS = ("sum", "mean")


def _spike_tensors(spikes: Tensor | Iterable[Tensor], owner: str) -> list[Tensor]:
    """``spikes`` as a non-empty list of floating ``[T, B, ...]`` tensors."""
    tensors = [spikes] if isinstance(spikes, Tensor) else list(spikes)
    if not tensors:
        raise ShapeError(f"{owner}: spikes is empty (no tensor given)")
    for i, s in enumerate(tensors):
        name = "spikes" if isinstance(spikes, Tensor) else f"spikes[{i}]"
        if not isinstance(s, Tensor):
            raise DTypeError(f"{owner}: {name} must be a tensor, got {type(s).__name__}")
        if s.dim() < 2:
            raise ShapeError(f"{owner}: {name} must be [T, B, ...], got {tuple(s.shape)}")
        if not s.is_floating_point():
            raise DTypeError(f"{owner}: {name} must be floating point, got {s.dtype}")
        if s.shape[1] == 0:
            raise ShapeError(f"{owner}: {name} has an empty batch (shape {tuple(s.shape)})")
    return tensors


def _reduce(per_sample: Tensor, reduction: str) -> Tensor:
    """A ``[B]`` vector summed, or averaged for ``"mean"``."""
    return per_sample.mean() if reduction == "mean" else per_sample.sum()


def _arguments(owner: str, strength: object, reduction: object) -> tuple[float, str]:
    if reduction not in REDUCTIONS:
        raise ConfigurationError(
            f"{owner}: reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}"
        )
    return check_real(f"{owner}: strength", strength, 0.0), str(reduction)


def _events(spikes: Tensor) -> Tensor:
    """The number of events in each element: ``|s|``, with the gradient of ``s`` where
    ``s >= 0`` (so 0/1 spikes, silent ones included, keep snnTorch's gradient of 1) and
    of ``-s`` for the negative spikes of signed (ternary) neurons."""
    return torch.where(spikes < 0, -spikes, spikes)


def l1_rate_sparsity(
    spikes: Tensor | Iterable[Tensor], strength: float = 1e-5, reduction: str = "sum"
) -> Tensor:
    """``strength * sum_b sum_{t,i} |s[t,b,i]|``: the spike count, over all the tensors.

    snnTorch's ``l1_rate_sparsity(Lambda=strength)(spikes)`` with ``reduction="sum"``
    (the default); ``"mean"`` divides each tensor's term by its batch size ``B`` (its
    second dim). This is the L1 norm of the spike trains: a negative spike (ternary
    neurons) counts as one event, as a positive one.

    Args:
        spikes: a spike tensor ``[T, B, ...]`` or an iterable of them (of any sizes).
        strength: the weight ``>= 0`` (snnTorch's ``Lambda``).
        reduction: ``"sum"`` or ``"mean"`` over the batch.
    """
    tensors = _spike_tensors(spikes, "l1_rate_sparsity")
    strength, reduction = _arguments("l1_rate_sparsity", strength, reduction)
    total = sum(_reduce(_events(s).transpose(0, 1).reshape(s.shape[1], -1).sum(1), reduction)
                for s in tensors)  # fmt: skip
    return strength * total


def l2_spike_population(
    spikes: Tensor | Iterable[Tensor], strength: float = 1e-6, reduction: str = "sum"
) -> Tensor:
    """``strength * sum_b sum_i n[b,i]^2`` with ``n[b,i] = sum_t s[t,b,i]``.

    The squared L2 norm of each sample's vector of per-neuron spike counts (the
    population's activity; a negative spike counts as one event), summed over the batch
    (``"mean"``: averaged). A neuron
    firing ``n`` spikes costs ``n^2``, so spreading the same spikes over more neurons
    costs less. snnTorch 1.0 has no such term; SpyTorch's per-neuron L2 regulariser
    squares the count summed over the batch (coupling the samples, growing with
    ``B^2``), which this one does not.

    Args:
        spikes: a spike tensor ``[T, B, ...]`` or an iterable of them.
        strength: the weight ``>= 0``.
        reduction: ``"sum"`` or ``"mean"`` over the batch.
    """
    tensors = _spike_tensors(spikes, "l2_spike_population")
    strength, reduction = _arguments("l2_spike_population", strength, reduction)
    total = sum(_reduce(_events(s).sum(0).reshape(s.shape[1], -1).pow(2).sum(1), reduction)
                for s in tensors)  # fmt: skip
    return strength * total


def im_loss(
    spikes: Tensor | Iterable[Tensor], strength: float = 0.005, target_rate: float | None = None
) -> Tensor:
    """IM-Loss (Guo et al., NeurIPS 2022): ``strength * 1/L sum_l (mean(s_l) - r)^2``.

    ``mean(s_l)`` is the mean of layer ``l``'s whole spike tensor ``[T, B, ...]`` (over
    steps, samples and neurons: its firing rate per step) and ``L`` the number of
    tensors. The paper's argument: a binary spike carries the most information
    (entropy) when it fires with probability 1/2. The official code
    (yfguo91/IM-Loss-Information-Maximization-Loss-for-Spiking-Neural-Networks@c12bca3,
    ``models/distrloss_layer.py``) takes ``r = 0.5 / T`` (``T`` the steps of the
    tensor; its comment names ``r = 0.5`` as the alternative), averages over the
    spiking layers but the first and the last (pick them with
    ``LayerSpikes(net, layers=...)``) and adds ``0.005`` times the term to the
    cross-entropy: the defaults here (``target_rate=None`` for ``0.5 / T``).

    Args:
        spikes: a spike tensor ``[T, B, ...]`` or an iterable of them (one per layer).
        strength: the weight ``>= 0`` (the official code's 0.005).
        target_rate: the firing rate per step ``r`` in ``[0, 1]``, or None for
            ``0.5 / T`` of each tensor.

    Raises:
        ShapeError, DTypeError: an empty list, a tensor that is not floating
            ``[T, B, ...]``.
        ConfigurationError: ``strength < 0``, ``target_rate`` outside ``[0, 1]``.
    """
    tensors = _spike_tensors(spikes, "im_loss")
    strength = check_real("im_loss: strength", strength, 0.0)
    if target_rate is not None:
        target_rate = check_real("im_loss: target_rate", target_rate, 0.0, 1.0)
    terms = [
        (s.mean() - (0.5 / s.shape[0] if target_rate is None else target_rate)).pow(2)
        for s in tensors
    ]
    return strength * sum(terms) / len(terms)


def event_rate(
    spikes: Tensor | Iterable[Tensor], strength: float = 0.01, max_rate: float = 0.01
) -> Tensor:
    """``strength * sum_l relu(mean|s_l| - max_rate)^2``: an event-rate budget per layer.

    ``mean|s_l|`` is the mean magnitude of layer ``l``'s whole output ``[T, B, ...]``:
    its firing rate per step for spikes, its mean event size for the graded deltas of a
    sigma-delta layer. Layers under the budget cost nothing; above it the cost grows
    with the square of the excess. Lava-DL's PilotNet SDNN tutorial
    (``slayer/pilotnet/train.ipynb``) trains with this term at ``max_rate = 0.01``,
    weighted by its ``lam = 0.01`` (the defaults here), on the output of every block
    that has a neuron (its delta-encoded input and the seven sigma-delta units; its
    loop also counts the read-out's decoded value, which is no event stream and which
    this term leaves out when given the recorded ``DeltaEncoder`` outputs).
    The gradient of ``|s|`` is ``sign(s)`` (0 at 0), as ``torch.abs``'s.

    Args:
        spikes: a tensor ``[T, B, ...]`` or an iterable of them (one per layer).
        strength: the weight ``>= 0`` (Lava-DL's ``lam``).
        max_rate: the budget ``>= 0`` of the mean event magnitude per element and step.

    Raises:
        ShapeError, DTypeError: an empty list, a tensor that is not floating
            ``[T, B, ...]``. ConfigurationError: a negative ``strength`` or ``max_rate``.
    """
    tensors = _spike_tensors(spikes, "event_rate")
    strength = check_real("event_rate: strength", strength, 0.0)
    max_rate = check_real("event_rate: max_rate", max_rate, 0.0)
    return strength * sum(torch.relu(s.abs().mean() - max_rate).pow(2) for s in tensors)


class LayerSpikes:
    """The outputs of a network's spiking layers in its last forward, with their graph.

    Forward hooks on the spiking layers (by default every one that
    :class:`~spikeflow.training.SpikeMonitor` watches; ``layers`` picks some by name)
    keep each layer's output sequence ``[T, B, ...]`` so a regulariser on it can be
    added to the loss and backpropagated. A neuron with an analog output
    (:class:`~spikeflow.neurons.LIAFNode`) gives its spike decision instead, with its
    surrogate gradient (its ``store_spike_seq`` is on while the hooks are). A layer
    called once per step (single-step neurons in a recurrent layer) gets its steps
    stacked; a streaming layer called on chunks gets the chunks concatenated. Each new
    sequence (a call that does not carry state into the layer) replaces what the layer
    had, so nothing accumulates between batches. The forward that gradient
    checkpointing (``spikeflow.memory``) runs again in the backward pass is not
    recorded: recorded outputs of a checkpointed block carry no graph, so do not
    regularise such blocks this way.

    **Sigma-delta outputs** (``deltas=True``): every
    :class:`~spikeflow.layers.DeltaEncoder` of the model is recorded as well, under its
    module name (a :class:`~spikeflow.layers.SigmaDelta` unit's is ``<unit>.delta``, as
    :func:`~spikeflow.layers.sigma_delta.delta_activity` names them): its graded deltas
    ``[T, B, ...]`` as sent, with their graph, for an event-rate loss on them (Lava-DL's
    PilotNet SDNN: ``relu(mean|Δ| - rate)^2`` per layer). ``layers`` still picks among
    the spiking layers only; a network of sigma-delta modules alone is then accepted.

    Use as a context manager (or call :meth:`remove`) to take the hooks off.

    Args:
        model: the network.
        layers: names of the spiking layers to record (default: all of them).
        deltas: also record the outputs of the ``DeltaEncoder`` modules (default False).

    Raises:
        ConfigurationError: a layer named in ``layers`` that is not a spiking layer,
            ``deltas`` not a bool, or nothing to record (an ANN; a sigma-delta network
            without ``deltas=True``).
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Iterable[str] | str | None = None,
        *,
        deltas: bool = False,
    ) -> None:
        # (training imports losses)
        from spikeflow.layers.sigma_delta import DeltaEncoder
        from spikeflow.training.monitors import _claim_record, spike_layers, spike_source

        self.deltas = check_flag("LayerSpikes", "deltas", deltas)
        self.layers: dict[str, nn.Module] = spike_layers(model, layers, "LayerSpikes")
        if self.deltas:  # (their graded outputs pass the hook unchanged)
            for name, module in model.named_modules():
                if isinstance(module, DeltaEncoder):
                    self.layers[name or "(model)"] = module
        if not self.layers:  # a regulariser on nothing would be a silent 0
            raise ConfigurationError(
                f"LayerSpikes: the {type(model).__name__} has no spiking layer with spikes "
                "to record (spikeflow.training.monitors.SPIKING_LAYER_TYPES)"
                + ("; nor a DeltaEncoder" if self.deltas
                   else "; sigma-delta modules (DeltaEncoder, SigmaDelta) send graded "
                   "deltas, not spikes: pass deltas=True to record their outputs")
            )  # fmt: skip
        self._outputs: dict[str, list[Tensor]] = {}
        self._fresh: dict[str, bool] = {}
        self._handles: list[Any] = []
        self._claimed: list[nn.Module] = []
        for name, module in self.layers.items():
            self._handles.append(module.register_forward_pre_hook(self._pre_hook(name)))
            self._handles.append(module.register_forward_hook(self._hook(name)))
            if spike_source(module) == "spike_seq":
                _claim_record(module, "spike_seq")  # after the hook: dropped after it reads
                self._claimed.append(module)

    def _pre_hook(self, name: str) -> Any:
        from spikeflow.base import MemoryModule
        from spikeflow.memory.recompute import reruns_forward
        from spikeflow.neurons import SpikeTap

        def pre_hook(module: nn.Module, inputs: Any) -> None:
            if reruns_forward():
                return
            # (a SpikeTap continues when its owner passes a later step of a sequence)
            sequential = isinstance(module, (MemoryModule, SpikeTap))
            if not (sequential and module.continues_sequence()):
                self._fresh[name] = True  # a new sequence starts at this call

        return pre_hook

    def _hook(self, name: str) -> Any:
        from spikeflow.memory.recompute import reruns_forward
        from spikeflow.training.monitors import output_spikes

        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            if not getattr(module, "output_is_spikes", True):  # LIAF: its spike decision
                recorded = getattr(module, "spike_seq", None)  # [T, B, ...] ([1, B, ...])
                single = getattr(module, "step_mode", "m") != "m"
                output = recorded[0] if single and isinstance(recorded, Tensor) else recorded
            if not isinstance(output, Tensor) or reruns_forward():
                return
            output = output_spikes(module, output)  # DSR's spikes are worth θ: 1 each
            multi = getattr(module, "step_mode", "m") == "m" and output.dim() >= 2
            if self._fresh.pop(name, False) or name not in self._outputs:
                self._outputs[name] = []
            self._outputs[name].append(output if multi else output.unsqueeze(0))

        return hook

    @property
    def spikes(self) -> dict[str, Tensor]:
        """``{layer name: its spikes [T, B, ...]}`` of the layers that ran (the output;
        a neuron with an analog output: its spike decision; with ``deltas=True``, a
        ``DeltaEncoder``'s graded deltas)."""
        return {name: torch.cat(parts) for name, parts in self._outputs.items()}

    def clear(self) -> None:
        """Drop the recorded outputs (and the graph they hold)."""
        self._outputs.clear()
        self._fresh.clear()

    def remove(self) -> None:
        """Take the hooks off and drop the recorded outputs."""
        from spikeflow.training.monitors import _release_record

        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for module in self._claimed:
            _release_record(module, "spike_seq")
        self._claimed.clear()
        self.clear()

    def __enter__(self) -> LayerSpikes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()
