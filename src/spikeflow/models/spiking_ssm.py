"""A spiking state-space classifier and its recurrent-LIF baseline, for sequences.

``spiking_ssm``: embedding (Linear per step) → ``n_layers`` ×
:class:`~spikeflow.layers.SpikingS4DBlock` → mean over time → Linear classifier, the
layout of the spiking SSM papers' sequence classifiers (Stan & Rhodes 2024; Shen et al.,
SpikingSSMs, 2025) and of S4's own example. ``recurrent_lif_seq``: the same embedding,
pooling and classifier around ``n_layers`` recurrent LIF layers (LayerNorm →
:class:`~spikeflow.layers.Recurrent` LIF), the baseline docs/ssm.md compares it with.
``dh_srnn_seq``: the same around DH-SRNN layers (LayerNorm →
:class:`~spikeflow.layers.DendriticRecurrent` DH-LIF, docs/neuron_zoo_sequence.md).

Both classify a whole sequence: the output is ``[1, B, num_classes]`` (one step, the
pooled read-out), so train them with ``--loss ce``. How the input becomes a sequence
(``input_mode``):

* ``"pixels"`` (default): sequential images (sMNIST-style): ``[T, B, C, H, W]`` with
  ``T = H·W``, step ``t`` reads pixel ``t`` (row-major) of frame ``t``; ``spikeflow
  train`` repeats a static image over ``-T``, so pass ``-T`` = H·W (64 for the digits).
* ``"frames"``: ``[T, B, ...]``, each step flattened (``in_features`` values; N-MNIST
  frames, or a static image repeated over T).
* ``"columns"``: one image column per step (``spikeflow train`` feeds ``[W, B, C, H]``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import Tensor, nn

from spikeflow import layers
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.functional import set_step_mode
from spikeflow.layers.ssm import ssm_parameter_groups
from spikeflow.layers.ssm_block import SpikingS4DBlock
from spikeflow.models.building import flat_features
from spikeflow.models.common import NeuronFactory, NeuronSpec, check_positive_int, flat_steps
from spikeflow.models.registry import register_model
from spikeflow.neurons.dh_lif import DHLIFNode

__all__ = [
    "DHRecurrentSequenceNet",
    "RecurrentLIFSequenceNet",
    "SpikingSSM",
    "dh_srnn_seq",
    "recurrent_lif_seq",
    "spiking_ssm",
]

InputMode = Literal["frames", "pixels", "columns"]
_MODES = ("frames", "pixels", "columns")


class _SequenceClassifier(nn.Module):
    """Reads the input as a sequence (``input_mode``), embeds it, runs ``self.core``,
    pools over time and classifies."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        input_size: int | tuple[int, int] | list[int] | None,
        in_features: int | None,
        input_mode: InputMode,
        width: int,
    ) -> None:
        super().__init__()
        if input_mode not in _MODES:
            raise ConfigurationError(
                f"input_mode must be one of {', '.join(_MODES)}; got {input_mode!r}"
            )
        self.input_mode = input_mode
        self.num_classes = check_positive_int("num_classes", num_classes)
        self.in_channels = check_positive_int("in_channels", in_channels)
        name = type(self).__name__
        if in_features is not None and input_mode != "frames":
            raise ConfigurationError(
                f"{name}: in_features is for input_mode='frames'; with {input_mode!r} the "
                "steps' size comes from in_channels (and input_size)"
            )
        if input_mode == "pixels":
            self.in_features = self.in_channels
        elif input_mode == "columns":
            self.static_input = "columns"  # spikeflow train: one column per step
            self.in_features = flat_features(name, None, in_channels, input_size)
            self.in_features //= _width(input_size)
        else:
            self.in_features = flat_features(name, in_features, in_channels, input_size)
        self.embed = nn.Linear(self.in_features, width)
        self.classifier = nn.Linear(width, self.num_classes)

    #: Why a call returns one output for all its steps (truncated BPTT's windows of
    #: K >= 2 steps need one per step: :func:`spikeflow.training.tbptt.check_tbptt_model`).
    pooled_output = "reads out the mean over all the steps of a call: one output per call"

    @property
    def whole_sequence(self) -> str:
        """Why the model needs the whole sequence in one call ('' where it does not), which
        truncated BPTT and online training refuse
        (:func:`spikeflow.functional.check_not_whole_sequence`)."""
        if self.input_mode != "pixels":
            return ""
        return ("with input_mode='pixels' builds its sequence from the whole input (step t "
                "reads pixel t of frame t: the T = H·W frames in one call)")  # fmt: skip

    def sequence(self, x: Tensor) -> Tensor:
        """The input as ``[T, B, in_features]`` (see the module docstring)."""
        name = type(self).__name__
        if not isinstance(x, Tensor) or not x.is_floating_point():
            found = x.dtype if isinstance(x, Tensor) else type(x).__name__
            raise DTypeError(f"{name} expects a floating-point tensor, got {found}")
        if self.input_mode != "pixels":
            return flat_steps(name, x, self.in_features)
        if x.dim() != 5 or x.shape[2] != self.in_channels or x.shape[0] != x.shape[3] * x.shape[4]:
            raise ShapeError(
                f"{name} with input_mode='pixels' expects [T, B, {self.in_channels}, H, W] "
                f"with T = H·W (pass -T H·W to spikeflow train); got shape {tuple(x.shape)}"
            )
        # step t reads pixel t of frame t: the diagonal of (time, pixel)
        return torch.diagonal(x.flatten(3), dim1=0, dim2=3).permute(2, 0, 1)

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, ...]`` → ``[1, B, num_classes]`` (the time-pooled read-out)."""
        hidden = self.core(self.embed(self.sequence(x)))
        return self.classifier(hidden.mean(0)).unsqueeze(0)


def _width(input_size: int | tuple[int, int] | list[int] | None) -> int:
    if input_size is None:
        raise ConfigurationError("input_mode='columns' needs input_size")
    return input_size if isinstance(input_size, int) else int(input_size[-1])


class SpikingSSM(_SequenceClassifier):
    """Embedding → ``n_layers`` spiking S4D blocks → mean over T → classifier.

    Args:
        num_classes: output classes.
        in_channels, input_size, in_features: the input's size per step (see
            ``input_mode`` in the module docstring).
        input_mode: ``"pixels"`` (default: sequential images), ``"frames"`` or
            ``"columns"``.
        d_model: channels of the blocks.
        d_state: S4D state size ``N`` (``N/2`` complex modes).
        n_layers: number of blocks.
        mixer: ``"glu"`` or ``"linear"`` (the blocks' position-wise layer).
        prenorm: pre- (True) or post-norm (False, S4's default) blocks.
        dropout: dropout on the spikes in each block.
        dt_min, dt_max, init, ssm_lr: the S4D layers' ``dt_min``, ``dt_max``, ``init``
            and ``lr`` (for :func:`~spikeflow.layers.ssm_parameter_groups`).
        neuron, neuron_kwargs: the blocks' spiking neurons (default ``"lif"``).
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        input_size: int | tuple[int, int] | list[int] | None = None,
        in_features: int | None = None,
        input_mode: InputMode = "pixels",
        d_model: int = 64,
        d_state: int = 64,
        n_layers: int = 2,
        mixer: Literal["glu", "linear"] = "glu",
        prenorm: bool = False,
        dropout: float = 0.0,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        init: Literal["lin", "inv"] = "lin",
        ssm_lr: float | None = 1e-3,
        neuron: NeuronSpec = "lif",
        neuron_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        check_positive_int("d_model", d_model)
        check_positive_int("n_layers", n_layers)
        super().__init__(num_classes, in_channels, input_size, in_features, input_mode, d_model)
        factory = NeuronFactory(neuron, neuron_kwargs)
        ssm = {"dt_min": dt_min, "dt_max": dt_max, "init": init, "lr": ssm_lr}
        self.core = nn.Sequential(
            *(
                SpikingS4DBlock(d_model, factory(), d_state, mixer, prenorm, dropout, ssm)
                for _ in range(n_layers)
            )
        )

    def optimizer_parameter_groups(self, lr: float, weight_decay: float) -> list[dict[str, Any]]:
        """S4's optimiser groups (:func:`~spikeflow.layers.ssm_parameter_groups`): every
        parameter at ``lr`` and ``weight_decay`` except the S4D layers' ``log_dt``,
        ``log_a_real`` and ``a_imag``, at ``ssm_lr`` (``None``: ``lr``) without weight
        decay. ``spikeflow train`` builds its optimizer from them."""
        return ssm_parameter_groups(self, lr, weight_decay)


class RecurrentLIFSequenceNet(_SequenceClassifier):
    """Embedding → LayerNorm → recurrent LIF, then (``n_layers`` - 1) × (Linear →
    LayerNorm → recurrent LIF), → mean over T → classifier: the recurrent spiking
    baseline of :class:`SpikingSSM` (same input modes).

    Args:
        num_classes, in_channels, input_size, in_features, input_mode: as
            :class:`SpikingSSM`.
        hidden: neurons per recurrent layer (also the embedding's width).
        n_layers: recurrent layers.
        norm: a LayerNorm before each recurrent layer (without it the LIF neurons,
            driven by the embedding's small currents, hardly fire).
        neuron, neuron_kwargs: the neurons (default ``"lif"``).
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        input_size: int | tuple[int, int] | list[int] | None = None,
        in_features: int | None = None,
        input_mode: InputMode = "pixels",
        hidden: int = 128,
        n_layers: int = 2,
        norm: bool = True,
        neuron: NeuronSpec = "lif",
        neuron_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        check_positive_int("hidden", hidden)
        check_positive_int("n_layers", n_layers)
        super().__init__(num_classes, in_channels, input_size, in_features, input_mode, hidden)
        factory = NeuronFactory(neuron, neuron_kwargs)
        parts: list[nn.Module] = []
        for index in range(n_layers):
            cell = factory(shape=hidden)  # per-neuron parameters, for neurons with them
            set_step_mode(cell, "s")  # the recurrence owns the time loop
            if index:  # the first layer's feed-forward weights are the embedding
                parts.append(layers.Linear(hidden, hidden))
            if norm:  # unit-scale currents, as the SSM blocks' LayerNorm gives theirs
                parts.append(nn.LayerNorm(hidden))
            parts.append(layers.Recurrent(cell, hidden))
        self.core = nn.Sequential(*parts)


class DHRecurrentSequenceNet(_SequenceClassifier):
    """Embedding → ``n_layers`` × (LayerNorm → DH-SRNN layer) → mean over T →
    classifier: :class:`RecurrentLIFSequenceNet` with the recurrent LIF layers replaced
    by the DH-SRNN layers of Zheng et al. (Nature Communications 2024): each a
    :class:`~spikeflow.layers.DendriticRecurrent` (each branch reads its share of the
    layer's input and of its own previous spikes) of
    :class:`~spikeflow.neurons.DHLIFNode` neurons with per-neuron timing factors.

    The dendritic weights are stored dense and masked: each layer holds ``branches``
    times the weights it learns (:meth:`effective_parameters` counts those it learns).

    Args:
        num_classes, in_channels, input_size, in_features, input_mode: as
            :class:`SpikingSSM`.
        hidden: neurons per layer (also the embedding's width).
        n_layers: DH-SRNN layers.
        branches: dendritic branches per neuron (``K``).
        norm: a LayerNorm before each layer.
        neuron_kwargs: arguments of :class:`~spikeflow.neurons.DHLIFNode` (the
            surrogate, ``tau_n_range``, ...).
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        input_size: int | tuple[int, int] | list[int] | None = None,
        in_features: int | None = None,
        input_mode: InputMode = "pixels",
        hidden: int = 128,
        n_layers: int = 2,
        branches: int = 4,
        norm: bool = True,
        neuron_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        check_positive_int("hidden", hidden)
        check_positive_int("n_layers", n_layers)
        check_positive_int("branches", branches)
        super().__init__(num_classes, in_channels, input_size, in_features, input_mode, hidden)
        factory = NeuronFactory(DHLIFNode, neuron_kwargs)
        parts: list[nn.Module] = []
        for _ in range(n_layers):
            cell = factory(branches=branches, shape=hidden)
            set_step_mode(cell, "s")  # the recurrence owns the time loop
            if norm:
                parts.append(nn.LayerNorm(hidden))
            parts.append(layers.DendriticRecurrent(cell, hidden, hidden, branches))
        self.core = nn.Sequential(*parts)

    def effective_parameters(self) -> int:
        """The parameters the network learns: all but the masked-out dendritic weights."""
        masked = sum(
            m.dense.weight.numel() - int(m.dense.mask.sum().item())
            for m in self.modules()
            if isinstance(m, layers.DendriticRecurrent)
        )
        return sum(p.numel() for p in self.parameters()) - masked


@register_model("spiking_ssm")
def spiking_ssm(**kwargs: Any) -> SpikingSSM:
    """A spiking S4D sequence classifier (:class:`SpikingSSM`); kwargs are its arguments."""
    return SpikingSSM(**kwargs)


@register_model("recurrent_lif_seq")
def recurrent_lif_seq(**kwargs: Any) -> RecurrentLIFSequenceNet:
    """The recurrent-LIF sequence classifier (:class:`RecurrentLIFSequenceNet`)."""
    return RecurrentLIFSequenceNet(**kwargs)


@register_model("dh_srnn_seq")
def dh_srnn_seq(**kwargs: Any) -> DHRecurrentSequenceNet:
    """The DH-SRNN sequence classifier (:class:`DHRecurrentSequenceNet`)."""
    return DHRecurrentSequenceNet(**kwargs)
