"""Forward-Forward training (Hinton 2022, arXiv:2212.13345; docs/training_methods.md).

Each layer learns on its own to tell *positive* data (an input with its true label
overlaid on its first ``K`` features) from *negative* data (the same input with a wrong
label). A layer's goodness is the mean (or sum) of its squared activities, ``G = mean_j
y_j²``; its loss is the logistic loss of ``σ(G − θ)`` being the probability that the
input is positive::

    loss = mean over the batch of [softplus(θ − G_pos), softplus(G_neg − θ)]

(snnTorch's ``tutorial_forward_forward`` and Pezeshki's ``pytorch_forward_forward``:
the mean over the ``2B`` terms). Every layer's input is the previous layer's output,
detached (no gradient crosses layers) and scaled to unit length (its direction only, so
a layer cannot read the previous layer's goodness). A prediction overlays each label in
turn and picks the one with the largest goodness summed over the layers.

Layers are float (``[B, F] → [B, N]``, e.g. ``Linear`` then ``ReLU``) or spiking
(``time_steps=T``: ``[T, B, F] → [T, B, N]``, e.g. ``Linear`` then a spikeflow neuron).
A spiking layer's goodness squares each neuron's spike count over the ``T`` steps
(``over_time="count"``, default) or its rate (``"rate"``, the count over ``T``); the next
layer receives the spikes, each step's vector scaled to unit length. snnTorch's
tutorial's "LIF" layer runs one step of ``snn.Leaky`` from rest and reads its membrane:
here ``time_steps=1`` with a layer that ends in :class:`NeuronMembrane`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikeflow._checks import check_labels
from spikeflow.base import MemoryModule
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.functional import reset_net

__all__ = [
    "ForwardForwardTrainer",
    "NeuronMembrane",
    "forward_forward_loss",
    "goodness",
    "negative_labels",
    "normalize_direction",
    "overlay_labels",
]

NegativeMode = Literal["wrong", "permute"]
OverTime = Literal["count", "rate"]
Reduction = Literal["mean", "sum"]
OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]


def _check_labels(labels: Tensor, num_classes: int, batch: int | None = None) -> None:
    if not isinstance(labels, Tensor):
        raise DTypeError(f"labels: a tensor of integer class indices; got {type(labels).__name__}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise DTypeError(f"labels: integer class indices; got dtype {labels.dtype}")
    if labels.ndim != 1:
        one_hot = labels.ndim == 2 and labels.shape[-1] == num_classes
        hint = " (one-hot labels? pass labels.argmax(-1))" if one_hot else ""
        raise ShapeError(f"labels: a 1-D tensor [B]; got shape {tuple(labels.shape)}{hint}")
    check_labels("labels", labels, labels.numel() if batch is None else batch, num_classes)


def overlay_labels(
    x: Tensor, labels: Tensor | int, num_classes: int, value: float | None = None
) -> Tensor:
    """``x`` with its first ``num_classes`` features replaced by the one-hot ``labels``.

    Args:
        x: ``[B, F]`` inputs, or ``[T, B, F]`` (every step gets the same overlay).
        labels: ``[B]`` integer labels in ``[0, num_classes)``, or one label for all.
        num_classes: ``K``; the first ``K`` features are zeroed and feature ``label``
            set to ``value``.
        value: the "on" value; None (default) takes the largest value of ``x`` (the
            tutorial's ``x.max()``, over the whole batch).

    Returns:
        A new tensor; ``x`` is not changed.
    """
    if x.ndim not in (2, 3):
        raise ShapeError(f"x: [B, F] or [T, B, F]; got shape {tuple(x.shape)}")
    if num_classes < 2 or num_classes > x.shape[-1]:
        raise ConfigurationError(
            f"num_classes must be in [2, features={x.shape[-1]}]; got {num_classes}"
        )
    batch = x.shape[-2]
    if batch == 0:
        raise ShapeError(f"x: at least one sample; got an empty batch, shape {tuple(x.shape)}")
    if isinstance(labels, int):
        labels = torch.full((batch,), labels, dtype=torch.long, device=x.device)
    _check_labels(labels, num_classes, batch)
    on = x.amax() if value is None else torch.as_tensor(value, dtype=x.dtype, device=x.device)
    out = x.clone()
    out[..., :num_classes] = 0.0
    out[..., torch.arange(batch, device=x.device), labels.to(x.device)] = on.to(x.dtype)
    return out


def negative_labels(
    labels: Tensor,
    num_classes: int,
    mode: NegativeMode = "wrong",
    generator: torch.Generator | None = None,
) -> Tensor:
    """The labels to overlay on negative data.

    Args:
        labels: ``[B]`` true labels.
        num_classes: ``K``.
        mode: ``"wrong"`` (default, Hinton's): each a label drawn uniformly from the
            ``K − 1`` wrong ones; ``"permute"`` (the tutorial's ``y[randperm(B)]``): the
            batch's labels shuffled, so some may equal the true label.
        generator: the random source (CPU), for reproducible draws.
    """
    _check_labels(labels, num_classes)
    if mode == "wrong":
        shift = torch.randint(1, num_classes, labels.shape, generator=generator)
        return (labels + shift.to(labels.device)) % num_classes
    if mode == "permute":
        return labels[torch.randperm(labels.numel(), generator=generator).to(labels.device)]
    raise ConfigurationError(f"negative mode must be 'wrong' or 'permute'; got {mode!r}")


def normalize_direction(x: Tensor, eps: float = 1e-4) -> Tensor:
    """``x / (‖x‖₂ + eps)`` over the last dimension (each sample's, or each step's,
    direction; a zero vector stays zero). ``eps`` is the tutorial's ``1e-4``."""
    if not eps > 0:
        raise ConfigurationError(f"eps must be > 0 (a zero vector would divide by 0); got {eps}")
    return x / (torch.linalg.vector_norm(x, dim=-1, keepdim=True) + eps)


def goodness(
    activity: Tensor, reduction: Reduction = "mean", over_time: OverTime | None = None
) -> Tensor:
    """Each sample's goodness, ``reduce_j a_j²``.

    Args:
        activity: ``[B, N]`` (a float layer) or ``[T, B, N]`` (a spiking layer, with
            ``over_time``).
        reduction: ``"mean"`` over the ``N`` units (the tutorial's and Pezeshki's) or
            ``"sum"`` (Hinton's ``Σ_j y_j²``).
        over_time: for ``[T, B, N]``: ``a`` is the sum over the steps (``"count"``) or
            their mean (``"rate"``).

    Returns:
        ``[B]``.
    """
    if over_time is not None:
        if activity.ndim != 3:
            raise ShapeError(
                f"activity: [T, B, N] with over_time; got shape {tuple(activity.shape)}"
            )
        if over_time == "count":
            activity = activity.sum(0)
        elif over_time == "rate":
            activity = activity.mean(0)
        else:
            raise ConfigurationError(f"over_time must be 'count' or 'rate'; got {over_time!r}")
    elif activity.ndim != 2:
        raise ShapeError(f"activity: [B, N] (or [T, B, N] with over_time); got "
                         f"shape {tuple(activity.shape)}")  # fmt: skip
    squares = activity.pow(2)
    if reduction == "mean":
        return squares.mean(-1)
    if reduction == "sum":
        return squares.sum(-1)
    raise ConfigurationError(f"reduction must be 'mean' or 'sum'; got {reduction!r}")


def forward_forward_loss(g_pos: Tensor, g_neg: Tensor, theta: float) -> Tensor:
    """The mean over the ``2B`` terms ``softplus(θ − G_pos)`` and ``softplus(G_neg − θ)``
    (``−log σ(G_pos − θ)`` and ``−log(1 − σ(G_neg − θ))``)."""
    return F.softplus(torch.cat([theta - g_pos, g_neg - theta])).mean()


class NeuronMembrane(nn.Module):
    """Runs a spikeflow neuron and returns its membrane ``v_seq`` ``[T, B, N]`` instead
    of its spikes (the tutorial's LIF layer reads ``snn.Leaky``'s membrane)."""

    def __init__(self, neuron: nn.Module) -> None:
        super().__init__()
        if not hasattr(neuron, "store_v_seq"):
            raise ConfigurationError(
                f"NeuronMembrane wraps a spikeflow neuron with store_v_seq; got "
                f"{type(neuron).__name__}"
            )
        neuron.store_v_seq = True
        self.neuron = neuron

    def forward(self, x: Tensor) -> Tensor:
        """The neuron's membrane over the steps of ``x`` ``[T, B, ...]``."""
        self.neuron(x)
        return self.neuron.v_seq


#: ``step``/``layer_losses`` warn about a layer silent for this many updates in a row.
_SILENT_PATIENCE = 10


def _refuse_multi_step(layers: list[nn.Module]) -> None:
    """Float layers (``time_steps=None``) get ``[B, F]``: a multi-step stateful module
    would read the batch dimension as time, carrying state from sample to sample."""
    for index, layer in enumerate(layers):
        for name, module in layer.named_modules():
            if isinstance(module, MemoryModule) and module.step_mode == "m":
                where = f".{name}" if name else ""
                raise ConfigurationError(
                    f"layers[{index}]{where} ({type(module).__name__}) is a multi-step "
                    f"stateful module: with time_steps=None it would read the batch "
                    f"dimension [B, F] as time steps, each sample starting from the "
                    f"previous one's state; pass time_steps=T (time_steps=1: one step "
                    f"from rest, the tutorial's LIF layer)"
                )


def _adam_03(params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=0.03)


class ForwardForwardTrainer:
    """Trains a sequence of layers by Forward-Forward, each with its own optimizer.

    Args:
        layers: an ``nn.Sequential``, ``nn.ModuleList`` or list of modules, each with
            trainable parameters.
        num_classes: ``K``, overlaid on the first ``K`` input features.
        theta: θ, the goodness threshold (default 5.0, the tutorial's).
        optimizer: builds one layer's optimizer from its parameters (default Adam with
            lr 0.03, the tutorial's).
        time_steps: None (default): float layers on ``[B, F]``; ``T``: spiking layers on
            ``[T, B, F]`` (a ``[B, F]`` input is repeated over the steps, a ``[T, B, F]``
            one must have ``T`` steps).
        over_time: a spiking layer's goodness from spike counts (default) or rates.
        reduction: goodness as the mean (default) or sum of squares over the units.
        eps: added to the norm when scaling each layer's input (default 1e-4).
        overlay_value: the overlaid label's value (default: the batch's largest input).
        negative: how :meth:`make_pairs` draws wrong labels (:func:`negative_labels`).
        generator: the random source of the negative labels.
    """

    def __init__(
        self,
        layers: nn.Sequential | nn.ModuleList | Sequence[nn.Module],
        *,
        num_classes: int,
        theta: float = 5.0,
        optimizer: OptimizerFactory = _adam_03,
        time_steps: int | None = None,
        over_time: OverTime = "count",
        reduction: Reduction = "mean",
        eps: float = 1e-4,
        overlay_value: float | None = None,
        negative: NegativeMode = "wrong",
        generator: torch.Generator | None = None,
    ) -> None:
        if isinstance(layers, nn.Module) and not isinstance(layers, (nn.Sequential, nn.ModuleList)):
            raise ConfigurationError(
                f"layers: a sequence of layers (nn.Sequential, nn.ModuleList or a list of "
                f"modules), each trained on its own; got a {type(layers).__name__}"
            )
        if not isinstance(layers, nn.Module) and (
            not isinstance(layers, Sequence) or not all(isinstance(m, nn.Module) for m in layers)
        ):
            raise ConfigurationError(
                f"layers: a sequence of nn.Module layers; got {type(layers).__name__}"
            )
        self.layers = list(layers)
        if not self.layers:
            raise ConfigurationError("layers: at least one layer; got none")
        for index, layer in enumerate(self.layers):
            if not any(p.requires_grad for p in layer.parameters()):
                raise ConfigurationError(
                    f"layers[{index}] ({type(layer).__name__}) has no trainable parameters: "
                    f"each Forward-Forward layer learns its own weights"
                )
        if time_steps is not None and (not isinstance(time_steps, int) or time_steps < 1):
            raise ConfigurationError(f"time_steps: None or an int >= 1; got {time_steps!r}")
        if time_steps is None:
            _refuse_multi_step(self.layers)
        if over_time not in ("count", "rate"):
            raise ConfigurationError(f"over_time must be 'count' or 'rate'; got {over_time!r}")
        if reduction not in ("mean", "sum"):
            raise ConfigurationError(f"reduction must be 'mean' or 'sum'; got {reduction!r}")
        if not math.isfinite(theta):
            raise ConfigurationError(f"theta: a finite goodness threshold; got {theta}")
        if not eps > 0:
            raise ConfigurationError(f"eps must be > 0 (a zero input would divide by 0); got {eps}")
        if num_classes < 2:
            raise ConfigurationError(f"num_classes: at least 2; got {num_classes}")
        if negative not in ("wrong", "permute"):
            raise ConfigurationError(f"negative must be 'wrong' or 'permute'; got {negative!r}")
        self.num_classes = num_classes
        self.theta = float(theta)
        self.time_steps = time_steps
        self.over_time: OverTime = over_time
        self.reduction: Reduction = reduction
        self.eps = eps
        self.overlay_value = overlay_value
        self.negative: NegativeMode = negative
        self.generator = generator
        self._warned_silent: set[int] = set()
        self._silent_updates: dict[int, int] = {}
        self.optimizers = [
            optimizer([p for p in layer.parameters() if p.requires_grad]) for layer in self.layers
        ]

    # -- inputs and activities -------------------------------------------------------
    def _first_input(self, x: Tensor) -> Tensor:
        if self.time_steps is None:
            if x.ndim != 2:
                raise ShapeError(
                    f"x: [B, F] for float layers (time_steps=None); got shape {tuple(x.shape)}"
                )
            return x
        if x.ndim == 2:
            return x.unsqueeze(0).expand(self.time_steps, *x.shape)
        if x.ndim != 3:
            raise ShapeError(f"x: [B, F] or [T, B, F] for spiking layers; got shape "
                             f"{tuple(x.shape)}")  # fmt: skip
        if x.shape[0] != self.time_steps:
            raise ShapeError(
                f"x has {x.shape[0]} time steps, the trainer's time_steps is {self.time_steps}"
            )
        return x

    def _layer(self, index: int, h: Tensor) -> Tensor:
        layer = self.layers[index]
        reset_net(layer)  # each call from rest: no state from the previous batch
        out = layer(normalize_direction(h, self.eps))
        expected = 2 if self.time_steps is None else 3
        if out.ndim != expected or out.shape[:-1] != h.shape[:-1]:
            raise ShapeError(
                f"layers[{index}] maps {tuple(h.shape)} to {tuple(out.shape)}; expected "
                f"{'[B, N]' if expected == 2 else '[T, B, N]'} with the input's leading sizes"
            )
        return out

    def activities(self, x: Tensor) -> list[Tensor]:
        """Every layer's output on ``x`` (already overlaid); each layer's input is the
        previous output detached, so a loss on one layer reaches only its weights."""
        h = self._first_input(x)
        outputs = []
        for index in range(len(self.layers)):
            out = self._layer(index, h)
            outputs.append(out)
            h = out.detach()
        return outputs

    def _goodness(self, activity: Tensor) -> Tensor:
        over_time = None if self.time_steps is None else self.over_time
        return goodness(activity, self.reduction, over_time)

    def goodness(self, x: Tensor) -> Tensor:
        """Each layer's goodness on ``x`` (already overlaid): ``[layers, B]``."""
        return torch.stack([self._goodness(a) for a in self.activities(x)])

    # -- data ------------------------------------------------------------------------
    def make_pairs(self, x: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """Positive (true label overlaid) and negative (a wrong label, drawn with the
        trainer's ``negative`` mode and generator) inputs."""
        wrong = negative_labels(labels, self.num_classes, self.negative, self.generator)
        return (
            overlay_labels(x, labels, self.num_classes, self.overlay_value),
            overlay_labels(x, wrong, self.num_classes, self.overlay_value),
        )

    # -- training --------------------------------------------------------------------
    def layer_losses(self, x_pos: Tensor, x_neg: Tensor) -> list[Tensor]:
        """Each layer's loss on a positive and a negative batch (with graphs)."""
        if x_pos.shape != x_neg.shape:
            raise ShapeError(
                f"x_pos and x_neg: the same shape; got {tuple(x_pos.shape)} and "
                f"{tuple(x_neg.shape)}"
            )
        pos, neg = self.activities(x_pos), self.activities(x_neg)
        for index, (p, n) in enumerate(zip(pos, neg)):
            self._warn_if_silent(index, p, n, _SILENT_PATIENCE, stacklevel=4)  # from step
        return [
            forward_forward_loss(self._goodness(p), self._goodness(n), self.theta)
            for p, n in zip(pos, neg)
        ]

    def _warn_if_silent(
        self, index: int, a_pos: Tensor, a_neg: Tensor, patience: int, stacklevel: int
    ) -> None:
        """A UserWarning (once per layer) when a layer's output has been zero on both
        batches for ``patience`` updates in a row: ``∂G/∂a = 2a`` is then zero, so those
        updates left it unchanged. With ``step`` a layer silent at first may start
        firing as the layers before it learn; ``train_layerwise`` repeats one batch, so
        one silent update means all are."""
        if a_pos.any() or a_neg.any():
            self._silent_updates[index] = 0
            return
        self._silent_updates[index] = count = self._silent_updates.get(index, 0) + 1
        if count < patience or index in self._warned_silent:
            return
        self._warned_silent.add(index)
        warnings.warn(
            f"layers[{index}] ({type(self.layers[index]).__name__}) output only zeros on the "
            f"positive and the negative batch ({count} update(s) in a row): its goodness has "
            f"no gradient (dG/da = 2a), so it does not learn; a spiking layer that never "
            f"fires never learns: start it firing (larger initial weights, "
            f"docs/training_methods.md)",
            UserWarning,
            stacklevel=stacklevel,
        )

    def step(self, x_pos: Tensor, x_neg: Tensor) -> Tensor:
        """One update of every layer (Hinton's schedule): each layer's input is the
        previous layer's output before this step's update. Returns the ``[layers]``
        losses before the update."""
        for opt in self.optimizers:
            opt.zero_grad()
        losses = self.layer_losses(x_pos, x_neg)
        torch.stack(losses).sum().backward()  # one backward: the detaches keep them apart
        for opt in self.optimizers:
            opt.step()
        return torch.stack([loss.detach() for loss in losses])

    def train_layerwise(self, x_pos: Tensor, x_neg: Tensor, steps: int) -> Tensor:
        """The tutorial's schedule: ``steps`` updates of the first layer, then of the
        second on the first's final outputs, and so on. Returns ``[layers, steps]``."""
        if steps < 1:
            raise ConfigurationError(f"steps: at least 1; got {steps}")
        if x_pos.shape != x_neg.shape:
            raise ShapeError(f"x_pos and x_neg: the same shape; got {tuple(x_pos.shape)} "
                             f"and {tuple(x_neg.shape)}")  # fmt: skip
        h_pos, h_neg = self._first_input(x_pos), self._first_input(x_neg)
        history = torch.empty(len(self.layers), steps)
        for index, opt in enumerate(self.optimizers):
            for s in range(steps):
                a_pos, a_neg = self._layer(index, h_pos), self._layer(index, h_neg)
                self._warn_if_silent(index, a_pos, a_neg, 1, stacklevel=3)
                g_pos, g_neg = self._goodness(a_pos), self._goodness(a_neg)
                loss = forward_forward_loss(g_pos, g_neg, self.theta)
                opt.zero_grad()
                loss.backward()
                opt.step()
                history[index, s] = loss.detach()
            with torch.no_grad():
                h_pos, h_neg = self._layer(index, h_pos), self._layer(index, h_neg)
        return history

    # -- prediction ------------------------------------------------------------------
    @torch.no_grad()
    def label_goodness(self, x: Tensor, skip_layers: int = 0) -> Tensor:
        """``[B, K]``: for each label, the goodness of ``x`` with it overlaid, summed
        over the layers after the first ``skip_layers`` (Hinton skips the first)."""
        if not 0 <= skip_layers < len(self.layers):
            raise ConfigurationError(
                f"skip_layers must be in [0, {len(self.layers)}) (the layers); got {skip_layers}"
            )
        if x.ndim < 2 or x.shape[-2] == 0:
            raise ShapeError(f"x: at least one sample; got shape {tuple(x.shape)}")
        value = self.overlay_value
        if value is None:
            value = float(x.amax())  # the same "on" value for every label
        scores = [
            self.goodness(overlay_labels(x, label, self.num_classes, value))[skip_layers:].sum(0)
            for label in range(self.num_classes)
        ]
        return torch.stack(scores, dim=-1)

    def predict(self, x: Tensor, skip_layers: int = 0) -> Tensor:
        """``[B]``: the label whose overlay gives the largest goodness."""
        return self.label_goodness(x, skip_layers).argmax(-1)
