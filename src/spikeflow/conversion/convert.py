"""ANN-to-SNN conversion (methods.md 7): trace, fold, calibrate, replace, report.

>>> snn, report = convert(ann, calibration_images, norm="percentile", percentile=99.9)
>>> print(report)                                  # what happened to every module and call
>>> rate = snn(constant_input(images, 32)).mean(0) # [T, B, ...] in, mean over T out

Steps:

1. **Trace** the ANN with ``torch.fx``. A (sub)module that does not trace is converted
   module by module instead: its children are converted (each traced if it can be), its
   own ``forward`` is kept, and relu calls made directly in that ``forward`` are caught
   during calibration and reported as unconverted.
2. **Fold** every batch norm that follows a convolution or linear layer into it
   (:mod:`~spikeflow.conversion.fold`), where it normalises that layer's output
   features (a Linear's only on ``[B, F]``: the shapes come from one forward pass on
   the first calibration batch); other eval-mode batch norms run as the per-channel
   affine maps they are, and the report says why each was not folded.
3. **Calibrate**: run the calibration data through the ANN and record, at each ReLU,
   the max or a percentile, per layer or per channel
   (:mod:`~spikeflow.conversion.calibrate`). QCFS layers need no data: λ is the scale.
4. **Replace** each ReLU (``nn.ReLU``, ``F.relu``, ``torch.relu``, ``x.relu()``) and each
   QCFS by an IF neuron with soft reset whose threshold is the scale and whose spikes
   carry it (:class:`~spikeflow.conversion.neuron.ConversionIFNode`), or by a group
   neuron (:class:`~spikeflow.conversion.group.GroupNeuron`, ``group_size=m``); the
   membrane starts at ``initial_membrane·θ`` (default 0 for ReLU, ``φ·λ = λ/2`` for
   QCFS). Max pooling becomes spike-count-gated max pooling
   (:class:`~spikeflow.conversion.pooling.GatedMaxPool`); average pooling, flatten,
   residual additions and the other affine operations run unchanged on every step.
   Calls that reduce, join, cut, index or merge dim 0, into which the SNN folds time,
   are refused by name (:mod:`~spikeflow.conversion.batchdim`; decided on the
   calibration batches where the trace cannot tell).

What a site (an activation, a max pool) becomes is its conversion rule's answer
(:mod:`~spikeflow.conversion.rules`; the built-in ones in
:mod:`~spikeflow.conversion.builtin_rules`, a user's through ``rules=`` or
:func:`~spikeflow.conversion.rules.register_rule`).

This module holds the public API and the orchestration (checks, calibration, the
report); the tracer and the converter that walks the model (traced, or module by module)
and replaces its sites are in :mod:`~spikeflow.conversion.converter`; the passes over a
traced graph are in
:mod:`~spikeflow.conversion.rewrite`, the placeholders they leave in
:mod:`~spikeflow.conversion.site`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from torch import Tensor, nn

from spikeflow.conversion.builtin_rules import BUILTIN_RULES, RELU_RULE
from spikeflow.conversion.converter import MaxPoolMode, TraceMode, _Converter
from spikeflow.conversion.fold import probe_output_shapes
from spikeflow.conversion.report import ConversionReport
from spikeflow.conversion.rules import ConversionRule
from spikeflow.conversion.site import Site
from spikeflow.conversion.snn import ConvertedSNN, TimeFolded
from spikeflow.errors import ConfigurationError
from spikeflow.prune.reparam import finalize

__all__ = ["Conversion", "convert"]


class Conversion(NamedTuple):
    """The result of :func:`convert`: the spiking network and what was done."""

    snn: ConvertedSNN
    report: ConversionReport


def convert(
    model: nn.Module,
    calibration_data: Tensor | Iterable[Any] | None = None,
    *,
    norm: str = "max",
    percentile: float | None = None,
    per_channel: bool = False,
    include_zeros: bool = False,
    levels: int | None = None,
    fraction: float | None = None,
    momentum: float | None = None,
    initial_membrane: float | None = None,
    group_size: int | None = None,
    multi_threshold: int | None = None,
    negative_spikes: bool = False,
    coding: str = "rate",
    max_pool: MaxPoolMode = "gated",
    strict: bool = True,
    trace: TraceMode = "auto",
    rules: Mapping[type[nn.Module], ConversionRule] | None = None,
) -> Conversion:
    """Convert a trained ReLU (or QCFS) network into a spiking network of IF neurons.

    Args:
        model: the trained ANN (not modified; a copy is converted in eval mode).
        calibration_data: a tensor batch, or an iterable of batches or of
            ``(input, label)`` pairs (a DataLoader); needed unless every activation is QCFS.
        norm: ``'max'`` (max-norm, Diehl 2015), ``'percentile'`` (robust norm,
            Rueckauer 2017) or ``'gaussian'`` (the threshold minimising the expected error
            of a ``levels``-level clipped ReLU for Gaussian pre-activations; Huang, Fang
            et al. 2025) or ``'ltb'`` (local threshold balancing, Bu et al. 2025:
            calibrated layer by layer on the clipped network, as SpikingJelly's
            ``LocalThresholdBalancingRecipe``, which is ``norm='ltb', per_channel=True,
            initial_membrane=0.5``) for the ReLU scales.
        percentile: p of the robust norm, a percentage in (0, 100] (99.9 or 99.99
            typically; default 99.9). Only with ``norm='percentile'``: given with
            ``norm='max'`` it raises instead of being ignored.
        per_channel: one scale per channel instead of one per layer.
        include_zeros: robust norm over all activations, zeros included (SpikingJelly),
            instead of over the positive ones (Rueckauer's SNN toolbox, the default).
            Only with ``norm='percentile'``.
        levels: the output levels the converted neurons resolve (``T`` for IF neurons
            run ``T`` steps, ``T·group_size`` for group neurons); needed by, and only
            used with, ``norm='gaussian'``.
        fraction: with ``norm='max'``, the scale is this share (in (0, 1]) of the
            largest activation (SpikingJelly's ``RateCodingRecipe(mode=0.5)``).
        momentum: with ``norm='max'`` or ``'percentile'``, the scale is a moving
            average over the batches of each batch's statistic, ``s ← (1 − m)·s +
            m·s_batch`` from the first batch's (SpikingJelly's, ``m = 0.1``), instead of
            the maximum over all batches (max) or their plain mean (percentile).
        initial_membrane: the membrane at t = 0 in units of the threshold; default 0 for
            ReLU sites and ``φ`` (1/2) for QCFS sites.
        group_size: replace every neuron by a group neuron of this many members
            (methods.md 7.3; the paper uses 4); None for plain IF neurons.
        multi_threshold: replace every neuron by a multi-threshold neuron with this many
            thresholds θ/2^j (methods.md 7.4; the authors use 8); not with group_size.
        negative_spikes: the multi-threshold neurons may also fire negative spikes to
            undo an overshoot (the authors' ``MTH_with_neg``).
        coding: ``'rate'`` (default) or ``'differential'`` (methods.md 7.4: the network
            sends differences of running means and runs a bias step first; its neurons
            are :class:`~spikeflow.conversion.differential.DifferentialNeuron`, with
            ``multi_threshold`` thresholds if given; max pooling only with
            non-overlapping windows; no group neurons, no streaming).
        max_pool: ``'gated'`` (spike-count gated max pool, default) or ``'keep'`` (max of
            each step's values, which overestimates).
        strict: raise :class:`~spikeflow.conversion.report.ConversionError` naming
            everything that could not be converted (otherwise only report it).
        trace: ``'auto'`` (torch.fx, module by module where tracing fails), ``'fx'``
            (tracing must succeed) or ``'modules'`` (module by module only).
        rules: ``{module type: ConversionRule}`` for this conversion, on top of the
            built-in rules (``nn.ReLU``, ``QCFS``, the max pools; one given here
            overrides them) and those :func:`~spikeflow.conversion.rules.register_rule`
            added (:mod:`~spikeflow.conversion.rules`): each site of such a type is
            calibrated as its rule observes and replaced by what its rule gives. A rule
            for ``nn.ReLU``, a max pool or a torch activation (``nn.Hardtanh``, ...)
            applies to its calls too (``F.hardtanh(x, 0, 6)``: constant arguments, not
            in place).

    Returns:
        ``(snn, report)``: the :class:`~spikeflow.conversion.snn.ConvertedSNN` (input
        ``[T, B, ...]``, output ``[T, B, ...]``; average it over T) and the report.
    """
    if not isinstance(model, nn.Module):
        raise ConfigurationError(f"convert expects a torch.nn.Module, got {type(model).__name__}")
    if any(isinstance(m, (ConvertedSNN, TimeFolded)) for m in model.modules()):
        raise ConfigurationError(
            f"convert expects the ANN; {type(model).__name__} is (or holds) a network "
            "convert made already: convert the ANN it came from instead"
        )
    converter = _Converter(
        norm=norm,
        percentile=percentile,
        per_channel=per_channel,
        include_zeros=include_zeros,
        levels=levels,
        fraction=fraction,
        momentum=momentum,
        initial_membrane=initial_membrane,
        group_size=group_size,
        multi_threshold=multi_threshold,
        negative_spikes=negative_spikes,
        coding=coding,
        max_pool=max_pool,
        trace=trace,
        rules=rules,
    )
    ann = copy.deepcopy(model).eval()
    finalize(ann)  # pruned layers (spikeflow.prune) as plain layers holding the sparse weights
    if calibration_data is not None and trace != "modules":
        converter.output_shapes, calibration_data = probe_output_shapes(ann, calibration_data)
    body = converter.convert_tree(ann, "")
    sites = [m for m in body.modules() if isinstance(m, Site)]
    needs_data = any(s.observer is not None for s in sites)
    if not needs_data and (fraction is not None or momentum is not None):
        given = "fraction" if fraction is not None else "momentum"
        raise ConfigurationError(
            f"{given}={fraction if fraction is not None else momentum!r} shapes the "
            "calibrated ReLU scales, and this model has no ReLU to calibrate (QCFS "
            "activations keep their trained λ): it would be ignored; leave it out"
        )
    if calibration_data is None:
        if needs_data:
            observed = [s for s in sites if s.observer is not None]
            names = ", ".join(s.site_name for s in observed)
            if any(s.rule is not RELU_RULE for s in observed):
                names = ", ".join(
                    f"{s.site_name} (rule {s.rule.name!r})" for s in observed if s.rule
                )
                raise ConfigurationError(
                    f"calibration_data is needed for the sites whose rules observe "
                    f"activations ({names}); only QCFS activations and rules with "
                    "observe=None convert without it"
                )
            raise ConfigurationError(
                f"calibration_data is needed to scale the ReLUs ({names}); only QCFS "
                "activations convert without it"
            )
        if converter.untraced:
            converter.report.add(
                ", ".join(converter.untraced.values()),
                "forward",
                "unverified",
                "untraced forward not inspected for relu calls or calls on dim 0 (no data)",
            )
        for where, what in converter.own_forward.items():  # not inspected: not converted
            converter.report.add(
                f"{where} (forward)",
                "forward",
                "unconverted",
                f"{what}, not traced: without calibration data its calls are not inspected "
                "(pass calibration_data, or let torch.fx trace it to convert it by its forward)",
            )
    else:
        converter.calibrate(body, calibration_data)
    converter.settle_probes(body)
    if not sites:
        ruled = sorted(t.__name__ for t in converter.rules if t not in BUILTIN_RULES)
        found = (
            f"no ReLU, QCFS or ruled activation ({', '.join(ruled)})"
            if ruled
            else "no ReLU or QCFS activation"
        )
        converter.report.add("<model>", type(model).__name__, "unconverted", f"{found} found")
    body = converter.finalize(body)
    report = converter.report
    report.entries = [e for i, e in enumerate(report.entries) if i not in converter.dropped]
    if strict:
        report.refuse_unconverted(
            type(model).__name__, "spiking form", "Replace them (ReLU/QCFS activations, affine "
            "layers) or pass strict=False to get the partial conversion and its report.",
        )  # fmt: skip
    snn = ConvertedSNN(body, report, converter.input_dim, coding=converter.coding)
    return Conversion(snn, report)
