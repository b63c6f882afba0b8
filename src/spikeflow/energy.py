"""Synaptic operations and energy estimates of a spiking network.

An SNN's linear and convolution layers do work only where an input spiked: each
(nonzero input, nonzero weight) pair that reaches an output is one accumulate (AC). A
layer fed real values (the first layer on images, a layer after average pooling or
voting) does a multiply-accumulate (MAC) for every (input, nonzero weight) pair. The
field's energy estimate (Horowitz, ISSCC 2014, 45 nm, 32-bit float) prices an AC at
0.9 pJ and a MAC at 4.6 pJ::

    from spikeflow.energy import count_operations
    report = count_operations(model, x)          # x: [T, B, ...], one forward, no_grad
    print(report)                                # per layer: ACs, MACs, input density
    report.energy()                              # joules per sample

or, over many batches, ``with OperationCounter(model) as counter: ...`` and
``counter.report(samples)``.

Counts are exact: they are computed with the layer's own convolution (stride, padding
mode, dilation, groups) on 0/1 masks of the input and of the weight, so products with
zero padding and with pruned (zero) weights are not counted. An input is read as
spikes when all its nonzero entries have the same magnitude (``{0, 1}``, signed
``{0, ±1}``, or spikes scaled by one constant); other inputs are real-valued. Biases,
batch norm, pooling, residual additions and the neurons' own updates are not counted
(as in most papers' estimates). Layers counted: ``nn.Linear``, ``nn.Conv1d/2d/3d``,
``nn.ConvTranspose1d/2d/3d`` and their subclasses (spikeflow's sequence layers, the
event-driven layers, with the standardised weight they compute with); other modules
with weights of their own (matrices or kernels: LSTMs, attention, embeddings, PSN
neurons) and counted layers whose forward never ran (a module applying its inner
layer's weight directly) are listed as not counted. The recurrent layers that apply
their weights with ``F.linear`` are counted from their inputs and the outputs they feed
back: ``layers.Recurrent`` (as ``<name>.recurrent``) and ``LinearRecurrentContainer``
(``<name>.rc`` for the input part, ``<name>.rc (recurrent)`` for the feedback). So is
Bellec et al.'s :class:`~spikeflow.learn.EPropRSNN` (the zoo's ``eprop_rsnn``), whose
loop applies ``W^in`` and the masked ``W^rec`` with ``F.linear``: ``<name>.input`` from
its input, ``<name>.recurrent`` from the spikes ``z[t-1]`` its neurons fed back (read
from its :class:`~spikeflow.neurons.SpikeTap`; no self-connections), per forward call.
Weights are taken as stored sparse (a zero weight costs nothing); inputs arrive at run
time, so a layer fed real values multiplies its zero inputs too, while a spike input is
event-driven. A sigma-delta network's layers (the layer inside a
:class:`~spikeflow.layers.sigma_delta.DeltaSynapse`) are fed graded spikes, the changes
of their input: event-driven like spikes, but each carries a value, so each (nonzero
delta, nonzero weight) pair is a MAC (Loihi 2's graded spikes) and zero deltas cost
nothing; their rows read ``graded``.

A neuron with an analog output (``output_is_spikes`` False:
:class:`~spikeflow.neurons.LIAFNode`, which outputs ``act(H)``) feeds real values, so a
layer it feeds does a MAC per (input, nonzero weight) pair, zeros included, whatever
values it happens to output (all zeros, or one magnitude, which would read as spikes).
For a model holding such neurons the counter follows what is computed from their
outputs (a ``TorchFunctionMode`` active while the model runs: pooling, flattening,
normalisation, residual sums of them stay real-valued) up to the next spiking neuron,
whose output is spikes again; the other inputs are read by value as above.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten
from torch.utils.hooks import RemovableHandle

from spikeflow._checks import check_flag
from spikeflow.errors import ConfigurationError
from spikeflow.layers.attention import SpikeDrivenSelfAttention, SpikingSelfAttention
from spikeflow.layers.recurrent import LinearRecurrentContainer, Recurrent
from spikeflow.layers.sigma_delta import DeltaSynapse
from spikeflow.learn.eprop_network import EPropRSNN
from spikeflow.memory.recompute import reruns_forward

__all__ = [
    "E_AC",
    "E_MAC",
    "LayerOperations",
    "OperationCounter",
    "OperationReport",
    "count_operations",
]

#: Energy of one 32-bit float accumulate and multiply-accumulate at 45 nm, in joules
#: (Horowitz, ISSCC 2014: add 0.9 pJ, multiply 3.7 pJ).
E_AC = 0.9e-12
E_MAC = 4.6e-12

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


@dataclass
class LayerOperations:
    """The operations one layer did, summed over the calls counted."""

    name: str
    kind: str
    calls: int = 0
    spike_calls: int = 0
    count_calls: int = 0
    graded_calls: int = 0
    acs: int = 0
    macs: int = 0
    input_elements: int = 0
    input_nonzero: int = 0

    @property
    def input_density(self) -> float:
        """Share of the layer's input entries that were nonzero."""
        return self.input_nonzero / self.input_elements if self.input_elements else 0.0


