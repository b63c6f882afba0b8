"""ANN → sigma-delta network (SDNN): the same weights, run on changes.

>>> sdnn, report = to_sigma_delta(ann, threshold=0.02)   # ann: nn.Sequential, trained
>>> out = sdnn(frames)        # frames [T, B, ...] -> the ANN's output of each frame [T, B, ...]
>>> print(report)

The network is walked as a sequence of modules (nested ``nn.Sequential`` flattened):

* the input gets a :class:`~spikeflow.layers.sigma_delta.DeltaEncoder`
  (``input_threshold``, default ``threshold``);
* every ``Linear`` / ``Conv1d/2d/3d`` / ``ConvTranspose1d/2d/3d`` becomes a
  :class:`~spikeflow.layers.sigma_delta.DeltaSynapse` (its bias sent once), after
  folding an eval-mode batch norm that follows it (a Linear's only where its output is
  ``[B, F]``, which ``sample`` shows);
* modules that are linear with no constant term (flatten, average pooling, zero
  padding, upsampling, identity) run unchanged on the deltas (time folded into the
  batch); dropout is removed (the identity at inference; on deltas it would drop a
  different part of each step's change);
* every other per-sample function — ReLU (and QCFS, GELU, sigmoid, Lava-DL's
  :class:`~spikeflow.conversion.PiecewiseLinearSiLU` and
  :class:`~spikeflow.conversion.ReLU1`, ... any elementwise activation), max pooling,
  softmax over features, a batch norm that does not fold (the report says why) —
  runs on accumulated values inside a :class:`~spikeflow.layers.sigma_delta.SigmaDelta`
  unit (θ = ``threshold``); consecutive ones share one unit (ReLU then max pooling is
  one unit);
* the output gets a :class:`~spikeflow.layers.sigma_delta.SigmaDecoder`, so the network
  returns the accumulated output: with θ = 0 the ANN's output on each step's input.

Anything else (a module with its own ``forward``, recurrent layers, modules that mix
the samples of a batch) is reported ``unconverted`` and, with ``strict=True``, raised as
a :class:`~spikeflow.conversion.report.ConversionError` naming every one.
"""

from __future__ import annotations

import copy
from collections import OrderedDict

from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

from spikeflow._checks import check_flag
from spikeflow.base import StepModule
from spikeflow.conversion.classify import (
    ACTIVATION_MODULES,
    DROPOUT_MODULES,
    LINEAR_MODULES,
    MAXPOOL_MODULES,
)
from spikeflow.conversion.convert import Conversion
from spikeflow.conversion.fold import fold_batchnorm, fold_problem, layer_output_shapes
from spikeflow.conversion.loihi_activations import PiecewiseLinearSiLU, ReLU1
from spikeflow.conversion.report import ConversionError, ConversionReport
from spikeflow.errors import ConfigurationError
from spikeflow.layers.containers import StepModeContainer
from spikeflow.layers.sigma_delta import (
    DeltaEncoder,
    DeltaSynapse,
    SigmaDecoder,
    SigmaDelta,
    check_delta_threshold,
)
from spikeflow.prune.reparam import finalize

__all__ = ["SigmaDeltaNetwork", "to_sigma_delta"]

#: Functions of one sample (elementwise or over its features): they run in a unit.
PER_SAMPLE_MODULES: tuple[type[nn.Module], ...] = (
    *ACTIVATION_MODULES,
    *MAXPOOL_MODULES,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    PiecewiseLinearSiLU,
    ReLU1,
    nn.Mish,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardtanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Softplus,
    nn.Softsign,
    nn.Tanhshrink,
    nn.LogSigmoid,
    nn.Threshold,
    nn.Softmax,
    nn.LogSoftmax,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
    nn.LayerNorm,
    nn.GroupNorm,
    _BatchNorm,
)


class SigmaDeltaNetwork(nn.Sequential):
    """A sigma-delta network made by :func:`to_sigma_delta`: ``[T, B, ...]`` in, the
    accumulated output of the last layer ``[T, B, ...]`` out (with θ = 0 the ANN's
    output of every step). Each call starts from zero state; stream it with
    :func:`spikeflow.functional.streaming`, step by step after
    ``spikeflow.functional.set_step_mode(net, 's')``.

    Attributes:
        report: the :class:`~spikeflow.conversion.report.ConversionReport`.
    """

    def __init__(self, modules: OrderedDict[str, nn.Module], report: ConversionReport) -> None:
        super().__init__(modules)
        self.report = report


