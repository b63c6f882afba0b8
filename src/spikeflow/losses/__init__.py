"""Training losses for spiking classifiers (methods.md 9 and 11.2).

Every loss takes the network output as a time-major sequence ``out_seq`` of shape
``[T, B, K]`` (``K`` classes) and a target: integer class indices ``[B]``, or for
``mse``, ``ce``, ``tet``, ``mse_membrane``, ``ce_max_membrane``, ``ce_count`` and
``mse_count`` also a float class distribution ``[B, K]`` (one-hot, label-smoothed,
mixup/cutmix mixtures). Each returns a scalar averaged over the batch (but for Lava-DL's
losses, below, which keep its reductions). ``mse``, ``ce``, ``tet``, ``count`` and
snnTorch's losses also take ``weight`` (one per class) and ``reduction`` (``"mean"``,
``"sum"``, ``"none"``), the count losses and :func:`accuracy` ``population_code=True,
num_classes=K``: :mod:`spikeflow.losses.weighting` states the rules.
:func:`temporal_contrastive_loss` takes any per-step representations ``[T, B, D]``.

============  ==================================  =============================================
name          function                            loss (readout)
============  ==================================  =============================================
``mse``       :func:`rate_mse_loss`               MSE of the time-mean against one-hot (rate)
``ce``        :func:`ce_mean_loss`                cross-entropy of the time-mean (rate)
``tet``       :func:`tet_loss`                    per-step CE plus a MSE regulariser (rate)
``tcl``       :func:`tcl_loss`                    CE plus temporal contrastive loss (rate)
``stcl``      :func:`stcl_loss`                   ``tcl`` over two augmented views (rate)
``count``     :func:`spike_count_loss`            squared spike-count error with margins (count)
``count+``    :func:`spike_count_plus_loss`       ``count``, gradient shared over spikes (count)
``sum0``      :func:`spike_count_sum0_loss`       ``count+`` with zero-sum spike gradients (count)
``ce+``       :func:`ce_plus_loss`                CE on ``2 n / T``, shared over spikes (count)
``ttfs``      :func:`ttfs_loss`                   CE on first-spike times (first_spike)
``timing``    :func:`spike_timing_loss`           spike times vs a target train (count)
``kernel``    :func:`spike_kernel_loss`           PSP-filtered MSE vs a target train (count)
============  ==================================  =============================================

``count+``, ``sum0``, ``ce+`` and ``ttfs`` are the time-based losses
(:mod:`spikeflow.losses.time_based`): their gradients reach the output spikes only, for
the event-driven layers; ``timing`` and ``kernel`` are the same paper's losses on target
spike trains (:mod:`spikeflow.losses.target_trains`). The losses of snnTorch's
``snntorch.functional`` that spikeflow had no equal of (docs/models.md maps the others):

===================  ==================================  ======================================
name                 function                            loss (readout)
===================  ==================================  ======================================
``mse_membrane``     :func:`mse_membrane_loss`           membrane MSE vs on/off targets (rate)
``ce_max_membrane``  :func:`ce_max_membrane_loss`        CE of the max-over-time membrane (max)
``ce_count``         :func:`ce_count_loss`               CE of the spike counts (count)
``mse_count``        :func:`mse_count_loss`              count MSE vs ``T * rate`` (count)
``mse_temporal``     :func:`mse_temporal_loss`           first-spike time MSE (first_spike)
``ce_temporal``      :func:`ce_temporal_loss`            CE on ``-t`` or ``1/(t+1)`` (first_spike)
===================  ==================================  ======================================

Lava-DL's SLAYER losses (:mod:`spikeflow.losses.slayer`; Lava-DL's reductions, ``sum`` by
default, not batch means; ``spike_rate`` needs ``true_rate`` and ``false_rate``):

===================  ==================================  ======================================
name                 function                            loss (readout)
===================  ==================================  ======================================
``spike_rate``       :func:`spike_rate_loss`             rate squared error, moving window (rate)
``spike_max``        :func:`spike_max_loss`              NLL of the rate's probability (rate)
``spike_moid``       :func:`spike_moid_loss`             BCE of sigmoid((rate - theta)/alpha) (rate)
===================  ==================================  ======================================

:func:`spike_time_loss` (a filtered spike-train distance; its target is a spike train,
so it is not in the registry) and the classes :class:`SpikeRate`, :class:`SpikeMax`,
:class:`SpikeMoid` (multi-label targets too), :class:`SpikeTime`, :class:`Rate` and
:class:`MovingWindow` are Lava-DL's, time-major.

:func:`distillation_loss` (Hinton's knowledge distillation: the soft-target KL against a
teacher's logits plus any of these losses; ``spikeflow train --teacher``) is not in the
registry: it needs the teacher's logits.

:func:`check_loss_fits` checks, before any output exists, what a loss's arguments would
refuse on an output of ``T`` steps (a ``moving_window`` longer than ``T``, target steps
outside ``[-T, T]``, a counting loss's ``desired_count`` above ``T``): ``spikeflow
train`` asks it before a run starts.
:func:`non_finite_loss_cause` says why a loss is infinite where the loss explains it
(``spike_max``'s probability mode with a silent label neuron).

The regularisers :func:`l1_rate_sparsity`, :func:`l2_spike_population`, :func:`im_loss`
(IM-Loss) and :func:`event_rate` (Lava-DL's event-rate budget) are terms on spike
tensors (e.g. a network's layers, recorded by :class:`LayerSpikes`) to add to a loss;
:func:`accuracy` reads the accuracy with any readout.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any

from torch import Tensor

from spikeflow._checks import check_int
from spikeflow.errors import ConfigurationError
from spikeflow.losses import (
    contrastive,
    count,
    membrane,
    rate,
    slayer,
    spike_moid,
    target_trains,
    temporal,
    time_based,
)
from spikeflow.losses.contrastive import stcl_loss, tcl_loss, temporal_contrastive_loss
from spikeflow.losses.count import ce_count_loss, mse_count_loss
from spikeflow.losses.distillation import distillation_loss, soft_target_loss, student_logits
from spikeflow.losses.l2wrap import l2wrap, l2wrap_penalty
from spikeflow.losses.membrane import ce_max_membrane_loss, mse_membrane_loss
from spikeflow.losses.rate import ce_mean_loss, rate_mse_loss, spike_count_loss, tet_loss
from spikeflow.losses.readout import (
    CONFIDENCE_MODES,
    READOUTS,
    MovingWindow,
    Rate,
    accuracy,
    first_spike_steps,
    moving_window_confidence,
    moving_window_predict,
    moving_window_rate,
    predict,
    rate_confidence,
)
from spikeflow.losses.regularisers import (
    LayerSpikes,
    event_rate,
    im_loss,
    l1_rate_sparsity,
    l2_spike_population,
)
from spikeflow.losses.slayer import (
    SpikeMax,
    SpikeRate,
    SpikeTime,
    exponential_kernel,
    spike_max_loss,
    spike_rate_loss,
    spike_time_loss,
)
from spikeflow.losses.spike_moid import SpikeMoid, spike_moid_loss
from spikeflow.losses.target_trains import (
    desired_spike_train,
    spike_kernel_loss,
    spike_timing_loss,
)
from spikeflow.losses.temporal import ce_temporal_loss, mse_temporal_loss, spike_times
from spikeflow.losses.time_based import (
    ce_plus_loss,
    spike_count_plus_loss,
    spike_count_sum0_loss,
    ttfs_loss,
)

__all__ = [
    "CONFIDENCE_MODES",
    "READOUTS",
    "LayerSpikes",
    "LossFn",
    "MovingWindow",
    "Rate",
    "SpikeMax",
    "SpikeMoid",
    "SpikeRate",
    "SpikeTime",
    "accuracy",
    "ce_count_loss",
    "ce_max_membrane_loss",
    "ce_mean_loss",
    "ce_plus_loss",
    "ce_temporal_loss",
    "check_loss_fits",
    "desired_spike_train",
    "distillation_loss",
    "event_rate",
    "exponential_kernel",
    "first_spike_steps",
    "get_loss",
    "im_loss",
    "l1_rate_sparsity",
    "l2_spike_population",
    "l2wrap",
    "l2wrap_penalty",
    "list_losses",
    "loss_key",
    "loss_readout",
    "loss_sums_batch",
    "moving_window_confidence",
    "moving_window_predict",
    "moving_window_rate",
    "mse_count_loss",
    "mse_membrane_loss",
    "mse_temporal_loss",
    "non_finite_loss_cause",
    "predict",
    "rate_confidence",
    "rate_mse_loss",
    "soft_target_loss",
    "spike_count_loss",
    "spike_count_plus_loss",
    "spike_count_sum0_loss",
    "spike_kernel_loss",
    "spike_max_loss",
    "spike_moid_loss",
    "spike_rate_loss",
    "spike_time_loss",
    "spike_times",
    "spike_timing_loss",
    "stcl_loss",
    "student_logits",
    "tcl_loss",
    "temporal_contrastive_loss",
    "tet_loss",
    "ttfs_loss",
]

LossFn = Callable[..., Tensor]

#: name -> (loss, its argument check, the readout that matches it).
_LOSSES: dict[str, tuple[LossFn, Callable[..., object], str]] = {
    "mse": (rate_mse_loss, rate._mse_arguments, "rate"),
    "ce": (ce_mean_loss, rate._ce_arguments, "rate"),
    "tet": (tet_loss, rate._tet_arguments, "rate"),
    "tcl": (tcl_loss, contrastive._tcl_arguments, "rate"),
    "stcl": (stcl_loss, contrastive._tcl_arguments, "rate"),
    "count": (spike_count_loss, rate._count_arguments, "count"),
    "count+": (spike_count_plus_loss, time_based._count_plus_arguments, "count"),
    "sum0": (spike_count_sum0_loss, time_based._sum0_arguments, "count"),
    "ce+": (ce_plus_loss, time_based._ce_plus_arguments, "count"),
    "ttfs": (ttfs_loss, time_based._ttfs_arguments, "first_spike"),
    "timing": (spike_timing_loss, target_trains._timing_arguments, "count"),
    "kernel": (spike_kernel_loss, target_trains._kernel_arguments, "count"),
    # snnTorch's (snntorch.functional) that spikeflow had no equal of.
    "mse_membrane": (mse_membrane_loss, membrane._mse_membrane_arguments, "rate"),
    "ce_max_membrane": (ce_max_membrane_loss, membrane._ce_max_membrane_arguments, "max"),
    "ce_count": (ce_count_loss, count._ce_count_arguments, "count"),
    "mse_count": (mse_count_loss, count._mse_count_arguments, "count"),
    "mse_temporal": (mse_temporal_loss, temporal._mse_temporal_arguments, "first_spike"),
    "ce_temporal": (ce_temporal_loss, temporal._ce_temporal_arguments, "first_spike"),
    # Lava-DL's SLAYER losses.
    "spike_rate": (spike_rate_loss, slayer._spike_rate_arguments, "rate"),
    "spike_max": (spike_max_loss, slayer._spike_max_arguments, "rate"),
    "spike_moid": (spike_moid_loss, spike_moid._spike_moid_arguments, "rate"),
}


#: name -> what the loss would refuse at its first call on outputs of a number of steps
#: with class labels ``[B]``: ``check(steps, of, **arguments)`` (the losses not named
#: here take any number of steps).
_FITS: dict[str, Callable[..., None]] = {
    "count": rate._count_fits,
    "count+": time_based._count_plus_fits,
    "sum0": time_based._sum0_fits,
    "mse_temporal": temporal._mse_temporal_fits,
    "spike_rate": slayer._spike_rate_fits,
    "spike_max": slayer._spike_max_fits,
    "spike_moid": spike_moid._spike_moid_fits,
}


def list_losses() -> list[str]:
    """The names :func:`get_loss` accepts, sorted."""
    return sorted(_LOSSES)


def loss_key(name: object) -> object:
    """A loss name as :func:`get_loss` reads it (case and ``-``/``_`` ignored:
    ``MSE-Membrane`` is ``mse_membrane``); a non-string as it is."""
    return name.lower().replace("-", "_") if isinstance(name, str) else name


#: Peer loss names with another spikeflow name (docs/models.md, docs/migration.md).
_PEER_NAMES = {
    "ce_rate": "snnTorch's ce_rate_loss is 'tet' with lamb=0 (--loss tet --loss-kwargs lamb=0)",
}


def loss_sums_batch(name: str, kwargs: Mapping[str, Any] | None = None) -> bool:
    """Whether the loss ``name`` with ``kwargs`` returns its batch's sum, not a mean:
    ``reduction="sum"`` on a loss of :mod:`spikeflow.losses.weighting`'s rules (one that
    takes ``weight``). Lava-DL's ``spike_rate``/``spike_max``/``spike_moid`` keep their
    own reductions and are not counted."""
    key = loss_key(name)  # a task's own loss (detection, yolo) is not in the registry
    if key not in _LOSSES or (kwargs or {}).get("reduction") != "sum":
        return False
    return _takes_weight(_LOSSES[key][0])


@functools.cache
def _takes_weight(fn: Callable[..., Any]) -> bool:
    """Whether the loss function ``fn`` takes ``weight`` (:mod:`~spikeflow.losses.weighting`'s
    rules); asked at every training step, read from the signature once."""
    return "weight" in inspect.signature(fn).parameters


def _key(name: str) -> str:
    key = loss_key(name)
    if key not in _LOSSES:
        stem = key.removesuffix("_loss") if isinstance(key, str) else key
        if stem in _PEER_NAMES:
            hint = f" ({_PEER_NAMES[stem]})"
        elif stem in _LOSSES:
            hint = f" (did you mean {stem!r}? the names drop '_loss')"
        else:
            hint = ""
        raise ConfigurationError(
            f"unknown loss {name!r}{hint}; available: {', '.join(list_losses())}"
        )
    return key


def loss_readout(name: str) -> str:
    """The readout (:func:`predict`) that matches loss ``name``: ``"rate"`` for
    ``mse``/``ce``/``tet``/``tcl``/``stcl``/``mse_membrane`` and Lava-DL's ``spike_rate``,
    ``spike_max`` and ``spike_moid`` (its ``Rate.predict``), ``"count"`` for the counting
    losses, ``ce+``, ``timing``, ``kernel`` and ``ce_count``, ``"first_spike"`` for
    ``ttfs`` and the temporal losses, ``"max"`` for ``ce_max_membrane``."""
    return _LOSSES[_key(name)][2]


def get_loss(name: str, **kwargs: Any) -> LossFn:
    """The loss called ``name`` (see the module's table; case and ``-``/``_`` ignored).

    Keyword arguments (e.g. ``lamb=0.01`` for TET) are bound into the returned callable,
    which is then called as ``loss(out_seq, target)``. A loss's arguments without a
    default (``spike_rate``'s ``true_rate`` and ``false_rate``) must be given.

    Raises:
        ConfigurationError: unknown name (the message lists the names), an argument the
            loss does not take, a missing argument it needs, or an invalid argument value.
    """
    fn, check, _ = _LOSSES[_key(name)]
    params = inspect.signature(fn).parameters
    accepted = [p for p in params if p not in ("out_seq", "target")]
    missing = [p for p in accepted if params[p].default is inspect.Parameter.empty]
    missing = [p for p in missing if p not in kwargs]
    if missing:
        raise ConfigurationError(
            f"loss {name!r} needs the argument(s) {missing} (e.g. --loss-kwargs "
            f"{' '.join(f'{p}=...' for p in missing)})"
        )
    if not kwargs:
        return fn
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ConfigurationError(
            f"loss {name!r} takes no argument(s) {unknown}; it accepts {accepted}"
        )
    # Checked now, not at the first training step (after the run folder was made).
    check(**{**{p: params[p].default for p in accepted}, **kwargs})

    def bound(out_seq: Tensor, target: Tensor) -> Tensor:
        return fn(out_seq, target, **kwargs)

    bound.__name__ = f"{fn.__name__}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"
    bound.__doc__ = fn.__doc__
    return bound


def check_loss_fits(
    name: str, steps: int, kwargs: Mapping[str, Any] | None = None, of: str = "out_seq"
) -> None:
    """Check, before any output exists, what loss ``name`` with its arguments ``kwargs``
    would refuse at its first call on an output of ``steps`` time steps with integer
    class labels ``[B]`` as the target (what ``spikeflow train`` gives it): a
    ``moving_window`` longer than ``T`` (``spike_rate``, ``spike_max``, ``spike_moid``),
    target spike steps outside ``[-T, T]`` or ``target_is_time`` (``mse_temporal``), a
    ``desired_count`` above ``T`` (``count``, ``count+``, ``sum0``), ``reduction="none"``
    (not one number). The other losses take any number of steps. ``of`` names what has
    the steps, in the message.

    Raises:
        ConfigurationError: such an argument (the message names it, its value and
            ``T``), or what :func:`get_loss` refuses.
    """
    steps = check_int("check_loss_fits: steps", steps, 1)
    kwargs = dict(kwargs or {})
    get_loss(name, **kwargs)  # the arguments themselves first
    if kwargs.get("reduction") == "none":
        raise ConfigurationError(
            f"loss {name!r}: reduction='none' gives one loss per sample, and a training "
            "step needs one number: give reduction=mean or sum"
        )
    check = _FITS.get(_key(name))
    if check is not None:
        params = inspect.signature(_LOSSES[_key(name)][0]).parameters
        defaults = {p: v.default for p, v in params.items() if p not in ("out_seq", "target")}
        check(steps, of, **{**defaults, **kwargs})


def non_finite_loss_cause(name: str, kwargs: Mapping[str, Any], value: float) -> str:
    """Why loss ``name`` with ``kwargs`` took the non-finite ``value`` where the loss
    itself explains it, for a message about a run that stopped there; empty otherwise
    (a divergence: NaN or infinite outputs or weights).

    ``spike_max`` in its ``probability`` mode (its default, Lava-DL's) is ``+inf``
    exactly when a sample's label neuron is silent (``p = 0``), e.g. at the start of
    training; its log-softmax modes stay finite.
    """
    if loss_key(name) != "spike_max" or value != math.inf:
        return ""
    return slayer._infinite_loss_cause(
        kwargs.get("mode", "probability"), kwargs.get("moving_window")
    )