@dataclass
class OperationReport:
    """Operations per layer, with totals and energy per sample."""

    layers: list[LayerOperations]
    samples: int
    not_counted: list[str] = field(default_factory=list)

    @property
    def acs(self) -> float:
        """Accumulates per sample (spike-driven synaptic operations, SOPs)."""
        return sum(layer.acs for layer in self.layers) / self.samples

    @property
    def macs(self) -> float:
        """Multiply-accumulates per sample (layers fed real values)."""
        return sum(layer.macs for layer in self.layers) / self.samples

    def energy(self, e_ac: float = E_AC, e_mac: float = E_MAC) -> float:
        """Estimated energy per sample in joules: ``e_ac × ACs + e_mac × MACs``."""
        return e_ac * self.acs + e_mac * self.macs

    def __str__(self) -> str:
        width = max([len("layer"), *(len(layer.name) for layer in self.layers)])
        lines = [
            f"{'layer':<{width}} {'kind':<10} {'input':>7} {'ACs/sample':>14} {'MACs/sample':>14}",
        ]
        for layer in self.layers:
            if layer.graded_calls == layer.calls:
                kind = "graded"
            elif layer.spike_calls == layer.calls:
                kind = "spikes"
            elif layer.count_calls == layer.calls:
                kind = "counts"
            else:
                event = layer.spike_calls + layer.count_calls + layer.graded_calls
                kind = "real" if event == 0 else "mixed"
            lines.append(
                f"{layer.name:<{width}} {layer.kind:<10} {kind:>7} "
                f"{layer.acs / self.samples:>14,.0f} {layer.macs / self.samples:>14,.0f}"
            )
        lines.append(
            f"total: {self.acs:,.0f} ACs and {self.macs:,.0f} MACs per sample; "
            f"energy {self.energy() * 1e6:.4g} µJ per sample "
            f"(AC {E_AC * 1e12:g} pJ, MAC {E_MAC * 1e12:g} pJ)"
        )
        if self.not_counted:
            lines.append(f"not counted (weights of another kind): {', '.join(self.not_counted)}")
        return "\n".join(lines)


def _holds_weights(module: nn.Module) -> bool:
    """A module of another kind with weights of its own of 2 or more dims (a matrix, a
    kernel): its work is not counted. (Batch/layer/group norm parameters are 1-D.)"""
    return any(p.dim() >= 2 for p in module.parameters(recurse=False))


def _is_counts(x: Tensor) -> bool:
    """Whether every entry is a whole number (spike counts, sums of spikes)."""
    return bool(torch.isfinite(x).all()) and bool((x == x.round()).all())


def _is_spikes(x: Tensor) -> bool:
    nonzero = x[x != 0]
    if nonzero.numel() == 0:
        return True
    magnitude = nonzero.abs()
    return bool((magnitude == magnitude[0]).all())


def _weight(layer: nn.Module) -> Tensor:
    """The weight the layer computes with (event-driven layers standardise theirs)."""
    standardized = getattr(layer, "standardized_weight", None)
    return standardized() if callable(standardized) else layer.weight


def _linear_pairs(weight: Tensor, mask: Tensor) -> int:
    """(input entry in ``mask``, nonzero weight) pairs of a linear map ``weight``
    ``[out, in]`` (an entry of ``mask`` counts as many times as its value)."""
    fan_out = (weight != 0).sum(dim=0).to(torch.float64)  # outputs each input reaches
    per_input = mask.reshape(-1, weight.shape[1]).to(torch.float64).sum(dim=0)
    return round(float((per_input * fan_out).sum()))


