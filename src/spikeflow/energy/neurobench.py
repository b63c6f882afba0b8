"""NeuroBench's metrics (Yik et al., Nature Communications 2025; ``neurobench`` 2.3.0)
for a spikeflow model run on time-major ``[T, B, ...]`` inputs.

NeuroBench runs a network one step at a time and reads its layers with hooks; the
definitions followed here are its own, transcribed (not imported: ``neurobench`` is not
a dependency):

* **ParameterCount**: the parameters' entries. **Footprint**: bytes of the parameters
  and the buffers; a quantized layer's weight (:func:`spikeflow.quant.weight_bits`:
  ``--weight-bits``, Loihi's grid) counts as deployed, its integers packed at their bits
  (``ceil(entries·bits / 8)`` bytes) plus its scales (one per output channel, or one,
  in float32), in place of the float weight and the quantizer's settings that training
  keeps (NeuroBench reads ``element_size()``, 4 bytes for a fake-quantized weight).
  **ConnectionSparsity**: zero weights over all weights of the leaf
  ``Linear``/``Conv1d/2d/3d`` modules (weights only) and of the ``RNN``/``LSTM``/``GRU``
  layers and cells (weights and biases), rounded to 4 decimals; a layer with a
  ``parametrize``-d weight (pruning, ``--weight-bits``) counts with the weight it
  applies, as NeuroBench counts it once baked (``prune.finalize``).
* **ClassificationAccuracy**: correct predictions over samples.
* Regression (``task="regression"``): **MSE**, the mean squared error of each batch's
  entries, and **SMAPE**, ``200 · mean(|p − y| / (|p| + |y|))`` of each batch (a batch
  with any 0/0 entry scores 200 whole: NeuroBench's ``nan_to_num(nan=200)`` of the
  mean), both averaged over batches weighted by their sizes; **R2**, accumulated over
  the whole set: per output column ``1 − Σ(y − p)² / Σ(y − ȳ)²``, then the columns'
  mean (NeuroBench's class reads the columns 0 and 1 of ``[N, 2]`` outputs; with two
  columns the two agree).
* **ActivationSparsity**: zero outputs over all outputs of the activation layers (every
  spiking layer, ``nn.ReLU``, ``nn.Sigmoid``), per batch, then the batches' values
  averaged weighted by their sizes (NeuroBench's per-batch accumulation, not one ratio
  over the whole set). **ActivationSparsityByLayer**: one ratio per layer over the set.
* **MembraneUpdates**: per neuron layer and batch, every neuron at the first step, then
  the neurons whose membrane (after reset, snnTorch's ``mem``) changed from the step
  before; per sample.
* **SynapticOperations**: per ``Linear``/``Conv1d/2d/3d`` call *and time step*, the
  (nonzero input, nonzero weight) pairs that reach an output, biases left out; a step's
  input counts as spikes (ACs) when its values are all in ``{0, 1, -1}``, otherwise
  as MACs (``Effective_MACs``, ``Effective_ACs``); ``Dense`` counts every (input,
  weight) pair, zeros included (zero padding excluded); per sample. A ``Recurrent``'s
  ``W y[t-1]`` (and ``LinearRecurrentContainer``'s two parts), which run as
  ``F.linear``, count per step as snnTorch's ``RLeaky`` recurrent Linear does.

Where these differ from :mod:`spikeflow.energy`'s own counts: NeuroBench's MACs skip zero
inputs (spikeflow's counter multiplies every entry of a real-valued input); spikes
scaled by a constant (a graded-spike factor of 0.5) are spikes for spikeflow but MACs for
NeuroBench; and NeuroBench judges each time step apart, where the counter judges a call.
A layer that runs once for all steps (on ``[B, ...]``) is counted once here, as it ran.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from spikeflow.energy._neurobench_regression import _RegressionScores
from spikeflow.energy._pairs import conv_pairs, linear_pairs
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.layers.recurrent import LinearRecurrentContainer, Recurrent
from spikeflow.memory.recompute import reruns_forward

__all__ = [
    "NeuroBenchCounter",
    "NeuroBenchResults",
    "format_neurobench",
    "neurobench_metrics",
    "neurobench_static",
]

#: NeuroBench's stateless connection layers (its ``STATELESS_LAYERS``).
_CONNECTIONS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_RECURRENT = (nn.RNNBase, nn.RNNCellBase)
#: NeuroBench's non-spiking activations (its ``SUPPORTED_ACTIVATIONS``).
_ACTIVATIONS = (nn.ReLU, nn.Sigmoid)


def _spiking_types() -> tuple[type[nn.Module], ...]:
    from spikeflow.training.monitors import SPIKING_LAYER_TYPES  # (imports layers)

    return SPIKING_LAYER_TYPES


def _find(model: nn.Module, types: tuple[type, ...]) -> list[tuple[str, nn.Module]]:
    """Modules of ``types`` below ``model`` (not ``model`` itself), not looking inside a
    module found: NeuroBench's search for activation and connection layers."""
    found: list[tuple[str, nn.Module]] = []

    def walk(prefix: str, module: nn.Module) -> None:
        for name, child in module.named_children():
            full = f"{prefix}.{name}" if prefix else name
            if isinstance(child, types):
                found.append((full, child))
            else:
                walk(full, child)

    walk("", model)
    return found


