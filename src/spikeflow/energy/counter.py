"""The operation counter: hooks on a model's layers and neurons, and a mode while it runs.

See :mod:`spikeflow.energy` for what is counted and how.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.utils.hooks import RemovableHandle

from spikeflow._checks import check_flag
from spikeflow.energy._pairs import (
    conv_pairs,
    is_counts,
    is_spikes,
    layer_weight,
    linear_pairs,
    tensors,
    transposed_pairs,
)
from spikeflow.energy.neuron_updates import StepOperations, counted_neuron, step_operations
from spikeflow.energy.products import RunMode
from spikeflow.energy.report import LayerOperations, NeuronOperations, OperationReport
from spikeflow.errors import ConfigurationError
from spikeflow.layers.dropout import _SequenceDropout
from spikeflow.layers.neunorm import NeuNorm
from spikeflow.layers.norm import _TimeIndexedNorm
from spikeflow.layers.recurrent import LinearRecurrentContainer, Recurrent
from spikeflow.layers.sigma_delta import DeltaSynapse
from spikeflow.learn.eprop_network import EPropRSNN
from spikeflow.memory.recompute import reruns_forward

__all__ = ["OperationCounter", "count_operations"]

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
#: Modules inside whose forward products between tensors are not activation products:
#: layers counted by their hooks, normalisation, dropout masks, and the loops of
#: networks that run their neurons' updates themselves (with the spiking layers).
_NOT_PRODUCTS: tuple[type[nn.Module], ...] = (
    nn.Linear, *_CONVS, *_TRANSPOSED, nn.modules.batchnorm._NormBase, nn.LayerNorm,
    nn.GroupNorm, nn.LocalResponseNorm, _TimeIndexedNorm, NeuNorm,
    nn.modules.dropout._DropoutNd, _SequenceDropout, EPropRSNN, nn.MultiheadAttention,
)  # fmt: skip
#: What can go wrong tracing a declaration (the tracer's errors are ConfigurationErrors).
_TRACE_ERRORS = (ConfigurationError, AttributeError, TypeError, ValueError, IndexError)


def _unobserved(hook: Callable[..., None]) -> Callable[..., None]:
    """A counter's hook, run without gradients and with the run mode looking away (the
    counter's own arithmetic is no product of the model's)."""

    @functools.wraps(hook)
    def run(self: OperationCounter, *args: object) -> None:
        with self._lock, self._mode.quiet(), torch.no_grad():  # (threads: one at a time)
            hook(self, *args)

    return run


def _holds_weights(module: nn.Module) -> bool:
    """A module of another kind with weights of its own of 2 or more dims (a matrix, a
    kernel): its work is not counted. (Batch/layer/group norm parameters are 1-D; a
    parametrization's ``original`` weight is its layer's, counted with the layer.)"""
    if isinstance(module, parametrize.ParametrizationList):
        return False
    return any(p.dim() >= 2 for p in module.parameters(recurse=False))


class OperationCounter:
    """Count the operations of ``model`` while it runs: the synaptic operations of its
    linear and convolution layers, the products between activations of its other
    modules, and the state updates of its declared neurons (see :mod:`spikeflow.energy`).

    ``spike_counts``: read an input of whole numbers (the sum of spike trains on a
    residual stream, event counts per pixel) as that many spikes, each an accumulate,
    instead of a real-valued input of MACs.

    The layer inside a :class:`~spikeflow.layers.sigma_delta.DeltaSynapse` is fed graded
    spikes (deltas): a MAC per (nonzero input, nonzero weight) pair, zeros cost nothing.

    A layer fed (through stateless layers) by a neuron with an analog output
    (:class:`~spikeflow.neurons.LIAFNode`) is fed real values: a MAC per (input,
    nonzero weight) pair, whatever the values (see :mod:`spikeflow.energy`).

    Use as a context manager (hooks are removed on exit) or call :meth:`remove`.
    :meth:`report` gives the counts per sample for the number of samples that ran.
    """

    def __init__(self, model: nn.Module, spike_counts: bool = False) -> None:
        from spikeflow.training.monitors import SPIKING_LAYER_TYPES  # (imports layers)

        self.spike_counts = check_flag("OperationCounter", "spike_counts", spike_counts)
        self._layers: dict[nn.Module, LayerOperations] = {}
        self.not_counted: list[str] = []
        self._handles: list[RemovableHandle] = []
        self._lock = threading.RLock()
        self._carried: dict[nn.Module, Tensor | None] = {}
        self._eprop_spikes: dict[nn.Module, Tensor] = {}  # an EPropRSNN's, by its tap
        # An nn.MultiheadAttention's products Q Kᵀ and A V (_count_attention).
        self._attention: dict[nn.Module, LayerOperations] = {}
        # Layers fed graded spikes (a sigma-delta network's synapses).
        self._graded = {m.layer for m in model.modules() if isinstance(m, DeltaSynapse)}
        spiking = [m for m in model.modules() if isinstance(m, SPIKING_LAYER_TYPES)]
        analog = not all(getattr(m, "output_is_spikes", True) for m in spiking)
        self._mode = RunMode(model, analog, (*_NOT_PRODUCTS, *SPIKING_LAYER_TYPES),
                             self.not_counted)  # fmt: skip
        self._neurons: dict[nn.Module, NeuronOperations] = {}
        self._steps: dict[tuple, StepOperations] = {}  # per neuron, dtype and parameters
        self.neurons_not_counted: list[str] = []
        for name, module in model.named_modules():
            enter, leave = self._mode.hooks(name, module)
            self._handles.append(module.register_forward_pre_hook(enter))
            if isinstance(module, SPIKING_LAYER_TYPES):
                self._watch_neuron(name or "(model)", module, analog)
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
                self._handles.append(module.neurons.register_forward_hook(
                    lambda tap, args, out, net=module: self._keep_spikes(net, out)))  # fmt: skip
                self._handles.append(module.register_forward_hook(self._count_eprop))
            if isinstance(module, (nn.Linear, *_CONVS, *_TRANSPOSED)):
                self._layers[module] = LayerOperations(name or "(model)", type(module).__name__)
                self._handles.append(module.register_forward_hook(self._count))
            elif isinstance(module, nn.MultiheadAttention):
                # Its forward applies its weights with F.linear (or one fused op): its
                # projections and products counted from its inputs (_count_attention).
                label = name or "(model)"
                self._layers[module] = LayerOperations(f"{label}.in_proj", "Linear")
                self._attention[module] = LayerOperations(
                    f"{label} (activation products)", "products"
                )
                self._handles.append(
                    module.register_forward_hook(self._count_attention, with_kwargs=True)
                )
            elif _holds_weights(module):
                self.not_counted.append(name or "(model)")
            # Last: the module's other hooks run while the mode still follows its values.
            self._handles.append(module.register_forward_hook(leave, always_call=True))
        from spikeflow.quant.weights import weight_bits  # (quant imports the layers)

        for module, record in self._layers.items():  # a quantized weight's bits
            layer = module.rc if isinstance(module, LinearRecurrentContainer) else module
            record.weight_bits = weight_bits(layer)

    def _watch_neuron(self, name: str, module: nn.Module, analog: bool) -> None:
        """Hooks on a spiking layer: its updates (a declared neuron's), and for a model
        with analog outputs whether its output is spikes or analog values."""
        if analog:
            is_analog = not getattr(module, "output_is_spikes", True)
            self._handles.append(module.register_forward_hook(
                lambda m, args, out: self._mode.mark_analog(out, is_analog)))  # fmt: skip
        why = counted_neuron(module)
        if why is not None:
            self.neurons_not_counted.append(f"{name} ({why})")
            return
        self._neurons[module] = NeuronOperations(name, type(module).__name__)
        self._handles.append(module.register_forward_hook(self._count_neuron))

    def _is_analog(self, x: Tensor) -> bool:
        """Whether ``x`` was computed from the output of a neuron with an analog output."""
        return self._mode.track_analog and self._mode.is_analog(x)

    def _classify(self, x: Tensor) -> tuple[Tensor, bool, bool]:
        """The input's mask of counted entries, and whether it is spikes or counts."""
        if self._is_analog(x):  # real values, whatever they are: every entry multiplies
            return torch.ones_like(x, dtype=torch.bool), False, False
        # With spike_counts, whole numbers beyond ±1 are counts (2 is two spikes, also
        # where every nonzero entry is 2); otherwise one magnitude means spikes.
        counts = self.spike_counts and is_counts(x) and bool((x.abs() > 1).any())
        spikes = not counts and is_spikes(x)
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

    @_unobserved
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
            pairs = linear_pairs(layer_weight(module), mask)
        elif isinstance(module, _TRANSPOSED):
            pairs = transposed_pairs(module, mask, output)
        else:
            pairs = conv_pairs(module, mask)
        record = self._layers[module]
        self._add(record, x, pairs, spikes, counts, graded)
        if getattr(module, "bias", None) is not None and isinstance(output, Tensor):
            record.bias_reads += output.numel()

    @_unobserved
    def _count_neuron(self, module: nn.Module, args: tuple, output: object) -> None:
        """A declared neuron's updates in this call: its step's arithmetic for every
        neuron and step, and its resets per spike (per neuron and step where the output
        is not the spikes)."""
        out = output if isinstance(output, Tensor) else next(iter(tensors(output)), None)
        record = self._neurons.get(module)
        if out is None or record is None or reruns_forward():
            return
        step_shape = out.shape[1:] if getattr(module, "step_mode", "m") == "m" else out.shape
        try:
            step = self._step(module, step_shape, out.dtype)
        except _TRACE_ERRORS as exc:
            del self._neurons[module]
            self.neurons_not_counted.append(f"{record.name} (its declaration: {exc})")
            return
        steps = out.numel()
        spiking = getattr(module, "output_is_spikes", True)
        resets = int((out != 0).sum()) if spiking else steps
        record.calls += 1
        record.neuron_steps += steps
        record.additions += step.additions * steps
        record.multiplications += step.multiplications * steps
        record.comparisons += step.comparisons * steps
        record.state_words += step.states * steps
        for op, count in step.other:
            record.other[op] = record.other.get(op, 0) + count * steps
        if step.reset != "declared":
            record.resets += resets
            record.additions += resets if step.reset == "soft" else 0

    def _step(
        self, module: nn.Module, step_shape: torch.Size, dtype: torch.dtype
    ) -> StepOperations:
        """The module's step operations, traced once per dtype and parameter values."""
        values = tuple(
            (name, float(v) if isinstance(v, (int, float)) else
             float(v.detach().reshape(())) if isinstance(v, Tensor) and v.numel() == 1 else
             None)
            for name, v in module.neuron_params().items()  # type: ignore[operator]
        )  # fmt: skip
        key = (id(module), dtype, values, getattr(module, "v_reset", None))
        step = self._steps.get(key)
        if step is None:
            step = self._steps[key] = step_operations(module, step_shape, dtype)  # type: ignore[arg-type]
        return step

    def _carried_in(self, module: Recurrent | LinearRecurrentContainer, args: tuple) -> None:
        if reruns_forward():
            return
        state = module.starting_state()  # streaming or run(): the previous call's output
        self._carried[module] = None if state is None else state["y"].detach()

    @_unobserved
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
            feedback = layer_weight(module.rc)[:, split:]
            width, record = module.out_features, module
            if args and isinstance(args[0], Tensor):
                x = args[0]
                mask, spikes, counts = self._classify(x)
                pairs = linear_pairs(layer_weight(module.rc)[:, :split], mask)
                self._add(self._layers[module.rc], x, pairs, spikes, counts)
                if module.rc.bias is not None:  # added to every step's drive
                    rows = x.numel() // split
                    self._layers[module.rc].bias_reads += rows * module.rc.out_features
        fed = torch.cat([i.reshape(-1, width) for i in inputs])
        mask, spikes, counts = self._classify(fed)
        pairs = linear_pairs(feedback, mask)
        self._add(self._layers[record], fed, pairs, spikes, counts)
        if isinstance(module, Recurrent) and module.recurrent.bias is not None:
            self._layers[record].bias_reads += y.numel()  # added at every step

    def _keep_spikes(self, net: EPropRSNN, output: object) -> None:
        """The spikes an EPropRSNN passed through its tap: a whole sequence's, kept for
        :meth:`_count_eprop`; or one :meth:`~EPropRSNN.step`'s, counted now."""
        if not isinstance(output, Tensor) or reruns_forward():
            return
        stepping = getattr(net, "_stepping", None)  # (an EPropRSNN pickled before it)
        if stepping is None:
            self._eprop_spikes[net.neurons] = output.detach()
        else:
            self._count_eprop_step(net, *stepping)

    @_unobserved
    def _count_eprop_step(self, net: EPropRSNN, x_t: Tensor, fed: Tensor | None) -> None:
        """One :meth:`~EPropRSNN.step`: ``W^in`` over its input ``x_t`` ``[B, I]`` and the
        masked ``W^rec`` over the spikes fed back, ``z[t-1]`` (none at a sequence's first
        step: the initial state is silent), as :meth:`_count_eprop` counts a sequence."""
        mask, spiking, counts = self._classify(x_t)
        self._add(self._layers[net.input], x_t, linear_pairs(net.input.weight, mask),
                  spiking, counts)  # fmt: skip
        if fed is not None:
            mask, spiking, counts = self._classify(fed)
            pairs = linear_pairs(net.recurrent_weight(), mask)
            self._add(self._layers[net.recurrent], fed, pairs, spiking, counts)

    @_unobserved
    def _count_attention(
        self, mha: nn.MultiheadAttention, args: tuple, kwargs: dict, output: object
    ) -> None:
        """An ``nn.MultiheadAttention`` call: its input projections over the query, key
        and value as linear layers (``<name>.in_proj``, read by value as any layer's
        input), the products ``Q Kᵀ`` and ``A V`` of real values (``Q``, ``K``, ``V``
        carry the projections' biases, ``A`` is a softmax): ``2 L S E`` MACs per
        sample, ``L`` queries, ``S`` keys, embedding ``E`` (the heads split ``E``), and
        its output projection ``out_proj`` over the ``L`` attended values (real: a MAC
        per entry and nonzero weight), whatever path its forward takes (the fused one
        in evaluation, or ``bmm`` in training, which the product mode then leaves
        alone). Masks change none of it (the dense products are computed)."""
        names = ("query", "key", "value")
        inputs = [*args[:3], *(kwargs[k] for k in names[len(args[:3]) :] if k in kwargs)]
        if len(inputs) < 3 or not all(isinstance(x, Tensor) for x in inputs):
            return
        if reruns_forward():
            return
        query, key, value = inputs
        e = mha.embed_dim
        if mha._qkv_same_embed_dim:
            weights = mha.in_proj_weight.split(e)
        else:
            weights = (mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight)
        # One call of three projections: its input kind is spikes (counts) where all
        # three inputs are; each input's pairs are ACs or MACs by its own kind.
        part = LayerOperations("", "Linear")
        for x, weight in zip((query, key, value), weights, strict=True):
            mask, spiking, counts = self._classify(x)
            self._add(part, x, linear_pairs(weight, mask), spiking, counts)
        record = self._layers[mha]
        record.calls += 1
        record.spike_calls += int(part.spike_calls == 3)
        record.count_calls += int(part.count_calls == 3)
        record.acs += part.acs
        record.macs += part.macs
        record.input_elements += part.input_elements
        record.input_nonzero += part.input_nonzero
        # Sequence lengths: [L, N, E] ([N, L, E] batch_first), unbatched [L, E].
        batched = query.dim() == 3
        axis = 1 if batched and mha.batch_first else 0
        batch = query.shape[1 - axis] if batched else 1
        length, source = query.shape[axis], key.shape[axis]
        if mha.in_proj_bias is not None:  # one bias read per entry of Q, K and V
            record.bias_reads += batch * (length + 2 * source) * e
        products = self._attention[mha]
        products.calls += 1
        products.macs += 2 * batch * length * source * e
        products.input_elements += batch * (length + 2 * source) * e  # Q, K, V
        products.input_nonzero += batch * (length + 2 * source) * e
        out = self._layers[mha.out_proj]
        attended = torch.ones(batch * length, e, dtype=torch.bool, device=query.device)
        out.calls += 1
        out.macs += linear_pairs(mha.out_proj.weight, attended)
        out.input_elements += batch * length * e
        out.input_nonzero += batch * length * e
        if mha.out_proj.bias is not None:
            out.bias_reads += batch * length * e

    @_unobserved
    def _count_eprop(self, net: EPropRSNN, args: tuple, output: object) -> None:
        """``W^in`` over the input ``x`` ``[T, B, ...]`` of this call and the masked
        ``W^rec`` over the spikes fed back, ``z[0] .. z[T-2]`` (``z[T-1]`` is fed to no
        step of the call; the initial state is silent)."""
        spikes = self._eprop_spikes.pop(net.neurons, None)
        if spikes is None or not args or not isinstance(args[0], Tensor) or reruns_forward():
            return
        x = args[0]
        mask, spiking, counts = self._classify(x)
        pairs = linear_pairs(net.input.weight, mask)
        self._add(self._layers[net.input], x, pairs, spiking, counts)
        fed = spikes[:-1].reshape(-1, net.hidden)
        mask, spiking, counts = self._classify(fed)
        pairs = linear_pairs(net.recurrent_weight(), mask)
        self._add(self._layers[net.recurrent], fed, pairs, spiking, counts)

    def report(self, samples: int) -> OperationReport:
        """The counts so far, per sample of ``samples`` samples run."""
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise ConfigurationError(f"samples must be a positive integer, got {samples!r}")
        records = [*self._layers.values(), *self._attention.values(),
                   *self._mode.records.values()]  # fmt: skip
        layers = [LayerOperations(**vars(r)) for r in records if r.calls]
        # Layers whose forward never ran (and whose weight no other hook counted).
        unused = [f"{r.name} (its forward never ran)" for r in self._layers.values()
                  if not r.calls]  # fmt: skip
        neurons = [NeuronOperations(**{**vars(r), "other": dict(r.other)})
                   for r in self._neurons.values() if r.calls]  # fmt: skip
        return OperationReport(layers, samples, [*self.not_counted, *unused], neurons,
                               list(self.neurons_not_counted))  # fmt: skip

    def remove(self) -> None:
        """Detach the hooks (and leave a run interrupted in this thread)."""
        self._mode.close()
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
