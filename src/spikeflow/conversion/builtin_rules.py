"""The built-in conversion rules: ReLU, QCFS and max pooling (methods.md 7).

They go through the same path as a user's (:mod:`~spikeflow.conversion.rules`):

* ``nn.ReLU`` (and relu calls) observe their output; the calibrated scale θ becomes
  the threshold of an IF neuron with soft reset whose spikes carry θ (or a group,
  multi-threshold or differential neuron, as convert's options ask).
* ``QCFS`` (and qcfs calls) observe nothing: λ is the threshold, the membrane starts
  at ``shift·λ``.
* ``nn.MaxPool1d/2d/3d`` (and max-pool calls) become spike-count gated max pools, a
  differential max pool, or stay (``max_pool='keep'``).
"""

from __future__ import annotations

from torch import Tensor, nn

from spikeflow.conversion._checks import threshold_problem
from spikeflow.conversion.differential import DifferentialMaxPool, DifferentialNeuron
from spikeflow.conversion.group import GroupNeuron
from spikeflow.conversion.multi_threshold import MultiThresholdNeuron
from spikeflow.conversion.neuron import ConversionIFNode
from spikeflow.conversion.pooling import GatedMaxPool
from spikeflow.conversion.qcfs import QCFS
from spikeflow.conversion.rules import ConversionRule, Replacement, RuleSite
from spikeflow.errors import ConfigurationError

__all__ = ["BUILTIN_RULES", "MAX_POOL_RULE", "QCFS_RULE", "RELU_RULE", "rate_neuron"]


def rate_neuron(site: RuleSite, theta: Tensor, init: float, what: str) -> Replacement:
    """The neuron convert's options ask for, threshold ``theta``, membrane starting at
    ``init·θ`` (``what``: how θ was found, for the report)."""
    options = site.options
    if options.coding == "differential":
        neuron: nn.Module = DifferentialNeuron(theta, options.multi_threshold)
        levels = f"k={options.multi_threshold}" if options.multi_threshold else "one threshold"
        kind = f"DifferentialNeuron({levels})"
        init = 0.0 if options.multi_threshold else 0.5
    elif options.group_size is not None:
        neuron = GroupNeuron(theta, options.group_size, init)
        kind = f"GroupNeuron(m={options.group_size})"
    elif options.multi_threshold is not None:
        init = 0.0
        neuron = MultiThresholdNeuron(theta, options.multi_threshold, options.negative_spikes)
        sign = ", signed" if options.negative_spikes else ""
        kind = f"MultiThresholdNeuron(k={options.multi_threshold}{sign})"
    else:
        neuron = ConversionIFNode(theta, init)
        kind = "IF soft reset"
    per = f"/{options.group_size}" if options.group_size else ""
    if site.shared > 1:
        what += f", shared by {site.shared} calls per forward (do not stream)"
    return Replacement(neuron, f"{kind}, {what}, V0={init:g}·θ{per}")


def _relu(site: RuleSite) -> Replacement:
    """An IF neuron (or the neuron convert's options ask for) of the calibrated θ."""
    scale = site.scale
    assert scale is not None
    options = site.options
    init = 0.0 if options.initial_membrane is None else options.initial_membrane
    if scale.dim() == 0:
        what = f"{options.norm} θ={float(scale):.4g}"
    else:
        what = (
            f"{options.norm} per-channel θ[{scale.numel()}] in "
            f"[{float(scale.min()):.3g}, {float(scale.max()):.3g}]"
        )
    if site.silent_channels:
        what += f", {site.silent_channels} silent in calibration"
    problem = threshold_problem(scale)
    if problem is not None:  # strict conversion lists every such site in one error
        detail = (
            f"calibrated θ = {problem}; it becomes the IF neuron's threshold (the "
            "calibration data gave inf or NaN activations here)"
        )
        return Replacement(site.module, detail, "unconverted")
    return rate_neuron(site, scale, init, what)


def _qcfs(site: RuleSite) -> Replacement:
    """An IF neuron of threshold λ whose membrane starts at ``shift·λ``."""
    layer = site.module
    assert isinstance(layer, QCFS)
    # θ is a tensor, per layer too: the neuron keeps it as a buffer, so the SNN's
    # state dict holds it (a float threshold is no part of it).
    theta = layer.threshold.detach().clone()
    initial = site.options.initial_membrane
    init = layer.shift if initial is None else initial
    problem = threshold_problem(theta)
    if problem is not None:
        detail = (
            f"λ = {problem}; it becomes the IF neuron's threshold (train with a "
            "positive λ, e.g. clamp it after each step, or reset this layer's λ)"
        )
        return Replacement(layer, detail, "unconverted")
    return rate_neuron(site, theta, init, f"λ={float(theta):.4g}")


def _max_pool(site: RuleSite) -> Replacement:
    """A spike-count gated max pool (or a differential one, or the pool kept)."""
    pool = site.module
    if site.options.coding == "differential":
        try:
            spiking = DifferentialMaxPool.from_max_pool(pool)
        except ConfigurationError as error:
            return Replacement(pool, str(error), "unconverted")
        return Replacement(spiking, "DifferentialMaxPool (rebuilt-domain maxima)", "replaced")
    if site.options.max_pool == "keep":
        # stateless: runs on the folded [T*B, ...] like the convolutions
        detail = "max of each step's values (overestimates the max rate)"
        return Replacement(pool, detail, "kept", steps="folded")
    return Replacement(GatedMaxPool.from_max_pool(pool), "GatedMaxPool (spike counts)", "replaced")


_BOTH = ("rate", "differential")  # they follow site.options.coding
RELU_RULE = ConversionRule(_relu, observe="output", name="relu", codings=_BOTH)
QCFS_RULE = ConversionRule(_qcfs, observe=None, name="qcfs", codings=_BOTH)
MAX_POOL_RULE = ConversionRule(_max_pool, observe=None, name="max_pool", codings=_BOTH)
#: The rules convert starts from (a user's, registered or passed, come after them).
BUILTIN_RULES: dict[type[nn.Module], ConversionRule] = {
    nn.ReLU: RELU_RULE,
    QCFS: QCFS_RULE,
    nn.MaxPool1d: MAX_POOL_RULE,
    nn.MaxPool2d: MAX_POOL_RULE,
    nn.MaxPool3d: MAX_POOL_RULE,
}