def _is_sequential(module: nn.Module) -> bool:
    """An ``nn.Sequential`` that runs its modules one after the other (a subclass with a
    ``forward`` of its own, a spikeflow container, is a module like any other)."""
    return isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward


def _leaves(module: nn.Module, prefix: str) -> list[tuple[str, nn.Module]]:
    """The modules of a (nested) ``nn.Sequential`` in order, with their qualified names."""
    if _is_sequential(module):
        found: list[tuple[str, nn.Module]] = []
        for name, child in module.named_children():
            found += _leaves(child, f"{prefix}.{name}" if prefix else name)
        return found
    return [(prefix, module)]


def _per_sample_problem(module: nn.Module) -> str | None:
    """Why a per-sample module cannot run on one step of the folded batch (None: it can)."""
    if isinstance(module, MAXPOOL_MODULES) and module.return_indices:
        return "max pooling with return_indices: the indices are not a signal"
    if isinstance(module, (nn.Softmax, nn.LogSoftmax)) and module.dim in (None, 0):
        return f"{type(module).__name__}(dim={module.dim}) is not over the features of a sample"
    if isinstance(module, _BatchNorm) and module.running_mean is None:
        return "batch norm without running statistics mixes the samples of a batch"
    return None


class _Builder:
    """Walks the leaves, fills the report and the modules of the network."""

    def __init__(self, threshold: float | Tensor, shapes: dict[nn.Module, tuple[int, ...]] | None):
        self.threshold = threshold
        self.shapes = shapes
        self.report = ConversionReport()
        self.modules: OrderedDict[str, nn.Module] = OrderedDict()
        self.linear: list[tuple[str, nn.Module]] = []  # modules run on deltas, pending
        self.unit: list[tuple[str, nn.Module]] = []  # functions of one unit, pending
        self.not_folded = ""  # why the batch norm after the last synapse was not folded

    def add(self, name: str, module: nn.Module) -> None:
        key = name.replace(".", "_")
        while key in self.modules:
            key += "_"
        self.modules[key] = module

    def flush_linear(self) -> None:
        if self.linear:
            self.add(self.linear[0][0], StepModeContainer(*(m for _, m in self.linear),
                                                          stateless=True))  # fmt: skip
            self.linear = []

    def flush_unit(self) -> None:
        if self.unit:
            parts = [m for _, m in self.unit]
            activation = parts[0] if len(parts) == 1 else nn.Sequential(*parts)
            self.add(self.unit[0][0], SigmaDelta(activation, self.threshold))
            self.unit = []

    def synapse(self, name: str, layer: nn.Module, bn: tuple[str, nn.Module] | None) -> bool:
        """Add ``layer`` (folding ``bn`` into it if it can); whether ``bn`` was used (if
        not, :attr:`not_folded` says why)."""
        self.flush_unit()
        self.flush_linear()
        source = f"nn.{type(layer).__name__}"
        folded = False
        if bn is not None and isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            bn_name, norm = bn
            if isinstance(layer, nn.Linear) and self.shapes is None:
                problem: str | None = (
                    "a Linear's batch norm folds only where its output is [B, F]: pass "
                    "sample= (one input batch) to check"
                )
            else:
                shape = None if self.shapes is None else self.shapes.get(layer)
                problem = fold_problem(layer, norm, shape)
            if problem is None:
                layer = fold_batchnorm(layer, norm)
                folded = True
            else:
                self.not_folded = f"not folded: {problem}"
        bias = "bias sent once" if layer.bias is not None else "no bias"
        self.report.add(name, source, "replaced", f"DeltaSynapse ({bias}), fed deltas")
        if folded:
            self.report.add(bn_name, f"nn.{type(norm).__name__}", "folded", f"into {name}")
        self.add(name, DeltaSynapse(layer))
        return folded

    def build(self, leaves: list[tuple[str, nn.Module]]) -> None:
        index = 0
        while index < len(leaves):
            name, module = leaves[index]
            source = f"nn.{type(module).__name__}" if type(module).__module__.startswith(
                "torch.nn") else type(module).__name__  # fmt: skip
            index += 1
            why, self.not_folded = self.not_folded, ""
            if isinstance(module, (nn.Linear, _ConvNd)):
                nxt = leaves[index] if index < len(leaves) else None
                bn = nxt if nxt is not None and isinstance(nxt[1], _BatchNorm) else None
                if self.synapse(name, module, bn):
                    index += 1
            elif isinstance(module, DROPOUT_MODULES):
                self.report.add(name, source, "replaced", "removed (the identity at inference)")
            elif isinstance(module, nn.ConstantPad1d | nn.ConstantPad2d | nn.ConstantPad3d) and (
                module.value != 0
            ):
                self.unit_part(name, module, source, "a constant pad value is not linear")
            elif isinstance(module, LINEAR_MODULES) or (
                isinstance(module, nn.ConstantPad1d | nn.ConstantPad2d | nn.ConstantPad3d)
            ):
                self.flush_unit()
                self.linear.append((name, module))
                self.report.add(name, source, "kept", "linear: runs on the deltas")
            elif isinstance(module, PER_SAMPLE_MODULES):
                problem = _per_sample_problem(module)
                if problem is None:
                    self.unit_part(name, module, source, why)
                else:
                    self.unconverted(name, module, source, problem)
            else:
                self.unconverted(
                    name,
                    module,
                    source,
                    "not known to be linear or a function of one sample (a module with its "
                    "own forward, a recurrent layer, ...); use nn.Sequential of torch layers",
                )
        self.flush_unit()
        self.flush_linear()

    def unconverted(self, name: str, module: nn.Module, source: str, why: str) -> None:
        """Report ``module`` and (for ``strict=False``) run it in a unit as it is, unless
        it has a step mode or state of its own (then it is left out)."""
        if any(isinstance(m, StepModule) for m in module.modules()):
            why += "; left out (it has a step mode or state of its own)"
            self.report.add(name, source, "unconverted", why)
            return
        self.report.add(name, source, "unconverted", why)
        self.flush_linear()
        self.unit.append((name, module))

    def unit_part(self, name: str, module: nn.Module, source: str, why: str) -> None:
        self.flush_linear()
        joins = f" (shared with {self.unit[0][0]})" if self.unit else ""
        detail = f"SigmaDelta unit{joins}: on accumulated values"
        self.report.add(name, source, "converted", f"{detail} ({why})" if why else detail)
        self.unit.append((name, module))


