"""Dendritic synapses of DH-LIF (Zheng et al., Nature Communications 2024): one current
per dendritic branch of each neuron, each branch connected to its own part of the input.

* :class:`DendriticLinear`: ``[..., in] → [..., N, K]``, the feed-forward layer of a
  DH-SFNN.
* :class:`DendriticRecurrent`: a DH-SRNN layer, the branches reading the input and the
  layer's own previous spikes, ``y[t] = node(W [x[t], y[t-1]] + b)``.

Each neuron's inputs are split at random into ``K`` disjoint groups of equal size, one
per branch (the authors' ``create_mask``; a fixed buffer, the weights outside it are
zero and get no gradient).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikeflow.base import StepMode
from spikeflow.errors import ShapeError
from spikeflow.layers._checks import check_int
from spikeflow.layers.recurrent import _RecurrentContainer

__all__ = ["DendriticLinear", "DendriticRecurrent", "dendritic_mask"]


def dendritic_mask(in_features: int, out_features: int, branches: int) -> Tensor:
    """The connection mask ``[out_features * branches, in_features]`` (row ``n K + k``:
    branch ``k`` of neuron ``n``): for each neuron a random permutation of its inputs,
    padded with ``(-in_features) mod K`` absent ones, cut into ``K`` equal groups
    (so every input reaches exactly one branch of each neuron). Draws from the global
    generator (``torch.manual_seed`` makes it reproducible)."""
    padded = in_features + (-in_features) % branches
    position = torch.rand(out_features, padded).argsort(dim=1).argsort(dim=1)
    branch = position // (padded // branches)  # [N, padded]: each input's branch
    mask = (branch.unsqueeze(1) == torch.arange(branches)[:, None]).float()  # [N, K, padded]
    return mask[:, :, :in_features].reshape(out_features * branches, in_features)


class DendriticLinear(nn.Module):
    """``[..., in_features] → [..., out_features, branches]``: one synaptic current per
    dendritic branch, each branch reading its own ``in_features / branches`` inputs
    (:func:`dendritic_mask`). The input of :class:`~spikeflow.neurons.DHLIFNode`.

    The weights are initialised as ``nn.Linear(in_features, out_features * branches)``
    (as the authors'), then masked; the mask is applied at every call, so the masked
    weights stay zero and get no gradient.

    Args:
        in_features, out_features, branches: positive integers.
        bias: whether each branch has a bias (default True).

    Raises:
        ConfigurationError: a size is not a positive integer.
        ShapeError: the input's last dim is not ``in_features``.
    """

    def __init__(
        self, in_features: int, out_features: int, branches: int, bias: bool = True
    ) -> None:
        super().__init__()
        self.in_features = check_int("in_features", in_features, 1)
        self.out_features = check_int("out_features", out_features, 1)
        self.branches = check_int("branches", branches, 1)
        dense = nn.Linear(self.in_features, self.out_features * self.branches, bias=bias)
        self.weight = dense.weight
        self.bias = dense.bias
        self.register_buffer("mask", dendritic_mask(in_features, out_features, branches))
        with torch.no_grad():
            self.weight.mul_(self.mask)

    def forward(self, x: Tensor) -> Tensor:
        """The branch currents ``[..., out_features, branches]`` of ``x``."""
        if not isinstance(x, Tensor) or x.dim() == 0 or x.shape[-1] != self.in_features:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ShapeError(
                f"DendriticLinear(in_features={self.in_features}) got an input of shape {shape}"
            )
        out = F.linear(x, self.weight * self.mask, self.bias)
        return out.unflatten(-1, (self.out_features, self.branches))

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"branches={self.branches}, bias={self.bias is not None}"
        )


class DendriticRecurrent(_RecurrentContainer):
    """A DH-SRNN layer (the authors' ``spike_rnn_test_denri_wotanh_R``)::

        X[t] = (W ⊙ M) [x[t], y[t-1]] + b      (one current per branch: [..., N, K])
        y[t] = node(X[t])                      (N outputs, y[-1] = 0)

    ``W`` is ``nn.Linear(in_features + out_features, out_features * branches)``, ``M``
    the :func:`dendritic_mask` of the concatenated input (each branch reads its share
    of the input and of the layer's own spikes). The input part is computed for all
    steps at once; only the feedback runs per step.

    Args:
        node: a per-step module mapping ``[..., N, K]`` to ``[..., N]`` (a
            :class:`~spikeflow.neurons.DHLIFNode` with ``step_mode='s'``).
        in_features, out_features, branches: positive integers (``N = out_features``).
        bias: whether each branch has a bias (default True).
        step_mode: ``'m'`` (``[T, B, ..., in]``, default) or ``'s'``.

    Raises:
        ConfigurationError: a size is not a positive integer, or a spikeflow module
            inside is not in single-step mode.
        ShapeError: the input's last dim is not ``in_features``, or the node's output
            is not ``[..., out_features]``.
    """

    def __init__(
        self,
        node: nn.Module,
        in_features: int,
        out_features: int,
        branches: int,
        bias: bool = True,
        step_mode: StepMode = "m",
    ) -> None:
        super().__init__(node, step_mode)
        self.in_features = check_int("in_features", in_features, 1)
        self.out_features = check_int("out_features", out_features, 1)
        self.branches = check_int("branches", branches, 1)
        self.dense = DendriticLinear(self.in_features + self.out_features, self.out_features,
                                     self.branches, bias=bias)  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, ..., in]`` (multi-step) or one step ``[B, ..., in]``."""
        self._weight = self.dense.weight * self.dense.mask  # masked once for all steps
        try:
            return super().forward(x)
        finally:
            del self._weight

    def _drive(self, x_seq: Tensor) -> Tensor:
        if x_seq.shape[-1] != self.in_features:
            raise ShapeError(
                f"{type(self).__name__}(in_features={self.in_features}) got an input whose "
                f"last dim is {x_seq.shape[-1]} (shape {tuple(x_seq.shape)})"
            )
        return F.linear(x_seq, self._weight[:, : self.in_features], self.dense.bias)

    def _initial_output(self, x_t: Tensor) -> Tensor:
        return x_t.new_zeros((*x_t.shape[:-1], self.out_features))

    def _output_shape(self, step_shape: torch.Size) -> torch.Size:
        return torch.Size((*step_shape[:-1], self.out_features))

    def _step(self, drive: Tensor, y: Tensor) -> Tensor:
        current = drive + F.linear(y, self._weight[:, self.in_features :])
        return current.unflatten(-1, (self.out_features, self.branches))

    def _check_output(self, y: Tensor, x_t: Tensor) -> None:
        expected = (*x_t.shape[:-1], self.out_features)
        if not isinstance(y, Tensor) or tuple(y.shape) != expected:
            shape = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
            raise ShapeError(
                f"{type(self).__name__}(out_features={self.out_features}): the node "
                f"returned {shape} for one step, expected {expected}"
            )

    def effective_parameters(self) -> int:
        """The weights inside the mask plus the biases: what the layer learns."""
        bias = 0 if self.dense.bias is None else self.dense.bias.numel()
        return int(self.dense.mask.sum().item()) + bias

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"branches={self.branches}, step_mode={self.step_mode}"
        )