def _connection_sparsity(model: nn.Module) -> float | None:
    zeros = total = 0
    for module in model.modules():
        # NeuroBench looks at the leaves below the network; a layer with a parametrized
        # (pruned, quantized) weight counts as one, with that weight, as once baked
        children = (n for n, _ in module.named_children() if n != "parametrizations")
        if module is model or next(children, None) is not None:
            continue
        if isinstance(module, _CONNECTIONS):
            weights = [module.weight]
        elif isinstance(module, _RECURRENT):
            weights = list(module.parameters(recurse=False))  # and biases
        else:
            continue
        zeros += sum(int((w == 0).sum()) for w in weights)
        total += sum(w.numel() for w in weights)
    return round(zeros / total, 4) if total else None


def neurobench_static(model: nn.Module) -> dict[str, Any]:
    """NeuroBench's static metrics of ``model``: ``ParameterCount`` (entries),
    ``Footprint`` (bytes of parameters and buffers) and ``ConnectionSparsity`` (zero
    weights over weights of its Linear, Conv and RNN layers, rounded to 4 decimals;
    ``None`` for a model without such layers, where NeuroBench divides by zero).

    Raises:
        ConfigurationError: ``model`` is not an ``nn.Module``.
    """
    if not isinstance(model, nn.Module):
        raise ConfigurationError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    params = list(model.parameters())
    return {
        "ParameterCount": sum(p.numel() for p in params),
        "Footprint": _footprint(model),
        "ConnectionSparsity": _connection_sparsity(model),
    }