def _step_masks(layer: nn.Module, mask: Tensor) -> tuple[Tensor, Tensor]:
    """The input mask with the steps folded into the batch, and the nonzero-weight mask.

    0/1 masks are float32, exact: an output's count is at most C_in·k² < 2^24. Spike
    counts can sum beyond that, so they are float64.
    """
    spatial = layer.weight.dim() - 2
    dtype = torch.float32 if mask.dtype == torch.bool else torch.float64
    steps = mask.reshape(-1, *mask.shape[-(spatial + 1) :]).to(dtype)
    return steps, (_weight(layer) != 0).to(dtype)


def _conv_pairs(layer: nn.Module, mask: Tensor) -> int:
    """(input entry in ``mask``, nonzero weight) pairs that reach an output of a
    convolution: the layer's convolution of the masks, summed."""
    steps, weight = _step_masks(layer, mask)
    with torch.autocast(mask.device.type, enabled=False):  # counts stay exact integers
        counts = layer._conv_forward(steps, weight, None)  # type: ignore[operator]
    return int(counts.sum(dtype=torch.float64).item())


_TRANSPOSED_FUNCTIONS = (
    torch.nn.functional.conv_transpose1d,
    torch.nn.functional.conv_transpose2d,
    torch.nn.functional.conv_transpose3d,
)


def _transposed_pairs(layer: nn.Module, mask: Tensor, output: object) -> int:
    """(input entry in ``mask``, nonzero weight) pairs of a transposed convolution that
    land inside its output (the output padding read from the layer's actual output)."""
    steps, weight = _step_masks(layer, mask)
    spatial = weight.dim() - 2
    natural = [(size - 1) * stride - 2 * pad + dilation * (kernel - 1) + 1
               for size, stride, pad, dilation, kernel in zip(
                   steps.shape[2:], layer.stride, layer.padding, layer.dilation,
                   layer.kernel_size, strict=True)]  # fmt: skip
    padding = [0] * spatial
    if isinstance(output, Tensor):
        padding = [size - base for size, base in zip(output.shape[-spatial:], natural,
                                                     strict=True)]  # fmt: skip
    with torch.autocast(mask.device.type, enabled=False):
        counts = _TRANSPOSED_FUNCTIONS[spatial - 1](
            steps, weight, None, layer.stride, layer.padding, tuple(padding), layer.groups,
            layer.dilation,
        )  # fmt: skip
    return int(counts.sum(dtype=torch.float64).item())


def _tensors(value: Any) -> list[Tensor]:
    return [leaf for leaf in tree_flatten(value)[0] if isinstance(leaf, Tensor)]


class _AnalogTracker(TorchFunctionMode):
    """Which tensors hold real values computed from the output of a neuron with an
    analog output: marked by the counter's hook on such a neuron, propagated through
    every torch function whose inputs include a marked tensor (and to the tensor an
    in-place function changes), unmarked at a spiking neuron's output. Active while the
    model runs (entered by a forward pre-hook on the model, left by its forward hook)."""

    def __init__(self) -> None:
        super().__init__()
        self._marked: dict[int, weakref.ref[Tensor]] = {}
        self._depth = 0

    def is_analog(self, x: Tensor) -> bool:
        ref = self._marked.get(id(x))
        return ref is not None and ref() is x

    def mark(self, value: Any, analog: bool = True) -> None:
        for x in _tensors(value):
            if analog:
                self._marked[id(x)] = weakref.ref(x)
            else:
                self._marked.pop(id(x), None)

    def __torch_function__(
        self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None
    ) -> Any:
        out = func(*args, **(kwargs or {}))
        if self._marked and any(self.is_analog(x) for x in _tensors((args, kwargs))):
            self.mark(out)
            name = getattr(func, "__name__", "")
            in_place = name.endswith("_") or name == "__setitem__"
            if in_place and args and isinstance(args[0], Tensor):
                self.mark(args[0])  # changed in place by a real value
        return out

    def enter(self, module: nn.Module, args: Any) -> None:
        """Forward pre-hook on the model: start following (once for nested calls)."""
        self._depth += 1
        if self._depth == 1:
            self.__enter__()

    def leave(self, module: nn.Module, args: Any, output: Any) -> None:
        """Forward hook on the model (also on an error): stop and forget the marks."""
        self._depth -= 1
        if self._depth == 0:
            self.__exit__(None, None, None)
            self._marked.clear()