def to_sigma_delta(
    model: nn.Module,
    threshold: float | Tensor = 0.0,
    *,
    input_threshold: float | Tensor | None = None,
    sample: Tensor | None = None,
    strict: bool = True,
) -> Conversion:
    """Turn a trained ANN (an ``nn.Sequential``) into a sigma-delta network.

    Args:
        model: the ANN, an ``nn.Sequential`` (nested ones too) of Linear/Conv layers,
            activations, pooling, flatten, batch norm and dropout; not modified (a copy
            is converted, in eval mode).
        threshold: θ >= 0 of every unit's delta encoder (a number, or a tensor
            broadcastable to the unit's output step); 0 sends every change exactly.
        input_threshold: θ of the input's delta encoder; default ``threshold``.
        sample: one input batch ``[B, ...]`` of the ANN, only needed to fold a batch
            norm that follows a Linear (a forward pass shows that its output is
            ``[B, F]``).
        strict: raise :class:`~spikeflow.conversion.report.ConversionError` naming every
            part that could not be converted (otherwise return the partial network
            and its report).

    Returns:
        ``(sdnn, report)``: the :class:`SigmaDeltaNetwork` (input ``[T, B, ...]``, output
        the accumulated last layer ``[T, B, ...]``) and the report.
    """
    if not isinstance(model, nn.Module):
        raise ConfigurationError(
            f"to_sigma_delta expects a torch.nn.Module, got {type(model).__name__}"
        )
    theta = check_delta_threshold(threshold, "to_sigma_delta")
    theta_in = theta if input_threshold is None else input_threshold
    theta_in = check_delta_threshold(theta_in, "to_sigma_delta (input_threshold)")
    strict = check_flag("to_sigma_delta", "strict", strict)
    ann = copy.deepcopy(model).eval()
    finalize(ann)  # pruned layers (spikeflow.prune) as plain layers holding the sparse weights
    if not _is_sequential(ann):
        raise ConversionError(
            f"to_sigma_delta converts an nn.Sequential (nested ones too), whose modules run "
            f"one after the other; got {type(model).__name__} with a forward of its own. "
            "Write the network as nn.Sequential(...)."
        )
    shapes = layer_output_shapes(ann, sample) if sample is not None else None
    builder = _Builder(theta, shapes)
    builder.build(_leaves(ann, ""))
    report = builder.report
    if strict:
        report.refuse_unconverted(
            type(model).__name__, "a sigma-delta network",
            "Pass strict=False to get the partial network and its report.",
        )  # fmt: skip
    modules: OrderedDict[str, nn.Module] = OrderedDict(input=DeltaEncoder(theta_in))
    modules.update(builder.modules)
    modules["output"] = SigmaDecoder()
    return Conversion(SigmaDeltaNetwork(modules, report), report)  # type: ignore[arg-type]