def _footprint(model: nn.Module) -> int:
    """Bytes of the parameters and buffers, a quantized weight as deployed: its integers
    packed at its bits and its float32 scales (see the module doc)."""
    from spikeflow.quant.weights import WeightQuantizer, weight_bits  # (imports layers)

    replaced: set[int] = set()
    deployed = 0
    for module in model.modules():
        bits = weight_bits(module)
        if bits is None:
            continue
        chain = module.parametrizations.weight
        replaced |= {id(t) for t in (*chain.parameters(), *chain.buffers())}
        with torch.no_grad():
            weight = module.weight
        deployed += -(-weight.numel() * bits // 8)  # packed, whole bytes
        quantizer = next((q for q in chain if isinstance(q, WeightQuantizer)), None)
        if quantizer is not None:  # Loihi's grid has a fixed scale
            scales = 1
            if quantizer.per_channel and weight.dim() >= 2:
                scales = weight.shape[quantizer.channel_dim]
                if quantizer.channel_dim == 1:  # a grouped transposed convolution
                    scales *= quantizer.groups
            deployed += scales * max(4, weight.element_size())
    tensors = [t for t in (*model.parameters(), *model.buffers()) if id(t) not in replaced]
    return deployed + sum(t.numel() * t.element_size() for t in tensors)


def _is_ternary(x: Tensor) -> bool:
    """NeuroBench's spike test: every value is 0, 1 or -1."""
    return not bool(((x != 0) & (x != 1) & (x != -1)).any())


def _pairs(layer: nn.Module, mask: Tensor, weight: Tensor) -> int:
    """(entry of the boolean ``mask``, nonzero entry of ``weight``) pairs that reach an
    output of ``layer`` (a Linear or a convolution; its padding mode applies)."""
    if isinstance(layer, nn.Linear):
        return linear_pairs(weight, mask)
    return conv_pairs(layer, mask, weight)


@dataclass
class NeuroBenchResults:
    """NeuroBench's metrics of one evaluation. ``as_neurobench()`` gives them under
    NeuroBench's names, as its ``Benchmark.run()`` returns them."""

    static: dict[str, Any]
    samples: int
    classification_accuracy: float | None
    activation_sparsity: float
    activation_sparsity_by_layer: dict[str, float]
    membrane_updates: float
    effective_macs: float
    effective_acs: float
    dense: float
    #: Spiking layers whose membrane is not recorded (not in MembraneUpdates).
    membrane_not_counted: list[str] = field(default_factory=list)
    #: Layers with weights that SynapticOperations does not count (RNN layers).
    synops_not_counted: list[str] = field(default_factory=list)
    #: Regression metrics (``None`` where nothing was scored as a regression).
    mse: float | None = None
    smape: float | None = None
    r2: float | None = None

    def as_neurobench(self) -> dict[str, Any]:
        """The metrics as NeuroBench names them."""
        out: dict[str, Any] = dict(self.static)
        if self.classification_accuracy is not None:
            out["ClassificationAccuracy"] = self.classification_accuracy
        for name, value in (("MSE", self.mse), ("SMAPE", self.smape), ("R2", self.r2)):
            if value is not None:
                out[name] = value
        out["ActivationSparsity"] = self.activation_sparsity
        out["ActivationSparsityByLayer"] = dict(self.activation_sparsity_by_layer)
        out["MembraneUpdates"] = self.membrane_updates
        out["SynapticOperations"] = {
            "Effective_MACs": self.effective_macs,
            "Effective_ACs": self.effective_acs,
            "Dense": self.dense,
        }
        return out


class NeuroBenchCounter:
    """Hooks that collect NeuroBench's workload metrics while ``model`` runs on
    time-major ``[T, B, ...]`` inputs; each call of ``model`` is one batch::

        with NeuroBenchCounter(model) as nb:
            for x, y in loader:
                nb.score(model(x).sum(0).argmax(-1), y)
        nb.results()

    While it is open, the declared neurons record their membrane (``store_v_seq``).
    A batch run a few steps per call (early exit: :func:`spikeflow.inference.early_exit`)
    is counted as one batch inside :meth:`stepped`.
    """

    def __init__(self, model: nn.Module) -> None:
        if not isinstance(model, nn.Module):
            raise ConfigurationError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        from spikeflow.training.monitors import MEMBRANE_LAYER_TYPES

        self.model = model
        self._handles: list[RemovableHandle] = []
        self._activations = _find(model, (*_spiking_types(), *_ACTIVATIONS))
        self._connections = _find(model, (*_CONNECTIONS, *_RECURRENT))
        self.synops_not_counted = [n for n, m in self._connections if isinstance(m, _RECURRENT)]
        self.membrane_not_counted = [
            n for n, m in self._activations
            if isinstance(m, _spiking_types()) and not isinstance(m, MEMBRANE_LAYER_TYPES)
        ]  # fmt: skip
        self._stored: dict[nn.Module, bool] = {}
        self._step: tuple[int, int] | None = None  # this batch's (T, B)
        self.samples = 0
        self.correct = 0
        self.scored = 0
        self._sparsity_weighted = 0.0  # per-batch sparsity times the batch size
        self._batch_zero = self._batch_total = 0
        self.layer_nonzero: dict[str, int] = {}
        self.layer_total: dict[str, int] = {}
        self.membrane: dict[str, int] = {}
        self._last_v: dict[str, Tensor] = {}
        self.macs = self.acs = self.dense = 0
        self._last_batch: int | None = None  # the latest batch's B (weights scores)
        self._regression = _RegressionScores()
        self._feedback_y: dict[nn.Module, Tensor | None] = {}
        self._stepped: int | None = None  # inside stepped(): the batch's samples

    @contextmanager
    def stepped(self, batch: int) -> Iterator[NeuroBenchCounter]:
        """Count the model's calls inside the block as the steps of one batch of
        ``batch`` samples, run a chunk of steps per call and continuing from the call
        before (NeuroBench's own step-by-step run): the membrane of a call is compared
        with the previous call's last step, the batch's ActivationSparsity spans all the
        calls, and the workload metrics are divided by ``batch`` samples, not by the
        samples of each call. Samples that stop early (early exit) are dropped from the
        comparison with :meth:`select`; their workload is what they ran.

        Raises:
            ConfigurationError: ``batch`` is not a positive integer, or a stepped
                block is already open.
        """
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ConfigurationError(
                f"NeuroBenchCounter.stepped: batch must be a positive integer, got {batch!r}"
            )
        if self._stepped is not None:
            raise ConfigurationError("NeuroBenchCounter.stepped: a stepped batch is already open")
        self._stepped = batch
        self._batch_zero = self._batch_total = 0
        self._last_v.clear()
        try:
            yield self
        finally:
            self._stepped = None
            self._step = None
            self._last_v.clear()
        self.samples += batch
        self._last_batch = batch
        if self._batch_total:
            self._sparsity_weighted += self._batch_zero / self._batch_total * batch

    def select(self, keep: Tensor) -> None:
        """Inside :meth:`stepped`: keep only the samples at positions ``keep`` (of
        those the last call ran) for the next call's membrane comparison.

        Raises:
            ConfigurationError: called outside :meth:`stepped`.
        """
        if self._stepped is None:
            raise ConfigurationError("NeuroBenchCounter.select: only inside stepped()")
        for name, last in self._last_v.items():
            self._last_v[name] = last[keep.to(last.device)]

    def __enter__(self) -> NeuroBenchCounter:
        from spikeflow.training.monitors import MEMBRANE_LAYER_TYPES

        self._handles.append(self.model.register_forward_pre_hook(self._batch_start))
        self._handles.append(self.model.register_forward_hook(self._batch_end))
        for name, module in self._activations:
            if isinstance(module, MEMBRANE_LAYER_TYPES):
                self._stored[module] = module.store_v_seq
                module.store_v_seq = True
            self._handles.append(module.register_forward_hook(
                lambda m, args, out, name=name: self._activation(name, m, out)))  # fmt: skip
        for _, module in self._connections:
            if isinstance(module, _CONNECTIONS):
                self._handles.append(module.register_forward_pre_hook(self._connection))
        for module in self.model.modules():  # their Linear runs as F.linear, unhooked
            if isinstance(module, (Recurrent, LinearRecurrentContainer)):
                self._handles.append(module.register_forward_pre_hook(self._feedback_start))
                self._handles.append(module.register_forward_hook(self._feedback))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for module, stored in self._stored.items():
            module.store_v_seq = stored
        self._stored.clear()

    def _batch_start(self, model: nn.Module, args: tuple) -> None:
        x = args[0] if args else None
        if not isinstance(x, Tensor) or x.dim() < 2:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ShapeError(
                f"NeuroBenchCounter: the model's input must be a time-major tensor [T, B, ...]; "
                f"got {got}"
            )
        self._step = (x.shape[0], x.shape[1])
        if self._stepped is None:  # (inside stepped(), a call continues the batch)
            self._batch_zero = self._batch_total = 0
            self._last_v.clear()

    def _batch_end(self, model: nn.Module, args: tuple, output: object) -> None:
        if self._step is None or self._stepped is not None:
            self._step = None
            return
        batch = self._step[1]
        self.samples += batch
        self._last_batch = batch
        if self._batch_total:
            self._sparsity_weighted += self._batch_zero / self._batch_total * batch
        self._step = None

    def _steps(self, x: Tensor) -> Iterable[Tensor]:
        """``x`` split into NeuroBench's per-step calls: ``[T, B, ...]`` or ``[T·B, ...]``
        step by step; any other input (a layer run once for all steps) as it is."""
        if self._step is None:
            return (x,)
        T, B = self._step
        if x.dim() >= 2 and tuple(x.shape[:2]) == (T, B):
            return x.unbind(0)
        if x.dim() >= 1 and x.shape[0] == T * B and T > 1:
            return x.reshape(T, B, *x.shape[1:]).unbind(0)
        return (x,)

    def _activation(self, name: str, module: nn.Module, output: object) -> None:
        out = output[0] if isinstance(output, (tuple, list)) else output
        if not isinstance(out, Tensor) or self._step is None or reruns_forward():
            return  # (a checkpointed segment's recomputation ran nothing new)
        out = out.detach()
        nonzero, total = int(torch.count_nonzero(out)), out.numel()
        self._batch_zero += total - nonzero
        self._batch_total += total
        self.layer_nonzero[name] = self.layer_nonzero.get(name, 0) + nonzero
        self.layer_total[name] = self.layer_total.get(name, 0) + total
        v_seq = getattr(module, "v_seq", None) if module in self._stored else None
        if isinstance(v_seq, Tensor):
            v_seq = v_seq.detach()
            last = self._last_v.get(name)
            updates = 0
            if last is None:  # the batch's first step: every neuron
                updates += v_seq[0].numel()
                v_seq, last = v_seq[1:], v_seq[0]
            if len(v_seq):
                before = torch.cat((last.unsqueeze(0), v_seq[:-1]))
                updates += int(torch.count_nonzero(v_seq - before))
                last = v_seq[-1]
            self._last_v[name] = last
            self.membrane[name] = self.membrane.get(name, 0) + updates

    def _count(self, layer: nn.Module, steps: Iterable[Tensor], weight: Tensor) -> None:
        """NeuroBench's synaptic operations of ``layer`` applying ``weight`` to ``steps``."""
        ones = torch.ones_like(weight)
        for step in steps:
            mask = step != 0
            effective = _pairs(layer, mask, weight)
            if _is_ternary(step):
                self.acs += effective
            else:
                self.macs += effective
            self.dense += _pairs(layer, torch.ones_like(mask), ones)

    def _connection(self, module: nn.Module, args: tuple) -> None:
        if not args or not isinstance(args[0], Tensor) or reruns_forward():
            return
        with torch.no_grad():
            self._count(module, self._steps(args[0].detach()), module.weight)

    def _feedback_start(self, module: nn.Module, args: tuple) -> None:
        """The fed-back output a recurrent container starts this call from (None: zeros)."""
        self._feedback_y[module] = None
        x = args[0] if args else None
        if isinstance(x, Tensor) and (module.streaming or "_explicit" in module.__dict__):
            step = x.shape[1:] if module.step_mode == "m" else x.shape
            try:
                state = module._carried_state(module._output_shape(step))
            except Exception:  # the container's own call names the problem
                return
            self._feedback_y[module] = None if state is None else state["y"]

    def _feedback(self, module: nn.Module, args: tuple, output: object) -> None:
        """A ``Recurrent``'s ``W y[t-1]`` per step (and ``LinearRecurrentContainer``'s
        input part), as NeuroBench counts snnTorch's ``RLeaky`` recurrent Linear."""
        first = self._feedback_y.pop(module, None)
        if not isinstance(output, Tensor) or reruns_forward():
            return
        with torch.no_grad():
            y = output.detach() if module.step_mode == "m" else output.detach().unsqueeze(0)
            x = args[0].detach() if module.step_mode == "m" else args[0].detach().unsqueeze(0)
            first = torch.zeros_like(y[0]) if first is None else first.detach()
            before = torch.cat((first.unsqueeze(0), y[:-1]))
            if isinstance(module, Recurrent):
                self._count(module.recurrent, before.unbind(0), module.feedback_weight())
            else:
                weight, n_in = module.rc.weight, module.in_features
                self._count(module.rc, x.unbind(0), weight[:, :n_in])
                self._count(module.rc, before.unbind(0), weight[:, n_in:])

    def score(self, preds: Tensor, labels: Tensor) -> None:
        """Add a batch's predictions to ClassificationAccuracy.

        Raises:
            ShapeError: ``preds`` and ``labels`` of different shapes.
        """
        if preds.shape != labels.shape:
            raise ShapeError(
                f"NeuroBenchCounter.score: preds {tuple(preds.shape)} and labels "
                f"{tuple(labels.shape)} must have the same shape"
            )
        self.correct += int((preds == labels).sum())
        self.scored += labels.numel()

    def score_regression(self, preds: Tensor, targets: Tensor) -> None:
        """Add the latest batch's predictions to MSE, SMAPE and R2 (weighted by that
        batch's size ``B``, as NeuroBench weights by its batch). R2's columns are the
        last dimension (a 1-D ``preds``: one column).

        Raises:
            ShapeError: ``preds`` and ``targets`` of different shapes, or a number of
                columns other than the earlier batches'.
            ConfigurationError: the model has not run on a batch yet.
        """
        if preds.shape != targets.shape:
            raise ShapeError(
                f"NeuroBenchCounter.score_regression: preds {tuple(preds.shape)} and "
                f"targets {tuple(targets.shape)} must have the same shape"
            )
        if self._last_batch is None:
            raise ConfigurationError(
                "NeuroBenchCounter.score_regression: the model has not run on a batch yet"
            )
        self._regression.add(preds, targets, self._last_batch)

    def results(self) -> NeuroBenchResults:
        """The metrics so far (workload metrics per sample).

        Raises:
            ConfigurationError: the model has not run on a batch yet.
        """
        n = self.samples
        if n == 0:
            raise ConfigurationError("NeuroBenchCounter: the model has not run on a batch yet")
        by_layer = {
            k: (self.layer_total[k] - self.layer_nonzero[k]) / self.layer_total[k]
            for k in self.layer_total if self.layer_total[k]
        }  # fmt: skip
        return NeuroBenchResults(
            static=neurobench_static(self.model),
            samples=n,
            classification_accuracy=self.correct / self.scored if self.scored else None,
            activation_sparsity=self._sparsity_weighted / n,
            activation_sparsity_by_layer=by_layer,
            membrane_updates=sum(self.membrane.values()) / n,
            effective_macs=self.macs / n,
            effective_acs=self.acs / n,
            dense=self.dense / n,
            membrane_not_counted=list(self.membrane_not_counted),
            synops_not_counted=list(self.synops_not_counted),
            **self._regression.results(),
        )


def _vote(out: Tensor) -> Tensor:
    """The class with the largest output summed over time (``[T, B, C]`` to ``[B]``)."""
    return out.sum(0).argmax(-1)


def _identity(out: Tensor) -> Tensor:
    return out


def neurobench_metrics(
    model: nn.Module,
    loader: Iterable[tuple[Tensor, Tensor]],
    *,
    postprocess: Callable[[Tensor], Tensor] | None = None,
    task: Literal["classification", "regression"] = "classification",
    device: str | torch.device | None = None,
) -> NeuroBenchResults:
    """NeuroBench's static and workload metrics of ``model`` on ``loader``.

    Args:
        model: a spikeflow model taking ``[T, B, ...]`` (run in eval mode; its mode is
            restored after).
        loader: batches ``(x, labels)`` with ``x`` time-major ``[T, B, ...]``.
        postprocess: the model's output to predictions, compared to ``labels``
            (default: for classification the class with the largest output summed over
            time; for regression the output as it is).
        task: ``"classification"`` (ClassificationAccuracy) or ``"regression"`` (MSE,
            SMAPE and R2; R2's columns are the last dimension).
        device: where to run (default: where ``x`` is).

    Raises:
        ConfigurationError: ``model`` not a module, ``task`` unknown, or ``loader`` gave
            no batch.
        ShapeError: an input that is not ``[T, B, ...]``, or predictions of another
            shape than ``labels``.
    """
    if task not in ("classification", "regression"):
        raise ConfigurationError(
            f"neurobench_metrics: task must be 'classification' or 'regression', got {task!r}"
        )
    if postprocess is None:
        postprocess = _vote if task == "classification" else _identity
    counter = NeuroBenchCounter(model)
    score = counter.score if task == "classification" else counter.score_regression
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), counter:
            for x, labels in loader:
                if device is not None:
                    x, labels = x.to(device), labels.to(device)
                score(postprocess(model(x)), labels)
    finally:
        model.train(was_training)
    if counter.samples == 0:
        raise ConfigurationError("neurobench_metrics: the loader gave no batch")
    return counter.results()


def format_neurobench(metrics: dict[str, Any]) -> list[str]:
    """Lines printing the metrics of :meth:`NeuroBenchResults.as_neurobench`."""
    lines = ["NeuroBench metrics (Footprint in bytes; workload metrics per sample):"]
    for key, value in metrics.items():
        if key == "ActivationSparsityByLayer":
            continue
        if isinstance(value, dict):
            lines += [f"  {key}:"] + [f"    {k:<20} {v:,.1f}" for k, v in value.items()]
        elif isinstance(value, float):
            lines.append(f"  {key:<24} {value:.4f}" if value < 10 else f"  {key:<24} {value:,.1f}")
        else:
            lines.append(f"  {key:<24} {value}")
    return lines