@torch.no_grad()
def _count_attention(
    record: LayerOperations, q: Tensor, k: Tensor, v: Tensor, analog: bool = False
) -> None:
    """ACs of the attention's spike products (``q, k, v``: ``[T, B, H, N, d]`` spikes):
    SSA's ``Kᵀ V`` (each pair of a key and a value spike of a token is one accumulate)
    and ``Q (Kᵀ V)`` (each query spike adds the nonzero entries of a row); SDSA's
    ``Σ_tokens K ⊙ V`` (each coinciding key and value spike is one addition). With
    ``analog`` (real-valued ``q, k, v``, from neurons with an analog output) the same
    products of nonzero entries are MACs."""
    if reruns_forward():  # counted in the forward call already
        return
    keys, values = (k != 0), (v != 0)
    if record.kind == "SSA":
        pairs = keys.sum(-1, dtype=torch.int64) * values.sum(-1, dtype=torch.int64)
        products = keys.transpose(-2, -1).to(torch.float32) @ values.to(torch.float32)
        row_entries = (products != 0).sum(-1).to(torch.float32)  # [T, B, H, d]
        rows = (q != 0).to(torch.float32) @ row_entries.unsqueeze(-1)
        acs = int(pairs.sum()) + int(rows.sum(dtype=torch.float64).item())
    else:
        acs = int((keys & values).sum())
    record.calls += 1
    if analog:
        record.macs += acs
    else:
        record.spike_calls += 1
        record.acs += acs
    record.input_elements += q.numel()
    record.input_nonzero += int((q != 0).sum())


class OperationCounter:
    """Count the operations of ``model``'s linear and convolution layers while it runs.

    ``spike_counts``: read an input of whole numbers (the sum of spike trains on a
    residual stream, event counts per pixel) as that many spikes, each an accumulate,
    instead of a real-valued input of MACs.

    The layer inside a :class:`~spikeflow.layers.sigma_delta.DeltaSynapse` is fed graded
    spikes (deltas): a MAC per (nonzero input, nonzero weight) pair, zeros cost nothing.

    A layer fed (through stateless layers) by a neuron with an analog output
    (:class:`~spikeflow.neurons.LIAFNode`) is fed real values: a MAC per (input,
    nonzero weight) pair, whatever the values (see the module docstring).

    Use as a context manager (hooks are removed on exit) or call :meth:`remove`.
    :meth:`report` gives the counts per sample for the number of samples that ran.
    """

    def __init__(self, model: nn.Module, spike_counts: bool = False) -> None:
        self.spike_counts = check_flag("OperationCounter", "spike_counts", spike_counts)
        self._layers: dict[nn.Module, LayerOperations] = {}
        self.not_counted: list[str] = []
        self._handles: list[RemovableHandle] = []
        self._carried: dict[nn.Module, Tensor | None] = {}
        self._eprop_spikes: dict[nn.Module, Tensor] = {}  # an EPropRSNN's, by its tap
        # Layers fed graded spikes (a sigma-delta network's synapses).
        self._graded = {m.layer for m in model.modules() if isinstance(m, DeltaSynapse)}
        self._tracker = self._follow_analog_outputs(model)
        for name, module in model.named_modules():
            if isinstance(module, (SpikingSelfAttention, SpikeDrivenSelfAttention)):
                # The spike-spike products inside (Q Kᵀ V, Σ K ⊙ V), from Q, K and V.
                kind = "SSA" if isinstance(module, SpikingSelfAttention) else "SDSA"
                record = LayerOperations(f"{name or '(model)'} (attention products)", kind)
                self._layers[module] = record
                self._handles.append(module.qkv.register_forward_hook(
                    lambda m, a, out, record=record: _count_attention(
                        record, *out, analog=any(self._is_analog(x) for x in out))))  # fmt: skip
            if isinstance(module, (Recurrent, LinearRecurrentContainer)):
                # They apply their weights with F.linear (the recurrent one to their own
                # previous outputs): counted from the input, what they carried in and
                # what they returned.
                if isinstance(module, LinearRecurrentContainer):
                    rc = f"{name}.rc" if name else "rc"  # its input part, then the feedback
                    self._layers[module.rc] = LayerOperations(rc, "Linear")
                    self._layers[module] = LayerOperations(f"{rc} (recurrent)", "Linear")
                self._handles.append(module.register_forward_pre_hook(self._carried_in))
                self._handles.append(module.register_forward_hook(self._count_recurrent))
            if isinstance(module, EPropRSNN):
                # Its loop applies W^in and the masked W^rec with F.linear: counted from
                # its input and from the spikes its neurons fed back (seen by its tap).
                self._handles.append(module.neurons.register_forward_hook(self._keep_spikes))
                self._handles.append(module.register_forward_hook(self._count_eprop))
            if isinstance(module, (nn.Linear, *_CONVS, *_TRANSPOSED)):
                self._layers[module] = LayerOperations(name or "(model)", type(module).__name__)
                self._handles.append(module.register_forward_hook(self._count))
            elif _holds_weights(module):
                self.not_counted.append(name or "(model)")

    def _follow_analog_outputs(self, model: nn.Module) -> _AnalogTracker | None:
        """For a model holding neurons with an analog output: the tracker of the values
        computed from their outputs, and its hooks (None for other models)."""
        from spikeflow.training.monitors import SPIKING_LAYER_TYPES  # (imports layers)

        neurons = [m for m in model.modules() if isinstance(m, SPIKING_LAYER_TYPES)]
        if all(getattr(m, "output_is_spikes", True) for m in neurons):
            return None
        tracker = _AnalogTracker()
        self._handles.append(model.register_forward_pre_hook(tracker.enter))
        self._handles.append(model.register_forward_hook(tracker.leave, always_call=True))
        for m in neurons:
            analog = not getattr(m, "output_is_spikes", True)
            self._handles.append(m.register_forward_hook(
                lambda module, args, out, analog=analog: tracker.mark(out, analog)))  # fmt: skip
        return tracker

    def _is_analog(self, x: Tensor) -> bool:
        """Whether ``x`` was computed from the output of a neuron with an analog output."""
        return self._tracker is not None and self._tracker.is_analog(x)

    def _classify(self, x: Tensor) -> tuple[Tensor, bool, bool]:
        """The input's mask of counted entries, and whether it is spikes or counts."""
        if self._is_analog(x):  # real values, whatever they are: every entry multiplies
            return torch.ones_like(x, dtype=torch.bool), False, False
        # With spike_counts, whole numbers beyond ±1 are counts (2 is two spikes, also
        # where every nonzero entry is 2); otherwise one magnitude means spikes.
        counts = self.spike_counts and _is_counts(x) and bool((x.abs() > 1).any())
        spikes = not counts and _is_spikes(x)
        if spikes:
            mask = x != 0
        elif counts:  # an input of n is n spikes: n accumulates per weight
            mask = x.abs()
        else:
            mask = torch.ones_like(x, dtype=torch.bool)
        return mask, spikes, counts

    @staticmethod
    def _add(
        record: LayerOperations,
        x: Tensor,
        pairs: int,
        spikes: bool,
        counts: bool,
        graded: bool = False,
    ) -> None:
        record.calls += 1
        record.spike_calls += int(spikes)
        record.count_calls += int(counts)
        record.graded_calls += int(graded)
        if graded:
            record.macs += pairs
        elif spikes or counts:
            record.acs += pairs
        else:
            record.macs += pairs
        record.input_elements += x.numel()
        record.input_nonzero += int((x != 0).sum())

    @torch.no_grad()
    def _count(self, module: nn.Module, args: tuple, output: object) -> None:
        if not args or not isinstance(args[0], Tensor) or reruns_forward():
            return
        x = args[0]
        graded = module in self._graded
        if graded:  # graded spikes: each nonzero delta is multiplied by its weights
            mask, spikes, counts = x != 0, False, False
        else:
            mask, spikes, counts = self._classify(x)
        if isinstance(module, nn.Linear):
            pairs = _linear_pairs(_weight(module), mask)
        elif isinstance(module, _TRANSPOSED):
            pairs = _transposed_pairs(module, mask, output)
        else:
            pairs = _conv_pairs(module, mask)
        self._add(self._layers[module], x, pairs, spikes, counts, graded)

    def _carried_in(self, module: Recurrent | LinearRecurrentContainer, args: tuple) -> None:
        if reruns_forward():
            return
        state = module.starting_state()  # streaming or run(): the previous call's output
        self._carried[module] = None if state is None else state["y"].detach()

    @torch.no_grad()
    def _count_recurrent(
        self, module: Recurrent | LinearRecurrentContainer, args: tuple, output: object
    ) -> None:
        if not isinstance(output, Tensor) or reruns_forward():
            return
        y = output.unsqueeze(0) if module.step_mode == "s" else output
        # The inputs of W y[t-1] in this call: the carried output (zeros on a fresh
        # call, which count nothing), then every output but the last.
        carried = self._carried.pop(module, None)
        inputs = [y[:-1]] if carried is None else [carried[None], y[:-1]]
        if isinstance(module, Recurrent):
            width, feedback, record = module.features, module.feedback_weight(), module.recurrent
        else:  # [W_x, W_y] = rc.weight: W_x x[t] over the input, W_y over the outputs
            split = module.in_features
            width, feedback, record = module.out_features, _weight(module.rc)[:, split:], module
            if args and isinstance(args[0], Tensor):
                x = args[0]
                mask, spikes, counts = self._classify(x)
                pairs = _linear_pairs(_weight(module.rc)[:, :split], mask)
                self._add(self._layers[module.rc], x, pairs, spikes, counts)
        fed = torch.cat([i.reshape(-1, width) for i in inputs])
        mask, spikes, counts = self._classify(fed)
        pairs = _linear_pairs(feedback, mask)
        self._add(self._layers[record], fed, pairs, spikes, counts)

    def _keep_spikes(self, tap: nn.Module, args: tuple, output: object) -> None:
        if isinstance(output, Tensor) and not reruns_forward():
            self._eprop_spikes[tap] = output.detach()

    @torch.no_grad()
    def _count_eprop(self, net: EPropRSNN, args: tuple, output: object) -> None:
        """``W^in`` over the input ``x`` ``[T, B, ...]`` of this call and the masked
        ``W^rec`` over the spikes fed back, ``z[0] .. z[T-2]`` (``z[T-1]`` is fed to no
        step of the call; the initial state is silent)."""
        spikes = self._eprop_spikes.pop(net.neurons, None)
        if spikes is None or not args or not isinstance(args[0], Tensor) or reruns_forward():
            return
        x = args[0]
        mask, spiking, counts = self._classify(x)
        pairs = _linear_pairs(net.input.weight, mask)
        self._add(self._layers[net.input], x, pairs, spiking, counts)
        fed = spikes[:-1].reshape(-1, net.hidden)
        mask, spiking, counts = self._classify(fed)
        pairs = _linear_pairs(net.recurrent_weight(), mask)
        self._add(self._layers[net.recurrent], fed, pairs, spiking, counts)

    def report(self, samples: int) -> OperationReport:
        """The counts so far, per sample of ``samples`` samples run."""
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise ConfigurationError(f"samples must be a positive integer, got {samples!r}")
        layers = [LayerOperations(**vars(r)) for r in self._layers.values() if r.calls]
        # Layers whose forward never ran (and whose weight no other hook counted).
        unused = [f"{r.name} (its forward never ran)" for r in self._layers.values()
                  if not r.calls]  # fmt: skip
        return OperationReport(layers, samples, [*self.not_counted, *unused])

    def remove(self) -> None:
        """Detach the hooks."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __enter__(self) -> OperationCounter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def count_operations(
    model: nn.Module, x: Tensor, samples: int | None = None, spike_counts: bool = False
) -> OperationReport:
    """Run ``model(x)`` once (no gradients) and report its operations per sample.

    ``samples`` defaults to ``x.shape[1]``, the batch of a time-major ``[T, B, ...]``
    input (pass it for other layouts); ``spike_counts`` as :class:`OperationCounter`.
    The model's state is reset before and after
    (:func:`spikeflow.functional.reset_net`); its train/eval mode is left as it is.
    """
    from spikeflow.functional import reset_net

    if samples is None:
        if x.dim() < 2:
            raise ConfigurationError(
                f"count_operations: x of shape {tuple(x.shape)} has no batch dimension; "
                "pass samples"
            )
        samples = x.shape[1]
    reset_net(model)
    with OperationCounter(model, spike_counts) as counter, torch.no_grad():
        model(x)
    reset_net(model)
    return counter.report(samples)
